//! "Natural" JSON for Avro values, for JSON sources and sinks and dynamic-language plugins.
//!
//! A record is an object (fields in schema order), a union is its branch's value with no
//! wrapper, bytes and fixed are strings of code points 0-255, an enum is its symbol, a map is an
//! object, and a float or double that is NaN or infinite is `null`.

use serde_json::{Map, Number, Value as Json};

use super::datum::{decode_datum, encode, encoding_type, path_prefix, DatumError, Path, Segment, MAX_DEPTH};
use super::schema::{AvroType, RecordType, Schema};
use super::Value;

/// JSON that does not fit an Avro type: what, and in which field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}{}", path_prefix(&.0.path), .0.message)]
// Boxed to keep the Ok path's Result small.
pub struct JsonError(Box<JsonErrorInner>);

#[derive(Debug, Clone, PartialEq)]
struct JsonErrorInner {
    message: String,
    path: Path,
}

impl JsonError {
    #[cold]
    fn new(message: impl Into<String>) -> JsonError {
        JsonError(Box::new(JsonErrorInner { message: message.into(), path: Path::default() }))
    }

    /// What is wrong, without the field path.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// The field path (`cast[1].name`), empty at the top level.
    pub fn path(&self) -> String {
        self.0.path.to_string()
    }

    #[cold]
    #[inline(never)]
    fn in_field(mut self, name: &str) -> JsonError {
        self.0.path.push_outer(Segment::Field(name.to_string()));
        self
    }

    #[cold]
    #[inline(never)]
    fn at_index(mut self, index: usize) -> JsonError {
        self.0.path.push_outer(Segment::Index(index));
        self
    }

    #[cold]
    #[inline(never)]
    fn at_key(mut self, key: &str) -> JsonError {
        self.0.path.push_outer(Segment::Key(key.to_string()));
        self
    }
}

/// Decodes `bytes` (exactly one datum of `schema.root`) to natural JSON.
pub fn datum_to_json(schema: &Schema, bytes: &[u8]) -> Result<Json, DatumError> {
    let value = decode_datum(schema, bytes)?;
    Ok(to_json(schema, &schema.root, &value))
}

/// Decodes `bytes` (exactly one datum of `schema.root`) to natural JSON text, appended to `out`:
/// the text `serde_json::to_vec(&datum_to_json(..))` gives, without building the
/// `serde_json::Value` tree first. The host does this for every record it hands a Python or
/// JavaScript plugin, so it is worth the second path (measured: see the README, Performance).
pub fn datum_to_json_text(schema: &Schema, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), DatumError> {
    let value = decode_datum(schema, bytes)?;
    write_json_at(schema, Some(&schema.root), &value, out);
    Ok(())
}

/// `to_json_at`, written as text.
fn write_json_at(schema: &Schema, ty: Option<&AvroType>, value: &Value, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let ty = ty.and_then(|t| encoding_type(schema, t).ok());
    // Writing into a Vec cannot fail.
    let text = |out: &mut Vec<u8>, s: &str| serde_json::to_writer(&mut *out, s).expect("write to a Vec");
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(n) => write!(out, "{n}").expect("write to a Vec"),
        Value::Long(n) => write!(out, "{n}").expect("write to a Vec"),
        Value::Float(_) | Value::Double(_) | Value::Bytes(_) | Value::Fixed(_) | Value::Map(_) => {
            // Rarer, or with serde_json's own number formatting: through the tree.
            serde_json::to_writer(&mut *out, &to_json_at(schema, ty, value)).expect("write to a Vec")
        }
        Value::String(s) => text(out, s),
        Value::Enum(i, symbol) => {
            let from_type = match ty {
                Some(AvroType::Enum(e)) => e.symbols.get(*i as usize),
                _ => None,
            };
            text(out, from_type.unwrap_or(symbol))
        }
        Value::Array(items) => {
            let item_ty = match ty {
                Some(AvroType::Array(t)) => Some(&**t),
                _ => None,
            };
            write_array(schema, item_ty, items, out)
        }
        Value::Record(fields) => {
            let record = match ty {
                Some(AvroType::Record(r)) => Some(&**r),
                _ => None,
            };
            write_record(schema, record, fields, out)
        }
        Value::Union(i, v) => {
            let branch = match ty {
                Some(AvroType::Union(bs)) => bs.get(*i as usize),
                _ => None,
            };
            write_json_at(schema, branch, v, out)
        }
    }
}

#[inline(never)]
fn write_array(schema: &Schema, item_ty: Option<&AvroType>, items: &[Value], out: &mut Vec<u8>) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_at(schema, item_ty, item, out);
    }
    out.push(b']');
}

#[inline(never)]
fn write_record(schema: &Schema, record: Option<&RecordType>, fields: &[(String, Value)], out: &mut Vec<u8>) {
    // A decoded record's field names are its schema's, so unique: the object `record_to_json`
    // builds keeps them all, in order.
    out.push(b'{');
    for (i, (name, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, name.as_str()).expect("write to a Vec");
        out.push(b':');
        let field_ty = record.and_then(|r| r.fields.get(i)).filter(|f| f.name == *name).map(|f| &f.ty);
        write_json_at(schema, field_ty, v, out);
    }
    out.push(b'}');
}

/// Encodes natural JSON as one datum of `schema.root`.
pub fn json_to_datum(schema: &Schema, json: &Json) -> Result<Vec<u8>, JsonError> {
    let value = from_json(schema, &schema.root, json)?;
    let mut out = Vec::new();
    // from_json only builds values that fit the type, so this is not expected to fail.
    encode(schema, &schema.root, &value, &mut out).map_err(|e| JsonError::new(e.to_string()))?;
    Ok(out)
}

/// The natural JSON form of `value`, a value of `ty`. The type supplies enum symbols; where
/// the value does not match it, the value alone decides.
pub fn to_json(schema: &Schema, ty: &AvroType, value: &Value) -> Json {
    to_json_at(schema, Some(ty), value)
}

fn to_json_at(schema: &Schema, ty: Option<&AvroType>, value: &Value) -> Json {
    let ty = ty.and_then(|t| encoding_type(schema, t).ok());
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Int(n) => Json::from(*n),
        Value::Long(n) => Json::from(*n),
        Value::Float(x) => float_json(*x),
        Value::Double(x) => Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Bytes(b) | Value::Fixed(b) => Json::String(b.iter().map(|&c| char::from(c)).collect()),
        Value::String(s) => Json::String(s.clone()),
        Value::Enum(i, symbol) => {
            let from_type = match ty {
                Some(AvroType::Enum(e)) => e.symbols.get(*i as usize),
                _ => None,
            };
            Json::String(from_type.unwrap_or(symbol).clone())
        }
        Value::Array(items) => {
            let item_ty = match ty {
                Some(AvroType::Array(t)) => Some(&**t),
                _ => None,
            };
            Json::Array(items.iter().map(|v| to_json_at(schema, item_ty, v)).collect())
        }
        Value::Map(entries) => {
            let value_ty = match ty {
                Some(AvroType::Map(t)) => Some(&**t),
                _ => None,
            };
            map_to_json(schema, value_ty, entries)
        }
        Value::Record(fields) => {
            let record = match ty {
                Some(AvroType::Record(r)) => Some(&**r),
                _ => None,
            };
            record_to_json(schema, record, fields)
        }
        Value::Union(i, v) => {
            let branch = match ty {
                Some(AvroType::Union(bs)) => bs.get(*i as usize),
                _ => None,
            };
            to_json_at(schema, branch, v)
        }
    }
}

// Out of line, like the other nested cases, to keep the stack used per nesting level small.
#[inline(never)]
fn record_to_json(schema: &Schema, record: Option<&RecordType>, fields: &[(String, Value)]) -> Json {
    let mut obj = Map::with_capacity(fields.len());
    for (i, (name, v)) in fields.iter().enumerate() {
        let field_ty = record.and_then(|r| r.fields.get(i)).filter(|f| f.name == *name).map(|f| &f.ty);
        obj.insert(name.clone(), to_json_at(schema, field_ty, v));
    }
    Json::Object(obj)
}

#[inline(never)]
fn map_to_json(schema: &Schema, value_ty: Option<&AvroType>, entries: &[(String, Value)]) -> Json {
    Json::Object(entries.iter().map(|(k, v)| (k.clone(), to_json_at(schema, value_ty, v))).collect())
}

/// A float as the shortest decimal that reads back as the same float (`0.1`, not
/// `0.10000000149011612` as a plain widening to f64 would give).
fn float_json(x: f32) -> Json {
    if !x.is_finite() {
        return Json::Null;
    }
    x.to_string().parse::<f64>().ok().and_then(Number::from_f64).map_or(Json::Null, Json::Number)
}

/// The value of type `ty` that natural JSON `json` stands for: the inverse of [`to_json`].
/// A union takes the first branch the JSON fits (null prefers the null branch; an integer
/// prefers int and long over float and double); a record's missing fields take their defaults;
/// `null` for a float or double (outside such a union) is NaN.
pub fn from_json(schema: &Schema, ty: &AvroType, json: &Json) -> Result<Value, JsonError> {
    from_json_at(schema, ty, json, 0)
}

/// How a JSON value is described in errors: short values in full, long ones cut.
fn found(json: &Json) -> String {
    const MAX: usize = 40;
    let text = json.to_string();
    if text.chars().count() <= MAX {
        text
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

#[cold]
#[inline(never)]
fn mismatch(ty: &AvroType, json: &Json) -> JsonError {
    match (ty, json) {
        (AvroType::Int, Json::Number(n)) if is_integer(n) => JsonError::new(format!("{n} is out of range for int")),
        (AvroType::Long, Json::Number(n)) if is_integer(n) => JsonError::new(format!("{n} is out of range for long")),
        (AvroType::Bytes | AvroType::Fixed(_), Json::String(s)) if latin1(s).is_none() => JsonError::new(format!(
            "{} must be a string of code points 0-255, found {}",
            if matches!(ty, AvroType::Bytes) { "bytes" } else { "fixed" },
            found(json)
        )),
        (AvroType::Fixed(f), Json::String(s)) => {
            JsonError::new(format!("fixed \"{}\" needs {} bytes, found {}", f.name, f.size, s.chars().count()))
        }
        (AvroType::Enum(e), Json::String(s)) => {
            JsonError::new(format!("\"{s}\" is not a symbol of enum \"{}\"", e.name))
        }
        _ => JsonError::new(format!("expected {}, found {}", ty.describe(), found(json))),
    }
}

/// A string of code points 0-255 as bytes.
fn latin1(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

fn from_json_at(schema: &Schema, ty: &AvroType, json: &Json, depth: usize) -> Result<Value, JsonError> {
    let ty = encoding_type(schema, ty).map_err(|e| JsonError::new(e.kind().to_string()))?;
    // Every failed match ends in `mismatch`, which works out what to say.
    let value = match (ty, json) {
        (AvroType::Null, Json::Null) => Some(Value::Null),
        (AvroType::Boolean, Json::Bool(b)) => Some(Value::Boolean(*b)),
        (AvroType::Int, Json::Number(n)) => n.as_i64().and_then(|i| i32::try_from(i).ok()).map(Value::Int),
        (AvroType::Long, Json::Number(n)) => n.as_i64().map(Value::Long),
        (AvroType::Float, Json::Number(n)) => n.as_f64().map(|x| Value::Float(x as f32)),
        (AvroType::Double, Json::Number(n)) => n.as_f64().map(Value::Double),
        // to_json writes NaN and infinities as null.
        (AvroType::Float, Json::Null) => Some(Value::Float(f32::NAN)),
        (AvroType::Double, Json::Null) => Some(Value::Double(f64::NAN)),
        (AvroType::String, Json::String(s)) => Some(Value::String(s.clone())),
        (AvroType::Bytes, Json::String(s)) => latin1(s).map(Value::Bytes),
        (AvroType::Fixed(f), Json::String(s)) => latin1(s).filter(|b| b.len() == f.size).map(Value::Fixed),
        (AvroType::Enum(e), Json::String(s)) => {
            e.symbols.iter().position(|x| x == s).map(|i| Value::Enum(i as u32, s.clone()))
        }
        (AvroType::Array(items_ty), Json::Array(items)) => Some(array_from_json(schema, items_ty, items, depth)?),
        (AvroType::Map(values_ty), Json::Object(obj)) => Some(map_from_json(schema, values_ty, obj, depth)?),
        (AvroType::Record(rec), Json::Object(obj)) => Some(record_from_json(schema, rec, obj, depth)?),
        (AvroType::Union(branches), _) => Some(union_from_json(schema, branches, json, depth)?),
        _ => None,
    };
    value.ok_or_else(|| mismatch(ty, json))
}

#[inline(never)]
fn array_from_json(schema: &Schema, items_ty: &AvroType, items: &[Json], depth: usize) -> Result<Value, JsonError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| from_json_at(schema, items_ty, item, depth).map_err(|e| e.at_index(i)))
        .collect::<Result<_, _>>()
        .map(Value::Array)
}

#[inline(never)]
fn map_from_json(
    schema: &Schema,
    values_ty: &AvroType,
    obj: &Map<String, Json>,
    depth: usize,
) -> Result<Value, JsonError> {
    obj.iter()
        .map(|(k, v)| from_json_at(schema, values_ty, v, depth).map(|v| (k.clone(), v)).map_err(|e| e.at_key(k)))
        .collect::<Result<_, _>>()
        .map(Value::Map)
}

fn is_integer(n: &Number) -> bool {
    n.is_i64() || n.is_u64()
}

#[inline(never)]
fn record_from_json(
    schema: &Schema,
    rec: &RecordType,
    obj: &Map<String, Json>,
    depth: usize,
) -> Result<Value, JsonError> {
    if depth >= MAX_DEPTH {
        return Err(JsonError::new(format!("records nested more than {MAX_DEPTH} deep")));
    }
    let mut fields = Vec::with_capacity(rec.fields.len());
    for field in &rec.fields {
        let value = match (obj.get(&field.name), &field.default) {
            (Some(v), _) => from_json_at(schema, &field.ty, v, depth + 1),
            (None, Some(default)) => from_json_at(schema, &field.ty, default, depth + 1)
                .map_err(|e| JsonError::new(format!("missing, and its default does not fit: {e}"))),
            (None, None) => Err(JsonError::new("missing, and the schema gives no default")),
        }
        .map_err(|e| e.in_field(&field.name))?;
        fields.push((field.name.clone(), value));
    }
    if obj.len() > fields.len() || obj.keys().any(|k| rec.field(k).is_none()) {
        let extra = obj.keys().find(|k| rec.field(k).is_none()).map_or("", |k| k.as_str());
        return Err(JsonError::new(format!("not a field of record \"{}\"", rec.name)).in_field(extra));
    }
    Ok(Value::Record(fields))
}

/// Picks the union branch natural JSON stands for, trying the likely branches in order.
#[inline(never)]
fn union_from_json(schema: &Schema, branches: &[AvroType], json: &Json, depth: usize) -> Result<Value, JsonError> {
    // The pass in which a branch is tried for this JSON (lower first), if it can fit at all.
    let pass = |branch: &AvroType| -> Option<u8> {
        let base = encoding_type(schema, branch).ok()?;
        use AvroType as T;
        match (json, base) {
            (Json::Null, T::Null) => Some(0),
            (Json::Null, T::Float | T::Double) => Some(1),
            (Json::Bool(_), T::Boolean) => Some(0),
            (Json::Number(n), T::Int | T::Long) if is_integer(n) => Some(0),
            (Json::Number(n), T::Float | T::Double) => Some(if is_integer(n) { 1 } else { 0 }),
            (Json::String(_), T::String | T::Bytes | T::Enum(_) | T::Fixed(_)) => Some(0),
            (Json::Array(_), T::Array(_)) => Some(0),
            (Json::Object(_), T::Record(_) | T::Map(_)) => Some(0),
            _ => None,
        }
    };
    let mut tried = 0;
    let mut first_error = None;
    for round in 0..2 {
        for (i, branch) in branches.iter().enumerate() {
            if pass(branch) != Some(round) {
                continue;
            }
            tried += 1;
            match from_json_at(schema, branch, json, depth) {
                Ok(v) => return Ok(Value::Union(i as u32, Box::new(v))),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    let describe = || {
        let names: Vec<String> = branches.iter().map(AvroType::describe).collect();
        format!("[{}]", names.join(", "))
    };
    match (tried, first_error) {
        // One plausible branch: its own error says the most.
        (1, Some(e)) => Err(e),
        (0, _) => Err(JsonError::new(format!("expected one of union {}, found {}", describe(), found(json)))),
        (_, e) => Err(JsonError::new(format!(
            "{} fits no branch of union {}{}",
            found(json),
            describe(),
            e.map_or_else(String::new, |e| format!(" (first branch tried: {e})"))
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datum::tests::{cases, movie, MOVIE};
    use crate::{decode_datum, encode_datum};
    use serde_json::json;

    fn schema(json: &str) -> Schema {
        Schema::parse(json).unwrap()
    }

    fn err(schema: &Schema, json: Json) -> String {
        from_json(schema, &schema.root, &json).unwrap_err().to_string()
    }

    #[test]
    fn round_trips_every_case() {
        for (text, values) in cases() {
            let schema = schema(text);
            for value in values {
                let json = to_json(&schema, &schema.root, &value);
                let back = from_json(&schema, &schema.root, &json).unwrap_or_else(|e| panic!("{text} {json}: {e}"));
                assert_eq!(back, value, "{text} {json}");
                // And through bytes, via the convenience functions.
                let bytes = encode_datum(&schema, &value).unwrap();
                let json2 = datum_to_json(&schema, &bytes).unwrap();
                assert_eq!(json2, json);
                // The text path writes exactly what serializing the tree does.
                let mut written = Vec::new();
                datum_to_json_text(&schema, &bytes, &mut written).unwrap();
                assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&json).unwrap(), "{json}");
                assert_eq!(json_to_datum(&schema, &json2).unwrap(), bytes);
                // Natural JSON survives text.
                let reread: Json = serde_json::from_str(&json.to_string()).unwrap();
                assert_eq!(from_json(&schema, &schema.root, &reread).unwrap(), value, "{text} {json}");
            }
        }
    }

    #[test]
    fn natural_form() {
        let schema = schema(MOVIE);
        let json = to_json(&schema, &schema.root, &movie(2));
        assert_eq!(
            json,
            json!({
                "title": "Le Voyage dans la Lune",
                "year": 1902,
                "rating": 8.1,
                "cast": [{"name": "actor 0 ✓", "age": 20}, {"name": "actor 1 ✓", "age": 21}],
                "tags": {"lang": "fr"},
                "genre": "HORROR",
                "hash": "\u{1}\u{2}\u{3}\u{ff}",
                "flag": true,
                "director": {"name": "actor 99 ✓", "age": 119}
            })
        );
        // Fields come out in schema order.
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "title");
        assert_eq!(keys[8], "director");

        let f = schema_of("\"float\"");
        assert_eq!(to_json(&f, &f.root, &Value::Float(0.1)).to_string(), "0.1");
        assert_eq!(to_json(&f, &f.root, &Value::Float(f32::NAN)), Json::Null);
        let d = schema_of("\"double\"");
        assert_eq!(to_json(&d, &d.root, &Value::Double(f64::INFINITY)), Json::Null);
        assert!(matches!(from_json(&d, &d.root, &Json::Null), Ok(Value::Double(x)) if x.is_nan()));
        let l = schema_of("\"long\"");
        assert_eq!(to_json(&l, &l.root, &Value::Long(i64::MAX)), json!(i64::MAX));
    }

    fn schema_of(text: &str) -> Schema {
        schema(text)
    }

    #[test]
    fn unions_pick_the_first_branch_that_fits() {
        let s = schema(r#"["double", "null", "int", "string", {"type": "enum", "name": "E", "symbols": ["A"]}]"#);
        let pick = |j: Json| match from_json(&s, &s.root, &j).unwrap() {
            Value::Union(i, v) => (i, *v),
            other => panic!("{other:?}"),
        };
        assert_eq!(pick(json!(null)), (1, Value::Null));
        assert_eq!(pick(json!(3)), (2, Value::Int(3)));
        assert_eq!(pick(json!(3.5)), (0, Value::Double(3.5)));
        // Out of int range: falls back to double.
        assert_eq!(pick(json!(1u64 << 40)), (0, Value::Double((1u64 << 40) as f64)));
        assert_eq!(pick(json!("A")), (3, Value::String("A".into())));

        let s = schema(r#"[{"type": "enum", "name": "E", "symbols": ["A"]}, "string"]"#);
        assert_eq!(from_json(&s, &s.root, &json!("A")).unwrap(), Value::Union(0, Box::new(Value::Enum(0, "A".into()))));
        assert_eq!(from_json(&s, &s.root, &json!("B")).unwrap(), Value::Union(1, Box::new(Value::String("B".into()))));

        let s = schema(
            r#"[{"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]},
                {"type": "record", "name": "B", "fields": [{"name": "b", "type": "string"}]},
                {"type": "map", "values": "long"}]"#,
        );
        let pick = |j: Json| match from_json(&s, &s.root, &j).unwrap() {
            Value::Union(i, _) => i,
            other => panic!("{other:?}"),
        };
        assert_eq!(pick(json!({"a": 1})), 0);
        assert_eq!(pick(json!({"b": "x"})), 1);
        assert_eq!(pick(json!({"c": 5})), 2);
        let e = err(&s, json!({"c": "no"}));
        assert!(e.starts_with(r#"{"c":"no"} fits no branch of union [record "A", record "B", map]"#), "{e}");
        let e = err(&s, json!(true));
        assert!(e.starts_with("expected one of union"), "{e}");
    }

    #[test]
    fn records_use_defaults_and_reject_extra_keys() {
        let s = schema(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "a", "type": "int"},
                {"name": "b", "type": "string", "default": "dflt"},
                {"name": "c", "type": ["null", "long"], "default": null},
                {"name": "d", "type": {"type": "record", "name": "S", "fields": [{"name": "x", "type": "int", "default": 7}]}, "default": {}},
                {"name": "e", "type": "bytes", "default": "\u00ff"}
            ]}"#,
        );
        let v = from_json(&s, &s.root, &json!({"a": 1})).unwrap();
        assert_eq!(
            v,
            Value::Record(vec![
                ("a".into(), Value::Int(1)),
                ("b".into(), Value::String("dflt".into())),
                ("c".into(), Value::Union(0, Box::new(Value::Null))),
                ("d".into(), Value::Record(vec![("x".into(), Value::Int(7))])),
                ("e".into(), Value::Bytes(vec![255])),
            ])
        );
        assert_eq!(err(&s, json!({})), r#"field "a": missing, and the schema gives no default"#);
        assert_eq!(err(&s, json!({"a": 1, "zz": 2})), r#"field "zz": not a field of record "R""#);
        assert_eq!(err(&s, json!({"a": 1, "d": {"x": "7"}})), r#"field "d.x": expected int, found "7""#);
        assert_eq!(err(&s, json!([1])), r#"expected record "R", found [1]"#);
    }

    #[test]
    fn errors_name_the_field() {
        let s = schema(MOVIE);
        let mut j = to_json(&s, &s.root, &movie(3));
        j["cast"][1]["name"] = json!(42);
        assert_eq!(err(&s, j), r#"field "cast[1].name": expected string, found 42"#);
        let mut j = to_json(&s, &s.root, &movie(1));
        j["tags"]["lang"] = json!(null);
        assert_eq!(err(&s, j), r#"field "tags["lang"]": expected string, found null"#);
        let mut j = to_json(&s, &s.root, &movie(1));
        j["genre"] = json!("WESTERN");
        assert_eq!(err(&s, j), r#"field "genre": "WESTERN" is not a symbol of enum "film.Genre""#);
        let mut j = to_json(&s, &s.root, &movie(1));
        j["hash"] = json!("abc");
        assert_eq!(err(&s, j), r#"field "hash": fixed "film.Hash" needs 4 bytes, found 3"#);
        let mut j = to_json(&s, &s.root, &movie(1));
        j["year"] = json!(1u64 << 33);
        assert_eq!(err(&s, j), r#"field "year": 8589934592 is out of range for int"#);
        let mut j = to_json(&s, &s.root, &movie(1));
        j["year"] = json!(1902.5);
        assert_eq!(err(&s, j), r#"field "year": expected int, found 1902.5"#);
        let mut j = to_json(&s, &s.root, &movie(1));
        j["rating"] = json!("great");
        assert_eq!(err(&s, j), r#"field "rating": expected one of union [null, double], found "great""#);
        let mut j = to_json(&s, &s.root, &movie(1));
        j["title"] = json!("x".repeat(100));
        j["flag"] = json!("x".repeat(100));
        let e = err(&s, j);
        assert!(e.starts_with(r#"field "flag": expected boolean, found "xxxx"#) && e.ends_with("..."), "{e}");

        let b = schema("\"bytes\"");
        assert!(err(&b, json!("Ā")).contains("code points 0-255"));
        let l = schema("\"long\"");
        assert_eq!(err(&l, json!(u64::MAX)), "18446744073709551615 is out of range for long");
    }

    #[test]
    fn datum_errors_pass_through() {
        let s = schema(MOVIE);
        let bytes = encode_datum(&s, &movie(1)).unwrap();
        assert!(datum_to_json(&s, &bytes[..bytes.len() - 1]).is_err());
        assert_eq!(decode_datum(&s, &bytes).unwrap(), movie(1));
    }

    #[test]
    fn floats_survive_the_trip_exactly() {
        let f = schema("\"float\"");
        let mut seed = 12345u32;
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let x = f32::from_bits(seed);
            if !x.is_finite() {
                continue;
            }
            let j = to_json(&f, &f.root, &Value::Float(x));
            let reread: Json = serde_json::from_str(&j.to_string()).unwrap();
            assert_eq!(from_json(&f, &f.root, &reread).unwrap(), Value::Float(x), "{j}");
        }
    }
}
