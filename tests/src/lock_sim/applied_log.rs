//! What the cluster applied, index by index, and when it was first applied anywhere.

use std::collections::BTreeMap;

use ha_core::{LogIndex, Millis, codec};
use ha_lock::{Command, LockCommand, LockResponse, Response, WithLocks};
use ha_replicate::entry::{Entry, Payload};
use ha_replicate::replica::{Applier, ApplyOutcome, SessionCommand};

/// The first time any node applied an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstApply {
    /// Virtual time of the first apply.
    pub at: Millis,
    /// The node that applied it first.
    pub node: usize,
    /// The entry.
    pub entry: Entry,
}

/// Every entry any node applied, by index, with the virtual time it was first applied, and
/// every index at which two nodes applied different entries.
///
/// Nodes report to it after each input (see [`SimLockNode`](crate::lock_sim::SimLockNode)).
/// The leader applies an entry in the same input in which it learns that the entry committed,
/// so the first report of an index is when it took effect: the time lock-holder and lease
/// invariants need. Bounded by the length of the run's log.
#[derive(Debug, Default)]
pub struct AppliedLog {
    entries: BTreeMap<u64, FirstApply>,
    disagreements: Vec<String>,
}

/// Most disagreements kept (the first one is what matters).
const DISAGREEMENTS_MAX: usize = 16;

impl AppliedLog {
    /// `node` applied `entry` at virtual time `at`.
    pub fn record(&mut self, node: usize, at: Millis, entry: &Entry) {
        match self.entries.get(&entry.index.0) {
            Some(first) if first.entry != *entry => {
                if self.disagreements.len() < DISAGREEMENTS_MAX {
                    self.disagreements.push(format!(
                        "index {}: n{} applied {:?} (term {}) at {}, n{node} applied {:?} (term {}) at {at}",
                        entry.index,
                        first.node,
                        first.entry.payload,
                        first.entry.term,
                        first.at,
                        entry.payload,
                        entry.term
                    ));
                }
            }
            Some(_) => {}
            None => {
                self.entries.insert(
                    entry.index.0,
                    FirstApply {
                        at,
                        node,
                        entry: entry.clone(),
                    },
                );
            }
        }
    }

    /// Indexes at which two nodes applied different entries, described.
    pub fn disagreements(&self) -> &[String] {
        &self.disagreements
    }

    /// How many indexes were applied somewhere.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was applied.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first apply of `index`.
    pub fn first_apply(&self, index: u64) -> Option<&FirstApply> {
        self.entries.get(&index)
    }

    /// Replay every applied entry, in index order, through a fresh reference
    /// [`Applier<WithLocks<()>>`] (the same code each node runs), and return each lock command
    /// with its session stamp, the time it first took effect, and what applying it did
    /// (including whether the session layer dropped it as a duplicate).
    ///
    /// # Errors
    /// A gap in the applied indexes (some index no node was seen applying), or an entry that
    /// does not decode as a lock command.
    pub fn replay(&self) -> Result<Vec<AppliedLockCommand>, String> {
        let mut applier = Applier::new(WithLocks::new(()));
        let mut commands = Vec::new();
        for (expected, (index, first)) in (1u64..).zip(&self.entries) {
            if *index != expected {
                return Err(format!(
                    "no node was seen applying index {expected} (next applied: {index})"
                ));
            }
            let outcome = applier.apply(&first.entry);
            let Payload::Command(bytes) = &first.entry.payload else {
                continue;
            };
            let stamped =
                SessionCommand::decode(bytes).map_err(|error| format!("index {index}: {error}"))?;
            let command: Command<()> =
                codec::decode("lock command", &stamped.command, stamped.command.len())
                    .map_err(|error| format!("index {index}: {error}"))?;
            let Command::Lock(command) = command else {
                continue;
            };
            let result = match outcome {
                Some(ApplyOutcome::Applied(bytes)) => {
                    match codec::decode::<Response<()>>("lock response", &bytes, bytes.len()) {
                        Ok(Response::Lock(response)) => AppliedResult::Applied(response),
                        other => {
                            return Err(format!("index {index}: undecodable response {other:?}"));
                        }
                    }
                }
                Some(ApplyOutcome::Duplicate(_)) => AppliedResult::Duplicate,
                Some(ApplyOutcome::Stale { .. }) => AppliedResult::Stale,
                other => return Err(format!("index {index}: unexpected outcome {other:?}")),
            };
            commands.push(AppliedLockCommand {
                index: LogIndex(*index),
                at: first.at,
                session: stamped.session.0,
                sequence: stamped.sequence,
                command,
                result,
            });
        }
        Ok(commands)
    }
}

/// What applying a logged lock command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppliedResult {
    /// The lock table applied it and answered this.
    Applied(LockResponse),
    /// A retry of the session's latest write: not applied again.
    Duplicate,
    /// Older than the session's latest write: not applied.
    Stale,
}

/// One lock command in the log, as the reference replay saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedLockCommand {
    /// Its index.
    pub index: LogIndex,
    /// Virtual time it was first applied, on any node.
    pub at: Millis,
    /// The replication session that wrote it.
    pub session: u64,
    /// Its sequence in that session.
    pub sequence: u64,
    /// The command.
    pub command: LockCommand,
    /// What applying it did.
    pub result: AppliedResult,
}
