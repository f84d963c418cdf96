//! Batches of records as they cross the boundary: column-wise, every key, value and header value
//! in one byte buffer. [`Batch`] reads them in place; [`Record`] is an owned record, for records
//! a processor builds itself and for tests.

use crate::bindings::meshhost::processor::types as wit;

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
    /// Milliseconds since the Unix epoch.
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
}

impl Batch {
    /// A batch of these records, as the host would pass them (for tests and native callers).
    pub fn new(records: impl IntoIterator<Item = Record>) -> Batch {
        let mut writer = Writer::default();
        let records = records.into_iter().map(|record| writer.record(&record)).collect();
        Batch { raw: wit::Batch { records, bytes: writer.bytes, headers: writer.headers } }
    }

    pub(crate) fn from_raw(raw: wit::Batch) -> Batch {
        Batch { raw }
    }

    pub(crate) fn span(&self, span: wit::Span) -> &[u8] {
        bytes(&self.raw, span)
    }

    /// An owned copy of `record`, whose spans point into this batch.
    pub(crate) fn resolve(&self, record: &wit::Record) -> Record {
        RecordRef { batch: &self.raw, record }.to_record()
    }

    /// How many records the batch holds.
    pub fn len(&self) -> usize {
        self.raw.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.records.is_empty()
    }

    /// The record at `index`.
    ///
    /// # Panics
    /// When `index` is not below [`len`](Self::len).
    pub fn get(&self, index: usize) -> RecordRef<'_> {
        RecordRef { batch: &self.raw, record: &self.raw.records[index] }
    }

    /// The records, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.raw.records.iter().map(|record| RecordRef { batch: &self.raw, record })
    }
}

impl From<Vec<Record>> for Batch {
    fn from(records: Vec<Record>) -> Batch {
        Batch::new(records)
    }
}

/// One record of a [`Batch`], borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    batch: &'a wit::Batch,
    record: &'a wit::Record,
}

impl<'a> RecordRef<'a> {
    /// The Kafka key.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.record.key.map(|span| bytes(self.batch, span))
    }

    /// The value; `None` is a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.record.value.map(|span| bytes(self.batch, span))
    }

    /// Milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> Option<i64> {
        self.record.timestamp
    }

    /// The Kafka headers, in order: (name, value; `None` is a null header).
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        let batch = self.batch;
        let span = self.record.headers;
        batch.headers[span.offset as usize..(span.offset + span.length) as usize]
            .iter()
            .map(move |header| (header.key.as_str(), header.value.map(|span| bytes(batch, span))))
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key().map(<[u8]>::to_vec),
            value: self.value().map(<[u8]>::to_vec),
            headers: self.headers().map(|(key, value)| Header { key: key.to_string(), value: value.map(<[u8]>::to_vec) }).collect(),
            timestamp: self.timestamp(),
        }
    }
}

fn bytes(batch: &wit::Batch, span: wit::Span) -> &[u8] {
    &batch.bytes[span.offset as usize..(span.offset + span.length) as usize]
}

/// Appends records' parts to one byte buffer and one header list.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub bytes: Vec<u8>,
    pub headers: Vec<wit::Header>,
}

impl Writer {
    pub fn span(&mut self, data: &[u8]) -> wit::Span {
        let offset = self.bytes.len() as u32;
        self.bytes.extend_from_slice(data);
        wit::Span { offset, length: data.len() as u32 }
    }

    pub fn record(&mut self, record: &Record) -> wit::Record {
        let key = record.key.as_deref().map(|key| self.span(key));
        let value = record.value.as_deref().map(|value| self.span(value));
        let first = self.headers.len() as u32;
        for header in &record.headers {
            let value = header.value.as_deref().map(|value| self.span(value));
            self.headers.push(wit::Header { key: header.key.clone(), value });
        }
        let headers = wit::Span { offset: first, length: record.headers.len() as u32 };
        wit::Record { key, value, headers, timestamp: record.timestamp }
    }
}
