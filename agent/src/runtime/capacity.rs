//! What this machine offers to workloads: CPU cores and memory.

use orchestrator::Resources;

/// The machine's CPU count and total memory. Reservations are checked against these, as
/// Kubernetes checks requests against a node's allocatable resources.
pub fn detect() -> Resources {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    Resources {
        cpu_millis: cores * 1000,
        memory_bytes: total_memory().unwrap_or(0),
    }
}

fn total_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
