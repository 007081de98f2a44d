//! Blinks for a face that does not blink by itself (a photo as an avatar): the upper eyelids drawn down
//! over the eyes at a person's rate, by the same piecewise-affine warp as the mouth.
//!
//! Each eye's mesh: the lid margins (upper and lower), the crease above, a row under the eye and a ring
//! around it that stays put. A blink moves the upper margin down to the lower one, the crease part of the
//! way (the lid's skin stretches over the eye, its lashes with it), the lower margin up a little.
//! [`Blinker`] says when: one blink every 2 to 6 s (15 a minute on average, sometimes two in a row),
//! each closing in 80 ms, shut for 40 ms and opening in 120 ms.

use super::smoothstep;
use super::warp::{delaunay, warp};
use crate::face::Face;
use crate::frame::{Patch, VideoFrame};

type P = [f32; 2];

/// One eye's landmarks: the upper lid margin and the lower one (outer corner to inner, pairs that meet
/// when the eye closes), the corners, the crease above the lid, the row under the eye.
struct EyeIds {
    upper: [u16; 7],
    lower: [u16; 7],
    corners: [u16; 2],
    crease: [u16; 7],
    below: [u16; 9],
}

const EYES: [EyeIds; 2] = [
    EyeIds {
        upper: [246, 161, 160, 159, 158, 157, 173],
        lower: [7, 163, 144, 145, 153, 154, 155],
        corners: [33, 133],
        crease: [247, 30, 29, 27, 28, 56, 190],
        below: [130, 25, 110, 24, 23, 22, 26, 112, 243],
    },
    EyeIds {
        upper: [466, 388, 387, 386, 385, 384, 398],
        lower: [249, 390, 373, 374, 380, 381, 382],
        corners: [263, 362],
        crease: [467, 260, 259, 257, 258, 286, 414],
        below: [359, 255, 339, 254, 253, 252, 256, 341, 463],
    },
];

/// Fixed points on an ellipse around each eye: how many, and its radii in eye widths.
const RING: usize = 12;
const RING_RADII: P = [0.95, 0.75];
/// At a full blink: how far the upper margin goes towards the lower one, the lower one towards it, and
/// the crease towards where the margin was.
const UPPER_CLOSE: f32 = 1.0 - LOWER_RISE;
const LOWER_RISE: f32 = 0.12;
const CREASE_FOLLOW: f32 = 0.6;

/// What moves how in a blink.
#[derive(Clone, Copy)]
enum Role {
    /// Upper margin point `i` (its partner: lower point `i`).
    Upper(usize),
    Lower(usize),
    Crease(usize),
    Fixed,
}

/// One vertex of an eye's mesh: a landmark, or a point of the fixed ring (angle).
#[derive(Clone, Copy)]
enum Vertex {
    Landmark(u16, Role),
    Ring(f32),
}

/// One eye's mesh, triangulated once on the first face it is built from.
struct EyeMesh {
    vertices: Vec<Vertex>,
    triangles: Vec<[u32; 3]>,
}

/// The two eyes' meshes.
pub struct EyeRig {
    eyes: Vec<EyeMesh>,
}

impl EyeRig {
    pub fn new(landmarks: &[[f32; 3]]) -> EyeRig {
        let eyes = EYES
            .iter()
            .map(|ids| {
                let mut vertices: Vec<Vertex> = Vec::new();
                vertices.extend(ids.upper.iter().enumerate().map(|(i, &id)| Vertex::Landmark(id, Role::Upper(i))));
                vertices.extend(ids.lower.iter().enumerate().map(|(i, &id)| Vertex::Landmark(id, Role::Lower(i))));
                vertices.extend(ids.crease.iter().enumerate().map(|(i, &id)| Vertex::Landmark(id, Role::Crease(i))));
                vertices.extend(ids.corners.iter().chain(&ids.below).map(|&id| Vertex::Landmark(id, Role::Fixed)));
                vertices.extend((0..RING).map(|k| Vertex::Ring(k as f32 / RING as f32 * std::f32::consts::TAU)));
                let layout = positions(&vertices, ids, landmarks, 0.0);
                let triangles = delaunay(&layout);
                EyeMesh { vertices, triangles }
            })
            .collect();
        EyeRig { eyes }
    }

    /// Both eyes of `frame` closed by `amount` (0 open, 1 shut) as an RGBA patch; `None` when they are
    /// open or off the frame.
    pub fn blink(&self, frame: &VideoFrame, face: &Face, amount: f32) -> Option<Patch> {
        if amount <= 0.0 {
            return None;
        }
        let landmarks = face.raw_landmarks();
        let mut patch: Option<Patch> = None;
        for (mesh, ids) in self.eyes.iter().zip(&EYES) {
            let source = positions(&mesh.vertices, ids, landmarks, 0.0);
            let target = positions(&mesh.vertices, ids, landmarks, amount);
            let Some(eye) = warp(frame, &source, &target, &mesh.triangles, None) else { continue };
            patch = Some(match patch {
                Some(p) => p.under(&eye),
                None => eye,
            });
        }
        patch
    }
}

/// Where an eye's vertices are for `landmarks` with the lids closed by `amount`.
fn positions(vertices: &[Vertex], ids: &EyeIds, landmarks: &[[f32; 3]], amount: f32) -> Vec<P> {
    let at = |id: u16| [landmarks[id as usize][0], landmarks[id as usize][1]];
    let (a, b) = (at(ids.corners[0]), at(ids.corners[1]));
    let centre = [(a[0] + b[0]) * 0.5, (a[1] + b[1]) * 0.5];
    let width = (b[0] - a[0]).hypot(b[1] - a[1]).max(1.0);
    // The eye's own axes: along the corners, and across.
    let ex = [(b[0] - a[0]) / width, (b[1] - a[1]) / width];
    let ey = [-ex[1], ex[0]];
    // The upper margin's way down to the lower one, point by point.
    let gap = |i: usize| {
        let (u, l) = (at(ids.upper[i]), at(ids.lower[i]));
        [l[0] - u[0], l[1] - u[1]]
    };
    let moved = |p: P, d: P, k: f32| [p[0] + d[0] * k * amount, p[1] + d[1] * k * amount];
    vertices
        .iter()
        .map(|v| match *v {
            Vertex::Landmark(id, Role::Upper(i)) => moved(at(id), gap(i), UPPER_CLOSE),
            Vertex::Landmark(id, Role::Lower(i)) => moved(at(id), gap(i), -LOWER_RISE),
            Vertex::Landmark(id, Role::Crease(i)) => moved(at(id), gap(i), CREASE_FOLLOW),
            Vertex::Landmark(id, Role::Fixed) => at(id),
            Vertex::Ring(angle) => {
                let (c, s) = (angle.cos() * RING_RADII[0] * width, angle.sin() * RING_RADII[1] * width);
                [centre[0] + ex[0] * c + ey[0] * s, centre[1] + ex[1] * c + ey[1] * s]
            }
        })
        .collect()
}

/// When the eyes blink: a deterministic schedule over the stream's time.
#[derive(Clone, Debug)]
pub struct Blinker {
    /// xorshift64 state.
    state: u64,
    /// Start of the next (or current) blink, and of the one after a double blink, in ns.
    next: Option<u64>,
    second: Option<u64>,
    /// The last time asked about.
    last: Option<u64>,
}

const MS: u64 = 1_000_000;
/// A blink: closing, shut, opening.
const CLOSING: u64 = 80 * MS;
const SHUT: u64 = 40 * MS;
const OPENING: u64 = 120 * MS;
const BLINK: u64 = CLOSING + SHUT + OPENING;
/// Time between blinks: uniform over this range (ns); and how often a second blink follows at once.
const INTERVAL: (u64, u64) = (2_000 * MS, 6_000 * MS);
const DOUBLE: f32 = 0.1;
const DOUBLE_GAP: u64 = 350 * MS;

impl Default for Blinker {
    fn default() -> Self {
        Blinker { state: 0x9e37_79b9_7f4a_7c15, next: None, second: None, last: None }
    }
}

impl Blinker {
    fn uniform(&mut self) -> f32 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 40) as f32 / (1u64 << 24) as f32
    }

    fn interval(&mut self) -> u64 {
        INTERVAL.0 + ((INTERVAL.1 - INTERVAL.0) as f32 * self.uniform()) as u64
    }

    /// How closed the eyes are at time `t` (ns; frames in order): 0 open, 1 shut.
    pub fn amount(&mut self, t: u64) -> f32 {
        // Time went back (a new stream): the schedule starts afresh from here.
        if self.last.is_some_and(|last| t < last) {
            (self.next, self.second) = (None, None);
        }
        self.last = Some(t);
        let start = *self.next.get_or_insert(t + INTERVAL.0 / 2);
        if t >= start + BLINK {
            self.next = Some(match self.second.take() {
                Some(s) => s,
                None => {
                    if self.uniform() < DOUBLE {
                        self.second = Some(start + BLINK + DOUBLE_GAP + self.interval());
                        start + DOUBLE_GAP
                    } else {
                        start + self.interval()
                    }
                }
            });
            return self.amount(t);
        }
        if t < start {
            return 0.0;
        }
        let d = t - start;
        if d < CLOSING {
            smoothstep(0.0, CLOSING as f32, d as f32)
        } else if d < CLOSING + SHUT {
            1.0
        } else {
            1.0 - smoothstep(0.0, OPENING as f32, (d - CLOSING - SHUT) as f32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blinks_come_at_a_persons_rate_and_last_as_long() {
        let mut b = Blinker::default();
        // Five minutes at 25 fps: the blinks, and how long each is under way.
        let frames: Vec<f32> = (0..25 * 300).map(|k| b.amount(k * 40 * MS)).collect();
        let mut lengths = Vec::new();
        let mut run = 0;
        for &a in &frames {
            if a > 0.0 {
                run += 1;
            } else if run > 0 {
                lengths.push(run * 40);
                run = 0;
            }
        }
        let per_minute = lengths.len() as f32 / 5.0;
        assert!((10.0..=20.0).contains(&per_minute), "{per_minute} blinks a minute");
        assert!(lengths.iter().all(|&ms| (120..=280).contains(&ms)), "{lengths:?}");
        // Every blink shuts the eyes on at least one frame.
        let shut = frames.windows(7).filter(|w| w[3] >= 0.99 && w[0] == 0.0).count();
        assert!(shut >= lengths.len() * 9 / 10, "{shut} of {} blinks shut on a frame", lengths.len());
        // The same stream, the same blinks.
        let mut again = Blinker::default();
        assert!(frames.iter().enumerate().all(|(k, &a)| again.amount(k as u64 * 40 * MS) == a));
        // A new stream (time back at 0) starts a new schedule: no blink in its first second.
        assert!((0..25).all(|k| again.amount(k * 40 * MS) == 0.0));
    }
}
