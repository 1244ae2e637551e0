//! One recorded output of a simulated node.

use ha_core::Millis;

/// An output a node produced, with the virtual time it was produced at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputRecord<O> {
    /// When the node produced it.
    pub at: Millis,
    /// The node's index.
    pub node: usize,
    /// What the node's core reported.
    pub output: O,
}
