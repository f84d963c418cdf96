//! `meshhost catalog serve`: meshhost's Schema Registry and sources catalog, kept in a Kafka topic.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Subcommand;

use super::common::CliError;

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Serve the Schema Registry API until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
        /// The compacted topic the catalog lives in (created if missing).
        #[arg(long, default_value = crate::catalog::log::DEFAULT_TOPIC)]
        topic: String,
    },
}

/// Run a `meshhost catalog` subcommand.
pub fn execute(command: CatalogCommand) -> Result<(), CliError> {
    match command {
        CatalogCommand::Serve { listen, bootstrap_servers, topic } => {
            serve_catalog(&listen, &bootstrap_servers, &topic)
        }
    }
}

/// `meshhost catalog serve`: read the catalog topic to its end, then answer until a signal.
fn serve_catalog(listen: &str, bootstrap_servers: &str, topic: &str) -> Result<(), CliError> {
    let store = crate::catalog::CatalogStore::open(bootstrap_servers, topic)
        .with_context(|| format!("cannot open the catalog on {bootstrap_servers}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let address = listener.local_addr().context("no local address")?;
        tracing::info!(
            "catalog: serving the Schema Registry API on http://{address} (topic {topic} on {bootstrap_servers})"
        );
        let shutdown = async {
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("cannot install the SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        crate::catalog::http::serve(listener, Arc::new(store), shutdown).await.context("the catalog server failed")
    })?;
    Ok(())
}
