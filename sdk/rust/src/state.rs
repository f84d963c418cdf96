//! Durable keyed state, kept by the host per processor and input partition.
//!
//! Processor logic takes a `&mut impl State`, so it runs natively in unit tests against
//! [`MemoryState`] and in the component against [`HostState`] (the WIT `state` import).

use std::collections::BTreeMap;

/// A keyed byte store.
pub trait State {
    /// The value under `key`, if any.
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>>;
    /// Store `value` under `key`.
    fn put(&mut self, key: &[u8], value: &[u8]);
    /// Remove `key`.
    fn delete(&mut self, key: &[u8]);
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&mut self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// The host's durable store (the component's `state` import). Only usable inside a component.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostState;

impl State for HostState {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        crate::bindings::meshhost::processor::state::get(key)
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        crate::bindings::meshhost::processor::state::put(key, value)
    }

    fn delete(&mut self, key: &[u8]) {
        crate::bindings::meshhost::processor::state::delete(key)
    }

    fn scan_prefix(&mut self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        crate::bindings::meshhost::processor::state::scan_prefix(prefix)
    }
}

/// An in-memory store, for native tests of stateful logic.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MemoryState {
    pub entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl State for MemoryState {
    fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries.get(key).cloned()
    }

    fn put(&mut self, key: &[u8], value: &[u8]) {
        self.entries.insert(key.to_vec(), value.to_vec());
    }

    fn delete(&mut self, key: &[u8]) {
        self.entries.remove(key);
    }

    fn scan_prefix(&mut self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.entries
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
