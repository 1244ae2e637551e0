//! The end of every chaos scenario: with the faults healed, the cluster elects a leader and
//! the checks run over everything the clients and the nodes saw.

use std::time::Duration;

use ha_examples::journal::JournalVerdict;

use super::cluster::TestCluster;
use super::leaders::{check_one_leader_per_term, leaders_by_term};
use super::workload::Workload;

/// How long the healed cluster gets to elect a leader and answer the final reads.
const HEALED_WAIT: Duration = Duration::from_secs(30);

/// Stop the workload and check, in order: a leader is elected once healed; the KV history is
/// linearizable; lock holds are exclusive with growing tokens; no term had two leaders; the
/// bot's fenced journal has no gap or duplicate; every node leaves cleanly on SIGTERM.
/// Prints a summary line tagged `label`.
///
/// # Panics
/// On the first violation, with the last log lines of every node.
pub fn finish_and_check(cluster: &mut TestCluster, workload: Workload, label: &str) {
    let Some(leader) = wait_for_leader(cluster) else {
        let logs = cluster.kill_and_collect_logs();
        panic!("{label}: no leader within {HEALED_WAIT:?} after healing\n{logs}");
    };
    let result = workload.finish(cluster.specs[leader].http, HEALED_WAIT);
    let mut failures = Vec::new();
    match result.check() {
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
    let verdict = JournalVerdict::check(&cluster.journal(leader));
    println!("{label}: journal {verdict}");
    if !verdict.ok() {
        failures.push(format!("journal: {verdict}"));
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
