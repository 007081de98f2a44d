//! STSA's networks in candle (issue 6, in progress): wav2vec2-base ([`wav2vec2`]), the heatmap generator
//! ([`heatmap_generator`]) and the face renderer ([`face_renderer`], with the sampling operations candle
//! lacks in [`ops`]), each proven against the original implementation's outputs in `../shared/fixtures`
//! with the deterministic test weights of [`detw`]; checkpoints are read by [`weights`].
//!
//! [`models`] loads the three for the streaming `stsa` renderer (`crate::render::stsa`). The operations
//! are compositions of candle ops that candle runs on CUDA, but no GPU has run them yet.

pub mod check;
pub mod detw;
pub mod face_renderer;
pub mod heatmap_generator;
mod layers;
pub mod models;
pub mod ops;
pub mod profile;
pub mod wav2vec2;
pub mod weights;
