//! Free loopback ports for the demo's nodes.
//!
//! The operating system picks them (bind to port 0). Every socket stays open until all ports
//! are picked, so no two picks collide; they are closed just before the nodes start, which
//! leaves a small window in which another program could take one. A node that then fails to
//! bind exits with an error, and the demo reports it.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// Most ports tried before giving up; a free one is normally found at the first try.
const ATTEMPTS_MAX: usize = 64;

/// Holds picked ports' sockets so later picks cannot return the same port.
#[derive(Default)]
pub struct PortPicker {
    held_udp: Vec<UdpSocket>,
    held_tcp: Vec<TcpListener>,
}

impl PortPicker {
    /// A loopback address for a node's gossip: free for UDP, and for TCP too, since
    /// replication RPC will share the port.
    ///
    /// # Errors
    /// The IO error when no socket can be bound, or no port was free for both protocols.
    pub fn gossip_addr(&mut self) -> io::Result<SocketAddr> {
        for _attempt in 0..ATTEMPTS_MAX {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            let addr = udp.local_addr()?;
            if let Ok(tcp) = TcpListener::bind(addr) {
                self.held_udp.push(udp);
                self.held_tcp.push(tcp);
                return Ok(addr);
            }
        }
        Err(io::Error::other(format!(
            "no loopback port free for both UDP and TCP after {ATTEMPTS_MAX} tries"
        )))
    }

    /// A free loopback TCP address (for an admin HTTP address).
    ///
    /// # Errors
    /// The IO error when no socket can be bound.
    pub fn tcp_addr(&mut self) -> io::Result<SocketAddr> {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = tcp.local_addr()?;
        self.held_tcp.push(tcp);
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_distinct_ports() -> io::Result<()> {
        let mut picker = PortPicker::default();
        let first = picker.gossip_addr()?;
        let second = picker.gossip_addr()?;
        let http = picker.tcp_addr()?;
        assert_ne!(first.port(), second.port());
        assert_ne!(first.port(), http.port());
        assert!(first.ip().is_loopback());
        Ok(())
    }
}
