//! The timed-out operations of one key, grouped so that the search tries each kind once.

use std::collections::HashMap;
use std::hash::Hash;

use crate::entry_list::{EntryKind, EntryList, EntrySpec};

/// What a timed-out operation can do, which decides the list it goes in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimedOutKind<S> {
    /// It leaves the same state whatever the state was, like a write.
    Overwrite,
    /// It changes nothing unless the state is this one, like a compare-and-swap.
    EffectiveOnlyIn(S),
    /// Anything else.
    DependsOnState,
}

/// Timed-out operations with equal inputs.
#[derive(Debug)]
struct Class {
    /// In call order.
    members: Vec<usize>,
    /// How many members, from the first, are placed.
    used: usize,
    /// The list holding the class, and the class's number in that list.
    list: usize,
    slot: usize,
}

/// The timed-out operations of one key (no output, no return), which may take effect at any
/// time after their call, or never.
///
/// Once called, timed-out operations with equal inputs are interchangeable: they can go at the
/// same points and do the same thing. So they form one class, the search only ever places the
/// earliest unused member, and the lists hold one entry per class rather than per operation.
/// Without this, the search would try k timed-out writes of one value in all 2^k subsets, and
/// walk all of them each time it looks for something to place.
///
/// Classes are split into lists so that the search walks only those that can matter: one list
/// for overwrites (skipped right after another timed-out operation, which they would hide), one
/// per state for operations effective only in that state (only the current state's is walked),
/// and one for the rest. A class's entry sorts by its first member's call; the member to place
/// next may have been called later, so the search checks that member's own call time.
#[derive(Debug)]
pub(crate) struct TimedOutPool<S> {
    lists: Vec<EntryList>,
    list_for_state: HashMap<S, usize>,
    classes: Vec<Class>,
    /// For each list, the class at each slot.
    class_at: Vec<Vec<usize>>,
    /// For each operation of the key, its class if it timed out.
    class_of: Vec<Option<usize>>,
}

impl<S: Clone + Eq + Hash> TimedOutPool<S> {
    /// The list of classes whose effect depends on the state in no known way.
    pub(crate) const STATE_DEPENDENT: usize = 0;
    /// The list of classes that overwrite the state.
    pub(crate) const OVERWRITE: usize = 1;

    /// Groups the operations numbered `0..operation_count` (in call order) for which `kind`
    /// says they timed out; `call_at` and `input` describe each.
    pub(crate) fn new<I: Eq + Hash>(
        operation_count: usize,
        call_at: impl Fn(usize) -> u64,
        input: impl Fn(usize) -> I,
        kind: impl Fn(usize) -> Option<TimedOutKind<S>>,
    ) -> Self {
        let mut classes: Vec<Class> = Vec::new();
        let mut class_of = vec![None; operation_count];
        let mut class_by_input: HashMap<I, usize> = HashMap::new();
        let mut list_for_state: HashMap<S, usize> = HashMap::new();
        let mut list_sizes = vec![0, 0];
        for (operation, class_of_operation) in class_of.iter_mut().enumerate() {
            let Some(kind) = kind(operation) else {
                continue;
            };
            let class = *class_by_input.entry(input(operation)).or_insert_with(|| {
                let list = match kind {
                    TimedOutKind::DependsOnState => Self::STATE_DEPENDENT,
                    TimedOutKind::Overwrite => Self::OVERWRITE,
                    TimedOutKind::EffectiveOnlyIn(state) => {
                        *list_for_state.entry(state).or_insert_with(|| {
                            list_sizes.push(0);
                            list_sizes.len() - 1
                        })
                    }
                };
                classes.push(Class {
                    members: Vec::new(),
                    used: 0,
                    list,
                    slot: list_sizes[list],
                });
                list_sizes[list] += 1;
                classes.len() - 1
            });
            classes[class].members.push(operation);
            *class_of_operation = Some(class);
        }
        let mut specs: Vec<Vec<EntrySpec>> = vec![Vec::new(); list_sizes.len()];
        let mut class_at: Vec<Vec<usize>> = list_sizes
            .iter()
            .map(|&size| Vec::with_capacity(size))
            .collect();
        for (index, class) in classes.iter().enumerate() {
            debug_assert_eq!(class_at[class.list].len(), class.slot);
            class_at[class.list].push(index);
            specs[class.list].push(EntrySpec {
                time: call_at(class.members[0]),
                kind: EntryKind::Call,
                operation: class.slot,
            });
        }
        let lists = specs
            .into_iter()
            .zip(list_sizes)
            .map(|(specs, size)| EntryList::new(size, specs))
            .collect();
        Self {
            lists,
            list_for_state,
            classes,
            class_at,
            class_of,
        }
    }

    /// Whether `operation` timed out.
    pub(crate) fn contains(&self, operation: usize) -> bool {
        self.class_of[operation].is_some()
    }

    /// The list of classes effective only in `state`, if there is one.
    pub(crate) fn list_for_state(&self, state: &S) -> Option<usize> {
        self.list_for_state.get(state).copied()
    }

    /// The first entry of `list` with an unused member, or its end.
    pub(crate) fn first(&self, list: usize) -> usize {
        self.lists[list].first()
    }

    /// The entry after `entry`.
    pub(crate) fn next(&self, list: usize, entry: usize) -> usize {
        self.lists[list].next(entry)
    }

    /// Whether `entry` is the end of `list`.
    pub(crate) fn is_end(&self, list: usize, entry: usize) -> bool {
        self.lists[list].is_end(entry)
    }

    /// When the first member of the class at `entry` was called: no member was called earlier.
    pub(crate) fn first_call_at(&self, list: usize, entry: usize) -> u64 {
        self.lists[list].spec(entry).time
    }

    /// The member of the class at `entry` to place next: the earliest unused one.
    pub(crate) fn next_member(&self, list: usize, entry: usize) -> usize {
        let slot = self.lists[list].spec(entry).operation;
        let class = &self.classes[self.class_at[list][slot]];
        class.members[class.used]
    }

    /// Records that `operation`, which must be the next member of its class, is placed.
    pub(crate) fn take(&mut self, operation: usize) {
        let class = self.class_of[operation].expect("a timed-out operation");
        let class = &mut self.classes[class];
        debug_assert_eq!(
            class.members[class.used], operation,
            "only the earliest unused member is placed"
        );
        class.used += 1;
        if class.used == class.members.len() {
            self.lists[class.list].lift(class.slot);
        }
    }

    /// Undoes the last [`take`](Self::take) of `operation`.
    pub(crate) fn put_back(&mut self, operation: usize) {
        let class = self.class_of[operation].expect("a timed-out operation");
        let class = &mut self.classes[class];
        if class.used == class.members.len() {
            self.lists[class.list].unlift(class.slot);
        }
        class.used -= 1;
        debug_assert_eq!(
            class.members[class.used], operation,
            "put back in reverse order"
        );
    }
}
