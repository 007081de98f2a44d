//! Face videos are decoded as they are used: `dub` loops a face video forward and backward without holding
//! it whole, so its memory stays bounded, and flat in the clip's length.

use std::path::{Path, PathBuf};
use std::process::Command;

use gst::prelude::*;
use lipsync::io::{FaceLoop, Fit, decode_video, ping_pong};

fn media(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/media").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lipsync-face-video-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run_pipeline(description: &str) {
    lipsync::io::init().unwrap();
    let pipeline = gst::parse::launch(description).unwrap().downcast::<gst::Pipeline>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg =
        bus.timed_pop_filtered(gst::ClockTime::from_seconds(300), &[gst::MessageType::Eos, gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        other => panic!("`{description}` failed: {other:?}"),
    }
}

/// A 1280x720 H.264 MP4 of `frames` frames at 25 fps: the astronaut photo over a moving ball, so that every
/// frame differs and a face is there to re-render; a keyframe every two seconds.
fn face_video_720p(path: &Path, frames: u32) {
    run_pipeline(&format!(
        "videotestsrc pattern=ball num-buffers={frames} ! video/x-raw,width=1280,height=720,framerate=25/1 ! \
         compositor name=c sink_1::xpos=384 sink_1::ypos=104 ! videoconvert ! \
         x264enc speed-preset=ultrafast key-int-max=50 ! mp4mux ! filesink location={} \
         filesrc location={} ! pngdec ! videoconvert ! imagefreeze num-buffers={frames} ! \
         video/x-raw,framerate=25/1 ! c.",
        path.display(),
        media("astronaut.png").display()
    ));
}

/// `seconds` of a 220 Hz tone whose loudness swings three times a second, as a 16 kHz WAV.
fn speech_like(path: &Path, seconds: u32) {
    run_pipeline(&format!(
        "audiotestsrc wave=sine freq=220 volume=0.3 num-buffers={} samplesperbuffer=1600 ! \
         audio/x-raw,rate=16000,channels=1 ! audioconvert ! wavenc ! filesink location={}",
        seconds * 10,
        path.display()
    ));
}

/// Output frames `0..count` of a [`FaceLoop`] over `clip` are its source frames in [`ping_pong`] order.
fn assert_loops_like_a_whole_decode(clip: &Path, count: impl Fn(usize) -> usize) {
    let whole = decode_video(clip, usize::MAX).unwrap().frames;
    let n = whole.len();
    let mut face = FaceLoop::open(clip, None, Fit::Bounce).unwrap();
    for k in 0..count(n) {
        let frame = face.next_frame().unwrap().expect("a bounce never ends");
        let want = ping_pong(k, n);
        assert!(frame.data() == whole[want].data(), "{}: output frame {k} is not source frame {want}", clip.display());
    }
}

#[test]
fn the_loop_hands_out_the_frames_of_a_whole_decode_forward_and_backward() {
    // 100 frames at 720p: a backward chunk holds about 46 of them, so a backward run refills it twice
    // (three seeks). Forward, backward, forward again, and into the second backward run.
    let clip = tmp("loop.mp4");
    face_video_720p(&clip, 100);
    assert_eq!(decode_video(&clip, usize::MAX).unwrap().frames.len(), 100);
    assert_loops_like_a_whole_decode(&clip, |n| 3 * n + 10);
    std::fs::remove_file(&clip).unwrap();
    // 30 fps MPEG-4 resampled to 25 fps: the frames after a seek are the ones a decode from the start picks.
    assert_loops_like_a_whole_decode(&media("speakerine.mp4"), |n| 2 * n + 5);
}

#[test]
fn loop_starts_the_video_again_and_cut_and_pad_play_it_once() {
    let clip = tmp("fits.mp4");
    face_video_720p(&clip, 12);
    let whole = decode_video(&clip, usize::MAX).unwrap().frames;
    let n = whole.len();
    let mut looped = FaceLoop::open(&clip, None, Fit::Loop).unwrap();
    for k in 0..2 * n + 3 {
        let frame = looped.next_frame().unwrap().expect("a loop never ends");
        assert!(frame.data() == whole[k % n].data(), "loop: output frame {k} is not source frame {}", k % n);
    }
    for fit in [Fit::Cut, Fit::Pad] {
        let mut once = FaceLoop::open(&clip, None, fit).unwrap();
        for (k, want) in whole.iter().enumerate() {
            assert!(once.next_frame().unwrap().unwrap().data() == want.data(), "{fit:?}: frame {k}");
        }
        assert!(once.next_frame().unwrap().is_none(), "{fit:?}: the video ends after its {n} frames");
        assert!(once.next_frame().unwrap().is_none());
    }
    std::fs::remove_file(&clip).unwrap();
}

#[test]
fn a_photo_loops_as_one_frame_and_a_large_face_is_scaled_to_fit() {
    let mut face = FaceLoop::open(&media("astronaut.png"), Some(300), Fit::Bounce).unwrap();
    assert_eq!((face.width(), face.height()), (300, 300));
    let first = face.next_frame().unwrap().unwrap();
    for _ in 0..5 {
        assert!(face.next_frame().unwrap().unwrap().data() == first.data());
    }
    // Aspect kept: 1280x720 into 640.
    let clip = tmp("scaled.mp4");
    face_video_720p(&clip, 10);
    let face = FaceLoop::open(&clip, Some(640), Fit::Bounce).unwrap();
    assert_eq!((face.width(), face.height()), (640, 360));
    std::fs::remove_file(&clip).unwrap();
}

/// The peak memory `lipsync dub` reports for `face` and `audio`, in MB.
fn dub_peak_memory(face: &Path, audio: &Path) -> f64 {
    let out = tmp("dub.mp4");
    let result = Command::new(env!("CARGO_BIN_EXE_lipsync"))
        .args(["dub", "--face"])
        .arg(face)
        .arg("--audio")
        .arg(audio)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(result.status.success(), "dub failed:\n{log}");
    std::fs::remove_file(&out).unwrap();
    let line = log.lines().find_map(|l| l.strip_prefix("peak memory ")).unwrap_or_else(|| panic!("no peak in:\n{log}"));
    line.trim_end_matches(" MB").parse().unwrap()
}

#[test]
fn a_long_720p_dub_stays_within_its_memory_and_flat_in_the_clip_length() {
    // 60 s of 720p face video and of speech, then the same for 20 s; and 60 s of speech over 20 s of face
    // video, which loops it backward and forward.
    let (video, short_video) = (tmp("face60.mp4"), tmp("face20.mp4"));
    let (speech, short_speech) = (tmp("speech60.wav"), tmp("speech20.wav"));
    face_video_720p(&video, 1500);
    face_video_720p(&short_video, 500);
    speech_like(&speech, 60);
    speech_like(&short_speech, 20);
    let long = dub_peak_memory(&video, &speech);
    let short = dub_peak_memory(&video, &short_speech);
    let looped = dub_peak_memory(&short_video, &speech);
    let figures = format!("peak memory: 60 s {long:.0} MB, 20 s {short:.0} MB, 20 s looped to 60 s {looped:.0} MB");
    eprintln!("{figures}");
    assert!(long <= 600.0 && looped <= 600.0, "a 720p dub above 600 MB; {figures}");
    // Three times the length costs no more than the encoder's input queue (64 MB) filling or not; holding
    // the frames would cost 2.7 GB more.
    assert!(long - short <= 100.0, "memory grows with the clip's length; {figures}");
    for path in [video, short_video, speech, short_speech] {
        std::fs::remove_file(path).unwrap();
    }
}
