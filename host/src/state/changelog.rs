//! The changelog of a processor's state: a compacted Kafka topic, partition = input partition,
//! that every state write is mirrored to. Opening a store brings it up to date from the
//! changelog; a clean shutdown records, per partition, the changelog end the store matches.

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

/// Open the local store at `store_path` and bring it up to date with `changelog` (created if
/// missing): a partition whose store was not left by a clean shutdown at the changelog's current
/// end is rebuilt from the changelog. Until the next clean shutdown the store is marked dirty.
pub fn open_with_changelog(
    bootstrap_servers: &str,
    group_id: &str,
    store_path: &Path,
    processor: &str,
    changelog: &Changelog,
    restored: &dyn Fn(u64),
) -> Result<Arc<StateStore>, ChangelogError> {
    crate::kafka::ensure_topic(
        bootstrap_servers,
        &changelog.topic,
        changelog.partitions,
        &[("cleanup.policy", "compact")],
    )?;
    let store = Arc::new(StateStore::open(store_path)?);
    let kafka = |what: &'static str| {
        let topic = changelog.topic.clone();
        move |source| ChangelogError::Kafka { topic, what, source }
    };
    let reader: BaseConsumer = crate::kafka::client_config(bootstrap_servers, &[])
        .set("group.id", format!("{group_id}-restore"))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka("cannot create a reader"))?;
    let mut restored_before = 0;
    for partition in 0..changelog.partitions {
        let (low, high) = reader
            .fetch_watermarks(&changelog.topic, partition, Duration::from_secs(10))
            .map_err(kafka("cannot read its end offsets"))?;
        if store.clean_end(partition as u32)? == Some(high) {
            tracing::info!(
                processor,
                partition,
                keys = store.len(partition as u32)?,
                "local state is up to date with the changelog"
            );
            continue;
        }
        let started = Instant::now();
        store.clear(partition as u32)?;
        let records = restore_partition(&reader, &store, &changelog.topic, partition, low, high, &|n| {
            restored(restored_before + n)
        })?;
        restored_before += records;
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
    let dirty: Vec<(u32, Option<i64>)> = (0..changelog.partitions as u32).map(|p| (p, None)).collect();
    store.set_clean_ends(&dirty)?;
    Ok(store)
}

/// Replay changelog partition `partition` (offsets `low..high`) into the store.
fn restore_partition(
    reader: &BaseConsumer,
    store: &StateStore,
    topic: &str,
    partition: i32,
    low: i64,
    high: i64,
    restored: &dyn Fn(u64),
) -> Result<u64, ChangelogError> {
    if high <= low {
        return Ok(0);
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
                }
                if message.offset() >= high - 1 {
                    break;
                }
            }
            Some(Err(error)) => return Err(kafka("cannot read it")(error)),
            None if last_progress.elapsed() > Duration::from_secs(30) => {
                return Err(ChangelogError::Stalled { topic: topic.to_string(), partition, end: high })
            }
            None => {}
        }
    }
    store.apply(partition as u32, &writes)?;
    restored(records);
    reader.unassign().map_err(kafka("cannot unassign"))?;
    Ok(records)
}

/// After a clean shutdown: record that the local store matches the changelog's end. `consumer`
/// is any connected consumer (for the end offsets).
pub fn mark_clean<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    store: &StateStore,
    changelog: &Changelog,
) -> Result<(), ChangelogError> {
    let mut ends = Vec::new();
    for partition in 0..changelog.partitions {
        let (_, high) =
            consumer.fetch_watermarks(&changelog.topic, partition, Duration::from_secs(10)).map_err(|source| {
                ChangelogError::Kafka { topic: changelog.topic.clone(), what: "cannot read its end offsets", source }
            })?;
        ends.push((partition as u32, Some(high)));
    }
    store.set_clean_ends(&ends)?;
    Ok(())
}
