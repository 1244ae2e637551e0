//! The other half of fencing: a resource that refuses writes from a stale lock holder.

use std::sync::Mutex;

use crate::command::FencingToken;

/// A write carried a fencing token lower than one the resource has already accepted: its
/// sender held the lock once but has since lost it to the holder of the higher token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("fencing token {presented} is stale: token {highest} was already seen")]
pub struct StaleToken {
    /// The token the write carried.
    pub presented: FencingToken,
    /// The highest token the resource has accepted.
    pub highest: FencingToken,
}

/// A resource protected by the fencing tokens of one lock: it accepts a write only with a token at least as
/// high as every token it has accepted before, and remembers the highest.
///
/// A lock alone cannot stop a holder that paused (a long GC, a stopped VM) past its lease,
/// woke up and wrote after another process had been granted the lock. Fencing can: the grants
/// of one lock carry strictly increasing tokens, and the resource itself rejects the old holder's token
/// once it has seen the new one. Real resources do this in their own storage (a column with
/// the highest token, a conditional write); this type shows the pattern around any value.
///
/// ```
/// use ha_lock::{FencedResource, FencingToken, StaleToken};
///
/// let journal = FencedResource::new(Vec::<&str>::new());
/// // The first holder (token 7) writes.
/// journal.write(FencingToken(7), |entries| entries.push("from 7")).unwrap();
/// // It pauses past its lease; the lock passes to a new holder with token 12, who writes.
/// journal.write(FencingToken(12), |entries| entries.push("from 12")).unwrap();
/// // The first holder wakes up and tries again: refused.
/// assert_eq!(
///     journal.write(FencingToken(7), |entries| entries.push("late")),
///     Err(StaleToken { presented: FencingToken(7), highest: FencingToken(12) })
/// );
/// assert_eq!(journal.read(|entries| entries.clone()), vec!["from 7", "from 12"]);
/// ```
#[derive(Debug, Default)]
pub struct FencedResource<T> {
    state: Mutex<Fenced<T>>,
}

#[derive(Debug, Default)]
struct Fenced<T> {
    highest: Option<FencingToken>,
    value: T,
}

impl<T> FencedResource<T> {
    /// Protect `value`; no token seen yet.
    pub fn new(value: T) -> Self {
        Self {
            state: Mutex::new(Fenced {
                highest: None,
                value,
            }),
        }
    }

    /// Apply `write` to the value if `token` is at least the highest token seen (the same
    /// holder writes many times with one token), and remember it.
    ///
    /// # Errors
    /// [`StaleToken`] when a higher token was seen: the value is untouched and the caller no
    /// longer holds the lock.
    pub fn write<R>(
        &self,
        token: FencingToken,
        write: impl FnOnce(&mut T) -> R,
    ) -> Result<R, StaleToken> {
        let mut state = self.lock();
        if let Some(highest) = state.highest
            && token < highest
        {
            return Err(StaleToken {
                presented: token,
                highest,
            });
        }
        state.highest = Some(token);
        Ok(write(&mut state.value))
    }

    /// Read the value (reads need no token).
    pub fn read<R>(&self, read: impl FnOnce(&T) -> R) -> R {
        read(&self.lock().value)
    }

    /// The highest token accepted so far.
    pub fn highest_token(&self) -> Option<FencingToken> {
        self.lock().highest
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fenced<T>> {
        // A panic inside a caller's closure poisons the mutex; the token check still holds
        // for what was written before it, so carry on with the value as it is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
