//! The failure-rate breaker (`dead_letter: {max_ratio, window}`): when more than `max_ratio` of
//! the last `window` records went to dead letters, the run stops. A broken deploy (a condition
//! that fails on every record, a plugin that traps) would otherwise move a whole topic into dead
//! letters and commit it; stopped, and with the window's offsets never committed, the fixed
//! deploy reads the window again.

use std::collections::{HashMap, VecDeque};

pub use crate::config::FailureRateLimit;
use crate::source::SourcePartition;

/// The last `window` records and which of them failed. Offsets are committed only up to the
/// records that have left the window ([`Breaker::committable`]).
#[derive(Debug)]
pub struct Breaker {
    limit: FailureRateLimit,
    /// Position and whether it failed, oldest first.
    recent: VecDeque<(SourcePartition, i64, bool)>,
    failures: usize,
    /// Per partition, the last position that has left the window.
    released: HashMap<SourcePartition, i64>,
}

impl Breaker {
    pub fn new(limit: FailureRateLimit) -> Breaker {
        Breaker { limit, recent: VecDeque::with_capacity(limit.window), failures: 0, released: HashMap::new() }
    }

    /// Count the next record, in the order records are read; `true` when the window now holds
    /// more failures than allowed (the breaker trips).
    pub fn record(&mut self, partition: SourcePartition, position: i64, failed: bool) -> bool {
        if self.recent.len() == self.limit.window {
            let (partition, position, failed) = self.recent.pop_front().expect("the window is full");
            self.failures -= usize::from(failed);
            self.released.insert(partition, position);
        }
        self.recent.push_back((partition, position, failed));
        self.failures += usize::from(failed);
        self.failures > self.limit.allowed_failures()
    }

    /// Forget the partitions `gone` says (revoked): their window and released positions belong
    /// to their next owner's run now.
    pub fn forget(&mut self, gone: impl Fn(SourcePartition) -> bool) {
        let before = self.recent.len();
        self.recent.retain(|(partition, _, _)| !gone(*partition));
        if self.recent.len() != before {
            self.failures = self.recent.iter().filter(|(_, _, failed)| *failed).count();
        }
        self.released.retain(|partition, _| !gone(*partition));
    }

    pub fn limit(&self) -> FailureRateLimit {
        self.limit
    }

    /// The failures in the window and its size, for the message when it trips.
    pub fn failures(&self) -> (usize, usize) {
        (self.failures, self.recent.len())
    }

    /// Of the delivered positions, those that may be committed: no record still in the window.
    pub fn committable(&self, delivered: &HashMap<SourcePartition, i64>) -> HashMap<SourcePartition, i64> {
        delivered
            .iter()
            .filter_map(|(partition, &position)| {
                self.released.get(partition).map(|&released| (*partition, position.min(released)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_when_the_window_holds_more_failures_than_allowed() {
        let mut breaker = Breaker::new(FailureRateLimit { max_ratio: 0.5, window: 4 });
        // ok ok fail fail: 2 of 4 is not more than half.
        assert!(!breaker.record((0, 0), 0, false));
        assert!(!breaker.record((0, 0), 1, false));
        assert!(!breaker.record((0, 0), 2, true));
        assert!(!breaker.record((0, 0), 3, true));
        // ok slides out, ok in: fail fail ok... then a third failure in the window trips it.
        assert!(!breaker.record((0, 0), 4, false));
        assert!(breaker.record((0, 0), 5, true));
        assert_eq!(breaker.failures(), (3, 4));
    }

    #[test]
    fn failures_that_slide_out_no_longer_count() {
        let mut breaker = Breaker::new(FailureRateLimit { max_ratio: 0.25, window: 4 });
        assert!(!breaker.record((0, 0), 0, true));
        for position in 1..=4 {
            assert!(!breaker.record((0, 0), position, false));
        }
        assert!(!breaker.record((0, 0), 5, true), "the first failure has left the window");
    }

    #[test]
    fn revoked_partitions_are_forgotten() {
        let mut breaker = Breaker::new(FailureRateLimit { max_ratio: 0.5, window: 2 });
        breaker.record((0, 0), 0, true);
        breaker.record((0, 1), 0, true);
        breaker.record((0, 1), 1, false); // (0,0)@0 released
        breaker.forget(|partition| partition == (0, 1));
        assert_eq!(breaker.failures(), (0, 0));
        let delivered = HashMap::from([((0, 0), 0), ((0, 1), 1)]);
        assert_eq!(breaker.committable(&delivered), HashMap::from([((0, 0), 0)]));
    }

    #[test]
    fn only_records_out_of_the_window_are_committable() {
        let mut breaker = Breaker::new(FailureRateLimit { max_ratio: 1.0, window: 3 });
        for position in 0..5 {
            breaker.record((0, 0), position, false);
        }
        breaker.record((0, 1), 7, false);
        // Window: (0,0)@3, (0,0)@4, (0,1)@7; released (0,0)@2 only.
        let delivered = HashMap::from([((0, 0), 4), ((0, 1), 7)]);
        assert_eq!(breaker.committable(&delivered), HashMap::from([((0, 0), 2)]));
        let delivered = HashMap::from([((0, 0), 1)]);
        assert_eq!(breaker.committable(&delivered), HashMap::from([((0, 0), 1)]), "not past what was delivered");
    }
}
