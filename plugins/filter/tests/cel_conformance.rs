//! The CEL specification's conformance cases (google/cel-spec `tests/simple/testdata`, converted
//! to `tests/data/cel-conformance.json` by `tests/data/convert_cel_conformance.py`), run through
//! mesh/filter's own parser, checks and environment ([`mesh_filter::evaluate`]).
//!
//! Every case passes or is skipped with a reason: whole files and kinds of case that do not apply
//! to meshhost (protobuf messages, the type checker, extensions it does not offer) by rule, and
//! the cases where the cel crate or meshhost differ from the specification by name, in
//! [`KNOWN`]. A listed case that starts passing fails the test, so the list stays true. The
//! counts per file are printed (`cargo test --test cel_conformance -- --nocapture`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use cel::objects::{Key, Map};
use cel::Value;
use serde_json::Value as Json;

/// Files that do not apply, and why.
const SKIPPED_FILES: &[(&str, &str)] = &[
    ("proto2", "protobuf messages: meshhost's records are Avro, conditions never see a message"),
    ("proto2_ext", "protobuf extensions: meshhost's records are Avro"),
    ("proto3", "protobuf messages: meshhost's records are Avro"),
    ("dynamic", "protobuf well-known types and messages: meshhost's records are Avro"),
    ("wrappers", "protobuf wrapper types: meshhost's records are Avro"),
    ("enums", "protobuf enums: an Avro enum is its symbol, a string"),
    ("type_deduction", "type-checker cases (check_only): meshhost has no type checker"),
    ("bindings_ext", "cel.bind is not in mesh/filter's environment"),
    ("block_ext", "cel.block is not in mesh/filter's environment"),
    ("encoders_ext", "base64 encoders are not in mesh/filter's environment"),
    ("network_ext", "the network (ip, cidr) extension is not in mesh/filter's environment"),
];

/// Cases where meshhost (stricter on purpose) or the cel crate differs from the specification:
/// `file/section/name`, or `file/section/` for every failing case of a section, and why.
const KNOWN: &[(&str, &str)] = &[
    ("basic/variables/unbound_is_runtime_error", STRICTER),
    ("basic/functions/unbound_is_runtime_error", STRICTER),
    ("parse/receiver_function_names/", STRICTER),
    ("fields/qualified_identifier_resolution/qualified_ident", QUALIFIED),
    ("fields/qualified_identifier_resolution/map_field_select", QUALIFIED),
    ("fields/qualified_identifier_resolution/qualified_identifier_resolution_unchecked", QUALIFIED),
    ("fields/qualified_identifier_resolution/ident_with_longest_prefix_check", QUALIFIED),
    ("namespace/qualified/self_eval_qualified_lookup", QUALIFIED),
    (
        "macros2/",
        "two-variable comprehensions: refused when the processor starts (the cel crate does not evaluate them)",
    ),
    ("timestamps/timestamp_conversions/type_comparison", TYPE_NAMES),
    ("timestamps/duration_conversions/type_comparison", TYPE_NAMES),
    (
        "timestamps/duration_converters/get_milliseconds",
        "cel 0.15: a duration's getMilliseconds() is the whole duration in milliseconds, not its milliseconds part",
    ),
];

const STRICTER: &str = "stricter on purpose: an unknown variable or function is refused when the processor starts \
                        (CEL fails only when it is evaluated, and `x || true` absorbs that)";
const QUALIFIED: &str = "a variable whose name is qualified (`a.b` bound as one name): a condition's variables are \
                         Avro field names, which have no dots";
const TYPE_NAMES: &str = "cel 0.15 does not resolve the type name google.protobuf.Timestamp/Duration as a value";

/// What a case expects.
enum Expected {
    Value(Value),
    Error,
}

#[test]
fn cel_specification_conformance() {
    let data: Json = serde_json::from_str(include_str!("data/cel-conformance.json")).expect("valid JSON");
    println!("data: {} at {}", data["source"], data["commit"]);
    let mut report = Report::default();
    for file in data["files"].as_array().expect("files") {
        let file_name = file["name"].as_str().expect("a file name");
        let counts = report.files.entry(file_name.to_owned()).or_default();
        if let Some((_, why)) = SKIPPED_FILES.iter().find(|(name, _)| *name == file_name) {
            let tests: usize = file["sections"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["tests"].as_array().map_or(0, Vec::len))
                .sum();
            counts.skipped += tests;
            *report.skips.entry(format!("{file_name}: {why}")).or_default() += tests;
            continue;
        }
        for section in file["sections"].as_array().into_iter().flatten() {
            let section_name = section["name"].as_str().unwrap_or_default();
            for case in section["tests"].as_array().into_iter().flatten() {
                let id = format!("{file_name}/{section_name}/{}", case["name"].as_str().unwrap_or_default());
                if let Some(why) = skipped(case) {
                    counts.skipped += 1;
                    *report.skips.entry(why).or_default() += 1;
                    continue;
                }
                let known = KNOWN.iter().find(|(name, _)| id == *name || (name.ends_with('/') && id.starts_with(name)));
                let outcome = run(case);
                match (outcome, known) {
                    (Ok(()), None) => counts.passed += 1,
                    // A section listed as a whole may hold cases that pass.
                    (Ok(()), Some((name, _))) if name.ends_with('/') => counts.passed += 1,
                    (Ok(()), Some(_)) => report.unexpected_passes.push(id),
                    (Err(_), Some((_, why))) => {
                        counts.skipped += 1;
                        *report.skips.entry(format!("known: {why}")).or_default() += 1;
                    }
                    (Err(why), None) => {
                        counts.failed += 1;
                        report.failures.push(format!("{id}: {:?}: {why}", case["expr"].as_str().unwrap_or_default()));
                    }
                }
            }
        }
    }
    report.print();
    assert!(report.failures.is_empty(), "{} conformance cases fail (listed above)", report.failures.len());
    assert!(
        report.unexpected_passes.is_empty(),
        "cases listed as known failures pass now; take them off KNOWN: {:?}",
        report.unexpected_passes
    );
}

/// Why a case is skipped by rule, if it is.
fn skipped(case: &Json) -> Option<String> {
    if case["check_only"].as_bool() == Some(true) {
        return Some("type-checker case (check_only): meshhost has no type checker".into());
    }
    if !case["container"].as_str().unwrap_or_default().is_empty() {
        return Some("a protobuf container (message types): meshhost's records are Avro".into());
    }
    let expr = case["expr"].as_str().unwrap_or_default();
    if expr.contains("TestAllTypes") || (expr.contains("google.protobuf.") && expr.contains('{')) {
        return Some("builds a protobuf message: meshhost's records are Avro".into());
    }
    if case.get("unknown").is_some() || case.get("any_unknowns").is_some() {
        return Some("partial evaluation (unknowns): meshhost evaluates whole records".into());
    }
    let expected = case.get("value").or_else(|| case.get("typed_result").map(|t| &t["result"]));
    if let Some(expected) = expected {
        if let Err(why) = value(expected) {
            return Some(format!("expected value: {why}"));
        }
    }
    for binding in case["bindings"].as_object().into_iter().flatten().map(|(_, b)| &b["value"]) {
        if let Err(why) = value(binding) {
            return Some(format!("binding: {why}"));
        }
    }
    None
}

/// Run one case: `Err` says how the result differs from the expected one.
fn run(case: &Json) -> Result<(), String> {
    let expected = if let Some(v) = case.get("value").or_else(|| case.get("typed_result").map(|t| &t["result"])) {
        Expected::Value(value(v).expect("checked by skipped()"))
    } else if case.get("eval_error").is_some() || case.get("any_eval_errors").is_some() {
        Expected::Error
    } else {
        Expected::Value(Value::Bool(true)) // the format's default
    };
    let bindings = case["bindings"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, b)| (name.clone(), value(&b["value"]).expect("checked by skipped()")))
        .collect();
    let result = mesh_filter::evaluate(case["expr"].as_str().expect("an expression"), bindings);
    match (expected, result) {
        (Expected::Value(want), Ok(got)) if same(&want, &got) => Ok(()),
        (Expected::Value(want), Ok(got)) => Err(format!("got {got:?}, want {want:?}")),
        (Expected::Value(want), Err(e)) => Err(format!("failed: {e}; want {want:?}")),
        (Expected::Error, Err(_)) => Ok(()),
        (Expected::Error, Ok(got)) => Err(format!("got {got:?}, want an error")),
    }
}

/// A `cel.expr.Value` in the converted JSON as a CEL value; `Err` for what meshhost has no value
/// of (protobuf messages, enums, types as values).
fn value(json: &Json) -> Result<Value, String> {
    let (kind, v) = json.as_object().and_then(|o| o.iter().next()).ok_or("an empty value")?;
    Ok(match kind.as_str() {
        "null_value" => Value::Null,
        "bool_value" => Value::Bool(v.as_bool().ok_or("bool")?),
        "int64_value" => Value::Int(v.as_str().and_then(|s| s.parse().ok()).ok_or("int64")?),
        "uint64_value" => Value::UInt(v.as_str().and_then(|s| s.parse().ok()).ok_or("uint64")?),
        "double_value" => Value::Float(match v {
            Json::String(s) => s.parse::<f64>().map_err(|_| format!("double {s}"))?,
            v => v.as_f64().ok_or("double")?,
        }),
        "string_value" => Value::String(Arc::new(v.as_str().ok_or("string")?.to_owned())),
        "bytes_value" => Value::Bytes(Arc::new(
            base64::engine::general_purpose::STANDARD
                .decode(v["base64"].as_str().ok_or("bytes")?)
                .map_err(|e| e.to_string())?,
        )),
        "list_value" => {
            Value::List(Arc::new(v["values"].as_array().into_iter().flatten().map(value).collect::<Result<_, _>>()?))
        }
        "map_value" => {
            let mut map = HashMap::new();
            for entry in v["entries"].as_array().into_iter().flatten() {
                let key = match value(&entry["key"])? {
                    Value::Int(i) => Key::Int(i),
                    Value::UInt(u) => Key::Uint(u),
                    Value::Bool(b) => Key::Bool(b),
                    Value::String(s) => Key::String(s),
                    other => return Err(format!("a map key {other:?}")),
                };
                map.insert(key, value(&entry["value"])?);
            }
            Value::Map(Map { map: Arc::new(map) })
        }
        "object_value" => well_known(v)?,
        "type_value" => {
            return Err("a type: cel 0.15 has no type values (type() gives the type's name, a string)".into())
        }
        other => return Err(format!("{other} (not a value a condition sees)")),
    })
}

/// A timestamp or duration packed in an `Any`; other messages are not values meshhost has.
fn well_known(any: &Json) -> Result<Value, String> {
    let (type_url, message) = any.as_object().and_then(|o| o.iter().next()).ok_or("an empty Any")?;
    let seconds = message["seconds"].as_i64().unwrap_or(0);
    let nanos = message["nanos"].as_i64().unwrap_or(0);
    match type_url.as_str() {
        "[type.googleapis.com/google.protobuf.Timestamp]" => chrono::DateTime::from_timestamp(seconds, nanos as u32)
            .map(|t| Value::Timestamp(t.fixed_offset()))
            .ok_or_else(|| "a timestamp out of range".into()),
        "[type.googleapis.com/google.protobuf.Duration]" => {
            Ok(Value::Duration(chrono::Duration::seconds(seconds) + chrono::Duration::nanoseconds(nanos)))
        }
        other => Err(format!("a protobuf message {other}: meshhost's records are Avro")),
    }
}

/// Whether two values are the same CEL value: same type, NaN the same as NaN.
fn same(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Float(a), Value::Float(b)) => a == b || (a.is_nan() && b.is_nan()),
        (Value::List(a), Value::List(b)) => a.len() == b.len() && a.iter().zip(b.iter()).all(|(a, b)| same(a, b)),
        (Value::Map(a), Value::Map(b)) => {
            a.map.len() == b.map.len() && a.map.iter().all(|(k, v)| b.map.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
        (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b) && a == b,
    }
}

#[derive(Default)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

#[derive(Default)]
struct Report {
    files: BTreeMap<String, Counts>,
    skips: BTreeMap<String, usize>,
    failures: Vec<String>,
    unexpected_passes: Vec<String>,
}

impl Report {
    fn print(&self) {
        println!("CEL conformance (google/cel-spec tests/simple/testdata):");
        for (file, c) in &self.files {
            println!("  {file:<16} passed {:>4}  failed {:>4}  skipped {:>4}", c.passed, c.failed, c.skipped);
        }
        let total = |f: fn(&Counts) -> usize| self.files.values().map(f).sum::<usize>();
        println!(
            "  {:<16} passed {:>4}  failed {:>4}  skipped {:>4}",
            "total",
            total(|c| c.passed),
            total(|c| c.failed),
            total(|c| c.skipped)
        );
        println!("skipped, by reason:");
        for (why, n) in &self.skips {
            println!("  {n:>4}  {why}");
        }
        for failure in &self.failures {
            println!("FAIL {failure}");
        }
    }
}
