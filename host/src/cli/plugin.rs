//! `meshhost plugin ...`: the registry from the command line.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use super::common::CliError;
use crate::config::Problems;
use crate::plugin::PluginEngine;
use crate::registry::{Manifest, Published, Registry};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Publish a component under the name and version of its manifest.
    Publish {
        /// The component (.wasm).
        component: PathBuf,
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
        /// The plugin manifest; default: plugin.toml beside the component.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Publish the stock plugins built into this meshhost.
    PublishStock {
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
    },
    /// List the plugins and versions in a registry.
    List {
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
    },
    /// Show a plugin's versions, digests, sizes, WIT version, exports and options.
    Inspect {
        /// NAMESPACE/NAME, or NAMESPACE/NAME@REQUIREMENT for the version it resolves to.
        plugin: String,
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
    },
    /// Recompute every digest in a registry; exit 1 on any mismatch.
    Verify {
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
    },
    /// Create a plugin project: manifest, example processor, fixture, build command.
    New {
        /// NAMESPACE/NAME (or NAME, for local/NAME).
        name: String,
        #[arg(long, value_enum)]
        lang: crate::authoring::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build a plugin project (Rust, Python or JavaScript) into its component; print where it is.
    Build {
        /// The project directory (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: DIR/<plugin name>.wasm).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run the checks every plugin must pass, then the fixtures in DIR (see README).
    Test {
        /// The component (.wasm).
        component: PathBuf,
        /// A directory of fixture files (*.json): config + input records → expected outputs.
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// Yank NAME@VERSION: new resolutions skip it, existing lock files still load it.
    Yank {
        /// NAMESPACE/NAME@VERSION (exact).
        plugin: String,
        #[arg(long, env = "MESHHOST_REGISTRY")]
        registry: PathBuf,
        /// Un-yank instead.
        #[arg(long)]
        undo: bool,
    },
}

pub fn execute(command: PluginCommand) -> Result<(), CliError> {
    match command {
        PluginCommand::Publish { component, registry, manifest } => {
            let manifest_path = manifest.unwrap_or_else(|| component.with_file_name("plugin.toml"));
            let manifest_text = std::fs::read_to_string(&manifest_path).map_err(|e| {
                invalid(format!("cannot read the manifest {}: {e} (give one with --manifest)", manifest_path.display()))
            })?;
            let manifest =
                Manifest::parse(&manifest_text).map_err(|e| invalid(format!("{}: {e}", manifest_path.display())))?;
            let bytes = std::fs::read(&component).with_context(|| format!("cannot read {}", component.display()))?;
            publish(&registry, &bytes, manifest)
        }
        PluginCommand::PublishStock { registry } => {
            for stock in crate::plugin::stock::ALL {
                let manifest = Manifest::parse(stock.manifest).map_err(invalid)?;
                publish(&registry, stock.bytes, manifest)?;
            }
            Ok(())
        }
        PluginCommand::List { registry } => {
            let registry = Registry::open(&registry);
            for name in registry.names() {
                let versions = registry.versions(&name).map_err(invalid)?;
                let list: Vec<String> = versions
                    .iter()
                    .map(|v| if v.yanked { format!("{} (yanked)", v.version) } else { v.version.to_string() })
                    .collect();
                println!("{name} {}", list.join(", "));
            }
            Ok(())
        }
        PluginCommand::Inspect { plugin, registry } => {
            let registry = Registry::open(&registry);
            let (name, requirement) = match plugin.split_once('@') {
                Some((name, requirement)) => (
                    name,
                    Some(
                        semver::VersionReq::parse(requirement)
                            .map_err(|e| invalid(format!("bad version requirement {requirement:?}: {e}")))?,
                    ),
                ),
                None => (plugin.as_str(), None),
            };
            let versions = registry.versions(name).map_err(invalid)?;
            if versions.is_empty() {
                return Err(invalid(format!("no plugin named {name:?} in registry {}", registry.root().display())));
            }
            let shown: Vec<_> = match &requirement {
                None => versions.iter().collect(),
                Some(requirement) => {
                    let found = registry.find(name, requirement).map_err(invalid)?.ok_or_else(|| {
                        let list: Vec<String> = versions.iter().map(|v| v.version.to_string()).collect();
                        invalid(format!("no version of {name} matches {requirement}; available: {}", list.join(", ")))
                    })?;
                    versions.iter().filter(|v| v.version == found.version).collect()
                }
            };
            println!("{name}");
            for version in shown {
                let m = &version.manifest;
                println!("  {}{}", version.version, if version.yanked { " (yanked)" } else { "" });
                if let Some(description) = &m.manifest.description {
                    println!("    description: {description}");
                }
                println!("    digest: {}", m.digest);
                println!("    size: {} bytes", m.size);
                println!("    wit: {}", m.wit);
                println!("    exports: {}", m.exports.join(", "));
                if !m.manifest.options.is_empty() {
                    println!("    options:");
                    for (option, doc) in &m.manifest.options {
                        let kind = doc.kind.as_deref().unwrap_or("any");
                        let required = if doc.required == Some(true) { ", required" } else { "" };
                        println!("      {option} ({kind}{required}): {}", doc.description.as_deref().unwrap_or(""));
                    }
                }
            }
            Ok(())
        }
        PluginCommand::Verify { registry } => {
            let registry = Registry::open(&registry);
            let problems = registry.verify();
            for problem in &problems {
                eprintln!("{problem}");
            }
            if problems.is_empty() {
                println!("{}: every digest matches", registry.root().display());
                Ok(())
            } else {
                Err(CliError::Failed(anyhow::anyhow!("{} plugin version(s) do not match their digest", problems.len())))
            }
        }
        PluginCommand::New { name, lang, dir } => {
            let dir = crate::authoring::new_plugin(&name, lang, dir.as_deref()).map_err(authoring)?;
            println!(
                "created {}: `meshhost plugin build {}` builds it (see its README.md)",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        PluginCommand::Build { dir, output } => {
            let built = crate::authoring::build(&dir, output.as_deref()).map_err(authoring)?;
            println!(
                "built {} ({} plugin, {:.1} MB)",
                built.component.display(),
                built.lang.label(),
                built.size as f64 / 1e6
            );
            Ok(())
        }
        PluginCommand::Test { component, fixtures } => {
            let checks = super::testkit::run(&component, fixtures.as_deref())?;
            let mut failed = 0;
            for check in &checks {
                match (&check.outcome, check.skipped) {
                    (_, true) => println!("skip  {}", check.name),
                    (Ok(()), false) => println!("ok    {}", check.name),
                    (Err(why), false) => {
                        failed += 1;
                        println!("FAIL  {}\n      {}", check.name, why.replace('\n', "\n      "));
                    }
                }
            }
            let passed = checks.iter().filter(|c| c.outcome.is_ok() && !c.skipped).count();
            println!("{passed} passed, {failed} failed");
            if failed > 0 {
                return Err(CliError::Failed(anyhow::anyhow!("{} failed {failed} check(s)", component.display())));
            }
            Ok(())
        }
        PluginCommand::Yank { plugin, registry, undo } => {
            let (name, version) =
                plugin.split_once('@').ok_or_else(|| invalid(format!("{plugin:?}: give NAMESPACE/NAME@VERSION")))?;
            let version =
                semver::Version::parse(version).map_err(|e| invalid(format!("bad version {version:?}: {e}")))?;
            Registry::open(&registry).yank(name, &version, undo).map_err(invalid)?;
            println!("{name}@{version} {}", if undo { "un-yanked" } else { "yanked" });
            Ok(())
        }
    }
}

fn publish(registry: &Path, bytes: &[u8], manifest: Manifest) -> Result<(), CliError> {
    let engine = PluginEngine::new()?;
    let label = format!("{}@{}", manifest.name, manifest.version);
    match Registry::open(registry).publish(&engine, bytes, manifest).map_err(invalid)? {
        Published::New { digest } => println!("published {label} ({digest})"),
        Published::AlreadyThere { digest } => {
            println!("{label} is already published with the same bytes ({digest}); nothing to do")
        }
    }
    Ok(())
}

/// A project that is not one is invalid input (exit 2); a missing tool or a failed build is a
/// failure (exit 1).
fn authoring(error: crate::authoring::AuthoringError) -> CliError {
    match error {
        crate::authoring::AuthoringError::Project(message) => invalid(message),
        other => CliError::Failed(other.into()),
    }
}

fn invalid(message: impl ToString) -> CliError {
    CliError::Invalid(Problems::one("", message.to_string()))
}
