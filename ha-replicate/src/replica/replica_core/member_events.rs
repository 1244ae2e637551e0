//! Gossip's member events as a replica input, and the `bootstrap_expect` founding rule.
//!
//! The core owns the [`MembershipFeed`], so the founding decision is taken in one place for
//! the tokio driver and the simulators alike: on a member event, and on the housekeeping tick
//! for a founding set that settled without a new event. Neither caller can found by itself.

use ha_core::{MemberEvent, Millis, StateMachine};

use super::ReplicaCore;
use crate::membership_feed::PeerUpdate;
use crate::storage::LogStore;

impl<S: StateMachine, L: LogStore> ReplicaCore<S, L> {
    /// A gossip member event: the peer's facts (priority, health, reachability, whether it
    /// votes) reach the engine, then, with [`ReplicaSettings::bootstrap_expect`], a node that
    /// has never stored anything founds the cluster once the founding set has settled (a
    /// [`ReplicaEffect::Founded`](super::ReplicaEffect::Founded) says so).
    ///
    /// Returns the peer's update, whose `rpc_addr` the driver records in its address book;
    /// `None` for events about this node itself, or when the replica has stopped.
    ///
    /// [`ReplicaSettings::bootstrap_expect`]: crate::replica::ReplicaSettings::bootstrap_expect
    pub fn on_member_event(&mut self, now: Millis, event: &MemberEvent) -> Option<PeerUpdate> {
        if self.fatal.is_some() {
            return None;
        }
        let peer = self.feed.on_event(now, event)?;
        self.engine
            .set_peer_info(now, peer.node.clone(), peer.info.clone());
        self.found_if_due(now);
        self.after_input(now);
        Some(peer)
    }

    /// The founding rule ([`MembershipFeed::founding_voters`]): found now if the feed's set
    /// has settled and this node's log is empty in term 0. Not while storage is stalled: the
    /// founding entry could not be stored (it is retried on a later tick). Called on every
    /// member event and housekeeping tick; the caller carries out the engine's effects.
    ///
    /// [`MembershipFeed::founding_voters`]: crate::membership_feed::MembershipFeed::founding_voters
    pub(super) fn found_if_due(&mut self, now: Millis) {
        if self.stall.is_some() {
            return;
        }
        let due = self
            .feed
            .founding_voters(now, self.engine.last_index(), self.engine.term());
        if let Some(voters) = due {
            self.found(now, voters);
        }
    }
}
