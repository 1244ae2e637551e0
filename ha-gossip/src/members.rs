//! The local view of the cluster, and the events that changes to it produce.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;

use ha_core::{MemberEvent, MemberInfo, NodeMetadata, NodeState};
use hashbrown::{DefaultHashBuilder, HashTable};
use rand::RngExt;
use rand::seq::IndexedRandom;

use crate::identity::GossipIdentity;
use crate::intern::Interner;
use crate::metadata::MetadataAnnouncement;

/// Most members the table holds (reachable or not). Beyond this, new members are ignored and
/// logged; the limit is far above any cluster ha is meant for.
pub const MEMBERS_MAX: usize = 65_536;

/// From this many members on, random members are picked by drawing random slots rather than
/// by listing every candidate (see [`MemberTable::sample_reachable`]).
const SAMPLE_BY_DRAWING_MIN: usize = 64;

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

    /// The version of the metadata held, if any.
    fn metadata_version(&self) -> Option<(u64, u64)> {
        self.metadata
            .as_ref()
            .map(|shared| (shared.incarnation, shared.metadata.sequence))
    }
}

fn share(announcement: MetadataAnnouncement) -> Arc<SharedMetadata> {
    METADATA.intern(SharedMetadata {
        addr: announcement.addr,
        incarnation: announcement.incarnation,
        metadata: announcement.metadata,
    })
}

/// What became of an announcement offered to [`MemberTable::on_metadata`].
#[derive(Debug)]
pub(crate) enum MetadataOutcome {
    /// Not newer than what the table holds (or refused: the table is full): not news.
    Stale,
    /// News, kept for a member not (yet) seen alive in that incarnation: no event yet.
    Kept,
    /// News about a known member: publish this event.
    Event(MemberEvent),
}

impl MetadataOutcome {
    /// Whether the announcement was news (worth disseminating further).
    pub(crate) fn is_news(&self) -> bool {
        !matches!(self, Self::Stale)
    }
}

/// Members by gossip address, plus metadata that arrived before its member was seen alive.
///
/// Members sit in a `Vec` (24 bytes each) with an index of slots hashed by address (about 5
/// bytes each): a 10,000-member simulation holds 10^8 (observer, member) pairs, and the
/// `BTreeMap<SocketAddr, _>` this replaced cost about 90 bytes a pair (a 32-byte key per
/// entry, half-full nodes). The slot order is the order members were first seen, except that
/// a removal moves the last member into the hole; the index is only looked up, never
/// iterated, so its randomly seeded hasher cannot make a simulation differ between runs.
///
/// The newest metadata version seen per address, which decides whether an announcement is
/// news worth disseminating, is the version held here (for a member, or early for an address
/// not seen alive yet): no second map by address.
#[derive(Debug, Default)]
pub(crate) struct MemberTable {
    slots: Vec<Known>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Shared, like a member's: during a join most members hear a member's metadata (sent
    /// to them directly when it sees them) before they see it alive, and whole copies of
    /// each announcement here were the largest single cost of a 1,000-member join's peak.
    early_metadata: BTreeMap<SocketAddr, Arc<SharedMetadata>>,
}

impl MemberTable {
    fn hash(&self, addr: &SocketAddr) -> u64 {
        self.hasher.hash_one(addr)
    }

    fn slot_of(&self, addr: &SocketAddr) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(self.hash(addr), |slot| {
                slots[*slot as usize].identity.addr == *addr
            })
            .map(|slot| *slot as usize)
    }

    fn known(&self, addr: &SocketAddr) -> Option<&Known> {
        self.slot_of(addr).map(|slot| &self.slots[slot])
    }

    fn known_mut(&mut self, addr: &SocketAddr) -> Option<&mut Known> {
        self.slot_of(addr).map(|slot| &mut self.slots[slot])
    }

    /// Add a member not in the table; returns its slot.
    fn insert(&mut self, known: Known) -> usize {
        let slot = self.slots.len();
        let hash = self.hash(&known.identity.addr);
        self.slots.push(known);
        let (slots, hasher) = (&self.slots, &self.hasher);
        // Slots are below MEMBERS_MAX, far below u32::MAX.
        self.index.insert_unique(hash, slot as u32, |slot| {
            hasher.hash_one(slots[*slot as usize].identity.addr)
        });
        slot
    }

    /// Remove the member at `addr`, moving the last member into its slot.
    fn remove(&mut self, addr: &SocketAddr) -> Option<Known> {
        let slot = self.slot_of(addr)?;
        let hash = self.hash(addr);
        let slots = &self.slots;
        if let Ok(entry) = self.index.find_entry(hash, |candidate| {
            slots[*candidate as usize].identity.addr == *addr
        }) {
            entry.remove();
        }
        let last = self.slots.len() - 1;
        if slot != last {
            let moved_addr = self.slots[last].identity.addr;
            let moved_hash = self.hash(&moved_addr);
            if let Some(index_slot) = self
                .index
                .find_mut(moved_hash, |candidate| *candidate as usize == last)
            {
                *index_slot = slot as u32;
            }
        }
        let removed = self.slots.swap_remove(slot);
        debug_assert_eq!(self.index.len(), self.slots.len());
        Some(removed)
    }

    /// Every member, by address.
    pub(crate) fn iter(&self) -> impl Iterator<Item = MemberInfo> + '_ {
        let mut sorted: Vec<&Known> = self.slots.iter().collect();
        sorted.sort_unstable_by_key(|known| known.identity.addr);
        sorted.into_iter().map(Known::info)
    }

    /// Every member's identity and reachability, in no particular order.
    pub(crate) fn identities(&self) -> impl Iterator<Item = (&GossipIdentity, bool)> + '_ {
        self.slots
            .iter()
            .map(|known| (&known.identity, known.reachable))
    }

    pub(crate) fn get(&self, addr: &SocketAddr) -> Option<MemberInfo> {
        self.known(addr).map(Known::info)
    }

    /// Whether the member at `addr` is known and reachable.
    pub(crate) fn is_reachable(&self, addr: &SocketAddr) -> bool {
        self.known(addr).is_some_and(|known| known.reachable)
    }

    /// How many members (reachable or not) have no metadata yet.
    pub(crate) fn without_metadata(&self) -> usize {
        self.slots
            .iter()
            .filter(|known| known.metadata.is_none())
            .count()
    }

    /// Every reachable member's address, in slot order.
    pub(crate) fn reachable_addrs(&self) -> Vec<SocketAddr> {
        self.slots
            .iter()
            .filter(|known| known.reachable)
            .map(|known| known.identity.addr)
            .collect()
    }

    /// Up to `count` distinct reachable members for which `wanted` holds, at random.
    ///
    /// With many members, random slots are drawn (a bounded number of times) instead of
    /// listing every candidate: a member picks a few at random several times a second, and
    /// listing 10,000 members each time was a cost that grew with the cluster. When the draws
    /// find too few (most members unreachable or unwanted), it falls back to listing them.
    pub(crate) fn sample_reachable(
        &self,
        rng: &mut impl RngExt,
        count: usize,
        wanted: impl Fn(&SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let eligible = |known: &Known| known.reachable && wanted(&known.identity.addr);
        let len = self.slots.len();
        if len >= SAMPLE_BY_DRAWING_MIN && count.saturating_mul(4) <= len {
            let mut chosen: Vec<SocketAddr> = Vec::with_capacity(count);
            for _draw in 0..count.saturating_mul(8) {
                let known = &self.slots[rng.random_range(0..len)];
                if eligible(known) && !chosen.contains(&known.identity.addr) {
                    chosen.push(known.identity.addr);
                    if chosen.len() == count {
                        return chosen;
                    }
                }
            }
        }
        let candidates: Vec<SocketAddr> = self
            .slots
            .iter()
            .filter(|known| eligible(known))
            .map(|known| known.identity.addr)
            .collect();
        candidates.sample(rng, count).copied().collect()
    }

    /// foca says `identity` is alive.
    pub(crate) fn on_up(&mut self, identity: &GossipIdentity) -> Option<MemberEvent> {
        let slot = match self.slot_of(&identity.addr) {
            Some(slot) => slot,
            None if self.slots.len() >= MEMBERS_MAX => {
                tracing::warn!(addr = %identity.addr, "member table full; ignoring new member");
                return None;
            }
            None => self.insert(Known {
                identity: identity.clone(),
                metadata: None,
                reachable: true,
            }),
        };
        let early = self
            .early_metadata
            .remove(&identity.addr)
            .filter(|shared| shared.incarnation >= identity.incarnation);
        let member = &mut self.slots[slot];
        if member.identity.incarnation != identity.incarnation {
            member.metadata = None;
        }
        member.identity = identity.clone();
        member.reachable = true;
        if let Some(shared) = early {
            member.metadata = Some(shared);
        }
        Some(MemberEvent::Up(member.info()))
    }

    /// foca declared `identity` down. A member that announced LEAVING is gone; any other is
    /// unreachable until it answers again.
    pub(crate) fn on_down(&mut self, identity: &GossipIdentity) -> Option<MemberEvent> {
        let member = self.known_mut(&identity.addr)?;
        if member.identity.incarnation > identity.incarnation {
            return None;
        }
        if member.is_leaving() {
            let mut member = self.remove(&identity.addr)?;
            member.reachable = false;
            return Some(MemberEvent::Left(member.info()));
        }
        member.reachable = false;
        Some(MemberEvent::Unreachable(member.info()))
    }

    /// foca replaced an identity with a newer one at the same address (a restart or renewal).
    ///
    /// Metadata of the new incarnation that arrived before the rename (the restarted member
    /// sends it straight to every member it meets, often before its first SWIM message
    /// reaches them) is taken now, and reported as an update: otherwise nothing newer may
    /// ever come, and subscribers would not hear of the new incarnation.
    pub(crate) fn on_rename(&mut self, new: &GossipIdentity) -> Option<MemberEvent> {
        let slot = self.slot_of(&new.addr)?;
        // Early metadata of a still newer incarnation stays for that one.
        let early = if self
            .early_metadata
            .get(&new.addr)
            .is_some_and(|shared| shared.incarnation == new.incarnation)
        {
            self.early_metadata.remove(&new.addr)
        } else {
            None
        };
        let member = &mut self.slots[slot];
        if member.identity.incarnation != new.incarnation {
            member.metadata = None;
        }
        member.identity = new.clone();
        let shared = early?;
        member.metadata = Some(shared);
        Some(MemberEvent::Updated(member.info()))
    }

    /// Metadata arrived: keep it if it is news (newer than the member's, or than the early
    /// announcement held for an address not seen alive yet), and say what became of it.
    pub(crate) fn on_metadata(&mut self, announcement: MetadataAnnouncement) -> MetadataOutcome {
        let slot = self.slot_of(&announcement.addr);
        // Early metadata is rare once members are up: look only when there can be some.
        let early = if self.early_metadata.is_empty() {
            None
        } else {
            self.early_metadata
                .get(&announcement.addr)
                .map(|shared| (shared.incarnation, shared.metadata.sequence))
        };
        let Some(slot) = slot else {
            if early.is_some_and(|early| announcement.version() <= early) {
                return MetadataOutcome::Stale;
            }
            if early.is_none() && self.early_metadata.len() >= MEMBERS_MAX {
                // Without a cluster key anyone can forge announcements from ever new
                // addresses: the table must not grow without bound.
                tracing::debug!(addr = %announcement.addr, "metadata table full; ignoring a new address");
                return MetadataOutcome::Stale;
            }
            self.early_metadata
                .insert(announcement.addr, share(announcement));
            return MetadataOutcome::Kept;
        };
        let member = &mut self.slots[slot];
        let incarnation = member.identity.incarnation;
        let newest = member.metadata_version().max(early);
        if announcement.incarnation < incarnation
            || newest.is_some_and(|version| announcement.version() <= version)
        {
            return MetadataOutcome::Stale;
        }
        if announcement.incarnation > incarnation {
            // Metadata from a newer incarnation than foca has reported yet: keep it for the Up.
            self.early_metadata
                .insert(announcement.addr, share(announcement));
            return MetadataOutcome::Kept;
        }
        let addr = announcement.addr;
        member.metadata = Some(share(announcement));
        if member.is_leaving() && !member.reachable {
            // The leave's SWIM "down" overtook its LEAVING metadata.
            return match self.remove(&addr) {
                Some(member) => MetadataOutcome::Event(MemberEvent::Left(member.info())),
                None => MetadataOutcome::Kept,
            };
        }
        MetadataOutcome::Event(MemberEvent::Updated(member.info()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_core::{NodeId, Priority};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn identity(port: u16, incarnation: u64) -> GossipIdentity {
        GossipIdentity::new(
            NodeId::new(format!("m{port}")).unwrap(),
            SocketAddr::from(([127, 0, 0, 1], port)),
            incarnation,
        )
    }

    fn announcement(port: u16, incarnation: u64, sequence: u64) -> MetadataAnnouncement {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut metadata = NodeMetadata::new(Priority(1), addr);
        metadata.sequence = sequence;
        MetadataAnnouncement::new(&identity(port, incarnation), metadata)
    }

    #[test]
    fn removal_keeps_every_other_member_findable() {
        let mut table = MemberTable::default();
        for port in 1..=100 {
            assert!(table.on_up(&identity(port, 1)).is_some());
        }
        // Leaving members are removed when declared down; remove every third one.
        for port in (1..=100).step_by(3) {
            let mut leaving = announcement(port, 1, 1);
            leaving.metadata.state = NodeState::Leaving;
            assert!(table.on_metadata(leaving).is_news());
            assert!(matches!(
                table.on_down(&identity(port, 1)),
                Some(MemberEvent::Left(_))
            ));
        }
        for port in 1..=100u16 {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            assert_eq!(table.get(&addr).is_some(), port % 3 != 1, "port {port}");
        }
        assert_eq!(table.iter().count(), 66);
        let ports: Vec<u16> = table.iter().map(|info| info.gossip_addr.port()).collect();
        assert!(ports.is_sorted(), "iter is by address");
    }

    #[test]
    fn metadata_news_is_decided_by_what_the_table_holds() {
        let mut table = MemberTable::default();
        // Unknown address: kept early, once.
        assert!(matches!(
            table.on_metadata(announcement(7, 1, 0)),
            MetadataOutcome::Kept
        ));
        assert!(!table.on_metadata(announcement(7, 1, 0)).is_news());
        assert!(table.on_up(&identity(7, 1)).is_some());
        assert!(!table.on_metadata(announcement(7, 1, 0)).is_news());
        assert!(matches!(
            table.on_metadata(announcement(7, 1, 1)),
            MetadataOutcome::Event(MemberEvent::Updated(_))
        ));
        // An older incarnation than the member's is never news.
        assert!(table.on_up(&identity(7, 2)).is_some());
        assert!(!table.on_metadata(announcement(7, 1, 5)).is_news());
        assert!(table.on_metadata(announcement(7, 2, 0)).is_news());
    }

    #[test]
    fn rename_takes_early_metadata_of_the_new_incarnation() {
        let mut table = MemberTable::default();
        assert!(table.on_up(&identity(9, 1)).is_some());
        // The restarted member's metadata arrives before its first SWIM message.
        assert!(matches!(
            table.on_metadata(announcement(9, 2, 1)),
            MetadataOutcome::Kept
        ));
        let event = table.on_rename(&identity(9, 2));
        assert!(
            matches!(&event, Some(MemberEvent::Updated(info))
                if info.incarnation == 2 && info.metadata.as_ref().is_some_and(|m| m.sequence == 1)),
            "{event:?}"
        );
        // Nothing is left early, and the same announcement is no longer news.
        assert!(!table.on_metadata(announcement(9, 2, 1)).is_news());
        // A rename with nothing early reports nothing.
        assert!(table.on_rename(&identity(9, 3)).is_none());
    }

    #[test]
    fn sampling_is_distinct_reachable_and_wanted() {
        let mut table = MemberTable::default();
        for port in 1..=200 {
            table.on_up(&identity(port, 1));
        }
        for port in 1..=100 {
            table.on_down(&identity(port, 1));
        }
        let mut rng = StdRng::seed_from_u64(3);
        let excluded = SocketAddr::from(([127, 0, 0, 1], 150));
        for _round in 0..100 {
            let chosen = table.sample_reachable(&mut rng, 4, |addr| *addr != excluded);
            assert_eq!(chosen.len(), 4);
            let distinct: std::collections::BTreeSet<_> = chosen.iter().collect();
            assert_eq!(distinct.len(), 4);
            assert!(
                chosen
                    .iter()
                    .all(|addr| addr.port() > 100 && *addr != excluded)
            );
        }
        // Fewer eligible than asked: all of them.
        let few = table.sample_reachable(&mut rng, 4, |addr| addr.port() <= 102);
        assert_eq!(few.len(), 2);
    }
}
