//! The `stsa` renderer: STSA's networks in a stream. For frame k it takes the T=5 window of frames
//! k-2..k+2 (the engine's frame context: their tracked faces) and the audio around them, and:
//!
//! 1. offers the frame to the reference bank; the five references (provisional while enrolling, then
//!    fixed) are encoded once per reference set (heatmap-generator tokens, face-renderer features);
//! 2. draws each window frame's pose heatmap (cached per frame, with its embedding);
//! 3. runs wav2vec2 over `history` + the window + `lookahead` of audio, normalised with the running
//!    statistics of the stream, and cuts the five chunks (rows 2k-4.. of the original);
//! 4. predicts the lip and jaw heatmaps of frames k..k+2, fuses them with the earlier windows'
//!    predictions for frame k ([`HeatmapFuser`]) and renders the lower face at 128x128;
//! 5. pastes it back through the face-contour mask ([`face_patch`]).
//!
//! The networks see BGR in 0..1 as in the original. Rendering starts with the first frame: until the
//! bank's enrolment ends, its provisional picks among the frames so far serve as the references. Window
//! frames that do not exist (stream start or end) or have no face repeat the nearest one that has, as the
//! original repeats frame 0 before the start; audio before the stream is silence (the original uses
//! zero features there).

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};

use super::classic::{appearance, face_crop, snapshot};
use super::{FrameContext, RenderJob, Rendered, Renderer};
use crate::audio::{AudioWindow, NS_PER_SAMPLE};
use crate::error::{Error, Result};
use crate::face::Face;
use crate::face::landmarks::CONNECTIONS_POSE;
use crate::guidance::composite::face_patch;
use crate::guidance::crop::FaceBox;
use crate::guidance::references::{BankConfig, Reference, ReferenceBank, lip_openness};
use crate::guidance::smoothing::HeatmapFuser;
use crate::guidance::{CANVAS, heatmap, sketch};
use crate::stsa::face_renderer;
use crate::stsa::models::{Models, WeightSource, parse_device, parse_dtype};
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
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// `f32`, `f16` or `bf16`.
    pub precision: String,
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
            device: "cpu".into(),
            precision: "f32".into(),
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

/// The reference set's encodings, and which references they are.
struct CachedReferences {
    key: (u64, u32),
    tokens: Tensor,
    renderer: face_renderer::References,
}

/// A window frame's pose heatmap (1, 1, 128, 128) and its embedding (1, d), cached by pts.
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

/// See the module documentation.
pub struct Stsa {
    config: StsaConfig,
    models: Models,
    bank: ReferenceBank,
    references: Option<CachedReferences>,
    poses: BTreeMap<u64, Pose>,
    fuser: HeatmapFuser,
    stats: RunningStats,
}

impl Stsa {
    /// Loads the networks: an error names a missing or wrong weights file and where to get it.
    pub fn new(config: StsaConfig) -> Result<Self> {
        if !config.history.is_multiple_of(20 * MS) {
            return Err(Error::InvalidArgument(format!(
                "stsa history {} ms: must be a multiple of 20 ms (one wav2vec2 row)",
                config.history / MS
            )));
        }
        let device = parse_device(&config.device)?;
        let dtype = parse_dtype(&config.precision)?;
        let models = Models::load(&config.weights, &device, dtype)?;
        Ok(Stsa {
            bank: ReferenceBank::new(config.bank),
            config,
            models,
            references: None,
            poses: BTreeMap::new(),
            fuser: HeatmapFuser::new(T, 1.0),
            stats: RunningStats::default(),
        })
    }

    fn device(&self) -> &Device {
        &self.models.device
    }

    /// A tensor of f32 values on the networks' device, in their dtype.
    fn input(&self, values: Vec<f32>, shape: impl Into<candle_core::Shape>) -> Result<Tensor> {
        Ok(Tensor::from_vec(values, shape, self.device())?.to_dtype(self.models.dtype)?)
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
        let plane = CANVAS * CANVAS;
        let mut heatmaps = Vec::with_capacity(n * plane);
        let mut images = Vec::with_capacity(n * 3 * plane);
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

    /// The pose heatmap and embedding of a window frame, computed once per frame.
    fn pose(&mut self, pts: u64, face: &Face, width: usize, height: usize) -> Result<&Pose> {
        if !self.poses.contains_key(&pts) {
            let fb = FaceBox::around(&face.landmarks, width, height);
            let normalised: Vec<[f32; 2]> = face.landmarks.iter().map(|&p| fb.normalise(p, width, height)).collect();
            let sketch = sketch::draw(|id| normalised.get(id as usize).copied(), &CONNECTIONS_POSE);
            let heatmap = self.input(heatmap::heatmap(&sketch), (1, 1, CANVAS, CANVAS))?;
            let embedding = self.models.generator.embed_pose(&heatmap)?;
            self.poses.insert(pts, Pose { heatmap, embedding });
        }
        Ok(&self.poses[&pts])
    }

    /// wav2vec2 over the job's audio, cut into the window's five chunks: (5, 768, 10).
    fn chunks(&mut self, job: &RenderJob<'_>) -> Result<Tensor> {
        let start = job.frame.pts as i64 - self.window().before as i64;
        let (mean, inv) = self.stats.update(start, job.audio);
        let normalised: Vec<f32> = job.audio.iter().map(|&x| ((x as f64 - mean) * inv) as f32).collect();
        let len = normalised.len();
        let input = self.input(normalised, (1, len))?;
        let features = self.models.wav2vec2.forward(&input)?;
        let first = (self.config.history / (ROW_STRIDE as u64 * NS_PER_SAMPLE)) as usize;
        let rows = features.dim(1)?;
        let need = first + ROWS_PER_FRAME * (T - 1) + CHUNK_ROWS;
        if rows < need {
            return Err(Error::Render { renderer: "stsa", reason: format!("{rows} wav2vec2 rows, {need} needed") });
        }
        let chunks: Vec<Tensor> = (0..T)
            .map(|j| features.narrow(1, first + ROWS_PER_FRAME * j, CHUNK_ROWS)?.transpose(1, 2))
            .collect::<candle_core::Result<_>>()?;
        Ok(Tensor::cat(&chunks, 0)?.contiguous()?)
    }
}

/// An RGB crop (128x128x3) as the networks' BGR planes in 0..1.
fn bgr_planes(rgb: &[u8]) -> impl Iterator<Item = f32> + '_ {
    [2usize, 1, 0].into_iter().flat_map(move |c| rgb.chunks_exact(3).map(move |p| p[c] as f32 / 255.0))
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
        let face = job.face.ok_or(Error::Render { renderer: "stsa", reason: "no face".into() })?;
        let (w, h) = (job.frame.width() as usize, job.frame.height() as usize);
        self.bank.offer(job.frame.pts, lip_openness(&face.landmarks, w, h), appearance(job.frame, face), || {
            snapshot(job.frame, face)
        });
        self.refresh_references()?;
        if self.references.is_none() {
            return Ok(Rendered::Unchanged);
        }
        // Pose heatmaps of the window.
        let slots = window_faces(job, face);
        self.poses.retain(|&pts, _| pts >= slots[0].0);
        let (mut pose_maps, mut pose_embs) = (Vec::with_capacity(T), Vec::with_capacity(T));
        for &(pts, f, _) in &slots {
            let p = self.pose(pts, f, w, h)?;
            pose_maps.push(p.heatmap.clone());
            pose_embs.push(p.embedding.clone());
        }
        let pose_maps = Tensor::cat(&pose_maps, 0)?;
        let pose_embs = Tensor::cat(&pose_embs, 0)?;
        // Audio chunks and the window's heatmaps.
        let chunks = self.chunks(job)?;
        let refs = self.references.as_ref().expect("checked above");
        let audio_emb = self.models.generator.embed_audio(&chunks)?;
        let decode = if self.config.fuse { HALF..T } else { HALF..HALF + 1 };
        let predicted =
            self.models.generator.heatmaps(&refs.tokens, &audio_emb, &pose_embs, &pose_maps, decode.clone())?;
        let predicted = predicted.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_from(1)?.to_vec2::<f32>()?;
        for (j, heatmap) in decode.zip(&predicted) {
            let (pts, _, real) = slots[j];
            if real {
                self.fuser.add(pts as i64, (j - HALF) as i64, heatmap, face.presence.max(0.05));
            }
        }
        // This window's own prediction for the frame was just added, so the fuser has one.
        let driving = self
            .fuser
            .take(job.frame.pts as i64)
            .ok_or(Error::Render { renderer: "stsa", reason: "no heatmap predicted for the frame".into() })?;
        let driving =
            self.input(driving, (1, 1, CANVAS, CANVAS))?.broadcast_as((1, 3, CANVAS, CANVAS))?.contiguous()?;
        // The face.
        let fb = FaceBox::around(&face.landmarks, w, h);
        let source = self.input(bgr_planes(&face_crop(job.frame, &fb)).collect(), (1, 3, CANVAS, CANVAS))?;
        let audio = chunks.narrow(0, HALF, 1)?;
        let out = self.models.renderer.render(&refs.renderer, &source, &driving, &audio)?;
        let out = out.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        // BGR planes in 0..1 to RGB bytes, truncated as the original's `uint8(output * 255)`.
        let plane = CANVAS * CANVAS;
        let mut rgb = vec![0u8; 3 * plane];
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = (out[(2 - c) * plane + i] * 255.0).clamp(0.0, 255.0) as u8;
            }
        }
        Ok(Rendered::Patch(face_patch(job.frame, &rgb, &fb, &face.landmarks)))
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
        let chunks = stsa.chunks(&job).unwrap();
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
