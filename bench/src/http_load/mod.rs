//! The HTTP load generator shared by `compare_etcd` and `compare_security`: the same requests
//! against ha's admin API and etcd's JSON gateway, over plain HTTP or HTTPS, for write runs
//! ([`writes::run`]), sequential local reads ([`reads::sequential`]) and leader-kill failover
//! trials ([`failover::trial`]).
//!
//! ```text
//!   benchmark ──PUT /v1/kv/<key> (Bearer token)──▶ ha leader   (http:// or https://)
//!             ──POST /v3/kv/put───────────────────▶ etcd leader (http:// or https://)
//! ```

pub mod failover;
pub mod reads;
pub mod target;
pub mod writes;
