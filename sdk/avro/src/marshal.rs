//! Avro values in Python's `marshal` format: how the host hands records to Python plugins and
//! reads back what they emit (the `python-marshal` value format of `wit/processor.wit`).
//!
//! Why not JSON: in a component, CPython's `json.loads` and `json.dumps` were most of a Python
//! plugin's cost per record (see the README, Performance). `marshal` is CPython's own
//! serialization, read and written by C code with no text to scan or escape, and it lets field
//! names be shared: every record of a batch refers to one string object per field name instead
//! of making its own.
//!
//! The values are the natural ones of [`crate::json`] with Python types: a record or a map is a
//! dict, an array a list, a union its branch's value, an enum its symbol (a str), bytes and
//! fixed are `bytes`, a float or double that is NaN or infinite is `None` (as JSON's `null`).
//!
//! What the host writes refers to the port's *value names*, [`value_names`]: every record field
//! name and enum symbol of the schema, each once. The guest reads a batch as one marshal object,
//! `(names, [value, value, ...])`, whose first part it writes itself from those names, each with
//! marshal's reference flag, so that a value's `r` + index picks name number `index`. What the
//! guest emits is one plain `marshal.dumps` per value (its own references only).

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value as Json};

use super::datum::{decode_datum, encoding_type, DatumError, MAX_DEPTH};
use super::json::{json_to_datum, JsonError};
use super::schema::{AvroType, Schema};
use super::Value;

// The marshal type codes used here (CPython's Python/marshal.c).
const NONE: u8 = b'N';
const FALSE: u8 = b'F';
const TRUE: u8 = b'T';
const INT: u8 = b'i';
const INT64: u8 = b'I';
const LONG: u8 = b'l';
const FLOAT_TEXT: u8 = b'f';
const FLOAT: u8 = b'g';
const BYTES: u8 = b's';
const INTERNED: u8 = b't';
const UNICODE: u8 = b'u';
const ASCII: u8 = b'a';
const ASCII_INTERNED: u8 = b'A';
const SHORT_ASCII: u8 = b'z';
const SHORT_ASCII_INTERNED: u8 = b'Z';
const TUPLE: u8 = b'(';
const SMALL_TUPLE: u8 = b')';
const LIST: u8 = b'[';
const DICT: u8 = b'{';
const DICT_END: u8 = b'0';
const SET: u8 = b'<';
const FROZENSET: u8 = b'>';
const REF: u8 = b'r';
/// Set on a type code: the object also goes into the reader's table of references.
const FLAG_REF: u8 = 0x80;

/// Every record field name and enum symbol of `schema`, each once, in the order they are first
/// met walking the schema depth first (a field's name before its type). Marshal values the
/// host writes refer to them by position.
pub fn value_names(schema: &Schema) -> Vec<String> {
    let mut names = Vec::new();
    let mut seen_types = Vec::new();
    collect_names(schema, &schema.root, &mut names, &mut seen_types);
    let mut unique = std::collections::HashSet::new();
    names.retain(|name| unique.insert(name.clone()));
    names
}

fn collect_names(schema: &Schema, ty: &AvroType, names: &mut Vec<String>, seen_types: &mut Vec<String>) {
    match ty {
        AvroType::Record(record) => {
            if seen_types.contains(&record.name) {
                return;
            }
            seen_types.push(record.name.clone());
            for field in &record.fields {
                names.push(field.name.clone());
                collect_names(schema, &field.ty, names, seen_types);
            }
        }
        AvroType::Enum(e) => {
            if !seen_types.contains(&e.name) {
                seen_types.push(e.name.clone());
                names.extend(e.symbols.iter().cloned());
            }
        }
        AvroType::Array(items) | AvroType::Map(items) => collect_names(schema, items, names, seen_types),
        AvroType::Union(branches) => branches.iter().for_each(|b| collect_names(schema, b, names, seen_types)),
        AvroType::Logical { base, .. } => collect_names(schema, base, names, seen_types),
        AvroType::Ref(name) => {
            if let Some(named) = schema.named_type(name) {
                collect_names(schema, named, names, seen_types);
            }
        }
        _ => {}
    }
}

/// Writes datums of one schema as marshal values that refer to its [`value_names`].
#[derive(Debug, Clone)]
pub struct MarshalWriter {
    names: Vec<String>,
    positions: HashMap<String, u32>,
}

impl MarshalWriter {
    pub fn new(schema: &Schema) -> MarshalWriter {
        let names = value_names(schema);
        let positions = names.iter().enumerate().map(|(i, name)| (name.clone(), i as u32)).collect();
        MarshalWriter { names, positions }
    }

    /// The names the values refer to (see [`value_names`]).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Decodes `bytes` (exactly one datum of `schema.root`) and appends it to `out` as a
    /// marshal value.
    pub fn write_datum(&self, schema: &Schema, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), DatumError> {
        let value = decode_datum(schema, bytes)?;
        self.write_value(schema, Some(&schema.root), &value, out);
        Ok(())
    }

    fn write_value(&self, schema: &Schema, ty: Option<&AvroType>, value: &Value, out: &mut Vec<u8>) {
        let ty = ty.and_then(|t| encoding_type(schema, t).ok());
        match value {
            Value::Null => out.push(NONE),
            Value::Boolean(b) => out.push(if *b { TRUE } else { FALSE }),
            Value::Int(n) => write_int(i64::from(*n), out),
            Value::Long(n) => write_int(*n, out),
            // The shortest decimal that reads back as the same float (0.1, not 0.100000001...),
            // as the JSON form has it.
            Value::Float(x) => write_float(x.to_string().parse::<f64>().unwrap_or(f64::NAN), out),
            Value::Double(x) => write_float(*x, out),
            Value::Bytes(b) | Value::Fixed(b) => {
                out.push(BYTES);
                write_sized(b, out);
            }
            Value::String(s) => write_str(s, out),
            Value::Enum(i, symbol) => {
                let symbol = match ty {
                    Some(AvroType::Enum(e)) => e.symbols.get(*i as usize).unwrap_or(symbol),
                    _ => symbol,
                };
                self.write_name(symbol, out)
            }
            Value::Array(items) => {
                let item_ty = match ty {
                    Some(AvroType::Array(t)) => Some(&**t),
                    _ => None,
                };
                out.push(LIST);
                write_count(items.len(), out);
                for item in items {
                    self.write_value(schema, item_ty, item, out);
                }
            }
            Value::Map(entries) => {
                let value_ty = match ty {
                    Some(AvroType::Map(t)) => Some(&**t),
                    _ => None,
                };
                out.push(DICT);
                for (key, v) in entries {
                    write_str(key, out);
                    self.write_value(schema, value_ty, v, out);
                }
                out.push(DICT_END);
            }
            Value::Record(fields) => {
                let record = match ty {
                    Some(AvroType::Record(r)) => Some(&**r),
                    _ => None,
                };
                out.push(DICT);
                for (i, (name, v)) in fields.iter().enumerate() {
                    self.write_name(name, out);
                    let field_ty = record.and_then(|r| r.fields.get(i)).filter(|f| f.name == *name).map(|f| &f.ty);
                    self.write_value(schema, field_ty, v, out);
                }
                out.push(DICT_END);
            }
            Value::Union(i, v) => {
                let branch = match ty {
                    Some(AvroType::Union(bs)) => bs.get(*i as usize),
                    _ => None,
                };
                self.write_value(schema, branch, v, out)
            }
        }
    }

    /// A field name or enum symbol: a reference to its entry in the names, when it has one.
    fn write_name(&self, name: &str, out: &mut Vec<u8>) {
        match self.positions.get(name) {
            Some(&position) => {
                out.push(REF);
                out.extend_from_slice(&position.to_le_bytes());
            }
            None => write_str(name, out),
        }
    }
}

/// The marshal object a guest reads a batch's names from: a tuple of the names, each an
/// interned str with the reference flag (so the values' references pick them by position).
pub fn names_tuple(names: &[String]) -> Vec<u8> {
    let mut out = vec![TUPLE];
    write_count(names.len(), &mut out);
    for name in names {
        if name.is_ascii() && name.len() <= 255 {
            out.extend_from_slice(&[SHORT_ASCII_INTERNED | FLAG_REF, name.len() as u8]);
            out.extend_from_slice(name.as_bytes());
        } else {
            out.push(INTERNED | FLAG_REF);
            write_sized(name.as_bytes(), &mut out);
        }
    }
    out
}

fn write_count(n: usize, out: &mut Vec<u8>) {
    // Avro lengths are bounded by the datum, far below 2^31.
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn write_sized(bytes: &[u8], out: &mut Vec<u8>) {
    write_count(bytes.len(), out);
    out.extend_from_slice(bytes);
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // ASCII needs no UTF-8 decoding on the Python side.
    if s.is_ascii() {
        if s.len() <= 255 {
            out.extend_from_slice(&[SHORT_ASCII, s.len() as u8]);
            out.extend_from_slice(s.as_bytes());
        } else {
            out.push(ASCII);
            write_sized(s.as_bytes(), out);
        }
    } else {
        out.push(UNICODE);
        write_sized(s.as_bytes(), out);
    }
}

fn write_int(n: i64, out: &mut Vec<u8>) {
    if let Ok(small) = i32::try_from(n) {
        out.push(INT);
        out.extend_from_slice(&small.to_le_bytes());
        return;
    }
    // A Python int of 15-bit digits, least significant first; the sign is the count's.
    let mut magnitude = n.unsigned_abs();
    let mut digits = Vec::new();
    while magnitude != 0 {
        digits.push((magnitude & 0x7fff) as u16);
        magnitude >>= 15;
    }
    out.push(LONG);
    let count = digits.len() as i32;
    out.extend_from_slice(&(if n < 0 { -count } else { count }).to_le_bytes());
    for digit in digits {
        out.extend_from_slice(&digit.to_le_bytes());
    }
}

fn write_float(x: f64, out: &mut Vec<u8>) {
    if x.is_finite() {
        out.push(FLOAT);
        out.extend_from_slice(&x.to_le_bytes());
    } else {
        out.push(NONE);
    }
}

/// A marshal value that is not a natural Avro value, or that does not fit the schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MarshalError {
    /// Bytes that are not one marshal value of the kinds natural values use.
    #[error("{0}")]
    NotNatural(NotNatural),
    /// A natural value that does not fit the schema.
    #[error("{0}")]
    DoesNotFit(JsonError),
}

/// What is wrong with a marshal value, and where in its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct NotNatural {
    pub message: String,
    pub offset: usize,
}

impl fmt::Display for NotNatural {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {} of the marshal value)", self.message, self.offset)
    }
}

/// Encodes one marshal value (what `marshal.dumps` of a natural value gives) as a datum of
/// `schema.root`, with the rules of [`crate::json_to_datum`].
pub fn marshal_to_datum(schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, MarshalError> {
    let json = marshal_to_json(bytes).map_err(MarshalError::NotNatural)?;
    json_to_datum(schema, &json).map_err(MarshalError::DoesNotFit)
}

/// The natural JSON of one marshal value: dicts with str keys, lists, tuples, sets, str, bytes
/// (as a string of code points 0-255), int, float, bool and None.
pub fn marshal_to_json(bytes: &[u8]) -> Result<Json, NotNatural> {
    let mut reader = MarshalReader { bytes, pos: 0, refs: Vec::new() };
    let value = reader.read(0)?;
    if reader.pos != bytes.len() {
        return Err(reader.error(format!("{} bytes left over after the value", bytes.len() - reader.pos)));
    }
    Ok(value)
}

struct MarshalReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Objects written with the reference flag, in order; `None` while a container is read
    /// (a reference to it from inside is a cycle).
    refs: Vec<Option<Json>>,
}

impl MarshalReader<'_> {
    #[cold]
    fn error(&self, message: impl Into<String>) -> NotNatural {
        NotNatural { message: message.into(), offset: self.pos }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], NotNatural> {
        if self.bytes.len() - self.pos < n {
            return Err(self.error("the value ends too early"));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, NotNatural> {
        Ok(self.take(1)?[0])
    }

    fn i32(&mut self) -> Result<i32, NotNatural> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// A length or count, checked against the bytes left (each item takes at least one).
    fn count(&mut self) -> Result<usize, NotNatural> {
        let n = self.i32()?;
        let left = self.bytes.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= left => Ok(n),
            _ => Err(self.error(format!("length {n} does not fit the {left} bytes left"))),
        }
    }

    fn text(&mut self, n: usize) -> Result<String, NotNatural> {
        let at = self.pos;
        let raw = self.take(n)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| NotNatural { message: "a str that is not UTF-8".into(), offset: at })
    }

    fn read(&mut self, depth: usize) -> Result<Json, NotNatural> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("values nested more than {MAX_DEPTH} deep")));
        }
        let at = self.pos;
        let code = self.byte()?;
        let flagged = code & FLAG_REF != 0;
        // A container's slot is taken before its items are read, as CPython numbers them.
        let slot = if flagged && matches!(code & !FLAG_REF, TUPLE | SMALL_TUPLE | LIST | DICT | SET | FROZENSET) {
            self.refs.push(None);
            Some(self.refs.len() - 1)
        } else {
            None
        };
        let value = match code & !FLAG_REF {
            NONE => Json::Null,
            FALSE => Json::Bool(false),
            TRUE => Json::Bool(true),
            INT => Json::from(self.i32()?),
            INT64 => Json::from(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            LONG => self.long()?,
            FLOAT => float(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            FLOAT_TEXT => {
                let n = usize::from(self.byte()?);
                let text = self.text(n)?;
                float(text.parse::<f64>().map_err(|_| self.error(format!("float text {text:?}")))?)
            }
            BYTES => {
                let n = self.count()?;
                Json::String(self.take(n)?.iter().map(|&b| char::from(b)).collect())
            }
            UNICODE | INTERNED | ASCII | ASCII_INTERNED => {
                let n = self.count()?;
                Json::String(self.text(n)?)
            }
            SHORT_ASCII | SHORT_ASCII_INTERNED => {
                let n = usize::from(self.byte()?);
                Json::String(self.text(n)?)
            }
            TUPLE | LIST | SET | FROZENSET => {
                let n = self.count()?;
                self.items(n, depth)?
            }
            SMALL_TUPLE => {
                let n = usize::from(self.byte()?);
                self.items(n, depth)?
            }
            DICT => self.dict(depth)?,
            REF => {
                let index = self.i32()?;
                let found = usize::try_from(index).ok().and_then(|i| self.refs.get(i));
                return match found {
                    Some(Some(value)) => Ok(value.clone()),
                    Some(None) => Err(NotNatural { message: "a value that contains itself".into(), offset: at }),
                    None => Err(NotNatural { message: format!("reference {index} to nothing"), offset: at }),
                };
            }
            other => {
                return Err(NotNatural {
                    message: format!("{} cannot be an Avro value", describe_code(other)),
                    offset: at,
                })
            }
        };
        match slot {
            Some(slot) => self.refs[slot] = Some(value.clone()),
            None if flagged => self.refs.push(Some(value.clone())),
            None => {}
        }
        Ok(value)
    }

    fn items(&mut self, n: usize, depth: usize) -> Result<Json, NotNatural> {
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.read(depth + 1)?);
        }
        Ok(Json::Array(items))
    }

    fn dict(&mut self, depth: usize) -> Result<Json, NotNatural> {
        let mut entries = Map::new();
        loop {
            if self.bytes.get(self.pos) == Some(&DICT_END) {
                self.pos += 1;
                return Ok(Json::Object(entries));
            }
            let at = self.pos;
            let key = match self.read(depth + 1)? {
                Json::String(key) => key,
                other => {
                    return Err(NotNatural { message: format!("a dict key that is not a str: {other}"), offset: at })
                }
            };
            let value = self.read(depth + 1)?;
            entries.insert(key, value);
        }
    }

    /// A Python int: a signed count of 15-bit digits, least significant first.
    fn long(&mut self) -> Result<Json, NotNatural> {
        let at = self.pos;
        let count = self.i32()?;
        let digits = count.unsigned_abs() as usize;
        let raw = self.take(digits.checked_mul(2).unwrap_or(usize::MAX))?;
        let mut magnitude: u128 = 0;
        for (i, pair) in raw.chunks_exact(2).enumerate() {
            let digit = u128::from(u16::from_le_bytes([pair[0], pair[1]]));
            if digit > 0x7fff || (digit != 0 && i >= 8) {
                return Err(NotNatural { message: "an int too large for Avro (beyond 64 bits)".into(), offset: at });
            }
            magnitude |= digit << (15 * i);
        }
        let value = if count < 0 {
            i64::try_from(magnitude)
                .ok()
                .map(|m| Json::from(-m))
                .or_else(|| (magnitude == 1 << 63).then(|| Json::from(i64::MIN)))
        } else {
            u64::try_from(magnitude).ok().map(Json::from)
        };
        value.ok_or_else(|| NotNatural { message: "an int too large for Avro (beyond 64 bits)".into(), offset: at })
    }
}

/// NaN and the infinities are `None`, as in the JSON form.
fn float(x: f64) -> Json {
    Number::from_f64(x).map_or(Json::Null, Json::Number)
}

fn describe_code(code: u8) -> String {
    match code {
        b'S' => "StopIteration".into(),
        b'.' => "Ellipsis".into(),
        b'x' | b'y' => "a complex number".into(),
        b'c' => "a code object".into(),
        b'?' => "an unknown object".into(),
        other if other.is_ascii_graphic() => format!("marshal type {:?}", char::from(other)),
        other => format!("marshal type {other:#04x}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::encode_datum;

    // What CPython 3.11's `marshal.dumps` gives (see each test), so the reader is checked
    // against the real writer rather than against ours.

    #[test]
    fn reads_what_cpython_writes() {
        // marshal.dumps({"id": 7, "title": "Heat", "tags": ["a", "b"], "rating": None,
        //   "big": 2**40, "neg": -2**40, "x": 1.5, "raw": b"\x00\xff", "ok": True, "t": (1, 2),
        //   "s": "héllo"})
        let bytes = b"\xfb\xda\x02\x69\x64\xe9\x07\x00\x00\x00\xda\x05\x74\x69\x74\x6c\x65\xda\x04\x48\x65\x61\x74\xda\x04\x74\x61\x67\x73\x5b\x02\x00\x00\x00\xda\x01\x61\xda\x01\x62\xda\x06\x72\x61\x74\x69\x6e\x67\x4e\xda\x03\x62\x69\x67\xec\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04\xda\x03\x6e\x65\x67\xec\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04\xda\x01\x78\xe7\x00\x00\x00\x00\x00\x00\xf8\x3f\xda\x03\x72\x61\x77\xf3\x02\x00\x00\x00\x00\xff\xda\x02\x6f\x6b\x54\xda\x01\x74\xa9\x02\xe9\x01\x00\x00\x00\xe9\x02\x00\x00\x00\xda\x01\x73\xf5\x06\x00\x00\x00\x68\xc3\xa9\x6c\x6c\x6f\x30";
        let expected = json!({"id": 7, "title": "Heat", "tags": ["a", "b"], "rating": null,
            "big": 1u64 << 40, "neg": -(1i64 << 40), "x": 1.5, "raw": "\u{0}\u{ff}", "ok": true,
            "t": [1, 2], "s": "héllo"});
        assert_eq!(marshal_to_json(bytes).unwrap(), expected);
    }

    #[test]
    fn follows_references_to_shared_objects() {
        // inner = {"name": "Mann"}; marshal.dumps({"a": inner, "b": inner})
        let bytes = b"\x7b\xda\x01\x61\xfb\xda\x04\x6e\x61\x6d\x65\xda\x04\x4d\x61\x6e\x6e\x30\xda\x01\x62\x72\x01\x00\x00\x00\x30";
        assert_eq!(marshal_to_json(bytes).unwrap(), json!({"a": {"name": "Mann"}, "b": {"name": "Mann"}}));
    }

    #[test]
    fn reads_the_ends_of_64_bits() {
        // marshal.dumps([2**63 - 1, -2**63])
        let bytes = b"\x5b\x02\x00\x00\x00\xec\x05\x00\x00\x00\xff\x7f\xff\x7f\xff\x7f\xff\x7f\x07\x00\xec\xfb\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00";
        assert_eq!(marshal_to_json(bytes).unwrap(), json!([i64::MAX, i64::MIN]));
    }

    #[test]
    fn says_what_is_not_a_natural_value() {
        // marshal.dumps({1: 2}), marshal.dumps(1j), an int of 2**68
        let error = marshal_to_json(b"\x7b\xe9\x01\x00\x00\x00\xe9\x02\x00\x00\x00\x30").unwrap_err();
        assert_eq!(error.to_string(), "a dict key that is not a str: 1 (at byte 1 of the marshal value)");
        let error =
            marshal_to_json(b"\xf9\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0\x3f").unwrap_err();
        assert_eq!(error.to_string(), "a complex number cannot be an Avro value (at byte 0 of the marshal value)");
        let error = marshal_to_json(b"\xec\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01").unwrap_err();
        assert_eq!(error.message, "an int too large for Avro (beyond 64 bits)");
        // Cut short, trailing bytes, a reference to nothing.
        assert_eq!(marshal_to_json(b"\x5b\x02\x00\x00\x00Ni").unwrap_err().message, "the value ends too early");
        assert_eq!(marshal_to_json(b"NN").unwrap_err().message, "1 bytes left over after the value");
        assert_eq!(marshal_to_json(b"r\x00\x00\x00\x00").unwrap_err().message, "reference 0 to nothing");
        assert_eq!(
            marshal_to_json(b"[\xff\xff\xff\x7f").unwrap_err().message,
            "length 2147483647 does not fit the 0 bytes left"
        );
    }

    const MOVIE: &str = r#"{"type": "record", "name": "Movie", "fields": [
        {"name": "id", "type": "long"},
        {"name": "title", "type": "string"},
        {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "COMEDY"]}},
        {"name": "rating", "type": ["null", "double"], "default": null},
        {"name": "score", "type": "float"},
        {"name": "director", "type": {"type": "record", "name": "Person", "fields": [
            {"name": "name", "type": "string"}, {"name": "born", "type": ["null", "int"]}]}},
        {"name": "cast", "type": {"type": "array", "items": "Person"}},
        {"name": "awards", "type": {"type": "map", "values": "long"}},
        {"name": "poster", "type": "bytes"},
        {"name": "next", "type": ["null", "Genre"]}
    ]}"#;

    #[test]
    fn names_are_each_field_and_symbol_once_in_schema_order() {
        let schema = Schema::parse(MOVIE).unwrap();
        let names = value_names(&schema);
        let expected = [
            "id", "title", "genre", "DRAMA", "COMEDY", "rating", "score", "director", "name", "born", "cast", "awards",
            "poster", "next",
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn writes_datums_that_read_back_as_their_natural_values() {
        let schema = Schema::parse(MOVIE).unwrap();
        let movie = json!({"id": 1i64 << 40, "title": "Hé", "genre": "COMEDY", "rating": 7.5, "score": 0.1,
            "director": {"name": "Mann", "born": 1943}, "cast": [{"name": "Pacino", "born": null}],
            "awards": {"oscar": -3_000_000_000i64, "bafta": 2}, "poster": "\u{0}\u{ff}", "next": null});
        let datum = json_to_datum(&schema, &movie).unwrap();
        let writer = MarshalWriter::new(&schema);
        // What a guest reads: (names, [value]).
        let mut batch = vec![SMALL_TUPLE, 2];
        batch.extend(names_tuple(writer.names()));
        batch.extend([LIST, 1, 0, 0, 0]);
        writer.write_datum(&schema, &datum, &mut batch).unwrap();
        let read = marshal_to_json(&batch).unwrap();
        assert_eq!(read[0], json!(writer.names()));
        assert_eq!(read[1], json!([movie]));
        // Field names and symbols are references, not strings of their own.
        let mut value = Vec::new();
        writer.write_datum(&schema, &datum, &mut value).unwrap();
        assert!(!value.windows(5).any(|w| w == b"title"), "{value:?}");
        // And back: a value with its own strings (as a guest's marshal.dumps) is the same datum.
        let mut standalone = Vec::new();
        MarshalWriter { names: Vec::new(), positions: HashMap::new() }
            .write_datum(&schema, &datum, &mut standalone)
            .unwrap();
        assert_eq!(marshal_to_datum(&schema, &standalone).unwrap(), datum);
    }

    #[test]
    fn non_finite_floats_are_none_and_bad_values_say_where() {
        let schema =
            Schema::parse(r#"{"type": "record", "name": "R", "fields": [{"name": "x", "type": "double"}]}"#).unwrap();
        let datum = encode_datum(&schema, &Value::Record(vec![("x".into(), Value::Double(f64::INFINITY))])).unwrap();
        let mut out = Vec::new();
        MarshalWriter::new(&schema).write_datum(&schema, &datum, &mut out).unwrap();
        assert_eq!(out, b"{r\x00\x00\x00\x00N0");
        // marshal.dumps({"x": "no"})
        let error = marshal_to_datum(&schema, b"\xfb\xda\x01x\xda\x02no0").unwrap_err();
        assert_eq!(error.to_string(), "field \"x\": expected double, found \"no\"");
    }
}
