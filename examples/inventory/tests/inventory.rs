//! Three instances of the inventory service in one process, over loopback: the service's own
//! HTTP API on every instance, reads that see every acknowledged write, refusals that change
//! nothing, audits serialised by the fenced lock, a `/changes` stream from a watch, and writes
//! that carry on after the leader's instance is killed.

use std::time::{Duration, Instant};

use ha::{Config, NodeId, Priority};
use ha_example_inventory::Inventory;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

async fn start(n: usize, seed: Option<std::net::SocketAddr>) -> Inventory {
    let id = NodeId::new(format!("n{n}")).expect("valid id");
    // The first node's seed is a closed port: it founds the cluster with whoever joins.
    let seeds = vec![seed.unwrap_or_else(|| "127.0.0.1:9".parse().expect("valid"))];
    let mut config = Config::full_ha(id, "127.0.0.1:0".parse().expect("valid"), seeds);
    config.priority = Priority(1);
    Inventory::start(config, "127.0.0.1:0".parse().expect("valid"))
        .await
        .expect("the service starts")
}

async fn three() -> Vec<Inventory> {
    let first = start(1, None).await;
    let seed = Some(first.node().gossip_addr());
    let services = vec![first, start(2, seed).await, start(3, seed).await];
    let deadline = Instant::now() + WAIT;
    while services.iter().filter(|s| s.node().is_leader()).count() != 1
        || services.iter().any(|s| s.node().role().leader.is_none())
    {
        assert!(Instant::now() < deadline, "no leader within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    services
}

fn url(service: &Inventory, path: &str) -> String {
    format!("http://{}{path}", service.http_addr())
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    service: &Inventory,
    path: &str,
) -> (u16, Value) {
    let response = http
        .request(method, url(service, path))
        .send()
        .await
        .expect("an answer");
    let status = response.status().as_u16();
    let body = response.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

/// Reads `/changes` line by line.
struct Changes {
    response: reqwest::Response,
    pending: String,
}

impl Changes {
    async fn next(&mut self) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(end) = self.pending.find('\n') {
                let line: String = self.pending.drain(..=end).collect();
                return serde_json::from_str(line.trim()).expect("a JSON line");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("a change in time")
                .expect("the stream reads")
                .expect("the stream goes on");
            self.pending
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_serve_stock_audits_and_changes_through_a_failover() {
    use reqwest::Method;
    let mut services = three().await;
    // No idle keep-alive connections: a connection task holds the service's state (a clone
    // of its node) for as long as it lives, and the kill below must drop the last clone.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let leader = services
        .iter()
        .position(|s| s.node().is_leader())
        .expect("a leader");
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (a, b) = (followers[0], followers[1]);

    // A change stream on a follower, opened before any write.
    let response = http
        .get(url(&services[b], "/changes?after=0"))
        .send()
        .await
        .expect("the stream opens");
    assert_eq!(response.status(), 200);
    let mut changes = Changes {
        response,
        pending: String::new(),
    };

    // Writes through one instance are read through another.
    let (status, body) = call(&http, Method::POST, &services[a], "/stock/bolts?delta=5").await;
    assert_eq!((status, &body["level"]), (200, &Value::from(5)), "{body}");
    let (status, body) = call(&http, Method::GET, &services[leader], "/stock/bolts").await;
    assert_eq!((status, &body["level"]), (200, &Value::from(5)), "{body}");

    // Taking 3 leaves 2, under LOW_STOCK: an alert, seen on the stream.
    let (status, body) = call(
        &http,
        Method::POST,
        &services[leader],
        "/stock/bolts?delta=-3",
    )
    .await;
    assert_eq!((status, &body["level"]), (200, &Value::from(2)), "{body}");
    let alert = changes.next().await;
    assert_eq!(alert["key"], "/alerts/bolts", "{alert}");
    assert_eq!(alert["value"], "2");

    // Refused: more than is in stock (nothing changes), a bad item, a bad delta.
    let (status, body) = call(&http, Method::POST, &services[a], "/stock/bolts?delta=-10").await;
    assert_eq!(
        (status, &body["error"], &body["level"]),
        (409, &Value::from("insufficient"), &Value::from(2))
    );
    let (status, _) = call(
        &http,
        Method::POST,
        &services[a],
        "/stock/bad%2Fitem?delta=1",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(&http, Method::POST, &services[a], "/stock/bolts?delta=lots").await;
    assert_eq!(status, 400);
    let (_, body) = call(&http, Method::GET, &services[b], "/stock/bolts").await;
    assert_eq!(body["level"], 2);

    // Two audits at once from two instances: the lock runs them one at a time, with
    // increasing fencing tokens, and each is recorded (and streamed).
    let (first, second) = tokio::join!(
        call(&http, Method::POST, &services[a], "/audit"),
        call(&http, Method::POST, &services[b], "/audit"),
    );
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    assert_eq!(first.1["units"], 2);
    let tokens =
        [&first.1["token"], &second.1["token"]].map(|token| token.as_u64().expect("a token"));
    assert_ne!(tokens[0], tokens[1]);
    let mut audited = Vec::new();
    for _ in 0..2 {
        let change = changes.next().await;
        let key = change["key"].as_str().expect("a key").to_string();
        assert!(key.starts_with("/audits/"), "{change}");
        audited.push(key);
    }
    assert!(audited[0] < audited[1], "in version order");

    // Kill the leader's instance: a survivor takes writes again (after the failover), and
    // restocking clears the alert, seen on the stream of the surviving follower.
    let killed = services[leader].node().id().clone();
    services.remove(leader).kill();
    // Indexes after the removal: b is the follower with the stream, a the other survivor.
    let b = if b > leader { b - 1 } else { b };
    let a = 1 - b;
    let deadline = Instant::now() + WAIT;
    let level = loop {
        let (status, body) = call(&http, Method::POST, &services[a], "/stock/bolts?delta=1").await;
        if status == 200 {
            break body["level"].clone();
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "no write within {WAIT:?} of the kill: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let new_leader = services[a]
        .node()
        .role()
        .leader
        .expect("a leader took the write");
    assert_ne!(
        new_leader, killed,
        "the killed instance's node is gone: a failover happened"
    );
    // An unknown-outcome attempt may have applied before the one that answered.
    let level = level.as_u64().expect("a level");
    assert!((3..=4).contains(&level), "{level}");
    let cleared = changes.next().await;
    assert_eq!(
        (cleared["key"].as_str(), &cleared["value"]),
        (Some("/alerts/bolts"), &Value::Null),
        "{cleared}"
    );
    let (_, body) = call(&http, Method::GET, &services[b], "/stock/bolts").await;
    assert_eq!(body["level"].as_u64(), Some(level));
    for service in services {
        service.shutdown().await;
    }
}
