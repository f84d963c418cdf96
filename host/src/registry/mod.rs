//! Plugins by name: the registry directory, the stock plugins built into meshhost, and lock files.
//!
//! A registry is a directory a team shares, laid out as
//! `<namespace>/<name>/<version>/{plugin.wasm, plugin.toml}`; `plugin.toml` records the
//! manifest with the component's sha256 digest, size, WIT version and exports. A version
//! directory appears at once (staged, then renamed) and never changes: publishing the same
//! version with other bytes is refused. A `yanked` file in it keeps new resolutions away while
//! lock files that name it still load it.
//!
//! `uses: namespace/name@requirement` picks the highest matching, non-yanked version in the
//! registry, else a matching stock plugin. With a lock file beside the pipeline, the locked
//! version is loaded and its digest checked instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use semver::{Version, VersionReq};
use sha2::{Digest, Sha256};

use crate::config::{PluginRef, PluginTarget};
use crate::plugin::PluginEngine;

pub mod lock;
pub mod manifest;

pub use lock::{LockFile, LockedPlugin};
pub use manifest::{Lang, Manifest, OptionDoc, PublishedManifest};

/// The file names inside a version directory.
const COMPONENT_FILE: &str = "plugin.wasm";
const MANIFEST_FILE: &str = "plugin.toml";
const YANKED_FILE: &str = "yanked";

/// Plugin names are checked where `uses:` is parsed; publishing checks them the same way.
pub use crate::config::check_plugin_name as check_name;

/// Why a registry operation or a plugin resolution failed. The messages are for people: they
/// name the plugin, the version and the file involved.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A plugin name that is not `namespace/name`.
    #[error("{0}")]
    BadName(String),
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    /// A manifest or lock file that cannot be parsed.
    #[error("{}: {message}", path.display())]
    BadFile { path: PathBuf, message: String },
    #[error("bad version {version:?} in the manifest: {error}")]
    BadVersion { version: String, error: semver::Error },
    /// Bytes that are not a meshhost processor component.
    #[error(transparent)]
    NotAComponent(#[from] crate::plugin::PluginError),
    #[error("{name}@{version} is corrupt: its recorded digest is {recorded} but {} has {actual}", path.display())]
    Corrupt { name: String, version: String, recorded: String, path: PathBuf, actual: String },
    #[error("{name}@{version} is already published with digest {digest}; a published version never changes: publish a new version")]
    VersionTaken { name: String, version: String, digest: String },
    #[error("{name}@{version} is not in the registry{available}")]
    NoSuchVersion { name: String, version: String, available: String },
    #[error("no plugin named {name:?} in {place}; stock plugins are {stock}")]
    NoSuchPlugin { name: String, place: String, stock: String },
    #[error("no version of {name} matches {requirement}{available}")]
    NoMatch { name: String, requirement: VersionReq, available: String },
    /// The lock file does not fit the pipeline or the registry.
    #[error("{0}")]
    Lock(String),
}

type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::plugin::hex(&Sha256::digest(bytes)))
}

/// A registry directory.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

/// One published version.
#[derive(Debug, Clone)]
pub struct PublishedVersion {
    pub version: Version,
    pub dir: PathBuf,
    pub manifest: PublishedManifest,
    pub yanked: bool,
}

impl PublishedVersion {
    /// The component's bytes, checked against the recorded digest.
    pub fn read_component(&self) -> Result<Vec<u8>> {
        let path = self.dir.join(COMPONENT_FILE);
        let bytes = std::fs::read(&path).map_err(|error| RegistryError::Read { path: path.clone(), error })?;
        let actual = digest(&bytes);
        if actual != self.manifest.digest {
            return Err(RegistryError::Corrupt {
                name: self.manifest.manifest.name.clone(),
                version: self.version.to_string(),
                recorded: self.manifest.digest.clone(),
                path,
                actual,
            });
        }
        Ok(bytes)
    }
}

/// What `publish` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Published {
    /// A new version was written.
    New { digest: String },
    /// The same bytes were already published under this version: nothing to do.
    AlreadyThere { digest: String },
}

impl Registry {
    pub fn open(root: &Path) -> Registry {
        Registry { root: root.to_path_buf() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every `namespace/name` in the registry, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for namespace in read_dir_names(&self.root) {
            for name in read_dir_names(&self.root.join(&namespace)) {
                let full = format!("{namespace}/{name}");
                if check_name(&full).is_ok() {
                    names.push(full);
                }
            }
        }
        names.sort();
        names
    }

    /// Every published version of `name`, oldest first. A version directory whose manifest
    /// cannot be read is reported as an error.
    pub fn versions(&self, name: &str) -> Result<Vec<PublishedVersion>> {
        check_name(name).map_err(RegistryError::BadName)?;
        let mut versions = Vec::new();
        for entry in read_dir_names(&self.root.join(name)) {
            let Ok(version) = Version::parse(&entry) else { continue };
            let dir = self.root.join(name).join(&entry);
            let manifest_path = dir.join(MANIFEST_FILE);
            let text = std::fs::read_to_string(&manifest_path)
                .map_err(|error| RegistryError::Read { path: manifest_path.clone(), error })?;
            let manifest = PublishedManifest::parse(&text)
                .map_err(|message| RegistryError::BadFile { path: manifest_path.clone(), message })?;
            let yanked = dir.join(YANKED_FILE).exists();
            versions.push(PublishedVersion { version, dir, manifest, yanked });
        }
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(versions)
    }

    /// The highest non-yanked version of `name` matching `requirement`.
    pub fn find(&self, name: &str, requirement: &VersionReq) -> Result<Option<PublishedVersion>> {
        Ok(self.versions(name)?.into_iter().rev().find(|v| !v.yanked && requirement.matches(&v.version)))
    }

    /// Exactly `name@version`, yanked or not.
    pub fn exact(&self, name: &str, version: &Version) -> Result<Option<PublishedVersion>> {
        Ok(self.versions(name)?.into_iter().find(|v| &v.version == version))
    }

    /// Publish a component under its manifest's name and version. The component must export
    /// the meshhost processor interface; the version directory is staged and renamed into
    /// place, so a killed publish leaves nothing half-written.
    pub fn publish(&self, engine: &PluginEngine, component: &[u8], manifest: Manifest) -> Result<Published> {
        check_name(&manifest.name).map_err(RegistryError::BadName)?;
        let version = Version::parse(&manifest.version)
            .map_err(|error| RegistryError::BadVersion { version: manifest.version.clone(), error })?;
        let info = engine.describe(&format!("{}@{version}", manifest.name), component)?;
        let digest = digest(component);

        let final_dir = self.root.join(&manifest.name).join(version.to_string());
        if let Some(existing) = self.exact(&manifest.name, &version)? {
            return if existing.manifest.digest == digest {
                Ok(Published::AlreadyThere { digest })
            } else {
                Err(RegistryError::VersionTaken {
                    name: manifest.name,
                    version: version.to_string(),
                    digest: existing.manifest.digest,
                })
            };
        }

        let published = PublishedManifest {
            manifest,
            digest: digest.clone(),
            size: component.len() as u64,
            wit: info.wit,
            exports: info.exports,
        };
        let staging_root = self.root.join(".staging");
        let staging = staging_root.join(format!(
            "{}-{version}-{}-{}",
            published.manifest.name.replace('/', "-"),
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
        ));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&staging)?;
            write_synced(&staging.join(COMPONENT_FILE), component)?;
            write_synced(&staging.join(MANIFEST_FILE), published.to_toml().as_bytes())?;
            std::fs::create_dir_all(final_dir.parent().unwrap())?;
            std::fs::rename(&staging, &final_dir)
        };
        if let Err(error) = write() {
            let _ = std::fs::remove_dir_all(&staging);
            // Someone may have published the same version at the same moment.
            if let Ok(Some(existing)) = self.exact(&published.manifest.name, &version) {
                if existing.manifest.digest == digest {
                    return Ok(Published::AlreadyThere { digest });
                }
            }
            return Err(RegistryError::Write { path: final_dir, error });
        }
        Ok(Published::New { digest })
    }

    /// Mark `name@version` yanked (or, with `undo`, not yanked).
    pub fn yank(&self, name: &str, version: &Version, undo: bool) -> Result<()> {
        let published = self.exact(name, version)?.ok_or_else(|| RegistryError::NoSuchVersion {
            name: name.to_string(),
            version: version.to_string(),
            available: self.available(name),
        })?;
        let marker = published.dir.join(YANKED_FILE);
        let result = if undo {
            match std::fs::remove_file(&marker) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        } else {
            std::fs::write(&marker, b"")
        };
        result.map_err(|error| RegistryError::Write { path: marker, error })
    }

    /// Recompute every digest; one problem per corrupt or unreadable version.
    pub fn verify(&self) -> Vec<RegistryError> {
        let mut problems = Vec::new();
        for name in self.names() {
            match self.versions(&name) {
                Ok(versions) => {
                    for version in versions {
                        if let Err(problem) = version.read_component() {
                            problems.push(problem);
                        }
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        problems
    }

    /// `; available: 1.0.0, 1.1.0 (yanked)` for messages, or nothing.
    fn available(&self, name: &str) -> String {
        match self.versions(name) {
            Ok(versions) if !versions.is_empty() => {
                let list: Vec<String> = versions
                    .iter()
                    .map(|v| if v.yanked { format!("{} (yanked)", v.version) } else { v.version.to_string() })
                    .collect();
                format!("; available: {}", list.join(", "))
            }
            _ => String::new(),
        }
    }
}

fn read_dir_names(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| !name.starts_with('.'))
        .collect()
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A plugin picked for a `uses:`.
#[derive(Debug, Clone)]
pub struct ResolvedPlugin {
    /// `namespace/name@version`, or the file path, for messages.
    pub label: String,
    /// The component's bytes.
    pub bytes: Arc<Vec<u8>>,
    /// How a lock file records it.
    pub locked: LockedPlugin,
}

/// Finds the plugin behind each `uses:` of one pipeline: the registry directory (else the stock
/// plugins), or exactly what the pipeline's lock file names when it has one.
#[derive(Debug, Clone, Default)]
pub struct PluginResolver {
    registry: Option<PathBuf>,
    lock: Option<LockFile>,
}

impl PluginResolver {
    /// Resolve by semver requirement alone, ignoring any lock file (what `meshhost lock` does).
    pub fn unlocked(registry: Option<PathBuf>) -> PluginResolver {
        PluginResolver { registry, lock: None }
    }

    /// Resolve for the pipeline file at `pipeline`: through its lock file when there is one.
    pub fn for_pipeline(pipeline: &Path, registry: Option<PathBuf>) -> Result<PluginResolver> {
        Ok(PluginResolver { registry, lock: LockFile::read_for(pipeline)? })
    }

    /// A resolver that reads `lock` rather than the pipeline's lock file.
    pub fn locked(registry: Option<PathBuf>, lock: LockFile) -> PluginResolver {
        PluginResolver { registry, lock: Some(lock) }
    }

    /// The pipeline's lock file, if it has one.
    pub fn lock_file(&self) -> Option<&LockFile> {
        self.lock.as_ref()
    }

    /// Find the plugin `uses` names.
    pub fn resolve(&self, uses: &PluginRef) -> Result<ResolvedPlugin> {
        let registry = self.registry.as_deref();
        match &self.lock {
            Some(lock) => {
                let entry = lock.entry(&uses.text).ok_or_else(|| {
                    RegistryError::Lock(format!(
                        "the lock file has no entry for {:?}; run `meshhost lock` to update it",
                        uses.text
                    ))
                })?;
                resolve_locked(entry, &uses.target, registry)
            }
            None => resolve_fresh(&uses.text, &uses.target, registry),
        }
    }
}

fn resolve_fresh(uses: &str, plugin: &PluginTarget, registry: Option<&Path>) -> Result<ResolvedPlugin> {
    match plugin {
        PluginTarget::Path(path) => {
            let bytes = std::fs::read(path).map_err(|error| RegistryError::Read { path: path.clone(), error })?;
            let locked = LockedPlugin {
                uses: uses.to_string(),
                name: None,
                version: None,
                source: "path".into(),
                digest: digest(&bytes),
            };
            Ok(ResolvedPlugin { label: path.display().to_string(), bytes: bytes.into(), locked })
        }
        PluginTarget::Registry { name, requirement } => {
            let mut available = String::new();
            if let Some(root) = registry {
                let registry = Registry::open(root);
                if let Some(found) = registry.find(name, requirement)? {
                    let bytes = found.read_component()?;
                    return Ok(from_registry(uses, name, &found.version, bytes));
                }
                available = registry.available(name);
            }
            if let Some(stock) = crate::plugin::stock::find(name, requirement) {
                return Ok(from_stock(uses, stock));
            }
            let stock_versions = crate::plugin::stock::versions(name);
            if available.is_empty() && stock_versions.is_empty() {
                let stock: Vec<&str> = crate::plugin::stock::ALL.iter().map(|p| p.name).collect();
                let place = match registry {
                    Some(root) => format!("registry {}", root.display()),
                    None => "the stock plugins (no registry configured)".to_string(),
                };
                Err(RegistryError::NoSuchPlugin { name: name.clone(), place, stock: stock.join(", ") })
            } else {
                let stock = if stock_versions.is_empty() {
                    String::new()
                } else {
                    format!("; stock: {}", stock_versions.join(", "))
                };
                let available = format!("{available}{stock}");
                Err(RegistryError::NoMatch { name: name.clone(), requirement: requirement.clone(), available })
            }
        }
    }
}

fn resolve_locked(entry: &LockedPlugin, plugin: &PluginTarget, registry: Option<&Path>) -> Result<ResolvedPlugin> {
    let lock = |message: String| RegistryError::Lock(message);
    let resolved = match (entry.source.as_str(), plugin) {
        ("path", PluginTarget::Path(_)) => resolve_fresh(&entry.uses, plugin, registry)?,
        ("registry" | "stock", PluginTarget::Registry { name, .. }) => {
            let version = entry
                .version
                .as_deref()
                .and_then(|v| Version::parse(v).ok())
                .ok_or_else(|| lock(format!("the lock entry for {:?} has no valid version", entry.uses)))?;
            if entry.source == "stock" {
                let stock = crate::plugin::stock::ALL
                    .iter()
                    .find(|p| p.name == name && p.version == version.to_string())
                    .ok_or_else(|| {
                        lock(format!(
                            "the lock file wants stock plugin {name}@{version}, which this meshhost does not have"
                        ))
                    })?;
                from_stock(&entry.uses, stock)
            } else {
                let root = registry.ok_or_else(|| {
                    lock(format!("the lock file wants {name}@{version} from a registry, but no registry is configured"))
                })?;
                // Locked versions load even when yanked: yanking only stops new resolutions.
                let found = Registry::open(root).exact(name, &version)?.ok_or_else(|| {
                    lock(format!("the lock file wants {name}@{version}, which is not in registry {}", root.display()))
                })?;
                let path = found.dir.join(COMPONENT_FILE);
                let bytes = std::fs::read(&path).map_err(|error| RegistryError::Read { path, error })?;
                from_registry(&entry.uses, name, &version, bytes)
            }
        }
        _ => {
            return Err(lock(format!(
                "the lock entry for {:?} does not match the pipeline; run `meshhost lock`",
                entry.uses
            )))
        }
    };
    if resolved.locked.digest != entry.digest {
        return Err(lock(format!(
            "plugin {} does not match the lock file: expected digest {}, actual {}",
            resolved.label, entry.digest, resolved.locked.digest
        )));
    }
    Ok(resolved)
}

fn from_registry(uses: &str, name: &str, version: &Version, bytes: Vec<u8>) -> ResolvedPlugin {
    let locked = LockedPlugin {
        uses: uses.to_string(),
        name: Some(name.to_string()),
        version: Some(version.to_string()),
        source: "registry".into(),
        digest: digest(&bytes),
    };
    ResolvedPlugin { label: format!("{name}@{version}"), bytes: bytes.into(), locked }
}

fn from_stock(uses: &str, stock: &crate::plugin::stock::StockPlugin) -> ResolvedPlugin {
    let locked = LockedPlugin {
        uses: uses.to_string(),
        name: Some(stock.name.to_string()),
        version: Some(stock.version.to_string()),
        source: "stock".into(),
        digest: digest(stock.bytes),
    };
    ResolvedPlugin {
        label: format!("{}@{} (stock)", stock.name, stock.version),
        bytes: Arc::new(stock.bytes.to_vec()),
        locked,
    }
}
