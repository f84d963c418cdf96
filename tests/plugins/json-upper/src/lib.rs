//! A test plugin that works on JSON values (the host transcodes from and to Avro): it
//! upper-cases the `title` field of every record.

use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor, ValueFormat};

struct JsonUpper;

impl Processor for JsonUpper {
    const FORMAT: ValueFormat = ValueFormat::Json;

    fn init(_config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        Ok((JsonUpper, vec![OutputPort { name: "out".into(), schema: inputs[0].schema.clone() }]))
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        for record in batch.iter() {
            let Some(value) = record.value() else {
                out.pass(0, record.index());
                continue;
            };
            let mut json: serde_json::Value = match serde_json::from_slice(value) {
                Ok(json) => json,
                Err(e) => {
                    out.fail(record.index(), format!("not JSON: {e}"));
                    continue;
                }
            };
            if let Some(title) = json.get_mut("title") {
                if let Some(text) = title.as_str() {
                    *title = serde_json::Value::String(text.to_uppercase());
                }
            }
            out.emit_value(0, record.index(), Some(&serde_json::to_vec(&json).unwrap()));
        }
    }
}

meshhost_sdk::export!(JsonUpper);
