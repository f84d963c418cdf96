//! The Kafka sink: one idempotent producer for sink topics, dead letters and state changelogs,
//! reporting every delivery to the run's [`DeliveryTracker`].

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::sink::{Destination, OutgoingRecord, Sink, SinkError};
use crate::topology::delivery::{BatchId, DeliveryTracker};

/// The pipeline's Kafka producer.
pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryReports>,
}

/// Producer context that reports each delivery to the tracker.
struct DeliveryReports {
    tracker: Arc<DeliveryTracker>,
}

impl ClientContext for DeliveryReports {}

impl ProducerContext for DeliveryReports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, batch: usize) {
        let error = result.as_ref().err().map(|(error, _)| error.to_string());
        self.tracker.delivered(batch as BatchId, error);
    }
}

impl KafkaSink {
    /// An idempotent producer; `client` holds the bootstrap servers and the user's properties.
    pub fn new(client: &ClientConfig, tracker: Arc<DeliveryTracker>) -> Result<KafkaSink, KafkaError> {
        let producer = client
            .clone()
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random")
            .create_with_context(DeliveryReports { tracker })?;
        Ok(KafkaSink { producer })
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
