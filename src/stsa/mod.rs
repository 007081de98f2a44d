//! STSA's networks in candle: wav2vec2-base ([`wav2vec2`]), the heatmap generator ([`heatmap_generator`])
//! and the face renderer ([`face_renderer`], with the sampling operations candle lacks in [`ops`]), built
//! from eval-mode building blocks shaped for a GPU (`layers`), each proven against the original
//! implementation's outputs in `../shared/fixtures` with the deterministic test weights of [`detw`];
//! checkpoints are read by [`weights`].
//!
//! [`models`] loads the three for the streaming `stsa` renderer (`crate::render::stsa`), once per process
//! and device. [`check`] is the device check (`stsa-check`, the GPU bundle's program) and [`profile`]
//! measures memory and, on `tools/cuda-counter`, the device operations of a frame. The operations are
//! compositions of candle ops that candle runs on CUDA; no GPU has run them yet.

pub mod check;
pub(crate) mod conv;
pub mod detw;
pub mod face_renderer;
pub mod heatmap_generator;
mod layers;
pub mod models;
pub mod ops;
pub mod profile;
pub mod wav2vec2;
pub mod weights;
