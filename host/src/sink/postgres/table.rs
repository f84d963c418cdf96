//! The table a Postgres sink writes, derived from its input's Avro schema: the columns, the
//! `CREATE TABLE` statement, and what a table that already exists needs — nothing, new nullable
//! columns, or a stop naming the column it cannot take.
//!
//! No I/O here. The sink runs [`TableDefinition::create_sql`] (with `create: true`), reads the
//! table's columns from `information_schema.columns`, and acts on [`TableDefinition::changes`].
//!
//! ## Types
//!
//! The reverse of the change-data-capture mapping ([`crate::source::postgres::table`]):
//!
//! | Avro | Postgres column | why |
//! |---|---|---|
//! | `boolean` | `boolean` | |
//! | `int`, `long` | `integer`, `bigint` | |
//! | `float`, `double` | `real`, `double precision` | |
//! | `string` | `text` | |
//! | `bytes`, `fixed` | `bytea` | |
//! | `decimal(p, s)` on `bytes` or `fixed` | `numeric(p,s)` | exact, same digits |
//! | `date` | `date` | |
//! | `time-millis`, `time-micros` | `time` | microseconds hold both |
//! | `timestamp-millis`, `-micros`, `-nanos` | `timestamptz` | an instant; Postgres keeps microseconds |
//! | `local-timestamp-millis`, `-micros`, `-nanos` | `timestamp` | a wall-clock time, no zone |
//! | `uuid` on `string` or `fixed(16)` | `uuid` | |
//! | `enum` | `text` (the symbol) | no `CREATE TYPE` to keep in step: a new symbol needs no `ALTER TYPE` |
//! | `array` of a type above (items may be `["null", T]`) | `T[]` | one dimension; Postgres arrays hold NULLs |
//! | any other `array`, `map`, `record` | `jsonb` | nested data stays queryable without a table per level |
//! | `["null", T]`, `[T, "null"]` | `T`, nullable | |
//! | any other union, `null` | `jsonb` (nullable when `null` is a branch) | no one column type holds the branches |
//! | another logical type | its base type's column | the spec says to read unknown logical types as their base |
//!
//! A column is `NOT NULL` unless its field can be null, and a key column always is (a primary
//! key cannot hold NULL). A captured table comes back with its column types, except where the
//! capture gives several Postgres types one Avro type: `smallint` → `integer`; `varchar`,
//! `char(n)`, `name`, `json`, `jsonb`, an unconstrained `numeric` and enums → `text`.
//!
//! ## Changes
//!
//! Against an existing table, a field the table lacks is added as a nullable column when it
//! is optional or has a default (the rows already there get NULL); a new required field
//! without a default, a column whose type is not the field's, a `NOT NULL` column for an
//! optional field, and a key column the table lacks are errors naming the column. Columns the
//! schema lacks are left alone, and so is a nullable column for a required field (it takes
//! every value).

use std::fmt;

use meshhost_avro::{AvroType, Schema};
use serde_json::{Map, Value as Json};

use crate::source::postgres::connect::ident;

/// Postgres cuts longer identifiers (`NAMEDATALEN` - 1 bytes) silently: a column created under a
/// cut name would never match its field again.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A table and its schema (namespace), `schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> TableName {
        TableName { schema: schema.into(), name: name.into() }
    }

    /// Both parts quoted, for SQL: `"public"."movies"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.name))
    }
}

/// `schema.name`, unquoted, for messages.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A column type the sink creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlType {
    Boolean,
    Integer,
    BigInt,
    Real,
    DoublePrecision,
    Numeric {
        precision: u32,
        scale: u32,
    },
    Text,
    Bytea,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Jsonb,
    /// A one-dimensional array of a scalar type (never of `jsonb` or of an array).
    Array(Box<SqlType>),
}

impl SqlType {
    /// As `CREATE TABLE` writes it: `numeric(10,2)`, `bigint[]`.
    pub fn sql(&self) -> String {
        let name = match self {
            SqlType::Boolean => "boolean",
            SqlType::Integer => "integer",
            SqlType::BigInt => "bigint",
            SqlType::Real => "real",
            SqlType::DoublePrecision => "double precision",
            SqlType::Numeric { precision, scale } => return format!("numeric({precision},{scale})"),
            SqlType::Text => "text",
            SqlType::Bytea => "bytea",
            SqlType::Date => "date",
            SqlType::Time => "time",
            SqlType::Timestamp => "timestamp",
            SqlType::TimestampTz => "timestamptz",
            SqlType::Uuid => "uuid",
            SqlType::Jsonb => "jsonb",
            SqlType::Array(item) => return format!("{}[]", item.sql()),
        };
        name.to_string()
    }

    /// As `information_schema.columns.udt_name` (`pg_type.typname`) names it: `int8`, `_int8`.
    /// A numeric's precision and scale are not part of it.
    pub fn udt_name(&self) -> String {
        let name = match self {
            SqlType::Boolean => "bool",
            SqlType::Integer => "int4",
            SqlType::BigInt => "int8",
            SqlType::Real => "float4",
            SqlType::DoublePrecision => "float8",
            SqlType::Numeric { .. } => "numeric",
            SqlType::Text => "text",
            SqlType::Bytea => "bytea",
            SqlType::Date => "date",
            SqlType::Time => "time",
            SqlType::Timestamp => "timestamp",
            SqlType::TimestampTz => "timestamptz",
            SqlType::Uuid => "uuid",
            SqlType::Jsonb => "jsonb",
            SqlType::Array(item) => return format!("_{}", item.udt_name()),
        };
        name.to_string()
    }
}

/// A column the schema wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The field's name (Avro names need no case folding: the column is always quoted).
    pub name: String,
    pub ty: SqlType,
    /// Whether the column may hold NULL: the field can be null and is not a key column.
    pub nullable: bool,
    /// Whether the field has a default: old records read with the schema get it, so a table
    /// that lacks the column may add it for rows that have no value.
    pub has_default: bool,
}

/// A column of the table as it is, from `information_schema.columns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingColumn {
    pub name: String,
    /// Its `udt_name` (`int8`, `_text`, `timestamptz`). `data_type`'s spellings (`bigint`,
    /// `timestamp with time zone`) are understood too, but `data_type` says `ARRAY` for every
    /// array, so an array's item type is checked only with `udt_name`.
    pub data_type: String,
    /// `is_nullable = 'YES'`.
    pub nullable: bool,
}

/// What an existing table needs before the sink writes to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableChange {
    /// It takes every record of the schema as it is.
    UpToDate,
    /// The schema has fields the table lacks, each optional or with a default: add them, in
    /// this order, as nullable columns (the rows already there get NULL).
    AddColumns(Vec<AddColumn>),
}

/// A column to add, and the statement that adds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddColumn {
    pub column: String,
    /// `ALTER TABLE ... ADD COLUMN IF NOT EXISTS ...`: harmless when another instance of the
    /// sink added it first.
    pub sql: String,
}

/// Why a schema gives no table, or why an existing table cannot take the schema's records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("the schema's root is {found}, not a record: a table needs a record's fields as its columns")]
    NotARecord { found: String },
    #[error("{name:?} cannot be a Postgres identifier: it is empty or longer than 63 bytes (Postgres would cut it)")]
    BadIdentifier { name: String },
    #[error("key column {column} is not a field of the schema")]
    UnknownKeyColumn { column: String },
    #[error("key column {column} is named twice")]
    DuplicateKeyColumn { column: String },
    #[error(
        "key column {column} is a field of the records while other key columns are not: name only fields (the key is the fields') or only other names (the key is the record key's)"
    )]
    KeyColumnIsAField { column: String },
    #[error(
        "column {column} of {table} is {existing}, but its field needs {wanted}; change the column's type, or the field's"
    )]
    Retyped { table: String, column: String, existing: String, wanted: String },
    #[error(
        "column {column} of {table} is NOT NULL, but its field is optional; drop the column's NOT NULL, or make the field required"
    )]
    NotNull { table: String, column: String },
    #[error(
        "the schema has a new required field {column} without a default: the rows already in {table} have no value for it; give the field a default, or make it optional"
    )]
    NewRequiredField { table: String, column: String },
    #[error(
        "key column {column} is not in {table}, and a primary key is not changed in place; add the column and the key by hand, or recreate the table"
    )]
    MissingKeyColumn { table: String, column: String },
}

pub type Result<T, E = TableError> = std::result::Result<T, E>;

/// The table a schema wants: its columns in field order and its primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    pub table: TableName,
    pub columns: Vec<Column>,
    /// Key column names in key order; empty for a table without a primary key (append mode).
    pub key: Vec<String>,
}

impl TableDefinition {
    /// The table for records of `schema` (a record), keyed by the fields named in `key`.
    pub fn from_schema(table: TableName, schema: &Schema, key: &[String]) -> Result<TableDefinition> {
        let root = schema.root_record().ok_or_else(|| TableError::NotARecord { found: schema.root.describe() })?;
        check_identifier(&table.schema)?;
        check_identifier(&table.name)?;
        for (position, column) in key.iter().enumerate() {
            if key[..position].contains(column) {
                return Err(TableError::DuplicateKeyColumn { column: column.clone() });
            }
            if root.field(column).is_none() {
                return Err(TableError::UnknownKeyColumn { column: column.clone() });
            }
        }
        let columns = root
            .fields
            .iter()
            .map(|field| {
                check_identifier(&field.name)?;
                let (ty, can_be_null) = field_type(schema, &field.ty);
                Ok(Column {
                    name: field.name.clone(),
                    ty,
                    nullable: can_be_null && !key.contains(&field.name),
                    has_default: field.default.is_some(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TableDefinition { table, columns, key: key.to_vec() })
    }

    /// The table for records of `schema` keyed by their record key, not by fields: the `key`
    /// columns (text) first — a one-column key's text, or the members of a JSON-object key, as
    /// a captured table's records have — then the record's fields.
    pub fn keyed_by_record_key(table: TableName, schema: &Schema, key: &[String]) -> Result<TableDefinition> {
        let mut definition = TableDefinition::from_schema(table, schema, &[])?;
        let mut leading = Vec::with_capacity(key.len());
        for (position, column) in key.iter().enumerate() {
            check_identifier(column)?;
            if key[..position].contains(column) {
                return Err(TableError::DuplicateKeyColumn { column: column.clone() });
            }
            if definition.columns.iter().any(|c| &c.name == column) {
                return Err(TableError::KeyColumnIsAField { column: column.clone() });
            }
            leading.push(Column { name: column.clone(), ty: SqlType::Text, nullable: false, has_default: false });
        }
        definition.columns.splice(0..0, leading);
        definition.key = key.to_vec();
        Ok(definition)
    }

    /// `CREATE TABLE IF NOT EXISTS ...` with every column and the primary key.
    pub fn create_sql(&self) -> String {
        let mut parts: Vec<String> = self
            .columns
            .iter()
            .map(|column| {
                let not_null = if column.nullable { "" } else { " NOT NULL" };
                format!("{} {}{not_null}", ident(&column.name), column.ty.sql())
            })
            .collect();
        if !self.key.is_empty() {
            let key: Vec<String> = self.key.iter().map(|column| ident(column)).collect();
            parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
        }
        format!("CREATE TABLE IF NOT EXISTS {} ({})", self.table.quoted(), parts.join(", "))
    }

    /// What the table, whose columns are `existing`, needs to take every record of the schema;
    /// `Err` names the first column it cannot take.
    pub fn changes(&self, existing: &[ExistingColumn]) -> Result<TableChange> {
        let table = self.table.to_string();
        let mut added = Vec::new();
        for wanted in &self.columns {
            match existing.iter().find(|column| column.name == wanted.name) {
                Some(column) if !holds(&column.data_type, &wanted.ty) => {
                    return Err(TableError::Retyped {
                        table,
                        column: wanted.name.clone(),
                        existing: column.data_type.clone(),
                        wanted: wanted.ty.sql(),
                    });
                }
                Some(column) if wanted.nullable && !column.nullable => {
                    return Err(TableError::NotNull { table, column: wanted.name.clone() });
                }
                Some(_) => {}
                None if self.key.contains(&wanted.name) => {
                    return Err(TableError::MissingKeyColumn { table, column: wanted.name.clone() });
                }
                None if wanted.nullable || wanted.has_default => added.push(AddColumn {
                    column: wanted.name.clone(),
                    sql: format!(
                        "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}",
                        self.table.quoted(),
                        ident(&wanted.name),
                        wanted.ty.sql()
                    ),
                }),
                None => return Err(TableError::NewRequiredField { table, column: wanted.name.clone() }),
            }
        }
        Ok(if added.is_empty() { TableChange::UpToDate } else { TableChange::AddColumns(added) })
    }
}

fn check_identifier(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES {
        return Err(TableError::BadIdentifier { name: name.to_string() });
    }
    Ok(())
}

/// The column type of a field's type, and whether the field can be null.
fn field_type(schema: &Schema, ty: &AvroType) -> (SqlType, bool) {
    match schema.resolve(ty) {
        AvroType::Null => (SqlType::Jsonb, true),
        AvroType::Union(branches) => {
            let can_be_null = branches.contains(&AvroType::Null);
            let ty = only_non_null(branches).map_or(SqlType::Jsonb, |branch| value_type(schema, branch));
            (ty, can_be_null)
        }
        other => (value_type(schema, other), false),
    }
}

/// The one branch of a union that is not `null` (`T` of `["null", T]`); `None` when there are
/// several.
fn only_non_null(branches: &[AvroType]) -> Option<&AvroType> {
    let mut others = branches.iter().filter(|branch| **branch != AvroType::Null);
    match (others.next(), others.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// The column type of a value of `ty` (not null).
fn value_type(schema: &Schema, ty: &AvroType) -> SqlType {
    match schema.resolve(ty) {
        AvroType::Boolean => SqlType::Boolean,
        AvroType::Int => SqlType::Integer,
        AvroType::Long => SqlType::BigInt,
        AvroType::Float => SqlType::Real,
        AvroType::Double => SqlType::DoublePrecision,
        AvroType::String | AvroType::Enum(_) => SqlType::Text,
        AvroType::Bytes | AvroType::Fixed(_) => SqlType::Bytea,
        AvroType::Logical { base, attributes } => logical_type(schema, base, attributes),
        AvroType::Array(items) => array_type(schema, items),
        AvroType::Null | AvroType::Record(_) | AvroType::Map(_) | AvroType::Union(_) | AvroType::Ref(_) => {
            SqlType::Jsonb
        }
    }
}

/// A native array when its items have a scalar column type (nullable items included);
/// `jsonb` otherwise, since Postgres arrays of arrays must be rectangular and have no records.
fn array_type(schema: &Schema, items: &AvroType) -> SqlType {
    let item = match schema.resolve(items) {
        AvroType::Union(branches) => only_non_null(branches).map(|branch| value_type(schema, branch)),
        other => Some(value_type(schema, other)),
    };
    match item {
        Some(SqlType::Jsonb | SqlType::Array(_)) | None => SqlType::Jsonb,
        Some(item) => SqlType::Array(Box::new(item)),
    }
}

fn logical_type(schema: &Schema, base: &AvroType, attributes: &Map<String, Json>) -> SqlType {
    let logical = attributes.get("logicalType").and_then(Json::as_str).unwrap_or_default();
    match (logical, base) {
        ("decimal", AvroType::Bytes | AvroType::Fixed(_)) => match decimal_digits(attributes) {
            Some((precision, scale)) => SqlType::Numeric { precision, scale },
            None => value_type(schema, base),
        },
        ("uuid", AvroType::String) => SqlType::Uuid,
        ("uuid", AvroType::Fixed(fixed)) if fixed.size == 16 => SqlType::Uuid,
        ("date", AvroType::Int) => SqlType::Date,
        ("time-millis", AvroType::Int) | ("time-micros", AvroType::Long) => SqlType::Time,
        ("timestamp-millis" | "timestamp-micros" | "timestamp-nanos", AvroType::Long) => SqlType::TimestampTz,
        ("local-timestamp-millis" | "local-timestamp-micros" | "local-timestamp-nanos", AvroType::Long) => {
            SqlType::Timestamp
        }
        // Unknown logical types, and known ones on the wrong base or with bad parameters.
        _ => value_type(schema, base),
    }
}

/// A decimal's precision and scale when they are valid: precision at least 1, scale (0 when
/// left out) at most the precision.
fn decimal_digits(attributes: &Map<String, Json>) -> Option<(u32, u32)> {
    let precision = u32::try_from(attributes.get("precision")?.as_u64()?).ok()?;
    let scale = match attributes.get("scale") {
        None => 0,
        Some(scale) => u32::try_from(scale.as_u64()?).ok()?,
    };
    (precision >= 1 && scale <= precision).then_some((precision, scale))
}

/// Whether a column of `data_type` (a `udt_name`, or a `data_type` spelling) is `wanted`.
fn holds(data_type: &str, wanted: &SqlType) -> bool {
    let data_type = data_type.trim().to_ascii_lowercase();
    if data_type == "array" {
        return matches!(wanted, SqlType::Array(_));
    }
    let udt_name = match data_type.as_str() {
        "boolean" => "bool",
        "smallint" => "int2",
        "integer" => "int4",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" => "float8",
        "character varying" => "varchar",
        "character" => "bpchar",
        "time without time zone" => "time",
        "time with time zone" => "timetz",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        other => other,
    };
    udt_name == wanted.udt_name()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::source::postgres::table::{self as captured, ColumnType, TableDescription};

    fn record(fields: Json) -> Schema {
        Schema::from_json_value(&json!({"type": "record", "name": "Row", "fields": fields})).unwrap()
    }

    fn definition(fields: Json, key: &[&str]) -> TableDefinition {
        let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
        TableDefinition::from_schema(TableName::new("public", "movies"), &record(fields), &key).unwrap()
    }

    fn existing(columns: &[(&str, &str, bool)]) -> Vec<ExistingColumn> {
        columns
            .iter()
            .map(|&(name, data_type, nullable)| ExistingColumn {
                name: name.into(),
                data_type: data_type.into(),
                nullable,
            })
            .collect()
    }

    /// The column of a one-field record of type `ty`: its SQL type and whether it is nullable.
    fn column_of(ty: Json) -> (String, bool) {
        let table = definition(json!([{"name": "v", "type": ty}]), &[]);
        let column = &table.columns[0];
        (column.ty.sql(), column.nullable)
    }

    #[test]
    fn every_avro_type_has_a_column_type() {
        let money =
            json!({"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4});
        let cases = [
            (json!("boolean"), "boolean"),
            (json!("int"), "integer"),
            (json!("long"), "bigint"),
            (json!("float"), "real"),
            (json!("double"), "double precision"),
            (json!("string"), "text"),
            (json!("bytes"), "bytea"),
            (json!({"type": "fixed", "name": "Hash", "size": 32}), "bytea"),
            (json!({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}), "numeric(10,2)"),
            (json!({"type": "bytes", "logicalType": "decimal", "precision": 7}), "numeric(7,0)"),
            (money, "numeric(18,4)"),
            (json!({"type": "bytes", "logicalType": "decimal", "scale": 2}), "bytea"),
            (json!({"type": "int", "logicalType": "date"}), "date"),
            (json!({"type": "int", "logicalType": "time-millis"}), "time"),
            (json!({"type": "long", "logicalType": "time-micros"}), "time"),
            (json!({"type": "long", "logicalType": "timestamp-millis"}), "timestamptz"),
            (json!({"type": "long", "logicalType": "timestamp-micros"}), "timestamptz"),
            (json!({"type": "long", "logicalType": "timestamp-nanos"}), "timestamptz"),
            (json!({"type": "long", "logicalType": "local-timestamp-millis"}), "timestamp"),
            (json!({"type": "long", "logicalType": "local-timestamp-micros"}), "timestamp"),
            (json!({"type": "string", "logicalType": "uuid"}), "uuid"),
            (json!({"type": "fixed", "name": "Id", "size": 16, "logicalType": "uuid"}), "uuid"),
            (json!({"type": "int", "logicalType": "no-such-type"}), "integer"),
            (json!({"type": "string", "logicalType": "date"}), "text"),
            (json!({"type": "enum", "name": "Mood", "symbols": ["sad", "happy"]}), "text"),
            (json!({"type": "array", "items": "long"}), "bigint[]"),
            (json!({"type": "array", "items": ["null", "string"]}), "text[]"),
            (
                json!({"type": "array", "items": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 1}}),
                "numeric(5,1)[]",
            ),
            (json!({"type": "array", "items": {"type": "enum", "name": "E", "symbols": ["a"]}}), "text[]"),
            (json!({"type": "array", "items": {"type": "array", "items": "int"}}), "jsonb"),
            (json!({"type": "array", "items": ["int", "string"]}), "jsonb"),
            (json!({"type": "array", "items": {"type": "map", "values": "int"}}), "jsonb"),
            (json!({"type": "map", "values": "string"}), "jsonb"),
            (json!({"type": "record", "name": "Talent", "fields": [{"name": "name", "type": "string"}]}), "jsonb"),
            (json!(["int", "string"]), "jsonb"),
        ];
        for (ty, sql) in cases {
            assert_eq!(column_of(ty.clone()), (sql.to_string(), false), "{ty}");
        }
    }

    #[test]
    fn a_union_with_null_is_a_nullable_column() {
        let timestamp = json!({"type": "long", "logicalType": "timestamp-micros"});
        assert_eq!(column_of(json!(["null", "long"])), ("bigint".into(), true));
        assert_eq!(column_of(json!(["string", "null"])), ("text".into(), true));
        assert_eq!(column_of(json!(["null", timestamp])), ("timestamptz".into(), true));
        assert_eq!(column_of(json!(["null", "int", "string"])), ("jsonb".into(), true));
        assert_eq!(column_of(json!("null")), ("jsonb".into(), true));
    }

    #[test]
    fn a_named_type_used_again_maps_like_its_definition() {
        let table = definition(
            json!([
                {"name": "a", "type": {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 9, "scale": 2}},
                {"name": "b", "type": ["null", "Money"], "default": null},
                {"name": "c", "type": {"type": "enum", "name": "Mood", "symbols": ["sad"]}},
                {"name": "d", "type": {"type": "array", "items": "Mood"}}
            ]),
            &[],
        );
        let types: Vec<(String, bool)> = table.columns.iter().map(|c| (c.ty.sql(), c.nullable)).collect();
        assert_eq!(
            types,
            [
                ("numeric(9,2)".into(), false),
                ("numeric(9,2)".into(), true),
                ("text".into(), false),
                ("text[]".into(), false)
            ]
        );
    }

    #[test]
    fn udt_names_are_what_information_schema_reports() {
        let names: Vec<String> = [
            SqlType::Boolean,
            SqlType::Integer,
            SqlType::BigInt,
            SqlType::Real,
            SqlType::DoublePrecision,
            SqlType::Numeric { precision: 10, scale: 2 },
            SqlType::Timestamp,
            SqlType::TimestampTz,
            SqlType::Array(Box::new(SqlType::Text)),
        ]
        .iter()
        .map(SqlType::udt_name)
        .collect();
        assert_eq!(names, ["bool", "int4", "int8", "float4", "float8", "numeric", "timestamp", "timestamptz", "_text"]);
    }

    #[test]
    fn a_captured_table_comes_back_with_its_column_types() {
        let column = |name: &str, ty: ColumnType, nullable: bool| captured::Column {
            name: name.into(),
            type_name: String::new(),
            type_oid: 0,
            type_modifier: -1,
            ty,
            nullable,
            toastable: false,
        };
        let mood = ColumnType::Enum { name: "mood".into(), labels: vec!["sad".into(), "happy".into()] };
        let source = TableDescription {
            database: "shop".into(),
            schema: "public".into(),
            table: "movies".into(),
            columns: vec![
                column("id", ColumnType::Int64, false),
                column("flag", ColumnType::Boolean, true),
                column("small", ColumnType::Int16, true),
                column("count", ColumnType::Int32, true),
                column("ratio", ColumnType::Float32, true),
                column("score", ColumnType::Float64, true),
                column("price", ColumnType::Decimal { precision: 10, scale: 2 }, true),
                column("amount", ColumnType::NumericText, true),
                column("title", ColumnType::Text, false),
                column("poster", ColumnType::Bytes, true),
                column("released", ColumnType::Date, true),
                column("starts", ColumnType::Time, true),
                column("seen", ColumnType::Timestamp, true),
                column("updated", ColumnType::TimestampTz, true),
                column("ref", ColumnType::Uuid, true),
                column("extra", ColumnType::Json, true),
                column("mood", mood.clone(), true),
                column("moods", ColumnType::Array(Box::new(mood)), true),
                column("ratings", ColumnType::Array(Box::new(ColumnType::Int32)), true),
            ],
            key: vec![0],
            full_identity: false,
        };
        let schema = Schema::from_json_value(&source.row_schema()).unwrap();
        let table =
            TableDefinition::from_schema(TableName::new("public", "movies"), &schema, &["id".to_string()]).unwrap();
        assert_eq!(
            table.create_sql(),
            "CREATE TABLE IF NOT EXISTS \"public\".\"movies\" (\"id\" bigint NOT NULL, \"flag\" boolean, \
             \"small\" integer, \"count\" integer, \"ratio\" real, \"score\" double precision, \
             \"price\" numeric(10,2), \"amount\" text, \"title\" text NOT NULL, \"poster\" bytea, \
             \"released\" date, \"starts\" time, \"seen\" timestamp, \"updated\" timestamptz, \
             \"ref\" uuid, \"extra\" text, \"mood\" text, \"moods\" text[], \"ratings\" integer[], \
             PRIMARY KEY (\"id\"))"
        );
    }

    #[test]
    fn a_composite_key_is_not_null_whatever_its_fields_say() {
        let table = definition(
            json!([
                {"name": "tenant", "type": ["null", "string"], "default": null},
                {"name": "id", "type": "long"},
                {"name": "title", "type": ["null", "string"], "default": null}
            ]),
            &["tenant", "id"],
        );
        assert_eq!(
            table.create_sql(),
            r#"CREATE TABLE IF NOT EXISTS "public"."movies" ("tenant" text NOT NULL, "id" bigint NOT NULL, "title" text, PRIMARY KEY ("tenant", "id"))"#
        );
    }

    #[test]
    fn a_table_without_key_has_no_primary_key() {
        let table = definition(json!([{"name": "id", "type": "long"}]), &[]);
        assert_eq!(table.create_sql(), r#"CREATE TABLE IF NOT EXISTS "public"."movies" ("id" bigint NOT NULL)"#);
    }

    #[test]
    fn odd_names_are_quoted() {
        let schema = record(json!([
            {"name": "Title", "type": "string"},
            {"name": "select", "type": "string"},
            {"name": "user", "type": ["null", "string"], "default": null}
        ]));
        let table = TableName::new("My Schema", r#"movies "v2""#);
        let key = ["select".to_string()];
        let table = TableDefinition::from_schema(table, &schema, &key).unwrap();
        assert_eq!(
            table.create_sql(),
            r#"CREATE TABLE IF NOT EXISTS "My Schema"."movies ""v2""" ("Title" text NOT NULL, "select" text NOT NULL, "user" text, PRIMARY KEY ("select"))"#
        );
        let change = table.changes(&existing(&[("Title", "text", false), ("select", "text", false)])).unwrap();
        assert_eq!(
            change,
            TableChange::AddColumns(vec![AddColumn {
                column: "user".into(),
                sql: r#"ALTER TABLE "My Schema"."movies ""v2""" ADD COLUMN IF NOT EXISTS "user" text"#.into(),
            }])
        );
    }

    fn movies() -> TableDefinition {
        definition(
            json!([
                {"name": "id", "type": "long"},
                {"name": "title", "type": "string"},
                {"name": "released", "type": ["null", {"type": "int", "logicalType": "date"}], "default": null},
                {"name": "tags", "type": {"type": "array", "items": "string"}}
            ]),
            &["id"],
        )
    }

    #[test]
    fn a_matching_table_is_up_to_date_whichever_spelling_and_extra_columns_it_has() {
        let by_udt_name = existing(&[
            ("id", "int8", false),
            ("title", "text", true),
            ("released", "date", true),
            ("tags", "_text", false),
        ]);
        assert_eq!(movies().changes(&by_udt_name), Ok(TableChange::UpToDate));
        let by_data_type = existing(&[
            ("legacy", "USER-DEFINED", false),
            ("id", "bigint", false),
            ("title", "text", false),
            ("released", "date", false),
            ("tags", "ARRAY", true),
        ]);
        // `released` is NOT NULL in the table here, though optional: see the next tests.
        assert_eq!(
            movies().changes(&by_data_type),
            Err(TableError::NotNull { table: "public.movies".into(), column: "released".into() })
        );
        let mut by_data_type = by_data_type;
        by_data_type[3].nullable = true;
        assert_eq!(movies().changes(&by_data_type), Ok(TableChange::UpToDate));
    }

    #[test]
    fn a_new_optional_field_adds_a_nullable_column() {
        let table = definition(
            json!([
                {"name": "id", "type": "long"},
                {"name": "rating", "type": ["null", "double"], "default": null},
                {"name": "title", "type": "string"},
                {"name": "votes", "type": "int", "default": 0}
            ]),
            &["id"],
        );
        let change = table.changes(&existing(&[("id", "int8", false), ("title", "text", false)])).unwrap();
        assert_eq!(
            change,
            TableChange::AddColumns(vec![
                AddColumn {
                    column: "rating".into(),
                    sql: r#"ALTER TABLE "public"."movies" ADD COLUMN IF NOT EXISTS "rating" double precision"#.into(),
                },
                AddColumn {
                    column: "votes".into(),
                    sql: r#"ALTER TABLE "public"."movies" ADD COLUMN IF NOT EXISTS "votes" integer"#.into(),
                },
            ])
        );
    }

    #[test]
    fn a_retyped_column_is_refused_naming_it() {
        let columns = existing(&[
            ("id", "int8", false),
            ("title", "varchar", false),
            ("released", "date", true),
            ("tags", "_text", false),
        ]);
        let error = movies().changes(&columns).unwrap_err();
        assert_eq!(
            error,
            TableError::Retyped {
                table: "public.movies".into(),
                column: "title".into(),
                existing: "varchar".into(),
                wanted: "text".into(),
            }
        );
        assert_eq!(
            error.to_string(),
            "column title of public.movies is varchar, but its field needs text; change the column's type, or the field's"
        );
        let columns = existing(&[
            ("id", "int4", false),
            ("title", "text", false),
            ("released", "date", true),
            ("tags", "_int8", false),
        ]);
        assert!(matches!(movies().changes(&columns), Err(TableError::Retyped { column, .. }) if column == "id"));
        let columns = existing(&[
            ("id", "int8", false),
            ("title", "text", false),
            ("released", "date", true),
            ("tags", "_int8", false),
        ]);
        assert!(matches!(movies().changes(&columns), Err(TableError::Retyped { column, .. }) if column == "tags"));
        let columns = existing(&[
            ("id", "int8", false),
            ("title", "text", false),
            ("released", "timestamp", true),
            ("tags", "ARRAY", false),
        ]);
        assert!(matches!(movies().changes(&columns), Err(TableError::Retyped { column, .. }) if column == "released"));
    }

    #[test]
    fn a_new_required_field_is_refused_naming_it() {
        let columns = existing(&[("id", "int8", false), ("released", "date", true), ("tags", "_text", false)]);
        let error = movies().changes(&columns).unwrap_err();
        assert_eq!(error, TableError::NewRequiredField { table: "public.movies".into(), column: "title".into() });
        assert_eq!(
            error.to_string(),
            "the schema has a new required field title without a default: the rows already in public.movies have no value for it; give the field a default, or make it optional"
        );
    }

    #[test]
    fn a_key_column_the_table_lacks_is_refused() {
        let columns = existing(&[("title", "text", false), ("released", "date", true), ("tags", "_text", false)]);
        assert_eq!(
            movies().changes(&columns),
            Err(TableError::MissingKeyColumn { table: "public.movies".into(), column: "id".into() })
        );
    }

    #[test]
    fn schemas_that_give_no_table_are_refused() {
        let name = || TableName::new("public", "movies");
        let movies = record(json!([{"name": "id", "type": "long"}]));
        let key = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let long_name = "x".repeat(64);
        let cases = [
            (
                TableDefinition::from_schema(name(), &Schema::parse(r#""long""#).unwrap(), &[]),
                TableError::NotARecord { found: "long".into() },
            ),
            (
                TableDefinition::from_schema(name(), &movies, &key(&["title"])),
                TableError::UnknownKeyColumn { column: "title".into() },
            ),
            (
                TableDefinition::from_schema(name(), &movies, &key(&["id", "id"])),
                TableError::DuplicateKeyColumn { column: "id".into() },
            ),
            (
                TableDefinition::from_schema(TableName::new("public", &long_name), &movies, &[]),
                TableError::BadIdentifier { name: long_name.clone() },
            ),
            (
                TableDefinition::from_schema(name(), &record(json!([{"name": long_name, "type": "int"}])), &[]),
                TableError::BadIdentifier { name: long_name.clone() },
            ),
        ];
        for (result, error) in cases {
            assert_eq!(result, Err(error));
        }
        assert!(TableDefinition::from_schema(name(), &record(json!([{"name": "x".repeat(63), "type": "int"}])), &[])
            .is_ok());
    }

    #[test]
    fn a_table_keyed_by_the_record_key_has_text_key_columns_first() {
        let schema = Schema::parse(
            r#"{"type": "record", "name": "r", "fields": [{"name": "movies", "type": {"type": "map", "values": "string"}}]}"#,
        )
        .unwrap();
        let table =
            TableDefinition::keyed_by_record_key(TableName::new("public", "t"), &schema, &["id".into()]).unwrap();
        assert_eq!(
            table.create_sql(),
            r#"CREATE TABLE IF NOT EXISTS "public"."t" ("id" text NOT NULL, "movies" jsonb NOT NULL, PRIMARY KEY ("id"))"#
        );
        let clash = TableDefinition::keyed_by_record_key(TableName::new("public", "t"), &schema, &["movies".into()]);
        assert_eq!(clash.unwrap_err(), TableError::KeyColumnIsAField { column: "movies".into() });
    }
}
