//! References inside a pipeline file, parsed once when the file is loaded: `inputs:` entries
//! ([`InputRef`]) and `uses:` values ([`PluginRef`]).

use std::fmt;
use std::path::{Path, PathBuf};

/// A reference to an upstream output: `id` (a source, or a processor's first output port) or
/// `id.port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct InputRef {
    pub id: String,
    pub port: Option<String>,
}

impl InputRef {
    /// Parse `id` or `id.port`.
    pub fn parse(text: &str) -> Result<InputRef, String> {
        let (id, port) = match text.split_once('.') {
            Some((id, port)) => (id, Some(port)),
            None => (text, None),
        };
        if !super::valid_id(id) {
            return Err(format!("bad input {text:?}: expected ID or ID.PORT, the id of letters, digits, '-' and '_'"));
        }
        if port.is_some_and(str::is_empty) {
            return Err(format!("bad input {text:?}: the port after '.' is empty"));
        }
        Ok(InputRef { id: id.to_string(), port: port.map(str::to_string) })
    }
}

impl TryFrom<String> for InputRef {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        InputRef::parse(&text)
    }
}

impl fmt::Display for InputRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.port {
            Some(port) => write!(f, "{}.{}", self.id, port),
            None => f.write_str(&self.id),
        }
    }
}

/// What a `uses:` names, with the text as written (lock files are keyed by it).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct PluginRef {
    /// The `uses:` text as written in the pipeline file.
    pub text: String,
    pub target: PluginTarget,
}

/// Where the plugin of a `uses:` comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginTarget {
    /// `namespace/name@requirement`: the registry, else the stock plugins.
    Registry { name: String, requirement: semver::VersionReq },
    /// A component file. Relative to the pipeline file's directory once the file is loaded
    /// ([`PluginRef::resolve_path`]).
    Path(PathBuf),
}

impl PluginRef {
    /// Parse a `uses:` value; a path is anything ending in `.wasm`.
    pub fn parse(uses: &str) -> Result<PluginRef, String> {
        let target = if uses.ends_with(".wasm") {
            PluginTarget::Path(PathBuf::from(uses))
        } else {
            let (name, requirement) = uses.split_once('@').ok_or_else(|| {
                format!("{uses:?} is neither NAMESPACE/NAME@VERSION-REQUIREMENT nor a path to a .wasm file")
            })?;
            check_plugin_name(name)?;
            let requirement = semver::VersionReq::parse(requirement)
                .map_err(|e| format!("bad version requirement {requirement:?}: {e}"))?;
            PluginTarget::Registry { name: name.to_string(), requirement }
        };
        Ok(PluginRef { text: uses.to_string(), target })
    }

    /// Make a relative component path relative to `base_dir` (the pipeline file's directory).
    pub(super) fn resolve_path(&mut self, base_dir: &Path) {
        if let PluginTarget::Path(path) = &mut self.target {
            *path = base_dir.join(&*path);
        }
    }
}

impl TryFrom<String> for PluginRef {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        PluginRef::parse(&text)
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Check a plugin's `namespace/name`: two parts of lowercase letters, digits, `-` and `_`, so a
/// name can never reach outside the registry directory.
pub fn check_plugin_name(name: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_the_registry() {
        for bad in ["../x", "/abs", "a/b/c", "a", "a/../b", "A/b", "a/", "a/.b", "./a", "a/b\\c"] {
            assert!(check_plugin_name(bad).is_err(), "{bad} should be refused");
        }
        assert!(check_plugin_name("mesh/filter").is_ok());
        assert!(check_plugin_name("acme/pii-mask_2").is_ok());
    }

    #[test]
    fn inputs_parse_into_id_and_port() {
        assert_eq!(InputRef::parse("movies").unwrap(), InputRef { id: "movies".into(), port: None });
        assert_eq!(InputRef::parse("split.odd").unwrap(), InputRef { id: "split".into(), port: Some("odd".into()) });
        assert!(InputRef::parse("a b").is_err());
        assert!(InputRef::parse("split.").is_err());
        assert_eq!(InputRef::parse("split.odd").unwrap().to_string(), "split.odd");
    }

    #[test]
    fn uses_keeps_its_text_and_parses_once() {
        let uses = PluginRef::parse("mesh/filter@0.1").unwrap();
        assert_eq!(uses.text, "mesh/filter@0.1");
        assert!(matches!(&uses.target, PluginTarget::Registry { name, .. } if name == "mesh/filter"));
        let mut path = PluginRef::parse("plugins/x.wasm").unwrap();
        path.resolve_path(Path::new("/p"));
        assert_eq!(path.target, PluginTarget::Path(PathBuf::from("/p/plugins/x.wasm")));
        assert!(PluginRef::parse("mesh/filter").unwrap_err().contains("neither"));
    }
}
