//! The SDK files this binary carries (listed by `build.rs`), unpacked once into
//! `<cache>/sdk/<version>-<digest>/` with the layout of the checkout: `wit/`, `sdk/python`,
//! `sdk/js`, `sdk/rust`, `sdk/avro` and a workspace `Cargo.toml` for the two Rust crates.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::AuthoringError;

include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// Marks a fully written unpacked SDK (a crash mid-way leaves a directory without it).
const COMPLETE: &str = ".complete";

/// The directory of this binary's SDK, unpacked if it is not yet.
pub fn unpacked() -> Result<PathBuf, AuthoringError> {
    let cache = crate::plugin::cache_root()
        .ok_or_else(|| AuthoringError::Project("no cache directory: set HOME or MESHHOST_CACHE_DIR".to_string()))?;
    let dir = cache.join("sdk").join(format!("{}-{}", env!("CARGO_PKG_VERSION"), &digest()[..12]));
    if dir.join(COMPLETE).is_file() {
        return Ok(dir);
    }
    // Written aside and renamed into place, so two builds at once never see half an SDK.
    let staging = cache.join("sdk").join(format!(".unpacking-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    for (path, bytes) in SDK_FILES {
        let target = staging.join(path);
        let parent = target.parent().expect("SDK paths are relative files");
        std::fs::create_dir_all(parent).map_err(AuthoringError::io(parent))?;
        let bytes = if *path == "Cargo.toml" { sdk_workspace(bytes).into_bytes() } else { bytes.to_vec() };
        std::fs::write(&target, bytes).map_err(AuthoringError::io(&target))?;
    }
    std::fs::write(staging.join(COMPLETE), "").map_err(AuthoringError::io(&staging))?;
    if std::fs::rename(&staging, &dir).is_err() {
        // Another build unpacked it first (or an incomplete copy is in the way: replace it).
        if !dir.join(COMPLETE).is_file() {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::rename(&staging, &dir).map_err(AuthoringError::io(&dir))?;
        }
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(dir)
}

/// The Rust SDK crate in an unpacked SDK (what scaffolded Rust projects depend on by path).
pub fn rust_sdk(unpacked: &Path) -> PathBuf {
    unpacked.join("sdk/rust")
}

/// The checkout's workspace manifest reduced to the two SDK crates: they inherit their edition,
/// license and dependency versions from it, and the checkout's other members are not carried.
fn sdk_workspace(checkout_manifest: &[u8]) -> String {
    let text = std::str::from_utf8(checkout_manifest).expect("Cargo.toml is UTF-8");
    let mut manifest: toml::Table = toml::from_str(text).expect("the checkout's Cargo.toml parses");
    manifest.remove("profile");
    let workspace = manifest.get_mut("workspace").and_then(toml::Value::as_table_mut).expect("a [workspace]");
    workspace.insert("members".into(), toml::Value::Array(vec!["sdk/avro".into(), "sdk/rust".into()]));
    format!("# The meshhost SDK crates, unpacked by `meshhost` (do not edit).\n{}", toml::to_string(&manifest).unwrap())
}

/// sha256 over every carried path and file: a changed SDK unpacks into a new directory.
fn digest() -> String {
    let mut hasher = Sha256::new();
    for (path, bytes) in SDK_FILES {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_carries_the_wit_and_every_sdk() {
        let paths: Vec<&str> = SDK_FILES.iter().map(|(path, _)| *path).collect();
        for needed in [
            "wit/processor.wit",
            "sdk/python/build.py",
            "sdk/python/meshhost_sdk/processor.py",
            "sdk/python/meshhost_sdk/guest.py",
            "sdk/js/build.mjs",
            "sdk/js/meshhost.js",
            "sdk/js/package-lock.json",
            "sdk/rust/Cargo.toml",
            "sdk/rust/src/lib.rs",
            "sdk/avro/src/lib.rs",
        ] {
            assert!(paths.contains(&needed), "{needed} is not carried: {paths:?}");
        }
        assert!(!paths.iter().any(|p| p.contains("node_modules") || p.contains("__pycache__")), "{paths:?}");
    }

    #[test]
    fn the_sdk_workspace_keeps_the_inherited_tables_and_only_the_sdk_members() {
        let (_, manifest) = SDK_FILES.iter().find(|(path, _)| *path == "Cargo.toml").unwrap();
        let reduced: toml::Table = toml::from_str(&sdk_workspace(manifest)).unwrap();
        let workspace = reduced["workspace"].as_table().unwrap();
        assert_eq!(workspace["members"].as_array().unwrap(), &vec![toml::Value::from("sdk/avro"), "sdk/rust".into()]);
        assert!(workspace["package"].get("edition").is_some());
        assert!(workspace["dependencies"].get("wit-bindgen").is_some());
        assert!(!reduced.contains_key("profile"));
    }
}
