//! The linearizability model of one key of the lock table's KV store: a value with a version,
//! compare-and-swap on the version.

use ha_linearizability::{EffectKind, Model};

/// A request on one key, as the checker sees it.
///
/// Versions are log indexes, so the version a write would get is not a function of the state:
/// `version_if_applied` carries the index at which the log applied this write (learned from
/// the replay of the log for writes whose answer was lost). A write the log never applied is
/// left out of the history: it took no effect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the value and version.
    Get,
    /// Set the value; with `expected_version`, only if the key's version is that (0: absent).
    Put {
        /// The value (unique per write in the simulation).
        value: Vec<u8>,
        /// Compare-and-swap on the version.
        expected_version: Option<u64>,
        /// The index the log applied this write at: its version if it took effect.
        version_if_applied: u64,
    },
    /// Remove the key; with `expected_version`, only if the key's version is that.
    Delete {
        /// Compare-and-swap on the version.
        expected_version: Option<u64>,
    },
}

/// What the client was told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    /// A read: the value and its version, or nothing.
    Value(Option<(Vec<u8>, u64)>),
    /// A put took effect with this version.
    Put {
        /// The new version.
        version: u64,
    },
    /// A delete took effect.
    Deleted {
        /// Whether the key existed.
        existed: bool,
    },
    /// A compare-and-swap found another version and changed nothing.
    Mismatch {
        /// The key's version then (0: absent).
        current: u64,
    },
}

/// Each key as a register holding `(value, version)` or nothing.
///
/// | input | output | legal when | next state |
/// |---|---|---|---|
/// | `Get` | `Value(seen)` | `seen` is the state | unchanged |
/// | `Put` | `Put { version }` | the CAS holds, `version` is `version_if_applied` and above the current version | `(value, version)` |
/// | `Put`/`Delete` | `Mismatch { current }` | the CAS fails and `current` is the current version | unchanged |
/// | `Delete` | `Deleted { existed }` | the CAS holds and `existed` says whether a value is present | nothing |
///
/// ```
/// use ha_linearizability::Model;
/// use ha_tests::lock_sim::{KvInput, KvOutput, VersionedKvModel};
/// let model = VersionedKvModel;
/// let put = KvInput::Put { value: b"a".to_vec(), expected_version: Some(0), version_if_applied: 7 };
/// let state = model.step(&None, &put, Some(&KvOutput::Put { version: 7 })).unwrap();
/// assert_eq!(state, Some((b"a".to_vec(), 7)));
/// // A second create-only put must fail, and say the version is 7.
/// let again = KvInput::Put { value: b"b".to_vec(), expected_version: Some(0), version_if_applied: 9 };
/// assert!(model.step(&state, &again, Some(&KvOutput::Mismatch { current: 7 })).is_some());
/// assert!(model.step(&state, &again, Some(&KvOutput::Put { version: 9 })).is_none());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionedKvModel;

fn version_of(state: &Option<(Vec<u8>, u64)>) -> u64 {
    state.as_ref().map_or(0, |(_, version)| *version)
}

impl Model for VersionedKvModel {
    type State = Option<(Vec<u8>, u64)>;
    type Input = KvInput;
    type Output = KvOutput;

    fn initial_state(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Self::State,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Self::State> {
        let current = version_of(state);
        match input {
            KvInput::Get => match output {
                None => Some(state.clone()),
                Some(KvOutput::Value(seen)) => (seen == state).then(|| state.clone()),
                Some(_) => None,
            },
            KvInput::Put {
                value,
                expected_version,
                version_if_applied,
            } => {
                let matches = expected_version.is_none_or(|expected| expected == current);
                let written = Some((value.clone(), *version_if_applied));
                match output {
                    None if matches => Some(written),
                    None => Some(state.clone()),
                    Some(KvOutput::Put { version }) => {
                        (matches && *version == *version_if_applied && *version > current)
                            .then_some(written)
                    }
                    Some(KvOutput::Mismatch { current: seen }) => {
                        (!matches && *seen == current).then(|| state.clone())
                    }
                    Some(_) => None,
                }
            }
            KvInput::Delete { expected_version } => {
                let matches = expected_version.is_none_or(|expected| expected == current);
                match output {
                    None if matches => Some(None),
                    None => Some(state.clone()),
                    Some(KvOutput::Deleted { existed }) => {
                        (matches && *existed == state.is_some()).then_some(None)
                    }
                    Some(KvOutput::Mismatch { current: seen }) => {
                        (!matches && *seen == current).then(|| state.clone())
                    }
                    Some(_) => None,
                }
            }
        }
    }

    fn effect_kind(&self, input: &KvInput, output: Option<&KvOutput>) -> EffectKind {
        match (input, output) {
            (KvInput::Get, _) | (_, Some(KvOutput::Mismatch { .. })) => EffectKind::ReadOnly,
            (
                KvInput::Put {
                    expected_version: None,
                    ..
                }
                | KvInput::Delete {
                    expected_version: None,
                },
                _,
            ) => EffectKind::Overwrite,
            (KvInput::Put { .. }, Some(KvOutput::Put { .. }))
            | (KvInput::Delete { .. }, Some(KvOutput::Deleted { .. })) => EffectKind::Overwrite,
            _ => EffectKind::DependsOnState,
        }
    }
}
