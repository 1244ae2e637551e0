//! Bounded postcard encoding for everything that crosses a process boundary.
//!
//! Every decoder takes a size limit: input larger than the limit is refused before it is
//! parsed, so a peer cannot make a node allocate without bound. Within the limit, decoded
//! values can still be larger in memory than on the wire (an empty command is 4 bytes on the
//! wire and ~88 in memory; serde preallocates up to 1 MiB for a claimed sequence), so message
//! types with many small elements bound their counts too (the replication messages refuse
//! appends over 65,536 entries or 32 MiB decoded, and membership sets over 65,536 ids).
//! Trailing bytes are an error, so a truncated or concatenated message is never half-accepted.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CodecError;

/// The largest gossip packet, in bytes: one UDP datagram that fits a typical 1,500-byte MTU.
pub const GOSSIP_PACKET_BYTES_MAX: usize = 1400;

/// The largest RPC frame between nodes, in bytes (append batches, snapshot chunks).
pub const RPC_FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Encode `value`, refusing results larger than `limit_bytes`.
///
/// # Errors
/// [`CodecError::TooLarge`] when the encoding exceeds the limit; [`CodecError::Malformed`] when
/// serde refuses the value.
///
/// ```
/// use ha_core::codec::{decode, encode};
/// let bytes = encode("a message", &("hello", 7u32), 64).unwrap();
/// let (text, number): (String, u32) = decode("a message", &bytes, 64).unwrap();
/// assert_eq!((text.as_str(), number), ("hello", 7));
/// assert!(encode("a message", &vec![0u8; 100], 64).is_err());
/// ```
pub fn encode<T: Serialize + ?Sized>(
    what: &'static str,
    value: &T,
    limit_bytes: usize,
) -> Result<Vec<u8>, CodecError> {
    let bytes = postcard::to_allocvec(value).map_err(|error| CodecError::Malformed {
        what,
        reason: error.to_string(),
    })?;
    if bytes.len() > limit_bytes {
        return Err(CodecError::TooLarge {
            what,
            size_bytes: bytes.len(),
            limit_bytes,
        });
    }
    Ok(bytes)
}

/// Decode exactly one `T` from `bytes`, refusing input larger than `limit_bytes`.
///
/// # Errors
/// [`CodecError::TooLarge`], [`CodecError::Malformed`] or [`CodecError::TrailingBytes`]; the
/// input is never partly accepted.
pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit_bytes: usize,
) -> Result<T, CodecError> {
    if bytes.len() > limit_bytes {
        return Err(CodecError::TooLarge {
            what,
            size_bytes: bytes.len(),
            limit_bytes,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|error| CodecError::Malformed {
            what,
            reason: error.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            what,
            extra_bytes: rest.len(),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode("test", &5u32, 16).unwrap();
        bytes.push(0);
        assert_eq!(
            decode::<u32>("test", &bytes, 16),
            Err(CodecError::TrailingBytes {
                what: "test",
                extra_bytes: 1
            })
        );
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let bytes = vec![0u8; 65];
        assert!(matches!(
            decode::<Vec<u8>>("test", &bytes, 64),
            Err(CodecError::TooLarge { size_bytes: 65, .. })
        ));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        // A varint claiming 2^62 elements followed by nothing: must fail, not allocate.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f];
        assert!(decode::<Vec<u64>>("test", &bytes, 64).is_err());
        assert!(decode::<Vec<u8>>("test", &bytes, 64).is_err());
        assert!(decode::<String>("test", &bytes, 64).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<(u64, String, Vec<u32>, Option<bool>)>("test", &bytes, 256);
        }

        #[test]
        fn round_trip(value in any::<(u64, String, Vec<u32>)>()) {
            let bytes = encode("test", &value, 1 << 20).unwrap();
            prop_assert_eq!(decode::<(u64, String, Vec<u32>)>("test", &bytes, 1 << 20).unwrap(), value);
        }
    }
}
