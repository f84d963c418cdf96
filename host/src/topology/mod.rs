//! The live pipeline: sources, processor instances and sinks wired by their edges.
//!
//! [`plan`] builds it offline from a checked [`PipelineConfig`]: it reads the source schemas,
//! loads every plugin and runs `init` along the DAG, so each edge's schema is known — and each
//! mismatch reported — before any record flows. `meshhost validate` stops there; `meshhost run`
//! hands the result to [`run::run`], which feeds the [`execute::Executor`] from every source
//! kind through the one [`run_loop::RunLoop`].

use std::sync::Arc;

use meshhost_avro::Schema;

use crate::codec::{SinkEncoder, SourceDecoder};
use crate::config::{Format, InputRef, LimitsConfig, PipelineConfig, Problems};
pub use crate::observe::Edge;
use crate::observe::Layout;
use crate::plugin::bindings::{InputPort, ValueFormat};
use crate::plugin::{InitFailure, Limits, PluginEngine, ProcessorInstance};
use crate::registry::PluginResolver;

pub mod breaker;
pub mod diff;
pub mod dry_run;
pub mod execute;
pub mod failure;
pub mod handover;
pub mod run;
pub mod run_loop;
pub mod schema_registry;
pub mod sources;

/// A pipeline ready to run.
pub struct Topology {
    pub sources: Vec<SourceNode>,
    /// In processing order: every processor after the processors it reads from.
    pub processors: Vec<ProcessorNode>,
    pub sinks: Vec<SinkNode>,
    /// What the pipeline tells the sources catalog when it runs, if it has one.
    pub catalog: Option<schema_registry::CatalogBinding>,
}

/// An Avro schema with its JSON text (what plugins receive).
#[derive(Debug, Clone)]
pub struct EdgeSchema {
    pub text: String,
    pub parsed: Arc<Schema>,
}

/// Where records of one output go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Input port `input` of processor `index` (in [`Topology::processors`]).
    Processor { index: usize, input: u32 },
    /// Sink `index` (in [`Topology::sinks`]).
    Sink { index: usize },
}

pub struct SourceNode {
    pub id: String,
    /// The Kafka topic; for a captured table, its `schema.table` (what dead-letter headers name).
    pub topic: String,
    /// A Postgres table captured instead of a topic.
    pub postgres: Option<Box<crate::source::postgres::capture::CapturedTable>>,
    pub decoder: SourceDecoder,
    pub schema: EdgeSchema,
    pub targets: Vec<Target>,
}

pub struct ProcessorNode {
    pub id: String,
    pub instance: ProcessorInstance,
    /// The source topics whose records reach this processor, directly or through others. A
    /// stateful processor needs them co-partitioned (same partition count).
    pub source_topics: Vec<String>,
    pub format: ValueFormat,
    /// The schema of each input port, in `inputs:` order.
    pub inputs: Vec<EdgeSchema>,
    pub outputs: Vec<OutputNode>,
    /// The plugin as a lock file records it (name, version, digest); `None` for a processor
    /// built outside a pipeline file.
    pub plugin: Option<crate::registry::lock::LockedPlugin>,
}

pub struct OutputNode {
    pub name: String,
    pub schema: EdgeSchema,
    pub targets: Vec<Target>,
}

pub struct SinkNode {
    pub id: String,
    /// The Kafka topic, or a table's destination name (`postgres:schema.table`).
    pub topic: String,
    /// The table it writes, for a Postgres sink.
    pub postgres: Option<Arc<crate::config::postgres::PostgresSinkConfig>>,
    pub encoder: SinkEncoder,
    pub schema: EdgeSchema,
}

impl Topology {
    /// A topology of one processor (its id is the instance's): a source per input port (named
    /// after the port, Avro) and a sink per output port (named after the port, Avro). For running one plugin on its own:
    /// `meshhost plugin test`, the stage benchmark, executor tests.
    pub fn single_processor(
        instance: ProcessorInstance,
        inputs: Vec<(String, EdgeSchema)>,
    ) -> Result<Topology, String> {
        let init = instance.init_result().clone();
        let mut outputs = Vec::new();
        let mut sinks = Vec::new();
        for (index, port) in init.outputs.iter().enumerate() {
            let schema = EdgeSchema::parse(&port.schema).map_err(|e| format!("output {:?}: {e}", port.name))?;
            sinks.push(SinkNode {
                id: port.name.clone(),
                topic: port.name.clone(),
                postgres: None,
                encoder: SinkEncoder::Avro,
                schema: schema.clone(),
            });
            outputs.push(OutputNode { name: port.name.clone(), schema, targets: vec![Target::Sink { index }] });
        }
        let sources = inputs
            .iter()
            .enumerate()
            .map(|(input, (name, schema))| SourceNode {
                id: name.clone(),
                topic: name.clone(),
                postgres: None,
                decoder: SourceDecoder::Avro,
                schema: schema.clone(),
                targets: vec![Target::Processor { index: 0, input: input as u32 }],
            })
            .collect();
        let processor = ProcessorNode {
            id: instance.processor_id().to_string(),
            instance,
            source_topics: inputs.iter().map(|(name, _)| name.clone()).collect(),
            format: init.format,
            inputs: inputs.into_iter().map(|(_, schema)| schema).collect(),
            outputs,
            plugin: None,
        };
        Ok(Topology { sources, processors: vec![processor], sinks, catalog: None })
    }
}

impl Topology {
    /// Every edge: the sources in order, then each processor's output ports in order (the
    /// numbering [`crate::observe::EdgeObserver`] uses).
    pub fn edges(&self) -> Vec<Edge> {
        let mut edges: Vec<Edge> =
            self.sources.iter().map(|s| Edge { names: vec![s.id.clone()], schema: s.schema.parsed.clone() }).collect();
        for processor in &self.processors {
            for (port, output) in processor.outputs.iter().enumerate() {
                let mut names = vec![format!("{}.{}", processor.id, output.name)];
                if port == 0 {
                    names.insert(0, processor.id.clone());
                }
                edges.push(Edge { names, schema: output.schema.parsed.clone() });
            }
        }
        edges
    }
}

impl Topology {
    /// Its nodes' names, for the labels of its metrics.
    pub fn layout(&self) -> Layout {
        Layout {
            sources: self.sources.iter().map(|s| s.id.clone()).collect(),
            processors: self
                .processors
                .iter()
                .map(|p| (p.id.clone(), p.inputs.len(), p.outputs.iter().map(|o| o.name.clone()).collect()))
                .collect(),
            sinks: self.sinks.iter().map(|s| s.id.clone()).collect(),
        }
    }
}

impl EdgeSchema {
    /// Whether a datum of one is a datum of the other: the same Parsing Canonical Form (docs,
    /// aliases, attributes and logical types aside). Enough to pass a record's bytes on
    /// without checking them again.
    pub fn same_as(&self, other: &EdgeSchema) -> bool {
        self.parsed.same_as(&other.parsed)
    }

    /// Whether the two mean the same: the same canonical form and the same logical types,
    /// defaults and other attributes; only docs and aliases may differ. What a sink needs of
    /// all its inputs, since it writes them under one schema (a `decimal` of scale 2 and one of
    /// scale 4 have one canonical form, but not one meaning).
    pub fn same_meaning(&self, other: &EdgeSchema) -> bool {
        self.parsed.same_meaning(&other.parsed)
    }

    /// Parse a schema's JSON text.
    pub fn parse(text: &str) -> Result<EdgeSchema, meshhost_avro::SchemaError> {
        Ok(EdgeSchema { text: text.to_string(), parsed: Arc::new(Schema::parse(text)?) })
    }
}

/// Build the topology, reporting every problem with its path in the pipeline file.
pub fn plan(config: &PipelineConfig, engine: &PluginEngine, plugins: &PluginResolver) -> Result<Topology, Problems> {
    let mut problems = Problems::default();
    let mut topology = Topology { sources: Vec::new(), processors: Vec::new(), sinks: Vec::new(), catalog: None };
    let mut reads = Vec::new();

    let registry = schema_registry::client(config);
    for (id, source) in &config.sources {
        let path = format!("sources.{id}");
        if let Some(postgres) = &source.postgres {
            let planned = crate::source::postgres::plan_source(config, id, postgres).and_then(|(table, schema)| {
                let schema = EdgeSchema::parse(&schema.to_string())
                    .map_err(|e| format!("the schema derived from table {}: {e}", table.table.qualified_name()))?;
                Ok((table, schema))
            });
            match planned {
                Ok((table, schema)) => topology.sources.push(SourceNode {
                    id: id.clone(),
                    topic: table.table.qualified_name(),
                    postgres: Some(Box::new(table)),
                    decoder: SourceDecoder::Avro,
                    schema,
                    targets: Vec::new(),
                }),
                Err(message) => problems.push(&format!("{path}.postgres"), message),
            }
            continue;
        }
        let confluent = source.format() == Format::ConfluentAvro;
        if confluent && registry.is_none() {
            problems.push(&format!("{path}.format"), schema_registry::NO_REGISTRY);
            continue;
        }
        // The reader schema, and which version of the subject it is (when known).
        let reader = match &source.schema {
            Some(schema_path) => read_schema(&config.base_dir.join(schema_path))
                .map(|schema| (schema, None))
                .map_err(|m| (format!("{path}.schema"), m)),
            None if confluent => {
                let pinned = plugins.lock_file().and_then(|lock| lock.schema(id, &source.subject()));
                schema_registry::reader_schema(registry.as_deref().expect("checked"), &source.subject(), pinned)
                    .map(|(schema, version)| (schema, Some(version)))
                    .map_err(|m| (path.clone(), m))
            }
            None => continue, // reported when the file was loaded
        };
        match reader {
            Ok((schema, version)) => {
                if let (Some(name), Some(registry)) = (&source.source, &registry) {
                    let version = version.unwrap_or_else(|| {
                        schema_registry::version_of(registry, &source.subject(), &schema.text).unwrap_or(0)
                    });
                    reads.push((name.clone(), version));
                }
                topology.sources.push(SourceNode {
                    id: id.clone(),
                    topic: source.topic.clone(),
                    postgres: None,
                    decoder: SourceDecoder::new(source.format(), registry.clone(), source.on_schema_change()),
                    schema,
                    targets: Vec::new(),
                })
            }
            Err((path, message)) => problems.push(&path, message),
        }
    }

    for id in crate::config::processing_order(config) {
        let processor = &config.processors[&id];
        let mut inputs = Vec::new();
        for (i, input) in processor.inputs.iter().enumerate() {
            match upstream_schema(&topology, input) {
                Upstream::Found(schema) => inputs.push(schema),
                Upstream::Failed => {}
                Upstream::NoPort(message) => problems.push(&format!("processors.{id}.inputs[{i}]"), message),
            }
        }
        if inputs.len() != processor.inputs.len() {
            continue; // an upstream failed and was reported; checking this one would only echo it
        }
        let mut locked = None;
        let plugin = plugins.resolve(&processor.uses).map_err(|e| e.to_string()).and_then(|resolved| {
            locked = Some(resolved.locked.clone());
            engine.load(&resolved.label, &resolved.bytes).map_err(|e| format!("{e:#}"))
        });
        let plugin = match plugin {
            Ok(plugin) => plugin,
            Err(message) => {
                problems.push(&format!("processors.{id}.uses"), message);
                continue;
            }
        };
        let options = processor.options.clone().unwrap_or_else(|| serde_json::json!({}));
        let ports: Vec<InputPort> = processor
            .inputs
            .iter()
            .zip(&inputs)
            .map(|(name, schema)| InputPort {
                name: name.to_string(),
                schema: schema.text.clone(),
                value_names: meshhost_avro::value_names(&schema.parsed),
            })
            .collect();
        let instance = match ProcessorInstance::new(&id, &plugin, limits(&processor.limits), options.to_string(), ports)
        {
            Ok(instance) => instance,
            Err(InitFailure::Config(errors)) => {
                for error in errors {
                    let path = if error.path.is_empty() {
                        format!("processors.{id}")
                    } else {
                        format!("processors.{id}.with.{}", error.path)
                    };
                    problems.push(&path, error.message);
                }
                continue;
            }
            Err(InitFailure::Crashed(message)) => {
                problems.push(&format!("processors.{id}.uses"), message);
                continue;
            }
        };
        let init = instance.init_result().clone();
        let mut outputs = Vec::new();
        for port in &init.outputs {
            match EdgeSchema::parse(&port.schema) {
                Ok(schema) => outputs.push(OutputNode { name: port.name.clone(), schema, targets: Vec::new() }),
                Err(e) => problems.push(
                    &format!("processors.{id}"),
                    format!("{} declared an invalid schema for output {:?}: {e}", plugin.label, port.name),
                ),
            }
        }
        if init.outputs.is_empty() {
            problems.push(&format!("processors.{id}"), format!("{} declared no output ports", plugin.label));
        }
        let mut source_topics: Vec<String> = Vec::new();
        for input in &processor.inputs {
            let topics = match topology.sources.iter().find(|s| s.id == input.id) {
                Some(source) => vec![source.topic.clone()],
                None => topology
                    .processors
                    .iter()
                    .find(|p| p.id == input.id)
                    .map(|p| p.source_topics.clone())
                    .unwrap_or_default(),
            };
            for topic in topics {
                if !source_topics.contains(&topic) {
                    source_topics.push(topic);
                }
            }
        }
        topology.processors.push(ProcessorNode {
            id: id.clone(),
            instance,
            source_topics,
            format: init.format,
            inputs,
            outputs,
            plugin: locked,
        });
    }

    for (id, sink) in &config.sinks {
        let mut schema: Option<EdgeSchema> = None;
        let mut complete = true;
        for (i, input) in sink.inputs.iter().enumerate() {
            match upstream_schema(&topology, input) {
                Upstream::Found(found) => match &schema {
                    None => schema = Some(found),
                    Some(first) if !first.same_meaning(&found) => problems.push(
                        &format!("sinks.{id}.inputs[{i}]"),
                        format!(
                            "its schema differs from that of {:?}; put a mesh/union before the sink",
                            sink.inputs[0].to_string()
                        ),
                    ),
                    Some(_) => {}
                },
                Upstream::Failed => complete = false,
                Upstream::NoPort(message) => problems.push(&format!("sinks.{id}.inputs[{i}]"), message),
            }
        }
        let encoder = match (sink.format(), &registry) {
            (Format::Avro, _) => SinkEncoder::Avro,
            (Format::Json, _) => SinkEncoder::Json,
            (Format::ConfluentAvro, Some(registry)) => {
                SinkEncoder::ConfluentAvro { registry: registry.clone(), subject: sink.subject(), id: None }
            }
            (Format::ConfluentAvro, None) => {
                problems.push(&format!("sinks.{id}.format"), schema_registry::NO_REGISTRY);
                continue;
            }
        };
        if let (Some(schema), true) = (schema, complete) {
            topology.sinks.push(SinkNode {
                id: id.clone(),
                topic: sink.destination(id),
                postgres: sink.postgres.clone().map(Arc::new),
                encoder,
                schema,
            });
        }
    }

    topology.catalog = schema_registry::catalog_binding(config, &topology, reads, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    wire(config, &mut topology);
    Ok(topology)
}

/// Check against the broker's metadata that every stateful processor's source topics have the
/// same partition count: its state is kept per partition, so its inputs must be co-partitioned.
pub fn check_partitions(topology: &Topology, partition_count: impl Fn(&str) -> Option<usize>) -> Problems {
    let mut problems = Problems::default();
    for processor in topology.processors.iter().filter(|p| p.instance.is_stateful()) {
        let counts: Vec<(String, usize)> =
            processor.source_topics.iter().filter_map(|t| partition_count(t).map(|n| (t.clone(), n))).collect();
        if counts.windows(2).any(|w| w[0].1 != w[1].1) {
            let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t} has {n}")).collect();
            problems.push(
                &format!("processors.{}.inputs", processor.id),
                format!(
                    "inputs have different partition counts ({}); a stateful processor keeps state per partition, so its inputs must be co-partitioned: same partition count, keyed by the join key",
                    list.join(", ")
                ),
            );
        }
    }
    problems
}

enum Upstream {
    Found(EdgeSchema),
    /// The upstream itself failed to plan (already reported).
    Failed,
    /// The upstream exists but has no such port.
    NoPort(String),
}

fn upstream_schema(topology: &Topology, input: &InputRef) -> Upstream {
    if let Some(source) = topology.sources.iter().find(|s| s.id == input.id) {
        return Upstream::Found(source.schema.clone());
    }
    let Some(processor) = topology.processors.iter().find(|p| p.id == input.id) else {
        return Upstream::Failed;
    };
    match output_index(processor, input.port.as_deref()) {
        Some(index) => Upstream::Found(processor.outputs[index].schema.clone()),
        None => {
            let ports: Vec<&str> = processor.outputs.iter().map(|o| o.name.as_str()).collect();
            Upstream::NoPort(format!(
                "processor {:?} has no output port {:?}; its ports are: {}",
                input.id,
                input.port.as_deref().unwrap_or(""),
                ports.join(", ")
            ))
        }
    }
}

fn output_index(processor: &ProcessorNode, port: Option<&str>) -> Option<usize> {
    match port {
        None => (!processor.outputs.is_empty()).then_some(0),
        Some(port) => processor.outputs.iter().position(|o| o.name == port),
    }
}

/// Fill in every node's targets from the `inputs:` lists.
fn wire(config: &PipelineConfig, topology: &mut Topology) {
    let mut edges: Vec<(&InputRef, Target)> = Vec::new();
    for (index, processor) in topology.processors.iter().enumerate() {
        for (input, upstream) in config.processors[&processor.id].inputs.iter().enumerate() {
            edges.push((upstream, Target::Processor { index, input: input as u32 }));
        }
    }
    for (index, sink) in topology.sinks.iter().enumerate() {
        for upstream in &config.sinks[&sink.id].inputs {
            edges.push((upstream, Target::Sink { index }));
        }
    }
    for (input, target) in edges {
        if let Some(source) = topology.sources.iter_mut().find(|s| s.id == input.id) {
            source.targets.push(target);
        } else if let Some(processor) = topology.processors.iter_mut().find(|p| p.id == input.id) {
            let port = output_index(processor, input.port.as_deref()).expect("checked by plan");
            processor.outputs[port].targets.push(target);
        }
    }
}

/// A processor's limits: the file's values, else the defaults.
fn limits(config: &LimitsConfig) -> Limits {
    let default = Limits::default();
    Limits {
        memory_bytes: config.memory_mb.map(|mb| (mb as usize) << 20).unwrap_or(default.memory_bytes),
        timeout: config.timeout_ms.map(std::time::Duration::from_millis).unwrap_or(default.timeout),
    }
}

fn read_schema(path: &std::path::Path) -> Result<EdgeSchema, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    EdgeSchema::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}
