//! The `lipsync` element: an Aggregator with a `video_sink` pad, an `audio_sink` request pad and a video
//! `src` pad; it runs the lipsync engine and outputs every input frame, in order, within its latency.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct LipSync(ObjectSubclass<imp::LipSync>) @extends gst_base::Aggregator, gst::Element, gst::Object;
}

/// The element's `renderer` property.
#[derive(Debug, Default, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstLipSyncRenderer")]
pub enum Renderer {
    #[enum_value(name = "Passthrough: frames go through unchanged, with the engine's timing", nick = "passthrough")]
    Passthrough = 0,
    #[default]
    #[enum_value(
        name = "Classic: the tracked face warped to follow the audio, no trained weights (CPU, real time)",
        nick = "classic"
    )]
    Classic = 1,
    #[enum_value(
        name = "STSA: the trained networks (needs the weights property; real time on a GPU, device=cuda)",
        nick = "stsa"
    )]
    Stsa = 2,
}

impl From<Renderer> for lipsync::RendererKind {
    fn from(r: Renderer) -> Self {
        match r {
            Renderer::Passthrough => lipsync::RendererKind::Passthrough,
            Renderer::Classic => lipsync::RendererKind::Classic,
            Renderer::Stsa => lipsync::RendererKind::Stsa,
        }
    }
}

/// The element's `fallback` property.
#[derive(Debug, Default, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstLipSyncFallback")]
pub enum Fallback {
    #[default]
    #[enum_value(name = "Original: a late frame goes out unchanged", nick = "original")]
    Original = 0,
    #[enum_value(name = "Last render: the last good render is blended into a late frame", nick = "last-render")]
    LastRender = 1,
}

impl From<Fallback> for lipsync::Fallback {
    fn from(f: Fallback) -> Self {
        match f {
            Fallback::Original => lipsync::Fallback::Original,
            Fallback::LastRender => lipsync::Fallback::LastRender,
        }
    }
}

/// The element's `audio-gaps` property.
#[derive(Debug, Default, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstLipSyncAudioGaps")]
pub enum AudioGaps {
    #[default]
    #[enum_value(
        name = "Wait: missing audio is late (a microphone, RTP): frames wait for it up to their deadline",
        nick = "wait"
    )]
    Wait = 0,
    #[enum_value(
        name = "Silence: missing audio is silence (speech in bursts from a TTS): frames render with the mouth closed",
        nick = "silence"
    )]
    Silence = 1,
}

impl From<AudioGaps> for lipsync::AudioGaps {
    fn from(g: AudioGaps) -> Self {
        match g {
            AudioGaps::Wait => lipsync::AudioGaps::Wait,
            AudioGaps::Silence => lipsync::AudioGaps::Silence,
        }
    }
}

/// The element's `precision` property.
#[derive(Debug, Default, Eq, PartialEq, Hash, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstLipSyncPrecision")]
pub enum Precision {
    #[default]
    #[enum_value(name = "f32: exact", nick = "f32")]
    F32 = 0,
    #[enum_value(name = "f16: half the memory; faster on a GPU", nick = "f16")]
    F16 = 1,
    #[enum_value(name = "bf16: half the memory; faster on a GPU", nick = "bf16")]
    Bf16 = 2,
}

impl From<Precision> for lipsync::stsa::models::Precision {
    fn from(p: Precision) -> Self {
        match p {
            Precision::F32 => Self::F32,
            Precision::F16 => Self::F16,
            Precision::Bf16 => Self::Bf16,
        }
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(Some(plugin), "lipsync", gst::Rank::NONE, LipSync::static_type())
}
