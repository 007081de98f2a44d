//! The STSA device check: the three networks against the original's outputs on a device, and the
//! `stsa` renderer's throughput there. The `stsa-check` program (the GPU bundle's, `scripts/gpu-bundle.sh`)
//! runs it; the benchmark and tests use its [`Scene`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::face_renderer::FaceRenderer;
use super::heatmap_generator::{self, HeatmapGenerator};
use super::models::{ComputeDevice, Models, Precision, WeightSource, network_weights};
use super::profile::{kernel_capture, memory_in_use};
use super::wav2vec2::{self, Wav2Vec2};
use crate::error::{Error, Result};
use crate::face::Face;
use crate::face::tracker::roi_from_landmarks;
use crate::frame::{PixelFormat, VideoFrame};
use crate::render::stsa::StageTimes;
use crate::render::{Neighbour, RenderJob, Rendered, Renderer, Stsa, StsaConfig};

/// The fixture files the check reads, in its fixtures folder.
pub const FIXTURES: [&str; 4] = [
    "wav2vec2_base_detw.safetensors",
    "heatmap_generator_detw.safetensors",
    "face_renderer_detw_io.safetensors",
    "astronaut.golden.safetensors",
];

/// Reads a fixture, naming the file when it cannot.
fn load(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device).map_err(|e| Error::Model(format!("fixture {}: {e}", path.display())))
}

/// A tracked face in a 1280x720 frame: the astronaut portrait (512x512, scaled to 720x720 by nearest
/// neighbour) in the middle of a grey frame, with MediaPipe's own 468 landmarks of it.
pub struct Scene {
    pub frame: VideoFrame,
    pub face: Face,
}

impl Scene {
    pub const WIDTH: usize = 1280;
    pub const HEIGHT: usize = 720;
    /// Where the portrait's left edge lies.
    const LEFT: usize = 280;

    /// From `astronaut.golden.safetensors` (its `image_rgb_u8` and `mp_mesh468`).
    pub fn load(golden: &Path) -> Result<Scene> {
        let g = load(golden, &Device::Cpu)?;
        let get = |k: &str| g.get(k).ok_or_else(|| Error::Model(format!("{}: no `{k}`", golden.display())));
        let image = get("image_rgb_u8")?;
        let (side, _, _) = image.dims3()?;
        let rgb = image.flatten_all()?.to_vec1::<u8>()?;
        let (w, h, x0) = (Self::WIDTH, Self::HEIGHT, Self::LEFT);
        let mut canvas = vec![128u8; w * h * 3];
        for y in 0..h {
            for x in 0..h {
                let s = ((y * side / h) * side + x * side / h) * 3;
                let d = (y * w + x0 + x) * 3;
                canvas[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
            }
        }
        let frame = VideoFrame::from_vec(PixelFormat::Rgb, w as u32, h as u32, canvas, 0)?;
        // MediaPipe's landmarks are normalised to the portrait: into the frame, normalised and in pixels.
        let mesh = get("mp_mesh468")?.to_vec2::<f32>()?;
        let scale = h as f32;
        let normalised: Vec<[f32; 3]> =
            mesh.iter().map(|p| [(p[0] * scale + x0 as f32) / w as f32, p[1], p[2] * scale / w as f32]).collect();
        let pixels = normalised.iter().map(|p| [p[0] * w as f32, p[1] * h as f32, p[2] * w as f32]).collect();
        let face = Face::new(pixels, 1.0, 1.0, roi_from_landmarks(&normalised, (w, h)), true);
        Ok(Scene { frame, face })
    }

    /// Frame `k` of a stream of this scene at 25 fps.
    pub fn frame_at(&self, k: u64) -> VideoFrame {
        self.frame.with_pts(k * 40_000_000, Some(40_000_000))
    }
}

/// The check's fixtures: the original networks' inputs and outputs under the deterministic test
/// weights, and the scene's photo with its landmarks ([`FIXTURES`], in one folder).
pub struct Fixtures {
    dir: PathBuf,
}

impl Fixtures {
    /// The folder, once every file the check reads is found in it.
    pub fn open(dir: &Path) -> Result<Fixtures> {
        let missing: Vec<&str> = FIXTURES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
        if !missing.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "fixtures folder {}: missing {} (scripts/gpu-bundle.sh copies them from ../shared/fixtures)",
                dir.display(),
                missing.join(", ")
            )));
        }
        Ok(Fixtures { dir: dir.to_path_buf() })
    }

    fn load(&self, name: &str, device: &Device) -> Result<HashMap<String, Tensor>> {
        load(&self.dir.join(name), device)
    }

    pub fn scene(&self) -> Result<Scene> {
        Scene::load(&self.dir.join(FIXTURES[3]))
    }
}

/// One network's agreement with the original's outputs, on a device in a precision.
#[derive(Clone, Debug)]
pub struct Parity {
    pub network: &'static str,
    pub precision: Precision,
    /// Largest and mean |ours − original| over the compared outputs, and their largest |value|.
    pub max_diff: f32,
    pub mean_diff: f32,
    pub scale: f32,
    /// ‖ours − original‖ / ‖original‖ (root mean squares over every compared value).
    pub relative: f32,
    pub bound: Bound,
    /// The forward pass, with loading its weights.
    pub seconds: f64,
}

/// What a parity check must stay within.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    /// f32: the CPU tests' tolerance on the largest difference.
    MaxDiff(f32),
    /// A half precision: a relative error that a broken network (an overflow, a dtype mix-up: off by
    /// about its own size) exceeds and rounding does not (f16 carries 11 significant bits, bf16 8;
    /// through these networks bf16's rounding leaves a few percent).
    Relative(f32),
}

/// The relative error a half precision's outputs must stay within.
pub const HALF_RELATIVE: f32 = 0.1;

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bound::MaxDiff(t) => write!(f, "max |diff| ≤ {t:.0e}"),
            Bound::Relative(t) => write!(f, "relative ≤ {t}"),
        }
    }
}

impl Parity {
    pub fn passed(&self) -> bool {
        match self.bound {
            Bound::MaxDiff(t) => self.max_diff <= t,
            // NaN compares false.
            Bound::Relative(t) => self.relative <= t && !self.max_diff.is_nan(),
        }
    }

    fn of(
        network: &'static str,
        precision: Precision,
        f32_tolerance: f32,
        pairs: &[(Tensor, &Tensor)],
    ) -> Result<Self> {
        let (mut max_diff, mut sum, mut n, mut scale) = (0f32, 0f64, 0usize, 0f32);
        let (mut diff_squares, mut want_squares) = (0f64, 0f64);
        for (got, want) in pairs {
            let got = got.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let want = want.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if got.len() != want.len() {
                return Err(Error::Render {
                    renderer: "stsa",
                    reason: format!("{network}: {} values where the original has {}", got.len(), want.len()),
                });
            }
            for (g, w) in got.iter().zip(&want) {
                let d = (g - w).abs();
                // NaN compares false: make it the worst.
                max_diff = if d.is_nan() || max_diff.is_nan() { f32::NAN } else { max_diff.max(d) };
                sum += d as f64;
                diff_squares += (d as f64).powi(2);
                want_squares += (*w as f64).powi(2);
                scale = scale.max(w.abs());
            }
            n += got.len();
        }
        let bound =
            if precision == Precision::F32 { Bound::MaxDiff(f32_tolerance) } else { Bound::Relative(HALF_RELATIVE) };
        Ok(Parity {
            network,
            precision,
            max_diff,
            mean_diff: (sum / n.max(1) as f64) as f32,
            scale,
            relative: (diff_squares / want_squares.max(f64::MIN_POSITIVE)).sqrt() as f32,
            bound,
            seconds: 0.0,
        })
    }
}

/// A network's parity check.
pub type ParityCheck = fn(&Fixtures, &Device, Precision) -> Result<Parity>;

/// The three networks' checks, by name.
pub const NETWORKS: [(&str, ParityCheck); 3] =
    [("wav2vec2", wav2vec2), ("heatmap generator", heatmap_generator), ("face renderer", face_renderer)];

/// The deterministic test weights of a network, on `device` in `precision`.
fn test_weights(
    load: impl Fn(VarBuilder) -> Result<()>,
    device: &Device,
    precision: Precision,
) -> Result<VarBuilder<'static>> {
    network_weights(None, None, load, precision.dtype(), device)
}

/// Runs `f`, returning its result and how long it took.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let out = f()?;
    Ok((out, start.elapsed().as_secs_f64()))
}

/// wav2vec2-base on the fixture's 1 s and 2.5 s clips: `last_hidden_state` (f32 within 1e-4).
pub fn wav2vec2(fixtures: &Fixtures, device: &Device, precision: Precision) -> Result<Parity> {
    const CLIPS: [&str; 2] = ["n16000", "n40000"];
    let fx = fixtures.load(FIXTURES[0], device)?;
    let (outputs, seconds) = timed(|| {
        let cfg = wav2vec2::Config::base_960h();
        let model = Wav2Vec2::load(&cfg, test_weights(|vb| Wav2Vec2::load(&cfg, vb).map(drop), device, precision)?)?;
        CLIPS
            .iter()
            .map(|clip| model.forward(&fx[&format!("{clip}.input_values")].to_dtype(precision.dtype())?))
            .collect::<Result<Vec<_>>>()
    })?;
    let pairs: Vec<(Tensor, &Tensor)> =
        outputs.into_iter().zip(CLIPS).map(|(got, clip)| (got, &fx[&format!("{clip}.last_hidden_state")])).collect();
    Ok(Parity { seconds, ..Parity::of("wav2vec2", precision, 1e-4, &pairs)? })
}

/// The heatmap generator on the fixture's window: the content heatmaps and landmarks (f32 within 1e-4).
pub fn heatmap_generator(fixtures: &Fixtures, device: &Device, precision: Precision) -> Result<Parity> {
    let fx = fixtures.load(FIXTURES[1], device)?;
    let (out, seconds) = timed(|| {
        let cfg = heatmap_generator::Config::default();
        let vb = test_weights(|vb| HeatmapGenerator::load(&cfg, vb).map(drop), device, precision)?;
        let model = HeatmapGenerator::load(&cfg, vb)?;
        let input = |k: &str| fx[k].to_dtype(precision.dtype());
        model.forward(&input("T_w2vs")?, &input("T_pose_heatmap")?, &input("Nl_whole_heatmap")?)
    })?;
    let pairs = [
        (out.content_heatmap, &fx["out.predict_content_heatmap"]),
        (out.content_landmark, &fx["out.predict_content_landmark"]),
    ];
    Ok(Parity { seconds, ..Parity::of("heatmap generator", precision, 1e-4, &pairs)? })
}

/// The face renderer on the fixture's frame, references and audio: the generated face (f32 within 1e-3).
pub fn face_renderer(fixtures: &Fixtures, device: &Device, precision: Precision) -> Result<Parity> {
    let fx = fixtures.load(FIXTURES[2], device)?;
    let (face, seconds) = timed(|| {
        let model = FaceRenderer::load(test_weights(|vb| FaceRenderer::load(vb).map(drop), device, precision)?)?;
        let input = |k: &str| fx[k].to_dtype(precision.dtype());
        let refs = model.references(&input("ref_N_frame_img")?, &input("ref_N_frame_heatmap")?)?;
        let frame = input("T_frame_img")?.squeeze(1)?;
        let face = model.render(
            &refs,
            &frame,
            &input("T_driving_heatmap")?.squeeze(1)?,
            &input("T_audio_w2v")?.squeeze(1)?,
        )?;
        Ok(face.unsqueeze(2)?)
    })?;
    Ok(Parity { seconds, ..Parity::of("face renderer", precision, 1e-3, &[(face, &fx["out.generated_face"])])? })
}

/// How a throughput run goes: per stream, `warmup` frames (the first encodes the references, the first
/// five re-encode them while the bank enrols, and the device compiles its kernels), then up to `frames`
/// measured frames, stopping early after `seconds`.
#[derive(Clone, Copy, Debug)]
pub struct ThroughputConfig {
    pub streams: usize,
    pub warmup: usize,
    pub frames: usize,
    pub seconds: f64,
}

/// `streams` concurrent `stsa` streams of the scene, each on its own thread with its own renderer (the
/// networks shared), as fast as they go.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub streams: usize,
    pub precision: Precision,
    /// Frames rendered by all streams in the measured time.
    pub frames: usize,
    pub seconds: f64,
    /// All streams' frames per second.
    pub fps: f64,
    /// Per frame, from the job to the pasted face.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Memory in use while the streams hold their state ([`memory_in_use`]).
    pub memory: u64,
    /// Each stream's faces in order, hashed: every stream renders the same frames, so the same faces.
    pub faces: Vec<Vec<u64>>,
}

impl Throughput {
    /// Frames, over all streams, whose face differs from `reference`'s face for the same frame (the
    /// first stream's of a run, or of another run); frames past the shorter run are not compared.
    pub fn faces_differing_from(&self, reference: &[u64]) -> usize {
        self.faces.iter().map(|faces| faces.iter().zip(reference).filter(|(a, b)| a != b).count()).sum()
    }
}

/// The audio a stream of the scene hears: a voiced buzz whose loudness moves.
fn voice(samples: usize, k: u64) -> Vec<f32> {
    let tau = std::f32::consts::TAU;
    (0..samples)
        .map(|i| {
            let t = (k as f32 * 640.0 + i as f32) / 16_000.0;
            let buzz: f32 = (1..8).map(|h| (tau * 140.0 * h as f32 * t).sin() / h as f32).sum();
            buzz * 0.15 * (1.0 + (tau * 3.0 * t).sin())
        })
        .collect()
}

/// A stream of the scene rendered by `stsa` (the test weights; the references fixed after five frames,
/// as the bank enrols), frame after frame, every window frame with the scene's face.
pub struct SceneStream<'a> {
    scene: &'a Scene,
    pub stsa: Stsa,
    next: u64,
}

impl<'a> SceneStream<'a> {
    pub fn new(scene: &'a Scene, device: ComputeDevice, precision: Precision) -> Result<Self> {
        let mut config = StsaConfig::new(WeightSource::Detw);
        config.device = device;
        config.precision = precision;
        config.bank.enrolment = 0;
        Ok(SceneStream { scene, stsa: Stsa::new(config)?, next: 0 })
    }

    /// Renders the next frame; returns how long it took, from the job to the pasted face, and a hash
    /// of the face (its position and pixels).
    pub fn render_next(&mut self) -> Result<(Duration, u64)> {
        let (scene, k) = (self.scene, self.next);
        self.next += 1;
        let frame = scene.frame_at(k + 2);
        let context: Vec<Option<Neighbour>> = (0..5)
            .map(|j| Some(Neighbour { pts: scene.frame_at(k + j).pts, face: Some(scene.face.clone()) }))
            .collect();
        let audio = voice(self.stsa.window().samples(), k);
        let job =
            RenderJob { frame: &frame, audio: &audio, audio_missing: 0, face: Some(&scene.face), context: &context };
        let start = Instant::now();
        match self.stsa.render(&job)? {
            Rendered::Patch(patch) => {
                let took = start.elapsed();
                let mut hash = std::hash::DefaultHasher::new();
                (patch.x, patch.y, patch.width, patch.height, &patch.rgba).hash(&mut hash);
                Ok((took, hash.finish()))
            }
            Rendered::Unchanged => Err(Error::Render { renderer: "stsa", reason: format!("frame {k} not rendered") }),
        }
    }
}

/// Runs `config.streams` streams at once; see [`Throughput`].
pub fn throughput(
    scene: &Scene,
    device: ComputeDevice,
    precision: Precision,
    config: ThroughputConfig,
) -> Result<Throughput> {
    let n = config.streams;
    // Loaded here, before the streams, which then share them.
    let models = Models::shared(&WeightSource::Detw, device, precision)?;
    // Every worker passes every barrier whatever happens to it, so none waits forever.
    let (start, measured, release) = (Barrier::new(n), Barrier::new(n + 1), Barrier::new(n + 1));
    let began = parking_lot::Mutex::new(None::<Instant>);
    let (runs, memory) = std::thread::scope(|s| -> Result<_> {
        let workers: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| -> Result<(Vec<Duration>, Vec<u64>, Instant)> {
                    let ready = (|| -> Result<SceneStream> {
                        let mut stream = SceneStream::new(scene, device, precision)?;
                        for _ in 0..config.warmup {
                            stream.render_next()?;
                        }
                        Ok(stream)
                    })();
                    start.wait();
                    let t0 = *began.lock().get_or_insert_with(Instant::now);
                    let until = t0 + Duration::from_secs_f64(config.seconds);
                    let result = ready.and_then(|mut stream| {
                        let (mut times, mut faces) = (Vec::with_capacity(config.frames), Vec::new());
                        for _ in 0..config.frames {
                            let (took, face) = stream.render_next()?;
                            times.push(took);
                            faces.push(face);
                            if Instant::now() >= until {
                                break;
                            }
                        }
                        Ok((stream, times, faces, Instant::now()))
                    });
                    measured.wait();
                    release.wait();
                    result.map(|(_, times, faces, end)| (times, faces, end))
                })
            })
            .collect();
        measured.wait();
        let memory = memory_in_use(&models.device);
        release.wait();
        let runs = workers
            .into_iter()
            .map(|w| w.join().map_err(|_| Error::WorkerStopped("a throughput stream panicked".into()))?)
            .collect::<Result<Vec<_>>>()?;
        Ok((runs, memory?))
    })?;
    let t0 = began.lock().expect("every stream started");
    let seconds = runs.iter().map(|(.., end)| end.duration_since(t0).as_secs_f64()).fold(0.0, f64::max).max(1e-9);
    let mut ms: Vec<f64> = runs.iter().flat_map(|(t, ..)| t.iter().map(|d| d.as_secs_f64() * 1e3)).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms.get(((ms.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    Ok(Throughput {
        streams: n,
        precision,
        frames: ms.len(),
        seconds,
        fps: ms.len() as f64 / seconds,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        memory,
        faces: runs.into_iter().map(|(_, faces, _)| faces).collect(),
    })
}

/// One stream with a device synchronisation after each stage: where a frame's time goes. The timed
/// frames' kernels are the ones a kernel profiler captures ([`kernel_capture`]).
pub fn stages(
    scene: &Scene,
    device: ComputeDevice,
    precision: Precision,
    warmup: usize,
    frames: usize,
) -> Result<StageTimes> {
    let mut stream = SceneStream::new(scene, device, precision)?;
    for _ in 0..warmup {
        stream.render_next()?;
    }
    stream.stsa.set_profiling(true);
    // The same context and, on this thread, the same stream as the renderer's.
    let device = device.open()?;
    device.synchronize()?;
    kernel_capture(&device, true)?;
    let rendered = (0..frames).try_for_each(|_| stream.render_next().map(drop));
    device.synchronize()?;
    kernel_capture(&device, false)?;
    rendered?;
    Ok(stream.stsa.stage_times().unwrap_or_default())
}
