//! Mouth shape, the second stage of the classic renderer: where every lower-face landmark should be for a
//! [`MouthPose`], relative to the person's own neutral (closed-mouth) face.
//!
//! A [`Rig`] is built once per neutral face (the reference bank's most closed frame). It holds the warp
//! mesh: the FaceMesh points of the lower face plus a fixed ring just outside it, triangulated (Delaunay)
//! on the neutral with its mouth opened, so the triangles between the inner lips are the mouth interior.
//! Each frame, the neutral is mapped onto the current head by an affine fit on landmarks the jaw does not
//! move (eyes, nose bridge, temples), displaced by the pose in the face's own axes (the jaw drops, the
//! lips part, spread or round) and blended in over the frame's own lower face, so a mouth that already
//! moves in a live video is replaced, not doubled.

use super::articulation::MouthPose;
use super::smoothstep;

/// Upper lip (outer then inner), without the corners.
const UPPER_LIP: [u16; 18] = [185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415];
/// Lower lip (outer then inner), without the corners.
const LOWER_LIP: [u16; 18] = [375, 321, 405, 314, 17, 84, 181, 91, 146, 324, 318, 402, 317, 14, 87, 178, 88, 95];
/// Mouth corners, outer and inner.
const CORNERS: [u16; 4] = [61, 291, 78, 308];
/// Outer lip contour, left corner, along the upper lip, right corner, back along the lower lip.
pub const OUTER_LIP: [u16; 20] =
    [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146];
/// Inner lip contour, left corner, along the upper lip, right corner, back along the lower lip.
pub const INNER_LIP: [u16; 20] =
    [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95];
/// Pairs of upper and lower inner-lip points that meet when the mouth closes.
const INNER_PAIRS: [(u16, u16); 9] =
    [(191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402), (310, 318), (415, 324)];
/// Each inner-lip point (corners excepted) and the outer-lip point across the lip from it.
const INNER_TO_OUTER: [(u16, u16); 18] = [
    (191, 185),
    (80, 40),
    (81, 39),
    (82, 37),
    (13, 0),
    (312, 267),
    (311, 269),
    (310, 270),
    (415, 409),
    (95, 146),
    (88, 91),
    (178, 181),
    (87, 84),
    (14, 17),
    (317, 314),
    (402, 405),
    (318, 321),
    (324, 375),
];
/// How far towards the outer contour the lips' inner edge is sampled from.
const LIP_BAND_PULL: f32 = 0.4;
const PRESS_PULL: f32 = 0.3;
/// The lower face oval, ear to ear under the chin.
const LOWER_OVAL: [u16; 19] =
    [93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323];
/// Landmarks the jaw and lips do not move: eye corners, nose bridge, brows, temples.
const STABLE: [u16; 16] = [33, 133, 362, 263, 168, 6, 197, 195, 10, 151, 9, 8, 127, 356, 70, 300];
const NOSE_TIP: usize = 1;
const EYES: (usize, usize) = (33, 263);

/// How far each part moves at full pose, in interocular distances.
const JAW_MAX: f32 = 0.11;
const UPPER_LIP_MAX: f32 = 0.045;
const LOWER_LIP_MAX: f32 = 0.1;
/// Mouth width change at full spreading and at full rounding (shares of the width).
const SPREAD_MAX: f32 = 0.18;
const ROUND_MAX: f32 = 0.28;
/// Rounding also narrows the opening between the inner lips further (share of the inner width).
const ROUND_INNER: f32 = 0.25;
/// The skin around the lips follows their corners in and out, fading over this many half mouth widths
/// beyond the lips (on an ellipse 0.7 times as tall as it is wide, centred on the mouth): a rounding mouth
/// gathers the cheeks beside it and a spreading one stretches them, instead of the lips sliding over a
/// still face (which also reads as hardly any change of width).
const SPREAD_REACH: f32 = 1.0;
/// How far pressed lips squeeze towards each other, and rounded lips push out (outer contour, face units).
const PRESS_MAX: f32 = 0.03;
const POUT_MAX: f32 = 0.012;
/// How far the lower lip rises under the upper teeth for /f v/ (inner and outer edges), and the upper lip
/// lifts to show them.
const TUCK_INNER: f32 = 0.04;
const TUCK_OUTER: f32 = 0.022;
const TUCK_UPPER: f32 = 0.01;

type P = [f32; 2];

fn sub(a: P, b: P) -> P {
    [a[0] - b[0], a[1] - b[1]]
}
fn midpoint(a: P, b: P) -> P {
    [(a[0] + b[0]) * 0.5, (a[1] + b[1]) * 0.5]
}
fn dot(a: P, b: P) -> f32 {
    a[0] * b[0] + a[1] * b[1]
}
/// A 2x3 affine map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine(pub [[f32; 3]; 2]);

impl Affine {
    pub fn apply(&self, p: P) -> P {
        let m = &self.0;
        [m[0][0] * p[0] + m[0][1] * p[1] + m[0][2], m[1][0] * p[0] + m[1][1] * p[1] + m[1][2]]
    }

    /// Least-squares fit of `from[i] -> to[i]` (f64 normal equations, centred for conditioning).
    pub fn fit(from: &[P], to: &[P]) -> Option<Affine> {
        let n = from.len() as f64;
        let mean = |v: &[P]| {
            let s = v.iter().fold([0.0f64; 2], |a, p| [a[0] + p[0] as f64, a[1] + p[1] as f64]);
            [s[0] / n, s[1] / n]
        };
        let (cf, ct) = (mean(from), mean(to));
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        let mut b = [[0.0f64; 2]; 2]; // b[out][in]
        for (f, t) in from.iter().zip(to) {
            let (x, y) = (f[0] as f64 - cf[0], f[1] as f64 - cf[1]);
            let (u, v) = (t[0] as f64 - ct[0], t[1] as f64 - ct[1]);
            sxx += x * x;
            sxy += x * y;
            syy += y * y;
            b[0][0] += u * x;
            b[0][1] += u * y;
            b[1][0] += v * x;
            b[1][1] += v * y;
        }
        let det = sxx * syy - sxy * sxy;
        if det.abs() < 1e-9 * (sxx * syy).max(1e-30) || !det.is_finite() {
            return None;
        }
        let inv = [[syy / det, -sxy / det], [-sxy / det, sxx / det]];
        let mut m = [[0.0f32; 3]; 2];
        for r in 0..2 {
            let a = b[r][0] * inv[0][0] + b[r][1] * inv[1][0];
            let c = b[r][0] * inv[0][1] + b[r][1] * inv[1][1];
            m[r] = [a as f32, c as f32, (ct[r] - a * cf[0] - c * cf[1]) as f32];
        }
        Some(Affine(m))
    }
}

/// Eye-centred axes of a face: x along the eyes, y down, in interocular distances.
#[derive(Clone, Copy, Debug)]
struct Axes {
    origin: P,
    ex: P,
    ey: P,
    d: f32,
}

impl Axes {
    /// The axes of a face whose outer eye corners (landmarks 33 and 263) are at `l` and `r`.
    fn of(l: P, r: P) -> Axes {
        let v = sub(r, l);
        let d = v[0].hypot(v[1]).max(1e-3);
        let ex = [v[0] / d, v[1] / d];
        Axes { origin: [(l[0] + r[0]) * 0.5, (l[1] + r[1]) * 0.5], ex, ey: [-ex[1], ex[0]], d }
    }
    fn to_face(self, p: P) -> P {
        let q = sub(p, self.origin);
        [dot(q, self.ex) / self.d, dot(q, self.ey) / self.d]
    }
    fn to_pixels(self, f: P) -> P {
        [
            self.origin[0] + (self.ex[0] * f[0] + self.ey[0] * f[1]) * self.d,
            self.origin[1] + (self.ex[1] * f[0] + self.ey[1] * f[1]) * self.d,
        ]
    }
}

/// One vertex of the warp mesh.
#[derive(Clone, Copy, Debug)]
enum Vertex {
    /// A FaceMesh landmark; `weight` is how much of the synthetic mouth replaces the frame's own there.
    /// `outer`: for an inner-lip point, the outer-lip point across the lip (see `LIP_BAND_PULL`).
    Landmark { id: u16, weight: f32, outer: Option<u16> },
    /// A fixed point outside the face, in the neutral frame's pixels.
    Ring(P),
}

/// The warp mesh and mouth model of one neutral face.
pub struct Rig {
    /// The neutral landmarks (frame pixels), inner lips closed.
    neutral: Vec<P>,
    axes: Axes,
    /// Mouth centre (face units) and half width.
    mouth: P,
    half_width: f32,
    vertices: Vec<Vertex>,
    pub triangles: Vec<[u32; 3]>,
    /// Which triangles lie between the inner lips.
    pub interior: Vec<bool>,
    /// Per vertex: (u across the mouth, v from upper to lower inner lip) for inner-lip vertices.
    pub mouth_uv: Vec<P>,
    /// The mesh vertices of each pair of inner-lip points that meet when the mouth closes, left to right,
    /// and of the inner mouth corners (78, 308) at either end.
    seam: Vec<(usize, usize)>,
    seam_ends: [Option<usize>; 2],
}

/// Source and target positions of the warp mesh's vertices for one frame.
pub struct Targets {
    pub source: Vec<P>,
    pub target: Vec<P>,
    /// Interocular distance in the frame (pixels).
    pub scale: f32,
    /// The target inner-lip gap at the centre (pixels).
    pub gap: f32,
    /// The target mouth width, corner to corner (pixels).
    pub width: f32,
    /// Where the lips meet when they close, corner to corner through the middle of each inner-lip pair
    /// (pixels).
    pub seam: Vec<P>,
}

fn is_in(set: &[u16], id: u16) -> bool {
    set.contains(&id)
}

impl Rig {
    /// Builds the rig of a neutral face (468 landmarks in pixels).
    pub fn new(landmarks: &[[f32; 3]]) -> Rig {
        let mut neutral: Vec<P> = landmarks.iter().map(|p| [p[0], p[1]]).collect();
        let axes = Axes::of(neutral[EYES.0], neutral[EYES.1]);
        close_mouth(&mut neutral, axes);
        let face: Vec<P> = neutral.iter().map(|&p| axes.to_face(p)).collect();
        let (cl, cr) = (face[61], face[291]);
        let mouth = [(cl[0] + cr[0]) * 0.5, (cl[1] + cr[1]) * 0.5];
        let half_width = ((cr[0] - cl[0]).abs() * 0.5).max(0.05);
        let nose = face[NOSE_TIP][1];
        let upper = face[0][1];
        let mut rig = Rig {
            neutral,
            axes,
            mouth,
            half_width,
            vertices: Vec::new(),
            triangles: Vec::new(),
            interior: Vec::new(),
            mouth_uv: Vec::new(),
            seam: Vec::new(),
            seam_ends: [None; 2],
        };
        // Lower-face landmarks (from just under the nose tip), thinned where points crowd together.
        let cut = nose + 0.25 * (upper - nose);
        let mut chosen: Vec<(u16, P)> = Vec::new();
        let lip =
            |id: u16| is_in(&INNER_LIP, id) || is_in(&UPPER_LIP, id) || is_in(&LOWER_LIP, id) || is_in(&CORNERS, id);
        let open_layout = |rig: &Rig, id: usize| rig.axes.to_face(rig.displaced(id, &MouthPose::open(1.0, 1.0, 0.0)));
        // The lips are the band between the outer and inner contours: the mesh's other points inside the
        // outer contour are left out, so each lip moves as one piece.
        let outer: Vec<P> = OUTER_LIP.iter().map(|&id| face[id as usize]).collect();
        let mut ids: Vec<u16> = (0..face.len() as u16)
            .filter(|&id| face[id as usize][1] >= cut || is_in(&LOWER_OVAL, id))
            .filter(|&id| lip(id) || !inside(&outer, face[id as usize]))
            .collect();
        // Lips first, so crowding drops other points rather than lip points.
        ids.sort_by_key(|&id| !lip(id));
        for id in ids {
            let p = open_layout(&rig, id as usize);
            let crowded = chosen.iter().any(|(_, q)| (p[0] - q[0]).hypot(p[1] - q[1]) < 0.025);
            if !crowded || lip(id) && !chosen.iter().any(|(_, q)| p == *q) {
                chosen.push((id, p));
            }
        }
        let mut layout: Vec<P> = Vec::new();
        for &(id, p) in &chosen {
            let f = face[id as usize];
            let (dx, _) = (f[0] - mouth[0], f[1] - mouth[1]);
            let vertical = smoothstep(nose, upper + 0.02, f[1]);
            let lateral = 1.0 - smoothstep(2.2 * half_width, 3.2 * half_width, dx.abs());
            let outer = INNER_TO_OUTER.iter().find(|(i, _)| *i == id).map(|&(_, o)| o);
            rig.vertices.push(Vertex::Landmark { id, weight: vertical * lateral, outer });
            layout.push(p);
        }
        // The fixed ring: the lower oval pushed away from the mouth, and a row across under the nose.
        // Far enough out that the chin at full drop stays well inside.
        let push = |f: P| {
            let (dx, dy) = (f[0] - mouth[0], f[1] - mouth[1]);
            let len = dx.hypot(dy).max(1e-3);
            [f[0] + dx / len * 0.45, f[1] + dy / len * 0.45]
        };
        let mut ring: Vec<P> = LOWER_OVAL.iter().map(|&id| push(face[id as usize])).collect();
        let top = cut - 0.2;
        let (x0, x1) = (ring[0][0], ring[ring.len() - 1][0]);
        for k in 0..=6 {
            ring.push([x0 + (x1 - x0) * k as f32 / 6.0, top.min(ring[0][1]).min(ring[ring.len() - 1][1])]);
        }
        for f in ring {
            rig.vertices.push(Vertex::Ring(axes.to_pixels(f)));
            layout.push(f);
        }
        rig.triangles = super::warp::delaunay(&layout);
        // Mouth-interior triangles: all corners on the inner lip, centre inside its contour.
        let inner: Vec<P> =
            INNER_LIP.iter().filter_map(|&id| chosen.iter().position(|(c, _)| *c == id).map(|i| layout[i])).collect();
        rig.interior = rig
            .triangles
            .iter()
            .map(|t| {
                let all_inner = t.iter().all(|&v| match rig.vertices[v as usize] {
                    Vertex::Landmark { id, .. } => is_in(&INNER_LIP, id),
                    Vertex::Ring(_) => false,
                });
                let c = t
                    .iter()
                    .fold([0.0, 0.0], |a, &v| [a[0] + layout[v as usize][0] / 3.0, a[1] + layout[v as usize][1] / 3.0]);
                all_inner && inside(&inner, c)
            })
            .collect();
        let (left, right) = (open_layout(&rig, 78), open_layout(&rig, 308));
        let vertex_of = |rig: &Rig, id: u16| {
            rig.vertices.iter().position(|v| matches!(v, Vertex::Landmark { id: i, .. } if *i == id))
        };
        rig.seam = INNER_PAIRS.iter().filter_map(|&(u, l)| Some((vertex_of(&rig, u)?, vertex_of(&rig, l)?))).collect();
        rig.seam_ends = [vertex_of(&rig, 78), vertex_of(&rig, 308)];
        rig.mouth_uv = rig
            .vertices
            .iter()
            .zip(&layout)
            .map(|(v, p)| {
                let u = ((p[0] - left[0]) / (right[0] - left[0]).max(1e-3)).clamp(0.0, 1.0);
                let v = match v {
                    Vertex::Landmark { id, .. } if is_in(&UPPER_LIP, *id) => 0.0,
                    Vertex::Landmark { id, .. } if is_in(&LOWER_LIP, *id) => 1.0,
                    _ => 0.5,
                };
                [u, v]
            })
            .collect();
        rig
    }

    /// The neutral face's landmarks (frame pixels), its mouth shut.
    pub fn neutral(&self) -> &[[f32; 2]] {
        &self.neutral
    }

    /// The neutral point `id` moved to `pose` (neutral frame pixels).
    fn displaced(&self, id: usize, pose: &MouthPose) -> P {
        let f = self.axes.to_face(self.neutral[id]);
        let (dx, dy) = (f[0] - self.mouth[0], f[1] - self.mouth[1]);
        let id16 = id as u16;
        // The jaw: everything from the mouth corners down, most at the chin's midline.
        let lateral = 1.0 - 0.75 * smoothstep(0.8 * self.half_width, 2.4 * self.half_width, dx.abs());
        // Upper lip points stay with the skull, lower lip points go with the jaw (less towards the corners,
        // so the opening is oval), the corners in between.
        let profile = (1.0 - (dx / self.half_width).powi(2)).clamp(0.0, 1.0);
        let with_jaw = if is_in(&UPPER_LIP, id16) {
            0.0
        } else if is_in(&LOWER_LIP, id16) {
            0.4 + 0.6 * profile.sqrt()
        } else if is_in(&CORNERS, id16) {
            0.4
        } else {
            with_the_jaw(dy)
        };
        let mut down = pose.jaw * JAW_MAX * with_jaw * lateral;
        let width = if pose.spread >= 0.0 { SPREAD_MAX * pose.spread } else { ROUND_MAX * pose.spread };
        let (upper, lower) = (is_in(&UPPER_LIP, id16), is_in(&LOWER_LIP, id16));
        let x = if upper || lower || is_in(&CORNERS, id16) {
            let inner = is_in(&INNER_LIP, id16);
            let round = (-pose.spread).max(0.0);
            if !upper {
                // Pressed lips stay together, to their corners, over a jaw that is not quite shut.
                down -= pose.press * pose.jaw * JAW_MAX * with_jaw * lateral;
            }
            if upper {
                down -= pose.lips * UPPER_LIP_MAX * profile;
                down -= pose.tuck * TUCK_UPPER * profile;
                // Pressed lips squeeze together; rounded ones push out (the outer contour shows it).
                if !inner {
                    down += (pose.press * PRESS_MAX - round * POUT_MAX) * profile;
                }
            } else if lower {
                down += pose.lips * LOWER_LIP_MAX * profile;
                down -= pose.tuck * if inner { TUCK_INNER } else { TUCK_OUTER } * profile;
                if !inner {
                    down -= (pose.press * PRESS_MAX - round * POUT_MAX) * profile;
                }
            }
            let narrow = if inner { 1.0 - ROUND_INNER * round } else { 1.0 };
            self.mouth[0] + dx * (1.0 + width) * narrow
        } else {
            let r = (dx / self.half_width).hypot(dy / (0.7 * self.half_width));
            self.mouth[0] + dx * (1.0 + width * (1.0 - smoothstep(1.0, 1.0 + SPREAD_REACH, r)))
        };
        self.axes.to_pixels([x, f[1] + down])
    }

    /// The affine map from the neutral face onto the head in this frame (`landmarks`: its 468 tracked
    /// points), fitted on landmarks the mouth does not move; `None` when they are degenerate.
    pub fn head(&self, landmarks: &[[f32; 3]]) -> Option<Affine> {
        let from: Vec<P> = STABLE.iter().map(|&i| self.neutral[i as usize]).collect();
        let to: Vec<P> = STABLE.iter().map(|&i| [landmarks[i as usize][0], landmarks[i as usize][1]]).collect();
        Affine::fit(&from, &to)
    }

    /// Where the warp mesh's vertices are in this frame and where they must go for `pose`, with the
    /// neutral placed on the head by `head` (see [`Rig::head`]).
    pub fn targets(&self, landmarks: &[[f32; 3]], head: &Affine, pose: &MouthPose) -> Targets {
        let xy = |i: usize| [landmarks[i][0], landmarks[i][1]];
        let mut source = Vec::with_capacity(self.vertices.len());
        let mut target = Vec::with_capacity(self.vertices.len());
        for v in &self.vertices {
            match *v {
                Vertex::Landmark { id, weight, outer } => {
                    let s = xy(id as usize);
                    let t = head.apply(self.displaced(id as usize, pose));
                    target.push([s[0] + weight * (t[0] - s[0]), s[1] + weight * (t[1] - s[1])]);
                    // FaceMesh's inner-lip points sit a little inside an open mouth: the lips are
                    // sampled from a band pulled towards the outer contour, so no teeth come with them
                    // (further for pressed lips, which must show no trace of an opening).
                    let s = match outer {
                        Some(o) => {
                            let (o, pull) = (xy(o as usize), LIP_BAND_PULL + PRESS_PULL * pose.press.min(1.0));
                            [s[0] + pull * (o[0] - s[0]), s[1] + pull * (o[1] - s[1])]
                        }
                        None => s,
                    };
                    source.push(s);
                }
                Vertex::Ring(p) => {
                    let q = head.apply(p);
                    source.push(q);
                    target.push(q);
                }
            }
        }
        let scale = Axes::of(xy(EYES.0), xy(EYES.1)).d;
        let gap = {
            let (a, b) = (head.apply(self.displaced(13, pose)), head.apply(self.displaced(14, pose)));
            (a[0] - b[0]).hypot(a[1] - b[1])
        };
        let width = {
            let (a, b) = (head.apply(self.displaced(78, pose)), head.apply(self.displaced(308, pose)));
            (a[0] - b[0]).hypot(a[1] - b[1])
        };
        // Pressed lips meet along their whole length, whatever is left of the jaw's drop.
        let press = smoothstep(0.2, 0.8, pose.press);
        if press > 0.0 {
            for &(u, l) in &self.seam {
                let (a, b) = (target[u], target[l]);
                let mid = midpoint(a, b);
                target[u] = [a[0] + (mid[0] - a[0]) * press, a[1] + (mid[1] - a[1]) * press];
                target[l] = [b[0] + (mid[0] - b[0]) * press, b[1] + (mid[1] - b[1]) * press];
            }
        }
        let [left, right] = self.seam_ends.map(|v| v.map(|v| target[v]));
        let seam = left
            .into_iter()
            .chain(self.seam.iter().map(|&(u, l)| midpoint(target[u], target[l])))
            .chain(right)
            .collect();
        Targets { source, target, scale, gap: gap * (1.0 - press), width, seam }
    }
}

/// Closes the mouth of a neutral face that shows an opening (a smile with its teeth, a photo taken
/// mid-word): the lower lip rises to the upper one, pair by pair, and the skin and jaw under it rise with
/// it, as when a speaker shuts their mouth. Meeting halfway with the jaw left down gives fat lips over an
/// open jaw, which neither a viewer nor the face tracker takes for a closed mouth.
fn close_mouth(neutral: &mut [P], axes: Axes) {
    let face: Vec<P> = neutral.iter().map(|&p| axes.to_face(p)).collect();
    let mut shift = vec![[0.0f32; 2]; face.len()];
    for &(u, l) in &INNER_PAIRS {
        shift[l as usize] = sub(face[u as usize], face[l as usize]);
    }
    // Each lip moves as one piece: its outer edge with its inner one.
    for &(inner, outer) in &INNER_TO_OUTER {
        shift[outer as usize] = [0.0, shift[inner as usize][1]];
    }
    // The skin under the lower lip rises as the lip above it does (nothing at the corners), so no point
    // passes the lip.
    let (cl, cr) = (face[61], face[291]);
    let mut profile: Vec<P> = INNER_PAIRS.iter().map(|&(_, l)| [face[l as usize][0], shift[l as usize][1]]).collect();
    profile.extend([[cl[0], 0.0], [cr[0], 0.0]]);
    profile.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let rise_at = |x: f32| {
        profile.windows(2).find(|w| w[0][0] <= x && x <= w[1][0]).map_or(0.0, |w| {
            let t = (x - w[0][0]) / (w[1][0] - w[0][0]).max(1e-6);
            (w[0][1] + (w[1][1] - w[0][1]) * t).min(0.0)
        })
    };
    let mouth_y = (cl[1] + cr[1]) * 0.5;
    for (id, (s, f)) in shift.iter_mut().zip(&face).enumerate() {
        let id16 = id as u16;
        if is_in(&UPPER_LIP, id16) || is_in(&LOWER_LIP, id16) || is_in(&CORNERS, id16) {
            continue;
        }
        *s = [0.0, rise_at(f[0]) * with_the_jaw(f[1] - mouth_y)];
    }
    for ((p, f), s) in neutral.iter_mut().zip(&face).zip(&shift) {
        *p = axes.to_pixels([f[0] + s[0], f[1] + s[1]]);
    }
}

/// How much of the jaw's movement a lower-face point (not a lip) follows, `dy` below the mouth corners in
/// face units: none from just above them, all from a little below.
fn with_the_jaw(dy: f32) -> f32 {
    smoothstep(-0.03, 0.08, dy)
}

/// Whether `p` lies inside `poly` (even-odd).
fn inside(poly: &[P], p: P) -> bool {
    let mut c = false;
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
        if (a[1] <= p[1]) != (b[1] <= p[1]) && p[0] < a[0] + (p[1] - a[1]) / (b[1] - a[1]) * (b[0] - a[0]) {
            c = !c;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_fit_recovers_a_map() {
        let m = Affine([[1.2, -0.3, 5.0], [0.25, 0.9, -7.0]]);
        let from: Vec<P> = (0..10).map(|i| [i as f32 * 3.0, (i * i) as f32 * 0.5]).collect();
        let to: Vec<P> = from.iter().map(|&p| m.apply(p)).collect();
        let fit = Affine::fit(&from, &to).unwrap();
        for (a, b) in fit.0.iter().flatten().zip(m.0.iter().flatten()) {
            assert!((a - b).abs() < 1e-3, "{fit:?}");
        }
        assert!(Affine::fit(&[[1.0, 1.0]; 5], &[[0.0, 0.0]; 5]).is_none(), "degenerate");
    }

    #[test]
    fn the_inner_lip_tables_are_consistent() {
        for (u, l) in INNER_PAIRS {
            assert!(INNER_LIP.contains(&u) && INNER_LIP.contains(&l));
            assert!(UPPER_LIP.contains(&u) && LOWER_LIP.contains(&l));
        }
    }
}
