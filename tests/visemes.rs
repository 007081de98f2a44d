//! The default renderer's visemes, judged on speech from voices the viseme classifier was never trained on
//! (festival's `cmu_us_slt_arctic_hts`, an HTS voice of a woman, and flite's `rms` and `awb`, statistical
//! parametric voices of an American and a Scottish man; the classifier learned from eSpeak NG and
//! festival's diphone voices). The speech is synthesised here with its phone times; `lipsync dub`
//! re-renders the photo and the talking clip; the output is tracked and scored with
//! `lipsync::sync::viseme_scores`: the lips must meet for /p b m/, spread for /i e/ more than for /u o/,
//! and open for open vowels, from the audio alone and, tighter, with the phonemes given (`--phonemes`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use candle_core::Device;
use lipsync::face::models::ModelSource;
use lipsync::face::{FaceTracker, TrackerConfig};
use lipsync::io::{decode_audio, decode_video};
use lipsync::sync::{VisemeScores, measure, viseme_scores};
use lipsync::visemes::estimator::SLICE_NS;
use lipsync::visemes::{PhonemeTrack, Viseme, VisemeEstimator};

/// Sentences for the held-out voice, rich in closures, rounded and spread vowels.
const TEXT: &str = "Bob keeps a map of the moon by the pool. Please put the blue boots back. \
    Maybe my team will beat them. We hope to move the boat soon. Peter bought me some cheap peas. \
    You should see the big bee by the tree. Pam made a pumpkin pie for Tom.";

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lipsync-visemes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A voice the classifier never heard.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Voice {
    /// festival's `cmu_us_slt_arctic_hts`.
    Slt,
    /// flite's `rms`.
    Rms,
    /// flite's `awb`.
    Awb,
}

impl Voice {
    const ALL: [Voice; 3] = [Voice::Slt, Voice::Rms, Voice::Awb];

    fn name(self) -> &'static str {
        match self {
            Voice::Slt => "slt",
            Voice::Rms => "rms",
            Voice::Awb => "awb",
        }
    }
}

/// `voice` speaking [`TEXT`]: a 16 kHz WAV and its phone times as a festival segment file, made once per
/// run (the tests share them, and run at the same time).
fn held_out_speech(voice: Voice) -> (PathBuf, PathBuf) {
    static SPEECH: [OnceLock<(PathBuf, PathBuf)>; 3] = [const { OnceLock::new() }; 3];
    SPEECH[voice as usize].get_or_init(|| synthesise(voice)).clone()
}

fn synthesise(voice: Voice) -> (PathBuf, PathBuf) {
    let (wav, segs) = (tmp(&format!("{}.wav", voice.name())), tmp(&format!("{}.segs", voice.name())));
    match voice {
        Voice::Slt => {
            let script = tmp("slt.scm");
            std::fs::write(
                &script,
                format!(
                    "(voice_cmu_us_slt_arctic_hts)\n(set! utt (utt.synth (Utterance Text \"{TEXT}\")))\n\
                     (utt.wave.resample utt 16000)\n(utt.save.wave utt \"{}\" 'riff)\n(utt.save.segs utt \"{}\")\n",
                    wav.display(),
                    segs.display()
                ),
            )
            .unwrap();
            let out = Command::new("festival").arg("-b").arg(&script).output().expect(
                "festival is needed to synthesise the held-out voice: scripts/setup.sh installs festival and \
                 festvox-us-slt-hts",
            );
            assert!(out.status.success() && wav.exists(), "festival failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Voice::Rms | Voice::Awb => {
            // flite prints each phone with its end time: "pau:0.142 b:0.215 ...".
            let out = Command::new("flite")
                .args(["-voice", voice.name(), "-psdur", "-t", TEXT, "-o"])
                .arg(&wav)
                .output()
                .expect("flite is needed to synthesise the held-out voice: scripts/setup.sh installs it");
            assert!(out.status.success() && wav.exists(), "flite failed: {}", String::from_utf8_lossy(&out.stderr));
            let mut text = String::from("#\n");
            for item in String::from_utf8(out.stdout).unwrap().split_whitespace() {
                let (phone, end) = item.rsplit_once(':').unwrap();
                text.push_str(&format!("{end} 100 {phone}\n"));
            }
            std::fs::write(&segs, text).unwrap();
        }
    }
    (wav, segs)
}

fn dub(face: &Path, audio: &Path, phonemes: Option<&Path>, out: &Path) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lipsync"));
    cmd.args(["dub", "--face"]).arg(face).arg("--audio").arg(audio).arg("-o").arg(out);
    if let Some(p) = phonemes {
        cmd.arg("--phonemes").arg(p);
    }
    let status = cmd.output().unwrap();
    assert!(status.status.success(), "dub failed: {}", String::from_utf8_lossy(&status.stderr));
}

/// What a dub must reach.
struct Floor {
    closure: f32,
    round_spread: f32,
    open_closed: f32,
}

/// The figures the renderer is held to today, a little under those measured (README, "Visemes", lists them
/// with the goals: closure 0.8 from the audio and 0.95 with the phonemes, round/spread 0.75 and 0.9,
/// open/closed 0.9).
fn floor(voice: Voice, face: &str, phonemes: bool) -> Floor {
    let floor = |closure: f32, round_spread: f32, open_closed: f32| Floor { closure, round_spread, open_closed };
    match (voice, face, phonemes) {
        (Voice::Slt, "photo", false) => floor(0.8, 0.8, 0.9),
        (Voice::Slt, _, false) => floor(0.9, 0.75, 0.93),
        (Voice::Rms, "photo", false) => floor(0.8, 0.9, 0.9),
        (Voice::Rms, _, false) => floor(0.85, 0.9, 0.92),
        (Voice::Awb, "photo", false) => floor(0.8, 0.75, 0.93),
        (Voice::Awb, _, false) => floor(0.85, 0.75, 0.93),
        (_, "photo", true) => floor(0.95, 0.95, 0.9),
        (_, _, true) => floor(0.95, 0.95, 0.95),
    }
}

fn scores(video: &Path, track: &PhonemeTrack) -> (VisemeScores, i32, f32) {
    let audio = decode_audio(video).unwrap();
    let frames = decode_video(video, 10_000).unwrap().frames;
    let config = TrackerConfig { smoothing: None, ..Default::default() };
    let mut tracker = FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, config).unwrap();
    let report = measure(frames.iter().map(Ok), &audio, &mut tracker, 10).unwrap();
    assert_eq!(report.faces, report.frames, "a face in every frame");
    let e = report.estimate;
    (viseme_scores(&report.opening, &report.width, 25.0, track), e.offset_frames, e.correlation)
}

#[test]
fn the_classifier_hears_the_visemes_of_unseen_voices() {
    for voice in Voice::ALL {
        classifier_hears(voice);
    }
}

fn classifier_hears(voice: Voice) {
    let (wav, segs) = held_out_speech(voice);
    let audio = decode_audio(&wav).unwrap();
    let track = PhonemeTrack::load(&segs).unwrap();
    // The estimator fed as the renderer feeds it: windows of 100 ms back and 100 ms ahead, every 40 ms.
    let mut estimator = VisemeEstimator::default();
    let (mut right, mut total) = (0usize, 0usize);
    let mut confusion = [[0usize; Viseme::COUNT]; Viseme::COUNT];
    for k in 0..(audio.len() / 640) as i64 {
        let (start, end) = (k * 640 - 1600, k * 640 + 1600);
        let window: Vec<f32> =
            (start..end).map(|i| if i >= 0 { audio.get(i as usize).copied().unwrap_or(0.0) } else { 0.0 }).collect();
        estimator.update(start * 62_500, &window);
        for n in k * 4 - 4..k * 4 {
            let Some(p) = estimator.probabilities(n) else { continue };
            let guess = (0..Viseme::COUNT).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            let truth = track.viseme_at((n * SLICE_NS) as f64 * 1e-9).index();
            confusion[truth][guess] += 1;
            total += 1;
            right += (guess == truth) as usize;
        }
    }
    let accuracy = right as f32 / total as f32;
    let recall = |v: Viseme| {
        let row = confusion[v.index()];
        row[v.index()] as f32 / row.iter().sum::<usize>().max(1) as f32
    };
    let per: Vec<String> = Viseme::ALL.iter().map(|&v| format!("{v} {:.2}", recall(v))).collect();
    eprintln!("{}: frame accuracy {accuracy:.3} over {total} slices ({})", voice.name(), per.join(", "));
    assert!(total > 1000 && accuracy > 0.5, "frame accuracy {accuracy}");
    // rms pauses for 0.8 s in all (slt 1.4 s): the edges of its pauses, where the classifier still hears
    // the speech around, weigh more.
    let silence = if voice == Voice::Rms { 0.55 } else { 0.8 };
    assert!(recall(Viseme::Silence) > silence && recall(Viseme::Bilabial) > 0.25, "{per:?}");
}

#[test]
fn dubbed_lips_close_spread_round_and_open_for_unseen_voices() {
    let mut failures = Vec::new();
    for voice in Voice::ALL {
        dub_and_judge(voice, &mut failures);
    }
    assert!(failures.is_empty(), "{failures:?}");
}

fn dub_and_judge(voice: Voice, failures: &mut Vec<String>) {
    let (wav, segs) = held_out_speech(voice);
    let track = PhonemeTrack::load(&segs).unwrap();
    for (face_name, face) in
        [("photo", common::shared("media/astronaut.png")), ("clip", common::shared("media/speakerine.mp4"))]
    {
        for (mode, phonemes) in [("audio", None), ("phonemes", Some(segs.as_path()))] {
            let out = tmp(&format!("{}-{face_name}-{mode}.mp4", voice.name()));
            dub(&face, &wav, phonemes, &out);
            let (s, offset, correlation) = scores(&out, &track);
            eprintln!(
                "{}, {face_name}, visemes from the {mode}: {} /p b m/, closure hit rate {:.3}, round/spread AUC \
                 {:.3}, open/closed AUC {:.3}; offset {offset} frames, correlation {correlation:.3}",
                voice.name(),
                s.closures,
                s.closure_hit_rate.unwrap(),
                s.round_spread_auc.unwrap(),
                s.open_closed_auc.unwrap()
            );
            let least = floor(voice, face_name, phonemes.is_some());
            let below = |v: Option<f32>, least: f32| v.unwrap() < least;
            if below(s.closure_hit_rate, least.closure)
                || below(s.round_spread_auc, least.round_spread)
                || below(s.open_closed_auc, least.open_closed)
            {
                failures.push(format!("{}, {face_name} ({mode}): {s:?}", voice.name()));
            }
        }
    }
}
