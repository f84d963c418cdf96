//! Records as lines of `COPY ... FROM STDIN` (text format): each field of the record's Avro
//! datum in the text form Postgres reads for its column's type ([`super::table`] chose the
//! types), escaped for COPY.
//!
//! Text, not binary, COPY: the text form of every type is documented and stable, and Postgres'
//! own input functions do the parsing (timestamps, numerics, arrays, jsonb), where binary COPY
//! would need a hand-written encoder per type. Measured against `psql`'s `\copy` of the same
//! rows, see the README's Performance section.

use std::fmt::Write as _;

use meshhost_avro::{AvroType, Reader, Schema, Value};

use super::table::{SqlType, TableDefinition};

/// How the fields of a record become a COPY line.
pub struct RowEncoder {
    schema: std::sync::Arc<Schema>,
    /// How many leading columns hold the record key (a table keyed by the record key); 0 when
    /// the key columns are fields of the value.
    leading: usize,
    /// Per field of the record, in order: its name, its type and its column's.
    fields: Vec<(String, AvroType, SqlType)>,
    /// Index in the table's columns of each key column, in key order.
    key: Vec<usize>,
    names: Vec<String>,
}

/// A record that cannot be written as a row: it goes to dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RowError(String);

/// One row's COPY line (ending in a newline) and its key columns' text (unescaped: to tell two
/// records of one key apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub text: String,
    pub key: Vec<String>,
    /// A tombstone's line: the key's row is deleted.
    pub delete: bool,
}

impl RowEncoder {
    /// For `table`, whose first `leading` columns hold the record key and the rest the fields
    /// of `schema`'s record.
    pub fn new(schema: std::sync::Arc<Schema>, table: &TableDefinition, leading: usize) -> RowEncoder {
        let record = schema.root_record().expect("a table's schema is a record (checked by TableDefinition)");
        let fields = record
            .fields
            .iter()
            .zip(&table.columns[leading..])
            .map(|(field, column)| (field.name.clone(), field.ty.clone(), column.ty.clone()))
            .collect();
        let names: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        let key = table.key.iter().map(|k| names.iter().position(|n| n == k).expect("a key is a column")).collect();
        RowEncoder { schema, leading, fields, key, names }
    }

    /// The line of the record whose key is `record_key` and value `datum`; with
    /// `deleted_column`, a last column `f` (the upsert staging table's `meshhost_delete`).
    pub fn line(&self, record_key: Option<&[u8]>, datum: &[u8], deleted_column: bool) -> Result<Line, RowError> {
        let mut reader = Reader::new(datum);
        let mut text = String::with_capacity(datum.len() * 2);
        let mut key = vec![String::new(); self.key.len()];
        if self.leading > 0 {
            key = self.key_of(record_key)?;
            for (index, part) in key.iter().enumerate() {
                if index > 0 {
                    text.push('\t');
                }
                escape_into(part, &mut text);
            }
        }
        // Each field's text is written to `raw`, then escaped into the line.
        let mut raw = String::new();
        for (index, (name, ty, column)) in self.fields.iter().enumerate() {
            let column_index = self.leading + index;
            if column_index > 0 {
                text.push('\t');
            }
            raw.clear();
            match read_cell(&self.schema, ty, column, &mut reader, &mut raw) {
                Ok(true) => escape_into(&raw, &mut text),
                Ok(false) => text.push_str("\\N"),
                Err(e) => return Err(RowError(format!("field {name}: {e}"))),
            }
            if let Some(position) = self.key.iter().position(|&k| k == column_index) {
                key[position] = raw.clone();
            }
        }
        if !reader.is_at_end() {
            return Err(RowError(format!("not a datum of the sink's schema: {} bytes left over", reader.remaining())));
        }
        if deleted_column {
            text.push_str("\tf");
        }
        text.push('\n');
        Ok(Line { text, key, delete: false })
    }

    /// The staging line of a tombstone: the key columns from the record key (a one-column
    /// key's text, or a JSON object of the key columns, as a captured table's records have),
    /// the rest NULL, and `meshhost_delete` true.
    pub fn delete_line(&self, record_key: Option<&[u8]>) -> Result<Line, RowError> {
        let key = self.key_of(record_key)?;
        let mut text = String::new();
        for index in 0..self.leading + self.fields.len() {
            if index > 0 {
                text.push('\t');
            }
            match self.key.iter().position(|&k| k == index) {
                Some(position) => escape_into(&key[position], &mut text),
                None => text.push_str("\\N"),
            }
        }
        text.push_str("\tt\n");
        Ok(Line { text, key, delete: true })
    }

    /// The key columns' text from a record key.
    fn key_of(&self, record_key: Option<&[u8]>) -> Result<Vec<String>, RowError> {
        let names: Vec<&str> = self.key.iter().map(|&i| self.names[i].as_str()).collect();
        let bytes = record_key.ok_or_else(|| RowError("a tombstone without a key: no row to delete".into()))?;
        let text = std::str::from_utf8(bytes).map_err(|_| RowError("the record key is not UTF-8 text".into()))?;
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(text) {
            return names
                .iter()
                .map(|name| match object.get(*name) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Null) | None => {
                        Err(RowError(format!("the record key {text} has no value for key column {name}")))
                    }
                    Some(other) => Ok(other.to_string()),
                })
                .collect();
        }
        match names.as_slice() {
            [_] => Ok(vec![text.to_string()]),
            _ => Err(RowError(format!(
                "the record key {text:?} is not a JSON object of the key columns {}",
                names.join(", ")
            ))),
        }
    }
}

/// Read one value of `ty` for a column of type `column` and append its text to `out`; false
/// for NULL (nothing appended). The common scalars are written straight from the datum's bytes;
/// the rest (jsonb, arrays, logical types) are decoded first ([`cell`]). Measured: decoding
/// every record into a value tree made allocation a quarter of the sink's time.
fn read_cell(
    schema: &Schema,
    ty: &AvroType,
    column: &SqlType,
    reader: &mut Reader,
    out: &mut String,
) -> Result<bool, String> {
    let datum_error = |e: meshhost_avro::DatumError| format!("not a datum of the sink's schema: {e}");
    let ty = schema.resolve(ty);
    match (ty, column) {
        (AvroType::Union(branches), _) => {
            let branch = &branches[reader.read_union_index(branches.len()).map_err(datum_error)?];
            read_cell(schema, branch, column, reader, out)
        }
        (AvroType::Null, _) => Ok(false),
        (AvroType::Boolean, SqlType::Boolean) => {
            out.push(if reader.read_boolean().map_err(datum_error)? { 't' } else { 'f' });
            Ok(true)
        }
        (AvroType::Int, SqlType::Integer) => {
            let _ = write!(out, "{}", reader.read_int().map_err(datum_error)?);
            Ok(true)
        }
        (AvroType::Long, SqlType::BigInt) => {
            let _ = write!(out, "{}", reader.read_long().map_err(datum_error)?);
            Ok(true)
        }
        (AvroType::Double, SqlType::DoublePrecision) => {
            let value = reader.read_double().map_err(datum_error)?;
            float(value, |out| write!(out, "{value:?}"), out);
            Ok(true)
        }
        (AvroType::String, SqlType::Text) => {
            out.push_str(reader.read_str().map_err(datum_error)?);
            Ok(true)
        }
        (AvroType::Enum(enumeration), SqlType::Text) => {
            let index = reader.read_enum_index(enumeration.symbols.len()).map_err(datum_error)?;
            out.push_str(&enumeration.symbols[index]);
            Ok(true)
        }
        _ => {
            let value = meshhost_avro::decode(schema, ty, reader).map_err(datum_error)?;
            cell(schema, ty, &value, column, out)
        }
    }
}

/// Append the text of one value for a column of type `column` to `out`; false for NULL
/// (nothing appended).
fn cell(schema: &Schema, ty: &AvroType, value: &Value, column: &SqlType, out: &mut String) -> Result<bool, String> {
    let ty = schema.resolve(ty);
    // A union's value is its branch's (null is NULL, also in a jsonb column).
    if let (Value::Union(branch, inner), AvroType::Union(branches)) = (value, ty) {
        let branch = branches.get(*branch as usize).ok_or("a union branch the schema does not have")?;
        return cell(schema, branch, inner, column, out);
    }
    if let Value::Null = value {
        return Ok(false);
    }
    if *column == SqlType::Jsonb {
        let _ = write!(out, "{}", meshhost_avro::to_json(schema, ty, value));
        return Ok(true);
    }
    let logical = match ty {
        AvroType::Logical { attributes, .. } => attributes.get("logicalType").and_then(|l| l.as_str()),
        _ => None,
    };
    match (value, column) {
        (Value::Array(items), SqlType::Array(item_column)) => {
            let AvroType::Array(item_ty) = base(ty) else { return Err("an array value for a non-array type".into()) };
            out.push('{');
            let mut item_text = String::new();
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                item_text.clear();
                if !cell(schema, item_ty, item, item_column, &mut item_text)? {
                    out.push_str("NULL");
                    continue;
                }
                out.push('"');
                for c in item_text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            out.push('}');
        }
        (Value::Boolean(b), _) => out.push(if *b { 't' } else { 'f' }),
        (Value::Int(days), SqlType::Date) => out.push_str(&date(*days as i64)?),
        (Value::Int(millis), SqlType::Time) => out.push_str(&time(*millis as i64 * 1000)?),
        (Value::Long(micros), SqlType::Time) => out.push_str(&time(*micros)?),
        (Value::Long(n), SqlType::TimestampTz | SqlType::Timestamp) => {
            let micros = match logical {
                Some(l) if l.ends_with("-millis") => n.checked_mul(1000).ok_or("timestamp out of range")?,
                Some(l) if l.ends_with("-nanos") => n.div_euclid(1000),
                _ => *n,
            };
            let zone = if *column == SqlType::TimestampTz { "+00" } else { "" };
            out.push_str(&timestamp(micros, zone)?);
        }
        (Value::Int(n), _) => {
            let _ = write!(out, "{n}");
        }
        (Value::Long(n), _) => {
            let _ = write!(out, "{n}");
        }
        (Value::Float(f), _) => float(*f as f64, |out| write!(out, "{f:?}"), out),
        (Value::Double(f), _) => float(*f, |out| write!(out, "{f:?}"), out),
        (Value::String(s), _) => out.push_str(s),
        (Value::Enum(_, symbol), _) => out.push_str(symbol),
        (Value::Bytes(bytes) | Value::Fixed(bytes), SqlType::Numeric { scale, .. }) => {
            out.push_str(&decimal(bytes, *scale)?)
        }
        (Value::Fixed(bytes), SqlType::Uuid) if bytes.len() == 16 => out.push_str(&uuid(bytes)),
        (Value::Bytes(bytes) | Value::Fixed(bytes), _) => {
            out.push_str("\\x");
            for byte in bytes {
                let _ = write!(out, "{byte:02x}");
            }
        }
        (other, column) => return Err(format!("a {other:?} value for a {} column", column.sql())),
    }
    Ok(true)
}

/// The base type of a logical type (the type itself otherwise).
fn base(ty: &AvroType) -> &AvroType {
    match ty {
        AvroType::Logical { base, .. } => base,
        other => other,
    }
}

/// A float's text: the shortest that reads back the same (`shortest`), or Postgres' names of
/// the values that have no digits.
fn float(value: f64, shortest: impl FnOnce(&mut String) -> std::fmt::Result, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = shortest(out);
    }
}

fn date(days: i64) -> Result<String, String> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    let date = epoch.checked_add_signed(chrono::TimeDelta::days(days)).ok_or("date out of range")?;
    Ok(date.format("%Y-%m-%d").to_string())
}

fn time(micros: i64) -> Result<String, String> {
    let seconds = u32::try_from(micros.div_euclid(1_000_000)).map_err(|_| "time of day out of range")?;
    let nanos = (micros.rem_euclid(1_000_000) * 1000) as u32;
    let time =
        chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos).ok_or("time of day out of range")?;
    Ok(time.format("%H:%M:%S%.6f").to_string())
}

fn timestamp(micros: i64, zone: &str) -> Result<String, String> {
    let at = chrono::DateTime::from_timestamp_micros(micros).ok_or("timestamp out of range")?;
    Ok(format!("{}{zone}", at.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f")))
}

/// An Avro decimal (big-endian two's complement of the unscaled value) as digits with a point.
fn decimal(bytes: &[u8], scale: u32) -> Result<String, String> {
    if bytes.len() > 16 {
        return Err(format!("a decimal of {} bytes: meshhost writes decimals of up to 38 digits", bytes.len()));
    }
    let mut unscaled: i128 = if bytes.first().is_some_and(|b| b & 0x80 != 0) { -1 } else { 0 };
    for byte in bytes {
        unscaled = (unscaled << 8) | *byte as i128;
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return Ok(format!("{sign}{digits}"));
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    Ok(format!("{sign}{whole}.{fraction}"))
}

fn uuid(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// `text` as a COPY text-format field: backslash, tab, newline and carriage return escaped.
/// Most fields have none of them: those are copied whole.
fn escape_into(text: &str, out: &mut String) {
    if !text.bytes().any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::table::{TableDefinition, TableName};
    use super::*;

    fn encoder(schema: &str, key: &[&str]) -> (RowEncoder, Arc<Schema>) {
        let schema = Arc::new(Schema::parse(schema).unwrap());
        let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
        let table = TableDefinition::from_schema(TableName::new("public", "t"), &schema, &key).unwrap();
        (RowEncoder::new(schema.clone(), &table, 0), schema)
    }

    const EVERY_TYPE: &str = r#"{"type": "record", "name": "r", "fields": [
        {"name": "id", "type": "long"},
        {"name": "title", "type": "string"},
        {"name": "ok", "type": "boolean"},
        {"name": "score", "type": ["null", "double"]},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "clock", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["MOVIE", "SERIES"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "meta", "type": {"type": "map", "values": "long"}},
        {"name": "blob", "type": "bytes"}
    ]}"#;

    #[test]
    fn every_type_in_its_columns_text_form() {
        let (encoder, schema) = encoder(EVERY_TYPE, &["id"]);
        let datum = meshhost_avro::json_to_datum(
            &schema,
            &json!({
                "id": 42, "title": "tab\there \\ \"quoted\"\nline", "ok": true, "score": 7.5,
                "price": "\u{0}\u{0}\u{30}\u{39}", "at": 1_700_000_000_123_456i64, "at_ms": -1,
                "local": 0, "day": 19000, "clock": 3_723_004,
                "uid": "6f1c1a2e-8a5b-4a5e-9a8e-0c1d2e3f4a5b", "kind": "SERIES",
                "tags": ["a", "b\"c", "d\\e"], "meta": {"x": 1}, "blob": "\u{1}\u{ff}"
            }),
        )
        .unwrap();
        let line = encoder.line(None, &datum, true).unwrap();
        let cells: Vec<&str> = line.text.trim_end_matches('\n').split('\t').collect();
        assert_eq!(
            cells,
            [
                "42",
                "tab\\there \\\\ \"quoted\"\\nline",
                "t",
                "7.5",
                "123.45",
                "2023-11-14 22:13:20.123456+00",
                "1969-12-31 23:59:59.999000+00",
                "1970-01-01 00:00:00.000000",
                "2022-01-08",
                "01:02:03.004000",
                "6f1c1a2e-8a5b-4a5e-9a8e-0c1d2e3f4a5b",
                "SERIES",
                "{\"a\",\"b\\\\\"c\",\"d\\\\\\\\e\"}",
                "{\"x\":1}",
                "\\\\x01ff",
                "f",
            ]
        );
        assert_eq!(line.key, ["42"]);
    }

    #[test]
    fn nulls_negative_decimals_and_wide_floats() {
        let schema = r#"{"type": "record", "name": "r", "fields": [
            {"name": "id", "type": "string"},
            {"name": "score", "type": ["null", "double"]},
            {"name": "amount", "type": {"type": "fixed", "name": "Amount", "size": 4, "logicalType": "decimal", "precision": 8, "scale": 3}},
            {"name": "ratio", "type": "float"}
        ]}"#;
        let (encoder, schema) = encoder(schema, &[]);
        let datum = meshhost_avro::json_to_datum(
            &schema,
            &json!({"id": "a", "score": null, "amount": "\u{ff}\u{ff}\u{ff}\u{fe}", "ratio": 0.25}),
        )
        .unwrap();
        let line = encoder.line(None, &datum, false).unwrap();
        assert_eq!(line.text, "a\t\\N\t-0.002\t0.25\n");
        // JSON has no NaN or infinities: their text forms on their own.
        let text = |value: f64| {
            let mut out = String::new();
            float(value, |out| write!(out, "{value:?}"), &mut out);
            out
        };
        assert_eq!(
            (text(f64::NAN), text(f64::NEG_INFINITY), text(1e300)),
            ("NaN".into(), "-Infinity".into(), "1e300".into())
        );
        assert_eq!(decimal(&[0x01, 0x00], 0).unwrap(), "256");
        assert_eq!(decimal(&[0x05], 3).unwrap(), "0.005");
    }

    #[test]
    fn tombstones_take_the_key_from_the_record_key() {
        let (single, _) = encoder(EVERY_TYPE, &["id"]);
        let line = single.delete_line(Some(b"42")).unwrap();
        assert_eq!(line.key, ["42"]);
        assert!(line.text.starts_with("42\t\\N\t"), "{}", line.text);
        assert!(line.text.ends_with("\t\\N\tt\n"), "{}", line.text);
        let (composite, _) = encoder(EVERY_TYPE, &["title", "id"]);
        let line = composite.delete_line(Some(br#"{"id": 7, "title": "a\tb"}"#)).unwrap();
        assert_eq!(line.key, ["a\tb", "7"]);
        assert!(line.text.starts_with("7\ta\\tb\t\\N"), "{}", line.text);
        assert_eq!(
            composite.delete_line(Some(b"7")).unwrap_err().to_string(),
            "the record key \"7\" is not a JSON object of the key columns title, id"
        );
        assert_eq!(single.delete_line(None).unwrap_err().to_string(), "a tombstone without a key: no row to delete");
    }
}
