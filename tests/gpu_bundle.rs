//! The GPU bundle on a machine without a GPU (`scripts/gpu-bundle.sh` builds it; `scripts/test.sh` runs
//! these after it): `run.sh --device cpu --quick` reproduces the CPU parity figures and times a few
//! frames for 1, 2 and 4 streams, `run.sh --device cuda` stops at once saying what is missing, and the
//! bundle's program gets through its whole CUDA path on tools/cuda-counter.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn bundle() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("gpu-bundle");
    assert!(dir.join("run.sh").is_file(), "no gpu-bundle/run.sh: build it with scripts/gpu-bundle.sh");
    dir
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lipsync-gpu-bundle-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether this machine has an NVIDIA driver (then the no-driver behaviour cannot be seen here).
fn has_driver() -> bool {
    let cache = Command::new("ldconfig").arg("-p").output().map(|o| o.stdout).unwrap_or_default();
    String::from_utf8_lossy(&cache).contains("libcuda.so.1 ")
        || ["/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"]
            .iter()
            .any(|d| Path::new(d).join("libcuda.so.1").exists())
}

#[test]
#[ignore = "needs scripts/gpu-bundle.sh first; scripts/test.sh runs it"]
fn without_a_driver_cuda_stops_at_once_saying_what_is_missing() {
    if has_driver() {
        eprintln!("this machine has an NVIDIA driver: the no-driver case is not observable here");
        return;
    }
    let out = out_dir("cuda");
    let start = Instant::now();
    let run = Command::new(bundle().join("run.sh")).args(["--device", "cuda:0"]).env("OUT", &out).output().unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(stderr.contains("no NVIDIA driver") && stderr.contains("libcuda.so.1"), "{stderr}");
    assert!(stderr.contains("--device cpu"), "says what else to do: {stderr}");
    assert!(!out.join("report.json").exists(), "nothing ran");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
#[ignore = "needs scripts/gpu-bundle.sh first; scripts/test.sh runs it"]
fn on_the_cpu_it_reproduces_the_parity_figures_and_times_a_few_frames() {
    let out = out_dir("cpu");
    let run =
        Command::new(bundle().join("run.sh")).args(["--device", "cpu", "--quick"]).env("OUT", &out).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["complete"], true);
    assert_eq!(report["passed"], true);
    assert!(report["errors"].as_array().unwrap().is_empty(), "{}", report["errors"]);
    // f32 within the CPU tests' tolerances (as the parity tests hold them), f16 measured, bf16 skipped.
    let parity = report["parity"].as_array().unwrap();
    for (network, tolerance) in [("wav2vec2", 1e-4), ("heatmap generator", 1e-4), ("face renderer", 1e-3)] {
        let f32_entry = parity.iter().find(|p| p["network"] == network && p["precision"] == "f32").expect("f32 parity");
        let diff = f32_entry["max_diff"].as_f64().unwrap();
        assert!(f32_entry["relative"].as_f64().unwrap() < 1e-4, "{network}: {f32_entry}");
        assert!(diff > 0.0 && diff <= tolerance, "{network}: {diff}");
        let f16_entry = parity.iter().find(|p| p["network"] == network && p["precision"] == "f16").expect("f16");
        assert!(f16_entry["max_diff"].as_f64().unwrap() > diff, "{network}: f16 rounds more than f32");
    }
    assert_eq!(report["skipped"][0]["precision"], "bf16");
    // Every stream count in both precisions, with memory; the streams share the networks, so four
    // streams do not take four times the memory of one.
    let runs = report["throughput"].as_array().unwrap();
    for precision in ["f32", "f16"] {
        let of = |n: u64| runs.iter().find(|t| t["precision"] == precision && t["streams"] == n).expect("a run");
        for n in [1, 2, 4] {
            assert_eq!(of(n)["frames"].as_u64(), Some(n), "{precision}, {n} streams: one frame each");
            assert!(of(n)["fps"].as_f64().unwrap() > 0.0);
            assert_eq!(of(n)["faces_differing"], 0, "{precision}, {n} streams: the faces of one stream");
        }
        let (one, four) = (of(1)["memory_mib"].as_f64().unwrap(), of(4)["memory_mib"].as_f64().unwrap());
        let networks = report["memory_mib"][format!("networks_{precision}")].as_f64().unwrap();
        assert!(networks > 100.0, "{precision}: the networks take {networks} MiB");
        assert!(four < one + 3.0 * networks, "{precision}: 1 stream {one} MiB, 4 streams {four} MiB");
    }
    assert_eq!(report["stages"].as_array().unwrap().len(), 2);
    assert!(stdout.contains("parity  face renderer      f32"), "results are printed as they come: {stdout}");
    for file in ["report.json", "run.log", "machine.txt"] {
        assert!(out.join(file).is_file(), "{file} in $OUT");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
#[ignore = "needs scripts/gpu-bundle.sh first; scripts/test.sh runs it"]
fn on_a_device_that_counts_the_whole_check_runs_in_every_precision() {
    // tools/cuda-counter stands in for the GPU: every CUDA call of the bundle's program is answered (a
    // kernel candle lacks for a dtype is an error, as on a GPU), nothing is computed. So the program must
    // get through every step in every precision, and its parity must fail.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shell = |script: &str| {
        let out = Command::new("bash").arg("-c").arg(script).current_dir(root).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let counter = shell("tools/cuda-counter/build.sh");
    let runtime = shell("source scripts/cuda-env.sh >/dev/null && echo \"$LIPSYNC_CUDA_RUNTIME\"");
    let out = out_dir("counter");
    let program = out.join("stsa-check");
    let unpacked = Command::new("gzip").arg("-dc").arg(bundle().join("stsa-check.gz")).output().unwrap();
    std::fs::write(&program, unpacked.stdout).unwrap();
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let report = out.join("report.json");
    let run = Command::new(&program)
        .args(["--device", "cuda:0", "--warmup", "6", "--frames", "2", "--seconds", "5", "--profile-frames", "1"])
        .arg("--fixtures")
        .arg(bundle().join("fixtures"))
        .arg("--out")
        .arg(&report)
        .env("LD_PRELOAD", counter)
        .env("LD_LIBRARY_PATH", runtime)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(1), "parity fails when nothing is computed: {stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["complete"], true);
    assert!(report["errors"].as_array().unwrap().is_empty(), "{}", report["errors"]);
    assert!(report["device_name"].as_str().unwrap().starts_with("cuda_counter"));
    assert_eq!(report["parity"].as_array().unwrap().len(), 9, "three networks, three precisions");
    assert_eq!(report["throughput"].as_array().unwrap().len(), 9, "1, 2, 4 streams, three precisions");
    assert_eq!(report["stages"].as_array().unwrap().len(), 3);
    std::fs::remove_dir_all(&out).unwrap();
}
