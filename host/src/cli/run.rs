//! `meshhost run`: run a pipeline until a signal (or `--dry-run` a sample through it).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context as _;

use super::common::{configure, json_logs, load_and_plan, run_settings, CliError, Overrides};
use crate::config::Problems;
use crate::plugin::PluginEngine;
use crate::topology::run::RunError;

/// The arguments of `meshhost run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Kafka bootstrap servers, overriding the file (also MESHHOST_BOOTSTRAP_SERVERS).
    #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Plugin registry directory, overriding the file.
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Where stateful processors keep local state, overriding the file's `state_dir`.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// A stable name of this instance among the pipeline's instances (Kafka static
    /// membership: a restart within the session timeout keeps its partitions, no rebalance).
    #[arg(long, env = "MESHHOST_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Schema Registry URL, overriding the file's `schema_registry.url`.
    #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
    pub schema_registry: Option<String>,
    /// Sources catalog URL, overriding the file's `catalog.url`.
    #[arg(long, env = "MESHHOST_CATALOG_URL")]
    pub catalog: Option<String>,
    /// Serve Prometheus metrics (/metrics) and health (/healthz, /ready) on this address,
    /// overriding the file's `observability.metrics_listen`.
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// Run the last records of each source partition (--from-end) through the pipeline and
    /// print what every edge and sink would get, and the dead letters; produce and commit
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: how many records per partition, from the end.
    #[arg(long, default_value_t = 10, requires = "dry_run")]
    pub from_end: i64,
}

pub fn execute(args: RunArgs) -> Result<(), CliError> {
    let RunArgs {
        pipeline,
        bootstrap_servers,
        registry,
        state_dir,
        instance_id,
        schema_registry,
        catalog,
        metrics_listen,
        dry_run,
        from_end,
    } = args;
    let engine = PluginEngine::new()?;
    let overrides = Overrides { registry, schema_registry, catalog, offline: false };
    // A database that cannot be used (down, wrong password, table missing) is a runtime
    // failure (exit 1), told before planning reports it as a problem of the file.
    if let Ok((config, _)) = configure(&pipeline, Overrides::default()) {
        crate::source::postgres::check_databases(&config)
            .map_err(|message| CliError::Failed(anyhow::anyhow!(message)))?;
    }
    let (config, topology) = load_and_plan(&pipeline, overrides, &engine)?;
    let mut settings = run_settings(&config, bootstrap_servers);
    if let Some(state_dir) = state_dir {
        settings.state_dir = state_dir;
    }
    settings.instance_id = instance_id;
    if metrics_listen.is_some() {
        settings.metrics_listen = metrics_listen;
    }
    if dry_run && topology.sources.iter().any(|s| s.postgres.is_some()) {
        return Err(CliError::Invalid(Problems::one(
            "sources",
            "run --dry-run reads Kafka sources only; a captured table has no sample to read without taking a slot",
        )));
    }
    if dry_run {
        let mut out = std::io::stdout().lock();
        let summary = crate::topology::dry_run::dry_run(topology, &settings.bootstrap_servers, from_end, &mut out)
            .context("dry run")?;
        let edges: Vec<String> = summary.edges.iter().map(|(e, n)| format!("{e} {n}")).collect();
        let sinks: Vec<String> = summary.sinks.iter().map(|(s, n)| format!("{s} {n}")).collect();
        eprintln!(
                    "dry run: {} records read (the last {from_end} of each partition); edges: {}; sinks: {}; dead letters: {}; nothing produced or committed",
                    summary.read,
                    edges.join(", "),
                    sinks.join(", "),
                    summary.dead_letters
                );
        return Ok(());
    }
    settings.status_line = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !json_logs();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("cannot install signal handlers")?;
    }
    crate::topology::run::run(topology, &settings, &stop).map_err(|error| match error {
        RunError::Invalid(problems) => CliError::Invalid(problems),
        error => CliError::Failed(error.into()),
    })?;
    Ok(())
}
