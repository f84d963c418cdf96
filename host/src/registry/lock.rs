//! The lock file: the exact plugin, version and digest behind each `uses:` of a pipeline, so a
//! pipeline runs the same bytes wherever and whenever it runs (like `Cargo.lock`) — and the
//! schema version each `confluent-avro` source is read as, so that upstream evolution never
//! changes the pipeline's outputs until `meshhost lock --update` says so.

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
    /// One entry per `confluent-avro` source without a `schema:` file.
    #[serde(default, rename = "schema", skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<LockedSchema>,
}

/// The reader schema of one source: a version of its registry subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LockedSchema {
    /// The source's id in the pipeline.
    pub source: String,
    pub subject: String,
    pub version: u32,
    /// The schema's id in the registry (for people; the version decides).
    pub id: u32,
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

    /// The pinned reader schema of source `source` on `subject`, if any.
    pub fn schema(&self, source: &str, subject: &str) -> Option<&LockedSchema> {
        self.schemas.iter().find(|s| s.source == source && s.subject == subject)
    }

    pub fn to_toml(&self) -> String {
        format!(
            "# Written by `meshhost lock`: the exact plugin behind each `uses:` and the schema version each\n# confluent-avro source is read as. Commit it; do not edit (`meshhost lock --update` moves it).\n{}",
            toml::to_string(self).expect("lock files always serialize")
        )
    }
}
