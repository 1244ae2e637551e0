//! `GET /v1/events` (issue 16, item 1) on in-process nodes: the stream follows a failover,
//! resumes with `Last-Event-ID`, says `gap` when a client is behind the ring, refuses clients
//! past `events_clients_max`, and a client that stops reading neither slows the node's writes
//! nor makes it hold more memory. Every wait is bounded; figures are printed.

use std::alloc::System;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use ha::{Config, Node, NodeId, Priority};
use http_body_util::BodyExt;
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Longest any wait in these tests may take.
const WAIT: Duration = Duration::from_secs(20);

/// Held shared by every test and exclusively by the one that measures memory and latency,
/// so that no other test allocates or loads the machine during its measurement.
static MEASURING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// One server-sent event as a client parses it.
#[derive(Clone, Debug)]
struct SseEvent {
    id: Option<u64>,
    event: String,
    data: Value,
}

/// A client of `GET /v1/events` through the node's router (no socket): it reads when asked.
struct SseClient {
    body: Body,
    buffer: String,
}

impl SseClient {
    /// Open the stream on `node` at `uri` with an optional `Last-Event-ID` header.
    async fn open(node: &Node<()>, uri: &str, last_event_id: Option<u64>) -> Self {
        let mut request = Request::get(uri);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = node
            .http_router()
            .oneshot(request.body(Body::empty()).expect("valid request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        Self {
            body: response.into_body(),
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), waiting at most `within`.
    async fn next(&mut self, within: Duration) -> SseEvent {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_block(&block) {
                    return event;
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .expect("an event within the wait")
                .expect("the stream is open")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.buffer
                    .push_str(std::str::from_utf8(&data).expect("UTF-8"));
            }
        }
    }

    /// Events until one satisfies `wanted` (returned last), waiting at most [`WAIT`] in all.
    async fn until(&mut self, what: &str, wanted: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
        let deadline = Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}: saw {seen:#?}"
            );
            let event = self.next(left).await;
            let done = wanted(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

/// An event from one `id:`/`event:`/`data:` block; `None` for a comment.
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut id = None;
    let mut event = None;
    let mut data = None;
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id: ") {
            id = Some(value.parse().expect("a numeric id"));
        } else if let Some(value) = line.strip_prefix("event: ") {
            event = Some(value.to_string());
        } else if let Some(value) = line.strip_prefix("data: ") {
            data = Some(serde_json::from_str(value).expect("one line of JSON"));
        } else {
            assert!(
                line.is_empty() || line.starts_with(':'),
                "unexpected SSE line {line:?}"
            );
        }
    }
    let event = event?;
    let data: Value = data.expect("every event has data");
    assert_eq!(data["kind"], event.as_str(), "kind = the event name");
    if let Some(id) = id {
        assert_eq!(data["seq"], id, "seq = the id");
    }
    Some(SseEvent { id, event, data })
}

/// A node of a 3-voter cluster on loopback serving HTTP, with `ring_max` events kept.
async fn start(index: usize, seed: Option<SocketAddr>, ring_max: usize) -> Node<()> {
    let id = NodeId::new(format!("n{index}")).expect("valid");
    let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().expect("valid"))];
    let mut config = Config::full_ha(id, "127.0.0.1:0".parse().expect("valid"), seeds);
    config.priority = Priority(1);
    config.http_addr = Some("127.0.0.1:0".parse().expect("valid"));
    config.events_ring_max = ring_max;
    Node::builder(config)
        .request_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect("starts")
}

async fn three_nodes(ring_max: usize) -> Vec<Node<()>> {
    let first = start(1, None, ring_max).await;
    let seed = Some(first.gossip_addr());
    let nodes = vec![
        first,
        start(2, seed, ring_max).await,
        start(3, seed, ring_max).await,
    ];
    let deadline = Instant::now() + WAIT;
    while nodes.iter().filter(|node| node.is_leader()).count() != 1
        || nodes.iter().any(|node| node.role().leader.is_none())
    {
        assert!(Instant::now() < deadline, "no leader within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes
}

/// Take and let go of lock `name` through `node` `times` times: two `lock` events each on
/// every data node.
async fn lock_cycles(node: &Node<()>, name: &str, times: usize) {
    let client = node.lock_session();
    let lease = client
        .leases()
        .grant(Duration::from_secs(10))
        .await
        .expect("lease");
    for _ in 0..times {
        let guard = client
            .locks()
            .acquire_with_lease(name, &lease, Duration::from_secs(5))
            .await
            .expect("acquire");
        guard.release().await.expect("release");
    }
}

/// The stream of a follower follows a failover: the new leader and the failover record with
/// its cause and leaderless time, the lock grants and releases it applies; a client that
/// resumes with `Last-Event-ID` (header or query) gets exactly the events it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_a_failover_and_resume_with_last_event_id() {
    let _shared = MEASURING.read().await;
    let mut nodes = three_nodes(4096).await;
    let leader = nodes.iter().position(Node::is_leader).expect("a leader");
    let old_leader = nodes[leader].id().clone();
    let watcher = nodes
        .iter()
        .position(|node| !node.is_leader())
        .expect("a follower");

    // From the start: hello first, then seq 1, 2, ... with role and member events.
    let mut stream = SseClient::open(&nodes[watcher], "/v1/events", Some(0)).await;
    let hello = stream.next(WAIT).await;
    assert_eq!((hello.event.as_str(), hello.id), ("hello", None));
    assert_eq!(hello.data["node"], nodes[watcher].id().as_str());
    let newest = hello.data["seq"].as_u64().expect("seq");
    let start = stream
        .until("the events so far", |event| event.id == Some(newest))
        .await;
    let ids: Vec<u64> = start.iter().filter_map(|event| event.id).collect();
    assert_eq!(
        ids,
        (1..=newest).collect::<Vec<_>>(),
        "seqs from 1, one by one"
    );
    assert!(start.iter().any(|event| event.event == "member"));
    assert!(start.iter().any(|event| event.event == "role"));

    // Lock grants and releases this node applies.
    lock_cycles(&nodes[watcher], "events-test", 1).await;
    let locks = stream
        .until("a lock release", |event| {
            event.event == "lock" && event.data["change"] == "released"
        })
        .await;
    let granted = locks
        .iter()
        .find(|event| event.event == "lock" && event.data["change"] == "granted")
        .expect("the grant before the release");
    assert_eq!(granted.data["name"], "events-test");
    assert_eq!(
        granted.data["token"],
        locks.last().expect("the release").data["token"]
    );

    // The leader crashes (dropped without a hand-over).
    let crashed_at = Instant::now();
    drop(nodes.remove(leader));
    let watcher = if watcher > leader {
        watcher - 1
    } else {
        watcher
    };
    let failover = stream
        .until("a failover from the old leader", |event| {
            event.event == "failover" && event.data["from"] == old_leader.as_str()
        })
        .await;
    let record = &failover.last().expect("the failover").data;
    let new_leader = record["to"].as_str().expect("to").to_string();
    assert_ne!(new_leader, old_leader.as_str());
    assert!(record["cause"].is_string() && record["leaderless_ms"].is_u64());
    assert!(record["term"].is_u64() && record["at_ms"].is_u64());
    println!(
        "events_sse: failover {} -> {new_leader} (cause {}, leaderless {} ms) on the stream {:?} after the crash",
        old_leader,
        record["cause"],
        record["leaderless_ms"],
        crashed_at.elapsed()
    );
    let saw_role = failover
        .iter()
        .any(|event| event.event == "role" && event.data["leader"] == new_leader.as_str());
    if !saw_role {
        stream
            .until("the role event naming the new leader", |event| {
                event.event == "role" && event.data["leader"] == new_leader.as_str()
            })
            .await;
    }
    let last_seen = stream
        .until("the newest event", |event| {
            event.id == Some(nodes[watcher].event_journal().newest_seq())
        })
        .await
        .last()
        .and_then(|event| event.id)
        .expect("an id");
    drop(stream);

    // Missed while away: a lock cycle. Resume by header, then by query: the same events.
    lock_cycles(&nodes[watcher], "events-resume", 1).await;
    let mut resumed = SseClient::open(&nodes[watcher], "/v1/events", Some(last_seen)).await;
    assert_eq!(resumed.next(WAIT).await.event, "hello");
    let missed = resumed
        .until("the missed release", |event| {
            event.event == "lock"
                && event.data["change"] == "released"
                && event.data["name"] == "events-resume"
        })
        .await;
    let ids: Vec<u64> = missed.iter().filter_map(|event| event.id).collect();
    assert_eq!(ids.first(), Some(&(last_seen + 1)), "resumes right after");
    assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "{ids:?}");
    assert!(missed.iter().all(|event| event.event != "gap"));
    let uri = format!("/v1/events?last_event_id={last_seen}");
    let mut by_query = SseClient::open(&nodes[watcher], &uri, None).await;
    assert_eq!(by_query.next(WAIT).await.event, "hello");
    assert_eq!(by_query.next(WAIT).await.id, Some(last_seen + 1));

    for node in &nodes {
        node.shutdown().await;
    }
}

/// A client that resumes older than the ring holds, or falls behind it while connected, gets
/// one `gap` event with what it missed and where it resumes, then the rest; the count shows
/// in `/v1/metrics`. Clients past `events_clients_max` get 429 `limit`, and a closed client
/// gives its place back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_the_ring_get_a_gap_and_clients_are_limited() {
    let _shared = MEASURING.read().await;
    let mut config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.events_ring_max = 16;
    config.events_clients_max = 2;
    let node = Node::builder(config).start().await.expect("starts");
    let mut roles = node.watch_role();
    tokio::time::timeout(WAIT, roles.wait_for(|role| role.leader.is_some()))
        .await
        .expect("leads")
        .expect("running");

    // A connected client that does not read while 40 events pass.
    let mut behind = SseClient::open(&node, "/v1/events", None).await;
    assert_eq!(behind.next(WAIT).await.event, "hello");
    lock_cycles(&node, "gap", 20).await;
    let journal = node.event_journal();
    assert_eq!(journal.len(), 16);
    let seen = behind.until("a gap", |event| event.event == "gap").await;
    let gap = seen.last().expect("the gap").data.clone();
    // The client's task may have run ahead of the ring more than once while it was not read:
    // each gap says where the next event is.
    let mut resume = gap["resume_seq"].as_u64().expect("resume_seq");
    let next = loop {
        let event = behind.next(WAIT).await;
        if event.event != "gap" {
            break event;
        }
        resume = event.data["resume_seq"].as_u64().expect("resume_seq");
    };
    assert_eq!(next.id, Some(resume), "then the rest, in order");
    println!(
        "events_sse: a connected client behind the ring got gap {gap} after {} events",
        seen.len() - 1
    );

    // Resuming from seq 1 of a ring that has moved on: a gap first, then the oldest kept.
    let mut late = SseClient::open(&node, "/v1/events", Some(1)).await;
    assert_eq!(late.next(WAIT).await.event, "hello");
    let gap = late.next(WAIT).await;
    assert_eq!((gap.event.as_str(), gap.id), ("gap", None));
    let resume_seq = gap.data["resume_seq"].as_u64().expect("resume_seq");
    assert_eq!(gap.data["missed"].as_u64(), Some(resume_seq - 2));
    assert_eq!(late.next(WAIT).await.id, Some(resume_seq));

    // Two clients are connected (behind, late): a third is refused; closing one frees it.
    let response = node
        .http_router()
        .oneshot(
            Request::get("/v1/events")
                .body(Body::empty())
                .expect("valid"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let error: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(error["error"], "limit");
    drop(late);
    let deadline = Instant::now() + WAIT;
    while journal.clients() != 1 {
        assert!(Instant::now() < deadline, "a closed client keeps its place");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _third = SseClient::open(&node, "/v1/events", None).await;

    // Bad resume points are refused.
    let response = node
        .http_router()
        .oneshot(
            Request::get("/v1/events")
                .header("last-event-id", "seven")
                .body(Body::empty())
                .expect("valid"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let metrics = node
        .http_router()
        .oneshot(
            Request::get("/v1/metrics")
                .body(Body::empty())
                .expect("valid"),
        )
        .await
        .expect("infallible");
    let text = String::from_utf8(
        metrics
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("UTF-8");
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|line| {
                line.strip_prefix(name)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /v1/metrics"))
    };
    assert!(value("ha_events_gaps_total") >= 2.0);
    assert_eq!(value("ha_events_clients"), 2.0);
    assert_eq!(value("ha_events_sequence"), journal.newest_seq() as f64);
    assert_eq!(value("ha_events_ring_events"), 16.0);
    node.shutdown().await;
}

/// The median of `samples`.
fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `pairs` lock acquire/release pairs on the leader from 8 concurrent sessions: the latency
/// of every write.
async fn timed_lock_cycles(node: &Node<()>, pairs: usize) -> Vec<Duration> {
    const SESSIONS: usize = 8;
    let mut tasks = Vec::new();
    for session in 0..SESSIONS {
        let client = node.lock_session();
        let each = pairs / SESSIONS;
        tasks.push(tokio::spawn(async move {
            let lease = client
                .leases()
                .grant(Duration::from_secs(30))
                .await
                .expect("lease");
            let name = format!("load-{session}");
            let mut latencies = Vec::with_capacity(each * 2);
            for _ in 0..each {
                let started = Instant::now();
                let guard = client
                    .locks()
                    .acquire_with_lease(name.as_str(), &lease, Duration::from_secs(5))
                    .await
                    .expect("acquire");
                latencies.push(started.elapsed());
                let started = Instant::now();
                guard.release().await.expect("release");
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("no panic"));
    }
    all
}

/// Clients that stop reading while the leader journals 20,000 events: the leader's write p50
/// stays within 2x (+1 ms) of the baseline measured in the same run without them (the larger
/// of the phases before and after, so a machine that slows down meanwhile is not blamed on
/// the clients), the
/// process's peak heap growth within 4 MiB of the baseline phase's, the ring within its
/// bound, and each stalled client, once it reads again, is told what it missed with a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_slows_nothing_and_costs_no_memory() {
    let _exclusive = MEASURING.write().await;
    let nodes = three_nodes(ha::core::EVENTS_RING_MAX_DEFAULT).await;
    let leader = nodes
        .iter()
        .find(|node| node.is_leader())
        .expect("a leader");
    let journal = Arc::clone(leader.event_journal());
    let http = leader.http_addr().expect("serves HTTP");

    // Warm up: fill every node's ring, so neither phase measures the ring growing.
    let pairs_to_fill = ha::core::EVENTS_RING_MAX_DEFAULT / 2 + 64;
    let warm = Instant::now();
    timed_lock_cycles(leader, pairs_to_fill).await;
    assert_eq!(journal.len(), journal.ring_max());
    println!(
        "events_sse: warm-up ({pairs_to_fill} pairs) took {:?}",
        warm.elapsed()
    );

    let baseline_pairs = 2_000;
    ALLOCATOR.reset_peak_memory();
    let base_start = journal.newest_seq();
    let mut baseline = timed_lock_cycles(leader, baseline_pairs).await;
    let baseline_peak = ALLOCATOR.get_peak_memory();
    let baseline_events = journal.newest_seq() - base_start;

    // Four stalled clients over TCP (small receive buffers; they never read) and one in
    // process whose body is never polled after hello.
    let mut stalled_tcp = Vec::new();
    for _ in 0..4 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("rcvbuf");
        let mut stream = socket.connect(http).await.expect("connect");
        stream
            .write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request");
        stalled_tcp.push(stream);
    }
    let mut stalled = SseClient::open(leader, "/v1/events", None).await;
    assert_eq!(stalled.next(WAIT).await.event, "hello");
    let deadline = Instant::now() + WAIT;
    while journal.clients() != 5 {
        assert!(Instant::now() < deadline, "five clients connect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let stalled_pairs = 10_240;
    ALLOCATOR.reset_peak_memory();
    let stall_start = journal.newest_seq();
    let mut during = timed_lock_cycles(leader, stalled_pairs).await;
    let stalled_peak = ALLOCATOR.get_peak_memory();
    let stalled_events = journal.newest_seq() - stall_start;
    assert!(
        stalled_events >= 20_000,
        "{stalled_events} events journaled"
    );

    // The in-process client reads again: what was queued, then a gap, then the newest.
    let seen = stalled.until("a gap", |event| event.event == "gap").await;
    let gap = seen.last().expect("gap").data.clone();
    assert!(gap["missed"].as_u64().expect("missed") > 10_000, "{gap}");
    println!("events_sse: the stalled client, reading again, got {gap}");
    drop((stalled, stalled_tcp));
    let deadline = Instant::now() + WAIT;
    while journal.clients() != 0 {
        assert!(
            Instant::now() < deadline,
            "closed clients keep their places"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The baseline again, after: tells the clients' effect from the run drifting.
    let mut after = timed_lock_cycles(leader, baseline_pairs).await;

    let (base, slow, again) = (p50(&mut baseline), p50(&mut during), p50(&mut after));
    println!(
        "events_sse: write p50 {base:?} before the stalled clients, {again:?} after they left; \
         the larger is the baseline"
    );
    let base = base.max(again);
    let ring_bytes = journal.ring_bytes();
    println!(
        "events_sse: write p50 {base:?} baseline ({} writes, {baseline_events} events) vs \
         {slow:?} with 5 stalled clients ({} writes, {stalled_events} events): {:.2}x; peak \
         heap growth {} KiB baseline vs {} KiB stalled; ring {} events, {ring_bytes} bytes \
         (bound {} bytes)",
        baseline.len(),
        during.len(),
        slow.as_secs_f64() / base.as_secs_f64(),
        baseline_peak / 1024,
        stalled_peak / 1024,
        journal.len(),
        journal.ring_max() * ha::core::EVENT_BYTES_MAX,
    );
    assert!(
        slow <= base * 2 + Duration::from_millis(1),
        "stalled clients slowed the writes: p50 {slow:?} vs {base:?}"
    );
    assert!(
        stalled_peak <= baseline_peak + 4 * 1024 * 1024,
        "stalled clients cost memory: peak {stalled_peak} vs {baseline_peak} bytes"
    );
    assert!(ring_bytes <= journal.ring_max() * ha::core::EVENT_BYTES_MAX);

    for node in &nodes {
        node.shutdown().await;
    }
}
