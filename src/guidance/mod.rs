//! Guidance for the renderers: the face box ([`crop`]), STSA's landmark sketches and boundary heatmaps on
//! the 128x128 face canvas ([`sketch`], [`heatmap`]), reproducing the original's OpenCV drawing exactly.
//!
//! Not finished (issue 4): temporal heatmap smoothing, the jitter metric, the streaming reference bank and
//! compositing are still to come.

pub mod crop;
pub mod heatmap;
pub mod jitter;
pub mod references;
pub mod sketch;
pub mod smoothing;

/// Side of the square canvas sketches and heatmaps are drawn on.
pub const CANVAS: usize = 128;
