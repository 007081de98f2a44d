//! A timed phoneme track shared between whoever knows what is said (a TTS, a file given to `dub`, the
//! element's phoneme events) and the renderer that shapes the mouth, on another thread.
//!
//! Times are the frames' timeline (running time in the element, the audio's time from 0 in `dub`). Where
//! the feed has phonemes around a frame, they decide its visemes; elsewhere the renderer hears them from
//! the audio.

use std::sync::Arc;

use parking_lot::Mutex;

use super::phonemes::{PhonemeTrack, Viseme};
use crate::error::{Error, Result};

/// How long a gap between phonemes is still read as a pause in the track, not as a stretch it does not
/// cover (ns).
const LONGEST_PAUSE: u64 = 1_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    viseme: Viseme,
    start: u64,
    end: u64,
}

/// A cloneable handle on one shared phoneme timeline.
#[derive(Clone, Debug, Default)]
pub struct PhonemeFeed {
    entries: Arc<Mutex<Vec<Entry>>>,
}

impl PartialEq for PhonemeFeed {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.entries, &other.entries)
    }
}

impl Eq for PhonemeFeed {}

impl PhonemeFeed {
    pub fn new() -> Self {
        Self::default()
    }

    /// A feed holding `track`, its time 0 at `offset_ns`.
    pub fn from_track(track: &PhonemeTrack, offset_ns: u64) -> Self {
        let feed = Self::new();
        for p in track.phonemes() {
            let ns = |s: f64| offset_ns + (s * 1e9).round() as u64;
            feed.insert(p.viseme, ns(p.start), ns(p.end));
        }
        feed
    }

    /// Adds a phoneme spoken from `start` to `end` (ns). Fails on a phoneme no spelling knows
    /// ([`Viseme::of_phoneme`]) or an end before the start.
    pub fn push(&self, phoneme: &str, start: u64, end: u64) -> Result<()> {
        let viseme = Viseme::of_phoneme(phoneme).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown phoneme {phoneme:?}: use ARPAbet (aa, p, sh, pau), eSpeak NG (a#, p, S, _) or IPA"
            ))
        })?;
        if end < start {
            return Err(Error::InvalidArgument(format!(
                "phoneme {phoneme:?} ends ({end} ns) before it starts ({start} ns)"
            )));
        }
        self.insert(viseme, start, end);
        Ok(())
    }

    fn insert(&self, viseme: Viseme, start: u64, end: u64) {
        let mut entries = self.entries.lock();
        let at = entries.partition_point(|e| e.start <= start);
        // A later phoneme over an earlier one's time wins there: the earlier one is cut short.
        if at > 0 && entries[at - 1].end > start {
            entries[at - 1].end = start;
        }
        entries.insert(at, Entry { viseme, start, end });
    }

    /// The viseme at `t` (ns): `None` where the feed says nothing (before its first phoneme, after its last,
    /// in a gap longer than a pause), silence in a shorter gap.
    pub fn viseme_at(&self, t: u64) -> Option<Viseme> {
        let entries = self.entries.lock();
        let i = entries.partition_point(|e| e.start <= t);
        let current = i.checked_sub(1).map(|i| entries[i])?;
        if t < current.end {
            return Some(current.viseme);
        }
        let next = entries.get(i)?;
        (next.start - current.end <= LONGEST_PAUSE).then_some(Viseme::Silence)
    }

    /// Drops phonemes that ended before `t` (a live feed's past).
    pub fn forget_before(&self, t: u64) {
        self.entries.lock().retain(|e| e.end >= t);
    }

    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    pub fn is_empty(&self) -> bool {
        self.entries.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_covers_its_phonemes_and_short_pauses_only() {
        let feed = PhonemeFeed::new();
        feed.push("m", 1_000, 2_000).unwrap();
        feed.push("aa", 2_000, 3_000).unwrap();
        feed.push("p", 3_500, 4_000).unwrap();
        feed.push("iy", 3_000_000_000, 3_100_000_000).unwrap();
        assert_eq!(feed.viseme_at(500), None);
        assert_eq!(feed.viseme_at(1_500), Some(Viseme::Bilabial));
        assert_eq!(feed.viseme_at(2_000), Some(Viseme::Open));
        assert_eq!(feed.viseme_at(3_200), Some(Viseme::Silence));
        assert_eq!(feed.viseme_at(1_000_000_000), None, "a long gap is not covered");
        assert_eq!(feed.viseme_at(3_050_000_000), Some(Viseme::Spread));
        assert_eq!(feed.viseme_at(4_000_000_000), None);
        assert!(feed.push("qq", 0, 1).is_err() && feed.push("p", 2, 1).is_err());
        feed.forget_before(3_000);
        assert_eq!(feed.viseme_at(1_500), None);
        let other = feed.clone();
        other.clear();
        assert!(feed.is_empty());
    }

    #[test]
    fn a_track_lands_at_its_offset() {
        let track = PhonemeTrack::parse("#\n0.1 100 pau\n0.2 100 b\n").unwrap();
        let feed = PhonemeFeed::from_track(&track, 1_000_000_000);
        assert_eq!(feed.viseme_at(1_150_000_000), Some(Viseme::Bilabial));
    }
}
