//! The admin API's bearer tokens, roles, HTTPS and audit log (issue 13, item 4 and "Bad
//! input"), on a one-node cluster serving HTTPS on loopback with a certificate from a test CA.
//!
//! Why: with tokens, every call but `GET /v1/health` must prove a role (401 without a valid
//! token, 403 when the role is too low, with the documented JSON bodies), every mutating call
//! and every refusal must leave an audit line that never holds the token, and the HTTPS port
//! must survive what anyone on the network can send: a 1 MiB `Authorization` header, garbage
//! and truncated TLS records, a handshake that stalls, a flood of 300 stalled handshakes (the
//! oldest are evicted at the handshake cap, so honest clients still get in), more connections
//! than the cap. Each is refused at a bounded cost (time and memory printed), and the node
//! stays healthy and writable. The file runs in about 12 s (the 10 s handshake timeout).
//!
//! The client is a few lines of HTTP/1.1 over tokio-rustls, so the tests control every byte.

mod support;

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ha::http::HttpsLimits;
use ha::http::https_listener::HttpsCounters;
use ha::{AdminRole, AdminTokens, Config, Node, NodeId};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

const READ_TOKEN: &str = "read-token-0123456789abcdef";
const WRITE_TOKEN: &str = "write-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const UNKNOWN_TOKEN: &str = "unknown-token-0123456789abcdef";

/// Longest any single exchange in these tests may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// What the node may allocate, in all, while it refuses a 1 MiB header (the client's own
/// TLS buffers in this process included).
const HUGE_HEADER_PEAK_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Held shared by every test and exclusively by the one that measures memory, so that no
/// other test allocates during its measurement.
static MEASURING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The server and client TLS configurations of a test CA.
struct TestTls {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn test_tls() -> TestTls {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("node key");
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("node params")
        .signed_by(&key, &*ca)
        .expect("node certificate");
    let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .expect("server config");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::clone(ca.der()))
        .expect("CA as a root");
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TestTls {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

fn tokens() -> AdminTokens {
    AdminTokens::new()
        .with_token(AdminRole::Read, "grafana", READ_TOKEN)
        .and_then(|tokens| tokens.with_token(AdminRole::Write, "deployer", WRITE_TOKEN))
        .and_then(|tokens| tokens.with_token(AdminRole::Admin, "alice", ADMIN_TOKEN))
        .expect("valid tokens")
}

/// A one-voter node with tokens serving its admin API over HTTPS on loopback, leading.
async fn secure_node(tls: &TestTls) -> (Node<()>, SocketAddr) {
    let mut config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.http_addr = Some("127.0.0.1:0".parse().expect("valid"));
    let node = Node::builder(config)
        .request_timeout(Duration::from_secs(2))
        .admin_tokens(tokens())
        .https(Arc::clone(&tls.server))
        .start()
        .await
        .expect("starts");
    let mut roles = node.watch_role();
    tokio::time::timeout(
        Duration::from_secs(10),
        roles.wait_for(|role| role.leader.is_some()),
    )
    .await
    .expect("leads within 10 s")
    .expect("running");
    let addr = node.http_addr().expect("serves HTTP");
    (node, addr)
}

/// One parsed answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

async fn tls_connect(
    addr: SocketAddr,
    tls: &TestTls,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::clone(&tls.client))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}

/// The bytes of an HTTP/1.1 request with `Connection: close`.
fn request_bytes(method: &str, path: &str, authorization: Option<&str>, body: &str) -> Vec<u8> {
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if let Some(authorization) = authorization {
        request.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    request.into_bytes()
}

/// Send `request` on `stream` and read the answer until the server closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
) -> std::io::Result<Answer> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let mut bytes = Vec::new();
    // The server may close without close_notify after its answer: keep what was read.
    if let Err(error) = stream.read_to_end(&mut bytes).await
        && bytes.is_empty()
    {
        return Err(error);
    }
    parse_answer(&bytes).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("no HTTP answer: {:?}", String::from_utf8_lossy(&bytes)),
        )
    })
}

fn parse_answer(bytes: &[u8]) -> Option<Answer> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `method path` over HTTPS with `Authorization: Bearer token` when given.
async fn call(
    addr: SocketAddr,
    tls: &TestTls,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Answer {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let request = request_bytes(method, path, authorization.as_deref(), body);
    tokio::time::timeout(CALL_TIMEOUT, async {
        let stream = tls_connect(addr, tls).await?;
        exchange(stream, &request).await
    })
    .await
    .unwrap_or_else(|_| panic!("{method} {path}: no answer within {CALL_TIMEOUT:?}"))
    .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// Everything logged on `ha::audit` in this process (one subscriber for all tests).
fn audit_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    Arc::clone(LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("ha::audit=info"))
            .with_ansi(false)
            .with_writer(move || AuditWriter(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        log
    }))
}

struct AuditWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for AuditWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn audit_lines(log: &Mutex<Vec<u8>>) -> Vec<String> {
    String::from_utf8_lossy(&log.lock().expect("log"))
        .lines()
        .map(str::to_string)
        .collect()
}

fn assert_refusal(answer: &Answer, status: u16, kind: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let json = answer.json();
    assert_eq!(json["error"], kind, "{json}");
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{json}"
    );
    assert!(json.get("leader").is_some(), "the ApiError shape: {json}");
    for token in [READ_TOKEN, WRITE_TOKEN, ADMIN_TOKEN, UNKNOWN_TOKEN] {
        assert!(!answer.body.contains(token), "a token in the body: {json}");
    }
    if status == 401 {
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer"),
            "{answer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_gets_401_403_or_200_over_https_and_is_audited() {
    let _shared = MEASURING.read().await;
    let log = audit_log();
    let tls = test_tls();
    let (node, addr) = secure_node(&tls).await;

    // Health is open for load balancers.
    let health = call(addr, &tls, "GET", "/v1/health", None, "").await;
    assert_eq!(health.status, 200, "{health:?}");

    // No token, an unknown token, a malformed header: 401.
    let answer = call(addr, &tls, "PUT", "/v1/kv/a", None, "1").await;
    assert_refusal(&answer, 401, "unauthorized");
    let answer = call(addr, &tls, "GET", "/v1/kv/a", Some(UNKNOWN_TOKEN), "").await;
    assert_refusal(&answer, 401, "unauthorized");
    let answer = call(addr, &tls, "GET", "/v1/cluster", None, "").await;
    assert_refusal(&answer, 401, "unauthorized");
    let request = request_bytes("GET", "/v1/kv/a", Some(&format!("Basic {READ_TOKEN}")), "");
    let answer = exchange(tls_connect(addr, &tls).await.expect("TLS"), &request)
        .await
        .expect("answer");
    assert_refusal(&answer, 401, "unauthorized");

    // Two Authorization headers: 401 even when one is valid.
    let mut request = request_bytes("GET", "/v1/kv/a", Some(&format!("Bearer {READ_TOKEN}")), "");
    let head_end = request.len() - 2;
    request.splice(
        head_end..head_end,
        format!("Authorization: Bearer {ADMIN_TOKEN}\r\n").into_bytes(),
    );
    let answer = exchange(tls_connect(addr, &tls).await.expect("TLS"), &request)
        .await
        .expect("answer");
    assert_refusal(&answer, 401, "unauthorized");
    // The scheme is case-insensitive (RFC 9110).
    let request = request_bytes(
        "GET",
        "/v1/cluster",
        Some(&format!("bearer {READ_TOKEN}")),
        "",
    );
    let answer = exchange(tls_connect(addr, &tls).await.expect("TLS"), &request)
        .await
        .expect("answer");
    assert_eq!(answer.status, 200, "{answer:?}");

    // read: reads only.
    let answer = call(addr, &tls, "PUT", "/v1/kv/a", Some(READ_TOKEN), "1").await;
    assert_refusal(&answer, 403, "forbidden");
    assert!(answer.json()["message"].as_str().unwrap().contains("write"));
    let answer = call(addr, &tls, "POST", "/v1/lock/l", Some(READ_TOKEN), "").await;
    assert_refusal(&answer, 403, "forbidden");
    let answer = call(addr, &tls, "POST", "/v1/failover", Some(READ_TOKEN), "").await;
    assert_refusal(&answer, 403, "forbidden");
    let answer = call(addr, &tls, "GET", "/v1/cluster", Some(READ_TOKEN), "").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = call(addr, &tls, "GET", "/v1/kv/a", Some(READ_TOKEN), "").await;
    assert_eq!(answer.status, 404, "nothing written yet: {answer:?}");
    let answer = call(addr, &tls, "GET", "/v1/nowhere", Some(READ_TOKEN), "").await;
    assert_eq!(answer.status, 404, "{answer:?}");
    assert!(
        answer.body.contains("/v1/kv/<key>"),
        "the paths: {answer:?}"
    );

    // write: KV and locks, not failover.
    let answer = call(addr, &tls, "PUT", "/v1/kv/a", Some(WRITE_TOKEN), "1").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = call(addr, &tls, "GET", "/v1/kv/a", Some(READ_TOKEN), "").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = call(addr, &tls, "POST", "/v1/lock/l", Some(WRITE_TOKEN), "").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = call(addr, &tls, "POST", "/v1/failover", Some(WRITE_TOKEN), "").await;
    assert_refusal(&answer, 403, "forbidden");
    assert!(answer.json()["message"].as_str().unwrap().contains("admin"));

    // admin: failover reaches the handler (a one-node cluster has nobody to hand over to).
    let answer = call(addr, &tls, "POST", "/v1/failover", Some(ADMIN_TOKEN), "").await;
    assert!(
        ![401, 403].contains(&answer.status),
        "admin may fail over: {answer:?}"
    );
    assert!(answer.json().is_object(), "{answer:?}");
    let answer = call(addr, &tls, "DELETE", "/v1/kv/a", Some(ADMIN_TOKEN), "").await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // The audit log: one line per mutating call and per refusal; names, never tokens.
    let lines = audit_lines(&log);
    let text = lines.join("\n");
    for token in [READ_TOKEN, WRITE_TOKEN, ADMIN_TOKEN, UNKNOWN_TOKEN] {
        assert!(!text.contains(token), "a token in the audit log:\n{text}");
    }
    let expect = |name: &str, method: &str, path: &str, status: u16| {
        let found = lines.iter().any(|line| {
            line.contains("ha::audit")
                && line.contains(&format!("name=\"{name}\""))
                    | line.contains(&format!("name={name}"))
                && line.contains(&format!("method={method}"))
                && line.contains(&format!("path=\"{path}\""))
                    | line.contains(&format!("path={path}"))
                && line.contains(&format!("status={status}"))
        });
        assert!(
            found,
            "no audit line {name} {method} {path} {status}:\n{text}"
        );
    };
    expect("-", "PUT", "/v1/kv/a", 401);
    expect("-", "GET", "/v1/kv/a", 401);
    expect("grafana", "PUT", "/v1/kv/a", 403);
    expect("deployer", "PUT", "/v1/kv/a", 200);
    expect("deployer", "POST", "/v1/lock/l", 200);
    expect("deployer", "POST", "/v1/failover", 403);
    expect("alice", "DELETE", "/v1/kv/a", 200);
    assert!(
        lines
            .iter()
            .any(|line| line.contains("role=\"write\"") | line.contains("role=write")),
        "roles are logged:\n{text}"
    );
    assert!(
        !lines
            .iter()
            .any(|line| line.contains("GET") && line.contains("status=200")),
        "a successful read is not audited:\n{text}"
    );
    println!("audit lines: {}\n{text}", lines.len());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_mebibyte_authorization_header_is_refused_cheaply() {
    let _alone = MEASURING.write().await;
    let tls = test_tls();
    let (node, addr) = secure_node(&tls).await;
    for size in [64 * 1024, 1024 * 1024] {
        let huge = format!("Bearer {}", "x".repeat(size));
        let request = request_bytes("PUT", "/v1/kv/huge", Some(&huge), "1");
        let stream = tls_connect(addr, &tls).await.expect("TLS");
        ALLOCATOR.reset_peak_memory();
        let started = Instant::now();
        let outcome = tokio::time::timeout(CALL_TIMEOUT, exchange(stream, &request))
            .await
            .expect("refused within the timeout");
        let elapsed = started.elapsed();
        let peak = ALLOCATOR.get_peak_memory();
        let refused = match &outcome {
            // Under hyper's header limit our check answers; above it hyper closes (431).
            Ok(answer) => {
                assert!([401, 431].contains(&answer.status), "{answer:?}");
                answer.status.to_string()
            }
            Err(error) => format!("closed ({error})"),
        };
        println!(
            "Authorization header of {size} bytes: {refused} in {elapsed:?}, peak {peak} \
             bytes allocated in the process meanwhile"
        );
        assert!(
            peak < HUGE_HEADER_PEAK_BYTES_MAX,
            "{peak} bytes for one header of {size}"
        );
    }
    let answer = call(addr, &tls, "PUT", "/v1/kv/after", Some(WRITE_TOKEN), "1").await;
    assert_eq!(answer.status, 200, "still writable: {answer:?}");
    let answer = call(addr, &tls, "GET", "/v1/health", None, "").await;
    assert_eq!(answer.status, 200, "still healthy: {answer:?}");
    node.shutdown().await;
}

/// Whether the server has closed `stream` (EOF or an error) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // A TLS alert: read on until the close.
            Ok(Ok(_)) => {}
        }
    }
}

/// A TLS record header announcing a 16 KiB handshake message, then `body_bytes` of it.
fn truncated_client_hello(body_bytes: usize) -> Vec<u8> {
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc];
    record.extend(std::iter::repeat_n(0x42, body_bytes));
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_truncated_records_and_a_stalled_handshake_do_not_stop_other_clients() {
    let _shared = MEASURING.read().await;
    let tls = test_tls();
    let (node, addr) = secure_node(&tls).await;

    // Garbage: refused at once.
    let mut garbage = TcpStream::connect(addr).await.expect("connect");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.write_all(&bytes).await.expect("write");
    let started = Instant::now();
    assert!(
        closed_within(&mut garbage, CALL_TIMEOUT).await,
        "garbage refused"
    );
    println!("4 KiB of garbage refused in {:?}", started.elapsed());

    // A plaintext HTTP request on the HTTPS port: refused.
    let mut plaintext = TcpStream::connect(addr).await.expect("connect");
    plaintext
        .write_all(&request_bytes("GET", "/v1/health", None, ""))
        .await
        .expect("write");
    assert!(
        closed_within(&mut plaintext, CALL_TIMEOUT).await,
        "plaintext refused"
    );

    // A truncated record, then the client goes away: nothing left behind.
    let mut truncated = TcpStream::connect(addr).await.expect("connect");
    truncated
        .write_all(&truncated_client_hello(100))
        .await
        .expect("write");
    drop(truncated);

    // A handshake that stalls half way (and one that never starts) while others are served.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(&truncated_client_hello(100))
        .await
        .expect("write");
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    for round in 0..5 {
        let answer = call(
            addr,
            &tls,
            "PUT",
            "/v1/kv/k",
            Some(WRITE_TOKEN),
            &round.to_string(),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    println!(
        "5 writes served in {:?} beside two stalled handshakes",
        started.elapsed()
    );
    assert!(
        !closed_within(&mut stalled, Duration::from_millis(50)).await
            && !closed_within(&mut silent, Duration::from_millis(50)).await,
        "the writes were served while both handshakes still stalled"
    );
    // The handshake timeout (10 s) ends them.
    let started = Instant::now();
    assert!(closed_within(&mut stalled, Duration::from_secs(20)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(20)).await);
    println!(
        "stalled handshakes closed after {:?} more",
        started.elapsed()
    );
    let answer = call(addr, &tls, "GET", "/v1/health", None, "").await;
    assert_eq!(answer.status, 200, "still healthy: {answer:?}");
    // The refused handshakes are counted in /v1/metrics.
    let metrics = node.metrics_text().await.expect("metrics");
    let count = |outcome: &str| -> f64 {
        let prefix = format!("ha_https_handshakes_total{{outcome=\"{outcome}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in the metrics"))
    };
    assert!(count("failed") >= 1.0, "garbage counted as failed");
    assert!(count("timed_out") >= 1.0, "stalls counted as timed out");
    assert!(count("done") >= 1.0, "good clients counted as done");
    node.shutdown().await;
}

/// A listener with small caps serving a trivial router; its counters.
async fn small_listener(
    tls: &TestTls,
    limits: HttpsLimits,
) -> (SocketAddr, Arc<HttpsCounters>, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener =
        ha::http::HttpsListener::new(tcp, Arc::clone(&tls.server), limits).expect("listener");
    let counters = listener.counters();
    let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let server = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serves");
    });
    (addr, counters, server)
}

fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether `counter` reaches `at_least` within 2 s (a counter is bumped just after the socket
/// it counts is closed).
async fn reaches(counter: &std::sync::atomic::AtomicU64, at_least: u64) -> bool {
    for _ in 0..200 {
        if count(counter) >= at_least {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_closed_and_counted() {
    let _shared = MEASURING.read().await;
    let tls = test_tls();
    let limits = HttpsLimits {
        handshake_timeout: Duration::from_secs(5),
        handshakes_max: 4,
        connections_max: 8,
        idle_timeout: Duration::from_secs(3),
    };
    let (addr, counters, server) = small_listener(&tls, limits).await;

    // Four silent clients fill the handshake cap; a fifth evicts the oldest, which is closed
    // long before its timeout.
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reaches(&counters.handshakes_evicted, 1).await);
    assert!(
        closed_within(&mut silent[0], Duration::from_secs(2)).await,
        "the oldest handshake is evicted"
    );
    assert!(
        !closed_within(&mut silent[1], Duration::from_millis(50)).await,
        "the newer ones wait for their timeout"
    );
    // An honest client is served while the cap is full of stalled handshakes.
    let answer = exchange(
        tls_connect(addr, &tls)
            .await
            .expect("TLS beside the stalled handshakes"),
        &request_bytes("GET", "/", None, ""),
    )
    .await
    .expect("served");
    assert_eq!(answer.status, 200);
    assert_eq!(count(&counters.handshakes_evicted), 2);
    // The handshake timeout ends the rest.
    for stream in &mut silent[2..] {
        assert!(closed_within(stream, Duration::from_secs(15)).await);
    }
    assert!(reaches(&counters.handshakes_timed_out, 3).await);
    assert_eq!(
        count(&counters.handshakes_timed_out) + count(&counters.handshakes_evicted),
        5,
        "each silent client evicted or timed out once (the honest one evicted one of them)"
    );

    // Eight established connections fill the connection cap; the ninth is refused.
    let done_before = count(&counters.handshakes_done);
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(tls_connect(addr, &tls).await.expect("TLS within the cap"));
    }
    assert!(reaches(&counters.handshakes_done, done_before + 8).await);
    let refused_before = count(&counters.refused_over_cap);
    let ninth = tokio::time::timeout(CALL_TIMEOUT, async {
        let stream = tls_connect(addr, &tls).await?;
        exchange(stream, &request_bytes("GET", "/", None, "")).await
    })
    .await
    .expect("answered or refused in time");
    assert!(ninth.is_err(), "over the connection cap: {ninth:?}");
    assert!(reaches(&counters.refused_over_cap, refused_before + 1).await);
    assert_eq!(count(&counters.refused_over_cap), refused_before + 1);
    // Idle connections are closed after the idle timeout, freeing the cap.
    let started = Instant::now();
    for mut stream in open {
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("closed when idle");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    println!(
        "8 idle connections closed {:?} after the ninth was refused",
        started.elapsed()
    );
    assert!(reaches(&counters.idle_closed, 8).await);
    let answer = exchange(
        tls_connect(addr, &tls).await.expect("TLS"),
        &request_bytes("GET", "/", None, ""),
    )
    .await
    .expect("served");
    assert_eq!(answer.status, 200);
    server.abort();
}

/// Whether `log` has an audit line for `name method path status`.
fn audited(log: &Mutex<Vec<u8>>, name: &str, method: &str, path: &str, status: u16) -> bool {
    audit_lines(log).iter().any(|line| {
        line.contains("ha::audit")
            && line.contains(&format!("name=\"{name}\""))
            && line.contains(&format!("method={method} "))
            && line.contains(&format!("path=\"{path}\""))
            && line.contains(&format!("status={status}"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_routes_get_the_same_checks_and_https_and_stop_with_the_node() {
    let _shared = MEASURING.read().await;
    let log = audit_log();
    let tls = test_tls();
    let (node, _) = secure_node(&tls).await;
    let host = axum::Router::new().route(
        "/journal",
        axum::routing::get(|| async { "entries" }).post(|| async { "appended" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    node.serve_router(listener, node.protect(host))
        .expect("serves");

    let answer = call(addr, &tls, "GET", "/journal", None, "").await;
    assert_refusal(&answer, 401, "unauthorized");
    let answer = call(addr, &tls, "GET", "/journal", Some(READ_TOKEN), "").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "entries"));
    let answer = call(addr, &tls, "POST", "/journal", Some(READ_TOKEN), "").await;
    assert_refusal(&answer, 403, "forbidden");
    let answer = call(addr, &tls, "POST", "/journal", Some(WRITE_TOKEN), "").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "appended"));
    assert!(audited(&log, "deployer", "POST", "/journal", 200));
    assert!(audited(&log, "grafana", "POST", "/journal", 403));

    node.shutdown().await;
    let after = tokio::time::timeout(CALL_TIMEOUT, async {
        let stream = tls_connect(addr, &tls).await?;
        exchange(
            stream,
            &request_bytes("GET", "/journal", Some(READ_TOKEN), ""),
        )
        .await
    })
    .await
    .expect("refused in time");
    assert!(after.is_err(), "served after shutdown: {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_the_router_checks_nothing_and_still_audits_writes() {
    let _shared = MEASURING.read().await;
    let log = audit_log();
    let node = support::one_node().await;
    let (status, _) =
        support::call_router(&node, Method::PUT, "/v1/kv/no-tokens", b"1".to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) =
        support::call_router(&node, Method::GET, "/v1/kv/no-tokens", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        audited(&log, "-", "PUT", "/v1/kv/no-tokens", 200),
        "{:?}",
        audit_lines(&log)
    );
    node.shutdown().await;
}

/// Stalled handshakes sent to the node at once: far more than the handshake cap.
const STALLED_FLOOD: usize = 300;
/// What the node may allocate, in all, while it holds a handshake cap's worth of stalled
/// handshakes and evicts the rest (the flood's client sockets in this process included).
const FLOOD_PEAK_BYTES_MAX: usize = 16 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_stalled_handshakes_costs_bounded_memory_and_locks_nobody_out() {
    let _alone = MEASURING.write().await;
    let tls = test_tls();
    let (node, addr) = secure_node(&tls).await;
    ALLOCATOR.reset_peak_memory();
    let started = Instant::now();
    let mut flood = Vec::with_capacity(STALLED_FLOOD);
    for _ in 0..STALLED_FLOOD {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(&truncated_client_hello(100))
            .await
            .expect("write");
        flood.push(stream);
    }
    let opened = started.elapsed();
    let answer = call(addr, &tls, "PUT", "/v1/kv/flood", Some(WRITE_TOKEN), "1").await;
    assert_eq!(answer.status, 200, "served beside the flood: {answer:?}");
    let served = started.elapsed();
    let peak = ALLOCATOR.get_peak_memory();
    let mut closed = 0;
    for stream in &mut flood {
        if closed_within(stream, Duration::from_millis(1)).await {
            closed += 1;
        }
    }
    println!(
        "{STALLED_FLOOD} stalled handshakes opened in {opened:?}; a write served after \
         {served:?}; {closed} of them already evicted; peak {peak} bytes allocated in the \
         process"
    );
    assert!(
        closed >= STALLED_FLOOD - ha::http::https_listener::HTTPS_HANDSHAKES_MAX,
        "at most a handshake cap's worth stays open: {closed} closed"
    );
    assert!(peak < FLOOD_PEAK_BYTES_MAX, "{peak} bytes for the flood");
    drop(flood);
    let answer = call(addr, &tls, "GET", "/v1/health", None, "").await;
    assert_eq!(answer.status, 200, "still healthy: {answer:?}");
    node.shutdown().await;
}
