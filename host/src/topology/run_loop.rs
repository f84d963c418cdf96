//! The one run loop: poll a batch from the source, run it through the [`Executor`] (in memory,
//! no hop between processors), hand what comes out to the sink, and acknowledge positions once
//! they are delivered.
//!
//! It knows the source and the sink only by their traits, so the same loop runs Kafka topics,
//! captured tables and any mix of them (`run`), and in-memory sources and sinks (its tests).
//! Deliveries are tracked per batch ([`DeliveryTracker`]); a batch's positions are acknowledged
//! only when it and every batch before it are fully delivered — to sinks, dead letters or state
//! changelogs — so nothing is lost (at-least-once). A bounded number of batches in flight gives
//! backpressure. A source that fails still has what was delivered acknowledged before the loop
//! returns its error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::breaker::Breaker;
use super::execute::{Effects, ExecuteError, Executor};
use super::failure::Failure;
use crate::observe::PipelineMetrics;
use crate::plugin::batch::Record;
use crate::sink::delivery::{last_positions, BatchId, DeliveryError, DeliveryTracker};
use crate::sink::{Destination, Origin, OutgoingRecord, Sink, SinkError};
use crate::source::{InputRecord, Source, SourceError, SourcePartition};
use crate::state::{Changelog, StateWrites};

/// Batches not yet fully delivered at most; beyond it the loop waits for the sink.
pub const MAX_BATCHES_IN_FLIGHT: usize = 32;

/// How long the loop waits for the sink to deliver what it holds when it stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts reported when the run ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunStats {
    pub consumed: u64,
    pub produced: u64,
    pub dead_lettered: u64,
}

/// Why the loop stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// A batch could not be carried out (boxed: errors stay small on the happy path).
    #[error(transparent)]
    Batch(Box<ExecuteError<OutboxError>>),
    #[error(
        "{failed} of the last {window} records failed, more than dead_letter.max_ratio {max_ratio} allows; \
         stopped, with those records not committed, so a fixed pipeline reads them again. Last failure: {last}"
    )]
    TooManyFailures { failed: usize, window: usize, max_ratio: f64, last: String },
}

impl From<ExecuteError<OutboxError>> for LoopError {
    fn from(error: ExecuteError<OutboxError>) -> Self {
        LoopError::Batch(Box::new(error))
    }
}

/// What the loop works with. `delivered` and `breaker` are shared with whoever else commits
/// (the Kafka handover commits revoked partitions from them).
pub struct RunLoop<'r, S, K> {
    pub source: &'r S,
    pub sink: &'r K,
    pub tracker: &'r DeliveryTracker,
    pub routes: &'r Routes,
    /// Last delivered position per source partition: what may be acknowledged.
    pub delivered: &'r Mutex<HashMap<SourcePartition, i64>>,
    /// The failure-rate window (`dead_letter.max_ratio`), if any: its records are not acknowledged.
    pub breaker: Option<&'r Mutex<Breaker>>,
    pub metrics: Option<&'r PipelineMetrics>,
    /// Most records per batch.
    pub batch_size: usize,
}

impl<S: Source, K: Sink> RunLoop<'_, S, K> {
    /// Run batches until `stop` is set, the source fails, a delivery fails or the breaker trips;
    /// then drain the sink and acknowledge what was delivered. `between` runs after every turn
    /// with the counts so far and the acknowledged positions (progress lines, metrics).
    pub fn run(
        &self,
        executor: &mut Executor,
        stop: &AtomicBool,
        mut between: impl FnMut(&Executor, &RunStats, &HashMap<SourcePartition, i64>),
    ) -> Result<RunStats, LoopError> {
        let mut stats = RunStats::default();
        let mut stopped: Option<LoopError> = None;
        let mut batch = Vec::with_capacity(self.batch_size);
        while !stop.load(Ordering::Relaxed) {
            if let Err(error) = self.source.poll(self.batch_size, stop, &mut batch) {
                stopped = Some(error.into());
                break;
            }
            if !batch.is_empty() {
                stats.consumed += batch.len() as u64;
                let id = self.tracker.begin(last_positions(&batch));
                let mut outbox = Outbox::new(self.sink, self.routes, &batch, id, self.metrics);
                let result = executor.run(&batch, &mut outbox);
                if let Err(ExecuteError::Effect(OutboxError::Sink(error))) = &result {
                    self.tracker.fail(error.to_string());
                }
                result?;
                stats.produced += outbox.produced;
                stats.dead_lettered += outbox.dead_lettered;
                let (sent, failed) = (outbox.sent, outbox.failed);
                if let Some(metrics) = self.metrics {
                    metrics.publish(executor.counts(), batch.len());
                }
                self.sink.sealed(id);
                self.tracker.seal(id, sent);
                if let Some(breaker) = self.breaker {
                    stopped = count_failures(&mut breaker.lock().unwrap(), &batch, failed);
                }
                batch.clear();
                if stopped.is_some() {
                    break;
                }
                self.tracker.wait_for_room(MAX_BATCHES_IN_FLIGHT);
            }
            let acknowledgeable = self.collect()?;
            self.source.acknowledge(&acknowledgeable, false)?;
            between(executor, &stats, &acknowledgeable);
        }

        tracing::info!("stopping: draining in-flight records");
        self.sink.flush(DRAIN_TIMEOUT)?;
        self.tracker.wait_for_room(1);
        // After a failed delivery nothing more is acknowledged: collect returns its error.
        let acknowledgeable = self.collect()?;
        self.source.acknowledge(&acknowledgeable, true)?;
        match stopped {
            Some(error) => Err(error),
            None => Ok(stats),
        }
    }

    /// The positions of completed batches, moved into `delivered`: what may be acknowledged
    /// (no further than the breaker's window allows).
    fn collect(&self) -> Result<HashMap<SourcePartition, i64>, LoopError> {
        let mut delivered = self.delivered.lock().unwrap();
        self.tracker.collect_completed(&mut delivered)?;
        Ok(match self.breaker {
            Some(breaker) => breaker.lock().unwrap().committable(&delivered),
            None => delivered.clone(),
        })
    }
}

/// Count a batch's records, in order, against the failure-rate window: the error to stop with
/// when the window holds too many failures. `failed` are the indexes of the records that went
/// to dead letters, with the reason, in the order they did.
fn count_failures<R: InputRecord>(
    breaker: &mut Breaker,
    batch: &[R],
    failed: Vec<(usize, String)>,
) -> Option<LoopError> {
    let mut failures = failed.iter().map(|(origin, _)| *origin).collect::<Vec<_>>();
    failures.sort_unstable();
    for (index, record) in batch.iter().enumerate() {
        let is_failed = failures.binary_search(&index).is_ok();
        if breaker.record((record.source(), record.partition()), record.position(), is_failed) {
            let (failed_count, window) = breaker.failures();
            let last = failed.into_iter().rev().find(|(origin, _)| *origin <= index).map(|(_, why)| why);
            return Some(LoopError::TooManyFailures {
                failed: failed_count,
                window,
                max_ratio: breaker.limit().max_ratio,
                last: last.unwrap_or_default(),
            });
        }
    }
    None
}

/// Where the effects of a batch go, by index.
pub struct Routes {
    /// Id of each source (for metrics).
    pub source_ids: Vec<String>,
    /// Topic of each source, or a captured table's `schema.table` (for dead-letter headers).
    pub source_topics: Vec<String>,
    pub sink_topics: Vec<String>,
    /// Per sink: whether a record goes to its source record's partition (the topic a captured
    /// table is joined through: the partition is the key's under the joined topics' partitioner).
    pub keeps_partition: Vec<bool>,
    /// Per source: whether its positions are durable (Kafka offsets; a capture's are per run).
    pub durable_positions: Vec<bool>,
    pub dead_letter_topic: Option<String>,
    /// Per processor: its changelog if stateful.
    pub changelogs: Vec<Option<Changelog>>,
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
    sink: &'a S,
    routes: &'a Routes,
    /// The consumed records: dead letters send them as they were read.
    batch: &'a [R],
    id: BatchId,
    produced: u64,
    dead_lettered: u64,
    /// The records that went to dead letters (index in the batch) and why, for the breaker.
    failed: Vec<(usize, String)>,
    /// Records handed to the sink, of every kind: the deliveries the batch waits for.
    sent: u64,
    metrics: Option<&'a PipelineMetrics>,
}

impl<'a, S: Sink, R: InputRecord> Outbox<'a, S, R> {
    fn new(sink: &'a S, routes: &'a Routes, batch: &'a [R], id: BatchId, metrics: Option<&'a PipelineMetrics>) -> Self {
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
        let partition = self.routes.keeps_partition[sink].then(|| self.batch[origin].partition());
        let destination = Destination { topic: &self.routes.sink_topics[sink], partition };
        let consumed = &self.batch[origin];
        let outgoing = OutgoingRecord {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
            timestamp: record.timestamp,
            origin: Some(Origin {
                source: &self.routes.source_ids[consumed.source()],
                topic: &self.routes.source_topics[consumed.source()],
                partition: consumed.partition(),
                position: consumed.position(),
                durable: self.routes.durable_positions[consumed.source()],
            }),
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
            origin: None,
        };
        self.send_to(Destination { topic: dead_letter_topic, partition: None }, record)?;
        self.dead_lettered += 1;
        self.failed.push((origin, failure.to_string()));
        if let Some(metrics) = self.metrics {
            let component = failure.processor.as_deref().unwrap_or(&self.routes.source_ids[consumed.source()]);
            metrics.dead_lettered(component, failure.stage.as_str());
        }
        Ok(())
    }

    /// Mirror the writes to the changelog, counted against the batch: its positions are
    /// acknowledged only after the changelog has them.
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

#[cfg(test)]
mod tests {
    //! The loop driven by in-memory sources and sinks: no broker, no database.

    use std::collections::VecDeque;
    use std::sync::Arc;

    use meshhost_sdk::Header;

    use super::*;
    use crate::codec::{SinkEncoder, SourceDecoder};
    use crate::source::SourceRecord;
    use crate::topology::{EdgeSchema, SinkNode, SourceNode, Target, Topology};

    const ROW: &str = r#"{"type": "record", "name": "Row", "fields": [{"name": "n", "type": "long"}]}"#;

    /// Two sources into one sink, no processors: source 0 stands for a Kafka topic (offsets per
    /// partition), source 1 for a captured table (one sequence over its state partitions).
    fn executor() -> Executor {
        let schema = EdgeSchema::parse(ROW).unwrap();
        let source = |id: &str| SourceNode {
            id: id.into(),
            topic: id.into(),
            postgres: None,
            decoder: SourceDecoder::Avro,
            schema: schema.clone(),
            targets: vec![Target::Sink { index: 0 }],
        };
        let sources = vec![source("talents"), source("public.movies")];
        let sink =
            SinkNode { id: "out".into(), topic: "out".into(), postgres: None, encoder: SinkEncoder::Avro, schema };
        Executor::new(Topology { sources, processors: Vec::new(), sinks: vec![sink], catalog: None })
    }

    fn routes() -> Routes {
        Routes {
            source_ids: vec!["talents".into(), "movies".into()],
            source_topics: vec!["talents".into(), "public.movies".into()],
            sink_topics: vec!["out".into()],
            keeps_partition: vec![false],
            durable_positions: vec![true, false],
            dead_letter_topic: Some("dlq".into()),
            changelogs: Vec::new(),
        }
    }

    /// A record of source `source` at `partition`/`position` whose value is the row `{n}`
    /// (`None`: bytes that are no datum of the schema).
    fn record(source: usize, partition: i32, position: i64, n: Option<i64>) -> SourceRecord {
        let value = match n {
            Some(n) => meshhost_avro::json_to_datum(
                &meshhost_avro::Schema::parse(ROW).unwrap(),
                &serde_json::json!({ "n": n }),
            )
            .unwrap(),
            None => vec![0x80], // a varint that never ends
        };
        SourceRecord {
            source,
            partition,
            position,
            record: crate::plugin::batch::Record {
                key: Some(format!("k{position}").into_bytes()),
                value: Some(value),
                headers: vec![Header { key: "h".into(), value: Some(b"v".to_vec()) }],
                timestamp: Some(position),
            },
        }
    }

    /// Hands out its batches in order, then fails (if told to) or asks the loop to stop.
    /// Remembers every acknowledgement.
    struct MemorySource {
        batches: Mutex<VecDeque<Vec<SourceRecord>>>,
        fail_at_end: Option<&'static str>,
        acknowledged: Mutex<Vec<(HashMap<SourcePartition, i64>, bool)>>,
    }

    impl MemorySource {
        fn new(batches: Vec<Vec<SourceRecord>>, fail_at_end: Option<&'static str>) -> MemorySource {
            MemorySource { batches: Mutex::new(batches.into()), fail_at_end, acknowledged: Mutex::default() }
        }

        /// The non-empty acknowledgements while running, and the final one.
        fn acknowledged(&self) -> (Vec<HashMap<SourcePartition, i64>>, HashMap<SourcePartition, i64>) {
            let all = self.acknowledged.lock().unwrap();
            let (last, during) = all.split_last().expect("acknowledged at the end");
            assert!(last.1, "the last acknowledgement waits");
            let during = during.iter().filter(|(p, _)| !p.is_empty()).map(|(p, _)| p.clone()).collect();
            (during, last.0.clone())
        }
    }

    impl Source for MemorySource {
        type Record<'a> = SourceRecord;

        fn poll(&self, _max: usize, stop: &AtomicBool, batch: &mut Vec<SourceRecord>) -> Result<(), SourceError> {
            match self.batches.lock().unwrap().pop_front() {
                Some(records) => batch.extend(records),
                None => match self.fail_at_end {
                    Some(why) => return Err(SourceError::Stopped(why.into())),
                    None => stop.store(true, Ordering::Relaxed),
                },
            }
            Ok(())
        }

        fn acknowledge(&self, positions: &HashMap<SourcePartition, i64>, wait: bool) -> Result<(), SourceError> {
            self.acknowledged.lock().unwrap().push((positions.clone(), wait));
            Ok(())
        }
    }

    /// How the sink reports deliveries.
    #[derive(Clone, Copy, PartialEq)]
    enum Delivery {
        /// Each record at once.
        AtOnce,
        /// Only when flushed (at the end of the run).
        OnFlush,
        /// The records of this batch fail.
        FailBatch(BatchId),
    }

    /// A record the sink was given: (topic, key, n or the dead letter's error header).
    type Sent = (String, String, String);

    struct MemorySink {
        tracker: Arc<DeliveryTracker>,
        delivery: Delivery,
        /// In the order sent.
        sent: Mutex<Vec<Sent>>,
        held: Mutex<Vec<BatchId>>,
    }

    impl MemorySink {
        fn new(tracker: Arc<DeliveryTracker>, delivery: Delivery) -> MemorySink {
            MemorySink { tracker, delivery, sent: Mutex::default(), held: Mutex::default() }
        }
    }

    impl Sink for MemorySink {
        fn send(
            &self,
            destination: Destination<'_>,
            record: OutgoingRecord<'_>,
            batch: BatchId,
        ) -> Result<(), SinkError> {
            let key = String::from_utf8(record.key.unwrap().to_vec()).unwrap();
            let what = match record.headers.iter().find(|h| h.key == "meshhost.error") {
                Some(error) => String::from_utf8(error.value.clone().unwrap()).unwrap(),
                None => {
                    let schema = meshhost_avro::Schema::parse(ROW).unwrap();
                    meshhost_avro::datum_to_json(&schema, record.value.unwrap()).unwrap()["n"].to_string()
                }
            };
            self.sent.lock().unwrap().push((destination.topic.to_string(), key, what));
            match self.delivery {
                Delivery::AtOnce => self.tracker.delivered(batch, None),
                Delivery::OnFlush => self.held.lock().unwrap().push(batch),
                Delivery::FailBatch(failing) => {
                    let error = (batch == failing).then(|| "the topic was deleted".to_string());
                    self.tracker.delivered(batch, error);
                }
            }
            Ok(())
        }

        fn flush(&self, _timeout: Duration) -> Result<(), SinkError> {
            for batch in self.held.lock().unwrap().drain(..) {
                self.tracker.delivered(batch, None);
            }
            Ok(())
        }
    }

    fn run(source: &MemorySource, delivery: Delivery) -> (Result<RunStats, LoopError>, Vec<Sent>) {
        let tracker = Arc::new(DeliveryTracker::default());
        let sink = MemorySink::new(tracker.clone(), delivery);
        let routes = routes();
        let delivered = Mutex::default();
        let run_loop = RunLoop {
            source,
            sink: &sink,
            tracker: &tracker,
            routes: &routes,
            delivered: &delivered,
            breaker: None,
            metrics: None,
            batch_size: 100,
        };
        let result = run_loop.run(&mut executor(), &AtomicBool::new(false), |_, _, _| {});
        let sent = sink.sent.lock().unwrap().clone();
        (result, sent)
    }

    /// A Kafka-like batch (two partitions) and a capture-like batch (rows spread over state
    /// partitions, one sequence), then a mix with an undecodable record.
    fn mixed_batches() -> Vec<Vec<SourceRecord>> {
        vec![
            vec![record(0, 0, 10, Some(1)), record(0, 1, 7, Some(2)), record(0, 0, 11, Some(3))],
            vec![record(1, 2, 1, Some(4)), record(1, 0, 2, Some(5)), record(1, 2, 3, Some(6))],
            vec![record(0, 1, 8, Some(7)), record(1, 1, 4, None), record(0, 0, 12, Some(8))],
        ]
    }

    fn sent(topic: &str, key: &str, what: &str) -> Sent {
        (topic.into(), key.into(), what.into())
    }

    #[test]
    fn records_go_out_in_batch_order_and_positions_are_acknowledged_per_source_partition() {
        let source = MemorySource::new(mixed_batches(), None);
        let (result, out) = run(&source, Delivery::AtOnce);
        assert_eq!(result.unwrap(), RunStats { consumed: 9, produced: 8, dead_lettered: 1 });
        let dead = r#"not an Avro datum of the source schema: field "n": unexpected end of datum at byte 0"#;
        let expected = [
            sent("out", "k10", "1"),
            sent("out", "k7", "2"),
            sent("out", "k11", "3"),
            sent("out", "k1", "4"),
            sent("out", "k2", "5"),
            sent("out", "k3", "6"),
            sent("dlq", "k4", dead),
            sent("out", "k8", "7"),
            sent("out", "k12", "8"),
        ];
        assert_eq!(out, expected);
        let (_, last) = source.acknowledged();
        // Kafka offsets per partition; the captured table's sequence per state partition (the
        // table's source confirms the highest, every batch before it being delivered).
        assert_eq!(last, HashMap::from([((0, 0), 12), ((0, 1), 8), ((1, 0), 2), ((1, 1), 4), ((1, 2), 3)]));
    }

    #[test]
    fn nothing_is_acknowledged_before_it_is_delivered() {
        let source = MemorySource::new(mixed_batches(), None);
        let (result, _) = run(&source, Delivery::OnFlush);
        assert_eq!(result.unwrap().consumed, 9);
        let (during, last) = source.acknowledged();
        assert!(during.is_empty(), "acknowledged before any delivery: {during:?}");
        assert_eq!(last.len(), 5, "everything, once the sink flushed: {last:?}");
    }

    #[test]
    fn a_failed_delivery_stops_acknowledgement_at_the_batch_before() {
        let source = MemorySource::new(mixed_batches(), None);
        // Batch ids count from 0: the second batch's records fail.
        let (result, _) = run(&source, Delivery::FailBatch(1));
        let error = result.unwrap_err();
        assert_eq!(error.to_string(), "a record could not be delivered: the topic was deleted");
        let acknowledged = source.acknowledged.lock().unwrap();
        let every: Vec<&HashMap<SourcePartition, i64>> = acknowledged.iter().map(|(p, _)| p).collect();
        assert!(every.iter().any(|p| p == &&HashMap::from([((0, 0), 11), ((0, 1), 7)])), "{every:?}");
        assert!(
            every.iter().all(|p| !p.contains_key(&(1, 0)) && p.get(&(0, 0)) != Some(&12)),
            "nothing of the failed batch or after it: {every:?}"
        );
    }

    #[test]
    fn a_source_that_fails_still_has_what_was_delivered_acknowledged() {
        let batches = mixed_batches().into_iter().take(2).collect();
        let source = MemorySource::new(batches, Some("every table reader stopped"));
        let (result, out) = run(&source, Delivery::OnFlush);
        assert_eq!(result.unwrap_err().to_string(), "every table reader stopped");
        assert_eq!(out.len(), 6);
        let (_, last) = source.acknowledged();
        assert_eq!(last, HashMap::from([((0, 0), 11), ((0, 1), 7), ((1, 0), 2), ((1, 2), 3)]));
    }
}
