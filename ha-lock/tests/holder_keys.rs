//! Issue 13, item 5: a lock acquired with a holder digest is released only by a release that
//! presents the key whose SHA-256 it is. Checked when the command is applied, so every
//! replica (including one restored from a snapshot) answers the same; the digest moves with a
//! hand-off to the next waiter (which takes its own digest) and survives snapshots. Locks
//! acquired without a digest keep the token-only rule.

use ha_core::{LogIndex, StateMachine};
use ha_lock::{
    Command, FencingToken, HolderKey, LeaseId, LockCommand, LockQuery, LockQueryResponse,
    LockResponse, LockState, Response, SessionId, WithLocks, holder_digest, new_holder_key,
};

const KEY_A: HolderKey = [0xa1; 16];
const KEY_B: HolderKey = [0xb2; 16];

fn grant(session: SessionId) -> LockCommand {
    LockCommand::LeaseGrant {
        ttl_ms: 10_000,
        session,
    }
}

fn acquire_keyed(session: SessionId, lease: u64, key: &HolderKey, wait: bool) -> LockCommand {
    LockCommand::AcquireWithHolder {
        name: "l".into(),
        session,
        lease: LeaseId(lease),
        wait,
        holder_digest: holder_digest(key),
    }
}

fn acquire_plain(session: SessionId, lease: u64) -> LockCommand {
    LockCommand::Acquire {
        name: "l".into(),
        session,
        lease: LeaseId(lease),
        wait: true,
    }
}

fn release_plain(token: u64) -> LockCommand {
    LockCommand::Release {
        name: "l".into(),
        token: FencingToken(token),
    }
}

fn release_keyed(token: u64, key: &HolderKey) -> LockCommand {
    LockCommand::ReleaseWithHolder {
        name: "l".into(),
        token: FencingToken(token),
        holder_key: *key,
    }
}

fn lock_state(machine: &WithLocks<()>) -> Option<LockState> {
    match machine.locks().query(&LockQuery::Lock { name: "l".into() }) {
        LockQueryResponse::Lock(state) => state,
        other => panic!("lock query answered {other:?}"),
    }
}

/// Three replicas of one log; the third is replaced, before each command, by a restore of its
/// own snapshot (a replica that installed a snapshot), so digests must survive snapshots for
/// it to keep answering as the others do.
struct Replicas {
    machines: Vec<WithLocks<()>>,
    index: u64,
}

impl Replicas {
    fn new() -> Self {
        Self {
            machines: (0..3).map(|_| WithLocks::new(())).collect(),
            index: 0,
        }
    }

    /// Apply `command` at the next index on every replica; they must agree.
    fn apply(&mut self, command: LockCommand) -> LockResponse {
        self.index += 1;
        let bytes = self.machines[2].snapshot().expect("snapshots");
        let mut restored = WithLocks::new(());
        restored.restore(&bytes).expect("restores");
        assert_eq!(restored.locks(), self.machines[2].locks(), "round trip");
        self.machines[2] = restored;
        let answers: Vec<LockResponse> = self
            .machines
            .iter_mut()
            .map(|machine| {
                match machine.apply(LogIndex(self.index), Command::Lock(command.clone())) {
                    Response::Lock(answer) => answer,
                    Response::Host(()) => panic!("a host answer"),
                }
            })
            .collect();
        assert!(
            answers.iter().all(|answer| *answer == answers[0]),
            "replicas disagree on {command:?}: {answers:?}"
        );
        assert!(
            self.machines
                .iter()
                .all(|machine| machine.locks() == self.machines[0].locks()),
            "replicas diverged after {command:?}"
        );
        answers[0].clone()
    }

    fn lock(&self) -> Option<LockState> {
        lock_state(&self.machines[0])
    }
}

#[test]
fn a_wrong_or_missing_holder_key_never_releases_on_any_replica() {
    let mut replicas = Replicas::new();
    assert_eq!(
        replicas.apply(grant(SessionId(1))),
        LockResponse::LeaseGranted {
            lease: LeaseId(1),
            ttl_ms: 10_000
        }
    );
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(1), 1, &KEY_A, false)),
        LockResponse::Granted {
            token: FencingToken(2)
        }
    );
    let held = replicas.lock();
    assert_eq!(
        held.as_ref().map(|lock| (lock.holder, lock.token)),
        Some((SessionId(1), FencingToken(2)))
    );
    let mut near_a = KEY_A;
    near_a[15] ^= 1;
    for (refused, expected) in [
        (release_plain(2), LockResponse::WrongHolder),
        (release_keyed(2, &KEY_B), LockResponse::WrongHolder),
        (release_keyed(2, &near_a), LockResponse::WrongHolder),
        (release_keyed(2, &[0; 16]), LockResponse::WrongHolder),
        (release_keyed(3, &KEY_A), LockResponse::NotHolder),
        (release_plain(3), LockResponse::NotHolder),
    ] {
        assert_eq!(replicas.apply(refused.clone()), expected, "{refused:?}");
        assert_eq!(replicas.lock(), held, "{refused:?} changed the lock");
    }
    // The holder's key releases it.
    assert_eq!(
        replicas.apply(release_keyed(2, &KEY_A)),
        LockResponse::Released
    );
    assert_eq!(replicas.lock(), None);
    assert_eq!(
        replicas.apply(release_keyed(2, &KEY_A)),
        LockResponse::NotHolder,
        "released once"
    );
}

#[test]
fn a_hand_off_gives_the_next_waiter_its_own_digest() {
    let mut replicas = Replicas::new();
    for session in 1..=3 {
        replicas.apply(grant(SessionId(session))); // leases 1, 2, 3
    }
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(1), 1, &KEY_A, true)),
        LockResponse::Granted {
            token: FencingToken(4)
        }
    );
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(2), 2, &KEY_B, true)),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(
        replicas.apply(acquire_plain(SessionId(3), 3)),
        LockResponse::Queued { position: 1 }
    );
    // Released by its holder's key: session 2 gets it at index 7 with digest B.
    assert_eq!(
        replicas.apply(release_keyed(4, &KEY_A)),
        LockResponse::Released
    );
    let held = replicas.lock().expect("handed off");
    assert_eq!(
        (held.holder, held.lease, held.token),
        (SessionId(2), LeaseId(2), FencingToken(7))
    );
    assert_eq!(
        replicas.apply(release_keyed(7, &KEY_A)),
        LockResponse::WrongHolder
    );
    assert_eq!(replicas.apply(release_plain(7)), LockResponse::WrongHolder);
    assert_eq!(replicas.lock(), Some(held));
    assert_eq!(
        replicas.apply(release_keyed(7, &KEY_B)),
        LockResponse::Released
    );
    // Session 3 asked without a digest: today's token-only rule, and a key is refused.
    let held = replicas.lock().expect("handed off");
    assert_eq!((held.holder, held.token), (SessionId(3), FencingToken(10)));
    assert_eq!(
        replicas.apply(release_keyed(10, &KEY_B)),
        LockResponse::WrongHolder
    );
    assert_eq!(replicas.lock(), Some(held));
    assert_eq!(replicas.apply(release_plain(10)), LockResponse::Released);
    assert_eq!(replicas.lock(), None);
}

#[test]
fn a_lease_end_hands_the_lock_on_with_the_waiters_digest() {
    let mut replicas = Replicas::new();
    replicas.apply(grant(SessionId(1))); // lease 1
    replicas.apply(grant(SessionId(2))); // lease 2
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(1), 1, &KEY_A, true)),
        LockResponse::Granted {
            token: FencingToken(3)
        }
    );
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(2), 2, &KEY_B, true)),
        LockResponse::Queued { position: 0 }
    );
    // The holder's lease expires: no key needed, and the lock goes to session 2 with B.
    assert_eq!(
        replicas.apply(LockCommand::LeaseExpire {
            lease: LeaseId(1),
            renewals: 0
        }),
        LockResponse::LeaseEnded {
            lease: LeaseId(1),
            released_locks: vec!["l".into()],
            deleted_keys: 0
        }
    );
    let held = replicas.lock().expect("handed off");
    assert_eq!((held.holder, held.token), (SessionId(2), FencingToken(5)));
    assert_eq!(
        replicas.apply(release_keyed(5, &KEY_A)),
        LockResponse::WrongHolder
    );
    assert_eq!(replicas.apply(release_plain(5)), LockResponse::WrongHolder);
    assert_eq!(
        replicas.apply(release_keyed(5, &KEY_B)),
        LockResponse::Released
    );
}

#[test]
fn asking_again_with_another_digest_gets_neither_the_grant_nor_the_place() {
    let mut replicas = Replicas::new();
    replicas.apply(grant(SessionId(1))); // lease 1
    replicas.apply(grant(SessionId(2))); // lease 2
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(1), 1, &KEY_A, true)),
        LockResponse::Granted {
            token: FencingToken(3)
        }
    );
    // A retry of the same acquire gets the same grant; another digest (or none) does not.
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(1), 1, &KEY_A, true)),
        LockResponse::Granted {
            token: FencingToken(3)
        }
    );
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(1), 1, &KEY_B, true)),
        LockResponse::Busy {
            holder: SessionId(1)
        }
    );
    assert_eq!(
        replicas.apply(acquire_plain(SessionId(1), 1)),
        LockResponse::Busy {
            holder: SessionId(1)
        }
    );
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(2), 2, &KEY_B, true)),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(2), 2, &KEY_B, true)),
        LockResponse::Queued { position: 0 }
    );
    assert_eq!(
        replicas.apply(acquire_keyed(SessionId(2), 2, &KEY_A, true)),
        LockResponse::Busy {
            holder: SessionId(1)
        }
    );
    // The waiter kept digest B: it is what releases the lock once handed on.
    assert_eq!(
        replicas.apply(release_keyed(3, &KEY_A)),
        LockResponse::Released
    );
    assert_eq!(
        replicas.apply(release_keyed(10, &KEY_A)),
        LockResponse::WrongHolder
    );
    assert_eq!(
        replicas.apply(release_keyed(10, &KEY_B)),
        LockResponse::Released
    );
}

#[test]
fn a_snapshot_round_trip_keeps_holder_and_waiter_digests() {
    let mut original = WithLocks::new(());
    let commands = [
        grant(SessionId(1)),
        grant(SessionId(2)),
        acquire_keyed(SessionId(1), 1, &KEY_A, true),
        acquire_keyed(SessionId(2), 2, &KEY_B, true),
    ];
    for (index, command) in commands.into_iter().enumerate() {
        original.apply(LogIndex(index as u64 + 1), Command::Lock(command));
    }
    let bytes = original.snapshot().expect("snapshots");
    let mut restored = WithLocks::new(());
    restored.restore(&bytes).expect("restores");
    assert_eq!(restored.locks(), original.locks());
    assert_eq!(
        restored.snapshot().expect("snapshots"),
        bytes,
        "the same bytes again"
    );
    for machine in [&mut original, &mut restored] {
        let mut apply = |index: u64, command: LockCommand| match machine
            .apply(LogIndex(index), Command::Lock(command))
        {
            Response::Lock(answer) => answer,
            Response::Host(()) => panic!("a host answer"),
        };
        assert_eq!(apply(5, release_plain(3)), LockResponse::WrongHolder);
        assert_eq!(
            apply(6, release_keyed(3, &KEY_B)),
            LockResponse::WrongHolder
        );
        assert_eq!(apply(7, release_keyed(3, &KEY_A)), LockResponse::Released);
        assert_eq!(
            apply(8, release_keyed(7, &KEY_A)),
            LockResponse::WrongHolder
        );
        assert_eq!(apply(9, release_keyed(7, &KEY_B)), LockResponse::Released);
    }
    assert_eq!(restored.locks(), original.locks());
}

/// The holder-key variants come after the others, so commands already in logs decode as they
/// were written (postcard encodes a variant by its position).
#[test]
fn commands_written_before_holder_keys_decode_unchanged() {
    let release = postcard::to_allocvec(&release_plain(5)).expect("encodes");
    assert_eq!(release, [7, 1, b'l', 5]);
    let acquire = postcard::to_allocvec(&acquire_plain(SessionId(3), 4)).expect("encodes");
    assert_eq!(acquire, [6, 1, b'l', 3, 4, 1]);
    assert_eq!(
        postcard::from_bytes::<LockCommand>(&[8, 1, b'l', 3]).expect("decodes"),
        LockCommand::CancelWait {
            name: "l".into(),
            session: SessionId(3)
        }
    );
    let keyed = postcard::to_allocvec(&release_keyed(5, &KEY_A)).expect("encodes");
    assert_eq!(keyed[0], 10);
    assert_eq!(keyed.len(), 4 + 16, "the key is 16 bytes, no length");
    assert_eq!(
        postcard::from_bytes::<LockCommand>(&keyed).expect("decodes"),
        release_keyed(5, &KEY_A)
    );
    let keyed =
        postcard::to_allocvec(&acquire_keyed(SessionId(3), 4, &KEY_A, true)).expect("encodes");
    assert_eq!(keyed[0], 9);
    assert_eq!(keyed.len(), 6 + 32, "the digest is 32 bytes, no length");
    // A truncated digest is refused, not padded.
    assert!(postcard::from_bytes::<LockCommand>(&keyed[..keyed.len() - 1]).is_err());
}

#[test]
fn fresh_holder_keys_differ() {
    let keys: std::collections::BTreeSet<HolderKey> =
        (0..1_000).map(|_| new_holder_key()).collect();
    assert_eq!(keys.len(), 1_000);
}
