//! Decoding files: any audio GStreamer reads, to 16 kHz mono f32; face videos and still images to frames
//! at 25 fps.

use std::path::Path;

use gst::prelude::*;

use super::{by_name, check_bus, frame_from_sample, launch, set_state};
use crate::error::{Error, Result};
use crate::frame::VideoFrame;

/// Frame rate of decoded face videos and of `dub`'s output (STSA works at 25 fps).
pub const FPS: u32 = 25;

const IMAGE_EXTENSIONS: [&str; 7] = ["png", "jpg", "jpeg", "bmp", "webp", "tif", "tiff"];

/// Whether `path` names a still image (by its extension).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn check_readable(path: &Path) -> Result<()> {
    std::fs::metadata(path).map(|_| ()).map_err(super::io_error(path))
}

/// Decodes the whole audio track of `path` to 16 kHz mono f32.
pub fn decode_audio(path: &Path) -> Result<Vec<f32>> {
    check_readable(path)?;
    let pipeline = launch(
        "filesrc name=src ! decodebin ! audioconvert ! audioresample ! \
         audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! appsink name=sink sync=false",
    )?;
    by_name::<gst::Element>(&pipeline, "src")?.set_property("location", path);
    let sink: gst_app::AppSink = by_name(&pipeline, "sink")?;
    set_state(&pipeline, gst::State::Playing)?;
    let mut samples = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if let Some(buffer) = sample.buffer() {
            let map = buffer.map_readable().map_err(|_| Error::Media("cannot map audio".into()))?;
            samples.extend(map.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
    }
    let result = check_bus(&pipeline);
    let _ = pipeline.set_state(gst::State::Null);
    result.map_err(|e| Error::Media(format!("{}: no audio could be decoded: {e}", path.display())))?;
    if samples.is_empty() {
        return Err(Error::Media(format!("{}: contains no audio", path.display())));
    }
    Ok(samples)
}

/// Frames of a face video (resampled to 25 fps) or of a still image (one frame), as RGB.
pub struct DecodedVideo {
    pub frames: Vec<VideoFrame>,
    pub width: u32,
    pub height: u32,
}

/// Decodes `path` (a video or a still image) to RGB frames at 25 fps, at most `max_frames` of them.
pub fn decode_video(path: &Path, max_frames: usize) -> Result<DecodedVideo> {
    check_readable(path)?;
    let rate = if is_image(path) { "" } else { "videorate ! video/x-raw,framerate=25/1 ! " };
    let pipeline = launch(&format!(
        "filesrc name=src ! decodebin ! videoconvert ! {rate}videoconvert ! video/x-raw,format=RGB ! \
         appsink name=sink sync=false max-buffers=4"
    ))?;
    by_name::<gst::Element>(&pipeline, "src")?.set_property("location", path);
    let sink: gst_app::AppSink = by_name(&pipeline, "sink")?;
    set_state(&pipeline, gst::State::Playing)?;
    let mut frames = Vec::new();
    while frames.len() < max_frames {
        let Ok(sample) = sink.pull_sample() else { break };
        let pts = frames.len() as u64 * 1_000_000_000 / FPS as u64;
        frames.push(frame_from_sample(&sample, pts)?);
    }
    let result = check_bus(&pipeline);
    let _ = pipeline.set_state(gst::State::Null);
    result.map_err(|e| Error::Media(format!("{}: no video could be decoded: {e}", path.display())))?;
    let first = frames.first().ok_or_else(|| Error::Media(format!("{}: contains no video frame", path.display())))?;
    let (width, height) = (first.width(), first.height());
    if frames.iter().any(|f| f.width() != width || f.height() != height) {
        return Err(Error::Media(format!("{}: the frame size changes mid-stream", path.display())));
    }
    Ok(DecodedVideo { frames, width, height })
}
