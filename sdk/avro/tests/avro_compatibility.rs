//! The Apache Avro project's schema-compatibility test pairs (tests/data/avro-compatibility.json)
//! run through [`Resolver`].
//!
//! A pair is compatible when [`Resolver::new`] (which checks that every value the writer's schema
//! allows can be read) accepts it. A decoding case resolves one datum with
//! [`Resolver::new_partial`], which, as the spec's rules do, fails only the datums it cannot read.

use std::collections::BTreeMap;

use meshhost_avro::{datum_to_json, json_to_datum, Resolver, Schema};
use serde_json::Value as Json;

const DATA: &str = include_str!("data/avro-compatibility.json");

fn schema(case: &Json, key: &str) -> Result<Schema, String> {
    let text = serde_json::to_string(&case[key]).unwrap();
    Schema::parse(&text).map_err(|e| format!("{key} schema does not parse: {e}"))
}

/// Runs one case: `Ok(())` when the outcome is the expected one, else what happened.
fn run(case: &Json) -> Result<(), String> {
    let reader = schema(case, "reader")?;
    let writer = schema(case, "writer")?;
    if case["kind"] == "decode" {
        let resolver = Resolver::new_partial(&writer, &reader).map_err(|e| format!("no resolver: {e}"))?;
        let bytes = json_to_datum(&writer, &case["datum"]).map_err(|e| format!("datum does not encode: {e}"))?;
        let converted = resolver.convert(&bytes);
        return match (converted, case.get("expected")) {
            (Ok(out), Some(expected)) => {
                let got = datum_to_json(&reader, &out).map_err(|e| format!("converted datum does not decode: {e}"))?;
                if &got == expected {
                    Ok(())
                } else {
                    Err(format!("read as {got}, expected {expected}"))
                }
            }
            (Ok(out), None) => Err(format!("expected an error, read as {}", datum_to_json(&reader, &out).unwrap())),
            (Err(e), Some(_)) => Err(format!("the datum fails: {e}")),
            (Err(_), None) => Ok(()),
        };
    }
    let expected = case["compatible"].as_bool().expect("\"compatible\" is a boolean");
    match (Resolver::new(&writer, &reader), expected) {
        (Ok(_), true) | (Err(_), false) => Ok(()),
        (Ok(_), false) => Err("accepted, expected incompatible".into()),
        (Err(e), true) => Err(format!("refused, expected compatible: {e}")),
    }
}

#[test]
fn apache_avro_compatibility_pairs() {
    let doc: Json = serde_json::from_str(DATA).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    let (mut passed, mut failures) = (0, Vec::new());
    let mut skipped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for case in cases {
        let name = format!(
            "{} {}",
            case["source"].as_str().unwrap().rsplit('/').next().unwrap(),
            case["test"].as_str().unwrap()
        );
        if let Some(reason) = case.get("skip") {
            skipped.entry(reason.as_str().unwrap().to_string()).or_default().push(name);
            continue;
        }
        match run(case) {
            Ok(()) => passed += 1,
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    let skip_count: usize = skipped.values().map(Vec::len).sum();
    println!("{} cases: {passed} passed, {} failed, {skip_count} skipped", cases.len(), failures.len());
    for (reason, names) in &skipped {
        println!("skipped ({}): {reason}", names.len());
        for name in names {
            println!("  {name}");
        }
    }
    for failure in &failures {
        println!("FAILED {failure}");
    }
    assert!(failures.is_empty(), "{} of {} cases failed (see above)", failures.len(), cases.len());
}
