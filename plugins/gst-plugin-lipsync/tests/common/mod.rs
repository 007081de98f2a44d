//! What the element's test files share: GStreamer set-up, caps, buffers, the astronaut photo, a voice.

#![allow(dead_code)] // each test file uses its own part

use gst::prelude::*;
use gst_check::Harness;

pub const MS: u64 = 1_000_000;
pub const FRAME: u64 = 40 * MS;

pub fn init() {
    use std::sync::Once;
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let registry = std::env::temp_dir().join(format!("lipsync-test-registry-{}.bin", std::process::id()));
        // SAFETY: set once, before GStreamer starts any thread.
        unsafe { std::env::set_var("GST_REGISTRY", registry) };
        gst::init().unwrap();
        gstlipsync::plugin_register_static().expect("register lipsync");
    });
}

pub fn video_caps(format: &str, w: u32, h: u32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", w as i32)
        .field("height", h as i32)
        .field("framerate", gst::Fraction::new(25, 1))
        .build()
}

pub fn audio_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-raw")
        .field("format", "F32LE")
        .field("rate", 16000i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build()
}

pub fn counter(e: &gst::Element, name: &str) -> u64 {
    e.property::<u64>(name)
}

/// Pulls buffers until EOS.
pub fn pull_all(h: &mut Harness) -> Vec<gst::Buffer> {
    let mut out = Vec::new();
    while let Some(b) = h.pull_until_eos().expect("output before the timeout") {
        out.push(b);
    }
    out
}

pub fn messages(bus: &gst::Bus, kind: gst::MessageType) -> Vec<gst::Message> {
    std::iter::from_fn(|| bus.pop_filtered(&[kind])).collect()
}

/// The astronaut photo, 512x512 RGB (a row is 1536 bytes: no padding).
pub fn astronaut_rgb() -> Vec<u8> {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/face/astronaut.golden.safetensors");
    let golden = candle_core::safetensors::load(&fixture, &candle_core::Device::Cpu).unwrap();
    golden["image_rgb_u8"].flatten_all().unwrap().to_vec1::<u8>().unwrap()
}

pub fn pixels_apart(a: &[u8], b: &[u8]) -> usize {
    a.chunks(3).zip(b.chunks(3)).filter(|(p, q)| p.iter().zip(*q).any(|(x, y)| x.abs_diff(*y) > 24)).count()
}

/// One second of a voice-like sound: harmonics of 120 Hz with a vowel's formants, in 4 Hz syllables or
/// held.
pub fn voice(syllables: bool) -> Vec<f32> {
    (0..16_000)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let syllable = if syllables { (std::f32::consts::PI * 4.0 * t).sin().abs() } else { 1.0 };
            let tone: f32 = (1..30)
                .map(|k| {
                    let f = 120.0 * k as f32;
                    let g = (-((f - 700.0) / 200.0).powi(2)).exp() + 0.6 * (-((f - 1200.0) / 250.0).powi(2)).exp();
                    g * (std::f32::consts::TAU * f * t).sin()
                })
                .sum();
            0.1 * syllable * tone
        })
        .collect()
}
