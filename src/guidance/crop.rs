//! The face box STSA crops around the 131 sketch landmarks (their bounding box padded by 5 pixels,
//! clamped to the frame, truncated to whole pixels as the original does) and the landmarks normalised to
//! it, which is what the sketches are drawn from.

use crate::face::landmarks::STSA_131;

/// The padded box, in normalised frame coordinates and in whole pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaceBox {
    pub xmin: f64,
    pub ymin: f64,
    pub xmax: f64,
    pub ymax: f64,
    /// `frame[y1..y2, x1..x2]` is the crop (Python's `int()` truncation).
    pub x1: usize,
    pub y1: usize,
    pub x2: usize,
    pub y2: usize,
}

impl FaceBox {
    /// The box of the 131 sketch landmarks among `landmarks` (468 FaceMesh points in pixels) of a
    /// `width` x `height` frame.
    pub fn around(landmarks: &[[f32; 3]], width: usize, height: usize) -> Self {
        let (w, h) = (width as f64, height as f64);
        let (mut xmin, mut ymin, mut xmax, mut ymax) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for &id in &STSA_131 {
            let p = landmarks[id as usize];
            let (x, y) = (p[0] as f64 / w, p[1] as f64 / h);
            xmin = xmin.min(x);
            xmax = xmax.max(x);
            ymin = ymin.min(y);
            ymax = ymax.max(y);
        }
        let xmin = (xmin - 5.0 / w).max(0.0);
        let xmax = (xmax + 5.0 / w).min(1.0);
        let ymin = (ymin - 5.0 / h).max(0.0);
        let ymax = (ymax + 5.0 / h).min(1.0);
        FaceBox {
            xmin,
            ymin,
            xmax,
            ymax,
            x1: (xmin * w) as usize,
            y1: (ymin * h) as usize,
            x2: (xmax * w) as usize,
            y2: (ymax * h) as usize,
        }
    }

    /// Landmark `id` (pixels) normalised to the box: 0..1 inside it.
    pub fn normalise(&self, p: [f32; 3], width: usize, height: usize) -> [f32; 2] {
        let (x, y) = (p[0] as f64 / width as f64, p[1] as f64 / height as f64);
        [((x - self.xmin) / (self.xmax - self.xmin)) as f32, ((y - self.ymin) / (self.ymax - self.ymin)) as f32]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_by_five_pixels_and_clamps_to_the_frame() {
        let mut lm = vec![[100.0f32, 80.0, 0.0]; 468];
        lm[STSA_131[0] as usize] = [50.0, 40.0, 0.0];
        lm[STSA_131[1] as usize] = [150.0, 120.0, 0.0];
        let b = FaceBox::around(&lm, 200, 160);
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (45, 35, 155, 125));
        let n = b.normalise([50.0, 40.0, 0.0], 200, 160);
        assert!((n[0] - 5.0 / 110.0).abs() < 1e-6 && (n[1] - 5.0 / 90.0).abs() < 1e-6);
        lm[STSA_131[2] as usize] = [1.0, 1.0, 0.0];
        let b = FaceBox::around(&lm, 200, 160);
        assert_eq!((b.x1, b.y1), (0, 0));
    }
}
