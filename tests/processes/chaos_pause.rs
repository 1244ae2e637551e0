//! A leader paused with SIGSTOP for longer than the election timeout, on real `bot`
//! processes: the others elect a new leader; when the old one wakes (SIGCONT) it must not act
//! as leader. A write sent to it while it slept is either refused or committed by the real
//! leader (then readable at STRONG), never acknowledged on its own; its journal worker's late
//! appends are fenced off; the journal stays gap-free. Meanwhile clients read, write, CAS and
//! contend for a lock through every node, the paused one included (their requests to it wait
//! in its socket): the KV history must stay linearizable and lock holds exclusive, so the
//! woken node acknowledged no write and granted no lock on its own. Every wait polls with a
//! deadline; every process is killed by its id when the test ends.

mod support;

use std::time::{Duration, Instant};

use ha_examples::journal::JournalVerdict;
use nix::sys::signal::Signal;
use support::cluster::TestCluster;
use support::scenario::{Minimums, finish_and_check, http_addresses};
use support::workload::{Workload, WorkloadOptions};

const WAIT: Duration = Duration::from_secs(20);

/// What a run must at least achieve (see [`Minimums`]). Measured on this 2-core
/// machine: 273 acknowledged writes, 19 lock grants, 28 journal entries, 2 terms. The
/// journal minimum is what the test itself waits for (5 entries, then 5 more).
/// Terms: the first and the one the others elect while the leader sleeps are certain.
const PAUSE_MINIMUMS: Minimums = Minimums {
    acknowledged_writes: 20,
    lock_grants: 2,
    journal_entries: 10,
    terms_with_leader: 2,
};

#[test]
fn a_paused_leader_does_not_act_as_leader_when_it_wakes() {
    let mut cluster = TestCluster::start(&[1, 1, 1]);
    let paused = cluster.wait_for_leader(&[], WAIT);
    let (_, before) = cluster.must(paused, "GET", "/v1/health", "");
    let old_term = before["term"].as_u64().expect("term");
    cluster.wait_until("journal entries", WAIT, |cluster| {
        cluster.journal_length(paused).filter(|length| *length >= 5)
    });

    let workload = Workload::start(http_addresses(&cluster), WorkloadOptions::default());
    std::thread::sleep(Duration::from_secs(1));
    cluster.signal(paused, Signal::SIGSTOP);
    let stopped_at = Instant::now();
    // A write sent to the sleeping leader waits in its socket until it wakes.
    let url = format!(
        "http://{}/v1/kv/sent-while-paused",
        cluster.specs[paused].http
    );
    let late_write = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        client
            .put(url)
            .body("late")
            .send()
            .map(|response| response.status().as_u16())
            .ok()
    });
    let new_leader = cluster.wait_for_leader(&[paused], WAIT);
    println!("new leader after {:?} of pause", stopped_at.elapsed());
    let (status, written) = cluster.must(new_leader, "PUT", "/v1/kv/written-meanwhile", "x");
    assert_eq!(status, 200, "{written}");
    // Past the journal lock's TTL, so the new leader's worker holds the lock.
    std::thread::sleep(Duration::from_millis(1500));

    cluster.signal(paused, Signal::SIGCONT);
    let woke_at = Instant::now();
    let health = cluster.wait_until("the woken node to follow", WAIT, |cluster| {
        match cluster.call(paused, "GET", "/v1/health", "") {
            Some((200, health)) if health["role"] == "follower" => Some(health),
            _ => None,
        }
    });
    println!("woken node follows after {:?}", woke_at.elapsed());
    assert!(
        health["term"].as_u64().expect("term") > old_term,
        "{health}"
    );
    assert_eq!(health["leader"], cluster.specs[new_leader].id.as_str());

    // The write it received while asleep: refused, or committed by the real leader.
    let late_status = late_write.join().expect("writer thread");
    let (read_status, value) = cluster.must(
        new_leader,
        "GET",
        "/v1/kv/sent-while-paused?consistency=strong",
        "",
    );
    match late_status {
        Some(200) => {
            assert_eq!(
                read_status, 200,
                "an acknowledged write must be readable: {value}"
            );
            assert_eq!(value["value"], "late");
        }
        other => println!("the late write was not acknowledged ({other:?}); read: {read_status}"),
    }
    let (status, _) = cluster.must(
        paused,
        "GET",
        "/v1/kv/written-meanwhile?consistency=strong",
        "",
    );
    assert_eq!(status, 200, "the woken node serves the new leader's writes");

    // The journal: no gap, no duplicate, tokens never decrease, the new leader wrote.
    cluster.wait_for_journal_growth(new_leader, 5, "the journal to grow", WAIT);
    let verdict = JournalVerdict::check(&cluster.journal(new_leader));
    println!("{verdict}");
    assert!(verdict.ok(), "{verdict}");
    assert!(verdict.runs_total >= 2, "{verdict}");
    finish_and_check(&mut cluster, workload, "pause", &PAUSE_MINIMUMS);
}
