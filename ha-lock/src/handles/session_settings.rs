//! How patient a [`Session`](super::Session) is, and how often it polls.

use std::time::Duration;

/// Timeouts and poll intervals of a [`Session`](super::Session) and its handles.
///
/// ```
/// use std::time::Duration;
/// use ha_lock::SessionSettings;
/// let mut settings = SessionSettings::default();
/// settings.request_timeout = Duration::from_secs(2);
/// assert_eq!(settings.lock_poll_interval, Duration::from_millis(15));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionSettings {
    /// How long one request (a write or a read, with its automatic retries across leader
    /// changes) may take before it fails with a timeout.
    pub request_timeout: Duration,
    /// How often a queued acquire reads the lock's state to learn whether it was granted.
    pub lock_poll_interval: Duration,
    /// How often a [`Watch`](super::Watch) or a
    /// [`LeaderObserver`](super::LeaderObserver) reads for news.
    pub watch_poll_interval: Duration,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            lock_poll_interval: Duration::from_millis(15),
            watch_poll_interval: Duration::from_millis(20),
        }
    }
}
