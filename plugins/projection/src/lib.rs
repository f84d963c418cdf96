//! `mesh/projection`: keeps some top-level fields of each record, in a given order, optionally
//! renamed.
//!
//! ```yaml
//! with:
//!   fields: [id, title, year]
//!   rename: { title: name }
//! ```
//!
//! The output port `out` carries a record named `<input record name>_projection` with the listed
//! fields in the listed order, each with its input type (and the named types that type uses).
//! Per record, the projection finds the byte ranges of the input's fields and concatenates the
//! kept ones: nothing is decoded or re-encoded. Key, headers and timestamp are kept; tombstones
//! pass through.

use std::ops::Range;

use meshhost_sdk::avro::{self, Field, RecordType, Schema};
use meshhost_sdk::options::{self, field_names, json_kind};
use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

/// The options `with:` accepts.
const OPTIONS: &[&str] = &["fields", "rename"];

/// The projection of one processor instance.
pub struct Projection {
    schema: Schema,
    record: RecordType,
    /// The index, in the input record, of each output field, in output order.
    picks: Vec<usize>,
    /// Reused across records.
    ranges: Vec<Range<usize>>,
}

impl Projection {
    /// Build the projection from its `with:` mapping and its input ports.
    pub fn new(config: &serde_json::Value, inputs: &[InputPort]) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let options = options::options("mesh/projection", config, OPTIONS, &mut errors);

        let input = match inputs {
            [input] => match options::record_input("mesh/projection", input) {
                Ok(input) => Some(input),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            _ => {
                errors.push(ConfigError::at(
                    "",
                    format!("mesh/projection takes exactly one input, got {}", inputs.len()),
                ));
                None
            }
        };
        let input_fields: &[Field] = input.as_ref().map_or(&[], |(_, record)| &record.fields);
        let known = |name: &str| input.is_none() || input_fields.iter().any(|f| f.name == name);

        // fields: the input fields to keep, in output order
        let mut picks: Vec<(usize, String)> = Vec::new(); // (index in `fields`, name)
        match options.map(|o| o.get("fields")) {
            None => {} // `with` itself is wrong
            Some(None) => {
                errors.push(ConfigError::at("fields", "missing: list the fields of the input record to keep"))
            }
            Some(Some(serde_json::Value::Array(list))) if list.is_empty() => {
                errors.push(ConfigError::at("fields", "must list at least one field"))
            }
            Some(Some(serde_json::Value::Array(list))) => {
                for (i, entry) in list.iter().enumerate() {
                    let path = format!("fields[{i}]");
                    let Some(name) = entry.as_str() else {
                        errors.push(ConfigError::at(
                            path,
                            format!("must be a field name (a string), got {}", json_kind(entry)),
                        ));
                        continue;
                    };
                    if !known(name) {
                        errors.push(ConfigError::at(
                            path,
                            format!("no field {name:?} in input schema; fields are: {}", field_names(input_fields)),
                        ));
                    } else if let Some((first, _)) = picks.iter().find(|(_, n)| n == name) {
                        errors.push(ConfigError::at(
                            path,
                            format!("field {name:?} is already listed at fields[{first}]"),
                        ));
                    } else {
                        picks.push((i, name.to_owned()));
                    }
                }
            }
            Some(Some(other)) => errors
                .push(ConfigError::at("fields", format!("must be a list of field names, got {}", json_kind(other)))),
        }

        // rename: old name → new name, for fields that are kept
        let mut output_names: Vec<String> = picks.iter().map(|(_, name)| name.clone()).collect();
        let mut renamed = vec![None::<String>; picks.len()]; // the rename path of each output field
        match options.and_then(|o| o.get("rename")) {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::Object(rename)) => {
                for (old, new) in rename {
                    let path = format!("rename.{old}");
                    let Some(new) = new.as_str() else {
                        errors.push(ConfigError::at(
                            path,
                            format!("must be the new name (a string), got {}", json_kind(new)),
                        ));
                        continue;
                    };
                    let Some(at) = picks.iter().position(|(_, name)| name == old) else {
                        let listed = picks.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ");
                        errors.push(ConfigError::at(
                            path,
                            format!("{old:?} is not one of the projected fields ({listed})"),
                        ));
                        continue;
                    };
                    if !is_avro_name(new) {
                        errors.push(ConfigError::at(
                            path,
                            format!(
                                "{new:?} is not a valid Avro field name (a letter or _, then letters, digits or _)"
                            ),
                        ));
                        continue;
                    }
                    output_names[at] = new.to_owned();
                    renamed[at] = Some(path);
                }
            }
            Some(other) => errors.push(ConfigError::at(
                "rename",
                format!("must be a mapping of field names to new names, got {}", json_kind(other)),
            )),
        }
        // Two output fields with one name: blame the rename that made the collision.
        for (i, name) in output_names.iter().enumerate() {
            if let Some(j) = output_names[..i].iter().position(|n| n == name) {
                let (path, other) = match (&renamed[i], &renamed[j]) {
                    (Some(path), _) => (path.clone(), &picks[j].1),
                    (None, Some(path)) => (path.clone(), &picks[i].1),
                    (None, None) => unreachable!("fields are listed once"),
                };
                errors.push(ConfigError::at(path, format!("{name:?} collides with output field {other:?}")));
            }
        }

        let Some((schema, record)) = input else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }

        let picks: Vec<usize> = picks
            .iter()
            .map(|(_, name)| record.fields.iter().position(|f| &f.name == name).expect("checked above"))
            .collect();
        let fields: Vec<Field> =
            picks.iter().zip(output_names).map(|(&i, name)| Field { name, ..record.fields[i].clone() }).collect();
        let output = Schema::record(&format!("{}_projection", record.name), fields, &schema)
            .map_err(|e| vec![ConfigError::at("", format!("cannot build the output schema: {e}"))])?;
        let outputs = vec![OutputPort { name: "out".into(), schema: output.to_json() }];
        Ok((Projection { schema, record, picks, ranges: Vec::new() }, outputs))
    }

    /// The projected value of a datum of the input schema.
    pub fn project(&mut self, value: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.project_into(value, &mut out)?;
        Ok(out)
    }

    /// Replace `out` with the projected value of a datum of the input schema: the kept fields'
    /// byte ranges, copied in output order.
    pub fn project_into(&mut self, value: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        avro::field_ranges_into(&self.schema, &self.record, value, &mut self.ranges)
            .map_err(|e| format!("value does not decode as the input schema: {e}"))?;
        out.clear();
        for &i in &self.picks {
            out.extend_from_slice(&value[self.ranges[i].clone()]);
        }
        Ok(())
    }
}

impl Processor for Projection {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        Projection::new(&config, &inputs)
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        let mut projected = Vec::new();
        for (i, record) in batch.iter().enumerate() {
            let i = i as u32;
            match record.value().map(|value| self.project_into(value, &mut projected)) {
                None => out.pass(0, i), // a tombstone passes through
                Some(Ok(())) => out.emit_value(0, i, Some(&projected)),
                Some(Err(reason)) => out.fail(i, reason),
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
meshhost_sdk::export!(Projection);

/// Whether `name` is a valid Avro (field) name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_avro_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshhost_sdk::avro::{AvroType, Value};
    use meshhost_sdk::{Header, Record};
    use serde_json::json;

    const SCHEMA: &str = r#"{"type": "record", "name": "Movie", "namespace": "test", "fields": [
        {"name": "id", "type": "long"},
        {"name": "title", "type": "string"},
        {"name": "year", "type": "int"},
        {"name": "director", "type": {"type": "record", "name": "Person", "fields": [
            {"name": "name", "type": "string"},
            {"name": "born", "type": ["null", "int"], "default": null}]}},
        {"name": "producer", "type": ["null", "Person"], "default": null, "doc": "who paid"},
        {"name": "genre", "type": {"type": "enum", "name": "Genre", "namespace": "kinds", "symbols": ["DRAMA", "HORROR"]}},
        {"name": "cast", "type": {"type": "array", "items": "Person"}},
        {"name": "scores", "type": {"type": "map", "values": "double"}},
        {"name": "checksum", "type": {"type": "fixed", "name": "Md5", "size": 2}},
        {"name": "updated", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]}"#;

    const FIELDS: &str = "id, title, year, director, producer, genre, cast, scores, checksum, updated";

    fn person(name: &str, born: Option<i32>) -> Value {
        Value::Record(vec![
            ("name".into(), Value::String(name.into())),
            (
                "born".into(),
                born.map_or(Value::Union(0, Box::new(Value::Null)), |y| Value::Union(1, Box::new(Value::Int(y)))),
            ),
        ])
    }

    fn movie() -> Vec<(String, Value)> {
        vec![
            ("id".into(), Value::Long(7)),
            ("title".into(), Value::String("Alien".into())),
            ("year".into(), Value::Int(1979)),
            ("director".into(), person("Ridley Scott", Some(1937))),
            ("producer".into(), Value::Union(1, Box::new(person("Walter Hill", None)))),
            ("genre".into(), Value::Enum(1, "HORROR".into())),
            ("cast".into(), Value::Array(vec![person("Sigourney Weaver", Some(1949)), person("John Hurt", None)])),
            ("scores".into(), Value::Map(vec![("imdb".into(), Value::Double(8.5))])),
            ("checksum".into(), Value::Fixed(vec![0xab, 0xcd])),
            ("updated".into(), Value::Long(1_700_000_000_000)),
        ]
    }

    fn encode(schema: &str, value: &Value) -> Vec<u8> {
        let schema = Schema::parse(schema).unwrap();
        let mut out = Vec::new();
        avro::encode(&schema, &schema.root, value, &mut out).unwrap();
        out
    }

    fn input(schema: &str) -> InputPort {
        InputPort { name: "movies".into(), schema: schema.into(), value_names: Vec::new() }
    }

    fn projection(config: serde_json::Value) -> (Projection, String) {
        match Projection::init(config.clone(), vec![input(SCHEMA)]) {
            Ok((projection, outputs)) => {
                assert_eq!(outputs.len(), 1);
                assert_eq!(outputs[0].name, "out");
                (projection, outputs[0].schema.clone())
            }
            Err(errors) => panic!("{config}: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")),
        }
    }

    fn init_errors(config: serde_json::Value) -> Vec<String> {
        init_errors_with(config, vec![input(SCHEMA)])
    }

    fn init_errors_with(config: serde_json::Value, inputs: Vec<InputPort>) -> Vec<String> {
        match Projection::init(config, inputs) {
            Ok(_) => panic!("init succeeded"),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Projects `fields` (renamed as `rename` says) and checks the output against an encode of the
    /// expected value with the output schema; returns the output schema.
    fn check(fields: &[&str], rename: &[(&str, &str)]) -> Schema {
        let mut config = json!({ "fields": fields });
        if !rename.is_empty() {
            config["rename"] =
                rename.iter().map(|(o, n)| (o.to_string(), json!(n))).collect::<serde_json::Map<_, _>>().into();
        }
        let (mut projection, output_text) = projection(config);
        let output = Schema::parse(&output_text).unwrap_or_else(|e| panic!("{output_text}: {e}"));
        let record = output.root_record().expect("a record");
        assert_eq!(record.name, "test.Movie_projection");

        let input = Schema::parse(SCHEMA).unwrap();
        let input_record = input.root_record().unwrap();
        let renamed = |name: &str| rename.iter().find(|(o, _)| *o == name).map_or(name, |(_, n)| *n).to_string();
        let names: Vec<String> = record.fields.iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, fields.iter().map(|f| renamed(f)).collect::<Vec<_>>());
        for (field, name) in record.fields.iter().zip(fields) {
            let (_, original) = input_record.field(name).unwrap();
            assert_eq!(output.resolve(&field.ty).describe(), input.resolve(&original.ty).describe(), "{name}");
            assert_eq!(field.default, original.default, "{name}");
            assert_eq!(field.doc, original.doc, "{name}");
        }

        let all = movie();
        let expected = Value::Record(
            fields.iter().map(|f| (renamed(f), all.iter().find(|(n, _)| n == f).unwrap().1.clone())).collect(),
        );
        let mut expected_bytes = Vec::new();
        avro::encode(&output, &output.root, &expected, &mut expected_bytes).unwrap();
        let projected = projection.project(&encode(SCHEMA, &Value::Record(all))).unwrap();
        assert_eq!(projected, expected_bytes);
        assert_eq!(avro::decode_datum(&output, &projected).unwrap(), expected);
        output
    }

    #[test]
    fn projects_fields_in_the_listed_order() {
        check(&["year", "title"], &[]);
        check(&["id"], &[]);
        check(&["updated", "scores", "checksum", "id"], &[]);
        let all: Vec<&str> = FIELDS.split(", ").collect();
        check(&all, &[]);
        let reversed: Vec<&str> = all.iter().rev().copied().collect();
        check(&reversed, &[]);
    }

    #[test]
    fn keeps_the_named_types_the_fields_use() {
        // Person is defined in `director`, which is left out: the output must define it.
        let output = check(&["cast", "producer"], &[]);
        assert!(output.named_type("test.Person").is_some());
        assert!(output.named_type("kinds.Genre").is_none(), "only the types used are kept");
        let output = check(&["genre", "checksum"], &[]);
        assert!(matches!(output.named_type("kinds.Genre"), Some(AvroType::Enum(_))));
        assert!(matches!(output.named_type("test.Md5"), Some(AvroType::Fixed(_))));
        assert!(output.named_type("test.Person").is_none());
        // The logical type survives.
        let (_, text) = projection(json!({ "fields": ["updated"] }));
        assert!(text.contains("timestamp-millis"), "{text}");
    }

    #[test]
    fn renames_fields() {
        check(&["title", "year"], &[("title", "name")]);
        check(&["director", "id"], &[("director", "by"), ("id", "_key1")]);
        // A swap is not a collision.
        check(&["title", "year"], &[("title", "year"), ("year", "title")]);
        // Renaming to the name of a field that is not kept is fine.
        check(&["title"], &[("title", "id")]);
    }

    #[test]
    fn records_keep_key_headers_and_timestamp_and_tombstones_pass() {
        let (mut projection, output_text) = projection(json!({ "fields": ["title"] }));
        let output = Schema::parse(&output_text).unwrap();
        let record = Record {
            key: Some(b"k".to_vec()),
            value: Some(encode(SCHEMA, &Value::Record(movie()))),
            headers: vec![
                Header { key: "h".into(), value: Some(b"v".to_vec()) },
                Header { key: "n".into(), value: None },
            ],
            timestamp: Some(42),
        };
        let tombstone = Record { key: Some(b"gone".to_vec()), value: None, headers: vec![], timestamp: Some(7) };
        let mut out = Output::default();
        let batch = Batch::new([record, tombstone, Record::from_value(vec![2, 2]), Record::from_value(vec![])]);
        projection.process(0, &batch, &mut out);

        let emitted = out.emitted(&batch);
        assert_eq!(emitted.len(), 2);
        assert_eq!((emitted[0].port, emitted[0].origin), (0, 0));
        let projected = &emitted[0].record;
        assert_eq!(projected.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(projected.timestamp, Some(42));
        let headers: Vec<_> = projected.headers.iter().map(|h| (h.key.as_str(), h.value.as_deref())).collect();
        assert_eq!(headers, [("h", Some(&b"v"[..])), ("n", None)]);
        assert_eq!(
            avro::decode_datum(&output, projected.value.as_deref().unwrap()).unwrap(),
            Value::Record(vec![("title".into(), Value::String("Alien".into()))])
        );
        assert_eq!((emitted[1].port, emitted[1].origin), (0, 1));
        assert_eq!(emitted[1].record.key.as_deref(), Some(&b"gone"[..]));
        assert!(emitted[1].record.value.is_none());
        assert_eq!(emitted[1].record.timestamp, Some(7));

        let failures: Vec<_> = out.failures().iter().map(|f| (f.index, f.reason.as_str())).collect();
        assert_eq!(
            failures,
            [
                (2, "value does not decode as the input schema: field \"title\": length 1 is larger than the 0 bytes remaining at byte 1"),
                (3, "value does not decode as the input schema: field \"id\": unexpected end of datum at byte 0"),
            ]
        );
    }

    #[test]
    fn an_undecodable_value_fails() {
        let (mut projection, _) = projection(json!({ "fields": ["id"] }));
        // Fields after the kept ones are checked too, and nothing may be left over.
        let mut bytes = encode(SCHEMA, &Value::Record(movie()));
        bytes.push(0);
        let reason = projection.project(&bytes).unwrap_err();
        assert_eq!(
            reason,
            format!(
                "value does not decode as the input schema: 1 bytes left over after the datum at byte {}",
                bytes.len() - 1
            )
        );
        bytes.truncate(bytes.len() - 2);
        let reason = projection.project(&bytes).unwrap_err();
        assert!(reason.starts_with("value does not decode as the input schema: field \"updated\": "), "{reason}");
    }

    #[test]
    fn field_errors() {
        assert_eq!(init_errors(json!({})), ["fields: missing: list the fields of the input record to keep"]);
        assert_eq!(init_errors(json!(null)), ["fields: missing: list the fields of the input record to keep"]);
        assert_eq!(init_errors(json!({ "fields": [] })), ["fields: must list at least one field"]);
        assert_eq!(init_errors(json!({ "fields": "title" })), ["fields: must be a list of field names, got a string"]);
        assert_eq!(
            init_errors(json!({ "fields": ["id", "titel", 3, "year"] })),
            [
                format!("fields[1]: no field \"titel\" in input schema; fields are: {FIELDS}"),
                "fields[2]: must be a field name (a string), got a number".to_string(),
            ]
        );
        assert_eq!(
            init_errors(json!({ "fields": ["id", "year", "id"] })),
            ["fields[2]: field \"id\" is already listed at fields[0]"]
        );
    }

    #[test]
    fn rename_errors() {
        assert_eq!(
            init_errors(json!({ "fields": ["id", "title"], "rename": { "year": "when" } })),
            ["rename.year: \"year\" is not one of the projected fields (id, title)"]
        );
        assert_eq!(
            init_errors(json!({ "fields": ["id", "title"], "rename": { "title": "1st title" } })),
            ["rename.title: \"1st title\" is not a valid Avro field name (a letter or _, then letters, digits or _)"]
        );
        assert_eq!(
            init_errors(json!({ "fields": ["id", "title"], "rename": { "title": "" } })),
            ["rename.title: \"\" is not a valid Avro field name (a letter or _, then letters, digits or _)"]
        );
        assert_eq!(
            init_errors(json!({ "fields": ["id", "title"], "rename": { "title": "id" } })),
            ["rename.title: \"id\" collides with output field \"id\""]
        );
        assert_eq!(
            init_errors(json!({ "fields": ["id", "title", "year"], "rename": { "title": "x", "year": "x" } })),
            ["rename.year: \"x\" collides with output field \"title\""]
        );
        assert_eq!(
            init_errors(json!({ "fields": ["id"], "rename": { "id": 3 } })),
            ["rename.id: must be the new name (a string), got a number"]
        );
        assert_eq!(
            init_errors(json!({ "fields": ["id"], "rename": ["id"] })),
            ["rename: must be a mapping of field names to new names, got a list"]
        );
    }

    #[test]
    fn option_and_input_errors() {
        assert_eq!(
            init_errors(json!({ "fields": ["id"], "drop": ["title"] })),
            ["drop: unknown option; mesh/projection takes: fields, rename"]
        );
        assert_eq!(init_errors(json!(["id"])), ["`with` must be a mapping, got a list"]);
        assert_eq!(
            init_errors_with(json!({ "fields": ["id"] }), vec![input(SCHEMA), input(SCHEMA)]),
            ["mesh/projection takes exactly one input, got 2"]
        );
        assert_eq!(
            init_errors_with(json!({ "fields": ["id"] }), vec![input(r#"{"type": "array", "items": "int"}"#)]),
            ["input \"movies\": mesh/projection needs a record schema, got array"]
        );
        // Without a usable input, the fields cannot be checked against it, only their shape.
        assert_eq!(
            init_errors_with(json!({ "fields": ["anything", 1] }), vec![]),
            [
                "mesh/projection takes exactly one input, got 0",
                "fields[1]: must be a field name (a string), got a number"
            ]
        );
    }
}
