//! End-to-end tests of the `lipsync` binary on the real media in `../shared/media`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media").join(name)
}

fn lipsync() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lipsync"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lipsync-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `lipsync dub --face FACE --audio AUDIO -o OUT`.
fn dub(face: &Path, audio: &Path, out: &Path) -> Command {
    let mut cmd = lipsync();
    cmd.args(["dub", "--face"]).arg(face).arg("--audio").arg(audio).arg("-o").arg(out);
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("lipsync runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "lipsync failed:\n{stderr}");
    stderr
}

#[test]
fn dub_a_photo_makes_a_video_as_long_as_the_audio() {
    let out = tmp("photo.mp4");
    let log = run_ok(&mut dub(&media("astronaut.png"), &media("speech_16k.wav"), &out));
    assert!(log.contains("156 frames"), "{log}");
    // The output decodes: 6.23 s of speech -> 156 frames at 25 fps, and the audio is the speech.
    let video = lipsync::io::decode_video(&out, usize::MAX).unwrap();
    assert_eq!(video.frames.len(), 156);
    assert_eq!((video.width, video.height), (512, 512));
    let audio = lipsync::io::decode_audio(&out).unwrap();
    let input = lipsync::io::decode_audio(&media("speech_16k.wav")).unwrap();
    let secs = audio.len() as f64 / 16000.0;
    assert!((secs - input.len() as f64 / 16000.0).abs() < 0.05, "audio lasts {secs} s");
    let energy = |s: &[f32]| s.iter().map(|v| v * v).sum::<f32>() / s.len() as f32;
    assert!((energy(&audio) / energy(&input) - 1.0).abs() < 0.2, "the output carries the speech");
}

#[test]
fn dub_a_video_keeps_its_frames_and_stops_with_the_audio() {
    let out = tmp("video.mp4");
    run_ok(&mut dub(&media("speakerine.mp4"), &media("speech_16k.wav"), &out));
    let video = lipsync::io::decode_video(&out, usize::MAX).unwrap();
    assert_eq!(video.frames.len(), 156, "9 s of face, 6.23 s of audio");
    assert_eq!((video.width, video.height), (256, 256));
}

/// The same dub twice gives the same pictures: the encoder's rate control is not left to thread timing.
#[test]
fn dub_writes_the_same_video_every_run() {
    let frames = |name: &str| {
        let out = tmp(name);
        run_ok(&mut dub(&media("speakerine.mp4"), &media("speech_16k.wav"), &out));
        lipsync::io::decode_video(&out, usize::MAX).unwrap().frames
    };
    let (first, second) = (frames("again-1.mp4"), frames("again-2.mp4"));
    assert_eq!(first.len(), second.len());
    for (k, (a, b)) in first.iter().zip(&second).enumerate() {
        assert!(a.data() == b.data(), "frame {k} differs between two runs of the same dub");
    }
}

#[test]
fn dub_names_a_missing_file() {
    let out = lipsync()
        .args(["dub", "--face", "/nonexistent/face.png", "--audio"])
        .arg(media("speech_16k.wav"))
        .args(["-o", "/tmp/never.mp4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/face.png"), "{err}");
}

#[test]
fn live_with_rtp_audio_writes_every_frame_with_its_sound() {
    lipsync::io::init().unwrap();
    use gst::prelude::*;
    let port = 20000 + (std::process::id() % 20000) as u16;
    let sender = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=sine freq=300 ! audio/x-raw,rate=16000,channels=1 ! audioconvert ! \
         rtpL16pay ! udpsink host=127.0.0.1 port={port}"
    ))
    .unwrap();
    sender.set_state(gst::State::Playing).unwrap();
    for name in ["live.mkv", "live.mp4"] {
        let out = tmp(name);
        let log = run_ok(
            lipsync()
                .args(["live", "--camera", "test", "--audio", &format!("rtp://127.0.0.1:{port}?codec=l16")])
                .arg("--out")
                .arg(&out)
                .args(["--duration", "2"]),
        );
        let frames = lipsync::io::decode_video(&out, usize::MAX).unwrap().frames.len();
        assert!((40..=55).contains(&frames), "{name}: 2 s at 25 fps: {frames} frames\n{log}");
        assert!(log.contains("0 without audio"), "{name}: the RTP audio arrived:\n{log}");
        // The frames as muxed (the decode above resamples to 25 fps, so a frame captured late on a busy
        // machine comes back there as one frame more or less).
        let counted: usize = log.split(" frames in").next().and_then(|l| l.rsplit('\n').next()?.parse().ok()).unwrap();
        let written = muxed_video_frames(&out);
        assert_eq!(written, counted, "{name}: every frame counted in was written:\n{log}");
        // The file carries the voice, as long as the picture.
        let sound = lipsync::io::decode_audio(&out).unwrap();
        let seconds = sound.len() as f64 / 16_000.0;
        assert!((seconds - frames as f64 / 25.0).abs() < 0.15, "{name}: {seconds:.2} s of sound, {frames} frames");
        let tail = &sound[sound.len() / 2..];
        let rms = (tail.iter().map(|s| s * s).sum::<f32>() / tail.len() as f32).sqrt();
        assert!(rms > 0.3, "{name}: the tone is in the file (RMS {rms:.3})");
    }
    sender.set_state(gst::State::Null).unwrap();
}

/// A TTS's turns over RTP, as a voice agent sends them: each utterance in one burst, its RTP timestamps
/// saying when it plays; the user interrupts the first. The file `live` writes carries what was heard:
/// the first turn up to the interruption, the second in full, at real time.
#[test]
fn live_plays_speech_sent_in_bursts_at_real_time_and_clear_interrupts_it() {
    lipsync::io::init().unwrap();
    use gst::prelude::*;
    let port = 20000 + (std::process::id() % 20000) as u16 + 7;
    let control_port = port + 1;
    let out = tmp("turns.mkv");
    let mut child = lipsync()
        .args(["live", "--camera", "test", "--renderer", "passthrough", "--audio-gaps", "silence"])
        .args(["--audio", &format!("rtp://127.0.0.1:{port}?codec=l16&burst=1")])
        .args(["--control", &format!("127.0.0.1:{control_port}"), "--duration", "6"])
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, src) = common::rtp_speech_sender(port);
    // A tone of `seconds` at `freq`, sent at once, at `at` s of the sender's RTP clock. The payloader
    // numbers the samples on (it takes a pts only at a discontinuity), so each utterance's RTP time
    // follows the one before: the second plays 3 s after the first began, though it is sent after 2 s.
    let utterance = |freq: f32, seconds: f32, at: u64| {
        let n = (seconds * 16_000.0) as usize;
        let bytes: Vec<u8> = (0..n)
            .flat_map(|i| {
                let v = 0.5 * (std::f32::consts::TAU * freq * i as f32 / 16_000.0).sin();
                ((v * 32767.0) as i16).to_be_bytes()
            })
            .collect();
        let mut b = gst::Buffer::from_mut_slice(bytes);
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_seconds(at));
        src.push_buffer(b).unwrap();
    };
    let agent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    agent.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let sent = std::time::Instant::now();
    utterance(300.0, 3.0, 0); // 3 s of speech in one burst
    std::thread::sleep(std::time::Duration::from_millis(1000));
    agent.send_to(b"clear", ("127.0.0.1", control_port)).unwrap();
    let mut line = [0u8; 128];
    // The interrupted turn is reported to the agent.
    let reply = agent.recv(&mut line).map(|n| String::from_utf8_lossy(&line[..n]).into_owned()).unwrap_or_default();
    std::thread::sleep(std::time::Duration::from_millis(2000).saturating_sub(sent.elapsed()));
    utterance(500.0, 1.0, 3); // the next turn
    let status = child.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    sender.set_state(gst::State::Null).unwrap();
    assert!(status.success(), "{log}");
    assert!(reply.starts_with("finished 0 ") && reply.trim_end().ends_with(" interrupted"), "{reply}\n{log}");
    for expected in ["playback: started 0 ", "playback: started 1 ", "playback: finished 1 1000 complete"] {
        assert!(log.contains(expected), "no `{expected}`:\n{log}");
    }
    // The sound in the file, in 10 ms blocks: the runs of tone.
    let sound = lipsync::io::decode_audio(&out).unwrap();
    let loud: Vec<bool> =
        sound.chunks(160).map(|b| (b.iter().map(|s| s * s).sum::<f32>() / b.len() as f32).sqrt() > 0.1).collect();
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &l) in loud.iter().chain([&false]).enumerate() {
        match (l, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push((s, i - s));
                start = None;
            }
            _ => {}
        }
    }
    assert_eq!(runs.len(), 2, "two turns heard, in 10 ms blocks (start, length): {runs:?}\n{log}");
    let (first, second) = (runs[0], runs[1]);
    assert!((60..=110).contains(&first.1), "the first turn stops at the clear, 1 s in: {runs:?}");
    assert!(second.1.abs_diff(100) <= 4, "the second turn plays in full, at real time: {runs:?}");
    assert!(second.0.abs_diff(first.0 + 300) <= 4, "each turn at its time: {runs:?}");
}

/// Runs a gst-launch pipeline to its end.
fn run_pipeline(description: &str) {
    use gst::prelude::*;
    lipsync::io::init().unwrap();
    let pipeline = gst::parse::launch(description).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("the pipeline ends within 60 s");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{description}: {msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn dub_fits_cut_to_the_shorter_and_pad_to_the_longer() {
    // A face video of 12 frames (0.48 s), speech of 2 s, and a beep of 0.2 s.
    let (clip, speech, beep) = (tmp("fit-face.mp4"), tmp("fit-speech.wav"), tmp("fit-beep.wav"));
    run_pipeline(&format!(
        "videotestsrc num-buffers=12 ! video/x-raw,width=320,height=240,framerate=25/1 ! videoconvert ! x264enc ! \
         mp4mux ! filesink location=\"{}\"",
        clip.display()
    ));
    for (path, buffers) in [(&speech, 40), (&beep, 4)] {
        run_pipeline(&format!(
            "audiotestsrc num-buffers={buffers} samplesperbuffer=800 wave=sine ! audio/x-raw,rate=16000,channels=1 ! \
             wavenc ! filesink location=\"{}\"",
            path.display()
        ));
    }
    let dubbed = |audio: &Path, fit: &str| -> (usize, f64) {
        let out = tmp(&format!("fit-{fit}.mp4"));
        run_ok(dub(&clip, audio, &out).args(["--fit", fit]));
        let frames = muxed_video_frames(&out);
        let seconds = lipsync::io::decode_audio(&out).unwrap().len() as f64 / 16_000.0;
        std::fs::remove_file(&out).unwrap();
        (frames, seconds)
    };
    // Speech longer than the video.
    assert_eq!(dubbed(&speech, "cut").0, 12, "cut: as long as the video");
    let (frames, seconds) = dubbed(&speech, "pad");
    assert_eq!(frames, 50, "pad: as long as the speech, the last frame held");
    assert!((seconds - 2.0).abs() < 0.05, "pad: {seconds} s of sound");
    assert_eq!(dubbed(&speech, "loop").0, 50, "loop: as long as the speech");
    // Speech shorter than the video.
    assert_eq!(dubbed(&beep, "cut").0, 5, "cut: as long as the speech");
    let (frames, seconds) = dubbed(&beep, "pad");
    assert_eq!(frames, 12, "pad: as long as the video");
    assert!((seconds - 0.48).abs() < 0.05, "pad: silence after the speech, {seconds} s of sound");
    for path in [clip, speech, beep] {
        std::fs::remove_file(path).unwrap();
    }
}

/// The video frames a file holds, decoded but not resampled.
fn muxed_video_frames(path: &Path) -> usize {
    use gst::prelude::*;
    let pipeline = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! decodebin name=d d. ! queue ! video/x-raw ! fakesink name=video signal-handoffs=true \
         d. ! queue ! audio/x-raw ! fakesink",
        path.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let frames = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sink = pipeline.by_name("video").unwrap();
    let counter = frames.clone();
    sink.connect("handoff", false, move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        None
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("the file decodes within 30 s");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{}: {msg:?}", path.display());
    pipeline.set_state(gst::State::Null).unwrap();
    frames.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn doctor_checks_each_thing_and_fails_when_one_needs_a_fix() {
    let out = lipsync().arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for what in ["gstreamer", "virtual camera", "face models", "audio server", "cuda"] {
        assert!(
            stdout.lines().any(|l| (l.starts_with("ok ") || l.starts_with("fix ")) && l.contains(what)),
            "{what}:\n{stdout}"
        );
    }
    // Where something needs a fix, the line says what to run, and the command fails.
    let fixes = stdout.lines().filter(|l| l.starts_with("fix ")).count();
    assert_eq!(out.status.success(), fixes == 0, "{stdout}");
    assert!(stdout.contains("ok   gstreamer"), "this machine has every element lipsync uses:\n{stdout}");
    assert!(stdout.contains("ok   face models"), "{stdout}");
}

#[test]
fn live_rejects_an_unknown_audio_source() {
    let out = lipsync()
        .args(["live", "--camera", "test", "--audio", "rtp://x:1?codec=mp3", "--out", "/tmp/x.mkv"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown codec `mp3`"));
}

#[test]
fn landmarks_prints_json_and_draws() {
    let png = tmp("landmarks.png");
    let out = lipsync().args(["landmarks", "--json", "--draw"]).arg(&png).arg(media("astronaut.png")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(json.starts_with('{') && json.trim_end().ends_with('}'));
    assert!(json.contains("\"width\":512,\"height\":512"));
    // 468 landmarks of three numbers each.
    let landmarks = &json[json.find("\"landmarks\":[").unwrap()..];
    assert_eq!(landmarks.matches('[').count() - 1, 468);
    let drawn = lipsync::io::decode_video(&png, 1).unwrap();
    assert_eq!((drawn.width, drawn.height), (512, 512));
}

#[test]
fn landmarks_on_an_image_without_a_face() {
    let png = tmp("flat.png");
    lipsync::io::write_png(&png, 64, 48, vec![200; 64 * 48 * 3]).unwrap();
    let out = lipsync().args(["landmarks", "--json"]).arg(&png).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"face\":null"));
    let out = lipsync().arg("landmarks").arg(&png).output().unwrap();
    assert!(!out.status.success(), "text mode says there is no face with a failing status");
    assert!(String::from_utf8_lossy(&out.stdout).contains("no face"));
}

#[test]
fn weights_inspect_names_the_network_a_checkpoint_fits_and_convert_writes_safetensors() {
    use lipsync::stsa::detw;
    use lipsync::stsa::heatmap_generator::{Config, HeatmapGenerator};
    // A complete heatmap generator checkpoint (deterministic weights), as safetensors.
    let keys = detw::keys_read_by(|vb| HeatmapGenerator::load(&Config::default(), vb).map(|_| ())).unwrap();
    let tensors = detw::generate(&keys, &candle_core::Device::Cpu).unwrap();
    let full = tmp("heatmap.safetensors");
    candle_core::safetensors::save(&tensors, &full).unwrap();
    let out = lipsync().args(["weights", "inspect"]).arg(&full).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("fits: heatmap-generator"), "{text}");
    assert!(text.contains("heatmap-generator: needs 595 tensors; 0 missing, 0 mis-shaped"), "{text}");
    // The loader fixture: a real .pth with 19 of those keys, some behind `module.`.
    let pth = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/loader/small_checkpoint.pth");
    let out = lipsync().args(["weights", "inspect"]).arg(&pth).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("19 tensors") && text.contains("fits no network completely"), "{text}");
    assert!(text.contains("missing mel_encoder.1.conv_block.0.weight"), "{text}");
    let converted = tmp("small.safetensors");
    run_ok(lipsync().args(["weights", "convert"]).arg(&pth).arg("-o").arg(&converted));
    let back = candle_core::safetensors::load(&converted, &candle_core::Device::Cpu).unwrap();
    assert_eq!(back.len(), 19);
    assert!(back.keys().all(|k| !k.starts_with("module.")));
    // A file that is not there is named.
    let out = lipsync().args(["weights", "inspect", "/nonexistent/face_weight.pth"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/face_weight.pth"));
}

#[test]
fn dub_with_stsa_without_weights_fails_naming_what_to_get() {
    // `extra` arguments before the face; the run must fail, its stderr is returned.
    let dub_stsa = |extra: &[&std::ffi::OsStr]| -> String {
        let out = lipsync()
            .args(["dub", "--renderer", "stsa"])
            .args(extra)
            .arg("--face")
            .arg(media("astronaut.png"))
            .arg("--audio")
            .arg(media("speech_16k.wav"))
            .arg("-o")
            .arg(tmp("stsa.mp4"))
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = dub_stsa(&[]);
    assert!(stderr.contains("needs its weights") && stderr.contains("models/README.md"), "{stderr}");
    let empty = std::env::temp_dir();
    let stderr = dub_stsa(&["--weights".as_ref(), empty.as_os_str()]);
    assert!(stderr.contains("heatmap_weight.pth"), "{stderr}");
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // As `lipsync weights inspect FILE --keys | head -1` does once head has its line: the pipe is closed
    // before the first line is written.
    let mut child = lipsync()
        .args(["weights", "inspect", "--keys"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/face/astronaut.golden.safetensors"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("panicked"), "{:?}: {stderr}", out.status);
}

#[test]
fn dubs_writing_one_file_leave_it_whole_and_a_killed_dub_leaves_none() {
    let spawn = |out: &Path| {
        dub(&media("astronaut.png"), &media("speech_16k.wav"), out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // Two at once onto the same name: each writes its own part, the last rename wins, the file is whole.
    let shared = tmp("shared.mp4");
    let (mut a, mut b) = (spawn(&shared), spawn(&shared));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let video = lipsync::io::decode_video(&shared, usize::MAX).expect("a readable MP4");
    let speech = lipsync::io::decode_audio(&media("speech_16k.wav")).unwrap();
    assert_eq!(video.frames.len(), (speech.len() * 25).div_ceil(16_000));
    let audio = lipsync::io::decode_audio(&shared).unwrap();
    assert!(audio.len().abs_diff(speech.len()) < 1600, "{} samples of {}", audio.len(), speech.len());
    // Killed while writing: nothing under the target's name.
    let target = tmp("killed.mp4");
    let dir = target.parent().unwrap().to_owned();
    let mut c = spawn(&target);
    let writing =
        || std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".killed."));
    let start = std::time::Instant::now();
    while !writing() && c.try_wait().unwrap().is_none() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(!target.exists(), "a killed dub left {}", target.display());
}

#[test]
fn a_dub_stopped_by_sigterm_completes_its_file_and_says_so() {
    let target = tmp("stopped.mp4");
    let dir = target.parent().unwrap().to_owned();
    let child = dub(&media("speakerine.mp4"), &media("education_9s_16k.wav"), &target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once it is writing, and a little into the rendering.
    let writing =
        || std::fs::read_dir(&dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".stopped."));
    let start = std::time::Instant::now();
    while !writing() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The shell's own `kill` (procps' /bin/kill may be missing on a minimal machine).
    let killed = Command::new("sh").arg("-c").arg(format!("kill -TERM {}", child.id())).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an interrupted dub fails: {stderr}");
    assert!(stderr.contains("interrupted: wrote the first"), "{stderr}");
    let frames = lipsync::io::decode_video(&target, usize::MAX).expect("a complete, readable MP4").frames.len();
    assert!((1..225).contains(&frames), "{frames} frames of 225");
    // As long in sound as in picture.
    let audio = lipsync::io::decode_audio(&target).unwrap().len();
    assert!(audio.abs_diff(frames * 640) <= 1280, "{audio} samples for {frames} frames");
}
