//! How much the mouth trembles: the mean absolute second difference of the 40 lip and 17 jaw landmarks
//! over time, divided by the face size. A steady or smoothly moving mouth scores near 0; frame-to-frame
//! landmark noise raises it. Used to check that smoothing helps (and by later renderers' tests).

use crate::face::landmarks::CONTENT_57;

/// Jitter of a sequence of 468-landmark frames (pixels); `None` with fewer than 3 frames.
pub fn mouth_jitter(frames: &[Vec<[f32; 3]>]) -> Option<f32> {
    if frames.len() < 3 {
        return None;
    }
    let size = |lm: &[[f32; 3]]| {
        let (mut x0, mut x1) = (f32::MAX, f32::MIN);
        for p in lm {
            x0 = x0.min(p[0]);
            x1 = x1.max(p[0]);
        }
        (x1 - x0).max(1.0)
    };
    let mut total = 0.0f64;
    let mut n = 0usize;
    for w in frames.windows(3) {
        let s = size(&w[1]) as f64;
        for &id in &CONTENT_57 {
            let i = id as usize;
            for ((a, b), c) in w[0][i].iter().zip(&w[1][i]).zip(&w[2][i]).take(2) {
                let d2 = *a as f64 - 2.0 * *b as f64 + *c as f64;
                total += d2.abs() / s;
                n += 1;
            }
        }
    }
    Some((total / n as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_motion_has_no_jitter_and_noise_has_some() {
        let base: Vec<[f32; 3]> = (0..468).map(|i| [i as f32 % 100.0, (i / 100) as f32 * 10.0, 0.0]).collect();
        let moving: Vec<Vec<[f32; 3]>> =
            (0..10).map(|t| base.iter().map(|p| [p[0] + t as f32 * 2.0, p[1], 0.0]).collect()).collect();
        assert!(mouth_jitter(&moving).unwrap() < 1e-6);
        let noisy: Vec<Vec<[f32; 3]>> = (0..10)
            .map(|t| base.iter().map(|p| [p[0] + if t % 2 == 0 { 1.0 } else { -1.0 }, p[1], 0.0]).collect())
            .collect();
        assert!(mouth_jitter(&noisy).unwrap() > 0.01);
        assert!(mouth_jitter(&moving[..2]).is_none());
    }
}
