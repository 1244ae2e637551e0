//! The TCP transport's tests that share `transport_support` (`transport_*.rs`), one module per
//! former test file, built as one test binary: ha-replicate is built at opt-level 2 in the dev
//! profile (for the simulator), so each separate test binary was a separate optimised compile
//! and link of the same helpers and std generics. Each test first takes its file's turn
//! (`one_file_at_a_time`): `transport_backpressure` and `transport_liveness` measure time, and
//! as separate binaries no two files' tests ran side by side. `transport_tls_hostile` and
//! `hostile_frames` stay binaries of their own: each installs a counting global allocator and
//! measures the process's peak. Run one file's tests by its module name:
//! `cargo test -p ha-replicate --test transport transport_liveness::`.

#[path = "../one_file_at_a_time/mod.rs"]
mod one_file_at_a_time;
#[path = "../tls_support/mod.rs"]
mod tls_support;
#[path = "../transport_support/mod.rs"]
mod transport_support;

mod transport_backpressure;
mod transport_bad_input;
mod transport_delivery;
mod transport_frame_properties;
mod transport_liveness;
mod transport_security;
mod transport_tls;
