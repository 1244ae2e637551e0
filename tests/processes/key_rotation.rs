//! Cluster key rotation and CA rotation without downtime, on a 3-node `bot` cluster while a
//! writer keeps writing (issue 13, "Key rotation for both is documented and tested").
//!
//! A node reads its key file and certificates at start, so a rotation is a rolling restart:
//! one node at a time, SIGTERM, new files, restart from the same data dir, and wait until it
//! is back in the cluster before the next. The order matters, because a keyring seals with
//! its FIRST key and opens with any:
//!
//! - cluster key: `[old]` -> roll 1 `[old, new]` (still seals with old; opens new) -> roll 2
//!   `[new, old]` (seals with new, which every node opens since roll 1) -> roll 3 `[new]`;
//! - CA: old certificates trusting `old` -> roll 1 trust `old + new` -> roll 2 certificates
//!   from the new CA (trusted by all since roll 1) -> roll 3 trust `new` only.
//!
//! The writer PUTs unique keys with QUORUM consistency and records each acknowledged one with
//! the phase it was acknowledged in. At the end: every acknowledged key reads back with its
//! value, the writer made progress in every phase, and no node counted a refusal a correct
//! rotation cannot cause (wrong key, wrong CA, ...: `ATTACK_CAUSES`), summed over every
//! process's life (each node's counters are read just before it stops, and at the end).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::cluster::{AdminAccess, TestCluster};
use support::secure_cluster::{
    ATTACK_CAUSES, CertDir, add_refusals, key_flags, keygen, refusals, tls_flags,
};
use support::serial::one_scenario_at_a_time;

/// Electing a leader.
const ELECTION: Duration = Duration::from_secs(30);
/// A restarted node is back in the cluster within this.
const REJOIN: Duration = Duration::from_secs(60);
/// The writer's steady phase before and after the rolls.
const STEADY: Duration = Duration::from_secs(2);
/// A write gives up after this (an unknown outcome: not counted as acknowledged).
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// The writer's pause between writes (bounds how many keys are checked at the end).
const WRITE_PAUSE: Duration = Duration::from_millis(15);
/// The most writes the writer attempts, and for how long at most.
const WRITES_MAX: u64 = 50_000;
const WRITER_DEADLINE: Duration = Duration::from_secs(900);
/// A restarted node counts as caught up when the leader sees it this close.
const LAG_ENTRIES_MAX: u64 = 200;

/// One acknowledged write.
struct Ack {
    phase: usize,
    key: String,
    value: String,
}

/// The writer thread and what it shares with the test.
struct Writer {
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicUsize>,
    handle: JoinHandle<(Vec<Ack>, u64)>,
}

impl Writer {
    /// Start writing `rot/<n>` = `v<n>` through the nodes in turn (a node that does not answer
    /// 200 is skipped until the next turn).
    fn start(cluster: &TestCluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(AtomicUsize::new(0));
        let client = support::cluster::admin_client(&cluster.ca_files(), WRITE_TIMEOUT);
        let bases: Vec<String> = (0..cluster.specs.len())
            .map(|index| cluster.base_url(index))
            .collect();
        let token = cluster.token().map(str::to_string);
        let handle = {
            let (stop, phase) = (Arc::clone(&stop), Arc::clone(&phase));
            std::thread::spawn(move || {
                let deadline = Instant::now() + WRITER_DEADLINE;
                let mut acks = Vec::new();
                let mut attempts = 0u64;
                let mut target = 0usize;
                while !stop.load(Ordering::Relaxed)
                    && attempts < WRITES_MAX
                    && Instant::now() < deadline
                {
                    let now_phase = phase.load(Ordering::Relaxed);
                    let key = format!("rot/{attempts}");
                    let value = format!("v{attempts}-p{now_phase}");
                    attempts += 1;
                    let mut request = client
                        .put(format!("{}/v1/kv/{key}?consistency=quorum", bases[target]))
                        .body(value.clone());
                    if let Some(token) = &token {
                        request = request.bearer_auth(token);
                    }
                    let acknowledged = request
                        .send()
                        .is_ok_and(|response| response.status().as_u16() == 200);
                    if acknowledged {
                        acks.push(Ack {
                            phase: now_phase,
                            key,
                            value,
                        });
                    } else {
                        target = (target + 1) % bases.len();
                    }
                    std::thread::sleep(WRITE_PAUSE);
                }
                (acks, attempts)
            })
        };
        Self {
            stop,
            phase,
            handle,
        }
    }

    fn next_phase(&self) {
        self.phase.fetch_add(1, Ordering::Relaxed);
    }

    fn finish(self) -> (Vec<Ack>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the writer thread")
    }
}

/// Counters of each stopped process, added up by cause.
#[derive(Default)]
struct Refusals(BTreeMap<String, u64>);

impl Refusals {
    fn read(&mut self, cluster: &TestCluster, index: usize) {
        let counts = refusals(cluster, index).unwrap_or_else(|| {
            panic!(
                "{} does not export ha_transport_refusals_total",
                cluster.specs[index].id
            )
        });
        add_refusals(&mut self.0, &counts);
    }

    fn check(&self, what: &str) {
        for cause in ATTACK_CAUSES {
            let count = self.0.get(cause).copied().unwrap_or(0);
            assert_eq!(count, 0, "{what}: {count} {cause} refusals: {:?}", self.0);
        }
    }

    fn nonzero(&self) -> String {
        let nonzero: Vec<String> = self
            .0
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(cause, count)| format!("{cause}={count}"))
            .collect();
        if nonzero.is_empty() {
            "none".to_string()
        } else {
            nonzero.join(" ")
        }
    }
}

/// Stop node `index` (SIGTERM, counters read first), run `prepare` (new files), restart it
/// from the same data dir, and wait until it is back: healthy, and close behind the leader.
/// Returns how long it took.
fn roll(
    cluster: &mut TestCluster,
    index: usize,
    totals: &mut Refusals,
    prepare: impl FnOnce(),
) -> Duration {
    let started = Instant::now();
    let id = cluster.specs[index].id.clone();
    totals.read(cluster, index);
    let (code, log) = cluster.terminate_with_log(index);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        code,
        Some(0),
        "{id} did not stop cleanly on SIGTERM; its log ends:\n{}",
        lines[lines.len().saturating_sub(30)..].join("\n")
    );
    prepare();
    cluster.spawn(index);
    cluster.wait_until(&format!("{id} back in the cluster"), REJOIN, |cluster| {
        let (status, health) = cluster.call(index, "GET", "/v1/health", "")?;
        if status != 200 || !health["leader"].is_string() {
            return None;
        }
        let leader = cluster.leader(&[])?;
        let (status, table) = cluster.call(leader, "GET", "/v1/cluster", "")?;
        if status != 200 {
            return None;
        }
        let member = table["members"]
            .as_array()?
            .iter()
            .find(|member| member["id"] == id.as_str())?
            .clone();
        let close = member["lag_entries"].as_u64()? <= LAG_ENTRIES_MAX
            && member["last_contact_ms"].as_u64()? <= 3_000;
        close.then_some(())
    });
    started.elapsed()
}

/// Every acknowledged write reads back with its value (QUORUM, through the leader), and each
/// of `phases` phases had at least one. Returns the writes per phase.
fn check_acknowledged(cluster: &TestCluster, acks: &[Ack], phases: usize) -> Vec<usize> {
    let leader = cluster.wait_for_leader(&[], ELECTION);
    let mut lost = Vec::new();
    for ack in acks {
        match cluster.call(
            leader,
            "GET",
            &format!("/v1/kv/{}?consistency=quorum", ack.key),
            "",
        ) {
            Some((200, body)) if body["value"] == ack.value.as_str() => {}
            other => lost.push(format!("{} = {} -> {other:?}", ack.key, ack.value)),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, first: {:?}",
        lost.len(),
        acks.len(),
        &lost[..lost.len().min(5)]
    );
    let mut per_phase = vec![0usize; phases];
    for ack in acks {
        per_phase[ack.phase] += 1;
    }
    for (phase, count) in per_phase.iter().enumerate() {
        assert!(
            *count > 0,
            "no write acknowledged in phase {phase}: {per_phase:?}"
        );
    }
    per_phase
}

fn write_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn the_cluster_key_rotates_without_downtime_or_lost_writes() {
    let _serial = one_scenario_at_a_time();
    let started = Instant::now();
    let directory = tempfile::tempdir().expect("temporary directory");
    let (old, new) = (keygen(), keygen());
    assert_ne!(old, new);
    let key_file = |id: &str| directory.path().join(format!("{id}.key"));
    for id in ["n1", "n2", "n3"] {
        write_file(&key_file(id), &format!("{old}\n"));
    }
    let mut cluster = TestCluster::start_secured(&[1, 1, 1], |id| key_flags(&key_file(id)), None);
    cluster.wait_for_leader(&[], ELECTION);
    let writer = Writer::start(&cluster);
    let mut totals = Refusals::default();
    std::thread::sleep(STEADY);

    let rolls = [
        format!("{old}\n{new}\n"),
        format!("{new}\n{old}\n"),
        format!("{new}\n"),
    ];
    let mut restart_times = Vec::new();
    for keys in &rolls {
        writer.next_phase();
        for index in 0..3 {
            let file = key_file(&cluster.specs[index].id);
            let took = roll(&mut cluster, index, &mut totals, || write_file(&file, keys));
            restart_times.push(took);
        }
    }
    writer.next_phase();
    std::thread::sleep(STEADY);
    let (acks, attempts) = writer.finish();
    for index in 0..3 {
        totals.read(&cluster, index);
    }
    let per_phase = check_acknowledged(&cluster, &acks, 5);
    totals.check("cluster key rotation");
    for index in 0..3 {
        assert_eq!(
            read(&key_file(&cluster.specs[index].id)),
            format!("{new}\n")
        );
    }
    println!(
        "key rotation: {} writes acknowledged of {attempts} attempted, per phase [before, \
         roll 1 old+new, roll 2 new+old, roll 3 new, after] = {per_phase:?}; all read back; \
         restarts took {restart_times:?}; refusals counted: {}; total {:?}",
        acks.len(),
        totals.nonzero(),
        started.elapsed()
    );
}

/// Node `id`'s TLS files, which the rolls overwrite.
struct NodeTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl NodeTls {
    fn at(directory: &Path, id: &str) -> Self {
        let dir = directory.join("tls").join(id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        Self {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: dir.join("ca.pem"),
        }
    }

    fn use_certificate(&self, certs: &CertDir, id: &str) {
        write_file(&self.cert, &read(&certs.cert(id)));
        write_file(&self.key, &read(&certs.key(id)));
    }

    fn trust(&self, cas: &[&CertDir]) {
        let bundle: String = cas.iter().map(|certs| read(&certs.ca())).collect();
        write_file(&self.ca, &bundle);
    }
}

#[test]
fn the_cluster_ca_rotates_without_downtime_or_lost_writes() {
    let _serial = one_scenario_at_a_time();
    let started = Instant::now();
    let directory = tempfile::tempdir().expect("temporary directory");
    let ids = ["n1", "n2", "n3"];
    let old = CertDir::init(&directory.path().join("ca-old"), &ids);
    let new = CertDir::init(&directory.path().join("ca-new"), &ids);
    let key_file = directory.path().join("cluster.key");
    write_file(&key_file, &format!("{}\n", keygen()));
    for id in ids {
        let files = NodeTls::at(directory.path(), id);
        files.use_certificate(&old, id);
        files.trust(&[&old]);
    }
    let node_flags = |id: &str| {
        let files = NodeTls::at(directory.path(), id);
        let mut flags = key_flags(&key_file);
        flags.extend(tls_flags(&files.cert, &files.key, &files.ca));
        flags
    };
    // The test's client trusts both CAs throughout: it is the nodes' rotation under test.
    let access = AdminAccess {
        ca_files: vec![old.ca(), new.ca()],
        token: None,
    };
    let mut cluster = TestCluster::start_secured(&[1, 1, 1], node_flags, Some(access));
    cluster.wait_for_leader(&[], ELECTION);
    let writer = Writer::start(&cluster);
    let mut totals = Refusals::default();
    std::thread::sleep(STEADY);

    let mut restart_times = Vec::new();
    for step in 0..3 {
        writer.next_phase();
        for index in 0..3 {
            let id = cluster.specs[index].id.clone();
            let files = NodeTls::at(directory.path(), &id);
            let took = roll(&mut cluster, index, &mut totals, || match step {
                0 => files.trust(&[&old, &new]),
                1 => files.use_certificate(&new, &id),
                _ => files.trust(&[&new]),
            });
            restart_times.push(took);
        }
    }
    writer.next_phase();
    std::thread::sleep(STEADY);
    let (acks, attempts) = writer.finish();
    for index in 0..3 {
        totals.read(&cluster, index);
    }
    let per_phase = check_acknowledged(&cluster, &acks, 5);
    totals.check("CA rotation");
    // The old CA is gone from every node: a certificate from it would now be refused.
    for id in ids {
        let files = NodeTls::at(directory.path(), id);
        assert_eq!(read(&files.ca), read(&new.ca()));
        assert_eq!(read(&files.cert), read(&new.cert(id)));
    }
    println!(
        "CA rotation: {} writes acknowledged of {attempts} attempted, per phase [before, \
         roll 1 trust old+new, roll 2 new certificates, roll 3 trust new, after] = \
         {per_phase:?}; all read back; restarts took {restart_times:?}; refusals counted: {}; \
         total {:?}",
        acks.len(),
        totals.nonzero(),
        started.elapsed()
    );
}
