//! A test plugin that loops forever on any record whose value contains the bytes `SPIN`, and
//! passes every other record through unchanged.

use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

struct Spin;

impl Processor for Spin {
    fn init(_config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        let schema = inputs[0].schema.clone();
        Ok((Spin, vec![OutputPort { name: "out".into(), schema }]))
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        for (i, record) in batch.iter().enumerate() {
            if record.value().is_some_and(|v| v.windows(4).any(|w| w == b"SPIN")) {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            out.pass(0, i as u32);
        }
    }
}

meshhost_sdk::export!(Spin);
