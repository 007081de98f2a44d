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

/// Box average of radius `r` along a line of `n` values `get(i)`, written with `set` (running sums:
/// O(n) whatever the radius; the window is cut at the ends).
fn box_line(n: usize, r: usize, get: impl Fn(usize) -> f32, mut set: impl FnMut(usize, f32)) {
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0f32);
    for i in 0..n {
        prefix.push(prefix[i] + get(i));
    }
    let norm = 1.0 / (2 * r + 1) as f32;
    for i in 0..n {
        let (a, b) = (i.saturating_sub(r), (i + r + 1).min(n));
        set(i, (prefix[b] - prefix[a]) * norm);
    }
}

/// Separable box blur of radius `r`, applied twice (close to a Gaussian).
fn blur(mask: &mut [f32], w: usize, h: usize, r: usize) {
    let mut tmp = vec![0.0f32; mask.len()];
    for _ in 0..2 {
        for y in 0..h {
            box_line(w, r, |x| mask[y * w + x], |x, v| tmp[y * w + x] = v);
        }
        for x in 0..w {
            box_line(h, r, |y| tmp[y * w + x], |y, v| mask[y * w + x] = v);
        }
    }
}

/// The rendered face (`CANVAS`x`CANVAS` RGB) as a patch over `face_box`, blended inside the face contour.
pub fn face_patch(frame: &VideoFrame, rendered: &[u8], face_box: &FaceBox, landmarks: &[[f32; 3]]) -> Patch {
    let (x1, y1) = (face_box.x1, face_box.y1);
    let (w, h) = (face_box.x2.saturating_sub(x1).max(1), face_box.y2.saturating_sub(y1).max(1));
    // Bilinear resize of the rendered face into the box (OpenCV's INTER_LINEAR pixel-centre mapping).
    let (sx, sy) = (CANVAS as f32 / w as f32, CANVAS as f32 / h as f32);
    let sample = |x: usize, y: usize| -> [f32; 3] {
        let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (CANVAS - 1) as f32);
        let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (CANVAS - 1) as f32);
        let (x0, y0) = (fx as usize, fy as usize);
        let (x1, y1) = ((x0 + 1).min(CANVAS - 1), (y0 + 1).min(CANVAS - 1));
        let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
        let p = |xx: usize, yy: usize, c: usize| rendered[(yy * CANVAS + xx) * 3 + c] as f32;
        std::array::from_fn(|c| {
            let top = p(x0, y0, c) * (1.0 - ax) + p(x1, y0, c) * ax;
            let bot = p(x0, y1, c) * (1.0 - ax) + p(x1, y1, c) * ax;
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
    // Colour match: shift the rendered face so its mean inside the mask equals the frame's.
    let view = RgbView::new(frame);
    let (fw, fh) = (view.width(), view.height());
    let mut sum_f = [0.0f64; 3];
    let mut sum_r = [0.0f64; 3];
    let mut n = 0.0f64;
    let mut resized = vec![[0.0f32; 3]; w * h];
    for y in 0..h {
        for x in 0..w {
            resized[y * w + x] = sample(x, y);
            if inside[y * w + x] > 0.0 && x1 + x < fw && y1 + y < fh {
                let p = view.get(x1 + x, y1 + y);
                for c in 0..3 {
                    sum_f[c] += p[c] as f64;
                    sum_r[c] += resized[y * w + x][c] as f64;
                }
                n += 1.0;
            }
        }
    }
    let shift: [f32; 3] = std::array::from_fn(|c| if n > 0.0 { ((sum_f[c] - sum_r[c]) / n) as f32 } else { 0.0 });
    let mut rgba = Vec::with_capacity(w * h * 4);
    for (p, a) in resized.iter().zip(&alpha) {
        for c in 0..3 {
            rgba.push((p[c] + shift[c]).round().clamp(0.0, 255.0) as u8);
        }
        rgba.push((a * 255.0).round() as u8);
    }
    Patch { x: x1 as i32, y: y1 as i32, width: w as u32, height: h as u32, rgba }
}
