//! The lock table's KV store is linearizable: what the clients saw of keys, values and
//! versions could have come from one copy changing atomically.

use std::collections::BTreeMap;

use ha_linearizability::{Budget, CheckResult, Operation, check};
use ha_lock::LockCommand;

use crate::lock_sim::{
    AppliedLockCommand, AppliedResult, KvInput, KvOutput, KvRecord, KvRequest, VersionedKvModel,
};

/// Turn the clients' KV records into a history for [`VersionedKvModel`]. A write whose answer
/// was lost gets the index the log applied it at (its version, if it took effect); a lost
/// write the log never applied took no effect and is left out.
///
/// # Errors
/// A write answered as applied that is not in the log.
pub fn lock_kv_history(
    records: &[KvRecord],
    applied: &[AppliedLockCommand],
) -> Result<Vec<Operation<KvInput, KvOutput>>, String> {
    let mut applied_at: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for command in applied {
        let is_kv = matches!(
            command.command,
            LockCommand::Put { .. } | LockCommand::Delete { .. }
        );
        if is_kv && matches!(command.result, AppliedResult::Applied(_)) {
            applied_at
                .entry((command.session, command.sequence))
                .or_insert(command.index.0);
        }
    }
    let mut history = Vec::with_capacity(records.len());
    for record in records {
        let index = record
            .stamp
            .and_then(|stamp| applied_at.get(&stamp).copied());
        let input = match &record.request {
            KvRequest::Get => KvInput::Get,
            KvRequest::Put {
                value,
                expected_version,
            } => {
                let Some(index) = index else {
                    if record.output.is_some() {
                        return Err(format!(
                            "client {}'s put on {} was answered {:?} but is not in the log",
                            record.client, record.key, record.output
                        ));
                    }
                    continue;
                };
                KvInput::Put {
                    value: value.clone(),
                    expected_version: *expected_version,
                    version_if_applied: index,
                }
            }
            KvRequest::Delete { expected_version } => {
                if index.is_none() && record.output.is_none() {
                    continue;
                }
                KvInput::Delete {
                    expected_version: *expected_version,
                }
            }
        };
        let client = record.client as u64;
        let key = record.key.clone();
        history.push(match (&record.output, record.return_at) {
            (Some(output), Some(return_at)) => Operation::completed(
                client,
                key,
                record.call_at.0,
                return_at.0,
                input,
                output.clone(),
            ),
            _ => Operation::timed_out(client, key, record.call_at.0, input),
        });
    }
    Ok(history)
}

/// Check the clients' KV history for linearizability, per key. Returns the number of
/// operations checked.
///
/// # Errors
/// The key whose history is not linearizable, with the checker's explanation; a history the
/// checker could not finish within its budget; or a malformed history.
pub fn check_lock_kv_linearizable(
    records: &[KvRecord],
    applied: &[AppliedLockCommand],
) -> Result<usize, String> {
    let history = lock_kv_history(records, applied)?;
    match check(&history, &VersionedKvModel, &Budget::default()) {
        Ok(CheckResult::Linearizable) => Ok(history.len()),
        Ok(CheckResult::NotLinearizable { key, explanation }) => Err(format!(
            "the KV history of key {key} is not linearizable:\n{explanation}"
        )),
        Ok(other) => Err(format!("the KV check did not finish: {other:?}")),
        Err(error) => Err(format!("malformed KV history: {error}")),
    }
}
