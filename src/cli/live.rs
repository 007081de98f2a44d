//! `lipsync live`: camera (or test pattern, or a file in real time) and a live voice in, frames out at a
//! fixed latency to a virtual camera, a file or a window.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Args;

use super::{RendererArgs, TrackingArgs, print_summary, stop_signals};
use crate::audio::{RingConfig, ns_to_samples, samples_to_ns};
use crate::engine::{AudioGaps, Engine, EngineConfig, EngineEvent, Fallback, Mode, OutputFrame};
use crate::error::{Error, Result};
use crate::frame::VideoFrame;
use crate::io::control::{Command, ControlPort};
use crate::io::{
    AudioOutSpec, AudioOutput, FPS, FRAME_NS, LiveClock, OutputSpec, RtpAudioReceiver, RtpSource, VideoInput,
    VideoOutput,
};

#[derive(Args, Debug)]
pub struct LiveArgs {
    /// Video in: /dev/videoN (a camera), `test` (a moving test pattern), a photo (an avatar: its frame
    /// repeated) or a video file played in real time.
    #[arg(long, visible_alias = "face", default_value = "/dev/video0")]
    camera: String,
    /// A video file as the camera starts again when it ends (the session goes on until --duration or
    /// Ctrl-C).
    #[arg(long = "loop")]
    looping: bool,
    /// Voice in: `mic` (the default input), `mic:NAME` (see `lipsync devices`), or
    /// rtp://ADDR:PORT?codec=opus|l16[&rate=HZ][&channels=N][&jitter=MS][&burst=1] (burst: the sender
    /// sends faster than real time, a TTS; its RTP timestamps say when each sample plays).
    #[arg(long, default_value = "mic")]
    audio: String,
    /// Where no audio came: `wait` for it (a microphone, a steady RTP stream: late audio) or take it as
    /// `silence` (speech sent in turns, a TTS or a voice agent: the mouth closes between them).
    #[arg(long, value_enum, default_value_t = AudioGaps::Wait)]
    audio_gaps: AudioGaps,
    /// Seconds of audio that may queue ahead of the video (speech sent faster than real time); more
    /// stops the session with an error.
    #[arg(long, default_value_t = 30.0)]
    max_queue_s: f64,
    /// A UDP control port, HOST:PORT: the datagram `clear` drops the speech queued (the user
    /// interrupted); the sender of the last command is told what plays, a line each: `started SEGMENT
    /// RUNNING_MS` and `finished SEGMENT POSITION_MS complete|interrupted`.
    #[arg(long)]
    control: Option<String>,
    /// Video out: v4l2:/dev/videoN (e.g. a v4l2loopback virtual camera), `window`, or a file (.mkv, .mp4).
    #[arg(long)]
    out: OutputSpec,
    /// Voice out: `pulse` (the default sink of PulseAudio or PipeWire) or `pulse:SINK`, e.g. a null sink
    /// whose monitor a call application takes as its microphone. Each sound plays when its frame leaves
    /// for --out, delayed by the same latency.
    #[arg(long)]
    audio_out: Option<AudioOutSpec>,
    /// Fixed latency in ms (default: the renderer's recommendation).
    #[arg(long)]
    latency_ms: Option<u64>,
    #[command(flatten)]
    renderer: RendererArgs,
    /// What replaces a frame whose render misses its deadline.
    #[arg(long, value_enum, default_value_t = Fallback::Original)]
    fallback: Fallback,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    #[command(flatten)]
    tracking: TrackingArgs,
}

/// A frame on its way out, with its sound (pts and 16 kHz samples) for outputs that take it.
type Outgoing = (OutputFrame<()>, Option<(u64, Vec<f32>)>);

/// The session's sound as one unbroken run of 16 kHz samples from the first frame on, cut where the
/// frames end. It is read as the engine hands each frame over (it keeps a frame's audio only until its
/// next call).
#[derive(Default)]
struct Soundtrack {
    until: Option<u64>,
}

impl Soundtrack {
    /// The samples up to the end of `frame` not yet taken, and the running time of the first.
    fn take(&mut self, engine: &mut Engine<()>, frame: &VideoFrame) -> (u64, Vec<f32>) {
        let end = ns_to_samples(frame.pts + frame.duration.unwrap_or(FRAME_NS));
        let start = self.until.unwrap_or(ns_to_samples(frame.pts)).min(end);
        self.until = Some(end);
        (samples_to_ns(start), engine.audio_between(samples_to_ns(start), samples_to_ns(end)))
    }
}

/// Keeps the audio source alive for the session (dropping it stops capture).
#[allow(dead_code)]
enum AudioIn {
    Rtp(RtpAudioReceiver),
    #[cfg(feature = "cpal")]
    Mic(crate::audio::capture::MicCapture),
}

/// How long after its timestamp a block of audio reaches the engine, for each kind of source.
fn audio_delay(spec: &str) -> Result<u64> {
    const MS: u64 = 1_000_000;
    if spec.starts_with("rtp://") {
        let source: RtpSource = spec.parse()?;
        // After a lost packet the jitter buffer holds the next ones this long before it gives up on it;
        // plus one packet's length (Opus sends 20 ms, L16 at 16 kHz mono fills an MTU with about 43 ms),
        // and decoding and scheduling.
        Ok((source.jitter_ms as u64 + 40) * MS)
    } else {
        // Device period, the resampler's block (1024 input samples) and the 5 ms hand-off poll.
        Ok(60 * MS)
    }
}

fn start_audio(spec: &str, producer: crate::audio::AudioProducer, clock: &LiveClock) -> Result<AudioIn> {
    if spec.starts_with("rtp://") {
        let source: RtpSource = spec.parse()?;
        eprintln!("audio: RTP {:?} on {}:{}", source.codec, source.address, source.port);
        return Ok(AudioIn::Rtp(RtpAudioReceiver::start(&source, producer, clock)?));
    }
    if spec == "mic" || spec.starts_with("mic:") {
        #[cfg(feature = "cpal")]
        {
            let device = spec.strip_prefix("mic:");
            let c = clock.clone();
            let mic = crate::audio::capture::MicCapture::start(device, producer, Arc::new(move || c.now()))?;
            eprintln!("audio: microphone {} ({} Hz, {} ch)", mic.device, mic.rate, mic.channels);
            return Ok(AudioIn::Mic(mic));
        }
        #[cfg(not(feature = "cpal"))]
        return Err(Error::InvalidArgument("this build has no microphone support (feature `cpal`)".into()));
    }
    Err(Error::InvalidArgument(format!("audio `{spec}`: use mic, mic:NAME or rtp://ADDR:PORT?codec=opus|l16")))
}

pub fn run(args: &LiveArgs) -> Result<()> {
    let clock = LiveClock::new()?;
    let renderer = args.renderer.create(None, crate::io::is_image(std::path::Path::new(&args.camera)))?;
    let kind = renderer.name();
    if args.renderer.is_stsa_on_cpu() {
        eprintln!(
            "warning: --renderer stsa on the CPU takes seconds per frame: live frames will go out as the fallback; \
             use --device cuda:0 (built with --features cuda) or --renderer classic"
        );
    }
    // The budget must cover the audio's own delay too: a frame's audio reaches the ring that much after
    // the time it is stamped with.
    let recommended = renderer.recommended_latency() + audio_delay(&args.audio)?;
    let latency = args.latency_ms.map_or(recommended, |ms| ms * 1_000_000);
    if latency < recommended {
        eprintln!(
            "warning: --latency-ms {} is below the {} ms this renderer and audio source need: frames will be late",
            latency / 1_000_000,
            recommended / 1_000_000
        );
    }
    if !(args.max_queue_s.is_finite() && args.max_queue_s >= 1.0) {
        return Err(Error::InvalidArgument(format!("--max-queue-s {}: at least 1 s", args.max_queue_s)));
    }
    let config = EngineConfig {
        mode: Mode::Live,
        latency: Some(latency),
        fallback: args.fallback,
        tracking: args.tracking.config(),
        gaps: args.audio_gaps,
        report_playback: true,
        // A burst may reach the hand-off all at once, between two of this loop's turns.
        ring: {
            let ring = RingConfig::for_queue((args.max_queue_s * 1e9) as u64);
            RingConfig { handoff_samples: ring.history_samples, ..ring }
        },
        ..Default::default()
    };
    let (mut engine, producer) = Engine::<()>::new(renderer, config)?;
    let mut control = args.control.as_deref().map(ControlPort::bind).transpose()?;
    if let Some(port) = control.as_ref().and_then(ControlPort::local_addr) {
        eprintln!("control: udp {port} (send `clear` to drop the queued speech)");
    }
    // Before the inputs start: waking the sink may take a second or two.
    let voice = args.audio_out.as_ref().map(|spec| AudioOutput::open(spec, &clock, latency)).transpose()?;
    if let Some(spec) = &args.audio_out {
        eprintln!("voice: {spec}, {} ms behind its time as the video", latency / 1_000_000);
    }
    let audio = start_audio(&args.audio, producer, &clock)?;
    let input = VideoInput::open(&args.camera, &clock, args.looping)?;
    eprintln!("video: {}; renderer {kind}, latency {} ms; Ctrl-C stops", args.camera, latency / 1_000_000);
    // Other processes' times (a recorder, a sender's log) relate to the session's by this.
    eprintln!("clock: running time 0 is {} ns on the monotonic clock", clock.base().nseconds());

    // Ctrl-C (SIGINT) and SIGTERM end the session cleanly (the output file is completed).
    let interrupted = stop_signals(false)?;

    let started = Instant::now();
    let stop_at = args.duration.map(|s| Duration::from_secs_f64(s.max(0.0)));
    let mut output: Option<VideoOutput> = None;
    // A file output carries the sound; the voice goes out as soon as its frame is made, the sink
    // playing it at the frame's time plus the latency.
    let file_sound = matches!(args.out, OutputSpec::File(_));
    let mut soundtrack = Soundtrack::default();
    let mut hand_over = |engine: &mut Engine<()>, out: OutputFrame<()>, held: &mut VecDeque<Outgoing>| -> Result<()> {
        let sound = (file_sound || voice.is_some()).then(|| soundtrack.take(engine, &out.frame));
        if let (Some(voice), Some((pts, samples))) = (&voice, &sound) {
            voice.push(samples, *pts)?;
        }
        held.push_back((out, sound.filter(|_| file_sound)));
        Ok(())
    };
    let mut held: VecDeque<Outgoing> = VecDeque::new();
    // How long after its time (pts + latency) a frame left at worst.
    let mut late_max = 0u64;
    let mut emit = |(out, sound): Outgoing, output: &mut Option<VideoOutput>| -> Result<()> {
        if output.is_none() {
            *output = Some(VideoOutput::open(&args.out, out.frame.layout(), FPS as i32)?);
        }
        let output = output.as_ref().expect("opened");
        if let Some((pts, samples)) = sound.filter(|(_, s)| !s.is_empty()) {
            output.push_audio(&samples, pts)?;
        }
        output.push(&out.frame, out.image)?;
        late_max = late_max.max(clock.now().saturating_sub(out.frame.pts + latency));
        Ok(())
    };
    let mut ended = None;
    loop {
        if interrupted.load(Ordering::SeqCst) || stop_at.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        if let AudioIn::Rtp(rtp) = &audio {
            rtp.check()?;
        }
        match input.pull(gst::ClockTime::from_mseconds(5)) {
            Ok(Some(frame)) => engine.push_video(frame, ()),
            Ok(None) => {}
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
        if let Some(voice) = &voice {
            voice.keep_fed()?;
        }
        let now = clock.now();
        if let Some(Command::Clear) = control.as_mut().and_then(ControlPort::poll) {
            engine.flush_audio(Some(now));
        }
        for out in engine.process(Some(now)) {
            hand_over(&mut engine, out, &mut held)?;
        }
        // Out at exactly pts + latency: the declared latency, not whenever the render happened to finish.
        while held.front().is_some_and(|(f, _)| now >= f.frame.pts + latency) {
            emit(held.pop_front().expect("front exists"), &mut output)?;
        }
        for event in engine.take_events() {
            match event {
                EngineEvent::Playback(p) => {
                    eprintln!("{event}");
                    if let Some(c) = &control {
                        c.report(&p);
                    }
                }
                EngineEvent::AudioOverflow { .. } => {
                    ended = Some(Error::Media(format!(
                        "{event}: --max-queue-s is {} s; raise it, or send the speech no further ahead of its time",
                        args.max_queue_s
                    )));
                }
                other => eprintln!("warning: {other}"),
            }
        }
        if ended.is_some() {
            break;
        }
    }
    for out in engine.finish(Some(clock.now())) {
        hand_over(&mut engine, out, &mut held)?;
    }
    for out in held {
        emit(out, &mut output)?;
    }
    let opened = output.is_some();
    if let Some(out) = output {
        out.finish()?;
    }
    if let Some(voice) = voice {
        if voice.late_samples() > 0 {
            eprintln!(
                "warning: {} ms of the voice came after its time and was not played: raise --latency-ms",
                samples_to_ns(voice.late_samples()) / 1_000_000
            );
        }
        voice.finish()?;
    }
    drop(audio);
    let stats = engine.stats().snapshot();
    let written = match &args.out {
        OutputSpec::File(p) if opened => Some(p.clone()),
        _ => None::<PathBuf>,
    };
    print_summary(&stats, started.elapsed(), written.as_ref());
    eprintln!("frames left at most {:.1} ms after their time (pts + latency)", late_max as f64 / 1e6);
    match ended {
        // A file played as the camera ends normally.
        Some(Error::Media(m)) if m.contains("ended") => Ok(()),
        Some(e) => Err(e),
        None => Ok(()),
    }
}
