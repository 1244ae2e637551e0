//! Writing the files `bot keygen` and `bot certs init` make: all at once or not at all, and
//! never over an existing file (a key that is overwritten by mistake can lock a cluster out).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::BotError;

/// File mode of private keys and cluster keys: readable and writable by the owner only.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// File mode of certificates: anyone may read them.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Write `contents` to `path`, which must not exist, with permission bits `mode`.
///
/// The bytes go to a temporary file in the same directory (created with mode 0600, so a
/// secret is never readable by others, not even for a moment), are flushed to disk, and the
/// file is then linked in place only if nothing exists at `path`: a reader sees either no
/// file or the whole file, and a concurrent writer cannot be overwritten.
///
/// # Errors
/// [`BotError::FileExists`] when `path` exists (nothing changed); [`BotError::File`] when the
/// directory cannot be written (nothing is left behind but, at worst, the temporary file,
/// which is removed on a best-effort basis).
pub fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), BotError> {
    let file_error = |source: std::io::Error| BotError::File {
        path: path.to_path_buf(),
        source,
    };
    if path.symlink_metadata().is_ok() {
        return Err(BotError::FileExists {
            path: path.to_path_buf(),
        });
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut temporary = tempfile::Builder::new()
        .prefix(".bot-new-")
        .permissions(std::fs::Permissions::from_mode(SECRET_FILE_MODE))
        .tempfile_in(directory)
        .map_err(file_error)?;
    temporary.write_all(contents).map_err(file_error)?;
    temporary
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(file_error)?;
    temporary.as_file().sync_all().map_err(file_error)?;
    match temporary.persist_noclobber(path) {
        Ok(_) => {}
        Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(BotError::FileExists {
                path: path.to_path_buf(),
            });
        }
        Err(error) => return Err(file_error(error.error)),
    }
    // The new name must survive a crash too. A directory that cannot be synced (some
    // file systems refuse) leaves a complete file, so this is not an error.
    if let Ok(handle) = std::fs::File::open(directory) {
        let _ = handle.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_new_file_gets_its_contents_and_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("secret");
        write_new_file(&secret, b"key\n", SECRET_FILE_MODE).expect("written");
        let public = dir.path().join("public");
        write_new_file(&public, b"cert\n", PUBLIC_FILE_MODE).expect("written");
        assert_eq!(std::fs::read(&secret).expect("read"), b"key\n");
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .expect("metadata")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(&secret), 0o600);
        assert_eq!(mode(&public), 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cluster.key");
        std::fs::write(&path, "old").expect("write");
        let error = write_new_file(&path, b"new", SECRET_FILE_MODE).expect_err("exists");
        assert!(
            matches!(&error, BotError::FileExists { path: named } if named == &path),
            "{error:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "old");
        // A dangling symlink counts as existing: following it could write anywhere.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).expect("symlink");
        assert!(matches!(
            write_new_file(&link, b"new", SECRET_FILE_MODE),
            Err(BotError::FileExists { .. })
        ));
        assert!(!dir.path().join("nowhere").exists());
    }
}
