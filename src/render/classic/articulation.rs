//! Audio to mouth shape, the first stage of the classic renderer: from the 16 kHz audio around a frame,
//! how far the jaw drops, how far the lips part beyond it and how much they spread or round.
//!
//! Every 10 ms a 25 ms Hann-windowed slice is analysed (512-point FFT). Its speech level (pre-emphasised,
//! so the 1-4 kHz region where the mouth's opening shows most in the sound counts most), set against an
//! adaptive peak and noise floor (so loud and quiet speakers both use the whole range and background noise
//! keeps the mouth shut), gives the opening. The first formant's frequency (the 200-1000 Hz centroid)
//! opens the jaw further for open vowels, the spectral centroid spreads (/i/, /e/) or rounds (/o/, /u/)
//! the lips, and frication (2500-7000 Hz) lowers the jaw with the lips nearly closed (/s/, /f/).
//! Coarticulation is a Gaussian over the slices around the frame reaching 60 ms ahead (the only
//! look-ahead the renderer asks for), followed by a critically damped follower.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use crate::audio::{AudioWindow, SAMPLE_RATE};

/// The audio window the articulation reads around each frame.
pub const WINDOW: AudioWindow = AudioWindow { before: 100_000_000, after: 60_000_000 };

const SLICE: usize = 400; // 25 ms
const FFT: usize = 512;
const HOP: usize = 160; // 10 ms
/// Slices end at most at the window's end: centres from 47.5 ms after the frame back in 10 ms hops.
const SLICES: usize = 11;
const LAST_CENTRE_MS: f32 = 47.5;
/// Coarticulation: a Gaussian over the slices, centred 30 ms after the frame's pts (the display interval
/// is 40 ms long, and the follower below lags about 10 ms), σ = 30 ms. Measured on real speech, this
/// puts the mouth at zero offset from the sound.
const KERNEL_CENTRE_MS: f32 = 50.0;
const SIGMA_MS: f32 = 30.0;
/// The pose then goes through two one-pole low-passes (a critically damped follower): a mouth has mass,
/// so it does not jump from frame to frame with every change of level.
const FOLLOW: f32 = 0.45;

/// Where the mouth should be for one frame, each in 0..=1 except `spread` (-1 rounded .. 1 spread).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MouthPose {
    /// Jaw drop.
    pub jaw: f32,
    /// Lip parting beyond the jaw's.
    pub lips: f32,
    /// Lip spreading (positive) or rounding (negative).
    pub spread: f32,
}

impl MouthPose {
    pub const CLOSED: MouthPose = MouthPose { jaw: 0.0, lips: 0.0, spread: 0.0 };

    /// Overall opening, what a viewer reads as "the mouth is open".
    pub fn opening(&self) -> f32 {
        (self.jaw + self.lips) * 0.5
    }
}

/// Per-slice measurements.
#[derive(Clone, Copy, Debug, Default)]
struct Slice {
    /// Speech level (dBFS).
    level: f32,
    /// Band energies: first formant, second formant, frication.
    f1: f32,
    f2: f32,
    high: f32,
    /// Energy-weighted frequency sum over 200-1000 Hz (over `f1_den`): where the first formant is.
    f1_num: f32,
    f1_den: f32,
    /// Energy-weighted frequency sum and energy over 300-4000 Hz (their ratio is the centroid).
    centroid_num: f32,
    centroid_den: f32,
}

fn smoothstep(lo: f32, hi: f32, x: f32) -> f32 {
    let t = ((x - lo) / (hi - lo)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Turns each frame's audio window into a [`MouthPose`]; keeps the level statistics of the stream.
pub struct Articulator {
    fft: Arc<dyn RealToComplex<f32>>,
    hann: Vec<f32>,
    /// Per FFT bin, the gain of a first-order pre-emphasis (1 - 0.97 z^-1): speech level is measured on
    /// the 1-4 kHz region where the mouth's opening shows most in the sound.
    emphasis: Vec<f32>,
    input: Vec<f32>,
    spectrum: Vec<realfft::num_complex::Complex<f32>>,
    scratch: Vec<realfft::num_complex::Complex<f32>>,
    /// Running speech peak (dBFS): set by the first sound above the quietest speech level, then jumps up
    /// and decays 6 dB/s.
    peak: Option<f32>,
    /// Running noise floor (dBFS): drops at once, rises 3 dB/s.
    floor: f32,
    last_pts: Option<u64>,
    smooth: [Option<MouthPose>; 2],
}

impl Default for Articulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Articulator {
    /// Quietest peak allowed: below it sound is treated as noise, not speech.
    const MIN_PEAK: f32 = -50.0;
    /// Noise floor before any sound: below anything real, so it drops to the first level heard.
    const INITIAL_FLOOR: f32 = -90.0;

    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FFT);
        let hann = (0..SLICE).map(|i| (std::f32::consts::PI * (i as f32 + 0.5) / SLICE as f32).sin().powi(2)).collect();
        let spectrum = fft.make_output_vec();
        let emphasis = (0..spectrum.len())
            .map(|k| {
                let w = std::f32::consts::TAU * k as f32 / FFT as f32;
                1.0 + 0.97 * 0.97 - 2.0 * 0.97 * w.cos()
            })
            .collect();
        let scratch = fft.make_scratch_vec();
        Articulator {
            fft,
            hann,
            emphasis,
            input: vec![0.0; FFT],
            spectrum,
            scratch,
            peak: None,
            floor: Self::INITIAL_FLOOR,
            last_pts: None,
            smooth: [None; 2],
        }
    }

    /// Forgets the stream's level statistics.
    pub fn reset(&mut self) {
        // The FFT plan and buffers stay; only the stream's statistics and follower go.
        self.peak = None;
        self.floor = Self::INITIAL_FLOOR;
        self.last_pts = None;
        self.smooth = [None; 2];
    }

    fn analyse(&mut self, audio: &[f32], centre: isize) -> Slice {
        let start = centre - SLICE as isize / 2;
        self.input.fill(0.0);
        for (i, w) in self.hann.iter().enumerate() {
            let k = start + i as isize;
            if k >= 0 && (k as usize) < audio.len() {
                self.input[i] = audio[k as usize] * w;
            }
        }
        self.fft.process_with_scratch(&mut self.input, &mut self.spectrum, &mut self.scratch).expect("fixed sizes");
        let bin_hz = SAMPLE_RATE as f32 / FFT as f32;
        let (mut f1, mut f2, mut high, mut cw, mut cs) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
        let (mut emphasised, mut f1w, mut f1s) = (0.0f32, 0.0f32, 0.0f32);
        for (k, c) in self.spectrum.iter().enumerate() {
            let f = k as f32 * bin_hz;
            let e = c.norm_sqr();
            if (80.0..7000.0).contains(&f) {
                emphasised += e * self.emphasis[k];
            }
            match f {
                f if (300.0..900.0).contains(&f) => f1 += e,
                f if (900.0..2500.0).contains(&f) => f2 += e,
                f if (2500.0..7000.0).contains(&f) => high += e,
                _ => {}
            }
            if (300.0..4000.0).contains(&f) {
                cw += e * f;
                cs += e;
            }
            if (200.0..1000.0).contains(&f) {
                f1w += e * f;
                f1s += e;
            }
        }
        // Energy to mean-square level of the slice (Parseval with the Hann window's power).
        let norm = 2.0 / (FFT as f32 * SLICE as f32 * 0.375);
        let speech = emphasised * norm;
        Slice {
            level: 10.0 * (speech + 1e-12).log10(),
            f1,
            f2,
            high,
            f1_num: f1w,
            f1_den: f1s,
            centroid_num: cw,
            centroid_den: cs,
        }
    }

    /// Opening of one slice: amplitude relative to the peak, compressed (so quiet syllables still show),
    /// gated above the noise floor.
    fn opening_of(&self, s: &Slice) -> f32 {
        let Some(peak) = self.peak else { return 0.0 };
        let gate = (self.floor + 8.0).max(peak - 40.0);
        let amplitude = 10f32.powf((s.level - (peak - 4.0)) / 20.0).min(1.0);
        amplitude.powf(0.8) * smoothstep(gate, gate + 8.0, s.level)
    }

    /// The pose of an opening and the slices' summed band energies (sums over the whole kernel are far
    /// steadier than per-slice ratios).
    fn pose_of(open: f32, s: &Slice) -> MouthPose {
        let ramp = |v: f32, lo: f32, hi: f32| ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
        // Open vowels have a high first formant (/a/ ~750 Hz), close ones a low one (/i/, /u/ ~300 Hz).
        let f1_hz = if s.f1_den > 0.0 { s.f1_num / s.f1_den } else { 0.0 };
        let vowel_open = ramp(f1_hz, 350.0, 700.0);
        let fric = ramp(s.high / (s.f1 + s.f2 + s.high + 1e-12), 0.35, 0.75);
        let centroid = if s.centroid_den > 0.0 { s.centroid_num / s.centroid_den } else { 0.0 };
        MouthPose {
            jaw: open * (0.7 + 0.3 * vowel_open) * (1.0 - 0.5 * fric),
            lips: open * (0.7 - 0.5 * fric),
            spread: ((centroid - 1400.0) / 900.0).clamp(-1.0, 1.0) * (open * 2.0).min(1.0),
        }
    }

    /// The pose for the frame at `pts` from its audio window (laid out as [`WINDOW`]; `missing` samples of
    /// it were not received and are silence).
    pub fn pose(&mut self, pts: u64, audio: &[f32], missing: usize) -> MouthPose {
        let _span = tracing::trace_span!("articulate").entered();
        let frame_at = (WINDOW.before / crate::audio::NS_PER_SAMPLE) as isize;
        if audio.is_empty() || missing >= audio.len() {
            return MouthPose::CLOSED;
        }
        let hop_ms = HOP as f32 * 1000.0 / SAMPLE_RATE as f32;
        let slices: Vec<(f32, Slice)> = (0..SLICES)
            .map(|k| {
                let ms = LAST_CENTRE_MS - k as f32 * hop_ms;
                let d = ms - KERNEL_CENTRE_MS;
                let w = (-(d * d) / (2.0 * SIGMA_MS * SIGMA_MS)).exp();
                (w, self.analyse(audio, frame_at + (ms * SAMPLE_RATE as f32 / 1000.0).round() as isize))
            })
            .collect();
        // Level statistics follow the slice nearest the kernel's centre.
        let dt = self.last_pts.map_or(0.04, |p| pts.saturating_sub(p) as f32 * 1e-9).min(1.0);
        self.last_pts = Some(pts);
        let now = slices[1].1.level;
        self.peak = match self.peak {
            // Never within 25 dB of the noise floor: pauses do not turn noise into speech.
            Some(p) => Some(now.max(p - 6.0 * dt).max(self.floor + 25.0).max(Self::MIN_PEAK)),
            None => (now > Self::MIN_PEAK).then_some(now),
        };
        self.floor = now.min(self.floor + 3.0 * dt).max(-100.0);
        let (mut open, mut total, mut bands) = (0.0, 0.0, Slice::default());
        for (w, s) in &slices {
            open += w * self.opening_of(s);
            total += w;
            bands.f1 += w * s.f1;
            bands.f2 += w * s.f2;
            bands.high += w * s.high;
            bands.f1_num += w * s.f1_num;
            bands.f1_den += w * s.f1_den;
            bands.centroid_num += w * s.centroid_num;
            bands.centroid_den += w * s.centroid_den;
        }
        let raw = Self::pose_of(open / total, &bands);
        let k = FOLLOW;
        let step = |prev: Option<MouthPose>, x: MouthPose| match prev {
            Some(p) if dt < 0.2 => MouthPose {
                jaw: x.jaw + (p.jaw - x.jaw) * k,
                lips: x.lips + (p.lips - x.lips) * k,
                spread: x.spread + (p.spread - x.spread) * k,
            },
            _ => x,
        };
        let a = step(self.smooth[0], raw);
        let b = step(self.smooth[1], a);
        self.smooth = [Some(a), Some(b)];
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window_samples() -> usize {
        WINDOW.samples()
    }

    /// A vowel-like sound: harmonics of 120 Hz shaped by two formants.
    fn vowel(f1: f32, f2: f32, amp: f32, n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let t = (i + seed) as f32 / SAMPLE_RATE as f32;
                (1..40)
                    .map(|h| {
                        let f = 120.0 * h as f32;
                        let g = (-((f - f1) / 150.0).powi(2)).exp() + 0.7 * (-((f - f2) / 200.0).powi(2)).exp();
                        g * (std::f32::consts::TAU * f * t).sin()
                    })
                    .sum::<f32>()
                    * amp
            })
            .collect()
    }

    /// The pose after `frames` frames of the same sound (the follower settles).
    fn settle(a: &mut Articulator, from: u64, sound: &[f32], frames: u64) -> MouthPose {
        (from..from + frames).map(|k| a.pose(k * 40_000_000, sound, 0)).last().unwrap()
    }

    #[test]
    fn silence_keeps_the_mouth_closed() {
        let mut a = Articulator::new();
        for k in 0..50u64 {
            let p = a.pose(k * 40_000_000, &vec![0.0; window_samples()], 0);
            assert_eq!(p, MouthPose::CLOSED);
        }
        // Low background noise after speech closes the mouth too.
        let loud = vowel(700.0, 1200.0, 0.1, window_samples(), 0);
        assert!(settle(&mut a, 50, &loud, 25).opening() > 0.3);
        let mut seed = 1u32;
        let hiss: Vec<f32> = (0..window_samples())
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2e-4
            })
            .collect();
        let p = settle(&mut a, 75, &hiss, 8);
        assert!(p.opening() < 0.02, "noise opened the mouth: {p:?}");
        let mut a = Articulator::new();
        assert_eq!(a.pose(0, &loud, loud.len()), MouthPose::CLOSED, "all missing");
    }

    #[test]
    fn open_vowels_open_the_jaw_and_front_vowels_spread() {
        let n = window_samples();
        let vowel_pose = |f1: f32, f2: f32| settle(&mut Articulator::new(), 0, &vowel(f1, f2, 0.05, n, 0), 10);
        let ah = vowel_pose(750.0, 1150.0);
        let ee = vowel_pose(280.0, 2300.0);
        let oo = vowel_pose(300.0, 800.0);
        assert!(ah.jaw > ee.jaw + 0.1, "/a/ {ah:?} vs /i/ {ee:?}");
        assert!(oo.jaw < ah.jaw - 0.1, "/u/ {oo:?} vs /a/ {ah:?}");
        assert!(ee.spread > 0.15 && oo.spread < -0.3, "/i/ {ee:?} /u/ {oo:?}");
        assert!(ah.opening() > 0.4, "{ah:?}");
    }

    #[test]
    fn quiet_and_loud_speakers_use_the_same_range() {
        let n = window_samples();
        let run = |amp: f32| {
            let mut a = Articulator::new();
            let mut widest = 0.0f32;
            for k in 0..75u64 {
                // Syllables: 200 ms of vowel, 120 ms of silence; the widest opening of the last ones.
                let on = k % 8 < 5;
                let s = if on { vowel(700.0, 1200.0, amp, n, k as usize * 640) } else { vec![0.0; n] };
                let p = a.pose(k * 40_000_000, &s, 0);
                if k >= 50 {
                    widest = widest.max(p.opening());
                }
            }
            widest
        };
        let (quiet, loud) = (run(0.02), run(0.2));
        assert!(quiet > 0.35 && loud > 0.35, "quiet {quiet}, loud {loud}");
        assert!((quiet - loud).abs() < 0.15, "quiet {quiet}, loud {loud}");
    }

    #[test]
    fn the_pose_follows_the_sound_without_lag() {
        // A burst that starts at the frame: the frame before sees a little of it (the mouth anticipates),
        // the frame itself more, the frame after most.
        let n = window_samples();
        let at = (WINDOW.before / crate::audio::NS_PER_SAMPLE) as usize;
        let burst = |start: usize| -> Vec<f32> {
            let v = vowel(700.0, 1200.0, 0.05, n, 0);
            v.into_iter().enumerate().map(|(i, s)| if i >= start { s } else { 0.0 }).collect()
        };
        let mut a = Articulator::new();
        let before = a.pose(0, &burst(at + 640), 0).opening(); // starts one frame after
        let mut a = Articulator::new();
        let on = a.pose(0, &burst(at), 0).opening();
        let mut a = Articulator::new();
        let after = a.pose(0, &burst(at.saturating_sub(640)), 0).opening();
        assert!(before < 0.5 * after && on > before + 0.1 && after > on, "{before} {on} {after}");
    }
}
