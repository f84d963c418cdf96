//! The Postgres sink: rows per second into a table, `insert` and `upsert` modes, against the
//! floor — `psql`'s `\copy` of the same rows from a file — and against what a user would write
//! instead, a Python confluent-kafka + fastavro + psycopg `executemany` upsert loop
//! (`postgres_loop.py`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::data;
use crate::e2e::MESHHOST;
use crate::kafka;

/// The password of the project's Postgres user (`scripts/postgres.sh`).
const PASSWORD: &str = "meshhost";

/// The bench's Postgres: `MESHHOST_BENCH_POSTGRES` (a port), else `scripts/postgres.sh start
/// 15434` (never the tests' 15432). Its URL with the password.
pub fn start() -> String {
    let port = std::env::var("MESHHOST_BENCH_POSTGRES").unwrap_or_else(|_| {
        let status = Command::new(crate::workspace().join("scripts/postgres.sh"))
            .args(["start", "15434"])
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/postgres.sh");
        assert!(status.success(), "scripts/postgres.sh start 15434 failed");
        "15434".into()
    });
    format!("postgres://meshhost:{PASSWORD}@127.0.0.1:{port}/meshhost")
}

/// `sql` through `psql`; its output (unaligned, tuples only).
pub fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .expect("run psql");
    assert!(output.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Rows per second of one way of filling a table.
pub struct Rates {
    pub insert: f64,
    pub upsert: f64,
    pub copy: f64,
    pub python: f64,
}

/// `records` movies of 200 B, each way `rounds` times (the best of each).
pub fn run(broker: &str, url: &str, scratch: &Path, cache: &Path, records: u64, rounds: usize) -> Rates {
    let input = kafka::unique("bench-pg-in");
    kafka::create_topics(broker, &[&input]);
    kafka::produce(broker, &input, 200, records);
    let movie = scratch.join("movie.avsc");
    std::fs::write(&movie, data::MOVIE_SCHEMA).unwrap();
    let mut rates = Rates { insert: 0.0, upsert: 0.0, copy: 0.0, python: 0.0 };
    for _ in 0..rounds {
        let table = kafka::unique("bench_insert").replace('-', "_");
        rates.insert = rates.insert.max(meshhost(broker, url, scratch, cache, &input, &table, "", records));
        rates.copy = rates.copy.max(copy(url, scratch, &table, records));
        let table = kafka::unique("bench_upsert").replace('-', "_");
        rates.upsert = rates.upsert.max(meshhost(broker, url, scratch, cache, &input, &table, ", key: [id]", records));
        let python_records = records.min(50_000);
        rates.python = rates.python.max(python(broker, url, scratch, &input, &movie, &table, python_records));
    }
    rates
}

/// `meshhost run` of the input into `table` (`key`: the sink's extra settings); rows per second
/// between the first row and the last appearing in the table (polled every 20 ms).
#[allow(clippy::too_many_arguments)]
fn meshhost(
    broker: &str,
    url: &str,
    scratch: &Path,
    cache: &Path,
    input: &str,
    table: &str,
    key: &str,
    records: u64,
) -> f64 {
    let name = kafka::unique("bench-pg");
    let dir = scratch.join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("movie.avsc"), data::MOVIE_SCHEMA).unwrap();
    let pipeline = dir.join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {name}\nkafka:\n  bootstrap_servers: {broker}\nsources:\n  movies:\n    topic: {input}\n    format: avro\n    schema: movie.avsc\nsinks:\n  table:\n    postgres: {{url: '{url}', table: {table}, create: true{key}}}\n    inputs: [movies]\n"
        ),
    )
    .unwrap();
    let log = scratch.join(format!("{name}.log"));
    let mut child = Command::new(MESHHOST)
        .args(["run", pipeline.to_str().unwrap()])
        .env("MESHHOST_CACHE_DIR", cache)
        .env("MESHHOST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start meshhost");
    // MESHHOST_BENCH_PERF=FILE: `perf record` the run, as for the E2E runs.
    let perf = std::env::var("MESHHOST_BENCH_PERF").ok().map(|file| {
        Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-q", "-p", &child.id().to_string(), "-o"])
            .arg(format!("{file}.{name}"))
            .stdout(Stdio::null())
            .spawn()
            .expect("perf record")
    });
    let count = || {
        let output = Command::new("psql")
            .args(["-X", "-q", "-A", "-t", url, "-c", &format!("SELECT count(*) FROM {table}")])
            .output()
            .expect("run psql");
        String::from_utf8_lossy(&output.stdout).trim().parse::<u64>().unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    let last = loop {
        let n = count();
        let now = Instant::now();
        if n > 0 && first.is_none() {
            first = Some((now, n));
        }
        if n >= records {
            break now;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("meshhost exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        assert!(now < deadline, "{table} not filled within 600 s: {n} of {records} rows");
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(mut perf) = perf {
        Command::new("kill").args(["-INT", &perf.id().to_string()]).status().expect("kill");
        let _ = perf.wait();
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    let status = child.wait().expect("wait");
    assert!(status.success(), "meshhost exited with {status}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let (first, already) = first.expect("rows appeared");
    (records - already) as f64 / (last - first).as_secs_f64().max(1e-3)
}

/// The floor: `psql`'s `\copy` into an empty table like `table` of the rows `table` holds
/// (written to a file first); rows per second.
fn copy(url: &str, scratch: &Path, table: &str, records: u64) -> f64 {
    let file = scratch.join(format!("{table}.copy"));
    psql(url, &format!("\\copy {table} TO '{}'", file.display()));
    let floor = format!("{table}_copy");
    psql(url, &format!("CREATE TABLE {floor} (LIKE {table})"));
    let started = Instant::now();
    psql(url, &format!("\\copy {floor} FROM '{}'", file.display()));
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(psql(url, &format!("SELECT count(*) FROM {floor}")), records.to_string());
    let _ = std::fs::remove_file(&file);
    records as f64 / seconds
}

/// The plain Python loop upserting `records` of the input into a table like `like`.
fn python(broker: &str, url: &str, scratch: &Path, input: &str, movie: &Path, like: &str, records: u64) -> f64 {
    let table = format!("{like}_python");
    psql(url, &format!("CREATE TABLE {table} (LIKE {like} INCLUDING ALL)"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/suite/postgres_loop.py");
    let log = scratch.join(format!("{table}.log"));
    let output = Command::new(crate::guest::python())
        .arg(script)
        .args([broker, input, &kafka::unique("bench-pg-python"), &records.to_string()])
        .arg(movie)
        .args([url, &table])
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .expect("run the Python loop");
    assert!(output.status.success(), "the Python loop failed: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let timing: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the loop's timing");
    let rows: u64 = psql(url, &format!("SELECT count(*) FROM {table}")).parse().unwrap();
    assert!(rows >= records, "the Python loop wrote {rows} rows of {records}");
    timing["records"].as_f64().unwrap() / timing["seconds"].as_f64().unwrap()
}
