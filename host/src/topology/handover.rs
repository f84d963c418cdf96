//! Handing partitions over when the consumer group rebalances, so that many instances of one
//! pipeline can share its partitions (README "Running on several machines").
//!
//! - **Revoked** (not lost): the producer is flushed, the delivered offsets of the revoked
//!   partitions are committed synchronously, and their state is closed cleanly at the
//!   changelog's end, all before librdkafka hands them to another member. **Lost** (this member
//!   missed its session): nothing is committed and the state stays marked dirty.
//! - **Assigned**: partitions that feed a stateful processor are paused and held back while a
//!   worker thread brings their state up to date from the changelog (off the polling thread, so
//!   a long restore never exceeds `max.poll.interval.ms`); the run loop resumes them when it is.
//!   A partition's records are never processed against state that is not restored.
//! - The inputs of a stateful processor must be owned together, partition by partition (the
//!   `range` assignor does that); an assignment that splits them stops the run with a message.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, RebalanceProtocol};
use rdkafka::TopicPartitionList;

use crate::observe::PipelineMetrics;
use crate::sink::pipeline::PipelineSink;
use crate::sink::Sink;
use crate::source::kafka::{next_offsets, offset_list, RebalanceHandler, SourceContext, TopicPartition};
use crate::source::SourcePartition;
use crate::state::{Changelog, Restored, StateStore};

use super::breaker::Breaker;
use crate::sink::delivery::DeliveryTracker;

/// A stateful processor's state, as the handover sees it.
pub struct StatefulProcessor {
    /// The processor's index in the topology (for metrics).
    pub index: usize,
    pub id: String,
    pub store: Arc<StateStore>,
    pub changelog: Changelog,
    /// The source topics its inputs come from: partition p of each shares state partition p.
    pub topics: Vec<String>,
}

/// What a revoke flushes and commits: the run's producer and delivery bookkeeping.
pub struct Deliveries {
    pub sink: Arc<PipelineSink>,
    pub tracker: Arc<DeliveryTracker>,
    /// Last delivered position per (source, partition): what may be committed.
    pub delivered: Arc<Mutex<HashMap<SourcePartition, i64>>>,
    /// The failure-rate window, if any: its records are not committed.
    pub breaker: Option<Arc<Mutex<Breaker>>>,
}

/// The run's side of rebalances.
pub struct Handover {
    deliveries: Deliveries,
    /// Whether the local state may still be marked clean (false once the run failed).
    trusted: std::sync::atomic::AtomicBool,
    /// Topic of each source, by source index.
    source_topics: Vec<String>,
    restores: Arc<Restores>,
    jobs: Mutex<Sender<Job>>,
}

/// Restores under way and done, shared with the restore worker.
struct Restores {
    stateful: Vec<StatefulProcessor>,
    /// Flushed before a restore reads the changelog's end: writes of this process still in
    /// flight (after a lost assignment) must be in it.
    sink: Arc<PipelineSink>,
    /// Per partition number: the generation of its restore and how many processors' restores
    /// it still waits for.
    pending: Mutex<HashMap<i32, (u64, usize)>>,
    /// Partition numbers restored, for the run loop to resume.
    done: Mutex<Vec<i32>>,
    next_generation: AtomicU64,
    /// Why the run must stop (a split co-partitioned assignment, a failed restore).
    problem: Mutex<Option<String>>,
    /// Changelog records replayed so far, per stateful processor (for metrics).
    replayed: Vec<AtomicU64>,
    metrics: Option<Arc<PipelineMetrics>>,
}

/// Restore `partition` of processor `processor` (index into `Restores::stateful`).
struct Job {
    processor: usize,
    partition: i32,
    generation: u64,
}

impl Handover {
    /// The handover of a run, with its restore worker started. `bootstrap_servers` and
    /// `group_id` are for the worker's changelog reader.
    pub fn start(
        deliveries: Deliveries,
        source_topics: Vec<String>,
        stateful: Vec<StatefulProcessor>,
        metrics: Option<Arc<PipelineMetrics>>,
        (bootstrap_servers, group_id): (&str, &str),
    ) -> Handover {
        let replayed = stateful.iter().map(|_| AtomicU64::new(0)).collect();
        let restores = Arc::new(Restores {
            stateful,
            sink: deliveries.sink.clone(),
            pending: Mutex::default(),
            done: Mutex::default(),
            next_generation: AtomicU64::new(1),
            problem: Mutex::default(),
            replayed,
            metrics,
        });
        let (jobs, queue) = mpsc::channel();
        if !restores.stateful.is_empty() {
            let worker = restores.clone();
            let (servers, group) = (bootstrap_servers.to_string(), group_id.to_string());
            std::thread::Builder::new()
                .name("state-restore".into())
                .spawn(move || worker.work(queue, &servers, &group))
                .expect("cannot start the state restore thread");
        }
        Handover { deliveries, trusted: true.into(), source_topics, restores, jobs: Mutex::new(jobs) }
    }

    /// The run failed: from now on no state is marked clean (a store write may lack its
    /// changelog record), so every partition is restored when next assigned.
    pub fn distrust(&self) {
        self.trusted.store(false, Ordering::SeqCst);
    }

    /// Why the run must stop, if it must.
    pub fn problem(&self) -> Option<String> {
        self.restores.problem.lock().unwrap().clone()
    }

    /// Partition numbers whose state is restored, to resume (each once).
    pub fn take_restored(&self) -> Vec<i32> {
        std::mem::take(&mut *self.restores.done.lock().unwrap())
    }

    /// The owned partitions that share state partition `partition` (the held ones).
    pub fn stateful_partitions(&self, owned: &BTreeSet<TopicPartition>, partition: i32) -> Vec<TopicPartition> {
        owned.iter().filter(|(topic, p)| *p == partition && self.is_stateful_topic(topic)).cloned().collect()
    }

    /// Whether a source's partition is one of these topic partitions.
    fn is_among(&self, (source, partition): SourcePartition, partitions: &[TopicPartition]) -> bool {
        partitions.iter().any(|(t, p)| *t == self.source_topics[source] && *p == partition)
    }

    fn is_stateful_topic(&self, topic: &str) -> bool {
        self.restores.stateful.iter().any(|s| s.topics.iter().any(|t| t == topic))
    }

    /// At a clean shutdown, after the last commit: close the owned, restored partitions' state
    /// at the changelog's end (only those: the others are another member's, or half restored).
    pub fn close(
        &self,
        consumer: &BaseConsumer<SourceContext>,
    ) -> Result<(), (String, Box<crate::state::ChangelogError>)> {
        let owned = consumer.context().owned();
        let pending = self.restores.pending.lock().unwrap().clone();
        for processor in &self.restores.stateful {
            let partitions: BTreeSet<i32> = owned
                .iter()
                .filter(|(topic, p)| processor.topics.contains(topic) && !pending.contains_key(p))
                .map(|(_, p)| *p)
                .collect();
            let partitions: Vec<i32> = partitions.into_iter().collect();
            crate::state::mark_clean(consumer, &processor.store, &processor.changelog, &partitions)
                .map_err(|e| (processor.id.clone(), Box::new(e)))?;
        }
        Ok(())
    }

    /// Commit the delivered offsets of `partitions`, synchronously.
    fn commit(&self, consumer: &BaseConsumer<SourceContext>, partitions: &[TopicPartition]) {
        let Deliveries { delivered, breaker, .. } = &self.deliveries;
        let delivered = delivered.lock().unwrap().clone();
        let delivered = match breaker {
            Some(breaker) => breaker.lock().unwrap().committable(&delivered),
            None => delivered,
        };
        let revoked = |topic: &str, partition: i32| partitions.iter().any(|(t, p)| t == topic && *p == partition);
        let next = next_offsets(&self.source_topics, &delivered, revoked);
        if next.is_empty() {
            return;
        }
        let Ok(list) = offset_list(&self.source_topics, &next) else { return };
        match consumer.commit(&list, CommitMode::Sync) {
            Ok(()) => tracing::info!(partitions = list.count(), "committed the revoked partitions"),
            // At-least-once: the next owner reads from the previous commit.
            Err(error) => tracing::warn!(%error, "could not commit the revoked partitions"),
        }
    }
}

impl RebalanceHandler for Handover {
    fn revoking(&self, consumer: &BaseConsumer<SourceContext>, partitions: &[TopicPartition], lost: bool) {
        // Restores of these partition numbers are moot (the worker sees the generation change).
        let numbers: BTreeSet<i32> =
            partitions.iter().filter(|(topic, _)| self.is_stateful_topic(topic)).map(|(_, p)| *p).collect();
        let was_pending = {
            let mut pending = self.restores.pending.lock().unwrap();
            let was: BTreeSet<i32> = numbers.iter().filter(|p| pending.remove(p).is_some()).copied().collect();
            self.restores.done.lock().unwrap().retain(|p| !numbers.contains(p));
            was
        };
        if !lost {
            let started = Instant::now();
            let flushed = match self.deliveries.sink.flush(Duration::from_secs(30)) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%error, "flushing before a revoke");
                    false
                }
            };
            // A delivery failure stays recorded: the run loop stops on it.
            let delivered = self.deliveries.tracker.collect_completed(&mut self.deliveries.delivered.lock().unwrap());
            self.commit(consumer, partitions);
            // Clean only if every write of this process is in the changelog.
            if flushed && delivered.is_ok() && self.trusted.load(Ordering::SeqCst) {
                for processor in &self.restores.stateful {
                    let closed: Vec<i32> = partitions
                        .iter()
                        .filter(|(topic, p)| processor.topics.contains(topic) && !was_pending.contains(p))
                        .map(|(_, p)| *p)
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    if let Err(error) =
                        crate::state::mark_clean(consumer, &processor.store, &processor.changelog, &closed)
                    {
                        tracing::warn!(processor = %processor.id, %error, "could not close the revoked state cleanly");
                    }
                }
            }
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "revoked partitions handed over");
        }
        if let Some(breaker) = &self.deliveries.breaker {
            breaker.lock().unwrap().forget(|partition| self.is_among(partition, partitions));
        }
        let mut delivered = self.deliveries.delivered.lock().unwrap();
        delivered.retain(|&partition, _| !self.is_among(partition, partitions));
    }

    fn assigned(&self, consumer: &BaseConsumer<SourceContext>, partitions: &[TopicPartition]) {
        if matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative) {
            // Incremental assignments would need per-partition bookkeeping of in-flight records
            // that this does not have: refuse rather than skip records.
            self.restores.fail(
                "the consumer group uses cooperative rebalancing (partition.assignment.strategy \
                 cooperative-sticky), which meshhost does not support yet: use range (the default)"
                    .into(),
            );
            return;
        }
        // Positions of batches from before the assignment (a lost one's in-flight records) must
        // not be committed for partitions that start afresh from the group's commit.
        let _ = self.deliveries.sink.flush(Duration::from_secs(30));
        {
            let mut delivered = self.deliveries.delivered.lock().unwrap();
            let _ = self.deliveries.tracker.collect_completed(&mut delivered);
            delivered.retain(|&partition, _| !self.is_among(partition, partitions));
        }
        let owned = consumer.context().owned();
        for processor in &self.restores.stateful {
            if let Some(problem) = split_inputs(processor, &owned) {
                self.restores.fail(problem);
            }
        }
        let numbers: BTreeSet<i32> =
            partitions.iter().filter(|(topic, _)| self.is_stateful_topic(topic)).map(|(_, p)| *p).collect();
        if numbers.is_empty() {
            return;
        }
        let held: Vec<TopicPartition> = numbers.iter().flat_map(|&p| self.stateful_partitions(&owned, p)).collect();
        let mut list = TopicPartitionList::new();
        for (topic, partition) in &held {
            list.add_partition(topic, *partition);
        }
        consumer.context().hold(&held);
        if let Err(error) = consumer.pause(&list) {
            self.restores.fail(format!("cannot pause partitions while their state is restored: {error}"));
            return;
        }
        let jobs = self.jobs.lock().unwrap();
        let mut pending = self.restores.pending.lock().unwrap();
        for partition in numbers {
            let generation = self.restores.next_generation.fetch_add(1, Ordering::Relaxed);
            let processors: Vec<usize> = (0..self.restores.stateful.len())
                .filter(|&i| self.restores.stateful[i].topics.iter().any(|t| owned.contains(&(t.clone(), partition))))
                .collect();
            pending.insert(partition, (generation, processors.len()));
            for processor in processors {
                // The worker lives as long as the sender: sending cannot fail.
                let _ = jobs.send(Job { processor, partition, generation });
            }
        }
    }
}

/// Why `processor` cannot run with this assignment: it owns partition p of one input topic but
/// not of another.
fn split_inputs(processor: &StatefulProcessor, owned: &BTreeSet<TopicPartition>) -> Option<String> {
    for (topic, partition) in owned.iter().filter(|(topic, _)| processor.topics.contains(topic)) {
        if let Some(missing) = processor.topics.iter().find(|t| !owned.contains(&((*t).clone(), *partition))) {
            return Some(format!(
                "processor {}: this instance was assigned {topic}/{partition} but not {missing}/{partition}; a \
                 stateful processor needs partition {partition} of every input on one instance. Use the `range` \
                 assignor (librdkafka's default partition.assignment.strategy), not cooperative-sticky or roundrobin",
                processor.id
            ));
        }
    }
    None
}

impl Restores {
    fn fail(&self, problem: String) {
        tracing::error!("{problem}");
        self.problem.lock().unwrap().get_or_insert(problem);
    }

    fn is_current(&self, partition: i32, generation: u64) -> bool {
        self.pending.lock().unwrap().get(&partition).is_some_and(|(g, _)| *g == generation)
    }

    /// A processor's restore of `partition` is done: when it was the last one, the partition
    /// may be resumed.
    fn finished(&self, partition: i32, generation: u64) {
        let mut pending = self.pending.lock().unwrap();
        if let Some((g, left)) = pending.get_mut(&partition) {
            if *g == generation {
                *left -= 1;
                if *left == 0 {
                    pending.remove(&partition);
                    self.done.lock().unwrap().push(partition);
                }
            }
        }
    }

    /// The restore worker: one job at a time, so no two restores write one store partition.
    fn work(&self, jobs: Receiver<Job>, bootstrap_servers: &str, group_id: &str) {
        let reader = match crate::state::reader(bootstrap_servers, group_id) {
            Ok(reader) => reader,
            Err(error) => return self.fail(format!("cannot create a changelog reader: {error}")),
        };
        for job in jobs {
            if !self.is_current(job.partition, job.generation) {
                continue;
            }
            let processor = &self.stateful[job.processor];
            let started = Instant::now();
            let before = self.replayed[job.processor].load(Ordering::Relaxed);
            let progress = |records: u64| {
                if let Some(metrics) = &self.metrics {
                    metrics.set_restored(processor.index, before + records);
                }
            };
            let cancelled = || !self.is_current(job.partition, job.generation);
            if let Err(error) = self.sink.flush(Duration::from_secs(30)) {
                self.fail(format!(
                    "processor {}: cannot flush before restoring partition {}: {error}",
                    processor.id, job.partition
                ));
                continue;
            }
            match crate::state::restore(
                &reader,
                &processor.store,
                &processor.changelog,
                job.partition,
                &cancelled,
                &progress,
            ) {
                Ok(Restored::Cancelled) => {}
                Ok(outcome) => {
                    let keys = processor.store.count(job.partition as u32).unwrap_or(0);
                    if let Restored::Replayed(records) = outcome {
                        self.replayed[job.processor].fetch_add(records, Ordering::Relaxed);
                        tracing::info!(
                            processor = %processor.id,
                            partition = job.partition,
                            keys,
                            changelog_records = records,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "restored state from the changelog"
                        );
                    } else {
                        tracing::info!(
                            processor = %processor.id,
                            partition = job.partition,
                            keys,
                            "local state is up to date with the changelog"
                        );
                    }
                    self.finished(job.partition, job.generation);
                }
                Err(error) => {
                    self.fail(format!("processor {}: state partition {}: {error}", processor.id, job.partition))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(partitions: &[(&str, i32)]) -> BTreeSet<TopicPartition> {
        partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn a_stateful_processor_needs_each_partition_of_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let processor = StatefulProcessor {
            index: 0,
            id: "enriched".into(),
            store: Arc::new(StateStore::open(&dir.path().join("s.redb")).unwrap()),
            changelog: Changelog::new("g", "enriched", 2),
            topics: vec!["movies".into(), "talents".into()],
        };
        let together = owned(&[("movies", 0), ("talents", 0), ("movies", 1), ("talents", 1), ("other", 5)]);
        assert_eq!(split_inputs(&processor, &together), None);
        assert_eq!(split_inputs(&processor, &owned(&[])), None);
        let split = split_inputs(&processor, &owned(&[("movies", 0), ("talents", 0), ("talents", 1)])).unwrap();
        assert!(
            split.starts_with(
                "processor enriched: this instance was assigned talents/1 but not movies/1; a stateful processor \
                 needs partition 1 of every input on one instance."
            ),
            "{split}"
        );
    }
}
