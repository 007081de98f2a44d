//! Phonemes and the visemes they show as, and timed phoneme tracks (what a TTS says it spoke, when).
//!
//! Three spellings are understood, tried in this order: ARPAbet as festival and CMUdict write it (`aa`,
//! `AH0`, `hh`, `pau`; stress digits ignored, any case), eSpeak NG's phoneme mnemonics (`a#`, `I`, `u:`,
//! `tS`, `_:`) and IPA (`ʃ`, `aɪ`, `ə`; stress and length marks ignored). Where two read a symbol
//! differently the first wins: eSpeak NG's `N` (/ŋ/) is ARPAbet's /n/ (write `ng`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};

/// What a phoneme looks like on the lips.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Viseme {
    /// A pause: the mouth at rest, closed.
    Silence,
    /// /p b m/: the lips pressed together.
    Bilabial,
    /// /f v/: the lower lip under the upper teeth.
    Labiodental,
    /// /θ ð t d n l/: the tongue tip behind or between the teeth, the jaw a little open.
    Dental,
    /// /s z ʃ ʒ tʃ dʒ/: the teeth nearly together, the lips apart.
    Sibilant,
    /// /k g ŋ h/: the tongue's back raised, the lips relaxed, the jaw a little open.
    Velar,
    /// /r w ɚ/: the lips rounded and narrow.
    Glide,
    /// /a æ ʌ aɪ aʊ/: the jaw dropped.
    Open,
    /// /ə ɜ/: a neutral, half-open mouth.
    Mid,
    /// /i ɪ e ɛ eɪ j/: the lips spread.
    Spread,
    /// /u ʊ o ɔ oʊ ɔɪ/: the lips rounded and pushed forward.
    Round,
}

impl Viseme {
    /// How many visemes there are (the classifier's outputs).
    pub const COUNT: usize = 11;
    pub const ALL: [Viseme; Viseme::COUNT] = [
        Viseme::Silence,
        Viseme::Bilabial,
        Viseme::Labiodental,
        Viseme::Dental,
        Viseme::Sibilant,
        Viseme::Velar,
        Viseme::Glide,
        Viseme::Open,
        Viseme::Mid,
        Viseme::Spread,
        Viseme::Round,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_index(i: usize) -> Option<Viseme> {
        Viseme::ALL.get(i).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Viseme::Silence => "silence",
            Viseme::Bilabial => "p-b-m",
            Viseme::Labiodental => "f-v",
            Viseme::Dental => "th-d-t-n-l",
            Viseme::Sibilant => "s-z-sh-ch",
            Viseme::Velar => "k-g-ng-h",
            Viseme::Glide => "r-w",
            Viseme::Open => "open",
            Viseme::Mid => "mid",
            Viseme::Spread => "spread",
            Viseme::Round => "round",
        }
    }

    /// The viseme of a phoneme in any of the three spellings; `None` for a symbol none of them knows.
    pub fn of_phoneme(phoneme: &str) -> Option<Viseme> {
        let p = phoneme.trim();
        if p.is_empty() {
            return None;
        }
        arpabet(p).or_else(|| espeak(p)).or_else(|| ipa(p))
    }
}

impl fmt::Display for Viseme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn arpabet(p: &str) -> Option<Viseme> {
    let lower = p.trim_end_matches(|c: char| c.is_ascii_digit()).to_ascii_lowercase();
    use Viseme::*;
    Some(match lower.as_str() {
        "pau" | "h#" | "sil" | "sp" | "brth" | "#" => Silence,
        "p" | "b" | "m" | "em" => Bilabial,
        "f" | "v" => Labiodental,
        "th" | "dh" | "t" | "d" | "n" | "en" | "l" | "el" | "dx" | "nx" => Dental,
        "s" | "z" | "sh" | "zh" | "ch" | "jh" => Sibilant,
        "k" | "g" | "ng" | "hh" => Velar,
        "r" | "w" | "er" | "axr" => Glide,
        "aa" | "ae" | "ah" | "aw" | "ay" => Open,
        "ax" | "ix" | "ux" => Mid,
        "iy" | "ih" | "eh" | "ey" | "y" => Spread,
        "uw" | "uh" | "ow" | "oy" | "ao" => Round,
        _ => return None,
    })
}

fn espeak(p: &str) -> Option<Viseme> {
    use Viseme::*;
    // Consonants spelled in full; the symbols that modify them (`#`, `/`, `-`, digits) dropped.
    let stem = p.trim_end_matches(['#', '/', '-', '2', '3', '5', ';']);
    let consonant = match stem {
        "p" | "b" | "m" => Some(Bilabial),
        "f" | "v" => Some(Labiodental),
        "T" | "D" | "t" | "d" | "n" | "l" | "t#" | "d#" | "n-" | "l-" | "@L" => Some(Dental),
        "s" | "z" | "S" | "Z" | "tS" | "dZ" => Some(Sibilant),
        "k" | "g" | "N" | "h" | "x" | "?" => Some(Velar),
        "r" | "w" | "r-" | "3" | "3:" | "@r" => Some(Glide),
        "j" => Some(Spread),
        _ => None,
    };
    if consonant.is_some() {
        return consonant;
    }
    if p.starts_with('_') || p == ":" {
        return Some(Silence);
    }
    // Vowels by their first symbol (diphthongs take their start's shape).
    match p.chars().next()? {
        'a' | 'A' | 'V' => Some(Open),
        '@' => Some(Mid),
        'e' | 'E' | 'i' | 'I' => Some(Spread),
        'o' | 'O' | 'u' | 'U' | '0' => Some(Round),
        _ => None,
    }
}

fn ipa(p: &str) -> Option<Viseme> {
    use Viseme::*;
    let mut chars = p.chars().filter(|c| !matches!(c, 'ˈ' | 'ˌ' | 'ː' | 'ˑ' | '\u{0329}' | '\u{0361}'));
    let first = chars.next()?;
    let second = chars.next();
    Some(match (first, second) {
        ('t', Some('ʃ')) | ('d', Some('ʒ')) => Sibilant,
        ('p' | 'b' | 'm', _) => Bilabial,
        ('f' | 'v' | 'ɱ', _) => Labiodental,
        ('θ' | 'ð' | 't' | 'd' | 'n' | 'l' | 'ɾ' | 'ɫ', _) => Dental,
        ('s' | 'z' | 'ʃ' | 'ʒ', _) => Sibilant,
        ('k' | 'g' | 'ɡ' | 'ŋ' | 'h' | 'x' | 'ʔ', _) => Velar,
        ('ɹ' | 'r' | 'w' | 'ɚ' | 'ɝ' | 'ʍ', _) => Glide,
        ('a' | 'ɑ' | 'æ' | 'ʌ' | 'ɐ', _) => Open,
        ('ə' | 'ɜ' | 'ɨ', _) => Mid,
        ('i' | 'ɪ' | 'e' | 'ɛ' | 'j', _) => Spread,
        ('u' | 'ʊ' | 'o' | 'ɔ' | 'ɒ', _) => Round,
        _ => return None,
    })
}

/// One phoneme of a timed track (times in seconds from the start of the audio).
#[derive(Clone, Debug, PartialEq)]
pub struct TimedPhoneme {
    pub phoneme: String,
    pub viseme: Viseme,
    pub start: f64,
    pub end: f64,
}

/// The phonemes of a stretch of speech with their times, in order and without overlaps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhonemeTrack {
    phonemes: Vec<TimedPhoneme>,
}

impl PhonemeTrack {
    /// A track from phonemes with their times: sorted by start, each ending no later than the next starts.
    /// Fails, naming the phoneme, on a symbol no spelling knows, on a negative or reversed time.
    pub fn new(mut phonemes: Vec<(String, f64, f64)>) -> Result<PhonemeTrack> {
        phonemes.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut out: Vec<TimedPhoneme> = Vec::with_capacity(phonemes.len());
        for (phoneme, start, end) in phonemes {
            if !(start.is_finite() && end.is_finite() && start >= 0.0 && end >= start) {
                return Err(Error::InvalidArgument(format!(
                    "phoneme {phoneme:?}: times {start}..{end} s are not an interval from 0 on"
                )));
            }
            let viseme = Viseme::of_phoneme(&phoneme).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown phoneme {phoneme:?}: use ARPAbet (aa, p, sh, pau), eSpeak NG (a#, p, S, _) or IPA"
                ))
            })?;
            if let Some(prev) = out.last_mut() {
                prev.end = prev.end.min(start);
            }
            out.push(TimedPhoneme { phoneme, viseme, start, end });
        }
        Ok(PhonemeTrack { phonemes: out })
    }

    /// Reads a festival segment file (`utt.save.segs`: a `#` line, then `end-time 100 phone` per line) or
    /// JSON: an array of `{"phoneme": "p", "start": 0.12, "end": 0.2}` (seconds), chosen by the first
    /// character.
    pub fn load(path: &Path) -> Result<PhonemeTrack> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read phonemes from {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
    }

    /// Parses the text of [`PhonemeTrack::load`].
    pub fn parse(text: &str) -> Result<PhonemeTrack> {
        if text.trim_start().starts_with('[') { Self::parse_json(text) } else { Self::parse_segs(text) }
    }

    fn parse_json(text: &str) -> Result<PhonemeTrack> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("not valid JSON: {e}")))?;
        let items = value.as_array().ok_or_else(|| Error::InvalidArgument("expected a JSON array".into()))?;
        let mut phonemes = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field =
                |name: &str| item.get(name).ok_or_else(|| Error::InvalidArgument(format!("entry {i}: no \"{name}\"")));
            let phoneme = field("phoneme")?
                .as_str()
                .ok_or_else(|| Error::InvalidArgument(format!("entry {i}: \"phoneme\" is not a string")))?;
            let time = |name: &str| -> Result<f64> {
                field(name)?
                    .as_f64()
                    .ok_or_else(|| Error::InvalidArgument(format!("entry {i}: \"{name}\" is not a number of seconds")))
            };
            phonemes.push((phoneme.to_string(), time("start")?, time("end")?));
        }
        Self::new(phonemes)
    }

    fn parse_segs(text: &str) -> Result<PhonemeTrack> {
        let mut phonemes = Vec::new();
        let mut start = 0.0;
        let mut body = false;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line == "#" {
                body = true;
                continue;
            }
            if !body || line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let bad =
                || Error::InvalidArgument(format!("line {}: expected `end-seconds number phone`, got {line:?}", n + 1));
            let [end, _, phone] = fields[..] else { return Err(bad()) };
            let end: f64 = end.parse().map_err(|_| bad())?;
            phonemes.push((phone.to_string(), start, end));
            start = end;
        }
        if !body {
            return Err(Error::InvalidArgument(
                "neither a JSON array nor a festival segment file (no `#` line before the segments)".into(),
            ));
        }
        Self::new(phonemes)
    }

    pub fn phonemes(&self) -> &[TimedPhoneme] {
        &self.phonemes
    }

    pub fn is_empty(&self) -> bool {
        self.phonemes.is_empty()
    }

    /// The viseme spoken at `t` seconds (silence outside every phoneme).
    pub fn viseme_at(&self, t: f64) -> Viseme {
        let i = self.phonemes.partition_point(|p| p.end <= t);
        match self.phonemes.get(i) {
            Some(p) if p.start <= t => p.viseme,
            _ => Viseme::Silence,
        }
    }

    /// This track moved by `seconds` (phonemes that would start before 0 are dropped).
    pub fn shifted(&self, seconds: f64) -> PhonemeTrack {
        let phonemes = self
            .phonemes
            .iter()
            .filter(|p| p.start + seconds >= 0.0)
            .map(|p| TimedPhoneme { start: p.start + seconds, end: p.end + seconds, ..p.clone() })
            .collect();
        PhonemeTrack { phonemes }
    }
}

impl FromStr for PhonemeTrack {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_spellings_agree() {
        for (arpa, espeak, ipa, v) in [
            ("p", "p", "p", Viseme::Bilabial),
            ("M", "m", "m", Viseme::Bilabial),
            ("f", "f", "f", Viseme::Labiodental),
            ("dh", "D", "ð", Viseme::Dental),
            ("SH", "S", "ʃ", Viseme::Sibilant),
            ("ch", "tS", "tʃ", Viseme::Sibilant),
            ("ng", "N#", "ŋ", Viseme::Velar),
            ("w", "w", "w", Viseme::Glide),
            ("AA1", "A:", "ɑː", Viseme::Open),
            ("ax", "@", "ə", Viseme::Mid),
            ("IY0", "i:", "iː", Viseme::Spread),
            ("uw", "u:", "uː", Viseme::Round),
            ("ow", "oU", "oʊ", Viseme::Round),
            ("pau", "_:", "ˈ", Viseme::Silence),
        ] {
            assert_eq!(Viseme::of_phoneme(arpa), Some(v), "{arpa}");
            assert_eq!(Viseme::of_phoneme(espeak), Some(v), "{espeak}");
            if ipa != "ˈ" {
                assert_eq!(Viseme::of_phoneme(ipa), Some(v), "{ipa}");
            }
        }
        assert_eq!(Viseme::of_phoneme("qq"), None);
        // ARPAbet is tried first: eSpeak NG's `N` (its /ŋ/) reads as ARPAbet's /n/.
        assert_eq!(Viseme::of_phoneme("N"), Some(Viseme::Dental));
        for (i, v) in Viseme::ALL.iter().enumerate() {
            assert_eq!(v.index(), i);
            assert_eq!(Viseme::from_index(i), Some(*v));
        }
    }

    #[test]
    fn festival_segments_and_json_give_the_same_track() {
        let segs = "EST_File segments\nDataType ascii\n#\n0.1750 100 pau\n0.2200 100 b\n0.3650 100 aa\n";
        let json = r#"[{"phoneme": "pau", "start": 0, "end": 0.175}, {"phoneme": "b", "start": 0.175, "end": 0.22},
            {"phoneme": "AA1", "start": 0.22, "end": 0.365}]"#;
        let (a, b) = (PhonemeTrack::parse(segs).unwrap(), PhonemeTrack::parse(json).unwrap());
        let visemes = |t: &PhonemeTrack| t.phonemes().iter().map(|p| (p.viseme, p.start, p.end)).collect::<Vec<_>>();
        assert_eq!(visemes(&a), visemes(&b));
        assert_eq!(a.viseme_at(0.2), Viseme::Bilabial);
        assert_eq!(a.viseme_at(0.3), Viseme::Open);
        assert_eq!(a.viseme_at(1.0), Viseme::Silence);
        assert_eq!(a.shifted(0.1).viseme_at(0.3), Viseme::Bilabial);
    }

    #[test]
    fn bad_tracks_say_what_is_wrong() {
        let err = |s: &str| PhonemeTrack::parse(s).unwrap_err().to_string();
        assert!(err(r#"[{"phoneme": "qq", "start": 0, "end": 1}]"#).contains("unknown phoneme \"qq\""));
        assert!(err(r#"[{"phoneme": "p", "start": 1, "end": 0.5}]"#).contains("not an interval"));
        assert!(err(r#"[{"phoneme": "p", "end": 0.5}]"#).contains("no \"start\""));
        assert!(err("0.1 100 p\n").contains("no `#` line"));
        assert!(err("#\n0.1 p\n").contains("line 2"));
    }
}
