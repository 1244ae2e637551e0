//! Issue 17 (sequential write latency): a QUORUM write of a local caller is answered by the
//! apply worker once its entry is applied (`replica/reply_route.rs`), never before, and the
//! core's own answers (a deadline) still win when they come first.

use super::super::storage_stall::tests::{id, leader, write};
use super::*;
use crate::replica::replica_core::ReplicaTimer;
use crate::replica::client::{ClientError, ClientReply, ClientRequest, WriteRequest};
use crate::replica::reply_route::ReplyRoute;
use crate::replica::rpc::Rpc;
use crate::replica::session::ApplyOutcome;
use crate::storage::memory::{MemoryDisk, MemoryStore};

const DEADLINE: Millis = Millis(1_000);

/// `n1`, the only voter, leading, handing apply tasks out instead of running them.
fn deferred_leader() -> ReplicaCore<(), MemoryStore> {
    let mut core = leader(&MemoryDisk::new(), 10_000);
    core.defer_apply();
    core
}

fn write_at(sequence: u64, consistency: Consistency) -> ClientRequest {
    match write(sequence) {
        ClientRequest::Write(request) => ClientRequest::Write(WriteRequest {
            consistency,
            ..request
        }),
        other => other,
    }
}

/// The one apply task among `effects`; every other effect is a timer or nothing.
fn only_task(effects: Vec<ReplicaEffect>) -> ApplyTask {
    let mut tasks = Vec::new();
    for effect in effects {
        match effect {
            ReplicaEffect::Apply(task) => tasks.push(task),
            ReplicaEffect::SetTimer { .. } => {}
            other => panic!("unexpected effect before the entry is applied: {other:?}"),
        }
    }
    assert_eq!(tasks.len(), 1, "one task of entries");
    tasks.remove(0)
}

fn written(index: LogIndex) -> ClientReply {
    ClientReply::Written {
        index,
        outcome: ApplyOutcome::Applied(
            ha_core::codec::encode("response", &(), 16).expect("encodes"),
        ),
    }
}

#[test]
fn a_quorum_write_is_answered_by_the_worker_once_applied_and_not_before() {
    let mut core = deferred_leader();
    let term = core.engine().term();
    core.submit(Millis(2), 1, write(1), DEADLINE);
    // Committed (a lone voter, synced in place), handed out with its route: no answer yet.
    let task = only_task(core.drain_effects());
    let index = core.engine().commit_index();
    assert_eq!(
        task.reply_routes(),
        &[ReplyRoute {
            request_id: 1,
            index,
            term,
        }]
    );
    core.run_apply_task(Millis(3), &task);
    assert_eq!(
        core.drain_effects(),
        vec![ReplicaEffect::Reply {
            request_id: 1,
            reply: written(index),
        }]
    );
    // Answered once: nothing is left to time out.
    core.on_timer(DEADLINE + 1, ReplicaTimer::Housekeeping);
    assert!(
        !core
            .drain_effects()
            .iter()
            .any(|effect| matches!(effect, ReplicaEffect::Reply { .. })),
        "no second answer"
    );
}

#[test]
fn an_answer_the_driver_delivered_is_not_emitted_again() {
    let mut core = leader(&MemoryDisk::new(), 10_000);
    let mut worker = core.detach_apply_worker().expect("a data node's worker");
    core.submit(Millis(2), 1, write(1), DEADLINE);
    let task = only_task(core.drain_effects());
    let index = core.engine().commit_index();
    let mut done = worker.run(&task).expect("runs once");
    // What the driver's apply thread does: take the answer and send it to the caller.
    let delivered: Vec<ClientReply> = done
        .routed_replies_mut()
        .iter_mut()
        .filter_map(|routed| routed.reply.take())
        .collect();
    assert_eq!(delivered, vec![written(index)]);
    core.on_apply_done(Millis(3), done);
    assert_eq!(core.drain_effects(), Vec::new());
    core.on_timer(DEADLINE + 1, ReplicaTimer::Housekeeping);
    assert!(
        !core
            .drain_effects()
            .iter()
            .any(|effect| matches!(effect, ReplicaEffect::Reply { .. })),
        "the write is no longer pending: no timeout"
    );
}

#[test]
fn the_cores_earlier_answer_wins_over_the_workers() {
    let mut core = deferred_leader();
    core.submit(Millis(2), 1, write(1), Millis(50));
    let task = only_task(core.drain_effects());
    // The deadline passes while the host is still applying: the caller hears `Timeout` (the
    // outcome is unknown to it), as before the route existed.
    core.on_timer(Millis(60), ReplicaTimer::Housekeeping);
    let replies: Vec<_> = core
        .drain_effects()
        .into_iter()
        .filter(|effect| matches!(effect, ReplicaEffect::Reply { .. }))
        .collect();
    assert_eq!(
        replies,
        vec![ReplicaEffect::Reply {
            request_id: 1,
            reply: ClientReply::Failed(ClientError::Timeout),
        }]
    );
    core.run_apply_task(Millis(70), &task);
    assert_eq!(core.drain_effects(), Vec::new(), "the late answer is dropped");
}

#[test]
fn strong_eventual_and_forwarded_writes_are_not_routed() {
    let mut core = deferred_leader();
    core.submit(Millis(2), 1, write_at(1, Consistency::Strong), DEADLINE);
    let strong = only_task(core.drain_effects());
    assert_eq!(strong.reply_routes(), &[], "STRONG waits for every voter");

    core.submit(Millis(3), 2, write_at(2, Consistency::Eventual), DEADLINE);
    let effects = core.drain_effects();
    let accepted = effects
        .iter()
        .filter(|effect| {
            matches!(
                effect,
                ReplicaEffect::Reply {
                    request_id: 2,
                    reply: ClientReply::Accepted { .. }
                }
            )
        })
        .count();
    assert_eq!(accepted, 1, "EVENTUAL is answered when appended: {effects:?}");
    let eventual = effects
        .into_iter()
        .find_map(|effect| match effect {
            ReplicaEffect::Apply(task) => Some(task),
            _ => None,
        })
        .expect("a task of entries");
    assert_eq!(eventual.reply_routes(), &[]);

    let forward = Rpc::Forward {
        forward_id: 9,
        request: write(3),
    };
    core.on_rpc(Millis(4), id("n2"), forward);
    let forwarded = only_task(core.drain_effects());
    assert_eq!(
        forwarded.reply_routes(),
        &[],
        "a forwarded write's answer is a message the loop sends"
    );
    // Each is still answered, by the core, once its task ran.
    for (at, task) in [(5, strong), (6, eventual), (7, forwarded)] {
        core.run_apply_task(Millis(at), &task);
    }
    let answers = core
        .drain_effects()
        .into_iter()
        .filter(|effect| {
            matches!(
                effect,
                ReplicaEffect::Reply { .. }
                    | ReplicaEffect::Send {
                        rpc: Rpc::ForwardReply { .. },
                        ..
                    }
            )
        })
        .count();
    assert_eq!(answers, 2, "STRONG (a lone voter) and the forward");
}
