//! A key/value register with compare-and-swap: the state machine the simulations replicate,
//! chosen to match the linearizability checker's model.

use std::collections::BTreeMap;

use ha_core::{LogIndex, StateMachine, StateMachineError};
use serde::{Deserialize, Serialize};

/// A write to the register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterCommand {
    /// Set `key` to `value`.
    Write {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Set `key` to `new` if it holds `expected` (`None`: if it does not exist).
    Cas {
        /// The key.
        key: String,
        /// The value it must hold.
        expected: Option<String>,
        /// The new value.
        new: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
}

impl RegisterCommand {
    /// The key it touches.
    pub fn key(&self) -> &str {
        match self {
            RegisterCommand::Write { key, .. }
            | RegisterCommand::Cas { key, .. }
            | RegisterCommand::Delete { key } => key,
        }
    }
}

/// What a write returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterResponse {
    /// The write happened.
    WriteOk,
    /// The CAS matched and stored the new value.
    CasOk,
    /// The CAS did not match; nothing changed.
    CasFailed,
    /// The delete happened; whether there was a value.
    DeleteOk {
        /// Whether the key existed.
        existed: bool,
    },
}

/// The register state, plus a digest of every command applied at each index so the
/// simulation can check that all replicas applied the same command at the same index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterMachine {
    values: BTreeMap<String, String>,
    digests: BTreeMap<u64, u64>,
}

impl RegisterMachine {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.values.get(key)
    }

    /// Index -> digest of the command applied there.
    pub fn digests(&self) -> &BTreeMap<u64, u64> {
        &self.digests
    }
}

/// The digest of an encoded command: FNV-1a, as the simulator's trace uses.
pub fn digest(bytes: &[u8]) -> u64 {
    crate::sim::hash_bytes(bytes)
}

impl StateMachine for RegisterMachine {
    type Command = RegisterCommand;
    type Response = RegisterResponse;
    type Query = String;
    type QueryResponse = Option<String>;

    fn apply(&mut self, index: LogIndex, command: RegisterCommand) -> RegisterResponse {
        let bytes = postcard::to_allocvec(&command).unwrap_or_default();
        self.digests.insert(index.0, digest(&bytes));
        match command {
            RegisterCommand::Write { key, value } => {
                self.values.insert(key, value);
                RegisterResponse::WriteOk
            }
            RegisterCommand::Cas { key, expected, new } => {
                if self.values.get(&key) == expected.as_ref() {
                    self.values.insert(key, new);
                    RegisterResponse::CasOk
                } else {
                    RegisterResponse::CasFailed
                }
            }
            RegisterCommand::Delete { key } => RegisterResponse::DeleteOk {
                existed: self.values.remove(&key).is_some(),
            },
        }
    }

    fn query(&self, key: &String) -> Option<String> {
        self.values.get(key).cloned()
    }

    fn snapshot(&self) -> Result<Vec<u8>, StateMachineError> {
        postcard::to_allocvec(self)
            .map_err(|error| StateMachineError::SnapshotFailed(error.to_string()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), StateMachineError> {
        *self = postcard::from_bytes(snapshot)
            .map_err(|error| StateMachineError::Corrupt(error.to_string()))?;
        Ok(())
    }
}
