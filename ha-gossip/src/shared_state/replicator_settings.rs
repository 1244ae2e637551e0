//! How the shared map's replicator disseminates: fanout, batching, relay depth, anti-entropy.

/// Largest state packet payload in bytes (before the gossip envelope): larger than SWIM's
/// 1,400 bytes because a batch of deltas or one entry of up to 4,096 bytes of value must fit.
/// The driver's receive buffer must hold this plus `ENVELOPE_OVERHEAD_BYTES`.
pub const STATE_PACKET_BYTES_MAX: usize = 8192;

/// Settings of a [`StateReplicator`](super::StateReplicator). [`Default`] gives the values
/// documented on each field; every field has a minimum the replicator enforces by clamping
/// (a fanout of 0 would never disseminate, a packet under 1,024 bytes could not hold a digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicatorSettings {
    /// Random peers a batch of new deltas is sent to, by the writer and by every relay
    /// (default 3; at least 1).
    pub fanout: usize,
    /// Local writes are batched for this long before they are pushed, in milliseconds
    /// (default 20; at least 1): a burst of writes leaves in a few full packets.
    pub push_interval_ms: u64,
    /// Most hops a delta is relayed after its first push (default 16). The hops actually
    /// used are `min(relay_hops_max, ceil(log2(peers + 1)) + 2)`: enough rounds for an
    /// epidemic to reach every member with high probability; anti-entropy repairs the rest.
    pub relay_hops_max: u8,
    /// Every this many milliseconds a node starts one anti-entropy exchange with one random
    /// peer (default 1,000; at least 10). Each round is drawn in
    /// `[interval * 3/4, interval * 5/4]` so members do not synchronise.
    pub anti_entropy_interval_ms: u64,
    /// Largest payload of one state packet in bytes (default [`STATE_PACKET_BYTES_MAX`],
    /// at least 1,024 and at most 65,000).
    pub packet_bytes_max: usize,
    /// Most keys waiting to be pushed or relayed (default 10,000). Past it, new deltas are
    /// not queued (counted in `ReplicatorStats::queue_overflow`); anti-entropy still
    /// delivers them, so the queue bounds memory, not correctness.
    pub queue_keys_max: usize,
    /// Most packets one anti-entropy answer may send (default 64, 512 KiB at the default
    /// packet size); a larger difference is repaired over several rounds. A member sends at
    /// most four answers' worth per anti-entropy interval, whoever asks.
    pub repair_packets_max: usize,
}

impl Default for ReplicatorSettings {
    fn default() -> Self {
        Self {
            fanout: 3,
            push_interval_ms: 20,
            relay_hops_max: 16,
            anti_entropy_interval_ms: 1_000,
            packet_bytes_max: STATE_PACKET_BYTES_MAX,
            queue_keys_max: 10_000,
            repair_packets_max: 64,
        }
    }
}

impl ReplicatorSettings {
    /// The settings with every field clamped to its documented range.
    pub fn clamped(&self) -> Self {
        Self {
            fanout: self.fanout.max(1),
            push_interval_ms: self.push_interval_ms.max(1),
            relay_hops_max: self.relay_hops_max,
            anti_entropy_interval_ms: self.anti_entropy_interval_ms.max(10),
            packet_bytes_max: self.packet_bytes_max.clamp(1_024, 65_000),
            queue_keys_max: self.queue_keys_max.max(1),
            repair_packets_max: self.repair_packets_max.max(1),
        }
    }

    /// Relay hops for a cluster with `peers` other reachable members.
    pub fn relay_hops_for(&self, peers: usize) -> u8 {
        let members = u64::try_from(peers).unwrap_or(u64::MAX).saturating_add(1);
        let log2 =
            u8::try_from(u64::BITS - members.saturating_sub(1).leading_zeros()).unwrap_or(u8::MAX);
        log2.saturating_add(2).min(self.relay_hops_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_hops_grow_like_log2_and_stop_at_the_maximum() {
        let settings = ReplicatorSettings::default();
        // (peers, hops): members = peers + 1; ceil(log2(members)) + 2.
        for (peers, hops) in [
            (0, 2),
            (1, 3),
            (3, 4),
            (4, 5),
            (49, 8),
            (499, 11),
            (1 << 20, 16),
        ] {
            assert_eq!(settings.relay_hops_for(peers), hops, "peers {peers}");
        }
    }

    #[test]
    fn clamping_keeps_the_replicator_working() {
        let settings = ReplicatorSettings {
            fanout: 0,
            push_interval_ms: 0,
            relay_hops_max: 0,
            anti_entropy_interval_ms: 0,
            packet_bytes_max: 10,
            queue_keys_max: 0,
            repair_packets_max: 0,
        }
        .clamped();
        assert_eq!(settings.fanout, 1);
        assert_eq!(settings.push_interval_ms, 1);
        assert_eq!(settings.anti_entropy_interval_ms, 10);
        assert_eq!(settings.packet_bytes_max, 1_024);
        assert_eq!(settings.queue_keys_max, 1);
        assert_eq!(settings.repair_packets_max, 1);
    }
}
