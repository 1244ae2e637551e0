//! Node mode of the `bot` binary: configuration errors, the data dir, graceful stop, and how
//! `status` fails without a node to ask.

mod support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::Bot;

/// A node that refuses its configuration exits before touching the network.
const QUICK: Duration = Duration::from_secs(20);

#[test]
fn invalid_cluster_name_exits_2_naming_the_field_and_flag() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let data_dir = directory.path().join("n1");
    let data_dir_text = data_dir.to_string_lossy().into_owned();
    let finished = Bot::start(&[
        "--id",
        "n1",
        "--bind",
        "127.0.0.1:0",
        "--seeds",
        "127.0.0.1:9",
        "--data-dir",
        &data_dir_text,
        "--cluster",
        "bad name",
    ])
    .finish(QUICK);
    assert_eq!(
        finished.status.code(),
        Some(2),
        "stderr:\n{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("cluster.name"),
        "{}",
        finished.stderr
    );
    assert!(finished.stderr.contains("--cluster"), "{}", finished.stderr);
    assert!(finished.stdout.is_empty(), "{}", finished.stdout);
    assert!(
        !data_dir.exists(),
        "the data dir is created only for a valid config"
    );
}

#[test]
fn node_leaves_on_sigterm_and_exits_0() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let data_dir = directory.path().join("solo");
    let data_dir_text = data_dir.to_string_lossy().into_owned();
    let mut bot = Bot::start(&[
        "--id",
        "solo",
        "--bind",
        "127.0.0.1:0",
        "--bootstrap-expect",
        "1",
        "--data-dir",
        &data_dir_text,
    ]);
    let started = bot.wait_for_line("\"kind\":\"started\"", QUICK);
    assert!(started.starts_with("EVENT {"), "{started}");
    let pid = i32::try_from(bot.pid()).expect("pid fits in i32");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM the node");
    let finished = bot.finish(QUICK);
    assert_eq!(
        finished.status.code(),
        Some(0),
        "stderr:\n{}",
        finished.stderr
    );
    assert!(
        finished.stdout.contains("\"kind\":\"stopping\""),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stdout.contains("\"reason\":\"SIGTERM\""),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stdout.contains("\"kind\":\"stopped\""),
        "{}",
        finished.stdout
    );
    let node_file = std::fs::read_to_string(data_dir.join("node.json")).expect("node.json");
    assert!(node_file.contains("\"node_id\": \"solo\""), "{node_file}");
}

#[test]
fn data_dir_of_another_node_is_refused_with_exit_2() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let data_dir_text = directory.path().to_string_lossy().into_owned();
    std::fs::write(
        directory.path().join("node.json"),
        r#"{"format":1,"node_id":"n1","cluster":"ha","incarnation":5,"bind_addr":"127.0.0.1:7101","http_addr":null}"#,
    )
    .expect("write node.json");
    let finished = Bot::start(&[
        "--id",
        "n2",
        "--bind",
        "127.0.0.1:0",
        "--bootstrap-expect",
        "1",
        "--data-dir",
        &data_dir_text,
    ])
    .finish(QUICK);
    assert_eq!(
        finished.status.code(),
        Some(2),
        "stderr:\n{}",
        finished.stderr
    );
    assert!(finished.stderr.contains("data_dir"), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("belongs to node n1"),
        "{}",
        finished.stderr
    );
}

#[test]
fn status_with_a_bad_address_exits_2_without_contacting_anything() {
    let finished = Bot::start(&["status", "--http", "http://127.0.0.1:8101"]).finish(QUICK);
    assert_eq!(
        finished.status.code(),
        Some(2),
        "stderr:\n{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("not a host:port address"),
        "{}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty(), "{}", finished.stdout);
}

#[test]
fn status_with_nothing_listening_exits_1() {
    // A port that was just free: nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    let finished = Bot::start(&["status", "--http", &addr]).finish(QUICK);
    assert_eq!(
        finished.status.code(),
        Some(1),
        "stderr:\n{}",
        finished.stderr
    );
    assert!(
        finished.stderr.contains("cannot reach"),
        "{}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty(), "{}", finished.stdout);
}
