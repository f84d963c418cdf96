//! `meshhost plugin test`: the checks every plugin must pass, whatever its language, and the
//! user's fixtures (input records + config → expected outputs).
//!
//! A fixture is a JSON file:
//!
//! ```json
//! {
//!   "config": {"condition": "year >= 2000"},
//!   "inputs": [{"name": "movies", "schema": {"type": "record", "name": "Movie", "fields": [...]}}],
//!   "records": [{"input": 0, "key": "m1", "value": {"year": 2001, ...}}],
//!   "expected": [{"port": "out", "key": "m1", "value": {...}}],
//!   "failures": [2]
//! }
//! ```
//!
//! Values are natural JSON; the kit encodes them with the input schema and decodes outputs with
//! the declared output schema. `expected` lists every emitted record in order (`value: null` is
//! a tombstone); `failures` lists the indexes of records the plugin must reject (default none).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use meshhost_avro::{self as avro, Schema};
use serde::Deserialize;

use crate::plugin::batch::Record;
use crate::plugin::bindings::{InitResult, InputPort};
use crate::plugin::{InitFailure, Limits, PluginEngine, ProcessorInstance};
use crate::source::SourceRecord;
use crate::state::StateWrites;
use crate::topology::execute::{Effects, Executor};
use crate::topology::failure::{Cause, Failure};
use crate::topology::{EdgeSchema, Topology};

/// One check and its outcome.
#[derive(Debug)]
pub struct Check {
    pub name: String,
    /// `Ok(note)` passed, `Err(why)` failed; `None` skipped with the reason in `note`.
    pub outcome: Result<(), String>,
    pub skipped: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    config: Option<serde_json::Value>,
    inputs: Vec<FixtureInput>,
    #[serde(default)]
    records: Vec<FixtureRecord>,
    #[serde(default)]
    expected: Vec<FixtureOutput>,
    #[serde(default)]
    failures: Vec<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureInput {
    name: String,
    schema: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureRecord {
    #[serde(default)]
    input: u32,
    #[serde(default)]
    key: Option<String>,
    value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct FixtureOutput {
    port: String,
    #[serde(default)]
    key: Option<String>,
    value: serde_json::Value,
}

/// A record schema used when no fixture gives one.
const PROBE_SCHEMA: &str = r#"{"type": "record", "name": "Probe", "namespace": "meshhost.test", "fields": [
  {"name": "id", "type": "long"}, {"name": "name", "type": "string"}, {"name": "year", "type": "int"}]}"#;

/// Run every check on `component`, with the fixtures in `fixtures` (`*.json`).
pub fn run(component: &Path, fixtures: Option<&Path>) -> anyhow::Result<Vec<Check>> {
    let bytes = std::fs::read(component).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", component.display()))?;
    let engine = PluginEngine::new()?;
    let label = component.display().to_string();
    let mut checks = Vec::new();
    let mut check = |name: &str, outcome: Result<(), String>| {
        checks.push(Check { name: name.to_string(), outcome, skipped: false })
    };

    if let Err(why) = engine.describe(&label, &bytes).map_err(|e| e.to_string()) {
        check("loads as a meshhost:processor@0.3 component", Err(why));
        return Ok(checks);
    }
    check("loads as a meshhost:processor@0.3 component", Ok(()));
    let plugin = engine.load(&label, &bytes)?;

    let fixtures = match fixtures {
        Some(dir) => read_fixtures(dir)?,
        None => Vec::new(),
    };
    let probe_inputs: Vec<InputPort> = match fixtures.first() {
        Some((_, fixture)) => input_ports(fixture)?,
        None => vec![crate::plugin::input_port("input", PROBE_SCHEMA)?],
    };

    let bad_config = serde_json::json!({"meshhost-plugin-test-unknown-option": true}).to_string();
    check(
        "init with a bad config returns an invalid-config error (not a trap)",
        match ProcessorInstance::new("plugin-test", &plugin, Limits::default(), bad_config, probe_inputs.clone()) {
            Err(InitFailure::Config(_)) => Ok(()),
            Err(InitFailure::Crashed(why)) => Err(format!("it trapped: {why}")),
            Ok(_) => Err("it accepted an unknown option".into()),
        },
    );

    // The remaining checks need an init that succeeds: the first fixture's config, else `{}`.
    let config = fixtures.first().and_then(|(_, f)| f.config.clone()).unwrap_or_else(|| serde_json::json!({}));
    let mut instance =
        match ProcessorInstance::new("plugin-test", &plugin, Limits::default(), config.to_string(), probe_inputs) {
            Ok(instance) => instance,
            Err(e) => {
                let why = match e {
                    InitFailure::Config(errors) => {
                        errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect::<Vec<_>>().join("; ")
                    }
                    InitFailure::Crashed(why) => why,
                };
                checks.push(Check {
                    name: "init with a valid config (give one in a fixture)".into(),
                    outcome: Err(why),
                    skipped: fixtures.is_empty(),
                });
                return Ok(checks);
            }
        };
    let init = instance.init_result().clone();
    let outputs = output_schemas(&init);
    check(
        "declared output schemas are valid Avro",
        outputs
            .iter()
            .try_for_each(|(name, schema)| schema.as_ref().map(|_| ()).map_err(|e| format!("port {name:?}: {e}"))),
    );
    check(
        "an empty batch gives empty output",
        match instance.process(0, 0, &[]) {
            Ok((result, _)) if result.emitted.is_empty() && result.failures.is_empty() => Ok(()),
            Ok(_) => Err("it emitted or failed records for an empty batch".into()),
            Err(trap) => Err(trap.to_string()),
        },
    );

    for (path, fixture) in &fixtures {
        let name = format!("fixture {}", path.file_name().unwrap_or_default().to_string_lossy());
        check(&name, run_fixture(&plugin, fixture));
    }
    if fixtures.is_empty() {
        checks.push(Check { name: "fixtures (none given: --fixtures DIR)".into(), outcome: Ok(()), skipped: true });
    }
    Ok(checks)
}

fn read_fixtures(dir: &Path) -> anyhow::Result<Vec<(PathBuf, Fixture)>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot read fixtures in {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)?;
            let fixture: Fixture =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Ok((path, fixture))
        })
        .collect()
}

fn input_ports(fixture: &Fixture) -> anyhow::Result<Vec<InputPort>> {
    fixture
        .inputs
        .iter()
        .map(|i| {
            crate::plugin::input_port(&i.name, &i.schema.to_string())
                .map_err(|e| anyhow::anyhow!("input {:?}: the schema is not valid Avro: {e}", i.name))
        })
        .collect()
}

fn output_schemas(init: &InitResult) -> Vec<(String, Result<Schema, String>)> {
    init.outputs.iter().map(|o| (o.name.clone(), Schema::parse(&o.schema).map_err(|e| e.to_string()))).collect()
}

/// Run a fixture through the same executor `meshhost run` uses: records decoded and checked,
/// JSON transcoded, outputs checked against their ports, state applied after each call.
fn run_fixture(plugin: &crate::plugin::Plugin, fixture: &Fixture) -> Result<(), String> {
    let config = fixture.config.clone().unwrap_or_else(|| serde_json::json!({})).to_string();
    let ports = input_ports(fixture).map_err(|e| e.to_string())?;
    let mut instance = ProcessorInstance::new("plugin-test", plugin, Limits::default(), config, ports.clone())
        .map_err(|e| match e {
            InitFailure::Config(errors) => format!(
                "init refused the fixture's config: {}",
                errors.iter().map(|e| format!("{}: {}", e.path, e.message)).collect::<Vec<_>>().join("; ")
            ),
            InitFailure::Crashed(why) => format!("init trapped: {why}"),
        })?;
    let state_dir = tempfile_dir();
    if instance.is_stateful() {
        let store = crate::state::StateStore::open(&state_dir.join("state.redb")).map_err(|e| e.to_string())?;
        instance.attach_state(Arc::new(store));
    }
    let inputs: Vec<(String, EdgeSchema)> = ports
        .iter()
        .map(|p| {
            EdgeSchema::parse(&p.schema)
                .map(|schema| (p.name.clone(), schema))
                .map_err(|e| format!("input {:?}: {e}", p.name))
        })
        .collect::<Result<_, _>>()?;
    let mut executor = Executor::new(Topology::single_processor(instance, inputs.clone())?);

    let mut actual = Vec::new();
    let mut failed = Vec::new();
    let mut reasons = Vec::new();
    // One record per batch, in order, so stateful plugins see each record's effect in order.
    for (index, record) in fixture.records.iter().enumerate() {
        let (_, schema) =
            inputs.get(record.input as usize).ok_or_else(|| format!("record {index}: no input {}", record.input))?;
        let value = match &record.value {
            serde_json::Value::Null => None,
            json => Some(
                avro::json_to_datum(&schema.parsed, json)
                    .map_err(|e| format!("record {index} does not fit input schema: {e}"))?,
            ),
        };
        let input = SourceRecord {
            source: record.input as usize,
            record: Record {
                key: record.key.clone().map(String::into_bytes),
                value,
                headers: Vec::new(),
                timestamp: None,
            },
            ..Default::default()
        };
        let mut collected = Collected::default();
        if let Err(error) = executor.run(std::slice::from_ref(&input), &mut collected) {
            let cause = std::error::Error::source(&error).map(|e| format!(": {e}")).unwrap_or_default();
            return Err(format!("record {index}: {error}{cause}"));
        }
        for failure in collected.failures {
            // A fixture may expect the plugin to reject a record; any other failure is a bug.
            match failure.cause {
                Cause::Rejected => {
                    failed.push(index);
                    reasons.push(format!("record {index}: {}", failure.error));
                }
                Cause::Data | Cause::Trapped | Cause::PluginBug => {
                    return Err(format!("record {index}: {}", failure.error))
                }
            }
        }
        for (sink, output) in collected.outputs {
            let sink = &executor.topology().sinks[sink];
            let value = match output.value {
                None => serde_json::Value::Null,
                Some(datum) => avro::datum_to_json(&sink.schema.parsed, &datum).map_err(|e| e.to_string())?,
            };
            actual.push(FixtureOutput {
                port: sink.id.clone(),
                key: output.key.map(|k| String::from_utf8_lossy(&k).into_owned()),
                value,
            });
        }
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    let mut problems = Vec::new();
    if failed != fixture.failures {
        let why = if reasons.is_empty() { String::new() } else { format!("\n{}", reasons.join("\n")) };
        problems.push(format!("failed records: expected {:?}, got {:?}{why}", fixture.failures, failed));
    }
    if actual != fixture.expected {
        problems.push(diff(&fixture.expected, &actual));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// What one fixture record produced.
#[derive(Default)]
struct Collected {
    outputs: Vec<(usize, Record)>,
    failures: Vec<Failure>,
}

impl Effects for Collected {
    type Error = std::convert::Infallible;

    fn send(&mut self, sink: usize, _origin: usize, record: Record) -> Result<(), Self::Error> {
        self.outputs.push((sink, record));
        Ok(())
    }

    fn dead_letter(&mut self, _origin: usize, failure: Failure) -> Result<(), Self::Error> {
        self.failures.push(failure);
        Ok(())
    }

    /// The writes are in the local store already; there is no changelog here.
    fn state_written(&mut self, _processor: usize, _partition: u32, _writes: &StateWrites) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// A line diff of expected and actual outputs, one JSON record per line.
fn diff(expected: &[FixtureOutput], actual: &[FixtureOutput]) -> String {
    let line = |o: &FixtureOutput| serde_json::to_string(o).unwrap();
    let mut out = String::from("outputs differ (- expected, + actual):");
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => out.push_str(&format!("\n    {}", line(e))),
            (e, a) => {
                if let Some(e) = e {
                    out.push_str(&format!("\n  - {}", line(e)));
                }
                if let Some(a) = a {
                    out.push_str(&format!("\n  + {}", line(a)));
                }
            }
        }
    }
    out
}

fn tempfile_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    std::env::temp_dir().join(format!("meshhost-plugin-test-{}-{nanos}", std::process::id()))
}
