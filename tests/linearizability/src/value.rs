//! The opaque value stored under a key.

use std::fmt;

/// A value stored under a key of the KV store: opaque bytes.
///
/// Tests usually build values from string literals; [`Debug`](fmt::Debug) shows UTF-8 values as
/// strings so that explanations of a failed check stay readable, and other bytes in hex.
///
/// # Example
///
/// ```
/// use ha_linearizability::Value;
///
/// let value = Value::from("blue");
/// assert_eq!(value.as_bytes(), b"blue");
/// assert_eq!(format!("{value:?}"), "\"blue\"");
/// assert_eq!(format!("{:?}", Value::from(vec![0xff, 0x00])), "0xff00");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Value(Vec<u8>);

impl Value {
    /// Wraps bytes as a value.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The bytes of the value.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Consumes the value and returns its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(text) => write!(formatter, "{text:?}"),
            Err(_) => {
                formatter.write_str("0x")?;
                for byte in &self.0 {
                    write!(formatter, "{byte:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

impl From<&[u8]> for Value {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}
