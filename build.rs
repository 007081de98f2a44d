//! With the `cuda` feature, compiles the crate's own CUDA kernels (`src/stsa/unfold.cu`) to PTX with
//! nvcc, as candle's kernels are: `$NVCC`, else `$CUDA_HOME/bin/nvcc`, else `nvcc` on the PATH, for
//! the virtual architecture `compute_$CUDA_COMPUTE_CAP` (default 75; the driver compiles the PTX for the
//! GPU it runs on, any of that capability or newer).

use std::path::PathBuf;
use std::process::Command;

const KERNELS: &str = "src/stsa/unfold.cu";

fn main() {
    println!("cargo::rerun-if-changed={KERNELS}");
    for var in ["NVCC", "CUDA_HOME", "CUDA_COMPUTE_CAP"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let nvcc = std::env::var_os("NVCC")
        .map(PathBuf::from)
        .or_else(|| {
            let home = PathBuf::from(std::env::var_os("CUDA_HOME")?).join("bin/nvcc");
            home.exists().then_some(home)
        })
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "75".into());
    let cap = cap.trim().replace('.', "");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("unfold.ptx");
    let status =
        Command::new(&nvcc).args(["--ptx", "-O3", &format!("-arch=compute_{cap}"), KERNELS, "-o"]).arg(&out).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{} failed ({s}) compiling {KERNELS}", nvcc.display()),
        Err(e) => panic!(
            "the `cuda` feature needs CUDA's nvcc ({}: {e}); set NVCC or CUDA_HOME, or put it on the PATH",
            nvcc.display()
        ),
    }
}
