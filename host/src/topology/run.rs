//! Running a planned topology: its sources (Kafka topics, captured Postgres tables, or both),
//! its sinks and state set up around the one [`RunLoop`].
//!
//! `run` checks the cluster (topics, partition counts), registers sink schemas and tells the
//! catalog, serves metrics, opens the state of stateful processors, builds the
//! [`PipelineSource`] (the Kafka consumer with its rebalance handover, the capture of tables),
//! runs the loop until asked to stop, and closes state cleanly at the end.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::breaker::{Breaker, FailureRateLimit};
use super::execute::Executor;
use super::handover::{Deliveries, Handover, StatefulProcessor};
use super::run_loop::{LoopError, Routes, RunLoop};
pub use super::run_loop::{OutboxError, RunStats};
use super::schema_registry::SinkSchemaError;
use super::sources::{Capture, KafkaSide, PipelineSource};
use super::{SinkNode, SourceNode, Target, Topology};
use crate::codec::{SinkEncoder, SourceDecoder};
use crate::config::Problems;
use crate::observe::PipelineMetrics;
use crate::sink::delivery::DeliveryTracker;
use crate::sink::kafka::{DeliveredCounts, KafkaSink};
use crate::sink::pipeline::PipelineSink;
use crate::sink::postgres::{PostgresSink, PostgresSinkError, Reporting};
use crate::source::kafka::KafkaSource;
use crate::source::SourceError;
use crate::state::{Changelog, ChangelogError};

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
struct Summary {
    live: bool,
    last: std::time::Instant,
    at_last: RunStats,
}

/// How often the run logs its progress line.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(30);
/// How often the terminal's status line is redrawn.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

impl Summary {
    fn new(live: bool) -> Summary {
        Summary { live, last: std::time::Instant::now(), at_last: RunStats::default() }
    }

    /// `lag`: the total lag when known (measured with metrics on).
    fn tick(&mut self, stats: &RunStats, lag: Option<i64>) {
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
    PostgresSink(#[from] PostgresSinkError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot create the Kafka producer")]
    Producer(#[source] rdkafka::error::KafkaError),
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
    #[error("state of processor {processor}")]
    State {
        processor: String,
        #[source]
        source: Box<ChangelogError>,
    },
    #[error("state directory {path}: {reason}")]
    StateDirInUse { path: String, reason: String },
    /// The loop stopped: a source, a delivery or a batch failed, or too many records did.
    #[error(transparent)]
    Loop(#[from] LoopError),
}

/// How long the run waits for the cluster's metadata when it starts.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Run until `stop` is set, then drain, flush, acknowledge (commit offsets, confirm slots) and
/// return.
pub fn run(mut topology: Topology, settings: &RunSettings, stop: &AtomicBool) -> Result<RunStats, RunError> {
    let mut partition_counts =
        crate::kafka::partition_counts(&settings.bootstrap_servers, METADATA_TIMEOUT).map_err(|error| {
            RunError::Source(SourceError::Unreachable {
                what: format!("Kafka at {}", settings.bootstrap_servers),
                source: Box::new(error),
            })
        })?;
    check_topics_exist(&partition_counts, &topology, settings)?;
    let keeps_partition = route_joined_tables(&mut topology, &mut partition_counts, settings)?;
    let client = crate::kafka::client_config(&settings.bootstrap_servers, &settings.properties);
    let tracker = Arc::new(DeliveryTracker::default());
    let sink_topics: Vec<String> = topology.sinks.iter().map(|s| s.topic.clone()).collect();
    let sink_deliveries = Arc::new(match settings.metrics_listen {
        Some(_) => DeliveredCounts::for_topics(sink_topics.clone()),
        None => DeliveredCounts::default(),
    });
    let kafka_sink =
        Arc::new(KafkaSink::new(&client, tracker.clone(), sink_deliveries.clone()).map_err(RunError::Producer)?);
    match topology.register_sink_schemas() {
        Ok(()) => {}
        Err(SinkSchemaError::Refused(problems)) => return Err(RunError::Invalid(problems)),
        Err(error) => return Err(RunError::SinkSchema(error)),
    }
    topology.register_with_catalog().map_err(RunError::Catalog)?;
    let mut taps = None;
    let metrics = match &settings.metrics_listen {
        Some(listen) => {
            let metrics = Arc::new(PipelineMetrics::new(&settings.pipeline, &topology.layout()));
            let tap = Arc::new(crate::observe::Taps::new(topology.edges()));
            taps = Some(tap.clone());
            let address = crate::observe::serve(listen, metrics.clone(), tap)
                .map_err(|source| RunError::Metrics { listen: listen.clone(), source })?;
            tracing::info!("metrics on http://{address}/metrics (health: /healthz, /ready)");
            Some(metrics)
        }
        None => None,
    };
    let mut tables = Vec::new();
    for node in &topology.sinks {
        if let Some(config) = &node.postgres {
            let reporting = Reporting {
                tracker: tracker.clone(),
                counts: sink_deliveries.clone(),
                kafka: kafka_sink.clone(),
                dead_letter_topic: settings.dead_letter_topic.clone(),
                metrics: metrics.clone(),
                failure_limit: settings.failure_rate_limit,
            };
            let schema = node.schema.parsed.clone();
            let table = PostgresSink::open(&settings.pipeline, &node.id, &node.topic, config, schema, reporting)?;
            tables.push(table);
        }
    }
    let sink = Arc::new(PipelineSink::new(kafka_sink, tables));
    if let Some(first) = topology.sinks.iter().find(|s| s.postgres.is_none()) {
        sink.kafka().warm_up(&first.topic);
    }
    let problems = super::check_partitions(&topology, |topic| partition_counts.get(topic).copied());
    if !problems.is_empty() {
        return Err(RunError::Invalid(problems));
    }
    let mut executor = Executor::new(topology);
    if let Some(taps) = taps {
        executor.observe_edges(taps);
    }
    // Declared before the source: dropped after it, so the state directory stays locked while
    // the consumer's close hands partitions over (and writes their clean marks).
    let _state_lock: Option<std::fs::File>;
    let captures = executor.topology().sources.iter().any(|s| s.postgres.is_some());
    let (stateful, lock) = open_state(&mut executor, settings, &partition_counts)?;
    // The slots' snapshot markers live in the state directory too: one run at a time on it.
    _state_lock = match lock {
        None if captures => Some(lock_state_dir(&settings.state_dir)?),
        lock => lock,
    };
    let changelogs = executor
        .topology()
        .processors
        .iter()
        .enumerate()
        .map(|(index, _)| stateful.iter().find(|s| s.index == index).map(|s| s.changelog.clone()))
        .collect();
    let kafka_topics: Vec<String> = executor
        .topology()
        .sources
        .iter()
        .map(|s| if s.postgres.is_some() { String::new() } else { s.topic.clone() })
        .collect();
    let is_kafka_topic = |topic: &String| kafka_topics.contains(topic) && !topic.is_empty();
    // State partitions follow Kafka partitions where a processor reads a topic (the handover
    // restores them as they are assigned); the rest is fed by captured tables only.
    let (kafka_stateful, capture_stateful): (Vec<StatefulProcessor>, Vec<StatefulProcessor>) =
        stateful.into_iter().partition(|s| s.topics.iter().any(is_kafka_topic));
    let kafka_stateful: Vec<StatefulProcessor> = kafka_stateful
        .into_iter()
        .map(|mut s| {
            s.topics.retain(is_kafka_topic);
            s
        })
        .collect();
    let delivered: Arc<Mutex<HashMap<_, _>>> = Arc::default();
    // Shared with the handover: a revoke commits no further than the breaker allows either.
    let breaker = settings.failure_rate_limit.map(|limit| Arc::new(Mutex::new(Breaker::new(limit))));

    let routes = Routes {
        source_ids: executor.topology().sources.iter().map(|s| s.id.clone()).collect(),
        source_topics: executor.topology().sources.iter().map(|s| s.topic.clone()).collect(),
        sink_topics: sink_topics.clone(),
        keeps_partition,
        durable_positions: executor.topology().sources.iter().map(|s| s.postgres.is_none()).collect(),
        dead_letter_topic: settings.dead_letter_topic.clone(),
        changelogs,
    };
    let kafka = if kafka_topics.iter().any(|t| !t.is_empty()) {
        let mut consumer_client = client.clone();
        if let Some(instance_id) = &settings.instance_id {
            consumer_client.set("group.instance.id", instance_id);
        }
        let source = KafkaSource::new(&consumer_client, &settings.group_id, kafka_topics.clone())?;
        let deliveries = Deliveries {
            sink: sink.clone(),
            tracker: tracker.clone(),
            delivered: delivered.clone(),
            breaker: breaker.clone(),
        };
        let handover = Arc::new(Handover::start(
            deliveries,
            routes.source_topics.clone(),
            kafka_stateful,
            metrics.clone(),
            (&settings.bootstrap_servers, &settings.group_id),
        ));
        source.context().set_handler(handover.clone());
        Some(KafkaSide { source, handover })
    } else {
        None
    };
    let capture = captures.then(|| {
        let tables = executor
            .topology()
            .sources
            .iter()
            .map(|s| s.postgres.as_ref().map(|table| ((**table).clone(), s.schema.parsed.clone())))
            .collect();
        Capture::new(
            tables,
            settings.state_dir.clone(),
            capture_stateful,
            (&settings.bootstrap_servers, &settings.group_id),
        )
    });
    let source = PipelineSource { kafka, capture };
    // Unless the run ends cleanly, the consumer's close (after this guard is dropped) must not
    // mark any state clean: an error may have left a store write without its changelog record.
    let clean_end = source.kafka.as_ref().map(|kafka| CleanEnd(kafka.handover.clone(), false));
    if let Some(kafka) = &source.kafka {
        kafka.source.subscribe()?;
    }
    tracing::info!(group = %settings.group_id, sources = ?routes.source_topics, "pipeline running");

    let run_loop = RunLoop {
        source: &source,
        sink: &*sink,
        tracker: &tracker,
        routes: &routes,
        delivered: &delivered,
        breaker: breaker.as_deref(),
        metrics: metrics.as_deref(),
        batch_size: settings.batch_size,
    };
    let mut watch = Watch {
        metrics: metrics.as_deref(),
        sink: sink.kafka(),
        sink_deliveries: &sink_deliveries,
        routes: &routes,
        summary: Summary::new(settings.status_line),
        lag_wanted: metrics.is_some() || settings.status_line,
        total_lag: None,
        last_lag_check: std::time::Instant::now() - LAG_INTERVAL,
        ready: false,
        ready_at: None,
        sink_delivered: vec![0; sink_topics.len()],
    };
    let result = run_loop
        .run(&mut executor, stop, |executor, stats, acknowledged| watch.turn(&source, executor, stats, acknowledged));
    if settings.status_line {
        crate::observe::status::clear();
    }
    let stats = result?;
    if let Some(kafka) = &source.kafka {
        kafka
            .handover
            .close(kafka.source.consumer())
            .map_err(|(processor, source)| RunError::State { processor, source })?;
    }
    if let Some(capture) = &source.capture {
        capture.close_state().map_err(|(processor, source)| RunError::State { processor, source })?;
    }
    if let Some(clean_end) = clean_end {
        clean_end.confirm();
    }
    tracing::info!(
        consumed = stats.consumed,
        produced = stats.produced,
        dead_lettered = stats.dead_lettered,
        "pipeline stopped"
    );
    Ok(stats)
}

/// What the run watches between batches: progress for people, and metrics.
struct Watch<'w> {
    metrics: Option<&'w PipelineMetrics>,
    sink: &'w KafkaSink,
    sink_deliveries: &'w DeliveredCounts,
    routes: &'w Routes,
    summary: Summary,
    /// Whether someone looks at the lag (metrics, the status line): it asks the broker.
    lag_wanted: bool,
    total_lag: Option<i64>,
    last_lag_check: std::time::Instant,
    ready: bool,
    /// The rebalance count when readiness was last found true.
    ready_at: Option<u64>,
    /// Per sink: deliveries already published to metrics.
    sink_delivered: Vec<u64>,
}

impl Watch<'_> {
    fn turn(
        &mut self,
        source: &PipelineSource,
        executor: &Executor,
        stats: &RunStats,
        acknowledged: &HashMap<crate::source::SourcePartition, i64>,
    ) {
        // Lag asks the broker: now and then, and only when someone looks.
        let lags = if self.lag_wanted && self.last_lag_check.elapsed() >= LAG_INTERVAL {
            self.last_lag_check = std::time::Instant::now();
            let lags = source.lag();
            self.total_lag = Some(lags.iter().map(|(_, _, lag)| lag).sum());
            Some(lags)
        } else {
            None
        };
        self.summary.tick(stats, self.total_lag);
        let Some(metrics) = self.metrics else { return };
        // Ready: partitions assigned and none held back for a restore (looked at again after
        // every rebalance: a later assignment restores too).
        let rebalances = source.rebalances();
        if self.ready_at != Some(rebalances) {
            let now = source.is_ready();
            if now != self.ready {
                self.ready = now;
                metrics.set_ready(now);
            }
            if now {
                self.ready_at = Some(rebalances);
            }
        }
        metrics.set_producer_queue(self.sink.in_flight());
        metrics.set_rebalances(rebalances);
        for (index, published) in self.sink_delivered.iter_mut().enumerate() {
            let now = self.sink_deliveries.get(index);
            metrics.sink_sent(index, now - *published);
            *published = now;
        }
        for ((source, partition), offset) in acknowledged {
            metrics.set_committed(&self.routes.source_topics[*source], *partition, offset + 1);
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

/// Give every captured table its state partitions. A table that shares a stateful processor (a
/// join) with Kafka topics reaches it through a topic of its own, `<group>-<source id>-rows`,
/// with those topics' partition count: the capturing instance writes each row to the partition
/// the topics' producers put its key on (the table's `partitioner`), and every instance reads
/// the partitions the group gives it, as it does any topic — so rows and topic records of one
/// key meet in one state partition on one instance, however many instances run. Any other table
/// is one partition, read in memory. Records every table's (and rows topic's) partition count
/// in `partition_counts`; returns, per sink, whether it writes each record to its source
/// record's partition (the rows topics).
fn route_joined_tables(
    topology: &mut Topology,
    partition_counts: &mut HashMap<String, usize>,
    settings: &RunSettings,
) -> Result<Vec<bool>, RunError> {
    let mut keeps_partition = vec![false; topology.sinks.len()];
    let tables: Vec<usize> = (0..topology.sources.len()).filter(|&i| topology.sources[i].postgres.is_some()).collect();
    for index in tables {
        let table = topology.sources[index].topic.clone();
        let joined = topology
            .processors
            .iter()
            .filter(|p| p.instance.is_stateful() && p.source_topics.contains(&table))
            .flat_map(|p| p.source_topics.iter())
            .filter(|t| topology.sources.iter().any(|s| s.postgres.is_none() && &s.topic == *t))
            .filter_map(|t| partition_counts.get(t))
            .copied()
            .max();
        let Some(partitions) = joined else {
            partition_counts.insert(table, 1);
            continue;
        };
        let source = &topology.sources[index];
        let rows = format!("{}-{}-rows", settings.group_id, source.id);
        crate::kafka::ensure_topic(
            &settings.bootstrap_servers,
            &rows,
            partitions as i32,
            &[("cleanup.policy", "compact")],
        )
        .map_err(|error| {
            RunError::Source(SourceError::Client {
                what: format!("sources.{}: the topic its rows are joined through", source.id),
                source: Box::new(error),
            })
        })?;
        // An older rows topic keeps its count: a mismatch is reported as any co-partitioning one.
        let partitions = *partition_counts.entry(rows.clone()).or_insert(partitions);
        partition_counts.insert(table.clone(), partitions);
        let sink = topology.sinks.len();
        topology.sinks.push(SinkNode {
            id: format!("{}.rows", source.id),
            topic: rows.clone(),
            postgres: None,
            encoder: SinkEncoder::Avro,
            schema: source.schema.clone(),
        });
        keeps_partition.push(true);
        let reader = SourceNode {
            id: format!("{}.rows", source.id),
            topic: rows.clone(),
            postgres: None,
            decoder: SourceDecoder::Avro,
            schema: source.schema.clone(),
            targets: std::mem::replace(&mut topology.sources[index].targets, vec![Target::Sink { index: sink }]),
        };
        topology.sources.push(reader);
        if let Some(captured) = &mut topology.sources[index].postgres {
            captured.partitions = partitions as i32;
        }
        for processor in &mut topology.processors {
            for topic in &mut processor.source_topics {
                if *topic == table {
                    *topic = rows.clone();
                }
            }
        }
        tracing::info!(%table, %rows, partitions, "the table is joined with Kafka topics: its rows reach the join through a topic");
    }
    Ok(keeps_partition)
}

/// That every topic the pipeline reads or writes is among `counts` (the cluster's topics).
fn check_topics_exist(
    counts: &HashMap<String, usize>,
    topology: &Topology,
    settings: &RunSettings,
) -> Result<(), RunError> {
    let mut needed: Vec<String> = Vec::new();
    needed.extend(topology.sources.iter().filter(|s| s.postgres.is_none()).map(|s| s.topic.clone()));
    needed.extend(topology.sinks.iter().filter(|s| s.postgres.is_none()).map(|s| s.topic.clone()));
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
fn lock_state_dir(state_dir: &std::path::Path) -> Result<std::fs::File, RunError> {
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
