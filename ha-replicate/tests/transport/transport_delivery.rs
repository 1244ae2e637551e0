//! Real TCP transports on 127.0.0.1 exchanging messages: order, fan-in, restarts, moves.

use crate::transport_support;

use std::time::Duration;

use ha_replicate::transport::SendDropCause;
use transport_support::{
    DEADLINE, TestMessage, assert_in_order_per_sender, data, node, receive, settings, start,
    wait_until,
};

const MESSAGES: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_transports_exchange_thousands_of_messages_in_order() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (first, mut first_inbox) = start(settings("n1", "c")).await;
    let (second, mut second_inbox) = start(settings("n2", "c")).await;
    for sequence in 0..MESSAGES {
        first.send(&node("n2"), second.local_addr(), data(sequence));
        second.send(&node("n1"), first.local_addr(), data(sequence));
    }
    let at_second = receive(&mut second_inbox, MESSAGES as usize).await;
    let at_first = receive(&mut first_inbox, MESSAGES as usize).await;
    assert_in_order_per_sender(&at_second, &["n1"], MESSAGES);
    assert_in_order_per_sender(&at_first, &["n2"], MESSAGES);
    assert_eq!(first.send_drop_counts().total(), 0);
    assert_eq!(second.reject_counts().total(), 0);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_transports_deliver_each_senders_messages_in_order() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let names = ["n1", "n2", "n3"];
    let mut transports = Vec::new();
    let mut inboxes = Vec::new();
    for name in names {
        let (transport, inbox) = start(settings(name, "c")).await;
        transports.push(transport);
        inboxes.push(inbox);
    }
    let addrs: Vec<_> = transports
        .iter()
        .map(|transport| transport.local_addr())
        .collect();
    let count = 2_000;
    for sequence in 0..count {
        for (from, transport) in transports.iter().enumerate() {
            for (to, name) in names.iter().enumerate() {
                if to != from {
                    transport.send(&node(name), addrs[to], data(sequence));
                }
            }
        }
    }
    for (index, inbox) in inboxes.iter_mut().enumerate() {
        let received = receive(inbox, 2 * count as usize).await;
        let others: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != index)
            .map(|(_, name)| *name)
            .collect();
        assert_in_order_per_sender(&received, &others, count);
    }
    for transport in transports {
        assert_eq!(transport.send_drop_counts().total(), 0);
        transport.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_to_self_skip_the_socket_and_a_full_inbox_drops_them() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let mut own = settings("n1", "c");
    own.inbound_queue_max = 4;
    let (transport, mut inbox) = start(own).await;
    // The address is never used: a message to oneself does not touch a socket.
    let nowhere = "127.0.0.1:9".parse().expect("an address");
    for sequence in 0..10 {
        transport.send(&node("n1"), nowhere, data(sequence));
    }
    let received = receive(&mut inbox, 4).await;
    assert_in_order_per_sender(&received, &["n1"], 4);
    assert_eq!(
        transport
            .send_drop_counts()
            .get(SendDropCause::InboundQueueFull),
        6
    );
    transport.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_restarted_on_the_same_address_is_reconnected_automatically() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (first, _first_inbox) = start(settings("n1", "c")).await;
    let (second, mut second_inbox) = start(settings("n2", "c")).await;
    let addr = second.local_addr();
    for sequence in 0..100 {
        first.send(&node("n2"), addr, data(sequence));
    }
    let before = receive(&mut second_inbox, 100).await;
    assert_in_order_per_sender(&before, &["n1"], 100);

    second.shutdown().await;
    drop(second_inbox);
    let mut restarted_settings = settings("n2", "c");
    restarted_settings.bind_addr = addr;
    let (restarted, mut restarted_inbox) = start(restarted_settings).await;

    // Probe until the connection is back, then check a fresh run arrives whole and in order.
    let mut probe = 0;
    let reconnected = tokio::time::timeout(DEADLINE, async {
        loop {
            first.send(&node("n2"), addr, TestMessage::Ping(probe));
            probe += 1;
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(50), restarted_inbox.recv()).await
            {
                return;
            }
        }
    })
    .await;
    assert!(reconnected.is_ok(), "the restarted peer was never reached");
    for sequence in 0..500 {
        first.send(&node("n2"), addr, data(sequence));
    }
    let mut after = Vec::new();
    while after.len() < 500 {
        let batch = receive(&mut restarted_inbox, 1).await;
        after.extend(
            batch
                .into_iter()
                .filter(|inbound| matches!(inbound.message, TestMessage::Data { .. })),
        );
    }
    assert_in_order_per_sender(&after, &["n1"], 500);
    first.shutdown().await;
    restarted.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_address_for_a_peer_is_followed() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (first, _first_inbox) = start(settings("n1", "c")).await;
    let (old, mut old_inbox) = start(settings("n2", "c")).await;
    first.send(&node("n2"), old.local_addr(), data(0));
    receive(&mut old_inbox, 1).await;

    // n2 comes back elsewhere while its old address still answers (as another incarnation
    // that would accept anything): the transport must move to the address it is given.
    let (moved, mut moved_inbox) = start(settings("n2", "c")).await;
    for sequence in 0..200 {
        first.send(&node("n2"), moved.local_addr(), data(sequence));
    }
    let received = receive(&mut moved_inbox, 200).await;
    assert_in_order_per_sender(&received, &["n1"], 200);
    first.shutdown().await;
    old.shutdown().await;
    moved.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_a_frame_is_dropped_and_counted_and_the_rest_flow() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let mut small_frames = settings("n1", "c");
    small_frames.frame_bytes_max = 1024;
    let (first, _first_inbox) = start(small_frames).await;
    let (second, mut second_inbox) = start(settings("n2", "c")).await;
    first.send(
        &node("n2"),
        second.local_addr(),
        TestMessage::Blob(vec![7; 4096]),
    );
    first.send(
        &node("n2"),
        second.local_addr(),
        TestMessage::Blob(vec![8; 512]),
    );
    let received = receive(&mut second_inbox, 1).await;
    assert_eq!(received[0].message, TestMessage::Blob(vec![8; 512]));
    wait_until("the oversized message is counted", || {
        first.send_drop_counts().get(SendDropCause::TooLarge) == 1
    })
    .await;
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_transport_stops_its_tasks_and_frees_its_port() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let (transport, _inbox) = start(settings("n1", "c")).await;
    let addr = transport.local_addr();
    transport.send(
        &node("n2"),
        "127.0.0.1:9".parse().expect("an address"),
        data(0),
    );
    drop(transport);
    // The port is free again once the listener task has been dropped.
    let mut rebind = settings("n1", "c");
    rebind.bind_addr = addr;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match ha_replicate::transport::TcpTransport::<TestMessage>::start(rebind.clone()).await {
            Ok((transport, _inbox)) => {
                transport.shutdown().await;
                break;
            }
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "port never freed: {error}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
