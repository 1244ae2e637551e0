//! Issue 15: a witness replica (two data replicas and one witness, wired by hand with no
//! faults but a cut link): it never calls the host's state machine, keeps command metadata
//! only, takes metadata-only snapshots, installs a snapshot from the leader without keeping
//! its bytes, refuses reads, forwards writes, ignores a transfer to it, restarts from its own
//! store, and a data node refuses to start from a witness's store.

use std::collections::{BTreeMap, VecDeque};

use ha_core::{
    Consistency, LogIndex, Millis, NodeId, SessionId, StateMachine, StateMachineError, codec,
};
use ha_replicate::engine::{EngineSettings, Role};
use ha_replicate::entry::{ElectionCause, Payload};
use ha_replicate::membership::VoterSet;
use ha_replicate::replica::{
    ClientError, ClientReply, ClientRequest, ConsistencySettings, ReadRequest, ReplicaCore,
    ReplicaEffect, ReplicaSettings, ReplicaTimer, Rpc, SyncPolicy, TransferSettings, WriteRequest,
};
use ha_replicate::storage::memory::{MemoryDisk, MemoryStore};

/// A state machine that counts what reaches it: a witness's must stay untouched.
#[derive(Debug, Default)]
struct Counter {
    applied: u64,
    sum: u64,
    restored: u64,
}

impl StateMachine for Counter {
    type Command = u64;
    type Response = u64;
    type Query = ();
    type QueryResponse = u64;

    fn apply(&mut self, _index: LogIndex, command: u64) -> u64 {
        self.applied += 1;
        self.sum += command;
        self.sum
    }

    fn query(&self, _query: &()) -> u64 {
        self.sum
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        // Large enough that a data snapshot dwarfs a witness's.
        let mut bytes = self.sum.to_le_bytes().to_vec();
        bytes.resize(4096, 0);
        Ok(bytes)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        let mut sum = [0u8; 8];
        sum.copy_from_slice(
            snapshot
                .get(..8)
                .ok_or_else(|| StateMachineError::Corrupt("short".into()))?,
        );
        self.sum = u64::from_le_bytes(sum);
        self.restored += 1;
        Ok(())
    }
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

const NAMES: [&str; 3] = ["a", "b", "w"];
const WITNESS: usize = 2;

fn settings(name: &str, witness: bool) -> ReplicaSettings {
    let mut engine = EngineSettings::for_test(id(name));
    // Only a campaigns on its own: the test elects it by hand.
    engine.failover_mode = ha_core::FailoverMode::Manual;
    ReplicaSettings {
        engine,
        sync_policy: SyncPolicy::EveryInput,
        snapshot_every_entries: 10,
        transfer: TransferSettings {
            chunk_bytes: 512,
            ..TransferSettings::default()
        },
        consistency: ConsistencySettings {
            check_every_entries: 5,
            repair: false,
        },
        witness,
        ..ReplicaSettings::for_test(id(name))
    }
}

struct Node {
    core: ReplicaCore<Counter, MemoryStore>,
    disk: MemoryDisk,
    timers: Vec<(Millis, ReplicaTimer)>,
}

/// Three replicas over a perfect network of 1 ms hops, with links that can be cut.
struct Cluster {
    nodes: Vec<Node>,
    now: Millis,
    queue: VecDeque<(Millis, usize, usize, Rpc)>,
    cut: Option<usize>,
    replies: BTreeMap<u64, ClientReply>,
}

fn start(name: &str, witness: bool, disk: MemoryDisk, now: Millis) -> Node {
    let store = MemoryStore::open(disk.clone());
    let core = ReplicaCore::new(settings(name, witness), Counter::default(), store, now, 11)
        .expect("starts");
    Node {
        core,
        disk,
        timers: Vec::new(),
    }
}

impl Cluster {
    fn new() -> Self {
        let now = Millis(0);
        let mut nodes: Vec<Node> = NAMES
            .iter()
            .enumerate()
            .map(|(index, name)| start(name, index == WITNESS, MemoryDisk::new(), now))
            .collect();
        let voters = VoterSet::with_voters(NAMES.map(id));
        for node in &mut nodes {
            assert!(node.core.on_bootstrap(now, voters.clone()));
        }
        let mut cluster = Self {
            nodes,
            now,
            queue: VecDeque::new(),
            cut: None,
            replies: BTreeMap::new(),
        };
        cluster.collect();
        cluster
    }

    fn index_of(name: &NodeId) -> usize {
        NAMES
            .iter()
            .position(|candidate| *candidate == name.as_str())
            .unwrap()
    }

    fn collect(&mut self) {
        for (from, name) in NAMES.iter().enumerate() {
            let effects = self.nodes[from].core.drain_effects();
            for effect in effects {
                match effect {
                    ReplicaEffect::Send { to, rpc } => {
                        let to = Self::index_of(&to);
                        self.queue.push_back((self.now + 1, from, to, rpc));
                    }
                    ReplicaEffect::SetTimer { timer, after_ms } => {
                        let at = self.now + after_ms;
                        self.nodes[from].timers.push((at, timer));
                    }
                    ReplicaEffect::Reply { request_id, reply } => {
                        self.replies.insert(request_id, reply);
                    }
                    ReplicaEffect::WriteSnapshot(job) => {
                        let written = job.run().expect("runs once");
                        let now = self.now;
                        self.nodes[from].core.on_snapshot_written(now, written);
                        // Its effects are collected on the next round.
                    }
                    ReplicaEffect::ComputeDigest(job) => {
                        assert_ne!(from, WITNESS, "a witness computes no digest");
                        let computed = job.run().expect("runs once");
                        let now = self.now;
                        self.nodes[from].core.on_digest_computed(now, computed);
                    }
                    ReplicaEffect::RoleChanged { .. } | ReplicaEffect::Founded { .. } => {}
                    // The store is written in place: sync it now (as the tokio driver's
                    // storage thread would), which releases what waited for it.
                    ReplicaEffect::Sync { through } => {
                        let now = self.now;
                        self.nodes[from].core.complete_sync(now, through);
                    }
                    ReplicaEffect::Apply(task) => {
                        let now = self.now;
                        self.nodes[from].core.run_apply_task(now, &task);
                    }
                    ReplicaEffect::Fatal(error) => panic!("{name}: {error}"),
                }
            }
        }
    }

    fn step(&mut self) {
        self.now = self.now + 1;
        let now = self.now;
        let due: Vec<_> = {
            let (due, later): (Vec<_>, Vec<_>) =
                self.queue.drain(..).partition(|(at, ..)| *at <= now);
            self.queue = later.into();
            due
        };
        for (_, from, to, rpc) in due {
            if self.cut.is_some_and(|cut| cut == from || cut == to) {
                continue;
            }
            self.nodes[to].core.on_rpc(now, id(NAMES[from]), rpc);
        }
        for node in &mut self.nodes {
            let (due, later): (Vec<_>, Vec<_>) =
                node.timers.drain(..).partition(|(at, _)| *at <= now);
            node.timers = later;
            for (_, timer) in due {
                node.core.on_timer(now, timer);
            }
        }
        self.collect();
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    fn run_until(&mut self, ms_max: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..ms_max {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    fn submit(&mut self, node: usize, request_id: u64, request: ClientRequest) {
        let now = self.now;
        self.nodes[node]
            .core
            .submit(now, request_id, request, now + 5_000);
        self.collect();
    }
}

/// A STRONG write: answered once every voter, the witness included, applied it.
fn write(sequence: u64) -> ClientRequest {
    write_at(sequence, Consistency::Strong)
}

fn write_at(sequence: u64, consistency: Consistency) -> ClientRequest {
    ClientRequest::Write(WriteRequest {
        session: SessionId(1),
        sequence,
        lowest_unanswered: sequence,
        command: codec::encode("command", &sequence, 16).unwrap(),
        consistency,
    })
}

fn read(consistency: Consistency) -> ClientRequest {
    ClientRequest::Read(ReadRequest {
        query: codec::encode("query", &(), 16).unwrap(),
        consistency,
    })
}

/// A cluster whose node a leads, with `writes` STRONG writes (sequences 1..) applied.
fn elected_with_writes(writes: u64) -> Cluster {
    let mut cluster = Cluster::new();
    cluster.run(400);
    let now = cluster.now;
    assert!(cluster.nodes[0].core.on_campaign(now));
    cluster.collect();
    assert!(cluster.run_until(2_000, |c| c.nodes[0].core.engine().is_leader()));
    for sequence in 1..=writes {
        cluster.submit(0, sequence, write(sequence));
        assert!(
            cluster.run_until(2_000, |c| c.replies.contains_key(&sequence)),
            "write {sequence} answered"
        );
        assert!(
            matches!(cluster.replies[&sequence], ClientReply::Written { .. }),
            "{:?}",
            cluster.replies[&sequence]
        );
    }
    cluster
}

#[test]
fn a_witness_applies_nothing_to_its_host_and_stores_metadata_only() {
    let mut cluster = elected_with_writes(4);
    cluster.run(100);
    let witness = &cluster.nodes[WITNESS];
    assert!(witness.core.engine().is_witness());
    let leader_applied = cluster.nodes[0].core.applier().applied_index();
    // STRONG writes completed: the witness reports its applied index like any voter.
    assert_eq!(witness.core.applier().applied_index(), leader_applied);
    assert_eq!(witness.core.applier().machine().applied, 0);
    assert_eq!(cluster.nodes[1].core.applier().machine().applied, 4);
    // Its disk holds every entry, commands without payloads.
    let entries = witness.disk.entries_written();
    let commands: Vec<_> = entries
        .iter()
        .filter(|entry| matches!(entry.payload, Payload::Command(_)))
        .collect();
    assert_eq!(commands.len(), 4);
    assert!(commands.iter().all(|entry| entry.is_stripped_command()));
    assert!(
        cluster.nodes[1]
            .disk
            .entries_written()
            .iter()
            .all(|entry| !entry.is_stripped_command())
    );
    // The failover history is kept (LeaderStart entries are whole).
    assert_eq!(witness.core.applier().history().count(), 1);
    // The consistency monitor judged the data replicas only (checkpoint every 5 entries).
    let status = cluster.nodes[0].core.consistency_status();
    assert!(!status.verdicts.contains_key(&id("w")), "{status:?}");
}

#[test]
fn a_witness_refuses_reads_and_forwards_writes() {
    let mut cluster = elected_with_writes(1);
    for (request_id, consistency) in [
        (100, Consistency::Eventual),
        (101, Consistency::Quorum),
        (102, Consistency::Strong),
    ] {
        cluster.submit(WITNESS, request_id, read(consistency));
        assert_eq!(
            cluster.replies.get(&request_id),
            Some(&ClientReply::Failed(ClientError::Witness)),
            "{consistency:?}"
        );
    }
    assert_eq!(
        ClientError::Witness.fate(),
        ha_replicate::replica::WriteFate::NotApplied
    );
    assert!(!ClientError::Witness.is_retryable());
    cluster.submit(WITNESS, 103, write(2));
    assert!(cluster.run_until(2_000, |c| c.replies.contains_key(&103)));
    assert!(
        matches!(cluster.replies[&103], ClientReply::Written { .. }),
        "forwarded to the leader and applied: {:?}",
        cluster.replies[&103]
    );
    assert_eq!(cluster.nodes[0].core.applier().machine().applied, 2);
}

#[test]
fn a_transfer_to_a_witness_is_ignored_and_the_leader_keeps_leading() {
    let mut cluster = elected_with_writes(1);
    let now = cluster.now;
    // The leader has no gossip metadata saying w is a witness: it may choose it.
    let target =
        cluster.nodes[0]
            .core
            .on_transfer(now, Some(id("w")), ElectionCause::ManualTransfer);
    assert_eq!(target, Ok(id("w")));
    cluster.collect();
    cluster.run(2_000);
    assert_eq!(
        cluster.nodes[WITNESS].core.engine().timeout_now_ignored(),
        1
    );
    assert_eq!(cluster.nodes[WITNESS].core.engine().elections_started(), 0);
    assert!(cluster.nodes[0].core.engine().is_leader());
    assert!(!cluster.nodes[0].core.engine().transfer_in_progress());
    // Writes go on once the transfer timed out.
    cluster.submit(0, 200, write(2));
    assert!(cluster.run_until(2_000, |c| c.replies.contains_key(&200)));
    assert!(matches!(cluster.replies[&200], ClientReply::Written { .. }));
}

#[test]
fn a_witness_installs_a_snapshot_without_its_bytes_and_restarts_from_its_own() {
    let mut cluster = elected_with_writes(2);
    // Cut w off; a and b commit 30 more writes, and a snapshots and compacts past them.
    cluster.cut = Some(WITNESS);
    for sequence in 3..=32 {
        // QUORUM: a STRONG write would wait for the witness.
        cluster.submit(0, sequence, write_at(sequence, Consistency::Quorum));
        assert!(cluster.run_until(2_000, |c| c.replies.contains_key(&sequence)));
    }
    cluster.run(100);
    let leader_snapshot = cluster.nodes[0].core.engine().snapshot_meta().last_index;
    assert!(leader_snapshot > LogIndex(20), "{leader_snapshot}");
    let data_bytes = cluster.nodes[0].core.snapshot_stats().current_bytes;
    assert!(data_bytes > 4096, "{data_bytes}");
    // Healed: w is behind the leader's log and is sent the snapshot.
    cluster.cut = None;
    assert!(cluster.run_until(5_000, |c| {
        c.nodes[WITNESS].core.snapshot_stats().installs == 1
            && c.nodes[WITNESS].core.applier().applied_index()
                == c.nodes[0].core.applier().applied_index()
    }));
    let witness = &cluster.nodes[WITNESS];
    let stats = witness.core.snapshot_stats();
    assert!(stats.bytes_received >= data_bytes, "{stats:?}");
    assert!(
        stats.current_bytes < 200,
        "the witness stores its own metadata-only snapshot: {stats:?}"
    );
    assert_eq!(witness.core.applier().machine().applied, 0);
    assert_eq!(witness.core.applier().machine().restored, 0);
    assert!(
        witness.core.engine().snapshot_meta().last_index >= leader_snapshot,
        "compacted like the leader"
    );
    // More writes; the witness takes snapshots of its own (metadata only) too.
    for sequence in 33..=60 {
        cluster.submit(0, sequence, write(sequence));
        assert!(cluster.run_until(2_000, |c| c.replies.contains_key(&sequence)));
    }
    cluster.run(100);
    let witness = &cluster.nodes[WITNESS];
    assert!(witness.core.snapshot_stats().taken >= 1);
    assert!(witness.core.snapshot_stats().current_bytes < 200);
    println!(
        "snapshot bytes: witness {} (received and dropped {}), leader {}",
        witness.core.snapshot_stats().current_bytes,
        witness.core.snapshot_stats().bytes_received,
        cluster.nodes[0].core.snapshot_stats().current_bytes,
    );
    let applied = witness.core.applier().applied_index();

    // A restart from its own store: metadata only, host untouched.
    let disk = cluster.nodes[WITNESS].disk.clone();
    disk.crash(0);
    let now = cluster.now;
    let restarted = start("w", true, disk.clone(), now);
    assert!(restarted.core.applier().applied_index() >= witness_snapshot_floor(applied));
    assert_eq!(restarted.core.applier().machine().restored, 0);
    assert_eq!(restarted.core.engine().role(), Role::Follower);

    // A data node refuses to start from the witness's store, saying why.
    let error = ReplicaCore::new(
        settings("w", false),
        Counter::default(),
        MemoryStore::open(disk),
        now,
        11,
    )
    .err()
    .expect("refused");
    assert!(error.to_string().contains("witness"), "{error}");
}

/// The lowest applied index a restarted witness may report: its latest snapshot covers at
/// least every tenth entry up to `applied`.
fn witness_snapshot_floor(applied: LogIndex) -> LogIndex {
    LogIndex(applied.0.saturating_sub(10))
}
