//! Gossip membership (`ha_gossip::GossipCore`) in the deterministic simulator.
//!
//! Every scenario runs under [`with_seeds`]: a failure prints its seed and the command that
//! replays it. `HA_SIM_SEEDS=N` runs N seeds per scenario; `HA_SIM_SEED=S` replays one.
//! All use [`Timing::lan`] (probe period 500 ms, probe round trip 200 ms, suspect-to-down
//! 1,500 ms, gossip interval 200 ms, re-announce 5,000 ms) and `cluster_size_hint = N`.
//!
//! The 1,000-member scenarios cost most of the run time (tens of seconds each, nearly all of
//! it in the join storm); they run by default.

use std::collections::BTreeSet;

use ha_core::{MemberEvent, Millis, Timing};
use ha_gossip::GossipCore;
use ha_tests::gossip::{
    GossipClusterOptions, all_hold_all_metadata, all_see_each_other, considers_unreachable,
    first_unreachable_since, gossip_cluster, gossip_simulator, is_rare_event, schedule_starts,
    view_of, warm_gossip_cluster,
};
use ha_tests::sim::{NetworkConfig, Simulator};
use ha_tests::with_seeds;
use rand::RngExt;

/// How often a convergence condition is checked, in virtual milliseconds. Reported times are
/// late by less than this.
const CHECK_EVERY_MS: u64 = 50;

/// This process's peak resident memory (`VmHWM` in /proc/self/status), as text.
fn peak_resident_memory() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .map(|line| line.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_else(|| String::from("unknown"))
}

fn everyone(node_count: usize) -> Vec<usize> {
    (0..node_count).collect()
}

fn unreachable_events(sim: &Simulator<GossipCore>, since: Millis) -> usize {
    sim.all_outputs()
        .filter(|record| record.at >= since && matches!(record.output, MemberEvent::Unreachable(_)))
        .count()
}

/// Ordered (observer, member) pairs among `live` where the observer does not hold the member
/// as reachable. Cheap: uses foca's count, so it counts holes, not which ones.
fn missing_pairs(sim: &Simulator<GossipCore>, live: &[usize]) -> usize {
    let others = live.len().saturating_sub(1);
    live.iter()
        .map(|&node| {
            let known = sim.actor(node).map_or(0, GossipCore::reachable_count);
            others.saturating_sub(known)
        })
        .sum()
}

/// Whether every node in `live` holds at least 99% of the others as reachable (foca's count).
fn everyone_knows_ninety_nine_percent(sim: &Simulator<GossipCore>, live: &[usize]) -> bool {
    let others = live.len().saturating_sub(1);
    live.iter().all(|&node| {
        sim.actor(node)
            .is_some_and(|core| core.reachable_count() * 100 >= others * 99)
    })
}

/// Whether 99% of `total` is there: at most 1% of it missing, rounded up, so one straggler is
/// allowed where 1% is less than one (see `convergence_rounds_grow_like_log_n`).
fn at_most_one_percent_missing(present: usize, total: usize) -> bool {
    total.saturating_sub(present) <= total.div_ceil(100)
}

/// Whether 99% of the ordered (observer, member) pairs among `live` are known: how far an
/// epidemic has spread, whoever its stragglers are. At most 1% missing, rounded up, and at
/// least one member's whole view (N - 1 pairs): below 100 members one straggler is more than
/// 1% (see `convergence_rounds_grow_like_log_n`).
fn ninety_nine_percent_of_pairs_known(sim: &Simulator<GossipCore>, live: &[usize]) -> bool {
    let others = live.len().saturating_sub(1);
    let pairs = live.len() * others;
    missing_pairs(sim, live) <= pairs.div_ceil(100).max(others)
}

/// Run until every node in `live` knows 99% of the others, or panic after `limit_ms`.
fn reach_ninety_nine_percent(
    sim: &mut Simulator<GossipCore>,
    live: &[usize],
    limit_ms: u64,
) -> Millis {
    let deadline = sim.now() + limit_ms;
    sim.run_until_condition(deadline, CHECK_EVERY_MS, |sim| {
        everyone_knows_ninety_nine_percent(sim, live)
    })
    .unwrap_or_else(|| {
        panic!(
            "seed {}: {} nodes: not every node knew 99% of the others within {limit_ms} ms",
            sim.seed(),
            live.len()
        )
    })
}

/// Run until every live node sees every other, or panic after `limit_ms` from now.
fn converge(sim: &mut Simulator<GossipCore>, live: &[usize], limit_ms: u64) -> Millis {
    let start = sim.now();
    let deadline = start + limit_ms;
    sim.run_until_condition(deadline, CHECK_EVERY_MS, |sim| {
        all_see_each_other(sim, live)
    })
    .unwrap_or_else(|| {
        panic!(
            "seed {}: {} nodes did not all see each other within {limit_ms} ms of {start}; \
                 {} (observer, member) pairs missing; {:?}",
            sim.seed(),
            live.len(),
            missing_pairs(sim, live),
            sim
        )
    })
}

/// The worst case for a crashed member to be declared down by every survivor, from the
/// timing: some survivor probes it within `first_probe_periods` probe periods (each period,
/// about N-1 probes hit random members, so the chance that none hits it is about 1/e per
/// period), the probe takes one period, suspicion lasts `suspect_to_down`, the verdict
/// spreads in about log2(N) gossip intervals (allowed 3 times over), and a survivor that every
/// copy of it missed hears it from a push-pull exchange (`ha_gossip::anti_entropy`, one
/// interval allowed). That last part is a tail, not a rule: over seeds 80,000-82,999 of
/// `failed_member_detected_by_all` (50 members) the last survivor took 1.8 s at the median,
/// 5.3 s at p99 and 6.9 s at p99.9, and once 10.8 s: there the one survivor the gossip missed
/// started its exchange first with a member that did not know yet, then with the crashed
/// member itself, and no other member picked it until then (seed 80,252; the bound without
/// the interval was 10.6 s).
fn detection_bound_ms(timing: &Timing, node_count: usize, first_probe_periods: u64) -> u64 {
    let log2 = u64::from((node_count.max(2) as f64).log2().ceil() as u32);
    (first_probe_periods + 1) * timing.gossip_probe_period_ms
        + timing.gossip_suspect_to_down_ms
        + 3 * log2 * timing.gossip_interval_ms
        + timing.reannounce_interval_ms
}

#[test]
fn same_seed_same_trace() {
    fn run(seed: u64) -> (u64, u64, Vec<String>) {
        let mut options = GossipClusterOptions::new(20);
        options.network = NetworkConfig {
            latency_ms_min: 1,
            latency_ms_max: 30,
            drop_probability: 0.02,
            duplicate_probability: 0.01,
        };
        options.trace_lines_max = 5_000;
        let mut sim = gossip_cluster(seed, &options);
        sim.run_until(Millis(10_000));
        let victim = sim.rng().random_range(3..20);
        sim.crash(victim);
        sim.run_until(Millis(20_000));
        sim.start(victim);
        sim.run_until(Millis(30_000));
        let trace = sim.trace();
        (trace.hash(), trace.entries(), trace.lines().to_vec())
    }
    with_seeds("same_seed_same_trace", 2, |seed| {
        let first = run(seed);
        let second = run(seed);
        if let Some(position) = first.2.iter().zip(&second.2).position(|(a, b)| a != b) {
            panic!(
                "seed {seed}: runs diverge at trace line {position}:\n  {}\n  {}",
                first.2[position], second.2[position]
            );
        }
        assert_eq!(first.0, second.0, "seed {seed}: trace hashes differ");
        assert_eq!(first.1, second.1, "seed {seed}: trace lengths differ");
        let other = run(seed.wrapping_add(1));
        assert_ne!(
            first.0, other.0,
            "seed {seed}: another seed gave the same trace"
        );
        println!(
            "seed {seed}: {} events, trace hash {:016x}; seed {}: {:016x}",
            first.1,
            first.0,
            seed.wrapping_add(1),
            other.0
        );
    });
}

/// 1,000 members join through 3 seeds, starts spread over the first second, on 1-2 ms links.
///
/// Two times are reported: when every member knew 99% of the others (the epidemic part), and
/// when every member knew every other (the tail). foca retransmits each update
/// `4 * log10(N + 1)` = 12 times, which leaves about N^2 * e^-12 (a handful of) (observer,
/// member) pairs the join's dissemination never reaches. Before issue 17 those waited for a
/// probe (two probe rounds, minutes: 111 s at seed 0); the push-pull anti-entropy exchange
/// (`ha_gossip::anti_entropy`, one random member per 5 s) closes them within about one
/// interval. Asserted: all know all within 3 times the 99% time (plus one check interval).
/// Peak resident memory of the test process is printed.
#[test]
fn thousand_members_converge() {
    with_seeds("thousand_members_converge", 1, |seed| {
        let node_count = 1_000;
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        let mut sim = gossip_cluster(seed, &options);
        sim.set_output_filter(is_rare_event);
        let ninety_nine_percent_at = reach_ninety_nine_percent(&mut sim, &live, 60_000);
        // The anti-entropy exchange closes the last holes within about one interval.
        let converged_at = converge(&mut sim, &live, 2 * ninety_nine_percent_at.0 + 500);
        let unreachable = unreachable_events(&sim, Millis::ZERO);
        println!(
            "seed {seed}: {node_count} members: every member knew 99% of the others at \
             {ninety_nine_percent_at}, all knew all at {converged_at} (virtual; {:.2}x); {} \
             events, {:?}; {unreachable} unreachable events; peak resident memory {}",
            converged_at.0 as f64 / ninety_nine_percent_at.0 as f64,
            sim.events_processed(),
            sim.counters(),
            peak_resident_memory()
        );
        assert_eq!(
            unreachable, 0,
            "seed {seed}: a live member was declared down while joining"
        );
        // The converged cluster also detects a crash: this is the 1,000-member case of
        // `failed_member_detected_by_all`, at no extra join cost.
        sim.run_for(5_000);
        let (first_ms, last_ms, bound_ms) = crash_and_detect(&mut sim, &options, 4);
        println!(
            "seed {seed}: {node_count} members: a crashed member was declared unreachable by \
             the first survivor after {first_ms} ms, by all 999 after {last_ms} ms (bound \
             {bound_ms} ms)"
        );
    });
}

/// Crash one random member and wait until every survivor that knew it declares it
/// unreachable. Returns the first and last detection delays and the bound (see
/// `detection_bound_ms`), and checks that nobody else was declared down meanwhile.
fn crash_and_detect(
    sim: &mut Simulator<GossipCore>,
    options: &GossipClusterOptions,
    first_probe_periods: u64,
) -> (u64, u64, u64) {
    let seed = sim.seed();
    let node_count = options.node_count;
    let victim = sim.rng().random_range(0..node_count);
    let victim_addr = sim.addr(victim);
    let watchers: Vec<usize> = (0..node_count)
        .filter(|&node| node != victim && !considers_unreachable(sim, node, victim_addr))
        .collect();
    sim.crash(victim);
    let crashed_at = sim.now();
    let bound_ms = detection_bound_ms(&options.timing, node_count, first_probe_periods);
    let detected = sim.run_until_condition(crashed_at + bound_ms, 10, |sim| {
        watchers
            .iter()
            .all(|&node| first_unreachable_since(sim, node, victim_addr, crashed_at).is_some())
    });
    let times: Vec<u64> = watchers
        .iter()
        .filter_map(|&node| first_unreachable_since(sim, node, victim_addr, crashed_at))
        .map(|record| record.at - crashed_at)
        .collect();
    if detected.is_none() {
        let missing: Vec<(usize, Option<bool>)> = watchers
            .iter()
            .filter(|&&node| first_unreachable_since(sim, node, victim_addr, crashed_at).is_none())
            .map(|&node| {
                let view = view_of(sim, node, victim_addr).map(|member| member.reachable);
                (node, view)
            })
            .collect();
        panic!(
            "seed {seed}: only {} of {} survivors declared n{victim} unreachable within \
             {bound_ms} ms; (survivor, holds n{victim} reachable) without a report: {missing:?}",
            times.len(),
            watchers.len()
        );
    }
    let wrongly_down = sim
        .all_outputs()
        .filter(|record| record.at >= crashed_at)
        .filter(|record| {
            matches!(&record.output, MemberEvent::Unreachable(member)
                if member.gossip_addr != victim_addr)
        })
        .count();
    assert_eq!(
        wrongly_down, 0,
        "seed {seed}: live members declared unreachable"
    );
    let first = times.iter().copied().min().unwrap_or_default();
    let last = times.iter().copied().max().unwrap_or_default();
    (first, last, bound_ms)
}

/// Crash one random member of a cluster of `node_count` and measure how long the survivors
/// take to declare it unreachable. With `wait_for_all`, the crash comes after every member
/// knows every other; otherwise after every member knows 99% of the others (for 1,000 nodes,
/// waiting for the last holes costs minutes of virtual time; see `thousand_members_converge`),
/// and only survivors that knew the victim when it crashed are expected to report it.
fn detect_crash(seed: u64, node_count: usize, first_probe_periods: u64, wait_for_all: bool) {
    let options = GossipClusterOptions::new(node_count);
    let mut sim = gossip_cluster(seed, &options);
    if node_count > 100 {
        sim.set_output_filter(is_rare_event);
    }
    let live = everyone(node_count);
    if wait_for_all {
        converge(
            &mut sim,
            &live,
            node_count as u64 * options.timing.gossip_probe_period_ms,
        );
    } else {
        reach_ninety_nine_percent(&mut sim, &live, 60_000);
    }
    // Let the join's gossip settle so the crash is judged by a quiet cluster.
    sim.run_for(5_000);
    let (first, last, bound_ms) = crash_and_detect(&mut sim, &options, first_probe_periods);
    println!(
        "seed {seed}: {node_count} nodes: the first survivor declared the crashed member \
         unreachable after {first} ms, the last after {last} ms (bound {bound_ms} ms)"
    );
}

/// A crashed member is declared unreachable by every survivor, within a bound from the timing
/// (see `detection_bound_ms`: with 10 periods for the first probe, 10 s for 50 nodes).
#[test]
fn failed_member_detected_by_all() {
    with_seeds("failed_member_detected_by_all", 5, |seed| {
        detect_crash(seed, 50, 10, true);
    });
}

/// The same at 1,000 members, on a cluster where every member knows 99% of the others (the
/// first probe comes sooner: ~999 probes a period). It costs a 1,000-member join (about 45 s
/// of CPU), so it is ignored by default (run it with `--ignored`); `thousand_members_converge`
/// measures the same detection at the end of its run by default.
#[test]
#[ignore = "a 1,000-member join, about 45 s of CPU: run with --ignored"]
fn failed_member_detected_by_all_thousand() {
    with_seeds("failed_member_detected_by_all_thousand", 1, |seed| {
        detect_crash(seed, 1_000, 4, false);
    });
}

/// Most distinct live members that may be falsely declared down in one 10-minute run at 5% loss.
///
/// The residue is SWIM's genuine false-positive rate at these settings: a probe whose direct
/// ping and all three indirect pings are lost, followed by a refutation that does not reach the
/// suspecting members within the 1.5 s suspicion window. Each falsely-downed member renews its
/// identity and is reachable by all again within seconds (asserted below). Unpatched foca 2.0.0
/// gave 0 to 4 members and 24 to 48 needless rejoins per run: it sent `TurnUndead` to members
/// that had already refuted their suspicion (third_party/foca/HA_PATCH.md).
///
/// Over the 1,000 seeds 50,000-50,999 (session 25) the count per run is Poisson-distributed:
/// with issue 17's suspicion checks (`ha_gossip::suspicion`: a suspect told by a `Verify` ping
/// refutes at once; a down is brought forward only when two members' own checks failed) 165
/// members in all, runs with 0 / 1 / 2 / 3 members 846 / 144 / 9 / 1; before them (2f356f4)
/// 222, runs 800 / 182 / 14 / 4. At 0.165 a run, 5 or more in one run has a chance of about
/// one in a million, so a sweep of any practical length passes unless the rate has grown (the
/// bound was 2 before, calibrated on 20 seeds; seed 50,025 gave 3).
const FALSELY_DOWNED_MEMBERS_MAX: usize = 4;

/// The mean of falsely-downed members per run that the seeds run together may show, beyond
/// chance (see [`falsely_downed_members_bound`]): 1.5 times the 0.165 measured.
const FALSELY_DOWNED_PER_RUN_MAX: f64 = 0.25;

/// Most falsely-downed members in `runs` runs all together: the mean
/// [`FALSELY_DOWNED_PER_RUN_MAX`] plus three standard deviations of a Poisson count, plus 2
/// (never below one run's [`FALSELY_DOWNED_MEMBERS_MAX`]). 300 runs may show 102, 0.34 a run:
/// a 300-seed sweep fails once the rate has about doubled, 1,000 seeds (299) a little sooner;
/// the two default seeds only catch a far worse rate.
fn falsely_downed_members_bound(runs: usize) -> usize {
    let mean = FALSELY_DOWNED_PER_RUN_MAX * runs as f64;
    ((mean + 3.0 * mean.sqrt() + 2.0).floor() as usize).max(FALSELY_DOWNED_MEMBERS_MAX)
}

/// 50 members, 5% of every message lost, 10 simulated minutes: count the live members
/// declared down (every member is live, so every `Unreachable` is false). The count is
/// reported and bounded per run ([`FALSELY_DOWNED_MEMBERS_MAX`]) and over all the seeds run
/// ([`falsely_downed_members_bound`]), and every member falsely declared down must be reachable
/// by all again, with its renewed incarnation, at the end.
#[test]
fn no_false_down_under_5pct_loss() {
    let totals = std::cell::Cell::new((0usize, 0usize));
    with_seeds("no_false_down_under_5pct_loss", 2, |seed| {
        let node_count = 50;
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        let mut sim = gossip_cluster(seed, &options);
        converge(&mut sim, &live, 60_000);
        let lossy_from = sim.now();
        let network = sim.network().config().clone().with_drop_probability(0.05);
        sim.network_mut().set_config(network);
        sim.run_for(10 * 60 * 1_000);
        let false_downs: Vec<(usize, String)> = sim
            .all_outputs()
            .filter(|record| record.at >= lossy_from)
            .filter_map(|record| match &record.output {
                MemberEvent::Unreachable(member) => Some((record.node, member.id.to_string())),
                _ => None,
            })
            .collect();
        let rejoins = sim
            .all_outputs()
            .filter(|record| {
                record.at >= lossy_from && matches!(record.output, MemberEvent::SelfRejoined { .. })
            })
            .count();
        let counters = *sim.counters();
        let downed: BTreeSet<&String> = false_downs.iter().map(|(_, member)| member).collect();
        println!(
            "seed {seed}: {node_count} nodes, 5% loss for 600 s: {} false unreachable events \
             about {} members {downed:?}, {rejoins} self-rejoins; {} of {} messages lost",
            false_downs.len(),
            downed.len(),
            counters.dropped_loss,
            counters.sent
        );
        assert!(
            downed.len() <= FALSELY_DOWNED_MEMBERS_MAX,
            "seed {seed}: {} live members declared down under 5% loss: {false_downs:?}",
            downed.len()
        );
        // Still under loss, every member (renewed or not) is reachable by every other again.
        let settled = converge(&mut sim, &live, 60_000);
        println!("seed {seed}: all reachable again by {settled}");
        let (runs, members) = totals.get();
        totals.set((runs + 1, members + downed.len()));
    });
    let (runs, members) = totals.get();
    let bound = falsely_downed_members_bound(runs);
    println!(
        "{runs} runs: {members} live members falsely declared down ({:.3} a run; at most {bound})",
        members as f64 / runs.max(1) as f64
    );
    assert!(
        members <= bound,
        "{members} live members falsely declared down over {runs} runs at 5% loss, above \
         {bound}: the false-down rate has grown"
    );
}

/// A crashed member is declared unreachable by all; restarted (a fresh core, higher
/// incarnation), it is seen reachable again, under its new incarnation, by all.
#[test]
fn restarted_member_is_seen_up_again() {
    with_seeds("restarted_member_is_seen_up_again", 5, |seed| {
        let node_count = 20;
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        let mut sim = gossip_cluster(seed, &options);
        converge(&mut sim, &live, 60_000);
        sim.run_for(2_000);
        let victim = sim.rng().random_range(0..node_count);
        let victim_addr = sim.addr(victim);
        let old_incarnation = sim.actor(victim).map(|core| core.identity().incarnation);
        sim.crash(victim);
        let crashed_at = sim.now();
        let survivors: Vec<usize> = live
            .iter()
            .copied()
            .filter(|&node| node != victim)
            .collect();
        let bound_ms = detection_bound_ms(&options.timing, node_count, 10);
        sim.run_until_condition(crashed_at + bound_ms, 10, |sim| {
            survivors
                .iter()
                .all(|&node| first_unreachable_since(sim, node, victim_addr, crashed_at).is_some())
        })
        .unwrap_or_else(|| panic!("seed {seed}: n{victim} not declared unreachable by all"));
        let detected_after_ms = sim.now() - crashed_at;
        sim.run_for(1_000);
        sim.start(victim);
        let restarted_at = sim.now();
        let new_incarnation = sim.actor(victim).map(|core| core.identity().incarnation);
        assert!(
            new_incarnation > old_incarnation,
            "seed {seed}: incarnation did not grow"
        );
        // The restarted node announces to its seeds at once; the news spreads by gossip.
        let timing = &options.timing;
        let back_bound_ms = timing.reannounce_interval_ms + 10 * timing.gossip_probe_period_ms;
        let back_at = converge(&mut sim, &live, back_bound_ms);
        for &node in &survivors {
            let saw_up = sim.outputs(node).iter().any(|record| {
                record.at >= restarted_at
                    && matches!(&record.output, MemberEvent::Up(member)
                        if member.gossip_addr == victim_addr
                            && Some(member.incarnation) == new_incarnation)
            });
            assert!(
                saw_up,
                "seed {seed}: n{node} saw no Up for the restarted n{victim}"
            );
        }
        println!(
            "seed {seed}: n{victim} crashed, unreachable for all after {detected_after_ms} ms; \
             restarted at {restarted_at} (incarnation {old_incarnation:?} -> \
             {new_incarnation:?}), up for all after {} ms (bound {back_bound_ms} ms)",
            back_at - restarted_at
        );
    });
}

/// A member restarted before anyone noticed its crash: its new identity replaces the old one
/// at every member (foca's rename by address). How many members reported it unreachable on the
/// way is printed: over seeds 0..30, one member once (an old-identity suspicion that expired
/// before the rename reached it).
#[test]
fn quick_restart_replaces_the_old_identity() {
    with_seeds("quick_restart_replaces_the_old_identity", 5, |seed| {
        let node_count = 20;
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        let mut sim = gossip_cluster(seed, &options);
        converge(&mut sim, &live, 60_000);
        sim.run_for(2_000);
        let victim = sim.rng().random_range(0..node_count);
        let victim_addr = sim.addr(victim);
        sim.crash(victim);
        let crashed_at = sim.now();
        sim.run_for(100);
        sim.start(victim);
        let back_at = converge(&mut sim, &live, 30_000);
        sim.run_for(10_000);
        let reported_down = live
            .iter()
            .filter(|&&node| first_unreachable_since(&sim, node, victim_addr, crashed_at).is_some())
            .count();
        println!(
            "seed {seed}: n{victim} restarted after 100 ms; new identity known by all after {} ms; \
             {reported_down} members reported it unreachable",
            back_at - crashed_at
        );
        assert!(
            all_see_each_other(&sim, &live),
            "seed {seed}: views diverged afterwards"
        );
    });
}

/// 5 members split 3/2: each side declares the other side unreachable; after the heal, every
/// member sees every other again (the healed phase must make progress).
#[test]
fn partition_is_detected_and_heals() {
    with_seeds("partition_is_detected_and_heals", 5, |seed| {
        let node_count = 5;
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        let mut sim = gossip_cluster(seed, &options);
        converge(&mut sim, &live, 30_000);
        sim.run_for(2_000);
        let majority = vec![0, 1, 2];
        let minority = vec![3, 4];
        let addrs = |nodes: &[usize], sim: &Simulator<GossipCore>| -> Vec<_> {
            nodes.iter().map(|&node| sim.addr(node)).collect()
        };
        let sets = [addrs(&majority, &sim), addrs(&minority, &sim)];
        sim.network_mut().partition(&sets);
        let split_at = sim.now();
        let timing = options.timing.clone();
        let bound_ms = detection_bound_ms(&timing, node_count, 10);
        let across = |sim: &Simulator<GossipCore>| {
            majority.iter().all(|&a| {
                minority.iter().all(|&b| {
                    first_unreachable_since(sim, a, sim.addr(b), split_at).is_some()
                        && first_unreachable_since(sim, b, sim.addr(a), split_at).is_some()
                })
            })
        };
        sim.run_until_condition(split_at + bound_ms, 10, across)
            .unwrap_or_else(|| panic!("seed {seed}: the sides did not declare each other down"));
        let split_detected_ms = sim.now() - split_at;
        for (side, other) in [(&majority, &minority), (&minority, &majority)] {
            for &a in side.iter() {
                for &b in other.iter() {
                    assert!(considers_unreachable(&sim, a, sim.addr(b)), "seed {seed}");
                }
            }
        }
        // Stay split long enough for re-announces and announces to down members to fail.
        sim.run_for(2 * timing.reannounce_interval_ms);
        sim.network_mut().heal();
        let healed_at = sim.now();
        // Re-announce to seeds and foca's announce to down members both run every
        // `reannounce_interval_ms`; allow three of them, plus a rejoin's dissemination.
        let heal_bound_ms = 3 * timing.reannounce_interval_ms + 10 * timing.gossip_probe_period_ms;
        let healed = converge(&mut sim, &live, heal_bound_ms);
        let rejoins = sim
            .all_outputs()
            .filter(|record| {
                record.at >= healed_at && matches!(record.output, MemberEvent::SelfRejoined { .. })
            })
            .count();
        println!(
            "seed {seed}: 3/2 split declared on both sides after {split_detected_ms} ms; \
             after the heal all saw all after {} ms (bound {heal_bound_ms} ms), {rejoins} \
             members renewed their identity",
            healed - healed_at
        );
    });
}

/// One direction of one link fails (3 -> 4 dropped, 4 -> 3 delivered): indirect probes
/// through the other members bridge it, so nobody is declared down.
#[test]
fn one_way_block_is_bridged_by_indirect_probes() {
    with_seeds("one_way_block_is_bridged_by_indirect_probes", 5, |seed| {
        let node_count = 10;
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        let mut sim = gossip_cluster(seed, &options);
        converge(&mut sim, &live, 30_000);
        let (from, to) = (sim.addr(3), sim.addr(4));
        sim.network_mut().block_one_way(from, to);
        let blocked_at = sim.now();
        sim.run_for(60_000);
        let blocked = sim.counters().dropped_blocked;
        let unreachable = unreachable_events(&sim, blocked_at);
        println!(
            "seed {seed}: 60 s with 3 -> 4 blocked: {blocked} messages blocked, \
             {unreachable} unreachable events"
        );
        assert!(blocked > 0, "seed {seed}: nothing crossed the blocked link");
        assert_eq!(unreachable, 0, "seed {seed}: a one-way block caused a down");
        sim.network_mut().unblock_one_way(from, to);
        assert!(all_see_each_other(&sim, &live), "seed {seed}");
    });
}

/// Latency from 1 to 100 ms (so messages overtake each other), 10% loss and 10% duplicates:
/// 30 members still converge, and after the faults stop they all see each other.
#[test]
fn converges_despite_loss_duplication_and_reordering() {
    with_seeds(
        "converges_despite_loss_duplication_and_reordering",
        3,
        |seed| {
            let node_count = 30;
            let mut options = GossipClusterOptions::new(node_count);
            options.network = NetworkConfig {
                latency_ms_min: 1,
                latency_ms_max: 100,
                drop_probability: 0.10,
                duplicate_probability: 0.10,
            };
            let live = everyone(node_count);
            let mut sim = gossip_cluster(seed, &options);
            let converged = converge(&mut sim, &live, 120_000);
            sim.run_for(60_000);
            let unreachable = unreachable_events(&sim, Millis::ZERO);
            sim.network_mut().set_config(NetworkConfig::lan());
            let calm_from = sim.now();
            let settled = converge(&mut sim, &live, 60_000);
            println!(
                "seed {seed}: converged at {converged} under 1-100 ms, 10% loss, 10% duplicates; \
             {unreachable} unreachable events in 60 s of faults; {:?}; all see all {} ms after \
             the faults stopped",
                sim.counters(),
                settled - calm_from
            );
        },
    );
}

/// One row of the convergence table.
#[derive(Debug)]
struct ConvergenceRow {
    node_count: usize,
    log2: f64,
    /// 99% of the (observer, member) pairs are known ([`ninety_nine_percent_of_pairs_known`]).
    pairs_ninety_nine_percent_ms: u64,
    /// Every member knows 99% of the others.
    ninety_nine_percent_ms: u64,
    /// Every member knows every other.
    all_ms: u64,
    /// A latecomer joining the converged cluster is known by 99% of it
    /// ([`at_most_one_percent_missing`]: all but one below 100 members).
    join_ninety_nine_percent_ms: u64,
    /// ... and by all of it.
    join_all_ms: u64,
}

/// For N in 10, 30, 100, 300, 1000, all started at once with 3 seeds, measure:
/// - when 99% of the (observer, member) pairs were known, when every member knew 99% of the
///   others, and when all knew all;
/// - then, once converged, when a latecomer that joins through a seed is known by 99% of the
///   members, and by all.
///
/// Rounds are times divided by the gossip interval (200 ms), the period of foca's
/// dissemination. How far gossip has spread grows like log N (asserted: 99% of the pairs, and a
/// join known by 99%, within 2 log2 N rounds, and far from linear growth; over the 140 seeds
/// 50,000-50,139 the pairs took at most 0.45 log2 N rounds up to N = 300 and 1.25 log2 N at
/// 1,000, a join at most 1.53 log2 N, at N = 30). Each update is retransmitted
/// `4 log10(N + 1)` times, which now and then leaves a straggler: a member that never heard one
/// update. The push-pull anti-entropy exchange (one random member per
/// `reannounce_interval_ms`) reaches it, so the all-know-all times are bounded by twice every
/// member's 99% time plus one exchange interval (asserted).
///
/// Why the growth is asserted on pairs, and why "99%" there allows at least one straggler:
/// with fewer than 100 members one straggler is more than 1%, so "every member knows 99%" or
/// "99% of the members know the latecomer" means all, and at N = 10 so does 99% of the 90
/// pairs. That is a time set by when a probe or the next exchange happens to reach the
/// straggler, not by how fast gossip spreads: a member that started with the others can miss
/// the joins that spread before the seeds knew it, and one member of 30 can miss a latecomer's
/// join. Asserted that way the bounds failed on 26 of the 140 seeds 50,000-50,139: a join at
/// N = 30 on 11, the cluster at N = 10 / 30 / 100 / 300 on 1 / 8 / 5 / 1 (seed 50,034 at
/// N = 10: one member missed 3 of the 9 others at 250 ms and the last of them until 2.55 s). So the
/// cluster's 99% allows 1% of the pairs missing, rounded up, and at least one member's whole
/// view (N - 1 pairs); a join's allows 1% of the members, rounded up (one below 100). Every
/// member's 99% time is still printed.
#[test]
fn convergence_rounds_grow_like_log_n() {
    with_seeds("convergence_rounds_grow_like_log_n", 1, |seed| {
        let timing = Timing::lan();
        let interval_ms = timing.gossip_interval_ms as f64;
        let mut rows = Vec::new();
        for node_count in [10usize, 30, 100, 300, 1_000] {
            // One extra node, the latecomer, starts once the others have converged.
            let mut options = GossipClusterOptions::new(node_count + 1);
            options.cluster_size_hint = u32::try_from(node_count).unwrap_or(u32::MAX);
            options.start_spread_ms = 0;
            let mut sim = gossip_simulator(seed, &options);
            sim.set_output_filter(is_rare_event);
            schedule_starts(&mut sim, &options, 0..node_count);
            let live = everyone(node_count);
            let pairs_ninety_nine_percent = sim
                .run_until_condition(Millis(60_000), CHECK_EVERY_MS, |sim| {
                    ninety_nine_percent_of_pairs_known(sim, &live)
                })
                .unwrap_or_else(|| {
                    panic!("seed {seed}: N={node_count}: 99% of the pairs not known in 60 s")
                });
            let ninety_nine_percent = reach_ninety_nine_percent(&mut sim, &live, 60_000);
            // One anti-entropy interval closes the tail (see `thousand_members_converge`).
            let all_bound_ms = 2 * ninety_nine_percent.0 + timing.reannounce_interval_ms;
            let all = converge(&mut sim, &live, all_bound_ms);
            sim.run_for(5_000);
            let latecomer = node_count;
            let latecomer_addr = sim.addr(latecomer);
            let join_start = sim.now();
            sim.start(latecomer);
            let knowing = |sim: &Simulator<GossipCore>| {
                live.iter()
                    .filter(|&&node| !considers_unreachable(sim, node, latecomer_addr))
                    .count()
            };
            let join_ninety_nine_percent = sim
                .run_until_condition(join_start + 60_000, 10, |sim| {
                    at_most_one_percent_missing(knowing(sim), node_count)
                })
                .unwrap_or_else(|| panic!("seed {seed}: N={node_count}: the join did not spread"));
            let join_all = sim
                .run_until_condition(join_start + all_bound_ms, 10, |sim| {
                    knowing(sim) == node_count
                })
                .unwrap_or_else(|| {
                    panic!("seed {seed}: N={node_count}: the latecomer is not known by all")
                });
            rows.push(ConvergenceRow {
                node_count,
                log2: (node_count as f64).log2(),
                pairs_ninety_nine_percent_ms: pairs_ninety_nine_percent.0,
                ninety_nine_percent_ms: ninety_nine_percent.0,
                all_ms: all.0,
                join_ninety_nine_percent_ms: join_ninety_nine_percent - join_start,
                join_all_ms: join_all - join_start,
            });
        }
        let rounds = |ms: u64| ms as f64 / interval_ms;
        println!("seed {seed}; rounds = time / gossip interval ({interval_ms} ms)");
        println!(
            "{:>5} | {:>8} {:>7} {:>8} | {:>8} {:>7} | {:>8} {:>7} | {:>8} {:>7} {:>8} | {:>8} {:>7}",
            "N",
            "pairs99",
            "rounds",
            "r/log2N",
            "99%_ms",
            "rounds",
            "all_ms",
            "rounds",
            "join99ms",
            "rounds",
            "r/log2N",
            "joinall",
            "rounds"
        );
        for row in &rows {
            println!(
                "{:>5} | {:>8} {:>7.1} {:>8.2} | {:>8} {:>7.1} | {:>8} {:>7.1} | {:>8} {:>7.1} {:>8.2} | {:>8} {:>7.1}",
                row.node_count,
                row.pairs_ninety_nine_percent_ms,
                rounds(row.pairs_ninety_nine_percent_ms),
                rounds(row.pairs_ninety_nine_percent_ms) / row.log2,
                row.ninety_nine_percent_ms,
                rounds(row.ninety_nine_percent_ms),
                row.all_ms,
                rounds(row.all_ms),
                row.join_ninety_nine_percent_ms,
                rounds(row.join_ninety_nine_percent_ms),
                rounds(row.join_ninety_nine_percent_ms) / row.log2,
                row.join_all_ms,
                rounds(row.join_all_ms),
            );
        }
        for row in &rows {
            let cluster_rounds = rounds(row.pairs_ninety_nine_percent_ms);
            assert!(
                cluster_rounds <= 2.0 * row.log2,
                "seed {seed}: N={}: 99% of the pairs after {cluster_rounds} rounds, above 2 log2 N",
                row.node_count
            );
            let join_rounds = rounds(row.join_ninety_nine_percent_ms);
            assert!(
                join_rounds <= 2.0 * row.log2,
                "seed {seed}: N={}: a join reached 99% after {join_rounds} rounds, above 2 log2 N",
                row.node_count
            );
        }
        // Growth: 100 times more members, far fewer than 100 times more rounds.
        let (smallest, largest) = (&rows[0], &rows[rows.len() - 1]);
        let growth = rounds(largest.pairs_ninety_nine_percent_ms)
            / rounds(smallest.pairs_ninety_nine_percent_ms).max(1.0);
        let join_growth = rounds(largest.join_ninety_nine_percent_ms)
            / rounds(smallest.join_ninety_nine_percent_ms).max(1.0);
        println!("growth from N=10 to N=1000: cluster {growth:.1}x, one join {join_growth:.1}x");
        assert!(
            growth < 30.0,
            "seed {seed}: rounds grew {growth}x: {rows:?}"
        );
        assert!(
            join_growth < 10.0,
            "seed {seed}: join rounds grew {join_growth}x: {rows:?}"
        );
    });
}

/// Bytes per second each member sends once the cluster is at rest (converged, 10 s settled,
/// then 60 virtual seconds measured), from [`GossipCore::bytes_sent`] (envelopes included).
fn bytes_per_member_per_second_at_rest(seed: u64, node_count: usize) -> f64 {
    let options = GossipClusterOptions::new(node_count);
    let live = everyone(node_count);
    let mut sim = gossip_cluster(seed, &options);
    sim.set_output_filter(is_rare_event);
    reach_ninety_nine_percent(&mut sim, &live, 60_000);
    converge(&mut sim, &live, 60_000);
    sim.run_for(10_000);
    let total = |sim: &Simulator<GossipCore>| -> u64 {
        live.iter()
            .filter_map(|&node| sim.actor(node).map(GossipCore::bytes_sent))
            .sum()
    };
    let before = total(&sim);
    let measured_ms = 60_000;
    sim.run_for(measured_ms);
    let sent = total(&sim) - before;
    sent as f64 / node_count as f64 / (measured_ms as f64 / 1_000.0)
}

/// Gossip's cost at rest per member at 10 and 100 members (the 1,000-member row is
/// `bytes_at_rest_thousand`, ignored by default). At rest a member sends about two SWIM
/// probes' worth per probe period, metadata to 3 members per refresh, and one anti-entropy
/// summary per 5 s; none of it grows with N except foca's piggybacked updates (none at rest).
#[test]
fn bytes_at_rest() {
    with_seeds("bytes_at_rest", 1, |seed| {
        for node_count in [10, 100] {
            let rate = bytes_per_member_per_second_at_rest(seed, node_count);
            println!("seed {seed}: {node_count} members at rest: {rate:.0} bytes/s per member");
            assert!(
                rate < 2_000.0,
                "seed {seed}: {node_count} members: {rate} bytes/s per member at rest"
            );
        }
    });
}

/// The 1,000-member row of [`bytes_at_rest`]: a 1,000-member join first (about a minute of
/// CPU). Run with
/// `cargo test -p ha-tests --test gossip_sim -- --ignored bytes_at_rest_thousand --nocapture`.
#[test]
#[ignore = "a 1,000-member join, about a minute of CPU: run with --ignored"]
fn bytes_at_rest_thousand() {
    with_seeds("bytes_at_rest_thousand", 1, |seed| {
        let rate = bytes_per_member_per_second_at_rest(seed, 1_000);
        println!(
            "seed {seed}: 1000 members at rest: {rate:.0} bytes/s per member; peak resident \
             memory {}",
            peak_resident_memory()
        );
        assert!(rate < 2_000.0, "seed {seed}: {rate} bytes/s per member");
    });
}

/// This process's current resident memory in MiB (`VmRSS`), or 0 when unknown.
fn resident_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| {
                    line.trim_start_matches("VmRSS:")
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib / 1_024)
}

/// Member updates and metadata announcements waiting in every live member's dissemination
/// backlogs, summed: the join's transient memory (see `GossipCore::dissemination_backlog`).
fn backlogs(sim: &Simulator<GossipCore>, live: &[usize]) -> (usize, usize) {
    live.iter()
        .filter_map(|&node| sim.actor(node).map(GossipCore::dissemination_backlog))
        .fold((0, 0), |(updates, announcements), (u, a)| {
            (updates + u, announcements + a)
        })
}

/// A number from the environment, or `default`.
fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Run in steps of one virtual second until `condition` holds, printing progress (virtual
/// and wall time, missing (observer, member) pairs, resident memory) every 5 virtual seconds.
/// Panics after `limit_ms`, or as soon as resident memory passes `rss_limit_mib` (the machine
/// is shared: the run reports how far it got instead of exhausting memory).
fn run_watched(
    sim: &mut Simulator<GossipCore>,
    live: &[usize],
    stage: &str,
    limit_ms: u64,
    rss_limit_mib: u64,
    wall: std::time::Instant,
    mut condition: impl FnMut(&Simulator<GossipCore>) -> bool,
) -> Millis {
    let deadline = sim.now() + limit_ms;
    let mut steps = 0u64;
    loop {
        let step_end = (sim.now() + 1_000).min(deadline);
        if let Some(at) = sim.run_until_condition(step_end, CHECK_EVERY_MS, &mut condition) {
            return at;
        }
        steps += 1;
        let rss = resident_memory_mib();
        if steps.is_multiple_of(5) || rss > rss_limit_mib {
            let (updates, announcements) = backlogs(sim, live);
            println!(
                "  {stage}: virtual {}, wall {:.0} s, {} (observer, member) pairs missing, \
                 {} events, resident {rss} MiB, backlogs {updates} updates + {announcements} \
                 announcements",
                sim.now(),
                wall.elapsed().as_secs_f64(),
                missing_pairs(sim, live),
                sim.events_processed()
            );
        }
        assert!(
            rss <= rss_limit_mib,
            "seed {}: {} members: resident memory {rss} MiB passed the limit of {rss_limit_mib} \
             MiB during {stage} at {} (HA_SIM_RSS_LIMIT_MIB raises it)",
            sim.seed(),
            live.len(),
            sim.now()
        );
        assert!(
            sim.now() < deadline,
            "seed {}: {} members: {stage} not reached within {limit_ms} ms",
            sim.seed(),
            live.len()
        );
    }
}

/// The crash detection time, all survivors, of `thousand_members_converge` (seed 0) when this
/// test was written: the 10,000-member target is at most twice it.
const THOUSAND_MEMBERS_DETECTION_MS: u64 = 2_062;

/// Issue 17's 10,000-member simulation: the members join (through 3 seeds, starts spread
/// over a second) until all know all, the cluster rests and its per-member bytes/s are
/// measured over 60 s, then a crashed member must be declared unreachable by every survivor.
/// Prints the times (virtual and wall), events, peak resident memory and bytes per (observer,
/// member) pair. `HA_SIM_MEMBERS` sets another size (e.g. 3000 for a quicker run);
/// `HA_SIM_RSS_LIMIT_MIB` (default 16,000) stops the run with a report before memory runs out.
/// Not run by default (tens of minutes of CPU at 10,000); run with
/// `cargo test -p ha-tests --profile sim --test gossip_sim -- --ignored ten_thousand_members --nocapture`.
#[test]
#[ignore = "10,000 members: tens of minutes and ~10+ GiB; see tests/README.md"]
fn ten_thousand_members() {
    with_seeds("ten_thousand_members", 1, |seed| {
        let node_count = usize::try_from(env_number("HA_SIM_MEMBERS", 10_000)).unwrap_or(10_000);
        let rss_limit_mib = env_number("HA_SIM_RSS_LIMIT_MIB", 16_000);
        let wall = std::time::Instant::now();
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        let mut sim = gossip_cluster(seed, &options);
        sim.set_output_filter(is_rare_event);
        println!("seed {seed}: {node_count} members joining (resident limit {rss_limit_mib} MiB)");
        let ninety_nine_percent_at = run_watched(
            &mut sim,
            &live,
            "99%",
            600_000,
            rss_limit_mib,
            wall,
            |sim| everyone_knows_ninety_nine_percent(sim, &live),
        );
        let ninety_nine_wall = wall.elapsed().as_secs_f64();
        let converged_at = run_watched(
            &mut sim,
            &live,
            "all know all",
            600_000,
            rss_limit_mib,
            wall,
            |sim| all_see_each_other(sim, &live),
        );
        let pairs = (node_count * node_count.saturating_sub(1)) as f64;
        let peak = peak_resident_memory();
        let peak_kib: f64 = peak
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(f64::NAN);
        println!(
            "seed {seed}: {node_count} members: every member knew 99% of the others at \
             {ninety_nine_percent_at} (wall {ninety_nine_wall:.0} s), all knew all at \
             {converged_at} (virtual; {:.2}x; wall {:.0} s); {} events; {} unreachable \
             events; peak resident memory {peak} ({:.0} bytes per (observer, member) pair)",
            converged_at.0 as f64 / ninety_nine_percent_at.0 as f64,
            wall.elapsed().as_secs_f64(),
            sim.events_processed(),
            unreachable_events(&sim, Millis::ZERO),
            peak_kib * 1_024.0 / pairs
        );
        // At rest: 10 s to settle, then 60 s measured (as `bytes_per_member_per_second_at_rest`).
        sim.run_for(10_000);
        let total = |sim: &Simulator<GossipCore>| -> u64 {
            live.iter()
                .filter_map(|&node| sim.actor(node).map(GossipCore::bytes_sent))
                .sum()
        };
        let before = total(&sim);
        sim.run_for(60_000);
        let rate = (total(&sim) - before) as f64 / node_count as f64 / 60.0;
        println!(
            "seed {seed}: {node_count} members at rest: {rate:.0} bytes/s per member; resident \
             {} MiB (wall {:.0} s)",
            resident_memory_mib(),
            wall.elapsed().as_secs_f64()
        );
        let (first_ms, last_ms, bound_ms) = crash_and_detect(&mut sim, &options, 4);
        println!(
            "seed {seed}: {node_count} members: a crashed member was declared unreachable by \
             the first survivor after {first_ms} ms, by all {} after {last_ms} ms (bound \
             {bound_ms} ms; {:.2}x the 1,000-member {THOUSAND_MEMBERS_DETECTION_MS} ms); wall \
             {:.0} s, peak resident memory {}",
            node_count - 1,
            last_ms as f64 / THOUSAND_MEMBERS_DETECTION_MS as f64,
            wall.elapsed().as_secs_f64(),
            peak_resident_memory()
        );
        assert!(
            rate < 2_000.0,
            "seed {seed}: {rate} bytes/s per member at rest"
        );
    });
}

/// Bytes per second each member of `live` sends over the next `measured_ms` (as
/// `bytes_per_member_per_second_at_rest` measures after its join).
fn bytes_per_member_per_second_from_now(
    sim: &mut Simulator<GossipCore>,
    live: &[usize],
    measured_ms: u64,
) -> f64 {
    let total = |sim: &Simulator<GossipCore>| -> u64 {
        live.iter()
            .filter_map(|&node| sim.actor(node).map(GossipCore::bytes_sent))
            .sum()
    };
    let before = total(sim);
    sim.run_for(measured_ms);
    (total(sim) - before) as f64 / live.len() as f64 / (measured_ms as f64 / 1_000.0)
}

/// The warm start (`warm_gossip_cluster`, what `ten_thousand_members_warm` measures with)
/// against a cluster of the same size that really joined, at 100 members: it passes the
/// join's predicate at once with all metadata held, declares nobody down at rest, sends within
/// 5% of the joined cluster's bytes per member at rest, and detects a crash within the bound.
#[test]
fn warm_start_rests_like_a_joined_cluster() {
    with_seeds("warm_start_rests_like_a_joined_cluster", 1, |seed| {
        let node_count = 100;
        let joined = bytes_per_member_per_second_at_rest(seed, node_count);
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        let mut sim = warm_gossip_cluster(seed, &options);
        assert!(
            all_see_each_other(&sim, &live),
            "seed {seed}: the warm start is not converged"
        );
        assert!(
            all_hold_all_metadata(&sim, &live),
            "seed {seed}: a member lacks another's metadata after the warm start"
        );
        sim.run_for(10_000);
        let warm = bytes_per_member_per_second_from_now(&mut sim, &live, 60_000);
        println!(
            "seed {seed}: {node_count} members at rest: {warm:.0} bytes/s per member from a warm \
             start, {joined:.0} after a join"
        );
        assert_eq!(
            unreachable_events(&sim, Millis::ZERO),
            0,
            "seed {seed}: live members declared unreachable at rest"
        );
        assert!(
            (warm - joined).abs() <= joined * 0.05,
            "seed {seed}: {warm:.0} bytes/s per member from a warm start, {joined:.0} after a join"
        );
        let (first_ms, last_ms, bound_ms) = crash_and_detect(&mut sim, &options, 10);
        println!(
            "seed {seed}: warm start: a crash seen by the first survivor after {first_ms} ms, by \
             all after {last_ms} ms (bound {bound_ms} ms)"
        );
    });
}

/// Run for `duration_ms` in steps of one virtual second, panicking as soon as resident memory
/// passes `rss_limit_mib` (see `run_watched`).
fn run_for_watched(
    sim: &mut Simulator<GossipCore>,
    duration_ms: u64,
    stage: &str,
    rss_limit_mib: u64,
) {
    let end = sim.now() + duration_ms;
    while sim.now() < end {
        let step_end = (sim.now() + 1_000).min(end);
        sim.run_until(step_end);
        let rss = resident_memory_mib();
        assert!(
            rss <= rss_limit_mib,
            "seed {}: resident memory {rss} MiB passed the limit of {rss_limit_mib} MiB during \
             {stage} at {} (HA_SIM_RSS_LIMIT_MIB raises it)",
            sim.seed(),
            sim.now()
        );
    }
}

/// Issue 17's 10,000-member at-rest and crash figures from a warm start: the cluster is built
/// already converged ([`warm_gossip_cluster`]: every member learns every other and their
/// metadata through `GossipCore::learn_members`) instead of simulating the join, which costs
/// hours of CPU at 10,000 (`ten_thousand_members`). The build must pass the join's own
/// predicate (`all_see_each_other`) and every member must hold every member's metadata; then,
/// as `ten_thousand_members` does after its join, the cluster rests 10 s, its bytes/s per
/// member are measured over 60 s (with no member declared unreachable meanwhile), and a
/// crashed member must be declared unreachable by every survivor. Prints wall time per phase,
/// events, resident memory and bytes per (observer, member) pair.
///
/// `HA_SIM_MEMBERS` sets the size (default 10,000); run the same size through
/// `ten_thousand_members` to compare with a cluster that really joined.
/// `HA_SIM_RSS_LIMIT_MIB` (default 16,000) stops the run with a report before memory runs
/// out (checked after the build and every virtual second after it). Not run by default; run
/// with
/// `cargo test -p ha-tests --profile sim --test gossip_sim -- --ignored ten_thousand_members_warm --nocapture`.
#[test]
#[ignore = "10,000 members from a warm start: minutes of CPU and ~10 GiB; see tests/README.md"]
fn ten_thousand_members_warm() {
    with_seeds("ten_thousand_members_warm", 1, |seed| {
        let node_count = usize::try_from(env_number("HA_SIM_MEMBERS", 10_000)).unwrap_or(10_000);
        let rss_limit_mib = env_number("HA_SIM_RSS_LIMIT_MIB", 16_000);
        let wall = std::time::Instant::now();
        let options = GossipClusterOptions::new(node_count);
        let live = everyone(node_count);
        println!(
            "seed {seed}: {node_count} members, warm start (resident limit {rss_limit_mib} MiB)"
        );
        let mut sim = warm_gossip_cluster(seed, &options);
        let built_at = sim.now();
        let build_wall = wall.elapsed().as_secs_f64();
        let rss_built = resident_memory_mib();
        let pairs = (node_count * node_count.saturating_sub(1)) as f64;
        println!(
            "seed {seed}: {node_count} members built at {built_at} (virtual; wall {build_wall:.1} \
             s); {} events; resident {rss_built} MiB ({:.0} bytes per (observer, member) pair)",
            sim.events_processed(),
            rss_built as f64 * 1_048_576.0 / pairs
        );
        assert!(
            rss_built <= rss_limit_mib,
            "seed {seed}: resident memory {rss_built} MiB after the build passed the limit of \
             {rss_limit_mib} MiB"
        );
        assert!(
            all_see_each_other(&sim, &live),
            "seed {seed}: the warm start is not converged: {} (observer, member) pairs missing",
            missing_pairs(&sim, &live)
        );
        assert!(
            all_hold_all_metadata(&sim, &live),
            "seed {seed}: a member lacks another's metadata after the warm start"
        );
        println!(
            "seed {seed}: converged (all see each other, all hold all metadata; checked in wall \
             {:.1} s)",
            wall.elapsed().as_secs_f64() - build_wall
        );
        // At rest: 10 s to settle, then 60 s measured (as `ten_thousand_members`).
        run_for_watched(&mut sim, 10_000, "the settle", rss_limit_mib);
        let total = |sim: &Simulator<GossipCore>| -> u64 {
            live.iter()
                .filter_map(|&node| sim.actor(node).map(GossipCore::bytes_sent))
                .sum()
        };
        let before = total(&sim);
        let events_before = sim.events_processed();
        let rest_wall = std::time::Instant::now();
        run_for_watched(&mut sim, 60_000, "the measured rest", rss_limit_mib);
        let rate = (total(&sim) - before) as f64 / node_count as f64 / 60.0;
        println!(
            "seed {seed}: {node_count} members at rest: {rate:.0} bytes/s per member; {} events \
             in the 60 s measured (wall {:.0} s); resident {} MiB (wall {:.0} s)",
            sim.events_processed() - events_before,
            rest_wall.elapsed().as_secs_f64(),
            resident_memory_mib(),
            wall.elapsed().as_secs_f64()
        );
        let false_downs = unreachable_events(&sim, Millis::ZERO);
        assert_eq!(
            false_downs, 0,
            "seed {seed}: live members declared unreachable at rest"
        );
        assert!(
            all_see_each_other(&sim, &live),
            "seed {seed}: the cluster lost its convergence at rest: {} pairs missing",
            missing_pairs(&sim, &live)
        );
        let (first_ms, last_ms, bound_ms) = crash_and_detect(&mut sim, &options, 4);
        println!(
            "seed {seed}: {node_count} members: a crashed member was declared unreachable by \
             the first survivor after {first_ms} ms, by all {} after {last_ms} ms (bound \
             {bound_ms} ms; {:.2}x the 1,000-member {THOUSAND_MEMBERS_DETECTION_MS} ms); wall \
             {:.0} s, {} events, peak resident memory {}",
            node_count - 1,
            last_ms as f64 / THOUSAND_MEMBERS_DETECTION_MS as f64,
            wall.elapsed().as_secs_f64(),
            sim.events_processed(),
            peak_resident_memory()
        );
        assert!(
            rate < 2_000.0,
            "seed {seed}: {rate} bytes/s per member at rest"
        );
    });
}
