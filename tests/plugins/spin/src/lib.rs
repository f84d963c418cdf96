//! A test plugin that loops forever on any record whose value contains the bytes `SPIN`, and
//! passes every other record through unchanged.

use meshhost_sdk::{ConfigError, InputPort, Output, OutputPort, Processor, Record};

struct Spin;

impl Processor for Spin {
    fn init(_config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        let schema = inputs[0].schema.clone();
        Ok((Spin, vec![OutputPort { name: "out".into(), schema }]))
    }

    fn process(&mut self, _input: u32, records: Vec<Record>, out: &mut Output) {
        for (i, record) in records.into_iter().enumerate() {
            if record.value.as_deref().is_some_and(|v| v.windows(4).any(|w| w == b"SPIN")) {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            out.emit(0, i as u32, record);
        }
    }
}

meshhost_sdk::export!(Spin);
