//! Media I/O for the command line tool (feature `gst`), built on GStreamer pipelines with appsrc/appsink:
//! decoding files, encoding MP4, live camera capture, RTP audio reception and live video outputs. The
//! engine itself sees only [`VideoFrame`]s and 16 kHz samples.

mod audio_out;
pub mod control;
mod decode;
pub mod encode;
mod face_loop;
mod live;
mod pending;
mod rtp;

use std::path::Path;
use std::sync::Arc;

use gst::prelude::*;

pub use audio_out::{AudioOutSpec, AudioOutput};
pub use decode::{DecodedVideo, FPS, FRAME_NS, VideoReader, decode_audio, decode_video, is_image};
pub use encode::{Mp4Writer, OutputSpec, VideoOutput, write_png};
pub use face_loop::{FaceLoop, Fit, ping_pong};
pub use live::{LiveClock, VideoInput};
pub use pending::PendingFile;
pub use rtp::{RtpAudioReceiver, RtpCodec, RtpSource};

use crate::error::{Error, Result};
use crate::frame::{FrameLayout, VideoFrame};

/// Initialises GStreamer once; a clear error when it is missing.
pub fn init() -> Result<()> {
    gst::init().map_err(|e| Error::Media(format!("cannot initialise GStreamer: {e}")))
}

fn launch(description: &str) -> Result<gst::Pipeline> {
    init()?;
    gst::parse::launch(description)
        .map_err(|e| {
            Error::Media(format!("cannot build pipeline `{description}`: {e} (a GStreamer plugin may be missing)"))
        })?
        .downcast::<gst::Pipeline>()
        .map_err(|_| Error::Media("not a pipeline".into()))
}

fn by_name<T: IsA<gst::Element>>(pipeline: &gst::Pipeline, name: &str) -> Result<T> {
    pipeline
        .by_name(name)
        .and_then(|e| e.downcast::<T>().ok())
        .ok_or_else(|| Error::Media(format!("pipeline has no element `{name}` of the expected type")))
}

/// The error a bus message carries, with the element's debug text.
fn bus_error(msg: &gst::Message) -> Option<Error> {
    match msg.view() {
        gst::MessageView::Error(e) => {
            let src = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
            Some(Error::Media(format!(
                "{src}: {}{}",
                e.error(),
                e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
            )))
        }
        _ => None,
    }
}

/// Returns the first error posted on the pipeline's bus so far, if any.
fn check_bus(pipeline: &gst::Pipeline) -> Result<()> {
    let bus = pipeline.bus().expect("pipelines have a bus");
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let Some(e) = bus_error(&msg) {
            return Err(e);
        }
    }
    Ok(())
}

fn set_state(pipeline: &gst::Pipeline, state: gst::State) -> Result<()> {
    pipeline.set_state(state).map(|_| ()).map_err(|_| {
        check_bus(pipeline).err().unwrap_or_else(|| Error::Media(format!("pipeline refused to go to {state:?}")))
    })
}

/// Waits for EOS (or an error) on the pipeline's bus.
fn wait_eos(pipeline: &gst::Pipeline, timeout: gst::ClockTime) -> Result<()> {
    let bus = pipeline.bus().expect("pipelines have a bus");
    match bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]) {
        Some(msg) => match bus_error(&msg) {
            Some(e) => Err(e),
            None => Ok(()),
        },
        None => Err(Error::Media(format!("pipeline did not finish within {timeout}"))),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

/// The pixel layout of raw video caps.
fn layout_from_caps(caps: &gst::CapsRef) -> Result<FrameLayout> {
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|_| Error::Media(format!("not raw video: {caps}")))?;
    FrameLayout::from_planes(info.format().to_str().as_str(), info.width(), info.height(), info.offset(), info.stride())
}

/// A frame from an appsink sample, without copying its pixels; `pts` is set by the caller.
fn frame_from_sample(sample: &gst::Sample, pts: u64) -> Result<VideoFrame> {
    let caps = sample.caps().ok_or_else(|| Error::Media("video sample without caps".into()))?;
    let mut layout = layout_from_caps(caps)?;
    let buffer = sample.buffer_owned().ok_or_else(|| Error::Media("video sample without a buffer".into()))?;
    if let Some(meta) = buffer.meta::<gst_video::VideoMeta>() {
        layout = layout.with_planes(meta.offset(), meta.stride());
    }
    let duration = buffer.duration().map(|d| d.nseconds());
    let mapped = buffer.into_mapped_buffer_readable().map_err(|_| Error::Media("cannot map a video buffer".into()))?;
    VideoFrame::new(layout, Arc::new(mapped), pts, duration)
}

/// Raw video caps for a frame layout at `fps` frames per second.
fn video_caps(layout: &FrameLayout, fps: i32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", layout.format.name())
        .field("width", layout.width as i32)
        .field("height", layout.height as i32)
        .field("framerate", gst::Fraction::new(fps, 1))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

/// A frame's pixels as a `gst::Buffer` without copying (the buffer holds a reference to the frame).
fn frame_buffer(frame: &VideoFrame, image: Option<Vec<u8>>) -> gst::Buffer {
    struct Shared(VideoFrame);
    impl AsRef<[u8]> for Shared {
        fn as_ref(&self) -> &[u8] {
            self.0.data()
        }
    }
    match image {
        Some(v) => gst::Buffer::from_mut_slice(v),
        None => gst::Buffer::from_slice(Shared(frame.clone())),
    }
}
