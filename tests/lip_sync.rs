//! Measured lip sync of `lipsync dub` with the default (classic) renderer: the output MP4 is decoded and
//! the face tracked on every frame; the mouth opening must follow the speech loudness at zero offset
//! (within a frame) with a clear correlation (0.5 on recorded speech), tremble no more than the input video's own mouth, and stay
//! shut on silence.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use lipsync::face::models::ModelSource;
use lipsync::face::{FaceTracker, TrackerConfig};
use lipsync::io::{decode_audio, decode_video};
use lipsync::sync::{SyncReport, measure};

fn media(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "../shared/media", name].iter().collect()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lipsync-sync-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn tracker() -> FaceTracker {
    let config = TrackerConfig { smoothing: None, ..Default::default() };
    FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, config).unwrap()
}

fn dub(face: &Path, audio: &Path, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_lipsync"))
        .args(["dub", "--face"])
        .arg(face)
        .arg("--audio")
        .arg(audio)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    assert!(status.status.success(), "dub failed: {}", String::from_utf8_lossy(&status.stderr));
}

/// The output's own mouth against its own audio track.
fn measure_file(video: &Path) -> SyncReport {
    let audio = decode_audio(video).unwrap();
    let frames = decode_video(video, 10_000).unwrap().frames;
    measure(frames.iter().map(Ok), &audio, &mut tracker(), 10).unwrap()
}

fn write_silence(path: &Path, seconds: usize) {
    let n = 16_000 * seconds;
    let mut wav = Vec::with_capacity(44 + 2 * n);
    let header = |wav: &mut Vec<u8>, s: &[u8]| wav.extend_from_slice(s);
    header(&mut wav, b"RIFF");
    wav.extend_from_slice(&(36 + 2 * n as u32).to_le_bytes());
    header(&mut wav, b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&32_000u32.to_le_bytes());
    for v in [2u16, 16] {
        wav.extend_from_slice(&v.to_le_bytes());
    }
    header(&mut wav, b"data");
    wav.extend_from_slice(&(2 * n as u32).to_le_bytes());
    wav.resize(44 + 2 * n, 0);
    std::fs::write(path, wav).unwrap();
}

#[test]
fn dubbed_mouths_follow_the_speech() {
    let faces = [("photo", media("astronaut.png")), ("video", media("speakerine.mp4"))];
    let speeches = [("speech", media("speech_16k.wav")), ("education", media("education_9s_16k.wav"))];
    let mut failures = Vec::new();
    for (face_name, face) in &faces {
        for (speech_name, speech) in &speeches {
            let out = tmp(&format!("{face_name}-{speech_name}.mp4"));
            dub(face, speech, &out);
            let r = measure_file(&out);
            let e = r.estimate;
            eprintln!(
                "{face_name} + {speech_name}: offset {} frames, correlation {:.3}, face in {}/{} frames",
                e.offset_frames, e.correlation, r.faces, r.frames
            );
            // The visemes shape the opening beyond the loudness (lips shut on a loud /m/, narrow on /s/ and
            // /f/): the correlation is held at 0.5 on the recorded speech, 0.4 on eSpeak NG's.
            let least = if *speech_name == "education" { 0.5 } else { 0.4 };
            if e.offset_frames.abs() > 1 || e.correlation < least || r.faces != r.frames {
                failures.push(format!("{face_name} + {speech_name}: {e:?}, faces {}/{}", r.faces, r.frames));
            }
        }
    }
    assert!(failures.is_empty(), "out of sync: {failures:?}");
}

#[test]
fn the_dubbed_mouth_trembles_no_more_than_the_original() {
    // Recorded speech must not make the mouth tremble more than the clip's own speaker's does. eSpeak NG's
    // speech opens and shuts the mouth on every syllable, without a pause, with vowels the classifier
    // hears surely (so the lips round and spread fully): 5 % above is allowed there (2 % is measured).
    for (speech, allowed) in [("education_9s_16k.wav", 1.0), ("speech_16k.wav", 1.05)] {
        let out = tmp(&format!("jitter-{speech}.mp4"));
        dub(&media("speakerine.mp4"), &media(speech), &out);
        let dubbed = measure_file(&out);
        // The input over the same frames, against the same audio (only its jitter matters here).
        let audio = decode_audio(&media(speech)).unwrap();
        let frames = decode_video(&media("speakerine.mp4"), dubbed.frames).unwrap().frames;
        let original = measure(frames.iter().map(Ok), &audio, &mut tracker(), 10).unwrap();
        let (o, d) = (original.jitter_smoothed.unwrap(), dubbed.jitter_smoothed.unwrap());
        eprintln!(
            "{speech}: mouth jitter over {} frames: original {o:.5} (raw {:.5}), dubbed {d:.5} (raw {:.5}), {:.3}x",
            dubbed.frames,
            original.jitter.unwrap(),
            dubbed.jitter.unwrap(),
            d / o
        );
        assert!(d <= allowed * o, "{speech}: the dubbed mouth trembles more: {d} > {allowed} x {o}");
    }
}

#[test]
fn silence_keeps_the_mouth_closed() {
    let silence = tmp("silence.wav");
    write_silence(&silence, 3);
    for (name, face) in [("photo", media("astronaut.png")), ("video", media("speakerine.mp4"))] {
        let out = tmp(&format!("silent-{name}.mp4"));
        dub(&face, &silence, &out);
        let frames = decode_video(&out, 10_000).unwrap().frames;
        let input = decode_video(&face, frames.len()).unwrap().frames;
        let silent_audio = vec![0.0; 16_000 * 3];
        let dubbed = measure(frames.iter().map(Ok), &silent_audio, &mut tracker(), 0).unwrap();
        let original = measure(input.iter().map(Ok), &silent_audio, &mut tracker(), 0).unwrap();
        let max = |v: &[f32]| v.iter().copied().fold(0.0f32, f32::max);
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        eprintln!(
            "{name} on silence: opening mean {:.3} max {:.3} (input mean {:.3} max {:.3})",
            mean(&dubbed.opening),
            max(&dubbed.opening),
            mean(&original.opening),
            max(&original.opening)
        );
        // Never more open than the input ever is, and shut where the input talks: for the talking video
        // the mouth is on average much less open; the photo stays still. (The tracker reads a closed,
        // re-drawn mouth as slightly open, about 0.03; the first frames, before a closed frame of the
        // person has been seen, keep the input's opening.)
        assert!(max(&dubbed.opening) <= max(&original.opening) + 0.005, "{name}: the mouth opened on silence");
        match name {
            "video" => assert!(mean(&dubbed.opening) <= 0.75 * mean(&original.opening), "{name}: not shut"),
            _ => {
                let m = mean(&dubbed.opening);
                let sd = (dubbed.opening.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / dubbed.opening.len() as f32)
                    .sqrt();
                assert!(sd < 0.005, "{name}: the mouth moves on silence (sd {sd})");
            }
        }
    }
}

/// Speech a TTS sends faster than real time: 6 s of recorded speech over RTP in 0.6 s, into `lipsync
/// live` with the talking clip as its camera (played in real time). The file it writes must hold the
/// speech at its length, and the mouth must follow it as in a dub.
#[test]
fn speech_sent_in_a_burst_plays_at_its_length_in_sync() {
    lipsync::io::init().unwrap();
    use gst::prelude::*;
    let speech = decode_audio(&media("education_9s_16k.wav")).unwrap()[..6 * 16_000].to_vec();
    let port = 20000 + (std::process::id() % 20000) as u16 + 11;
    let out = tmp("burst.mkv");
    let child = Command::new(env!("CARGO_BIN_EXE_lipsync"))
        .args(["live", "--camera"])
        .arg(media("speakerine.mp4"))
        .args(["--audio", &format!("rtp://127.0.0.1:{port}?codec=l16&burst=1"), "--audio-gaps", "silence"])
        .arg("--out")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (sender, src) = common::rtp_speech_sender(port);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // Ten times faster than real time, as a TTS makes it: 100 ms of speech every 10 ms.
    for (k, piece) in speech.chunks(1600).enumerate() {
        let bytes: Vec<u8> = piece.iter().flat_map(|v| ((v * 32767.0) as i16).to_be_bytes()).collect();
        let mut b = gst::Buffer::from_mut_slice(bytes);
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(100 * k as u64));
        src.push_buffer(b).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    sender.set_state(gst::State::Null).unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    // The speech in the file, first sound to last, against the speech sent.
    let heard = decode_audio(&out).unwrap();
    let span = |s: &[f32]| {
        let loud = |x: &&f32| x.abs() > 0.02;
        let first = s.iter().position(|x| loud(&x)).unwrap();
        let last = s.len() - s.iter().rev().position(|x| loud(&x)).unwrap();
        (last - first) as f64 / 16.0
    };
    let (sent_ms, heard_ms) = (span(&speech), span(&heard));
    eprintln!("speech sent {sent_ms:.1} ms, heard {heard_ms:.1} ms\n{log}");
    assert!((heard_ms - sent_ms).abs() <= 40.0, "sent {sent_ms:.1} ms of speech, the file holds {heard_ms:.1} ms");
    let r = measure_file(&out);
    eprintln!("burst: offset {} frames, correlation {:.3}", r.estimate.offset_frames, r.estimate.correlation);
    assert!(r.estimate.offset_frames.abs() <= 1, "{:?}", r.estimate);
    assert!(r.estimate.correlation >= 0.5, "{:?}", r.estimate);
}

/// A photo as an avatar, over 30 s of silence: its eyes blink at a person's rate (MediaPipe sees the eye
/// aspect ratio dip), the head sways a little, the mouth stays as closed as it is drawn.
#[test]
fn a_photo_blinks_in_silence() {
    let silence = tmp("silence30.wav");
    write_silence(&silence, 30);
    let out = tmp("idle-photo.mp4");
    dub(&media("astronaut.png"), &silence, &out);
    let frames = decode_video(&out, 10_000).unwrap().frames;
    let mut tracker = tracker();
    let dist = |a: [f32; 3], b: [f32; 3]| (a[0] - b[0]).hypot(a[1] - b[1]);
    let (mut ratios, mut noses, mut gaps) = (Vec::new(), Vec::new(), Vec::new());
    let mut face_width = 0.0;
    for frame in &frames {
        let face = tracker.track(frame).unwrap().expect("a face in every frame");
        let l = &face.landmarks;
        // Eye aspect ratio: the lids' distance at two places over the eye's width, both eyes.
        let eye = |v: [(usize, usize); 2], (a, b): (usize, usize)| {
            (dist(l[v[0].0], l[v[0].1]) + dist(l[v[1].0], l[v[1].1])) / (2.0 * dist(l[a], l[b]))
        };
        let ratio = (eye([(160, 144), (158, 153)], (33, 133)) + eye([(387, 373), (385, 380)], (263, 362))) / 2.0;
        ratios.push(ratio);
        noses.push([l[1][0], l[1][1]]);
        gaps.push(dist(l[13], l[14]) / dist(l[33], l[263]));
        face_width = dist(l[234], l[454]);
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f32::total_cmp);
    let open = sorted[sorted.len() / 2];
    // A blink: the ratio under 80 % of the open eye's (MediaPipe's mesh reads drawn closed lids as
    // 70 % of open, the open eye's own frame-to-frame spread is ~1 %), counted where it goes under.
    let shut: Vec<bool> = ratios.iter().map(|&r| r < 0.8 * open).collect();
    eprintln!(
        "eye ratios, frames 20 to 40: {:?}",
        &ratios[20..40].iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>()
    );
    eprintln!(
        "open eye's spread: 5th percentile {:.3}, 95th {:.3}",
        sorted[sorted.len() / 20],
        sorted[sorted.len() * 19 / 20]
    );
    let blinks = shut.windows(2).filter(|w| !w[0] && w[1]).count();
    let minutes = frames.len() as f32 / 25.0 / 60.0;
    let per_minute = blinks as f32 / minutes;
    let (x0, y0) = (noses[0][0], noses[0][1]);
    let moved = noses.iter().map(|p| (p[0] - x0).hypot(p[1] - y0)).fold(0.0f32, f32::max) / face_width;
    // The sway: how far the nose goes across, from its leftmost to its rightmost.
    let across = noses.iter().map(|p| p[0]);
    let swayed = (across.clone().fold(f32::MIN, f32::max) - across.fold(f32::MAX, f32::min)) / face_width;
    let (gap_mean, gap_max) = (gaps.iter().sum::<f32>() / gaps.len() as f32, gaps.iter().copied().fold(0.0, f32::max));
    eprintln!(
        "photo, 30 s of silence: {blinks} blinks ({per_minute:.1} a minute; eye ratio open {open:.3}, lowest {:.3}), \
         head moved {:.1} % of the face width (swaying {:.1} % across), inner-lip gap over the eye distance mean \
         {gap_mean:.3} max {gap_max:.3}",
        sorted[0],
        100.0 * moved,
        100.0 * swayed
    );
    assert!((8.0..=30.0).contains(&per_minute), "{per_minute:.1} blinks a minute");
    assert!(moved < 0.05, "the head moved {:.1} % of the face width", 100.0 * moved);
    assert!(swayed > 0.01, "the head sways {:.1} % of the face width across: held still", 100.0 * swayed);
    // The photo smiles with its teeth (0.111 apart); in silence the mouth is shut on every frame.
    assert!(gap_max < 0.03, "the inner lips {gap_max:.3} of the eye distance apart in silence");
}
