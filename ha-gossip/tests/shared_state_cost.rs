//! Costs of the shared map at its default limit of 100,000 live keys: per-operation latency
//! (p50, p99) of put, get, increment, delete, merge, digest and anti-entropy helpers, and the
//! memory a key costs. The assertions are loose (a write recomputing the digest over 100,000
//! keys would take milliseconds, 100 times the bound); the printed figures are the
//! measurement:
//!
//! ```text
//! cargo test -p ha-gossip --test shared_state_cost -- --nocapture
//! ```
//!
//! (`ha-gossip` is built with opt-level 2 in the dev profile, so these are optimised figures.)

use std::alloc::System;
use std::time::{Duration, Instant};

use ha_core::NodeId;
use ha_gossip::{Delta, SharedMap, StateLimits};
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: usize = 100_000;
/// Keys left free under the limit for the counters the test creates.
const COUNTERS: usize = 100;
const VALUE_BYTES: usize = 64;
const SAMPLES: usize = 20_000;
const START_MS: u64 = 1_700_000_000_000;
/// A bound no O(1) operation comes near even on a loaded 2-core machine, and every O(n)
/// per-operation recomputation over 100,000 keys exceeds.
const P50_BOUND: Duration = Duration::from_micros(50);

fn key(index: usize) -> String {
    format!("service/instance-{index:06}/status")
}

/// (p50, p99) of `samples`.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |fraction: f64| samples[((samples.len() - 1) as f64 * fraction) as usize];
    (at(0.50), at(0.99))
}

fn measure(mut operation: impl FnMut(usize)) -> (Duration, Duration) {
    let samples = (0..SAMPLES)
        .map(|index| {
            let started = Instant::now();
            operation(index);
            started.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn report(name: &str, (p50, p99): (Duration, Duration)) {
    println!(
        "{name:<34} p50 {:>8.2} µs   p99 {:>8.2} µs",
        micros(p50),
        micros(p99)
    );
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// Pseudo-random key indexes, so lookups do not walk the tree in order.
fn spread(index: usize) -> usize {
    index.wrapping_mul(2_654_435_761) % (KEYS - COUNTERS)
}

#[test]
fn operations_stay_cheap_at_a_hundred_thousand_keys() {
    let node = NodeId::new("n1").unwrap();
    ALLOCATOR.reset_peak_memory();
    let before = ALLOCATOR.get_peak_memory();
    let mut map = SharedMap::new(node, StateLimits::default());
    let filled = Instant::now();
    for index in 0..KEYS - COUNTERS {
        map.put(START_MS, &key(index), vec![7; VALUE_BYTES])
            .unwrap();
    }
    let fill_time = filled.elapsed();
    let peak = ALLOCATOR.get_peak_memory().saturating_sub(before);
    println!(
        "filled {} keys of {VALUE_BYTES}-byte values in {:.0} ms; peak memory {:.1} MiB, \
         {} bytes per key ({} of them key and value)",
        KEYS - COUNTERS,
        fill_time.as_secs_f64() * 1e3,
        peak as f64 / (1 << 20) as f64,
        peak / KEYS,
        key(0).len() + VALUE_BYTES,
    );

    let mut wall_ms = START_MS;
    let put = measure(|index| {
        wall_ms += 1;
        map.put(wall_ms, &key(spread(index)), vec![index as u8; VALUE_BYTES])
            .unwrap();
    });
    report("put (overwrite, 64 B)", put);
    let put_large = measure(|index| {
        wall_ms += 1;
        map.put(wall_ms, &key(spread(index)), vec![index as u8; 4096])
            .unwrap();
    });
    report("put (overwrite, 4096 B)", put_large);
    let get = measure(|index| {
        assert!(map.get(&key(spread(index))).is_some());
    });
    report("get", get);
    let increment = measure(|index| {
        wall_ms += 1;
        map.increment(wall_ms, &format!("counter-{}", index % COUNTERS), 1)
            .unwrap();
    });
    report("increment (100 counters)", increment);

    let mut peer = SharedMap::new(NodeId::new("n2").unwrap(), StateLimits::default());
    let deltas: Vec<Delta> = (0..SAMPLES)
        .map(|index| peer.put(wall_ms, &key(spread(index)), vec![1; 64]).unwrap())
        .collect();
    let mut deltas = deltas.into_iter();
    let merge = measure(|_| {
        map.merge(wall_ms, deltas.next().unwrap()).unwrap();
    });
    report("merge (a newer remote write)", merge);

    let delete = measure(|index| {
        wall_ms += 1;
        map.delete(wall_ms, &key(index)).unwrap();
    });
    report("delete", delete);

    let theirs = peer.digest();
    let digest = measure(|_| {
        std::hint::black_box(map.digest());
    });
    report("digest (copy of 256 buckets)", digest);
    let differing = measure(|_| {
        std::hint::black_box(map.differing_buckets(&theirs));
    });
    report("differing_buckets", differing);
    let started = Instant::now();
    let one_bucket = map.deltas_in_buckets(&[17]);
    println!(
        "deltas_in_buckets (1 of 256)        {:>8.2} ms for {} entries",
        started.elapsed().as_secs_f64() * 1e3,
        one_bucket.len()
    );
    let started = Instant::now();
    let collected = map.collect_tombstones(wall_ms);
    println!(
        "collect_tombstones (none due)       {:>8.2} µs, {collected} collected",
        micros(started.elapsed())
    );
    let started = Instant::now();
    let collected = map.collect_tombstones(wall_ms + map.limits().tombstone_grace_ms);
    println!(
        "collect_tombstones (all due)        {:>8.2} ms, {collected} collected",
        started.elapsed().as_secs_f64() * 1e3
    );
    let started = Instant::now();
    map.check_invariants().unwrap();
    println!(
        "check_invariants (full recompute)   {:>8.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    for (name, (p50, _)) in [
        ("put", put),
        ("get", get),
        ("increment", increment),
        ("merge", merge),
    ] {
        assert!(p50 < P50_BOUND, "{name} p50 {p50:?} is over {P50_BOUND:?}");
    }
    assert!(differing.0 < P50_BOUND);
}
