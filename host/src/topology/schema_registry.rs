//! A pipeline and its Schema Registry: the reader schemas of `confluent-avro` sources (when
//! the file gives none: the subject's latest version, read when the pipeline is planned), and
//! the schemas of `confluent-avro` sinks — registered when a run starts (the registry's
//! compatibility check decides), checked read-only by `validate`.

use std::sync::Arc;

use super::{EdgeSchema, Topology};
use crate::codec::SinkEncoder;
use crate::config::{PipelineConfig, Problems};
use crate::schema_registry::{RegistryClient, RegistryError};

/// The problem reported for a `confluent-avro` source or sink without a registry.
pub const NO_REGISTRY: &str = "format confluent-avro needs a schema registry: set schema_registry.url in the file, or --schema-registry / MESHHOST_SCHEMA_REGISTRY_URL";

/// The pipeline's registry client, if it names a registry.
pub fn client(config: &PipelineConfig) -> Option<Arc<RegistryClient>> {
    config.schema_registry.as_ref().map(|registry| Arc::new(RegistryClient::new(&registry.settings())))
}

/// The latest version of `subject`, as a source's reader schema.
pub fn latest_schema(registry: &RegistryClient, subject: &str) -> Result<EdgeSchema, String> {
    let latest = registry.latest(subject).map_err(|e| {
        format!("no schema: none in the file, and the latest version of subject {subject:?} could not be read: {e}")
    })?;
    EdgeSchema::parse(&latest.schema).map_err(|e| {
        format!("version {} of subject {subject:?} (id {}) is not a valid Avro schema: {e}", latest.version, latest.id)
    })
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
