//! A write's identity and its place in last-writer-wins order.

use ha_core::NodeId;
use serde::{Deserialize, Serialize};

use super::Hlc;

/// The node id of [`Stamp::zero`]. `NodeId` cannot be empty, so the zero stamp uses the
/// smallest valid id; its clock reading (0, 0) is never handed out, so it cannot collide with
/// a real write's stamp whatever the node is called.
const ZERO_NODE: &str = "-";

/// A write's identity and its LWW order: ordered by (`hlc`, `node`). Each write has its own
/// stamp, because a node's clock never hands out the same reading twice.
///
/// ```
/// use ha_core::NodeId;
/// use ha_gossip::{Hlc, Stamp};
/// let stamp = Stamp { hlc: Hlc { wall_ms: 1_700_000_000_000, logical: 3 }, node: NodeId::new("n1").unwrap() };
/// assert_eq!(stamp.display(), "1700000000000.00003");
/// assert!(Stamp::zero() < stamp);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// When it was written, by the writer's hybrid logical clock.
    pub hlc: Hlc,
    /// Who wrote it; breaks ties between equal clock readings.
    pub node: NodeId,
}

impl Stamp {
    /// The zero stamp: clock reading (0, 0), the generation of a counter created on an absent
    /// key. Smaller than every stamp a clock hands out.
    pub fn zero() -> Stamp {
        // A constant checked by the unit test below, not input from a peer.
        let node = NodeId::new(ZERO_NODE).expect("\"-\" is a valid node id");
        Stamp {
            hlc: Hlc::ZERO,
            node,
        }
    }

    /// Whether this is a zero reading (any node).
    pub fn is_zero(&self) -> bool {
        self.hlc == Hlc::ZERO
    }

    /// The clock part as sortable text, `"{wall_ms:013}.{logical:05}"` (the HTTP `stamp`
    /// field): text order is clock order for the next few centuries.
    pub fn display(&self) -> String {
        format!("{:013}.{:05}", self.hlc.wall_ms, self.hlc.logical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_zero_stamp_is_below_every_ticked_stamp() {
        let zero = Stamp::zero();
        assert!(zero.is_zero());
        let mut clock = super::super::HlcClock::new(0);
        let smallest_node = NodeId::new("-").unwrap();
        let first = Stamp {
            hlc: clock.tick(0),
            node: smallest_node,
        };
        assert!(zero < first);
        assert!(!first.is_zero());
    }

    #[test]
    fn display_sorts_like_the_clock() {
        let node = NodeId::new("n").unwrap();
        let early = Stamp {
            hlc: Hlc {
                wall_ms: 999,
                logical: 12,
            },
            node: node.clone(),
        };
        let late = Stamp {
            hlc: Hlc {
                wall_ms: 1_000,
                logical: 0,
            },
            node,
        };
        assert_eq!(early.display(), "0000000000999.00012");
        assert!(early.display() < late.display());
    }
}
