//! Simulated clients: one operation at a time each, retried with the same session and sequence
//! until a deadline, recorded as a history for the linearizability checker. Clients share
//! sessions ([`WorkloadOptions::sessions`]), so one session has many writes in flight, each
//! carrying the lowest sequence the session has no answer for (pipelined sessions, Raft
//! dissertation §6.3), and retries of all of them race in the log.

use std::collections::{BTreeMap, BTreeSet};

use ha_core::{Consistency, LogIndex, Millis, SessionId};
use ha_linearizability::{Input, Operation, Output, Value};
use ha_replicate::replica::{ApplyOutcome, ClientReply, ClientRequest, ReadRequest, WriteRequest};
use rand::RngExt;

use crate::register::{RegisterCommand, RegisterResponse, digest};
use crate::replica::{ReplicaOutput, SimReplica};
use crate::sim::Simulator;

/// What the clients do.
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// Concurrent clients.
    pub clients: usize,
    /// Distinct keys.
    pub keys: usize,
    /// How long a client keeps retrying one operation before recording it as unknown.
    pub operation_timeout_ms: u64,
    /// The deadline of each attempt.
    pub attempt_timeout_ms: u64,
    /// Pause between a failed attempt and the retry.
    pub retry_delay_ms: u64,
    /// Use STRONG instead of QUORUM for this fraction of operations.
    pub strong_fraction: f64,
    /// Replication sessions the clients share (client `i` writes on session
    /// `i % sessions`): with fewer sessions than clients, a session has several writes in
    /// flight at once.
    pub sessions: usize,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            clients: 4,
            keys: 3,
            operation_timeout_ms: 3_000,
            attempt_timeout_ms: 500,
            retry_delay_ms: 20,
            strong_fraction: 0.3,
            sessions: 2,
        }
    }
}

/// A write a client saw acknowledged as applied: it must stay in every replica's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcknowledgedWrite {
    /// The index it was applied at.
    pub index: LogIndex,
    /// Digest of the command.
    pub digest: u64,
    /// The consistency it was acknowledged at.
    pub consistency: Consistency,
}

#[derive(Clone, Debug)]
struct CurrentOperation {
    key: String,
    input: Input,
    request: ClientRequest,
    command_digest: Option<u64>,
    consistency: Consistency,
    call_at: Millis,
    give_up_at: Millis,
    attempts: Vec<u64>,
    retry_at: Option<Millis>,
    /// The write's sequence in the client's session (none for a read).
    sequence: Option<u64>,
}

#[derive(Clone, Debug)]
struct Client {
    /// Index into the workload's sessions.
    session: usize,
    current: Option<CurrentOperation>,
    value_counter: u64,
}

/// One replication session, shared by the clients that write on it.
#[derive(Clone, Debug)]
struct Session {
    id: u64,
    next_sequence: u64,
    /// Sequences written and not answered yet (nor given up on).
    unanswered: BTreeSet<u64>,
}

/// Drives clients against a simulated cluster and records what they saw.
pub struct Workload {
    options: WorkloadOptions,
    clients: Vec<Client>,
    sessions: Vec<Session>,
    next_request_id: u64,
    attempt_owner: BTreeMap<u64, usize>,
    cursors: Vec<usize>,
    history: Vec<Operation>,
    acknowledged: Vec<AcknowledgedWrite>,
    issuing: bool,
}

impl Workload {
    /// Clients with sessions drawn from the simulation's RNG.
    pub fn new(sim: &mut Simulator<SimReplica>, options: WorkloadOptions) -> Self {
        let sessions = (0..options.sessions.clamp(1, options.clients.max(1)))
            .map(|_| Session {
                id: sim.rng().random(),
                next_sequence: 1,
                unanswered: BTreeSet::new(),
            })
            .collect::<Vec<_>>();
        let clients = (0..options.clients)
            .map(|client| Client {
                session: client % sessions.len(),
                current: None,
                value_counter: 0,
            })
            .collect();
        Self {
            options,
            clients,
            sessions,
            next_request_id: 1,
            attempt_owner: BTreeMap::new(),
            cursors: vec![0; sim.node_count()],
            history: Vec::new(),
            acknowledged: Vec::new(),
            issuing: true,
        }
    }

    /// Stop starting new operations (outstanding ones still finish).
    pub fn stop_issuing(&mut self) {
        self.issuing = false;
    }

    /// Use STRONG for this fraction of the operations started from now on. A STRONG write
    /// completes only once every voter applied it, so a scenario that keeps a voter down sets
    /// 0 for that time.
    pub fn set_strong_fraction(&mut self, fraction: f64) {
        self.options.strong_fraction = fraction;
    }

    /// Start new operations again after [`stop_issuing`](Self::stop_issuing) (one history
    /// across quiet phases, so the linearizability check covers all of it).
    pub fn resume_issuing(&mut self) {
        self.issuing = true;
    }

    /// Whether no operation is outstanding.
    pub fn is_idle(&self) -> bool {
        self.clients.iter().all(|client| client.current.is_none())
    }

    /// The recorded history (completed and unknown operations).
    pub fn history(&self) -> &[Operation] {
        &self.history
    }

    /// Writes acknowledged as applied.
    pub fn acknowledged(&self) -> &[AcknowledgedWrite] {
        &self.acknowledged
    }

    /// Operations that completed with an answer.
    pub fn completed(&self) -> usize {
        self.history
            .iter()
            .filter(|operation| operation.output.is_some())
            .count()
    }

    /// Run the simulation to `until`, stepping the clients every millisecond.
    pub fn run(&mut self, sim: &mut Simulator<SimReplica>, until: Millis) {
        while sim.now() < until {
            let next = sim.now() + 1;
            sim.run_until(next);
            self.step(sim);
        }
    }

    /// Read replies, retry, give up and start new operations.
    pub fn step(&mut self, sim: &mut Simulator<SimReplica>) {
        let now = sim.now();
        for node in 0..sim.node_count() {
            let outputs = sim.outputs(node);
            let fresh: Vec<(Millis, u64, ClientReply)> = outputs[self.cursors[node]..]
                .iter()
                .filter_map(|record| match &record.output {
                    ReplicaOutput::Reply { request_id, reply } => {
                        Some((record.at, *request_id, reply.clone()))
                    }
                    _ => None,
                })
                .collect();
            self.cursors[node] = outputs.len();
            for (at, request_id, reply) in fresh {
                self.on_reply(at, request_id, reply);
            }
        }
        for client in 0..self.clients.len() {
            self.advance_client(sim, client, now);
        }
    }

    fn on_reply(&mut self, at: Millis, request_id: u64, reply: ClientReply) {
        let Some(client_index) = self.attempt_owner.remove(&request_id) else {
            return;
        };
        let retry_delay_ms = self.options.retry_delay_ms;
        let client = &mut self.clients[client_index];
        let Some(current) = client.current.as_mut() else {
            return;
        };
        if !current.attempts.contains(&request_id) {
            return;
        }
        let output = match reply {
            ClientReply::Written { index, outcome } => {
                let response = match &outcome {
                    ApplyOutcome::Applied(bytes) | ApplyOutcome::Duplicate(bytes) => {
                        postcard::from_bytes::<RegisterResponse>(bytes).ok()
                    }
                    other => panic!("client {client_index}: unexpected outcome {other:?}"),
                };
                if let (ApplyOutcome::Applied(_), Some(command_digest)) =
                    (&outcome, current.command_digest)
                {
                    self.acknowledged.push(AcknowledgedWrite {
                        index,
                        digest: command_digest,
                        consistency: current.consistency,
                    });
                }
                match response {
                    Some(RegisterResponse::WriteOk) => Some(Output::WriteOk),
                    Some(RegisterResponse::CasOk) => Some(Output::CasOk),
                    Some(RegisterResponse::CasFailed) => Some(Output::CasFailed),
                    Some(RegisterResponse::DeleteOk { existed }) => {
                        Some(Output::DeleteOk { existed })
                    }
                    None => panic!("client {client_index}: undecodable response"),
                }
            }
            ClientReply::Read { response, .. } => {
                let value: Option<String> =
                    postcard::from_bytes(&response).expect("read response decodes");
                Some(Output::ReadResult(value.map(Value::from)))
            }
            ClientReply::Accepted { .. } => panic!("the checked workload never writes EVENTUAL"),
            ClientReply::Failed(_) => {
                current.retry_at = Some(at + retry_delay_ms);
                None
            }
        };
        if let Some(output) = output {
            let session = client.session;
            let finished = client.current.take().expect("current operation");
            if let Some(sequence) = finished.sequence {
                self.sessions[session].unanswered.remove(&sequence);
            }
            for attempt in &finished.attempts {
                self.attempt_owner.remove(attempt);
            }
            self.history.push(Operation::completed(
                client_index as u64,
                finished.key,
                finished.call_at.0,
                at.0,
                finished.input,
                output,
            ));
        }
    }

    fn advance_client(
        &mut self,
        sim: &mut Simulator<SimReplica>,
        client_index: usize,
        now: Millis,
    ) {
        let client = &self.clients[client_index];
        match &client.current {
            Some(current) if now >= current.give_up_at => {
                let session = self.clients[client_index].session;
                let finished = self.clients[client_index].current.take().expect("current");
                // Given up on (outcome unknown): the session stops waiting for it, so a later
                // write's lowest unanswered sequence may pass it and it is never applied.
                if let Some(sequence) = finished.sequence {
                    self.sessions[session].unanswered.remove(&sequence);
                }
                for attempt in &finished.attempts {
                    self.attempt_owner.remove(attempt);
                }
                self.history.push(Operation::timed_out(
                    client_index as u64,
                    finished.key,
                    finished.call_at.0,
                    finished.input,
                ));
            }
            Some(current) if current.retry_at.is_some_and(|at| now >= at) => {
                self.attempt(sim, client_index, now);
            }
            Some(_) => {}
            None if self.issuing => {
                self.start_operation(sim, client_index, now);
                self.attempt(sim, client_index, now);
            }
            None => {}
        }
    }

    fn start_operation(
        &mut self,
        sim: &mut Simulator<SimReplica>,
        client_index: usize,
        now: Millis,
    ) {
        let key = format!("k{}", sim.rng().random_range(0..self.options.keys));
        let strong = sim.rng().random_bool(self.options.strong_fraction);
        let consistency = if strong {
            Consistency::Strong
        } else {
            Consistency::Quorum
        };
        let choice = sim.rng().random_range(0..100u32);
        let client = &mut self.clients[client_index];
        client.value_counter += 1;
        let fresh = format!("c{client_index}v{}", client.value_counter);
        let guess = format!(
            "c{client_index}v{}",
            client
                .value_counter
                .saturating_sub(1 + u64::from(choice % 3))
        );
        let (input, command) = match choice {
            0..=39 => (Input::Read, None),
            40..=69 => (
                Input::write(fresh.as_str()),
                Some(RegisterCommand::Write {
                    key: key.clone(),
                    value: fresh,
                }),
            ),
            70..=84 => (
                Input::cas(guess.as_str(), fresh.as_str()),
                Some(RegisterCommand::Cas {
                    key: key.clone(),
                    expected: Some(guess),
                    new: fresh,
                }),
            ),
            85..=92 => (
                Input::create(fresh.as_str()),
                Some(RegisterCommand::Cas {
                    key: key.clone(),
                    expected: None,
                    new: fresh,
                }),
            ),
            _ => (
                Input::Delete,
                Some(RegisterCommand::Delete { key: key.clone() }),
            ),
        };
        let session = &mut self.sessions[client.session];
        let mut sequence = None;
        let (request, command_digest) = match command {
            None => (
                ClientRequest::Read(ReadRequest {
                    query: postcard::to_allocvec(&key).expect("a key encodes"),
                    consistency,
                }),
                None,
            ),
            Some(command) => {
                let bytes = postcard::to_allocvec(&command).expect("a command encodes");
                let command_digest = digest(&bytes);
                let next = session.next_sequence;
                session.next_sequence += 1;
                session.unanswered.insert(next);
                sequence = Some(next);
                (
                    ClientRequest::Write(WriteRequest {
                        session: SessionId(session.id),
                        sequence: next,
                        // Set on every attempt, from the session's unanswered writes then.
                        lowest_unanswered: next,
                        command: bytes,
                        consistency,
                    }),
                    Some(command_digest),
                )
            }
        };
        client.current = Some(CurrentOperation {
            key,
            input,
            request,
            command_digest,
            consistency,
            call_at: now,
            give_up_at: now + self.options.operation_timeout_ms,
            attempts: Vec::new(),
            retry_at: None,
            sequence,
        });
    }

    fn attempt(&mut self, sim: &mut Simulator<SimReplica>, client_index: usize, now: Millis) {
        let running = sim.running_nodes();
        if running.is_empty() {
            if let Some(current) = self.clients[client_index].current.as_mut() {
                current.retry_at = Some(now + self.options.retry_delay_ms);
            }
            return;
        }
        let node = running[sim.rng().random_range(0..running.len())];
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        let timeout_ms = self.options.attempt_timeout_ms;
        let session = &self.sessions[self.clients[client_index].session];
        let lowest_unanswered = session.unanswered.first().copied();
        let Some(current) = self.clients[client_index].current.as_mut() else {
            return;
        };
        if let (ClientRequest::Write(write), Some(lowest)) =
            (&mut current.request, lowest_unanswered)
        {
            write.lowest_unanswered = lowest;
        }
        current.attempts.push(request_id);
        // The next retry is decided by the answer (or the attempt's own deadline).
        current.retry_at = Some(now + timeout_ms + self.options.retry_delay_ms);
        let request = current.request.clone();
        self.attempt_owner.insert(request_id, client_index);
        sim.act(node, |replica, now| {
            replica.submit(now, request_id, request, timeout_ms)
        });
    }
}
