//! Idle head motion for a face that holds still by itself (a photo as an avatar): the head turns and
//! shifts a little, slowly, as a person's does while listening.
//!
//! The face's silhouette and a few points inside it move rigidly (turned about a point under the chin,
//! then shifted); a ring well outside the head stays put, so the hair, the ears and the neck stretch
//! between the two and the background does not move. The rendered frame (mouth and eyes drawn) is
//! warped by that mesh. [`Swayer`] says how far: sums of slow sines whose periods share no common
//! multiple within an hour, so the motion never visibly repeats.

use super::warp::{delaunay, warp};
use crate::face::Face;
use crate::frame::{Patch, VideoFrame};

type P = [f32; 2];

/// The silhouette, around the face.
const SILHOUETTE: [u16; 36] = [
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150,
    136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
];
/// Inside the face: the nose tip, the eyes' and the mouth's corners.
const INSIDE: [u16; 7] = [1, 33, 133, 263, 362, 61, 291];
/// Forehead top, chin, and the face's sides.
const TOP: usize = 10;
const CHIN: usize = 152;
const SIDES: [usize; 2] = [234, 454];

/// Fixed points on an ellipse around the face: how many, and its radii in the face's half width and
/// half height.
const RING: usize = 16;
const RING_RADII: P = [1.5, 1.35];
/// The pivot: under the chin by this share of the face's height.
const PIVOT_BELOW_CHIN: f32 = 0.35;

/// How far the head is from where the photo has it: a turn (radians, in the image plane) about the
/// pivot and a shift (in face widths).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pose {
    pub turn: f32,
    pub shift: P,
}

/// The head's mesh, triangulated once on the first face.
pub struct HeadRig {
    triangles: Vec<[u32; 3]>,
}

impl HeadRig {
    pub fn new(landmarks: &[[f32; 3]]) -> HeadRig {
        HeadRig { triangles: delaunay(&positions(landmarks, Pose::default())) }
    }

    /// `frame` (with whatever was drawn on it) with the head of `face` moved to `pose`, as a patch;
    /// `None` when the pose is still or the head is off the frame.
    pub fn sway(&self, frame: &VideoFrame, face: &Face, pose: Pose) -> Option<Patch> {
        if pose == Pose::default() {
            return None;
        }
        let landmarks = face.raw_landmarks();
        warp(frame, &positions(landmarks, Pose::default()), &positions(landmarks, pose), &self.triangles, None)
    }
}

/// The mesh's vertices for `landmarks` with the head at `pose` (the ring fixed).
fn positions(landmarks: &[[f32; 3]], pose: Pose) -> Vec<P> {
    let at = |id: usize| [landmarks[id][0], landmarks[id][1]];
    let (top, chin) = (at(TOP), at(CHIN));
    let (left, right) = (at(SIDES[0]), at(SIDES[1]));
    let width = (right[0] - left[0]).hypot(right[1] - left[1]).max(1.0);
    let height = (chin[0] - top[0]).hypot(chin[1] - top[1]).max(1.0);
    // The face's axes: down (top to chin) and across.
    let down = [(chin[0] - top[0]) / height, (chin[1] - top[1]) / height];
    let across = [-down[1], down[0]];
    let centre = [(top[0] + chin[0]) * 0.5, (top[1] + chin[1]) * 0.5];
    let pivot = [chin[0] + down[0] * PIVOT_BELOW_CHIN * height, chin[1] + down[1] * PIVOT_BELOW_CHIN * height];
    let (c, s) = (pose.turn.cos(), pose.turn.sin());
    let moved = |p: P| {
        let (dx, dy) = (p[0] - pivot[0], p[1] - pivot[1]);
        [pivot[0] + c * dx - s * dy + pose.shift[0] * width, pivot[1] + s * dx + c * dy + pose.shift[1] * width]
    };
    let mut points: Vec<P> = SILHOUETTE.iter().chain(&INSIDE).map(|&id| moved(at(id as usize))).collect();
    points.extend((0..RING).map(|k| {
        let angle = k as f32 / RING as f32 * std::f32::consts::TAU;
        let (a, b) = (angle.cos() * RING_RADII[0] * width * 0.5, angle.sin() * RING_RADII[1] * height * 0.5);
        [centre[0] + across[0] * a + down[0] * b, centre[1] + across[1] * a + down[1] * b]
    }));
    points
}

/// Largest turn (radians) and shift (face widths, across and down).
const TURN: f32 = 0.6 * std::f32::consts::PI / 180.0;
const SHIFT: P = [0.006, 0.004];
/// Each motion: two sines, (weight, period in seconds, phase); the weights add up to 1.
const TURNS: [(f32, f32, f32); 2] = [(0.6, 7.3, 0.0), (0.4, 12.7, 1.9)];
const SHIFTS_ACROSS: [(f32, f32, f32); 2] = [(0.6, 9.1, 0.7), (0.4, 15.7, 2.6)];
const SHIFTS_DOWN: [(f32, f32, f32); 2] = [(0.7, 5.9, 1.3), (0.3, 11.3, 0.4)];
/// The sway grows in over this long (s) from a stream's start, so the first frame is the photo as it is.
const FADE_IN: f32 = 2.0;

/// The idle motion over a stream's time.
#[derive(Clone, Debug, Default)]
pub struct Swayer {
    /// The stream's first time and the last time asked about (ns).
    start: Option<u64>,
    last: Option<u64>,
}

impl Swayer {
    /// The head's pose at time `t` (ns; frames in order).
    pub fn pose(&mut self, t: u64) -> Pose {
        // Time went back (a new stream): the motion starts afresh from here.
        if self.last.is_some_and(|last| t < last) {
            self.start = None;
        }
        self.last = Some(t);
        let secs = t.saturating_sub(*self.start.get_or_insert(t)) as f32 * 1e-9;
        let grown = super::smoothstep(0.0, FADE_IN, secs);
        let wave = |parts: &[(f32, f32, f32)]| -> f32 {
            grown
                * parts
                    .iter()
                    .map(|&(w, period, phase)| w * (std::f32::consts::TAU * secs / period + phase).sin())
                    .sum::<f32>()
        };
        Pose { turn: TURN * wave(&TURNS), shift: [SHIFT[0] * wave(&SHIFTS_ACROSS), SHIFT[1] * wave(&SHIFTS_DOWN)] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_sways_slowly_within_bounds_from_the_photos_pose() {
        let mut s = Swayer::default();
        let poses: Vec<Pose> = (0..25 * 120).map(|k| s.pose(1_000_000_000 + k * 40_000_000)).collect();
        assert_eq!(poses[0], Pose::default(), "the first frame is the photo as it is");
        let (mut turn, mut shift) = (0.0f32, 0.0f32);
        for w in poses.windows(2) {
            turn = turn.max(w[1].turn.abs());
            shift = shift.max(w[1].shift[0].abs().max(w[1].shift[1].abs()));
            // Slow: a frame moves the head by at most 4 % of its largest turn or shift.
            assert!((w[1].turn - w[0].turn).abs() <= TURN * 0.04, "{w:?}");
            assert!((w[1].shift[0] - w[0].shift[0]).abs() <= SHIFT[0] * 0.04, "{w:?}");
        }
        assert!(turn <= TURN && turn > 0.8 * TURN, "largest turn {turn}");
        assert!(shift <= SHIFT[0] && shift > 0.5 * SHIFT[0], "largest shift {shift}");
        // A new stream starts from the photo's pose again.
        assert_eq!(s.pose(0), Pose::default());
    }
}
