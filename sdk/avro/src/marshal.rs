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

use super::datum::{
    check_block_size, encoding_type, expect_end, min_size, DatumError, DatumErrorKind, Reader, MAX_DEPTH,
};
use super::json::{json_to_datum, JsonError};
use super::schema::{AvroType, NameHasher, RecordType, Schema};

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
        AvroType::Enum(e) if !seen_types.contains(&e.name) => {
            seen_types.push(e.name.clone());
            names.extend(e.symbols.iter().cloned());
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
///
/// Straight from the datum's bytes to marshal, with no decoded [`crate::Value`] in between:
/// the host does this for every record a Python plugin gets (measured on the bench's movie,
/// release: 1.13 µs through a decoded value, 0.29 µs direct).
#[derive(Debug, Clone)]
pub struct MarshalWriter {
    names: Vec<String>,
    /// Per record and enum type (full name): the position in `names` of each of its field
    /// names or symbols, in schema order.
    positions: HashMap<String, Vec<u32>, std::hash::BuildHasherDefault<NameHasher>>,
}

impl MarshalWriter {
    pub fn new(schema: &Schema) -> MarshalWriter {
        let names = value_names(schema);
        let position: HashMap<&str, u32> =
            names.iter().enumerate().map(|(i, name)| (name.as_str(), i as u32)).collect();
        let mut positions = HashMap::default();
        let mut types: Vec<&AvroType> = vec![&schema.root];
        types.extend(schema.named.values());
        while let Some(ty) = types.pop() {
            match ty {
                AvroType::Record(record) => {
                    let of_fields = record.fields.iter().map(|f| position[f.name.as_str()]).collect();
                    positions.insert(record.name.clone(), of_fields);
                    types.extend(record.fields.iter().map(|f| &f.ty));
                }
                AvroType::Enum(e) => {
                    positions.insert(e.name.clone(), e.symbols.iter().map(|s| position[s.as_str()]).collect());
                }
                AvroType::Array(items) | AvroType::Map(items) => types.push(items),
                AvroType::Union(branches) => types.extend(branches),
                AvroType::Logical { base, .. } => types.push(base),
                _ => {}
            }
        }
        MarshalWriter { names, positions }
    }

    /// The names the values refer to (see [`value_names`]).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Appends `bytes` (exactly one datum of `schema.root`, the schema this writer was made
    /// for) to `out` as a marshal value.
    pub fn write_datum(&self, schema: &Schema, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), DatumError> {
        let mut r = Reader::new(bytes);
        self.write_at(schema, &schema.root, &mut r, out, 0)?;
        expect_end(&r)
    }

    fn write_at(
        &self,
        schema: &Schema,
        ty: &AvroType,
        r: &mut Reader,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DatumError> {
        let ty = encoding_type(schema, ty).map_err(|e| e.with_offset(r.position()))?;
        match ty {
            AvroType::Null => out.push(NONE),
            AvroType::Boolean => out.push(if r.read_boolean()? { TRUE } else { FALSE }),
            AvroType::Int => write_int(i64::from(r.read_int()?), out),
            AvroType::Long => write_int(r.read_long()?, out),
            // The shortest decimal that reads back as the same float (0.1, not 0.100000001...),
            // as the JSON form has it.
            AvroType::Float => write_float(r.read_float()?.to_string().parse::<f64>().unwrap_or(f64::NAN), out),
            AvroType::Double => write_float(r.read_double()?, out),
            AvroType::Bytes => {
                out.push(BYTES);
                write_sized(r.read_bytes()?, out);
            }
            AvroType::Fixed(f) => {
                out.push(BYTES);
                write_sized(r.read_fixed(f.size)?, out);
            }
            AvroType::String => write_str(r.read_str()?, out),
            AvroType::Enum(e) => {
                let i = r.read_enum_index(e.symbols.len())?;
                match self.positions.get(&e.name) {
                    Some(positions) => write_ref(positions[i], out),
                    None => write_str(&e.symbols[i], out),
                }
            }
            AvroType::Union(branches) => {
                let i = r.read_union_index(branches.len())?;
                self.write_at(schema, &branches[i], r, out, depth)?;
            }
            AvroType::Record(record) => self.write_record(schema, record, r, out, depth)?,
            AvroType::Array(items) => self.write_array(schema, items, r, out, depth)?,
            AvroType::Map(values) => self.write_map(schema, values, r, out, depth)?,
            AvroType::Ref(_) | AvroType::Logical { .. } => unreachable!("resolved above"),
        }
        Ok(())
    }

    // Records, arrays and maps out of line, to keep the stack used per nesting level small.
    #[inline(never)]
    fn write_record(
        &self,
        schema: &Schema,
        record: &RecordType,
        r: &mut Reader,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DatumError> {
        if depth >= MAX_DEPTH {
            return Err(DatumError::at(DatumErrorKind::TooDeep, r.position()));
        }
        let positions = self.positions.get(&record.name);
        out.push(DICT);
        for (i, field) in record.fields.iter().enumerate() {
            match positions {
                Some(positions) => write_ref(positions[i], out),
                None => write_str(&field.name, out),
            }
            self.write_at(schema, &field.ty, r, out, depth + 1).map_err(|e| e.in_field(&field.name))?;
        }
        out.push(DICT_END);
        Ok(())
    }

    #[inline(never)]
    fn write_array(
        &self,
        schema: &Schema,
        items: &AvroType,
        r: &mut Reader,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DatumError> {
        let items = encoding_type(schema, items).map_err(|e| e.with_offset(r.position()))?;
        // Avro gives the count block by block: written once known.
        out.push(LIST);
        let count_at = out.len();
        write_count(0, out);
        let mut count = 0;
        loop {
            let (block, size) = r.read_block(|| min_size(schema, items, 0) == 0)?;
            if block == 0 {
                break;
            }
            let start = r.position();
            for _ in 0..block {
                self.write_at(schema, items, r, out, depth).map_err(|e| e.at_index(count))?;
                count += 1;
            }
            check_block_size(size, start, r.position())?;
        }
        out[count_at..count_at + 4].copy_from_slice(&(count as u32).to_le_bytes());
        Ok(())
    }

    #[inline(never)]
    fn write_map(
        &self,
        schema: &Schema,
        values: &AvroType,
        r: &mut Reader,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), DatumError> {
        let values = encoding_type(schema, values).map_err(|e| e.with_offset(r.position()))?;
        out.push(DICT);
        loop {
            // Map entries are never empty: the key's length takes a byte.
            let (block, size) = r.read_block(|| false)?;
            if block == 0 {
                break;
            }
            let start = r.position();
            for _ in 0..block {
                let key = r.read_str()?;
                write_str(key, out);
                self.write_at(schema, values, r, out, depth).map_err(|e| e.at_key(key))?;
            }
            check_block_size(size, start, r.position())?;
        }
        out.push(DICT_END);
        Ok(())
    }
}

/// A reference to entry `position` of the reader's table (a name, here).
fn write_ref(position: u32, out: &mut Vec<u8>) {
    out.push(REF);
    out.extend_from_slice(&position.to_le_bytes());
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
///
/// The host does this for every value a Python plugin emits. A direct path (the value read
/// into a tree of borrowed slices, encoded against the schema) takes the common values; it
/// gives up on anything it is not sure of — a union whose first likely branch does not fit, a
/// duplicate key — and the exact path through natural JSON then decides, so both give the same
/// bytes and the same errors. Measured on the bench's projected movie (release, this machine):
/// 2.0-2.2 µs per value through natural JSON, 0.5 µs direct.
pub fn marshal_to_datum(schema: &Schema, bytes: &[u8]) -> Result<Vec<u8>, MarshalError> {
    if let Some(datum) = direct::marshal_to_datum(schema, bytes) {
        return Ok(datum);
    }
    let json = marshal_to_json(bytes).map_err(MarshalError::NotNatural)?;
    json_to_datum(schema, &json).map_err(MarshalError::DoesNotFit)
}

mod direct {
    //! The direct path of [`super::marshal_to_datum`]: `None` wherever it is not certain.

    use super::*;
    use crate::plain::{encode_plain, Plain};

    pub(super) fn marshal_to_datum(schema: &Schema, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut parser = Parser { bytes, pos: 0, refs: Vec::new() };
        let value = parser.read(0)?;
        if parser.pos != bytes.len() {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len());
        encode_plain(schema, &value, &mut out)?;
        Some(out)
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        pos: usize,
        refs: Vec<Option<Plain<'a>>>,
    }

    impl<'a> Parser<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
            self.pos += n;
            Some(slice)
        }

        fn i32(&mut self) -> Option<i32> {
            Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
        }

        fn count(&mut self) -> Option<usize> {
            let n = usize::try_from(self.i32()?).ok()?;
            (n <= self.bytes.len() - self.pos).then_some(n)
        }

        fn read(&mut self, depth: usize) -> Option<Plain<'a>> {
            if depth > MAX_DEPTH {
                return None;
            }
            let code = *self.take(1)?.first()?;
            let flagged = code & FLAG_REF != 0;
            let code = code & !FLAG_REF;
            let slot = (flagged && matches!(code, LIST | DICT | TUPLE | SMALL_TUPLE)).then(|| {
                self.refs.push(None);
                self.refs.len() - 1
            });
            let value = match code {
                NONE => Plain::None,
                FALSE => Plain::Bool(false),
                TRUE => Plain::Bool(true),
                INT => Plain::Int(i64::from(self.i32()?)),
                LONG => {
                    let count = self.i32()?;
                    let raw = self.take((count.unsigned_abs() as usize).checked_mul(2)?)?;
                    Plain::Int(i64::try_from(python_int(count, raw)?).ok()?)
                }
                FLOAT => {
                    let x = f64::from_le_bytes(self.take(8)?.try_into().ok()?);
                    // NaN and infinities are None, as in the JSON form.
                    if x.is_finite() {
                        Plain::Float(x)
                    } else {
                        Plain::None
                    }
                }
                UNICODE | INTERNED | ASCII | ASCII_INTERNED => {
                    let n = self.count()?;
                    Plain::Str(std::str::from_utf8(self.take(n)?).ok()?)
                }
                SHORT_ASCII | SHORT_ASCII_INTERNED => {
                    let n = usize::from(*self.take(1)?.first()?);
                    Plain::Str(std::str::from_utf8(self.take(n)?).ok()?)
                }
                BYTES => {
                    let n = self.count()?;
                    Plain::Bytes(self.take(n)?)
                }
                LIST | TUPLE => {
                    let n = self.count()?;
                    self.items(n, depth)?
                }
                SMALL_TUPLE => {
                    let n = usize::from(*self.take(1)?.first()?);
                    self.items(n, depth)?
                }
                DICT => {
                    let mut entries = Vec::new();
                    while self.bytes.get(self.pos) != Some(&DICT_END) {
                        let Plain::Str(key) = self.read(depth + 1)? else { return None };
                        entries.push((key, self.read(depth + 1)?));
                    }
                    self.pos += 1;
                    Plain::Dict(entries)
                }
                REF => {
                    let index = usize::try_from(self.i32()?).ok()?;
                    return self.refs.get(index)?.clone();
                }
                // Big ints, sets and the rest: the exact path.
                _ => return None,
            };
            match slot {
                Some(slot) => self.refs[slot] = Some(value.clone()),
                None if flagged => self.refs.push(Some(value.clone())),
                None => {}
            }
            Some(value)
        }

        fn items(&mut self, n: usize, depth: usize) -> Option<Plain<'a>> {
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(self.read(depth + 1)?);
            }
            Some(Plain::List(items))
        }
    }
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

    fn long(&mut self) -> Result<Json, NotNatural> {
        let at = self.pos;
        let count = self.i32()?;
        let raw = self.take((count.unsigned_abs() as usize).saturating_mul(2))?;
        let too_large = || NotNatural { message: "an int too large for Avro (beyond 64 bits)".into(), offset: at };
        let value = python_int(count, raw).ok_or_else(too_large)?;
        match i64::try_from(value) {
            Ok(n) => Ok(Json::from(n)),
            Err(_) => u64::try_from(value).map(Json::from).map_err(|_| too_large()),
        }
    }
}

/// A Python int in marshal's form: `count` 15-bit digits, least significant first, two bytes
/// each in `raw`; the sign is the count's. `None` beyond 64 bits.
fn python_int(count: i32, raw: &[u8]) -> Option<i128> {
    let mut magnitude: i128 = 0;
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        let digit = i128::from(u16::from_le_bytes([pair[0], pair[1]]));
        if digit > 0x7fff || (digit != 0 && i >= 8) {
            return None;
        }
        magnitude |= digit << (15 * i);
    }
    let value = if count < 0 { -magnitude } else { magnitude };
    (i128::from(i64::MIN)..=i128::from(u64::MAX)).contains(&value).then_some(value)
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
    use crate::{encode_datum, Value};

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
        MarshalWriter { names: Vec::new(), positions: HashMap::default() }
            .write_datum(&schema, &datum, &mut standalone)
            .unwrap();
        assert_eq!(marshal_to_datum(&schema, &standalone).unwrap(), datum);
    }

    #[test]
    fn the_direct_path_gives_what_the_exact_path_gives() {
        let schema = Schema::parse(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "a", "type": "long"}, {"name": "d", "type": ["null", "double"]},
                {"name": "s", "type": "string"}, {"name": "b", "type": "bytes"},
                {"name": "arr", "type": {"type": "array", "items": "int"}},
                {"name": "m", "type": {"type": "map", "values": "long"}},
                {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
                {"name": "f", "type": {"type": "fixed", "name": "F", "size": 2}},
                {"name": "n", "type": "string", "default": "x"}]}"#,
        )
        .unwrap();
        // base = {"a": 2**40, "d": 3, "s": "hé", "b": b"\x00\xff", "arr": (1, 2), "m": {"k": -2**40},
        //   "e": "B", "f": b"ab"}; marshal.dumps of: base; base with a=1, d=None, s=b"\xff",
        //   b="\xff", arr=[], m={}, e="A", n="y"; base with zz=1; a=2**63; d=nan, arr={3};
        //   d=2.5, e="C"; f=b"abc".
        let cases: [&[u8]; 7] = [
            b"\xfb\xda\x01\x61\xec\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04\xda\x01\x64\xe9\x03\x00\x00\x00\xda\x01\x73\xf5\x03\x00\x00\x00\x68\xc3\xa9\xda\x01\x62\xf3\x02\x00\x00\x00\x00\xff\xda\x03\x61\x72\x72\xa9\x02\xe9\x01\x00\x00\x00\xe9\x02\x00\x00\x00\xda\x01\x6d\xfb\xda\x01\x6b\xec\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04\x30\xda\x01\x65\xda\x01\x42\xda\x01\x66\xf3\x02\x00\x00\x00\x61\x62\x30",
            b"\xfb\xda\x01\x61\xe9\x01\x00\x00\x00\xda\x01\x64\x4e\xda\x01\x73\xf3\x01\x00\x00\x00\xff\xda\x01\x62\xf5\x02\x00\x00\x00\xc3\xbf\xda\x03\x61\x72\x72\x5b\x00\x00\x00\x00\xda\x01\x6d\x7b\x30\xda\x01\x65\xda\x01\x41\xda\x01\x66\xf3\x02\x00\x00\x00\x61\x62\xda\x01\x6e\xda\x01\x79\x30",
            b"\xfb\xda\x01\x61\xec\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04\xda\x01\x64\xe9\x03\x00\x00\x00\xda\x01\x73\xf5\x03\x00\x00\x00\x68\xc3\xa9\xda\x01\x62\xf3\x02\x00\x00\x00\x00\xff\xda\x03\x61\x72\x72\xa9\x02\xe9\x01\x00\x00\x00\xe9\x02\x00\x00\x00\xda\x01\x6d\xfb\xda\x01\x6b\xec\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04\x30\xda\x01\x65\xda\x01\x42\xda\x01\x66\xf3\x02\x00\x00\x00\x61\x62\xda\x02\x7a\x7a\x72\x0b\x00\x00\x00\x30",
            b"\xfb\xda\x01\x61\xec\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00\xda\x01\x64\xe9\x03\x00\x00\x00\xda\x01\x73\xf5\x03\x00\x00\x00\x68\xc3\xa9\xda\x01\x62\xf3\x02\x00\x00\x00\x00\xff\xda\x03\x61\x72\x72\xa9\x02\xe9\x01\x00\x00\x00\xe9\x02\x00\x00\x00\xda\x01\x6d\xfb\xda\x01\x6b\xec\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04\x30\xda\x01\x65\xda\x01\x42\xda\x01\x66\xf3\x02\x00\x00\x00\x61\x62\x30",
            b"\xfb\xda\x01\x61\xec\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04\xda\x01\x64\x67\x00\x00\x00\x00\x00\x00\xf8\x7f\xda\x01\x73\xf5\x03\x00\x00\x00\x68\xc3\xa9\xda\x01\x62\xf3\x02\x00\x00\x00\x00\xff\xda\x03\x61\x72\x72\x3c\x01\x00\x00\x00\xe9\x03\x00\x00\x00\xda\x01\x6d\xfb\xda\x01\x6b\xec\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04\x30\xda\x01\x65\xda\x01\x42\xda\x01\x66\xf3\x02\x00\x00\x00\x61\x62\x30",
            b"\xfb\xda\x01\x61\xec\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04\xda\x01\x64\xe7\x00\x00\x00\x00\x00\x00\x04\x40\xda\x01\x73\xf5\x03\x00\x00\x00\x68\xc3\xa9\xda\x01\x62\xf3\x02\x00\x00\x00\x00\xff\xda\x03\x61\x72\x72\xa9\x02\xe9\x01\x00\x00\x00\xe9\x02\x00\x00\x00\xda\x01\x6d\xfb\xda\x01\x6b\xec\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04\x30\xda\x01\x65\xda\x01\x43\xda\x01\x66\xf3\x02\x00\x00\x00\x61\x62\x30",
            b"\xfb\xda\x01\x61\xec\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04\xda\x01\x64\xe9\x03\x00\x00\x00\xda\x01\x73\xf5\x03\x00\x00\x00\x68\xc3\xa9\xda\x01\x62\xf3\x02\x00\x00\x00\x00\xff\xda\x03\x61\x72\x72\xa9\x02\xe9\x01\x00\x00\x00\xe9\x02\x00\x00\x00\xda\x01\x6d\xfb\xda\x01\x6b\xec\xfd\xff\xff\xff\x00\x00\x00\x00\x00\x04\x30\xda\x01\x65\xda\x01\x42\xda\x01\x66\xf3\x03\x00\x00\x00\x61\x62\x63\x30",
        ];
        let exact = |bytes: &[u8]| -> Result<Vec<u8>, MarshalError> {
            let json = marshal_to_json(bytes).map_err(MarshalError::NotNatural)?;
            json_to_datum(&schema, &json).map_err(MarshalError::DoesNotFit)
        };
        let outcomes: Vec<(bool, bool)> = cases
            .iter()
            .map(|bytes| {
                let direct = direct::marshal_to_datum(&schema, bytes);
                if let Some(datum) = &direct {
                    assert_eq!(exact(bytes).as_ref(), Ok(datum));
                }
                assert_eq!(marshal_to_datum(&schema, bytes), exact(bytes));
                (direct.is_some(), exact(bytes).is_ok())
            })
            .collect();
        // (taken by the direct path, valid)
        assert_eq!(
            outcomes,
            [
                (true, true),
                (false, true),
                (false, false),
                (false, false),
                (false, true),
                (false, false),
                (false, false)
            ]
        );
    }

    #[test]
    fn arrays_in_several_blocks_are_one_list() {
        let schema = Schema::parse(r#"{"type": "array", "items": "int"}"#).unwrap();
        // A block of -2 items (so with its size, 2 bytes): 1, 2; a block of 1: 3; the end.
        let datum = [0x03, 0x04, 0x02, 0x04, 0x02, 0x06, 0x00];
        let mut out = Vec::new();
        MarshalWriter::new(&schema).write_datum(&schema, &datum, &mut out).unwrap();
        assert_eq!(marshal_to_json(&out).unwrap(), json!([1, 2, 3]));
        // A block whose size is wrong is an error, not a guess.
        let error = MarshalWriter::new(&schema).write_datum(&schema, &[0x03, 0x06, 0x02, 0x04, 0x00], &mut out);
        assert!(error.is_err());
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
