//! `meshhost lock [--update]`: the lock file — the exact plugin behind each `uses:`, and the
//! schema version each `confluent-avro` source (without a `schema:` file) is read as.
//!
//! Without `--update`, a source keeps the version the lock file already pins (a new source is
//! pinned to its subject's latest version); with it, every source moves to the latest version
//! and what that changes on each edge and sink is printed before the file is written.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::common::{configure, CliError, Overrides};
use crate::config::{Format, PipelineConfig, Problems};
use crate::plugin::PluginEngine;
use crate::registry::lock::LockedSchema;
use crate::registry::{LockFile, PluginResolver};

pub fn lock(pipeline: &Path, overrides: Overrides, update: bool) -> Result<(), CliError> {
    let (config, mut problems) = configure(pipeline, overrides)?;
    if !problems.is_empty() {
        return Err(problems.into());
    }
    // A lock file that cannot be read is replaced, not a reason to stop.
    let previous = LockFile::read_for(pipeline).unwrap_or_else(|error| {
        eprintln!("note: {error}; writing a new one");
        None
    });
    let mut lock = LockFile { version: 1, plugins: Vec::new(), schemas: Vec::new() };

    let plugins = PluginResolver::unlocked(config.registry.clone());
    for (id, processor) in &config.processors {
        if lock.entry(&processor.uses.text).is_some() {
            continue;
        }
        match plugins.resolve(&processor.uses) {
            Ok(resolved) => {
                println!("{} -> {} {}", processor.uses, resolved.label, resolved.locked.digest);
                lock.plugins.push(resolved.locked);
            }
            Err(error) => problems.push(&format!("processors.{id}.uses"), error.to_string()),
        }
    }

    let registry = crate::topology::schema_registry::client(&config);
    for (id, source) in &config.sources {
        if source.format() != Format::ConfluentAvro || source.schema.is_some() {
            continue;
        }
        let Some(registry) = &registry else { continue }; // reported by the plan below
        let subject = source.subject();
        let kept = previous.as_ref().and_then(|l| l.schema(id, &subject)).filter(|_| !update).cloned();
        let pin = match kept {
            Some(pin) => pin,
            None => match registry.latest(&subject) {
                Ok(latest) => LockedSchema { source: id.clone(), subject, version: latest.version, id: latest.id },
                Err(error) => {
                    problems.push(&format!("sources.{id}"), format!("cannot read subject {subject:?}: {error}"));
                    continue;
                }
            },
        };
        println!("sources.{id} -> {} version {} (id {})", pin.subject, pin.version, pin.id);
        lock.schemas.push(pin);
    }
    if !problems.is_empty() {
        return Err(problems.into());
    }

    if let (true, Some(previous)) = (update, &previous) {
        print_changes(&config, previous, &lock)?;
    }
    let path = LockFile::path_for(pipeline);
    std::fs::write(&path, lock.to_toml()).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Plan the pipeline with both lock files and print what changes on its edges and sinks.
fn print_changes(config: &PipelineConfig, before: &LockFile, after: &LockFile) -> Result<(), CliError> {
    let engine = PluginEngine::new()?;
    let plan = |lock: &LockFile| {
        let plugins = PluginResolver::locked(config.registry.clone(), lock.clone());
        crate::topology::plan(config, &engine, &plugins).map_err(|problems: Problems| CliError::Invalid(problems))
    };
    let (old, new) = (plan(before)?, plan(after)?);
    let changes = crate::topology::diff::changes(&old, &new);
    if changes.is_empty() {
        println!("no edge or sink changes");
    }
    for change in changes {
        println!("{change}");
    }
    Ok(())
}

/// The arguments of `meshhost lock`.
#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Plugin registry directory, overriding the file.
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Move every source's pinned schema to its subject's latest version, printing what
    /// changes on each edge and sink.
    #[arg(long)]
    pub update: bool,
    /// Schema Registry URL, overriding the file's `schema_registry.url`.
    #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
    pub schema_registry: Option<String>,
    /// Sources catalog URL, overriding the file's `catalog.url`.
    #[arg(long, env = "MESHHOST_CATALOG_URL")]
    pub catalog: Option<String>,
}

pub fn execute(args: LockArgs) -> Result<(), CliError> {
    let LockArgs { pipeline, registry, update, schema_registry, catalog } = args;
    let overrides = Overrides { registry, schema_registry, catalog, offline: false };
    lock(&pipeline, overrides, update)
}
