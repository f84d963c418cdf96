//! `meshhost plugin test`: the language-independent checks and fixtures.

use std::path::Path;

use crate::support::*;

fn plugin_test(component: &str, fixtures: Option<&Path>) -> (i32, String) {
    let mut args = vec!["plugin", "test", component];
    if let Some(fixtures) = fixtures {
        args.extend(["--fixtures", fixtures.to_str().unwrap()]);
    }
    let (code, stdout, _) = meshhost(&args);
    (code, stdout)
}

#[test]
fn the_stock_filter_passes_every_check_and_its_fixture() {
    let (code, stdout) = plugin_test(STOCK_FILTER_PLUGIN, Some(&workspace().join("tests/fixtures/filter")));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("5 passed, 0 failed\n"), "{stdout}");
    assert!(stdout.contains("ok    fixture recent-us.json"), "{stdout}");
}

#[test]
fn a_plugin_that_traps_on_bad_config_fails() {
    let (code, stdout) = plugin_test(BAD_INIT_PLUGIN, None);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  init with a bad config returns an invalid-config error (not a trap)\n      it trapped:"),
        "{stdout}"
    );
    assert!(stdout.contains("unexpected option meshhost-plugin-test-unknown-option"), "{stdout}");
}

#[test]
fn a_plugin_whose_output_breaks_its_schema_fails() {
    let (code, stdout) = plugin_test(BAD_OUTPUT_PLUGIN, Some(&workspace().join("tests/fixtures/passthrough")));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  fixture two.json\n      record 0: output on \"out\" does not match its declared schema"),
        "{stdout}"
    );
}

#[test]
fn a_fixture_mismatch_prints_a_diff() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::fs::read_to_string(workspace().join("tests/fixtures/filter/recent-us.json")).unwrap();
    // Break the expected output (the last mention of 2010), not the input.
    let at = fixture.rfind("\"year\": 2010").unwrap();
    let wrong = format!("{}\"year\": 2011{}", &fixture[..at], &fixture[at + "\"year\": 2010".len()..]);
    std::fs::write(dir.path().join("wrong.json"), wrong).unwrap();
    let (code, stdout) = plugin_test(STOCK_FILTER_PLUGIN, Some(dir.path()));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("outputs differ (- expected, + actual):"), "{stdout}");
    assert!(
        stdout.contains(
            r#"  - {"port":"out","key":"4","value":{"id":4,"title":"Inception","year":2011,"country":"US"}}"#
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#"  + {"port":"out","key":"4","value":{"id":4,"title":"Inception","year":2010,"country":"US"}}"#
        ),
        "{stdout}"
    );
}

#[test]
fn a_file_that_is_not_a_component_fails_the_first_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    let (code, stdout) = plugin_test(path.to_str().unwrap(), None);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL  loads as a meshhost:processor@0.3 component\n      "), "{stdout}");
    assert!(stdout.contains("is a core Wasm module, not a component"), "{stdout}");
}

#[test]
fn an_unexpected_rejection_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = serde_json::json!({
        "config": {"condition": "100 / id > 1"},
        "inputs": [{"name": "movies", "schema": {"type": "record", "name": "Movie", "fields": [{"name": "id", "type": "long"}]}}],
        "records": [{"key": "a", "value": {"id": 0}}, {"key": "b", "value": {"id": 5}}],
        "expected": [{"port": "out", "key": "b", "value": {"id": 5}}]
    });
    std::fs::write(dir.path().join("zero.json"), fixture.to_string()).unwrap();
    let (code, stdout) = plugin_test(STOCK_FILTER_PLUGIN, Some(dir.path()));
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("failed records: expected [], got [0]\n      record 0: condition failed: Division by zero"),
        "{stdout}"
    );
}
