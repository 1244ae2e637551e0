//! What the `ha` crate's integration tests share: a one-node cluster that leads, and a call
//! to its admin router without a socket.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ha::{Config, Node, NodeId};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A one-voter node on loopback (2 s request timeout) that leads: it founds itself.
pub async fn one_node() -> Node<()> {
    let config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    let node = Node::builder(config)
        .request_timeout(Duration::from_secs(2))
        .start()
        .await
        .expect("starts");
    wait_for_leader(&node).await;
    node
}

/// Wait (at most 10 s) until `node` knows a leader: a one-voter node founds itself.
pub async fn wait_for_leader<S: ha::StateMachine>(node: &Node<S>) {
    let mut roles = node.watch_role();
    tokio::time::timeout(
        Duration::from_secs(10),
        roles.wait_for(|role| role.leader.is_some()),
    )
    .await
    .expect("leads within 10 s")
    .expect("running");
}

/// What a router call answered: the status, the headers and the whole body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// `request` through `node`'s admin router (no socket), with the body read whole.
pub async fn send<S: ha::StateMachine>(node: &Node<S>, request: Request<Body>) -> Answer {
    let response = node
        .http_router()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body is read")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// `method uri` with `body` through `node`'s admin router: the status and the body's bytes.
pub async fn call_router(
    node: &Node<()>,
    method: Method,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .expect("the test builds valid requests");
    let answer = send(node, request).await;
    (answer.status, answer.body)
}

/// Poll `condition` every 20 ms until it holds, failing the test after `within`; returns how
/// long it took.
pub async fn wait_until(
    within: Duration,
    what: &str,
    mut condition: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}
