//! MediaPipe's face models read from the wheel and run on candle, against the outputs MediaPipe 0.10.21
//! produced for the same inputs (`../shared/fixtures/face`).

mod common;

use candle_core::{Device, Tensor};
use common::{IMAGES, golden};
use lipsync::face::models::{FaceModel, ModelSource};
use lipsync::face::tflite::{Graph, TfliteModel};

fn graph(model: FaceModel) -> Graph {
    let bytes = ModelSource::default_location().read(model).expect("run scripts/setup.sh to fetch the models");
    let parsed = TfliteModel::parse(&bytes, model.file_name()).unwrap();
    Graph::new(&parsed, &Device::Cpu, model.file_name()).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn detector_raw_outputs_match_mediapipe() {
    let g = graph(FaceModel::Detector);
    for name in IMAGES {
        let f = golden(name);
        let out = g.run(&f["bf_input"]).unwrap();
        let (dr, dc) = (max_abs_diff(&out[0], &f["bf_regressors"]), max_abs_diff(&out[1], &f["bf_classificators"]));
        assert!(dr <= 1e-3 && dc <= 1e-3, "{name}: regressors {dr}, classificators {dc}");
    }
}

#[test]
fn mesh_raw_outputs_match_mediapipe() {
    let g = graph(FaceModel::Landmarks);
    for name in IMAGES {
        let f = golden(name);
        let out = g.run(&f["fm_input"]).unwrap();
        let landmarks = out[0].reshape((1, 1404)).unwrap();
        let flag = out[1].reshape((1, 1)).unwrap();
        let (dl, df) =
            (max_abs_diff(&landmarks, &f["fm_landmarks_raw"]), max_abs_diff(&flag, &f["fm_face_flag_logit"]));
        assert!(dl <= 1e-3 && df <= 1e-3, "{name}: landmarks {dl}, face flag {df}");
    }
}

#[test]
fn a_truncated_model_is_an_error_naming_the_file() {
    let bytes = ModelSource::default_location().read(FaceModel::Landmarks).unwrap();
    for cut in [10, 1000, bytes.len() / 2] {
        let err = TfliteModel::parse(&bytes[..cut], "face_landmark.tflite").unwrap_err().to_string();
        assert!(err.contains("face_landmark.tflite"), "{err}");
    }
    let err = TfliteModel::parse(b"not a model at all", "x.tflite").unwrap_err().to_string();
    assert!(err.contains("x.tflite") && err.contains("TFL3"), "{err}");
}

/// A folder removed when the test ends, however it ends.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_wrong_file_in_a_folder_is_caught_by_its_checksum() {
    let dir = std::env::temp_dir().join(format!("lipsync-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _scratch = Scratch(dir.clone());
    let mut bytes = ModelSource::default_location().read(FaceModel::Detector).unwrap();
    bytes[5000] ^= 0xff;
    std::fs::write(dir.join("face_detection_short_range.tflite"), &bytes).unwrap();
    let err = ModelSource::Folder(dir.clone()).read(FaceModel::Detector).unwrap_err().to_string();
    assert!(err.contains("face_detection_short_range.tflite") && err.contains("sha256"), "{err}");
    let err = ModelSource::Wheel(dir.join("missing.whl")).read(FaceModel::Detector).unwrap_err().to_string();
    assert!(err.contains("missing.whl") && err.contains("scripts/setup.sh"), "{err}");
    // A truncated wheel: the zip directory is gone.
    let wheel = match ModelSource::default_location() {
        ModelSource::Wheel(p) => std::fs::read(p).unwrap(),
        ModelSource::Folder(_) => return,
    };
    std::fs::write(dir.join("broken.whl"), &wheel[..wheel.len() / 2]).unwrap();
    let err = ModelSource::Wheel(dir.join("broken.whl")).read(FaceModel::Landmarks).unwrap_err().to_string();
    assert!(err.contains("broken.whl") && err.contains("not a readable wheel"), "{err}");
}

#[test]
fn the_meshs_adds_and_prelus_run_inside_its_convolutions() {
    let g = graph(FaceModel::Landmarks);
    let (out, steps) = g.profile(&golden("astronaut")["fm_input"]).unwrap();
    assert_eq!(out.len(), 2);
    let count = |op: &str| steps.iter().filter(|s| s.op == op).count();
    // The file has 20 ADDs and 23 PReLUs, each after a 1x1 or k x k convolution.
    assert_eq!((count("add"), count("prelu")), (0, 0), "{:?}", steps.iter().map(|s| s.op).collect::<Vec<_>>());
    assert_eq!((count("conv1x1"), count("conv"), count("depthwise")), (22, 3, 20));
}
