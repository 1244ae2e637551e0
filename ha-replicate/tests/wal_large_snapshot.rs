//! A snapshot larger than any buffer (72 MiB) through `WalStore`, with the allocation peak
//! measured: written through a sink in 1 MiB writes, read back in 1 MiB chunks, streamed
//! chunk by chunk into a second store as a leader would send it to a follower, verified,
//! installed, and recovered (which verifies its checksum again) after a restart. Memory must
//! not grow with the snapshot: the peak stays within a few chunks.
//!
//! Alone in its file because the allocation peak is process-wide.

mod wal_support;

use std::alloc::System;
use std::io::{Read, Write};
use std::time::Instant;

use ha_replicate::storage::LogStore;
use ha_replicate::storage::wal::WalStore;
use peakmem_alloc::{INSTRUMENTED_SYSTEM, PeakMemAlloc, PeakMemAllocTrait};
use wal_support::{entries, options, snapshot_meta};

#[global_allocator]
static ALLOCATOR: &PeakMemAlloc<System> = &INSTRUMENTED_SYSTEM;

const MIB: usize = 1024 * 1024;
const SNAPSHOT_BYTES: usize = 72 * MIB;
const CHUNK_BYTES: usize = MIB;

/// What the allocation peak may reach: a few chunks (one generated, one read, copies in
/// flight) and small fixed buffers; far below the snapshot's size.
const PEAK_BYTES_MAX: usize = 6 * CHUNK_BYTES;

/// Fills `buffer` with the snapshot's bytes at `offset` (a cheap function of the position, so
/// the whole snapshot is never held to compare against).
fn fill(buffer: &mut [u8], offset: usize) {
    for (position, byte) in buffer.iter_mut().enumerate() {
        let at = (offset + position) as u64;
        *byte = (at.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 59) as u8 ^ (at >> 20) as u8;
    }
}

/// Checks that `reader` holds exactly the snapshot's bytes.
fn check_reader(reader: &mut dyn Read) {
    let mut expected = vec![0u8; CHUNK_BYTES];
    let mut got = vec![0u8; CHUNK_BYTES];
    for offset in (0..SNAPSHOT_BYTES).step_by(CHUNK_BYTES) {
        fill(&mut expected, offset);
        reader.read_exact(&mut got).unwrap();
        assert!(got == expected, "reader differs in the MiB at {offset}");
    }
    assert_eq!(
        reader.read(&mut got).unwrap(),
        0,
        "the reader ends at the size"
    );
}

fn mib_per_second(bytes: usize, started: Instant) -> f64 {
    bytes as f64 / MIB as f64 / started.elapsed().as_secs_f64()
}

#[test]
fn a_72_mib_snapshot_streams_through_sink_chunks_transfer_and_recovery_in_bounded_memory() {
    let leader_directory = tempfile::tempdir().unwrap();
    let follower_directory = tempfile::tempdir().unwrap();
    let mut leader = WalStore::open(leader_directory.path(), options(1 << 20)).unwrap();
    leader.recover().unwrap();
    leader.append(&entries(1, 1, 10)).unwrap();
    let mut follower = WalStore::open(follower_directory.path(), options(1 << 20)).unwrap();
    follower.recover().unwrap();
    ALLOCATOR.reset_peak_memory();

    // Written through a sink, 1 MiB at a time.
    let started = Instant::now();
    let mut sink = leader.snapshot_sink().unwrap();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut checksum = 0;
    for offset in (0..SNAPSHOT_BYTES).step_by(CHUNK_BYTES) {
        fill(&mut buffer, offset);
        checksum = crc32c::crc32c_append(checksum, &buffer);
        sink.write_all(&buffer).unwrap();
    }
    let written = sink.finish().unwrap();
    assert_eq!(written.size, SNAPSHOT_BYTES as u64);
    assert_eq!(written.crc32c, checksum);
    let meta = snapshot_meta(8, 1);
    let id = leader.commit_snapshot(&meta, &written).unwrap();
    println!(
        "sink + commit: {:.0} MiB/s",
        mib_per_second(SNAPSHOT_BYTES, started)
    );

    // Read back in 1 MiB chunks.
    let started = Instant::now();
    for offset in (0..SNAPSHOT_BYTES).step_by(CHUNK_BYTES) {
        let chunk = leader.read_snapshot(offset as u64, CHUNK_BYTES).unwrap();
        fill(&mut buffer, offset);
        assert!(chunk == buffer, "chunk at {offset} differs");
    }
    assert!(
        leader
            .read_snapshot(SNAPSHOT_BYTES as u64, CHUNK_BYTES)
            .unwrap()
            .is_empty()
    );
    println!(
        "read_snapshot in 1 MiB chunks: {:.0} MiB/s",
        mib_per_second(SNAPSHOT_BYTES, started)
    );
    let (_, reader_id, mut reader) = leader.snapshot_reader().unwrap().unwrap();
    assert_eq!(reader_id, id);
    check_reader(&mut reader);

    // Sent to a follower chunk by chunk, with a restart of the follower halfway.
    let started = Instant::now();
    follower.begin_incoming(&meta, id).unwrap();
    let mut offset = 0u64;
    while offset < id.size {
        if offset == id.size / 2 {
            drop(follower);
            follower = WalStore::open(follower_directory.path(), options(1 << 20)).unwrap();
            let recovered = follower.recover().unwrap();
            assert_eq!(recovered.incoming.unwrap().held, offset);
            follower.begin_incoming(&meta, id).unwrap();
        }
        let chunk = leader.read_snapshot(offset, CHUNK_BYTES).unwrap();
        follower.append_incoming(offset, &chunk).unwrap();
        offset += chunk.len() as u64;
    }
    assert!(follower.verify_incoming().unwrap());
    assert_eq!(follower.install_incoming().unwrap(), id);
    println!(
        "transfer + verify + install: {:.0} MiB/s",
        mib_per_second(SNAPSHOT_BYTES, started)
    );

    // Recovery verifies the whole file again, streaming.
    drop(follower);
    let started = Instant::now();
    let mut follower = WalStore::open(follower_directory.path(), options(1 << 20)).unwrap();
    let recovered = follower.recover().unwrap();
    println!(
        "recovery: {:.0} MiB/s",
        mib_per_second(SNAPSHOT_BYTES, started)
    );
    assert_eq!(recovered.snapshot, Some((meta, id)));
    let (_, _, mut reader) = follower.snapshot_reader().unwrap().unwrap();
    check_reader(&mut reader);

    let peak = ALLOCATOR.get_peak_memory();
    println!("allocation peak: {peak} bytes for a {SNAPSHOT_BYTES}-byte snapshot");
    assert!(
        peak <= PEAK_BYTES_MAX,
        "allocation peak {peak} bytes, over {PEAK_BYTES_MAX}"
    );
}
