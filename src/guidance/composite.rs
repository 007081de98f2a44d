//! Pasting the rendered 128x128 face back into the frame: resized into the face box, colour-matched to
//! the frame, and blended through a feathered mask of the lower face, so no box or seam shows. The
//! mask is the face-oval polygon of the tracked landmarks (the original uses a second, 68-point model;
//! this uses the FaceMesh points it already has), with alpha rising from 0 at the contour to 1 a few
//! pixels inside. The result is a [`Patch`] the engine blends into any pixel format; pixels outside the
//! contour are never touched.

use super::CANVAS;
use super::crop::FaceBox;
use crate::face::crop::RgbView;
use crate::face::landmarks::STSA_131;
use crate::frame::{Patch, VideoFrame};

/// The face-oval landmarks (jaw and temples) in order, closed over the forehead.
fn contour(landmarks: &[[f32; 3]]) -> Vec<[f32; 2]> {
    STSA_131[..25].iter().map(|&id| [landmarks[id as usize][0], landmarks[id as usize][1]]).collect()
}

/// 1 inside the polygon (pixel centres), 0 outside, on a `w` x `h` grid whose origin is `(ox, oy)`.
fn fill_polygon(poly: &[[f32; 2]], ox: i32, oy: i32, w: usize, h: usize) -> Vec<f32> {
    let mut mask = vec![0.0f32; w * h];
    let mut xs = Vec::new();
    for y in 0..h {
        let cy = (oy + y as i32) as f32 + 0.5;
        xs.clear();
        for i in 0..poly.len() {
            let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
            if (a[1] <= cy) != (b[1] <= cy) {
                xs.push(a[0] + (cy - a[1]) / (b[1] - a[1]) * (b[0] - a[0]));
            }
        }
        xs.sort_by(f32::total_cmp);
        for pair in xs.chunks_exact(2) {
            let x0 = ((pair[0] - 0.5 - ox as f32).ceil().max(0.0)) as usize;
            let x1 = ((pair[1] - 0.5 - ox as f32).floor() + 1.0).clamp(0.0, w as f32) as usize;
            for v in &mut mask[y * w + x0.min(w)..y * w + x1.max(x0.min(w))] {
                *v = 1.0;
            }
        }
    }
    mask
}

/// Separable box blur of radius `r` (window cut at the edges, divided by its full size), applied twice
/// (close to a Gaussian). Running sums along rows, and over whole rows for the vertical pass, so the cost
/// does not depend on `r` and memory is read in order.
fn blur(mask: &mut [f32], w: usize, h: usize, r: usize) {
    let norm = 1.0 / (2 * r + 1) as f32;
    let mut tmp = vec![0.0f32; mask.len()];
    let mut acc = vec![0.0f32; w];
    for _ in 0..2 {
        for (src, dst) in mask.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
            let mut sum: f32 = src[..r.min(w)].iter().sum();
            for x in 0..w {
                if x + r < w {
                    sum += src[x + r];
                }
                if x > r {
                    sum -= src[x - r - 1];
                }
                dst[x] = sum * norm;
            }
        }
        acc.fill(0.0);
        for row in tmp.chunks_exact(w).take(r) {
            acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
        }
        for y in 0..h {
            if y + r < h {
                acc.iter_mut().zip(&tmp[(y + r) * w..(y + r + 1) * w]).for_each(|(a, v)| *a += v);
            }
            if y > r {
                acc.iter_mut().zip(&tmp[(y - r - 1) * w..(y - r) * w]).for_each(|(a, v)| *a -= v);
            }
            mask[y * w..(y + 1) * w].iter_mut().zip(&acc).for_each(|(m, a)| *m = a * norm);
        }
    }
}

/// The rendered face (`CANVAS`x`CANVAS` RGB) as a patch over `face_box`, blended inside the face contour.
pub fn face_patch(frame: &VideoFrame, rendered: &[u8], face_box: &FaceBox, landmarks: &[[f32; 3]]) -> Patch {
    let (x1, y1) = (face_box.x1, face_box.y1);
    let (w, h) = (face_box.x2.saturating_sub(x1).max(1), face_box.y2.saturating_sub(y1).max(1));
    // Bilinear resize of the rendered face into the box (OpenCV's INTER_LINEAR pixel-centre mapping),
    // with the source positions and weights of each column and row computed once.
    let taps = |n: usize, scale: f32| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let f = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (CANVAS - 1) as f32);
                let i0 = f as usize;
                (i0, (i0 + 1).min(CANVAS - 1), f - i0 as f32)
            })
            .collect()
    };
    let (cols, rows) = (taps(w, CANVAS as f32 / w as f32), taps(h, CANVAS as f32 / h as f32));
    let sample = |x: usize, y: usize| -> [f32; 3] {
        let ((x0, x1, ax), (y0, y1, ay)) = (cols[x], rows[y]);
        let (r0, r1) = (&rendered[y0 * CANVAS * 3..], &rendered[y1 * CANVAS * 3..]);
        std::array::from_fn(|c| {
            let top = r0[x0 * 3 + c] as f32 * (1.0 - ax) + r0[x1 * 3 + c] as f32 * ax;
            let bot = r1[x0 * 3 + c] as f32 * (1.0 - ax) + r1[x1 * 3 + c] as f32 * ax;
            top * (1.0 - ay) + bot * ay
        })
    };
    let mut alpha = fill_polygon(&contour(landmarks), x1 as i32, y1 as i32, w, h);
    let inside = alpha.clone();
    let r = (w.min(h) / 24).max(1);
    blur(&mut alpha, w, h, r);
    // 0 at the contour, 1 once `r` pixels inside; never outside.
    for (a, i) in alpha.iter_mut().zip(&inside) {
        *a = if *i > 0.0 { ((*a - 0.5) * 2.0).clamp(0.0, 1.0) } else { 0.0 };
    }
    // Colour match: shift the rendered face so its mean inside the mask equals the frame's. The means
    // are taken on every `step`-th pixel both ways (about 128x128 samples whatever the box size).
    let view = RgbView::new(frame);
    let (fw, fh) = (view.width(), view.height());
    let step = (w.max(h) / CANVAS).max(1);
    let (mut sum_f, mut sum_r, mut n) = ([0.0f64; 3], [0.0f64; 3], 0.0f64);
    for y in (0..h).step_by(step) {
        for x in (0..w).step_by(step) {
            if inside[y * w + x] > 0.0 && x1 + x < fw && y1 + y < fh {
                let (p, r) = (view.get(x1 + x, y1 + y), sample(x, y));
                for c in 0..3 {
                    sum_f[c] += p[c] as f64;
                    sum_r[c] += r[c] as f64;
                }
                n += 1.0;
            }
        }
    }
    let shift: [f32; 3] = std::array::from_fn(|c| if n > 0.0 { ((sum_f[c] - sum_r[c]) / n) as f32 } else { 0.0 });
    let mut rgba = vec![0u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let a = alpha[i];
            if a <= 0.0 {
                continue; // fully transparent: colour irrelevant
            }
            let p = sample(x, y);
            let o = &mut rgba[i * 4..i * 4 + 4];
            for c in 0..3 {
                o[c] = (p[c] + shift[c]).round().clamp(0.0, 255.0) as u8;
            }
            o[3] = (a * 255.0).round() as u8;
        }
    }
    Patch { x: x1 as i32, y: y1 as i32, width: w as u32, height: h as u32, rgba }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blur_spreads_a_step_evenly_and_keeps_flat_areas() {
        let (w, h) = (40, 30);
        let mut m: Vec<f32> = (0..w * h).map(|i| if i % w < 20 { 1.0 } else { 0.0 }).collect();
        blur(&mut m, w, h, 3);
        let row = &m[15 * w..16 * w];
        assert!((row[10] - 1.0).abs() < 1e-5 && row[30].abs() < 1e-5, "flat areas stay");
        assert!((row[19] + row[20] - 1.0).abs() < 1e-4, "the step is split symmetrically");
        assert!(row[8..].windows(2).all(|p| p[1] <= p[0] + 1e-6), "monotonic ramp");
    }

    #[test]
    fn polygon_fill_covers_pixel_centres_inside() {
        let square = [[2.0, 2.0], [6.0, 2.0], [6.0, 6.0], [2.0, 6.0]];
        let m = fill_polygon(&square, 0, 0, 8, 8);
        let count = m.iter().filter(|&&v| v > 0.0).count();
        assert_eq!(count, 16);
        assert_eq!(m[3 * 8 + 3], 1.0);
        assert_eq!(m[8 + 1], 0.0);
    }
}
