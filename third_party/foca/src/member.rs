/* This Source Code Form is subject to the terms of the Mozilla Public
 * License, v. 2.0. If a copy of the MPL was not distributed with this
 * file, You can obtain one at https://mozilla.org/MPL/2.0/. */
extern crate alloc;
use alloc::vec::Vec;

use core::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use rand::{
    RngExt,
    prelude::{IteratorRandom, SliceRandom},
};

use crate::digest::ActiveDigest;

/// State describes how a Foca instance perceives a member of the cluster.
///
/// This is part of the Suspicion Mechanism described in section 4.2 of the
/// original SWIM paper.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum State {
    /// Member is active.
    Alive,
    /// Member is active, but at least one cluster member
    /// suspects its down. For all purposes, a `Suspect` member
    /// is treated as if it were `Alive` until either it
    /// refutes the suspicion (becoming `Alive`) or fails to
    /// do so (being declared `Down`).
    Suspect,
    /// Confirmed Down.
    /// A member that reaches this state can't join the cluster
    /// with the same identity until the cluster forgets
    /// this knowledge.
    Down,
}

/// Incarnation is a member-controlled cluster-global number attached
/// to a member identity.
/// A member M's incarnation starts with zero and can only be incremented
/// by said member M when refuting suspicion.
pub type Incarnation = u16;

/// A Cluster Member. Also often called "cluster update".
///
/// A [`Member`] represents Foca's snapshot knowledge about an
/// [`crate::Identity`]. An individual cluster update is simply a
/// serialized Member which other Foca instances receive and use to
/// update their own cluster state representation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Member<T> {
    id: T,
    incarnation: Incarnation,
    state: State,
}

impl<T> Member<T> {
    /// Initializes a new member.
    ///
    /// `id` is an identity used to uniquely identify an individual
    /// cluster member (say, a primary key).
    pub const fn new(id: T, incarnation: Incarnation, state: State) -> Self {
        Self {
            id,
            incarnation,
            state,
        }
    }

    /// Shortcut for initializing a member as [`State::Alive`].
    pub fn alive(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Alive)
    }

    #[cfg(test)]
    pub(crate) fn suspect(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Suspect)
    }

    /// Shortcut for initializing a member as [`State::Down`].
    pub fn down(id: T) -> Self {
        Self::new(id, Incarnation::default(), State::Down)
    }

    /// Getter for the member's Incarnation
    pub const fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    /// Getter for the member's State
    pub const fn state(&self) -> State {
        self.state
    }

    /// Getter for the member's identity
    pub const fn id(&self) -> &T {
        &self.id
    }

    pub(crate) const fn is_active(&self) -> bool {
        match self.state {
            State::Alive | State::Suspect => true,
            State::Down => false,
        }
    }

    pub(crate) const fn change_state(&mut self, incarnation: Incarnation, state: State) -> bool {
        if self.can_change(incarnation, state) {
            self.state = state;
            self.incarnation = incarnation;
            true
        } else {
            false
        }
    }

    const fn can_change(&self, other_incarnation: Incarnation, other: State) -> bool {
        // This implements the order of preference of the Suspicion subprotocol
        // outlined on section 4.2 of the paper.
        match self.state {
            State::Alive => match other {
                State::Alive => other_incarnation > self.incarnation,
                State::Suspect => other_incarnation >= self.incarnation,
                State::Down => true,
            },
            State::Suspect => match other {
                State::Alive | State::Suspect => other_incarnation > self.incarnation,
                State::Down => true,
            },
            State::Down => false,
        }
    }

    pub(crate) fn into_identity(self) -> T {
        self.id
    }
}

/// The member list: a `Vec` (foca's probe order: walked round-robin, shuffled after each
/// full walk) plus an index from address to slot.
///
/// ha patch: upstream searched the `Vec` linearly on every update, which made a join of N
/// members O(N^2) per member. `index` holds each member's slot, hashed by its address, so
/// `apply`, `is_active` and `remove_if_down` are O(1); the `Vec` and its order, the shuffle
/// and the random placement of new members are unchanged.
pub(crate) struct Members<T> {
    pub(crate) inner: Vec<Member<T>>,
    // Slots into `inner`, one per member, hashed by `addr()`. Only looked up, never
    // iterated, so its (randomly seeded) hasher cannot change foca's behaviour.
    // `u32` (issue 17): 4 bytes a member instead of 8, in every member's list of every
    // other; a list cannot reach 2^32 members (it would need hundreds of GiB).
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    cursor: usize,
    num_active: usize,
    // ha patch (issue 17): the active members' digest, changed wherever `num_active` is.
    digest: ActiveDigest,
}

/// Below this many members, `choose_members` scans the whole list (upstream's reservoir
/// sampling, exactly); from it on, it first tries random slots (see there).
const SAMPLE_BY_PROBING_MIN: usize = 64;

#[cfg(test)]
impl<T> Members<T> {
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
}

impl<T> Members<T>
where
    T: PartialEq + Clone + crate::Identity,
{
    pub(crate) const fn num_active(&self) -> usize {
        self.num_active
    }

    pub(crate) const fn digest(&self) -> &ActiveDigest {
        &self.digest
    }

    pub(crate) fn new(inner: Vec<Member<T>>) -> Self {
        // XXX This doesn't prevent someone initializing with
        //     duplicated members... Not a problem (yet?) since
        //     inner is always empty outside of tests
        let num_active = inner.iter().filter(|member| member.is_active()).count();
        let mut digest = ActiveDigest::default();
        for member in inner.iter().filter(|member| member.is_active()) {
            digest.add(member.id.digest_element());
        }

        let mut members = Self {
            cursor: 0,
            num_active,
            digest,
            inner,
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        };
        members.rebuild_index();
        members
    }

    fn hash_addr(hasher: &DefaultHashBuilder, addr: &T::Addr) -> u64 {
        hasher.hash_one(addr)
    }

    fn rebuild_index(&mut self) {
        let Self {
            inner,
            index,
            hasher,
            ..
        } = self;
        index.clear();
        index.reserve(inner.len(), |&slot| {
            Self::hash_addr(hasher, &inner[slot as usize].id.addr())
        });
        for (slot, member) in inner.iter().enumerate() {
            let hash = Self::hash_addr(hasher, &member.id.addr());
            index.insert_unique(hash, slot as u32, |&other| {
                Self::hash_addr(hasher, &inner[other as usize].id.addr())
            });
        }
    }

    /// The slot of the member at `addr` (the tests' check of the index; foca looks members
    /// up by identity, `position_of`).
    #[cfg(test)]
    fn position(&self, addr: &T::Addr) -> Option<usize> {
        let hash = Self::hash_addr(&self.hasher, addr);
        self.index
            .find(hash, |&slot| self.inner[slot as usize].id.addr() == *addr)
            .map(|&slot| slot as usize)
    }

    /// The slot of the member at `id`'s address (holding `id` or another identity there).
    ///
    /// ha patch (issue 17): like `position`, but a slot holding `id` itself is recognised by
    /// `Identity::is_certainly` without reading the known identity's address.
    fn position_of(&self, id: &T) -> Option<usize> {
        let addr = id.addr();
        let hash = Self::hash_addr(&self.hasher, &addr);
        self.index
            .find(hash, |&slot| {
                let known = &self.inner[slot as usize].id;
                known.is_certainly(id) || known.addr() == addr
            })
            .map(|&slot| slot as usize)
    }

    /// The index entry of the member at `addr` says `from`; make it say `to`. `from` must be
    /// the only entry holding that slot.
    fn move_slot(&mut self, addr: &T::Addr, from: usize, to: usize) {
        let hash = Self::hash_addr(&self.hasher, addr);
        // In `u32`, where the `usize::MAX` of `swap` is `u32::MAX` on both sides.
        if let Some(slot) = self.index.find_mut(hash, |&slot| slot == from as u32) {
            *slot = to as u32;
        } else {
            debug_assert!(false, "member index lost a slot");
        }
    }

    /// Swap two slots of `inner`, keeping the index in step.
    fn swap(&mut self, a: usize, b: usize) {
        if a == b {
            return;
        }
        let (addr_a, addr_b) = (self.inner[a].id.addr(), self.inner[b].id.addr());
        // Through a slot no member has, so no two entries ever hold the same slot.
        self.move_slot(&addr_a, a, usize::MAX);
        self.move_slot(&addr_b, b, a);
        self.move_slot(&addr_a, usize::MAX, b);
        self.inner.swap(a, b);
    }

    // Next member that's considered active
    // Chosen at random (shuffle + round-robin)
    pub(crate) fn next(&mut self, mut rng: impl RngExt) -> Option<&Member<T>> {
        // Round-robin with a shuffle at the end
        if self.cursor >= self.inner.len() {
            self.inner.shuffle(&mut rng);
            // Once per walk of the whole list: O(1) per probe.
            self.rebuild_index();
            self.cursor = 0;
        }

        // Find an active member from cursor..len()
        let position = self
            .inner
            .iter()
            .skip(self.cursor)
            .position(|m| m.is_active())
            // Since we skip(), position() will start counting from zero
            // this ensures it's actually the index of the chosen member
            .map(|pos| pos + self.cursor);

        // And if we don't find any: try from 0..cursor
        let position = position.or_else(|| {
            self.inner
                .iter()
                .take(self.cursor)
                .position(|m| m.is_active())
        });

        if let Some(pos) = position {
            if pos < self.cursor {
                // We wrapped around the list to find a member. A shuffle
                // is needed, so we set it to MAX. Any other value could
                // cause the shuffle to not happen since members may join
                // in-between probes
                self.cursor = usize::MAX;
            } else {
                self.cursor = pos.saturating_add(1);
            }
            self.inner.get(pos)
        } else {
            None
        }
    }

    fn choose_members<F>(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        mut rng: impl RngExt,
        picker: F,
    ) where
        F: Fn(&Member<T>) -> bool,
    {
        // ha patch: upstream always scanned every member (reservoir sampling below), which
        // is O(N) per gossip round and probe. With many members and few wanted, draw random
        // slots instead and keep the eligible ones not yet chosen: each pick is uniform over
        // the eligible members left, as with the reservoir. When too few eligible members
        // turn up in a bounded number of draws (most are down, or `picker` refuses most),
        // fall back to the scan.
        let start = output.len();
        let len = self.inner.len();
        if len >= SAMPLE_BY_PROBING_MIN && wanted.saturating_mul(4) <= len {
            let mut draws = wanted.saturating_mul(8).saturating_add(16);
            while output.len() - start < wanted && draws > 0 {
                draws -= 1;
                let member = &self.inner[rng.random_range(0..len)];
                if picker(member) && !output[start..].iter().any(|chosen| chosen.id == member.id) {
                    output.push(member.clone());
                }
            }
            if output.len() - start == wanted {
                return;
            }
            output.truncate(start);
        }

        // Basic reservoir sampling
        let mut num_chosen = 0;
        let mut num_seen = 0;

        for member in &self.inner {
            if !picker(member) {
                continue;
            }

            num_seen += 1;
            if num_chosen < wanted {
                num_chosen += 1;
                output.push(member.clone());
            } else {
                let replace_at = rng.random_range(0..num_seen);
                if replace_at < wanted {
                    output[start + replace_at] = member.clone();
                }
            }
        }
    }

    pub(crate) fn choose_down_members(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        rng: impl RngExt,
    ) {
        self.choose_members(wanted, output, rng, |member| !member.is_active());
    }

    pub(crate) fn choose_active_members<F>(
        &self,
        wanted: usize,
        output: &mut Vec<Member<T>>,
        rng: impl RngExt,
        picker: F,
    ) where
        F: Fn(&T) -> bool,
    {
        self.choose_members(wanted, output, rng, |member| {
            member.is_active() && picker(member.id())
        });
    }

    pub(crate) fn remove_if_down(&mut self, id: &T) -> Option<Member<T>> {
        let addr = id.addr();
        let pos = self
            .position_of(id)
            .filter(|&pos| &self.inner[pos].id == id && self.inner[pos].state == State::Down)?;

        let hash = Self::hash_addr(&self.hasher, &addr);
        if let Ok(entry) = self.index.find_entry(hash, |&slot| slot as usize == pos) {
            entry.remove();
        }
        let last = self.inner.len() - 1;
        if pos != last {
            let moved = self.inner[last].id.addr();
            self.move_slot(&moved, last, pos);
        }
        Some(self.inner.swap_remove(pos))
    }

    pub(crate) fn iter_active(&self) -> impl Iterator<Item = &Member<T>> {
        self.inner.iter().filter(|m| m.is_active())
    }

    /// The identity held at `id`'s address when it is another one that beats `id`.
    ///
    /// ha patch: a member whose messages are refused because its address is held by such an
    /// identity is told which one (see `Foca::send_turn_undead`).
    pub(crate) fn winner_over(&self, id: &T) -> Option<&T> {
        let known = &self.inner[self.position_of(id)?].id;
        (known != id && known.win_addr_conflict(id)).then_some(known)
    }

    pub(crate) fn is_active(&self, id: &T) -> bool {
        self.position_of(id).is_some_and(|pos| {
            let member = &self.inner[pos];
            &member.id == id && member.is_active()
        })
    }

    pub(crate) fn apply_existing_if<F: Fn(&Member<T>) -> bool>(
        &mut self,
        update: Member<T>,
        condition: F,
    ) -> Option<ApplySummary<T>> {
        let pos = self.position_of(update.id())?;
        Some(self.apply_at(pos, update, condition))
    }

    /// `apply_existing_if` for the member in slot `pos`.
    fn apply_at<F: Fn(&Member<T>) -> bool>(
        &mut self,
        pos: usize,
        mut update: Member<T>,
        condition: F,
    ) -> ApplySummary<T> {
        {
            let known_member = &mut self.inner[pos];
            let id_conflict = known_member.id != update.id;

            // If the update wins the conflict, the full member
            // state is replaced (it's essentially a rejoin)
            // If it doesn't, it gets discarded
            if id_conflict && known_member.id.win_addr_conflict(&update.id) {
                return ApplySummary {
                    is_active_now: known_member.is_active(),
                    apply_successful: false,
                    changed_active_set: false,
                    conflict: ConflictResult::Lost,
                };
            }

            if !condition(known_member) {
                return ApplySummary {
                    is_active_now: known_member.is_active(),
                    apply_successful: false,
                    changed_active_set: false,
                    conflict: if id_conflict {
                        ConflictResult::FailedCondition
                    } else {
                        ConflictResult::NoConflict
                    },
                };
            }
            let was_active = known_member.is_active();
            // The digest holds each active member's identity: the old identity leaves it
            // when replaced (its element is taken before the swap below).
            let replaced_element = if was_active && id_conflict {
                known_member.id.digest_element()
            } else {
                None
            };

            let (apply_successful, conflict) = if id_conflict {
                core::mem::swap(&mut known_member.id, &mut update.id);
                known_member.state = update.state;
                known_member.incarnation = update.incarnation;
                (true, ConflictResult::Replaced(update.id))
            } else {
                (
                    known_member.change_state(update.incarnation, update.state),
                    ConflictResult::NoConflict,
                )
            };

            let is_active_now = known_member.is_active();
            let changed_active_set = is_active_now != was_active;
            if id_conflict {
                self.digest.remove(replaced_element);
                if is_active_now {
                    self.digest.add(known_member.id.digest_element());
                }
            } else if changed_active_set {
                let element = known_member.id.digest_element();
                if is_active_now {
                    self.digest.add(element);
                } else {
                    self.digest.remove(element);
                }
            }

            if changed_active_set {
                // XXX Overzealous checking
                if is_active_now {
                    self.num_active = self.num_active.saturating_add(1);
                } else {
                    self.num_active = self.num_active.saturating_sub(1);
                }
            }

            ApplySummary {
                is_active_now,
                apply_successful,
                changed_active_set,
                conflict,
            }
        }
    }

    pub(crate) fn apply(&mut self, update: Member<T>, mut rng: impl RngExt) -> ApplySummary<T> {
        // ha patch: look the address up first instead of cloning every update for
        // `apply_existing_if` (an identity clone can allocate).
        if let Some(pos) = self.position_of(&update.id) {
            return self.apply_at(pos, update, |_member| true);
        }
        {
            // Unknown member, we'll register it
            let is_active_now = update.is_active();

            // Insert at the end and swap with a random position.
            let hash = Self::hash_addr(&self.hasher, &update.id.addr());
            self.inner.push(update);
            let inserted_at = self.inner.len() - 1;
            let Self {
                inner,
                index,
                hasher,
                ..
            } = self;
            index.insert_unique(hash, inserted_at as u32, |&slot| {
                Self::hash_addr(hasher, &inner[slot as usize].id.addr())
            });

            let swap_idx = (0..self.inner.len())
                .choose(&mut rng)
                .unwrap_or(inserted_at);

            self.swap(swap_idx, inserted_at);

            if is_active_now {
                self.num_active = self.num_active.saturating_add(1);
                self.digest.add(self.inner[swap_idx].id.digest_element());
            }

            ApplySummary {
                is_active_now,
                apply_successful: true,
                // Registering a new active member changes the active set
                changed_active_set: is_active_now,
                conflict: ConflictResult::NoConflict,
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub(crate) struct ApplySummary<T> {
    pub(crate) is_active_now: bool,
    pub(crate) apply_successful: bool,
    pub(crate) changed_active_set: bool,
    pub(crate) conflict: ConflictResult<T>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConflictResult<T> {
    NoConflict,
    Replaced(T),
    Lost,
    FailedCondition,
}

#[cfg(test)]
mod tests {

    use crate::Identity;

    use super::*;

    use alloc::vec;
    use rand::{SeedableRng, rngs::SmallRng};

    #[derive(Clone, Debug, PartialEq, Eq, Copy, PartialOrd, Ord)]
    struct Id(&'static str);
    impl crate::Identity for Id {
        type Addr = &'static str;

        fn renew(&self) -> Option<Self> {
            None
        }

        fn addr(&self) -> Self::Addr {
            self.0
        }

        fn win_addr_conflict(&self, _adversary: &Self) -> bool {
            panic!("addr is self, there'll never be a conflict");
        }
    }

    use State::*;

    #[test]
    fn alive_transitions() {
        let mut member = Member::new(Id("a"), 0, Alive);

        // Alive => Alive
        assert!(
            member.change_state(member.incarnation + 1, Alive),
            "can transition to a higher incarnation"
        );

        assert_eq!(1, member.incarnation);
        assert_eq!(Alive, member.state);

        assert!(
            !member.change_state(member.incarnation - 1, Alive),
            "cannot transition to a lower incarnation"
        );

        assert!(
            !member.change_state(member.incarnation, Alive),
            "cannot transition to same state and incarnation {:?}",
            member
        );

        // Alive => Suspect
        assert!(
            !member.change_state(member.incarnation - 1, Suspect),
            "lower suspect incarnation shouldn't transition"
        );

        assert!(
            member.change_state(member.incarnation, Suspect),
            "transition to suspect with same incarnation"
        );
        assert_eq!(Suspect, member.state);

        member = Member::new(Id("b"), 0, Alive);
        assert!(
            member.change_state(member.incarnation + 1, Suspect),
            "transition to suspect with higher incarnation"
        );
        assert_eq!(1, member.incarnation);
        assert_eq!(Suspect, member.state);

        // Alive => Down, always works
        assert!(
            Member::new("c", 1, Alive).change_state(0, Down),
            "transitions to down on lower incarnation"
        );
        assert!(
            Member::new("c", 0, Alive).change_state(0, Down),
            "transitions to down on same incarnation"
        );
        assert!(
            Member::new("c", 0, Alive).change_state(1, Down),
            "transitions to down on higher incarnation"
        );
    }

    #[test]
    fn suspect_transitions() {
        let mut member = Member::new(Id("a"), 0, Suspect);

        // Suspect => Suspect
        assert!(
            member.change_state(member.incarnation + 1, Suspect),
            "can transition to a higher incarnation"
        );

        assert_eq!(1, member.incarnation);
        assert_eq!(Suspect, member.state);

        assert!(
            !member.change_state(member.incarnation - 1, Suspect),
            "cannot transition to a lower incarnation"
        );

        assert!(
            !member.change_state(member.incarnation, Suspect),
            "cannot transition to same state and incarnation {:?}",
            member
        );

        // Suspect => Alive
        assert!(
            !member.change_state(member.incarnation - 1, Alive),
            "lower alive incarnation shouldn't transition"
        );
        assert!(
            !member.change_state(member.incarnation, Alive),
            "same alive incarnation shouldn't transition"
        );

        assert!(
            member.change_state(member.incarnation + 1, Alive),
            "can transition to alive with higher incarnation"
        );
        assert_eq!(Alive, member.state);

        // Suspect => Down, always works
        assert!(
            Member::new("c", 1, Suspect).change_state(0, Down),
            "transitions to down on lower incarnation"
        );
        assert!(
            Member::new("c", 0, Suspect).change_state(0, Down),
            "transitions to down on same incarnation"
        );
        assert!(
            Member::new("c", 0, Suspect).change_state(1, Down),
            "transitions to down on higher incarnation"
        );
    }

    #[test]
    fn down_never_transitions() {
        let mut member = Member::new("dead", 1, Down);

        for incarnation in 0..=2 {
            assert!(!member.change_state(incarnation, Alive));
            assert!(!member.change_state(incarnation, Suspect));
            assert!(!member.change_state(incarnation, Down));
        }
    }

    #[test]
    fn next_walks_sequentially_then_shuffles() {
        let ordered_ids = vec![Id("1"), Id("2"), Id("3"), Id("4"), Id("5")];
        let mut members = Members::new(ordered_ids.iter().cloned().map(Member::alive).collect());

        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        for wanted in ordered_ids.iter() {
            let got = members
                .next(&mut rng)
                .expect("Non-empty set of Alive members should always yield Some()")
                .id;
            assert_eq!(wanted, &got);
        }

        // By now we walked through all known live members so
        // the internal state should've shuffled.
        // We'll verify that by calling `next()` multiple
        // times and comparing with the original `ordered_ids`
        let mut after_shuffle = (0..ordered_ids.len())
            .map(|_| members.next(&mut rng).unwrap().id)
            .collect::<Vec<_>>();
        assert_ne!(ordered_ids, after_shuffle);

        // The shuffle only happens once the cursor walks
        // through the whole set, so `after_shuffle` should
        // contain every member, like `ordered_ids`, but in
        // a distinct order
        after_shuffle.sort_unstable();
        assert_eq!(ordered_ids, after_shuffle);
    }

    #[test]
    fn apply_existing_if_behaviour() {
        let mut members = Members::new(Vec::new());

        assert_eq!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| true),
            "Only yield None only if member is not found"
        );

        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        assert_ne!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| true),
            "Must yield Some() if existing, regardless of condition"
        );

        assert_ne!(
            None,
            members.apply_existing_if(Member::alive(Id("1")), |_member| false),
            "Must yield Some() if existing, regardless of condition"
        );
    }

    #[test]
    fn apply_summary_behaviour() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        // New and active member
        let res = members.apply(Member::suspect(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: true,
                changed_active_set: true,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());
        assert_eq!(1, members.num_active());

        // Failed attempt to change member id=1 to alive
        // (since it's already suspect with same incarnation)
        let res = members.apply(Member::alive(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: false,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());

        // Successful attempt at changing member id=1 to
        // alive by using a higher incarnation
        let res = members.apply(Member::new(Id("1"), 1, State::Alive), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: true,
                apply_successful: true,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());

        // Change existing member to down
        let res = members.apply(Member::down(Id("1")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: false,
                apply_successful: true,
                changed_active_set: true,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(1, members.len());
        assert_eq!(0, members.num_active());

        // New and inactive member
        let res = members.apply(Member::down(Id("2")), &mut rng);
        assert_eq!(
            ApplySummary {
                is_active_now: false,
                apply_successful: true,
                changed_active_set: false,
                conflict: ConflictResult::NoConflict,
            },
            res,
        );
        assert_eq!(2, members.len());
        assert_eq!(0, members.num_active());
    }

    #[test]
    fn remove_if_down_works() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        assert_eq!(
            None,
            members.remove_if_down(&Id("1")),
            "cant remove member that does not exist"
        );
        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        assert_eq!(
            None,
            members.remove_if_down(&Id("1")),
            "cant remove member that isnt down"
        );
        let _ = members.apply(Member::down(Id("1")), &mut rng);

        assert_eq!(
            Some(Member::down(Id("1"))),
            members.remove_if_down(&Id("1")),
            "must return the removed member"
        );
    }

    #[test]
    fn next_yields_none_with_no_active_members() {
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        assert_eq!(
            None,
            members.next(&mut rng),
            "next() should yield None when there are no members"
        );

        let _ = members.apply(Member::down(Id("-1")), &mut rng);
        let _ = members.apply(Member::down(Id("-2")), &mut rng);
        let _ = members.apply(Member::down(Id("-3")), &mut rng);

        assert_eq!(
            None,
            members.next(&mut rng),
            "next() should yield None when there are no active members"
        );

        let _ = members.apply(Member::alive(Id("1")), &mut rng);

        for _i in 0..10 {
            assert_eq!(
                Some(Id("1")),
                members.next(&mut rng).map(|m| m.id),
                "next() should yield the same member if its the only active"
            );
        }
    }

    #[test]
    fn choose_active_members_behaviour() {
        let members = Members::new(Vec::from([
            // 5 active members
            Member::alive(Id("1")),
            Member::alive(Id("2")),
            Member::alive(Id("3")),
            Member::suspect(Id("4")),
            Member::suspect(Id("5")),
            // 2 down
            Member::down(Id("6")),
            Member::down(Id("7")),
        ]));

        assert_eq!(7, members.len());
        assert_eq!(5, members.num_active());

        let mut out = Vec::new();
        let mut rng = SmallRng::seed_from_u64(0xF0CA);

        out.clear();
        members.choose_active_members(0, &mut out, &mut rng, |_| true);
        assert_eq!(0, out.len(), "Can pointlessly choose 0 members");

        out.clear();
        members.choose_active_members(10, &mut out, &mut rng, |_| false);
        assert_eq!(0, out.len(), "Filtering works");

        out.clear();
        members.choose_active_members(members.len(), &mut out, &mut rng, |_| true);
        assert_eq!(
            members.num_active(),
            out.len(),
            "Only chooses active members"
        );

        out.clear();
        members.choose_active_members(2, &mut out, &mut rng, |_| true);
        assert_eq!(2, out.len(), "Respects `wanted` even if we have more");

        out.clear();
        members.choose_active_members(usize::MAX, &mut out, &mut rng, |&member_id| {
            member_id.0.parse::<usize>().expect("number") > 4
        });
        assert_eq!(vec![Member::suspect(Id("5"))], out);

        out.clear();
        members.choose_down_members(3, &mut out, &mut rng);
        assert_eq!(2, out.len());
        assert!(out.iter().any(|m| m.id == Id("7")));
        assert!(out.iter().any(|m| m.id == Id("6")));
    }

    /// ha patch: every member is found at its slot through the index, and only there.
    fn assert_indexed(members: &Members<crate::testing::ID>) {
        for (slot, member) in members.inner.iter().enumerate() {
            assert_eq!(
                Some(slot),
                members.position(&member.id.addr()),
                "{member:?}"
            );
        }
        assert_eq!(members.inner.len(), members.index.len());
    }

    #[test]
    fn index_follows_inserts_shuffles_and_removals() {
        use crate::testing::ID;
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        for round in 0..2_000u32 {
            let id = ID::new((round % 200) as u8);
            match rng.random_range(0..4) {
                0 => {
                    let _ = members.apply(Member::alive(id), &mut rng);
                }
                1 => {
                    let _ = members.apply(Member::down(id), &mut rng);
                }
                2 => {
                    let _ = members.remove_if_down(&id);
                }
                _ => {
                    let _ = members.next(&mut rng);
                }
            }
            assert_indexed(&members);
            let active = members.inner.iter().filter(|m| m.is_active()).count();
            assert_eq!(active, members.num_active(), "round {round}");
            for member in &members.inner {
                assert_eq!(member.is_active(), members.is_active(&member.id));
            }
        }
        assert!(members.len() > 50, "the run kept some members");
    }

    /// ha patch (issue 17): the digest kept on every change equals one computed afresh.
    fn assert_digest_recomputes(members: &Members<crate::testing::ID>) {
        let mut fresh = ActiveDigest::default();
        for member in members.inner.iter().filter(|member| member.is_active()) {
            fresh.add(member.id.digest_element());
        }
        assert_eq!(&fresh, members.digest());
    }

    #[test]
    fn digest_follows_joins_suspicions_downs_and_renames() {
        use crate::testing::ID;
        let mut members = Members::new(Vec::new());
        let mut rng = SmallRng::seed_from_u64(0xD16E);
        let mut changes = 0;
        for _round in 0..5_000u32 {
            // Few addresses and bumps, so updates often hit known members and replace
            // identities (renames) in both directions of activity.
            let id = ID::new_with_bump(rng.random_range(0..40), rng.random_range(0..4));
            let incarnation = rng.random_range(0..3);
            let before = members.digest().clone();
            let _ = match rng.random_range(0..5) {
                0 | 1 => members.apply(Member::new(id, incarnation, State::Alive), &mut rng),
                2 => members.apply(Member::new(id, incarnation, State::Suspect), &mut rng),
                3 => members.apply(Member::new(id, incarnation, State::Down), &mut rng),
                _ => {
                    let _ = members.remove_if_down(&id);
                    let _ = members.next(&mut rng);
                    continue;
                }
            };
            if *members.digest() != before {
                changes += 1;
            }
            assert_digest_recomputes(&members);
        }
        assert!(changes > 200, "the run changed the active set: {changes}");
    }

    #[test]
    fn choose_from_many_members_is_distinct_and_filtered() {
        let ids: Vec<crate::testing::ID> = (0..=255u8).map(crate::testing::ID::new).collect();
        let mut all = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            // Every fourth member is down.
            all.push(if n % 4 == 0 {
                Member::down(*id)
            } else {
                Member::alive(*id)
            });
        }
        let members = Members::new(all);
        let mut rng = SmallRng::seed_from_u64(0xF0CA);
        let mut seen = alloc::collections::BTreeSet::new();
        for _round in 0..500 {
            let mut out = Vec::new();
            members.choose_active_members(3, &mut out, &mut rng, |id| *id != ids[1]);
            assert_eq!(3, out.len());
            for (n, member) in out.iter().enumerate() {
                assert!(member.is_active());
                assert_ne!(member.id, ids[1], "the picker refused it");
                assert!(!out[..n].iter().any(|other| other.id == member.id));
                seen.insert(member.id.addr());
            }
        }
        // Random: 1,500 picks among 191 eligible members reach nearly all of them.
        assert!(seen.len() > 180, "{} distinct members chosen", seen.len());
        // Fewer eligible than wanted: the scan returns all of them.
        let mut out = Vec::new();
        members.choose_active_members(10, &mut out, &mut rng, |id| id.addr() < 8);
        assert_eq!(6, out.len(), "{out:?}");
    }

    #[test]
    fn sets_replaced_id_on_addr_conflict() {
        let id = crate::testing::ID::new(1).rejoinable();
        let mut members = Members::new(Vec::from([
            // 5 active members
            Member::alive(id),
        ]));

        let renewed = id.renew().unwrap();
        let summary = members
            .apply_existing_if(Member::alive(renewed), |_| true)
            .expect("member found");

        assert!(summary.apply_successful);
        assert_eq!(ConflictResult::Replaced(id), summary.conflict);

        let another = renewed.renew().unwrap();
        let summary = members
            .apply_existing_if(Member::alive(another), |_| false)
            .expect("member found");

        assert!(!summary.apply_successful);
        assert_eq!(
            ConflictResult::FailedCondition,
            summary.conflict,
            "must not apply if condition fails"
        );

        // trying to go back to the past leads to
        // conflict resolution failure
        let summary = members
            .apply_existing_if(Member::alive(id), |_| true)
            .expect("member found");

        assert_eq!(ConflictResult::Lost, summary.conflict,);
        assert!(!summary.apply_successful, "must not apply if conflict lost");
    }
}
