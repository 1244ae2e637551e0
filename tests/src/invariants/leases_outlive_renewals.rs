//! Leases: no lease expires while its holder renews in time.

use std::collections::BTreeMap;

use ha_core::Millis;
use ha_lock::{LeaseId, LockCommand, LockResponse};

use crate::lock_sim::{AppliedLockCommand, AppliedResult, SendTimes};

/// What the lease invariant saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseExpiryCheck {
    /// Leases granted in the log.
    pub leases_granted: usize,
    /// Expiries that ended a lease, each checked against its holder's last renewal.
    pub expiries_checked: usize,
    /// Expiries that raced a keep-alive and lost (`LeaseStillAlive`).
    pub expiries_refused: usize,
    /// The smallest time from a holder's last successful send to its lease's expiry, in
    /// virtual milliseconds, over all checked expiries.
    pub shortest_life_after_last_send_ms: Option<u64>,
}

/// For every `LeaseExpire` that ended a lease, the time it first took effect (on any node)
/// must be at least `TTL - drift_margin_ms` after its holder sent the last grant or keep-alive
/// that the log applied successfully before it: the promise the holder's safe deadline relies
/// on. `applied` is the replayed log (in index order); `send_times` has the first send time
/// of every client write.
///
/// # Errors
/// The first expiry that came too early, with the lease's history; or a grant or keep-alive
/// the log applied that no client sent.
pub fn check_leases_outlive_renewals(
    applied: &[AppliedLockCommand],
    send_times: &SendTimes,
    drift_margin_ms: u64,
) -> Result<LeaseExpiryCheck, String> {
    struct Life {
        ttl_ms: u64,
        granted_index: u64,
        last_send: Millis,
        renewals: u64,
    }
    let mut lives: BTreeMap<LeaseId, Life> = BTreeMap::new();
    let mut check = LeaseExpiryCheck::default();
    let sent = |command: &AppliedLockCommand| {
        send_times
            .first_sent(command.session, command.sequence)
            .ok_or_else(|| {
                format!(
                    "index {}: {:?} applied from session {:016x} sequence {}, which no client sent",
                    command.index, command.command, command.session, command.sequence
                )
            })
    };
    for command in applied {
        let AppliedResult::Applied(response) = &command.result else {
            continue;
        };
        match (&command.command, response) {
            (LockCommand::LeaseGrant { ttl_ms, .. }, LockResponse::LeaseGranted { lease, .. }) => {
                check.leases_granted += 1;
                lives.insert(
                    *lease,
                    Life {
                        ttl_ms: *ttl_ms,
                        granted_index: command.index.0,
                        last_send: sent(command)?,
                        renewals: 0,
                    },
                );
            }
            (
                LockCommand::GrantAndAcquire { ttl_ms, .. },
                LockResponse::GrantedWithLease { lease, .. }
                | LockResponse::QueuedWithLease { lease, .. },
            ) => {
                check.leases_granted += 1;
                lives.insert(
                    *lease,
                    Life {
                        ttl_ms: *ttl_ms,
                        granted_index: command.index.0,
                        last_send: sent(command)?,
                        renewals: 0,
                    },
                );
            }
            (LockCommand::LeaseKeepAlive { lease }, LockResponse::LeaseRenewed { .. }) => {
                let send = sent(command)?;
                if let Some(life) = lives.get_mut(lease) {
                    life.last_send = life.last_send.max(send);
                    life.renewals += 1;
                }
            }
            (LockCommand::LeaseExpire { lease, renewals }, LockResponse::LeaseEnded { .. }) => {
                let Some(life) = lives.remove(lease) else {
                    continue;
                };
                check.expiries_checked += 1;
                let life_ms = command.at.0 as i128 - life.last_send.0 as i128;
                let promised_ms = life.ttl_ms.saturating_sub(drift_margin_ms);
                let shortest = check
                    .shortest_life_after_last_send_ms
                    .get_or_insert(u64::MAX);
                *shortest = (*shortest).min(u64::try_from(life_ms.max(0)).unwrap_or(0));
                if life_ms < i128::from(promised_ms) {
                    return Err(format!(
                        "lease {lease} (granted at index {}, TTL {} ms, {} keep-alives) expired at \
                         index {} (expiry for {renewals} renewals) at {}, only {life_ms} ms after its \
                         holder's last successful send at {}: the holder was promised {promised_ms} ms",
                        life.granted_index,
                        life.ttl_ms,
                        life.renewals,
                        command.index,
                        command.at,
                        life.last_send
                    ));
                }
            }
            (LockCommand::LeaseExpire { .. }, LockResponse::LeaseStillAlive { .. }) => {
                check.expiries_refused += 1;
            }
            (LockCommand::LeaseRevoke { lease }, LockResponse::LeaseEnded { .. })
            | (LockCommand::ReleaseAndRevoke { .. }, LockResponse::LeaseEnded { lease, .. }) => {
                lives.remove(lease);
            }
            _ => {}
        }
    }
    Ok(check)
}
