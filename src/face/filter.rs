//! The One-Euro filter (Casiez et al. 2012) for landmark coordinates: smooths jitter when the face is
//! still and follows quickly when it moves. Causal: each output depends on past samples only.

/// Filter parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneEuroParams {
    /// Cut-off frequency (Hz) at rest: lower = smoother when still.
    pub min_cutoff: f32,
    /// How fast the cut-off rises with speed: higher = less lag when moving.
    pub beta: f32,
    /// Cut-off (Hz) for the speed estimate.
    pub d_cutoff: f32,
}

impl Default for OneEuroParams {
    fn default() -> Self {
        OneEuroParams { min_cutoff: 1.0, beta: 0.05, d_cutoff: 1.0 }
    }
}

fn alpha(cutoff: f32, dt: f32) -> f32 {
    let tau = 1.0 / (2.0 * std::f32::consts::PI * cutoff);
    1.0 / (1.0 + tau / dt)
}

/// One filtered value.
#[derive(Clone, Debug, Default)]
pub struct OneEuro {
    prev: Option<(f32, f32)>, // (value, derivative)
}

impl OneEuro {
    /// Filters `x` taken `dt` seconds after the previous sample.
    pub fn filter(&mut self, x: f32, dt: f32, p: &OneEuroParams) -> f32 {
        let Some((prev, dprev)) = self.prev else {
            self.prev = Some((x, 0.0));
            return x;
        };
        let dt = dt.max(1e-4);
        let dx = (x - prev) / dt;
        let d = dprev + alpha(p.d_cutoff, dt) * (dx - dprev);
        let cutoff = p.min_cutoff + p.beta * d.abs();
        let y = prev + alpha(cutoff, dt) * (x - prev);
        self.prev = Some((y, d));
        y
    }

    pub fn reset(&mut self) {
        self.prev = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooths_noise_and_follows_steps() {
        let p = OneEuroParams { min_cutoff: 1.0, beta: 0.0, d_cutoff: 1.0 };
        let mut f = OneEuro::default();
        let noisy: Vec<f32> = (0..100).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let out: Vec<f32> = noisy.iter().map(|&x| f.filter(x, 0.04, &p)).collect();
        assert!(out[50..].iter().all(|v| v.abs() < 0.5), "alternating noise is damped");
        let mut f = OneEuro::default();
        let last = (0..200).map(|_| f.filter(10.0, 0.04, &p)).last().unwrap();
        assert!((last - 10.0).abs() < 1e-3, "a constant is kept");
    }
}
