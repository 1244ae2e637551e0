//! Where in the election timeout range a node draws its timer.
//!
//! Raft randomises the election timeout so that two candidates rarely start together and
//! split the vote. With priorities, candidates of different priorities cannot split it: a
//! voter with a higher priority and an equal log declines the lower one's pre-vote, and the
//! rank offset (`reset_election_timer`) puts their ranges apart. The full random range is
//! only needed against a voter of the *same* priority. A node whose priority no other voter
//! shares therefore draws from a narrow window near the start of the range: a failover then
//! takes about `min + (max - min) / 8 ..= min + (max - min) / 4` of silence (169-187 ms at
//! the LAN defaults) instead of anywhere in `[min, max)` (150-300 ms, median 225).
//!
//! The window does not start at `min`: every voter refuses (pre-)votes for `min` after it
//! last heard the leader (`refuses_votes`, which leader leases rely on), and the voters heard
//! the leader's last message at slightly different times. Starting an eighth of the range
//! later leaves that spread (19 ms at the defaults) for the other voters' refusal to end; a
//! pre-vote refused anyway costs one more timeout, as before.

use ha_core::Priority;

use crate::engine::engine::Engine;

impl Engine {
    /// The `[low, high)` range this node draws its election timeout from (before the rank
    /// offset), within the configured `[minimum, maximum)`: narrow when its priority is its
    /// own (see the module doc), else the whole of it.
    pub(crate) fn election_jitter_range(&self, minimum: u64, maximum: u64) -> (u64, u64) {
        if !self.priority_is_unique() {
            return (minimum, maximum);
        }
        let spread = maximum - minimum;
        let low = minimum + spread / 8;
        (low, (minimum + spread / 4).max(low + 1))
    }

    /// Whether every other voter's priority is known (from its gossip metadata) and differs
    /// from this node's. A voter whose metadata has not arrived may share the priority, so
    /// it counts as sharing. Reachability and health do not matter here: a peer that gossip
    /// calls down may still campaign, and then only the random range keeps two equal
    /// candidates apart.
    fn priority_is_unique(&self) -> bool {
        let own: Priority = self.settings.priority;
        self.log
            .membership()
            .voters
            .iter()
            .filter(|voter| **voter != self.settings.node_id)
            .all(|voter| {
                self.peers
                    .get(voter)
                    .is_some_and(|peer| peer.priority != own)
            })
    }
}

#[cfg(test)]
mod tests {
    use ha_core::{HealthStatus, LogIndex, Millis, NodeId, Priority, Term};

    use crate::engine::engine::{Engine, EngineStart, PeerInfo};
    use crate::engine::{Effect, EngineSettings, TimerKind};
    use crate::entry::{Entry, Payload};
    use crate::hard_state::HardState;
    use crate::membership::VoterSet;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    /// Node `b` of voters a, b, c with priority 20, defaults 150-300 ms.
    fn node_b(seed: u64) -> Engine {
        let voters = VoterSet::with_voters([id("a"), id("b"), id("c")]);
        let start = EngineStart {
            hard_state: HardState {
                term: Term(1),
                voted_for: None,
            },
            snapshot: None,
            entries: vec![Entry {
                term: Term(0),
                index: LogIndex(1),
                payload: Payload::Membership(voters),
            }],
        };
        let mut settings = EngineSettings::for_test(id("b"));
        settings.priority = Priority(20);
        settings.election_timeout_min_ms = 150;
        settings.election_timeout_max_ms = 300;
        let mut engine = Engine::new(settings, start, Millis(0), seed);
        engine.drain_effects();
        engine
    }

    fn peer(priority: u32) -> PeerInfo {
        PeerInfo {
            priority: Priority(priority),
            health: HealthStatus::Healthy,
            reachable: true,
            wants_vote: true,
            unreachable_since: None,
        }
    }

    /// The election timeouts `engine` draws over `draws` resets.
    fn timeouts(engine: &mut Engine, draws: usize) -> Vec<u64> {
        (0..draws)
            .map(|_| {
                engine.reset_election_timer();
                match engine.drain_effects().as_slice() {
                    [
                        Effect::SetTimer {
                            kind: TimerKind::Election,
                            after_ms,
                            ..
                        },
                    ] => *after_ms,
                    other => panic!("expected one election timer, got {other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn a_unique_priority_draws_from_the_narrow_window() {
        for seed in 0..20 {
            let mut engine = node_b(seed);
            // a (30) is the failed leader's peer here only as a voter with a higher priority
            // that gossip says cannot lead: b is rank 0 and shares its priority with no one.
            let mut down = peer(30);
            down.reachable = false;
            engine.set_peer_info(Millis(0), id("a"), down);
            engine.set_peer_info(Millis(0), id("c"), peer(10));
            for after_ms in timeouts(&mut engine, 50) {
                assert!(
                    (168..187).contains(&after_ms),
                    "seed {seed}: unique priority drew {after_ms} ms, outside [168, 187)"
                );
            }
        }
    }

    #[test]
    fn the_rank_offset_still_applies_to_a_unique_priority() {
        let mut engine = node_b(3);
        engine.set_peer_info(Millis(0), id("a"), peer(30));
        engine.set_peer_info(Millis(0), id("c"), peer(10));
        for after_ms in timeouts(&mut engine, 50) {
            assert!(
                (318..337).contains(&after_ms),
                "rank 1 with a unique priority drew {after_ms} ms, outside [318, 337)"
            );
        }
    }

    #[test]
    fn an_equal_or_unknown_priority_keeps_the_whole_range() {
        // c shares b's priority; then a's metadata alone (c unknown).
        let mut shared = node_b(5);
        shared.set_peer_info(Millis(0), id("a"), peer(10));
        shared.set_peer_info(Millis(0), id("c"), peer(20));
        let mut unknown = node_b(5);
        unknown.set_peer_info(Millis(0), id("a"), peer(10));
        for (name, engine) in [("shared", &mut shared), ("unknown", &mut unknown)] {
            let drawn = timeouts(engine, 400);
            assert!(
                drawn.iter().all(|after_ms| (150..300).contains(after_ms)),
                "{name}: a draw outside [150, 300): {drawn:?}"
            );
            // The whole range is used, not only the narrow window.
            assert!(
                drawn.iter().any(|after_ms| *after_ms >= 250),
                "{name}: no draw at or above 250 ms in 400"
            );
            assert!(
                drawn.iter().any(|after_ms| *after_ms < 160),
                "{name}: no draw below 160 ms in 400"
            );
        }
    }
}
