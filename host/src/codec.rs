//! Record values at the edges of the pipeline: decoding what sources read, encoding what sinks
//! write, and transcoding for processors that work on JSON.
//!
//! Inside the pipeline every value is a binary Avro datum of its edge's schema.

use meshhost_sdk::avro::{self, Schema};

use crate::config::Format;

/// Turn a source value into an Avro datum of `schema`, or say why it cannot be.
pub fn decode(format: Format, schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, String> {
    match format {
        Format::Avro => {
            avro::validate(schema, bytes).map_err(|e| format!("not an Avro datum of the source schema: {e}"))?;
            Ok(bytes.to_vec())
        }
        Format::Json => json_to_avro(schema, bytes),
    }
}

/// Turn an Avro datum of `schema` into a sink value.
pub fn encode(format: Format, schema: &Schema, datum: Vec<u8>) -> Result<Vec<u8>, String> {
    match format {
        Format::Avro => Ok(datum),
        Format::Json => avro_to_json(schema, &datum),
    }
}

/// JSON text → Avro datum.
pub fn json_to_avro(schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let json: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    avro::json_to_datum(schema, &json).map_err(|e| format!("does not fit the schema: {e}"))
}

/// Avro datum → JSON text.
pub fn avro_to_json(schema: &Schema, datum: &[u8]) -> Result<Vec<u8>, String> {
    let json = avro::datum_to_json(schema, datum).map_err(|e| format!("not an Avro datum of the schema: {e}"))?;
    Ok(serde_json::to_vec(&json).expect("JSON values always serialize"))
}
