//! A test plugin that panics (a Wasm trap) on any record whose value contains the bytes
//! `TRAP`, and passes every other record through unchanged.

use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

struct Trap;

impl Processor for Trap {
    fn init(_config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        let schema = inputs[0].schema.clone();
        Ok((Trap, vec![OutputPort { name: "out".into(), schema }]))
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        for (i, record) in batch.iter().enumerate() {
            if record.value().is_some_and(|v| v.windows(4).any(|w| w == b"TRAP")) {
                panic!("poison record at index {i}");
            }
            out.pass(0, i as u32);
        }
    }
}

meshhost_sdk::export!(Trap);
