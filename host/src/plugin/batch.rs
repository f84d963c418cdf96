//! Records on the host side of the boundary, and the column-wise form they take in a `process`
//! call: every key, value and header value of a batch in one byte buffer, the records as spans
//! of it (see `wit/processor.wit`). Building that form is a few appends per record; the guest
//! then receives the whole batch in a handful of copies.

use super::bindings::meshhost::processor::types as wit;
pub use wit::Failure;

/// A Kafka record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    /// `None` is a null header.
    pub value: Option<Vec<u8>>,
}

/// A record as the host holds it between stages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    /// An Avro datum of the edge's schema (or JSON text for a JSON-format processor);
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
}

/// What a `process` call returned.
#[derive(Debug, Default)]
pub struct Processed {
    /// Records emitted, in order.
    pub emitted: Vec<Emitted>,
    /// Records that failed, including any whose emit pointed outside the result's bytes.
    pub failures: Vec<Failure>,
}

/// One emitted record.
#[derive(Debug)]
pub struct Emitted {
    /// Output port index, as the plugin gave it (checked by the caller).
    pub port: u32,
    /// Index of the input record it derives from, as the plugin gave it (checked by the caller).
    pub origin: u32,
    pub content: Content,
}

/// What an emitted record holds, relative to its origin.
#[derive(Debug)]
pub enum Content {
    /// The origin record, unchanged.
    Origin,
    /// The origin's key, headers and timestamp with this value.
    Value(Option<Vec<u8>>),
    /// A record of its own.
    Record(Record),
}

impl Processed {
    /// Every emitted record as an owned `(port, origin, record)`, unchanged origins copied from
    /// `inputs` (the records of the call). For tools and tests; the run loop moves records.
    pub fn records(&self, inputs: &[Record]) -> Vec<(u32, u32, Record)> {
        self.emitted
            .iter()
            .filter_map(|emit| {
                let origin = inputs.get(emit.origin as usize)?;
                let record = match &emit.content {
                    Content::Origin => origin.clone(),
                    Content::Value(value) => Record { value: value.clone(), ..origin.clone() },
                    Content::Record(record) => record.clone(),
                };
                Some((emit.port, emit.origin, record))
            })
            .collect()
    }
}

/// Lay `records` out column-wise in `batch`, reusing its buffers.
pub(super) fn fill(batch: &mut wit::Batch, records: &[Record]) {
    batch.records.clear();
    batch.bytes.clear();
    batch.headers.clear();
    for record in records {
        let key = record.key.as_deref().map(|key| append(&mut batch.bytes, key));
        let value = record.value.as_deref().map(|value| append(&mut batch.bytes, value));
        let first = batch.headers.len() as u32;
        for header in &record.headers {
            let value = header.value.as_deref().map(|value| append(&mut batch.bytes, value));
            batch.headers.push(wit::Header { key: header.key.clone(), value });
        }
        let headers = wit::Span { offset: first, length: record.headers.len() as u32 };
        batch.records.push(wit::Record { key, value, headers, timestamp: record.timestamp });
    }
}

fn append(bytes: &mut Vec<u8>, data: &[u8]) -> wit::Span {
    let offset = bytes.len() as u32;
    bytes.extend_from_slice(data);
    wit::Span { offset, length: data.len() as u32 }
}

/// The host form of a call's result. An emit whose spans fall outside the result's lists
/// becomes a failure of its origin (a plugin bug must not lose the record).
pub(super) fn processed(result: wit::BatchResult) -> Processed {
    let wit::BatchResult { emitted, mut failures, bytes, headers } = result;
    let mut out = Processed { emitted: Vec::with_capacity(emitted.len()), failures: Vec::new() };
    for emit in emitted {
        let content = match emit.content {
            wit::Content::Origin => Some(Content::Origin),
            wit::Content::Value(None) => Some(Content::Value(None)),
            wit::Content::Value(Some(span)) => slice(&bytes, span).map(|value| Content::Value(Some(value.to_vec()))),
            wit::Content::Record(record) => owned(&record, &bytes, &headers).map(Content::Record),
        };
        match content {
            Some(content) => out.emitted.push(Emitted { port: emit.port, origin: emit.origin, content }),
            None => failures.push(Failure {
                index: emit.origin,
                reason: "the plugin emitted a record whose spans lie outside its result's bytes or headers".into(),
            }),
        }
    }
    out.failures = failures;
    out
}

fn slice(bytes: &[u8], span: wit::Span) -> Option<&[u8]> {
    bytes.get(span.offset as usize..(span.offset as usize).checked_add(span.length as usize)?)
}

fn owned(record: &wit::Record, bytes: &[u8], headers: &[wit::Header]) -> Option<Record> {
    let optional = |span: Option<wit::Span>| match span {
        None => Some(None),
        Some(span) => slice(bytes, span).map(|data| Some(data.to_vec())),
    };
    let span = record.headers;
    let record_headers = headers.get(span.offset as usize..(span.offset as usize).checked_add(span.length as usize)?)?;
    Some(Record {
        key: optional(record.key)?,
        value: optional(record.value)?,
        headers: record_headers
            .iter()
            .map(|header| Some(Header { key: header.key.clone(), value: optional(header.value)? }))
            .collect::<Option<_>>()?,
        timestamp: record.timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &[u8], value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> Record {
        Record {
            key: Some(key.to_vec()),
            value: value.map(<[u8]>::to_vec),
            headers: headers.iter().map(|(k, v)| Header { key: k.to_string(), value: v.map(<[u8]>::to_vec) }).collect(),
            timestamp: Some(7),
        }
    }

    #[test]
    fn a_batch_round_trips_through_its_column_form() {
        let records = [
            record(b"k1", Some(b"v1"), &[("h", Some(b"x")), ("n", None)]),
            record(b"", None, &[]),
            record(b"k3", Some(b""), &[("h", Some(b"yy"))]),
        ];
        let mut batch = wit::Batch { records: Vec::new(), bytes: Vec::new(), headers: Vec::new() };
        fill(&mut batch, &records);
        // Read back the way a guest does: spans of the buffers.
        let result = wit::BatchResult {
            emitted: (0..3).map(|i| wit::Emit { port: 0, origin: i, content: wit::Content::Record(batch.records[i as usize]) }).collect(),
            failures: Vec::new(),
            bytes: batch.bytes.clone(),
            headers: batch.headers.clone(),
        };
        let processed = processed(result);
        let back: Vec<Record> = processed.records(&records).into_iter().map(|(_, _, r)| r).collect();
        assert_eq!(back, records);
    }

    #[test]
    fn emits_resolve_against_their_origins_and_bad_spans_fail_the_origin() {
        let records = [record(b"a", Some(b"1"), &[("h", None)]), record(b"b", Some(b"2"), &[])];
        let result = wit::BatchResult {
            emitted: vec![
                wit::Emit { port: 0, origin: 1, content: wit::Content::Origin },
                wit::Emit { port: 1, origin: 0, content: wit::Content::Value(Some(wit::Span { offset: 1, length: 2 })) },
                wit::Emit { port: 0, origin: 0, content: wit::Content::Value(None) },
                wit::Emit { port: 0, origin: 1, content: wit::Content::Value(Some(wit::Span { offset: 2, length: 2 })) },
            ],
            failures: vec![Failure { index: 0, reason: "no".into() }],
            bytes: b"xyz".to_vec(),
            headers: Vec::new(),
        };
        let processed = processed(result);
        let resolved = processed.records(&records);
        assert_eq!(
            resolved,
            [
                (0, 1, records[1].clone()),
                (1, 0, Record { value: Some(b"yz".to_vec()), ..records[0].clone() }),
                (0, 0, Record { value: None, ..records[0].clone() }),
            ]
        );
        let failures: Vec<_> = processed.failures.iter().map(|f| f.index).collect();
        assert_eq!(failures, [0, 1]);
    }
}
