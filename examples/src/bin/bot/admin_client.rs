//! The HTTP client the bot's admin commands (`bot status`, and later `bot members` and
//! `bot snapshot`) use to talk to a node's admin API.
//!
//! ```text
//!   no --tls-ca:  http://ADDR/...   (as before; fine on loopback)
//!   --tls-ca F:   https://ADDR/...  the node's certificate must chain to a CA in F and name
//!                                   the host of ADDR; the system's roots are not trusted
//!   token:        Authorization: Bearer TOKEN on every request (from --token or
//!                 BOT_ADMIN_TOKEN), marked sensitive so it is never logged
//! ```
//!
//! Redirects are not followed and no proxy from the environment is used: an admin tool talks
//! to the node it was given and nothing else.

use std::path::Path;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};

use crate::error::BotError;

/// Environment variable read for the admin API token when `--token` is not given.
pub const ADMIN_TOKEN_ENV: &str = "BOT_ADMIN_TOKEN";

/// Largest CA file read, in bytes (a bundle of a few CAs is a few KiB).
pub const CA_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Longest token sent, in characters (the node refuses longer ones unread).
pub const TOKEN_CHARS_MAX: usize = 256;

/// A configured admin API client: scheme, trusted CA and token.
#[derive(Clone, Debug)]
pub struct AdminClient {
    client: reqwest::Client,
    scheme: &'static str,
    authorization: Option<HeaderValue>,
}

impl AdminClient {
    /// A client with requests bounded by `timeout`; HTTPS verified with the CAs in `tls_ca`
    /// when given, plain HTTP otherwise; `token` sent as a bearer token when given.
    ///
    /// # Errors
    /// [`BotError::AdminClient`] (exit code 2) when the CA file cannot be read, is too
    /// large or holds no certificate, or the token is empty, too long or holds spaces or
    /// control characters; nothing is contacted.
    pub fn new(
        tls_ca: Option<&Path>,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, BotError> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        let scheme = match tls_ca {
            Some(path) => {
                builder = builder
                    .use_rustls_tls()
                    .tls_built_in_root_certs(false)
                    .https_only(true);
                for certificate in read_ca_file(path)? {
                    builder = builder.add_root_certificate(certificate);
                }
                "https"
            }
            None => "http",
        };
        let authorization = token.map(bearer_header).transpose()?;
        let client = builder
            .build()
            .map_err(|error| BotError::AdminClient(format!("cannot set up HTTP: {error}")))?;
        Ok(Self {
            client,
            scheme,
            authorization,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// `SCHEME://ADDR/PATH` for an address checked to be `host:port` and nothing more.
    ///
    /// # Errors
    /// The reason `addr` is not `host:port` (a scheme, a path, a user, spaces, no port).
    pub fn url(&self, addr: &str, path: &str) -> Result<String, String> {
        check_host_port(addr)?;
        let url = format!("{}://{addr}{path}", self.scheme);
        reqwest::Url::parse(&url).map_err(|error| format!("the host is invalid ({error})"))?;
        Ok(url)
    }

    /// A GET request with the token, if any.
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_token(self.client.get(url))
    }

    /// A POST request with the token, if any.
    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_token(self.client.post(url))
    }

    /// A DELETE request with the token, if any.
    pub fn delete(&self, url: &str) -> reqwest::RequestBuilder {
        self.with_token(self.client.delete(url))
    }

    fn with_token(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }
}

/// The error a 401 or 403 answer becomes, with the node's message; `None` for other
/// statuses.
pub fn denied(url: &str, status: reqwest::StatusCode, message: &str) -> Option<BotError> {
    let hint = match status {
        reqwest::StatusCode::UNAUTHORIZED => {
            "Pass a token the node knows with --token or BOT_ADMIN_TOKEN (a line of its \
             --admin-token-file)"
        }
        reqwest::StatusCode::FORBIDDEN => {
            "The token's role does not allow this call; use a token with a higher role"
        }
        _ => return None,
    };
    let message = if message.is_empty() {
        "(no message)"
    } else {
        message
    };
    Some(BotError::AdminDenied {
        url: url.to_string(),
        status: status.as_u16(),
        message: message.to_string(),
        hint,
    })
}

fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, BotError> {
    let refuse =
        |reason: String| BotError::AdminClient(format!("--tls-ca {}: {reason}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|error| refuse(format!("cannot read it: {error}")))?
        .len();
    if size > CA_FILE_BYTES_MAX {
        return Err(refuse(format!(
            "is {size} bytes; a CA file holds a few certificates (limit {CA_FILE_BYTES_MAX})"
        )));
    }
    let pem = std::fs::read(path).map_err(|error| refuse(format!("cannot read it: {error}")))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|error| refuse(format!("is not PEM: {error}")))?;
    if certificates.is_empty() {
        return Err(refuse(
            "holds no certificate; give the cluster's ca.pem (made by `bot certs init`)"
                .to_string(),
        ));
    }
    Ok(certificates)
}

fn bearer_header(token: &str) -> Result<HeaderValue, BotError> {
    let refuse = |reason: &str| BotError::AdminClient(format!("the admin token {reason}"));
    if token.is_empty() {
        return Err(refuse("is empty; give --token or BOT_ADMIN_TOKEN a token"));
    }
    if token.chars().count() > TOKEN_CHARS_MAX {
        return Err(refuse(&format!(
            "is longer than {TOKEN_CHARS_MAX} characters; no node accepts it"
        )));
    }
    if !token.chars().all(|character| character.is_ascii_graphic()) {
        return Err(refuse(
            "holds spaces, control or non-ASCII characters; give only the TOKEN column of \
             the token file",
        ));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| refuse("is not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn check_host_port(addr: &str) -> Result<(), String> {
    if addr.contains("://") {
        return Err("give host:port without a scheme, e.g. 127.0.0.1:8101".to_string());
    }
    if addr
        .chars()
        .any(|character| character.is_whitespace() || character.is_control())
        || addr.contains(['/', '?', '#', '@', '\\'])
    {
        return Err(
            "give only host:port, e.g. 127.0.0.1:8101 (no path, user or spaces)".to_string(),
        );
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("the port is missing, e.g. 127.0.0.1:8101".to_string());
    };
    if host.is_empty() {
        return Err("the host is missing, e.g. 127.0.0.1:8101".to_string());
    }
    if port.is_empty() || !port.chars().all(|character| character.is_ascii_digit()) {
        return Err("the port must be a number, e.g. 127.0.0.1:8101".to_string());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port must be 1 to 65535".to_string()),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn without_a_ca_the_client_speaks_http_and_with_one_https() {
        let plain = AdminClient::new(None, None, TIMEOUT).expect("client");
        assert_eq!(
            plain.url("127.0.0.1:8101", "/v1/cluster"),
            Ok("http://127.0.0.1:8101/v1/cluster".to_string())
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = crate::certs::tests::make_cluster(dir.path(), "prod", &["n1"]);
        let secure = AdminClient::new(Some(&ca), None, TIMEOUT).expect("client");
        assert_eq!(
            secure.url("n1.prod:8101", "/v1/cluster"),
            Ok("https://n1.prod:8101/v1/cluster".to_string())
        );
    }

    #[test]
    fn unusable_ca_files_and_tokens_are_refused_before_any_request() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").expect("write");
        for path in [empty, garbage, dir.path().join("missing.pem")] {
            let error = AdminClient::new(Some(&path), None, TIMEOUT).expect_err("refused");
            assert!(matches!(error, BotError::AdminClient(_)), "{error:?}");
            assert_eq!(error.exit_code(), crate::error::EXIT_USAGE);
            assert!(
                error.to_string().contains(&*path.to_string_lossy()),
                "{error}"
            );
        }
        let long = "x".repeat(TOKEN_CHARS_MAX + 1);
        for token in [
            "",
            "has space",
            "tab\there",
            "line\nbreak",
            "é-accent",
            &long,
        ] {
            let error = AdminClient::new(None, Some(token), TIMEOUT).expect_err("refused");
            assert!(matches!(error, BotError::AdminClient(_)), "{token:?}");
            assert!(
                !error.to_string().contains(token) || token.is_empty(),
                "the token is not echoed: {error}"
            );
        }
    }

    #[test]
    fn the_token_header_is_bearer_and_sensitive() {
        let value = bearer_header("0123456789abcdef").expect("valid");
        assert_eq!(value.to_str().expect("ascii"), "Bearer 0123456789abcdef");
        assert!(value.is_sensitive());
    }

    #[test]
    fn only_401_and_403_are_denials() {
        let url = "https://127.0.0.1:1/v1/cluster";
        let unauthorized =
            denied(url, reqwest::StatusCode::UNAUTHORIZED, "no token").expect("401 is a denial");
        assert!(unauthorized.to_string().contains("HTTP 401: no token"));
        assert!(unauthorized.to_string().contains("BOT_ADMIN_TOKEN"));
        assert_eq!(unauthorized.exit_code(), crate::error::EXIT_FAILURE);
        let forbidden =
            denied(url, reqwest::StatusCode::FORBIDDEN, "needs admin").expect("403 is a denial");
        assert!(forbidden.to_string().contains("higher role"));
        assert!(denied(url, reqwest::StatusCode::SERVICE_UNAVAILABLE, "").is_none());
    }
}
