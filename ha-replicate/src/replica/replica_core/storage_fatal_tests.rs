//! Issue 19, item 3: a store that fails in a way the replica cannot survive (here a corrupt
//! record) stops it, and every request waiting or arriving later is answered
//! `ClientError::Fatal` carrying the failure as data, locally and to a follower's forward.

use super::storage_stall::tests::{id, write};
use super::*;
use crate::replica::WriteFate;
use crate::replica::client::{ClientError, ClientReply};
use crate::storage::memory::{CORRUPT_FAULT_PATH, DiskFault, MemoryDisk, MemoryStore};

/// `n1`, the only voter, leading, syncing after every input.
fn leader(disk: &MemoryDisk) -> ReplicaCore<(), MemoryStore> {
    super::storage_stall::tests::leader(disk, 10_000)
}

fn corrupt() -> StorageFailure {
    StorageFailure::Corrupt {
        path: CORRUPT_FAULT_PATH.to_string(),
        offset: 0,
        reason: "injected corruption".to_string(),
    }
}

fn fatal_reply() -> ClientReply {
    ClientReply::Failed(ClientError::Fatal(corrupt()))
}

#[test]
fn a_corrupt_store_stops_the_replica_and_every_request_is_answered_fatal() {
    let disk = MemoryDisk::new();
    let mut core = leader(&disk);
    core.submit(Millis(2), 1, write(1), Millis(60_000));
    assert!(
        matches!(
            core.drain_effects().as_slice(),
            [ReplicaEffect::Reply {
                request_id: 1,
                reply: ClientReply::Written { .. }
            }]
        ),
        "the first write is applied"
    );

    disk.set_fault(Some(DiskFault::Corrupt));
    // The forwarded write whose append fails is answered before the driver is told.
    core.on_rpc(
        Millis(3),
        id("n2"),
        Rpc::Forward {
            forward_id: 40,
            request: write(2),
        },
    );
    let effects = core.drain_effects();
    assert_eq!(
        effects,
        vec![
            ReplicaEffect::Send {
                to: id("n2"),
                rpc: Rpc::ForwardReply {
                    forward_id: 40,
                    reply: fatal_reply(),
                },
            },
            ReplicaEffect::Fatal(corrupt()),
        ]
    );
    assert_eq!(core.fatal(), Some(&corrupt()));
    let error = core.fatal_error().expect("the store's own error is kept");
    assert!(matches!(**error, StorageError::Corrupt { offset: 0, .. }));

    // Later: a local write and a forwarded one are answered at once, nothing else happens.
    core.submit(Millis(4), 2, write(3), Millis(60_000));
    core.on_rpc(
        Millis(5),
        id("n3"),
        Rpc::Forward {
            forward_id: 41,
            request: write(4),
        },
    );
    core.on_timer(Millis(6), ReplicaTimer::Housekeeping);
    assert_eq!(
        core.drain_effects(),
        vec![
            ReplicaEffect::Reply {
                request_id: 2,
                reply: fatal_reply(),
            },
            ReplicaEffect::Send {
                to: id("n3"),
                rpc: Rpc::ForwardReply {
                    forward_id: 41,
                    reply: fatal_reply(),
                },
            },
        ]
    );
    assert_eq!(ClientError::Fatal(corrupt()).fate(), WriteFate::Unknown);
}

#[test]
fn a_full_disk_is_not_fatal() {
    let disk = MemoryDisk::new();
    let mut core = leader(&disk);
    disk.set_fault(Some(DiskFault::Full));
    core.submit(Millis(2), 1, write(1), Millis(60_000));
    let effects = core.drain_effects();
    assert!(
        !effects
            .iter()
            .any(|effect| matches!(effect, ReplicaEffect::Fatal(_))),
        "{effects:?}"
    );
    assert_eq!(core.fatal(), None);
    assert!(core.fatal_error().is_none());
}
