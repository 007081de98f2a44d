//! Video frames as the engine sees them: pixel format, plane layout, running-time pts, and shared read-only
//! pixel data. Frames enter the engine from the element (a mapped `gst::Buffer`, no copy) or from the CLI's
//! decoders, and leave it either untouched or as a new image with a rendered patch composited in (one copy).

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Pixel formats the engine accepts. Names follow GStreamer's video formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    Rgb,
    Rgba,
    Bgrx,
    Bgra,
    I420,
    Nv12,
}

impl PixelFormat {
    pub const ALL: [PixelFormat; 6] = [
        PixelFormat::Rgb,
        PixelFormat::Rgba,
        PixelFormat::Bgrx,
        PixelFormat::Bgra,
        PixelFormat::I420,
        PixelFormat::Nv12,
    ];

    /// The GStreamer name of the format (`video/x-raw,format=...`).
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Rgb => "RGB",
            PixelFormat::Rgba => "RGBA",
            PixelFormat::Bgrx => "BGRx",
            PixelFormat::Bgra => "BGRA",
            PixelFormat::I420 => "I420",
            PixelFormat::Nv12 => "NV12",
        }
    }

    /// Parses a GStreamer format name.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| Error::UnsupportedFormat(name.to_owned()))
    }

    /// Number of planes.
    pub fn n_planes(self) -> usize {
        match self {
            PixelFormat::I420 => 3,
            PixelFormat::Nv12 => 2,
            _ => 1,
        }
    }

    /// Bytes per pixel of a packed RGB format; `None` for planar YUV.
    pub fn packed_pixel_size(self) -> Option<usize> {
        match self {
            PixelFormat::Rgb => Some(3),
            PixelFormat::Rgba | PixelFormat::Bgrx | PixelFormat::Bgra => Some(4),
            PixelFormat::I420 | PixelFormat::Nv12 => None,
        }
    }

    /// Byte offsets of R, G, B (and alpha, if any) inside a packed pixel.
    pub(crate) fn rgba_offsets(self) -> Option<([usize; 3], Option<usize>)> {
        match self {
            PixelFormat::Rgb => Some(([0, 1, 2], None)),
            PixelFormat::Rgba => Some(([0, 1, 2], Some(3))),
            PixelFormat::Bgrx => Some(([2, 1, 0], None)),
            PixelFormat::Bgra => Some(([2, 1, 0], Some(3))),
            PixelFormat::I420 | PixelFormat::Nv12 => None,
        }
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where each plane starts in the frame's bytes and how long its rows are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLayout {
    pub format: PixelFormat,
    pub width: u32,
    pub height: u32,
    pub offsets: [usize; 3],
    pub strides: [usize; 3],
}

fn round_up_4(v: usize) -> usize {
    (v + 3) & !3
}

impl FrameLayout {
    /// GStreamer's default layout for a format and size (rows padded to 4 bytes), so buffers made here
    /// match `video/x-raw` caps without a `GstVideoMeta`.
    pub fn new(format: PixelFormat, width: u32, height: u32) -> Self {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        match format {
            PixelFormat::I420 => {
                let ys = round_up_4(w);
                let cs = round_up_4(cw);
                FrameLayout { format, width, height, offsets: [0, ys * h, ys * h + cs * ch], strides: [ys, cs, cs] }
            }
            PixelFormat::Nv12 => {
                let ys = round_up_4(w);
                FrameLayout { format, width, height, offsets: [0, ys * h, 0], strides: [ys, ys, 0] }
            }
            packed => {
                let s = round_up_4(w * packed.packed_pixel_size().unwrap_or(4));
                FrameLayout { format, width, height, offsets: [0; 3], strides: [s, 0, 0] }
            }
        }
    }

    /// The same layout with plane offsets and strides as GStreamer's `VideoInfo` and `VideoMeta` give
    /// them (extra entries are ignored).
    pub fn with_planes(mut self, offsets: &[usize], strides: &[i32]) -> Self {
        for p in 0..self.format.n_planes().min(offsets.len()).min(strides.len()) {
            self.offsets[p] = offsets[p];
            self.strides[p] = strides[p].max(0) as usize;
        }
        self
    }

    /// The layout GStreamer describes (`VideoInfo` or `VideoMeta`): format name, size, plane offsets
    /// and strides.
    pub fn from_planes(format: &str, width: u32, height: u32, offsets: &[usize], strides: &[i32]) -> Result<Self> {
        Ok(Self::new(PixelFormat::from_name(format)?, width, height).with_planes(offsets, strides))
    }

    /// Size in pixels of plane `p` (chroma planes are subsampled 2x2 for I420 and NV12).
    pub fn plane_size(&self, p: usize) -> (usize, usize) {
        let (w, h) = (self.width as usize, self.height as usize);
        if p == 0 { (w, h) } else { (w.div_ceil(2), h.div_ceil(2)) }
    }

    /// Bytes per row actually used by plane `p`.
    fn row_bytes(&self, p: usize) -> usize {
        let (pw, _) = self.plane_size(p);
        match (self.format, p) {
            (PixelFormat::I420, _) => pw,
            (PixelFormat::Nv12, 0) => pw,
            (PixelFormat::Nv12, _) => pw * 2,
            (packed, _) => pw * packed.packed_pixel_size().unwrap_or(4),
        }
    }

    /// The number of bytes the layout needs (end of the last plane).
    pub fn min_size(&self) -> usize {
        (0..self.format.n_planes())
            .map(|p| {
                let (_, ph) = self.plane_size(p);
                if ph == 0 { self.offsets[p] } else { self.offsets[p] + self.strides[p] * (ph - 1) + self.row_bytes(p) }
            })
            .max()
            .unwrap_or(0)
    }

    /// Checks strides against the width and the data length against the planes.
    pub fn validate(&self, data_len: usize) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::InvalidFrame(format!("{}x{} frame has no pixels", self.width, self.height)));
        }
        for p in 0..self.format.n_planes() {
            if self.strides[p] < self.row_bytes(p) {
                return Err(Error::InvalidFrame(format!(
                    "plane {p} of a {}x{} {} frame has stride {} < row size {}",
                    self.width,
                    self.height,
                    self.format,
                    self.strides[p],
                    self.row_bytes(p)
                )));
            }
        }
        let need = self.min_size();
        if data_len < need {
            return Err(Error::InvalidFrame(format!(
                "{}x{} {} frame needs {need} bytes but has {data_len}",
                self.width, self.height, self.format
            )));
        }
        Ok(())
    }
}

/// Read-only pixel storage shared between the engine thread and the render worker.
pub type FrameData = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// How long a frame lasts when neither it nor its stream says (25 fps).
pub const DEFAULT_FRAME_NS: u64 = 40_000_000;

/// One video frame: layout, data and timing (running time in ns, as GStreamer uses).
#[derive(Clone)]
pub struct VideoFrame {
    layout: FrameLayout,
    data: FrameData,
    /// Presentation time as running time, in nanoseconds.
    pub pts: u64,
    /// Duration in nanoseconds, when known.
    pub duration: Option<u64>,
}

impl fmt::Debug for VideoFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VideoFrame")
            .field("layout", &self.layout)
            .field("pts", &self.pts)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl VideoFrame {
    /// Wraps `data` (not copied) after checking it against `layout`.
    pub fn new(layout: FrameLayout, data: FrameData, pts: u64, duration: Option<u64>) -> Result<Self> {
        layout.validate((*data).as_ref().len())?;
        Ok(VideoFrame { layout, data, pts, duration })
    }

    /// A frame in GStreamer's default layout from an owned byte vector.
    pub fn from_vec(format: PixelFormat, width: u32, height: u32, data: Vec<u8>, pts: u64) -> Result<Self> {
        Self::new(FrameLayout::new(format, width, height), Arc::new(data), pts, None)
    }

    /// The same pixels (shared, not copied) at another time.
    pub fn with_pts(&self, pts: u64, duration: Option<u64>) -> VideoFrame {
        VideoFrame { layout: self.layout, data: self.data.clone(), pts, duration }
    }

    pub fn layout(&self) -> &FrameLayout {
        &self.layout
    }
    pub fn format(&self) -> PixelFormat {
        self.layout.format
    }
    pub fn width(&self) -> u32 {
        self.layout.width
    }
    pub fn height(&self) -> u32 {
        self.layout.height
    }
    /// All bytes of the frame, planes at `layout().offsets`.
    pub fn data(&self) -> &[u8] {
        (*self.data).as_ref()
    }

    /// A copy of the frame's bytes with `patch` alpha-blended in: the one copy a rendered frame costs.
    pub fn composite(&self, patch: &Patch) -> Vec<u8> {
        let mut out = self.data().to_vec();
        patch.blend_into(&self.layout, &mut out);
        out
    }
}

/// A rectangle of RGBA pixels (straight alpha) to blend into a frame at `(x, y)`; it may reach past the
/// frame's edges (the outside part is ignored). Renderers return their result as a patch, so the engine can
/// blend it into any pixel format and re-use the last good one for late frames.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// BT.601 limited-range RGB -> YCbCr, as GStreamer's videoconvert does for SD/unspecified colorimetry.
fn rgb_to_yuv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let y = 16.0 + 0.256_788 * r + 0.504_129 * g + 0.097_906 * b;
    let u = 128.0 - 0.148_223 * r - 0.290_993 * g + 0.439_216 * b;
    let v = 128.0 + 0.439_216 * r - 0.367_788 * g - 0.071_427 * b;
    (y, u, v)
}

fn mix(dst: &mut u8, src: f32, a: f32) {
    // Rounded by adding a half before truncating (the value is clamped non-negative): no libm call.
    *dst = ((*dst as f32 + (src - *dst as f32) * a).clamp(0.0, 255.0) + 0.5) as u8;
}

impl Patch {
    /// A patch of one colour and one alpha.
    pub fn solid(x: i32, y: i32, width: u32, height: u32, rgba: [u8; 4]) -> Self {
        let rgba = rgba.iter().copied().cycle().take(width as usize * height as usize * 4).collect();
        Patch { x, y, width, height, rgba }
    }

    /// This patch with `top` drawn over it ("over", straight alpha), on the bounding box of both;
    /// transparent where neither is.
    pub fn under(self, top: &Patch) -> Patch {
        let (x0, y0) = (self.x.min(top.x), self.y.min(top.y));
        let x1 = (self.x + self.width as i32).max(top.x + top.width as i32);
        let y1 = (self.y + self.height as i32).max(top.y + top.height as i32);
        let (w, h) = ((x1 - x0) as usize, (y1 - y0) as usize);
        let mut rgba = vec![0u8; w * h * 4];
        // Each of a patch's rows, with where it starts in `rgba`.
        fn rows(p: &Patch, x0: i32, y0: i32, w: usize) -> impl Iterator<Item = (usize, &[u8])> {
            let (dx, dy) = ((p.x - x0) as usize, (p.y - y0) as usize);
            (dy..).zip(p.rgba.chunks_exact(p.width as usize * 4)).map(move |(y, line)| ((y * w + dx) * 4, line))
        }
        // Anything over nothing: as it is.
        for (at, line) in rows(&self, x0, y0, w) {
            rgba[at..at + line.len()].copy_from_slice(line);
        }
        for (at, line) in rows(top, x0, y0, w) {
            for (s, d) in line.chunks_exact(4).zip(rgba[at..at + line.len()].chunks_exact_mut(4)) {
                if s[3] == 0 {
                    continue;
                }
                // Opaque over anything, or anything over nothing: as it is.
                if s[3] == 255 || d[3] == 0 {
                    d.copy_from_slice(s);
                    continue;
                }
                let (a, b) = (s[3] as f32 / 255.0, d[3] as f32 / 255.0 * (1.0 - s[3] as f32 / 255.0));
                let out = a + b;
                for c in 0..3 {
                    d[c] = ((s[c] as f32 * a + d[c] as f32 * b) / out + 0.5) as u8;
                }
                d[3] = (out * 255.0 + 0.5) as u8;
            }
        }
        Patch { x: x0, y: y0, width: w as u32, height: h as u32, rgba }
    }

    fn pixel(&self, px: usize, py: usize) -> [u8; 4] {
        let i = (py * self.width as usize + px) * 4;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2], self.rgba[i + 3]]
    }

    /// The part of the patch inside a `w`x`h` frame, in frame coordinates: (x0, y0, x1, y1).
    fn clip(&self, w: u32, h: u32) -> Option<(usize, usize, usize, usize)> {
        let x0 = self.x.max(0) as i64;
        let y0 = self.y.max(0) as i64;
        let x1 = (self.x as i64 + self.width as i64).min(w as i64);
        let y1 = (self.y as i64 + self.height as i64).min(h as i64);
        (x0 < x1 && y0 < y1).then_some((x0 as usize, y0 as usize, x1 as usize, y1 as usize))
    }

    /// Alpha-blends the patch into `data` laid out as `layout`. Chroma of I420/NV12 is blended per 2x2
    /// block with the block's mean colour and alpha.
    pub fn blend_into(&self, layout: &FrameLayout, data: &mut [u8]) {
        let Some((x0, y0, x1, y1)) = self.clip(layout.width, layout.height) else { return };
        let (px0, py0) = ((x0 as i64 - self.x as i64) as usize, (y0 as i64 - self.y as i64) as usize);
        if let Some((rgb, _)) = layout.format.rgba_offsets() {
            let bpp = layout.format.packed_pixel_size().unwrap_or(4);
            let width = self.width as usize;
            for y in y0..y1 {
                let row = layout.offsets[0] + y * layout.strides[0];
                let src = &self.rgba[((py0 + y - y0) * width + px0) * 4..][..(x1 - x0) * 4];
                let dst = &mut data[row + x0 * bpp..row + x1 * bpp];
                for (p, d) in src.chunks_exact(4).zip(dst.chunks_exact_mut(bpp)) {
                    match p[3] {
                        0 => {}
                        255 => (0..3).for_each(|c| d[rgb[c]] = p[c]),
                        alpha => (0..3).for_each(|c| mix(&mut d[rgb[c]], p[c] as f32, alpha as f32 / 255.0)),
                    }
                }
            }
            return;
        }
        // Planar YUV: luma per pixel.
        for y in y0..y1 {
            let row = layout.offsets[0] + y * layout.strides[0];
            for x in x0..x1 {
                let p = self.pixel(px0 + x - x0, py0 + y - y0);
                let a = p[3] as f32 / 255.0;
                if a > 0.0 {
                    let (yy, _, _) = rgb_to_yuv(p[0] as f32, p[1] as f32, p[2] as f32);
                    mix(&mut data[row + x], yy, a);
                }
            }
        }
        // Chroma per 2x2 block.
        for cy in y0 / 2..y1.div_ceil(2) {
            for cx in x0 / 2..x1.div_ceil(2) {
                let (mut su, mut sv, mut sa, mut n) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
                for (x, y) in [(2 * cx, 2 * cy), (2 * cx + 1, 2 * cy), (2 * cx, 2 * cy + 1), (2 * cx + 1, 2 * cy + 1)] {
                    if x < x0 || x >= x1 || y < y0 || y >= y1 {
                        continue;
                    }
                    let p = self.pixel(px0 + x - x0, py0 + y - y0);
                    let a = p[3] as f32 / 255.0;
                    let (_, u, v) = rgb_to_yuv(p[0] as f32, p[1] as f32, p[2] as f32);
                    su += u * a;
                    sv += v * a;
                    sa += a;
                    n += 1.0;
                }
                if sa <= 0.0 {
                    continue;
                }
                let (u, v, a) = (su / sa, sv / sa, sa / 4.0_f32.max(n));
                match layout.format {
                    PixelFormat::I420 => {
                        mix(&mut data[layout.offsets[1] + cy * layout.strides[1] + cx], u, a);
                        mix(&mut data[layout.offsets[2] + cy * layout.strides[2] + cx], v, a);
                    }
                    _ => {
                        let o = layout.offsets[1] + cy * layout.strides[1] + 2 * cx;
                        mix(&mut data[o], u, a);
                        mix(&mut data[o + 1], v, a);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layouts_match_gstreamer() {
        // Sizes GStreamer's video-info computes for these caps.
        assert_eq!(FrameLayout::new(PixelFormat::Rgb, 321, 2).min_size(), 964 + 963);
        assert_eq!(FrameLayout::new(PixelFormat::I420, 320, 240).min_size(), 320 * 240 * 3 / 2);
        assert_eq!(FrameLayout::new(PixelFormat::I420, 5, 3).offsets, [0, 24, 32]);
        assert_eq!(FrameLayout::new(PixelFormat::Nv12, 640, 480).min_size(), 640 * 480 * 3 / 2);
        assert_eq!(FrameLayout::new(PixelFormat::Bgrx, 3, 3).strides[0], 12);
    }

    #[test]
    fn short_data_is_rejected() {
        let err = VideoFrame::from_vec(PixelFormat::Rgba, 4, 4, vec![0; 63], 0).unwrap_err();
        assert!(err.to_string().contains("needs 64 bytes"), "{err}");
    }

    #[test]
    fn patch_blends_inside_and_leaves_outside() {
        let f = VideoFrame::from_vec(PixelFormat::Bgra, 4, 4, vec![10; 64], 0).unwrap();
        let out = f.composite(&Patch::solid(2, 2, 8, 8, [200, 100, 50, 255]));
        assert_eq!(&out[0..4], &[10, 10, 10, 10]);
        let o = (3 * 4 + 3) * 4;
        assert_eq!(&out[o..o + 4], &[50, 100, 200, 10]); // B, G, R; alpha of the frame kept
    }

    #[test]
    fn patch_blends_into_i420() {
        let f = VideoFrame::from_vec(PixelFormat::I420, 4, 4, vec![128; 32], 0).unwrap();
        let out = f.composite(&Patch::solid(0, 0, 2, 2, [255, 255, 255, 255]));
        assert_eq!(out[0], 235); // white in limited range
        assert_eq!(out[2], 128); // luma outside untouched
        assert_eq!(out[16], 128); // chroma of white is neutral
    }

    #[test]
    fn patches_combine_on_their_union_the_top_one_over() {
        let mut top = Patch::solid(3, 1, 2, 2, [0, 0, 200, 255]);
        top.rgba[3] = 0; // its first pixel transparent
        let both = Patch::solid(0, 0, 4, 2, [100, 0, 0, 255]).under(&top);
        assert_eq!((both.x, both.y, both.width, both.height), (0, 0, 5, 3));
        let px = |x: usize, y: usize| both.pixel(x, y);
        assert_eq!(px(3, 1), [100, 0, 0, 255], "under the top's transparent pixel");
        assert_eq!(px(4, 1), [0, 0, 200, 255]);
        assert_eq!(px(3, 2), [0, 0, 200, 255]);
        assert_eq!(px(0, 2)[3], 0, "neither covers it");
    }
}
