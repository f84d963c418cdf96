//! `meshhost source ...`: the sources catalog from the command line. Plain text for people,
//! `--json` for scripts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use meshhost_avro::Schema;

use super::common::CliError;
use crate::catalog::client::{CatalogClient, SourceDetails};
use crate::catalog::sources::{Origin, SourceEntry, SourceView};
use crate::config::{Format, Problems};
use crate::schema_registry::RegistryClient;

/// The formats a published source may have (a source's schema lives in the registry).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SourceFormat {
    ConfluentAvro,
    Avro,
    Json,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LineageFormat {
    Text,
    Dot,
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
        format: SourceFormat,
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
        format: LineageFormat,
    },
}

pub fn execute(url: &str, command: SourceCommand) -> Result<(), CliError> {
    let catalog = CatalogClient::new(RegistryClient::for_url(url));
    match command {
        SourceCommand::Publish { name, topic, schema, subject, format, description, owner, tags, force } => {
            let subject = subject.unwrap_or_else(|| format!("{topic}-value"));
            if let Some(path) = schema {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let id = catalog.registry().register_with(&subject, &text, force).map_err(refused)?;
                eprintln!("schema id {id} under subject {subject:?}");
            }
            let format = match format {
                SourceFormat::ConfluentAvro => Format::ConfluentAvro,
                SourceFormat::Avro => Format::Avro,
                SourceFormat::Json => Format::Json,
            };
            let entry = SourceEntry {
                name: name.clone(),
                description,
                owner,
                tags,
                topic,
                format,
                subject,
                origin: Origin::Published,
                deprecated: None,
            };
            catalog.publish(&entry).map_err(refused)?;
            eprintln!("published source {name}");
            Ok(())
        }
        SourceCommand::List { json } => {
            let sources = catalog.sources(None).map_err(refused)?;
            print_list(&sources, json);
            Ok(())
        }
        SourceCommand::Search { text, json } => {
            let sources = catalog.sources(Some(&text)).map_err(refused)?;
            print_list(&sources, json);
            Ok(())
        }
        SourceCommand::Show { name, json } => {
            let details = catalog.source(&name).map_err(refused)?;
            let all = catalog.sources(None).map_err(refused)?;
            if json {
                let mut value = serde_json::json!(details.view);
                if let Some(schema) = &details.schema {
                    value["schema"] = serde_json::json!({"version": schema.version, "id": schema.id, "schema": serde_json::from_str::<serde_json::Value>(&schema.schema).unwrap_or_default()});
                }
                value["versions"] = serde_json::json!(details.versions);
                value["derived"] = serde_json::json!(derived_from(&all, &name));
                println!("{}", serde_json::to_string_pretty(&value).expect("JSON"));
            } else {
                print!("{}", show(&details, &derived_from(&all, &name)));
            }
            Ok(())
        }
        SourceCommand::Deprecate { name, reason } => {
            catalog.deprecate(&name, &reason).map_err(refused)?;
            eprintln!("source {name} deprecated: {reason}");
            Ok(())
        }
        SourceCommand::Lineage { name, format } => {
            let all = catalog.sources(None).map_err(refused)?;
            if !all.iter().any(|v| v.entry.name == name) {
                return Err(CliError::Invalid(Problems::one(
                    "",
                    format!("no source {name:?} in the catalog at {url}"),
                )));
            }
            let graph = Lineage::of(&all, &name);
            print!(
                "{}",
                match format {
                    LineageFormat::Text => graph.text(&name),
                    LineageFormat::Dot => graph.dot(&name),
                }
            );
            Ok(())
        }
    }
}

/// A refusal of the catalog is the user's input being wrong (exit 2); no answer is a failure.
fn refused(error: crate::schema_registry::RegistryError) -> CliError {
    match error {
        crate::schema_registry::RegistryError::Refused { message, .. } => CliError::Invalid(Problems::one("", message)),
        error => CliError::Failed(error.into()),
    }
}

fn print_list(sources: &[SourceView], json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(sources).expect("JSON"));
        return;
    }
    for view in sources {
        let entry = &view.entry;
        let deprecated = if entry.deprecated.is_some() { " (deprecated)" } else { "" };
        println!(
            "{}{deprecated}  topic {} ({})  {}",
            entry.name,
            entry.topic,
            entry.format.as_str(),
            entry.description
        );
    }
}

/// The sources derived from `name`: published by pipelines that read it.
fn derived_from(all: &[SourceView], name: &str) -> Vec<String> {
    all.iter()
        .filter(|v| matches!(&v.entry.origin, Origin::Pipeline { inputs, .. } if inputs.iter().any(|i| i == name)))
        .map(|v| v.entry.name.clone())
        .collect()
}

/// `source show` for people.
fn show(details: &SourceDetails, derived: &[String]) -> String {
    let entry = &details.view.entry;
    let mut out = String::new();
    let _ = writeln!(out, "source {}", entry.name);
    if !entry.description.is_empty() {
        let _ = writeln!(out, "  {}", entry.description);
    }
    if let Some(reason) = &entry.deprecated {
        let _ = writeln!(out, "  DEPRECATED: {reason}");
    }
    let _ = writeln!(out, "  owner:    {}", entry.owner.as_deref().unwrap_or("-"));
    if !entry.tags.is_empty() {
        let _ = writeln!(out, "  tags:     {}", entry.tags.join(", "));
    }
    let _ = writeln!(out, "  topic:    {} ({})", entry.topic, entry.format.as_str());
    let versions: Vec<String> = details.versions.iter().map(u32::to_string).collect();
    let _ = writeln!(out, "  subject:  {} (versions {})", entry.subject, versions.join(", "));
    let _ = writeln!(out, "  origin:   {}", origin(&entry.origin));
    if let Some(schema) = &details.schema {
        let _ = writeln!(out, "  schema:   version {} (id {})", schema.version, schema.id);
        match Schema::parse(&schema.schema) {
            Ok(parsed) => out.push_str(&crate::schema_text::fields(&parsed)),
            Err(e) => {
                let _ = writeln!(out, "    (not readable: {e})");
            }
        }
    }
    let readers: Vec<String> = details
        .view
        .consumers
        .iter()
        .map(|c| match c.version {
            0 => format!("{} (a reader schema of its own)", c.pipeline),
            version => format!("{} (version {version})", c.pipeline),
        })
        .collect();
    let _ = writeln!(out, "  read by:  {}", if readers.is_empty() { "-".to_string() } else { readers.join(", ") });
    let _ = writeln!(out, "  derived:  {}", if derived.is_empty() { "-".to_string() } else { derived.join(", ") });
    out
}

fn origin(origin: &Origin) -> String {
    match origin {
        Origin::Published => "published".to_string(),
        Origin::Pipeline { pipeline, inputs, processors } => {
            let steps: Vec<String> = processors
                .iter()
                .map(|p| format!("{} {} {}", p.id, p.plugin, p.digest.chars().take(19).collect::<String>()))
                .collect();
            format!("pipeline {pipeline} reading {} through {}", inputs.join(", "), steps.join("; "))
        }
    }
}

/// Sources and pipelines, linked: source → pipeline (it reads it), pipeline → source (it
/// publishes it).
struct Lineage {
    /// (from, to) with nodes spelled `source NAME` / `pipeline NAME`.
    edges: BTreeSet<(String, String)>,
}

impl Lineage {
    /// The part of the catalog's graph connected to `name` upstream and downstream.
    fn of(all: &[SourceView], name: &str) -> Lineage {
        let mut every: BTreeSet<(String, String)> = BTreeSet::new();
        for view in all {
            let source = format!("source {}", view.entry.name);
            for consumer in &view.consumers {
                every.insert((source.clone(), format!("pipeline {}", consumer.pipeline)));
            }
            if let Origin::Pipeline { pipeline, inputs, .. } = &view.entry.origin {
                let pipeline = format!("pipeline {pipeline}");
                for input in inputs {
                    let input = match input.strip_prefix("topic:") {
                        Some(topic) => format!("topic {topic}"),
                        None => format!("source {input}"),
                    };
                    every.insert((input, pipeline.clone()));
                }
                every.insert((pipeline, source.clone()));
            }
        }
        let start = format!("source {name}");
        let mut kept = BTreeSet::new();
        for upstream in [true, false] {
            let mut frontier = vec![start.clone()];
            let mut seen = BTreeSet::from([start.clone()]);
            while let Some(node) = frontier.pop() {
                for edge in &every {
                    let (near, far) = if upstream { (&edge.1, &edge.0) } else { (&edge.0, &edge.1) };
                    if *near == node {
                        kept.insert(edge.clone());
                        if seen.insert(far.clone()) {
                            frontier.push(far.clone());
                        }
                    }
                }
            }
        }
        Lineage { edges: kept }
    }

    fn text(&self, name: &str) -> String {
        let mut out = format!("lineage of source {name}\n");
        if self.edges.is_empty() {
            out.push_str("  (no pipeline reads or writes it)\n");
        }
        let mut by_from: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (from, to) in &self.edges {
            by_from.entry(from).or_default().push(to);
        }
        for (from, tos) in by_from {
            let _ = writeln!(out, "  {from} -> {}", tos.join(", "));
        }
        out
    }

    fn dot(&self, name: &str) -> String {
        let start = format!("source {name}");
        let mut nodes: BTreeSet<&str> = BTreeSet::from([start.as_str()]);
        for (from, to) in &self.edges {
            nodes.insert(from);
            nodes.insert(to);
        }
        let mut out = format!("digraph \"lineage of {name}\" {{\n  rankdir=LR;\n");
        for node in nodes {
            let shape = if node.starts_with("pipeline ") { "box" } else { "cylinder" };
            let style = if node == start { ", style=bold" } else { "" };
            let _ = writeln!(out, "  \"{node}\" [shape={shape}{style}];");
        }
        for (from, to) in &self.edges {
            let _ = writeln!(out, "  \"{from}\" -> \"{to}\";");
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::sources::{ConsumerEntry, ProcessorLineage};

    fn view(name: &str, origin: Origin, consumers: &[&str]) -> SourceView {
        SourceView {
            entry: SourceEntry {
                name: name.into(),
                description: String::new(),
                owner: None,
                tags: Vec::new(),
                topic: name.into(),
                format: Format::ConfluentAvro,
                subject: format!("{name}-value"),
                origin,
                deprecated: None,
            },
            consumers: consumers.iter().map(|p| ConsumerEntry { pipeline: p.to_string(), version: 1 }).collect(),
        }
    }

    fn derived(pipeline: &str, inputs: &[&str]) -> Origin {
        Origin::Pipeline {
            pipeline: pipeline.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            processors: vec![ProcessorLineage {
                id: "j".into(),
                plugin: "mesh/join@0.1.0".into(),
                digest: "sha256:ab".into(),
            }],
        }
    }

    #[test]
    fn lineage_follows_both_directions_and_nothing_else() {
        let all = vec![
            view("movies", Origin::Published, &["enrich"]),
            view("talents", Origin::Published, &["enrich"]),
            view("enriched", derived("enrich", &["movies", "talents"]), &["index"]),
            view("search", derived("index", &["enriched"]), &[]),
            view("unrelated", Origin::Published, &["other"]),
        ];
        let graph = Lineage::of(&all, "enriched");
        assert_eq!(
            graph.text("enriched"),
            "lineage of source enriched\n  pipeline enrich -> source enriched\n  pipeline index -> source search\n  source enriched -> pipeline index\n  source movies -> pipeline enrich\n  source talents -> pipeline enrich\n"
        );
        let down = Lineage::of(&all, "movies").text("movies");
        assert!(
            down.contains("source movies -> pipeline enrich") && down.contains("pipeline index -> source search"),
            "{down}"
        );
        assert!(!down.contains("talents"), "siblings upstream of a descendant are not the source's lineage: {down}");
        let dot = graph.dot("enriched");
        assert!(
            dot.contains("\"source enriched\" [shape=cylinder, style=bold];")
                && dot.contains("\"pipeline enrich\" -> \"source enriched\";"),
            "{dot}"
        );
    }

    #[test]
    fn show_prints_fields_with_docs_and_readers() {
        let schema = r#"{"type": "record", "name": "Movie", "fields": [
            {"name": "id", "type": "long", "doc": "the catalog id"},
            {"name": "director", "type": ["null", {"type": "record", "name": "Person", "fields": [{"name": "name", "type": "string"}]}]}]}"#;
        let details = SourceDetails {
            view: view("movies", Origin::Published, &["enrich"]),
            schema: Some(crate::schema_registry::SubjectVersion {
                subject: "movies-value".into(),
                version: 2,
                id: 7,
                schema: schema.into(),
            }),
            versions: vec![1, 2],
        };
        let text = show(&details, &["enriched".to_string()]);
        assert!(text.contains("    id: long  — the catalog id\n"), "{text}");
        assert!(text.contains("    director: record Person or null\n        name: string\n"), "{text}");
        assert!(text.contains("subject:  movies-value (versions 1, 2)"), "{text}");
        assert!(text.contains("read by:  enrich (version 1)") && text.contains("derived:  enriched"), "{text}");
    }
}
