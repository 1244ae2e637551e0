//! Two data nodes and a witness, as real `bot` processes on loopback (issue 15, "What must be
//! shown", the witness): n1 and n2 hold the data, n3 runs with `--witness` (a voter with no
//! state machine that never leads).
//!
//! - the views: `/v1/members` lists n3 under `witnesses`, `/v1/cluster` and `/v1/health` show
//!   role `witness`, and its KV, lock, snapshot and journal routes answer 503 `witness` with
//!   the leader to ask instead; `bot status` lists it as a witness; a transfer to it is
//!   refused;
//! - [`WRITES`] KV writes of [`VALUE_BYTES`] bytes, then the resident memory (VmRSS) and the
//!   data dir size of the witness against a data node's, printed;
//! - [`KILL_ROUNDS`] times: SIGKILL the data leader, measure the milliseconds until the other
//!   data node leads (with the witness's vote), check the journal continues, restart the
//!   killed node and wait until it has caught up;
//! - SIGKILL the witness: writes continue on the two data nodes; restart it;
//! - leadership transfers until at least [`ELECTIONS_MIN`] terms had a leader; then, over
//!   every `EVENT` line the three processes printed: one leader per term, never n3, and n3
//!   never even became a candidate; the journal has no gap and no duplicate.
//!
//! A failover can only wait for the old leader when the surviving data node lacks an entry
//! the witness acknowledged (docs/ARCHITECTURE.md, "Witness: what 2 data nodes + 1 witness
//! survive"): the test then checks that this is the reason (the survivor's last index is below
//! the witness's), restarts the old leader and counts the round apart, instead of failing.
//!
//! A second scenario makes that case happen on purpose (the data follower paused with SIGSTOP
//! while the leader commits with the witness, then the leader killed): no leader for 5 s, and
//! every acknowledged write is back once the old leader restarts.
//!
//! Every wait polls with a deadline; every process is killed by its id when its guard drops.
//! Run: `cargo test -p ha-examples --test witness -- --nocapture` (figures on stdout).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use ha_examples::journal::JournalVerdict;
use nix::sys::signal::Signal;
use serde_json::Value;
use support::Bot;
use support::cluster::TestCluster;
use support::leaders::{check_one_leader_per_term, leaders_by_term};
use support::serial::one_scenario_at_a_time;

/// The longest any one step may take on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);
/// The usual failover window with the LAN timing (election timeouts of 150 to 300 ms, plus
/// pre-vote and a loaded 2-core machine): a data node must lead within this after the other
/// is killed.
const FAILOVER_WINDOW: Duration = Duration::from_secs(5);
/// How long the test waits for the surviving data node before it concludes that the node
/// lags behind the witness (the case that waits for the old leader).
const FAILOVER_GIVE_UP: Duration = Duration::from_secs(15);
/// Data leaders killed.
const KILL_ROUNDS: usize = 3;
/// Terms with a leader the run must see, at least.
const ELECTIONS_MIN: usize = 10;
/// KV writes made before the witness's memory and disk are measured.
const WRITES: usize = 2_000;
/// The size of each written value, in bytes.
const VALUE_BYTES: usize = 4096;
/// Writes committed by the leader and the witness while the data follower is paused.
const LAGGING_WRITES: usize = 50;
/// How long the lagging data node must stay without leadership (about 20 election timeouts
/// with the LAN timing).
const LAGGING_WAIT: Duration = Duration::from_secs(5);
/// The witness's index in the cluster (n3).
const WITNESS: usize = 2;

/// Bots n1 and n2 (data, priority 1) and n3 started with `--witness`.
fn start_two_data_nodes_and_a_witness() -> TestCluster {
    TestCluster::start_secured(
        &[1, 1, 0],
        |id| {
            if id == "n3" {
                vec!["--witness".to_string()]
            } else {
                Vec::new()
            }
        },
        None,
    )
}

#[test]
fn two_data_nodes_and_a_witness_fail_over_and_the_witness_never_leads() {
    let _serial = one_scenario_at_a_time();
    let started = Instant::now();
    let mut cluster = start_two_data_nodes_and_a_witness();
    let first = cluster.wait_for_leader(&[], WAIT);
    assert_ne!(first, WITNESS, "the witness leads");

    check_views(&cluster, first);
    let (write_ms, footprint) = write_and_measure(&cluster, first);

    // Kill the data leader, KILL_ROUNDS times.
    let mut failover_ms = Vec::new();
    let mut waited_for_old_leader = 0;
    let mut leader = first;
    for round in 0..KILL_ROUNDS {
        let survivor = other_data_node(leader);
        cluster.wait_for_journal_growth(leader, 5, "the journal to grow", WAIT);
        let killed_at = Instant::now();
        cluster.kill(leader);
        match wait_for_lead(&cluster, survivor, FAILOVER_GIVE_UP) {
            Some(elapsed) => {
                println!(
                    "kill round {round}: {} killed, {} leads after {} ms",
                    cluster.specs[leader].id,
                    cluster.specs[survivor].id,
                    elapsed.as_millis()
                );
                failover_ms.push(elapsed.as_millis());
                cluster.wait_for_journal_growth(
                    survivor,
                    5,
                    "the journal to continue under the surviving data node",
                    WAIT,
                );
                cluster.spawn(leader);
                wait_caught_up(&cluster, survivor, leader);
                leader = survivor;
            }
            None => {
                // Allowed only when the survivor lacks an entry the witness acknowledged.
                let behind = cluster.metric(survivor, "ha_last_index");
                let witness = cluster.metric(WITNESS, "ha_last_index");
                if !matches!((behind, witness), (Some(behind), Some(witness)) if behind < witness) {
                    let logs = cluster.kill_and_collect_logs();
                    panic!(
                        "no failover within {FAILOVER_GIVE_UP:?} of killing {}, although the \
                         survivor's last index {behind:?} is not behind the witness's \
                         {witness:?}\n{logs}",
                        cluster.specs[leader].id
                    );
                }
                println!(
                    "kill round {round}: {} lags the witness ({behind:?} < {witness:?}): \
                     waiting for the old leader {} (killed {:?} ago)",
                    cluster.specs[survivor].id,
                    cluster.specs[leader].id,
                    killed_at.elapsed()
                );
                waited_for_old_leader += 1;
                cluster.spawn(leader);
                leader = cluster.wait_for_leader(&[WITNESS], WAIT);
                wait_caught_up(&cluster, leader, other_data_node(leader));
            }
        }
    }
    assert!(
        !failover_ms.is_empty(),
        "every kill round waited for the old leader"
    );
    let slowest = failover_ms.iter().max().copied().unwrap_or_default();
    assert!(
        slowest <= FAILOVER_WINDOW.as_millis(),
        "a failover took {slowest} ms, beyond the usual window of {FAILOVER_WINDOW:?}: \
         {failover_ms:?}"
    );

    // Kill the witness: the two data nodes are a majority of three; writes continue.
    cluster.kill(WITNESS);
    let without_witness = Instant::now();
    for number in 0..20 {
        let (status, body) = cluster.must(
            leader,
            "PUT",
            &format!("/v1/kv/without-witness/{number}"),
            "still writable",
        );
        assert_eq!(status, 200, "write {number} without the witness: {body}");
    }
    cluster.wait_for_journal_growth(
        leader,
        10,
        "the journal to continue without the witness",
        WAIT,
    );
    println!(
        "witness killed: 20 KV writes and 10 journal entries in {} ms",
        without_witness.elapsed().as_millis()
    );
    cluster.spawn(WITNESS);
    wait_witness_healthy(&cluster, &cluster.specs[leader].id.clone());

    // Transfers until enough terms had a leader.
    let mut transfers = 0;
    while terms_led(&mut cluster) < ELECTIONS_MIN {
        assert!(transfers < 2 * ELECTIONS_MIN, "too many transfers");
        let (status, body) = cluster.must(leader, "POST", "/v1/failover", "{}");
        assert_eq!(status, 200, "transfer {transfers}: {body}");
        let target = other_data_node(leader);
        assert_eq!(
            body["to"], cluster.specs[target].id,
            "the best other voter is the data node, never the witness: {body}"
        );
        assert!(
            wait_for_lead(&cluster, target, WAIT).is_some(),
            "transfer {transfers}: {} did not take over",
            cluster.specs[target].id
        );
        leader = target;
        transfers += 1;
    }

    // Over the whole run: one leader per term, never the witness, which never campaigned.
    let lines: Vec<Vec<String>> = (0..3).map(|index| cluster.stdout_lines(index)).collect();
    let leaders = leaders_by_term(lines.iter().map(Vec::as_slice));
    let terms = check_one_leader_per_term(&leaders).expect("one leader per term");
    let witness_led: Vec<&u64> = leaders
        .iter()
        .filter(|(_, nodes)| nodes.iter().any(|node| node == "n3"))
        .map(|(term, _)| term)
        .collect();
    assert!(witness_led.is_empty(), "n3 led in terms {witness_led:?}");
    let campaigned: Vec<&String> = lines[WITNESS]
        .iter()
        .filter(|line| {
            line.contains("\"kind\":\"role\"")
                && ["leader", "candidate", "pre_candidate"]
                    .iter()
                    .any(|role| line.contains(&format!("\"role\":\"{role}\"")))
        })
        .collect();
    assert!(
        campaigned.is_empty(),
        "the witness campaigned: {campaigned:?}"
    );
    assert_eq!(
        cluster.metric(WITNESS, "ha_elections_started_total"),
        Some(0.0),
        "the witness started an election"
    );
    assert_eq!(cluster.metric(WITNESS, "ha_witness"), Some(1.0));
    assert_eq!(cluster.metric(leader, "ha_witness"), Some(0.0));
    let (status, history) = cluster.must(leader, "GET", "/v1/failover/history", "");
    assert_eq!(status, 200, "{history}");
    let history = history.as_array().expect("a list").clone();
    assert!(
        history.iter().all(|event| event["to"] != "n3"),
        "{history:?}"
    );

    let entries = cluster.journal(leader);
    let verdict = JournalVerdict::check(&entries);
    assert!(verdict.ok(), "{verdict}");
    println!(
        "witness scenario: {terms} terms with a leader (none the witness; {transfers} \
         transfers), failovers after killing the data leader {failover_ms:?} ms, \
         {waited_for_old_leader} round(s) waited for the old leader; {WRITES} writes of \
         {VALUE_BYTES} B in {write_ms} ms; {footprint}; {verdict}; whole scenario {:?}",
        started.elapsed()
    );
}

/// The case the shape cannot fail over: the data follower is paused (SIGSTOP) while the leader
/// commits writes with the witness's acknowledgement alone, then the leader is killed and the
/// follower resumed. The follower lacks entries the witness acknowledged, so the witness
/// refuses it its vote: no leader for [`LAGGING_WAIT`] (the follower never leads), and the
/// cluster comes back when the old leader restarts from its disk, with every acknowledged
/// write.
#[test]
fn a_lagging_data_node_waits_for_the_old_leader_and_no_acknowledged_write_is_lost() {
    let _serial = one_scenario_at_a_time();
    let started = Instant::now();
    let mut cluster = start_two_data_nodes_and_a_witness();
    let leader = cluster.wait_for_leader(&[], WAIT);
    assert_ne!(leader, WITNESS, "the witness leads");
    let follower = other_data_node(leader);
    wait_witness_healthy(&cluster, &cluster.specs[leader].id.clone());
    let (status, body) = cluster.must(leader, "PUT", "/v1/kv/before-pause", "both");
    assert_eq!(status, 200, "{body}");

    cluster.signal(follower, Signal::SIGSTOP);
    let mut acknowledged = Vec::new();
    for number in 0..LAGGING_WRITES {
        let key = format!("/v1/kv/while-paused/{number}");
        let (status, body) = cluster.must(leader, "PUT", &key, &format!("value {number}"));
        assert_eq!(
            status, 200,
            "write {number} with the leader and the witness: {body}"
        );
        acknowledged.push((key, format!("value {number}")));
    }
    let witness_last = cluster
        .metric(WITNESS, "ha_last_index")
        .expect("the witness's last index");
    cluster.kill(leader);
    cluster.signal(follower, Signal::SIGCONT);

    // The follower campaigns and is refused, for many election timeouts.
    let refused_from = Instant::now();
    let mut polls = 0;
    while refused_from.elapsed() < LAGGING_WAIT {
        polls += 1;
        assert!(
            !cluster.leads(follower),
            "{} led without the entries the witness acknowledged",
            cluster.specs[follower].id
        );
        assert!(!cluster.leads(WITNESS), "the witness leads");
        std::thread::sleep(Duration::from_millis(50));
    }
    let behind = cluster
        .metric(follower, "ha_last_index")
        .expect("the follower's last index");
    assert!(
        behind < witness_last,
        "the follower ({behind}) lags the witness ({witness_last})"
    );
    println!(
        "lagging follower: last index {behind} < witness {witness_last}; no leader for \
         {LAGGING_WAIT:?} ({polls} polls)"
    );

    // The old leader comes back with its disk: a leader again, every write there.
    let restarted_at = Instant::now();
    cluster.spawn(leader);
    let new_leader = cluster.wait_for_leader(&[WITNESS], WAIT);
    let recovered_ms = restarted_at.elapsed().as_millis();
    wait_caught_up(&cluster, new_leader, other_data_node(new_leader));
    for index in [leader, follower] {
        for (key, value) in &acknowledged {
            let (status, body) =
                cluster.must(index, "GET", &format!("{key}?consistency=strong"), "");
            assert_eq!(
                status, 200,
                "{key} through {}: {body}",
                cluster.specs[index].id
            );
            assert_eq!(body["value"], value.as_str(), "{key}: {body}");
        }
    }
    let lines: Vec<Vec<String>> = (0..3).map(|index| cluster.stdout_lines(index)).collect();
    let leaders = leaders_by_term(lines.iter().map(Vec::as_slice));
    check_one_leader_per_term(&leaders).expect("one leader per term");
    assert!(
        leaders
            .values()
            .all(|nodes| nodes.iter().all(|node| node != "n3")),
        "{leaders:?}"
    );
    println!(
        "old leader restarted: {} leads {recovered_ms} ms later; all {LAGGING_WRITES} writes \
         acknowledged while the follower was paused read back on both data nodes; whole \
         scenario {:?}",
        cluster.specs[new_leader].id,
        started.elapsed()
    );
}

/// `/v1/members`, `/v1/cluster`, `/v1/health` and the data routes, on the leader and on the
/// witness.
fn check_views(cluster: &TestCluster, leader: usize) {
    let leader_id = cluster.specs[leader].id.clone();
    for index in [leader, WITNESS] {
        cluster.wait_until("the witness listed under witnesses", WAIT, |cluster| {
            let (status, members) = cluster.call(index, "GET", "/v1/members", "")?;
            (status == 200
                && ids(&members["voters"]) == ["n1", "n2"]
                && ids(&members["witnesses"]) == ["n3"]
                && ids(&members["learners"]).is_empty())
            .then_some(())
        });
        cluster.wait_until("role witness in the cluster table", WAIT, |cluster| {
            let (status, table) = cluster.call(index, "GET", "/v1/cluster", "")?;
            let row = table["members"]
                .as_array()?
                .iter()
                .find(|row| row["id"] == "n3")?
                .clone();
            (status == 200 && row["role"] == "witness" && row["voter"] == true).then_some(())
        });
    }
    wait_witness_healthy(cluster, &leader_id);
    for (method, path) in [
        ("GET", "/v1/kv/anything"),
        ("PUT", "/v1/kv/anything"),
        ("DELETE", "/v1/kv/anything"),
        ("POST", "/v1/lock/jobs?ttl_ms=1000"),
        ("GET", "/v1/snapshot"),
        ("GET", "/bot/journal?limit=1"),
    ] {
        let (status, body) = cluster.must(WITNESS, method, path, "value");
        assert_eq!(status, 503, "{method} {path} on the witness: {body}");
        assert_eq!(body["error"], "witness", "{method} {path}: {body}");
    }
    let (status, body) = cluster.must(WITNESS, "PUT", "/v1/kv/anything", "value");
    assert_eq!(status, 503);
    assert_eq!(
        body["leader"],
        leader_id.as_str(),
        "names the leader: {body}"
    );
    let http = cluster.specs[leader].http.to_string();
    let status = Bot::start(&["status", "--http", &http]).finish(WAIT);
    assert_eq!(status.status.code(), Some(0), "{}", status.stderr);
    assert!(
        status
            .stdout
            .lines()
            .any(|line| line.contains("n3") && line.contains("witness")),
        "bot status shows the witness: {}",
        status.stdout
    );
    let (status, body) = cluster.must(leader, "POST", "/v1/failover", "{\"target\": \"n3\"}");
    assert_eq!(status, 409, "a transfer to the witness: {body}");
    assert!(cluster.leads(leader), "the refused transfer moved nothing");
}

/// Wait until the witness answers `/v1/health` 200 with role `witness` under `leader_id`.
fn wait_witness_healthy(cluster: &TestCluster, leader_id: &str) {
    cluster.wait_until(
        "the witness to report role witness",
        WAIT,
        |cluster| match cluster.call(WITNESS, "GET", "/v1/health", "") {
            Some((200, health)) if health["role"] == "witness" && health["leader"] == leader_id => {
                Some(())
            }
            _ => None,
        },
    );
}

/// [`WRITES`] KV writes through the leader; then the milliseconds they took and the memory and
/// disk of the witness against a data node's, once the witness has every entry.
fn write_and_measure(cluster: &TestCluster, leader: usize) -> (u128, String) {
    let value = "w".repeat(VALUE_BYTES);
    let writing = Instant::now();
    for number in 0..WRITES {
        let (status, body) = cluster.must(leader, "PUT", &format!("/v1/kv/bulk/{number}"), &value);
        assert_eq!(status, 200, "write {number}: {body}");
    }
    let write_ms = writing.elapsed().as_millis();
    let commit = cluster
        .metric(leader, "ha_commit_index")
        .expect("commit index");
    let follower = other_data_node(leader);
    for index in [follower, WITNESS] {
        cluster.wait_until("every node to hold every write", WAIT, |cluster| {
            cluster
                .metric(index, "ha_last_index")
                .filter(|last| *last >= commit)
        });
    }
    let rss = |index: usize| vm_rss_kib(cluster.bots[index].as_ref().expect("running").pid());
    let disk = |index: usize| dir_bytes(&cluster.specs[index].data_dir);
    let (data_disk, witness_disk) = (disk(follower), disk(WITNESS));
    let (data_rss, witness_rss) = (rss(follower), rss(WITNESS));
    let footprint = format!(
        "after {WRITES} writes (commit index {commit}): witness data dir {witness_disk} B vs \
         data node {data_disk} B, witness VmRSS {witness_rss} KiB vs data node {data_rss} KiB"
    );
    println!("{footprint}");
    let written = (WRITES * VALUE_BYTES) as u64;
    assert!(
        data_disk >= written,
        "the data node holds the values: {footprint}"
    );
    assert!(
        witness_disk < written / 4,
        "the witness keeps entry metadata only: {footprint}"
    );
    (write_ms, footprint)
}

/// Wait until `node` leads with a quorum; how long that took, or `None` after `timeout`.
fn wait_for_lead(cluster: &TestCluster, node: usize, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cluster.leads(node) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Wait until the restarted `node` has everything `leader` had committed when it came back,
/// as the leader sees it and applied locally.
fn wait_caught_up(cluster: &TestCluster, leader: usize, node: usize) {
    let commit = cluster.wait_until("the leader's commit index", WAIT, |cluster| {
        cluster.metric(leader, "ha_commit_index")
    });
    let id = cluster.specs[node].id.clone();
    cluster.wait_until("the restarted node to catch up", WAIT, |cluster| {
        let (_, table) = cluster.call(leader, "GET", "/v1/cluster", "")?;
        let row = table["members"]
            .as_array()?
            .iter()
            .find(|member| member["id"] == id.as_str())?
            .clone();
        let matched = row["match_index"].as_f64()? >= commit;
        let applied = cluster.metric(node, "ha_applied_index")? >= commit;
        (matched && applied).then_some(())
    });
}

/// How many terms had a leader, from every `EVENT` line printed so far.
fn terms_led(cluster: &mut TestCluster) -> usize {
    let lines: Vec<Vec<String>> = (0..3).map(|index| cluster.stdout_lines(index)).collect();
    leaders_by_term(lines.iter().map(Vec::as_slice)).len()
}

/// The data node that is not `index` (n1 <-> n2).
fn other_data_node(index: usize) -> usize {
    assert_ne!(index, WITNESS, "the witness is not a data node");
    1 - index
}

/// The `id`s of a JSON list of members.
fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|member| member["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A process's resident memory, in KiB (`VmRSS` in /proc/PID/status).
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|error| panic!("/proc/{pid}/status: {error}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// The bytes of every file under `dir` (bounded: a data dir holds a few dozen files).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(next) = pending.pop() {
        visited += 1;
        assert!(visited < 10_000, "{} holds too many entries", dir.display());
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(metadata) if metadata.is_dir() => pending.push(entry.path()),
                Ok(metadata) => total += metadata.len(),
                Err(_) => {}
            }
        }
    }
    total
}
