//! `meshhost plugin new NAME --lang rust|python|js`: a working plugin project to start from —
//! manifest, source with a tiny example processor, a fixture for `meshhost plugin test`, and a
//! README with the one build command.

use std::path::{Path, PathBuf};

/// A plugin language with a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// (path in the project, template text) per language. `{{name}}`, `{{crate}}`, `{{artifact}}`
/// and `{{sdk_path}}` are filled in.
fn templates(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            ("Cargo.toml", include_str!("../templates/rust/Cargo.toml.tmpl")),
            ("plugin.toml", include_str!("../templates/rust/plugin.toml.tmpl")),
            ("src/lib.rs", include_str!("../templates/rust/src/lib.rs.tmpl")),
            ("fixtures/example.json", include_str!("../templates/rust/fixtures/example.json")),
            ("README.md", include_str!("../templates/rust/README.md.tmpl")),
        ],
        Lang::Python => &[
            ("plugin.toml", include_str!("../templates/rust/plugin.toml.tmpl")),
            ("app.py", include_str!("../templates/python/app.py.tmpl")),
            ("fixtures/example.json", include_str!("../templates/rust/fixtures/example.json")),
            ("README.md", include_str!("../templates/python/README.md.tmpl")),
        ],
        Lang::Js => &[
            ("plugin.toml", include_str!("../templates/rust/plugin.toml.tmpl")),
            ("app.js", include_str!("../templates/js/app.js.tmpl")),
            ("fixtures/example.json", include_str!("../templates/rust/fixtures/example.json")),
            ("README.md", include_str!("../templates/js/README.md.tmpl")),
        ],
    }
}

/// The SDK directory: `$MESHHOST_SDK_DIR`, else the `sdk/` of the checkout meshhost was built from.
pub fn sdk_dir() -> PathBuf {
    std::env::var_os("MESHHOST_SDK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"))
}

/// Create the project for plugin `name` (`namespace/name`, or `name` for `local/name`) in `dir`
/// (default: `./<name>`). Returns the directory.
pub fn new_plugin(name: &str, lang: Lang, dir: Option<&Path>) -> Result<PathBuf, String> {
    let name = if name.contains('/') { name.to_string() } else { format!("local/{name}") };
    crate::registry::check_name(&name)?;
    let short = name.rsplit('/').next().unwrap().to_string();
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&short));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(format!("{} already exists and is not empty", dir.display()));
    }
    let sdk = sdk_dir();
    let sdk = sdk.canonicalize().unwrap_or(sdk);
    for (path, template) in templates(lang) {
        let text = template
            .replace("{{name}}", &name)
            .replace("{{crate}}", &short)
            .replace("{{artifact}}", &short.replace('-', "_"))
            .replace("{{sdk_path}}", &sdk.join("rust").display().to_string())
            .replace("{{sdk_dir}}", &sdk.display().to_string());
        let target = dir.join(path);
        std::fs::create_dir_all(target.parent().unwrap())
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        std::fs::write(&target, text).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    }
    Ok(dir)
}
