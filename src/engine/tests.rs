use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::frame::PixelFormat;
use crate::render::{FrameContext, Passthrough, RenderJob, Rendered};

const MS: u64 = 1_000_000;
const FRAME: u64 = 40 * MS;

fn frame(k: u64) -> VideoFrame {
    VideoFrame::from_vec(PixelFormat::Rgba, 8, 8, vec![k as u8; 256], k * FRAME).unwrap()
}

/// A renderer with a look-ahead that paints a patch whose red value is the window's mean audio level,
/// optionally slowly, failing or panicking on chosen frames.
struct Probe {
    after: u64,
    delay: Duration,
    fail_at: Option<u64>,
    panic_at: Option<u64>,
    renders: Arc<AtomicUsize>,
}

impl Probe {
    fn new(after: u64) -> Self {
        Probe { after, delay: Duration::ZERO, fail_at: None, panic_at: None, renders: Arc::default() }
    }
}

impl Renderer for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn window(&self) -> AudioWindow {
        AudioWindow { before: 20 * MS, after: self.after }
    }
    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered> {
        self.renders.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        let k = job.frame.pts / FRAME;
        if self.panic_at == Some(k) {
            panic!("probe panics on frame {k}");
        }
        if self.fail_at == Some(k) {
            return Err(Error::Render { renderer: "probe", reason: format!("fails on frame {k}") });
        }
        let level = job.audio.iter().sum::<f32>() / job.audio.len() as f32;
        Ok(Rendered::Patch(Patch::solid(0, 0, 2, 2, [(level * 100.0) as u8, 0, 0, 255])))
    }
}

fn offline() -> EngineConfig {
    EngineConfig { mode: Mode::Offline, ..Default::default() }
}

fn drain_offline<P>(e: &mut Engine<P>, want: usize) -> Vec<OutputFrame<P>> {
    let mut out = Vec::new();
    let start = Instant::now();
    while out.len() < want && start.elapsed() < Duration::from_secs(10) {
        out.extend(e.process(None));
        e.wait(Duration::from_millis(10));
    }
    out
}

#[test]
fn passthrough_keeps_every_frame_in_order_without_copies() {
    let (mut e, _audio) = Engine::<u64>::new(Box::new(Passthrough), offline()).unwrap();
    for k in 0..20 {
        e.push_video(frame(k), k);
    }
    e.audio_eos();
    let out = drain_offline(&mut e, 20);
    assert_eq!(out.iter().map(|o| o.payload).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
    assert!(out.iter().all(|o| o.image.is_none() && o.status == FrameStatus::Rendered));
    let s = e.stats().snapshot();
    assert_eq!((s.frames_in, s.frames_rendered, s.frames_fallback), (20, 20, 0));
}

#[test]
fn a_frame_waits_for_its_look_ahead() {
    let probe = Probe::new(100 * MS);
    let renders = probe.renders.clone();
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(probe), offline()).unwrap();
    e.push_video(frame(0), 0);
    audio.push(Some(0), &[0.5; 1584]).unwrap(); // 99 ms: one sample short
    assert!(e.process(None).is_empty());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(renders.load(Ordering::SeqCst), 0, "rendered before its window was complete");
    audio.push(None, &[0.5; 16]).unwrap();
    let out = drain_offline(&mut e, 1);
    assert_eq!(out.len(), 1);
    // Window [-20 ms, 100 ms): the first 20 ms are silence before the stream start.
    let red = out[0].image.as_ref().unwrap()[0];
    assert_eq!(red, (0.5f32 * 100.0 * 100.0 / 120.0) as u8);
}

#[test]
fn eos_finishes_waiting_frames_with_silence() {
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(Probe::new(100 * MS)), offline()).unwrap();
    audio.push(Some(0), &[1.0; 1600]).unwrap(); // 100 ms
    for k in 0..5 {
        e.push_video(frame(k), k);
    }
    let first = drain_offline(&mut e, 1);
    assert_eq!(first.len(), 1, "frame 0 has its audio");
    e.audio_eos();
    let rest = e.finish(None);
    assert_eq!(rest.iter().map(|o| o.payload).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert!(rest.iter().all(|o| o.status == FrameStatus::Rendered));
    assert_eq!(e.stats().snapshot().audio_underruns, 4);
    assert_eq!(e.pending(), 0);
}

#[test]
fn late_renders_go_out_as_the_fallback_and_are_counted() {
    let mut probe = Probe::new(0);
    probe.delay = Duration::from_millis(100);
    let cfg = EngineConfig { latency: Some(30 * MS), ..Default::default() };
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(probe), cfg).unwrap();
    audio.push(Some(0), &vec![0.1; 16000]).unwrap();
    for k in 0..3 {
        e.push_video(frame(k), k);
    }
    assert!(e.process(Some(0)).is_empty());
    assert_eq!(e.next_deadline(), Some(30 * MS));
    // Frame 0's deadline passes while it renders.
    let out = e.process(Some(30 * MS));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].payload, out[0].status), (0, FrameStatus::Late));
    assert!(out[0].image.is_none(), "fallback=original sends the input");
    let out = e.process(Some(200 * MS));
    assert_eq!(out.iter().map(|o| o.payload).collect::<Vec<_>>(), vec![1, 2]);
    let s = e.stats().snapshot();
    assert_eq!((s.frames_late, s.frames_fallback, s.frames_rendered), (3, 3, 0));
}

#[test]
fn last_render_fallback_blends_the_previous_patch() {
    let cfg = EngineConfig { latency: Some(40 * MS), fallback: Fallback::LastRender, ..Default::default() };
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(Probe::new(0)), cfg).unwrap();
    audio.push(Some(0), &vec![1.0; 16000]).unwrap();
    e.push_video(frame(0), 0);
    let mut out = Vec::new();
    while out.is_empty() {
        out = e.process(Some(0));
        e.wait(Duration::from_millis(10));
    }
    assert_eq!(out[0].status, FrameStatus::Rendered);
    let rendered = out[0].image.clone().unwrap();
    // Frame 1 is already past its deadline when it arrives: not rendered, the last patch is reused.
    e.push_video(frame(1), 1);
    let out = e.process(Some(FRAME + 40 * MS));
    assert_eq!(out[0].status, FrameStatus::Late);
    let img = out[0].image.as_ref().expect("last render blended in");
    assert_eq!(img[0..3], rendered[0..3]);
    assert_eq!(img[8 * 4 * 4], 1, "outside the patch the frame is the input frame");
}

#[test]
fn missing_audio_lets_frames_pass_after_the_timeout() {
    let cfg = EngineConfig { latency: Some(500 * MS), audio_timeout: 200 * MS, ..Default::default() };
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(Probe::new(0)), cfg).unwrap();
    for k in 0..10 {
        e.push_video(frame(k), k);
    }
    // Video reached 360 ms with no audio: frames after the timeout pass immediately.
    let out = e.process(Some(360 * MS));
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|o| o.status == FrameStatus::NoAudio));
    assert!(matches!(e.take_events()[..], [EngineEvent::AudioMissing { .. }]));
    audio.push(Some(400 * MS), &[0.0; 1600]).unwrap();
    e.push_video(frame(10), 10);
    let mut out = Vec::new();
    while out.is_empty() {
        out = e.process(Some(400 * MS));
        e.wait(Duration::from_millis(10));
    }
    assert_eq!(out[0].status, FrameStatus::Rendered);
    assert_eq!(e.take_events(), vec![EngineEvent::AudioResumed]);
}

#[test]
fn renderer_errors_and_panics_become_fallback_frames() {
    let mut probe = Probe::new(0);
    probe.fail_at = Some(1);
    probe.panic_at = Some(2);
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(probe), offline()).unwrap();
    audio.push(Some(0), &vec![0.0; 16000]).unwrap();
    for k in 0..4 {
        e.push_video(frame(k), k);
    }
    let out = drain_offline(&mut e, 4);
    let st: Vec<_> = out.iter().map(|o| o.status).collect();
    assert_eq!(st, [FrameStatus::Rendered, FrameStatus::Failed, FrameStatus::Failed, FrameStatus::Rendered]);
    let ev = e.take_events();
    assert_eq!(ev.len(), 2);
    assert!(matches!(&ev[1], EngineEvent::RenderFailed(m) if m.contains("panicked: probe panics on frame 2")));
}

#[test]
fn qos_skips_frames_before_the_earliest_time() {
    let probe = Probe::new(0);
    let renders = probe.renders.clone();
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(probe), offline()).unwrap();
    audio.push(Some(0), &vec![0.0; 16000]).unwrap();
    e.set_earliest(Some(2 * FRAME));
    for k in 0..4 {
        e.push_video(frame(k), k);
    }
    let out = drain_offline(&mut e, 4);
    assert_eq!(out.iter().filter(|o| o.status == FrameStatus::Late).count(), 2);
    assert_eq!(renders.load(Ordering::SeqCst), 2);
}

#[test]
fn flush_drops_frames_and_audio() {
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(Probe::new(100 * MS)), offline()).unwrap();
    audio.push(Some(0), &[0.0; 160]).unwrap();
    e.push_video(frame(0), 0);
    e.process(None);
    e.flush();
    assert_eq!(e.pending(), 0);
    assert_eq!(e.audio_end(), None);
    // A new stream after the flush works.
    audio.push(Some(5000 * MS), &[0.0; 3200]).unwrap();
    e.push_video(VideoFrame::from_vec(PixelFormat::Rgba, 8, 8, vec![0; 256], 5000 * MS).unwrap(), 1);
    assert_eq!(drain_offline(&mut e, 1).len(), 1);
}

/// Records whether each frame came with a face.
struct FaceProbe(Arc<parking_lot::Mutex<Vec<bool>>>);

impl Renderer for FaceProbe {
    fn name(&self) -> &'static str {
        "face-probe"
    }
    fn window(&self) -> AudioWindow {
        AudioWindow::default()
    }
    fn needs_face(&self) -> bool {
        true
    }
    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered> {
        let face = job.face.expect("the engine only renders frames with a face");
        assert_eq!(face.landmarks.len(), 468);
        self.0.lock().push(true);
        Ok(Rendered::Unchanged)
    }
}

/// The astronaut photo (a face) and a flat grey frame (none), both 512x512 RGB.
fn face_and_flat() -> (VideoFrame, VideoFrame) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/face/astronaut.golden.safetensors");
    let golden = candle_core::safetensors::load(path, &candle_core::Device::Cpu).unwrap();
    let rgb = golden["image_rgb_u8"].flatten_all().unwrap().to_vec1::<u8>().unwrap();
    let face = VideoFrame::from_vec(PixelFormat::Rgb, 512, 512, rgb, 0).unwrap();
    let flat = VideoFrame::from_vec(PixelFormat::Rgb, 512, 512, vec![90; 512 * 512 * 3], 0).unwrap();
    (face, flat)
}

#[test]
fn frames_without_a_face_pass_through_untouched() {
    let (face, flat) = face_and_flat();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (mut e, _audio) =
        Engine::<u64>::new(Box::new(FaceProbe(seen.clone())), offline()).expect("run scripts/setup.sh");
    e.audio_eos();
    for k in 0..6 {
        let f = if k % 2 == 0 { &face } else { &flat };
        e.push_video(f.with_pts(k * FRAME, None), k);
    }
    let out = drain_offline(&mut e, 6);
    assert_eq!(out.len(), 6);
    assert!(out.iter().all(|o| o.image.is_none()));
    assert_eq!(seen.lock().len(), 3, "the renderer saw only the frames with a face");
    assert_eq!(e.stats().snapshot().frames_no_face, 3);
}

#[test]
fn faces_tracked_ahead_stay_matched_to_their_frames_through_skips_and_flushes() {
    let (face, flat) = face_and_flat();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let (mut e, _audio) = Engine::<u64>::new(Box::new(FaceProbe(seen.clone())), offline()).unwrap();
    e.audio_eos();
    // QoS: the first three frames are not rendered, but were tracked; the render thread skips their faces.
    e.set_earliest(Some(3 * FRAME));
    for k in 0..6u64 {
        let f = if k < 3 || k % 2 == 0 { &face } else { &flat };
        e.push_video(f.with_pts(k * FRAME, None), k);
    }
    assert_eq!(drain_offline(&mut e, 6).len(), 6);
    assert_eq!(seen.lock().len(), 1, "of frames 3..6 only frame 4 has a face");
    assert_eq!(e.stats().snapshot().frames_no_face, 2);
    // Frames pushed, then flushed before their renders: the next stream's faces are its own.
    e.set_earliest(None);
    for k in 6..9u64 {
        e.push_video(face.with_pts(k * FRAME, None), k);
    }
    e.flush();
    e.audio_eos();
    for k in 0..4u64 {
        let f = if k % 2 == 0 { &flat } else { &face };
        e.push_video(f.with_pts(k * FRAME, None), 100 + k);
    }
    let out = drain_offline(&mut e, 4);
    assert_eq!(out.iter().map(|o| o.payload).collect::<Vec<_>>(), [100, 101, 102, 103]);
    assert_eq!(seen.lock().len(), 3, "frames 101 and 103 have faces");
    assert!(e.take_events().is_empty(), "no render failed");
}

/// For each rendered frame: its pts and, per context slot, the neighbour's pts and whether it has a face.
type ContextLog = Arc<parking_lot::Mutex<Vec<(u64, Vec<Option<(u64, bool)>>)>>>;

/// Records the frame context each render gets.
struct ContextProbe(ContextLog);

impl Renderer for ContextProbe {
    fn name(&self) -> &'static str {
        "context-probe"
    }
    fn window(&self) -> AudioWindow {
        AudioWindow::default()
    }
    fn needs_face(&self) -> bool {
        true
    }
    fn frame_context(&self) -> FrameContext {
        FrameContext { before: 2, after: 2 }
    }
    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered> {
        let slots = job.context.iter().map(|n| n.as_ref().map(|n| (n.pts / FRAME, n.face.is_some()))).collect();
        self.0.lock().push((job.frame.pts / FRAME, slots));
        Ok(Rendered::Unchanged)
    }
}

#[test]
fn a_frame_context_waits_for_the_frames_after_and_carries_their_faces() {
    let (face, flat) = face_and_flat();
    let log = ContextLog::default();
    let (mut e, _audio) = Engine::<u64>::new(Box::new(ContextProbe(log.clone())), offline()).unwrap();
    e.audio_eos();
    for (k, f) in [&face, &flat, &face].into_iter().enumerate() {
        e.push_video(f.with_pts(k as u64 * FRAME, None), k as u64);
    }
    let mut out = Vec::new();
    for _ in 0..20 {
        out.extend(e.process(None));
        e.wait(Duration::from_millis(50));
    }
    assert_eq!(out.len(), 1, "frame 0 has its two frames after; frame 1 waits for frame 3");
    for k in 3..5u64 {
        e.push_video(face.with_pts(k * FRAME, None), k);
    }
    out.extend(e.finish(None));
    assert_eq!(out.iter().map(|o| o.payload).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    let log = log.lock();
    let rendered: Vec<u64> = log.iter().map(|(k, _)| *k).collect();
    assert_eq!(rendered, [0, 2, 3, 4], "frame 1 has no face");
    let (y, n) = (true, false);
    assert_eq!(log[0].1, [None, None, Some((0, y)), Some((1, n)), Some((2, y))]);
    assert_eq!(log[1].1, [Some((0, y)), Some((1, n)), Some((2, y)), Some((3, y)), Some((4, y))]);
    assert_eq!(log[2].1, [Some((1, n)), Some((2, y)), Some((3, y)), Some((4, y)), None], "the stream ended");
    assert_eq!(log[3].1, [Some((2, y)), Some((3, y)), Some((4, y)), None, None]);
}

#[test]
fn tracker_answers_nobody_needs_do_not_pile_up() {
    let (_, flat) = face_and_flat();
    let (mut e, _audio) = Engine::<u64>::new(Box::new(ContextProbe(ContextLog::default())), offline()).unwrap();
    // No audio at all: every frame passes through at once, though each is tracked.
    e.set_audio_absent(true);
    let mut out = Vec::new();
    for k in 0..40u64 {
        e.push_video(flat.with_pts(k * FRAME, None), k);
        out.extend(e.process(None));
    }
    while e.working() > 0 {
        assert!(e.wait(Duration::from_secs(5)), "every frame's face comes back");
    }
    out.extend(e.process(None));
    assert_eq!(out.len(), 40);
    assert!(e.faces.len() <= 2, "only the answers a later frame's context can show are kept: {}", e.faces.len());
}

/// A live run: at k x 40 ms, `at(k, engine)` runs, frame k arrives (for k below `frames`) and the engine
/// is asked, the renders it started waited for; the clock runs on until every frame is out.
fn live_run(e: &mut Engine<u64>, frames: u64, mut at: impl FnMut(u64, &mut Engine<u64>)) -> Vec<OutputFrame<u64>> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < frames || e.pending() > 0 {
        at(k, e);
        if k < frames {
            e.push_video(frame(k), k);
        }
        out.extend(e.process(Some(k * FRAME)));
        while e.in_flight() > 0 {
            e.wait(Duration::from_millis(10));
        }
        out.extend(e.process(Some(k * FRAME)));
        k += 1;
    }
    out
}

fn red(o: &OutputFrame<u64>) -> u8 {
    o.image.as_ref().map_or(0, |i| i[0])
}

#[test]
fn with_gaps_as_silence_frames_without_audio_render_closed_once_their_look_ahead_is_due() {
    let cfg = EngineConfig { latency: Some(200 * MS), gaps: AudioGaps::Silence, ..Default::default() };
    let probe = Probe::new(100 * MS);
    let renders = probe.renders.clone();
    let (mut e, _audio) = Engine::<u64>::new(Box::new(probe), cfg.clone()).unwrap();
    e.push_video(frame(0), 0);
    assert!(e.process(Some(60 * MS)).is_empty());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(renders.load(Ordering::SeqCst), 0, "audio may still come for its look-ahead");
    let (mut e, _audio) = Engine::<u64>::new(Box::new(Probe::new(100 * MS)), cfg).unwrap();
    let out = live_run(&mut e, 10, |_, _| {});
    assert_eq!(out.len(), 10);
    assert!(out.iter().all(|o| o.status == FrameStatus::Rendered && red(o) == 0), "{out:?}");
    let s = e.stats().snapshot();
    assert_eq!((s.frames_no_audio, s.frames_late, s.audio_underruns), (0, 0, 0));
    assert!(e.take_events().is_empty(), "silence is not missing audio");
}

#[test]
fn speech_sent_in_a_burst_plays_at_real_time_and_a_flush_silences_it_at_once() {
    let cfg =
        EngineConfig { latency: Some(200 * MS), gaps: AudioGaps::Silence, report_playback: true, ..Default::default() };
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(Probe::new(100 * MS)), cfg).unwrap();
    // Two seconds of speech from 200 ms on, all of it sent at the start; the user interrupts at 1 s.
    let flush_at = 25;
    let out = live_run(&mut e, 40, |k, e| {
        if k == 0 {
            e.push_audio(&mut audio, Some(200 * MS), &[0.5; 32_000]).unwrap();
        }
        if k == flush_at {
            e.flush_audio(Some(k * FRAME));
        }
    });
    let reds: Vec<u8> = out.iter().map(red).collect();
    // Frame k's window is [40k - 20, 40k + 100) ms.
    assert!(reds[..5].iter().all(|&r| r < 50), "{reds:?}");
    assert!(reds[6..flush_at as usize].iter().all(|&r| r == 50), "the speech plays as it comes due: {reds:?}");
    assert!(reds[flush_at as usize..].iter().all(|&r| r == 0), "nothing of it after the flush: {reds:?}");
    // What a caller writes as the sound after the flush is silence too.
    assert!(e.audio_between(flush_at * FRAME, 2200 * MS).iter().all(|&s| s == 0.0));
    let events = e.take_events();
    assert_eq!(
        events,
        [
            EngineEvent::Playback(PlaybackEvent::Started { segment: 0, running_time: 200 * MS }),
            // At 1 s, with a latency of 200 ms, the frame of 800 ms is due: 600 ms of the speech were shown.
            EngineEvent::Playback(PlaybackEvent::Finished { segment: 0, position: 600 * MS, interrupted: true }),
        ]
    );
}

#[test]
fn audio_beyond_the_queue_is_reported_not_dropped_silently() {
    let ring = RingConfig { history_samples: 16_000, ..Default::default() };
    let (mut e, mut audio) = Engine::<u64>::new(Box::new(Probe::new(0)), EngineConfig { ring, ..offline() }).unwrap();
    e.push_audio(&mut audio, Some(0), &[0.1; 40_000]).unwrap();
    e.push_video(frame(0), 0);
    e.process(None);
    assert_eq!(e.take_events(), [EngineEvent::AudioOverflow { samples: 24_000 }]);
    e.push_audio(&mut audio, None, &[0.1; 1_000]).unwrap();
    e.process(None);
    assert_eq!(e.take_events(), [EngineEvent::AudioOverflow { samples: 1_000 }], "only new drops, each time");
}
