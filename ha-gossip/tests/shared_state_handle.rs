//! The `SharedState` handle alone (no gossip task): local writes and reads, restart from its
//! log with each fsync policy, and the local latency it costs (printed; the release-mode
//! benchmark is bench/src/bin/shared_state_bench.rs).

use std::time::{Duration, Instant};

use ha_core::{NodeId, SharedStateFsync};
use ha_gossip::shared_state::{SharedState, SharedStateSettings, StateData};

fn settings(dir: Option<&std::path::Path>, fsync: SharedStateFsync) -> SharedStateSettings {
    SharedStateSettings {
        dir: dir.map(std::path::Path::to_path_buf),
        fsync,
        ..SharedStateSettings::default()
    }
}

fn percentile(samples: &mut [Duration], fraction: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * fraction).round() as usize;
    samples[index]
}

/// Writes then reads `count` keys; every read returns what was written. Returns put, get and
/// increment latencies.
async fn exercise(state: &SharedState, count: usize) -> [Vec<Duration>; 3] {
    let mut puts = Vec::with_capacity(count);
    let mut gets = Vec::with_capacity(count);
    let mut increments = Vec::with_capacity(count);
    for index in 0..count {
        let key = format!("key/{index}");
        let started = Instant::now();
        state.put(&key, format!("value {index}")).await.unwrap();
        puts.push(started.elapsed());
        let started = Instant::now();
        let read = state.get(&key);
        gets.push(started.elapsed());
        assert_eq!(
            read.map(|value| value.data),
            Some(StateData::Bytes(format!("value {index}").into_bytes()))
        );
        let started = Instant::now();
        let total = state.increment("counter", 1).await.unwrap();
        increments.push(started.elapsed());
        assert_eq!(total, index as i64 + 1);
    }
    [puts, gets, increments]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_writes_and_reads_and_what_they_cost() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("memory", None, SharedStateFsync::Never, 2000),
        (
            "file, fsync never",
            Some(dir.path().join("never")),
            SharedStateFsync::Never,
            2000,
        ),
        (
            "file, fsync always",
            Some(dir.path().join("always")),
            SharedStateFsync::Always,
            200,
        ),
    ];
    for (name, path, fsync, count) in cases {
        let node = NodeId::new("n1").unwrap();
        let state = SharedState::open(node.clone(), settings(path.as_deref(), fsync), 1).unwrap();
        let [mut puts, mut gets, mut increments] = exercise(&state, count).await;
        println!(
            "{name}: put p50 {:?} p99 {:?}; get p50 {:?} p99 {:?}; increment p50 {:?} p99 {:?} ({count} each, dev profile: ha-gossip at opt-level 2 with debug assertions)",
            percentile(&mut puts, 0.5),
            percentile(&mut puts, 0.99),
            percentile(&mut gets, 0.5),
            percentile(&mut gets, 0.99),
            percentile(&mut increments, 0.5),
            percentile(&mut increments, 0.99),
        );
        drop(state);
        if let Some(path) = path {
            // Reopened from its log: everything is back, and a new write is newer.
            let state = SharedState::open(node, settings(Some(&path), fsync), 2).unwrap();
            let stats = state.stats();
            assert_eq!(stats.map.live, count + 1, "{name}");
            assert_eq!(stats.replay_refused, 0);
            assert_eq!(
                state.get("counter").map(|value| value.data),
                Some(StateData::Counter(count as i64))
            );
            let before = state.get("key/0").unwrap().stamp;
            let after = state.put("key/0", "new").await.unwrap();
            assert!(after > before, "{name}");
        }
    }
}
