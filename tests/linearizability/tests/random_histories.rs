//! Histories generated from a linearizable execution are accepted; the same histories with one
//! read's result changed to a value that was provably never current during that read are
//! rejected.

mod support;

use ha_linearizability::{Budget, CheckResult, Operation, Output, RegisterModel, Value, check};
use proptest::prelude::*;
use support::{Random, Workload, impossible_read_results, linearizable_history};

/// Far more than these histories need; a timeout here is a performance bug worth seeing.
const STEPS_MAX: u64 = 20_000_000;

fn verdict(history: &[Operation]) -> CheckResult {
    check(history, &RegisterModel, &Budget::steps(STEPS_MAX))
        .expect("generated histories are well formed")
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        1..=5u64,
        1..=40usize,
        1..=3u64,
        prop_oneof![Just(0u64), 1..=30u64],
        prop_oneof![Just(None), (1..=3u64).prop_map(Some)],
        any::<u64>(),
    )
        .prop_map(
            |(clients, operations_per_client, keys, timeout_percent, value_choices, seed)| {
                Workload {
                    clients,
                    operations_per_client,
                    keys,
                    timeout_percent,
                    value_choices,
                    seed,
                }
            },
        )
}

/// Changes one read's result to a value it provably cannot have seen: one written to the same
/// key but never current during the read, if there is one, otherwise one never written at all.
/// Returns the key of the mutated read and whether the value was a written one. `selector`
/// picks the read and the value.
fn mutate_one_read(history: &mut [Operation], selector: u64) -> Option<(String, bool)> {
    let reads: Vec<usize> = (0..history.len())
        .filter(|&index| matches!(history[index].output, Some(Output::ReadResult(_))))
        .collect();
    if reads.is_empty() {
        return None;
    }
    let mut random = Random::new(selector);
    let read = reads[random.below(reads.len() as u64) as usize];
    let impossible = impossible_read_results(history, read);
    let (value, written) = if impossible.is_empty() {
        (Some(Value::from("never written")), false)
    } else {
        (
            impossible[random.below(impossible.len() as u64) as usize].clone(),
            true,
        )
    };
    history[read].output = Some(Output::ReadResult(value));
    Some((history[read].key.clone(), written))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn histories_of_a_linearizable_execution_are_accepted(workload in workload()) {
        let history = linearizable_history(&workload);
        prop_assert_eq!(verdict(&history), CheckResult::Linearizable, "{:?}", workload);
    }

    #[test]
    fn a_read_of_a_value_never_current_in_its_interval_is_rejected(
        workload in workload(),
        selector in any::<u64>(),
    ) {
        // Unique values are what make the mutation provably wrong.
        let workload = Workload { value_choices: None, ..workload };
        let mut history = linearizable_history(&workload);
        let Some((key, _)) = mutate_one_read(&mut history, selector) else {
            return Ok(());
        };
        match verdict(&history) {
            CheckResult::NotLinearizable { key: failing, .. } => prop_assert_eq!(failing, key),
            other => prop_assert!(false, "mutation accepted: {:?} for {:?}", other, workload),
        }
    }
}

/// The property above skips histories without a provable mutation; this makes sure many
/// histories do get one, with a written value rather than a made-up one, so that the checker
/// is tested on mutations that need the real-time order to refute.
#[test]
fn written_but_stale_read_results_are_rejected_across_many_seeds() {
    let mut written_mutations = 0;
    for seed in 0..300 {
        let workload = Workload {
            clients: 1 + seed % 5,
            operations_per_client: 30,
            keys: 1 + seed % 3,
            timeout_percent: if seed % 2 == 0 { 0 } else { 10 },
            value_choices: None,
            seed,
        };
        let mut history = linearizable_history(&workload);
        assert_eq!(verdict(&history), CheckResult::Linearizable, "{workload:?}");
        let Some((key, written)) = mutate_one_read(&mut history, seed) else {
            continue;
        };
        written_mutations += usize::from(written);
        match verdict(&history) {
            CheckResult::NotLinearizable {
                key: failing,
                explanation,
            } => {
                assert_eq!(failing, key);
                assert!(!explanation.description.is_empty());
            }
            other => panic!("mutation accepted: {other:?} for {workload:?}"),
        }
    }
    assert!(
        written_mutations >= 200,
        "only {written_mutations} histories had a provably stale written value"
    );
}

/// Small value sets make many reads ambiguous (the same value written several times), which
/// is where a wrong pruning rule would show up as a false alarm.
#[test]
fn ambiguous_histories_with_many_timeouts_are_accepted() {
    for seed in 0..200 {
        let workload = Workload {
            clients: 5,
            operations_per_client: 40,
            keys: 1,
            timeout_percent: 25,
            value_choices: Some(2),
            seed,
        };
        let history = linearizable_history(&workload);
        assert_eq!(verdict(&history), CheckResult::Linearizable, "{workload:?}");
    }
}
