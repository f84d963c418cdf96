//! The catalog's state kept durable in its Kafka topic, folded in log order ([`Fold`]); writes
//! produce a record and answer once it is applied.
//!
//! Ids are assigned from the state a writer has caught up with, and the record carries them,
//! so they agree on every server. Two servers that write at once may pick the same version or
//! id; the log's order decides (see [`super::schemas`]) and the loser tombstones its record and
//! tries again.
//!
//! Where a write's time goes. A reader thread follows the topic with long fetches, so that an
//! idle server costs the broker nearly nothing. Waiting for that reader to return a write's own
//! record took ~240 ms a write on the project's broker, which answers a waiting fetch by polling
//! its storage at halving intervals of the fetch's wait, not when a record arrives. So a write
//! does not wait for the reader: when every record before its own is applied (the usual case: it
//! caught up just before), the writer applies its own record, the one it produced; otherwise it
//! reads the missing records itself with a second consumer ([`Chaser`]) assigned only while it
//! catches up. Both go through [`Fold::apply`], which applies each record once, in log order.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use meshhost_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::compatibility::Compatibility;
use super::log::{CatalogRecord, ConfigValue, SchemaValue};
use super::schemas::{Applied, Registration, VersionSpec};
use super::sources::{ConsumerEntry, SourceEntry};
use super::{CatalogError, CatalogState};
use crate::kafka::{client_config, ensure_topic, CreateTopicError};

/// How long a write waits to read its own record back.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a server starting up reads the topic before it gives up.
const OPEN_TIMEOUT: Duration = Duration::from_secs(300);
/// The chaser's fetch wait: it reads records already in the log, so a fetch that finds none
/// should come back quickly and ask again.
const CHASE_FETCH_WAIT_MS: &str = "5";

/// The catalog could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Topic(#[from] CreateTopicError),
    #[error("cannot read the catalog topic {topic}")]
    Kafka {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot read the catalog topic {topic} to its end: {reason}")]
    CatchUp { topic: String, reason: String },
}

pub struct CatalogStore {
    topic: String,
    fold: Arc<Fold>,
    chaser: Arc<Chaser>,
    producer: FutureProducer,
    /// For the topic's end offset, when a writer catches up.
    watermarks: Arc<BaseConsumer>,
    /// One write at a time from this server.
    write_lock: tokio::sync::Mutex<()>,
    stop: Arc<AtomicBool>,
}

/// The catalog topic folded into [`CatalogState`], each record once and in log order, by
/// whichever of the reader thread, the chaser and a writer has it first.
struct Fold {
    state: RwLock<CatalogState>,
    /// The offset after the last record applied; written only under `state`'s write lock, so
    /// that checking and applying a record are one step.
    next: AtomicI64,
}

/// How a record reached [`Fold::apply`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// Read from the topic by a consumer that has read every record before it (offsets may
    /// skip: compaction removes records).
    Read,
    /// Written by this server; it may be applied only when every record before it is.
    Own,
}

impl Fold {
    /// Apply the record at `offset` unless it is already applied (or, for [`Arrival::Own`],
    /// records before it are not yet); whether it was applied.
    fn apply(&self, offset: i64, record: Result<CatalogRecord, String>, arrival: Arrival) -> bool {
        let mut state = self.state.write().expect("never poisoned");
        let next = self.next.load(Ordering::Acquire);
        let in_order = match arrival {
            Arrival::Read => offset >= next,
            Arrival::Own => offset == next,
        };
        if !in_order {
            return false;
        }
        match record {
            Ok(record) => {
                if state.apply(record) == Applied::Conflict {
                    tracing::debug!("catalog: record at offset {offset} lost a race; ignored");
                }
            }
            Err(reason) => tracing::warn!("catalog: record at offset {offset} skipped: {reason}"),
        }
        self.next.store(offset + 1, Ordering::Release);
        true
    }

    fn apply_message(&self, message: &BorrowedMessage<'_>) {
        let record = CatalogRecord::decode(message.key(), message.payload());
        self.apply(message.offset(), record, Arrival::Read);
    }

    fn next(&self) -> i64 {
        self.next.load(Ordering::Acquire)
    }
}

/// A second consumer of the topic, assigned only while a writer catches up to an offset the
/// reader thread has not reached.
struct Chaser {
    topic: String,
    consumer: Mutex<BaseConsumer>,
}

impl Chaser {
    /// Read and apply records until the one at `offset` is applied, or `timeout` passes.
    fn chase(&self, fold: &Fold, offset: i64, timeout: Duration) -> Result<(), String> {
        let consumer = self.consumer.lock().expect("never poisoned");
        if fold.next() > offset {
            return Ok(());
        }
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition_offset(&self.topic, 0, Offset::Offset(fold.next())).map_err(|e| e.to_string())?;
        consumer.assign(&partitions).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        let outcome = loop {
            if fold.next() > offset {
                break Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(format!("offset {offset} of {} not read back", self.topic));
            }
            match consumer.poll(left.min(Duration::from_millis(100))) {
                None => {}
                Some(Ok(message)) => fold.apply_message(&message),
                Some(Err(error)) => tracing::warn!("catalog: catching up on the topic: {error}"),
            }
        };
        if let Err(error) = consumer.unassign() {
            tracing::warn!("catalog: cannot unassign the catch-up consumer: {error}");
        }
        outcome
    }
}

impl CatalogStore {
    /// Open the catalog in `topic` (created, compacted, if missing) and read it to its end.
    pub fn open(bootstrap_servers: &str, topic: &str) -> Result<CatalogStore, StoreError> {
        ensure_topic(bootstrap_servers, topic, 1, &[("cleanup.policy", "compact")])?;
        let kafka = |source| StoreError::Kafka { topic: topic.to_string(), source };
        let consumer = |fetch_wait_ms: &str| -> Result<BaseConsumer, StoreError> {
            client_config(bootstrap_servers, &[])
                .set("group.id", "meshhost-catalog")
                .set("enable.auto.commit", "false")
                .set("enable.partition.eof", "false")
                .set("fetch.wait.max.ms", fetch_wait_ms)
                // Never skip ahead: an offset out of range reads from the start again.
                .set("auto.offset.reset", "earliest")
                .create()
                .map_err(kafka)
        };
        // The reader waits long on an idle topic: the librdkafka default.
        let reader = consumer("500")?;
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition_offset(topic, 0, Offset::Beginning).map_err(kafka)?;
        reader.assign(&partitions).map_err(kafka)?;
        let chaser = Chaser { topic: topic.to_string(), consumer: Mutex::new(consumer(CHASE_FETCH_WAIT_MS)?) };
        let watermarks: Arc<BaseConsumer> = Arc::new(
            client_config(bootstrap_servers, &[]).set("group.id", "meshhost-catalog").create().map_err(kafka)?,
        );
        let producer: FutureProducer = client_config(bootstrap_servers, &[])
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create()
            .map_err(kafka)?;

        let fold = Arc::new(Fold { state: RwLock::new(CatalogState::default()), next: AtomicI64::new(0) });
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_fold, thread_stop) = (fold.clone(), stop.clone());
        std::thread::Builder::new()
            .name("catalog-reader".into())
            .spawn(move || read_log(reader, thread_fold, thread_stop))
            .expect("cannot start the catalog reader thread");

        let end = end_offset(&watermarks, topic).map_err(kafka)?;
        chaser
            .chase(&fold, end - 1, OPEN_TIMEOUT)
            .map_err(|reason| StoreError::CatchUp { topic: topic.to_string(), reason })?;
        Ok(CatalogStore {
            topic: topic.to_string(),
            fold,
            chaser: Arc::new(chaser),
            producer,
            watermarks,
            write_lock: tokio::sync::Mutex::new(()),
            stop,
        })
    }

    /// The state as of the last record read.
    pub fn read(&self) -> RwLockReadGuard<'_, CatalogState> {
        self.fold.state.read().expect("the catalog reader never panics holding the lock")
    }

    /// `answer` from the state; when it finds nothing, again after catching up with the topic,
    /// so that what another server has just written is found here too (a deserializer looking up
    /// an id a producer registered elsewhere).
    pub async fn read_fresh<T>(
        &self,
        answer: impl Fn(&CatalogState) -> Result<T, CatalogError>,
    ) -> Result<T, CatalogError> {
        let first = answer(&self.read());
        match first {
            Err(error) if error.status() == 404 => {
                self.catch_up().await?;
                answer(&self.read())
            }
            answer => answer,
        }
    }

    /// Register `text` (parsed: `schema`) under `subject`; its id. Refused when it would break a
    /// pipeline that reads a source on that subject, unless `force`.
    pub async fn register(&self, subject: &str, text: &str, schema: &Schema, force: bool) -> Result<u32, CatalogError> {
        let _write = self.write_lock.lock().await;
        let deadline = Instant::now() + WRITE_TIMEOUT;
        for lost in 0.. {
            self.catch_up().await?;
            let plan = self.read().schemas.plan_registration(subject, text, schema)?;
            let (key, value) = match plan {
                Registration::Existing { id, .. } => return Ok(id),
                Registration::New { key, value } => (key, value),
            };
            let broken = if force { Vec::new() } else { self.read().broken_consumers(subject, schema) };
            if !broken.is_empty() {
                return Err(CatalogError::BreaksConsumers { subject: subject.to_string(), reasons: broken });
            }
            self.append(CatalogRecord::Schema { key: key.clone(), value: Some(value) }).await?;
            // Registered when the subject now has this schema: the same version and id can
            // have gone to another server's schema first (both planned from the same state).
            let now = self.read().schemas.plan_registration(subject, text, schema);
            if now == Ok(Registration::Existing { id: key.id, version: key.version }) {
                return Ok(key.id);
            }
            // Another server's record came first: take ours back out of the log and try again.
            // Two servers that keep writing would keep colliding in step; a random pause that
            // grows with each loss breaks the step.
            tracing::info!("catalog: registration under {subject:?} lost a race with another server; retrying");
            self.append(CatalogRecord::Schema { key, value: None }).await?;
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(race_pause(lost)).await;
        }
        Err(CatalogError::Store(format!("could not register under {subject:?}: other servers kept writing")))
    }

    /// Set (or with `None` remove) the compatibility level of `subject`, or the global one.
    pub async fn set_level(&self, subject: Option<&str>, level: Option<Compatibility>) -> Result<(), CatalogError> {
        let _write = self.write_lock.lock().await;
        let value = level.map(|compatibility| ConfigValue { compatibility });
        self.append(CatalogRecord::Config { subject: subject.map(str::to_string), value }).await
    }

    /// Delete the versions of `subject` (all, or `version`): soft, or permanently (which
    /// needs them soft-deleted first). The versions deleted.
    pub async fn delete(
        &self,
        subject: &str,
        version: Option<VersionSpec>,
        permanent: bool,
    ) -> Result<Vec<u32>, CatalogError> {
        let _write = self.write_lock.lock().await;
        self.catch_up().await?;
        let records: Vec<(u32, CatalogRecord)> = {
            let state = &self.read().schemas;
            let only = match version {
                None => {
                    state.versions(subject, true)?;
                    None
                }
                Some(spec) => Some(state.version(subject, spec, permanent)?.0),
            };
            let keys = state.keys(subject, only);
            if permanent {
                if let Some((key, _, _)) = keys.iter().find(|(_, deleted, _)| !deleted) {
                    return Err(match only {
                        None => CatalogError::SubjectNotSoftDeleted(subject.to_string()),
                        Some(_) => CatalogError::VersionNotSoftDeleted(subject.to_string(), key.version),
                    });
                }
                keys.into_iter().map(|(key, _, _)| (key.version, CatalogRecord::Schema { key, value: None })).collect()
            } else {
                let live: Vec<_> = keys.into_iter().filter(|(_, deleted, _)| !deleted).collect();
                if live.is_empty() {
                    return Err(match only {
                        None => CatalogError::SubjectSoftDeleted(subject.to_string()),
                        Some(n) => CatalogError::VersionSoftDeleted(subject.to_string(), n),
                    });
                }
                live.into_iter()
                    .map(|(key, _, schema)| {
                        (key.version, CatalogRecord::Schema { key, value: Some(SchemaValue { schema, deleted: true }) })
                    })
                    .collect()
            }
        };
        let mut deleted = Vec::new();
        for (version, record) in records {
            self.append(record).await?;
            deleted.push(version);
        }
        Ok(deleted)
    }

    /// Publish (or replace) a source. Its schema subject must have a version.
    pub async fn put_source(&self, entry: SourceEntry) -> Result<(), CatalogError> {
        if !crate::config::valid_id(&entry.name) {
            return Err(CatalogError::InvalidSource(format!(
                "bad name {:?}: use letters, digits, '-' and '_'",
                entry.name
            )));
        }
        if entry.topic.is_empty() {
            return Err(CatalogError::InvalidSource("no topic".to_string()));
        }
        let _write = self.write_lock.lock().await;
        self.catch_up().await?;
        self.read().schemas.version(&entry.subject, VersionSpec::Latest, false)?;
        self.append(CatalogRecord::Source { name: entry.name.clone(), value: Some(entry) }).await
    }

    /// Remove a source (its consumers' records stay, for the record).
    pub async fn delete_source(&self, name: &str) -> Result<(), CatalogError> {
        let _write = self.write_lock.lock().await;
        self.catch_up().await?;
        self.read().sources.get(name).ok_or_else(|| CatalogError::SourceNotFound(name.to_string()))?;
        self.append(CatalogRecord::Source { name: name.to_string(), value: None }).await
    }

    /// Mark a source deprecated, with why.
    pub async fn deprecate_source(&self, name: &str, reason: String) -> Result<SourceEntry, CatalogError> {
        let _write = self.write_lock.lock().await;
        self.catch_up().await?;
        let mut entry =
            self.read().sources.get(name).ok_or_else(|| CatalogError::SourceNotFound(name.to_string()))?.entry;
        entry.deprecated = Some(reason);
        self.append(CatalogRecord::Source { name: name.to_string(), value: Some(entry.clone()) }).await?;
        Ok(entry)
    }

    /// Record that `pipeline` reads source `source` with version `version` of its subject.
    pub async fn put_consumer(&self, source: &str, pipeline: &str, version: u32) -> Result<(), CatalogError> {
        let _write = self.write_lock.lock().await;
        self.catch_up().await?;
        self.read().sources.get(source).ok_or_else(|| CatalogError::SourceNotFound(source.to_string()))?;
        let value = ConsumerEntry { pipeline: pipeline.to_string(), version };
        self.append(CatalogRecord::Consumer {
            source: source.to_string(),
            pipeline: pipeline.to_string(),
            value: Some(value),
        })
        .await
    }

    /// Wait until every record written before now has been applied.
    async fn catch_up(&self) -> Result<(), CatalogError> {
        let (watermarks, topic) = (self.watermarks.clone(), self.topic.clone());
        let end = tokio::task::spawn_blocking(move || end_offset(&watermarks, &topic))
            .await
            .map_err(|e| CatalogError::Store(e.to_string()))?
            .map_err(|e| CatalogError::Store(format!("cannot read the end of {}: {e}", self.topic)))?;
        self.applied_past(end - 1).await
    }

    /// Write one record and answer once it is applied.
    async fn append(&self, record: CatalogRecord) -> Result<(), CatalogError> {
        let (key, value) = record.encode();
        let mut message = FutureRecord::<Vec<u8>, Vec<u8>>::to(&self.topic).key(&key).partition(0);
        if let Some(value) = &value {
            message = message.payload(value);
        }
        let delivery = self
            .producer
            .send(message, WRITE_TIMEOUT)
            .await
            .map_err(|(e, _)| CatalogError::Store(format!("cannot write to {}: {e}", self.topic)))?;
        if self.fold.apply(delivery.offset, Ok(record), Arrival::Own) {
            return Ok(());
        }
        self.applied_past(delivery.offset).await
    }

    /// Wait until the record at `offset` has been applied, reading it if the reader has not.
    async fn applied_past(&self, offset: i64) -> Result<(), CatalogError> {
        if self.fold.next() > offset {
            return Ok(());
        }
        let (fold, chaser) = (self.fold.clone(), self.chaser.clone());
        tokio::task::spawn_blocking(move || chaser.chase(&fold, offset, WRITE_TIMEOUT))
            .await
            .map_err(|e| CatalogError::Store(e.to_string()))?
            .map_err(CatalogError::Timeout)
    }
}

impl Drop for CatalogStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A random pause of up to 2^`lost` ms (at most 64 ms) after a registration lost its `lost`-th race.
fn race_pause(lost: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let bound_us = 1000u64 << lost.min(6);
    Duration::from_micros(random % bound_us)
}

/// The offset after the catalog topic's last record.
fn end_offset(consumer: &BaseConsumer, topic: &str) -> Result<i64, rdkafka::error::KafkaError> {
    consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).map(|(_, high)| high)
}

/// The reader thread: follow the topic, applying every record the writers have not.
fn read_log(reader: BaseConsumer, fold: Arc<Fold>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(error)) => tracing::warn!("catalog: reading the topic: {error}"),
            Some(Ok(message)) => fold.apply_message(&message),
        }
    }
}
