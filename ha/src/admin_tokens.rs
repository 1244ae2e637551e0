//! Admin API bearer tokens with roles (issue 13, item 4).
//!
//! A token file holds one token per line, `ROLE NAME TOKEN`: `ROLE` is `read`, `write` or
//! `admin`; `NAME` says whose token it is (it appears in the audit log, the token never does);
//! `TOKEN` is 16 to 256 printable ASCII characters (`bot keygen` makes a good one). Blank lines
//! and lines starting with `#` are ignored.
//!
//! Tokens are kept as SHA-256 digests and a presented token is compared with every digest in
//! constant time, so neither the time of a refusal nor the memory of the node gives a token
//! away.

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Most tokens in one file.
pub const ADMIN_TOKENS_MAX: usize = 1024;
/// Largest token file, in bytes.
pub const ADMIN_TOKEN_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Shortest token, in characters.
pub const ADMIN_TOKEN_CHARS_MIN: usize = 16;
/// Longest token, in characters (a longer `Authorization` header is refused unread).
pub const ADMIN_TOKEN_CHARS_MAX: usize = 256;
/// Longest token name, in characters.
pub const ADMIN_TOKEN_NAME_CHARS_MAX: usize = 64;

/// What a token may do on the admin API. Each role allows what the one before it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AdminRole {
    /// `GET` on the read paths: health, cluster, metrics, failover history, KV reads.
    Read,
    /// Also KV writes, locks and the host's state-changing routes.
    Write,
    /// Also failover, membership changes, snapshots and backups.
    Admin,
}

impl AdminRole {
    /// The name used in token files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Read => "read",
            AdminRole::Write => "write",
            AdminRole::Admin => "admin",
        }
    }

    /// Whether this role may make a call that needs `needed`.
    pub fn allows(self, needed: AdminRole) -> bool {
        self >= needed
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(AdminRole::Read),
            "write" => Some(AdminRole::Write),
            "admin" => Some(AdminRole::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for AdminRole {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A token file line that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("admin token file, line {line}: {problem}")]
pub struct AdminTokenError {
    /// The line, counted from 1 (0: the file as a whole).
    pub line: usize,
    /// What is wrong with it (never the token itself).
    pub problem: String,
}

impl AdminTokenError {
    fn new(line: usize, problem: impl Into<String>) -> Self {
        Self {
            line,
            problem: problem.into(),
        }
    }
}

/// Who a checked token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminIdentity {
    /// The token's name from the file.
    pub name: String,
    /// What it may do.
    pub role: AdminRole,
}

#[derive(Clone)]
struct TokenEntry {
    identity: AdminIdentity,
    digest: [u8; 32],
}

/// The admin API's tokens, loaded from a token file or built in code.
///
/// ```
/// use ha::{AdminRole, AdminTokens};
/// let tokens = AdminTokens::parse(
///     "# who may do what\nread grafana 0123456789abcdef0123\nadmin alice fedcba9876543210fedc\n",
/// )
/// .unwrap();
/// let alice = tokens.authenticate(b"fedcba9876543210fedc").unwrap();
/// assert_eq!((alice.name.as_str(), alice.role), ("alice", AdminRole::Admin));
/// assert!(tokens.authenticate(b"fedcba9876543210fedd").is_none());
/// assert!(AdminTokens::parse("root bob 0123456789abcdef0123").is_err());
/// ```
#[derive(Clone, Default)]
pub struct AdminTokens {
    entries: Vec<TokenEntry>,
}

impl AdminTokens {
    /// No tokens yet; add them with [`with_token`](Self::with_token).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same tokens plus `token`, named `name`, with `role`.
    ///
    /// # Errors
    /// An [`AdminTokenError`] (line 0) for a name or token outside the limits, a duplicate
    /// token, or more than [`ADMIN_TOKENS_MAX`] tokens.
    pub fn with_token(
        mut self,
        role: AdminRole,
        name: &str,
        token: &str,
    ) -> Result<Self, AdminTokenError> {
        self.push(0, role, name, token)?;
        Ok(self)
    }

    /// Parse the text of a token file.
    ///
    /// # Errors
    /// An [`AdminTokenError`] naming the first bad line.
    pub fn parse(text: &str) -> Result<Self, AdminTokenError> {
        let mut tokens = Self::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [role, name, token] = fields.as_slice() else {
                return Err(AdminTokenError::new(
                    number,
                    format!(
                        "has {} fields; write `ROLE NAME TOKEN` (role read, write or admin)",
                        fields.len()
                    ),
                ));
            };
            let role = AdminRole::parse(role).ok_or_else(|| {
                AdminTokenError::new(
                    number,
                    format!("unknown role {role:?}; use read, write or admin"),
                )
            })?;
            tokens.push(number, role, name, token)?;
        }
        if tokens.entries.is_empty() {
            return Err(AdminTokenError::new(0, "holds no token"));
        }
        Ok(tokens)
    }

    /// Read and parse a token file.
    ///
    /// # Errors
    /// An [`AdminTokenError`] (line 0 when the file cannot be read or is over
    /// [`ADMIN_TOKEN_FILE_BYTES_MAX`]).
    pub fn from_file(path: &Path) -> Result<Self, AdminTokenError> {
        let unreadable = |error: std::io::Error| {
            AdminTokenError::new(0, format!("cannot read {}: {error}", path.display()))
        };
        let size = std::fs::metadata(path).map_err(unreadable)?.len();
        if size > ADMIN_TOKEN_FILE_BYTES_MAX {
            return Err(AdminTokenError::new(
                0,
                format!(
                    "{} is {size} bytes; the limit is {ADMIN_TOKEN_FILE_BYTES_MAX}",
                    path.display()
                ),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(unreadable)?;
        Self::parse(&text)
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Who `presented` belongs to, or `None` for an unknown token. Takes the same time
    /// whichever token (or none) matches: every digest is compared, in constant time.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&AdminIdentity> {
        if presented.len() > ADMIN_TOKEN_CHARS_MAX {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.digest.ct_eq(&digest)) {
                found = Some(&entry.identity);
            }
        }
        found
    }

    fn push(
        &mut self,
        line: usize,
        role: AdminRole,
        name: &str,
        token: &str,
    ) -> Result<(), AdminTokenError> {
        if self.entries.len() >= ADMIN_TOKENS_MAX {
            return Err(AdminTokenError::new(
                line,
                format!("more than {ADMIN_TOKENS_MAX} tokens"),
            ));
        }
        let name_ok = !name.is_empty()
            && name.len() <= ADMIN_TOKEN_NAME_CHARS_MAX
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if !name_ok {
            return Err(AdminTokenError::new(
                line,
                format!(
                    "the name must be 1 to {ADMIN_TOKEN_NAME_CHARS_MAX} characters of \
                     [A-Za-z0-9._@-]"
                ),
            ));
        }
        let token_ok = (ADMIN_TOKEN_CHARS_MIN..=ADMIN_TOKEN_CHARS_MAX).contains(&token.len())
            && token.bytes().all(|byte| byte.is_ascii_graphic());
        if !token_ok {
            return Err(AdminTokenError::new(
                line,
                format!(
                    "the token of {name:?} must be {ADMIN_TOKEN_CHARS_MIN} to \
                     {ADMIN_TOKEN_CHARS_MAX} printable characters (make one with `bot keygen`)"
                ),
            ));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.entries.iter().any(|entry| entry.digest == digest) {
            return Err(AdminTokenError::new(
                line,
                format!("the token of {name:?} is listed twice"),
            ));
        }
        self.entries.push(TokenEntry {
            identity: AdminIdentity {
                name: name.to_string(),
                role,
            },
            digest,
        });
        Ok(())
    }
}

impl fmt::Debug for AdminTokens {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and roles only: never the digests.
        formatter
            .debug_list()
            .entries(self.entries.iter().map(|entry| &entry.identity))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_line_is_named() {
        let cases = [
            ("read a", 1, "fields"),
            ("boss a 0123456789abcdef", 1, "unknown role"),
            ("# c\nread a short", 2, "printable"),
            ("read bad/name 0123456789abcdef", 1, "name"),
            (
                "read a 0123456789abcdef\nwrite b 0123456789abcdef",
                2,
                "twice",
            ),
            ("# nothing\n\n", 0, "no token"),
        ];
        for (text, line, problem) in cases {
            let error = AdminTokens::parse(text).expect_err(text);
            assert_eq!(error.line, line, "{text:?}: {error}");
            assert!(error.problem.contains(problem), "{text:?}: {error}");
            assert!(!error.to_string().contains("0123456789abcdef"));
        }
    }

    #[test]
    fn roles_are_ordered_and_tokens_found() {
        assert!(AdminRole::Admin.allows(AdminRole::Write));
        assert!(AdminRole::Write.allows(AdminRole::Read));
        assert!(!AdminRole::Read.allows(AdminRole::Write));
        assert!(!AdminRole::Write.allows(AdminRole::Admin));
        let tokens = AdminTokens::new()
            .with_token(AdminRole::Write, "app", "aaaaaaaaaaaaaaaaaaaa")
            .and_then(|tokens| tokens.with_token(AdminRole::Read, "dash", "bbbbbbbbbbbbbbbbbbbb"))
            .expect("valid");
        assert_eq!(
            tokens
                .authenticate(b"bbbbbbbbbbbbbbbbbbbb")
                .map(|id| id.role),
            Some(AdminRole::Read)
        );
        assert!(tokens.authenticate(b"").is_none());
        assert!(tokens.authenticate(&[b'a'; 4096]).is_none());
        assert!(!format!("{tokens:?}").contains("aaaa"));
    }
}
