//! The tests that run the real tokio driver (`ReplicaNode`) over TCP on 127.0.0.1, one module
//! per former test file, built as one test binary: ha-replicate is built at opt-level 2 in the
//! dev profile (for the simulator), and each of these binaries monomorphised and optimised the
//! whole driver for its own state machine (135-150 s of build each on the CI machine). Each test
//! first takes its file's turn (`one_file_at_a_time`), so no test runs beside another file's,
//! as when they were separate binaries. Run one file's tests by its module name:
//! `cargo test -p ha-replicate --test driver slow_apply::`.

mod kv;
#[path = "../one_file_at_a_time/mod.rs"]
mod one_file_at_a_time;

mod driver_latency_metrics;
mod slow_apply;
mod storage_fatal;
mod storage_slow_sync;
mod tcp_cluster;
