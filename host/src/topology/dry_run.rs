//! `meshhost run --dry-run --from-end N`: the last N records of every source partition through
//! the pipeline, printed edge by edge — what each source, processor port and sink would get, and
//! what would go to dead letters — without producing or committing anything. Stateful
//! processors start from an empty store of their own (a temporary one), not the pipeline's state.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::execute::{EdgeObserver, Effects, Executor};
use super::failure::Failure;
use super::{Edge, Topology};
use crate::codec::SinkEncoder;
use crate::kafka::QuietContext;
use crate::plugin::batch::Record;
use crate::source::SourceRecord;
use crate::state::{StateStore, StateWrites};

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
    let mut effects = DryEffects {
        sinks: &sinks,
        source_ids: &source_ids,
        batch: &batch,
        lines: Vec::new(),
        sink_counts: vec![0; sinks.len()],
        dead_letters: 0,
    };
    executor.run(&batch, &mut effects).map_err(|e| match e {
        super::execute::ExecuteError::Effect(never) => match never {},
        other => DryRunError::Execute(other.to_string()),
    })?;
    for line in seen.lines.lock().expect("never poisoned").iter().chain(&effects.lines) {
        writeln!(out, "{line}").map_err(DryRunError::Output)?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let counts = seen.counts.lock().expect("never poisoned");
    Ok(DryRunSummary {
        read: batch.len(),
        edges: edges.iter().zip(counts.iter()).map(|(e, n)| (e.names[0].clone(), *n)).collect(),
        sinks: sinks.iter().zip(&effects.sink_counts).map(|((id, _), n)| (id.clone(), *n)).collect(),
        dead_letters: effects.dead_letters,
    })
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
            records.push(crate::kafka::owned_record(index, &message));
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

/// Sink records and dead letters, printed instead of produced.
struct DryEffects<'a> {
    sinks: &'a [(String, super::EdgeSchema)],
    source_ids: &'a [String],
    batch: &'a [SourceRecord],
    lines: Vec<String>,
    sink_counts: Vec<usize>,
    dead_letters: usize,
}

impl Effects for DryEffects<'_> {
    type Error = std::convert::Infallible;

    fn send(&mut self, sink: usize, _origin: usize, record: Record) -> Result<(), Self::Error> {
        let (id, schema) = &self.sinks[sink];
        self.lines.push(crate::observe::tap::json_line("sink", id, schema, &record));
        self.sink_counts[sink] += 1;
        Ok(())
    }

    fn dead_letter(&mut self, origin: usize, failure: Failure) -> Result<(), Self::Error> {
        let consumed = &self.batch[origin];
        let source = &self.source_ids[consumed.source];
        self.lines.push(
            serde_json::json!({
                "dead_letter": {
                    "stage": failure.stage.to_string(),
                    "processor": failure.processor,
                    "error": failure.error,
                    "source": source,
                    "partition": consumed.partition,
                    "offset": consumed.position,
                }
            })
            .to_string(),
        );
        self.dead_letters += 1;
        Ok(())
    }

    fn state_written(&mut self, _: usize, _: u32, _: &StateWrites) -> Result<(), Self::Error> {
        Ok(())
    }
}
