//! Speech segments and their playback, for callers that must know when what they sent is seen and heard
//! (a voice agent marks its turn spoken, or interrupted, at a position).
//!
//! A segment is a run of audio without a gap of [`SEGMENT_GAP`] or more in its timestamps: a TTS's
//! utterance sent as a burst, the speech between two pauses of a source that sends nothing in silence.
//! A source that sends its silences (a microphone) forms one segment until it stops. A segment starts
//! playing when the first frame it overlaps leaves the engine, and finishes when the frame that shows its
//! end does and no more audio follows it within the gap; an audio flush interrupts the one playing.

use std::collections::VecDeque;
use std::fmt;

/// The shortest break in the audio that ends a segment.
pub const SEGMENT_GAP: u64 = 100_000_000;

/// What [`Playback`] reports, in order, as frames leave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaybackEvent {
    /// Segment `segment` began: its first sample is at running time `running_time`.
    Started { segment: u64, running_time: u64 },
    /// Segment `segment` ended after `position` ns of it were shown: all of it, or, `interrupted`, as far
    /// as the frames had got when its audio was flushed.
    Finished { segment: u64, position: u64, interrupted: bool },
}

/// `started SEGMENT RUNNING_MS` or `finished SEGMENT POSITION_MS complete|interrupted`: how `lipsync live`
/// prints it and tells its control port's client.
impl fmt::Display for PlaybackEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PlaybackEvent::Started { segment, running_time } => {
                write!(f, "started {segment} {}", running_time / 1_000_000)
            }
            PlaybackEvent::Finished { segment, position, interrupted } => write!(
                f,
                "finished {segment} {} {}",
                position / 1_000_000,
                if interrupted { "interrupted" } else { "complete" }
            ),
        }
    }
}

#[derive(Debug)]
struct Segment {
    id: u64,
    start: u64,
    end: u64,
    started: bool,
}

/// The segments of an engine's audio and how far the output has shown them.
#[derive(Debug, Default)]
pub struct Playback {
    /// Segments not yet finished, oldest first.
    segments: VecDeque<Segment>,
    next_id: u64,
    /// Audio up to this running time has been assigned to segments.
    seen_to: u64,
    /// The end of the last frame that left.
    shown_to: Option<u64>,
}

impl Playback {
    /// Takes in the runs of audio received (running times of their first sample and just after their
    /// last, oldest first; those seen before may come again, longer).
    pub fn observe(&mut self, runs: impl Iterator<Item = (u64, u64)>) {
        for (start, end) in runs {
            if end <= self.seen_to {
                continue;
            }
            let start = start.max(self.seen_to);
            match self.segments.back_mut() {
                Some(s) if start < s.end + SEGMENT_GAP => s.end = s.end.max(end),
                _ => {
                    self.segments.push_back(Segment { id: self.next_id, start, end, started: false });
                    self.next_id += 1;
                }
            }
            self.seen_to = end;
        }
    }

    /// A frame covering `[pts, end)` left the engine. Its audio was known up to `known_to` (the end of
    /// its window, or for ever once the audio has ended): a segment ending at least [`SEGMENT_GAP`]
    /// before that, with nothing after it, is over.
    pub fn shown(&mut self, pts: u64, end: u64, known_to: u64, events: &mut Vec<PlaybackEvent>) {
        self.shown_to = Some(self.shown_to.map_or(end, |t| t.max(end)));
        for s in self.segments.iter_mut().filter(|s| !s.started && s.start < end) {
            s.started = true;
            events.push(PlaybackEvent::Started { segment: s.id, running_time: s.start });
        }
        while let Some(s) = self.segments.front() {
            let followed = self.segments.len() > 1 || known_to >= s.end.saturating_add(SEGMENT_GAP);
            if !(s.started && s.end <= end.max(pts) && followed) {
                break;
            }
            events.push(PlaybackEvent::Finished { segment: s.id, position: s.end - s.start, interrupted: false });
            self.segments.pop_front();
        }
    }

    /// The audio was flushed: the segment playing is interrupted where the output had got to (`shown`,
    /// the time on screen, when the caller knows it; else the end of the last frame out); those not yet
    /// begun are forgotten.
    pub fn flush(&mut self, shown: Option<u64>, events: &mut Vec<PlaybackEvent>) {
        if let Some(s) = self.segments.iter().find(|s| s.started) {
            let position = shown.or(self.shown_to).unwrap_or(s.start).clamp(s.start, s.end) - s.start;
            events.push(PlaybackEvent::Finished { segment: s.id, position, interrupted: true });
        }
        self.segments.clear();
        self.seen_to = 0;
    }

    /// The video was flushed: the output starts again.
    pub fn flush_video(&mut self) {
        self.shown_to = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// Shows frames of 40 ms from `from` to `to` (ms), their audio known 95 ms ahead.
    fn show(p: &mut Playback, from: u64, to: u64) -> Vec<PlaybackEvent> {
        let mut events = Vec::new();
        for t in (from..to).step_by(40) {
            p.shown(t * MS, (t + 40) * MS, (t + 95) * MS, &mut events);
        }
        events
    }

    #[test]
    fn a_burst_starts_when_shown_and_finishes_after_its_end() {
        let mut p = Playback::default();
        // One utterance sent in three pieces, the last arriving later, then another after a pause.
        p.observe([(1000 * MS, 1500 * MS)].into_iter());
        p.observe([(1000 * MS, 2000 * MS)].into_iter());
        assert!(show(&mut p, 0, 1000).is_empty());
        assert_eq!(show(&mut p, 1000, 1040), [PlaybackEvent::Started { segment: 0, running_time: 1000 * MS }]);
        assert!(show(&mut p, 1040, 2000).is_empty(), "more may follow within the gap");
        p.observe([(1000 * MS, 2000 * MS), (2050 * MS, 2400 * MS)].into_iter());
        assert!(show(&mut p, 2000, 2400).is_empty(), "50 ms is no break");
        assert_eq!(
            show(&mut p, 2400, 2480),
            [PlaybackEvent::Finished { segment: 0, position: 1400 * MS, interrupted: false }]
        );
        p.observe([(3000 * MS, 3200 * MS)].into_iter());
        let events = show(&mut p, 2480, 3400);
        assert_eq!(
            events,
            [
                PlaybackEvent::Started { segment: 1, running_time: 3000 * MS },
                PlaybackEvent::Finished { segment: 1, position: 200 * MS, interrupted: false }
            ]
        );
    }

    #[test]
    fn a_flush_interrupts_the_segment_playing_where_the_output_got_to() {
        let mut p = Playback::default();
        p.observe([(0, 5000 * MS), (6000 * MS, 7000 * MS)].into_iter());
        show(&mut p, 0, 1200);
        let mut events = Vec::new();
        p.flush(None, &mut events);
        assert_eq!(events, [PlaybackEvent::Finished { segment: 0, position: 1200 * MS, interrupted: true }]);
        // New speech after the flush is a new segment; the one never begun is not reported.
        p.observe([(1300 * MS, 1500 * MS)].into_iter());
        let events = show(&mut p, 1200, 1800);
        assert_eq!(events[0], PlaybackEvent::Started { segment: 2, running_time: 1300 * MS });
        assert!(matches!(events[1], PlaybackEvent::Finished { segment: 2, interrupted: false, .. }));
    }
}
