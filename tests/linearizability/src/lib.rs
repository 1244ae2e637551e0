//! # ha-linearizability
//!
//! Checks that what clients saw of the `ha` KV store could have come from one copy of the data
//! changing atomically: that the history of their operations is *linearizable*. Each key is a
//! register with compare-and-swap ([`RegisterModel`]); other objects, such as a lock with
//! fencing tokens, plug in through the [`Model`] trait.
//!
//! ```text
//!   client threads / tasks                       test
//!   ──invoke(client, key, input)──▶ Recorder ──history()──▶ Vec<Operation> ──check(model, budget)──▶ CheckResult
//!   ◀─────────── OperationToken ──┘    ▲                                                  Linearizable
//!   ──complete(token, output) ─────────┤                                                  NotLinearizable { key, explanation }
//!   ──timeout(token) / drop(token) ────┘                                                  Timeout { key, steps }
//! ```
//!
//! No IO crosses this crate: the recorder's clock is a counter, and the checker is a pure
//! function of the history (apart from the optional wall-clock [`Budget::duration_max`]).
//!
//! ## The algorithm
//!
//! [`check`] splits the history by key (linearizability is compositional, so each key is
//! checked alone) and runs, per key, Wing and Gong's depth-first search for an order of the
//! operations that respects real time and the model, with the memoization of Lowe's
//! "just-in-time linearizability" and of Porcupine: a configuration (the operations placed,
//! and the model state) is explored at most once. The placed set is stored as "all bounded
//! operations before the first unplaced one, plus a window of bits after it", so a memo entry
//! costs a few words rather than one bit per operation; its hash is kept up to date in O(1)
//! per step (Zobrist hashing), and entries are compared exactly, except the set of timed-out
//! operations taken to have happened, which is compared by a 128-bit fingerprint.
//!
//! An operation whose outcome is unknown (it timed out) may have happened at any time after its
//! call, or never: the search may place it anywhere after its call, it never forces anything,
//! and it is tried only when the operations with known outcomes cannot go next. Rules that
//! never change the verdict (each checked against a brute-force search in the tests) keep
//! timeouts and reads cheap:
//!
//! - a read (any operation the model calls [`EffectKind::ReadOnly`]) that fits the current
//!   state goes next without alternatives, and a timed-out read is dropped;
//! - a timed-out operation is only placed if the next operation observes its effect, and never
//!   if it leaves the state unchanged;
//! - timed-out operations with equal inputs are interchangeable, and only the earliest unused
//!   one is tried; [`RegisterModel`] first merges values that nothing reads, so that timed-out
//!   writes of them have equal inputs;
//! - timed-out operations that cannot change the current state ([`Model::effective_only_in`])
//!   are not visited.
//!
//! Cost: the problem is NP-complete, and in the worst case the search visits every
//! configuration, O(n · 2^c · s) for n operations on a key with at most c of them overlapping
//! and s distinct model states. A linearizable history from a store with little overlap is
//! checked almost without backtracking: 5 clients × 10,000 operations over 10 keys, 10% of them
//! timed out, take under 100,000 steps and well under a second unoptimized; all 50,000 on one
//! key take about a second. Histories where half of one key's operations time out can take
//! exponential time. The [`Budget`] bounds time and memory (one memo entry per step at most),
//! so a pathological history ends in [`CheckResult::Timeout`] rather than a hung test.
//!
//! ## Example
//!
//! ```
//! use ha_linearizability::{Budget, CheckResult, Input, Operation, Output, RegisterModel, check};
//!
//! // Client 1 writes "a"; after that write returned, client 2 reads nothing: a stale read.
//! let history = vec![
//!     Operation::completed(1, "config", 0, 10, Input::write("a"), Output::WriteOk),
//!     Operation::completed(2, "config", 11, 12, Input::Read, Output::not_found()),
//!     Operation::completed(3, "other", 0, 1, Input::Read, Output::not_found()),
//! ];
//! match check(&history, &RegisterModel, &Budget::default())? {
//!     CheckResult::NotLinearizable { key, explanation } => {
//!         assert_eq!(key, "config");
//!         assert_eq!(explanation.prefix, vec![0]);
//!         assert_eq!(explanation.unplaceable, 1);
//!         println!("{explanation}");
//!     }
//!     other => panic!("a stale read was not caught: {other:?}"),
//! }
//! # Ok::<(), ha_linearizability::HistoryError>(())
//! ```

mod budget;
mod check_result;
mod checker;
mod effect_kind;
mod entry_list;
mod error;
mod explanation;
mod kv;
mod memo;
mod model;
mod operation;
mod placed_set;
mod recorder;
mod register_model;
mod search;
mod timed_out_pool;
mod value;

pub use budget::Budget;
pub use check_result::CheckResult;
pub use checker::check;
pub use effect_kind::EffectKind;
pub use error::HistoryError;
pub use explanation::Explanation;
pub use kv::{Input, Output};
pub use model::Model;
pub use operation::Operation;
pub use recorder::{OperationToken, Recorder};
pub use register_model::RegisterModel;
pub use value::Value;
