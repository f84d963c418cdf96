//! The pipeline file (version 1): its types, and loading that reports every problem at once.
//!
//! Loading checks the file on its own (keys, ids, references, cycles, `uses:` syntax) and does
//! no I/O beyond reading files. What needs a server or the plugins — `source:` names through
//! the catalog, registry subjects, a captured table's columns, schemas along the DAG, `with:`
//! options — is looked up when the topology is planned (`topology`), which reports in the same
//! [`Problems`] form.

use std::fmt;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;

mod graph;
pub mod postgres;
mod reference;

pub use graph::processing_order;
pub use reference::{check_plugin_name, InputRef, PluginRef, PluginTarget};

/// A parsed, structurally valid pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Pipeline id; the consumer group defaults to `meshhost-<name>`.
    pub name: String,
    /// How to reach Kafka.
    pub kafka: KafkaConfig,
    /// The plugin registry directory, already resolved against the file's directory.
    pub registry: Option<PathBuf>,
    /// Kafka topics records come from, by id.
    pub sources: IndexMap<String, SourceConfig>,
    /// Wasm processors, by id.
    pub processors: IndexMap<String, ProcessorConfig>,
    /// Kafka topics records go to, by id.
    pub sinks: IndexMap<String, SinkConfig>,
    /// Where records that cannot be processed go.
    pub dead_letter: Option<DeadLetterConfig>,
    /// Where stateful processors keep their local state, resolved against the file's directory.
    pub state_dir: Option<PathBuf>,
    /// The Schema Registry `confluent-avro` sources and sinks use.
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// The sources catalog.
    pub catalog: Option<CatalogConfig>,
    /// Metrics and health endpoints.
    pub observability: Option<ObservabilityConfig>,
    /// The directory of the pipeline file: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    /// Ids whose settings could not be read (already reported): references to them are not
    /// reported again as unknown.
    pub unreadable_ids: Vec<String>,
}

/// The `kafka:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`; `--bootstrap-servers` and `MESHHOST_BOOTSTRAP_SERVERS` override it.
    pub bootstrap_servers: Option<String>,
    /// Consumer group id; defaults to `meshhost-<name>`.
    pub group_id: Option<String>,
    /// Most records handed to processors in one batch (default 1024).
    pub batch_size: Option<usize>,
    /// Extra librdkafka properties for both consumer and producer.
    #[serde(default)]
    pub properties: IndexMap<String, String>,
}

/// The `schema_registry:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL of a Confluent-compatible registry; `--schema-registry` and
    /// `MESHHOST_SCHEMA_REGISTRY_URL` override it.
    pub url: String,
    /// HTTP basic auth; `MESHHOST_SCHEMA_REGISTRY_USERNAME` and `..._PASSWORD` override it.
    pub basic_auth: Option<BasicAuth>,
    /// How long to retry a registry that does not answer before stopping (default 60).
    pub retry_seconds: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

impl SchemaRegistryConfig {
    /// A section with only a URL (from the command line or the environment).
    pub fn with_url(url: String) -> SchemaRegistryConfig {
        SchemaRegistryConfig { url, basic_auth: None, retry_seconds: None }
    }

    /// The client's settings, credentials from the environment winning over the file's.
    pub fn settings(&self) -> crate::schema_registry::RegistrySettings {
        let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let basic_auth =
            match (from_env("MESHHOST_SCHEMA_REGISTRY_USERNAME"), from_env("MESHHOST_SCHEMA_REGISTRY_PASSWORD")) {
                (Some(username), Some(password)) => Some((username, password)),
                _ => self.basic_auth.as_ref().map(|auth| (auth.username.clone(), auth.password.clone())),
            };
        crate::schema_registry::RegistrySettings {
            url: self.url.clone(),
            basic_auth,
            retry_for: self
                .retry_seconds
                .map(std::time::Duration::from_secs)
                .unwrap_or(crate::schema_registry::DEFAULT_RETRY),
        }
    }
}

/// Value encoding of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Binary Avro datum, no header.
    Avro,
    /// JSON object, converted to and from Avro with the schema.
    Json,
    /// The Confluent wire format: magic byte 0, a 4-byte schema id of a Schema Registry, then
    /// the Avro datum.
    ConfluentAvro,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Avro => "avro",
            Format::Json => "json",
            Format::ConfluentAvro => "confluent-avro",
        }
    }
}

/// One entry of `sources:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// A source of the catalog, by name: topic, format and subject come from there (filled in by
    /// `topology::schema_registry::resolve_catalog_sources`).
    pub source: Option<String>,
    /// The Kafka topic to consume.
    #[serde(default)]
    pub topic: String,
    /// How the values are encoded.
    pub format: Option<Format>,
    /// The Avro schema of the values, a path relative to the pipeline file. For
    /// `confluent-avro` it is the reader schema every writer version is resolved to (default:
    /// the subject's latest version when the pipeline starts).
    pub schema: Option<PathBuf>,
    /// `confluent-avro`: the registry subject (default `<topic>-value`).
    pub subject: Option<String>,
    /// `confluent-avro`: what a record whose writer schema cannot be read as the reader schema
    /// does (default: `stop` for a catalog source, `dead_letter` otherwise). `postgres`: what a
    /// planned column that was dropped or retyped does (default `stop`).
    pub on_schema_change: Option<SchemaChangePolicy>,
    /// A Postgres table captured by logical replication (change data capture) instead of a
    /// Kafka topic.
    pub postgres: Option<postgres::PostgresSourceConfig>,
}

/// What a `confluent-avro` record whose writer schema cannot be resolved to the reader's does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaChangePolicy {
    /// The run stops (exit 1), committing nothing past the record: nothing is lost, and a
    /// breaking upstream change does not corrupt downstream data.
    Stop,
    /// The record goes to dead letters and the run goes on.
    DeadLetter,
}

/// The `observability:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservabilityConfig {
    /// Serve `/metrics`, `/healthz` and `/ready` on this address (`--metrics-listen` overrides it).
    pub metrics_listen: Option<String>,
}

/// The `catalog:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// The catalog server (`meshhost catalog serve`); `--catalog` and `MESHHOST_CATALOG_URL`
    /// override it. It is the Schema Registry too when `schema_registry:` is not given.
    pub url: String,
}

/// A sink's `publish:`: its topic becomes a source of the catalog.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub owner: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One entry of `processors:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    /// `namespace/name@requirement` in the registry, or a path to a `.wasm` component.
    pub uses: PluginRef,
    /// Upstream ids: a source, a processor (its first output port) or `processor.port`.
    pub inputs: Vec<InputRef>,
    /// The plugin's options, handed to its `init` as JSON.
    #[serde(default, rename = "with")]
    pub options: Option<serde_json::Value>,
    /// Resource limits for this processor's instance.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// Per-processor resource limits; unset values take the defaults.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory cap of the instance, in MiB (default 256).
    pub memory_mb: Option<u64>,
    /// CPU deadline of one call into the plugin, in milliseconds (default 5000).
    pub timeout_ms: Option<u64>,
}

/// One entry of `sinks:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The Kafka topic to write (or `postgres:`).
    #[serde(default)]
    pub topic: String,
    /// How values are encoded in the topic; the Avro schema is the one its inputs produce.
    pub format: Option<Format>,
    /// A Postgres table to write instead of a topic.
    pub postgres: Option<postgres::PostgresSinkConfig>,
    /// Upstream ids, as for processors; all must produce the same schema.
    pub inputs: Vec<InputRef>,
    /// `confluent-avro`: the registry subject the schema is registered under (default
    /// `<topic>-value`).
    pub subject: Option<String>,
    /// Publish the topic as a source of the catalog, with this pipeline as its lineage.
    pub publish: Option<PublishConfig>,
}

impl SourceConfig {
    /// The registry subject of a `confluent-avro` source.
    pub fn subject(&self) -> String {
        self.subject.clone().unwrap_or_else(|| format!("{}-value", self.topic))
    }

    /// How the values are encoded (checked present when the file was loaded).
    pub fn format(&self) -> Format {
        self.format.unwrap_or(Format::Avro)
    }

    /// What an unresolvable writer schema does.
    pub fn on_schema_change(&self) -> SchemaChangePolicy {
        self.on_schema_change.unwrap_or(if self.source.is_some() {
            SchemaChangePolicy::Stop
        } else {
            SchemaChangePolicy::DeadLetter
        })
    }
}

impl SinkConfig {
    /// How values are encoded (checked present for a topic when the file was loaded; a table's
    /// rows are built from the Avro datum).
    pub fn format(&self) -> Format {
        self.format.unwrap_or(Format::Avro)
    }

    /// What the run loop routes the records of sink `id` under: its topic, or `postgres:ID`
    /// (never a topic name: `:` is not allowed in one; by id, as two sinks may write one table).
    pub fn destination(&self, id: &str) -> String {
        match &self.postgres {
            Some(_) => format!("postgres:{id}"),
            None => self.topic.clone(),
        }
    }

    /// The registry subject of a `confluent-avro` sink.
    pub fn subject(&self) -> String {
        self.subject.clone().unwrap_or_else(|| format!("{}-value", self.topic))
    }
}

/// The `dead_letter:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// The topic failed records go to, with their original bytes and `meshhost.*` headers.
    pub topic: String,
    /// Stop the run when more than this share of the last `window` records failed.
    pub max_ratio: Option<f64>,
    /// How many of the last records `max_ratio` looks at (default 1000).
    pub window: Option<usize>,
}

/// `dead_letter: {max_ratio, window}`: the share of the last records that may fail before the
/// run stops (see `topology::breaker`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRateLimit {
    pub max_ratio: f64,
    pub window: usize,
}

impl FailureRateLimit {
    /// The most failures the window may hold: one more stops the run.
    pub fn allowed_failures(&self) -> usize {
        (self.max_ratio * self.window as f64).floor() as usize
    }
}

/// The window of `dead_letter.max_ratio` when the file gives none.
const DEFAULT_FAILURE_WINDOW: usize = 1000;

impl DeadLetterConfig {
    /// The failure-rate limit, if one is set; `Err` says what is wrong with it.
    pub fn failure_rate_limit(&self) -> Result<Option<FailureRateLimit>, (&'static str, String)> {
        let Some(max_ratio) = self.max_ratio else {
            return match self.window {
                Some(_) => {
                    Err(("dead_letter.window", "needs max_ratio (the share of failures that stops the run)".into()))
                }
                None => Ok(None),
            };
        };
        if !(max_ratio > 0.0 && max_ratio < 1.0) {
            return Err(("dead_letter.max_ratio", format!("must be more than 0 and less than 1, got {max_ratio}")));
        }
        let window = self.window.unwrap_or(DEFAULT_FAILURE_WINDOW);
        if window == 0 {
            return Err(("dead_letter.window", "must be at least 1".into()));
        }
        Ok(Some(FailureRateLimit { max_ratio, window }))
    }
}

impl PipelineConfig {
    /// Use the catalog at `url`. Without a `schema_registry:`, the catalog (which serves the
    /// Schema Registry API) is the Schema Registry too.
    pub fn set_catalog(&mut self, url: String) {
        if self.schema_registry.is_none() {
            self.schema_registry = Some(SchemaRegistryConfig::with_url(url.clone()));
        }
        self.catalog = Some(CatalogConfig { url });
    }

    /// Where stateful processors keep local state: `state_dir`, else `.meshhost/<name>` beside
    /// the pipeline file.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| self.base_dir.join(".meshhost").join(&self.name))
    }

    /// The consumer group: `kafka.group_id`, else `meshhost-<name>`.
    pub fn group_id(&self) -> String {
        self.kafka.group_id.clone().unwrap_or_else(|| format!("meshhost-{}", self.name))
    }

    /// Read and check a pipeline file.
    pub fn load(path: &Path) -> Result<PipelineConfig, Problems> {
        match Self::load_partial(path) {
            (Some(config), problems) => problems.into_result(config),
            (None, problems) => Err(problems),
        }
    }

    /// Read and check a pipeline file, keeping what could be read even when there are
    /// problems, so that later checks (the plugins, the schemas) can report theirs too.
    pub fn load_partial(path: &Path) -> (Option<PipelineConfig>, Problems) {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => return (None, Problems::one("", format!("cannot read {}: {e}", path.display()))),
        };
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
        Self::parse_partial(&text, &base_dir)
    }

    /// Check a pipeline file's text; relative paths are resolved against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<PipelineConfig, Problems> {
        match Self::parse_partial(text, base_dir) {
            (Some(config), problems) => problems.into_result(config),
            (None, problems) => Err(problems),
        }
    }

    /// Like [`parse`](Self::parse), but returns what could be read along with the problems.
    pub fn parse_partial(text: &str, base_dir: &Path) -> (Option<PipelineConfig>, Problems) {
        let mut problems = Problems::default();
        let document: serde_yaml::Value = match serde_yaml::from_str(text) {
            Ok(document) => document,
            Err(e) => return (None, Problems::one("", format!("not valid YAML: {e}"))),
        };
        let serde_yaml::Value::Mapping(top) = document else {
            return (None, Problems::one("", "the pipeline file must be a mapping"));
        };

        let mut config = PipelineConfig {
            name: String::new(),
            kafka: KafkaConfig::default(),
            registry: None,
            sources: IndexMap::new(),
            processors: IndexMap::new(),
            sinks: IndexMap::new(),
            dead_letter: None,
            state_dir: None,
            schema_registry: None,
            catalog: None,
            observability: None,
            base_dir: base_dir.to_path_buf(),
            unreadable_ids: Vec::new(),
        };
        let mut saw_name = false;
        for (key, value) in top {
            let Some(key) = key.as_str().map(str::to_string) else {
                problems.push("", format!("keys must be strings, found {key:?}"));
                continue;
            };
            match key.as_str() {
                "version" => {
                    if value.as_u64() != Some(1) {
                        problems.push("version", "only version 1 is supported");
                    }
                }
                "name" => match value.as_str() {
                    Some(name) if valid_id(name) => {
                        config.name = name.to_string();
                        saw_name = true;
                    }
                    _ => problems.push("name", "must be an id: letters, digits, '-' and '_'"),
                },
                "kafka" => {
                    if let Some(kafka) = section(&mut problems, "kafka", value) {
                        config.kafka = kafka;
                    }
                }
                "registry" => match value.as_str() {
                    Some(dir) => config.registry = Some(base_dir.join(dir)),
                    None => problems.push("registry", "must be a directory path"),
                },
                "sources" => config.sources = entities(&mut problems, &mut config.unreadable_ids, "sources", value),
                "processors" => {
                    config.processors = entities(&mut problems, &mut config.unreadable_ids, "processors", value);
                    for processor in config.processors.values_mut() {
                        processor.uses.resolve_path(base_dir);
                    }
                }
                "sinks" => config.sinks = entities(&mut problems, &mut config.unreadable_ids, "sinks", value),
                "dead_letter" => config.dead_letter = section(&mut problems, "dead_letter", value),
                "schema_registry" => config.schema_registry = section(&mut problems, "schema_registry", value),
                "catalog" => config.catalog = section(&mut problems, "catalog", value),
                "observability" => config.observability = section(&mut problems, "observability", value),
                "state_dir" => match value.as_str() {
                    Some(dir) => config.state_dir = Some(base_dir.join(dir)),
                    None => problems.push("state_dir", "must be a directory path"),
                },
                _ => problems.push(
                    &key,
                    "unknown key; expected one of version, name, kafka, registry, schema_registry, catalog, observability, sources, processors, sinks, dead_letter, state_dir",
                ),
            }
        }
        if let Some(catalog) = config.catalog.take() {
            config.set_catalog(catalog.url);
        }
        if !saw_name && !problems.mentions("name") {
            problems.push("name", "missing: every pipeline needs a name");
        }
        config.check(&mut problems);
        (Some(config), problems)
    }

    fn check(&self, problems: &mut Problems) {
        if let Some(Err((path, message))) = self.dead_letter.as_ref().map(DeadLetterConfig::failure_rate_limit) {
            problems.push(path, message);
        }
        if self.sources.is_empty() && self.unreadable_ids.is_empty() {
            problems.push("sources", "a pipeline needs at least one source");
        }
        if self.sinks.is_empty() && self.unreadable_ids.is_empty() {
            problems.push("sinks", "a pipeline needs at least one sink");
        }
        for (id, source) in &self.sources {
            if let Some(postgres) = &source.postgres {
                for (key, given) in [
                    ("source", source.source.is_some()),
                    ("topic", !source.topic.is_empty()),
                    ("format", source.format.is_some()),
                    ("schema", source.schema.is_some()),
                    ("subject", source.subject.is_some()),
                ] {
                    if given {
                        problems.push(
                            &format!("sources.{id}.{key}"),
                            "not for a postgres source: its schema comes from the table",
                        );
                    }
                }
                postgres.check(&format!("sources.{id}.postgres"), problems);
                continue;
            }
            if source.source.is_some() {
                for (key, given) in [
                    ("topic", !source.topic.is_empty()),
                    ("format", source.format.is_some()),
                    ("subject", source.subject.is_some()),
                ] {
                    if given {
                        problems.push(&format!("sources.{id}.{key}"), "comes from the catalog source; remove it");
                    }
                }
                continue; // the catalog URL may still come from --catalog: checked when resolved
            }
            if source.topic.is_empty() {
                problems.push(&format!("sources.{id}.topic"), "required (or source: NAME, a source of the catalog)");
            }
            let Some(format) = source.format else {
                problems.push(&format!("sources.{id}.format"), "required: avro, confluent-avro or json");
                continue;
            };
            if format == Format::Avro && source.schema.is_none() {
                problems.push(&format!("sources.{id}.schema"), "required for format avro");
            }
            if source.schema.is_none() && format == Format::Json {
                problems.push(&format!("sources.{id}.schema"), "required: processors need the schema of every input");
            }
            if source.subject.is_some() && format != Format::ConfluentAvro {
                problems.push(&format!("sources.{id}.subject"), "only for format confluent-avro");
            }
            if source.on_schema_change.is_some() && format != Format::ConfluentAvro {
                problems.push(&format!("sources.{id}.on_schema_change"), "only for format confluent-avro");
            }
        }
        for (id, sink) in &self.sinks {
            if let Some(postgres) = &sink.postgres {
                postgres.check(&format!("sinks.{id}.postgres"), problems);
                for (key, given) in [
                    ("topic", !sink.topic.is_empty()),
                    ("format", sink.format.is_some()),
                    ("subject", sink.subject.is_some()),
                    ("publish", sink.publish.is_some()),
                ] {
                    if given {
                        problems.push(&format!("sinks.{id}.{key}"), "not for a postgres sink (it writes a table)");
                    }
                }
                continue;
            }
            if sink.topic.is_empty() {
                problems.push(&format!("sinks.{id}.topic"), "required (or postgres: a table to write)");
            }
            if sink.format.is_none() {
                problems.push(&format!("sinks.{id}.format"), "required: avro, confluent-avro or json");
            }
            if sink.subject.is_some() && sink.format() != Format::ConfluentAvro {
                problems.push(&format!("sinks.{id}.subject"), "only for format confluent-avro");
            }
            if let Some(publish) = &sink.publish {
                if sink.format() != Format::ConfluentAvro {
                    problems.push(
                        &format!("sinks.{id}.publish"),
                        "only for format confluent-avro: a source's schema lives in the registry",
                    );
                }
                if !valid_id(&publish.name) {
                    problems.push(&format!("sinks.{id}.publish.name"), "must be an id: letters, digits, '-' and '_'");
                }
            }
        }
        for id in self.processors.keys() {
            if self.sources.contains_key(id) {
                problems.push(&format!("processors.{id}"), "this id is also a source id; ids must be unique");
            }
        }
        for (id, processor) in &self.processors {
            self.check_inputs(problems, &format!("processors.{id}.inputs"), &processor.inputs, Some(id));
        }
        for (id, sink) in &self.sinks {
            self.check_inputs(problems, &format!("sinks.{id}.inputs"), &sink.inputs, None);
        }
        if let Some(cycle) = graph::find_cycle(self) {
            problems.push("processors", format!("cycle: {}", cycle.join(" -> ")));
        }
    }

    fn check_inputs(&self, problems: &mut Problems, path: &str, inputs: &[InputRef], own_id: Option<&String>) {
        if inputs.is_empty() {
            problems.push(path, "needs at least one input");
        }
        for (i, input) in inputs.iter().enumerate() {
            let path = format!("{path}[{i}]");
            if self.sources.contains_key(&input.id) {
                if input.port.is_some() {
                    problems.push(&path, format!("source {:?} has no ports", input.id));
                }
            } else if self.processors.contains_key(&input.id) {
                if Some(&input.id) == own_id {
                    problems.push(&path, "a processor cannot read its own output");
                }
            } else if !self.unreadable_ids.contains(&input.id) {
                problems.push(&path, format!("unknown input {:?}: no source or processor has this id", input.id));
            }
        }
    }
}

/// An id: letters, digits, `-` and `_`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn section<T: DeserializeOwned>(problems: &mut Problems, path: &str, value: serde_yaml::Value) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(parsed) => Some(parsed),
        Err(error) => {
            let inner = error.path().to_string();
            let path = if inner == "." { path.to_string() } else { format!("{path}.{inner}") };
            problems.push(&path, error.into_inner().to_string());
            None
        }
    }
}

fn entities<T: DeserializeOwned>(
    problems: &mut Problems,
    unreadable_ids: &mut Vec<String>,
    path: &str,
    value: serde_yaml::Value,
) -> IndexMap<String, T> {
    let mut parsed = IndexMap::new();
    let serde_yaml::Value::Mapping(entries) = value else {
        problems.push(path, "must be a mapping of id to settings");
        return parsed;
    };
    for (id, value) in entries {
        let Some(id) = id.as_str().filter(|id| valid_id(id)) else {
            problems.push(path, format!("bad id {id:?}: use letters, digits, '-' and '_'"));
            continue;
        };
        match section(problems, &format!("{path}.{id}"), value) {
            Some(entity) => {
                parsed.insert(id.to_string(), entity);
            }
            None => unreadable_ids.push(id.to_string()),
        }
    }
    parsed
}

/// Every problem found in a pipeline, each with the path of what it is about.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Problems(pub Vec<Problem>);

/// One problem: `path: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted path into the pipeline file (`processors.slim.with.fields[1]`); empty for the file.
    pub path: String,
    pub message: String,
}

impl Problems {
    pub fn one(path: &str, message: impl Into<String>) -> Problems {
        let mut problems = Problems::default();
        problems.push(path, message);
        problems
    }

    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(Problem { path: path.to_string(), message: message.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn mentions(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.path == path)
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if problem.path.is_empty() {
                write!(f, "{}", problem.message)?;
            } else {
                write!(f, "{}: {}", problem.path, problem.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name: us-movies
kafka:
  bootstrap_servers: 127.0.0.1:9092
registry: ./registry
sources:
  movies:
    topic: movies
    format: avro
    schema: schemas/movie.avsc
processors:
  recent:
    uses: mesh/filter@0.1
    inputs: [movies]
    with:
      condition: "year >= 2000 && country == 'US'"
  slim:
    uses: mesh/projection@0.1
    inputs: [recent]
    with:
      fields: [id, title, year]
sinks:
  out:
    topic: movies-us
    format: avro
    inputs: [slim]
dead_letter:
  topic: us-movies-dlq
"#;

    #[test]
    fn the_design_example_parses() {
        let config = PipelineConfig::parse(EXAMPLE, Path::new("/p")).unwrap();
        assert_eq!(config.name, "us-movies");
        assert_eq!(config.group_id(), "meshhost-us-movies");
        assert_eq!(config.registry, Some(PathBuf::from("/p/./registry")));
        assert_eq!(config.processors.keys().collect::<Vec<_>>(), ["recent", "slim"]);
        assert_eq!(config.processors["slim"].options, Some(serde_json::json!({"fields": ["id", "title", "year"]})));
        assert_eq!(config.dead_letter.unwrap().topic, "us-movies-dlq");
    }

    /// Every way `parse` can fail is a problem with a path or a message, never a panic: the
    /// example with lines dropped, duplicated or garbled, and arbitrary text.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;
        use proptest::sample::Index;

        fn parse_or_say_why(text: &str) -> Result<(), TestCaseError> {
            if let Err(problems) = PipelineConfig::parse(text, Path::new("/p")) {
                prop_assert!(!problems.0.is_empty());
                for problem in &problems.0 {
                    prop_assert!(!problem.message.trim().is_empty(), "{problems}");
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000),
        ))]

            #[test]
            fn mangled_pipeline_files(
                edits in prop::collection::vec((any::<Index>(), 0..4u8, "[ a-z:\\[\\]{}\\-#'\"\\n]{0,8}"), 1..5),
            ) {
                let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_string).collect();
                for (at, edit, junk) in &edits {
                    let i = at.index(lines.len().max(1));
                    match (edit, lines.is_empty()) {
                        (_, true) => lines.push(junk.clone()),
                        (0, _) => { lines.remove(i); }
                        (1, _) => { let line = lines[i].clone(); lines.insert(i, line); }
                        (2, _) => { let cut = lines[i].len() / 2; lines[i].truncate(cut); lines[i].push_str(junk); }
                        _ => lines.insert(i, junk.clone()),
                    }
                }
                parse_or_say_why(&lines.join("\n"))?;
            }

            #[test]
            fn arbitrary_text(text in "\\PC{0,200}") {
                parse_or_say_why(&text)?;
            }
        }
    }

    #[test]
    fn the_failure_rate_limit_is_checked() {
        let limit = |extra: &str| PipelineConfig::parse(&format!("{EXAMPLE}{extra}"), Path::new("/p"));
        let config = limit("  max_ratio: 0.25\n").unwrap();
        let expected = FailureRateLimit { max_ratio: 0.25, window: 1000 };
        assert_eq!(config.dead_letter.unwrap().failure_rate_limit(), Ok(Some(expected)));
        assert_eq!(expected.allowed_failures(), 250);
        let config = limit("  max_ratio: 0.5\n  window: 40\n").unwrap();
        let expected = FailureRateLimit { max_ratio: 0.5, window: 40 };
        assert_eq!(config.dead_letter.unwrap().failure_rate_limit(), Ok(Some(expected)));
        assert_eq!(limit("").unwrap().dead_letter.unwrap().failure_rate_limit(), Ok(None));
        for (extra, problem) in [
            ("  max_ratio: 1.5\n", "dead_letter.max_ratio: must be more than 0 and less than 1, got 1.5"),
            ("  max_ratio: 0\n", "dead_letter.max_ratio: must be more than 0 and less than 1, got 0"),
            ("  max_ratio: 0.5\n  window: 0\n", "dead_letter.window: must be at least 1"),
            ("  window: 10\n", "dead_letter.window: needs max_ratio (the share of failures that stops the run)"),
        ] {
            assert_eq!(limit(extra).unwrap_err().to_string(), problem, "{extra}");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = EXAMPLE
            .replace("    format: avro\n    schema", "    formt: avro\n    schema")
            .replace("inputs: [recent]", "inputs: [recnt]")
            .replace("uses: mesh/filter@0.1", "uses: mesh/filter")
            + "extra: 1\n";
        let problems = PipelineConfig::parse(&text, Path::new(".")).unwrap_err();
        let paths: Vec<&str> = problems.0.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["sources.movies.formt", "processors.recent.uses", "extra", "processors.slim.inputs[0]"],
            "{problems}"
        );
        // The unreadable source is not reported again as an unknown input of `recent`, nor
        // the unreadable `recent` as an unknown input of `slim`'s neighbours.
        assert!(!problems.to_string().contains("unknown input \"movies\""), "{problems}");
        assert!(problems.to_string().contains("neither NAMESPACE/NAME@VERSION-REQUIREMENT"), "{problems}");
        assert!(problems.to_string().contains("unknown field `formt`"), "{problems}");
        assert!(problems.to_string().contains("unknown input \"recnt\""), "{problems}");
    }

    #[test]
    fn cycles_are_found() {
        let text = EXAMPLE.replace("inputs: [movies]", "inputs: [movies, slim]");
        let problems = PipelineConfig::parse(&text, Path::new(".")).unwrap_err();
        assert_eq!(problems.to_string(), "processors: cycle: recent -> slim -> recent");
    }
}
