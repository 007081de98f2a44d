//! Measuring lip sync: the offset between the audio and the mouth in a video, found by
//! cross-correlating the speech loudness envelope with the mouth opening the face tracker measures on
//! each frame. A positive offset means the mouth moves after the sound. `lipsync measure` and the
//! lip-sync tests use [`measure`]; given the speech's timed phonemes, [`viseme_scores`] says whether the
//! mouth takes the shapes they call for.

use std::borrow::Borrow;

use crate::audio::envelope::frame_loudness;
use crate::error::Result;
use crate::face::FaceTracker;
use crate::face::filter::{OneEuro, OneEuroParams};
use crate::frame::VideoFrame;
use crate::guidance::jitter::mouth_jitter;
use crate::visemes::{PhonemeTrack, Viseme};

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
    across_eyes(landmarks, 13, 14)
}

/// The distance between landmarks `a` and `b` over the distance between the outer eye corners.
fn across_eyes<const N: usize>(landmarks: &[[f32; N]], a: usize, b: usize) -> f32 {
    let d = |a: usize, b: usize| (landmarks[a][0] - landmarks[b][0]).hypot(landmarks[a][1] - landmarks[b][1]);
    d(a, b) / d(33, 263).max(1e-3)
}

/// How wide a mouth is: corner to corner (landmarks 61-291) over the distance between the outer eye
/// corners.
pub fn mouth_width<const N: usize>(landmarks: &[[f32; N]]) -> f32 {
    across_eyes(landmarks, 61, 291)
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
    /// Mouth width per frame ([`mouth_width`], carried over the same way).
    pub width: Vec<f32>,
    /// Mouth-landmark jitter ([`mouth_jitter`]) over the frames with a face, of MediaPipe's raw landmarks.
    pub jitter: Option<f32>,
    /// The same after the One-Euro filter the engine's tracker applies ([`OneEuroParams::default`]),
    /// which removes most of the tracker's own noise: closer to the tremble a viewer sees.
    pub jitter_smoothed: Option<f32>,
}

/// Tracks the face in `frames` (25 fps, the first at the start of `audio`, 16 kHz) and relates the mouth
/// opening to the loudness, searching offsets up to `max_lag` frames either way. The frames are taken one
/// at a time (a decoder's, or a slice's with `frames.iter().map(Ok)`), as far as the audio goes.
pub fn measure<F: Borrow<VideoFrame>>(
    frames: impl IntoIterator<Item = Result<F>>,
    audio: &[f32],
    tracker: &mut FaceTracker,
    max_lag: i32,
) -> Result<SyncReport> {
    let loudness = frame_loudness(audio, 25.0);
    let (mut opening, mut width, mut tracks) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = (0.0, 0.0);
    for frame in frames.into_iter().take(loudness.len()) {
        if let Some(face) = tracker.track(frame?.borrow())? {
            last = (mouth_opening(&face.landmarks), mouth_width(&face.landmarks));
            tracks.push(face.landmarks);
        }
        opening.push(last.0);
        width.push(last.1);
    }
    let n = opening.len();
    Ok(SyncReport {
        estimate: estimate_offset(&loudness[..n], &opening, max_lag),
        frames: n,
        faces: tracks.len(),
        opening,
        width,
        jitter: mouth_jitter(&tracks),
        jitter_smoothed: mouth_jitter(&smooth_tracks(&tracks)),
    })
}

/// How well a video's mouth shows the visemes of its speech ([`viseme_scores`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VisemeScores {
    /// /p b m/ phonemes, and the share of them where the lips met: the smallest lip gap of the frames
    /// shown from 40 ms before the phoneme to 20 ms after it is at most 0.15 x the median gap at open
    /// vowels' midpoints.
    pub closures: usize,
    pub closure_hit_rate: Option<f32>,
    /// P(width at a spread vowel's midpoint > width at a round vowel's midpoint), the width relative to
    /// its median on silent frames.
    pub round_spread_auc: Option<f32>,
    /// P(gap at an open vowel's midpoint > gap at a /p b m/ midpoint).
    pub open_closed_auc: Option<f32>,
}

/// P(a > b) over every pair (ties count half); `None` when either side is empty.
pub fn auc(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let wins: f32 = a
        .iter()
        .flat_map(|x| {
            b.iter().map(move |y| {
                if x > y {
                    1.0
                } else if x == y {
                    0.5
                } else {
                    0.0
                }
            })
        })
        .sum();
    Some(wins / (a.len() * b.len()) as f32)
}

fn median(mut v: Vec<f32>) -> Option<f32> {
    v.sort_by(f32::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// Scores the mouth of a video against the timed phonemes of its speech: `gap` and `width` per frame
/// (from [`measure`]), frame `k` shown from `k / fps` seconds, the phonemes' times from the video's start.
pub fn viseme_scores(gap: &[f32], width: &[f32], fps: f32, track: &PhonemeTrack) -> VisemeScores {
    let frame_of = |t: f64| ((t * fps as f64).floor().max(0.0) as usize).min(gap.len().saturating_sub(1));
    let midpoints = |v: Viseme| -> Vec<usize> {
        track
            .phonemes()
            .iter()
            .filter(|p| p.viseme == v && (p.start + p.end) * 0.5 * (fps as f64) < gap.len() as f64)
            .map(|p| frame_of((p.start + p.end) * 0.5))
            .collect()
    };
    let silent = median(midpoints(Viseme::Silence).iter().map(|&k| width[k]).collect()).unwrap_or(1.0).max(1e-6);
    let relative = |frames: Vec<usize>| -> Vec<f32> { frames.iter().map(|&k| width[k] / silent).collect() };
    let gaps = |frames: Vec<usize>| -> Vec<f32> { frames.iter().map(|&k| gap[k]).collect() };
    let open = gaps(midpoints(Viseme::Open));
    let closed = gaps(midpoints(Viseme::Bilabial));
    let threshold = median(open.clone()).map(|m| 0.15 * m);
    let bilabials: Vec<_> = track
        .phonemes()
        .iter()
        .filter(|p| p.viseme == Viseme::Bilabial && p.start * (fps as f64) < gap.len() as f64)
        .collect();
    let hits = threshold.map(|limit| {
        bilabials
            .iter()
            .filter(|p| {
                let (first, last) = (frame_of(p.start - 0.04), frame_of(p.end + 0.02));
                gap[first..=last.max(first)].iter().copied().fold(f32::MAX, f32::min) <= limit
            })
            .count()
    });
    VisemeScores {
        closures: bilabials.len(),
        closure_hit_rate: hits.filter(|_| !bilabials.is_empty()).map(|h| h as f32 / bilabials.len() as f32),
        round_spread_auc: auc(&relative(midpoints(Viseme::Spread)), &relative(midpoints(Viseme::Round))),
        open_closed_auc: auc(&open, &closed),
    }
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

    #[test]
    fn viseme_scores_count_closures_and_rank_shapes() {
        // 25 fps: pau 0-0.2, m 0.2-0.32, aa 0.32-0.6, p 0.6-0.68, iy 0.68-0.92, uw 0.92-1.2, pau to 1.4.
        let track = PhonemeTrack::parse(
            "#\n0.2 100 pau\n0.32 100 m\n0.6 100 aa\n0.68 100 p\n0.92 100 iy\n1.2 100 uw\n1.4 100 pau\n",
        )
        .unwrap();
        let t = |k: usize| k as f32 * 0.04;
        let gap: Vec<f32> =
            (0..35).map(|k| if (0.32..0.6).contains(&t(k)) || t(k) >= 0.68 { 0.2 } else { 0.0 }).collect();
        let width: Vec<f32> = (0..35)
            .map(|k| {
                if (0.68..0.92).contains(&t(k)) {
                    1.1
                } else if t(k) >= 0.92 {
                    0.9
                } else {
                    1.0
                }
            })
            .collect();
        let s = viseme_scores(&gap, &width, 25.0, &track);
        assert_eq!((s.closures, s.closure_hit_rate), (2, Some(1.0)));
        assert_eq!((s.round_spread_auc, s.open_closed_auc), (Some(1.0), Some(1.0)));
        // A mouth that never closes misses both; one that rounds for /i/ ranks backwards.
        let open = vec![0.2; 35];
        let flipped: Vec<f32> = width.iter().map(|w| 2.0 - w).collect();
        let s = viseme_scores(&open, &flipped, 25.0, &track);
        assert_eq!((s.closure_hit_rate, s.round_spread_auc, s.open_closed_auc), (Some(0.0), Some(0.0), Some(0.5)));
    }
}
