//! `AudioRing`: 16 kHz mono f32 samples from one producer thread to the engine, lock-free.
//!
//! Producer side ([`AudioProducer`], in an audio callback or a pad's chain function): pushes blocks with
//! their running time into a `ringbuf` SPSC ring; no locks, no allocation. The sample clock rules: a block
//! whose timestamp is within `tolerance` of where the previous one ended is taken as contiguous; a larger
//! jump (a gap, a discontinuity, a clock slip) re-anchors the mapping from sample index to time. If the
//! hand-off ring is full (the consumer stalled), the samples that do not fit are dropped and counted, and the
//! next block re-anchors so time stays right.
//!
//! Consumer side ([`AudioRing`], the engine thread): drains the hand-off ring into a local history of
//! time-stamped segments, answers "the samples covering `[t0, t1)`" (silence where data is missing, counted as
//! an underrun), and drops the oldest samples when the history is full (counted as an overrun when a frame
//! still needed them) or when the engine says they are no longer needed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use super::{NS_PER_SAMPLE, SAMPLE_RATE, ns_to_samples, samples_to_ns};
use crate::error::{Error, Result};

/// Sizes and tolerances of an [`AudioRing`].
#[derive(Clone, Debug)]
pub struct RingConfig {
    /// Capacity of the lock-free hand-off between producer and consumer, in samples.
    pub handoff_samples: usize,
    /// How much audio the consumer keeps, in samples.
    pub history_samples: usize,
    /// Largest timestamp deviation (ns) still taken as contiguous audio.
    pub tolerance_ns: u64,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            handoff_samples: 2 * SAMPLE_RATE as usize,
            history_samples: 10 * SAMPLE_RATE as usize,
            tolerance_ns: 2_000_000,
        }
    }
}

impl RingConfig {
    /// A ring that holds `queue` ns of audio ahead of the frames (speech sent faster than real time),
    /// and a second more for the windows of the frames being rendered.
    pub fn for_queue(queue: u64) -> Self {
        let history_samples = ns_to_samples(queue + 1_000_000_000) as usize;
        RingConfig { history_samples, ..Default::default() }
    }
}

/// Overrun and underrun counts, shared by both ends and readable from any thread.
#[derive(Debug, Default)]
pub struct AudioCounters {
    /// Times samples were dropped (hand-off full, or history full while a frame still needed them).
    pub overruns: AtomicU64,
    /// Samples dropped by those overruns.
    pub overrun_samples: AtomicU64,
    /// Windows read with missing samples (filled with silence).
    pub underruns: AtomicU64,
    /// Samples of silence those underruns inserted.
    pub underrun_samples: AtomicU64,
}

impl AudioCounters {
    fn overrun(&self, samples: u64) {
        self.overruns.fetch_add(1, Ordering::Relaxed);
        self.overrun_samples.fetch_add(samples, Ordering::Relaxed);
    }
    fn underrun(&self, samples: u64) {
        self.underruns.fetch_add(1, Ordering::Relaxed);
        self.underrun_samples.fetch_add(samples, Ordering::Relaxed);
    }
}

/// Maps the sample with stream index `index` (counted over every sample that entered the hand-off) to a
/// running time; sent by the producer ahead of the samples it describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Anchor {
    index: u64,
    time: u64,
}

/// Where the samples a producer pushes are headed; created with [`AudioRing::new`].
pub struct AudioProducer {
    /// Set by the consumer after a flush.
    reanchor_requested: Arc<AtomicBool>,
    samples: HeapProd<f32>,
    anchors: HeapProd<Anchor>,
    counters: Arc<AudioCounters>,
    tolerance_ns: u64,
    /// Stream index of the next sample that enters the hand-off.
    next_index: u64,
    /// Running time of the next sample according to the sample clock.
    next_time: Option<u64>,
    /// Set after dropped samples: the next block must carry a new anchor.
    reanchor: bool,
}

impl AudioProducer {
    /// Pushes a block of samples starting at running time `pts` (ns). `None` continues where the previous
    /// block ended (an error for the first block). Returns the number of samples that entered the ring;
    /// the rest were dropped and counted as an overrun.
    pub fn push(&mut self, pts: Option<u64>, samples: &[f32]) -> Result<usize> {
        let time = match (pts, self.next_time) {
            (Some(t), _) => t,
            (None, Some(t)) => t,
            (None, None) => return Err(Error::MissingTimestamp { what: "the first audio block" }),
        };
        if samples.is_empty() {
            return Ok(0);
        }
        if self.reanchor_requested.swap(false, Ordering::Acquire) {
            self.reanchor = true;
        }
        let jumped = self.next_time.is_none_or(|expected| time.abs_diff(expected) > self.tolerance_ns);
        let needs_anchor = jumped || self.reanchor;
        let mut n = samples.len().min(self.samples.vacant_len());
        if needs_anchor && n > 0 && self.anchors.try_push(Anchor { index: self.next_index, time }).is_err() {
            n = 0; // the consumer has not kept up with even the anchors: drop the block
        }
        let pushed = if n > 0 { self.samples.push_slice(&samples[..n]) } else { 0 };
        if pushed < samples.len() {
            self.counters.overrun((samples.len() - pushed) as u64);
            self.reanchor = true;
        } else {
            self.reanchor = false;
        }
        self.next_index += pushed as u64;
        // Keep the sample clock of the previous anchor when the block was contiguous, so rounding in the
        // caller's timestamps does not accumulate.
        let start = if needs_anchor { time } else { self.next_time.unwrap_or(time) };
        self.next_time = Some(start + samples_to_ns(samples.len() as u64));
        Ok(pushed)
    }

    /// Running time right after the last pushed sample, if anything was pushed.
    pub fn next_time(&self) -> Option<u64> {
        self.next_time
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<AudioCounters> {
        &self.counters
    }
}

/// A run of contiguous samples in the history: stream index of its first sample, its time, its length.
#[derive(Clone, Copy, Debug)]
struct Segment {
    index: u64,
    time: u64,
    len: u64,
}

impl Segment {
    fn end_time(&self) -> u64 {
        self.time + samples_to_ns(self.len)
    }
}

/// What [`AudioRing::read`] found for a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadInfo {
    /// Samples taken from the history.
    pub present: usize,
    /// Samples with no data (filled with silence).
    pub missing: usize,
}

/// The consumer end: a time-indexed history of the audio; see the module docs.
pub struct AudioRing {
    /// Set by [`AudioRing::clear`]: the producer's next block starts a new anchor.
    reanchor: Arc<AtomicBool>,
    samples: HeapCons<f32>,
    anchors: HeapCons<Anchor>,
    counters: Arc<AudioCounters>,
    /// Anchors received for samples not yet drained.
    pending_anchors: VecDeque<Anchor>,
    /// Stream index of the next sample to drain.
    next_index: u64,
    history: VecDeque<f32>,
    /// Stream index of `history[0]`.
    history_index: u64,
    segments: VecDeque<Segment>,
    capacity: usize,
    /// Samples at or after this time are still needed by a frame: dropping them is an overrun.
    protect_from: u64,
    /// Scratch for `read`: which output samples had data (kept to avoid a per-window allocation).
    covered: Vec<bool>,
}

impl AudioRing {
    /// A new ring: the producer half for the audio thread, the consumer half for the engine.
    pub fn new(config: &RingConfig) -> (AudioProducer, AudioRing) {
        let counters = Arc::new(AudioCounters::default());
        let (sp, sc) = HeapRb::<f32>::new(config.handoff_samples.max(1)).split();
        let (ap, ac) = HeapRb::<Anchor>::new(256).split();
        let reanchor = Arc::new(AtomicBool::new(false));
        let producer = AudioProducer {
            reanchor_requested: reanchor.clone(),
            samples: sp,
            anchors: ap,
            counters: counters.clone(),
            tolerance_ns: config.tolerance_ns,
            next_index: 0,
            next_time: None,
            reanchor: false,
        };
        let ring = AudioRing {
            reanchor,
            samples: sc,
            anchors: ac,
            counters,
            pending_anchors: VecDeque::new(),
            next_index: 0,
            history: VecDeque::with_capacity(config.history_samples),
            history_index: 0,
            segments: VecDeque::new(),
            capacity: config.history_samples.max(1),
            protect_from: 0,
            covered: Vec::new(),
        };
        (producer, ring)
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<AudioCounters> {
        &self.counters
    }

    /// Moves everything the producer has pushed into the history. Called by the other methods.
    pub fn drain(&mut self) {
        // Count the samples first, then take the anchors: every anchor of a counted sample was pushed
        // before it, so it is visible now.
        let available = self.samples.occupied_len();
        while let Some(a) = self.anchors.try_pop() {
            self.pending_anchors.push_back(a);
        }
        let mut left = available;
        while left > 0 {
            if self.pending_anchors.front().is_some_and(|a| a.index <= self.next_index) {
                let a = self.pending_anchors.pop_front().expect("front exists");
                self.segments.push_back(Segment { index: self.next_index, time: a.time, len: 0 });
            }
            // Samples up to the next anchor belong to the current segment.
            let until_anchor =
                self.pending_anchors.front().map_or(u64::MAX, |a| a.index.saturating_sub(self.next_index));
            let take = (left as u64).min(until_anchor).max(1) as usize;
            match self.segments.back_mut() {
                Some(seg) => {
                    seg.len += take as u64;
                    let (a, b) = self.samples.as_slices();
                    let from_a = take.min(a.len());
                    self.history.extend(&a[..from_a]);
                    self.history.extend(&b[..take - from_a]);
                }
                // Only samples pushed while the ring was being cleared can lack an anchor: they belong
                // to the flushed stream.
                None => {
                    tracing::debug!(samples = take, "dropping audio from before a flush");
                    self.history_index += take as u64;
                }
            }
            self.samples.skip(take);
            self.next_index += take as u64;
            left -= take;
        }
        if self.history.len() > self.capacity {
            let excess = (self.history.len() - self.capacity) as u64;
            let protected = self.samples_from(self.history_index, excess, self.protect_from);
            if protected > 0 {
                self.counters.overrun(protected);
            }
            self.drop_front(excess);
        }
    }

    /// How many of the `n` samples starting at stream index `index` lie at or after time `t`.
    fn samples_from(&self, index: u64, n: u64, t: u64) -> u64 {
        let end = index + n;
        self.segments
            .iter()
            .filter(|s| s.index < end && s.index + s.len > index)
            .map(|s| {
                let lo = s.index.max(index);
                let hi = (s.index + s.len).min(end);
                let first_kept = if t <= s.time { s.index } else { s.index + (t - s.time).div_ceil(NS_PER_SAMPLE) };
                hi.saturating_sub(lo.max(first_kept))
            })
            .sum()
    }

    fn drop_front(&mut self, n: u64) {
        let n = n.min(self.history.len() as u64);
        self.history.drain(..n as usize);
        self.history_index += n;
        while let Some(s) = self.segments.front_mut() {
            if s.index + s.len <= self.history_index {
                if self.segments.len() == 1 {
                    // Keep the newest segment, empty, so contiguous samples still know their time.
                    let s = &mut self.segments[0];
                    s.time = s.end_time();
                    s.index += s.len;
                    s.len = 0;
                    break;
                }
                self.segments.pop_front();
            } else {
                if s.index < self.history_index {
                    let cut = self.history_index - s.index;
                    s.index += cut;
                    s.time += samples_to_ns(cut);
                    s.len -= cut;
                }
                break;
            }
        }
    }

    /// Forgets the samples before time `t`; the engine calls this once no future frame can need them.
    pub fn release_before(&mut self, t: u64) {
        self.drain();
        let mut n = 0u64;
        for s in &self.segments {
            if s.end_time() <= t {
                n = s.index + s.len - self.history_index;
            } else if s.time < t {
                n = s.index + (t - s.time) / NS_PER_SAMPLE - self.history_index;
                break;
            } else {
                break;
            }
        }
        self.drop_front(n);
    }

    /// Declares that frames still need the samples from time `t` on (`u64::MAX`: none do), so that
    /// dropping them for lack of space is counted as an overrun. Until told otherwise, all are needed.
    pub fn protect_from(&mut self, t: u64) {
        self.protect_from = t;
    }

    /// Running time just after the newest sample received, if any.
    pub fn end_time(&mut self) -> Option<u64> {
        self.drain();
        self.segments.iter().map(Segment::end_time).max()
    }

    /// The runs of contiguous audio held, oldest first: (running time of the first sample, just after the
    /// last).
    pub fn spans(&mut self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.drain();
        self.segments.iter().filter(|s| s.len > 0).map(|s| (s.time, s.end_time()))
    }

    /// Running time of the oldest sample held.
    pub fn start_time(&mut self) -> Option<u64> {
        self.drain();
        self.segments.iter().map(|s| s.time).min()
    }

    /// Whether audio up to `t` has arrived (gaps inside count as arrived: they are silence by then).
    pub fn covers(&mut self, t: u64) -> bool {
        self.end_time().is_some_and(|end| end >= t)
    }

    /// Fills `out` with the samples of the window starting at `t0` (`out.len()` samples at 16 kHz). Missing
    /// samples become silence; a window with missing samples counts as one underrun when `count` is set.
    /// Where segments overlap (the producer's clock jumped back), the newer samples win.
    pub fn read(&mut self, t0: u64, out: &mut [f32], count: bool) -> ReadInfo {
        self.drain();
        out.fill(0.0);
        let n = out.len() as i64;
        let mut covered = std::mem::take(&mut self.covered);
        covered.clear();
        covered.resize(out.len(), false);
        for s in &self.segments {
            // Position in `out` of the segment's first sample, rounded to the nearest sample.
            let rel = s.time as i128 - t0 as i128;
            let pos = (rel + (NS_PER_SAMPLE as i128 / 2)).div_euclid(NS_PER_SAMPLE as i128) as i64;
            let lo = pos.max(0);
            let hi = (pos + s.len as i64).min(n);
            if lo >= hi {
                continue;
            }
            let first = ((s.index - self.history_index) as i64 + (lo - pos)) as usize;
            let (lo, hi) = (lo as usize, hi as usize);
            copy_from_deque(&self.history, first, &mut out[lo..hi]);
            covered[lo..hi].fill(true);
        }
        let present = covered.iter().filter(|c| **c).count();
        self.covered = covered;
        let info = ReadInfo { present, missing: out.len() - present };
        if count && info.missing > 0 {
            self.counters.underrun(info.missing as u64);
        }
        info
    }

    /// Drops all audio (flush); the producer's next block re-anchors by its timestamp.
    pub fn clear(&mut self) {
        self.reanchor.store(true, Ordering::Release);
        self.drain();
        let n = self.history.len() as u64;
        self.drop_front(n);
        self.segments.clear();
    }

    /// Samples currently held.
    pub fn len(&self) -> usize {
        self.history.len()
    }

    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }
}

/// Copies `out.len()` samples of `deque` starting at `start`, slice by slice.
fn copy_from_deque(deque: &VecDeque<f32>, start: usize, out: &mut [f32]) {
    let (a, b) = deque.as_slices();
    let n = out.len();
    if start >= a.len() {
        let s = start - a.len();
        out.copy_from_slice(&b[s..s + n]);
    } else {
        let from_a = (a.len() - start).min(n);
        out[..from_a].copy_from_slice(&a[start..start + from_a]);
        out[from_a..].copy_from_slice(&b[..n - from_a]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn ramp(start: usize, n: usize) -> Vec<f32> {
        (start..start + n).map(|i| i as f32).collect()
    }

    #[test]
    fn maps_time_to_samples() {
        let (mut p, mut r) = AudioRing::new(&RingConfig::default());
        p.push(Some(1000 * MS), &ramp(0, 1600)).unwrap();
        p.push(Some(1100 * MS), &ramp(1600, 1600)).unwrap();
        assert_eq!(r.end_time(), Some(1200 * MS));
        let mut out = vec![0.0; 160];
        let info = r.read(1050 * MS, &mut out, true);
        assert_eq!(info, ReadInfo { present: 160, missing: 0 });
        assert_eq!(out[0], 800.0);
        assert_eq!(out[159], 959.0);
        assert!(r.covers(1200 * MS) && !r.covers(1201 * MS));
    }

    #[test]
    fn timestamp_jitter_within_tolerance_keeps_the_sample_clock() {
        let (mut p, mut r) = AudioRing::new(&RingConfig::default());
        p.push(Some(0), &ramp(0, 160)).unwrap();
        p.push(Some(10 * MS + MS), &ramp(160, 160)).unwrap(); // 1 ms late: same clock
        assert_eq!(r.end_time(), Some(20 * MS));
        let mut out = vec![0.0; 2];
        r.read(10 * MS, &mut out, true);
        assert_eq!(out, [160.0, 161.0]);
    }

    #[test]
    fn gaps_are_silence_and_counted() {
        let (mut p, mut r) = AudioRing::new(&RingConfig::default());
        p.push(Some(0), &[1.0; 160]).unwrap(); // [0, 10) ms
        p.push(Some(20 * MS), &[2.0; 160]).unwrap(); // [20, 30) ms: a 10 ms gap
        let mut out = vec![9.0; 480];
        let info = r.read(0, &mut out, true);
        assert_eq!(info, ReadInfo { present: 320, missing: 160 });
        assert!(out[..160].iter().all(|&v| v == 1.0));
        assert!(out[160..320].iter().all(|&v| v == 0.0));
        assert!(out[320..].iter().all(|&v| v == 2.0));
        assert_eq!(r.counters().underruns.load(Ordering::Relaxed), 1);
        assert_eq!(r.counters().underrun_samples.load(Ordering::Relaxed), 160);
        // Reading past the end is missing too.
        let info = r.read(25 * MS, &mut out[..160], true);
        assert_eq!(info.missing, 80);
    }

    #[test]
    fn backward_jump_newer_samples_win() {
        let (mut p, mut r) = AudioRing::new(&RingConfig::default());
        p.push(Some(0), &[1.0; 320]).unwrap(); // [0, 20) ms
        p.push(Some(10 * MS), &[2.0; 160]).unwrap(); // overlaps [10, 20)
        let mut out = vec![0.0; 320];
        r.read(0, &mut out, true);
        assert!(out[..160].iter().all(|&v| v == 1.0));
        assert!(out[160..].iter().all(|&v| v == 2.0));
    }

    #[test]
    fn wraps_around_many_times() {
        let cfg = RingConfig { handoff_samples: 100, history_samples: 250, tolerance_ns: 2 * MS };
        let (mut p, mut r) = AudioRing::new(&cfg);
        r.protect_from(u64::MAX); // nobody needs old audio here
        let mut t = 0;
        for block in 0..1000 {
            let data = ramp(block * 64, 64);
            assert_eq!(p.push(Some(t), &data).unwrap(), 64);
            t += samples_to_ns(64);
            r.drain();
        }
        assert_eq!(r.len(), 250);
        assert_eq!(r.end_time(), Some(t));
        let mut out = vec![0.0; 10];
        r.read(t - samples_to_ns(10), &mut out, true);
        assert_eq!(out[9], (1000 * 64 - 1) as f32);
        assert_eq!(out[0], (1000 * 64 - 10) as f32);
        // Nothing protected: dropping old history is not an overrun.
        assert_eq!(r.counters().overruns.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn full_handoff_drops_and_reanchors() {
        let cfg = RingConfig { handoff_samples: 100, history_samples: 1000, tolerance_ns: 2 * MS };
        let (mut p, mut r) = AudioRing::new(&cfg);
        assert_eq!(p.push(Some(0), &[1.0; 80]).unwrap(), 80);
        assert_eq!(p.push(None, &[2.0; 80]).unwrap(), 20); // 60 dropped
        assert_eq!(p.counters().overrun_samples.load(Ordering::Relaxed), 60);
        p.push(None, &[3.0; 16]).ok(); // full: all dropped
        r.drain();
        assert_eq!(p.push(None, &[4.0; 16]).unwrap(), 16); // continues at its true time
        let mut out = vec![0.0; 192];
        let info = r.read(0, &mut out, false);
        assert_eq!(out[79], 1.0);
        assert_eq!(out[80], 2.0);
        assert_eq!(out[99], 2.0);
        assert_eq!(out[100], 0.0); // the dropped samples are a gap, not a shift
        assert_eq!(out[176], 4.0);
        assert_eq!(info.missing, 76);
        assert_eq!(r.counters().overruns.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn history_overflow_of_needed_samples_is_an_overrun() {
        let cfg = RingConfig { handoff_samples: 1000, history_samples: 100, tolerance_ns: 2 * MS };
        let (mut p, mut r) = AudioRing::new(&cfg);
        r.protect_from(samples_to_ns(50));
        p.push(Some(0), &[1.0; 200]).unwrap();
        r.drain();
        // 100 oldest dropped, 50 of them at or after the protected time.
        assert_eq!(r.counters().overrun_samples.load(Ordering::Relaxed), 50);
        assert_eq!(r.start_time(), Some(samples_to_ns(100)));
    }

    #[test]
    fn release_before_forgets_old_audio() {
        let (mut p, mut r) = AudioRing::new(&RingConfig::default());
        p.push(Some(0), &[1.0; 1600]).unwrap();
        r.release_before(50 * MS);
        assert_eq!(r.start_time(), Some(50 * MS));
        assert_eq!(r.len(), 800);
        r.clear();
        assert!(r.is_empty() && r.end_time().is_none());
    }

    #[test]
    fn contiguous_audio_after_release_keeps_its_time() {
        let (mut p, mut r) = AudioRing::new(&RingConfig::default());
        p.push(Some(0), &[1.0; 160]).unwrap();
        r.release_before(100 * MS); // everything released
        assert_eq!(r.len(), 0);
        p.push(None, &[2.0; 160]).unwrap(); // contiguous: [10, 20) ms
        assert_eq!(r.end_time(), Some(20 * MS));
        let mut out = vec![0.0; 160];
        assert_eq!(r.read(10 * MS, &mut out, false).missing, 0);
    }

    #[test]
    fn a_flush_makes_the_producer_reanchor() {
        let (mut p, mut r) = AudioRing::new(&RingConfig::default());
        p.push(Some(0), &[1.0; 160]).unwrap();
        r.clear();
        p.push(None, &[2.0; 160]).unwrap(); // continues its clock at 10 ms, with a new anchor
        assert_eq!(r.start_time(), Some(10 * MS));
        assert_eq!(r.len(), 160);
    }

    #[test]
    fn copies_across_the_wrap_of_the_history() {
        let mut d: VecDeque<f32> = VecDeque::with_capacity(8);
        let cap = d.capacity();
        d.extend(std::iter::repeat_n(0.0, cap - 2));
        while d.pop_front().is_some() {}
        d.extend((0..cap).map(|i| i as f32)); // starts near the end of the buffer: wraps
        assert!(!d.as_slices().1.is_empty(), "the deque wraps");
        let mut out = [0.0; 5];
        for start in 0..4 {
            copy_from_deque(&d, start, &mut out);
            assert_eq!(out, [0.0, 1.0, 2.0, 3.0, 4.0].map(|v| v + start as f32));
        }
    }

    #[test]
    fn first_block_needs_a_timestamp() {
        let (mut p, _r) = AudioRing::new(&RingConfig::default());
        assert!(matches!(p.push(None, &[0.0; 4]), Err(Error::MissingTimestamp { .. })));
    }

    #[test]
    fn producer_and_consumer_on_two_threads() {
        let (mut p, mut r) = AudioRing::new(&RingConfig::default());
        let t = std::thread::spawn(move || {
            for k in 0..200u64 {
                let block: Vec<f32> = (0..160).map(|i| (k * 160 + i) as f32).collect();
                while p.push(Some(k * 10 * MS), &block).unwrap() == 0 {
                    std::thread::yield_now();
                }
            }
        });
        t.join().unwrap();
        let mut out = vec![0.0; 32000];
        let info = r.read(0, &mut out, true);
        assert_eq!(info.missing, 0);
        assert!(out.iter().enumerate().all(|(i, &v)| v == i as f32));
    }
}
