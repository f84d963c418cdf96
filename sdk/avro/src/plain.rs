//! Natural values borrowed from the bytes they were read from, encoded as an Avro datum
//! directly: the fast path of turning what a guest emits (Python `marshal`, JSON text) back into
//! a datum, with no `serde_json::Value` tree or Avro `Value` in between.
//!
//! It gives up (`None`) on anything it is not sure of: a union whose first likely branch does
//! not fit, a duplicate key, a missing field without a default, a string with escapes, an
//! integer beyond 64 bits... Its callers then take the exact path through natural JSON
//! ([`crate::json::json_to_datum`]), so both give the same bytes and the same errors.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::datum::{encode, encoding_type, write_long, MAX_DEPTH};
use crate::json::from_json;
use crate::schema::{AvroType, RecordType, Schema};

/// A natural value (see [`crate::json`]), borrowing its strings from the bytes.
#[derive(Clone, Debug)]
pub(crate) enum Plain<'a> {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
    List(Vec<Plain<'a>>),
    Dict(Vec<(&'a str, Plain<'a>)>),
}

/// `value` as a datum of the schema's root type appended to `out`, or `None` where the exact path must decide.
pub(crate) fn encode_plain(schema: &Schema, value: &Plain, out: &mut Vec<u8>) -> Option<()> {
    encode_at(schema, &schema.root, value, out, 0)
}

/// JSON text (a JSON plugin's emitted value) → Avro datum, or `None` where the exact path
/// must decide. Measured on the bench's projected movie (release, this machine, busy): 3.1 µs
/// per value through `serde_json::Value` and natural JSON, 0.95 µs direct.
pub fn json_text_to_datum(schema: &Schema, text: &[u8]) -> Option<Vec<u8>> {
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let value = Plain::deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    let mut out = Vec::with_capacity(text.len());
    encode_plain(schema, &value, &mut out)?;
    Some(out)
}

impl<'de> Deserialize<'de> for Plain<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Plain<'de>, D::Error> {
        deserializer.deserialize_any(PlainVisitor)
    }
}

/// Reads JSON into a [`Plain`] with the numbers of `serde_json::Value` (an integer that fits 64
/// bits is an int, any other number a float). Strings must borrow: one with escapes is an error,
/// and the exact path takes the value.
struct PlainVisitor;

/// A JSON string that cannot be borrowed from the text (it has escapes).
fn escaped<E: de::Error>() -> E {
    E::custom("an escaped string (the exact path decides)")
}

impl<'de> Visitor<'de> for PlainVisitor {
    type Value = Plain<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Plain<'de>, E> {
        Ok(Plain::None)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Plain<'de>, E> {
        Ok(Plain::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Plain<'de>, E> {
        Ok(Plain::Int(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Plain<'de>, E> {
        i64::try_from(n).map(Plain::Int).map_err(|_| E::custom("an integer beyond i64"))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Plain<'de>, E> {
        Ok(Plain::Float(x))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Plain<'de>, E> {
        Ok(Plain::Str(s))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Plain<'de>, E> {
        Err(escaped())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Plain<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Plain::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Plain<'de>, A::Error> {
        let mut entries = Vec::new();
        // A key with escapes cannot be a `&str` of the text: an error, so the exact path.
        while let Some(key) = map.next_key::<&'de str>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Plain::Dict(entries))
    }
}

/// Whether two entries share a key (Python dicts never do; the exact path decides if so).
fn has_duplicate_keys(entries: &[(&str, Plain)]) -> bool {
    if entries.len() <= 16 {
        entries.iter().enumerate().any(|(i, (key, _))| entries[..i].iter().any(|(other, _)| other == key))
    } else {
        let mut seen = std::collections::HashSet::new();
        !entries.iter().all(|(key, _)| seen.insert(*key))
    }
}

fn encode_at(schema: &Schema, ty: &AvroType, value: &Plain, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    let ty = encoding_type(schema, ty).ok()?;
    match (ty, value) {
        (AvroType::Null, Plain::None) => {}
        (AvroType::Boolean, Plain::Bool(b)) => out.push(u8::from(*b)),
        (AvroType::Int, Plain::Int(n)) => write_long(out, i64::from(i32::try_from(*n).ok()?)),
        (AvroType::Long, Plain::Int(n)) => write_long(out, *n),
        (AvroType::Float, Plain::Int(n)) => out.extend_from_slice(&(*n as f64 as f32).to_le_bytes()),
        (AvroType::Float, Plain::Float(x)) => out.extend_from_slice(&(*x as f32).to_le_bytes()),
        (AvroType::Double, Plain::Int(n)) => out.extend_from_slice(&(*n as f64).to_le_bytes()),
        (AvroType::Double, Plain::Float(x)) => out.extend_from_slice(&x.to_le_bytes()),
        (AvroType::String, Plain::Str(s)) => {
            write_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        (AvroType::Bytes, Plain::Bytes(b)) => {
            write_long(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        (AvroType::Fixed(f), Plain::Bytes(b)) if b.len() == f.size => out.extend_from_slice(b),
        (AvroType::Enum(e), Plain::Str(s)) => write_long(out, e.symbols.iter().position(|x| x == s)? as i64),
        (AvroType::Array(items_ty), Plain::List(items)) => {
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for item in items {
                    encode_at(schema, items_ty, item, out, depth)?;
                }
            }
            out.push(0);
        }
        (AvroType::Map(values_ty), Plain::Dict(entries)) if !has_duplicate_keys(entries) => {
            if !entries.is_empty() {
                write_long(out, entries.len() as i64);
                for (key, v) in entries {
                    write_long(out, key.len() as i64);
                    out.extend_from_slice(key.as_bytes());
                    encode_at(schema, values_ty, v, out, depth)?;
                }
            }
            out.push(0);
        }
        (AvroType::Record(record), Plain::Dict(entries)) => encode_record(schema, record, entries, out, depth)?,
        (AvroType::Union(branches), _) => {
            // The branch the exact path tries first; if it does not fit, the exact path
            // tries the others.
            let (index, branch) = first_likely_branch(schema, branches, value)?;
            write_long(out, index as i64);
            encode_at(schema, branch, value, out, depth)?;
        }
        _ => return None,
    }
    Some(())
}

fn encode_record(
    schema: &Schema,
    record: &RecordType,
    entries: &[(&str, Plain)],
    out: &mut Vec<u8>,
    depth: usize,
) -> Option<()> {
    if depth >= MAX_DEPTH || has_duplicate_keys(entries) {
        return None;
    }
    let mut found = 0;
    for field in &record.fields {
        match entries.iter().find(|(key, _)| *key == field.name) {
            Some((_, v)) => {
                found += 1;
                encode_at(schema, &field.ty, v, out, depth + 1)?;
            }
            None => {
                let value = from_json(schema, &field.ty, field.default.as_ref()?).ok()?;
                encode(schema, &field.ty, &value, out).ok()?;
            }
        }
    }
    // A key that is no field: the exact path says which.
    (found == entries.len()).then_some(())
}

/// The union branch natural JSON's rules try first for `value` (see `union_from_json`):
/// in a first pass the branches of its own kind, then floats for an int or a None.
fn first_likely_branch<'s>(
    schema: &'s Schema,
    branches: &'s [AvroType],
    value: &Plain,
) -> Option<(usize, &'s AvroType)> {
    use AvroType as T;
    let pass = |branch: &AvroType| -> Option<u8> {
        match (value, encoding_type(schema, branch).ok()?) {
            (Plain::None, T::Null) | (Plain::Bool(_), T::Boolean) | (Plain::Int(_), T::Int | T::Long) => Some(0),
            (Plain::None, T::Float | T::Double) | (Plain::Int(_), T::Float | T::Double) => Some(1),
            (Plain::Float(_), T::Float | T::Double) => Some(0),
            (Plain::Str(_) | Plain::Bytes(_), T::String | T::Bytes | T::Enum(_) | T::Fixed(_)) => Some(0),
            (Plain::List(_), T::Array(_)) | (Plain::Dict(_), T::Record(_) | T::Map(_)) => Some(0),
            _ => None,
        }
    };
    (0..2).find_map(|round| branches.iter().enumerate().find(|(_, b)| pass(b) == Some(round)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json_to_datum;

    #[test]
    fn json_text_goes_straight_to_the_datum_the_exact_path_gives() {
        let schema = Schema::parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "a", "type": "long"}, {"name": "d", "type": ["null", "double"]},
                {"name": "s", "type": "string"},
                {"name": "arr", "type": {"type": "array", "items": "int"}},
                {"name": "m", "type": {"type": "map", "values": "long"}},
                {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
                {"name": "p", "type": {"type": "record", "name": "P", "fields": [
                    {"name": "x", "type": "float"}, {"name": "y", "type": ["null", "int"], "default": null}]}},
                {"name": "n", "type": "string", "default": "x"}]}"#,
        )
        .unwrap();
        let base =
            r#""a": 1099511627776, "d": 3, "s": "h\u00e9", "arr": [1, 2], "m": {"k": -5}, "e": "B", "p": {"x": 1.5}"#;
        // (JSON text, taken by the direct path, fits the schema)
        let cases = [
            (format!("{{{base}}}"), false, true), // "s" has an escape: the exact path
            (r#"{"a": 1, "d": null, "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2, "y": 7}, "n": "y"}"#.to_string(), true, true),
            (r#"{"n": "y", "p": {"y": null, "x": -0.25}, "e": "A", "m": {"a": 1, "b": 2}, "arr": [3], "s": "s", "d": 2.5, "a": -3}"#.to_string(), true, true),
            (r#"{"a": 1, "d": 1e3, "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2}}"#.to_string(), true, true),
            (r#"{"a": 1, "d": null, "s": "", "arr": [], "m": {}, "e": "C", "p": {"x": 2}}"#.to_string(), false, false),
            (r#"{"a": 1.5, "d": null, "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2}}"#.to_string(), false, false),
            (r#"{"a": 1, "a": 2, "d": null, "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2}}"#.to_string(), false, true),
            (r#"{"a": 18446744073709551615, "d": null, "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2}}"#.to_string(), false, false),
            (r#"{"a": 1, "d": null, "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2}, "zz": 1}"#.to_string(), false, false),
            (r#"{"a": 1, "d": null, "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2}} trailing"#.to_string(), false, false),
            (r#"{"\u0061": 1, "d": null, "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2}}"#.to_string(), false, true),
            (r#"{"a": 1, "d": "x\"y", "s": "", "arr": [], "m": {}, "e": "A", "p": {"x": 2}}"#.to_string(), false, false),
        ];
        for (text, direct, fits) in &cases {
            let exact = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|json| json_to_datum(&schema, &json).ok());
            let taken = json_text_to_datum(&schema, text.as_bytes());
            assert_eq!((taken.is_some(), exact.is_some()), (*direct, *fits), "{text}");
            if let Some(datum) = taken {
                assert_eq!(Some(datum), exact, "{text}");
            }
        }
    }
}
