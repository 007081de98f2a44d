//! The render worker: one thread that owns the renderer, takes jobs from a crossbeam channel, renders and
//! composites, and sends results back. A panic inside a renderer becomes an error for that frame; the
//! worker keeps going.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, bounded, unbounded};

use crate::error::{Error, Result};
use crate::face::FaceTracker;
use crate::frame::{Patch, VideoFrame};
use crate::render::{RenderJob, Rendered, Renderer};

pub(crate) enum Job {
    Render { seq: u64, epoch: u64, frame: VideoFrame, audio: Vec<f32>, audio_missing: usize },
    Reset,
}

/// A rendered frame: the composited image and the patch it came from (kept for the fallback).
pub(crate) struct Done {
    pub image: Vec<u8>,
    pub patch: Arc<Patch>,
}

pub(crate) struct JobResult {
    pub seq: u64,
    pub epoch: u64,
    /// Tracking was on and found no face: the frame passed through untouched.
    pub no_face: bool,
    /// `Ok(None)`: the renderer left the frame unchanged.
    pub outcome: Result<Option<Done>>,
    /// The audio buffer, handed back for reuse.
    pub audio: Vec<f32>,
    pub elapsed: Duration,
}

pub(crate) struct Worker {
    pub jobs: Sender<Job>,
    pub results: Receiver<JobResult>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(mut renderer: Box<dyn Renderer>, mut tracker: Option<FaceTracker>, queue: usize) -> Result<Self> {
        let (jobs, job_rx) = bounded::<Job>(queue.max(1));
        let (result_tx, results) = unbounded();
        let name = format!("lipsync-render-{}", renderer.name());
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(renderer.as_mut(), tracker.as_mut(), job_rx, result_tx))
            .map_err(|e| Error::WorkerStopped(format!("cannot start the render thread: {e}")))?;
        Ok(Worker { jobs, results, handle: Some(handle) })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the job channel ends the thread once it finishes its current job.
        let (dead, _) = bounded(0);
        self.jobs = dead;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn run(
    renderer: &mut dyn Renderer,
    mut tracker: Option<&mut FaceTracker>,
    jobs: Receiver<Job>,
    results: Sender<JobResult>,
) {
    for job in jobs {
        match job {
            Job::Reset => {
                renderer.reset();
                if let Some(t) = tracker.as_deref_mut() {
                    t.reset();
                }
            }
            Job::Render { seq, epoch, frame, audio, audio_missing } => {
                let _span = tracing::debug_span!("render", seq, pts = frame.pts).entered();
                let start = Instant::now();
                let mut no_face = false;
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let face = match tracker.as_deref_mut() {
                        Some(t) => match t.track(&frame)? {
                            Some(face) => Some(face),
                            None => {
                                no_face = true;
                                return Ok(None);
                            }
                        },
                        None => None,
                    };
                    let job = RenderJob { frame: &frame, audio: &audio, audio_missing, face: face.as_ref() };
                    match renderer.render(&job)? {
                        Rendered::Unchanged => Ok(None),
                        Rendered::Patch(patch) => {
                            let image = frame.composite(&patch);
                            Ok(Some(Done { image, patch: Arc::new(patch) }))
                        }
                    }
                }))
                .unwrap_or_else(|panic| {
                    let reason = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    Err(Error::Render { renderer: renderer.name(), reason: format!("panicked: {reason}") })
                });
                let elapsed = start.elapsed();
                if results.send(JobResult { seq, epoch, no_face, outcome, audio, elapsed }).is_err() {
                    return;
                }
            }
        }
    }
}
