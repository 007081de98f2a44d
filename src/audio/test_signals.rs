//! Signals the audio and viseme tests are built from.

/// `n` samples of white noise in -0.5..0.5, the same for the same `seed`.
pub fn noise(mut seed: u32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}
