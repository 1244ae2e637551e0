//! Issue 17 (sequential write latency): a QUORUM write of a local caller is answered by the
//! apply worker once its entry is applied (`replica/reply_route.rs`), never before, and the
//! core's own answers (a deadline) still win when they come first.

use super::super::storage_stall::tests::{id, leader, write};
use super::*;
use crate::replica::client::{ClientError, ClientReply, ClientRequest, WriteRequest};
use crate::replica::replica_core::ReplicaTimer;
use crate::replica::reply_route::ReplyRoute;
use crate::replica::rpc::Rpc;
use crate::replica::session::ApplyOutcome;
use crate::replica::settings::{ReplicaSettings, SyncPolicy};
use crate::storage::memory::{MemoryDisk, MemoryStore};
use ha_core::Term;

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
    assert_eq!(
        core.drain_effects(),
        Vec::new(),
        "the late answer is dropped"
    );
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
    assert_eq!(
        accepted, 1,
        "EVENTUAL is answered when appended: {effects:?}"
    );
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

/// `n1` leading {n1, n2, n3} in term 1, syncing only when the test flushes, handing apply
/// tasks out; its `LeaderStart` entry committed and applied.
fn batch_leader_of_three() -> ReplicaCore<(), MemoryStore> {
    let mut engine = crate::engine::EngineSettings::for_test(id("n1"));
    engine.election_timeout_max_ms = 300;
    let settings = ReplicaSettings {
        engine,
        sync_policy: SyncPolicy::Batch,
        ..ReplicaSettings::for_test(id("n1"))
    };
    let store = MemoryStore::open(MemoryDisk::new());
    let mut core = ReplicaCore::new(settings, (), store, Millis(0), 7).expect("starts");
    core.defer_apply();
    let voters = crate::membership::VoterSet::with_voters([id("n1"), id("n2"), id("n3")]);
    assert!(core.on_bootstrap(Millis(0), voters));
    assert!(core.on_campaign(Millis(1)));
    core.flush();
    let vote = crate::engine::Message::VoteResponse {
        term: Term(1),
        granted: true,
    };
    core.on_rpc(Millis(2), id("n2"), Rpc::Raft(vote));
    assert!(core.engine().is_leader());
    core.flush();
    acknowledge(&mut core, Millis(3), "n2");
    run_tasks(&mut core, Millis(4));
    assert_eq!(core.applied_index(), core.engine().last_index());
    core
}

/// `follower` reports it holds the leader's whole log.
fn acknowledge(core: &mut ReplicaCore<(), MemoryStore>, now: Millis, follower: &str) {
    let ack = crate::engine::Message::AppendResponse {
        term: core.engine().term(),
        success: true,
        index: core.engine().last_index(),
        applied_index: LogIndex(0),
        read_round: 0,
    };
    core.on_rpc(now, id(follower), Rpc::Raft(ack));
}

/// Run every apply task handed out so far; returns the answers among the effects.
fn run_tasks(core: &mut ReplicaCore<(), MemoryStore>, now: Millis) -> Vec<ReplicaEffect> {
    let mut answers = Vec::new();
    // Bounded: each round runs what the previous one handed out.
    for _ in 0..8 {
        let mut tasks = Vec::new();
        for effect in core.drain_effects() {
            match effect {
                ReplicaEffect::Apply(task) => tasks.push(task),
                answer @ ReplicaEffect::Reply { .. } => answers.push(answer),
                _ => {}
            }
        }
        if tasks.is_empty() {
            return answers;
        }
        for task in tasks {
            core.run_apply_task(now, &task);
        }
    }
    panic!("apply tasks kept coming");
}

#[test]
fn a_write_the_followers_commit_before_the_leaders_own_sync_waits_for_that_sync() {
    let mut core = batch_leader_of_three();
    core.submit(Millis(10), 1, write(1), DEADLINE);
    let index = core.engine().last_index();
    // Both followers hold it: committed by a majority without the leader's own copy.
    acknowledge(&mut core, Millis(11), "n2");
    acknowledge(&mut core, Millis(11), "n3");
    assert_eq!(core.engine().commit_index(), index);
    assert!(core.engine().durable_index() < index);
    let task = core
        .drain_effects()
        .into_iter()
        .find_map(|effect| match effect {
            ReplicaEffect::Apply(task) => Some(task),
            _ => None,
        })
        .expect("the committed entry is handed out");
    assert_eq!(task.reply_routes(), &[], "not routed: not durable here yet");
    core.run_apply_task(Millis(12), &task);
    assert_eq!(
        run_tasks(&mut core, Millis(12)),
        Vec::new(),
        "held in the gate"
    );
    core.flush();
    assert_eq!(
        run_tasks(&mut core, Millis(13)),
        vec![ReplicaEffect::Reply {
            request_id: 1,
            reply: written(index),
        }]
    );
}

#[test]
fn a_write_durable_here_when_committed_is_routed() {
    let mut core = batch_leader_of_three();
    core.submit(Millis(10), 1, write(1), DEADLINE);
    let index = core.engine().last_index();
    core.flush();
    acknowledge(&mut core, Millis(11), "n2");
    let task = core
        .drain_effects()
        .into_iter()
        .find_map(|effect| match effect {
            ReplicaEffect::Apply(task) => Some(task),
            _ => None,
        })
        .expect("the committed entry is handed out");
    assert_eq!(
        task.reply_routes(),
        &[ReplyRoute {
            request_id: 1,
            index,
            term: Term(1),
        }]
    );
    core.run_apply_task(Millis(12), &task);
    assert_eq!(
        run_tasks(&mut core, Millis(12)),
        vec![ReplicaEffect::Reply {
            request_id: 1,
            reply: written(index),
        }]
    );
}

/// The driver wakes its loop for a report of applied entries only while the core waits for
/// one (`driver/thread_reports.rs`): never for writes the worker answers itself, always until
/// the entry of a write the core answers after applying it is reported.
#[test]
fn the_core_waits_for_apply_reports_only_for_writes_it_answers_itself() {
    let mut core = deferred_leader();
    assert!(!core.waits_for_apply_reports(), "idle");

    core.submit(Millis(2), 1, write(1), DEADLINE);
    let routed = only_task(core.drain_effects());
    assert_eq!(routed.reply_routes().len(), 1);
    assert!(
        !core.waits_for_apply_reports(),
        "the worker answers a routed QUORUM write itself"
    );
    core.run_apply_task(Millis(3), &routed);
    core.drain_effects();

    core.submit(Millis(4), 2, write_at(2, Consistency::Eventual), DEADLINE);
    let eventual = core
        .drain_effects()
        .into_iter()
        .find_map(|effect| match effect {
            ReplicaEffect::Apply(task) => Some(task),
            _ => None,
        })
        .expect("a task of entries");
    assert!(
        !core.waits_for_apply_reports(),
        "an EVENTUAL write was answered when appended"
    );
    core.run_apply_task(Millis(5), &eventual);
    core.drain_effects();

    core.submit(Millis(6), 3, write_at(3, Consistency::Strong), DEADLINE);
    let strong = only_task(core.drain_effects());
    let forward = Rpc::Forward {
        forward_id: 9,
        request: write(4),
    };
    core.on_rpc(Millis(7), id("n2"), forward);
    let forwarded = only_task(core.drain_effects());
    for (at, task) in [(8, strong), (9, forwarded)] {
        assert!(
            core.waits_for_apply_reports(),
            "STRONG and forwarded writes are answered by the core once applied"
        );
        core.run_apply_task(Millis(at), &task);
        core.drain_effects();
    }
    assert!(
        !core.waits_for_apply_reports(),
        "all reported: nothing left to wait for"
    );
}
