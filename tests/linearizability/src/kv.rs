//! What a client asks the KV store ([`Input`]) and what it is told ([`Output`]).

use crate::Value;

/// A request a client sent for one key of the KV store.
///
/// # Example
///
/// ```
/// use ha_linearizability::{Input, Value};
///
/// assert_eq!(Input::write("a"), Input::Write(Value::from("a")));
/// assert_eq!(
///     Input::cas("a", "b"),
///     Input::Cas { expected: Some(Value::from("a")), new: Value::from("b") }
/// );
/// assert_eq!(Input::create("a"), Input::Cas { expected: None, new: Value::from("a") });
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Input {
    /// Read the current value.
    Read,
    /// Set the value unconditionally.
    Write(Value),
    /// Set the value to `new` only if the current value is `expected`.
    Cas {
        /// The value the key must hold; `None` means the key must not exist (create-only).
        expected: Option<Value>,
        /// The value to store when the comparison holds.
        new: Value,
    },
    /// Remove the key.
    Delete,
}

impl Input {
    /// An unconditional write of `value`.
    pub fn write(value: impl Into<Value>) -> Self {
        Self::Write(value.into())
    }

    /// A compare-and-swap from `expected` to `new`.
    pub fn cas(expected: impl Into<Value>, new: impl Into<Value>) -> Self {
        Self::Cas {
            expected: Some(expected.into()),
            new: new.into(),
        }
    }

    /// A create-only compare-and-swap: stores `new` only if the key does not exist.
    pub fn create(new: impl Into<Value>) -> Self {
        Self::Cas {
            expected: None,
            new: new.into(),
        }
    }
}

/// The answer a client received for an [`Input`].
///
/// # Example
///
/// ```
/// use ha_linearizability::{Output, Value};
///
/// assert_eq!(Output::found("a"), Output::ReadResult(Some(Value::from("a"))));
/// assert_eq!(Output::not_found(), Output::ReadResult(None));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// The answer to [`Input::Read`]: the value, or `None` if the key did not exist.
    ReadResult(Option<Value>),
    /// The answer to [`Input::Write`].
    WriteOk,
    /// [`Input::Cas`] found the expected value and stored the new one.
    CasOk,
    /// [`Input::Cas`] did not find the expected value and changed nothing.
    CasFailed,
    /// The answer to [`Input::Delete`]; `existed` says whether there was a value to remove.
    DeleteOk {
        /// Whether the key existed just before the delete.
        existed: bool,
    },
}

impl Output {
    /// A read that returned `value`.
    pub fn found(value: impl Into<Value>) -> Self {
        Self::ReadResult(Some(value.into()))
    }

    /// A read that found no value.
    pub fn not_found() -> Self {
        Self::ReadResult(None)
    }
}
