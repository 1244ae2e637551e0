//! Where the map keeps its entries: one ordered map per digest bucket.
//!
//! Bucket-major storage makes the anti-entropy reply (every entry of a few differing buckets)
//! cost the size of those buckets, not a scan of 100,000 keys under the node's lock; a prefix
//! listing merges the 256 per-bucket ranges in key order instead.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;

use super::Entry;
use super::digest::BUCKETS;

/// One key's entry and its digest hash (`digest::entry_hash(key, entry)`), cached so a change
/// costs one hash, not two.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) entry: Entry,
    pub(crate) hash: u64,
}

/// The entries, by bucket then key.
#[derive(Clone, Debug)]
pub(crate) struct Slots {
    buckets: Vec<BTreeMap<String, Slot>>,
    len: usize,
}

impl Slots {
    pub(crate) fn new() -> Self {
        // Empty BTreeMaps allocate nothing.
        Self {
            buckets: (0..BUCKETS).map(|_| BTreeMap::new()).collect(),
            len: 0,
        }
    }

    /// Entries held, tombstones included.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, bucket: u16, key: &str) -> Option<&Slot> {
        self.buckets.get(usize::from(bucket))?.get(key)
    }

    pub(crate) fn get_mut(&mut self, bucket: u16, key: &str) -> Option<&mut Slot> {
        self.buckets.get_mut(usize::from(bucket))?.get_mut(key)
    }

    /// Inserts a slot for a key not held yet (`bucket` is `bucket_of(key)`, below `BUCKETS`).
    pub(crate) fn insert_new(&mut self, bucket: u16, key: String, slot: Slot) {
        if let Some(map) = self.buckets.get_mut(usize::from(bucket))
            && map.insert(key, slot).is_none()
        {
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, bucket: u16, key: &str) -> Option<Slot> {
        let removed = self.buckets.get_mut(usize::from(bucket))?.remove(key);
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// Every entry, bucket by bucket, in key order within a bucket.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u16, &String, &Slot)> {
        self.buckets.iter().enumerate().flat_map(|(bucket, map)| {
            let bucket = u16::try_from(bucket).unwrap_or(u16::MAX);
            map.iter().map(move |(key, slot)| (bucket, key, slot))
        })
    }

    /// The entries of `wanted` buckets (flags by bucket number), bucket by bucket, starting
    /// after `after` (a key and its bucket) when given.
    pub(crate) fn in_buckets<'a>(
        &'a self,
        wanted: [bool; BUCKETS],
        after: Option<(u16, &'a str)>,
    ) -> impl Iterator<Item = (&'a String, &'a Slot)> + 'a {
        let first_bucket = after.map_or(0, |(bucket, _)| usize::from(bucket));
        self.buckets
            .iter()
            .enumerate()
            .skip(first_bucket)
            .filter(move |(bucket, _)| wanted[*bucket])
            .flat_map(move |(bucket, map)| {
                let from = match after {
                    Some((after_bucket, key)) if usize::from(after_bucket) == bucket => {
                        Bound::Excluded(key)
                    }
                    _ => Bound::Unbounded,
                };
                map.range::<str, _>((from, Bound::Unbounded))
            })
    }

    /// Entries whose keys start with `prefix`, in key order: a merge of the buckets' ranges,
    /// O(log n) per bucket to start and O(log 256) per entry.
    pub(crate) fn prefixed<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Slot)> + 'a {
        let mut ranges: Vec<_> = self
            .buckets
            .iter()
            .map(|map| {
                map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                    .take_while(move |(key, _)| key.starts_with(prefix))
                    .peekable()
            })
            .collect();
        let mut heads = BinaryHeap::new();
        for (index, range) in ranges.iter_mut().enumerate() {
            if let Some((key, _)) = range.peek() {
                heads.push(Reverse((*key, index)));
            }
        }
        std::iter::from_fn(move || {
            let Reverse((_, index)) = heads.pop()?;
            let range = ranges.get_mut(index)?;
            let item = range.next()?;
            if let Some((key, _)) = range.peek() {
                heads.push(Reverse((*key, index)));
            }
            Some(item)
        })
    }
}
