//! Builds every plugin in the workspace into a `wasm32-wasip2` component (wasmtime's
//! test-programs pattern), so that:
//! - the stock plugins are embedded in the `meshhost` binary (`uses: mesh/filter@0.1` works on a
//!   fresh clone, with no publish step), and
//! - the tests get the paths of the test plugins as `MESHHOST_TEST_PLUGIN_<NAME>` constants and
//!   can never silently skip for want of a component.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (plugin name, crate directory, package name)
const STOCK: &[(&str, &str, &str)] = &[
    ("mesh/filter", "plugins/filter", "mesh-filter"),
    ("mesh/projection", "plugins/projection", "mesh-projection"),
    ("mesh/join", "plugins/join", "mesh-join"),
    ("mesh/union", "plugins/union", "mesh-union"),
];

/// (constant suffix, package name): plugins that exist only for the tests.
const TEST_ONLY: &[(&str, &str)] = &[
    ("TRAP", "test-trap"),
    ("SPIN", "test-spin"),
    ("BAD_INIT", "test-bad-init"),
    ("BAD_OUTPUT", "test-bad-output"),
    ("MISBEHAVE", "test-misbehave"),
    ("JSON_UPPER", "test-json-upper"),
    ("HOSTILE", "test-hostile"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    for dir in ["plugins", "sdk/rust", "sdk/avro", "wit", "tests/plugins"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    // Files, not directories: node_modules and __pycache__ change without the SDKs changing.
    for file in [
        "Cargo.toml",
        "sdk/python/build.py",
        "sdk/js/build.mjs",
        "sdk/js/meshhost.js",
        "sdk/js/package.json",
        "sdk/js/package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }
    for entry in std::fs::read_dir(workspace.join("sdk/python/meshhost_sdk")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "py") {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    // A target directory of its own: the outer cargo holds the lock on the usual one.
    let target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
    .join("wasm-plugins");

    let mut cargo = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir)
        // Plugins ship without debug info: it is most of a component's size, and the embedded
        // stock plugins make up most of the binary.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for (_, _, package) in STOCK {
        cargo.args(["-p", package]);
    }
    for (_, package) in TEST_ONLY {
        cargo.args(["-p", package]);
    }
    // Flags and wrappers meant for the host build must not leak into the Wasm build.
    for var in
        ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_TARGET"]
    {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("run cargo to build the plugins");
    assert!(
        status.success(),
        "building the plugins for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );

    let wasm = |package: &str| -> PathBuf {
        let path = target_dir.join("wasm32-wasip2/release").join(format!("{}.wasm", package.replace('-', "_")));
        assert!(path.is_file(), "{} was not built", path.display());
        path
    };

    let mut stock = String::from(
        "/// The stock plugins, built from `plugins/` by `build.rs`.\npub const ALL: &[StockPlugin] = &[\n",
    );
    for (name, dir, package) in STOCK {
        let version = package_version(&workspace.join(dir).join("Cargo.toml"));
        writeln!(
            stock,
            "    StockPlugin {{ name: {name:?}, version: {version:?}, bytes: include_bytes!({:?}), manifest: include_str!({:?}) }},",
            wasm(package),
            workspace.join(dir).join("plugin.toml")
        )
        .unwrap();
    }
    stock.push_str("];\n");
    std::fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("stock_plugins.rs"), stock).unwrap();

    embed_sdk(&workspace);

    for (constant, package) in TEST_ONLY {
        println!("cargo:rustc-env=MESHHOST_TEST_PLUGIN_{constant}={}", wasm(package).display());
    }
    for (name, _, package) in STOCK {
        let constant = name.rsplit('/').next().unwrap().to_uppercase();
        println!("cargo:rustc-env=MESHHOST_STOCK_PLUGIN_{constant}={}", wasm(package).display());
    }
}

/// The files `meshhost plugin new` and `plugin build` need outside the checkout: the WIT package,
/// the Python and JavaScript SDKs with their build scripts, and the Rust SDK crates with the
/// workspace manifest they inherit from. Written to `$OUT_DIR/sdk_files.rs` as
/// `(path in the checkout, bytes)`.
fn embed_sdk(workspace: &Path) {
    let mut files: Vec<PathBuf> = vec![workspace.join("Cargo.toml")];
    let mut add = |dir: &str, extensions: &[&str], recursive: bool| {
        let mut pending = vec![workspace.join(dir)];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    if recursive && name != "node_modules" && name != "__pycache__" {
                        pending.push(path);
                    }
                } else if extensions.iter().any(|ext| name.ends_with(ext)) {
                    files.push(path);
                }
            }
        }
    };
    add("wit", &[".wit"], false);
    add("sdk/python", &["build.py"], false);
    add("sdk/python/meshhost_sdk", &[".py"], false);
    add("sdk/js", &["build.mjs", "meshhost.js", "package.json", "package-lock.json"], false);
    add("sdk/rust", &["Cargo.toml"], false);
    add("sdk/rust/src", &[".rs"], true);
    add("sdk/avro", &["Cargo.toml"], false);
    add("sdk/avro/src", &[".rs"], true);
    files.sort();
    let mut out = String::from("/// The SDK files the binary carries (see build.rs `embed_sdk`).\npub const SDK_FILES: &[(&str, &[u8])] = &[\n");
    for path in &files {
        let relative = path.strip_prefix(workspace).unwrap().to_string_lossy().replace('\\', "/");
        writeln!(out, "    ({relative:?}, include_bytes!({path:?})),").unwrap();
    }
    out.push_str("];\n");
    std::fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("sdk_files.rs"), out).unwrap();
}

/// The `version = "..."` of a crate manifest's `[package]`.
fn package_version(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).unwrap();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("version = \"")?.strip_suffix('"').map(str::to_string))
        .unwrap_or_else(|| panic!("no version in {}", manifest.display()))
}
