//! Where a benchmark ran.

use serde::Serialize;

/// The machine a benchmark ran on, read from the operating system.
#[derive(Clone, Debug, Serialize)]
pub struct MachineDescription {
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// The CPU model, from `/proc/cpuinfo` when available.
    pub cpu_model: String,
    /// Total memory in MiB, from `/proc/meminfo` when available.
    pub memory_mib: u64,
    /// The kernel release, from `/proc/sys/kernel/osrelease` when available.
    pub kernel: String,
}

impl MachineDescription {
    /// Read the description; unknown fields say "unknown".
    pub fn read() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|count| count.get())
            .unwrap_or(1);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split(':').nth(1))
                    .map(|model| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|line| line.starts_with("MemTotal:"))
                    .and_then(|line| line.split_whitespace().nth(1))
                    .and_then(|kib| kib.parse::<u64>().ok())
            })
            .map(|kib| kib / 1024)
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Self {
            cpus,
            cpu_model,
            memory_mib,
            kernel,
        }
    }
}

impl std::fmt::Display for MachineDescription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} CPUs ({}), {} MiB, Linux {}",
            self.cpus, self.cpu_model, self.memory_mib, self.kernel
        )
    }
}
