//! A test plugin whose behaviour its `mode` option picks, for the executor's tests:
//! - `two-ports`: ports `all` and `copy`; every record goes out unchanged on both;
//! - `bad-port`: every record is emitted on port 7 (only port 0 is declared);
//! - `bad-origin`: every record is emitted with an origin past the end of the batch;
//! - `nothing`: emits nothing, fails nothing (a sink that drops everything);
//! - `reject-odd`: passes records at even indexes, fails the odd ones ("odd record").

use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

#[derive(Clone, Copy)]
enum Mode {
    TwoPorts,
    BadPort,
    BadOrigin,
    Nothing,
    RejectOdd,
}

struct Misbehave(Mode);

impl Processor for Misbehave {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        let mode = match config.get("mode").and_then(|m| m.as_str()) {
            Some("two-ports") => Mode::TwoPorts,
            Some("bad-port") => Mode::BadPort,
            Some("bad-origin") => Mode::BadOrigin,
            Some("nothing") => Mode::Nothing,
            Some("reject-odd") => Mode::RejectOdd,
            _ => {
                return Err(vec![ConfigError::at(
                    "mode",
                    "one of two-ports, bad-port, bad-origin, nothing, reject-odd",
                )])
            }
        };
        let schema = inputs[0].schema.clone();
        let mut ports = vec![OutputPort { name: "all".into(), schema: schema.clone() }];
        if let Mode::TwoPorts = mode {
            ports.push(OutputPort { name: "copy".into(), schema });
        }
        Ok((Misbehave(mode), ports))
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        let len = batch.len() as u32;
        for i in 0..len {
            match self.0 {
                Mode::TwoPorts => {
                    out.pass(0, i);
                    out.pass(1, i);
                }
                Mode::BadPort => out.pass(7, i),
                Mode::BadOrigin => out.pass(0, len + i),
                Mode::Nothing => {}
                Mode::RejectOdd if i % 2 == 1 => out.fail(i, "odd record"),
                Mode::RejectOdd => out.pass(0, i),
            }
        }
    }
}

meshhost_sdk::export!(Misbehave);
