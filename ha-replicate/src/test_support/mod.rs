//! Scaffolding the crate's tests share (with the `test-support` feature, or in the crate's own
//! unit tests): the [`Counter`] state machine and a [`loopback_cluster`] of real nodes. Not
//! part of the supported API.

mod counter;
pub mod loopback_cluster;

pub use counter::Counter;
