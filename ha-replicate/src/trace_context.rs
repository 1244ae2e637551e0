//! The W3C trace context a traced client request carries, from the node that took it to the
//! leader that appends it (issue 16, OpenTelemetry traces).
//!
//! A [`TraceParent`] is the `traceparent` header of the W3C Trace Context recommendation
//! (`00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>`), held parsed: 16 + 8 + 1
//! bytes, so it is bounded by construction and costs 25 bytes on the wire. It is always
//! compiled, whatever the `otel` feature says, so two nodes built with and without the feature
//! speak the same protocol; the feature only decides whether spans are made from it
//! (the `otel` module below).
//!
//! A follower passes a traced write to its leader in
//! [`Rpc::TracedForward`](crate::replica::Rpc::TracedForward), a new variant at the end of the enum: postcard
//! numbers variants by position, so every untraced message keeps today's encoding exactly,
//! and only a traced write, which only an `otel` build makes, needs a peer that knows the
//! variant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The length of a version-00 `traceparent` string.
pub const TRACEPARENT_LEN: usize = 55;

/// A W3C `traceparent`: which trace a request belongs to and which span is its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawTraceParent", into = "RawTraceParent")]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// Why a `traceparent` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TraceParentError {
    /// Not `00-<32 hex>-<16 hex>-<2 hex>` (lowercase), 55 characters.
    #[error("a traceparent is 00-<32 hex>-<16 hex>-<2 hex> (55 characters): {0}")]
    Malformed(String),
    /// The trace id or the parent span id is all zeros, which the recommendation forbids.
    #[error("a traceparent's trace id and span id must not be all zeros")]
    ZeroId,
}

impl TraceParent {
    /// A trace parent from its parts.
    ///
    /// # Errors
    /// [`TraceParentError::ZeroId`] when either id is all zeros.
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Result<Self, TraceParentError> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return Err(TraceParentError::ZeroId);
        }
        Ok(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// The 16-byte trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The 8-byte id of the parent span.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller sampled this trace (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex_lower(&self.trace_id),
            hex_lower(&self.span_id),
            self.flags
        )
    }
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    /// Parse a version-00 `traceparent`. Other versions are refused rather than guessed at:
    /// a caller then starts a new trace, which loses a link but never misattributes a span.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let malformed = || {
            let shown: String = text.chars().take(TRACEPARENT_LEN + 1).collect();
            TraceParentError::Malformed(format!("{shown:?}"))
        };
        if text.len() != TRACEPARENT_LEN {
            return Err(malformed());
        }
        let mut parts = text.split('-');
        let (Some("00"), Some(trace), Some(span), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed());
        };
        let trace_id = parse_hex::<16>(trace).ok_or_else(malformed)?;
        let span_id = parse_hex::<8>(span).ok_or_else(malformed)?;
        let [flags] = parse_hex::<1>(flags).ok_or_else(malformed)?;
        Self::new(trace_id, span_id, flags)
    }
}

/// The wire form, checked on the way in (no zero ids from a peer either).
#[derive(Serialize, Deserialize)]
struct RawTraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TryFrom<RawTraceParent> for TraceParent {
    type Error = TraceParentError;

    fn try_from(raw: RawTraceParent) -> Result<Self, Self::Error> {
        Self::new(raw.trace_id, raw.span_id, raw.flags)
    }
}

impl From<TraceParent> for RawTraceParent {
    fn from(parent: TraceParent) -> Self {
        Self {
            trace_id: parent.trace_id,
            span_id: parent.span_id,
            flags: parent.flags,
        }
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let nibble = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(bytes)
}

/// The trace context of the caller's current `tracing` span, if an OpenTelemetry layer
/// records it: what a [`ReplicaClient`](crate::driver::ReplicaClient) write carries. Always
/// `None` without the `otel` feature, so an untraced build sends only untraced requests.
pub fn current() -> Option<TraceParent> {
    #[cfg(feature = "otel")]
    {
        otel::of_span(&tracing::Span::current())
    }
    #[cfg(not(feature = "otel"))]
    {
        None
    }
}

/// The bridge to OpenTelemetry (feature `otel`): a span's context as a [`TraceParent`], and
/// a span whose parent is a [`TraceParent`] that came over the wire.
#[cfg(feature = "otel")]
pub mod otel {
    use opentelemetry::Context;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceParent;

    /// The OpenTelemetry context of `span` as a trace parent; `None` when no OpenTelemetry
    /// layer records the span (no subscriber, a filtered span, or no layer installed).
    pub fn of_span(span: &tracing::Span) -> Option<TraceParent> {
        if span.is_none() {
            return None;
        }
        let context = span.context();
        let span_ref = context.span();
        let span_context = span_ref.span_context();
        if !span_context.is_valid() {
            return None;
        }
        TraceParent::new(
            span_context.trace_id().to_bytes(),
            span_context.span_id().to_bytes(),
            span_context.trace_flags().to_u8(),
        )
        .ok()
    }

    /// `parent` as a remote OpenTelemetry context, to hang a span under.
    pub fn context_of(parent: &TraceParent) -> Context {
        let span_context = SpanContext::new(
            TraceId::from_bytes(parent.trace_id()),
            SpanId::from_bytes(parent.span_id()),
            TraceFlags::new(parent.flags()),
            true,
            TraceState::default(),
        );
        Context::new().with_remote_span_context(span_context)
    }

    /// Make `span` a child of the remote `parent`. Must come before anything reads the span's
    /// context (its OpenTelemetry span is built then). Without an OpenTelemetry layer this
    /// does nothing.
    pub fn set_remote_parent(span: &tracing::Span, parent: &TraceParent) {
        // LayerNotFound (no OpenTelemetry layer) and AlreadyStarted leave the span as it was:
        // a span we cannot link is still worth having in the local trace.
        let _ = span.set_parent(context_of(parent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_round_trips_through_text_and_postcard() {
        let parent: TraceParent = SAMPLE.parse().expect("valid");
        assert_eq!(parent.to_string(), SAMPLE);
        assert!(parent.sampled());
        let bytes = postcard::to_allocvec(&parent).expect("encodes");
        assert_eq!(bytes.len(), 25, "16 + 8 + 1 bytes, no length prefixes");
        let back: TraceParent = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(back, parent);
    }

    #[test]
    fn malformed_or_zero_traceparents_are_refused() {
        for text in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        ] {
            assert!(
                matches!(
                    text.parse::<TraceParent>(),
                    Err(TraceParentError::Malformed(_))
                ),
                "{text:?}"
            );
        }
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert_eq!(
            zero_trace.parse::<TraceParent>(),
            Err(TraceParentError::ZeroId)
        );
        let long = "0".repeat(10_000);
        let Err(TraceParentError::Malformed(shown)) = long.parse::<TraceParent>() else {
            panic!("refused");
        };
        assert!(shown.len() < 100, "the error quotes a bounded prefix");
    }

    #[test]
    fn a_peer_cannot_send_a_zero_id() {
        let raw = RawTraceParent {
            trace_id: [0; 16],
            span_id: [1; 8],
            flags: 0,
        };
        let bytes = postcard::to_allocvec(&raw).expect("encodes");
        assert!(postcard::from_bytes::<TraceParent>(&bytes).is_err());
    }
}
