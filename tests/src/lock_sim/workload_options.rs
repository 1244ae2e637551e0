//! What the lock clients do, and the bound on how much clock drift can shorten a lease.
//!
//! The clients' renewal times and safe deadlines are not options: they are the shipped rule,
//! [`ha_lock::LeaseRenewal`].

/// Milliseconds added to the drift bound for rounding: local clocks are read in whole
/// milliseconds and timers are scaled and rounded.
pub const DRIFT_MARGIN_SLACK_MS: u64 = 5;

/// The most a leader's clock running `clock_drift_ppm_max` fast can shorten `ttl_ms` of
/// virtual time, plus [`DRIFT_MARGIN_SLACK_MS`]: the leader-side lease invariant checks that
/// no lease expires sooner than `ttl_ms` minus this after its holder's last send. It is much
/// tighter than the holders' own margin ([`ha_lock::drift_margin`], 10% + 10 ms), so the
/// check catches a leader that expires early long before a holder could notice.
///
/// The leader starts a lease's TTL no earlier than the client sent its grant or keep-alive
/// (it counts from when it sees the command applied), and counts it on its own clock, so in
/// virtual time the lease lasts at least `ttl_ms / (1 + drift)` after the client's send.
///
/// ```
/// assert_eq!(ha_tests::lock_sim::clock_drift_bound_ms(1_000, 20_000), 25);
/// assert_eq!(ha_tests::lock_sim::clock_drift_bound_ms(1_000, 0), 5);
/// ```
pub fn clock_drift_bound_ms(ttl_ms: u64, clock_drift_ppm_max: i64) -> u64 {
    let ppm = u64::try_from(clock_drift_ppm_max.max(0)).unwrap_or(0);
    (ttl_ms * ppm).div_ceil(1_000_000) + DRIFT_MARGIN_SLACK_MS
}

/// What the lock clients do.
#[derive(Clone, Debug)]
pub struct LockWorkloadOptions {
    /// Concurrent clients.
    pub clients: usize,
    /// Distinct locks they compete for.
    pub lock_names: usize,
    /// Distinct KV keys.
    pub keys: usize,
    /// Each lease's TTL. The safe deadline and the keep-alive times follow from it by
    /// [`ha_lock::LeaseRenewal`].
    pub ttl_ms: u64,
    /// The most the nodes' clock drift can shorten a lease, for the leader-side lease check;
    /// see [`clock_drift_bound_ms`].
    pub clock_drift_bound_ms: u64,
    /// How long an acquire may wait in line before the client cancels it.
    pub wait_timeout_ms: u64,
    /// How often a waiting client reads the lock's state.
    pub poll_every_ms: u64,
    /// Longest time a client keeps a lock before releasing it, usually.
    pub hold_ms_max: u64,
    /// Fraction of holds that are long: up to `long_hold_ms_max`, beyond the TTL, so they
    /// rely on keep-alives, and end at the safe deadline when those fail.
    pub long_hold_fraction: f64,
    /// Longest long hold.
    pub long_hold_ms_max: u64,
    /// How often a holder writes to the fenced resource.
    pub use_every_ms: u64,
    /// The deadline of each attempt.
    pub attempt_timeout_ms: u64,
    /// How long a client retries one operation before its outcome is recorded as unknown.
    pub operation_timeout_ms: u64,
    /// Pause between a failed attempt and the retry.
    pub retry_delay_ms: u64,
    /// Longest pause between two operations of a client.
    pub think_ms_max: u64,
    /// Fraction of operations that are KV operations.
    pub kv_fraction: f64,
    /// Fraction of operations (of a client holding a lease and no lock) that revoke the lease.
    pub revoke_fraction: f64,
    /// Fraction of lock operations of a client without a lease that take the lease and the
    /// lock in one write (`GrantAndAcquire`) and later end both with the release
    /// (`ReleaseAndRevoke`), as the `Locks` handle does (issue 17); the others grant a lease first,
    /// then acquire under it as long as it lives. A client's first lease is not drawn: clients
    /// 0, 1, 4, 5, ... take it with a lock, the others grant it first, so both ways run in
    /// every run.
    pub lock_cycle_fraction: f64,
}

impl LockWorkloadOptions {
    /// Six clients, two locks, three keys, 1 s leases, on nodes whose clocks are off by up to
    /// `clock_drift_ppm_max`.
    pub fn new(clock_drift_ppm_max: i64) -> Self {
        let ttl_ms = 1_000;
        Self {
            clients: 6,
            lock_names: 2,
            keys: 3,
            ttl_ms,
            clock_drift_bound_ms: clock_drift_bound_ms(ttl_ms, clock_drift_ppm_max),
            wait_timeout_ms: 1_500,
            poll_every_ms: 20,
            hold_ms_max: 250,
            long_hold_fraction: 0.1,
            long_hold_ms_max: 3_000,
            use_every_ms: 10,
            attempt_timeout_ms: 300,
            operation_timeout_ms: 3_000,
            retry_delay_ms: 20,
            think_ms_max: 30,
            kv_fraction: 0.5,
            revoke_fraction: 0.02,
            lock_cycle_fraction: 0.7,
        }
    }
}
