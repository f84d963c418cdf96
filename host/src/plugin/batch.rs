//! Records on the host side of the boundary, and the column-wise form they take in a `process`
//! call (see `batch` in `wit/processor.wit`): every key and value of a batch in one byte buffer,
//! and one list of numbers per record attribute. Building it is a few appends per record; the
//! guest then receives the whole batch in a handful of copies.

use meshhost_sdk::batch::{NONE, ORIGIN};

use super::bindings::meshhost::processor::types as wit;
/// Records between stages are the SDK's owned records: the same shape on both sides.
pub use meshhost_sdk::{Header, Record};
pub use wit::Failure;

/// What a `process` call returned.
#[derive(Debug, Default)]
pub struct Processed {
    /// Records emitted, in order.
    pub emitted: Vec<Emitted>,
    /// Records that failed, including the origins of emitted records that could not be read.
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
    /// A record of its own (boxed: the common emits stay small).
    Record(Box<Record>),
}

impl Processed {
    /// Every emitted record as an owned `(port, origin, record)`, unchanged origins copied from
    /// `inputs` (the records of the call); an emit whose origin is not in `inputs` is left out.
    /// For tools and tests; the run loop moves records instead.
    pub fn records(&self, inputs: &[Record]) -> Vec<(u32, u32, Record)> {
        self.emitted
            .iter()
            .filter_map(|emit| {
                let origin = inputs.get(emit.origin as usize)?;
                let record = match &emit.content {
                    Content::Origin => origin.clone(),
                    Content::Value(value) => Record { value: value.clone(), ..origin.clone() },
                    Content::Record(record) => (**record).clone(),
                };
                Some((emit.port, emit.origin, record))
            })
            .collect()
    }
}

/// An empty batch, to fill.
pub(super) fn empty() -> wit::Batch {
    wit::Batch {
        bytes: Vec::new(),
        key_lengths: Vec::new(),
        value_lengths: Vec::new(),
        timestamps: Vec::new(),
        header_counts: Vec::new(),
        headers: Vec::new(),
    }
}

/// Lay `records` out column-wise in `batch`, reusing its buffers.
pub(super) fn fill(batch: &mut wit::Batch, records: &[Record]) {
    batch.bytes.clear();
    batch.key_lengths.clear();
    batch.value_lengths.clear();
    batch.timestamps.clear();
    batch.header_counts.clear();
    batch.headers.clear();
    for record in records {
        batch.key_lengths.push(append(&mut batch.bytes, record.key.as_deref()));
        batch.value_lengths.push(append(&mut batch.bytes, record.value.as_deref()));
        // Kafka has no timestamps before 1970: -1 is its own "none".
        batch.timestamps.push(record.timestamp.filter(|&t| t >= 0).unwrap_or(NONE.into()));
        batch.header_counts.push(record.headers.len() as i32);
        batch.headers.extend(record.headers.iter().map(|h| wit::Header { key: h.key.clone(), value: h.value.clone() }));
    }
}

fn append(bytes: &mut Vec<u8>, part: Option<&[u8]>) -> i32 {
    match part {
        Some(part) => {
            bytes.extend_from_slice(part);
            part.len() as i32
        }
        None => NONE,
    }
}

/// The host form of a call's result, the parts marked as the origin's taken from `inputs` (the
/// call's records). Malformed columns (see [`check_result_columns`]) fail every record of the
/// call, and an emit derived from a record outside the call becomes a failure naming that
/// index, so a plugin bug loses no record.
pub(super) fn processed(result: wit::BatchResult, inputs: &[Record]) -> Processed {
    let wit::BatchResult { ports, origins, emitted, mut failures } = result;
    let count = ports.len();
    if let Err(problem) = check_result_columns(count, &origins, &emitted) {
        let reason = format!("the plugin returned a malformed result ({problem})");
        return Processed {
            emitted: Vec::new(),
            failures: (0..inputs.len() as u32).map(|index| Failure { index, reason: reason.clone() }).collect(),
        };
    }
    let mut out = Processed { emitted: Vec::with_capacity(count), failures: Vec::new() };
    let mut reader = Reader { bytes: &emitted.bytes, at: 0, headers: &emitted.headers, header_at: 0 };
    for i in 0..count {
        let origin = inputs.get(origins[i] as usize);
        // Read the parts even for an emit that is then refused, so the next one is read from
        // the right place.
        let content = reader.content(&emitted, i, origin).filter(|_| origin.is_some());
        match content {
            Some(content) => out.emitted.push(Emitted { port: ports[i], origin: origins[i], content }),
            None => failures.push(Failure {
                index: origins[i],
                reason: "the plugin emitted a record derived from a record outside the batch".into(),
            }),
        }
    }
    out.failures = failures;
    out
}

/// Every column as long as `ports`; every length -2 (the origin's), -1 (none) or a length;
/// timestamps -2, -1 or a time; and the lengths adding up to exactly the bytes and headers
/// given. Checked before reading, so a bad entry cannot shift where later records are read.
fn check_result_columns(count: usize, origins: &[u32], emitted: &wit::Batch) -> Result<(), &'static str> {
    let columns = [
        origins.len(),
        emitted.key_lengths.len(),
        emitted.value_lengths.len(),
        emitted.timestamps.len(),
        emitted.header_counts.len(),
    ];
    if columns.iter().any(|&n| n != count) {
        return Err("columns of different lengths");
    }
    let lengths = emitted.key_lengths.iter().chain(&emitted.value_lengths);
    if lengths.clone().any(|&n| n < ORIGIN) || emitted.header_counts.iter().any(|&n| n < ORIGIN || n == NONE) {
        return Err("a negative length other than -1 or -2");
    }
    if emitted.timestamps.iter().any(|&t| t < ORIGIN.into()) {
        return Err("a negative timestamp other than -1 or -2");
    }
    let sum = |values: &mut dyn Iterator<Item = &i32>| values.map(|&n| n.max(0) as u64).sum::<u64>();
    if sum(&mut lengths.into_iter()) != emitted.bytes.len() as u64 {
        return Err("key and value lengths that do not add up to its bytes");
    }
    if sum(&mut emitted.header_counts.iter()) != emitted.headers.len() as u64 {
        return Err("header counts that do not add up to its headers");
    }
    Ok(())
}

/// Walks a result's bytes and headers, emitted record by emitted record.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    headers: &'a [wit::Header],
    header_at: usize,
}

impl Reader<'_> {
    fn content(&mut self, emitted: &wit::Batch, i: usize, origin: Option<&Record>) -> Option<Content> {
        let key = self.part(emitted.key_lengths[i])?;
        let value = self.part(emitted.value_lengths[i])?;
        let headers = match emitted.header_counts[i] {
            ORIGIN => Part::Origin,
            n if n >= 0 => {
                let headers = self.headers.get(self.header_at..self.header_at + n as usize)?;
                self.header_at += n as usize;
                Part::Own(headers.iter().map(|h| Header { key: h.key.clone(), value: h.value.clone() }).collect())
            }
            _ => return None,
        };
        let timestamp = match emitted.timestamps[i] {
            t if t == i64::from(ORIGIN) => Part::Origin,
            t if t == i64::from(NONE) => Part::Own(None),
            t if t >= 0 => Part::Own(Some(t)),
            _ => return None,
        };
        Some(match (key, value, headers, timestamp) {
            (Part::Origin, Part::Origin, Part::Origin, Part::Origin) => Content::Origin,
            (Part::Origin, Part::Own(value), Part::Origin, Part::Origin) => Content::Value(value),
            (key, value, headers, timestamp) => {
                let origin = || origin.ok_or(());
                Content::Record(Box::new(Record {
                    key: key.or_else(|| origin().map(|o| o.key.clone())).ok()?,
                    value: value.or_else(|| origin().map(|o| o.value.clone())).ok()?,
                    headers: headers.or_else(|| origin().map(|o| o.headers.clone())).ok()?,
                    timestamp: timestamp.or_else(|| origin().map(|o| o.timestamp)).ok()?,
                }))
            }
        })
    }

    /// The next key or value of length `length` (-1: none, -2: the origin's).
    fn part(&mut self, length: i32) -> Option<Part<Option<Vec<u8>>>> {
        match length {
            ORIGIN => Some(Part::Origin),
            NONE => Some(Part::Own(None)),
            n if n >= 0 => {
                let part = self.bytes.get(self.at..self.at + n as usize)?;
                self.at += n as usize;
                Some(Part::Own(Some(part.to_vec())))
            }
            _ => None,
        }
    }
}

/// A part of an emitted record: its own, or its origin's.
enum Part<T> {
    Origin,
    Own(T),
}

impl<T> Part<T> {
    fn or_else(self, origin: impl FnOnce() -> Result<T, ()>) -> Result<T, ()> {
        match self {
            Part::Own(value) => Ok(value),
            Part::Origin => origin(),
        }
    }
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

    fn result(ports: Vec<u32>, origins: Vec<u32>, emitted: wit::Batch) -> wit::BatchResult {
        wit::BatchResult { ports, origins, emitted, failures: vec![Failure { index: 1, reason: "no".into() }] }
    }

    #[test]
    fn a_batch_round_trips_through_its_column_form() {
        let records = [
            record(b"k1", Some(b"v1"), &[("h", Some(b"x")), ("n", None)]),
            Record { key: None, value: None, headers: vec![], timestamp: None },
            record(b"", Some(b""), &[("h", Some(b"yy"))]),
        ];
        let mut batch = empty();
        fill(&mut batch, &records);
        // Emitted as records of their own, they come back as they were.
        let processed = processed(result(vec![0, 0, 0], vec![0, 1, 2], batch), &records);
        let back: Vec<Record> = processed.records(&records).into_iter().map(|(_, _, r)| r).collect();
        assert_eq!(back, records);
    }

    #[test]
    fn parts_marked_as_the_origins_come_from_it() {
        let records = [record(b"a", Some(b"1"), &[("h", None)]), record(b"b", Some(b"2"), &[])];
        let emitted = wit::Batch {
            bytes: b"xyzK".to_vec(),
            key_lengths: vec![ORIGIN, ORIGIN, ORIGIN, 1, ORIGIN],
            value_lengths: vec![ORIGIN, 2, NONE, ORIGIN, 1],
            timestamps: vec![-2, -2, -2, -1, -2],
            header_counts: vec![ORIGIN, ORIGIN, ORIGIN, 0, ORIGIN],
            headers: Vec::new(),
        };
        // The last emit derives from a record the call did not have: refused, and reading goes on.
        let processed = processed(result(vec![0, 1, 0, 2, 0], vec![1, 0, 0, 1, 7], emitted), &records);
        assert!(matches!(processed.emitted[0].content, Content::Origin));
        assert!(matches!(processed.emitted[1].content, Content::Value(Some(ref v)) if v == b"xy"));
        assert_eq!(
            processed.records(&records),
            [
                (0, 1, records[1].clone()),
                (1, 0, Record { value: Some(b"xy".to_vec()), ..records[0].clone() }),
                (0, 0, Record { value: None, ..records[0].clone() }),
                // its own key (`z`) and no timestamp; the origin's value and headers
                (2, 1, Record { key: Some(b"z".to_vec()), timestamp: None, ..records[1].clone() }),
            ]
        );
        let failures: Vec<_> = processed.failures.iter().map(|f| f.index).collect();
        assert_eq!(failures, [1, 7], "the plugin's own failure, then the refused emit");
    }

    #[test]
    fn malformed_columns_fail_the_whole_batch() {
        let records = [record(b"a", Some(b"1"), &[]), record(b"b", Some(b"2"), &[])];
        let column = |key_lengths: Vec<i32>, bytes: &[u8], timestamps: Vec<i64>, header_counts: Vec<i32>| wit::Batch {
            bytes: bytes.to_vec(),
            value_lengths: vec![ORIGIN; key_lengths.len()],
            key_lengths,
            timestamps,
            header_counts,
            headers: Vec::new(),
        };
        let cases = [
            ("a length of -3", column(vec![-3], b"", vec![-2], vec![-2])),
            ("lengths past the bytes", column(vec![9], b"xy", vec![-2], vec![-2])),
            ("bytes left over", column(vec![1], b"xy", vec![-2], vec![-2])),
            ("a header count of -1", column(vec![-2], b"", vec![-2], vec![-1])),
            ("header counts past the headers", column(vec![-2], b"", vec![-2], vec![1])),
            ("a timestamp of -5", column(vec![-2], b"", vec![-5], vec![-2])),
        ];
        for (what, emitted) in cases {
            let processed = processed(result(vec![0], vec![0], emitted), &records);
            assert!(processed.emitted.is_empty(), "{what}");
            assert_eq!(processed.failures.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 1], "{what}");
            assert!(
                processed.failures[0].reason.contains("malformed result"),
                "{what}: {}",
                processed.failures[0].reason
            );
        }
    }

    #[test]
    fn columns_of_different_lengths_fail_the_whole_batch() {
        let records = [record(b"a", Some(b"1"), &[]), record(b"b", Some(b"2"), &[])];
        let processed = processed(result(vec![0], vec![], empty()), &records);
        assert!(processed.emitted.is_empty());
        assert_eq!(processed.failures.iter().map(|f| f.index).collect::<Vec<_>>(), [0, 1]);
    }
}
