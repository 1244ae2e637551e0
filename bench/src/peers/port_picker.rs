//! Free loopback ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

/// Most ports tried for one pick before giving up.
const ATTEMPTS_MAX: usize = 64;

/// Picks free loopback ports. Each picked port's socket is held until [`release`] (or drop),
/// so no two picks return the same port; the ports are released just before the processes
/// that use them start. Ports 2379 and 2380 (a system etcd) are never returned.
///
/// [`release`]: PortPicker::release
#[derive(Debug, Default)]
pub struct PortPicker {
    held_tcp: Vec<TcpListener>,
    held_udp: Vec<UdpSocket>,
}

impl PortPicker {
    /// A loopback port free for TCP.
    ///
    /// # Errors
    /// The IO error when no socket can be bound.
    pub fn tcp(&mut self) -> std::io::Result<SocketAddr> {
        for _attempt in 0..ATTEMPTS_MAX {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            let addr = listener.local_addr()?;
            self.held_tcp.push(listener);
            if !is_reserved(addr) {
                return Ok(addr);
            }
        }
        Err(std::io::Error::other("no free loopback TCP port"))
    }

    /// A loopback port free for both UDP and TCP (ha's gossip and replication share it).
    ///
    /// # Errors
    /// The IO error when no socket can be bound or no port was free for both.
    pub fn udp_and_tcp(&mut self) -> std::io::Result<SocketAddr> {
        for _attempt in 0..ATTEMPTS_MAX {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            let addr = udp.local_addr()?;
            if is_reserved(addr) {
                continue;
            }
            if let Ok(tcp) = TcpListener::bind(addr) {
                self.held_udp.push(udp);
                self.held_tcp.push(tcp);
                return Ok(addr);
            }
        }
        Err(std::io::Error::other(
            "no loopback port free for both UDP and TCP",
        ))
    }

    /// Close every held socket so the processes can bind the ports.
    pub fn release(&mut self) {
        self.held_tcp.clear();
        self.held_udp.clear();
    }
}

fn is_reserved(addr: SocketAddr) -> bool {
    matches!(addr.port(), 2379 | 2380)
}
