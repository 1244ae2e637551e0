//! The JSON and Markdown outputs of `compare_gossip`.

use std::path::{Path, PathBuf};

use ha_bench::MachineDescription;
use serde::Serialize;

use super::cluster::{MEMBER_COUNT, POLL_MS, System, TrialResult};

/// Minimum, median and maximum of the trials that produced a figure.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    /// Trials with a figure.
    pub count: usize,
    /// Milliseconds.
    pub min_ms: f64,
    /// Milliseconds (the lower middle for an even count).
    pub median_ms: f64,
    /// Milliseconds.
    pub max_ms: f64,
}

impl Spread {
    fn of(values: impl Iterator<Item = Option<f64>>) -> Option<Self> {
        let mut values: Vec<f64> = values.flatten().collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(Self {
            count: values.len(),
            min_ms: values[0],
            median_ms: values[(values.len() - 1) / 2],
            max_ms: values[values.len() - 1],
        })
    }

    fn cell(spread: Option<Self>) -> String {
        spread.map_or(String::from("no result"), |spread| {
            format!(
                "{:.0} / **{:.0}** / {:.0}",
                spread.min_ms, spread.median_ms, spread.max_ms
            )
        })
    }
}

/// Every trial of one system and their spreads.
#[derive(Debug, Serialize)]
pub struct SystemFigures {
    /// Table label.
    pub system: String,
    /// Timing profile in words.
    pub timing: String,
    /// Join of the 5th member until all see all.
    pub join: Option<Spread>,
    /// First survivor reports the killed member.
    pub detect_first: Option<Spread>,
    /// Every survivor reports the killed member.
    pub detect_all: Option<Spread>,
    /// Each trial.
    pub trials: Vec<TrialResult>,
}

impl SystemFigures {
    /// Summarise `trials` of `system`.
    pub fn new(system: &System, trials: Vec<TrialResult>) -> Self {
        Self {
            system: system.label(),
            timing: system.timing().to_string(),
            join: Spread::of(trials.iter().map(|trial| trial.join_ms)),
            detect_first: Spread::of(trials.iter().map(|trial| trial.detect_first_ms)),
            detect_all: Spread::of(trials.iter().map(|trial| trial.detect_all_ms)),
            trials,
        }
    }
}

/// A ratio of medians, ha over one Serf row.
#[derive(Debug, Serialize)]
pub struct Ratio {
    /// The Serf row.
    pub versus: String,
    /// ha join median / Serf join median.
    pub join: Option<f64>,
    /// ha detect-all median / Serf detect-all median.
    pub detect_all: Option<f64>,
}

/// The whole output.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Benchmark name.
    pub benchmark: &'static str,
    /// Where it ran.
    pub machine: MachineDescription,
    /// Members per cluster.
    pub members: usize,
    /// Trials per system.
    pub trials: usize,
    /// How views are read.
    pub method: String,
    /// One entry per system.
    pub systems: Vec<SystemFigures>,
    /// ha over each Serf row.
    pub ratios: Vec<Ratio>,
}

fn ratio(ha: Option<Spread>, other: Option<Spread>) -> Option<f64> {
    match (ha, other) {
        (Some(ha), Some(other)) if other.median_ms > 0.0 => Some(ha.median_ms / other.median_ms),
        _ => None,
    }
}

impl Report {
    /// Build the report; the first system is ha, the others Serf.
    pub fn new(machine: MachineDescription, trials: usize, systems: Vec<SystemFigures>) -> Self {
        let ratios = match systems.split_first() {
            Some((ha, others)) => others
                .iter()
                .map(|other| Ratio {
                    versus: other.system.clone(),
                    join: ratio(ha.join, other.join),
                    detect_all: ratio(ha.detect_all, other.detect_all),
                })
                .collect(),
            None => Vec::new(),
        };
        Self {
            benchmark: "compare_gossip",
            machine,
            members: MEMBER_COUNT,
            trials,
            method: format!(
                "a fresh {MEMBER_COUNT}-member cluster per trial on loopback; 4 start and converge, the 5th is spawned (join: until every member sees every other alive, process start included); after 2 s one member is SIGKILLed (detection: until every survivor reports it failed/unreachable); every member's view polled every {POLL_MS} ms (ha: GET /v1/cluster on each bot; Serf: `serf members -format=json` on each agent), so figures are late by up to one poll on both sides"
            ),
            systems,
            ratios,
        }
    }

    /// The Markdown fragment.
    pub fn markdown(&self) -> String {
        let mut text = String::from("## Gossip: ha vs Serf\n\n");
        text.push_str(&format!(
            "{} members on loopback, {} trials each (min / **median** / max, milliseconds). Machine: {}.\n\n",
            self.members, self.trials, self.machine
        ));
        text.push_str(
            "| system | join of a 5th member, all see all | kill -9: first survivor reports | kill -9: all survivors report | failed trials |\n",
        );
        text.push_str("|---|---|---|---|---|\n");
        for system in &self.systems {
            let failed = system
                .trials
                .iter()
                .filter(|trial| trial.error.is_some())
                .count();
            text.push_str(&format!(
                "| {} | {} | {} | {} | {failed} |\n",
                system.system,
                Spread::cell(system.join),
                Spread::cell(system.detect_first),
                Spread::cell(system.detect_all),
            ));
        }
        text.push_str("\nRatios of medians, ha / Serf (below 1: ha is faster):\n\n");
        text.push_str("| versus | join | failure detection (all survivors) |\n|---|---|---|\n");
        let show = |value: Option<f64>| value.map_or(String::from("-"), |r| format!("{r:.2}"));
        for ratio in &self.ratios {
            text.push_str(&format!(
                "| {} | {} | {} |\n",
                ratio.versus,
                show(ratio.join),
                show(ratio.detect_all)
            ));
        }
        text.push_str("\nTiming profiles (each side at its defaults; the comparison is of defaults, not of protocol merit):\n\n");
        for system in &self.systems {
            text.push_str(&format!("- {}: {}\n", system.system, system.timing));
        }
        text.push_str(&format!(
            "\nMethod: {}.\n\nha probes twice as often as Serf (500 ms vs 1 s). Both confirm a suspicion before declaring a member down: Serf's lifeguard suspicion timeout is at least 4 s (3 s for `local`), reached only with confirmations from other members, and up to 6 times that without; ha's suspecting member pings the suspect directly and asks a few others to do the same (`ha-gossip/src/suspicion.rs`), and when its own check and another member's both fail it declares the member down about two probe round trips after the suspicion, while an unconfirmed suspicion waits the full 1.5 s. Much of the detection gap comes from these settings, not from the protocols. A Serf detection tail near 20 s (`local`: 1 indirect check, retransmit multiplier 2) is a survivor that missed the failure broadcast and ran out its own suspicion. `serf agent` exposes only the profile (`lan`, `wan`, `local`), not the probe interval, so Serf cannot be tuned to ha's 500 ms probe period without rebuilding it; `-profile=local` is its fastest preset.\n",
            self.method
        ));
        text
    }
}

/// Write `compare_gossip.json` and `compare_gossip.md` into `dir`.
///
/// # Errors
/// When the directory cannot be created or a file cannot be written.
pub fn write_outputs(report: &Report, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let json = dir.join("compare_gossip.json");
    let markdown = dir.join("compare_gossip.md");
    let encoded = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    std::fs::write(&json, encoded)?;
    std::fs::write(&markdown, report.markdown())?;
    Ok((json, markdown))
}
