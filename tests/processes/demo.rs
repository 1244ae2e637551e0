//! `bot demo` end to end: three real node processes on loopback; the leader SIGKILLed, a new
//! leader, the old one restarted and given leadership back; the journal checked.
//!
//! Only behaviour is asserted, not which node wins a race: any node may win the first
//! election (the demo then waits for the priority takeover to n1) and either survivor may
//! win the one after the kill. The demo bounds each of its steps itself; how long it took is
//! printed, not asserted.

mod support;

use std::time::{Duration, Instant};

use support::Bot;

/// The demo bounds each of its steps by 20 s and normally takes about 16 s; this only stops a
/// hung demo from hanging the test suite.
const DEMO_TIMEOUT: Duration = Duration::from_secs(150);

/// The node the line `failover: <node> leads ...` names.
fn failover_leader(stdout: &str) -> Option<&str> {
    let line = stdout.lines().find(|line| line.contains("failover: "))?;
    let (_, rest) = line.split_once("failover: ")?;
    rest.split_whitespace().next()
}

#[test]
fn demo_fails_over_fails_back_and_the_journal_has_no_gap_or_duplicate() {
    let started = Instant::now();
    let finished = Bot::start(&["demo"]).finish(DEMO_TIMEOUT);
    println!("the demo took {:?}", started.elapsed());
    assert!(
        finished.status.success(),
        "bot demo failed with {}\nstdout:\n{}\nstderr:\n{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    let stdout = &finished.stdout;
    let verdict = stdout
        .lines()
        .find(|line| line.starts_with("verdict: "))
        .unwrap_or_else(|| panic!("no verdict line in:\n{stdout}"));
    assert!(verdict.starts_with("verdict: OK"), "{verdict}");
    assert!(verdict.contains("no gap and no duplicate"), "{verdict}");
    // Whoever won the first election, n1 (the highest priority) leads before it is killed.
    let first_leader = stdout
        .lines()
        .position(|line| line.contains(" is LEADER (term "))
        .unwrap_or_else(|| panic!("no leader announced in:\n{stdout}"));
    let killed = stdout
        .lines()
        .position(|line| line.contains("SIGKILL n1 (the leader)"))
        .unwrap_or_else(|| panic!("n1 was not killed as the leader in:\n{stdout}"));
    assert!(first_leader < killed, "a leader before the kill:\n{stdout}");
    let successor =
        failover_leader(stdout).unwrap_or_else(|| panic!("no failover line in:\n{stdout}"));
    assert!(
        successor == "n2" || successor == "n3",
        "a survivor leads after the kill, not {successor:?}:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .skip(killed)
            .any(|line| line.contains("n1 follows n2") || line.contains("n1 follows n3")),
        "the restarted n1 rejoins as a follower:\n{stdout}"
    );
    for expected in [
        "leader_lost",
        "failback",
        ", no gap, no duplicate, tokens never decrease",
        "one leader per term: yes",
        "n1 exited 0",
        "n2 exited 0",
        "n3 exited 0",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}
