//! What the viseme classifier hears: every 10 ms, the log energies of a 25 ms slice in 24 mel bands,
//! relative to the stream's running speech peak (so loud and quiet voices, near and far microphones give
//! the same numbers), and the slice's overall level on the same scale.
//!
//! The training tool (`examples/train_visemes.rs`) computes its features with this code too, from the
//! start of each synthesised stream, so the numbers the model learned from are the numbers it gets.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::audio::SAMPLE_RATE;

/// Samples between slices (10 ms).
pub const HOP: usize = 160;
/// Samples in a slice (25 ms).
pub const SLICE: usize = 400;
const FFT: usize = 512;
/// Mel bands.
pub const BANDS: usize = 24;
/// Numbers per slice: the bands and the level.
pub const FEATURES: usize = BANDS + 1;
const LOW_HZ: f32 = 80.0;
const HIGH_HZ: f32 = 7600.0;
/// The features of a slice of silence: everything at the bottom of the scale.
pub const SILENT: [f32; FEATURES] = [FLOOR; FEATURES];
/// Bottom of the scale: 80 dB under the speech peak (in units of 20 dB).
const FLOOR: f32 = -4.0;

fn mel(hz: f32) -> f32 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn hz(mel: f32) -> f32 {
    700.0 * (10f32.powf(mel / 2595.0) - 1.0)
}

/// One slice's band energies (dB), level (dB of the pre-emphasised 80-7000 Hz energy) and the share of
/// its band energy in the bands centred below 1 kHz: most of it in voiced speech (vowels, nasals,
/// /l r w/), a small part in frication and bursts (/s sh f t k/).
#[derive(Clone, Copy, Debug)]
pub struct Bands {
    pub db: [f32; BANDS],
    pub level: f32,
    pub low_share: f32,
}

/// The centre frequency of mel band `b`.
fn centre_hz(b: usize) -> f32 {
    hz(mel(LOW_HZ) + (mel(HIGH_HZ) - mel(LOW_HZ)) * (b + 1) as f32 / (BANDS + 1) as f32)
}

/// The analysis of one slice: Hann window, 512-point FFT, triangular mel filters.
pub struct LogMel {
    fft: Arc<dyn RealToComplex<f32>>,
    hann: Vec<f32>,
    /// Per band: its first FFT bin and the filter's weights from there.
    filters: Vec<(usize, Vec<f32>)>,
    /// Per FFT bin, the gain of a first-order pre-emphasis (the level is measured on it).
    emphasis: Vec<f32>,
    /// How many bands are centred below 1 kHz.
    low_bands: usize,
    input: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
}

impl Default for LogMel {
    fn default() -> Self {
        Self::new()
    }
}

impl LogMel {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FFT);
        let hann = (0..SLICE).map(|i| (std::f32::consts::PI * (i as f32 + 0.5) / SLICE as f32).sin().powi(2)).collect();
        let bin_hz = SAMPLE_RATE as f32 / FFT as f32;
        let edges: Vec<f32> = (0..BANDS + 2)
            .map(|k| hz(mel(LOW_HZ) + (mel(HIGH_HZ) - mel(LOW_HZ)) * k as f32 / (BANDS + 1) as f32))
            .collect();
        let filters = (0..BANDS)
            .map(|b| {
                let (lo, mid, hi) = (edges[b], edges[b + 1], edges[b + 2]);
                let first = (lo / bin_hz).ceil() as usize;
                let last = ((hi / bin_hz).floor() as usize).max(first);
                let weights = (first..=last)
                    .map(|k| {
                        let f = k as f32 * bin_hz;
                        if f <= mid { (f - lo) / (mid - lo) } else { (hi - f) / (hi - mid) }.max(0.0)
                    })
                    .collect::<Vec<f32>>();
                // Narrow low bands can fall between bins: they take the nearest bin whole.
                if weights.iter().all(|&w| w == 0.0) {
                    ((mid / bin_hz).round() as usize, vec![1.0])
                } else {
                    (first, weights)
                }
            })
            .collect();
        let spectrum = fft.make_output_vec();
        let emphasis = (0..spectrum.len())
            .map(|k| {
                let w = std::f32::consts::TAU * k as f32 / FFT as f32;
                1.0 + 0.97 * 0.97 - 2.0 * 0.97 * w.cos()
            })
            .collect();
        let scratch = fft.make_scratch_vec();
        let low_bands = (0..BANDS).take_while(|&b| centre_hz(b) < 1000.0).count();
        LogMel { fft, hann, filters, emphasis, low_bands, input: vec![0.0; FFT], spectrum, scratch }
    }

    /// The bands of the slice centred on sample `centre` of `audio` (samples outside it are silence).
    pub fn analyse(&mut self, audio: &[f32], centre: isize) -> Bands {
        let start = centre - SLICE as isize / 2;
        self.input.fill(0.0);
        for (i, w) in self.hann.iter().enumerate() {
            let k = start + i as isize;
            if k >= 0 && (k as usize) < audio.len() {
                self.input[i] = audio[k as usize] * w;
            }
        }
        self.fft.process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch).expect("fixed sizes");
        // Energy to mean-square level (Parseval with the Hann window's power).
        let norm = 2.0 / (FFT as f32 * SLICE as f32 * 0.375);
        let mut db = [0.0f32; BANDS];
        let (mut low, mut all) = (0.0f32, 0.0f32);
        for (b, (d, (first, weights))) in db.iter_mut().zip(&self.filters).enumerate() {
            let e: f32 = weights.iter().zip(&self.spectrum[*first..]).map(|(w, c)| w * c.norm_sqr()).sum();
            *d = 10.0 * (e * norm + 1e-12).log10();
            all += e;
            if b < self.low_bands {
                low += e;
            }
        }
        let bin_hz = SAMPLE_RATE as f32 / FFT as f32;
        let (lo, hi) = ((80.0 / bin_hz) as usize, (7000.0 / bin_hz) as usize);
        let emphasised: f32 =
            self.spectrum[lo..hi].iter().zip(&self.emphasis[lo..hi]).map(|(c, g)| c.norm_sqr() * g).sum();
        let low_share = if all > 0.0 { low / all } else { 0.0 };
        Bands { db, level: 10.0 * (emphasised * norm + 1e-12).log10(), low_share }
    }
}

/// What the features are measured from: the stream's running speech peak (set by the first slice louder
/// than -50 dBFS, it jumps up with louder speech and decays 3 dB a second) and the running mean of the
/// bands over the slices within 30 dB of it (about the last second of speech), which the bands are taken
/// relative to, so a voice's and a microphone's colouring cancel out.
#[derive(Clone, Copy, Debug, Default)]
pub struct LevelReference {
    peak: Option<f32>,
    mean: Option<[f32; BANDS]>,
}

impl LevelReference {
    const MIN_PEAK: f32 = -50.0;
    const DECAY_PER_SLICE: f32 = 3.0 * HOP as f32 / SAMPLE_RATE as f32;
    /// The running mean's weight per speech slice.
    const MEAN_RATE: f32 = 0.01;

    pub fn reset(&mut self) {
        self.peak = None;
        self.mean = None;
    }

    /// The features of the next slice of the stream.
    pub fn features(&mut self, bands: &Bands) -> [f32; FEATURES] {
        let peak = match self.peak {
            Some(p) => bands.level.max(p - Self::DECAY_PER_SLICE).max(Self::MIN_PEAK),
            None if bands.level > Self::MIN_PEAK => bands.level,
            None => return SILENT,
        };
        self.peak = Some(peak);
        let relative = bands.db.map(|d| ((d - peak) / 20.0).clamp(FLOOR, 1.0));
        let speech = bands.level > peak - 30.0;
        let mean = match (self.mean.as_mut(), speech) {
            (Some(m), true) => {
                for (m, r) in m.iter_mut().zip(&relative) {
                    *m += (r - *m) * Self::MEAN_RATE;
                }
                *m
            }
            (Some(m), false) => *m,
            (None, _) => *self.mean.insert(relative),
        };
        let mut out = [0.0f32; FEATURES];
        for (o, (r, m)) in out.iter_mut().zip(relative.iter().zip(&mean)) {
            *o = r - m;
        }
        out[BANDS] = ((bands.level - peak) / 20.0).clamp(FLOOR, 0.0);
        out
    }
}

/// The features of a whole recording, slice by slice from its start (slice `n` is centred on sample
/// `n * HOP`), as a stream would compute them.
pub fn features_of(audio: &[f32]) -> Vec<[f32; FEATURES]> {
    let mut mel = LogMel::new();
    let mut reference = LevelReference::default();
    (0..audio.len().div_ceil(HOP)).map(|n| reference.features(&mel.analyse(audio, (n * HOP) as isize))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f32, amp: f32, n: usize) -> Vec<f32> {
        (0..n).map(|i| amp * (std::f32::consts::TAU * hz * i as f32 / SAMPLE_RATE as f32).sin()).collect()
    }

    #[test]
    fn a_tone_lights_its_band_and_the_level_ignores_gain() {
        let bands = LogMel::new().analyse(&tone(1000.0, 0.3, 16000), 8000).db;
        let band = (0..BANDS).max_by(|&a, &b| bands[a].total_cmp(&bands[b])).unwrap();
        assert!((centre_hz(band) - 1000.0).abs() < 150.0, "band {band} at {} Hz", centre_hz(band));
        // 20 dB apart, the features are the same.
        let loud = features_of(&tone(1000.0, 0.3, 16000));
        let quiet = features_of(&tone(1000.0, 0.03, 16000));
        for (k, (a, b)) in loud[50].iter().zip(&quiet[50]).enumerate() {
            // Near the tone exactly; far from it, within the leakage's rounding.
            let tolerance = if k.abs_diff(band) <= 2 || k == BANDS { 0.01 } else { 0.2 };
            assert!((a - b).abs() < tolerance, "{k}: {:?}\n{:?}", loud[50], quiet[50]);
        }
        assert!(loud[50][BANDS].abs() < 0.05, "at the peak: {}", loud[50][BANDS]);
    }

    #[test]
    fn voiced_sound_lies_low_and_frication_high() {
        let mut mel = LogMel::new();
        // A vowel: harmonics of 120 Hz, strongest around 500 Hz.
        let vowel: Vec<f32> = (0..4000)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                (1..30)
                    .map(|h| (std::f32::consts::TAU * 120.0 * h as f32 * t).sin() / (1.0 + (h as f32 - 4.0).abs()))
                    .sum()
            })
            .collect();
        // An /s/: noise differenced twice, its energy rising to the top of the band.
        let hiss: Vec<f32> =
            crate::audio::test_signals::noise(7, 4002).windows(3).map(|w| w[0] - 2.0 * w[1] + w[2]).collect();
        let (v, s) = (mel.analyse(&vowel, 2000).low_share, mel.analyse(&hiss, 2000).low_share);
        assert!(v > 0.8 && s < 0.05, "vowel {v}, hiss {s}");
    }

    #[test]
    fn silence_is_the_bottom_of_the_scale() {
        assert!(features_of(&[0.0; 3200]).iter().all(|f| *f == SILENT));
        let mut audio = tone(300.0, 0.2, 8000);
        audio.extend(vec![0.0; 8000]);
        let f = features_of(&audio);
        assert!(f[20][BANDS] > -0.1 && f[90][BANDS] == FLOOR, "{} {}", f[20][BANDS], f[90][BANDS]);
        // The bands are relative to the speech's running mean: a steady tone's shrink towards 0.
        let largest = |f: &[f32; FEATURES]| f[..BANDS].iter().fold(0.0f32, |m, b| m.max(b.abs()));
        assert!(largest(&f[45]) < 0.8 * largest(&f[3]), "{:?}\n{:?}", f[3], f[45]);
    }
}
