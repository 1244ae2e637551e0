//! Frames on a connection: a length prefix, then a body that is plain or sealed.
//!
//! ```text
//! frame       = length (u32, big-endian) | body            length = body bytes <= limit
//! plain body  = kind (u8) | payload
//! sealed body = Keyring::seal(random nonce, associated, kind (u8) | payload)
//! associated  = "ha-replicate/frame/1" | len | cluster name | len | sender node id
//!               | receiver's connection nonce (16) | frame sequence number (u64, big-endian)
//! kind        = 0 message (payload = postcard of the message) | 1 keepalive (empty payload)
//! ```
//!
//! The length is checked against the limit before anything is allocated for the body. The
//! associated data binds a sealed frame to its cluster, to the node that sent it, to this one
//! connection (the receiver picked the nonce at random during the handshake) and to its place
//! in the stream: a frame cannot be replayed into another cluster or connection, attributed to
//! another sender, dropped, duplicated or reordered without failing to open.
//!
//! Everything here is synchronous and does no IO, so it can be tested (and fuzzed) on bytes.

use std::sync::Arc;

use ha_core::CodecError;
use ha_core::NodeId;
use ha_core::keyring::{Keyring, NONCE_BYTES, OpenError, SEAL_OVERHEAD_BYTES};

use super::counts::RejectCause;
use super::handshake::CONNECTION_NONCE_BYTES;

/// Bytes of the length prefix in front of every frame body.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// The context string at the start of a data frame's associated data.
const FRAME_CONTEXT: &[u8] = b"ha-replicate/frame/1";

/// Bytes a frame adds around its payload at most: length prefix, kind, and the seal.
pub const FRAME_OVERHEAD_BYTES: usize = LENGTH_PREFIX_BYTES + 1 + SEAL_OVERHEAD_BYTES;

/// The body length announced by a length prefix, if it is within `limit_bytes`.
///
/// # Errors
/// [`RejectCause::Oversized`] when the prefix announces more than `limit_bytes`; the caller
/// must close the connection without reading (or allocating for) the body.
pub fn body_length(
    prefix: [u8; LENGTH_PREFIX_BYTES],
    limit_bytes: usize,
) -> Result<usize, RejectCause> {
    let length = u32::from_be_bytes(prefix);
    match usize::try_from(length) {
        Ok(length) if length <= limit_bytes => Ok(length),
        _ => Err(RejectCause::Oversized),
    }
}

/// A frame body and the bytes after its frame, as [`split_frame`] returns them.
pub type BodyAndRest<'a> = (&'a [u8], &'a [u8]);

/// Split the first complete frame off `buffer`: `Ok(Some((body, rest)))`, or `Ok(None)` when
/// more bytes are needed.
///
/// ```
/// use ha_replicate::transport::frame::split_frame;
/// let bytes = [0, 0, 0, 2, 7, 8, 0, 0];
/// let (body, rest) = split_frame(&bytes, 16).unwrap().unwrap();
/// assert_eq!((body, rest), (&[7, 8][..], &[0, 0][..]));
/// assert_eq!(split_frame(rest, 16), Ok(None));
/// assert!(split_frame(&[0xff, 0xff, 0xff, 0xff], 16).is_err());
/// ```
///
/// # Errors
/// [`RejectCause::Oversized`] as soon as a prefix announces more than `limit_bytes`.
pub fn split_frame(
    buffer: &[u8],
    limit_bytes: usize,
) -> Result<Option<BodyAndRest<'_>>, RejectCause> {
    let Some((prefix, rest)) = buffer.split_first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let length = body_length(*prefix, limit_bytes)?;
    if rest.len() < length {
        return Ok(None);
    }
    Ok(Some(rest.split_at(length)))
}

/// Append a length prefix and `body` to `out`.
///
/// # Errors
/// [`CodecError::TooLarge`] when `body` is longer than `limit_bytes` (or than a `u32` can
/// say); `out` is unchanged.
pub fn append_frame(out: &mut Vec<u8>, body: &[u8], limit_bytes: usize) -> Result<(), CodecError> {
    append_frame_of(out, &[], body, limit_bytes)
}

/// Append one frame whose body is `head` followed by `rest`, without building that body (a
/// plain frame's kind byte and payload go straight into `out`: one copy of the payload).
fn append_frame_of(
    out: &mut Vec<u8>,
    head: &[u8],
    rest: &[u8],
    limit_bytes: usize,
) -> Result<(), CodecError> {
    let body_bytes = head.len() + rest.len();
    let length = u32::try_from(body_bytes)
        .ok()
        .filter(|_| body_bytes <= limit_bytes)
        .ok_or(CodecError::TooLarge {
            what: "frame",
            size_bytes: body_bytes,
            limit_bytes,
        })?;
    out.reserve(LENGTH_PREFIX_BYTES + body_bytes);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(rest);
    Ok(())
}

/// A plain frame body's kind and payload, checked: a known kind, and a keepalive is empty.
fn split_plain(plain: &[u8]) -> Result<(FrameKind, &[u8]), RejectCause> {
    let (&kind, payload) = plain.split_first().ok_or(RejectCause::Malformed)?;
    let kind = FrameKind::from_byte(kind).ok_or(RejectCause::Malformed)?;
    if kind == FrameKind::Keepalive && !payload.is_empty() {
        return Err(RejectCause::Malformed);
    }
    Ok((kind, payload))
}

/// What a data frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// One message of the protocol above (postcard-encoded). Only the side that opened the
    /// connection sends these.
    Message,
    /// Nothing: proves the connection is alive. Either side sends one after writing nothing
    /// for the keepalive interval.
    Keepalive,
}

impl FrameKind {
    fn to_byte(self) -> u8 {
        match self {
            FrameKind::Message => 0,
            FrameKind::Keepalive => 1,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(FrameKind::Message),
            1 => Some(FrameKind::Keepalive),
            _ => None,
        }
    }
}

/// Seals (or frames in the clear) and opens the data frames of one direction of one
/// connection, after the handshake.
///
/// Each connection has two: the sender's, which [`encode`](Self::encode)s, and the
/// receiver's, built with the same arguments, which [`decode`](Self::decode)s. Both count
/// frames, so they must see the same frames in the same order.
///
/// ```
/// use std::sync::Arc;
/// use ha_core::keyring::{ClusterKey, Keyring};
/// use ha_replicate::transport::frame::{split_frame, FrameCodec, FrameKind};
///
/// let keyring = Arc::new(Keyring::new(vec![ClusterKey::from_bytes([3; 32])]).unwrap());
/// let sender = "n1".parse().unwrap();
/// let receiver_nonce = [9; 16];
/// let mut outgoing = FrameCodec::new("c", &sender, receiver_nonce, Some(keyring.clone()), 1 << 20);
/// let mut incoming = FrameCodec::new("c", &sender, receiver_nonce, Some(keyring), 1 << 20);
/// let mut wire = Vec::new();
/// outgoing.encode(FrameKind::Message, b"hello", [1; 24], &mut wire).unwrap();
/// let (body, _) = split_frame(&wire, 1 << 20).unwrap().unwrap();
/// assert_eq!(incoming.decode(body).unwrap(), (FrameKind::Message, b"hello".to_vec()));
/// // Replaying the same frame fails: the sequence number moved on.
/// assert!(incoming.decode(body).is_err());
/// ```
pub struct FrameCodec {
    keyring: Option<Arc<Keyring>>,
    /// The associated data without the sequence number, built once per connection.
    associated_prefix: Vec<u8>,
    sequence: u64,
    frame_bytes_max: usize,
}

impl FrameCodec {
    /// The codec for frames sent by `sender` on a connection where the receiving side chose
    /// `receiver_nonce`, in cluster `cluster_name`, sealed when `keyring` is given. Frame
    /// bodies are at most `frame_bytes_max` bytes.
    pub fn new(
        cluster_name: &str,
        sender: &NodeId,
        receiver_nonce: [u8; CONNECTION_NONCE_BYTES],
        keyring: Option<Arc<Keyring>>,
        frame_bytes_max: usize,
    ) -> Self {
        let mut associated_prefix = Vec::with_capacity(
            FRAME_CONTEXT.len() + 2 + cluster_name.len() + sender.as_str().len() + 16 + 8,
        );
        associated_prefix.extend_from_slice(FRAME_CONTEXT);
        push_short_text(&mut associated_prefix, cluster_name);
        push_short_text(&mut associated_prefix, sender.as_str());
        associated_prefix.extend_from_slice(&receiver_nonce);
        Self {
            keyring,
            associated_prefix,
            sequence: 0,
            frame_bytes_max,
        }
    }

    /// The largest payload a frame can carry.
    pub fn payload_bytes_max(&self) -> usize {
        let overhead = 1 + if self.keyring.is_some() {
            SEAL_OVERHEAD_BYTES
        } else {
            0
        };
        self.frame_bytes_max.saturating_sub(overhead)
    }

    /// Append one frame (length prefix and body) carrying `payload` to `out`. `nonce` must be
    /// fresh random bytes (used only when sealing).
    ///
    /// # Errors
    /// [`CodecError::TooLarge`] when the payload exceeds
    /// [`payload_bytes_max`](Self::payload_bytes_max); nothing is appended and the sequence
    /// does not advance.
    pub fn encode(
        &mut self,
        kind: FrameKind,
        payload: &[u8],
        nonce: [u8; NONCE_BYTES],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        if payload.len() > self.payload_bytes_max() {
            return Err(CodecError::TooLarge {
                what: "frame payload",
                size_bytes: payload.len(),
                limit_bytes: self.payload_bytes_max(),
            });
        }
        match &self.keyring {
            // Plain frames are written straight into `out` (length, kind, payload): no
            // intermediate body, one copy of the payload per frame (issue 17, CPU per write).
            None => append_frame_of(out, &[kind.to_byte()], payload, self.frame_bytes_max)?,
            Some(keyring) => {
                let mut plain = Vec::with_capacity(1 + payload.len());
                plain.push(kind.to_byte());
                plain.extend_from_slice(payload);
                let body = keyring.seal(nonce, &self.associated(), &plain);
                append_frame(out, &body, self.frame_bytes_max)?;
            }
        }
        self.sequence = self.sequence.wrapping_add(1);
        Ok(())
    }

    /// Open one frame body (without its length prefix) into its kind and payload.
    ///
    /// # Errors
    /// The [`RejectCause`] to count; the caller closes the connection, since later frames
    /// can no longer be trusted (or, sealed, opened: the sequence is out of step).
    pub fn decode(&mut self, body: &[u8]) -> Result<(FrameKind, Vec<u8>), RejectCause> {
        if body.len() > self.frame_bytes_max {
            return Err(RejectCause::Oversized);
        }
        let opened = match &self.keyring {
            None => None,
            Some(keyring) => {
                Some(
                    keyring
                        .open(&self.associated(), body)
                        .map_err(|error| match error {
                            OpenError::UnknownKey { .. } => RejectCause::WrongKey,
                            OpenError::TooShort => RejectCause::Malformed,
                            _ => RejectCause::Forged,
                        })?,
                )
            }
        };
        self.sequence = self.sequence.wrapping_add(1);
        match opened {
            // Plain: the payload is copied once, straight out of the body.
            None => split_plain(body).map(|(kind, payload)| (kind, payload.to_vec())),
            // The opened body is ours: drop the kind byte in place instead of copying.
            Some(mut payload) => {
                let (kind, _) = split_plain(&payload)?;
                payload.remove(0);
                Ok((kind, payload))
            }
        }
    }

    fn associated(&self) -> Vec<u8> {
        let mut associated = Vec::with_capacity(self.associated_prefix.len() + 8);
        associated.extend_from_slice(&self.associated_prefix);
        associated.extend_from_slice(&self.sequence.to_be_bytes());
        associated
    }
}

impl std::fmt::Debug for FrameCodec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("FrameCodec")
            .field("sealed", &self.keyring.is_some())
            .field("sequence", &self.sequence)
            .field("frame_bytes_max", &self.frame_bytes_max)
            .finish()
    }
}

/// Append a text of at most 255 bytes with its length in front, so that two fields next to
/// each other cannot be confused ("ab" + "c" against "a" + "bc"). Cluster names and node ids
/// are validated to at most 64 bytes; should longer text ever arrive it is cut, the same way
/// on both sides, rather than panicking.
pub(crate) fn push_short_text(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let length = bytes.len().min(usize::from(u8::MAX));
    out.push(u8::try_from(length).unwrap_or(u8::MAX));
    out.extend_from_slice(&bytes[..length]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_core::keyring::ClusterKey;

    fn keyring(byte: u8) -> Option<Arc<Keyring>> {
        Keyring::new(vec![ClusterKey::from_bytes([byte; 32])])
            .ok()
            .map(Arc::new)
    }

    fn node(name: &str) -> NodeId {
        NodeId::new(name).expect("valid node id")
    }

    fn one_frame(codec: &mut FrameCodec, payload: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        codec
            .encode(FrameKind::Message, payload, [4; 24], &mut wire)
            .expect("fits");
        wire.split_off(LENGTH_PREFIX_BYTES)
    }

    #[test]
    fn plain_and_sealed_frames_round_trip_in_sequence() {
        for keys in [None, keyring(1)] {
            let mut outgoing = FrameCodec::new("c", &node("a"), [1; 16], keys.clone(), 4096);
            let mut incoming = FrameCodec::new("c", &node("a"), [1; 16], keys, 4096);
            for number in 0..10u8 {
                let body = one_frame(&mut outgoing, &[number; 3]);
                assert_eq!(
                    incoming.decode(&body),
                    Ok((FrameKind::Message, vec![number; 3]))
                );
            }
        }
    }

    /// A plain frame is written straight into the output: the same bytes as the length
    /// prefix and body `append_frame` writes (kind byte, payload), after what `out` held; a
    /// keepalive with a payload and an unknown kind are refused.
    #[test]
    fn plain_frames_are_the_framed_kind_and_payload() {
        let mut codec = FrameCodec::new("c", &node("a"), [1; 16], None, 4096);
        for (kind, payload) in [
            (FrameKind::Message, &b"payload"[..]),
            (FrameKind::Keepalive, &b""[..]),
        ] {
            let mut wire = vec![9, 9];
            codec
                .encode(kind, payload, [0; 24], &mut wire)
                .expect("fits");
            let mut expected = vec![9, 9];
            let body: Vec<u8> = std::iter::once(kind.to_byte())
                .chain(payload.iter().copied())
                .collect();
            append_frame(&mut expected, &body, 4096).expect("fits");
            assert_eq!(wire, expected);
        }
        let keepalive = FrameKind::Keepalive.to_byte();
        assert_eq!(codec.decode(&[keepalive, 1]), Err(RejectCause::Malformed));
        assert_eq!(codec.decode(&[0xee]), Err(RejectCause::Malformed));
        assert_eq!(codec.decode(&[]), Err(RejectCause::Malformed));
    }

    #[test]
    fn sealed_frames_are_bound_to_cluster_sender_connection_and_position() {
        let mut outgoing = FrameCodec::new("c", &node("a"), [1; 16], keyring(1), 4096);
        let first = one_frame(&mut outgoing, b"first");
        let second = one_frame(&mut outgoing, b"second");
        let cases = [
            (
                "other cluster",
                FrameCodec::new("d", &node("a"), [1; 16], keyring(1), 4096),
            ),
            (
                "other sender",
                FrameCodec::new("c", &node("b"), [1; 16], keyring(1), 4096),
            ),
            (
                "other connection",
                FrameCodec::new("c", &node("a"), [2; 16], keyring(1), 4096),
            ),
        ];
        for (case, mut incoming) in cases {
            assert_eq!(incoming.decode(&first), Err(RejectCause::Forged), "{case}");
        }
        let mut skipped = FrameCodec::new("c", &node("a"), [1; 16], keyring(1), 4096);
        assert_eq!(skipped.decode(&second), Err(RejectCause::Forged));
        let mut wrong_key = FrameCodec::new("c", &node("a"), [1; 16], keyring(2), 4096);
        assert_eq!(wrong_key.decode(&first), Err(RejectCause::WrongKey));
    }

    #[test]
    fn oversized_payloads_are_refused_before_sealing() {
        let mut codec = FrameCodec::new("c", &node("a"), [1; 16], keyring(1), 1024);
        let mut wire = Vec::new();
        let too_big = vec![0; codec.payload_bytes_max() + 1];
        assert!(
            codec
                .encode(FrameKind::Message, &too_big, [0; 24], &mut wire)
                .is_err()
        );
        assert!(wire.is_empty());
        let fits = vec![0; codec.payload_bytes_max()];
        codec
            .encode(FrameKind::Message, &fits, [0; 24], &mut wire)
            .expect("fits exactly");
        assert_eq!(wire.len(), LENGTH_PREFIX_BYTES + 1024);
    }

    #[test]
    fn bad_kinds_and_keepalives_with_payload_are_malformed() {
        let mut incoming = FrameCodec::new("c", &node("a"), [1; 16], None, 4096);
        assert_eq!(incoming.decode(&[]), Err(RejectCause::Malformed));
        assert_eq!(incoming.decode(&[7, 1]), Err(RejectCause::Malformed));
        assert_eq!(incoming.decode(&[1, 1]), Err(RejectCause::Malformed));
        assert_eq!(
            incoming.decode(&[1]),
            Ok((FrameKind::Keepalive, Vec::new()))
        );
    }

    #[test]
    fn length_prefixes_are_checked_before_allocation() {
        assert_eq!(body_length([0xff; 4], usize::MAX), Ok(u32::MAX as usize));
        assert_eq!(body_length([0, 0, 4, 1], 1024), Err(RejectCause::Oversized));
        assert_eq!(body_length([0, 0, 4, 0], 1024), Ok(1024));
        let mut out = Vec::new();
        assert!(append_frame(&mut out, &[0; 10], 9).is_err());
        assert!(out.is_empty());
    }
}
