//! `bot keygen [--out FILE]`: a fresh cluster key (32 bytes from the operating system's
//! random source, as 64 lowercase hex digits and a newline).
//!
//! The same text works as an admin API token (a line `ROLE NAME TOKEN` of
//! `--admin-token-file`), so one command makes both kinds of secret.

use rand::TryRng;

use crate::cli::KeygenArgs;
use crate::error::BotError;
use crate::new_file::{SECRET_FILE_MODE, write_new_file};

/// Bytes in a cluster key.
pub const CLUSTER_KEY_BYTES: usize = 32;

/// Print a fresh key on stdout, or write it to `--out` (mode 0600, never over an existing
/// file; the path is then printed on stderr).
///
/// # Errors
/// [`BotError::FileExists`] when `--out` exists (nothing changed); [`BotError::File`] when it
/// cannot be written; [`BotError::Crypto`] when the random source fails.
pub fn run(args: &KeygenArgs) -> Result<(), BotError> {
    let line = key_line()?;
    match &args.out {
        Some(path) => {
            write_new_file(path, line.as_bytes(), SECRET_FILE_MODE)?;
            eprintln!(
                "bot: wrote a new cluster key to {} (mode 0600)",
                path.display()
            );
        }
        None => print!("{line}"),
    }
    Ok(())
}

/// A fresh key as 64 lowercase hex digits and a newline.
///
/// # Errors
/// [`BotError::Crypto`] when the operating system's random source fails.
pub fn key_line() -> Result<String, BotError> {
    let mut key = [0u8; CLUSTER_KEY_BYTES];
    rand::rngs::SysRng
        .try_fill_bytes(&mut key)
        .map_err(|error| BotError::Crypto(format!("the system random source failed: {error}")))?;
    Ok(format!("{}\n", hex::encode(key)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use ha::core::keyring::ClusterKey;

    use super::*;

    #[test]
    fn a_key_is_64_lowercase_hex_digits_a_cluster_key_accepts() {
        let line = key_line().expect("random source");
        let key = line.strip_suffix('\n').expect("ends with a newline");
        assert_eq!(key.len(), 2 * CLUSTER_KEY_BYTES);
        assert!(
            key.chars()
                .all(|character| matches!(character, '0'..='9' | 'a'..='f')),
            "{key}"
        );
        assert!(ClusterKey::from_hex(key).is_ok());
        assert_ne!(line, key_line().expect("random source"), "keys differ");
    }

    #[test]
    fn out_writes_a_0600_file_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cluster.key");
        let args = KeygenArgs {
            out: Some(path.clone()),
        };
        run(&args).expect("written");
        let written = std::fs::read_to_string(&path).expect("read");
        let keys = ha::security::read_cluster_key_file(&path).expect("a node reads the file");
        assert_eq!(keys.len(), 1);
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);

        let error = run(&args).expect_err("the file exists");
        assert!(
            matches!(&error, BotError::FileExists { path: named } if named == &path),
            "{error:?}"
        );
        assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            written,
            "the old key is kept"
        );

        let missing_dir = KeygenArgs {
            out: Some(PathBuf::from(dir.path()).join("no/such/dir/key")),
        };
        assert!(matches!(run(&missing_dir), Err(BotError::File { .. })));
    }
}
