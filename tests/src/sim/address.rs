//! Node addresses in the simulator.

use std::net::{Ipv4Addr, SocketAddr};

/// The port every simulated node "listens" on.
pub const SIMULATED_PORT: u16 = 7000;

/// Most nodes [`node_addr`] can name: one per address in 10.0.0.0/8 below 10.255.255.255.
pub const SIMULATED_NODES_MAX: usize = 1 << 24;

/// The address of the node with index `node`: `10.a.b.c:7000` where `a.b.c` is the index in
/// base 256 (node 0 is `10.0.0.0:7000`, node 257 is `10.0.1.1:7000`).
///
/// These are only keys in the simulator; nothing binds them.
///
/// # Panics
/// When `node` is not below [`SIMULATED_NODES_MAX`].
///
/// ```
/// use ha_tests::sim::node_addr;
/// assert_eq!(node_addr(257).to_string(), "10.0.1.1:7000");
/// ```
pub fn node_addr(node: usize) -> SocketAddr {
    assert!(
        node < SIMULATED_NODES_MAX,
        "node index {node} does not fit in 10.0.0.0/8"
    );
    let [_, high, middle, low] = u32::try_from(node).unwrap_or(u32::MAX).to_be_bytes();
    SocketAddr::from((Ipv4Addr::new(10, high, middle, low), SIMULATED_PORT))
}
