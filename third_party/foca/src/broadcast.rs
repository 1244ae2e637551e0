/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
use alloc::vec::Vec;
use core::cmp::Ordering;

use bytes::BufMut;
use hashbrown::HashTable;

/// A type capable of decoding a (associated) broadcast from a buffer
/// and deciding whether to keep disseminating it for other members
/// of the cluster (when it's new information) or to discard it (when
/// its outdated/stale).
pub trait BroadcastHandler<T> {
    /// A unique identifier for the broadcasts this handler manages
    ///
    /// It should be able to compare itself against an arbitrary number
    /// of other [`Self::Key`] instances and decide wether it
    /// replaces it or not so conflicting/stale information isn't
    /// disseminated.
    type Key: Invalidates;

    /// The error type that `receive_item` may emit. Will be wrapped
    /// by [`crate::Error::CustomBroadcast`].
    type Error: core::error::Error + Send + Sync + 'static;

    /// Decodes a [`Self::Key`] from a buffer and either discards
    /// it or tells Foca to persist and disseminate it.
    ///
    /// `Sender` is `None` when you're adding broadcast data directly,
    /// via [`crate::Foca::add_broadcast`], otherwise it will be the
    /// address of the member that sent the data. Notice that Foca
    /// doesn't track the origin of packets- if you need it you
    /// have to add it to the data you're broadcasting.
    ///
    /// When you receive a broadcast you have to decide whether it's
    /// new information that needs to be disseminated (`Ok(Some(...))`)
    /// or not (`Ok(None)`).
    ///
    /// Always yielding `Some(...)` is wrong because Foca will never
    /// know when to stop sending this information to other members.
    ///
    /// Example: Assume your custom broadcast is a simple Set-Key-Value
    /// operation. When you receive it you should check if your map
    /// contains the Key-Value pair; If it didn't, you yield
    /// `Some`, otherwise the operation is stale, so you yield `None`.
    ///
    /// The `data` parameter is the exact data provided to
    /// [`crate::Foca::add_broadcast`]. When Foca receives N custom
    /// broadcasts at once, this gets called N times.
    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&T>,
    ) -> Result<Option<Self::Key>, Self::Error>;

    /// Decides whether Foca should add broadcast data to the message
    /// it's about to send to active member `T`.
    ///
    /// Normally when Foca sends a message it always tries to include
    /// custom broadcasts alongside the information it actually
    /// cares about; This allows implementations to override this
    /// logic with something else.
    ///
    /// Example: You are running a heterogeneous cluster and some nodes
    /// are always very busy and you'd rather they never have to deal
    /// with the extra cpu/bandwidth cost of receiving/sending
    /// your custom broadcasts.
    ///
    /// Returning `true` tells Foca to proceed as it would normally,
    /// including broadcasts in the messages it sends when it can.
    ///
    /// Returning `false` tells Foca to not include such broadcasts
    /// in the message. It does *not* prevent the message from being
    /// sent, just keeps Foca from attaching extra data to them.
    fn should_add_broadcast_data(&self, _member: &T) -> bool {
        true
    }

    /// The bytes to send for `key`, when the key holds them itself.
    ///
    /// ha patch: by default (`None`) Foca keeps its own copy of each
    /// broadcast's bytes in its backlog. A handler whose keys already
    /// hold the exact bytes given to [`Self::receive_item`] (for
    /// example shared between many Foca instances in one process)
    /// returns them here, and the backlog keeps no copy. The bytes
    /// must be exactly those `receive_item` was given.
    fn key_data(_key: &Self::Key) -> Option<&[u8]> {
        None
    }
}

/// A type that's able to look at another and decide wether it's
/// newer/fresher (i.e. invalidates) than it.
///
/// As you send/receive broadcasts, Foca will hold them for a while
/// as it disseminates the data to other cluster members. This trait
/// helps with replacing data that hasn't been fully disseminated
/// yet but you already know it's stale.
///
/// Example: Assume a versioned broadcast like `{key,version,...}`;
/// After you receive `{K, 0, ...}` and keep it, Foca will be
/// disseminating it. Soon after you receive `{K, 1, ...}` which
/// is a newer version for this broadcast. This trait enables
/// Foca to immediately stop disseminating the previous version,
/// even if it hasn't sent it to everyone it can yet.
pub trait Invalidates {
    /// When `item.invalidates(&other)` it means that Foca will
    /// keep `item` and discard `other` from its dissemination
    /// backlog.
    fn invalidates(&self, other: &Self) -> bool;

    /// An optional hash that partitions items: when `a.invalidates(&b)`,
    /// `a.bucket() == b.bucket()` must hold.
    ///
    /// ha patch: with a bucket, adding an item compares it only against the
    /// backlog items of its bucket instead of the whole backlog (upstream's
    /// `retain` made a join of N members O(N^2) per member). `None`, the
    /// default, puts every item in one bucket: upstream's behaviour.
    fn bucket(&self) -> Option<u64> {
        None
    }
}

impl Invalidates for &[u8] {
    fn invalidates(&self, other: &Self) -> bool {
        self.eq(other)
    }
}

/// The bucket of items without one (see [`Invalidates::bucket`]). A real bucket may collide
/// with it: that only costs comparisons, `invalidates` still decides.
const UNBUCKETED: u64 = 0;

/// Most entries in a row that may fail to fit the buffer before `fill` stops looking.
///
/// ha patch: upstream popped the whole backlog whenever the buffer's room was smaller than
/// every entry (O(backlog log backlog) per message); entries of one kind have similar sizes,
/// so a few misfits in a row mean the buffer is as full as it gets.
const FILL_MISFITS_MAX: usize = 16;

/// Fewest entries a backlog keeps room for when it gives memory back (see `shrink`).
const SHRINK_FLOOR: usize = 64;

/// The dissemination backlog: items with their serialized data, sent most-remaining
/// transmissions first.
///
/// ha patch: upstream kept whole entries in the heap and removed invalidated ones with
/// `retain` over the heap. Here the heap holds only 16-byte `(remaining_tx, len, bucket, id)`
/// nodes; the live entries sit in a table hashed by bucket, and a heap node whose entry is
/// gone (invalidated) is dropped when popped. Transmission order and counts are unchanged.
///
/// ha patch (issue 17, 10,000 members): an entry's data is `D`, by default its bytes
/// (`Vec<u8>`, custom broadcasts). Member updates use `D = ()` and keep the member itself
/// as the item (16 bytes), encoding it when a message is filled (`fill_encoded`), instead of
/// its serialized bytes in their own allocation plus a 32-byte address key: a joining
/// member's backlog holds an update about nearly every other member. The backlog also gives
/// memory back once it has drained (the join's peak is otherwise kept for good).
pub(crate) struct Broadcasts<V, D = Vec<u8>> {
    flip: alloc::collections::BinaryHeap<Node>,
    flop: alloc::collections::BinaryHeap<Node>,
    entries: HashTable<Entry<V, D>>,
    next_id: u32,
}

impl<V, D> Broadcasts<V, D>
where
    V: Invalidates,
{
    pub(crate) fn new() -> Self {
        Self {
            flip: Default::default(),
            flop: Default::default(),
            entries: HashTable::new(),
            next_id: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn bucket_of(item: &V) -> u64 {
        item.bucket().unwrap_or(UNBUCKETED)
    }

    /// Add `item` (with `data`, `len` bytes once written) for `max_tx` transmissions,
    /// replacing the entries it invalidates.
    pub(crate) fn add_or_replace_sized(&mut self, item: V, data: D, len: usize, max_tx: usize) {
        debug_assert!(max_tx > 0);
        let bucket = Self::bucket_of(&item);
        let invalidated: Vec<u32> = self
            .entries
            .iter_hash(bucket)
            .filter(|entry| item.invalidates(&entry.item))
            .map(|entry| entry.id)
            .collect();
        for id in invalidated {
            self.remove(bucket, id);
        }
        // Invalidated entries leave stale nodes in the heap; drop them once they outnumber
        // the live ones, so the heap stays within twice the backlog.
        if self.flip.len() > 2 * self.entries.len() + SHRINK_FLOOR {
            let entries = &self.entries;
            self.flip
                .retain(|node| entries.find(node.bucket, |e| e.id == node.id).is_some());
        }
        // Ids only tell live entries of one bucket apart: one would have to outlive 2^32
        // later additions for its id to come round again.
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.flip.push(Node {
            bucket,
            id,
            len: u16::try_from(len).unwrap_or(u16::MAX),
            remaining_tx: u8::try_from(max_tx).unwrap_or(u8::MAX),
        });
        self.entries.insert_unique(
            bucket,
            Entry {
                id,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                data,
                item,
            },
            |entry| Self::bucket_of(&entry.item),
        );
    }

    fn remove(&mut self, bucket: u64, id: u32) {
        if let Ok(entry) = self.entries.find_entry(bucket, |entry| entry.id == id) {
            entry.remove();
        }
    }

    /// Fill `buffer` with up to `max_items` entries, each written by `write` (which returns
    /// whether it wrote the entry; it is only called when the entry's `len` bytes, plus a
    /// 2-byte prefix when `prefix`, fit). A prefixed entry's `write` must not fail.
    pub(crate) fn fill_inner<B: BufMut>(
        &mut self,
        buffer: &mut B,
        max_items: usize,
        prefix: bool,
        mut write: impl FnMut(&V, &D, &mut B) -> bool,
    ) -> usize {
        if self.entries.is_empty() {
            // Only stale nodes can be left.
            self.flip.clear();
            self.shrink();
            return 0;
        }
        debug_assert!(self.flop.is_empty());

        let mut num_taken = 0;
        let mut remaining = max_items;
        let mut misfits = 0;
        let overhead = if prefix { 2 } else { 0 };

        while buffer.has_remaining_mut() && remaining > 0 && misfits < FILL_MISFITS_MAX {
            let Some(mut node) = self.flip.pop() else {
                break;
            };
            debug_assert!(node.remaining_tx > 0);
            let Some(entry) = self.entries.find(node.bucket, |entry| entry.id == node.id) else {
                // Invalidated since it was added.
                continue;
            };
            let len = entry.len as usize;

            if buffer.remaining_mut() >= len + overhead {
                if prefix {
                    debug_assert!(u16::try_from(len).is_ok());
                    buffer.put_u16(len as u16);
                }
                if write(&entry.item, &entry.data, buffer) {
                    num_taken += 1;
                    remaining -= 1;
                    misfits = 0;
                    node.remaining_tx -= 1;
                } else {
                    // Cannot happen with a deterministic encoder (its length was
                    // measured when the entry was added); count it as a misfit.
                    debug_assert!(!prefix, "a prefixed entry's write cannot fail");
                    misfits += 1;
                }
            } else {
                misfits += 1;
            }

            if node.remaining_tx > 0 {
                self.flop.push(node);
            } else {
                self.remove(node.bucket, node.id);
            }
        }

        self.flip.append(&mut self.flop);
        self.shrink();

        num_taken
    }

    /// Give back memory a drained backlog no longer needs: a join's burst would otherwise
    /// keep its peak size for good (hashbrown and `BinaryHeap` never shrink by themselves).
    fn shrink(&mut self) {
        let live = self.entries.len();
        if self.entries.capacity() > 4 * live + SHRINK_FLOOR {
            self.entries
                .shrink_to(2 * live, |entry| Self::bucket_of(&entry.item));
        }
        for heap in [&mut self.flip, &mut self.flop] {
            if heap.capacity() > 4 * heap.len() + SHRINK_FLOOR {
                heap.shrink_to(2 * heap.len());
            }
        }
    }
}

// Upstream's byte-vector interface; foca itself now uses `add_or_replace_sized` with the
// data type of each backlog, and upstream's tests use this one.
#[cfg(test)]
impl<V> Broadcasts<V, Vec<u8>>
where
    V: Invalidates,
{
    pub(crate) fn add_or_replace(&mut self, item: V, data: Vec<u8>, max_tx: usize) {
        let len = data.len();
        self.add_or_replace_sized(item, data, len, max_tx);
    }

    pub(crate) fn fill(&mut self, mut buffer: impl BufMut, max_items: usize) -> usize {
        self.fill_inner(&mut buffer, max_items, false, |_, data, buffer| {
            buffer.put_slice(data);
            true
        })
    }

    pub(crate) fn fill_with_len_prefix(
        &mut self,
        mut buffer: impl BufMut,
        max_items: usize,
    ) -> usize {
        self.fill_inner(&mut buffer, max_items, true, |_, data, buffer| {
            buffer.put_slice(data);
            true
        })
    }
}

impl<V> Broadcasts<V, ()>
where
    V: Invalidates,
{
    /// Fill `buffer` with up to `max_items` items, each written by `encode` (which must
    /// write exactly the length given when the item was added, and return whether it did).
    pub(crate) fn fill_encoded<B: BufMut>(
        &mut self,
        buffer: &mut B,
        max_items: usize,
        mut encode: impl FnMut(&V, &mut B) -> bool,
    ) -> usize {
        self.fill_inner(buffer, max_items, false, |item, _, buffer| {
            encode(item, buffer)
        })
    }
}

/// A backlog entry's place in the send order: 16 bytes (`len` saturates; it only orders).
#[derive(Debug, Clone)]
struct Node {
    bucket: u64,
    id: u32,
    // ignored for eq/ord (like `id` and `bucket`). sorting is unstable
    len: u16,
    remaining_tx: u8,
}

#[derive(Debug, Clone)]
struct Entry<V, D> {
    id: u32,
    len: u32,
    data: D,
    item: V,
}

impl PartialEq for Node {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Node {}

impl PartialOrd for Node {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Node {
    fn cmp(&self, other: &Self) -> Ordering {
        self.remaining_tx
            .cmp(&other.remaining_tx)
            .then_with(|| self.len.cmp(&other.len))
    }
}

/// A stable 64-bit FNV-1a hasher, for [`Invalidates::bucket`] implementations: buckets
/// must not depend on a per-process random seed if a backlog's order is to be reproducible.
#[derive(Debug, Clone, Copy)]
pub struct BucketHasher(u64);

impl Default for BucketHasher {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl core::hash::Hasher for BucketHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    struct Key(&'static str);

    impl Invalidates for Key {
        fn invalidates(&self, other: &Self) -> bool {
            self.0 == other.0
        }
    }

    #[test]
    fn piggyback_behaviour() {
        let max_tx = 5;
        let mut piggyback = Broadcasts::new();

        assert!(piggyback.is_empty(), "Piggyback starts empty");

        piggyback.add_or_replace(Key("AA"), b"AAabc".to_vec(), max_tx);

        assert_eq!(1, piggyback.len());

        piggyback.add_or_replace(Key("AA"), b"AAcba".to_vec(), max_tx);

        assert_eq!(
            1,
            piggyback.len(),
            "add_or_replace with same key should replace"
        );

        let mut buf = Vec::new();

        for _i in 0..max_tx {
            buf.clear();
            let num_items = piggyback.fill(&mut buf, usize::MAX);
            assert_eq!(1, num_items);
            assert_eq!(
                b"AAcba",
                &buf[..],
                "Should transmit an item at most max_tx times"
            );
        }

        assert!(
            piggyback.is_empty(),
            "Should remove item after being used max_tx times"
        );
    }

    #[test]
    fn fill_does_nothing_if_buffer_full() {
        let mut piggyback = Broadcasts::new();
        piggyback.add_or_replace(Key("a "), b"a super long value".to_vec(), 1);

        let buf = bytes::BytesMut::new();
        let mut limited = buf.limit(5);

        let num_items = piggyback.fill(&mut limited, usize::MAX);

        assert_eq!(0, num_items);
        assert_eq!(5, limited.remaining_mut());
        assert_eq!(1, piggyback.len());
    }

    #[test]
    fn piggyback_consumes_largest_first() {
        let max_tx = 10;
        let mut piggyback = Broadcasts::new();

        piggyback.add_or_replace(Key("00"), b"00hi".to_vec(), max_tx);
        piggyback.add_or_replace(Key("01"), b"01hello".to_vec(), max_tx);
        piggyback.add_or_replace(Key("02"), b"02hey".to_vec(), max_tx);

        let mut buf = Vec::new();
        let num_items = piggyback.fill(&mut buf, usize::MAX);

        assert_eq!(3, num_items);
        assert_eq!(b"01hello02hey00hi", &buf[..]);
    }

    #[test]
    fn highest_max_tx_is_consumed_first() {
        let mut piggyback = Broadcasts::new();

        // 3 items, same byte size, distinct max_tx
        piggyback.add_or_replace(Key("10"), b"100".to_vec(), 1);
        piggyback.add_or_replace(Key("20"), b"200".to_vec(), 2);
        piggyback.add_or_replace(Key("30"), b"300".to_vec(), 3);

        let mut buf = Vec::new();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300200100", &buf[..]);

        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300200", &buf[..]);

        buf.clear();
        piggyback.fill(&mut buf, usize::MAX);
        assert_eq!(b"300", &buf[..]);

        assert_eq!(0, piggyback.len());
    }

    #[test]
    fn piggyback_respects_limit() {
        let max_tx = 10;
        let mut piggyback = Broadcasts::new();

        piggyback.add_or_replace(Key("fo"), b"foo".to_vec(), max_tx);
        piggyback.add_or_replace(Key("ba"), b"bar".to_vec(), max_tx);
        piggyback.add_or_replace(Key("ba"), b"baz".to_vec(), max_tx);

        let mut buf = Vec::new();
        let num_items = piggyback.fill(&mut buf, 0);

        assert_eq!(0, num_items);
        assert!(buf.is_empty());

        let num_items = piggyback.fill(&mut buf, 2);
        assert_eq!(2, num_items);
    }

    #[test]
    fn fill_with_len_prefix() {
        let mut bcs = Broadcasts::new();

        bcs.add_or_replace(Key("fo"), b"foo".to_vec(), 10);
        bcs.add_or_replace(Key("ba"), b"barr".to_vec(), 10);
        bcs.add_or_replace(Key("ba"), b"bazz".to_vec(), 10);

        let mut buf = Vec::new();
        let num_items = bcs.fill_with_len_prefix(&mut buf, 0);

        assert_eq!(0, num_items);
        assert!(buf.is_empty());

        let num_items = bcs.fill_with_len_prefix(&mut buf, 2);
        assert_eq!(2, num_items);

        use bytes::Buf;
        let mut buf = &buf[..];
        assert_eq!(4, buf.get_u16());
        assert_eq!(&b"bazz"[..], &buf[..4]);
        buf.advance(4);
        assert_eq!(3, buf.get_u16());
        assert_eq!(&b"foo"[..], &buf[..3]);
        buf.advance(3);
        assert!(buf.is_empty());
    }
}
