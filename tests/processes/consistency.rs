//! Issue 14, item 3, on real processes: the replica consistency monitor catches a
//! deliberately nondeterministic state machine on one node within one checkpoint interval,
//! and repairs it.
//!
//! Three `bot` nodes on loopback with checkpoints at least every [`EVERY_ENTRIES`] entries
//! (`HA_CONSISTENCY_CHECK__EVERY_ENTRIES`; the leader places each checkpoint entry once that
//! many entries, and as many log bytes as the state held at the last one, were appended).
//! Node n3 (the lowest priority, so a follower) runs the bot's fault injection
//! (`BOT_FAULT_NONDETERMINISTIC_NODE=n3`, `BOT_FAULT_NONDETERMINISTIC_AT_INDEX=`[`FAULT_AT`]):
//! the first journal append it applies at or past that index is recorded with another
//! `unix_ms` than the other replicas record, as a state machine reading its own clock would.
//! [`FAULT_AT`] is past the first checkpoint, so the test shows:
//!
//! - before the fault, the leader's `/v1/cluster` says `digest_ok: true` for n3;
//! - the leader finds n3 diverged (`digest_ok: false`) at the first checkpoint after the index
//!   where the fault fired (n3's log line names it): the checkpoint before that one, as the
//!   leader's own row showed it, lies before the fault. Within one checkpoint;
//! - n3 announces it (`replica_diverged` EVENT line) and repairs itself by reinstalling the
//!   leader's snapshot (`replica_repaired`, `ha_consistency_repairs_total` 1,
//!   `ha_consistency_diverged` 0); it never leads;
//! - at a later checkpoint n3's digest equals the majority's again (`digest_ok: true`): its
//!   whole applied state (SHA-256 of the snapshot stream) is the leader's, and the leader
//!   counted exactly one mismatch (`ha_consistency_mismatches_total` 1).
//!
//! Every wait has a deadline; every node is killed by its process id when the cluster is
//! dropped. Takes about 11 s on a loaded 2-core machine (the cluster applies 10-20 entries a
//! second: journal appends and lock renewals).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::TestCluster;
use support::serial::one_scenario_at_a_time;

/// Fewest entries between checkpoints: 25, so the first checkpoint falls at about index 26,
/// before the fault.
const EVERY_ENTRIES: u64 = 25;
/// The index at or past which n3's journal records an append differently: past the first
/// checkpoint.
const FAULT_AT: u64 = 2 * EVERY_ENTRIES + 1;
const WAIT: Duration = Duration::from_secs(120);
const FAULT_NODE: usize = 2;

/// The leader's `/v1/cluster` (`None` unless `leader` answered it as the leader).
fn cluster_view(cluster: &TestCluster, leader: usize) -> Option<Value> {
    let (status, body) = cluster.call(leader, "GET", "/v1/cluster", "")?;
    (status == 200 && body["answered_by"] == body["leader"]).then_some(body)
}

/// Member `id`'s row of a `/v1/cluster` body.
fn row<'a>(view: &'a Value, id: &str) -> Option<&'a Value> {
    view["members"]
        .as_array()?
        .iter()
        .find(|member| member["id"] == id)
}

/// `(digest_ok, digest_index)` of n3's row at the current leader, with the checkpoint the
/// leader last judged itself at (its own row's `digest_index`), from one `/v1/cluster`.
fn verdict(cluster: &TestCluster) -> Option<(bool, u64, Option<u64>)> {
    let view = cluster_view(cluster, cluster.leader(&[])?)?;
    let n3 = row(&view, "n3")?;
    let own = row(&view, view["leader"].as_str()?).and_then(|own| own["digest_index"].as_u64());
    Some((
        n3["digest_ok"].as_bool()?,
        n3["digest_index"].as_u64()?,
        own,
    ))
}

/// The index n3's journal recorded differently at, from its log line.
fn fault_fired_at(stderr: &str) -> Option<u64> {
    let line = stderr
        .lines()
        .find(|line| line.contains("this replica recorded an append differently"))?;
    let after = &line[line.find("index=")? + "index=".len()..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn a_nondeterministic_replica_is_caught_within_one_checkpoint_and_repaired() {
    let _serial = one_scenario_at_a_time();
    let every = EVERY_ENTRIES.to_string();
    let fault_at = FAULT_AT.to_string();
    let mut cluster = TestCluster::start_with_env(
        &[3, 2, 1],
        &[
            ("HA_CONSISTENCY_CHECK__EVERY_ENTRIES", every.as_str()),
            ("BOT_FAULT_NONDETERMINISTIC_NODE", "n3"),
            ("BOT_FAULT_NONDETERMINISTIC_AT_INDEX", fault_at.as_str()),
        ],
    );
    let leader = cluster.wait_for_leader(&[], WAIT);
    assert_ne!(leader, FAULT_NODE, "n3 has the lowest priority");

    // Every checkpoint the leader judged itself at, as polling every 50 ms saw them
    // (checkpoints are at least 25 entries, about 2 s, apart).
    let mut checkpoints = std::collections::BTreeSet::new();

    // Before the fault fires, n3's checkpoints match.
    let before = cluster.wait_until("n3 judged consistent before the fault", WAIT, |cluster| {
        let seen = verdict(cluster)?;
        checkpoints.extend(seen.2);
        Some(seen).filter(|(ok, index, _)| *ok && *index < FAULT_AT)
    });
    println!("before the fault: n3 digest_ok at checkpoint {}", before.1);

    // The first checkpoint after the fault catches it.
    let started = Instant::now();
    let caught = cluster.wait_until("n3 found diverged", WAIT, |cluster| {
        let seen = verdict(cluster)?;
        checkpoints.extend(seen.2);
        Some(seen).filter(|(ok, _, _)| !*ok)
    });
    let caught_at = caught.1;
    println!(
        "n3 found diverged at checkpoint {caught_at} ({:?} after the last good one was seen); \
         checkpoints seen: {checkpoints:?}",
        started.elapsed()
    );
    assert!(
        caught_at >= FAULT_AT,
        "the fault fires at or past index {FAULT_AT}: no checkpoint before it can catch it"
    );

    // n3 repairs itself from the leader's snapshot.
    let repaired_after = Instant::now();
    cluster.wait_until("n3 repaired", WAIT, |cluster| {
        let repairs = cluster.metric(FAULT_NODE, "ha_consistency_repairs_total")?;
        let diverged = cluster.metric(FAULT_NODE, "ha_consistency_diverged")?;
        (repairs >= 1.0 && diverged == 0.0).then_some(())
    });
    println!(
        "n3 repaired {:?} after it was seen diverged",
        repaired_after.elapsed()
    );
    assert_eq!(
        cluster.metric(FAULT_NODE, "ha_consistency_repairs_total"),
        Some(1.0),
        "one repair"
    );

    // A later checkpoint matches again: n3's whole state is the majority's.
    let after = cluster.wait_until("n3 consistent again", WAIT, |cluster| {
        verdict(cluster).filter(|(ok, index, _)| *ok && *index > caught_at)
    });
    println!("after the repair: n3 digest_ok at checkpoint {}", after.1);
    let leader = cluster.wait_for_leader(&[], WAIT);
    assert_eq!(
        cluster.metric(leader, "ha_consistency_mismatches_total"),
        Some(1.0),
        "exactly one mismatch: the fault fired once"
    );

    // n3 announced its divergence and its repair (EVENT lines), and it led at no time.
    let lines = cluster.stdout_lines(FAULT_NODE);
    let checkpoint = format!("checkpoint {caught_at}");
    for kind in ["replica_diverged", "replica_repaired"] {
        assert!(
            lines
                .iter()
                .any(|line| line.contains(&format!("\"kind\":\"{kind}\""))
                    && line.contains(&checkpoint)),
            "n3 printed {kind} for {checkpoint}: {lines:#?}"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|line| line.contains("\"role\":\"leader\"")),
        "n3 never led"
    );

    // Caught at the first checkpoint after the index where the fault fired: the checkpoint
    // before the one that caught it lies before the fault.
    let (_, stderr) = cluster.terminate_with_log(FAULT_NODE);
    let fired = fault_fired_at(&stderr)
        .unwrap_or_else(|| panic!("n3 logged where its fault fired: {stderr}"));
    let previous = checkpoints.range(..caught_at).next_back().copied();
    println!("the fault fired at index {fired}; the checkpoint before the catch: {previous:?}");
    assert!(
        fired >= FAULT_AT && fired < caught_at,
        "fired at {fired}, caught at {caught_at}"
    );
    assert!(
        previous.is_some_and(|previous| previous < fired),
        "a checkpoint between the fault ({fired}) and the catch ({caught_at}) passed n3: \
         {checkpoints:?}"
    );
}
