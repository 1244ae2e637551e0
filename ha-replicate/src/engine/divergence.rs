//! A replica whose applied state the consistency monitor found different from the
//! majority's: it never campaigns, and it may hold applying until a snapshot from the leader
//! replaces its state (see `replica::consistency_monitor`).

use ha_core::Millis;

use crate::engine::engine::Engine;
use crate::entry::ElectionCause;

impl Engine {
    /// The consistency monitor found this node's applied state diverged (`true`) or a
    /// snapshot from the leader replaced it (`false`). A diverged node never campaigns, never
    /// answers `TimeoutNow`, and a diverged leader hands leadership over (recorded as
    /// `unhealthy_leader`). With `hold_apply`, committed entries are not handed out for
    /// applying until the state is replaced, so a snapshot the leader takes after the repair
    /// request is never older than the applied state, and a snapshot at or past the applied
    /// index is installed even when the log already holds what it covers.
    pub fn set_diverged(&mut self, now: Millis, diverged: bool, hold_apply: bool) {
        self.observe(now);
        self.diverged = diverged;
        self.apply_held = diverged && hold_apply;
        if diverged {
            if self.is_leader()
                && self.transfer.is_none()
                && let Err(error) =
                    self.transfer_leadership(now, None, ElectionCause::UnhealthyLeader)
            {
                tracing::warn!(%error, "diverged leader cannot hand over");
            }
        } else {
            self.emit_apply();
        }
    }

    /// Whether the consistency monitor marked this node diverged.
    #[cfg(any(test, feature = "test-support"))]
    pub fn diverged(&self) -> bool {
        self.diverged
    }
}

#[cfg(test)]
mod tests {
    use ha_core::NodeId;

    use super::*;
    use crate::engine::{Effect, EngineSettings, EngineStart, TimerKind};
    use crate::membership::VoterSet;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("valid id")
    }

    fn engine() -> Engine {
        let mut engine = Engine::new(
            EngineSettings::for_test(id("n1")),
            EngineStart::default(),
            Millis(0),
            3,
        );
        assert!(engine.bootstrap(
            Millis(0),
            VoterSet::with_voters([id("n1"), id("n2"), id("n3")])
        ));
        engine.drain_effects();
        engine
    }

    fn campaigns(effects: &[Effect]) -> bool {
        effects
            .iter()
            .any(|effect| matches!(effect, Effect::Send { .. }))
    }

    #[test]
    fn a_diverged_node_never_campaigns_until_its_state_is_replaced() {
        let mut engine = engine();
        engine.set_diverged(Millis(1), true, true);
        assert!(engine.diverged());
        assert!(!engine.campaign(Millis(2)), "not even by hand");
        let generation = engine.timer_generation(TimerKind::Election);
        engine.on_timer(Millis(10_000), TimerKind::Election, generation);
        let effects = engine.drain_effects();
        assert!(!campaigns(&effects), "{effects:?}");

        // Repaired: it campaigns again at its next election timeout.
        engine.set_diverged(Millis(10_001), false, false);
        let generation = engine.timer_generation(TimerKind::Election);
        engine.on_timer(Millis(20_000), TimerKind::Election, generation);
        let effects = engine.drain_effects();
        assert!(campaigns(&effects), "{effects:?}");
    }

    #[test]
    fn a_diverged_node_does_not_campaign_even_past_the_unwell_wait() {
        // A DEGRADED voter campaigns after `unwell_campaign_after_ms` without a leader (the
        // rule for a cluster whose voters are all equally unwell); a diverged one must not.
        let mut engine = engine();
        let wait_ms = engine
            .settings()
            .unwell_campaign_after_ms
            .expect("the unwell wait is on by default");
        engine.set_local_health(Millis(1), ha_core::HealthStatus::Degraded);
        engine.set_diverged(Millis(1), true, true);
        engine.drain_effects();
        let late = Millis(wait_ms.saturating_mul(10));
        let generation = engine.timer_generation(TimerKind::Election);
        engine.on_timer(late, TimerKind::Election, generation);
        let effects = engine.drain_effects();
        assert!(!campaigns(&effects), "{effects:?}");

        // The same node, not diverged, campaigns after the wait (the check above can fail).
        engine.set_diverged(late, false, false);
        let later = Millis(late.0.saturating_add(wait_ms.saturating_mul(10)));
        let generation = engine.timer_generation(TimerKind::Election);
        engine.on_timer(later, TimerKind::Election, generation);
        let effects = engine.drain_effects();
        assert!(campaigns(&effects), "{effects:?}");
    }
}
