//! The records of the catalog topic — by default `_meshhost_catalog`, compacted, one partition.
//!
//! Every change to the catalog is one record; a server's state is the fold of the topic from its
//! start ([`super::Schemas::apply`]). Keys and values are JSON. A key names one fact and its
//! bytes are deterministic, so compaction keeps the newest record of each fact:
//!
//! - `{"type":"schema","subject":S,"version":V,"id":I,"fingerprint":F}` → `{"schema":TEXT,"deleted":B}`:
//!   version `V` of subject `S` is schema `I`. The fingerprint (of the schema's meaning form)
//!   keeps two servers that raced for the same version under different keys, so that the loser
//!   can tombstone its own record. A tombstone is a permanent delete.
//! - `{"type":"config","subject":S|null}` → `{"compatibility":LEVEL}`: the compatibility level of a
//!   subject, or the global one; a tombstone removes a subject's own level.
//! - `{"type":"source","name":N}` → a [`SourceEntry`]: a source of the catalog; a tombstone
//!   removes it.
//! - `{"type":"consumer","source":N,"pipeline":P}` → a [`ConsumerEntry`]: pipeline `P` reads
//!   source `N` (its own record, so that pipelines registering never overwrite the source's).
//!
//! Record types a newer meshhost writes are skipped by older servers, not fatal.

use serde::{Deserialize, Serialize};

use super::compatibility::Compatibility;
use super::sources::{ConsumerEntry, SourceEntry};

/// The default catalog topic.
pub const DEFAULT_TOPIC: &str = "_meshhost_catalog";

/// What a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CatalogKey {
    Schema(SchemaKey),
    Config { subject: Option<String> },
    Source { name: String },
    Consumer { source: String, pipeline: String },
}

/// One version of one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaKey {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    /// CRC-64-AVRO of the schema's meaning form, in hex.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    pub schema: String,
    #[serde(default)]
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigValue {
    pub compatibility: Compatibility,
}

/// A record of the catalog topic, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogRecord {
    /// A version written, changed (soft delete) or, with no value, removed.
    Schema { key: SchemaKey, value: Option<SchemaValue> },
    /// A compatibility level set or, with no value, removed.
    Config { subject: Option<String>, value: Option<ConfigValue> },
    /// A source published (or changed) or, with no value, removed.
    Source { name: String, value: Option<SourceEntry> },
    /// A pipeline registered as a consumer of a source or, with no value, gone.
    Consumer { source: String, pipeline: String, value: Option<ConsumerEntry> },
}

impl CatalogKey {
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("catalog keys always serialize")
    }
}

impl CatalogRecord {
    /// Read a record of the topic; `Err` for one this server does not understand.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<CatalogRecord, String> {
        let key = key.ok_or("a record without a key")?;
        let key: CatalogKey = serde_json::from_slice(key).map_err(|e| format!("unknown key: {e}"))?;
        let value_error = |e: serde_json::Error| format!("bad value: {e}");
        Ok(match key {
            CatalogKey::Schema(key) => CatalogRecord::Schema {
                key,
                value: value.map(serde_json::from_slice).transpose().map_err(value_error)?,
            },
            CatalogKey::Config { subject } => CatalogRecord::Config {
                subject,
                value: value.map(serde_json::from_slice).transpose().map_err(value_error)?,
            },
            CatalogKey::Source { name } => CatalogRecord::Source {
                name,
                value: value.map(serde_json::from_slice).transpose().map_err(value_error)?,
            },
            CatalogKey::Consumer { source, pipeline } => CatalogRecord::Consumer {
                source,
                pipeline,
                value: value.map(serde_json::from_slice).transpose().map_err(value_error)?,
            },
        })
    }

    /// The record's key and value as written to the topic.
    pub fn encode(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        fn json<T: Serialize>(value: &T) -> Vec<u8> {
            serde_json::to_vec(value).expect("catalog values always serialize")
        }
        match self {
            CatalogRecord::Schema { key, value } => {
                (CatalogKey::Schema(key.clone()).to_bytes(), value.as_ref().map(json))
            }
            CatalogRecord::Config { subject, value } => {
                (CatalogKey::Config { subject: subject.clone() }.to_bytes(), value.as_ref().map(json))
            }
            CatalogRecord::Source { name, value } => {
                (CatalogKey::Source { name: name.clone() }.to_bytes(), value.as_ref().map(json))
            }
            CatalogRecord::Consumer { source, pipeline, value } => (
                CatalogKey::Consumer { source: source.clone(), pipeline: pipeline.clone() }.to_bytes(),
                value.as_ref().map(json),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deterministic_json() {
        let key = SchemaKey { subject: "movies-value".into(), version: 2, id: 7, fingerprint: "00ff".into() };
        let record =
            CatalogRecord::Schema { key, value: Some(SchemaValue { schema: "\"int\"".into(), deleted: false }) };
        let (key, value) = record.encode();
        assert_eq!(
            String::from_utf8(key.clone()).unwrap(),
            r#"{"type":"schema","subject":"movies-value","version":2,"id":7,"fingerprint":"00ff"}"#
        );
        assert_eq!(CatalogRecord::decode(Some(&key), value.as_deref()), Ok(record));
        let config =
            CatalogRecord::Config { subject: None, value: Some(ConfigValue { compatibility: Compatibility::Full }) };
        let (key, value) = config.encode();
        assert_eq!(String::from_utf8(key.clone()).unwrap(), r#"{"type":"config","subject":null}"#);
        assert_eq!(String::from_utf8(value.clone().unwrap()).unwrap(), r#"{"compatibility":"FULL"}"#);
        assert_eq!(CatalogRecord::decode(Some(&key), value.as_deref()), Ok(config));
    }

    #[test]
    fn unknown_record_types_are_refused_not_fatal() {
        assert!(CatalogRecord::decode(Some(br#"{"type":"dataset","name":"movies"}"#), Some(b"{}")).is_err());
        assert!(CatalogRecord::decode(None, Some(b"{}")).is_err());
    }
}
