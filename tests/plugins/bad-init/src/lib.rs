//! A broken test plugin: it panics (traps) in `init` on any option it does not know, instead
//! of returning an invalid-config error. `meshhost plugin test` must catch this.

use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

struct BadInit;

impl Processor for BadInit {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        if let Some(key) = config.as_object().and_then(|o| o.keys().next()) {
            panic!("unexpected option {key}");
        }
        Ok((BadInit, vec![OutputPort { name: "out".into(), schema: inputs[0].schema.clone() }]))
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        // A whole new record (a copy of the input): the path a processor setting keys takes.
        for (i, record) in batch.iter().enumerate() {
            out.emit(0, i as u32, &record.to_record());
        }
    }
}

meshhost_sdk::export!(BadInit);
