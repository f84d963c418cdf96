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
    /// CPU seconds (user + system) from start to the last output record: of the process under
    /// test (meshhost, or this process for the passthrough), and of the broker.
    pub cpu: f64,
    pub broker_cpu: f64,
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

    /// CPU seconds per million input records: (process under test, broker).
    pub fn cpu_per_million(&self) -> (f64, f64) {
        let per = 1e6 / self.records as f64;
        (self.cpu * per, self.broker_cpu * per)
    }
}

/// User + system CPU seconds of a process ("self" for this one), all threads.
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // utime, stime; USER_HZ is 100 on Linux
}

/// The pid of the broker `scripts/broker.sh` started for `broker`'s port, if any.
pub fn broker_pid(broker: &str) -> Option<String> {
    let port = broker.rsplit(':').next()?;
    let dir = std::env::var_os("MESHHOST_BROKER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace().join("target/broker"));
    let pid = std::fs::read_to_string(dir.join(format!("nisshi-{port}.pid"))).ok()?.trim().to_string();
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn broker_cpu(broker: &str) -> f64 {
    broker_pid(broker).map_or(0.0, |pid| cpu_seconds(&pid))
}

pub struct MeshhostRun {
    pub timed: Timed,
    /// VmHWM in KiB when a quarter of the output was there, and at the end.
    pub hwm_quarter_kib: u64,
    pub hwm_kib: u64,
}

/// A scratch pipeline file reading `input` into `output` through `processors` (YAML of the
/// `processors:` mapping whose last processor is `slim`; [`data::processors_yaml`] by default).
pub fn write_pipeline(dir: &Path, name: &str, broker: &str, input: &str, output: &str, dlq: &str) -> PathBuf {
    write_pipeline_with(dir, name, broker, input, output, dlq, &data::processors_yaml())
}

pub fn write_pipeline_with(
    dir: &Path,
    name: &str,
    broker: &str,
    input: &str,
    output: &str,
    dlq: &str,
    processors: &str,
) -> PathBuf {
    std::fs::write(dir.join("movie.avsc"), data::MOVIE_SCHEMA).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    let properties = kafka::extra_properties();
    let properties: Vec<String> = properties.iter().map(|(k, v)| format!("{k:?}: {v:?}")).collect();
    let properties =
        if properties.is_empty() { String::new() } else { format!("  properties: {{{}}}\n", properties.join(", ")) };
    let text = format!(
        "name: {name}\nkafka:\n  bootstrap_servers: {broker}\n{properties}sources:\n  movies:\n    topic: {input}\n    format: avro\n    schema: movie.avsc\nprocessors:{}\nsinks:\n  out:\n    topic: {output}\n    format: avro\n    inputs: [slim]\ndead_letter:\n  topic: {dlq}\n",
        processors
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Profiling hooks for the E2E `meshhost run`s (see README, Performance):
/// `MESHHOST_BENCH_WRAPPER` prefixes the command (`valgrind --tool=callgrind ...`: same pid, so
/// SIGTERM and RSS sampling still work, though RSS is then valgrind's); `MESHHOST_BENCH_PERF=FILE`
/// attaches `perf record -e cpu-clock -F 999 -g` (or `MESHHOST_BENCH_PERF_ARGS`) to the process
/// for the timed part of the run.
fn spawn(pipeline: &Path, broker: &str, cache: &Path, log: &Path) -> Child {
    let wrapper: Vec<String> = std::env::var("MESHHOST_BENCH_WRAPPER")
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(MESHHOST);
            command
        }
        None => Command::new(MESHHOST),
    };
    // MESHHOST_BENCH_RUN_ARGS: extra `meshhost run` arguments (the metrics phase turns the
    // metrics listener on with it).
    let extra: Vec<String> = std::env::var("MESHHOST_BENCH_RUN_ARGS")
        .map(|a| a.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    command
        .args(["run", pipeline.to_str().unwrap(), "--bootstrap-servers", broker])
        .args(&extra)
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
            assert!(
                status.success(),
                "meshhost exited with {status}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
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
    meshhost_with(broker, scratch, cache, input, records, expected, &data::processors_yaml())
}

/// [`meshhost`] with other processors (see [`write_pipeline_with`]).
pub fn meshhost_with(
    broker: &str,
    scratch: &Path,
    cache: &Path,
    input: &str,
    records: u64,
    expected: u64,
    processors: &str,
) -> MeshhostRun {
    let name = kafka::unique("bench-e2e");
    let (output, dlq) = (format!("{name}-out"), format!("{name}-dlq"));
    kafka::create_topics(broker, &[&output, &dlq]);
    let pipeline = write_pipeline_with(scratch, &name, broker, input, &output, &dlq, processors);
    let log = scratch.join(format!("{name}.log"));
    let broker_cpu_start = broker_cpu(broker);
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
    let perf = std::env::var("MESHHOST_BENCH_PERF").ok().map(|file| {
        let args = std::env::var("MESHHOST_BENCH_PERF_ARGS").unwrap_or_else(|_| "-e cpu-clock -F 999 -g".into());
        Command::new("perf")
            .arg("record")
            .args(args.split_whitespace())
            .args(["-q", "-p", &pid.to_string(), "-o"])
            .arg(format!("{file}.{name}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("perf record")
    });
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
    let cpu = cpu_seconds(&pid.to_string());
    let broker_cpu_used = broker_cpu(broker) - broker_cpu_start;
    if let Some(mut perf) = perf {
        Command::new("kill").args(["-INT", &perf.id().to_string()]).status().expect("kill");
        let _ = perf.wait();
    }
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
        timed: Timed { records, start, progress, cpu, broker_cpu: broker_cpu_used },
        hwm_quarter_kib: hwm_quarter,
        hwm_kib: hwm.load(Ordering::Relaxed).max(hwm_end),
    };
    eprintln!(
        "  meshhost run: {:.0} rec/s first→last output, {:.0} rec/s wall; first output after {:.0} ms; peak RSS {:.1} MiB ({:.1} MiB at 25%); CPU {:.1} s + broker {:.1} s",
        run.timed.steady_rate(),
        run.timed.wall_rate(),
        run.timed.first_ms(),
        run.hwm_kib as f64 / 1024.0,
        run.hwm_quarter_kib as f64 / 1024.0,
        run.timed.cpu,
        run.timed.broker_cpu
    );
    run
}

/// The raw passthrough over `input` (holding `records` records), forwarding headers or not.
pub fn passthrough(broker: &str, input: &str, records: u64, headers: bool) -> Timed {
    let output = kafka::unique("bench-passthrough-out");
    kafka::create_topics(broker, &[&output]);
    let running = Arc::new(AtomicBool::new(true));
    let finished = Arc::new(AtomicBool::new(false));
    let (cpu_start, broker_cpu_start) = (cpu_seconds("self"), broker_cpu(broker));
    let start = Instant::now();
    let worker = {
        let (broker, input, output, running, finished) =
            (broker.to_string(), input.to_string(), output.clone(), running.clone(), finished.clone());
        std::thread::spawn(move || {
            kafka::passthrough(&broker, &input, &output, records, headers, &running);
            finished.store(true, Ordering::Relaxed);
        })
    };
    // Alive while running, and after a normal end (its output is then complete); a panic ends it.
    let alive = || !worker.is_finished() || finished.load(Ordering::Relaxed);
    let progress = kafka::watch(broker, &output, records as i64, Duration::from_secs(900), alive, || {});
    let (cpu, broker_cpu_used) = (cpu_seconds("self") - cpu_start, broker_cpu(broker) - broker_cpu_start);
    running.store(false, Ordering::Relaxed);
    worker.join().expect("passthrough thread");
    let progress = progress.unwrap_or_else(|e| panic!("passthrough: {e}"));
    kafka::delete_topics(broker, &[&output]);
    let timed = Timed { records, start, progress, cpu, broker_cpu: broker_cpu_used };
    eprintln!(
        "  raw passthrough{}: {:.0} rec/s first→last output, {:.0} rec/s wall; first output after {:.0} ms; CPU {:.1} s + broker {:.1} s",
        if headers { "" } else { " (headers dropped)" },
        timed.steady_rate(),
        timed.wall_rate(),
        timed.first_ms(),
        timed.cpu,
        timed.broker_cpu
    );
    timed
}

pub struct StartupResult {
    pub cold_ms: f64,
    pub warm_ms: f64,
    /// The raw passthrough's time from creating its clients to its first output record: the
    /// share of start-up that is the broker's and librdkafka's (group join, offset reset, fetch).
    pub passthrough_ms: f64,
}

/// Time from spawning `meshhost run` to its first output record, with an empty cache of compiled
/// plugins and with the cache it filled; `rounds` of each, alternating.
pub fn startup(broker: &str, scratch: &Path, rounds: usize) -> StartupResult {
    let input = kafka::unique("bench-startup-in");
    kafka::create_topics(broker, &[&input]);
    kafka::produce(broker, &input, 200, 2000);
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut pass = Vec::new();
    for round in 0..rounds {
        let timed = passthrough(broker, &input, 2000, true);
        pass.push(timed.first_ms());
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
            let progress = kafka::watch(
                broker,
                &output,
                1,
                Duration::from_secs(300),
                || child.lock().unwrap().try_wait().map(|s| s.is_none()).unwrap_or(false),
                || {},
            )
            .unwrap_or_else(|e| {
                panic!("meshhost run: {e}; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default())
            });
            let ms = (progress.first - start).as_secs_f64() * 1000.0;
            stop(&child, &log);
            kafka::delete_topics(broker, &[&output, &dlq]);
            eprintln!("  startup ({cache_state} cache): first output record after {ms:.0} ms");
            times.push(ms);
        }
    }
    kafka::delete_topics(broker, &[&input]);
    StartupResult { cold_ms: crate::best(&cold), warm_ms: crate::best(&warm), passthrough_ms: crate::best(&pass) }
}
