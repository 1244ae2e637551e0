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
//!
//! promtool comes from Debian's `prometheus` package (.ci/run installs it). Without it the
//! promtool checks are skipped with a message, except under `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/alerts_test.yml",
        "deploy/grafana/ha.json",
    ] {
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
