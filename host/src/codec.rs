//! Record values at the edges of the pipeline: decoding what sources read, encoding what sinks
//! write, and transcoding for processors that work on JSON.
//!
//! Inside the pipeline every value is a binary Avro datum of its edge's schema. A
//! `confluent-avro` source meets many writer schemas (one per id in its values): each is fetched
//! from the registry once, and a datum of a schema other than the source's is converted by Avro
//! schema resolution; a datum of the source's own schema passes on as it is.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

use meshhost_avro::{self as avro, DatumError, JsonError, MarshalError, MarshalWriter, NotNatural, Resolver, Schema};

use crate::config::{Format, SchemaChangePolicy};
use crate::schema_registry::wire::{self, WireError};
use crate::schema_registry::{RegistryClient, RegistryError};

/// A value that is not what its edge's schema says. The cause is part of the message (not a
/// `source`): dead-letter headers carry the message alone.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Bytes that are not a datum of the schema.
    #[error("not an Avro datum of the source schema: {0}")]
    NotSourceDatum(DatumError),
    /// A datum inside the pipeline that is not one of its edge's schema.
    #[error("not an Avro datum of the schema: {0}")]
    NotDatum(DatumError),
    /// Text that is not JSON.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// JSON (or a plain Python value) that does not fit the schema.
    #[error("does not fit the schema: {0}")]
    DoesNotFit(JsonError),
    /// A Python plugin's value that is not one marshal value of plain Python types.
    #[error("not a plain Python value: {0}")]
    NotNatural(NotNatural),
    /// A `confluent-avro` value without the wire format's header.
    #[error("{0}")]
    Wire(WireError),
    /// A `confluent-avro` value whose schema id cannot be used.
    #[error("schema id {id}: {reason}")]
    WriterSchema { id: u32, reason: String },
    /// A `confluent-avro` datum that is not one of its writer schema.
    #[error("not an Avro datum of writer schema {id}: {error}")]
    NotWriterDatum { id: u32, error: DatumError },
    /// A sink's schema was not registered before the first record (a bug of the caller).
    #[error("the sink's schema is not registered with the schema registry")]
    NotRegistered,
}

/// Why a source value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// This record is bad: it goes to dead letters.
    #[error(transparent)]
    Record(#[from] CodecError),
    /// The registry could not say what the record is: nothing can be decided, the run stops.
    #[error(transparent)]
    Registry(RegistryError),
    /// The record's writer schema cannot be read as the reader schema, and the source's
    /// `on_schema_change` says stop.
    #[error("{0}")]
    SchemaChange(CodecError),
}

/// How a source's values become datums of its schema.
#[derive(Debug)]
pub enum SourceDecoder {
    Avro,
    Json,
    ConfluentAvro(ConfluentDecoder),
}

/// Writer schemas by id, each with how its datums become the reader's.
#[derive(Debug)]
pub struct ConfluentDecoder {
    registry: Arc<RegistryClient>,
    writers: HashMap<u32, Result<Writer, String>>,
    on_schema_change: SchemaChangePolicy,
}

#[derive(Debug)]
enum Writer {
    /// The reader's own schema: datums are checked and pass on as they are.
    Same,
    /// Another schema: datums are converted.
    Resolved(Box<Resolver>),
}

impl SourceDecoder {
    /// The decoder of `format`; `confluent-avro` needs the registry.
    pub fn new(
        format: Format,
        registry: Option<Arc<RegistryClient>>,
        on_schema_change: SchemaChangePolicy,
    ) -> SourceDecoder {
        match (format, registry) {
            (Format::Avro, _) => SourceDecoder::Avro,
            (Format::Json, _) => SourceDecoder::Json,
            (Format::ConfluentAvro, Some(registry)) => {
                SourceDecoder::ConfluentAvro(ConfluentDecoder { registry, writers: HashMap::new(), on_schema_change })
            }
            (Format::ConfluentAvro, None) => panic!("a confluent-avro source needs a schema registry client"),
        }
    }

    pub fn format(&self) -> Format {
        match self {
            SourceDecoder::Avro => Format::Avro,
            SourceDecoder::Json => Format::Json,
            SourceDecoder::ConfluentAvro(_) => Format::ConfluentAvro,
        }
    }

    /// Turn a source value into an Avro datum of `schema`, or say why it cannot be.
    pub fn decode(&mut self, schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        match self {
            SourceDecoder::Avro => {
                avro::validate(schema, bytes).map_err(CodecError::NotSourceDatum)?;
                Ok(bytes.to_vec())
            }
            SourceDecoder::Json => Ok(json_to_avro(schema, bytes)?),
            SourceDecoder::ConfluentAvro(decoder) => decoder.decode(schema, bytes),
        }
    }
}

impl ConfluentDecoder {
    fn decode(&mut self, reader: &Schema, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let (id, datum) = wire::split(bytes).map_err(CodecError::Wire)?;
        let writer = match self.writers.entry(id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => match self.registry.schema_by_id(id) {
                Ok(text) => slot.insert(writer_of(&text, reader)),
                // Not cached: the id may be registered later (or on a registry that lags).
                Err(error) if error.code() == Some(40403) => {
                    let reason = "unknown to the schema registry".to_string();
                    return Err(CodecError::WriterSchema { id, reason }.into());
                }
                Err(error @ RegistryError::BadAnswer { .. }) => slot.insert(Err(error.to_string())),
                Err(error) => return Err(DecodeError::Registry(error)),
            },
        };
        match writer {
            Ok(Writer::Same) => {
                avro::validate(reader, datum).map_err(|error| CodecError::NotWriterDatum { id, error })?;
                Ok(datum.to_vec())
            }
            Ok(Writer::Resolved(resolver)) => {
                Ok(resolver.convert(datum).map_err(|error| CodecError::NotWriterDatum { id, error })?)
            }
            Err(reason) => {
                let error = CodecError::WriterSchema { id, reason: reason.clone() };
                match self.on_schema_change {
                    SchemaChangePolicy::Stop => Err(DecodeError::SchemaChange(error)),
                    SchemaChangePolicy::DeadLetter => Err(error.into()),
                }
            }
        }
    }
}

/// How datums of the writer schema `text` become datums of `reader`.
fn writer_of(text: &str, reader: &Schema) -> Result<Writer, String> {
    let schema = Schema::parse(text).map_err(|e| format!("the registry's schema is not valid Avro: {e}"))?;
    if schema.same_as(reader) {
        return Ok(Writer::Same);
    }
    Resolver::new_partial(&schema, reader)
        .map(|resolver| Writer::Resolved(Box::new(resolver)))
        .map_err(|e| format!("cannot be read as the source's schema: {e}"))
}

/// How a sink's values are written.
#[derive(Debug)]
pub enum SinkEncoder {
    Avro,
    Json,
    ConfluentAvro {
        registry: Arc<RegistryClient>,
        subject: String,
        /// The id the registry gave the sink's schema, once registered.
        id: Option<u32>,
    },
}

impl SinkEncoder {
    pub fn format(&self) -> Format {
        match self {
            SinkEncoder::Avro => Format::Avro,
            SinkEncoder::Json => Format::Json,
            SinkEncoder::ConfluentAvro { .. } => Format::ConfluentAvro,
        }
    }

    /// Turn an Avro datum of `schema` into a sink value.
    pub fn encode(&self, schema: &Schema, datum: Vec<u8>) -> Result<Vec<u8>, CodecError> {
        match self {
            SinkEncoder::Avro => Ok(datum),
            SinkEncoder::Json => avro_to_json(schema, &datum),
            SinkEncoder::ConfluentAvro { id: Some(id), .. } => Ok(wire::frame(*id, &datum)),
            SinkEncoder::ConfluentAvro { id: None, .. } => Err(CodecError::NotRegistered),
        }
    }
}

/// JSON text → Avro datum: directly for the common values, else through natural JSON (the
/// exact path, which also says what is wrong; see `meshhost_avro::json_text_to_datum`).
pub fn json_to_avro(schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    if let Some(datum) = avro::json_text_to_datum(schema, bytes) {
        return Ok(datum);
    }
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(CodecError::NotJson)?;
    avro::json_to_datum(schema, &json).map_err(CodecError::DoesNotFit)
}

/// Avro datum → a Python marshal value that refers to its port's value names (`writer`).
pub fn avro_to_marshal(writer: &MarshalWriter, schema: &Schema, datum: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(datum.len() * 2);
    writer.write_datum(schema, datum, &mut out).map_err(CodecError::NotDatum)?;
    Ok(out)
}

/// Python marshal value (a plugin's `marshal.dumps`) → Avro datum.
pub fn marshal_to_avro(schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    avro::marshal_to_datum(schema, bytes).map_err(|error| match error {
        MarshalError::NotNatural(error) => CodecError::NotNatural(error),
        MarshalError::DoesNotFit(error) => CodecError::DoesNotFit(error),
    })
}

/// Avro datum → JSON text.
pub fn avro_to_json(schema: &Schema, datum: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut text = Vec::with_capacity(datum.len() * 2);
    avro::datum_to_json_text(schema, datum, &mut text).map_err(CodecError::NotDatum)?;
    Ok(text)
}
