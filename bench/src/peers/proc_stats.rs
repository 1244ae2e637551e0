//! Resident memory and CPU time of a process, from /proc.

use std::time::Duration;

use super::PeerError;

/// Resident set size (`VmRSS` in `/proc/PID/status`) in bytes.
///
/// # Errors
/// [`PeerError::Io`] when the process is gone; [`PeerError::Proc`] for an unexpected format.
pub fn rss_bytes(pid: u32) -> Result<u64, PeerError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .ok_or_else(|| PeerError::Proc(format!("no VmRSS for pid {pid}")))?;
    Ok(kib * 1024)
}

/// CPU time used so far (user + system, fields 14 and 15 of `/proc/PID/stat`).
///
/// # Errors
/// [`PeerError::Io`] when the process is gone; [`PeerError::Proc`] for an unexpected format.
pub fn cpu_time(pid: u32) -> Result<Duration, PeerError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let after_name = stat
        .rfind(')')
        .map(|position| &stat[position + 1..])
        .ok_or_else(|| PeerError::Proc(format!("bad stat for pid {pid}")))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state); utime is field 14, stime field 15.
    let parse = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<u64>().ok())
            .ok_or_else(|| PeerError::Proc(format!("bad stat field for pid {pid}")))
    };
    let ticks = parse(14 - 3)? + parse(15 - 3)?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second() as f64,
    ))
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be asked.
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() -> Result<(), PeerError> {
        let pid = std::process::id();
        assert!(rss_bytes(pid)? > 0);
        let _ = cpu_time(pid)?;
        Ok(())
    }
}
