//! Where the face models come from: MediaPipe 0.10.21's wheel (the set-up fetches it with pip into a
//! cache this project owns) or `.tflite` files the user points to. Model bytes are checked against their
//! known sha256 before use. Nothing is downloaded at run time.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One of the two MediaPipe models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaceModel {
    /// BlazeFace short range: face boxes and 6 keypoints on a 128x128 input.
    Detector,
    /// FaceMesh: 468 landmarks and face presence on a 192x192 crop.
    Landmarks,
}

impl FaceModel {
    /// Path of the model inside the wheel.
    pub fn wheel_path(self) -> &'static str {
        match self {
            FaceModel::Detector => "mediapipe/modules/face_detection/face_detection_short_range.tflite",
            FaceModel::Landmarks => "mediapipe/modules/face_landmark/face_landmark.tflite",
        }
    }

    pub fn file_name(self) -> &'static str {
        self.wheel_path().rsplit('/').next().expect("has a file name")
    }

    /// sha256 of the file in mediapipe 0.10.21.
    pub fn sha256(self) -> &'static str {
        match self {
            FaceModel::Detector => "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
            FaceModel::Landmarks => "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
        }
    }
}

/// The wheel `scripts/setup.sh` fetches.
pub const WHEEL_NAME: &str = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl";

/// Environment variable naming the wheel or a folder holding the two `.tflite` files.
pub const ENV_VAR: &str = "LIPSYNC_MEDIAPIPE";

/// Where the models are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// The mediapipe wheel (a zip file).
    Wheel(PathBuf),
    /// A folder with `face_detection_short_range.tflite` and `face_landmark.tflite`.
    Folder(PathBuf),
}

/// The project's cache folder: `$XDG_CACHE_HOME/lipsync` or `~/.cache/lipsync`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("lipsync")
}

impl ModelSource {
    /// `path` as given by a user: a wheel (`.whl`) or a folder of `.tflite` files.
    pub fn from_path(path: &Path) -> Self {
        if path.is_dir() { ModelSource::Folder(path.to_owned()) } else { ModelSource::Wheel(path.to_owned()) }
    }

    /// `$LIPSYNC_MEDIAPIPE` if set, else the wheel in [`cache_dir`].
    pub fn default_location() -> Self {
        match std::env::var_os(ENV_VAR) {
            Some(p) => Self::from_path(Path::new(&p)),
            None => ModelSource::Wheel(cache_dir().join(WHEEL_NAME)),
        }
    }

    /// Reads and checks one model.
    pub fn read(&self, model: FaceModel) -> Result<Vec<u8>> {
        let (bytes, origin) = match self {
            ModelSource::Folder(dir) => {
                let path = dir.join(model.file_name());
                let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
                (bytes, path.display().to_string())
            }
            ModelSource::Wheel(wheel) => {
                let missing = |e: std::io::Error| {
                    Error::Model(format!(
                        "{}: {e}; run `scripts/setup.sh` to fetch mediapipe 0.10.21 with pip, or set {ENV_VAR} to the \
                         wheel or to a folder with {} and {}",
                        wheel.display(),
                        FaceModel::Detector.file_name(),
                        FaceModel::Landmarks.file_name()
                    ))
                };
                let file = std::fs::File::open(wheel).map_err(missing)?;
                let mut zip = zip::ZipArchive::new(file)
                    .map_err(|e| Error::Model(format!("{}: not a readable wheel (zip): {e}", wheel.display())))?;
                let mut entry = zip.by_name(model.wheel_path()).map_err(|e| {
                    Error::Model(format!(
                        "{}: no {} inside ({e}); mediapipe 0.10.21 is needed",
                        wheel.display(),
                        model.wheel_path()
                    ))
                })?;
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut bytes).map_err(|e| {
                    Error::Model(format!("{}: {} cannot be read: {e}", wheel.display(), model.wheel_path()))
                })?;
                (bytes, format!("{}!{}", wheel.display(), model.wheel_path()))
            }
        };
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if hex != model.sha256() {
            return Err(Error::Model(format!(
                "{origin}: sha256 {hex} is not mediapipe 0.10.21's {} ({}): a different or corrupted file",
                model.file_name(),
                model.sha256()
            )));
        }
        Ok(bytes)
    }
}
