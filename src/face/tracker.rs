//! Face tracking over a video as MediaPipe's face mesh does it: detect once, then crop each frame by the
//! ROI built from the previous frame's landmarks (eye corners 33 and 263 give the rotation), re-detecting
//! when the face-presence score drops to 0.5 or below. Landmarks go through a One-Euro filter (optional,
//! parameters exposed); the next ROI uses the unfiltered ones, as MediaPipe does.

use candle_core::Device;

use super::detector::FaceDetector;
use super::filter::{OneEuro, OneEuroParams};
use super::landmarks::TRACKING_EYE_CORNERS;
use super::mesh::{FaceMesh, NUM_LANDMARKS, NormRect};
use super::models::ModelSource;
use crate::error::Result;
use crate::frame::VideoFrame;

/// Tracker settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackerConfig {
    /// Minimum detector score (MediaPipe's `min_detection_confidence`).
    pub min_detection_score: f32,
    /// Minimum face presence to keep tracking (MediaPipe's `min_tracking_confidence`).
    pub min_presence: f32,
    /// One-Euro smoothing of the landmarks; `None` gives MediaPipe's raw landmarks.
    pub smoothing: Option<OneEuroParams>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig { min_detection_score: 0.5, min_presence: 0.5, smoothing: Some(OneEuroParams::default()) }
    }
}

/// A tracked face, in frame pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    /// Bounding box of the landmarks: x0, y0, x1, y1.
    pub bbox: [f32; 4],
    /// Score of the detection that started this track.
    pub score: f32,
    /// Face presence in this frame's ROI.
    pub presence: f32,
    /// 468 landmarks: x, y in pixels, z in pixels of the frame width (relative depth).
    pub landmarks: Vec<[f32; 3]>,
    /// The ROI the mesh ran on (normalised).
    pub roi: NormRect,
    /// Whether this frame needed the detector.
    pub detected: bool,
    /// MediaPipe's own landmarks when `landmarks` are smoothed ([`TrackerConfig::smoothing`]): where the
    /// face is in this very frame, without the filter's lag.
    pub raw: Option<Vec<[f32; 3]>>,
}

pub struct FaceTracker {
    detector: FaceDetector,
    mesh: FaceMesh,
    config: TrackerConfig,
    roi: Option<NormRect>,
    score: f32,
    filters: Vec<OneEuro>,
    last_pts: Option<u64>,
}

impl Face {
    /// A face from its landmarks in frame pixels (the bounding box is theirs).
    pub fn new(landmarks: Vec<[f32; 3]>, score: f32, presence: f32, roi: NormRect, detected: bool) -> Self {
        let mut bbox = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for p in &landmarks {
            bbox = [bbox[0].min(p[0]), bbox[1].min(p[1]), bbox[2].max(p[0]), bbox[3].max(p[1])];
        }
        Face { bbox, score, presence, landmarks, roi, detected, raw: None }
    }

    /// The landmarks as tracked in this frame, before any smoothing.
    pub fn raw_landmarks(&self) -> &[[f32; 3]] {
        self.raw.as_deref().unwrap_or(&self.landmarks)
    }
}

/// MediaPipe's tracking ROI from normalised landmarks.
pub fn roi_from_landmarks(landmarks: &[[f32; 3]], frame: (usize, usize)) -> NormRect {
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for p in landmarks {
        x0 = x0.min(p[0]);
        y0 = y0.min(p[1]);
        x1 = x1.max(p[0]);
        y1 = y1.max(p[1]);
    }
    let (a, b) = TRACKING_EYE_CORNERS;
    let (pa, pb) = ([landmarks[a][0], landmarks[a][1]], [landmarks[b][0], landmarks[b][1]]);
    NormRect::from_box(x0, y0, x1 - x0, y1 - y0, pa, pb, frame)
}

impl FaceTracker {
    pub fn new(source: &ModelSource, device: &Device, config: TrackerConfig) -> Result<Self> {
        let mut detector = FaceDetector::new(source, device)?;
        detector.min_score = config.min_detection_score;
        Ok(FaceTracker {
            detector,
            mesh: FaceMesh::new(source, device)?,
            config,
            roi: None,
            score: 0.0,
            filters: vec![OneEuro::default(); NUM_LANDMARKS * 3],
            last_pts: None,
        })
    }

    pub fn detector(&self) -> &FaceDetector {
        &self.detector
    }

    pub fn mesh(&self) -> &FaceMesh {
        &self.mesh
    }

    /// Forgets the current track (a new stream, a cut).
    pub fn reset(&mut self) {
        self.roi = None;
        self.last_pts = None;
        self.filters.iter_mut().for_each(OneEuro::reset);
    }

    /// The face in `frame`, if there is one.
    pub fn track(&mut self, frame: &VideoFrame) -> Result<Option<Face>> {
        let _span = tracing::debug_span!("face_track", pts = frame.pts).entered();
        let size = (frame.width() as usize, frame.height() as usize);
        loop {
            let (roi, detected) = match self.roi {
                Some(roi) => (roi, false),
                None => {
                    let dets = self.detector.detect(frame)?;
                    let Some(d) = dets.first() else {
                        self.reset();
                        return Ok(None);
                    };
                    self.score = d.score;
                    (NormRect::from_box(d.xmin, d.ymin, d.width, d.height, d.keypoints[0], d.keypoints[1], size), true)
                }
            };
            let mesh = self.mesh.landmarks(frame, &roi)?;
            if mesh.presence <= self.config.min_presence {
                self.reset();
                if detected {
                    return Ok(None);
                }
                continue; // lost: detect again in this frame
            }
            self.roi = Some(roi_from_landmarks(&mesh.landmarks, size));
            let (w, h) = (size.0 as f32, size.1 as f32);
            let mut landmarks: Vec<[f32; 3]> = mesh.landmarks.iter().map(|p| [p[0] * w, p[1] * h, p[2] * w]).collect();
            let mut raw = None;
            if let Some(params) = self.config.smoothing {
                raw = Some(landmarks.clone());
                let dt = match self.last_pts {
                    Some(prev) if frame.pts > prev => (frame.pts - prev) as f32 / 1e9,
                    _ => 0.04,
                };
                for (p, f) in landmarks.iter_mut().flatten().zip(&mut self.filters) {
                    *p = f.filter(*p, dt, &params);
                }
            }
            self.last_pts = Some(frame.pts);
            let mut face = Face::new(landmarks, self.score, mesh.presence, roi, detected);
            face.raw = raw;
            return Ok(Some(face));
        }
    }
}
