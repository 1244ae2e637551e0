//! `node.json` in a node's data dir: which node owns the directory and the last incarnation
//! it used.
//!
//! The incarnation orders restarts of the same node: a restarted node must come back with a
//! higher one, or the cluster takes its announcements for stale ones from the old process.
//! The gossip driver proposes wall-clock milliseconds; remembering the last one used keeps the
//! order even when the wall clock is set back between two runs.

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ha_core::{Config, ConfigError, NodeId};
use serde::{Deserialize, Serialize};

use crate::error::NodeError;

/// The file's name inside the data dir.
pub const FILE_NAME: &str = "node.json";
/// The version of the file's layout; a file with another version is refused.
pub const FORMAT_VERSION: u32 = 1;
/// Largest node.json read, in bytes; a real one is about 200 bytes.
const FILE_BYTES_MAX: u64 = 64 * 1024;

/// The contents of `node.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    /// The layout version, [`FORMAT_VERSION`].
    pub format: u32,
    /// The node that owns the data dir.
    pub node_id: NodeId,
    /// The cluster the node belongs to.
    pub cluster: String,
    /// The incarnation of the latest run.
    pub incarnation: u64,
    /// The gossip address of the latest run.
    pub bind_addr: SocketAddr,
    /// The advertised admin HTTP address of the latest run.
    pub http_addr: Option<SocketAddr>,
}

impl NodeFile {
    /// Create the data dir if needed, check that it belongs to this node, and record a new
    /// incarnation there before the node announces itself with it. Returns the new file.
    ///
    /// # Errors
    /// [`NodeError::Config`] naming `data_dir` or `cluster.name` when the directory belongs to
    /// another node or cluster; [`NodeError::DataDir`] when it cannot be read or written or its
    /// node.json is corrupt.
    pub fn claim(
        config: &Config,
        data_dir: &Path,
        fresh_incarnation: u64,
    ) -> Result<Self, NodeError> {
        fs::create_dir_all(data_dir).map_err(|error| data_dir_error(data_dir, &error))?;
        let path = data_dir.join(FILE_NAME);
        let previous = Self::load(&path)?;
        if let Some(previous) = &previous {
            previous.check_owner(config, &path)?;
        }
        let file = Self {
            format: FORMAT_VERSION,
            node_id: config.node_id.clone(),
            cluster: config.cluster.name.clone(),
            incarnation: next_incarnation(
                previous.as_ref().map(|file| file.incarnation),
                fresh_incarnation,
            ),
            bind_addr: config.advertised_addr(),
            http_addr: config.http_addr,
        };
        file.store(&path)?;
        Ok(file)
    }

    /// Read `path`, or `None` when it does not exist.
    ///
    /// # Errors
    /// [`NodeError::DataDir`] when the file cannot be read, is too large, or is not a valid
    /// node.json of this format.
    pub fn load(path: &Path) -> Result<Option<Self>, NodeError> {
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(data_dir_error(path, &error)),
        };
        let mut text = String::new();
        file.take(FILE_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .map_err(|error| data_dir_error(path, &error))?;
        let corrupt = |reason: String| NodeError::DataDir {
            path: path.to_path_buf(),
            reason: format!(
                "{reason}. It is not a node.json this library wrote; move it away if the directory \
                 is really this node's"
            ),
        };
        if text.len() as u64 > FILE_BYTES_MAX {
            return Err(corrupt(format!("larger than {FILE_BYTES_MAX} bytes")));
        }
        let file: Self = serde_json::from_str(&text).map_err(|error| corrupt(error.to_string()))?;
        if file.format != FORMAT_VERSION {
            return Err(corrupt(format!(
                "format {} where this version reads {FORMAT_VERSION}",
                file.format
            )));
        }
        Ok(Some(file))
    }

    /// Refuse a data dir that another node or cluster owns: later versions keep the
    /// replicated log here, and serving one node's log as another's would corrupt the cluster.
    fn check_owner(&self, config: &Config, path: &Path) -> Result<(), ConfigError> {
        if self.node_id != config.node_id {
            return Err(ConfigError::new(
                "data_dir",
                format!(
                    "{} belongs to node {}, not {}",
                    path.display(),
                    self.node_id,
                    config.node_id
                ),
                "give each node its own data_dir (or start it with the node_id it had)",
            ));
        }
        if self.cluster != config.cluster.name {
            return Err(ConfigError::new(
                "cluster.name",
                format!(
                    "{} was written for cluster {:?}, not {:?}",
                    path.display(),
                    self.cluster,
                    config.cluster.name
                ),
                "use the cluster name this node was started with, or a fresh data_dir",
            ));
        }
        Ok(())
    }

    /// Write the file so that a crash leaves either the old or the new version: a temporary
    /// file, synced, then renamed over the old one, then the directory synced.
    fn store(&self, path: &Path) -> Result<(), NodeError> {
        let text = serde_json::to_string_pretty(self).map_err(|error| NodeError::DataDir {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        let temporary = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&temporary, path)?;
            if let Some(directory) = path.parent() {
                fs::File::open(directory)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|error| data_dir_error(path, &error))
    }
}

/// The incarnation for a new run: the fresh proposal, unless an earlier run already used that
/// much (the wall clock went back), then one more than the earlier run.
pub fn next_incarnation(previous: Option<u64>, fresh: u64) -> u64 {
    match previous {
        Some(previous) => fresh.max(previous.saturating_add(1)),
        None => fresh,
    }
}

fn data_dir_error(path: &Path, error: &std::io::Error) -> NodeError {
    NodeError::DataDir {
        path: PathBuf::from(path),
        reason: format!("{error}; check the path and its permissions"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(id: &str, cluster: &str) -> Config {
        let mut config = Config::single(
            NodeId::new(id).expect("literal id"),
            "127.0.0.1:7101".parse().expect("literal address"),
        );
        config.cluster.name = cluster.to_string();
        config
    }

    fn io_error(error: std::io::Error) -> NodeError {
        NodeError::DataDir {
            path: PathBuf::from("test"),
            reason: error.to_string(),
        }
    }

    #[test]
    fn incarnation_only_grows() {
        assert_eq!(next_incarnation(None, 50), 50);
        assert_eq!(next_incarnation(Some(10), 50), 50);
        assert_eq!(next_incarnation(Some(50), 50), 51);
        assert_eq!(next_incarnation(Some(90), 50), 91);
        assert_eq!(next_incarnation(Some(u64::MAX), 5), u64::MAX);
    }

    #[test]
    fn claim_creates_the_dir_and_grows_the_incarnation() -> Result<(), NodeError> {
        let root = tempfile::tempdir().map_err(io_error)?;
        let dir = root.path().join("nested").join("n1");
        let first = NodeFile::claim(&config("n1", "c"), &dir, 100)?;
        assert_eq!(first.incarnation, 100);
        // A clock set back: the stored incarnation still wins.
        let second = NodeFile::claim(&config("n1", "c"), &dir, 40)?;
        assert_eq!(second.incarnation, 101);
        assert_eq!(NodeFile::load(&dir.join(FILE_NAME))?, Some(second));
        Ok(())
    }

    #[test]
    fn claim_refuses_another_nodes_or_clusters_dir() -> Result<(), NodeError> {
        let root = tempfile::tempdir().map_err(io_error)?;
        NodeFile::claim(&config("n1", "c"), root.path(), 1)?;
        match NodeFile::claim(&config("n2", "c"), root.path(), 2) {
            Err(NodeError::Config(error)) => assert_eq!(error.field, "data_dir"),
            other => panic!("expected a data_dir error, got {other:?}"),
        }
        match NodeFile::claim(&config("n1", "other"), root.path(), 2) {
            Err(NodeError::Config(error)) => assert_eq!(error.field, "cluster.name"),
            other => panic!("expected a cluster.name error, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn corrupt_file_is_refused_with_its_path() -> Result<(), NodeError> {
        let root = tempfile::tempdir().map_err(io_error)?;
        fs::write(root.path().join(FILE_NAME), "not json").map_err(io_error)?;
        match NodeFile::claim(&config("n1", "c"), root.path(), 1) {
            Err(NodeError::DataDir { path, .. }) => assert!(path.ends_with(FILE_NAME)),
            other => panic!("expected a data dir error, got {other:?}"),
        }
        Ok(())
    }
}
