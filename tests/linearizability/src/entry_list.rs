//! The call and return entries of one key's operations, in time order, as a doubly linked list
//! whose entries can be removed and put back in O(1) ("dancing links").

/// Whether an entry marks the call or the return of its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum EntryKind {
    /// Sorts first so that a call and a return at the same time count as overlapping.
    Call,
    Return,
}

/// One entry of the list to build: when it happens, what it is and whose it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EntrySpec {
    /// `u64::MAX` for the return of an operation whose return time is unknown.
    pub(crate) time: u64,
    pub(crate) kind: EntryKind,
    pub(crate) operation: usize,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    spec: EntrySpec,
    previous: usize,
    next: usize,
}

/// A list of call and return entries in time order.
///
/// Linearizing an operation lifts its entries out of the list; backtracking puts them back.
/// Lifts and restores must nest like a stack (restore the most recently lifted operation
/// first), which the depth-first search guarantees; a removed entry keeps its own links, which
/// is what makes putting it back O(1).
#[derive(Debug)]
pub(crate) struct EntryList {
    /// Index 0 is the head sentinel and the last index the tail sentinel, so that removal never
    /// has to special-case the ends.
    entries: Vec<Entry>,
    /// For each operation, the index of its call entry, if it has one in this list.
    call_entry: Vec<Option<usize>>,
    /// For each operation, the index of its return entry, if it has one in this list.
    return_entry: Vec<Option<usize>>,
}

impl EntryList {
    const HEAD: usize = 0;

    /// Builds the list from entries in any order, for operations numbered below
    /// `operation_count`.
    pub(crate) fn new(operation_count: usize, mut specs: Vec<EntrySpec>) -> Self {
        specs.sort_unstable();
        let tail = specs.len() + 1;
        let sentinel = EntrySpec {
            time: 0,
            kind: EntryKind::Call,
            operation: usize::MAX,
        };
        let mut entries = Vec::with_capacity(specs.len() + 2);
        entries.push(Entry {
            spec: sentinel,
            previous: Self::HEAD,
            next: 1,
        });
        let mut call_entry = vec![None; operation_count];
        let mut return_entry = vec![None; operation_count];
        for (position, spec) in specs.into_iter().enumerate() {
            let index = position + 1;
            let slot = match spec.kind {
                EntryKind::Call => &mut call_entry[spec.operation],
                EntryKind::Return => &mut return_entry[spec.operation],
            };
            assert!(
                slot.is_none(),
                "operation {} has two {:?} entries",
                spec.operation,
                spec.kind
            );
            *slot = Some(index);
            entries.push(Entry {
                spec,
                previous: index - 1,
                next: index + 1,
            });
        }
        entries.push(Entry {
            spec: sentinel,
            previous: tail - 1,
            next: tail,
        });
        Self {
            entries,
            call_entry,
            return_entry,
        }
    }

    /// The first entry still in the list, or the end marker if none is left.
    pub(crate) fn first(&self) -> usize {
        self.entries[Self::HEAD].next
    }

    /// The entry after `entry`.
    pub(crate) fn next(&self, entry: usize) -> usize {
        self.entries[entry].next
    }

    /// Whether `entry` is the end marker rather than a real entry.
    pub(crate) fn is_end(&self, entry: usize) -> bool {
        entry == self.entries.len() - 1
    }

    /// What `entry` is; must not be the end marker.
    pub(crate) fn spec(&self, entry: usize) -> EntrySpec {
        debug_assert!(entry != Self::HEAD && !self.is_end(entry));
        self.entries[entry].spec
    }

    /// Removes the entries of `operation`.
    pub(crate) fn lift(&mut self, operation: usize) {
        if let Some(entry) = self.call_entry[operation] {
            self.remove(entry);
        }
        if let Some(entry) = self.return_entry[operation] {
            self.remove(entry);
        }
    }

    /// Puts back the entries of `operation`, which must be the operation lifted last.
    pub(crate) fn unlift(&mut self, operation: usize) {
        // The reverse order of `lift`, so each entry's saved neighbours are in the list again.
        if let Some(entry) = self.return_entry[operation] {
            self.restore(entry);
        }
        if let Some(entry) = self.call_entry[operation] {
            self.restore(entry);
        }
    }

    fn remove(&mut self, entry: usize) {
        let Entry { previous, next, .. } = self.entries[entry];
        self.entries[previous].next = next;
        self.entries[next].previous = previous;
    }

    fn restore(&mut self, entry: usize) {
        let Entry { previous, next, .. } = self.entries[entry];
        debug_assert_eq!(
            self.entries[previous].next, next,
            "restores must mirror removals"
        );
        self.entries[previous].next = entry;
        self.entries[next].previous = entry;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(time: u64, kind: EntryKind, operation: usize) -> EntrySpec {
        EntrySpec {
            time,
            kind,
            operation,
        }
    }

    fn operations_in_order(list: &EntryList) -> Vec<(usize, EntryKind)> {
        let mut seen = Vec::new();
        let mut entry = list.first();
        while !list.is_end(entry) {
            let spec = list.spec(entry);
            seen.push((spec.operation, spec.kind));
            entry = list.next(entry);
        }
        seen
    }

    #[test]
    fn entries_are_sorted_by_time_with_calls_before_returns_at_equal_times() {
        let list = EntryList::new(
            2,
            vec![
                spec(5, EntryKind::Return, 0),
                spec(5, EntryKind::Call, 1),
                spec(1, EntryKind::Call, 0),
                spec(u64::MAX, EntryKind::Return, 1),
            ],
        );
        assert_eq!(
            operations_in_order(&list),
            vec![
                (0, EntryKind::Call),
                (1, EntryKind::Call),
                (0, EntryKind::Return),
                (1, EntryKind::Return),
            ]
        );
    }

    #[test]
    fn nested_lifts_are_undone_exactly() {
        let mut list = EntryList::new(
            3,
            vec![
                spec(1, EntryKind::Call, 0),
                spec(2, EntryKind::Call, 1),
                spec(3, EntryKind::Return, 0),
                spec(4, EntryKind::Call, 2),
                spec(5, EntryKind::Return, 1),
            ],
        );
        let original = operations_in_order(&list);
        list.lift(1);
        list.lift(0);
        assert_eq!(operations_in_order(&list), vec![(2, EntryKind::Call)]);
        list.lift(2);
        assert!(list.is_end(list.first()));
        list.unlift(2);
        list.unlift(0);
        assert_eq!(
            operations_in_order(&list),
            vec![
                (0, EntryKind::Call),
                (0, EntryKind::Return),
                (2, EntryKind::Call)
            ]
        );
        list.unlift(1);
        assert_eq!(operations_in_order(&list), original);
    }
}
