//! Guidance for the renderers, shared by all of them: the face box ([`crop`]), STSA's landmark sketches
//! and boundary heatmaps on the 128x128 face canvas ([`sketch`], [`heatmap`], bit-exact with the
//! original's OpenCV drawing), temporal fusion of overlapping heatmap predictions and box smoothing
//! ([`smoothing`]), the mouth jitter metric ([`jitter`]), the streaming reference bank ([`references`]) and
//! pasting the rendered face back ([`composite`]).
//!
//! The classic renderer uses the reference bank (its neutral face and open mouth). The heatmaps, their
//! temporal fusion and `composite` are STSA's inputs and output path; the fusion's effect is measured on
//! synthetic noisy predictions (`smoothing`'s test `fusing_windows_reduces_noise_and_stays_causal`).

pub mod composite;
pub mod crop;
pub mod heatmap;
pub mod jitter;
pub mod references;
pub mod sketch;
pub mod smoothing;

/// Side of the square canvas sketches and heatmaps are drawn on.
pub const CANVAS: usize = 128;
