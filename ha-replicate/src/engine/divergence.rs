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
    pub fn diverged(&self) -> bool {
        self.diverged
    }
}
