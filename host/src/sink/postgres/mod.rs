//! The Postgres sink: records delivered as rows of a table.
//!
//! The run loop hands records over ([`Sink::send`]) and goes on; a writer thread per sink
//! takes whatever has queued (up to `batch_size` rows) and writes it in one transaction, then
//! reports each record delivered, so the loop acknowledges a source position only once its rows
//! are committed (at-least-once delivery). The modes make the effect exactly once:
//!
//! - `upsert`: a transaction's records are reduced to the last one per key (a later record of a
//!   key replaces an earlier one anyway), copied into a staging table, then one `DELETE` for the
//!   tombstones and one `INSERT ... ON CONFLICT (key) DO UPDATE` for the rest. Replaying records
//!   leaves the table as it was.
//! - `insert`: the rows are copied straight into the table, and in the same transaction each
//!   source partition's next position goes into `meshhost_offsets` beside it ([`Offsets`]); a
//!   record below it (a replay, a redelivery after a crash between the commit here and the
//!   source's acknowledgement) is not written again.
//!
//! Batching is `COPY FROM STDIN` (text format, [`row`]): one round trip for any number of rows,
//! parsed by Postgres' own input functions; see the README's Performance section for what it
//! costs against `psql`'s `\copy`.
//!
//! Failures: a row the database refuses (a constraint, a value out of range: SQLSTATE classes
//! 22 and 23) is found by writing the transaction's rows one at a time, and goes to dead letters
//! at stage `deliver` with the database's message; the others are written. A database that does
//! not answer is retried with backoff for [`RETRY_FOR`]; then the run stops, with nothing
//! acknowledged past the last transaction that committed.

pub mod row;
pub mod table;

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use meshhost_avro::Schema;
use meshhost_sdk::Header;

use self::row::{Line, RowEncoder};
use self::table::{ExistingColumn, TableChange, TableDefinition, TableError, TableName};
use crate::config::postgres::{PostgresSinkConfig, SinkMode};
use crate::sink::delivery::{BatchId, DeliveryTracker};
use crate::sink::kafka::{DeliveredCounts, KafkaSink};
use crate::sink::{Destination, OutgoingRecord, Sink, SinkError};
use crate::source::postgres::connect::{ident, Database};
use crate::topology::failure::Failure;

/// How long a database that does not answer is retried before the run stops.
pub const RETRY_FOR: Duration = Duration::from_secs(60);

/// The staging table of an upsert sink's connection (temporary: each connection has its own).
const STAGE: &str = "meshhost_stage";

/// Records queued per row of `batch_size` before `send` blocks (backpressure).
const QUEUE_BATCHES: usize = 4;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum PostgresSinkError {
    #[error("sink {sink}: cannot connect to Postgres at {address}: {message}")]
    Connect { sink: String, address: String, message: String },
    #[error("sink {sink}: {source}")]
    Table {
        sink: String,
        #[source]
        source: TableError,
    },
    #[error(
        "sink {sink}: table {table} does not exist; create it, or set create: true to have it created from the schema"
    )]
    NoTable { sink: String, table: String },
    #[error("sink {sink}: table {table} lacks column {column}; add it, or set create: true to have it added")]
    NoColumn { sink: String, table: String, column: String },
    #[error("sink {sink}: Postgres at {address}: {message}")]
    Statement { sink: String, address: String, message: String },
}

/// A record handed to the sink, owned (the writer thread keeps it until it is committed).
struct Pending {
    batch: BatchId,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
    timestamp: Option<i64>,
    /// Source topic (or table), partition and position: a dead letter's headers.
    origin: (String, i32, i64),
}

enum Message {
    Record(Row),
    /// Answer once everything sent before is committed (or failed).
    Flush(std::sync::mpsc::Sender<()>),
}

/// Where a refused row goes: the run's Kafka producer and dead-letter topic.
pub struct DeadLetters {
    pub kafka: Arc<KafkaSink>,
    pub topic: Option<String>,
    /// Counted there too (`meshhost_dead_lettered_total`, stage `deliver`).
    pub metrics: Option<Arc<crate::observe::PipelineMetrics>>,
}

/// One `postgres:` sink.
pub struct PostgresSink {
    destination: String,
    /// Records become COPY lines on the thread that sends them, so that the writer thread only
    /// waits for the database (measured: the writer encoding them too was the bottleneck).
    encoder: RowEncoder,
    mode: SinkMode,
    queue: Option<SyncSender<Message>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl PostgresSink {
    /// Connect, make sure the table takes the schema's records (creating or extending it with
    /// `create: true`), and start the writer.
    pub fn open(
        pipeline: &str,
        id: &str,
        config: &PostgresSinkConfig,
        schema: Arc<Schema>,
        tracker: Arc<DeliveryTracker>,
        dead_letters: DeadLetters,
        counts: Arc<DeliveredCounts>,
    ) -> Result<PostgresSink, PostgresSinkError> {
        let (definition, leading) = definition(id, config, &schema)?;
        let database = Database::new(&config.url, config.password_env.as_deref());
        let mut client = connect(&database).map_err(|error| PostgresSinkError::Connect {
            sink: id.into(),
            address: database.address.clone(),
            message: describe(&error),
        })?;
        prepare_table(id, config, &definition, &database, &mut client, true)?;
        let mode = config.mode();
        let statement = |error: postgres::Error| PostgresSinkError::Statement {
            sink: id.to_string(),
            address: database.address.clone(),
            message: describe(&error),
        };
        match mode {
            SinkMode::Upsert => client.batch_execute(&create_stage_sql(&definition)).map_err(statement)?,
            SinkMode::Insert => client.batch_execute(&Offsets::create_sql(&definition.table)).map_err(statement)?,
        }
        let encoder = RowEncoder::new(schema, &definition, leading);
        let (queue, messages) = std::sync::mpsc::sync_channel(config.batch_size() * QUEUE_BATCHES);
        let writer = Writer {
            pipeline: pipeline.to_string(),
            sink: id.to_string(),
            destination: config.destination(),
            mode,
            batch_size: config.batch_size(),
            definition,
            database,
            client: Some(client),
            tracker,
            dead_letters,
            counts,
            failed: None,
        };
        let handle = std::thread::Builder::new()
            .name(format!("sink-{id}"))
            .spawn(move || writer.run(messages))
            .expect("cannot start a sink writer thread");
        Ok(PostgresSink {
            destination: config.destination(),
            encoder,
            mode,
            queue: Some(queue),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// The name the run loop routes this sink's records under.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    fn queue(&self) -> &SyncSender<Message> {
        self.queue.as_ref().expect("present until dropped")
    }
}

impl Sink for PostgresSink {
    fn send(&self, _destination: Destination<'_>, record: OutgoingRecord<'_>, batch: BatchId) -> Result<(), SinkError> {
        let origin = record.origin.map(|o| (o.topic.to_string(), o.partition, o.position)).unwrap_or_default();
        let pending = Pending {
            batch,
            key: record.key.map(<[u8]>::to_vec),
            value: record.value.map(<[u8]>::to_vec),
            headers: record.headers.to_vec(),
            timestamp: record.timestamp,
            origin,
        };
        let staged = self.mode == SinkMode::Upsert;
        let line = match (&pending.value, staged) {
            (Some(value), _) => self.encoder.line(pending.key.as_deref(), value, staged).map_err(|e| e.to_string()),
            (None, true) => self.encoder.delete_line(pending.key.as_deref()).map_err(|e| e.to_string()),
            (None, false) => Err("a tombstone (no value) for a table written in insert mode".to_string()),
        };
        self.queue().send(Message::Record(Row { pending, line })).map_err(|_| SinkError::Send {
            topic: self.destination.clone(),
            source: "the sink's writer stopped".into(),
        })
    }

    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let (done, wait) = std::sync::mpsc::channel();
        let stopped = || SinkError::Flush(format!("{}: the sink's writer stopped", self.destination).into());
        self.queue().send(Message::Flush(done)).map_err(|_| stopped())?;
        match wait.recv_timeout(timeout) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(SinkError::Flush(format!("{}: not written within {timeout:?}", self.destination).into()))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(stopped()),
        }
    }
}

impl Drop for PostgresSink {
    fn drop(&mut self) {
        drop(self.queue.take()); // the writer ends when its queue closes
        if let Some(handle) = self.writer.lock().unwrap().take() {
            let _ = handle.join();
        }
    }
}

/// A connection that keeps notices ("already exists, skipping") out of the log.
fn connect(database: &Database) -> Result<postgres::Client, postgres::Error> {
    let mut client = postgres::Client::connect(database.uri(), postgres::NoTls)?;
    client.batch_execute("SET client_min_messages TO warning")?;
    Ok(client)
}

/// The database's own message (and detail) when it has one.
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => error.to_string(),
    }
}

/// What a failed statement means for the rows it wrote.
#[derive(Debug, PartialEq, Eq)]
enum Fault {
    /// The database refused a row's data (SQLSTATE class 22 data exception, 23 constraint).
    Row,
    /// The database is away or restarting: try again.
    Transient,
    /// Anything else (a missing table, a permission): the run stops.
    Fatal,
}

fn fault(error: &postgres::Error) -> Fault {
    match error.code().map(|code| code.code()) {
        Some(code) if code.starts_with("22") || code.starts_with("23") => Fault::Row,
        // Connection exceptions, shutdowns, serialization failures and deadlocks.
        Some(code) if code.starts_with("08") || code.starts_with("57P") || code == "40001" || code == "40P01" => {
            Fault::Transient
        }
        Some(_) => Fault::Fatal,
        None => Fault::Transient, // no answer from the server: the connection is gone
    }
}

/// The table a sink's records want, and how many leading columns hold the record key. Key
/// columns that are fields of the records come from the value; names that are not, from the
/// record key.
fn definition(
    id: &str,
    config: &PostgresSinkConfig,
    schema: &Schema,
) -> Result<(TableDefinition, usize), PostgresSinkError> {
    let (schema_name, table_name) = config.schema_and_table();
    let table = TableName::new(schema_name, table_name);
    let fields: Vec<&str> =
        schema.root_record().map(|r| r.fields.iter().map(|f| f.name.as_str()).collect()).unwrap_or_default();
    let by_record_key = !config.key.is_empty() && config.key.iter().all(|k| !fields.contains(&k.as_str()));
    let definition = if by_record_key {
        TableDefinition::keyed_by_record_key(table, schema, &config.key)
    } else {
        TableDefinition::from_schema(table, schema, &config.key)
    }
    .map_err(|source| PostgresSinkError::Table { sink: id.to_string(), source })?;
    Ok((definition, if by_record_key { config.key.len() } else { 0 }))
}

/// `meshhost validate`: whether the sink's table takes its records (or would be created or
/// extended with `create: true`). `Ok(None)` when the database does not answer.
pub fn check_table(
    id: &str,
    config: &PostgresSinkConfig,
    schema: &Schema,
) -> Result<Option<String>, PostgresSinkError> {
    let (definition, _) = definition(id, config, schema)?;
    let database = Database::new(&config.url, config.password_env.as_deref());
    let Ok(mut client) = connect(&database) else { return Ok(None) };
    prepare_table(id, config, &definition, &database, &mut client, false).map(Some)
}

/// Create the table (or add columns) as `create:` allows, when `apply`; check that it takes
/// the schema. What was (or would be) done.
fn prepare_table(
    id: &str,
    config: &PostgresSinkConfig,
    definition: &TableDefinition,
    database: &Database,
    client: &mut postgres::Client,
    apply: bool,
) -> Result<String, PostgresSinkError> {
    let statement = |error: postgres::Error| PostgresSinkError::Statement {
        sink: id.to_string(),
        address: database.address.clone(),
        message: describe(&error),
    };
    let table = &definition.table;
    let existing: Vec<ExistingColumn> = client
        .query(
            "SELECT column_name::text, udt_name::text, is_nullable = 'YES' FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&table.schema, &table.name],
        )
        .map_err(statement)?
        .into_iter()
        .map(|row| ExistingColumn { name: row.get(0), data_type: row.get(1), nullable: row.get(2) })
        .collect();
    let mut statements = Vec::new();
    let done = if existing.is_empty() {
        if !config.create {
            return Err(PostgresSinkError::NoTable { sink: id.into(), table: table.to_string() });
        }
        statements.push(definition.create_sql());
        format!("table {table} created from the schema")
    } else {
        match definition.changes(&existing).map_err(|source| PostgresSinkError::Table { sink: id.into(), source })? {
            TableChange::UpToDate => format!("table {table} takes the records"),
            TableChange::AddColumns(added) => {
                if !config.create {
                    let column = added[0].column.clone();
                    return Err(PostgresSinkError::NoColumn { sink: id.into(), table: table.to_string(), column });
                }
                let names: Vec<String> = added.iter().map(|a| a.column.clone()).collect();
                statements.extend(added.into_iter().map(|a| a.sql));
                format!("table {table}: columns added for new optional fields: {}", names.join(", "))
            }
        }
    };
    if apply {
        for sql in &statements {
            client.batch_execute(sql).map_err(statement)?;
        }
        if !statements.is_empty() {
            tracing::info!(sink = id, "{done}");
        }
    }
    Ok(done)
}

/// The columns, quoted and comma-separated.
fn column_list(definition: &TableDefinition) -> String {
    definition.columns.iter().map(|c| ident(&c.name)).collect::<Vec<_>>().join(", ")
}

/// The connection's staging table: the table's columns (types, no constraints) and whether
/// the row is a delete; emptied at every commit.
fn create_stage_sql(definition: &TableDefinition) -> String {
    format!(
        "CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} ON COMMIT DELETE ROWS AS \
         SELECT {}, false AS meshhost_delete FROM {} WITH NO DATA",
        column_list(definition),
        definition.table.quoted()
    )
}

/// The statements that apply the staged rows to the table: the deletes (when `deletes`), then
/// the upserts (when `upserts`).
fn merge_sql(definition: &TableDefinition, deletes: bool, upserts: bool) -> String {
    let table = definition.table.quoted();
    let columns = column_list(definition);
    let key: Vec<String> = definition.key.iter().map(|k| ident(k)).collect();
    let mut statements = Vec::new();
    if deletes {
        let matches: Vec<String> = key.iter().map(|k| format!("t.{k} = s.{k}")).collect();
        statements.push(format!(
            "DELETE FROM {table} t USING {STAGE} s WHERE s.meshhost_delete AND {}",
            matches.join(" AND ")
        ));
    }
    if upserts {
        let updates: Vec<String> = definition
            .columns
            .iter()
            .filter(|c| !definition.key.contains(&c.name))
            .map(|c| format!("{0} = EXCLUDED.{0}", ident(&c.name)))
            .collect();
        let on_conflict =
            if updates.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}", updates.join(", ")) };
        statements.push(format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM {STAGE} WHERE NOT meshhost_delete \
             ON CONFLICT ({}) {on_conflict}",
            key.join(", ")
        ));
    }
    statements.join("; ")
}

/// The sink's thread: writes what queues, in transactions.
struct Writer {
    pipeline: String,
    sink: String,
    destination: String,
    mode: SinkMode,
    batch_size: usize,
    definition: TableDefinition,
    database: Database,
    /// `None` after the connection broke, until it is made again.
    client: Option<postgres::Client>,
    tracker: Arc<DeliveryTracker>,
    dead_letters: DeadLetters,
    counts: Arc<DeliveredCounts>,
    /// Once set, every later record fails with it: nothing is written past a failure.
    failed: Option<String>,
}

/// A record of the transaction being written, with its COPY line (or why it has none).
struct Row {
    pending: Pending,
    line: Result<Line, String>,
}

impl Writer {
    fn run(mut self, messages: Receiver<Message>) {
        let mut rows: Vec<Row> = Vec::with_capacity(self.batch_size);
        let mut flushes = Vec::new();
        while let Ok(first) = messages.recv() {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Record(row) => rows.push(row),
                    Message::Flush(done) => flushes.push(done),
                }
                if rows.len() < self.batch_size {
                    next = messages.try_recv().ok();
                }
            }
            if !rows.is_empty() {
                self.write(std::mem::take(&mut rows));
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Write `rows` in one transaction (refused rows to dead letters), then report each.
    fn write(&mut self, rows: Vec<Row>) {
        if let Some(failure) = &self.failed {
            for row in rows {
                self.tracker.delivered(row.pending.batch, Some(failure.clone()));
            }
            return;
        }
        let (writable, unwritable): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|row| row.line.is_ok());
        for row in unwritable {
            let why = row.line.as_ref().err().cloned().unwrap_or_default();
            self.dead_letter(row.pending, why);
        }
        // Upsert: the last record of each key is the row; earlier ones are delivered with it.
        let written: Vec<&Row> = match self.mode {
            SinkMode::Insert => writable.iter().collect(),
            SinkMode::Upsert => {
                let mut last: HashMap<&[String], usize> = HashMap::new();
                for (index, row) in writable.iter().enumerate() {
                    last.insert(&line(row).key, index);
                }
                let mut kept: Vec<usize> = last.into_values().collect();
                kept.sort_unstable();
                kept.into_iter().map(|index| &writable[index]).collect()
            }
        };
        match self.commit_retrying(&written) {
            Ok(()) => self.delivered(writable),
            Err((Fault::Row, _)) => self.one_by_one(writable),
            Err((_, failure)) => {
                for row in writable {
                    self.tracker.delivered(row.pending.batch, Some(failure.clone()));
                }
            }
        }
    }

    /// After a refused transaction: each row in its own, the refused ones to dead letters.
    fn one_by_one(&mut self, rows: Vec<Row>) {
        for row in rows {
            match self.commit_retrying(&[&row]) {
                Ok(()) => self.delivered(vec![row]),
                Err((Fault::Row, why)) => self.dead_letter(row.pending, why),
                Err((_, failure)) => self.tracker.delivered(row.pending.batch, Some(failure)),
            }
        }
    }

    /// Commit `rows`, retrying while the database is away (for [`RETRY_FOR`]). A row fault
    /// comes back with the database's message; any other failure stops the sink for good.
    fn commit_retrying(&mut self, rows: &[&Row]) -> Result<(), (Fault, String)> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(200);
        loop {
            let (fault, message) = match self.commit(rows) {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            match fault {
                Fault::Row => return Err((Fault::Row, format!("Postgres refused the row: {message}"))),
                Fault::Transient if Instant::now() < deadline => {
                    tracing::warn!(sink = %self.sink, address = %self.database.address, "Postgres: {message}; retrying in {pause:?}");
                    self.client = None;
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                fault => {
                    let failure = format!(
                        "sink {}: Postgres at {}: {message}{}",
                        self.sink,
                        self.database.address,
                        if fault == Fault::Transient { format!(" (retried for {RETRY_FOR:?})") } else { String::new() }
                    );
                    self.failed = Some(failure.clone());
                    return Err((fault, failure));
                }
            }
        }
    }

    /// One transaction: COPY the rows into the staging table and merge (upsert), or into the
    /// table with the sources' next positions (insert).
    fn commit(&mut self, rows: &[&Row]) -> Result<(), (Fault, String)> {
        let db = |error: postgres::Error| (fault(&error), describe(&error));
        if self.client.is_none() {
            let mut client = connect(&self.database).map_err(db)?;
            if self.mode == SinkMode::Upsert {
                client.batch_execute(&create_stage_sql(&self.definition)).map_err(db)?;
            }
            self.client = Some(client);
        }
        let columns = column_list(&self.definition);
        let client = self.client.as_mut().expect("connected above");
        let mut transaction = client.transaction().map_err(db)?;
        let (copy, rows) = match self.mode {
            SinkMode::Upsert => (format!("COPY {STAGE} ({columns}, meshhost_delete) FROM STDIN"), rows.to_vec()),
            SinkMode::Insert => {
                let copy = format!("COPY {} ({columns}) FROM STDIN", self.definition.table.quoted());
                let offsets = Offsets { table: &self.definition.table, pipeline: &self.pipeline, sink: &self.sink };
                (copy, offsets.unwritten(&mut transaction, rows).map_err(db)?)
            }
        };
        let mut data = Vec::with_capacity(rows.iter().map(|row| line(row).text.len()).sum());
        for row in &rows {
            data.extend_from_slice(line(row).text.as_bytes());
        }
        let mut writer = transaction.copy_in(&copy).map_err(db)?;
        writer.write_all(&data).map_err(|e| (Fault::Transient, e.to_string()))?;
        writer.finish().map_err(db)?;
        if self.mode == SinkMode::Upsert {
            let deletes = rows.iter().any(|row| line(row).delete);
            let upserts = rows.iter().any(|row| !line(row).delete);
            transaction.batch_execute(&merge_sql(&self.definition, deletes, upserts)).map_err(db)?;
        }
        transaction.commit().map_err(db)
    }

    fn delivered(&self, rows: Vec<Row>) {
        self.counts.add(&self.destination, rows.len() as u64);
        for row in rows {
            self.tracker.delivered(row.pending.batch, None);
        }
    }

    /// Send a refused record to dead letters: its delivery there stands for its delivery here.
    /// The dead letter is the record as the sink got it (the row's value), with the headers of
    /// the source record it came from.
    fn dead_letter(&mut self, pending: Pending, why: String) {
        let failure = Failure::deliver(format!("sink {}: {why}", self.sink));
        let (origin, partition, position) = &pending.origin;
        tracing::debug!(sink = %self.sink, %origin, partition, position, error = %failure.error, "dead letter");
        let Some(topic) = &self.dead_letters.topic else {
            let message = format!(
                "record {origin}/{partition}@{position} {failure}; no dead_letter topic is configured, so the pipeline stops rather than lose it"
            );
            self.failed.get_or_insert(message.clone());
            self.tracker.delivered(pending.batch, Some(message));
            return;
        };
        let mut headers = pending.headers.clone();
        headers.extend(failure.dead_letter_headers(origin, *partition, *position));
        let record = OutgoingRecord {
            key: pending.key.as_deref(),
            value: pending.value.as_deref(),
            headers: &headers,
            timestamp: pending.timestamp,
            origin: None,
        };
        let destination = Destination { topic, partition: None };
        if let Err(error) = self.dead_letters.kafka.send(destination, record, pending.batch) {
            self.tracker.delivered(pending.batch, Some(error.to_string()));
            return;
        }
        if let Some(metrics) = &self.dead_letters.metrics {
            metrics.dead_lettered(&self.sink, failure.stage.as_str());
        }
    }
}

/// An insert sink's progress, kept in `meshhost_offsets` beside its table and moved in the
/// transaction that writes the rows: the next position of each source partition it has
/// written. A record below it is in the table already (a replay, or a redelivery after a crash
/// between the commit here and the source's acknowledgement), and is not written again.
struct Offsets<'a> {
    table: &'a TableName,
    pipeline: &'a str,
    sink: &'a str,
}

impl Offsets<'_> {
    fn create_sql(table: &TableName) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}.meshhost_offsets (pipeline text, sink text, source text, partition integer, \
             next_position bigint NOT NULL, PRIMARY KEY (pipeline, sink, source, partition))",
            ident(&table.schema)
        )
    }

    /// The rows not yet written (locking the sink's progress until the transaction ends), and
    /// the progress moved past all of `rows`.
    fn unwritten<'r>(
        &self,
        transaction: &mut postgres::Transaction<'_>,
        rows: &[&'r Row],
    ) -> Result<Vec<&'r Row>, postgres::Error> {
        let schema = ident(&self.table.schema);
        let written: HashMap<(String, i32), i64> = transaction
            .query(
                &format!(
                    "SELECT source, partition, next_position FROM {schema}.meshhost_offsets \
                     WHERE pipeline = $1 AND sink = $2 FOR UPDATE"
                ),
                &[&self.pipeline, &self.sink],
            )?
            .into_iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        let mut unwritten = Vec::with_capacity(rows.len());
        for row in rows {
            let (source, partition, position) = &row.pending.origin;
            let done = written.get(&(source.clone(), *partition)).copied().unwrap_or(i64::MIN);
            if *position >= done {
                unwritten.push(*row);
            }
            let after = next.entry((source.as_str(), *partition)).or_insert(position + 1);
            *after = (*after).max(position + 1);
        }
        let upsert = format!(
            "INSERT INTO {schema}.meshhost_offsets VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (pipeline, sink, source, partition) \
             DO UPDATE SET next_position = GREATEST(meshhost_offsets.next_position, EXCLUDED.next_position)"
        );
        for ((source, partition), position) in next {
            transaction.execute(&upsert, &[&self.pipeline, &self.sink, &source, &partition, &position])?;
        }
        Ok(unwritten)
    }
}

fn line(row: &Row) -> &Line {
    row.line.as_ref().expect("only rows with a line are written")
}
