//! Node metadata on the wire, and foca's broadcast handler that disseminates it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use foca::{BroadcastHandler, Invalidates};
use ha_core::codec;
use ha_core::{CodecError, NodeId, NodeMetadata};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::identity::GossipIdentity;
use crate::members::MEMBERS_MAX;

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

/// The key foca uses to replace a stale announcement still being disseminated by a newer one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataKey {
    addr: SocketAddr,
    version: (u64, u64),
}

impl Invalidates for MetadataKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.addr == other.addr && self.version >= other.version
    }

    /// Only announcements about the same address can replace each other: foca compares a new
    /// one with those of its address only, not the whole backlog (a 1,000-member join holds
    /// about 1,000 announcements in every member's backlog).
    fn bucket(&self) -> Option<u64> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        Some(BuildHasherDefault::<foca::BucketHasher>::default().hash_one(self.addr))
    }
}

/// State shared between the broadcast handler (owned by foca) and the gossip core.
#[derive(Debug, Default)]
pub(crate) struct MetadataInbox {
    /// The newest version seen per address, to decide what is worth re-disseminating.
    latest: BTreeMap<SocketAddr, (u64, u64)>,
    /// Announcements received since the core last looked.
    received: Vec<MetadataAnnouncement>,
}

impl MetadataInbox {
    /// Record `announcement` if it is newer than anything seen for its address. A new address
    /// is refused once [`MEMBERS_MAX`] addresses are known: without a cluster key anyone can
    /// forge announcements from ever new addresses, and the table must not grow without bound.
    pub(crate) fn offer(&mut self, announcement: MetadataAnnouncement) -> bool {
        let version = announcement.version();
        let seen = self.latest.get(&announcement.addr);
        if seen.is_none() && self.latest.len() >= MEMBERS_MAX {
            tracing::debug!(addr = %announcement.addr, "metadata table full; ignoring a new address");
            return false;
        }
        let newer = seen.is_none_or(|seen| version > *seen);
        if newer {
            self.latest.insert(announcement.addr, version);
            self.received.push(announcement);
        }
        newer
    }

    /// Take what arrived since the last call.
    pub(crate) fn take(&mut self) -> Vec<MetadataAnnouncement> {
        std::mem::take(&mut self.received)
    }

    /// Forget an address (its member is gone) so the table stays bounded.
    pub(crate) fn forget(&mut self, addr: &SocketAddr) {
        self.latest.remove(addr);
    }
}

/// foca's custom broadcast handler for metadata.
pub(crate) struct MetadataHandler {
    pub(crate) inbox: Arc<Mutex<MetadataInbox>>,
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
        let key = MetadataKey {
            addr: announcement.addr,
            version: announcement.version(),
        };
        Ok(self.inbox.lock().offer(announcement).then_some(key))
    }
}
