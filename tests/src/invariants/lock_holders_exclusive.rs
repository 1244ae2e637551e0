//! Mutual exclusion: no two clients use one lock at the same time, fencing tokens grow with
//! time, and the fenced resource never had to refuse a holder's write.

use std::collections::BTreeMap;

use crate::lock_sim::{FencedResource, HolderInterval};

/// Check the holders' intervals of every lock and the fenced resource's record. Each interval
/// runs from when a client learned of its grant to when it stopped using the lock (it sent
/// the release, or its safe deadline passed). Returns how many intervals were checked.
///
/// # Errors
/// The first of: two intervals of one lock that overlap (unless they are the same grant, the
/// same client, lease and token); a later interval with a smaller token, or another holder
/// with the same token; a write the fenced resource refused.
///
/// ```
/// use ha_core::Millis;
/// use ha_lock::{FencingToken, LeaseId};
/// use ha_tests::invariants::check_lock_holders_exclusive;
/// use ha_tests::lock_sim::{FencedResource, HoldEnd, HolderInterval};
/// let hold = |client: usize, token: u64, start, end| HolderInterval {
///     lock: "jobs".into(), client, lease: LeaseId(client as u64), token: FencingToken(token),
///     start: Millis(start), end: Millis(end), ended_by: HoldEnd::Released,
/// };
/// let resource = FencedResource::default();
/// assert!(check_lock_holders_exclusive(&[hold(0, 3, 0, 10), hold(1, 8, 12, 20)], &resource).is_ok());
/// assert!(check_lock_holders_exclusive(&[hold(0, 3, 0, 10), hold(1, 8, 9, 20)], &resource).is_err());
/// assert!(check_lock_holders_exclusive(&[hold(0, 8, 0, 10), hold(1, 3, 12, 20)], &resource).is_err());
/// ```
pub fn check_lock_holders_exclusive(
    intervals: &[HolderInterval],
    resource: &FencedResource,
) -> Result<usize, String> {
    let mut by_lock: BTreeMap<&str, Vec<&HolderInterval>> = BTreeMap::new();
    for interval in intervals {
        by_lock
            .entry(interval.lock.as_str())
            .or_default()
            .push(interval);
    }
    for (lock, mut holds) in by_lock {
        holds.sort_by_key(|hold| (hold.start, hold.end, hold.token, hold.client));
        let mut latest: Option<&HolderInterval> = None;
        for hold in holds {
            if let Some(previous) = latest {
                let same_grant = previous.client == hold.client
                    && previous.lease == hold.lease
                    && previous.token == hold.token;
                if hold.start < previous.end && !same_grant {
                    return Err(format!(
                        "lock {lock}: client {} used it from {} to {} (token {}, lease {}) while client {} \
                         used it from {} to {} (token {}, lease {})",
                        hold.client,
                        hold.start,
                        hold.end,
                        hold.token,
                        hold.lease,
                        previous.client,
                        previous.start,
                        previous.end,
                        previous.token,
                        previous.lease
                    ));
                }
                if hold.token < previous.token || (hold.token == previous.token && !same_grant) {
                    return Err(format!(
                        "lock {lock}: token {} (client {}, from {}) after token {} (client {}, from {})",
                        hold.token,
                        hold.client,
                        hold.start,
                        previous.token,
                        previous.client,
                        previous.start
                    ));
                }
            }
            if latest.is_none_or(|previous| hold.end > previous.end) {
                latest = Some(hold);
            }
        }
    }
    if let Some(write) = resource.rejected().next() {
        return Err(format!(
            "the fenced resource of lock {} refused client {}'s write at {} with token {}: \
             a newer token had already written",
            write.lock, write.client, write.at, write.token
        ));
    }
    Ok(intervals.len())
}
