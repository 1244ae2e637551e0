//! `bot demo` end to end: three real node processes on loopback, one SIGKILLed and restarted.

mod support;

use std::time::{Duration, Instant};

use support::Bot;

/// The demo bounds each of its steps by 20 s and normally takes about 3 s; this only stops a
/// hung demo from hanging the test suite.
const DEMO_TIMEOUT: Duration = Duration::from_secs(150);

#[test]
fn demo_detects_the_crash_and_the_rejoin_and_exits_0() {
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
    assert!(
        verdict.contains("detected the crash in") && verdict.contains("rejoined in"),
        "{verdict}"
    );
    for expected in [
        "kill -9 n1",
        "n2 sees n1 UNREACHABLE",
        "n3 sees n1 UNREACHABLE",
        "n2 sees n1 ACTIVE",
        "SIGTERM n3",
        "n1 sees n3 LEFT",
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
