//! Bounded queues: `send` never blocks; a full queue drops and counts; a slow consumer pushes
//! back on the sender through TCP without losing or reordering what was not dropped.

use crate::transport_support;

use std::time::{Duration, Instant};

use ha_replicate::transport::SendDropCause;
use transport_support::{
    DEADLINE, TestMessage, assert_in_order_per_sender, data, node, receive, settings, start,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_outbound_queue_drops_and_counts_instead_of_blocking() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    // Reserve an address, then leave nothing listening on it.
    let (absent, absent_inbox) = start(settings("n2", "c")).await;
    let addr = absent.local_addr();
    absent.shutdown().await;
    drop(absent_inbox);

    let mut small_queue = settings("n1", "c");
    small_queue.outbound_queue_max = 16;
    let (sender, _sender_inbox) = start(small_queue).await;
    let started = Instant::now();
    for sequence in 0..1_000 {
        sender.send(&node("n2"), addr, data(sequence));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "sending 1000 messages to an unreachable peer took {:?}",
        started.elapsed()
    );
    // Nothing leaves the queue while the peer is unreachable: exactly the overflow is dropped.
    assert_eq!(sender.send_drop_counts().get(SendDropCause::QueueFull), 984);

    // The peer comes back on the same address and gets the 16 queued messages, in order.
    let mut returning = settings("n2", "c");
    returning.bind_addr = addr;
    let (peer, mut inbox) = start(returning).await;
    let received = receive(&mut inbox, 16).await;
    assert_in_order_per_sender(&received, &["n1"], 16);
    sender.shutdown().await;
    peer.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_consumer_pushes_back_and_only_dropped_messages_are_missing() {
    let _turn = crate::one_file_at_a_time::take_turn(module_path!());
    let mut slow = settings("n2", "c");
    slow.inbound_queue_max = 4;
    let (receiver, mut inbox) = start(slow).await;
    let mut sending = settings("n1", "c");
    sending.outbound_queue_max = 32;
    // Long enough that a blocked write is not mistaken for a dead peer during this test.
    sending.idle_timeout_ms = 60_000;
    let (sender, _sender_inbox) = start(sending).await;

    let count = 2_000u64;
    let text = "x".repeat(16 * 1024);
    let started = Instant::now();
    for sequence in 0..count {
        let message = TestMessage::Data {
            sequence,
            text: text.clone(),
        };
        sender.send(&node("n2"), receiver.local_addr(), message);
        if sequence % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    assert!(started.elapsed() < DEADLINE, "send blocked");
    let dropped = sender.send_drop_counts().get(SendDropCause::QueueFull);
    assert!(
        dropped > 0,
        "32 MB against a consumer that reads nothing must overflow"
    );

    // Now consume: everything not dropped arrives, in increasing order.
    let expected = usize::try_from(count - dropped).expect("small");
    let received = receive(&mut inbox, expected).await;
    let sequences: Vec<u64> = received
        .iter()
        .filter_map(|inbound| match inbound.message {
            TestMessage::Data { sequence, .. } => Some(sequence),
            _ => None,
        })
        .collect();
    assert_eq!(sequences.len(), expected);
    assert!(
        sequences.windows(2).all(|pair| pair[0] < pair[1]),
        "messages were reordered"
    );
    sender.send(&node("n2"), receiver.local_addr(), TestMessage::Ping(1));
    assert_eq!(
        receive(&mut inbox, 1).await[0].message,
        TestMessage::Ping(1)
    );
    sender.shutdown().await;
    receiver.shutdown().await;
}
