//! Small histories written by hand, each with a known verdict.

use ha_linearizability::{
    Budget, CheckResult, Explanation, HistoryError, Input, Operation, Output, RegisterModel, check,
};

const KEY: &str = "k";

fn completed(client: u64, call_at: u64, return_at: u64, input: Input, output: Output) -> Operation {
    Operation::completed(client, KEY, call_at, return_at, input, output)
}

fn timed_out(client: u64, call_at: u64, input: Input) -> Operation {
    Operation::timed_out(client, KEY, call_at, input)
}

fn verdict(history: &[Operation]) -> CheckResult {
    check(history, &RegisterModel, &Budget::steps(1_000_000)).expect("the history is well formed")
}

fn assert_linearizable(history: &[Operation]) {
    let result = verdict(history);
    assert_eq!(result, CheckResult::Linearizable, "{history:#?}");
}

fn assert_not_linearizable(history: &[Operation]) -> Explanation {
    match verdict(history) {
        CheckResult::NotLinearizable { key, explanation } => {
            assert_eq!(key, KEY);
            explanation
        }
        other => panic!("expected a violation, got {other:?} for {history:#?}"),
    }
}

#[test]
fn sequential_history_is_accepted() {
    assert_linearizable(&[
        completed(1, 0, 1, Input::Read, Output::not_found()),
        completed(1, 2, 3, Input::write("a"), Output::WriteOk),
        completed(2, 4, 5, Input::Read, Output::found("a")),
        completed(1, 6, 7, Input::cas("a", "b"), Output::CasOk),
        completed(2, 8, 9, Input::cas("a", "c"), Output::CasFailed),
        completed(3, 10, 11, Input::Read, Output::found("b")),
        completed(3, 12, 13, Input::Delete, Output::DeleteOk { existed: true }),
        completed(
            1,
            14,
            15,
            Input::Delete,
            Output::DeleteOk { existed: false },
        ),
        completed(2, 16, 17, Input::create("d"), Output::CasOk),
        completed(3, 18, 19, Input::create("e"), Output::CasFailed),
        completed(1, 20, 21, Input::Read, Output::found("d")),
    ]);
}

#[test]
fn an_empty_history_is_accepted() {
    assert_linearizable(&[]);
}

#[test]
fn concurrent_overlapping_writes_with_a_read_of_either_value_are_accepted() {
    for seen in ["a", "b"] {
        assert_linearizable(&[
            completed(1, 0, 10, Input::write("a"), Output::WriteOk),
            completed(2, 1, 11, Input::write("b"), Output::WriteOk),
            completed(3, 12, 13, Input::Read, Output::found(seen)),
            completed(3, 14, 15, Input::Read, Output::found(seen)),
        ]);
    }
}

#[test]
fn a_read_overlapping_writes_may_see_the_value_before_them() {
    assert_linearizable(&[
        completed(1, 0, 10, Input::write("a"), Output::WriteOk),
        completed(2, 1, 11, Input::write("b"), Output::WriteOk),
        completed(3, 2, 3, Input::Read, Output::not_found()),
        completed(3, 4, 5, Input::Read, Output::found("b")),
        completed(3, 6, 7, Input::Read, Output::found("a")),
    ]);
}

#[test]
fn stale_read_is_rejected() {
    let explanation = assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(1, 2, 3, Input::write("b"), Output::WriteOk),
        completed(2, 4, 5, Input::Read, Output::found("a")),
    ]);
    assert_eq!(explanation.prefix, vec![0, 1]);
    assert_eq!(explanation.state_after_prefix, "Some(\"b\")");
    assert_eq!(explanation.unplaceable, 2);
    assert!(explanation.concurrent.is_empty());
    let description = explanation.to_string();
    assert!(
        description.contains("#2 client 2 [4, 5] Read -> ReadResult(Some(\"a\"))"),
        "{description}"
    );
}

#[test]
fn reads_going_back_in_time_are_rejected() {
    // Both writes overlap both reads' predecessors, but once a read saw "b" after "a", a later
    // read cannot see "a" again: there is only one write of each.
    assert_not_linearizable(&[
        completed(1, 0, 10, Input::write("a"), Output::WriteOk),
        completed(2, 1, 11, Input::write("b"), Output::WriteOk),
        completed(3, 2, 3, Input::Read, Output::found("a")),
        completed(3, 4, 5, Input::Read, Output::found("b")),
        completed(3, 6, 7, Input::Read, Output::found("a")),
    ]);
}

#[test]
fn lost_write_is_rejected() {
    // The write of "b" was acknowledged, yet a later CAS from "b" finds something else and a
    // later read sees the value from before it.
    let explanation = assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(2, 2, 3, Input::write("b"), Output::WriteOk),
        completed(3, 4, 5, Input::cas("b", "c"), Output::CasFailed),
        completed(3, 6, 7, Input::Read, Output::found("a")),
    ]);
    assert_eq!(explanation.unplaceable, 2);
}

#[test]
fn cas_success_with_the_wrong_expected_value_is_rejected() {
    assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(2, 2, 3, Input::cas("x", "b"), Output::CasOk),
    ]);
}

#[test]
fn cas_failure_with_the_right_expected_value_is_rejected() {
    assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(2, 2, 3, Input::cas("a", "b"), Output::CasFailed),
    ]);
}

#[test]
fn two_cas_with_the_same_expected_value_both_succeeding_are_rejected() {
    let explanation = assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(2, 2, 6, Input::cas("a", "b"), Output::CasOk),
        completed(3, 3, 7, Input::cas("a", "c"), Output::CasOk),
    ]);
    assert_eq!(explanation.prefix.len(), 2);
}

#[test]
fn two_cas_with_the_same_expected_value_one_failing_are_accepted() {
    assert_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(2, 2, 6, Input::cas("a", "b"), Output::CasOk),
        completed(3, 3, 7, Input::cas("a", "c"), Output::CasFailed),
        completed(1, 8, 9, Input::Read, Output::found("b")),
    ]);
}

#[test]
fn create_only_cas_twice_both_succeeding_is_rejected() {
    // Overlapping, and one after the other.
    assert_not_linearizable(&[
        completed(1, 0, 5, Input::create("a"), Output::CasOk),
        completed(2, 1, 6, Input::create("b"), Output::CasOk),
    ]);
    assert_not_linearizable(&[
        completed(1, 0, 1, Input::create("a"), Output::CasOk),
        completed(2, 2, 3, Input::create("b"), Output::CasOk),
    ]);
}

#[test]
fn create_only_cas_after_a_delete_is_accepted() {
    assert_linearizable(&[
        completed(1, 0, 1, Input::create("a"), Output::CasOk),
        completed(2, 2, 3, Input::Delete, Output::DeleteOk { existed: true }),
        completed(3, 4, 5, Input::create("b"), Output::CasOk),
    ]);
}

#[test]
fn delete_that_misreports_existence_is_rejected() {
    assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(2, 2, 3, Input::Delete, Output::DeleteOk { existed: false }),
    ]);
}

#[test]
fn timed_out_write_whose_value_is_later_read_is_accepted() {
    assert_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        timed_out(2, 2, Input::write("b")),
        // The timed-out write may take effect late: first "a" is still there, then "b".
        completed(3, 5, 6, Input::Read, Output::found("a")),
        completed(3, 10, 11, Input::Read, Output::found("b")),
        completed(1, 12, 13, Input::Read, Output::found("b")),
    ]);
}

#[test]
fn timed_out_write_never_observed_is_accepted() {
    assert_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        timed_out(2, 2, Input::write("b")),
        completed(3, 10, 11, Input::Read, Output::found("a")),
        completed(3, 12, 13, Input::cas("a", "c"), Output::CasOk),
    ]);
}

#[test]
fn timed_out_write_cannot_take_effect_before_its_call() {
    assert_not_linearizable(&[
        completed(1, 0, 1, Input::Read, Output::found("b")),
        timed_out(2, 2, Input::write("b")),
    ]);
}

#[test]
fn timed_out_write_takes_effect_at_most_once() {
    assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        timed_out(2, 2, Input::write("b")),
        completed(3, 3, 4, Input::Read, Output::found("b")),
        completed(1, 5, 6, Input::write("c"), Output::WriteOk),
        completed(3, 7, 8, Input::Read, Output::found("b")),
    ]);
}

#[test]
fn many_overwritten_timed_out_writes_are_cheap() {
    // Forty timed-out writes that nobody observes, then a chain of reads and writes. Without
    // pruning, the search would try them in all 2^40 subsets.
    let mut history: Vec<Operation> = (0..40)
        .map(|client| timed_out(100 + client, client, Input::write(format!("lost{client}"))))
        .collect();
    for step in 0..50 {
        let at = 100 + step * 4;
        history.push(completed(
            1,
            at,
            at + 1,
            Input::write(format!("v{step}")),
            Output::WriteOk,
        ));
        history.push(completed(
            2,
            at + 2,
            at + 3,
            Input::Read,
            Output::found(format!("v{step}")),
        ));
    }
    history.push(completed(
        3,
        1000,
        1001,
        Input::Read,
        Output::found("lost17"),
    ));
    let result = check(&history, &RegisterModel, &Budget::steps(2_000_000)).expect("well formed");
    assert_eq!(result, CheckResult::Linearizable);
    // And the one that cannot be: a timed-out value read between two completed writes and
    // after both, with nothing timed out writing it twice.
    history.push(completed(3, 1002, 1003, Input::write("w"), Output::WriteOk));
    history.push(completed(
        3,
        1004,
        1005,
        Input::Read,
        Output::found("lost17"),
    ));
    let result = check(&history, &RegisterModel, &Budget::steps(2_000_000)).expect("well formed");
    assert!(
        matches!(result, CheckResult::NotLinearizable { .. }),
        "{result:?}"
    );
}

#[test]
fn unknown_outcome_with_a_known_return_takes_effect_before_that_return_or_never() {
    // "b" had to take effect before 3 if at all, so after "c" at [4, 5] it cannot be read.
    assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        Operation {
            client: 2,
            key: KEY.to_string(),
            call_at: 2,
            return_at: Some(3),
            input: Input::write("b"),
            output: None,
        },
        completed(1, 4, 5, Input::write("c"), Output::WriteOk),
        completed(3, 6, 7, Input::Read, Output::found("b")),
    ]);
    // Either outcome of it is fine otherwise.
    for seen in ["a", "b"] {
        assert_linearizable(&[
            completed(1, 0, 1, Input::write("a"), Output::WriteOk),
            Operation {
                client: 2,
                key: KEY.to_string(),
                call_at: 2,
                return_at: Some(3),
                input: Input::write("b"),
                output: None,
            },
            completed(3, 6, 7, Input::Read, Output::found(seen)),
        ]);
    }
}

#[test]
fn read_of_a_value_never_written_is_rejected() {
    let explanation = assert_not_linearizable(&[
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(2, 0, 5, Input::write("b"), Output::WriteOk),
        completed(3, 2, 4, Input::Read, Output::found("z")),
    ]);
    assert_eq!(explanation.unplaceable, 2);
}

#[test]
fn an_answer_of_the_wrong_kind_is_rejected() {
    assert_not_linearizable(&[completed(1, 0, 1, Input::Read, Output::WriteOk)]);
}

#[test]
fn keys_are_checked_independently_and_the_failing_key_is_named() {
    let history = vec![
        Operation::completed(1, "a", 0, 1, Input::write("x"), Output::WriteOk),
        Operation::completed(2, "b", 0, 1, Input::write("y"), Output::WriteOk),
        // Fine for "a": it is another key's value that was never written here.
        Operation::completed(3, "a", 2, 3, Input::Read, Output::found("x")),
        Operation::completed(3, "b", 4, 5, Input::Read, Output::found("x")),
    ];
    match check(&history, &RegisterModel, &Budget::default()) {
        Ok(CheckResult::NotLinearizable { key, explanation }) => {
            assert_eq!(key, "b");
            assert_eq!(explanation.prefix, vec![1]);
            assert_eq!(explanation.unplaceable, 3);
        }
        other => panic!("expected a violation on key b, got {other:?}"),
    }
}

#[test]
fn a_return_before_the_call_is_a_malformed_history() {
    let history = vec![
        completed(1, 0, 1, Input::write("a"), Output::WriteOk),
        completed(2, 5, 4, Input::Read, Output::found("a")),
    ];
    assert_eq!(
        check(&history, &RegisterModel, &Budget::default()),
        Err(HistoryError::ReturnBeforeCall {
            index: 1,
            call_at: 5,
            return_at: 4
        })
    );
}

#[test]
fn an_exhausted_budget_is_reported_as_a_timeout() {
    let history: Vec<Operation> = (0..20)
        .map(|step| {
            completed(
                1,
                step * 2,
                step * 2 + 1,
                Input::write(format!("v{step}")),
                Output::WriteOk,
            )
        })
        .collect();
    assert_eq!(
        check(&history, &RegisterModel, &Budget::steps(5)),
        Ok(CheckResult::Timeout {
            key: KEY.to_string(),
            steps: 5
        })
    );
    assert_eq!(
        check(&history, &RegisterModel, &Budget::steps(1_000)),
        Ok(CheckResult::Linearizable)
    );
}
