//! A captured table as the catalog describes it, and the Avro schemas derived from its columns.
//!
//! | Postgres | Avro |
//! |---|---|
//! | `boolean` | `boolean` |
//! | `smallint`, `integer` | `int` |
//! | `bigint` | `long` |
//! | `real`, `double precision` | `float`, `double` |
//! | `numeric(p, s)` | `bytes`, logical type `decimal` (precision p, scale s) |
//! | `numeric` (no precision) | `string` (its exact text) |
//! | `text`, `varchar`, `char(n)`, `name`, `"char"` | `string` |
//! | `bytea` | `bytes` |
//! | `date` | `int`, `date` |
//! | `time` | `long`, `time-micros` |
//! | `timestamp` | `long`, `local-timestamp-micros` |
//! | `timestamptz` | `long`, `timestamp-micros` |
//! | `uuid` | `string`, `uuid` |
//! | `json`, `jsonb` | `string` |
//! | an enum | `enum` (a `string` when a label is not an Avro name) |
//! | an array of any of these | `array` of `["null", item]` |
//!
//! A nullable column is `["null", T]` with default `null`.

use meshhost_avro::Value;
use serde_json::{json, Value as Json};

use super::connect::{literal, DatabaseError, Sql};

/// How a column's values are carried.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnType {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// `numeric(precision, scale)`.
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// `numeric` without a precision: any number, kept as its text.
    NumericText,
    Text,
    Bytes,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
    Enum {
        /// The type's name (the Avro enum's name).
        name: String,
        labels: Vec<String>,
    },
    Array(Box<ColumnType>),
}

/// One column of a captured table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    /// As `format_type` spells it: `numeric(10,2)`, `text[]`.
    pub type_name: String,
    /// The type's oid and modifier, as the replication stream's relation messages carry them.
    pub type_oid: u32,
    pub type_modifier: i32,
    pub ty: ColumnType,
    pub nullable: bool,
    /// Its values may be stored out of line (TOAST): an update that leaves such a value
    /// unchanged does not carry it (unless the replica identity is FULL), and the reader reads
    /// it back from the table.
    pub toastable: bool,
}

/// A table to capture.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDescription {
    pub database: String,
    pub schema: String,
    pub table: String,
    /// In table order.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order.
    pub key: Vec<usize>,
    /// `REPLICA IDENTITY FULL`: updates and deletes carry the whole old row.
    pub full_identity: bool,
}

/// Why a table cannot be captured.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error("table {table} does not exist in {address}; create it, or fix sources.*.postgres.table")]
    Missing { table: String, address: String },
    #[error("{table} is not a plain table (relkind {kind}); only tables can be captured")]
    NotATable { table: String, kind: String },
    #[error("table {table} has no primary key: captured records are keyed by it; add one")]
    NoPrimaryKey { table: String },
    #[error(
        "column {column} has type {type_name}, which meshhost does not map to Avro (mapped: boolean, smallint, integer, bigint, real, double precision, numeric, text, varchar, char, bytea, date, time, timestamp, timestamptz, uuid, json, jsonb, enums and arrays of these)"
    )]
    Unsupported { column: String, type_name: String },
    #[error("column {column}: {name:?} is not an Avro name (letters, digits and '_', not starting with a digit); rename the column")]
    BadName { column: String, name: String },
}

impl DescribeError {
    /// Whether the problem is the database's state rather than the pipeline file's: the table
    /// is missing or the server cannot be used (a runtime failure, exit 1, not invalid input).
    pub fn is_environmental(&self) -> bool {
        matches!(self, DescribeError::Database(_) | DescribeError::Missing { .. })
    }
}

/// Describe `schema.table` from the catalog.
pub fn describe(sql: &mut Sql, address: &str, schema: &str, table: &str) -> Result<TableDescription, DescribeError> {
    let qualified = format!("{schema}.{table}");
    let database = first(sql.query("SELECT current_database()")?).unwrap_or_default();
    let rows = sql.query(&format!(
        "SELECT c.oid, c.relkind, c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {} AND c.relname = {}",
        literal(schema),
        literal(table)
    ))?;
    let Some(row) = rows.into_iter().next() else {
        return Err(DescribeError::Missing { table: format!("{schema}.{table}"), address: address.to_string() });
    };
    let [oid, kind, identity] = [0, 1, 2].map(|i| row[i].clone().unwrap_or_default());
    if kind != "r" {
        return Err(DescribeError::NotATable { table: qualified, kind });
    }
    let attributes = sql.query(&format!(
        "SELECT a.attname, a.atttypid, format_type(a.atttypid, a.atttypmod), a.atttypmod, a.attnotnull, a.attstorage, \
                t.typtype, t.typcategory, t.typelem, t.typname, e.typtype, e.typname \
         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
         WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum"
    ))?;
    let key_names: Vec<String> = sql
        .query(&format!(
            "SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord), pg_attribute a \
             WHERE i.indrelid = {oid} AND i.indisprimary AND a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord"
        ))?
        .into_iter()
        .filter_map(|row| row.into_iter().next().flatten())
        .collect();
    let full_identity = identity == "f";
    let mut columns = Vec::new();
    for row in attributes {
        let text = |i: usize| row[i].clone().unwrap_or_default();
        let (name, type_name) = (text(0), text(2));
        if !is_avro_name(&name) {
            return Err(DescribeError::BadName { column: name.clone(), name });
        }
        let type_oid: u32 = text(1).parse().unwrap_or(0);
        let type_modifier: i32 = text(3).parse().unwrap_or(-1);
        let unsupported = || DescribeError::Unsupported { column: name.clone(), type_name: type_name.clone() };
        let ty = if text(7) == "A" {
            let element_oid: u32 = text(8).parse().unwrap_or(0);
            let element = column_type(sql, element_oid, -1, &text(10), &text(11))?.ok_or_else(unsupported)?;
            ColumnType::Array(Box::new(element))
        } else {
            column_type(sql, type_oid, type_modifier, &text(6), &text(9))?.ok_or_else(unsupported)?
        };
        let is_key = key_names.contains(&name);
        // Plain storage ('p') never leaves the row; the others may be TOASTed.
        let toastable = !is_key && text(5) != "p";
        columns.push(Column { name, type_name, type_oid, type_modifier, ty, nullable: text(4) != "t", toastable });
    }
    let key: Vec<usize> = key_names.iter().filter_map(|k| columns.iter().position(|c| &c.name == k)).collect();
    if key.is_empty() {
        return Err(DescribeError::NoPrimaryKey { table: qualified });
    }
    Ok(TableDescription { database, schema: schema.to_string(), table: table.to_string(), columns, key, full_identity })
}

/// The type of a column of type `oid`; `None` when it is not mapped.
fn column_type(
    sql: &mut Sql,
    oid: u32,
    modifier: i32,
    typtype: &str,
    typname: &str,
) -> Result<Option<ColumnType>, DatabaseError> {
    if typtype == "e" {
        let labels = sql
            .query(&format!("SELECT enumlabel FROM pg_enum WHERE enumtypid = {oid} ORDER BY enumsortorder"))?
            .into_iter()
            .filter_map(|row| row.into_iter().next().flatten())
            .collect();
        return Ok(Some(ColumnType::Enum { name: typname.to_string(), labels }));
    }
    Ok(scalar_type(oid, modifier))
}

/// The built-in types by oid (`pg_type.dat`); what the replication stream's relation messages
/// name too.
pub fn scalar_type(oid: u32, modifier: i32) -> Option<ColumnType> {
    Some(match oid {
        16 => ColumnType::Boolean,
        17 => ColumnType::Bytes,
        18 | 19 | 25 | 1042 | 1043 => ColumnType::Text,
        20 => ColumnType::Int64,
        21 => ColumnType::Int16,
        23 => ColumnType::Int32,
        114 | 3802 => ColumnType::Json,
        700 => ColumnType::Float32,
        701 => ColumnType::Float64,
        1082 => ColumnType::Date,
        1083 => ColumnType::Time,
        1114 => ColumnType::Timestamp,
        1184 => ColumnType::TimestampTz,
        2950 => ColumnType::Uuid,
        // The modifier packs (precision << 16 | scale) + 4; -1 is an unconstrained numeric.
        1700 if modifier >= 4 => {
            let packed = (modifier - 4) as u32;
            ColumnType::Decimal { precision: packed >> 16, scale: packed & 0xffff }
        }
        1700 => ColumnType::NumericText,
        _ => return None,
    })
}

fn first(rows: Vec<Vec<Option<String>>>) -> Option<String> {
    rows.into_iter().next().and_then(|row| row.into_iter().next().flatten())
}

/// Letters, digits and `_`, not starting with a digit: what Avro allows as a name.
pub fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `text` with every character an Avro name cannot hold replaced by `_`.
fn avro_name_part(text: &str) -> String {
    let name: String = text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

impl TableDescription {
    /// `schema.table`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// The namespace of the table's Avro records: `<database>.<schema>.<table>`, Debezium's
    /// naming with the database as its topic prefix.
    pub fn namespace(&self) -> String {
        [&self.database, &self.schema, &self.table].map(|part| avro_name_part(part)).join(".")
    }

    /// The Avro schema of a row: a record `Value` of the columns in table order.
    pub fn row_schema(&self) -> Json {
        let mut named = Vec::new();
        self.row_record(&mut named)
    }

    fn row_record(&self, named: &mut Vec<String>) -> Json {
        let fields: Vec<Json> = self
            .columns
            .iter()
            .map(|column| {
                let ty = avro_type(&column.ty, named);
                if column.nullable {
                    json!({"name": column.name, "type": ["null", ty], "default": null})
                } else {
                    json!({"name": column.name, "type": ty})
                }
            })
            .collect();
        json!({"type": "record", "name": "Value", "namespace": self.namespace(), "fields": fields})
    }

    /// The Avro schema of the Debezium envelope: `{before, after, source, op, ts_ms}`.
    pub fn debezium_schema(&self) -> Json {
        let mut named = Vec::new();
        let value = self.row_record(&mut named);
        let optional_long = json!(["null", "long"]);
        json!({
            "type": "record",
            "name": "Envelope",
            "namespace": self.namespace(),
            "fields": [
                {"name": "before", "type": ["null", value], "default": null},
                {"name": "after", "type": ["null", "Value"], "default": null},
                {"name": "source", "type": {
                    "type": "record",
                    "name": "Source",
                    "namespace": "meshhost.postgres",
                    "fields": [
                        {"name": "connector", "type": "string"},
                        {"name": "name", "type": "string"},
                        {"name": "ts_ms", "type": "long"},
                        {"name": "snapshot", "type": "string"},
                        {"name": "db", "type": "string"},
                        {"name": "schema", "type": "string"},
                        {"name": "table", "type": "string"},
                        {"name": "txId", "type": optional_long, "default": null},
                        {"name": "lsn", "type": optional_long, "default": null}
                    ]
                }},
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": ["null", "long"], "default": null}
            ]
        })
    }

    /// The record key of a row: a one-column key's text; a composite key as a JSON object of
    /// the key columns' texts, in key order (`{"tenant":"7","id":"42"}`). `None` when a key
    /// column is missing or NULL.
    pub fn key_of<'a>(&self, text_of: impl Fn(&str) -> Option<&'a str>) -> Option<Vec<u8>> {
        if let [only] = self.key[..] {
            return text_of(&self.columns[only].name).map(|text| text.as_bytes().to_vec());
        }
        let mut object = serde_json::Map::new();
        for &index in &self.key {
            let name = &self.columns[index].name;
            object.insert(name.clone(), Json::String(text_of(name)?.to_string()));
        }
        Some(serde_json::to_vec(&Json::Object(object)).expect("a map of strings serializes"))
    }

    /// The Avro value of a row, each column's text converted (`None` is NULL). `text_of`
    /// returns `Err` for a column whose value the change does not carry.
    pub fn row_value<'a>(&self, text_of: impl Fn(&str) -> Result<Option<&'a str>, String>) -> Result<Value, String> {
        let mut fields = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let value = match (text_of(&column.name)?, column.nullable) {
                (None, true) => Value::Union(0, Box::new(Value::Null)),
                (None, false) => return Err(format!("column {} is NULL but declared NOT NULL", column.name)),
                (Some(text), nullable) => {
                    let value = super::value::to_avro(&column.ty, text)
                        .map_err(|reason| format!("column {} ({}): {reason}", column.name, column.type_name))?;
                    if nullable {
                        Value::Union(1, Box::new(value))
                    } else {
                        value
                    }
                }
            };
            fields.push((column.name.clone(), value));
        }
        Ok(Value::Record(fields))
    }
}

/// The Avro type of a column type; a named type (an enum) is defined once, then referred to by
/// its name.
fn avro_type(ty: &ColumnType, named: &mut Vec<String>) -> Json {
    match ty {
        ColumnType::Boolean => json!("boolean"),
        ColumnType::Int16 | ColumnType::Int32 => json!("int"),
        ColumnType::Int64 => json!("long"),
        ColumnType::Float32 => json!("float"),
        ColumnType::Float64 => json!("double"),
        ColumnType::Decimal { precision, scale } => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale})
        }
        ColumnType::NumericText | ColumnType::Text | ColumnType::Json => json!("string"),
        ColumnType::Bytes => json!("bytes"),
        ColumnType::Date => json!({"type": "int", "logicalType": "date"}),
        ColumnType::Time => json!({"type": "long", "logicalType": "time-micros"}),
        ColumnType::Timestamp => json!({"type": "long", "logicalType": "local-timestamp-micros"}),
        ColumnType::TimestampTz => json!({"type": "long", "logicalType": "timestamp-micros"}),
        ColumnType::Uuid => json!({"type": "string", "logicalType": "uuid"}),
        ColumnType::Enum { name, labels } => {
            if !enum_as_avro(labels) {
                return json!("string");
            }
            let name = format!("meshhost.postgres.enums.{}", avro_name_part(name));
            if named.contains(&name) {
                return json!(name);
            }
            named.push(name.clone());
            json!({"type": "enum", "name": name, "symbols": labels})
        }
        ColumnType::Array(item) => json!({"type": "array", "items": ["null", avro_type(item, named)]}),
    }
}

/// Whether an enum's labels can be Avro symbols (else it is carried as a string).
pub fn enum_as_avro(labels: &[String]) -> bool {
    !labels.is_empty() && labels.iter().all(|label| is_avro_name(label))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TableDescription {
        let column = |name: &str, ty: ColumnType, nullable: bool| Column {
            name: name.into(),
            type_name: String::new(),
            type_oid: 0,
            type_modifier: -1,
            ty,
            nullable,
            toastable: false,
        };
        let mood = ColumnType::Enum { name: "mood".into(), labels: vec!["sad".into(), "happy".into()] };
        TableDescription {
            database: "shop".into(),
            schema: "public".into(),
            table: "movies".into(),
            columns: vec![
                column("id", ColumnType::Int64, false),
                column("price", ColumnType::Decimal { precision: 10, scale: 2 }, true),
                column("mood", mood.clone(), true),
                column("moods", ColumnType::Array(Box::new(mood)), true),
            ],
            key: vec![0],
            full_identity: true,
        }
    }

    #[test]
    fn both_envelopes_are_valid_avro_and_name_enums_once() {
        let table = table();
        for schema in [table.row_schema(), table.debezium_schema()] {
            meshhost_avro::Schema::parse(&schema.to_string()).unwrap();
        }
        let row = table.row_schema().to_string();
        assert_eq!(row.matches("\"symbols\"").count(), 1, "{row}");
        assert!(row.contains(r#""namespace":"shop.public.movies""#), "{row}");
    }

    #[test]
    fn keys_are_the_primary_key_text_or_a_json_object() {
        let mut table = table();
        let text = |name: &str| match name {
            "id" => Some("42"),
            "mood" => Some("sad"),
            _ => None,
        };
        assert_eq!(table.key_of(text), Some(b"42".to_vec()));
        table.key = vec![2, 0];
        assert_eq!(table.key_of(text), Some(br#"{"mood":"sad","id":"42"}"#.to_vec()));
        table.key = vec![1];
        assert_eq!(table.key_of(text), None);
    }

    #[test]
    fn rows_encode_with_nulls_and_unions() {
        let table = table();
        let schema = meshhost_avro::Schema::parse(&table.row_schema().to_string()).unwrap();
        let value = table
            .row_value(|name| {
                Ok(match name {
                    "id" => Some("7"),
                    "price" => Some("-12.50"),
                    "mood" => None,
                    _ => Some("{happy,NULL}"),
                })
            })
            .unwrap();
        let bytes = meshhost_avro::encode_datum(&schema, &value).unwrap();
        let json = meshhost_avro::datum_to_json(&schema, &bytes).unwrap();
        assert_eq!(json["id"], 7);
        assert_eq!(json["mood"], Json::Null);
        let error = table.row_value(|name| Ok(if name == "id" { None } else { Some("1") })).unwrap_err();
        assert_eq!(error, "column id is NULL but declared NOT NULL");
    }
}
