//! The guest side of the WIT contract: the [`Processor`] trait a plugin implements and the glue
//! that [`export!`](crate::export) wires to the component's exports.

use std::any::Any;
use std::cell::RefCell;

use crate::bindings::meshhost::processor::types::{
    BatchResult, ConfigError, Emit, Failure, InitResult, InputPort, OutputPort, Record, ValueFormat,
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
    fn process(&mut self, input: u32, records: Vec<Record>, out: &mut Output);
}

/// What a processor emits and rejects while handling one batch.
#[derive(Debug, Default)]
pub struct Output {
    emitted: Vec<Emit>,
    failures: Vec<Failure>,
}

impl Output {
    /// Emit `record` on output port `port`, derived from the input record at index `origin`.
    pub fn emit(&mut self, port: u32, origin: u32, record: Record) {
        self.emitted.push(Emit { port, origin, record });
    }

    /// Reject the input record at `index`: the host sends it to the dead-letter topic.
    pub fn fail(&mut self, index: u32, reason: impl Into<String>) {
        self.failures.push(Failure { index, reason: reason.into() });
    }

    /// The records emitted so far.
    pub fn emitted(&self) -> &[Emit] {
        &self.emitted
    }

    /// The records rejected so far.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    fn into_result(self) -> BatchResult {
        BatchResult { emitted: self.emitted, failures: self.failures }
    }
}

impl ConfigError {
    /// A problem with the option at `path` (`fields[1]`, `condition`).
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError { path: path.into(), message: message.into() }
    }
}

impl Record {
    /// A record with this value and nothing else, handy in tests.
    pub fn from_value(value: Vec<u8>) -> Self {
        Record { key: None, value: Some(value), headers: Vec::new(), timestamp: None }
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
    crate::avro::Schema::parse(&port.schema)
        .map_err(|e| ConfigError::at("", format!("input {:?}: {e}", port.name)))
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
pub fn process<P: Processor>(input: u32, records: Vec<Record>) -> BatchResult {
    let mut out = Output::default();
    INSTANCE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let processor = slot
            .as_mut()
            .and_then(|p| p.downcast_mut::<P>())
            .expect("the host calls init before process");
        processor.process(input, records, &mut out);
    });
    out.into_result()
}
