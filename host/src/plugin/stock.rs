//! The stock plugins (filter, projection ...), embedded in the binary at build time.

/// A stock plugin embedded in the binary.
#[derive(Debug)]
pub struct StockPlugin {
    /// `namespace/name`.
    pub name: &'static str,
    /// Its semver version.
    pub version: &'static str,
    /// The component.
    pub bytes: &'static [u8],
    /// Its `plugin.toml`.
    pub manifest: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/stock_plugins.rs"));

/// The stock plugin `name` if its version matches `requirement`.
pub fn find(name: &str, requirement: &semver::VersionReq) -> Option<&'static StockPlugin> {
    ALL.iter().find(|p| p.name == name && semver::Version::parse(p.version).is_ok_and(|v| requirement.matches(&v)))
}

/// The versions of stock plugin `name`.
pub fn versions(name: &str) -> Vec<String> {
    ALL.iter().filter(|p| p.name == name).map(|p| p.version.to_string()).collect()
}
