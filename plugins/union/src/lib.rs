//! `mesh/union`: merges two or more inputs into one output.
//!
//! ```yaml
//! processors:
//!   all:
//!     uses: mesh/union@0.1
//!     inputs: [movies_eu, movies_us]
//!     with:
//!       tag_field: region        # optional
//! ```
//!
//! When every input has the same schema, that is the schema of the output port `out`, and
//! records pass through as they are. Otherwise **the first input's schema is the output
//! schema; the other inputs must resolve to it** by Avro schema resolution (the writer is the
//! input, the reader the output): fields the output has and an input lacks take their
//! defaults, fields the output lacks are dropped, types are promoted (`int` to `long` ...),
//! enum symbols are matched by name, and a symbol the output's enum lacks becomes that enum's
//! `default`. An input that cannot be resolved (a field with no default, a type that cannot be
//! promoted, an enum with symbols the output's enum lacks when it has no enum default ...) is
//! an error at `init`, so `meshhost validate` reports it, naming both inputs and the field.
//! Records of an input whose schema is the output's pass through; those of the others are
//! converted, byte to byte. A value that does not convert (a malformed datum, bytes that are
//! not UTF-8 read as a string) fails, and the host sends it to the dead-letter topic.
//!
//! With `tag_field`, the output record's field of that name (a `string`, or a union with a
//! `string` branch) is set in every record to the id of the input it came from (its entry in
//! `inputs:`): the output schema has to have room for it. An input whose schema lacks the
//! field resolves like any other, so the output's field then needs a default (which the tag
//! replaces).
//!
//! Keys, headers and timestamps are kept; tombstones pass through.

use std::ops::Range;

use meshhost_sdk::avro::{self, AvroType, RecordType, Resolver, Schema};
use meshhost_sdk::options::{self, json_kind};
use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

/// The options `with:` accepts.
const OPTIONS: &[&str] = &["tag_field"];

/// The union of one processor instance.
pub struct Union {
    inputs: Vec<InputPlan>,
    /// The output schema (the first input's).
    output: Schema,
    tag: Option<Tag>,
    /// Reused across records.
    ranges: Vec<Range<usize>>,
}

/// How the records of one input become output records.
struct InputPlan {
    /// The input's id (its `inputs:` entry).
    name: String,
    /// `None` when the input's schema is the output schema: values pass through.
    resolver: Option<Resolver>,
    /// The encoded value of the tag field for this input's records (empty without a tag).
    tag: Vec<u8>,
}

/// Where the tag goes.
struct Tag {
    /// The output record.
    record: RecordType,
    /// The tag field's index in it.
    index: usize,
    /// The string branch's index when the field is a union.
    branch: Option<usize>,
}

impl Union {
    /// Build the union from its `with:` mapping and its input ports.
    pub fn new(config: &serde_json::Value, inputs: &[InputPort]) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        let mut errors = Vec::new();
        static EMPTY: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> =
            std::sync::LazyLock::new(Default::default);
        let options = options::options("mesh/union", config, OPTIONS, &mut errors).unwrap_or(&EMPTY);
        let tag_field = match options.get("tag_field") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(name)) => Some(name.as_str()),
            Some(other) => {
                errors.push(ConfigError::at(
                    "tag_field",
                    format!("must be a field name (a string), got {}", json_kind(other)),
                ));
                None
            }
        };

        if inputs.len() < 2 {
            errors.push(ConfigError::at("", format!("mesh/union takes two or more inputs, got {}", inputs.len())));
            return Err(errors);
        }
        let mut schemas = Vec::with_capacity(inputs.len());
        for input in inputs {
            match meshhost_sdk::port_schema(input) {
                Ok(schema) => schemas.push(schema),
                Err(e) => errors.push(e),
            }
        }
        if schemas.len() < inputs.len() {
            return Err(errors);
        }

        // The first input's schema is the output schema; the others resolve to it.
        let output = schemas[0].clone();
        let output_json = output.to_json();
        let first = &inputs[0].name;
        let mut plans = Vec::with_capacity(inputs.len());
        for (input, schema) in inputs.iter().zip(&schemas) {
            let resolver = if schema.to_json() == output_json {
                None
            } else {
                match Resolver::new(schema, &output) {
                    Ok(resolver) => Some(resolver),
                    Err(e) => {
                        errors.push(ConfigError::at(
                            "",
                            format!("input {:?} cannot be resolved to the schema of input {first:?}: {e}", input.name),
                        ));
                        None
                    }
                }
            };
            plans.push(InputPlan { name: input.name.clone(), resolver, tag: Vec::new() });
        }

        let tag = tag_field.and_then(|name| match tag_place(&output, name, first) {
            Ok(tag) => Some(tag),
            Err(message) => {
                errors.push(ConfigError::at("tag_field", message));
                None
            }
        });
        if !errors.is_empty() {
            return Err(errors);
        }
        if let Some(tag) = &tag {
            for plan in &mut plans {
                if let Some(branch) = tag.branch {
                    avro::write_long(&mut plan.tag, branch as i64);
                }
                avro::write_long(&mut plan.tag, plan.name.len() as i64);
                plan.tag.extend_from_slice(plan.name.as_bytes());
            }
        }

        let outputs = vec![OutputPort { name: "out".into(), schema: inputs[0].schema.clone() }];
        Ok((Union { inputs: plans, output, tag, ranges: Vec::new() }, outputs))
    }

    /// The output value for `value`, a datum of input `input`'s schema.
    pub fn convert(&mut self, input: usize, value: Vec<u8>) -> Result<Vec<u8>, String> {
        let Some(plan) = self.inputs.get(input) else {
            return Err(format!("no input port {input}; mesh/union has {}", self.inputs.len()));
        };
        let value = match &plan.resolver {
            None => value,
            Some(resolver) => resolver
                .convert(&value)
                .map_err(|e| format!("value of input {:?} cannot be converted to the output schema: {e}", plan.name))?,
        };
        let Some(tag) = &self.tag else {
            return Ok(value);
        };
        avro::field_ranges_into(&self.output, &tag.record, &value, &mut self.ranges)
            .map_err(|e| format!("value of input {:?} does not decode as its schema: {e}", plan.name))?;
        let range = self.ranges[tag.index].clone();
        let mut tagged = Vec::with_capacity(value.len() - range.len() + plan.tag.len());
        tagged.extend_from_slice(&value[..range.start]);
        tagged.extend_from_slice(&plan.tag);
        tagged.extend_from_slice(&value[range.end..]);
        Ok(tagged)
    }
}

/// Where the tag field `name` is in the output schema, or why it cannot hold a tag.
fn tag_place(output: &Schema, name: &str, first: &str) -> Result<Tag, String> {
    let Some(record) = output.root_record() else {
        return Err(format!(
            "the output schema (that of input {first:?}) is {}, not a record, so it has no field {name:?}",
            output.resolve(&output.root).describe()
        ));
    };
    let Some((index, field)) = record.field(name) else {
        let fields: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        return Err(format!(
            "no field {name:?} in the output schema (that of input {first:?}); fields are: {}",
            fields.join(", ")
        ));
    };
    let branch = match &field.ty {
        AvroType::String => None,
        AvroType::Union(branches) if branches.contains(&AvroType::String) => {
            branches.iter().position(|b| *b == AvroType::String)
        }
        other => {
            let what = match other {
                AvroType::Logical { attributes, .. } => format!(
                    "a {} with logical type {}",
                    other.describe(),
                    attributes.get("logicalType").map_or_else(String::new, |t| t.to_string())
                ),
                _ => other.describe(),
            };
            return Err(format!(
                "field {name:?} of the output schema is {what}; the tag field must be a string or a union with string"
            ));
        }
    };
    Ok(Tag { record: record.clone(), index, branch })
}

impl Processor for Union {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        Union::new(&config, &inputs)
    }

    fn process(&mut self, input: u32, batch: &Batch, out: &mut Output) {
        // Values of an input with the output's schema and no tag to set go out as they came.
        let as_is = self.tag.is_none() && self.inputs.get(input as usize).is_some_and(|plan| plan.resolver.is_none());
        for (i, record) in batch.iter().enumerate() {
            let i = i as u32;
            match record.value() {
                None => out.pass(0, i), // a tombstone passes through
                Some(_) if as_is => out.pass(0, i),
                Some(value) => match self.convert(input as usize, value.to_vec()) {
                    Ok(value) => out.emit_value(0, i, Some(&value)),
                    Err(reason) => out.fail(i, reason),
                },
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
meshhost_sdk::export!(Union);

#[cfg(test)]
mod tests {
    use super::*;
    use meshhost_sdk::avro::Value;
    use meshhost_sdk::{Header, Record};
    use serde_json::json;

    const A: &str = r#"{"type": "record", "name": "Movie", "namespace": "eu", "fields": [
        {"name": "id", "type": "long"},
        {"name": "title", "type": "string"},
        {"name": "rating", "type": ["null", "double"], "default": null},
        {"name": "source", "type": "string", "default": ""},
        {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "COMEDY"], "default": "DRAMA"}}
    ]}"#;

    /// Compatible with A: no rating nor source, `id` an int, an extra field, another
    /// namespace, an enum with a symbol A lacks.
    const B: &str = r#"{"type": "record", "name": "Movie", "namespace": "us", "fields": [
        {"name": "title", "type": "string"},
        {"name": "id", "type": "int"},
        {"name": "studio", "type": "string"},
        {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["COMEDY", "WESTERN", "DRAMA"]}}
    ]}"#;

    fn input(name: &str, schema: &str) -> InputPort {
        InputPort { name: name.into(), schema: schema.into(), value_names: Vec::new() }
    }

    fn build(config: serde_json::Value, inputs: &[(&str, &str)]) -> (Union, String) {
        let ports: Vec<InputPort> = inputs.iter().map(|(n, s)| input(n, s)).collect();
        match Union::init(config, ports) {
            Ok((union, outputs)) => {
                assert_eq!(outputs.len(), 1);
                assert_eq!(outputs[0].name, "out");
                (union, outputs[0].schema.clone())
            }
            Err(errors) => panic!("{errors:?}"),
        }
    }

    fn errors(config: serde_json::Value, inputs: &[(&str, &str)]) -> Vec<String> {
        let ports: Vec<InputPort> = inputs.iter().map(|(n, s)| input(n, s)).collect();
        match Union::init(config, ports) {
            Ok(_) => panic!("expected errors"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn encode(schema: &str, value: &Value) -> Vec<u8> {
        avro::encode_datum(&Schema::parse(schema).unwrap(), value).unwrap()
    }

    fn decode(schema: &str, bytes: &[u8]) -> Value {
        avro::decode_datum(&Schema::parse(schema).unwrap(), bytes).unwrap()
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn a_movie(id: i64, title: &str, rating: Option<f64>, source: &str, genre: u32) -> Value {
        Value::Record(vec![
            ("id".into(), Value::Long(id)),
            ("title".into(), s(title)),
            (
                "rating".into(),
                match rating {
                    None => Value::Union(0, Box::new(Value::Null)),
                    Some(r) => Value::Union(1, Box::new(Value::Double(r))),
                },
            ),
            ("source".into(), s(source)),
            ("genre".into(), Value::Enum(genre, ["DRAMA", "COMEDY"][genre as usize].into())),
        ])
    }

    fn b_movie(id: i32, title: &str, genre: u32) -> Value {
        Value::Record(vec![
            ("title".into(), s(title)),
            ("id".into(), Value::Int(id)),
            ("studio".into(), s("Paramount")),
            ("genre".into(), Value::Enum(genre, ["COMEDY", "WESTERN", "DRAMA"][genre as usize].into())),
        ])
    }

    /// Process one batch on `port`; returns (emitted values decoded with `output`, failures).
    fn run(union: &mut Union, port: u32, values: Vec<Vec<u8>>, output: &str) -> (Vec<Value>, Vec<(u32, String)>) {
        let mut out = Output::default();
        let batch = Batch::new(values.into_iter().map(Record::from_value));
        union.process(port, &batch, &mut out);
        let emitted = out.emitted(&batch).iter().map(|e| decode(output, e.record.value.as_deref().unwrap())).collect();
        let failures = out.failures().iter().map(|f| (f.index, f.reason.clone())).collect();
        (emitted, failures)
    }

    #[test]
    fn identical_schemas_pass_through() {
        // Same schema, written differently: still identical.
        let pretty = serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(A).unwrap()).unwrap();
        let (mut union, output) = build(json!({}), &[("a", A), ("b", &pretty), ("c", A)]);
        assert_eq!(output, A, "the first input's schema, as it was given");
        assert!(union.inputs.iter().all(|p| p.resolver.is_none()));
        for port in 0..3 {
            let bytes = encode(A, &a_movie(port as i64, "Alien", Some(8.5), "x", 1));
            let mut out = Output::default();
            let batch = Batch::new([Record::from_value(bytes.clone())]);
            union.process(port, &batch, &mut out);
            assert_eq!(out.emitted(&batch)[0].record.value.as_deref(), Some(&bytes[..]), "bytes pass through");
        }
    }

    #[test]
    fn compatible_schemas_resolve_to_the_first() {
        let (mut union, output) = build(json!(null), &[("a", A), ("b", B)]);
        assert_eq!(output, A);
        let a = a_movie(1, "Amélie", Some(7.9), "festival", 1);
        let (emitted, failures) = run(&mut union, 0, vec![encode(A, &a)], A);
        assert_eq!((emitted, failures), (vec![a], vec![]));
        let (emitted, failures) = run(
            &mut union,
            1,
            vec![
                encode(B, &b_movie(2, "Heat", 0)),
                encode(B, &b_movie(-3, "Shane", 1)),
                encode(B, &b_movie(4, "Ran", 2)),
            ],
            A,
        );
        assert_eq!(failures, []);
        assert_eq!(
            emitted,
            [
                a_movie(2, "Heat", None, "", 1),
                // WESTERN is not in the output's enum: its default.
                a_movie(-3, "Shane", None, "", 0),
                a_movie(4, "Ran", None, "", 0),
            ]
        );
    }

    #[test]
    fn a_value_that_does_not_convert_fails_alone() {
        let (mut union, _) = build(json!({}), &[("a", A), ("b", B)]);
        let mut truncated = encode(B, &b_movie(5, "Up", 0));
        truncated.pop();
        let (emitted, failures) = run(
            &mut union,
            1,
            vec![encode(B, &b_movie(2, "Heat", 0)), truncated, encode(B, &b_movie(3, "Shane", 1))],
            A,
        );
        assert_eq!(emitted, [a_movie(2, "Heat", None, "", 1), a_movie(3, "Shane", None, "", 0)]);
        assert_eq!(
            failures,
            [(1, "value of input \"b\" cannot be converted to the output schema: field \"genre\": unexpected end of datum at byte 14".to_string())]
        );
    }

    #[test]
    fn an_enum_with_symbols_the_output_lacks_needs_an_enum_default() {
        // B's WESTERN has nowhere to go in an output enum without a default: an init error.
        let a_strict = A.replace(r#", "default": "DRAMA""#, "");
        assert_eq!(
            errors(json!({}), &[("a", &a_strict), ("b", B)]),
            ["input \"b\" cannot be resolved to the schema of input \"a\": field \"genre\": writer enum \"us.Genre\" has symbols that reader enum \"eu.Genre\" lacks (WESTERN), and the reader's enum has no default"]
        );
        // A field default is no enum default.
        let field_default = a_strict
            .replace(r#""symbols": ["DRAMA", "COMEDY"]}}"#, r#""symbols": ["DRAMA", "COMEDY"]}, "default": "COMEDY"}"#);
        assert_ne!(field_default, a_strict);
        assert_eq!(errors(json!({}), &[("a", &field_default), ("b", B)]).len(), 1);
        // An input whose symbols the output has resolves without one.
        let b_known = B.replace(r#""COMEDY", "WESTERN", "DRAMA""#, r#""COMEDY", "DRAMA""#);
        build(json!({}), &[("a", &a_strict), ("b", &b_known)]);
    }

    #[test]
    fn keys_headers_timestamps_and_tombstones_are_kept() {
        let (mut union, output) = build(json!({}), &[("a", A), ("b", B)]);
        let record = Record {
            key: Some(b"k".to_vec()),
            value: Some(encode(B, &b_movie(2, "Heat", 0))),
            headers: vec![
                Header { key: "h".into(), value: Some(b"v".to_vec()) },
                Header { key: "n".into(), value: None },
            ],
            timestamp: Some(42),
        };
        let tombstone = Record { key: Some(b"gone".to_vec()), value: None, headers: vec![], timestamp: Some(7) };
        let mut out = Output::default();
        let batch = Batch::new([record, tombstone]);
        union.process(1, &batch, &mut out);
        let emitted = out.emitted(&batch);
        assert_eq!(emitted.len(), 2);
        assert_eq!((emitted[0].port, emitted[0].origin), (0, 0));
        let converted = &emitted[0].record;
        assert_eq!(converted.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(converted.timestamp, Some(42));
        let headers: Vec<_> = converted.headers.iter().map(|h| (h.key.as_str(), h.value.as_deref())).collect();
        assert_eq!(headers, [("h", Some(&b"v"[..])), ("n", None)]);
        assert_eq!(decode(&output, converted.value.as_deref().unwrap()), a_movie(2, "Heat", None, "", 1));
        assert_eq!((emitted[1].port, emitted[1].origin), (0, 1));
        assert_eq!(emitted[1].record.key.as_deref(), Some(&b"gone"[..]));
        assert!(emitted[1].record.value.is_none());
        assert_eq!(emitted[1].record.timestamp, Some(7));
        assert!(out.failures().is_empty());
    }

    #[test]
    fn tag_field_fills_in_the_input_id() {
        let (mut union, output) = build(json!({"tag_field": "source"}), &[("a", A), ("b", B), ("a2", A)]);
        let (emitted, _) = run(&mut union, 0, vec![encode(A, &a_movie(1, "Alien", Some(8.5), "whatever", 0))], &output);
        assert_eq!(emitted, [a_movie(1, "Alien", Some(8.5), "a", 0)]);
        let (emitted, _) = run(&mut union, 1, vec![encode(B, &b_movie(2, "Heat", 0))], &output);
        assert_eq!(emitted, [a_movie(2, "Heat", None, "b", 1)]);
        let (emitted, _) = run(&mut union, 2, vec![encode(A, &a_movie(3, "Ran", None, "", 1))], &output);
        assert_eq!(emitted, [a_movie(3, "Ran", None, "a2", 1)]);
        // A bad datum of an input that passes through is caught by the tagging.
        let (_, failures) = run(&mut union, 0, vec![vec![2]], &output);
        assert_eq!(
            failures,
            [(0, "value of input \"a\" does not decode as its schema: field \"title\": unexpected end of datum at byte 1".to_string())]
        );

        // A union with string: the string branch is set.
        let tagged = r#"{"type": "record", "name": "T", "fields": [
            {"name": "x", "type": "long"}, {"name": "from", "type": ["null", "string"], "default": null}]}"#;
        let plain = r#"{"type": "record", "name": "T", "fields": [{"name": "x", "type": "int"}]}"#;
        let (mut union, output) = build(json!({"tag_field": "from"}), &[("left", tagged), ("right", plain)]);
        let (emitted, _) = run(&mut union, 1, vec![vec![6]], &output);
        let (emitted_left, _) = run(&mut union, 0, vec![vec![8, 0]], &output);
        let record = |x: i64, from: &str| {
            Value::Record(vec![("x".into(), Value::Long(x)), ("from".into(), Value::Union(1, Box::new(s(from))))])
        };
        assert_eq!(emitted, [record(3, "right")]);
        assert_eq!(emitted_left, [record(4, "left")]);
    }

    #[test]
    fn tag_field_errors() {
        assert_eq!(
            errors(json!({"tag_field": "origin"}), &[("a", A), ("b", A)]),
            ["tag_field: no field \"origin\" in the output schema (that of input \"a\"); fields are: id, title, rating, source, genre"]
        );
        assert_eq!(
            errors(json!({"tag_field": "id"}), &[("a", A), ("b", A)]),
            ["tag_field: field \"id\" of the output schema is long; the tag field must be a string or a union with string"]
        );
        assert_eq!(
            errors(json!({"tag_field": "rating"}), &[("a", A), ("b", A)]),
            ["tag_field: field \"rating\" of the output schema is union; the tag field must be a string or a union with string"]
        );
        let uuid = r#"{"type": "record", "name": "U", "fields": [{"name": "u", "type": {"type": "string", "logicalType": "uuid"}}]}"#;
        assert_eq!(
            errors(json!({"tag_field": "u"}), &[("a", uuid), ("b", uuid)]),
            ["tag_field: field \"u\" of the output schema is a string with logical type \"uuid\"; the tag field must be a string or a union with string"]
        );
        assert_eq!(
            errors(json!({"tag_field": "x"}), &[("a", "\"string\""), ("b", "\"string\"")]),
            ["tag_field: the output schema (that of input \"a\") is string, not a record, so it has no field \"x\""]
        );
        assert_eq!(
            errors(json!({"tag_field": ["x"]}), &[("a", A), ("b", A)]),
            ["tag_field: must be a field name (a string), got a list"]
        );
        // The tag needs room in the other inputs too: a default, here missing.
        let no_default = A.replace(
            r#"{"name": "source", "type": "string", "default": ""}"#,
            r#"{"name": "source", "type": "string"}"#,
        );
        assert_eq!(
            errors(json!({"tag_field": "source"}), &[("a", &no_default), ("b", B)]),
            ["input \"b\" cannot be resolved to the schema of input \"a\": field \"source\": the writer schema has no such field, and the reader schema gives it no default"]
        );
    }

    #[test]
    fn incompatible_inputs_name_both_inputs_and_the_field() {
        let bad = B.replace(
            r#"{"name": "title", "type": "string"}"#,
            r#"{"name": "title", "type": "string"}, {"name": "rating", "type": "string"}"#,
        );
        assert_eq!(
            errors(json!({}), &[("a", A), ("b", &bad)]),
            ["input \"b\" cannot be resolved to the schema of input \"a\": field \"rating\": writer type string matches no branch of reader union [null, double]"]
        );
        let bad = B.replace(r#"{"name": "id", "type": "int"}"#, r#"{"name": "id", "type": "double"}"#);
        let also_bad = B.replace(r#""name": "Movie""#, r#""name": "Film""#);
        assert_eq!(
            errors(json!({}), &[("eu", A), ("ok", B), ("us", &bad), ("old", &also_bad)]),
            [
                "input \"us\" cannot be resolved to the schema of input \"eu\": field \"id\": writer type double cannot be read as long",
                "input \"old\" cannot be resolved to the schema of input \"eu\": writer record \"us.Film\" cannot be read as record \"eu.Movie\": the names differ",
            ]
        );
        // The first input decides: B is not a reader for A (the first problem, in B's order).
        assert_eq!(
            errors(json!({}), &[("b", B), ("a", A)]),
            ["input \"a\" cannot be resolved to the schema of input \"b\": field \"id\": writer type long cannot be read as int"]
        );
    }

    #[test]
    fn option_and_input_errors() {
        assert_eq!(
            errors(json!({"tag": "x", "fields": []}), &[("a", A), ("b", A)]),
            ["tag: unknown option; mesh/union takes: tag_field", "fields: unknown option; mesh/union takes: tag_field"]
        );
        assert_eq!(errors(json!(["x"]), &[("a", A), ("b", A)]), ["`with` must be a mapping, got a list"]);
        assert_eq!(errors(json!({}), &[("a", A)]), ["mesh/union takes two or more inputs, got 1"]);
        assert_eq!(errors(json!({}), &[]), ["mesh/union takes two or more inputs, got 0"]);
        let e = errors(json!({}), &[("a", A), ("b", "{nope")]);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("input \"b\": invalid Avro schema"), "{e:?}");
        // Any schema, not only records.
        let (mut union, output) = build(json!({}), &[("a", "\"long\""), ("b", "\"int\"")]);
        assert_eq!(output, "\"long\"");
        let (emitted, _) = run(&mut union, 1, vec![vec![3]], &output);
        assert_eq!(emitted, [Value::Long(-2)]);
    }
}
