//! Running a planned topology against Kafka.
//!
//! One loop polls a batch from the consumer, pushes it through the processors in memory (no
//! Kafka hop between processors), and hands the results to the producer. Deliveries are
//! tracked per batch; a batch's offsets are committed only when it and every batch before it
//! are fully delivered — to sinks or to the dead-letter topic — so nothing is lost
//! (at-least-once). A bounded number of batches in flight gives backpressure.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header as KafkaHeader, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::{Target, Topology};
use crate::codec;
use crate::plugin::batch::{Content, Header, Processed, Record};
use crate::plugin::bindings::ValueFormat;
use crate::state::{StateStore, StateWrites};

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Most records per batch.
    pub batch_size: usize,
    /// Extra librdkafka properties.
    pub properties: Vec<(String, String)>,
    pub dead_letter_topic: Option<String>,
    /// Where stateful processors keep their local stores.
    pub state_dir: std::path::PathBuf,
}

/// A stateful processor's durable state while running.
pub struct ProcessorState {
    pub store: Arc<StateStore>,
    /// The compacted topic that mirrors the store; partition = input partition.
    pub changelog_topic: String,
    pub partitions: i32,
}

/// Batches delivered-but-not-committed at most; beyond it the loop waits for the producer.
const MAX_BATCHES_IN_FLIGHT: usize = 32;

/// Counts reported when the run ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    pub consumed: u64,
    pub produced: u64,
    pub dead_lettered: u64,
}

/// Run until `stop` is set, then drain, flush, commit and return.
pub fn run(mut topology: Topology, settings: &RunSettings, stop: &AtomicBool) -> anyhow::Result<RunStats> {
    let mut common = ClientConfig::new();
    common.set("bootstrap.servers", &settings.bootstrap_servers);
    for (key, value) in &settings.properties {
        common.set(key, value);
    }
    let mut consumer_config = common.clone();
    if !settings.properties.iter().any(|(key, _)| key == "fetch.queue.backoff.ms") {
        // librdkafka 2.x pauses a partition's fetching for this long whenever its prefetch
        // queue is full (default 1000 ms): the pipeline then idles in 1 s steps. Measured:
        // 2.4-2.9x throughput at 10 ms (scripts/bench.sh).
        consumer_config.set("fetch.queue.backoff.ms", "10");
    }
    let consumer: BaseConsumer = consumer_config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("cannot create the Kafka consumer")?;
    let tracker = Arc::new(Tracker::default());
    let producer: ThreadedProducer<DeliveryTracking> = common
        .clone()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .create_with_context(DeliveryTracking { tracker: tracker.clone() })
        .context("cannot create the Kafka producer")?;

    let partition_counts = check_topics(&consumer, &topology, settings)?;
    // Asking the producer for metadata now gets its idempotent producer id while the state is
    // restored, instead of holding the first records back on a 500 ms timer.
    if let Some(sink) = topology.sinks.first() {
        let _ = producer.client().fetch_metadata(Some(&sink.topic), Duration::from_secs(5));
    }
    let problems = super::check_partitions(&topology, |topic| partition_counts.get(topic).copied());
    if !problems.is_empty() {
        return Err(problems.into());
    }
    for node in topology.processors.iter_mut().filter(|p| p.instance.is_stateful()) {
        let partitions = node.source_topics.iter().filter_map(|t| partition_counts.get(t)).copied().max().unwrap_or(1) as i32;
        let state = open_state(settings, &node.id, partitions)?;
        node.instance.attach_state(state.store.clone());
        node.state = Some(state);
    }
    let topics: Vec<&str> = topology.sources.iter().map(|s| s.topic.as_str()).collect();
    consumer.subscribe(&topics).context("cannot subscribe to the source topics")?;
    tracing::info!(group = %settings.group_id, topics = ?topics, "pipeline running");

    let mut stats = RunStats::default();
    let mut committed: HashMap<(String, i32), i64> = HashMap::new();
    let mut to_commit: HashMap<(String, i32), i64> = HashMap::new();
    let mut batch: Vec<Consumed> = Vec::with_capacity(settings.batch_size);
    while !stop.load(Ordering::Relaxed) {
        poll_batch(&consumer, &topology, settings.batch_size, &mut batch, stop)?;
        if !batch.is_empty() {
            stats.consumed += batch.len() as u64;
            let seq = tracker.begin(next_offsets(&batch, &topology));
            let mut out = Outbox::new(&producer, &tracker, seq, settings.dead_letter_topic.as_deref(), &batch);
            process_batch(&mut topology, &batch, &mut out)?;
            stats.produced += out.produced;
            stats.dead_lettered += out.dead_lettered;
            tracker.seal(seq, out.sent);
            batch.clear();
            tracker.wait_for_room(MAX_BATCHES_IN_FLIGHT);
        }
        tracker.collect_completed(&mut to_commit)?;
        commit(&consumer, &mut committed, &to_commit, CommitMode::Async);
    }

    tracing::info!("stopping: draining in-flight records");
    producer.flush(Duration::from_secs(60)).context("could not flush the producer")?;
    tracker.wait_for_room(1);
    tracker.collect_completed(&mut to_commit)?;
    commit(&consumer, &mut committed, &to_commit, CommitMode::Sync);
    for node in &topology.processors {
        if let Some(state) = &node.state {
            mark_clean(&consumer, state)?;
        }
    }
    tracing::info!(consumed = stats.consumed, produced = stats.produced, dead_lettered = stats.dead_lettered, "pipeline stopped");
    Ok(stats)
}

/// Fail early, with a clear message, when a topic the pipeline needs does not exist. Returns
/// the partition count of every topic.
fn check_topics(consumer: &BaseConsumer, topology: &Topology, settings: &RunSettings) -> anyhow::Result<HashMap<String, usize>> {
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| format!("cannot reach Kafka at {}", settings.bootstrap_servers))?;
    let existing: Vec<&str> = metadata.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name()).collect();
    let mut needed: Vec<String> = Vec::new();
    needed.extend(topology.sources.iter().map(|s| s.topic.clone()));
    needed.extend(topology.sinks.iter().map(|s| s.topic.clone()));
    needed.extend(settings.dead_letter_topic.clone());
    let missing: Vec<&String> = needed.iter().filter(|t| !existing.contains(&t.as_str())).collect();
    if !missing.is_empty() {
        anyhow::bail!("topics missing on {}: {}; create them first", settings.bootstrap_servers, missing.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "));
    }
    Ok(metadata.topics().iter().map(|t| (t.name().to_string(), t.partitions().len())).collect())
}

/// Open a stateful processor's local store and bring it up to date with its changelog topic
/// (created if missing): a partition whose store was not left by a clean shutdown at the
/// changelog's current end is rebuilt from the changelog.
fn open_state(settings: &RunSettings, processor: &str, partitions: i32) -> anyhow::Result<ProcessorState> {
    let changelog_topic = format!("{}-{processor}-changelog", settings.group_id);
    crate::kafka::ensure_topic(&settings.bootstrap_servers, &changelog_topic, partitions, &[("cleanup.policy", "compact")])?;
    let store = Arc::new(StateStore::open(&settings.state_dir.join(format!("{processor}.redb")))?);
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", format!("{}-restore", settings.group_id))
        .set("enable.auto.commit", "false")
        .create()?;
    for partition in 0..partitions {
        let (low, high) = reader.fetch_watermarks(&changelog_topic, partition, Duration::from_secs(10))?;
        if store.clean_end(partition as u32)? == Some(high) {
            tracing::info!(processor, partition, keys = store.len(partition as u32)?, "local state is up to date with the changelog");
            continue;
        }
        let started = std::time::Instant::now();
        store.clear(partition as u32)?;
        let records = restore_partition(&reader, &store, &changelog_topic, partition, low, high)?;
        tracing::info!(
            processor,
            partition,
            keys = store.len(partition as u32)?,
            changelog_records = records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored state from the changelog"
        );
    }
    // Until the next clean shutdown, the local store is not to be trusted on its own.
    let dirty: Vec<(u32, Option<i64>)> = (0..partitions as u32).map(|p| (p, None)).collect();
    store.set_clean_ends(&dirty)?;
    Ok(ProcessorState { store, changelog_topic, partitions })
}

/// Replay changelog partition `partition` (offsets `low..high`) into the store.
fn restore_partition(reader: &BaseConsumer, store: &StateStore, topic: &str, partition: i32, low: i64, high: i64) -> anyhow::Result<u64> {
    if high <= low {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
    reader.assign(&assignment)?;
    let mut writes = StateWrites::new();
    let mut records = 0;
    let mut last_progress = std::time::Instant::now();
    loop {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_progress = std::time::Instant::now();
                records += 1;
                if let Some(key) = message.key() {
                    writes.insert(key.to_vec(), message.payload().map(<[u8]>::to_vec));
                }
                if writes.len() >= 10_000 {
                    store.apply(partition as u32, &std::mem::take(&mut writes))?;
                }
                if message.offset() >= high - 1 {
                    break;
                }
            }
            Some(Err(error)) => anyhow::bail!("cannot read changelog {topic}/{partition}: {error}"),
            None if last_progress.elapsed() > Duration::from_secs(30) => {
                anyhow::bail!("changelog {topic}/{partition} stopped before its end offset {high}")
            }
            None => {}
        }
    }
    store.apply(partition as u32, &writes)?;
    reader.unassign()?;
    Ok(records)
}

/// After a clean shutdown: record that the local store matches the changelog's end.
fn mark_clean(consumer: &BaseConsumer, state: &ProcessorState) -> anyhow::Result<()> {
    let mut ends = Vec::new();
    for partition in 0..state.partitions {
        let (_, high) = consumer.fetch_watermarks(&state.changelog_topic, partition, Duration::from_secs(10))?;
        ends.push((partition as u32, Some(high)));
    }
    state.store.set_clean_ends(&ends)?;
    Ok(())
}

fn commit(consumer: &BaseConsumer, committed: &mut HashMap<(String, i32), i64>, to_commit: &HashMap<(String, i32), i64>, mode: CommitMode) {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in to_commit {
        if committed.get(&(topic.clone(), *partition)) != Some(offset) {
            let _ = list.add_partition_offset(topic, *partition, Offset::Offset(*offset));
        }
    }
    if list.count() == 0 {
        return;
    }
    match consumer.commit(&list, mode) {
        Ok(()) => committed.extend(to_commit.iter().map(|(k, v)| (k.clone(), *v))),
        // After a rebalance a partition may belong to another member: it re-reads from the
        // last commit (at-least-once), so a failed commit loses nothing.
        Err(error) => tracing::warn!(%error, "offset commit failed"),
    }
}

/// A consumed record, as librdkafka holds it (not copied: dead letters send these bytes), and
/// the index of its source.
struct Consumed<'c> {
    source: usize,
    message: BorrowedMessage<'c>,
}

impl Consumed<'_> {
    fn topic(&self) -> &str {
        self.message.topic()
    }

    fn partition(&self) -> i32 {
        self.message.partition()
    }

    fn offset(&self) -> i64 {
        self.message.offset()
    }

    fn key(&self) -> Option<&[u8]> {
        self.message.key()
    }

    fn value(&self) -> Option<&[u8]> {
        self.message.payload()
    }

    fn timestamp(&self) -> Option<i64> {
        self.message.timestamp().to_millis()
    }

    fn headers(&self) -> Vec<Header> {
        self.message
            .headers()
            .map(|headers| headers.iter().map(|h| Header { key: h.key.to_string(), value: h.value.map(<[u8]>::to_vec) }).collect())
            .unwrap_or_default()
    }
}

/// The offset to commit per (topic, partition) once the batch is delivered: one past the last.
fn next_offsets(batch: &[Consumed<'_>], topology: &Topology) -> Vec<((String, i32), i64)> {
    let mut next: Vec<((usize, i32), i64)> = Vec::new();
    for consumed in batch {
        let partition = (consumed.source, consumed.partition());
        match next.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, offset)) => *offset = (*offset).max(consumed.offset() + 1),
            None => next.push((partition, consumed.offset() + 1)),
        }
    }
    next.into_iter().map(|((source, partition), offset)| ((topology.sources[source].topic.clone(), partition), offset)).collect()
}

fn poll_batch<'c>(consumer: &'c BaseConsumer, topology: &Topology, max: usize, batch: &mut Vec<Consumed<'c>>, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut timeout = Duration::from_millis(100);
    while batch.len() < max && !stop.load(Ordering::Relaxed) {
        match consumer.poll(timeout) {
            None => break,
            Some(Ok(message)) => {
                if let Some(source) = topology.sources.iter().position(|s| s.topic == message.topic()) {
                    batch.push(Consumed { source, message });
                }
                // Take what is already fetched without waiting again.
                timeout = Duration::ZERO;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(error)) => {
                tracing::warn!(%error, "consumer error");
                break;
            }
        }
    }
    Ok(())
}

/// A record on its way through the DAG, with the consumed record it derives from.
struct Item {
    origin: usize,
    record: Record,
}

/// Push one batch through the DAG.
fn process_batch(topology: &mut Topology, batch: &[Consumed<'_>], out: &mut Outbox<'_>) -> anyhow::Result<()> {
    let mut processor_inbox: Vec<Vec<Vec<Item>>> =
        topology.processors.iter().map(|p| p.inputs.iter().map(|_| Vec::new()).collect()).collect();
    let mut sink_inbox: Vec<Vec<Item>> = topology.sinks.iter().map(|_| Vec::new()).collect();
    let deliver = |targets: &[Target], item: Item, processor_inbox: &mut Vec<Vec<Vec<Item>>>, sink_inbox: &mut Vec<Vec<Item>>| {
        let Some((last, rest)) = targets.split_last() else { return };
        let send = |target: &Target, item: Item, processor_inbox: &mut Vec<Vec<Vec<Item>>>, sink_inbox: &mut Vec<Vec<Item>>| match *target {
            Target::Processor { index, input } => processor_inbox[index][input as usize].push(item),
            Target::Sink { index } => sink_inbox[index].push(item),
        };
        for target in rest {
            send(target, Item { origin: item.origin, record: item.record.clone() }, processor_inbox, sink_inbox);
        }
        send(last, item, processor_inbox, sink_inbox);
    };

    for (origin, consumed) in batch.iter().enumerate() {
        let source = &topology.sources[consumed.source];
        let value = match consumed.value() {
            None => None, // a tombstone flows as is
            Some(bytes) => match codec::decode(source.format, &source.schema.parsed, bytes) {
                Ok(datum) => Some(datum),
                Err(error) => {
                    out.dead_letter(origin, "decode", None, &error)?;
                    continue;
                }
            },
        };
        let record = Record { key: consumed.key().map(<[u8]>::to_vec), value, headers: consumed.headers(), timestamp: consumed.timestamp() };
        deliver(&source.targets, Item { origin, record }, &mut processor_inbox, &mut sink_inbox);
    }

    for index in 0..topology.processors.len() {
        let inboxes = std::mem::take(&mut processor_inbox[index]);
        for (input, items) in inboxes.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let emitted = run_processor(&mut topology.processors[index], input as u32, items, batch, out)?;
            for (port, item) in emitted {
                let targets = topology.processors[index].outputs[port].targets.clone();
                deliver(&targets, item, &mut processor_inbox, &mut sink_inbox);
            }
        }
    }

    for (index, items) in sink_inbox.into_iter().enumerate() {
        let sink = &topology.sinks[index];
        for item in items {
            let value = match item.record.value {
                None => None,
                Some(datum) => match codec::encode(sink.format, &sink.schema.parsed, datum) {
                    Ok(value) => Some(value),
                    Err(error) => {
                        out.dead_letter(item.origin, "encode", None, &format!("sink {}: {error}", sink.id))?;
                        continue;
                    }
                },
            };
            out.send(&sink.topic, item.record.key.as_deref(), value.as_deref(), &item.record.headers, item.record.timestamp)?;
        }
    }
    Ok(())
}

/// Call one processor with the items of one input port; returns (output port, item) pairs.
/// Failures, traps and invalid outputs go to the dead-letter topic.
fn run_processor(
    node: &mut super::ProcessorNode,
    input: u32,
    items: Vec<Item>,
    batch: &[Consumed<'_>],
    out: &mut Outbox<'_>,
) -> anyhow::Result<Vec<(usize, Item)>> {
    let mut origins = Vec::with_capacity(items.len());
    let mut records = Vec::with_capacity(items.len());
    for item in items {
        let mut record = item.record;
        if node.format == ValueFormat::Json {
            if let Some(datum) = &record.value {
                match codec::avro_to_json(&node.inputs[input as usize].parsed, datum) {
                    Ok(json) => record.value = Some(json),
                    Err(error) => {
                        out.dead_letter(item.origin, "process", Some(&node.id), &error)?;
                        continue;
                    }
                }
            }
        }
        origins.push(item.origin);
        records.push(record);
    }
    if records.is_empty() {
        return Ok(Vec::new());
    }
    // A stateful processor's state is per partition, so each call gets one partition's records.
    let groups: Vec<(u32, Vec<Record>, Vec<usize>)> = if node.instance.is_stateful() {
        let mut by_partition: std::collections::BTreeMap<u32, (Vec<Record>, Vec<usize>)> = Default::default();
        for (record, origin) in records.into_iter().zip(origins) {
            let group = by_partition.entry(batch[origin].partition() as u32).or_default();
            group.0.push(record);
            group.1.push(origin);
        }
        by_partition.into_iter().map(|(partition, (records, origins))| (partition, records, origins)).collect()
    } else {
        vec![(0, records, origins)]
    };
    let mut emitted = Vec::new();
    for (partition, records, origins) in groups {
        emitted.extend(call_processor(node, partition, input, records, &origins, out)?);
    }
    Ok(emitted)
}

/// One `process` call (retried record by record after a trap), its state writes made durable,
/// and its results routed.
fn call_processor(
    node: &mut super::ProcessorNode,
    partition: u32,
    input: u32,
    mut records: Vec<Record>,
    origins: &[usize],
    out: &mut Outbox<'_>,
) -> anyhow::Result<Vec<(usize, Item)>> {
    // (index in `records` of the call's first record, how many it had, what it returned)
    let mut results: Vec<(usize, usize, Processed)> = Vec::new();
    match node.instance.process(partition, input, &records) {
        Ok((result, writes)) => {
            out.persist_state(node.state.as_ref(), partition, writes)?;
            results.push((0, records.len(), result));
        }
        // The instance was replaced. Retry the records one by one, so that only the ones
        // that make the plugin trap go to dead letters.
        Err(trap) if records.len() == 1 => out.dead_letter(origins[0], "process", Some(&node.id), &trap)?,
        Err(_) => {
            for (i, record) in records.iter().enumerate() {
                match node.instance.process(partition, input, std::slice::from_ref(record)) {
                    Ok((result, writes)) => {
                        out.persist_state(node.state.as_ref(), partition, writes)?;
                        results.push((i, 1, result));
                    }
                    Err(trap) => out.dead_letter(origins[i], "process", Some(&node.id), &trap)?,
                }
            }
        }
    }

    // An emit that reuses its origin takes the input record; only an origin used more than
    // once (one record out on two ports) is copied.
    let mut uses = vec![0u32; records.len()];
    for (first, _, result) in &results {
        for emit in result.emitted.iter().filter(|emit| !matches!(emit.content, Content::Record(_))) {
            if let Some(count) = uses.get_mut(first + emit.origin as usize) {
                *count += 1;
            }
        }
    }
    let mut take_input = |index: usize| {
        uses[index] -= 1;
        if uses[index] == 0 {
            std::mem::take(&mut records[index])
        } else {
            records[index].clone()
        }
    };

    // A record emitted unchanged on a port with its input's schema (a filter's output) was
    // already checked when it came in.
    let passes_through: Vec<bool> =
        node.outputs.iter().map(|port| port.schema.text == node.inputs[input as usize].text).collect();
    let mut emitted = Vec::new();
    for (first, len, result) in results {
        for failure in result.failures {
            match origins.get(first + failure.index as usize).filter(|_| (failure.index as usize) < len) {
                Some(&origin) => out.dead_letter(origin, "process", Some(&node.id), &failure.reason)?,
                None => tracing::error!(processor = %node.id, index = failure.index, reason = %failure.reason, "plugin reported a failure for a record it was not given"),
            }
        }
        for emit in result.emitted {
            let index = first + emit.origin as usize;
            let Some(&origin) = origins.get(index).filter(|_| (emit.origin as usize) < len) else {
                tracing::error!(processor = %node.id, origin = emit.origin, "plugin emitted a record with an origin outside the batch; dropped");
                continue;
            };
            let Some(port) = node.outputs.get(emit.port as usize) else {
                out.dead_letter(origin, "process", Some(&node.id), &format!("plugin emitted to output port {} but declared {}", emit.port, node.outputs.len()))?;
                continue;
            };
            let unchanged = matches!(emit.content, Content::Origin);
            let mut record = match emit.content {
                Content::Origin => take_input(index),
                Content::Value(value) => Record { value, ..take_input(index) },
                Content::Record(record) => *record,
            };
            let checked = node.format == ValueFormat::Avro && unchanged && passes_through[emit.port as usize];
            if let (Some(value), false) = (&record.value, checked) {
                let valid = match node.format {
                    ValueFormat::Json => codec::json_to_avro(&port.schema.parsed, value).map(Some),
                    ValueFormat::Avro => meshhost_sdk::avro::validate(&port.schema.parsed, value)
                        .map(|_| None)
                        .map_err(|e| e.to_string()),
                };
                match valid {
                    Ok(Some(datum)) => record.value = Some(datum),
                    Ok(None) => {}
                    Err(error) => {
                        out.dead_letter(origin, "encode", Some(&node.id), &format!("output {:?} does not match its declared schema: {error}", port.name))?;
                        continue;
                    }
                }
            }
            emitted.push((emit.port as usize, Item { origin, record }));
        }
    }
    Ok(emitted)
}

/// Sends one batch's records and dead letters, counting them against the batch.
struct Outbox<'a> {
    producer: &'a ThreadedProducer<DeliveryTracking>,
    tracker: &'a Tracker,
    seq: u64,
    dead_letter_topic: Option<&'a str>,
    batch: &'a [Consumed<'a>],
    produced: u64,
    dead_lettered: u64,
    /// Records handed to the producer, of every kind: the deliveries the batch waits for.
    sent: u64,
}

impl<'a> Outbox<'a> {
    fn new(producer: &'a ThreadedProducer<DeliveryTracking>, tracker: &'a Tracker, seq: u64, dead_letter_topic: Option<&'a str>, batch: &'a [Consumed<'a>]) -> Self {
        Outbox { producer, tracker, seq, dead_letter_topic, batch, produced: 0, dead_lettered: 0, sent: 0 }
    }

    /// Send a pipeline output record to a sink topic.
    fn send(&mut self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header], timestamp: Option<i64>) -> anyhow::Result<()> {
        self.send_to(topic, None, key, value, headers, timestamp)?;
        self.produced += 1;
        Ok(())
    }

    /// Make a call's state writes durable: into the local store, and into the changelog
    /// (counted against the batch, so its offsets commit only after the changelog has them).
    fn persist_state(&mut self, state: Option<&ProcessorState>, partition: u32, writes: StateWrites) -> anyhow::Result<()> {
        let Some(state) = state else { return Ok(()) };
        if writes.is_empty() {
            return Ok(());
        }
        state.store.apply(partition, &writes)?;
        for (key, value) in &writes {
            self.send_to(&state.changelog_topic, Some(partition as i32), Some(key), value.as_deref(), &[], None)?;
        }
        Ok(())
    }

    /// Produce one record, counted against the batch's deliveries.
    fn send_to(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        timestamp: Option<i64>,
    ) -> anyhow::Result<()> {
        let mut record: BaseRecord<'_, [u8], [u8], usize> = BaseRecord::with_opaque_to(topic, self.seq as usize);
        if !headers.is_empty() {
            let mut kafka_headers = OwnedHeaders::new_with_capacity(headers.len());
            for header in headers {
                kafka_headers = kafka_headers.insert(KafkaHeader { key: &header.key, value: header.value.as_deref() });
            }
            record = record.headers(kafka_headers);
        }
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        if let Some(timestamp) = timestamp {
            record = record.timestamp(timestamp);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The producer's own thread is delivering; give it a moment.
                    record = returned;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((error, _)) => {
                    self.tracker.fail(error.to_string());
                    anyhow::bail!("cannot produce to {topic}: {error}");
                }
            }
        }
        Ok(())
    }

    /// Send the consumed record at `origin`, as it was read, to the dead-letter topic.
    fn dead_letter(&mut self, origin: usize, stage: &str, processor: Option<&str>, error: &str) -> anyhow::Result<()> {
        let consumed = &self.batch[origin];
        tracing::debug!(topic = %consumed.topic(), partition = consumed.partition(), offset = consumed.offset(), stage, error, "dead letter");
        let Some(topic) = self.dead_letter_topic else {
            anyhow::bail!(
                "record {}/{}@{} failed at stage {stage}{}: {error}; no dead_letter topic is configured, so the pipeline stops rather than lose it",
                consumed.topic(),
                consumed.partition(),
                consumed.offset(),
                processor.map(|p| format!(" in processor {p}")).unwrap_or_default()
            );
        };
        let mut headers = consumed.headers();
        let mut add = |key: &str, value: String| headers.push(Header { key: key.to_string(), value: Some(value.into_bytes()) });
        add("meshhost.error", error.to_string());
        add("meshhost.stage", stage.to_string());
        add("meshhost.processor", processor.unwrap_or("").to_string());
        add("meshhost.source.topic", consumed.topic().to_string());
        add("meshhost.source.partition", consumed.partition().to_string());
        add("meshhost.source.offset", consumed.offset().to_string());
        self.send_to(topic, None, consumed.key(), consumed.value(), &headers, consumed.timestamp())?;
        self.dead_lettered += 1;
        Ok(())
    }
}

/// Producer context that reports each delivery to the [`Tracker`].
struct DeliveryTracking {
    tracker: Arc<Tracker>,
}

impl ClientContext for DeliveryTracking {}

impl ProducerContext for DeliveryTracking {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let error = result.as_ref().err().map(|(error, _)| error.to_string());
        self.tracker.delivered(batch as u64, error);
    }
}

/// Deliveries outstanding per batch, in consumption order.
#[derive(Default)]
struct Tracker {
    state: Mutex<TrackerState>,
    changed: Condvar,
}

#[derive(Default)]
struct TrackerState {
    /// Sequence number of `batches[0]`.
    first: u64,
    batches: VecDeque<BatchProgress>,
    /// A delivery that failed for good: the run stops without committing past it.
    failure: Option<String>,
}

struct BatchProgress {
    /// Deliveries outstanding: sends counted at `seal`, minus deliveries reported (which may
    /// arrive before the seal, taking it below zero meanwhile).
    pending: i64,
    /// All sends of the batch were issued.
    sealed: bool,
    /// Next offset per partition, committable once the batch is complete.
    offsets: Vec<((String, i32), i64)>,
}

impl Tracker {
    fn begin(&self, offsets: Vec<((String, i32), i64)>) -> u64 {
        let mut state = self.state.lock().unwrap();
        state.batches.push_back(BatchProgress { pending: 0, sealed: false, offsets });
        state.first + state.batches.len() as u64 - 1
    }

    fn delivered(&self, seq: u64, error: Option<String>) {
        let mut state = self.state.lock().unwrap();
        let first = state.first;
        let mut completed = false;
        if let Some(batch) = state.batches.get_mut((seq - first) as usize) {
            batch.pending -= 1;
            completed = batch.sealed && batch.pending == 0;
        }
        if let Some(error) = error {
            state.failure.get_or_insert(error);
            completed = true;
        }
        // Only a completed batch (or a failure) can unblock `wait_for_room`.
        if completed {
            self.changed.notify_all();
        }
    }

    /// All of batch `seq`'s records were handed to the producer: `sent` of them.
    fn seal(&self, seq: u64, sent: u64) {
        let mut state = self.state.lock().unwrap();
        let first = state.first;
        let batch = &mut state.batches[(seq - first) as usize];
        batch.pending += sent as i64;
        batch.sealed = true;
        self.changed.notify_all();
    }

    /// A record could not be handed to the producer: the run stops without committing past it.
    fn fail(&self, error: String) {
        self.state.lock().unwrap().failure.get_or_insert(error);
        self.changed.notify_all();
    }

    /// Block while more than `max` batches are incomplete.
    fn wait_for_room(&self, max: usize) {
        let mut state = self.state.lock().unwrap();
        loop {
            let incomplete = state.batches.iter().filter(|b| !(b.sealed && b.pending == 0)).count();
            if incomplete < max || state.failure.is_some() {
                return;
            }
            state = self.changed.wait_timeout(state, Duration::from_millis(100)).unwrap().0;
        }
    }

    /// Move the offsets of completed leading batches into `to_commit`.
    fn collect_completed(&self, to_commit: &mut HashMap<(String, i32), i64>) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap();
        if let Some(failure) = &state.failure {
            anyhow::bail!("a record could not be delivered: {failure}");
        }
        while state.batches.front().is_some_and(|b| b.sealed && b.pending == 0) {
            let batch = state.batches.pop_front().unwrap();
            state.first += 1;
            for (partition, offset) in batch.offsets {
                to_commit.insert(partition, offset);
            }
        }
        Ok(())
    }
}
