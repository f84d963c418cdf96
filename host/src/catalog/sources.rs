//! The sources catalog: what teams publish — a name, what it is, who owns it, the topic, its
//! format and schema subject (the versions live in the registry beside it), where it comes from
//! — and which pipelines read it. Like [`super::Schemas`], the fold of the catalog topic.

use std::collections::BTreeMap;

use meshhost_avro::{AvroType, Schema};
use serde::{Deserialize, Serialize};

use crate::config::Format;

/// One source of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceEntry {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub topic: String,
    pub format: Format,
    /// The registry subject its schema versions live under.
    pub subject: String,
    #[serde(default)]
    pub origin: Origin,
    /// Why it is deprecated, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated: Option<String>,
}

/// Where a source's records come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Published by hand (`meshhost source publish`): an application writes the topic.
    #[default]
    Published,
    /// The output of a pipeline's sink.
    Pipeline {
        pipeline: String,
        /// What the pipeline reads: catalog sources by name, other topics as `topic:NAME`.
        inputs: Vec<String>,
        processors: Vec<ProcessorLineage>,
    },
}

/// A processor of the pipeline a derived source comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorLineage {
    pub id: String,
    /// `namespace/name@version`, or the component's path.
    pub plugin: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
}

/// A pipeline that reads a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerEntry {
    pub pipeline: String,
    /// The subject version its reader schema is (what it was planned against).
    pub version: u32,
}

/// A source with the pipelines that read it: what the API answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceView {
    #[serde(flatten)]
    pub entry: SourceEntry,
    pub consumers: Vec<ConsumerEntry>,
}

#[derive(Debug, Default)]
pub struct Sources {
    sources: BTreeMap<String, SourceEntry>,
    /// Source name → pipeline → consumer.
    consumers: BTreeMap<String, BTreeMap<String, ConsumerEntry>>,
}

impl Sources {
    pub fn put(&mut self, name: String, entry: Option<SourceEntry>) {
        match entry {
            Some(entry) => self.sources.insert(name, entry),
            None => self.sources.remove(&name),
        };
    }

    pub fn put_consumer(&mut self, source: String, pipeline: String, entry: Option<ConsumerEntry>) {
        let consumers = self.consumers.entry(source.clone()).or_default();
        match entry {
            Some(entry) => consumers.insert(pipeline, entry),
            None => consumers.remove(&pipeline),
        };
        if consumers.is_empty() {
            self.consumers.remove(&source);
        }
    }

    pub fn get(&self, name: &str) -> Option<SourceView> {
        self.sources.get(name).map(|entry| self.view(entry))
    }

    fn view(&self, entry: &SourceEntry) -> SourceView {
        let consumers = self.consumers.get(&entry.name).map(|c| c.values().cloned().collect()).unwrap_or_default();
        SourceView { entry: entry.clone(), consumers }
    }

    /// Every source, by name.
    pub fn all(&self) -> Vec<SourceView> {
        self.sources.values().map(|entry| self.view(entry)).collect()
    }

    /// The sources whose schema subject is `subject`, with their consumers.
    pub fn on_subject(&self, subject: &str) -> Vec<SourceView> {
        self.sources.values().filter(|e| e.subject == subject).map(|entry| self.view(entry)).collect()
    }

    /// Sources that match `text` (case-insensitive) in their name, description, owner, tags or
    /// the field names of their latest schema (`schema_of` gives it).
    pub fn search<'a>(&self, text: &str, schema_of: impl Fn(&str) -> Option<&'a Schema>) -> Vec<SourceView> {
        let needle = text.to_lowercase();
        let hit = |s: &str| s.to_lowercase().contains(&needle);
        self.sources
            .values()
            .filter(|e| {
                hit(&e.name)
                    || hit(&e.description)
                    || e.owner.as_deref().is_some_and(hit)
                    || e.tags.iter().any(|t| hit(t))
                    || schema_of(&e.subject).is_some_and(|schema| field_names(schema).iter().any(|f| hit(f)))
            })
            .map(|entry| self.view(entry))
            .collect()
    }
}

/// Every field name of a schema, nested records included (`director.name`).
pub fn field_names(schema: &Schema) -> Vec<String> {
    fn walk(schema: &Schema, ty: &AvroType, prefix: &str, seen: &mut Vec<String>, out: &mut Vec<String>) {
        match ty {
            AvroType::Record(record) => {
                if seen.contains(&record.name) {
                    return; // a recursive type: named once
                }
                seen.push(record.name.clone());
                for field in &record.fields {
                    let name = format!("{prefix}{}", field.name);
                    out.push(name.clone());
                    walk(schema, &field.ty, &format!("{name}."), seen, out);
                }
            }
            AvroType::Union(branches) => branches.iter().for_each(|b| walk(schema, b, prefix, seen, out)),
            AvroType::Array(items) => walk(schema, items, prefix, seen, out),
            AvroType::Map(values) => walk(schema, values, prefix, seen, out),
            AvroType::Logical { base, .. } => walk(schema, base, prefix, seen, out),
            AvroType::Ref(_) => {
                let resolved = schema.resolve(ty);
                if !std::ptr::eq(resolved, ty) {
                    walk(schema, resolved, prefix, seen, out)
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, &schema.root, "", &mut Vec::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, description: &str, subject: &str) -> SourceEntry {
        SourceEntry {
            name: name.into(),
            description: description.into(),
            owner: Some("content-team".into()),
            tags: vec!["media".into()],
            topic: name.into(),
            format: Format::ConfluentAvro,
            subject: subject.into(),
            origin: Origin::Published,
            deprecated: None,
        }
    }

    #[test]
    fn search_covers_names_descriptions_tags_and_fields() {
        let schema = Schema::parse(
            r#"{"type": "record", "name": "Movie", "fields": [{"name": "id", "type": "long"},
                {"name": "director", "type": {"type": "record", "name": "Person", "fields": [{"name": "born", "type": "int"}]}}]}"#,
        )
        .unwrap();
        let mut sources = Sources::default();
        sources.put("movies".into(), Some(entry("movies", "Every film we license", "movies-value")));
        sources.put("talents".into(), Some(entry("talents", "People in films", "talents-value")));
        let schema_of = |subject: &str| (subject == "movies-value").then_some(&schema);
        let names = |hits: Vec<SourceView>| hits.into_iter().map(|v| v.entry.name).collect::<Vec<_>>();
        assert_eq!(names(sources.search("LICENSE", schema_of)), vec!["movies"]);
        assert_eq!(names(sources.search("films", schema_of)), vec!["talents"]);
        assert_eq!(names(sources.search("born", schema_of)), vec!["movies"], "a nested field");
        assert_eq!(names(sources.search("media", schema_of)), vec!["movies", "talents"]);
        assert!(sources.search("nothing", schema_of).is_empty());
        assert_eq!(field_names(&schema), vec!["id", "director", "director.born"]);
    }

    #[test]
    fn consumers_are_kept_per_source_and_pipeline() {
        let mut sources = Sources::default();
        sources.put("movies".into(), Some(entry("movies", "", "movies-value")));
        sources.put_consumer("movies".into(), "a".into(), Some(ConsumerEntry { pipeline: "a".into(), version: 1 }));
        sources.put_consumer("movies".into(), "b".into(), Some(ConsumerEntry { pipeline: "b".into(), version: 2 }));
        sources.put_consumer("movies".into(), "a".into(), Some(ConsumerEntry { pipeline: "a".into(), version: 3 }));
        let view = sources.get("movies").unwrap();
        assert_eq!(
            view.consumers.iter().map(|c| (c.pipeline.as_str(), c.version)).collect::<Vec<_>>(),
            [("a", 3), ("b", 2)]
        );
        sources.put("movies".into(), None);
        assert!(sources.get("movies").is_none());
    }
}
