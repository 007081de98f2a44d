//! lipsync: a real-time streaming lip-sync engine.
//!
//! Data flow: video frames ([`frame`]) and 16 kHz audio ([`audio`]) enter the [`engine`], which waits for
//! each frame's audio window, renders it on a worker thread ([`render`]) and emits frames in order at a fixed
//! latency. The GStreamer element (`plugins/gst-plugin-lipsync`) and the `lipsync` command line tool
//! (feature `gst`, [`io`] and `cli`) drive the same engine.

pub mod audio;
pub mod engine;
pub mod error;
pub mod frame;
pub mod render;

#[cfg(feature = "gst")]
pub mod cli;

#[cfg(feature = "gst")]
pub mod io;

pub use audio::{AudioProducer, AudioRing, AudioWindow};
pub use engine::{Engine, EngineConfig, EngineEvent, Fallback, FrameStatus, Mode, OutputFrame};
pub use error::{Error, Result};
pub use frame::{FrameLayout, Patch, PixelFormat, VideoFrame};
pub use render::{Renderer, RendererKind};
