//! `GET /ui` (issue 16, item 2): the live dashboard, one self-contained HTML page
//! ([`DASHBOARD_HTML`], `ui/dashboard.html`: its style and script inline, embedded in the
//! binary) that reads the node's own API from the browser: it polls `/v1/health`,
//! `/v1/cluster`, `/v1/failover/history` and `/v1/metrics` once a second and `/v1/backups`
//! every 10 s, and reads `/v1/events` with `fetch()` streaming (resuming with
//! `Last-Event-ID`). The page holds no data, so it is served without a token (the auth table
//! in [`auth`](super::auth) leaves it open like `/v1/health`); its API calls carry the token
//! the user gives it (`/ui#token=TOKEN`, or a form shown when a call answers 401).
//!
//! The answer carries a Content-Security-Policy that lets the page run only its own inline
//! script and style (by their SHA-256, computed once from the embedded file), connect only to
//! the node that served it, and load nothing else: a value a peer or a client put into the
//! cluster (a node id, a lock name) cannot run as script even if the page had a bug that
//! inserted it as HTML (it inserts every value as text).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The dashboard page, embedded at build time.
pub const DASHBOARD_HTML: &str = include_str!("ui/dashboard.html");

/// The Content-Security-Policy sent with [`DASHBOARD_HTML`].
static CONTENT_SECURITY_POLICY: LazyLock<String> =
    LazyLock::new(|| content_security_policy(DASHBOARD_HTML));

/// `GET /ui` (and `HEAD /ui`): the page, with headers that keep it to itself.
pub(crate) async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                CONTENT_SECURITY_POLICY.as_str(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // The page changes only with the binary; revalidating is cheap, a stale page after
            // an upgrade would be confusing.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DASHBOARD_HTML,
    )
        .into_response()
}

/// The policy for `html`: its inline `<script>` and `<style>` blocks by hash, fetches to the
/// serving node only, nothing else.
fn content_security_policy(html: &str) -> String {
    let hashes = |tag: &str| -> String {
        let blocks = inline_blocks(html, tag);
        if blocks.is_empty() {
            return "'none'".to_string();
        }
        blocks
            .iter()
            .map(|block| {
                let digest = Sha256::digest(block.as_bytes());
                format!(
                    "'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' \
         data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hashes("script"),
        hashes("style")
    )
}

/// The text of every `<tag>…</tag>` block in `html`, exactly as a browser hashes it (the
/// page writes its blocks as a bare `<script>` and `<style>`, without attributes).
fn inline_blocks<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut blocks = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let body = &rest[start + open.len()..];
        let Some(end) = body.find(&close) else {
            break;
        };
        blocks.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy hashes every script and style the page has: one block of each, and no
    /// `<script ` or `<style ` with attributes that the hashing would miss.
    #[test]
    fn the_policy_covers_the_one_script_and_the_one_style() {
        assert_eq!(inline_blocks(DASHBOARD_HTML, "script").len(), 1);
        assert_eq!(inline_blocks(DASHBOARD_HTML, "style").len(), 1);
        assert!(!DASHBOARD_HTML.contains("<script "));
        assert!(!DASHBOARD_HTML.contains("<style "));
        let policy = content_security_policy(DASHBOARD_HTML);
        assert_eq!(policy.matches("'sha256-").count(), 2, "{policy}");
        assert!(policy.starts_with("default-src 'none'; script-src 'sha256-"));
    }

    #[test]
    fn blocks_are_found_between_their_tags() {
        let html = "<style>a{}</style><p>x</p><script>one()</script><script>two()</script>";
        assert_eq!(inline_blocks(html, "script"), ["one()", "two()"]);
        assert_eq!(inline_blocks(html, "style"), ["a{}"]);
        assert!(inline_blocks("<script>never closed", "script").is_empty());
        assert_eq!(
            content_security_policy("<p>no script</p>"),
            "default-src 'none'; script-src 'none'; style-src 'none'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
    }
}
