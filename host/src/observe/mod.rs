//! Watching a running pipeline: Prometheus metrics ([`metrics`]) and health endpoints, served
//! over HTTP ([`serve`]) when `--metrics-listen` (or `observability.metrics_listen`) asks for it.

pub mod metrics;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

pub use metrics::PipelineMetrics;

/// The OpenMetrics text format's media type (Prometheus scrapes it).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serve `/metrics`, `/healthz` and `/ready` on `listen` from a thread of its own, until the
/// process exits. Returns the address it listens on.
pub fn serve(listen: &str, metrics: Arc<PipelineMetrics>) -> std::io::Result<std::net::SocketAddr> {
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
