//! Mutual TLS on the replication transport (issue 13): who is let in and who is refused, by
//! cause. Certificates are made here with rcgen (see `tls_support`).
//!
//! - a TLS pair exchanges messages both ways, in order, with nothing refused;
//! - a valid certificate for n2 claiming n3 is refused `identity_mismatch` (and dialling n2's
//!   address as n3 is refused the same way), while n2's own connection keeps working;
//! - a wrong-CA certificate is refused `wrong_ca` on both sides, an expired one
//!   `cert_expired`, no client certificate `no_certificate`;
//! - a plaintext peer at a TLS node is refused `plaintext`, and a TLS peer at a plaintext node
//!   counts `malformed`;
//! - CA rotation: with the old and new CA in the bundle, peers from both are accepted; with
//!   the old CA removed, old-CA peers are refused `wrong_ca` and new-CA peers still served.

use crate::tls_support;
use crate::transport_support;

use std::time::Duration;

use ha_replicate::transport::RejectCause;
use tls_support::{
    CLUSTER, Ca, ServerCheck, hello_answered, raw_tls, tls_settings, wait_for_refusal,
};
use transport_support::{
    Receiver, TestMessage, Transport, assert_in_order_per_sender, data, node, receive, settings,
    start,
};

/// Send pings from `from` to `to` until one arrives.
async fn ping_until_received(
    from: &Transport,
    to: &Transport,
    to_name: &str,
    inbox: &mut Receiver,
) {
    for attempt in 0..300u64 {
        from.send(&node(to_name), to.local_addr(), TestMessage::Ping(attempt));
        if let Ok(Some(inbound)) =
            tokio::time::timeout(Duration::from_millis(50), inbox.recv()).await
        {
            assert_eq!(inbound.from, *from.node_id());
            return;
        }
    }
    panic!("no ping from {} reached {to_name}", from.node_id());
}

#[tokio::test]
async fn a_tls_pair_exchanges_messages_both_ways_in_order() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let ca = Ca::new("cluster CA");
    let (first, mut first_inbox) = start(tls_settings("n1", &ca.node("n1"), &ca.pem)).await;
    let (second, mut second_inbox) = start(tls_settings("n2", &ca.node("n2"), &ca.pem)).await;
    for sequence in 0..100 {
        first.send(&node("n2"), second.local_addr(), data(sequence));
        second.send(&node("n1"), first.local_addr(), data(sequence));
    }
    let at_second = receive(&mut second_inbox, 100).await;
    let at_first = receive(&mut first_inbox, 100).await;
    assert_in_order_per_sender(&at_second, &["n1"], 100);
    assert_in_order_per_sender(&at_first, &["n2"], 100);
    assert_eq!(
        first.reject_counts().total(),
        0,
        "{:?}",
        first.reject_counts()
    );
    assert_eq!(
        second.reject_counts().total(),
        0,
        "{:?}",
        second.reject_counts()
    );
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn a_certificate_for_n2_claiming_n3_is_refused_and_n2_still_gets_through() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let ca = Ca::new("cluster CA");
    let n2_cert = ca.node("n2");
    let (first, mut first_inbox) = start(tls_settings("n1", &ca.node("n1"), &ca.pem)).await;
    let (second, _second_inbox) = start(tls_settings("n2", &n2_cert, &ca.pem)).await;
    // n2's valid certificate, verifying n1 properly, but a hello claiming n3.
    let check = ServerCheck::Node {
        ca_pem: &ca.pem,
        id: "n1",
    };
    let mut session = raw_tls(first.local_addr(), Some(&n2_cert), check)
        .await
        .expect("the TLS handshake itself succeeds: the certificate is valid");
    assert!(
        !hello_answered(&mut session, "n3").await,
        "a hello claiming n3 over n2's certificate must not be answered"
    );
    let counts = first.reject_counts();
    assert_eq!(counts.get(RejectCause::IdentityMismatch), 1, "{counts:?}");
    assert_eq!(counts.total(), 1, "{counts:?}");
    // The same certificate claiming its own node is answered.
    let check = ServerCheck::Node {
        ca_pem: &ca.pem,
        id: "n1",
    };
    let mut honest = raw_tls(first.local_addr(), Some(&n2_cert), check)
        .await
        .expect("TLS");
    assert!(hello_answered(&mut honest, "n2").await);
    drop(honest);
    // The real n2 keeps its connection to n1.
    ping_until_received(&second, &first, "n1", &mut first_inbox).await;
    // Dialling n2's address as if it were n3: n2's certificate does not name n3.
    first.send(&node("n3"), second.local_addr(), TestMessage::Ping(0));
    wait_for_refusal(
        "n1 dialling n2 as n3",
        RejectCause::IdentityMismatch,
        2,
        || first.reject_counts(),
    )
    .await;
    assert_eq!(
        second.reject_counts().total(),
        0,
        "{:?}",
        second.reject_counts()
    );
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test]
async fn wrong_ca_expired_and_missing_certificates_are_refused_by_cause() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let ca = Ca::new("cluster CA");
    let stranger_ca = Ca::new("another CA");
    let (first, mut first_inbox) = start(tls_settings("n1", &ca.node("n1"), &ca.pem)).await;
    let (second, _second_inbox) = start(tls_settings("n2", &ca.node("n2"), &ca.pem)).await;
    let cases = [
        (Some(stranger_ca.node("n5")), RejectCause::WrongCa),
        (Some(ca.expired_node("n5")), RejectCause::CertExpired),
        (None, RejectCause::NoCertificate),
    ];
    for (client, cause) in &cases {
        let result = raw_tls(first.local_addr(), client.as_ref(), ServerCheck::AcceptAny).await;
        // In TLS 1.3 the client finishes before the server checks its certificate: the
        // refusal arrives as an alert or a close at the first read.
        if let Ok(mut session) = result {
            assert!(
                !hello_answered(&mut session, "n5").await,
                "{cause} was answered"
            );
        }
        wait_for_refusal("raw client", *cause, 1, || first.reject_counts()).await;
    }
    let counts = first.reject_counts();
    assert_eq!(counts.total(), 3, "{counts:?}");
    // A node of another CA dialling n1 refuses n1's certificate on its side.
    let (stranger, _stranger_inbox) = start(tls_settings(
        "n4",
        &stranger_ca.node("n4"),
        &stranger_ca.pem,
    ))
    .await;
    stranger.send(&node("n1"), first.local_addr(), TestMessage::Ping(0));
    wait_for_refusal("the stranger", RejectCause::WrongCa, 1, || {
        stranger.reject_counts()
    })
    .await;
    // n1 still serves its cluster.
    ping_until_received(&second, &first, "n1", &mut first_inbox).await;
    for transport in [first, second, stranger] {
        transport.shutdown().await;
    }
}

#[tokio::test]
async fn plaintext_and_tls_peers_are_refused_by_the_other_kind() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let ca = Ca::new("cluster CA");
    let (tls_node, _tls_inbox) = start(tls_settings("n1", &ca.node("n1"), &ca.pem)).await;
    let (plain_node, _plain_inbox) = start(settings("n2", CLUSTER)).await;
    plain_node.send(&node("n1"), tls_node.local_addr(), TestMessage::Ping(0));
    wait_for_refusal("plaintext at TLS", RejectCause::Plaintext, 1, || {
        tls_node.reject_counts()
    })
    .await;
    tls_node.send(&node("n2"), plain_node.local_addr(), TestMessage::Ping(0));
    wait_for_refusal("TLS at plaintext", RejectCause::Malformed, 1, || {
        plain_node.reject_counts()
    })
    .await;
    let tls_counts = tls_node.reject_counts();
    assert_eq!(
        tls_counts.total(),
        tls_counts.get(RejectCause::Plaintext),
        "{tls_counts:?}"
    );
    tls_node.shutdown().await;
    plain_node.shutdown().await;
}

/// CA rotation: the bundle holds the old and the new CA while nodes move to new
/// certificates; then the old CA is removed and only new-CA peers are let in.
#[tokio::test]
async fn a_ca_bundle_accepts_both_cas_during_rotation_and_refuses_the_old_after() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let both = format!("{}{}", old_ca.pem, new_ca.pem);
    let (first, mut first_inbox) = start(tls_settings("n1", &new_ca.node("n1"), &both)).await;
    let (old_peer, _old_inbox) = start(tls_settings("n2", &old_ca.node("n2"), &both)).await;
    let (new_peer, mut new_inbox) = start(tls_settings("n3", &new_ca.node("n3"), &both)).await;
    ping_until_received(&old_peer, &first, "n1", &mut first_inbox).await;
    ping_until_received(&new_peer, &first, "n1", &mut first_inbox).await;
    ping_until_received(&first, &new_peer, "n3", &mut new_inbox).await;
    assert_eq!(
        first.reject_counts().total(),
        0,
        "{:?}",
        first.reject_counts()
    );
    // The old CA is removed from n1's bundle (n1 restarts with the new bundle).
    first.shutdown().await;
    let (first, mut first_inbox) = start(tls_settings("n1", &new_ca.node("n1"), &new_ca.pem)).await;
    old_peer.send(&node("n1"), first.local_addr(), TestMessage::Ping(0));
    wait_for_refusal(
        "old-CA peer after rotation",
        RejectCause::WrongCa,
        1,
        || first.reject_counts(),
    )
    .await;
    ping_until_received(&new_peer, &first, "n1", &mut first_inbox).await;
    for transport in [first, old_peer, new_peer] {
        transport.shutdown().await;
    }
}

/// Messages per second over one connection, plaintext and TLS in the same run (issue 13's
/// cost of security, transport only). Ignored: a measurement, not a check. Run with
/// `cargo test -p ha-replicate --test transport transport_tls::throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by name"]
async fn throughput_over_one_connection_tls_vs_plaintext() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    const MESSAGES: u64 = 50_000;
    let ca = Ca::new("cluster CA");
    for payload_bytes in [64usize, 4096] {
        let mut best = [f64::MAX; 2];
        for round in 0..5 {
            for (slot, tls) in [(0usize, false), (1, true)] {
                let mut first_settings = if tls {
                    tls_settings("n1", &ca.node("n1"), &ca.pem)
                } else {
                    settings("n1", CLUSTER)
                };
                let mut second_settings = if tls {
                    tls_settings("n2", &ca.node("n2"), &ca.pem)
                } else {
                    settings("n2", CLUSTER)
                };
                first_settings.outbound_queue_max = MESSAGES as usize + 1;
                second_settings.inbound_queue_max = MESSAGES as usize + 1;
                let (first, _first_inbox) = start(first_settings).await;
                let (second, mut second_inbox) = start(second_settings).await;
                // Connect first, so the figure is the steady state.
                ping_until_received(&first, &second, "n2", &mut second_inbox).await;
                let started = std::time::Instant::now();
                for sequence in 0..MESSAGES {
                    let blob = vec![(sequence % 251) as u8; payload_bytes];
                    first.send(&node("n2"), second.local_addr(), TestMessage::Blob(blob));
                }
                let received = receive(&mut second_inbox, MESSAGES as usize).await;
                let seconds = started.elapsed().as_secs_f64();
                assert_eq!(received.len() as u64, MESSAGES);
                assert_eq!(first.send_drop_counts().total(), 0);
                best[slot] = best[slot].min(seconds);
                println!(
                    "round {round}, {payload_bytes} B, {}: {:.0} messages/s",
                    if tls { "TLS" } else { "plaintext" },
                    MESSAGES as f64 / seconds
                );
                first.shutdown().await;
                second.shutdown().await;
            }
        }
        let [plain, tls] = best.map(|seconds| MESSAGES as f64 / seconds);
        println!(
            "{payload_bytes} B messages, best of 5: plaintext {plain:.0}/s, TLS {tls:.0}/s, \
             TLS/plaintext {:.2}",
            tls / plain
        );
    }
}
