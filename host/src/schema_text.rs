//! Avro schemas written for people: `validate`'s one-field-per-line summaries, `source show`'s
//! field lists with docs, and the field diffs of `lock --update`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use meshhost_avro::{AvroType, Schema};

/// A type in a few words: `string or null`, `array of string`, `demo.Person {name: string, born:
/// int or null}` (records inline), `int (date)`.
pub fn type_name(ty: &AvroType) -> String {
    words(ty, None)
}

/// How [`words`] writes records: inline with their fields, or (`Some(schema)`, for outlines
/// that list nested fields on their own lines) as `record NAME`.
fn words(ty: &AvroType, outline: Option<&Schema>) -> String {
    let word = |ty: &AvroType| words(ty, outline);
    match ty {
        AvroType::Union(branches) if branches.len() == 2 && branches.contains(&AvroType::Null) => {
            let other = branches.iter().find(|b| **b != AvroType::Null).expect("two branches");
            format!("{} or null", word(other))
        }
        AvroType::Union(branches) => branches.iter().map(word).collect::<Vec<_>>().join(" | "),
        AvroType::Array(items) => format!("array of {}", word(items)),
        AvroType::Map(values) => format!("map of {}", word(values)),
        AvroType::Record(record) if outline.is_some() => format!("record {}", record.name),
        AvroType::Record(record) => {
            let fields: Vec<String> = record.fields.iter().map(|f| format!("{}: {}", f.name, word(&f.ty))).collect();
            format!("{} {{{}}}", record.name, fields.join(", "))
        }
        AvroType::Enum(e) => format!("enum {} {{{}}}", e.name, e.symbols.join(", ")),
        AvroType::Logical { base, attributes } => match attributes.get("logicalType").and_then(|t| t.as_str()) {
            Some(logical) => format!("{} ({logical})", word(base)),
            None => word(base),
        },
        AvroType::Ref(name) => match outline.map(|schema| schema.resolve(ty)) {
            Some(AvroType::Record(_)) => format!("record {name}"),
            _ => name.clone(),
        },
        other => other.describe(),
    }
}

/// A schema for people: a record's name, then one line per field (`    year: int`), nested
/// records inline.
pub fn summary(schema: &Schema) -> String {
    match schema.root_record() {
        Some(record) => {
            let mut text = format!("record {}", record.name);
            for field in &record.fields {
                text.push_str(&format!("\n      {}: {}", field.name, type_name(&field.ty)));
            }
            text
        }
        None => type_name(&schema.root),
    }
}

/// One line per field (nested records indented), with its doc.
pub fn fields(schema: &Schema) -> String {
    fn walk(schema: &Schema, ty: &AvroType, depth: usize, out: &mut String, seen: &mut BTreeSet<String>) {
        let ty = schema.resolve(ty);
        let AvroType::Record(record) = ty else { return };
        if !seen.insert(record.name.clone()) {
            return;
        }
        for field in &record.fields {
            let doc = field.doc.as_deref().map(|d| format!("  — {d}")).unwrap_or_default();
            let _ =
                writeln!(out, "{}{}: {}{doc}", "    ".repeat(depth + 1), field.name, words(&field.ty, Some(schema)));
            for inner in nested(schema, &field.ty) {
                walk(schema, inner, depth + 1, out, seen);
            }
        }
    }
    let mut out = String::new();
    walk(schema, &schema.root, 0, &mut out, &mut BTreeSet::new());
    out
}

/// The record types a field's type holds (directly, in a union, array or map).
fn nested<'a>(schema: &'a Schema, ty: &'a AvroType) -> Vec<&'a AvroType> {
    match schema.resolve(ty) {
        record @ AvroType::Record(_) => vec![record],
        AvroType::Union(branches) => branches.iter().flat_map(|b| nested(schema, b)).collect(),
        AvroType::Array(items) => nested(schema, items),
        AvroType::Map(values) => nested(schema, values),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_print_one_field_per_line() {
        let schema = meshhost_avro::Schema::parse(
            r#"{"type": "record", "name": "Movie", "namespace": "demo", "fields": [
                {"name": "id", "type": "long"},
                {"name": "title", "type": ["null", "string"]},
                {"name": "released", "type": {"type": "int", "logicalType": "date"}},
                {"name": "cast", "type": {"type": "array", "items": {"type": "record", "name": "Actor", "fields": [{"name": "name", "type": "string"}]}}},
                {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "HEIST"]}},
                {"name": "lead", "type": ["null", "Actor"]}]}"#,
        )
        .unwrap();
        assert_eq!(
            summary(&schema),
            "record demo.Movie\n      id: long\n      title: string or null\n      released: int (date)\n      cast: array of demo.Actor {name: string}\n      genre: enum demo.Genre {DRAMA, HEIST}\n      lead: demo.Actor or null"
        );
    }
}
