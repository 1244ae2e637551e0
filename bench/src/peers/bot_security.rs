//! How a [`BotCluster`](super::BotCluster)'s nodes are secured (issue 13), and the files for
//! it made the way an operator makes them: `bot certs init` (a cluster CA and one certificate
//! per node), `bot keygen --out` (the cluster key) and `bot keygen` again for an admin token.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::PeerError;

/// Most time one `bot certs init` or `bot keygen` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest standard output read from such a command, in bytes.
const COMMAND_OUTPUT_BYTES_MAX: u64 = 64 * 1024;
/// The name of the harness's token in the token file (it shows in the nodes' audit log).
pub const BENCH_TOKEN_NAME: &str = "bench";

/// The security flags every node of a [`BotCluster`](super::BotCluster) gets. The default is
/// none of them: today's loopback plaintext.
#[derive(Clone, Debug, Default)]
pub struct BotSecurity {
    /// A directory made by `bot certs init` for the cluster's node ids: node `<id>` gets
    /// `--tls-cert DIR/<id>.pem --tls-key DIR/<id>.key --tls-ca DIR/ca.pem` (mutual TLS
    /// between nodes, and HTTPS on the admin API unless [`https`](Self::https) is false).
    pub certs_dir: Option<PathBuf>,
    /// `--cluster-key-file`.
    pub cluster_key_file: Option<PathBuf>,
    /// `--admin-token-file`.
    pub admin_token_file: Option<PathBuf>,
    /// The token the cluster's probes and [`target`](super::BotCluster::target)s send; one of
    /// the tokens in [`admin_token_file`](Self::admin_token_file).
    pub admin_token: Option<String>,
    /// Whether clients reach the admin API over HTTPS, trusting `DIR/ca.pem`.
    pub https: bool,
    /// Extra arguments for every node when secured this way (e.g. a flag that keeps the admin
    /// API on plain HTTP next to mutual TLS between nodes).
    pub extra_args: Vec<String>,
}

impl BotSecurity {
    /// Everything on: make `DIR/certs` with `bot certs init --dir DIR/certs --cluster
    /// <cluster_name> --nodes n1,..,nN`, the cluster key `DIR/cluster.key` with `bot keygen
    /// --out`, and an admin token (a second `bot keygen`) in `DIR/tokens` as `admin bench
    /// TOKEN` (mode 0600). `dir` must not hold such files already.
    ///
    /// # Errors
    /// [`PeerError::Command`] when a `bot` command fails or takes more than 30 s (its stderr in
    /// the message); [`PeerError::Io`] for the token file.
    pub fn generate(
        executable: &Path,
        dir: &Path,
        cluster_name: &str,
        nodes: usize,
    ) -> Result<Self, PeerError> {
        std::fs::create_dir_all(dir)?;
        let certs_dir = dir.join("certs");
        let ids: Vec<String> = (1..=nodes).map(|index| format!("n{index}")).collect();
        let mut certs = Command::new(executable);
        certs
            .arg("certs")
            .arg("init")
            .arg("--dir")
            .arg(&certs_dir)
            .arg("--cluster")
            .arg(cluster_name)
            .arg("--nodes")
            .arg(ids.join(","));
        run_bounded(&mut certs, "bot certs init")?;
        let cluster_key_file = dir.join("cluster.key");
        let mut keygen = Command::new(executable);
        keygen.arg("keygen").arg("--out").arg(&cluster_key_file);
        run_bounded(&mut keygen, "bot keygen --out")?;
        let token_output = run_bounded(Command::new(executable).arg("keygen"), "bot keygen")?;
        let token = String::from_utf8_lossy(&token_output.stdout)
            .trim()
            .to_string();
        if token.len() < 16 || !token.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(PeerError::Command(format!(
                "bot keygen printed {} characters, not a hex key",
                token.len()
            )));
        }
        let admin_token_file = dir.join("tokens");
        write_private(
            &admin_token_file,
            format!("admin {BENCH_TOKEN_NAME} {token}\n").as_bytes(),
        )?;
        Ok(Self {
            certs_dir: Some(certs_dir),
            cluster_key_file: Some(cluster_key_file),
            admin_token_file: Some(admin_token_file),
            admin_token: Some(token),
            https: true,
            extra_args: Vec::new(),
        })
    }

    /// The cluster CA's certificate (`DIR/ca.pem`), when the nodes have certificates.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.certs_dir.as_ref().map(|dir| dir.join("ca.pem"))
    }

    /// The flags of node `id`.
    pub fn node_args(&self, id: &str) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |name: &str, path: PathBuf| {
            args.push(name.to_string());
            args.push(path.display().to_string());
        };
        if let Some(dir) = &self.certs_dir {
            flag("--tls-cert", dir.join(format!("{id}.pem")));
            flag("--tls-key", dir.join(format!("{id}.key")));
            flag("--tls-ca", dir.join("ca.pem"));
        }
        if let Some(file) = &self.cluster_key_file {
            flag("--cluster-key-file", file.clone());
        }
        if let Some(file) = &self.admin_token_file {
            flag("--admin-token-file", file.clone());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The CA clients trust when [`https`](Self::https) is on.
    ///
    /// # Errors
    /// [`PeerError::Io`] reading `DIR/ca.pem`; [`PeerError::Http`] when it is not PEM.
    pub fn root_certificate(&self) -> Result<Option<reqwest::Certificate>, PeerError> {
        match (self.https, self.ca_file()) {
            (true, Some(file)) => {
                let pem = std::fs::read(&file)?;
                reqwest::Certificate::from_pem(&pem)
                    .map(Some)
                    .map_err(|error| PeerError::Http(format!("{}: {error}", file.display())))
            }
            _ => Ok(None),
        }
    }
}

/// Write `bytes` to a new file readable by its owner only.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PeerError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

/// Run `command` to completion within [`COMMAND_TIMEOUT`] (killed after it), stdout captured.
fn run_bounded(command: &mut Command, what: &str) -> Result<Output, PeerError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(PeerError::Command(format!(
                "{what}: no exit within {COMMAND_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        pipe.take(COMMAND_OUTPUT_BYTES_MAX)
            .read_to_end(&mut stdout)?;
    }
    if let Some(pipe) = child.stderr.take() {
        pipe.take(COMMAND_OUTPUT_BYTES_MAX)
            .read_to_end(&mut stderr)?;
    }
    if !status.success() {
        return Err(PeerError::Command(format!(
            "{what} exited with {status}: {}",
            String::from_utf8_lossy(&stderr).trim()
        )));
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_gets_its_own_certificate_the_shared_ca_key_and_token_files() {
        let security = BotSecurity {
            certs_dir: Some(PathBuf::from("/s/certs")),
            cluster_key_file: Some(PathBuf::from("/s/cluster.key")),
            admin_token_file: Some(PathBuf::from("/s/tokens")),
            admin_token: Some("0123456789abcdef".to_string()),
            https: true,
            extra_args: vec!["--extra".to_string()],
        };
        assert_eq!(
            security.node_args("n2"),
            [
                "--tls-cert",
                "/s/certs/n2.pem",
                "--tls-key",
                "/s/certs/n2.key",
                "--tls-ca",
                "/s/certs/ca.pem",
                "--cluster-key-file",
                "/s/cluster.key",
                "--admin-token-file",
                "/s/tokens",
                "--extra",
            ]
        );
        assert!(BotSecurity::default().node_args("n1").is_empty());
    }
}
