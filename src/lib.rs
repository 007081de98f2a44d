//! lipsync: a real-time streaming lip-sync engine.
//!
//! Data flow: video frames ([`frame`]) and 16 kHz audio ([`audio`]) enter the [`engine`], which waits for
//! each frame's audio window, renders it on a worker thread ([`render`]) and emits frames in order at a fixed
//! latency. The GStreamer element (`plugins/gst-plugin-lipsync`) and the `lipsync` command line tool
//! (feature `gst`, [`io`] and `cli`) drive the same engine.
//!
//! ```
//! use lipsync::{Engine, EngineConfig, Mode, PixelFormat, RendererKind, VideoFrame};
//!
//! // Offline (no deadlines), with the passthrough renderer.
//! let config = EngineConfig { mode: Mode::Offline, ..Default::default() };
//! let (mut engine, mut audio) = Engine::<u32>::new(RendererKind::Passthrough.create(&Default::default())?, config)?;
//! audio.push(Some(0), &[0.0; 1600])?; // 100 ms of 16 kHz audio from running time 0
//! let frame = VideoFrame::from_vec(PixelFormat::Rgb, 4, 2, vec![0; 24], 0)?;
//! engine.push_video(frame, 7); // the payload travels with the frame
//! engine.audio_eos();
//! let out = engine.finish(None);
//! assert_eq!((out.len(), out[0].payload), (1, 7));
//! assert!(out[0].image.is_none()); // unchanged: the input goes out without a copy
//! # Ok::<(), lipsync::Error>(())
//! ```

pub mod audio;
pub mod engine;
pub mod error;
pub mod face;
pub mod frame;
pub mod guidance;
pub mod render;
pub mod stsa;
pub mod sync;
pub mod visemes;

#[cfg(feature = "gst")]
pub mod cli;

#[cfg(feature = "gst")]
pub mod io;

pub use audio::{AudioProducer, AudioRing, AudioWindow};
pub use engine::{
    AudioGaps, Engine, EngineConfig, EngineEvent, Fallback, FrameStatus, Mode, OutputFrame, PlaybackEvent,
    TrackingConfig,
};
pub use error::{Error, Result};
pub use frame::{FrameLayout, Patch, PixelFormat, VideoFrame};
pub use render::{Renderer, RendererKind, RendererOptions};
