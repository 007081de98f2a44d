//! Counters and render-time percentiles of an engine, readable from any thread without blocking the engine
//! (the element's read-only properties and its periodic `lipsync-stats` message read these).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::audio::AudioCounters;

/// How many recent render times the percentiles are computed over.
const RENDER_TIME_WINDOW: usize = 512;

/// Live counters of one engine.
#[derive(Debug, Default)]
pub struct Stats {
    /// Frames pushed into the engine.
    pub frames_in: AtomicU64,
    /// Frames that went out with the renderer's result (changed or not).
    pub frames_rendered: AtomicU64,
    /// Frames whose render was not ready at their deadline, or too late to start (QoS).
    pub frames_late: AtomicU64,
    /// Frames that went out as the fallback for any reason (late, render error, no audio).
    pub frames_fallback: AtomicU64,
    /// Frames that went out without waiting because the audio was missing for too long.
    pub frames_no_audio: AtomicU64,
    /// Frames in which face tracking found no face (passed through untouched).
    pub frames_no_face: AtomicU64,
    audio: Arc<AudioCounters>,
    render_times: Mutex<RenderTimes>,
}

#[derive(Debug, Default)]
struct RenderTimes {
    ring: Vec<u64>,
    next: usize,
}

/// A consistent copy of the counters.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StatsSnapshot {
    pub frames_in: u64,
    pub frames_rendered: u64,
    pub frames_late: u64,
    pub frames_fallback: u64,
    pub frames_no_audio: u64,
    pub frames_no_face: u64,
    pub audio_underruns: u64,
    pub audio_overruns: u64,
    pub audio_underrun_samples: u64,
    pub audio_overrun_samples: u64,
    /// Render time percentiles over the last renders, in ns (0 when nothing rendered yet).
    pub render_p50: u64,
    pub render_p90: u64,
    pub render_p99: u64,
    pub render_max: u64,
}

impl Stats {
    pub(crate) fn new(audio: Arc<AudioCounters>) -> Self {
        Stats { audio, ..Default::default() }
    }

    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_render_time(&self, d: Duration) {
        let mut t = self.render_times.lock();
        let ns = d.as_nanos() as u64;
        if t.ring.len() < RENDER_TIME_WINDOW {
            t.ring.push(ns);
        } else {
            let i = t.next;
            t.ring[i] = ns;
        }
        t.next = (t.next + 1) % RENDER_TIME_WINDOW;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let mut times = self.render_times.lock().ring.clone();
        times.sort_unstable();
        let pct = |p: f64| -> u64 {
            if times.is_empty() { 0 } else { times[((times.len() - 1) as f64 * p).round() as usize] }
        };
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            frames_in: r(&self.frames_in),
            frames_rendered: r(&self.frames_rendered),
            frames_late: r(&self.frames_late),
            frames_fallback: r(&self.frames_fallback),
            frames_no_audio: r(&self.frames_no_audio),
            frames_no_face: r(&self.frames_no_face),
            audio_underruns: r(&self.audio.underruns),
            audio_overruns: r(&self.audio.overruns),
            audio_underrun_samples: r(&self.audio.underrun_samples),
            audio_overrun_samples: r(&self.audio.overrun_samples),
            render_p50: pct(0.5),
            render_p90: pct(0.9),
            render_p99: pct(0.99),
            render_max: times.last().copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_over_recent_renders() {
        let s = Stats::new(Arc::default());
        for ms in 1..=100 {
            s.record_render_time(Duration::from_millis(ms));
        }
        let snap = s.snapshot();
        assert_eq!(snap.render_p50, 51_000_000);
        assert_eq!(snap.render_p99, 99_000_000);
        assert_eq!(snap.render_max, 100_000_000);
    }
}
