//! The engine's two threads. The render thread owns the renderer and renders each job it is given, whole:
//! the frame, its audio, its face and the faces around it. The tracking thread, when faces are tracked,
//! owns the tracker and tracks every frame as soon as it arrives, in order, while the frame still waits
//! for its audio look-ahead, so the latency budget only has to cover the render. Both answer on one
//! channel to the engine, which keeps what it needs; neither thread keeps anything from one frame to the
//! next beyond the renderer's and the tracker's own state. A panic inside either becomes an error for
//! that frame and the thread goes on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, bounded, unbounded};

use crate::error::{Error, Result};
use crate::face::{Face, FaceTracker};
use crate::frame::{Patch, VideoFrame};
use crate::render::{Neighbour, RenderJob, Rendered, Renderer};

pub(crate) enum Job {
    Render(Box<RenderTask>),
    Reset,
}

/// One frame to render, with everything its render reads.
pub(crate) struct RenderTask {
    pub seq: u64,
    pub epoch: u64,
    pub frame: VideoFrame,
    pub audio: Vec<f32>,
    pub audio_missing: usize,
    /// The frame's tracked face (`None` when faces are not tracked).
    pub face: Option<Face>,
    /// Its neighbours' faces, the renderer's frame context (empty when faces are not tracked).
    pub context: Vec<Option<Neighbour>>,
}

/// A rendered frame: the composited image and the patch it came from (kept for the fallback).
pub(crate) struct Done {
    pub image: Vec<u8>,
    pub patch: Arc<Patch>,
}

/// The render thread's answer for one frame.
pub(crate) struct RenderOutcome {
    pub seq: u64,
    pub epoch: u64,
    /// `Ok(None)`: the renderer left the frame unchanged.
    pub outcome: Result<Option<Done>>,
    /// The audio buffer, handed back for reuse.
    pub audio: Vec<f32>,
    pub elapsed: Duration,
}

/// The tracking thread's answer for one frame.
pub(crate) struct Tracked {
    pub seq: u64,
    pub epoch: u64,
    pub pts: u64,
    pub face: Result<Option<Face>>,
}

/// What the threads send back, in the order each thread finishes its work.
pub(crate) enum Answer {
    Rendered(RenderOutcome),
    Tracked(Tracked),
}

/// A frame to track, or a reset of the tracker.
pub(crate) enum TrackJob {
    Track { seq: u64, epoch: u64, frame: VideoFrame },
    Reset,
}

pub(crate) struct Worker {
    pub jobs: Sender<Job>,
    pub answers: Receiver<Answer>,
    /// Frames to track, when faces are tracked.
    tracks: Option<Sender<TrackJob>>,
    handles: Vec<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(mut renderer: Box<dyn Renderer>, tracker: Option<FaceTracker>, queue: usize) -> Result<Self> {
        let (jobs, job_rx) = bounded::<Job>(queue.max(1));
        // Unbounded: at most one answer per frame the engine holds, and the engine bounds those.
        let (answer_tx, answers) = unbounded::<Answer>();
        let spawn_error = |e: std::io::Error| Error::WorkerStopped(format!("cannot start a worker thread: {e}"));
        let mut handles = Vec::new();
        let tracks = match tracker {
            Some(mut tracker) => {
                let (track_tx, track_rx) = unbounded::<TrackJob>();
                let answers = answer_tx.clone();
                let handle = std::thread::Builder::new()
                    .name("lipsync-track".into())
                    .spawn(move || track(&mut tracker, track_rx, answers))
                    .map_err(spawn_error)?;
                handles.push(handle);
                Some(track_tx)
            }
            None => None,
        };
        let name = format!("lipsync-render-{}", renderer.name());
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || render(renderer.as_mut(), job_rx, answer_tx))
            .map_err(spawn_error)?;
        handles.push(handle);
        Ok(Worker { jobs, answers, tracks, handles })
    }

    /// Whether frames are tracked.
    pub fn tracks_faces(&self) -> bool {
        self.tracks.is_some()
    }

    /// Starts tracking a frame (every frame that will be rendered must be sent here first, in order).
    pub fn track(&self, job: TrackJob) -> bool {
        self.tracks.as_ref().is_some_and(|t| t.send(job).is_ok())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the job channels ends the threads once they finish their current jobs.
        let (dead, _) = bounded(0);
        self.jobs = dead;
        self.tracks = None;
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A panic's message, for the error it becomes.
fn panic_reason(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

fn track(tracker: &mut FaceTracker, jobs: Receiver<TrackJob>, answers: Sender<Answer>) {
    for job in jobs {
        match job {
            TrackJob::Reset => tracker.reset(),
            TrackJob::Track { seq, epoch, frame } => {
                let _span = tracing::debug_span!("track", seq, pts = frame.pts).entered();
                let face = catch_unwind(AssertUnwindSafe(|| tracker.track(&frame))).unwrap_or_else(|panic| {
                    tracker.reset();
                    let reason = format!("panicked: {}", panic_reason(panic));
                    Err(Error::Render { renderer: "face tracker", reason })
                });
                if answers.send(Answer::Tracked(Tracked { seq, epoch, pts: frame.pts, face })).is_err() {
                    return;
                }
            }
        }
    }
}

fn render(renderer: &mut dyn Renderer, jobs: Receiver<Job>, answers: Sender<Answer>) {
    for job in jobs {
        match job {
            Job::Reset => renderer.reset(),
            Job::Render(task) => {
                let RenderTask { seq, epoch, frame, audio, audio_missing, face, context } = *task;
                let _span = tracing::debug_span!("render", seq, pts = frame.pts).entered();
                let start = Instant::now();
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let job = RenderJob {
                        frame: &frame,
                        audio: &audio,
                        audio_missing,
                        face: face.as_ref(),
                        context: &context,
                    };
                    match renderer.render(&job)? {
                        Rendered::Unchanged => Ok(None),
                        Rendered::Patch(patch) => {
                            let image = frame.composite(&patch);
                            Ok(Some(Done { image, patch: Arc::new(patch) }))
                        }
                    }
                }))
                .unwrap_or_else(|panic| {
                    let reason = format!("panicked: {}", panic_reason(panic));
                    Err(Error::Render { renderer: renderer.name(), reason })
                });
                let elapsed = start.elapsed();
                let answer = RenderOutcome { seq, epoch, outcome, audio, elapsed };
                if answers.send(Answer::Rendered(answer)).is_err() {
                    return;
                }
            }
        }
    }
}
