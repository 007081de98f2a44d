//! The mouth interior, drawn where the target mouth opens wider than the frame's: the triangles between the
//! inner lips. From the reference bank's most open frame when it shows an open mouth (its own teeth and
//! tongue, resampled across the opening and lit like the current frame); otherwise synthesised: a dark
//! cavity in the lips' hue, a band of upper teeth under the upper lip and a hint of tongue at the bottom.
//! Coordinates are (u, v): u across the mouth (0 left corner, 1 right), v down the opening (0 upper lip,
//! 1 lower lip).

use super::smoothstep;
use super::warp::InteriorShader;
use crate::frame::Patch;

type P = [f32; 2];

/// An open mouth seen in a reference: its crop and inner-lip contour in the crop's pixels.
#[derive(Clone, Debug)]
pub struct OpenMouth {
    pub rgb: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// Upper inner lip, left corner to right corner.
    pub upper: Vec<P>,
    /// Lower inner lip, left corner to right corner.
    pub lower: Vec<P>,
    /// Mean luma of the face in the reference, to relight it.
    pub luma: f32,
}

impl OpenMouth {
    /// Whether the middle of the opening is clearly darker than the face: a mouth that shows its inside.
    pub fn looks_open(&self) -> bool {
        let mut sum = 0.0;
        let mut n = 0.0;
        for i in 0..5 {
            for j in 0..5 {
                let (u, v) = (0.3 + 0.1 * i as f32, 0.3 + 0.1 * j as f32);
                let (top, bot) = (along(&self.upper, u), along(&self.lower, u));
                let c = self.sample(top[0] + (bot[0] - top[0]) * v - 0.5, top[1] + (bot[1] - top[1]) * v - 0.5);
                sum += 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
                n += 1.0;
            }
        }
        sum / n < 0.55 * self.luma
    }

    fn sample(&self, x: f32, y: f32) -> [f32; 3] {
        let x = x.clamp(0.0, (self.width - 1) as f32);
        let y = y.clamp(0.0, (self.height - 1) as f32);
        let (ix, iy) = (x as usize, y as usize);
        let (jx, jy) = ((ix + 1).min(self.width - 1), (iy + 1).min(self.height - 1));
        let (ax, ay) = (x - ix as f32, y - iy as f32);
        let px = |x: usize, y: usize| &self.rgb[(y * self.width + x) * 3..(y * self.width + x) * 3 + 3];
        let (a, b, c, d) = (px(ix, iy), px(jx, iy), px(ix, jy), px(jx, jy));
        std::array::from_fn(|k| {
            let top = a[k] as f32 + (b[k] as f32 - a[k] as f32) * ax;
            let bot = c[k] as f32 + (d[k] as f32 - c[k] as f32) * ax;
            top + (bot - top) * ay
        })
    }
}

/// The point at fraction `u` along a polyline (by x between its ends).
fn along(line: &[P], u: f32) -> P {
    let (first, last) = (line[0], line[line.len() - 1]);
    let x = first[0] + (last[0] - first[0]) * u;
    for w in line.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a[0] <= x && x <= b[0]) || (b[0] <= x && x <= a[0]) {
            let t = if (b[0] - a[0]).abs() > 1e-6 { (x - a[0]) / (b[0] - a[0]) } else { 0.0 };
            return [x, a[1] + (b[1] - a[1]) * t];
        }
    }
    [x, first[1] + (last[1] - first[1]) * u]
}

/// Lighting and size of the mouth in the current frame.
pub struct Interior<'a> {
    /// Mean colour of the lips.
    pub lip: [f32; 3],
    /// Mean luma of the face (0..255).
    pub luma: f32,
    /// Fraction of the opening the upper teeth cover (from the top).
    pub teeth: f32,
    /// How much of the tongue's tip shows behind the upper teeth (0..1).
    pub tongue: f32,
    /// How far the lips are in contact (0..1): the opening is then the dark line between them.
    pub contact: f32,
    /// Width of the soft edge, as fractions of the opening's width and height (about 1.5 pixels).
    pub feather: [f32; 2],
    pub reference: Option<&'a OpenMouth>,
}

impl Interior<'_> {
    /// The teeth's share of an opening of `gap` pixels on a face `scale` pixels between the eyes: the
    /// incisors show about 1/8 of the interocular distance below the upper lip (a centimetre), at most
    /// half the opening.
    pub fn teeth_share(gap: f32, scale: f32) -> f32 {
        (0.12 * scale / gap.max(1.0)).clamp(0.0, 0.5)
    }

    fn synthetic(&self, u: f32, v: f32) -> [f32; 3] {
        let light = (self.luma / 170.0).clamp(0.3, 1.2);
        let centre = 1.0 - (2.0 * u - 1.0).abs(); // 1 mid-mouth, 0 at the corners
        let depth = 0.6 + 0.4 * smoothstep(0.0, 0.5, centre);
        // The cavity: dark, in the lips' hue.
        let mut rgb: [f32; 3] = std::array::from_fn(|k| (self.lip[k] * 0.16 + [44.0, 12.0, 14.0][k] * light) * depth);
        // Tongue: rises from the lower lip in the middle.
        let tongue = smoothstep(0.6, 0.95, v) * smoothstep(0.2, 0.6, centre) * 0.8;
        for (o, l) in rgb.iter_mut().zip(self.lip) {
            *o += (l * 0.7 - *o) * tongue;
        }
        // Upper teeth under the upper lip, fading towards the corners and at their edge.
        let teeth = smoothstep(0.15, 0.45, centre) * (1.0 - smoothstep(self.teeth - 0.07, self.teeth + 0.02, v));
        let enamel = [240.0, 236.0, 228.0].map(|c: f32| c * light.max(0.6) * (0.8 + 0.2 * centre));
        for (o, e) in rgb.iter_mut().zip(enamel) {
            *o += (e - *o) * teeth;
        }
        // Lower teeth, with the jaw, where the opening is wide: a narrower band above the lower lip.
        let lower = (self.teeth * 0.5).min(0.2);
        let lower_teeth = smoothstep(0.3, 0.55, centre) * smoothstep(1.0 - lower - 0.02, 1.0 - lower + 0.05, v) * 0.85;
        let enamel_low = enamel.map(|c| c * 0.85);
        for (o, e) in rgb.iter_mut().zip(enamel_low) {
            *o += (e - *o) * lower_teeth;
        }
        // Shadow just inside the lips.
        let rim = smoothstep(0.0, 0.15, v.min(1.0 - v)) * smoothstep(0.0, 0.15, centre);
        rgb.map(|c| c * (0.75 + 0.25 * rim))
    }

    /// The tongue's tip over `rgb`: a rounded shape in the lips' hue just under the upper teeth's edge.
    fn tongue_tip(&self, u: f32, v: f32, rgb: [f32; 3]) -> [f32; 3] {
        if self.tongue <= 0.0 {
            return rgb;
        }
        let light = (self.luma / 170.0).clamp(0.3, 1.2);
        let (du, dv) = ((u - 0.5) / 0.2, (v - (self.teeth + 0.12)) / 0.22);
        let inside = 1.0 - smoothstep(0.7, 1.0, (du * du + dv * dv).sqrt());
        let shade = 0.8 + 0.2 * (1.0 - dv.abs().min(1.0));
        let flesh: [f32; 3] = std::array::from_fn(|k| (self.lip[k] * 0.8 + [40.0, 10.0, 14.0][k] * light) * shade);
        let a = inside * self.tongue * 0.9;
        std::array::from_fn(|k| rgb[k] + (flesh[k] - rgb[k]) * a)
    }
}

impl InteriorShader for Interior<'_> {
    fn shade(&self, uv: P, warped: [f32; 3]) -> [f32; 3] {
        let (u, v) = (uv[0].clamp(0.0, 1.0), uv[1].clamp(0.0, 1.0));
        let inside = match self.reference {
            Some(r) => {
                let (top, bot) = (along(&r.upper, u), along(&r.lower, u));
                let p = [top[0] + (bot[0] - top[0]) * v, top[1] + (bot[1] - top[1]) * v];
                let gain = (self.luma / r.luma.max(1.0)).clamp(0.5, 2.0);
                r.sample(p[0] - 0.5, p[1] - 0.5).map(|c| c * gain)
            }
            None => self.synthetic(u, v),
        };
        let inside = self.tongue_tip(u, v, inside);
        let line = self.lip.map(|c| c * 0.4);
        let inside: [f32; 3] = std::array::from_fn(|k| inside[k] + (line[k] - inside[k]) * self.contact);
        // Anti-aliased lip edge: the last `feather` of the opening fades into the warped lips.
        let edge = (v.min(1.0 - v) / self.feather[1]).min(u.min(1.0 - u) / self.feather[0]);
        let a = smoothstep(0.0, 1.0, edge);
        std::array::from_fn(|k| warped[k] + (inside[k] - warped[k]) * a)
    }
}

/// Darkens the line where closed lips meet, `line` in frame pixels (corner to corner), over `patch`: a
/// soft stroke `width` pixels wide in `colour`, at opacity `strength`, thinning towards the corners.
/// Without it, lips merged by the warp are one smooth band, which neither a viewer nor a face tracker
/// reads as a closed mouth.
pub fn draw_seam(patch: &mut Patch, line: &[P], width: f32, colour: [f32; 3], strength: f32) {
    if strength <= 0.0 || line.len() < 2 {
        return;
    }
    let half = (width * 0.5).max(0.5);
    let (x0, x1) = line.iter().fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[0]), b.max(p[0])));
    let (y0, y1) = line.iter().fold((f32::MAX, f32::MIN), |(a, b), p| (a.min(p[1]), b.max(p[1])));
    let reach = half + 1.0;
    let (w, h) = (patch.width as i32, patch.height as i32);
    let cols = ((x0 - reach).floor() as i32 - patch.x).max(0)..((x1 + reach).ceil() as i32 - patch.x + 1).min(w);
    let rows = ((y0 - reach).floor() as i32 - patch.y).max(0)..((y1 + reach).ceil() as i32 - patch.y + 1).min(h);
    let span = (x1 - x0).max(1.0);
    for py in rows {
        for px in cols.clone() {
            let o = (py as usize * patch.width as usize + px as usize) * 4;
            if patch.rgba[o + 3] == 0 {
                continue;
            }
            let q = [(px + patch.x) as f32 + 0.5, (py + patch.y) as f32 + 0.5];
            let d = line.windows(2).map(|s| distance_to_segment(q, s[0], s[1])).fold(f32::MAX, f32::min);
            // Full width across the middle, a third of it at the corners.
            let centre = 1.0 - (2.0 * (q[0] - x0) / span - 1.0).abs();
            let half_here = half * (0.35 + 0.65 * smoothstep(0.0, 0.4, centre));
            let a = strength * (1.0 - smoothstep(half_here - 0.5, half_here + 0.5, d));
            if a > 0.0 {
                for (p, &shade) in patch.rgba[o..o + 3].iter_mut().zip(&colour) {
                    let c = *p as f32;
                    *p = (c + (shade.min(c) - c) * a + 0.5) as u8;
                }
            }
        }
    }
}

fn distance_to_segment(p: P, a: P, b: P) -> f32 {
    let (ab, ap) = ([b[0] - a[0], b[1] - a[1]], [p[0] - a[0], p[1] - a[1]]);
    let t = ((ap[0] * ab[0] + ap[1] * ab[1]) / (ab[0] * ab[0] + ab[1] * ab[1]).max(1e-9)).clamp(0.0, 1.0);
    (ap[0] - t * ab[0]).hypot(ap[1] - t * ab[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luma(c: [f32; 3]) -> f32 {
        0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    }

    #[test]
    fn synthetic_mouth_is_dark_with_teeth_on_top() {
        let m = Interior {
            lip: [170.0, 90.0, 90.0],
            luma: 150.0,
            teeth: 0.3,
            tongue: 0.0,
            contact: 0.0,
            feather: [0.01; 2],
            reference: None,
        };
        let teeth = m.shade([0.5, 0.1], [0.0; 3]);
        let cavity = m.shade([0.5, 0.5], [0.0; 3]);
        let corner = m.shade([0.05, 0.2], [0.0; 3]);
        assert_eq!(m.shade([0.5, 0.0], [1.0, 2.0, 3.0]), [1.0, 2.0, 3.0], "the edge is the warped lip");
        assert!(luma(teeth) > 120.0, "{teeth:?}");
        assert!(luma(cavity) < 40.0, "{cavity:?}");
        assert!(luma(corner) < luma(teeth) * 0.5, "{corner:?}");
        assert_eq!(Interior::teeth_share(100.0, 100.0), 0.12);
        assert_eq!(Interior::teeth_share(2.0, 100.0), 0.5);
    }

    #[test]
    fn the_seam_darkens_a_thin_line_where_the_lips_meet() {
        let lip = [180u8, 100, 100, 255];
        let patch = Patch { x: 10, y: 20, width: 40, height: 20, rgba: lip.repeat(800) };
        let at = |p: &Patch, x: usize, y: usize| p.rgba[((y - 20) * 40 + x - 10) * 4];
        let line = [[12.0, 30.0], [30.0, 30.0], [48.0, 30.0]];
        let mut drawn = patch.clone();
        draw_seam(&mut drawn, &line, 2.0, [80.0, 40.0, 40.0], 1.0);
        assert_eq!(at(&drawn, 30, 30), 80, "the line at full shade in the middle");
        assert_eq!(at(&drawn, 30, 33), 180, "the lips a few pixels away untouched");
        assert!(at(&drawn, 12, 30) > 80 && at(&drawn, 12, 30) < 180, "thinner at the corners");
        let mut faint = patch.clone();
        draw_seam(&mut faint, &line, 2.0, [80.0, 40.0, 40.0], 0.5);
        assert_eq!(at(&faint, 30, 30), 130, "half strength, half way");
        let mut none = patch.clone();
        draw_seam(&mut none, &line, 2.0, [80.0, 40.0, 40.0], 0.0);
        assert_eq!(none.rgba, patch.rgba);
        // Pixels the warp did not cover stay transparent and unchanged.
        let mut holes = Patch { rgba: [0u8; 4].repeat(800), ..patch };
        draw_seam(&mut holes, &line, 2.0, [80.0, 40.0, 40.0], 1.0);
        assert!(holes.rgba.iter().all(|&c| c == 0));
    }

    #[test]
    fn a_reference_mouth_is_resampled_across_the_opening() {
        // A 20x20 reference: white rows 5..8 (teeth), black below, lips from y=5 to y=15.
        let rgb: Vec<u8> = (0..400).flat_map(|i| if (5..8).contains(&(i / 20)) { [250; 3] } else { [10; 3] }).collect();
        let r = OpenMouth {
            rgb,
            width: 20,
            height: 20,
            upper: vec![[2.0, 10.0], [10.0, 5.0], [18.0, 10.0]],
            lower: vec![[2.0, 10.0], [10.0, 15.0], [18.0, 10.0]],
            luma: 100.0,
        };
        let m = Interior {
            lip: [0.0; 3],
            luma: 100.0,
            teeth: 0.0,
            tongue: 0.0,
            contact: 0.0,
            feather: [0.01; 2],
            reference: Some(&r),
        };
        assert!(m.shade([0.5, 0.15], [0.0; 3])[0] > 200.0, "teeth near the top");
        assert!(m.shade([0.5, 0.8], [0.0; 3])[0] < 20.0, "dark below");
        assert_eq!(along(&r.upper, 0.25), [6.0, 7.5]);
    }
}
