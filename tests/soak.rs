//! An hour of live stream through the engine on a simulated clock, in seconds: 90,000 frames at 25 fps, with
//! the voice arriving in 20 ms packets, gaps where it stops, bursts where a TTS sends two seconds at once,
//! and a change of frame size half-way. Every frame must come out once, in order, with its pts; the
//! counters must add up; the memory must stay flat.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use lipsync::audio::AudioWindow;
use lipsync::render::{RenderJob, Rendered, Renderer};
use lipsync::stsa::profile::resident_set;
use lipsync::{Engine, EngineConfig, FrameStatus, Mode, Patch, PixelFormat, VideoFrame};

/// Bytes allocated and not yet freed, over all threads.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every call goes to `System` unchanged; the counting is one atomic add.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MS: u64 = 1_000_000;
const FRAME: u64 = 40 * MS;
const FRAMES: u64 = 90_000;
const PACKET: u64 = 20 * MS;
/// When a packet reaches the engine after the end of the audio it carries.
const AUDIO_DELAY: u64 = 40 * MS;

/// Paints a patch from the mean level of the frame's audio (so each render reads its window).
struct Level;

impl Renderer for Level {
    fn name(&self) -> &'static str {
        "level"
    }
    fn window(&self) -> AudioWindow {
        AudioWindow { before: 20 * MS, after: 40 * MS }
    }
    fn render(&mut self, job: &RenderJob<'_>) -> lipsync::Result<Rendered> {
        let level = job.audio.iter().map(|s| s.abs()).sum::<f32>() / job.audio.len().max(1) as f32;
        Ok(Rendered::Patch(Patch::solid(0, 0, 2, 2, [(level * 255.0) as u8, 0, 0, 255])))
    }
}

/// What happens to audio packet `i` (20 ms from `i * 20` ms): lost for good (200 ms every 30 s), held and
/// sent with a burst (2 s every 50 s, all at the time of the burst's first packet), or sent on time.
enum Fate {
    Lost,
    Burst { first: u64 },
    OnTime,
}

fn fate(i: u64) -> Fate {
    if (1000..1010).contains(&(i % 1500)) {
        Fate::Lost
    } else if (2000..2100).contains(&(i % 2500)) {
        Fate::Burst { first: i - (i % 2500 - 2000) }
    } else {
        Fate::OnTime
    }
}

/// When packet `i` reaches the engine, `None` if never.
fn arrival(i: u64) -> Option<u64> {
    let on_time = |i: u64| (i + 1) * PACKET + AUDIO_DELAY;
    match fate(i) {
        Fate::Lost => None,
        Fate::Burst { first } => Some(on_time(first)),
        Fate::OnTime => Some(on_time(i)),
    }
}

/// Whether the audio window of the frame at `pts` ([`Level`]'s: 20 ms before to 40 ms after) overlaps a lost
/// packet.
fn touches_a_gap(pts: u64) -> bool {
    let first = pts.saturating_sub(20 * MS) / PACKET;
    let last = (pts + 40 * MS - 1) / PACKET;
    (first..=last).any(|i| matches!(fate(i), Fate::Lost))
}

fn frame(k: u64) -> VideoFrame {
    // The frame size changes half-way, as after a caps change.
    let width = if k < FRAMES / 2 { 8 } else { 16 };
    VideoFrame::from_vec(PixelFormat::Rgba, width, 8, vec![(k % 251) as u8; width as usize * 32], k * FRAME).unwrap()
}

#[test]
fn an_hour_of_stream_with_gaps_bursts_and_a_caps_change_keeps_every_frame_and_flat_memory() {
    let config = EngineConfig { mode: Mode::Live, latency: Some(160 * MS), ..Default::default() };
    let (mut engine, mut producer) = Engine::<u64>::new(Box::new(Level), config).unwrap();
    let packet: Vec<f32> = (0..320).map(|n| 0.3 * (n as f32 * 0.12).sin()).collect();
    let packets = FRAMES * FRAME / PACKET;
    // Packets in order of arrival (a burst's come together, in order).
    let mut arriving: Vec<(u64, u64)> = (0..packets).filter_map(|i| arrival(i).map(|t| (t, i))).collect();
    arriving.sort();
    let mut next_packet = 0usize;

    let mut next_out = 0u64;
    let mut statuses = [0u64; 4];
    let mut near_gaps = 0u64;
    let mut check = |out: lipsync::OutputFrame<u64>| {
        assert_eq!(out.payload, next_out, "frames out of order or lost");
        assert_eq!(out.frame.pts, next_out * FRAME, "frame {next_out} lost its pts");
        let near_gap = touches_a_gap(out.frame.pts);
        near_gaps += near_gap as u64;
        assert!(
            near_gap || out.status == FrameStatus::Rendered,
            "frame {next_out}, away from the gaps, went out as {:?}",
            out.status
        );
        let status = match out.status {
            FrameStatus::Rendered => 0,
            FrameStatus::Late => 1,
            FrameStatus::Failed => 2,
            FrameStatus::NoAudio => 3,
        };
        statuses[status] += 1;
        next_out += 1;
    };
    let mut settled = None;
    let step = FRAME / 2;
    let end = FRAMES * FRAME + 1000 * MS;
    let mut t = 0;
    while t <= end {
        while let Some(&(at, i)) = arriving.get(next_packet)
            && at <= t
        {
            engine.push_audio(&mut producer, Some(i * PACKET), &packet).unwrap();
            next_packet += 1;
        }
        if t % FRAME == 0 && t / FRAME < FRAMES {
            let k = t / FRAME;
            engine.push_video(frame(k), k);
        }
        for out in engine.process(Some(t)) {
            check(out);
        }
        // The renders are instant on this clock: the worker finishes before time moves on.
        while engine.in_flight() > 0 {
            engine.wait(Duration::from_secs(5));
            for out in engine.process(Some(t)) {
                check(out);
            }
        }
        // Memory once the stream is running (the render-time window and the audio history full).
        if t == 10_000 * FRAME {
            settled = Some((LIVE.load(Ordering::Relaxed), resident_set().unwrap()));
        }
        t += step;
    }
    let (heap, rss) = settled.expect("the stream ran past 10,000 frames");
    let grown = LIVE.load(Ordering::Relaxed) - heap;
    let rss_grown = resident_set().unwrap() as i64 - rss as i64;
    engine.audio_eos();
    for out in engine.finish(Some(t)) {
        check(out);
    }

    assert_eq!(next_out, FRAMES, "every frame out once");
    let s = engine.stats().snapshot();
    eprintln!("{s:?}; heap grew {grown} bytes, resident set {rss_grown} bytes, from frame 10,000 to the end");
    assert_eq!(s.frames_in, FRAMES);
    assert_eq!(s.frames_rendered + s.frames_fallback, FRAMES, "every frame counted once");
    assert_eq!(s.frames_rendered, statuses[0]);
    assert_eq!(s.frames_late, statuses[1], "late frames counted as they went out");
    assert_eq!(s.frames_no_audio, statuses[3]);
    assert_eq!(s.frames_fallback, statuses[1] + statuses[2] + statuses[3]);
    // A frame whose window reaches into a gap either renders with the hole counted as an underrun, or, when
    // the audio after the gap comes after its deadline, goes out late as the fallback; no other frame
    // suffers, and the bursts overflow nothing.
    assert_eq!(s.audio_underruns + s.frames_late, near_gaps, "frames touched by the gaps: {near_gaps}");
    assert_eq!(s.audio_overruns, 0, "bursts two seconds ahead fit in the audio history");
    assert_eq!(statuses[2] + statuses[3], 0, "no render fails, no frame waits out the audio timeout");
    assert!(grown.abs() < 5 << 20, "the heap grew by {grown} bytes over 80,000 frames");
    assert!(rss_grown < 5 << 20, "the resident set grew by {rss_grown} bytes over 80,000 frames");
}
