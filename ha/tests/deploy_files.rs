//! The monitoring files shipped in `deploy/` (issue 16) against what a node exports.
//!
//! - Every `ha_*` metric that `deploy/prometheus/alerts.yml`, its unit tests and the Grafana
//!   dashboard `deploy/grafana/ha.json` name is one the node renders: a string literal in the
//!   crates' sources (outside their `#[cfg(test)]` modules), or a histogram's `_bucket`,
//!   `_sum` or `_count` series of one. A renamed metric breaks this test, not a dashboard in
//!   production.
//! - The dashboard is valid JSON Grafana can import: a uid and title, unique panel ids,
//!   panels inside the 24-column grid and not overlapping, a datasource variable, and every
//!   query valid PromQL (checked by promtool as recording rules).
//! - `promtool check rules` and `promtool test rules` pass on the alert rules.
//! - The metric reference table in docs/ARCHITECTURE.md lists exactly the exported names.
//! - A live node (one voter with a data dir, a backup dir and host checks) renders a family
//!   for every name used, of the type the queries assume: `rate`/`increase` only over
//!   counters and histogram buckets, `_bucket`/`_sum`/`_count` only of histograms.
//!
//! promtool comes from Debian's `prometheus` package (.ci/run installs it). Without it the
//! promtool checks are skipped with a message, except under `CI=true`, where they fail.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use ha::core::{BackupConfig, Consistency};
use ha::{Config, Node, NodeId};

/// The crates whose sources render metrics.
const SOURCE_DIRS: [&str; 5] = [
    "ha/src",
    "ha-core/src",
    "ha-gossip/src",
    "ha-replicate/src",
    "ha-lock/src",
];
/// The series a Prometheus histogram `NAME` is scraped as, besides none named `NAME`.
const HISTOGRAM_SUFFIXES: [&str; 3] = ["_bucket", "_sum", "_count"];
/// The heading of the metric reference table in docs/ARCHITECTURE.md.
const REFERENCE_HEADING: &str = "### Monitoring: metric reference, alert rules, Grafana";
/// The files whose queries must match what a node renders.
const QUERY_FILES: [&str; 3] = [
    "deploy/prometheus/alerts.yml",
    "deploy/prometheus/alerts_test.yml",
    "deploy/grafana/ha.json",
];
/// Functions whose argument must be a counter (or a histogram's buckets).
const COUNTER_FUNCTIONS: [&str; 2] = ["rate(", "increase("];
/// Source files read at most (the crates have about 200): a bound on the walk.
const SOURCE_FILES_MAX: usize = 5_000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the ha crate lives in the workspace root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every `ha_…` token in `text` that starts at a word boundary (so `sha_1` or a recording
/// rule's `ha:…` are not taken).
fn metric_tokens(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut at = 0;
    while let Some(offset) = text[at..].find("ha_") {
        let start = at + offset;
        let boundary = start == 0 || {
            let before = bytes[start - 1];
            !(before.is_ascii_alphanumeric() || before == b'_' || before == b':')
        };
        let end = start
            + text[start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(text.len() - start);
        if boundary && end > start + 3 {
            found.insert(text[start..end].to_string());
        }
        at = end.max(start + 3);
    }
    found
}

/// The `"ha_…"` string literals of a source file's non-test code: the text up to its first
/// `#[cfg(test)]` (test modules sit at the end of a file here), so a test asserting that a
/// removed name is gone does not count as exporting it.
fn exported_in(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut found = BTreeSet::new();
    for piece in code.split('"').skip(1).step_by(2) {
        let whole = piece.starts_with("ha_")
            && piece.len() > 3
            && piece
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
        if whole {
            found.insert(piece.to_string());
        }
    }
    found
}

/// The metric names the node exports: `"ha_…"` literals in the sources.
fn exported_names() -> BTreeSet<String> {
    let mut pending: Vec<PathBuf> = SOURCE_DIRS
        .iter()
        .map(|dir| repo_root().join(dir))
        .collect();
    let mut names = BTreeSet::new();
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files += 1;
                assert!(
                    files <= SOURCE_FILES_MAX,
                    "more than {SOURCE_FILES_MAX} sources"
                );
                let source = std::fs::read_to_string(&path).expect("a readable source");
                names.extend(exported_in(&source));
            }
        }
    }
    assert!(
        names.contains("ha_is_leader") && names.contains("ha_term"),
        "the scan found none of the well-known metrics: {names:?}"
    );
    names
}

/// Whether `name` is a series the node exports: an exported name, or a histogram's series.
fn is_exported(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || HISTOGRAM_SUFFIXES.iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| exported.contains(base))
        })
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/grafana/ha.json"))
        .expect("deploy/grafana/ha.json is valid JSON")
}

/// Every query of the dashboard, with Grafana's variables replaced by what makes it plain
/// PromQL (`$job`, `$instance` match anything; `$__rate_interval` is a minute).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let plain = expr
                .replace("$job", ".*")
                .replace("$instance", ".*")
                .replace("$__rate_interval", "1m");
            queries.push((title.to_string(), plain));
        }
    }
    queries
}

#[test]
fn every_metric_the_rules_and_the_dashboard_name_is_exported() {
    let exported = exported_names();
    let mut unknown = Vec::new();
    for file in QUERY_FILES {
        let names = metric_tokens(&read(file));
        assert!(names.len() >= 5, "{file} names only {names:?}");
        for name in names {
            if !is_exported(&name, &exported) {
                unknown.push(format!("{file}: {name}"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics no node exports (renamed? a typo?):\n{}",
        unknown.join("\n")
    );
}

#[test]
fn the_scan_tells_exported_names_from_the_rest() {
    let source = r#"out.single("ha_term", "gauge", "help ha_not_a_literal", 1.0);
        let histogram = "ha_wal_fsync_seconds"; let format = "ha_{name}";
        #[cfg(test)] mod tests { const GONE: &str = "ha_failovers_recorded"; }"#;
    let exported = exported_in(source);
    assert_eq!(
        exported,
        BTreeSet::from(["ha_term".to_string(), "ha_wal_fsync_seconds".to_string()])
    );
    assert!(is_exported("ha_wal_fsync_seconds_bucket", &exported));
    assert!(is_exported("ha_wal_fsync_seconds_count", &exported));
    assert!(!is_exported("ha_wal_fsync_seconds_p99", &exported));
    assert!(!is_exported("ha_failovers_recorded", &exported));
    assert_eq!(
        metric_tokens("rate(ha_x_total[5m]) sha_1 job:ha_y ha: x ha_z{le=\"1\"}"),
        BTreeSet::from(["ha_x_total".to_string(), "ha_z".to_string()])
    );
}

#[test]
fn the_dashboard_is_importable_grafana_json() {
    let dashboard = dashboard();
    assert_eq!(dashboard["uid"], "ha-cluster");
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let datasource = variables
        .iter()
        .find(|variable| variable["name"] == "datasource")
        .expect("a datasource variable, so the import asks for none by uid");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: id used twice"
        );
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|key| {
            grid[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{key}"))
        });
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: outside the grid");
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        boxes.push((title.to_string(), [x, y, w, h]));
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Leader",
        "Term",
        "Quorum",
        "Members by state",
        "Peer lag (entries)",
        "Leader changes in 15 m",
        "WAL fsync",
        "Backups",
        "Consistency",
        "Data disk free",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
    // The six histograms, each as p50 and p99.
    let queries = dashboard_queries(&dashboard);
    for histogram in [
        "ha_propose_commit_seconds",
        "ha_commit_apply_seconds",
        "ha_wal_fsync_seconds",
        "ha_forward_round_trip_seconds",
        "ha_read_index_round_trip_seconds",
        "ha_failover_leaderless_seconds",
    ] {
        for quantile in ["0.5", "0.99"] {
            let wanted = format!(
                "histogram_quantile({quantile}, sum by (instance, le) (rate({histogram}_bucket{{"
            );
            assert!(
                queries.iter().any(|(_, expr)| expr.starts_with(&wanted)),
                "no p{quantile} panel of {histogram}"
            );
        }
    }
}

/// promtool's path, or `None` (a failure under `CI=true`).
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is not installed (Debian: apt-get install prometheus); CI=true needs it"
        );
        eprintln!("promtool not installed: skipping (Debian: apt-get install prometheus)");
    }
    found
}

fn run_promtool(promtool: &Path, args: &[&str], dir: &Path) {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("promtool {}: {text}", args.join(" "));
    assert!(output.status.success(), "promtool {args:?} failed:\n{text}");
}

#[test]
fn promtool_passes_the_rules_their_unit_tests_and_the_dashboard_queries() {
    let Some(promtool) = promtool() else {
        return;
    };
    let rules_dir = repo_root().join("deploy/prometheus");
    run_promtool(&promtool, &["check", "rules", "alerts.yml"], &rules_dir);
    run_promtool(&promtool, &["test", "rules", "alerts_test.yml"], &rules_dir);
    // The dashboard's queries, as recording rules: promtool parses each one (JSON is YAML).
    let rules: Vec<serde_json::Value> = dashboard_queries(&dashboard())
        .into_iter()
        .enumerate()
        .map(|(position, (_, expr))| {
            serde_json::json!({"record": format!("dashboard:query_{position}"), "expr": expr})
        })
        .collect();
    assert!(rules.len() >= 20, "only {} dashboard queries", rules.len());
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("dashboard.yml"), file.to_string()).expect("written");
    run_promtool(&promtool, &["check", "rules", "dashboard.yml"], dir.path());
}

#[test]
fn the_metric_reference_lists_exactly_the_exported_metrics() {
    let architecture = read("docs/ARCHITECTURE.md");
    let start = architecture
        .find(REFERENCE_HEADING)
        .unwrap_or_else(|| panic!("docs/ARCHITECTURE.md has no {REFERENCE_HEADING:?}"));
    let section = &architecture[start + REFERENCE_HEADING.len()..];
    let end = section.find("\n## ").unwrap_or(section.len());
    let end = section[..end].find("\n### ").unwrap_or(end);
    let table: BTreeSet<String> = section[..end]
        .lines()
        .filter(|line| line.starts_with("| `ha_"))
        .filter_map(|line| line.split('`').nth(1).map(str::to_string))
        .collect();
    let exported = exported_names();
    let missing: Vec<&String> = exported.difference(&table).collect();
    let stale: Vec<&String> = table.difference(&exported).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/ARCHITECTURE.md's metric table lacks {missing:?} and lists {stale:?}, which no node exports"
    );
}

/// `# TYPE` lines of a scrape: family name to type.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect()
}

/// The type of the family `name` is a series of: itself, or the histogram it is a
/// `_bucket`/`_sum`/`_count` of; `None` when the scrape has no such family.
fn family_of(name: &str, families: &BTreeMap<String, String>) -> Option<(String, String)> {
    if let Some(kind) = families.get(name) {
        return Some((name.to_string(), kind.clone()));
    }
    HISTOGRAM_SUFFIXES.iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let kind = families.get(base)?;
        (kind == "histogram").then(|| (base.to_string(), kind.clone()))
    })
}

/// Every metric a `rate(`/`increase(` in `text` is applied to (the first `ha_` token after
/// the function's parenthesis).
fn rated_metrics(text: &str) -> BTreeSet<String> {
    let mut rated = BTreeSet::new();
    for function in COUNTER_FUNCTIONS {
        for (at, _) in text.match_indices(function) {
            let boundary = at == 0 || !text.as_bytes()[at - 1].is_ascii_alphanumeric();
            let argument = &text[at + function.len()..];
            if boundary && argument.starts_with("ha_") {
                let end = argument
                    .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(argument.len());
                rated.insert(argument[..end].to_string());
            }
        }
    }
    rated
}

/// A one-voter node with a data dir (WAL fsyncs), a backup dir and the host checks every
/// 100 ms: the node that renders the most families.
async fn node_with_everything(data_dir: &Path, backup_dir: &Path) -> Node<()> {
    let mut config = Config::single(
        NodeId::new("n1").expect("valid"),
        "127.0.0.1:0".parse().expect("valid"),
    );
    config.data_dir = Some(data_dir.to_path_buf());
    config.backup = BackupConfig {
        dir: Some(backup_dir.to_path_buf()),
        interval_s: 1,
        keep: 2,
    };
    config.health.host_checks = true;
    config.health.check_interval_ms = 100;
    let node = Node::builder(config)
        .request_timeout(Duration::from_secs(5))
        .start()
        .await
        .expect("starts");
    support::wait_for_leader(&node).await;
    node
}

async fn scrape(node: &Node<()>) -> String {
    let (status, body) = support::call_router(node, Method::GET, "/v1/metrics", Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(body).expect("utf-8")
}

#[test]
fn the_type_check_finds_rated_gauges_and_foreign_suffixes() {
    let families =
        families("# TYPE ha_a_total counter\n# TYPE ha_g gauge\n# TYPE ha_h_seconds histogram\n");
    assert_eq!(
        family_of("ha_h_seconds_bucket", &families),
        Some(("ha_h_seconds".to_string(), "histogram".to_string()))
    );
    assert_eq!(family_of("ha_g_sum", &families), None);
    assert_eq!(family_of("ha_missing", &families), None);
    assert_eq!(
        rated_metrics(
            "rate(ha_z_total[5m]) + increase(ha_g{a=\"ha_b\"}[1h]) / deriv(ha_x[1m]) irate(y)"
        ),
        BTreeSet::from(["ha_g".to_string(), "ha_z_total".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_renders_every_family_the_queries_use_with_the_type_they_assume() {
    let data = tempfile::tempdir().expect("temp dir");
    let backups = tempfile::tempdir().expect("temp dir");
    let node = node_with_everything(data.path(), backups.path()).await;
    // Writes, so the WAL fsyncs enough for the wal_sync check to report a p99.
    let kv = node.kv();
    for key in 0..30 {
        kv.put(&format!("key-{key}"), b"v".to_vec(), Consistency::Quorum)
            .await
            .expect("put");
    }
    let mut text = String::new();
    support::wait_until(
        Duration::from_secs(30),
        "a backup and the host checks' figures in the metrics",
        async || {
            text = scrape(&node).await;
            [
                "ha_backups_taken_total 1",
                "# TYPE ha_host_wal_sync_p99_seconds",
            ]
            .iter()
            .all(|wanted| text.contains(wanted))
                && text.contains("# TYPE ha_host_disk_free_ratio")
        },
    )
    .await;
    node.shutdown().await;
    let families = families(&text);
    let mut problems = Vec::new();
    for file in QUERY_FILES {
        let queries = read(file);
        for name in metric_tokens(&queries) {
            if family_of(&name, &families).is_none() {
                problems.push(format!("{file}: {name}: no such family in a live scrape"));
            }
        }
        for name in rated_metrics(&queries) {
            match family_of(&name, &families) {
                Some((_, kind)) if kind == "counter" => {}
                Some((_, kind)) if kind == "histogram" && name.ends_with("_bucket") => {}
                found => problems.push(format!(
                    "{file}: rate/increase over {name}, which is {found:?}, not a counter"
                )),
            }
        }
    }
    println!(
        "{} families in the scrape; queries checked in {}",
        families.len(),
        QUERY_FILES.join(", ")
    );
    assert!(
        problems.is_empty(),
        "{}\n\nscrape:\n{text}",
        problems.join("\n")
    );
}
