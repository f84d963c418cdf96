//! The `meshhost` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{PipelineConfig, Problems};
use crate::plugin::PluginEngine;
use crate::registry::PluginResolver;
use crate::schema_registry::RegistryClient;
use crate::topology::run::{RunError, RunSettings};
use crate::topology::Topology;

/// Exit code for invalid input (a pipeline file, a plugin, arguments).
pub const EXIT_INVALID: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

/// Data movement and processing host: Kafka sources → WebAssembly processors → Kafka sinks.
#[derive(Debug, Parser)]
#[command(name = "meshhost", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until SIGINT or SIGTERM, then drain, flush, commit and exit 0.
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Kafka bootstrap servers, overriding the file (also MESHHOST_BOOTSTRAP_SERVERS).
        #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS")]
        bootstrap_servers: Option<String>,
        /// Plugin registry directory, overriding the file.
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Where stateful processors keep local state, overriding the file's `state_dir`.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// A stable name of this instance among the pipeline's instances (Kafka static
        /// membership: a restart within the session timeout keeps its partitions, no rebalance).
        #[arg(long, env = "MESHHOST_INSTANCE_ID")]
        instance_id: Option<String>,
        /// Schema Registry URL, overriding the file's `schema_registry.url`.
        #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
        schema_registry: Option<String>,
        /// Sources catalog URL, overriding the file's `catalog.url`.
        #[arg(long, env = "MESHHOST_CATALOG_URL")]
        catalog: Option<String>,
        /// Serve Prometheus metrics (/metrics) and health (/healthz, /ready) on this address,
        /// overriding the file's `observability.metrics_listen`.
        #[arg(long)]
        metrics_listen: Option<String>,
        /// Run the last records of each source partition (--from-end) through the pipeline and
        /// print what every edge and sink would get, and the dead letters; produce and commit
        /// nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: how many records per partition, from the end.
        #[arg(long, default_value_t = 10, requires = "dry_run")]
        from_end: i64,
    },
    /// Produce JSON lines from stdin to a topic, Avro-encoded when a schema is given.
    Produce {
        /// The topic.
        topic: String,
        #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
        /// Avro schema file: encode each line as a binary Avro datum of it.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Use this field of each line as the record key.
        #[arg(long)]
        key_field: Option<String>,
        /// With --schema: register it with this Schema Registry and write the Confluent wire format.
        #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
        schema_registry: Option<String>,
        /// The subject to register the schema under (default: TOPIC-value).
        #[arg(long, requires = "schema_registry")]
        subject: Option<String>,
    },
    /// Print a topic's records as JSON lines, decoding Avro with a schema.
    Consume {
        /// The topic.
        topic: String,
        #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
        bootstrap_servers: String,
        /// Avro schema file of the values.
        #[arg(long, conflicts_with = "pipeline")]
        schema: Option<PathBuf>,
        /// Decode with the schema of this pipeline's sink writing to the topic.
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<usize>,
        /// Stop when no record came for this many seconds.
        #[arg(long, default_value_t = 3.0)]
        idle_seconds: f64,
        /// Values are in the Confluent wire format: decode each with its writer schema from this
        /// Schema Registry (unless --schema or --pipeline says otherwise).
        #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
        schema_registry: Option<String>,
    },
    /// Write PIPELINE.lock: the exact version and digest of every plugin the pipeline uses.
    Lock {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Plugin registry directory, overriding the file.
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Move every source's pinned schema to its subject's latest version, printing what
        /// changes on each edge and sink.
        #[arg(long)]
        update: bool,
        /// Schema Registry URL, overriding the file's `schema_registry.url`.
        #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
        schema_registry: Option<String>,
        /// Sources catalog URL, overriding the file's `catalog.url`.
        #[arg(long, env = "MESHHOST_CATALOG_URL")]
        catalog: Option<String>,
    },
    /// Print a live sample of the records on an edge of a running pipeline (needs its metrics
    /// listener): JSON lines, decoded with the edge's schema.
    Tap {
        /// The pipeline file (its `observability.metrics_listen` says where it listens).
        pipeline: PathBuf,
        /// A source id, a processor id (its first output), or `processor.port`.
        edge: String,
        /// Stop after this many records.
        #[arg(long, default_value_t = 10)]
        max: usize,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// The run's metrics listener, overriding the file (`--metrics-listen` of `run`).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Move a pipeline's committed offsets (replay, backfill, skip), while no instance runs.
    Reset {
        /// The pipeline file.
        pipeline: PathBuf,
        /// earliest, latest, a time (2026-11-29T12:00:00Z) or TOPIC:PARTITION:OFFSET.
        #[arg(long)]
        to: crate::reset::ResetTarget,
        /// Also delete stateful processors' local stores and changelog topics: the next run
        /// rebuilds their state from the replayed records alone.
        #[arg(long)]
        wipe_state: bool,
        #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS")]
        bootstrap_servers: Option<String>,
        /// Sources catalog URL, overriding the file's `catalog.url`.
        #[arg(long, env = "MESHHOST_CATALOG_URL")]
        catalog: Option<String>,
    },
    /// The catalog: meshhost's Schema Registry (the Confluent REST API), kept in a Kafka topic.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Publish, find and inspect the sources of the catalog (`meshhost catalog serve`).
    Source {
        /// The catalog server.
        #[arg(long, global = true, env = "MESHHOST_CATALOG_URL", default_value = "http://127.0.0.1:8081")]
        catalog: String,
        #[command(subcommand)]
        command: SourceCommand,
    },
    /// Publish, list, inspect, verify and yank plugins in a registry directory.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Draw a pipeline's DAG, each edge labelled with its schema's fields (offline, like validate).
    Graph {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Plugin registry directory, overriding the file.
        #[arg(long)]
        registry: Option<PathBuf>,
        /// text (default), dot (Graphviz: `| dot -Tsvg > dag.svg`) or mermaid.
        #[arg(long, value_enum, default_value = "text")]
        format: crate::graph::GraphFormat,
        /// Schema Registry URL, overriding the file's `schema_registry.url`.
        #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
        schema_registry: Option<String>,
        /// Sources catalog URL, overriding the file's `catalog.url`.
        #[arg(long, env = "MESHHOST_CATALOG_URL")]
        catalog: Option<String>,
    },
    /// Check a pipeline offline: the file, every plugin and every edge's schema. Exit 2 if invalid.
    Validate {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Plugin registry directory, overriding the file.
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Kafka bootstrap servers, overriding the file (also MESHHOST_BOOTSTRAP_SERVERS). When a
        /// broker answers, the partition counts of stateful processors' inputs are checked too.
        #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS")]
        bootstrap_servers: Option<String>,
        /// Schema Registry URL, overriding the file's `schema_registry.url`. When the registry
        /// answers, `confluent-avro` sinks' schemas are checked against it (nothing registered).
        #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
        schema_registry: Option<String>,
        /// Sources catalog URL, overriding the file's `catalog.url`.
        #[arg(long, env = "MESHHOST_CATALOG_URL")]
        catalog: Option<String>,
    },
}

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

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Publish a topic as a source (or change a published one).
    Publish {
        /// The source's name: letters, digits, '-' and '_'.
        name: String,
        #[arg(long)]
        topic: String,
        /// Its Avro schema: registered under the subject (default TOPIC-value).
        #[arg(long, required_unless_present = "subject")]
        schema: Option<PathBuf>,
        /// The registry subject its schema versions live under (default TOPIC-value).
        #[arg(long)]
        subject: Option<String>,
        #[arg(long, value_enum, default_value = "confluent-avro")]
        format: crate::cli_source::SourceFormat,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        owner: Option<String>,
        /// A tag (repeat for more).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Register the schema even if it would break a pipeline that reads the source.
        #[arg(long)]
        force: bool,
    },
    /// Every source.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One source: what it is, its schema (with field docs), versions, owner, who reads it,
    /// where it comes from and what is derived from it.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Sources whose name, description, owner, tags or field names contain TEXT.
    Search {
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Mark a source deprecated: pipelines that read it warn.
    Deprecate {
        name: String,
        #[arg(long, default_value = "deprecated")]
        reason: String,
    },
    /// The sources and pipelines upstream and downstream of a source.
    Lineage {
        name: String,
        /// text (default) or dot (Graphviz).
        #[arg(long, value_enum, default_value = "text")]
        format: crate::cli_source::LineageFormat,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Publish a component under the name and version of its manifest.
    Publish {
        /// The component (.wasm).
        component: PathBuf,
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
        /// The plugin manifest; default: plugin.toml beside the component.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Publish the stock plugins built into this meshhost.
    PublishStock {
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
    },
    /// List the plugins and versions in a registry.
    List {
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
    },
    /// Show a plugin's versions, digests, sizes, WIT version, exports and options.
    Inspect {
        /// NAMESPACE/NAME, or NAMESPACE/NAME@REQUIREMENT for the version it resolves to.
        plugin: String,
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
    },
    /// Recompute every digest in a registry; exit 1 on any mismatch.
    Verify {
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
    },
    /// Create a plugin project: manifest, example processor, fixture, build command.
    New {
        /// NAMESPACE/NAME (or NAME, for local/NAME).
        name: String,
        #[arg(long, value_enum)]
        lang: crate::authoring::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin project (Rust, Python or JavaScript) into its component; print where it is.
    Build {
        /// The project directory (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: DIR/<plugin name>.wasm).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run the checks every plugin must pass, then the fixtures in DIR (see README).
    Test {
        /// The component (.wasm).
        component: PathBuf,
        /// A directory of fixture files (*.json): config + input records → expected outputs.
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// Yank NAME@VERSION: new resolutions skip it, existing lock files still load it.
    Yank {
        /// NAMESPACE/NAME@VERSION (exact).
        plugin: String,
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
        /// Un-yank instead.
        #[arg(long)]
        undo: bool,
    },
}

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
fn json_logs() -> bool {
    std::env::var("MESHHOST_LOG_FORMAT").is_ok_and(|f| f == "json")
}

/// Run the CLI; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESHHOST_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    // MESHHOST_LOG_FORMAT=json: one JSON object per line, for log collectors.
    if json_logs() {
        logs.with_writer(std::io::stderr).json().init();
    } else {
        // Log lines scroll above `run`'s status line on a terminal.
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        logs.with_writer(|| crate::observe::status::LogWriter).with_ansi(terminal).init();
    }
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Invalid(problems)) => {
            match problems.0.as_slice() {
                [only] if only.path.is_empty() => eprintln!("error: {}", only.message),
                _ => eprintln!("error: invalid pipeline\n{problems}"),
            }
            ExitCode::from(EXIT_INVALID)
        }
        Err(CliError::Failed(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn execute(command: Command) -> Result<(), CliError> {
    match command {
        Command::Validate { pipeline, registry, bootstrap_servers, schema_registry, catalog } => {
            let engine = PluginEngine::new()?;
            let overrides = Overrides { registry, schema_registry, catalog, offline: true };
            let (config, topology) = load_and_plan(&pipeline, overrides, &engine)?;
            check_partitions_online(&config, &topology, bootstrap_servers)?;
            check_sink_schemas_online(&topology)?;
            println!(
                "{}: valid ({} sources, {} processors, {} sinks)",
                pipeline.display(),
                topology.sources.len(),
                topology.processors.len(),
                topology.sinks.len()
            );
            for processor in &topology.processors {
                for output in &processor.outputs {
                    println!(
                        "  {}.{}: {}",
                        processor.id,
                        output.name,
                        crate::schema_text::summary(&output.schema.parsed)
                    );
                }
            }
            Ok(())
        }
        Command::Graph { pipeline, registry, format, schema_registry, catalog } => {
            let engine = PluginEngine::new()?;
            let overrides = Overrides { registry, schema_registry, catalog, offline: true };
            let (config, topology) = load_and_plan(&pipeline, overrides, &engine)?;
            print!("{}", crate::graph::render(&config, &topology, format));
            Ok(())
        }
        Command::Produce { topic, bootstrap_servers, schema, key_field, schema_registry, subject } => {
            use crate::topic_io::ValueEncoding;
            let schema = schema.map(|path| read_schema(&path)).transpose()?;
            let registered = match (&schema, schema_registry) {
                (Some(schema), Some(url)) => {
                    let registry = RegistryClient::for_url(&url);
                    let subject = subject.unwrap_or_else(|| format!("{topic}-value"));
                    let id = registry
                        .register(&subject, &schema.to_json())
                        .with_context(|| format!("cannot register the schema under subject {subject:?}"))?;
                    eprintln!("schema id {id} under subject {subject:?}");
                    Some(id)
                }
                _ => None,
            };
            let encoding = match (&schema, registered) {
                (Some(schema), Some(id)) => ValueEncoding::ConfluentAvro { schema, id },
                (Some(schema), None) => ValueEncoding::Avro(schema),
                (None, _) => ValueEncoding::Json,
            };
            let stdin = std::io::stdin().lock();
            let count = crate::topic_io::produce(&bootstrap_servers, &topic, encoding, key_field.as_deref(), stdin)?;
            eprintln!("produced {count} records to {topic}");
            Ok(())
        }
        Command::Consume { topic, bootstrap_servers, schema, pipeline, max, idle_seconds, schema_registry } => {
            use crate::topic_io::ValueDecoding;
            // What the values are: a schema file, a pipeline's sink, or a registry's ids.
            let mut registry = schema_registry.map(|url| Arc::new(RegistryClient::for_url(&url)));
            let schema = match (schema, pipeline) {
                (Some(path), _) => Some(read_schema(&path)?),
                (None, Some(pipeline)) => {
                    let engine = PluginEngine::new()?;
                    let overrides = Overrides { offline: true, ..Overrides::default() };
                    let (_, topology) = load_and_plan(&pipeline, overrides, &engine)?;
                    let sink =
                        topology.sinks.iter().find(|s| s.topic == topic).ok_or_else(|| {
                            anyhow::anyhow!("no sink of {} writes to topic {topic}", pipeline.display())
                        })?;
                    match &sink.encoder {
                        crate::codec::SinkEncoder::ConfluentAvro { registry: sink_registry, .. } => {
                            registry = Some(sink_registry.clone());
                            None
                        }
                        _ => Some((*sink.schema.parsed).clone()),
                    }
                }
                (None, None) => None,
            };
            let decoding = match (&schema, &registry) {
                (Some(schema), _) => ValueDecoding::Avro(schema),
                (None, Some(registry)) => ValueDecoding::ConfluentAvro(registry),
                (None, None) => ValueDecoding::Text,
            };
            let idle = std::time::Duration::from_secs_f64(idle_seconds);
            crate::topic_io::consume(&bootstrap_servers, &topic, decoding, max, idle, std::io::stdout().lock())?;
            Ok(())
        }
        Command::Lock { pipeline, registry, update, schema_registry, catalog } => {
            let overrides = Overrides { registry, schema_registry, catalog, offline: false };
            crate::cli_lock::lock(&pipeline, overrides, update)
        }
        Command::Tap { pipeline, edge, max, seconds, listen } => {
            let config = PipelineConfig::load(&pipeline)?;
            let listen = listen.or_else(|| config.observability.and_then(|o| o.metrics_listen)).ok_or_else(|| {
                CliError::Invalid(Problems::one(
                    "",
                    "the pipeline has no metrics listener: give --listen, or set observability.metrics_listen",
                ))
            })?;
            let url = format!(
                "http://{listen}/tap/{}?max={max}&seconds={seconds}",
                crate::schema_registry::encode_path(&edge)
            );
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(std::time::Duration::from_secs_f64(seconds + 10.0)))
                .build()
                .into();
            let mut response = agent.get(&url).call().with_context(|| format!("is the pipeline running? {url}"))?;
            let body = response.body_mut().read_to_string().context("cannot read the tap")?;
            if response.status().as_u16() == 404 {
                return Err(CliError::Invalid(Problems::one("", body.trim().to_string())));
            }
            print!("{body}");
            Ok(())
        }
        Command::Reset { pipeline, to, wipe_state, bootstrap_servers, catalog } => {
            let overrides = Overrides { catalog, offline: true, ..Overrides::default() };
            let (config, problems) = configure(&pipeline, overrides)?;
            problems.into_result(()).map_err(CliError::Invalid)?;
            let servers = run_settings(&config, bootstrap_servers).bootstrap_servers;
            let moved = crate::reset::reset(&config, &servers, &to, wipe_state).map_err(|error| match error {
                crate::reset::ResetError::Kafka { .. } | crate::reset::ResetError::Wipe { .. } => {
                    CliError::Failed(error.into())
                }
                error => CliError::Invalid(Problems::one("", error.to_string())),
            })?;
            for (topic, partition, before, after) in moved {
                let before = before.map_or_else(|| "none".to_string(), |o| o.to_string());
                println!("{topic}/{partition}: {before} -> {after}");
            }
            if wipe_state {
                println!("state wiped: the next run rebuilds it from the records it reads");
            }
            Ok(())
        }
        Command::Plugin { command } => crate::cli_plugin::execute(command),
        Command::Source { catalog, command } => crate::cli_source::execute(&catalog, command),
        Command::Catalog { command: CatalogCommand::Serve { listen, bootstrap_servers, topic } } => {
            serve_catalog(&listen, &bootstrap_servers, &topic)
        }
        Command::Run {
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
        } => {
            let engine = PluginEngine::new()?;
            let overrides = Overrides { registry, schema_registry, catalog, offline: false };
            // A database that cannot be used (down, wrong password, table missing) is a runtime
            // failure (exit 1), told before planning reports it as a problem of the file.
            if let Ok((config, _)) = configure(&pipeline, Overrides::default()) {
                crate::postgres::check_databases(&config)
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
                let summary =
                    crate::topology::dry_run::dry_run(topology, &settings.bootstrap_servers, from_end, &mut out)
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

/// Command-line settings that win over the pipeline file's.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
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
fn load_and_plan(
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
pub(crate) fn configure(pipeline: &Path, overrides: Overrides) -> Result<(PipelineConfig, Problems), CliError> {
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

fn read_schema(path: &Path) -> Result<meshhost_avro::Schema, CliError> {
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
fn check_sink_schemas_online(topology: &Topology) -> Result<(), CliError> {
    match topology.check_sink_schemas() {
        Ok(problems) => problems.into_result(()).map_err(CliError::Invalid),
        Err(error) => {
            eprintln!("note: the schemas of confluent-avro sinks not checked: {error}");
            Ok(())
        }
    }
}

/// `validate` is offline, but when a broker answers it also checks that the inputs of
/// stateful processors are co-partitioned.
fn check_partitions_online(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
