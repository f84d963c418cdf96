//! The one source of a run: the pipeline's Kafka topics (one consumer in the pipeline's group)
//! and its captured Postgres tables, polled into the same batches and acknowledged each its own
//! way (a Kafka commit; the slot's confirmed WAL position).
//!
//! **Who captures.** A table has one replication slot, so one instance reads it. Without Kafka
//! sources that is the instance running. With Kafka sources it is the owner of partition 0 of
//! the first source topic: the consumer group (Kafka's coordinator) elects it, and when that
//! instance dies or leaves, the partition and the capture move to another member, which starts
//! reading the slot once the server has let go of the old connection.
//!
//! A captured table joined with Kafka topics reaches the join through a topic of its own (see
//! `run::route_joined_tables`); here it is only written. State fed only by captured tables is
//! restored from its changelog when the capture starts on this instance, and marked clean when
//! the run stops cleanly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshhost_avro::Schema;
use meshhost_sdk::Header;

use super::handover::{Handover, StatefulProcessor};
use crate::source::kafka::{KafkaRecord, KafkaSource, TopicPartition};
use crate::source::postgres::capture::{CapturedRecord, CapturedTable};
use crate::source::postgres::snapshot::SharedRecords;
use crate::source::postgres::PostgresSource;
use crate::source::{InputRecord, Source, SourceError, SourcePartition};
use crate::state::{self, ChangelogError};

/// How long a poll waits for the first record when there is nothing else to read.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long the Kafka poll waits while a capture runs beside it (its records wait meanwhile).
const SHARED_POLL_WAIT: Duration = Duration::from_millis(20);

/// A record of any of the pipeline's sources.
pub enum PipelineRecord<'a> {
    Kafka(KafkaRecord<'a>),
    Captured(CapturedRecord),
}

/// Evaluate `$body` with `$r` bound to the record, whichever kind it is.
macro_rules! with_record {
    ($record:expr, $r:ident => $body:expr) => {
        match $record {
            PipelineRecord::Kafka($r) => $body,
            PipelineRecord::Captured($r) => $body,
        }
    };
}

impl InputRecord for PipelineRecord<'_> {
    fn source(&self) -> usize {
        with_record!(self, r => r.source())
    }
    fn partition(&self) -> i32 {
        with_record!(self, r => r.partition())
    }
    fn position(&self) -> i64 {
        with_record!(self, r => r.position())
    }
    fn key(&self) -> Option<&[u8]> {
        with_record!(self, r => r.key())
    }
    fn value(&self) -> Option<&[u8]> {
        with_record!(self, r => r.value())
    }
    fn headers(&self) -> Vec<Header> {
        with_record!(self, r => r.headers())
    }
    fn timestamp(&self) -> Option<i64> {
        with_record!(self, r => r.timestamp())
    }
    fn failure(&self) -> Option<&str> {
        with_record!(self, r => r.failure())
    }
}

/// The pipeline's Kafka side: its consumer and the handover that restores state as the group
/// assigns partitions.
pub struct KafkaSide {
    pub source: KafkaSource,
    pub handover: Arc<Handover>,
}

/// The pipeline's captured tables, read on the instance that leads the capture.
pub struct Capture {
    /// Per source index: the table and its schema (`None` for a Kafka source).
    tables: Vec<Option<(CapturedTable, Arc<Schema>)>>,
    /// Where the slots' snapshot markers live.
    state_dir: PathBuf,
    /// Stateful processors fed by captured tables only.
    state: Vec<StatefulProcessor>,
    /// For the changelog reader of `state`.
    bootstrap_servers: String,
    group_id: String,
    running: Mutex<Option<PostgresSource>>,
    /// Whether `state` was restored by this instance and may be marked clean at the end.
    state_owned: AtomicBool,
}

impl Capture {
    pub fn new(
        tables: Vec<Option<(CapturedTable, Arc<Schema>)>>,
        state_dir: PathBuf,
        state: Vec<StatefulProcessor>,
        (bootstrap_servers, group_id): (&str, &str),
    ) -> Capture {
        Capture {
            tables,
            state_dir,
            state,
            bootstrap_servers: bootstrap_servers.to_string(),
            group_id: group_id.to_string(),
            running: Mutex::default(),
            state_owned: AtomicBool::new(false),
        }
    }

    fn is_running(&self) -> bool {
        self.running.lock().unwrap().is_some()
    }

    /// Restore the capture-only state, then start a reader per table.
    fn start(&self) -> Result<(), SourceError> {
        for processor in &self.state {
            let state_error = |source: ChangelogError| SourceError::Client {
                what: format!("state of processor {}", processor.id),
                source: Box::new(source),
            };
            let reader = state::reader(&self.bootstrap_servers, &self.group_id).map_err(|source| {
                state_error(ChangelogError::Kafka {
                    topic: processor.changelog.topic.clone(),
                    what: "cannot create a reader",
                    source,
                })
            })?;
            for partition in 0..processor.changelog.partitions {
                let outcome =
                    state::restore(&reader, &processor.store, &processor.changelog, partition, &|| false, &|_| {})
                        .map_err(state_error)?;
                tracing::info!(processor = %processor.id, partition, ?outcome, "state restored");
            }
        }
        self.state_owned.store(true, std::sync::atomic::Ordering::SeqCst);
        let shared = SharedRecords::open(&self.bootstrap_servers, &self.group_id)?;
        let source = PostgresSource::start(self.tables.clone(), &self.state_dir, Some(shared))?;
        *self.running.lock().unwrap() = Some(source);
        tracing::info!("capturing the pipeline's tables on this instance");
        Ok(())
    }

    /// Stop reading (another instance leads the capture now): what was delivered is confirmed
    /// by the readers as they close; what is still in flight is read again by the next leader.
    fn stop(&self) {
        if let Some(source) = self.running.lock().unwrap().take() {
            tracing::info!("no longer the capturing instance: stopping the capture");
            source.stop();
        }
        self.state_owned.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// After a clean end: record that the capture-only state matches its changelog's end.
    pub fn close_state(&self) -> Result<(), (String, Box<ChangelogError>)> {
        if !self.state_owned.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        for processor in &self.state {
            let reader = state::reader(&self.bootstrap_servers, &self.group_id).map_err(|source| {
                let error = ChangelogError::Kafka {
                    topic: processor.changelog.topic.clone(),
                    what: "cannot create a reader",
                    source,
                };
                (processor.id.clone(), Box::new(error))
            })?;
            let all: Vec<i32> = (0..processor.changelog.partitions).collect();
            state::mark_clean(&reader, &processor.store, &processor.changelog, &all)
                .map_err(|e| (processor.id.clone(), Box::new(e)))?;
        }
        Ok(())
    }
}

/// Every source of a run, read as one.
pub struct PipelineSource {
    pub kafka: Option<KafkaSide>,
    pub capture: Option<Capture>,
}

impl PipelineSource {
    /// Whether records flow: Kafka partitions assigned and none held back for a restore (with
    /// Kafka sources), the capture running (without).
    pub fn is_ready(&self) -> bool {
        match (&self.kafka, &self.capture) {
            (Some(kafka), _) => kafka.source.is_assigned() && !kafka.source.context().holds_any(),
            (None, Some(capture)) => capture.is_running(),
            (None, None) => false,
        }
    }

    /// Assignments and revocations of the Kafka partitions so far.
    pub fn rebalances(&self) -> u64 {
        self.kafka.as_ref().map_or(0, |kafka| kafka.source.rebalances())
    }

    /// Per assigned Kafka partition, its lag (asks the broker).
    pub fn lag(&self) -> Vec<(String, i32, i64)> {
        self.kafka.as_ref().map_or_else(Vec::new, |kafka| kafka.source.lag())
    }

    /// Resume the Kafka partitions whose state is restored; stop when the handover must.
    fn tend_kafka(kafka: &KafkaSide) -> Result<(), SourceError> {
        if let Some(problem) = kafka.handover.problem() {
            return Err(SourceError::Stopped(problem));
        }
        let restored = kafka.handover.take_restored();
        if !restored.is_empty() {
            let owned = kafka.source.context().owned();
            let partitions: Vec<_> =
                restored.iter().flat_map(|&p| kafka.handover.stateful_partitions(&owned, p)).collect();
            tracing::info!(?partitions, "state restored: resuming");
            kafka.source.resume(&partitions)?;
        }
        Ok(())
    }

    /// Start or stop the capture as this instance gains or loses the lead; whether captured
    /// records may be read now.
    fn tend_capture(&self, capture: &Capture) -> Result<bool, SourceError> {
        let Some(kafka) = &self.kafka else {
            if !capture.is_running() {
                capture.start()?;
            }
            return Ok(true);
        };
        let leads = match leader_partition(kafka) {
            Some((topic, partition)) => kafka.source.context().owns(&topic, partition),
            None => false,
        };
        if !leads {
            capture.stop();
            return Ok(false);
        }
        if !capture.is_running() {
            capture.start()?;
        }
        Ok(true)
    }
}

/// The Kafka partition whose owner captures: partition 0 of the first source topic.
fn leader_partition(kafka: &KafkaSide) -> Option<TopicPartition> {
    kafka.source.topics().iter().find(|t| !t.is_empty()).map(|topic| (topic.clone(), 0))
}

impl Source for PipelineSource {
    type Record<'a> = PipelineRecord<'a>;

    fn poll<'a>(
        &'a self,
        max: usize,
        stop: &AtomicBool,
        batch: &mut Vec<PipelineRecord<'a>>,
    ) -> Result<(), SourceError> {
        if let Some(kafka) = &self.kafka {
            Self::tend_kafka(kafka)?;
        }
        let capturing = match &self.capture {
            Some(capture) => self.tend_capture(capture)?,
            None => false,
        };
        if let Some(kafka) = &self.kafka {
            let wait = if capturing { SHARED_POLL_WAIT } else { POLL_WAIT };
            kafka.source.poll_into(max, stop, wait, batch, PipelineRecord::Kafka);
        }
        if let (true, Some(capture)) = (capturing, &self.capture) {
            let running = capture.running.lock().unwrap();
            if let Some(source) = &*running {
                let wait = if self.kafka.is_some() { Duration::ZERO } else { POLL_WAIT };
                let room = max.saturating_sub(batch.len()).max(1);
                source.poll_into(room, stop, wait, batch, PipelineRecord::Captured)?;
            }
        } else if self.kafka.is_none() {
            std::thread::sleep(POLL_WAIT);
        }
        Ok(())
    }

    fn acknowledge(&self, positions: &HashMap<SourcePartition, i64>, wait: bool) -> Result<(), SourceError> {
        if let Some(kafka) = &self.kafka {
            kafka.source.acknowledge(positions, wait)?;
        }
        if let Some(capture) = &self.capture {
            if let Some(source) = &*capture.running.lock().unwrap() {
                source.acknowledge(positions, wait)?;
            }
        }
        Ok(())
    }
}
