//! `meshhost graph`: a planned pipeline's DAG as text, Graphviz `dot` or Mermaid, each edge
//! labelled with the field names of the schema it carries, stateful processors marked.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::common::{load_and_plan, CliError, Overrides};
use crate::config::{Format, PipelineConfig};
use crate::plugin::PluginEngine;
use crate::topology::{EdgeSchema, Target, Topology};

/// How to draw the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Nodes and edges, one per line.
    Text,
    /// Graphviz (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart (renders in GitHub and GitLab markdown).
    Mermaid,
}

/// One node of the drawing.
struct Node {
    id: String,
    kind: NodeKind,
    /// What it is: `topic movies (avro)`, `mesh/filter@0.1`.
    detail: String,
}

#[derive(Clone, Copy, PartialEq)]
enum NodeKind {
    Source,
    Processor { stateful: bool },
    Sink,
}

/// One edge: from a node (and port, for processors with several), to a node.
struct Edge {
    from: String,
    port: Option<String>,
    to: String,
    fields: String,
}

/// Draw `topology` (planned from `config`).
pub fn render(config: &PipelineConfig, topology: &Topology, format: GraphFormat) -> String {
    let (nodes, edges) = collect(config, topology);
    match format {
        GraphFormat::Text => text(&config.name, &nodes, &edges),
        GraphFormat::Dot => dot(&config.name, &nodes, &edges),
        GraphFormat::Mermaid => mermaid(&nodes, &edges),
    }
}

fn collect(config: &PipelineConfig, topology: &Topology) -> (Vec<Node>, Vec<Edge>) {
    let format = Format::as_str;
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    let target_id = |target: &Target| match *target {
        Target::Processor { index, .. } => topology.processors[index].id.clone(),
        Target::Sink { index } => topology.sinks[index].id.clone(),
    };
    for source in &topology.sources {
        let detail = format!("topic {} ({})", source.topic, format(source.decoder.format()));
        nodes.push(Node { id: source.id.clone(), kind: NodeKind::Source, detail });
        for target in &source.targets {
            let fields = fields(&source.schema);
            edges.push(Edge { from: source.id.clone(), port: None, to: target_id(target), fields });
        }
    }
    for processor in &topology.processors {
        let uses = config.processors.get(&processor.id).map(|p| p.uses.text.clone()).unwrap_or_default();
        let kind = NodeKind::Processor { stateful: processor.instance.is_stateful() };
        nodes.push(Node { id: processor.id.clone(), kind, detail: uses });
        let named_ports = processor.outputs.len() > 1;
        for output in &processor.outputs {
            for target in &output.targets {
                edges.push(Edge {
                    from: processor.id.clone(),
                    port: named_ports.then(|| output.name.clone()),
                    to: target_id(target),
                    fields: fields(&output.schema),
                });
            }
        }
    }
    for sink in &topology.sinks {
        let detail = match &sink.postgres {
            Some(table) => {
                let mode = match table.mode() {
                    crate::config::postgres::SinkMode::Upsert => format!("upsert on {}", table.key.join(", ")),
                    crate::config::postgres::SinkMode::Insert => "insert".to_string(),
                };
                let (schema, name) = table.schema_and_table();
                format!("table {schema}.{name} ({mode})")
            }
            None => format!("topic {} ({})", sink.topic, format(sink.encoder.format())),
        };
        nodes.push(Node { id: sink.id.clone(), kind: NodeKind::Sink, detail });
    }
    (nodes, edges)
}

/// The top-level field names of an edge's record schema (or its type, for other schemas).
fn fields(schema: &EdgeSchema) -> String {
    match schema.parsed.root_record() {
        Some(record) => record.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
        None => schema.parsed.root.describe(),
    }
}

fn kind_name(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Source => "source",
        NodeKind::Processor { stateful: false } => "processor",
        NodeKind::Processor { stateful: true } => "stateful processor",
        NodeKind::Sink => "sink",
    }
}

fn edge_from(edge: &Edge) -> String {
    match &edge.port {
        Some(port) => format!("{}.{port}", edge.from),
        None => edge.from.clone(),
    }
}

fn text(name: &str, nodes: &[Node], edges: &[Edge]) -> String {
    let mut out = format!("pipeline {name}\n");
    let width = nodes.iter().map(|n| n.id.len()).max().unwrap_or(0);
    let kinds = nodes.iter().map(|n| kind_name(n.kind).len()).max().unwrap_or(0);
    for node in nodes {
        let _ = writeln!(out, "  {:<width$}  {:<kinds$}  {}", node.id, kind_name(node.kind), node.detail);
    }
    out.push_str("edges\n");
    for edge in edges {
        let _ = writeln!(out, "  {} -> {}: {}", edge_from(edge), edge.to, edge.fields);
    }
    out
}

/// A double-quoted string for dot and Mermaid labels (a `"` in a name becomes `'`).
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "'"))
}

fn dot(name: &str, nodes: &[Node], edges: &[Edge]) -> String {
    let mut out = format!("digraph {} {{\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n", quoted(name));
    for node in nodes {
        let (shape, style) = match node.kind {
            NodeKind::Source | NodeKind::Sink => ("cylinder", ""),
            NodeKind::Processor { stateful: false } => ("box", ", style=rounded"),
            NodeKind::Processor { stateful: true } => ("box", ", style=\"rounded,bold\", peripheries=2"),
        };
        let label = format!("{}\\n{}\\n{}", node.id, node.detail, kind_name(node.kind));
        let _ = writeln!(out, "  {} [shape={shape}{style}, label={}];", quoted(&node.id), quoted(&label));
    }
    for edge in edges {
        let label = match &edge.port {
            Some(port) => format!("{port}: {}", edge.fields),
            None => edge.fields.clone(),
        };
        let _ = writeln!(out, "  {} -> {} [label={}];", quoted(&edge.from), quoted(&edge.to), quoted(&label));
    }
    out.push_str("}\n");
    out
}

fn mermaid(nodes: &[Node], edges: &[Edge]) -> String {
    // Mermaid ids must be plain words; ids here are letters, digits, '-' and '_'.
    let id = |id: &str| format!("n_{}", id.replace('-', "_"));
    let mut out = String::from("flowchart LR\n");
    for node in nodes {
        let label = quoted(&format!("{}<br/>{}<br/>{}", node.id, node.detail, kind_name(node.kind)));
        let shape = match node.kind {
            NodeKind::Source | NodeKind::Sink => format!("[({label})]"),
            NodeKind::Processor { stateful: false } => format!("({label})"),
            NodeKind::Processor { stateful: true } => format!("[[{label}]]"),
        };
        let _ = writeln!(out, "  {}{shape}", id(&node.id));
    }
    for edge in edges {
        let label = match &edge.port {
            Some(port) => format!("{port}: {}", edge.fields),
            None => edge.fields.clone(),
        };
        let _ = writeln!(out, "  {} -->|{}| {}", id(&edge.from), quoted(&label), id(&edge.to));
    }
    out
}

/// The arguments of `meshhost graph`.
#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// Plugin registry directory, overriding the file.
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// text (default), dot (Graphviz: `| dot -Tsvg > dag.svg`) or mermaid.
    #[arg(long, value_enum, default_value = "text")]
    pub format: GraphFormat,
    /// Schema Registry URL, overriding the file's `schema_registry.url`.
    #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
    pub schema_registry: Option<String>,
    /// Sources catalog URL, overriding the file's `catalog.url`.
    #[arg(long, env = "MESHHOST_CATALOG_URL")]
    pub catalog: Option<String>,
}

pub fn execute(args: GraphArgs) -> Result<(), CliError> {
    let GraphArgs { pipeline, registry, format, schema_registry, catalog } = args;
    let engine = PluginEngine::new()?;
    let overrides = Overrides { registry, schema_registry, catalog, offline: true };
    let (config, topology) = load_and_plan(&pipeline, overrides, &engine)?;
    print!("{}", render(&config, &topology, format));
    Ok(())
}
