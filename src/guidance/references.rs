//! The streaming reference bank. STSA picks 5 reference frames from the whole video by lip openness
//! (min, 25 %, 50 %, 75 %, max); live there is no whole video, so the bank collects candidates during an
//! enrolment period, then picks those five quantiles the way the original does and stays fixed. Anything
//! derived from the references can be cached against [`ReferenceBank::generation`], which changes only
//! when the references do: after [`ReferenceBank::reset`], or when the face changed (another person, a
//! big move, new lighting) for long enough.

use crate::face::landmarks::LIP_CENTRE;

/// One reference: what the renderers need from a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub pts: u64,
    /// STSA's lip openness: distance of landmarks 0 and 17 in normalised frame coordinates.
    pub openness: f32,
    /// The 128x128 RGB face crop.
    pub crop: Vec<u8>,
    /// The full-face sketch heatmap (128x128).
    pub heatmap: Vec<f32>,
    /// The 468 landmarks in the crop's pixels.
    pub landmarks: Vec<[f32; 2]>,
}

/// What a frame contributes to the bank, built only for frames the bank keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub crop: Vec<u8>,
    pub heatmap: Vec<f32>,
    pub landmarks: Vec<[f32; 2]>,
}

/// Enrolment and refresh settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BankConfig {
    /// How long to collect candidates (ns of stream time).
    pub enrolment: u64,
    /// Relative change of the face size or brightness that counts as "the face changed".
    pub change_threshold: f32,
    /// How long the change must last before the bank re-enrols (ns).
    pub change_hold: u64,
}

impl Default for BankConfig {
    fn default() -> Self {
        BankConfig { enrolment: 3_000_000_000, change_threshold: 0.35, change_hold: 2_000_000_000 }
    }
}

/// What a frame looks like, to notice a changed face or lighting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Appearance {
    /// Face width in pixels.
    pub face_size: f32,
    /// Mean luma of the face crop (0..255).
    pub brightness: f32,
}

enum State {
    Enrolling { since: Option<u64>, candidates: Vec<Reference>, looks: Vec<Appearance> },
    Fixed { refs: Vec<Reference>, look: Appearance, changed_since: Option<u64> },
}

pub struct ReferenceBank {
    config: BankConfig,
    state: State,
    generation: u64,
}

/// STSA's lip openness of 468 landmarks in pixels of a `w` x `h` frame.
pub fn lip_openness(landmarks: &[[f32; 3]], w: usize, h: usize) -> f32 {
    let (a, b) = (landmarks[LIP_CENTRE.0], landmarks[LIP_CENTRE.1]);
    ((a[0] - b[0]) / w as f32).hypot((a[1] - b[1]) / h as f32)
}

/// The original's choice: sort by openness (stable), take `sorted[int(linspace(0, n-1, k)[i])]` with
/// torch's float32 linspace, truncated.
pub fn quantile_indices(openness: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..openness.len()).collect();
    order.sort_by(|&a, &b| openness[a].total_cmp(&openness[b]));
    let n = openness.len();
    // torch.linspace in float32: the first half counts up from the start, the second down from the end.
    let end = (n - 1) as f32;
    let step = if k > 1 { end / (k - 1) as f32 } else { 0.0 };
    (0..k)
        .map(|i| {
            let pos = if i < k / 2 { step * i as f32 } else { end - step * (k - 1 - i) as f32 };
            order[(pos.max(0.0) as usize).min(n - 1)]
        })
        .collect()
}

impl ReferenceBank {
    pub const COUNT: usize = 5;

    pub fn new(config: BankConfig) -> Self {
        ReferenceBank {
            config,
            state: State::Enrolling { since: None, candidates: Vec::new(), looks: Vec::new() },
            generation: 0,
        }
    }

    /// The five references once enrolment is over.
    pub fn references(&self) -> Option<&[Reference]> {
        match &self.state {
            State::Fixed { refs, .. } => Some(refs),
            State::Enrolling { .. } => None,
        }
    }

    /// While enrolling: how many candidates there are so far and the five quantile picks among them (a
    /// renderer can start with these before the references are fixed; frames repeat while there are
    /// fewer than five). `None` once fixed, or before any frame.
    pub fn provisional(&self) -> Option<(usize, Vec<&Reference>)> {
        match &self.state {
            State::Enrolling { candidates, .. } if !candidates.is_empty() => {
                let open: Vec<f32> = candidates.iter().map(|c| c.openness).collect();
                let picks = quantile_indices(&open, Self::COUNT).into_iter().map(|i| &candidates[i]).collect();
                Some((candidates.len(), picks))
            }
            _ => None,
        }
    }

    /// Changes whenever the references do.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Starts a new enrolment.
    pub fn reset(&mut self) {
        self.state = State::Enrolling { since: None, candidates: Vec::new(), looks: Vec::new() };
        self.generation += 1;
    }

    /// Offers a tracked frame. During enrolment it becomes a candidate (`make` builds its snapshot, only
    /// then); when enrolment ends the five references are chosen. Once fixed, a face that
    /// stays changed for `change_hold` starts a new enrolment. Returns whether the references changed.
    pub fn offer(&mut self, pts: u64, openness: f32, look: Appearance, make: impl FnOnce() -> Snapshot) -> bool {
        match &mut self.state {
            State::Enrolling { since, candidates, looks } => {
                let start = *since.get_or_insert(pts);
                let Snapshot { crop, heatmap, landmarks } = make();
                candidates.push(Reference { pts, openness, crop, heatmap, landmarks });
                looks.push(look);
                if pts.saturating_sub(start) < self.config.enrolment || candidates.len() < Self::COUNT {
                    return false;
                }
                let open: Vec<f32> = candidates.iter().map(|c| c.openness).collect();
                let refs = quantile_indices(&open, Self::COUNT).into_iter().map(|i| candidates[i].clone()).collect();
                let n = looks.len() as f32;
                let look = Appearance {
                    face_size: looks.iter().map(|l| l.face_size).sum::<f32>() / n,
                    brightness: looks.iter().map(|l| l.brightness).sum::<f32>() / n,
                };
                self.state = State::Fixed { refs, look, changed_since: None };
                self.generation += 1;
                true
            }
            State::Fixed { look: base, changed_since, .. } => {
                let rel = |a: f32, b: f32| (a - b).abs() / b.abs().max(1e-3);
                let changed = rel(look.face_size, base.face_size) > self.config.change_threshold
                    || rel(look.brightness, base.brightness) > self.config.change_threshold;
                if !changed {
                    *changed_since = None;
                    return false;
                }
                let since = *changed_since.get_or_insert(pts);
                if pts.saturating_sub(since) >= self.config.change_hold {
                    self.reset();
                    return true;
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const FRAME: u64 = 40_000_000;
    const LOOK: Appearance = Appearance { face_size: 100.0, brightness: 120.0 };

    #[test]
    fn quantiles_follow_the_original() {
        // linspace(0, 9, 5) = [0, 2.25, 4.5, 6.75, 9] -> sorted positions 0, 2, 4, 6, 9.
        let open = [0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0];
        let idx = quantile_indices(&open, 5);
        let picked: Vec<f32> = idx.iter().map(|&i| open[i]).collect();
        assert_eq!(picked, [0.0, 0.2, 0.4, 0.6, 0.9]);
    }

    #[test]
    fn enrols_then_stays_fixed() {
        let mut bank = ReferenceBank::new(BankConfig { enrolment: S, ..Default::default() });
        let mut made = 0;
        for k in 0..25u64 {
            let changed = bank.offer(k * FRAME, (k % 10) as f32 / 10.0, LOOK, || {
                made += 1;
                Snapshot { crop: vec![k as u8], ..Default::default() }
            });
            assert!(!changed && bank.references().is_none(), "still enrolling at frame {k}");
        }
        assert!(bank.offer(25 * FRAME, 0.95, LOOK, || Snapshot { crop: vec![25], ..Default::default() }));
        let refs = bank.references().expect("fixed after one second");
        let open: Vec<f32> = refs.iter().map(|r| r.openness).collect();
        assert_eq!(open.first(), Some(&0.0));
        assert_eq!(open.last(), Some(&0.95));
        assert!(open.windows(2).all(|w| w[0] <= w[1]));
        let generation = bank.generation();
        // Fixed: later frames do not change the references, nor build crops.
        for k in 26..100u64 {
            assert!(!bank.offer(k * FRAME, 0.5, LOOK, || unreachable!("no crop once fixed")));
        }
        assert_eq!(bank.generation(), generation);
        assert_eq!(made, 25);
    }

    #[test]
    fn a_lasting_change_of_face_re_enrols_and_reset_does_at_once() {
        let config = BankConfig { enrolment: S, change_threshold: 0.3, change_hold: S };
        let mut bank = ReferenceBank::new(config);
        for k in 0..30u64 {
            bank.offer(k * FRAME, k as f32, LOOK, Snapshot::default);
        }
        assert!(bank.references().is_some());
        let other = Appearance { face_size: 200.0, brightness: 120.0 };
        // A short change (half a second) is ignored.
        for k in 30..42u64 {
            assert!(!bank.offer(k * FRAME, 1.0, other, Snapshot::default));
        }
        bank.offer(42 * FRAME, 1.0, LOOK, Snapshot::default);
        assert!(bank.references().is_some());
        // A lasting one (over a second) re-enrols.
        let mut re_enrolled = false;
        for k in 43..80u64 {
            re_enrolled |= bank.offer(k * FRAME, 1.0, other, Snapshot::default);
            if re_enrolled {
                break;
            }
        }
        assert!(re_enrolled && bank.references().is_none());
        let g = bank.generation();
        bank.reset();
        assert_eq!(bank.generation(), g + 1);
    }
}
