//! The catalog: meshhost's own Schema Registry, and the sources catalog beside it.
//!
//! `meshhost catalog serve` speaks the Confluent Schema Registry REST API (the part clients
//! use: [`http`]) over state kept durable in a compacted Kafka topic, the way Confluent's
//! registry keeps `_schemas`: every change is a record ([`log`]), a server folds the topic from
//! its start into [`Schemas`] before it answers, and a write answers only after the server has
//! read its own record back ([`store`]). So a restarted server, or a second one on the same
//! topic, serves the same subjects, versions and ids. The sources teams publish ([`sources`])
//! live in the same topic and are served under `/catalog/...`.

pub mod client;
pub mod compatibility;
pub mod http;
pub mod log;
pub mod schemas;
pub mod sources;
pub mod store;

pub use compatibility::Compatibility;
pub use schemas::{Schemas, VersionSpec};
pub use sources::Sources;
pub use store::{CatalogStore, StoreError};

use meshhost_avro::{Resolver, Schema};

use log::CatalogRecord;
use schemas::Applied;

/// Everything the catalog topic holds, folded.
#[derive(Debug, Default)]
pub struct CatalogState {
    pub schemas: Schemas,
    pub sources: Sources,
}

impl CatalogState {
    pub fn apply(&mut self, record: CatalogRecord) -> Applied {
        match record {
            CatalogRecord::Source { name, value } => {
                self.sources.put(name, value);
                Applied::Done
            }
            CatalogRecord::Consumer { source, pipeline, value } => {
                self.sources.put_consumer(source, pipeline, value);
                Applied::Done
            }
            record => self.schemas.apply(record),
        }
    }

    /// What a new version `schema` of `subject` would break: each consumer of a source on that
    /// subject whose reader schema (the version it was planned against) cannot read it.
    pub fn broken_consumers(&self, subject: &str, schema: &Schema) -> Vec<String> {
        let mut broken = Vec::new();
        for view in self.sources.on_subject(subject) {
            for consumer in &view.consumers {
                let Ok((_, entry)) = self.schemas.version(subject, VersionSpec::Number(consumer.version), true) else {
                    continue;
                };
                let Ok(pinned) = self.schemas.schema(entry.id) else { continue };
                if let Err(error) = Resolver::new(schema, &pinned.parsed) {
                    broken.push(format!(
                        "pipeline {} reads source {} with version {}, which cannot read it: {error}",
                        consumer.pipeline, view.entry.name, consumer.version
                    ));
                }
            }
        }
        broken
    }
}

/// A request the registry refuses, with the Schema Registry API's status and `error_code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {1} not found.")]
    VersionNotFound(String, u32),
    #[error("{}", match .0 { Some(id) => format!("Schema {id} not found"), None => "Schema not found".to_string() })]
    SchemaNotFound(Option<u32>),
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{0}' Version {1} was soft deleted. Set permanent=true to delete permanently")]
    VersionSoftDeleted(String, u32),
    #[error("Subject '{0}' Version {1} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted(String, u32),
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    NoSubjectLevel(String),
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: {}", reasons.join("; "))]
    Incompatible { subject: String, reasons: Vec<String> },
    #[error("Schema being registered would break consumers of subject \"{subject}\": {}; publish with force to go ahead", reasons.join("; "))]
    BreaksConsumers { subject: String, reasons: Vec<String> },
    #[error("Source '{0}' not found.")]
    SourceNotFound(String),
    #[error("Invalid source: {0}")]
    InvalidSource(String),
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("{0}")]
    InvalidCompatibility(String),
    #[error("Error in the backend data store: {0}")]
    Store(String),
    #[error("Operation timed out: {0}")]
    Timeout(String),
}

impl CatalogError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            CatalogError::Incompatible { .. } | CatalogError::BreaksConsumers { .. } => 409,
            CatalogError::InvalidSchema(_)
            | CatalogError::InvalidSource(_)
            | CatalogError::InvalidVersion(_)
            | CatalogError::InvalidCompatibility(_) => 422,
            CatalogError::Store(_) | CatalogError::Timeout(_) => 500,
            _ => 404,
        }
    }

    /// The API's `error_code`.
    pub fn code(&self) -> u32 {
        match self {
            CatalogError::SubjectNotFound(_) => 40401,
            CatalogError::VersionNotFound(..) => 40402,
            CatalogError::SchemaNotFound(_) => 40403,
            CatalogError::SubjectSoftDeleted(_) => 40404,
            CatalogError::SubjectNotSoftDeleted(_) => 40405,
            CatalogError::VersionSoftDeleted(..) => 40406,
            CatalogError::VersionNotSoftDeleted(..) => 40407,
            CatalogError::NoSubjectLevel(_) => 40408,
            CatalogError::Incompatible { .. } | CatalogError::BreaksConsumers { .. } => 409,
            CatalogError::SourceNotFound(_) => 40410,
            CatalogError::InvalidSource(_) => 42210,
            CatalogError::InvalidSchema(_) => 42201,
            CatalogError::InvalidVersion(_) => 42202,
            CatalogError::InvalidCompatibility(_) => 42203,
            CatalogError::Store(_) => 50001,
            CatalogError::Timeout(_) => 50002,
        }
    }
}
