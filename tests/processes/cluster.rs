//! Three `bot` processes on loopback: the admin HTTP contract (docs/ARCHITECTURE.md, "Admin
//! HTTP contract") served over TCP, a SIGKILLed leader replaced with the journal intact, a restart from the data dir
//! that catches up, `POST /v1/failover`, and `bot status`. Every wait polls with a deadline;
//! every process is killed by its id when the test ends, however it ends.

mod support;

use std::time::{Duration, Instant};

use ha_examples::journal::JournalVerdict;
use support::Bot;
use support::cluster::TestCluster;

const ELECTION: Duration = Duration::from_secs(20);

fn assert_error(body: &serde_json::Value, kind: &str) {
    assert_eq!(body["error"], kind, "{body}");
    assert!(body["message"].as_str().is_some(), "{body}");
    assert!(body.get("leader").is_some(), "{body}");
}

#[test]
fn the_http_contract_holds_across_three_processes() {
    let mut cluster = TestCluster::start(&[1, 1, 1]);
    let leader = cluster.wait_for_leader(&[], ELECTION);
    let leader_id = cluster.specs[leader].id.clone();
    let followers: Vec<usize> = (0..3).filter(|&index| index != leader).collect();
    // Every node answers 200 once it hears from the leader.
    for index in 0..3 {
        let health = cluster.wait_until("every node healthy", ELECTION, |cluster| {
            match cluster.call(index, "GET", "/v1/health", "") {
                Some((200, health)) if health["leader"] == leader_id.as_str() => Some(health),
                _ => None,
            }
        });
        for field in [
            "node", "role", "state", "health", "term", "leader", "quorum",
        ] {
            assert!(health.get(field).is_some(), "{health}");
        }
        assert_eq!(health["quorum"], true);
    }

    // The cluster table from the leader: three members, lag filled in.
    let (status, table) = cluster.must(leader, "GET", "/v1/cluster", "");
    assert_eq!(status, 200);
    let members = table["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{table}");
    for member in members {
        assert!(member["lag_entries"].as_u64().is_some(), "{member}");
        assert!(member["match_index"].as_u64().is_some(), "{member}");
        for field in [
            "id",
            "addr",
            "priority",
            "role",
            "state",
            "health",
            "last_contact_ms",
        ] {
            assert!(member.get(field).is_some(), "{member}");
        }
    }

    // KV through a follower (forwarded to the leader), read back through the other.
    let (one, two) = (followers[0], followers[1]);
    let (status, body) = cluster.must(one, "PUT", "/v1/kv/config/mode?cas=0", "blue");
    assert_eq!(status, 200, "{body}");
    let version = body["version"].as_u64().expect("version");
    let (status, body) = cluster.must(two, "GET", "/v1/kv/config/mode?consistency=strong", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], "blue");
    assert_eq!(body["version"], version);
    let (status, body) = cluster.must(two, "PUT", "/v1/kv/config/mode?cas=0", "green");
    assert_eq!(status, 409, "create-only on an existing key");
    assert_error(&body, "cas_mismatch");
    let (status, body) = cluster.must(one, "GET", "/v1/kv/missing", "");
    assert_eq!(status, 404);
    assert_error(&body, "not_found");
    let (status, body) = cluster.must(one, "DELETE", "/v1/kv/missing", "");
    assert_eq!(status, 404);
    assert_error(&body, "not_found");
    for (method, path, body) in [
        ("GET", "/v1/kv/config/mode?consistency=maybe", ""),
        ("PUT", "/v1/kv/config/mode?cas=x", "v"),
        ("POST", "/v1/failover", "[1, 2"),
        ("POST", "/v1/lock/jobs?ttl_ms=abc", ""),
    ] {
        let (status, answer) = cluster.must(one, method, path, body);
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert_error(&answer, "bad_request");
    }
    let (status, body) = cluster.must(one, "GET", "/v1/nothing/here", "");
    assert_eq!(status, 404);
    assert_error(&body, "not_found");

    // Locks: granted, busy, released only with the holder's token and holder key (issue 13:
    // the token alone is refused and the lock stays held).
    let (status, grant) = cluster.must(one, "POST", "/v1/lock/jobs?ttl_ms=10000", "");
    assert_eq!(status, 200, "{grant}");
    let token = grant["token"].as_u64().expect("token");
    assert!(grant["lease"].as_u64().is_some());
    let holder = grant["holder"].as_str().expect("holder").to_string();
    let (status, body) = cluster.must(two, "POST", "/v1/lock/jobs?wait_ms=300", "");
    assert_eq!(status, 409, "{body}");
    for refused in [
        format!("/v1/lock/jobs?token={}&holder={holder}", token + 1),
        format!("/v1/lock/jobs?token={token}"),
    ] {
        let (status, body) = cluster.must(two, "DELETE", &refused, "");
        assert_eq!(status, 409, "{refused}: {body}");
        assert_eq!(body["error"], "not_holder", "{refused}: {body}");
    }
    let (status, body) = cluster.must(two, "POST", "/v1/lock/jobs", "");
    assert_eq!(status, 409, "still held: {body}");
    let release = format!("/v1/lock/jobs?token={token}&holder={holder}");
    let (status, _) = cluster.must(two, "DELETE", &release, "");
    assert_eq!(status, 200);

    // Failover must be asked of the leader; a follower says who that is.
    let (status, body) = cluster.must(one, "POST", "/v1/failover", "{}");
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "not_leader");
    assert_eq!(body["leader"], leader_id.as_str());

    // Metrics.
    let (status, metrics) = cluster.must(leader, "GET", "/v1/metrics", "");
    assert_eq!(status, 200);
    let text = metrics.as_str().expect("text");
    for needle in [
        "ha_role{role=\"leader\"} 1",
        "ha_peer_lag_entries{peer=",
        "ha_lock_grants_total ",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }

    // `bot status` against a follower prints the whole table, lag included.
    let http = cluster.specs[one].http.to_string();
    let finished = Bot::start(&["status", "--http", &http]).finish(Duration::from_secs(30));
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    for spec in &cluster.specs {
        assert!(finished.stdout.contains(&spec.id), "{}", finished.stdout);
    }
    assert!(finished.stdout.contains("leader"), "{}", finished.stdout);

    // Without a quorum: the last node answers 503 to health and to a QUORUM read.
    cluster.kill(leader);
    cluster.kill(two);
    let health = cluster.wait_until("503 without a quorum", ELECTION, |cluster| {
        match cluster.call(one, "GET", "/v1/health", "") {
            Some((503, health)) => Some(health),
            _ => None,
        }
    });
    assert_eq!(health["quorum"], false, "{health}");
    let (status, body) = cluster.must(one, "GET", "/v1/kv/config/mode?consistency=quorum", "");
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().is_some(), "{body}");
}

#[test]
fn a_killed_leader_is_replaced_the_journal_continues_and_the_restarted_node_catches_up() {
    let mut cluster = TestCluster::start(&[1, 1, 1]);
    let first = cluster.wait_for_leader(&[], ELECTION);
    cluster.wait_until("10 journal entries", ELECTION, |cluster| {
        cluster.journal_length(first).filter(|length| *length >= 10)
    });

    let killed_at = Instant::now();
    cluster.kill(first);
    let second = cluster.wait_for_leader(&[first], ELECTION);
    println!("new leader after {:?}", killed_at.elapsed());
    cluster.wait_for_journal_growth(second, 10, "the journal to continue", ELECTION);

    // Restart from the data dir: it rejoins and applies everything committed.
    cluster.spawn(first);
    let commit = cluster
        .metric(second, "ha_commit_index")
        .expect("commit index");
    let restarted = cluster.specs[first].id.clone();
    let applied = cluster.wait_until("the restarted node to catch up", ELECTION, |cluster| {
        // Caught up as the leader sees it (it replicates to the new process, not only to the
        // log the node recovered from its disk), and applied locally.
        let (_, table) = cluster.call(second, "GET", "/v1/cluster", "")?;
        let row = table["members"]
            .as_array()?
            .iter()
            .find(|member| member["id"] == restarted.as_str())?
            .clone();
        let matched = row["match_index"].as_f64()? >= commit;
        let recent = row["last_contact_ms"].as_u64()? < 500;
        let applied = cluster.metric(first, "ha_applied_index")?;
        (matched && recent && applied >= commit).then_some(applied)
    });
    println!("restarted node applied {applied} >= commit {commit}");
    let (status, health) = cluster.must(first, "GET", "/v1/health", "");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["role"], "follower", "equal priorities: no failback");

    // Manual failover to the restarted node.
    let target = cluster.specs[first].id.clone();
    let (status, body) = cluster.must(
        second,
        "POST",
        "/v1/failover",
        &format!("{{\"target\": \"{target}\"}}"),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["to"], target.as_str());
    let deadline = Instant::now() + ELECTION;
    let third = loop {
        if let Some(leader) = cluster.leader(&[second]) {
            break leader;
        }
        if Instant::now() > deadline {
            let health: Vec<_> = (0..3)
                .map(|index| cluster.call(index, "GET", "/v1/health", ""))
                .collect();
            let logs = cluster.kill_and_collect_logs();
            panic!("no new leader after the transfer; health: {health:?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(third, first, "leadership moved to the target");
    // The new leader's LeaderStart entry is applied just after it starts leading.
    let causes = cluster.wait_until(
        "the transfer in the failover history",
        ELECTION,
        |cluster| {
            let (_, history) = cluster.call(third, "GET", "/v1/failover/history", "")?;
            let causes: Vec<String> = history
                .as_array()?
                .iter()
                .filter_map(|event| event["cause"].as_str().map(str::to_string))
                .collect();
            (causes.last().map(String::as_str) == Some("manual_transfer")).then_some(causes)
        },
    );
    assert!(
        causes.iter().any(|cause| cause == "leader_lost"),
        "{causes:?}"
    );
    cluster.wait_for_journal_growth(
        third,
        5,
        "the journal to continue under the third leader",
        ELECTION,
    );

    // The journal, read through the last leader: numbered 1..=N, no gap, no duplicate, across
    // three writers' tokens.
    let entries = cluster.journal(third);
    let verdict = JournalVerdict::check(&entries);
    println!("{verdict}");
    assert!(verdict.ok(), "{verdict}");
    assert!(verdict.runs_total >= 3, "{verdict}");

    // Graceful stop: every node exits 0.
    for index in 0..3 {
        assert_eq!(
            cluster.terminate(index),
            Some(0),
            "{} exit code",
            cluster.specs[index].id
        );
    }
}
