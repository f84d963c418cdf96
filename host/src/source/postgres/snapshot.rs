//! Where a slot's snapshot stands: being read, or delivered. A run that finds its slot must know
//! which, or it either reads the table again for nothing or misses the rows a killed snapshot
//! never read. The record is kept in the state directory (`<state_dir>/postgres/<slot>.snapshot`)
//! and mirrored to a compacted Kafka topic keyed by slot (`<group>-captures`), because the
//! instance that takes a capture over may run on another machine, with a state directory of its
//! own: it reads the topic when its directory has no record.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::kafka::QuietContext;
use crate::source::SourceError;

/// How long a read or write of the shared record may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a slot's snapshot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotState {
    InProgress,
    Done,
}

impl SnapshotState {
    fn text(self) -> &'static str {
        match self {
            SnapshotState::InProgress => "in progress",
            SnapshotState::Done => "done",
        }
    }

    fn parse(text: &str) -> SnapshotState {
        match text.trim() {
            "done" => SnapshotState::Done,
            _ => SnapshotState::InProgress,
        }
    }
}

/// The compacted topic snapshot records are mirrored to, with a writer made once (a write
/// happens on the run loop's thread when a snapshot's last row is delivered: it must be quick).
#[derive(Clone)]
pub struct SharedRecords {
    pub bootstrap_servers: String,
    pub topic: String,
    writer: std::sync::Arc<FutureProducer<QuietContext>>,
}

impl std::fmt::Debug for SharedRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRecords").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl SharedRecords {
    /// The topic of the pipeline whose consumer group is `group_id`, created when missing.
    pub fn open(bootstrap_servers: &str, group_id: &str) -> Result<SharedRecords, SourceError> {
        let topic = format!("{group_id}-captures");
        crate::kafka::ensure_topic(bootstrap_servers, &topic, 1, &[("cleanup.policy", "compact")])
            .map_err(|e| failed(format!("cannot create the topic of snapshot records {topic}"), e))?;
        let writer: FutureProducer<QuietContext> = crate::kafka::client_config(bootstrap_servers, &[])
            .create_with_context(QuietContext::default())
            .map_err(|e| failed(format!("snapshot records {topic}: cannot create a writer"), e))?;
        Ok(SharedRecords {
            bootstrap_servers: bootstrap_servers.to_string(),
            topic,
            writer: std::sync::Arc::new(writer),
        })
    }
}

/// The record of one slot's snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotMarker {
    /// The local file.
    pub file: PathBuf,
    /// The Kafka mirror, and the slot (its key).
    shared: Option<(SharedRecords, String)>,
}

impl SnapshotMarker {
    /// The record of `slot`'s snapshot in `dir`, mirrored to `shared` when given.
    pub fn new(dir: &std::path::Path, slot: &str, shared: Option<SharedRecords>) -> SnapshotMarker {
        SnapshotMarker { file: dir.join(format!("{slot}.snapshot")), shared: shared.map(|s| (s, slot.to_string())) }
    }

    /// The local record; when there is none, the shared one.
    pub fn read(&self) -> Result<Option<SnapshotState>, SourceError> {
        if let Ok(text) = std::fs::read_to_string(&self.file) {
            return Ok(Some(SnapshotState::parse(&text)));
        }
        match &self.shared {
            Some((shared, slot)) => read_shared(shared, slot),
            None => Ok(None),
        }
    }

    /// Record `state` locally and in the mirror (before returning).
    pub fn write(&self, state: SnapshotState) -> Result<(), SourceError> {
        // Written aside and renamed: a crash leaves the old record or the new one, never half.
        let aside = self.file.with_extension("snapshot.new");
        std::fs::write(&aside, format!("{}\n", state.text()))
            .and_then(|()| std::fs::rename(&aside, &self.file))
            .map_err(|e| failed(format!("cannot write {}", self.file.display()), e))?;
        if let Some((shared, slot)) = &self.shared {
            write_shared(shared, slot, state)?;
        }
        Ok(())
    }
}

fn failed(what: String, error: impl std::error::Error + Send + Sync + 'static) -> SourceError {
    SourceError::Client { what, source: Box::new(error) }
}

/// The latest record of `slot` in the shared topic.
fn read_shared(shared: &SharedRecords, slot: &str) -> Result<Option<SnapshotState>, SourceError> {
    let kafka = |what: &str| {
        let what = format!("snapshot records {}: {what}", shared.topic);
        move |e| failed(what, e)
    };
    let consumer: BaseConsumer<QuietContext> = crate::kafka::client_config(&shared.bootstrap_servers, &[])
        .set("group.id", "meshhost-snapshot-records")
        .set("enable.auto.commit", "false")
        .create_with_context(QuietContext::default())
        .map_err(kafka("cannot create a reader"))?;
    let (low, high) =
        consumer.fetch_watermarks(&shared.topic, 0, KAFKA_TIMEOUT).map_err(kafka("cannot read offsets"))?;
    if high <= low {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&shared.topic, 0, Offset::Offset(low)).map_err(kafka("bad partition"))?;
    consumer.assign(&assignment).map_err(kafka("cannot assign"))?;
    let deadline = Instant::now() + KAFKA_TIMEOUT;
    let mut latest = None;
    loop {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            if Instant::now() > deadline {
                return Err(failed(
                    format!("snapshot records {}: not read to their end within {KAFKA_TIMEOUT:?}", shared.topic),
                    Stalled,
                ));
            }
            continue;
        };
        let message = message.map_err(kafka("cannot read"))?;
        if message.key() == Some(slot.as_bytes()) {
            latest = message.payload().map(|v| SnapshotState::parse(&String::from_utf8_lossy(v)));
        }
        if message.offset() + 1 >= high {
            return Ok(latest);
        }
    }
}

fn write_shared(shared: &SharedRecords, slot: &str, state: SnapshotState) -> Result<(), SourceError> {
    let kafka = |what: &str| {
        let what = format!("snapshot records {}: {what}", shared.topic);
        move |e| failed(what, e)
    };
    let record = FutureRecord::to(&shared.topic).key(slot).payload(state.text());
    crate::kafka::block_on(shared.writer.send(record, Timeout::After(KAFKA_TIMEOUT)))
        .map_err(|(error, _)| kafka("cannot write")(error))?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("stalled")]
struct Stalled;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_record_is_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let marker = SnapshotMarker::new(dir.path(), "slot", None);
        assert_eq!(marker.read().unwrap(), None);
        marker.write(SnapshotState::InProgress).unwrap();
        assert_eq!(marker.read().unwrap(), Some(SnapshotState::InProgress));
        marker.write(SnapshotState::Done).unwrap();
        assert_eq!(marker.read().unwrap(), Some(SnapshotState::Done));
        assert_eq!(std::fs::read_to_string(dir.path().join("slot.snapshot")).unwrap(), "done\n");
    }
}
