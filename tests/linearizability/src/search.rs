//! The search for a linearization of one key's operations.

use std::fmt::Write as _;
use std::mem;

use crate::budget::BudgetTracker;
use crate::entry_list::{EntryKind, EntryList, EntrySpec};
use crate::memo::Memo;
use crate::placed_set::PlacedSet;
use crate::timed_out_pool::{TimedOutKind, TimedOutPool};
use crate::{EffectKind, Explanation, Model, Operation};

/// One operation of the key being checked, with its position in the whole history.
pub(crate) type IndexedOperation<'h, I, O> = (usize, &'h Operation<I, O>);

/// How a search ended.
#[derive(Debug)]
pub(crate) enum SearchOutcome {
    Linearizable,
    NotLinearizable(Explanation),
    OutOfBudget,
}

/// What the search did with an operation on its stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// The operation took effect at this point of the order.
    Applied,
    /// The operation's outcome is unknown and the search assumes it never happened.
    Omitted,
}

/// Where the search looks next.
#[derive(Clone, Copy, Debug)]
enum Cursor {
    /// At an entry of the bounded list.
    Bounded(usize),
    /// At an entry of a list of timed-out operations; only those called before `deadline`, the
    /// earliest return entry still in the bounded list, may go next.
    TimedOut {
        list: usize,
        entry: usize,
        deadline: usize,
    },
    /// Nowhere: this point has no alternatives left.
    Exhausted,
}

/// One operation placed in the order being built, and how to undo it.
#[derive(Debug)]
struct Frame<S> {
    operation: usize,
    placement: Placement,
    state_before: S,
    /// Where to continue after undoing this choice: the next alternative at the same point.
    resume: Cursor,
}

/// The deepest point the search reached, kept for the explanation of a failure.
#[derive(Debug)]
struct Deepest<S> {
    /// The stack at that point, as (operation, placement).
    frames: Vec<(usize, Placement)>,
    state: S,
    /// The operation whose return entry stopped the search there.
    unplaceable: usize,
    deadline_at: u64,
}

/// A depth-first search for a linearization of one key's operations (Wing and Gong), with
/// memoization of visited configurations (Lowe; Porcupine).
///
/// Operations are numbered `0..n` locally. Their call and return entries form a list in time
/// order. At each point the operations that may go next are those called before the earliest
/// return still in the list: walking the list from its start, each call entry met before the
/// first return entry is a candidate. Placing one lifts its entries and restarts the walk;
/// reaching a return entry means every candidate has been tried, so the search undoes the last
/// choice and moves on to the next alternative at that point.
///
/// Operations with an unknown outcome are optional. Timed-out ones (no return) live in a
/// [`TimedOutPool`], tried only after the candidates of the bounded list, so that a
/// linearizable history rarely pays for them; they never block anything, and the search is done
/// as soon as every operation with a known output is placed. One with an unknown outcome but a
/// known return time may, when its return is reached, be dropped as never having happened.
/// Read-only operations with an unknown outcome cannot matter and are left out.
///
/// A read-only operation with a known output that fits the current state goes next without
/// trying alternatives: if any linearization exists from here, moving that operation to its
/// front gives another one, because it changes nothing wherever it is legal.
pub(crate) struct Search<'h, M: Model> {
    model: &'h M,
    /// The operations as [`Model::simplify`] left them; the search works on these.
    operations: Vec<Operation<M::Input, M::Output>>,
    /// The operations as recorded, for the explanation.
    originals: Vec<&'h Operation<M::Input, M::Output>>,
    /// The history index of each local operation, for the explanation.
    history_indices: Vec<usize>,
    /// Required operations that never change the state, placed without alternatives.
    read_only_required: Vec<bool>,
    bounded: EntryList,
    timed_out: TimedOutPool<M::State>,
    placed: PlacedSet,
    memo: Memo<M::State>,
    state: M::State,
    stack: Vec<Frame<M::State>>,
    required_remaining: usize,
    deepest: Option<Deepest<M::State>>,
    /// The lowest the stack has been since `deepest` was recorded: frames below it are still
    /// the recorded ones, so recording a deeper point copies only what changed. Copying the
    /// whole stack each time would cost O(n) per record and O(n^2) per check.
    stack_low_water: usize,
}

impl<'h, M: Model> Search<'h, M> {
    /// Lines up the operations of one key; `key_operations` pairs each with its history index.
    pub(crate) fn new(
        model: &'h M,
        key_operations: Vec<IndexedOperation<'h, M::Input, M::Output>>,
    ) -> Self {
        let mut simplified: Vec<_> = key_operations
            .iter()
            .map(|(_, operation)| (*operation).clone())
            .collect();
        model.simplify(&mut simplified);
        let mut lined_up: Vec<_> = simplified
            .into_iter()
            .zip(key_operations)
            // Placing a read-only operation changes nothing, and leaving it out is always
            // allowed when its outcome is unknown, so it can only cost time.
            .filter(|(operation, _)| {
                operation.is_required()
                    || model.effect_kind(&operation.input, None) != EffectKind::ReadOnly
            })
            .collect();
        // Number the operations with a return entry first, in call order, then the timed-out
        // ones: the layout `PlacedSet` relies on to keep memo entries small. The sort is
        // stable, so equal call times keep the history's order.
        lined_up.sort_by_key(|(operation, _)| (is_timed_out(operation), operation.call_at));
        let mut operations = Vec::with_capacity(lined_up.len());
        let mut originals = Vec::with_capacity(lined_up.len());
        let mut history_indices = Vec::with_capacity(lined_up.len());
        for (operation, (index, original)) in lined_up {
            operations.push(operation);
            originals.push(original);
            history_indices.push(index);
        }
        let timed_out_count = operations
            .iter()
            .filter(|operation| is_timed_out(operation))
            .count();
        let count = operations.len();
        let mut bounded_specs = Vec::with_capacity(count * 2);
        for (local, operation) in operations.iter().enumerate() {
            if is_timed_out(operation) {
                continue;
            }
            bounded_specs.push(EntrySpec {
                time: operation.call_at,
                kind: EntryKind::Call,
                operation: local,
            });
            bounded_specs.push(EntrySpec {
                // An answer that came at an unknown time still came: the operation is required,
                // and its deadline is the end of the history.
                time: operation.return_at.unwrap_or(u64::MAX),
                kind: EntryKind::Return,
                operation: local,
            });
        }
        let timed_out = TimedOutPool::new(
            count,
            |local| operations[local].call_at,
            |local| &operations[local].input,
            |local| {
                let operation = &operations[local];
                is_timed_out(operation).then(|| {
                    if model.effect_kind(&operation.input, None) == EffectKind::Overwrite {
                        TimedOutKind::Overwrite
                    } else if let Some(state) = model.effective_only_in(&operation.input) {
                        TimedOutKind::EffectiveOnlyIn(state)
                    } else {
                        TimedOutKind::DependsOnState
                    }
                })
            },
        );

        let read_only_required = operations
            .iter()
            .map(|operation| {
                operation.is_required()
                    && model.effect_kind(&operation.input, operation.output.as_ref())
                        == EffectKind::ReadOnly
            })
            .collect();
        let required_remaining = operations
            .iter()
            .filter(|operation| operation.is_required())
            .count();
        Self {
            model,
            operations,
            originals,
            history_indices,
            read_only_required,
            bounded: EntryList::new(count, bounded_specs),
            timed_out,
            placed: PlacedSet::new(count - timed_out_count, timed_out_count),
            memo: Memo::new(),
            state: model.initial_state(),
            stack: Vec::with_capacity(count),
            required_remaining,
            deepest: None,
            stack_low_water: 0,
        }
    }

    /// Searches until a linearization is found, ruled out, or the budget runs out.
    pub(crate) fn run(mut self, budget: &mut BudgetTracker) -> SearchOutcome {
        let mut cursor = Cursor::Bounded(self.bounded.first());
        loop {
            if self.required_remaining == 0 {
                // Whatever timed-out operations remain can be taken as never having happened.
                return SearchOutcome::Linearizable;
            }
            if !budget.spend_step() {
                return SearchOutcome::OutOfBudget;
            }
            cursor = match cursor {
                Cursor::Bounded(entry) => self.visit_bounded(entry),
                Cursor::Exhausted => match self.undo_last() {
                    Some(resume) => resume,
                    None => return SearchOutcome::NotLinearizable(self.explain()),
                },
                Cursor::TimedOut {
                    list,
                    entry,
                    deadline,
                } => match self.visit_timed_out(list, entry, deadline) {
                    Some(next) => next,
                    None => {
                        // Every alternative at this point has been tried.
                        self.record_deepest(deadline);
                        match self.undo_last() {
                            Some(resume) => resume,
                            None => return SearchOutcome::NotLinearizable(self.explain()),
                        }
                    }
                },
            };
        }
    }

    /// One step at an entry of the bounded list.
    fn visit_bounded(&mut self, entry: usize) -> Cursor {
        assert!(
            !self.bounded.is_end(entry),
            "an operation with a known output is unplaced, so its return entry lies ahead"
        );
        let spec = self.bounded.spec(entry);
        match spec.kind {
            EntryKind::Call if self.read_only_required[spec.operation] => {
                let Some(next_state) = self.successor(spec.operation) else {
                    return Cursor::Bounded(self.bounded.next(entry));
                };
                // It goes next with no alternatives (see the type's documentation); if this was
                // explored before and failed, so does this point.
                if self.enter(
                    spec.operation,
                    Placement::Applied,
                    next_state,
                    Cursor::Exhausted,
                ) {
                    Cursor::Bounded(self.bounded.first())
                } else {
                    Cursor::Exhausted
                }
            }
            EntryKind::Call => {
                let resume = Cursor::Bounded(self.bounded.next(entry));
                if self.try_apply(spec.operation, resume) {
                    Cursor::Bounded(self.bounded.first())
                } else {
                    resume
                }
            }
            EntryKind::Return => {
                // The earliest pending return: the candidates before it have all been tried;
                // the timed-out operations come next.
                let list = TimedOutPool::<M::State>::STATE_DEPENDENT;
                let resume = Cursor::TimedOut {
                    list,
                    entry: self.timed_out.first(list),
                    deadline: entry,
                };
                if !self.operations[spec.operation].is_required()
                    && self.try_omit(spec.operation, resume)
                {
                    Cursor::Bounded(self.bounded.first())
                } else {
                    resume
                }
            }
        }
    }

    /// One step at an entry of a list of timed-out operations; `None` once the lists are
    /// exhausted at this point.
    fn visit_timed_out(&mut self, list: usize, entry: usize, deadline: usize) -> Option<Cursor> {
        let deadline_at = self.bounded.spec(deadline).time;
        if self.timed_out.is_end(list, entry)
            || self.timed_out.first_call_at(list, entry) > deadline_at
        {
            return self.list_after(list).map(|list| Cursor::TimedOut {
                list,
                entry: self.timed_out.first(list),
                deadline,
            });
        }
        let operation = self.timed_out.next_member(list, entry);
        let resume = Cursor::TimedOut {
            list,
            entry: self.timed_out.next(list, entry),
            deadline,
        };
        // The class's first member was called in time, but the one to place next may not be.
        if self.operations[operation].call_at <= deadline_at && self.try_apply(operation, resume) {
            Some(Cursor::Bounded(self.bounded.first()))
        } else {
            Some(resume)
        }
    }

    /// The list of timed-out operations to walk after `list` at the current point, if any.
    fn list_after(&self, list: usize) -> Option<usize> {
        // An overwrite right after a timed-out operation hides it, so the dominance rule of
        // `successor` would reject every one: skip the list instead of walking it.
        let overwrite =
            (!self.top_is_applied_optional()).then_some(TimedOutPool::<M::State>::OVERWRITE);
        if list == TimedOutPool::<M::State>::STATE_DEPENDENT {
            // The operations effective only in other states would change nothing here.
            self.timed_out.list_for_state(&self.state).or(overwrite)
        } else if list == TimedOutPool::<M::State>::OVERWRITE {
            None
        } else {
            overwrite
        }
    }

    /// Places `operation` next, taking effect, if the model allows it and the resulting
    /// configuration is new.
    fn try_apply(&mut self, operation: usize, resume: Cursor) -> bool {
        match self.successor(operation) {
            Some(next_state) => self.enter(operation, Placement::Applied, next_state, resume),
            None => false,
        }
    }

    /// Drops `operation`, whose outcome is unknown, as never having happened, if the resulting
    /// configuration is new.
    fn try_omit(&mut self, operation: usize, resume: Cursor) -> bool {
        let state = self.state.clone();
        self.enter(operation, Placement::Omitted, state, resume)
    }

    /// The state after placing `operation` next, or `None` if the model forbids it or the
    /// placement is dominated by one the search explores anyway.
    fn successor(&self, operation: usize) -> Option<M::State> {
        let placed = &self.operations[operation];
        let next = self
            .model
            .step(&self.state, &placed.input, placed.output.as_ref())?;
        if !placed.is_required() && next == self.state {
            // Indistinguishable from the operation never happening, which is explored too.
            return None;
        }
        // Pruning by dominance. If the last placed operation is optional and this one leaves the
        // same state with or without it, then placing this one *instead* reaches the same state
        // with the optional operation still unused, which can only do better; that placement is
        // a candidate at the previous point too, so it is explored there. Without this cut, k
        // overwritten timed-out writes would be tried in all 2^k subsets.
        if self.top_is_applied_optional()
            && let Some(top) = self.stack.last()
            && self
                .model
                .step(&top.state_before, &placed.input, placed.output.as_ref())
                .is_some_and(|without| without == next)
        {
            return None;
        }
        Some(next)
    }

    /// Whether the last placed operation has an unknown outcome and was taken to happen.
    fn top_is_applied_optional(&self) -> bool {
        self.stack.last().is_some_and(|top| {
            top.placement == Placement::Applied && !self.operations[top.operation].is_required()
        })
    }

    fn enter(
        &mut self,
        operation: usize,
        placement: Placement,
        next_state: M::State,
        resume: Cursor,
    ) -> bool {
        self.placed.insert(operation);
        if !self.memo.insert(&self.placed, &next_state) {
            self.placed.remove(operation);
            return false;
        }
        let state_before = mem::replace(&mut self.state, next_state);
        self.stack.push(Frame {
            operation,
            placement,
            state_before,
            resume,
        });
        if self.timed_out.contains(operation) {
            self.timed_out.take(operation);
        } else {
            self.bounded.lift(operation);
        }
        if self.operations[operation].is_required() {
            self.required_remaining -= 1;
        }
        true
    }

    /// Undoes the last placement; returns where to continue, or `None` if nothing is left to undo.
    fn undo_last(&mut self) -> Option<Cursor> {
        let frame = self.stack.pop()?;
        self.stack_low_water = self.stack_low_water.min(self.stack.len());
        if self.timed_out.contains(frame.operation) {
            self.timed_out.put_back(frame.operation);
        } else {
            self.bounded.unlift(frame.operation);
        }
        self.placed.remove(frame.operation);
        if self.operations[frame.operation].is_required() {
            self.required_remaining += 1;
        }
        self.state = frame.state_before;
        Some(frame.resume)
    }

    /// Remembers the current point if it is the deepest so far; `deadline` is the return entry
    /// that stopped the search here.
    fn record_deepest(&mut self, deadline: usize) {
        let depth = self.stack.len();
        let deeper = self
            .deepest
            .as_ref()
            .is_none_or(|deepest| deepest.frames.len() < depth);
        if !deeper {
            return;
        }
        let spec = self.bounded.spec(deadline);
        let mut frames = self
            .deepest
            .take()
            .map(|deepest| deepest.frames)
            .unwrap_or_default();
        frames.truncate(self.stack_low_water);
        frames.extend(
            self.stack[frames.len()..]
                .iter()
                .map(|frame| (frame.operation, frame.placement)),
        );
        self.stack_low_water = depth;
        self.deepest = Some(Deepest {
            frames,
            state: self.state.clone(),
            unplaceable: spec.operation,
            deadline_at: spec.time,
        });
    }

    fn explain(&self) -> Explanation {
        /// The end of the prefix is where the trouble is; the start is usually uneventful.
        const PREFIX_SHOWN_MAX: usize = 10;
        /// Timed-out operations stay candidates forever, so there can be thousands.
        const CONCURRENT_SHOWN_MAX: usize = 20;
        let deepest = self
            .deepest
            .as_ref()
            .expect("a search fails only after recording the point where it got stuck");
        let prefix: Vec<usize> = deepest
            .frames
            .iter()
            .filter(|(_, placement)| *placement == Placement::Applied)
            .map(|(operation, _)| *operation)
            .collect();
        let omitted_count = deepest.frames.len() - prefix.len();
        let mut placed = vec![false; self.operations.len()];
        for (operation, _) in &deepest.frames {
            placed[*operation] = true;
        }
        // What the walk saw at that point: every unplaced operation called before the return
        // that stopped it.
        let mut concurrent: Vec<usize> = (0..self.operations.len())
            .filter(|&operation| {
                !placed[operation]
                    && operation != deepest.unplaceable
                    && self.operations[operation].call_at <= deepest.deadline_at
            })
            .collect();
        concurrent.sort_by_key(|&operation| (self.operations[operation].call_at, operation));
        let state = format!("{:?}", deepest.state);
        let mut description = String::new();
        let shown_from = prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
        let _ = writeln!(
            description,
            "no linearization of the {} operations on this key. The longest linearizable prefix \
             found has {} operations (plus {} with unknown outcome taken as never having happened){}",
            self.operations.len(),
            prefix.len(),
            omitted_count,
            if shown_from > 0 {
                format!("; the last {PREFIX_SHOWN_MAX}:")
            } else {
                ":".to_string()
            }
        );
        for &operation in &prefix[shown_from..] {
            let _ = writeln!(description, "  {}", self.describe(operation));
        }
        let _ = writeln!(description, "state after the prefix: {state}");
        let _ = writeln!(
            description,
            "could not be placed next: {}",
            self.describe(deepest.unplaceable)
        );
        if concurrent.is_empty() {
            let _ = writeln!(description, "no other operation could have gone before it.");
        } else {
            let _ = writeln!(
                description,
                "the other operations that could have gone before it, each tried:"
            );
            for &operation in concurrent.iter().take(CONCURRENT_SHOWN_MAX) {
                let _ = writeln!(description, "  {}", self.describe(operation));
            }
            if concurrent.len() > CONCURRENT_SHOWN_MAX {
                let _ = writeln!(
                    description,
                    "  and {} more",
                    concurrent.len() - CONCURRENT_SHOWN_MAX
                );
            }
        }
        let global = |operations: &[usize]| -> Vec<usize> {
            operations
                .iter()
                .map(|&operation| self.history_indices[operation])
                .collect()
        };
        Explanation {
            prefix: global(&prefix),
            state_after_prefix: state,
            unplaceable: self.history_indices[deepest.unplaceable],
            concurrent: global(&concurrent),
            description,
        }
    }

    fn describe(&self, operation: usize) -> String {
        let placed = self.originals[operation];
        let returned = placed
            .return_at
            .map_or("never returned".to_string(), |at| at.to_string());
        let output = placed
            .output
            .as_ref()
            .map_or("unknown".to_string(), |output| format!("{output:?}"));
        format!(
            "#{} client {} [{}, {}] {:?} -> {}",
            self.history_indices[operation],
            placed.client,
            placed.call_at,
            returned,
            placed.input,
            output
        )
    }
}

/// Whether the operation has neither an output nor a return time: it may take effect at any
/// time after its call, or never, so it has no return entry.
fn is_timed_out<I, O>(operation: &Operation<I, O>) -> bool {
    operation.output.is_none() && operation.return_at.is_none()
}
