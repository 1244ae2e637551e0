//! A resource guarded by fencing tokens, as the storage behind a lock would be.

use std::collections::BTreeMap;

use ha_core::Millis;
use ha_lock::FencingToken;

/// One write a lock holder made to the fenced resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedWrite {
    /// The lock guarding the resource.
    pub lock: String,
    /// Virtual time of the write.
    pub at: Millis,
    /// The writer's fencing token.
    pub token: FencingToken,
    /// The writing client.
    pub client: usize,
    /// Whether the resource accepted it (its token was not below one already accepted).
    pub accepted: bool,
}

/// Test-side storage that accepts a write only when its fencing token is at least the highest
/// it has accepted for that lock, and records every write.
///
/// A client writes only while it believes it holds the lock (before its safe deadline), so a
/// rejected write means two clients believed they held the lock at once, the later one with a
/// newer token: the fencing saved the data, but the lock did not.
///
/// ```
/// use ha_core::Millis;
/// use ha_lock::FencingToken;
/// use ha_tests::lock_sim::FencedResource;
/// let mut resource = FencedResource::default();
/// assert!(resource.write("jobs", Millis(10), FencingToken(5), 0));
/// assert!(resource.write("jobs", Millis(20), FencingToken(7), 1));
/// assert!(!resource.write("jobs", Millis(30), FencingToken(5), 0)); // a stale holder
/// assert_eq!(resource.rejected().count(), 1);
/// ```
#[derive(Clone, Debug, Default)]
pub struct FencedResource {
    highest_accepted: BTreeMap<String, FencingToken>,
    writes: Vec<FencedWrite>,
}

impl FencedResource {
    /// `client` writes to the resource guarded by `lock` at `at` with `token`; returns whether
    /// the resource accepted it.
    pub fn write(&mut self, lock: &str, at: Millis, token: FencingToken, client: usize) -> bool {
        let highest = self
            .highest_accepted
            .entry(lock.to_string())
            .or_insert(FencingToken(0));
        let accepted = token >= *highest;
        if accepted {
            *highest = token;
        }
        self.writes.push(FencedWrite {
            lock: lock.to_string(),
            at,
            token,
            client,
            accepted,
        });
        accepted
    }

    /// Every write, in the order they were made.
    pub fn writes(&self) -> &[FencedWrite] {
        &self.writes
    }

    /// The writes the resource refused.
    pub fn rejected(&self) -> impl Iterator<Item = &FencedWrite> {
        self.writes.iter().filter(|write| !write.accepted)
    }
}
