//! A broken test plugin: it declares its input schema as its output schema but emits values
//! that are not datums of it. `meshhost plugin test` must catch this.

use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

struct BadOutput;

impl Processor for BadOutput {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        if let Some(key) = config.as_object().and_then(|o| o.keys().next()) {
            return Err(vec![ConfigError::at(key.clone(), "unknown option")]);
        }
        Ok((BadOutput, vec![OutputPort { name: "out".into(), schema: inputs[0].schema.clone() }]))
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        for i in 0..batch.len() as u32 {
            out.emit_value(0, i, Some(b"\xff\xff\xff not avro"));
        }
    }
}

meshhost_sdk::export!(BadOutput);
