//! Issue 17, item 3: the session table of the applied state applies each write of a
//! pipelined session at most once, whatever interleaving of writes, retries, duplicated and
//! reordered log copies, lost answers and abandoned writes reaches it.
//!
//! A model client keeps several writes in flight on each of a few sessions, as
//! `ReplicaClient` does (sequences handed out in order, at most
//! `SESSION_WRITES_IN_FLIGHT_MAX` between the lowest unanswered one and the next). Every send
//! of a write (first or retry) puts a copy stamped with the client's lowest unanswered
//! sequence *at that moment* in a pool; the log takes copies from the pool in any order, some
//! more than once. Checked after every step:
//! - no sequence is applied twice;
//! - a copy of a write the client still waits for is never answered `Stale` nor
//!   `SessionFull` (the client's window keeps it under the table's bounds), and once the
//!   write was applied every later copy is answered `Duplicate` with the first response;
//! - a write the client gave up on is applied at most once in all, and never after a later
//!   write carried a lowest unanswered sequence past it.

use std::collections::{BTreeMap, BTreeSet};

use ha_core::{LogIndex, SessionId};
use ha_replicate::driver::SESSION_WRITES_IN_FLIGHT_MAX;
use ha_replicate::replica::{ApplyOutcome, SESSION_RESPONSES_MAX, SessionCommand, SessionTable};
use proptest::prelude::*;

const SESSIONS: usize = 3;

/// One step of the model, its numbers reduced modulo what exists when it runs.
#[derive(Clone, Debug)]
enum Step {
    /// Start a write on a session.
    Begin { session: usize },
    /// Send (again) one of a session's writes in flight.
    Send { session: usize, pick: usize },
    /// The log takes a copy from the pool; `keep` leaves it there too (a duplicate).
    Deliver { pick: usize, keep: bool },
    /// The client hears the answer of a copy the log took (or gives up when `answered` is
    /// false: the outcome stays unknown to it).
    End {
        session: usize,
        pick: usize,
        answered: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..SESSIONS).prop_map(|session| Step::Begin { session }),
        4 => (0..SESSIONS, any::<usize>()).prop_map(|(session, pick)| Step::Send { session, pick }),
        6 => (any::<usize>(), any::<bool>()).prop_map(|(pick, keep)| Step::Deliver { pick, keep }),
        2 => (0..SESSIONS, any::<usize>(), prop::bool::weighted(0.8))
            .prop_map(|(session, pick, answered)| Step::End { session, pick, answered }),
    ]
}

#[derive(Default)]
struct ModelSession {
    next_sequence: u64,
    unanswered: BTreeSet<u64>,
    /// Writes given up on, with their outcome unknown to the client.
    abandoned: BTreeSet<u64>,
}

impl ModelSession {
    fn lowest_unanswered(&self) -> u64 {
        self.unanswered
            .first()
            .copied()
            .unwrap_or(self.next_sequence)
    }
}

struct Model {
    table: SessionTable,
    sessions: Vec<ModelSession>,
    pool: Vec<SessionCommand>,
    index: u64,
    /// The response each applied write got, by (session, sequence).
    applied: BTreeMap<(u64, u64), Vec<u8>>,
    /// The highest lowest-unanswered sequence the log has seen per session.
    floor: BTreeMap<u64, u64>,
}

impl Model {
    fn new() -> Self {
        Self {
            table: SessionTable::default(),
            sessions: (0..SESSIONS)
                .map(|_| ModelSession {
                    next_sequence: 1,
                    ..ModelSession::default()
                })
                .collect(),
            pool: Vec::new(),
            index: 0,
            applied: BTreeMap::new(),
            floor: BTreeMap::new(),
        }
    }

    fn run(&mut self, step: Step) -> Result<(), TestCaseError> {
        match step {
            Step::Begin { session } => {
                let model = &mut self.sessions[session];
                if model.next_sequence - model.lowest_unanswered() < SESSION_WRITES_IN_FLIGHT_MAX {
                    model.unanswered.insert(model.next_sequence);
                    model.next_sequence += 1;
                }
            }
            Step::Send { session, pick } => {
                let model = &self.sessions[session];
                if model.unanswered.is_empty() {
                    return Ok(());
                }
                let sequence = *model
                    .unanswered
                    .iter()
                    .nth(pick % model.unanswered.len())
                    .expect("in range");
                self.pool.push(SessionCommand {
                    session: SessionId(session as u64),
                    sequence,
                    lowest_unanswered: model.lowest_unanswered(),
                    command: Vec::new(),
                });
            }
            Step::Deliver { pick, keep } => {
                if self.pool.is_empty() {
                    return Ok(());
                }
                let pick = pick % self.pool.len();
                let copy = if keep {
                    self.pool[pick].clone()
                } else {
                    self.pool.swap_remove(pick)
                };
                self.deliver(&copy)?;
            }
            Step::End {
                session,
                pick,
                answered,
            } => {
                let model = &mut self.sessions[session];
                if model.unanswered.is_empty() {
                    return Ok(());
                }
                let sequence = *model
                    .unanswered
                    .iter()
                    .nth(pick % model.unanswered.len())
                    .expect("in range");
                let key = (session as u64, sequence);
                // An answer is heard only for a write that was applied; otherwise give up.
                model.unanswered.remove(&sequence);
                if !(answered && self.applied.contains_key(&key)) {
                    model.abandoned.insert(sequence);
                }
            }
        }
        Ok(())
    }

    fn deliver(&mut self, copy: &SessionCommand) -> Result<(), TestCaseError> {
        self.index += 1;
        let index = LogIndex(self.index);
        let key = (copy.session.0, copy.sequence);
        let floor = self.floor.entry(copy.session.0).or_insert(0);
        *floor = (*floor).max(copy.lowest_unanswered());
        let floor = *floor;
        let waited_for = self.sessions[copy.session.0 as usize]
            .unanswered
            .contains(&copy.sequence);
        let outcome = match self.table.check(index, copy) {
            Some(outcome) => outcome,
            None => {
                let response = format!("{}:{}@{}", copy.session, copy.sequence, index.0);
                self.table
                    .record(index, copy, response.clone().into_bytes());
                ApplyOutcome::Applied(response.into_bytes())
            }
        };
        match &outcome {
            ApplyOutcome::Applied(response) => {
                prop_assert!(
                    self.applied.insert(key, response.clone()).is_none(),
                    "{key:?} applied twice"
                );
                prop_assert!(
                    copy.sequence >= floor,
                    "{key:?} applied below the floor {floor}"
                );
            }
            ApplyOutcome::Duplicate(response) => {
                prop_assert_eq!(
                    Some(response),
                    self.applied.get(&key),
                    "a duplicate of {:?} answers the first response",
                    key
                );
            }
            ApplyOutcome::Stale { .. } => {
                prop_assert!(!waited_for, "{key:?} answered stale while awaited");
            }
            ApplyOutcome::SessionFull { .. } => {
                prop_assert!(!waited_for, "{key:?} refused for a full session");
            }
            ApplyOutcome::Invalid(reason) => {
                return Err(TestCaseError::fail(format!("{key:?}: invalid {reason}")));
            }
        }
        if waited_for && self.applied.contains_key(&key) {
            prop_assert!(
                matches!(
                    outcome,
                    ApplyOutcome::Applied(_) | ApplyOutcome::Duplicate(_)
                ),
                "{key:?}: {outcome:?} for an applied write still awaited"
            );
        }
        prop_assert!(self.table.responses_of(copy.session) <= SESSION_RESPONSES_MAX);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_write_of_a_pipelined_session_applies_at_most_once(
        steps in prop::collection::vec(step(), 1..400)
    ) {
        let mut model = Model::new();
        for step in steps {
            model.run(step)?;
        }
        // Drain: every copy left reaches the log, and nothing is applied twice.
        while let Some(copy) = model.pool.pop() {
            model.deliver(&copy)?;
        }
    }
}

/// A retry of a write whose answer the client already has (its lowest unanswered sequence
/// moved past it) is refused, never applied again: the outcome says so.
#[test]
fn a_copy_below_the_lowest_unanswered_sequence_is_stale_and_not_applied() {
    let mut table = SessionTable::default();
    let write = |sequence, lowest_unanswered| SessionCommand {
        session: SessionId(7),
        sequence,
        lowest_unanswered,
        command: Vec::new(),
    };
    assert_eq!(table.check(LogIndex(1), &write(1, 1)), None);
    table.record(LogIndex(1), &write(1, 1), b"one".to_vec());
    assert_eq!(table.check(LogIndex(2), &write(2, 1)), None);
    table.record(LogIndex(2), &write(2, 1), b"two".to_vec());
    // Both kept while 1 is unanswered.
    assert_eq!(
        table.check(LogIndex(3), &write(2, 1)),
        Some(ApplyOutcome::Duplicate(b"two".to_vec()))
    );
    assert_eq!(table.responses_of(SessionId(7)), 2);
    // Sequence 3 says 1 and 2 are answered: both forgotten, and a late copy of 1 is stale.
    assert_eq!(table.check(LogIndex(4), &write(3, 3)), None);
    table.record(LogIndex(4), &write(3, 3), b"three".to_vec());
    assert_eq!(table.responses_of(SessionId(7)), 1);
    assert_eq!(
        table.check(LogIndex(5), &write(1, 1)),
        Some(ApplyOutcome::Stale {
            lowest_unanswered: 3
        })
    );
    assert_eq!(table.response_bytes(), 5);
}

/// A session that keeps `SESSION_RESPONSES_MAX` responses refuses the next new write (not
/// applied) and takes it once a later write says older ones are answered.
#[test]
fn a_full_session_refuses_new_writes_until_older_answers_are_acknowledged() {
    let mut table = SessionTable::default();
    let write = |sequence, lowest_unanswered| SessionCommand {
        session: SessionId(1),
        sequence,
        lowest_unanswered,
        command: Vec::new(),
    };
    for sequence in 1..=SESSION_RESPONSES_MAX as u64 {
        let command = write(sequence, 1);
        assert_eq!(table.check(LogIndex(sequence), &command), None);
        table.record(LogIndex(sequence), &command, vec![1]);
    }
    let next = SESSION_RESPONSES_MAX as u64 + 1;
    assert_eq!(
        table.check(LogIndex(next), &write(next, 1)),
        Some(ApplyOutcome::SessionFull {
            responses: SESSION_RESPONSES_MAX as u64
        })
    );
    assert_eq!(table.check(LogIndex(next + 1), &write(next, 2)), None);
    assert_eq!(table.responses_of(SessionId(1)), SESSION_RESPONSES_MAX - 1);
}
