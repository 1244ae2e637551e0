//! A QUORUM write's answer, decided where its entry is applied (issue 17, sequential write
//! latency).
//!
//! A QUORUM write is answered once its entry is committed (durable on a majority) and applied
//! on this node. The core hands committed entries to the [`ApplyWorker`] only, so everything
//! that decides the answer is known when the entry is handed out except the outcome of
//! applying it: the core hands the worker a [`ReplyRoute`] (who waits, and the term the write
//! was proposed in) with the entries, and the worker answers as soon as it has applied the
//! entry ([`RoutedReply`]), with the same rule the core uses for the writes it answers itself
//! ([`applied_outcome`]). The tokio driver's apply thread thus answers the caller directly,
//! instead of sending the outcome back to the replica loop to answer: one thread hop less on
//! every write's critical path.
//!
//! Only writes whose answer needs nothing else are routed: QUORUM writes of a local caller
//! whose entry is durable on this node when it is handed out (an answer has always waited for
//! this node's own sync as well as the majority's, and still does). A STRONG write waits for
//! every voter after it is applied, a forwarded write's answer is a message to the follower
//! that forwarded it, an EVENTUAL write was answered when it was appended, and a write the
//! other voters committed before this node's own sync completed waits for that sync in the
//! durability gate: those stay with the core.
//!
//! The route does not take the answer away from the core: the write stays pending there until
//! the worker's result comes back, so a deadline, a lost quorum, a snapshot from the leader or
//! a storage failure still answers it as before. Whichever answer comes first is the one the
//! caller gets (the driver shares the caller's channel between its loop and the apply thread:
//! `driver/reply_slot.rs`); the other is dropped.
//!
//! [`ApplyWorker`]: crate::replica::ApplyWorker

use ha_core::{LogIndex, Term};

use crate::replica::apply_worker::AppliedCommand;
use crate::replica::client::{ClientError, ClientReply};
use crate::replica::session::ApplyOutcome;

/// Who waits for the write at `index`, handed to the apply worker with its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyRoute {
    /// The id the driver gave the caller's request ([`ReplicaEffect::Reply`]'s).
    ///
    /// [`ReplicaEffect::Reply`]: crate::replica::ReplicaEffect::Reply
    pub request_id: u64,
    /// The write's index.
    pub index: LogIndex,
    /// The term the write was proposed in: the entry applied at `index` is this write only if
    /// it is of this term.
    pub term: Term,
}

/// A routed write's answer, as the worker decided it after applying the entry.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutedReply {
    /// The write it answers.
    pub route: ReplyRoute,
    /// The answer, until whoever delivers it takes it: the driver's apply thread takes it on
    /// the spot; a core that runs its worker itself (inline or deferred) emits it as a
    /// [`ReplicaEffect::Reply`](crate::replica::ReplicaEffect::Reply).
    pub reply: Option<ClientReply>,
}

impl RoutedReply {
    /// The answer to the write `route` names, `command` being what applying its index
    /// produced (absent when the entry there carried no command, or was applied before).
    pub(crate) fn decide(route: ReplyRoute, command: Option<&AppliedCommand>) -> Self {
        let reply = match applied_outcome(route.term, command) {
            Some(outcome) => ClientReply::Written {
                index: route.index,
                outcome,
            },
            None => ClientReply::Failed(ClientError::LeadershipLost),
        };
        Self {
            route,
            reply: Some(reply),
        }
    }
}

/// What applying a write proposed in `proposed_term` produced, or `None` when the entry
/// applied at its index is not that write: another leader's entry took the index (or the
/// index was covered by a snapshot), so this write's fate is unknown here (`LeadershipLost`).
/// The one rule for every consistency level, routed or not.
pub(crate) fn applied_outcome(
    proposed_term: Term,
    command: Option<&AppliedCommand>,
) -> Option<ApplyOutcome> {
    command
        .filter(|command| command.term == proposed_term)
        .map(|command| command.outcome.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(term: u64) -> ReplyRoute {
        ReplyRoute {
            request_id: 7,
            index: LogIndex(5),
            term: Term(term),
        }
    }

    fn applied(term: u64) -> AppliedCommand {
        AppliedCommand {
            index: LogIndex(5),
            term: Term(term),
            outcome: ApplyOutcome::Applied(vec![1, 2]),
        }
    }

    #[test]
    fn the_write_applied_in_its_own_term_is_answered_with_its_outcome() {
        let routed = RoutedReply::decide(route(3), Some(&applied(3)));
        assert_eq!(
            routed.reply,
            Some(ClientReply::Written {
                index: LogIndex(5),
                outcome: ApplyOutcome::Applied(vec![1, 2]),
            })
        );
    }

    #[test]
    fn another_leaders_entry_at_the_index_is_leadership_lost() {
        let routed = RoutedReply::decide(route(3), Some(&applied(4)));
        assert_eq!(
            routed.reply,
            Some(ClientReply::Failed(ClientError::LeadershipLost))
        );
    }

    #[test]
    fn no_command_at_the_index_is_leadership_lost() {
        let routed = RoutedReply::decide(route(3), None);
        assert_eq!(
            routed.reply,
            Some(ClientReply::Failed(ClientError::LeadershipLost))
        );
    }
}
