//! The engine: video frames and audio in, frames out in order at a fixed latency.
//!
//! For each frame it waits until the audio ring covers the window the renderer declared (or the audio has
//! ended, or has been missing for longer than `audio_timeout`), hands the frame and its audio to the render
//! worker, and emits frames strictly in input order. In live mode a frame whose render is not back by its
//! deadline (`pts + latency`) goes out as the fallback and is counted; a frame already past its deadline
//! when its audio arrives is not rendered at all (QoS). Offline there are no deadlines: every frame is
//! rendered. Nothing is dropped, duplicated or reordered.
//!
//! The engine uses no GStreamer types; each frame carries a caller payload `P` (the element keeps its
//! `gst::Buffer` there) that comes back with the output.

pub mod playback;
pub mod stats;
mod worker;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam::channel::{Receiver, RecvTimeoutError, TrySendError};

pub use playback::{Playback, PlaybackEvent};
pub use stats::{Stats, StatsSnapshot};
use worker::{Answer, Done, Job, RenderOutcome, RenderTask, TrackJob, Tracked, Worker};

use crate::audio::{AudioProducer, AudioRing, AudioWindow, RingConfig, ns_to_samples, samples_to_ns};
use crate::error::{Error, Result};
use crate::face::models::ModelSource;
use crate::face::{Face, FaceTracker, TrackerConfig};
use crate::frame::{DEFAULT_FRAME_NS, Patch, VideoFrame};
use crate::render::{FrameContext, Neighbour, Renderer};

/// What a late (or failed) frame is replaced with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "gst", derive(clap::ValueEnum))]
pub enum Fallback {
    /// The input frame, unchanged.
    #[default]
    Original,
    /// The input frame with the last good rendered patch blended in (the mouth does not snap back to the
    /// original for a single late frame); the original when nothing was rendered yet.
    LastRender,
}

/// Whether deadlines apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Frames are due at `pts + latency`; late ones are replaced by the fallback.
    #[default]
    Live,
    /// No clock: every frame is rendered, however long it takes (files).
    Offline,
}

/// What a frame whose audio has not arrived is rendered with, in live mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "gst", derive(clap::ValueEnum))]
pub enum AudioGaps {
    /// Missing audio is late (a microphone, an RTP stream): the frame waits for it until its deadline
    /// and goes out as the fallback; after `audio_timeout` without audio, frames pass through.
    #[default]
    Wait,
    /// Missing audio is silence (speech sent in bursts by a TTS or a voice agent, nothing in between):
    /// once the frame's look-ahead is due, it is rendered with silence where no audio came, the mouth
    /// closed.
    Silence,
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Fixed latency in ns; `None` takes the renderer's recommendation.
    pub latency: Option<u64>,
    pub fallback: Fallback,
    pub mode: Mode,
    /// When the audio lags the video by more than this (ns), frames go out without waiting for it.
    pub audio_timeout: u64,
    pub gaps: AudioGaps,
    /// Report when speech segments start and finish playing ([`EngineEvent::Playback`]).
    pub report_playback: bool,
    /// Frames queued at or rendering on the worker at once.
    pub max_in_flight: usize,
    pub ring: RingConfig,
    /// Track the face on every frame (always on when the renderer needs faces): frames without a face
    /// pass through untouched and are counted.
    pub tracking: Option<TrackingConfig>,
}

/// Where the face models are and how the tracker behaves.
#[derive(Clone, Debug)]
pub struct TrackingConfig {
    pub models: ModelSource,
    pub tracker: TrackerConfig,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig { models: ModelSource::default_location(), tracker: TrackerConfig::default() }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            latency: None,
            fallback: Fallback::Original,
            mode: Mode::Live,
            audio_timeout: 1_000_000_000,
            gaps: AudioGaps::Wait,
            report_playback: false,
            max_in_flight: 2,
            ring: RingConfig::default(),
            tracking: None,
        }
    }
}

/// Why a frame looks the way it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameStatus {
    /// The renderer's result.
    Rendered,
    /// Fallback: the render was not ready at the deadline, or the frame was too late to start.
    Late,
    /// Fallback: the renderer failed on this frame (see [`EngineEvent::RenderFailed`]).
    Failed,
    /// Fallback: no audio arrived for this frame within `audio_timeout`.
    NoAudio,
}

/// One frame leaving the engine.
pub struct OutputFrame<P> {
    pub payload: P,
    /// The input frame.
    pub frame: VideoFrame,
    /// The new image (same layout as `frame`), or `None` when the input goes out unchanged.
    pub image: Option<Vec<u8>>,
    pub status: FrameStatus,
}

impl<P> fmt::Debug for OutputFrame<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputFrame")
            .field("pts", &self.frame.pts)
            .field("changed", &self.image.is_some())
            .field("status", &self.status)
            .finish()
    }
}

/// The samples [`Engine::push_audio`] hands over at a time (an eighth of the hand-off's default room).
const AUDIO_PIECE: usize = 4096;

/// Waits for the engine's threads apart from the engine ([`Engine::waiter`]).
pub struct RenderWaiter {
    answers: Receiver<Answer>,
}

impl RenderWaiter {
    /// The next answer of the engine's threads (a rendered frame or a tracked face), or `None` when none
    /// comes within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<RenderResult> {
        self.answers.recv_timeout(timeout).ok().map(RenderResult)
    }
}

/// An answer taken by a [`RenderWaiter`], for [`Engine::accept_result`].
pub struct RenderResult(Answer);

/// Things the caller should tell the user about (the element posts them as messages).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineEvent {
    RenderFailed(String),
    /// Audio stopped arriving: frames pass through until it comes back.
    AudioMissing {
        lag_ns: u64,
    },
    AudioResumed,
    /// Audio came faster than the frames took it and more was queued than the ring holds
    /// ([`RingConfig::history_samples`]): `samples` were dropped.
    AudioOverflow {
        samples: u64,
    },
    /// A speech segment began or finished playing ([`playback`]).
    Playback(PlaybackEvent),
}

impl fmt::Display for EngineEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineEvent::RenderFailed(m) => write!(f, "render failed: {m}; the frame went out as the fallback"),
            EngineEvent::AudioMissing { lag_ns } => {
                write!(f, "no audio for {} ms: video passes through until it returns", lag_ns / 1_000_000)
            }
            EngineEvent::AudioResumed => f.write_str("audio resumed"),
            EngineEvent::AudioOverflow { samples } => write!(
                f,
                "audio queue full: {} ms of audio dropped (it came faster than real time for longer than the \
                 queue holds)",
                samples_to_ns(*samples) / 1_000_000
            ),
            EngineEvent::Playback(p) => write!(f, "playback: {p}"),
        }
    }
}

enum State {
    WaitingAudio,
    InFlight,
    Done { image: Option<Vec<u8>>, status: FrameStatus },
}

struct Pending<P> {
    seq: u64,
    frame: VideoFrame,
    payload: P,
    state: State,
}

/// See the module documentation.
pub struct Engine<P> {
    config: EngineConfig,
    latency: u64,
    window: AudioWindow,
    /// The renderer's frame context when faces are tracked (the frames after one must have arrived, and
    /// been tracked, before it is rendered); empty otherwise.
    context: FrameContext,
    renderer_name: &'static str,
    ring: AudioRing,
    worker: Worker,
    pending: VecDeque<Pending<P>>,
    next_seq: u64,
    /// Answers about a flushed stream are recognised by their epoch and ignored.
    epoch: u64,
    /// The tracker's answers (this epoch, in order) for the frames still to be rendered and the frames
    /// before them that their contexts show.
    faces: VecDeque<Tracked>,
    /// Frames before this one (seq) have their tracker answer in.
    tracked_to: u64,
    /// The frames (seq) whose renders are queued at or running on the worker, oldest first (the worker
    /// answers in order).
    in_flight: VecDeque<u64>,
    audio_eos: bool,
    audio_absent: bool,
    audio_missing: bool,
    last_patch: Option<Arc<Patch>>,
    /// QoS: frames with pts before this are not rendered.
    earliest: Option<u64>,
    last_video_pts: Option<u64>,
    stats: Arc<Stats>,
    events: Vec<EngineEvent>,
    audio_pool: Vec<Vec<f32>>,
    /// A thread stopped answering: every frame from then on goes out as the fallback.
    lost: bool,
    playback: Playback,
    /// Audio samples dropped so far (the ring's overrun count), reported as [`EngineEvent::AudioOverflow`].
    dropped_samples: u64,
}

impl<P> Engine<P> {
    /// Starts an engine around `renderer`; returns it with the producer end of its audio ring.
    pub fn new(renderer: Box<dyn Renderer>, config: EngineConfig) -> Result<(Self, AudioProducer)> {
        let window = renderer.window();
        // The context's faces come from tracking: without it there is nothing to wait for.
        let tracks = renderer.needs_face() || config.tracking.is_some();
        let context = if tracks { renderer.frame_context() } else { FrameContext::default() };
        let latency = config.latency.unwrap_or_else(|| renderer.recommended_latency());
        let renderer_name = renderer.name();
        let (producer, ring) = AudioRing::new(&config.ring);
        let tracking = match (&config.tracking, renderer.needs_face()) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => Some(TrackingConfig::default()),
            (None, false) => None,
        };
        let tracker =
            tracking.map(|t| FaceTracker::new(&t.models, &candle_core::Device::Cpu, t.tracker)).transpose()?;
        let worker = Worker::spawn(renderer, tracker, config.max_in_flight)?;
        let stats = Arc::new(Stats::new(ring.counters().clone()));
        let engine = Engine {
            config,
            latency,
            window,
            context,
            renderer_name,
            ring,
            worker,
            pending: VecDeque::new(),
            next_seq: 0,
            epoch: 0,
            faces: VecDeque::new(),
            tracked_to: 0,
            in_flight: VecDeque::new(),
            audio_eos: false,
            audio_absent: false,
            audio_missing: false,
            last_patch: None,
            earliest: None,
            last_video_pts: None,
            stats,
            events: Vec::new(),
            audio_pool: Vec::new(),
            lost: false,
            playback: Playback::default(),
            dropped_samples: 0,
        };
        Ok((engine, producer))
    }

    /// The fixed latency in ns: frame `pts` goes out by `pts + latency`.
    pub fn latency(&self) -> u64 {
        self.latency
    }

    /// The renderer's audio window.
    pub fn window(&self) -> AudioWindow {
        self.window
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Frames inside the engine (waiting for audio, rendering, or done but not yet emitted).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Deadline (running time, ns) of the oldest frame not yet emitted.
    pub fn next_deadline(&self) -> Option<u64> {
        self.pending.front().map(|p| p.frame.pts + self.latency)
    }

    /// The next running time at which [`Engine::process`] has something to do without new input: the
    /// oldest frame's deadline or, with gaps as silence, the time the first waiting frame's look-ahead is
    /// due.
    pub fn next_due(&self) -> Option<u64> {
        let silence = (self.config.gaps == AudioGaps::Silence)
            .then(|| self.pending.iter().find(|p| matches!(p.state, State::WaitingAudio)))
            .flatten()
            .map(|p| self.window.end(p.frame.pts));
        [self.next_deadline(), silence].into_iter().flatten().min()
    }

    /// Moves audio pushed so far from the hand-off ring into the history (the caller feeds a large block
    /// in pieces on the engine's own thread).
    pub fn drain_audio(&mut self) {
        self.ring.drain();
    }

    /// Feeds a block of audio of any size from the engine's own thread: through `producer` (this engine's)
    /// in pieces, draining after each, so the hand-off never overflows. `pts` stamps the first sample
    /// (`None`: it follows the previous block). Fails, taking nothing, as [`AudioProducer::push`] does.
    pub fn push_audio(&mut self, producer: &mut AudioProducer, pts: Option<u64>, samples: &[f32]) -> Result<()> {
        let mut pts = pts;
        for chunk in samples.chunks(AUDIO_PIECE) {
            producer.push(pts.take(), chunk)?;
            self.ring.drain();
        }
        Ok(())
    }

    /// Running time just past the newest audio received.
    pub fn audio_end(&mut self) -> Option<u64> {
        self.ring.end_time()
    }

    /// The audio received from running time `from` to `to` (16 kHz; silence where none arrived), for a caller
    /// that writes the sound with the frames: the frames [`Engine::process`] or [`Engine::finish`] just
    /// returned keep theirs, from their pts on, until the next call.
    pub fn audio_between(&mut self, from: u64, to: u64) -> Vec<f32> {
        let first = ns_to_samples(from);
        let mut samples = vec![0.0; ns_to_samples(to).saturating_sub(first) as usize];
        self.ring.read(samples_to_ns(first), &mut samples, false);
        samples
    }

    /// Takes the events since the last call.
    pub fn take_events(&mut self) -> Vec<EngineEvent> {
        std::mem::take(&mut self.events)
    }

    /// Adds a frame. Frames are emitted in the order they are pushed.
    pub fn push_video(&mut self, frame: VideoFrame, payload: P) {
        Stats::add(&self.stats.frames_in);
        self.last_video_pts = Some(self.last_video_pts.map_or(frame.pts, |t| t.max(frame.pts)));
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.lost {
            let state = State::Done { image: None, status: FrameStatus::Failed };
            self.pending.push_back(Pending { seq, frame, payload, state });
            return;
        }
        self.pending.push_back(Pending { seq, frame: frame.clone(), payload, state: State::WaitingAudio });
        // Tracked now, while the frame waits for its audio.
        if self.worker.tracks_faces() && !self.worker.track(TrackJob::Track { seq, epoch: self.epoch, frame }) {
            self.worker_lost();
        }
    }

    /// The audio has ended: frames still waiting for it are rendered with silence.
    pub fn audio_eos(&mut self) {
        self.audio_eos = true;
    }

    /// There is no audio source at all: frames pass through (status [`FrameStatus::NoAudio`]) at once.
    pub fn set_audio_absent(&mut self, absent: bool) {
        self.audio_absent = absent;
    }

    /// Renders queued at or running on the worker.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Frames the engine's threads are working on: renders in flight, and frames whose tracked face
    /// has not come back yet. [`Engine::wait`] has something to wait for while this is above 0.
    pub fn working(&self) -> usize {
        self.in_flight.len() + self.awaited_faces() as usize
    }

    fn awaited_faces(&self) -> u64 {
        if self.worker.tracks_faces() && !self.lost { self.next_seq - self.tracked_to } else { 0 }
    }

    /// Changes the latency for the frames not yet emitted.
    pub fn set_latency(&mut self, latency: u64) {
        self.latency = latency;
    }

    /// QoS from downstream: frames with pts before `t` are not worth rendering.
    pub fn set_earliest(&mut self, t: Option<u64>) {
        self.earliest = t;
    }

    /// Collects finished renders, starts the renders whose audio is ready and returns the frames that are
    /// due, in order. `now` is the current running time in live mode (for deadlines); ignored offline.
    pub fn process(&mut self, now: Option<u64>) -> Vec<OutputFrame<P>> {
        let _span = tracing::trace_span!("engine_process", pending = self.pending.len()).entered();
        let now = if self.config.mode == Mode::Live { now } else { None };
        self.collect_results();
        self.dispatch(now, false);
        self.observe_audio();
        self.emit(now)
    }

    /// Blocks until an answer of the engine's threads (a rendered frame or a tracked face) arrives or
    /// `timeout` passes; returns whether one arrived.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        if self.working() == 0 {
            return false;
        }
        match self.worker.answers.recv_timeout(timeout) {
            Ok(r) => {
                self.accept(r);
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.worker_lost();
                false
            }
        }
    }

    /// A handle that waits for the engine's threads without the engine, for a caller that keeps the engine
    /// behind a lock and must not hold it while a render runs (a flush or QoS event would wait behind it):
    /// wait with the lock released, then hand what arrived to [`Engine::accept_result`] under it.
    pub fn waiter(&self) -> RenderWaiter {
        RenderWaiter { answers: self.worker.answers.clone() }
    }

    /// Takes an answer [`RenderWaiter::wait`] returned (answers about frames flushed since are ignored);
    /// `None` (the wait timed out) checks whether the worker is still there.
    pub fn accept_result(&mut self, result: Option<RenderResult>) {
        match result {
            Some(RenderResult(r)) => self.accept(r),
            None => {
                self.wait(Duration::ZERO);
            }
        }
    }

    /// End of stream: renders every frame still inside (silence where audio is missing), waits for them
    /// and returns them all in order. In live mode deadlines still apply (`now`).
    pub fn finish(&mut self, now: Option<u64>) -> Vec<OutputFrame<P>> {
        self.settle(now, 0, true)
    }

    /// Offline pacing: collects what the engine's threads finished, starts what can start, and returns
    /// the frames done, waiting for the threads until at most `ahead` frames are being worked on
    /// ([`Engine::working`]); `finishing` (the input has ended), until every frame is out. A caller that
    /// feeds a file calls it after each frame it pushes. A caller that must not block with the engine in
    /// hand runs the same loop itself: a step, [`Engine::settled`], a wait on a [`RenderWaiter`].
    pub fn pump(&mut self, ahead: usize, finishing: bool) -> Vec<OutputFrame<P>> {
        self.settle(None, ahead, finishing)
    }

    /// Whether [`Engine::pump`] with these arguments would stop waiting.
    pub fn settled(&self, ahead: usize, finishing: bool) -> bool {
        if finishing { self.pending.is_empty() } else { self.working() <= ahead }
    }

    fn settle(&mut self, now: Option<u64>, ahead: usize, finishing: bool) -> Vec<OutputFrame<P>> {
        let mut out = Vec::new();
        loop {
            out.extend(if finishing { self.finish_step(now) } else { self.process(now) });
            if self.settled(ahead, finishing) {
                return out;
            }
            if !self.wait(Duration::from_secs(60)) && self.working() > 0 {
                self.worker_lost();
            }
        }
    }

    /// One step of [`Engine::finish`] without waiting: collects finished renders, starts every frame still
    /// waiting (with silence where audio is missing) and returns the frames done, in order. The stream is
    /// finished when [`Engine::pending`] is 0; in between, wait for renders ([`Engine::waiter`]).
    pub fn finish_step(&mut self, now: Option<u64>) -> Vec<OutputFrame<P>> {
        let now = if self.config.mode == Mode::Live { now } else { None };
        self.collect_results();
        self.dispatch(now, true);
        self.observe_audio();
        self.emit(now)
    }

    /// Flush: drops every frame and all audio, resets the renderer. The engine is ready for a new stream.
    pub fn flush(&mut self) {
        self.flush_video();
        self.flush_audio(None);
    }

    /// Drops every frame and resets the renderer (the video was flushed).
    pub fn flush_video(&mut self) {
        self.epoch += 1;
        self.pending.clear();
        self.in_flight.clear();
        self.faces.clear();
        self.tracked_to = self.next_seq;
        self.earliest = None;
        self.last_video_pts = None;
        self.last_patch = None;
        self.playback.flush_video();
        // Answers of the old epoch still in the channel are ignored when they arrive.
        let _ = self.worker.jobs.send(Job::Reset);
        self.worker.track(TrackJob::Reset);
    }

    /// Drops all audio (the audio was flushed): the frames still to render get silence, the segment
    /// playing is reported interrupted where the output had got to at `now` (live: the frame due then,
    /// `now - latency`; otherwise the last frame out).
    pub fn flush_audio(&mut self, now: Option<u64>) {
        let mut events = Vec::new();
        let live = now.filter(|_| self.config.mode == Mode::Live);
        self.playback.flush(live.map(|n| n.saturating_sub(self.latency)), &mut events);
        self.report(events);
        self.ring.clear();
        self.audio_eos = false;
        self.audio_missing = false;
    }

    fn report(&mut self, playback: Vec<PlaybackEvent>) {
        if self.config.report_playback {
            self.events.extend(playback.into_iter().map(EngineEvent::Playback));
        }
    }

    /// Follows the speech segments received and reports audio dropped since the last call.
    fn observe_audio(&mut self) {
        self.playback.observe(self.ring.spans());
        let dropped = self.ring.counters().overrun_samples.load(std::sync::atomic::Ordering::Relaxed);
        if dropped > self.dropped_samples {
            self.events.push(EngineEvent::AudioOverflow { samples: dropped - self.dropped_samples });
            self.dropped_samples = dropped;
        }
    }

    fn collect_results(&mut self) {
        while let Ok(r) = self.worker.answers.try_recv() {
            self.accept(r);
        }
    }

    fn accept(&mut self, answer: Answer) {
        match answer {
            Answer::Rendered(r) => self.accept_render(r),
            Answer::Tracked(t) => {
                if t.epoch == self.epoch && t.seq >= self.tracked_to {
                    self.tracked_to = t.seq + 1;
                    self.faces.push_back(t);
                }
            }
        }
    }

    fn accept_render(&mut self, r: RenderOutcome) {
        self.audio_pool.push(r.audio);
        if r.epoch != self.epoch {
            return;
        }
        self.in_flight.retain(|&seq| seq != r.seq);
        self.stats.record_render_time(r.elapsed);
        let (image, status) = match r.outcome {
            Ok(Some(Done { image, patch })) => {
                self.last_patch = Some(patch);
                (Some(image), FrameStatus::Rendered)
            }
            Ok(None) => (None, FrameStatus::Rendered),
            Err(e) => {
                self.events.push(EngineEvent::RenderFailed(e.to_string()));
                (None, FrameStatus::Failed)
            }
        };
        // A frame already sent out as late is gone from the queue: its result only updated `last_patch`.
        if let Some(i) = self.pending.iter().position(|p| p.seq == r.seq) {
            let image = match status {
                FrameStatus::Failed => self.fallback_image(&self.pending[i].frame),
                _ => image,
            };
            self.pending[i].state = State::Done { image, status };
        }
    }

    fn worker_lost(&mut self) {
        if self.lost {
            return;
        }
        self.lost = true;
        self.events.push(EngineEvent::RenderFailed(
            Error::WorkerStopped(format!("renderer `{}` stopped answering", self.renderer_name)).to_string(),
        ));
        self.in_flight.clear();
        for p in &mut self.pending {
            if !matches!(p.state, State::Done { .. }) {
                p.state = State::Done { image: None, status: FrameStatus::Failed };
            }
        }
    }

    fn fallback_image(&self, frame: &VideoFrame) -> Option<Vec<u8>> {
        match (self.config.fallback, &self.last_patch) {
            (Fallback::LastRender, Some(patch)) => Some(frame.composite(patch)),
            _ => None,
        }
    }

    /// Starts renders in order for the frames whose audio is ready.
    fn dispatch(&mut self, now: Option<u64>, eos: bool) {
        let audio_end = self.ring.end_time();
        // Audio missing for too long: let frames pass instead of waiting for their deadlines.
        if let Some(video) = self.last_video_pts {
            let lag = video.saturating_sub(audio_end.unwrap_or(0));
            let missing = self.config.gaps == AudioGaps::Wait
                && (self.audio_absent || (!self.audio_eos && lag > self.config.audio_timeout));
            if missing != self.audio_missing {
                self.audio_missing = missing;
                self.events.push(if missing {
                    EngineEvent::AudioMissing { lag_ns: lag }
                } else {
                    EngineEvent::AudioResumed
                });
            }
        }
        for i in 0..self.pending.len() {
            let p = &self.pending[i];
            if !matches!(p.state, State::WaitingAudio) {
                continue;
            }
            let pts = p.frame.pts;
            let deadline = pts + self.latency;
            let covered = audio_end.is_some_and(|end| end >= self.window.end(pts))
                || self.config.gaps == AudioGaps::Silence
                    && (self.audio_absent || now.is_some_and(|n| n >= self.window.end(pts)));
            let too_late = now.is_some_and(|n| n >= deadline) || self.earliest.is_some_and(|e| pts < e);
            if too_late {
                Stats::add(&self.stats.frames_late);
                let image = self.fallback_image(&self.pending[i].frame);
                self.pending[i].state = State::Done { image, status: FrameStatus::Late };
                continue;
            }
            if !(covered || self.audio_eos || eos) {
                if self.audio_missing {
                    let image = self.fallback_image(&self.pending[i].frame);
                    self.pending[i].state = State::Done { image, status: FrameStatus::NoAudio };
                    continue;
                }
                break; // later frames need even more audio
            }
            // The frames after this one in its context must be in, and tracked, with the frame itself.
            let seq = self.pending[i].seq;
            let after = (self.next_seq - 1 - seq).min(self.context.after as u64);
            if after < self.context.after as u64 && !eos {
                break;
            }
            if self.worker.tracks_faces() && self.tracked_to <= seq + after {
                break;
            }
            let (face, context) = if self.worker.tracks_faces() {
                match self.face_and_context(seq, after) {
                    Ok((Some(face), context)) => (Some(face), context),
                    // No face: the frame passes through untouched.
                    Ok((None, _)) => {
                        Stats::add(&self.stats.frames_no_face);
                        self.pending[i].state = State::Done { image: None, status: FrameStatus::Rendered };
                        continue;
                    }
                    Err(e) => {
                        self.events.push(EngineEvent::RenderFailed(e.to_string()));
                        let image = self.fallback_image(&self.pending[i].frame);
                        self.pending[i].state = State::Done { image, status: FrameStatus::Failed };
                        continue;
                    }
                }
            } else {
                (None, Vec::new())
            };
            if self.in_flight.len() >= self.config.max_in_flight {
                break;
            }
            let n = self.window.samples();
            let mut audio = self.audio_pool.pop().unwrap_or_default();
            audio.resize(n, 0.0);
            let (start, lead) = self.window.placement(pts);
            // Silence where none came is an underrun only when audio was expected.
            let info = self.ring.read(start, &mut audio[lead..], self.config.gaps == AudioGaps::Wait);
            let job = Job::Render(Box::new(RenderTask {
                seq: self.pending[i].seq,
                epoch: self.epoch,
                frame: self.pending[i].frame.clone(),
                audio,
                audio_missing: info.missing + lead,
                face,
                context,
            }));
            match self.worker.jobs.try_send(job) {
                Ok(()) => {
                    self.in_flight.push_back(self.pending[i].seq);
                    self.pending[i].state = State::InFlight;
                }
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Disconnected(_)) => {
                    self.worker_lost();
                    self.pending[i].state = State::Done { image: None, status: FrameStatus::Failed };
                }
            }
        }
        // Tracker answers go once no frame still to be rendered can show them: before the first waiting
        // frame's context (without one, the next frame's).
        let waiting = self.pending.iter().find(|p| matches!(p.state, State::WaitingAudio)).map(|p| p.seq);
        let oldest_shown = waiting.unwrap_or(self.next_seq).saturating_sub(self.context.before as u64);
        while self.faces.front().is_some_and(|t| t.seq < oldest_shown) {
            self.faces.pop_front();
        }
        // Audio before the oldest window still to be read can go; nothing newer may be lost silently. When
        // no frame waits, the next one will have a later pts than the last, so older audio can go. Before
        // any video everything may still be needed: dropping it is an overrun.
        let oldest_needed = self
            .pending
            .iter()
            .find(|p| matches!(p.state, State::WaitingAudio))
            .map(|p| self.window.start(p.frame.pts))
            .or_else(|| self.last_video_pts.map(|last| self.window.start(last + 1)));
        // A frame not yet emitted keeps the audio from its pts on, which the caller may write with it
        // ([`Engine::audio_between`]).
        let unemitted = self.pending.front().map(|p| p.frame.pts);
        match oldest_needed {
            Some(t) => {
                let t = unemitted.map_or(t, |u| u.min(t));
                self.ring.release_before(t);
                self.ring.protect_from(t);
            }
            None => self.ring.protect_from(0),
        }
    }

    /// The tracked face of frame `seq` and its frame context, from the answers in (those of the `after`
    /// frames after it included); slots of frames that do not exist, before the stream's start or after
    /// its end, are `None`.
    fn face_and_context(&self, seq: u64, after: u64) -> Result<(Option<Face>, Vec<Option<Neighbour>>)> {
        let answer = |s: u64| self.faces.iter().find(|t| t.seq == s);
        let face = match answer(seq) {
            Some(Tracked { face: Ok(face), .. }) => face.clone(),
            Some(Tracked { face: Err(e), .. }) => {
                return Err(Error::Render { renderer: "face tracker", reason: e.to_string() });
            }
            None => return Err(Error::WorkerStopped(format!("frame {seq} has no tracker answer"))),
        };
        let before = self.context.before as u64;
        let context = (0..self.context.len() as u64)
            .map(|i| {
                let s = (seq + i).checked_sub(before).filter(|&s| s <= seq + after)?;
                let t = answer(s)?;
                Some(Neighbour { pts: t.pts, face: t.face.as_ref().ok().cloned().flatten() })
            })
            .collect();
        Ok((face, context))
    }

    /// Pops the frames at the head that are done, or due (live).
    fn emit(&mut self, now: Option<u64>) -> Vec<OutputFrame<P>> {
        let mut out = Vec::new();
        while let Some(head) = self.pending.front() {
            let due = now.is_some_and(|n| n >= head.frame.pts + self.latency);
            if !matches!(head.state, State::Done { .. }) && !due {
                break;
            }
            let p = self.pending.pop_front().expect("head exists");
            let (image, status) = match p.state {
                State::Done { image, status } => (image, status),
                // An in-flight render stays in `in_flight` until the worker hands it back.
                State::InFlight | State::WaitingAudio => {
                    Stats::add(&self.stats.frames_late);
                    (self.fallback_image(&p.frame), FrameStatus::Late)
                }
            };
            match status {
                FrameStatus::Rendered => Stats::add(&self.stats.frames_rendered),
                FrameStatus::NoAudio => {
                    Stats::add(&self.stats.frames_no_audio);
                    Stats::add(&self.stats.frames_fallback);
                }
                FrameStatus::Late | FrameStatus::Failed => Stats::add(&self.stats.frames_fallback),
            }
            let end = p.frame.pts + p.frame.duration.unwrap_or(DEFAULT_FRAME_NS);
            let known_to = if self.audio_eos { u64::MAX } else { self.window.end(p.frame.pts) };
            let mut played = Vec::new();
            self.playback.shown(p.frame.pts, end, known_to, &mut played);
            self.report(played);
            out.push(OutputFrame { payload: p.payload, frame: p.frame, image, status });
        }
        out
    }
}

#[cfg(test)]
mod tests;
