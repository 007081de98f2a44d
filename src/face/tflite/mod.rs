//! TFLite models in Rust: [`flatbuffer`] reads the file format, [`model`] the schema subset MediaPipe's
//! face models use, [`graph`] runs them on candle.

pub mod flatbuffer;
pub mod graph;
pub mod kernels;
pub mod model;

pub use graph::{Graph, StepTime};
pub use model::TfliteModel;
