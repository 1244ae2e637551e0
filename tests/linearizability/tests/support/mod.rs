//! Shared by the integration tests: histories generated from a linearizable execution, and
//! mutations of them that are provably not linearizable.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ha_linearizability::{Input, Operation, Output, Value};

/// What to simulate.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Clients issuing operations concurrently, one at a time each.
    pub clients: u64,
    /// Operations each client issues.
    pub operations_per_client: usize,
    /// Keys the operations are spread over.
    pub keys: u64,
    /// Chance in percent that an operation times out; half of those take effect anyway, at any
    /// later time.
    pub timeout_percent: u64,
    /// `None`: every written value is unique, which lets [`impossible_read_results`] prove a
    /// mutation wrong. `Some(n)`: values come from a set of n, which makes histories more
    /// ambiguous and the search harder.
    pub value_choices: Option<u64>,
    /// Seeds every random choice.
    pub seed: u64,
}

/// A small deterministic generator (SplitMix64); the tests must not depend on global state.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }

    /// A number in `0..bound`; `bound` must not be zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn percent(&mut self, chance_percent: u64) -> bool {
        self.below(100) < chance_percent
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Cas,
    Delete,
}

/// One simulated operation before its input and output are known.
struct Planned {
    client: u64,
    key: u64,
    kind: Kind,
    call_at: u64,
    /// When the answer came, or when the client gave up waiting.
    return_at: u64,
    timed_out: bool,
    /// When it took effect on the sequential store; `None` if it never did.
    effect_at: Option<u64>,
}

/// Simulates `workload.clients` clients against one sequential map. Each operation takes
/// effect at a random point inside its [call, return] interval, so the history is linearizable
/// by construction; a timed-out operation takes effect at some time after its call, or never.
pub fn linearizable_history(workload: &Workload) -> Vec<Operation> {
    let mut random = Random::new(workload.seed);
    let mut planned = Vec::new();
    for client in 0..workload.clients {
        let mut now = random.below(5);
        for _ in 0..workload.operations_per_client {
            let call_at = now + 1 + random.below(4);
            let duration = 1 + random.below(12);
            let return_at = call_at + duration;
            let timed_out = random.percent(workload.timeout_percent);
            let effect_at = if !timed_out {
                Some(call_at + random.below(duration + 1))
            } else if random.percent(50) {
                // A request that timed out can still be applied much later.
                Some(call_at + random.below(duration * 10 + 1))
            } else {
                None
            };
            let kind = match random.below(100) {
                0..40 => Kind::Read,
                40..65 => Kind::Write,
                65..90 => Kind::Cas,
                _ => Kind::Delete,
            };
            planned.push(Planned {
                client,
                key: random.below(workload.keys),
                kind,
                call_at,
                return_at,
                timed_out,
                effect_at,
            });
            now = return_at;
        }
    }

    let mut order: Vec<usize> = (0..planned.len())
        .filter(|&index| planned[index].effect_at.is_some())
        .collect();
    // Ties between effect times can only be between overlapping operations, so any order
    // among them is a valid linearization.
    order.sort_by_key(|&index| (planned[index].effect_at, planned[index].client));
    let mut values_written = 0u64;
    let mut fresh_value = |random: &mut Random| -> Value {
        values_written += 1;
        match workload.value_choices {
            None => Value::from(format!("v{values_written}")),
            Some(choices) => Value::from(format!("v{}", random.below(choices))),
        }
    };
    let mut store: BTreeMap<u64, Value> = BTreeMap::new();
    let mut inputs: Vec<Option<Input>> = vec![None; planned.len()];
    let mut outputs: Vec<Option<Output>> = vec![None; planned.len()];
    for index in order {
        let operation = &planned[index];
        let current = store.get(&operation.key).cloned();
        let (input, output) = match operation.kind {
            Kind::Read => (Input::Read, Output::ReadResult(current)),
            Kind::Write => {
                let value = fresh_value(&mut random);
                store.insert(operation.key, value.clone());
                (Input::Write(value), Output::WriteOk)
            }
            Kind::Cas => {
                // The simulated client guesses right most of the time, so that both outcomes
                // are common.
                let expected = if random.percent(60) {
                    current.clone()
                } else if random.percent(50) {
                    None
                } else {
                    Some(fresh_value(&mut random))
                };
                let new = fresh_value(&mut random);
                if expected == current {
                    store.insert(operation.key, new.clone());
                    (Input::Cas { expected, new }, Output::CasOk)
                } else {
                    (Input::Cas { expected, new }, Output::CasFailed)
                }
            }
            Kind::Delete => {
                let existed = store.remove(&operation.key).is_some();
                (Input::Delete, Output::DeleteOk { existed })
            }
        };
        inputs[index] = Some(input);
        outputs[index] = Some(output);
    }

    planned
        .iter()
        .enumerate()
        .map(|(index, operation)| {
            let input = inputs[index]
                .take()
                .unwrap_or_else(|| match operation.kind {
                    // Never applied: any input will do.
                    Kind::Read => Input::Read,
                    Kind::Write => Input::Write(fresh_value(&mut random)),
                    Kind::Cas => Input::Cas {
                        expected: None,
                        new: fresh_value(&mut random),
                    },
                    Kind::Delete => Input::Delete,
                });
            let key = format!("key{}", operation.key);
            if operation.timed_out {
                Operation::timed_out(operation.client, key, operation.call_at, input)
            } else {
                let output = outputs[index]
                    .take()
                    .expect("a completed operation took effect");
                Operation::completed(
                    operation.client,
                    key,
                    operation.call_at,
                    operation.return_at,
                    input,
                    output,
                )
            }
        })
        .collect()
}

/// The results that the read at `read` provably cannot have returned in any linearization,
/// given that every written value in `history` is unique. Empty if `read` is not a completed
/// read.
///
/// `Some(v)` is impossible if the one operation that could have written `v` is a failed CAS,
/// started after the read returned, or returned before an unconditional overwrite (a write, a
/// successful CAS, a delete) that itself returned before the read started. `None` is
/// impossible if nothing on the key is a delete and a write or successful CAS returned before
/// the read started.
pub fn impossible_read_results(history: &[Operation], read: usize) -> Vec<Option<Value>> {
    let target = &history[read];
    let (Input::Read, Some(Output::ReadResult(actual)), Some(read_returned)) =
        (&target.input, &target.output, target.return_at)
    else {
        return Vec::new();
    };
    let same_key: Vec<&Operation> = history
        .iter()
        .filter(|operation| operation.key == target.key)
        .collect();
    let overwrites_before_read: Vec<&Operation> = same_key
        .iter()
        .copied()
        .filter(|operation| {
            matches!(
                (&operation.input, &operation.output),
                (Input::Write(_), Some(Output::WriteOk))
                    | (Input::Cas { .. }, Some(Output::CasOk))
                    | (Input::Delete, Some(Output::DeleteOk { .. }))
            ) && operation
                .return_at
                .is_some_and(|returned| returned < target.call_at)
        })
        .collect();

    let mut impossible = Vec::new();
    for producer in &same_key {
        let (value, failed) = match (&producer.input, &producer.output) {
            (Input::Write(value), _) => (value, false),
            (Input::Cas { new, .. }, output) => (new, output == &Some(Output::CasFailed)),
            _ => continue,
        };
        if actual.as_ref() == Some(value) {
            continue;
        }
        let overwritten = producer.return_at.is_some_and(|produced| {
            overwrites_before_read
                .iter()
                .any(|overwrite| produced < overwrite.call_at)
        });
        if failed || producer.call_at > read_returned || overwritten {
            impossible.push(Some(value.clone()));
        }
    }
    let deletes = same_key
        .iter()
        .any(|operation| operation.input == Input::Delete);
    let created_before_read = overwrites_before_read
        .iter()
        .any(|operation| operation.input != Input::Delete);
    if actual.is_some() && !deletes && created_before_read {
        impossible.push(None);
    }
    impossible
}
