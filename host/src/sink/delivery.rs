//! Delivery tracking: which input positions are safe to acknowledge.
//!
//! Every batch's outputs (sink records, dead letters, changelog writes) are counted against it.
//! A batch is complete once it is sealed (all its sends issued) and every send was delivered;
//! its positions become acknowledgeable only when it *and every batch before it* are complete,
//! so a source is never told to skip past a record that has not reached its sinks
//! (at-least-once). The sink reports deliveries from its own threads.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::source::{InputRecord, SourcePartition};

/// Identifies a batch to the sink, which reports its deliveries with it.
pub type BatchId = u64;

/// A delivery failed for good: the run stops without acknowledging past it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("a record could not be delivered: {0}")]
pub struct DeliveryError(pub String);

/// Deliveries outstanding per batch, in consumption order.
#[derive(Default)]
pub struct DeliveryTracker {
    state: Mutex<TrackerState>,
    changed: Condvar,
}

#[derive(Default)]
struct TrackerState {
    /// The id of `batches[0]`.
    first: BatchId,
    batches: VecDeque<BatchProgress>,
    failure: Option<String>,
}

struct BatchProgress {
    /// Deliveries outstanding: sends counted at `seal`, minus deliveries reported (which may
    /// arrive before the seal, taking it below zero meanwhile).
    pending: i64,
    /// All sends of the batch were issued.
    sealed: bool,
    /// The last position per partition the batch holds.
    positions: Vec<(SourcePartition, i64)>,
}

impl BatchProgress {
    fn complete(&self) -> bool {
        self.sealed && self.pending == 0
    }
}

/// The last position per source partition in `batch`.
pub fn last_positions<R: InputRecord>(batch: &[R]) -> Vec<(SourcePartition, i64)> {
    let mut last: Vec<(SourcePartition, i64)> = Vec::new();
    for record in batch {
        let partition = (record.source(), record.partition());
        match last.iter_mut().find(|(p, _)| *p == partition) {
            Some((_, position)) => *position = (*position).max(record.position()),
            None => last.push((partition, record.position())),
        }
    }
    last
}

impl DeliveryTracker {
    /// Start tracking a batch holding `positions` (see [`last_positions`]).
    pub fn begin(&self, positions: Vec<(SourcePartition, i64)>) -> BatchId {
        let mut state = self.state.lock().unwrap();
        state.batches.push_back(BatchProgress { pending: 0, sealed: false, positions });
        state.first + state.batches.len() as u64 - 1
    }

    /// One send of batch `batch` was delivered, or failed with `error`.
    pub fn delivered(&self, batch: BatchId, error: Option<String>) {
        let mut state = self.state.lock().unwrap();
        let first = state.first;
        let mut completed = false;
        if let Some(progress) = batch.checked_sub(first).and_then(|i| state.batches.get_mut(i as usize)) {
            progress.pending -= 1;
            completed = progress.complete();
        }
        if let Some(error) = error {
            state.failure.get_or_insert(error);
            completed = true;
        }
        // Only a completed batch (or a failure) can unblock `wait_for_room`.
        if completed {
            self.changed.notify_all();
        }
    }

    /// All of batch `batch`'s sends were issued: `sent` of them.
    pub fn seal(&self, batch: BatchId, sent: u64) {
        let mut state = self.state.lock().unwrap();
        let first = state.first;
        let progress = &mut state.batches[(batch - first) as usize];
        progress.pending += sent as i64;
        progress.sealed = true;
        self.changed.notify_all();
    }

    /// A record could not even be handed to the sink: the run stops without acknowledging past it.
    pub fn fail(&self, error: String) {
        self.state.lock().unwrap().failure.get_or_insert(error);
        self.changed.notify_all();
    }

    /// The failure that stops the run, if a delivery failed.
    pub fn failure(&self) -> Option<String> {
        self.state.lock().unwrap().failure.clone()
    }

    /// Block while `max` or more batches are incomplete (backpressure), or until a failure.
    pub fn wait_for_room(&self, max: usize) {
        let mut state = self.state.lock().unwrap();
        loop {
            let incomplete = state.batches.iter().filter(|b| !b.complete()).count();
            if incomplete < max || state.failure.is_some() {
                return;
            }
            state = self.changed.wait_timeout(state, Duration::from_millis(100)).unwrap().0;
        }
    }

    /// Move the positions of the complete leading batches into `acknowledgeable` (last
    /// delivered position per source partition).
    pub fn collect_completed(&self, acknowledgeable: &mut HashMap<SourcePartition, i64>) -> Result<(), DeliveryError> {
        let mut state = self.state.lock().unwrap();
        if let Some(failure) = &state.failure {
            return Err(DeliveryError(failure.clone()));
        }
        while state.batches.front().is_some_and(BatchProgress::complete) {
            let batch = state.batches.pop_front().unwrap();
            state.first += 1;
            for (partition, position) in batch.positions {
                let last = acknowledgeable.entry(partition).or_insert(position);
                *last = (*last).max(position);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceRecord;

    fn record(source: usize, partition: i32, position: i64) -> SourceRecord {
        SourceRecord { source, partition, position, ..Default::default() }
    }

    #[test]
    fn last_positions_are_per_source_partition() {
        let batch = [record(0, 0, 5), record(0, 1, 9), record(0, 0, 6), record(1, 0, 2)];
        assert_eq!(last_positions(&batch), [((0, 0), 6), ((0, 1), 9), ((1, 0), 2)]);
    }

    #[test]
    fn a_batch_is_acknowledged_only_after_every_batch_before_it() {
        let tracker = DeliveryTracker::default();
        let first = tracker.begin(vec![((0, 0), 10)]);
        let second = tracker.begin(vec![((0, 0), 20), ((0, 1), 3)]);
        tracker.seal(first, 2);
        tracker.seal(second, 1);
        // A delivery may arrive for the second batch first.
        tracker.delivered(second, None);
        tracker.delivered(first, None);
        let mut ack = HashMap::new();
        tracker.collect_completed(&mut ack).unwrap();
        assert!(ack.is_empty(), "the first batch still waits for a delivery: {ack:?}");
        tracker.delivered(first, None);
        tracker.collect_completed(&mut ack).unwrap();
        assert_eq!(ack, HashMap::from([((0, 0), 20), ((0, 1), 3)]));
    }

    #[test]
    fn deliveries_before_the_seal_count() {
        let tracker = DeliveryTracker::default();
        let batch = tracker.begin(vec![((0, 0), 1)]);
        tracker.delivered(batch, None);
        let mut ack = HashMap::new();
        tracker.collect_completed(&mut ack).unwrap();
        assert!(ack.is_empty(), "not sealed yet");
        tracker.seal(batch, 1);
        tracker.wait_for_room(1);
        tracker.collect_completed(&mut ack).unwrap();
        assert_eq!(ack, HashMap::from([((0, 0), 1)]));
    }

    #[test]
    fn a_failed_delivery_stops_acknowledgement() {
        let tracker = DeliveryTracker::default();
        let batch = tracker.begin(vec![((0, 0), 1)]);
        tracker.seal(batch, 2);
        tracker.delivered(batch, None);
        tracker.delivered(batch, Some("topic deleted".into()));
        tracker.wait_for_room(1); // returns at once: a failure
        let mut ack = HashMap::new();
        let error = tracker.collect_completed(&mut ack).unwrap_err();
        assert_eq!(error.to_string(), "a record could not be delivered: topic deleted");
        assert!(ack.is_empty());
    }
}
