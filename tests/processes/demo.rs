//! `bot demo` end to end: three real node processes on loopback; the leader SIGKILLed, a new
//! leader, the old one restarted and given leadership back; the journal checked.

mod support;

use std::time::{Duration, Instant};

use support::Bot;

/// The demo bounds each of its steps by 20 s and normally takes about 16 s; this only stops a
/// hung demo from hanging the test suite.
const DEMO_TIMEOUT: Duration = Duration::from_secs(150);

#[test]
fn demo_fails_over_fails_back_and_the_journal_has_no_gap_or_duplicate() {
    let started = Instant::now();
    let finished = Bot::start(&["demo"]).finish(DEMO_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(
        finished.status.success(),
        "bot demo failed with {}\nstdout:\n{}\nstderr:\n{}",
        finished.status,
        finished.stdout,
        finished.stderr
    );
    let verdict = finished
        .stdout
        .lines()
        .find(|line| line.starts_with("verdict: "))
        .unwrap_or_else(|| panic!("no verdict line in:\n{}", finished.stdout));
    assert!(verdict.starts_with("verdict: OK"), "{verdict}");
    assert!(verdict.contains("no gap and no duplicate"), "{verdict}");
    for expected in [
        "n1 is LEADER (term 1)",
        "SIGKILL n1 (the leader)",
        "failover: n2 leads",
        "n1 follows n2",
        "leader_lost",
        "failback",
        ", no gap, no duplicate, tokens never decrease",
        "one leader per term: yes",
        "n1 exited 0",
    ] {
        assert!(
            finished.stdout.contains(expected),
            "missing {expected:?} in:\n{}",
            finished.stdout
        );
    }
    assert!(
        elapsed < Duration::from_secs(60),
        "the demo took {elapsed:?}; it should finish well under a minute"
    );
}
