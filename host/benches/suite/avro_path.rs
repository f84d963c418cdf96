//! Avro: the host's path for a filter + projection pipeline vs the same work with `apache-avro`
//! `Value`s.
//!
//! Per record, both sides read `year` and `country` to decide, and for kept records produce the
//! projected datum:
//! - host: what meshhost does to that record — the Avro source decoder at the source (full validation
//!   and a copy), the filter's read of the two fields (skipping the others; it emits its input
//!   record unchanged, which the host does not check again), the projection's `field_ranges` +
//!   byte-range copy, the host's validation of the projection's output, the sink's
//!   encoder;
//! - apache-avro: `from_avro_datum` into a `Value`, the fields read from it, a projected `Value`
//!   built from the decoded one (moved, not cloned) and `to_avro_datum`.

use std::hint::black_box;
use std::time::Instant;

use meshhost::codec::{SinkEncoder, SourceDecoder};
use meshhost_avro::{self as avro, Reader, Schema, Value};

use crate::data::{self, Generator};

pub struct AvroResult {
    pub host_ns: f64,
    pub apache_ns: f64,
}

struct Host {
    input: Schema,
    output: Schema,
    ranges: Vec<std::ops::Range<usize>>,
}

impl Host {
    fn new() -> Host {
        Host {
            input: Schema::parse(data::MOVIE_SCHEMA).unwrap(),
            output: Schema::parse(data::SLIM_SCHEMA).unwrap(),
            ranges: Vec::new(),
        }
    }

    fn run(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        // source: validate + own
        let datum = SourceDecoder::Avro.decode(&self.input, bytes).expect("valid");
        // filter: decode the fields the condition names, skip the others before them
        let record = self.input.root_record().unwrap();
        let mut reader = Reader::new(&datum);
        let mut year = 0;
        let mut us = false;
        for (i, field) in record.fields[..4].iter().enumerate() {
            match i {
                2 | 3 => match avro::decode(&self.input, &field.ty, &mut reader).unwrap() {
                    Value::Int(y) => year = y,
                    Value::String(c) => us = c == "US",
                    _ => unreachable!(),
                },
                _ => avro::skip(&self.input, &field.ty, &mut reader).unwrap(),
            }
        }
        if !(year >= 2000 && us) {
            return None;
        }
        // projection: field byte ranges, kept ones concatenated
        avro::field_ranges_into(&self.input, record, &datum, &mut self.ranges).unwrap();
        let size = data::PROJECTED_INDICES.iter().map(|&i| self.ranges[i].len()).sum();
        let mut out = Vec::with_capacity(size);
        for &i in data::PROJECTED_INDICES {
            out.extend_from_slice(&datum[self.ranges[i].clone()]);
        }
        // host: the projection's output is checked; the sink writes it as is
        avro::validate(&self.output, &out).unwrap();
        Some(SinkEncoder::Avro.encode(&self.output, out).unwrap())
    }
}

struct Apache {
    input: apache_avro::Schema,
    output: apache_avro::Schema,
}

impl Apache {
    fn new() -> Apache {
        Apache {
            input: apache_avro::Schema::parse_str(data::MOVIE_SCHEMA).unwrap(),
            output: apache_avro::Schema::parse_str(data::SLIM_SCHEMA).unwrap(),
        }
    }

    fn run(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        use apache_avro::types::Value as A;
        let mut reader = bytes;
        let A::Record(mut fields) = apache_avro::from_avro_datum(&self.input, &mut reader, None).unwrap() else {
            unreachable!()
        };
        assert!(reader.is_empty());
        let year = match &fields[2].1 {
            A::Int(y) => *y,
            _ => unreachable!(),
        };
        let us = matches!(&fields[3].1, A::String(c) if c == "US");
        if !(year >= 2000 && us) {
            return None;
        }
        let projected: Vec<(String, A)> = data::PROJECTED_INDICES
            .iter()
            .zip(["id", "name", "year", "director", "rating", "synopsis"])
            .map(|(&i, name)| (name.to_string(), std::mem::replace(&mut fields[i].1, A::Null)))
            .collect();
        Some(apache_avro::to_avro_datum(&self.output, A::Record(projected)).unwrap())
    }
}

/// ns per record of `f` over `records`, repeated `passes` times.
fn time_per_record(records: &[Vec<u8>], passes: usize, mut f: impl FnMut(&[u8]) -> Option<Vec<u8>>) -> f64 {
    let start = Instant::now();
    for _ in 0..passes {
        for record in records {
            black_box(f(black_box(record)));
        }
    }
    start.elapsed().as_nanos() as f64 / (passes * records.len()) as f64
}

pub fn run(size: usize, pool: usize, rounds: usize) -> AvroResult {
    let generator = Generator::new(size);
    let records: Vec<Vec<u8>> = (0..pool as u64).map(|id| generator.value(id)).collect();
    let mut host = Host::new();
    let apache = Apache::new();
    // Both produce the same bytes.
    for record in records.iter().take(1000) {
        assert_eq!(host.run(record), apache.run(record), "host and apache-avro disagree");
    }
    let mut host_ns = Vec::new();
    let mut apache_ns = Vec::new();
    for _ in 0..rounds {
        host_ns.push(time_per_record(&records, 4, |r| host.run(r)));
        apache_ns.push(time_per_record(&records, 1, |r| apache.run(r)));
    }
    let result = AvroResult { host_ns: crate::best(&host_ns), apache_ns: crate::best(&apache_ns) };
    eprintln!(
        "avro {size} B: host {:.0} ns/rec, apache-avro {:.0} ns/rec ({rounds} rounds, {pool} records, best)",
        result.host_ns, result.apache_ns
    );
    result
}
