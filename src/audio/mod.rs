//! Audio input: the lock-free [`ring::AudioRing`] every producer feeds (element audio pad, cpal microphone,
//! RTP receiver), mapped from sample index to running time, and the window of samples a frame needs.

pub mod envelope;
pub mod ring;
#[cfg(test)]
pub(crate) mod test_signals;
pub mod window;

#[cfg(feature = "cpal")]
pub mod capture;
#[cfg(feature = "cpal")]
pub mod resample;

pub use ring::{AudioCounters, AudioProducer, AudioRing, ReadInfo, RingConfig};
pub use window::AudioWindow;

/// The sample rate of everything inside the engine (wav2vec2's rate).
pub const SAMPLE_RATE: u32 = 16_000;

/// Nanoseconds per sample at [`SAMPLE_RATE`] (exact: 62.5 us).
pub const NS_PER_SAMPLE: u64 = 1_000_000_000 / SAMPLE_RATE as u64;

/// Duration of `n` samples in nanoseconds.
pub fn samples_to_ns(n: u64) -> u64 {
    n * NS_PER_SAMPLE
}

/// Number of whole samples in `ns` nanoseconds (rounded down).
pub fn ns_to_samples(ns: u64) -> u64 {
    ns / NS_PER_SAMPLE
}
