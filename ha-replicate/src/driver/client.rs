//! A typed client that retries until its deadline, applying each write exactly once.

use std::marker::PhantomData;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ha_core::{Consistency, LogIndex, SessionId, StateMachine, codec};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::driver::replica_node::Command;
use crate::driver::session_window::SessionWindow;
use crate::driver::stop_reason::StopReason;
use crate::replica::{
    ApplyOutcome, COMMAND_BYTES_MAX, ClientError, ClientReply, ClientRequest, ReadRequest,
    WriteFate, WriteRequest,
};

/// One attempt's deadline; a request is retried with fresh attempts until its own deadline.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1_000);
const RETRY_DELAY_MIN: Duration = Duration::from_millis(5);
const RETRY_DELAY_MAX: Duration = Duration::from_millis(200);

/// What a write returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult<R> {
    /// Where the write is in the log.
    pub index: LogIndex,
    /// The state machine's response; `None` for an EVENTUAL write (answered before applying).
    pub response: Option<R>,
}

/// A client session on one replica node. Writes carry the session id and a sequence
/// number, so a write retried after a timeout or a failover is applied once.
///
/// Many writes of one client may be in flight at once, from any number of tasks (pipelined
/// sessions, Raft dissertation §6.3): each carries the lowest sequence the client has no
/// answer for, and the applied state keeps the session's responses from there on. At most
/// [`SESSION_WRITES_IN_FLIGHT_MAX`](crate::driver::SESSION_WRITES_IN_FLIGHT_MAX) sequences separate the oldest unanswered write from the
/// newest; a writer past that waits for the oldest to be answered. Share one client (in an
/// `Arc`) among the tasks of a process rather than making one per task.
///
/// A node cut off from the majority answers [`ClientError::NoQuorum`] at once. By default the
/// client keeps retrying it until the deadline (an election usually ends that state within an
/// election timeout); [`fail_fast`](Self::fail_fast) makes it return the error at once, for a
/// caller that can try another node (the admin HTTP API does).
pub struct ReplicaClient<S: StateMachine> {
    commands: mpsc::Sender<Command>,
    /// Why the node's task ended, once it has: what a request is then answered.
    stop_reason: StopReason,
    session: SessionId,
    /// The session's sequences in flight. Held for a few instructions, never across an await.
    window: Mutex<SessionWindow>,
    /// Woken when a write of the session ends, for writers waiting on a full window.
    window_freed: Notify,
    fail_fast: bool,
    _machine: PhantomData<fn() -> S>,
}

impl<S: StateMachine> ReplicaClient<S> {
    pub(crate) fn new(commands: mpsc::Sender<Command>, stop_reason: StopReason) -> Self {
        Self {
            commands,
            stop_reason,
            session: SessionId(rand::random()),
            window: Mutex::new(SessionWindow::new()),
            window_freed: Notify::new(),
            fail_fast: false,
            _machine: PhantomData,
        }
    }

    /// The same client, returning [`ClientError::NoQuorum`] as soon as its node answers it
    /// instead of retrying until the deadline: for a caller that can try another node.
    pub fn fail_fast(mut self) -> Self {
        self.fail_fast = true;
        self
    }

    /// This client's session id.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// Apply `command` at `consistency`, retrying (same session and sequence) on "not
    /// leader", transfers, back-pressure and timeouts until `timeout`.
    ///
    /// # Cancel safety
    /// Cancelling the future abandons the write: it may or may not be applied (at most once;
    /// once a later write of the session is applied, never).
    ///
    /// # Errors
    /// An error whose [`fate`](ClientError::fate) is [`WriteFate::NotApplied`] only when no
    /// attempt can have been applied: once one attempt's outcome is unknown (it timed out, or
    /// its leader was lost), a later refusal is answered as that unknown outcome
    /// ([`ClientError::Timeout`] at the deadline, else [`ClientError::LeadershipLost`]).
    /// A retry with a new call would be a new write, so treat an unknown outcome as such;
    /// [`ClientError::NotAppliedEverywhere`] for a STRONG write committed at QUORUM only;
    /// [`ClientError::Busy`] (not applied) when
    /// [`SESSION_WRITES_IN_FLIGHT_MAX`](crate::driver::SESSION_WRITES_IN_FLIGHT_MAX) writes of the
    /// session stayed unanswered until the deadline.
    pub async fn write(
        &self,
        command: S::Command,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<WriteResult<S::Response>, ClientError> {
        let command = codec::encode("command", &command, COMMAND_BYTES_MAX)
            .map_err(|error| ClientError::InvalidQuery(error.to_string()))?;
        let deadline = Instant::now() + timeout;
        let in_flight = self.begin_write(deadline).await?;
        let request = ClientRequest::Write(WriteRequest {
            session: self.session,
            sequence: in_flight.sequence,
            lowest_unanswered: in_flight.sequence,
            command,
            consistency,
        });
        let remaining = deadline.saturating_duration_since(Instant::now());
        match self.request_with_retries(request, remaining).await? {
            ClientReply::Written { index, outcome } => match outcome {
                ApplyOutcome::Applied(bytes) | ApplyOutcome::Duplicate(bytes) => {
                    let response = codec::decode("response", &bytes, bytes.len())
                        .map_err(|error| ClientError::ResponseUndecodable(error.to_string()))?;
                    Ok(WriteResult {
                        index,
                        response: Some(response),
                    })
                }
                // Only for a session the applied state forgot (more than `SESSIONS_MAX`
                // sessions wrote since), whose sequences then look new: not reached otherwise,
                // as this write stays unanswered until it ends.
                ApplyOutcome::Stale { lowest_unanswered } => Err(ClientError::InvalidQuery(
                    format!("below the session's lowest unanswered sequence {lowest_unanswered}"),
                )),
                ApplyOutcome::Invalid(reason) => Err(ClientError::InvalidQuery(reason)),
                // Retried by `request_with_retries` until the deadline: not returned.
                ApplyOutcome::SessionFull { .. } => Err(ClientError::Busy),
            },
            ClientReply::Accepted { index } => Ok(WriteResult {
                index,
                response: None,
            }),
            other => Err(ClientError::InvalidQuery(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Answer `query` at `consistency` (STRONG and QUORUM are linearizable; EVENTUAL reads
    /// the local replica), retrying until `timeout`.
    ///
    /// # Errors
    /// [`ClientError`] as for [`write`](Self::write).
    pub async fn read(
        &self,
        query: S::Query,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<S::QueryResponse, ClientError> {
        let query = codec::encode("query", &query, COMMAND_BYTES_MAX)
            .map_err(|error| ClientError::InvalidQuery(error.to_string()))?;
        let request = ClientRequest::Read(ReadRequest { query, consistency });
        match self.request_with_retries(request, timeout).await? {
            ClientReply::Read { response, .. } => {
                codec::decode("query response", &response, response.len())
                    .map_err(|error| ClientError::ResponseUndecodable(error.to_string()))
            }
            other => Err(ClientError::InvalidQuery(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// The applied index a linearizable read of `query` was answered at: every write
    /// acknowledged before this call is at or below it. A node that has applied this index
    /// holds all of them (what [`ReplicaNode::export_snapshot`] waits for to export a fresh
    /// copy). The query's answer is dropped: pick a cheap one.
    ///
    /// [`ReplicaNode::export_snapshot`]: crate::driver::ReplicaNode::export_snapshot
    ///
    /// # Errors
    /// [`ClientError`] as for [`read`](Self::read).
    pub async fn linearizable_index(
        &self,
        query: S::Query,
        timeout: Duration,
    ) -> Result<LogIndex, ClientError> {
        let query = codec::encode("query", &query, COMMAND_BYTES_MAX)
            .map_err(|error| ClientError::InvalidQuery(error.to_string()))?;
        let request = ClientRequest::Read(ReadRequest {
            query,
            consistency: Consistency::Strong,
        });
        match self.request_with_retries(request, timeout).await? {
            ClientReply::Read { index, .. } => Ok(index),
            other => Err(ClientError::InvalidQuery(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// A sequence for a new write, once the session's window has room (or [`ClientError::Busy`]
    /// at `deadline`, with nothing sent). The sequence stays unanswered until the returned
    /// guard drops.
    async fn begin_write(&self, deadline: Instant) -> Result<InFlight<'_, S>, ClientError> {
        loop {
            let freed = self.window_freed.notified();
            if let Some(sequence) = self.window().begin() {
                return Ok(InFlight {
                    client: self,
                    sequence,
                });
            }
            tokio::time::timeout_at(deadline.into(), freed)
                .await
                .map_err(|_| ClientError::Busy)?;
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, SessionWindow> {
        // A panic while holding it leaves the window as it was (each method is one step).
        self.window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) async fn request_with_retries(
        &self,
        mut request: ClientRequest,
        timeout: Duration,
    ) -> Result<ClientReply, ClientError> {
        let deadline = Instant::now() + timeout;
        // A write made inside a traced span carries its context to the leader (issue 16).
        let trace = match request {
            ClientRequest::Write(_) => crate::trace_context::current(),
            _ => None,
        };
        let mut delay = RETRY_DELAY_MIN;
        let mut failures = Failures::new(matches!(
            request,
            ClientRequest::Write(_) | ClientRequest::Member(_)
        ));
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(failures.at_deadline());
            }
            let attempt = remaining.min(ATTEMPT_TIMEOUT);
            if let ClientRequest::Write(write) = &mut request {
                // Every attempt tells the applier what the session still waits for now.
                write.lowest_unanswered = self.window().lowest_unanswered();
            }
            let (reply, wait) = oneshot::channel();
            let command = Command::Submit {
                request: request.clone(),
                timeout_ms: u64::try_from(attempt.as_millis()).unwrap_or(u64::MAX),
                reply,
                trace,
            };
            self.commands
                .send(command)
                .await
                .map_err(|_| failures.finally(self.stop_reason.error()))?;
            let answer = match tokio::time::timeout(attempt + Duration::from_millis(50), wait).await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => return Err(failures.finally(self.stop_reason.error())),
                Err(_) => ClientReply::Failed(ClientError::Timeout),
            };
            let answer = match answer {
                // Not applied: the session keeps as many responses as it may. Retried (same
                // sequence) once older writes are answered and a later write says so.
                ClientReply::Written {
                    outcome: ApplyOutcome::SessionFull { .. },
                    ..
                } => ClientReply::Failed(ClientError::Busy),
                answer => answer,
            };
            match answer {
                ClientReply::Failed(error @ ClientError::NoQuorum { .. }) if self.fail_fast => {
                    return Err(failures.finally(error));
                }
                ClientReply::Failed(error) if error.is_retryable() => {
                    failures.record(error);
                    let pause = delay.min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(RETRY_DELAY_MAX);
                }
                ClientReply::Failed(error) => return Err(failures.finally(error)),
                answer => return Ok(answer),
            }
        }
    }
}

/// A write of the session in flight: its sequence is unanswered until this drops (answered,
/// failed, or the caller's future cancelled).
struct InFlight<'a, S: StateMachine> {
    client: &'a ReplicaClient<S>,
    sequence: u64,
}

impl<S: StateMachine> Drop for InFlight<'_, S> {
    fn drop(&mut self) {
        self.client.window().end(self.sequence);
        self.client.window_freed.notify_waiters();
    }
}

/// The failed attempts of one request so far, to answer with the truth about all of them: a
/// write is "known not applied" only if no attempt may have been applied.
struct Failures {
    write: bool,
    /// Some attempt of the write may have been applied.
    unknown: bool,
    last: Option<ClientError>,
}

impl Failures {
    fn new(write: bool) -> Self {
        Self {
            write,
            unknown: false,
            last: None,
        }
    }

    fn record(&mut self, error: ClientError) {
        self.unknown |= self.write && error.fate() == WriteFate::Unknown;
        self.last = Some(error);
    }

    /// The answer when the deadline passed: unknown if any attempt may have been applied (or
    /// none was answered), else the last refusal, which is true of every attempt.
    fn at_deadline(&mut self) -> ClientError {
        match self.last.take() {
            Some(last) if !self.unknown && last.fate() == WriteFate::NotApplied => last,
            _ => ClientError::Timeout,
        }
    }

    /// The answer when the last attempt ended with `error`: a refusal after an attempt of
    /// unknown outcome does not make the write known not applied.
    fn finally(&self, error: ClientError) -> ClientError {
        if self.unknown && error.fate() == WriteFate::NotApplied {
            ClientError::LeadershipLost
        } else {
            error
        }
    }
}

#[cfg(test)]
mod tests {
    //! Issue 12, item 12: the final answer of a retried request is true of every attempt.

    use super::*;

    fn no_quorum() -> ClientError {
        ClientError::NoQuorum { leader: None }
    }

    #[test]
    fn a_write_refused_every_time_is_known_not_applied() {
        let mut failures = Failures::new(true);
        failures.record(ClientError::NotLeader { leader: None });
        failures.record(ClientError::Busy);
        assert_eq!(failures.finally(no_quorum()), no_quorum());
        assert_eq!(failures.at_deadline(), ClientError::Busy);
    }

    #[test]
    fn a_refusal_after_an_attempt_of_unknown_outcome_is_unknown() {
        let mut failures = Failures::new(true);
        failures.record(ClientError::Timeout);
        failures.record(ClientError::NotLeader { leader: None });
        assert_eq!(failures.finally(no_quorum()), ClientError::LeadershipLost);
        assert_eq!(failures.finally(no_quorum()).fate(), WriteFate::Unknown);
        assert_eq!(failures.at_deadline(), ClientError::Timeout);
        // A committed STRONG write stays committed.
        let committed = ClientError::NotAppliedEverywhere {
            index: ha_core::LogIndex(3),
        };
        assert_eq!(failures.finally(committed.clone()), committed);
    }

    #[test]
    fn a_read_has_no_outcome_to_hide() {
        let mut failures = Failures::new(false);
        failures.record(ClientError::Timeout);
        assert_eq!(failures.finally(no_quorum()), no_quorum());
        assert_eq!(Failures::new(false).at_deadline(), ClientError::Timeout);
    }
}
