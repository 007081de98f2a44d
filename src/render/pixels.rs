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
