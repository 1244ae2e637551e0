//! Hostile input at a TLS node (issue 13, "Bad input"): garbage after a valid TLS record
//! header, truncated records, stalled handshakes (also filling the inbound connection cap)
//! and a client certificate chain 100 deep.
//! Each is refused and counted with a bounded cost (time and allocation peak measured and
//! printed), while a good peer keeps being served by the same listener.
//!
//! The bounds are generous, for a loaded 2-core machine in the debug profile: what they
//! catch is a cost that grows with what the attacker sends (a read of an announced length,
//! an unbounded chain walk) or a stall that holds the listener.

mod tls_support;
mod transport_support;

use std::alloc::System;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ha_replicate::transport::{RejectCause, RejectCounts};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use tls_support::{Ca, ServerCheck, hello_answered, raw_tls, tls_settings, wait_for_refusal};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use transport_support::{
    Receiver, TestMessage, Transport, closed_within, count_panics, node, panics, start,
};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The allocation peak is global to the process: tests in this file run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The handshake timeout of the node under attack.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(1_000);
/// The most any one refusal may take here (the handshake timeout plus slack for load).
const REFUSAL_TIME_MAX: Duration = Duration::from_secs(5);
/// The most the whole process may allocate above its level at the start of one refusal.
const REFUSAL_PEAK_BYTES_MAX: usize = 4 * 1024 * 1024;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A TLS node n1 under attack, and a good TLS peer n2 sending to it.
struct Scene {
    target: Transport,
    inbox: Receiver,
    good: Transport,
    next_ping: u64,
}

impl Scene {
    async fn new(ca: &Ca) -> Scene {
        let mut settings = tls_settings("n1", &ca.node("n1"), &ca.pem);
        settings.handshake_timeout_ms = HANDSHAKE_TIMEOUT.as_millis() as u64;
        let (target, inbox) = start(settings).await;
        let (good, _good_inbox) = start(tls_settings("n2", &ca.node("n2"), &ca.pem)).await;
        let mut scene = Scene {
            target,
            inbox,
            good,
            next_ping: 0,
        };
        scene.good_peer_is_served().await;
        scene
    }

    /// The good peer's pings still arrive.
    async fn good_peer_is_served(&mut self) {
        for _ in 0..300 {
            self.next_ping += 1;
            let ping = TestMessage::Ping(self.next_ping);
            self.good.send(&node("n1"), self.target.local_addr(), ping);
            if let Ok(Some(inbound)) =
                tokio::time::timeout(Duration::from_millis(50), self.inbox.recv()).await
            {
                assert_eq!(inbound.from.as_str(), "n2");
                return;
            }
        }
        panic!("the good peer is no longer served");
    }

    fn counts(&self) -> RejectCounts {
        self.target.reject_counts()
    }

    async fn shutdown(self) {
        self.target.shutdown().await;
        self.good.shutdown().await;
    }
}

/// Measure one refusal: reset the allocation peak, run `attack` (which returns when the
/// connection is closed), and check time, peak and the count of `cause`.
async fn measure(
    scene: &mut Scene,
    what: &str,
    cause: Option<RejectCause>,
    attack: impl std::future::Future<Output = ()>,
) {
    let before = scene.counts();
    ALLOCATOR.reset_peak_memory();
    let started = Instant::now();
    attack.await;
    let target = &scene.target;
    let want = |counts: RejectCounts| counts.total() > before.total();
    let deadline = Instant::now() + REFUSAL_TIME_MAX;
    while !want(target.reject_counts()) {
        assert!(Instant::now() < deadline, "{what}: nothing was counted");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let peak_bytes = ALLOCATOR.get_peak_memory();
    let after = scene.counts();
    let counted: Vec<(RejectCause, u64)> = after
        .iter()
        .zip(before.iter())
        .filter(|((_, now), (_, then))| now > then)
        .map(|((cause, now), (_, then))| (cause, now - then))
        .collect();
    println!(
        "{what}: refused as {counted:?} in {} ms, allocation peak {peak_bytes} bytes",
        elapsed.as_millis()
    );
    assert_eq!(
        after.total(),
        before.total() + 1,
        "{what}: one refusal, {counted:?}"
    );
    if let Some(cause) = cause {
        assert_eq!(
            after.get(cause),
            before.get(cause) + 1,
            "{what}: {counted:?}"
        );
    }
    assert!(elapsed <= REFUSAL_TIME_MAX, "{what}: took {elapsed:?}");
    assert!(
        peak_bytes <= REFUSAL_PEAK_BYTES_MAX,
        "{what}: allocated {peak_bytes} bytes"
    );
    scene.good_peer_is_served().await;
}

async fn connect(scene: &Scene) -> TcpStream {
    TcpStream::connect(scene.target.local_addr())
        .await
        .expect("connect to the listener")
}

#[test]
fn garbage_and_truncated_tls_records_are_refused_cheaply() {
    let _serial = serial();
    count_panics();
    runtime().block_on(async {
        let ca = Ca::new("cluster CA");
        let mut scene = Scene::new(&ca).await;
        // A valid handshake record header announcing 16 KiB, then 16 KiB of garbage.
        let mut garbage = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        garbage.extend((0..16_384u32).map(|value| (value.wrapping_mul(2_654_435_761) >> 13) as u8));
        let mut stream = connect(&scene).await;
        measure(
            &mut scene,
            "garbage after a record header",
            Some(RejectCause::TlsHandshake),
            async {
                stream.write_all(&garbage).await.ok();
                assert!(
                    closed_within(&mut stream, REFUSAL_TIME_MAX).await,
                    "left open"
                );
            },
        )
        .await;
        // A record header announcing 512 bytes, 100 of them, then the end of the stream.
        let mut stream = connect(&scene).await;
        measure(
            &mut scene,
            "a truncated record",
            Some(RejectCause::TlsHandshake),
            async {
                let mut truncated = vec![0x16, 0x03, 0x01, 0x02, 0x00];
                truncated.extend_from_slice(&[1u8; 100]);
                stream.write_all(&truncated).await.ok();
                stream.shutdown().await.ok();
                assert!(
                    closed_within(&mut stream, REFUSAL_TIME_MAX).await,
                    "left open"
                );
            },
        )
        .await;
        // A record announcing more than TLS allows (a 64 KiB record).
        let mut stream = connect(&scene).await;
        measure(
            &mut scene,
            "an oversized record",
            Some(RejectCause::TlsHandshake),
            async {
                stream.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff]).await.ok();
                stream.write_all(&[0u8; 1024]).await.ok();
                assert!(
                    closed_within(&mut stream, REFUSAL_TIME_MAX).await,
                    "left open"
                );
            },
        )
        .await;
        // Not TLS at all, not a hello either.
        let mut stream = connect(&scene).await;
        measure(
            &mut scene,
            "HTTP at the RPC port",
            Some(RejectCause::TlsHandshake),
            async {
                stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.ok();
                assert!(
                    closed_within(&mut stream, REFUSAL_TIME_MAX).await,
                    "left open"
                );
            },
        )
        .await;
        scene.shutdown().await;
    });
    assert_eq!(panics(), 0, "a task panicked");
}

#[test]
fn a_stalled_handshake_is_closed_by_the_timeout_and_holds_nobody_up() {
    let _serial = serial();
    count_panics();
    runtime().block_on(async {
        let ca = Ca::new("cluster CA");
        let mut scene = Scene::new(&ca).await;
        // Ten connections send the first 3 bytes of a record and stall.
        let mut stalled = Vec::new();
        for _ in 0..10 {
            let mut stream = connect(&scene).await;
            stream.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
            stalled.push(stream);
        }
        let started = Instant::now();
        // While they stall, the good peer is served.
        scene.good_peer_is_served().await;
        let served_after = started.elapsed();
        for stream in &mut stalled {
            assert!(
                closed_within(stream, REFUSAL_TIME_MAX).await,
                "a stalled handshake stayed open"
            );
        }
        let closed_after = started.elapsed();
        println!(
            "10 stalled handshakes: good peer served after {} ms, all closed after {} ms \
             (handshake timeout {} ms)",
            served_after.as_millis(),
            closed_after.as_millis(),
            HANDSHAKE_TIMEOUT.as_millis()
        );
        wait_for_refusal("stalled", RejectCause::HandshakeTimeout, 10, || {
            scene.counts()
        })
        .await;
        assert!(
            served_after < HANDSHAKE_TIMEOUT,
            "the good peer waited for the stalled ones"
        );
        assert!(
            closed_after >= HANDSHAKE_TIMEOUT / 2,
            "closed before the timeout"
        );
        // One stall, measured like the others.
        let mut stream = connect(&scene).await;
        measure(
            &mut scene,
            "a stalled handshake",
            Some(RejectCause::HandshakeTimeout),
            async {
                stream.write_all(&[0x16, 0x03]).await.ok();
                assert!(
                    closed_within(&mut stream, REFUSAL_TIME_MAX).await,
                    "left open"
                );
            },
        )
        .await;
        scene.shutdown().await;
    });
    assert_eq!(panics(), 0, "a task panicked");
}

/// TLS setup counts against the inbound connection cap: stalled handshakes fill it, a
/// connection beyond it is refused `connection_limit` at once, and once the handshake timeout
/// has closed the stalled ones the good peer is served again.
#[test]
fn stalled_tls_handshakes_count_against_the_connection_cap_until_the_timeout() {
    let _serial = serial();
    count_panics();
    runtime().block_on(async {
        let ca = Ca::new("cluster CA");
        let mut settings = tls_settings("n1", &ca.node("n1"), &ca.pem);
        settings.handshake_timeout_ms = HANDSHAKE_TIMEOUT.as_millis() as u64;
        settings.inbound_connections_max = 3;
        let (target, mut inbox) = start(settings).await;
        let mut stalled = Vec::new();
        for _ in 0..3 {
            let mut stream = TcpStream::connect(target.local_addr())
                .await
                .expect("connect");
            stream.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
            stalled.push(stream);
        }
        // Give the listener a moment to accept all three before the fourth arrives.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(target.local_addr())
            .await
            .expect("connect");
        assert!(
            closed_within(&mut extra, REFUSAL_TIME_MAX).await,
            "the extra stayed open"
        );
        wait_for_refusal("over the cap", RejectCause::ConnectionLimit, 1, || {
            target.reject_counts()
        })
        .await;
        wait_for_refusal("stalled", RejectCause::HandshakeTimeout, 3, || {
            target.reject_counts()
        })
        .await;
        let (good, _good_inbox) = start(tls_settings("n2", &ca.node("n2"), &ca.pem)).await;
        let mut served = false;
        for attempt in 0..300u64 {
            good.send(&node("n1"), target.local_addr(), TestMessage::Ping(attempt));
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), inbox.recv()).await
            {
                served = true;
                break;
            }
        }
        assert!(
            served,
            "the good peer was not served after the stalls were closed"
        );
        println!("cap 3 with TLS: refusals {:?}", target.reject_counts());
        target.shutdown().await;
        good.shutdown().await;
    });
    assert_eq!(panics(), 0, "a task panicked");
}

#[test]
fn a_client_certificate_chain_100_deep_is_refused_cheaply() {
    let _serial = serial();
    count_panics();
    runtime().block_on(async {
        let ca = Ca::new("cluster CA");
        let deep = ca.deep_chain("n5", 100);
        let mut scene = Scene::new(&ca).await;
        let addr = scene.target.local_addr();
        println!(
            "a chain of 101 certificates: {} bytes of PEM",
            deep.chain_pem.len()
        );
        measure(&mut scene, "a client chain 100 deep", None, async {
            if let Ok(mut session) = raw_tls(addr, Some(&deep), ServerCheck::AcceptAny).await {
                assert!(
                    !hello_answered(&mut session, "n5").await,
                    "the deep chain was let in"
                );
            }
        })
        .await;
        scene.shutdown().await;
    });
    assert_eq!(panics(), 0, "a task panicked");
}
