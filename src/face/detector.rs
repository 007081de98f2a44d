//! BlazeFace (short range) as MediaPipe 0.10.21 runs it: letterbox the frame to 128x128 in [-1, 1], run the
//! model, decode 896 SSD anchors (box + 6 keypoints), sigmoid scores clipped at ±100, weighted NMS, and map
//! back to frame coordinates.

use candle_core::{Device, Tensor};

use super::crop::{Border, Rect, RgbView, warp};
use super::models::{FaceModel, ModelSource};
use super::tflite::{Graph, TfliteModel};
use crate::error::Result;
use crate::frame::VideoFrame;

const INPUT: usize = 128;

/// A face found by the detector, in normalised frame coordinates (0..1).
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub xmin: f32,
    pub ymin: f32,
    pub width: f32,
    pub height: f32,
    /// Right eye, left eye, nose tip, mouth, right ear, left ear (the subject's sides).
    pub keypoints: [[f32; 2]; 6],
    pub score: f32,
}

/// MediaPipe's SSD anchors for this model: strides 8 (2 per cell) and 16 (6 per cell), centres only (all
/// anchors are 1x1), y-major.
fn anchors() -> Vec<[f32; 2]> {
    let mut out = Vec::with_capacity(896);
    for (stride, per_cell) in [(8usize, 2usize), (16, 6)] {
        let fm = INPUT.div_ceil(stride);
        for y in 0..fm {
            for x in 0..fm {
                for _ in 0..per_cell {
                    out.push([(x as f32 + 0.5) / fm as f32, (y as f32 + 0.5) / fm as f32]);
                }
            }
        }
    }
    out
}

fn iou(a: &Detection, b: &Detection) -> f32 {
    let (ax1, ay1) = (a.xmin + a.width, a.ymin + a.height);
    let (bx1, by1) = (b.xmin + b.width, b.ymin + b.height);
    if a.xmin > bx1 || b.xmin > ax1 || a.ymin > by1 || b.ymin > ay1 {
        return 0.0;
    }
    let iw = ax1.min(bx1) - a.xmin.max(b.xmin);
    let ih = ay1.min(by1) - a.ymin.max(b.ymin);
    let inter = iw * ih;
    let denom = a.width * a.height + b.width * b.height - inter;
    if denom > 0.0 { inter / denom } else { 0.0 }
}

/// MediaPipe's weighted NMS (IoU > 0.3 merges; the merged box and keypoints are score-weighted means, the
/// score is the top one's).
fn weighted_nms(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    while let Some(top) = dets.first().cloned() {
        let (cand, rest): (Vec<_>, Vec<_>) = dets.into_iter().partition(|d| iou(d, &top) > threshold);
        let total: f32 = cand.iter().map(|d| d.score).sum();
        let mean = |f: &dyn Fn(&Detection) -> f32| cand.iter().map(|d| d.score * f(d)).sum::<f32>() / total;
        let (xmin, ymin) = (mean(&|d| d.xmin), mean(&|d| d.ymin));
        let (xmax, ymax) = (mean(&|d| d.xmin + d.width), mean(&|d| d.ymin + d.height));
        let mut keypoints = [[0.0; 2]; 6];
        for (k, kp) in keypoints.iter_mut().enumerate() {
            *kp = [mean(&|d| d.keypoints[k][0]), mean(&|d| d.keypoints[k][1])];
        }
        out.push(Detection { xmin, ymin, width: xmax - xmin, height: ymax - ymin, keypoints, score: top.score });
        dets = rest;
    }
    out
}

/// The face detector.
pub struct FaceDetector {
    graph: Graph,
    anchors: Vec<[f32; 2]>,
    /// Detections scoring below this are dropped (MediaPipe's `min_detection_confidence`, 0.5).
    pub min_score: f32,
}

impl FaceDetector {
    pub fn new(source: &ModelSource, device: &Device) -> Result<Self> {
        let model = FaceModel::Detector;
        let parsed = TfliteModel::parse(&source.read(model)?, model.file_name())?;
        Ok(FaceDetector { graph: Graph::new(&parsed, device, model.file_name())?, anchors: anchors(), min_score: 0.5 })
    }

    /// The anchor centres, in the model's output order.
    pub fn anchors(&self) -> &[[f32; 2]] {
        &self.anchors
    }

    /// The model input for a frame: the whole frame letterboxed into 128x128 (black bars), in [-1, 1].
    pub fn input(&self, view: &RgbView<'_>) -> Result<Tensor> {
        let (w, h) = (view.width() as f32, view.height() as f32);
        let long = w.max(h);
        let rect = Rect { cx: w / 2.0, cy: h / 2.0, w: long, h: long, rot: 0.0 };
        let rgb = warp(view, &rect, INPUT, INPUT, Border::Zero);
        let data: Vec<f32> = rgb.iter().map(|&v| v as f32 * 2.0 / 255.0 - 1.0).collect();
        Ok(Tensor::from_vec(data, (1, INPUT, INPUT, 3), self.graph.device())?)
    }

    /// Decodes raw outputs (`[896 * 16]` regressors, `[896]` logits) into scored detections in the
    /// 128x128 input's normalised coordinates, before NMS.
    pub fn decode(&self, regressors: &[f32], logits: &[f32]) -> Vec<Detection> {
        let mut out = Vec::new();
        for (i, a) in self.anchors.iter().enumerate() {
            let score = 1.0 / (1.0 + (-logits[i].clamp(-100.0, 100.0)).exp());
            if score < self.min_score {
                continue;
            }
            let r = &regressors[i * 16..(i + 1) * 16];
            let s = INPUT as f32;
            let (xc, yc) = (r[0] / s + a[0], r[1] / s + a[1]);
            let (w, h) = (r[2] / s, r[3] / s);
            let (x0, y0, x1, y1) = (xc - w / 2.0, yc - h / 2.0, xc + w / 2.0, yc + h / 2.0);
            let (width, height) = (x1 - x0, y1 - y0);
            if !(width >= 0.0 && height >= 0.0) {
                continue;
            }
            let mut keypoints = [[0.0; 2]; 6];
            for (k, kp) in keypoints.iter_mut().enumerate() {
                *kp = [r[4 + 2 * k] / s + a[0], r[5 + 2 * k] / s + a[1]];
            }
            out.push(Detection { xmin: x0, ymin: y0, width, height, keypoints, score });
        }
        out
    }

    /// Faces in the frame, best first, in normalised frame coordinates.
    pub fn detect(&self, frame: &VideoFrame) -> Result<Vec<Detection>> {
        let _span = tracing::debug_span!("face_detect").entered();
        let view = RgbView::new(frame);
        let out = self.graph.run(&self.input(&view)?)?;
        let regressors = out[0].flatten_all()?.to_vec1::<f32>()?;
        let logits = out[1].flatten_all()?.to_vec1::<f32>()?;
        let dets = weighted_nms(self.decode(&regressors, &logits), 0.3);
        // Letterbox removal: the 128x128 input covers a square of the long side, centred.
        let (w, h) = (view.width() as f32, view.height() as f32);
        let long = w.max(h);
        let (sx, sy) = (long / w, long / h);
        let map = |x: f32, y: f32| [(x - 0.5) * sx + 0.5, (y - 0.5) * sy + 0.5];
        Ok(dets
            .into_iter()
            .map(|d| {
                let [xmin, ymin] = map(d.xmin, d.ymin);
                Detection {
                    xmin,
                    ymin,
                    width: d.width * sx,
                    height: d.height * sy,
                    keypoints: d.keypoints.map(|[x, y]| map(x, y)),
                    score: d.score,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_are_mediapipes() {
        let a = anchors();
        assert_eq!(a.len(), 896);
        assert_eq!(a[0], [0.03125, 0.03125]);
        assert_eq!(a[2], [0.09375, 0.03125]);
        assert_eq!(a[512], [0.0625, 0.0625]);
    }
}
