//! Suspicion confirmations (Lifeguard's idea, on top of foca): a member that independently
//! fails to reach a suspect, and hears that another member did too, declares it down sooner.
//!
//! foca declares a suspect down after a fixed `suspect_to_down` (1.5 s at `Timing::lan`).
//! foca starts that timer only at the member whose own probe failed; the others wait for its
//! `Down` gossip. ha-gossip adds an independent check:
//!
//! 1. the suspecting member sends [`VERIFY_PINGS`] `Verify` pings straight to the suspect; a
//!    live suspect answers each (and, told it is suspected, refutes at once through foca);
//! 2. if no answer came within `probe_rtt`, its check failed: it sends a `Confirm` to
//!    [`CONFIRM_FANOUT`] random members, which run the same check and answer with their own
//!    `Confirm` when it fails too;
//! 3. once its own check failed AND another member's `Confirm` arrived, it hands foca the
//!    down timer at once (about two `probe_rtt` after the suspicion instead of
//!    `suspect_to_down`), and foca gossips the down as usual.
//!
//! An unconfirmed suspicion runs the full `suspect_to_down` as before, so packet loss alone
//! cannot make things worse: a false down now needs foca's own failed probe (a ping and all
//! indirect pings lost) plus two members each losing all of their verify exchanges, while the
//! suspect's refutation is racing them. Any answer from the suspect cancels the hastening.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use foca::{Incarnation, Timer};
use ha_core::CodecError;
use ha_core::codec;
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
    /// foca's down timer, when foca itself suspects (its own probe failed). A check started by
    /// another member's `Confirm` has none: foca does not time out suspicions it only heard of.
    timer: Option<Timer<GossipIdentity>>,
    identity: GossipIdentity,
    incarnation: Incarnation,
    verification: Verification,
    /// Members whose own check failed (their `Confirm` arrived).
    confirmers: BTreeSet<SocketAddr>,
    /// Members we sent our `Confirm` to.
    told: BTreeSet<SocketAddr>,
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
    /// Start verifying: send the `Verify` pings and schedule the verification deadline.
    Verify {
        /// The suspect.
        member: GossipIdentity,
        /// Its suspected SWIM incarnation.
        incarnation: Incarnation,
    },
    /// Our verification failed: send `Confirm` to `to`, and to `fanout` random members more.
    Confirm {
        /// The suspect.
        member: GossipIdentity,
        /// Its suspected SWIM incarnation.
        incarnation: Incarnation,
        /// Members that asked (their own check failed).
        to: Vec<SocketAddr>,
        /// How many random members to tell as well.
        fanout: usize,
    },
    /// Deliver foca's down timer to foca now.
    Hasten {
        /// The foca timer.
        timer: Timer<GossipIdentity>,
    },
}

impl SuspicionTracker {
    /// foca scheduled `timer`; if it is a `ChangeSuspectToDown`, track the suspicion.
    pub(crate) fn on_scheduled(&mut self, timer: &Timer<GossipIdentity>) -> Vec<SuspicionStep> {
        let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = timer
        else {
            return Vec::new();
        };
        let addr = member_id.addr;
        if let Some(known) = self.suspects.get_mut(&addr)
            && known.identity == *member_id
            && known.incarnation == *incarnation
        {
            // A check another member asked for is under way: it now counts for foca's timer.
            known.timer = Some(timer.clone());
            return self.hasten(addr).into_iter().collect();
        }
        if self.start(member_id, *incarnation, Some(timer.clone())) {
            vec![SuspicionStep::Verify {
                member: member_id.clone(),
                incarnation: *incarnation,
            }]
        } else {
            Vec::new()
        }
    }

    fn start(
        &mut self,
        member: &GossipIdentity,
        incarnation: Incarnation,
        timer: Option<Timer<GossipIdentity>>,
    ) -> bool {
        if !self.suspects.contains_key(&member.addr) && self.suspects.len() >= MEMBERS_MAX {
            return false;
        }
        self.suspects.insert(
            member.addr,
            Suspicion {
                timer,
                identity: member.clone(),
                incarnation,
                verification: Verification::Pending,
                confirmers: BTreeSet::new(),
                told: BTreeSet::new(),
                hastened: false,
            },
        );
        true
    }

    /// A foca timer is being delivered: once its suspicion timer fires, forget the suspicion.
    pub(crate) fn on_delivered(&mut self, timer: &Timer<GossipIdentity>) {
        if let Timer::ChangeSuspectToDown { member_id, .. } = timer
            && self
                .suspects
                .get(&member_id.addr)
                .is_some_and(|known| known.timer.as_ref() == Some(timer))
        {
            self.suspects.remove(&member_id.addr);
        }
    }

    /// A check without a foca timer has outlived any use (its expiry timer fired).
    pub(crate) fn on_expired(&mut self, addr: SocketAddr) {
        if self
            .suspects
            .get(&addr)
            .is_some_and(|known| known.timer.is_none())
        {
            self.suspects.remove(&addr);
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
        let to: Vec<SocketAddr> = known.confirmers.difference(&known.told).copied().collect();
        known.told.extend(to.iter().copied());
        // foca's own suspicion asks a few members to check too; a check we do for others
        // only answers them.
        let fanout = if known.timer.is_some() {
            CONFIRM_FANOUT
        } else {
            0
        };
        let mut steps = vec![SuspicionStep::Confirm {
            member: known.identity.clone(),
            incarnation: known.incarnation,
            to,
            fanout,
        }];
        steps.extend(self.hasten(addr));
        steps
    }

    /// We sent our `Confirm` about the suspect at `addr` to `to`.
    pub(crate) fn told(&mut self, addr: SocketAddr, to: &[SocketAddr]) {
        if let Some(known) = self.suspects.get_mut(&addr) {
            for recipient in to {
                if known.told.len() < CONFIRMERS_MAX {
                    known.told.insert(*recipient);
                }
            }
        }
    }

    /// `from` says its own verification of `member` at `incarnation` failed (and asks us to
    /// check). Starts our own check if none runs; answers at once if ours already failed.
    pub(crate) fn on_confirm(
        &mut self,
        from: SocketAddr,
        member: &GossipIdentity,
        incarnation: Incarnation,
    ) -> Vec<SuspicionStep> {
        if from == member.addr {
            return Vec::new();
        }
        let tracked = self
            .suspects
            .get(&member.addr)
            .is_some_and(|known| known.identity == *member && known.incarnation == incarnation);
        let mut steps = Vec::new();
        if !tracked {
            if self
                .suspects
                .get(&member.addr)
                .is_some_and(|known| known.timer.is_some())
            {
                // foca's own suspicion of another identity or incarnation stands.
                return steps;
            }
            if !self.start(member, incarnation, None) {
                return steps;
            }
            steps.push(SuspicionStep::Verify {
                member: member.clone(),
                incarnation,
            });
        }
        let Some(known) = self.suspects.get_mut(&member.addr) else {
            return steps;
        };
        if known.confirmers.len() < CONFIRMERS_MAX {
            known.confirmers.insert(from);
        }
        if known.verification == Verification::Failed
            && !known.told.contains(&from)
            && known.told.len() < CONFIRMERS_MAX
        {
            known.told.insert(from);
            steps.push(SuspicionStep::Confirm {
                member: known.identity.clone(),
                incarnation: known.incarnation,
                to: vec![from],
                fanout: 0,
            });
        }
        steps.extend(self.hasten(member.addr));
        steps
    }

    /// The foca timer to deliver now, once our verification failed and another confirmed.
    fn hasten(&mut self, addr: SocketAddr) -> Option<SuspicionStep> {
        let known = self.suspects.get_mut(&addr)?;
        let timer = known.timer.clone()?;
        if known.hastened
            || known.verification != Verification::Failed
            || known.confirmers.is_empty()
        {
            return None;
        }
        known.hastened = true;
        Some(SuspicionStep::Hasten { timer })
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
        GossipIdentity::new(
            NodeId::new(format!("n{port}")).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], port)),
            1,
        )
    }

    fn down_timer(port: u16, incarnation: Incarnation) -> Timer<GossipIdentity> {
        Timer::ChangeSuspectToDown {
            member_id: identity(port),
            incarnation,
            token: TimerToken::default(),
        }
    }

    fn other() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn failed_verification_and_one_confirmation_hasten() {
        let mut tracker = SuspicionTracker::default();
        let timer = down_timer(5, 2);
        let verify = SuspicionStep::Verify {
            member: identity(5),
            incarnation: 2,
        };
        assert_eq!(tracker.on_scheduled(&timer), vec![verify]);
        // A second schedule of the same suspicion starts nothing new.
        assert_eq!(tracker.on_scheduled(&timer), vec![]);
        // A confirmation alone does not hasten: our own check is still pending.
        assert_eq!(tracker.on_confirm(other(), &identity(5), 2), vec![]);
        assert_eq!(
            tracker.on_deadline(identity(5).addr),
            vec![
                SuspicionStep::Confirm {
                    member: identity(5),
                    incarnation: 2,
                    to: vec![other()],
                    fanout: CONFIRM_FANOUT,
                },
                SuspicionStep::Hasten { timer }
            ]
        );
    }

    #[test]
    fn a_confirmation_starts_a_check_that_answers_the_asker() {
        let mut tracker = SuspicionTracker::default();
        assert_eq!(
            tracker.on_confirm(other(), &identity(5), 2),
            vec![SuspicionStep::Verify {
                member: identity(5),
                incarnation: 2
            }]
        );
        assert_eq!(
            tracker.on_deadline(identity(5).addr),
            vec![SuspicionStep::Confirm {
                member: identity(5),
                incarnation: 2,
                to: vec![other()],
                fanout: 0,
            }]
        );
        // Without foca's own timer nothing is hastened; the check expires.
        tracker.on_expired(identity(5).addr);
        assert_eq!(tracker.len(), 0);
    }

    #[test]
    fn an_answer_prevents_hastening() {
        let mut tracker = SuspicionTracker::default();
        tracker.on_scheduled(&down_timer(5, 2));
        tracker.on_answer(&identity(5));
        assert!(tracker.on_deadline(identity(5).addr).is_empty());
        assert_eq!(tracker.on_confirm(other(), &identity(5), 2), vec![]);
    }

    #[test]
    fn a_confirmation_about_another_incarnation_or_from_the_suspect_is_ignored() {
        let mut tracker = SuspicionTracker::default();
        tracker.on_scheduled(&down_timer(5, 2));
        tracker.on_deadline(identity(5).addr);
        assert_eq!(tracker.on_confirm(other(), &identity(5), 3), vec![]);
        assert_eq!(
            tracker.on_confirm(identity(5).addr, &identity(5), 2),
            vec![]
        );
    }

    #[test]
    fn delivery_of_the_timer_forgets_the_suspicion() {
        let mut tracker = SuspicionTracker::default();
        let timer = down_timer(5, 2);
        tracker.on_scheduled(&timer);
        tracker.on_delivered(&down_timer(5, 1));
        tracker.on_expired(identity(5).addr);
        assert_eq!(tracker.len(), 1);
        tracker.on_delivered(&timer);
        assert_eq!(tracker.len(), 0);
    }
}
