//! What protects a node, resolved at start (issue 13): the cluster key file read, TLS material
//! and admin tokens loaded, the exposure rule checked, and the warning an insecure node repeats.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ha_core::keyring::ClusterKey;

use crate::admin_tokens::AdminTokens;
use crate::error::NodeError;

/// How often a node started with `security.insecure` repeats its warning.
pub const INSECURE_WARNING_INTERVAL: Duration = Duration::from_secs(600);
/// Largest cluster key file, in bytes.
pub const CLUSTER_KEY_FILE_BYTES_MAX: u64 = 64 * 1024;

/// The security material a running node uses.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeSecurity {
    /// Admin API tokens; `None`: the API takes no token (and binds only to loopback unless
    /// insecure).
    pub(crate) admin_tokens: Option<Arc<AdminTokens>>,
    /// The admin API's HTTPS configuration; `None`: plain HTTP.
    pub(crate) https: Option<Arc<rustls::ServerConfig>>,
    /// Mutual TLS between nodes; `None`: plaintext, or sealed with the cluster key.
    pub(crate) tls: Option<ha_replicate::tls::TlsIdentity>,
}

/// Read a cluster key file: one key per line as 64 hex digits, current first; blank lines and
/// lines starting with `#` are ignored.
///
/// # Errors
/// [`NodeError::SecurityFile`] when the file cannot be read, is too large, holds no key or a
/// line that is not a key (the line number is given, the line is not).
pub fn read_cluster_key_file(path: &Path) -> Result<Vec<ClusterKey>, NodeError> {
    let failed = |reason: String| NodeError::SecurityFile {
        path: path.to_path_buf(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|error| failed(format!("cannot read it: {error}")))?
        .len();
    if size > CLUSTER_KEY_FILE_BYTES_MAX {
        return Err(failed(format!(
            "is {size} bytes; a key file holds a few 64-digit keys (limit \
             {CLUSTER_KEY_FILE_BYTES_MAX})"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| failed(format!("cannot read it: {error}")))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = ClusterKey::from_hex(line).map_err(|_| {
            failed(format!(
                "line {} is not a key of 64 hex digits (make one with `bot keygen`)",
                number + 1
            ))
        })?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(failed(
            "holds no key; put the current key (64 hex digits, `bot keygen`) on the first line"
                .to_string(),
        ));
    }
    Ok(keys)
}

/// Log what runs unprotected at WARN now and every [`INSECURE_WARNING_INTERVAL`] until the
/// returned task is aborted. Nothing is spawned when `exposed` is empty.
pub(crate) fn warn_insecure(exposed: Vec<String>) -> Option<tokio::task::JoinHandle<()>> {
    repeat_warning(exposed, |line| {
        tracing::warn!(
            "running insecure (security.insecure = true): {line}; add a cluster key, TLS \
             certificates and admin tokens (README, \"Running it for real\")"
        );
    })
}

fn repeat_warning(
    exposed: Vec<String>,
    emit: impl Fn(&str) + Send + 'static,
) -> Option<tokio::task::JoinHandle<()>> {
    if exposed.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(INSECURE_WARNING_INTERVAL);
        loop {
            ticks.tick().await;
            for line in &exposed {
                emit(line);
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_read_current_first_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cluster.key");
        let first = "11".repeat(32);
        let second = "22".repeat(32);
        std::fs::write(&path, format!("# rotated 2026-12\n{first}\n\n{second}\n")).expect("write");
        let keys = read_cluster_key_file(&path).expect("valid");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], ClusterKey::from_hex(&first).expect("hex"));
        std::fs::write(&path, format!("{first}\nnot-a-key\n")).expect("write");
        let error = read_cluster_key_file(&path)
            .expect_err("bad line")
            .to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(!error.contains(&first), "the key leaked: {error}");
        std::fs::write(&path, "# empty\n").expect("write");
        assert!(read_cluster_key_file(&path).is_err());
        assert!(read_cluster_key_file(&dir.path().join("missing")).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_insecure_warning_repeats_every_ten_minutes() {
        assert!(warn_insecure(Vec::new()).is_none());
        let emitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&emitted);
        let task = repeat_warning(vec!["a".to_string(), "b".to_string()], move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .expect("spawned");
        let count = || emitted.load(std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(count(), 2, "both lines at start");
        tokio::time::sleep(INSECURE_WARNING_INTERVAL - Duration::from_secs(2)).await;
        assert_eq!(count(), 2, "nothing more within ten minutes");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(count(), 4, "again after ten minutes");
        task.abort();
    }
}
