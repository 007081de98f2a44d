//! The `lipsync` command line tool (feature `gst`): `dub` (files), `live` (camera, microphone or RTP in;
//! virtual camera, file or window out), `landmarks`, `measure`, `weights`, `devices` and `doctor`. `dub` and
//! `live` run the same engine as the element.

/// Prints a line to standard output, as `println!` does, except that a reader that has gone away (`lipsync
/// weights inspect x.pth | head -1`) ends the command quietly instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))
    };
}

mod devices;
mod doctor;
mod dub;
mod landmarks;
mod live;
mod measure;
mod weights;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::engine::StatsSnapshot;
use crate::render::{RendererKind, RendererOptions};
use crate::stsa::models::{ComputeDevice, Precision};
use crate::visemes::PhonemeFeed;

#[derive(Parser, Debug)]
#[command(name = "lipsync", version, about = "Real-time streaming lip-sync", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lip-sync a face (photo or video) to an audio file and write an MP4 (H.264 + AAC).
    ///
    /// The output is as long as the audio, at 25 fps: a photo becomes a video, a face video shorter than
    /// the audio plays forward and backward as often as needed (`--fit` for loop, cut or pad).
    Dub(dub::DubArgs),
    /// Lip-sync a live camera to a live voice (microphone or RTP) at a fixed latency.
    Live(live::LiveArgs),
    /// Find the face and its 468 landmarks in an image (MediaPipe BlazeFace + FaceMesh).
    Landmarks(landmarks::LandmarksArgs),
    /// Measure lip sync: the offset and correlation between a video's mouth opening and its speech.
    Measure(measure::MeasureArgs),
    /// Inspect STSA / wav2vec2 checkpoints, convert them to safetensors.
    Weights(weights::WeightsArgs),
    /// List audio inputs and cameras.
    Devices,
    /// Check what live use needs (GStreamer elements, the virtual camera, the face models, the audio
    /// server, CUDA) and say how to fix what is missing.
    Doctor,
}

/// How the mouth is re-rendered: `--renderer` and what the renderer needs.
#[derive(Args, Debug)]
pub struct RendererArgs {
    /// How the mouth is re-rendered.
    #[arg(long, value_enum, default_value_t = RendererKind::Classic)]
    renderer: RendererKind,
    /// The folder with STSA's weights (heatmap_weight.pth, face_weight.pth, wav2vec2-base-960h's
    /// pytorch_model.bin; see models/README.md), for --renderer stsa. `detw`: deterministic test weights
    /// (the networks run but draw noise).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Where STSA runs: cpu, cuda or cuda:N.
    #[arg(long, default_value_t = ComputeDevice::Cpu)]
    device: ComputeDevice,
    /// STSA's precision: f32 (exact), f16 or bf16 (half the memory; faster on a GPU).
    #[arg(long, default_value_t = Precision::F32)]
    precision: Precision,
}

impl RendererArgs {
    /// STSA on the CPU: seconds per frame, so never live.
    pub fn is_stsa_on_cpu(&self) -> bool {
        self.renderer == RendererKind::Stsa && self.device == ComputeDevice::Cpu
    }

    /// Builds the renderer (STSA loads its networks here), the classic one taking its visemes from
    /// `phonemes` where it has them and drawing blinks on a `still_face` (a photo).
    pub fn create(
        &self,
        phonemes: Option<PhonemeFeed>,
        still_face: bool,
    ) -> crate::Result<Box<dyn crate::render::Renderer>> {
        let options = RendererOptions {
            weights: self.weights.clone(),
            device: self.device,
            precision: self.precision,
            phonemes,
            still_face,
        };
        self.renderer.create(&options)
    }
}

/// Face tracking options shared by `dub` and `live`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrackingArgs {
    /// Track the face on every frame (always on for renderers that need it); frames without a face pass
    /// through untouched and are counted.
    #[arg(long)]
    track_faces: bool,
    /// The mediapipe 0.10.21 wheel or a folder with its face .tflite files (default: $LIPSYNC_MEDIAPIPE, else
    /// ~/.cache/lipsync/mediapipe-0.10.21-...whl).
    #[arg(long, value_name = "PATH")]
    face_models: Option<PathBuf>,
}

impl TrackingArgs {
    /// The engine's tracking configuration: `None` leaves it to the renderer.
    fn config(&self) -> Option<crate::engine::TrackingConfig> {
        let models = self.face_models.as_deref().map_or_else(
            crate::face::models::ModelSource::default_location,
            crate::face::models::ModelSource::from_path,
        );
        (self.track_faces || self.face_models.is_some())
            .then(|| crate::engine::TrackingConfig { models, ..Default::default() })
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The closing summary both commands print.
fn print_summary(s: &StatsSnapshot, elapsed: std::time::Duration, output: Option<&PathBuf>) {
    let fps = s.frames_in as f64 / elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "{} frames in {:.1} s ({fps:.1} fps): {} rendered, {} fallback ({} late, {} without audio){}",
        s.frames_in,
        elapsed.as_secs_f64(),
        s.frames_rendered,
        s.frames_fallback,
        s.frames_late,
        s.frames_no_audio,
        if s.frames_no_face > 0 { format!(", {} without a face (untouched)", s.frames_no_face) } else { String::new() }
    );
    eprintln!(
        "render time p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; audio underruns {}, overruns {}",
        ms(s.render_p50),
        ms(s.render_p90),
        ms(s.render_p99),
        ms(s.render_max),
        s.audio_underruns,
        s.audio_overruns
    );
    if let Some(peak) = peak_memory() {
        eprintln!("peak memory {:.0} MB", peak as f64 / 1e6);
    }
    if let Some(p) = output {
        eprintln!("wrote {}", p.display());
    }
}

/// A flag SIGINT (Ctrl-C) and SIGTERM set, for a command that stops cleanly on them; with
/// `second_exits`, a second signal ends the process at once.
fn stop_signals(second_exits: bool) -> crate::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let exit_on_second = if second_exits {
            signal_hook::flag::register_conditional_shutdown(signal, 1, stop.clone()).map(|_| ())
        } else {
            Ok(())
        };
        exit_on_second
            .and_then(|()| signal_hook::flag::register(signal, stop.clone()).map(|_| ()))
            .map_err(|e| crate::Error::InvalidArgument(format!("cannot handle signal {signal}: {e}")))?;
    }
    Ok(stop)
}

/// The process's peak resident memory in bytes (Linux's `VmHWM`; `None` elsewhere).
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kb: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

/// Runs the tool; errors are printed with what to do.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    }
    let result = match cli.command {
        Command::Dub(args) => dub::run(&args),
        Command::Live(args) => live::run(&args),
        Command::Landmarks(args) => landmarks::run(&args),
        Command::Measure(args) => measure::run(&args),
        Command::Weights(args) => weights::run(&args),
        Command::Devices => devices::run(),
        Command::Doctor => doctor::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes one line of `say!`: a closed pipe exits with success (the reader has what it wanted), any other
/// failure to write exits with an error.
pub(crate) fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}
