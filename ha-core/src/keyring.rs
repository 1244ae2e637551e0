//! The cluster key: authenticated encryption of every gossip packet and RPC frame.
//!
//! A sealed message is `fingerprint (4) | nonce (24) | ciphertext | tag (16)`, using
//! XChaCha20-Poly1305. The 24-byte nonce is drawn at random by the caller's RNG, which is safe
//! for random nonces at any message count we will reach (unlike the 12-byte nonce of plain
//! ChaCha20-Poly1305). The fingerprint names the key so that a keyring holding an old and a new
//! key opens both during a rotation without trial decryption.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Length of a cluster key in bytes.
pub const CLUSTER_KEY_BYTES: usize = 32;
/// Length of the random nonce in a sealed message.
pub const NONCE_BYTES: usize = 24;
/// Bytes a sealed message adds to its plaintext.
pub const SEAL_OVERHEAD_BYTES: usize = 4 + NONCE_BYTES + 16;
/// Most keys a keyring holds (the current key plus old ones still accepted).
pub const KEYRING_KEYS_MAX: usize = 8;

/// A 256-bit cluster key, written as 64 hex digits in config files.
///
/// Its `Debug` output shows only the fingerprint, so keys do not leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; CLUSTER_KEY_BYTES]);

impl ClusterKey {
    /// Wrap raw key bytes.
    pub fn from_bytes(bytes: [u8; CLUSTER_KEY_BYTES]) -> Self {
        Self(bytes)
    }

    /// Parse 64 hex digits.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `security.cluster_keys` when the text is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, ConfigError> {
        let bytes = hex::decode(text.trim()).map_err(|error| {
            ConfigError::new(
                "security.cluster_keys",
                format!("a key is not hex: {error}"),
                "give each key as 64 hex digits (for example from `openssl rand -hex 32`)",
            )
        })?;
        let bytes: [u8; CLUSTER_KEY_BYTES] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            ConfigError::new(
                "security.cluster_keys",
                format!("a key has {} bytes; keys have 32", bytes.len()),
                "give each key as 64 hex digits (for example from `openssl rand -hex 32`)",
            )
        })?;
        Ok(Self(bytes))
    }

    /// The key as 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short public name for the key (not secret: it is sent in every sealed message).
    pub fn fingerprint(&self) -> u32 {
        crc32c::crc32c(&self.0)
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "ClusterKey(fingerprint {:08x})",
            self.fingerprint()
        )
    }
}

impl Serialize for ClusterKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ClusterKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ClusterKey::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// Why a sealed message could not be opened. The message is dropped; nothing else changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Shorter than the seal overhead.
    #[error("sealed message is too short")]
    TooShort,
    /// Sealed with a key this keyring does not hold (wrong cluster key, or an old key removed).
    #[error("sealed with an unknown key (fingerprint {fingerprint:08x})")]
    UnknownKey {
        /// The fingerprint in the message.
        fingerprint: u32,
    },
    /// The tag does not verify: tampered, corrupted, or sealed for another context.
    #[error("authentication failed")]
    Forged,
}

/// The keys a node accepts. The first key seals; every key opens.
///
/// Rotation without downtime: add the new key second on every node, then move it first on
/// every node, then remove the old key.
///
/// ```
/// use ha_core::keyring::{ClusterKey, Keyring};
/// let old = ClusterKey::from_bytes([1; 32]);
/// let new = ClusterKey::from_bytes([2; 32]);
/// let sender = Keyring::new(vec![new.clone()]).unwrap();
/// let receiver = Keyring::new(vec![old, new]).unwrap();
/// let sealed = sender.seal([7; 24], b"context", b"hello");
/// assert_eq!(receiver.open(b"context", &sealed).unwrap(), b"hello");
/// assert!(receiver.open(b"other context", &sealed).is_err());
/// ```
pub struct Keyring {
    keys: Vec<(u32, XChaCha20Poly1305)>,
}

impl Keyring {
    /// A keyring whose first key seals.
    ///
    /// # Errors
    /// A [`ConfigError`] when there is no key, more than [`KEYRING_KEYS_MAX`], or two keys
    /// with the same fingerprint.
    pub fn new(keys: Vec<ClusterKey>) -> Result<Self, ConfigError> {
        if keys.is_empty() || keys.len() > KEYRING_KEYS_MAX {
            return Err(ConfigError::new(
                "security.cluster_keys",
                format!("{} keys given", keys.len()),
                format!("give 1 to {KEYRING_KEYS_MAX} keys, the current one first"),
            ));
        }
        let mut ring = Vec::with_capacity(keys.len());
        for key in &keys {
            let fingerprint = key.fingerprint();
            if ring.iter().any(|(known, _)| *known == fingerprint) {
                return Err(ConfigError::new(
                    "security.cluster_keys",
                    "the same key is listed twice",
                    "list each key once",
                ));
            }
            ring.push((fingerprint, XChaCha20Poly1305::new(&key.0.into())));
        }
        Ok(Self { keys: ring })
    }

    /// Seal `plaintext` with the first key. `associated` is authenticated but not encrypted
    /// (headers, the cluster name); `nonce` must be fresh random bytes for every message.
    pub fn seal(&self, nonce: [u8; NONCE_BYTES], associated: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let (fingerprint, cipher) = &self.keys[0];
        let payload = Payload {
            msg: plaintext,
            aad: associated,
        };
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .unwrap_or_default();
        let mut sealed = Vec::with_capacity(SEAL_OVERHEAD_BYTES + plaintext.len());
        sealed.extend_from_slice(&fingerprint.to_be_bytes());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Open a message made by [`Keyring::seal`] with the same `associated` bytes.
    ///
    /// # Errors
    /// [`OpenError`] when the message is short, from an unknown key, or does not verify.
    pub fn open(&self, associated: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD_BYTES {
            return Err(OpenError::TooShort);
        }
        let (fingerprint_bytes, rest) = sealed.split_at(4);
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        let mut fingerprint = [0u8; 4];
        fingerprint.copy_from_slice(fingerprint_bytes);
        let fingerprint = u32::from_be_bytes(fingerprint);
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(known, _)| *known == fingerprint)
            .ok_or(OpenError::UnknownKey { fingerprint })?;
        let payload = Payload {
            msg: ciphertext,
            aad: associated,
        };
        cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| OpenError::Forged)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprints: Vec<String> = self
            .keys
            .iter()
            .map(|(fingerprint, _)| format!("{fingerprint:08x}"))
            .collect();
        formatter
            .debug_struct("Keyring")
            .field("fingerprints", &fingerprints)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let ring = Keyring::new(vec![ClusterKey::from_bytes([1; 32])]).unwrap();
        let other = Keyring::new(vec![ClusterKey::from_bytes([9; 32])]).unwrap();
        let mut sealed = ring.seal([3; 24], b"aad", b"payload");
        assert!(matches!(
            other.open(b"aad", &sealed),
            Err(OpenError::UnknownKey { .. })
        ));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(ring.open(b"aad", &sealed), Err(OpenError::Forged));
        assert_eq!(ring.open(b"aad", &sealed[..10]), Err(OpenError::TooShort));
    }

    #[test]
    fn keys_parse_from_hex_and_never_print() {
        let key = ClusterKey::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(key.to_hex(), "ab".repeat(32));
        assert!(!format!("{key:?}").contains("abab"));
        assert!(ClusterKey::from_hex("abcd").is_err());
        assert!(ClusterKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn keyring_limits() {
        assert!(Keyring::new(vec![]).is_err());
        let key = ClusterKey::from_bytes([1; 32]);
        assert!(Keyring::new(vec![key.clone(), key]).is_err());
    }
}
