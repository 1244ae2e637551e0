//! The end of every chaos scenario: with the faults healed, the cluster elects a leader and
//! the checks run over everything the clients and the nodes saw.

use std::time::Duration;

use ha_examples::journal::JournalVerdict;

use super::cluster::TestCluster;
use super::leaders::{check_one_leader_per_term, leaders_by_term};
use super::workload::Workload;

/// How long the healed cluster gets to elect a leader and answer the final reads.
const HEALED_WAIT: Duration = Duration::from_secs(30);

/// The least progress a scenario must show for its checks to mean anything: a cluster that
/// answered 503 to everything for the whole run has an empty history, no lock hold, an empty
/// journal and at most one term, and every safety check passes on it. Each scenario sets its
/// own figures, well below what it reaches on a loaded 2-core machine (its comment says how
/// far below), so the minimums catch a cluster that did nothing, not a slow one.
#[derive(Clone, Copy, Debug)]
pub struct Minimums {
    /// KV writes and CAS answered 200.
    pub acknowledged_writes: u64,
    /// Lock grants the clients used.
    pub lock_grants: u64,
    /// Entries in the bot's fenced journal at the end.
    pub journal_entries: u64,
    /// Terms in which some node announced itself leader.
    pub terms_with_leader: usize,
}

/// Check one figure against its minimum.
pub fn at_least(what: &str, seen: u64, minimum: u64) -> Result<(), String> {
    if seen >= minimum {
        Ok(())
    } else {
        Err(format!(
            "too little progress: {seen} {what}, the scenario needs at least {minimum} \
             (a cluster that refuses everything passes every other check)"
        ))
    }
}

/// Stop the workload and check, in order: a leader is elected once healed; the KV history is
/// linearizable; lock holds are exclusive with growing tokens; no term had two leaders; the
/// bot's fenced journal has no gap or duplicate; the run made at least `minimums` progress;
/// every node leaves cleanly on SIGTERM. Prints a summary line tagged `label`.
///
/// # Panics
/// On the first violation, with the last log lines of every node.
pub fn finish_and_check(
    cluster: &mut TestCluster,
    workload: Workload,
    label: &str,
    minimums: &Minimums,
) {
    let Some(leader) = wait_for_leader(cluster) else {
        let logs = cluster.kill_and_collect_logs();
        panic!("{label}: no leader within {HEALED_WAIT:?} after healing\n{logs}");
    };
    let result = workload.finish(cluster.specs[leader].http, HEALED_WAIT);
    let mut failures = Vec::new();
    match result.check(minimums) {
        Ok(summary) => println!("{label}: {summary}"),
        Err(violation) => failures.push(violation),
    }
    let lines: Vec<Vec<String>> = (0..cluster.specs.len())
        .map(|index| cluster.stdout_lines(index))
        .collect();
    let leaders = leaders_by_term(lines.iter().map(Vec::as_slice));
    match check_one_leader_per_term(&leaders) {
        Ok(terms) => println!("{label}: {terms} terms with a leader, one each"),
        Err(violation) => failures.push(violation),
    }
    if let Err(violation) = at_least(
        "terms with a leader",
        leaders.len() as u64,
        minimums.terms_with_leader as u64,
    ) {
        failures.push(violation);
    }
    let verdict = JournalVerdict::check(&cluster.journal(leader));
    println!("{label}: journal {verdict}");
    if !verdict.ok() {
        failures.push(format!("journal: {verdict}"));
    }
    if let Err(violation) = at_least("journal entries", verdict.entries, minimums.journal_entries) {
        failures.push(violation);
    }
    if !failures.is_empty() {
        let logs = cluster.kill_and_collect_logs();
        panic!("{label}: {}\n{logs}", failures.join("\n"));
    }
    for index in 0..cluster.specs.len() {
        if cluster.running(index) {
            assert_eq!(
                cluster.terminate(index),
                Some(0),
                "{label}: {} exit code",
                cluster.specs[index].id
            );
        }
    }
}

fn wait_for_leader(cluster: &TestCluster) -> Option<usize> {
    let deadline = std::time::Instant::now() + HEALED_WAIT;
    while std::time::Instant::now() < deadline {
        if let Some(leader) = cluster.leader(&[]) {
            return Some(leader);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The admin HTTP addresses of every node.
pub fn http_addresses(cluster: &TestCluster) -> Vec<std::net::SocketAddr> {
    cluster.specs.iter().map(|spec| spec.http).collect()
}
