//! Issue 14, item 4: the built-in host checks feed the node's health and `/v1/health` shows
//! each with its measured values; and the hazard they bring, solved: nodes that share a host
//! cross a threshold together, and a cluster in which every node is equally unwell (DEGRADED
//! by a host check, or UNHEALTHY by the built-in disk check) still has one leader, elected
//! after the unwell wait. Three nodes in one process on loopback; every wait polls with a
//! deadline.

mod support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ha::config_file::ConfigLoader;
use ha::host_checks::{CPU_LOAD_CHECK, DISK_SPACE_CHECK, MEMORY_CHECK, WAL_SYNC_CHECK};
use ha::{Config, Consistency, HealthCheck, HealthStatus, Node, NodeId, StateMachine};

const WAIT: Duration = Duration::from_secs(30);

/// A host check that always reports the same status (the host's own view of its service).
struct Always(HealthStatus);

impl HealthCheck for Always {
    fn name(&self) -> &str {
        "service"
    }
    fn check(&self) -> HealthStatus {
        self.0
    }
}

/// Three voters with data dirs under `dir`, each config changed by `adjust`, each with the
/// extra host check `service` when given.
async fn three(
    dir: &std::path::Path,
    adjust: impl Fn(&mut Config),
    service: Option<HealthStatus>,
) -> Vec<Node<()>> {
    let mut nodes: Vec<Node<()>> = Vec::new();
    for index in 1..=3 {
        let seed = nodes.first().map_or_else(
            || "127.0.0.1:9".parse().unwrap(),
            |first| first.gossip_addr(),
        );
        let mut config = Config::full_ha(
            NodeId::new(format!("n{index}")).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            vec![seed],
        );
        config.data_dir = Some(dir.join(format!("n{index}")));
        adjust(&mut config);
        let mut builder = Node::builder(config);
        if let Some(status) = service {
            builder = builder.health_check(Always(status));
        }
        nodes.push(builder.start().await.expect("starts"));
    }
    nodes
}

fn leaders<S: StateMachine>(nodes: &[Node<S>]) -> usize {
    nodes.iter().filter(|node| node.is_leader()).count()
}

async fn shut_down(nodes: Vec<Node<()>>) {
    for node in nodes {
        node.shutdown().await;
    }
}

/// Every node DEGRADED (a host check every node fails alike): none campaigns on its election
/// timeout, yet after the unwell wait (5 x 300 ms) one is elected, and it keeps leading
/// (a degraded leader does not hand over) and takes writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_in_which_every_node_is_degraded_still_has_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = three(dir.path(), |_| {}, Some(HealthStatus::Degraded)).await;
    let started = Instant::now();
    support::wait_until(WAIT, "one leader", async || leaders(&nodes) == 1).await;
    let elected_after = started.elapsed();
    for node in &nodes {
        assert_eq!(
            node.health_status(),
            HealthStatus::Degraded,
            "{}",
            node.id()
        );
    }
    let leader = nodes.iter().position(Node::is_leader).unwrap();
    let follower = &nodes[(leader + 1) % 3];
    follower
        .kv()
        .put("k", b"v".to_vec(), Consistency::Quorum)
        .await
        .expect("a degraded cluster takes writes");
    // Stays led by the same node: nothing healthier to hand over to.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(nodes[leader].is_leader());
    assert_eq!(leaders(&nodes), 1);
    eprintln!("all degraded: leader elected {elected_after:?} after the last node started");
    shut_down(nodes).await;
}

/// Every node UNHEALTHY by the built-in `disk_space` check (thresholds no disk meets): a leader
/// is still elected (after twice the wait), `/v1/health` shows the check failing with the
/// measured free space, and the unhealthy leader keeps leading because no voter is healthier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_whose_disks_are_all_too_full_still_has_a_leader() {
    let dir = tempfile::tempdir().unwrap();
    let full = |config: &mut Config| {
        config.health.disk_free_percent_degraded_below = 100;
        config.health.disk_free_percent_unhealthy_below = 100;
    };
    let nodes = three(dir.path(), full, None).await;
    let started = Instant::now();
    support::wait_until(WAIT, "one leader", async || leaders(&nodes) == 1).await;
    let elected_after = started.elapsed();
    let leader = nodes.iter().position(Node::is_leader).unwrap();
    for node in &nodes {
        assert_eq!(
            node.health_status(),
            HealthStatus::Unhealthy,
            "{}",
            node.id()
        );
        let report = node.health().await.unwrap();
        let disk = report
            .host_checks
            .iter()
            .find(|check| check.name == DISK_SPACE_CHECK)
            .expect("the disk check is reported");
        assert_eq!(disk.status, HealthStatus::Unhealthy);
        assert!(disk.critical);
        assert!(disk.measured["free_percent"].as_f64().unwrap() < 100.0);
        assert!(disk.detail.contains("unhealthy below"), "{}", disk.detail);
        assert!(!report.is_ok(), "an unhealthy node answers 503");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        nodes[leader].is_leader(),
        "no healthier voter to hand over to"
    );
    eprintln!("all unhealthy: leader elected {elected_after:?} after the last node started");
    shut_down(nodes).await;
}

/// One node with a data dir: `/v1/health` lists the four built-in checks with their values
/// (WAL syncs counted after writes), `checks` holds them too, and `[health]` is read from a
/// config file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_each_built_in_check_with_its_measured_values() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "preset = \"single\"\nnode_id = \"n1\"\nbind_addr = \"127.0.0.1:0\"\ndata_dir = {:?}\n\
         [health]\ncheck_interval_ms = 100\ncpu_load_percent_degraded_above = 100000\n",
        dir.path().join("n1")
    );
    let config = ConfigLoader::new()
        .toml_text(&text, "inline")
        .unwrap()
        .load()
        .unwrap();
    assert_eq!(config.health.check_interval_ms, 100);
    let node = Node::builder(config).start().await.unwrap();
    support::wait_for_leader(&node).await;
    let kv = node.kv();
    for value in 0..20u8 {
        kv.put("k", vec![value], Consistency::Quorum).await.unwrap();
    }
    let deadline = Instant::now() + WAIT;
    let report = loop {
        let report = node.health().await.unwrap();
        let samples = report
            .host_checks
            .iter()
            .find(|check| check.name == WAL_SYNC_CHECK)
            .and_then(|check| check.measured.get("samples"))
            .and_then(|samples| samples.as_f64());
        if samples.is_some_and(|samples| samples >= 20.0) {
            break report;
        }
        assert!(
            Instant::now() < deadline,
            "no WAL syncs counted: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let names: Vec<&str> = report
        .host_checks
        .iter()
        .map(|check| check.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            DISK_SPACE_CHECK,
            WAL_SYNC_CHECK,
            MEMORY_CHECK,
            CPU_LOAD_CHECK
        ]
    );
    let checks: Vec<&str> = report
        .checks
        .iter()
        .map(|check| check.name.as_str())
        .collect();
    // The host checks come first, then `storage` (issue 14, item 5: always on, not a host
    // check), then the host's own (none here).
    let mut expected = names.clone();
    expected.push("storage");
    assert_eq!(
        checks, expected,
        "each built-in check is one of the node's checks"
    );
    let wal = &report.host_checks[1];
    assert!(wal.measured.contains_key("p99_ms"), "{wal:?}");
    let memory = &report.host_checks[2];
    assert!(memory.measured["rss_bytes"].as_f64().unwrap() > 1_000_000.0);
    assert!(!report.host_checks[3].critical, "CPU load can only degrade");
    for check in &report.host_checks {
        eprintln!("{}: {} ({})", check.name, check.status, check.detail);
    }

    let (status, body) = support::call_router(&node, Method::GET, "/v1/health", Vec::new()).await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["host_checks"][0]["name"], DISK_SPACE_CHECK, "{json}");
    assert!(
        json["host_checks"][0]["measured"]["free_bytes"].is_number(),
        "{json}"
    );
    if report.health == HealthStatus::Healthy {
        assert_eq!(status, StatusCode::OK);
    }
    node.shutdown().await;
}

/// With `health.host_checks = false` the node reports only the host's own checks and the
/// always-on `storage` check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_checks_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::single(NodeId::new("n1").unwrap(), "127.0.0.1:0".parse().unwrap());
    config.data_dir = Some(dir.path().join("n1"));
    config.health.host_checks = false;
    let node = Node::builder(config).start().await.unwrap();
    support::wait_for_leader(&node).await;
    let report = node.health().await.unwrap();
    assert!(report.host_checks.is_empty());
    let checks: Vec<&str> = report
        .checks
        .iter()
        .map(|check| check.name.as_str())
        .collect();
    assert_eq!(
        checks,
        ["storage"],
        "only the storage check, which is not a host check"
    );
    node.shutdown().await;
}
