//! Streaming conversion of captured audio to the engine's 16 kHz (rubato's FFT resampler), for the
//! microphone path; the element and the RTP receiver let GStreamer resample.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use super::SAMPLE_RATE;
use crate::error::{Error, Result};

/// Converts mono f32 at `input_rate` to 16 kHz in a stream of arbitrary block sizes.
pub struct To16k {
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    /// Output samples still to drop for the resampler's delay.
    skip: usize,
}

impl To16k {
    pub fn new(input_rate: u32) -> Result<Self> {
        if input_rate == SAMPLE_RATE {
            return Ok(To16k { inner: None, pending: Vec::new(), out_buf: Vec::new(), skip: 0 });
        }
        let rs = Fft::<f32>::new(input_rate as usize, SAMPLE_RATE as usize, 1024, 1, FixedSync::Input)
            .map_err(|e| Error::AudioDevice(format!("cannot resample {input_rate} Hz to 16 kHz: {e}")))?;
        let out_buf = vec![0.0; Resampler::output_frames_max(&rs)];
        let skip = rs.output_delay();
        Ok(To16k { inner: Some(rs), pending: Vec::with_capacity(4096), out_buf, skip })
    }

    /// Appends the 16 kHz samples for `input` to `out` (some input stays buffered until a block is full).
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let Some(rs) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        self.pending.extend_from_slice(input);
        while self.pending.len() >= rs.input_frames_next() {
            let need = rs.input_frames_next();
            let inp = InterleavedSlice::new(&self.pending[..need], 1, need).expect("sizes match");
            let cap = self.out_buf.len();
            let mut outp = InterleavedSlice::new_mut(&mut self.out_buf[..], 1, cap).expect("sizes match");
            let (used, written) = rs
                .process_into_buffer(&inp, &mut outp, None)
                .map_err(|e| Error::AudioDevice(format!("resampling failed: {e}")))?;
            self.pending.drain(..used);
            let d = self.skip.min(written);
            self.skip -= d;
            out.extend_from_slice(&self.out_buf[d..written]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_48k_tone_keeps_its_frequency_at_16k() {
        let mut rs = To16k::new(48_000).unwrap();
        let tone: Vec<f32> =
            (0..48_000).map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin()).collect();
        let mut out = Vec::new();
        for block in tone.chunks(480) {
            rs.push(block, &mut out).unwrap();
        }
        assert!((out.len() as i64 - 16_000).abs() < 1100, "{}", out.len());
        // Zero crossings of a 440 Hz tone: 880 per second.
        let crossings = out[1000..15000].windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count();
        let expected = 880.0 * 14000.0 / 16000.0;
        assert!((crossings as f32 - expected).abs() < 4.0, "{crossings} vs {expected}");
    }
}
