//! One framed record of the write-ahead log: `length | crc32c | body`.
//!
//! See the format description at the top of [`wal`](super::wal).

use ha_core::LogIndex;
use ha_core::codec::{self, RPC_FRAME_BYTES_MAX};
use serde::{Deserialize, Serialize};

use super::StorageError;
use crate::entry::Entry;
use crate::hard_state::HardState;

/// Bytes before each record's body: the body length and its checksum, both `u32` LE.
pub(crate) const RECORD_HEADER_BYTES: usize = 8;

/// The largest record body. An entry travels in one RPC frame, so a larger record could never
/// have been replicated; and a corrupt length field larger than this is refused before anything
/// is allocated for it.
pub(crate) const RECORD_BODY_BYTES_MAX: usize = RPC_FRAME_BYTES_MAX;

/// What a record says, as read back.
#[derive(Debug, PartialEq, Eq, Deserialize)]
pub(crate) enum Record {
    /// A log entry.
    Entry(Entry),
    /// Every entry with index `from` or higher, written earlier, is removed.
    Truncate {
        /// The first index removed.
        from: LogIndex,
    },
    /// The term and vote; the last one in the log wins.
    HardState(HardState),
    /// The last record of a segment that is complete: the writer puts it there, and syncs it,
    /// before it creates the next segment. Every segment but the last must end with one, so a
    /// segment that lost records at its end (or anywhere before the seal) is refused rather
    /// than read as if it were whole.
    Seal {
        /// The segment's own sequence number.
        sequence: u64,
        /// The seal's offset in the segment: the bytes before it, segment header included.
        length_bytes: u64,
    },
}

/// What a record says, borrowed for writing. Variant order and shapes must match [`Record`]:
/// postcard encodes the variant by its position, so the two encode identically.
#[derive(Debug, Serialize)]
pub(crate) enum RecordRef<'a> {
    /// See [`Record::Entry`].
    Entry(&'a Entry),
    /// See [`Record::Truncate`].
    Truncate {
        /// The first index removed.
        from: LogIndex,
    },
    /// See [`Record::HardState`].
    HardState(&'a HardState),
    /// See [`Record::Seal`].
    Seal {
        /// The segment's own sequence number.
        sequence: u64,
        /// The seal's offset in the segment.
        length_bytes: u64,
    },
}

/// The largest postcard variant tag of [`Record`]: a cheap first filter when searching for a
/// valid record in damaged bytes.
pub(crate) const RECORD_TAG_MAX: u8 = 3;

/// The largest framed [`Record::Seal`]: the header, a one-byte variant tag and two `u64`
/// varints of at most 10 bytes each: how far a seal may take a segment past its size limit.
pub(crate) const SEAL_RECORD_BYTES_MAX: u64 = RECORD_HEADER_BYTES as u64 + 1 + 10 + 10;

/// Appends the framed record to `out` and returns its framed size in bytes.
///
/// # Errors
/// [`StorageError::Misuse`] when the body would be larger than [`RECORD_BODY_BYTES_MAX`]
/// (nothing is appended then).
pub(crate) fn encode_record(
    record: &RecordRef<'_>,
    out: &mut Vec<u8>,
) -> Result<u64, StorageError> {
    // The body is encoded in place after a header-sized gap (no buffer of its own: this runs
    // once per log entry on the storage thread), then the header is filled in.
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_BYTES]);
    let refused = |out: &mut Vec<u8>, reason: String| {
        out.truncate(start);
        Err(StorageError::Misuse(format!(
            "cannot write a wal record: {reason}"
        )))
    };
    // postcard into memory fails only on a type serde cannot encode, which a record is not;
    // reported all the same, never a panic.
    if let Err(error) = postcard::to_extend(record, AppendTo(out)) {
        return refused(out, format!("wal record: {error}"));
    }
    let body_bytes = out.len() - start - RECORD_HEADER_BYTES;
    if body_bytes > RECORD_BODY_BYTES_MAX {
        return refused(
            out,
            format!(
                "wal record is {body_bytes} bytes, more than the limit of \
                 {RECORD_BODY_BYTES_MAX}"
            ),
        );
    }
    // The limit above is below u32::MAX, so the length always fits the header field.
    let Ok(length) = u32::try_from(body_bytes) else {
        return refused(out, "wal record length overflows u32".to_string());
    };
    let checksum = crc32c::crc32c(&out[start + RECORD_HEADER_BYTES..]);
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    out[start + 4..start + RECORD_HEADER_BYTES].copy_from_slice(&checksum.to_le_bytes());
    Ok((RECORD_HEADER_BYTES + body_bytes) as u64)
}

/// Lets postcard encode onto the end of a borrowed buffer.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl Extend<u8> for AppendTo<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

/// The two header fields of a record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordHeader {
    /// The body length in bytes.
    pub(crate) body_bytes: u32,
    /// The crc32c of the body.
    pub(crate) checksum: u32,
}

impl RecordHeader {
    /// Parses the 8 header bytes.
    pub(crate) fn parse(bytes: [u8; RECORD_HEADER_BYTES]) -> Self {
        let [a, b, c, d, e, f, g, h] = bytes;
        Self {
            body_bytes: u32::from_le_bytes([a, b, c, d]),
            checksum: u32::from_le_bytes([e, f, g, h]),
        }
    }

    /// Why this header cannot start a valid record, if it cannot: an empty body (no record
    /// encodes to nothing) or one over the limit.
    pub(crate) fn length_problem(&self) -> Option<String> {
        if self.body_bytes == 0 {
            Some("record length is 0".to_string())
        } else if self.body_bytes as usize > RECORD_BODY_BYTES_MAX {
            Some(format!(
                "record length {} is over the limit of {RECORD_BODY_BYTES_MAX} bytes",
                self.body_bytes
            ))
        } else {
            None
        }
    }
}

/// Checks a body against its header's checksum and decodes it.
pub(crate) fn verify_body(header: RecordHeader, body: &[u8]) -> Result<Record, BodyProblem> {
    let actual = crc32c::crc32c(body);
    if actual != header.checksum {
        return Err(BodyProblem::Checksum(format!(
            "checksum mismatch: header says {:#010x}, body has {actual:#010x}",
            header.checksum
        )));
    }
    codec::decode("wal record", body, RECORD_BODY_BYTES_MAX)
        .map_err(|error| BodyProblem::Undecodable(error.to_string()))
}

/// Why a body was refused.
#[derive(Debug)]
pub(crate) enum BodyProblem {
    /// The checksum does not match: damaged bytes, possibly a torn write.
    Checksum(String),
    /// The checksum matches but the body does not decode. A torn write cannot produce this
    /// (its checksum would not match), so it is corruption or a format this version does not
    /// know.
    Undecodable(String),
}

/// Whether `bytes` start with a complete valid record: used to tell a torn tail (nothing valid
/// after the damage) from corruption in the middle of the log. Cheap checks first: the length,
/// the variant tag and the decoding reject almost every position of random bytes before the
/// checksum, which costs a pass over the body, is computed.
///
/// Returns the number of body bytes checksummed, for the caller's work budget, and whether
/// the record is valid.
pub(crate) fn is_valid_record_at(bytes: &[u8]) -> (usize, bool) {
    let Some((header_bytes, rest)) = bytes.split_first_chunk::<RECORD_HEADER_BYTES>() else {
        return (0, false);
    };
    let header = RecordHeader::parse(*header_bytes);
    if header.length_problem().is_some() {
        return (0, false);
    }
    let Some(body) = rest.get(..header.body_bytes as usize) else {
        return (0, false);
    };
    if body.first().is_none_or(|tag| *tag > RECORD_TAG_MAX) {
        return (0, false);
    }
    if codec::decode::<Record>("wal record", body, RECORD_BODY_BYTES_MAX).is_err() {
        return (body.len(), false);
    }
    (body.len(), crc32c::crc32c(body) == header.checksum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Payload;
    use ha_core::{NodeId, Term};

    fn framed(record: &RecordRef<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        let size = encode_record(record, &mut out).unwrap();
        assert_eq!(size as usize, out.len());
        out
    }

    fn decode_framed(bytes: &[u8]) -> Record {
        let header = RecordHeader::parse(bytes[..RECORD_HEADER_BYTES].try_into().unwrap());
        assert_eq!(
            header.body_bytes as usize,
            bytes.len() - RECORD_HEADER_BYTES
        );
        verify_body(header, &bytes[RECORD_HEADER_BYTES..]).unwrap()
    }

    /// Encoding in place writes the bytes the format always had (header: length and crc32c
    /// of the body, then the postcard body), appends after what the buffer held, and an
    /// oversized record leaves the buffer as it was.
    #[test]
    fn records_encode_in_place_as_before_and_a_refusal_appends_nothing() {
        let entry = Entry {
            term: Term(3),
            index: LogIndex(9),
            payload: Payload::Command(b"set x".to_vec()),
        };
        let record = RecordRef::Entry(&entry);
        let body = postcard::to_allocvec(&record).unwrap();
        let mut expected = (body.len() as u32).to_le_bytes().to_vec();
        expected.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        expected.extend_from_slice(&body);

        let mut out = b"earlier".to_vec();
        let size = encode_record(&record, &mut out).unwrap();
        assert_eq!(size as usize, expected.len());
        assert_eq!(&out[..7], b"earlier");
        assert_eq!(&out[7..], &expected[..]);

        let huge = Entry {
            payload: Payload::Command(vec![7; RECORD_BODY_BYTES_MAX]),
            ..entry
        };
        let before = out.clone();
        let error = encode_record(&RecordRef::Entry(&huge), &mut out).unwrap_err();
        assert!(error.to_string().contains("more than the limit"), "{error}");
        assert_eq!(out, before, "a refused record appends nothing");
    }

    #[test]
    fn borrowed_and_owned_records_encode_alike() {
        let entry = Entry {
            term: Term(3),
            index: LogIndex(9),
            payload: Payload::Command(b"set x".to_vec()),
        };
        let hard_state = HardState {
            term: Term(4),
            voted_for: Some(NodeId::new("n2").unwrap()),
        };
        assert_eq!(
            decode_framed(&framed(&RecordRef::Entry(&entry))),
            Record::Entry(entry)
        );
        assert_eq!(
            decode_framed(&framed(&RecordRef::Truncate { from: LogIndex(4) })),
            Record::Truncate { from: LogIndex(4) }
        );
        assert_eq!(
            decode_framed(&framed(&RecordRef::HardState(&hard_state))),
            Record::HardState(hard_state)
        );
        assert_eq!(
            decode_framed(&framed(&RecordRef::Seal {
                sequence: 7,
                length_bytes: 180
            })),
            Record::Seal {
                sequence: 7,
                length_bytes: 180
            }
        );
    }

    #[test]
    fn the_largest_seal_takes_seal_record_bytes_max() {
        let largest = framed(&RecordRef::Seal {
            sequence: u64::MAX,
            length_bytes: u64::MAX,
        });
        assert_eq!(largest.len() as u64, SEAL_RECORD_BYTES_MAX);
        assert_eq!(largest[RECORD_HEADER_BYTES], RECORD_TAG_MAX);
    }

    #[test]
    fn validity_check_accepts_records_and_rejects_damage() {
        let bytes = framed(&RecordRef::Truncate { from: LogIndex(4) });
        assert!(is_valid_record_at(&bytes).1);
        assert!(!is_valid_record_at(&bytes[..bytes.len() - 1]).1);
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(!is_valid_record_at(&damaged).1, "flip at {position}");
        }
    }

    #[test]
    fn oversized_records_are_refused_before_writing() {
        let entry = Entry {
            term: Term(1),
            index: LogIndex(1),
            payload: Payload::Command(vec![0; RECORD_BODY_BYTES_MAX]),
        };
        let mut out = Vec::new();
        assert!(matches!(
            encode_record(&RecordRef::Entry(&entry), &mut out),
            Err(StorageError::Misuse(_))
        ));
        assert!(out.is_empty());
    }
}
