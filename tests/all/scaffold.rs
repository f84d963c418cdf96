//! `meshhost plugin new`: a scaffolded project builds, passes `plugin test`, and runs in a
//! pipeline on the broker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const MOVIE: &str = r#"{"type": "record", "name": "Movie", "fields": [{"name": "id", "type": "long"}, {"name": "title", "type": "string"}]}"#;

/// Run `pipeline` with `plugin` over `titles` and return the output titles by key.
pub fn run_title_pipeline(plugin: &Path, titles: &[&str]) -> Vec<(String, serde_json::Value)> {
    let dir = tempfile::tempdir().unwrap();
    let input = unique("scaffold-in");
    let output = unique("scaffold-out");
    create_topic(&input, 2);
    create_topic(&output, 2);
    let schema = meshhost_avro::Schema::parse(MOVIE).unwrap();
    let records: Vec<_> = titles
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let value = meshhost_avro::json_to_datum(&schema, &serde_json::json!({"id": i, "title": t})).unwrap();
            (Some(i.to_string().into_bytes()), Some(value))
        })
        .collect();
    produce(&input, &records);
    std::fs::write(dir.path().join("movie.avsc"), MOVIE).unwrap();
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {}\nsources:\n  movies:\n    topic: {input}\n    format: avro\n    schema: movie.avsc\nprocessors:\n  upper:\n    uses: {}\n    inputs: [movies]\n    with:\n      field: title\nsinks:\n  out:\n    topic: {output}\n    format: avro\n    inputs: [upper]\n",
            unique("scaffold"),
            plugin.display()
        ),
    )
    .unwrap();
    let run = start_run(&pipeline);
    let out = read(&output, titles.len(), Duration::from_secs(60));
    assert_clean_exit(&run.stop());
    let mut got: Vec<(String, serde_json::Value)> = out
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap()).unwrap(),
                meshhost_avro::datum_to_json(&schema, &r.value.unwrap()).unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

/// Build a scaffolded Rust plugin, sharing the plugins' target directory so the SDK and its
/// dependencies are not compiled again.
fn build_rust(project: &Path) -> PathBuf {
    // <target>/wasm-plugins/wasm32-wasip2/release/mesh_filter.wasm → <target>/wasm-plugins
    let target = Path::new(STOCK_FILTER_PLUGIN).ancestors().nth(3).unwrap().to_path_buf();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2", "-q"])
        .env("CARGO_TARGET_DIR", &target)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .current_dir(project)
        .status()
        .expect("cargo build");
    assert!(status.success(), "the scaffolded plugin builds");
    target.join("wasm32-wasip2/release/upper.wasm")
}

/// Build a scaffolded Python or JavaScript plugin with its SDK's one build command.
fn build_dynamic(project: &Path, lang: &str) -> PathBuf {
    let wasm = project.join("upper.wasm");
    let sdk = workspace().join("sdk");
    let status = match lang {
        "python" => Command::new("python3")
            .arg(sdk.join("python/build.py"))
            .args(["app.py", "-o", "upper.wasm"])
            .current_dir(project)
            .status(),
        _ => Command::new("node")
            .arg(sdk.join("js/build.mjs"))
            .args(["app.js", "-o", "upper.wasm"])
            .current_dir(project)
            .status(),
    }
    .expect("run the SDK build command");
    assert!(status.success(), "the scaffolded {lang} plugin builds");
    wasm
}

#[test]
fn a_scaffolded_rust_plugin_builds_passes_its_tests_and_runs() {
    scaffold_build_test_and_run("rust");
}

#[test]
fn a_scaffolded_python_plugin_builds_passes_its_tests_and_runs() {
    scaffold_build_test_and_run("python");
}

#[test]
fn a_scaffolded_js_plugin_builds_passes_its_tests_and_runs() {
    scaffold_build_test_and_run("js");
}

fn scaffold_build_test_and_run(lang: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = meshhost_in(Some(dir.path()), &["plugin", "new", "acme/upper", "--lang", lang]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("created upper"), "{stdout}");
    let project = dir.path().join("upper");
    let wasm = if lang == "rust" { build_rust(&project) } else { build_dynamic(&project, lang) };

    let (code, stdout, _) =
        meshhost_in(Some(&project), &["plugin", "test", wasm.to_str().unwrap(), "--fixtures", "fixtures"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.ends_with("5 passed, 0 failed\n"), "{stdout}");

    let got = run_title_pipeline(&wasm, &["Inception", "Amélie", "千と千尋"]);
    assert_eq!(
        got,
        vec![
            ("0".to_string(), serde_json::json!({"id": 0, "title": "INCEPTION"})),
            ("1".to_string(), serde_json::json!({"id": 1, "title": "AMÉLIE"})),
            ("2".to_string(), serde_json::json!({"id": 2, "title": "千と千尋"})),
        ]
    );
}

#[test]
fn plugin_new_refuses_a_non_empty_directory_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("upper")).unwrap();
    std::fs::write(dir.path().join("upper/keep.txt"), "mine").unwrap();
    let (code, _, stderr) = meshhost_in(Some(dir.path()), &["plugin", "new", "upper", "--lang", "rust"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("already exists and is not empty"), "{stderr}");
    let (code, _, stderr) = meshhost_in(Some(dir.path()), &["plugin", "new", "../evil", "--lang", "rust"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("bad plugin name"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.path().join("upper/keep.txt")).unwrap(), "mine");
}
