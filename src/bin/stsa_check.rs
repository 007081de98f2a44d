//! `stsa-check`: STSA on a device, checked and timed: the three networks against the original's outputs
//! (f32, f16, bf16), then the `stsa` renderer on a 1280x720 stream of the test scene for 1, 2 and 4
//! concurrent streams per precision, the memory in use, and where a frame's time goes. The GPU bundle
//! (`scripts/gpu-bundle.sh`) runs it through its `run.sh`; each result is printed as it comes and
//! `report.json` is rewritten after each, so a run cut short still reports what it measured.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use lipsync::stsa::check::{self, Fixtures, Parity, Throughput, ThroughputConfig};
use lipsync::stsa::models::{ComputeDevice, Models, Precision, WeightSource};
use lipsync::stsa::profile::memory_in_use;
use serde_json::{Value, json};

const USAGE: &str = "usage: stsa-check --fixtures DIR [--device cuda:0|cpu] [--out report.json]
       [--precisions f32,f16,bf16] [--streams 1,2,4] [--warmup N] [--frames N] [--seconds S]
       [--profile-frames N] [--budget S] [--quick]
  --fixtures DIR       the check's fixtures (the bundle's fixtures/)
  --device             where STSA runs (default cuda:0)
  --out FILE           the report (default report.json)
  --precisions LIST    the precisions checked and timed (default f32,f16,bf16)
  --streams LIST       concurrent streams per throughput run (default 1,2,4)
  --warmup N           frames per stream before timing (default 6: the references are fixed after 5)
  --frames N           timed frames per stream, at most (default 100)
  --seconds S          a throughput run stops after S seconds (default 8)
  --profile-frames N   frames timed stage by stage (default 20)
  --budget S           once S seconds have passed, the timing steps left are skipped (default 330, so
                       that the whole run stays within 6 minutes)
  --quick              one warm-up and one timed frame per stream, one profiled frame (a CPU's check)";

struct Options {
    fixtures: PathBuf,
    device: ComputeDevice,
    out: PathBuf,
    precisions: Vec<Precision>,
    streams: Vec<usize>,
    warmup: usize,
    frames: usize,
    seconds: f64,
    profile_frames: usize,
    budget: f64,
}

fn one<T: std::str::FromStr>(value: &str, what: &str) -> Result<T, String> {
    value.trim().parse::<T>().map_err(|_| format!("{what}: cannot read `{value}`"))
}

fn list<T: std::str::FromStr>(value: &str, what: &str) -> Result<Vec<T>, String> {
    value.split(',').map(|v| one(v, what)).collect()
}

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        fixtures: PathBuf::new(),
        device: ComputeDevice::Cuda(0),
        out: "report.json".into(),
        precisions: Precision::ALL.to_vec(),
        streams: vec![1, 2, 4],
        warmup: 6,
        frames: 100,
        seconds: 8.0,
        profile_frames: 20,
        budget: 330.0,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--fixtures" => o.fixtures = value()?.into(),
            "--device" => o.device = value()?.parse().map_err(|e: lipsync::Error| e.to_string())?,
            "--out" => o.out = value()?.into(),
            "--precisions" => o.precisions = list(&value()?, "--precisions")?,
            "--streams" => o.streams = list(&value()?, "--streams")?,
            "--warmup" => o.warmup = one(&value()?, "--warmup")?,
            "--frames" => o.frames = one(&value()?, "--frames")?,
            "--seconds" => o.seconds = one(&value()?, "--seconds")?,
            "--profile-frames" => o.profile_frames = one(&value()?, "--profile-frames")?,
            "--budget" => o.budget = one(&value()?, "--budget")?,
            "--quick" => (o.warmup, o.frames, o.profile_frames) = (1, 1, 1),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if o.fixtures.as_os_str().is_empty() {
        return Err("--fixtures is needed".into());
    }
    if o.streams.contains(&0) || o.frames == 0 {
        return Err("--streams and --frames must be at least 1".into());
    }
    Ok(o)
}

/// The report, written after every result.
struct Report {
    path: PathBuf,
    value: Value,
}

impl Report {
    fn push(&mut self, section: &str, entry: Value) {
        if let Some(list) = self.value[section].as_array_mut() {
            list.push(entry);
        }
        self.write();
    }

    fn error(&mut self, what: &str, e: &dyn std::fmt::Display) {
        eprintln!("stsa-check: {what}: {e}");
        self.push("errors", json!({ "what": what, "error": e.to_string() }));
    }

    fn write(&self) {
        let text = serde_json::to_string_pretty(&self.value).unwrap_or_default();
        if let Err(e) = std::fs::write(&self.path, text + "\n") {
            eprintln!("stsa-check: cannot write {}: {e}", self.path.display());
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn parity_entry(p: &Parity) -> Value {
    json!({
        "network": p.network, "precision": p.precision.name(), "max_diff": p.max_diff, "mean_diff": p.mean_diff,
        "scale": p.scale, "relative": p.relative, "bound": p.bound.to_string(), "passed": p.passed(),
        "seconds": p.seconds,
    })
}

fn throughput_entry(t: &Throughput, models: u64, faces_differing: usize) -> Value {
    json!({
        "precision": t.precision.name(), "streams": t.streams, "frames": t.frames, "seconds": t.seconds,
        "fps": t.fps, "p50_ms": t.p50_ms, "p99_ms": t.p99_ms, "memory_mib": mib(t.memory),
        "models_mib": mib(models), "faces_differing": faces_differing,
    })
}

/// Why a precision cannot run on a device, if it cannot.
fn unsupported(device: ComputeDevice, precision: Precision) -> Option<&'static str> {
    (device == ComputeDevice::Cpu && precision == Precision::Bf16).then_some("candle's CPU backend has no bf16 matmul")
}

fn run(o: &Options) -> Result<bool, lipsync::Error> {
    let began = Instant::now();
    let fixtures = Fixtures::open(&o.fixtures)?;
    let scene = fixtures.scene()?;
    let device = o.device.open()?;
    let baseline = memory_in_use(&device)?;
    let mut report = Report {
        path: o.out.clone(),
        value: json!({
            "device": o.device.to_string(),
            "device_name": lipsync::stsa::profile::device_name(&device),
            "complete": false,
            "settings": {
                "streams": o.streams, "warmup": o.warmup, "frames": o.frames, "seconds": o.seconds,
                "profile_frames": o.profile_frames, "frame": "1280x720, the astronaut photo scaled to 720x720",
            },
            "memory_mib": { "before_models": mib(baseline) },
            "parity": [], "throughput": [], "stages": [], "skipped": [], "errors": [],
        }),
    };
    report.write();
    let name = report.value["device_name"].as_str().unwrap_or("no GPU").to_string();
    println!("stsa-check: {} ({name}), fixtures {}", o.device, o.fixtures.display());
    let mut ok = true;
    for &precision in &o.precisions {
        if let Some(why) = unsupported(o.device, precision) {
            println!("skipped {precision}: {why}");
            report.push("skipped", json!({ "precision": precision.name(), "why": why }));
            continue;
        }
        for (name, f) in check::NETWORKS {
            match f(&fixtures, &device, precision) {
                Ok(p) => {
                    println!(
                        "parity  {:<18} {precision:<4} max |diff| {:.2e} (mean {:.1e}, relative {:.1e}, values up to {:.2}; {}) {} [{:.1} s]",
                        p.network,
                        p.max_diff,
                        p.mean_diff,
                        p.relative,
                        p.scale,
                        p.bound,
                        if p.passed() { "ok" } else { "FAILED" },
                        p.seconds
                    );
                    ok &= p.passed();
                    report.push("parity", parity_entry(&p));
                }
                Err(e) => {
                    ok = false;
                    report.error(&format!("parity {name} {precision}"), &e);
                }
            }
        }
    }
    for &precision in &o.precisions {
        if unsupported(o.device, precision).is_some() {
            continue;
        }
        let started = Instant::now();
        let models = match Models::shared(&WeightSource::Detw, o.device, precision) {
            Ok(m) => m,
            Err(e) => {
                ok = false;
                report.error(&format!("loading the networks in {precision}"), &e);
                continue;
            }
        };
        let with_models = memory_in_use(&device)?;
        let models_bytes = with_models.saturating_sub(baseline);
        println!(
            "memory  {precision:<4} networks {:.0} MiB (loaded in {:.1} s)",
            mib(models_bytes),
            started.elapsed().as_secs_f64()
        );
        report.value["memory_mib"][format!("networks_{precision}")] = json!(mib(models_bytes));
        // The first run's first stream: every stream of every run renders the same frames, so the
        // same faces, unless streams disturb each other.
        let mut reference: Option<Vec<u64>> = None;
        for &streams in &o.streams {
            let left = o.budget - began.elapsed().as_secs_f64();
            if left <= 0.0 {
                println!("skipped {precision}, {streams} streams: the time budget ({} s) is spent", o.budget);
                report.push(
                    "skipped",
                    json!({ "precision": precision.name(), "streams": streams, "why": "time budget" }),
                );
                continue;
            }
            let seconds = o.seconds.min(left);
            let config = ThroughputConfig { streams, warmup: o.warmup, frames: o.frames, seconds };
            match check::throughput(&scene, o.device, precision, config) {
                Ok(t) => {
                    let reference = reference.get_or_insert_with(|| t.faces[0].clone());
                    let differing = t.faces_differing_from(reference);
                    ok &= differing == 0;
                    println!(
                        "stream  {precision:<4} {streams} × 1280x720: {:.1} fps in all ({} frames in {:.1} s), p50 {:.1} ms, p99 {:.1} ms, memory {:.0} MiB ({:.0} MiB a stream), {}",
                        t.fps,
                        t.frames,
                        t.seconds,
                        t.p50_ms,
                        t.p99_ms,
                        mib(t.memory),
                        mib(t.memory.saturating_sub(with_models)) / streams as f64,
                        if differing == 0 {
                            "faces as one stream's".to_string()
                        } else {
                            format!("FAILED: {differing} faces differ from one stream's")
                        }
                    );
                    report.push("throughput", throughput_entry(&t, models_bytes, differing));
                }
                Err(e) => {
                    ok = false;
                    report.error(&format!("throughput {precision} {streams} streams"), &e);
                }
            }
        }
        if began.elapsed().as_secs_f64() >= o.budget {
            println!("skipped {precision} stages: the time budget ({} s) is spent", o.budget);
            report.push("skipped", json!({ "precision": precision.name(), "stages": true, "why": "time budget" }));
            drop(models);
            continue;
        }
        match check::stages(&scene, o.device, precision, o.warmup, o.profile_frames) {
            Ok(s) => {
                let total = s.total().as_secs_f64().max(1e-9);
                let share = |d: std::time::Duration| 100.0 * d.as_secs_f64() / total;
                let per_frame = |d: std::time::Duration| d.as_secs_f64() * 1e3 / s.frames.max(1) as f64;
                println!(
                    "stages  {precision:<4} per frame {:.1} ms: prepare {:.0} %, wav2vec2 {:.0} %, generator {:.0} %, renderer {:.0} % (a sync after each stage)",
                    per_frame(s.total()),
                    share(s.prepare),
                    share(s.wav2vec2),
                    share(s.generator),
                    share(s.renderer)
                );
                report.push(
                    "stages",
                    json!({
                        "precision": precision.name(), "frames": s.frames, "frame_ms": per_frame(s.total()),
                        "prepare_ms": per_frame(s.prepare), "wav2vec2_ms": per_frame(s.wav2vec2),
                        "generator_ms": per_frame(s.generator), "renderer_ms": per_frame(s.renderer),
                    }),
                );
            }
            Err(e) => {
                ok = false;
                report.error(&format!("stages {precision}"), &e);
            }
        }
        drop(models);
    }
    report.value["complete"] = json!(true);
    report.value["passed"] = json!(ok);
    report.write();
    println!("stsa-check: {} ({})", if ok { "passed" } else { "FAILED" }, o.out.display());
    Ok(ok)
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("stsa-check: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("stsa-check: {e}");
            ExitCode::from(2)
        }
    }
}
