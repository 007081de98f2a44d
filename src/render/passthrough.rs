//! The `passthrough` renderer: needs no audio and changes nothing, so the engine's timing, deadline and
//! fallback machinery can run (and be measured) on its own.

use super::{RenderJob, Rendered, Renderer};
use crate::audio::AudioWindow;
use crate::error::Result;

/// Returns every frame unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Passthrough;

impl Renderer for Passthrough {
    fn name(&self) -> &'static str {
        "passthrough"
    }

    fn window(&self) -> AudioWindow {
        AudioWindow::default()
    }

    fn recommended_latency(&self) -> u64 {
        40_000_000
    }

    fn render(&mut self, _job: &RenderJob<'_>) -> Result<Rendered> {
        Ok(Rendered::Unchanged)
    }
}
