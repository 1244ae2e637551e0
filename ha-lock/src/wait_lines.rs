//! The lock table's lines of waiting sessions, indexed for deadlock detection that costs what
//! it reaches, not the size of the lines (issue 12).
//!
//! The wait-for relation of the table: a session in the line of lock `L` waits for `L`'s
//! holder and for every session ahead of it in that line (they will hold `L` before it). A
//! line of `n` waiters is therefore `n²/2` edges, and the table used to build them all, and
//! search them, on every queued acquire. This index keeps, instead, for every waiting session
//! its places (which lines, at which place number), and for every line the few waiters that
//! wait in some *other* line too. Reachability needs nothing more: from "the holder of `L` and
//! everyone before place `p` in its line", the search continues only through the holder's own
//! waits and through the waits of those few, because a waiter that waits nowhere else leads
//! only back into the same line, which is already covered.

use std::collections::{BTreeMap, BTreeSet};

use crate::command::{LeaseId, SessionId};

/// One line's part of the index.
#[derive(Clone, Debug, Default)]
struct Line {
    /// The place number the next waiter gets. Place numbers only grow while the line has
    /// waiters, so they order the line; they are local to this replica (a restored table
    /// numbers its lines afresh) and never leave it.
    next_place: u64,
    /// How many waiters the line has.
    waiters: usize,
    /// The waiters of this line that wait in at least one other line too, by place.
    shared: BTreeSet<(u64, SessionId)>,
}

/// Who waits where, kept up to date as sessions join and leave lines, so that one acquire's
/// deadlock check walks only what the new wait can reach (see the module documentation).
///
/// The table keeps the lines themselves (in order, with leases); this is an index of them and
/// must see every join and leave. The table rebuilds it from its lines after a restore.
#[derive(Clone, Debug, Default)]
pub(crate) struct WaitLines {
    /// For each waiting session, the locks it waits for and its place in each line.
    places: BTreeMap<SessionId, BTreeMap<String, u64>>,
    /// For each lock whose line is not empty.
    lines: BTreeMap<String, Line>,
    /// For each lease some session waits under, the (lock, session) waits under it, so that a
    /// lease's end finds its waits without looking at every line.
    by_lease: BTreeMap<LeaseId, BTreeSet<(String, SessionId)>>,
    /// Waits in all lines together.
    total: usize,
}

impl WaitLines {
    /// How many waits there are, over all lines.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Whether `session` waits in the line of lock `name`.
    pub(crate) fn waits_in(&self, session: SessionId, name: &str) -> bool {
        self.places
            .get(&session)
            .is_some_and(|places| places.contains_key(name))
    }

    /// Whether `session` waits in the line of lock `name` under `lease`. O(log n).
    pub(crate) fn waits_in_under(&self, session: SessionId, name: &str, lease: LeaseId) -> bool {
        self.by_lease
            .get(&lease)
            .is_some_and(|waits| waits.contains(&(name.to_string(), session)))
    }

    /// The waits under `lease`, as (lock, session) pairs.
    pub(crate) fn waits_under(&self, lease: LeaseId) -> Vec<(String, SessionId)> {
        self.by_lease
            .get(&lease)
            .map(|waits| waits.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// `session` joined the back of lock `name`'s line under `lease`. The caller checked it
    /// was not in that line already.
    pub(crate) fn join(&mut self, name: &str, session: SessionId, lease: LeaseId) {
        let line = self.lines.entry(name.to_string()).or_default();
        let place = line.next_place;
        line.next_place = line.next_place.saturating_add(1);
        line.waiters += 1;
        let places = self.places.entry(session).or_default();
        places.insert(name.to_string(), place);
        // Waiting in a second line makes each of the session's lines need to know it.
        if places.len() >= 2 {
            for (lock, place) in places.iter() {
                if let Some(line) = self.lines.get_mut(lock) {
                    line.shared.insert((*place, session));
                }
            }
        }
        self.by_lease
            .entry(lease)
            .or_default()
            .insert((name.to_string(), session));
        self.total += 1;
    }

    /// `session` left lock `name`'s line (granted, cancelled, or its lease ended), where it
    /// waited under `lease`. A session that was not there is ignored.
    pub(crate) fn leave(&mut self, name: &str, session: SessionId, lease: LeaseId) {
        let Some(places) = self.places.get_mut(&session) else {
            return;
        };
        let Some(place) = places.remove(name) else {
            return;
        };
        if places.len() == 1 {
            // Its one remaining line no longer needs to know it waits elsewhere.
            for (lock, place) in places.iter() {
                if let Some(line) = self.lines.get_mut(lock) {
                    line.shared.remove(&(*place, session));
                }
            }
        }
        if places.is_empty() {
            self.places.remove(&session);
        }
        if let Some(line) = self.lines.get_mut(name) {
            line.shared.remove(&(place, session));
            line.waiters = line.waiters.saturating_sub(1);
            if line.waiters == 0 {
                self.lines.remove(name);
            }
        }
        if let Some(waits) = self.by_lease.get_mut(&lease) {
            waits.remove(&(name.to_string(), session));
            if waits.is_empty() {
                self.by_lease.remove(&lease);
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    /// If `session` joined the back of lock `name`'s line, the cycle of waits it would close,
    /// starting with `session` (then the holder of `name` or a session in its line, and so
    /// on, each waiting for the next, the last waiting for `session`); `None` when there is
    /// none. `holder_of` gives a lock's holder.
    ///
    /// The caller checked that `session` is not in `name`'s line. Cost: one step per lock and
    /// per session the new wait reaches through a holder or a waiter that waits in another
    /// line (each step a few `O(log n)` map operations); waiters that wait in one line only
    /// cost nothing, however long their line.
    pub(crate) fn cycle_if_joins<'a>(
        &'a self,
        session: SessionId,
        name: &'a str,
        holder_of: impl Fn(&str) -> Option<SessionId>,
    ) -> Option<Vec<SessionId>> {
        // Per lock reached: the places below this bound are covered.
        let mut covered: BTreeMap<&'a str, u64> = BTreeMap::new();
        // Each session reached, and the session whose wait reached it (the new waiter for the
        // first ones): a path back to the new waiter, with a real wait at every step.
        let mut reached_from: BTreeMap<SessionId, SessionId> = BTreeMap::new();
        // (lock, bound, by): `by` waits for the holder of `lock` and for the waiters placed
        // before `bound` in its line.
        let mut pending: Vec<(&'a str, u64, SessionId)> = vec![(name, u64::MAX, session)];
        let own_places = self.places.get(&session);
        while let Some((lock, bound, by)) = pending.pop() {
            let from = match covered.get(lock) {
                Some(&covered_below) if covered_below >= bound => continue,
                Some(&covered_below) => covered_below,
                None => {
                    if let Some(holder) = holder_of(lock) {
                        if holder == session {
                            return Some(cycle_through(session, by, &reached_from));
                        }
                        if let std::collections::btree_map::Entry::Vacant(entry) =
                            reached_from.entry(holder)
                        {
                            entry.insert(by);
                            self.push_waits_of(holder, &mut pending);
                        }
                    }
                    0
                }
            };
            covered.insert(lock, bound);
            if own_places
                .and_then(|places| places.get(lock))
                .is_some_and(|place| (from..bound).contains(place))
            {
                return Some(cycle_through(session, by, &reached_from));
            }
            let Some(line) = self.lines.get(lock) else {
                continue;
            };
            for &(_, ahead) in line
                .shared
                .range((from, SessionId(0))..(bound, SessionId(0)))
            {
                if ahead == session {
                    return Some(cycle_through(session, by, &reached_from));
                }
                if let std::collections::btree_map::Entry::Vacant(entry) = reached_from.entry(ahead)
                {
                    entry.insert(by);
                    self.push_waits_of(ahead, &mut pending);
                }
            }
        }
        None
    }

    /// Queue the search's visit of every line `session` waits in.
    fn push_waits_of<'a>(
        &'a self,
        session: SessionId,
        pending: &mut Vec<(&'a str, u64, SessionId)>,
    ) {
        if let Some(places) = self.places.get(&session) {
            for (lock, place) in places {
                pending.push((lock.as_str(), *place, session));
            }
        }
    }
}

/// The cycle `session -> ... -> last -> session`, from the search's record of who reached
/// whom. Bounded by the number of sessions reached, so a damaged record cannot loop.
fn cycle_through(
    session: SessionId,
    last: SessionId,
    reached_from: &BTreeMap<SessionId, SessionId>,
) -> Vec<SessionId> {
    if last == session {
        return vec![session];
    }
    let mut path = vec![last];
    let mut current = last;
    while let Some(&previous) = reached_from.get(&current) {
        if previous == session || path.len() > reached_from.len() {
            break;
        }
        path.push(previous);
        current = previous;
    }
    path.push(session);
    path.reverse();
    path
}
