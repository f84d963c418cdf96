//! One processor's component instance: its `Store`, limits, and recovery from traps.

use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::batch::{self, Processed, Record};
use super::bindings::{self, ConfigError, InitResult, InputPort};
use std::sync::Arc;

use super::stderr::StderrCapture;
use super::{Plugin, EPOCH_TICK};
use crate::state::{StateStore, StateWrites};

/// Resource limits of one instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Cap on the instance's linear memories, in bytes.
    pub memory_bytes: usize,
    /// CPU deadline of one call into the plugin.
    pub timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { memory_bytes: 256 << 20, timeout: std::time::Duration::from_secs(5) }
    }
}

impl Limits {
    /// The CPU deadline in epoch ticks (at least one).
    fn deadline_ticks(&self) -> u64 {
        (self.timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

/// The host state of one instance's `Store`.
pub(super) struct InstanceState {
    processor_id: String,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// The guest's stderr, kept so that a panic message can explain a trap.
    stderr: StderrCapture,
    state: StateAccess,
}

/// What the `state` import works on during one call.
#[derive(Default)]
struct StateAccess {
    /// The processor's durable store; none while validating.
    store: Option<Arc<StateStore>>,
    /// The partition of the batch being processed.
    partition: u32,
    /// This call's writes: applied by the host after the call succeeds, dropped on a trap.
    writes: StateWrites,
}

impl bindings::meshhost::processor::state::Host for InstanceState {
    fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        if let Some(value) = self.state.writes.get(&key) {
            return Ok(value.clone());
        }
        match &self.state.store {
            Some(store) => store.get(self.state.partition, &key).map_err(|e| wasmtime::format_err!("{e}")),
            None => Ok(None),
        }
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.state.writes.insert(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>) -> wasmtime::Result<()> {
        self.state.writes.insert(key, None);
        Ok(())
    }

    fn scan_prefix(&mut self, prefix: Vec<u8>) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut entries: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = match &self.state.store {
            Some(store) => store
                .scan_prefix(self.state.partition, &prefix)
                .map_err(|e| wasmtime::format_err!("{e}"))?
                .into_iter()
                .collect(),
            None => Default::default(),
        };
        for (key, value) in self.state.writes.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            match value {
                Some(value) => entries.insert(key.clone(), value.clone()),
                None => entries.remove(key),
            };
        }
        Ok(entries.into_iter().collect())
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::meshhost::processor::types::Host for InstanceState {}

impl bindings::meshhost::processor::log::Host for InstanceState {
    fn log(&mut self, level: bindings::meshhost::processor::log::Level, message: String) {
        use bindings::meshhost::processor::log::Level;
        let processor = self.processor_id.as_str();
        match level {
            Level::Debug => tracing::debug!(processor, "{message}"),
            Level::Info => tracing::info!(processor, "{message}"),
            Level::Warn => tracing::warn!(processor, "{message}"),
            Level::Error => tracing::error!(processor, "{message}"),
        }
    }
}

/// Why an instance could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitFailure {
    /// The plugin refused its configuration or inputs.
    #[error("invalid configuration")]
    Config(Vec<ConfigError>),
    /// The plugin could not be instantiated, or trapped in `init`.
    #[error("{0}")]
    Crashed(String),
}

/// A `process` call that did not complete. The instance was replaced by a fresh one (or could
/// not be) and the call's state writes dropped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The plugin trapped: a panic, its CPU deadline, its memory cap.
    #[error("{0}")]
    Trapped(String),
    /// It trapped, and the fresh instance's `init` failed too.
    #[error("{trap}; re-init after the trap failed: {reinit}")]
    Unrecoverable { trap: String, reinit: String },
}

/// A processor's live instance. After a trap the `Store` is thrown away and a fresh instance is
/// built and initialised with the same configuration, so state corrupted by the trap never
/// leaks into later calls.
pub struct ProcessorInstance {
    processor_id: String,
    plugin: Plugin,
    limits: Limits,
    config: String,
    inputs: Vec<InputPort>,
    store: Store<InstanceState>,
    bindings: bindings::Plugin,
    init: InitResult,
    state_store: Option<Arc<StateStore>>,
    /// The column-wise batch of the last call, kept so its buffers are reused.
    batch: bindings::meshhost::processor::types::Batch,
}

impl ProcessorInstance {
    /// Instantiate `plugin` for processor `processor_id` and call its `init`.
    pub fn new(
        processor_id: &str,
        plugin: &Plugin,
        limits: Limits,
        config: String,
        inputs: Vec<InputPort>,
    ) -> Result<ProcessorInstance, InitFailure> {
        let (store, bindings, init) = instantiate(processor_id, plugin, limits, &config, &inputs)?;
        Ok(ProcessorInstance {
            processor_id: processor_id.to_string(),
            plugin: plugin.clone(),
            limits,
            config,
            inputs,
            store,
            bindings,
            init,
            state_store: None,
            batch: batch::empty(),
        })
    }

    /// The id of the processor this instance runs.
    pub fn processor_id(&self) -> &str {
        &self.processor_id
    }

    /// Whether the plugin keeps state (imports `state`).
    pub fn is_stateful(&self) -> bool {
        self.plugin.stateful
    }

    /// The durable store given with [`attach_state`](Self::attach_state), if any.
    pub fn attached_state(&self) -> Option<&Arc<StateStore>> {
        self.state_store.as_ref()
    }

    /// Give the instance its durable store.
    pub fn attach_state(&mut self, store: Arc<StateStore>) {
        self.store.data_mut().state.store = Some(store.clone());
        self.state_store = Some(store);
    }

    /// What `init` returned: output ports and value format.
    pub fn init_result(&self) -> &InitResult {
        &self.init
    }

    /// Call `process` on a batch from input `input`, all from source partition `partition`.
    /// Returns the result and the state writes the call made (for the caller to make durable).
    /// A trap (panic, deadline, memory cap) comes back as `Err` with a message; the instance has
    /// then already been replaced by a fresh one and the call's writes dropped.
    pub fn process(
        &mut self,
        partition: u32,
        input: u32,
        records: &[Record],
    ) -> Result<(Processed, StateWrites), CallError> {
        batch::fill(&mut self.batch, records);
        self.store.set_epoch_deadline(self.limits.deadline_ticks());
        let state = &mut self.store.data_mut().state;
        state.partition = partition;
        state.writes.clear();
        let result = self.bindings.meshhost_processor_processor().call_process(&mut self.store, input, &self.batch);
        match result {
            Ok(result) => {
                Ok((batch::processed(result, records), std::mem::take(&mut self.store.data_mut().state.writes)))
            }
            Err(error) => {
                let message = self.explain(&error);
                tracing::warn!(processor = %self.processor_id, error = %message, "plugin trapped; replacing its instance");
                match self.rebuild() {
                    Ok(()) => Err(CallError::Trapped(message)),
                    Err(reinit) => Err(CallError::Unrecoverable { trap: message, reinit }),
                }
            }
        }
    }

    fn explain(&self, error: &wasmtime::Error) -> String {
        let what = match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!("exceeded its CPU deadline of {:?}", self.limits.timeout),
            Some(trap) => format!("trapped: {trap}"),
            None => format!("failed: {}", error.root_cause()),
        };
        match self.store.data().stderr.last_message() {
            Some(message) => format!("plugin {what}: {message}"),
            None => format!("plugin {what}"),
        }
    }

    fn rebuild(&mut self) -> Result<(), String> {
        let (store, bindings, init) =
            instantiate(&self.processor_id, &self.plugin, self.limits, &self.config, &self.inputs).map_err(
                |e| match e {
                    InitFailure::Config(errors) => format!("{errors:?}"),
                    InitFailure::Crashed(message) => message,
                },
            )?;
        self.store = store;
        self.bindings = bindings;
        self.init = init;
        if let Some(state_store) = &self.state_store {
            self.store.data_mut().state.store = Some(state_store.clone());
        }
        Ok(())
    }
}

type Instantiated = (Store<InstanceState>, bindings::Plugin, InitResult);

fn instantiate(
    processor_id: &str,
    plugin: &Plugin,
    limits: Limits,
    config: &str,
    inputs: &[InputPort],
) -> Result<Instantiated, InitFailure> {
    let stderr = StderrCapture::new(processor_id);
    let state = InstanceState {
        processor_id: processor_id.to_string(),
        wasi: WasiCtxBuilder::new().stderr(stderr.clone()).build(),
        table: ResourceTable::new(),
        limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).instances(16).build(),
        stderr,
        state: StateAccess::default(),
    };
    let mut store = Store::new(plugin.pre.engine(), state);
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(limits.deadline_ticks());
    let crashed =
        |store: &Store<InstanceState>, what: &str, error: wasmtime::Error| match store.data().stderr.last_message() {
            Some(message) => {
                InitFailure::Crashed(format!("{} {what}: {}: {message}", plugin.label, error.root_cause()))
            }
            None => InitFailure::Crashed(format!("{} {what}: {error:#}", plugin.label)),
        };
    let bindings = match plugin.pre.instantiate(&mut store) {
        Ok(bindings) => bindings,
        Err(error) => return Err(crashed(&store, "could not be instantiated", error)),
    };
    let init = match bindings.meshhost_processor_processor().call_init(&mut store, config, inputs) {
        Ok(init) => init.map_err(InitFailure::Config)?,
        Err(error) => return Err(crashed(&store, "trapped in init", error)),
    };
    Ok((store, bindings, init))
}
