//! The name under which a node's counter increments are kept.
//!
//! A PN-counter keeps one total per writer and joins by the larger total. A node that lost
//! its own increments (its disk was replaced, it runs without a data dir, or `fsync` is not
//! `always` and it crashed) would restart its total below what its peers hold, and every
//! increment it made until it passed the old total would vanish in the join. So a node keeps
//! its increments under its node id plus a random suffix, and takes a fresh suffix whenever
//! its store might not hold all of its own increments: the suffix file is reused only with
//! `fsync = "always"` (every acknowledged increment is on disk), and a missing file (a new
//! disk) means a new suffix. Each fresh suffix is one more writer in the counters that node
//! increments afterwards (at most `COUNTER_NODES_MAX` writers per counter).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ha_core::{NODE_ID_LENGTH_MAX, NodeId, SharedStateFsync};

use super::error::StateError;
use super::store::replace_file;

/// The file in the shared map's directory that holds this node's counter-writer suffix.
pub const COUNTER_WRITER_FILE_NAME: &str = "counter_writer";

/// Hex digits of the random suffix.
const SUFFIX_DIGITS: usize = 8;

/// The counter-writer name for `node`: `<node>.<8 hex digits>`, read from `dir` when the
/// store there holds every acknowledged increment (`fsync = "always"`), else new (and written
/// to `dir`, synced, so the next start with `always` reuses it). `entropy` seeds the suffix.
pub fn counter_writer(
    node: &NodeId,
    dir: Option<&Path>,
    fsync: SharedStateFsync,
    entropy: u64,
) -> Result<NodeId, StateError> {
    let Some(dir) = dir else {
        return Ok(fresh(node, entropy));
    };
    let path = dir.join(COUNTER_WRITER_FILE_NAME);
    if fsync == SharedStateFsync::Always
        && let Ok(text) = std::fs::read_to_string(&path)
        && let Some(writer) = parse(node, &text)
    {
        return Ok(writer);
    }
    let writer = fresh(node, entropy);
    replace_file(
        dir,
        &format!("{COUNTER_WRITER_FILE_NAME}.tmp"),
        COUNTER_WRITER_FILE_NAME,
        &[writer.as_str().as_bytes()],
    )?;
    Ok(writer)
}

/// A stored name, if it is this node's (a data dir copied from another node gets a new one).
fn parse(node: &NodeId, text: &str) -> Option<NodeId> {
    let text = text.trim();
    let suffix = text.strip_prefix(prefix(node).as_str())?;
    let hex = suffix.strip_prefix('.')?;
    if hex.len() != SUFFIX_DIGITS || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    NodeId::new(text).ok()
}

/// The node id, cut so that the suffix fits in a node id.
fn prefix(node: &NodeId) -> String {
    let room = NODE_ID_LENGTH_MAX - SUFFIX_DIGITS - 1;
    node.as_str().chars().take(room).collect()
}

fn fresh(node: &NodeId, entropy: u64) -> NodeId {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    // Two stores opened in one process within a clock tick still differ.
    static OPENED: AtomicU64 = AtomicU64::new(0);
    let opened = OPENED.fetch_add(1, Ordering::Relaxed);
    let mixed = splitmix64(
        entropy ^ splitmix64(nanos ^ u64::from(std::process::id())) ^ splitmix64(opened),
    );
    let name = format!("{}.{:08x}", prefix(node), mixed as u32);
    // Only characters of the node id, a dot and hex digits: always a valid id.
    NodeId::new(name).unwrap_or_else(|_| node.clone())
}

fn splitmix64(mut value: u64) -> u64 {
    value = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    #[test]
    fn kept_across_restarts_only_when_every_increment_was_synced() {
        let dir = tempfile::tempdir().unwrap();
        let n1 = node("n1");
        let first = counter_writer(&n1, Some(dir.path()), SharedStateFsync::Always, 1).unwrap();
        assert!(first.as_str().starts_with("n1."), "{first}");
        let again = counter_writer(&n1, Some(dir.path()), SharedStateFsync::Always, 2).unwrap();
        assert_eq!(
            first, again,
            "fsync always: the store holds every increment"
        );
        for fsync in [SharedStateFsync::Batched, SharedStateFsync::Never] {
            let other = counter_writer(&n1, Some(dir.path()), fsync, 3).unwrap();
            assert_ne!(
                other, first,
                "{fsync:?}: the store may have lost increments"
            );
        }
    }

    #[test]
    fn a_new_disk_or_no_disk_or_another_nodes_file_means_a_new_writer() {
        let dir = tempfile::tempdir().unwrap();
        let n1 = node("n1");
        let first = counter_writer(&n1, Some(dir.path()), SharedStateFsync::Always, 1).unwrap();
        std::fs::remove_file(dir.path().join(COUNTER_WRITER_FILE_NAME)).unwrap();
        let replaced = counter_writer(&n1, Some(dir.path()), SharedStateFsync::Always, 1).unwrap();
        assert_ne!(first, replaced);
        assert_ne!(
            counter_writer(&n1, None, SharedStateFsync::Always, 1).unwrap(),
            counter_writer(&n1, None, SharedStateFsync::Always, 1).unwrap()
        );
        let n2 = counter_writer(&node("n2"), Some(dir.path()), SharedStateFsync::Always, 1);
        assert!(n2.unwrap().as_str().starts_with("n2."));
    }

    #[test]
    fn the_longest_node_id_still_gets_a_valid_suffixed_name() {
        let long = node(&"x".repeat(NODE_ID_LENGTH_MAX));
        let writer = counter_writer(&long, None, SharedStateFsync::Always, 7).unwrap();
        assert_eq!(writer.as_str().len(), NODE_ID_LENGTH_MAX);
        assert_ne!(writer, long);
    }
}
