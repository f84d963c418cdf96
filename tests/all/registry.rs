//! The plugin registry from the command line: publish, list, inspect, resolve, verify, yank,
//! lock — and a pipeline run with a plugin the test publishes itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::movies::{self, Movie};
use crate::support::*;

/// A manifest for `name@version` beside a copy of `component`, in `dir`.
fn package(dir: &Path, component: &str, name: &str, version: &str) -> PathBuf {
    let wasm = dir.join(format!("{}-{version}.wasm", name.replace('/', "-")));
    std::fs::copy(component, &wasm).unwrap();
    std::fs::write(
        wasm.with_extension("toml"),
        format!("name = {name:?}\nversion = {version:?}\ndescription = \"test plugin\"\n\n[options.mode]\ntype = \"string\"\ndescription = \"unused\"\n"),
    )
    .unwrap();
    wasm
}

fn publish(registry: &Path, wasm: &Path) -> (i32, String, String) {
    meshhost(&[
        "plugin",
        "publish",
        wasm.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
        "--manifest",
        wasm.with_extension("toml").to_str().unwrap(),
    ])
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// A pipeline using `uses` through a registry at `registry/` beside it.
fn pipeline_using(dir: &Path, uses: &str) -> PathBuf {
    std::fs::write(dir.join("movie.avsc"), movies::MOVIE_SCHEMA).unwrap();
    let path = dir.join("pipeline.yaml");
    std::fs::write(
        &path,
        format!("name: reg\nregistry: ./registry\nsources:\n  movies:\n    topic: movies\n    format: avro\n    schema: movie.avsc\nprocessors:\n  p:\n    uses: {uses}\n    inputs: [movies]\nsinks:\n  out:\n    topic: out\n    format: avro\n    inputs: [p]\n"),
    )
    .unwrap();
    path
}

fn locked_version(pipeline: &Path) -> String {
    let lock = std::fs::read_to_string(pipeline.with_extension("lock")).unwrap();
    lock.lines().find_map(|l| l.strip_prefix("version = \"")).map(|v| v.trim_end_matches('"').to_string()).unwrap()
}

#[test]
fn publish_list_inspect_and_resolve_by_requirement() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    for version in ["1.0.0", "1.2.0", "1.2.5", "1.3.0", "2.0.0"] {
        let (code, stdout, stderr) = publish(&registry, &package(dir.path(), TRAP_PLUGIN, "acme/pass", version));
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains(&format!("published acme/pass@{version} (sha256:")), "{stdout}");
    }
    let (code, stdout, _) = meshhost(&["plugin", "list", "--registry", registry.to_str().unwrap()]);
    assert_eq!((code, stdout.as_str()), (0, "acme/pass 1.0.0, 1.2.0, 1.2.5, 1.3.0, 2.0.0\n"));

    let (code, stdout, stderr) =
        meshhost(&["plugin", "inspect", "acme/pass@~1.2", "--registry", registry.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let digest = format!("sha256:{}", sha256_hex(&std::fs::read(TRAP_PLUGIN).unwrap()));
    for expected in [
        "  1.2.5\n",
        &format!("digest: {digest}"),
        "wit: meshhost:processor/processor@0.3.0",
        "exports: meshhost:processor/processor@0.3.0",
        "mode (string): unused",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in {stdout}");
    }
    assert!(!stdout.contains("1.3.0"), "{stdout}");

    for (requirement, expected) in
        [("^1.2", "1.3.0"), ("~1.2", "1.2.5"), ("=1.2.0", "1.2.0"), ("*", "2.0.0"), ("^1", "1.3.0")]
    {
        let pipeline = pipeline_using(dir.path(), &format!("acme/pass@{requirement}"));
        let (code, _, stderr) = meshhost(&["lock", pipeline.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(locked_version(&pipeline), expected, "requirement {requirement}");
    }
    let pipeline = pipeline_using(dir.path(), "acme/pass@^3");
    let (code, _, stderr) = meshhost(&["lock", pipeline.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no version of acme/pass matches ^3; available: 1.0.0, 1.2.0, 1.2.5, 1.3.0, 2.0.0"),
        "{stderr}"
    );
    let pipeline = pipeline_using(dir.path(), "acme/pas@^1");
    std::fs::remove_file(pipeline.with_extension("lock")).unwrap();
    let (code, _, stderr) = meshhost(&["validate", pipeline.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("processors.p.uses: no plugin named \"acme/pas\""), "{stderr}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_version_never_changes() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    let first = package(dir.path(), TRAP_PLUGIN, "acme/pass", "1.0.0");
    assert_eq!(publish(&registry, &first).0, 0);
    let (code, stdout, _) = publish(&registry, &first);
    assert_eq!(code, 0);
    assert!(stdout.contains("already published with the same bytes"), "{stdout}");
    let before = files(&registry);
    let other = package(dir.path(), SPIN_PLUGIN, "acme/pass", "1.0.0");
    let (code, _, stderr) = publish(&registry, &other);
    assert_eq!(code, 2);
    assert!(stderr.contains("acme/pass@1.0.0 is already published with digest sha256:"), "{stderr}");
    assert_eq!(files(&registry), before);
    assert_eq!(
        std::fs::read(registry.join("acme/pass/1.0.0/plugin.wasm")).unwrap(),
        std::fs::read(TRAP_PLUGIN).unwrap()
    );
}

#[test]
fn a_flipped_byte_fails_verify_and_refuses_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    assert_eq!(publish(&registry, &package(dir.path(), TRAP_PLUGIN, "acme/pass", "1.0.0")).0, 0);
    let pipeline = pipeline_using(dir.path(), "acme/pass@^1");
    assert_eq!(meshhost(&["validate", pipeline.to_str().unwrap()]).0, 0);
    let (code, stdout, _) = meshhost(&["plugin", "verify", "--registry", registry.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("every digest matches"));

    let wasm = registry.join("acme/pass/1.0.0/plugin.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&wasm, &bytes).unwrap();

    let (code, _, stderr) = meshhost(&["plugin", "verify", "--registry", registry.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("acme/pass@1.0.0 is corrupt: its recorded digest is sha256:"), "{stderr}");
    let (code, _, stderr) = meshhost(&["validate", pipeline.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("processors.p.uses: acme/pass@1.0.0 is corrupt"), "{stderr}");
}

#[test]
fn the_lock_file_pins_digests_and_keeps_yanked_versions_loadable() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    for version in ["1.0.0", "1.1.0"] {
        assert_eq!(publish(&registry, &package(dir.path(), TRAP_PLUGIN, "acme/pass", version)).0, 0);
    }
    let pipeline = pipeline_using(dir.path(), "acme/pass@^1");
    let (code, stdout, stderr) = meshhost(&["lock", pipeline.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("acme/pass@^1 -> acme/pass@1.1.0 sha256:"), "{stdout}");
    assert_eq!(locked_version(&pipeline), "1.1.0");

    let (code, _, _) = meshhost(&["plugin", "yank", "acme/pass@1.1.0", "--registry", registry.to_str().unwrap()]);
    assert_eq!(code, 0);
    let (_, stdout, _) = meshhost(&["plugin", "list", "--registry", registry.to_str().unwrap()]);
    assert_eq!(stdout, "acme/pass 1.0.0, 1.1.0 (yanked)\n");
    // The existing lock still loads the yanked version ...
    let (code, _, stderr) = meshhost(&["validate", pipeline.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // ... a new resolution skips it.
    std::fs::remove_file(pipeline.with_extension("lock")).unwrap();
    assert_eq!(meshhost(&["lock", pipeline.to_str().unwrap()]).0, 0);
    assert_eq!(locked_version(&pipeline), "1.0.0");

    // A lock whose digest no longer matches the bytes is refused, naming both digests.
    let lock_path = pipeline.with_extension("lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let actual = lock.lines().find_map(|l| l.strip_prefix("digest = \"")).unwrap().trim_end_matches('"').to_string();
    let expected = format!("sha256:{}", "0".repeat(64));
    std::fs::write(&lock_path, lock.replace(&actual, &expected)).unwrap();
    let (code, _, stderr) = meshhost(&["validate", pipeline.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!(
            "plugin acme/pass@1.0.0 does not match the lock file: expected digest {expected}, actual {actual}"
        )),
        "{stderr}"
    );
}

#[test]
fn only_components_exporting_the_processor_interface_are_published() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    let cases: [(&str, &[u8], &str); 3] = [
        ("garbage", b"definitely not wasm", "is not a WebAssembly component"),
        ("core", b"\0asm\x01\0\0\0", "is a core Wasm module, not a component"),
        (
            "empty",
            b"\0asm\x0d\0\x01\0",
            "does not export meshhost:processor/processor@0.3.0 (or a compatible 0.3.x); its exports are: none",
        ),
    ];
    for (name, bytes, expected) in cases {
        let wasm = package(dir.path(), TRAP_PLUGIN, &format!("acme/{name}"), "1.0.0");
        std::fs::write(&wasm, bytes).unwrap();
        let (code, _, stderr) = publish(&registry, &wasm);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
    assert!(!registry.exists() || files(&registry).is_empty(), "nothing written: {:?}", files(&registry));
}

#[test]
fn hostile_names_are_refused_and_nothing_is_written_outside() {
    let outer = tempfile::tempdir().unwrap();
    let registry = outer.path().join("registry");
    std::fs::create_dir_all(&registry).unwrap();
    let packages = outer.path().join("packages");
    std::fs::create_dir_all(&packages).unwrap();
    for name in ["../x", "/abs", "a/b/c", "acme/../../x", "acme", "Acme/x"] {
        let wasm = package(&packages, TRAP_PLUGIN, "acme/ok", "1.0.0");
        std::fs::write(wasm.with_extension("toml"), format!("name = {name:?}\nversion = \"1.0.0\"\n")).unwrap();
        let (code, _, stderr) = publish(&registry, &wasm);
        assert_eq!(code, 2, "{name}: {stderr}");
        assert!(stderr.contains("bad plugin name"), "{name}: {stderr}");
    }
    let wasm = package(&packages, TRAP_PLUGIN, "acme/ok", "1.0.0");
    std::fs::write(wasm.with_extension("toml"), "name = \"acme/ok\"\nversion = \"../../1.0.0\"\n").unwrap();
    let (code, _, stderr) = publish(&registry, &wasm);
    assert_eq!(code, 2);
    assert!(stderr.contains("bad version"), "{stderr}");
    let mut outside = files(outer.path());
    outside.retain(|f| !f.starts_with("packages/"));
    assert_eq!(outside, Vec::<String>::new());
}

#[test]
fn a_pipeline_runs_a_plugin_the_test_published() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    assert_eq!(publish(&registry, &package(dir.path(), TRAP_PLUGIN, "acme/pass", "1.4.2")).0, 0);
    let input = unique("reg-in");
    let output = unique("reg-out");
    create_topic(&input, 2);
    create_topic(&output, 2);
    let movies: Vec<Movie> = movies::movies(25);
    produce(&input, &movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect::<Vec<_>>());
    let pipeline = pipeline_using(dir.path(), "acme/pass@^1.4").to_str().unwrap().to_string();
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("topic: movies", &format!("topic: {input}"))
        .replace("topic: out", &format!("topic: {output}"))
        .replace("name: reg", &format!("name: {}", unique("reg")));
    std::fs::write(&pipeline, text).unwrap();
    assert_eq!(meshhost(&["lock", &pipeline]).0, 0);

    let run = start_run(Path::new(&pipeline));
    let records = read(&output, movies.len(), Duration::from_secs(60));
    assert_clean_exit(&run.stop());
    let mut got: Vec<(Vec<u8>, apache_avro::types::Value)> = records
        .iter()
        .map(|r| (r.key.clone().unwrap(), movies::decode(movies::MOVIE_SCHEMA, r.value.as_deref().unwrap())))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected: Vec<(Vec<u8>, apache_avro::types::Value)> =
        movies.iter().map(|m| (m.key(), movies::decode(movies::MOVIE_SCHEMA, &m.avro()))).collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(got == expected, "the published passthrough plugin returns every record unchanged");
}

#[test]
fn a_killed_publish_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let registry = dir.path().join("registry");
    assert_eq!(publish(&registry, &package(dir.path(), TRAP_PLUGIN, "acme/pass", "1.0.0")).0, 0);
    // What a publish killed before its rename leaves: a half-written staging directory.
    let staging = registry.join(".staging/acme-pass-2.0.0-12345-1");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("plugin.wasm"), &std::fs::read(TRAP_PLUGIN).unwrap()[..100]).unwrap();
    let (_, stdout, _) = meshhost(&["plugin", "list", "--registry", registry.to_str().unwrap()]);
    assert_eq!(stdout, "acme/pass 1.0.0\n");
    let (code, _, stderr) = meshhost(&["plugin", "verify", "--registry", registry.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let pipeline = pipeline_using(dir.path(), "acme/pass@*");
    assert_eq!(meshhost(&["lock", pipeline.to_str().unwrap()]).0, 0);
    assert_eq!(locked_version(&pipeline), "1.0.0");
}
