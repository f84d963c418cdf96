//! The lock file: the exact plugin, version and digest behind each `uses:` of a pipeline, so a
//! pipeline runs the same bytes wherever and whenever it runs (like `Cargo.lock`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `PIPELINE.lock`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    /// Format version of the lock file.
    pub version: u32,
    /// One entry per distinct `uses:`.
    #[serde(default, rename = "plugin")]
    pub plugins: Vec<LockedPlugin>,
}

/// One locked `uses:`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlugin {
    /// The `uses:` text as written in the pipeline.
    pub uses: String,
    /// `namespace/name`, for registry and stock plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The exact version picked, for registry and stock plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where it came from: `registry`, `stock` or `path`.
    pub source: String,
    /// `sha256:<hex>` of the component.
    pub digest: String,
}

impl LockFile {
    /// The lock file of a pipeline file: same directory and stem, extension `.lock`.
    pub fn path_for(pipeline: &Path) -> PathBuf {
        pipeline.with_extension("lock")
    }

    /// Read the lock file of `pipeline`, if there is one.
    pub fn read_for(pipeline: &Path) -> Result<Option<LockFile>, super::RegistryError> {
        let path = Self::path_for(pipeline);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| super::RegistryError::BadFile { path, message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(super::RegistryError::Read { path, error }),
        }
    }

    pub fn entry(&self, uses: &str) -> Option<&LockedPlugin> {
        self.plugins.iter().find(|p| p.uses == uses)
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# Written by `meshhost lock`: the exact plugin behind each `uses:`. Commit it; do not edit.\n{}",
            toml::to_string(self).expect("lock files always serialize")
        )
    }
}
