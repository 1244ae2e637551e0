//! Property tests of the wire decoders on arbitrary bytes: they refuse, they never panic, and
//! what was encoded decodes to the same thing.

use crate::transport_support;

use std::sync::Arc;

use ha_core::keyring::Keyring;
use ha_replicate::transport::frame::{FrameCodec, FrameKind, split_frame};
use ha_replicate::transport::handshake::{HANDSHAKE_BYTES_MAX, HandshakeCodec};
use proptest::prelude::*;
use transport_support::{TestMessage, keyring, node};

const LIMIT_BYTES: usize = 4096;

fn codecs(keys: Option<Arc<Keyring>>) -> (HandshakeCodec, FrameCodec) {
    (
        HandshakeCodec::new("c", node("n1"), keys.clone()),
        FrameCodec::new("c", &node("n2"), [5; 16], keys, LIMIT_BYTES),
    )
}

/// Feed `bytes` through everything a reader does with what arrives on a socket.
fn decode_everything(bytes: &[u8]) {
    for keys in [None, Some(keyring(1))] {
        let (handshake, mut frames) = codecs(keys);
        let mut rest = bytes;
        while let Ok(Some((body, after))) = split_frame(rest, LIMIT_BYTES) {
            let _ = handshake.decode_initiator(body);
            let _ = handshake.decode_responder(body, [5; 16]);
            if let Ok((FrameKind::Message, payload)) = frames.decode(body) {
                let _ = ha_core::codec::decode::<TestMessage>("test", &payload, LIMIT_BYTES);
            }
            rest = after;
        }
        let _ = handshake.decode_initiator(bytes);
        let _ = frames.decode(bytes);
        let _ = ha_core::codec::decode::<TestMessage>("test", bytes, LIMIT_BYTES);
    }
}

fn message() -> impl Strategy<Value = TestMessage> {
    prop_oneof![
        (any::<u64>(), ".{0,40}").prop_map(|(sequence, text)| TestMessage::Data { sequence, text }),
        any::<u64>().prop_map(TestMessage::Ping),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(TestMessage::Blob),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _turn = crate::one_file_at_a_time::take_turn(module_path!());
        decode_everything(&bytes);
    }

    #[test]
    fn plausible_frames_of_random_bytes_never_panic_the_decoders(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8)
    ) {
        let _turn = crate::one_file_at_a_time::take_turn(module_path!());
        let mut wire = Vec::new();
        for body in &bodies {
            wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
            wire.extend_from_slice(body);
        }
        decode_everything(&wire);
    }

    #[test]
    fn messages_round_trip_plain_and_sealed(messages in proptest::collection::vec(message(), 1..20)) {
        let _turn = crate::one_file_at_a_time::take_turn(module_path!());
        for keys in [None, Some(keyring(1))] {
            let mut outgoing = FrameCodec::new("c", &node("n2"), [5; 16], keys.clone(), LIMIT_BYTES);
            let mut incoming = FrameCodec::new("c", &node("n2"), [5; 16], keys, LIMIT_BYTES);
            let mut wire = Vec::new();
            for message in &messages {
                let payload = ha_core::codec::encode("test", message, LIMIT_BYTES).expect("encodes");
                outgoing.encode(FrameKind::Message, &payload, rand::random(), &mut wire).expect("fits");
            }
            let mut rest = wire.as_slice();
            let mut decoded = Vec::new();
            while let Some((body, after)) = split_frame(rest, LIMIT_BYTES).expect("within limit") {
                let (kind, payload) = incoming.decode(body).expect("opens");
                prop_assert_eq!(kind, FrameKind::Message);
                decoded.push(ha_core::codec::decode::<TestMessage>("test", &payload, LIMIT_BYTES).expect("decodes"));
                rest = after;
            }
            prop_assert!(rest.is_empty());
            prop_assert_eq!(&decoded, &messages);
        }
    }

    #[test]
    fn any_flipped_bit_in_a_sealed_frame_or_hello_is_refused(position in 0usize..4096, bit in 0u8..8) {
        let _turn = crate::one_file_at_a_time::take_turn(module_path!());
        let keys = Some(keyring(1));
        let mut outgoing = FrameCodec::new("c", &node("n2"), [5; 16], keys.clone(), LIMIT_BYTES);
        let mut incoming = FrameCodec::new("c", &node("n2"), [5; 16], keys.clone(), LIMIT_BYTES);
        let mut wire = Vec::new();
        outgoing.encode(FrameKind::Message, b"a replicated entry", [9; 24], &mut wire).expect("fits");
        let mut body = wire.split_off(4);
        let position_in_body = position % body.len();
        body[position_in_body] ^= 1 << bit;
        prop_assert!(incoming.decode(&body).is_err());

        let handshake = HandshakeCodec::new("c", node("n1"), keys);
        let mut hello = handshake.encode_initiator([3; 16], [4; 24]);
        prop_assert!(hello.len() <= HANDSHAKE_BYTES_MAX);
        let position_in_hello = position % hello.len();
        hello[position_in_hello] ^= 1 << bit;
        prop_assert!(handshake.decode_initiator(&hello).is_err());
    }
}
