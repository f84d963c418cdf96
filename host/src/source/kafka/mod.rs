//! The Kafka source: one consumer in the pipeline's consumer group, subscribed to every source
//! topic, with manual commits of delivered offsets only, of partitions it owns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use meshhost_sdk::Header;

mod rebalance;

pub use rebalance::{RebalanceHandler, SourceContext, TopicPartition};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, OwnedMessage};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::source::{InputRecord, Source, SourceError, SourcePartition};

/// The pipeline's Kafka sources, read through one consumer.
pub struct KafkaSource {
    consumer: BaseConsumer<SourceContext>,
    /// Topic of each pipeline source, by source index.
    topics: Vec<String>,
    bootstrap_servers: String,
    /// The offsets last committed per (topic key, partition) (see [`next_offsets`]), so an unchanged partition is not
    /// committed again. Behind a lock because acknowledging takes `&self`: polled records
    /// borrow the consumer meanwhile.
    committed: Mutex<HashMap<SourcePartition, i64>>,
}

/// A consumed record, as librdkafka holds it (not copied: dead letters send these bytes).
pub struct KafkaRecord<'c> {
    source: usize,
    message: Held<'c>,
}

/// A message as polled, or a copy of it for a second pipeline source on the same topic (a
/// self-join reads one topic as two sources).
enum Held<'c> {
    Borrowed(BorrowedMessage<'c>),
    Copied(OwnedMessage),
}

/// Evaluate `$body` with `$m` bound to the held message, whichever kind it is.
macro_rules! with_message {
    ($held:expr, $m:ident => $body:expr) => {
        match $held {
            Held::Borrowed($m) => $body,
            Held::Copied($m) => $body,
        }
    };
}

impl InputRecord for KafkaRecord<'_> {
    fn source(&self) -> usize {
        self.source
    }

    fn partition(&self) -> i32 {
        with_message!(&self.message, m => m.partition())
    }

    fn position(&self) -> i64 {
        with_message!(&self.message, m => m.offset())
    }

    fn key(&self) -> Option<&[u8]> {
        with_message!(&self.message, m => m.key())
    }

    fn value(&self) -> Option<&[u8]> {
        with_message!(&self.message, m => m.payload())
    }

    fn headers(&self) -> Vec<Header> {
        with_message!(&self.message, m => m
            .headers()
            .map(|headers| {
                headers.iter().map(|h| Header { key: h.key.to_string(), value: h.value.map(<[u8]>::to_vec) }).collect()
            })
            .unwrap_or_default())
    }

    fn timestamp(&self) -> Option<i64> {
        with_message!(&self.message, m => m.timestamp().to_millis())
    }
}

impl KafkaSource {
    /// A consumer in `group_id` for the source topics `topics` (by source index; an empty name
    /// for a source that is not a topic); `client` holds the bootstrap servers and the user's
    /// properties. Call [`subscribe`](Self::subscribe) to
    /// start reading.
    pub fn new(client: &ClientConfig, group_id: &str, topics: Vec<String>) -> Result<KafkaSource, SourceError> {
        let mut config = client.clone();
        if client.get("fetch.queue.backoff.ms").is_none() {
            // librdkafka 2.x pauses a partition's fetching for this long whenever its prefetch
            // queue is full (default 1000 ms): the pipeline then idles in 1 s steps. Measured:
            // 2.4-2.9x throughput at 10 ms (scripts/bench.sh).
            config.set("fetch.queue.backoff.ms", "10");
        }
        let consumer: BaseConsumer<SourceContext> = config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create_with_context(SourceContext::default())
            .map_err(|e| client_error("cannot create the Kafka consumer", e))?;
        let bootstrap_servers = client.get("bootstrap.servers").unwrap_or_default().to_string();
        Ok(KafkaSource { consumer, topics, bootstrap_servers, committed: Mutex::default() })
    }

    /// The partition count of every topic on the cluster.
    pub fn partition_counts(&self) -> Result<HashMap<String, usize>, SourceError> {
        let metadata = self.consumer.fetch_metadata(None, Duration::from_secs(10)).map_err(|e| {
            SourceError::Unreachable { what: format!("Kafka at {}", self.bootstrap_servers), source: Box::new(e) }
        })?;
        Ok(crate::kafka::topic_partitions(&metadata))
    }

    /// The changelog end offsets and such are read through this consumer's connection.
    /// Per assigned partition: how many records lie between the group's position and its end.
    /// Asks the broker (cached watermarks would go stale), so call it now and then.
    pub fn lag(&self) -> Vec<(String, i32, i64)> {
        let Ok(positions) = self.consumer.position() else { return Vec::new() };
        positions
            .elements()
            .iter()
            .filter_map(|element| {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(element.topic(), element.partition(), std::time::Duration::from_secs(1))
                    .ok()?;
                let position = match element.offset() {
                    rdkafka::Offset::Offset(offset) => offset,
                    _ => return Some((element.topic().to_string(), element.partition(), high.max(0))),
                };
                Some((element.topic().to_string(), element.partition(), (high - position).max(0)))
            })
            .collect()
    }

    /// Partition assignments and revocations so far.
    pub fn rebalances(&self) -> u64 {
        self.consumer.context().rebalances()
    }

    /// Whether the group has given this instance partitions.
    pub fn is_assigned(&self) -> bool {
        self.consumer.assignment().is_ok_and(|assignment| assignment.count() > 0)
    }

    /// The partitions owned and held, and the rebalance handler.
    pub fn context(&self) -> &SourceContext {
        self.consumer.context()
    }

    pub fn consumer(&self) -> &BaseConsumer<SourceContext> {
        &self.consumer
    }

    /// Resume held partitions (their state is restored): read on from where they were paused,
    /// or from the first record dropped while they were held.
    pub fn resume(&self, partitions: &[TopicPartition]) -> Result<(), SourceError> {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(topic, *partition);
        }
        self.consumer.resume(&list).map_err(|e| client_error("cannot resume partitions", e))?;
        for ((topic, partition), offset) in self.consumer.context().release(partitions) {
            self.consumer
                .seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(10))
                .map_err(|e| client_error("cannot seek a resumed partition", e))?;
        }
        Ok(())
    }

    /// The topic of each source, by source index (empty for a source that is not a topic).
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Join the consumer group on the source topics.
    pub fn subscribe(&self) -> Result<(), SourceError> {
        // Two sources may read one topic (a self-join): subscribe to it once.
        let mut topics: Vec<&str> = self.topics.iter().map(String::as_str).filter(|t| !t.is_empty()).collect();
        topics.sort();
        topics.dedup();
        self.consumer.subscribe(&topics).map_err(|e| client_error("cannot subscribe to the source topics", e))
    }
}

impl KafkaSource {
    /// Append up to `max` records to `batch`, each wrapped by `wrap`: those ready now, after
    /// waiting up to `first_wait` for the first. A rebalance inside the poll drops the records
    /// this call appended (they belong to partitions handed over, or to be read again from the
    /// commit); what `batch` held before is kept.
    pub fn poll_into<'a, T>(
        &'a self,
        max: usize,
        stop: &AtomicBool,
        first_wait: Duration,
        batch: &mut Vec<T>,
        wrap: impl Fn(KafkaRecord<'a>) -> T,
    ) {
        let start = batch.len();
        let mut timeout = first_wait;
        let context = self.consumer.context();
        let epoch = context.epoch();
        while batch.len() < max && !stop.load(Ordering::Relaxed) {
            let polled = self.consumer.poll(timeout);
            if context.epoch() != epoch {
                batch.truncate(start);
                break;
            }
            match polled {
                None => break,
                Some(Ok(message)) if context.is_held(message.topic(), message.partition(), message.offset()) => {}
                Some(Ok(message)) => {
                    let mut sources =
                        self.topics.iter().enumerate().filter(|(_, topic)| *topic == message.topic()).map(|(i, _)| i);
                    if let Some(first) = sources.next() {
                        let copies: Vec<KafkaRecord<'a>> = sources
                            .map(|source| KafkaRecord { source, message: Held::Copied(message.detach()) })
                            .collect();
                        batch.push(wrap(KafkaRecord { source: first, message: Held::Borrowed(message) }));
                        batch.extend(copies.into_iter().map(&wrap));
                    }
                    // Take what is already fetched without waiting again.
                    timeout = Duration::ZERO;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error");
                    break;
                }
            }
        }
    }
}

impl Source for KafkaSource {
    type Record<'a> = KafkaRecord<'a>;

    fn poll<'a>(&'a self, max: usize, stop: &AtomicBool, batch: &mut Vec<KafkaRecord<'a>>) -> Result<(), SourceError> {
        self.poll_into(max, stop, Duration::from_millis(100), batch, |record| record);
        Ok(())
    }

    /// Commits the offset after each position (Kafka's committed offset is the next to read).
    fn acknowledge(&self, positions: &HashMap<SourcePartition, i64>, wait: bool) -> Result<(), SourceError> {
        let context = self.consumer.context();
        // Another member's partition: committing would move its offset.
        let mut next = next_offsets(&self.topics, positions, |topic, partition| context.owns(topic, partition));
        let mut committed = self.committed.lock().unwrap();
        // An asynchronous commit may have failed after it was counted here: the waiting one (at
        // shutdown) commits every partition again.
        if !wait {
            next.retain(|partition, offset| committed.get(partition) != Some(offset));
        }
        if next.is_empty() {
            return Ok(());
        }
        let list = offset_list(&self.topics, &next).map_err(|e| client_error("cannot list offsets to commit", e))?;
        let mode = if wait { CommitMode::Sync } else { CommitMode::Async };
        match self.consumer.commit(&list, mode) {
            Ok(()) => committed.extend(next),
            // After a rebalance a partition may belong to another member: it re-reads from the
            // last commit (at-least-once), so a failed commit loses nothing.
            Err(error) => tracing::warn!(%error, "offset commit failed"),
        }
        Ok(())
    }
}

/// The offsets to commit for `positions` (the last delivered position per source partition), of
/// the partitions `keep` accepts: the offset after each position (Kafka's committed offset is the
/// next to read), keyed by (topic key, partition) — the topic key being the first source index
/// reading that topic. Two sources may read one topic (a self-join): its offset is the lower of
/// theirs, safe for both.
pub fn next_offsets(
    topics: &[String],
    positions: &HashMap<SourcePartition, i64>,
    keep: impl Fn(&str, i32) -> bool,
) -> HashMap<SourcePartition, i64> {
    let mut next: HashMap<SourcePartition, i64> = HashMap::new();
    for (&(source, partition), &position) in positions {
        let topic = &topics[source];
        if !keep(topic, partition) {
            continue;
        }
        let topic_key = topics.iter().position(|t| t == topic).expect("a source's own topic");
        let offset = next.entry((topic_key, partition)).or_insert(position + 1);
        *offset = (*offset).min(position + 1);
    }
    next
}

/// [`next_offsets`] as the list a commit takes.
pub fn offset_list(
    topics: &[String],
    offsets: &HashMap<SourcePartition, i64>,
) -> Result<TopicPartitionList, KafkaError> {
    let mut list = TopicPartitionList::new();
    for (&(topic_key, partition), &offset) in offsets {
        list.add_partition_offset(&topics[topic_key], partition, Offset::Offset(offset))?;
    }
    Ok(list)
}

fn client_error(what: &str, error: KafkaError) -> SourceError {
    SourceError::Client { what: what.to_string(), source: Box::new(error) }
}

/// An owned copy of a consumed message, as the input record of source `source`.
pub fn owned_record(source: usize, message: &BorrowedMessage<'_>) -> crate::source::SourceRecord {
    let headers = message
        .headers()
        .map(|headers| {
            headers.iter().map(|h| Header { key: h.key.to_string(), value: h.value.map(<[u8]>::to_vec) }).collect()
        })
        .unwrap_or_default();
    crate::source::SourceRecord {
        source,
        partition: message.partition(),
        position: message.offset(),
        record: crate::plugin::batch::Record {
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp: message.timestamp().to_millis(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sources_on_one_topic_commit_the_lower_offset_and_unkept_partitions_nothing() {
        let topics = vec!["movies".to_string(), "talents".to_string(), "movies".to_string()];
        let positions = HashMap::from([((0, 0), 9), ((2, 0), 4), ((1, 0), 7), ((1, 1), 3)]);
        let next = next_offsets(&topics, &positions, |topic, partition| !(topic == "talents" && partition == 1));
        assert_eq!(next, HashMap::from([((0, 0), 5), ((1, 0), 8)]));
        let list = offset_list(&topics, &next).unwrap();
        assert_eq!(list.find_partition("movies", 0).unwrap().offset(), Offset::Offset(5));
        assert_eq!(list.count(), 2);
    }
}
