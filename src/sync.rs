//! Measuring lip sync: the offset between the audio and the mouth in a video, found by
//! cross-correlating the speech loudness envelope with the mouth opening the face tracker measures on
//! each frame. A positive offset means the mouth moves after the sound.

/// The best alignment found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SyncEstimate {
    /// Frames the mouth lags the audio (negative: leads).
    pub offset_frames: i32,
    /// Pearson correlation at that offset.
    pub correlation: f32,
}

fn standardise(v: &[f32]) -> Vec<f32> {
    let n = v.len().max(1) as f32;
    let mean = v.iter().sum::<f32>() / n;
    let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n).sqrt().max(1e-9);
    v.iter().map(|x| (x - mean) / sd).collect()
}

/// Pearson correlation of `a[i]` with `b[i + lag]` over the overlap.
fn correlation_at(a: &[f32], b: &[f32], lag: i32) -> f32 {
    let pairs: Vec<(f32, f32)> = (0..a.len() as i32)
        .filter_map(|i| {
            let j = i + lag;
            (j >= 0 && (j as usize) < b.len()).then(|| (a[i as usize], b[j as usize]))
        })
        .collect();
    if pairs.len() < 3 {
        return 0.0;
    }
    let (xs, ys): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
    let (xs, ys) = (standardise(&xs), standardise(&ys));
    xs.iter().zip(&ys).map(|(x, y)| x * y).sum::<f32>() / xs.len() as f32
}

/// The lag in `-max_lag..=max_lag` frames where the mouth opening best follows the loudness.
pub fn estimate_offset(loudness: &[f32], mouth_opening: &[f32], max_lag: i32) -> SyncEstimate {
    let (a, b) = (standardise(loudness), standardise(mouth_opening));
    (-max_lag..=max_lag)
        .map(|lag| SyncEstimate { offset_frames: lag, correlation: correlation_at(&a, &b, lag) })
        .max_by(|x, y| x.correlation.total_cmp(&y.correlation))
        .unwrap_or(SyncEstimate { offset_frames: 0, correlation: 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_known_shift() {
        let sound: Vec<f32> = (0..200).map(|i| ((i as f32 * 0.37).sin() * (i as f32 * 0.11).cos()).abs()).collect();
        let mouth: Vec<f32> = (0..200).map(|i| if i >= 3 { sound[i - 3] } else { 0.0 }).collect();
        let e = estimate_offset(&sound, &mouth, 10);
        assert_eq!(e.offset_frames, 3);
        assert!(e.correlation > 0.95);
    }
}
