//! The voice out of `lipsync live`: its 16 kHz speech played into a PulseAudio (or PipeWire) sink, each
//! sample at its running time plus the session's latency, the moment its frame leaves for the video
//! output. Into a null sink, whose monitor a call application takes as its microphone, the voice stays in
//! sync with the virtual camera.

use std::cell::Cell;
use std::time::{Duration, Instant};

use gst::prelude::*;

use super::encode::{audio_buffer, audio_caps};
use super::{LiveClock, by_name, check_bus, launch};
use crate::audio::{ns_to_samples, samples_to_ns};
use crate::error::{Error, Result};

/// Where `lipsync live` sends the voice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioOutSpec {
    /// A PulseAudio sink (PipeWire's PulseAudio server too): the server's default sink, or the one named.
    Pulse(Option<String>),
}

impl std::str::FromStr for AudioOutSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            None if s == "pulse" => Ok(AudioOutSpec::Pulse(None)),
            Some(("pulse", name)) if !name.is_empty() => Ok(AudioOutSpec::Pulse(Some(name.to_owned()))),
            _ => Err(Error::InvalidArgument(format!(
                "audio out `{s}`: use pulse (the default sink) or pulse:SINK (a sink of `pactl list short sinks`)"
            ))),
        }
    }
}

impl std::fmt::Display for AudioOutSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioOutSpec::Pulse(None) => write!(f, "pulse"),
            AudioOutSpec::Pulse(Some(name)) => write!(f, "pulse:{name}"),
        }
    }
}

/// The sink's buffer in the server, and how far ahead of the clock the stream is kept fed with silence
/// when no speech is queued (the sink must never run dry: its clock would stop and come back skewed).
/// Speech is handed over well before its time (the latency's margin over the render), further ahead
/// than the silence reaches.
const SINK_BUFFER_US: i64 = 40_000;
const FED_AHEAD: u64 = 60_000_000;
const REFILL_BELOW: u64 = 30_000_000;
/// How long a sink may take to start taking sound.
const WAKE_TIMEOUT: Duration = Duration::from_secs(4);

/// A sink playing the voice on the session's clock.
pub struct AudioOutput {
    stream: SinkStream,
    spec: AudioOutSpec,
    latency: u64,
    /// Samples of speech that came after their time had been filled with silence.
    late_samples: Cell<u64>,
}

/// One stream to the server: the pipeline, its source and where the sound queued ends.
struct SinkStream {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    clock: LiveClock,
    /// Where the sound queued so far ends (running time it plays at, ns).
    queued_until: Cell<u64>,
}

impl SinkStream {
    fn open(spec: &AudioOutSpec, clock: &LiveClock) -> Result<Self> {
        // Live, with no latency added to the one the buffers are stamped with: the sink plays each at
        // its running time.
        let pipeline = launch(&format!(
            "appsrc name=src format=time is-live=true max-bytes=0 ! audioconvert ! audioresample ! \
             pulsesink name=sink sync=true client-name=lipsync buffer-time={SINK_BUFFER_US} latency-time=10000"
        ))?;
        let AudioOutSpec::Pulse(device) = spec;
        if let Some(device) = device {
            by_name::<gst::Element>(&pipeline, "sink")?.set_property("device", device);
        }
        let src: gst_app::AppSrc = by_name(&pipeline, "src")?;
        src.set_caps(Some(&audio_caps()));
        clock.attach(&pipeline);
        pipeline.set_latency(Some(gst::ClockTime::ZERO));
        let stream = SinkStream { pipeline, src, clock: clock.clone(), queued_until: Cell::new(clock.now()) };
        stream.keep_fed().map_err(|_| stream.failure(spec))?;
        // The sink connects to the server on the way to READY: no server, or no such sink, fails here.
        stream.pipeline.set_state(gst::State::Playing).map_err(|_| stream.failure(spec))?;
        Ok(stream)
    }

    /// Feeds silence until the server takes the sound as it comes (at most `timeout`): over 100 ms,
    /// once the sink's buffer is full, what waits in the source's queue does not grow. A stalled server
    /// leaves the sink waiting and the queue growing.
    fn wait_flowing(&self, timeout: Duration) -> bool {
        let started = Instant::now();
        let mut window: Option<(u64, Instant)> = None;
        while started.elapsed() < timeout {
            if self.keep_fed().is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
            if started.elapsed() < Duration::from_millis(100) {
                continue;
            }
            let waiting = self.src.current_level_bytes();
            match window {
                Some((level, since)) if since.elapsed() >= Duration::from_millis(100) => {
                    // One refill of silence more may be waiting.
                    let slack = (ns_to_samples(FED_AHEAD - REFILL_BELOW) + 1) * size_of::<f32>() as u64;
                    if waiting <= level + slack {
                        return true;
                    }
                    window = Some((waiting, Instant::now()));
                }
                Some(_) => {}
                None => window = Some((waiting, Instant::now())),
            }
        }
        false
    }

    /// Silence up to a little ahead of the clock, where the sound queued ends sooner.
    fn keep_fed(&self) -> std::result::Result<(), gst::FlowError> {
        let (now, queued) = (self.clock.now(), self.queued_until.get());
        if queued < now + REFILL_BELOW {
            self.push_silence(queued.max(now), now + FED_AHEAD)?;
        }
        Ok(())
    }

    fn push_silence(&self, from: u64, to: u64) -> std::result::Result<(), gst::FlowError> {
        let n = ns_to_samples(to.saturating_sub(from)) as usize;
        self.push_at(&vec![0.0; n], from)
    }

    fn push_at(&self, samples: &[f32], at: u64) -> std::result::Result<(), gst::FlowError> {
        if samples.is_empty() {
            return Ok(());
        }
        self.src.push_buffer(audio_buffer(samples, at))?;
        self.queued_until.set(at + samples_to_ns(samples.len() as u64));
        Ok(())
    }

    fn failure(&self, spec: &AudioOutSpec) -> Error {
        let why = match check_bus(&self.pipeline) {
            Err(Error::Media(why)) => why,
            Err(e) => e.to_string(),
            Ok(()) => "it stopped".to_owned(),
        };
        Error::Media(format!(
            "--audio-out {spec}: {why}; is a PulseAudio or PipeWire server running (`lipsync doctor`), and does \
             the sink exist (`pactl list short sinks`; a virtual microphone: `pactl load-module \
             module-null-sink sink_name=lipsync_mic`)?"
        ))
    }
}

impl Drop for SinkStream {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl AudioOutput {
    /// Opens the sink; samples pushed with running time `pts` play at `pts + latency` on `clock`.
    ///
    /// A sink nothing played into may hold a new stream back for a while (PulseAudio's null sink renders
    /// up to 2 s ahead when idle), and the stream's clock comes out of that skewed. So a first stream
    /// wakes the sink, and the one that plays the voice connects while it is awake.
    pub fn open(spec: &AudioOutSpec, clock: &LiveClock, latency: u64) -> Result<Self> {
        let waking = SinkStream::open(spec, clock)?;
        if !waking.wait_flowing(WAKE_TIMEOUT) {
            return Err(match check_bus(&waking.pipeline) {
                Err(_) => waking.failure(spec),
                Ok(()) => Error::Media(format!(
                    "--audio-out {spec}: the server took no sound for {} s: is the sink suspended or stalled?",
                    WAKE_TIMEOUT.as_secs()
                )),
            });
        }
        let stream = SinkStream::open(spec, clock)?;
        // Awake, the sink takes it at once; if not, it plays late and the sink's clock slaving catches up.
        stream.wait_flowing(WAKE_TIMEOUT);
        drop(waking);
        Ok(AudioOutput { stream, spec: spec.clone(), latency, late_samples: Cell::new(0) })
    }

    /// Queues `samples` (16 kHz) whose first has running time `pts`; they play at `pts + latency`. A
    /// gap since the last sound is filled with silence; a part whose time was already filled is dropped
    /// (counted in [`AudioOutput::late_samples`]).
    pub fn push(&self, samples: &[f32], pts: u64) -> Result<()> {
        let stream = &self.stream;
        let start = pts + self.latency;
        let queued = stream.queued_until.get();
        let skip = (ns_to_samples(queued.saturating_sub(start)) as usize).min(samples.len());
        self.late_samples.set(self.late_samples.get() + skip as u64);
        let pushed = if start > queued { stream.push_silence(queued, start) } else { Ok(()) };
        pushed.and_then(|_| stream.push_at(&samples[skip..], start.max(queued))).map_err(|_| stream.failure(&self.spec))
    }

    /// Silence up to a little ahead of the clock, where the sound queued ends sooner: call it often (the
    /// sink must not run dry).
    pub fn keep_fed(&self) -> Result<()> {
        self.stream.keep_fed().map_err(|_| self.stream.failure(&self.spec))
    }

    /// Samples of speech dropped because they came after their time.
    pub fn late_samples(&self) -> u64 {
        self.late_samples.get()
    }

    /// Plays out what is queued, then closes the sink.
    pub fn finish(self) -> Result<()> {
        let _ = self.stream.src.end_of_stream();
        super::wait_eos(&self.stream.pipeline, gst::ClockTime::from_seconds(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!("pulse".parse::<AudioOutSpec>().unwrap(), AudioOutSpec::Pulse(None));
        let named: AudioOutSpec = "pulse:lipsync_mic".parse().unwrap();
        assert_eq!(named, AudioOutSpec::Pulse(Some("lipsync_mic".into())));
        assert_eq!(named.to_string(), "pulse:lipsync_mic");
        for bad in ["pulse:", "alsa", "", "pulsex"] {
            let e = bad.parse::<AudioOutSpec>().unwrap_err().to_string();
            assert!(e.contains("pactl list short sinks"), "{bad}: {e}");
        }
    }
}
