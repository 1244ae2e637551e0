//! Suspicion confirmations (Lifeguard's idea, on top of foca): a member that independently
//! fails to reach a suspect, and hears that another member did too, declares it down sooner.
//!
//! foca declares a suspect down after a fixed `suspect_to_down` (1.5 s at `Timing::lan`).
//! When a member starts suspecting another (foca schedules its `ChangeSuspectToDown` timer),
//! ha-gossip checks for itself:
//!
//! 1. it sends [`VERIFY_PINGS`] `Verify` pings straight to the suspect; a live suspect answers
//!    each (and, told it is suspected, refutes at once through foca);
//! 2. if no answer came within `probe_rtt`, its own verification failed: it sends a `Confirm`
//!    to [`CONFIRM_FANOUT`] random members;
//! 3. once its own verification failed AND at least one other member's `Confirm` arrived, it
//!    hands foca the suspicion timer at once (at the earliest `probe_rtt` after the suspicion
//!    began, when its own verification ended).
//!
//! An unconfirmed suspicion runs the full `suspect_to_down` as before, so packet loss alone
//! cannot make things worse: a false down now needs foca's own failed probe (a ping and all
//! indirect pings lost) plus two members each losing all of their verify exchanges, while the
//! suspect's refutation is racing them. Any answer from the suspect cancels the hastening.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use foca::{Incarnation, Timer};
use ha_core::codec;
use ha_core::CodecError;
use serde::{Deserialize, Serialize};

use crate::anti_entropy::ANTI_ENTROPY_BYTES_MAX;
use crate::identity::GossipIdentity;
use crate::members::MEMBERS_MAX;

/// Verify pings sent to a suspect at once (each lost independently; all must fail).
pub const VERIFY_PINGS: usize = 3;

/// Members told, at random, that this member's own verification of a suspect failed.
pub const CONFIRM_FANOUT: usize = 4;

/// Distinct confirmers remembered per suspect (one is enough to hasten; more are not needed).
const CONFIRMERS_MAX: usize = 8;

/// One suspicion message (the body of a [`crate::PacketKind::Suspicion`] packet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SuspicionMessage {
    /// To a suspect: are you there? `incarnation` is the SWIM incarnation being suspected, so
    /// the suspect can refute it without waiting for the gossip.
    Verify {
        /// The suspected identity.
        member: GossipIdentity,
        /// Its suspected SWIM incarnation.
        incarnation: Incarnation,
    },
    /// The suspect's answer to a `Verify` about its current identity.
    VerifyAck {
        /// The answering identity.
        member: GossipIdentity,
    },
    /// The sender's own verification of `member` failed.
    Confirm {
        /// The suspected identity.
        member: GossipIdentity,
        /// Its suspected SWIM incarnation.
        incarnation: Incarnation,
    },
}

impl SuspicionMessage {
    /// Encode within one gossip packet.
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] when it does not fit (a node id longer than a packet).
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("suspicion message", self, ANTI_ENTROPY_BYTES_MAX)
    }

    /// Decode one message.
    ///
    /// # Errors
    /// [`CodecError`] on malformed or oversized input.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode("suspicion message", bytes, ANTI_ENTROPY_BYTES_MAX)
    }
}

/// Where this member's own check of a suspect stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verification {
    /// Pings sent, no answer yet.
    Pending,
    /// The suspect answered: it is alive; never hasten.
    Answered,
    /// No answer within the deadline.
    Failed,
}

#[derive(Clone, Debug)]
struct Suspicion {
    timer: Timer<GossipIdentity>,
    identity: GossipIdentity,
    incarnation: Incarnation,
    verification: Verification,
    confirmers: BTreeSet<SocketAddr>,
    hastened: bool,
}

/// The suspects this member is checking, by gossip address.
#[derive(Debug, Default)]
pub(crate) struct SuspicionTracker {
    suspects: BTreeMap<SocketAddr, Suspicion>,
}

/// What the core must do after a tracker input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SuspicionStep {
    /// Nothing.
    None,
    /// Start verifying: send the `Verify` pings and schedule the verification deadline.
    Verify {
        /// The suspect.
        member: GossipIdentity,
        /// Its suspected SWIM incarnation.
        incarnation: Incarnation,
    },
    /// Our verification failed: tell a few members.
    Confirm {
        /// The suspect.
        member: GossipIdentity,
        /// Its suspected SWIM incarnation.
        incarnation: Incarnation,
    },
    /// Deliver foca's down timer to foca now.
    Hasten {
        /// The foca timer.
        timer: Timer<GossipIdentity>,
    },
}

impl SuspicionTracker {
    /// foca scheduled `timer`; if it is a `ChangeSuspectToDown`, track the suspicion.
    pub(crate) fn on_scheduled(&mut self, timer: &Timer<GossipIdentity>) -> SuspicionStep {
        let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = timer
        else {
            return SuspicionStep::None;
        };
        let addr = member_id.addr;
        if let Some(known) = self.suspects.get(&addr)
            && known.identity == *member_id
            && known.incarnation == *incarnation
        {
            return SuspicionStep::None;
        }
        if !self.suspects.contains_key(&addr) && self.suspects.len() >= MEMBERS_MAX {
            return SuspicionStep::None;
        }
        self.suspects.insert(
            addr,
            Suspicion {
                timer: timer.clone(),
                identity: member_id.clone(),
                incarnation: *incarnation,
                verification: Verification::Pending,
                confirmers: BTreeSet::new(),
                hastened: false,
            },
        );
        SuspicionStep::Verify {
            member: member_id.clone(),
            incarnation: *incarnation,
        }
    }

    /// A foca timer is being delivered: once its suspicion timer fires, forget the suspicion.
    pub(crate) fn on_delivered(&mut self, timer: &Timer<GossipIdentity>) {
        if let Timer::ChangeSuspectToDown { member_id, .. } = timer
            && self
                .suspects
                .get(&member_id.addr)
                .is_some_and(|known| known.timer == *timer)
        {
            self.suspects.remove(&member_id.addr);
        }
    }

    /// The suspect at `addr` answered a `Verify` as `member`.
    pub(crate) fn on_answer(&mut self, member: &GossipIdentity) {
        if let Some(known) = self.suspects.get_mut(&member.addr)
            && known.identity == *member
        {
            known.verification = Verification::Answered;
        }
    }

    /// The verification deadline for `addr` passed.
    pub(crate) fn on_deadline(&mut self, addr: SocketAddr) -> Vec<SuspicionStep> {
        let Some(known) = self.suspects.get_mut(&addr) else {
            return Vec::new();
        };
        if known.verification != Verification::Pending {
            return Vec::new();
        }
        known.verification = Verification::Failed;
        let confirm = SuspicionStep::Confirm {
            member: known.identity.clone(),
            incarnation: known.incarnation,
        };
        let mut steps = vec![confirm];
        steps.extend(self.hasten(addr));
        steps
    }

    /// `from` says its own verification of `member` at `incarnation` failed.
    pub(crate) fn on_confirm(
        &mut self,
        from: SocketAddr,
        member: &GossipIdentity,
        incarnation: Incarnation,
    ) -> Option<SuspicionStep> {
        let known = self.suspects.get_mut(&member.addr)?;
        if known.identity != *member || known.incarnation != incarnation || from == member.addr {
            return None;
        }
        if known.confirmers.len() < CONFIRMERS_MAX {
            known.confirmers.insert(from);
        }
        self.hasten(member.addr)
    }

    /// The foca timer to deliver now, once our verification failed and another confirmed.
    fn hasten(&mut self, addr: SocketAddr) -> Option<SuspicionStep> {
        let known = self.suspects.get_mut(&addr)?;
        if known.hastened
            || known.verification != Verification::Failed
            || known.confirmers.is_empty()
        {
            return None;
        }
        known.hastened = true;
        Some(SuspicionStep::Hasten {
            timer: known.timer.clone(),
        })
    }

    /// How many suspicions are tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.suspects.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::TimerToken;
    use ha_core::NodeId;

    fn identity(port: u16) -> GossipIdentity {
        GossipIdentity {
            node_id: NodeId::new(format!("n{port}")).unwrap(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            incarnation: 1,
        }
    }

    fn down_timer(port: u16, incarnation: Incarnation) -> Timer<GossipIdentity> {
        Timer::ChangeSuspectToDown {
            member_id: identity(port),
            incarnation,
            token: TimerToken::default(),
        }
    }

    #[test]
    fn failed_verification_and_one_confirmation_hasten() {
        let mut tracker = SuspicionTracker::default();
        let timer = down_timer(5, 2);
        assert_eq!(
            tracker.on_scheduled(&timer),
            SuspicionStep::Verify {
                member: identity(5),
                incarnation: 2
            }
        );
        // A second schedule of the same suspicion starts nothing new.
        assert_eq!(
            tracker.on_scheduled(&timer),
            SuspicionStep::None
        );
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // A confirmation alone does not hasten: our own check is still pending.
        assert_eq!(
            tracker.on_confirm(other, &identity(5), 2),
            None
        );
        let steps = tracker.on_deadline(identity(5).addr);
        assert_eq!(
            steps,
            vec![
                SuspicionStep::Confirm {
                    member: identity(5),
                    incarnation: 2
                },
                SuspicionStep::Hasten { timer }
            ]
        );
    }

    #[test]
    fn an_answer_prevents_hastening() {
        let mut tracker = SuspicionTracker::default();
        let timer = down_timer(5, 2);
        tracker.on_scheduled(&timer);
        tracker.on_answer(&identity(5));
        assert!(tracker.on_deadline(identity(5).addr).is_empty());
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            tracker.on_confirm(other, &identity(5), 2),
            None
        );
    }

    #[test]
    fn a_confirmation_about_another_incarnation_or_from_the_suspect_is_ignored() {
        let mut tracker = SuspicionTracker::default();
        tracker.on_scheduled(&down_timer(5, 2));
        tracker.on_deadline(identity(5).addr);
        let other: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            tracker.on_confirm(other, &identity(5), 3),
            None
        );
        assert_eq!(
            tracker.on_confirm(identity(5).addr, &identity(5), 2),
            None
        );
    }

    #[test]
    fn delivery_of_the_timer_forgets_the_suspicion() {
        let mut tracker = SuspicionTracker::default();
        let timer = down_timer(5, 2);
        tracker.on_scheduled(&timer);
        tracker.on_delivered(&down_timer(5, 1));
        assert_eq!(tracker.len(), 1);
        tracker.on_delivered(&timer);
        assert_eq!(tracker.len(), 0);
    }
}
