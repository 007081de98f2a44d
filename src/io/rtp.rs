//! RTP audio in (`rtp://ADDR:PORT?codec=opus|l16`): udpsrc, rtpjitterbuffer, depayloader and decoder,
//! resampled to 16 kHz mono by GStreamer, into the engine's audio ring from the appsink's streaming thread.

use std::str::FromStr;

use gst::prelude::*;
use parking_lot::Mutex;

use super::live::LiveClock;
use super::{by_name, check_bus, launch, set_state};
use crate::audio::AudioProducer;
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
}

impl FromStr for RtpSource {
    type Err = Error;
    /// `rtp://ADDR:PORT?codec=opus` or `rtp://ADDR:PORT?codec=l16[&rate=16000][&channels=1]`, optional
    /// `&jitter=MS` (default 50).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!("audio source `{s}`: {why} (expected rtp://ADDR:PORT?codec=opus|l16)"))
        };
        let rest = s.strip_prefix("rtp://").ok_or_else(|| bad("not an rtp:// URL"))?;
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (address, port) = hostport.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: u16 = port.parse().map_err(|_| bad("invalid port"))?;
        let mut codec = None;
        let (mut rate, mut channels, mut jitter_ms) = (16_000u32, 1u32, 50u32);
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad("malformed query"))?;
            match k {
                "codec" => codec = Some(v.to_ascii_lowercase()),
                "rate" => rate = v.parse().map_err(|_| bad("invalid rate"))?,
                "channels" => channels = v.parse().map_err(|_| bad("invalid channels"))?,
                "jitter" => jitter_ms = v.parse().map_err(|_| bad("invalid jitter"))?,
                other => return Err(bad(&format!("unknown parameter `{other}`"))),
            }
        }
        let codec = match codec.as_deref() {
            Some("opus") => RtpCodec::Opus,
            Some("l16") => RtpCodec::L16 { rate, channels },
            Some(other) => return Err(bad(&format!("unknown codec `{other}`"))),
            None => return Err(bad("missing codec")),
        };
        Ok(RtpSource { address: address.to_owned(), port, codec, jitter_ms })
    }
}

/// A running RTP receiver; dropping it stops the pipeline.
pub struct RtpAudioReceiver {
    pipeline: gst::Pipeline,
}

impl RtpAudioReceiver {
    pub fn start(source: &RtpSource, producer: AudioProducer, clock: &LiveClock) -> Result<Self> {
        let (caps, depay) = match source.codec {
            RtpCodec::Opus => (
                "application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96".to_owned(),
                "rtpopusdepay ! opusdec",
            ),
            RtpCodec::L16 { rate, channels } => (
                format!(
                    "application/x-rtp,media=audio,clock-rate={rate},encoding-name=L16,channels={channels},payload=96"
                ),
                "rtpL16depay",
            ),
        };
        let pipeline = launch(&format!(
            "udpsrc name=udp caps=\"{caps}\" ! rtpjitterbuffer latency={} ! {depay} ! audioconvert ! audioresample ! \
             audio/x-raw,format=F32LE,rate=16000,channels=1,layout=interleaved ! appsink name=sink sync=false",
            source.jitter_ms
        ))?;
        let udp: gst::Element = by_name(&pipeline, "udp")?;
        udp.set_property("address", &source.address);
        udp.set_property("port", source.port as i32);
        clock.attach(&pipeline);
        let sink: gst_app::AppSink = by_name(&pipeline, "sink")?;
        // The producer and a sample buffer reused for every packet.
        let state = Mutex::new((producer, Vec::<f32>::new()));
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                    let pts = buffer
                        .pts()
                        .and_then(|pts| sample.segment()?.downcast_ref::<gst::ClockTime>()?.to_running_time(pts));
                    let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                    // Only this streaming thread takes the lock: it is never contended.
                    let mut guard = state.lock();
                    let (producer, samples) = &mut *guard;
                    samples.clear();
                    samples.extend(map.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                    let _ = producer.push(pts.map(|t| t.nseconds()), samples);
                    Ok(gst::FlowSuccess::Ok)
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
        assert_eq!(s.jitter_ms, 80);
        let e = "rtp://1.2.3.4:5?codec=mp3".parse::<RtpSource>().unwrap_err();
        assert!(e.to_string().contains("unknown codec `mp3`"), "{e}");
        assert!("udp://1.2.3.4:5".parse::<RtpSource>().is_err());
    }
}
