//! A process-wide table of shared values: equal values decoded by different members (or many
//! times by one) share one allocation.
//!
//! A simulated 10,000-member cluster holds 10^8 (observer, member) pairs in one process; each
//! observer decoding its own copy of every identity and metadata was most of the ~1 KB per
//! pair that kept it from fitting. Sharing equal immutable values changes nothing a member can
//! observe: a member still decides alone what it believes, it only points at the same bytes.
//! In a deployment (one node per process) the table holds about one entry per cluster member.

use std::hash::Hash;
use std::sync::Arc;

// hashbrown's set hashes with foldhash: `intern` with std's SipHash was about 6% of a
// 1,000-member join's CPU (perf, issue 17; every decoded identity is interned). The table is
// only looked up and swept, never iterated in an order anyone sees, so its seeded hasher
// changes no outcome.
use hashbrown::{Equivalent, HashSet};
use parking_lot::Mutex;

/// Fewest entries before the table sweeps out values nobody else holds.
const SWEEP_FLOOR: usize = 1_024;

/// Values shared by [`Interner::intern`]. Values no member holds any more are dropped when the
/// table has doubled since its last sweep, so it stays within twice what is in use.
#[derive(Debug)]
pub(crate) struct Interner<T> {
    inner: Mutex<Table<T>>,
}

#[derive(Debug)]
struct Table<T> {
    values: Option<HashSet<Arc<T>>>,
    sweep_at: usize,
}

impl<T: Hash + Eq> Interner<T> {
    /// An empty table (usable in a `static`).
    pub(crate) const fn new() -> Self {
        Self {
            inner: Mutex::new(Table {
                values: None,
                sweep_at: SWEEP_FLOOR,
            }),
        }
    }

    /// The shared copy of `value`: an existing one when an equal value is in use, else
    /// `value` itself, now shared.
    pub(crate) fn intern(&self, value: T) -> Arc<T> {
        let mut table = self.inner.lock();
        let values = table.values.get_or_insert_with(HashSet::new);
        if let Some(shared) = values.get(&value) {
            return Arc::clone(shared);
        }
        Self::insert_new(&mut table, value)
    }

    /// The shared copy of the value `key` stands for (a borrowed form, hashing as the value
    /// does): an existing one, or a new one from `make`, which may refuse. Looking up a value
    /// already in use allocates nothing.
    ///
    /// # Errors
    /// What `make` returned, when the value was not in use and `make` refused to build it.
    pub(crate) fn intern_borrowed<Q, E>(
        &self,
        key: &Q,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E>
    where
        Q: Hash + Equivalent<Arc<T>> + ?Sized,
    {
        let mut table = self.inner.lock();
        let values = table.values.get_or_insert_with(HashSet::new);
        if let Some(shared) = values.get(key) {
            return Ok(Arc::clone(shared));
        }
        let value = make()?;
        Ok(Self::insert_new(&mut table, value))
    }

    /// Share `value`, not in the table, sweeping first when the table has doubled.
    fn insert_new(table: &mut Table<T>, value: T) -> Arc<T> {
        let sweep_at = table.sweep_at;
        let values = table.values.get_or_insert_with(HashSet::new);
        let mut next_sweep = None;
        if values.len() >= sweep_at {
            // Held only by this table: no member uses it any more.
            values.retain(|shared| Arc::strong_count(shared) > 1);
            next_sweep = Some((2 * values.len()).max(SWEEP_FLOOR));
        }
        let shared = Arc::new(value);
        values.insert(Arc::clone(&shared));
        if let Some(next) = next_sweep {
            table.sweep_at = next;
        }
        shared
    }

    /// Values in the table (in use or not yet swept), for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().values.as_ref().map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation() {
        let table = Interner::new();
        let a = table.intern(String::from("n1"));
        let b = table.intern(String::from("n1"));
        let c = table.intern(String::from("n2"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*c, "n2");
    }

    #[test]
    fn unused_values_are_swept() {
        let table = Interner::new();
        let kept = table.intern(0u32);
        for value in 1..10_000u32 {
            let _dropped = table.intern(value);
        }
        // Swept whenever it doubled: never more than twice the floor here.
        assert!(table.len() <= 2 * SWEEP_FLOOR + 1, "{} values", table.len());
        assert!(Arc::ptr_eq(&kept, &table.intern(0)));
    }
}
