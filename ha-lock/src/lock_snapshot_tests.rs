//! How the writer encodes change records (issue 17: it finds each change's entry by a hash
//! look-up made during the pass over the entries, and reuses one record buffer).

use ha_core::{LogIndex, StateMachine};

use super::{ChangeValue, RECORD_BUFFER_BYTES, Record};
use crate::{Command, LockCommand, WithLocks};

/// How a change record's value is written.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Deleted,
    Bytes(Vec<u8>),
    Current,
}

/// Every change record of a snapshot stream, in order: (version, key, value as written).
fn changes_of(bytes: &[u8]) -> Vec<(u64, String, Written)> {
    let mut rest = &bytes[8..];
    let mut changes = Vec::new();
    for _ in 0..bytes.len() {
        let (length, after) = rest.split_first_chunk::<4>().expect("a length prefix");
        let (body, after) = after.split_at(u32::from_le_bytes(*length) as usize);
        rest = after;
        match postcard::from_bytes::<Record<'_>>(body).expect("a record") {
            Record::Change {
                version,
                key,
                value,
            } => changes.push((
                version,
                key.to_string(),
                match value {
                    ChangeValue::Deleted => Written::Deleted,
                    ChangeValue::Bytes(bytes) => Written::Bytes(bytes.0.to_vec()),
                    ChangeValue::Current => Written::Current,
                },
            )),
            Record::End { .. } => return changes,
            _ => {}
        }
    }
    panic!("no end record");
}

fn put(key: &str, value: &[u8]) -> Command<()> {
    Command::Lock(LockCommand::Put {
        key: key.into(),
        value: value.to_vec(),
        expected_version: None,
        lease: None,
    })
}

#[test]
fn a_change_is_a_reference_only_while_it_holds_its_keys_value() {
    let large = vec![7u8; 3 * RECORD_BUFFER_BYTES];
    let commands = [
        put("a", b"one"),
        put("a", b"two"),
        put("b", b"x"),
        Command::Lock(LockCommand::Delete {
            key: "b".into(),
            expected_version: None,
        }),
        // Longer than the writer's kept buffer: the records after it must still be right.
        put("c", &large),
        put("d", b"same"),
        put("b", b"again"),
        put("e", b"same"),
    ];
    let mut machine = WithLocks::new(());
    for (index, command) in commands.into_iter().enumerate() {
        let _ = machine.apply(LogIndex(index as u64 + 1), command);
    }
    let bytes = machine.snapshot().expect("snapshots");
    assert_eq!(
        changes_of(&bytes),
        vec![
            (1, "a".into(), Written::Bytes(b"one".to_vec())),
            (2, "a".into(), Written::Current),
            (3, "b".into(), Written::Bytes(b"x".to_vec())),
            (4, "b".into(), Written::Deleted),
            (5, "c".into(), Written::Current),
            (6, "d".into(), Written::Current),
            (7, "b".into(), Written::Current),
            (8, "e".into(), Written::Current),
        ]
    );
    // The stream restores to a table that writes the same stream again.
    let mut restored = WithLocks::new(());
    restored.restore(&bytes).expect("restores");
    assert_eq!(restored.snapshot().expect("snapshots"), bytes);
}
