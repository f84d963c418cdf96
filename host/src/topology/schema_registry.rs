//! A pipeline and its Schema Registry and sources catalog: the reader schemas of
//! `confluent-avro` sources (when the file gives none: the subject's latest version, read when
//! the pipeline is planned), the schemas of `confluent-avro` sinks — registered when a run
//! starts (the registry's compatibility check decides), checked read-only by `validate` — and
//! what a run tells the catalog: the sources it reads (with the version it reads them as) and
//! the sinks it publishes as derived sources, with their lineage.

use std::sync::Arc;

use super::{EdgeSchema, Topology};
use crate::catalog::client::CatalogClient;
use crate::catalog::sources::{Origin, ProcessorLineage, SourceEntry};
use crate::codec::SinkEncoder;
use crate::config::{PipelineConfig, Problems, SchemaRegistryConfig};
use crate::registry::lock::LockedSchema;
use crate::schema_registry::{RegistryClient, RegistryError};

/// The problem reported for a `confluent-avro` source or sink without a registry.
pub const NO_REGISTRY: &str = "format confluent-avro needs a schema registry: set schema_registry.url in the file, or --schema-registry / MESHHOST_SCHEMA_REGISTRY_URL";

/// Fill in the topic, format and subject of every `source: NAME` from the catalog.
pub fn resolve_catalog_sources(config: &mut PipelineConfig, problems: &mut Problems) {
    if config.sources.values().all(|s| s.source.is_none()) {
        return;
    }
    let Some(client) = catalog_client(config) else {
        for (id, _) in config.sources.iter().filter(|(_, s)| s.source.is_some()) {
            problems.push(
                &format!("sources.{id}.source"),
                "needs a catalog: set catalog.url, --catalog or MESHHOST_CATALOG_URL",
            );
        }
        return;
    };
    for (id, source) in config.sources.iter_mut() {
        let Some(name) = &source.source else { continue };
        match client.source(name) {
            Ok(details) => {
                let entry = details.view.entry;
                if let Some(reason) = &entry.deprecated {
                    tracing::warn!("sources.{id}: source {name} is deprecated: {reason}");
                }
                source.topic = entry.topic;
                source.format = Some(entry.format);
                source.subject = Some(entry.subject);
            }
            Err(error) => problems.push(
                &format!("sources.{id}.source"),
                format!("cannot read source {name:?} from the catalog at {}: {error}", client.registry().url()),
            ),
        }
    }
}

/// A client of the catalog, when the pipeline names one.
pub fn catalog_client(config: &PipelineConfig) -> Option<CatalogClient> {
    let catalog = config.catalog.as_ref()?;
    let mut settings =
        config.schema_registry.clone().unwrap_or_else(|| SchemaRegistryConfig::with_url(catalog.url.clone()));
    settings.url = catalog.url.clone();
    Some(CatalogClient::new(RegistryClient::new(&settings.settings())))
}

/// The pipeline's registry client, if it names a registry.
pub fn client(config: &PipelineConfig) -> Option<Arc<RegistryClient>> {
    config.schema_registry.as_ref().map(|registry| Arc::new(RegistryClient::new(&registry.settings())))
}

/// A source's reader schema, with its version number: the version the lock file pins, else the
/// subject's latest.
pub fn reader_schema(
    registry: &RegistryClient,
    subject: &str,
    pinned: Option<&LockedSchema>,
) -> Result<(EdgeSchema, u32), String> {
    let found = match pinned {
        Some(pin) => registry.version(subject, pin.version).map_err(|e| {
            format!("the lock file pins version {} of subject {subject:?}, which could not be read: {e}", pin.version)
        })?,
        None => registry.latest(subject).map_err(|e| {
            format!("no schema: none in the file, and the latest version of subject {subject:?} could not be read: {e}")
        })?,
    };
    let schema = EdgeSchema::parse(&found.schema).map_err(|e| {
        format!("version {} of subject {subject:?} (id {}) is not a valid Avro schema: {e}", found.version, found.id)
    })?;
    Ok((schema, found.version))
}

/// Which version of `subject` the schema `text` is, if it is one.
pub fn version_of(registry: &RegistryClient, subject: &str, text: &str) -> Option<u32> {
    registry.lookup(subject, text).ok().flatten().map(|found| found.version)
}

/// What a running pipeline tells the sources catalog.
#[derive(Debug)]
pub struct CatalogBinding {
    pub client: CatalogClient,
    pub pipeline: String,
    /// The catalog sources it reads, each with the subject version of its reader schema (0: a
    /// schema of its own that is no version of the subject).
    pub reads: Vec<(String, u32)>,
    /// Sinks published as sources (lineage filled in).
    pub publishes: Vec<SourceEntry>,
}

/// The binding of a planned pipeline, if it reads or publishes catalog sources.
pub fn catalog_binding(
    config: &PipelineConfig,
    topology: &Topology,
    reads: Vec<(String, u32)>,
    problems: &mut Problems,
) -> Option<CatalogBinding> {
    let publishing: Vec<_> = config.sinks.iter().filter(|(_, sink)| sink.publish.is_some()).collect();
    if reads.is_empty() && publishing.is_empty() {
        return None;
    }
    let Some(client) = catalog_client(config) else {
        for (id, _) in publishing {
            problems.push(
                &format!("sinks.{id}.publish"),
                "needs a catalog: set catalog.url, --catalog or MESHHOST_CATALOG_URL",
            );
        }
        return None;
    };
    let inputs: Vec<String> = config
        .sources
        .values()
        .map(|s| match (&s.source, &s.postgres) {
            (Some(name), _) => name.clone(),
            (None, Some(postgres)) => format!("postgres:{}", postgres.table),
            (None, None) => format!("topic:{}", s.topic),
        })
        .collect();
    let processors: Vec<ProcessorLineage> = topology
        .processors
        .iter()
        .map(|p| ProcessorLineage {
            id: p.id.clone(),
            plugin: p.plugin.as_ref().map_or_else(String::new, |locked| match (&locked.name, &locked.version) {
                (Some(name), Some(version)) => format!("{name}@{version}"),
                _ => locked.uses.clone(),
            }),
            digest: p.plugin.as_ref().map_or_else(String::new, |locked| locked.digest.clone()),
        })
        .collect();
    let publishes = publishing
        .into_iter()
        .map(|(_, sink)| {
            let publish = sink.publish.as_ref().expect("filtered");
            SourceEntry {
                name: publish.name.clone(),
                description: publish.description.clone(),
                owner: publish.owner.clone(),
                tags: publish.tags.clone(),
                topic: sink.topic.clone(),
                format: sink.format(),
                subject: sink.subject(),
                origin: Origin::Pipeline {
                    pipeline: config.name.clone(),
                    inputs: inputs.clone(),
                    processors: processors.clone(),
                },
                deprecated: None,
            }
        })
        .collect();
    Some(CatalogBinding { client, pipeline: config.name.clone(), reads, publishes })
}

/// Why a run cannot write its `confluent-avro` sinks.
#[derive(Debug, thiserror::Error)]
pub enum SinkSchemaError {
    /// The registry refused a sink's schema (incompatible, invalid): the pipeline is invalid.
    #[error("{0}")]
    Refused(Problems),
    /// The registry did not answer.
    #[error("cannot register the schema of sink {sink} under subject {subject:?}")]
    Unavailable {
        sink: String,
        subject: String,
        #[source]
        source: RegistryError,
    },
}

impl Topology {
    /// Register every `confluent-avro` sink's schema under its subject (the registry keeps one
    /// id per schema, so a restart registers nothing new), keeping the id for its values.
    pub fn register_sink_schemas(&mut self) -> Result<(), SinkSchemaError> {
        let mut problems = Problems::default();
        for sink in &mut self.sinks {
            let SinkEncoder::ConfluentAvro { registry, subject, id } = &mut sink.encoder else { continue };
            match registry.register(subject, &sink.schema.text) {
                Ok(registered) => {
                    tracing::info!("sink {}: schema id {registered} under subject {subject:?}", sink.id);
                    *id = Some(registered);
                }
                Err(RegistryError::Refused { message, .. }) => problems.push(
                    &format!("sinks.{}", sink.id),
                    format!("the schema registry refuses its schema under subject {subject:?}: {message}"),
                ),
                Err(source) => {
                    return Err(SinkSchemaError::Unavailable {
                        sink: sink.id.clone(),
                        subject: subject.clone(),
                        source,
                    })
                }
            }
        }
        problems.into_result(()).map_err(SinkSchemaError::Refused)
    }

    /// Tell the catalog what this run reads (so `source show` answers "who reads this?" and a
    /// breaking new version is refused) and publish its derived sources. After
    /// [`register_sink_schemas`](Self::register_sink_schemas): a source needs its schema.
    pub fn register_with_catalog(&self) -> Result<(), RegistryError> {
        let Some(catalog) = &self.catalog else { return Ok(()) };
        for (source, version) in &catalog.reads {
            catalog.client.add_consumer(source, &catalog.pipeline, *version)?;
        }
        for entry in &catalog.publishes {
            catalog.client.publish(entry)?;
            tracing::info!("published source {} (topic {})", entry.name, entry.topic);
        }
        Ok(())
    }

    /// What registering the sinks' schemas would meet, without registering: the registry's
    /// reasons per sink. `Err` when the registry does not answer.
    pub fn check_sink_schemas(&self) -> Result<Problems, RegistryError> {
        let mut problems = Problems::default();
        for sink in &self.sinks {
            let SinkEncoder::ConfluentAvro { registry, subject, .. } = &sink.encoder else { continue };
            for reason in registry.incompatibilities(subject, &sink.schema.text)? {
                problems.push(
                    &format!("sinks.{}", sink.id),
                    format!("its schema cannot be registered under subject {subject:?}: {reason}"),
                );
            }
        }
        Ok(problems)
    }
}
