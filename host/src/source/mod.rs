//! Where records come from: the [`Source`] trait, and the source kinds, a folder each: Kafka
//! topics ([`kafka::KafkaSource`]) and captured Postgres tables ([`postgres::PostgresSource`]),
//! whose positions are not Kafka offsets; [`crate::topology::sources::PipelineSource`] reads
//! any mix of them as the one source of a run.

pub mod kafka;
pub mod postgres;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use meshhost_sdk::{Header, Record};

/// A partition of a pipeline source: (index in `Topology::sources`, partition).
pub type SourcePartition = (usize, i32);

/// A record as a source delivers it, read in place (the Kafka source hands over librdkafka's
/// own buffers: nothing is copied until the executor needs it).
pub trait InputRecord {
    /// Index of the pipeline source it comes from, in [`Topology::sources`].
    fn source(&self) -> usize;
    /// Its partition at the source (0 for a source without partitions).
    fn partition(&self) -> i32;
    /// Its position within the partition: a Kafka offset, a database log position.
    fn position(&self) -> i64;
    fn key(&self) -> Option<&[u8]>;
    /// The value as the source encodes it; `None` is a tombstone.
    fn value(&self) -> Option<&[u8]>;
    fn headers(&self) -> Vec<Header>;
    /// Milliseconds since the Unix epoch.
    fn timestamp(&self) -> Option<i64>;
    /// Why the source could read this record but not turn it into a value of its schema (a
    /// database value with no Avro form): it goes to dead letters, stage `decode`.
    fn failure(&self) -> Option<&str> {
        None
    }
}

/// An owned input record: for sources that build their records (and for tests and tools).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceRecord {
    pub source: usize,
    pub partition: i32,
    pub position: i64,
    pub record: Record,
}

impl InputRecord for SourceRecord {
    fn source(&self) -> usize {
        self.source
    }
    fn partition(&self) -> i32 {
        self.partition
    }
    fn position(&self) -> i64 {
        self.position
    }
    fn key(&self) -> Option<&[u8]> {
        self.record.key.as_deref()
    }
    fn value(&self) -> Option<&[u8]> {
        self.record.value.as_deref()
    }
    fn headers(&self) -> Vec<Header> {
        self.record.headers.clone()
    }
    fn timestamp(&self) -> Option<i64> {
        self.record.timestamp
    }
}

/// A source of records for one pipeline, read in batches.
///
/// Records carry a position per partition. The run loop acknowledges a position only once every
/// record at or before it (in its partition) was delivered to the sinks or to dead letters, so a
/// restart resumes after the last acknowledged position and loses nothing (at-least-once).
pub trait Source {
    /// A record as the source holds it; it may borrow the source's buffers.
    type Record<'a>: InputRecord
    where
        Self: 'a;

    /// Append up to `max` records to `batch`: those ready now, after waiting a short while
    /// (about 100 ms) for the first. Returns early when `stop` is set.
    fn poll<'a>(&'a self, max: usize, stop: &AtomicBool, batch: &mut Vec<Self::Record<'a>>) -> Result<(), SourceError>;

    /// Every record at or before these positions was delivered. `wait`: acknowledge before
    /// returning (at shutdown); otherwise it may complete in the background.
    fn acknowledge(&self, positions: &HashMap<SourcePartition, i64>, wait: bool) -> Result<(), SourceError>;
}

/// A source that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source found it must not go on (a consumer group assignment it cannot run, state
    /// that could not be restored): the message says why.
    #[error("{0}")]
    Stopped(String),
    /// The source's server cannot be reached.
    #[error("cannot reach {what}")]
    Unreachable {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Any other failure of the source's client.
    #[error("{what}")]
    Client {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
