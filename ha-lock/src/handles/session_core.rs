//! What the [`Kv`], [`Leases`] and [`Locks`] handles of one [`Session`](super::Session)
//! share: the replication session, its settings and the local replica's change signal.

use std::sync::Arc;
use std::time::Duration;

use ha_core::{Consistency, StateMachine};
use tokio::sync::watch;

use super::error::LockError;
use super::kv::Kv;
use super::leases::Leases;
use super::locks::Locks;
use super::session_settings::SessionSettings;
use super::table_answer::{QueryAnswer, RenewAnswer, TableAnswer, undecodable};
use super::table_session::TableSession;
use crate::change_feed::ChangeFeed;
use crate::command::{LeaseId, LockCommand, LockQuery, SessionId};

/// The writers of one session: the main one, and the optional second session renewals go
/// through. Shared by every core made from one [`Session`](super::Session), whatever their
/// settings.
pub(crate) struct SessionWriters<H: StateMachine> {
    writer: TableSession<H>,
    /// Renewals go through their own session when one was given. Not needed for them to
    /// run beside a slow foreground write (a STRONG put waiting for a down voter): writes of
    /// one session are pipelined, none waits for another.
    renewals: Option<TableSession<H>>,
}

impl<H: StateMachine> SessionWriters<H> {
    pub(crate) fn new(writer: TableSession<H>, renewals: Option<TableSession<H>>) -> Self {
        Self { writer, renewals }
    }
}

/// One lock-table session as every handle, guard, lease and watch made from it sees it. Held
/// in an [`Arc`]: a handle is a pointer to it, so handles clone for the cost of a counter.
pub(crate) struct SessionCore<H: StateMachine> {
    writers: Arc<SessionWriters<H>>,
    settings: SessionSettings,
    /// The local replica's change signal, when known: watches wait on it instead of polling.
    feed: Option<ChangeFeed>,
}

impl<H: StateMachine> SessionCore<H> {
    pub(crate) fn new(writers: SessionWriters<H>) -> Self {
        Self {
            writers: Arc::new(writers),
            settings: SessionSettings::default(),
            feed: None,
        }
    }

    /// The same session with other settings (a new core; handles of the old one keep theirs).
    pub(crate) fn with_settings(&self, settings: SessionSettings) -> Self {
        Self {
            writers: Arc::clone(&self.writers),
            settings,
            feed: self.feed.clone(),
        }
    }

    /// The same session with its watches woken by `feed`.
    pub(crate) fn with_change_feed(&self, feed: ChangeFeed) -> Self {
        Self {
            writers: Arc::clone(&self.writers),
            settings: self.settings,
            feed: Some(feed),
        }
    }

    /// The lock table session: the holder and waiter id in lock states and deadlock cycles.
    pub(crate) fn session(&self) -> SessionId {
        self.writers.writer.session()
    }

    /// Its timeouts and poll intervals.
    pub(crate) fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// The KV handle of this session.
    pub(crate) fn kv(self: &Arc<Self>) -> Kv<H> {
        Kv::from_core(Arc::clone(self))
    }

    /// The lease handle of this session.
    pub(crate) fn leases(self: &Arc<Self>) -> Leases<H> {
        Leases::from_core(Arc::clone(self))
    }

    /// The lock handle of this session.
    pub(crate) fn locks(self: &Arc<Self>) -> Locks<H> {
        Locks::from_core(Arc::clone(self))
    }

    /// The local replica's change signal, for a new [`Watch`](super::Watch).
    pub(crate) fn change_signal(&self) -> Option<watch::Receiver<u64>> {
        self.feed.as_ref().map(ChangeFeed::subscribe)
    }

    /// A write on the main session at `consistency` within the request timeout: its log
    /// index and the lock table's answer as `A` (`None` for an EVENTUAL write).
    pub(crate) async fn write<A: TableAnswer>(
        &self,
        command: LockCommand,
        consistency: Consistency,
    ) -> Result<(u64, Option<A>), LockError> {
        self.writers
            .writer
            .write(command, consistency, self.settings.request_timeout)
            .await
    }

    /// A QUORUM write on the main session, with the lock table's answer as `A`.
    pub(crate) async fn command<A: TableAnswer>(
        &self,
        command: LockCommand,
    ) -> Result<A, LockError> {
        self.command_at(command).await.map(|(_, response)| response)
    }

    /// A QUORUM write on the main session, with its log index and the lock table's answer
    /// as `A`.
    pub(crate) async fn command_at<A: TableAnswer>(
        &self,
        command: LockCommand,
    ) -> Result<(u64, A), LockError> {
        let (index, response) = self.write(command, Consistency::Quorum).await?;
        // Only an EVENTUAL write is answered before it is applied.
        let response =
            response.ok_or_else(|| undecodable(A::WHAT, "no answer to a QUORUM write"))?;
        Ok((index, response))
    }

    /// A read within the request timeout, answered as `A`.
    pub(crate) async fn query<A: QueryAnswer>(
        &self,
        query: LockQuery,
        consistency: Consistency,
    ) -> Result<A, LockError> {
        self.query_within(query, consistency, self.settings.request_timeout)
            .await
    }

    /// A read within `timeout`, answered as `A`.
    pub(crate) async fn query_within<A: QueryAnswer>(
        &self,
        query: LockQuery,
        consistency: Consistency,
        timeout: Duration,
    ) -> Result<A, LockError> {
        self.writers.writer.read(query, consistency, timeout).await
    }

    /// One renewal, through the renewal session, bounded by `timeout`. QUORUM: the safe
    /// deadline may move on only once a majority has the renewal, so a new leader sees it.
    pub(crate) async fn renew(
        &self,
        lease: LeaseId,
        timeout: Duration,
    ) -> Result<RenewAnswer, LockError> {
        let writer = self
            .writers
            .renewals
            .as_ref()
            .unwrap_or(&self.writers.writer);
        let (_, response) = writer
            .write::<RenewAnswer>(
                LockCommand::LeaseKeepAlive { lease },
                Consistency::Quorum,
                timeout,
            )
            .await?;
        response.ok_or_else(|| undecodable("RenewAnswer", "no answer to a QUORUM renewal"))
    }
}
