//! meshhost's Avro toolkit: schemas and binary datums, without a full decode on the hot path.
//!
//! The host, the Rust SDK (as `meshhost_sdk::avro`) and the stock plugins all use this crate,
//! natively and on `wasm32-wasip2`.
//!
//! The binary encoding of an Avro record is its fields in schema order with no framing, so a
//! processor can find the byte range of each field by *skipping* the ones before it. A filter
//! decodes only the fields its condition names and passes the original bytes through; a
//! projection copies byte ranges. The same code validates datums in the host.
//!
//! Values cross into dynamic languages as "natural" JSON: a record is an object, a union is its
//! branch's value (no `{"type": value}` wrapper), bytes and fixed are strings of code points
//! 0-255 (as in Avro's JSON encoding), an enum is its symbol.

mod canonical;
mod datum;
mod json;
mod resolve;
mod schema;

pub use canonical::crc64_avro;
pub use datum::{
    decode, decode_datum, encode, encode_datum, field_ranges, field_ranges_into, skip, validate,
    write_long, DatumError, DatumErrorKind, Reader, MAX_DEPTH,
};
pub use json::{datum_to_json, from_json, json_to_datum, to_json, JsonError};
pub use resolve::{ResolveError, Resolver};
pub use schema::{AvroType, EnumType, Field, FixedType, RecordType, Schema, SchemaError};

/// A decoded Avro value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Boolean(bool),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Bytes(Vec<u8>),
    String(String),
    Fixed(Vec<u8>),
    /// Symbol index and symbol.
    Enum(u32, String),
    Array(Vec<Value>),
    /// Entries in encoded order.
    Map(Vec<(String, Value)>),
    /// Fields in schema order.
    Record(Vec<(String, Value)>),
    /// Branch index and the branch's value.
    Union(u32, Box<Value>),
}
