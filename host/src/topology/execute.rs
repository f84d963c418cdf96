//! The executor: one batch of input records through the DAG, in memory.
//!
//! It decodes each source value into its edge's schema, routes records to processors in
//! processing order, calls each processor once per input port (once per partition for a
//! stateful one), retries record by record after a trap so that only the records that trap
//! fail, checks outputs against their declared schemas, transcodes for JSON and Python processors, and
//! encodes sink values. It knows nothing of where records come from or go to: what leaves the
//! DAG — a record for a sink, a dead letter, a state write to make durable — is reported to an
//! [`Effects`]. The Kafka run loop, `meshhost plugin test` and the stage benchmark all drive
//! this one executor, so the rules are the same everywhere.

use meshhost_avro::MarshalWriter;

use super::failure::Failure;
use super::{ProcessorNode, Target, Topology};
use crate::codec::{self, DecodeError};
use crate::observe::{EdgeObserver, ExecutorCounts};
use crate::plugin::batch::{Content, Processed, Record};
use crate::plugin::bindings::ValueFormat;
use crate::source::InputRecord;
use crate::state::{StateError, StateWrites};

/// What leaves the DAG while a batch runs. `origin` is always the index, in the batch, of the
/// input record an output or failure derives from.
pub trait Effects {
    /// Stops the batch: the runtime decides what happens next (the Kafka run loop stops
    /// without committing past the batch).
    type Error;

    /// Write `record` to sink `sink` (index in [`Topology::sinks`]); its value is already in the
    /// sink's format.
    fn send(&mut self, sink: usize, origin: usize, record: Record) -> Result<(), Self::Error>;

    /// Input record `origin` failed: it goes to dead letters as it was read.
    fn dead_letter(&mut self, origin: usize, failure: Failure) -> Result<(), Self::Error>;

    /// A call of processor `processor` (index in [`Topology::processors`]) wrote `writes` to
    /// partition `partition` of its state; they are already in its local store.
    fn state_written(&mut self, processor: usize, partition: u32, writes: &StateWrites) -> Result<(), Self::Error>;
}

/// Why a batch stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    /// An effect failed.
    #[error(transparent)]
    Effect(E),
    /// The schema registry could not say what a source's record is.
    #[error("source {source_id}: cannot decode its records")]
    SchemaRegistry {
        source_id: String,
        #[source]
        source: crate::schema_registry::RegistryError,
    },
    /// A source's record has a writer schema its reader schema cannot read, and the source
    /// says stop (`on_schema_change: stop`).
    #[error(
        "source {source_id}: a breaking schema change upstream: {error}; stopped before it (on_schema_change: stop)"
    )]
    SchemaChange { source_id: String, error: crate::codec::CodecError },
    /// A processor's local state store failed.
    #[error("cannot write the state of processor {processor}")]
    State {
        processor: String,
        #[source]
        source: StateError,
    },
}

/// Counts since the executor was built.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorStats {
    /// Processor outputs checked against their port's schema. A record a processor passes
    /// through unchanged onto a port of its input's schema was checked when it came in, and
    /// is not checked again.
    pub outputs_validated: u64,
    /// Calls into processors, retries included.
    pub calls: u64,
}

/// Runs batches through a planned topology.
pub struct Executor {
    topology: Topology,
    stats: ExecutorStats,
    counts: ExecutorCounts,
    observer: Option<std::sync::Arc<dyn EdgeObserver>>,
    /// Per processor: the edge number of its first output port.
    first_output_edge: Vec<usize>,
    /// Per processor, per input port, per output port: whether that output's schema is the
    /// input's (a record passed through unchanged needs no new check).
    same_schema: Vec<Vec<Vec<bool>>>,
    /// Per processor that takes `python-marshal` values, per input port: how its datums are
    /// written (empty for the other processors).
    marshal_writers: Vec<Vec<MarshalWriter>>,
}

/// The records of one `process` call, with the index in the batch of the input record each
/// derives from and, for a processor that takes JSON or marshal values, each one's own datum.
#[derive(Default)]
struct Call {
    records: Vec<Record>,
    origins: Vec<usize>,
    datums: Vec<Option<Vec<u8>>>,
}

/// A record on its way through the DAG, with the input record it derives from.
struct Item {
    origin: usize,
    record: Record,
}

impl Executor {
    pub fn new(topology: Topology) -> Executor {
        let same_schema = topology
            .processors
            .iter()
            .map(|p| {
                p.inputs.iter().map(|input| p.outputs.iter().map(|port| port.schema.same_as(input)).collect()).collect()
            })
            .collect();
        let marshal_writers = topology
            .processors
            .iter()
            .map(|p| match p.format {
                ValueFormat::PythonMarshal => p.inputs.iter().map(|input| MarshalWriter::new(&input.parsed)).collect(),
                ValueFormat::Avro | ValueFormat::Json => Vec::new(),
            })
            .collect();
        let counts = ExecutorCounts {
            source_received: vec![0; topology.sources.len()],
            processor_received: topology.processors.iter().map(|p| vec![0; p.inputs.len()]).collect(),
            processor_sent: topology.processors.iter().map(|p| vec![0; p.outputs.len()]).collect(),
            processor_discarded: vec![0; topology.processors.len()],
            processor_traps: vec![0; topology.processors.len()],
            processor_call_seconds: vec![0.0; topology.processors.len()],
            sink_received: vec![0; topology.sinks.len()],
        };
        let mut first_output_edge = Vec::new();
        let mut next = topology.sources.len();
        for processor in &topology.processors {
            first_output_edge.push(next);
            next += processor.outputs.len();
        }
        Executor {
            topology,
            stats: ExecutorStats::default(),
            counts,
            observer: None,
            first_output_edge,
            same_schema,
            marshal_writers,
        }
    }

    /// Show the records crossing edges to `observer`.
    pub fn observe_edges(&mut self, observer: std::sync::Arc<dyn EdgeObserver>) {
        self.observer = Some(observer);
    }

    fn observe(&self, edge: usize, record: &Record) {
        if let Some(observer) = &self.observer {
            if observer.wants(edge) {
                observer.record(edge, record);
            }
        }
    }

    /// Records counted per node so far.
    pub fn counts(&self) -> &ExecutorCounts {
        &self.counts
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// For attaching state stores before the first batch.
    pub fn topology_mut(&mut self) -> &mut Topology {
        &mut self.topology
    }

    pub fn stats(&self) -> ExecutorStats {
        self.stats
    }

    /// Push one batch through the DAG, reporting outputs, failures and state writes to `effects`.
    pub fn run<R: InputRecord, E: Effects>(
        &mut self,
        batch: &[R],
        effects: &mut E,
    ) -> Result<(), ExecuteError<E::Error>> {
        let mut processor_inbox: Vec<Vec<Vec<Item>>> =
            self.topology.processors.iter().map(|p| p.inputs.iter().map(|_| Vec::new()).collect()).collect();
        let mut sink_inbox: Vec<Vec<Item>> = self.topology.sinks.iter().map(|_| Vec::new()).collect();

        for (origin, input) in batch.iter().enumerate() {
            self.counts.source_received[input.source()] += 1;
            let source = &mut self.topology.sources[input.source()];
            if let Some(reason) = input.failure() {
                effects.dead_letter(origin, Failure::decode(reason.to_string())).map_err(ExecuteError::Effect)?;
                continue;
            }
            let value = match input.value() {
                None => None, // a tombstone flows as is
                Some(bytes) => match source.decoder.decode(&source.schema.parsed, bytes) {
                    Ok(datum) => Some(datum),
                    Err(DecodeError::Record(error)) => {
                        effects
                            .dead_letter(origin, Failure::decode(error.to_string()))
                            .map_err(ExecuteError::Effect)?;
                        continue;
                    }
                    Err(DecodeError::Registry(error)) => {
                        return Err(ExecuteError::SchemaRegistry { source_id: source.id.clone(), source: error })
                    }
                    Err(DecodeError::SchemaChange(error)) => {
                        return Err(ExecuteError::SchemaChange { source_id: source.id.clone(), error })
                    }
                },
            };
            let record = Record {
                key: input.key().map(<[u8]>::to_vec),
                value,
                headers: input.headers(),
                timestamp: input.timestamp(),
            };
            self.observe(input.source(), &record);
            let targets = &self.topology.sources[input.source()].targets;
            route(targets, Item { origin, record }, &mut processor_inbox, &mut sink_inbox);
        }

        for index in 0..self.topology.processors.len() {
            let inboxes = std::mem::take(&mut processor_inbox[index]);
            for (input, items) in inboxes.into_iter().enumerate() {
                if items.is_empty() {
                    continue;
                }
                self.counts.processor_received[index][input] += items.len() as u64;
                let emitted = self.run_processor(index, input as u32, items, batch, effects)?;
                for (port, item) in emitted {
                    self.counts.processor_sent[index][port] += 1;
                    self.observe(self.first_output_edge[index] + port, &item.record);
                    route(
                        &self.topology.processors[index].outputs[port].targets,
                        item,
                        &mut processor_inbox,
                        &mut sink_inbox,
                    );
                }
            }
        }

        for (index, items) in sink_inbox.into_iter().enumerate() {
            self.counts.sink_received[index] += items.len() as u64;
            let sink = &self.topology.sinks[index];
            for mut item in items {
                if let Some(datum) = item.record.value.take() {
                    match sink.encoder.encode(&sink.schema.parsed, datum) {
                        Ok(value) => item.record.value = Some(value),
                        Err(error) => {
                            let failure = Failure::encode(format!("sink {}: {error}", sink.id));
                            effects.dead_letter(item.origin, failure).map_err(ExecuteError::Effect)?;
                            continue;
                        }
                    }
                }
                effects.send(index, item.origin, item.record).map_err(ExecuteError::Effect)?;
            }
        }
        Ok(())
    }

    /// Call processor `index` with the items of one input port; returns (output port, item)
    /// pairs. Failures, traps and invalid outputs go to `effects` as dead letters.
    fn run_processor<R: InputRecord, E: Effects>(
        &mut self,
        index: usize,
        input: u32,
        items: Vec<Item>,
        batch: &[R],
        effects: &mut E,
    ) -> Result<Vec<(usize, Item)>, ExecuteError<E::Error>> {
        let node = &self.topology.processors[index];
        let schema = &node.inputs[input as usize].parsed;
        let mut origins = Vec::with_capacity(items.len());
        let mut records = Vec::with_capacity(items.len());
        // For a processor that takes JSON or marshal values: each record's own datum, which a
        // record it emits unchanged takes back (no transcoding back, nothing lost).
        let mut datums = Vec::new();
        for item in items {
            let mut record = item.record;
            if let Some(datum) = &record.value {
                let transcoded = match node.format {
                    ValueFormat::Avro => None,
                    ValueFormat::Json => Some(codec::avro_to_json(schema, datum)),
                    ValueFormat::PythonMarshal => {
                        Some(codec::avro_to_marshal(&self.marshal_writers[index][input as usize], schema, datum))
                    }
                };
                match transcoded {
                    None => {}
                    Some(Ok(value)) => datums.push(record.value.replace(value)),
                    Some(Err(error)) => {
                        effects
                            .dead_letter(item.origin, Failure::transcode(&node.id, error.to_string()))
                            .map_err(ExecuteError::Effect)?;
                        continue;
                    }
                }
            } else if node.format != ValueFormat::Avro {
                datums.push(None);
            }
            origins.push(item.origin);
            records.push(record);
        }
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // A stateful processor's state is per partition, so each call gets one partition's records.
        let groups: Vec<(u32, Call)> = if node.instance.is_stateful() {
            let mut by_partition: std::collections::BTreeMap<u32, Call> = Default::default();
            let mut datums = datums.into_iter();
            for (record, origin) in records.into_iter().zip(origins) {
                let group = by_partition.entry(batch[origin].partition() as u32).or_default();
                group.records.push(record);
                group.origins.push(origin);
                group.datums.extend(datums.next());
            }
            by_partition.into_iter().collect()
        } else {
            vec![(0, Call { records, origins, datums })]
        };
        let mut emitted = Vec::new();
        for (partition, call) in groups {
            emitted.extend(self.call_processor(index, partition, input, call, effects)?);
        }
        Ok(emitted)
    }

    /// One `process` call (retried record by record after a trap), its state writes applied
    /// and reported, and its results checked.
    fn call_processor<E: Effects>(
        &mut self,
        index: usize,
        partition: u32,
        input: u32,
        call: Call,
        effects: &mut E,
    ) -> Result<Vec<(usize, Item)>, ExecuteError<E::Error>> {
        let Call { mut records, origins, mut datums } = call;
        let node = &mut self.topology.processors[index];
        // (index in `records` of the call's first record, how many it had, what it returned)
        let mut results: Vec<(usize, usize, Processed)> = Vec::new();
        self.stats.calls += 1;
        let started = std::time::Instant::now();
        let outcome = node.instance.process(partition, input, &records);
        self.counts.processor_call_seconds[index] += started.elapsed().as_secs_f64();
        if outcome.is_err() {
            self.counts.processor_traps[index] += 1;
        }
        match outcome {
            Ok((result, writes)) => {
                persist_state(node, index, partition, writes, effects)?;
                results.push((0, records.len(), result));
            }
            // The instance was replaced. Retry the records one by one, so that only the ones
            // that make the plugin trap fail.
            Err(trap) if records.len() == 1 => effects
                .dead_letter(origins[0], Failure::trapped(&node.id, trap.to_string()))
                .map_err(ExecuteError::Effect)?,
            Err(_) => {
                for (i, record) in records.iter().enumerate() {
                    self.stats.calls += 1;
                    let started = std::time::Instant::now();
                    let outcome = node.instance.process(partition, input, std::slice::from_ref(record));
                    self.counts.processor_call_seconds[index] += started.elapsed().as_secs_f64();
                    if outcome.is_err() {
                        self.counts.processor_traps[index] += 1;
                    }
                    match outcome {
                        Ok((result, writes)) => {
                            persist_state(node, index, partition, writes, effects)?;
                            results.push((i, 1, result));
                        }
                        Err(trap) => effects
                            .dead_letter(origins[i], Failure::trapped(&node.id, trap.to_string()))
                            .map_err(ExecuteError::Effect)?,
                    }
                }
            }
        }

        // Records of a successful call that nothing was emitted from and nothing failed: dropped
        // on purpose (a filter's).
        let mut answered = vec![false; records.len()];
        for (first, len, result) in &results {
            let indices = result.emitted.iter().map(|e| e.origin).chain(result.failures.iter().map(|f| f.index));
            for i in indices.filter(|i| (*i as usize) < *len) {
                answered[first + i as usize] = true;
            }
        }
        let called: usize = results.iter().map(|(_, len, _)| len).sum();
        let answered_count = answered.iter().filter(|a| **a).count();
        self.counts.processor_discarded[index] += called.saturating_sub(answered_count) as u64;

        // An emit that reuses its origin takes the input record; only an origin used more than
        // once (one record out on two ports) is copied.
        let mut uses = vec![0u32; records.len()];
        for (first, len, result) in &results {
            for emit in result.emitted.iter().filter(|emit| !matches!(emit.content, Content::Record(_))) {
                if (emit.origin as usize) < *len {
                    uses[first + emit.origin as usize] += 1;
                }
            }
        }
        // The input record; with `own_datum`, with the datum it had before it was transcoded
        // for the processor.
        let mut take_input = |index: usize, own_datum: bool| {
            uses[index] -= 1;
            let last = uses[index] == 0;
            let mut record = if last { std::mem::take(&mut records[index]) } else { records[index].clone() };
            if let Some(datum) = datums.get_mut(index).filter(|_| own_datum) {
                record.value = if last { datum.take() } else { datum.clone() };
            }
            record
        };

        let same_schema = &self.same_schema[index][input as usize];
        let mut emitted = Vec::new();
        for (first, len, result) in results {
            for failure in result.failures {
                match origins.get(first + failure.index as usize).filter(|_| (failure.index as usize) < len) {
                    Some(&origin) => effects
                        .dead_letter(origin, Failure::rejected(&node.id, failure.reason))
                        .map_err(ExecuteError::Effect)?,
                    None => {
                        tracing::error!(processor = %node.id, index = failure.index, reason = %failure.reason, "plugin reported a failure for a record it was not given")
                    }
                }
            }
            for emit in result.emitted {
                let position = first + emit.origin as usize;
                let Some(&origin) = origins.get(position).filter(|_| (emit.origin as usize) < len) else {
                    tracing::error!(processor = %node.id, origin = emit.origin, "plugin emitted a record with an origin outside the batch; dropped");
                    continue;
                };
                let Some(port) = node.outputs.get(emit.port as usize) else {
                    let error =
                        format!("plugin emitted to output port {} but declared {}", emit.port, node.outputs.len());
                    effects.dead_letter(origin, Failure::misrouted(&node.id, error)).map_err(ExecuteError::Effect)?;
                    continue;
                };
                // A record emitted unchanged on a port of its input's schema is its input datum,
                // whatever the processor's format: nothing to check or transcode back.
                let checked = matches!(emit.content, Content::Origin) && same_schema[emit.port as usize];
                let mut record = match emit.content {
                    Content::Origin => take_input(position, checked),
                    Content::Value(value) => Record { value, ..take_input(position, false) },
                    Content::Record(record) => *record,
                };
                if let (Some(value), false) = (&record.value, checked) {
                    self.stats.outputs_validated += 1;
                    let schema = &port.schema.parsed;
                    let valid = match node.format {
                        ValueFormat::Json => codec::json_to_avro(schema, value).map(Some).map_err(|e| e.to_string()),
                        ValueFormat::PythonMarshal => {
                            codec::marshal_to_avro(schema, value).map(Some).map_err(|e| e.to_string())
                        }
                        ValueFormat::Avro => {
                            meshhost_avro::validate(schema, value).map(|_| None).map_err(|e| e.to_string())
                        }
                    };
                    match valid {
                        Ok(Some(datum)) => record.value = Some(datum),
                        Ok(None) => {}
                        Err(error) => {
                            let error =
                                format!("output on {:?} does not match its declared schema: {error}", port.name);
                            effects
                                .dead_letter(origin, Failure::invalid_output(&node.id, error))
                                .map_err(ExecuteError::Effect)?;
                            continue;
                        }
                    }
                }
                emitted.push((emit.port as usize, Item { origin, record }));
            }
        }
        Ok(emitted)
    }
}

/// Apply a successful call's state writes to the processor's local store, then report them
/// (the Kafka runtime mirrors them to the changelog).
fn persist_state<E: Effects>(
    node: &ProcessorNode,
    index: usize,
    partition: u32,
    writes: StateWrites,
    effects: &mut E,
) -> Result<(), ExecuteError<E::Error>> {
    let Some(store) = node.instance.attached_state() else { return Ok(()) };
    if writes.is_empty() {
        return Ok(());
    }
    store.apply(partition, &writes).map_err(|source| ExecuteError::State { processor: node.id.clone(), source })?;
    effects.state_written(index, partition, &writes).map_err(ExecuteError::Effect)
}

/// Hand an item to every target: copies for all but the last, which takes it.
fn route(targets: &[Target], item: Item, processor_inbox: &mut [Vec<Vec<Item>>], sink_inbox: &mut [Vec<Item>]) {
    let Some((last, rest)) = targets.split_last() else { return };
    let mut send = |target: &Target, item: Item| match *target {
        Target::Processor { index, input } => processor_inbox[index][input as usize].push(item),
        Target::Sink { index } => sink_inbox[index].push(item),
    };
    for target in rest {
        send(target, Item { origin: item.origin, record: item.record.clone() });
    }
    send(last, item);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use meshhost_avro as avro;
    use meshhost_sdk::Header;

    use super::*;
    use crate::plugin::bindings::InputPort;
    use crate::plugin::{Limits, PluginEngine, ProcessorInstance};
    use crate::source::SourceRecord;
    use crate::state::StateStore;
    use crate::topology::failure::Stage;
    use crate::topology::EdgeSchema;

    const MOVIE: &str = r#"{"type": "record", "name": "Movie", "fields": [
        {"name": "id", "type": "long"}, {"name": "title", "type": "string"}]}"#;
    const TALENT: &str = r#"{"type": "record", "name": "Talent", "fields": [
        {"name": "movie_id", "type": "long"}, {"name": "name", "type": "string"}]}"#;

    /// Everything a batch did, in order.
    #[derive(Default)]
    struct Recorded {
        sent: Vec<(usize, usize, Record)>,
        dead: Vec<(usize, Failure)>,
        state: Vec<(usize, u32, StateWrites)>,
    }

    impl Effects for Recorded {
        type Error = std::convert::Infallible;

        fn send(&mut self, sink: usize, origin: usize, record: Record) -> Result<(), Self::Error> {
            self.sent.push((sink, origin, record));
            Ok(())
        }

        fn dead_letter(&mut self, origin: usize, failure: Failure) -> Result<(), Self::Error> {
            self.dead.push((origin, failure));
            Ok(())
        }

        fn state_written(&mut self, processor: usize, partition: u32, writes: &StateWrites) -> Result<(), Self::Error> {
            self.state.push((processor, partition, writes.clone()));
            Ok(())
        }
    }

    fn executor_for(component: &[u8], config: serde_json::Value, inputs: &[(&str, &str)]) -> Executor {
        let engine = PluginEngine::new().unwrap();
        let plugin = engine.load("test plugin", component).unwrap();
        let ports: Vec<InputPort> =
            inputs.iter().map(|(name, schema)| crate::plugin::input_port(name, schema).unwrap()).collect();
        let instance = ProcessorInstance::new("p", &plugin, Limits::default(), config.to_string(), ports)
            .unwrap_or_else(|e| panic!("init: {e:?}"));
        let edges =
            inputs.iter().map(|(name, schema)| (name.to_string(), EdgeSchema::parse(schema).unwrap())).collect();
        Executor::new(Topology::single_processor(instance, edges).unwrap())
    }

    fn executor(path: &str, config: serde_json::Value) -> Executor {
        executor_for(&std::fs::read(path).unwrap(), config, &[("movies", MOVIE)])
    }

    fn datum(schema: &str, json: serde_json::Value) -> Vec<u8> {
        avro::json_to_datum(&avro::Schema::parse(schema).unwrap(), &json).unwrap()
    }

    fn movie(position: i64, id: i64, title: &str) -> SourceRecord {
        SourceRecord {
            source: 0,
            partition: 0,
            position,
            record: Record {
                key: Some(id.to_string().into_bytes()),
                value: Some(datum(MOVIE, serde_json::json!({"id": id, "title": title}))),
                headers: vec![Header { key: "trace".into(), value: Some(b"t1".to_vec()) }],
                timestamp: Some(1_700_000_000_000 + position),
            },
        }
    }

    fn titles(executor: &Executor, recorded: &Recorded, sink: usize) -> Vec<(usize, String)> {
        let schema = &executor.topology().sinks[sink].schema.parsed;
        recorded
            .sent
            .iter()
            .filter(|(s, _, _)| *s == sink)
            .map(|(_, origin, record)| {
                let json = avro::datum_to_json(schema, record.value.as_deref().unwrap()).unwrap();
                (*origin, json["title"].as_str().unwrap().to_string())
            })
            .collect()
    }

    #[test]
    fn records_fan_out_to_two_ports_unchanged() {
        let mut executor = executor(env!("MESHHOST_TEST_PLUGIN_MISBEHAVE"), serde_json::json!({"mode": "two-ports"}));
        let batch = [movie(10, 1, "Alien"), movie(11, 2, "Heat")];
        let mut recorded = Recorded::default();
        executor.run(&batch, &mut recorded).unwrap();
        assert_eq!(titles(&executor, &recorded, 0), [(0, "Alien".to_string()), (1, "Heat".to_string())]);
        assert_eq!(titles(&executor, &recorded, 1), [(0, "Alien".to_string()), (1, "Heat".to_string())]);
        // Key, headers and timestamp travel with the value.
        for (_, origin, record) in &recorded.sent {
            assert_eq!(record, &batch[*origin].record);
        }
        assert!(recorded.dead.is_empty());
        // Passed through unchanged on ports of the input's schema: not checked again.
        assert_eq!(executor.stats().outputs_validated, 0);
    }

    #[test]
    fn after_a_trap_only_the_trapping_record_fails() {
        let mut executor = executor(env!("MESHHOST_TEST_PLUGIN_TRAP"), serde_json::json!({}));
        let batch = [movie(0, 1, "Alien"), movie(1, 2, "TRAP"), movie(2, 3, "Heat")];
        let mut recorded = Recorded::default();
        executor.run(&batch, &mut recorded).unwrap();
        assert_eq!(titles(&executor, &recorded, 0), [(0, "Alien".to_string()), (2, "Heat".to_string())]);
        assert_eq!(recorded.dead.len(), 1);
        let (origin, failure) = &recorded.dead[0];
        assert_eq!((*origin, failure.stage, failure.processor.as_deref()), (1, Stage::Process, Some("p")));
        // Retried alone, the poison record is index 0 of its call.
        assert!(failure.error.contains("poison record at index 0"), "{failure}");
        // One call for the batch, then one per record.
        assert_eq!(executor.stats().calls, 4);
        // The rebuilt instance goes on working.
        let mut recorded = Recorded::default();
        executor.run(&[movie(3, 4, "Ran")], &mut recorded).unwrap();
        assert_eq!(titles(&executor, &recorded, 0), [(0, "Ran".to_string())]);
    }

    #[test]
    fn an_emit_to_an_undeclared_port_is_a_dead_letter() {
        let mut executor = executor(env!("MESHHOST_TEST_PLUGIN_MISBEHAVE"), serde_json::json!({"mode": "bad-port"}));
        let mut recorded = Recorded::default();
        executor.run(&[movie(0, 1, "Alien"), movie(1, 2, "Heat")], &mut recorded).unwrap();
        assert!(recorded.sent.is_empty());
        let failures: Vec<(usize, Stage, &str)> =
            recorded.dead.iter().map(|(o, f)| (*o, f.stage, f.error.as_str())).collect();
        assert_eq!(
            failures,
            [
                (0, Stage::Process, "plugin emitted to output port 7 but declared 1"),
                (1, Stage::Process, "plugin emitted to output port 7 but declared 1")
            ]
        );
    }

    #[test]
    fn an_emit_from_outside_the_batch_is_refused_and_the_host_goes_on() {
        let mut executor = executor(env!("MESHHOST_TEST_PLUGIN_MISBEHAVE"), serde_json::json!({"mode": "bad-origin"}));
        let mut recorded = Recorded::default();
        executor.run(&[movie(0, 1, "Alien"), movie(1, 2, "Heat")], &mut recorded).unwrap();
        // No input record got a result: the plugin dropped them. Nothing derived from records
        // it was not given goes anywhere.
        assert!(recorded.sent.is_empty() && recorded.dead.is_empty());
    }

    #[test]
    fn a_processor_that_emits_nothing_sends_nothing() {
        let mut executor = executor(env!("MESHHOST_TEST_PLUGIN_MISBEHAVE"), serde_json::json!({"mode": "nothing"}));
        let mut recorded = Recorded::default();
        executor.run(&[movie(0, 1, "Alien"), movie(1, 2, "Heat")], &mut recorded).unwrap();
        assert!(recorded.sent.is_empty() && recorded.dead.is_empty() && recorded.state.is_empty());
        assert_eq!(executor.stats().calls, 1);
    }

    #[test]
    fn rejected_records_are_dead_letters_and_the_rest_go_on() {
        let mut executor = executor(env!("MESHHOST_TEST_PLUGIN_MISBEHAVE"), serde_json::json!({"mode": "reject-odd"}));
        let mut recorded = Recorded::default();
        executor.run(&[movie(0, 1, "Alien"), movie(1, 2, "Heat"), movie(2, 3, "Ran")], &mut recorded).unwrap();
        assert_eq!(titles(&executor, &recorded, 0), [(0, "Alien".to_string()), (2, "Ran".to_string())]);
        assert_eq!(recorded.dead, [(1, Failure::rejected("p", "odd record"))]);
    }

    #[test]
    fn json_processors_get_json_and_their_output_is_avro_again() {
        let mut executor = executor(env!("MESHHOST_TEST_PLUGIN_JSON_UPPER"), serde_json::json!({}));
        let mut recorded = Recorded::default();
        executor.run(&[movie(0, 1, "Alien"), movie(1, 2, "Heat")], &mut recorded).unwrap();
        assert_eq!(titles(&executor, &recorded, 0), [(0, "ALIEN".to_string()), (1, "HEAT".to_string())]);
        // A new value is checked (here: converted from JSON) against its port's schema.
        assert_eq!(executor.stats().outputs_validated, 2);
        assert!(recorded.dead.is_empty());
    }

    #[test]
    fn undecodable_values_and_invalid_outputs_fail_at_their_stage() {
        let mut executor = executor(env!("MESHHOST_TEST_PLUGIN_BAD_OUTPUT"), serde_json::json!({}));
        let mut garbage = movie(1, 2, "x");
        garbage.record.value = Some(b"\x01".to_vec());
        let mut recorded = Recorded::default();
        executor.run(&[movie(0, 1, "Alien"), garbage], &mut recorded).unwrap();
        assert!(recorded.sent.is_empty());
        let stages: Vec<(usize, Stage, Option<&str>)> =
            recorded.dead.iter().map(|(o, f)| (*o, f.stage, f.processor.as_deref())).collect();
        assert_eq!(stages, [(1, Stage::Decode, None), (0, Stage::Encode, Some("p"))]);
        assert!(
            recorded.dead[1].1.error.starts_with("output on \"out\" does not match its declared schema"),
            "{:?}",
            recorded.dead
        );
    }

    #[test]
    fn a_stateful_processor_is_called_once_per_partition_and_its_writes_are_kept() {
        let join = crate::plugin::stock::ALL.iter().find(|p| p.name == "mesh/join").unwrap();
        let config = serde_json::json!({"left_key": "id", "right_key": "movie_id", "kind": "left"});
        let mut executor = executor_for(join.bytes, config, &[("movies", MOVIE), ("talents", TALENT)]);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("join.redb")).unwrap());
        executor.topology_mut().processors[0].instance.attach_state(store.clone());

        let mut batch = vec![movie(0, 1, "Alien"), movie(0, 2, "Heat"), movie(5, 3, "Ran")];
        batch[1].partition = 1;
        batch[2].partition = 1;
        let mut recorded = Recorded::default();
        executor.run(&batch, &mut recorded).unwrap();
        assert_eq!(executor.stats().calls, 2, "one call per partition");
        let partitions: BTreeSet<u32> = recorded.state.iter().map(|(_, p, _)| *p).collect();
        assert_eq!(partitions, BTreeSet::from([0, 1]));
        // The writes are in the local store, under the partition of their record.
        assert!(store.get(0, b"L1").unwrap().is_some());
        assert!(store.get(1, b"L2").unwrap().is_some() && store.get(1, b"L3").unwrap().is_some());
        assert!(store.get(0, b"L2").unwrap().is_none());
        // A left join emits every movie, keyed by its id, with no talent yet.
        let keys: Vec<&[u8]> = recorded.sent.iter().map(|(_, _, r)| r.key.as_deref().unwrap()).collect();
        assert_eq!(keys, [&b"1"[..], b"2", b"3"]);
        // A talent on partition 1 joins the movie stored there.
        let talent = SourceRecord {
            source: 1,
            partition: 1,
            position: 7,
            record: Record {
                key: Some(b"2".to_vec()),
                value: Some(datum(TALENT, serde_json::json!({"movie_id": 2, "name": "De Niro"}))),
                ..Default::default()
            },
        };
        let mut recorded = Recorded::default();
        executor.run(&[talent], &mut recorded).unwrap();
        let schema = &executor.topology().sinks[0].schema.parsed;
        let joined = avro::datum_to_json(schema, recorded.sent[0].2.value.as_deref().unwrap()).unwrap();
        assert_eq!(joined["movies"]["title"], "Heat");
        assert_eq!(joined["talents"]["name"], "De Niro", "{joined}");
    }
}
