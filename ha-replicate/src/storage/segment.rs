//! Segment files of the write-ahead log: naming, and reading one back record by record.
//!
//! See the format description at the top of [`wal`](super::wal).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::StorageError;
use super::record::{
    BodyProblem, RECORD_BODY_BYTES_MAX, RECORD_HEADER_BYTES, Record, RecordHeader,
    is_valid_record_at, verify_body,
};
use super::snapshot_file::io_error;

/// The first bytes of every segment: the name of the format and its version (2: every
/// segment but the last ends with a [`Record::Seal`]; version 1 had no seals and is refused).
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"ha-wal\x00\x02";

/// Where the version byte is in [`SEGMENT_MAGIC`].
const SEGMENT_VERSION_OFFSET: usize = SEGMENT_MAGIC.len() - 1;

/// The length of [`SEGMENT_MAGIC`].
pub(crate) const SEGMENT_HEADER_BYTES: u64 = SEGMENT_MAGIC.len() as u64;

/// How many bytes the search for valid records after damage may checksum or decode before it
/// gives up and reports corruption. Random bytes almost never get as far as the checksum, so
/// this is only reached by pathological contents; refusing to start is then the safe answer.
const DAMAGE_SCAN_WORK_BYTES_MAX: usize = 1 << 30;

/// Reads bodies through a buffer of this size.
const READ_BUFFER_BYTES: usize = 64 * 1024;

const SEGMENT_PREFIX: &str = "wal-";
const SEGMENT_SUFFIX: &str = ".log";
const SEQUENCE_DIGITS: usize = 20;

/// The file name of segment number `sequence`: `wal-<sequence, 20 digits>.log`.
pub(crate) fn segment_file_name(sequence: u64) -> String {
    format!("{SEGMENT_PREFIX}{sequence:020}{SEGMENT_SUFFIX}")
}

/// The sequence number in a segment file name, or `None` when `name` is not one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    parse_numbered_name(name, SEGMENT_PREFIX, SEGMENT_SUFFIX)
}

/// The number in `<prefix><20 digits><suffix>`, or `None` when `name` has another shape.
pub(crate) fn parse_numbered_name(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != SEQUENCE_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// How reading a segment ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// The bytes from `offset` on are a torn write: damaged, with nothing valid after them,
    /// in the last segment.
    Torn {
        /// Where the torn record starts (0 when even the segment header is damaged).
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// The outcome of reading one segment.
#[derive(Debug)]
pub(crate) struct ScannedSegment {
    /// The file's size when it was read.
    pub(crate) file_bytes: u64,
    /// Where its records end: `file_bytes` less a tail of zeros the writer wrote ahead
    /// ([`active_segment`](super::active_segment)), for a clean end.
    pub(crate) records_bytes: u64,
    /// Whether it ended cleanly or with a torn tail.
    pub(crate) end: ScanEnd,
}

/// Reads the segment at `path` and hands every valid record, with its offset, to `visit`.
///
/// A damaged record (short, bad length, checksum mismatch) is a torn write when `is_last` is
/// true and no valid record can be found after it; it is then reported as [`ScanEnd::Torn`]
/// and nothing after it is visited. Anywhere else it is corruption. A record whose checksum
/// matches but which does not decode is always corruption: a torn write cannot produce it.
///
/// # Errors
/// [`StorageError::Corrupt`] for damage that is not a torn tail, [`StorageError::Io`], and
/// whatever `visit` returns.
pub(crate) fn scan_segment(
    path: &Path,
    is_last: bool,
    visit: &mut dyn FnMut(u64, Record) -> Result<(), StorageError>,
) -> Result<ScannedSegment, StorageError> {
    let io_error = |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let file_bytes = file.metadata().map_err(io_error)?.len();
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);

    let damaged = |offset: u64, reason: String| -> Result<ScannedSegment, StorageError> {
        if !is_last {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset,
                reason: format!("{reason} (not in the last segment, so not a torn write)"),
            });
        }
        match find_valid_record_after(path, offset, file_bytes)? {
            Some(next) => {
                // Refused either way; zeros only change what the operator is told.
                let likely = match zero_sector_within(path, offset, next)? {
                    Some(sector) => format!(
                        "; bytes {sector}..{} are zeros, so this is most likely a power failure \
                         that wrote a later page of an unsynced batch but not this one, yet \
                         it cannot be told from damage to synced records: move the data \
                         directory aside and let the node catch up from the leader",
                        sector + SECTOR_BYTES
                    ),
                    None => String::new(),
                };
                Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    reason: format!(
                        "{reason}; a valid record follows at byte {next}, so this is not a torn \
                         write{likely}"
                    ),
                })
            }
            None => Ok(ScannedSegment {
                file_bytes,
                records_bytes: offset,
                end: ScanEnd::Torn { offset, reason },
            }),
        }
    };

    if file_bytes < SEGMENT_HEADER_BYTES {
        return damaged(
            0,
            format!("segment is {file_bytes} bytes, shorter than its header"),
        );
    }
    let mut magic = [0u8; SEGMENT_MAGIC.len()];
    reader.read_exact(&mut magic).map_err(io_error)?;
    if magic[..SEGMENT_VERSION_OFFSET] == SEGMENT_MAGIC[..SEGMENT_VERSION_OFFSET]
        && magic[SEGMENT_VERSION_OFFSET] != SEGMENT_MAGIC[SEGMENT_VERSION_OFFSET]
    {
        // The header was written whole, by another version of the format: not a torn write,
        // and not something to guess at, even in the last segment.
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: SEGMENT_VERSION_OFFSET as u64,
            reason: format!(
                "segment format version {} is not the version this build reads ({}); there \
                 is no conversion: move the directory aside and let the node catch up from \
                 the leader",
                magic[SEGMENT_VERSION_OFFSET], SEGMENT_MAGIC[SEGMENT_VERSION_OFFSET]
            ),
        });
    }
    if magic != SEGMENT_MAGIC {
        return damaged(
            0,
            format!("segment header {magic:02x?} is not {SEGMENT_MAGIC:02x?}"),
        );
    }

    let mut offset = SEGMENT_HEADER_BYTES;
    let mut body = Vec::new();
    while offset < file_bytes {
        let remaining = file_bytes - offset;
        if remaining < RECORD_HEADER_BYTES as u64 {
            // A few zeros written ahead up to the segment's limit, or a torn header.
            if only_zeros_follow(&mut reader).map_err(io_error)? {
                return Ok(ScannedSegment {
                    file_bytes,
                    records_bytes: offset,
                    end: ScanEnd::Clean,
                });
            }
            return damaged(
                offset,
                format!("only {remaining} bytes left, short of a record header"),
            );
        }
        let mut header_bytes = [0u8; RECORD_HEADER_BYTES];
        reader.read_exact(&mut header_bytes).map_err(io_error)?;
        // No record starts with 8 zero bytes (a body is at least 1 byte long), so these are
        // the zeros written ahead, if nothing but zeros follows.
        if header_bytes == [0u8; RECORD_HEADER_BYTES]
            && only_zeros_follow(&mut reader).map_err(io_error)?
        {
            return Ok(ScannedSegment {
                file_bytes,
                records_bytes: offset,
                end: ScanEnd::Clean,
            });
        }
        let header = RecordHeader::parse(header_bytes);
        if let Some(problem) = header.length_problem() {
            return damaged(offset, problem);
        }
        let body_bytes = u64::from(header.body_bytes);
        if body_bytes > remaining - RECORD_HEADER_BYTES as u64 {
            return damaged(
                offset,
                format!(
                    "record body of {body_bytes} bytes runs past the end of the file ({} left)",
                    remaining - RECORD_HEADER_BYTES as u64
                ),
            );
        }
        // Bounded by RECORD_BODY_BYTES_MAX (checked above) and by the file's size.
        body.resize(header.body_bytes as usize, 0);
        reader.read_exact(&mut body).map_err(io_error)?;
        match verify_body(header, &body) {
            Ok(record) => visit(offset, record)?,
            Err(BodyProblem::Checksum(reason)) => return damaged(offset, reason),
            Err(BodyProblem::Undecodable(reason)) => {
                return Err(StorageError::Corrupt {
                    path: path.to_path_buf(),
                    offset,
                    reason: format!(
                        "record checksum is valid but the body does not decode: {reason}"
                    ),
                });
            }
        }
        offset += RECORD_HEADER_BYTES as u64 + body_bytes;
    }
    Ok(ScannedSegment {
        file_bytes,
        records_bytes: file_bytes,
        end: ScanEnd::Clean,
    })
}

/// Whether every byte left in `reader` is zero. Reads at most the rest of the file.
fn only_zeros_follow(reader: &mut impl Read) -> std::io::Result<bool> {
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if read == 0 {
            return Ok(true);
        }
        if buffer[..read].iter().any(|&byte| byte != 0) {
            return Ok(false);
        }
    }
}

/// The unit a disk writes whole, for [`zero_sector_within`].
const SECTOR_BYTES: u64 = 512;

/// The start of the first sector-aligned run of [`SECTOR_BYTES`] zeros within `start..end` of
/// the file, if any: for the message of a refusal.
///
/// The writer writes records only over zeros it wrote ahead
/// ([`active_segment`](super::active_segment)), so when a power failure lets a later page of
/// an unsynced batch reach the disk without an earlier one, the earlier one reads back as
/// zeros. Recovery still refuses it: a record whose body holds zeros and which was damaged
/// after it was synced would look the same, and cutting there could lose acknowledged
/// entries (a node that forgets what it acknowledged can break a quorum's promise). `end` is
/// a valid record found after the damage, so the range is at most about two maximal records.
fn zero_sector_within(path: &Path, start: u64, end: u64) -> Result<Option<u64>, StorageError> {
    let first = start.div_ceil(SECTOR_BYTES) * SECTOR_BYTES;
    if first.saturating_add(SECTOR_BYTES) > end {
        return Ok(None);
    }
    let mut file = File::open(path).map_err(io_error(path))?;
    file.seek(SeekFrom::Start(first)).map_err(io_error(path))?;
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file.take(end - first));
    let mut sector = [0u8; SECTOR_BYTES as usize];
    let mut at = first;
    while at + SECTOR_BYTES <= end {
        reader.read_exact(&mut sector).map_err(io_error(path))?;
        if sector.iter().all(|&byte| byte == 0) {
            return Ok(Some(at));
        }
        at += SECTOR_BYTES;
    }
    Ok(None)
}

/// Looks for a complete valid record starting after `damaged_offset`.
///
/// If the damage is confined to one record, the next record starts at most one maximal record
/// after the damaged one's start, so only positions up to there are tried; each candidate may
/// extend one maximal record further. That bounds the bytes read to about two maximal records.
fn find_valid_record_after(
    path: &Path,
    damaged_offset: u64,
    file_bytes: u64,
) -> Result<Option<u64>, StorageError> {
    let io_error = |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let record_bytes_max = (RECORD_HEADER_BYTES + RECORD_BODY_BYTES_MAX) as u64;
    let start = damaged_offset + 1;
    if start >= file_bytes {
        return Ok(None);
    }
    let candidates_end = file_bytes.min(damaged_offset + record_bytes_max + 1);
    let window_end = file_bytes.min(candidates_end + record_bytes_max);

    let mut file = File::open(path).map_err(io_error)?;
    file.seek(SeekFrom::Start(start)).map_err(io_error)?;
    let mut window = Vec::new();
    file.take(window_end - start)
        .read_to_end(&mut window)
        .map_err(io_error)?;

    let mut work_bytes = 0usize;
    let candidates = usize::try_from(candidates_end - start).unwrap_or(usize::MAX);
    for relative in 0..candidates.min(window.len()) {
        let (work, valid) = is_valid_record_at(&window[relative..]);
        if valid {
            return Ok(Some(start + relative as u64));
        }
        work_bytes = work_bytes.saturating_add(work);
        if work_bytes > DAMAGE_SCAN_WORK_BYTES_MAX {
            return Err(StorageError::Corrupt {
                path: path.to_path_buf(),
                offset: damaged_offset,
                reason: format!(
                    "damaged record; searching the {} bytes after it for valid records exceeded \
                     its work budget, so a torn write cannot be told from corruption",
                    window_end - start
                ),
            });
        }
    }
    Ok(None)
}

/// Where segment `sequence` of the log in `directory` lives.
pub(crate) fn segment_path(directory: &Path, sequence: u64) -> PathBuf {
    directory.join(segment_file_name(sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        assert_eq!(segment_file_name(7), "wal-00000000000000000007.log");
        assert_eq!(parse_segment_file_name(&segment_file_name(7)), Some(7));
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for stranger in [
            "wal-7.log",
            "wal-0000000000000000000a.log",
            "wal-00000000000000000007.log.tmp",
            "wal-99999999999999999999.log",
            "notes.txt",
        ] {
            assert_eq!(parse_segment_file_name(stranger), None, "{stranger}");
        }
    }
}
