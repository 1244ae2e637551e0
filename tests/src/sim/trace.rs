//! A fingerprint of everything that happened in a run, to test determinism.

use std::fmt;

use ha_core::Millis;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `hash`. Chosen because it is tiny and its output is
/// fixed forever, unlike `std`'s `DefaultHasher`, so a trace hash means the same in every build.
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// FNV-1a of `bytes` from the standard starting value.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET_BASIS, bytes)
}

/// What kind of event a trace entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// A node was started (or restarted).
    Start,
    /// A node was crashed.
    Crash,
    /// A message was delivered to a node.
    Message,
    /// A timer fired at a node.
    Timer,
    /// A node produced an output.
    Output,
}

impl TraceKind {
    fn tag(self) -> u8 {
        match self {
            TraceKind::Start => 1,
            TraceKind::Crash => 2,
            TraceKind::Message => 3,
            TraceKind::Timer => 4,
            TraceKind::Output => 5,
        }
    }
}

impl fmt::Display for TraceKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            TraceKind::Start => "start",
            TraceKind::Crash => "crash",
            TraceKind::Message => "message",
            TraceKind::Timer => "timer",
            TraceKind::Output => "output",
        };
        formatter.write_str(name)
    }
}

/// A rolling hash of every event the simulator processed (time, node, kind, and the hash of a
/// message's bytes), plus, when asked for, the first `lines_max` entries as text for diffing
/// two runs that diverged.
#[derive(Clone, Debug)]
pub struct Trace {
    hash: u64,
    entries: u64,
    lines: Vec<String>,
    lines_max: usize,
}

impl Trace {
    /// An empty trace that keeps at most `lines_max` text lines (0: only the hash).
    pub fn new(lines_max: usize) -> Self {
        Self {
            hash: FNV_OFFSET_BASIS,
            entries: 0,
            lines: Vec::new(),
            lines_max,
        }
    }

    /// Whether text lines are still being kept (callers skip formatting details otherwise).
    pub fn wants_lines(&self) -> bool {
        self.lines.len() < self.lines_max
    }

    /// Fold one event into the hash; `detail` is only evaluated when a text line is kept.
    pub fn record(
        &mut self,
        at: Millis,
        node: usize,
        kind: TraceKind,
        payload_hash: u64,
        detail: impl FnOnce() -> String,
    ) {
        let node = u64::try_from(node).unwrap_or(u64::MAX);
        let mut hash = fnv1a(self.hash, &at.0.to_le_bytes());
        hash = fnv1a(hash, &node.to_le_bytes());
        hash = fnv1a(hash, &[kind.tag()]);
        self.hash = fnv1a(hash, &payload_hash.to_le_bytes());
        self.entries += 1;
        if self.wants_lines() {
            self.lines.push(format!(
                "{at} n{node} {kind} {payload_hash:016x} {}",
                detail()
            ));
        }
    }

    /// The rolling hash so far. Equal hashes mean (with overwhelming probability) equal runs.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many events were recorded.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// The text lines kept (the first `lines_max` events).
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}
