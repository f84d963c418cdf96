//! `meshhost run --dry-run --from-end N`: the last N records of every source partition through
//! the pipeline, printed edge by edge — what each source, processor port and sink would get, and
//! what would go to dead letters — without producing or committing anything. Stateful
//! processors start from an empty store of their own (a temporary one), not the pipeline's state.
//! It runs the one run loop, with a source that hands over the sample once and a sink that
//! collects what would be written.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::execute::Executor;
use super::run_loop::{Routes, RunLoop};
use super::Topology;
use crate::codec::SinkEncoder;
use crate::kafka::QuietContext;
use crate::observe::{Edge, EdgeObserver};
use crate::plugin::batch::Record;
use crate::sink::delivery::{BatchId, DeliveryTracker};
use crate::sink::{Destination, OutgoingRecord, Sink, SinkError};
use crate::source::{Source, SourceError, SourcePartition, SourceRecord};
use crate::state::StateStore;

/// A dry run could not read its sample.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("Kafka: {what}")]
    Kafka {
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("{0}")]
    Execute(String),
    #[error("cannot open a scratch state store")]
    State(#[source] crate::state::StateError),
    #[error("cannot write the output")]
    Output(#[source] std::io::Error),
}

/// What the dry run saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DryRunSummary {
    pub read: usize,
    /// Per edge (first name): records that crossed it.
    pub edges: Vec<(String, usize)>,
    /// Per sink: records it would write.
    pub sinks: Vec<(String, usize)>,
    pub dead_letters: usize,
}

/// Run the last `from_end` records of each source partition through `topology`, writing one
/// JSON line per edge record, sink record and dead letter to `out`.
pub fn dry_run(
    mut topology: Topology,
    bootstrap_servers: &str,
    from_end: i64,
    out: &mut impl Write,
) -> Result<DryRunSummary, DryRunError> {
    let batch = sample(&topology, bootstrap_servers, from_end)?;
    // Sinks write nothing: no schema to register; values stay Avro (printed decoded).
    for sink in &mut topology.sinks {
        sink.encoder = SinkEncoder::Avro;
    }
    let scratch = tempfile_dir()?;
    for node in &mut topology.processors {
        if node.instance.is_stateful() {
            let store = StateStore::open(&scratch.join(format!("{}.redb", node.id))).map_err(DryRunError::State)?;
            node.instance.attach_state(Arc::new(store));
        }
    }
    let edges = topology.edges();
    let sinks: Vec<(String, super::EdgeSchema)> =
        topology.sinks.iter().map(|s| (s.id.clone(), s.schema.clone())).collect();
    let seen = Arc::new(Seen {
        edges: edges.clone(),
        lines: Mutex::new(Vec::new()),
        counts: Mutex::new(vec![0; edges.len()]),
    });
    let mut executor = Executor::new(topology);
    executor.observe_edges(seen.clone());
    let source_ids: Vec<String> = executor.topology().sources.iter().map(|s| s.id.clone()).collect();
    // The one run loop, with effects that print: sinks and dead letters are collected in order,
    // nothing is produced, and the source acknowledges nothing.
    let tracker = DeliveryTracker::default();
    let sink = CollectingSink { tracker: &tracker, sent: Mutex::default() };
    let routes = Routes {
        source_ids: source_ids.clone(),
        source_topics: source_ids.clone(),
        sink_topics: sinks.iter().map(|(id, _)| format!("{SINK_PREFIX}{id}")).collect(),
        keeps_partition: vec![false; sinks.len()],
        durable_positions: vec![true; source_ids.len()],
        dead_letter_topic: Some(DEAD_LETTERS.into()),
        changelogs: (0..executor.topology().processors.len()).map(|_| None).collect(),
    };
    let read = batch.len();
    let source = SampleSource { records: Mutex::new(Some(batch)) };
    let run_loop = RunLoop {
        source: &source,
        sink: &sink,
        tracker: &tracker,
        routes: &routes,
        delivered: &Mutex::default(),
        breaker: None,
        metrics: None,
        batch_size: read.max(1),
    };
    run_loop
        .run(&mut executor, &std::sync::atomic::AtomicBool::new(false), |_, _, _| {})
        .map_err(|e| DryRunError::Execute(e.to_string()))?;
    let mut lines = seen.lines.lock().expect("never poisoned").clone();
    let mut sink_counts = vec![0; sinks.len()];
    let mut dead_letters = 0;
    for (topic, record) in sink.sent.into_inner().expect("never poisoned") {
        if let Some(index) = sinks.iter().position(|(id, _)| topic == format!("{SINK_PREFIX}{id}")) {
            let (id, schema) = &sinks[index];
            lines.push(crate::observe::tap::json_line("sink", id, &schema.parsed, &record));
            sink_counts[index] += 1;
        } else {
            lines.push(dead_letter_line(&record.headers));
            dead_letters += 1;
        }
    }
    for line in &lines {
        writeln!(out, "{line}").map_err(DryRunError::Output)?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let counts = seen.counts.lock().expect("never poisoned");
    Ok(DryRunSummary {
        read,
        edges: edges.iter().zip(counts.iter()).map(|(e, n)| (e.names[0].clone(), *n)).collect(),
        sinks: sinks.iter().zip(&sink_counts).map(|((id, _), n)| (id.clone(), *n)).collect(),
        dead_letters,
    })
}

/// Where the dry run's collecting sink is told to put sink records (`sink:<id>`) and dead letters.
const SINK_PREFIX: &str = "sink:";
const DEAD_LETTERS: &str = "dead letters";

/// A dead letter as the dry run prints it, from the headers the run loop gave it (the source
/// topic header holds the source id: the dry run's routes name sources by id).
fn dead_letter_line(headers: &[meshhost_sdk::Header]) -> String {
    use super::failure::header;
    let text = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let number = |name: &str| text(name).and_then(|t| t.parse::<i64>().ok());
    serde_json::json!({
        "dead_letter": {
            "stage": text(header::STAGE),
            "processor": text(header::PROCESSOR).filter(|p| !p.is_empty()),
            "error": text(header::ERROR),
            "source": text(header::SOURCE_TOPIC),
            "partition": number(header::SOURCE_PARTITION),
            "offset": number(header::SOURCE_OFFSET),
        }
    })
    .to_string()
}

/// The sampled records, handed over in one batch; then the loop is told to stop.
struct SampleSource {
    records: Mutex<Option<Vec<SourceRecord>>>,
}

impl Source for SampleSource {
    type Record<'a> = SourceRecord;

    fn poll(
        &self,
        _max: usize,
        stop: &std::sync::atomic::AtomicBool,
        batch: &mut Vec<SourceRecord>,
    ) -> Result<(), SourceError> {
        match self.records.lock().expect("never poisoned").take() {
            Some(records) => batch.extend(records),
            None => stop.store(true, std::sync::atomic::Ordering::Relaxed),
        }
        Ok(())
    }

    fn acknowledge(&self, _: &HashMap<SourcePartition, i64>, _: bool) -> Result<(), SourceError> {
        Ok(())
    }
}

/// Keeps what the loop sends, in order, each delivered at once.
struct CollectingSink<'t> {
    tracker: &'t DeliveryTracker,
    sent: Mutex<Vec<(String, Record)>>,
}

impl Sink for CollectingSink<'_> {
    fn send(&self, destination: Destination<'_>, record: OutgoingRecord<'_>, batch: BatchId) -> Result<(), SinkError> {
        let record = Record {
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            headers: record.headers.to_vec(),
            timestamp: record.timestamp,
        };
        self.sent.lock().expect("never poisoned").push((destination.topic.to_string(), record));
        self.tracker.delivered(batch, None);
        Ok(())
    }

    fn flush(&self, _: Duration) -> Result<(), SinkError> {
        Ok(())
    }
}

fn tempfile_dir() -> Result<std::path::PathBuf, DryRunError> {
    let dir = std::env::temp_dir().join(format!("meshhost-dry-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(DryRunError::Output)?;
    Ok(dir)
}

/// The last `from_end` records of every partition of every source topic, without a group.
fn sample(topology: &Topology, bootstrap_servers: &str, from_end: i64) -> Result<Vec<SourceRecord>, DryRunError> {
    let kafka = |what: &str| {
        let what = what.to_string();
        move |source| DryRunError::Kafka { what, source }
    };
    let consumer: BaseConsumer<QuietContext> = crate::kafka::client_config(bootstrap_servers, &[])
        .set("group.id", format!("meshhost-dry-run-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create_with_context(QuietContext::default())
        .map_err(kafka("cannot create a consumer"))?;
    let timeout = Duration::from_secs(10);
    let metadata =
        consumer.fetch_metadata(None, timeout).map_err(kafka(&format!("cannot reach Kafka at {bootstrap_servers}")))?;
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    let mut topics: Vec<&str> = topology.sources.iter().map(|s| s.topic.as_str()).collect();
    topics.dedup();
    for topic in topics {
        let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else { continue };
        for partition in found.partitions() {
            let (low, high) =
                consumer.fetch_watermarks(topic, partition.id(), timeout).map_err(kafka("cannot read offsets"))?;
            if high > low {
                let start = (high - from_end).max(low);
                assignment
                    .add_partition_offset(topic, partition.id(), Offset::Offset(start))
                    .map_err(kafka("bad partition"))?;
                ends.insert((topic.to_string(), partition.id()), high);
            }
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return Ok(records);
    }
    consumer.assign(&assignment).map_err(kafka("cannot assign"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done: HashMap<(String, i32), bool> = ends.keys().map(|k| (k.clone(), false)).collect();
    while done.values().any(|d| !d) && Instant::now() < deadline {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.map_err(kafka("cannot read"))?;
        let key = (message.topic().to_string(), message.partition());
        if message.offset() + 1 >= ends[&key] {
            done.insert(key, true);
        }
        for (index, _) in topology.sources.iter().enumerate().filter(|(_, s)| s.topic == message.topic()) {
            records.push(crate::source::kafka::owned_record(index, &message));
        }
    }
    Ok(records)
}

/// Every record crossing an edge, as a JSON line.
struct Seen {
    edges: Vec<Edge>,
    lines: Mutex<Vec<String>>,
    counts: Mutex<Vec<usize>>,
}

impl EdgeObserver for Seen {
    fn wants(&self, _: usize) -> bool {
        true
    }

    fn record(&self, edge: usize, record: &Record) {
        let edge_of = &self.edges[edge];
        let line = crate::observe::tap::json_line("edge", &edge_of.names[0], &edge_of.schema, record);
        self.lines.lock().expect("never poisoned").push(line);
        self.counts.lock().expect("never poisoned")[edge] += 1;
    }
}
