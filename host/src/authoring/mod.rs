//! Writing plugins outside the meshhost checkout: `meshhost plugin new` (a project to start
//! from) and `meshhost plugin build` (its component), for Rust, Python and JavaScript.
//!
//! The binary carries what a build needs (the WIT package, the SDKs and their build scripts,
//! [`sdk`]) and unpacks it into the cache; the language tools (componentize-py, ComponentizeJS,
//! the `wasm32-wasip2` target) are found or installed by [`tools`].

mod build;
mod scaffold;
pub mod sdk;
mod tools;

use std::path::PathBuf;

pub use crate::registry::Lang;
pub use build::{build, Built};
pub use scaffold::new_plugin;

/// Why a plugin could not be scaffolded or built.
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    /// The directory is not a plugin project this command understands.
    #[error("{0}")]
    Project(String),
    /// A tool the build needs is missing and cannot be installed here.
    #[error("{tool} is needed to build {lang} plugins: {fix}")]
    ToolMissing { tool: &'static str, lang: &'static str, fix: String },
    /// Installing a tool failed.
    #[error("cannot install {tool}: {detail}")]
    Install { tool: &'static str, detail: String },
    /// The language's build ran and failed (its own output was shown).
    #[error("the {lang} build failed: {detail}")]
    Build { lang: &'static str, detail: String },
    /// Reading or writing files (the project, the cache).
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl AuthoringError {
    fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> AuthoringError {
        let path = path.into();
        move |source| AuthoringError::Io { path, source }
    }
}
