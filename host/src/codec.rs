//! Record values at the edges of the pipeline: decoding what sources read, encoding what sinks
//! write, and transcoding for processors that work on JSON.
//!
//! Inside the pipeline every value is a binary Avro datum of its edge's schema.

use meshhost_avro::{self as avro, DatumError, JsonError, Schema};

use crate::config::Format;

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
    /// JSON that does not fit the schema.
    #[error("does not fit the schema: {0}")]
    DoesNotFit(JsonError),
}

/// Turn a source value into an Avro datum of `schema`, or say why it cannot be.
pub fn decode(format: Format, schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::Avro => {
            avro::validate(schema, bytes).map_err(CodecError::NotSourceDatum)?;
            Ok(bytes.to_vec())
        }
        Format::Json => json_to_avro(schema, bytes),
    }
}

/// Turn an Avro datum of `schema` into a sink value.
pub fn encode(format: Format, schema: &Schema, datum: Vec<u8>) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::Avro => Ok(datum),
        Format::Json => avro_to_json(schema, &datum),
    }
}

/// JSON text → Avro datum.
pub fn json_to_avro(schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(CodecError::NotJson)?;
    avro::json_to_datum(schema, &json).map_err(CodecError::DoesNotFit)
}

/// Avro datum → JSON text.
pub fn avro_to_json(schema: &Schema, datum: &[u8]) -> Result<Vec<u8>, CodecError> {
    let json = avro::datum_to_json(schema, datum).map_err(CodecError::NotDatum)?;
    Ok(serde_json::to_vec(&json).expect("JSON values always serialize"))
}
