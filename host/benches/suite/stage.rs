//! Plugin stage: `mesh/filter` as a component run by the executor `meshhost run` uses (each
//! source datum checked against its schema, records laid out column-wise, lowered into the
//! guest, `process`, results lifted back and routed to a sink) vs the same plugin crate linked
//! natively, its `Processor::process` called on a batch built beforehand.
//!
//! And plugin load: compiling the stock filter + projection vs loading them from the on-disk
//! cache of compiled plugins.

use std::time::Instant;

use meshhost::plugin::batch::Record;
use meshhost::plugin::{self, Limits, PluginEngine, ProcessorInstance};
use meshhost::source::SourceRecord;
use meshhost::state::StateWrites;
use meshhost::topology::execute::{Effects, Executor};
use meshhost::topology::failure::Failure;
use meshhost::topology::{EdgeSchema, Topology};
use meshhost_sdk::Processor as _;

use crate::data::{self, Generator};

pub struct StageResult {
    pub size: usize,
    pub batch: usize,
    /// Through the executor: source datum check and copy, the call, routing, the sink step.
    pub wasm_ns: f64,
    /// The component call alone (`ProcessorInstance::process` on records built beforehand).
    pub call_ns: f64,
    pub native_ns: f64,
}

fn stock(name: &str) -> &'static [u8] {
    meshhost::plugin::stock::ALL.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no stock {name}")).bytes
}

fn filter_config() -> String {
    serde_json::json!({ "condition": data::CONDITION }).to_string()
}

/// The stock filter as a one-processor topology, in the executor.
pub fn wasm_filter(engine: &PluginEngine) -> Executor {
    let plugin = engine.load("mesh/filter", stock("mesh/filter")).expect("load mesh/filter");
    let inputs = vec![plugin::input_port("movies", data::MOVIE_SCHEMA).expect("the bench schema parses")];
    let instance = ProcessorInstance::new("recent", &plugin, Limits::default(), filter_config(), inputs)
        .unwrap_or_else(|e| panic!("init mesh/filter: {e:?}"));
    let schema = EdgeSchema::parse(data::MOVIE_SCHEMA).expect("movie schema");
    Executor::new(Topology::single_processor(instance, vec![("movies".into(), schema)]).expect("topology"))
}

/// Counts what reaches the sink; any failure is a bench bug.
#[derive(Default)]
pub struct Count {
    pub sent: usize,
}

impl Effects for Count {
    type Error = String;

    fn send(&mut self, _sink: usize, _origin: usize, _record: Record) -> Result<(), String> {
        self.sent += 1;
        Ok(())
    }

    fn dead_letter(&mut self, _origin: usize, failure: Failure) -> Result<(), String> {
        Err(failure.to_string())
    }

    fn state_written(&mut self, _processor: usize, _partition: u32, _writes: &StateWrites) -> Result<(), String> {
        Ok(())
    }
}

fn native_filter() -> mesh_filter::Filter {
    let inputs =
        [meshhost_sdk::InputPort { name: "movies".into(), schema: data::MOVIE_SCHEMA.into(), value_names: Vec::new() }];
    let config: serde_json::Value = serde_json::from_str(&filter_config()).unwrap();
    match mesh_filter::Filter::new(&config, &inputs) {
        Ok((filter, _)) => filter,
        Err(errors) => panic!("init native filter: {errors:?}"),
    }
}

/// `records` input records of about `size` bytes, as a source hands them over.
pub fn source_records(size: usize, count: usize) -> Vec<SourceRecord> {
    let generator = Generator::new(size);
    (0..count as u64)
        .map(|id| SourceRecord {
            source: 0,
            partition: 0,
            position: id as i64,
            record: Record {
                key: Some(Generator::key(id)),
                value: Some(generator.value(id)),
                headers: Vec::new(),
                timestamp: Some(1_700_000_000_000 + id as i64),
            },
        })
        .collect()
}

/// ns per record through the executor and the component, in batches of `batch`.
pub fn time_wasm(executor: &mut Executor, records: &[SourceRecord], batch: usize) -> (f64, usize) {
    let mut count = Count::default();
    let start = Instant::now();
    for chunk in records.chunks(batch) {
        executor.run(chunk, &mut count).expect("the filter fails no record");
    }
    (start.elapsed().as_nanos() as f64 / records.len() as f64, count.sent)
}

/// ns per record through the component's `process` alone (records laid out column-wise, lowered
/// into the guest, the result lifted back), in batches of `batch` built beforehand.
fn time_call(executor: &mut Executor, records: &[SourceRecord], batch: usize) -> (f64, usize) {
    let batches: Vec<Vec<Record>> =
        records.chunks(batch).map(|chunk| chunk.iter().map(|r| r.record.clone()).collect()).collect();
    let instance = &mut executor.topology_mut().processors[0].instance;
    let mut kept = 0;
    let start = Instant::now();
    for batch in &batches {
        let (result, _) = instance.process(0, 0, batch).expect("the filter does not trap");
        assert!(result.failures.is_empty());
        kept += result.emitted.len();
    }
    (start.elapsed().as_nanos() as f64 / records.len() as f64, kept)
}

/// ns per record through the native filter; the batches are built before the clock starts.
fn time_native(filter: &mut mesh_filter::Filter, records: &[SourceRecord], batch: usize) -> (f64, usize) {
    let batches: Vec<meshhost_sdk::Batch> =
        records.chunks(batch).map(|chunk| meshhost_sdk::Batch::new(chunk.iter().map(|r| r.record.clone()))).collect();
    let mut kept = 0;
    let start = Instant::now();
    for batch in &batches {
        let mut out = meshhost_sdk::Output::default();
        filter.process(0, batch, &mut out);
        assert!(out.failures().is_empty());
        kept += out.emitted_count();
        drop(out);
    }
    (start.elapsed().as_nanos() as f64 / records.len() as f64, kept)
}

/// The filter stage at each (record size, batch size), `count` records per measurement.
pub fn run(engine: &PluginEngine, cases: &[(usize, usize)], count: usize, rounds: usize) -> Vec<StageResult> {
    let mut executor = wasm_filter(engine);
    let mut native = native_filter();
    let mut results = Vec::new();
    let mut sizes: Vec<usize> = cases.iter().map(|c| c.0).collect();
    sizes.dedup();
    for size in sizes {
        let records = source_records(size, count);
        let expected = (0..count as u64).filter(|&id| data::kept(id)).count();
        // Warm up both (the instance's memory grows to its working size on the first batches).
        time_wasm(&mut executor, &records[..count.min(20_000)], 1024);
        time_native(&mut native, &records[..count.min(20_000)], 1024);
        for &(_, batch) in cases.iter().filter(|c| c.0 == size) {
            let mut wasm = Vec::new();
            let mut call = Vec::new();
            let mut nat = Vec::new();
            for _ in 0..rounds {
                let (ns, kept) = time_wasm(&mut executor, &records, batch);
                assert_eq!(kept, expected, "component filter kept the wrong records");
                wasm.push(ns);
                let (ns, kept) = time_call(&mut executor, &records, batch);
                assert_eq!(kept, expected, "component filter kept the wrong records");
                call.push(ns);
                let (ns, kept) = time_native(&mut native, &records, batch);
                assert_eq!(kept, expected, "native filter kept the wrong records");
                nat.push(ns);
            }
            let result = StageResult {
                size,
                batch,
                wasm_ns: crate::best(&wasm),
                call_ns: crate::best(&call),
                native_ns: crate::best(&nat),
            };
            eprintln!(
                "filter stage {size} B, batch {batch}: executor + component {:.0} ns/rec, component call {:.0} ns/rec, native {:.0} ns/rec ({rounds} rounds of {count}, best)",
                result.wasm_ns, result.call_ns, result.native_ns
            );
            results.push(result);
        }
    }
    results
}

pub struct LoadResult {
    pub compile_ms: f64,
    pub cached_ms: f64,
}

/// Load the stock filter and projection into a fresh engine (`MESHHOST_CACHE_DIR` = `cache`).
fn load_both(cache: Option<&std::path::Path>) -> f64 {
    let engine = match cache {
        Some(dir) => {
            // Single-threaded here: no other thread of this process reads the environment.
            std::env::set_var("MESHHOST_CACHE_DIR", dir);
            PluginEngine::new().expect("engine")
        }
        None => PluginEngine::new().expect("engine").without_disk_cache(),
    };
    let start = Instant::now();
    for name in ["mesh/filter", "mesh/projection"] {
        engine.load(name, stock(name)).expect("load");
    }
    start.elapsed().as_secs_f64() * 1000.0
}

/// Plugin load: compile (no disk cache) vs from a warm disk cache, each in a fresh engine.
pub fn load(scratch: &std::path::Path, rounds: usize) -> LoadResult {
    let cache = scratch.join("load-cache");
    let _ = std::fs::remove_dir_all(&cache);
    load_both(Some(&cache)); // fills the cache
    let mut compile = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..rounds {
        compile.push(load_both(None));
        cached.push(load_both(Some(&cache)));
    }
    let result = LoadResult { compile_ms: crate::best(&compile), cached_ms: crate::best(&cached) };
    eprintln!(
        "plugin load (filter + projection): compile {:.1} ms, from cache {:.2} ms ({rounds} rounds, best)",
        result.compile_ms, result.cached_ms
    );
    result
}
