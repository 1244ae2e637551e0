//! OpenTelemetry traces of writes (issue 16, feature `otel`).
//!
//! A write sent to a node's admin API opens `ha.http.write` (under the caller's `traceparent`
//! header when it sends one); the replica client carries that span's W3C trace context with
//! the request; a follower's driver opens `ha.forward` and passes the context to the leader
//! inside the forwarded RPC (`Rpc::TracedForward`), where `ha.propose`, `ha.append`,
//! `ha.replicate` and `ha.apply` join the same trace
//! ([`ha_replicate::trace_context`], `ha-replicate/src/driver/request_traces.rs`).
//!
//! Spans are `tracing` spans; a host that wants them in an OpenTelemetry backend installs the
//! layer this module builds ([`Telemetry::layer`]) in its subscriber. A library does not
//! install a global subscriber itself: the host owns that choice (the `bot` does it when run
//! with an OTLP endpoint). With no OpenTelemetry layer installed no trace context exists, so
//! requests go untraced and the driver makes no span.

use std::time::Duration;

/// The OpenTelemetry crates this module is built on, re-exported so a host (or a test) uses
/// the very versions the spans are made with.
pub use {opentelemetry, opentelemetry_sdk, tracing_opentelemetry};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanExporter};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

/// The standard environment variable naming the OTLP collector's base URL (the exporter
/// appends `/v1/traces`), read when no endpoint is configured.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How long one export to the collector may take before it is dropped.
pub const OTLP_EXPORT_TIMEOUT_MS_MAX: u64 = 5_000;

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The OTLP endpoint is not an `http://` URL this build can export to.
    #[error(
        "OTLP endpoint {endpoint:?}: {reason} (expected http://HOST:PORT, usually a collector on the same host at http://127.0.0.1:4318)"
    )]
    BadEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The exporter could not be built or flushed.
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(String),
}

/// An OpenTelemetry tracer provider for this process: build it once, install
/// [`layer`](Self::layer) in the `tracing` subscriber, and [`shutdown`](Self::shutdown) at
/// exit to flush the spans still queued.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Export over OTLP/HTTP (protobuf) to `otlp_endpoint`, or else to the URL in
    /// [`OTLP_ENDPOINT_ENV`]; `None` when neither is set (tracing is not configured).
    /// Spans are batched on the SDK's own thread, so exporting never blocks a node's tasks; a
    /// collector that is down costs dropped spans, never a slower write.
    ///
    /// Only `http://` endpoints: the exporter is built without a TLS stack to keep the build
    /// small; run the collector next to the node (the usual agent or sidecar).
    ///
    /// # Errors
    /// [`TelemetryError`] when the endpoint is malformed or the exporter cannot be built.
    pub fn from_endpoint(
        otlp_endpoint: Option<&str>,
        service_name: &str,
    ) -> Result<Option<Self>, TelemetryError> {
        let from_env = std::env::var(OTLP_ENDPOINT_ENV).ok();
        let Some(endpoint) = otlp_endpoint
            .or(from_env.as_deref())
            .map(str::trim)
            .filter(|endpoint| !endpoint.is_empty())
        else {
            return Ok(None);
        };
        let url = traces_url(endpoint)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_timeout(Duration::from_millis(OTLP_EXPORT_TIMEOUT_MS_MAX))
            .build()
            .map_err(|error| TelemetryError::Exporter(error.to_string()))?;
        Ok(Some(Self::with_batch_exporter(exporter, service_name)))
    }

    /// Export to `exporter` in batches (an OTLP exporter, or a test's in-memory one).
    pub fn with_batch_exporter(exporter: impl SpanExporter + 'static, service_name: &str) -> Self {
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_string())
                    .build(),
            )
            .with_batch_exporter(exporter)
            .build();
        Self { provider }
    }

    /// Export to `exporter` as each span ends, on the thread that ends it: for tests, where
    /// spans must be there as soon as the request is answered.
    pub fn with_simple_exporter(exporter: impl SpanExporter + 'static, service_name: &str) -> Self {
        let provider = SdkTracerProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_string())
                    .build(),
            )
            .with_simple_exporter(exporter)
            .build();
        Self { provider }
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans of this provider.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("ha"))
    }

    /// Export what is queued now.
    ///
    /// # Errors
    /// [`TelemetryError::Exporter`] when the exporter fails.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        self.provider
            .force_flush()
            .map_err(|error| TelemetryError::Exporter(error.to_string()))
    }

    /// Flush and stop exporting (at process exit).
    ///
    /// # Errors
    /// [`TelemetryError::Exporter`] when the exporter fails.
    pub fn shutdown(&self) -> Result<(), TelemetryError> {
        self.provider
            .shutdown()
            .map_err(|error| TelemetryError::Exporter(error.to_string()))
    }
}

/// The collector's traces URL: `endpoint` is a base URL (like the standard variable), so
/// `/v1/traces` is appended unless it is there already.
fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let bad = |reason: &str| TelemetryError::BadEndpoint {
        endpoint: endpoint.chars().take(200).collect(),
        reason: reason.to_string(),
    };
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(bad("only http:// is supported by this build"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("no host"));
    }
    if endpoint.len() > 2_048 || endpoint.chars().any(char::is_whitespace) {
        return Err(bad("not a URL"));
    }
    let base = endpoint.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_string()
    } else {
        format!("{base}/v1/traces")
    })
}

/// The `ha.http.write` span of a write through the admin API, under the caller's W3C
/// `traceparent` header when it sends a valid one (a malformed one starts a new trace).
#[cfg(feature = "http")]
pub(crate) fn http_write_span(
    node: &ha_core::NodeId,
    route: &'static str,
    headers: &axum::http::HeaderMap,
) -> tracing::Span {
    let span = tracing::info_span!("ha.http.write", node = %node, route, otel.kind = "server");
    let parent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| {
            text.parse::<ha_replicate::trace_context::TraceParent>()
                .ok()
        });
    if let Some(parent) = parent {
        ha_replicate::trace_context::otel::set_remote_parent(&span, &parent);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_traces_urls_or_clear_errors() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces").unwrap(),
            "http://collector:4318/v1/traces"
        );
        for bad in [
            "https://collector:4318",
            "collector:4318",
            "http://",
            "http://a b",
        ] {
            let error = traces_url(bad).unwrap_err().to_string();
            assert!(
                error.contains("expected http://HOST:PORT"),
                "{bad}: {error}"
            );
        }
    }
}
