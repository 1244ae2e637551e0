//! The node's event journal (issue 16, item 1): a bounded ring of numbered, serialized events
//! that `GET /v1/events` streams as server-sent events.
//!
//! What goes in: every [`NodeEvent`] (role, member, health, stalled followers, consistency
//! findings), the failovers this node learns of from its applied log, and the lock grants,
//! releases and expiries this node applies. Each event gets the next sequence number of this
//! node (`seq`, from 1 when the node starts) and is serialized once, as the whole SSE frame:
//!
//! ```text
//! id: 7
//! event: role
//! data: {"at_ms":1764700000000,"kind":"role","leader":"n1","node":"n2","role":"follower","seq":7,"term":3}
//!
//! ```
//!
//! Bounds: the ring keeps the newest [`Config::events_ring_max`](ha_core::Config) events, each
//! at most [`EVENT_BYTES_MAX`] bytes (free text is cut to fit), so it never holds more than
//! their product. A reader keeps only a cursor (the last seq it was given): it asks
//! [`read_after`](EventJournal::read_after) for the next chunk and waits on
//! [`watch_newest`](EventJournal::watch_newest) when there is none. A reader that stops reading
//! costs nothing here; one whose cursor the ring has passed is told how many events it missed
//! ([`JournalRead::Gap`]) instead of being waited for: writers never wait for readers.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ha_core::{EVENT_BYTES_MAX, MemberEvent, NodeId};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::cluster_view::{FailoverEvent, own_role};
use crate::event::NodeEvent;

/// Longest free-text field (a stalled follower's reason) kept in an event, in bytes.
pub const EVENT_TEXT_BYTES_MAX: usize = 256;

/// What a reader gets after its cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalRead {
    /// Nothing newer than the cursor yet.
    Empty,
    /// The ring no longer holds the events right after the cursor: `missed` of them are gone
    /// for good, and `resume_seq` is the oldest one it holds (move the cursor to
    /// `resume_seq - 1`).
    Gap {
        /// Events the reader will never see.
        missed: u64,
        /// The first seq it gets next.
        resume_seq: u64,
    },
    /// Frames after the cursor, concatenated, up to the size asked for (at least one).
    Frames {
        /// The SSE frames.
        text: String,
        /// The seq of the last frame in `text`: the reader's new cursor.
        last_seq: u64,
    },
}

/// One journaled event, serialized as its SSE frame.
struct Frame {
    seq: u64,
    text: Box<str>,
}

/// The ring and its numbering.
struct Ring {
    frames: VecDeque<Frame>,
    /// Sum of the frames' lengths.
    bytes: usize,
    /// The seq the next event gets.
    next_seq: u64,
}

/// How far failover records have been announced.
#[derive(Default)]
struct FailoverCursor {
    /// The highest term of a record seen so far.
    term: u64,
}

/// The node's bounded event ring. Made by the node; read it through
/// [`Node::event_journal`](crate::Node::event_journal) or `GET /v1/events`.
pub struct EventJournal {
    node: NodeId,
    ring_max: usize,
    clients_max: usize,
    ring: Mutex<Ring>,
    newest: watch::Sender<u64>,
    clients: AtomicUsize,
    gaps: AtomicU64,
    /// Unix ms when the journal was made: failover records older than this were history
    /// already (`/v1/failover/history` has them) and are not announced as news.
    started_at_ms: u64,
    failovers: Mutex<FailoverCursor>,
}

impl std::fmt::Debug for EventJournal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EventJournal")
            .field("node", &self.node)
            .field("ring_max", &self.ring_max)
            .field("newest_seq", &self.newest_seq())
            .finish_non_exhaustive()
    }
}

/// A place among the journal's clients, given back when dropped.
#[derive(Debug)]
pub struct ClientSlot<'a> {
    journal: &'a EventJournal,
}

impl Drop for ClientSlot<'_> {
    fn drop(&mut self) {
        self.journal.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An owned [`ClientSlot`], for a task that streams to one client.
#[derive(Debug)]
pub struct OwnedClientSlot {
    journal: std::sync::Arc<EventJournal>,
}

impl OwnedClientSlot {
    /// The journal this slot belongs to.
    pub fn journal(&self) -> &std::sync::Arc<EventJournal> {
        &self.journal
    }
}

impl Drop for OwnedClientSlot {
    fn drop(&mut self) {
        self.journal.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Unix milliseconds now (the driver's clock: the journal is not part of any sans-IO core).
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// `text` cut to at most `bytes_max` bytes on a character boundary.
fn cut(text: &str, bytes_max: usize) -> String {
    if text.len() <= bytes_max {
        return text.to_string();
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl EventJournal {
    /// An empty journal for node `node` keeping the newest `ring_max` events (at least 1) and
    /// serving at most `clients_max` streaming clients.
    pub fn new(node: NodeId, ring_max: usize, clients_max: usize) -> Self {
        let ring_max = ring_max.max(1);
        let (newest, _) = watch::channel(0);
        Self {
            node,
            ring_max,
            clients_max,
            ring: Mutex::new(Ring {
                frames: VecDeque::with_capacity(ring_max.min(1024)),
                bytes: 0,
                next_seq: 1,
            }),
            newest,
            clients: AtomicUsize::new(0),
            gaps: AtomicU64::new(0),
            started_at_ms: unix_now_ms(),
            failovers: Mutex::new(FailoverCursor::default()),
        }
    }

    /// The node whose events these are.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The most events kept.
    pub fn ring_max(&self) -> usize {
        self.ring_max
    }

    /// The seq of the newest event (0 before the first).
    pub fn newest_seq(&self) -> u64 {
        *self.newest.borrow()
    }

    /// The seq of the oldest event kept (the newest + 1 when the ring is empty).
    pub fn oldest_seq(&self) -> u64 {
        let ring = self.ring.lock();
        ring.frames.front().map_or(ring.next_seq, |frame| frame.seq)
    }

    /// Events kept now.
    pub fn len(&self) -> usize {
        self.ring.lock().frames.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.ring.lock().frames.is_empty()
    }

    /// Bytes of the frames kept now (the ring's payload; at most `ring_max` ×
    /// [`EVENT_BYTES_MAX`]).
    pub fn ring_bytes(&self) -> usize {
        self.ring.lock().bytes
    }

    /// Streaming clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// The most streaming clients served at once.
    pub fn clients_max(&self) -> usize {
        self.clients_max
    }

    /// Gap events sent so far (a client resumed too late or fell behind the ring).
    pub fn gaps_total(&self) -> u64 {
        self.gaps.load(Ordering::Relaxed)
    }

    /// Count one gap event sent.
    pub(crate) fn count_gap(&self) {
        self.gaps.fetch_add(1, Ordering::Relaxed);
    }

    /// A receiver that changes whenever an event is added (its value: the newest seq).
    pub fn watch_newest(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// Take a client place, or `None` when [`clients_max`](Self::clients_max) are connected.
    pub fn join(&self) -> Option<ClientSlot<'_>> {
        self.take_place().then(|| ClientSlot { journal: self })
    }

    /// [`join`](Self::join) for a task that outlives the borrow.
    pub fn join_owned(self: &std::sync::Arc<Self>) -> Option<OwnedClientSlot> {
        self.take_place().then(|| OwnedClientSlot {
            journal: std::sync::Arc::clone(self),
        })
    }

    fn take_place(&self) -> bool {
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |clients| {
                (clients < self.clients_max).then_some(clients + 1)
            })
            .is_ok()
    }

    /// The events after `cursor` (the last seq the reader got; 0 for none), concatenated up
    /// to about `bytes_max` bytes (always at least one frame when there is one).
    pub fn read_after(&self, cursor: u64, bytes_max: usize) -> JournalRead {
        let ring = self.ring.lock();
        let Some(oldest) = ring.frames.front().map(|frame| frame.seq) else {
            // Empty: everything before next_seq is gone (or never was, at the start).
            return if cursor + 1 < ring.next_seq {
                JournalRead::Gap {
                    missed: ring.next_seq - 1 - cursor,
                    resume_seq: ring.next_seq,
                }
            } else {
                JournalRead::Empty
            };
        };
        if cursor + 1 < oldest {
            return JournalRead::Gap {
                missed: oldest - 1 - cursor,
                resume_seq: oldest,
            };
        }
        // Seqs are consecutive, so the first frame after the cursor is at a known position.
        let start = usize::try_from(cursor + 1 - oldest).unwrap_or(usize::MAX);
        let mut text = String::new();
        let mut last_seq = cursor;
        for frame in ring.frames.iter().skip(start) {
            if !text.is_empty() && text.len() + frame.text.len() > bytes_max {
                break;
            }
            text.push_str(&frame.text);
            last_seq = frame.seq;
        }
        if text.is_empty() {
            JournalRead::Empty
        } else {
            JournalRead::Frames { text, last_seq }
        }
    }

    /// Journal one event of `kind` with `fields` (besides `seq`, `kind`, `at_ms` and `node`,
    /// which it adds unless `fields` has its own). Returns its seq.
    pub(crate) fn record(&self, kind: &str, mut fields: Map<String, Value>) -> u64 {
        let at_ms = unix_now_ms();
        let mut ring = self.ring.lock();
        let seq = ring.next_seq;
        fields.insert("seq".into(), json!(seq));
        fields.insert("kind".into(), json!(kind));
        fields.entry("at_ms").or_insert_with(|| json!(at_ms));
        fields
            .entry("node")
            .or_insert_with(|| json!(self.node.as_str()));
        let data = Value::Object(fields).to_string();
        let mut text = String::with_capacity(data.len() + kind.len() + 32);
        let _ = write!(text, "id: {seq}\nevent: {kind}\ndata: {data}\n\n");
        if text.len() > EVENT_BYTES_MAX {
            // Only free text can make an event this long, and it is cut before; never store
            // more than the bound all the same.
            tracing::warn!(
                kind,
                bytes = text.len(),
                "event too long; journaled without its fields"
            );
            text.clear();
            let _ = write!(
                text,
                "id: {seq}\nevent: {kind}\ndata: {}\n\n",
                json!({"seq": seq, "kind": kind, "at_ms": at_ms, "node": self.node.as_str(), "truncated": true})
            );
        }
        ring.next_seq += 1;
        ring.bytes += text.len();
        ring.frames.push_back(Frame {
            seq,
            text: text.into_boxed_str(),
        });
        while ring.frames.len() > self.ring_max {
            if let Some(dropped) = ring.frames.pop_front() {
                ring.bytes -= dropped.text.len();
            }
        }
        drop(ring);
        self.newest.send_replace(seq);
        seq
    }

    /// Journal a [`NodeEvent`]. Self-membership changes of gossip (`SelfActive`, ...) are not
    /// journaled: the `role` and `health` events say what matters about this node.
    pub(crate) fn record_node_event(&self, event: &NodeEvent, witness: bool) {
        let (kind, fields) = match event {
            NodeEvent::RoleChanged { role, term, leader } => (
                "role",
                json!({
                    "role": own_role(role.as_str(), witness),
                    "term": term.0,
                    "leader": leader.as_ref().map(NodeId::as_str),
                }),
            ),
            NodeEvent::Member(member) => {
                let (change, info) = match member {
                    MemberEvent::Up(info) => ("up", info),
                    MemberEvent::Updated(info) => ("updated", info),
                    MemberEvent::Left(info) => ("left", info),
                    MemberEvent::Unreachable(info) => ("down", info),
                    _ => return,
                };
                (
                    "member",
                    json!({
                        "member": info.id.as_str(),
                        "change": change,
                        "state": info.metadata.as_ref().map(|metadata| metadata.state),
                        "addr": info.gossip_addr.to_string(),
                    }),
                )
            }
            NodeEvent::HealthChanged(status) => ("health", json!({ "health": status })),
            NodeEvent::FollowerStalled { peer, reason } => (
                "follower",
                json!({
                    "change": "stalled",
                    "peer": peer.as_str(),
                    "reason": cut(reason, EVENT_TEXT_BYTES_MAX),
                }),
            ),
            NodeEvent::FollowerUnstalled { peer } => (
                "follower",
                json!({ "change": "unstalled", "peer": peer.as_str(), "reason": null }),
            ),
            // `node` here is the replica the finding is about (the contract's field); who
            // reported it is `reporter`, this node.
            NodeEvent::ReplicaDiverged { node, index } => (
                "consistency",
                json!({
                    "change": "diverged",
                    "node": node.as_str(),
                    "index": index.0,
                    "reporter": self.node.as_str(),
                }),
            ),
            NodeEvent::ReplicaRepaired { node, index } => (
                "consistency",
                json!({
                    "change": "repaired",
                    "node": node.as_str(),
                    "index": index.0,
                    "reporter": self.node.as_str(),
                }),
            ),
        };
        if let Value::Object(fields) = fields {
            self.record(kind, fields);
        }
    }

    /// Journal the failovers in `history` (the replica's applied failover records, oldest
    /// first) that are news: a term above every record seen before, won since this journal
    /// started. Called on every look at the replica's status; records already announced or
    /// older than the node are skipped, so each failover is announced once.
    pub(crate) fn observe_failovers<'a>(
        &self,
        history: impl IntoIterator<Item = &'a ha_replicate::replica::FailoverRecord>,
    ) {
        let mut cursor = self.failovers.lock();
        for record in history {
            if record.term.0 <= cursor.term {
                continue;
            }
            cursor.term = record.term.0;
            if record.at_ms < self.started_at_ms {
                continue;
            }
            let event = FailoverEvent::from(record);
            if let Ok(Value::Object(fields)) = serde_json::to_value(&event) {
                self.record("failover", fields);
            }
        }
    }

    /// Journal a lock grant, release or expiry this node applied.
    pub(crate) fn record_lock(&self, change: &str, name: &str, token: u64) {
        let mut fields = Map::new();
        fields.insert("change".into(), json!(change));
        fields.insert("name".into(), json!(cut(name, EVENT_TEXT_BYTES_MAX)));
        fields.insert("token".into(), json!(token));
        self.record("lock", fields);
    }

    /// The `hello` frame a client gets first: no `id:`, the node and its newest seq.
    pub fn hello_frame(&self) -> String {
        let data = json!({"kind": "hello", "node": self.node.as_str(), "seq": self.newest_seq()});
        format!("event: hello\ndata: {data}\n\n")
    }

    /// A `gap` frame (no `id:`): `missed` events are gone; the next is `resume_seq`. Its `seq`
    /// is `resume_seq - 1`, the position the reader is at after it.
    pub fn gap_frame(&self, missed: u64, resume_seq: u64) -> String {
        let data = json!({
            "kind": "gap",
            "seq": resume_seq.saturating_sub(1),
            "at_ms": unix_now_ms(),
            "node": self.node.as_str(),
            "missed": missed,
            "resume_seq": resume_seq,
        });
        format!("event: gap\ndata: {data}\n\n")
    }

    /// The journal's metrics in the Prometheus text format: `ha_events_clients`,
    /// `ha_events_gaps_total`, `ha_events_sequence`, `ha_events_ring_events`,
    /// `ha_events_ring_bytes`.
    pub fn metrics_text(&self) -> String {
        let (events, bytes) = {
            let ring = self.ring.lock();
            (ring.frames.len(), ring.bytes)
        };
        let mut text = crate::metrics::PrometheusText::default();
        text.single(
            "ha_events_clients",
            "gauge",
            "Clients streaming GET /v1/events from this node now.",
            self.clients() as f64,
        )
        .single(
            "ha_events_gaps_total",
            "counter",
            "Gap events this node sent: a client resumed older than the event ring holds or fell behind it.",
            self.gaps_total() as f64,
        )
        .single(
            "ha_events_sequence",
            "gauge",
            "The seq of this node's newest event (restarts from 1 when the node restarts).",
            self.newest_seq() as f64,
        )
        .single(
            "ha_events_ring_events",
            "gauge",
            "Events this node keeps for resuming clients (at most events_ring_max).",
            events as f64,
        )
        .single(
            "ha_events_ring_bytes",
            "gauge",
            "Bytes of the serialized events this node keeps for resuming clients.",
            bytes as f64,
        );
        text.finish()
    }
}

/// The writer task: every [`NodeEvent`] of the node into its journal, in order.
pub(crate) async fn run_event_journal(
    journal: std::sync::Arc<EventJournal>,
    witness: bool,
    mut events: tokio::sync::broadcast::Receiver<NodeEvent>,
) {
    loop {
        match events.recv().await {
            Ok(event) => journal.record_node_event(&event, witness),
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                // Cannot happen unless this task starves for EVENT_BUFFER events; say so.
                tracing::warn!(missed, "the event journal lagged behind the node's events");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// The health spelled as `/v1/health` does, for tests.
#[cfg(test)]
fn health_name(status: ha_core::HealthStatus) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use ha_core::{HealthStatus, LogIndex, Term};
    use ha_replicate::engine::Role;

    use super::*;

    fn journal(ring_max: usize) -> EventJournal {
        EventJournal::new(NodeId::new("n1").expect("literal id"), ring_max, 2)
    }

    fn data_of(frame: &str) -> Value {
        let line = frame
            .lines()
            .find_map(|line| line.strip_prefix("data: "))
            .expect("a data line");
        serde_json::from_str(line).expect("JSON data")
    }

    #[test]
    fn events_are_numbered_from_one_and_framed() {
        let journal = journal(8);
        journal.record_node_event(
            &NodeEvent::RoleChanged {
                role: Role::Leader,
                term: Term(3),
                leader: Some(NodeId::new("n1").expect("id")),
            },
            false,
        );
        journal.record_node_event(&NodeEvent::HealthChanged(HealthStatus::Degraded), false);
        let JournalRead::Frames { text, last_seq } = journal.read_after(0, 1 << 20) else {
            panic!("two frames expected");
        };
        assert_eq!(last_seq, 2);
        let frames: Vec<&str> = text.split_terminator("\n\n").collect();
        assert_eq!(frames.len(), 2);
        assert!(frames[0].starts_with("id: 1\nevent: role\ndata: "));
        let role = data_of(frames[0]);
        assert_eq!(role["seq"], 1);
        assert_eq!(role["kind"], "role");
        assert_eq!(role["role"], "leader");
        assert_eq!(role["term"], 3);
        assert_eq!(role["leader"], "n1");
        assert_eq!(role["node"], "n1");
        assert!(role["at_ms"].as_u64().is_some_and(|ms| ms > 0));
        let health = data_of(frames[1]);
        assert_eq!(health["health"], health_name(HealthStatus::Degraded));
        assert_eq!(journal.read_after(2, 1 << 20), JournalRead::Empty);
    }

    #[test]
    fn a_cursor_the_ring_passed_gets_a_gap_then_the_rest() {
        let journal = journal(3);
        for _ in 0..5 {
            journal.record_lock("granted", "jobs", 7);
        }
        assert_eq!(journal.len(), 3);
        assert_eq!(journal.oldest_seq(), 3);
        assert_eq!(
            journal.read_after(0, 1 << 20),
            JournalRead::Gap {
                missed: 2,
                resume_seq: 3
            }
        );
        let JournalRead::Frames { last_seq, .. } = journal.read_after(2, 1 << 20) else {
            panic!("frames after the gap");
        };
        assert_eq!(last_seq, 5);
        // A small chunk still carries one frame.
        let JournalRead::Frames { last_seq, .. } = journal.read_after(2, 1) else {
            panic!("one frame");
        };
        assert_eq!(last_seq, 3);
    }

    #[test]
    fn memory_is_bounded_by_the_ring_and_the_event_size() {
        let journal = journal(16);
        let long = "x".repeat(10_000);
        for _ in 0..1000 {
            journal.record_node_event(
                &NodeEvent::FollowerStalled {
                    peer: NodeId::new("n2").expect("id"),
                    reason: long.clone(),
                },
                false,
            );
            journal.record_lock("released", &long, u64::MAX);
        }
        assert_eq!(journal.len(), 16);
        assert!(journal.ring_bytes() <= 16 * EVENT_BYTES_MAX);
        assert_eq!(journal.newest_seq(), 2000);
    }

    #[test]
    fn clients_are_limited_and_slots_come_back() {
        let journal = journal(4);
        let first = journal.join().expect("first");
        let second = journal.join().expect("second");
        assert!(journal.join().is_none());
        drop(first);
        assert!(journal.join().is_some());
        drop(second);
        assert_eq!(journal.clients(), 0);
    }

    #[test]
    fn consistency_events_name_the_replica_and_the_reporter() {
        let journal = journal(4);
        journal.record_node_event(
            &NodeEvent::ReplicaDiverged {
                node: NodeId::new("n3").expect("id"),
                index: LogIndex(40),
            },
            false,
        );
        let JournalRead::Frames { text, .. } = journal.read_after(0, 1 << 20) else {
            panic!("a frame");
        };
        let data = data_of(&text);
        assert_eq!(data["kind"], "consistency");
        assert_eq!(data["change"], "diverged");
        assert_eq!(data["node"], "n3");
        assert_eq!(data["reporter"], "n1");
        assert_eq!(data["index"], 40);
    }

    #[test]
    fn hello_and_gap_frames_carry_no_id() {
        let journal = journal(4);
        journal.record_lock("granted", "a", 1);
        let hello = journal.hello_frame();
        assert!(hello.starts_with("event: hello\n"));
        assert_eq!(data_of(&hello)["seq"], 1);
        let gap = journal.gap_frame(5, 9);
        assert!(!gap.contains("id:"));
        let data = data_of(&gap);
        assert_eq!(
            (data["missed"].as_u64(), data["resume_seq"].as_u64()),
            (Some(5), Some(9))
        );
        assert_eq!(data["seq"], 8);
    }
}
