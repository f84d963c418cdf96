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
//!
//! Schemas keep their docs, aliases and custom attributes; [`Schema::canonical_form`],
//! [`Schema::fingerprint`] (CRC-64-AVRO) and [`Schema::same_as`] follow the spec's Parsing
//! Canonical Form, which ignores them. [`Resolver`] reads a writer's datums as a reader's, with
//! aliases.
//!
//! ```
//! use meshhost_avro::{decode_datum, encode_datum, Schema, Value};
//!
//! let schema = Schema::parse(
//!     r#"{"type": "record", "name": "Movie", "namespace": "demo", "doc": "A film",
//!         "fields": [{"name": "title", "type": "string"}, {"name": "year", "type": "int"}]}"#,
//! )?;
//! let movie = Value::Record(vec![
//!     ("title".into(), Value::String("Heat".into())),
//!     ("year".into(), Value::Int(1995)),
//! ]);
//! let bytes = encode_datum(&schema, &movie)?;
//! assert_eq!(decode_datum(&schema, &bytes)?, movie);
//! assert_eq!(
//!     schema.canonical_form(),
//!     r#"{"name":"demo.Movie","type":"record","fields":[{"name":"title","type":"string"},{"name":"year","type":"int"}]}"#
//! );
//! assert!(schema.same_as(&Schema::parse(&schema.canonical_form())?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Why not apache-avro's parser in plugins
//!
//! Every plugin parses its port schemas, so the parser is linked into every component. Measured
//! on a throwaway `wasm32-wasip2` cdylib that parses a schema and returns the length of its
//! canonical form (release, rustc 1.95): with this crate 210 KB stripped (3.7 MB with the
//! workspace's `debug = "line-tables-only"`), with apache-avro 0.21 (default features) 618 KB
//! stripped (7.1 MB); serde_json alone, parsing the same text, is 116 KB (2.9 MB). So the
//! parser costs a plugin about 94 KB here against about 500 KB. Parsing `demo/movie.avsc`
//! natively took about 20 µs here against about 50 µs. The datum code needs the schema in its
//! own shape anyway (skipping fields, byte ranges, resolution without building values), and
//! apache-avro stays a dev-dependency: the oracle of the tests.

mod canonical;
mod datum;
mod json;
mod marshal;
mod plain;
mod resolve;
mod schema;

pub use canonical::crc64_avro;
pub use datum::{
    decode, decode_datum, encode, encode_datum, field_ranges, field_ranges_into, skip, validate, write_long,
    DatumError, DatumErrorKind, Reader, MAX_DEPTH,
};
pub use json::{datum_to_json, datum_to_json_text, from_json, json_to_datum, to_json, JsonError};
pub use marshal::{
    marshal_to_datum, marshal_to_json, names_tuple, value_names, MarshalError, MarshalWriter, NotNatural,
};
pub use plain::json_text_to_datum;
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
