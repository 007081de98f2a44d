//! RTP audio in (`rtp://ADDR:PORT?codec=opus|l16`): udpsrc, rtpjitterbuffer, depayloader and decoder,
//! resampled to 16 kHz mono by GStreamer, into the engine's audio ring from the appsink's streaming thread.

use std::str::FromStr;

use gst::prelude::*;
use parking_lot::Mutex;

use super::live::LiveClock;
use super::{by_name, check_bus, launch, set_state};
use crate::audio::{AudioProducer, ns_to_samples, samples_to_ns};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpCodec {
    Opus,
    /// Linear 16-bit PCM with its clock rate and channel count.
    L16 {
        rate: u32,
        channels: u32,
    },
}

/// Where RTP audio arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpSource {
    pub address: String,
    pub port: u16,
    pub codec: RtpCodec,
    /// Jitter buffer size in ms.
    pub jitter_ms: u32,
    /// The sender may send faster than real time (a TTS sends each utterance as it is made): the audio is
    /// timed by the RTP timestamps alone, from the first packet's arrival, not by when packets arrive.
    pub burst: bool,
}

impl FromStr for RtpSource {
    type Err = Error;
    /// `rtp://ADDR:PORT?codec=opus` or `rtp://ADDR:PORT?codec=l16[&rate=16000][&channels=1]`, optional
    /// `&jitter=MS` (default 50) and `&burst=1` (see [`RtpSource::burst`]).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!("audio source `{s}`: {why} (expected rtp://ADDR:PORT?codec=opus|l16)"))
        };
        let rest = s.strip_prefix("rtp://").ok_or_else(|| bad("not an rtp:// URL"))?;
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (address, port) = hostport.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
        let mut codec = None;
        let (mut rate, mut channels, mut jitter_ms, mut burst) = (16_000u32, 1u32, 50u32, false);
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad("malformed query"))?;
            match k {
                "codec" => codec = Some(v.to_ascii_lowercase()),
                "rate" => rate = v.parse().map_err(|_| bad("invalid rate"))?,
                "channels" => channels = v.parse().map_err(|_| bad("invalid channels"))?,
                "jitter" => jitter_ms = v.parse().map_err(|_| bad("invalid jitter"))?,
                "burst" => {
                    burst = match v {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" => false,
                        _ => return Err(bad("burst is 1 or 0")),
                    }
                }
                other => return Err(bad(&format!("unknown parameter `{other}`"))),
            }
        }
        let codec = match codec.as_deref() {
            Some("opus") => RtpCodec::Opus,
            Some("l16") => RtpCodec::L16 { rate, channels },
            Some(other) => return Err(bad(&format!("unknown codec `{other}`"))),
            None => return Err(bad("missing codec")),
        };
        Ok(RtpSource { address: address.to_owned(), port, codec, jitter_ms, burst })
    }
}

/// The longest hole between two packets' audio that is filled with silence; a longer one is a pause of the
/// sender, left to the engine (it renders silence there too, and counts it).
const MAX_HOLE: u64 = 1_000_000_000;

/// The receive buffer asked for in burst mode: 30 s of L16 at 16 kHz, with the kernel's overhead per packet.
const BURST_SOCKET_BUFFER: i32 = 4 << 20;

/// The appsink's side of a receiver: decoded audio, and silence for what was lost, into the engine's ring.
struct Receiving {
    producer: AudioProducer,
    /// A sample buffer reused for every packet.
    samples: Vec<f32>,
    /// The segment of the audio, for the running time of a gap.
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// Running time just past the last audio pushed.
    end: Option<u64>,
    /// Burst mode: the jitter buffer times the audio by the RTP timestamps alone, from 0; the first
    /// packet's arrival (running time on `clock`) minus its time places it on the session's timeline.
    burst: Option<(LiveClock, Option<i64>)>,
}

impl Receiving {
    fn sample(&mut self, sample: &gst::Sample) -> std::result::Result<gst::FlowSuccess, gst::FlowError> {
        let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
        if let Some(segment) = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>()) {
            self.segment = Some(segment.clone());
        }
        let pts = buffer.pts().and_then(|pts| self.segment.as_ref()?.to_running_time(pts));
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        self.samples.clear();
        self.samples.extend(map.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        let pts = pts.map(|t| self.placed(t.nseconds()));
        // A hole since the last audio (a loss the gap did not cover in full) is silence too; a burst
        // sender's holes are the pauses between its utterances, left as they are.
        if let (Some(end), Some(pts)) = (self.end, pts)
            && self.burst.is_none()
            && pts > end
            && pts - end <= MAX_HOLE
        {
            self.silence(end, ns_to_samples(pts - end) as usize);
        }
        self.end = pts.map(|t| t + samples_to_ns(self.samples.len() as u64));
        let _ = self.producer.push(pts, &self.samples);
        Ok(gst::FlowSuccess::Ok)
    }

    /// Where audio the jitter buffer timed `t` plays on the session's timeline.
    fn placed(&mut self, t: u64) -> u64 {
        match &mut self.burst {
            None => t,
            Some((clock, offset)) => {
                let offset = *offset.get_or_insert_with(|| clock.now() as i64 - t as i64);
                (t as i64 + offset).max(0) as u64
            }
        }
    }

    /// Pushes `n` samples of silence from running time `from`.
    fn silence(&mut self, from: u64, n: usize) {
        if n > 0 {
            let _ = self.producer.push(Some(from), &vec![0.0; n]);
        }
    }

    /// A gap (the depayloader's word for packets the jitter buffer gave up on) becomes silence, from the end
    /// of the audio before it (the jitter buffer's estimate of where a lost packet lies can fall short) to
    /// the gap's end. Audio that arrives after all for the same time replaces it.
    fn event(&mut self, event: &gst::Event) {
        match event.view() {
            gst::EventView::Segment(s) => {
                if let Some(segment) = s.segment().downcast_ref::<gst::ClockTime>() {
                    self.segment = Some(segment.clone());
                }
            }
            gst::EventView::Gap(gap) => {
                let (start, duration) = gap.get();
                let Some(at) = self.segment.as_ref().and_then(|s| s.to_running_time(start)) else { return };
                let at = self.placed(at.nseconds());
                let to = at + duration.map_or(0, |d| d.nseconds());
                let from = self.end.map_or(at, |end| end.min(at));
                let n = ns_to_samples(to.saturating_sub(from)) as usize;
                self.end = Some(from + samples_to_ns(n as u64)).max(self.end);
                self.silence(from, n);
            }
            _ => {}
        }
    }
}

/// A running RTP receiver; dropping it stops the pipeline.
pub struct RtpAudioReceiver {
    pipeline: gst::Pipeline,
}

impl RtpAudioReceiver {
    /// Receives `source` into `producer`. Packets the jitter buffer gives up on are concealed: Opus by the
    /// decoder's loss concealment, L16 by silence of the lost packets' length, so the engine sees audio
    /// that is complete, if not exact, and renders on time.
    pub fn start(source: &RtpSource, producer: AudioProducer, clock: &LiveClock) -> Result<Self> {
        let (caps, depay) = match source.codec {
            RtpCodec::Opus => (
                "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96".to_owned(),
                "rtpopusdepay ! opusdec plc=true",
            ),
            RtpCodec::L16 { rate, channels } => (
                format!(
                    "application/x-rtp,media=audio,clock-rate={rate},encoding-name=L16,channels={channels},payload=96"
                ),
                "rtpL16depay",
            ),
        };
        let pipeline = launch(&format!(
            "udpsrc name=udp caps=\"{caps}\" ! rtpjitterbuffer latency={} do-lost=true mode={} ! {depay} ! audioconvert ! \
             audioresample ! audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! \
             appsink name=sink sync=false",
            source.jitter_ms,
            // `slave` follows the sender's clock by the packets' arrival, which a burst would squeeze.
            if source.burst { "none" } else { "slave" }
        ))?;
        let udp: gst::Element = by_name(&pipeline, "udp")?;
        udp.set_property("address", &source.address);
        udp.set_property("port", source.port as i32);
        if source.burst {
            // A burst arrives at once: the socket must hold it until the jitter buffer takes it (the
            // kernel caps this at net.core.rmem_max).
            udp.set_property("buffer-size", BURST_SOCKET_BUFFER);
        }
        clock.attach(&pipeline);
        let sink: gst_app::AppSink = by_name(&pipeline, "sink")?;
        // Both callbacks run on the streaming thread, one at a time: the lock is never contended.
        let receiving = std::sync::Arc::new(Mutex::new(Receiving {
            producer,
            samples: Vec::new(),
            segment: None,
            end: None,
            burst: source.burst.then(|| (clock.clone(), None)),
        }));
        let on_gap = receiving.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    receiving.lock().sample(&sample)
                })
                .new_event(move |sink| {
                    if let Ok(object) = sink.pull_object()
                        && let Ok(event) = object.downcast::<gst::Event>()
                    {
                        on_gap.lock().event(&event);
                    }
                    true
                })
                .build(),
        );
        set_state(&pipeline, gst::State::Playing)?;
        Ok(RtpAudioReceiver { pipeline })
    }

    /// The receiver's first error, if it failed.
    pub fn check(&self) -> Result<()> {
        check_bus(&self.pipeline)
    }
}

impl Drop for RtpAudioReceiver {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtp_urls() {
        let s: RtpSource = "rtp://127.0.0.1:5004?codec=opus".parse().unwrap();
        assert_eq!((s.address.as_str(), s.port, s.codec), ("127.0.0.1", 5004, RtpCodec::Opus));
        let s: RtpSource = "rtp://0.0.0.0:6000?codec=l16&rate=48000&channels=2&jitter=80".parse().unwrap();
        assert_eq!(s.codec, RtpCodec::L16 { rate: 48000, channels: 2 });
        assert_eq!((s.jitter_ms, s.burst), (80, false));
        assert!("rtp://0.0.0.0:6000?codec=opus&burst=1".parse::<RtpSource>().unwrap().burst);
        assert!("rtp://0.0.0.0:6000?codec=opus&burst=maybe".parse::<RtpSource>().is_err());
        let e = "rtp://1.2.3.4:5?codec=mp3".parse::<RtpSource>().unwrap_err();
        assert!(e.to_string().contains("unknown codec `mp3`"), "{e}");
        assert!("udp://1.2.3.4:5".parse::<RtpSource>().is_err());
    }
}
