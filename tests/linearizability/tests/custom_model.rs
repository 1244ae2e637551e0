//! A model other than the KV register plugs in: a lock that hands out fencing tokens.

use ha_linearizability::{Budget, CheckResult, EffectKind, Model, Operation, check};

/// A lock with fencing tokens: each grant gets the next token number.
struct FencedLock;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct LockState {
    holder: Option<u64>,
    tokens_granted: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum LockInput {
    Acquire { client: u64 },
    Release { client: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum LockOutput {
    Granted { token: u64 },
    Busy,
    Released,
}

impl Model for FencedLock {
    type State = LockState;
    type Input = LockInput;
    type Output = LockOutput;

    fn initial_state(&self) -> LockState {
        LockState {
            holder: None,
            tokens_granted: 0,
        }
    }

    fn step(
        &self,
        state: &LockState,
        input: &LockInput,
        output: Option<&LockOutput>,
    ) -> Option<LockState> {
        match (input, output) {
            (LockInput::Acquire { client }, Some(LockOutput::Granted { .. }) | None)
                if state.holder.is_none() =>
            {
                let token = state.tokens_granted + 1;
                match output {
                    Some(LockOutput::Granted { token: granted }) if *granted != token => None,
                    _ => Some(LockState {
                        holder: Some(*client),
                        tokens_granted: token,
                    }),
                }
            }
            (LockInput::Acquire { .. }, Some(LockOutput::Busy)) if state.holder.is_some() => {
                Some(state.clone())
            }
            (LockInput::Acquire { .. }, None) => Some(state.clone()),
            (LockInput::Release { client }, Some(LockOutput::Released) | None)
                if state.holder == Some(*client) =>
            {
                Some(LockState {
                    holder: None,
                    ..state.clone()
                })
            }
            _ => None,
        }
    }

    fn effect_kind(&self, input: &LockInput, output: Option<&LockOutput>) -> EffectKind {
        match (input, output) {
            (LockInput::Acquire { .. }, Some(LockOutput::Busy)) => EffectKind::ReadOnly,
            _ => EffectKind::DependsOnState,
        }
    }
}

fn operation(
    client: u64,
    call_at: u64,
    return_at: u64,
    input: LockInput,
    output: LockOutput,
) -> Operation<LockInput, LockOutput> {
    Operation::completed(client, "leader", call_at, return_at, input, output)
}

fn verdict(history: &[Operation<LockInput, LockOutput>]) -> CheckResult {
    check(history, &FencedLock, &Budget::default()).expect("well formed")
}

#[test]
fn handing_the_lock_over_with_increasing_tokens_is_accepted() {
    let history = vec![
        operation(
            1,
            0,
            2,
            LockInput::Acquire { client: 1 },
            LockOutput::Granted { token: 1 },
        ),
        operation(2, 1, 3, LockInput::Acquire { client: 2 }, LockOutput::Busy),
        operation(
            1,
            4,
            5,
            LockInput::Release { client: 1 },
            LockOutput::Released,
        ),
        operation(
            2,
            6,
            7,
            LockInput::Acquire { client: 2 },
            LockOutput::Granted { token: 2 },
        ),
    ];
    assert_eq!(verdict(&history), CheckResult::Linearizable);
}

#[test]
fn two_holders_at_once_are_rejected() {
    let history = vec![
        operation(
            1,
            0,
            2,
            LockInput::Acquire { client: 1 },
            LockOutput::Granted { token: 1 },
        ),
        operation(
            2,
            1,
            3,
            LockInput::Acquire { client: 2 },
            LockOutput::Granted { token: 2 },
        ),
    ];
    assert!(matches!(
        verdict(&history),
        CheckResult::NotLinearizable { .. }
    ));
}

#[test]
fn a_fencing_token_that_goes_backwards_is_rejected() {
    let history = vec![
        operation(
            1,
            0,
            1,
            LockInput::Acquire { client: 1 },
            LockOutput::Granted { token: 1 },
        ),
        operation(
            1,
            2,
            3,
            LockInput::Release { client: 1 },
            LockOutput::Released,
        ),
        operation(
            2,
            4,
            5,
            LockInput::Acquire { client: 2 },
            LockOutput::Granted { token: 1 },
        ),
    ];
    assert!(matches!(
        verdict(&history),
        CheckResult::NotLinearizable { .. }
    ));
}

#[test]
fn a_timed_out_acquire_explains_a_busy_lock_and_a_skipped_token() {
    let history = vec![
        // Client 1's acquire timed out, but it did get the lock (token 1)...
        Operation::timed_out(1, "leader", 0, LockInput::Acquire { client: 1 }),
        operation(2, 5, 6, LockInput::Acquire { client: 2 }, LockOutput::Busy),
        // ...and its lease-expiry release, also timed out, eventually went through.
        Operation::timed_out(1, "leader", 7, LockInput::Release { client: 1 }),
        operation(
            2,
            10,
            11,
            LockInput::Acquire { client: 2 },
            LockOutput::Granted { token: 2 },
        ),
    ];
    assert_eq!(verdict(&history), CheckResult::Linearizable);
    // Without the timed-out release, the lock cannot have been free for token 2.
    let without_release: Vec<_> = history
        .iter()
        .filter(|operation| operation.call_at != 7)
        .cloned()
        .collect();
    assert!(matches!(
        verdict(&without_release),
        CheckResult::NotLinearizable { .. }
    ));
}
