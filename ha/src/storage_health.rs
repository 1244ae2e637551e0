//! The node's built-in `storage` health check: critical, UNHEALTHY while the replica's store
//! refuses writes (a full disk, `EIO`), so an unhealthy leader hands leadership over and the
//! node does not campaign until its disk works again.
//!
//! The replica publishes its stall ([`ReplicaNode::watch_storage`]); the check only reads it,
//! so it costs nothing and never touches the disk itself. See docs/ARCHITECTURE.md, "A full
//! disk (issue 14)".
//!
//! [`ReplicaNode::watch_storage`]: ha_replicate::driver::ReplicaNode::watch_storage

use std::sync::OnceLock;
use std::time::Duration;

use ha_core::{HealthCheck, HealthStatus};
use ha_replicate::storage::io_failure::StorageStall;
use tokio::sync::watch;

/// The check's name in `/v1/health` and metrics.
pub const STORAGE_CHECK: &str = "storage";

/// How often the check reads the replica's stall, in milliseconds: a few times per election
/// timeout, so a stalled leader hands over soon.
pub const STORAGE_CHECK_INTERVAL_MS: u64 = 200;

/// The `storage` check. It is built before the replica starts (the health runner is), and
/// [`attach`](Self::attach)ed to the replica once it runs; until then it reports HEALTHY
/// (nothing was written yet).
#[derive(Debug, Default)]
pub struct StorageHealthCheck {
    stall: OnceLock<watch::Receiver<Option<StorageStall>>>,
}

impl StorageHealthCheck {
    /// A check not yet attached to a replica.
    pub fn new() -> Self {
        Self::default()
    }

    /// Read the replica's storage stall from now on (the first call wins).
    pub fn attach(&self, stall: watch::Receiver<Option<StorageStall>>) {
        let _ = self.stall.set(stall);
    }

    /// The stall, if the replica reports one.
    pub fn stall(&self) -> Option<StorageStall> {
        self.stall.get().and_then(|stall| stall.borrow().clone())
    }
}

impl HealthCheck for StorageHealthCheck {
    fn name(&self) -> &str {
        STORAGE_CHECK
    }

    fn check(&self) -> HealthStatus {
        match self.stall() {
            Some(_) => HealthStatus::Unhealthy,
            None => HealthStatus::Healthy,
        }
    }

    fn critical(&self) -> bool {
        true
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(STORAGE_CHECK_INTERVAL_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_replicate::storage::io_failure::StorageFailureKind;

    #[test]
    fn the_check_follows_the_replicas_stall() {
        let check = StorageHealthCheck::new();
        assert_eq!(check.check(), HealthStatus::Healthy, "not attached yet");
        let (sender, receiver) = watch::channel(None);
        check.attach(receiver);
        assert_eq!(check.check(), HealthStatus::Healthy);
        sender.send_replace(Some(StorageStall {
            kind: StorageFailureKind::Full,
            detail: "No space left on device (os error 28)".to_string(),
            since_ms: 5,
            attempts: 0,
        }));
        assert_eq!(check.check(), HealthStatus::Unhealthy);
        assert!(check.critical());
        assert_eq!(check.name(), "storage");
        sender.send_replace(None);
        assert_eq!(check.check(), HealthStatus::Healthy);
    }
}
