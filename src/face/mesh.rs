//! FaceMesh as MediaPipe 0.10.21 runs it: a 192x192 crop of a rotated square ROI (edges replicated),
//! values in [0, 1], 468 landmarks projected back through the ROI (rotation in normalised coordinates, as
//! MediaPipe does), and the face-presence score (sigmoid of the second output).

use candle_core::{Device, Tensor};

use super::crop::{Border, Rect, RgbView, warp};
use super::models::{FaceModel, ModelSource};
use super::tflite::{Graph, StepTime, TfliteModel};
use crate::error::Result;
use crate::frame::VideoFrame;

pub const INPUT: usize = 192;
pub const NUM_LANDMARKS: usize = 468;

/// A rotated rectangle in normalised frame coordinates (MediaPipe's `NormalizedRect`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormRect {
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
    pub rot: f32,
}

impl NormRect {
    /// The same rectangle in pixels of a `width` x `height` frame.
    pub fn to_pixels(&self, width: usize, height: usize) -> Rect {
        let (w, h) = (width as f32, height as f32);
        Rect { cx: self.cx * w, cy: self.cy * h, w: self.w * w, h: self.h * h, rot: self.rot }
    }

    /// MediaPipe's ROI rule: centre of the box, rotation that levels the line from `p0` to `p1`
    /// (normalised points), squared on the long side in pixels and scaled by 1.5.
    pub fn from_box(
        xmin: f32,
        ymin: f32,
        width: f32,
        height: f32,
        p0: [f32; 2],
        p1: [f32; 2],
        frame: (usize, usize),
    ) -> Self {
        let (fw, fh) = (frame.0 as f32, frame.1 as f32);
        let (x0, y0, x1, y1) = (p0[0] * fw, p0[1] * fh, p1[0] * fw, p1[1] * fh);
        let angle = -(-(y1 - y0)).atan2(x1 - x0);
        let two_pi = 2.0 * std::f32::consts::PI;
        let rot = angle - two_pi * ((angle + std::f32::consts::PI) / two_pi).floor();
        let long = (width * fw).max(height * fh);
        NormRect { cx: xmin + width / 2.0, cy: ymin + height / 2.0, w: long / fw * 1.5, h: long / fh * 1.5, rot }
    }
}

/// What the mesh model found in an ROI.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshResult {
    /// Probability that a face fills the ROI.
    pub presence: f32,
    /// 468 landmarks, normalised (x / width, y / height, z in units of the width).
    pub landmarks: Vec<[f32; 3]>,
}

pub struct FaceMesh {
    graph: Graph,
}

impl FaceMesh {
    pub fn new(source: &ModelSource, device: &Device) -> Result<Self> {
        let model = FaceModel::Landmarks;
        let parsed = TfliteModel::parse(&source.read(model)?, model.file_name())?;
        Ok(FaceMesh { graph: Graph::new(&parsed, device, model.file_name())? })
    }

    /// The model input for `roi` of the frame.
    pub fn input(&self, view: &RgbView<'_>, roi: &NormRect) -> Result<Tensor> {
        let rgb = warp(view, &roi.to_pixels(view.width(), view.height()), INPUT, INPUT, Border::Replicate);
        let data: Vec<f32> = rgb.iter().map(|&v| v as f32 / 255.0).collect();
        Ok(Tensor::from_vec(data, (1, INPUT, INPUT, 3), self.graph.device())?)
    }

    /// Raw outputs for an input tensor: 1404 values (x, y, z per landmark in input pixels) and the
    /// face-presence logit.
    pub fn run(&self, input: &Tensor) -> Result<(Vec<f32>, f32)> {
        let out = self.graph.run(input)?;
        Ok((out[0].flatten_all()?.to_vec1::<f32>()?, out[1].flatten_all()?.to_vec1::<f32>()?[0]))
    }

    /// How long each of the network's operators takes on `input` ([`Graph::profile`]).
    pub fn profile(&self, input: &Tensor) -> Result<Vec<StepTime>> {
        Ok(self.graph.profile(input)?.1)
    }

    /// Projects raw outputs back to the frame through `roi`.
    pub fn project(raw: &[f32], logit: f32, roi: &NormRect) -> MeshResult {
        let (s, c) = roi.rot.sin_cos();
        let landmarks = raw
            .chunks_exact(3)
            .map(|p| {
                let (x, y, z) = (p[0] / INPUT as f32 - 0.5, p[1] / INPUT as f32 - 0.5, p[2] / INPUT as f32);
                [(c * x - s * y) * roi.w + roi.cx, (s * x + c * y) * roi.h + roi.cy, z * roi.w]
            })
            .collect();
        MeshResult { presence: 1.0 / (1.0 + (-logit).exp()), landmarks }
    }

    /// Landmarks of the face in `roi`.
    pub fn landmarks(&self, frame: &VideoFrame, roi: &NormRect) -> Result<MeshResult> {
        let _span = tracing::debug_span!("face_mesh").entered();
        let (raw, logit) = self.run(&self.input(&RgbView::new(frame), roi)?)?;
        Ok(Self::project(&raw, logit, roi))
    }
}
