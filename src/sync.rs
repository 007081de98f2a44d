//! Measuring lip sync: the offset between the audio and the mouth in a video, found by
//! cross-correlating the speech loudness envelope with the mouth opening the face tracker measures on
//! each frame. A positive offset means the mouth moves after the sound. `lipsync measure` and the
//! lip-sync tests use [`measure`].

use crate::audio::envelope::frame_loudness;
use crate::error::Result;
use crate::face::FaceTracker;
use crate::face::filter::{OneEuro, OneEuroParams};
use crate::frame::VideoFrame;
use crate::guidance::jitter::mouth_jitter;

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

/// How open a mouth is: the inner-lip gap (landmarks 13-14) over the distance between the outer eye
/// corners (33-263), so it does not depend on the face's size in the picture. Points are (x, y) or (x, y, z).
pub fn mouth_opening<const N: usize>(landmarks: &[[f32; N]]) -> f32 {
    let d = |a: usize, b: usize| (landmarks[a][0] - landmarks[b][0]).hypot(landmarks[a][1] - landmarks[b][1]);
    d(13, 14) / d(33, 263).max(1e-3)
}

/// What [`measure`] found in a video.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncReport {
    pub estimate: SyncEstimate,
    /// Frames measured, and how many of them had a face.
    pub frames: usize,
    pub faces: usize,
    /// Mouth opening per frame (the last one carried over frames without a face).
    pub opening: Vec<f32>,
    /// Mouth-landmark jitter ([`mouth_jitter`]) over the frames with a face, of MediaPipe's raw landmarks.
    pub jitter: Option<f32>,
    /// The same after the One-Euro filter the engine's tracker applies ([`OneEuroParams::default`]),
    /// which removes most of the tracker's own noise: closer to the tremble a viewer sees.
    pub jitter_smoothed: Option<f32>,
}

/// Tracks the face in `frames` (25 fps, the first at the start of `audio`, 16 kHz) and relates the mouth
/// opening to the loudness, searching offsets up to `max_lag` frames either way.
pub fn measure(frames: &[VideoFrame], audio: &[f32], tracker: &mut FaceTracker, max_lag: i32) -> Result<SyncReport> {
    let loudness = frame_loudness(audio, 25.0);
    let n = frames.len().min(loudness.len());
    let (mut opening, mut tracks) = (Vec::with_capacity(n), Vec::new());
    let mut last = 0.0;
    for frame in &frames[..n] {
        if let Some(face) = tracker.track(frame)? {
            last = mouth_opening(&face.landmarks);
            tracks.push(face.landmarks);
        }
        opening.push(last);
    }
    Ok(SyncReport {
        estimate: estimate_offset(&loudness[..n], &opening, max_lag),
        frames: n,
        faces: tracks.len(),
        opening,
        jitter: mouth_jitter(&tracks),
        jitter_smoothed: mouth_jitter(&smooth_tracks(&tracks)),
    })
}

/// The One-Euro filter over a landmark sequence at 25 fps, as the tracker applies it.
fn smooth_tracks(tracks: &[Vec<[f32; 3]>]) -> Vec<Vec<[f32; 3]>> {
    let params = OneEuroParams::default();
    let mut filters = vec![OneEuro::default(); tracks.first().map_or(0, |t| t.len() * 3)];
    tracks
        .iter()
        .map(|lm| {
            let mut out = lm.clone();
            for (v, f) in out.iter_mut().flatten().zip(&mut filters) {
                *v = f.filter(*v, 0.04, &params);
            }
            out
        })
        .collect()
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
