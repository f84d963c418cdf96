//! `meshhost tap`: a live sample of the records crossing an edge of a running pipeline, as JSON
//! lines decoded with the edge's schema. The executor asks [`Taps::wants`] per record, which is
//! one atomic load while nobody taps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Mutex;

use super::{Edge, EdgeObserver};
use crate::plugin::batch::Record;

/// Records a tap may have waiting before newer ones are dropped.
const TAP_BUFFER: usize = 1024;

pub struct Taps {
    edges: Vec<Edge>,
    /// How many subscribers there are: zero makes [`Taps::wants`] one load.
    tapping: AtomicUsize,
    subscribers: Mutex<Vec<(usize, SyncSender<String>)>>,
}

impl Taps {
    pub fn new(edges: Vec<Edge>) -> Taps {
        Taps { edges, tapping: AtomicUsize::new(0), subscribers: Mutex::new(Vec::new()) }
    }

    /// Every edge's name, for people.
    pub fn names(&self) -> Vec<String> {
        self.edges.iter().flat_map(|e| e.names.iter().cloned()).collect()
    }

    /// Start receiving the records of the edge named `name`, as JSON lines.
    pub fn subscribe(&self, name: &str) -> Result<Receiver<String>, String> {
        let edge = self
            .edges
            .iter()
            .position(|e| e.names.iter().any(|n| n == name))
            .ok_or_else(|| format!("no edge {name:?}; the edges are: {}", self.names().join(", ")))?;
        let (sender, receiver) = sync_channel(TAP_BUFFER);
        let mut subscribers = self.subscribers.lock().expect("never poisoned");
        subscribers.push((edge, sender));
        self.tapping.store(subscribers.len(), Ordering::Relaxed);
        Ok(receiver)
    }
}

impl EdgeObserver for Taps {
    fn wants(&self, edge: usize) -> bool {
        self.tapping.load(Ordering::Relaxed) > 0
            && self.subscribers.lock().expect("never poisoned").iter().any(|(e, _)| *e == edge)
    }

    fn record(&self, edge: usize, record: &Record) {
        let edge_of = &self.edges[edge];
        let line = json_line("edge", &edge_of.names[0], &edge_of.schema, record);
        let mut subscribers = self.subscribers.lock().expect("never poisoned");
        subscribers.retain(|(e, sender)| {
            *e != edge || !matches!(sender.try_send(line.clone()), Err(TrySendError::Disconnected(_)))
        });
        self.tapping.store(subscribers.len(), Ordering::Relaxed);
    }
}

/// `{"<what>": name, "key": ..., "value": ..., "timestamp": ...}` (what: `edge`, `sink`), the
/// value decoded with `schema`.
pub fn json_line(what: &str, name: &str, schema: &meshhost_avro::Schema, record: &Record) -> String {
    let value = match &record.value {
        None => serde_json::Value::Null,
        Some(datum) => meshhost_avro::datum_to_json(schema, datum)
            .unwrap_or_else(|e| serde_json::json!({"undecodable": e.to_string()})),
    };
    let mut line = serde_json::Map::new();
    line.insert(what.to_string(), name.into());
    line.insert("key".into(), record.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).into());
    line.insert("value".into(), value);
    line.insert("timestamp".into(), record.timestamp.into());
    serde_json::Value::Object(line).to_string()
}
