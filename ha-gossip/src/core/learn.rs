//! Members learned out of band: [`GossipCore::learn_members`].

use foca::{Member, OwnedNotification};
use ha_core::{MemberInfo, Millis};

use super::GossipCore;
use crate::identity::GossipIdentity;
use crate::members::MEMBERS_MAX;
use crate::metadata::MetadataAnnouncement;

impl GossipCore {
    /// Take in members learned out of band, as if each had been seen alive: a member list an
    /// earlier run of this node saved (what [`members`](Self::members) returned), one read from
    /// a file, or a whole cluster built at once by a simulator (a warm start: 10,000 members
    /// without simulating their N² join).
    ///
    /// - Only reachable entries are taken, and at most [`MEMBERS_MAX`]; this node's own address
    ///   is skipped.
    /// - foca learns them without disseminating them (`apply_many` with `do_broadcast =
    ///   false`): the cluster is assumed to know them already. A member that is in fact gone is
    ///   probed, suspected and declared unreachable as usual; one that restarted since is
    ///   replaced by its newer incarnation when it is heard from (foca's rename), and an entry
    ///   older than the identity this node holds loses to it.
    /// - Unlike a member seen up by gossip, a learned member is not sent this node's metadata
    ///   directly (a warm start of N members would send N² packets at once): it gets it from
    ///   the broadcast this node makes on becoming active, and from the periodic refresh.
    /// - An entry's metadata is taken as an announcement would be (only if newer than what is
    ///   held), so the usual [`MemberEvent`](ha_core::MemberEvent)s follow: `Up` for each new
    ///   member, `Updated` for newer metadata.
    ///
    /// Returns how many entries were taken (reachable, not this node). Does nothing after
    /// [`leave`](Self::leave).
    ///
    /// ```
    /// use ha_core::{Config, MemberInfo, Millis, NodeId, NodeMetadata, Priority};
    /// use ha_gossip::{GossipCore, GossipSettings};
    ///
    /// let config = Config::single(NodeId::new("n1")?, "127.0.0.1:7101".parse()?);
    /// let metadata = NodeMetadata::new(Priority(1), config.bind_addr);
    /// let mut core = GossipCore::new(GossipSettings::from_config(&config, 1, metadata), 7)?;
    /// let saved = MemberInfo {
    ///     id: NodeId::new("n2")?,
    ///     gossip_addr: "127.0.0.1:7102".parse()?,
    ///     incarnation: 1,
    ///     metadata: None,
    ///     reachable: true,
    /// };
    /// assert_eq!(core.learn_members(Millis(0), [&saved]), 1);
    /// assert_eq!(core.reachable_count(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn learn_members<'a>(
        &mut self,
        now: Millis,
        members: impl IntoIterator<Item = &'a MemberInfo>,
    ) -> usize {
        let _span =
            tracing::debug_span!("gossip_learn", node = %self.identity().node_id, %now).entered();
        if self.left {
            return 0;
        }
        let own = self.identity().addr;
        let mut identities = Vec::new();
        let mut announcements = Vec::new();
        let taken_members = members
            .into_iter()
            .filter(|member| member.reachable && member.gossip_addr != own)
            .take(MEMBERS_MAX);
        for member in taken_members {
            let identity =
                GossipIdentity::new(member.id.clone(), member.gossip_addr, member.incarnation);
            if let Some(metadata) = &member.metadata {
                announcements.push(MetadataAnnouncement::new(&identity, metadata.clone()));
            }
            identities.push(identity);
        }
        let taken = identities.len();
        if let Err(error) = self.swim.apply_many(
            identities.into_iter().map(Member::alive),
            false,
            &mut self.runtime,
        ) {
            tracing::debug!(%error, "learned members refused");
        }
        // Each new member's `Up` without a join's direct metadata send (see above); the other
        // notifications (becoming active, renames) as usual.
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(identity) => {
                    if let Some(event) = self.table_owner().members.on_up(&identity) {
                        self.publish(event);
                    }
                }
                other => self.on_notification(other),
            }
        }
        // After the `Up`s, so metadata attaches to known members instead of waiting as early.
        for announcement in announcements {
            self.table_owner().offer(announcement);
        }
        self.pump();
        taken
    }

    /// How many known members (reachable or not) this node holds no metadata for yet: each
    /// member's metadata arrives by its own announcements, after the member itself.
    pub fn members_without_metadata(&self) -> usize {
        self.table().without_metadata()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use ha_core::{MemberEvent, NodeId, NodeMetadata, NodeState, Priority, Timing};

    use super::*;
    use crate::{Envelope, GossipEffect, GossipSettings, GossipTimer, PacketKind};

    const CLUSTER: &str = "learn";

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn core(port: u16) -> GossipCore {
        let settings = GossipSettings {
            identity: GossipIdentity::new(NodeId::new(format!("n{port}")).unwrap(), addr(port), 1),
            cluster_name: String::from(CLUSTER),
            cluster_keys: Vec::new(),
            seeds: Vec::new(),
            timing: Timing::lan(),
            metadata: NodeMetadata::new(Priority(1), addr(port)),
            cluster_size_hint: 4,
            shared_state: Default::default(),
        };
        GossipCore::new(settings, u64::from(port)).unwrap()
    }

    fn saved(port: u16, incarnation: u64, metadata: Option<NodeMetadata>) -> MemberInfo {
        MemberInfo {
            id: NodeId::new(format!("n{port}")).unwrap(),
            gossip_addr: addr(port),
            incarnation,
            metadata,
            reachable: true,
        }
    }

    fn active(port: u16, sequence: u64) -> NodeMetadata {
        let mut metadata = NodeMetadata::new(Priority(1), addr(port));
        metadata.state = NodeState::Active;
        metadata.sequence = sequence;
        metadata
    }

    /// The kinds of the packets among `effects`, by destination.
    fn sent_kinds(effects: &[GossipEffect]) -> BTreeMap<SocketAddr, Vec<PacketKind>> {
        let envelope = Envelope::new(CLUSTER, None);
        let mut kinds: BTreeMap<SocketAddr, Vec<PacketKind>> = BTreeMap::new();
        for effect in effects {
            if let GossipEffect::Send { to, packet } = effect {
                let (kind, _) = envelope.unwrap(packet).unwrap();
                kinds.entry(*to).or_default().push(kind);
            }
        }
        kinds
    }

    #[test]
    fn learned_members_are_reachable_with_their_metadata_and_not_disseminated() {
        let mut core = core(1);
        let _ = core.drain_effects();
        let members = vec![
            saved(2, 5, Some(active(2, 1))),
            saved(3, 6, None),
            // Skipped: this node, and an unreachable entry.
            saved(1, 1, None),
            MemberInfo {
                reachable: false,
                ..saved(4, 1, None)
            },
        ];
        assert_eq!(core.learn_members(Millis(0), &members), 2);

        assert_eq!(core.reachable_count(), 2);
        assert_eq!(core.member(&addr(2)).unwrap(), members[0]);
        assert_eq!(core.member(&addr(3)).unwrap().metadata, None);
        assert!(core.member(&addr(4)).is_none());
        assert_eq!(core.members_without_metadata(), 1);
        // Nothing learned waits to be disseminated: the cluster is assumed to know it.
        assert_eq!(core.dissemination_backlog().0, 0);

        let effects = core.drain_effects();
        let events: Vec<&MemberEvent> = effects
            .iter()
            .filter_map(|effect| match effect {
                GossipEffect::Event(event) => Some(event),
                _ => None,
            })
            .collect();
        let ups: Vec<SocketAddr> = events
            .iter()
            .filter_map(|event| match event {
                MemberEvent::Up(member) => Some(member.gossip_addr),
                _ => None,
            })
            .collect();
        assert_eq!(ups, vec![addr(2), addr(3)]);
        assert!(
            events
                .iter()
                .any(|event| matches!(event, MemberEvent::SelfActive))
        );
        assert!(events.iter().any(
            |event| matches!(event, MemberEvent::Updated(member) if member.gossip_addr == addr(2))
        ));
        // No direct metadata packet: only SWIM's (the broadcast on becoming active).
        for (to, kinds) in sent_kinds(&effects) {
            assert!(
                kinds.iter().all(|kind| *kind == PacketKind::Swim),
                "to {to}: {kinds:?}"
            );
        }
        // Becoming active bumped this node's own metadata.
        assert_eq!(core.metadata().state, NodeState::Active);
    }

    #[test]
    fn learning_again_adds_only_news() {
        let mut core = core(1);
        assert_eq!(core.learn_members(Millis(0), [&saved(2, 5, None)]), 1);
        let _ = core.drain_effects();
        // The same member with metadata: no second `Up`, one `Updated`.
        assert_eq!(
            core.learn_members(Millis(1), [&saved(2, 5, Some(active(2, 1)))]),
            1
        );
        let events: Vec<GossipEffect> = core.drain_effects();
        assert_eq!(
            events,
            vec![GossipEffect::Event(MemberEvent::Updated(saved(
                2,
                5,
                Some(active(2, 1))
            )))]
        );
        // Stale metadata and an older incarnation change nothing.
        assert_eq!(
            core.learn_members(
                Millis(2),
                [&saved(2, 5, Some(active(2, 0))), &saved(2, 4, None)]
            ),
            2
        );
        assert_eq!(core.drain_effects(), Vec::new());
        assert_eq!(core.member(&addr(2)).unwrap().incarnation, 5);
        // A newer incarnation replaces the old one (foca's rename).
        assert_eq!(core.learn_members(Millis(3), [&saved(2, 6, None)]), 1);
        assert_eq!(core.member(&addr(2)).unwrap().incarnation, 6);
        assert_eq!(core.reachable_count(), 1);
    }

    #[test]
    fn nothing_is_learned_after_leaving() {
        let mut core = core(1);
        core.leave(Millis(0));
        assert_eq!(core.learn_members(Millis(1), [&saved(2, 5, None)]), 0);
        assert_eq!(core.reachable_count(), 0);
    }

    /// A learned member that never answers (a stale entry of a saved list) is probed,
    /// suspected and declared unreachable, as one met by gossip would be.
    #[test]
    fn a_learned_member_that_is_gone_is_declared_unreachable() {
        let mut core = core(1);
        assert_eq!(core.learn_members(Millis(0), [&saved(2, 5, None)]), 1);
        // Deliver timers in deadline order (ties in scheduling order); drop every packet.
        let mut timers: Vec<(u64, u64, GossipTimer)> = Vec::new();
        let mut scheduled = 0u64;
        let mut now = 0u64;
        let limit_ms = 30_000;
        let mut unreachable_at = None;
        for _step in 0..10_000 {
            for effect in core.drain_effects() {
                match effect {
                    GossipEffect::Schedule { after_ms, timer } => {
                        timers.push((now + after_ms, scheduled, timer));
                        scheduled += 1;
                    }
                    GossipEffect::Event(MemberEvent::Unreachable(member)) => {
                        assert_eq!(member.gossip_addr, addr(2));
                        unreachable_at = Some(now);
                    }
                    _ => {}
                }
            }
            if unreachable_at.is_some() || timers.is_empty() {
                break;
            }
            let next = (0..timers.len())
                .min_by_key(|&index| (timers[index].0, timers[index].1))
                .unwrap();
            let (due, _, timer) = timers.swap_remove(next);
            assert!(
                due <= limit_ms,
                "not declared unreachable within {limit_ms} ms"
            );
            now = due;
            core.on_timer(Millis(now), timer);
        }
        let at = unreachable_at.expect("the gone member was declared unreachable");
        let timing = Timing::lan();
        // First probe after one period, then the probe round trip and the suspicion.
        assert!(
            at >= timing.gossip_probe_period_ms + timing.gossip_suspect_to_down_ms,
            "declared unreachable too early, at {at} ms"
        );
        assert!(!core.member(&addr(2)).unwrap().reachable);
    }
}
