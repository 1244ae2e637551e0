//! Hostile requests at the admin HTTP API (issue 7, "Hostile input").
//!
//! Why: `http_contract.rs` checks each route with the requests a client means to send and a
//! few malformed ones. The admin port is reachable by whatever can reach the host, so here a
//! one-node cluster's router (driven in process with `tower::ServiceExt::oneshot`, as a host
//! that mounts it would) gets requests nobody means to send: every method on every route and
//! on paths that are no route, percent-encoded garbage in keys and lock names (invalid UTF-8,
//! NUL, encoded slashes, lone `%`), query strings with unknown, repeated, negative, huge and
//! non-numeric parameters, and bodies that are empty, not UTF-8, JSON garbage or larger than
//! any value. The answer must always be one of the documented statuses (200, 400, 404, 405,
//! 409, 413, 503), never a 500; every error must be the JSON body `{error, message, leader}`;
//! and the node must still serve a normal PUT and GET afterwards.
//!
//! Cases: 384 requests on one node; the file runs in about 2 s in the debug profile (after
//! the node starts).

mod support;

use axum::http::{Method, StatusCode};
use ha::Node;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::Value;
use support::{call_router as call, one_node};

/// The statuses docs/ARCHITECTURE.md ("Admin HTTP contract") documents for the admin API.
const DOCUMENTED: [u16; 7] = [200, 400, 404, 405, 409, 413, 503];

/// Bytes as they may appear in a URI: safe characters as they are, anything else
/// percent-encoded, and now and then a broken escape.
fn uri_text(bytes: &[u8], broken_escapes: bool) -> String {
    let mut text = String::new();
    for (position, byte) in bytes.iter().enumerate() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                text.push(*byte as char)
            }
            _ if broken_escapes && position % 7 == 3 => text.push('%'),
            _ => text.push_str(&format!("%{byte:02X}")),
        }
    }
    text
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        2 => Just(Method::GET),
        2 => Just(Method::PUT),
        2 => Just(Method::POST),
        2 => Just(Method::DELETE),
        1 => Just(Method::PATCH),
        1 => Just(Method::HEAD),
        1 => Just(Method::OPTIONS),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let route = prop_oneof![
        Just("/v1/kv/"),
        Just("/v1/kv/"),
        Just("/v1/lock/"),
        Just("/v1/health"),
        Just("/v1/cluster"),
        Just("/v1/metrics"),
        Just("/v1/failover/history"),
        Just("/v1/failover"),
        Just("/v1/kv/"),
        Just("/v1/kv/"),
        Just("/v1/lock/"),
        Just("/v1/lock/"),
        Just("/"),
        Just("/v1/"),
        Just("/v1/kv"),
        Just("//v1//kv//"),
    ];
    let tail = prop_oneof![
        3 => Just(Vec::new()),
        3 => prop_oneof![Just(b"k".to_vec()), Just(b"l".to_vec()), Just(b"k/2".to_vec())],
        2 => proptest::collection::vec(any::<u8>(), 1..40),
        1 => proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'/'), Just(b'%')], 1..8),
        // A key longer than any key may be.
        1 => Just(vec![b'k'; 1_100]),
    ];
    (route, tail, any::<bool>())
        .prop_map(|(route, tail, broken)| format!("{route}{}", uri_text(&tail, broken)))
}

fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("consistency"),
        Just("cas"),
        Just("ttl_ms"),
        Just("wait_ms"),
        Just("token"),
        Just("target"),
        Just("cass"),
        Just(""),
        Just("%ff"),
    ];
    let value = prop_oneof![
        Just("strong".to_string()),
        Just("quorum".to_string()),
        Just("eventual".to_string()),
        Just("sometimes".to_string()),
        Just(String::new()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("-1".to_string()),
        Just("25".to_string()),
        Just("5000".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("1e3".to_string()),
        Just("abc".to_string()),
        Just("%00".to_string()),
        Just("%ff%fe".to_string()),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|bytes| uri_text(&bytes, false)),
    ];
    let pair = (name, value, any::<bool>()).prop_map(|(name, value, with_equals)| {
        if with_equals {
            format!("{name}={value}")
        } else {
            name.to_string()
        }
    });
    prop_oneof![
        3 => Just(String::new()),
        3 => proptest::collection::vec(pair, 1..4).prop_map(|pairs| format!("?{}", pairs.join("&"))),
        1 => proptest::collection::vec(any::<u8>(), 0..24)
            .prop_map(|bytes| format!("?{}", uri_text(&bytes, true))),
        1 => Just("?&&=&".to_string()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(b"{}".to_vec()),
        Just(b"{\"target\": \"n1\"}".to_vec()),
        Just(b"{\"target\": \"n9\"}".to_vec()),
        Just(b"{\"target\": null, \"target\": 5}".to_vec()),
        Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec()),
        Just(b"{\"target\": \"\\ud800\"}".to_vec()),
        Just(vec![0xff, 0xfe, 0x00]),
        "[ -~]{0,64}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..256),
        // Larger than any value.
        Just(vec![b'x'; ha::lock::VALUE_BYTES_MAX + 2_048]),
        Just(b"a value".to_vec()),
    ]
}

/// The lock routes may wait up to `wait_ms`: keep hostile waits short so a lock held by an
/// earlier request cannot stall the run (the parameter parsing is what is under test).
fn without_long_waits(query: &str) -> String {
    query.replace("wait_ms=5000", "wait_ms=25")
}

async fn check_one(
    node: &Node<()>,
    method: Method,
    uri: &str,
    body: Vec<u8>,
) -> Result<u16, TestCaseError> {
    let (status, bytes) = call(node, method.clone(), uri, body).await;
    prop_assert!(
        DOCUMENTED.contains(&status.as_u16()),
        "{} {} answered {}: {}",
        method,
        uri,
        status,
        String::from_utf8_lossy(&bytes)
    );
    if status != StatusCode::OK && method != Method::HEAD {
        let json: Value = serde_json::from_slice(&bytes).map_err(|error| {
            TestCaseError::fail(format!(
                "{method} {uri} answered {status} without a JSON body ({error}): {}",
                String::from_utf8_lossy(&bytes)
            ))
        })?;
        prop_assert!(
            json["error"].as_str().is_some_and(|kind| !kind.is_empty()),
            "{}",
            json
        );
        prop_assert!(
            json["message"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "{}",
            json
        );
        prop_assert!(json.get("leader").is_some(), "{}", json);
    }
    Ok(status.as_u16())
}

#[test]
fn hostile_requests_get_documented_statuses_and_json_errors() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let node = runtime.block_on(one_node());
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 384,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::<u16, usize>::new());
    runner
        .run(
            &(method(), path(), query(), body()),
            |(method, path, query, body)| {
                let uri = format!("{path}{}", without_long_waits(&query));
                if uri.parse::<axum::http::Uri>().is_err() {
                    // Not a request a client could send at all (the URI does not parse).
                    return Ok(());
                }
                let status = runtime.block_on(check_one(&node, method, &uri, body))?;
                *statuses.borrow_mut().entry(status).or_insert(0) += 1;
                Ok(())
            },
        )
        .unwrap_or_else(|failure| panic!("{failure}"));
    println!("answers by status: {:?}", statuses.borrow());

    // Still serving normal requests.
    runtime.block_on(async {
        let (status, bytes) = call(
            &node,
            Method::PUT,
            "/v1/kv/after/the/storm",
            b"calm".to_vec(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        let (status, bytes) = call(
            &node,
            Method::GET,
            "/v1/kv/after/the/storm?consistency=strong",
            Vec::new(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let json: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(json["value"], "calm");
        let (status, _) = call(&node, Method::GET, "/v1/health", Vec::new()).await;
        assert_eq!(status, StatusCode::OK);
        node.shutdown().await;
    });
}

/// Regression test for the three contract breaks this file found: a key or lock name whose
/// percent-encoding is not UTF-8 got axum's plain-text 400; a body over the limit got a
/// plain-text 413; and deleting a key longer than any key may be got a 500 ("unexpected answer
/// from the lock table: Invalid"). Each is now the JSON error with its documented status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refusals_found_by_this_file_are_json_errors() {
    let node = one_node().await;
    let big = vec![b'x'; ha::lock::VALUE_BYTES_MAX + 2_048];
    let long_key = format!("/v1/kv/{}", "k".repeat(1_100));
    let cases = [
        (
            Method::GET,
            "/v1/kv/%80".to_string(),
            Vec::new(),
            400,
            "bad_request",
        ),
        (
            Method::PUT,
            "/v1/kv/%ff%fe".to_string(),
            b"v".to_vec(),
            400,
            "bad_request",
        ),
        (
            Method::POST,
            "/v1/lock/%C3%28".to_string(),
            Vec::new(),
            400,
            "bad_request",
        ),
        (
            Method::DELETE,
            "/v1/lock/%80?token=1".to_string(),
            Vec::new(),
            400,
            "bad_request",
        ),
        (
            Method::PUT,
            "/v1/kv/big".to_string(),
            big.clone(),
            413,
            "payload_too_large",
        ),
        (
            Method::POST,
            "/v1/failover".to_string(),
            big,
            413,
            "payload_too_large",
        ),
        (Method::DELETE, long_key, Vec::new(), 400, "bad_request"),
    ];
    for (method, uri, body, status, kind) in cases {
        let (answered, bytes) = call(&node, method.clone(), &uri, body).await;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
            panic!(
                "{method} {uri}: not JSON ({error}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        assert_eq!(answered.as_u16(), status, "{method} {uri}: {json}");
        assert_eq!(json["error"], kind, "{method} {uri}: {json}");
        assert!(json.get("leader").is_some());
    }
    node.shutdown().await;
}
