//! `meshhost validate`: check a pipeline offline — the file, every plugin, every edge's schema.

use std::path::PathBuf;

use super::common::{
    check_partitions_online, check_sink_schemas_online, check_tables_online, load_and_plan, CliError, Overrides,
};
use crate::plugin::PluginEngine;

/// The arguments of `meshhost validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Plugin registry directory, overriding the file.
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Kafka bootstrap servers, overriding the file (also MESHHOST_BOOTSTRAP_SERVERS). When a
    /// broker answers, the partition counts of stateful processors' inputs are checked too.
    #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Schema Registry URL, overriding the file's `schema_registry.url`. When the registry
    /// answers, `confluent-avro` sinks' schemas are checked against it (nothing registered).
    #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
    pub schema_registry: Option<String>,
    /// Sources catalog URL, overriding the file's `catalog.url`.
    #[arg(long, env = "MESHHOST_CATALOG_URL")]
    pub catalog: Option<String>,
}

pub fn execute(args: ValidateArgs) -> Result<(), CliError> {
    let ValidateArgs { pipeline, registry, bootstrap_servers, schema_registry, catalog } = args;
    let engine = PluginEngine::new()?;
    let overrides = Overrides { registry, schema_registry, catalog, offline: true };
    let (config, topology) = load_and_plan(&pipeline, overrides, &engine)?;
    check_partitions_online(&config, &topology, bootstrap_servers)?;
    check_sink_schemas_online(&topology)?;
    check_tables_online(&topology)?;
    println!(
        "{}: valid ({} sources, {} processors, {} sinks)",
        pipeline.display(),
        topology.sources.len(),
        topology.processors.len(),
        topology.sinks.len()
    );
    for processor in &topology.processors {
        for output in &processor.outputs {
            println!("  {}.{}: {}", processor.id, output.name, crate::schema_text::summary(&output.schema.parsed));
        }
    }
    Ok(())
}
