//! How long checking takes: 5 clients over 10 keys, the size docs/ARCHITECTURE.md
//! ("Verification") sets.
//!
//! `cargo test -p ha-linearizability --test performance -- --ignored --nocapture` prints the
//! times for 1,000, 10,000 and 50,000 operations, with and without timeouts, and for all of
//! them on one key.

mod support;

use std::time::{Duration, Instant};

use ha_linearizability::{Budget, CheckResult, RegisterModel, check};
use support::{Workload, linearizable_history};

const CLIENTS: u64 = 5;

/// Generates a linearizable history of `operations` operations and checks it within
/// `steps_max` steps; returns how long the check took.
fn time_check(operations: usize, keys: u64, timeout_percent: u64, steps_max: u64) -> Duration {
    let workload = Workload {
        clients: CLIENTS,
        operations_per_client: operations / CLIENTS as usize,
        keys,
        timeout_percent,
        value_choices: None,
        seed: 42,
    };
    let history = linearizable_history(&workload);
    let started = Instant::now();
    let result = check(&history, &RegisterModel, &Budget::steps(steps_max)).expect("well formed");
    let elapsed = started.elapsed();
    assert_eq!(result, CheckResult::Linearizable, "{workload:?}");
    println!(
        "{CLIENTS} clients x {} operations ({} in all) over {keys} keys, {timeout_percent}% timed out: {elapsed:?}",
        workload.operations_per_client,
        history.len()
    );
    elapsed
}

/// The size docs/ARCHITECTURE.md ("Verification") sets, on every `cargo test`. The limit is in steps, not seconds, so
/// that a slow machine cannot make it fail: it needs under 100,000, and a regression that
/// brings back backtracking over timed-out operations needs millions.
#[test]
fn five_clients_ten_thousand_operations_each_over_ten_keys() {
    time_check(50_000, 10, 10, 1_000_000);
}

#[test]
#[ignore = "prints timings; run with --ignored --nocapture"]
fn checking_time_by_history_size() {
    for timeout_percent in [0, 1, 10] {
        for operations in [1_000, 10_000, 50_000] {
            time_check(operations, 10, timeout_percent, Budget::STEPS_MAX_DEFAULT);
        }
    }
    for timeout_percent in [0, 10] {
        time_check(50_000, 1, timeout_percent, Budget::STEPS_MAX_DEFAULT);
    }
}
