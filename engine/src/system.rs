//! The machine a rank runs on, and this process's memory, read from /proc.

use cosmicai_shared::run::SystemInfo;

pub fn system_info() -> SystemInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or_else(
            || std::env::consts::ARCH.to_string(),
            |m| m.trim().to_string(),
        );
    let memory_gb = memory_mb() / 1024.0;
    SystemInfo {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gb,
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
    }
}

/// This machine's memory in MB; 0 where /proc is absent.
pub fn memory_mb() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| kb_field(&m, "MemTotal:"))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Peak resident memory of this process (VmHWM) in MB; 0 where /proc is absent.
pub fn peak_rss_mb() -> f64 {
    status_mb("self", "VmHWM:")
}

/// Current resident memory of process `pid` in MB, if it is still there.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_field(&status, "VmRSS:").map(|kb| kb / 1024.0)
}

fn status_mb(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| kb_field(&s, field))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn kb_field(text: &str, field: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: statvfs fills the struct it is given; `c` is a valid C string.
    let stat = unsafe {
        if libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// Why a build without the `cuda` feature refuses device cuda.
pub const BUILT_WITHOUT_CUDA: &str =
    "this cosmicai was built without CUDA (build with --features cuda)";

/// Why this process cannot run CUDA ranks, or `None` when it can: the one place
/// that answers "can this build run CUDA" (built with the `cuda` feature, and an
/// NVIDIA driver that loads; the CUDA backend needs no toolkit, only the driver).
pub fn cuda_unavailable() -> Option<&'static str> {
    if !cfg!(feature = "cuda") {
        return Some(BUILT_WITHOUT_CUDA);
    }
    if !cuda_driver_present() {
        return Some("no NVIDIA driver here (libcuda.so.1 cannot be loaded)");
    }
    None
}

fn cuda_driver_present() -> bool {
    // SAFETY: dlopen with a constant name; the handle is closed again at once.
    unsafe {
        let handle = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY);
        if !handle.is_null() {
            libc::dlclose(handle);
        }
        !handle.is_null()
    }
}

/// Process `pid` as no other process can be: this boot's id and the clock tick
/// the process started at (field 22 of `/proc/PID/stat`). None off Linux.
pub fn process_identity(pid: u32) -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and ')': count after its last ')'.
    let start = stat.rsplit(')').next()?.split_whitespace().nth(19)?;
    Some(format!("{}/{start}", boot.trim()))
}
