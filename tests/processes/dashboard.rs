//! The dashboard (`GET /ui`) in a real browser: headless Chromium, driven over the DevTools
//! protocol, loads the page of a follower in a 3-node cluster of `bot` processes, sees the
//! member table and the leader, then the leader is killed by SIGKILL and the same page (no
//! reload: a marker set in the page's JavaScript survives) must show the new leader and a
//! failover entry from the old one. Then the node the page talks to is killed and the page
//! must say it is cut off. Screenshots: `target/dashboard.png` (after the failover; the
//! README's picture) and `target/dashboard-cut-off.png`.
//!
//! The DOM it reads is the contract of docs/ARCHITECTURE.md, "Dashboard": `#conn[data-state]`,
//! `#leader` (text, `data-term`), `#members tbody tr[data-node][data-role]`,
//! `#failovers li[data-term][data-from][data-to][data-leaderless-ms]`.
//!
//! Under `CI=true` a browser that cannot be started fails the test (`.ci/run` installs
//! Debian's `chromium`); elsewhere the test says why and passes without running.

mod support;

#[path = "support/chromium.rs"]
mod chromium;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use chromium::Chromium;
use support::cluster::TestCluster;

/// Bound on each wait for the cluster or the page (the page polls about once a second).
const WAIT: Duration = Duration::from_secs(20);

/// What the page shows, read from its DOM in one evaluation.
#[derive(Debug, Deserialize)]
struct PageView {
    /// The marker the test sets in the page's JavaScript globals; a reload loses it.
    marker: Option<String>,
    /// `#conn`'s `data-state`: `connecting`, `live` or `cut-off`.
    conn: Option<String>,
    /// `#leader`'s text: a node id or `none`.
    leader: Option<String>,
    /// `#leader`'s `data-term`.
    term: Option<String>,
    /// The rows of `#members tbody`.
    members: Vec<MemberRow>,
    /// The items of `#failovers`, newest first.
    failovers: Vec<FailoverItem>,
    /// The contract's sections the page lacks.
    missing_sections: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct MemberRow {
    node: Option<String>,
    role: Option<String>,
    cells: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct FailoverItem {
    term: Option<String>,
    from: Option<String>,
    to: Option<String>,
    leaderless_ms: Option<String>,
}

/// One JavaScript expression that reads every element of the contract into a [`PageView`].
const READ_PAGE: &str = r#"(() => {
  const one = (selector) => document.querySelector(selector);
  const all = (selector) => Array.from(document.querySelectorAll(selector));
  const conn = one('#conn');
  const leader = one('#leader');
  return JSON.stringify({
    marker: window.haBrowserTestMarker ?? null,
    conn: conn?.dataset.state ?? null,
    leader: leader ? leader.textContent.trim() : null,
    term: leader?.dataset.term ?? null,
    members: all('#members tbody tr').map((row) => ({
      node: row.dataset.node ?? null,
      role: row.dataset.role ?? null,
      cells: Array.from(row.cells).map((cell) => cell.textContent.trim()),
    })),
    failovers: all('#failovers li').map((item) => ({
      term: item.dataset.term ?? null,
      from: item.dataset.from ?? null,
      to: item.dataset.to ?? null,
      leaderless_ms: item.dataset.leaderlessMs ?? null,
    })),
    missing_sections: ['#conn', '#leader', '#members', '#failovers', '#locks',
      '#sparkline-writes', '#sparkline-latency', '#backups', '#consistency']
      .filter((selector) => !one(selector)),
  });
})()"#;

fn read_page(browser: &Chromium) -> Result<PageView, String> {
    browser.evaluate_json(READ_PAGE)
}

impl PageView {
    fn member(&self, id: &str) -> Option<&MemberRow> {
        self.members
            .iter()
            .find(|row| row.node.as_deref() == Some(id))
    }

    fn shows_live(&self) -> bool {
        self.conn.as_deref() == Some("live")
    }
}

/// `target/NAME`: next to the build's output, where CI keeps its artifacts.
fn target_file(name: &str) -> PathBuf {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
    scratch.parent().unwrap_or(scratch).join(name)
}

#[test]
fn dashboard_follows_a_failover_live_in_a_real_browser() {
    let Some(browser) = Chromium::start_or_skip() else {
        return;
    };
    println!("browser: {}", browser.version());
    // n1 leads first (highest priority); n2 takes over when it dies; the page is n3's, a
    // follower throughout.
    let mut cluster = TestCluster::start(&[30, 20, 10]);
    let old = cluster.wait_for_leader(&[], WAIT);
    let old_id = cluster.specs[old].id.clone();
    let viewed = if old == 2 { 1 } else { 2 };
    let viewed_id = cluster.specs[viewed].id.clone();
    let ids: Vec<String> = cluster.specs.iter().map(|spec| spec.id.clone()).collect();

    let opened = Instant::now();
    browser.open(&cluster.url(viewed, "/ui"));
    let before = browser.wait_for(
        "three members, the leader and a live connection",
        WAIT,
        read_page,
        |page| {
            page.shows_live()
                && page.leader.as_deref() == Some(old_id.as_str())
                && ids.iter().all(|id| page.member(id).is_some())
        },
    );
    println!(
        "{viewed_id}'s page showed {} members, leader {old_id} and a live connection {:?} after it was opened",
        before.members.len(),
        opened.elapsed()
    );
    assert_eq!(before.members.len(), 3, "one row per member: {before:#?}");
    assert!(
        before.missing_sections.is_empty(),
        "the page lacks the sections {:?}",
        before.missing_sections
    );
    let leader_row = before.member(&old_id).expect("waited for");
    assert_eq!(leader_row.role.as_deref(), Some("leader"), "{before:#?}");
    let old_term: u64 = before
        .term
        .as_deref()
        .and_then(|term| term.parse().ok())
        .unwrap_or_else(|| panic!("#leader has no numeric data-term: {before:#?}"));

    // From here on the page must update itself: a reload would lose this marker.
    browser.run("window.haBrowserTestMarker = 'same page'");
    cluster.kill(old);
    let killed = Instant::now();
    let after = browser.wait_for(
        "a new leader and a failover entry from the killed one",
        WAIT,
        read_page,
        |page| {
            let Some(leader) = page.leader.as_deref() else {
                return false;
            };
            leader != old_id
                && ids.iter().any(|id| id == leader)
                && page.failovers.iter().any(|item| {
                    item.from.as_deref() == Some(old_id.as_str())
                        && item.to.as_deref() == Some(leader)
                })
        },
    );
    let shown_after = killed.elapsed();
    let new_id = after.leader.clone().expect("waited for");
    let new = ids.iter().position(|id| *id == new_id).expect("a member");
    assert_eq!(
        after.marker.as_deref(),
        Some("same page"),
        "the page was reloaded, not updated live"
    );
    assert!(
        cluster.leads(new),
        "the page names {new_id} leader, but it does not lead"
    );
    let entry = after
        .failovers
        .iter()
        .find(|item| item.from.as_deref() == Some(old_id.as_str()))
        .expect("waited for");
    let entry_term: u64 = entry
        .term
        .as_deref()
        .and_then(|term| term.parse().ok())
        .unwrap_or_else(|| panic!("the failover entry has no numeric data-term: {entry:?}"));
    assert!(
        entry_term > old_term,
        "failover term {entry_term} after term {old_term}"
    );
    let leaderless_ms: u64 = entry
        .leaderless_ms
        .as_deref()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("the failover entry has no data-leaderless-ms: {entry:?}"));
    assert_eq!(
        after.failovers.first().map(|item| item.term.as_deref()),
        Some(entry.term.as_deref()),
        "the newest failover comes first: {:#?}",
        after.failovers
    );
    println!(
        "the page showed leader {new_id} (term {entry_term}) and the failover {old_id} -> {new_id} \
         (leaderless {leaderless_ms} ms) {shown_after:?} after the kill, without a reload"
    );

    // The dead node's row says so, and the page is live again through the new leader.
    let settled = browser.wait_for(
        "the killed node unreachable and the connection live",
        WAIT,
        read_page,
        |page| {
            page.shows_live()
                && page.member(&old_id).is_some_and(|row| {
                    row.cells
                        .iter()
                        .any(|cell| cell.eq_ignore_ascii_case("unreachable"))
                })
        },
    );
    let screenshot = target_file("dashboard.png");
    browser.screenshot(&screenshot);
    println!(
        "{old_id}'s row: {:?}; screenshot {}",
        settled.member(&old_id).map(|row| &row.cells),
        screenshot.display()
    );

    // The node the page talks to dies: the page must say it is cut off, not go on showing
    // the last table as if it were current.
    cluster.kill(viewed);
    let cut = Instant::now();
    browser.wait_for(
        "that the node it talks to is cut off",
        WAIT,
        read_page,
        |page| page.conn.as_deref() == Some("cut-off"),
    );
    println!(
        "the page showed cut-off {:?} after its node was killed",
        cut.elapsed()
    );
    browser.screenshot(&target_file("dashboard-cut-off.png"));
}
