//! Face tracking with MediaPipe's BlazeFace (short range) and FaceMesh models, read from the mediapipe
//! wheel and run on candle.

pub mod models;
pub mod tflite;
