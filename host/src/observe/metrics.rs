//! The pipeline's Prometheus metrics, named after Vector's component specification
//! (`component_received_records_total`, `component_sent_records_total`, ...) with a `meshhost_`
//! prefix and labels `pipeline`, `component_id`, `component_kind` (source, processor, sink) and
//! `port`.
//!
//! The hot path counts in plain integers ([`ExecutorCounts`]); after each batch the run loop
//! hands them here ([`PipelineMetrics::publish`]) and the differences are added to the
//! Prometheus counters, so a scrape never touches the record loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::{ExecutorCounts, Layout};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Component {
    pipeline: String,
    component_id: String,
    component_kind: String,
    port: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Failed {
    pipeline: String,
    component_id: String,
    stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Partition {
    pipeline: String,
    topic: String,
    partition: i32,
}

pub struct PipelineMetrics {
    pipeline: String,
    registry: Registry,
    received: Family<Component, Counter>,
    sent: Family<Component, Counter>,
    discarded: Family<Component, Counter>,
    traps: Family<Component, Counter>,
    call_seconds: Family<Component, Counter<f64>>,
    dead_lettered: Family<Failed, Counter>,
    batch_records: Histogram,
    lag: Family<Partition, Gauge>,
    committed: Family<Partition, Gauge>,
    producer_queue: Gauge,
    rebalances: Counter,
    state_keys: Family<Component, Gauge>,
    state_restored: Family<Component, Gauge>,
    ready: AtomicBool,
    /// Component labels in [`ExecutorCounts`] order.
    labels: Labels,
    published: Mutex<ExecutorCounts>,
}

/// The label sets of every node, resolved once.
struct Labels {
    sources: Vec<Component>,
    /// Per processor: per input port, per output port, and the processor itself.
    processor_inputs: Vec<Vec<Component>>,
    processor_outputs: Vec<Vec<Component>>,
    processors: Vec<Component>,
    sinks: Vec<Component>,
}

impl PipelineMetrics {
    pub fn new(pipeline: &str, layout: &Layout) -> PipelineMetrics {
        let component = |id: &str, kind: &str, port: &str| Component {
            pipeline: pipeline.to_string(),
            component_id: id.to_string(),
            component_kind: kind.to_string(),
            port: port.to_string(),
        };
        let labels = Labels {
            sources: layout.sources.iter().map(|id| component(id, "source", "")).collect(),
            processor_inputs: layout
                .processors
                .iter()
                .map(|(id, inputs, _)| (0..*inputs).map(|i| component(id, "processor", &format!("in{i}"))).collect())
                .collect(),
            processor_outputs: layout
                .processors
                .iter()
                .map(|(id, _, outputs)| outputs.iter().map(|port| component(id, "processor", port)).collect())
                .collect(),
            processors: layout.processors.iter().map(|(id, _, _)| component(id, "processor", "")).collect(),
            sinks: layout.sinks.iter().map(|id| component(id, "sink", "")).collect(),
        };
        let mut registry = Registry::with_prefix("meshhost");
        let received = Family::default();
        registry.register(
            "component_received_records",
            "Records a component took in: read by a source, handed to a processor's input port or to a sink",
            received.clone(),
        );
        let sent = Family::default();
        registry.register(
            "component_sent_records",
            "Records a processor emitted on an output port (after its checks), or a sink's records the broker acknowledged",
            sent.clone(),
        );
        let discarded = Family::default();
        registry.register(
            "component_discarded_records",
            "Records a processor dropped on purpose: nothing emitted from them and nothing failed (a filter's drops)",
            discarded.clone(),
        );
        let traps = Family::default();
        registry.register("processor_traps", "Calls that trapped; each rebuilds the instance", traps.clone());
        let call_seconds = Family::default();
        registry.register("processor_call_seconds", "Time spent in a processor's process calls", call_seconds.clone());
        let dead_lettered = Family::default();
        registry.register(
            "dead_lettered_records",
            "Records sent to the dead-letter topic, by the stage that failed (decode, process, encode, deliver) and the component",
            dead_lettered.clone(),
        );
        let batch_records = Histogram::new(exponential_buckets(1.0, 4.0, 8));
        registry.register("batch_records", "Records per batch handed to the DAG", batch_records.clone());
        let lag = Family::default();
        registry.register(
            "consumer_lag_records",
            "Records between the group's position and the end of a partition",
            lag.clone(),
        );
        let committed = Family::default();
        registry.register("committed_offset", "The offset the group committed last, per partition", committed.clone());
        let producer_queue = Gauge::default();
        registry.register(
            "producer_queue_records",
            "Records handed to the producer and not yet acknowledged by the broker",
            producer_queue.clone(),
        );
        let state_keys = Family::default();
        registry.register(
            "state_keys",
            "Keys in a stateful processor's local store, all partitions",
            state_keys.clone(),
        );
        let state_restored = Family::default();
        registry.register(
            "state_restored_records",
            "Changelog records replayed into a stateful processor's store when the run started (grows during the restore)",
            state_restored.clone(),
        );
        let rebalances = Counter::default();
        registry.register(
            "rebalances",
            "Partition assignments and revocations this instance went through",
            rebalances.clone(),
        );
        PipelineMetrics {
            rebalances,
            state_keys,
            state_restored,
            pipeline: pipeline.to_string(),
            registry,
            received,
            sent,
            discarded,
            traps,
            call_seconds,
            dead_lettered,
            batch_records,
            lag,
            committed,
            producer_queue,
            ready: AtomicBool::new(false),
            published: Mutex::new(ExecutorCounts::default()),
            labels,
        }
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Add what the executor counted since the last call, and one batch of `records`.
    pub fn publish(&self, counts: &ExecutorCounts, records: usize) {
        self.batch_records.observe(records as f64);
        let mut published = self.published.lock().expect("never poisoned");
        let before = &*published;
        let add = |family: &Family<Component, Counter>, labels: &Component, now: u64, then: u64| {
            if now > then {
                family.get_or_create(labels).inc_by(now - then);
            }
        };
        let at = |v: &Vec<u64>, i: usize| v.get(i).copied().unwrap_or(0);
        for (i, labels) in self.labels.sources.iter().enumerate() {
            add(&self.received, labels, counts.source_received[i], at(&before.source_received, i));
        }
        for (p, inputs) in self.labels.processor_inputs.iter().enumerate() {
            let then = before.processor_received.get(p);
            for (i, labels) in inputs.iter().enumerate() {
                add(&self.received, labels, counts.processor_received[p][i], then.map_or(0, |t| at(t, i)));
            }
            let then = before.processor_sent.get(p);
            for (o, labels) in self.labels.processor_outputs[p].iter().enumerate() {
                add(&self.sent, labels, counts.processor_sent[p][o], then.map_or(0, |t| at(t, o)));
            }
            let processor = &self.labels.processors[p];
            add(&self.discarded, processor, counts.processor_discarded[p], at(&before.processor_discarded, p));
            add(&self.traps, processor, counts.processor_traps[p], at(&before.processor_traps, p));
            let seconds =
                counts.processor_call_seconds[p] - before.processor_call_seconds.get(p).copied().unwrap_or(0.0);
            if seconds > 0.0 {
                self.call_seconds.get_or_create(processor).inc_by(seconds);
            }
        }
        for (i, labels) in self.labels.sinks.iter().enumerate() {
            add(&self.received, labels, counts.sink_received[i], at(&before.sink_received, i));
        }
        *published = counts.clone();
    }

    /// `count` more records of sink `index` acknowledged by the broker.
    pub fn sink_sent(&self, index: usize, count: u64) {
        if count > 0 {
            self.sent.get_or_create(&self.labels.sinks[index]).inc_by(count);
        }
    }

    /// One record sent to dead letters.
    /// `stage`: the dead letter's `meshhost.stage` (`decode`, `process`, `encode`).
    pub fn dead_lettered(&self, component_id: &str, stage: &str) {
        let labels = Failed {
            pipeline: self.pipeline.clone(),
            component_id: component_id.to_string(),
            stage: stage.to_string(),
        };
        self.dead_lettered.get_or_create(&labels).inc();
    }

    /// The lag of one partition: its end offset minus the group's position.
    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let labels = Partition { pipeline: self.pipeline.clone(), topic: topic.to_string(), partition };
        self.lag.get_or_create(&labels).set(lag);
    }

    /// The keys in processor `index`'s store.
    pub fn set_state_keys(&self, index: usize, keys: u64) {
        self.state_keys.get_or_create(&self.labels.processors[index]).set(keys as i64);
    }

    /// Changelog records replayed so far into processor `index`'s store.
    pub fn set_restored(&self, index: usize, records: u64) {
        self.state_restored.get_or_create(&self.labels.processors[index]).set(records as i64);
    }

    /// The consumer's rebalance count, now `total`.
    pub fn set_rebalances(&self, total: u64) {
        let known = self.rebalances.get();
        if total > known {
            self.rebalances.inc_by(total - known);
        }
    }

    pub fn set_producer_queue(&self, records: i32) {
        self.producer_queue.set(records.into());
    }

    pub fn set_committed(&self, topic: &str, partition: i32, offset: i64) {
        let labels = Partition { pipeline: self.pipeline.clone(), topic: topic.to_string(), partition };
        self.committed.get_or_create(&labels).set(offset);
    }
}
