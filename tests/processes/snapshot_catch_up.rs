//! A follower whose data dir was wiped catches up from a snapshot of a large state, on a
//! 3-process `bot` cluster on loopback (issue 18, "What must be shown").
//!
//! The state is written as 1 MiB values (`VALUE_BYTES_MAX`) through `PUT /v1/kv/<key>` by a
//! few concurrent writers: more than the 64 MiB of log after which a node takes a snapshot,
//! so every node takes at least one and a wiped follower can only come back through a
//! snapshot install. Then three scenarios, each ending with the follower's applied index at
//! the leader's commit index and every key's version and value digest, read from the
//! follower's own copy (`GET /v1/kv/<key>?consistency=eventual` is answered from the local
//! replica), equal to the leader's and to what was written:
//!
//! - **A, wipe and restart**: SIGKILL a follower, remove its data dir, restart it. It must
//!   install a snapshot (`ha_snapshot_installs_total` >= 1 on it) and receive at least the
//!   snapshot's bytes (`ha_snapshot_bytes_received_total`).
//! - **B, leader killed mid-install**: wipe the other follower; once the leader's
//!   `/v1/cluster` row for it says `catch_up.sent_bytes` is between 20% and 70% of
//!   `catch_up.total_bytes`, SIGKILL the leader. The follower completes from the new leader,
//!   without the old one (the two survivors need each other for a quorum, so the cluster
//!   commits again only once the install is done); then the old leader is restarted.
//! - **C, follower killed mid-install**: wipe a follower; once its own
//!   `ha_snapshot_bytes_received_total` is between 20% and 70% of the snapshot, SIGKILL it
//!   and restart it on the same data dir. It completes with `ha_snapshot_resumes_total` >= 1
//!   and receives fewer bytes than the whole snapshot after the restart: it resumed.
//!
//! To catch a transfer halfway whatever the speed of the machine, the receiving follower is
//! paced with SIGSTOP/SIGCONT once its transfer has started: it runs for a slice (5 ms at
//! first, halved whenever a slice moved more than 5% of the snapshot, doubled up to 20 ms
//! when it moved less than 1%) then is stopped for 30 ms, far less than an election timeout. The leader's flow control (a few chunks
//! in flight) holds the sender while the receiver is stopped.
//!
//! The fields this reads come with the streamed install: the `catch_up` object of each peer
//! in the leader's `/v1/cluster`, and the `ha_snapshot_*` metrics. Where one is missing the
//! test fails naming it. Every wait has a deadline, a transfer that stops moving for
//! `STALL` fails, and every node is killed by its process id when the cluster is dropped.
//!
//! Two sizes: 80 MiB runs with `cargo test` (just over the 64 MiB snapshot threshold); the
//! 200 MiB of the issue is `#[ignore]` because it takes minutes in a debug build:
//! `cargo test -p ha-examples --test snapshot_catch_up -- --ignored --nocapture`.
//!
//! On the code before issue 18 (debug build): 200 MiB were written in 101.6 s, then the test
//! failed with "n1's /v1/metrics has no ha_snapshots_taken_total". A local variant without
//! the snapshot fields showed the wiped follower never catching up at all (applied index 0
//! for 60 s, the leader holding its old `match_index`), and the same variant without the
//! wipe (followers behind by a few 1 MiB entries) ran scenarios A, B and C to the end.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ha::lock::VALUE_BYTES_MAX;
use nix::sys::signal::Signal;
use serde_json::Value;
use support::cluster::TestCluster;
use support::serial::one_scenario_at_a_time;

const MIB: u64 = 1 << 20;
const ELECTION: Duration = Duration::from_secs(30);
/// Environment of every node: WAN timing (elections after 1 to 2 s of silence), because a
/// debug build applying 1 MiB values stalls a node's replica task longer than the LAN
/// preset's 150 ms election timeout (with 4 writers and LAN timing the cluster changed
/// leader every second and no value could be written; a release build wrote 16 MiB/s with
/// two writers and LAN timing). Nodes also inherit the test's own
/// environment, so `HA_*` variables given to `cargo test` reach them.
const NODE_ENV: &[(&str, &str)] = &[("HA_TIMING_PRESET", "wan")];
/// Concurrent writers of the state: one. On the code before issue 18, in a debug build, two
/// concurrent writers of 1 MiB values made the leader lose its majority even with WAN
/// timing (writes answered 503 `unknown_outcome` after their 5 s deadline), while one
/// writes a value in 0.3 to 1 s.
const WRITERS: usize = 1;
/// Concurrent readers of a node's copy of the state.
const READERS: usize = 4;
/// Attempts per value before the test gives up on writing it.
const WRITE_ATTEMPTS_MAX: u32 = 5;
/// A catch-up that moves neither bytes nor the applied index for this long has failed.
const STALL: Duration = Duration::from_secs(60);
/// The longest any one catch-up may take, however it progresses.
const CATCH_UP_MAX: Duration = Duration::from_secs(600);
/// How long the leader may take to take its first snapshot once the state is written.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(120);
/// The window of the transfer in which a node is killed ("halfway"), as fractions of the
/// snapshot's bytes.
const KILL_WINDOW: (f64, f64) = (0.20, 0.70);
/// Pacing: how long the paced follower runs per pulse at first, and at least and at most (a
/// pulse that moved the transfer more than `PULSE_STEP_MAX` of the snapshot halves it, one
/// that moved it less than a fifth of that doubles it), how long it is stopped, and the most
/// pulses before the test gives up on catching the window.
const RUN_SLICE_START: Duration = Duration::from_millis(5);
const RUN_SLICE_MIN: Duration = Duration::from_millis(1);
const RUN_SLICE_MAX: Duration = Duration::from_millis(20);
const PULSE_STEP_MAX: f64 = 0.05;
const STOP_SLICE: Duration = Duration::from_millis(30);
const PULSES_MAX: u32 = 20_000;
/// How often an unpaced transfer is polled.
const POLL: Duration = Duration::from_millis(10);

#[test]
fn a_wiped_follower_catches_up_through_a_snapshot_of_80_mib_and_resumes_after_kills() {
    catch_up_scenarios(80);
}

#[test]
#[ignore = "200 MiB of state, minutes in a debug build: \
            cargo test -p ha-examples --test snapshot_catch_up -- --ignored --nocapture"]
fn a_wiped_follower_catches_up_through_a_snapshot_of_200_mib_and_resumes_after_kills() {
    catch_up_scenarios(200);
}

/// Run scenarios A, B and C on a fresh cluster holding `state_mib` MiB of values; on a
/// failure, print the tail of every node's log before failing.
fn catch_up_scenarios(state_mib: u64) {
    let _one = one_scenario_at_a_time();
    let started = Instant::now();
    let mut cluster = TestCluster::start_with_env(&[1, 1, 1], NODE_ENV);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        scenarios(&mut cluster, state_mib)
    }));
    if let Err(panic) = outcome {
        eprintln!("{}", cluster.kill_and_collect_logs());
        std::panic::resume_unwind(panic);
    }
    println!(
        "{state_mib} MiB: scenarios A, B and C passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

fn scenarios(cluster: &mut TestCluster, state_mib: u64) {
    let leader = cluster.wait_for_leader(&[], ELECTION);
    wait_until_every_node_follows(cluster, leader);

    // The state.
    let keys = state_mib;
    let started = Instant::now();
    write_state(cluster, keys);
    let wrote_in = started.elapsed();
    println!(
        "wrote {keys} values of {VALUE_BYTES_MAX} bytes with {WRITERS} writer(s) in {:.1} s \
         ({:.1} MiB/s)",
        wrote_in.as_secs_f64(),
        keys as f64 / wrote_in.as_secs_f64()
    );
    let leader = cluster.wait_for_leader(&[], ELECTION);
    let snapshot_wait = Instant::now();
    let taken = cluster.wait_until("a snapshot taken by the leader", SNAPSHOT_WAIT, |cluster| {
        required_metric(cluster, leader, "ha_snapshots_taken_total").filter(|taken| *taken >= 1.0)
    });
    let snapshot_bytes = required_metric(cluster, leader, "ha_snapshot_bytes").unwrap_or(0.0);
    println!(
        "leader {} took {taken} snapshot(s) ({:.1} s after the writes); its current snapshot \
         is {:.1} MiB",
        cluster.specs[leader].id,
        snapshot_wait.elapsed().as_secs_f64(),
        snapshot_bytes / MIB as f64
    );
    let expected = expected_listing(cluster, leader, keys);
    for index in 0..3 {
        wait_until_applied(cluster, index, leader);
        assert_same_state(cluster, index, &expected);
    }

    // A: wipe a follower and restart it.
    let wiped = follower(cluster, leader, &[]);
    let report = wipe_and_catch_up(cluster, leader, wiped, Pace::Free);
    println!("A: {report}");
    assert!(
        report.installs >= 1.0,
        "A: {} caught up without installing a snapshot ({report})",
        cluster.specs[wiped].id
    );
    assert!(
        report.received_bytes >= report.snapshot_bytes,
        "A: {} received {} bytes, less than the {}-byte snapshot ({report})",
        cluster.specs[wiped].id,
        report.received_bytes,
        report.snapshot_bytes
    );
    assert_same_state(cluster, wiped, &expected);

    // B: wipe the other follower, kill the leader halfway through its install.
    let wiped = follower(cluster, leader, &[wiped]);
    let report = wipe_and_catch_up(cluster, leader, wiped, Pace::KillLeaderHalfway);
    println!("B: {report}");
    assert!(
        report.installs >= 1.0,
        "B: {} caught up without installing a snapshot ({report})",
        cluster.specs[wiped].id
    );
    assert_same_state(cluster, wiped, &expected);
    // The old leader comes back on its data dir and catches up too.
    let new_leader = report.leader_after;
    cluster.spawn(leader);
    wait_until_applied(cluster, leader, new_leader);
    assert_same_state(cluster, leader, &expected);

    // C: wipe a follower (the old leader: the one not wiped yet), kill it halfway, restart it.
    let leader = cluster.wait_for_leader(&[], ELECTION);
    let wiped = if leader != report.leader_before {
        report.leader_before
    } else {
        follower(cluster, leader, &[])
    };
    let report = wipe_and_catch_up(cluster, leader, wiped, Pace::KillFollowerHalfway);
    println!("C: {report}");
    assert!(
        report.resumes >= 1.0,
        "C: {} restarted mid-install did not resume (ha_snapshot_resumes_total {}; {report})",
        cluster.specs[wiped].id,
        report.resumes
    );
    assert!(
        report.installs >= 1.0,
        "C: {} caught up without installing a snapshot ({report})",
        cluster.specs[wiped].id
    );
    assert!(
        report.received_bytes < report.snapshot_bytes,
        "C: after its restart {} received {} bytes, the whole {}-byte snapshot again: it \
         restarted the transfer instead of resuming ({report})",
        cluster.specs[wiped].id,
        report.received_bytes,
        report.snapshot_bytes
    );
    assert_same_state(cluster, wiped, &expected);

    // Every node holds the same state at the end.
    let leader = cluster.wait_for_leader(&[], ELECTION);
    for index in 0..3 {
        wait_until_applied(cluster, index, leader);
        assert_same_state(cluster, index, &expected);
    }
}

/// The key of value `number`.
fn key(number: u64) -> String {
    format!("state/{number:05}")
}

/// Value `number`: `VALUE_BYTES_MAX` bytes of text from a generator seeded by the number, so
/// no two values are alike and none compresses to nothing.
fn value(number: u64) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-_";
    let mut state = number.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut text = Vec::with_capacity(VALUE_BYTES_MAX);
    while text.len() < VALUE_BYTES_MAX {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        for byte in state.to_le_bytes() {
            if text.len() < VALUE_BYTES_MAX {
                text.push(alphabet[usize::from(byte) % alphabet.len()]);
            }
        }
    }
    String::from_utf8(text).expect("the alphabet is ASCII")
}

/// FNV-1a, 64 bits: enough to tell two 1 MiB values apart in a test.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// Write values 0..`keys` through the leader with `WRITERS` threads, each value at QUORUM,
/// retried (through whichever node leads then) up to `WRITE_ATTEMPTS_MAX` times.
fn write_state(cluster: &TestCluster, keys: u64) {
    let addresses: Vec<SocketAddr> = cluster.specs.iter().map(|spec| spec.http).collect();
    let leader = cluster.wait_for_leader(&[], ELECTION);
    std::thread::scope(|scope| {
        for writer in 0..WRITERS as u64 {
            let addresses = &addresses;
            scope.spawn(move || {
                let client = http_client();
                let mut target = leader;
                for number in (writer..keys).step_by(WRITERS) {
                    let body = value(number);
                    let mut answers = Vec::new();
                    let written = (0..WRITE_ATTEMPTS_MAX).any(|attempt| {
                        let url = format!("http://{}/v1/kv/{}", addresses[target], key(number));
                        let answer = client.put(&url).body(body.clone()).send();
                        match answer {
                            Ok(response) if response.status().is_success() => true,
                            other => {
                                answers.push(match other {
                                    Ok(response) => format!(
                                        "{} {}",
                                        response.status(),
                                        response.text().unwrap_or_default()
                                    ),
                                    Err(error) => error.to_string(),
                                });
                                // Another node may lead now: try the next one after a pause.
                                target = (target + 1 + attempt as usize) % addresses.len();
                                std::thread::sleep(Duration::from_millis(500));
                                false
                            }
                        }
                    });
                    assert!(written, "could not write {}: {answers:?}", key(number));
                }
            });
        }
    });
}

/// One key as a node holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Held {
    version: u64,
    bytes: usize,
    digest: u64,
}

/// Every written key as node `index` holds it in its own replica (`consistency=eventual` is
/// answered locally), read by a few threads.
fn listing(cluster: &TestCluster, index: usize, keys: u64) -> BTreeMap<String, Option<Held>> {
    let started = Instant::now();
    let address = cluster.specs[index].http;
    let numbers: Vec<u64> = (0..keys).collect();
    let chunk = numbers.len().div_ceil(READERS).max(1);
    std::thread::scope(|scope| {
        let readers: Vec<_> = numbers
            .chunks(chunk)
            .map(|numbers| {
                scope.spawn(move || {
                    let client = http_client();
                    let mut held = Vec::new();
                    for number in numbers {
                        let url = format!(
                            "http://{address}/v1/kv/{}?consistency=eventual",
                            key(*number)
                        );
                        let response = client
                            .get(&url)
                            .send()
                            .unwrap_or_else(|error| panic!("GET {url}: {error}"));
                        let status = response.status().as_u16();
                        let body: Value = response
                            .json()
                            .unwrap_or_else(|error| panic!("GET {url}: not JSON: {error}"));
                        let found = match status {
                            200 => {
                                let text = body["value"]
                                    .as_str()
                                    .unwrap_or_else(|| panic!("GET {url}: no value in the answer"));
                                Some(Held {
                                    version: body["version"].as_u64().unwrap_or_else(|| {
                                        panic!("GET {url}: no version in {}", body["version"])
                                    }),
                                    bytes: text.len(),
                                    digest: digest(text.as_bytes()),
                                })
                            }
                            404 => None,
                            other => panic!("GET {url}: {other} {body}"),
                        };
                        held.push((key(*number), found));
                    }
                    held
                })
            })
            .collect();
        let held = readers
            .into_iter()
            .flat_map(|reader| reader.join().expect("a reader thread"))
            .collect();
        println!(
            "read {keys} keys from {} in {:.1} s",
            cluster.specs[index].id,
            started.elapsed().as_secs_f64()
        );
        held
    })
}

/// The leader's listing, checked against what was written (every value present, whole and
/// unaltered).
fn expected_listing(
    cluster: &TestCluster,
    leader: usize,
    keys: u64,
) -> BTreeMap<String, Option<Held>> {
    let listing = listing(cluster, leader, keys);
    for number in 0..keys {
        let written = value(number);
        let held = listing[&key(number)].unwrap_or_else(|| {
            panic!(
                "the leader {} does not hold {}",
                cluster.specs[leader].id,
                key(number)
            )
        });
        assert_eq!(
            (held.bytes, held.digest),
            (written.len(), digest(written.as_bytes())),
            "the leader's {} is not the value written",
            key(number)
        );
    }
    listing
}

/// Node `index`'s own copy of every key equals `expected` (versions included), and it counts
/// as many keys as the leader (`ha_kv_keys`, so a key the test did not write would show).
fn assert_same_state(
    cluster: &TestCluster,
    index: usize,
    expected: &BTreeMap<String, Option<Held>>,
) {
    let held = listing(cluster, index, expected.len() as u64);
    let differing: Vec<_> = expected
        .iter()
        .filter(|(key, value)| held.get(*key) != Some(*value))
        .map(|(key, value)| (key, value, held.get(key)))
        .take(5)
        .collect();
    assert!(
        differing.is_empty(),
        "{} differs from the leader on {} of {} keys; first ones (key, leader, node): \
         {differing:?}",
        cluster.specs[index].id,
        expected
            .iter()
            .filter(|(key, value)| held.get(*key) != Some(*value))
            .count(),
        expected.len()
    );
    let leader = cluster.wait_for_leader(&[], ELECTION);
    let count = |index| {
        cluster
            .metric(index, "ha_kv_keys")
            .unwrap_or_else(|| panic!("{} has no ha_kv_keys", cluster.specs[index].id))
    };
    assert_eq!(
        count(index),
        count(leader),
        "{} and the leader {} hold different numbers of keys",
        cluster.specs[index].id,
        cluster.specs[leader].id
    );
}

/// Wait until every node reports `leader` as its leader, with a quorum.
fn wait_until_every_node_follows(cluster: &TestCluster, leader: usize) {
    let leader_id = cluster.specs[leader].id.clone();
    for index in 0..cluster.specs.len() {
        cluster.wait_until(
            "every node following the leader",
            ELECTION,
            |cluster| match cluster.call(index, "GET", "/v1/health", "") {
                Some((200, health)) if health["leader"] == leader_id.as_str() => Some(()),
                _ => None,
            },
        );
    }
}

/// `/v1/metrics` of node `index`, `None` when it does not answer 200.
fn metrics_text(cluster: &TestCluster, index: usize) -> Option<String> {
    match cluster.call(index, "GET", "/v1/metrics", "")? {
        (200, Value::String(text)) => Some(text),
        _ => None,
    }
}

/// The value of the unlabelled sample `name` in a Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Metric `name` of node `index`: `None` when the node does not answer, a failure naming
/// the metric when it answers without it.
fn required_metric(cluster: &TestCluster, index: usize, name: &str) -> Option<f64> {
    let text = metrics_text(cluster, index)?;
    let value = sample(&text, name);
    assert!(
        value.is_some(),
        "{}'s /v1/metrics has no {name} (the snapshot metrics of issue 18 are missing from \
         this build)",
        cluster.specs[index].id
    );
    value
}

/// `(commit_index, applied_index)` as node `index` reports them in its metrics.
fn indexes(cluster: &TestCluster, index: usize) -> Option<(u64, u64)> {
    let text = metrics_text(cluster, index)?;
    let commit = sample(&text, "ha_commit_index")?;
    let applied = sample(&text, "ha_applied_index")?;
    Some((commit as u64, applied as u64))
}

/// Wait until node `index` has applied everything `leader` had committed when the wait
/// began.
fn wait_until_applied(cluster: &TestCluster, index: usize, leader: usize) {
    let (target, _) = cluster.wait_until("the leader's commit index", ELECTION, |cluster| {
        indexes(cluster, leader)
    });
    cluster.wait_until(
        &format!(
            "{} to apply up to the leader's commit index {target}",
            cluster.specs[index].id
        ),
        CATCH_UP_MAX,
        |cluster| indexes(cluster, index).filter(|(_, applied)| *applied >= target),
    );
}

/// A running follower of `leader` not in `except`.
fn follower(cluster: &TestCluster, leader: usize, except: &[usize]) -> usize {
    (0..cluster.specs.len())
        .find(|index| *index != leader && !except.contains(index) && cluster.running(*index))
        .expect("a running follower")
}

/// The leader's `/v1/cluster` row for `follower` as text, to explain a failure.
fn leader_row(cluster: &TestCluster, leader: usize, follower: usize) -> String {
    let id = &cluster.specs[follower].id;
    match cluster.call(leader, "GET", "/v1/cluster", "") {
        Some((_, table)) => table["members"]
            .as_array()
            .and_then(|members| members.iter().find(|member| member["id"] == id.as_str()))
            .map_or_else(|| format!("none in {table}"), Value::to_string),
        None => "none (the leader does not answer)".to_string(),
    }
}

/// The leader's `catch_up` for `follower`: `Ok(None)` while it is not catching up,
/// `Err` with the reason when the leader does not answer or has no row for it. A row with no
/// `catch_up` field fails the test: the leader does not report catch-ups.
fn catch_up(
    cluster: &TestCluster,
    leader: usize,
    follower: usize,
) -> Result<Option<CatchUp>, String> {
    let (status, table) = cluster
        .call(leader, "GET", "/v1/cluster", "")
        .ok_or("the leader does not answer /v1/cluster")?;
    if status != 200 {
        return Err(format!("/v1/cluster answered {status}: {table}"));
    }
    let id = &cluster.specs[follower].id;
    let row = table["members"]
        .as_array()
        .and_then(|members| members.iter().find(|member| member["id"] == id.as_str()))
        .ok_or_else(|| format!("no row for {id} in {table}"))?;
    let Some(catch_up) = row.get("catch_up") else {
        panic!(
            "the leader's /v1/cluster row for {id} has no `catch_up` field (issue 18's \
             catch-up report is missing from this build): {row}"
        );
    };
    if catch_up.is_null() {
        return Ok(None);
    }
    let number = |field: &str| {
        catch_up[field]
            .as_u64()
            .unwrap_or_else(|| panic!("catch_up.{field} is not a number: {catch_up}"))
    };
    Ok(Some(CatchUp {
        state: catch_up["state"].as_str().unwrap_or("").to_string(),
        sent_bytes: number("sent_bytes"),
        total_bytes: number("total_bytes"),
        reason: catch_up["reason"].as_str().map(str::to_string),
    }))
}

/// A leader's report of a follower it brings up to date.
#[derive(Clone, Debug)]
struct CatchUp {
    state: String,
    sent_bytes: u64,
    total_bytes: u64,
    reason: Option<String>,
}

impl CatchUp {
    /// How much of the snapshot the follower holds, 0 to 1.
    fn fraction(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.sent_bytes as f64 / self.total_bytes as f64
        }
    }
}

/// How the wiped follower's install is interfered with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// Not at all.
    Free,
    /// SIGKILL the leader once it reports the follower between 20% and 70% of the snapshot.
    KillLeaderHalfway,
    /// SIGKILL the follower once it has received between 20% and 70% of the snapshot, then
    /// restart it on the same data dir.
    KillFollowerHalfway,
}

/// What one wipe-and-catch-up showed.
#[derive(Debug)]
struct CatchUpReport {
    follower: String,
    leader_before: usize,
    leader_after: usize,
    /// From the restart (the last one, for C) to the applied index reaching the target.
    took: Duration,
    /// The fraction of the snapshot the follower held when something was killed.
    killed_at: Option<f64>,
    /// Pulses of SIGSTOP/SIGCONT given.
    pulses: u32,
    /// The follower's counters after catching up (since its last start).
    received_bytes: u64,
    installs: f64,
    resumes: f64,
    discards: f64,
    /// The size of the snapshot the leader was sending (from its catch-up report or metric).
    snapshot_bytes: u64,
    applied: u64,
    target: u64,
}

impl std::fmt::Display for CatchUpReport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} caught up to index {} (target {}) in {:.1} s; snapshot {:.1} MiB, received \
             {:.1} MiB ({:.1} MiB/s), installs {}, resumes {}, discards {}; killed at {}; \
             {} pace pulses; leader n{} -> n{}",
            self.follower,
            self.applied,
            self.target,
            self.took.as_secs_f64(),
            self.snapshot_bytes as f64 / MIB as f64,
            self.received_bytes as f64 / MIB as f64,
            self.received_bytes as f64 / MIB as f64 / self.took.as_secs_f64().max(1e-3),
            self.installs,
            self.resumes,
            self.discards,
            self.killed_at.map_or("-".to_string(), |fraction| format!(
                "{:.0}%",
                fraction * 100.0
            )),
            self.pulses,
            self.leader_before + 1,
            self.leader_after + 1,
        )
    }
}

/// SIGKILL `follower`, remove its data dir, restart it, interfere as `pace` says, and wait
/// until it has applied what the (possibly new) leader has committed.
fn wipe_and_catch_up(
    cluster: &mut TestCluster,
    leader: usize,
    follower: usize,
    pace: Pace,
) -> CatchUpReport {
    let id = cluster.specs[follower].id.clone();
    cluster.kill(follower);
    let data_dir = cluster.specs[follower].data_dir.clone();
    std::fs::remove_dir_all(&data_dir)
        .unwrap_or_else(|error| panic!("remove {}: {error}", data_dir.display()));
    let leader_snapshot_bytes = required_metric(cluster, leader, "ha_snapshot_bytes")
        .expect("the leader answers its metrics") as u64;
    cluster.spawn(follower);
    let mut restarted_at = Instant::now();
    let mut killed_at = None;
    let mut pulses = 0;
    let mut transfer_bytes = leader_snapshot_bytes;
    let mut leader_after = leader;
    match pace {
        Pace::Free => {}
        Pace::KillLeaderHalfway => {
            let (caught, fraction, count) =
                pace_until_window(cluster, leader, follower, false, |_| {
                    catch_up(cluster, leader, follower)
                });
            transfer_bytes = caught.total_bytes;
            pulses = count;
            killed_at = Some(fraction);
            cluster.kill(leader);
            // The follower runs on (it may have been stopped by the last pulse).
            cluster.signal(follower, Signal::SIGCONT);
            leader_after = cluster.wait_for_leader(&[leader, follower], ELECTION);
            println!(
                "B: killed the leader {} with {id} at {:.0}% of {:.1} MiB; {} leads now",
                cluster.specs[leader].id,
                fraction * 100.0,
                caught.total_bytes as f64 / MIB as f64,
                cluster.specs[leader_after].id
            );
        }
        Pace::KillFollowerHalfway => {
            let (caught, fraction, count) =
                pace_until_window(cluster, leader, follower, true, |cluster| {
                    // The follower's own count of what it holds, against the leader's total.
                    let total = match catch_up(cluster, leader, follower)? {
                        Some(catch_up) if catch_up.total_bytes > 0 => catch_up,
                        other => return Ok(other),
                    };
                    let received =
                        required_metric(cluster, follower, "ha_snapshot_bytes_received_total")
                            .ok_or("the follower does not answer its metrics")?;
                    Ok(Some(CatchUp {
                        sent_bytes: received as u64,
                        ..total
                    }))
                });
            transfer_bytes = caught.total_bytes;
            pulses = count;
            killed_at = Some(fraction);
            cluster.kill(follower);
            println!(
                "C: killed {id} with {:.0}% of {:.1} MiB received; restarting it",
                fraction * 100.0,
                caught.total_bytes as f64 / MIB as f64
            );
            cluster.spawn(follower);
            restarted_at = Instant::now();
        }
    }
    let (target, applied) = wait_for_catch_up(cluster, leader_after, follower);
    let took = restarted_at.elapsed();
    let metric = |name| required_metric(cluster, follower, name).unwrap_or(f64::NAN);
    CatchUpReport {
        follower: id,
        leader_before: leader,
        leader_after,
        took,
        killed_at,
        pulses,
        received_bytes: metric("ha_snapshot_bytes_received_total") as u64,
        installs: metric("ha_snapshot_installs_total"),
        resumes: metric("ha_snapshot_resumes_total"),
        discards: metric("ha_snapshot_discards_total"),
        snapshot_bytes: transfer_bytes,
        applied,
        target,
    }
}

/// Pace `follower` with SIGSTOP/SIGCONT pulses, once its transfer has started, until
/// `progress` reports it between the bounds of `KILL_WINDOW`. `progress` is read after
/// each slice, with the follower stopped, or still running when `read_while_running` (when
/// it asks the follower itself). Returns the report in the
/// window, the fraction and the pulses given. The follower is left running (SIGCONT) or
/// stopped, as the last pulse left it; a stopped process still dies of SIGKILL.
fn pace_until_window(
    cluster: &TestCluster,
    leader: usize,
    follower: usize,
    read_while_running: bool,
    mut progress: impl FnMut(&TestCluster) -> Result<Option<CatchUp>, String>,
) -> (CatchUp, f64, u32) {
    let id = &cluster.specs[follower].id;
    let deadline = Instant::now() + CATCH_UP_MAX;
    let mut last_change = Instant::now();
    let mut last_seen: Option<CatchUp> = None;
    let mut run_slice = RUN_SLICE_START;
    let mut pulses = 0;
    // Unpaced until the transfer starts: the restarted node must first be found by gossip and
    // reached by the leader, which pulses would slow down.
    let mut started = false;
    for _round in 0..(PULSES_MAX * 4) {
        assert!(
            Instant::now() < deadline && last_change.elapsed() < STALL,
            "{id}'s transfer never reached {:.0}%-{:.0}% within {CATCH_UP_MAX:?} (or moved \
             nothing for {STALL:?}); last report {last_seen:?}",
            KILL_WINDOW.0 * 100.0,
            KILL_WINDOW.1 * 100.0,
        );
        if started {
            assert!(pulses < PULSES_MAX, "{pulses} pulses and still not halfway");
            cluster.signal(follower, Signal::SIGCONT);
            std::thread::sleep(run_slice);
            pulses += 1;
            if !read_while_running {
                cluster.signal(follower, Signal::SIGSTOP);
            }
        }
        let report = match progress(cluster) {
            Ok(report) => report,
            Err(reason) => {
                assert!(
                    !started,
                    "lost sight of {id}'s transfer mid-way: {reason}; last {last_seen:?}"
                );
                std::thread::sleep(POLL);
                continue;
            }
        };
        if started && read_while_running {
            cluster.signal(follower, Signal::SIGSTOP);
        }
        let Some(report) = report else {
            assert!(
                !(started && indexes_caught_up(cluster, leader, follower)),
                "{id} caught up before its transfer could be caught between {:.0}% and \
                 {:.0}%; last report {last_seen:?}",
                KILL_WINDOW.0 * 100.0,
                KILL_WINDOW.1 * 100.0,
            );
            std::thread::sleep(POLL);
            continue;
        };
        assert_ne!(
            report.state, "stalled",
            "the leader reports {id} stalled: {:?}",
            report.reason
        );
        let fraction = report.fraction();
        let previous = last_seen.as_ref().map_or(0.0, CatchUp::fraction);
        if last_seen.as_ref().map(|seen| seen.sent_bytes) != Some(report.sent_bytes) {
            last_change = Instant::now();
        }
        if fraction >= KILL_WINDOW.0 && fraction <= KILL_WINDOW.1 {
            return (report, fraction, pulses);
        }
        assert!(
            fraction < KILL_WINDOW.1,
            "{id}'s transfer went from {:.0}% to {:.0}% between two looks: pacing could not \
             catch it halfway (last run slice {run_slice:?}); the transfer needs a pacing knob",
            previous * 100.0,
            fraction * 100.0
        );
        if !started && report.total_bytes > 0 && report.state == "snapshot" {
            // The transfer has begun: from now on the follower runs in slices.
            started = true;
            cluster.signal(follower, Signal::SIGSTOP);
        } else if started {
            let step = fraction - previous;
            if step > PULSE_STEP_MAX {
                run_slice = (run_slice / 2).max(RUN_SLICE_MIN);
            } else if step < PULSE_STEP_MAX / 5.0 {
                run_slice = (run_slice * 2).min(RUN_SLICE_MAX);
            }
            std::thread::sleep(STOP_SLICE);
        } else {
            std::thread::sleep(POLL);
        }
        last_seen = Some(report);
    }
    panic!("{id}'s transfer was not caught halfway within the bounded number of looks");
}

/// Whether `follower` has applied what `leader` committed (false when either does not
/// answer).
fn indexes_caught_up(cluster: &TestCluster, leader: usize, follower: usize) -> bool {
    // A stopped follower does not answer: run it for the question.
    cluster.signal(follower, Signal::SIGCONT);
    let caught_up = match (indexes(cluster, leader), indexes(cluster, follower)) {
        (Some((commit, _)), Some((_, applied))) => applied >= commit,
        _ => false,
    };
    cluster.signal(follower, Signal::SIGSTOP);
    caught_up
}

/// Wait until `follower` has applied the commit index `leader` reports once the wait
/// begins, failing when neither its received bytes nor its applied index move for `STALL`.
/// Returns that target and the follower's applied index.
fn wait_for_catch_up(cluster: &TestCluster, leader: usize, follower: usize) -> (u64, u64) {
    let id = &cluster.specs[follower].id;
    let (target, _) = cluster.wait_until("the leader's commit index", ELECTION, |cluster| {
        indexes(cluster, leader)
    });
    let deadline = Instant::now() + CATCH_UP_MAX;
    let mut last_change = Instant::now();
    let mut last = (0.0, 0);
    let mut looks = 0u32;
    loop {
        looks += 1;
        let received = metrics_text(cluster, follower).and_then(|text| {
            let received = sample(&text, "ha_snapshot_bytes_received_total");
            let applied = sample(&text, "ha_applied_index");
            Some((received, applied? as u64))
        });
        if let Some((received, applied)) = received {
            if applied >= target {
                return (target, applied);
            }
            let now = (received.unwrap_or(0.0), applied);
            if now != last {
                last = now;
                last_change = Instant::now();
            }
        }
        assert!(
            last_change.elapsed() < STALL && Instant::now() < deadline && looks < 100_000,
            "{id} did not catch up to index {target}: received {:.1} MiB, applied {} and \
             nothing moved for {:?}; the leader's row for it: {}",
            last.0 / MIB as f64,
            last.1,
            last_change.elapsed(),
            leader_row(cluster, leader, follower)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
