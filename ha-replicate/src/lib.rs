//! # ha-replicate
//!
//! The replicated log: election and replication as a sans-IO engine, durable storage, and
//! (in progress) the transport and tokio driver.

pub mod driver;
pub mod engine;
pub mod entry;
pub mod hard_state;
pub mod membership;
pub mod membership_feed;
pub mod raft_log;
pub mod replica;
pub mod snapshot_meta;
pub mod storage;
pub mod transport;
