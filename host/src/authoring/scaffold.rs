//! `meshhost plugin new NAME --lang rust|python|js`: a working plugin project to start from —
//! manifest (with the `[build]` table `plugin build` reads), source with a tiny example
//! processor, a fixture for `meshhost plugin test`, and a README.

use std::path::{Path, PathBuf};

use super::{sdk, AuthoringError};
use crate::registry::Lang;

/// (path in the project, template text) per language. `{{name}}`, `{{crate}}`, `{{artifact}}`,
/// `{{lang}}` and `{{sdk_path}}` are filled in.
fn templates(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Rust => &[
            ("Cargo.toml", include_str!("../../templates/rust/Cargo.toml.tmpl")),
            ("plugin.toml", include_str!("../../templates/rust/plugin.toml.tmpl")),
            ("src/lib.rs", include_str!("../../templates/rust/src/lib.rs.tmpl")),
            ("fixtures/example.json", include_str!("../../templates/rust/fixtures/example.json")),
            ("README.md", include_str!("../../templates/rust/README.md.tmpl")),
        ],
        Lang::Python => &[
            ("plugin.toml", include_str!("../../templates/rust/plugin.toml.tmpl")),
            ("app.py", include_str!("../../templates/python/app.py.tmpl")),
            ("fixtures/example.json", include_str!("../../templates/rust/fixtures/example.json")),
            ("README.md", include_str!("../../templates/python/README.md.tmpl")),
        ],
        Lang::Js => &[
            ("plugin.toml", include_str!("../../templates/rust/plugin.toml.tmpl")),
            ("app.js", include_str!("../../templates/js/app.js.tmpl")),
            ("fixtures/example.json", include_str!("../../templates/rust/fixtures/example.json")),
            ("README.md", include_str!("../../templates/js/README.md.tmpl")),
        ],
    }
}

/// Create the project for plugin `name` (`namespace/name`, or `name` for `local/name`) in `dir`
/// (default: `./<name>`). Returns the directory.
///
/// A Rust project depends on the SDK crate by path, in the SDK this binary unpacks into the cache
/// (`<cache>/sdk/<version>-<digest>/sdk/rust`): the crate is not on crates.io, and a path into the
/// checkout meshhost was built from would not exist where only the binary is installed.
/// `plugin build` unpacks it again if the cache was cleared.
pub fn new_plugin(name: &str, lang: Lang, dir: Option<&Path>) -> Result<PathBuf, AuthoringError> {
    let name = if name.contains('/') { name.to_string() } else { format!("local/{name}") };
    crate::registry::check_name(&name).map_err(AuthoringError::Project)?;
    let short = name.rsplit('/').next().unwrap().to_string();
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&short));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(AuthoringError::Project(format!("{} already exists and is not empty", dir.display())));
    }
    let rust_sdk = sdk::rust_sdk(&sdk::unpacked()?);
    for (path, template) in templates(lang) {
        let text = template
            .replace("{{name}}", &name)
            .replace("{{crate}}", &short)
            .replace("{{artifact}}", &short.replace('-', "_"))
            .replace("{{lang}}", lang.key())
            .replace("{{sdk_path}}", &rust_sdk.display().to_string());
        let target = dir.join(path);
        let parent = target.parent().unwrap();
        std::fs::create_dir_all(parent).map_err(AuthoringError::io(parent))?;
        std::fs::write(&target, text).map_err(AuthoringError::io(&target))?;
    }
    Ok(dir)
}
