//! The render worker: one thread that owns the renderer, takes jobs from a crossbeam channel, renders and
//! composites, and sends results back. A panic inside a renderer becomes an error for that frame; the
//! worker keeps going.
//!
//! When faces are tracked, a second thread owns the tracker and tracks every frame as soon as it arrives
//! ([`Worker::track`]), in order, while the frame still waits for its audio look-ahead: by the time a
//! frame's render starts its face is usually known, so the latency budget only has to cover the render.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, bounded, unbounded};

use crate::error::{Error, Result};
use crate::face::{Face, FaceTracker};
use crate::frame::{Patch, VideoFrame};
use crate::render::{FrameContext, Neighbour, RenderJob, Rendered, Renderer};

pub(crate) enum Job {
    Render {
        seq: u64,
        epoch: u64,
        frame: VideoFrame,
        audio: Vec<f32>,
        audio_missing: usize,
        /// Frames after this one that exist (at most the renderer's `frame_context().after`; fewer at the
        /// end of a stream): their tracker answers are waited for.
        frames_after: usize,
    },
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

/// A frame to track, or a reset of the tracker.
pub(crate) enum TrackJob {
    Track { seq: u64, epoch: u64, frame: VideoFrame },
    Reset,
}

/// The tracker's answer for one frame.
struct Tracked {
    seq: u64,
    epoch: u64,
    pts: u64,
    face: Result<Option<Face>>,
}

pub(crate) struct Worker {
    pub jobs: Sender<Job>,
    pub results: Receiver<JobResult>,
    /// Frames to track, when the renderer works on tracked faces.
    tracks: Option<Sender<TrackJob>>,
    /// The oldest frame (seq) the engine may still render: older tracker answers are only kept as the
    /// frame context of newer ones.
    low_water: Arc<AtomicU64>,
    handles: Vec<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(mut renderer: Box<dyn Renderer>, tracker: Option<FaceTracker>, queue: usize) -> Result<Self> {
        let (jobs, job_rx) = bounded::<Job>(queue.max(1));
        let (result_tx, results) = unbounded();
        let spawn_error = |e: std::io::Error| Error::WorkerStopped(format!("cannot start a worker thread: {e}"));
        let mut handles = Vec::new();
        let low_water = Arc::new(AtomicU64::new(0));
        let (tracks, faces) = match tracker {
            Some(mut tracker) => {
                // Unbounded: one entry per frame the engine holds, and the engine bounds those.
                let (track_tx, track_rx) = unbounded::<TrackJob>();
                let (face_tx, face_rx) = unbounded::<Tracked>();
                let handle = std::thread::Builder::new()
                    .name("lipsync-track".into())
                    .spawn(move || track(&mut tracker, track_rx, face_tx))
                    .map_err(spawn_error)?;
                handles.push(handle);
                (Some(track_tx), Some(face_rx))
            }
            None => (None, None),
        };
        let name = format!("lipsync-render-{}", renderer.name());
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn({
                let low_water = low_water.clone();
                move || run(renderer.as_mut(), faces, low_water, job_rx, result_tx)
            })
            .map_err(spawn_error)?;
        handles.push(handle);
        Ok(Worker { jobs, results, tracks, low_water, handles })
    }

    /// Whether frames are tracked.
    pub fn tracks_faces(&self) -> bool {
        self.tracks.is_some()
    }

    /// Frames before `seq` will not be rendered (the engine sent them out, or never will render them).
    pub fn set_low_water(&self, seq: u64) {
        self.low_water.store(seq, Ordering::Relaxed);
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

fn track(tracker: &mut FaceTracker, jobs: Receiver<TrackJob>, faces: Sender<Tracked>) {
    for job in jobs {
        match job {
            TrackJob::Reset => tracker.reset(),
            TrackJob::Track { seq, epoch, frame } => {
                let _span = tracing::debug_span!("track", seq, pts = frame.pts).entered();
                let face = catch_unwind(AssertUnwindSafe(|| tracker.track(&frame))).unwrap_or_else(|_| {
                    tracker.reset();
                    Err(Error::Render { renderer: "face tracker", reason: "panicked".into() })
                });
                if faces.send(Tracked { seq, epoch, pts: frame.pts, face }).is_err() {
                    return;
                }
            }
        }
    }
}

/// The tracking thread's answers, as the render thread reads them: the answers of the current epoch
/// from the oldest a frame context can still ask for onwards, in order.
struct Faces {
    rx: Receiver<Tracked>,
    recent: VecDeque<Tracked>,
    low_water: Arc<AtomicU64>,
    /// Frames before a rendered one that its job carries.
    context_before: u64,
}

impl Faces {
    /// Keeps an answer: a newer epoch's replaces the older ones; answers older than any frame still to
    /// render, or its frame context, are let go. So answers nobody asks for (frames passing through
    /// without audio, say) do not pile up, and none a render needs is dropped.
    fn keep(&mut self, t: Tracked) {
        if self.recent.front().is_some_and(|f| f.epoch < t.epoch) {
            self.recent.clear();
        }
        if self.recent.front().is_some_and(|f| f.epoch > t.epoch) {
            return; // a flushed stream's frame
        }
        self.recent.push_back(t);
        let oldest = self.low_water.load(Ordering::Relaxed).saturating_sub(self.context_before);
        while self.recent.front().is_some_and(|f| f.seq < oldest) {
            self.recent.pop_front();
        }
    }

    /// Reads answers until the one for (`epoch`, `seq`) or a later one is in.
    fn read_up_to(&mut self, seq: u64, epoch: u64) -> Result<()> {
        while self.recent.back().is_none_or(|t| (t.epoch, t.seq) < (epoch, seq)) {
            let t = self.rx.recv().map_err(|_| Error::WorkerStopped("the face tracking thread stopped".into()))?;
            if t.epoch < epoch {
                continue; // a flushed stream's frame
            }
            self.keep(t);
        }
        Ok(())
    }

    fn get(&self, seq: u64, epoch: u64) -> Option<&Tracked> {
        self.recent.iter().find(|t| (t.epoch, t.seq) == (epoch, seq))
    }

    /// The face of frame (`epoch`, `seq`) and its neighbours in `context` (slots of frames that do not
    /// exist, before the stream's start or after its end, are `None`), once the answers of the
    /// `frames_after` frames after it are in.
    fn of(
        &mut self,
        seq: u64,
        epoch: u64,
        context: FrameContext,
        frames_after: usize,
    ) -> Result<(Option<Face>, Vec<Option<Neighbour>>)> {
        self.read_up_to(seq + frames_after as u64, epoch)?;
        let face = match self.get(seq, epoch) {
            Some(t) => match &t.face {
                Ok(face) => face.clone(),
                Err(e) => return Err(Error::Render { renderer: "face tracker", reason: e.to_string() }),
            },
            None => return Err(Error::WorkerStopped(format!("frame {seq} was never sent for tracking"))),
        };
        let neighbours = (0..context.len() as u64)
            .map(|i| {
                let t = (seq + i).checked_sub(context.before as u64).and_then(|s| self.get(s, epoch))?;
                Some(Neighbour { pts: t.pts, face: t.face.as_ref().ok().cloned().flatten() })
            })
            .collect();
        Ok((face, neighbours))
    }
}

fn run(
    renderer: &mut dyn Renderer,
    faces: Option<Receiver<Tracked>>,
    low_water: Arc<AtomicU64>,
    jobs: Receiver<Job>,
    results: Sender<JobResult>,
) {
    let context = renderer.frame_context();
    let context_before = context.before as u64;
    let mut faces = faces.map(|rx| Faces { rx, recent: VecDeque::new(), low_water, context_before });
    let mut tracker_alive = faces.is_some();
    loop {
        // While no job comes, tracker answers are still taken in (and bounded), not left to pile up.
        let job = match faces.as_mut() {
            Some(f) if tracker_alive => crossbeam::select! {
                recv(jobs) -> job => job,
                recv(f.rx) -> answer => {
                    match answer {
                        Ok(t) => f.keep(t),
                        // Gone: the next render that needs a face reports it.
                        Err(_) => tracker_alive = false,
                    }
                    continue;
                }
            },
            _ => jobs.recv(),
        };
        let Ok(job) = job else { return };
        match job {
            Job::Reset => renderer.reset(),
            Job::Render { seq, epoch, frame, audio, audio_missing, frames_after } => {
                let _span = tracing::debug_span!("render", seq, pts = frame.pts).entered();
                let start = Instant::now();
                let mut no_face = false;
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    let (face, neighbours) = match faces.as_mut() {
                        Some(faces) => match faces.of(seq, epoch, context, frames_after)? {
                            (Some(face), neighbours) => (Some(face), neighbours),
                            (None, _) => {
                                no_face = true;
                                return Ok(None);
                            }
                        },
                        None => (None, Vec::new()),
                    };
                    let job = RenderJob {
                        frame: &frame,
                        audio: &audio,
                        audio_missing,
                        face: face.as_ref(),
                        context: &neighbours,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(seq: u64, epoch: u64) -> Tracked {
        Tracked { seq, epoch, pts: seq, face: Ok(None) }
    }

    #[test]
    fn answers_before_the_low_water_mark_go_and_a_new_epoch_replaces_the_old() {
        let (_tx, rx) = unbounded();
        let low_water = Arc::new(AtomicU64::new(0));
        let mut faces = Faces { rx, recent: VecDeque::new(), low_water: low_water.clone(), context_before: 2 };
        for seq in 0..1000 {
            faces.keep(answer(seq, 0));
        }
        assert_eq!(faces.recent.len(), 1000, "every answer a render may still need is kept");
        // Frames before 990 will not be rendered: only their last two stay, as frame 990's context.
        low_water.store(990, Ordering::Relaxed);
        faces.keep(answer(1000, 0));
        assert_eq!(faces.recent.front().map(|t| t.seq), Some(988));
        assert_eq!(faces.recent.len(), 13);
        faces.keep(answer(1001, 1));
        assert_eq!(faces.recent.len(), 1, "a flush starts over");
        faces.keep(answer(5000, 0));
        assert_eq!(faces.recent.len(), 1, "the flushed stream's late answer is dropped");
    }
}
