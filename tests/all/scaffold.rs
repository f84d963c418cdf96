//! `meshhost plugin new` → `plugin build` → `plugin test` → a pipeline on the broker, in a
//! temporary directory outside the checkout, for every language.

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

/// `meshhost ARGS` in `dir` as a user who installed only the binary would run it: no checkout
/// on `PATH`, no `MESHHOST_SDK_DIR`, its own cache. Two things are shared with the rest of the
/// suite only to save time: the language tools (`sdk/install-tools.sh` puts componentize-py in
/// `target/sdk-tools`, the layout `plugin build` installs into) and, for Rust, the plugins'
/// cargo target directory. (exit code, stdout, stderr)
pub fn as_user(dir: &Path, cache: &Path, args: &[&str]) -> (i32, String, String) {
    let bin = Path::new(MESHHOST).parent().unwrap();
    let checkout = workspace();
    let system_path: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap()).filter(|dir| !dir.starts_with(&checkout)).collect();
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(system_path)).unwrap();
    // <target>/wasm-plugins/wasm32-wasip2/release/mesh_filter.wasm → <target>/wasm-plugins
    let plugins_target = Path::new(STOCK_FILTER_PLUGIN).ancestors().nth(3).unwrap().to_path_buf();
    let output = Command::new("meshhost")
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("MESHHOST_SDK_DIR")
        .env("MESHHOST_CACHE_DIR", cache)
        .env("MESHHOST_TOOLS_DIR", checkout.join("target/sdk-tools"))
        .env("CARGO_TARGET_DIR", plugins_target)
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .output()
        .expect("run meshhost");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `meshhost plugin build` in `project` (as [`as_user`]); the component it wrote.
pub fn plugin_build(project: &Path, cache: &Path) -> PathBuf {
    let (code, stdout, stderr) = as_user(project, cache, &["plugin", "build"]);
    assert_eq!(code, 0, "plugin build: {stdout}{stderr}");
    let name = project.file_name().unwrap().to_str().unwrap();
    assert!(stdout.starts_with(&format!("built ./{name}.wasm (")), "{stdout}");
    project.join(format!("{name}.wasm"))
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
    let cache = dir.path().join("cache");
    let (code, stdout, stderr) = as_user(dir.path(), &cache, &["plugin", "new", "acme/upper", "--lang", lang]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("created upper"), "{stdout}");
    let project = dir.path().join("upper");
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(readme.contains("meshhost plugin build"), "{readme}");
    assert!(!readme.contains(workspace().to_str().unwrap()), "the README points into the checkout: {readme}");
    let wasm = plugin_build(&project, &cache);
    assert!(!crate::guest_state::imports_state(&wasm), "a plugin that keeps no state does not import it");

    let (code, stdout, _) = as_user(&project, &cache, &["plugin", "test", "upper.wasm", "--fixtures", "fixtures"]);
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
