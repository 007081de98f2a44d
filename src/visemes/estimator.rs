//! Streaming viseme estimation: from the audio windows of successive video frames, the probability of
//! each [`Viseme`] for every 10 ms slice of the stream, each slice analysed and classified once.
//!
//! Slice `n` is centred on stream time `n x 10 ms`. A frame's window adds the slices whose 25 ms span
//! it now covers (about four per frame at 25 fps); a slice is classified once the slices of its
//! [`CONTEXT`] are known, so the classified slices end [`LOOK_AHEAD_NS`](super::model::LOOK_AHEAD_NS) before the window does. A window
//! that does not continue the previous one (a seek, a gap, a new stream) starts afresh.

use std::collections::VecDeque;

use super::features::{FEATURES, HOP, LevelReference, LogMel, SILENT, SLICE};
use super::model::{CONTEXT, INPUTS, Scratch, VisemeModel};
use super::phonemes::Viseme;
use crate::audio::NS_PER_SAMPLE;

/// Nanoseconds between slices.
pub const SLICE_NS: i64 = HOP as i64 * NS_PER_SAMPLE as i64;
/// Slices kept behind the newest.
const KEEP: usize = 64;

/// Viseme probabilities of one slice.
pub type Probabilities = [f32; Viseme::COUNT];

pub struct VisemeEstimator {
    model: &'static VisemeModel,
    mel: LogMel,
    reference: LevelReference,
    /// Features of slices `first..first + features.len()`.
    features: VecDeque<[f32; FEATURES]>,
    first: i64,
    /// Probabilities of slices `first_classified..`.
    classified: VecDeque<Probabilities>,
    first_classified: i64,
    input: Box<[f32; INPUTS]>,
    scratch: Scratch,
}

impl Default for VisemeEstimator {
    fn default() -> Self {
        Self::new(VisemeModel::embedded())
    }
}

impl VisemeEstimator {
    pub fn new(model: &'static VisemeModel) -> Self {
        VisemeEstimator {
            model,
            mel: LogMel::new(),
            reference: LevelReference::default(),
            features: VecDeque::with_capacity(KEEP + 16),
            first: 0,
            classified: VecDeque::with_capacity(KEEP + 16),
            first_classified: 0,
            input: Box::new([0.0; INPUTS]),
            scratch: Scratch::default(),
        }
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        self.reference.reset();
        self.features.clear();
        self.classified.clear();
    }

    /// Takes in the audio of a window starting at stream time `start_ns` (negative: before the stream,
    /// where `audio` holds silence): analyses the slices it adds and classifies those it can.
    pub fn update(&mut self, start_ns: i64, audio: &[f32]) {
        let _span = tracing::trace_span!("visemes").entered();
        let half = (SLICE / 2) as i64;
        let start = start_ns.div_euclid(NS_PER_SAMPLE as i64);
        let end = start + audio.len() as i64;
        let (lo, hi) = ((start + half).div_euclid(HOP as i64) + 1, (end - half).div_euclid(HOP as i64));
        if hi < lo {
            return;
        }
        let next = self.first + self.features.len() as i64;
        if self.features.is_empty() || next < lo || next > hi + 1 {
            self.reset();
            self.first = lo;
            self.first_classified = lo;
        }
        for n in self.first + self.features.len() as i64..=hi {
            let bands = self.mel.analyse(audio, (n * HOP as i64 - start) as isize);
            self.features.push_back(self.reference.features(&bands));
        }
        let reach = *CONTEXT.last().expect("a context");
        let newest = self.first + self.features.len() as i64 - 1;
        for n in self.first_classified + self.classified.len() as i64..=newest - reach as i64 {
            for (k, &o) in CONTEXT.iter().enumerate() {
                let f = *self.feature(n + o as i64);
                self.input[k * FEATURES..(k + 1) * FEATURES].copy_from_slice(&f);
            }
            self.classified.push_back(self.model.probabilities(&self.input, &mut self.scratch));
        }
        while self.features.len() > KEEP {
            self.features.pop_front();
            self.first += 1;
        }
        while self.classified.len() > KEEP {
            self.classified.pop_front();
            self.first_classified += 1;
        }
    }

    fn feature(&self, n: i64) -> &[f32; FEATURES] {
        let i = n - self.first;
        if i >= 0 && (i as usize) < self.features.len() { &self.features[i as usize] } else { &SILENT }
    }

    /// The probabilities of slice `n` (centred on `n x 10 ms`), once classified and while kept.
    pub fn probabilities(&self, n: i64) -> Option<&Probabilities> {
        let i = n - self.first_classified;
        if i < 0 { None } else { self.classified.get(i as usize) }
    }

    /// The newest classified slice.
    pub fn newest(&self) -> Option<i64> {
        (!self.classified.is_empty()).then(|| self.first_classified + self.classified.len() as i64 - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::visemes::features::features_of;

    /// A sound with pauses: vowel-like bursts and fricative-like noise.
    fn speechlike(n: usize) -> Vec<f32> {
        let noise = crate::audio::test_signals::noise(7, n);
        (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                match (i / 2400) % 4 {
                    0 => 0.2 * (std::f32::consts::TAU * 140.0 * t).sin() * (std::f32::consts::TAU * 700.0 * t).sin(),
                    1 => 0.05 * noise[i],
                    2 => 0.0,
                    _ => 0.1 * (std::f32::consts::TAU * 300.0 * t).sin(),
                }
            })
            .collect()
    }

    #[test]
    fn frame_windows_give_the_slices_of_the_whole_recording() {
        // Windows of 100 ms back and 100 ms ahead, every 40 ms: each slice is classified once, from the
        // same features as the whole recording's.
        let audio = speechlike(32_000);
        let whole = features_of(&audio);
        let mut e = VisemeEstimator::default();
        let (before, after) = (1600i64, 1600i64);
        let mut seen = Vec::new();
        for k in 0..45i64 {
            let pts = k * 640;
            let window: Vec<f32> = (pts - before..pts + after)
                .map(|i| if i >= 0 { audio.get(i as usize).copied().unwrap_or(0.0) } else { 0.0 })
                .collect();
            e.update((pts - before) * NS_PER_SAMPLE as i64, &window);
            if let Some(n) = e.newest() {
                seen.push(n);
            }
        }
        assert!(seen.windows(2).all(|w| w[1] >= w[0]) && *seen.last().unwrap() > 150, "{seen:?}");
        // The estimator's features match the whole recording's from its first slice on.
        let n = e.newest().unwrap() - 5;
        let f = e.feature(n);
        assert!(f.iter().zip(&whole[n as usize]).all(|(a, b)| (a - b).abs() < 1e-4), "slice {n}");
        let p = e.probabilities(n).expect("a recent slice is kept");
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn a_jump_starts_afresh() {
        let audio = speechlike(3200);
        let mut e = VisemeEstimator::default();
        e.update(0, &audio);
        let newest = e.newest().unwrap();
        e.update(10_000_000_000, &audio);
        assert!(e.newest().unwrap() > newest + 900);
        assert!(e.probabilities(newest).is_none());
    }
}
