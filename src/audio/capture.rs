//! Microphone capture with cpal (feature `cpal`). The device callback only downmixes to mono and pushes
//! into a lock-free ring; a small thread resamples to 16 kHz and feeds the engine's [`AudioProducer`] with
//! running times from the caller's clock, re-anchoring when the device clock drifts from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};
use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapProd, HeapRb};

use super::resample::To16k;
use super::{AudioProducer, samples_to_ns};
use crate::error::{Error, Result};

/// An audio input device as cpal sees it.
#[derive(Clone, Debug)]
pub struct InputDevice {
    pub host: String,
    pub name: String,
    pub id: String,
    /// e.g. "2 ch, 48000 Hz, f32", or why the device cannot say.
    pub default_config: String,
    pub is_default: bool,
}

/// Lists the input devices of every audio host.
pub fn input_devices() -> Result<Vec<InputDevice>> {
    let mut out = Vec::new();
    for host_id in cpal::available_hosts() {
        let host = cpal::host_from_id(host_id).map_err(|e| Error::AudioDevice(e.to_string()))?;
        let default_id = host.default_input_device().and_then(|d| d.id().ok()).map(|i| i.to_string());
        let devices = host.input_devices().map_err(|e| Error::AudioDevice(e.to_string()))?;
        for d in devices {
            let id = d.id().map(|i| i.to_string()).unwrap_or_default();
            out.push(InputDevice {
                host: host_id.name().to_owned(),
                name: d.description().map(|x| x.name().to_owned()).unwrap_or_else(|_| id.clone()),
                default_config: match d.default_input_config() {
                    Ok(c) => format!("{} ch, {} Hz, {}", c.channels(), c.sample_rate(), c.sample_format()),
                    Err(e) => format!("unavailable: {e}"),
                },
                is_default: default_id.as_deref() == Some(id.as_str()),
                id,
            });
        }
    }
    Ok(out)
}

/// Running time now, in ns, on the clock the video uses.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A running microphone capture; dropping it stops the device and the thread.
pub struct MicCapture {
    _stream: cpal::Stream,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub device: String,
    pub rate: u32,
    pub channels: u16,
}

/// Drift between the device's sample clock and `clock` that triggers a re-anchor.
const MAX_DRIFT_NS: u64 = 20_000_000;

impl MicCapture {
    /// Opens `device` (a name or id from [`input_devices`]; `None`: the default input) and starts feeding
    /// `producer`.
    pub fn start(device: Option<&str>, mut producer: AudioProducer, clock: Clock) -> Result<Self> {
        let host = cpal::default_host();
        let dev = match device {
            None => host
                .default_input_device()
                .ok_or_else(|| Error::AudioDevice("no default audio input; see `lipsync devices`".into()))?,
            Some(want) => host
                .input_devices()
                .map_err(|e| Error::AudioDevice(e.to_string()))?
                .find(|d| {
                    d.id().is_ok_and(|i| i.to_string() == want) || d.description().is_ok_and(|x| x.name() == want)
                })
                .ok_or_else(|| Error::AudioDevice(format!("no audio input `{want}`; see `lipsync devices`")))?,
        };
        let name = dev.description().map(|x| x.name().to_owned()).unwrap_or_else(|_| "?".into());
        let supported = dev
            .default_input_config()
            .map_err(|e| Error::AudioDevice(format!("{name}: {e} (is it in use, or not a capture device?)")))?;
        let config = supported.config();
        let (rate, channels) = (config.sample_rate, config.channels);
        let (raw_prod, mut raw_cons) = HeapRb::<f32>::new(rate as usize * 2).split();
        let stream = match supported.sample_format() {
            SampleFormat::F32 => build::<f32>(&dev, config, raw_prod),
            SampleFormat::I16 => build::<i16>(&dev, config, raw_prod),
            SampleFormat::U16 => build::<u16>(&dev, config, raw_prod),
            SampleFormat::I32 => build::<i32>(&dev, config, raw_prod),
            SampleFormat::U8 => build::<u8>(&dev, config, raw_prod),
            f => return Err(Error::AudioDevice(format!("{name}: unsupported sample format {f}"))),
        }
        .map_err(|e| Error::AudioDevice(format!("{name}: {e}")))?;
        stream.play().map_err(|e| Error::AudioDevice(format!("{name}: {e}")))?;

        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let mut resampler = To16k::new(rate)?;
        let thread = std::thread::Builder::new()
            .name("lipsync-mic".into())
            .spawn(move || {
                let mut raw = vec![0.0f32; rate as usize / 10];
                let mut out = Vec::new();
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                    while raw_cons.occupied_len() > 0 {
                        let n = raw_cons.pop_slice(&mut raw);
                        out.clear();
                        if resampler.push(&raw[..n], &mut out).is_err() || out.is_empty() {
                            continue;
                        }
                        // The block ends about now: anchor its start there when the sample clock drifted.
                        let now = clock();
                        let start = now.saturating_sub(samples_to_ns(out.len() as u64));
                        let pts = match producer.next_time() {
                            Some(t) if t.abs_diff(start) <= MAX_DRIFT_NS => None,
                            _ => Some(start),
                        };
                        let _ = producer.push(pts, &out);
                    }
                }
            })
            .map_err(|e| Error::AudioDevice(format!("cannot start the capture thread: {e}")))?;
        Ok(MicCapture { _stream: stream, stop, thread: Some(thread), device: name, rate, channels })
    }
}

impl Drop for MicCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn build<T>(
    dev: &cpal::Device,
    config: cpal::StreamConfig,
    mut ring: HeapProd<f32>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let ch = config.channels.max(1) as usize;
    dev.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], _info: &cpal::InputCallbackInfo| {
            // Downmix and push; nothing else happens here (no locks, no allocation).
            for frame in data.chunks(ch) {
                let m = frame.iter().map(|&s| s.to_sample::<f32>()).sum::<f32>() / ch as f32;
                if ring.try_push(m).is_err() {
                    break; // the capture thread stalled: the rest of this block is lost
                }
            }
        },
        |e| tracing::warn!("audio input error: {e}"),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{AudioRing, RingConfig};

    /// ALSA's `null` capture device exists wherever alsa-lib does (no sound card needed): it yields
    /// silence as fast as it is read, so only the plumbing is checked here, not real-time pacing.
    #[test]
    fn captures_from_the_alsa_null_device_into_the_ring() {
        let (producer, mut ring) = AudioRing::new(&RingConfig::default());
        let start = std::time::Instant::now();
        let clock: Clock = Arc::new(move || start.elapsed().as_nanos() as u64);
        let mic = MicCapture::start(Some("alsa:null"), producer, clock).expect("the null device opens");
        assert!(mic.rate > 0 && mic.channels > 0);
        while ring.end_time().is_none() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(mic);
        assert!(!ring.is_empty(), "16 kHz samples reached the ring");
    }

    #[test]
    fn an_unknown_device_is_named_in_the_error() {
        let (producer, _ring) = AudioRing::new(&RingConfig::default());
        let err = MicCapture::start(Some("no-such-mic"), producer, Arc::new(|| 0)).err().expect("an error");
        assert!(err.to_string().contains("no-such-mic"), "{err}");
    }
}
