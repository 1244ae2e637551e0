//! Simulated lock clients: each keeps a lease alive, takes fenced locks, uses them only before
//! its safe deadline, and runs versioned KV operations; everything it sees is recorded for the
//! invariants.
//!
//! Even-numbered clients acquire with a holder digest (issue 13) and release with its key;
//! odd-numbered ones acquire and release without. Before releasing, a client sends a release
//! as a wrong holder half of the time (no key, another key, or a key for a plain grant),
//! which must never release: its answer is checked at once, and its stamp is kept so that
//! [`LockWorkload::check_wrong_holder_releases`] checks what applying it did in the log too
//! (also when the client gave up waiting for the answer).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ha_core::{Consistency, Millis};
use ha_lock::{
    Command, FencingToken, HolderKey, LeaseId, LeaseRenewal, LockCommand, LockQuery,
    LockQueryResponse, LockResponse, Query, QueryResponse, Response, SessionId, holder_digest,
};
use ha_replicate::replica::{ApplyOutcome, ClientReply, ClientRequest, ReadRequest, WriteRequest};
use rand::RngExt;

use crate::lock_sim::applied_log::{AppliedLockCommand, AppliedResult};
use crate::lock_sim::fenced_resource::FencedResource;
use crate::lock_sim::node::{LockNodeOutput, SimLockNode};
use crate::lock_sim::records::{
    HoldEnd, HolderInterval, KvRecord, KvRequest, LockWorkloadStats, SendTimes,
};
use crate::lock_sim::versioned_kv_model::KvOutput;
use crate::lock_sim::workload_options::LockWorkloadOptions;
use crate::sim::Simulator;

/// The share of holds whose release is preceded by a release as a wrong holder.
const WRONG_RELEASE_FRACTION: f64 = 0.5;

/// Clients that share one replication session. With its keep-alives beside its main
/// operation, each client has up to two writes in flight, so a session has up to twice this
/// many (pipelined sessions, Raft dissertation §6.3), all retried independently.
const CLIENTS_PER_SESSION: usize = 2;

/// One replication session, shared by [`CLIENTS_PER_SESSION`] clients.
#[derive(Clone, Debug)]
struct ReplicationSession {
    id: u64,
    next_sequence: u64,
}

impl ReplicationSession {
    /// The session id and a fresh sequence for a new write.
    fn next(&mut self) -> (u64, u64) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        (self.id, sequence)
    }
}

/// Whether client `client_index` acquires with a holder digest.
fn acquires_with_holder(client_index: usize) -> bool {
    client_index.is_multiple_of(2)
}

/// Whether client `client_index` takes its first lease with a lock in one write (a lock cycle)
/// rather than granting it first: clients 0, 1, 4, 5, ... do, 2, 3, 6, 7, ... do not. So every
/// run has both ways from its start, each with and without a holder digest
/// ([`acquires_with_holder`]); later leases follow
/// [`LockWorkloadOptions::lock_cycle_fraction`]. Chosen, not drawn: a granted lease is kept
/// until it is revoked, so with every first lease drawn, granted leases crowded the cycles out
/// of some runs (3 of seeds 0-3,999 of the fault-free scenario took fewer than 3 cycles in
/// 20 s, seed 2,209 one).
fn first_lease_is_cycle(client_index: usize) -> bool {
    client_index % 4 < 2
}

/// The holder key client `client_index` uses for acquires under `lease`: derived, not random
/// (the simulation does not need it unguessable, only distinct per client and lease).
fn holder_key(client_index: usize, lease: LeaseId) -> HolderKey {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&lease.0.to_le_bytes());
    key[8..].copy_from_slice(&(client_index as u64).to_le_bytes());
    key
}

/// The holder key client `client_index` uses for a lock cycle (`GrantAndAcquire`) with lock
/// session `lock_session`: the lease id is not known before the grant, so it cannot come from
/// it; recorded by lease once granted (`LockWorkload::cycle_keys`).
fn cycle_holder_key(client_index: usize, lock_session: SessionId) -> HolderKey {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&lock_session.0.to_le_bytes());
    key[8..].copy_from_slice(&(!(client_index as u64)).to_le_bytes());
    key
}

/// The release client `client_index` sends for a lock it holds with `key` (if it acquires
/// with one); with `end_lease`, the release that also ends the lease (`ReleaseAndRevoke`).
fn holder_release(
    client_index: usize,
    name: String,
    token: FencingToken,
    key: HolderKey,
    end_lease: bool,
) -> LockCommand {
    let keyed = acquires_with_holder(client_index);
    if end_lease {
        LockCommand::ReleaseAndRevoke {
            name,
            token,
            holder_key: keyed.then_some(key),
        }
    } else if keyed {
        LockCommand::ReleaseWithHolder {
            name,
            token,
            holder_key: key,
        }
    } else {
        LockCommand::Release { name, token }
    }
}

/// A release of the same lock and token that is not the holder's: for a keyed grant no key
/// (`plain`) or the key of another lease; for a plain grant any key. With `end_lease`, as a
/// `ReleaseAndRevoke`, which must then end nothing either.
fn wrong_release(
    client_index: usize,
    name: String,
    token: FencingToken,
    lease: LeaseId,
    plain: bool,
    end_lease: bool,
) -> LockCommand {
    let wrong_key = holder_key(client_index, LeaseId(lease.0.wrapping_add(1)));
    match (acquires_with_holder(client_index) && plain, end_lease) {
        (true, false) => LockCommand::Release { name, token },
        (true, true) => LockCommand::ReleaseAndRevoke {
            name,
            token,
            holder_key: None,
        },
        (false, false) => LockCommand::ReleaseWithHolder {
            name,
            token,
            holder_key: wrong_key,
        },
        (false, true) => LockCommand::ReleaseAndRevoke {
            name,
            token,
            holder_key: Some(wrong_key),
        },
    }
}

/// A lease a client holds, as the client sees it.
#[derive(Clone, Debug)]
struct Lease {
    id: LeaseId,
    /// The lock-table session for this lease: fresh per lease, so a waiter left behind by an
    /// abandoned lease is never mistaken for the new one.
    lock_session: SessionId,
    /// The shipped holder rule: when to renew, and the safe deadline.
    renewal: LeaseRenewal,
    /// When to retry a keep-alive that failed, before the rule's next renewal time.
    retry_at: Option<Millis>,
    /// Granted by a lock cycle (`GrantAndAcquire`): the release of its lock ends it too.
    revoke_with_release: bool,
}

impl Lease {
    fn is_valid_at(&self, now: Millis) -> bool {
        self.renewal.is_valid_at(now)
    }

    fn safe_deadline(&self) -> Millis {
        self.renewal.safe_deadline()
    }

    fn next_keep_alive_at(&self) -> Millis {
        self.retry_at.unwrap_or_else(|| self.renewal.renew_at())
    }
}

#[derive(Clone, Debug)]
struct KeepAliveAttempt {
    request_id: u64,
    lease: LeaseId,
    /// The keep-alive's sequence in the client's replication session.
    sequence: u64,
    sent_at: Millis,
    give_up_at: Millis,
}

#[derive(Clone, Debug)]
enum Purpose {
    Grant {
        lock_session: SessionId,
    },
    /// A lock cycle's first write: a lease and the lock in one (`GrantAndAcquire`).
    Cycle {
        name: String,
        lock_session: SessionId,
        key: Option<HolderKey>,
    },
    Kv {
        key: String,
        request: KvRequest,
    },
    Acquire {
        name: String,
        lease: LeaseId,
    },
    Poll {
        name: String,
        lease: LeaseId,
        wait_until: Millis,
    },
    Cancel {
        name: String,
        lease: LeaseId,
        wait_until: Millis,
    },
    Release,
    /// A release as a wrong holder; then the holder's own `release` is sent. (Boxed: two
    /// commands would make every operation this large.)
    WrongRelease {
        command: Box<LockCommand>,
        release: Box<LockCommand>,
    },
    Revoke,
}

#[derive(Clone, Debug)]
struct MainOperation {
    purpose: Purpose,
    request: ClientRequest,
    /// Replication session stamp of a write.
    stamp: Option<(u64, u64)>,
    first_sent_at: Option<Millis>,
    give_up_at: Millis,
    attempts: Vec<u64>,
    next_attempt_at: Millis,
}

#[derive(Clone, Debug)]
struct Hold {
    name: String,
    lease: LeaseId,
    token: FencingToken,
    started_at: Millis,
    use_until: Millis,
    next_use_at: Millis,
    /// The lease's safe deadline as last seen while it was held, to end the interval there if
    /// the lease is lost.
    safe_deadline: Millis,
}

#[derive(Clone, Debug)]
enum Main {
    Idle {
        until: Millis,
    },
    Operation(MainOperation),
    Waiting {
        name: String,
        lease: LeaseId,
        wait_until: Millis,
        next_poll_at: Millis,
    },
    Holding(Hold),
}

#[derive(Clone, Debug)]
struct Client {
    /// The replication session (an index into the workload's sessions) of both channels:
    /// the main one (grants, acquires, releases, KV) and keep-alives, beside it.
    session: usize,
    lease: Option<Lease>,
    keep_alive: Option<KeepAliveAttempt>,
    main: Main,
    value_counter: u64,
    known_versions: BTreeMap<String, u64>,
    /// Until then the client is cut off from the cluster: its requests are lost.
    isolated_until: Millis,
    /// Whether the client has asked for a lease yet ([`first_lease_is_cycle`]).
    asked_for_lease: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Main,
    KeepAlive,
}

/// A decoded answer to a main-channel request.
#[derive(Clone, Debug)]
enum Answer {
    Write(LockResponse),
    Read(LockQueryResponse),
}

/// Drives lock clients against a simulated lock cluster and records what they saw.
pub struct LockWorkload {
    options: LockWorkloadOptions,
    clients: Vec<Client>,
    next_request_id: u64,
    owners: BTreeMap<u64, (usize, Channel)>,
    cursors: Vec<usize>,
    issuing: bool,
    send_times: SendTimes,
    intervals: Vec<HolderInterval>,
    resource: FencedResource,
    kv_records: Vec<KvRecord>,
    stats: LockWorkloadStats,
    /// The session stamps of the releases sent as a wrong holder.
    wrong_releases: BTreeSet<(u64, u64)>,
    /// The replication sessions the clients share.
    sessions: Vec<ReplicationSession>,
    /// The holder keys of the leases granted by a lock cycle, by lease (the others derive
    /// theirs from the lease id, [`holder_key`]).
    cycle_keys: BTreeMap<LeaseId, HolderKey>,
}

fn write_request(session: u64, sequence: u64, command: LockCommand) -> ClientRequest {
    ClientRequest::Write(WriteRequest {
        session: SessionId(session),
        sequence,
        // Set again on every send, from the session's writes in flight then.
        lowest_unanswered: sequence,
        command: postcard::to_allocvec(&Command::<()>::Lock(command))
            .expect("a lock command encodes"),
        consistency: Consistency::Quorum,
    })
}

fn read_request(query: LockQuery) -> ClientRequest {
    ClientRequest::Read(ReadRequest {
        query: postcard::to_allocvec(&Query::<()>::Lock(query)).expect("a lock query encodes"),
        consistency: Consistency::Quorum,
    })
}

/// Decode an answer; `None` for a failure worth retrying.
///
/// # Panics
/// On answers the clients never provoke (an EVENTUAL acknowledgement, a stale or invalid
/// write, an undecodable response): those are bugs in the harness or the session layer.
fn decode_reply(reply: ClientReply) -> Option<Answer> {
    match reply {
        ClientReply::Written { outcome, index } => match outcome {
            ApplyOutcome::Applied(bytes) | ApplyOutcome::Duplicate(bytes) => {
                match postcard::from_bytes::<Response<()>>(&bytes) {
                    Ok(Response::Lock(response)) => Some(Answer::Write(response)),
                    other => panic!("undecodable lock response at {index}: {other:?}"),
                }
            }
            other => panic!("write at {index}: unexpected outcome {other:?}"),
        },
        ClientReply::Read { response, .. } => {
            match postcard::from_bytes::<QueryResponse<()>>(&response) {
                Ok(QueryResponse::Lock(response)) => Some(Answer::Read(response)),
                other => panic!("undecodable lock query response: {other:?}"),
            }
        }
        ClientReply::Accepted { .. } => panic!("the lock clients never write EVENTUAL"),
        ClientReply::Failed(_) => None,
    }
}

impl LockWorkload {
    /// Clients with sessions drawn from the simulation's RNG.
    pub fn new(sim: &mut Simulator<SimLockNode>, options: LockWorkloadOptions) -> Self {
        let sessions = (0..options.clients.div_ceil(CLIENTS_PER_SESSION))
            .map(|_| ReplicationSession {
                id: sim.rng().random(),
                next_sequence: 1,
            })
            .collect();
        let clients = (0..options.clients)
            .map(|client| Client {
                session: client / CLIENTS_PER_SESSION,
                lease: None,
                keep_alive: None,
                main: Main::Idle {
                    until: Millis::ZERO,
                },
                value_counter: 0,
                known_versions: BTreeMap::new(),
                isolated_until: Millis::ZERO,
                asked_for_lease: false,
            })
            .collect();
        Self {
            options,
            clients,
            next_request_id: 1,
            owners: BTreeMap::new(),
            cursors: vec![0; sim.node_count()],
            issuing: true,
            send_times: SendTimes::default(),
            intervals: Vec::new(),
            resource: FencedResource::default(),
            kv_records: Vec::new(),
            stats: LockWorkloadStats::default(),
            wrong_releases: BTreeSet::new(),
            sessions,
            cycle_keys: BTreeMap::new(),
        }
    }

    /// The lowest sequence of replication session `session` its clients have no answer for:
    /// the least of their writes in flight (main operations and keep-alives), or the next
    /// sequence when none is. A write given up on is no longer in flight, so later writes
    /// let the log forget it (and refuse to apply it from then on).
    fn lowest_unanswered(&self, session: usize) -> u64 {
        self.clients
            .iter()
            .filter(|client| client.session == session)
            .flat_map(|client| {
                let main = match &client.main {
                    Main::Operation(operation) => operation.stamp.map(|(_, sequence)| sequence),
                    _ => None,
                };
                main.into_iter()
                    .chain(client.keep_alive.as_ref().map(|attempt| attempt.sequence))
            })
            .min()
            .unwrap_or(self.sessions[session].next_sequence)
    }

    /// `request` with the lowest unanswered sequence of `session` now.
    fn stamped(&self, session: usize, mut request: ClientRequest) -> ClientRequest {
        if let ClientRequest::Write(write) = &mut request {
            write.lowest_unanswered = self.lowest_unanswered(session);
        }
        request
    }

    /// Every release sent as a wrong holder that the log applied must have been refused
    /// (`WrongHolder`, or `NotHolder` once the lock had moved on), whether or not its client
    /// heard the answer. Returns how many were applied.
    ///
    /// # Errors
    /// The first one that released, or was answered anything but a refusal.
    pub fn check_wrong_holder_releases(
        &self,
        applied: &[AppliedLockCommand],
    ) -> Result<u64, String> {
        let mut checked = 0;
        for command in applied {
            if !self
                .wrong_releases
                .contains(&(command.session, command.sequence))
            {
                continue;
            }
            match &command.result {
                AppliedResult::Applied(LockResponse::WrongHolder | LockResponse::NotHolder) => {
                    checked += 1;
                }
                AppliedResult::Duplicate | AppliedResult::Stale => {}
                AppliedResult::Applied(other) => {
                    return Err(format!(
                        "index {}: {:?}, a release as a wrong holder, was answered {other:?}",
                        command.index.0, command.command
                    ));
                }
            }
        }
        Ok(checked)
    }

    /// The options the clients run with.
    pub fn options(&self) -> &LockWorkloadOptions {
        &self.options
    }

    /// Stop starting new operations; clients finish what they are doing (release their
    /// locks) and keep their leases alive.
    pub fn stop_issuing(&mut self) {
        self.issuing = false;
    }

    /// Whether every client is idle (no operation, no wait, no lock).
    pub fn is_idle(&self) -> bool {
        self.clients
            .iter()
            .all(|client| matches!(client.main, Main::Idle { .. }))
    }

    /// Stop keeping leases alive, without revoking them: from now on only the leader's expiry
    /// can end them.
    pub fn abandon_leases(&mut self) {
        for client in &mut self.clients {
            client.lease = None;
            client.keep_alive = None;
        }
    }

    /// Cut `client` off from the cluster until `until`: its requests (and so its keep-alives)
    /// are lost, as for a client on the wrong side of a partition, while the cluster goes on.
    pub fn isolate_client(&mut self, client: usize, until: Millis) {
        if let Some(client) = self.clients.get_mut(client) {
            client.isolated_until = client.isolated_until.max(until);
        }
    }

    /// How many clients there are.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The clients that hold a lock now, in order.
    pub fn holders(&self) -> Vec<usize> {
        (0..self.clients.len())
            .filter(|client| matches!(self.clients[*client].main, Main::Holding(_)))
            .collect()
    }

    /// First send time of every write.
    pub fn send_times(&self) -> &SendTimes {
        &self.send_times
    }

    /// Every finished holder interval.
    pub fn intervals(&self) -> &[HolderInterval] {
        &self.intervals
    }

    /// The fenced resource the holders wrote to.
    pub fn resource(&self) -> &FencedResource {
        &self.resource
    }

    /// Every KV operation (answered or given up).
    pub fn kv_records(&self) -> &[KvRecord] {
        &self.kv_records
    }

    /// Counts so far.
    pub fn stats(&self) -> LockWorkloadStats {
        self.stats
    }

    /// Run the simulation to `until`, stepping the clients every millisecond.
    pub fn run(&mut self, sim: &mut Simulator<SimLockNode>, until: Millis) {
        while sim.now() < until {
            let next = sim.now() + 1;
            sim.run_until(next);
            self.step(sim);
        }
    }

    /// Read answers, keep leases alive, use and release locks, retry, give up, and start new
    /// operations.
    pub fn step(&mut self, sim: &mut Simulator<SimLockNode>) {
        let now = sim.now();
        for node in 0..sim.node_count() {
            let outputs = sim.outputs(node);
            let fresh: Vec<(u64, ClientReply)> = outputs[self.cursors[node]..]
                .iter()
                .filter_map(|record| match &record.output {
                    LockNodeOutput::Reply { request_id, reply } => {
                        Some((*request_id, reply.clone()))
                    }
                    _ => None,
                })
                .collect();
            self.cursors[node] = outputs.len();
            for (request_id, reply) in fresh {
                self.on_reply(sim, now, request_id, reply);
            }
        }
        for client in 0..self.clients.len() {
            self.advance(sim, client, now);
        }
    }

    fn on_reply(
        &mut self,
        sim: &mut Simulator<SimLockNode>,
        now: Millis,
        request_id: u64,
        reply: ClientReply,
    ) {
        let Some((client_index, channel)) = self.owners.remove(&request_id) else {
            return;
        };
        match channel {
            Channel::KeepAlive => self.on_keep_alive_reply(client_index, now, request_id, reply),
            Channel::Main => {
                let client = &mut self.clients[client_index];
                let Main::Operation(operation) = &mut client.main else {
                    return;
                };
                if !operation.attempts.contains(&request_id) {
                    return;
                }
                match decode_reply(reply) {
                    Some(answer) => self.finish_operation(sim, client_index, now, Some(answer)),
                    None => operation.next_attempt_at = now + self.options.retry_delay_ms,
                }
            }
        }
    }

    fn on_keep_alive_reply(
        &mut self,
        client_index: usize,
        now: Millis,
        request_id: u64,
        reply: ClientReply,
    ) {
        let options = &self.options;
        let client = &mut self.clients[client_index];
        let Some(attempt) = client
            .keep_alive
            .take_if(|attempt| attempt.request_id == request_id)
        else {
            return;
        };
        let Some(lease) = client
            .lease
            .as_mut()
            .filter(|lease| lease.id == attempt.lease)
        else {
            return;
        };
        match decode_reply(reply) {
            Some(Answer::Write(LockResponse::LeaseRenewed { .. })) => {
                self.stats.keep_alives_renewed += 1;
                // The leader cannot have started the renewed TTL before this keep-alive left.
                lease.renewal.on_renewed(attempt.sent_at);
                lease.retry_at = None;
            }
            Some(Answer::Write(LockResponse::LeaseNotFound { .. })) => {
                if lease.is_valid_at(now) {
                    self.stats.lease_gone_before_deadline += 1;
                }
                client.lease = None;
                self.stats.leases_lost += 1;
            }
            _ => {
                self.stats.keep_alives_failed += 1;
                lease.retry_at = Some(now + options.retry_delay_ms);
            }
        }
    }

    fn advance(&mut self, sim: &mut Simulator<SimLockNode>, client_index: usize, now: Millis) {
        self.check_lease(client_index, now);
        self.keep_alive(sim, client_index, now);
        let client = &mut self.clients[client_index];
        match &mut client.main {
            Main::Operation(operation) => {
                if now >= operation.give_up_at {
                    self.finish_operation(sim, client_index, now, None);
                } else if now >= operation.next_attempt_at {
                    self.attempt(sim, client_index, now);
                }
            }
            Main::Idle { until } => {
                if self.issuing && now >= *until {
                    self.start_next(sim, client_index, now);
                }
            }
            Main::Waiting {
                name,
                lease,
                wait_until,
                next_poll_at,
            } => {
                if client.lease.as_ref().is_none_or(|held| held.id != *lease) {
                    // The lease is gone, and every wait under it with it.
                    client.main = Main::Idle { until: now };
                } else if now >= *next_poll_at {
                    let purpose = Purpose::Poll {
                        name: name.clone(),
                        lease: *lease,
                        wait_until: *wait_until,
                    };
                    let request = read_request(LockQuery::Lock { name: name.clone() });
                    self.start_operation(sim, client_index, now, purpose, request, None);
                }
            }
            Main::Holding(_) => self.use_lock(sim, client_index, now),
        }
    }

    /// A lease whose safe deadline has passed may have expired: stop trusting it.
    fn check_lease(&mut self, client_index: usize, now: Millis) {
        let client = &mut self.clients[client_index];
        if client
            .lease
            .as_ref()
            .is_some_and(|lease| !lease.is_valid_at(now))
        {
            client.lease = None;
            client.keep_alive = None;
            self.stats.leases_lost += 1;
        }
    }

    fn keep_alive(&mut self, sim: &mut Simulator<SimLockNode>, client_index: usize, now: Millis) {
        let options = self.options.clone();
        let client = &mut self.clients[client_index];
        let Some(lease) = client.lease.as_mut() else {
            return;
        };
        if let Some(attempt) = &client.keep_alive {
            if now < attempt.give_up_at {
                return;
            }
            // No answer (the node crashed, or the answer was lost): send a new one.
            self.owners.remove(&attempt.request_id);
            client.keep_alive = None;
            self.stats.keep_alives_failed += 1;
            lease.retry_at = Some(now);
        }
        if now < lease.next_keep_alive_at() {
            return;
        }
        // As the handle does: a renewal may take until the safe deadline, no longer.
        let Some(budget) = lease.renewal.renewal_budget_at(now) else {
            return;
        };
        let running = sim.running_nodes();
        if running.is_empty() {
            lease.retry_at = Some(now + options.retry_delay_ms);
            return;
        }
        let node = running[sim.rng().random_range(0..running.len())];
        // Each keep-alive is a new write with its own send time: a retry under the same
        // sequence could be applied from its first, older send.
        let (session, sequence) = self.sessions[client.session].next();
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.send_times.record(session, sequence, now);
        let request = write_request(
            session,
            sequence,
            LockCommand::LeaseKeepAlive { lease: lease.id },
        );
        let budget_ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
        let timeout_ms = options.attempt_timeout_ms.min(budget_ms);
        client.keep_alive = Some(KeepAliveAttempt {
            request_id,
            lease: lease.id,
            sequence,
            sent_at: now,
            give_up_at: now + timeout_ms + options.retry_delay_ms,
        });
        let (isolated, session_index) = (now < client.isolated_until, client.session);
        self.owners
            .insert(request_id, (client_index, Channel::KeepAlive));
        if isolated {
            return;
        }
        let request = self.stamped(session_index, request);
        sim.act(node, |replica, now| {
            replica.submit(now, request_id, request, timeout_ms)
        });
    }

    fn start_next(&mut self, sim: &mut Simulator<SimLockNode>, client_index: usize, now: Millis) {
        let roll: f64 = sim.rng().random();
        if roll < self.options.kv_fraction {
            self.start_kv(sim, client_index, now);
            return;
        }
        let client = &mut self.clients[client_index];
        let Some(lease) = client.lease.clone() else {
            let lock_session = SessionId(sim.rng().random());
            // Drawn for the first lease too, though unused there: the draws after it stay the
            // ones the sweeps and mutation counts of session 27 were measured with.
            let drawn = sim.rng().random_bool(self.options.lock_cycle_fraction);
            let first = !std::mem::replace(&mut client.asked_for_lease, true);
            let cycle = if first {
                first_lease_is_cycle(client_index)
            } else {
                drawn
            };
            if cycle {
                // A lease and a lock in one write, as `Locks::acquire` takes them.
                let name = format!("lock{}", sim.rng().random_range(0..self.options.lock_names));
                let key = acquires_with_holder(client_index)
                    .then(|| cycle_holder_key(client_index, lock_session));
                let (session, sequence) = self.sessions[client.session].next();
                let request = write_request(
                    session,
                    sequence,
                    LockCommand::GrantAndAcquire {
                        name: name.clone(),
                        session: lock_session,
                        ttl_ms: self.options.ttl_ms,
                        wait: true,
                        holder_digest: key.as_ref().map(holder_digest),
                    },
                );
                let stamp = Some((session, sequence));
                let purpose = Purpose::Cycle {
                    name,
                    lock_session,
                    key,
                };
                self.start_operation(sim, client_index, now, purpose, request, stamp);
                return;
            }
            let (session, sequence) = self.sessions[client.session].next();
            let request = write_request(
                session,
                sequence,
                LockCommand::LeaseGrant {
                    ttl_ms: self.options.ttl_ms,
                    session: lock_session,
                },
            );
            let stamp = Some((session, sequence));
            let purpose = Purpose::Grant { lock_session };
            self.start_operation(sim, client_index, now, purpose, request, stamp);
            return;
        };
        let (session, sequence) = self.sessions[client.session].next();
        let stamp = Some((session, sequence));
        if roll < self.options.kv_fraction + self.options.revoke_fraction {
            client.lease = None;
            client.keep_alive = None;
            self.stats.leases_revoked += 1;
            let request = write_request(
                session,
                sequence,
                LockCommand::LeaseRevoke { lease: lease.id },
            );
            self.start_operation(sim, client_index, now, Purpose::Revoke, request, stamp);
            return;
        }
        let name = format!("lock{}", sim.rng().random_range(0..self.options.lock_names));
        let command = if acquires_with_holder(client_index) {
            LockCommand::AcquireWithHolder {
                name: name.clone(),
                session: lease.lock_session,
                lease: lease.id,
                wait: true,
                holder_digest: holder_digest(
                    &self
                        .cycle_keys
                        .get(&lease.id)
                        .copied()
                        .unwrap_or_else(|| holder_key(client_index, lease.id)),
                ),
            }
        } else {
            LockCommand::Acquire {
                name: name.clone(),
                session: lease.lock_session,
                lease: lease.id,
                wait: true,
            }
        };
        let request = write_request(session, sequence, command);
        let purpose = Purpose::Acquire {
            name,
            lease: lease.id,
        };
        self.start_operation(sim, client_index, now, purpose, request, stamp);
    }

    fn start_kv(&mut self, sim: &mut Simulator<SimLockNode>, client_index: usize, now: Millis) {
        let key = format!("k{}", sim.rng().random_range(0..self.options.keys));
        let choice = sim.rng().random_range(0..100u32);
        let client = &mut self.clients[client_index];
        client.value_counter += 1;
        let value = format!("c{client_index}v{}", client.value_counter).into_bytes();
        let known = client.known_versions.get(&key).copied().unwrap_or(0);
        let (request, command) = match choice {
            0..=34 => (KvRequest::Get, None),
            35..=59 => (
                KvRequest::Put {
                    value: value.clone(),
                    expected_version: None,
                },
                Some(LockCommand::Put {
                    key: key.clone(),
                    value,
                    expected_version: None,
                    lease: None,
                }),
            ),
            60..=89 => {
                let expected = if choice < 80 { known } else { 0 };
                (
                    KvRequest::Put {
                        value: value.clone(),
                        expected_version: Some(expected),
                    },
                    Some(LockCommand::Put {
                        key: key.clone(),
                        value,
                        expected_version: Some(expected),
                        lease: None,
                    }),
                )
            }
            _ => {
                let expected = (choice >= 95).then_some(known);
                (
                    KvRequest::Delete {
                        expected_version: expected,
                    },
                    Some(LockCommand::Delete {
                        key: key.clone(),
                        expected_version: expected,
                    }),
                )
            }
        };
        let (client_request, stamp) = match command {
            None => (read_request(LockQuery::Get { key: key.clone() }), None),
            Some(command) => {
                let (session, sequence) = self.sessions[client.session].next();
                (
                    write_request(session, sequence, command),
                    Some((session, sequence)),
                )
            }
        };
        let purpose = Purpose::Kv { key, request };
        self.start_operation(sim, client_index, now, purpose, client_request, stamp);
    }

    fn start_operation(
        &mut self,
        sim: &mut Simulator<SimLockNode>,
        client_index: usize,
        now: Millis,
        purpose: Purpose,
        request: ClientRequest,
        stamp: Option<(u64, u64)>,
    ) {
        self.clients[client_index].main = Main::Operation(MainOperation {
            purpose,
            request,
            stamp,
            first_sent_at: None,
            give_up_at: now + self.options.operation_timeout_ms,
            attempts: Vec::new(),
            next_attempt_at: now,
        });
        self.attempt(sim, client_index, now);
    }

    fn attempt(&mut self, sim: &mut Simulator<SimLockNode>, client_index: usize, now: Millis) {
        let retry_delay_ms = self.options.retry_delay_ms;
        let timeout_ms = self.options.attempt_timeout_ms;
        let running = sim.running_nodes();
        let client = &mut self.clients[client_index];
        let isolated = now < client.isolated_until;
        let Main::Operation(operation) = &mut client.main else {
            return;
        };
        if running.is_empty() {
            operation.next_attempt_at = now + retry_delay_ms;
            return;
        }
        let node = running[sim.rng().random_range(0..running.len())];
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        operation.attempts.push(request_id);
        // The next retry is decided by the answer, or by the attempt's own deadline.
        operation.next_attempt_at = now + timeout_ms + retry_delay_ms;
        if operation.first_sent_at.is_none() {
            operation.first_sent_at = Some(now);
            if let Some((session, sequence)) = operation.stamp {
                self.send_times.record(session, sequence, now);
            }
        }
        let request = operation.request.clone();
        let session = client.session;
        self.owners
            .insert(request_id, (client_index, Channel::Main));
        if isolated {
            // Sent, and lost on the way: the attempt's deadline will retry it.
            return;
        }
        let request = self.stamped(session, request);
        sim.act(node, |replica, now| {
            replica.submit(now, request_id, request, timeout_ms)
        });
    }

    /// The main operation of a client ended with `answer` (`None`: it gave up, so the outcome
    /// is unknown).
    fn finish_operation(
        &mut self,
        sim: &mut Simulator<SimLockNode>,
        client_index: usize,
        now: Millis,
        answer: Option<Answer>,
    ) {
        let think_ms = sim.rng().random_range(0..=self.options.think_ms_max);
        let hold_ms_max = if sim.rng().random_bool(self.options.long_hold_fraction) {
            self.options.long_hold_ms_max
        } else {
            self.options.hold_ms_max
        };
        let hold_ms = sim.rng().random_range(1..=hold_ms_max);
        let options = self.options.clone();
        let client = &mut self.clients[client_index];
        let Main::Operation(operation) = std::mem::replace(
            &mut client.main,
            Main::Idle {
                until: now + think_ms,
            },
        ) else {
            return;
        };
        for attempt in &operation.attempts {
            self.owners.remove(attempt);
        }
        let first_sent_at = operation.first_sent_at.unwrap_or(now);
        match operation.purpose {
            Purpose::Grant { lock_session } => match answer {
                Some(Answer::Write(LockResponse::LeaseGranted { lease, ttl_ms })) => {
                    self.stats.leases_granted += 1;
                    client.lease = Some(Lease {
                        id: lease,
                        lock_session,
                        renewal: LeaseRenewal::granted(
                            Duration::from_millis(ttl_ms),
                            first_sent_at,
                        ),
                        retry_at: None,
                        revoke_with_release: false,
                    });
                    client.keep_alive = None;
                }
                None => {}
                Some(other) => panic!("client {client_index}: lease grant answered {other:?}"),
            },
            Purpose::Cycle {
                name,
                lock_session,
                key,
            } => {
                let (lease, ttl_ms, token) = match answer {
                    Some(Answer::Write(LockResponse::GrantedWithLease {
                        lease,
                        ttl_ms,
                        token,
                    })) => (lease, ttl_ms, Some(token)),
                    Some(Answer::Write(LockResponse::QueuedWithLease {
                        lease, ttl_ms, ..
                    })) => (lease, ttl_ms, None),
                    // Unknown: a lease (and a wait or grant under it) may exist that this
                    // client never learned of; the leader expires it.
                    None => return,
                    Some(other) => panic!("client {client_index}: lock cycle answered {other:?}"),
                };
                self.stats.leases_granted += 1;
                self.stats.leases_granted_with_lock += 1;
                client.lease = Some(Lease {
                    id: lease,
                    lock_session,
                    renewal: LeaseRenewal::granted(Duration::from_millis(ttl_ms), first_sent_at),
                    retry_at: None,
                    revoke_with_release: true,
                });
                client.keep_alive = None;
                if let Some(key) = key {
                    self.cycle_keys.insert(lease, key);
                }
                match token {
                    Some(token) => self.begin_hold(client_index, now, name, lease, token, hold_ms),
                    None => {
                        self.clients[client_index].main = Main::Waiting {
                            name,
                            lease,
                            wait_until: first_sent_at + options.wait_timeout_ms,
                            next_poll_at: now + options.poll_every_ms,
                        };
                    }
                }
            }
            Purpose::Kv { key, request } => {
                let output = answer.map(|answer| match answer {
                    Answer::Read(LockQueryResponse::Value(value)) => {
                        KvOutput::Value(value.map(|value| (value.value, value.version)))
                    }
                    Answer::Write(LockResponse::Put { version }) => KvOutput::Put { version },
                    Answer::Write(LockResponse::Deleted { existed }) => {
                        KvOutput::Deleted { existed }
                    }
                    Answer::Write(LockResponse::VersionMismatch { current }) => {
                        KvOutput::Mismatch { current }
                    }
                    other => panic!("client {client_index}: KV {request:?} answered {other:?}"),
                });
                match &output {
                    Some(KvOutput::Value(value)) => {
                        let version = value.as_ref().map_or(0, |(_, version)| *version);
                        client.known_versions.insert(key.clone(), version);
                    }
                    Some(KvOutput::Put { version }) => {
                        client.known_versions.insert(key.clone(), *version);
                    }
                    Some(KvOutput::Mismatch { current }) => {
                        client.known_versions.insert(key.clone(), *current);
                    }
                    Some(KvOutput::Deleted { .. }) => {
                        client.known_versions.insert(key.clone(), 0);
                    }
                    None => {}
                }
                if output.is_some() {
                    self.stats.kv_completed += 1;
                } else {
                    self.stats.kv_unknown += 1;
                }
                self.kv_records.push(KvRecord {
                    client: client_index,
                    key,
                    stamp: operation.stamp,
                    call_at: first_sent_at,
                    return_at: output.is_some().then_some(now),
                    request,
                    output,
                });
            }
            Purpose::Acquire { name, lease } => match answer {
                Some(Answer::Write(LockResponse::Granted { token })) => {
                    self.begin_hold(client_index, now, name, lease, token, hold_ms);
                }
                Some(Answer::Write(LockResponse::LeaseNotFound { .. })) => {
                    if let Some(current) = client.lease.take_if(|current| current.id == lease) {
                        if current.is_valid_at(now) {
                            self.stats.lease_gone_before_deadline += 1;
                        }
                        client.keep_alive = None;
                        self.stats.leases_lost += 1;
                    }
                }
                // Queued, or unknown (it may have been queued or granted): watch the lock.
                Some(Answer::Write(LockResponse::Queued { .. })) | None => {
                    client.main = Main::Waiting {
                        name,
                        lease,
                        wait_until: first_sent_at + options.wait_timeout_ms,
                        next_poll_at: now + options.poll_every_ms,
                    };
                }
                Some(other) => panic!("client {client_index}: acquire answered {other:?}"),
            },
            Purpose::Poll {
                name,
                lease,
                wait_until,
            } => {
                let lock_session = client
                    .lease
                    .as_ref()
                    .filter(|current| current.id == lease)
                    .map(|current| current.lock_session);
                match (answer, lock_session) {
                    (Some(Answer::Read(LockQueryResponse::Lock(Some(state)))), Some(session)) => {
                        if state.holder == session && state.lease == lease {
                            self.begin_hold(client_index, now, name, lease, state.token, hold_ms);
                        } else if state.waiters.contains(&(session, lease)) {
                            if now >= wait_until {
                                self.cancel_wait(sim, client_index, now, name, lease, wait_until);
                            } else {
                                client.main = Main::Waiting {
                                    name,
                                    lease,
                                    wait_until,
                                    next_poll_at: now + options.poll_every_ms,
                                };
                            }
                        }
                    }
                    (None, Some(_)) => {
                        client.main = Main::Waiting {
                            name,
                            lease,
                            wait_until,
                            next_poll_at: now + options.poll_every_ms,
                        };
                    }
                    // Not holding and not in line (or the lease is gone): nothing to wait for.
                    (Some(Answer::Read(LockQueryResponse::Lock(_))), _) | (None, None) => {}
                    (Some(other), _) => panic!("client {client_index}: poll answered {other:?}"),
                }
            }
            Purpose::Cancel {
                name,
                lease,
                wait_until,
            } => match answer {
                Some(Answer::Write(LockResponse::Cancelled)) => self.stats.waits_cancelled += 1,
                // Not waiting: maybe granted meanwhile. Unknown: maybe not cancelled. Look.
                Some(Answer::Write(LockResponse::NotWaiting)) | None => {
                    client.main = Main::Waiting {
                        name,
                        lease,
                        wait_until,
                        next_poll_at: now,
                    };
                }
                Some(other) => panic!("client {client_index}: cancel answered {other:?}"),
            },
            Purpose::Release => match answer {
                Some(Answer::Write(LockResponse::NotHolder)) => {
                    self.stats.releases_not_holder += 1;
                }
                Some(Answer::Write(LockResponse::WrongHolder)) => {
                    panic!(
                        "client {client_index}: the holder's own release was refused as a wrong holder"
                    )
                }
                _ => {}
            },
            Purpose::WrongRelease { command, release } => {
                match answer {
                    Some(Answer::Write(LockResponse::WrongHolder)) => {
                        self.stats.wrong_holder_releases_refused += 1;
                    }
                    Some(Answer::Write(LockResponse::NotHolder)) | None => {}
                    Some(other) => panic!(
                        "client {client_index}: {command:?}, a release as a wrong holder, was \
                         answered {other:?}"
                    ),
                }
                let (session, sequence) = self.sessions[client.session].next();
                let stamp = Some((session, sequence));
                let request = write_request(session, sequence, *release);
                self.start_operation(sim, client_index, now, Purpose::Release, request, stamp);
            }
            Purpose::Revoke => {}
        }
    }

    fn cancel_wait(
        &mut self,
        sim: &mut Simulator<SimLockNode>,
        client_index: usize,
        now: Millis,
        name: String,
        lease: LeaseId,
        wait_until: Millis,
    ) {
        let client = &mut self.clients[client_index];
        let Some(lock_session) = client.lease.as_ref().map(|lease| lease.lock_session) else {
            return;
        };
        let (session, sequence) = self.sessions[client.session].next();
        let stamp = Some((session, sequence));
        let request = write_request(
            session,
            sequence,
            LockCommand::CancelWait {
                name: name.clone(),
                session: lock_session,
            },
        );
        let purpose = Purpose::Cancel {
            name,
            lease,
            wait_until,
        };
        self.start_operation(sim, client_index, now, purpose, request, stamp);
    }

    /// The client learned it holds `name` with `token`: use it, if its lease is still safe.
    fn begin_hold(
        &mut self,
        client_index: usize,
        now: Millis,
        name: String,
        lease: LeaseId,
        token: FencingToken,
        hold_ms: u64,
    ) {
        let client = &mut self.clients[client_index];
        let safe_deadline = client
            .lease
            .as_ref()
            .filter(|current| current.id == lease && current.is_valid_at(now))
            .map(Lease::safe_deadline);
        self.stats.locks_granted += 1;
        let Some(safe_deadline) = safe_deadline else {
            // Granted too late to use: hand it back at once (next step).
            client.main = Main::Holding(Hold {
                name,
                lease,
                token,
                started_at: now,
                use_until: now,
                next_use_at: now,
                safe_deadline: now,
            });
            return;
        };
        client.main = Main::Holding(Hold {
            name,
            lease,
            token,
            started_at: now,
            use_until: now + hold_ms,
            next_use_at: now,
            safe_deadline,
        });
    }

    /// A holder writes to the fenced resource while its lease is safe, then releases.
    fn use_lock(&mut self, sim: &mut Simulator<SimLockNode>, client_index: usize, now: Millis) {
        let use_every_ms = self.options.use_every_ms;
        let client = &mut self.clients[client_index];
        let Main::Holding(hold) = &mut client.main else {
            return;
        };
        let current = client
            .lease
            .as_ref()
            .filter(|lease| lease.id == hold.lease && lease.is_valid_at(now));
        match current {
            Some(lease) if now < hold.use_until => {
                hold.safe_deadline = lease.safe_deadline();
                if now >= hold.next_use_at {
                    self.resource
                        .write(&hold.name, now, hold.token, client_index);
                    hold.next_use_at = now + use_every_ms;
                }
                return;
            }
            _ => {}
        }
        let ended_by = if current.is_some() || hold.use_until <= hold.started_at {
            HoldEnd::Released
        } else {
            HoldEnd::LeaseLost
        };
        let end = now.min(hold.safe_deadline).max(hold.started_at);
        if end > hold.started_at {
            self.intervals.push(HolderInterval {
                lock: hold.name.clone(),
                client: client_index,
                lease: hold.lease,
                token: hold.token,
                start: hold.started_at,
                end,
                ended_by,
            });
        }
        // Release even a lock whose lease may be gone: if the lease is alive after all, the
        // next waiter gets the lock now rather than at the expiry. Half of the time a release
        // as a wrong holder goes first; it must change nothing.
        let (name, token, lease) = (hold.name.clone(), hold.token, hold.lease);
        // A lease granted with its lock (a lock cycle) ends with the lock's release, in one
        // write; it stops being renewed now.
        let end_lease = client
            .lease
            .as_ref()
            .is_some_and(|held| held.id == lease && held.revoke_with_release);
        let key = self
            .cycle_keys
            .get(&lease)
            .copied()
            .unwrap_or_else(|| holder_key(client_index, lease));
        if end_lease {
            client.lease = None;
            client.keep_alive = None;
            self.cycle_keys.remove(&lease);
            self.stats.releases_ending_lease += 1;
        }
        let release = holder_release(client_index, name.clone(), token, key, end_lease);
        let (session, sequence) = self.sessions[client.session].next();
        let stamp = Some((session, sequence));
        if sim.rng().random_bool(WRONG_RELEASE_FRACTION) {
            let plain = sim.rng().random_bool(0.5);
            let command = wrong_release(client_index, name, token, lease, plain, end_lease);
            self.wrong_releases.insert((session, sequence));
            let request = write_request(session, sequence, command.clone());
            let purpose = Purpose::WrongRelease {
                command: Box::new(command),
                release: Box::new(release),
            };
            self.start_operation(sim, client_index, now, purpose, request, stamp);
            return;
        }
        let request = write_request(session, sequence, release);
        self.start_operation(sim, client_index, now, Purpose::Release, request, stamp);
    }
}
