//! A hostile test plugin. A record whose value holds `HOSTILE:<what>` makes it misbehave in that
//! way; every other record passes through unchanged:
//! - `alloc`: allocates without end (stopped at the memory cap);
//! - `recurse`: recurses without end (the call stack runs out);
//! - `reason`: fails the record with a 10 MB reason;
//! - `panic`: panics with a 10 MB message;
//! - `file`, `env`, `socket`, `clock`, `random`: tries to read a file, the environment, to
//!   connect to a socket, to read the wall clock, to get random numbers (two hash seeds that
//!   differ), and fails the record with what it got (`file: Err(..)`);
//! - `huge`: emits the record with a 2 MB title (larger than a Kafka message may be).
//!
//! `with: {init: loop}` makes `init` loop forever instead.

use std::hint::black_box;

use meshhost_sdk::avro::{self, Schema, Value};
use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

struct Hostile {
    schema: Schema,
}

impl Processor for Hostile {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        if config.get("init").and_then(|v| v.as_str()) == Some("loop") {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        let schema = Schema::parse(&inputs[0].schema).map_err(|e| vec![ConfigError::at("", e.to_string())])?;
        Ok((Hostile { schema }, vec![OutputPort { name: "out".into(), schema: inputs[0].schema.clone() }]))
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        for (i, record) in batch.iter().enumerate() {
            let i = i as u32;
            let Some(value) = record.value() else {
                out.pass(0, i);
                continue;
            };
            let what = value.windows(8).position(|w| w == b"HOSTILE:").map(|at| {
                let rest = &value[at + 8..];
                let end = rest.iter().position(|b| !b.is_ascii_lowercase()).unwrap_or(rest.len());
                String::from_utf8_lossy(&rest[..end]).into_owned()
            });
            match what.as_deref() {
                None => out.pass(0, i),
                Some("alloc") => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(black_box(vec![1u8; 1 << 20]));
                    }
                }
                Some("recurse") => out.fail(i, format!("recursed to {}", recurse(black_box(u64::MAX)))),
                Some("reason") => out.fail(i, "r".repeat(10 << 20)),
                Some("panic") => panic!("{}", "p".repeat(10 << 20)),
                Some("file") => out.fail(i, format!("file: {:?}", std::fs::read_to_string("/etc/hostname"))),
                Some("env") => out.fail(i, format!("env: {:?}", std::env::vars().collect::<Vec<_>>())),
                Some("socket") => out.fail(i, format!("socket: {:?}", std::net::TcpStream::connect("127.0.0.1:9"))),
                Some("clock") => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                    out.fail(i, format!("clock: {:?}", now.map(|d| d.as_secs() > 1_700_000_000)))
                }
                Some("random") => {
                    use std::hash::BuildHasher;
                    let seeds = [(); 2].map(|_| std::collections::hash_map::RandomState::new().hash_one(42u64));
                    out.fail(i, format!("random: {}", seeds[0] != seeds[1]))
                }
                Some("huge") => match avro::decode_datum(&self.schema, value) {
                    Ok(Value::Record(mut fields)) => {
                        for (name, field) in &mut fields {
                            if name == "title" {
                                *field = Value::String("H".repeat(2 << 20));
                            }
                        }
                        match avro::encode_datum(&self.schema, &Value::Record(fields)) {
                            Ok(bytes) => out.emit_value(0, i, Some(&bytes)),
                            Err(e) => out.fail(i, e.to_string()),
                        }
                    }
                    other => out.fail(i, format!("not a record: {other:?}")),
                },
                Some(other) => out.fail(i, format!("unknown hostility {other:?}")),
            }
        }
    }
}

/// Recursion the optimizer cannot turn into a loop.
fn recurse(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let frame = black_box([n; 16]);
    1 + recurse(black_box(frame[3] - 1)) + black_box(frame[7] & 1)
}

meshhost_sdk::export!(Hostile);
