//! Implementation of the `lipsync` element.
//!
//! Data flow: the aggregate function (on the aggregator's src task) pops audio buffers into the engine's
//! audio ring and video buffers into the engine (mapped, not copied), lets the engine start renders and
//! collect results, and pushes the frames the engine releases, in order, with their input timestamps.
//!
//! Timed phonemes: `lipsync/phoneme` events on the audio pad go into a [`PhonemeFeed`] on the running-time
//! timeline of the frames, which the renderer reads on its own thread.
//!
//! Timing: the element's latency is the Aggregator's `latency` property (default: the renderer's
//! recommendation); the base class adds it to upstream's in the latency query and, in live pipelines, wakes
//! `aggregate(timeout=true)` at `next_time + latency` = the deadline of the oldest frame inside, which then
//! goes out rendered or as the fallback, or (`audio-gaps=silence`) the time a waiting frame's look-ahead
//! is due, when it is rendered with the audio there is. Non-live, every frame is rendered.
//!
//! Speech in turns: the audio ring holds up to `max-queue` ahead of the frames (more is an error); a flush
//! on the audio pad drops it, and the engine's playback events become `lipsync-playback` messages.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use parking_lot::Mutex;

use lipsync::engine::{EngineEvent, PlaybackEvent, Stats, StatsSnapshot};
use lipsync::face::models::ModelSource;
use lipsync::render::Simulated;
use lipsync::stsa::models::ComputeDevice;
use lipsync::visemes::PhonemeFeed;
use lipsync::{
    AudioProducer, Engine, EngineConfig, FrameLayout, OutputFrame, RendererKind, RendererOptions, TrackingConfig,
    VideoFrame,
};

use super::{AudioGaps, Fallback, Precision, Renderer};

static CAT: LazyLock<gst::DebugCategory> =
    LazyLock::new(|| gst::DebugCategory::new("lipsync", gst::DebugColorFlags::empty(), Some("Streaming lip-sync")));

const DEFAULT_RENDERER: Renderer = Renderer::Classic;
const DEFAULT_FALLBACK: Fallback = Fallback::Original;
const DEFAULT_AUDIO_TIMEOUT: u64 = 1_000_000_000;
const DEFAULT_STATS_INTERVAL: u64 = 1_000_000_000;
const DEFAULT_SIMULATE_DELAY: u64 = 0;
const DEFAULT_SIMULATE_LOOKAHEAD: u64 = 0;
const DEFAULT_DEVICE: &str = "cpu";
const DEFAULT_AUDIO_GAPS: AudioGaps = AudioGaps::Wait;
const DEFAULT_MAX_QUEUE: u64 = 30_000_000_000;
/// Renders queued on the worker at once.
const MAX_IN_FLIGHT: usize = 2;
/// Audio is handed to the ring in pieces of at most this many samples.
/// Name of the custom downstream event that carries one timed phoneme on the audio pad.
const PHONEME_EVENT: &str = "lipsync/phoneme";
/// Phonemes that ended this long before the last frame sent are forgotten.
const PHONEME_HISTORY: gst::ClockTime = gst::ClockTime::from_seconds(5);

const VIDEO_FORMATS: [gst_video::VideoFormat; 6] = [
    gst_video::VideoFormat::Rgb,
    gst_video::VideoFormat::Rgba,
    gst_video::VideoFormat::Bgrx,
    gst_video::VideoFormat::Bgra,
    gst_video::VideoFormat::I420,
    gst_video::VideoFormat::Nv12,
];

#[derive(Debug, Clone)]
struct Settings {
    renderer: Renderer,
    fallback: Fallback,
    audio_timeout: u64,
    audio_gaps: AudioGaps,
    max_queue: u64,
    stats_interval: u64,
    simulate_delay: u64,
    simulate_lookahead: u64,
    track_faces: bool,
    still_face: bool,
    face_models: Option<String>,
    weights: Option<String>,
    device: ComputeDevice,
    precision: Precision,
    /// The latency the element chose itself; while `latency` still has this value, renderer changes move
    /// it to the new renderer's recommendation.
    auto_latency: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            renderer: DEFAULT_RENDERER,
            fallback: DEFAULT_FALLBACK,
            audio_timeout: DEFAULT_AUDIO_TIMEOUT,
            audio_gaps: DEFAULT_AUDIO_GAPS,
            max_queue: DEFAULT_MAX_QUEUE,
            stats_interval: DEFAULT_STATS_INTERVAL,
            simulate_delay: DEFAULT_SIMULATE_DELAY,
            simulate_lookahead: DEFAULT_SIMULATE_LOOKAHEAD,
            track_faces: false,
            still_face: false,
            face_models: None,
            weights: None,
            device: ComputeDevice::Cpu,
            precision: Precision::F32,
            auto_latency: None,
        }
    }
}

/// Per-stream state, from `start` to `stop`.
struct Stream {
    engine: Engine<gst::Buffer>,
    audio: AudioProducer,
    /// Layout of video buffers without a `GstVideoMeta`, from the negotiated caps.
    layout: Option<FrameLayout>,
    /// Running time of the last video frame pushed into the engine.
    last_video_rt: Option<u64>,
    /// The time between frames the video caps give (`None` for a variable frame rate).
    frame_period: Option<u64>,
    /// Scratch space for converting audio bytes to samples.
    samples: Vec<f32>,
    next_stats_at: Option<u64>,
    /// Audio samples dropped since the stream's audio lost its timing (no timestamp to start from): the
    /// warning is posted once when the dropping starts, not once per buffer.
    untimed_samples: u64,
}

#[derive(Default)]
struct State {
    stream: Option<Stream>,
}

pub struct LipSync {
    video_pad: gst_base::AggregatorPad,
    audio_pad: Mutex<Option<gst_base::AggregatorPad>>,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Counters of the current (or last) stream; kept after stop so the properties stay readable.
    stats: Mutex<Arc<Stats>>,
    /// Timed phonemes from the audio pad's `lipsync/phoneme` events, in running time; every renderer the
    /// element creates reads this one feed.
    phonemes: PhonemeFeed,
}

fn video_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new().format_list(VIDEO_FORMATS).build()
}

fn audio_caps() -> gst::Caps {
    gst_audio::AudioCapsBuilder::new_interleaved()
        .format(gst_audio::AudioFormat::F32le)
        .rate(lipsync::audio::SAMPLE_RATE as i32)
        .channels(1)
        .build()
}

fn layout_from_info(info: &gst_video::VideoInfo) -> Result<FrameLayout, lipsync::Error> {
    FrameLayout::from_planes(info.format().to_str().as_str(), info.width(), info.height(), info.offset(), info.stride())
}

impl Settings {
    fn renderer(&self, phonemes: &PhonemeFeed) -> Result<Box<dyn lipsync::Renderer>, lipsync::Error> {
        let options = RendererOptions {
            weights: self.weights.as_ref().map(PathBuf::from),
            device: self.device,
            precision: self.precision.into(),
            phonemes: Some(phonemes.clone()),
            still_face: self.still_face,
        };
        let inner = RendererKind::from(self.renderer).create(&options)?;
        Ok(Simulated::wrap(inner, Duration::from_nanos(self.simulate_delay), self.simulate_lookahead))
    }

    /// The latency the renderer recommends, without building it (STSA would load its networks).
    fn recommended_latency(&self) -> Option<u64> {
        let (window, latency) = RendererKind::from(self.renderer).timing().ok()?;
        let delay = Duration::from_nanos(self.simulate_delay);
        Some(Simulated::recommended(window, latency, delay, self.simulate_lookahead))
    }
}

impl LipSync {
    fn settings(&self) -> Settings {
        self.settings.lock().clone()
    }

    /// Unless the user chose a latency, follow the renderer's recommendation.
    fn update_default_latency(&self) {
        let settings = self.settings();
        let user_chose = settings.auto_latency.is_some_and(|auto| auto != self.own_latency());
        if !user_chose && let Some(ns) = settings.recommended_latency() {
            self.settings.lock().auto_latency = Some(ns);
            self.obj().set_property("latency", ns);
        }
    }

    /// The element's own latency (the Aggregator `latency` property), in ns.
    fn own_latency(&self) -> u64 {
        self.obj().property::<u64>("latency")
    }

    /// Current running time minus upstream latency (total minus `own_latency`): the time base of the
    /// engine's deadlines. `None` when the pipeline is not live (then there are no deadlines).
    fn now(&self, own_latency: u64) -> Option<u64> {
        let obj = self.obj();
        let total = obj.latency()?;
        let clock = obj.clock()?;
        let base = obj.base_time()?;
        let running = clock.time().checked_sub(base)?;
        let upstream = total.nseconds().saturating_sub(own_latency);
        Some(running.nseconds().saturating_sub(upstream))
    }

    fn push_audio(&self, stream: &mut Stream, pad: &gst_base::AggregatorPad, buffer: &gst::Buffer) {
        let rt = running_time(pad, buffer.pts()).map(|t| t.nseconds());
        stream.samples.clear();
        if buffer.flags().contains(gst::BufferFlags::GAP) && buffer.size() == 0 {
            // A `gap` event (the aggregator queues it as an empty buffer): silence of its length. This is how
            // a jitter buffer with `do-lost=true` reports the packets it gave up on.
            let n = buffer.duration().map_or(0, |d| lipsync::audio::ns_to_samples(d.nseconds()));
            stream.samples.resize(n as usize, 0.0);
        } else {
            let Ok(map) = buffer.map_readable() else {
                gst::warning!(CAT, imp = self, "cannot map an audio buffer, skipping it");
                return;
            };
            stream.samples.extend(map.as_slice().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
        if let Err(e) = stream.engine.push_audio(&mut stream.audio, rt, &stream.samples) {
            if stream.untimed_samples == 0 {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    ("Dropping audio until a buffer with a timestamp arrives: {}", e),
                    ["The first audio buffer needs a timestamp; later ones may continue by sample count"]
                );
            }
            stream.untimed_samples += stream.samples.len() as u64;
            return;
        }
        if stream.untimed_samples > 0 {
            gst::info!(
                CAT,
                imp = self,
                "audio timed again after {} samples dropped without a timestamp",
                stream.untimed_samples
            );
            stream.untimed_samples = 0;
        }
    }

    fn push_video(&self, stream: &mut Stream, buffer: gst::Buffer) -> Result<(), gst::FlowError> {
        let Some(pts) = buffer.pts() else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Video buffer without a timestamp"),
                ["lipsync needs timestamped video; use do-timestamp=true on the source or a timestamping element"]
            );
            return Err(gst::FlowError::Error);
        };
        // `clip` let through only frames that start inside the segment.
        let Some(rt) = running_time(&self.video_pad, Some(pts)).map(|t| t.nseconds()) else {
            gst::element_imp_error!(self, gst::StreamError::Format, ("Video buffer at {} outside a time segment", pts));
            return Err(gst::FlowError::Error);
        };
        let Some(mut layout) = stream.layout else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("Video buffer before caps"));
            return Err(gst::FlowError::NotNegotiated);
        };
        if let Some(meta) = buffer.meta::<gst_video::VideoMeta>() {
            layout = layout.with_planes(meta.offset(), meta.stride());
        }
        let duration = buffer.duration().map(|d| d.nseconds()).or(stream.frame_period);
        let data = buffer.clone().into_mapped_buffer_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("Cannot map a video buffer"));
            gst::FlowError::Error
        })?;
        let frame = VideoFrame::new(layout, Arc::new(data), rt, duration).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
            gst::FlowError::Error
        })?;
        stream.last_video_rt = Some(rt);
        stream.engine.push_video(frame, buffer);
        Ok(())
    }

    /// Non-live: the audio the frames known so far need (with a frame to spare); `None` when no frame is
    /// known yet.
    fn audio_needed_until(&self, stream: &mut Stream) -> Option<u64> {
        let head = self.video_pad.peek_buffer().and_then(|b| running_time(&self.video_pad, b.pts()));
        let newest = head.map(|t| t.nseconds()).max(stream.last_video_rt)?;
        Some(stream.engine.window().end(newest) + stream.frame_period.unwrap_or(lipsync::frame::DEFAULT_FRAME_NS))
    }

    /// Non-live: take the next frame only once the audio has caught up with it, so the engine holds about
    /// a window of frames rather than the whole video.
    fn may_take_video(&self, stream: &mut Stream, buffer: &gst::Buffer, audio_done: bool) -> bool {
        if audio_done {
            return true;
        }
        let rt = running_time(&self.video_pad, buffer.pts());
        match (rt, stream.engine.audio_end()) {
            (Some(rt), Some(end)) => end >= rt.nseconds(),
            (None, _) => true, // let push_video report it
            (Some(_), None) => false,
        }
    }

    /// A `lipsync/phoneme` event from the audio pad: into the feed in running time, or dropped with a
    /// warning saying what was wrong.
    fn handle_phoneme(&self, pad: &gst_base::AggregatorPad, s: &gst::StructureRef) {
        let segment = pad.segment();
        let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
            gst::debug!(CAT, imp = self, "{PHONEME_EVENT} before a time segment on the audio pad, dropped");
            return;
        };
        let (phoneme, start, end) = match Self::parse_phoneme(s) {
            Ok(p) => p,
            Err(reason) => {
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Format,
                    ("Dropping a {} event: {}", PHONEME_EVENT, reason),
                    [
                        "Send {} with `phoneme` (string: ARPAbet, eSpeak NG or IPA), `start` (guint64 / GstClockTime ns, a timestamp in the audio_sink segment like a buffer PTS) and `duration` (guint64 / GstClockTime ns); got {}",
                        PHONEME_EVENT,
                        s
                    ]
                );
                return;
            }
        };
        // Like a buffer: the part outside the segment is cut off, none of it inside is dropped.
        let running = segment
            .clip(start, end)
            .and_then(|(start, end)| Some((segment.to_running_time(start?)?, segment.to_running_time(end?)?)));
        let Some((rt_start, rt_end)) = running else {
            gst::debug!(CAT, imp = self, "phoneme {phoneme:?} at {start}..{end} outside the audio segment, dropped");
            return;
        };
        if let Err(e) = self.phonemes.push(&phoneme, rt_start.nseconds(), rt_end.nseconds()) {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                ("Dropping a {} event: {}", PHONEME_EVENT, e),
                ["Phonemes are ARPAbet (aa, p, sh, pau; stress digits ignored), eSpeak NG mnemonics or IPA"]
            );
            return;
        }
        gst::trace!(CAT, imp = self, "phoneme {phoneme:?} at running time {rt_start}..{rt_end}");
    }

    /// The phoneme, start and end (start plus duration) of a `lipsync/phoneme` structure.
    fn parse_phoneme(s: &gst::StructureRef) -> Result<(String, gst::ClockTime, gst::ClockTime), String> {
        // The reason a field `name` that should be `what` is refused: missing, or of another type.
        let wrong = |name: &str, what: &str| match s.value(name) {
            Err(_) => format!("no `{name}` field"),
            Ok(v) => format!("`{name}` is a {} ({}), not {what}", v.type_(), v.serialize().unwrap_or_default()),
        };
        let phoneme = s.get::<&str>("phoneme").map_err(|_| wrong("phoneme", "a string"))?.to_owned();
        let time = |name: &str| match s.get::<Option<gst::ClockTime>>(name) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(format!("`{name}` is GST_CLOCK_TIME_NONE")),
            Err(_) => Err(wrong(name, "a guint64 (GstClockTime) in ns")),
        };
        let start = time("start")?;
        let duration = time("duration")?;
        let end = start
            .checked_add(duration)
            .ok_or_else(|| format!("phoneme {phoneme:?}: start {start} plus duration {duration} overflows"))?;
        Ok((phoneme, start, end))
    }

    fn output_buffer(out: OutputFrame<gst::Buffer>) -> gst::Buffer {
        match out.image {
            None => out.payload,
            Some(image) => {
                let mut buffer = gst::Buffer::from_mut_slice(image);
                {
                    let b = buffer.get_mut().expect("new buffer is writable");
                    if let Err(e) = out.payload.copy_into(
                        b,
                        gst::BufferCopyFlags::FLAGS | gst::BufferCopyFlags::TIMESTAMPS | gst::BufferCopyFlags::META,
                        ..,
                    ) {
                        gst::warning!(CAT, "cannot copy buffer metadata: {e}");
                    }
                }
                buffer
            }
        }
    }

    /// Posts the engine's events; an audio overflow is an error (returned, to stop the stream).
    fn post_events(&self, events: Vec<EngineEvent>) -> Result<(), gst::FlowError> {
        let mut result = Ok(());
        for e in events {
            match e {
                EngineEvent::RenderFailed(msg) => {
                    gst::element_imp_warning!(
                        self,
                        gst::StreamError::Failed,
                        ("{}", msg),
                        ["The frame went out as the fallback"]
                    )
                }
                EngineEvent::AudioMissing { lag_ns } => gst::element_imp_warning!(
                    self,
                    gst::StreamError::Demux,
                    ("No audio: video passes through unchanged"),
                    ["Audio lags the video by {} ms (audio-timeout); link audio_sink to lip-sync", lag_ns / 1_000_000]
                ),
                EngineEvent::AudioResumed => {
                    gst::info!(CAT, imp = self, "audio resumed, lip-sync rendering again")
                }
                EngineEvent::AudioOverflow { samples } => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Failed,
                        (
                            "Audio queue full: {} ms of audio dropped",
                            lipsync::audio::samples_to_ns(samples) / 1_000_000
                        ),
                        [
                            "More audio came ahead of the video than max-queue ({} s) holds: raise max-queue, or send the audio no further ahead of its time",
                            self.settings.lock().max_queue / 1_000_000_000
                        ]
                    );
                    result = Err(gst::FlowError::Error);
                }
                EngineEvent::Playback(p) => self.post_playback(p),
            }
        }
        result
    }

    /// A `lipsync-playback` element message: a speech segment started or finished playing.
    fn post_playback(&self, event: PlaybackEvent) {
        let s = match event {
            PlaybackEvent::Started { segment, running_time } => gst::Structure::builder("lipsync-playback")
                .field("event", "started")
                .field("segment", segment)
                .field("running-time", gst::ClockTime::from_nseconds(running_time))
                .build(),
            PlaybackEvent::Finished { segment, position, interrupted } => gst::Structure::builder("lipsync-playback")
                .field("event", "finished")
                .field("segment", segment)
                .field("position", gst::ClockTime::from_nseconds(position))
                .field("interrupted", interrupted)
                .build(),
        };
        gst::debug!(CAT, imp = self, "{s}");
        let _ = self.obj().post_message(gst::message::Element::builder(s).src(&*self.obj()).build());
    }

    fn stats_structure(s: &StatsSnapshot) -> gst::Structure {
        gst::Structure::builder("lipsync-stats")
            .field("frames-in", s.frames_in)
            .field("frames-rendered", s.frames_rendered)
            .field("frames-late", s.frames_late)
            .field("frames-fallback", s.frames_fallback)
            .field("frames-no-audio", s.frames_no_audio)
            .field("frames-no-face", s.frames_no_face)
            .field("audio-underruns", s.audio_underruns)
            .field("audio-overruns", s.audio_overruns)
            .field("audio-underrun-samples", s.audio_underrun_samples)
            .field("audio-overrun-samples", s.audio_overrun_samples)
            .field("render-time-p50", s.render_p50)
            .field("render-time-p90", s.render_p90)
            .field("render-time-p99", s.render_p99)
            .field("render-time-max", s.render_max)
            .build()
    }

    fn post_stats(&self) {
        let snapshot = self.stats.lock().snapshot();
        let msg = gst::message::Element::builder(Self::stats_structure(&snapshot)).src(&*self.obj()).build();
        let _ = self.obj().post_message(msg);
    }

    /// Pushes frames downstream; the state lock is not held.
    fn push_outputs(&self, outputs: Vec<OutputFrame<gst::Buffer>>) -> Result<gst::FlowSuccess, gst::FlowError> {
        for out in outputs {
            gst::trace!(CAT, imp = self, "out: {:?}", out);
            self.obj().finish_buffer(Self::output_buffer(out))?;
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// Video caps changed: frames of the old caps leave first (rendered with the audio there is).
    fn drain_for_caps(&self) -> Result<(), gst::FlowError> {
        let outputs = self.settle(self.now(self.own_latency()), true)?;
        self.push_outputs(outputs).map(|_| ())
    }

    /// The frames the engine's threads complete (`finishing`: every frame still inside, rendered with the
    /// audio there is), waiting for the worker with the state lock released: a flush, a QoS event or a
    /// property read never waits behind a render (an STSA frame on a CPU takes seconds).
    fn settle(&self, now: Option<u64>, finishing: bool) -> Result<Vec<OutputFrame<gst::Buffer>>, gst::FlowError> {
        let mut outputs = Vec::new();
        loop {
            let waiter = {
                let mut state = self.state.lock();
                let Some(stream) = state.stream.as_mut() else {
                    return Err(gst::FlowError::Flushing);
                };
                let engine = &mut stream.engine;
                outputs.extend(if finishing { engine.finish_step(now) } else { engine.process(None) });
                if engine.settled(0, finishing) {
                    return Ok(outputs);
                }
                engine.waiter()
            };
            let result = waiter.wait(Duration::from_secs(10));
            if let Some(stream) = self.state.lock().stream.as_mut() {
                stream.engine.accept_result(result);
            }
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for LipSync {
    const NAME: &'static str = "GstLipSync";
    type Type = super::LipSync;
    type ParentType = gst_base::Aggregator;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("video_sink").expect("video_sink template");
        let video_pad = gst::PadBuilder::<gst_base::AggregatorPad>::from_template(&templ).build();
        LipSync {
            video_pad,
            audio_pad: Mutex::new(None),
            settings: Mutex::new(Settings::default()),
            state: Mutex::new(State::default()),
            stats: Mutex::new(Arc::default()),
            phonemes: PhonemeFeed::new(),
        }
    }
}

impl ObjectImpl for LipSync {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let counter = |name: &str, nick: &str, blurb: &str| {
                glib::ParamSpecUInt64::builder(name).nick(nick).blurb(blurb).read_only().build()
            };
            vec![
                glib::ParamSpecEnum::builder_with_default("renderer", DEFAULT_RENDERER)
                    .nick("Renderer")
                    .blurb("How the mouth is re-rendered")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("fallback", DEFAULT_FALLBACK)
                    .nick("Fallback")
                    .blurb("What a frame whose render misses its deadline (or fails) is replaced with")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("audio-timeout")
                    .nick("Audio timeout")
                    .blurb("When the audio lags the video by more than this (ns), video passes through unchanged")
                    .default_value(DEFAULT_AUDIO_TIMEOUT)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("audio-gaps", DEFAULT_AUDIO_GAPS)
                    .nick("Audio gaps")
                    .blurb("What a frame whose audio has not come is rendered with: wait (late audio: wait up to the deadline) or silence (speech in bursts: the mouth closed)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-queue")
                    .nick("Maximum audio queue")
                    .blurb("Audio (ns) that may arrive ahead of the video (speech sent faster than real time); more is an error")
                    .default_value(DEFAULT_MAX_QUEUE)
                    .minimum(1_000_000_000)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("stats-interval")
                    .nick("Stats interval")
                    .blurb("Stream time (ns) between `lipsync-stats` element messages (0 = only at EOS)")
                    .default_value(DEFAULT_STATS_INTERVAL)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("simulate-delay")
                    .nick("Simulate delay")
                    .blurb("Extra compute time (ns) per frame: simulates a slower renderer or machine")
                    .default_value(DEFAULT_SIMULATE_DELAY)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("simulate-lookahead")
                    .nick("Simulate look-ahead")
                    .blurb("Audio look-ahead (ns) the renderer waits for, at least: simulates e.g. STSA's 205 ms")
                    .default_value(DEFAULT_SIMULATE_LOOKAHEAD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("track-faces")
                    .nick("Track faces")
                    .blurb("Track the face on every frame (always on for renderers that need it); frames without a face pass through")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("still-face")
                    .nick("Still face")
                    .blurb("The video is a still (a photo through imagefreeze): the classic renderer draws blinks at a person's rate and sways the head a little")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("face-models")
                    .nick("Face models")
                    .blurb("The mediapipe 0.10.21 wheel or a folder with its face .tflite files (default: $LIPSYNC_MEDIAPIPE, else ~/.cache/lipsync)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("weights")
                    .nick("STSA weights")
                    .blurb("renderer=stsa: the folder with heatmap_weight.pth, face_weight.pth and wav2vec2-base-960h's pytorch_model.bin (see models/README.md); `detw`: deterministic test weights that draw noise")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("device")
                    .nick("Device")
                    .blurb("renderer=stsa: where the networks run: cpu, cuda or cuda:N (cuda needs the plugin built with --features cuda)")
                    .default_value(Some(DEFAULT_DEVICE))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("precision", Precision::F32)
                    .nick("Precision")
                    .blurb("renderer=stsa: f32 (exact), f16 or bf16 (half the memory; faster on a GPU)")
                    .mutable_ready()
                    .build(),
                counter("frames-in", "Frames in", "Video frames received"),
                counter("frames-rendered", "Frames rendered", "Frames sent with the renderer's result"),
                counter("frames-late", "Frames late", "Frames whose render was not ready by their deadline"),
                counter("frames-fallback", "Frames fallback", "Frames sent as the fallback (late, failed, no audio)"),
                counter("frames-no-face", "Frames without face", "Frames in which tracking found no face"),
                counter("audio-underruns", "Audio underruns", "Audio windows that had missing samples (silence)"),
                counter("audio-overruns", "Audio overruns", "Times audio was dropped because it came too fast"),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock();
        match pspec.name() {
            "renderer" => {
                settings.renderer = value.get().expect("type checked upstream");
                drop(settings);
                self.update_default_latency();
            }
            "fallback" => settings.fallback = value.get().expect("type checked upstream"),
            "audio-timeout" => settings.audio_timeout = value.get().expect("type checked upstream"),
            "audio-gaps" => settings.audio_gaps = value.get().expect("type checked upstream"),
            "max-queue" => settings.max_queue = value.get().expect("type checked upstream"),
            "stats-interval" => settings.stats_interval = value.get().expect("type checked upstream"),
            "track-faces" => settings.track_faces = value.get().expect("type checked upstream"),
            "still-face" => settings.still_face = value.get().expect("type checked upstream"),
            "face-models" => settings.face_models = value.get().expect("type checked upstream"),
            "weights" => settings.weights = value.get().expect("type checked upstream"),
            "device" => {
                // Parsed here, once: a name that is not a device is refused and the setting kept.
                let name: Option<String> = value.get().expect("type checked upstream");
                match name.as_deref().unwrap_or(DEFAULT_DEVICE).parse::<ComputeDevice>() {
                    Ok(device) => settings.device = device,
                    Err(e) => {
                        drop(settings);
                        gst::element_imp_warning!(self, gst::LibraryError::Settings, ("{}", e));
                    }
                }
            }
            "precision" => settings.precision = value.get().expect("type checked upstream"),
            "simulate-delay" => {
                settings.simulate_delay = value.get().expect("type checked upstream");
                drop(settings);
                self.update_default_latency();
            }
            "simulate-lookahead" => {
                settings.simulate_lookahead = value.get().expect("type checked upstream");
                drop(settings);
                self.update_default_latency();
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let snapshot = || self.stats.lock().snapshot();
        match pspec.name() {
            "renderer" => self.settings.lock().renderer.to_value(),
            "fallback" => self.settings.lock().fallback.to_value(),
            "audio-timeout" => self.settings.lock().audio_timeout.to_value(),
            "audio-gaps" => self.settings.lock().audio_gaps.to_value(),
            "max-queue" => self.settings.lock().max_queue.to_value(),
            "stats-interval" => self.settings.lock().stats_interval.to_value(),
            "track-faces" => self.settings.lock().track_faces.to_value(),
            "still-face" => self.settings.lock().still_face.to_value(),
            "face-models" => self.settings.lock().face_models.to_value(),
            "weights" => self.settings.lock().weights.to_value(),
            "device" => self.settings.lock().device.to_string().to_value(),
            "precision" => self.settings.lock().precision.to_value(),
            "simulate-delay" => self.settings.lock().simulate_delay.to_value(),
            "simulate-lookahead" => self.settings.lock().simulate_lookahead.to_value(),
            "frames-in" => snapshot().frames_in.to_value(),
            "frames-rendered" => snapshot().frames_rendered.to_value(),
            "frames-late" => snapshot().frames_late.to_value(),
            "frames-fallback" => snapshot().frames_fallback.to_value(),
            "frames-no-face" => snapshot().frames_no_face.to_value(),
            "audio-underruns" => snapshot().audio_underruns.to_value(),
            "audio-overruns" => snapshot().audio_overruns.to_value(),
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.video_pad).expect("adding video_sink");
        // Audio that never came must not hold back live video.
        obj.set_ignore_inactive_pads(true);
        self.update_default_latency();
    }
}

impl GstObjectImpl for LipSync {}

impl ElementImpl for LipSync {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Lip sync",
                "Filter/Effect/Video",
                "Re-renders the mouth of a face video so that it speaks the audio, at a fixed latency",
                "The lipsync developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let agg_pad = gst_base::AggregatorPad::static_type();
            vec![
                gst::PadTemplate::with_gtype(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &video_caps(),
                    agg_pad,
                )
                .expect("src template"),
                gst::PadTemplate::with_gtype(
                    "video_sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &video_caps(),
                    agg_pad,
                )
                .expect("video_sink template"),
                gst::PadTemplate::with_gtype(
                    "audio_sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &audio_caps(),
                    agg_pad,
                )
                .expect("audio_sink template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let mut audio = self.audio_pad.lock();
        if audio.as_ref().is_some_and(|a| a.upcast_ref::<gst::Pad>() == pad) {
            *audio = None;
        }
        drop(audio);
        self.parent_release_pad(pad);
    }
}

impl AggregatorImpl for LipSync {
    /// Buffers are cut to the pad's segment: video frames that start outside it are dropped (their running
    /// time would be wrong), audio loses the samples outside it.
    fn clip(&self, pad: &gst_base::AggregatorPad, buffer: gst::Buffer) -> Option<gst::Buffer> {
        let segment = pad.segment();
        let Some(time) = segment.downcast_ref::<gst::ClockTime>() else {
            return Some(buffer);
        };
        let Some(pts) = buffer.pts() else {
            // push_video and push_audio say what is wrong with an untimed buffer.
            return Some(buffer);
        };
        if pad != &self.video_pad {
            return gst_audio::audio_buffer_clip(buffer, segment.upcast_ref(), lipsync::audio::SAMPLE_RATE, 4);
        }
        let end = buffer.duration().map(|d| pts + d);
        let clipped = time.clip(Some(pts), end).and_then(|(start, stop)| Some((start?, stop)));
        // A frame that starts before the segment keeps its part inside, if its duration says it has one.
        let Some((start, stop)) = clipped.filter(|&(start, _)| start == pts || end.is_some()) else {
            gst::debug!(CAT, imp = self, "video frame at {pts} outside the segment, dropped");
            return None;
        };
        if start == pts && stop == end {
            return Some(buffer);
        }
        let mut buffer = buffer;
        let b = buffer.make_mut();
        b.set_pts(start);
        b.set_duration(stop.map(|stop| stop.saturating_sub(start)));
        Some(buffer)
    }

    fn create_new_pad(
        &self,
        templ: &gst::PadTemplate,
        _req_name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst_base::AggregatorPad> {
        let mut audio = self.audio_pad.lock();
        if templ.name_template() != "audio_sink" || audio.is_some() {
            gst::warning!(CAT, imp = self, "only one audio_sink pad can be requested");
            return None;
        }
        let pad = gst::PadBuilder::<gst_base::AggregatorPad>::from_template(templ).name("audio_sink").build();
        *audio = Some(pad.clone());
        Some(pad)
    }

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings();
        let renderer = settings.renderer(&self.phonemes).map_err(|e| start_error(&e))?;
        let config = EngineConfig {
            latency: Some(self.own_latency()),
            fallback: settings.fallback.into(),
            audio_timeout: settings.audio_timeout,
            gaps: settings.audio_gaps.into(),
            report_playback: true,
            ring: lipsync::audio::RingConfig::for_queue(settings.max_queue),
            max_in_flight: MAX_IN_FLIGHT,
            // Tracking when asked, or with the user's models for any renderer that tracks.
            tracking: (settings.track_faces || settings.face_models.is_some()).then(|| TrackingConfig {
                models: settings
                    .face_models
                    .as_deref()
                    .map_or_else(ModelSource::default_location, |p| ModelSource::from_path(std::path::Path::new(p))),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (engine, audio) = Engine::new(renderer, config).map_err(|e| start_error(&e))?;
        if engine.latency() < engine.window().after {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Negotiation,
                (
                    "latency {} ms is shorter than the renderer's audio look-ahead {} ms: live frames will be late",
                    engine.latency() / 1_000_000,
                    engine.window().after / 1_000_000
                )
            );
        }
        if settings.renderer == Renderer::Stsa && settings.device == ComputeDevice::Cpu {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Failed,
                ("renderer=stsa on the CPU takes seconds per frame: in a live pipeline frames go out as the fallback; use device=cuda:0 (plugin built with --features cuda), or renderer=classic")
            );
        }
        *self.stats.lock() = engine.stats().clone();
        self.state.lock().stream = Some(Stream {
            engine,
            audio,
            layout: None,
            last_video_rt: None,
            frame_period: None,
            samples: Vec::new(),
            next_stats_at: None,
            untimed_samples: 0,
        });
        gst::debug!(CAT, imp = self, "started");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.state.lock().stream = None;
        self.phonemes.clear();
        gst::debug!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn flush(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        if let Some(stream) = self.state.lock().stream.as_mut() {
            stream.engine.flush();
            stream.last_video_rt = None;
            stream.next_stats_at = None;
        }
        self.phonemes.clear();
        self.parent_flush()
    }

    fn negotiate(&self) -> bool {
        // Output caps are the video input's, set when its caps arrive (sink_event).
        true
    }

    fn next_time(&self) -> Option<gst::ClockTime> {
        let own = self.own_latency();
        let audio_pad = self.audio_pad.lock().clone();
        let mut state = self.state.lock();
        let stream = state.stream.as_mut()?;
        match stream.engine.next_due() {
            Some(due) => Some(gst::ClockTime::from_nseconds(due.saturating_sub(own))),
            // No video inside: wake up for the queued audio (live, nothing else would take it while the
            // video pad is empty), or when more audio is due.
            None => {
                let queued = audio_pad.and_then(|pad| running_time(&pad, pad.peek_buffer()?.pts()));
                queued.or_else(|| stream.engine.audio_end().map(gst::ClockTime::from_nseconds))
            }
        }
    }

    fn sink_event(&self, pad: &gst_base::AggregatorPad, event: gst::Event) -> bool {
        use gst::EventView;
        let is_video = pad == &self.video_pad;
        match event.view() {
            EventView::Caps(c) if is_video => {
                let caps = c.caps_owned();
                let info = match gst_video::VideoInfo::from_caps(&caps) {
                    Ok(info) => info,
                    Err(_) => {
                        gst::element_imp_error!(self, gst::CoreError::Negotiation, ("Invalid video caps {}", caps));
                        return false;
                    }
                };
                let layout = match layout_from_info(&info) {
                    Ok(l) => l,
                    Err(e) => {
                        gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{}", e));
                        return false;
                    }
                };
                if self.drain_for_caps().is_err() {
                    gst::debug!(CAT, imp = self, "downstream refused frames while draining for new caps");
                }
                let fps = info.fps();
                let frame_period = (fps.numer() > 0 && fps.denom() > 0)
                    .then(|| 1_000_000_000u64 * fps.denom() as u64 / fps.numer() as u64);
                if let Some(stream) = self.state.lock().stream.as_mut() {
                    stream.layout = Some(layout);
                    stream.frame_period = frame_period;
                }
                gst::debug!(CAT, imp = self, "video caps {caps}");
                self.obj().set_src_caps(&caps);
                true
            }
            EventView::Caps(_) => true, // audio: the template fixes the format
            // A flush from upstream (not a seek through this element, which calls `flush`) resets what
            // came through that pad.
            EventView::FlushStop(_) => {
                let now = if is_video { None } else { self.now(self.own_latency()) };
                let mut events = Vec::new();
                if let Some(stream) = self.state.lock().stream.as_mut() {
                    if is_video {
                        stream.engine.flush_video();
                        stream.last_video_rt = None;
                        stream.next_stats_at = None;
                    } else {
                        // The speech queued is dropped: the next frames are rendered with silence (or the
                        // audio sent after this), and the segment playing is reported interrupted now.
                        stream.engine.flush_audio(now);
                        events = stream.engine.take_events();
                    }
                }
                if !is_video {
                    self.phonemes.clear();
                }
                let _ = self.post_events(events);
                self.parent_sink_event(pad, event)
            }
            EventView::CustomDownstream(c) if c.structure().is_some_and(|s| s.has_name(PHONEME_EVENT)) => {
                if is_video {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "ignoring {PHONEME_EVENT} on the video pad (it belongs on audio_sink)"
                    );
                } else if let Some(s) = c.structure() {
                    self.handle_phoneme(pad, s);
                }
                true
            }
            EventView::Segment(s) if is_video => {
                if let Ok(segment) = s.segment().clone().downcast::<gst::ClockTime>() {
                    self.obj().update_segment(&segment);
                }
                self.parent_sink_event(pad, event)
            }
            _ => self.parent_sink_event(pad, event),
        }
    }

    fn sink_query(&self, pad: &gst_base::AggregatorPad, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Caps(q) if pad == &self.video_pad => {
                // Video caps go straight through: offer what downstream takes.
                let templ = video_caps();
                let filter = q.filter_owned();
                let peer = self.obj().src_pad().peer_query_caps(filter.as_ref());
                q.set_result(&peer.intersect_with_mode(&templ, gst::CapsIntersectMode::First));
                true
            }
            QueryViewMut::AcceptCaps(q) if pad == &self.video_pad => {
                let caps = q.caps_owned();
                let ok = caps.can_intersect(&video_caps()) && self.obj().src_pad().peer_query_accept_caps(&caps);
                q.set_result(ok);
                true
            }
            _ => self.parent_sink_query(pad, query),
        }
    }

    fn src_query(&self, query: &mut gst::QueryRef) -> bool {
        use gst::QueryViewMut;
        match query.view_mut() {
            QueryViewMut::Caps(q) => {
                let filter = q.filter_owned();
                let peer = self.video_pad.peer_query_caps(filter.as_ref());
                q.set_result(&peer.intersect_with_mode(&video_caps(), gst::CapsIntersectMode::First));
                true
            }
            _ => self.parent_src_query(query),
        }
    }

    fn src_event(&self, event: gst::Event) -> bool {
        if let gst::EventView::Qos(q) = event.view() {
            let (_kind, _proportion, jitter, timestamp) = q.get();
            if let (Some(ts), Some(stream)) = (timestamp, self.state.lock().stream.as_mut()) {
                // Frames before `earliest` are already too late downstream: not worth rendering.
                let earliest = if jitter > 0 { ts.nseconds() + jitter as u64 } else { ts.nseconds() };
                stream.engine.set_earliest((jitter > 0).then_some(earliest));
            }
        }
        self.parent_src_event(event)
    }

    fn aggregate(&self, timeout: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let _span = lipsync_span(timeout);
        let audio_pad = self.audio_pad.lock().clone();
        let own_latency = self.own_latency();
        let now = self.now(own_latency);
        let live = now.is_some();
        let stats_interval = self.settings.lock().stats_interval;
        let mut outputs = Vec::new();
        let finishing = {
            let mut state = self.state.lock();
            let Some(stream) = state.stream.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            stream.engine.set_latency(own_latency);
            stream.engine.set_audio_absent(audio_pad.is_none());
            // Audio first. Live, everything queued goes into the ring. Otherwise only as far as the known
            // video needs (and a frame more): a buffer left on the pad makes the next video buffer wake
            // this function, where taking all audio could leave frames stranded on the video pad while
            // the audio's producer waits on a muxer that waits on those frames.
            let mut audio_done = true;
            if let Some(pad) = &audio_pad {
                let need_until = if live { None } else { self.audio_needed_until(stream) };
                while let Some(buffer) = pad.peek_buffer() {
                    if need_until.is_some_and(|t| stream.engine.audio_end().is_some_and(|end| end >= t)) {
                        break;
                    }
                    pad.drop_buffer();
                    self.push_audio(stream, pad, &buffer);
                }
                if pad.is_eos() {
                    stream.engine.audio_eos();
                } else {
                    audio_done = false;
                }
            }
            // Then video: live, take everything (the engine keeps the deadlines); otherwise pace by audio.
            while let Some(buffer) = self.video_pad.peek_buffer() {
                if buffer.flags().contains(gst::BufferFlags::GAP) && buffer.size() == 0 {
                    self.video_pad.drop_buffer();
                    continue;
                }
                if !live && !self.may_take_video(stream, &buffer, audio_done) {
                    break;
                }
                self.video_pad.drop_buffer();
                self.push_video(stream, buffer)?;
            }
            outputs.extend(stream.engine.process(now));
            let video_eos = self.video_pad.is_eos();
            gst::log!(
                CAT,
                imp = self,
                "aggregate(timeout={timeout}): audio to {:?}, {} frames inside, {} out, video eos {video_eos}, audio done {audio_done}",
                stream.engine.audio_end(),
                stream.engine.pending(),
                outputs.len()
            );
            video_eos && audio_done
        };
        // Without a clock nothing wakes this function when the worker finishes, and new input may never
        // come while a frame is held back (a muxer downstream waits for it and blocks a tee upstream):
        // finish every render started before returning. At the end of both streams, every frame.
        if !live || finishing {
            outputs.extend(self.settle(now, finishing)?);
        }
        let (events, eos, post_stats) = {
            let mut state = self.state.lock();
            let Some(stream) = state.stream.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            let eos = self.video_pad.is_eos() && stream.engine.pending() == 0;
            let mut post_stats = false;
            if stats_interval > 0
                && let Some(last) = outputs.last()
            {
                let t = last.frame.pts;
                match stream.next_stats_at {
                    Some(at) if t >= at => {
                        post_stats = true;
                        stream.next_stats_at = Some(t + stats_interval);
                    }
                    None => stream.next_stats_at = Some(t + stats_interval),
                    _ => {}
                }
            }
            (stream.engine.take_events(), eos, post_stats)
        };
        if let Some(last) = outputs.last() {
            let pts = gst::ClockTime::from_nseconds(last.frame.pts);
            if let Some(t) = pts.checked_sub(PHONEME_HISTORY) {
                self.phonemes.forget_before(t.nseconds());
            }
        }
        let posted = self.post_events(events);
        self.push_outputs(outputs)?;
        posted?;
        if post_stats {
            self.post_stats();
        }
        if eos {
            gst::debug!(CAT, imp = self, "all frames out, EOS");
            self.post_stats();
            return Err(gst::FlowError::Eos);
        }
        Ok(gst::FlowSuccess::Ok)
    }
}

/// The running time of `t` in `pad`'s time segment; `None` without a time or outside the segment.
fn running_time(pad: &gst_base::AggregatorPad, t: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
    pad.segment().downcast_ref::<gst::ClockTime>()?.to_running_time(t?)
}

fn lipsync_span(timeout: bool) -> tracing::span::EnteredSpan {
    tracing::trace_span!("lipsync_aggregate", timeout).entered()
}

/// The error message for a stream that cannot start: `e`'s text is the message the application shows
/// (GStreamer's message, not only its debug string), in the domain that says what failed.
fn start_error(e: &lipsync::Error) -> gst::ErrorMessage {
    match e {
        lipsync::Error::Io { .. } => gst::error_msg!(gst::ResourceError::OpenRead, ("{}", e)),
        lipsync::Error::Model(_) => gst::error_msg!(gst::LibraryError::Init, ("{}", e)),
        lipsync::Error::InvalidArgument(_) => gst::error_msg!(gst::LibraryError::Settings, ("{}", e)),
        _ => gst::error_msg!(gst::CoreError::Failed, ("{}", e)),
    }
}
