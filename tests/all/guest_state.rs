//! State in Python and JavaScript plugins: the click counters of `examples/python-counter` and
//! `examples/js-counter`, built with `meshhost plugin build`, count per key correctly across a
//! SIGKILL with the local state directory wiped (restored from the changelog). (That a
//! stateless guest plugin does not import `state` is checked in `scaffold`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

const CLICK: &str = include_str!("../../examples/python-counter/click.avsc");
const COUNT: &str = r#"{"type": "record", "name": "UserClicks", "namespace": "examples", "fields": [
  {"name": "user", "type": "string"}, {"name": "clicks", "type": "long"}]}"#;

/// `meshhost plugin build examples/<example> -o <dir>/<example>.wasm` (with the tools the suite
/// installed).
fn build_example(example: &str, dir: &Path) -> PathBuf {
    let component = dir.join(format!("{example}.wasm"));
    let output = std::process::Command::new(MESHHOST)
        .args(["plugin", "build"])
        .arg(workspace().join("examples").join(example))
        .arg("-o")
        .arg(&component)
        .env("MESHHOST_TOOLS_DIR", workspace().join("target/sdk-tools"))
        .output()
        .expect("run meshhost plugin build");
    assert!(output.status.success(), "plugin build {example}: {}", String::from_utf8_lossy(&output.stderr));
    component
}

/// Whether the component imports the WIT `state` interface.
pub fn imports_state(component: &Path) -> bool {
    let bytes = std::fs::read(component).unwrap();
    bytes.windows(b"meshhost:processor/state@".len()).any(|w| w == b"meshhost:processor/state@")
}

#[test]
fn a_python_counter_keeps_its_counts_across_sigkill_and_a_lost_state_dir() {
    counts_survive_sigkill("python-counter");
}

#[test]
fn a_js_counter_keeps_its_counts_across_sigkill_and_a_lost_state_dir() {
    counts_survive_sigkill("js-counter");
}

fn counts_survive_sigkill(example: &str) {
    let dir = tempfile::tempdir().unwrap();
    let component = build_example(example, dir.path());
    assert!(imports_state(&component), "the counter uses state, so its component imports it");

    let (clicks, output) = (unique("clicks"), unique("clicks-counted"));
    create_topic(&clicks, 2);
    create_topic(&output, 2);
    let schema = meshhost_avro::Schema::parse(CLICK).unwrap();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let mut records = Vec::new();
    for i in 0..10_000 {
        let user = format!("user-{:02}", (i * 7) % 23);
        *expected.entry(user.clone()).or_default() += 1;
        let value =
            meshhost_avro::json_to_datum(&schema, &serde_json::json!({"id": format!("click-{i}"), "user": user}))
                .unwrap();
        records.push((Some(user.into_bytes()), Some(value)));
    }
    produce(&clicks, &records);
    std::fs::write(dir.path().join("click.avsc"), CLICK).unwrap();
    let name = unique("counter");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {name}\nstate_dir: ./state\nsources:\n  clicks:\n    topic: {clicks}\n    format: avro\n    schema: click.avsc\nprocessors:\n  counted:\n    uses: {}\n    inputs: [clicks]\nsinks:\n  out:\n    topic: {output}\n    format: avro\n    inputs: [counted]\n",
            component.display()
        ),
    )
    .unwrap();

    let run = start_run(&pipeline);
    let some = read(&output, 300, Duration::from_secs(120));
    assert!(some.len() >= 300, "the first run produced too little before the kill");
    run.kill();
    let state_dir = dir.path().join("state");
    assert!(state_dir.exists(), "the first run kept local state in {}", state_dir.display());
    std::fs::remove_dir_all(&state_dir).unwrap();

    let run = start_run(&pipeline);
    crate::join::wait_for_commits(&format!("meshhost-{name}"), &[&clicks]);
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    assert!(stopped.log.contains("restored state from the changelog"), "log:\n{}", stopped.log);

    // The output read as a changelog: the last count per user is the user's number of clicks.
    let total: i64 = end_offsets(&output).values().sum();
    assert!(total >= 10_000, "one output per click at least, got {total}");
    let count_schema = meshhost_avro::Schema::parse(COUNT).unwrap();
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_partition: BTreeMap<i32, Vec<TestRecord>> = BTreeMap::new();
    for record in read(&output, total as usize, Duration::from_secs(60)) {
        by_partition.entry(record.partition).or_default().push(record);
    }
    // Each partition's records come in offset order, and a user's clicks all go to one partition.
    for records in by_partition.values() {
        for record in records {
            let value = meshhost_avro::datum_to_json(&count_schema, record.value.as_ref().unwrap()).unwrap();
            last.insert(value["user"].as_str().unwrap().to_string(), value["clicks"].as_i64().unwrap());
        }
    }
    assert_eq!(last, expected);
}
