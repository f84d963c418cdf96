//! `plugin.toml`: what a plugin says about itself, and what the registry records on publish.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The manifest a plugin author writes beside the crate (or script).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `namespace/name`.
    pub name: String,
    /// Semver version.
    pub version: String,
    /// One paragraph on what the plugin does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Documentation of each `with:` option.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub options: IndexMap<String, OptionDoc>,
    /// How `meshhost plugin build` builds the project (`plugin new` writes it). It concerns the
    /// project, not the component, so the registry does not keep it.
    #[serde(default, skip_serializing)]
    pub build: Option<BuildSpec>,
}

/// A plugin project's language (`[build] lang`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    /// The language's name, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }

    /// Its `[build] lang` in plugin.toml.
    pub fn key(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
        }
    }
}

/// The `[build]` table of a project's `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// The project's language.
    pub lang: Lang,
    /// The processor's source file, for Python (`app.py`) and JavaScript (`app.js`).
    #[serde(default)]
    pub source: Option<String>,
}

/// Documentation of one `with:` option.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptionDoc {
    /// The option's type, informally (`string`, `list<string>` ...).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the registry stores beside each published component (`<version>/plugin.toml`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedManifest {
    #[serde(flatten)]
    pub manifest: Manifest,
    /// `sha256:<hex>` of `plugin.wasm`.
    pub digest: String,
    /// Size of `plugin.wasm` in bytes.
    pub size: u64,
    /// The WIT interface the component exports (`meshhost:processor/processor@0.3.0`).
    pub wit: String,
    /// Every export of the component.
    pub exports: Vec<String>,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, String> {
        toml::from_str(text).map_err(|e| format!("invalid plugin manifest: {e}"))
    }
}

impl PublishedManifest {
    pub fn parse(text: &str) -> Result<PublishedManifest, String> {
        toml::from_str(text).map_err(|e| format!("invalid published manifest: {e}"))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("manifests always serialize")
    }
}
