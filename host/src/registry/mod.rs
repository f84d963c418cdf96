//! Finding plugins: the registry directory, and the stock plugins built into meshhost.
//!
//! A registry is a directory laid out as `<namespace>/<name>/<version>/plugin.wasm`. A `uses:`
//! of `namespace/name@requirement` picks the highest version that matches and is not yanked (a
//! `yanked` file beside `plugin.wasm` marks it). Stock plugins (`mesh/filter`, ...) are built into
//! the binary, so they resolve on a fresh clone without a publish step; a registry version of
//! the same name wins when it matches.

use std::path::{Path, PathBuf};

use crate::config::PluginRef;

/// A plugin picked for a `uses:`.
#[derive(Debug, Clone)]
pub struct ResolvedPlugin {
    /// `namespace/name@version`, or the file path, for messages.
    pub label: String,
    /// The component's bytes.
    pub bytes: std::sync::Arc<Vec<u8>>,
}

/// Check a `namespace/name`: two parts of lowercase letters, digits, `-` and `_`, so a name can
/// never reach outside the registry directory.
pub fn check_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    let valid_part = |part: &str| {
        !part.is_empty()
            && part.len() <= 64
            && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && !part.starts_with('-')
    };
    if parts.len() != 2 || !parts.iter().all(|p| valid_part(p)) {
        return Err(format!(
            "bad plugin name {name:?}: expected NAMESPACE/NAME, each of lowercase letters, digits, '-' and '_'"
        ));
    }
    Ok(())
}

/// Find the plugin a `uses:` names.
pub fn resolve(plugin: &PluginRef, registry: Option<&Path>) -> Result<ResolvedPlugin, String> {
    match plugin {
        PluginRef::Path(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Ok(ResolvedPlugin { label: path.display().to_string(), bytes: bytes.into() })
        }
        PluginRef::Registry { name, requirement } => {
            let mut available = Vec::new();
            if let Some(registry) = registry {
                let versions = registry_versions(registry, name);
                if let Some((version, path)) = versions
                    .iter()
                    .filter(|(version, path)| requirement.matches(version) && !path.with_file_name("yanked").exists())
                    .max_by(|a, b| a.0.cmp(&b.0))
                {
                    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    return Ok(ResolvedPlugin { label: format!("{name}@{version}"), bytes: bytes.into() });
                }
                available.extend(versions.into_iter().map(|(v, _)| v.to_string()));
            }
            if let Some(stock) = crate::plugin::stock::find(name, requirement) {
                return Ok(ResolvedPlugin {
                    label: format!("{name}@{} (stock)", stock.version),
                    bytes: std::sync::Arc::new(stock.bytes.to_vec()),
                });
            }
            available.extend(crate::plugin::stock::versions(name));
            if available.is_empty() {
                let stock: Vec<String> = crate::plugin::stock::ALL.iter().map(|p| p.name.to_string()).collect();
                Err(format!(
                    "no plugin named {name:?} in {}; stock plugins are {}",
                    registry.map(|r| format!("registry {}", r.display())).unwrap_or_else(|| "the stock plugins (no registry configured)".into()),
                    stock.join(", ")
                ))
            } else {
                Err(format!("no version of {name} matches {requirement}; available: {}", available.join(", ")))
            }
        }
    }
}

/// Every version of `name` in the registry, with the path of its component.
fn registry_versions(registry: &Path, name: &str) -> Vec<(semver::Version, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(registry.join(name)) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = semver::Version::parse(entry.file_name().to_str()?).ok()?;
            let path = entry.path().join("plugin.wasm");
            path.is_file().then_some((version, path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_registry() {
        for bad in ["../x", "/abs", "a/b/c", "a", "a/../b", "A/b", "a/", "a/.b"] {
            assert!(check_name(bad).is_err(), "{bad} should be refused");
        }
        assert!(check_name("mesh/filter").is_ok());
        assert!(check_name("acme/pii-mask_2").is_ok());
    }
}
