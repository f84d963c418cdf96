//! Watching a running pipeline: Prometheus metrics ([`metrics`]) and health endpoints, served
//! over HTTP ([`serve`]) when `--metrics-listen` (or `observability.metrics_listen`) asks for it.

pub mod metrics;
pub mod status;
pub mod tap;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use metrics::PipelineMetrics;
pub use tap::Taps;

use crate::plugin::batch::Record;

/// One edge of a pipeline's DAG as observers see it: a source's records, or a processor's output
/// port, with the schema its values are datums of.
#[derive(Debug, Clone)]
pub struct Edge {
    /// `movies` (a source), `recent` and `recent.out` (a processor's first port), `enrich.matched`.
    pub names: Vec<String>,
    pub schema: Arc<meshhost_avro::Schema>,
}

/// The nodes of a pipeline, by index, for the labels of its metrics.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Source ids.
    pub sources: Vec<String>,
    /// Per processor: its id, its input port count and its output port names.
    pub processors: Vec<(String, usize, Vec<String>)>,
    /// Sink ids.
    pub sinks: Vec<String>,
}

/// Watches records cross the DAG's edges (`meshhost tap`, `--dry-run`). Edges are numbered as
/// `Topology::edges` lists them; values are Avro datums of the edge's schema.
pub trait EdgeObserver: Send + Sync {
    /// Whether records of `edge` are wanted now (asked per record: keep it cheap).
    fn wants(&self, edge: usize) -> bool;
    /// One record crossing `edge`.
    fn record(&self, edge: usize, record: &Record);
}

/// Records counted per node since the executor was built (what `/metrics` reports).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExecutorCounts {
    /// Per source: records read (tombstones included).
    pub source_received: Vec<u64>,
    /// Per processor, per input port: records handed to it.
    pub processor_received: Vec<Vec<u64>>,
    /// Per processor, per output port: records it emitted that passed the output checks.
    pub processor_sent: Vec<Vec<u64>>,
    /// Per processor: input records it neither emitted from nor failed (a filter's drops).
    pub processor_discarded: Vec<u64>,
    /// Per processor: calls that trapped (each rebuilds the instance).
    pub processor_traps: Vec<u64>,
    /// Per processor: seconds spent in `process` calls.
    pub processor_call_seconds: Vec<f64>,
    /// Per sink: records handed to it, encoded.
    pub sink_received: Vec<u64>,
}

/// The OpenMetrics text format's media type (Prometheus scrapes it).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serve `/metrics`, `/healthz`, `/ready` and `/tap/{edge}?max=N&seconds=S` on `listen` from a
/// thread of its own, until the process exits. Returns the address it listens on.
pub fn serve(listen: &str, metrics: Arc<PipelineMetrics>, taps: Arc<Taps>) -> std::io::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(listen)?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let router = Router::new()
        .route(
            "/metrics",
            get({
                let metrics = metrics.clone();
                move || async move { ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.encode()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/tap/{edge}",
            get(move |Path(edge): Path<String>, Query(params): Query<HashMap<String, String>>| async move {
                let max = params.get("max").and_then(|m| m.parse().ok()).unwrap_or(10usize);
                let seconds = params.get("seconds").and_then(|s| s.parse().ok()).unwrap_or(10.0f64);
                let receiver = match taps.subscribe(&edge) {
                    Ok(receiver) => receiver,
                    Err(message) => return (StatusCode::NOT_FOUND, format!("{message}\n")).into_response(),
                };
                let lines = tokio::task::spawn_blocking(move || {
                    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
                    let mut lines = String::new();
                    for _ in 0..max {
                        match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                            Ok(line) => {
                                lines.push_str(&line);
                                lines.push('\n');
                            }
                            Err(_) => break,
                        }
                    }
                    lines
                })
                .await
                .unwrap_or_default();
                ([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response()
            }),
        )
        .route(
            "/ready",
            get(move || async move {
                match metrics.is_ready() {
                    true => (StatusCode::OK, "ready\n").into_response(),
                    false => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
                }
            }),
        );
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    if let Err(error) = axum::serve(listener, router).await {
                        tracing::error!("metrics listener stopped: {error}");
                    }
                }
                Err(error) => tracing::error!("metrics listener: {error}"),
            }
        })
    })?;
    Ok(address)
}
