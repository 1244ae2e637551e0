//! `GET /ui`, the live dashboard page (issue 16, item 2), as the node serves it.
//!
//! Why: the page is a contract with the real-browser test (tests/processes/dashboard.rs reads
//! its element ids), it must be self-contained (no CDN, no remote font: an operator's browser
//! may reach only the node), the policy the node sends with it must allow exactly its own
//! inline script and style (a wrong hash would leave a blank page that only a browser
//! notices), and it must open without a token on a node that has tokens while every API
//! call the page makes still demands one.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use ha::{AdminRole, AdminTokens, Config, Node, NodeId};
use sha2::{Digest, Sha256};

const READ_TOKEN: &str = "read-token-0123456789abcdef";

/// `method uri` through `node`'s admin router with an optional bearer token: status, headers
/// and body.
async fn call(
    node: &Node<()>,
    method: Method,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, HeaderMap, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Body::empty())
        .expect("the test builds valid requests");
    let answer = support::send(node, request).await;
    (
        answer.status,
        answer.headers,
        String::from_utf8(answer.body).expect("the answers are UTF-8"),
    )
}

/// The text between `<tag>` and `</tag>`: the page has one of each.
fn block<'a>(html: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let start = html.find(&open).expect("the block opens") + open.len();
    let end = html[start..]
        .find(&format!("</{tag}>"))
        .expect("the block closes");
    &html[start..start + end]
}

fn sha256_source(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// Served as UTF-8 HTML with every element id the browser test reads, and a policy whose
/// hashes are those of the page's own script and style, computed here independently.
#[tokio::test]
async fn the_page_is_html_with_the_dom_contract_and_a_policy_for_its_own_script() {
    let node = support::one_node().await;
    let (status, headers, html) = call(&node, Method::GET, "/ui", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(html, ha::http::DASHBOARD_HTML);
    for contract in [
        r#"id="conn" data-state="connecting""#,
        r#"id="leader" data-term="""#,
        r#"<table id="members">"#,
        "<tbody></tbody>",
        r#"<ol id="failovers">"#,
        r#"id="locks""#,
        r#"id="sparkline-writes""#,
        r#"id="sparkline-latency""#,
        r#"id="backups""#,
        r#"id="consistency""#,
    ] {
        assert!(html.contains(contract), "the page lacks {contract}");
    }
    // What the script writes into the contract's elements.
    let script = block(&html, "script");
    for written in [
        "conn.dataset.state",
        "row.dataset.node",
        "row.dataset.role",
        "element.dataset.term",
        "item.dataset.term",
        "item.dataset.from",
        "item.dataset.to",
        "item.dataset.leaderlessMs",
        r#""cut-off""#,
        r#""live""#,
        r#"fetch("/v1/events""#,
        r#""Last-Event-ID""#,
    ] {
        assert!(script.contains(written), "the script lacks {written}");
    }
    let policy = headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("ASCII");
    assert!(
        policy.contains(&format!("script-src {};", sha256_source(script))),
        "{policy}"
    );
    assert!(
        policy.contains(&format!(
            "style-src {};",
            sha256_source(block(&html, "style"))
        )),
        "{policy}"
    );
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let (status, headers, body) = call(&node, Method::HEAD, "/ui", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(body.is_empty(), "HEAD has no body");
    node.shutdown().await;
}

/// Nothing in the page names another origin: no `http://` or `https://` anywhere (so no
/// remote `src`, `href`, `fetch` or `url()`), no protocol-relative `//host` attribute, no
/// `@import`, no `<link>` but the empty data: icon, no external script, no `EventSource`
/// (it cannot send the token).
#[test]
fn the_page_is_self_contained() {
    let html = ha::http::DASHBOARD_HTML;
    for remote in [
        "http://",
        "https://",
        "@import",
        "<script src",
        "EventSource(",
    ] {
        assert!(!html.contains(remote), "the page holds {remote:?}");
    }
    for attribute in ["src=", "href=", "action="] {
        for (at, _) in html.match_indices(attribute) {
            let value = html[at + attribute.len()..].trim_start_matches(['"', '\'']);
            assert!(
                value.starts_with("data:") || (value.starts_with('/') && !value.starts_with("//")),
                "{attribute} at byte {at} points elsewhere: {}",
                &value[..value.len().min(60)]
            );
        }
    }
    let links: Vec<&str> = html
        .match_indices("<link")
        .map(|(at, _)| &html[at..])
        .collect();
    assert_eq!(links.len(), 1, "only the icon link");
    assert!(links[0].starts_with(r#"<link rel="icon" href="data:,">"#));
    assert!(html.len() < 64 * 1024, "the page is {} bytes", html.len());
}

/// Every element id is unique, and every id the script looks up (`$("id")`, the page's
/// `getElementById`) is in the markup: a typo would be a `null` that throws on every update,
/// and nothing but a browser would show it.
#[test]
fn every_id_the_script_reads_is_in_the_markup_once() {
    let html = ha::http::DASHBOARD_HTML;
    let script = block(html, "script");
    let markup = html.replace(script, "");
    let mut ids: Vec<&str> = markup
        .match_indices(" id=\"")
        .map(|(at, found)| {
            let rest = &markup[at + found.len()..];
            &rest[..rest.find('"').expect("the attribute closes")]
        })
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "an id appears twice: {ids:?}");
    let mut looked_up = 0;
    for (at, found) in script.match_indices("$(\"") {
        let rest = &script[at + found.len()..];
        let id = &rest[..rest.find('"').expect("the string closes")];
        assert!(
            ids.contains(&id),
            "the script reads #{id}, which the markup lacks"
        );
        looked_up += 1;
    }
    assert!(looked_up >= 15, "the script looks up {looked_up} ids");
}

/// On a node with tokens, the page opens without one (it holds no data) and so does HEAD;
/// POST to it is not open; every API call the page makes still answers 401 without a token
/// and 200 with a read token (`/v1/backups` needs admin: the page says so instead).
#[tokio::test]
async fn the_page_is_open_on_a_tokened_node_while_its_api_calls_need_a_token() {
    let config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    let tokens = AdminTokens::new()
        .with_token(AdminRole::Read, "viewer", READ_TOKEN)
        .expect("a valid token");
    let node = Node::builder(config)
        .request_timeout(Duration::from_secs(2))
        .admin_tokens(tokens)
        .start()
        .await
        .expect("starts");
    support::wait_for_leader(&node).await;
    let (status, _, html) = call(&node, Method::GET, "/ui", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"id="members""#));
    assert_eq!(
        call(&node, Method::HEAD, "/ui", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&node, Method::POST, "/ui", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(&node, Method::GET, "/ui/anything", None).await.0,
        StatusCode::UNAUTHORIZED,
        "only the page itself is open"
    );
    for path in ["/v1/cluster", "/v1/failover/history", "/v1/metrics"] {
        let (status, headers, _) = call(&node, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        let (status, _, _) = call(&node, Method::GET, path, Some(READ_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{path} with a read token");
    }
    assert_eq!(
        call(&node, Method::GET, "/v1/backups", Some(READ_TOKEN))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    node.shutdown().await;
}
