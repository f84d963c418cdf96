//! `meshhost plugin build [DIR] [-o OUT.wasm]`: the component of a plugin project, whatever its
//! language. The language comes from `[build] lang` of the project's `plugin.toml` (what
//! `plugin new` writes), else from its files (`Cargo.toml`, `app.py`, `app.js`). The component
//! is written to OUT, by default `<DIR>/<plugin name>.wasm`, so every language ends the same way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{sdk, tools, AuthoringError, Lang};
use crate::registry::Manifest;

/// A built component.
#[derive(Debug)]
pub struct Built {
    pub lang: Lang,
    pub component: PathBuf,
    pub size: u64,
}

/// Build the plugin project in `dir` into `output` (default `<dir>/<name>.wasm`).
pub fn build(dir: &Path, output: Option<&Path>) -> Result<Built, AuthoringError> {
    let project = Project::read(dir)?;
    let component = match output {
        Some(path) => std::env::current_dir().map(|cwd| cwd.join(path)).map_err(AuthoringError::io(path))?,
        None => dir.join(format!("{}.wasm", project.name)),
    };
    let unpacked = sdk::unpacked()?;
    match project.lang {
        Lang::Rust => build_rust(dir, &component)?,
        Lang::Python => {
            let tools = tools::componentize_py()?;
            let mut command = Command::new("python3");
            command
                .arg(unpacked.join("sdk/python/build.py"))
                .arg(project.source(dir)?)
                .arg("-o")
                .arg(&component)
                .arg("--wit")
                .arg(unpacked.join("wit"))
                .arg("--quiet")
                .env("MESHHOST_SDK_TOOLS", tools);
            run_build(command, dir, Lang::Python)?;
        }
        Lang::Js => {
            let sdk_js = unpacked.join("sdk/js");
            tools::js_tools(&sdk_js)?;
            let mut command = Command::new("node");
            command
                .arg(sdk_js.join("build.mjs"))
                .arg(project.source(dir)?)
                .arg("-o")
                .arg(&component)
                .arg("--wit")
                .arg(unpacked.join("wit"))
                .arg("--quiet");
            if let Some(weval) = tools::weval() {
                command.arg("--weval").arg(weval);
            }
            run_build(command, dir, Lang::Js)?;
        }
    }
    let size = std::fs::metadata(&component).map_err(AuthoringError::io(&component))?.len();
    Ok(Built { lang: project.lang, component, size })
}

/// What `build` needs to know about a project directory.
struct Project {
    lang: Lang,
    /// The plugin's short name (`upper` of `acme/upper`): the component's file name.
    name: String,
    source: Option<String>,
}

impl Project {
    fn read(dir: &Path) -> Result<Project, AuthoringError> {
        if !dir.is_dir() {
            return Err(AuthoringError::Project(format!("{} is not a directory", dir.display())));
        }
        let manifest_path = dir.join("plugin.toml");
        let manifest = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => Some(
                Manifest::parse(&text)
                    .map_err(|e| AuthoringError::Project(format!("{}: {e}", manifest_path.display())))?,
            ),
            Err(_) => None,
        };
        let spec = manifest.as_ref().and_then(|m| m.build.clone());
        let lang = match spec.as_ref().map(|s| s.lang) {
            Some(lang) => lang,
            None if dir.join("Cargo.toml").is_file() => Lang::Rust,
            None if dir.join("app.py").is_file() => Lang::Python,
            None if dir.join("app.js").is_file() => Lang::Js,
            None => {
                return Err(AuthoringError::Project(format!(
                    "{} is not a plugin project: no `[build] lang` in plugin.toml and no Cargo.toml, app.py or app.js \
                     (`meshhost plugin new` creates one)",
                    dir.display()
                )))
            }
        };
        let name = match &manifest {
            Some(m) => m.name.rsplit('/').next().unwrap_or(&m.name).to_string(),
            None => dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "plugin".to_string()),
        };
        Ok(Project { lang, name, source: spec.and_then(|s| s.source) })
    }

    /// The processor's source file of a Python or JavaScript project.
    fn source(&self, dir: &Path) -> Result<PathBuf, AuthoringError> {
        let default = if self.lang == Lang::Python { "app.py" } else { "app.js" };
        let path = dir.join(self.source.as_deref().unwrap_or(default));
        if !path.is_file() {
            return Err(AuthoringError::Project(format!(
                "{} does not exist (set `[build] source` in plugin.toml to the processor's file)",
                path.display()
            )));
        }
        Ok(path)
    }
}

/// Run a language's build script; its output goes to the terminal as it comes.
fn run_build(mut command: Command, dir: &Path, lang: Lang) -> Result<(), AuthoringError> {
    let (tool, fix) = match lang {
        Lang::Python => ("python3", "install Python 3.10 or newer"),
        _ => ("node", "install Node.js 20 or newer"),
    };
    let status = command.current_dir(dir).status().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => AuthoringError::ToolMissing { tool, lang: lang.label(), fix: fix.to_string() },
        _ => AuthoringError::Build { lang: lang.label(), detail: error.to_string() },
    })?;
    if !status.success() {
        return Err(AuthoringError::Build { lang: lang.label(), detail: format!("{tool} exited with {status}") });
    }
    Ok(())
}

/// `cargo build --release --target wasm32-wasip2`, then the `cdylib` it produced copied to
/// `component`.
fn build_rust(dir: &Path, component: &Path) -> Result<(), AuthoringError> {
    tools::wasm_target(dir)?;
    let child = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| AuthoringError::ToolMissing {
            tool: "cargo",
            lang: "Rust",
            fix: format!("install Rust (https://rustup.rs): {error}"),
        })?;
    let output = child.wait_with_output().map_err(AuthoringError::io(dir))?;
    if !output.status.success() {
        return Err(AuthoringError::Build { lang: "Rust", detail: format!("cargo exited with {}", output.status) });
    }
    // The last compiler artifact with a .wasm file: the project's own cdylib.
    let built = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .flat_map(|message| {
            message["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .rfind(|file| file.extension().is_some_and(|ext| ext == "wasm"))
        .ok_or_else(|| AuthoringError::Build {
            lang: "Rust",
            detail: "cargo built no .wasm: is `crate-type = [\"cdylib\"]` in [lib] of Cargo.toml?".to_string(),
        })?;
    if let Some(parent) = component.parent() {
        std::fs::create_dir_all(parent).map_err(AuthoringError::io(parent))?;
    }
    std::fs::copy(&built, component).map_err(AuthoringError::io(component))?;
    Ok(())
}
