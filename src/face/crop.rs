//! The crops the face models see, computed as MediaPipe 0.10.21's CPU `ImageToTensor` does: a rotated
//! rectangle of the frame mapped onto the model input with no half-pixel offset, sampled by OpenCV 3.4's
//! fixed-point bilinear warp on 8-bit RGB (source positions rounded to 1/32 pixel, integer weights), so
//! the model inputs equal MediaPipe's bit for bit (but at rare rounding ties).

use crate::frame::{PixelFormat, VideoFrame};

/// A rotated rectangle in pixels: centre, size, rotation (radians, clockwise on screen).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
    pub rot: f32,
}

/// What lies outside the frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Border {
    /// Black (the detector's letterbox).
    Zero,
    /// The nearest edge pixel (the mesh crop).
    Replicate,
}

/// RGB reads from a frame of any supported format.
pub struct RgbView<'a> {
    frame: &'a VideoFrame,
}

impl<'a> RgbView<'a> {
    pub fn new(frame: &'a VideoFrame) -> Self {
        RgbView { frame }
    }

    pub fn width(&self) -> usize {
        self.frame.width() as usize
    }

    pub fn height(&self) -> usize {
        self.frame.height() as usize
    }

    /// The pixel at (x, y), which must be inside the frame.
    #[inline]
    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let l = self.frame.layout();
        let d = self.frame.data();
        match l.format {
            PixelFormat::I420 | PixelFormat::Nv12 => {
                let yy = d[l.offsets[0] + y * l.strides[0] + x] as i32;
                let (u, v) = if l.format == PixelFormat::I420 {
                    (
                        d[l.offsets[1] + (y / 2) * l.strides[1] + x / 2] as i32,
                        d[l.offsets[2] + (y / 2) * l.strides[2] + x / 2] as i32,
                    )
                } else {
                    let o = l.offsets[1] + (y / 2) * l.strides[1] + (x / 2) * 2;
                    (d[o] as i32, d[o + 1] as i32)
                };
                // BT.601 limited range, 16.16 fixed point.
                let c = (yy - 16) * 76284;
                let (u, v) = (u - 128, v - 128);
                let px = |val: i32| ((val + 32768) >> 16).clamp(0, 255) as u8;
                [px(c + 104595 * v), px(c - 25690 * u - 53281 * v), px(c + 132186 * u)]
            }
            packed => {
                let (rgb, _) = packed.rgba_offsets().expect("packed format");
                let bpp = packed.packed_pixel_size().expect("packed format");
                let o = l.offsets[0] + y * l.strides[0] + x * bpp;
                [d[o + rgb[0]], d[o + rgb[1]], d[o + rgb[2]]]
            }
        }
    }
}

/// `x` rounded to the nearest integer, ties to even, for |x| < 2^51: adding and taking away 1.5 x 2^52
/// leaves no fraction bits, so the addition rounds as the FPU does (to nearest, ties to even). The same
/// as `f64::round_ties_even`, which x86-64's baseline (without SSE4.1) calls from libm, a few times slower.
#[inline(always)]
fn round_ties_even(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    (x + SHIFT) - SHIFT
}

/// OpenCV's `RotatedRect::points` in f32: bottom-left, top-left, top-right, bottom-right.
fn box_points(r: &Rect) -> [[f32; 2]; 4] {
    // MediaPipe passes the angle as `rot * 180.f / M_PI` (computed in double, stored as float).
    let angle = (r.rot as f64 * 180.0 / std::f64::consts::PI) as f32;
    let a64 = angle as f64 * std::f64::consts::PI / 180.0;
    let b = a64.cos() as f32 * 0.5;
    let a = a64.sin() as f32 * 0.5;
    let p0 = [r.cx - a * r.h - b * r.w, r.cy + b * r.h - a * r.w];
    let p1 = [r.cx + a * r.h - b * r.w, r.cy - b * r.h - a * r.w];
    let p2 = [2.0 * r.cx - p0[0], 2.0 * r.cy - p0[1]];
    let p3 = [2.0 * r.cx - p1[0], 2.0 * r.cy - p1[1]];
    [p0, p1, p2, p3]
}

/// Maps `rect` of the frame onto an `out_w` x `out_h` RGB image (interleaved u8).
pub fn warp(view: &RgbView<'_>, rect: &Rect, out_w: usize, out_h: usize, border: Border) -> Vec<u8> {
    let mut out = vec![0u8; out_w * out_h * 3];
    warp_into(view, rect, out_w, out_h, border, &mut out);
    out
}

/// [`warp`] into a caller's buffer of `out_w * out_h * 3` bytes.
pub fn warp_into(view: &RgbView<'_>, rect: &Rect, out_w: usize, out_h: usize, border: Border, out: &mut [u8]) {
    let [bl, tl, tr, _] = box_points(rect);
    // dst -> src: TL + x/Wt * (TR - TL) + y/Ht * (BL - TL), in f64 from the f32 corners.
    let (ox, oy) = (tl[0] as f64, tl[1] as f64);
    let (ax, ay) = ((tr[0] as f64 - ox) / out_w as f64, (tr[1] as f64 - oy) / out_w as f64);
    let (bx, by) = ((bl[0] as f64 - ox) / out_h as f64, (bl[1] as f64 - oy) / out_h as f64);
    let (w, h) = (view.width() as i64, view.height() as i64);
    let fetch = |x: i64, y: i64| -> [u8; 3] {
        match border {
            Border::Replicate => view.get(x.clamp(0, w - 1) as usize, y.clamp(0, h - 1) as usize),
            Border::Zero => {
                if x < 0 || y < 0 || x >= w || y >= h {
                    [0; 3]
                } else {
                    view.get(x as usize, y as usize)
                }
            }
        }
    };
    // Packed RGB formats inside the frame read their bytes directly (the common case).
    let layout = view.frame.layout();
    let packed = layout.format.rgba_offsets().map(|(rgb, _)| (rgb, layout.format.packed_pixel_size().unwrap_or(3)));
    let (data, stride, base) = (view.frame.data(), layout.strides[0], layout.offsets[0]);
    for y in 0..out_h {
        for x in 0..out_w {
            let sx = ox + ax * x as f64 + bx * y as f64;
            let sy = oy + ay * x as f64 + by * y as f64;
            let xi = round_ties_even(sx * 32.0) as i64;
            let yi = round_ties_even(sy * 32.0) as i64;
            let (x0, fx) = (xi >> 5, (xi & 31) as i32);
            let (y0, fy) = (yi >> 5, (yi & 31) as i32);
            // Integer weights summing to 32768: at most 255 x 32768 per channel, within an i32.
            let w00 = (32 - fx) * (32 - fy) * 32;
            let w01 = fx * (32 - fy) * 32;
            let w10 = (32 - fx) * fy * 32;
            let w11 = fx * fy * 32;
            let inside = x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h;
            let (p00, p01, p10, p11) = match packed {
                Some((rgb, bpp)) if inside => {
                    let at = base + y0 as usize * stride + x0 as usize * bpp;
                    let px = |o: usize| rgb.map(|k| data[o + k]);
                    (px(at), px(at + bpp), px(at + stride), px(at + stride + bpp))
                }
                _ => (fetch(x0, y0), fetch(x0 + 1, y0), fetch(x0, y0 + 1), fetch(x0 + 1, y0 + 1)),
            };
            let o = (y * out_w + x) * 3;
            for c in 0..3 {
                let s = w00 * p00[c] as i32 + w01 * p01[c] as i32 + w10 * p10[c] as i32 + w11 * p11[c] as i32;
                out[o + c] = ((s + 16384) >> 15).clamp(0, 255) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_matches_the_standard_library() {
        let ties = (-64..64).map(|k| k as f64 + 0.5);
        let near = (-20_000..20_000).map(|k| k as f64 * 0.03125 + 1e-9 * (k % 7) as f64);
        let odd = (0..5000).map(|k| (k as f64 * 0.7317).sin() * 1e5);
        for x in ties.chain(near).chain(odd).chain([0.0, -0.0, 1e12 + 0.5, -1e12 - 0.5]) {
            assert_eq!(round_ties_even(x), x.round_ties_even(), "{x}");
        }
    }
}
