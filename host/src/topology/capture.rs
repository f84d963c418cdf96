//! Running a pipeline whose sources are captured Postgres tables: the capture, execute,
//! produce and confirm loop.
//!
//! The same executor, sinks, dead letters and delivery tracking as the Kafka run
//! ([`super::run`]); what differs is where records come from and what "committed" means: a
//! table's replication slot is confirmed only up to changes whose records were all delivered.
//! There is no consumer group: one instance reads a slot, and the state of stateful processors
//! is one partition, restored from its changelog when the run starts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::breaker::Breaker;
use super::delivery::{last_positions, DeliveryTracker};
use super::execute::{ExecuteError, Executor};
use super::run::{
    check_topics_exist, count_failures, lock_state_dir, Outbox, OutboxError, Routes, RunError, RunSettings, RunStats,
    Summary, MAX_BATCHES_IN_FLIGHT,
};
use super::schema_registry::SinkSchemaError;
use super::Topology;
use crate::config::Problems;
use crate::kafka::{DeliveredCounts, KafkaSink};
use crate::observe::PipelineMetrics;
use crate::postgres::PostgresSource;
use crate::sink::Sink;
use crate::source::{Source, SourceError, SourcePartition};
use crate::state::{self, Changelog, ChangelogError};

/// Run until `stop` is set (or a table's reader fails), then drain, flush, confirm and return.
pub fn run(mut topology: Topology, settings: &RunSettings, stop: &AtomicBool) -> Result<RunStats, RunError> {
    if let Some(topic) = topology.sources.iter().find(|s| s.postgres.is_none()) {
        return Err(RunError::Invalid(Problems::one(
            &format!("sources.{}", topic.id),
            "a pipeline that captures Postgres tables cannot read Kafka topics as well (yet): read the captured tables' output topics in a second pipeline",
        )));
    }
    let kafka_unreachable = |error: rdkafka::error::KafkaError| {
        RunError::Source(SourceError::Unreachable {
            what: format!("Kafka at {}", settings.bootstrap_servers),
            source: Box::new(error),
        })
    };
    let counts = crate::kafka::partition_counts(&settings.bootstrap_servers, Duration::from_secs(10))
        .map_err(kafka_unreachable)?;
    check_topics_exist(&counts, &topology, settings)?;
    let client = crate::kafka::client_config(&settings.bootstrap_servers, &settings.properties);
    let tracker = Arc::new(DeliveryTracker::default());
    let sink_deliveries = Arc::new(DeliveredCounts::default());
    let sink = Arc::new(KafkaSink::new(&client, tracker.clone(), sink_deliveries).map_err(RunError::Producer)?);
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
    // The slots' snapshot records live in the state directory: one run at a time on it.
    let _state_lock = lock_state_dir(&settings.state_dir)?;
    let mut executor = Executor::new(topology);
    if let Some(taps) = taps {
        executor.observe_edges(taps);
    }
    let stateful = restore_state(&mut executor, settings)?;
    let tables = executor
        .topology()
        .sources
        .iter()
        .map(|s| s.postgres.as_ref().map(|table| ((**table).clone(), s.schema.parsed.clone())))
        .collect();
    let source = PostgresSource::start(tables, &settings.state_dir)?;
    let routes = Routes {
        source_ids: executor.topology().sources.iter().map(|s| s.id.clone()).collect(),
        source_topics: executor.topology().sources.iter().map(|s| s.topic.clone()).collect(),
        sink_topics: executor.topology().sinks.iter().map(|s| s.topic.clone()).collect(),
        dead_letter_topic: settings.dead_letter_topic.clone(),
        changelogs: (0..executor.topology().processors.len())
            .map(|index| stateful.iter().find(|(i, _)| *i == index).map(|(_, changelog)| changelog.clone()))
            .collect(),
    };
    if let Some(metrics) = &metrics {
        metrics.set_ready(true);
    }
    tracing::info!(tables = ?routes.source_topics, "pipeline running");

    let mut breaker = settings.failure_rate_limit.map(Breaker::new);
    let mut delivered: HashMap<SourcePartition, i64> = HashMap::new();
    let mut summary = Summary::new(settings.status_line);
    let mut stats = RunStats::default();
    let mut tripped = None;
    let mut batch = Vec::with_capacity(settings.batch_size);
    // A source that fails still lets what was delivered be confirmed before the run ends.
    let mut failed = None;
    while !stop.load(Ordering::Relaxed) {
        if let Err(error) = source.poll(settings.batch_size, stop, &mut batch) {
            failed = Some(RunError::Source(error));
            break;
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
            let (sent, failed) = (outbox.sent, outbox.failed);
            if let Some(metrics) = &metrics {
                metrics.publish(executor.counts(), batch.len());
            }
            tracker.seal(id, sent);
            if let Some(breaker) = &mut breaker {
                tripped = count_failures(breaker, &batch, failed);
            }
            batch.clear();
            if tripped.is_some() {
                break;
            }
            tracker.wait_for_room(MAX_BATCHES_IN_FLIGHT);
        }
        tracker.collect_completed(&mut delivered)?;
        let confirmable = match &breaker {
            Some(breaker) => breaker.committable(&delivered),
            None => delivered.clone(),
        };
        source.acknowledge(&confirmable, false)?;
        summary.tick(&stats, None);
    }

    if settings.status_line {
        crate::observe::status::clear();
    }
    tracing::info!("stopping: draining in-flight records");
    sink.flush(Duration::from_secs(60))?;
    tracker.wait_for_room(1);
    tracker.collect_completed(&mut delivered)?;
    if let (Some(breaker), Some(error)) = (&breaker, tripped) {
        source.acknowledge(&breaker.committable(&delivered), true)?;
        return Err(error);
    }
    source.acknowledge(&delivered, true)?;
    if let Some(error) = failed {
        return Err(error);
    }
    close_state(&executor, &stateful, settings)?;
    tracing::info!(
        captured = stats.consumed,
        produced = stats.produced,
        dead_lettered = stats.dead_lettered,
        "pipeline stopped"
    );
    Ok(stats)
}

/// Open, restore and attach the store of every stateful processor: one partition (a captured
/// table has no partitions), replayed from its changelog unless it was closed clean at its end.
fn restore_state(executor: &mut Executor, settings: &RunSettings) -> Result<Vec<(usize, Changelog)>, RunError> {
    let mut stateful = Vec::new();
    for (index, node) in executor.topology_mut().processors.iter_mut().enumerate() {
        if !node.instance.is_stateful() {
            continue;
        }
        let state_error =
            |source: ChangelogError| RunError::State { processor: node.id.clone(), source: Box::new(source) };
        let changelog = Changelog::new(&settings.group_id, &node.id, 1);
        let store_path = settings.state_dir.join(format!("{}.redb", node.id));
        let store = state::open_store(&settings.bootstrap_servers, &store_path, &changelog).map_err(state_error)?;
        let reader = state::reader(&settings.bootstrap_servers, &settings.group_id).map_err(|source| {
            state_error(ChangelogError::Kafka {
                topic: changelog.topic.clone(),
                what: "cannot create a reader",
                source,
            })
        })?;
        let outcome = state::restore(&reader, &store, &changelog, 0, &|| false, &|_| {}).map_err(state_error)?;
        tracing::info!(processor = %node.id, ?outcome, "state restored");
        node.instance.attach_state(store);
        stateful.push((index, changelog));
    }
    Ok(stateful)
}

/// After a clean stop: record that each store matches its changelog's end.
fn close_state(executor: &Executor, stateful: &[(usize, Changelog)], settings: &RunSettings) -> Result<(), RunError> {
    for (index, changelog) in stateful {
        let node = &executor.topology().processors[*index];
        let state_error =
            |source: ChangelogError| RunError::State { processor: node.id.clone(), source: Box::new(source) };
        let Some(store) = node.instance.attached_state() else { continue };
        let reader = state::reader(&settings.bootstrap_servers, &settings.group_id).map_err(|source| {
            state_error(ChangelogError::Kafka {
                topic: changelog.topic.clone(),
                what: "cannot create a reader",
                source,
            })
        })?;
        state::mark_clean(&reader, store, changelog, &[0]).map_err(state_error)?;
    }
    Ok(())
}
