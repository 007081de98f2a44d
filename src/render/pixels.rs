//! Reading a frame's pixels, for every renderer: bilinear RGB sampling of any pixel format, the 128x128
//! face crop STSA's canvas uses, the reference bank's snapshot of a frame, and the colours it compares.

use crate::face::Face;
use crate::face::crop::RgbView;
use crate::face::landmarks::CONNECTIONS_FULL;
use crate::frame::VideoFrame;
use crate::guidance::crop::FaceBox;
use crate::guidance::references::{Appearance, Snapshot};
use crate::guidance::{CANVAS, heatmap, sketch};

/// A packed RGB-like frame's bytes and where its pixels and channels are.
#[derive(Clone, Copy)]
struct Packed<'a> {
    data: &'a [u8],
    offset: usize,
    stride: usize,
    bytes_per_pixel: usize,
    /// The R, G and B bytes within a pixel.
    rgb: [usize; 3],
}

/// The precision of [`Sampler::bilinear_span`]'s weights: 11 bits keeps the sums of a 2x2 block's bytes
/// times both weights within a `u32`.
const WEIGHT_BITS: u32 = 11;
const WEIGHT_ONE: u32 = 1 << WEIGHT_BITS;

/// A colour channel rounded to a byte, clamped to 0..=255 (half added before truncating: no libm call).
#[inline]
pub fn to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 255.0) + 0.5) as u8
}

/// Bilinear RGB reads from a frame: direct for packed RGB formats, through [`RgbView`] for YUV.
pub struct Sampler<'a> {
    view: RgbView<'a>,
    packed: Option<Packed<'a>>,
    max_x: f32,
    max_y: f32,
}

impl<'a> Sampler<'a> {
    pub fn new(frame: &'a VideoFrame) -> Self {
        let view = RgbView::new(frame);
        let l = frame.layout();
        let packed = l.format.rgba_offsets().zip(l.format.packed_pixel_size()).map(|((rgb, _), bytes_per_pixel)| {
            Packed { data: frame.data(), offset: l.offsets[0], stride: l.strides[0], bytes_per_pixel, rgb }
        });
        let (max_x, max_y) = ((view.width() - 1) as f32, (view.height() - 1) as f32);
        Sampler { view, packed, max_x, max_y }
    }

    #[inline]
    fn get(&self, x: usize, y: usize) -> [f32; 3] {
        match self.packed {
            Some(Packed { data, offset, stride, bytes_per_pixel, rgb }) => {
                let o = offset + y * stride + x * bytes_per_pixel;
                rgb.map(|c| data[o + c] as f32)
            }
            None => self.view.get(x, y).map(|v| v as f32),
        }
    }

    /// The colour at continuous pixel coordinates (pixel centres at integers), clamped to the frame.
    #[inline]
    pub fn bilinear(&self, x: f32, y: f32) -> [f32; 3] {
        let x = x.clamp(0.0, self.max_x);
        let y = y.clamp(0.0, self.max_y);
        let (ix, iy) = (x as usize, y as usize);
        let (ax, ay) = (x - ix as f32, y - iy as f32);
        // Away from the right and bottom edges of a packed frame: the 2x2 block read straight from its
        // two rows.
        if let Some(p) = &self.packed
            && (ix as f32) < self.max_x
            && (iy as f32) < self.max_y
        {
            let o = p.offset + iy * p.stride + ix * p.bytes_per_pixel;
            let (top, bottom) =
                (&p.data[o..o + 2 * p.bytes_per_pixel], &p.data[o + p.stride..o + p.stride + 2 * p.bytes_per_pixel]);
            return p.rgb.map(|c| {
                let (a, b) = (top[c] as f32, top[c + p.bytes_per_pixel] as f32);
                let (c, d) = (bottom[c] as f32, bottom[c + p.bytes_per_pixel] as f32);
                let upper = a + (b - a) * ax;
                upper + (c + (d - c) * ax - upper) * ay
            });
        }
        let jx = if (ix as f32) < self.max_x { ix + 1 } else { ix };
        let jy = if (iy as f32) < self.max_y { iy + 1 } else { iy };
        let (a, b, c, d) = (self.get(ix, iy), self.get(jx, iy), self.get(ix, jy), self.get(jx, jy));
        std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * ax;
            let bot = c[k] + (d[k] - c[k]) * ax;
            top + (bot - top) * ay
        })
    }

    /// Fills `out` (RGBA, alpha 255) with the colours along a line: pixel `i` from `(x + i * dx, y + i *
    /// dy)`, as [`Sampler::bilinear`] gives them rounded to bytes. A span that lies inside a packed frame
    /// (a warp's span nearly always does) is read in integer arithmetic, its weights in 1/2048ths: more
    /// than twice as fast, the colours within a level of the exact ones.
    pub fn bilinear_span(&self, x: f32, y: f32, dx: f32, dy: f32, out: &mut [u8]) {
        let n = out.len() / 4;
        let last = n.saturating_sub(1) as f32;
        // Strictly inside, with room for the rounding of `x + i * dx`: the 2x2 block never leaves the frame.
        let inside = |x: f32, y: f32| x >= 0.0 && y >= 0.0 && x < self.max_x - 0.01 && y < self.max_y - 0.01;
        match &self.packed {
            Some(p) if inside(x, y) && inside(x + dx * last, y + dy * last) => {
                let bpp = p.bytes_per_pixel;
                const ONE: u32 = WEIGHT_ONE;
                let to_fixed = |v: f32| (v * ONE as f32) as u32;
                for (i, px) in out.chunks_exact_mut(4).enumerate() {
                    let (fx, fy) = (to_fixed(x + dx * i as f32), to_fixed(y + dy * i as f32));
                    let (ax, ay) = (fx & (ONE - 1), fy & (ONE - 1));
                    let o = p.offset + (fy >> WEIGHT_BITS) as usize * p.stride + (fx >> WEIGHT_BITS) as usize * bpp;
                    let (top, bottom) = (&p.data[o..o + 2 * bpp], &p.data[o + p.stride..o + p.stride + 2 * bpp]);
                    for (out, &c) in px.iter_mut().zip(&p.rgb) {
                        let upper = top[c] as u32 * (ONE - ax) + top[c + bpp] as u32 * ax;
                        let lower = bottom[c] as u32 * (ONE - ax) + bottom[c + bpp] as u32 * ax;
                        *out = ((upper * (ONE - ay) + lower * ay + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS))
                            as u8;
                    }
                    px[3] = 255;
                }
            }
            _ => {
                for (i, px) in out.chunks_exact_mut(4).enumerate() {
                    let rgb = self.bilinear(x + dx * i as f32, y + dy * i as f32);
                    for (out, v) in px.iter_mut().zip(rgb) {
                        *out = to_byte(v);
                    }
                    px[3] = 255;
                }
            }
        }
    }
}

/// Landmarks on the cheeks, whose brightness tells a change of lighting.
pub const CHEEKS: [u16; 8] = [205, 425, 50, 280, 187, 411, 36, 266];

/// The bank's snapshot of a frame: the 128x128 face crop, its full-face heatmap and the landmarks in the
/// crop's pixels.
pub fn snapshot(frame: &VideoFrame, face: &Face) -> Snapshot {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let fb = FaceBox::around(&face.landmarks, w, h);
    let crop = face_crop(frame, &fb);
    let normalised: Vec<[f32; 2]> = face.landmarks.iter().map(|&p| fb.normalise(p, w, h)).collect();
    let sketch = sketch::draw(|id| normalised.get(id as usize).copied(), &CONNECTIONS_FULL);
    let landmarks = normalised.iter().map(|p| [p[0] * CANVAS as f32, p[1] * CANVAS as f32]).collect();
    Snapshot { crop, heatmap: heatmap::heatmap(&sketch), landmarks }
}

/// The face box resized to the 128x128 canvas (bilinear, pixel centres, as OpenCV's INTER_LINEAR), RGB.
pub fn face_crop(frame: &VideoFrame, fb: &FaceBox) -> Vec<u8> {
    let (bw, bh) = ((fb.x2 - fb.x1).max(1) as f32, (fb.y2 - fb.y1).max(1) as f32);
    let sampler = Sampler::new(frame);
    let mut crop = Vec::with_capacity(CANVAS * CANVAS * 3);
    for y in 0..CANVAS {
        for x in 0..CANVAS {
            let sx = fb.x1 as f32 + (x as f32 + 0.5) * bw / CANVAS as f32 - 0.5;
            let sy = fb.y1 as f32 + (y as f32 + 0.5) * bh / CANVAS as f32 - 0.5;
            crop.extend(sampler.bilinear(sx, sy).map(|v| (v + 0.5) as u8));
        }
    }
    crop
}

/// What the reference bank compares to notice a changed face: its width and the cheeks' brightness.
pub fn appearance(frame: &VideoFrame, face: &Face) -> Appearance {
    let view = RgbView::new(frame);
    Appearance {
        face_size: face.bbox[2] - face.bbox[0],
        brightness: luma(mean_colour(&view, &face.landmarks, &CHEEKS)),
    }
}

/// Mean colour at some landmarks.
pub fn mean_colour(view: &RgbView<'_>, landmarks: &[[f32; 3]], ids: &[u16]) -> [f32; 3] {
    let (w, h) = (view.width(), view.height());
    let mut sum = [0.0f32; 3];
    for &id in ids {
        let p = landmarks[id as usize];
        let c = view.get((p[0].max(0.0) as usize).min(w - 1), (p[1].max(0.0) as usize).min(h - 1));
        for k in 0..3 {
            sum[k] += c[k] as f32;
        }
    }
    sum.map(|s| s / ids.len() as f32)
}

pub fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::PixelFormat;

    /// A frame whose channels vary fast and differently (so a misplaced tap or weight shows), in `format`.
    fn textured(format: PixelFormat, w: usize, h: usize) -> VideoFrame {
        let colour = |x: usize, y: usize| [(x * 37 + y * 11) % 256, (x * 5 + y * 53) % 256, (x * y + 90) % 256];
        let data: Vec<u8> = match format {
            PixelFormat::Rgb => (0..w * h).flat_map(|i| colour(i % w, i / w).map(|c| c as u8)).collect(),
            PixelFormat::Bgrx => (0..w * h)
                .flat_map(|i| {
                    let [r, g, b] = colour(i % w, i / w).map(|c| c as u8);
                    [b, g, r, 0]
                })
                .collect(),
            other => unreachable!("{other:?}"),
        };
        VideoFrame::from_vec(format, w as u32, h as u32, data, 0).unwrap()
    }

    fn rounded(rgb: [f32; 3]) -> [u8; 3] {
        rgb.map(to_byte)
    }

    #[test]
    fn a_span_reads_what_single_reads_give_within_a_level() {
        for format in [PixelFormat::Rgb, PixelFormat::Bgrx] {
            let frame = textured(format, 40, 30);
            let sampler = Sampler::new(&frame);
            // Inside (the integer path), then leaving the frame across its right and bottom edges (clamped).
            for (x, y, dx, dy, n) in [(2.3, 4.7, 0.93, 0.11, 30), (1.0, 1.0, 0.0, 0.0, 5), (30.2, 25.6, 0.7, 0.3, 20)] {
                let mut out = vec![0u8; n * 4];
                sampler.bilinear_span(x, y, dx, dy, &mut out);
                for (i, px) in out.chunks_exact(4).enumerate() {
                    let want = rounded(sampler.bilinear(x + dx * i as f32, y + dy * i as f32));
                    for c in 0..3 {
                        assert!(px[c].abs_diff(want[c]) <= 1, "{format:?} pixel {i} channel {c}: {px:?} vs {want:?}");
                    }
                    assert_eq!(px[3], 255);
                }
            }
        }
    }

    #[test]
    fn a_span_of_a_planar_frame_reads_through_its_view() {
        let frame =
            VideoFrame::from_vec(PixelFormat::I420, 8, 8, (0..96).map(|i| (i * 7 % 256) as u8).collect(), 0).unwrap();
        let sampler = Sampler::new(&frame);
        let mut out = vec![0u8; 6 * 4];
        sampler.bilinear_span(0.5, 1.25, 1.0, 0.5, &mut out);
        for (i, px) in out.chunks_exact(4).enumerate() {
            assert_eq!(px[..3], rounded(sampler.bilinear(0.5 + i as f32, 1.25 + 0.5 * i as f32)), "pixel {i}");
        }
    }
}
