//! Disk faults between restarts of a real `bot` follower: a torn tail of its newest WAL
//! segment is repaired at start (what was durable is kept) and the node catches up from the
//! leader; damage in the middle of the log is refused with a clear error naming the file, and
//! the node does not start. Nothing acknowledged at QUORUM is lost cluster-wide. Every wait
//! polls with a deadline; every process is killed by its id when the test ends.

mod support;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ha_examples::journal::JournalVerdict;
use support::Bot;
use support::cluster::TestCluster;

const WAIT: Duration = Duration::from_secs(20);

/// A node's WAL segments, oldest first.
fn segments(data_dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data_dir.join("log"))
        .expect("log dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("wal-"))
        })
        .collect();
    segments.sort();
    segments
}

/// Acknowledged QUORUM writes `prefix-0..count` through node `index`.
fn write_keys(cluster: &TestCluster, index: usize, prefix: &str, count: usize) {
    for key in 0..count {
        let (status, body) = cluster.must(index, "PUT", &format!("/v1/kv/{prefix}-{key}"), "v");
        assert_eq!(status, 200, "{body}");
    }
}

fn assert_readable(cluster: &TestCluster, index: usize, prefix: &str, count: usize) {
    for key in 0..count {
        let path = format!("/v1/kv/{prefix}-{key}?consistency=strong");
        let (status, body) = cluster.must(index, "GET", &path, "");
        assert_eq!(status, 200, "{prefix}-{key} lost: {body}");
    }
}

#[test]
fn a_torn_wal_tail_is_repaired_and_middle_damage_is_refused() {
    let mut cluster = TestCluster::start(&[1, 1, 1]);
    let leader = cluster.wait_for_leader(&[], WAIT);
    let follower = (leader + 1) % 3;
    write_keys(&cluster, leader, "before", 20);

    // Torn tail: cut the last bytes off the follower's newest record while it is down. The
    // kill leaves the zeros the writer wrote ahead of its records; they go too.
    cluster.kill(follower);
    let segment = segments(&cluster.specs[follower].data_dir)
        .pop()
        .expect("a segment");
    let bytes = std::fs::read(&segment).expect("read segment");
    let records_end = bytes
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    assert!(records_end > 200, "the newest segment holds records");
    OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment")
        .set_len(records_end as u64 - 7)
        .expect("truncate");
    write_keys(&cluster, leader, "while-down", 20);
    cluster.spawn(follower);
    let commit = cluster
        .metric(leader, "ha_commit_index")
        .expect("commit index");
    let deadline = std::time::Instant::now() + WAIT;
    while cluster
        .metric(follower, "ha_applied_index")
        .is_none_or(|applied| applied < commit)
    {
        if std::time::Instant::now() > deadline {
            let health = cluster.call(follower, "GET", "/v1/health", "");
            let applied = cluster.metric(follower, "ha_applied_index");
            let logs = cluster.kill_and_collect_logs();
            panic!(
                "the repaired follower did not catch up to {commit}: applied {applied:?}, health {health:?}\n{logs}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_readable(&cluster, follower, "before", 20);
    assert_readable(&cluster, follower, "while-down", 20);

    // Damage in the middle of the log: flip a byte early in the first segment. The node must
    // refuse to start (the cluster keeps working without it).
    cluster.kill(follower);
    let first = segments(&cluster.specs[follower].data_dir)
        .into_iter()
        .next()
        .expect("a segment");
    let mut bytes = std::fs::read(&first).expect("read");
    assert!(bytes.len() > 200, "the first segment holds several records");
    bytes[100] ^= 0xff;
    std::fs::write(&first, &bytes).expect("write");
    let arguments = cluster.node_arguments(follower);
    let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let finished = Bot::start(&arguments).finish(WAIT);
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("corrupt") || finished.stderr.contains("Corrupt"),
        "a clear error: {}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("wal-"),
        "the error names the file: {}",
        finished.stderr
    );

    let refusal = finished
        .stderr
        .lines()
        .find(|line| line.contains("wal-"))
        .unwrap_or("");
    println!("refused to start: {refusal}");
    // The two others still hold a quorum: nothing acknowledged is lost, work goes on.
    write_keys(&cluster, leader, "after", 5);
    assert_readable(&cluster, leader, "before", 20);
    assert_readable(&cluster, leader, "while-down", 20);
    let verdict = JournalVerdict::check(&cluster.journal(leader));
    assert!(verdict.ok(), "{verdict}");
}
