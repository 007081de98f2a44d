//! STSA's networks in candle (issue 6, in progress): so far the deterministic test-weight generator
//! ([`detw`]) and wav2vec2-base ([`wav2vec2`]), each proven against the original implementation's
//! outputs in `../shared/fixtures`. The heatmap generator, the face renderer, the checkpoint loader and
//! the `stsa` renderer are not written yet.

pub mod detw;
pub mod face_renderer;
pub mod heatmap_generator;
pub mod ops;
pub mod wav2vec2;
pub mod weights;
