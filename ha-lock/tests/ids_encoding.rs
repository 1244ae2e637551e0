//! `SessionId`, `LeaseId` and `FencingToken` are types of their own, but they must encode
//! exactly as the `u64`s they replaced: logs, snapshots and peers written before them read
//! unchanged, and so do the bytes written after them by a node that has not upgraded.
//!
//! Two checks: every command and response below encodes to the same bytes as the same values
//! written with plain `u64`s (a tuple in the enum's order), and the whole sequence produces the
//! same commands, responses and snapshot bytes as the code before these types did (the hex
//! strings were printed by that code, commit 1c3b6f4, from these very commands).

use ha_core::{LogIndex, SessionId, StateMachine};
use ha_lock::{
    Command, FencingToken, LeaseId, LockCommand, LockResponse, Response, WithLocks, holder_digest,
};

const BIG_SESSION: u64 = 0x1234_5678_9abc_def0;

fn commands() -> Vec<LockCommand> {
    vec![
        LockCommand::LeaseGrant {
            ttl_ms: 5_000,
            session: SessionId(BIG_SESSION),
        },
        LockCommand::LeaseGrant {
            ttl_ms: 7_000,
            session: SessionId(300),
        },
        LockCommand::Put {
            key: "k".into(),
            value: b"v".to_vec(),
            expected_version: None,
            lease: Some(LeaseId(1)),
        },
        LockCommand::Acquire {
            name: "l".into(),
            session: SessionId(BIG_SESSION),
            lease: LeaseId(1),
            wait: true,
        },
        LockCommand::AcquireWithHolder {
            name: "l".into(),
            session: SessionId(300),
            lease: LeaseId(2),
            wait: true,
            holder_digest: holder_digest(&[7u8; 16]),
        },
        LockCommand::Acquire {
            name: "m".into(),
            session: SessionId(300),
            lease: LeaseId(2),
            wait: false,
        },
    ]
}

/// What the code before the newtypes wrote for `commands()`: each command (as
/// `Command::Lock`), its response, and at the end the snapshot.
const BEFORE_COMMANDS: [&str; 6] = [
    "01028827f0bdf3d589cf959a12",
    "0102d836ac02",
    "0100016b0176000101",
    "0106016cf0bdf3d589cf959a120101",
    "0109016cac020201d761d406af2a4a5a15f67c924378ed88d1f85c13f1a37fc7366f59789b3bcd65",
    "0106016dac020200",
];
const BEFORE_RESPONSES: [&str; 6] = [
    "0103018827",
    "010302d836",
    "010003",
    "010804",
    "010900",
    "010806",
];
const BEFORE_SNAPSHOT: &str = "48414c4b030000000500000000000201000800000001016b01760301010e00\
    00000201f0bdf3d589cf959a12882700070000000202ac02d836000e00000003016cf0bdf3d589cf959a120104\
    2400000008ac0202d761d406af2a4a5a15f67c924378ed88d1f85c13f1a37fc7366f59789b3bcd650700000003\
    016dac020206050000000503016b0206000000060102020101";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("encodes")
}

#[test]
fn commands_responses_and_snapshots_are_the_bytes_written_before_the_newtypes() {
    let mut machine = WithLocks::new(());
    for (number, command) in commands().into_iter().enumerate() {
        let command = Command::<()>::Lock(command);
        assert_eq!(
            hex(&encode(&command)),
            BEFORE_COMMANDS[number],
            "command {number}: {command:?}"
        );
        let response = machine.apply(LogIndex(number as u64 + 1), command);
        assert_eq!(
            hex(&encode(&response)),
            BEFORE_RESPONSES[number],
            "response {number}: {response:?}"
        );
    }
    let snapshot = machine.snapshot().expect("snapshot");
    assert_eq!(hex(&snapshot), BEFORE_SNAPSHOT);
    // And a snapshot written before the newtypes restores into them.
    let before: Vec<u8> = (0..BEFORE_SNAPSHOT.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&BEFORE_SNAPSHOT[at..at + 2], 16).expect("hex"))
        .collect();
    let mut restored = WithLocks::new(());
    restored.restore(&before).expect("restores");
    assert_eq!(
        hex(&restored.snapshot().expect("snapshot")),
        BEFORE_SNAPSHOT
    );
}

#[test]
fn each_id_encodes_as_the_plain_u64_it_wraps() {
    for number in [0, 1, 127, 128, 300, BIG_SESSION, u64::MAX] {
        assert_eq!(encode(&SessionId(number)), encode(&number));
        assert_eq!(encode(&LeaseId(number)), encode(&number));
        assert_eq!(encode(&FencingToken(number)), encode(&number));
        let decoded: (SessionId, LeaseId, FencingToken) =
            postcard::from_bytes(&encode(&(number, number, number))).expect("decodes");
        assert_eq!(
            decoded,
            (SessionId(number), LeaseId(number), FencingToken(number))
        );
    }
}

#[test]
fn a_command_with_ids_encodes_as_the_same_fields_written_as_u64s() {
    // Acquire is variant 6 of LockCommand; its fields in order: name, session, lease, wait.
    let typed = LockCommand::Acquire {
        name: "jobs".into(),
        session: SessionId(BIG_SESSION),
        lease: LeaseId(41),
        wait: true,
    };
    let plain = (6u32, "jobs", BIG_SESSION, 41u64, true);
    assert_eq!(encode(&typed), encode(&plain));
    // Granted is variant 8 of LockResponse; its one field is the token.
    let granted = Response::<()>::Lock(LockResponse::Granted {
        token: FencingToken(u64::MAX),
    });
    assert_eq!(encode(&granted), encode(&(1u32, 8u32, u64::MAX)));
}
