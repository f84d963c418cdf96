//! Records as lines of `COPY ... FROM STDIN` (text format): each field of the record's Avro
//! datum in the text form Postgres reads for its column's type ([`super::table`] chose the
//! types), escaped for COPY.
//!
//! Text, not binary, COPY: the text form of every type is documented and stable, and Postgres'
//! own input functions do the parsing (timestamps, numerics, arrays, jsonb), where binary COPY
//! would need a hand-written encoder per type. Measured against `psql`'s `\copy` of the same
//! rows, see the README's Performance section.

use std::fmt::Write as _;

use meshhost_avro::{AvroType, Schema, Value};

use super::table::{SqlType, TableDefinition};

/// How the fields of a record become a COPY line.
pub struct RowEncoder {
    schema: std::sync::Arc<Schema>,
    /// How many leading columns hold the record key (a table keyed by the record key); 0 when
    /// the key columns are fields of the value.
    leading: usize,
    /// Per field of the record, in order: its type and its column's.
    fields: Vec<(AvroType, SqlType)>,
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
            .map(|(field, column)| (field.ty.clone(), column.ty.clone()))
            .collect();
        let names: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        let key = table.key.iter().map(|k| names.iter().position(|n| n == k).expect("a key is a column")).collect();
        RowEncoder { schema, leading, fields, key, names }
    }

    /// The line of the record whose key is `record_key` and value `datum`; with
    /// `deleted_column`, a last column `f` (the upsert staging table's `meshhost_delete`).
    pub fn line(&self, record_key: Option<&[u8]>, datum: &[u8], deleted_column: bool) -> Result<Line, RowError> {
        let value = meshhost_avro::decode_datum(&self.schema, datum)
            .map_err(|e| RowError(format!("not a datum of the sink's schema: {e}")))?;
        let Value::Record(fields) = value else { return Err(RowError("not a record".into())) };
        let mut cells: Vec<Option<String>> = Vec::with_capacity(self.leading + fields.len());
        if self.leading > 0 {
            cells.extend(self.key_of(record_key)?.into_iter().map(Some));
        }
        for ((name, value), (ty, column)) in fields.iter().zip(&self.fields) {
            let cell = cell(&self.schema, ty, value, column).map_err(|e| RowError(format!("field {name}: {e}")))?;
            cells.push(cell);
        }
        let mut text = String::with_capacity(datum.len() * 2);
        for (index, cell) in cells.iter().enumerate() {
            if index > 0 {
                text.push('\t');
            }
            match cell {
                Some(cell) => escape_into(cell, &mut text),
                None => text.push_str("\\N"),
            }
        }
        if deleted_column {
            text.push_str("\tf");
        }
        text.push('\n');
        let key = self.key.iter().map(|&i| cells[i].clone().unwrap_or_default()).collect();
        Ok(Line { text, key })
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
        Ok(Line { text, key })
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

/// The text of one value for a column of type `column`; `None` is NULL.
fn cell(schema: &Schema, ty: &AvroType, value: &Value, column: &SqlType) -> Result<Option<String>, String> {
    let ty = schema.resolve(ty);
    // A union's value is its branch's (null is NULL, also in a jsonb column).
    if let (Value::Union(branch, inner), AvroType::Union(branches)) = (value, ty) {
        let branch = branches.get(*branch as usize).ok_or("a union branch the schema does not have")?;
        return cell(schema, branch, inner, column);
    }
    if let Value::Null = value {
        return Ok(None);
    }
    if *column == SqlType::Jsonb {
        return Ok(Some(meshhost_avro::to_json(schema, ty, value).to_string()));
    }
    let logical = match ty {
        AvroType::Logical { attributes, .. } => attributes.get("logicalType").and_then(|l| l.as_str()),
        _ => None,
    };
    let text = match (value, column) {
        (Value::Array(items), SqlType::Array(item_column)) => {
            let AvroType::Array(item_ty) = base(ty) else { return Err("an array value for a non-array type".into()) };
            let mut text = String::from("{");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                match cell(schema, item_ty, item, item_column)? {
                    None => text.push_str("NULL"),
                    Some(item) => {
                        text.push('"');
                        for c in item.chars() {
                            if c == '"' || c == '\\' {
                                text.push('\\');
                            }
                            text.push(c);
                        }
                        text.push('"');
                    }
                }
            }
            text.push('}');
            text
        }
        (Value::Boolean(b), _) => (if *b { "t" } else { "f" }).to_string(),
        (Value::Int(days), SqlType::Date) => date(*days as i64)?,
        (Value::Int(millis), SqlType::Time) => time(*millis as i64 * 1000)?,
        (Value::Long(micros), SqlType::Time) => time(*micros)?,
        (Value::Long(n), SqlType::TimestampTz | SqlType::Timestamp) => {
            let micros = match logical {
                Some(l) if l.ends_with("-millis") => n.checked_mul(1000).ok_or("timestamp out of range")?,
                Some(l) if l.ends_with("-nanos") => n.div_euclid(1000),
                _ => *n,
            };
            let zone = if *column == SqlType::TimestampTz { "+00" } else { "" };
            timestamp(micros, zone)?
        }
        (Value::Int(n), _) => n.to_string(),
        (Value::Long(n), _) => n.to_string(),
        (Value::Float(f), _) => float(*f as f64, format!("{f:?}")),
        (Value::Double(f), _) => float(*f, format!("{f:?}")),
        (Value::String(s), _) => s.clone(),
        (Value::Enum(_, symbol), _) => symbol.clone(),
        (Value::Bytes(bytes) | Value::Fixed(bytes), SqlType::Numeric { scale, .. }) => decimal(bytes, *scale)?,
        (Value::Fixed(bytes), SqlType::Uuid) if bytes.len() == 16 => uuid(bytes),
        (Value::Bytes(bytes) | Value::Fixed(bytes), _) => {
            let mut text = String::with_capacity(2 + bytes.len() * 2);
            text.push_str("\\x");
            for byte in bytes {
                let _ = write!(text, "{byte:02x}");
            }
            text
        }
        (other, column) => return Err(format!("a {other:?} value for a {} column", column.sql())),
    };
    Ok(Some(text))
}

/// The base type of a logical type (the type itself otherwise).
fn base(ty: &AvroType) -> &AvroType {
    match ty {
        AvroType::Logical { base, .. } => base,
        other => other,
    }
}

fn float(value: f64, shortest: String) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        (if value > 0.0 { "Infinity" } else { "-Infinity" }).into()
    } else {
        shortest
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
fn escape_into(text: &str, out: &mut String) {
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
        assert_eq!(float(f64::NAN, String::new()), "NaN");
        assert_eq!(float(f64::NEG_INFINITY, String::new()), "-Infinity");
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
