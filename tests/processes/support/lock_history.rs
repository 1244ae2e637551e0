//! A lock client of the admin HTTP API that records when it held a lock, for the simulator's
//! exclusivity check (`ha_tests::invariants::check_lock_holders_exclusive`).
//!
//! A grant is trusted from when its answer arrived until the client's safe deadline: the time
//! it *sent* the acquire plus the TTL minus a margin. The lease started after the request was
//! sent, and a lease is expired only by a leader that counted the whole TTL (a new leader
//! counts it afresh), so no other client can be granted the lock before that deadline, on one
//! machine's monotonic clock. The hold ends at the release or at that deadline, whichever is
//! first; an answer that arrives after the deadline is not used at all.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ha::{FencingToken, LeaseId};
use ha_core::Millis;
use ha_tests::lock_sim::{HoldEnd, HolderInterval};
use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::Value;

/// The lock's TTL.
pub const LOCK_TTL: Duration = Duration::from_millis(1_500);
/// Taken off the TTL for the safe deadline: timer and scheduling slack on a busy machine.
const SAFE_MARGIN: Duration = Duration::from_millis(200);
/// How long an acquire waits for the lock.
const WAIT: Duration = Duration::from_millis(1_000);

/// Counts of what the client saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct LockCounts {
    /// Grants used.
    pub grants: u64,
    /// Grants whose answer came too late to use.
    pub late_grants: u64,
    /// Acquires refused (held, timed out) or unanswered.
    pub refused: u64,
}

impl LockCounts {
    /// Add `other`'s counts.
    pub fn add(&mut self, other: &LockCounts) {
        self.grants += other.grants;
        self.late_grants += other.late_grants;
        self.refused += other.refused;
    }
}

/// One lock client, contending for `lock`.
pub struct LockClient {
    id: usize,
    lock: String,
    origin: Instant,
    http: reqwest::blocking::Client,
    /// The holds it used.
    pub holds: Vec<HolderInterval>,
    /// What it saw.
    pub counts: LockCounts,
}

impl LockClient {
    /// Client `id` on `lock`; times are milliseconds since `origin`.
    pub fn new(id: usize, lock: &str, origin: Instant) -> Self {
        let http = reqwest::blocking::Client::builder()
            .timeout(WAIT + Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        Self {
            id,
            lock: lock.to_string(),
            origin,
            http,
            holds: Vec::new(),
            counts: LockCounts::default(),
        }
    }

    fn now(&self) -> Millis {
        Millis(self.origin.elapsed().as_millis() as u64)
    }

    /// Acquire the lock through `node`, hold it a little, release it. Records the hold.
    pub fn acquire_hold_release(&mut self, node: SocketAddr, rng: &mut StdRng) {
        let sent = Instant::now();
        let url = format!(
            "http://{node}/v1/lock/{}?ttl_ms={}&wait_ms={}",
            self.lock,
            LOCK_TTL.as_millis(),
            WAIT.as_millis()
        );
        let granted = self
            .http
            .post(url)
            .send()
            .ok()
            .filter(|response| response.status().as_u16() == 200)
            .and_then(|response| response.json::<Value>().ok());
        let Some(grant) = granted else {
            self.counts.refused += 1;
            return;
        };
        let start = self.now();
        let safe_until = sent + LOCK_TTL - SAFE_MARGIN;
        if Instant::now() >= safe_until {
            self.counts.late_grants += 1;
            return;
        }
        let token = FencingToken(grant["token"].as_u64().expect("token"));
        let lease = LeaseId(grant["lease"].as_u64().expect("lease"));
        // The grant's holder key (issue 13): a release without it is refused.
        let holder = grant["holder"].as_str().expect("holder").to_string();
        self.counts.grants += 1;
        let hold = Duration::from_millis(rng.random_range(20..150));
        std::thread::sleep(hold.min(safe_until.saturating_duration_since(Instant::now())));
        let (end, ended_by) = if Instant::now() < safe_until {
            (self.now(), HoldEnd::Released)
        } else {
            let deadline = safe_until.duration_since(self.origin).as_millis() as u64;
            (Millis(deadline), HoldEnd::LeaseLost)
        };
        self.holds.push(HolderInterval {
            lock: self.lock.clone(),
            client: self.id,
            lease,
            token,
            start,
            end,
            ended_by,
        });
        let release = format!(
            "http://{node}/v1/lock/{}?token={token}&holder={holder}",
            self.lock
        );
        // A lost release leaves the lock to its TTL; the hold above has ended either way.
        let _ = self.http.delete(release).send();
    }
}
