//! The face pipeline against MediaPipe 0.10.21's own results on three real images
//! (`../shared/fixtures/face/*.golden.safetensors`): model inputs, detection, ROI and landmarks.

mod common;

use std::path::PathBuf;

use candle_core::Device;
use common::{IMAGES, frame, golden, vec1};
use lipsync::face::crop::RgbView;
use lipsync::face::mesh::FaceMesh;
use lipsync::face::models::ModelSource;
use lipsync::face::{FaceDetector, FaceTracker, NormRect, TrackerConfig};
use lipsync::{PixelFormat, VideoFrame};

fn models() -> (FaceDetector, FaceMesh) {
    let src = ModelSource::default_location();
    (FaceDetector::new(&src, &Device::Cpu).unwrap(), FaceMesh::new(&src, &Device::Cpu).unwrap())
}

/// Values of two tensors that differ by more than `tol`, and the largest difference.
fn mismatches(a: &[f32], b: &[f32], tol: f32) -> (usize, f32) {
    assert_eq!(a.len(), b.len());
    let n = a.iter().zip(b).filter(|(x, y)| (*x - *y).abs() > tol).count();
    (n, a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max))
}

#[test]
fn model_inputs_equal_mediapipes() {
    let (det, mesh) = models();
    for name in IMAGES {
        let f = golden(name);
        let fr = frame(&f);
        let view = RgbView::new(&fr);
        let (n, max) = mismatches(&vec1(&det.input(&view).unwrap()), &vec1(&f["bf_input"]), 1e-6);
        assert_eq!(n, 0, "{name}: detector input differs (max {max})");
        let r = vec1(&f["roi_cx_cy_w_h_rot"]);
        let roi = NormRect { cx: r[0], cy: r[1], w: r[2], h: r[3], rot: r[4] };
        let (n, max) = mismatches(&vec1(&mesh.input(&view, &roi).unwrap()), &vec1(&f["fm_input"]), 1e-6);
        // OpenCV rounds a source position that falls exactly on a 1/64 pixel tie: one pixel may differ by 1/255.
        assert!(n <= 3 && max <= 1.0 / 255.0 + 1e-6, "{name}: mesh input differs at {n} values (max {max})");
    }
}

#[test]
fn detections_match_mediapipe_within_half_a_pixel() {
    let (det, _) = models();
    for name in IMAGES {
        let f = golden(name);
        let fr = frame(&f);
        let (w, h) = (fr.width() as f32, fr.height() as f32);
        let dets = det.detect(&fr).unwrap();
        let d = dets.first().unwrap_or_else(|| panic!("{name}: no face"));
        let b = vec1(&f["det_box_xyxy"]);
        let ours = [d.xmin, d.ymin, d.xmin + d.width, d.ymin + d.height];
        for k in 0..4 {
            let scale = if k % 2 == 0 { w } else { h };
            let px = (ours[k] - b[k]).abs() * scale;
            assert!(px <= 0.5, "{name}: box coordinate {k} off by {px} px");
        }
        let kp = vec1(&f["det_keypoints"]);
        for k in 0..6 {
            let dx = (d.keypoints[k][0] - kp[2 * k]).abs() * w;
            let dy = (d.keypoints[k][1] - kp[2 * k + 1]).abs() * h;
            assert!(dx <= 0.5 && dy <= 0.5, "{name}: keypoint {k} off by ({dx}, {dy}) px");
        }
        assert!((d.score - vec1(&f["det_score"])[0]).abs() < 1e-4, "{name}: score");
        let roi = NormRect::from_box(
            d.xmin,
            d.ymin,
            d.width,
            d.height,
            d.keypoints[0],
            d.keypoints[1],
            (w as usize, h as usize),
        );
        let r = vec1(&f["roi_cx_cy_w_h_rot"]);
        let ours = [roi.cx * w, roi.cy * h, roi.w * w, roi.h * h];
        for k in 0..4 {
            let scale = if k % 2 == 0 { w } else { h };
            assert!((ours[k] - r[k] * scale).abs() <= 0.5, "{name}: ROI {k}: {} vs {}", ours[k], r[k] * scale);
        }
        assert!((roi.rot - r[4]).abs() < 1e-3, "{name}: rotation {} vs {}", roi.rot, r[4]);
    }
}

#[test]
fn landmarks_match_mediapipe_within_five_hundredths_of_a_pixel() {
    let config = TrackerConfig { smoothing: None, ..Default::default() };
    let mut tracker = FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, config).unwrap();
    for name in IMAGES {
        let f = golden(name);
        let fr = frame(&f);
        let (w, h) = (fr.width() as f32, fr.height() as f32);
        tracker.reset(); // still images: detect every time, as MediaPipe's static mode
        let face = tracker.track(&fr).unwrap().unwrap_or_else(|| panic!("{name}: no face"));
        assert!(face.detected && face.presence > 0.99);
        let mp = vec1(&f["mp_mesh468"]);
        let mut worst = 0.0f32;
        for (i, p) in face.landmarks.iter().enumerate() {
            worst = worst.max((p[0] - mp[3 * i] * w).abs()).max((p[1] - mp[3 * i + 1] * h).abs());
        }
        assert!(worst <= 0.05, "{name}: a landmark is {worst} px from MediaPipe's");
    }
}

#[test]
fn no_face_is_not_an_error() {
    let mut tracker =
        FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, TrackerConfig::default()).unwrap();
    let flat = VideoFrame::from_vec(PixelFormat::Rgb, 320, 240, vec![128; 320 * 240 * 3], 0).unwrap();
    assert!(tracker.track(&flat).unwrap().is_none());
    let mut state = 12345u32;
    let noise: Vec<u8> = (0..320 * 240 * 3)
        .map(|_| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 24) as u8
        })
        .collect();
    let noise = VideoFrame::from_vec(PixelFormat::Rgb, 320, 240, noise, 0).unwrap();
    assert!(tracker.track(&noise).unwrap().is_none());
}

#[test]
fn tracks_a_talking_face_through_a_real_clip() {
    let clip: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../shared/media/speakerine.mp4"].iter().collect();
    let frames = lipsync::io::decode_video(&clip, 100).unwrap().frames;
    let mut tracker =
        FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, TrackerConfig::default()).unwrap();
    let (mut found, mut detections) = (0, 0);
    let mut prev_nose: Option<[f32; 3]> = None;
    for f in &frames {
        let face = tracker.track(f).unwrap().expect("the face is in every frame");
        found += 1;
        detections += face.detected as usize;
        // Landmark 1 (nose tip) moves smoothly: no jump of a quarter of the face between frames.
        let nose = face.landmarks[1];
        if let Some(p) = prev_nose {
            let size = face.bbox[2] - face.bbox[0];
            assert!((nose[0] - p[0]).hypot(nose[1] - p[1]) < size / 4.0, "landmarks jumped");
        }
        prev_nose = Some(nose);
    }
    assert_eq!(found, frames.len());
    assert_eq!(detections, 1, "detected once, then tracked from the landmarks");
}

#[test]
fn one_euro_smoothing_reduces_mouth_jitter_on_the_real_clip() {
    use lipsync::face::filter::OneEuroParams;
    use lipsync::guidance::jitter::mouth_jitter;
    let clip: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../shared/media/speakerine.mp4"].iter().collect();
    let frames = lipsync::io::decode_video(&clip, 125).unwrap().frames;
    let run = |smoothing: Option<OneEuroParams>| {
        let config = TrackerConfig { smoothing, ..Default::default() };
        let mut t = FaceTracker::new(&ModelSource::default_location(), &Device::Cpu, config).unwrap();
        frames.iter().map(|f| t.track(f).unwrap().expect("a face").landmarks).collect::<Vec<_>>()
    };
    let raw = mouth_jitter(&run(None)).unwrap();
    let smooth = mouth_jitter(&run(Some(OneEuroParams::default()))).unwrap();
    eprintln!("mouth jitter on speakerine.mp4 (5 s): raw {raw:.5}, One-Euro {smooth:.5}");
    assert!(smooth < raw * 0.9, "smoothing must reduce jitter: raw {raw}, smoothed {smooth}");
}
