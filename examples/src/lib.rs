//! # ha-examples
//!
//! The parts of the `bot` demo (docs/ARCHITECTURE.md, "The bot (examples/)") that are worth
//! testing on their own. Today that is the [`journal`]: the replicated state machine the bot's leader writes numbered
//! actions into, guarded by a fenced lock, and the independent check that finds any gap or
//! duplicate in it.
//!
//! ```text
//!   leader's scheduler ── JournalCommand::Append{seq, token, writer} ──▶ replicated log
//!                                                                         │ apply, in order
//!   bot demo ◀── JournalVerdict::check(entries) ◀── JournalQuery::Entries ◀ Journal (every node)
//! ```
//!
//! Nothing here does IO or reads a clock: the writer puts its wall-clock time into the
//! command, so every replica records the same journal.
//!
//! ## Example
//!
//! ```
//! use ha_core::{LogIndex, NodeId, StateMachine};
//! use ha_examples::journal::{Journal, JournalCommand, JournalResponse};
//!
//! let mut journal = Journal::default();
//! let (n1, n2) = (NodeId::new("n1")?, NodeId::new("n2")?);
//! let appends = [(1, 1, &n1), (2, 1, &n1), (3, 2, &n2), (3, 1, &n1), (4, 2, &n2)];
//! for (position, (seq, token, writer)) in appends.into_iter().enumerate() {
//!     let command = JournalCommand::Append { seq, token, writer: writer.clone(), unix_ms: 0 };
//!     let response = journal.apply(LogIndex(position as u64 + 1), command);
//!     // n1's late append with its old token is fenced off once n2 took the lock.
//!     let stale = matches!(response, JournalResponse::StaleToken { highest: 2 });
//!     assert_eq!(stale, position == 3);
//! }
//! let verdict = journal.verdict();
//! assert!(verdict.ok(), "{verdict}");
//! assert_eq!(verdict.runs_total, 2);
//! assert_eq!(
//!     verdict.to_string(),
//!     "journal: 4 entries, seq 1..=4, no gap, no duplicate, tokens never decrease (2 writers)
//!   n1 token 1: seq 1..=2 (2 entries)
//!   n2 token 2: seq 3..=4 (2 entries)"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod journal;
mod journal_verdict;
