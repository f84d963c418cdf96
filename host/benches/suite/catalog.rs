//! The catalog's writes: registrations and source publishes per second and their p99, against
//! one `meshhost catalog serve` and two on one topic, sequential and from 16 clients at once.
//! The baseline is what the log allows: one acknowledged produce to the same broker, then the
//! next (a write cannot answer before its record is in the log).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use meshhost::kafka::block_on;

use crate::e2e::MESHHOST;
use crate::kafka::unique;

/// A `meshhost catalog serve`, stopped when dropped.
pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Start a server on `topic` and wait until it answers.
pub fn serve(broker: &str, topic: &str) -> Server {
    let listen = format!("127.0.0.1:{}", free_port());
    let child = Command::new(MESHHOST)
        .args(["catalog", "serve", "--listen", &listen, "--bootstrap-servers", broker, "--topic", topic])
        .env("MESHHOST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start meshhost catalog serve");
    let server = Server { child, url: format!("http://{listen}") };
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent().get(&format!("{}/subjects", server.url)).call().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "the catalog server on {listen} did not answer within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    server
}

/// A record schema no other request of the run uses (so every registration is a new one).
fn schema(name: &str) -> String {
    let schema = format!(r#"{{"type":"record","name":"{name}","fields":[{{"name":"id","type":"long"}}]}}"#);
    serde_json::json!({ "schema": schema }).to_string()
}

/// What one kind of write does: register a new subject, or publish a source on one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Register,
    Publish,
}

/// One write; its id (0 for a publish).
fn write(agent: &ureq::Agent, url: &str, kind: Write, name: &str) -> u32 {
    let (path, body, put) = match kind {
        Write::Register => (format!("{url}/subjects/{name}-value/versions"), schema(name), false),
        Write::Publish => (
            format!("{url}/catalog/sources/{name}"),
            serde_json::json!({"name": name, "topic": name, "format": "confluent-avro", "subject": "bench-shared-value"})
                .to_string(),
            true,
        ),
    };
    let request = if put { agent.put(&path) } else { agent.post(&path) };
    let mut response = request
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .send(body.as_bytes())
        .expect("catalog request");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "{path} answered {status}: {text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    answer["id"].as_u64().unwrap_or(0) as u32
}

/// Writes per second and the p99 latency (ms) of one round.
pub struct Round {
    pub per_second: f64,
    pub p99_ms: f64,
}

/// `clients` clients, each doing `per_client` writes of `kind` in a row, spread over `urls`.
/// Every eighth registration of every client races the others on one shared subject with one
/// shared schema; the ids the servers return for it must all be the same.
pub fn round(urls: &[String], kind: Write, clients: usize, per_client: usize) -> Round {
    let run = unique("w").replace('-', "_");
    let start = Arc::new(Barrier::new(clients));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|client| {
            let (urls, run, start) = (urls.to_vec(), run.clone(), start.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut latencies = Vec::with_capacity(per_client);
                let mut shared_ids = Vec::new();
                start.wait();
                for i in 0..per_client {
                    let url = &urls[(client + i) % urls.len()];
                    let racing = kind == Write::Register && clients > 1 && i % 8 == 0;
                    let name = if racing { format!("{run}_shared") } else { format!("{run}_{client}_{i}") };
                    let t = Instant::now();
                    let id = write(&agent, url, kind, &name);
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                    if racing {
                        shared_ids.push(id);
                    }
                }
                (latencies, shared_ids)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut shared_ids = Vec::new();
    for worker in workers {
        let (l, s) = worker.join().expect("client thread");
        latencies.extend(l);
        shared_ids.extend(s);
    }
    let seconds = started.elapsed().as_secs_f64();
    shared_ids.dedup();
    assert!(shared_ids.len() <= 1, "one schema under one subject got several ids: {shared_ids:?}");
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[((latencies.len() as f64 * 0.99).ceil() as usize).clamp(1, latencies.len()) - 1];
    Round { per_second: latencies.len() as f64 / seconds, p99_ms: p99 }
}

/// Every server answers the same subjects, versions and ids.
pub fn assert_same(urls: &[String]) {
    let agent = agent();
    let snapshot = |url: &str| -> Vec<(String, String)> {
        let text = agent.get(&format!("{url}/subjects")).call().unwrap().body_mut().read_to_string().unwrap();
        let subjects: Vec<String> = serde_json::from_str(&text).expect("subjects");
        subjects
            .into_iter()
            .map(|subject| {
                let versions = agent
                    .get(&format!("{url}/subjects/{subject}/versions/latest"))
                    .call()
                    .unwrap()
                    .body_mut()
                    .read_to_string()
                    .unwrap();
                (subject, versions)
            })
            .collect()
    };
    let first = snapshot(&urls[0]);
    for url in &urls[1..] {
        assert_eq!(snapshot(url), first, "servers {} and {url} disagree", urls[0]);
    }
}

/// The log's floor: acknowledged produces of catalog-sized records in a row, per second.
pub fn produce_floor(broker: &str, records: usize) -> f64 {
    let topic = unique("bench-catalog-floor");
    crate::kafka::create_topics(broker, &[&topic]);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let value = schema("floor");
    let send = |i: usize| {
        let key = format!("{{\"type\":\"schema\",\"subject\":\"s{i}\"}}");
        block_on(
            producer.send(FutureRecord::to(&topic).key(&key).payload(&value).partition(0), Duration::from_secs(10)),
        )
        .expect("produce");
    };
    send(0); // connect and fetch metadata before timing
    let started = Instant::now();
    for i in 1..=records {
        send(i);
    }
    records as f64 / started.elapsed().as_secs_f64()
}
