//! Why the bot stopped, and the exit code and message each reason gets.

use ha_core::ConfigError;
use ha_gossip::GossipError;

use crate::cli::flag_for_field;
use crate::demo_error::DemoError;

/// Exit code for an invalid command line or configuration (clap uses it for usage errors too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a failure at run time.
pub const EXIT_FAILURE: u8 = 1;

/// Everything that ends the bot with a non-zero exit code.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The configuration is invalid; nothing was started. Fix the named field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The requested feature does not exist in this version; nothing was done.
    #[error("{0}")]
    NotAvailable(String),
    /// The node could not start (a bad config file, a data dir owned by another node, a port
    /// in use, storage that cannot be recovered) or failed while running.
    #[error(transparent)]
    Node(#[from] ha::NodeError),
    /// A socket could not be bound; nothing was started.
    #[error(
        "cannot bind {addr}: {source}. Is another node or program using it? Pick another \
         address"
    )]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// Gossip could not start or stopped unexpectedly.
    #[error("gossip: {0}")]
    Gossip(#[from] GossipError),
    /// The process could not set up its runtime or signal handlers.
    #[error("runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// A step of `bot demo` failed or timed out.
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// `bot status --http` was given something other than `host:port`; nothing was
    /// contacted. Pass a node's admin HTTP address, e.g. `127.0.0.1:8101`.
    #[error("status: --http {addr:?} is not a host:port address: {reason}")]
    StatusAddress {
        /// The argument as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer from the node's admin HTTP API (refused, timed out, or the connection
    /// broke). Check that the node runs and serves HTTP on that address, or ask another node.
    #[error("status: cannot reach {url}: {reason}. Is a node serving its admin HTTP API there?")]
    StatusUnreachable {
        /// The URL asked.
        url: String,
        /// Why it could not be reached.
        reason: String,
    },
    /// The node answered, but not with a cluster table (an error status, a body too large, or
    /// JSON of another shape). The reason says which; ask another node or check its version.
    #[error("status: {url} answered badly: {reason}")]
    StatusResponse {
        /// The URL asked.
        url: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The node refused the admin call: 401 (no token, or one it does not know) or 403 (the
    /// token's role does not allow it). The message is the node's. Pass a token with
    /// `--token` or `BOT_ADMIN_TOKEN`, or one with a higher role.
    #[error("{url} refused the call: HTTP {status}: {message}. {hint}")]
    AdminDenied {
        /// The URL asked.
        url: String,
        /// 401 or 403.
        status: u16,
        /// The node's message, cleaned of control characters.
        message: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// An admin client option is unusable (a CA file that cannot be read or holds no
    /// certificate, a token with spaces or control characters); nothing was contacted.
    #[error("{0}")]
    AdminClient(String),
    /// A file `bot keygen` or `bot certs init` would write exists already. It was not
    /// touched, and nothing after it was written (what was written before is listed on
    /// stdout). Move it away, or write to another --out or --dir.
    #[error("{} already exists and is never overwritten; move it away or write elsewhere", path.display())]
    FileExists {
        /// The file that exists.
        path: std::path::PathBuf,
    },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `bot certs init` was given a bad argument, or the CA in --dir cannot be used; nothing
    /// was written. The message says what to change.
    #[error("certs: {0}")]
    Certs(String),
    /// The random source or the key and certificate generator failed; files written before
    /// it are listed on stdout.
    #[error("{0}")]
    Crypto(String),
    /// `bot members`: the node could not be reached, refused the change (the reason code and
    /// message are the node's: nothing changed), or answered badly.
    #[error("members: {0}")]
    Members(String),
}

impl BotError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            BotError::Config(_)
            | BotError::NotAvailable(_)
            | BotError::StatusAddress { .. }
            | BotError::AdminClient(_)
            | BotError::FileExists { .. }
            | BotError::Certs(_) => EXIT_USAGE,
            BotError::Gossip(GossipError::Config(_))
            | BotError::Node(ha::NodeError::Config(_) | ha::NodeError::ConfigFile { .. }) => {
                EXIT_USAGE
            }
            BotError::Node(ha::NodeError::DataDir { .. }) => EXIT_USAGE,
            // A key, certificate or token file the node cannot use: fix the file and retry.
            BotError::Node(ha::NodeError::SecurityFile { .. }) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// The text to print on stderr: configuration errors are laid out field by field, with the
    /// flag that sets the field, so the fix is easy to find.
    pub fn report(&self) -> String {
        let config_error = match self {
            BotError::Config(error)
            | BotError::Gossip(GossipError::Config(error))
            | BotError::Node(ha::NodeError::Config(error)) => error,
            BotError::NotAvailable(message) => return format!("bot: {message}"),
            BotError::Node(ha::NodeError::SecurityFile { path, reason }) => {
                return format!(
                    "bot: cannot use a security file\n  file:    {}\n  problem: {reason}",
                    path.display()
                );
            }
            other => return format!("bot: error: {other}"),
        };
        let flag = flag_for_field(config_error.field)
            .map(|flag| format!("\n  flag:    {flag}"))
            .unwrap_or_default();
        format!(
            "bot: invalid configuration\n  field:   {}{flag}\n  problem: {}\n  fix:     {}",
            config_error.field, config_error.problem, config_error.fix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_exit_2_and_name_field_and_flag() {
        let error = BotError::from(ConfigError::new("cluster.name", "bad", "rename it"));
        assert_eq!(error.exit_code(), EXIT_USAGE);
        let report = error.report();
        assert!(report.contains("cluster.name"), "{report}");
        assert!(report.contains("--cluster"), "{report}");
        assert!(report.contains("rename it"), "{report}");
    }

    #[test]
    fn status_exits_2_for_a_bad_address_and_1_when_unreachable() {
        let bad_address = BotError::StatusAddress {
            addr: "nowhere".to_string(),
            reason: "no port".to_string(),
        };
        assert_eq!(bad_address.exit_code(), EXIT_USAGE);
        let unreachable = BotError::StatusUnreachable {
            url: "http://127.0.0.1:1/v1/cluster".to_string(),
            reason: "connection refused".to_string(),
        };
        assert_eq!(unreachable.exit_code(), EXIT_FAILURE);
        let bad_response = BotError::StatusResponse {
            url: "http://127.0.0.1:1/v1/cluster".to_string(),
            reason: "503".to_string(),
        };
        assert_eq!(bad_response.exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn a_start_refused_as_insecure_exits_2_and_names_the_flags() {
        let config = ha::Config::single(
            "n1".parse().expect("valid id"),
            "10.0.0.1:7101".parse().expect("valid address"),
        );
        let refusal = config
            .check_exposure(ha_core::Protection::default())
            .expect_err("a non-loopback bind without protection is refused");
        let error = BotError::Node(ha::NodeError::Config(refusal));
        assert_eq!(error.exit_code(), EXIT_USAGE);
        let report = error.report();
        for expected in [
            "field:   security",
            "--cluster-key-file",
            "--tls-cert",
            "--insecure",
        ] {
            assert!(report.contains(expected), "{expected:?} missing: {report}");
        }
    }

    #[test]
    fn a_bad_security_file_exits_2_and_names_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cluster.key");
        std::fs::write(&path, "not a key\n").expect("write");
        let refusal = ha::security::read_cluster_key_file(&path)
            .expect_err("a line that is not a key is refused");
        let error = BotError::Node(refusal);
        assert_eq!(error.exit_code(), EXIT_USAGE);
        let report = error.report();
        assert!(report.contains("cluster.key"), "{report}");
        assert!(report.contains("line 1"), "{report}");
        assert!(!report.contains("not a key\n"), "{report}");
    }

    #[test]
    fn runtime_errors_exit_1() {
        let error = BotError::Runtime(std::io::Error::other("boom"));
        assert_eq!(error.exit_code(), EXIT_FAILURE);
    }
}
