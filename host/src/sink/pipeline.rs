//! A run's sinks behind one [`Sink`]: records for a table go to its [`PostgresSink`], the rest
//! (sink topics, dead letters, changelogs) to the Kafka producer.

use std::sync::Arc;
use std::time::Duration;

use super::delivery::BatchId;
use super::kafka::KafkaSink;
use super::postgres::PostgresSink;
use super::{Destination, OutgoingRecord, Sink, SinkError};

pub struct PipelineSink {
    kafka: Arc<KafkaSink>,
    tables: Vec<PostgresSink>,
}

impl PipelineSink {
    pub fn new(kafka: Arc<KafkaSink>, tables: Vec<PostgresSink>) -> PipelineSink {
        PipelineSink { kafka, tables }
    }

    pub fn kafka(&self) -> &KafkaSink {
        &self.kafka
    }
}

impl Sink for PipelineSink {
    fn send(&self, destination: Destination<'_>, record: OutgoingRecord<'_>, batch: BatchId) -> Result<(), SinkError> {
        // A table's destination is `postgres:...`, never a topic name; most runs have no table.
        if !self.tables.is_empty() && destination.topic.starts_with("postgres:") {
            if let Some(table) = self.tables.iter().find(|t| t.destination() == destination.topic) {
                return table.send(destination, record, batch);
            }
        }
        self.kafka.send(destination, record, batch)
    }

    fn sealed(&self, batch: BatchId) {
        for table in &self.tables {
            table.sealed(batch);
        }
    }

    /// Tables first: the rows they refuse become dead letters in the Kafka producer.
    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        for table in &self.tables {
            table.flush(timeout)?;
        }
        self.kafka.flush(timeout)
    }
}
