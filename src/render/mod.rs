//! Renderers: given a frame and its audio window, produce the re-rendered mouth as a [`Patch`] (or nothing).
//! The engine runs one renderer on its worker thread; later renderers (classic, STSA) implement the same
//! trait.

mod passthrough;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use passthrough::Passthrough;

use crate::audio::AudioWindow;
use crate::error::{Error, Result};
use crate::frame::{Patch, VideoFrame};

/// Everything a renderer gets for one frame.
#[derive(Debug)]
pub struct RenderJob<'a> {
    pub frame: &'a VideoFrame,
    /// `window().samples()` samples at 16 kHz, starting at `frame.pts - window().before`.
    pub audio: &'a [f32],
    /// How many of `audio` were missing and are silence.
    pub audio_missing: usize,
}

/// What a renderer made of a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Rendered {
    /// Nothing to change: the input frame goes out as it is (no copy).
    Unchanged,
    /// Blend this patch into the frame.
    Patch(Patch),
}

/// A per-frame renderer run on the engine's worker thread.
pub trait Renderer: Send {
    /// Short name, used in logs and errors.
    fn name(&self) -> &'static str;

    /// The audio this renderer needs around each frame.
    fn window(&self) -> AudioWindow;

    /// The latency this renderer should be given by default: its look-ahead plus a frame of compute.
    fn recommended_latency(&self) -> u64 {
        self.window().after + 40_000_000
    }

    /// Renders one frame.
    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered>;

    /// Forgets any state carried from frame to frame (flush, seek, new stream).
    fn reset(&mut self) {}
}

/// The renderers users can choose (the element's `renderer` property, the CLI's `--renderer`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RendererKind {
    /// Frames go through unchanged; the engine's timing still applies.
    #[default]
    Passthrough,
}

impl RendererKind {
    pub const ALL: [RendererKind; 1] = [RendererKind::Passthrough];

    pub fn name(self) -> &'static str {
        match self {
            RendererKind::Passthrough => "passthrough",
        }
    }

    /// Builds the renderer; `extra_delay` adds artificial render time (testing, simulating slow machines).
    pub fn create(self, extra_delay: Duration) -> Result<Box<dyn Renderer>> {
        let inner: Box<dyn Renderer> = match self {
            RendererKind::Passthrough => Box::new(Passthrough),
        };
        Ok(if extra_delay.is_zero() { inner } else { Box::new(Delayed { inner, delay: extra_delay }) })
    }
}

impl fmt::Display for RendererKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RendererKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
            Error::InvalidArgument(format!("unknown renderer `{s}`; available: {}", names.join(", ")))
        })
    }
}

/// Wraps a renderer and sleeps `delay` before each frame: makes deadline handling testable and shows what
/// a slower machine would do.
pub struct Delayed {
    pub inner: Box<dyn Renderer>,
    pub delay: Duration,
}

impl Renderer for Delayed {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn window(&self) -> AudioWindow {
        self.inner.window()
    }
    fn recommended_latency(&self) -> u64 {
        self.inner.recommended_latency()
    }
    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered> {
        std::thread::sleep(self.delay);
        self.inner.render(job)
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
}
