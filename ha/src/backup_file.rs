//! The backup file (issue 14, item 2): what `GET /v1/snapshot` serves and `bot snapshot save`
//! writes. A fixed-size [`BackupHeader`] followed by the body: the bytes of one snapshot of the
//! node's replicated state, exactly as the replica's store holds it and
//! [`Applier::restore_from`](ha_replicate::replica::Applier::restore_from) reads it back: the
//! replica's prefix (its format and applied index), the client sessions and failover history,
//! then the host's state machine with the KV store, leases and locks
//! ([`WithLocks`](ha_lock::WithLocks)).
//!
//! Layout of the header ([`BACKUP_HEADER_BYTES`] bytes, integers little-endian):
//!
//! ```text
//! magic "ha-backp" (8) | format version u32 (4) | cluster name length u8 (1)
//! | cluster name, zero padded (64) | last index u64 (8) | last term u64 (8)
//! | created at, unix ms u64 (8) | body length u64 (8) | SHA-256 of the body (32)
//! | SHA-256 of the previous 141 header bytes (32)
//! ```
//!
//! Every field is covered by the header's own digest, so one flipped byte anywhere in the file
//! is refused: in the header by that digest, in the body by the body's. Nothing is allocated
//! from a length read from the file: the header has a fixed size and the body is read through
//! a fixed buffer.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use ha_core::CLUSTER_NAME_LENGTH_MAX;
use sha2::{Digest, Sha256};

/// The first bytes of a backup file.
pub const BACKUP_MAGIC: [u8; 8] = *b"ha-backp";

/// The format version written (and the only one read).
pub const BACKUP_FORMAT_VERSION: u32 = 1;

/// The header's size in bytes: fixed.
pub const BACKUP_HEADER_BYTES: usize = 8 + 4 + 1 + CLUSTER_NAME_LENGTH_MAX + 8 * 4 + 32 + 32;

/// The buffer through which a body is hashed.
const BODY_BUFFER_BYTES: usize = 64 * 1024;

/// Where each field starts in the header.
const VERSION_AT: usize = 8;
const NAME_LENGTH_AT: usize = 12;
const NAME_AT: usize = 13;
const INDEX_AT: usize = NAME_AT + CLUSTER_NAME_LENGTH_MAX;
const TERM_AT: usize = INDEX_AT + 8;
const CREATED_AT: usize = TERM_AT + 8;
const BODY_LENGTH_AT: usize = CREATED_AT + 8;
const BODY_SHA_AT: usize = BODY_LENGTH_AT + 8;
const HEADER_SHA_AT: usize = BODY_SHA_AT + 32;

/// What a backup holds: which cluster, which point of its log, when, and the body's length
/// and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupHeader {
    /// The format version ([`BACKUP_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The cluster the state belongs to.
    pub cluster: String,
    /// The last log entry the state includes.
    pub last_index: u64,
    /// That entry's term.
    pub last_term: u64,
    /// When the backup was served, in milliseconds since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// The body's length in bytes.
    pub body_bytes: u64,
    /// The SHA-256 of the body.
    pub body_sha256: [u8; 32],
}

/// Why a backup file is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading failed.
    #[error("backup read failed: {0}")]
    Io(#[from] io::Error),
    /// The file ends inside the header.
    #[error("backup is {found} bytes, shorter than its {BACKUP_HEADER_BYTES}-byte header")]
    ShortHeader {
        /// The bytes there were.
        found: usize,
    },
    /// Not a backup file.
    #[error("not an ha backup file (bad magic)")]
    BadMagic,
    /// A format this build does not read.
    #[error(
        "backup format version {0} is not supported (this build reads version {BACKUP_FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    /// The header's bytes do not match its digest.
    #[error("backup header is corrupt (its SHA-256 does not match)")]
    HeaderChecksum,
    /// The cluster name field is not a valid cluster name.
    #[error("backup header holds an invalid cluster name")]
    BadClusterName,
    /// The backup belongs to another cluster.
    #[error("backup is of cluster {found:?}, expected {expected:?}")]
    WrongCluster {
        /// The cluster asked for.
        expected: String,
        /// The cluster in the header.
        found: String,
    },
    /// The body is shorter than the header says.
    #[error("backup body is truncated: {found} of {expected} bytes")]
    Truncated {
        /// The length in the header.
        expected: u64,
        /// The bytes there were.
        found: u64,
    },
    /// There are bytes after the body.
    #[error("backup has trailing bytes after its {expected}-byte body")]
    TrailingBytes {
        /// The length in the header.
        expected: u64,
    },
    /// The body's bytes do not match the digest in the header.
    #[error("backup body is corrupt: its SHA-256 is {found}, the header says {expected}")]
    BodyChecksum {
        /// The digest in the header, hex.
        expected: String,
        /// The digest of the bytes read, hex.
        found: String,
    },
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The SHA-256 of `bytes` (a body held in memory; [`BackupHeader::verify`] streams).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl BackupHeader {
    /// The header's bytes.
    ///
    /// # Errors
    /// [`BackupError::BadClusterName`] when the cluster name is not a valid one (too long).
    pub fn encode(&self) -> Result<[u8; BACKUP_HEADER_BYTES], BackupError> {
        if !ha_core::is_valid_cluster_name(&self.cluster) {
            return Err(BackupError::BadClusterName);
        }
        let name = self.cluster.as_bytes();
        let name_length = u8::try_from(name.len()).map_err(|_| BackupError::BadClusterName)?;
        let mut out = [0u8; BACKUP_HEADER_BYTES];
        out[..8].copy_from_slice(&BACKUP_MAGIC);
        out[VERSION_AT..NAME_LENGTH_AT].copy_from_slice(&self.format_version.to_le_bytes());
        out[NAME_LENGTH_AT] = name_length;
        out[NAME_AT..NAME_AT + name.len()].copy_from_slice(name);
        out[INDEX_AT..TERM_AT].copy_from_slice(&self.last_index.to_le_bytes());
        out[TERM_AT..CREATED_AT].copy_from_slice(&self.last_term.to_le_bytes());
        out[CREATED_AT..BODY_LENGTH_AT].copy_from_slice(&self.created_at_unix_ms.to_le_bytes());
        out[BODY_LENGTH_AT..BODY_SHA_AT].copy_from_slice(&self.body_bytes.to_le_bytes());
        out[BODY_SHA_AT..HEADER_SHA_AT].copy_from_slice(&self.body_sha256);
        let digest = Sha256::digest(&out[..HEADER_SHA_AT]);
        out[HEADER_SHA_AT..].copy_from_slice(&digest);
        Ok(out)
    }

    /// Decode and check a header: magic, version, its digest, the cluster name.
    ///
    /// # Errors
    /// [`BackupError::BadMagic`], [`BackupError::UnsupportedVersion`],
    /// [`BackupError::HeaderChecksum`], [`BackupError::BadClusterName`].
    pub fn decode(bytes: &[u8; BACKUP_HEADER_BYTES]) -> Result<Self, BackupError> {
        if bytes[..8] != BACKUP_MAGIC {
            return Err(BackupError::BadMagic);
        }
        let u64_at = |at: usize| {
            let mut field = [0u8; 8];
            field.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(field)
        };
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[VERSION_AT..NAME_LENGTH_AT]);
        let format_version = u32::from_le_bytes(version);
        let digest = Sha256::digest(&bytes[..HEADER_SHA_AT]);
        if digest.as_slice() != &bytes[HEADER_SHA_AT..] {
            // A flipped version byte is a corrupt header, not a newer format.
            return Err(BackupError::HeaderChecksum);
        }
        if format_version != BACKUP_FORMAT_VERSION {
            return Err(BackupError::UnsupportedVersion(format_version));
        }
        let name_length = usize::from(bytes[NAME_LENGTH_AT]);
        if name_length > CLUSTER_NAME_LENGTH_MAX {
            return Err(BackupError::BadClusterName);
        }
        let cluster = std::str::from_utf8(&bytes[NAME_AT..NAME_AT + name_length])
            .map_err(|_| BackupError::BadClusterName)?
            .to_string();
        if !ha_core::is_valid_cluster_name(&cluster) {
            return Err(BackupError::BadClusterName);
        }
        let mut body_sha256 = [0u8; 32];
        body_sha256.copy_from_slice(&bytes[BODY_SHA_AT..HEADER_SHA_AT]);
        Ok(Self {
            format_version,
            cluster,
            last_index: u64_at(INDEX_AT),
            last_term: u64_at(TERM_AT),
            created_at_unix_ms: u64_at(CREATED_AT),
            body_bytes: u64_at(BODY_LENGTH_AT),
            body_sha256,
        })
    }

    /// Read and decode the header at the start of `input`; the body follows.
    ///
    /// # Errors
    /// [`BackupError::ShortHeader`] when `input` ends first, [`BackupError::Io`], and what
    /// [`decode`](Self::decode) refuses.
    pub fn read(input: &mut dyn Read) -> Result<Self, BackupError> {
        let mut bytes = [0u8; BACKUP_HEADER_BYTES];
        let mut found = 0;
        while found < BACKUP_HEADER_BYTES {
            match input.read(&mut bytes[found..]) {
                Ok(0) => return Err(BackupError::ShortHeader { found }),
                Ok(read) => found += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        Self::decode(&bytes)
    }

    /// Check the body that follows the header in `input` (read to its end): exactly
    /// [`body_bytes`](Self::body_bytes) long, nothing after it, its SHA-256 the header's; and,
    /// with `expected_cluster`, that the backup is of that cluster. Reads through a fixed
    /// buffer whatever the length the header claims.
    ///
    /// # Errors
    /// [`BackupError::WrongCluster`], [`BackupError::Truncated`],
    /// [`BackupError::TrailingBytes`], [`BackupError::BodyChecksum`], [`BackupError::Io`].
    pub fn verify(
        &self,
        input: &mut dyn Read,
        expected_cluster: Option<&str>,
    ) -> Result<(), BackupError> {
        if let Some(expected) = expected_cluster
            && expected != self.cluster
        {
            return Err(BackupError::WrongCluster {
                expected: expected.to_string(),
                found: self.cluster.clone(),
            });
        }
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; BODY_BUFFER_BYTES];
        let mut found = 0u64;
        while found < self.body_bytes {
            let want = usize::try_from(self.body_bytes - found)
                .unwrap_or(usize::MAX)
                .min(BODY_BUFFER_BYTES);
            match input.read(&mut buffer[..want]) {
                Ok(0) => {
                    return Err(BackupError::Truncated {
                        expected: self.body_bytes,
                        found,
                    });
                }
                Ok(read) => {
                    hasher.update(&buffer[..read]);
                    found += read as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        loop {
            match input.read(&mut buffer[..1]) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(BackupError::TrailingBytes {
                        expected: self.body_bytes,
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        let digest = hasher.finalize();
        if digest.as_slice() != self.body_sha256 {
            return Err(BackupError::BodyChecksum {
                expected: hex(&self.body_sha256),
                found: hex(&digest),
            });
        }
        Ok(())
    }

    /// Read and verify the whole backup file at `path` ([`read`](Self::read) then
    /// [`verify`](Self::verify)).
    ///
    /// # Errors
    /// As [`read`](Self::read) and [`verify`](Self::verify).
    pub fn verify_file(path: &Path, expected_cluster: Option<&str>) -> Result<Self, BackupError> {
        let mut file = io::BufReader::new(File::open(path)?);
        let header = Self::read(&mut file)?;
        header.verify(&mut file, expected_cluster)?;
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(body: &[u8]) -> Vec<u8> {
        let header = BackupHeader {
            format_version: BACKUP_FORMAT_VERSION,
            cluster: "prod".to_string(),
            last_index: 42,
            last_term: 3,
            created_at_unix_ms: 1_700_000_000_000,
            body_bytes: body.len() as u64,
            body_sha256: Sha256::digest(body).into(),
        };
        let mut out = header.encode().unwrap().to_vec();
        out.extend_from_slice(body);
        out
    }

    fn check(bytes: &[u8], cluster: Option<&str>) -> Result<BackupHeader, BackupError> {
        let mut input = bytes;
        let header = BackupHeader::read(&mut input)?;
        header.verify(&mut input, cluster)?;
        Ok(header)
    }

    #[test]
    fn a_good_backup_round_trips() {
        let header = check(&backup(b"state bytes"), Some("prod")).unwrap();
        assert_eq!(header.last_index, 42);
        assert_eq!(header.last_term, 3);
        assert_eq!(header.cluster, "prod");
        assert_eq!(header.body_bytes, 11);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let good = backup(b"some state to protect");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(check(&bad, None).is_err(), "flipped byte {at} was accepted");
        }
    }

    #[test]
    fn truncation_trailing_bytes_and_a_wrong_cluster_are_refused_with_reasons() {
        let good = backup(b"some state");
        let error = check(&good[..good.len() - 1], None).unwrap_err();
        assert!(
            matches!(
                error,
                BackupError::Truncated {
                    expected: 10,
                    found: 9
                }
            ),
            "{error}"
        );
        let error = check(&good[..20], None).unwrap_err();
        assert!(
            matches!(error, BackupError::ShortHeader { found: 20 }),
            "{error}"
        );
        let mut long = good.clone();
        long.push(0);
        let error = check(&long, None).unwrap_err();
        assert!(
            matches!(error, BackupError::TrailingBytes { .. }),
            "{error}"
        );
        let error = check(&good, Some("staging")).unwrap_err();
        assert!(error.to_string().contains("\"staging\""), "{error}");
    }

    #[test]
    fn a_huge_claimed_length_allocates_nothing_and_is_truncated() {
        let mut header = BackupHeader::decode(
            &<[u8; BACKUP_HEADER_BYTES]>::try_from(&backup(b"x")[..BACKUP_HEADER_BYTES]).unwrap(),
        )
        .unwrap();
        header.body_bytes = u64::MAX;
        let bytes = header.encode().unwrap();
        let mut input: &[u8] = &[1, 2, 3];
        let decoded = BackupHeader::decode(&bytes).unwrap();
        let error = decoded.verify(&mut input, None).unwrap_err();
        assert!(
            matches!(error, BackupError::Truncated { found: 3, .. }),
            "{error}"
        );
    }
}
