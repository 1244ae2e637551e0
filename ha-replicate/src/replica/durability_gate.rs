//! The one place where "persist before send" is enforced: outgoing effects wait here until the
//! storage writes they rest on are durable.

use std::collections::VecDeque;

use crate::engine::{After, PersistId};
use crate::replica::replica_core::ReplicaEffect;

/// Most effects held at once before the gate counts itself over its bound. Holding is bounded
/// by the work one unsynced batch can produce (proposals are bounded by the engine's
/// `uncommitted_entries_max`, requests by the driver's queues); this figure only backs a debug
/// assertion that catches a sync that is never requested.
pub const HELD_EFFECTS_MAX: usize = 1 << 20;

/// Outgoing effects (messages, client answers) held until the writes they rest on are durable.
///
/// Each effect comes with its barrier ([`After`]); the gate releases an effect when its
/// barrier holds, and keeps the order of everything it held: an effect that waits is never
/// overtaken by a later one that also waits. [`After::Now`] effects (a leader's appends,
/// timers, role changes) pass at once: they promise nothing about this node's disk.
#[derive(Debug, Default)]
pub struct DurabilityGate {
    /// The latest write id reported durable.
    durable: PersistId,
    /// Effects waiting, with the write id each waits for (non-decreasing).
    held: VecDeque<(PersistId, ReplicaEffect)>,
}

impl DurabilityGate {
    /// A gate with nothing durable and nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pass `effect` to `out` now if `after` holds (and nothing earlier waits), else hold it.
    pub fn pass(&mut self, after: After, effect: ReplicaEffect, out: &mut Vec<ReplicaEffect>) {
        match after {
            After::Now => out.push(effect),
            After::Durable(id) if id <= self.durable && self.held.is_empty() => out.push(effect),
            After::Durable(id) => {
                // Keep the order: an effect never waits for less than one held before it.
                let id = self.held.back().map_or(id, |(last, _)| (*last).max(id));
                self.held.push_back((id, effect));
                debug_assert!(
                    self.held.len() <= HELD_EFFECTS_MAX,
                    "{} effects held: is a sync ever requested?",
                    self.held.len()
                );
            }
        }
    }

    /// Writes through `id` are durable: release, in order, every effect that waited for them.
    pub fn on_persisted(&mut self, id: PersistId, out: &mut Vec<ReplicaEffect>) {
        self.durable = self.durable.max(id);
        while let Some((waits_for, _)) = self.held.front() {
            if *waits_for > self.durable {
                break;
            }
            if let Some((_, effect)) = self.held.pop_front() {
                out.push(effect);
            }
        }
    }

    /// The latest write id reported durable.
    pub fn durable(&self) -> PersistId {
        self.durable
    }

    /// How many effects wait.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Take every waiting effect, in order (the store failed: the caller decides which may
    /// still leave).
    pub fn take_held(&mut self) -> Vec<ReplicaEffect> {
        self.held.drain(..).map(|(_, effect)| effect).collect()
    }

    /// Forget every waiting effect (the replica stopped).
    pub fn clear(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::client::ClientReply;

    fn reply(request_id: u64) -> ReplicaEffect {
        ReplicaEffect::Reply {
            request_id,
            reply: ClientReply::Accepted {
                index: ha_core::LogIndex(request_id),
            },
        }
    }

    #[test]
    fn effects_wait_for_their_write_and_leave_in_order() {
        let mut gate = DurabilityGate::new();
        let mut out = Vec::new();
        gate.pass(After::Durable(PersistId(2)), reply(1), &mut out);
        gate.pass(After::Now, reply(2), &mut out);
        gate.pass(After::Durable(PersistId(1)), reply(3), &mut out);
        assert_eq!(out, vec![reply(2)], "only the unconditional one leaves");
        gate.on_persisted(PersistId(1), &mut out);
        assert_eq!(
            out,
            vec![reply(2)],
            "3 waits behind 1, which waits for write 2"
        );
        gate.on_persisted(PersistId(2), &mut out);
        assert_eq!(out, vec![reply(2), reply(1), reply(3)]);
        assert_eq!(gate.held_len(), 0);
    }

    #[test]
    fn an_effect_whose_write_is_durable_leaves_at_once() {
        let mut gate = DurabilityGate::new();
        let mut out = Vec::new();
        gate.on_persisted(PersistId(5), &mut out);
        gate.pass(After::Durable(PersistId(5)), reply(1), &mut out);
        assert_eq!(out, vec![reply(1)]);
        gate.pass(After::Durable(PersistId(6)), reply(2), &mut out);
        gate.on_persisted(PersistId(4), &mut out);
        assert_eq!(out, vec![reply(1)], "an older report releases nothing");
        assert_eq!(gate.take_held(), vec![reply(2)]);
    }
}
