//! Node metadata on the wire, and foca's broadcast handler that disseminates it.

use std::net::SocketAddr;
use std::sync::Arc;

use foca::{BroadcastHandler, Invalidates};
use ha_core::codec;
use ha_core::{CodecError, MemberEvent, NodeId, NodeMetadata};
use serde::{Deserialize, Serialize};

use crate::identity::GossipIdentity;
use crate::intern::Interner;
use crate::members::{MemberTable, MetadataOutcome};

/// Largest encoded metadata announcement, in bytes. Small enough that several fit in one
/// gossip packet next to SWIM updates.
pub const METADATA_BYTES_MAX: usize = 512;

/// One node's metadata, stamped with who it belongs to and how new it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataAnnouncement {
    /// The node it describes.
    pub node_id: NodeId,
    /// That node's gossip address (foca's member key).
    pub addr: SocketAddr,
    /// That node's incarnation when it sent this.
    pub incarnation: u64,
    /// The metadata itself.
    pub metadata: NodeMetadata,
}

impl MetadataAnnouncement {
    /// The metadata of `identity`.
    pub fn new(identity: &GossipIdentity, metadata: NodeMetadata) -> Self {
        Self {
            node_id: identity.node_id.clone(),
            addr: identity.addr,
            incarnation: identity.incarnation,
            metadata,
        }
    }

    /// Newer announcements have a higher `(incarnation, sequence)`.
    pub fn version(&self) -> (u64, u64) {
        (self.incarnation, self.metadata.sequence)
    }

    /// Encode within [`METADATA_BYTES_MAX`].
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] when the metadata (for example a long version string) does
    /// not fit.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("metadata announcement", self, METADATA_BYTES_MAX)
    }

    /// Decode one announcement.
    ///
    /// # Errors
    /// [`CodecError`] on malformed or oversized input.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode("metadata announcement", bytes, METADATA_BYTES_MAX)
    }
}

/// Every announcement waiting in a dissemination backlog in this process, shared (see
/// [`crate::intern`]).
static ENCODED: Interner<EncodedAnnouncement> = Interner::new();

/// An announcement as it travels (its encoded bytes), with what identifies it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct EncodedAnnouncement {
    addr: SocketAddr,
    version: (u64, u64),
    bytes: Vec<u8>,
}

/// The key foca uses to replace a stale announcement still being disseminated by a newer one.
///
/// It holds the announcement's bytes, shared by every member disseminating it, and foca's
/// backlog keeps no copy of its own ([`BroadcastHandler::key_data`], an ha-foca patch): during
/// a join every member's backlog holds an announcement of nearly every other member, which
/// at 10,000 simulated members was ~10^8 copies of ~10^4 distinct announcements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataKey(Arc<EncodedAnnouncement>);

impl MetadataKey {
    fn new(addr: SocketAddr, version: (u64, u64), bytes: &[u8]) -> Self {
        Self(ENCODED.intern(EncodedAnnouncement {
            addr,
            version,
            bytes: bytes.to_vec(),
        }))
    }
}

impl Invalidates for MetadataKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.0.addr == other.0.addr && self.0.version >= other.0.version
    }

    /// Only announcements about the same address can replace each other: foca compares a new
    /// one with those of its address only, not the whole backlog (a 1,000-member join holds
    /// about 1,000 announcements in every member's backlog).
    fn bucket(&self) -> Option<u64> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        Some(BuildHasherDefault::<foca::BucketHasher>::default().hash_one(self.0.addr))
    }
}

/// foca's custom broadcast handler for metadata. It owns the member table (the core reads it
/// through foca's `broadcast_handler`), because whether an announcement is news worth
/// disseminating is whether it is newer than what the table holds: one map by address per
/// member, not a second one of versions (issue 17: 10^8 pairs in a 10,000-member simulation).
pub(crate) struct MetadataHandler {
    /// Members, their metadata, and metadata that arrived before its member.
    pub(crate) members: MemberTable,
    /// This node's address: its own announcements are news once each, never a member.
    own_addr: SocketAddr,
    /// The newest of this node's own announcements seen.
    own_latest: Option<(u64, u64)>,
    /// Events from announcements since the core last looked.
    events: Vec<MemberEvent>,
}

impl MetadataHandler {
    /// A handler with an empty member table, for the node at `own_addr`.
    pub(crate) fn new(own_addr: SocketAddr) -> Self {
        Self {
            members: MemberTable::default(),
            own_addr,
            own_latest: None,
            events: Vec::new(),
        }
    }

    /// Record `announcement` if it is news (see [`MemberTable::on_metadata`]); returns
    /// whether it was. A new address is refused once [`crate::members::MEMBERS_MAX`] are held.
    pub(crate) fn offer(&mut self, announcement: MetadataAnnouncement) -> bool {
        if announcement.addr == self.own_addr {
            let version = announcement.version();
            let newer = self.own_latest.is_none_or(|seen| version > seen);
            if newer {
                self.own_latest = Some(version);
            }
            return newer;
        }
        match self.members.on_metadata(announcement) {
            MetadataOutcome::Event(event) => {
                self.events.push(event);
                true
            }
            outcome => outcome.is_news(),
        }
    }

    /// Take the events announcements produced since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<MemberEvent> {
        std::mem::take(&mut self.events)
    }
}

impl BroadcastHandler<GossipIdentity> for MetadataHandler {
    type Key = MetadataKey;
    type Error = CodecError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&GossipIdentity>,
    ) -> Result<Option<MetadataKey>, CodecError> {
        let announcement = MetadataAnnouncement::decode(data)?;
        let (addr, version) = (announcement.addr, announcement.version());
        // Only news is kept (and shared): most copies received during a join are not.
        Ok(self
            .offer(announcement)
            .then(|| MetadataKey::new(addr, version, data)))
    }

    fn key_data(key: &MetadataKey) -> Option<&[u8]> {
        Some(&key.0.bytes)
    }
}
