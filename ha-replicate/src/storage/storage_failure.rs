//! A storage failure that stopped a replica, as a value that can be cloned, compared and sent
//! to a client (in a forwarded reply) — what [`StorageError`] cannot be, since it holds an
//! [`std::io::Error`].

use std::fmt;

use serde::{Deserialize, Serialize};

use super::StorageError;

/// What a [`StorageError`] said, kept as data: the variant, the file, the offset, the reason
/// and, for an IO error, the operating system's error kind and code. Made with
/// `From<&StorageError>`; a replica stopped by its store answers every request with
/// [`ClientError::Fatal`](crate::replica::ClientError::Fatal) carrying it.
///
/// Paths are kept as text (lossily, for a path that is not UTF-8) so that the value always
/// encodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum StorageFailure {
    /// The operating system refused a read or write ([`StorageError::Io`]). A replica stalls on
    /// these rather than stopping, so a client sees this only from a store that reports an IO
    /// error where it stops (a custom [`LogStore`](super::LogStore)).
    Io {
        /// The file involved.
        path: String,
        /// The [`std::io::ErrorKind`], by its `Debug` name (`"PermissionDenied"`).
        kind: String,
        /// The operating system's error code (`errno`), when there was one.
        raw_os_error: Option<i32>,
        /// The error's own message.
        message: String,
    },
    /// A record failed its checksum or did not decode ([`StorageError::Corrupt`]).
    Corrupt {
        /// The file involved.
        path: String,
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store's contract was broken ([`StorageError::Misuse`]): a bug.
    Misuse {
        /// Which rule was broken.
        reason: String,
    },
}

impl StorageFailure {
    /// The file involved, when the store named one.
    pub fn path(&self) -> Option<&str> {
        match self {
            StorageFailure::Io { path, .. } | StorageFailure::Corrupt { path, .. } => Some(path),
            StorageFailure::Misuse { .. } => None,
        }
    }

    /// The class of failure, for logs and metrics: `io`, `corrupt` or `misuse`.
    pub fn class(&self) -> &'static str {
        match self {
            StorageFailure::Io { .. } => "io",
            StorageFailure::Corrupt { .. } => "corrupt",
            StorageFailure::Misuse { .. } => "misuse",
        }
    }
}

impl From<&StorageError> for StorageFailure {
    fn from(error: &StorageError) -> Self {
        match error {
            StorageError::Io { path, source } => StorageFailure::Io {
                path: path.display().to_string(),
                kind: format!("{:?}", source.kind()),
                raw_os_error: source.raw_os_error(),
                message: source.to_string(),
            },
            StorageError::Corrupt {
                path,
                offset,
                reason,
            } => StorageFailure::Corrupt {
                path: path.display().to_string(),
                offset: *offset,
                reason: reason.clone(),
            },
            StorageError::Misuse(reason) => StorageFailure::Misuse {
                reason: reason.clone(),
            },
        }
    }
}

/// The same text as the [`StorageError`] it was made from.
impl fmt::Display for StorageFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageFailure::Io { path, message, .. } => {
                write!(f, "storage IO error on {path}: {message}")
            }
            StorageFailure::Corrupt {
                path,
                offset,
                reason,
            } => write!(f, "corrupt record in {path} at byte {offset}: {reason}"),
            StorageFailure::Misuse { reason } => write!(f, "storage misuse: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn each_storage_error_is_kept_with_its_fields_and_its_text() {
        let errors = [
            StorageError::Io {
                path: "/data/wal/00000001.seg".into(),
                source: io::Error::from_raw_os_error(13),
            },
            StorageError::Corrupt {
                path: "/data/wal/00000002.seg".into(),
                offset: 4096,
                reason: "checksum mismatch".into(),
            },
            StorageError::Misuse("gap before index 7".into()),
        ];
        let failures: Vec<StorageFailure> = errors.iter().map(StorageFailure::from).collect();
        assert_eq!(
            failures,
            vec![
                StorageFailure::Io {
                    path: "/data/wal/00000001.seg".into(),
                    kind: "PermissionDenied".into(),
                    raw_os_error: Some(13),
                    message: io::Error::from_raw_os_error(13).to_string(),
                },
                StorageFailure::Corrupt {
                    path: "/data/wal/00000002.seg".into(),
                    offset: 4096,
                    reason: "checksum mismatch".into(),
                },
                StorageFailure::Misuse {
                    reason: "gap before index 7".into(),
                },
            ]
        );
        for (error, failure) in errors.iter().zip(&failures) {
            assert_eq!(failure.to_string(), error.to_string());
        }
        assert_eq!(failures[1].path(), Some("/data/wal/00000002.seg"));
        assert_eq!(failures[2].path(), None);
        let classes: Vec<&str> = failures.iter().map(StorageFailure::class).collect();
        assert_eq!(classes, ["io", "corrupt", "misuse"]);
    }

    #[test]
    fn a_failure_survives_the_wire() {
        let failure = StorageFailure::Corrupt {
            path: "/data/wal/00000002.seg".into(),
            offset: 4096,
            reason: "checksum mismatch".into(),
        };
        let bytes = postcard::to_allocvec(&failure).expect("encodes");
        let decoded: StorageFailure = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(decoded, failure);
    }
}
