//! The source consumer's context: which partitions this instance owns, kept by librdkafka's
//! rebalance callbacks, and the run's [`RebalanceHandler`] called from them.
//!
//! The callbacks run inside `BaseConsumer::poll`, on the run loop's thread, between batches: a
//! revoke is handled (outputs flushed, offsets committed, state closed) before librdkafka gives
//! the partitions up, and an assignment (partitions paused while their state is restored) before
//! any of their records is fetched.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;

use crate::kafka::QuietContext;

/// A topic and one of its partitions.
pub type TopicPartition = (String, i32);

/// What the run does when the group moves partitions.
pub trait RebalanceHandler: Send + Sync {
    /// `partitions` are about to be taken away. `lost`: the group already gave them to another
    /// member (this one missed its session): nothing of them may be committed or trusted.
    fn revoking(&self, consumer: &BaseConsumer<SourceContext>, partitions: &[TopicPartition], lost: bool);
    /// `partitions` were assigned (and may now be paused).
    fn assigned(&self, consumer: &BaseConsumer<SourceContext>, partitions: &[TopicPartition]);
}

/// The context of the pipeline's source consumer.
#[derive(Default)]
pub struct SourceContext {
    quiet: QuietContext,
    /// The partitions this instance owns.
    owned: Mutex<BTreeSet<TopicPartition>>,
    /// Owned partitions whose records must not be processed yet (their state is being
    /// restored), with the first offset polled and dropped meanwhile (to read again on resume).
    held: Mutex<HashMap<TopicPartition, Option<i64>>>,
    /// Bumped by every assignment and revocation: records polled before are of another
    /// generation of the group.
    epoch: AtomicU64,
    rebalances: AtomicU64,
    handler: OnceLock<Arc<dyn RebalanceHandler>>,
}

impl SourceContext {
    /// The handler the rebalance callbacks call (set once, before subscribing).
    pub fn set_handler(&self, handler: Arc<dyn RebalanceHandler>) {
        if self.handler.set(handler).is_err() {
            panic!("the rebalance handler is set once");
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Partition assignments and revocations so far.
    pub fn rebalances(&self) -> u64 {
        self.rebalances.load(Ordering::Relaxed)
    }

    /// Whether this instance owns the partition.
    pub fn owns(&self, topic: &str, partition: i32) -> bool {
        self.owned.lock().unwrap().contains(&(topic.to_string(), partition))
    }

    /// The partitions this instance owns.
    pub fn owned(&self) -> BTreeSet<TopicPartition> {
        self.owned.lock().unwrap().clone()
    }

    /// Hold back the records of these partitions until [`release`](Self::release).
    pub fn hold(&self, partitions: &[TopicPartition]) {
        let mut held = self.held.lock().unwrap();
        for partition in partitions {
            held.insert(partition.clone(), None);
        }
    }

    /// Whether a record of this partition at `offset` is held back (and note that it was).
    pub fn is_held(&self, topic: &str, partition: i32, offset: i64) -> bool {
        let mut held = self.held.lock().unwrap();
        match held.get_mut(&(topic.to_string(), partition)) {
            Some(first_dropped) => {
                *first_dropped = Some(first_dropped.map_or(offset, |first| first.min(offset)));
                true
            }
            None => false,
        }
    }

    /// Stop holding back these partitions: the offsets to read again, of those whose records
    /// were dropped meanwhile.
    pub fn release(&self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, i64)> {
        let mut held = self.held.lock().unwrap();
        partitions.iter().filter_map(|p| held.remove(p).flatten().map(|offset| (p.clone(), offset))).collect()
    }

    /// Whether any owned partition is held back.
    pub fn holds_any(&self) -> bool {
        !self.held.lock().unwrap().is_empty()
    }
}

/// The partitions of a list.
fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

impl ClientContext for SourceContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.quiet.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.quiet.error(error, reason);
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else { return };
        let partitions = partitions_of(list);
        let lost = consumer.assignment_lost();
        tracing::info!(?partitions, lost, "partitions revoked");
        if let Some(handler) = self.handler.get() {
            handler.revoking(consumer, &partitions, lost);
        }
        let mut owned = self.owned.lock().unwrap();
        let mut held = self.held.lock().unwrap();
        for partition in &partitions {
            owned.remove(partition);
            held.remove(partition);
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.rebalances.fetch_add(1, Ordering::Relaxed);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let partitions = partitions_of(list);
                tracing::info!(?partitions, "partitions assigned");
                self.owned.lock().unwrap().extend(partitions.iter().cloned());
                self.epoch.fetch_add(1, Ordering::SeqCst);
                self.rebalances.fetch_add(1, Ordering::Relaxed);
                if let Some(handler) = self.handler.get() {
                    handler.assigned(consumer, &partitions);
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "consumer group rebalance failed"),
        }
    }
}
