//! The element serving a voice agent in real time: speech sent in bursts, silence between turns, an
//! interruption. Alone in its file, so that no other test shares the cores while frames run against
//! their deadlines.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gst_check::Harness;

/// `lipsync-playback` messages on `bus`: ("started", segment, running time) or ("finished", segment,
/// position, interrupted) as (event, segment, time, interrupted).
fn playback_messages(bus: &gst::Bus) -> Vec<(String, u64, u64, bool)> {
    messages(bus, gst::MessageType::Element)
        .iter()
        .filter_map(|m| m.structure().filter(|s| s.name() == "lipsync-playback").map(|s| s.to_owned()))
        .map(|s| {
            let event = s.get::<String>("event").unwrap();
            let time = if event == "started" { "running-time" } else { "position" };
            let time = s.get::<gst::ClockTime>(time).unwrap().nseconds();
            (event, s.get::<u64>("segment").unwrap(), time, s.get::<bool>("interrupted").unwrap_or(false))
        })
        .collect()
}

fn audio_at(samples: &[f32], start_ms: u64) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut b = gst::Buffer::from_mut_slice(bytes);
    b.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(start_ms));
    b
}

/// A voice agent's turns on a photo: speech sent ahead in bursts (a TTS is faster than real time), frames
/// in real time, silence between turns; the user interrupts the first turn.
#[test]
fn speech_in_bursts_plays_at_real_time_and_a_flush_on_the_audio_interrupts_it() {
    init();
    // A latency with room for a slow machine: every frame is rendered (the deadlines are not under test).
    let element = gst::ElementFactory::make("lipsync")
        .property_from_str("audio-gaps", "silence")
        .property("latency", 500 * MS)
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = Harness::with_element(&element, Some("video_sink"), Some("src"));
    h.set_live(true);
    h.use_systemclock();
    h.set_src_caps(video_caps("RGB", 512, 512));
    let mut a = Harness::with_element(&element, Some("audio_sink"), None);
    a.set_live(true);
    a.set_src_caps(audio_caps());
    element.set_base_time(gst::SystemClock::obtain().time());
    h.query_latency();
    let latency_ms = element.property::<u64>("latency") / MS;
    // The first turn: 2 s of speech from 400 ms, sent at once; interrupted at 1.2 s. The second: 400 ms
    // from 1.6 s, sent at 1.4 s.
    let (flush_at, second_at) = (30u64, 35u64);
    a.push(audio_at(&voice(true).repeat(2), 400)).unwrap();
    let face = astronaut_rgb();
    let start = Instant::now();
    for k in 0..60u64 {
        if let Some(wait) = Duration::from_nanos(k * FRAME).checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if k == flush_at {
            assert!(a.push_event(gst::event::FlushStart::new()));
            assert!(a.push_event(gst::event::FlushStop::new(false)));
            a.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
        }
        if k == second_at {
            a.push(audio_at(&voice(true)[..6400], 1600)).unwrap();
        }
        let mut b = gst::Buffer::from_mut_slice(face.clone());
        b.get_mut().unwrap().set_pts(gst::ClockTime::from_nseconds(k * FRAME));
        h.push(b).unwrap();
    }
    a.push_event(gst::event::Eos::new());
    h.push_event(gst::event::Eos::new());
    let frames: Vec<Vec<u8>> = pull_all(&mut h).iter().map(|b| b.map_readable().unwrap().to_vec()).collect();
    assert_eq!(frames.len(), 60);
    let counts: Vec<u64> = ["frames-rendered", "frames-late", "frames-fallback", "frames-no-face"]
        .iter()
        .map(|c| counter(&element, c))
        .collect();
    // The aggregator wakes no earlier than its latency after the start, past the first frame's deadline:
    // that frame may go out as the fallback; every other one is rendered.
    // Before the speech, the mouth is closed: frame 8 (its look-ahead ends before 400 ms) is the reference.
    let apart: Vec<usize> = frames.iter().map(|f| pixels_apart(f, &frames[8])).collect();
    eprintln!("pixels apart from the closed mouth, frame by frame: {apart:?}");
    assert!(counts[0] >= 59 && counts[3] == 0, "no frame late or waiting for audio: {counts:?}");
    assert!(apart[12..flush_at as usize].iter().filter(|&&n| n > 300).count() >= 8, "the first turn speaks");
    // Closed within two frames of the flush, until the second turn's look-ahead.
    assert!(apart[flush_at as usize + 2..38].iter().all(|&n| n < 50), "{apart:?}");
    assert!(apart[41..50].iter().filter(|&&n| n > 300).count() >= 4, "the second turn speaks");
    assert!(apart[54..].iter().all(|&n| n < 50), "closed again after it: {apart:?}");
    let played = playback_messages(&bus);
    eprintln!("playback: {played:?}");
    assert_eq!(played.len(), 4, "{played:?}");
    assert_eq!(played[0], ("started".into(), 0, 400 * MS, false));
    // Interrupted at 1.2 s, when the frame on screen was the one of 1.2 s minus the latency.
    let (ref event, segment, position, interrupted) = played[1];
    assert_eq!((event.as_str(), segment, interrupted), ("finished", 0, true));
    let shown = (flush_at * 40 - latency_ms - 400) * MS;
    assert!(position.abs_diff(shown) <= 40 * MS, "interrupted at {position} ns, expected about {shown}");
    assert_eq!(played[2], ("started".into(), 1, 1600 * MS, false));
    assert_eq!(played[3], ("finished".into(), 1, 400 * MS, false));
}
