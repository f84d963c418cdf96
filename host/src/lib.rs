//! meshhost: records move from Kafka sources, through WebAssembly component processors, into
//! Kafka sinks.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! # fn main() -> anyhow::Result<()> {
//! let config = meshhost::config::PipelineConfig::load("pipeline.yaml".as_ref())?;
//! let engine = meshhost::plugin::PluginEngine::new()?;
//! let topology = meshhost::topology::plan(&config, &engine)?;
//! let settings = meshhost::cli::run_settings(&config, None);
//! meshhost::topology::run::run(topology, &settings, &AtomicBool::new(false))?;
//! # Ok(()) }
//! ```
//!
//! - [`config`]: the pipeline file and its checks.
//! - [`registry`]: finding the plugin a `uses:` names.
//! - [`plugin`]: the Wasm engine, instances and their limits.
//! - [`topology`]: planning the DAG (what `validate` checks) and running it against Kafka.
//! - [`codec`]: record values at the pipeline's edges (Avro, JSON).

pub mod cli;
mod cli_plugin;
pub mod codec;
pub mod config;
pub mod kafka;
pub mod plugin;
pub mod registry;
pub mod scaffold;
pub mod state;
pub mod testkit;
pub mod topic_io;
pub mod topology;
