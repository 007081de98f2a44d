//! Makes the viseme classifier the classic renderer ships (`models/visemes.safetensors`), from speech
//! synthesised on this machine with known phoneme timing:
//!
//! - eSpeak NG, every English voice with its voice variants, pitches and rates; the phoneme times come
//!   from libespeak-ng's synthesis callback. libespeak-ng (GPL-3) is opened at run time by this tool
//!   only; nothing else in lipsync loads it.
//! - festival's diphone voices `kal_diphone` and `ked_diphone` (Debian `festvox-kallpc16k`,
//!   `festvox-kdlpc16k`) at several speaking rates; the phone times from `utt.save.segs`.
//!
//! Utterances of one voice are joined into streams with pauses between them, at random levels and with
//! some noise and microphone colouring, played faster or slower, and cut into the features the library
//! computes (`lipsync::visemes::features`), whose bands are then moved up or down as another vocal
//! tract's would be. A small perceptron is trained on them (Adam, cross-entropy weighted against the
//! commoner classes) in plain single-threaded Rust, so the same inputs give the same bytes.
//!
//! It reports the frame accuracy, and how well it tells spread from round vowels, on held-out streams of
//! the training voices and on voices it never trains on, where installed: festival's
//! `cmu_us_slt_arctic_hts` (a woman, HTS) and flite's `rms` and `awb` (two men, statistical parametric;
//! phone times from `flite -psdur`).
//!
//! `cargo run --release --example train_visemes -- [--out models/visemes.safetensors] [--quick]`
//! (needs `espeak-ng`, `festival`, `festvox-kallpc16k`, `festvox-kdlpc16k`; for the unseen voices
//! `festvox-us-slt-hts` and `flite`; `--quick` makes a tenth of the data, for a test of the tool itself.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor};
use lipsync::audio::resample::To16k;
use lipsync::sync::auc;
use lipsync::visemes::features::{BANDS, FEATURES, HOP, SILENT, features_of};
use lipsync::visemes::model::{CONTEXT, INPUTS};
use lipsync::visemes::{PhonemeTrack, Viseme};

/// A deterministic random source (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-7), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Words for the sentences: everyday English, rich in the lip shapes (bilabials, labiodentals, rounded and
/// spread vowels) the classifier must tell apart.
const WORDS: &str = "a about above after again all almost also always am an and any apple are arm around as ask at \
    away baby back bad bag ball band bank base be beach bean bear beat beautiful because bed been before begin \
    behind believe below best better between big bill bird bit black blue boat body book boom boot both bottom \
    bought box boy bread break bring brother brown build bump bus busy but buy by cake call came can car care \
    carry cat catch chair change cheap check cheese child choose church city class clean clear close clothes \
    cloud coat cold come cook cool could country cup cut dad dark day deep did do doctor does dog done door \
    down draw dream drink drive drop during each early easy eat egg eight else empty end enough even evening \
    ever every eye face fact fall family far farm fast father feel feet few field fifty fill find fine fire \
    first fish five floor flower fly food foot for form four free friend from front fruit full fun funny \
    game garden gave girl give glass go good got great green group grow had half hand happy hard has have he \
    head hear heavy help her here high him his hold home hope horse hot house how huge hungry I if in into is \
    it job join jump just keep key kind king knew know lamp large last late laugh lead learn leave left less \
    let letter life light like line lip listen little live long look loose lose loud love low lunch made make \
    man many map may me mean meet milk mind mine miss money month moon more morning most mother mouth move \
    movie much music must my name near need never new next nice night no noon nose not nothing now number \
    of off often oh old on once one only open or other our out over own page paper park part pass past pay \
    peace pen people pepper perhaps person pick picture piece place plan play please plenty pocket point \
    pool poor pop possible pound power pretty price pull push put quick quiet rain reach read ready real red \
    remember rest rich ride right river road rob rock room rope rule run safe said same save saw say school \
    sea seat see seem seven shape she sheep ship shoe shop short should show shut side simple since sing sit \
    six sleep slow small smile smooth snow so soft some son song soon sound soup speak spoon spring stand \
    start stay step still stone stop story street strong such summer sun sure sweet swim table take talk \
    tall team teeth tell ten than thank that the them then there these they thick thing think this those \
    three through time to today together too took tooth top true try tube turn two under up upon us use very \
    view visit voice wait walk wall want warm was watch water wave way we wear weather week well went were \
    what wheel when where which while white who whole why wide wife will win window winter wish with woman \
    wood word work world would write year yes yet you young your zoo";

/// A sentence of 3 to 11 words, sometimes with a comma (a short pause) inside.
fn sentence(rng: &mut Rng, words: &[&str]) -> String {
    let n = 3 + rng.below(9);
    let mut s = String::new();
    for i in 0..n {
        if i > 0 {
            s.push_str(if rng.below(9) == 0 { ", " } else { " " });
        }
        s.push_str(words[rng.below(words.len())]);
    }
    let end: &&str = rng.pick(&[".", ".", "?", "!"]);
    s.push_str(end);
    s
}

/// A synthesised utterance at 16 kHz and its phonemes.
struct Utterance {
    audio: Vec<f32>,
    track: PhonemeTrack,
}

fn to_16k(rate: u32, samples: &[f32]) -> Vec<f32> {
    let mut rs = To16k::new(rate).expect("a supported rate");
    let mut out = Vec::new();
    rs.push(samples, &mut out).expect("resampling");
    rs.push(&vec![0.0; 4096], &mut out).expect("resampling");
    out.truncate((samples.len() as u64 * 16_000 / rate as u64) as usize);
    out
}

/// eSpeak NG through libespeak-ng, opened with `dlopen`.
mod espeak {
    use super::*;

    #[repr(C)]
    struct Event {
        kind: c_int,
        unique_identifier: u32,
        text_position: c_int,
        length: c_int,
        audio_position: c_int,
        sample: c_int,
        user_data: *mut c_void,
        id: [u8; 8],
    }

    const EVENT_LIST_TERMINATED: c_int = 0;
    const EVENT_PHONEME: c_int = 7;
    const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
    const INITIALIZE_PHONEME_EVENTS: c_int = 1;
    const RATE: c_int = 1;
    const PITCH: c_int = 3;
    const RANGE: c_int = 4;
    const POS_CHARACTER: c_int = 1;
    const CHARS_UTF8: u32 = 1;

    type Callback = extern "C" fn(*mut i16, c_int, *mut Event) -> c_int;
    type Initialize = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
    type SetCallback = unsafe extern "C" fn(Callback);
    type SetVoice = unsafe extern "C" fn(*const c_char) -> c_int;
    type SetParameter = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
    type Synth = unsafe extern "C" fn(*const c_void, usize, u32, c_int, u32, u32, *mut u32, *mut c_void) -> c_int;
    /// The samples and (phoneme, milliseconds) events of the utterance being synthesised.
    type Collected = (Vec<i16>, Vec<(String, i32)>);

    unsafe extern "C" {
        fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }

    thread_local! {
        static COLLECTED: RefCell<Collected> = const { RefCell::new((Vec::new(), Vec::new())) };
    }

    extern "C" fn collect(wav: *mut i16, n: c_int, events: *mut Event) -> c_int {
        COLLECTED.with(|c| {
            let (audio, phonemes) = &mut *c.borrow_mut();
            if !wav.is_null() && n > 0 {
                audio.extend_from_slice(unsafe { std::slice::from_raw_parts(wav, n as usize) });
            }
            let mut e = events;
            while !e.is_null() && unsafe { (*e).kind } != EVENT_LIST_TERMINATED {
                let ev = unsafe { &*e };
                if ev.kind == EVENT_PHONEME {
                    let end = ev.id.iter().position(|&b| b == 0).unwrap_or(8);
                    phonemes.push((String::from_utf8_lossy(&ev.id[..end]).into_owned(), ev.audio_position));
                }
                e = unsafe { e.add(1) };
            }
        });
        0
    }

    pub struct Espeak {
        rate: u32,
        set_voice: SetVoice,
        set_parameter: SetParameter,
        synth: Synth,
    }

    impl Espeak {
        pub fn open() -> Result<Espeak, String> {
            let lib = unsafe { dlopen(c"libespeak-ng.so.1".as_ptr(), 2) };
            if lib.is_null() {
                return Err("cannot open libespeak-ng.so.1: install espeak-ng (apt install espeak-ng)".into());
            }
            let sym = |name: &CStr| {
                let f = unsafe { dlsym(lib, name.as_ptr()) };
                if f.is_null() { Err(format!("libespeak-ng has no {name:?}")) } else { Ok(f) }
            };
            // SAFETY: the signatures are those of espeak-ng/speak_lib.h (1.51).
            unsafe {
                let init = std::mem::transmute::<*mut c_void, Initialize>(sym(c"espeak_Initialize")?);
                let set_callback = std::mem::transmute::<*mut c_void, SetCallback>(sym(c"espeak_SetSynthCallback")?);
                let rate = init(AUDIO_OUTPUT_SYNCHRONOUS, 200, std::ptr::null(), INITIALIZE_PHONEME_EVENTS);
                if rate <= 0 {
                    return Err("espeak_Initialize failed (is espeak-ng-data installed?)".into());
                }
                set_callback(collect);
                Ok(Espeak {
                    rate: rate as u32,
                    set_voice: std::mem::transmute::<*mut c_void, SetVoice>(sym(c"espeak_SetVoiceByName")?),
                    set_parameter: std::mem::transmute::<*mut c_void, SetParameter>(sym(c"espeak_SetParameter")?),
                    synth: std::mem::transmute::<*mut c_void, Synth>(sym(c"espeak_Synth")?),
                })
            }
        }

        /// Speaks `text` with `voice` (e.g. `en-us+f3`) at `rate` words a minute and `pitch` (0-100).
        pub fn speak(&self, voice: &str, rate: i32, pitch: i32, range: i32, text: &str) -> Option<Utterance> {
            COLLECTED.with(|c| {
                let mut c = c.borrow_mut();
                c.0.clear();
                c.1.clear();
            });
            let voice = CString::new(voice).ok()?;
            let text = CString::new(text).ok()?;
            unsafe {
                if (self.set_voice)(voice.as_ptr()) != 0 {
                    return None;
                }
                (self.set_parameter)(RATE, rate, 0);
                (self.set_parameter)(PITCH, pitch, 0);
                (self.set_parameter)(RANGE, range, 0);
                let len = text.as_bytes_with_nul().len();
                let r = (self.synth)(
                    text.as_ptr().cast(),
                    len,
                    0,
                    POS_CHARACTER,
                    0,
                    CHARS_UTF8,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
                if r != 0 {
                    return None;
                }
            }
            let (audio, events) = COLLECTED.with(|c| std::mem::take(&mut *c.borrow_mut()));
            let samples: Vec<f32> = audio.iter().map(|&s| s as f32 / 32768.0).collect();
            let audio = to_16k(self.rate, &samples);
            let duration = audio.len() as f64 / 16_000.0;
            let mut phonemes = Vec::new();
            for (i, (p, ms)) in events.iter().enumerate() {
                let start = *ms as f64 / 1000.0;
                let end = events.get(i + 1).map_or(duration, |e| e.1 as f64 / 1000.0).min(duration);
                // Stress and syllable marks come as phoneme events of their own.
                if end > start && Viseme::of_phoneme(p).is_some() {
                    phonemes.push((p.clone(), start, end));
                }
            }
            // eSpeak NG's event for a stop comes at its release: the closure before it, quiet, is
            // labelled as the stop (as festival's segments have it).
            let level: Vec<f32> = features_of(&audio).iter().map(|f| f[FEATURES - 1]).collect();
            for i in 0..phonemes.len() {
                let floor = if i > 0 { phonemes[i - 1].1 + 0.01 } else { 0.0 };
                let p = &mut phonemes[i];
                if ["p", "b", "t", "d", "k", "g", "tS", "dZ", "t#", "d#"].contains(&p.0.as_str()) {
                    let mut n = (p.1 * 100.0).round() as usize;
                    let earliest = n.saturating_sub(12);
                    while n > earliest && level.get(n - 1).is_some_and(|&l| l < -1.0) {
                        n -= 1;
                    }
                    p.1 = p.1.min((n as f64 / 100.0).max(floor));
                }
            }
            let track = PhonemeTrack::new(phonemes).ok()?;
            Some(Utterance { audio, track })
        }
    }
}

/// festival: one run per voice and rate speaks a batch of sentences into a scratch folder.
/// `f0`: the voice's mean pitch (Hz) for the diphone voices' linear-regression intonation, `None` to keep
/// the voice's own.
fn festival(
    voice: &str,
    stretch: f32,
    f0: Option<u32>,
    sentences: &[String],
    scratch: &Path,
) -> Result<Vec<Utterance>, String> {
    let dir = scratch.join(format!("{voice}-{stretch}-{f0:?}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut script = format!("(voice_{voice})\n(Parameter.set 'Duration_Stretch {stretch})\n");
    if let Some(f0) = f0 {
        script.push_str(&format!(
            "(set! int_lr_params '((target_f0_mean {f0}) (target_f0_std {}) (model_f0_mean 170) (model_f0_std 34)))\n",
            f0 / 7
        ));
    }
    for (i, s) in sentences.iter().enumerate() {
        let text = s.replace(['"', '\\'], "");
        let (wav, segs) = (dir.join(format!("{i}.wav")), dir.join(format!("{i}.segs")));
        script.push_str(&format!(
            "(set! utt (utt.synth (Utterance Text \"{text}\")))\n(utt.wave.resample utt 16000)\n\
             (utt.save.wave utt \"{}\" 'riff)\n(utt.save.segs utt \"{}\")\n",
            wav.display(),
            segs.display()
        ));
    }
    let path = dir.join("speak.scm");
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    let out =
        Command::new("festival").arg("-b").arg(&path).output().map_err(|e| {
            format!("cannot run festival ({e}): apt install festival festvox-kallpc16k festvox-kdlpc16k")
        })?;
    if !out.status.success() {
        return Err(format!("festival failed for {voice}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    (0..sentences.len())
        .map(|i| {
            let wav = std::fs::read(dir.join(format!("{i}.wav"))).map_err(|e| format!("{voice}: {e}"))?;
            let track = PhonemeTrack::load(&dir.join(format!("{i}.segs"))).map_err(|e| e.to_string())?;
            Ok(Utterance { audio: wav_samples(&wav)?, track })
        })
        .collect()
}

/// The samples of a 16-bit mono RIFF file.
fn wav_samples(bytes: &[u8]) -> Result<Vec<f32>, String> {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if &bytes[at..at + 4] == b"data" {
            let data = &bytes[at + 8..(at + 8 + size).min(bytes.len())];
            return Ok(data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect());
        }
        at += 8 + size + (size & 1);
    }
    Err("a WAV file without data".into())
}

/// A stream: some utterances of one voice with pauses between, and the viseme of every 10 ms slice.
struct Stream {
    features: Vec<[f32; FEATURES]>,
    labels: Vec<u8>,
    /// The middle slice of every spread and round vowel, with its viseme.
    vowels: Vec<(usize, Viseme)>,
}

/// `augment`: play it at another speed and level, through another microphone, with noise (for training).
fn stream(rng: &mut Rng, utterances: &[Utterance], augment: bool) -> Stream {
    let mut audio = vec![0.0f32; (rng.range(0.05, 0.4) * 16_000.0) as usize];
    let mut phonemes = Vec::new();
    for u in utterances {
        let offset = audio.len() as f64 / 16_000.0;
        for p in u.track.phonemes() {
            phonemes.push((p.phoneme.clone(), p.start + offset, p.end + offset));
        }
        audio.extend_from_slice(&u.audio);
        audio.extend(std::iter::repeat_n(0.0, (rng.range(0.1, 0.7) * 16_000.0) as usize));
    }
    // Another vocal tract: the stream played slower or faster (its formants lower or higher), from 12 %
    // lower to 22 % higher (the diphone voices are men's).
    let speed = if augment { rng.range(0.88, 1.22) as f64 } else { 1.0 };
    let phonemes = phonemes.into_iter().map(|(p, s, e)| (p, s / speed, e / speed)).collect();
    let audio: Vec<f32> = (0..(audio.len() as f64 / speed) as usize)
        .map(|i| {
            let x = i as f64 * speed;
            let (k, a) = (x as usize, (x - x.floor()) as f32);
            let (s0, s1) = (audio[k.min(audio.len() - 1)], audio[(k + 1).min(audio.len() - 1)]);
            s0 + (s1 - s0) * a
        })
        .collect();
    let mut audio = audio;
    let track = PhonemeTrack::new(phonemes).expect("tracks of known phonemes");
    // A level, a microphone's colouring (a one-pole tilt either way) and, sometimes, noise.
    let (gain, tilt, noise) = if augment {
        let noise = if rng.below(3) == 0 { 10f32.powf(rng.range(-4.5, -2.5)) } else { 0.0 };
        (10f32.powf(rng.range(-2.0, 0.0)), rng.range(-0.6, 0.6), noise)
    } else {
        (1.0, 0.0, 0.0)
    };
    let mut prev = 0.0;
    for s in audio.iter_mut() {
        let x = *s;
        *s = (x + tilt * prev) * gain + noise * rng.normal();
        prev = x;
    }
    let mut features = features_of(&audio);
    if augment {
        warp(&mut features, rng.range(-2.0, 2.0));
    }
    let labels = (0..features.len()).map(|n| track.viseme_at((n * HOP) as f64 / 16_000.0).index() as u8).collect();
    let vowels = track
        .phonemes()
        .iter()
        .filter(|p| matches!(p.viseme, Viseme::Spread | Viseme::Round))
        .map(|p| (((p.start + p.end) * 0.5 * 16_000.0 / HOP as f64).round() as usize, p.viseme))
        .filter(|&(n, _)| n < features.len())
        .collect();
    Stream { features, labels, vowels }
}

/// Another vocal tract's length: the slices' bands moved by `shift` mel bands (positive: the formants
/// lower), the edge bands repeated where the shift runs out. Two bands are about 30 % around 1.5 kHz, the
/// difference between a man's formants and a child's; unlike playing the stream slower or faster, it
/// leaves the pitch and the timing alone.
fn warp(features: &mut [[f32; FEATURES]], shift: f32) {
    let last = (BANDS - 1) as f32;
    for f in features {
        let bands = *f;
        for (b, v) in f[..BANDS].iter_mut().enumerate() {
            let x = (b as f32 + shift).clamp(0.0, last);
            let (i, a) = (x.floor() as usize, x.fract());
            *v = bands[i] * (1.0 - a) + bands[(i + 1).min(BANDS - 1)] * a;
        }
    }
}

/// The classifier's input for slice `n` of a stream.
fn input(s: &Stream, n: usize, out: &mut [f32]) {
    for (k, &o) in CONTEXT.iter().enumerate() {
        let i = n as isize + o;
        let f = if i >= 0 && (i as usize) < s.features.len() { &s.features[i as usize] } else { &SILENT };
        out[k * FEATURES..(k + 1) * FEATURES].copy_from_slice(f);
    }
}

struct Layer {
    inputs: usize,
    outputs: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    // Adam moments and the batch's gradient.
    mw: Vec<f32>,
    vw: Vec<f32>,
    mb: Vec<f32>,
    vb: Vec<f32>,
    gw: Vec<f32>,
    gb: Vec<f32>,
}

impl Layer {
    fn new(rng: &mut Rng, inputs: usize, outputs: usize) -> Layer {
        let sd = (2.0 / inputs as f32).sqrt();
        let w = (0..inputs * outputs).map(|_| rng.normal() * sd).collect();
        let z = |n| vec![0.0; n];
        Layer {
            inputs,
            outputs,
            w,
            b: z(outputs),
            mw: z(inputs * outputs),
            vw: z(inputs * outputs),
            mb: z(outputs),
            vb: z(outputs),
            gw: z(inputs * outputs),
            gb: z(outputs),
        }
    }

    fn forward(&self, x: &[f32], y: &mut [f32], relu: bool) {
        for (o, (row, b)) in y.iter_mut().zip(self.w.chunks_exact(self.inputs).zip(&self.b)) {
            let v = row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>() + b;
            *o = if relu { v.max(0.0) } else { v };
        }
    }

    /// Adds this sample's gradient (`g`: d loss / d output) and writes d loss / d input to `gx`.
    fn backward(&mut self, x: &[f32], g: &[f32], gx: Option<&mut [f32]>) {
        for (o, &go) in g.iter().enumerate() {
            if go == 0.0 {
                continue;
            }
            self.gb[o] += go;
            for (gw, xi) in self.gw[o * self.inputs..(o + 1) * self.inputs].iter_mut().zip(x) {
                *gw += go * xi;
            }
        }
        if let Some(gx) = gx {
            gx.fill(0.0);
            for (o, &go) in g.iter().enumerate() {
                if go != 0.0 {
                    for (gxi, w) in gx.iter_mut().zip(&self.w[o * self.inputs..(o + 1) * self.inputs]) {
                        *gxi += go * w;
                    }
                }
            }
        }
    }

    fn step(&mut self, lr: f32, t: i32, batch: usize) {
        let (b1, b2) = (0.9f32, 0.999f32);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let update = |p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &mut [f32], decay: f32| {
            for i in 0..p.len() {
                let gi = g[i] / batch as f32 + decay * p[i];
                m[i] = b1 * m[i] + (1.0 - b1) * gi;
                v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                p[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
                g[i] = 0.0;
            }
        };
        update(&mut self.w, &mut self.mw, &mut self.vw, &mut self.gw, 1e-4);
        update(&mut self.b, &mut self.mb, &mut self.vb, &mut self.gb, 0.0);
    }
}

struct Mlp {
    mean: Vec<f32>,
    scale: Vec<f32>,
    layers: Vec<Layer>,
}

impl Mlp {
    /// Every layer's output for one input (standardised first).
    fn activations(&self, raw: &[f32]) -> Vec<Vec<f32>> {
        let x: Vec<f32> = raw.iter().zip(self.mean.iter().zip(&self.scale)).map(|(v, (m, s))| (v - m) * s).collect();
        let mut acts = vec![x];
        for (i, l) in self.layers.iter().enumerate() {
            let mut y = vec![0.0; l.outputs];
            l.forward(acts.last().unwrap(), &mut y, i + 1 < self.layers.len());
            acts.push(y);
        }
        acts
    }

    fn probabilities(&self, raw: &[f32]) -> Vec<f32> {
        let acts = self.activations(raw);
        let z = acts.last().unwrap();
        let max = z.iter().copied().fold(f32::MIN, f32::max);
        let e: Vec<f32> = z.iter().map(|v| (v - max).exp()).collect();
        let total: f32 = e.iter().sum();
        e.iter().map(|v| v / total).collect()
    }

    fn classify(&self, raw: &[f32]) -> usize {
        let acts = self.activations(raw);
        let z = acts.last().unwrap();
        (0..z.len()).max_by(|&a, &b| z[a].total_cmp(&z[b])).unwrap()
    }
}

/// How well the classifier does on some streams: its frame accuracy, overall and per viseme, and how well
/// it tells spread from round vowels (P(p(spread) - p(round) is larger at a spread vowel's middle than at
/// a round one's), the ranking the renderer's lip width follows).
struct Judgement {
    accuracy: f32,
    per: [f32; Viseme::COUNT],
    round_spread_auc: f32,
}

fn judge(mlp: &Mlp, streams: &[Stream]) -> Judgement {
    let (mut right, mut total) = (0usize, 0usize);
    let mut per = [(0usize, 0usize); Viseme::COUNT];
    let (mut spread, mut round) = (Vec::new(), Vec::new());
    let mut x = vec![0.0; INPUTS];
    for s in streams {
        for n in 0..s.labels.len() {
            input(s, n, &mut x);
            let (guess, truth) = (mlp.classify(&x), s.labels[n] as usize);
            total += 1;
            per[truth].1 += 1;
            if guess == truth {
                right += 1;
                per[truth].0 += 1;
            }
        }
        for &(n, viseme) in &s.vowels {
            input(s, n, &mut x);
            let p = mlp.probabilities(&x);
            let score = p[Viseme::Spread.index()] - p[Viseme::Round.index()];
            if viseme == Viseme::Spread { spread.push(score) } else { round.push(score) }
        }
    }
    Judgement {
        accuracy: right as f32 / total.max(1) as f32,
        per: per.map(|(r, t)| r as f32 / t.max(1) as f32),
        round_spread_auc: auc(&spread, &round).unwrap_or(f32::NAN),
    }
}

fn report(name: &str, j: Judgement) {
    let per: Vec<String> = Viseme::ALL.iter().map(|v| format!("{} {:.2}", v.name(), j.per[v.index()])).collect();
    println!(
        "{name}: frame accuracy {:.3}, round/spread AUC {:.3} ({})",
        j.accuracy,
        j.round_spread_auc,
        per.join(", ")
    );
}

/// flite: one run per sentence, the phone end times from `-psdur`.
fn flite(voice: &str, sentences: &[String], scratch: &Path) -> Result<Vec<Utterance>, String> {
    let dir = scratch.join(format!("flite-{voice}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    sentences
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let wav = dir.join(format!("{i}.wav"));
            let out = Command::new("flite")
                .args(["-voice", voice, "-psdur", "-t", text, "-o"])
                .arg(&wav)
                .output()
                .map_err(|e| format!("cannot run flite ({e}): apt install flite"))?;
            if !out.status.success() {
                return Err(format!("flite failed for {voice}: {}", String::from_utf8_lossy(&out.stderr)));
            }
            let mut start = 0.0;
            let mut phonemes = Vec::new();
            for item in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let (phone, end) = item.rsplit_once(':').ok_or_else(|| format!("flite printed {item:?}"))?;
                let end: f64 = end.parse().map_err(|_| format!("flite printed {item:?}"))?;
                phonemes.push((phone.to_string(), start, end));
                start = end;
            }
            let track = PhonemeTrack::new(phonemes).map_err(|e| e.to_string())?;
            let bytes = std::fs::read(&wav).map_err(|e| format!("{voice}: {e}"))?;
            Ok(Utterance { audio: wav_samples(&bytes)?, track })
        })
        .collect()
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or(PathBuf::from("models/visemes.safetensors"), PathBuf::from);
    let scale = if quick { 10 } else { 1 };
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut rng = Rng(0x5eed_1e55_1a7e_5a1d);
    let scratch = std::env::temp_dir().join(format!("train-visemes-{}", std::process::id()));

    // eSpeak NG: every English voice, each with a random variant, pitch, range and rate per stream.
    let espeak = espeak::Espeak::open()?;
    let voices =
        ["en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc"];
    let variants = [
        "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
        "klatt4", "klatt6", "adam", "anika", "caleb", "david", "ed", "edward", "grandma", "grandpa", "linda", "max",
        "paul", "quincy", "rob", "robert", "steph", "travis", "zac",
    ];
    let mut streams = Vec::new();
    let mut voices_used = 0;
    for k in 0..1500 / scale {
        let voice = voices[k % voices.len()];
        let variant = rng.pick(&variants);
        let name = if variant.is_empty() { voice.to_string() } else { format!("{voice}+{variant}") };
        let (rate, pitch, range) =
            (rng.range(110.0, 280.0) as i32, rng.range(15.0, 85.0) as i32, rng.range(20.0, 90.0) as i32);
        let utterances: Vec<Utterance> = (0..1 + rng.below(3))
            .filter_map(|_| {
                let text = sentence(&mut rng, &words);
                espeak.speak(&name, rate, pitch, range, &text)
            })
            .collect();
        if !utterances.is_empty() {
            voices_used += 1;
            streams.push(stream(&mut rng, &utterances, true));
        }
    }
    println!("espeak-ng: {voices_used} streams");

    // festival's two diphone voices at four rates and three pitches.
    for voice in ["kal_diphone", "ked_diphone"] {
        for (stretch, f0) in [0.8f32, 1.0, 1.2, 1.45].into_iter().flat_map(|s| [(s, 95), (s, 150), (s, 210)]) {
            let sentences: Vec<String> = (0..60 / scale).map(|_| sentence(&mut rng, &words)).collect();
            let mut utterances = festival(voice, stretch, Some(f0), &sentences, &scratch)?.into_iter().peekable();
            while utterances.peek().is_some() {
                let n = 1 + rng.below(3);
                let group: Vec<Utterance> = utterances.by_ref().take(n).collect();
                streams.push(stream(&mut rng, &group, true));
            }
        }
    }
    let slices: usize = streams.iter().map(|s| s.labels.len()).sum();
    println!("{} streams, {slices} slices ({:.0} s of sound)", streams.len(), slices as f32 / 100.0);

    // Every 20th stream is held out to check the training; the rest trains.
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (i, s) in streams.into_iter().enumerate() {
        if i % 20 == 19 { held.push(s) } else { train.push(s) }
    }

    // Standardisation of each feature, the same at every context position.
    let mut sum = [0.0f64; FEATURES];
    let mut sq = [0.0f64; FEATURES];
    let mut count = [0usize; Viseme::COUNT];
    for s in &train {
        for (f, &l) in s.features.iter().zip(&s.labels) {
            for k in 0..FEATURES {
                sum[k] += f[k] as f64;
                sq[k] += (f[k] as f64).powi(2);
            }
            count[l as usize] += 1;
        }
    }
    let n = train.iter().map(|s| s.labels.len()).sum::<usize>() as f64;
    let mean: Vec<f32> = (0..INPUTS).map(|i| (sum[i % FEATURES] / n) as f32).collect();
    let scale_in: Vec<f32> = (0..INPUTS)
        .map(|i| {
            let m = sum[i % FEATURES] / n;
            (1.0 / (sq[i % FEATURES] / n - m * m).max(1e-6).sqrt()) as f32
        })
        .collect();
    let class_weight: Vec<f32> =
        count.iter().map(|&c| ((n / (Viseme::COUNT as f64 * c.max(1) as f64)).sqrt() as f32).min(4.0)).collect();
    println!("classes: {:?}", Viseme::ALL.iter().map(|v| (v.name(), count[v.index()])).collect::<Vec<_>>());

    let sizes = [INPUTS, 128, 64, Viseme::COUNT];
    let mut mlp =
        Mlp { mean, scale: scale_in, layers: sizes.windows(2).map(|w| Layer::new(&mut rng, w[0], w[1])).collect() };
    let mut order: Vec<(u32, u32)> =
        train.iter().enumerate().flat_map(|(i, s)| (0..s.labels.len() as u32).map(move |n| (i as u32, n))).collect();
    let epochs = if quick { 2 } else { 12 };
    let batch = 256;
    let mut t = 0;
    let mut x = vec![0.0; INPUTS];
    for epoch in 0..epochs {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let lr = 2e-3 * 0.5f32.powf(epoch as f32 / 2.0);
        let mut loss = 0.0f64;
        for chunk in order.chunks(batch) {
            for &(s, n) in chunk {
                let s = &train[s as usize];
                input(s, n as usize, &mut x);
                let acts = mlp.activations(&x);
                let label = s.labels[n as usize] as usize;
                let z = acts.last().unwrap();
                let max = z.iter().copied().fold(f32::MIN, f32::max);
                let e: Vec<f32> = z.iter().map(|v| (v - max).exp()).collect();
                let total: f32 = e.iter().sum();
                let w = class_weight[label];
                loss += (w * -(e[label] / total).ln()) as f64;
                let mut g: Vec<f32> = e.iter().map(|v| w * v / total).collect();
                g[label] -= w;
                for l in (0..mlp.layers.len()).rev() {
                    let mut gx = vec![0.0; mlp.layers[l].inputs];
                    mlp.layers[l].backward(&acts[l], &g, (l > 0).then_some(&mut gx[..]));
                    if l > 0 {
                        // Through the ReLU of the layer below.
                        g = gx.iter().zip(&acts[l]).map(|(g, a)| if *a > 0.0 { *g } else { 0.0 }).collect();
                    }
                }
            }
            t += 1;
            for l in &mut mlp.layers {
                l.step(lr, t, chunk.len());
            }
        }
        println!("epoch {}: loss {:.4}", epoch + 1, loss / order.len() as f64);
    }
    report("training voices, held-out streams", judge(&mlp, &held));

    // The voice never trained on.
    let unseen: Vec<String> = (0..40 / scale).map(|_| sentence(&mut rng, &words)).collect();
    match festival("cmu_us_slt_arctic_hts", 1.0, None, &unseen, &scratch) {
        Ok(utterances) => {
            let streams: Vec<Stream> = utterances.chunks(2).map(|u| stream(&mut rng, u, false)).collect();
            report("cmu_us_slt_arctic_hts (not trained on)", judge(&mlp, &streams));
        }
        Err(e) => println!("cmu_us_slt_arctic_hts not checked: {e}"),
    }
    for voice in ["rms", "awb"] {
        match flite(voice, &unseen, &scratch) {
            Ok(utterances) => {
                let streams: Vec<Stream> = utterances.chunks(2).map(|u| stream(&mut rng, u, false)).collect();
                report(&format!("flite {voice} (not trained on)"), judge(&mlp, &streams));
            }
            Err(e) => println!("flite {voice} not checked: {e}"),
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);

    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let tensor = |v: &[f32], shape: &[usize]| Tensor::from_slice(v, shape, &Device::Cpu).expect("shapes match");
    let context: Vec<f32> = CONTEXT.iter().map(|&c| c as f32).collect();
    tensors.insert("context".into(), tensor(&context, &[CONTEXT.len()]));
    tensors.insert("input.mean".into(), tensor(&mlp.mean, &[INPUTS]));
    tensors.insert("input.scale".into(), tensor(&mlp.scale, &[INPUTS]));
    for (i, l) in mlp.layers.iter().enumerate() {
        tensors.insert(format!("layers.{i}.weight"), tensor(&l.w, &[l.outputs, l.inputs]));
        tensors.insert(format!("layers.{i}.bias"), tensor(&l.b, &[l.outputs]));
    }
    candle_core::safetensors::save(&tensors, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("wrote {} ({} bytes)", out.display(), std::fs::metadata(&out).map_or(0, |m| m.len()));
    Ok(())
}
