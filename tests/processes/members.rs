//! The membership API with real `bot` processes on loopback (issue 14, item 1, "What must be
//! shown"): a 4th node joins a 3-voter cluster only because `bot members add` asks for it
//! and is promoted to voter; a voter is removed with `bot members remove`; and removals the
//! leader refuses come back as exit code 1 with their reason (a running node configured to
//! vote, one that would leave no reachable quorum), changing nothing.
//!
//! The 4th node is started with `voter = false` (a config file): gossip meets it at once, but
//! the leader's automatic membership only adds nodes that want to vote, so it becomes a member
//! only through the API. Every wait polls with a deadline; every process is killed by its id
//! when its guard drops.
//!
//! Run: `cargo test -p ha-examples --test members`. Measured on the loaded 2-core dev
//! machine (debug build): see docs/ARCHITECTURE.md, "Membership API".

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::Bot;
use support::cluster::{TestCluster, free_bind_addr, free_tcp_addr};
use support::serial::one_scenario_at_a_time;

const WAIT: Duration = Duration::from_secs(30);
const COMMAND: Duration = Duration::from_secs(60);

/// Run `bot members ...` to the end: exit code, stdout, stderr.
fn members(arguments: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["members"];
    all.extend_from_slice(arguments);
    let finished = Bot::start(&all).finish(COMMAND);
    (finished.status.code(), finished.stdout, finished.stderr)
}

/// The ids of `role` ("voters" or "learners") in node `index`'s `GET /v1/members`.
fn ids(cluster: &TestCluster, index: usize, role: &str) -> Option<Vec<String>> {
    let (status, body) = cluster.call(index, "GET", "/v1/members", "")?;
    (status == 200).then(|| {
        body[role]
            .as_array()
            .map(|members| {
                members
                    .iter()
                    .filter_map(|member| member["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    })
}

#[test]
fn a_fourth_node_is_added_and_promoted_a_voter_removed_and_unsafe_removals_refused() {
    let _serial = one_scenario_at_a_time();
    let started = Instant::now();
    let mut cluster = TestCluster::start(&[3, 2, 1]);
    let leader = cluster.wait_for_leader(&[], WAIT);
    let http = |index: usize| cluster.specs[index].http.to_string();

    // n4: configured not to vote, joining gossip through the three.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("n4.toml");
    std::fs::write(&config, "voter = false\n").expect("write config");
    let bind = free_bind_addr();
    let n4_http = free_tcp_addr();
    let seeds: Vec<String> = cluster
        .specs
        .iter()
        .map(|spec| spec.bind.to_string())
        .collect();
    let n4_data = dir.path().join("n4");
    let fourth = Bot::start(&[
        "--config",
        &config.to_string_lossy(),
        "--id",
        "n4",
        "--bind",
        &bind.to_string(),
        "--http",
        &n4_http.to_string(),
        "--seeds",
        &seeds.join(","),
        "--data-dir",
        &n4_data.to_string_lossy(),
        "--cluster",
        "bot-test",
        "--stop-on-stdin-eof",
    ]);
    cluster.wait_until("gossip to meet n4", WAIT, |cluster| {
        let (status, view) = cluster.call(leader, "GET", "/v1/cluster", "")?;
        let seen = view["members"]
            .as_array()?
            .iter()
            .any(|member| member["id"] == "n4");
        (status == 200 && seen).then_some(())
    });
    // Met, but not a member: nothing adds it on its own.
    let voters = ids(&cluster, leader, "voters").expect("members answered");
    let learners = ids(&cluster, leader, "learners").expect("members answered");
    assert_eq!(voters, ["n1", "n2", "n3"]);
    assert!(learners.is_empty(), "{learners:?}");

    // Added through a follower, which forwards to the leader; promoted once caught up.
    let follower = (leader + 1) % 3;
    let added_at = Instant::now();
    let (code, stdout, stderr) = members(&[
        "add",
        "--http",
        &http(follower),
        "--id",
        "n4",
        "--addr",
        &bind.to_string(),
        "--voter",
    ]);
    let add_took = added_at.elapsed();
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    assert!(stdout.starts_with("added n4: voter (index "), "{stdout}");
    let voters = ids(&cluster, leader, "voters").expect("members answered");
    assert_eq!(voters, ["n1", "n2", "n3", "n4"]);
    let (code, listed, stderr) = members(&["list", "--http", &http(leader)]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        listed.contains(&format!("voter    n4                       {bind}")),
        "{listed}"
    );
    // n4 itself learns the configuration and replicates: it reports the same voters.
    cluster.wait_until("n4 to know it votes", WAIT, |_| {
        let client = reqwest::blocking::Client::new();
        let body: Value = client
            .get(format!("http://{n4_http}/v1/members"))
            .send()
            .ok()?
            .json()
            .ok()?;
        (body["voters"].as_array()?.len() == 4).then_some(())
    });

    // A running voter configured to vote would be added straight back: refused.
    let other = (leader + 2) % 3;
    let other_id = cluster.specs[other].id.clone();
    let (code, stdout, stderr) = members(&["remove", "--http", &http(leader), "--id", &other_id]);
    assert_eq!(code, Some(1), "stdout {stdout}\nstderr {stderr}");
    assert!(stderr.contains("refused (would_rejoin)"), "{stderr}");
    assert!(stderr.contains("nothing changed"), "{stderr}");

    // Remove a voter: n4, which does not want a vote by itself, stays removed.
    let (code, stdout, stderr) = members(&["remove", "--http", &http(other), "--id", "n4"]);
    assert_eq!(code, Some(0), "stdout {stdout}\nstderr {stderr}");
    assert!(stdout.starts_with("removed n4 (index "), "{stdout}");
    assert_eq!(
        ids(&cluster, leader, "voters").expect("members answered"),
        ["n1", "n2", "n3"]
    );
    drop(fourth);

    // Kill a follower: removing the other follower would leave the leader alone of two
    // voters. Refused as soon as the leader has not heard the killed one for an election
    // timeout (until then the reason is that the running one would rejoin).
    cluster.kill(follower);
    let killed_id = cluster.specs[follower].id.clone();
    let refused = cluster.wait_until("the quorum refusal", WAIT, |cluster| {
        let (status, body) =
            cluster.call(leader, "DELETE", &format!("/v1/members/{other_id}"), "")?;
        assert_eq!(status, 409, "{body}");
        (body["reason"] == "quorum_unreachable").then_some(body)
    });
    assert_eq!(refused["error"], "membership_refused");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("would leave 1 reachable voter(s) of 2, fewer than a quorum of 2"),
        "{message}"
    );

    // The dead voter itself can go: the two that remain are both reachable. Gossip must
    // first see it down (until then it counts as running and configured to vote).
    cluster.wait_until("the dead voter's removal", WAIT, |cluster| {
        let (status, body) =
            cluster.call(leader, "DELETE", &format!("/v1/members/{killed_id}"), "")?;
        match status {
            200 => Some(()),
            409 if body["reason"] == "would_rejoin" || body["reason"] == "change_pending" => None,
            _ => panic!("unexpected answer {status} {body}"),
        }
    });
    let mut expected: Vec<String> = [leader, other]
        .iter()
        .map(|index| cluster.specs[*index].id.clone())
        .collect();
    expected.sort();
    assert_eq!(ids(&cluster, leader, "voters").expect("answered"), expected);
    // Two voters still commit: a write goes through.
    let (status, body) = cluster.must(leader, "PUT", "/v1/kv/after-removal", "yes");
    assert_eq!(status, 200, "{body}");
    eprintln!(
        "members scenario: add with promotion took {add_took:?}; whole scenario {:?}",
        started.elapsed()
    );
}
