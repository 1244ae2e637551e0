//! A full lock line of HTTP waiters on a 3-process `bot` cluster must not hurt the cluster
//! (issue 12, bug 2).
//!
//! Before the fix, every queued acquire rebuilt and searched the whole wait-for graph in every
//! node's apply step (on the task that sends heartbeats): 200 HTTP waiters on one lock took the
//! term from 1 to 7 and a writer's p99 from 1.7 ms to 4.7 s. Here, on loopback: a writer runs
//! sequential PUTs to the leader; its p99 is measured alone, then while
//! `WAITERS_PER_LOCK_MAX` HTTP clients (each its own session and lease, as the API makes them)
//! wait in the line of one held lock, spread over the three nodes. One more is refused at once
//! with 429 `limit`. Asserted: no election (the term is unchanged), the writer's p99 with the
//! line full stays within 3x its p99 alone (plus 15 ms: a few-ms p99 is noisy on a shared machine), and every waiter is answered with a documented
//! status (200 grant or 409 `lock_timeout`; here the holder keeps the lock, so 409). Figures
//! are printed. Every wait has a deadline and every node is killed by its process id.
//!
//! On the code before the fix (with the line's size written in, as it had no such limit) the
//! one more waiter was queued instead of refused, and the test failed waiting for its answer
//! ("did not answer POST /v1/lock/x", after the client's 15 s). While each waiter read the
//! whole lock state at QUORUM every 15 ms, a line of 128, 256 or 1,024 raised the writer's p99
//! 4.9x, 18x, or writes timed out, so the limit was 64. Since waiters poll only their own wait
//! from their node's applied state, slowing down after 250 ms, 1,024 gave 1.62x to 2.79x over
//! six runs (too close to 3x), so the limit is 512 (1.37x-1.68x over three runs): see `WAITERS_PER_LOCK_MAX`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ha::lock::WAITERS_PER_LOCK_MAX;
use serde_json::Value;
use support::cluster::TestCluster;

const ELECTION: Duration = Duration::from_secs(20);
/// How long each waiter asks to wait: long enough for the whole line to be queued and
/// measured, short enough to end the test well within a minute.
const WAIT_MS: u64 = 20_000;
/// The waiters' lease TTL: above `WAIT_MS`, so no renewal falls inside the measurement.
const TTL_MS: u64 = 60_000;
/// How long the writer is measured alone, and with the line full.
const MEASURE: Duration = Duration::from_secs(5);

/// One write: when it started, how long it took, and whether it was acknowledged.
#[derive(Clone, Copy)]
struct Write {
    started: Instant,
    took: Duration,
    ok: bool,
}

fn p99(writes: &[Write], from: Instant, to: Instant) -> (Duration, usize, usize) {
    let mut times: Vec<Duration> = writes
        .iter()
        .filter(|write| write.started >= from && write.started + write.took <= to)
        .map(|write| write.took)
        .collect();
    let failed = writes
        .iter()
        .filter(|write| write.started >= from && write.started <= to && !write.ok)
        .count();
    assert!(!times.is_empty(), "no write completed in the window");
    times.sort();
    let index = ((times.len() - 1) as f64 * 0.99).round() as usize;
    (times[index], times.len(), failed)
}

fn term(cluster: &TestCluster, index: usize) -> u64 {
    let (_, health) = cluster.must(index, "GET", "/v1/health", "");
    health["term"].as_u64().expect("a term")
}

/// The largest `last_contact_ms` of the followers in the leader's cluster table.
fn follower_contact_ms(cluster: &TestCluster, leader: usize) -> Option<u64> {
    let (status, table) = cluster.call(leader, "GET", "/v1/cluster", "")?;
    if status != 200 {
        return None;
    }
    let leader_id = &cluster.specs[leader].id;
    table["members"]
        .as_array()?
        .iter()
        .filter(|member| member["id"] != leader_id.as_str())
        .filter_map(|member| member["last_contact_ms"].as_u64())
        .max()
}

#[test]
fn a_full_line_of_http_waiters_leaves_the_cluster_and_a_writer_unharmed() {
    let cluster = TestCluster::start(&[1, 1, 1]);
    let leader = cluster.wait_for_leader(&[], ELECTION);
    // Every node follows the leader before the measurement starts.
    let leader_id = cluster.specs[leader].id.clone();
    for index in 0..3 {
        cluster.wait_until("every node healthy", ELECTION, |cluster| {
            match cluster.call(index, "GET", "/v1/health", "") {
                Some((200, health)) if health["leader"] == leader_id.as_str() => Some(()),
                _ => None,
            }
        });
    }
    let term_before = term(&cluster, leader);

    // The writer: sequential PUTs to the leader, until told to stop (bounded by a deadline).
    let writer_url = format!("http://{}/v1/kv/flood/writer", cluster.specs[leader].http);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client");
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut writes = Vec::new();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let started = Instant::now();
                let ok = client
                    .put(&writer_url)
                    .body(format!("{}", writes.len()))
                    .send()
                    .is_ok_and(|response| response.status().is_success());
                writes.push(Write {
                    started,
                    took: started.elapsed(),
                    ok,
                });
            }
            writes
        })
    };
    let alone_from = Instant::now();
    std::thread::sleep(MEASURE);
    let alone_to = Instant::now();

    // The holder keeps the lock for the whole test (an HTTP lock lasts its TTL).
    let (status, grant) = cluster.must(leader, "POST", "/v1/lock/x?ttl_ms=60000", "");
    assert_eq!(status, 200, "{grant}");

    // The line: WAITERS_PER_LOCK_MAX clients, spread over the three nodes, each answered when
    // it times out (or is granted).
    let path = format!("/v1/lock/x?ttl_ms={TTL_MS}&wait_ms={WAIT_MS}");
    let urls: Vec<String> = (0..3)
        .map(|index| format!("http://{}{path}", cluster.specs[index].http))
        .collect();
    let flood_from = Instant::now();
    let waiters = {
        let urls = urls.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_millis(WAIT_MS) + Duration::from_secs(30))
                    .pool_max_idle_per_host(0)
                    .build()
                    .expect("HTTP client");
                let tasks: Vec<_> = (0..WAITERS_PER_LOCK_MAX)
                    .map(|number| {
                        let client = client.clone();
                        let url = urls[number % urls.len()].clone();
                        tokio::spawn(async move {
                            let started = Instant::now();
                            let answer = match client.post(&url).send().await {
                                Ok(response) => {
                                    let status = response.status().as_u16();
                                    let body: Value = response.json().await.unwrap_or(Value::Null);
                                    Some((status, body))
                                }
                                Err(_) => None,
                            };
                            (answer, started.elapsed())
                        })
                    })
                    .collect();
                let mut answers = Vec::new();
                for task in tasks {
                    answers.push(task.await.expect("a waiter task"));
                }
                answers
            })
        })
    };
    // Until the whole line is queued, as the leader counts it.
    let line = WAITERS_PER_LOCK_MAX as f64;
    cluster.wait_until(
        "the line full",
        Duration::from_secs(WAIT_MS / 1_000),
        |cluster| (cluster.metric(leader, "ha_lock_waiters") == Some(line)).then_some(()),
    );
    let full_at = Instant::now();
    let fill = full_at - flood_from;

    // One more: refused at once, nothing changed.
    let refused_at = Instant::now();
    let (status, body) = cluster.must((leader + 1) % 3, "POST", &path, "");
    let refused_in = refused_at.elapsed();
    println!(
        "line of {WAITERS_PER_LOCK_MAX} full after {:.2} s; one more answered {status} in \
         {:.1} ms: {body}",
        (full_at - flood_from).as_secs_f64(),
        refused_in.as_secs_f64() * 1e3
    );
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "limit", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("WAITERS_PER_LOCK_MAX")),
        "{body}"
    );
    assert!(body.get("leader").is_some(), "{body}");

    // The writer, and the heartbeats as the leader sees them, with the line full.
    let mut contact_ms_max = 0;
    let loaded_from = Instant::now();
    while loaded_from.elapsed() < MEASURE {
        if let Some(contact_ms) = follower_contact_ms(&cluster, leader) {
            contact_ms_max = contact_ms_max.max(contact_ms);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let loaded_to = Instant::now();
    assert_eq!(
        cluster.metric(leader, "ha_lock_waiters"),
        Some(line),
        "the line emptied before the measurement ended"
    );

    // Every waiter answers by itself when its wait ends.
    let answers = waiters.join().expect("the waiters' thread");
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("the writer");
    let term_after = term(&cluster, leader);

    let mut timed_out = 0;
    let mut granted = 0;
    let mut slowest = Duration::ZERO;
    for (answer, took) in &answers {
        slowest = slowest.max(*took);
        match answer {
            Some((409, body)) if body["error"] == "lock_timeout" => timed_out += 1,
            Some((200, body)) if body["token"].as_u64().is_some() => granted += 1,
            other => panic!("a waiter was answered {other:?} after {took:?}"),
        }
    }
    let (alone_p99, alone_count, alone_failed) = p99(&writes, alone_from, alone_to);
    let (filling_p99, filling_count, _) = p99(&writes, flood_from, full_at);
    let (loaded_p99, loaded_count, loaded_failed) = p99(&writes, loaded_from, loaded_to);
    println!(
        "waiters: {} queued in {:.2} s over 3 nodes; one more refused 429 in {:.1} ms; \
         answers: {timed_out} x 409 lock_timeout, {granted} x 200, slowest {:.2} s",
        WAITERS_PER_LOCK_MAX,
        fill.as_secs_f64(),
        refused_in.as_secs_f64() * 1e3,
        slowest.as_secs_f64()
    );
    println!(
        "writer p99: alone {:.2} ms ({alone_count} writes), while the line filled {:.2} ms \
         ({filling_count}), with the line full {:.2} ms ({loaded_count}); ratio full/alone {:.2}",
        alone_p99.as_secs_f64() * 1e3,
        filling_p99.as_secs_f64() * 1e3,
        loaded_p99.as_secs_f64() * 1e3,
        loaded_p99.as_secs_f64() / alone_p99.as_secs_f64()
    );
    println!(
        "term {term_before} -> {term_after}; largest follower last_contact_ms seen by the \
         leader with the line full: {contact_ms_max}"
    );
    assert_eq!(term_after, term_before, "an election happened");
    assert_eq!(alone_failed + loaded_failed, 0, "writes failed");
    assert_eq!(timed_out + granted, WAITERS_PER_LOCK_MAX);
    // 3x, plus 15 ms of slack: on the shared 2-core CI machine a p99 of a few ms moves by
    // several ms between two 5 s phases whatever the waiters do (one CI run: 5.69 ms alone,
    // 19.48 ms full; the same commit on a quiet machine: 2.95 ms and 5.31 ms, 1.80x). The
    // pathologies this guards against are far larger: 4.7 s before the fix, 18x with
    // QUORUM-polling waiters.
    assert!(
        loaded_p99 <= alone_p99 * 3 + Duration::from_millis(15),
        "the writer's p99 went from {alone_p99:?} alone to {loaded_p99:?} with the line full"
    );
}
