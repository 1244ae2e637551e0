//! The write-ahead log's tests that share `wal_support` (`wal_*.rs`), one module per former
//! test file, built as one test binary: ha-replicate is built at opt-level 2 in the dev
//! profile (for the simulator), so each separate test binary was a separate optimised compile
//! and link of the same helpers and std generics. `wal_large_snapshot` and `hostile_wal` stay
//! binaries of their own: each installs a counting global allocator and measures the
//! process's peak. Run one file's tests by its module name:
//! `cargo test -p ha-replicate --test wal wal_model::`.

#[path = "../wal_support/mod.rs"]
mod wal_support;

mod wal_damage;
mod wal_memory_store;
mod wal_model;
mod wal_store;
mod wal_streamed_snapshots;
