//! The engine's effect-level tests (`engine_*.rs`), one module per former test file, built as
//! one test binary: ha-replicate is built at opt-level 2 in the dev profile (for the
//! simulator), so each separate test binary was a separate optimised compile and link of the
//! same helpers and std generics. Run one file's tests by its module name:
//! `cargo test -p ha-replicate --test engine engine_lease::`.

#[path = "../engine_support/mod.rs"]
mod engine_support;

mod engine_commit_notice;
mod engine_effects;
mod engine_failover_record;
mod engine_follower_window;
mod engine_lease;
mod engine_log_eviction;
mod engine_membership_guard;
mod engine_operator_membership;
mod engine_own_durability;
mod engine_refusals;
mod engine_unwell_campaign;
mod engine_witness;
