//! A source's decode step: `confluent-avro` vs `avro`, per record, on the same datums.
//!
//! - avro: the datum is checked against the source schema and copied (what every `avro` source
//!   does);
//! - confluent-avro, same schema: the 5-byte header split off, the writer schema found by id
//!   (fetched from the registry once), the datum checked and copied;
//! - confluent-avro, older writer: the writer schema lacks a field with a default (`rating`),
//!   so every datum is converted by schema resolution.
//!
//! The registry is a real `meshhost catalog serve` on the bench's broker; after the first
//! record of each id no request is made, so the figures are the decode path itself.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshhost::codec::SourceDecoder;
use meshhost::config::{Format, SchemaChangePolicy};
use meshhost::schema_registry::{wire, RegistryClient, RegistrySettings};
use meshhost_avro::{Resolver, Schema};

use crate::data::{self, Generator};

pub struct DecodeResult {
    pub avro_ns: f64,
    pub confluent_ns: f64,
    pub resolved_ns: f64,
}

/// The bench schema without `rating` (which has a default): an older writer version.
fn older_schema() -> String {
    let mut json: serde_json::Value = serde_json::from_str(data::MOVIE_SCHEMA).unwrap();
    json["fields"].as_array_mut().unwrap().retain(|f| f["name"] != "rating");
    json.to_string()
}

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry(broker: &str) -> (Registry, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let topic = format!("_bench_catalog_{}", std::process::id());
    let child = Command::new(crate::e2e::MESHHOST)
        .args(["catalog", "serve", "--listen", &listen, "--bootstrap-servers", broker, "--topic", &topic])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start meshhost catalog serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(Instant::now() < deadline, "the catalog server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Registry(child), format!("http://{listen}"))
}

pub fn run(broker: &str, size: usize, pool: usize, rounds: usize) -> DecodeResult {
    let (_registry, url) = start_registry(broker);
    let client =
        Arc::new(RegistryClient::new(&RegistrySettings { url, basic_auth: None, retry_for: Duration::from_secs(10) }));
    let reader = Schema::parse(data::MOVIE_SCHEMA).unwrap();
    let older = Schema::parse(&older_schema()).unwrap();
    let older_id = client.register("bench-value", &older.to_json()).expect("register the older version");
    let reader_id = client.register("bench-value", data::MOVIE_SCHEMA).expect("register the reader version");

    let generator = Generator::new(size);
    let datums: Vec<Vec<u8>> = (0..pool as u64).map(|id| generator.value(id)).collect();
    let downgrade = Resolver::new(&reader, &older).unwrap();
    let framed: Vec<Vec<u8>> = datums.iter().map(|d| wire::frame(reader_id, d)).collect();
    let framed_older: Vec<Vec<u8>> =
        datums.iter().map(|d| wire::frame(older_id, &downgrade.convert(d).unwrap())).collect();

    let mut avro = SourceDecoder::new(Format::Avro, None, SchemaChangePolicy::DeadLetter);
    let mut confluent = SourceDecoder::new(Format::ConfluentAvro, Some(client.clone()), SchemaChangePolicy::DeadLetter);
    let mut resolved = SourceDecoder::new(Format::ConfluentAvro, Some(client), SchemaChangePolicy::DeadLetter);
    // The reader's datum from all three (from the older writer: rating's default filled in).
    let upgrade = Resolver::new(&older, &reader).unwrap();
    for (i, datum) in datums.iter().enumerate().take(100) {
        assert_eq!(&avro.decode(&reader, datum).unwrap(), datum);
        assert_eq!(&confluent.decode(&reader, &framed[i]).unwrap(), datum);
        let expected = upgrade.convert(&framed_older[i][wire::HEADER_LEN..]).unwrap();
        assert_eq!(resolved.decode(&reader, &framed_older[i]).unwrap(), expected);
    }
    let time = |decoder: &mut SourceDecoder, values: &[Vec<u8>]| {
        let start = Instant::now();
        for value in values {
            std::hint::black_box(decoder.decode(&reader, value).unwrap());
        }
        start.elapsed().as_nanos() as f64 / values.len() as f64
    };
    let (mut a, mut c, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) * 3 {
        a.push(time(&mut avro, &datums));
        c.push(time(&mut confluent, &framed));
        r.push(time(&mut resolved, &framed_older));
    }
    let result = DecodeResult { avro_ns: crate::best(&a), confluent_ns: crate::best(&c), resolved_ns: crate::best(&r) };
    eprintln!(
        "source decode {size} B: avro {:.0} ns/rec, confluent-avro {:.0} ns/rec, older writer resolved {:.0} ns/rec",
        result.avro_ns, result.confluent_ns, result.resolved_ns
    );
    result
}
