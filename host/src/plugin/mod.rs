//! The Wasm engine: loading processor components and running them in isolated instances.
//!
//! One [`PluginEngine`] per process holds the `wasmtime::Engine` and the `Linker`. Each distinct
//! component is compiled once (and the compiled artifact cached on disk, keyed by the
//! component's digest and the engine's configuration); each processor gets its own
//! [`ProcessorInstance`] with its own `Store`, memory cap and per-call CPU deadline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

pub mod batch;
mod instance;
mod stderr;
pub mod stock;

pub use instance::{CallError, InitFailure, Limits, ProcessorInstance};

/// Bindings generated from `wit/` for the host side.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        // A failing state store traps the call (its writes are dropped), never the host.
        imports: { "meshhost:processor/state": trappable },
    });

    pub use self::meshhost::processor::types::{ConfigError, InitResult, InputPort, OutputPort, ValueFormat};
}

/// A component that cannot be loaded, or an engine that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("cannot set up the Wasm engine: {0}")]
    Engine(String),
    #[error("not a valid component: {0}")]
    Invalid(String),
    #[error("{label} is a core Wasm module, not a component: build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)")]
    CoreModule { label: String },
    #[error("{label} is not a WebAssembly component (it lacks the component header)")]
    NotWasm { label: String },
    /// Compiling failed; the label says which component (the cause is in the message, not a
    /// `source`: the messages end up in plugin test reports and registry errors as they are).
    #[error("{label}: {error}")]
    Compile { label: String, error: Box<PluginError> },
    #[error("{label} does not export {PROCESSOR_INTERFACE} (or a compatible 0.3.x); its exports are: {}", if exports.is_empty() { "none".to_string() } else { exports.join(", ") })]
    NoProcessorExport { label: String, exports: Vec<String> },
    /// Built for a WIT version this host does not run.
    #[error("{label} {problem}")]
    WrongWitVersion { label: String, problem: String },
    /// It imports something the host does not provide.
    #[error("{label} cannot be linked: {message}")]
    Link { label: String, message: String },
    #[error("{label} does not export the {PROCESSOR_INTERFACE} interface: {message}")]
    NoProcessor { label: String, message: String },
}

/// How often the epoch advances: the granularity of the per-call CPU deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide Wasm engine.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<instance::InstanceState>,
    /// Compiled components by digest, so each is compiled once per process.
    compiled: Mutex<HashMap<String, Component>>,
    cache_dir: Option<PathBuf>,
}

/// A loaded (compiled and linked) component, ready to instantiate.
#[derive(Clone)]
pub struct Plugin {
    /// For messages: `mesh/filter@0.1.0`, or the file path.
    pub label: String,
    /// sha256 of the component bytes, hex.
    pub digest: String,
    /// It imports `state`: its batches are split by partition and its writes made durable.
    pub stateful: bool,
    pre: bindings::PluginPre<instance::InstanceState>,
}

/// meshhost's cache directory: `$MESHHOST_CACHE_DIR`, else `~/.cache/meshhost`. It holds the
/// compiled plugins, the unpacked SDKs and the plugin build tools.
pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os("MESHHOST_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/meshhost")))
}

impl PluginEngine {
    /// An engine with epoch interruption, and the on-disk compile cache in
    /// `$MESHHOST_CACHE_DIR` or `~/.cache/meshhost`.
    pub fn new() -> Result<Arc<PluginEngine>, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine_error = |e: wasmtime::Error| PluginError::Engine(format!("{e:#}"));
        let engine = Engine::new(&config).map_err(engine_error)?;

        let mut linker = Linker::new(&engine);
        // WASI with an empty context: Rust, Python and JavaScript components import parts of
        // it, but they get no files, environment, arguments or network.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state).map_err(engine_error)?;

        // The epoch ticker behind every CPU deadline; it lives as long as the process.
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("meshhost-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch thread: {e}")))?;

        let cache_dir = cache_root().map(|dir| dir.join("compiled"));
        Ok(Arc::new(PluginEngine { engine, linker, compiled: Mutex::default(), cache_dir }))
    }

    /// Compile (or fetch from cache) and link a component.
    pub fn load(&self, label: &str, bytes: &[u8]) -> Result<Plugin, PluginError> {
        let digest = hex(&Sha256::digest(bytes));
        let component = self.compile(&digest, bytes)?;
        let stateful = component
            .component_type()
            .imports(&self.engine)
            .any(|(name, _)| name.starts_with("meshhost:processor/state@"));
        // A plugin built for another WIT version would fail to link with a confusing message.
        let exports =
            component.component_type().exports(&self.engine).map(|(name, _)| name.to_string()).collect::<Vec<_>>();
        if let Some(problem) = other_wit_version(&exports) {
            return Err(PluginError::WrongWitVersion { label: label.to_string(), problem });
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Link { label: label.to_string(), message: format!("{e:#}") })?;
        let pre = bindings::PluginPre::new(pre)
            .map_err(|e| PluginError::NoProcessor { label: label.to_string(), message: format!("{e:#}") })?;
        Ok(Plugin { label: label.to_string(), digest, stateful, pre })
    }

    fn compile(&self, digest: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        if let Some(component) = self.compiled.lock().unwrap().get(digest) {
            return Ok(component.clone());
        }
        let cached = self.cache_path(digest);
        let component = match cached.as_ref().filter(|path| path.is_file()) {
            // SAFETY: the file was written by `Component::serialize` of an engine with the same
            // compatibility hash (it is in the file name) into meshhost's own cache directory.
            Some(path) => match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => component,
                Err(_) => self.compile_fresh(bytes, cached.as_ref())?,
            },
            None => self.compile_fresh(bytes, cached.as_ref())?,
        };
        self.compiled.lock().unwrap().insert(digest.to_string(), component.clone());
        Ok(component)
    }

    fn compile_fresh(&self, bytes: &[u8], cache_path: Option<&PathBuf>) -> Result<Component, PluginError> {
        let component = Component::new(&self.engine, bytes).map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        if let Some(path) = cache_path {
            // Best effort: a cache that cannot be written only costs a compile next time.
            let write = || -> Result<(), Box<dyn std::error::Error>> {
                std::fs::create_dir_all(path.parent().unwrap())?;
                let staging = path.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&staging, component.serialize().map_err(|e| format!("{e:#}"))?)?;
                std::fs::rename(&staging, path)?;
                Ok(())
            };
            if let Err(error) = write() {
                tracing::debug!(%error, "could not cache the compiled plugin");
            }
        }
        Ok(component)
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.finish();
        self.cache_dir.as_ref().map(|dir| dir.join(format!("{digest}-{engine_hash:016x}.cwasm")))
    }

    /// Check that `bytes` are a component exporting a compatible meshhost processor interface
    /// whose imports meshhost provides, and list its exports. Compiles it (into the cache).
    pub fn describe(&self, label: &str, bytes: &[u8]) -> Result<ComponentInfo, PluginError> {
        let label_string = || label.to_string();
        match bytes.get(0..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(PluginError::CoreModule { label: label_string() }),
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            _ => return Err(PluginError::NotWasm { label: label_string() }),
        }
        let digest = hex(&Sha256::digest(bytes));
        let component = self
            .compile(&digest, bytes)
            .map_err(|e| PluginError::Compile { label: label_string(), error: Box::new(e) })?;
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let Some(wit) = exports.iter().find(|name| is_compatible_processor(name)).cloned() else {
            return Err(PluginError::NoProcessorExport { label: label_string(), exports });
        };
        self.load(label, bytes)?;
        Ok(ComponentInfo { wit, exports })
    }

    /// Skip the on-disk cache (tests and benchmarks of compile time).
    pub fn without_disk_cache(mut self: Arc<Self>) -> Arc<Self> {
        if let Some(engine) = Arc::get_mut(&mut self) {
            engine.cache_dir = None;
        }
        self
    }
}

/// The interface every processor exports.
pub const PROCESSOR_INTERFACE: &str = "meshhost:processor/processor@0.3.0";

/// Input port `name` with the Avro schema `schema` (JSON text), as `init` gets it.
pub fn input_port(name: &str, schema: &str) -> Result<bindings::InputPort, meshhost_avro::SchemaError> {
    let parsed = meshhost_avro::Schema::parse(schema)?;
    Ok(bindings::InputPort {
        name: name.to_string(),
        schema: schema.to_string(),
        value_names: meshhost_avro::value_names(&parsed),
    })
}

/// What a component exports, as checked by [`PluginEngine::describe`].
#[derive(Debug, Clone)]
pub struct ComponentInfo {
    /// The processor interface it exports, with its version.
    pub wit: String,
    /// All its exports.
    pub exports: Vec<String>,
}

/// `meshhost:processor/processor@0.3.x`: the same 0.3 minor is compatible (semver for 0.x).
fn is_compatible_processor(export: &str) -> bool {
    export
        .strip_prefix("meshhost:processor/processor@")
        .and_then(|version| semver::Version::parse(version).ok())
        .is_some_and(|version| version.major == 0 && version.minor == 3)
}

/// When the component exports the processor interface of an incompatible WIT version only: why it
/// cannot run here.
fn other_wit_version(exports: &[String]) -> Option<String> {
    if exports.iter().any(|name| is_compatible_processor(name)) {
        return None;
    }
    let other = exports.iter().find(|name| name.starts_with("meshhost:processor/processor@"))?;
    Some(format!(
        "was built for {other}, but this meshhost runs {PROCESSOR_INTERFACE} plugins: rebuild it with the current meshhost SDK"
    ))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_for_another_wit_version_is_told_to_rebuild() {
        let old = vec!["meshhost:processor/processor@0.2.0".to_string()];
        let message = other_wit_version(&old).expect("0.2 is not 0.3");
        assert!(
            message.contains("built for meshhost:processor/processor@0.2.0") && message.contains("rebuild"),
            "{message}"
        );
        let current = vec![PROCESSOR_INTERFACE.to_string(), "meshhost:processor/processor@0.1.0".to_string()];
        assert_eq!(other_wit_version(&current), None);
        assert_eq!(other_wit_version(&["meshhost:processor/processor@0.3.7".to_string()]), None);
        assert_eq!(
            other_wit_version(&["wasi:cli/run@0.2.0".to_string()]),
            None,
            "not a processor at all: reported elsewhere"
        );
    }
}
