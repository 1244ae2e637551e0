//! Disaster recovery end to end (issue 14, item 2), with real `bot` processes on loopback:
//!
//! 1. A 3-node cluster gets data: 60 KV keys (`PUT /v1/kv`), a lock held for an hour
//!    (`POST /v1/lock`), and the bot's replicated journal, which its leader appends to on its
//!    own. No node has taken a snapshot of its own (the default interval is 10,000 entries).
//! 2. One `bot snapshot save` from a follower: `GET /v1/snapshot` exports a fresh copy after a
//!    linearizable read, so the backup's index is at or past the last acknowledged write
//!    (asserted), then `bot snapshot inspect`. A corrupted copy (one flipped byte, a truncated body) and the good one with a
//!    wrong `--cluster` are refused by `inspect` and `restore` with the reason, exit code 1,
//!    and the data dir is not created.
//! 3. Every node is SIGKILLed and every data dir deleted.
//! 4. `bot snapshot restore FILE --data-dir DIR --cluster bot-test` into n1's (empty) data dir;
//!    n1 starts alone and leads a one-voter cluster; n2 and n3 start with empty data dirs, join
//!    (the leader adds them as learners and promotes them) and catch up.
//! 5. Checked on every node, from its own copy (EVENTUAL reads once it has caught up): every
//!    key acknowledged before the backup's index has its value and version (the log index of
//!    the write); the journal is exactly the live journal's entries at or below the backup's
//!    index, field for field; the lock is still held (another acquire is refused) and a new
//!    lock gets a fencing token above the old one. Then the cluster takes new writes.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ha::backup_file::BackupHeader;
use support::Bot;
use support::cluster::TestCluster;
use support::serial::one_scenario_at_a_time;

const ELECTION: Duration = Duration::from_secs(30);
const KEYS: usize = 60;

/// Run `bot` with `arguments` to its end (at most 60 s): exit code, stdout, stderr.
fn run_bot(arguments: &[&str]) -> (Option<i32>, String, String) {
    let finished = Bot::start(arguments).finish(Duration::from_secs(60));
    (finished.status.code(), finished.stdout, finished.stderr)
}

fn http(cluster: &TestCluster, index: usize) -> String {
    cluster.specs[index].http.to_string()
}

/// `PUT /v1/kv/<key>` through the leader until it answers 200 (bounded); the write's index.
fn put(cluster: &TestCluster, key: &str, value: &str) -> u64 {
    let deadline = Instant::now() + ELECTION;
    loop {
        let leader = cluster.wait_for_leader(&[], ELECTION);
        if let Some((200, body)) = cluster.call(leader, "PUT", &format!("/v1/kv/{key}"), value) {
            return body["version"].as_u64().expect("a version");
        }
        assert!(Instant::now() < deadline, "PUT {key} never succeeded");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every node's copy of `key` (`None` when absent), read at EVENTUAL from that node.
fn local_value(cluster: &TestCluster, index: usize, key: &str) -> Option<(String, u64)> {
    let (status, body) = cluster.must(
        index,
        "GET",
        &format!("/v1/kv/{key}?consistency=eventual"),
        "",
    );
    match status {
        200 => Some((
            body["value"].as_str().expect("value").to_string(),
            body["version"].as_u64().expect("version"),
        )),
        404 => None,
        other => panic!("GET {key} on node {index}: {other} {body}"),
    }
}

fn applied_index(cluster: &TestCluster, index: usize) -> Option<u64> {
    cluster
        .metric(index, "ha_applied_index")
        .map(|value| value as u64)
}

fn assert_refused(arguments: &[&str], reason: &str, untouched: &Path) {
    let (code, stdout, stderr) = run_bot(arguments);
    assert_eq!(
        code,
        Some(1),
        "{arguments:?} was not refused: {stdout}{stderr}"
    );
    assert!(
        stderr.contains(reason),
        "{arguments:?}: no {reason:?} in {stderr}"
    );
    assert!(
        !untouched.exists(),
        "{arguments:?} touched {}",
        untouched.display()
    );
}

#[test]
fn a_backup_restores_a_killed_and_wiped_cluster_exactly() {
    let _serial = one_scenario_at_a_time();
    let flags = |_: &str| Vec::new();
    let mut cluster = TestCluster::start_secured(&[30, 20, 10], flags, None);
    let leader = cluster.wait_for_leader(&[], ELECTION);

    // 1. Data: keys, a held lock, the journal.
    let mut written = BTreeMap::new();
    for i in 0..KEYS {
        let key = format!("dr-{i:03}");
        let value = format!("value {i} of the disaster-recovery test");
        let version = put(&cluster, &key, &value);
        written.insert(key, (value, version));
    }
    let (status, lock) = cluster.must(leader, "POST", "/v1/lock/dr-lock?ttl_ms=3600000", "");
    assert_eq!(status, 200, "{lock}");
    let lock_token = lock["token"].as_u64().expect("a token");
    cluster.wait_for_journal_growth(leader, 5, "the journal", ELECTION);
    let last_write = written
        .values()
        .map(|(_, version)| *version)
        .max()
        .expect("written");

    // 2. Save once, from a follower (fresh: every acknowledged write is in it), then inspect.
    let work = tempfile::tempdir().expect("dir");
    let file = work.path().join("cluster.habackup");
    let leader = cluster.wait_for_leader(&[], ELECTION);
    let follower = (0..3).find(|index| *index != leader).expect("a follower");
    let (code, _, stderr) = run_bot(&[
        "snapshot",
        "save",
        "--http",
        &http(&cluster, follower),
        &file.to_string_lossy(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let header = BackupHeader::verify_file(&file, Some("bot-test")).expect("verifies");
    assert!(
        header.last_index >= last_write.max(lock_token),
        "a fresh backup holds every acknowledged write: index {} < {}",
        header.last_index,
        last_write.max(lock_token)
    );
    let (code, stdout, stderr) = run_bot(&[
        "snapshot",
        "inspect",
        "--cluster",
        "bot-test",
        &file.to_string_lossy(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("verified: sha256 ok"), "{stdout}");
    // The live state, read before the disaster: the journal at or below the backup's index.
    let live_journal: Vec<_> = cluster
        .journal(leader)
        .into_iter()
        .filter(|entry| entry.index.0 <= header.last_index)
        .collect();
    assert!(!live_journal.is_empty());

    // Corrupted backups are refused by inspect and restore, the data dir untouched.
    let good = std::fs::read(&file).expect("read");
    let bad = work.path().join("bad.habackup");
    let untouched = work.path().join("never-created");
    let mut flipped = good.clone();
    let middle = good.len() / 2;
    flipped[middle] ^= 0x20;
    std::fs::write(&bad, &flipped).expect("write");
    let bad_text = bad.to_string_lossy().to_string();
    let untouched_text = untouched.to_string_lossy().to_string();
    assert_refused(&["snapshot", "inspect", &bad_text], "SHA-256", &untouched);
    assert_refused(
        &[
            "snapshot",
            "restore",
            &bad_text,
            "--data-dir",
            &untouched_text,
        ],
        "SHA-256",
        &untouched,
    );
    std::fs::write(&bad, &good[..good.len() - 1000]).expect("write");
    assert_refused(&["snapshot", "inspect", &bad_text], "truncated", &untouched);
    assert_refused(
        &[
            "snapshot",
            "restore",
            &bad_text,
            "--data-dir",
            &untouched_text,
        ],
        "truncated",
        &untouched,
    );
    let good_text = file.to_string_lossy().to_string();
    assert_refused(
        &["snapshot", "inspect", "--cluster", "prod", &good_text],
        "\"prod\"",
        &untouched,
    );
    assert_refused(
        &[
            "snapshot",
            "restore",
            &good_text,
            "--data-dir",
            &untouched_text,
            "--cluster",
            "prod",
        ],
        "\"prod\"",
        &untouched,
    );

    // 3. The disaster: every node killed, every data dir gone.
    for index in 0..3 {
        cluster.kill(index);
        let dir: PathBuf = cluster.specs[index].data_dir.clone();
        std::fs::remove_dir_all(&dir).expect("remove data dir");
    }

    // 4. Restore into n1's data dir, start it alone, then the two empty nodes.
    let n1_dir = cluster.specs[0].data_dir.to_string_lossy().to_string();
    let (code, stdout, stderr) = run_bot(&[
        "snapshot",
        "restore",
        &good_text,
        "--data-dir",
        &n1_dir,
        "--cluster",
        "bot-test",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("restored:   index {}", header.last_index)),
        "{stdout}"
    );
    cluster.spawn(0);
    let started = Instant::now();
    let restored_leader = cluster.wait_for_leader(&[1, 2], ELECTION);
    let leading_after = started.elapsed();
    assert_eq!(restored_leader, 0);
    cluster.spawn(1);
    cluster.spawn(2);
    let target = header.last_index;
    cluster.wait_until("every node caught up", Duration::from_secs(90), |cluster| {
        (0..3)
            .all(|index| applied_index(cluster, index).is_some_and(|applied| applied >= target))
            .then_some(())
    });
    cluster.wait_until("three voters", Duration::from_secs(60), |cluster| {
        let (_, view) = cluster.call(0, "GET", "/v1/cluster", "")?;
        let voters = view["members"]
            .as_array()?
            .iter()
            .filter(|member| member["voter"].as_bool() == Some(true))
            .count();
        (voters == 3).then_some(())
    });

    eprintln!(
        "backup: index {} term {}, {} body bytes (saved from a follower); restored n1 led after \
         {leading_after:?}, all three caught up and voting after {:?}",
        header.last_index,
        header.last_term,
        header.body_bytes,
        started.elapsed()
    );

    // 5. Every acknowledged value, on every node's own copy; the journal; the lock.
    for index in 0..3 {
        for (key, (value, version)) in &written {
            assert_eq!(
                local_value(&cluster, index, key),
                Some((value.clone(), *version)),
                "{key} on n{}",
                index + 1
            );
        }
    }
    let restored_journal = cluster.journal(0);
    assert!(restored_journal.len() >= live_journal.len());
    assert_eq!(
        restored_journal[..live_journal.len()],
        live_journal[..],
        "the journal up to the backup's index"
    );
    let (status, body) = cluster.must(0, "POST", "/v1/lock/dr-lock?ttl_ms=1000", "");
    assert_eq!(
        status, 409,
        "the lock held before the disaster is still held: {body}"
    );
    let (status, body) = cluster.must(0, "POST", "/v1/lock/dr-lock-2?ttl_ms=1000", "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["token"].as_u64().expect("token") > lock_token,
        "{body}"
    );
    let after = put(&cluster, "after-restore", "written");
    assert!(after > header.last_index);
    let _logs = cluster.kill_and_collect_logs();
}
