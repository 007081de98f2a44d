//! The classic renderer's image stage: a piecewise-affine warp of the lower face. Each triangle of the
//! warp mesh is filled in the target image by sampling the frame (bilinear) at the same barycentric point
//! of its source triangle; mouth-interior triangles are shaded by the mouth model instead. The ring of
//! fixed vertices around the mesh maps onto itself, so the warp meets the untouched frame without a seam.
//! Also the Delaunay triangulation (Bowyer-Watson) the mesh is built with.

use crate::frame::{Patch, VideoFrame};
use crate::render::pixels::{Sampler, to_byte};

type P = [f32; 2];

/// Delaunay triangulation of `points` (Bowyer-Watson in f64); triangles are counter-clockwise index
/// triples. Points closer than 1e-6 to an earlier one are left out.
pub fn delaunay(points: &[P]) -> Vec<[u32; 3]> {
    let n = points.len();
    if n < 3 {
        return Vec::new();
    }
    let mut pts: Vec<[f64; 2]> = points.iter().map(|p| [p[0] as f64, p[1] as f64]).collect();
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for p in &pts {
        x0 = x0.min(p[0]);
        y0 = y0.min(p[1]);
        x1 = x1.max(p[0]);
        y1 = y1.max(p[1]);
    }
    let span = (x1 - x0).max(y1 - y0).max(1e-9);
    let (cx, cy) = ((x0 + x1) * 0.5, (y0 + y1) * 0.5);
    // A super-triangle far around everything.
    pts.push([cx - 40.0 * span, cy - 30.0 * span]);
    pts.push([cx + 40.0 * span, cy - 30.0 * span]);
    pts.push([cx, cy + 40.0 * span]);
    let orient = |t: [usize; 3], pts: &[[f64; 2]]| -> [usize; 3] {
        let (a, b, c) = (pts[t[0]], pts[t[1]], pts[t[2]]);
        let cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
        if cross < 0.0 { [t[0], t[2], t[1]] } else { t }
    };
    struct Tri {
        v: [usize; 3],
        centre: [f64; 2],
        r2: f64,
    }
    let circum = |v: [usize; 3], pts: &[[f64; 2]]| -> Tri {
        let (a, b, c) = (pts[v[0]], pts[v[1]], pts[v[2]]);
        let d = 2.0 * (a[0] * (b[1] - c[1]) + b[0] * (c[1] - a[1]) + c[0] * (a[1] - b[1]));
        let (a2, b2, c2) = (a[0] * a[0] + a[1] * a[1], b[0] * b[0] + b[1] * b[1], c[0] * c[0] + c[1] * c[1]);
        let ux = (a2 * (b[1] - c[1]) + b2 * (c[1] - a[1]) + c2 * (a[1] - b[1])) / d;
        let uy = (a2 * (c[0] - b[0]) + b2 * (a[0] - c[0]) + c2 * (b[0] - a[0])) / d;
        Tri { v, centre: [ux, uy], r2: (a[0] - ux).powi(2) + (a[1] - uy).powi(2) }
    };
    let mut tris = vec![circum(orient([n, n + 1, n + 2], &pts), &pts)];
    let mut edges: Vec<[usize; 2]> = Vec::new();
    'points: for i in 0..n {
        let p = pts[i];
        for q in &pts[..i] {
            if (q[0] - p[0]).abs() < 1e-6 && (q[1] - p[1]).abs() < 1e-6 {
                continue 'points;
            }
        }
        edges.clear();
        tris.retain(|t| {
            let bad = (p[0] - t.centre[0]).powi(2) + (p[1] - t.centre[1]).powi(2) < t.r2 * (1.0 - 1e-12);
            if bad {
                for k in 0..3 {
                    edges.push([t.v[k], t.v[(k + 1) % 3]]);
                }
            }
            !bad
        });
        // The boundary of the cavity: edges that belong to one removed triangle only.
        for (k, e) in edges.iter().enumerate() {
            let shared = edges.iter().enumerate().any(|(j, f)| j != k && f[0] == e[1] && f[1] == e[0]);
            if !shared {
                tris.push(circum(orient([e[0], e[1], i], &pts), &pts));
            }
        }
    }
    tris.into_iter()
        .filter(|t| t.v.iter().all(|&v| v < n))
        .map(|t| [t.v[0] as u32, t.v[1] as u32, t.v[2] as u32])
        .collect()
}

/// What fills a mouth-interior pixel: given (u, v) across and down the mouth opening and what the warp
/// would have put there, its RGB.
pub trait InteriorShader {
    fn shade(&self, uv: P, warped: [f32; 3]) -> [f32; 3];
}

/// The part of a mesh drawn rather than warped (the mouth's opening): which triangles, the vertices'
/// (u, v) across the opening, and what fills it.
#[derive(Clone, Copy)]
pub struct DrawnInterior<'a> {
    pub triangles: &'a [bool],
    pub uv: &'a [P],
    pub shader: &'a dyn InteriorShader,
}

/// Warps the frame by the mesh into an RGBA patch over the target's bounding box (clipped to the frame).
/// Pixels no triangle covers stay transparent. Each triangle is filled scanline by scanline: the span of
/// pixel centres inside it, with the source position (and mouth coordinates) stepped along the span.
pub fn warp(
    frame: &VideoFrame,
    source: &[P],
    target: &[P],
    triangles: &[[u32; 3]],
    drawn: Option<DrawnInterior<'_>>,
) -> Option<Patch> {
    let _span = tracing::trace_span!("warp").entered();
    let sampler = Sampler::new(frame);
    let (fw, fh) = (frame.width() as i32, frame.height() as i32);
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in target {
        x0 = x0.min(p[0]);
        y0 = y0.min(p[1]);
        x1 = x1.max(p[0]);
        y1 = y1.max(p[1]);
    }
    let (px0, py0) = ((x0.floor() as i32).max(0), (y0.floor() as i32).max(0));
    let (px1, py1) = ((x1.ceil() as i32 + 1).min(fw), (y1.ceil() as i32 + 1).min(fh));
    if px1 <= px0 || py1 <= py0 {
        return None;
    }
    let (w, h) = ((px1 - px0) as usize, (py1 - py0) as usize);
    let mut rgba = vec![0u8; w * h * 4];
    for (k, t) in triangles.iter().enumerate() {
        let interior = drawn.filter(|d| d.triangles[k]);
        let [a, b, c] = t.map(|i| target[i as usize]);
        let [sa, sb, sc] = t.map(|i| source[i as usize]);
        // A triangle that neither moves nor is drawn leaves its pixels as they are.
        if interior.is_none() && sa == a && sb == b && sc == c {
            continue;
        }
        let det = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
        if det.abs() < 1e-6 {
            continue; // collapsed in the target: covers no pixel
        }
        let inv = 1.0 / det;
        // Barycentric weights of b and c as affine functions of (x, y): l = k0 + kx * x + ky * y.
        let l1 = [(a[0] * (c[1] - a[1]) - a[1] * (c[0] - a[0])) * -inv, (c[1] - a[1]) * inv, -(c[0] - a[0]) * inv];
        let l2 = [(a[0] * (b[1] - a[1]) - a[1] * (b[0] - a[0])) * inv, -(b[1] - a[1]) * inv, (b[0] - a[0]) * inv];
        // Any attribute interpolated over the triangle is affine in (x, y) too.
        let affine = |va: f32, vb: f32, vc: f32| -> [f32; 3] {
            let (d1, d2) = (vb - va, vc - va);
            [va + d1 * l1[0] + d2 * l2[0], d1 * l1[1] + d2 * l2[1], d1 * l1[2] + d2 * l2[2]]
        };
        // Source positions in sampler coordinates (pixel centres at integers).
        let sx = affine(sa[0] - 0.5, sb[0] - 0.5, sc[0] - 0.5);
        let sy = affine(sa[1] - 0.5, sb[1] - 0.5, sc[1] - 0.5);
        // The interior's (u, v), affine over the triangle too.
        let uv = interior.map(|d| {
            let [ua, ub, uc] = t.map(|i| d.uv[i as usize]);
            (affine(ua[0], ub[0], uc[0]), affine(ua[1], ub[1], uc[1]))
        });
        let ty0 = (a[1].min(b[1]).min(c[1]).floor() as i32).max(py0);
        let ty1 = (a[1].max(b[1]).max(c[1]).ceil() as i32).min(py1 - 1);
        let tx0 = (a[0].min(b[0]).min(c[0]).floor() as i32).max(px0);
        let tx1 = (a[0].max(b[0]).max(c[0]).ceil() as i32).min(px1 - 1);
        const EPS: f32 = 1e-4;
        for y in ty0..=ty1 {
            let cy = y as f32 + 0.5;
            // The span where l0, l1, l2 >= -EPS: each weight is linear in x along the row.
            let (mut lo, mut hi) = (tx0 as f32 + 0.5, tx1 as f32 + 0.5);
            let rows = [
                (l1[0] + l1[2] * cy, l1[1]),
                (l2[0] + l2[2] * cy, l2[1]),
                (1.0 - l1[0] - l2[0] - (l1[2] + l2[2]) * cy, -(l1[1] + l2[1])),
            ];
            for (k0, kx) in rows {
                // k0 + kx * x >= -EPS
                if kx.abs() < 1e-12 {
                    if k0 < -EPS {
                        hi = lo - 1.0;
                    }
                } else if kx > 0.0 {
                    lo = lo.max((-EPS - k0) / kx);
                } else {
                    hi = hi.min((-EPS - k0) / kx);
                }
            }
            if hi < lo {
                continue;
            }
            let xs = ((lo - 0.5).ceil() as i32).max(tx0);
            let xe = ((hi - 0.5).floor() as i32).min(tx1);
            if xe < xs {
                continue;
            }
            let row = ((y - py0) as usize) * w;
            let span = &mut rgba[(row + (xs - px0) as usize) * 4..(row + (xe - px0) as usize + 1) * 4];
            // The source position along the row: affine in the pixel's index from the span's start.
            let cx = xs as f32 + 0.5;
            let (fx, fy) = (sx[0] + sx[1] * cx + sx[2] * cy, sy[0] + sy[1] * cx + sy[2] * cy);
            let (Some(d), Some((uu, vv))) = (interior, &uv) else {
                sampler.bilinear_span(fx, fy, sx[1], sy[1], span);
                continue;
            };
            for (i, out) in span.chunks_exact_mut(4).enumerate() {
                let warped = sampler.bilinear(fx + sx[1] * i as f32, fy + sy[1] * i as f32);
                let cx = (xs + i as i32) as f32 + 0.5;
                let at = |f: &[f32; 3]| f[0] + f[1] * cx + f[2] * cy;
                let rgb = d.shader.shade([at(uu), at(vv)], warped);
                for (channel, v) in out.iter_mut().zip(rgb) {
                    *channel = to_byte(v);
                }
                out[3] = 255;
            }
        }
    }
    Some(Patch { x: px0, y: py0, width: w as u32, height: h as u32, rgba })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, VideoFrame};

    struct Black;
    impl InteriorShader for Black {
        fn shade(&self, _: P, _: [f32; 3]) -> [f32; 3] {
            [0.0; 3]
        }
    }

    #[test]
    fn delaunay_covers_the_hull_once() {
        let mut seed = 3u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32
        };
        let mut pts: Vec<P> = vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        pts.extend((0..60).map(|_| [rnd(), rnd()]));
        let tris = delaunay(&pts);
        let area: f32 = tris
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|i| pts[i as usize]);
                let cross = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
                assert!(cross > 0.0, "counter-clockwise and not degenerate");
                cross * 0.5
            })
            .sum();
        assert!((area - 1.0).abs() < 1e-4, "the unit square's area: {area}");
        // Empty circumcircles: no point strictly inside any triangle's circle.
        for t in &tris {
            let [a, b, c] = t.map(|i| pts[i as usize]).map(|p| [p[0] as f64, p[1] as f64]);
            for p in &pts {
                let p = [p[0] as f64, p[1] as f64];
                let m = [
                    [a[0] - p[0], a[1] - p[1], (a[0] - p[0]).powi(2) + (a[1] - p[1]).powi(2)],
                    [b[0] - p[0], b[1] - p[1], (b[0] - p[0]).powi(2) + (b[1] - p[1]).powi(2)],
                    [c[0] - p[0], c[1] - p[1], (c[0] - p[0]).powi(2) + (c[1] - p[1]).powi(2)],
                ];
                let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
                    - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
                    + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
                assert!(det < 1e-9, "a point inside a circumcircle");
            }
        }
    }

    fn gradient_frame(w: usize, h: usize) -> VideoFrame {
        let data: Vec<u8> = (0..w * h).flat_map(|i| [(i % w) as u8, (i / w) as u8, 100]).collect();
        VideoFrame::from_vec(PixelFormat::Rgb, w as u32, h as u32, data, 0).unwrap()
    }

    #[test]
    fn the_warp_covers_the_hull_samples_where_vertices_moved_and_skips_what_stays() {
        let frame = gradient_frame(64, 48);
        let pts: Vec<P> = vec![[10.0, 10.0], [50.0, 10.0], [50.0, 40.0], [10.0, 40.0], [30.0, 25.0]];
        let tris = delaunay(&pts);
        let uv = vec![[0.0; 2]; pts.len()];
        // Nothing moves: nothing to draw.
        let patch = warp(&frame, &pts, &pts, &tris, None).unwrap();
        assert!(patch.rgba.chunks(4).all(|p| p[3] == 0));
        // Moving the centre vertex right by 4: every pixel of the hull is drawn, and the pixel at the new
        // centre shows the old centre.
        let mut moved = pts.clone();
        moved[4][0] += 4.0;
        let patch = warp(&frame, &pts, &moved, &tris, None).unwrap();
        let at = |x: usize, y: usize| {
            let o = ((y - patch.y as usize) * patch.width as usize + (x - patch.x as usize)) * 4;
            &patch.rgba[o..o + 4]
        };
        assert_eq!(at(34, 25)[0], 30, "x sampled from the old centre");
        assert_eq!(at(34, 25)[1], 25, "y unchanged");
        let covered = patch.rgba.chunks(4).filter(|p| p[3] == 255).count();
        assert_eq!(covered, 40 * 30, "the 40x30 pixel centres inside the hull, each once");
        // Near an unmoved corner the warp is the identity.
        assert_eq!(&at(11, 11)[..3], &[11, 11, 100]);
        // Interior triangles get the shader.
        let all = vec![true; tris.len()];
        let drawn = DrawnInterior { triangles: &all, uv: &uv, shader: &Black };
        let patch = warp(&frame, &pts, &pts, &tris, Some(drawn)).unwrap();
        let o = ((25 - patch.y as usize) * patch.width as usize + (30 - patch.x as usize)) * 4;
        assert_eq!(&patch.rgba[o..o + 4], &[0, 0, 0, 255]);
    }
}
