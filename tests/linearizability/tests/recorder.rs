//! Histories recorded from real threads, against a store that is linearizable and one that is
//! not.

use std::collections::BTreeMap;
use std::sync::Mutex;

use ha_linearizability::{
    Budget, CheckResult, Input, Output, Recorder, RegisterModel, Value, check,
};

/// Applies `input` to a sequential map: the behaviour of a correct store.
fn apply(store: &mut BTreeMap<String, Value>, key: &str, input: &Input) -> Output {
    match input {
        Input::Read => Output::ReadResult(store.get(key).cloned()),
        Input::Write(value) => {
            store.insert(key.to_string(), value.clone());
            Output::WriteOk
        }
        Input::Cas { expected, new } => {
            if store.get(key) == expected.as_ref() {
                store.insert(key.to_string(), new.clone());
                Output::CasOk
            } else {
                Output::CasFailed
            }
        }
        Input::Delete => Output::DeleteOk {
            existed: store.remove(key).is_some(),
        },
    }
}

/// The `step`th request of `client`: a mix of every kind, over three keys.
fn request(client: u64, step: u64) -> (String, Input) {
    let key = format!("key{}", (client + step) % 3);
    let value = format!("{client}-{step}");
    let input = match (client * 7 + step) % 5 {
        0 | 1 => Input::Read,
        2 => Input::Write(Value::from(value)),
        3 => Input::Cas {
            expected: Some(Value::from(format!(
                "{}-{}",
                (client + 1) % 8,
                step.saturating_sub(1)
            ))),
            new: Value::from(value),
        },
        _ => Input::Delete,
    };
    (key, input)
}

#[test]
fn threads_sharing_a_locked_map_produce_a_linearizable_history() {
    let recorder = Recorder::new();
    let store = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for client in 0..8u64 {
            let recorder = recorder.clone();
            let store = &store;
            scope.spawn(move || {
                for step in 0..300u64 {
                    let (key, input) = request(client, step);
                    let token = recorder.invoke(client, key.as_str(), input.clone());
                    match step % 50 {
                        // The store refused the request before applying it.
                        13 => recorder.reject(token),
                        // The request was applied but the answer was lost.
                        7 => {
                            apply(&mut store.lock().expect("no panics"), &key, &input);
                            recorder.timeout(token);
                        }
                        // The request was lost before the store saw it.
                        29 => drop(token),
                        _ => {
                            let output = apply(&mut store.lock().expect("no panics"), &key, &input);
                            recorder.complete(token, output);
                        }
                    }
                }
            });
        }
    });
    let history = recorder.history();
    assert_eq!(history.len(), 8 * 300 - 8 * 6);
    let result =
        check(&history, &RegisterModel, &Budget::default()).expect("recorded times are consistent");
    assert_eq!(result, CheckResult::Linearizable);
}

#[test]
fn a_store_whose_reads_lag_one_write_behind_is_caught() {
    // Reads are served by a replica that applies each write only when the next one arrives.
    let recorder = Recorder::new();
    let mut primary = BTreeMap::new();
    let mut replica = BTreeMap::new();
    let mut pending: Option<(String, Input)> = None;
    for step in 0..20u64 {
        let (key, input) = if step % 2 == 0 {
            ("k".to_string(), Input::write(format!("v{step}")))
        } else {
            ("k".to_string(), Input::Read)
        };
        let token = recorder.invoke(1, key.as_str(), input.clone());
        let output = if input == Input::Read {
            apply(&mut replica, &key, &input)
        } else {
            if let Some((lagging_key, lagging_input)) =
                pending.replace((key.clone(), input.clone()))
            {
                apply(&mut replica, &lagging_key, &lagging_input);
            }
            apply(&mut primary, &key, &input)
        };
        recorder.complete(token, output);
    }
    match check(&recorder.history(), &RegisterModel, &Budget::default()) {
        Ok(CheckResult::NotLinearizable { key, explanation }) => {
            assert_eq!(key, "k");
            // The first read already misses the write just before it.
            assert_eq!(explanation.prefix, vec![0]);
            assert_eq!(explanation.unplaceable, 1);
        }
        other => panic!("a lagging replica went unnoticed: {other:?}"),
    }
}
