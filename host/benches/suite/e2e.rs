//! End to end: `meshhost run` (filter + projection) vs the raw passthrough over the same input
//! topic, its peak RSS, and the time to its first output record with and without the cache of
//! compiled plugins.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::data;
use crate::kafka::{self, Progress};

pub const MESHHOST: &str = env!("CARGO_BIN_EXE_meshhost");

/// One timed run over `records` input records.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub records: u64,
    pub start: Instant,
    pub progress: Progress,
}

impl Timed {
    /// Input records per second between the first and the last output record.
    pub fn steady_rate(&self) -> f64 {
        self.records as f64 / (self.progress.done - self.progress.first).as_secs_f64()
    }

    /// Input records per second from the start (process or clients) to the last output record.
    pub fn wall_rate(&self) -> f64 {
        self.records as f64 / (self.progress.done - self.start).as_secs_f64()
    }

    pub fn first_ms(&self) -> f64 {
        (self.progress.first - self.start).as_secs_f64() * 1000.0
    }
}

pub struct MeshhostRun {
    pub timed: Timed,
    /// VmHWM in KiB when a quarter of the output was there, and at the end.
    pub hwm_quarter_kib: u64,
    pub hwm_kib: u64,
}

/// A scratch pipeline file reading `input` into `output`.
pub fn write_pipeline(dir: &Path, name: &str, broker: &str, input: &str, output: &str, dlq: &str) -> PathBuf {
    std::fs::write(dir.join("movie.avsc"), data::MOVIE_SCHEMA).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    let text = format!(
        "name: {name}\nkafka:\n  bootstrap_servers: {broker}\nsources:\n  movies:\n    topic: {input}\n    format: avro\n    schema: movie.avsc\nprocessors:{}\nsinks:\n  out:\n    topic: {output}\n    format: avro\n    inputs: [slim]\ndead_letter:\n  topic: {dlq}\n",
        data::processors_yaml()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(pipeline: &Path, broker: &str, cache: &Path, log: &Path) -> Child {
    Command::new(MESHHOST)
        .args(["run", pipeline.to_str().unwrap(), "--bootstrap-servers", broker])
        .env("MESHHOST_CACHE_DIR", cache)
        .env("MESHHOST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start meshhost")
}

/// `meshhost validate`: compiles the pipeline's plugins into `cache` if they are not there.
pub fn validate(pipeline: &Path, cache: &Path) {
    let output = Command::new(MESHHOST)
        .args(["validate", pipeline.to_str().unwrap()])
        .env("MESHHOST_CACHE_DIR", cache)
        .output()
        .expect("run meshhost validate");
    assert!(output.status.success(), "meshhost validate failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// VmHWM of a process, KiB.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// SIGTERM, then wait (60 s at most) for a clean exit.
fn stop(child: &Mutex<Child>, log: &Path) {
    let pid = child.lock().unwrap().id();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.lock().unwrap().try_wait().expect("wait") {
            assert!(status.success(), "meshhost exited with {status}; log:\n{}", std::fs::read_to_string(log).unwrap_or_default());
            return;
        }
        if Instant::now() > deadline {
            let _ = child.lock().unwrap().kill();
            panic!("meshhost did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run `meshhost run` over `input` (holding `records` records, `expected` of them kept) until
/// its output holds `expected`, sampling its peak RSS; then SIGTERM and check its commits.
pub fn meshhost(broker: &str, scratch: &Path, cache: &Path, input: &str, records: u64, expected: u64) -> MeshhostRun {
    let name = kafka::unique("bench-e2e");
    let (output, dlq) = (format!("{name}-out"), format!("{name}-dlq"));
    kafka::create_topics(broker, &[&output, &dlq]);
    let pipeline = write_pipeline(scratch, &name, broker, input, &output, &dlq);
    let log = scratch.join(format!("{name}.log"));
    let start = Instant::now();
    let child = Mutex::new(spawn(&pipeline, broker, cache, &log));
    let pid = child.lock().unwrap().id();

    // The high-water mark, read until the process is gone.
    let hwm = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (hwm, sampling) = (hwm.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(kib) = vm_hwm(pid) {
                    hwm.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut hwm_quarter = 0;
    let progress = kafka::watch(
        broker,
        &output,
        expected as i64,
        Duration::from_secs(900),
        || child.lock().unwrap().try_wait().map(|s| s.is_none()).unwrap_or(false),
        || hwm_quarter = vm_hwm(pid).unwrap_or(0),
    )
    .unwrap_or_else(|e| panic!("meshhost run: {e}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
    // Wait for the last commit: the input is then fully consumed, nothing is in flight.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut committed = kafka::committed(broker, &format!("meshhost-{name}"), input);
    while committed < records as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        committed = kafka::committed(broker, &format!("meshhost-{name}"), input);
    }
    let hwm_end = vm_hwm(pid).unwrap_or(0);
    stop(&child, &log);
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    assert_eq!(committed, records as i64, "meshhost committed offsets short of the input's end");
    let produced = {
        let consumer: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("group.id", kafka::unique("bench-count"))
            .create()
            .unwrap();
        (kafka::end_offset(&consumer, &output), kafka::end_offset(&consumer, &dlq))
    };
    assert_eq!(produced, (expected as i64, 0), "(output, dead letters) records");
    kafka::delete_topics(broker, &[&output, &dlq]);
    let run = MeshhostRun {
        timed: Timed { records, start, progress },
        hwm_quarter_kib: hwm_quarter,
        hwm_kib: hwm.load(Ordering::Relaxed).max(hwm_end),
    };
    eprintln!(
        "  meshhost run: {:.0} rec/s first→last output, {:.0} rec/s wall; first output after {:.0} ms; peak RSS {:.1} MiB ({:.1} MiB at 25%)",
        run.timed.steady_rate(),
        run.timed.wall_rate(),
        run.timed.first_ms(),
        run.hwm_kib as f64 / 1024.0,
        run.hwm_quarter_kib as f64 / 1024.0
    );
    run
}

/// The raw passthrough over `input` (holding `records` records).
pub fn passthrough(broker: &str, input: &str, records: u64) -> Timed {
    let output = kafka::unique("bench-passthrough-out");
    kafka::create_topics(broker, &[&output]);
    let running = Arc::new(AtomicBool::new(true));
    let finished = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let worker = {
        let (broker, input, output, running, finished) =
            (broker.to_string(), input.to_string(), output.clone(), running.clone(), finished.clone());
        std::thread::spawn(move || {
            kafka::passthrough(&broker, &input, &output, records, &running);
            finished.store(true, Ordering::Relaxed);
        })
    };
    // Alive while running, and after a normal end (its output is then complete); a panic ends it.
    let alive = || !worker.is_finished() || finished.load(Ordering::Relaxed);
    let progress = kafka::watch(broker, &output, records as i64, Duration::from_secs(900), alive, || {});
    running.store(false, Ordering::Relaxed);
    worker.join().expect("passthrough thread");
    let progress = progress.unwrap_or_else(|e| panic!("passthrough: {e}"));
    kafka::delete_topics(broker, &[&output]);
    let timed = Timed { records, start, progress };
    eprintln!(
        "  raw passthrough: {:.0} rec/s first→last output, {:.0} rec/s wall; first output after {:.0} ms",
        timed.steady_rate(),
        timed.wall_rate(),
        timed.first_ms()
    );
    timed
}

pub struct StartupResult {
    pub cold_ms: f64,
    pub warm_ms: f64,
}

/// Time from spawning `meshhost run` to its first output record, with an empty cache of compiled
/// plugins and with the cache it filled; `rounds` of each, alternating.
pub fn startup(broker: &str, scratch: &Path, rounds: usize) -> StartupResult {
    let input = kafka::unique("bench-startup-in");
    kafka::create_topics(broker, &[&input]);
    kafka::produce(broker, &input, 200, 2000);
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for round in 0..rounds {
        let cache = scratch.join(format!("startup-cache-{round}"));
        let _ = std::fs::remove_dir_all(&cache);
        for (cache_state, times) in [("cold", &mut cold), ("warm", &mut warm)] {
            let name = kafka::unique("bench-startup");
            let (output, dlq) = (format!("{name}-out"), format!("{name}-dlq"));
            kafka::create_topics(broker, &[&output, &dlq]);
            let pipeline = write_pipeline(scratch, &name, broker, &input, &output, &dlq);
            let log = scratch.join(format!("{name}.log"));
            let start = Instant::now();
            let child = Mutex::new(spawn(&pipeline, broker, &cache, &log));
            let progress = kafka::watch(broker, &output, 1, Duration::from_secs(300), || {
                child.lock().unwrap().try_wait().map(|s| s.is_none()).unwrap_or(false)
            }, || {})
            .unwrap_or_else(|e| panic!("meshhost run: {e}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()));
            let ms = (progress.first - start).as_secs_f64() * 1000.0;
            stop(&child, &log);
            kafka::delete_topics(broker, &[&output, &dlq]);
            eprintln!("  startup ({cache_state} cache): first output record after {ms:.0} ms");
            times.push(ms);
        }
    }
    kafka::delete_topics(broker, &[&input]);
    StartupResult { cold_ms: crate::median(&mut cold), warm_ms: crate::median(&mut warm) }
}
