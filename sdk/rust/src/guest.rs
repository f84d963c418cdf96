//! The guest side of the WIT contract: the [`Processor`] trait a plugin implements and the glue
//! that [`export!`](crate::export) wires to the component's exports.

use std::any::Any;
use std::cell::RefCell;

use crate::batch::{Batch, Record, Writer};
use crate::bindings::meshhost::processor::types::{
    self as wit, BatchResult, ConfigError, Failure, InitResult, InputPort, OutputPort, ValueFormat,
};

/// A meshhost processor. Implement it on a struct and add `meshhost_sdk::export!(MyType);`.
///
/// The logic is plain Rust: unit tests call [`Processor::init`] and [`Processor::process`]
/// natively, without Wasm.
pub trait Processor: Sized + 'static {
    /// The value format this processor works on: Avro datums (the default, and the fastest) or
    /// JSON objects, which the host transcodes from and to the ports' Avro schemas.
    const FORMAT: ValueFormat = ValueFormat::Avro;

    /// Build the processor from its `with:` configuration (a JSON value, `{}` when absent) and
    /// its input ports; return it with its output ports, or every problem found.
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>>;

    /// Handle a batch of records that arrived on input port `input`.
    fn process(&mut self, input: u32, batch: &Batch, out: &mut Output);
}

/// What a processor emits and rejects while handling one batch. Emitted records are written
/// column-wise as they come, and cross back to the host in a few copies.
#[derive(Debug, Default)]
pub struct Output {
    ports: Vec<u32>,
    origins: Vec<u32>,
    emitted: Writer,
    failures: Vec<Failure>,
}

/// An emitted record resolved against its batch (see [`Output::emitted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub port: u32,
    pub origin: u32,
    pub record: Record,
}

impl Output {
    /// Emit the input record at index `origin` unchanged on output port `port`. The cheapest
    /// emit: the host reuses its own copy of the record.
    pub fn pass(&mut self, port: u32, origin: u32) {
        self.ports.push(port);
        self.origins.push(origin);
        self.emitted.origin();
    }

    /// Emit the input record at index `origin` with another value (`None`: a tombstone) on
    /// output port `port`; its key, headers and timestamp stay.
    pub fn emit_value(&mut self, port: u32, origin: u32, value: Option<&[u8]>) {
        self.ports.push(port);
        self.origins.push(origin);
        self.emitted.value(value);
    }

    /// Emit `record` on output port `port`, derived from the input record at index `origin`.
    pub fn emit(&mut self, port: u32, origin: u32, record: &Record) {
        self.ports.push(port);
        self.origins.push(origin);
        self.emitted.record(record);
    }

    /// Reject the input record at `index`: the host sends it to the dead-letter topic.
    pub fn fail(&mut self, index: u32, reason: impl Into<String>) {
        self.failures.push(Failure { index, reason: reason.into() });
    }

    /// The records emitted so far, resolved against `batch` (the batch they came from).
    pub fn emitted(&self, batch: &Batch) -> Vec<Emitted> {
        let own = self.emitted.snapshot();
        (0..self.ports.len())
            .map(|i| Emitted {
                port: self.ports[i],
                origin: self.origins[i],
                record: own.resolve(i, batch.get(self.origins[i] as usize)),
            })
            .collect()
    }

    /// How many records were emitted so far.
    pub fn emitted_count(&self) -> usize {
        self.ports.len()
    }

    /// The records rejected so far.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    fn into_result(self) -> BatchResult {
        BatchResult {
            ports: self.ports,
            origins: self.origins,
            emitted: self.emitted.finish(),
            failures: self.failures,
        }
    }
}

impl ConfigError {
    /// A problem with the option at `path` (`fields[1]`, `condition`).
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Parse an input port's schema, or explain why the processor cannot use it.
pub fn port_schema(port: &InputPort) -> Result<crate::avro::Schema, ConfigError> {
    crate::avro::Schema::parse(&port.schema).map_err(|e| ConfigError::at("", format!("input {:?}: {e}", port.name)))
}

thread_local! {
    // A component instance is single-threaded and holds one processor, built by `init`.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn init<P: Processor>(config: String, inputs: Vec<InputPort>) -> Result<InitResult, Vec<ConfigError>> {
    let config: serde_json::Value = serde_json::from_str(&config)
        .map_err(|e| vec![ConfigError::at("", format!("configuration is not JSON: {e}"))])?;
    let (processor, outputs) = P::init(config, inputs)?;
    INSTANCE.with(|slot| *slot.borrow_mut() = Some(Box::new(processor)));
    Ok(InitResult { outputs, format: P::FORMAT })
}

#[doc(hidden)]
pub fn process<P: Processor>(input: u32, batch: wit::Batch) -> BatchResult {
    let batch = Batch::from_raw(batch);
    let mut out = Output::default();
    INSTANCE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let processor = slot.as_mut().and_then(|p| p.downcast_mut::<P>()).expect("the host calls init before process");
        processor.process(input, &batch, &mut out);
    });
    out.into_result()
}
