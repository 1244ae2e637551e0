//! Issue 17: an fsync that stalls for 2 s on one node (the leader's, then a follower's)
//! causes no election while the node is otherwise healthy. The real driver over TCP on
//! 127.0.0.1 with on-disk WALs; the slow disk is a store wrapper whose `sync` sleeps. The
//! driver runs syncs on its storage thread, so the stall holds up only what waits for that
//! node's disk (its acknowledgements and answers), never its heartbeats, votes or timers.
//!
//! All three nodes share one current-thread runtime: a sync run on the event loop would
//! stop every node for 2 s, and their election timers would fire when it ends.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ha_core::{Consistency, LogIndex, Term};
use ha_replicate::driver::ReplicaNode;
use ha_replicate::entry::Entry;
use ha_replicate::hard_state::HardState;
use ha_replicate::snapshot_meta::{SnapshotId, SnapshotMeta};
use ha_replicate::storage::wal::{WalOptions, WalStore};
use ha_replicate::storage::{
    IncomingSnapshot, LogStore, Recovered, SnapshotSink, StorageError, WrittenSnapshot,
};
use ha_replicate::test_support::Counter;
use ha_replicate::test_support::loopback_cluster::{introduce, leader_of, loopback_settings};

/// How long one armed sync stalls.
const STALL: Duration = Duration::from_secs(2);
/// How long to wait for a leader or a write, at most.
const WAIT: Duration = Duration::from_secs(20);

/// The knob of one node's slow disk: arm it and the next sync sleeps for [`STALL`].
#[derive(Clone, Default)]
struct SlowDisk {
    armed: Arc<Mutex<bool>>,
    /// Syncs that stalled, and the longest stall served, in milliseconds.
    stalls: Arc<AtomicU64>,
    longest_ms: Arc<AtomicU64>,
}

impl SlowDisk {
    fn arm(&self) {
        *self.armed.lock().unwrap() = true;
    }
}

/// A store whose `sync` stalls when its [`SlowDisk`] is armed; everything else is the WAL's.
struct SlowSyncStore {
    inner: WalStore,
    disk: SlowDisk,
}

impl LogStore for SlowSyncStore {
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.inner.recover()
    }
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.inner.append(entries)
    }
    fn read_entries(
        &mut self,
        from: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StorageError> {
        self.inner.read_entries(from, count_max, bytes_max)
    }
    fn truncate_from(&mut self, from: LogIndex) -> Result<(), StorageError> {
        self.inner.truncate_from(from)
    }
    fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.inner.save_hard_state(hard_state)
    }
    fn snapshot_sink(&mut self) -> Result<Box<dyn SnapshotSink>, StorageError> {
        self.inner.snapshot_sink()
    }
    fn commit_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        written: &WrittenSnapshot,
    ) -> Result<SnapshotId, StorageError> {
        self.inner.commit_snapshot(meta, written)
    }
    fn read_snapshot(&mut self, offset: u64, max: usize) -> Result<Vec<u8>, StorageError> {
        self.inner.read_snapshot(offset, max)
    }
    #[allow(clippy::type_complexity)]
    fn snapshot_reader(
        &mut self,
    ) -> Result<Option<(SnapshotMeta, SnapshotId, Box<dyn std::io::Read + Send>)>, StorageError>
    {
        self.inner.snapshot_reader()
    }
    fn incoming(&self) -> Option<IncomingSnapshot> {
        self.inner.incoming()
    }
    fn begin_incoming(&mut self, meta: &SnapshotMeta, id: SnapshotId) -> Result<(), StorageError> {
        self.inner.begin_incoming(meta, id)
    }
    fn append_incoming(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner.append_incoming(offset, bytes)
    }
    fn verify_incoming(&mut self) -> Result<bool, StorageError> {
        self.inner.verify_incoming()
    }
    fn install_incoming(&mut self) -> Result<SnapshotId, StorageError> {
        self.inner.install_incoming()
    }
    fn discard_incoming(&mut self) -> Result<(), StorageError> {
        self.inner.discard_incoming()
    }
    fn sync(&mut self) -> Result<(), StorageError> {
        let armed = std::mem::take(&mut *self.disk.armed.lock().unwrap());
        if armed {
            let started = Instant::now();
            std::thread::sleep(STALL);
            let stalled_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.disk.stalls.fetch_add(1, Ordering::SeqCst);
            self.disk.longest_ms.fetch_max(stalled_ms, Ordering::SeqCst);
        }
        self.inner.sync()
    }
    fn reopen(&mut self) -> Result<Recovered, StorageError> {
        self.inner.reopen()
    }
}

async fn start(index: usize, dir: &Path, disk: SlowDisk) -> ReplicaNode<Counter> {
    let mut settings = loopback_settings(index, 3);
    settings.replica.engine.priority = ha_core::Priority(1);
    let store = SlowSyncStore {
        inner: WalStore::open(dir, WalOptions::default()).unwrap(),
        disk,
    };
    ReplicaNode::start(settings, Counter::default(), store)
        .await
        .unwrap()
}

/// Elections started on all nodes together, and the highest term any node is in.
async fn elections_and_term(nodes: &[ReplicaNode<Counter>]) -> (u64, Term) {
    let mut elections = 0;
    let mut term = Term(0);
    for node in nodes {
        let status = node.status().await.unwrap();
        elections += status.elections_started;
        term = term.max(status.term);
    }
    (elections, term)
}

/// Arm `disk`, make writes through `writer` while its sync stalls, and watch every node's
/// role meanwhile: the leader and term must not change. Returns the writes made.
async fn stall_and_watch(
    nodes: &[ReplicaNode<Counter>],
    leader: usize,
    writer: usize,
    disk: &SlowDisk,
) -> u64 {
    let stalls_before = disk.stalls.load(Ordering::SeqCst);
    let client = nodes[writer].client();
    disk.arm();
    let watch_until = Instant::now() + STALL + Duration::from_millis(1_500);
    let mut writes = 0u64;
    let mut pending = Box::pin(client.write(1, Consistency::Quorum, WAIT));
    // Bounded: one pass per 20 ms for the watch window.
    for _ in 0..((STALL.as_millis() as u64 + 1_500) / 20 + 1) {
        if Instant::now() >= watch_until {
            break;
        }
        for (index, node) in nodes.iter().enumerate() {
            let role = node.role();
            assert_eq!(
                role.leader.as_ref(),
                Some(nodes[leader].node_id()),
                "node {index} lost the leader during the stall: {role:?}"
            );
        }
        tokio::select! {
            result = &mut pending => {
                result.expect("the write succeeds");
                writes += 1;
                pending = Box::pin(client.write(1, Consistency::Quorum, WAIT));
            }
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    pending.await.expect("the last write succeeds");
    writes += 1;
    assert_eq!(
        disk.stalls.load(Ordering::SeqCst),
        stalls_before + 1,
        "the armed sync really stalled"
    );
    writes
}

#[tokio::test(flavor = "current_thread")]
async fn a_two_second_fsync_stall_on_the_leader_or_a_follower_causes_no_election() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let disks: Vec<SlowDisk> = (0..3).map(|_| SlowDisk::default()).collect();
    let mut nodes = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        nodes.push(start(index + 1, dir.path(), disks[index].clone()).await);
    }
    introduce(&nodes).await;
    let leader = leader_of(&nodes, WAIT).await;
    // A first write: every node's log and term are on disk before the stalls.
    nodes[leader]
        .client()
        .write(1, Consistency::Quorum, WAIT)
        .await
        .expect("first write");
    let (elections, term) = elections_and_term(&nodes).await;

    // The leader's disk stalls: the two followers still commit, and the leader's heartbeats
    // keep leaving; its answers wait for its own sync.
    let leader_writes = stall_and_watch(&nodes, leader, leader, &disks[leader]).await;
    // A follower's disk stalls: its acknowledgements wait, the other follower commits.
    let follower = (leader + 1) % 3;
    let follower_writes = stall_and_watch(&nodes, leader, follower, &disks[follower]).await;

    assert_eq!(
        elections_and_term(&nodes).await,
        (elections, term),
        "no election was started and no term changed"
    );
    let longest_ms = disks
        .iter()
        .map(|disk| disk.longest_ms.load(Ordering::SeqCst))
        .max()
        .unwrap_or(0);
    assert!(longest_ms >= 1_900, "a sync stalled {longest_ms} ms");
    let total = nodes[leader]
        .client()
        .read((), Consistency::Strong, WAIT)
        .await
        .expect("read");
    assert_eq!(
        total,
        1 + leader_writes + follower_writes,
        "every write applied once"
    );
    eprintln!(
        "fsync stalls of {longest_ms} ms on the leader and a follower: 0 elections; \
         {leader_writes} writes through the leader and {follower_writes} through the follower \
         during them"
    );
}
