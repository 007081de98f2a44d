//! The audio a renderer needs around one video frame: `before` ns of history and `after` ns of look-ahead
//! around the frame's pts. The look-ahead is what forces latency: frame k cannot be rendered before audio
//! up to `pts_k + after` has arrived.

use super::{NS_PER_SAMPLE, ns_to_samples};

/// Window geometry a renderer declares, relative to the frame's pts (ns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioWindow {
    /// Audio needed before the frame's pts.
    pub before: u64,
    /// Audio needed after the frame's pts (look-ahead).
    pub after: u64,
}

impl AudioWindow {
    /// STSA's heatmap generator: wav2vec2 chunks k-2..k+2 cover `[40k - 160 ms, 40k + 205 ms]`
    /// (SPEC.md sections 1.3 and 7).
    pub const STSA: AudioWindow = AudioWindow { before: 160_000_000, after: 205_000_000 };

    /// Start time of the window for a frame at `pts` (clamped at 0).
    pub fn start(&self, pts: u64) -> u64 {
        pts.saturating_sub(self.before)
    }

    /// End time (exclusive) of the window for a frame at `pts`.
    pub fn end(&self, pts: u64) -> u64 {
        pts + self.after
    }

    /// Samples in a window (constant for every frame, so renderers get fixed-size input). A window that
    /// would start before time 0 is still this long: its first samples are silence.
    pub fn samples(&self) -> usize {
        ns_to_samples(self.before + self.after) as usize
    }

    /// Where the window of a frame at `pts` starts, possibly before 0 (then the head is silence):
    /// `(start_time, leading_silence_samples)`.
    pub fn placement(&self, pts: u64) -> (u64, usize) {
        if pts >= self.before { (pts - self.before, 0) } else { (0, ((self.before - pts) / NS_PER_SAMPLE) as usize) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stsa_window_spans_365_ms() {
        let w = AudioWindow::STSA;
        assert_eq!(w.samples(), 5840);
        assert_eq!(w.end(40_000_000), 245_000_000);
        assert_eq!(w.placement(40_000_000), (0, 1920));
        assert_eq!(w.placement(200_000_000), (40_000_000, 0));
    }
}
