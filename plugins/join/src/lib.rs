//! `mesh/join`: joins two keyed inputs, each kept as a latest-value table in the processor's
//! state.
//!
//! ```yaml
//! processors:
//!   cast:
//!     uses: mesh/join@0.1
//!     inputs: [movies, talents]     # 0 = left, 1 = right
//!     with:
//!       left_key: id
//!       right_key: movie_id
//!       kind: left                  # inner (default) | left
//! ```
//!
//! Each side is a table of the latest value per join key: state key `L<join key>` holds the
//! left datum, `R<join key>` the right one. The join key of a record is its Kafka key, which must
//! equal the key field rendered as bytes (a string's UTF-8, an int's or long's decimal digits,
//! bytes as they are); a record without a Kafka key is keyed by its key field. A tombstone
//! deletes its side's row.
//!
//! The output port `out` carries a record `<left record name>_join` with the field
//! `<left input>` (the left record) and the field `<right input>` (`["null", right record]`),
//! whatever the kind. A named type both inputs define (a self-join of one schema) is defined
//! once in the output schema when both definitions are the same (equal canonical forms);
//! different definitions under one name are refused. Every record that changes a side emits, keyed by the join key, the joined
//! record of its key if there is one now (inner: both rows exist; left: the left row exists), or
//! a tombstone if there was one before and there is none now, or nothing. A delete (a tombstone
//! input) always emits the key's tombstone when no joined record remains, so that replaying it
//! — after a crash, with its state change already restored — gives the same output. The joined value is
//! composed from the stored bytes: left datum, then `0x00` (null) or `0x02` and the right datum.

use std::ops::Range;

use meshhost_sdk::avro::{self, AvroType, Reader, RecordType, Schema};
use meshhost_sdk::options::{self, field_names, json_kind};
use meshhost_sdk::state::{HostState, State};
use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor, Record};

/// The options `with:` accepts.
const OPTIONS: &[&str] = &["left_key", "right_key", "kind"];

/// Which rows make a joined record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Both sides have a row.
    Inner,
    /// The left side has a row; the right one may be missing (null).
    Left,
}

/// The types a join key field may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    String,
    Int,
    Long,
    Bytes,
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Int => "int",
            KeyType::Long => "long",
            KeyType::Bytes => "bytes",
        }
    }
}

/// One input of the join.
struct Side {
    /// The input's port name (its entry in `inputs:`).
    input: String,
    schema: Schema,
    record: RecordType,
    /// The index of the join key field in `record`.
    key_index: usize,
    /// The state key prefix of this side's rows.
    prefix: u8,
}

/// The join of one processor instance.
pub struct Join {
    kind: Kind,
    key_type: KeyType,
    /// Left, right.
    sides: [Side; 2],
    /// Reused across records.
    ranges: Vec<Range<usize>>,
}

/// The `with:` mapping, when it is one.
struct Options<'a> {
    map: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl Join {
    /// Build the join from its `with:` mapping and its input ports.
    pub fn new(config: &serde_json::Value, inputs: &[InputPort]) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let options = Options { map: options::options("mesh/join", config, OPTIONS, &mut errors) };
        let left_key = options.field_name("left_key", "left", &mut errors);
        let right_key = options.field_name("right_key", "right", &mut errors);
        let kind = match options.map.map(|o| o.get("kind")) {
            None | Some(None) | Some(Some(serde_json::Value::Null)) => Kind::Inner,
            Some(Some(serde_json::Value::String(s))) if s == "inner" => Kind::Inner,
            Some(Some(serde_json::Value::String(s))) if s == "left" => Kind::Left,
            Some(Some(serde_json::Value::String(s))) => {
                errors.push(ConfigError::at("kind", format!("must be inner or left, got {s:?}")));
                Kind::Inner
            }
            Some(Some(other)) => {
                errors.push(ConfigError::at("kind", format!("must be inner or left, got {}", json_kind(other))));
                Kind::Inner
            }
        };

        // The inputs: exactly two records.
        let records: Vec<Option<(Schema, RecordType)>> = if inputs.len() == 2 {
            inputs.iter().map(|input| input_record(input, &mut errors)).collect()
        } else {
            errors.push(ConfigError::at(
                "",
                format!("mesh/join takes exactly two inputs (left, right), got {}", inputs.len()),
            ));
            vec![None, None]
        };

        // The key fields: present, and of one allowed type on both sides.
        let mut keys = Vec::new(); // (index, type) of each side's key field, when known
        for (side, (path, key)) in [("left_key", &left_key), ("right_key", &right_key)].into_iter().enumerate() {
            let (Some((schema, record)), Some(key)) = (&records[side], key) else {
                keys.push(None);
                continue;
            };
            let input = &inputs[side].name;
            let Some((index, field)) = record.field(key) else {
                errors.push(ConfigError::at(
                    path,
                    format!("no field {key:?} in input {input:?}; fields are: {}", field_names(&record.fields)),
                ));
                keys.push(None);
                continue;
            };
            match key_type(schema, &field.ty) {
                Ok(ty) => keys.push(Some((index, ty, format!("{input}.{key}")))),
                Err(found) => {
                    errors.push(ConfigError::at(
                        path,
                        format!("{input}.{key} is {found}; a join key must be a string, int, long or bytes field"),
                    ));
                    keys.push(None);
                }
            }
        }
        if let (Some((_, left, left_name)), Some((_, right, right_name))) = (&keys[0], &keys[1]) {
            if left != right {
                errors.push(ConfigError::at(
                    "right_key",
                    format!("join key types differ: {left_name} is {}, {right_name} is {}", left.name(), right.name()),
                ));
            }
        }

        // The output fields are named after the inputs.
        let field_names: Vec<String> = inputs.iter().map(|i| field_name(&i.name)).collect();
        if inputs.len() == 2 && field_names[0] == field_names[1] {
            errors.push(ConfigError::at(
                "",
                format!(
                    "inputs {:?} and {:?} both become output field {:?}; give one of them another id",
                    inputs[0].name, inputs[1].name, field_names[0]
                ),
            ));
        }

        // Both sides' named types go into the output schema: a name both define (as in a
        // self-join) is defined once there, so both definitions must be the same type.
        if let [Some((left, _)), Some((right, _))] = &records[..] {
            let mut differing: Vec<&str> = left
                .named_types()
                .filter(|(name, def)| {
                    right
                        .named_type(name)
                        .is_some_and(|other| left.canonical_form_of(def) != right.canonical_form_of(other))
                })
                .map(|(name, _)| name)
                .collect();
            differing.sort_unstable();
            for name in differing {
                errors.push(ConfigError::at(
                    "",
                    format!(
                        "inputs {:?} and {:?} define type {name:?} differently; the joined schema holds both, so a type name they share must mean the same type",
                        inputs[0].name, inputs[1].name
                    ),
                ));
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        // Without errors, both inputs and both keys are known.
        let mut records = records.into_iter().flatten();
        let mut keys = keys.into_iter().flatten();
        let (
            Some((left_schema, left_record)),
            Some((right_schema, right_record)),
            Some((left_index, key_type, _)),
            Some((right_index, _, _)),
        ) = (records.next(), records.next(), keys.next(), keys.next())
        else {
            unreachable!("every missing piece was reported");
        };

        let output = output_schema(
            &format!("{}_join", left_record.name),
            [&field_names[0], &field_names[1]],
            [&left_schema, &right_schema],
        )
        .map_err(|e| vec![ConfigError::at("", format!("cannot build the output schema: {e}"))])?;
        let outputs = vec![OutputPort { name: "out".into(), schema: output.to_json() }];
        let join = Join {
            kind,
            key_type,
            sides: [
                Side {
                    input: inputs[0].name.clone(),
                    schema: left_schema,
                    record: left_record,
                    key_index: left_index,
                    prefix: b'L',
                },
                Side {
                    input: inputs[1].name.clone(),
                    schema: right_schema,
                    record: right_record,
                    key_index: right_index,
                    prefix: b'R',
                },
            ],
            ranges: Vec::new(),
        };
        Ok((join, outputs))
    }

    /// The kind of join.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Handle a batch that arrived on `input` (0 = left, 1 = right) against `state`: each record,
    /// in order, updates its side's row and emits what changed in the join of its key.
    pub fn process_with<S: State>(&mut self, state: &mut S, input: u32, batch: &Batch, out: &mut Output) {
        if input > 1 {
            for i in 0..batch.len() {
                out.fail(i as u32, format!("mesh/join has two inputs (0 = left, 1 = right), not input {input}"));
            }
            return;
        }
        for (i, record) in batch.iter().enumerate() {
            match self.apply(state, input as usize, record.to_record()) {
                Ok(Some(joined)) => out.emit(0, i as u32, &joined),
                Ok(None) => {}
                Err(reason) => out.fail(i as u32, reason),
            }
        }
    }

    /// Applies one record of side `side` (0 = left, 1 = right); returns the record to emit.
    fn apply<S: State>(&mut self, state: &mut S, side: usize, record: Record) -> Result<Option<Record>, String> {
        let Record { key, value, headers, timestamp } = record;
        let join_key = match (key, &value) {
            (None, None) => return Err("a tombstone without a key: mesh/join cannot tell which row it deletes".into()),
            (Some(key), None) => key,
            (key, Some(value)) => {
                let field_key = self.field_key(side, value)?;
                match key {
                    Some(key) if key != field_key => {
                        let field = &self.sides[side].record.fields[self.sides[side].key_index].name;
                        return Err(format!(
                            "record key {} does not match its join key field {field} = {}; join inputs must be keyed by the join key",
                            show(&key),
                            show(&field_key)
                        ));
                    }
                    _ => field_key,
                }
            }
        };

        let state_key = |prefix: u8| {
            let mut k = Vec::with_capacity(1 + join_key.len());
            k.push(prefix);
            k.extend_from_slice(&join_key);
            k
        };
        let own_key = state_key(self.sides[side].prefix);
        let other_key = state_key(self.sides[1 - side].prefix);
        let own_old = state.get(&own_key);
        let other = state.get(&other_key);
        match (&value, &own_old) {
            (None, None) => {}
            (None, Some(_)) => state.delete(&own_key),
            (Some(new), Some(old)) if new == old => {}
            (Some(new), _) => state.put(&own_key, new),
        }

        let (left_old, right_old, left_new, right_new) = if side == 0 {
            (own_old.is_some(), other.is_some(), value.as_deref(), other.as_deref())
        } else {
            (other.is_some(), own_old.is_some(), other.as_deref(), value.as_deref())
        };
        let before = self.exists(left_old, right_old);
        let after = self.joined(left_new, right_new);
        // A delete always ends in the key's tombstone when no join remains, even when there was
        // none before: a delete replayed after a crash (its state change already restored from
        // the changelog, its tombstone not yet written) must not be lost.
        if after.is_none() && !before && value.is_some() {
            return Ok(None);
        }
        Ok(Some(Record { key: Some(join_key), value: after, headers, timestamp }))
    }

    /// Whether a joined record exists for rows that exist or not.
    fn exists(&self, left: bool, right: bool) -> bool {
        left && (right || self.kind == Kind::Left)
    }

    /// The joined datum of two rows, if they make one.
    fn joined(&self, left: Option<&[u8]>, right: Option<&[u8]>) -> Option<Vec<u8>> {
        if !self.exists(left.is_some(), right.is_some()) {
            return None;
        }
        let left = left?;
        let mut out = Vec::with_capacity(left.len() + 1 + right.map_or(0, <[u8]>::len));
        out.extend_from_slice(left);
        match right {
            Some(right) => {
                out.push(0x02); // union branch 1 (the record), zigzag-encoded
                out.extend_from_slice(right);
            }
            None => out.push(0x00), // union branch 0 (null)
        }
        Some(out)
    }

    /// The join key field of a datum of side `side`, rendered as bytes.
    fn field_key(&mut self, side: usize, value: &[u8]) -> Result<Vec<u8>, String> {
        let side = &self.sides[side];
        avro::field_ranges_into(&side.schema, &side.record, value, &mut self.ranges)
            .map_err(|e| format!("value does not decode as the schema of input {:?}: {e}", side.input))?;
        let range = self.ranges[side.key_index].clone();
        let mut r = Reader::new(value);
        let read = |r: &mut Reader| -> Result<Vec<u8>, avro::DatumError> {
            r.advance(range.start)?;
            Ok(match self.key_type {
                KeyType::String => r.read_str()?.as_bytes().to_vec(),
                KeyType::Bytes => r.read_bytes()?.to_vec(),
                KeyType::Int => r.read_int()?.to_string().into_bytes(),
                KeyType::Long => r.read_long()?.to_string().into_bytes(),
            })
        };
        read(&mut r).map_err(|e| {
            format!(
                "value does not decode as the schema of input {:?}: field {:?}: {e}",
                side.input, side.record.fields[side.key_index].name
            )
        })
    }
}

impl Options<'_> {
    /// A required option naming a field of the `side` input.
    fn field_name(&self, option: &str, side: &str, errors: &mut Vec<ConfigError>) -> Option<String> {
        match self.map?.get(option) {
            None | Some(serde_json::Value::Null) => {
                errors.push(ConfigError::at(
                    option,
                    format!("missing: the field of the {side} input that holds the join key"),
                ));
                None
            }
            Some(serde_json::Value::String(name)) => Some(name.clone()),
            Some(other) => {
                errors.push(ConfigError::at(
                    option,
                    format!("must be a field name (a string), got {}", json_kind(other)),
                ));
                None
            }
        }
    }
}

impl Processor for Join {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        Join::new(&config, &inputs)
    }

    fn process(&mut self, input: u32, batch: &Batch, out: &mut Output) {
        self.process_with(&mut HostState, input, batch, out)
    }
}

#[cfg(target_arch = "wasm32")]
meshhost_sdk::export!(Join);

/// The record schema of an input, or the problem with it.
fn input_record(input: &InputPort, errors: &mut Vec<ConfigError>) -> Option<(Schema, RecordType)> {
    options::record_input("mesh/join", input).map_err(|e| errors.push(e)).ok()
}

/// The key type of a field type (through refs and logical types), or a description of the
/// type when it cannot be a join key.
fn key_type(schema: &Schema, ty: &AvroType) -> Result<KeyType, String> {
    let mut ty = ty;
    loop {
        return match ty {
            AvroType::Ref(_) if !std::ptr::eq(schema.resolve(ty), ty) => {
                ty = schema.resolve(ty);
                continue;
            }
            AvroType::Logical { base, .. } => {
                ty = base;
                continue;
            }
            AvroType::String => Ok(KeyType::String),
            AvroType::Int => Ok(KeyType::Int),
            AvroType::Long => Ok(KeyType::Long),
            AvroType::Bytes => Ok(KeyType::Bytes),
            other => Err(other.describe()),
        };
    }
}

/// The output schema: record `name` with the left record in field `fields[0]` and the right
/// record or null in `fields[1]`. A named type both inputs define with the same canonical form
/// is defined once (at its first use, the left one); another definition under a name already
/// taken is an error.
fn output_schema(name: &str, fields: [&str; 2], schemas: [&Schema; 2]) -> Result<Schema, avro::SchemaError> {
    // A parsed schema's root holds every definition it uses, so the roots are all it takes.
    let mut right = avro::Field::new(fields[1], AvroType::Union(vec![AvroType::Null, schemas[1].root.clone()]));
    right.default = Some(serde_json::Value::Null);
    let left = avro::Field::new(fields[0], schemas[0].root.clone());
    let output = Schema::record(name, vec![left, right], schemas[0])?;
    // As the text the output port carries, read back.
    Schema::parse(&output.to_json())
}

/// The output field name of an input: its id with every character other than `[A-Za-z0-9_]`
/// replaced by `_`, and `_` in front when it would start with a digit.
fn field_name(input: &str) -> String {
    let mut name: String = input.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// Bytes for an error message: quoted text, or escaped bytes when not UTF-8.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("\"{}\"", bytes.escape_ascii()),
    }
}

#[cfg(test)]
mod tests;
