//! The spans of traced writes in the driver (issue 16): `ha.forward` on the node that passes
//! a write to its leader, and `ha.propose` with its children `ha.append`, `ha.replicate` and
//! `ha.apply` on the leader.
//!
//! Only a write that carries a [`TraceParent`] is traced; with none in flight every hook is a
//! check of an empty map. The core stays sans-IO and knows nothing of traces: the driver
//! watches what it already sees (the inputs it hands the core, the effects it carries out,
//! the engine's indexes after each round), so a span's edges are where the driver observes
//! the core, to within one input's handling:
//!
//! - `ha.forward`: the core emits `Rpc::Forward` for a traced local write; the driver opens
//!   the span, sends `Rpc::TracedForward` with the span's context instead, and closes it when
//!   the request is answered.
//! - `ha.propose`: a traced write reaches this node while it leads (a local submit) or comes
//!   in as `Rpc::TracedForward` (its parent is the follower's `ha.forward`, taken from the
//!   RPC); it ends once the answer has left and the entry has been applied here.
//! - `ha.append`: from the proposal until the leader's log is durable through the entry
//!   (its group-commit sync).
//! - `ha.replicate`: from the proposal until the entry commits (a majority holds it).
//! - `ha.apply`: from the commit until this leader has applied the entry.
//!
//! Each span has a `node` attribute (this node's id). Everything is bounded by
//! [`TRACED_REQUESTS_MAX`]: past it a write goes untraced rather than make the node hold more.

use std::collections::BTreeMap;

use ha_core::{LogIndex, NodeId, SessionId};
use tracing::Span;

use crate::engine::{Engine, Role};
use crate::replica::{ClientRequest, Rpc};
use crate::trace_context::TraceParent;

/// Traced requests followed at once, per kind (local, proposed, appended); more go untraced.
pub const TRACED_REQUESTS_MAX: usize = 1_024;

/// Whose request a `ha.propose` span belongs to, as the core answers it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TracedOrigin {
    /// A request submitted on this node, by request id.
    Local(u64),
    /// A request forwarded by `node`, by its forward id.
    Remote(NodeId, u64),
}

/// A traced write submitted on this node.
struct LocalTrace {
    parent: TraceParent,
    /// The write's session and sequence: what identifies it in the `Rpc::Forward` the core
    /// emits (which carries no request id).
    write: (SessionId, u64),
    forward: Option<Span>,
}

/// An entry this leader appended for a traced write.
struct EntryTrace {
    /// Held so the proposal's span lasts until the entry is applied.
    propose: Span,
    append: Option<Span>,
    replicate: Option<Span>,
    apply: Option<Span>,
}

/// The driver's traced requests and their open spans.
pub(crate) struct RequestTraces {
    node: String,
    local: BTreeMap<u64, LocalTrace>,
    proposes: BTreeMap<TracedOrigin, Span>,
    entries: BTreeMap<LogIndex, EntryTrace>,
}

impl RequestTraces {
    /// No traced request yet, on node `node`.
    pub(crate) fn new(node: &NodeId) -> Self {
        Self {
            node: node.to_string(),
            local: BTreeMap::new(),
            proposes: BTreeMap::new(),
            entries: BTreeMap::new(),
        }
    }

    /// A request submitted on this node, before the core takes it: a traced write is
    /// remembered, and if this node leads its `ha.propose` span opens. Returns the origin to
    /// pass to [`after_input`](Self::after_input) when a proposal span opened.
    pub(crate) fn on_submit(
        &mut self,
        request_id: u64,
        request: &ClientRequest,
        trace: Option<TraceParent>,
        engine: &Engine,
    ) -> Option<TracedOrigin> {
        let (Some(parent), ClientRequest::Write(write)) = (trace, request) else {
            return None;
        };
        if self.local.len() >= TRACED_REQUESTS_MAX {
            return None;
        }
        self.local.insert(
            request_id,
            LocalTrace {
                parent,
                write: (write.session, write.sequence),
                forward: None,
            },
        );
        (engine.role() == Role::Leader)
            .then(|| self.open_propose(TracedOrigin::Local(request_id), &parent))
            .flatten()
    }

    /// A message from a peer, before the core takes it: a traced forward opens `ha.propose`
    /// under the follower's `ha.forward`, whose context came in the RPC.
    pub(crate) fn on_inbound(&mut self, from: &NodeId, rpc: &Rpc) -> Option<TracedOrigin> {
        let Rpc::TracedForward {
            forward_id,
            request: ClientRequest::Write(_),
            trace,
        } = rpc
        else {
            return None;
        };
        self.open_propose(TracedOrigin::Remote(from.clone(), *forward_id), trace)
    }

    /// After the core took the input that opened `origin`'s proposal: if the log grew, the
    /// write was appended at the new last index (a leader appends one entry per write), and
    /// its append, replicate spans open.
    pub(crate) fn after_input(
        &mut self,
        origin: &TracedOrigin,
        last_before: LogIndex,
        engine: &Engine,
    ) {
        let index = engine.last_index();
        if index <= last_before || self.entries.len() >= TRACED_REQUESTS_MAX {
            return;
        }
        let Some(propose) = self.proposes.get(origin) else {
            return;
        };
        let node = self.node.as_str();
        let append = tracing::info_span!(parent: propose, "ha.append", node, index = index.0);
        let replicate = tracing::info_span!(parent: propose, "ha.replicate", node, index = index.0);
        self.entries.insert(
            index,
            EntryTrace {
                propose: propose.clone(),
                append: Some(append),
                replicate: Some(replicate),
                apply: None,
            },
        );
    }

    /// An effect's message about to be sent to `to`: a forward of a traced local write leaves
    /// as `Rpc::TracedForward` under a new `ha.forward` span; an answer to a traced forward
    /// ends its `ha.propose` (once the entry is applied, when there is one).
    pub(crate) fn on_send(&mut self, to: &NodeId, rpc: Rpc) -> Rpc {
        match rpc {
            Rpc::Forward {
                forward_id,
                request: ClientRequest::Write(write),
            } if !self.local.is_empty() => {
                let key = (write.session, write.sequence);
                let node = self.node.as_str();
                let traced = self
                    .local
                    .values_mut()
                    .find(|local| local.write == key && local.forward.is_none());
                let request = ClientRequest::Write(write);
                let Some(local) = traced else {
                    return Rpc::Forward {
                        forward_id,
                        request,
                    };
                };
                let span = tracing::info_span!(
                    parent: None,
                    "ha.forward",
                    node,
                    leader = %to,
                    forward_id,
                    otel.kind = "client"
                );
                #[cfg(feature = "otel")]
                crate::trace_context::otel::set_remote_parent(&span, &local.parent);
                let trace = span_context(&span).unwrap_or(local.parent);
                local.forward = Some(span);
                Rpc::TracedForward {
                    forward_id,
                    request,
                    trace,
                }
            }
            Rpc::ForwardReply { forward_id, reply } => {
                if !self.proposes.is_empty() {
                    self.proposes
                        .remove(&TracedOrigin::Remote(to.clone(), forward_id));
                }
                Rpc::ForwardReply { forward_id, reply }
            }
            rpc => rpc,
        }
    }

    /// A local request was answered: its spans end.
    /// Whether a traced entry's spans are open: their ends wait for the replica to see the
    /// entries applied, so it must see every report of the apply thread at once.
    pub(crate) fn has_open_entries(&self) -> bool {
        !self.entries.is_empty()
    }

    pub(crate) fn on_reply(&mut self, request_id: u64) {
        if !self.local.is_empty() {
            self.local.remove(&request_id);
        }
        if !self.proposes.is_empty() {
            self.proposes.remove(&TracedOrigin::Local(request_id));
        }
    }

    /// After a round (inputs, effects, the group-commit sync): end the spans of entries that
    /// became durable, committed or applied. A node that does not lead ends every proposal
    /// span still open (a new leader may overwrite the entries; an answer that never comes
    /// must not hold a span, nor a place under the limit, forever).
    pub(crate) fn after_round(&mut self, engine: &Engine, applied: LogIndex) {
        if self.entries.is_empty() && self.proposes.is_empty() {
            return;
        }
        if engine.role() != Role::Leader {
            self.entries.clear();
            self.proposes.clear();
            return;
        }
        let durable = engine.durable_index();
        let committed = engine.commit_index();
        let node = self.node.as_str();
        self.entries.retain(|index, entry| {
            if *index <= durable {
                entry.append = None;
            }
            if *index <= committed && entry.replicate.take().is_some() {
                entry.apply = Some(tracing::info_span!(
                    parent: &entry.propose,
                    "ha.apply",
                    node,
                    index = index.0
                ));
            }
            let applied = *index <= applied && entry.replicate.is_none();
            if applied {
                entry.apply = None;
            }
            !(applied && entry.append.is_none())
        });
    }

    /// Open `ha.propose` for `origin` under `parent`, unless at the limit.
    fn open_propose(&mut self, origin: TracedOrigin, parent: &TraceParent) -> Option<TracedOrigin> {
        if self.proposes.len() >= TRACED_REQUESTS_MAX {
            return None;
        }
        let node = self.node.as_str();
        let span = tracing::info_span!(parent: None, "ha.propose", node, otel.kind = "server");
        #[cfg(feature = "otel")]
        crate::trace_context::otel::set_remote_parent(&span, parent);
        #[cfg(not(feature = "otel"))]
        let _ = parent;
        self.proposes.insert(origin.clone(), span);
        Some(origin)
    }
}

/// The trace context of a span this driver opened, to carry in an RPC.
fn span_context(span: &Span) -> Option<TraceParent> {
    #[cfg(feature = "otel")]
    {
        crate::trace_context::otel::of_span(span)
    }
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}
