//! The simulated network: latency, loss, duplication, partitions and one-way blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use rand::RngExt;
use rand::rngs::StdRng;

/// How messages travel when no partition or block is in the way.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfig {
    /// Shortest one-way latency in milliseconds.
    pub latency_ms_min: u64,
    /// Longest one-way latency in milliseconds. Each message draws uniformly from
    /// `[latency_ms_min, latency_ms_max]`, so a spread also reorders messages.
    pub latency_ms_max: u64,
    /// Probability that a message is lost, in `[0, 1]`.
    pub drop_probability: f64,
    /// Probability that a delivered message arrives a second time (with its own latency).
    pub duplicate_probability: f64,
}

impl NetworkConfig {
    /// A fast, reliable local network: 1 to 2 ms, no loss, no duplicates.
    pub fn lan() -> Self {
        Self {
            latency_ms_min: 1,
            latency_ms_max: 2,
            drop_probability: 0.0,
            duplicate_probability: 0.0,
        }
    }

    /// The same network losing `drop_probability` of its messages.
    pub fn with_drop_probability(mut self, drop_probability: f64) -> Self {
        self.drop_probability = drop_probability;
        self
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self::lan()
    }
}

/// What happened to messages, by cause. Every sent message ends up delivered or in exactly one
/// drop counter (duplicates count once more in `delivered` or a drop counter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkCounters {
    /// Messages handed to the network by cores.
    pub sent: u64,
    /// Messages (including duplicates) that reached a running core.
    pub delivered: u64,
    /// Extra copies made by duplication.
    pub duplicated: u64,
    /// Lost to the random drop probability.
    pub dropped_loss: u64,
    /// Sender and receiver on different sides of a partition.
    pub dropped_partition: u64,
    /// Blocked in this direction by a one-way block.
    pub dropped_blocked: u64,
    /// The receiver was down at send time, or crashed or restarted while it was in flight.
    pub dropped_node_down: u64,
    /// No node has the destination address.
    pub dropped_unknown_address: u64,
}

impl NetworkCounters {
    /// Every drop, whatever the cause.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_loss
            + self.dropped_partition
            + self.dropped_blocked
            + self.dropped_node_down
            + self.dropped_unknown_address
    }
}

/// Where a sent message goes: a latency for the original and, when duplicated, for the copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Latency of the message, or `None` when it is dropped.
    pub latency_ms: Option<u64>,
    /// Latency of a duplicate, when one is made.
    pub duplicate_latency_ms: Option<u64>,
}

/// The network model. Faults are decided when a message is sent, in this order: partition,
/// one-way block, random loss, duplication. Latency is drawn per copy.
#[derive(Clone, Debug)]
pub struct Network {
    config: NetworkConfig,
    /// Partition group of each listed address; unlisted addresses share group `usize::MAX`.
    groups: BTreeMap<SocketAddr, usize>,
    /// `(from, to)` pairs whose messages are dropped in that direction only.
    blocked: BTreeSet<(SocketAddr, SocketAddr)>,
    /// `(from, to)` pairs whose messages take this many milliseconds more in that direction
    /// (a congested or retransmitting link: late, not lost).
    slow: BTreeMap<(SocketAddr, SocketAddr), u64>,
    counters: NetworkCounters,
}

/// The group of nodes not named in any partition set.
const UNLISTED_GROUP: usize = usize::MAX;

impl Network {
    /// A healed network with `config`.
    ///
    /// # Panics
    /// When the latency range is empty or a probability is outside `[0, 1]`.
    pub fn new(config: NetworkConfig) -> Self {
        Self::check(&config);
        Self {
            config,
            groups: BTreeMap::new(),
            blocked: BTreeSet::new(),
            slow: BTreeMap::new(),
            counters: NetworkCounters::default(),
        }
    }

    fn check(config: &NetworkConfig) {
        assert!(
            config.latency_ms_min <= config.latency_ms_max,
            "latency_ms_min {} is above latency_ms_max {}",
            config.latency_ms_min,
            config.latency_ms_max
        );
        for (name, probability) in [
            ("drop_probability", config.drop_probability),
            ("duplicate_probability", config.duplicate_probability),
        ] {
            assert!(
                (0.0..=1.0).contains(&probability),
                "{name} {probability} is not in [0, 1]"
            );
        }
    }

    /// The current latency, loss and duplication settings.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Change latency, loss or duplication from now on (messages in flight keep their fate).
    ///
    /// # Panics
    /// As [`Network::new`].
    pub fn set_config(&mut self, config: NetworkConfig) {
        Self::check(&config);
        self.config = config;
    }

    /// Split the network: nodes in each set can only talk to nodes in the same set. Nodes named
    /// in no set form one more set together. Replaces any earlier partition; one-way blocks
    /// stay.
    ///
    /// # Panics
    /// When an address is named in two sets.
    pub fn partition(&mut self, sets: &[Vec<SocketAddr>]) {
        self.groups.clear();
        for (group, set) in sets.iter().enumerate() {
            for addr in set {
                let previous = self.groups.insert(*addr, group);
                assert!(previous.is_none(), "{addr} is named in two partition sets");
            }
        }
    }

    /// Drop every message from `from` to `to`; messages from `to` to `from` still pass.
    pub fn block_one_way(&mut self, from: SocketAddr, to: SocketAddr) {
        self.blocked.insert((from, to));
    }

    /// Undo one [`block_one_way`](Self::block_one_way).
    pub fn unblock_one_way(&mut self, from: SocketAddr, to: SocketAddr) {
        self.blocked.remove(&(from, to));
    }

    /// Delay every message from `from` to `to` by `extra_ms` more than the drawn latency
    /// (0 removes the delay); messages from `to` to `from` keep their latency.
    pub fn slow_one_way(&mut self, from: SocketAddr, to: SocketAddr, extra_ms: u64) {
        if extra_ms == 0 {
            self.slow.remove(&(from, to));
        } else {
            self.slow.insert((from, to), extra_ms);
        }
    }

    /// Remove every partition, one-way block and slow link. Loss and duplication settings
    /// stay.
    pub fn heal(&mut self) {
        self.groups.clear();
        self.blocked.clear();
        self.slow.clear();
    }

    /// Whether a partition or block currently stops messages from `from` to `to`.
    pub fn is_cut(&self, from: SocketAddr, to: SocketAddr) -> bool {
        self.group_of(from) != self.group_of(to) || self.blocked.contains(&(from, to))
    }

    /// Counters so far.
    pub fn counters(&self) -> &NetworkCounters {
        &self.counters
    }

    pub(crate) fn counters_mut(&mut self) -> &mut NetworkCounters {
        &mut self.counters
    }

    fn group_of(&self, addr: SocketAddr) -> usize {
        self.groups.get(&addr).copied().unwrap_or(UNLISTED_GROUP)
    }

    /// Decide the fate of one message from `from` to `to`, counting it as sent and, when it
    /// is dropped, under its cause.
    pub fn route(&mut self, rng: &mut StdRng, from: SocketAddr, to: SocketAddr) -> Route {
        self.counters.sent += 1;
        if self.group_of(from) != self.group_of(to) {
            self.counters.dropped_partition += 1;
            return Route::default();
        }
        if self.blocked.contains(&(from, to)) {
            self.counters.dropped_blocked += 1;
            return Route::default();
        }
        if self.config.drop_probability > 0.0 && rng.random_bool(self.config.drop_probability) {
            self.counters.dropped_loss += 1;
            return Route::default();
        }
        let extra_ms = self.slow.get(&(from, to)).copied().unwrap_or(0);
        let latency_ms = Some(self.latency(rng) + extra_ms);
        let duplicate_latency_ms = if self.config.duplicate_probability > 0.0
            && rng.random_bool(self.config.duplicate_probability)
        {
            self.counters.duplicated += 1;
            Some(self.latency(rng) + extra_ms)
        } else {
            None
        };
        Route {
            latency_ms,
            duplicate_latency_ms,
        }
    }

    fn latency(&self, rng: &mut StdRng) -> u64 {
        if self.config.latency_ms_min == self.config.latency_ms_max {
            return self.config.latency_ms_min;
        }
        rng.random_range(self.config.latency_ms_min..=self.config.latency_ms_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 7000))
    }

    #[test]
    fn partitions_are_symmetric_and_blocks_are_one_way() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut network = Network::new(NetworkConfig::lan());
        network.partition(&[vec![addr(1), addr(2)], vec![addr(3)]]);
        assert!(
            network
                .route(&mut rng, addr(1), addr(2))
                .latency_ms
                .is_some()
        );
        assert!(
            network
                .route(&mut rng, addr(1), addr(3))
                .latency_ms
                .is_none()
        );
        assert!(
            network
                .route(&mut rng, addr(3), addr(1))
                .latency_ms
                .is_none()
        );
        // Unlisted nodes are together, apart from every named set.
        assert!(
            network
                .route(&mut rng, addr(4), addr(5))
                .latency_ms
                .is_some()
        );
        assert!(
            network
                .route(&mut rng, addr(4), addr(1))
                .latency_ms
                .is_none()
        );
        network.heal();
        network.block_one_way(addr(1), addr(2));
        assert!(
            network
                .route(&mut rng, addr(1), addr(2))
                .latency_ms
                .is_none()
        );
        assert!(
            network
                .route(&mut rng, addr(2), addr(1))
                .latency_ms
                .is_some()
        );
        let counters = network.counters();
        assert_eq!(counters.sent, 7);
        assert_eq!(counters.dropped_partition, 3);
        assert_eq!(counters.dropped_blocked, 1);
    }

    #[test]
    fn loss_and_duplication_follow_their_probabilities() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut network = Network::new(NetworkConfig {
            latency_ms_min: 3,
            latency_ms_max: 9,
            drop_probability: 0.1,
            duplicate_probability: 0.2,
        });
        for _ in 0..10_000 {
            let route = network.route(&mut rng, addr(1), addr(2));
            for latency in route
                .latency_ms
                .into_iter()
                .chain(route.duplicate_latency_ms)
            {
                assert!((3..=9).contains(&latency));
            }
        }
        let counters = network.counters();
        assert!((800..1200).contains(&counters.dropped_loss), "{counters:?}");
        assert!((1600..2000).contains(&counters.duplicated), "{counters:?}");
    }
}
