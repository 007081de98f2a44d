//! Measuring how STSA runs on its device: the memory in use, and the device operations a frame asks
//! for when the process runs on `tools/cuda-counter` (a CUDA device of host memory that counts kernel
//! launches, copies and synchronisations instead of running them).

use candle_core::Device;

use crate::error::Result;

/// The counters of `tools/cuda-counter` (its `struct cuda_counts`, field for field).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceOps {
    /// Kernels launched.
    pub launches: u64,
    /// cuBLAS matrix products.
    pub gemms: u64,
    /// cuRAND generations.
    pub randoms: u64,
    /// Host-to-device copies and their bytes.
    pub htod: u64,
    pub htod_bytes: u64,
    /// Device-to-host copies and their bytes: each waits for the stream's work.
    pub dtoh: u64,
    pub dtoh_bytes: u64,
    /// Device-to-device copies and memsets.
    pub dtod: u64,
    pub memsets: u64,
    /// Explicit synchronisations (stream or context).
    pub syncs: u64,
    pub allocs: u64,
    pub frees: u64,
    /// Device memory allocated now, and at most so far.
    pub bytes_in_use: u64,
    pub peak_bytes: u64,
}

/// `1371 device operations (1085 kernels, 282 cuBLAS calls, 3 device copies, 1 memsets), 507 uploads
/// (390 KiB), 1 read-backs (48 KiB), 0 syncs`.
impl std::fmt::Display for DeviceOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} device operations ({} kernels, {} cuBLAS calls, {} device copies, {} memsets), {} uploads ({} KiB), \
             {} read-backs ({} KiB), {} syncs",
            self.operations(),
            self.launches,
            self.gemms,
            self.dtod,
            self.memsets,
            self.htod,
            self.htod_bytes / 1024,
            self.dtoh,
            self.dtoh_bytes / 1024,
            self.syncs
        )
    }
}

#[cfg(target_os = "linux")]
mod counter {
    use std::ffi::{c_char, c_void};

    unsafe extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }

    /// A function of the preloaded counter, if it is there (glibc's `RTLD_DEFAULT` is the null handle).
    pub fn symbol(name: &std::ffi::CStr) -> Option<*mut c_void> {
        let f = unsafe { dlsym(std::ptr::null_mut(), name.as_ptr()) };
        (!f.is_null()).then_some(f)
    }
}

impl DeviceOps {
    /// The counters now; `None` unless the process runs on `tools/cuda-counter` (`LD_PRELOAD`).
    pub fn read() -> Option<DeviceOps> {
        #[cfg(target_os = "linux")]
        {
            let f = counter::symbol(c"cuda_counter_read")?;
            let read: unsafe extern "C" fn(*mut DeviceOps) = unsafe { std::mem::transmute(f) };
            let mut ops = DeviceOps::default();
            unsafe { read(&mut ops) };
            Some(ops)
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// What happened between `before` and `self`; memory as it is now.
    pub fn since(&self, before: &DeviceOps) -> DeviceOps {
        DeviceOps {
            launches: self.launches - before.launches,
            gemms: self.gemms - before.gemms,
            randoms: self.randoms - before.randoms,
            htod: self.htod - before.htod,
            htod_bytes: self.htod_bytes - before.htod_bytes,
            dtoh: self.dtoh - before.dtoh,
            dtoh_bytes: self.dtoh_bytes - before.dtoh_bytes,
            dtod: self.dtod - before.dtod,
            memsets: self.memsets - before.memsets,
            syncs: self.syncs - before.syncs,
            allocs: self.allocs - before.allocs,
            frees: self.frees - before.frees,
            bytes_in_use: self.bytes_in_use,
            peak_bytes: self.peak_bytes,
        }
    }

    /// Work queued on the device: kernels, matrix products, random draws, device-to-device copies and
    /// memsets (host-device copies are counted apart).
    pub fn operations(&self) -> u64 {
        self.launches + self.gemms + self.randoms + self.dtod + self.memsets
    }

    /// Times the host waited for the device: explicit synchronisations and device-to-host copies.
    pub fn waits(&self) -> u64 {
        self.syncs + self.dtoh
    }

    /// Launches so far per kernel name, most launched first (empty without the counter).
    pub fn kernels() -> Vec<(String, u64)> {
        #[cfg(target_os = "linux")]
        {
            let Some(f) = counter::symbol(c"cuda_counter_kernels") else { return Vec::new() };
            type Kernels = unsafe extern "C" fn(*mut *const std::ffi::c_char, *mut u64, usize) -> usize;
            let kernels: Kernels = unsafe { std::mem::transmute(f) };
            let n = unsafe { kernels(std::ptr::null_mut(), std::ptr::null_mut(), 0) };
            let (mut names, mut counts) = (vec![std::ptr::null(); n], vec![0u64; n]);
            let n = unsafe { kernels(names.as_mut_ptr(), counts.as_mut_ptr(), n) }.min(names.len());
            let mut out: Vec<(String, u64)> = (0..n)
                .map(|i| (unsafe { std::ffi::CStr::from_ptr(names[i]) }.to_string_lossy().into_owned(), counts[i]))
                .collect();
            out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            out
        }
        #[cfg(not(target_os = "linux"))]
        Vec::new()
    }
}

/// Memory in use where the networks run: on a CUDA device, all of its memory in use (total − free, every
/// process's); on the CPU, this process's resident set.
pub fn memory_in_use(device: &Device) -> Result<u64> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let (free, total) = d.cuda_stream().context().mem_get_info().map_err(candle_core::Error::wrap)?;
            Ok((total - free) as u64)
        }
        _ => resident_set(),
    }
}

/// This process's resident set in bytes (Linux: `VmRSS` of `/proc/self/status`).
pub fn resident_set() -> Result<u64> {
    let path = "/proc/self/status";
    let status = std::fs::read_to_string(path).map_err(|source| crate::Error::Io { path: path.into(), source })?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .ok_or_else(|| crate::Error::Io { path: path.into(), source: std::io::Error::other("no VmRSS line") })?;
    Ok(kib * 1024)
}

/// Turns a kernel profiler's collection on or off for the work that follows, on a CUDA device:
/// Nsight Compute started with `--profile-from-start off` (the GPU bundle's `run.sh --kernels`)
/// measures only the kernels launched between `kernel_capture(device, true)` and
/// `kernel_capture(device, false)`. With no profiler attached, or on the CPU, it does nothing.
pub fn kernel_capture(device: &Device, on: bool) -> Result<()> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            use candle_core::cuda_backend::cudarc::driver;
            d.cuda_stream().context().bind_to_thread().map_err(candle_core::Error::wrap)?;
            let done = if on { driver::profiler_start() } else { driver::profiler_stop() };
            done.map_err(candle_core::Error::wrap)?;
            Ok(())
        }
        _ => {
            let _ = on;
            Ok(())
        }
    }
}

/// The device's name as its driver gives it (`None` on the CPU).
pub fn device_name(device: &Device) -> Option<String> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => d.cuda_stream().context().name().ok(),
        _ => None,
    }
}
