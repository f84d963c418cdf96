//! meshhost: records move from Kafka topics and captured Postgres tables, through WebAssembly
//! component processors, into Kafka sinks.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! # fn main() -> anyhow::Result<()> {
//! let config = meshhost::config::PipelineConfig::load("pipeline.yaml".as_ref())?;
//! let engine = meshhost::plugin::PluginEngine::new()?;
//! let plugins = meshhost::registry::PluginResolver::for_pipeline("pipeline.yaml".as_ref(), config.registry.clone())?;
//! let topology = meshhost::topology::plan(&config, &engine, &plugins)?;
//! let settings = meshhost::cli::run_settings(&config, None);
//! meshhost::topology::run::run(topology, &settings, &AtomicBool::new(false))?;
//! # Ok(()) }
//! ```
//!
//! - [`config`]: the pipeline file, its typed references and its checks.
//! - [`registry`]: finding the plugin a `uses:` names (registry directory, stock plugins, lock file).
//! - [`plugin`]: the Wasm engine, instances and their limits.
//! - [`topology`]: planning the DAG (what `validate` checks); [`topology::execute`], the
//!   executor that runs a batch through it; [`topology::run_loop`], the one run loop, and
//!   [`topology::run`], which sets it up for any mix of Kafka topics and captured tables.
//! - [`source`] and [`sink`]: the traits records come in and go out through, and their kinds:
//!   [`source::kafka`], [`source::postgres`] (change data capture from Postgres tables, a source
//!   whose positions are WAL positions), [`sink::kafka`]. [`kafka`]: Kafka client utilities.
//! - [`state`]: processors' durable state and its changelog.
//! - [`codec`]: record values at the pipeline's edges (Avro, Confluent-framed Avro, JSON).
//! - [`schema_registry`]: the Confluent wire format and a client for any Schema Registry.
//! - [`catalog`]: `meshhost catalog serve`, a Schema Registry kept in a Kafka topic.

pub mod authoring;
pub mod catalog;
pub mod cli;
pub mod codec;
pub mod config;
pub mod kafka;
pub mod observe;
pub mod plugin;
pub mod registry;
pub mod schema_registry;
pub mod schema_text;
pub mod sink;
pub mod source;
pub mod state;
pub mod topology;
