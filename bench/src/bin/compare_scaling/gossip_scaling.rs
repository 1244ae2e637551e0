//! Gossip join convergence and crash detection in the deterministic simulator, one cluster
//! size at a time, under a wall-clock budget and a memory ceiling.

use std::time::{Duration, Instant};

use ha_core::{MemberEvent, Millis};
use ha_gossip::GossipCore;
use ha_tests::gossip::{
    GossipClusterOptions, all_hold_all_metadata, all_see_each_other, considers_unreachable,
    first_unreachable_since, gossip_cluster, is_rare_event, warm_gossip_cluster,
};
use ha_tests::sim::Simulator;
use serde::{Deserialize, Serialize};

/// Virtual time allowed for every member to know 99% of the others.
pub const NINETY_NINE_PERCENT_MS_MAX: u64 = 120_000;
/// Check interval for the 99% phase, virtual milliseconds.
const NINETY_NINE_PERCENT_CHECK_MS: u64 = 50;
/// Check interval for the 100% phase (its check walks every member table once foca's counts
/// agree), virtual milliseconds.
const ALL_CHECK_MS: u64 = 500;
/// Check interval for the detection phase, virtual milliseconds.
const DETECT_CHECK_MS: u64 = 10;
/// Virtual time allowed for every survivor to declare the crashed member down.
pub const DETECT_MS_MAX: u64 = 60_000;
/// Quiet virtual time between the join and the at-rest measurement (the join's last updates
/// and metadata are still being gossiped right after convergence).
const SETTLE_MS: u64 = 5_000;
/// Virtual time over which the at-rest bytes per member per second are measured, after the
/// settle and before the crash.
const REST_MS: u64 = 10_000;

/// Bounds on one simulated cluster.
pub struct SimLimits {
    /// Wall-clock time for the cold start to reach 99%.
    pub join_wall: Duration,
    /// Wall-clock time for the rest of the way to 100% (the long tail).
    pub all_wall: Duration,
    /// Wall-clock time for the settle, the crash and its detection.
    pub detect_wall: Duration,
    /// Resident memory of this process above which the run stops.
    pub resident_bytes_max: u64,
}

/// How a simulated cluster came to know its members.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStart {
    /// A cold start: every member joins through the seeds and learns the others by gossip.
    #[default]
    Join,
    /// A warm start (`ha_tests::gossip::warm_gossip_cluster`): every member is given the whole
    /// member list with metadata, as if read from a file, and the run starts at rest. It
    /// measures what a cluster of this size costs and detects once formed, not the join.
    Warm,
}

/// One cluster size's figures (virtual milliseconds from the first start, or from the crash).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GossipRow {
    /// When the row was measured (an HTTP date, UTC): rows kept from an earlier run (see
    /// `compare_scaling --keep-rows-not-run`) say so. Empty in files written before it.
    #[serde(default)]
    pub measured_at: String,
    /// The wall-clock and memory bounds the row ran under (as in the report's header).
    #[serde(default)]
    pub bounds: String,
    /// Kept from an earlier report by `--keep-rows-not-run` (not measured by this run).
    #[serde(skip)]
    pub kept: bool,
    /// Members.
    pub members: usize,
    /// How the cluster was formed.
    pub start: ClusterStart,
    /// Every member knew at least 99% of the others.
    pub ninety_nine_percent_ms: Option<u64>,
    /// Every member knew every other.
    pub all_ms: Option<u64>,
    /// Virtual limit of the 100% phase (two probe rounds, at least 60 s).
    pub all_limit_ms: u64,
    /// After the crash: the first survivor declared the victim unreachable.
    pub detect_first_ms: Option<u64>,
    /// After the crash: every survivor that knew the victim did.
    pub detect_all_ms: Option<u64>,
    /// Survivors that knew the victim when it crashed.
    pub detect_watchers: usize,
    /// Of those, how many declared it unreachable.
    pub detect_reported: usize,
    /// Live members falsely declared unreachable during the whole run.
    pub false_unreachable_events: usize,
    /// At the end of the run: the lowest fraction of the others any running member knew.
    pub known_fraction_min: f64,
    /// ... and the mean over members.
    pub known_fraction_mean: f64,
    /// Bytes each member sent per second, on average, over 10 s of virtual time at rest
    /// (after a 5 s settle that follows the join, before the crash).
    pub rest_bytes_per_member_per_second: Option<f64>,
    /// Whether the crash phase ran.
    pub detect_measured: bool,
    /// Wall-clock seconds of the cold start to 99% (or until it was stopped).
    pub join_wall_seconds: f64,
    /// Virtual time reached, milliseconds.
    pub virtual_ms: u64,
    /// Wall-clock time spent, seconds.
    pub wall_seconds: f64,
    /// Simulator events processed.
    pub events_processed: u64,
    /// Peak resident memory seen, MiB.
    pub resident_mib: u64,
    /// Peak resident memory divided by the (observer, member) pairs known at the end: what
    /// each membership-table entry costs, all of the simulator's memory included.
    pub bytes_per_known_pair: Option<f64>,
    /// At that cost, the memory every member knowing every other would take, MiB.
    pub projected_full_mib: Option<u64>,
    /// What stopped a phase early, if anything.
    pub stopped_by: Option<String>,
    /// A sentence on what the row means where it is partial.
    pub note: Option<String>,
}

impl GossipRow {
    /// One line for the console.
    pub fn summary(&self) -> String {
        let show = |value: Option<u64>| value.map_or(String::from("-"), |ms| format!("{ms} ms"));
        let start = match self.start {
            ClusterStart::Join => "",
            ClusterStart::Warm => " (warm start)",
        };
        format!(
            "{} members{start}: 99% {}, 100% {}, crash detected by first {} / all {} ({} of {}), {:.1} s wall, {} events, {} MiB{}",
            self.members,
            show(self.ninety_nine_percent_ms),
            show(self.all_ms),
            show(self.detect_first_ms),
            show(self.detect_all_ms),
            self.detect_reported,
            self.detect_watchers,
            self.wall_seconds,
            self.events_processed,
            self.resident_mib,
            self.stopped_by
                .as_ref()
                .map_or(String::new(), |why| format!(", stopped by {why}"))
        )
    }
}

/// Resident memory of this process, from /proc/self/statm (0 where unavailable).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4_096)
}

/// Drives the simulator in steps, stopping at a condition, a virtual limit, the wall budget or
/// the memory ceiling.
struct Runner<'a> {
    sim: Simulator<GossipCore>,
    limits: &'a SimLimits,
    started: Instant,
    /// The current phase's wall-clock budget, from `phase_started`.
    phase_wall: Duration,
    phase_started: Instant,
    resident_max: u64,
    stopped_by: Option<String>,
}

impl Runner<'_> {
    fn begin_phase(&mut self, wall: Duration) {
        self.phase_wall = wall;
        self.phase_started = Instant::now();
    }

    /// Run until `condition` holds (checked every `check_ms`), up to `limit_ms` of virtual time
    /// from now. The time it held, or None (and `stopped_by` says why when it was a budget).
    fn run_until(
        &mut self,
        limit_ms: u64,
        check_ms: u64,
        mut condition: impl FnMut(&Simulator<GossipCore>) -> bool,
    ) -> Option<Millis> {
        let deadline = self.sim.now() + limit_ms;
        loop {
            if condition(&self.sim) {
                return Some(self.sim.now());
            }
            if self.sim.now() >= deadline {
                self.stopped_by = Some(format!("the virtual-time limit ({limit_ms} ms)"));
                return None;
            }
            if self.phase_started.elapsed() >= self.phase_wall {
                self.stopped_by = Some(format!(
                    "the wall-clock budget ({} s)",
                    self.phase_wall.as_secs()
                ));
                return None;
            }
            let resident = resident_bytes();
            self.resident_max = self.resident_max.max(resident);
            if resident > self.limits.resident_bytes_max {
                self.stopped_by = Some(format!(
                    "the memory ceiling ({} MiB)",
                    self.limits.resident_bytes_max >> 20
                ));
                return None;
            }
            let next = (self.sim.now() + check_ms).min(deadline);
            self.sim.run_until(next);
        }
    }
}

/// Bytes sent so far by every running member.
fn bytes_sent(sim: &Simulator<GossipCore>, members: usize) -> u64 {
    (0..members)
        .filter_map(|node| sim.actor(node))
        .map(GossipCore::bytes_sent)
        .sum()
}

fn known_fractions(sim: &Simulator<GossipCore>, members: usize) -> (f64, f64) {
    let others = members.saturating_sub(1).max(1) as f64;
    // Running members only: a crashed member knows nobody.
    let fractions: Vec<f64> = (0..members)
        .filter_map(|node| sim.actor(node))
        .map(|core| core.reachable_count() as f64 / others)
        .collect();
    let min = fractions.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = fractions.iter().sum::<f64>() / fractions.len().max(1) as f64;
    (min, mean)
}

fn everyone_knows_ninety_nine_percent(sim: &Simulator<GossipCore>, members: usize) -> bool {
    let others = members.saturating_sub(1);
    (0..members).all(|node| {
        sim.actor(node)
            .is_some_and(|core| core.reachable_count() * 100 >= others * 99)
    })
}

/// Measure one cluster size: cold start to 99% and to 100% known, then a crash of the last
/// member (not a seed) and its detection by every survivor that knew it.
pub fn measure_gossip(members: usize, seed: u64, limits: &SimLimits) -> GossipRow {
    let options = GossipClusterOptions::new(members);
    let mut sim = gossip_cluster(seed, &options);
    sim.set_output_filter(is_rare_event);
    let mut runner = Runner {
        sim,
        limits,
        started: Instant::now(),
        phase_wall: limits.join_wall,
        phase_started: Instant::now(),
        resident_max: 0,
        stopped_by: None,
    };
    let mut row = GossipRow {
        members,
        ..GossipRow::default()
    };
    let everyone: Vec<usize> = (0..members).collect();
    row.ninety_nine_percent_ms = runner
        .run_until(
            NINETY_NINE_PERCENT_MS_MAX,
            NINETY_NINE_PERCENT_CHECK_MS,
            |sim| everyone_knows_ninety_nine_percent(sim, members),
        )
        .map(|at| at.0);
    row.join_wall_seconds = runner.phase_started.elapsed().as_secs_f64();
    if row.ninety_nine_percent_ms.is_some() {
        runner.begin_phase(limits.all_wall);
        // Two probe rounds bound the last holes (see tests/tests/gossip_sim.rs).
        let probe_round_ms = members as u64 * options.timing.gossip_probe_period_ms;
        row.all_limit_ms = (2 * probe_round_ms).max(60_000);
        row.all_ms = runner
            .run_until(row.all_limit_ms, ALL_CHECK_MS, |sim| {
                all_see_each_other(sim, &everyone)
            })
            .map(|at| at.0);
        // Detection runs on the cluster as it is (at 99% if 100% was not reached in time).
        let stopped_before = runner.stopped_by.take().map(|why| format!("100%: {why}"));
        let stopped_detect = rest_and_detect(&mut runner, members, &mut row);
        let stops: Vec<String> = stopped_before.into_iter().chain(stopped_detect).collect();
        runner.stopped_by = (!stops.is_empty()).then(|| stops.join("; "));
    }
    finish_row(runner, members, &mut row, limits);
    row
}

/// Measure one cluster size from a warm start (see [`ClusterStart::Warm`]): the build, then
/// the same settle, at-rest bytes, crash and detection as [`measure_gossip`]. The join's rows
/// are taken at the build (0 ms: every member knows every other by construction, checked).
pub fn measure_gossip_warm(members: usize, seed: u64, limits: &SimLimits) -> GossipRow {
    let projected_mib = warm_projected_mib(members);
    let ceiling_mib = limits.resident_bytes_max >> 20;
    if projected_mib > ceiling_mib {
        // The build allocates everything before the first check could stop it.
        return GossipRow {
            members,
            start: ClusterStart::Warm,
            stopped_by: Some(format!(
                "not run: about {projected_mib} MiB projected, over the {ceiling_mib} MiB ceiling"
            )),
            ..GossipRow::default()
        };
    }
    let options = GossipClusterOptions::new(members);
    let started = Instant::now();
    let sim = warm_gossip_cluster(seed, &options);
    let mut runner = Runner {
        sim,
        limits,
        started,
        phase_wall: limits.detect_wall,
        phase_started: Instant::now(),
        resident_max: resident_bytes(),
        stopped_by: None,
    };
    let mut row = GossipRow {
        members,
        start: ClusterStart::Warm,
        join_wall_seconds: started.elapsed().as_secs_f64(),
        ..GossipRow::default()
    };
    let everyone: Vec<usize> = (0..members).collect();
    // The build is the warm start's whole join: report it only if it holds.
    if all_see_each_other(&runner.sim, &everyone) && all_hold_all_metadata(&runner.sim, &everyone) {
        row.ninety_nine_percent_ms = Some(0);
        row.all_ms = Some(0);
        let stops: Vec<String> = rest_and_detect(&mut runner, members, &mut row)
            .into_iter()
            .collect();
        runner.stopped_by = (!stops.is_empty()).then(|| stops.join("; "));
    } else {
        runner.stopped_by = Some("the warm start did not give every member every other".into());
    }
    finish_row(runner, members, &mut row, limits);
    row
}

/// Bytes per (observer, member) pair a warm start was measured to hold, the whole simulator
/// included (118 at 10,000 members, 2026-12-04), with a margin.
const WARM_BYTES_PER_PAIR: u64 = 140;

/// Resident memory a warm start of `members` is expected to reach, MiB.
fn warm_projected_mib(members: usize) -> u64 {
    let members = members as u64;
    (members * members.saturating_sub(1) * WARM_BYTES_PER_PAIR + (256 << 20)) >> 20
}

/// The settle, the at-rest bytes and the crash with its detection, under the detection
/// phase's wall-clock budget. What stopped the detection early, if anything.
fn rest_and_detect(runner: &mut Runner<'_>, members: usize, row: &mut GossipRow) -> Option<String> {
    runner.begin_phase(runner.limits.detect_wall);
    let _ = runner.run_until(SETTLE_MS, SETTLE_MS, |_| false);
    let sent_before = bytes_sent(&runner.sim, members);
    let rest_from = runner.sim.now();
    let _ = runner.run_until(REST_MS, REST_MS, |_| false);
    let rest_ms = (runner.sim.now() - rest_from).max(1);
    row.rest_bytes_per_member_per_second = Some(
        (bytes_sent(&runner.sim, members) - sent_before) as f64 * 1_000.0
            / rest_ms as f64
            / members as f64,
    );
    runner.stopped_by = None;
    measure_detection(runner, members, row);
    row.detect_measured = true;
    runner
        .stopped_by
        .take()
        .map(|why| format!("detection: {why}"))
}

/// Fill the figures every row has at the end of its run.
fn finish_row(mut runner: Runner<'_>, members: usize, row: &mut GossipRow, limits: &SimLimits) {
    let (min, mean) = known_fractions(&runner.sim, members);
    row.known_fraction_min = min;
    row.known_fraction_mean = mean;
    row.false_unreachable_events = runner
        .sim
        .all_outputs()
        .filter(|record| {
            matches!(&record.output, MemberEvent::Unreachable(member)
                if Some(member.gossip_addr) != row_victim_addr(&runner.sim, members))
        })
        .count();
    row.virtual_ms = runner.sim.now().0;
    row.wall_seconds = runner.started.elapsed().as_secs_f64();
    row.events_processed = runner.sim.events_processed();
    let resident_peak = runner.resident_max.max(resident_bytes());
    row.resident_mib = resident_peak >> 20;
    let pairs_all = members as f64 * members.saturating_sub(1) as f64;
    let pairs_known = pairs_all * mean;
    if pairs_known >= 1.0 {
        let per_pair = resident_peak as f64 / pairs_known;
        row.bytes_per_known_pair = Some(per_pair);
        row.projected_full_mib = Some((per_pair * pairs_all / f64::from(1 << 20)) as u64);
    }
    row.stopped_by = runner.stopped_by.take();
    row.note = note(row, limits);
}

fn row_victim_addr(sim: &Simulator<GossipCore>, members: usize) -> Option<std::net::SocketAddr> {
    (members > 1).then(|| sim.addr(members - 1))
}

fn measure_detection(runner: &mut Runner<'_>, members: usize, row: &mut GossipRow) {
    let victim = members - 1;
    let victim_addr = runner.sim.addr(victim);
    let watchers: Vec<usize> = (0..members)
        .filter(|&node| node != victim && !considers_unreachable(&runner.sim, node, victim_addr))
        .collect();
    row.detect_watchers = watchers.len();
    runner.sim.crash(victim);
    let crashed_at = runner.sim.now();
    let _ = runner.run_until(DETECT_MS_MAX, DETECT_CHECK_MS, |sim| {
        watchers
            .iter()
            .all(|&node| first_unreachable_since(sim, node, victim_addr, crashed_at).is_some())
    });
    let times: Vec<u64> = watchers
        .iter()
        .filter_map(|&node| first_unreachable_since(&runner.sim, node, victim_addr, crashed_at))
        .map(|record| record.at - crashed_at)
        .collect();
    row.detect_reported = times.len();
    row.detect_first_ms = times.iter().copied().min();
    if times.len() == watchers.len() {
        row.detect_all_ms = times.iter().copied().max();
    }
}

fn note(row: &GossipRow, limits: &SimLimits) -> Option<String> {
    if row.start == ClusterStart::Warm {
        return row.stopped_by.is_none().then(|| {
            format!(
                "the member list with metadata given to every member (built in {:.0} s of wall time); the join is not measured in this row, only the cluster at rest and its crash detection",
                row.join_wall_seconds
            )
        });
    }
    if row.ninety_nine_percent_ms.is_none() {
        let mut sentence = format!(
            "the join did not reach 99% before it was stopped: after {} ms of virtual time ({:.0} s of wall time, {} events, {} MiB resident), the least-informed member knew {:.1}% of the others and the mean member {:.1}%; no crash was measured",
            row.virtual_ms,
            row.wall_seconds,
            row.events_processed,
            row.resident_mib,
            row.known_fraction_min * 100.0,
            row.known_fraction_mean * 100.0
        );
        if let (Some(per_pair), Some(projected_mib)) =
            (row.bytes_per_known_pair, row.projected_full_mib)
        {
            let ceiling_mib = limits.resident_bytes_max >> 20;
            let verdict = if projected_mib > ceiling_mib {
                format!(
                    ", {:.1}x the {ceiling_mib} MiB ceiling: this size cannot converge in this simulator within that memory, however long it runs",
                    projected_mib as f64 / ceiling_mib.max(1) as f64
                )
            } else {
                String::new()
            };
            sentence.push_str(&format!(
                ". Every member keeps an entry for every other (foca's member list and ha-gossip's member table), so memory grows with the square of the cluster: at the {per_pair:.0} bytes per known (observer, member) pair measured here, all {} x {} pairs would take about {:.0} GiB{verdict}",
                row.members,
                row.members.saturating_sub(1),
                projected_mib as f64 / 1024.0
            ));
        }
        return Some(sentence);
    }
    let mut sentences = Vec::new();
    if row.all_ms.is_none() {
        sentences.push(format!(
            "99% was reached after {:.0} s of wall time, but not 100% (virtual limit {} ms, two probe rounds, or the wall-clock budget, whichever came first); the crash was then measured on the cluster as it was, among the {} survivors that knew the victim",
            row.join_wall_seconds, row.all_limit_ms, row.detect_watchers
        ));
    }
    if row.detect_measured && row.detect_all_ms.is_none() {
        sentences.push(format!(
            "{} of {} survivors declared the crashed member unreachable before the phase was stopped",
            row.detect_reported, row.detect_watchers
        ));
    }
    (!sentences.is_empty()).then(|| sentences.join("; "))
}
