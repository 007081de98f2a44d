//! Harness and pipeline tests of the `lipsync` element (registered statically; `plugin_file.rs` checks
//! the built .so in its own process).

use std::time::{Duration, Instant};

mod common;

use common::*;
use gst::prelude::*;
use gst_check::Harness;

const W: u32 = 64;
const H: u32 = 48;

fn video_buffer(k: u64, size: usize) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(vec![k as u8; size]);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(k * FRAME));
        b.set_duration(gst::ClockTime::from_nseconds(FRAME));
    }
    b
}

/// `ms` of audio starting at `start_ms`, value `v`.
fn audio_buffer(start_ms: u64, ms: u64, v: f32) -> gst::Buffer {
    let n = (ms * 16) as usize;
    let bytes: Vec<u8> = std::iter::repeat_n(v.to_le_bytes(), n).flatten().collect();
    let mut b = gst::Buffer::from_mut_slice(bytes);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(start_ms * MS));
        b.set_duration(gst::ClockTime::from_nseconds(ms * MS));
    }
    b
}

struct Setup {
    element: gst::Element,
    video: Harness,
    audio: Option<Harness>,
    bus: gst::Bus,
}

fn setup(props: &[(&str, &dyn ToValue)], with_audio: bool, live: bool) -> Setup {
    init();
    // These tests are about timing and data flow on synthetic frames: the passthrough renderer, unless a
    // test sets another.
    let element = gst::ElementFactory::make("lipsync").property_from_str("renderer", "passthrough").build().unwrap();
    for (name, value) in props {
        element.set_property_from_value(name, &value.to_value());
    }
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut video = Harness::with_element(&element, Some("video_sink"), Some("src"));
    video.set_live(live);
    video.set_src_caps(video_caps("RGBA", W, H));
    let audio = with_audio.then(|| {
        let mut a = Harness::with_element(&element, Some("audio_sink"), None);
        a.set_live(live);
        a.set_src_caps(audio_caps());
        a
    });
    Setup { element, video, audio, bus }
}

/// Ends both streams (EOS on the audio and video pads) and pulls every output buffer.
fn end_and_pull_all(s: &mut Setup) -> Vec<gst::Buffer> {
    if let Some(a) = s.audio.as_mut() {
        a.push_event(gst::event::Eos::new());
    }
    s.video.push_event(gst::event::Eos::new());
    pull_all(&mut s.video)
}

/// A `lipsync/phoneme` event: `phoneme` spoken from `start_ms` for `ms`.
fn phoneme_event(phoneme: &str, start_ms: u64, ms: u64) -> gst::Event {
    phoneme_event_of(|b| {
        b.field("phoneme", phoneme)
            .field("start", gst::ClockTime::from_mseconds(start_ms))
            .field("duration", gst::ClockTime::from_mseconds(ms))
    })
}

/// A `lipsync/phoneme` event with the fields `fields` sets (malformed ones too).
fn phoneme_event_of(fields: impl FnOnce(gst::structure::Builder) -> gst::structure::Builder) -> gst::Event {
    gst::event::CustomDownstream::new(fields(gst::Structure::builder("lipsync/phoneme")).build())
}

#[test]
fn every_frame_comes_out_once_in_order_with_its_pts() {
    let mut s = setup(&[], true, false);
    let size = (W * H * 4) as usize;
    for k in 0..20 {
        s.audio.as_mut().unwrap().push(audio_buffer(k * 40, 40, 0.1)).unwrap();
        s.video.push(video_buffer(k, size)).unwrap();
    }
    let out = end_and_pull_all(&mut s);
    let pts: Vec<u64> = out.iter().map(|b| b.pts().unwrap().nseconds()).collect();
    assert_eq!(pts, (0..20).map(|k| k * FRAME).collect::<Vec<_>>());
    // Passthrough: the very input buffers, not copies.
    assert!(out.iter().enumerate().all(|(k, b)| b.map_readable().unwrap()[0] == k as u8));
    assert_eq!(counter(&s.element, "frames-in"), 20);
    assert_eq!(counter(&s.element, "frames-rendered"), 20);
    assert_eq!(counter(&s.element, "frames-fallback"), 0);
    let stats = messages(&s.bus, gst::MessageType::Element);
    let last = stats.last().expect("a lipsync-stats message at EOS");
    let st = last.structure().unwrap();
    assert_eq!(st.name(), "lipsync-stats");
    assert_eq!(st.get::<u64>("frames-in").unwrap(), 20);
}

#[test]
fn buffers_are_clipped_to_their_segment() {
    // Both segments start at 100 ms: the frames before it are dropped, the one across its start keeps its
    // part inside, and the audio before it is cut off (not taken for audio without a timestamp).
    let mut s = setup(&[], true, false);
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(gst::ClockTime::from_mseconds(100));
    for h in [&mut s.video, s.audio.as_mut().unwrap()] {
        assert!(h.push_event(gst::event::Segment::new(&segment)));
    }
    let size = (W * H * 4) as usize;
    let a = s.audio.as_mut().unwrap();
    a.push(audio_buffer(0, 1000, 0.1)).unwrap();
    // Non-live, the aggregator only runs when every pad has data or is EOS.
    a.push_event(gst::event::Eos::new());
    for k in 0..8 {
        s.video.push(video_buffer(k, size)).unwrap();
    }
    s.video.push_event(gst::event::Eos::new());
    let out = pull_all(&mut s.video);
    let pts: Vec<u64> = out.iter().map(|b| b.pts().unwrap().mseconds()).collect();
    assert_eq!(pts, [100, 120, 160, 200, 240, 280]);
    assert_eq!(out[0].duration(), Some(gst::ClockTime::from_mseconds(20)), "the frame across the start keeps 20 ms");
    assert_eq!(counter(&s.element, "frames-in"), 6);
    assert_eq!(counter(&s.element, "audio-underruns"), 0);
    assert!(messages(&s.bus, gst::MessageType::Warning).is_empty(), "no warning about the audio's timing");
}

#[test]
fn device_and_precision_are_checked_when_set() {
    init();
    let e = gst::ElementFactory::make("lipsync").build().unwrap();
    let bus = gst::Bus::new();
    e.set_bus(Some(&bus));
    e.set_property("device", "cuda:1");
    assert_eq!(e.property::<String>("device"), "cuda:1");
    e.set_property("device", "gpu");
    assert_eq!(e.property::<String>("device"), "cuda:1", "a name that is not a device leaves the setting");
    let warnings = messages(&bus, gst::MessageType::Warning);
    let gst::MessageView::Warning(w) = warnings[0].view() else { unreachable!() };
    assert!(w.error().message().contains("unknown device `gpu`"), "{}", w.error().message());
    e.set_property_from_str("precision", "bf16");
    let precision = e.property_value("precision");
    let (_, value) = gst::glib::EnumValue::from_value(&precision).expect("an enum");
    assert_eq!(value.nick(), "bf16");
}

#[test]
fn latency_query_is_the_property_plus_upstream() {
    let mut s = setup(&[("latency", &(120 * MS))], true, true);
    s.video.set_upstream_latency(gst::ClockTime::from_nseconds(30 * MS));
    s.audio.as_mut().unwrap().set_upstream_latency(gst::ClockTime::from_nseconds(30 * MS));
    let latency = s.video.query_latency().expect("live latency");
    assert_eq!(latency.nseconds(), 150 * MS);
}

#[test]
fn default_latency_follows_the_renderer_until_the_user_sets_it() {
    init();
    let e = gst::ElementFactory::make("lipsync").build().unwrap();
    assert_eq!(e.property::<u64>("latency"), 120 * MS, "classic: 95 ms look-ahead and 25 ms to render");
    e.set_property_from_str("renderer", "passthrough");
    assert_eq!(e.property::<u64>("latency"), 40 * MS, "passthrough: one frame of compute");
    e.set_property("simulate-lookahead", 205 * MS);
    assert_eq!(e.property::<u64>("latency"), 245 * MS, "look-ahead plus one frame");
    e.set_property("latency", 300 * MS);
    e.set_property("simulate-lookahead", 100 * MS);
    assert_eq!(e.property::<u64>("latency"), 300 * MS, "the user's choice stays");
}

#[test]
fn eos_flushes_frames_still_waiting_for_audio() {
    let mut s = setup(&[("simulate-lookahead", &(200 * MS))], true, false);
    let size = (W * H * 4) as usize;
    // Audio for 100 ms only: every frame's window reaches past it.
    s.audio.as_mut().unwrap().push(audio_buffer(0, 100, 0.3)).unwrap();
    for k in 0..10 {
        s.video.push(video_buffer(k, size)).unwrap();
        if k == 0 {
            s.audio.as_mut().unwrap().push_event(gst::event::Eos::new());
        }
    }
    s.video.push_event(gst::event::Eos::new());
    let out = pull_all(&mut s.video);
    assert_eq!(out.len(), 10);
    assert_eq!(counter(&s.element, "frames-rendered"), 10);
    assert_eq!(counter(&s.element, "audio-underruns"), 10, "every window had missing audio");
}

#[test]
fn audio_gaps_count_as_underruns() {
    let mut s = setup(&[("simulate-lookahead", &(40 * MS))], true, false);
    let size = (W * H * 4) as usize;
    let a = s.audio.as_mut().unwrap();
    a.push(audio_buffer(0, 80, 0.1)).unwrap();
    a.push(audio_buffer(200, 200, 0.1)).unwrap(); // no audio in [80, 200) ms
    // Non-live, the aggregator only runs when every pad has data or is EOS.
    a.push_event(gst::event::Eos::new());
    for k in 0..8 {
        s.video.push(video_buffer(k, size)).unwrap();
    }
    s.video.push_event(gst::event::Eos::new());
    assert_eq!(pull_all(&mut s.video).len(), 8);
    // Frames 2, 3 and 4 have windows [40k, 40k + 40) ms inside the gap.
    assert_eq!(counter(&s.element, "audio-underruns"), 3);
    assert_eq!(counter(&s.element, "audio-overruns"), 0);
}

#[test]
fn a_gap_event_on_the_audio_is_silence_not_an_underrun() {
    // As a jitter buffer with do-lost=true reports lost packets (through the depayloader).
    let mut s = setup(&[("simulate-lookahead", &(40 * MS))], true, false);
    let size = (W * H * 4) as usize;
    let a = s.audio.as_mut().unwrap();
    a.push(audio_buffer(0, 80, 0.1)).unwrap();
    a.push_event(
        gst::event::Gap::builder(gst::ClockTime::from_mseconds(80))
            .duration(gst::ClockTime::from_mseconds(120))
            .build(),
    );
    a.push(audio_buffer(200, 200, 0.1)).unwrap();
    a.push_event(gst::event::Eos::new());
    for k in 0..8 {
        s.video.push(video_buffer(k, size)).unwrap();
    }
    s.video.push_event(gst::event::Eos::new());
    assert_eq!(pull_all(&mut s.video).len(), 8);
    assert_eq!(counter(&s.element, "audio-underruns"), 0);
}

#[test]
fn audio_beyond_the_queue_is_an_error_not_dropped_silently() {
    let mut s = setup(&[("max-queue", &(10 * 1000 * MS))], true, true);
    // Live on the real clock; the aggregator learns that it is live from the latency query a sink makes.
    s.video.use_systemclock();
    s.element.set_base_time(gst::SystemClock::obtain().time());
    s.video.query_latency();
    let a = s.audio.as_mut().unwrap();
    // 12 s of audio and no video at all: more than the 10 s queue.
    for k in 0..12 {
        let _ = a.push(audio_buffer(k * 1000, 1000, 0.1));
    }
    let start = Instant::now();
    let mut errors = Vec::new();
    while errors.is_empty() && start.elapsed() < Duration::from_secs(10) {
        errors = messages(&s.bus, gst::MessageType::Error);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(counter(&s.element, "audio-overruns") >= 1);
    let gst::MessageView::Error(e) = errors[0].view() else { unreachable!() };
    assert!(e.error().to_string().contains("Audio queue full"), "{}", e.error());
    assert!(e.debug().unwrap().contains("max-queue (10 s)"), "{:?}", e.debug());
    assert_eq!(counter(&s.element, "frames-in"), 0);
}

#[test]
fn caps_change_mid_stream() {
    let mut s = setup(&[], true, false);
    for k in 0..10u64 {
        s.audio.as_mut().unwrap().push(audio_buffer(k * 40, 40, 0.1)).unwrap();
        if k == 5 {
            s.video.set_src_caps(video_caps("I420", 32, 16));
        }
        let size = if k < 5 { (W * H * 4) as usize } else { 32 * 16 * 3 / 2 };
        s.video.push(video_buffer(k, size)).unwrap();
    }
    s.audio.as_mut().unwrap().push_event(gst::event::Eos::new());
    s.video.push_event(gst::event::Eos::new());
    let mut sizes = Vec::new();
    let mut caps_seen = Vec::new();
    loop {
        if let Some(ev) = s.video.try_pull_event() {
            if let gst::EventView::Caps(c) = ev.view() {
                caps_seen.push(c.caps().structure(0).unwrap().get::<String>("format").unwrap());
            }
            if ev.type_() == gst::EventType::Eos {
                break;
            }
            continue;
        }
        match s.video.try_pull() {
            Some(b) => sizes.push(b.size()),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    while let Some(b) = s.video.try_pull() {
        sizes.push(b.size());
    }
    assert_eq!(sizes.len(), 10);
    assert!(sizes[..5].iter().all(|&n| n == (W * H * 4) as usize));
    assert!(sizes[5..].iter().all(|&n| n == 32 * 16 * 3 / 2));
    assert_eq!(caps_seen, ["RGBA", "I420"]);
}

#[test]
fn video_without_audio_passes_through_with_a_warning() {
    let mut s = setup(&[], false, false);
    let size = (W * H * 4) as usize;
    for k in 0..5 {
        s.video.push(video_buffer(k, size)).unwrap();
    }
    s.video.push_event(gst::event::Eos::new());
    assert_eq!(pull_all(&mut s.video).len(), 5);
    assert_eq!(counter(&s.element, "frames-fallback"), 5);
    let warnings = messages(&s.bus, gst::MessageType::Warning);
    assert!(!warnings.is_empty(), "a warning says the video passes through");
}

#[test]
fn video_without_timestamps_is_an_error() {
    let mut s = setup(&[], false, false);
    let mut b = video_buffer(0, (W * H * 4) as usize);
    b.get_mut().unwrap().set_pts(gst::ClockTime::NONE);
    let _ = s.video.push(b);
    let start = Instant::now();
    let err = loop {
        if let Some(m) = s.bus.pop_filtered(&[gst::MessageType::Error]) {
            break m;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no error message");
        std::thread::sleep(Duration::from_millis(5));
    };
    let gst::MessageView::Error(e) = err.view() else { unreachable!() };
    assert!(e.error().to_string().contains("timestamp"), "{}", e.error());
}

#[test]
fn audio_without_timestamps_is_dropped_with_one_warning() {
    init();
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=10 ! video/x-raw,width=64,height=48 ! lipsync name=l renderer=passthrough ! \
         fakesink appsrc name=audio format=time ! l.audio_sink",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline.by_name("audio").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    src.set_caps(Some(&audio_caps()));
    for k in 0..20 {
        let mut b = audio_buffer(k * 20, 20, 0.1);
        b.get_mut().unwrap().set_pts(gst::ClockTime::NONE);
        src.push_buffer(b).unwrap();
    }
    src.end_of_stream().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut warnings = Vec::new();
    loop {
        let msg = bus
            .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Warning, gst::MessageType::Eos])
            .expect("the stream ends");
        match msg.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().message().to_string()),
            _ => break,
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(warnings.len(), 1, "one warning for 20 untimed buffers: {warnings:?}");
    assert!(warnings[0].contains("timestamp"), "{}", warnings[0]);
}

#[test]
fn renders_that_miss_the_deadline_go_out_as_the_fallback() {
    let mut s = setup(&[("latency", &(50 * MS)), ("simulate-delay", &(150 * MS))], true, true);
    s.video.use_systemclock();
    let clock = gst::SystemClock::obtain();
    s.element.set_base_time(clock.time());
    let size = (W * H * 4) as usize;
    let start = Instant::now();
    for k in 0..8u64 {
        // Real time: frame k arrives at k * 40 ms, like a camera.
        let due = Duration::from_nanos(k * FRAME);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        s.audio.as_mut().unwrap().push(audio_buffer(k * 40, 40, 0.1)).unwrap();
        s.video.push(video_buffer(k, size)).unwrap();
    }
    let mut pts = Vec::new();
    while pts.len() < 8 {
        let b = s.video.pull().expect("every frame comes out");
        pts.push(b.pts().unwrap().nseconds());
    }
    assert_eq!(pts, (0..8).map(|k| k * FRAME).collect::<Vec<_>>());
    let late = counter(&s.element, "frames-late");
    assert!(late >= 4, "renders take 150 ms against a 50 ms budget: {late} late");
    assert_eq!(counter(&s.element, "frames-fallback"), late);
}

fn run_pipeline(desc: &str) -> (u64, gst::Element) {
    init();
    let pipeline = gst::parse::launch(desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline.by_name("out").unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let last_pts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (c, l) = (count.clone(), last_pts.clone());
    sink.static_pad("sink").unwrap().add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(b) = info.buffer() {
            let pts = b.pts().unwrap().nseconds();
            let prev = l.swap(pts, std::sync::atomic::Ordering::SeqCst);
            assert!(c.load(std::sync::atomic::Ordering::SeqCst) == 0 || pts > prev, "pts not increasing");
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("pipeline finished");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("pipeline error: {} ({:?})", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let lipsync = pipeline.by_name("l").unwrap();
    (count.load(std::sync::atomic::Ordering::SeqCst), lipsync)
}

#[test]
fn pipeline_with_test_sources() {
    let (n, l) = run_pipeline(
        "videotestsrc num-buffers=50 ! video/x-raw,format=I420,framerate=25/1 ! lipsync name=l ! fakesink name=out \
         audiotestsrc num-buffers=60 ! audioconvert ! audioresample ! l.audio_sink",
    );
    assert_eq!(n, 50);
    assert_eq!(l.property::<u64>("frames-in"), 50);
}

#[test]
fn live_pipeline_with_test_sources() {
    let (n, l) = run_pipeline(
        "videotestsrc is-live=true num-buffers=25 ! video/x-raw,format=RGB,framerate=25/1 ! lipsync name=l \
         renderer=passthrough simulate-lookahead=100000000 ! fakesink name=out sync=true \
         audiotestsrc is-live=true ! audioconvert ! audioresample ! l.audio_sink",
    );
    assert_eq!(n, 25);
    // Passthrough renders take microseconds against a 140 ms budget; leave room for a loaded machine.
    let rendered = l.property::<u64>("frames-rendered");
    assert!(rendered >= 20, "a live 25 fps stream keeps up: {rendered} rendered");
    assert_eq!(rendered + l.property::<u64>("frames-fallback"), 25);
}

#[test]
fn muxing_with_the_teed_audio_does_not_stall() {
    // The element's audio and the muxer's audio come from one tee: taking audio far ahead of the video
    // used to strand frames on the video pad while the muxer, waiting for them, blocked the tee.
    let media =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/media/speakerine_with_audio.mp4");
    let out = std::env::temp_dir().join(format!("lipsync-mux-{}.mp4", std::process::id()));
    let (n, l) = run_pipeline(&format!(
        "filesrc location={} ! qtdemux name=d \
         d.video_0 ! queue ! decodebin ! videoconvert ! lipsync name=l ! tee name=v ! queue ! fakesink name=out \
         v. ! queue ! videoconvert ! x264enc tune=zerolatency ! mp4mux name=m ! filesink location={} \
         d.audio_0 ! queue ! decodebin ! tee name=t ! queue ! audioconvert ! audioresample ! l.audio_sink \
         t. ! queue ! audioconvert ! avenc_aac ! m.",
        media.display(),
        out.display()
    ));
    assert_eq!(n, 270, "9 s at 30 fps");
    assert_eq!(l.property::<u64>("frames-rendered"), 270);
    let _ = std::fs::remove_file(out);
}

#[test]
fn events_from_downstream_do_not_wait_behind_a_render() {
    // A 3 s render (an STSA frame on a CPU takes about that): a QoS event sent while it runs is handled
    // at once, not when the render ends.
    let mut s = setup(&[("simulate-delay", &(3000 * MS))], true, false);
    let size = (W * H * 4) as usize;
    let a = s.audio.as_mut().unwrap();
    a.push(audio_buffer(0, 1000, 0.1)).unwrap();
    a.push_event(gst::event::Eos::new());
    s.video.push(video_buffer(0, size)).unwrap();
    s.video.push_event(gst::event::Eos::new());
    std::thread::sleep(Duration::from_millis(500));
    let qos = gst::event::Qos::new(gst::QOSType::Underflow, 0.9, 0, gst::ClockTime::ZERO);
    let start = Instant::now();
    assert!(s.video.push_upstream_event(qos));
    let waited = start.elapsed();
    assert_eq!(pull_all(&mut s.video).len(), 1);
    assert!(waited < Duration::from_millis(1500), "the QoS event waited {waited:?} for the render");
}

#[test]
fn a_flush_drops_waiting_frames_and_the_stream_goes_on() {
    let mut s = setup(&[("simulate-lookahead", &(200 * MS))], true, false);
    let size = (W * H * 4) as usize;
    // Three frames wait for audio that never comes before the flush.
    s.audio.as_mut().unwrap().push(audio_buffer(0, 40, 0.1)).unwrap();
    for k in 0..3 {
        s.video.push(video_buffer(k, size)).unwrap();
    }
    for h in [&mut s.video, s.audio.as_mut().unwrap()] {
        assert!(h.push_event(gst::event::FlushStart::new()));
        assert!(h.push_event(gst::event::FlushStop::new(true)));
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
    }
    let a = s.audio.as_mut().unwrap();
    a.push(audio_buffer(0, 1000, 0.1)).unwrap();
    a.push_event(gst::event::Eos::new());
    for k in 0..5 {
        s.video.push(video_buffer(10 + k, size)).unwrap();
    }
    s.video.push_event(gst::event::Eos::new());
    let pts: Vec<u64> = pull_all(&mut s.video).iter().map(|b| b.pts().unwrap().nseconds() / FRAME).collect();
    assert_eq!(pts, [10, 11, 12, 13, 14], "only the frames after the flush come out");
}

#[test]
fn qos_skips_rendering_frames_already_too_late() {
    let mut s = setup(&[], true, false);
    let size = (W * H * 4) as usize;
    // Downstream says it is 200 ms behind: frames before 200 ms are not worth rendering.
    let qos = gst::event::Qos::new(gst::QOSType::Underflow, 1.0, 200_000_000, gst::ClockTime::ZERO);
    assert!(s.video.push_upstream_event(qos));
    for k in 0..10 {
        s.audio.as_mut().unwrap().push(audio_buffer(k * 40, 40, 0.1)).unwrap();
        s.video.push(video_buffer(k, size)).unwrap();
    }
    assert_eq!(end_and_pull_all(&mut s).len(), 10, "skipped frames still go out");
    assert_eq!(counter(&s.element, "frames-late"), 5);
    assert_eq!(counter(&s.element, "frames-rendered"), 5);
}

#[test]
fn face_tracking_counts_frames_without_a_face() {
    init();
    let element = gst::ElementFactory::make("lipsync").property("track-faces", true).build().unwrap();
    let mut h = Harness::with_element(&element, Some("video_sink"), Some("src"));
    h.set_live(false);
    h.set_src_caps(video_caps("RGB", 512, 512));
    let mut a = Harness::with_element(&element, Some("audio_sink"), None);
    a.set_live(false);
    a.set_src_caps(audio_caps());
    a.push(audio_buffer(0, 200, 0.1)).unwrap();
    a.push_event(gst::event::Eos::new());
    let face = astronaut_rgb();
    for k in 0..4u64 {
        let data = if k % 2 == 0 { face.clone() } else { vec![90u8; 512 * 512 * 3] };
        let mut b = gst::Buffer::from_mut_slice(data);
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_nseconds(k * FRAME));
        h.push(b).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    assert_eq!(pull_all(&mut h).len(), 4, "every frame comes out, with or without a face");
    assert_eq!(counter(&element, "frames-no-face"), 2);
}

/// Runs the default (classic) renderer over the astronaut photo for 12 frames with `audio` (16 kHz) and
/// returns the output frames.
fn classic_frames(audio: &[f32]) -> (Vec<Vec<u8>>, gst::Element) {
    init();
    let element = gst::ElementFactory::make("lipsync").build().unwrap();
    let renderer = element.property_value("renderer");
    assert_eq!(gst::glib::EnumValue::from_value(&renderer).unwrap().1.nick(), "classic", "the default");
    astronaut_frames(element, audio, 12)
}

/// Runs `element` over `n` frames of the astronaut photo with `audio` (16 kHz), not live; returns the
/// output frames.
fn astronaut_frames(element: gst::Element, audio: &[f32], n: u64) -> (Vec<Vec<u8>>, gst::Element) {
    astronaut_frames_with(element, audio, n, Vec::new())
}

/// [`astronaut_frames`], with `events` sent on the audio pad before the audio.
fn astronaut_frames_with(
    element: gst::Element,
    audio: &[f32],
    n: u64,
    events: Vec<gst::Event>,
) -> (Vec<Vec<u8>>, gst::Element) {
    let mut h = Harness::with_element(&element, Some("video_sink"), Some("src"));
    h.set_live(false);
    h.set_src_caps(video_caps("RGB", 512, 512));
    let mut a = Harness::with_element(&element, Some("audio_sink"), None);
    a.set_live(false);
    a.set_src_caps(audio_caps());
    for ev in events {
        assert!(a.push_event(ev));
    }
    let bytes: Vec<u8> = audio.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut b = gst::Buffer::from_mut_slice(bytes);
    b.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    a.push(b).unwrap();
    a.push_event(gst::event::Eos::new());
    let face = astronaut_rgb();
    for k in 0..n {
        let mut b = gst::Buffer::from_mut_slice(face.clone());
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_nseconds(k * FRAME));
        h.push(b).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), n as usize);
    (out.iter().map(|b| b.map_readable().unwrap().to_vec()).collect(), element)
}

#[test]
fn the_default_renderer_moves_the_mouth_with_the_voice() {
    let (speaking, element) = classic_frames(&voice(true));
    assert_eq!(counter(&element, "frames-rendered"), 12);
    assert_eq!(counter(&element, "frames-no-face"), 0);
    let (silent, _) = classic_frames(&vec![0.0; 16_000]);
    // Same frames, same tracking: the only difference between the two runs is the mouth.
    let moved: Vec<usize> = speaking.iter().zip(&silent).map(|(a, b)| pixels_apart(a, b)).collect();
    // Silent: the mouth stays shut, frame after frame.
    let still: Vec<usize> = silent.windows(2).map(|w| pixels_apart(&w[0], &w[1])).collect();
    eprintln!("pixels apart: speaking vs silent {moved:?}; silent frame to frame {still:?}");
    assert!(moved.iter().filter(|&&n| n > 300).count() >= 6, "the mouth opens with the voice: {moved:?}");
    assert!(still[4..].iter().all(|&n| n < 50), "a silent mouth stays still: {still:?}");
}

#[test]
fn missing_face_models_stop_the_element_with_a_clear_error() {
    init();
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=5 ! lipsync name=l face-models=/nonexistent/mediapipe.whl ! fakesink \
         audiotestsrc num-buffers=5 ! audioconvert ! audioresample ! l.audio_sink",
    )
    .unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error, gst::MessageType::Eos])
        .expect("a message");
    let gst::MessageView::Error(e) = msg.view() else { panic!("expected an error, got {msg:?}") };
    // The message itself (what an application shows), not only the debug string.
    let text = e.error().message().to_string();
    assert!(text.contains("/nonexistent/mediapipe.whl"), "the error names the file: {text} ({:?})", e.debug());
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn stsa_without_weights_refuses_to_start_naming_the_file() {
    init();
    let dir = std::env::temp_dir().join(format!("lipsync-element-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=5 ! lipsync name=l renderer=stsa weights={} ! fakesink \
         audiotestsrc num-buffers=5 ! audioconvert ! audioresample ! l.audio_sink",
        dir.display()
    ))
    .unwrap();
    let l = pipeline.downcast_ref::<gst::Bin>().unwrap().by_name("l").unwrap();
    // The default latency follows STSA's look-ahead (205 ms of chunks + 200 ms of wav2vec2 context) plus a
    // frame of compute, without loading anything.
    assert_eq!(l.property::<u64>("latency"), 445_000_000);
    assert_eq!(l.property::<String>("device"), "cpu");
    assert!(pipeline.set_state(gst::State::Playing).is_err(), "the element refuses to start");
    let msg = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(e) = msg.view() else { unreachable!() };
    let text = e.error().message().to_string();
    assert!(text.contains("heatmap_weight.pth") && text.contains("models/README.md"), "{text} ({:?})", e.debug());
    pipeline.set_state(gst::State::Null).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stsa_on_the_cpu_warns_and_runs_a_stream_to_the_end() {
    init();
    // Test weights; the test pattern has no face, so frames pass through and the stream ends quickly.
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=3 ! video/x-raw,width=160,height=120,framerate=25/1 ! \
         lipsync name=l renderer=stsa weights=detw ! fakesink name=sink \
         audiotestsrc num-buffers=5 ! audioconvert ! audioresample ! l.audio_sink",
    )
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let mut warned = false;
    loop {
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(120),
                &[gst::MessageType::Error, gst::MessageType::Eos, gst::MessageType::Warning],
            )
            .expect("the stream ends");
        match msg.view() {
            gst::MessageView::Warning(w) => warned |= w.error().to_string().contains("takes seconds per frame"),
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => panic!("{} {:?}", e.error(), e.debug()),
            _ => unreachable!(),
        }
    }
    assert!(warned, "a warning says STSA is not live on a CPU");
    let l = pipeline.downcast_ref::<gst::Bin>().unwrap().by_name("l").unwrap();
    assert_eq!(l.property::<u64>("frames-in"), 3);
    assert_eq!(l.property::<u64>("frames-no-face"), 3);
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn stsa_renders_a_face_through_the_element() {
    init();
    // Test weights: the networks run as with the real files and draw noise into the face.
    let element = gst::ElementFactory::make("lipsync")
        .property_from_str("renderer", "stsa")
        .property("weights", "detw")
        .build()
        .unwrap();
    let voice: Vec<f32> = (0..16_000).map(|i| 0.3 * (i as f32 * 0.06).sin()).collect();
    let (out, element) = astronaut_frames(element, &voice, 3);
    assert_eq!(counter(&element, "frames-rendered"), 3);
    assert_eq!(counter(&element, "frames-fallback"), 0);
    let face = astronaut_rgb();
    for frame in &out {
        let changed = pixels_apart(frame, &face);
        assert!(changed > 1000, "the face is redrawn: {changed} pixels");
        // The top rows (sky above the head) are never touched.
        assert_eq!(frame[..512 * 3 * 40], face[..512 * 3 * 40]);
    }
}

#[test]
fn phoneme_events_leave_the_stream_as_it_was() {
    let mut s = setup(&[], true, false);
    let size = (W * H * 4) as usize;
    // ARPAbet with stress, eSpeak NG and IPA spellings, a pause.
    let phonemes = ["p", "AA1", "s", "pau", "a#", "\u{0283}", "m", "ey2"];
    for k in 0..20u64 {
        let a = s.audio.as_mut().unwrap();
        assert!(a.push_event(phoneme_event(phonemes[k as usize % phonemes.len()], k * 40, 40)));
        a.push(audio_buffer(k * 40, 40, 0.1)).unwrap();
        if k == 3 {
            assert!(s.video.push_event(phoneme_event("p", 0, 40)), "ignored on the video pad");
        }
        s.video.push(video_buffer(k, size)).unwrap();
    }
    let out = end_and_pull_all(&mut s);
    let pts: Vec<u64> = out.iter().map(|b| b.pts().unwrap().nseconds()).collect();
    assert_eq!(pts, (0..20).map(|k| k * FRAME).collect::<Vec<_>>());
    assert_eq!(counter(&s.element, "frames-rendered"), 20);
    let warnings = messages(&s.bus, gst::MessageType::Warning);
    assert!(warnings.is_empty(), "{warnings:?}");
    let custom = std::iter::from_fn(|| s.video.try_pull_event())
        .filter(|e| e.type_() == gst::EventType::CustomDownstream)
        .count();
    assert_eq!(custom, 0, "the element consumes its phoneme events");
}

#[test]
fn malformed_phoneme_events_warn_and_the_stream_goes_on() {
    let mut s = setup(&[], true, false);
    let size = (W * H * 4) as usize;
    let bad = [
        (phoneme_event("qq", 0, 40), "qq"),
        (
            phoneme_event_of(|b| b.field("phoneme", "p").field("duration", gst::ClockTime::from_mseconds(40))),
            "no `start` field",
        ),
        (
            phoneme_event_of(|b| {
                b.field("phoneme", "p").field("start", "soon").field("duration", gst::ClockTime::from_mseconds(40))
            }),
            "`start` is a gchararray",
        ),
        (
            phoneme_event_of(|b| {
                b.field("phoneme", 3i32)
                    .field("start", gst::ClockTime::ZERO)
                    .field("duration", gst::ClockTime::from_mseconds(40))
            }),
            "`phoneme` is a gint",
        ),
        (
            phoneme_event_of(|b| {
                b.field("phoneme", "p")
                    .field("start", gst::ClockTime::MAX)
                    .field("duration", gst::ClockTime::from_mseconds(40))
            }),
            "overflows",
        ),
    ];
    let expected: Vec<&str> = bad.iter().map(|(_, what)| *what).collect();
    for (k, (ev, _)) in bad.into_iter().enumerate() {
        let a = s.audio.as_mut().unwrap();
        assert!(a.push_event(ev), "a malformed event is dropped, not refused");
        a.push(audio_buffer(k as u64 * 40, 40, 0.1)).unwrap();
        s.video.push(video_buffer(k as u64, size)).unwrap();
    }
    for k in expected.len() as u64..10 {
        s.audio.as_mut().unwrap().push(audio_buffer(k * 40, 40, 0.1)).unwrap();
        s.video.push(video_buffer(k, size)).unwrap();
    }
    let pts: Vec<u64> = end_and_pull_all(&mut s).iter().map(|b| b.pts().unwrap().nseconds() / FRAME).collect();
    assert_eq!(pts, (0..10).collect::<Vec<_>>());
    let warnings: Vec<String> = messages(&s.bus, gst::MessageType::Warning)
        .iter()
        .map(|m| {
            let gst::MessageView::Warning(w) = m.view() else { unreachable!() };
            format!("{} {:?}", w.error(), w.debug())
        })
        .collect();
    assert_eq!(warnings.len(), expected.len(), "{warnings:#?}");
    for (warning, what) in warnings.iter().zip(&expected) {
        assert!(warning.contains(what) && warning.contains("lipsync/phoneme"), "{what:?} in {warning}");
    }
    assert!(warnings[0].contains("ARPAbet"), "the warning says what to send: {}", warnings[0]);
}

#[test]
fn phonemes_shape_the_mouth_of_the_classic_renderer() {
    // A held vowel: the audio alone keeps the mouth open alike on every frame.
    let voice = voice(false);
    // `aa` throughout, but for running time 240..320 ms (frames 6 and 7): `p` in one run, `aa` in the
    // other. With `base_ms`, the audio's segment starts at that running time: its timestamps, the
    // phonemes' included, are that much earlier than the video's for the same instant.
    let run = |middle: &str, base_ms: u64| {
        let mut events = Vec::new();
        if base_ms > 0 {
            let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
            segment.set_base(gst::ClockTime::from_mseconds(base_ms));
            events.push(gst::event::Segment::new(&segment));
        }
        let at = |ms: u64| ms - base_ms;
        events.push(phoneme_event("aa", 0, at(240)));
        events.push(phoneme_event(middle, at(240), 80));
        events.push(phoneme_event("aa", at(320), 680));
        let element = gst::ElementFactory::make("lipsync").property_from_str("renderer", "classic").build().unwrap();
        let (frames, element) = astronaut_frames_with(element, &voice, 12, events);
        assert_eq!(counter(&element, "frames-rendered"), 12);
        assert_eq!(counter(&element, "frames-no-face"), 0);
        frames
    };
    init();
    for base_ms in [0, 200] {
        let (closed, open) = (run("p", base_ms), run("aa", base_ms));
        let apart: Vec<usize> = closed.iter().zip(&open).map(|(a, b)| pixels_apart(a, b)).collect();
        eprintln!("audio segment base {base_ms} ms: pixels apart, p vs aa at 240..320 ms: {apart:?}");
        assert!(apart[..6].iter().all(|&n| n == 0), "frames before the phoneme are the same: {apart:?}");
        assert!(apart[6] > 300 && apart[7] > 300, "the lips close for the p: {apart:?}");
    }
}

#[test]
fn a_still_face_blinks_and_sways() {
    init();
    let make = |still: bool| gst::ElementFactory::make("lipsync").property("still-face", still).build().unwrap();
    let silence = vec![0.0; 16_000 * 2];
    let (still, _) = astronaut_frames(make(true), &silence, 40);
    let (plain, _) = astronaut_frames(make(false), &silence, 40);
    let apart: Vec<usize> = still.iter().zip(&plain).map(|(a, b)| pixels_apart(a, b)).collect();
    let steps: Vec<usize> = still.windows(2).map(|w| pixels_apart(&w[0], &w[1])).collect();
    eprintln!("pixels apart, still face or not: {apart:?}\nframe to frame: {steps:?}");
    // The sway grows in from the photo's own pose: the first frames are the plain ones, later ones differ
    // more and more (the whole head moved).
    assert!(apart[..8].iter().all(|&n| n == 0) && apart[39] > 400, "{apart:?}");
    // The first blink starts 1 s in and lasts 240 ms: the lids move many pixels from frame to frame. The
    // sway moves none by more than a shade (after the first frames, where the mouth closes).
    assert!(steps[25] > 100 && steps[26] > 100, "{steps:?}");
    assert!(steps[8..24].iter().chain(&steps[32..]).all(|&n| n <= 5), "{steps:?}");
}
