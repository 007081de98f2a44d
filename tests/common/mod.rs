//! Helpers shared by the integration tests: MediaPipe's golden results on the fixture images, an RTP
//! speech sender.
#![allow(dead_code)] // each test file uses some of these

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use lipsync::{PixelFormat, VideoFrame};

/// The three images with MediaPipe results in `../shared/fixtures/face`.
pub const IMAGES: [&str; 3] = ["astronaut", "speakerine_f000", "speakerine_f090"];

/// The tensors of `../shared/fixtures/face/NAME.golden.safetensors`.
pub fn golden(name: &str) -> HashMap<String, Tensor> {
    let path: PathBuf =
        [env!("CARGO_MANIFEST_DIR"), "../shared/fixtures/face", &format!("{name}.golden.safetensors")].iter().collect();
    candle_core::safetensors::load(&path, &Device::Cpu).unwrap()
}

/// A tensor's values, flattened.
pub fn vec1(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// The fixture's image as an RGB frame (rows padded to GStreamer's 4-byte stride).
pub fn frame(f: &HashMap<String, Tensor>) -> VideoFrame {
    let img = &f["image_rgb_u8"];
    let (h, w, _) = img.dims3().unwrap();
    let data = img.flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let mut padded = Vec::new();
    let stride = (w * 3).div_ceil(4) * 4;
    for row in data.chunks(w * 3) {
        padded.extend_from_slice(row);
        padded.resize(padded.len() + stride - w * 3, 0);
    }
    VideoFrame::from_vec(PixelFormat::Rgb, w as u32, h as u32, padded, 0).unwrap()
}

/// A path under `../shared`.
pub fn shared(path: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "../shared", path].iter().collect()
}

/// Max |a - b| (same shapes; compared on the CPU, so a device's output meets a CPU fixture).
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let cpu = |t: &Tensor| t.to_device(&Device::Cpu).unwrap();
    (cpu(a) - cpu(b)).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// The device the network parity tests run on: `LIPSYNC_TEST_DEVICE` (`cuda:0` with `--features cuda`
/// on a machine with a GPU), else the CPU.
pub fn test_device() -> Device {
    let name = std::env::var("LIPSYNC_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    lipsync::stsa::models::parse_device(&name).unwrap()
}

/// A section of `../shared/stsa/state_dict_keys.txt` (`## Heatmap_generator...` or `## Face_renderer...`):
/// its keys and shapes in state_dict order.
pub fn stsa_keys(section: &str) -> Vec<(String, Vec<usize>)> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../shared/stsa/state_dict_keys.txt"].iter().collect();
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip_while(|l| !l.starts_with(&format!("## {section}")))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (key, shape) = (f.next()?, f.next()?);
            let dims = shape.trim_matches(|c| c == '(' || c == ')').split(',').filter_map(|d| d.trim().parse().ok());
            Some((key.to_string(), dims.collect()))
        })
        .collect()
}

/// An RTP sender of 16 kHz mono speech (L16) to 127.0.0.1:`port`, playing, as a TTS streams it: push
/// 16-bit big-endian buffers into the appsrc, stamped with when they play on the sender's clock.
#[cfg(feature = "gst")]
pub fn rtp_speech_sender(port: u16) -> (gst::Pipeline, gst_app::AppSrc) {
    use gst::prelude::*;
    lipsync::io::init().unwrap();
    let sender = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=audio/x-raw,format=S16BE,rate=16000,channels=1,layout=interleaved ! \
         rtpL16pay ! udpsink host=127.0.0.1 port={port} sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = sender.by_name("src").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    sender.set_state(gst::State::Playing).unwrap();
    (sender, src)
}
