//! A broken test plugin: it declares its input schema as its output schema but emits values
//! that are not datums of it. `meshhost plugin test` must catch this.

use meshhost_sdk::{ConfigError, InputPort, Output, OutputPort, Processor, Record};

struct BadOutput;

impl Processor for BadOutput {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        if let Some(key) = config.as_object().and_then(|o| o.keys().next()) {
            return Err(vec![ConfigError::at(key.clone(), "unknown option")]);
        }
        Ok((BadOutput, vec![OutputPort { name: "out".into(), schema: inputs[0].schema.clone() }]))
    }

    fn process(&mut self, _input: u32, records: Vec<Record>, out: &mut Output) {
        for (i, mut record) in records.into_iter().enumerate() {
            record.value = Some(b"\xff\xff\xff not avro".to_vec());
            out.emit(0, i as u32, record);
        }
    }
}

meshhost_sdk::export!(BadOutput);
