//! Running a planned topology against Kafka: the consume, execute, produce and commit loop.
//!
//! One loop polls a batch from the [`KafkaSource`], runs it through the [`Executor`] (in
//! memory, no Kafka hop between processors) and hands what comes out to the [`KafkaSink`].
//! Deliveries are tracked per batch ([`DeliveryTracker`]); a batch's offsets are committed only
//! when it and every batch before it are fully delivered — to sinks, dead letters or state
//! changelogs — so nothing is lost (at-least-once). A bounded number of batches in flight gives
//! backpressure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::breaker::{Breaker, FailureRateLimit};
use super::delivery::{last_positions, BatchId, DeliveryError, DeliveryTracker};
use super::execute::{Effects, ExecuteError, Executor};
use super::failure::Failure;
use super::handover::{Deliveries, Handover, StatefulProcessor};
use super::schema_registry::SinkSchemaError;
use super::Topology;
use crate::config::Problems;
use crate::kafka::{DeliveredCounts, KafkaSink, KafkaSource};
use crate::observe::PipelineMetrics;
use crate::plugin::batch::Record;
use crate::sink::{Destination, OutgoingRecord, Sink, SinkError};
use crate::source::{InputRecord, Source, SourceError, SourcePartition};
use crate::state::{Changelog, ChangelogError, StateWrites};

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// The pipeline's name (a label of its metrics).
    pub pipeline: String,
    /// Serve `/metrics`, `/healthz` and `/ready` on this address.
    pub metrics_listen: Option<String>,
    /// Keep a live status line on stderr (a terminal) instead of logging progress every 30 s.
    pub status_line: bool,
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Most records per batch.
    pub batch_size: usize,
    /// Extra librdkafka properties.
    pub properties: Vec<(String, String)>,
    pub dead_letter_topic: Option<String>,
    /// This instance's `group.instance.id` (static membership), if given.
    pub instance_id: Option<String>,
    /// Stop when too many of the last records failed (`dead_letter.max_ratio`).
    pub failure_rate_limit: Option<FailureRateLimit>,
    /// Where stateful processors keep their local stores.
    pub state_dir: PathBuf,
}

/// What the run did lately, for people: a log line every [`SUMMARY_INTERVAL`] (so a log says
/// the pipeline is alive and how fast it goes), or, on a terminal, a status line redrawn every
/// [`STATUS_INTERVAL`].
pub(super) struct Summary {
    live: bool,
    last: std::time::Instant,
    at_last: RunStats,
}

/// How often the run logs its progress line.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);
/// How often the terminal's status line is redrawn.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

impl Summary {
    pub(super) fn new(live: bool) -> Summary {
        Summary { live, last: std::time::Instant::now(), at_last: RunStats::default() }
    }

    /// `lag`: the total lag when known (measured with metrics on).
    pub(super) fn tick(&mut self, stats: &RunStats, lag: Option<i64>) {
        let elapsed = self.last.elapsed();
        if elapsed < if self.live { STATUS_INTERVAL } else { SUMMARY_INTERVAL } {
            return;
        }
        let rate = |now: u64, then: u64| (now - then) as f64 / elapsed.as_secs_f64();
        let (rate_in, rate_out, rate_dead) = (
            rate(stats.consumed, self.at_last.consumed),
            rate(stats.produced, self.at_last.produced),
            rate(stats.dead_lettered, self.at_last.dead_lettered),
        );
        if self.live {
            crate::observe::status::show(crate::observe::status::format(rate_in, rate_out, rate_dead, lag));
        } else {
            tracing::info!(
                consumed = stats.consumed,
                produced = stats.produced,
                dead_lettered = stats.dead_lettered,
                "progress: {rate_in:.0} records/s in, {rate_out:.0}/s out, {rate_dead:.1}/s to dead letters"
            );
        }
        self.last = std::time::Instant::now();
        self.at_last = *stats;
    }
}

/// How often the run loop asks the broker for partition ends, for the lag metric.
const LAG_INTERVAL: Duration = Duration::from_secs(2);

/// Batches not yet fully delivered at most; beyond it the loop waits for the producer.
pub(super) const MAX_BATCHES_IN_FLIGHT: usize = 32;

/// Counts reported when the run ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunStats {
    pub consumed: u64,
    pub produced: u64,
    pub dead_lettered: u64,
}

/// Why a run stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline does not fit the cluster (e.g. inputs of a stateful processor are not
    /// co-partitioned): invalid input, exit 2.
    #[error("{0}")]
    Invalid(Problems),
    #[error("topics missing on {servers}: {}; create them first", topics.join(", "))]
    TopicsMissing { servers: String, topics: Vec<String> },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot create the Kafka producer")]
    Producer(#[source] rdkafka::error::KafkaError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    SinkSchema(SinkSchemaError),
    #[error("cannot tell the sources catalog what this pipeline reads and publishes")]
    Catalog(#[source] crate::schema_registry::RegistryError),
    #[error("cannot serve metrics on {listen}")]
    Metrics {
        listen: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("state of processor {processor}")]
    State {
        processor: String,
        #[source]
        source: Box<ChangelogError>,
    },
    #[error(
        "{failed} of the last {window} records failed, more than dead_letter.max_ratio {max_ratio} allows; \
         stopped, with those records not committed, so a fixed pipeline reads them again. Last failure: {last}"
    )]
    TooManyFailures { failed: usize, window: usize, max_ratio: f64, last: String },
    #[error("state directory {path}: {reason}")]
    StateDirInUse { path: String, reason: String },
    /// The group's assignment cannot be run, or state could not be restored.
    #[error("{0}")]
    Handover(String),
    /// A batch could not be carried out (boxed: errors stay small on the happy path).
    #[error(transparent)]
    Batch(Box<ExecuteError<OutboxError>>),
}

impl From<ExecuteError<OutboxError>> for RunError {
    fn from(error: ExecuteError<OutboxError>) -> Self {
        RunError::Batch(Box::new(error))
    }
}

/// Run until `stop` is set, then drain, flush, commit and return.
pub fn run(mut topology: Topology, settings: &RunSettings, stop: &AtomicBool) -> Result<RunStats, RunError> {
    let client = crate::kafka::client_config(&settings.bootstrap_servers, &settings.properties);
    let source_topics: Vec<String> = topology.sources.iter().map(|s| s.topic.clone()).collect();
    let mut consumer_client = client.clone();
    if let Some(instance_id) = &settings.instance_id {
        consumer_client.set("group.instance.id", instance_id);
    }
    // Declared before the source: dropped after it, so the state directory stays locked while
    // the consumer's close hands partitions over (and writes their clean marks).
    let _state_lock: Option<std::fs::File>;
    let source = KafkaSource::new(&consumer_client, &settings.group_id, source_topics.clone())?;
    let tracker = Arc::new(DeliveryTracker::default());
    let sink_topics: Vec<String> = topology.sinks.iter().map(|s| s.topic.clone()).collect();
    let sink_deliveries = Arc::new(match settings.metrics_listen {
        Some(_) => DeliveredCounts::for_topics(sink_topics.clone()),
        None => DeliveredCounts::default(),
    });
    let sink = Arc::new(KafkaSink::new(&client, tracker.clone(), sink_deliveries.clone()).map_err(RunError::Producer)?);

    let partition_counts = check_topics(&source, &topology, settings)?;
    match topology.register_sink_schemas() {
        Ok(()) => {}
        Err(SinkSchemaError::Refused(problems)) => return Err(RunError::Invalid(problems)),
        Err(error) => return Err(RunError::SinkSchema(error)),
    }
    topology.register_with_catalog().map_err(RunError::Catalog)?;
    let mut taps = None;
    let metrics = match &settings.metrics_listen {
        Some(listen) => {
            let metrics = Arc::new(PipelineMetrics::new(&settings.pipeline, &topology));
            let tap = Arc::new(crate::observe::Taps::new(topology.edges()));
            taps = Some(tap.clone());
            let address = crate::observe::serve(listen, metrics.clone(), tap)
                .map_err(|source| RunError::Metrics { listen: listen.clone(), source })?;
            tracing::info!("metrics on http://{address}/metrics (health: /healthz, /ready)");
            Some(metrics)
        }
        None => None,
    };
    if let Some(first) = topology.sinks.first() {
        sink.warm_up(&first.topic);
    }
    let problems = super::check_partitions(&topology, |topic| partition_counts.get(topic).copied());
    if !problems.is_empty() {
        return Err(RunError::Invalid(problems));
    }
    let mut executor = Executor::new(topology);
    if let Some(taps) = taps {
        executor.observe_edges(taps);
    }
    let (stateful, lock) = open_state(&mut executor, settings, &partition_counts)?;
    _state_lock = lock;
    let changelogs = executor
        .topology()
        .processors
        .iter()
        .enumerate()
        .map(|(index, _)| stateful.iter().find(|s| s.index == index).map(|s| s.changelog.clone()))
        .collect();
    let delivered: Arc<Mutex<HashMap<SourcePartition, i64>>> = Arc::default();
    // Shared with the handover: a revoke commits no further than the breaker allows either.
    let breaker = settings.failure_rate_limit.map(|limit| Arc::new(Mutex::new(Breaker::new(limit))));
    let deliveries = Deliveries {
        sink: sink.clone(),
        tracker: tracker.clone(),
        delivered: delivered.clone(),
        breaker: breaker.clone(),
    };
    let handover = Arc::new(Handover::start(
        deliveries,
        source_topics.clone(),
        stateful,
        metrics.clone(),
        (&settings.bootstrap_servers, &settings.group_id),
    ));
    source.context().set_handler(handover.clone());
    // Unless the run ends cleanly, the consumer's close (after this guard is dropped) must not
    // mark any state clean: an error may have left a store write without its changelog record.
    let clean_end = CleanEnd(handover.clone(), false);
    let routes = Routes {
        source_ids: executor.topology().sources.iter().map(|s| s.id.clone()).collect(),
        source_topics,
        sink_topics: executor.topology().sinks.iter().map(|s| s.topic.clone()).collect(),
        dead_letter_topic: settings.dead_letter_topic.clone(),
        changelogs,
    };
    source.subscribe()?;
    tracing::info!(group = %settings.group_id, topics = ?routes.source_topics, "pipeline running");
    let mut ready = false;
    // The rebalance count when readiness was last found true.
    let mut ready_at: Option<u64> = None;
    let mut summary = Summary::new(settings.status_line);
    let mut total_lag: Option<i64> = None;
    let mut sink_delivered = vec![0u64; sink_topics.len()];
    let mut last_lag_check = std::time::Instant::now() - LAG_INTERVAL;

    let mut stats = RunStats::default();

    let mut tripped = None;
    let mut batch = Vec::with_capacity(settings.batch_size);
    while !stop.load(Ordering::Relaxed) {
        source.poll(settings.batch_size, stop, &mut batch)?;
        if let Some(problem) = handover.problem() {
            return Err(RunError::Handover(problem));
        }
        let restored = handover.take_restored();
        if !restored.is_empty() {
            let owned = source.context().owned();
            let partitions: Vec<_> = restored.iter().flat_map(|&p| handover.stateful_partitions(&owned, p)).collect();
            tracing::info!(?partitions, "state restored: resuming");
            source.resume(&partitions)?;
        }
        if !batch.is_empty() {
            stats.consumed += batch.len() as u64;
            let id = tracker.begin(last_positions(&batch));
            let mut outbox = Outbox::new(&*sink, &routes, &batch, id, metrics.as_deref());
            let result = executor.run(&batch, &mut outbox);
            if let Err(ExecuteError::Effect(OutboxError::Sink(error))) = &result {
                tracker.fail(error.to_string());
            }
            result?;
            stats.produced += outbox.produced;
            stats.dead_lettered += outbox.dead_lettered;
            if let Some(metrics) = &metrics {
                metrics.publish(executor.counts(), batch.len());
            }
            tracker.seal(id, outbox.sent);
            if let Some(breaker) = &breaker {
                tripped = count_failures(&mut breaker.lock().unwrap(), &batch, outbox.failed);
            }
            batch.clear();
            if tripped.is_some() {
                break;
            }
            tracker.wait_for_room(MAX_BATCHES_IN_FLIGHT);
        }
        let delivered = {
            let mut delivered = delivered.lock().unwrap();
            tracker.collect_completed(&mut delivered)?;
            match &breaker {
                Some(breaker) => breaker.lock().unwrap().committable(&delivered),
                None => delivered.clone(),
            }
        };
        source.acknowledge(&delivered, false)?;
        // Lag asks the broker: now and then, and only when someone looks (metrics, status line).
        let lags = if (metrics.is_some() || settings.status_line) && last_lag_check.elapsed() >= LAG_INTERVAL {
            last_lag_check = std::time::Instant::now();
            let lags = source.lag();
            total_lag = Some(lags.iter().map(|(_, _, lag)| lag).sum());
            Some(lags)
        } else {
            None
        };
        summary.tick(&stats, total_lag);
        if let Some(metrics) = &metrics {
            // Ready: partitions assigned and none held back for a restore (looked at again after
            // every rebalance: a later assignment restores too).
            let rebalances = source.rebalances();
            if ready_at != Some(rebalances) {
                let now = source.is_assigned() && !source.context().holds_any();
                if now != ready {
                    ready = now;
                    metrics.set_ready(now);
                }
                if now {
                    ready_at = Some(rebalances);
                }
            }
            metrics.set_producer_queue(sink.in_flight());
            metrics.set_rebalances(source.rebalances());
            for (index, published) in sink_delivered.iter_mut().enumerate() {
                let now = sink_deliveries.get(index);
                metrics.sink_sent(index, now - *published);
                *published = now;
            }
            for ((source, partition), offset) in &delivered {
                metrics.set_committed(&routes.source_topics[*source], *partition, offset + 1);
            }
            if let Some(lags) = lags {
                for (topic, partition, lag) in lags {
                    metrics.set_lag(&topic, partition, lag);
                }
                for (index, node) in executor.topology().processors.iter().enumerate() {
                    if let Some(keys) = node.instance.attached_state().and_then(|store| store.key_count().ok()) {
                        metrics.set_state_keys(index, keys);
                    }
                }
            }
        }
    }

    if settings.status_line {
        crate::observe::status::clear();
    }
    tracing::info!("stopping: draining in-flight records");
    sink.flush(Duration::from_secs(60))?;
    tracker.wait_for_room(1);
    let delivered = {
        let mut delivered = delivered.lock().unwrap();
        tracker.collect_completed(&mut delivered)?;
        delivered.clone()
    };
    if let (Some(breaker), Some(error)) = (&breaker, tripped) {
        // The dead letters of the window are out (to look at); its offsets stay uncommitted.
        source.acknowledge(&breaker.lock().unwrap().committable(&delivered), true)?;
        return Err(error);
    }
    source.acknowledge(&delivered, true)?;
    handover.close(source.consumer()).map_err(|(processor, source)| RunError::State { processor, source })?;
    clean_end.confirm();
    tracing::info!(
        consumed = stats.consumed,
        produced = stats.produced,
        dead_lettered = stats.dead_lettered,
        "pipeline stopped"
    );
    Ok(stats)
}

/// Marks the handover's state untrusted when dropped unconfirmed: the run ended with an error.
struct CleanEnd(Arc<Handover>, bool);

impl CleanEnd {
    fn confirm(mut self) {
        self.1 = true;
    }
}

impl Drop for CleanEnd {
    fn drop(&mut self) {
        if !self.1 {
            self.0.distrust();
        }
    }
}

/// Count a batch's records, in order, against the failure-rate window: the error to stop with
/// when the window holds too many failures. `failed` are the indexes of the records that went
/// to dead letters, with the reason, in the order they did.
pub(super) fn count_failures<R: InputRecord>(
    breaker: &mut Breaker,
    batch: &[R],
    failed: Vec<(usize, String)>,
) -> Option<RunError> {
    let mut failures = failed.iter().map(|(origin, _)| *origin).collect::<Vec<_>>();
    failures.sort_unstable();
    for (index, record) in batch.iter().enumerate() {
        let is_failed = failures.binary_search(&index).is_ok();
        if breaker.record((record.source(), record.partition()), record.position(), is_failed) {
            let (failed_count, window) = breaker.failures();
            let last = failed.into_iter().rev().find(|(origin, _)| *origin <= index).map(|(_, why)| why);
            return Some(RunError::TooManyFailures {
                failed: failed_count,
                window,
                max_ratio: breaker.limit().max_ratio,
                last: last.unwrap_or_default(),
            });
        }
    }
    None
}

/// Fail early, with a clear message, when a topic the pipeline needs does not exist. Returns
/// the partition count of every topic.
fn check_topics(
    source: &KafkaSource,
    topology: &Topology,
    settings: &RunSettings,
) -> Result<HashMap<String, usize>, RunError> {
    let counts = source.partition_counts()?;
    check_topics_exist(&counts, topology, settings)?;
    Ok(counts)
}

/// That every topic the pipeline reads or writes is among `counts` (the cluster's topics).
pub(super) fn check_topics_exist(
    counts: &HashMap<String, usize>,
    topology: &Topology,
    settings: &RunSettings,
) -> Result<(), RunError> {
    let mut needed: Vec<String> = Vec::new();
    needed.extend(topology.sources.iter().filter(|s| s.postgres.is_none()).map(|s| s.topic.clone()));
    needed.extend(topology.sinks.iter().map(|s| s.topic.clone()));
    needed.extend(settings.dead_letter_topic.clone());
    let mut missing: Vec<String> = needed.into_iter().filter(|t| !counts.contains_key(t)).collect();
    missing.sort();
    missing.dedup();
    if !missing.is_empty() {
        return Err(RunError::TopicsMissing { servers: settings.bootstrap_servers.clone(), topics: missing });
    }
    Ok(())
}

/// Open the local store of every stateful processor (its partitions are restored when they are
/// assigned) and attach it to the processor's instance. The state directory is locked for the
/// run: two instances sharing one would corrupt each other's state.
fn open_state(
    executor: &mut Executor,
    settings: &RunSettings,
    partition_counts: &HashMap<String, usize>,
) -> Result<(Vec<StatefulProcessor>, Option<std::fs::File>), RunError> {
    let mut stateful = Vec::new();
    let mut lock = None;
    for (index, node) in executor.topology_mut().processors.iter_mut().enumerate() {
        if !node.instance.is_stateful() {
            continue;
        }
        if lock.is_none() {
            lock = Some(lock_state_dir(&settings.state_dir)?);
        }
        let partitions =
            node.source_topics.iter().filter_map(|t| partition_counts.get(t)).copied().max().unwrap_or(1) as i32;
        let changelog = Changelog::new(&settings.group_id, &node.id, partitions);
        let store_path = settings.state_dir.join(format!("{}.redb", node.id));
        let store = crate::state::open_store(&settings.bootstrap_servers, &store_path, &changelog)
            .map_err(|source| RunError::State { processor: node.id.clone(), source: Box::new(source) })?;
        node.instance.attach_state(store.clone());
        stateful.push(StatefulProcessor {
            index,
            id: node.id.clone(),
            store,
            changelog,
            topics: node.source_topics.clone(),
        });
    }
    Ok((stateful, lock))
}

/// Lock `state_dir` for this run (released when the returned file is dropped, or the process
/// ends however it ends).
pub(super) fn lock_state_dir(state_dir: &std::path::Path) -> Result<std::fs::File, RunError> {
    let in_use = |reason: String| RunError::StateDirInUse { path: state_dir.display().to_string(), reason };
    std::fs::create_dir_all(state_dir).map_err(|e| in_use(e.to_string()))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join("meshhost.lock"))
        .map_err(|e| in_use(e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(in_use(
            "another meshhost run is using it; give every instance its own state directory (--state-dir)".into(),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(in_use(e.to_string())),
    }
}

/// Where the effects of a batch go, by index.
pub(super) struct Routes {
    /// Id of each source (for metrics).
    pub(super) source_ids: Vec<String>,
    /// Topic of each source (for dead-letter headers).
    pub(super) source_topics: Vec<String>,
    pub(super) sink_topics: Vec<String>,
    pub(super) dead_letter_topic: Option<String>,
    /// Per processor: its changelog if stateful.
    pub(super) changelogs: Vec<Option<Changelog>>,
}

/// Why a batch's effects could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(
        "record {topic}/{partition}@{offset} {failure}; no dead_letter topic is configured, so the pipeline stops rather than lose it"
    )]
    NoDeadLetterTopic { topic: String, partition: i32, offset: i64, failure: Failure },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// A batch's effects, handed to the sink and counted against the batch.
pub(super) struct Outbox<'a, S: Sink, R: InputRecord> {
    pub(super) sink: &'a S,
    pub(super) routes: &'a Routes,
    /// The consumed records: dead letters send them as they were read.
    pub(super) batch: &'a [R],
    pub(super) id: BatchId,
    pub(super) produced: u64,
    pub(super) dead_lettered: u64,
    /// The records that went to dead letters (index in the batch) and why, for the breaker.
    pub(super) failed: Vec<(usize, String)>,
    /// Records handed to the sink, of every kind: the deliveries the batch waits for.
    pub(super) sent: u64,
    pub(super) metrics: Option<&'a PipelineMetrics>,
}

impl<'a, S: Sink, R: InputRecord> Outbox<'a, S, R> {
    pub(super) fn new(
        sink: &'a S,
        routes: &'a Routes,
        batch: &'a [R],
        id: BatchId,
        metrics: Option<&'a PipelineMetrics>,
    ) -> Self {
        Outbox { sink, routes, batch, id, produced: 0, dead_lettered: 0, failed: Vec::new(), sent: 0, metrics }
    }

    fn send_to(&mut self, destination: Destination<'_>, record: OutgoingRecord<'_>) -> Result<(), OutboxError> {
        self.sink.send(destination, record, self.id)?;
        self.sent += 1;
        Ok(())
    }
}

impl<S: Sink, R: InputRecord> Effects for Outbox<'_, S, R> {
    type Error = OutboxError;

    fn send(&mut self, sink: usize, origin: usize, record: Record) -> Result<(), OutboxError> {
        let destination = Destination { topic: &self.routes.sink_topics[sink], partition: None };
        let outgoing = OutgoingRecord {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
            timestamp: record.timestamp,
        };
        match self.send_to(destination, outgoing) {
            Ok(()) => {
                self.produced += 1;
                Ok(())
            }
            // An output too large for the sink is the record's fault: its input goes to dead letters.
            Err(OutboxError::Sink(error @ SinkError::TooLarge { .. })) => {
                self.dead_letter(origin, Failure::encode(error.to_string()))
            }
            Err(error) => Err(error),
        }
    }

    fn dead_letter(&mut self, origin: usize, failure: Failure) -> Result<(), OutboxError> {
        let consumed = &self.batch[origin];
        let topic = &self.routes.source_topics[consumed.source()];
        tracing::debug!(%topic, partition = consumed.partition(), offset = consumed.position(), stage = %failure.stage, error = %failure.error, "dead letter");
        let Some(dead_letter_topic) = &self.routes.dead_letter_topic else {
            return Err(OutboxError::NoDeadLetterTopic {
                topic: topic.clone(),
                partition: consumed.partition(),
                offset: consumed.position(),
                failure,
            });
        };
        let mut headers = consumed.headers();
        headers.extend(failure.dead_letter_headers(topic, consumed.partition(), consumed.position()));
        let record = OutgoingRecord {
            key: consumed.key(),
            value: consumed.value(),
            headers: &headers,
            timestamp: consumed.timestamp(),
        };
        self.send_to(Destination { topic: dead_letter_topic, partition: None }, record)?;
        self.dead_lettered += 1;
        self.failed.push((origin, failure.to_string()));
        if let Some(metrics) = self.metrics {
            let component = failure.processor.as_deref().unwrap_or(&self.routes.source_ids[consumed.source()]);
            metrics.dead_lettered(component, failure.stage);
        }
        Ok(())
    }

    /// Mirror the writes to the changelog, counted against the batch: its offsets commit only
    /// after the changelog has them.
    fn state_written(&mut self, processor: usize, partition: u32, writes: &StateWrites) -> Result<(), OutboxError> {
        let Some(changelog) = &self.routes.changelogs[processor] else { return Ok(()) };
        let destination = Destination { topic: &changelog.topic, partition: Some(partition as i32) };
        for (key, value) in writes {
            self.send_to(
                destination,
                OutgoingRecord { key: Some(key), value: value.as_deref(), ..Default::default() },
            )?;
        }
        Ok(())
    }
}
