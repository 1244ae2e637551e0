//! The KV store's model: each key is a register with compare-and-swap and delete.

use std::collections::HashSet;

use crate::{EffectKind, Input, Model, Operation, Output, Value};

/// Each key of the KV store as a register: absent at first, then holding one [`Value`] at a time.
///
/// | input | output | legal when | next state |
/// |---|---|---|---|
/// | `Read` | `ReadResult(seen)` | `seen` is the current value | unchanged |
/// | `Write(v)` | `WriteOk` | always | `Some(v)` |
/// | `Cas { expected, new }` | `CasOk` | current value is `expected` | `Some(new)` |
/// | `Cas { expected, .. }` | `CasFailed` | current value is not `expected` | unchanged |
/// | `Delete` | `DeleteOk { existed }` | `existed` says whether a value is present | `None` |
///
/// Any other pairing of input and output is illegal. With an unknown output, each input takes
/// the effect it would have in the current state.
///
/// Before checking a key, [`simplify`](Model::simplify) replaces each value written by a
/// timed-out operation that no read returned and no compare-and-swap expected by one
/// placeholder, `"<never read>"` (made unique if a real value has that name). No operation can
/// tell such values apart, so the verdict is the same, but those timed-out writes become
/// interchangeable, which keeps a history with many timed-out creates from costing 2^n.
/// Explanations may show the placeholder in states.
///
/// # Example
///
/// ```
/// use ha_linearizability::{Input, Model, Output, RegisterModel, Value};
///
/// let model = RegisterModel;
/// let empty = model.initial_state();
/// assert_eq!(empty, None);
/// let after_create = model.step(&empty, &Input::create("a"), Some(&Output::CasOk));
/// assert_eq!(after_create, Some(Some(Value::from("a"))));
/// // A second create-only CAS cannot succeed once the key exists.
/// let state = after_create.unwrap();
/// assert_eq!(model.step(&state, &Input::create("b"), Some(&Output::CasOk)), None);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<Value>;
    type Input = Input;
    type Output = Output;

    fn initial_state(&self) -> Option<Value> {
        None
    }

    fn step(
        &self,
        state: &Option<Value>,
        input: &Input,
        output: Option<&Output>,
    ) -> Option<Option<Value>> {
        match (input, output) {
            (Input::Read, None) => Some(state.clone()),
            (Input::Read, Some(Output::ReadResult(seen))) => (seen == state).then(|| state.clone()),
            (Input::Write(value), None | Some(Output::WriteOk)) => Some(Some(value.clone())),
            (Input::Cas { expected, new }, None) => Some(if state == expected {
                Some(new.clone())
            } else {
                state.clone()
            }),
            (Input::Cas { expected, new }, Some(Output::CasOk)) => {
                (state == expected).then(|| Some(new.clone()))
            }
            (Input::Cas { expected, .. }, Some(Output::CasFailed)) => {
                (state != expected).then(|| state.clone())
            }
            (Input::Delete, None) => Some(None),
            (Input::Delete, Some(Output::DeleteOk { existed })) => {
                (*existed == state.is_some()).then_some(None)
            }
            // An answer of the wrong kind for the request (say `WriteOk` to a read) is never legal.
            (_, Some(_)) => None,
        }
    }

    fn simplify(&self, operations: &mut [Operation]) {
        let mut observed: HashSet<Value> = HashSet::new();
        let mut mentioned: HashSet<Value> = HashSet::new();
        for operation in operations.iter() {
            match &operation.input {
                Input::Write(value) => {
                    mentioned.insert(value.clone());
                }
                Input::Cas { expected, new } => {
                    mentioned.insert(new.clone());
                    if let Some(expected) = expected {
                        observed.insert(expected.clone());
                    }
                }
                Input::Read | Input::Delete => {}
            }
            if let Some(Output::ReadResult(Some(value))) = &operation.output {
                observed.insert(value.clone());
            }
        }
        mentioned.extend(observed.iter().cloned());
        let mut placeholder = String::from("<never read>");
        while mentioned.contains(&Value::from(placeholder.as_str())) {
            placeholder.push('\'');
        }
        let placeholder = Value::from(placeholder);
        // Operations with a known output keep their values, so that explanations show them;
        // renaming only some unobserved values is just as sound.
        for operation in operations
            .iter_mut()
            .filter(|operation| !operation.is_required())
        {
            if let Input::Write(value) | Input::Cas { new: value, .. } = &mut operation.input
                && !observed.contains(value)
            {
                *value = placeholder.clone();
            }
        }
    }

    fn effective_only_in(&self, input: &Input) -> Option<Option<Value>> {
        match input {
            Input::Cas { expected, .. } => Some(expected.clone()),
            Input::Read | Input::Write(_) | Input::Delete => None,
        }
    }

    fn effect_kind(&self, input: &Input, output: Option<&Output>) -> EffectKind {
        match (input, output) {
            (Input::Read, _)
            | (Input::Cas { .. }, Some(Output::CasFailed))
            | (Input::Delete, Some(Output::DeleteOk { existed: false })) => EffectKind::ReadOnly,
            (Input::Write(_), None | Some(Output::WriteOk))
            | (Input::Cas { .. }, Some(Output::CasOk))
            | (Input::Delete, None | Some(Output::DeleteOk { existed: true })) => {
                EffectKind::Overwrite
            }
            _ => EffectKind::DependsOnState,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplify_merges_only_the_values_nobody_observes() {
        let mut operations = vec![
            Operation::completed(1, "k", 0, 1, Input::write("read later"), Output::WriteOk),
            Operation::completed(1, "k", 2, 3, Input::write("<never read>"), Output::WriteOk),
            Operation::timed_out(2, "k", 4, Input::create("lost")),
            Operation::timed_out(3, "k", 5, Input::cas("compared", "also lost")),
            Operation::completed(4, "k", 6, 7, Input::Read, Output::found("read later")),
        ];
        RegisterModel.simplify(&mut operations);
        let placeholder = Value::from("<never read>'");
        assert_eq!(operations[0].input, Input::write("read later"));
        assert_eq!(operations[1].input, Input::write("<never read>"));
        assert_eq!(
            operations[2].input,
            Input::Cas {
                expected: None,
                new: placeholder.clone()
            }
        );
        assert_eq!(
            operations[3].input,
            Input::Cas {
                expected: Some(Value::from("compared")),
                new: placeholder
            }
        );
        assert_eq!(operations[4].output, Some(Output::found("read later")));
    }

    /// The declared effect kinds are promises the search relies on; check them on every state
    /// that matters (absent, the expected value, another value) and every answer.
    #[test]
    fn effect_kinds_hold_in_every_state() {
        let model = RegisterModel;
        let states = [None, Some(Value::from("a")), Some(Value::from("b"))];
        let inputs = [
            Input::Read,
            Input::write("a"),
            Input::write("c"),
            Input::Delete,
            Input::cas("a", "c"),
            Input::create("c"),
        ];
        let outputs = [
            None,
            Some(Output::not_found()),
            Some(Output::found("a")),
            Some(Output::WriteOk),
            Some(Output::CasOk),
            Some(Output::CasFailed),
            Some(Output::DeleteOk { existed: true }),
            Some(Output::DeleteOk { existed: false }),
        ];
        for input in &inputs {
            for output in &outputs {
                let outcomes: Vec<_> = states
                    .iter()
                    .map(|state| (state, model.step(state, input, output.as_ref())))
                    .collect();
                let kind = model.effect_kind(input, output.as_ref());
                let legal = outcomes
                    .iter()
                    .filter_map(|(state, next)| Some((*state, next.as_ref()?)));
                match kind {
                    EffectKind::ReadOnly => {
                        assert!(
                            legal.clone().all(|(state, next)| next == state),
                            "{input:?} {output:?}"
                        );
                    }
                    EffectKind::Overwrite => {
                        let mut results = legal.map(|(_, next)| next);
                        let first = results.next();
                        assert!(
                            results.all(|next| Some(next) == first),
                            "{input:?} {output:?}"
                        );
                        if output.is_none() {
                            assert!(outcomes.iter().all(|(_, next)| next.is_some()), "{input:?}");
                        }
                    }
                    EffectKind::DependsOnState => {}
                }
            }
            if let Some(only_in) = model.effective_only_in(input) {
                for state in states.iter().filter(|state| **state != only_in) {
                    let next = model.step(state, input, None);
                    assert!(
                        next.is_none() || next.as_ref() == Some(state),
                        "{input:?} in {state:?}"
                    );
                }
            }
        }
    }
}
