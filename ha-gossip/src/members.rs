//! The local view of the cluster, and the events that changes to it produce.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use ha_core::{MemberEvent, MemberInfo, NodeMetadata, NodeState};

use crate::identity::GossipIdentity;
use crate::intern::Interner;
use crate::metadata::MetadataAnnouncement;

/// Most members the table holds (reachable or not). Beyond this, new members are ignored and
/// logged; the limit is far above any cluster ha is meant for.
pub const MEMBERS_MAX: usize = 65_536;

/// Every member's metadata in this process, shared (see [`crate::intern`]).
static METADATA: Interner<SharedMetadata> = Interner::new();

/// One member's metadata in one incarnation, shared by every observer holding it.
#[derive(Debug, PartialEq, Eq)]
struct SharedMetadata {
    addr: SocketAddr,
    incarnation: u64,
    metadata: NodeMetadata,
}

// `NodeMetadata` has no `Hash`; the version is a fine hash (equal values have equal
// versions), and `Eq` still compares every field.
impl Hash for SharedMetadata {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
        self.incarnation.hash(state);
        self.metadata.sequence.hash(state);
    }
}

/// What this node holds about one member: two pointers and a flag (24 bytes), instead of a
/// [`MemberInfo`] with its own copies of the node id and metadata (~200 bytes and two
/// allocations). [`MemberInfo`]s are built when asked for.
#[derive(Debug)]
struct Known {
    identity: GossipIdentity,
    metadata: Option<Arc<SharedMetadata>>,
    reachable: bool,
}

impl Known {
    fn info(&self) -> MemberInfo {
        MemberInfo {
            id: self.identity.node_id.clone(),
            gossip_addr: self.identity.addr,
            incarnation: self.identity.incarnation,
            metadata: self.metadata.as_ref().map(|shared| shared.metadata.clone()),
            reachable: self.reachable,
        }
    }

    fn is_leaving(&self) -> bool {
        self.metadata
            .as_ref()
            .is_some_and(|shared| shared.metadata.state == NodeState::Leaving)
    }
}

fn share(announcement: MetadataAnnouncement) -> Arc<SharedMetadata> {
    METADATA.intern(SharedMetadata {
        addr: announcement.addr,
        incarnation: announcement.incarnation,
        metadata: announcement.metadata,
    })
}

/// Members by gossip address, plus metadata that arrived before its member was seen alive.
#[derive(Debug, Default)]
pub(crate) struct MemberTable {
    members: BTreeMap<SocketAddr, Known>,
    early_metadata: BTreeMap<SocketAddr, MetadataAnnouncement>,
}

impl MemberTable {
    /// Every member, by address.
    pub(crate) fn iter(&self) -> impl Iterator<Item = MemberInfo> + '_ {
        self.members.values().map(Known::info)
    }

    /// Every member's identity and reachability, by address.
    pub(crate) fn identities(&self) -> impl Iterator<Item = (&GossipIdentity, bool)> + '_ {
        self.members
            .values()
            .map(|known| (&known.identity, known.reachable))
    }

    pub(crate) fn get(&self, addr: &SocketAddr) -> Option<MemberInfo> {
        self.members.get(addr).map(Known::info)
    }

    /// Whether the member at `addr` is known and reachable.
    pub(crate) fn is_reachable(&self, addr: &SocketAddr) -> bool {
        self.members.get(addr).is_some_and(|known| known.reachable)
    }

    pub(crate) fn reachable_addrs(&self) -> Vec<SocketAddr> {
        self.members
            .iter()
            .filter(|(_, known)| known.reachable)
            .map(|(addr, _)| *addr)
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
        let member = self.members.entry(identity.addr).or_insert_with(|| Known {
            identity: identity.clone(),
            metadata: None,
            reachable: true,
        });
        if member.identity.incarnation != identity.incarnation {
            member.metadata = None;
        }
        member.identity = identity.clone();
        member.reachable = true;
        if let Some(announcement) = early {
            member.metadata = Some(share(announcement));
        }
        Some(MemberEvent::Up(member.info()))
    }

    /// foca declared `identity` down. A member that announced LEAVING is gone; any other is
    /// unreachable until it answers again.
    pub(crate) fn on_down(&mut self, identity: &GossipIdentity) -> Option<MemberEvent> {
        let member = self.members.get_mut(&identity.addr)?;
        if member.identity.incarnation > identity.incarnation {
            return None;
        }
        if member.is_leaving() {
            let mut member = self.members.remove(&identity.addr)?;
            member.reachable = false;
            return Some(MemberEvent::Left(member.info()));
        }
        member.reachable = false;
        Some(MemberEvent::Unreachable(member.info()))
    }

    /// foca replaced an identity with a newer one at the same address (a restart or renewal).
    pub(crate) fn on_rename(&mut self, new: &GossipIdentity) {
        if let Some(member) = self.members.get_mut(&new.addr) {
            if member.identity.incarnation != new.incarnation {
                member.metadata = None;
            }
            member.identity = new.clone();
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
        let incarnation = member.identity.incarnation;
        let current = member
            .metadata
            .as_ref()
            .map(|shared| (incarnation, shared.metadata.sequence));
        if announcement.incarnation < incarnation
            || current.is_some_and(|version| announcement.version() <= version)
        {
            return None;
        }
        if announcement.incarnation > incarnation {
            // Metadata from a newer incarnation than foca has reported yet: keep it for the Up.
            self.early_metadata.insert(announcement.addr, announcement);
            return None;
        }
        let addr = announcement.addr;
        member.metadata = Some(share(announcement));
        if member.is_leaving() && !member.reachable {
            // The leave's SWIM "down" overtook its LEAVING metadata.
            let member = self.members.remove(&addr)?;
            return Some(MemberEvent::Left(member.info()));
        }
        Some(MemberEvent::Updated(member.info()))
    }
}
