//! Encoding: MP4 files (H.264 + AAC, playable in a browser) for `dub`, and the live outputs (v4l2 virtual
//! camera, a file, a window) for `live`.

use std::path::{Path, PathBuf};

use gst::prelude::*;

use super::{by_name, check_bus, frame_buffer, launch, set_state, video_caps, wait_eos};
use crate::error::{Error, Result};
use crate::frame::{FrameLayout, VideoFrame};

/// Writes video frames and 16 kHz audio into an MP4 file.
pub struct Mp4Writer {
    pipeline: gst::Pipeline,
    video: gst_app::AppSrc,
    audio: gst_app::AppSrc,
    path: PathBuf,
}

impl Mp4Writer {
    /// A writer for frames of `layout` at `fps`; odd sizes are scaled to even ones (H.264 needs them). x264
    /// runs on one thread: its threaded rate control (constant bitrate, 4 Mbit/s) depends on the threads'
    /// timing, and the same dub would come out differently each run. The bitrate keeps the line where
    /// pressed lips meet: at 2 Mbit/s, or at constant quality, the tracker reads more of them as parted.
    pub fn create(path: &Path, layout: &FrameLayout, fps: i32) -> Result<Self> {
        let (w, h) = (layout.width & !1, layout.height & !1);
        let pipeline = launch(&format!(
            "appsrc name=video format=time block=true max-bytes=67108864 ! videoconvert ! videoscale ! \
             video/x-raw,format=I420,width={w},height={h} ! x264enc speed-preset=faster bitrate=4096 threads=1 ! \
             video/x-h264,profile=high ! mp4mux name=mux faststart=true ! filesink name=file \
             appsrc name=audio format=time max-bytes=0 ! audioconvert ! audioresample ! \
             audio/x-raw,rate=48000 ! avenc_aac ! aacparse ! mux."
        ))?;
        by_name::<gst::Element>(&pipeline, "file")?.set_property("location", path);
        let video: gst_app::AppSrc = by_name(&pipeline, "video")?;
        video.set_caps(Some(&video_caps(layout, fps)));
        let audio: gst_app::AppSrc = by_name(&pipeline, "audio")?;
        audio.set_caps(Some(&audio_caps()));
        set_state(&pipeline, gst::State::Playing)?;
        Ok(Mp4Writer { pipeline, video, audio, path: path.to_owned() })
    }

    /// Appends a frame: `image` if the engine made one, else the frame's own pixels (not copied).
    pub fn push_frame(&self, frame: &VideoFrame, image: Option<Vec<u8>>, duration: u64) -> Result<()> {
        let mut buffer = frame_buffer(frame, image);
        {
            let b = buffer.get_mut().expect("new buffer");
            b.set_pts(gst::ClockTime::from_nseconds(frame.pts));
            b.set_duration(gst::ClockTime::from_nseconds(duration));
        }
        self.video.push_buffer(buffer).map_err(|e| self.failure(e))?;
        Ok(())
    }

    /// Appends audio samples starting at `pts` (ns).
    pub fn push_audio(&self, samples: &[f32], pts: u64) -> Result<()> {
        self.audio.push_buffer(audio_buffer(samples, pts)).map_err(|e| self.failure(e))?;
        Ok(())
    }

    fn failure(&self, flow: gst::FlowError) -> Error {
        check_bus(&self.pipeline)
            .err()
            .unwrap_or_else(|| Error::Media(format!("{}: the encoder refused data ({flow:?})", self.path.display())))
    }

    /// Ends both streams and waits until the file is complete.
    pub fn finish(self) -> Result<()> {
        let _ = self.video.end_of_stream();
        let _ = self.audio.end_of_stream();
        let result = wait_eos(&self.pipeline, gst::ClockTime::from_seconds(300));
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }
}

/// The engine's audio: 16 kHz mono F32.
pub(super) fn audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("rate", crate::audio::SAMPLE_RATE as i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build()
}

/// 16 kHz samples as a buffer starting at `pts` (ns).
pub(super) fn audio_buffer(samples: &[f32], pts: u64) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut buffer = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buffer.get_mut().expect("new buffer");
        b.set_pts(gst::ClockTime::from_nseconds(pts));
        b.set_duration(gst::ClockTime::from_nseconds(crate::audio::samples_to_ns(samples.len() as u64)));
    }
    buffer
}

/// Where `lipsync live` sends its video.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputSpec {
    /// A v4l2 device, e.g. a v4l2loopback virtual camera.
    V4l2(PathBuf),
    /// A window on the desktop.
    Window,
    /// A file: `.mkv` (robust if interrupted) or `.mp4`.
    File(PathBuf),
}

impl std::str::FromStr for OutputSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(if let Some(dev) = s.strip_prefix("v4l2:") {
            OutputSpec::V4l2(dev.into())
        } else if s == "window" {
            OutputSpec::Window
        } else if s.ends_with(".mkv") || s.ends_with(".mp4") {
            OutputSpec::File(s.into())
        } else {
            return Err(Error::InvalidArgument(format!(
                "output `{s}`: use v4l2:/dev/videoN, window, or a file ending in .mkv or .mp4"
            )));
        })
    }
}

/// A live video output fed frame by frame; a file output also takes the sound ([`VideoOutput::push_audio`]).
pub struct VideoOutput {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    audio: Option<gst_app::AppSrc>,
}

impl VideoOutput {
    pub fn open(spec: &OutputSpec, layout: &FrameLayout, fps: i32) -> Result<Self> {
        let tail = match spec {
            OutputSpec::V4l2(_) => "videoconvert ! video/x-raw,format=YUY2 ! v4l2sink name=sink sync=false".to_owned(),
            OutputSpec::Window => "videoconvert ! autovideosink sync=false".to_owned(),
            OutputSpec::File(p) => {
                // MP4 with AAC, as `dub` writes; Matroska with Opus.
                let (mux, audio) = if p.extension().is_some_and(|e| e == "mp4") {
                    ("mp4mux", "audio/x-raw,rate=48000 ! avenc_aac ! aacparse")
                } else {
                    ("matroskamux", "opusenc")
                };
                format!(
                    "videoconvert ! x264enc tune=zerolatency speed-preset=veryfast ! {mux} name=mux ! filesink name=sink \
                     appsrc name=audio format=time is-live=true do-timestamp=false ! audioconvert ! audioresample ! \
                     {audio} ! mux."
                )
            }
        };
        let pipeline = launch(&format!("appsrc name=src format=time is-live=true do-timestamp=false ! {tail}"))?;
        match spec {
            OutputSpec::V4l2(dev) => by_name::<gst::Element>(&pipeline, "sink")?.set_property("device", dev),
            OutputSpec::File(path) => by_name::<gst::Element>(&pipeline, "sink")?.set_property("location", path),
            OutputSpec::Window => {}
        }
        let src: gst_app::AppSrc = by_name(&pipeline, "src")?;
        src.set_caps(Some(&video_caps(layout, fps)));
        let audio = match spec {
            OutputSpec::File(_) => {
                let audio: gst_app::AppSrc = by_name(&pipeline, "audio")?;
                audio.set_caps(Some(&audio_caps()));
                Some(audio)
            }
            _ => None,
        };
        set_state(&pipeline, gst::State::Playing)?;
        Ok(VideoOutput { pipeline, src, audio })
    }

    /// Whether the output takes the sound (files do).
    pub fn takes_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Appends 16 kHz samples starting at `pts` (ns) to the sound, where the output takes it.
    pub fn push_audio(&self, samples: &[f32], pts: u64) -> Result<()> {
        let Some(audio) = &self.audio else { return Ok(()) };
        audio.push_buffer(audio_buffer(samples, pts)).map_err(|_| {
            check_bus(&self.pipeline).err().unwrap_or_else(|| Error::Media("the audio output stopped".into()))
        })?;
        Ok(())
    }

    pub fn push(&self, frame: &VideoFrame, image: Option<Vec<u8>>) -> Result<()> {
        let mut buffer = frame_buffer(frame, image);
        {
            let b = buffer.get_mut().expect("new buffer");
            b.set_pts(gst::ClockTime::from_nseconds(frame.pts));
            b.set_duration(frame.duration.map(gst::ClockTime::from_nseconds));
        }
        self.src.push_buffer(buffer).map_err(|_| {
            check_bus(&self.pipeline).err().unwrap_or_else(|| Error::Media("the video output stopped".into()))
        })?;
        Ok(())
    }

    /// Ends the streams and waits for the output to finish (files are completed).
    pub fn finish(self) -> Result<()> {
        let _ = self.src.end_of_stream();
        if let Some(audio) = &self.audio {
            let _ = audio.end_of_stream();
        }
        let result = wait_eos(&self.pipeline, gst::ClockTime::from_seconds(30));
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }
}

/// Writes an RGB image (interleaved, rows of `width * 3` bytes) as a PNG file.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: Vec<u8>) -> Result<()> {
    let pipeline = launch("appsrc name=src format=time ! videoconvert ! pngenc ! filesink name=file")?;
    by_name::<gst::Element>(&pipeline, "file")?.set_property("location", path);
    let src: gst_app::AppSrc = by_name(&pipeline, "src")?;
    let layout = FrameLayout::new(crate::frame::PixelFormat::Rgb, width, height);
    // Rows padded to GStreamer's 4-byte stride.
    let row = width as usize * 3;
    let mut data = vec![0u8; layout.min_size()];
    for (y, line) in rgb.chunks(row).enumerate().take(height as usize) {
        data[y * layout.strides[0]..y * layout.strides[0] + row].copy_from_slice(line);
    }
    src.set_caps(Some(&video_caps(&layout, 1)));
    set_state(&pipeline, gst::State::Playing)?;
    let mut buffer = gst::Buffer::from_mut_slice(data);
    buffer.get_mut().expect("new buffer").set_pts(gst::ClockTime::ZERO);
    src.push_buffer(buffer)
        .map_err(|_| Error::Media(format!("{}: the PNG encoder refused the image", path.display())))?;
    let _ = src.end_of_stream();
    let result = wait_eos(&pipeline, gst::ClockTime::from_seconds(30));
    let _ = pipeline.set_state(gst::State::Null);
    result
}
