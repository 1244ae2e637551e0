//! What applying a lock command did to a lock (granted, released, expired), told to an
//! observer as this replica applies it (issue 16: the node's `lock` events).
//!
//! Not replicated state: the observer is configuration of one replica, not part of the table,
//! its snapshots or its answers, so observing changes nothing any replica computes. Every
//! replica that applies the command sees the same outcomes; a replica replaying its log after a
//! restart sees them again.

use std::sync::Arc;

use crate::command::{FencingToken, LeaseId, LockCommand, LockResponse};
use crate::lock_table::KvLockTable;

/// What happened to a lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockChange {
    /// Granted to a session: at once on acquire, or to the first live waiter when the holder
    /// let go.
    Granted,
    /// Released by its holder: a release, or the holder revoking its lease.
    Released,
    /// Released because the holder's lease ran out (the leader expired it).
    Expired,
}

impl LockChange {
    /// The lower-case name used in events: `granted`, `released`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            LockChange::Granted => "granted",
            LockChange::Released => "released",
            LockChange::Expired => "expired",
        }
    }
}

/// One change to one lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockOutcome {
    /// What happened.
    pub change: LockChange,
    /// The lock.
    pub name: String,
    /// The grant's fencing token (for a release or expiry: the token that no longer holds).
    pub token: FencingToken,
}

/// Told every [`LockOutcome`] as the replica applies it. Called on the replica's apply path:
/// it must be quick and must not block (append to a bounded buffer and return).
#[derive(Clone)]
pub struct LockObserver(Arc<dyn Fn(&LockOutcome) + Send + Sync>);

impl LockObserver {
    /// An observer calling `tell` with each outcome.
    pub fn new(tell: impl Fn(&LockOutcome) + Send + Sync + 'static) -> Self {
        Self(Arc::new(tell))
    }

    fn tell(&self, change: LockChange, name: &str, token: FencingToken) {
        (self.0)(&LockOutcome {
            change,
            name: name.to_string(),
            token,
        });
    }
}

impl std::fmt::Debug for LockObserver {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("LockObserver")
    }
}

/// What must be read from the table before a command is applied to tell its outcomes after.
pub(crate) enum Watched {
    /// Nothing can change a lock.
    Nothing,
    /// An acquire of this lock.
    Acquire(String),
    /// A release of this lock's grant `token`.
    Release(String, FencingToken),
    /// A lease ending (revoked, or expired when `expired`), with the locks it held and their
    /// tokens.
    LeaseEnd {
        expired: bool,
        held: Vec<(String, FencingToken)>,
    },
}

impl Watched {
    /// Read what `command` may change, before it is applied to `table`.
    pub(crate) fn before(table: &KvLockTable, command: &LockCommand) -> Self {
        match command {
            LockCommand::Acquire { name, .. }
            | LockCommand::AcquireWithHolder { name, .. }
            | LockCommand::GrantAndAcquire { name, .. } => Watched::Acquire(name.clone()),
            LockCommand::Release { name, token }
            | LockCommand::ReleaseWithHolder { name, token, .. } => {
                Watched::Release(name.clone(), *token)
            }
            LockCommand::LeaseRevoke { lease } => Watched::lease_end(table, *lease, false),
            LockCommand::LeaseExpire { lease, .. } => Watched::lease_end(table, *lease, true),
            // Ends the lease the grant is held under, when it releases at all.
            LockCommand::ReleaseAndRevoke { name, token, .. } => {
                match table.lease_of_grant(name, *token) {
                    Some(lease) => Watched::lease_end(table, lease, false),
                    None => Watched::Nothing,
                }
            }
            _ => Watched::Nothing,
        }
    }

    fn lease_end(table: &KvLockTable, lease: LeaseId, expired: bool) -> Self {
        Watched::LeaseEnd {
            expired,
            held: table.lease_lock_tokens(lease),
        }
    }

    /// Tell `observer` what the command applied at `index` did, from its `response` and the
    /// table after it.
    pub(crate) fn tell(
        self,
        observer: &LockObserver,
        table: &KvLockTable,
        index: u64,
        response: &LockResponse,
    ) {
        // A lock let go is granted on to its first live waiter in the same step, with the
        // command's index as the new token.
        let passed_on = |name: &str| {
            if table.lock_token(name) == Some(FencingToken(index)) {
                observer.tell(LockChange::Granted, name, FencingToken(index));
            }
        };
        match (self, response) {
            (
                Watched::Acquire(name),
                LockResponse::Granted { token } | LockResponse::GrantedWithLease { token, .. },
            ) if *token == FencingToken(index) => {
                observer.tell(LockChange::Granted, &name, *token);
            }
            (Watched::Release(name, token), LockResponse::Released) => {
                observer.tell(LockChange::Released, &name, token);
                passed_on(&name);
            }
            (
                Watched::LeaseEnd { expired, held },
                LockResponse::LeaseEnded { released_locks, .. },
            ) => {
                let change = if expired {
                    LockChange::Expired
                } else {
                    LockChange::Released
                };
                for (name, token) in held {
                    if released_locks.contains(&name) {
                        observer.tell(change, &name, token);
                        passed_on(&name);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ha_core::{LogIndex, StateMachine};

    use super::*;
    use crate::command::SessionId;
    use crate::with_locks::{Command, WithLocks};

    fn apply(machine: &mut WithLocks<()>, index: u64, command: LockCommand) {
        machine.apply(LogIndex(index), Command::Lock(command));
    }

    /// A grant, a release passing the lock on to a waiter, an expiry and a revoke are each
    /// told once with the right token; a retried acquire and a refused release are not.
    #[test]
    fn grants_releases_and_expiries_are_told_in_order() {
        let seen: Arc<Mutex<Vec<(LockChange, String, u64)>>> = Arc::default();
        let observer = {
            let seen = Arc::clone(&seen);
            LockObserver::new(move |outcome| {
                seen.lock().expect("not poisoned").push((
                    outcome.change,
                    outcome.name.clone(),
                    outcome.token.0,
                ));
            })
        };
        let mut machine = WithLocks::new(()).observe_locks(observer);
        apply(
            &mut machine,
            1,
            LockCommand::LeaseGrant {
                ttl_ms: 1_000,
                session: SessionId(1),
            },
        );
        apply(
            &mut machine,
            2,
            LockCommand::LeaseGrant {
                ttl_ms: 1_000,
                session: SessionId(2),
            },
        );
        let acquire = |session, lease| LockCommand::Acquire {
            name: "jobs".into(),
            session,
            lease,
            wait: true,
        };
        apply(&mut machine, 3, acquire(SessionId(1), LeaseId(1))); // granted, token 3
        apply(&mut machine, 4, acquire(SessionId(1), LeaseId(1))); // a retry: the same grant, not news
        apply(&mut machine, 5, acquire(SessionId(2), LeaseId(2))); // queued
        apply(
            &mut machine,
            6,
            LockCommand::Release {
                name: "jobs".into(),
                token: FencingToken(99),
            },
        );
        apply(
            &mut machine,
            7,
            LockCommand::Release {
                name: "jobs".into(),
                token: FencingToken(3),
            },
        );
        apply(
            &mut machine,
            8,
            LockCommand::LeaseExpire {
                lease: LeaseId(2),
                renewals: 0,
            },
        );
        apply(&mut machine, 9, acquire(SessionId(1), LeaseId(1))); // granted, token 9
        apply(
            &mut machine,
            10,
            LockCommand::LeaseRevoke { lease: LeaseId(1) },
        );
        let jobs = |change, token| (change, "jobs".to_string(), token);
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            vec![
                jobs(LockChange::Granted, 3),
                jobs(LockChange::Released, 3),
                jobs(LockChange::Granted, 7),
                jobs(LockChange::Expired, 7),
                jobs(LockChange::Granted, 9),
                jobs(LockChange::Released, 9),
            ]
        );
    }

    /// Issue 17's lock cycle tells the same events as the separate commands: a grant when the
    /// lease and the lock come in one command (not when it only queues), and a release (then
    /// the hand-off) when the release ends its lease; a refused release tells nothing.
    #[test]
    fn a_lock_cycle_in_two_commands_is_told_as_grant_and_release() {
        let seen: Arc<Mutex<Vec<(LockChange, String, u64)>>> = Arc::default();
        let observer = {
            let seen = Arc::clone(&seen);
            LockObserver::new(move |outcome| {
                seen.lock().expect("not poisoned").push((
                    outcome.change,
                    outcome.name.clone(),
                    outcome.token.0,
                ));
            })
        };
        let mut machine = WithLocks::new(()).observe_locks(observer);
        let cycle = |session| LockCommand::GrantAndAcquire {
            name: "jobs".into(),
            session,
            ttl_ms: 1_000,
            wait: true,
            holder_digest: None,
        };
        let release = |token| LockCommand::ReleaseAndRevoke {
            name: "jobs".into(),
            token,
            holder_key: None,
        };
        apply(&mut machine, 1, cycle(SessionId(1))); // granted, token 1
        apply(&mut machine, 2, cycle(SessionId(2))); // queued under lease 2
        apply(&mut machine, 3, release(FencingToken(2))); // not the holder's token: nothing
        apply(&mut machine, 4, release(FencingToken(1))); // released, handed to session 2 with token 4
        apply(&mut machine, 5, release(FencingToken(4))); // released, free
        let jobs = |change, token| (change, "jobs".to_string(), token);
        assert_eq!(
            *seen.lock().expect("not poisoned"),
            vec![
                jobs(LockChange::Granted, 1),
                jobs(LockChange::Released, 1),
                jobs(LockChange::Granted, 4),
                jobs(LockChange::Released, 4),
            ]
        );
    }

    /// Observing changes nothing the table computes.
    #[test]
    fn an_observed_table_answers_as_an_unobserved_one() {
        let mut plain = WithLocks::new(());
        let mut observed = WithLocks::new(()).observe_locks(LockObserver::new(|_| {}));
        let commands = [
            LockCommand::LeaseGrant {
                ttl_ms: 500,
                session: SessionId(4),
            },
            LockCommand::Acquire {
                name: "a".into(),
                session: SessionId(4),
                lease: LeaseId(1),
                wait: false,
            },
            LockCommand::LeaseExpire {
                lease: LeaseId(1),
                renewals: 0,
            },
        ];
        for (offset, command) in commands.into_iter().enumerate() {
            let index = LogIndex(offset as u64 + 1);
            assert_eq!(
                plain.apply(index, Command::Lock(command.clone())),
                observed.apply(index, Command::Lock(command))
            );
        }
        assert_eq!(plain.locks().state(), observed.locks().state());
    }
}
