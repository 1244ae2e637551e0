//! The checker agrees with a brute-force search, straight from the definition, on many small
//! random histories, linearizable or not. This is what tests the pruning rules: a wrong one
//! shows up as a disagreement.

mod support;

use ha_linearizability::{
    Budget, CheckResult, Input, Model, Operation, Output, RegisterModel, Value, check,
};
use support::Random;

/// Whether some subset of the optional operations, together with all the required ones, has an
/// order that respects real time and the model. Exponential; only for tiny histories.
fn brute_force_linearizable(history: &[Operation]) -> bool {
    let optional: Vec<usize> = (0..history.len())
        .filter(|&index| !history[index].is_required())
        .collect();
    (0u32..1 << optional.len()).any(|included_mask| {
        let included: Vec<usize> = (0..history.len())
            .filter(|&index| {
                history[index].is_required()
                    || optional
                        .iter()
                        .position(|&optional_index| optional_index == index)
                        .is_some_and(|bit| included_mask & (1 << bit) != 0)
            })
            .collect();
        let mut placed = vec![false; history.len()];
        some_order_exists(
            history,
            &included,
            &mut placed,
            &RegisterModel.initial_state(),
        )
    })
}

fn some_order_exists(
    history: &[Operation],
    included: &[usize],
    placed: &mut [bool],
    state: &<RegisterModel as Model>::State,
) -> bool {
    let unplaced: Vec<usize> = included
        .iter()
        .copied()
        .filter(|&index| !placed[index])
        .collect();
    if unplaced.is_empty() {
        return true;
    }
    for &next in &unplaced {
        // `next` may go now only if no unplaced operation returned before it was called.
        let must_wait = unplaced.iter().any(|&other| {
            history[other]
                .return_at
                .is_some_and(|returned| returned < history[next].call_at)
        });
        if must_wait {
            continue;
        }
        let operation = &history[next];
        let Some(next_state) =
            RegisterModel.step(state, &operation.input, operation.output.as_ref())
        else {
            continue;
        };
        placed[next] = true;
        let found = some_order_exists(history, included, placed, &next_state);
        placed[next] = false;
        if found {
            return true;
        }
    }
    false
}

fn random_value(random: &mut Random) -> Value {
    Value::from(["a", "b"][random.below(2) as usize])
}

/// Also "c", which no read returns and no compare-and-swap expects, so that the merging of
/// unobserved values is exercised.
fn random_written_value(random: &mut Random) -> Value {
    Value::from(["a", "b", "c"][random.below(3) as usize])
}

fn random_maybe_value(random: &mut Random) -> Option<Value> {
    random.percent(70).then(|| random_value(random))
}

/// Random intervals and random (often wrong) answers, over few values, so that both verdicts
/// are common and timed-out operations often have equal inputs.
fn random_history(random: &mut Random, length: usize) -> Vec<Operation> {
    (0..length)
        .map(|index| {
            let input = match random.below(4) {
                0 => Input::Read,
                1 => Input::Write(random_written_value(random)),
                2 => Input::Cas {
                    expected: random_maybe_value(random),
                    new: random_written_value(random),
                },
                _ => Input::Delete,
            };
            let output = match &input {
                Input::Read => Output::ReadResult(random_maybe_value(random)),
                Input::Write(_) => Output::WriteOk,
                Input::Cas { .. } if random.percent(50) => Output::CasOk,
                Input::Cas { .. } => Output::CasFailed,
                Input::Delete => Output::DeleteOk {
                    existed: random.percent(50),
                },
            };
            let call_at = random.below(20);
            let return_at = call_at + random.below(8);
            let (return_at, output) = match random.below(10) {
                0 | 1 => (None, None),
                2 => (Some(return_at), None),
                3 => (None, Some(output)),
                _ => (Some(return_at), Some(output)),
            };
            Operation {
                client: index as u64,
                key: "k".to_string(),
                call_at,
                return_at,
                input,
                output,
            }
        })
        .collect()
}

#[test]
fn the_checker_agrees_with_brute_force_on_small_random_histories() {
    let mut random = Random::new(7);
    let mut verdicts = [0usize; 2];
    for case in 0..30_000 {
        let length = 1 + random.below(8) as usize;
        let history = random_history(&mut random, length);
        let expected = brute_force_linearizable(&history);
        let result =
            check(&history, &RegisterModel, &Budget::steps(1_000_000)).expect("well formed");
        let actual = match &result {
            CheckResult::Linearizable => true,
            CheckResult::NotLinearizable { .. } => false,
            other => panic!("case {case}: {other:?}"),
        };
        assert_eq!(actual, expected, "case {case}: {result:?} for {history:#?}");
        verdicts[usize::from(expected)] += 1;
    }
    // Both verdicts must be well represented, or the comparison proves little.
    println!("verdicts (not linearizable, linearizable): {verdicts:?}");
    assert!(
        verdicts.iter().all(|&count| count > 6_000),
        "verdicts (not, yes): {verdicts:?}"
    );
}
