//! The loudness envelope of speech per video frame: RMS of the 16 kHz signal after a first-order
//! pre-emphasis (which favours the formant band over low-frequency rumble), over each frame's interval.
//! The lip-sync measurement compares it with the mouth opening.

/// RMS per frame of `fps` frames per second over `samples` (16 kHz), after pre-emphasis.
pub fn frame_loudness(samples: &[f32], fps: f32) -> Vec<f32> {
    let per_frame = super::SAMPLE_RATE as f32 / fps;
    let n = (samples.len() as f32 / per_frame).floor() as usize;
    (0..n)
        .map(|k| {
            let (a, b) = ((k as f32 * per_frame) as usize, (((k + 1) as f32 * per_frame) as usize).min(samples.len()));
            let mut prev = if a > 0 { samples[a - 1] } else { 0.0 };
            let mut sum = 0.0f64;
            for &s in &samples[a..b] {
                let e = s - 0.97 * prev;
                prev = s;
                sum += (e * e) as f64;
            }
            ((sum / (b - a).max(1) as f64).sqrt()) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_frames_are_louder() {
        // 1 s: silence, then a 1 kHz tone from 0.5 s.
        let s: Vec<f32> = (0..16000)
            .map(|i| if i >= 8000 { (i as f32 * std::f32::consts::TAU * 1000.0 / 16000.0).sin() * 0.5 } else { 0.0 })
            .collect();
        let l = frame_loudness(&s, 25.0);
        assert_eq!(l.len(), 25);
        assert!(l[..12].iter().all(|&v| v < 1e-6));
        assert!(l[13..].iter().all(|&v| v > 0.1));
    }
}
