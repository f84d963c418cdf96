//! Where records come from: the [`Source`] trait. Kafka topics ([`crate::kafka::KafkaSource`])
//! are one implementation; a source whose positions are not Kafka offsets (a database's log
//! position) fits the same trait.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use crate::topology::delivery::SourcePartition;
use crate::topology::execute::InputRecord;

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
    /// The source's server cannot be reached.
    #[error("cannot reach {what}")]
    Unreachable {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something the pipeline needs is not there (a topic, a table, a replication slot).
    #[error("{0}")]
    Missing(String),
    /// Any other failure of the source's client.
    #[error("{what}")]
    Client {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
