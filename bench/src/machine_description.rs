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
    /// How an idle CPU waits, when the kernel says: the cpuidle driver and, under the
    /// `haltpoll` driver of a virtual machine, how long an idle virtual CPU polls before it
    /// halts. It moves sequential latencies a great deal: with no polling, every hand-off to a
    /// thread on an idle virtual CPU waits for the hypervisor to wake that CPU (about 15 us per
    /// hand-off here, 0.49 against 0.34 ms for a sequential put; docs/ARCHITECTURE.md,
    /// "Sequential put on a second host").
    pub idle: Option<String>,
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
            idle: idle_description(),
        }
    }
}

/// `cpuidle <driver>`, with `, guest halt poll <n> ns` under `haltpoll`; `None` when the
/// kernel has no cpuidle driver to name.
fn idle_description() -> Option<String> {
    let driver = std::fs::read_to_string("/sys/devices/system/cpu/cpuidle/current_driver").ok()?;
    let driver = driver.trim();
    if driver.is_empty() || driver == "none" {
        return None;
    }
    let poll = std::fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .ok()
        .filter(|_| driver == "haltpoll")
        .map(|nanoseconds| format!(", guest halt poll {} ns", nanoseconds.trim()))
        .unwrap_or_default();
    Some(format!("cpuidle {driver}{poll}"))
}

impl std::fmt::Display for MachineDescription {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} CPUs ({}), {} MiB, Linux {}",
            self.cpus, self.cpu_model, self.memory_mib, self.kernel
        )?;
        match &self.idle {
            Some(idle) => write!(formatter, " ({idle})"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(idle: Option<&str>) -> MachineDescription {
        MachineDescription {
            cpus: 2,
            cpu_model: "Some CPU".to_string(),
            memory_mib: 24_105,
            kernel: "6.18.44".to_string(),
            idle: idle.map(str::to_string),
        }
    }

    #[test]
    fn the_idle_policy_is_named_when_the_kernel_gives_it() {
        assert_eq!(
            machine(Some("cpuidle haltpoll, guest halt poll 0 ns")).to_string(),
            "2 CPUs (Some CPU), 24105 MiB, Linux 6.18.44 (cpuidle haltpoll, guest halt poll 0 ns)"
        );
        assert_eq!(
            machine(None).to_string(),
            "2 CPUs (Some CPU), 24105 MiB, Linux 6.18.44"
        );
    }
}
