//! The local view of the cluster, and the events that changes to it produce.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ha_core::{MemberEvent, MemberInfo, NodeState};

use crate::identity::GossipIdentity;
use crate::metadata::MetadataAnnouncement;

/// Most members the table holds (reachable or not). Beyond this, new members are ignored and
/// logged; the limit is far above any cluster ha is meant for.
pub const MEMBERS_MAX: usize = 65_536;

/// Members by gossip address, plus metadata that arrived before its member was seen alive.
#[derive(Debug, Default)]
pub(crate) struct MemberTable {
    members: BTreeMap<SocketAddr, MemberInfo>,
    early_metadata: BTreeMap<SocketAddr, MetadataAnnouncement>,
}

impl MemberTable {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.values()
    }

    pub(crate) fn get(&self, addr: &SocketAddr) -> Option<&MemberInfo> {
        self.members.get(addr)
    }

    pub(crate) fn reachable_addrs(&self) -> Vec<SocketAddr> {
        self.members
            .values()
            .filter(|member| member.reachable)
            .map(|member| member.gossip_addr)
            .collect()
    }

    /// foca says `identity` is alive.
    pub(crate) fn on_up(&mut self, identity: &GossipIdentity) -> Option<MemberEvent> {
        if !self.members.contains_key(&identity.addr) && self.members.len() >= MEMBERS_MAX {
            tracing::warn!(addr = %identity.addr, "member table full; ignoring new member");
            return None;
        }
        let early = self
            .early_metadata
            .remove(&identity.addr)
            .filter(|announcement| announcement.incarnation >= identity.incarnation);
        let member = self
            .members
            .entry(identity.addr)
            .or_insert_with(|| MemberInfo {
                id: identity.node_id.clone(),
                gossip_addr: identity.addr,
                incarnation: identity.incarnation,
                metadata: None,
                reachable: true,
            });
        if member.incarnation != identity.incarnation {
            member.metadata = None;
        }
        member.id = identity.node_id.clone();
        member.incarnation = identity.incarnation;
        member.reachable = true;
        if let Some(announcement) = early {
            member.metadata = Some(announcement.metadata);
        }
        Some(MemberEvent::Up(member.clone()))
    }

    /// foca declared `identity` down. A member that announced LEAVING is gone; any other is
    /// unreachable until it answers again.
    pub(crate) fn on_down(&mut self, identity: &GossipIdentity) -> Option<MemberEvent> {
        let member = self.members.get_mut(&identity.addr)?;
        if member.incarnation > identity.incarnation {
            return None;
        }
        let leaving = member
            .metadata
            .as_ref()
            .is_some_and(|metadata| metadata.state == NodeState::Leaving);
        if leaving {
            let mut member = self.members.remove(&identity.addr)?;
            member.reachable = false;
            return Some(MemberEvent::Left(member));
        }
        member.reachable = false;
        Some(MemberEvent::Unreachable(member.clone()))
    }

    /// foca replaced an identity with a newer one at the same address (a restart or renewal).
    pub(crate) fn on_rename(&mut self, new: &GossipIdentity) {
        if let Some(member) = self.members.get_mut(&new.addr) {
            if member.incarnation != new.incarnation {
                member.metadata = None;
            }
            member.id = new.node_id.clone();
            member.incarnation = new.incarnation;
        }
    }

    /// Metadata arrived. Returns the event to publish, if the member is known and it changed.
    pub(crate) fn on_metadata(
        &mut self,
        announcement: MetadataAnnouncement,
    ) -> Option<MemberEvent> {
        let Some(member) = self.members.get_mut(&announcement.addr) else {
            if self.early_metadata.len() < MEMBERS_MAX {
                self.early_metadata.insert(announcement.addr, announcement);
            }
            return None;
        };
        let current = member
            .metadata
            .as_ref()
            .map(|metadata| (member.incarnation, metadata.sequence));
        if announcement.incarnation < member.incarnation
            || current.is_some_and(|version| announcement.version() <= version)
        {
            return None;
        }
        if announcement.incarnation > member.incarnation {
            // Metadata from a newer incarnation than foca has reported yet: keep it for the Up.
            self.early_metadata.insert(announcement.addr, announcement);
            return None;
        }
        let leaving = announcement.metadata.state == NodeState::Leaving;
        member.metadata = Some(announcement.metadata);
        if leaving && !member.reachable {
            // The leave's SWIM "down" overtook its LEAVING metadata.
            let member = self.members.remove(&announcement.addr)?;
            return Some(MemberEvent::Left(member));
        }
        Some(MemberEvent::Updated(member.clone()))
    }
}
