//! The Kafka sink: one idempotent producer for sink topics, dead letters and state changelogs,
//! reporting every delivery to the run's [`DeliveryTracker`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use crate::sink::delivery::{BatchId, DeliveryTracker};
use crate::sink::{Destination, OutgoingRecord, Sink, SinkError};

/// The pipeline's Kafka producer.
pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryReports>,
    /// The producer's `message.max.bytes` (for the message when a record exceeds it).
    max_message_bytes: String,
}

/// Records the broker acknowledged, per topic of interest (the sinks'), for metrics.
#[derive(Debug, Default)]
pub struct DeliveredCounts {
    topics: Vec<(String, AtomicU64)>,
}

impl DeliveredCounts {
    /// Count the deliveries to these topics (a handful: a linear scan per delivery is cheaper
    /// than hashing the topic name).
    pub fn for_topics(topics: impl IntoIterator<Item = String>) -> DeliveredCounts {
        DeliveredCounts { topics: topics.into_iter().map(|t| (t, AtomicU64::new(0))).collect() }
    }

    fn count(&self, topic: &str) {
        if let Some((_, count)) = self.topics.iter().find(|(t, _)| t == topic) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `n` deliveries to `destination` made elsewhere (a Postgres sink's rows).
    pub fn add(&self, destination: &str, n: u64) {
        if let Some((_, count)) = self.topics.iter().find(|(t, _)| t == destination) {
            count.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Deliveries so far to the `index`th topic.
    pub fn get(&self, index: usize) -> u64 {
        self.topics.get(index).map_or(0, |(_, count)| count.load(Ordering::Relaxed))
    }
}

/// Producer context that reports each delivery to the tracker.
struct DeliveryReports {
    tracker: Arc<DeliveryTracker>,
    delivered: Arc<DeliveredCounts>,
    quiet: crate::kafka::QuietContext,
}

impl ClientContext for DeliveryReports {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.quiet.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.quiet.error(error, reason);
    }
}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let error = match result {
            Ok(message) => {
                self.delivered.count(message.topic());
                None
            }
            Err((error, message)) => Some(format!("to {}: {error}", message.topic())),
        };
        self.tracker.delivered(batch as BatchId, error);
    }
}

impl KafkaSink {
    /// An idempotent producer; `client` holds the bootstrap servers and the user's properties.
    /// Deliveries to the topics of `delivered` are counted there.
    pub fn new(
        client: &ClientConfig,
        tracker: Arc<DeliveryTracker>,
        delivered: Arc<DeliveredCounts>,
    ) -> Result<KafkaSink, KafkaError> {
        let max_message_bytes = client.get("message.max.bytes").unwrap_or("1000000").to_string();
        let producer = client
            .clone()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random")
            .create_with_context(DeliveryReports {
                tracker,
                delivered,
                quiet: crate::kafka::QuietContext::default(),
            })?;
        Ok(KafkaSink { producer, max_message_bytes })
    }

    /// Records handed to the producer and not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Ask for `topic`'s metadata now: this also gets the idempotent producer id, instead of
    /// holding the first records back on a 500 ms timer.
    pub fn warm_up(&self, topic: &str) {
        let _ = self.producer.client().fetch_metadata(Some(topic), Duration::from_secs(5));
    }
}

impl Sink for KafkaSink {
    fn send(&self, destination: Destination<'_>, record: OutgoingRecord<'_>, batch: BatchId) -> Result<(), SinkError> {
        let mut message: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(destination.topic, batch as usize);
        if !record.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for header in record.headers {
                headers = headers.insert(KafkaHeader { key: &header.key, value: header.value.as_deref() });
            }
            message = message.headers(headers);
        }
        if let Some(key) = record.key {
            message = message.key(key);
        }
        if let Some(value) = record.value {
            message = message.payload(value);
        }
        if let Some(timestamp) = record.timestamp {
            message = message.timestamp(timestamp);
        }
        if let Some(partition) = destination.partition {
            message = message.partition(partition);
        }
        loop {
            match self.producer.send(message) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The producer's own thread is delivering; give it a moment.
                    message = returned;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge), _)) => {
                    let bytes = record.key.map_or(0, <[u8]>::len)
                        + record.value.map_or(0, <[u8]>::len)
                        + record
                            .headers
                            .iter()
                            .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                            .sum::<usize>();
                    let limit = format!("the producer's message.max.bytes, {}", self.max_message_bytes);
                    return Err(SinkError::TooLarge { topic: destination.topic.to_string(), bytes, limit });
                }
                Err((error, _)) => {
                    return Err(SinkError::Send { topic: destination.topic.to_string(), source: Box::new(error) })
                }
            }
        }
    }

    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        self.producer.flush(timeout).map_err(|e| SinkError::Flush(Box::new(e)))
    }
}
