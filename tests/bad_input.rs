//! Inputs a hostile or careless user gives the `lipsync` binary: each must end the command promptly with a
//! non-zero exit and an error that names the file and says what is wrong with it, never a hang. The
//! deadline below only catches hangs; the times are printed (they are well under a second here).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lipsync-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A file holding `bytes`.
fn file(name: &str, bytes: &[u8]) -> PathBuf {
    let path = tmp(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The first `share` of a media file's bytes.
fn cut(name: &str, share: f64, out: &str) -> PathBuf {
    let bytes = std::fs::read(media(name)).unwrap();
    file(out, &bytes[..(bytes.len() as f64 * share) as usize])
}

/// Runs `lipsync args`, which must fail with every one of `expected` in its error, and leave no `output`.
fn fails(args: &[&Path], expected: &[&str], output: Option<&Path>) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lipsync"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Far beyond what any of these takes: a run still going then is hung.
    let deadline = Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("lipsync {args:?} hung (killed after {deadline:?})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    eprintln!(
        "{:?} in {:.2} s: {}",
        args.iter().skip(1).collect::<Vec<_>>(),
        start.elapsed().as_secs_f32(),
        err.trim()
    );
    assert!(!status.success(), "lipsync {args:?} succeeded");
    for e in expected {
        assert!(err.contains(e), "lipsync {args:?}: the error does not say {e:?}:\n{err}");
    }
    if let Some(out) = output {
        assert!(!out.exists(), "{} was left behind", out.display());
    }
}

fn p(s: &str) -> &Path {
    Path::new(s)
}

/// `dub` with a bad `--audio`: the error names the file and what is wrong.
fn dub_audio(audio: &Path, expected: &str) {
    let out = tmp("out.mp4");
    let face = media("astronaut.png");
    fails(
        &[p("dub"), p("--face"), &face, p("--audio"), audio, p("-o"), &out],
        &[&audio.display().to_string(), expected],
        Some(&out),
    );
}

#[test]
fn dub_rejects_audio_it_cannot_decode() {
    dub_audio(&file("empty.wav", b""), "not a media file");
    dub_audio(&file("notes.txt", b"These are my notes, not a recording.\n".repeat(40).as_slice()), "not a media file");
    let mut broken = b"RIFF\x24\x10\x00\x00WAVEfmt ".to_vec();
    broken.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    // Which element reports a broken header first varies from run to run (wavparse: "not a media file";
    // decodebin: "cannot be decoded"); either way the error names the file.
    dub_audio(&file("broken.wav", &broken), "broken.wav: ");
    dub_audio(&std::env::temp_dir(), "is a folder");
    dub_audio(&cut("speakerine_with_audio.mp4", 0.5, "cut.mp4"), "corrupt or cut short");
}

#[test]
fn dub_names_a_file_without_the_stream_it_needs() {
    // speakerine.mp4 has video only; a WAV has no picture.
    dub_audio(&media("speakerine.mp4"), "has no audio stream");
    let out = tmp("no-face.mp4");
    let (face, audio) = (media("speech_16k.wav"), media("speech_16k.wav"));
    fails(
        &[p("dub"), p("--face"), &face, p("--audio"), &audio, p("-o"), &out],
        &[&face.display().to_string(), "has no video stream"],
        Some(&out),
    );
}

#[test]
fn live_names_a_camera_file_without_video() {
    let (camera, out) = (media("speech_16k.wav"), tmp("live.mkv"));
    fails(
        &[p("live"), p("--camera"), &camera, p("--audio"), p("rtp://127.0.0.1:5999?codec=l16"), p("--out"), &out],
        &[&camera.display().to_string(), "has no video stream"],
        Some(&out),
    );
}

#[test]
fn dub_says_when_the_audio_is_cut_short() {
    dub_audio(&cut("speech_16k.wav", 0.4, "short.wav"), "cut short");
}

#[test]
fn landmarks_and_measure_reject_what_they_cannot_read() {
    let noise: Vec<u8> = (0..100_000u32).map(|i| (i.wrapping_mul(2_246_822_519).rotate_left(7) >> 5) as u8).collect();
    let random = file("random.jpg", &noise);
    fails(&[p("landmarks"), &random], &[&random.display().to_string()], None);
    let video = media("speakerine.mp4");
    fails(&[p("measure"), &video], &[&video.display().to_string(), "has no audio stream", "--audio"], None);
}
