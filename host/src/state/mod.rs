//! Durable processor state: an embedded on-disk store per stateful processor, mirrored to a
//! compacted changelog topic in Kafka.
//!
//! The changelog is the source of truth. The local store (redb) is a cache of it that is
//! trusted only after a clean close (revoke or shutdown) that recorded, per partition, the
//! changelog's end offset; when the store is missing, or was left by a crash, or the changelog
//! moved on (another instance owned the partition meanwhile), the partition's state is rebuilt
//! from the changelog when it is assigned. So a fresh machine rebuilds the same state, and
//! local writes need no fsync of their own.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, TableDefinition};

mod changelog;

pub use changelog::{mark_clean, open_store, reader, restore, Changelog, ChangelogError, Restored};

/// Entries: key = partition (u32, big-endian) ++ the processor's key.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Per partition: the changelog end offset the entries matched at the last clean shutdown.
const CLEAN_END: TableDefinition<u32, i64> = TableDefinition::new("clean_end");

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// The writes of one `process` call: `None` deletes.
pub type StateWrites = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A failure of the local store.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: {message}")]
pub struct StateError {
    path: String,
    message: String,
    /// The file is there but cannot be read as a store (damaged): rebuild it, don't stop.
    pub unreadable: bool,
}

/// The local store of one stateful processor.
pub struct StateStore {
    db: Database,
    path: String,
}

fn partition_key(partition: u32, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(4 + key.len());
    full.extend_from_slice(&partition.to_be_bytes());
    full.extend_from_slice(key);
    full
}

/// The first key after every key that starts with `prefix` (None: no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl StateStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        let display = path.display().to_string();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StateError {
                path: display.clone(),
                message: e.to_string(),
                unreadable: false,
            })?;
        }
        let db = Database::create(path).map_err(|e| {
            // Another process holding it, or no permission, is not damage.
            let unreadable = match &e {
                redb::DatabaseError::DatabaseAlreadyOpen => false,
                redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
                    io.kind() != std::io::ErrorKind::PermissionDenied
                }
                _ => true,
            };
            StateError { path: display.clone(), message: e.to_string(), unreadable }
        })?;
        let store = StateStore { db, path: display };
        // Create the tables so that readers never meet a missing one.
        store.write(Durability::Immediate, |_, _| Ok(()))?;
        Ok(store)
    }

    fn error(&self, error: impl std::fmt::Display) -> StateError {
        StateError { path: self.path.clone(), message: error.to_string(), unreadable: false }
    }

    fn write(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>, &mut redb::Table<u32, i64>) -> Result<(), redb::Error>,
    ) -> Result<(), StateError> {
        let mut txn = self.db.begin_write().map_err(|e| self.error(e))?;
        txn.set_durability(durability).map_err(|e| self.error(e))?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
            let mut clean = txn.open_table(CLEAN_END).map_err(|e| self.error(e))?;
            f(&mut entries, &mut clean).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))
    }

    /// The value of `key` in `partition`.
    pub fn get(&self, partition: u32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
        let value = table.get(partition_key(partition, key).as_slice()).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Entries of `partition` whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, partition: u32, prefix: &[u8]) -> Result<Vec<Entry>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
        let start = partition_key(partition, prefix);
        let end = prefix_end(&start);
        let range = match &end {
            Some(end) => table.range(start.as_slice()..end.as_slice()),
            None => table.range(start.as_slice()..),
        }
        .map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for entry in range {
            let (key, value) = entry.map_err(|e| self.error(e))?;
            out.push((key.value()[4..].to_vec(), value.value().to_vec()));
        }
        Ok(out)
    }

    /// Apply one call's writes to `partition`, atomically.
    pub fn apply(&self, partition: u32, writes: &StateWrites) -> Result<(), StateError> {
        if writes.is_empty() {
            return Ok(());
        }
        // Not fsynced: after a crash the changelog, not this file, is the truth.
        self.write(Durability::None, |entries, _| {
            for (key, value) in writes {
                let full = partition_key(partition, key);
                match value {
                    Some(value) => {
                        entries.insert(full.as_slice(), value.as_slice())?;
                    }
                    None => {
                        entries.remove(full.as_slice())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Remove every entry of `partition`.
    pub fn clear(&self, partition: u32) -> Result<(), StateError> {
        let start = partition_key(partition, &[]);
        let end = prefix_end(&start);
        self.write(Durability::None, |entries, _| {
            match &end {
                Some(end) => entries.retain_in(start.as_slice()..end.as_slice(), |_, _| false)?,
                None => entries.retain_in(start.as_slice().., |_, _| false)?,
            }
            Ok(())
        })
    }

    /// The number of entries in every partition (kept by the store: no scan).
    pub fn key_count(&self) -> Result<u64, StateError> {
        use redb::ReadableTableMetadata as _;
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
        table.len().map_err(|e| self.error(e))
    }

    /// The number of entries in `partition`, counted without copying them.
    pub fn count(&self, partition: u32) -> Result<usize, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(ENTRIES).map_err(|e| self.error(e))?;
        let start = partition_key(partition, &[]);
        let end = prefix_end(&start);
        let range = match &end {
            Some(end) => table.range(start.as_slice()..end.as_slice()),
            None => table.range(start.as_slice()..),
        }
        .map_err(|e| self.error(e))?;
        Ok(range.count())
    }

    /// The changelog end offset recorded for `partition` at the last clean shutdown.
    pub fn clean_end(&self, partition: u32) -> Result<Option<i64>, StateError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(CLEAN_END).map_err(|e| self.error(e))?;
        Ok(table.get(partition).map_err(|e| self.error(e))?.map(|v| v.value()))
    }

    /// Record (at a clean shutdown) or forget (while running) the changelog end offsets, durably.
    pub fn set_clean_ends(&self, ends: &[(u32, Option<i64>)]) -> Result<(), StateError> {
        self.write(Durability::Immediate, |_, clean| {
            for (partition, end) in ends {
                match end {
                    Some(end) => {
                        clean.insert(*partition, *end)?;
                    }
                    None => {
                        clean.remove(*partition)?;
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_scans_and_clears_are_per_partition() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.redb")).unwrap();
        let mut writes = StateWrites::new();
        writes.insert(b"La".to_vec(), Some(b"1".to_vec()));
        writes.insert(b"Lb".to_vec(), Some(b"2".to_vec()));
        writes.insert(b"R\xff".to_vec(), Some(b"3".to_vec()));
        store.apply(0, &writes).unwrap();
        store.apply(1, &writes).unwrap();
        let mut delete = StateWrites::new();
        delete.insert(b"Lb".to_vec(), None);
        store.apply(1, &delete).unwrap();
        assert_eq!(store.key_count().unwrap(), 5, "3 in partition 0, 2 in partition 1");

        assert_eq!(store.get(0, b"Lb").unwrap(), Some(b"2".to_vec()));
        assert_eq!(store.get(1, b"Lb").unwrap(), None);
        assert_eq!(
            store.scan_prefix(0, b"L").unwrap(),
            vec![(b"La".to_vec(), b"1".to_vec()), (b"Lb".to_vec(), b"2".to_vec())]
        );
        assert_eq!(store.scan_prefix(1, b"R").unwrap(), vec![(b"R\xff".to_vec(), b"3".to_vec())]);
        store.clear(0).unwrap();
        assert_eq!(store.count(0).unwrap(), 0);
        assert_eq!(store.key_count().unwrap(), 2);
        assert_eq!(store.count(1).unwrap(), 2);

        assert_eq!(store.clean_end(1).unwrap(), None);
        store.set_clean_ends(&[(1, Some(42))]).unwrap();
        drop(store);
        let store = StateStore::open(&dir.path().join("s.redb")).unwrap();
        assert_eq!(store.clean_end(1).unwrap(), Some(42));
        assert_eq!(store.get(1, b"La").unwrap(), Some(b"1".to_vec()));
    }
}
