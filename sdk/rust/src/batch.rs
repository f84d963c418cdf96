//! Batches of records as they cross the boundary: column by column (see `batch` in
//! `wit/processor.wit`). [`Batch`] reads them in place; [`Record`] is an owned record, for
//! records a processor builds itself and for tests.

use crate::bindings::meshhost::processor::types as wit;

/// In a batch's length or timestamp columns: a missing key, a tombstone, or no timestamp.
pub const NONE: i32 = -1;
/// In a result's columns: the origin record's key, value, timestamp or headers.
pub const ORIGIN: i32 = -2;

/// A Kafka record header, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    /// `None` is a null header.
    pub value: Option<Vec<u8>>,
}

/// A record, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The Kafka key.
    pub key: Option<Vec<u8>>,
    /// The value (an Avro datum of the port's schema, or JSON text); `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Kafka headers, in order.
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch (Kafka has no timestamps before 1970).
    pub timestamp: Option<i64>,
}

impl Record {
    /// A record with this value and nothing else, handy in tests.
    pub fn from_value(value: Vec<u8>) -> Self {
        Record { value: Some(value), ..Record::default() }
    }
}

/// The records of one `process` call, read in place.
#[derive(Debug, Clone)]
pub struct Batch {
    raw: wit::Batch,
    /// Where each record's key starts in `raw.bytes` (its value follows it).
    starts: Vec<u32>,
    /// Where each record's headers start in `raw.headers`.
    first_headers: Vec<u32>,
}

impl Batch {
    /// A batch of these records, as the host would pass them (for tests and native callers).
    pub fn new(records: impl IntoIterator<Item = Record>) -> Batch {
        let mut writer = Writer::default();
        for record in records {
            writer.record(&record);
        }
        Batch::from_raw(writer.finish())
    }

    /// Index a batch as it arrived. Columns shorter than `key-lengths` or lengths that overrun
    /// `bytes` are a host bug: the panic traps the call, and the host reports it.
    pub(crate) fn from_raw(raw: wit::Batch) -> Batch {
        let count = raw.key_lengths.len();
        assert!(
            raw.value_lengths.len() == count && raw.timestamps.len() == count && raw.header_counts.len() == count,
            "batch columns of different lengths"
        );
        let mut starts = Vec::with_capacity(count);
        let mut at = 0u32;
        for (&key, &value) in raw.key_lengths.iter().zip(&raw.value_lengths) {
            starts.push(at);
            at += key.max(0) as u32 + value.max(0) as u32;
        }
        assert!(at as usize <= raw.bytes.len(), "batch lengths overrun its bytes");
        let mut first_headers = Vec::new();
        if !raw.headers.is_empty() {
            let mut at = 0u32;
            for &count in &raw.header_counts {
                first_headers.push(at);
                at += count.max(0) as u32;
            }
            assert!(at as usize <= raw.headers.len(), "batch header counts overrun its headers");
        }
        Batch { raw, starts, first_headers }
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The record at `index`.
    ///
    /// # Panics
    /// When `index` is not below [`len`](Self::len).
    pub fn get(&self, index: usize) -> RecordRef<'_> {
        assert!(index < self.len(), "record {index} of a batch of {}", self.len());
        RecordRef { batch: self, index }
    }

    /// The records, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        (0..self.len()).map(move |index| RecordRef { batch: self, index })
    }
}

impl From<Vec<Record>> for Batch {
    fn from(records: Vec<Record>) -> Batch {
        Batch::new(records)
    }
}

impl Batch {
    /// Emitted record `index` of a result batch as an owned record, the parts marked as the
    /// origin's taken from `origin`.
    pub(crate) fn resolve(&self, index: usize, origin: RecordRef<'_>) -> Record {
        let own = self.get(index);
        let raw = &self.raw;
        let is_origin = |column: i64| column == i64::from(ORIGIN);
        Record {
            key: if is_origin(raw.key_lengths[index].into()) { origin.key() } else { own.key() }.map(<[u8]>::to_vec),
            value: if is_origin(raw.value_lengths[index].into()) { origin.value() } else { own.value() }
                .map(<[u8]>::to_vec),
            headers: if is_origin(raw.header_counts[index].into()) {
                origin.to_record().headers
            } else {
                own.to_record().headers
            },
            timestamp: if is_origin(raw.timestamps[index]) { origin.timestamp() } else { own.timestamp() },
        }
    }
}

/// One record of a [`Batch`], borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    batch: &'a Batch,
    index: usize,
}

impl<'a> RecordRef<'a> {
    /// Its index in the batch: the `origin` of what is emitted from it.
    pub fn index(&self) -> u32 {
        self.index as u32
    }

    /// The Kafka key.
    pub fn key(&self) -> Option<&'a [u8]> {
        let raw = &self.batch.raw;
        let length = raw.key_lengths[self.index];
        let start = self.batch.starts[self.index] as usize;
        (length >= 0).then(|| &raw.bytes[start..start + length as usize])
    }

    /// The value; `None` is a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        let raw = &self.batch.raw;
        let length = raw.value_lengths[self.index];
        let start = self.batch.starts[self.index] as usize + raw.key_lengths[self.index].max(0) as usize;
        (length >= 0).then(|| &raw.bytes[start..start + length as usize])
    }

    /// Milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> Option<i64> {
        Some(self.batch.raw.timestamps[self.index]).filter(|&t| t >= 0)
    }

    /// The Kafka headers, in order: (name, value; `None` is a null header).
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let batch = self.batch;
        let headers = match batch.first_headers.get(self.index) {
            Some(&first) => {
                let count = batch.raw.header_counts[self.index].max(0) as usize;
                &batch.raw.headers[first as usize..first as usize + count]
            }
            None => &[],
        };
        headers.iter().map(|header| (header.key.as_str(), header.value.as_deref()))
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key().map(<[u8]>::to_vec),
            value: self.value().map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(key, value)| Header { key: key.to_string(), value: value.map(<[u8]>::to_vec) })
                .collect(),
            timestamp: self.timestamp(),
        }
    }
}

/// Builds a batch's columns, record by record.
#[derive(Debug)]
pub(crate) struct Writer {
    raw: wit::Batch,
}

impl Default for Writer {
    fn default() -> Self {
        let raw = wit::Batch {
            bytes: Vec::new(),
            key_lengths: Vec::new(),
            value_lengths: Vec::new(),
            timestamps: Vec::new(),
            header_counts: Vec::new(),
            headers: Vec::new(),
        };
        Writer { raw }
    }
}

impl Writer {
    /// Append a record whose every part is its origin's.
    pub fn origin(&mut self) {
        let raw = &mut self.raw;
        raw.key_lengths.push(ORIGIN);
        raw.value_lengths.push(ORIGIN);
        raw.timestamps.push(ORIGIN.into());
        raw.header_counts.push(ORIGIN);
    }

    /// Append a record with this value and its origin's key, timestamp and headers.
    pub fn value(&mut self, value: Option<&[u8]>) {
        let raw = &mut self.raw;
        raw.key_lengths.push(ORIGIN);
        raw.value_lengths.push(append(&mut raw.bytes, value));
        raw.timestamps.push(ORIGIN.into());
        raw.header_counts.push(ORIGIN);
    }

    /// Append a record of its own.
    pub fn record(&mut self, record: &Record) {
        let raw = &mut self.raw;
        raw.key_lengths.push(append(&mut raw.bytes, record.key.as_deref()));
        raw.value_lengths.push(append(&mut raw.bytes, record.value.as_deref()));
        // Kafka has no timestamps before 1970; -2 would mean "the origin's".
        raw.timestamps.push(record.timestamp.filter(|&t| t >= 0).unwrap_or(NONE.into()));
        raw.header_counts.push(record.headers.len() as i32);
        raw.headers.extend(record.headers.iter().map(|h| wit::Header { key: h.key.clone(), value: h.value.clone() }));
    }

    pub fn finish(self) -> wit::Batch {
        self.raw
    }

    /// The records so far, readable (parts that are the origin's read as empty).
    pub fn snapshot(&self) -> Batch {
        Batch::from_raw(self.raw.clone())
    }
}

/// Append `part` to `bytes`; its length column entry.
fn append(bytes: &mut Vec<u8>, part: Option<&[u8]>) -> i32 {
    match part {
        Some(part) => {
            bytes.extend_from_slice(part);
            part.len() as i32
        }
        None => NONE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Emitted, Output};

    fn records() -> Vec<Record> {
        let header = |key: &str, value: Option<&[u8]>| Header { key: key.into(), value: value.map(<[u8]>::to_vec) };
        vec![
            Record {
                key: Some(b"k1".to_vec()),
                value: Some(b"v1".to_vec()),
                headers: vec![header("h", Some(b"x")), header("n", None)],
                timestamp: Some(5),
            },
            Record { key: None, value: None, headers: vec![], timestamp: None },
            Record {
                key: Some(vec![]),
                value: Some(vec![]),
                headers: vec![header("h", Some(b""))],
                timestamp: Some(0),
            },
            Record::from_value(b"only".to_vec()),
        ]
    }

    #[test]
    fn a_batch_reads_back_the_records_it_was_built_from() {
        let batch = Batch::new(records());
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.iter().map(|r| r.to_record()).collect::<Vec<_>>(), records());
        assert_eq!(batch.get(3).value(), Some(&b"only"[..]));
        assert_eq!(batch.get(0).headers().collect::<Vec<_>>(), [("h", Some(&b"x"[..])), ("n", None)]);
    }

    #[test]
    fn emits_resolve_parts_marked_as_the_origins() {
        let batch = Batch::new(records());
        let mut out = Output::default();
        out.pass(1, 0);
        out.emit_value(0, 0, Some(b"new"));
        out.emit_value(0, 2, None);
        let own =
            Record { key: Some(b"other".to_vec()), value: Some(b"w".to_vec()), headers: vec![], timestamp: Some(9) };
        out.emit(2, 1, &own);
        let originals = records();
        assert_eq!(
            out.emitted(&batch),
            [
                Emitted { port: 1, origin: 0, record: originals[0].clone() },
                Emitted { port: 0, origin: 0, record: Record { value: Some(b"new".to_vec()), ..originals[0].clone() } },
                Emitted { port: 0, origin: 2, record: Record { value: None, ..originals[2].clone() } },
                Emitted { port: 2, origin: 1, record: own },
            ]
        );
        assert_eq!(out.emitted_count(), 4);
    }
}
