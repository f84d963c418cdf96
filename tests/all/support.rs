//! Test support: the broker, topics, producing and reading records, running `meshhost`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

pub const MESHHOST: &str = env!("CARGO_BIN_EXE_meshhost");
pub const TRAP_PLUGIN: &str = env!("MESHHOST_TEST_PLUGIN_TRAP");
pub const SPIN_PLUGIN: &str = env!("MESHHOST_TEST_PLUGIN_SPIN");
pub const HOSTILE_PLUGIN: &str = env!("MESHHOST_TEST_PLUGIN_HOSTILE");
pub const BAD_INIT_PLUGIN: &str = env!("MESHHOST_TEST_PLUGIN_BAD_INIT");
pub const BAD_OUTPUT_PLUGIN: &str = env!("MESHHOST_TEST_PLUGIN_BAD_OUTPUT");
pub const STOCK_FILTER_PLUGIN: &str = env!("MESHHOST_STOCK_PLUGIN_FILTER");

/// The broker's address: `MESHHOST_TEST_BROKER`, or a broker this test run starts itself
/// with `scripts/broker.sh` (so a plain `cargo test` works too).
pub fn broker() -> &'static str {
    if let Some(own) = OWN_BROKER.with(|own| *own.borrow()) {
        return own;
    }
    static BROKER: OnceLock<String> = OnceLock::new();
    BROKER.get_or_init(|| {
        if let Ok(address) = std::env::var("MESHHOST_TEST_BROKER") {
            return address;
        }
        let port = "19092";
        let status = Command::new(workspace().join("scripts/broker.sh"))
            .args(["start", port])
            .status()
            .expect("run scripts/broker.sh");
        assert!(status.success(), "scripts/broker.sh start failed");
        format!("127.0.0.1:{port}")
    })
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A name no other test (or earlier run on the same broker) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

pub fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker()).create().expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let runtime = block_on(admin.create_topics([&topic], &AdminOptions::new()));
    for result in runtime.expect("create_topics") {
        result.unwrap_or_else(|(topic, code)| panic!("create topic {topic}: {code}"));
    }
    // Wait until the topic's metadata is visible with all its partitions.
    let consumer = consumer();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metadata = consumer.fetch_metadata(Some(name), Duration::from_secs(5)).expect("metadata");
        if metadata.topics().first().is_some_and(|t| t.error().is_none() && t.partitions().len() == partitions as usize)
        {
            return;
        }
        assert!(Instant::now() < deadline, "topic {name} did not appear");
        std::thread::sleep(Duration::from_millis(50));
    }
}

thread_local! {
    /// A broker of the current test's own (see [`OwnBroker`]), used by every helper on its thread.
    static OWN_BROKER: std::cell::RefCell<Option<&'static str>> = const { std::cell::RefCell::new(None) };
}

/// A broker started for one test (on-disk storage, so it can be stopped and started again with
/// its data), used by every helper called on the test's thread while this lives.
pub struct OwnBroker {
    port: String,
    dir: tempfile::TempDir,
}

impl OwnBroker {
    pub fn start() -> OwnBroker {
        let broker = OwnBroker { port: free_port().to_string(), dir: tempfile::tempdir().unwrap() };
        broker.up();
        let address: &'static str = Box::leak(format!("127.0.0.1:{}", broker.port).into_boxed_str());
        OWN_BROKER.with(|own| *own.borrow_mut() = Some(address));
        broker
    }

    fn script(&self, command: &str) {
        let status = Command::new(workspace().join("scripts/broker.sh"))
            .args([command, &self.port])
            .env("MESHHOST_BROKER_DIR", self.dir.path())
            .env("MESHHOST_BROKER_STORAGE", "sqlite://nisshi.db")
            .status()
            .expect("run scripts/broker.sh");
        assert!(status.success(), "scripts/broker.sh {command} failed");
    }

    /// Start it (again, on the same data).
    pub fn up(&self) {
        self.script("start");
    }

    /// Stop it (SIGTERM), and wait until its port is closed.
    pub fn down(&self) {
        self.script("stop");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(format!("127.0.0.1:{}", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "the broker did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        OWN_BROKER.with(|own| *own.borrow_mut() = None);
        let _ = Command::new(workspace().join("scripts/broker.sh"))
            .args(["stop", &self.port])
            .env("MESHHOST_BROKER_DIR", self.dir.path())
            .status();
    }
}

/// The topics of one pipeline test: `<prefix>-in` and `<prefix>-out` with `partitions`
/// partitions, and the dead-letter topic `<prefix>-dlq` with one, each name made unique.
pub fn pipeline_topics(prefix: &str, partitions: i32) -> (String, String, String) {
    let (input, output, dead_letter) =
        (unique(&format!("{prefix}-in")), unique(&format!("{prefix}-out")), unique(&format!("{prefix}-dlq")));
    create_topic(&input, partitions);
    create_topic(&output, partitions);
    create_topic(&dead_letter, 1);
    (input, output, dead_letter)
}

/// Add a `kafka:` section (text with its own trailing newline) after the pipeline file's first line.
pub fn add_kafka_section(pipeline: &Path, section: &str) {
    let text = std::fs::read_to_string(pipeline).unwrap();
    std::fs::write(pipeline, text.replacen('\n', &format!("\n{section}"), 1)).unwrap();
}

/// Delete a topic.
pub fn delete_topic(name: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", broker()).create().expect("admin client");
    for result in block_on(admin.delete_topics(&[name], &AdminOptions::new())).expect("delete_topics") {
        result.unwrap_or_else(|(topic, code)| panic!("delete topic {topic}: {code}"));
    }
}

/// A record to produce or that was read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TestRecord {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl TestRecord {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Produce `(key, value)` pairs; the partition is the key's (murmur2, as meshhost's producer).
/// A record to produce: key and value (`None` value: a tombstone).
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

pub fn produce(topic: &str, records: &[KeyValue]) {
    produce_into(topic, None, records)
}

/// Produce `records` into one partition of `topic`.
pub fn produce_to_partition(topic: &str, partition: i32, records: &[KeyValue]) {
    produce_into(topic, Some(partition), records)
}

fn produce_into(topic: &str, partition: Option<i32>, records: &[KeyValue]) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    for (key, value) in records {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).headers(OwnedHeaders::new().insert(Header { key: "origin", value: Some("test") }));
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = value {
            record = record.payload(value.as_slice());
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Read every record of `topic` from the beginning until `count` were read (or `timeout`).
pub fn read(topic: &str, count: usize, timeout: Duration) -> Vec<TestRecord> {
    let consumer = consumer();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + timeout;
    while records.len() < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            records.push(TestRecord {
                partition: message.partition(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec())).collect())
                    .unwrap_or_default(),
            });
        }
    }
    records
}

/// Read until the topic has been quiet for `quiet` after at least `count` records, to catch
/// records that should not be there.
pub fn read_all(topic: &str, count: usize, timeout: Duration) -> Vec<TestRecord> {
    let mut records = read(topic, count, timeout);
    std::thread::sleep(Duration::from_millis(500));
    let again = read(topic, usize::MAX, Duration::from_secs(3));
    if again.len() > records.len() {
        records = again;
    }
    records
}

/// High watermark of each partition.
pub fn end_offsets(topic: &str) -> HashMap<i32, i64> {
    let consumer = consumer();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.id(), consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(5)).expect("watermarks").1))
        .collect()
}

/// Offsets committed by consumer group `group` on `topic`.
pub fn committed_offsets(group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in end_offsets(topic).keys() {
        list.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    committed
        .elements()
        .iter()
        .map(|e| {
            (
                e.partition(),
                match e.offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                },
            )
        })
        .collect()
}

/// A pipeline file written to a temporary directory, with the schema files it names.
pub struct PipelineDir {
    pub dir: tempfile::TempDir,
}

impl PipelineDir {
    pub fn new() -> PipelineDir {
        PipelineDir { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

/// Run `meshhost ARGS...` in `dir` (default: the test's directory); (exit code, stdout, stderr).
pub fn meshhost_in(dir: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(MESHHOST);
    command.args(args);
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().expect("run meshhost");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Run `meshhost ARGS...`; (exit code, stdout, stderr).
pub fn meshhost(args: &[&str]) -> (i32, String, String) {
    meshhost_in(None, args)
}

/// `meshhost validate PIPELINE`; (exit code, stdout, stderr).
pub fn validate(pipeline: &Path) -> (Option<i32>, String, String) {
    let (code, stdout, stderr) = meshhost(&["validate", pipeline.to_str().unwrap()]);
    (Some(code), stdout, stderr)
}

/// A running `meshhost run`; its log goes to a file (a pipe nobody reads would block it).
pub struct Running {
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

/// How a run ended.
pub struct Stopped {
    pub status: std::process::ExitStatus,
    pub log: String,
}

pub fn start_run(pipeline: &Path) -> Running {
    start_run_with(pipeline, &[])
}

/// `meshhost run` with extra arguments (`--state-dir`, `--instance-id` ...).
pub fn start_run_with(pipeline: &Path, extra: &[&str]) -> Running {
    let log = tempfile::NamedTempFile::new().expect("log file");
    let child = Command::new(MESHHOST)
        .args(["run", pipeline.to_str().unwrap(), "--bootstrap-servers", broker()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("log file"))
        .spawn()
        .expect("start meshhost");
    Running { child: Some(child), log }
}

impl Running {
    /// The log so far.
    pub fn log_so_far(&self) -> String {
        self.log_text()
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) -> Stopped {
        let mut child = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("meshhost did not stop within 60 s of SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Stopped { status, log: self.log_text() }
    }

    /// Wait for the run to end by itself.
    pub fn wait_for_exit(mut self, timeout: Duration) -> Stopped {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("meshhost did not exit within {timeout:?}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Stopped { status, log: self.log_text() }
    }

    /// SIGKILL: no drain, no flush, no commit.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Assert a stopped run exited 0, showing its log otherwise.
pub fn assert_clean_exit(stopped: &Stopped) {
    assert!(stopped.status.success(), "meshhost exited with {:?}\nlog:\n{}", stopped.status, stopped.log);
}

pub use meshhost::kafka::block_on;

/// A `meshhost catalog serve` on its own topic and a free port, stopped when dropped.
pub struct CatalogServer {
    child: Child,
    pub url: String,
    pub topic: String,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl CatalogServer {
    /// A server on a new catalog topic.
    pub fn start() -> CatalogServer {
        CatalogServer::start_on(&unique("catalog"))
    }

    /// A server on `topic` (another server's, to share its catalog).
    pub fn start_on(topic: &str) -> CatalogServer {
        CatalogServer::start_at(topic, free_port())
    }

    fn start_at(topic: &str, port: u16) -> CatalogServer {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(MESHHOST)
            .args(["catalog", "serve", "--listen", &listen, "--bootstrap-servers", broker(), "--topic", topic])
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("start meshhost catalog serve");
        let server = CatalogServer { child, url: format!("http://{listen}"), topic: topic.to_string(), port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(
                Instant::now() < deadline,
                "catalog server did not listen; log:\n{}",
                std::fs::read_to_string(server.log.path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Stop this server and start another on the same topic and port.
    pub fn restart(mut self) -> CatalogServer {
        self.stop();
        CatalogServer::start_at(&self.topic.clone(), self.port)
    }

    /// SIGTERM, and wait (nothing if it already stopped).
    pub fn stop(&mut self) {
        if self.child.try_wait().expect("wait").is_none() {
            Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill");
            self.child.wait().expect("wait");
        }
    }
}

impl Drop for CatalogServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `tests/interop/schema_registry.py ARGS...` with the venv's python (scripts/pyenv.sh);
/// (exit code, stdout, stderr).
pub fn python(args: &[&str]) -> (i32, String, String) {
    static PYTHON: OnceLock<String> = OnceLock::new();
    let python = PYTHON.get_or_init(|| {
        let output = Command::new(workspace().join("scripts/pyenv.sh")).output().expect("run scripts/pyenv.sh");
        assert!(output.status.success(), "scripts/pyenv.sh failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    });
    let output = Command::new(python)
        .arg(workspace().join("tests/interop/schema_registry.py"))
        .args(args)
        .output()
        .expect("run python");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// [`python`], which must succeed; its stdout as JSON.
pub fn python_json(args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = python(args);
    assert_eq!(code, 0, "schema_registry.py {args:?} failed\nstdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// [`python`], which must fail with a registry error; the error's JSON.
pub fn python_error(args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = python(args);
    assert_eq!(
        code, 3,
        "schema_registry.py {args:?} should fail with a registry error\nstdout: {stdout}\nstderr: {stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// A movie schema, version 1, for the Schema Registry and catalog tests.
pub const MOVIE_V1: &str = r#"{"type": "record", "name": "Movie", "namespace": "demo", "fields": [
  {"name": "id", "type": "long", "doc": "the catalog id"},
  {"name": "title", "type": "string"},
  {"name": "year", "type": "int"}]}"#;

/// Version 2: v1 plus a field with a default (BACKWARD compatible).
pub const MOVIE_V2: &str = r#"{"type": "record", "name": "Movie", "namespace": "demo", "fields": [
  {"name": "id", "type": "long", "doc": "the catalog id"},
  {"name": "title", "type": "string"},
  {"name": "year", "type": "int"},
  {"name": "country", "type": "string", "default": "US"}]}"#;

/// Write JSON values to `name` in `dir`, one per line; the file's path.
pub fn jsonl(dir: &PipelineDir, name: &str, records: &[serde_json::Value]) -> String {
    let text: Vec<String> = records.iter().map(serde_json::Value::to_string).collect();
    dir.write(name, &text.join("\n")).to_str().unwrap().to_string()
}

/// Parse JSON lines (what `consume` and `tap` print).
pub fn lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Give a pipeline file a metrics listener on a free port; its address.
pub fn add_metrics_listener(pipeline: &Path) -> String {
    let listen = format!("127.0.0.1:{}", free_port());
    let mut text = std::fs::read_to_string(pipeline).unwrap();
    text.push_str(&format!("observability:\n  metrics_listen: {listen}\n"));
    std::fs::write(pipeline, text).unwrap();
    listen
}

/// The test Postgres (wal_level=logical): `MESHHOST_TEST_POSTGRES` (a port on 127.0.0.1), or
/// one this test run starts with `scripts/postgres.sh` on port 15432. Its URL, without the
/// password (`meshhost`).
pub fn postgres() -> &'static str {
    static POSTGRES: OnceLock<String> = OnceLock::new();
    POSTGRES.get_or_init(|| {
        let port = std::env::var("MESHHOST_TEST_POSTGRES").unwrap_or_else(|_| {
            let status = Command::new(workspace().join("scripts/postgres.sh"))
                .args(["start", "15432"])
                .stdout(Stdio::null())
                .status()
                .expect("run scripts/postgres.sh");
            assert!(status.success(), "scripts/postgres.sh start failed");
            "15432".to_string()
        });
        format!("postgres://meshhost@127.0.0.1:{port}/meshhost")
    })
}

/// The password of the test Postgres's user.
pub const POSTGRES_PASSWORD: &str = "meshhost";

/// Run SQL with `psql` (an independent client) against the Postgres at `url`; its output
/// (unaligned, tuples only). Panics when a statement fails.
pub fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .env("PGPASSWORD", POSTGRES_PASSWORD)
        .output()
        .expect("run psql");
    assert!(output.status.success(), "psql failed on {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Run a file of SQL statements with `psql`, each committed on its own.
pub fn psql_file(url: &str, path: &Path) {
    let output = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-f", path.to_str().unwrap()])
        .env("PGPASSWORD", POSTGRES_PASSWORD)
        .output()
        .expect("run psql");
    assert!(output.status.success(), "psql -f failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A Postgres of the test's own (`scripts/postgres.sh` on a free port), to restart; removed
/// when dropped.
pub struct OwnPostgres {
    pub port: u16,
    pub url: String,
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
        let port = free_port();
        let status = Command::new(workspace().join("scripts/postgres.sh"))
            .args(["start", &port.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/postgres.sh");
        assert!(status.success(), "scripts/postgres.sh start {port} failed");
        OwnPostgres { port, url: format!("postgres://meshhost@127.0.0.1:{port}/meshhost") }
    }

    /// Restart the server (connections are cut), keeping its data.
    pub fn restart(&self) {
        let status = Command::new(workspace().join("scripts/postgres.sh"))
            .args(["restart", &self.port.to_string()])
            .status()
            .expect("run scripts/postgres.sh");
        assert!(status.success(), "scripts/postgres.sh restart failed");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(workspace().join("scripts/postgres.sh")).args(["stop", &self.port.to_string()]).status();
    }
}
