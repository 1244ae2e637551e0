//! The independent check of a journal: no gap, no duplicate, no token decrease.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ha_core::{LogIndex, NodeId};
use serde::Serialize;

use crate::journal::JournalEntry;

/// The most problems of each kind a verdict lists; the rest are only counted.
pub const VERDICT_PROBLEMS_MAX: usize = 20;

/// The most writer runs a verdict lists; the rest are only counted.
pub const VERDICT_RUNS_MAX: usize = 1_000;

/// The most runs [`JournalVerdict`]'s `Display` prints, so the verdict stays short.
const DISPLAY_RUNS_MAX: usize = 10;

/// Sequence numbers `first_missing..=last_missing` appear nowhere in the journal, though a
/// higher one does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeqGap {
    /// The first missing sequence number.
    pub first_missing: u64,
    /// The last missing sequence number.
    pub last_missing: u64,
}

/// A sequence number written again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SeqDuplicate {
    /// The repeated sequence number.
    pub seq: u64,
    /// The log index of its first entry.
    pub first_index: LogIndex,
    /// The log index of this repeat.
    pub index: LogIndex,
}

/// A sequence number written for the first time after a higher one (or 0, which is below the
/// first number, 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutOfOrderSeq {
    /// The late sequence number.
    pub seq: u64,
    /// The highest sequence number written before it (0 when it is the first entry).
    pub after_seq: u64,
    /// The log index of the late entry.
    pub index: LogIndex,
}

/// An entry whose fencing token is lower than the entry's before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenDecrease {
    /// The previous entry's token.
    pub from_token: u64,
    /// This entry's, lower, token.
    pub to_token: u64,
    /// This entry's writer.
    pub writer: NodeId,
    /// This entry's sequence number.
    pub seq: u64,
    /// This entry's log index.
    pub index: LogIndex,
}

/// Consecutive entries written by one writer under one token: what one lock holder wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WriterRun {
    /// The writer.
    pub writer: NodeId,
    /// Its fencing token.
    pub token: u64,
    /// How many entries the run has.
    pub entries: u64,
    /// The first entry's sequence number.
    pub first_seq: u64,
    /// The last entry's sequence number.
    pub last_seq: u64,
    /// The first entry's log index.
    pub first_index: LogIndex,
    /// The last entry's log index.
    pub last_index: LogIndex,
}

/// What an independent check of a journal's entries found.
///
/// The journal is correct when its sequence numbers are exactly `1..=N` in the order written
/// (N the number of entries) and its tokens never decrease. Anything else is reported as one
/// of four kinds of problem, each listed up to [`VERDICT_PROBLEMS_MAX`] times and counted in
/// full:
/// - a **gap**: numbers missing below the highest one written;
/// - a **duplicate**: a number written again;
/// - **out of order**: a number written for the first time after a higher one, or 0;
/// - a **token decrease**: an entry with a lower token than the entry before it.
///
/// An empty journal has no problem; a caller that expects entries checks `entries` itself.
///
/// ```
/// use ha_core::{LogIndex, NodeId};
/// use ha_examples::journal::{JournalEntry, JournalVerdict};
///
/// let writer = NodeId::new("n1")?;
/// let entries: Vec<JournalEntry> = [1, 2, 4]
///     .into_iter()
///     .map(|seq| JournalEntry { seq, token: 1, writer: writer.clone(), unix_ms: 0, index: LogIndex(seq) })
///     .collect();
/// let verdict = JournalVerdict::check(&entries);
/// assert!(!verdict.ok());
/// assert_eq!(verdict.missing_seqs, 1);
/// assert!(verdict.to_string().contains("gap: seq 3 missing"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JournalVerdict {
    /// How many entries were checked.
    pub entries: u64,
    /// The lowest and highest sequence numbers written, or `None` for an empty journal.
    pub seq_range: Option<(u64, u64)>,
    /// The first gaps, by sequence number.
    pub gaps: Vec<SeqGap>,
    /// How many gaps there are.
    pub gaps_total: u64,
    /// How many sequence numbers the gaps miss in all.
    pub missing_seqs: u64,
    /// The first duplicates, in the order written.
    pub duplicates: Vec<SeqDuplicate>,
    /// How many entries repeat an earlier number.
    pub duplicates_total: u64,
    /// The first late numbers, in the order written.
    pub out_of_order: Vec<OutOfOrderSeq>,
    /// How many entries are out of order.
    pub out_of_order_total: u64,
    /// The first token decreases, in the order written.
    pub token_decreases: Vec<TokenDecrease>,
    /// How many entries have a lower token than the one before.
    pub token_decreases_total: u64,
    /// The first writer runs, in the order written.
    pub runs: Vec<WriterRun>,
    /// How many runs there are.
    pub runs_total: u64,
    /// How many distinct writers wrote entries.
    pub writers: u64,
}

impl JournalVerdict {
    /// Checks `entries`, given in the order they were written. Pure: it reads nothing else.
    /// Time and memory grow as `n log n` and `n` in the number of entries.
    pub fn check(entries: &[JournalEntry]) -> JournalVerdict {
        let mut verdict = JournalVerdict {
            entries: entries.len() as u64,
            seq_range: None,
            gaps: Vec::new(),
            gaps_total: 0,
            missing_seqs: 0,
            duplicates: Vec::new(),
            duplicates_total: 0,
            out_of_order: Vec::new(),
            out_of_order_total: 0,
            token_decreases: Vec::new(),
            token_decreases_total: 0,
            runs: Vec::new(),
            runs_total: 0,
            writers: 0,
        };
        let mut first_index_by_seq: BTreeMap<u64, LogIndex> = BTreeMap::new();
        let mut writers: BTreeSet<&NodeId> = BTreeSet::new();
        let mut highest_seq = 0u64;
        let mut previous: Option<&JournalEntry> = None;
        let mut run: Option<WriterRun> = None;

        for entry in entries {
            if let Some(&first_index) = first_index_by_seq.get(&entry.seq) {
                verdict.duplicates_total += 1;
                push_bounded(
                    &mut verdict.duplicates,
                    SeqDuplicate {
                        seq: entry.seq,
                        first_index,
                        index: entry.index,
                    },
                );
            } else {
                first_index_by_seq.insert(entry.seq, entry.index);
                // Not seen before yet not above every number before it: late, or 0.
                if entry.seq <= highest_seq {
                    verdict.out_of_order_total += 1;
                    push_bounded(
                        &mut verdict.out_of_order,
                        OutOfOrderSeq {
                            seq: entry.seq,
                            after_seq: highest_seq,
                            index: entry.index,
                        },
                    );
                }
            }
            highest_seq = highest_seq.max(entry.seq);

            if let Some(previous) = previous
                && entry.token < previous.token
            {
                verdict.token_decreases_total += 1;
                push_bounded(
                    &mut verdict.token_decreases,
                    TokenDecrease {
                        from_token: previous.token,
                        to_token: entry.token,
                        writer: entry.writer.clone(),
                        seq: entry.seq,
                        index: entry.index,
                    },
                );
            }
            previous = Some(entry);

            writers.insert(&entry.writer);
            match &mut run {
                Some(current) if current.writer == entry.writer && current.token == entry.token => {
                    current.entries += 1;
                    current.last_seq = entry.seq;
                    current.last_index = entry.index;
                }
                _ => {
                    if let Some(finished) = run.take() {
                        verdict.push_run(finished);
                    }
                    run = Some(WriterRun {
                        writer: entry.writer.clone(),
                        token: entry.token,
                        entries: 1,
                        first_seq: entry.seq,
                        last_seq: entry.seq,
                        first_index: entry.index,
                        last_index: entry.index,
                    });
                }
            }
        }
        if let Some(finished) = run {
            verdict.push_run(finished);
        }
        verdict.writers = writers.len() as u64;

        // Gaps: the numbers in 1..=highest that no entry has, as ranges. Seq 0 is not in that
        // range; it was reported as out of order above.
        let mut expected = 1u64;
        for &seq in first_index_by_seq.keys().filter(|&&seq| seq > 0) {
            if seq > expected {
                verdict.gaps_total += 1;
                verdict.missing_seqs += seq - expected;
                push_bounded(
                    &mut verdict.gaps,
                    SeqGap {
                        first_missing: expected,
                        last_missing: seq - 1,
                    },
                );
            }
            expected = seq.saturating_add(1);
        }
        verdict.seq_range = first_index_by_seq
            .keys()
            .next()
            .zip(first_index_by_seq.keys().next_back())
            .map(|(&lowest, &highest)| (lowest, highest));
        verdict
    }

    /// True when the sequence numbers are exactly `1..=N` in order and tokens never decrease:
    /// no gap, no duplicate, nothing out of order, no token decrease.
    pub fn ok(&self) -> bool {
        self.gaps_total == 0
            && self.duplicates_total == 0
            && self.out_of_order_total == 0
            && self.token_decreases_total == 0
    }

    fn push_run(&mut self, run: WriterRun) {
        self.runs_total += 1;
        if self.runs.len() < VERDICT_RUNS_MAX {
            self.runs.push(run);
        }
    }
}

fn push_bounded<T>(list: &mut Vec<T>, item: T) {
    if list.len() < VERDICT_PROBLEMS_MAX {
        list.push(item);
    }
}

/// `count` and the noun, with an `s` unless the count is 1 ("entry" becomes "entries").
fn plural(count: u64, noun: &str) -> String {
    match (count, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{count} {stem}ies"),
        (_, None) => format!("{count} {noun}s"),
    }
}

fn seq_range_text(first: u64, last: u64) -> String {
    if first == last {
        format!("seq {first}")
    } else {
        format!("seq {first}..={last}")
    }
}

/// A headline, then one line per listed problem, then one line per writer run (the first
/// few), e.g.
///
/// ```text
/// journal: 142 entries, seq 1..=142, no gap, no duplicate, tokens never decrease (2 writers)
///   n1 token 3: seq 1..=57 (57 entries)
///   n2 token 4: seq 58..=142 (85 entries)
/// ```
impl fmt::Display for JournalVerdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "journal: {}", plural(self.entries, "entry"))?;
        if let Some((lowest, highest)) = self.seq_range {
            write!(formatter, ", {}", seq_range_text(lowest, highest))?;
        }
        if self.ok() {
            write!(formatter, ", no gap, no duplicate, tokens never decrease")?;
        } else {
            let mut problems = Vec::new();
            if self.gaps_total > 0 {
                problems.push(format!(
                    "{} ({} missing)",
                    plural(self.gaps_total, "gap"),
                    self.missing_seqs
                ));
            }
            if self.duplicates_total > 0 {
                problems.push(plural(self.duplicates_total, "duplicate"));
            }
            if self.out_of_order_total > 0 {
                problems.push(format!("{} out of order", self.out_of_order_total));
            }
            if self.token_decreases_total > 0 {
                problems.push(plural(self.token_decreases_total, "token decrease"));
            }
            write!(formatter, ", PROBLEMS: {}", problems.join(", "))?;
        }
        write!(formatter, " ({})", plural(self.writers, "writer"))?;

        for gap in &self.gaps {
            write!(
                formatter,
                "\n  gap: {} missing",
                seq_range_text(gap.first_missing, gap.last_missing)
            )?;
        }
        for duplicate in &self.duplicates {
            write!(
                formatter,
                "\n  duplicate: seq {} at log index {}, first at log index {}",
                duplicate.seq, duplicate.index, duplicate.first_index
            )?;
        }
        for late in &self.out_of_order {
            write!(
                formatter,
                "\n  out of order: seq {} at log index {}, after seq {}",
                late.seq, late.index, late.after_seq
            )?;
        }
        for decrease in &self.token_decreases {
            write!(
                formatter,
                "\n  token decrease: {} -> {} at log index {} ({}, seq {})",
                decrease.from_token,
                decrease.to_token,
                decrease.index,
                decrease.writer,
                decrease.seq
            )?;
        }
        let listed = (self.gaps.len()
            + self.duplicates.len()
            + self.out_of_order.len()
            + self.token_decreases.len()) as u64;
        let found = self.gaps_total
            + self.duplicates_total
            + self.out_of_order_total
            + self.token_decreases_total;
        if found > listed {
            let unlisted = found - listed;
            let noun = if unlisted == 1 { "problem" } else { "problems" };
            write!(formatter, "\n  ... and {unlisted} more {noun} not listed")?;
        }

        for run in self.runs.iter().take(DISPLAY_RUNS_MAX) {
            write!(
                formatter,
                "\n  {} token {}: {} ({})",
                run.writer,
                run.token,
                seq_range_text(run.first_seq, run.last_seq),
                plural(run.entries, "entry")
            )?;
        }
        let shown = self.runs.len().min(DISPLAY_RUNS_MAX) as u64;
        if self.runs_total > shown {
            let unshown = self.runs_total - shown;
            let noun = if unshown == 1 {
                "writer run"
            } else {
                "writer runs"
            };
            write!(formatter, "\n  ... and {unshown} more {noun}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::new(id).expect("valid test id")
    }

    /// Entries at log indexes 1, 2, ... with the given (seq, token, writer).
    fn entries(specs: &[(u64, u64, &str)]) -> Vec<JournalEntry> {
        specs
            .iter()
            .enumerate()
            .map(|(position, (seq, token, writer))| JournalEntry {
                seq: *seq,
                token: *token,
                writer: node(writer),
                unix_ms: 0,
                index: LogIndex(position as u64 + 1),
            })
            .collect()
    }

    #[test]
    fn a_clean_journal_is_ok_and_summarised_by_runs() {
        let journal = entries(&[
            (1, 3, "n1"),
            (2, 3, "n1"),
            (3, 4, "n2"),
            (4, 4, "n2"),
            (5, 4, "n2"),
            (6, 7, "n1"),
        ]);
        let verdict = JournalVerdict::check(&journal);
        assert!(verdict.ok(), "{verdict}");
        assert_eq!(verdict.seq_range, Some((1, 6)));
        assert_eq!((verdict.writers, verdict.runs_total), (2, 3));
        assert_eq!(
            verdict.runs[1],
            WriterRun {
                writer: node("n2"),
                token: 4,
                entries: 3,
                first_seq: 3,
                last_seq: 5,
                first_index: LogIndex(3),
                last_index: LogIndex(5),
            }
        );
        assert_eq!(
            verdict.to_string(),
            "journal: 6 entries, seq 1..=6, no gap, no duplicate, tokens never decrease \
             (2 writers)\n  n1 token 3: seq 1..=2 (2 entries)\n  n2 token 4: seq 3..=5 \
             (3 entries)\n  n1 token 7: seq 6 (1 entry)"
        );
    }

    #[test]
    fn an_empty_journal_has_no_problem() {
        let verdict = JournalVerdict::check(&[]);
        assert!(verdict.ok());
        assert_eq!(verdict.seq_range, None);
        assert_eq!(
            verdict.to_string(),
            "journal: 0 entries, no gap, no duplicate, tokens never decrease (0 writers)"
        );
    }

    #[test]
    fn gaps_are_reported_as_ranges_including_a_missing_start() {
        let verdict = JournalVerdict::check(&entries(&[(2, 1, "n1"), (3, 1, "n1"), (7, 1, "n1")]));
        assert!(!verdict.ok());
        assert_eq!(
            verdict.gaps,
            [
                SeqGap {
                    first_missing: 1,
                    last_missing: 1
                },
                SeqGap {
                    first_missing: 4,
                    last_missing: 6
                },
            ]
        );
        assert_eq!((verdict.gaps_total, verdict.missing_seqs), (2, 4));
        let text = verdict.to_string();
        assert!(text.contains("PROBLEMS: 2 gaps (4 missing)"), "{text}");
        assert!(text.contains("gap: seq 4..=6 missing"), "{text}");
    }

    #[test]
    fn duplicates_name_both_log_indexes() {
        let verdict = JournalVerdict::check(&entries(&[(1, 1, "n1"), (2, 1, "n1"), (2, 2, "n2")]));
        assert!(!verdict.ok());
        assert_eq!(
            verdict.duplicates,
            [SeqDuplicate {
                seq: 2,
                first_index: LogIndex(2),
                index: LogIndex(3)
            }]
        );
        assert_eq!(verdict.gaps_total, 0);
        assert!(
            verdict
                .to_string()
                .contains("duplicate: seq 2 at log index 3, first at log index 2")
        );
    }

    #[test]
    fn late_numbers_and_zero_are_out_of_order_but_fill_their_gap() {
        let verdict = JournalVerdict::check(&entries(&[(1, 1, "n1"), (3, 1, "n1"), (2, 1, "n1")]));
        assert!(!verdict.ok());
        assert_eq!(verdict.gaps_total, 0);
        assert_eq!(
            verdict.out_of_order,
            [OutOfOrderSeq {
                seq: 2,
                after_seq: 3,
                index: LogIndex(3)
            }]
        );
        let verdict = JournalVerdict::check(&entries(&[(0, 1, "n1"), (1, 1, "n1")]));
        assert_eq!(verdict.out_of_order_total, 1);
        assert_eq!(verdict.seq_range, Some((0, 1)));
    }

    #[test]
    fn token_decreases_are_reported() {
        let verdict = JournalVerdict::check(&entries(&[(1, 5, "n1"), (2, 4, "n2"), (3, 4, "n2")]));
        assert!(!verdict.ok());
        assert_eq!(
            verdict.token_decreases,
            [TokenDecrease {
                from_token: 5,
                to_token: 4,
                writer: node("n2"),
                seq: 2,
                index: LogIndex(2),
            }]
        );
        assert!(verdict.to_string().contains("1 token decrease"));
    }

    #[test]
    fn problem_lists_are_bounded_but_counted_in_full() {
        let specs: Vec<(u64, u64, &str)> = (0..100).map(|_| (1, 1, "n1")).collect();
        let verdict = JournalVerdict::check(&entries(&specs));
        assert_eq!(verdict.duplicates.len(), VERDICT_PROBLEMS_MAX);
        assert_eq!(verdict.duplicates_total, 99);
        assert!(
            verdict
                .to_string()
                .contains("and 79 more problems not listed")
        );

        let specs: Vec<(u64, u64, &str)> = (0..3_000)
            .map(|seq| (seq + 1, 1, if seq % 2 == 0 { "n1" } else { "n2" }))
            .collect();
        let verdict = JournalVerdict::check(&entries(&specs));
        assert!(verdict.ok());
        assert_eq!(verdict.runs.len(), VERDICT_RUNS_MAX);
        assert_eq!(verdict.runs_total, 3_000);
        assert!(verdict.to_string().ends_with("and 2990 more writer runs"));
    }

    #[test]
    fn extreme_sequence_numbers_do_not_overflow() {
        let verdict = JournalVerdict::check(&entries(&[(1, 1, "n1"), (u64::MAX, 1, "n1")]));
        assert_eq!(verdict.missing_seqs, u64::MAX - 2);
    }

    /// A clean journal: seqs 1..=N, written by runs of writers with non-decreasing tokens.
    fn clean_journal() -> impl Strategy<Value = Vec<JournalEntry>> {
        proptest::collection::vec((1u64..20, 0u64..3, 0usize..3), 1..12).prop_map(|runs| {
            let writers = [node("n1"), node("n2"), node("n3")];
            let mut journal = Vec::new();
            let mut token = 1u64;
            for (length, token_step, writer) in runs {
                token += token_step;
                for _ in 0..length {
                    let seq = journal.len() as u64 + 1;
                    journal.push(JournalEntry {
                        seq,
                        token,
                        writer: writers[writer].clone(),
                        unix_ms: 0,
                        index: LogIndex(seq * 2),
                    });
                }
            }
            journal
        })
    }

    proptest! {
        #[test]
        fn the_verdict_accepts_clean_journals_and_finds_each_injected_fault(
            journal in clean_journal(),
            pick in any::<prop::sample::Index>(),
            fault in 0u8..3,
        ) {
            let verdict = JournalVerdict::check(&journal);
            prop_assert!(verdict.ok(), "{}", verdict);
            prop_assert_eq!(verdict.seq_range, Some((1, journal.len() as u64)));
            let runs_entries: u64 = verdict.runs.iter().map(|run| run.entries).sum();
            prop_assert_eq!(runs_entries, journal.len() as u64);

            let mut broken = journal.clone();
            match fault {
                // Drop an entry that is not the last: its number goes missing.
                0 if journal.len() >= 2 => {
                    let position = pick.index(journal.len() - 1);
                    let dropped = broken.remove(position);
                    let verdict = JournalVerdict::check(&broken);
                    prop_assert!(!verdict.ok());
                    prop_assert_eq!(
                        verdict.gaps,
                        vec![SeqGap { first_missing: dropped.seq, last_missing: dropped.seq }]
                    );
                    prop_assert_eq!(verdict.duplicates_total + verdict.token_decreases_total, 0);
                }
                // Write an entry again at the end, under the last token.
                1 => {
                    let position = pick.index(journal.len());
                    let mut repeat = journal[position].clone();
                    let last = journal.last().expect("not empty");
                    repeat.token = last.token;
                    repeat.index = LogIndex(last.index.0 + 1);
                    broken.push(repeat.clone());
                    let verdict = JournalVerdict::check(&broken);
                    prop_assert!(!verdict.ok());
                    prop_assert_eq!(verdict.duplicates_total, 1);
                    prop_assert_eq!(verdict.duplicates[0].seq, repeat.seq);
                    prop_assert_eq!(verdict.gaps_total + verdict.token_decreases_total, 0);
                }
                // Lower one token below its predecessor's.
                2 if journal.len() >= 2 => {
                    let position = 1 + pick.index(journal.len() - 1);
                    broken[position].token = journal[position - 1].token - 1;
                    let verdict = JournalVerdict::check(&broken);
                    prop_assert!(!verdict.ok());
                    prop_assert_eq!(verdict.token_decreases_total, 1);
                    prop_assert_eq!(verdict.token_decreases[0].index, journal[position].index);
                    prop_assert_eq!(verdict.gaps_total + verdict.duplicates_total, 0);
                }
                _ => {}
            }
        }
    }
}
