//! Issue 17, item 3: what nodes before pipelined sessions wrote still reads. A log of format 1
//! session commands applies as before (each write's lowest unanswered sequence is its own),
//! and a snapshot of format 2 (one response per session) restores into the session table.
//! The old layouts are mirrored here, as they were written, not taken from today's types.

use std::collections::BTreeMap;

use ha_core::{LogIndex, Term, codec};
use serde::Serialize;

use crate::entry::{Entry, Payload};
use crate::replica::{Applier, ApplyOutcome, FailoverRecord, SessionCommand};
use crate::test_support::Counter;

/// A session command of format 1: no tag, no version, no lowest unanswered sequence.
#[derive(Serialize)]
struct CommandFormat1 {
    session: u64,
    sequence: u64,
    #[serde(with = "serde_bytes")]
    command: Vec<u8>,
}

/// A session of a format 2 snapshot header.
#[derive(Serialize)]
struct SessionFormat2 {
    sequence: u64,
    response: Vec<u8>,
    used_at: LogIndex,
}

#[derive(Serialize)]
struct HeaderFormat2 {
    sessions: BTreeMap<u64, SessionFormat2>,
    history: Vec<FailoverRecord>,
}

fn old_entry(index: u64, session: u64, sequence: u64, amount: u64) -> Entry {
    let command = CommandFormat1 {
        session,
        sequence,
        command: codec::encode("command", &amount, 64).expect("encodes"),
    };
    Entry {
        term: Term(1),
        index: LogIndex(index),
        payload: Payload::Command(codec::encode("old", &command, 1 << 10).expect("encodes")),
    }
}

fn response(value: u64) -> Vec<u8> {
    codec::encode("response", &value, 64).expect("encodes")
}

#[test]
fn a_format_1_log_applies_as_it_did_before_pipelined_sessions() {
    let mut applier = Applier::new(Counter::default());
    let outcomes: Vec<_> = [
        old_entry(1, 9, 1, 5),
        old_entry(2, 9, 1, 5), // a retry of the latest write: a duplicate
        old_entry(3, 9, 2, 7),
        old_entry(4, 9, 1, 5), // a retry that lost the race to a newer write: stale
    ]
    .iter()
    .map(|entry| applier.apply(entry).expect("a command"))
    .collect();
    assert_eq!(
        outcomes,
        [
            ApplyOutcome::Applied(response(5)),
            ApplyOutcome::Duplicate(response(5)),
            ApplyOutcome::Applied(response(12)),
            ApplyOutcome::Stale {
                lowest_unanswered: 2
            },
        ]
    );
    assert_eq!(applier.machine().0, 12);
}

#[test]
fn a_format_2_snapshot_restores_its_sessions() {
    let header = HeaderFormat2 {
        sessions: BTreeMap::from([(
            9,
            SessionFormat2 {
                sequence: 3,
                response: response(40),
                used_at: LogIndex(6),
            },
        )]),
        history: Vec::new(),
    };
    let header = codec::encode("header", &header, 1 << 20).expect("encodes");
    let mut snapshot = Vec::new();
    snapshot.extend_from_slice(&2u32.to_le_bytes());
    snapshot.extend_from_slice(&6u64.to_le_bytes());
    snapshot.extend_from_slice(&(header.len() as u32).to_le_bytes());
    snapshot.extend_from_slice(&header);
    snapshot.extend_from_slice(&40u64.to_le_bytes());
    let mut applier = Applier::new(Counter::default());
    applier
        .restore(&snapshot)
        .expect("a format 2 snapshot restores");
    assert_eq!(applier.applied_index(), LogIndex(6));
    assert_eq!(applier.machine().0, 40);
    assert_eq!(applier.sessions().responses_of(ha_core::SessionId(9)), 1);
    // The session's latest write is answered as a duplicate, an older one as stale, and a
    // new one (in today's format) is applied.
    let new_entry = |index, sequence, lowest_unanswered| {
        let command = SessionCommand {
            session: ha_core::SessionId(9),
            sequence,
            lowest_unanswered,
            command: codec::encode("command", &2u64, 64).expect("encodes"),
        };
        Entry {
            term: Term(2),
            index: LogIndex(index),
            payload: Payload::Command(command.encode(1 << 10).expect("encodes")),
        }
    };
    assert_eq!(
        applier.apply(&new_entry(7, 3, 3)),
        Some(ApplyOutcome::Duplicate(response(40)))
    );
    assert_eq!(
        applier.apply(&new_entry(8, 2, 2)),
        Some(ApplyOutcome::Stale {
            lowest_unanswered: 3
        })
    );
    assert_eq!(
        applier.apply(&new_entry(9, 4, 3)),
        Some(ApplyOutcome::Applied(response(42)))
    );
    // Written again, it is format 3, and reads back the same.
    let written = applier.snapshot().expect("snapshots");
    assert_eq!(written[..4], 3u32.to_le_bytes());
    let mut again = Applier::new(Counter::default());
    again.restore(&written).expect("restores");
    assert_eq!(again.sessions(), applier.sessions());
    assert_eq!(again.machine().0, 42);
}
