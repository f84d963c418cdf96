//! The language tools a plugin build runs, found or installed on first use:
//! - Python: componentize-py, pinned, in a virtual environment under the tools directory;
//! - JavaScript: ComponentizeJS and rolldown, as the carried `sdk/js/package-lock.json` pins,
//!   installed with `npm ci` once per lock file; and weval, which compiles the component's
//!   JavaScript ahead of time, found here (see [`weval`]) or downloaded by its npm package;
//! - Rust: the `wasm32-wasip2` target, added with rustup when it is missing.
//!
//! The tools directory is `$MESHHOST_TOOLS_DIR`, else `<cache>/tools`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use super::AuthoringError;

/// The componentize-py the Python SDK is tested with (`sdk/install-tools.sh` pins the same).
pub const COMPONENTIZE_PY: &str = "0.25.1";

/// The weval the pinned ComponentizeJS compiles JavaScript ahead of time with (`sdk/js/build.mjs`
/// and `sdk/install-tools.sh` say the same): its AOT cache is made for this version.
pub const WEVAL: &str = "0.5.0";

fn tools_dir() -> Result<PathBuf, AuthoringError> {
    std::env::var_os("MESHHOST_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| crate::plugin::cache_root().map(|cache| cache.join("tools")))
        .ok_or_else(|| AuthoringError::Project("no tools directory: set HOME or MESHHOST_TOOLS_DIR".to_string()))
}

/// Hold this while checking or installing in the tools directory, so two builds started at
/// once (say, by a test suite) do not install into the same place together.
fn install_lock(tools: &Path) -> Result<std::fs::File, AuthoringError> {
    std::fs::create_dir_all(tools).map_err(AuthoringError::io(tools))?;
    let path = tools.join(".install.lock");
    let file = std::fs::File::create(&path).map_err(AuthoringError::io(&path))?;
    file.lock().map_err(AuthoringError::io(&path))?;
    Ok(file)
}

/// Run `command`; a program that is not installed is [`AuthoringError::ToolMissing`].
fn run(command: &mut Command, tool: &'static str, lang: &'static str, fix: &str) -> Result<Output, AuthoringError> {
    command.output().map_err(|error| match error.kind() {
        ErrorKind::NotFound => AuthoringError::ToolMissing { tool, lang, fix: fix.to_string() },
        _ => AuthoringError::Install { tool, detail: error.to_string() },
    })
}

/// The last lines of a failed tool's output: enough to see why, not pages of it.
fn tail(output: &Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// The tools directory whose `venv` holds componentize-py (what `sdk/python/build.py` reads
/// from `MESHHOST_SDK_TOOLS`), installed there when it is not.
pub fn componentize_py() -> Result<PathBuf, AuthoringError> {
    let tools = tools_dir()?;
    let _lock = install_lock(&tools)?;
    let venv = tools.join("venv");
    let installed = Command::new(venv.join("bin/componentize-py")).arg("--version").output();
    if installed
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == format!("componentize-py {COMPONENTIZE_PY}"))
    {
        return Ok(tools);
    }
    eprintln!("meshhost: installing componentize-py {COMPONENTIZE_PY} into {} (once)", venv.display());
    let python_fix = "install Python 3 with its venv module (Debian: apt-get install python3-venv)";
    let created =
        run(Command::new("python3").arg("-m").arg("venv").arg("--clear").arg(&venv), "python3", "Python", python_fix)?;
    if !created.status.success() {
        return Err(AuthoringError::ToolMissing {
            tool: "python3 -m venv",
            lang: "Python",
            fix: format!("{python_fix}\n{}", tail(&created)),
        });
    }
    let pip = run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
        "pip",
        "Python",
        python_fix,
    )?;
    if !pip.status.success() {
        return Err(AuthoringError::Install {
            tool: "componentize-py",
            detail: format!("pip install componentize-py=={COMPONENTIZE_PY} failed (it needs PyPI):\n{}", tail(&pip)),
        });
    }
    Ok(tools)
}

/// Make `node_modules` of the unpacked JavaScript SDK hold its build tools: a link to a
/// directory installed with `npm ci` from the SDK's lock file, shared by SDKs with the same lock.
pub fn js_tools(sdk_js: &Path) -> Result<(), AuthoringError> {
    let node_fix = "install Node.js 20 or newer (with npm)";
    run(Command::new("node").arg("--version"), "node", "JavaScript", node_fix)?;
    let mut hasher = Sha256::new();
    for file in ["package.json", "package-lock.json"] {
        let path = sdk_js.join(file);
        hasher.update(std::fs::read(&path).map_err(AuthoringError::io(&path))?);
    }
    let digest: String = hasher.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect();
    let tools = tools_dir()?;
    let _lock = install_lock(&tools)?;
    let installed = tools.join(format!("js-{digest}"));
    if !installed.join(".complete").is_file() {
        eprintln!("meshhost: installing ComponentizeJS and rolldown into {} (npm ci, once)", installed.display());
        std::fs::create_dir_all(&installed).map_err(AuthoringError::io(&installed))?;
        for file in ["package.json", "package-lock.json"] {
            let target = installed.join(file);
            std::fs::copy(sdk_js.join(file), &target).map_err(AuthoringError::io(&target))?;
        }
        let npm = run(
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(&installed),
            "npm",
            "JavaScript",
            node_fix,
        )?;
        if !npm.status.success() {
            return Err(AuthoringError::Install {
                tool: "ComponentizeJS",
                detail: format!("npm ci failed (it needs the npm registry):\n{}", tail(&npm)),
            });
        }
        std::fs::write(installed.join(".complete"), "").map_err(AuthoringError::io(&installed))?;
    }
    let link = sdk_js.join("node_modules");
    if std::fs::symlink_metadata(&link).is_err() {
        match std::os::unix::fs::symlink(installed.join("node_modules"), &link) {
            Err(error) if error.kind() != ErrorKind::AlreadyExists => return Err(AuthoringError::io(&link)(error)),
            _ => {}
        }
    }
    Ok(())
}

/// A weval [`WEVAL`] already on this machine: `$MESHHOST_WEVAL`, `<tools>/weval/bin/weval`
/// (`cargo install weval --version 0.5.0 --locked --root <tools>/weval`) or `weval` on `PATH`.
/// `None` lets the JavaScript build fetch its own (the weval npm package downloads it from
/// GitHub), or make an interpreted component, with a warning, when that fails too.
pub fn weval() -> Option<PathBuf> {
    let explicit = std::env::var_os("MESHHOST_WEVAL").map(PathBuf::from);
    let in_tools = tools_dir().ok().map(|tools| tools.join("weval/bin/weval"));
    // A full path: the JavaScript build is handed a file, not a name to look up.
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("weval")).filter(|bin| bin.is_file()).collect())
        .unwrap_or_default();
    let wanted = format!("weval {WEVAL}");
    [explicit, in_tools].into_iter().flatten().chain(on_path).find(|candidate| {
        Command::new(candidate)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == wanted)
    })
}

/// Make sure the Rust toolchain that builds in `project` has the `wasm32-wasip2` target.
pub fn wasm_target(project: &Path) -> Result<(), AuthoringError> {
    let rust_fix = "install Rust (https://rustup.rs), then `rustup target add wasm32-wasip2`";
    let libdir = run(
        Command::new("rustc").args(["--print", "target-libdir", "--target", "wasm32-wasip2"]).current_dir(project),
        "rustc",
        "Rust",
        rust_fix,
    )?;
    let path = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    if libdir.status.success() && path.is_dir() {
        return Ok(());
    }
    eprintln!("meshhost: adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    let added = run(
        Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).current_dir(project),
        "rustup",
        "Rust",
        "the wasm32-wasip2 target is not installed and rustup is not there to add it; install the \
         target for your Rust toolchain",
    )?;
    if !added.status.success() {
        return Err(AuthoringError::Install { tool: "the wasm32-wasip2 target", detail: tail(&added) });
    }
    Ok(())
}
