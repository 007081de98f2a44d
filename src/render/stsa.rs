//! The `stsa` renderer: STSA's networks in a stream. For frame k it takes the T=5 window of frames
//! k-2..k+2 (the engine's frame context: their tracked faces) and the audio around them, and:
//!
//! 1. offers the frame to the reference bank; the five references (provisional while enrolling, then
//!    fixed) are encoded once per reference set (heatmap-generator tokens, face-renderer features);
//! 2. draws the pose heatmap of each window frame not seen before (its embedding is kept per frame);
//! 3. runs wav2vec2 over `history` + the window + `lookahead` of audio, normalised with the running
//!    statistics of the stream, and cuts the five chunks (rows 2k-4.. of the original);
//! 4. predicts the lip and jaw heatmaps of frames k..k+2, fuses them with the earlier windows'
//!    predictions for frame k ([`HeatmapFuser`]) and renders the lower face at 128x128;
//! 5. pastes it back through the face-contour mask ([`face_patch`]).
//!
//! It is shaped for a GPU: a frame makes one upload (the audio window, the face crop and the new pose
//! heatmaps in one buffer) and one read-back (the face, as RGB bytes); the predictions are fused on the
//! device, and nothing waits for the device before the face is read. The networks are shared by every
//! stream of the process that loads the same weights on the same device ([`Models::shared`]); what a
//! stream keeps (its references, poses, pending predictions, audio statistics) is its own.
//!
//! The networks see BGR in 0..1 as in the original. Rendering starts with the first frame: until the
//! bank's enrolment ends, its provisional picks among the frames so far serve as the references. Window
//! frames that do not exist (stream start or end) or have no face repeat the nearest one that has, as the
//! original repeats frame 0 before the start; audio before the stream is silence (the original uses
//! zero features there).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};

use super::pixels::{appearance, face_crop, snapshot};
use super::{FrameContext, RenderJob, Rendered, Renderer};
use crate::audio::{AudioWindow, NS_PER_SAMPLE};
use crate::error::{Error, Result};
use crate::face::Face;
use crate::face::landmarks::CONNECTIONS_POSE;
use crate::guidance::composite::face_patch;
use crate::guidance::crop::FaceBox;
use crate::guidance::references::{BankConfig, Reference, ReferenceBank, lip_openness};
use crate::guidance::smoothing::{Blend, HeatmapFuser};
use crate::guidance::{CANVAS, heatmap, sketch};
use crate::stsa::face_renderer;
use crate::stsa::models::{ComputeDevice, Models, Precision, WeightSource};
use crate::stsa::wav2vec2::ROW_STRIDE;

const MS: u64 = 1_000_000;
/// The window's frames on each side of the rendered one.
const HALF: usize = 2;
const T: usize = 2 * HALF + 1;
/// wav2vec2 rows per chunk and between the chunks of consecutive frames (50 rows/s, 25 frames/s).
const CHUNK_ROWS: usize = 10;
const ROWS_PER_FRAME: usize = 2;
/// wav2vec2's default context around the chunks: history before, look-ahead after.
const DEFAULT_HISTORY: u64 = 1000 * MS;
const DEFAULT_LOOKAHEAD: u64 = 200 * MS;
/// Pixels of a 128x128 plane.
const PLANE: usize = CANVAS * CANVAS;

/// The audio window with wav2vec2's context around the chunks of frames k-2..k+2 ([`AudioWindow::STSA`]).
const fn window_with(history: u64, lookahead: u64) -> AudioWindow {
    AudioWindow { before: AudioWindow::STSA.before + history, after: AudioWindow::STSA.after + lookahead }
}

/// The window of the default settings (what an element shows before it loads anything).
pub const DEFAULT_WINDOW: AudioWindow = window_with(DEFAULT_HISTORY, DEFAULT_LOOKAHEAD);

/// Settings of the `stsa` renderer.
#[derive(Clone, Debug)]
pub struct StsaConfig {
    pub weights: WeightSource,
    pub device: ComputeDevice,
    pub precision: Precision,
    /// How the reference bank enrols the person.
    pub bank: BankConfig,
    /// Audio wav2vec2 sees before the window (ns, a multiple of 20 ms): its context.
    pub history: u64,
    /// Audio wav2vec2 sees after the window (ns): its look-ahead, which adds to the latency.
    pub lookahead: u64,
    /// Fuse each frame's heatmap with the predictions of the two windows before (else the centre
    /// prediction alone, as the original).
    pub fuse: bool,
}

impl StsaConfig {
    pub fn new(weights: WeightSource) -> Self {
        StsaConfig {
            weights,
            device: ComputeDevice::Cpu,
            precision: Precision::F32,
            bank: BankConfig::default(),
            history: DEFAULT_HISTORY,
            lookahead: DEFAULT_LOOKAHEAD,
            fuse: true,
        }
    }

    /// The audio the renderer needs around each frame: the five chunks plus wav2vec2's context.
    pub fn window(&self) -> AudioWindow {
        window_with(self.history, self.lookahead)
    }
}

/// Where the time of the frames rendered so far went, stage by stage ([`Stsa::set_profiling`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StageTimes {
    pub frames: u32,
    /// The reference bank and the references' encodings, the crop, the new pose heatmaps and their
    /// embeddings, the upload.
    pub prepare: Duration,
    pub wav2vec2: Duration,
    /// The heatmap generator and the fusion.
    pub generator: Duration,
    /// The face renderer, the read-back and the paste.
    pub renderer: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.prepare + self.wav2vec2 + self.generator + self.renderer
    }
}

impl std::ops::AddAssign for StageTimes {
    fn add_assign(&mut self, t: StageTimes) {
        self.frames += t.frames;
        self.prepare += t.prepare;
        self.wav2vec2 += t.wav2vec2;
        self.generator += t.generator;
        self.renderer += t.renderer;
    }
}

/// Times the stages of one frame when profiling: the device finishes each stage's work before the
/// next starts (which no frame otherwise waits for), so each is timed alone.
struct Laps<'a> {
    device: Option<&'a Device>,
    last: Instant,
    times: StageTimes,
}

impl<'a> Laps<'a> {
    fn new(profiling: bool, device: &'a Device) -> Self {
        Laps {
            device: profiling.then_some(device),
            last: Instant::now(),
            times: StageTimes { frames: 1, ..Default::default() },
        }
    }

    fn lap(&mut self, stage: fn(&mut StageTimes) -> &mut Duration) -> Result<()> {
        if let Some(device) = self.device {
            device.synchronize()?;
            let now = Instant::now();
            *stage(&mut self.times) += now - self.last;
            self.last = now;
        }
        Ok(())
    }
}

/// The reference set's encodings, and which references they are.
struct CachedReferences {
    key: (u64, u32),
    tokens: Tensor,
    renderer: face_renderer::References,
}

/// A window frame's pose heatmap (1, 1, 128, 128) and its embedding (1, d), kept by pts.
struct Pose {
    heatmap: Tensor,
    embedding: Tensor,
}

/// Mean and variance of everything received, for wav2vec2's waveform normalisation.
#[derive(Default)]
struct RunningStats {
    /// Stream time (ns) up to which samples are counted.
    end: i64,
    n: f64,
    sum: f64,
    sum_sq: f64,
}

impl RunningStats {
    /// Counts the samples of a window starting at `start` (ns, may be negative: leading silence is not
    /// counted) that were not counted yet; returns (mean, 1/sqrt(var + 1e-7)).
    fn update(&mut self, start: i64, samples: &[f32]) -> (f64, f64) {
        let first_new = ((self.end.max(0) - start).max(0) as u64).div_ceil(NS_PER_SAMPLE) as usize;
        for &x in samples.iter().skip(first_new) {
            let x = x as f64;
            self.n += 1.0;
            self.sum += x;
            self.sum_sq += x * x;
        }
        self.end = self.end.max(start + (samples.len() as i64) * NS_PER_SAMPLE as i64);
        let n = self.n.max(1.0);
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(0.0);
        (mean, 1.0 / (var + 1e-7).sqrt())
    }
}

/// Fusion on the networks' device: `Σ (wᵢ/total)·hᵢ`, capped at 1.
impl Blend for Tensor {
    fn blend(parts: &[(f32, Self)], total: f32) -> Result<Self> {
        let mut sum: Option<Tensor> = None;
        for (w, h) in parts {
            let term = h.affine((w / total) as f64, 0.0)?;
            sum = Some(match sum {
                Some(s) => (s + term)?,
                None => term,
            });
        }
        let sum = sum.ok_or(Error::Render { renderer: "stsa", reason: "nothing to fuse".into() })?;
        Ok(sum.minimum(&sum.ones_like()?)?)
    }
}

/// The five chunks' rows of wav2vec2's output, in order: (5·10,) u32 on `device`.
fn chunk_rows(first_row: usize, device: &Device) -> Result<Tensor> {
    let rows: Vec<u32> =
        (0..T).flat_map(|j| (0..CHUNK_ROWS).map(move |r| (first_row + ROWS_PER_FRAME * j + r) as u32)).collect();
    Ok(Tensor::new(rows.as_slice(), device)?)
}

/// See the module documentation.
pub struct Stsa {
    config: StsaConfig,
    models: Arc<Models>,
    /// The first wav2vec2 row of the window's chunks, and the rows of all five (on the device).
    first_row: usize,
    chunk_rows: Tensor,
    bank: ReferenceBank,
    references: Option<CachedReferences>,
    poses: BTreeMap<u64, Pose>,
    fuser: HeatmapFuser<Tensor>,
    stats: RunningStats,
    /// Stage times so far, when profiling.
    profile: Option<StageTimes>,
}

impl Stsa {
    /// Loads the networks, or shares those another stream of the process already loaded: an error names
    /// a missing or wrong weights file and where to get it.
    pub fn new(config: StsaConfig) -> Result<Self> {
        if !config.history.is_multiple_of(20 * MS) {
            return Err(Error::InvalidArgument(format!(
                "stsa history {} ms: must be a multiple of 20 ms (one wav2vec2 row)",
                config.history / MS
            )));
        }
        let models = Models::shared(&config.weights, config.device, config.precision)?;
        let first_row = (config.history / (ROW_STRIDE as u64 * NS_PER_SAMPLE)) as usize;
        Ok(Stsa {
            chunk_rows: chunk_rows(first_row, &models.device)?,
            first_row,
            bank: ReferenceBank::new(config.bank),
            config,
            models,
            references: None,
            poses: BTreeMap::new(),
            fuser: HeatmapFuser::new(T, 1.0),
            stats: RunningStats::default(),
            profile: None,
        })
    }

    /// The networks this stream runs (shared with the process's other streams on the same device).
    pub fn models(&self) -> &Arc<Models> {
        &self.models
    }

    /// Times each stage of the frames rendered from now on ([`Stsa::stage_times`]). Profiling makes
    /// the device finish each stage before the next starts, so frames take longer.
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(StageTimes::default);
    }

    /// The stage times of the frames rendered since profiling started.
    pub fn stage_times(&self) -> Option<StageTimes> {
        self.profile
    }

    /// A tensor of f32 values on the networks' device, in their dtype.
    fn input(&self, values: Vec<f32>, shape: impl Into<candle_core::Shape>) -> Result<Tensor> {
        Ok(Tensor::from_vec(values, shape, &self.models.device)?.to_dtype(self.models.dtype)?)
    }

    /// Re-encodes the references when the bank's changed: once per fixed set, and while enrolling each
    /// time the number of candidates doubles.
    fn refresh_references(&mut self) -> Result<()> {
        // Borrowed, not copied: this runs every frame, and usually finds the encodings current.
        let (key, refs): ((u64, u32), Vec<&Reference>) = match (self.bank.references(), self.bank.provisional()) {
            (Some(refs), _) => ((self.bank.generation(), u32::MAX), refs.iter().collect()),
            (None, Some((n, picks))) => ((self.bank.generation(), n.ilog2()), picks),
            (None, None) => {
                self.references = None;
                return Ok(());
            }
        };
        if self.references.as_ref().is_some_and(|r| r.key == key) {
            return Ok(());
        }
        let _span = tracing::debug_span!("stsa_references", generation = key.0).entered();
        let n = refs.len();
        let mut heatmaps = Vec::with_capacity(n * PLANE);
        let mut images = Vec::with_capacity(n * 3 * PLANE);
        for r in &refs {
            heatmaps.extend_from_slice(&r.heatmap);
            images.extend(bgr_planes(&r.crop));
        }
        // As the original's inference: every reference image is paired with the most open reference's
        // heatmap, repeated over the three channels (SPEC.md 1.5, the stale-variable quirk).
        let most_open = refs[n - 1].heatmap.clone();
        let tokens = self.models.generator.reference_tokens(&self.input(heatmaps, (1, n, 1, CANVAS, CANVAS))?)?;
        let images = self.input(images, (1, n, 3, CANVAS, CANVAS))?;
        let ref_heatmaps =
            self.input(most_open, (1, 1, 1, CANVAS, CANVAS))?.broadcast_as((1, n, 3, CANVAS, CANVAS))?.contiguous()?;
        let renderer = self.models.renderer.references(&images, &ref_heatmaps)?;
        self.references = Some(CachedReferences { key, tokens, renderer });
        Ok(())
    }

    /// The job's audio normalised with the running statistics of the stream (which it updates), appended
    /// to `out`.
    fn normalise_into(&mut self, job: &RenderJob<'_>, out: &mut Vec<f32>) {
        let start = job.frame.pts as i64 - self.window().before as i64;
        let (mean, inv) = self.stats.update(start, job.audio);
        out.extend(job.audio.iter().map(|&x| ((x as f64 - mean) * inv) as f32));
    }

    /// wav2vec2 over the window's audio (1, samples), cut into the window's five chunks: (5, 768, 10).
    fn chunks(&self, audio: &Tensor) -> Result<Tensor> {
        let features = self.models.wav2vec2.forward(audio)?;
        let rows = features.dim(1)?;
        let need = self.first_row + ROWS_PER_FRAME * (T - 1) + CHUNK_ROWS;
        if rows < need {
            return Err(Error::Render { renderer: "stsa", reason: format!("{rows} wav2vec2 rows, {need} needed") });
        }
        let picked = features.index_select(&self.chunk_rows, 1)?;
        Ok(picked.reshape((T, CHUNK_ROWS, features.dim(2)?))?.transpose(1, 2)?.contiguous()?)
    }

    /// The generated face (1, 3, 128, 128: BGR planes in 0..1, a sigmoid's output) as RGB bytes,
    /// truncated as the original's `uint8(output * 255)`. The bytes are made on the device, so the
    /// read-back is 48 KiB; they come back as BGR planes and are interleaved here.
    fn face_bytes(&self, face: &Tensor) -> Result<Vec<u8>> {
        let planes = (face.to_dtype(DType::F32)? * 255.0)?.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
        let mut rgb = vec![0u8; 3 * PLANE];
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = planes[(2 - c) * PLANE + i];
            }
        }
        Ok(rgb)
    }
}

/// An RGB crop (128x128x3) as the networks' BGR planes in 0..1.
fn bgr_planes(rgb: &[u8]) -> impl Iterator<Item = f32> + '_ {
    [2usize, 1, 0].into_iter().flat_map(move |c| rgb.chunks_exact(3).map(move |p| p[c] as f32 / 255.0))
}

/// The pose heatmap of a face in a `width`x`height` frame (the pose-76 sketch of its box).
fn pose_heatmap(face: &Face, width: usize, height: usize) -> Vec<f32> {
    let fb = FaceBox::around(&face.landmarks, width, height);
    let normalised: Vec<[f32; 2]> = face.landmarks.iter().map(|&p| fb.normalise(p, width, height)).collect();
    heatmap::heatmap(&sketch::draw(|id| normalised.get(id as usize).copied(), &CONNECTIONS_POSE))
}

/// The window's faces: the context slots, where a frame is absent or has no face, replaced by the
/// nearest one that has (the centre always has); with whether each is the frame itself.
fn window_faces<'a>(job: &'a RenderJob<'a>, centre: &'a Face) -> [(u64, &'a Face, bool); T] {
    let at = |i: usize| -> Option<(u64, &'a Face)> {
        if i == HALF {
            return Some((job.frame.pts, centre));
        }
        let n = job.context.get(i)?.as_ref()?;
        Some((n.pts, n.face.as_ref()?))
    };
    std::array::from_fn(|i| match at(i) {
        Some((pts, face)) => (pts, face, true),
        None => {
            // Towards the centre: the nearest present slot on this side, else the centre.
            let nearest = if i < HALF { (i + 1..=HALF).find_map(at) } else { (HALF..i).rev().find_map(at) };
            let (pts, face) = nearest.unwrap_or((job.frame.pts, centre));
            (pts, face, false)
        }
    })
}

impl Renderer for Stsa {
    fn name(&self) -> &'static str {
        "stsa"
    }

    fn window(&self) -> AudioWindow {
        self.config.window()
    }

    fn needs_face(&self) -> bool {
        true
    }

    fn frame_context(&self) -> FrameContext {
        FrameContext { before: HALF, after: HALF }
    }

    fn render(&mut self, job: &RenderJob<'_>) -> Result<Rendered> {
        let _span = tracing::debug_span!("stsa_frame", pts = job.frame.pts).entered();
        let models = self.models.clone();
        let mut laps = Laps::new(self.profile.is_some(), &models.device);
        let face = job.face.ok_or(Error::Render { renderer: "stsa", reason: "no face".into() })?;
        let (w, h) = (job.frame.width() as usize, job.frame.height() as usize);
        self.bank.offer(job.frame.pts, lip_openness(&face.landmarks, w, h), appearance(job.frame, face), || {
            snapshot(job.frame, face)
        });
        self.refresh_references()?;
        if self.references.is_none() {
            return Ok(Rendered::Unchanged);
        }
        let slots = window_faces(job, face);
        self.poses.retain(|&pts, _| pts >= slots[0].0);
        // One upload: the normalised audio window, the face crop's BGR planes, the pose heatmaps of the
        // window frames not seen before.
        let fb = FaceBox::around(&face.landmarks, w, h);
        let mut new_poses: Vec<(u64, &Face)> = Vec::new();
        for &(pts, f, _) in &slots {
            if !self.poses.contains_key(&pts) && !new_poses.iter().any(|&(p, _)| p == pts) {
                new_poses.push((pts, f));
            }
        }
        let samples = job.audio.len();
        let mut host = Vec::with_capacity(samples + (3 + new_poses.len()) * PLANE);
        self.normalise_into(job, &mut host);
        host.extend(bgr_planes(&face_crop(job.frame, &fb)));
        for &(_, f) in &new_poses {
            host.extend(pose_heatmap(f, w, h));
        }
        let upload = self.input(host, samples + (3 + new_poses.len()) * PLANE)?;
        let audio = upload.narrow(0, 0, samples)?.reshape((1, samples))?;
        let source = upload.narrow(0, samples, 3 * PLANE)?.reshape((1, 3, CANVAS, CANVAS))?;
        if !new_poses.is_empty() {
            let maps = upload.narrow(0, samples + 3 * PLANE, new_poses.len() * PLANE)?;
            let maps = maps.reshape((new_poses.len(), 1, CANVAS, CANVAS))?;
            let embeddings = models.generator.embed_pose(&maps)?;
            for (i, &(pts, _)) in new_poses.iter().enumerate() {
                let pose = Pose { heatmap: maps.narrow(0, i, 1)?, embedding: embeddings.narrow(0, i, 1)? };
                self.poses.insert(pts, pose);
            }
        }
        laps.lap(|t| &mut t.prepare)?;
        let chunks = self.chunks(&audio)?;
        laps.lap(|t| &mut t.wav2vec2)?;
        // The window's heatmaps, fused with the earlier windows' predictions for the frame.
        let decode = if self.config.fuse { HALF..T } else { HALF..HALF + 1 };
        let pose = |i: usize| &self.poses[&slots[i].0];
        let embeddings = Tensor::cat(&(0..T).map(|i| &pose(i).embedding).collect::<Vec<_>>(), 0)?;
        let maps = Tensor::cat(&decode.clone().map(|i| &pose(i).heatmap).collect::<Vec<_>>(), 0)?;
        let refs = self.references.as_ref().expect("checked above");
        let audio_emb = models.generator.embed_audio(&chunks)?;
        let predicted = models.generator.heatmaps(&refs.tokens, &audio_emb, &embeddings, &maps, decode.clone())?;
        let predicted = predicted.to_dtype(DType::F32)?;
        for (row, j) in decode.enumerate() {
            let (pts, _, real) = slots[j];
            if real {
                self.fuser.add(pts as i64, (j - HALF) as i64, predicted.narrow(0, row, 1)?, face.presence.max(0.05));
            }
        }
        // This window's own prediction for the frame was just added, so the fuser has one.
        let driving = self
            .fuser
            .take(job.frame.pts as i64)?
            .ok_or(Error::Render { renderer: "stsa", reason: "no heatmap predicted for the frame".into() })?;
        let driving = driving.to_dtype(models.dtype)?.broadcast_as((1, 3, CANVAS, CANVAS))?.contiguous()?;
        laps.lap(|t| &mut t.generator)?;
        let refs = self.references.as_ref().expect("checked above");
        let out = models.renderer.render(&refs.renderer, &source, &driving, &chunks.narrow(0, HALF, 1)?)?;
        let rgb = self.face_bytes(&out)?;
        let patch = face_patch(job.frame, &rgb, &fb, &face.landmarks);
        laps.lap(|t| &mut t.renderer)?;
        if let Some(p) = &mut self.profile {
            *p += laps.times;
        }
        Ok(Rendered::Patch(patch))
    }

    fn reset(&mut self) {
        self.bank.reset();
        self.references = None;
        self.poses.clear();
        self.fuser.reset();
        self.stats = RunningStats::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_statistics_count_each_sample_once() {
        let mut s = RunningStats::default();
        // Two overlapping windows of a ramp: the overlap is not counted twice.
        let ramp: Vec<f32> = (0..200).map(|i| i as f32).collect();
        s.update(0, &ramp[..100]);
        let (mean, inv) = s.update(50 * NS_PER_SAMPLE as i64, &ramp[50..]);
        assert_eq!(s.n, 200.0);
        assert!((mean - 99.5).abs() < 1e-9);
        let var: f64 = (0..200).map(|i| (i as f64 - 99.5).powi(2)).sum::<f64>() / 200.0;
        assert!((inv - 1.0 / (var + 1e-7).sqrt()).abs() < 1e-9);
        // A window that starts before the stream: its leading part is not counted.
        let mut s = RunningStats::default();
        s.update(-10 * NS_PER_SAMPLE as i64, &[0.0; 20]);
        assert_eq!(s.n, 10.0);
    }

    /// When the window is the whole clip (a frame whose window starts at 0 and ends with the audio), the
    /// running normalisation is the original's whole-clip one, so the five chunks must be exactly the
    /// original's rows `[2j - 4, 2j + 6)` of the whole clip's features for frames j = k-2..k+2.
    #[test]
    fn chunks_are_the_originals_rows_when_the_window_is_the_whole_clip() {
        use crate::frame::VideoFrame;
        use crate::stsa::wav2vec2::normalise;
        let mut config = StsaConfig::new(WeightSource::Detw);
        config.history = 40 * MS;
        config.lookahead = 195 * MS;
        let mut stsa = Stsa::new(config).unwrap();
        let window = stsa.window();
        let k = 5u64; // pts 200 ms = window.before: the window starts at 0
        assert_eq!(window.before, k * 40 * MS);
        let n = window.samples();
        let tau = std::f32::consts::TAU;
        let audio: Vec<f32> = (0..n)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                0.3 * (tau * 220.0 * t).sin() + 0.1 * (tau * 1370.0 * t).sin() * (tau * 3.0 * t).cos()
            })
            .collect();
        let frame = VideoFrame::from_vec(crate::frame::PixelFormat::Rgba, 2, 2, vec![0; 16], k * 40 * MS).unwrap();
        let job = RenderJob { frame: &frame, audio: &audio, audio_missing: 0, face: None, context: &[] };
        let mut normalised = Vec::new();
        stsa.normalise_into(&job, &mut normalised);
        let chunks = stsa.chunks(&Tensor::from_vec(normalised, (1, n), &Device::Cpu).unwrap()).unwrap();
        let input = Tensor::from_vec(normalise(&audio), (1, n), &Device::Cpu).unwrap();
        let whole = stsa.models.wav2vec2.forward(&input).unwrap().squeeze(0).unwrap();
        for (o, j) in (k as usize - HALF..=k as usize + HALF).enumerate() {
            let want = whole.narrow(0, 2 * j - 4, CHUNK_ROWS).unwrap().t().unwrap();
            let got = chunks.get(o).unwrap();
            let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-5, "chunk of frame {j}: max |diff| {d}");
        }
    }

    #[test]
    fn bgr_planes_reorder_and_scale() {
        let rgb = [255u8, 0, 51].repeat(CANVAS * CANVAS);
        let planes: Vec<f32> = bgr_planes(&rgb).collect();
        let plane = CANVAS * CANVAS;
        assert_eq!((planes[0], planes[plane], planes[2 * plane]), (0.2, 0.0, 1.0));
    }
}
