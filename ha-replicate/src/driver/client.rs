//! A typed client that retries until its deadline, applying each write exactly once.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ha_core::{Consistency, LogIndex, StateMachine, codec};
use tokio::sync::{mpsc, oneshot};

use crate::driver::replica_node::{Command, stopped};
use crate::replica::{
    ApplyOutcome, COMMAND_BYTES_MAX, ClientError, ClientReply, ClientRequest, ReadRequest,
    WriteRequest,
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
/// Writes of one client go one at a time (concurrent callers wait their turn): the applied
/// state remembers only a session's latest sequence, so a second write in flight could make
/// the first one "stale" and unapplied. Use one client per concurrent writer.
pub struct ReplicaClient<S: StateMachine> {
    commands: mpsc::Sender<Command>,
    session: u64,
    sequence: AtomicU64,
    one_write_at_a_time: tokio::sync::Mutex<()>,
    _machine: PhantomData<fn() -> S>,
}

impl<S: StateMachine> ReplicaClient<S> {
    pub(crate) fn new(commands: mpsc::Sender<Command>) -> Self {
        Self {
            commands,
            session: rand::random(),
            sequence: AtomicU64::new(0),
            one_write_at_a_time: tokio::sync::Mutex::new(()),
            _machine: PhantomData,
        }
    }

    /// This client's session id.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// Apply `command` at `consistency`, retrying (same session and sequence) on "not
    /// leader", transfers, back-pressure and timeouts until `timeout`.
    ///
    /// # Cancel safety
    /// Cancelling the future abandons the write: it may or may not be applied (at most once).
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when the deadline passed (the write may have been applied; a
    /// retry with a new call would apply it again, so treat it as unknown);
    /// [`ClientError::NotAppliedEverywhere`] for a STRONG write committed at QUORUM only;
    /// other [`ClientError`]s as they say.
    pub async fn write(
        &self,
        command: S::Command,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<WriteResult<S::Response>, ClientError> {
        let command = codec::encode("command", &command, COMMAND_BYTES_MAX)
            .map_err(|error| ClientError::InvalidQuery(error.to_string()))?;
        let _turn = self.one_write_at_a_time.lock().await;
        let request = ClientRequest::Write(WriteRequest {
            session: self.session,
            sequence: self.sequence.fetch_add(1, Ordering::Relaxed) + 1,
            command,
            consistency,
        });
        match self.request_with_retries(request, timeout).await? {
            ClientReply::Written { index, outcome } => match outcome {
                ApplyOutcome::Applied(bytes) | ApplyOutcome::Duplicate(bytes) => {
                    let response = codec::decode("response", &bytes, bytes.len())
                        .map_err(|error| ClientError::InvalidQuery(error.to_string()))?;
                    Ok(WriteResult {
                        index,
                        response: Some(response),
                    })
                }
                ApplyOutcome::Stale { latest } => Err(ClientError::InvalidQuery(format!(
                    "superseded by sequence {latest} of the same session"
                ))),
                ApplyOutcome::Invalid(reason) => Err(ClientError::InvalidQuery(reason)),
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
                    .map_err(|error| ClientError::InvalidQuery(error.to_string()))
            }
            other => Err(ClientError::InvalidQuery(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    async fn request_with_retries(
        &self,
        request: ClientRequest,
        timeout: Duration,
    ) -> Result<ClientReply, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut delay = RETRY_DELAY_MIN;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Timeout);
            }
            let attempt = remaining.min(ATTEMPT_TIMEOUT);
            let (reply, wait) = oneshot::channel();
            let command = Command::Submit {
                request: request.clone(),
                timeout_ms: u64::try_from(attempt.as_millis()).unwrap_or(u64::MAX),
                reply,
            };
            self.commands.send(command).await.map_err(|_| stopped())?;
            let answer = match tokio::time::timeout(attempt + Duration::from_millis(50), wait).await
            {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => return Err(stopped()),
                Err(_) => ClientReply::Failed(ClientError::Timeout),
            };
            match answer {
                ClientReply::Failed(error) if error.is_retryable() => {
                    let pause = delay.min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    delay = (delay * 2).min(RETRY_DELAY_MAX);
                }
                ClientReply::Failed(error) => return Err(error),
                answer => return Ok(answer),
            }
        }
    }
}
