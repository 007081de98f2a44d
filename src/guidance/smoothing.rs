//! Temporal heatmap smoothing: with a T=5 window sliding one frame at a time, each frame's lip/jaw heatmap
//! is predicted by up to five windows (the original keeps only the centre one). [`HeatmapFuser`] fuses
//! the predictions that have arrived when a frame must be rendered into one probabilistic heatmap,
//! weighting each by its distance from its window's centre and by the window's confidence, so landmark
//! noise in any single window does not make the mouth tremble. It is causal: a frame uses only windows
//! that exist by its deadline ([`future_windows`] says how many that is for a latency budget).
//! [`BoxSmoother`] applies the One-Euro filter to the face crop box.

use std::collections::BTreeMap;

use crate::face::filter::{OneEuro, OneEuroParams};

/// How many windows centred after a frame can be waited for: those whose audio look-ahead and compute
/// fit in the latency budget, at most `t / 2`.
pub fn future_windows(latency: u64, window_lookahead: u64, compute: u64, frame_period: u64, t: usize) -> usize {
    let spare = latency.saturating_sub(window_lookahead + compute);
    ((spare / frame_period.max(1)) as usize).min(t / 2)
}

/// What a [`HeatmapFuser`] blends: heatmaps on the host (`Vec<f32>`), or tensors on the networks' device
/// (the `stsa` renderer's, so that predictions never leave the GPU).
pub trait Blend: Sized {
    /// `Σ wᵢ·hᵢ / total` over `parts` (in the order they arrived), capped at 1.
    fn blend(parts: &[(f32, Self)], total: f32) -> crate::Result<Self>;
}

impl Blend for Vec<f32> {
    fn blend(parts: &[(f32, Self)], total: f32) -> crate::Result<Self> {
        let mut sum = vec![0.0f32; parts.first().map_or(0, |(_, h)| h.len())];
        for (w, h) in parts {
            for (s, v) in sum.iter_mut().zip(h) {
                *s += w * v;
            }
        }
        let inv = 1.0 / total;
        Ok(sum.into_iter().map(|v| (v * inv).min(1.0)).collect())
    }
}

/// Fuses overlapping window predictions per frame; see the module docs.
pub struct HeatmapFuser<H = Vec<f32>> {
    t: usize,
    /// Temporal standard deviation of the weights, in frames from the window's centre.
    sigma: f32,
    /// Per frame, the weighted predictions so far.
    frames: BTreeMap<i64, Vec<(f32, H)>>,
}

impl<H: Blend> HeatmapFuser<H> {
    pub fn new(t: usize, sigma: f32) -> Self {
        HeatmapFuser { t, sigma, frames: BTreeMap::new() }
    }

    /// A window centred on frame `centre` predicted `heatmaps[j]` for frame `centre + j - t/2`, with
    /// confidence in (0, 1].
    pub fn add_window(&mut self, centre: i64, heatmaps: impl IntoIterator<Item = H>, confidence: f32) {
        let half = (self.t / 2) as i64;
        for (j, h) in heatmaps.into_iter().enumerate() {
            let offset = j as i64 - half;
            self.add(centre + offset, offset, h, confidence);
        }
    }

    /// One prediction for `frame` (any increasing key, e.g. its pts) made by a window whose centre is
    /// `offset` frames away.
    pub fn add(&mut self, frame: i64, offset: i64, heatmap: H, confidence: f32) {
        let w = (-(offset * offset) as f32 / (2.0 * self.sigma * self.sigma)).exp() * confidence.max(0.0);
        if w > 0.0 {
            self.frames.entry(frame).or_default().push((w, heatmap));
        }
    }

    /// The fused heatmap of `frame` from what has arrived (then forgotten, with anything older);
    /// `None` if no window predicted it.
    pub fn take(&mut self, frame: i64) -> crate::Result<Option<H>> {
        let parts = self.frames.remove(&frame);
        self.frames.retain(|&f, _| f > frame);
        let Some(parts) = parts else { return Ok(None) };
        let total = parts.iter().map(|(w, _)| w).sum();
        Ok(Some(H::blend(&parts, total)?))
    }

    pub fn reset(&mut self) {
        self.frames.clear();
    }
}

/// One-Euro smoothing of a box (x0, y0, x1, y1).
#[derive(Default)]
pub struct BoxSmoother {
    filters: [OneEuro; 4],
}

impl BoxSmoother {
    pub fn smooth(&mut self, b: [f32; 4], dt: f32, params: &OneEuroParams) -> [f32; 4] {
        let mut out = b;
        for (v, f) in out.iter_mut().zip(&mut self.filters) {
            *v = f.filter(*v, dt, params);
        }
        out
    }

    pub fn reset(&mut self) {
        self.filters.iter_mut().for_each(OneEuro::reset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(seed: &mut u32) -> f32 {
        *seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (*seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    }

    #[test]
    fn the_budget_decides_how_many_future_windows_count() {
        const MS: u64 = 1_000_000;
        // STSA: 205 ms look-ahead, 20 ms compute, 40 ms frames.
        assert_eq!(future_windows(225 * MS, 205 * MS, 20 * MS, 40 * MS, 5), 0);
        assert_eq!(future_windows(265 * MS, 205 * MS, 20 * MS, 40 * MS, 5), 1);
        assert_eq!(future_windows(900 * MS, 205 * MS, 20 * MS, 40 * MS, 5), 2);
    }

    #[test]
    fn a_lone_centre_prediction_passes_unchanged() {
        let mut f = HeatmapFuser::new(5, 1.0);
        let h: Vec<Vec<f32>> = (0..5).map(|j| vec![j as f32 * 0.1; 4]).collect();
        f.add_window(10, h, 1.0);
        assert_eq!(f.take(10).unwrap().unwrap(), vec![0.2; 4]);
        assert!(f.take(9).unwrap().is_none(), "frame 9 is older than the last taken, so it is gone");
    }

    #[test]
    fn fusing_windows_reduces_noise_and_stays_causal() {
        let truth = 0.5f32;
        let mut seed = 7u32;
        let (mut err_centre, mut err_fused) = (0.0f32, 0.0f32);
        let mut fuser = HeatmapFuser::new(5, 1.5);
        let mut centre_only = HeatmapFuser::new(5, 1e-3);
        for b in 0..200i64 {
            let window: Vec<Vec<f32>> = (0..5).map(|_| vec![truth + noise(&mut seed) * 0.2]).collect();
            fuser.add_window(b, window.clone(), 1.0);
            centre_only.add_window(b, window, 1.0);
            // Frame b - 2 is due once window b (its last future window) is in.
            if b >= 2 {
                err_fused += (fuser.take(b - 2).unwrap().unwrap()[0] - truth).abs();
                err_centre += (centre_only.take(b - 2).unwrap().unwrap()[0] - truth).abs();
            }
        }
        assert!(err_fused < err_centre * 0.75, "fused {err_fused} vs centre only {err_centre}");
    }
}
