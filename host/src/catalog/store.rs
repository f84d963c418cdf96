//! The catalog's state kept durable in its Kafka topic: one reader thread folds the topic into
//! [`Schemas`]; writes produce a record and wait until the reader has applied it.
//!
//! Ids are assigned from the state a writer has caught up with, and the record carries them,
//! so they agree on every server. Two servers that write at once may pick the same version or
//! id; the log's order decides (see [`super::schemas`]) and the loser tombstones its record and
//! tries again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use meshhost_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::compatibility::Compatibility;
use super::log::{CatalogRecord, ConfigValue, SchemaValue};
use super::schemas::{Applied, Registration, VersionSpec};
use super::sources::{ConsumerEntry, SourceEntry};
use super::{CatalogError, CatalogState};
use crate::kafka::{client_config, ensure_topic, CreateTopicError};

/// How long a write waits to read its own record back.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts at a registration that keeps losing races to other servers.
const REGISTER_ATTEMPTS: usize = 5;

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
}

pub struct CatalogStore {
    topic: String,
    state: Arc<RwLock<CatalogState>>,
    /// The next offset the reader will apply.
    applied: watch::Receiver<i64>,
    producer: FutureProducer,
    /// For the topic's end offset, when a writer catches up.
    watermarks: Arc<BaseConsumer>,
    /// One write at a time from this server.
    write_lock: tokio::sync::Mutex<()>,
    stop: Arc<AtomicBool>,
}

impl CatalogStore {
    /// Open the catalog in `topic` (created, compacted, if missing) and read it to its end.
    pub fn open(bootstrap_servers: &str, topic: &str) -> Result<CatalogStore, StoreError> {
        ensure_topic(bootstrap_servers, topic, 1, &[("cleanup.policy", "compact")])?;
        let kafka = |source| StoreError::Kafka { topic: topic.to_string(), source };
        let reader: BaseConsumer = client_config(bootstrap_servers, &[])
            .set("group.id", "meshhost-catalog")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(kafka)?;
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition_offset(topic, 0, Offset::Beginning).map_err(kafka)?;
        reader.assign(&partitions).map_err(kafka)?;
        let watermarks: Arc<BaseConsumer> = Arc::new(
            client_config(bootstrap_servers, &[]).set("group.id", "meshhost-catalog").create().map_err(kafka)?,
        );
        let producer: FutureProducer = client_config(bootstrap_servers, &[])
            .set("enable.idempotence", "true")
            .set("linger.ms", "0")
            .create()
            .map_err(kafka)?;

        let state = Arc::new(RwLock::new(CatalogState::default()));
        let (applied_tx, applied) = watch::channel(0i64);
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        std::thread::Builder::new()
            .name("catalog-reader".into())
            .spawn(move || read_log(reader, thread_state, applied_tx, thread_stop))
            .expect("cannot start the catalog reader thread");

        let store = CatalogStore {
            topic: topic.to_string(),
            state,
            applied,
            producer,
            watermarks,
            write_lock: tokio::sync::Mutex::new(()),
            stop,
        };
        let end = end_offset(&store.watermarks, topic).map_err(kafka)?;
        let mut applied = store.applied.clone();
        while *applied.borrow_and_update() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(store)
    }

    /// The state as of the last record read.
    pub fn read(&self) -> RwLockReadGuard<'_, CatalogState> {
        self.state.read().expect("the catalog reader never panics holding the lock")
    }

    /// Register `text` (parsed: `schema`) under `subject`; its id. Refused when it would break a
    /// pipeline that reads a source on that subject, unless `force`.
    pub async fn register(&self, subject: &str, text: &str, schema: &Schema, force: bool) -> Result<u32, CatalogError> {
        let _write = self.write_lock.lock().await;
        for _ in 0..REGISTER_ATTEMPTS {
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
            let written =
                self.read().schemas.version(subject, VersionSpec::Number(key.version), true).map(|(_, e)| e.id);
            if written == Ok(key.id) {
                return Ok(key.id);
            }
            // Another server's record came first: take ours back out of the log and retry.
            tracing::info!("catalog: registration under {subject:?} lost a race with another server; retrying");
            self.append(CatalogRecord::Schema { key, value: None }).await?;
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

    /// Write one record and wait until the reader has applied it.
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
        self.applied_past(delivery.offset).await
    }

    /// Wait until the record at `offset` has been applied.
    async fn applied_past(&self, offset: i64) -> Result<(), CatalogError> {
        let mut applied = self.applied.clone();
        let outcome = tokio::time::timeout(WRITE_TIMEOUT, applied.wait_for(|next| *next > offset)).await;
        match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(CatalogError::Store("the catalog reader stopped".to_string())),
            Err(_) => Err(CatalogError::Timeout(format!("offset {offset} of {} not read back", self.topic))),
        }
    }
}

impl Drop for CatalogStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The offset after the catalog topic's last record.
fn end_offset(consumer: &BaseConsumer, topic: &str) -> Result<i64, rdkafka::error::KafkaError> {
    consumer.fetch_watermarks(topic, 0, Duration::from_secs(10)).map(|(_, high)| high)
}

/// The reader thread: apply every record in log order, publishing the next offset.
fn read_log(
    reader: BaseConsumer,
    state: Arc<RwLock<CatalogState>>,
    applied: watch::Sender<i64>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(error)) => tracing::warn!("catalog: reading the topic: {error}"),
            Some(Ok(message)) => {
                match CatalogRecord::decode(message.key(), message.payload()) {
                    Ok(record) => {
                        let outcome = state.write().expect("never poisoned").apply(record);
                        if outcome == Applied::Conflict {
                            tracing::debug!("catalog: record at offset {} lost a race; ignored", message.offset());
                        }
                    }
                    Err(reason) => tracing::warn!("catalog: record at offset {} skipped: {reason}", message.offset()),
                }
                applied.send_replace(message.offset() + 1);
            }
        }
    }
}
