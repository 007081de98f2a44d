//! Face tracking with MediaPipe's BlazeFace (short range) and FaceMesh models, read from the mediapipe
//! wheel ([`models`]) and run on candle ([`tflite`]): [`detector`] finds faces, [`mesh`] places 468
//! landmarks in a rotated crop ([`crop`]), [`tracker`] follows a face from frame to frame with optional
//! One-Euro smoothing ([`filter`]). [`landmarks`] holds the index tables STSA uses.

pub mod crop;
pub mod detector;
pub mod filter;
pub mod landmarks;
pub mod mesh;
pub mod models;
pub mod tflite;
pub mod tracker;

pub use detector::{Detection, FaceDetector};
pub use mesh::{FaceMesh, NormRect};
pub use tracker::{Face, FaceTracker, TrackerConfig};
