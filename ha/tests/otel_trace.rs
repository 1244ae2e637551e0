//! Issue 16, OpenTelemetry traces: a write sent to a follower of an in-process 3-node cluster
//! makes one trace across two nodes. The follower's `ha.http.write` (under the caller's
//! `traceparent` header) and `ha.forward`, then the leader's `ha.propose` under that
//! `ha.forward` with its context taken from the forwarded RPC (a remote parent: the nodes
//! talk over their real TCP transport, and an in-process parent would not be remote), and the
//! leader's `ha.append`, `ha.replicate` and `ha.apply` under `ha.propose`. Spans go to the
//! an in-process collector (a `SpanExporter` that keeps them) through
//! [`ha::telemetry::Telemetry`], the way they would go to OTLP.
//!
//! A second test shows the OTLP/HTTP export itself reaching a collector on loopback.
//!
//! Run: `cargo test --workspace --features ha-framework/otel --test otel_trace` (`-p ha-framework --features otel`
//! works too, but unifies the dependencies' features differently from the workspace build
//! and so rebuilds most of them).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use std::sync::{Arc, Mutex};

use ha::telemetry::Telemetry;
use ha::telemetry::opentelemetry::Value;
use ha::telemetry::opentelemetry::trace::{SpanId, TraceId};
use ha::telemetry::opentelemetry_sdk::error::OTelSdkResult;
use ha::telemetry::opentelemetry_sdk::trace::{SpanData, SpanExporter};
use ha::{Config, Node, NodeId};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;

const WAIT: Duration = Duration::from_secs(20);
/// The caller's trace: the follower's `ha.http.write` continues it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

async fn start(index: usize, seed: Option<std::net::SocketAddr>) -> Node<()> {
    let id = NodeId::new(format!("n{index}")).expect("valid");
    let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().expect("valid"))];
    let config = Config::full_ha(id, "127.0.0.1:0".parse().expect("valid"), seeds);
    Node::builder(config)
        .request_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect("starts")
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|pair| pair.key.as_str() == key)
        .map(|pair| match &pair.value {
            Value::String(text) => text.as_str().to_string(),
            other => other.to_string(),
        })
}

/// An in-process collector: keeps every exported span (the SDK's own in-memory exporter
/// needs its `testing` feature, a dev-dependency every build of `ha`'s tests would compile).
#[derive(Clone, Debug, Default)]
struct Collector(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Collector {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0.lock().expect("not poisoned").extend(batch);
        Ok(())
    }
}

/// The finished `ha.*` spans by name (the test makes exactly one traced write).
fn ha_spans(exporter: &Collector) -> BTreeMap<String, Vec<SpanData>> {
    let mut spans: BTreeMap<String, Vec<SpanData>> = BTreeMap::new();
    for span in exporter.0.lock().expect("not poisoned").iter() {
        if span.name.starts_with("ha.") {
            spans
                .entry(span.name.to_string())
                .or_default()
                .push(span.clone());
        }
    }
    spans
}

fn one<'a>(spans: &'a BTreeMap<String, Vec<SpanData>>, name: &str) -> &'a SpanData {
    let found = spans.get(name).map(Vec::as_slice).unwrap_or_default();
    assert_eq!(found.len(), 1, "exactly one {name} span: {found:#?}");
    &found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_to_a_follower_is_one_trace_across_two_nodes() {
    let exporter = Collector::default();
    let telemetry = Telemetry::with_simple_exporter(exporter.clone(), "ha-otel-test");
    // The driver's spans are made on the node's own tasks, so the subscriber must be global.
    // Only `ha.*` spans reach the layer: gossip's and the transport's own spans would only
    // fill the collector.
    let only_ha_spans =
        filter_fn(|metadata| metadata.is_span() && metadata.name().starts_with("ha."));
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(telemetry.layer().with_filter(only_ha_spans)),
    )
    .expect("the only subscriber of this test binary");

    let first = start(1, None).await;
    let seed = Some(first.gossip_addr());
    let nodes = [first, start(2, seed).await, start(3, seed).await];
    support::wait_until(WAIT, "one leader that every node knows", async || {
        let leaders = nodes.iter().filter(|node| node.is_leader()).count();
        leaders == 1 && nodes.iter().all(|node| node.role().leader.is_some())
    })
    .await;
    let leader = nodes.iter().position(Node::is_leader).expect("a leader");
    let follower = (leader + 1) % nodes.len();
    let leader_id = nodes[leader].id().to_string();
    let follower_id = nodes[follower].id().to_string();
    // Nothing traced yet: elections and gossip make no `ha.*` span.
    assert!(ha_spans(&exporter).is_empty(), "{:#?}", ha_spans(&exporter));

    let request = Request::builder()
        .method(Method::PUT)
        .uri("/v1/kv/traced")
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
        .body(Body::from("value"))
        .expect("valid request");
    let sent = Instant::now();
    let response = nodes[follower]
        .http_router()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let round_trip = sent.elapsed();
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    // The leader's spans end once its answer left and the entry is applied: poll for them.
    let names = [
        "ha.http.write",
        "ha.forward",
        "ha.propose",
        "ha.append",
        "ha.replicate",
        "ha.apply",
    ];
    support::wait_until(WAIT, "every span of the write", async || {
        let spans = ha_spans(&exporter);
        names.iter().all(|name| spans.contains_key(*name))
    })
    .await;
    let spans = ha_spans(&exporter);
    let trace_id = TraceId::from_hex(TRACE_ID).expect("hex");

    // One trace, across two nodes.
    for (name, found) in &spans {
        for span in found {
            assert_eq!(
                span.span_context.trace_id(),
                trace_id,
                "{name} is in the trace"
            );
        }
    }
    let http = one(&spans, "ha.http.write");
    let forward = one(&spans, "ha.forward");
    let propose = one(&spans, "ha.propose");
    for span in [http, forward] {
        assert_eq!(
            attribute(span, "node"),
            Some(follower_id.clone()),
            "{}",
            span.name
        );
    }
    for name in ["ha.propose", "ha.append", "ha.replicate", "ha.apply"] {
        assert_eq!(
            attribute(one(&spans, name), "node"),
            Some(leader_id.clone()),
            "{name} is on the leader"
        );
    }
    assert_ne!(follower_id, leader_id);

    // The follower's spans: the handler under the caller's header, the forward under it.
    assert_eq!(
        http.parent_span_id,
        SpanId::from_hex(CALLER_SPAN_ID).expect("hex")
    );
    assert!(http.parent_span_is_remote, "the caller's header");
    assert_eq!(forward.parent_span_id, http.span_context.span_id());
    assert!(
        forward.parent_span_is_remote,
        "the driver hangs the forward under the trace context the write carried"
    );
    assert_eq!(attribute(forward, "leader"), Some(leader_id.clone()));

    // The leader's proposal is a child of the follower's forward, through the RPC.
    assert_eq!(
        propose.parent_span_id,
        forward.span_context.span_id(),
        "ha.propose is a child of ha.forward"
    );
    assert!(
        propose.parent_span_is_remote,
        "the parent came in the forwarded RPC, not from an in-process span"
    );
    for name in ["ha.append", "ha.replicate", "ha.apply"] {
        let child = one(&spans, name);
        assert_eq!(
            child.parent_span_id,
            propose.span_context.span_id(),
            "{name} is a child of ha.propose"
        );
        assert!(
            child.start_time >= propose.start_time && child.end_time <= propose.end_time,
            "{name} lies within ha.propose"
        );
    }
    let append = one(&spans, "ha.append");
    let replicate = one(&spans, "ha.replicate");
    let apply = one(&spans, "ha.apply");
    assert!(
        apply.start_time >= replicate.end_time,
        "applied after commit"
    );
    assert_eq!(attribute(append, "index"), attribute(apply, "index"));

    let micros = |span: &SpanData| {
        span.end_time
            .duration_since(span.start_time)
            .unwrap_or_default()
            .as_micros()
    };
    println!(
        "write through follower {follower_id} to leader {leader_id}: HTTP round trip {} µs; \
         span durations µs: http.write {} forward {} propose {} append {} replicate {} apply {}",
        round_trip.as_micros(),
        micros(http),
        micros(forward),
        micros(propose),
        micros(append),
        micros(replicate),
        micros(apply),
    );

    telemetry.flush().expect("flushes");
    for node in nodes {
        node.shutdown().await;
    }
}

/// "Exported via OTLP when configured": with an endpoint, `Telemetry` posts the spans as
/// OTLP/HTTP protobuf to `<endpoint>/v1/traces`. The collector here is a loopback listener that
/// reads one request and answers 200.
#[test]
fn a_configured_endpoint_receives_the_spans_over_otlp_http() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use tracing_subscriber::layer::SubscriberExt;

    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let endpoint = format!("http://{}", listener.local_addr().expect("bound"));
    listener.set_nonblocking(true).expect("non-blocking accept");
    let collector = std::thread::spawn(move || {
        // Bounded: the exporter connects within 10 s or the test fails.
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "the exporter never connected");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(error) => panic!("accept: {error}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking reads");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("request line");
        let mut content_type = String::new();
        let mut length = 0usize;
        for _ in 0..64 {
            let mut header = String::new();
            reader.read_line(&mut header).expect("header");
            let header = header.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-type:") {
                content_type = value.trim().to_string();
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = value.trim().parse().expect("a length");
            }
        }
        assert!(length <= 1 << 20, "one small batch");
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).expect("body");
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .expect("answers");
        (request_line, content_type, body)
    });

    let telemetry = Telemetry::from_endpoint(Some(&endpoint), "ha-otlp-test")
        .expect("a valid endpoint")
        .expect("configured");
    let subscriber = tracing_subscriber::registry().with(telemetry.layer());
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("ha.http.write", node = "n1");
        span.in_scope(|| {});
    });
    telemetry.flush().expect("the collector accepts the batch");
    let (request_line, content_type, body) = collector.join().expect("collector");
    assert!(
        request_line.starts_with("POST /v1/traces "),
        "{request_line:?}"
    );
    assert_eq!(content_type, "application/x-protobuf");
    let needle = b"ha.http.write";
    assert!(
        body.windows(needle.len()).any(|window| window == needle),
        "the span's name is in the protobuf body ({} bytes)",
        body.len()
    );
    telemetry.shutdown().expect("shuts down");
}
