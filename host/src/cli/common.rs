//! What the verbs share: reading a pipeline file with the command line's overrides, planning
//! it, the settings of a run, and the error that decides the exit code.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::config::{PipelineConfig, Problems};
use crate::plugin::PluginEngine;
use crate::registry::PluginResolver;
use crate::topology::run::RunSettings;
use crate::topology::Topology;

/// Why a command failed, which decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Invalid(#[from] Problems),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<crate::plugin::PluginError> for CliError {
    fn from(error: crate::plugin::PluginError) -> Self {
        CliError::Failed(error.into())
    }
}

/// Whether logs are JSON lines (`MESHHOST_LOG_FORMAT=json`).
pub fn json_logs() -> bool {
    std::env::var("MESHHOST_LOG_FORMAT").is_ok_and(|f| f == "json")
}

/// Command-line settings that win over the pipeline file's.
#[derive(Debug, Default)]
pub struct Overrides {
    /// The plugin registry directory.
    pub registry: Option<PathBuf>,
    /// The Schema Registry URL.
    pub schema_registry: Option<String>,
    /// The sources catalog URL.
    pub catalog: Option<String>,
    /// A command that only looks at the pipeline (validate, graph): an unreachable Schema
    /// Registry is retried for seconds, not the run's minute.
    pub offline: bool,
}

/// How long commands that only look at a pipeline retry an unreachable Schema Registry.
const OFFLINE_REGISTRY_RETRY_SECONDS: u64 = 5;

/// Check the pipeline file and plan its topology, reporting the problems of both together.
pub fn load_and_plan(
    pipeline: &Path,
    overrides: Overrides,
    engine: &PluginEngine,
) -> Result<(PipelineConfig, Topology), CliError> {
    let (config, mut problems) = configure(pipeline, overrides)?;
    let plugins = match PluginResolver::for_pipeline(pipeline, config.registry.clone()) {
        Ok(plugins) => plugins,
        Err(error) => {
            problems.push("", error.to_string());
            PluginResolver::unlocked(config.registry.clone())
        }
    };
    match crate::topology::plan(&config, engine, &plugins) {
        Ok(topology) if problems.is_empty() => Ok((config, topology)),
        Ok(_) => Err(problems.into()),
        Err(more) => {
            problems.0.extend(more.0);
            Err(problems.into())
        }
    }
}

/// Read the pipeline file, apply the command line's overrides and fill in catalog sources: the
/// config and the problems found so far (`Err` when the file cannot be read at all).
pub fn configure(pipeline: &Path, overrides: Overrides) -> Result<(PipelineConfig, Problems), CliError> {
    let (config, mut problems) = PipelineConfig::load_partial(pipeline);
    let Some(mut config) = config else { return Err(problems.into()) };
    if overrides.registry.is_some() {
        config.registry = overrides.registry;
    }
    if let Some(url) = overrides.schema_registry {
        match &mut config.schema_registry {
            Some(section) => section.url = url,
            None => config.schema_registry = Some(crate::config::SchemaRegistryConfig::with_url(url)),
        }
    }
    if let Some(url) = overrides.catalog {
        config.set_catalog(url);
    }
    if let (Some(section), true) = (&mut config.schema_registry, overrides.offline) {
        section.retry_seconds = Some(section.retry_seconds.unwrap_or(u64::MAX).min(OFFLINE_REGISTRY_RETRY_SECONDS));
    }
    crate::topology::schema_registry::resolve_catalog_sources(&mut config, &mut problems);
    Ok((config, problems))
}

pub fn read_schema(path: &Path) -> Result<meshhost_avro::Schema, CliError> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    meshhost_avro::Schema::parse(&text)
        .map_err(|e| CliError::Invalid(Problems::one("", format!("{}: {e}", path.display()))))
}

/// Kafka settings of a run: the flag (or environment) wins over the file.
pub fn run_settings(config: &PipelineConfig, bootstrap_servers: Option<String>) -> RunSettings {
    RunSettings {
        pipeline: config.name.clone(),
        status_line: false,
        metrics_listen: config.observability.as_ref().and_then(|o| o.metrics_listen.clone()),
        bootstrap_servers: bootstrap_servers
            .or_else(|| config.kafka.bootstrap_servers.clone())
            .unwrap_or_else(|| "127.0.0.1:9092".to_string()),
        group_id: config.group_id(),
        batch_size: config.kafka.batch_size.unwrap_or(1024).max(1),
        properties: config.kafka.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        dead_letter_topic: config.dead_letter.as_ref().map(|d| d.topic.clone()),
        instance_id: None,
        // Checked when the file was loaded.
        failure_rate_limit: config.dead_letter.as_ref().and_then(|d| d.failure_rate_limit().ok().flatten()),
        state_dir: config.state_dir(),
    }
}

/// `validate` registers nothing, but when the Schema Registry answers it asks whether the
/// `confluent-avro` sinks' schemas could be registered.
pub fn check_sink_schemas_online(topology: &Topology) -> Result<(), CliError> {
    match topology.check_sink_schemas() {
        Ok(problems) => problems.into_result(()).map_err(CliError::Invalid),
        Err(error) => {
            eprintln!("note: the schemas of confluent-avro sinks not checked: {error}");
            Ok(())
        }
    }
}

/// `validate` is offline, but when a sink's database answers it checks that the table takes
/// the sink's records (or that `create: true` would make it so).
pub fn check_tables_online(topology: &Topology) -> Result<(), CliError> {
    let mut problems = crate::config::Problems::default();
    for sink in &topology.sinks {
        let Some(config) = &sink.postgres else { continue };
        match crate::sink::postgres::check_table(&sink.id, config, &sink.schema.parsed) {
            Ok(Some(_)) => {}
            Ok(None) => eprintln!("note: the table of sink {} not checked: its database does not answer", sink.id),
            Err(error) => problems.push(&format!("sinks.{}.postgres", sink.id), error.to_string()),
        }
    }
    problems.into_result(()).map_err(CliError::Invalid)
}

/// `validate` is offline, but when a broker answers it also checks that the inputs of
/// stateful processors are co-partitioned.
pub fn check_partitions_online(
    config: &PipelineConfig,
    topology: &Topology,
    bootstrap_servers: Option<String>,
) -> Result<(), CliError> {
    if !topology.processors.iter().any(|p| p.instance.is_stateful()) {
        return Ok(());
    }
    let Some(servers) = bootstrap_servers.or_else(|| config.kafka.bootstrap_servers.clone()) else {
        eprintln!("note: partition counts of stateful processors' inputs not checked: no bootstrap servers given");
        return Ok(());
    };
    match crate::kafka::partition_counts(&servers, std::time::Duration::from_secs(5)) {
        Ok(counts) => {
            let problems = crate::topology::check_partitions(topology, |topic| counts.get(topic).copied());
            problems.into_result(()).map_err(CliError::Invalid)
        }
        Err(error) => {
            eprintln!("note: partition counts of stateful processors' inputs not checked: broker {servers} unreachable ({error})");
            Ok(())
        }
    }
}
