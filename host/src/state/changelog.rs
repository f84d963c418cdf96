//! The changelog of a processor's state: a compacted Kafka topic, partition = input partition,
//! that every state write is mirrored to. A partition is brought up to date from the changelog
//! when it is assigned; closing it cleanly (revoke, shutdown) records the changelog end the
//! store matches, so that the next owner on this machine need not replay it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{StateError, StateStore, StateWrites};

/// Where a stateful processor's state writes are mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changelog {
    /// The compacted topic: `<group>-<processor>-changelog`.
    pub topic: String,
    /// Its partition count: that of the processor's inputs.
    pub partitions: i32,
}

impl Changelog {
    /// The changelog of processor `processor` of the pipeline whose consumer group is `group_id`.
    pub fn new(group_id: &str, processor: &str, partitions: i32) -> Changelog {
        Changelog { topic: format!("{group_id}-{processor}-changelog"), partitions }
    }
}

/// Why a processor's state could not be opened, restored or closed.
#[derive(Debug, thiserror::Error)]
pub enum ChangelogError {
    #[error(transparent)]
    Store(#[from] StateError),
    #[error("changelog {topic}: {what}")]
    Kafka {
        topic: String,
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("changelog {topic}/{partition} stopped before its end offset {end}")]
    Stalled { topic: String, partition: i32, end: i64 },
    #[error(transparent)]
    Create(#[from] crate::kafka::CreateTopicError),
}

/// Open the local store at `store_path`, creating the changelog topic if missing. Partitions
/// are brought up to date when they are assigned ([`restore`]).
pub fn open_store(
    bootstrap_servers: &str,
    store_path: &Path,
    changelog: &Changelog,
) -> Result<Arc<StateStore>, ChangelogError> {
    crate::kafka::ensure_topic(
        bootstrap_servers,
        &changelog.topic,
        changelog.partitions,
        &[("cleanup.policy", "compact")],
    )?;
    match StateStore::open(store_path) {
        Ok(store) => Ok(Arc::new(store)),
        // The store is a cache of the changelog: one that cannot be read is rebuilt from it.
        Err(error) if error.unreadable => {
            tracing::warn!(%error, "the local state store is unreadable: removing it, state is rebuilt from the changelog");
            std::fs::remove_file(store_path).map_err(|_| error)?;
            Ok(Arc::new(StateStore::open(store_path)?))
        }
        Err(error) => Err(error.into()),
    }
}

/// A reader of changelogs, for [`restore`].
pub fn reader(bootstrap_servers: &str, group_id: &str) -> Result<BaseConsumer, KafkaError> {
    crate::kafka::client_config(bootstrap_servers, &[])
        .set("group.id", format!("{group_id}-restore"))
        .set("enable.auto.commit", "false")
        .create()
}

/// What became of a partition's restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    /// The store was left clean at the changelog's current end: nothing to replay.
    UpToDate,
    /// Rebuilt from this many changelog records.
    Replayed(u64),
    /// Given up because `cancelled` said so (the partition was revoked meanwhile).
    Cancelled,
}

/// Bring `partition` of the store up to date with the changelog: kept when the store was left
/// clean at the changelog's current end, else cleared and rebuilt from it. Then the partition is
/// marked dirty (not to be trusted on its own) until it is closed cleanly again ([`mark_clean`]).
pub fn restore(
    reader: &BaseConsumer,
    store: &StateStore,
    changelog: &Changelog,
    partition: i32,
    cancelled: &dyn Fn() -> bool,
    restored: &dyn Fn(u64),
) -> Result<Restored, ChangelogError> {
    let kafka = |what: &'static str| {
        let topic = changelog.topic.clone();
        move |source| ChangelogError::Kafka { topic, what, source }
    };
    let (low, high) = reader
        .fetch_watermarks(&changelog.topic, partition, Duration::from_secs(10))
        .map_err(kafka("cannot read its end offsets"))?;
    let outcome = if store.clean_end(partition as u32)? == Some(high) {
        Restored::UpToDate
    } else {
        // Dirty before it is cleared: a restore cut short must not leave an old clean mark.
        store.set_clean_ends(&[(partition as u32, None)])?;
        store.clear(partition as u32)?;
        match restore_partition(reader, store, &changelog.topic, partition, low, high, cancelled, restored)? {
            Some(records) => Restored::Replayed(records),
            None => return Ok(Restored::Cancelled),
        }
    };
    store.set_clean_ends(&[(partition as u32, None)])?;
    Ok(outcome)
}

/// Replay changelog partition `partition` (offsets `low..high`) into the store: the records
/// replayed, or `None` when `cancelled` stopped it.
#[allow(clippy::too_many_arguments)]
fn restore_partition(
    reader: &BaseConsumer,
    store: &StateStore,
    topic: &str,
    partition: i32,
    low: i64,
    high: i64,
    cancelled: &dyn Fn() -> bool,
    restored: &dyn Fn(u64),
) -> Result<Option<u64>, ChangelogError> {
    if high <= low {
        return Ok(Some(0));
    }
    let kafka = |what: &'static str| move |source| ChangelogError::Kafka { topic: topic.to_string(), what, source };
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Beginning).map_err(kafka("cannot assign a partition"))?;
    reader.assign(&assignment).map_err(kafka("cannot assign a partition"))?;
    let mut writes = StateWrites::new();
    let mut records = 0;
    let mut last_progress = Instant::now();
    loop {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                last_progress = Instant::now();
                records += 1;
                if let Some(key) = message.key() {
                    writes.insert(key.to_vec(), message.payload().map(<[u8]>::to_vec));
                }
                if writes.len() >= 10_000 {
                    store.apply(partition as u32, &std::mem::take(&mut writes))?;
                    restored(records);
                    if cancelled() {
                        reader.unassign().map_err(kafka("cannot unassign"))?;
                        return Ok(None);
                    }
                }
                if message.offset() >= high - 1 {
                    break;
                }
            }
            // A broker hiccup is the stall timeout's to judge, not an error at once.
            Some(Err(error)) => tracing::warn!(%topic, partition, %error, "reading the changelog"),
            None if reached(reader, topic, partition, high) => break,
            None if last_progress.elapsed() > Duration::from_secs(30) => {
                return Err(ChangelogError::Stalled { topic: topic.to_string(), partition, end: high })
            }
            None => {}
        }
    }
    store.apply(partition as u32, &writes)?;
    restored(records);
    reader.unassign().map_err(kafka("cannot unassign"))?;
    Ok(Some(records))
}

/// Whether the reader's position in the partition is at or past `high` (the last offsets may be
/// gone, compacted or deleted, so the record at `high - 1` may never come).
fn reached(reader: &BaseConsumer, topic: &str, partition: i32, high: i64) -> bool {
    reader.position().ok().is_some_and(|positions| {
        positions
            .find_partition(topic, partition)
            .is_some_and(|p| matches!(p.offset(), Offset::Offset(at) if at >= high))
    })
}

/// When `partitions` are closed cleanly (revoked, or at shutdown, with every write delivered):
/// record that the local store matches the changelog's end. `consumer` is any connected consumer
/// (for the end offsets).
pub fn mark_clean<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    store: &StateStore,
    changelog: &Changelog,
    partitions: &[i32],
) -> Result<(), ChangelogError> {
    let mut ends = Vec::new();
    for &partition in partitions {
        let (_, high) =
            consumer.fetch_watermarks(&changelog.topic, partition, Duration::from_secs(10)).map_err(|source| {
                ChangelogError::Kafka { topic: changelog.topic.clone(), what: "cannot read its end offsets", source }
            })?;
        ends.push((partition as u32, Some(high)));
    }
    store.set_clean_ends(&ends)?;
    Ok(())
}
