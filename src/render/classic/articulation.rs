//! Audio to mouth shape, the first stage of the classic renderer: from the 16 kHz audio around a frame,
//! how far the jaw drops and the lips part (the loudness), and what shape the lips take (the visemes).
//!
//! Loudness: every 10 ms a 25 ms Hann-windowed slice is analysed (512-point FFT). Its speech level
//! (pre-emphasised, so the 1-4 kHz region where the mouth's opening shows most in the sound counts most),
//! set against an adaptive peak of the voiced slices and a noise floor (so loud and quiet speakers both use
//! the whole range, a voice's loud /s/ does not dwarf its vowels, and background noise keeps the mouth
//! shut), gives the opening. Coarticulation is a Gaussian over the slices
//! around the frame, followed by a critically damped follower.
//!
//! Shape: the [`VisemeEstimator`] classifies every 10 ms slice of the stream (or a [`PhonemeFeed`] says
//! what was spoken when); the visemes around the frame, weighted by a narrower Gaussian (the likeliest
//! vowel among them weighing more than its share), set how much of the opening goes to the jaw and to the
//! lips, the lower lip tucked under the upper teeth for /f v/ and the tongue tip for /th d t n l/. The
//! spreading or rounding comes from the balance of the vowels (and /r w/) among them, and the consonants
//! between take it from them. A /p b m/ anywhere in the next 30 ms presses the lips together: they close
//! fast, ahead of the sound's release, as a speaker's do, part at the release, and the jaw opens slower.

use super::smoothstep;
use crate::audio::{AudioWindow, SAMPLE_RATE};
use crate::visemes::estimator::{Probabilities, SLICE_NS, VisemeEstimator};
use crate::visemes::features::{HOP, LogMel};
use crate::visemes::{PhonemeFeed, Viseme};

/// The audio window the articulation reads around each frame: the viseme classifier hears 62.5 ms past
/// the slices it classifies, and the frame's visemes reach 30 ms past its pts, so the window must reach
/// 92.5 ms past it (95 ms leaves room for a pts off the 10 ms slice grid).
pub const WINDOW: AudioWindow = AudioWindow { before: 100_000_000, after: 95_000_000 };

/// The loudness slices: centres from 47.5 ms after the frame back in 10 ms hops.
const SLICES: usize = 11;
const LAST_CENTRE_MS: f32 = 47.5;
/// Coarticulation: a Gaussian over the slices, centred 30 ms after the frame's pts (the display interval
/// is 40 ms long, and the follower below lags about 10 ms), σ = 30 ms. Measured on real speech, this
/// puts the mouth at zero offset from the sound.
const KERNEL_CENTRE_MS: f32 = 50.0;
const SIGMA_MS: f32 = 30.0;
/// The pose then goes through two one-pole low-passes (a critically damped follower): a mouth has mass,
/// so it does not jump from frame to frame with every change of level. The followers' coefficients are
/// what each keeps of its last value over [`FOLLOWER_STEP_S`]; a stream at another frame rate keeps the
/// same pace in time.
const FOLLOW: f32 = 0.5;
/// The frame interval the followers' coefficients are given for (25 fps).
const FOLLOWER_STEP_S: f32 = 0.04;
/// The jaw's and lips' shares of the opening, the tucked lip and the tongue follow their visemes through
/// one one-pole stage. The rounding does not: the visemes' Gaussian already smooths it, and a follower's
/// lag would give a short vowel the shape of the sound before it.
const SHAPE_FOLLOW: f32 = 0.5;
/// The visemes' Gaussian: centred 20 ms after the frame's pts (the middle of its display interval), σ =
/// 15 ms, over the slices from 20 ms before the pts to 30 ms after.
const VISEME_CENTRE_MS: f32 = 20.0;
const VISEME_SIGMA_MS: f32 = 15.0;
const VISEME_FIRST_MS: i64 = -20;
const VISEME_LAST_MS: i64 = 30;
/// Lip rounding and spreading belong to the vowels and /r w/: where they are heard, the lips take their
/// shape, under the visemes' Gaussian; where hardly any are (a consonant cluster, a pause), the slices'
/// own shapes.
const LIP_SHAPERS: [Viseme; 5] = [Viseme::Glide, Viseme::Open, Viseme::Mid, Viseme::Spread, Viseme::Round];
/// The lip shapers' share of the slices from which their rounding shows in full.
const SHAPERS_SHOWN: f32 = 0.25;
/// The share of the rig's spreading and rounding that speech takes: a sure /i/ or /u/ (0.76, see
/// [`Articulator::rounding_of`]) moves the mouth's corners, and the skin around them, 0.53 of the rig's
/// full range. The shape changes from vowel to vowel at the pace of speech, and a wider swing would make
/// the mouth tremble more than a speaker's does.
const SPREAD_RANGE: f32 = 0.7;
/// The vowels, whose shares of a frame's visemes are sharpened (see [`Articulator::sharpened`]).
const VOWELS: [Viseme; 4] = [Viseme::Open, Viseme::Mid, Viseme::Spread, Viseme::Round];
/// The power the vowels' shares are raised to: a classifier hearing an unseen voice spreads its belief
/// over the vowels (an /a/ heard as half /a/, half schwa), and the jaw and lips take the shape of the
/// vowel it leans to instead of an average of them.
const VOWEL_SHARPNESS: f32 = 2.0;
/// The lips press together for a /p b m/ in the slices from the pts to 30 ms after it.
const PRESS_FIRST_MS: i64 = 0;
const PRESS_LAST_MS: i64 = 30;
/// Lip pressing follows its target (one-pole coefficients per [`FOLLOWER_STEP_S`]): the lips shut within
/// 40 ms, and part within 40 ms of the release, as a stop's burst parts them; the jaw then opens at the
/// pace of the opening's follower, slower than the lips closed.
const PRESS_CLOSING: f32 = 0.15;
const PRESS_OPENING: f32 = 0.2;
/// How much of the jaw's drop pressed lips take back: the jaw rises a little for a /p b m/ and the lips
/// close the rest (the rig keeps them together over what is left of the drop).
const PRESS_JAW_RISE: f32 = 0.3;

/// What each viseme does with the opening the loudness gives: the shares of it the jaw and the lips take,
/// the spreading (+) or rounding (-), the lower lip tucked under the teeth, the tongue tip shown.
#[derive(Clone, Copy, Debug, Default)]
struct Shape {
    jaw: f32,
    lips: f32,
    spread: f32,
    tuck: f32,
    tongue: f32,
}

impl Shape {
    /// This shape moved `k` of the way to `other`.
    fn lerp(&self, other: &Shape, k: f32) -> Shape {
        let at = |a: f32, b: f32| a + (b - a) * k;
        Shape {
            jaw: at(self.jaw, other.jaw),
            lips: at(self.lips, other.lips),
            spread: at(self.spread, other.spread),
            tuck: at(self.tuck, other.tuck),
            tongue: at(self.tongue, other.tongue),
        }
    }
}

const fn shape(jaw: f32, lips: f32, spread: f32, tuck: f32, tongue: f32) -> Shape {
    Shape { jaw, lips, spread, tuck, tongue }
}

/// Per [`Viseme`], in its order. The lips part more than the jaw drops: a speaker's jaw moves little in
/// running speech (a talking head's chin hardly moves on its tracked contour), and most of what a viewer
/// reads as an open mouth is the lips. A jaw twice this size makes the chin bob with every syllable, and
/// the dub trembles 10 % more than the speaker it re-renders.
const SHAPES: [Shape; Viseme::COUNT] = [
    shape(0.15, 0.39, 0.0, 0.0, 0.0),   // silence (what sound there is: breath)
    shape(0.05, 0.0, 0.0, 0.0, 0.0),    // p b m (and pressed, below)
    shape(0.175, 0.325, 0.1, 1.0, 0.0), // f v
    shape(0.3, 0.715, 0.2, 0.0, 1.0),   // th d t n l
    shape(0.125, 0.65, 0.4, 0.0, 0.0),  // s z sh ch
    shape(0.4, 0.78, 0.1, 0.0, 0.0),    // k g ng h
    shape(0.175, 0.39, -0.8, 0.0, 0.0), // r w
    shape(0.7, 2.73, 0.1, 0.0, 0.0),    // open vowels
    shape(0.375, 0.975, 0.0, 0.0, 0.0), // schwa
    shape(0.275, 0.91, 1.0, 0.0, 0.0),  // spread vowels
    shape(0.3, 0.715, -1.0, 0.0, 0.0),  // round vowels
];

/// Where the mouth should be for one frame, each in 0..=1 except `spread` (-1 rounded .. 1 spread).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MouthPose {
    /// Jaw drop.
    pub jaw: f32,
    /// Lip parting beyond the jaw's.
    pub lips: f32,
    /// Lip spreading (positive) or rounding (negative).
    pub spread: f32,
    /// Lips pressed together (/p b m/).
    pub press: f32,
    /// Lower lip raised under the upper teeth (/f v/).
    pub tuck: f32,
    /// Tongue tip showing behind the teeth (/th d t n l/).
    pub tongue: f32,
}

impl MouthPose {
    pub const CLOSED: MouthPose = MouthPose { jaw: 0.0, lips: 0.0, spread: 0.0, press: 0.0, tuck: 0.0, tongue: 0.0 };

    /// A pose with only the jaw, lips and spread set.
    pub const fn open(jaw: f32, lips: f32, spread: f32) -> MouthPose {
        MouthPose { jaw, lips, spread, ..MouthPose::CLOSED }
    }

    /// Overall opening, what a viewer reads as "the mouth is open".
    pub fn opening(&self) -> f32 {
        (self.jaw + self.lips) * 0.5
    }
}

/// Turns each frame's audio window into a [`MouthPose`]; keeps the level statistics of the stream.
pub struct Articulator {
    /// The slices' analysis: their level is the speech level.
    mel: LogMel,
    /// Running speech peak (dBFS): set by the first sound above the quietest speech level, then jumps up
    /// and decays 6 dB/s.
    peak: Option<f32>,
    /// Running noise floor (dBFS): drops at once, rises 3 dB/s.
    floor: f32,
    last_pts: Option<u64>,
    /// The follower's two stages of the opening, and the lips' shape.
    opening: [Option<f32>; 2],
    shape: Option<Shape>,
    press: f32,
    visemes: VisemeEstimator,
    phonemes: Option<PhonemeFeed>,
}

impl Default for Articulator {
    fn default() -> Self {
        Self::new()
    }
}

impl Articulator {
    /// Quietest peak allowed: below it sound is treated as noise, not speech.
    const MIN_PEAK: f32 = -50.0;
    /// A slice is voiced when this share of its energy lies below 1 kHz. The speech peak follows voiced
    /// slices only: a voice whose /s/ and /sh/ are louder than its vowels (in the pre-emphasised level)
    /// would otherwise set the peak with them, and its vowels would barely open the mouth.
    const VOICED_SHARE: f32 = 0.3;
    /// Noise floor before any sound: below anything real, so it drops to the first level heard.
    const INITIAL_FLOOR: f32 = -90.0;

    pub fn new() -> Self {
        Articulator {
            mel: LogMel::new(),
            peak: None,
            floor: Self::INITIAL_FLOOR,
            last_pts: None,
            opening: [None; 2],
            shape: None,
            press: 0.0,
            visemes: VisemeEstimator::default(),
            phonemes: None,
        }
    }

    /// Takes the visemes from `feed` wherever it has phonemes (the audio's elsewhere).
    pub fn with_phonemes(mut self, feed: Option<PhonemeFeed>) -> Self {
        self.phonemes = feed;
        self
    }

    /// Forgets the stream's level statistics.
    pub fn reset(&mut self) {
        // The FFT plan and buffers stay; only the stream's statistics and follower go.
        self.peak = None;
        self.floor = Self::INITIAL_FLOOR;
        self.last_pts = None;
        self.opening = [None; 2];
        self.shape = None;
        self.press = 0.0;
        self.visemes.reset();
    }

    /// Opening of one slice: amplitude relative to the peak, compressed (so quiet syllables still show),
    /// gated above the noise floor.
    fn opening_of(&self, level: f32) -> f32 {
        let Some(peak) = self.peak else { return 0.0 };
        let gate = (self.floor + 8.0).max(peak - 40.0);
        let amplitude = 10f32.powf((level - (peak - 4.0)) / 20.0).min(1.0);
        amplitude.powf(0.8) * smoothstep(gate, gate + 8.0, level)
    }

    /// The viseme probabilities of slice `n`: the phoneme feed's where it has phonemes, else the
    /// classifier's (`None` when neither knows the slice yet).
    fn probabilities(&self, n: i64) -> Option<Probabilities> {
        let t = n * SLICE_NS;
        if let Some(v) = self.phonemes.as_ref().filter(|_| t >= 0).and_then(|f| f.viseme_at(t as u64)) {
            let mut p = [0.0; Viseme::COUNT];
            p[v.index()] = 1.0;
            return Some(p);
        }
        self.visemes.probabilities(n).copied()
    }

    /// The frame's viseme mix (the probabilities under the visemes' Gaussian) and its /p b m/ press target.
    fn visemes_at(&self, pts: u64) -> (Probabilities, f32) {
        let ms = |n: i64| (n * SLICE_NS - pts as i64) as f32 * 1e-6;
        let slice = |ms: i64| (pts as i64 + ms * 1_000_000).div_euclid(SLICE_NS);
        let (mut mix, mut total) = ([0.0f32; Viseme::COUNT], 0.0f32);
        for n in slice(VISEME_FIRST_MS)..=slice(VISEME_LAST_MS) {
            let Some(p) = self.probabilities(n) else { continue };
            let d = ms(n) - VISEME_CENTRE_MS;
            let w = (-(d * d) / (2.0 * VISEME_SIGMA_MS * VISEME_SIGMA_MS)).exp();
            for (m, p) in mix.iter_mut().zip(&p) {
                *m += w * p;
            }
            total += w;
        }
        let bilabial = (slice(PRESS_FIRST_MS)..=slice(PRESS_LAST_MS))
            .filter_map(|n| self.probabilities(n))
            .map(|p| p[Viseme::Bilabial.index()])
            .fold(0.0f32, f32::max);
        if total == 0.0 {
            mix[Viseme::Mid.index()] = 1.0;
        } else {
            mix.iter_mut().for_each(|m| *m /= total);
        }
        (mix, smoothstep(0.2, 0.5, bilabial))
    }

    /// The lips' rounding (-1) or spreading (+1) for a frame's viseme mix whose shape has `own`: the
    /// lip shapers' balance (whatever their share of the mix), softened towards its ends (tanh). A sure
    /// /i/ or /u/ takes 0.76 of the rig's range, and the order of the balances heard is kept (a clamp
    /// would make every fairly sure vowel alike).
    fn rounding_of(mix: &Probabilities, own: f32) -> f32 {
        let shapers: f32 = LIP_SHAPERS.iter().map(|v| mix[v.index()]).sum();
        if shapers <= 0.0 {
            return own;
        }
        let heard: f32 = LIP_SHAPERS.iter().map(|v| mix[v.index()] * SHAPES[v.index()].spread).sum::<f32>() / shapers;
        own + (heard.tanh() - own) * smoothstep(0.0, SHAPERS_SHOWN, shapers)
    }

    /// `mix` with its vowels' shares raised to [`VOWEL_SHARPNESS`] and scaled back to their total: the
    /// likeliest vowel gains on the others, the consonants and silence keep their shares (the opening's
    /// rise and fall from consonant to vowel stays the loudness's and the classifier's).
    fn sharpened(mix: &Probabilities) -> Probabilities {
        let share = |p: f32| p.max(0.0).powf(VOWEL_SHARPNESS);
        let total: f32 = VOWELS.iter().map(|v| mix[v.index()]).sum();
        let powered: f32 = VOWELS.iter().map(|v| share(mix[v.index()])).sum();
        let mut sharp = *mix;
        if powered > 0.0 {
            for v in VOWELS {
                sharp[v.index()] = share(mix[v.index()]) / powered * total;
            }
        }
        sharp
    }

    /// The shape of a viseme mix: each viseme's shape weighted by its probability.
    fn shape_of(mix: &Probabilities) -> Shape {
        let mut s = Shape::default();
        for (p, shape) in mix.iter().zip(&SHAPES) {
            s.jaw += p * shape.jaw;
            s.lips += p * shape.lips;
            s.spread += p * shape.spread;
            s.tuck += p * shape.tuck;
            s.tongue += p * shape.tongue;
        }
        s
    }

    /// The pose of an opening given the lips' shape.
    fn pose_of(open: f32, s: &Shape) -> MouthPose {
        let shown = (open * 3.0).min(1.0);
        // Speech opens the mouth more than its loudness alone says: quieter syllables still articulate.
        let open = open.powf(0.75);
        MouthPose {
            jaw: open * s.jaw,
            lips: open * s.lips,
            spread: s.spread.clamp(-1.0, 1.0) * SPREAD_RANGE * (open * 4.0).min(1.0),
            press: 0.0,
            tuck: s.tuck * shown,
            tongue: s.tongue * shown,
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
        // Per slice: its weight in the kernel, its level and its low-band share.
        let slices: [(f32, f32, f32); SLICES] = std::array::from_fn(|k| {
            let ms = LAST_CENTRE_MS - k as f32 * hop_ms;
            let d = ms - KERNEL_CENTRE_MS;
            let w = (-(d * d) / (2.0 * SIGMA_MS * SIGMA_MS)).exp();
            let centre = frame_at + (ms * SAMPLE_RATE as f32 / 1000.0).round() as isize;
            let bands = self.mel.analyse(audio, centre);
            (w, bands.level, bands.low_share)
        });
        // Level statistics follow the slice nearest the kernel's centre; only voiced sound sets the peak.
        let dt = self.last_pts.map_or(0.04, |p| pts.saturating_sub(p) as f32 * 1e-9).min(1.0);
        self.last_pts = Some(pts);
        let (_, now, low_share) = slices[1];
        let heard = if low_share > Self::VOICED_SHARE { now } else { f32::MIN };
        self.peak = match self.peak {
            // Never within 25 dB of the noise floor: pauses do not turn noise into speech.
            Some(p) => Some(heard.max(p - 6.0 * dt).max(self.floor + 25.0).max(Self::MIN_PEAK)),
            None => (heard > Self::MIN_PEAK).then_some(heard),
        };
        self.floor = now.min(self.floor + 3.0 * dt).max(-100.0);
        let (mut open, mut total) = (0.0, 0.0);
        for &(w, level, _) in &slices {
            open += w * self.opening_of(level);
            total += w;
        }
        self.visemes.update(pts as i64 - WINDOW.before as i64, audio);
        let (mix, press) = self.visemes_at(pts);
        // The opening goes through the critically damped follower (the loudness kernel leads by its lag);
        // the shape, whose visemes are already centred on the frame, through one light stage.
        let kept = |k: f32| k.powf(dt / FOLLOWER_STEP_S);
        let follow = |prev: Option<f32>, x: f32| match prev {
            Some(p) if dt < 0.2 => x + (p - x) * kept(FOLLOW),
            _ => x,
        };
        let a = follow(self.opening[0], open / total);
        let b = follow(self.opening[1], a);
        self.opening = [Some(a), Some(b)];
        let mut target = Self::shape_of(&Self::sharpened(&mix));
        target.spread = Self::rounding_of(&mix, target.spread);
        let shape = match self.shape {
            Some(p) if dt < 0.2 => Shape { spread: target.spread, ..target.lerp(&p, kept(SHAPE_FOLLOW)) },
            _ => target,
        };
        self.shape = Some(shape);
        let b = Self::pose_of(b, &shape);
        // The press follows on its own, fast to close and slower to open, and overrides the opening.
        let rate = kept(if press > self.press { PRESS_CLOSING } else { PRESS_OPENING });
        self.press = if dt < 0.2 { press + (self.press - press) * rate } else { press };
        let press = self.press;
        let free = 1.0 - press;
        MouthPose {
            jaw: b.jaw * (1.0 - PRESS_JAW_RISE * press),
            lips: b.lips * free,
            tuck: b.tuck * free,
            tongue: b.tongue * free,
            press,
            ..b
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_signals::noise;

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
        let hiss: Vec<f32> = noise(1, window_samples()).iter().map(|v| v * 2e-4).collect();
        let p = settle(&mut a, 75, &hiss, 8);
        assert!(p.opening() < 0.02, "noise opened the mouth: {p:?}");
        let mut a = Articulator::new();
        assert_eq!(a.pose(0, &loud, loud.len()), MouthPose::CLOSED, "all missing");
    }

    /// An articulator whose visemes come from a feed holding `phoneme` for the first 10 s.
    fn speaking(phoneme: &str) -> Articulator {
        let feed = PhonemeFeed::new();
        feed.push(phoneme, 0, 10_000_000_000).unwrap();
        Articulator::new().with_phonemes(Some(feed))
    }

    #[test]
    fn the_visemes_shape_the_opening() {
        // The same loud vowel sound, said as /a/, /i/, /u/, /m/ and /f/.
        let sound = vowel(700.0, 1200.0, 0.05, window_samples(), 0);
        let pose = |phoneme: &str| settle(&mut speaking(phoneme), 0, &sound, 10);
        let (ah, ee, oo, mm, ff) = (pose("aa"), pose("iy"), pose("uw"), pose("m"), pose("f"));
        assert!(ah.jaw > ee.jaw + 0.1 && ah.jaw > oo.jaw + 0.1, "/a/ {ah:?}, /i/ {ee:?}, /u/ {oo:?}");
        assert!(ah.opening() > 0.4, "{ah:?}");
        let sure = SHAPES[Viseme::Spread.index()].spread.tanh() * SPREAD_RANGE;
        assert!(ee.spread > 0.95 * sure && oo.spread < -0.95 * sure, "/i/ {ee:?} /u/ {oo:?}");
        assert!(mm.press > 0.95 && mm.lips < 0.02 && mm.jaw < 0.1, "/m/ shuts the lips however loud: {mm:?}");
        assert!(ff.tuck > 0.5 && ah.tuck < 0.05, "/f/ {ff:?}");
        // Without the feed the classifier decides; with it, a /p b m/ just ahead presses the lips first.
        let feed = PhonemeFeed::new();
        feed.push("aa", 0, 1_000_000_000).unwrap();
        feed.push("m", 1_020_000_000, 1_100_000_000).unwrap();
        feed.push("aa", 1_100_000_000, 2_000_000_000).unwrap();
        let mut a = Articulator::new().with_phonemes(Some(feed));
        let press: Vec<f32> = (0..30u64).map(|k| a.pose(k * 40_000_000, &sound, 0).press).collect();
        assert!(press[24] < 0.05 && press[25] > 0.8, "the press starts with the frame before the /m/: {press:?}");
        // The /m/ ends at 1.10 s: the frame at 1.08 s still holds the lips shut, the next has parted them.
        assert!(press[27] > 0.9 && press[28] < 0.25, "the lips part within a frame of the release: {press:?}");
    }

    #[test]
    fn an_uncertain_vowel_takes_the_likeliest_shape() {
        let mut p = [0.0; Viseme::COUNT];
        for (v, x) in [(Viseme::Open, 0.3), (Viseme::Mid, 0.2), (Viseme::Spread, 0.1), (Viseme::Dental, 0.4)] {
            p[v.index()] = x;
        }
        let sharp = Articulator::sharpened(&p);
        // The open vowel gains on the others, the vowels keep their total and the consonant its share.
        let (open, mid, spread) =
            (sharp[Viseme::Open.index()], sharp[Viseme::Mid.index()], sharp[Viseme::Spread.index()]);
        assert!((open - 0.6 * 9.0 / 14.0).abs() < 1e-6 && mid < 0.2 && spread < 0.1, "{sharp:?}");
        assert!((open + mid + spread - 0.6).abs() < 1e-6 && sharp[Viseme::Dental.index()] == 0.4, "{sharp:?}");
        let opening = |mix: &Probabilities| Articulator::shape_of(mix).jaw + Articulator::shape_of(mix).lips;
        assert!(opening(&sharp) > opening(&p) + 0.1, "the mouth opens more for the likelier /a/");
        // Given phonemes (one viseme for sure) and silence are left as they are.
        let mut m = [0.0; Viseme::COUNT];
        m[Viseme::Round.index()] = 1.0;
        assert_eq!(Articulator::sharpened(&m), m);
        assert_eq!(Articulator::sharpened(&[0.0; Viseme::COUNT]), [0.0; Viseme::COUNT]);
    }

    #[test]
    fn the_vowels_heard_choose_the_lips_shape() {
        let mix = |pairs: &[(Viseme, f32)]| {
            let mut p = [0.0; Viseme::COUNT];
            for &(v, x) in pairs {
                p[v.index()] = x;
            }
            p
        };
        let rounding = |p: &Probabilities| Articulator::rounding_of(p, Articulator::shape_of(p).spread);
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
        // Half sure of a spread vowel (the rest an open one, a little /s/): the lips spread as the vowels
        // heard say, whatever the /s/'s share.
        let ee = mix(&[(Viseme::Spread, 0.4), (Viseme::Open, 0.4), (Viseme::Sibilant, 0.2)]);
        assert!(close(rounding(&ee), 0.55f32.tanh()), "{}", rounding(&ee));
        // Round against spread: the balance of the two decides, the order of the shares is kept.
        let oo = mix(&[(Viseme::Round, 0.35), (Viseme::Spread, 0.15), (Viseme::Open, 0.5)]);
        let ou = mix(&[(Viseme::Round, 0.45), (Viseme::Spread, 0.05), (Viseme::Open, 0.5)]);
        assert!(close(rounding(&oo), -0.15f32.tanh()) && rounding(&ou) < rounding(&oo), "{}", rounding(&oo));
        // A consonant among vowels takes their shape; on its own it keeps its own.
        let s_in_soon = mix(&[(Viseme::Sibilant, 0.7), (Viseme::Round, 0.3)]);
        assert!(close(rounding(&s_in_soon), -1f32.tanh()));
        let s = mix(&[(Viseme::Sibilant, 1.0)]);
        assert_eq!(rounding(&s), SHAPES[Viseme::Sibilant.index()].spread);
        // Given phonemes, each vowel takes its own shape, softened as the heard ones are.
        for v in LIP_SHAPERS {
            let p = mix(&[(v, 1.0)]);
            assert!(close(rounding(&p), SHAPES[v.index()].spread.tanh()));
        }
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
    fn loud_frication_does_not_shrink_the_vowels() {
        let n = window_samples();
        // An /s/: noise differenced twice, its energy near the top of the band, louder than the vowel in
        // the speech level.
        let hiss: Vec<f32> = noise(11, n + 2).windows(3).map(|w| 0.4 * (w[0] - 2.0 * w[1] + w[2])).collect();
        // Syllables: 160 ms of vowel, 120 ms of /s/ (or of silence), 40 ms of silence; the widest opening
        // of the last vowels.
        let run = |with_hiss: bool| {
            let mut a = Articulator::new();
            let mut widest = 0.0f32;
            for k in 0..80u64 {
                let sound = match k % 8 {
                    0..4 => vowel(700.0, 1200.0, 0.05, n, k as usize * 640),
                    4..7 if with_hiss => hiss.clone(),
                    _ => vec![0.0; n],
                };
                let p = a.pose(k * 40_000_000, &sound, 0);
                if k >= 48 && k % 8 < 4 {
                    widest = widest.max(p.opening());
                }
            }
            widest
        };
        let (plain, hissing) = (run(false), run(true));
        assert!(plain > 0.35 && (plain - hissing).abs() < 0.1, "vowels alone {plain}, with a loud /s/ {hissing}");
    }

    #[test]
    fn the_mouth_keeps_its_pace_at_any_frame_rate() {
        // Silence, then a vowel from 0.4 s, then a /m/ from 0.8 s, at 25 and at 50 fps: at the same times
        // the mouth is as far open, and the lips as far pressed.
        let sound = vowel(700.0, 1200.0, 0.05, 16_000 * 2, 0);
        let feed = || {
            let feed = PhonemeFeed::new();
            feed.push("aa", 400_000_000, 800_000_000).unwrap();
            feed.push("m", 800_000_000, 1_200_000_000).unwrap();
            Some(feed)
        };
        let at = |fps: u64, ms: u64| {
            let mut a = Articulator::new().with_phonemes(feed());
            let (frame_ns, frames) = (1_000_000_000 / fps, ms * fps / 1000);
            let (before, after) = (WINDOW.before as i64, WINDOW.after as i64);
            // The sound from 0.4 s to 1.2 s, silence around it.
            let step = crate::audio::NS_PER_SAMPLE as i64;
            let sample_at =
                |t: i64| if (400_000_000..1_200_000_000).contains(&t) { sound[(t / step) as usize] } else { 0.0 };
            let mut pose = MouthPose::CLOSED;
            for k in 0..=frames {
                let pts = (k * frame_ns) as i64;
                let window: Vec<f32> = (pts - before..pts + after).step_by(step as usize).map(sample_at).collect();
                pose = a.pose(pts as u64, &window, 0);
            }
            pose
        };
        // (The faster stream trails a little just after the onset: its first frames hold the sound for
        // 20 ms, not 40. Followers stepped per frame instead put it 0.46 ahead at 440 ms.)
        for ms in [440, 480, 520, 600, 800, 840, 880] {
            let (slow, fast) = (at(25, ms), at(50, ms));
            assert!((slow.opening() - fast.opening()).abs() < 0.2, "{ms} ms: {slow:?} against {fast:?}");
            assert!((slow.press - fast.press).abs() < 0.05, "{ms} ms: {slow:?} against {fast:?}");
        }
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
        // Said as an /a/: the loudness alone moves the mouth (an onset from silence may sound like a /b/).
        let before = speaking("aa").pose(0, &burst(at + 640), 0).opening(); // starts one frame after
        let on = speaking("aa").pose(0, &burst(at), 0).opening();
        let after = speaking("aa").pose(0, &burst(at.saturating_sub(640)), 0).opening();
        // (The opening is compressed, so the anticipating frame's share looks larger than the sound's.)
        assert!(before < 0.7 * after && on > before + 0.1 && after > on, "{before} {on} {after}");
    }
}
