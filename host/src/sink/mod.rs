//! Where records go: the [`Sink`] trait, and the sink kinds, a file or folder each: Kafka
//! ([`kafka::KafkaSink`]: sink topics, dead letters and state changelogs) and Postgres tables
//! ([`postgres::PostgresSink`]); [`pipeline::PipelineSink`] routes a run's records to them.

pub mod delivery;
pub mod kafka;
pub mod pipeline;
pub mod postgres;

use std::time::Duration;

use meshhost_sdk::Header;

use crate::sink::delivery::BatchId;

/// A destination for records that reports each delivery, asynchronously, to the
/// [`DeliveryTracker`](crate::sink::delivery::DeliveryTracker) it was built with.
pub trait Sink {
    /// Hand `record` over for `destination`; its delivery (or failure) is reported under `batch`.
    /// Blocks while the sink's queue is full.
    fn send(&self, destination: Destination<'_>, record: OutgoingRecord<'_>, batch: BatchId) -> Result<(), SinkError>;

    /// Every record of batch `batch` has been handed over (a sink that writes whole batches
    /// at a time may now write it).
    fn sealed(&self, _batch: BatchId) {}

    /// Wait until everything handed over has been delivered or has failed.
    fn flush(&self, timeout: Duration) -> Result<(), SinkError>;
}

/// Where one record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination<'a> {
    /// The topic (or stream) name.
    pub topic: &'a str,
    /// A fixed partition; `None` lets the sink choose (by key).
    pub partition: Option<i32>,
}

/// A record to write, borrowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutgoingRecord<'a> {
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// The source record it came from, for a sink that dead-letters records itself (Postgres).
    pub origin: Option<Origin<'a>>,
}

/// Where a sink record came from: the source record it derives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The source's id in the pipeline.
    pub source: &'a str,
    /// Its topic (or captured table).
    pub topic: &'a str,
    pub partition: i32,
    pub position: i64,
    /// Whether the position is durable (a Kafka offset) rather than a capture's per-run
    /// sequence: only a durable position can say, after a restart, what was written.
    pub durable: bool,
}

/// A record the sink could not take, or a flush that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The record is larger than the sink takes: a fault of the record, not of the sink.
    #[error("a record of {bytes} bytes is larger than {topic} takes ({limit})")]
    TooLarge { topic: String, bytes: usize, limit: String },
    #[error("cannot write to {topic}")]
    Send {
        topic: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("could not flush the sink")]
    Flush(#[source] Box<dyn std::error::Error + Send + Sync>),
}
