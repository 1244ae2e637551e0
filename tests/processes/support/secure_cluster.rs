//! Secured `bot` clusters for the security tests: certificates from `bot certs init`, cluster
//! keys from `bot keygen`, an admin token file with one token per role, and the refusal
//! counters (`ha_transport_refusals_total{cause}`) read from the nodes' `/v1/metrics`.

use std::collections::BTreeMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::cluster::{AdminAccess, TestCluster};
use super::{Bot, Finished};

/// The cluster name every secured test cluster uses (it is in the node certificates' SANs).
pub const CLUSTER: &str = "bot-test";
/// A `bot keygen` or `bot certs init` run takes well under this.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Every refusal cause of the transport, as `ha_transport_refusals_total` labels them.
pub const CAUSES: [&str; 15] = [
    "oversized",
    "malformed",
    "wrong_cluster",
    "wrong_key",
    "forged",
    "version",
    "unexpected_peer",
    "handshake_timeout",
    "connection_limit",
    "plaintext",
    "tls_handshake",
    "wrong_ca",
    "cert_expired",
    "no_certificate",
    "identity_mismatch",
];

/// Causes that only an attacker or a misconfigured node produces: a rotation done in the
/// right order must never see one. (A restart may cut a connection mid-frame or
/// mid-handshake, so `malformed`, `tls_handshake` and `handshake_timeout` are not in it.)
pub const ATTACK_CAUSES: [&str; 8] = [
    "wrong_cluster",
    "wrong_key",
    "forged",
    "plaintext",
    "wrong_ca",
    "cert_expired",
    "no_certificate",
    "identity_mismatch",
];

/// Run a `bot` tool command and insist that it succeeds.
///
/// # Panics
/// When it does not exit 0 within a minute.
pub fn run_tool(arguments: &[&str]) -> Finished {
    let finished = Bot::start(arguments).finish(TOOL_TIMEOUT);
    assert_eq!(
        finished.status.code(),
        Some(0),
        "bot {arguments:?} failed:\nstdout:\n{}\nstderr:\n{}",
        finished.stdout,
        finished.stderr
    );
    finished
}

/// A CA and one certificate per node, made by `bot certs init` in `dir`.
pub struct CertDir {
    /// The directory holding `ca.pem`, `ca.key`, `<id>.pem`, `<id>.key`.
    pub dir: PathBuf,
}

impl CertDir {
    /// `bot certs init --dir DIR --cluster bot-test --nodes <nodes>`.
    pub fn init(dir: &Path, nodes: &[&str]) -> Self {
        let dir_text = dir.to_string_lossy().into_owned();
        let finished = run_tool(&[
            "certs",
            "init",
            "--dir",
            &dir_text,
            "--cluster",
            CLUSTER,
            "--nodes",
            &nodes.join(","),
        ]);
        let this = Self {
            dir: dir.to_path_buf(),
        };
        for file in [this.ca()]
            .into_iter()
            .chain(nodes.iter().flat_map(|id| [this.cert(id), this.key(id)]))
        {
            assert!(
                file.is_file(),
                "`bot certs init` did not write {}; it printed:\n{}",
                file.display(),
                finished.stdout
            );
        }
        this
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Node `id`'s certificate.
    pub fn cert(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.pem"))
    }

    /// Node `id`'s private key.
    pub fn key(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.key"))
    }

    /// The `--tls-*` flags for a node presenting `id`'s certificate and trusting `ca_file`.
    pub fn flags_for(&self, id: &str, ca_file: &Path) -> Vec<String> {
        tls_flags(&self.cert(id), &self.key(id), ca_file)
    }
}

/// `--tls-cert CERT --tls-key KEY --tls-ca CA`.
pub fn tls_flags(cert: &Path, key: &Path, ca: &Path) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        cert.to_string_lossy().into_owned(),
        "--tls-key".into(),
        key.to_string_lossy().into_owned(),
        "--tls-ca".into(),
        ca.to_string_lossy().into_owned(),
    ]
}

/// `--cluster-key-file FILE`.
pub fn key_flags(file: &Path) -> Vec<String> {
    vec![
        "--cluster-key-file".into(),
        file.to_string_lossy().into_owned(),
    ]
}

/// A fresh cluster key from `bot keygen` (64 lowercase hex digits).
///
/// # Panics
/// When `bot keygen` fails or prints something else.
pub fn keygen() -> String {
    let finished = run_tool(&["keygen"]);
    let key = finished.stdout.trim().to_string();
    assert!(
        key.len() == 64
            && key
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)),
        "`bot keygen` printed {:?}, not 64 lowercase hex digits",
        finished.stdout
    );
    key
}

/// `bot keygen --out FILE`; returns the key written.
///
/// # Panics
/// When it fails, or the file is not a key readable only by its owner.
pub fn keygen_to(file: &Path) -> String {
    let file_text = file.to_string_lossy().into_owned();
    run_tool(&["keygen", "--out", &file_text]);
    let key = std::fs::read_to_string(file).expect("the key file");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(file)
            .expect("key file metadata")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "the key file is readable by others");
    let key = key.trim().to_string();
    assert_eq!(key.len(), 64, "{key:?}");
    key
}

/// One token per role, written to a token file.
pub struct Tokens {
    /// The file (`ROLE NAME TOKEN` lines).
    pub file: PathBuf,
    /// Role `read`, named `reader`.
    pub read: String,
    /// Role `write`, named `writer`.
    pub write: String,
    /// Role `admin`, named `operator`.
    pub admin: String,
}

/// 32 hex digits, different on every call.
fn random_token() -> String {
    let mut text = String::new();
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos()),
        );
        text.push_str(&format!("{:016x}", hasher.finish()));
    }
    text
}

impl Tokens {
    /// Fresh tokens written to `file`.
    pub fn write(file: &Path) -> Self {
        let tokens = Self {
            file: file.to_path_buf(),
            read: random_token(),
            write: random_token(),
            admin: random_token(),
        };
        std::fs::write(
            file,
            format!(
                "# test tokens\nread reader {}\nwrite writer {}\nadmin operator {}\n",
                tokens.read, tokens.write, tokens.admin
            ),
        )
        .expect("write the token file");
        tokens
    }

    /// `--admin-token-file FILE`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--admin-token-file".into(),
            self.file.to_string_lossy().into_owned(),
        ]
    }
}

/// The refusal counters of one node: `ha_transport_refusals_total{cause=...}` by cause, from
/// its `/v1/metrics` (`None` when it does not answer).
pub fn refusals(cluster: &TestCluster, index: usize) -> Option<BTreeMap<String, u64>> {
    let (status, body) = cluster.call(index, "GET", "/v1/metrics", "")?;
    let Value::String(text) = body else {
        return None;
    };
    if status != 200 {
        return None;
    }
    Some(parse_refusals(&text))
}

/// The `ha_transport_refusals_total` samples of a metrics text, by cause.
pub fn parse_refusals(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("ha_transport_refusals_total{cause=\"") else {
            continue;
        };
        let Some((cause, value)) = rest.split_once("\"}") else {
            continue;
        };
        // Counters are integers; Prometheus text may print them as floats.
        if let Ok(value) = value.trim().parse::<f64>() {
            counts.insert(cause.to_string(), value as u64);
        }
    }
    counts
}

/// Add `more` into `total`, cause by cause.
pub fn add_refusals(total: &mut BTreeMap<String, u64>, more: &BTreeMap<String, u64>) {
    for (cause, count) in more {
        *total.entry(cause.clone()).or_default() += count;
    }
}

/// The sum of `cause` over the running nodes `indexes`.
pub fn refusals_of(cluster: &TestCluster, indexes: &[usize], cause: &str) -> u64 {
    indexes
        .iter()
        .filter_map(|&index| refusals(cluster, index))
        .map(|counts| counts.get(cause).copied().unwrap_or(0))
        .sum()
}

/// Everything a secured cluster of `n1`, `n2`, ... needs, in one temporary directory: a CA
/// and node certificates (`bot certs init`), a cluster key (`bot keygen --out`) and a token
/// file with one token per role.
pub struct Material {
    /// Holds every file; removed when dropped.
    pub dir: tempfile::TempDir,
    /// The CA and the node certificates.
    pub certs: CertDir,
    /// The cluster key file.
    pub key_file: PathBuf,
    /// The admin tokens.
    pub tokens: Tokens,
}

/// `n1`, `n2`, ... `n<count>`.
pub fn node_ids(count: usize) -> Vec<String> {
    (1..=count).map(|number| format!("n{number}")).collect()
}

impl Material {
    /// Make the files for `nodes` nodes.
    pub fn create(nodes: usize) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ids = node_ids(nodes);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let certs = CertDir::init(&dir.path().join("certs"), &ids);
        let key_file = dir.path().join("cluster.key");
        keygen_to(&key_file);
        let tokens = Tokens::write(&dir.path().join("tokens"));
        Self {
            dir,
            certs,
            key_file,
            tokens,
        }
    }

    /// The flags of node `id`: the cluster key, its certificate, and the admin tokens.
    pub fn node_flags(&self, id: &str) -> Vec<String> {
        let mut flags = key_flags(&self.key_file);
        flags.extend(self.certs.flags_for(id, &self.certs.ca()));
        flags.extend(self.tokens.flags());
        flags
    }

    /// HTTPS trusting the cluster CA, sending `token`.
    pub fn access(&self, token: &str) -> AdminAccess {
        AdminAccess {
            ca_files: vec![self.certs.ca()],
            token: Some(token.to_string()),
        }
    }

    /// Start `priorities.len()` nodes with [`node_flags`](Self::node_flags), reached over
    /// HTTPS with the admin token.
    pub fn start_cluster(&self, priorities: &[u32]) -> TestCluster {
        TestCluster::start_secured(
            priorities,
            |id| self.node_flags(id),
            Some(self.access(&self.tokens.admin)),
        )
    }
}

/// Copy the directory tree `from` to `to` (regular files and directories only).
///
/// # Panics
/// When something cannot be read or written.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|error| panic!("mkdir {}: {error}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|error| panic!("read {}: {error}", from.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let kind = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|error| panic!("copy {}: {error}", entry.path().display()));
        }
    }
}

/// The command line of a process that takes node `index`'s place (its bind address, the
/// same seeds and cluster name) as node `id`, with `data_dir` and the security `flags`.
pub fn stand_in_arguments(
    cluster: &TestCluster,
    index: usize,
    id: &str,
    data_dir: &Path,
    flags: &[String],
) -> Vec<String> {
    let seeds: Vec<String> = (0..cluster.specs.len())
        .filter(|&other| other != index)
        .map(|other| cluster.specs[other].bind.to_string())
        .collect();
    let mut arguments: Vec<String> = [
        "--id",
        id,
        "--bind",
        &cluster.specs[index].bind.to_string(),
        "--seeds",
        &seeds.join(","),
        "--data-dir",
        &data_dir.to_string_lossy(),
        "--cluster",
        CLUSTER,
        "--bootstrap-expect",
        &cluster.specs.len().to_string(),
        "--stop-on-stdin-eof",
    ]
    .iter()
    .map(|argument| argument.to_string())
    .collect();
    arguments.extend(flags.iter().cloned());
    arguments
}
