//! What a gossip node needs to start.

use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use ha_core::codec::GOSSIP_PACKET_BYTES_MAX;
use ha_core::keyring::ClusterKey;
use ha_core::{Config, NodeMetadata, Timing};

use crate::envelope::ENVELOPE_OVERHEAD_BYTES;
use crate::identity::GossipIdentity;
use crate::shared_state::SharedStateSettings;

/// How long a member declared down is remembered before it may rejoin under the same
/// identity (a restart always gets a new incarnation, so this only bounds memory).
const REMOVE_DOWN_AFTER: Duration = Duration::from_secs(15 * 60);

/// Settings of one gossip member.
#[derive(Clone, Debug)]
pub struct GossipSettings {
    /// This node's identity.
    pub identity: GossipIdentity,
    /// The cluster name; packets from other names are dropped.
    pub cluster_name: String,
    /// Cluster keys, current first; empty sends in the clear.
    pub cluster_keys: Vec<ClusterKey>,
    /// Addresses to announce to when joining and whenever they are not reachable members.
    pub seeds: Vec<SocketAddr>,
    /// Periods and timeouts.
    pub timing: Timing,
    /// The metadata to advertise at start.
    pub metadata: NodeMetadata,
    /// Expected cluster size; scales how many times each update is retransmitted.
    pub cluster_size_hint: u32,
    /// The shared map this node hosts (issue 15): limits, dissemination, its log.
    pub shared_state: SharedStateSettings,
}

impl GossipSettings {
    /// Settings from a node config. `incarnation` must be higher than any earlier run of this
    /// node at the same address (the driver uses wall-clock milliseconds at start).
    pub fn from_config(config: &Config, incarnation: u64, metadata: NodeMetadata) -> Self {
        Self {
            identity: GossipIdentity::new(
                config.node_id.clone(),
                config.advertised_addr(),
                incarnation,
            ),
            cluster_name: config.cluster.name.clone(),
            cluster_keys: config.security.cluster_keys.clone(),
            seeds: config.seeds.clone(),
            timing: config.timing.clone(),
            metadata,
            cluster_size_hint: config.cluster.bootstrap_expect.max(8),
            shared_state: SharedStateSettings::from_config(config),
        }
    }

    /// How often this member starts a push-pull anti-entropy exchange with one random member
    /// ([`crate::anti_entropy`]): the re-announce interval (5 s at `Timing::lan`), so a member
    /// that missed a join hears of it within about one interval, for one small packet per
    /// interval at rest.
    pub fn push_pull_interval_ms(&self) -> u64 {
        self.timing.reannounce_interval_ms.max(1)
    }

    /// foca's configuration for these settings.
    pub(crate) fn foca_config(&self) -> foca::Config {
        let size = std::num::NonZeroU32::new(self.cluster_size_hint.max(1))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let mut config = foca::Config::new_lan(size);
        let timing = &self.timing;
        config.probe_period = Duration::from_millis(timing.gossip_probe_period_ms);
        config.probe_rtt = Duration::from_millis(timing.gossip_probe_rtt_ms);
        config.suspect_to_down_after = Duration::from_millis(timing.gossip_suspect_to_down_ms);
        config.remove_down_after = Some(REMOVE_DOWN_AFTER);
        config.notify_down_members = true;
        config.max_packet_size =
            NonZeroUsize::new(GOSSIP_PACKET_BYTES_MAX - ENVELOPE_OVERHEAD_BYTES)
                .unwrap_or(NonZeroUsize::MIN);
        config.max_transmissions = config.max_transmissions.max(NonZeroU8::MIN);
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: Duration::from_millis(timing.gossip_interval_ms),
            num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        });
        // Members declared down on the other side of a healed partition are re-contacted.
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: Duration::from_millis(timing.reannounce_interval_ms),
            num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
        });
        // No `periodic_announce`: it filled the holes a join's limited retransmissions leave
        // with a random sample of members per 5 s (111 s to close the last hole at 1,000
        // members); the push-pull exchange (`anti_entropy`) closes them within an interval.
        config
    }
}
