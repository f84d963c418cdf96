//! The Postgres sink: records delivered as rows of a table.
//!
//! The run loop hands records over ([`Sink::send`], each already a COPY line) and goes on; a
//! writer thread per sink takes the whole run-loop batches that have queued (up to `batch_size`
//! rows) and writes them in one transaction, then reports each record delivered, so the loop
//! acknowledges a source position only once its rows are committed (at-least-once delivery).
//! The modes make the effect exactly once:
//!
//! - `upsert`: a transaction's records are reduced to the last one per key (a later record of a
//!   key replaces an earlier one anyway), copied into a staging table, then one `DELETE` for the
//!   tombstones and one `INSERT ... ON CONFLICT (key) DO UPDATE` for the rest. Replaying records
//!   leaves the table as it was.
//! - `insert`: the rows are copied straight into the table, and in the same transaction each
//!   source partition's position after them goes into `meshhost_offsets` beside it
//!   ([`Offsets`]); a record below it (a replay, a redelivery after a crash between the commit
//!   here and the source's acknowledgement) is not written again.
//!
//! Batching is `COPY FROM STDIN` (text format, [`row`]): one round trip for any number of rows,
//! parsed by Postgres' own input functions; see the README's Performance section for what it
//! costs against `psql`'s `\copy`.
//!
//! Failures: a row the database refuses (a constraint, a value out of range: SQLSTATE classes
//! 22 and 23) goes to dead letters at stage `deliver` with the database's message, and the
//! others are written: upsert writes the records one transaction each to find it; insert writes
//! the same transaction again with a savepoint per row, and commits it only once the refused
//! rows' dead letters are in the topic (the positions move past them). A database that does not
//! answer is retried with backoff for [`RETRY_FOR`]; then the run stops, with nothing
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
use crate::topology::breaker::Breaker;
use crate::topology::failure::Failure;

/// How long a database that does not answer is retried before the run stops.
pub const RETRY_FOR: Duration = Duration::from_secs(60);

/// The staging table of an upsert sink's connection (temporary: each connection has its own).
const STAGE: &str = "meshhost_stage";

/// The writer's queue holds this many transactions' worth of records (`batch_size` each);
/// `send` blocks when it is full (backpressure).
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
    #[error(
        "sink {sink}: table {table} has no primary key or unique index on ({key}), which upserts need; add one, or name its columns in key:"
    )]
    NoUniqueKey { sink: String, table: String, key: String },
    #[error("sink {sink}: Postgres at {address}: {message}")]
    Statement { sink: String, address: String, message: String },
}

impl PostgresSinkError {
    fn statement(sink: &str, database: &Database, error: postgres::Error) -> PostgresSinkError {
        PostgresSinkError::Statement { sink: sink.into(), address: database.address.clone(), message: describe(&error) }
    }
}

/// A record handed to the sink, owned (the writer thread keeps it until it is committed).
#[derive(Clone)]
struct Pending {
    batch: BatchId,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<Header>,
    timestamp: Option<i64>,
    origin: RecordOrigin,
}

/// [`crate::sink::Origin`], owned; the names are shared (interned), not copied per record.
#[derive(Debug, Clone, Default)]
struct RecordOrigin {
    source: Arc<str>,
    topic: Arc<str>,
    partition: i32,
    position: i64,
    durable: bool,
}

enum Message {
    Record(Row),
    /// The run loop finished a batch: the records before this are all of it.
    Sealed,
    /// Answer once everything sent before is committed (or failed).
    Flush(std::sync::mpsc::Sender<()>),
}

/// What a table sink reports to: the run's delivery tracker and counts, and where refused rows
/// go — the run's Kafka producer and dead-letter topic, and its metrics.
pub struct Reporting {
    pub tracker: Arc<DeliveryTracker>,
    /// Rows committed, as the sink's sent records.
    pub counts: Arc<DeliveredCounts>,
    pub kafka: Arc<KafkaSink>,
    pub dead_letter_topic: Option<String>,
    /// Dead letters counted there too (`meshhost_dead_lettered_records_total`, stage `deliver`).
    pub metrics: Option<Arc<crate::observe::PipelineMetrics>>,
    /// `dead_letter: {max_ratio, window}`: the share of refused rows that stops the run.
    pub failure_limit: Option<crate::config::FailureRateLimit>,
}

/// One `postgres:` sink.
pub struct PostgresSink {
    destination: String,
    /// Records become COPY lines on the thread that sends them, so that the writer thread only
    /// waits for the database (measured: the writer encoding them too was the bottleneck).
    encoder: RowEncoder,
    mode: SinkMode,
    /// The source ids and topics records come from (a handful), shared by their records.
    names: Mutex<Vec<Arc<str>>>,
    queue: Option<SyncSender<Message>>,
    writer: Option<JoinHandle<()>>,
}

impl PostgresSink {
    /// Connect, make sure the table takes the schema's records (creating or extending it with
    /// `create: true`), and start the writer.
    pub fn open(
        pipeline: &str,
        id: &str,
        destination: &str,
        config: &PostgresSinkConfig,
        schema: Arc<Schema>,
        reporting: Reporting,
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
        let statement = |error| PostgresSinkError::statement(id, &database, error);
        match mode {
            SinkMode::Upsert => client.batch_execute(&create_stage_sql(&definition)).map_err(statement)?,
            SinkMode::Insert => {
                client.batch_execute(&Offsets::create_sql(&definition.table.schema)).map_err(statement)?
            }
        }
        let encoder = RowEncoder::new(schema, &definition, leading);
        let (queue, messages) = std::sync::mpsc::sync_channel(config.batch_size() * QUEUE_BATCHES);
        let breaker = reporting.failure_limit.map(Breaker::new);
        let writer = Writer {
            pipeline: pipeline.to_string(),
            sink: id.to_string(),
            destination: destination.to_string(),
            mode,
            batch_size: config.batch_size(),
            definition,
            database,
            client: Some(client),
            reporting,
            failed: None,
            unsettled_dead_letters: false,
            breaker,
        };
        let handle = std::thread::Builder::new()
            .name(format!("sink-{id}"))
            .spawn(move || writer.run(messages))
            .expect("cannot start a sink writer thread");
        Ok(PostgresSink {
            destination: destination.to_string(),
            encoder,
            mode,
            names: Mutex::default(),
            queue: Some(queue),
            writer: Some(handle),
        })
    }

    /// The name the run loop routes this sink's records under.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    fn queue(&self) -> &SyncSender<Message> {
        self.queue.as_ref().expect("present until dropped")
    }

    fn intern(&self, name: &str) -> Arc<str> {
        let mut names = self.names.lock().expect("never poisoned");
        match names.iter().find(|known| &***known == name) {
            Some(known) => known.clone(),
            None => {
                let known: Arc<str> = name.into();
                names.push(known.clone());
                known
            }
        }
    }
}

impl Sink for PostgresSink {
    fn send(&self, _destination: Destination<'_>, record: OutgoingRecord<'_>, batch: BatchId) -> Result<(), SinkError> {
        let origin = record
            .origin
            .map(|o| RecordOrigin {
                source: self.intern(o.source),
                topic: self.intern(o.topic),
                partition: o.partition,
                position: o.position,
                durable: o.durable,
            })
            .unwrap_or_default();
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

    fn sealed(&self, _batch: BatchId) {
        let _ = self.queue().send(Message::Sealed); // a stopped writer has failed the records already
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
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

/// A connection that keeps notices ("already exists, skipping") out of the log, and that
/// notices a database gone silent (a host that vanished sends no reset): connecting gives up
/// after 10 s, and a connection whose sent data goes unacknowledged for 30 s is dropped.
fn connect(database: &Database) -> Result<postgres::Client, postgres::Error> {
    let mut config: postgres::Config = database.uri().parse()?;
    config
        .connect_timeout(Duration::from_secs(10))
        .keepalives_idle(Duration::from_secs(10))
        .tcp_user_timeout(Duration::from_secs(30));
    let mut client = config.connect(postgres::NoTls)?;
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

/// A failed statement as what it means for the rows, and the database's message.
fn db_error(error: postgres::Error) -> (Fault, String) {
    (fault(&error), describe(&error))
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
        // Connection exceptions, shutdowns, a server starting up or full (53300 too many
        // connections), a cancelled statement, a standby not yet promoted (25006 read-only),
        // serialization failures and deadlocks.
        Some(code)
            if code.starts_with("08")
                || code.starts_with("57P")
                || ["53300", "57014", "25006", "40001", "40P01"].contains(&code) =>
        {
            Fault::Transient
        }
        Some(_) => Fault::Fatal,
        None => Fault::Transient, // no SQLSTATE: the connection failed or closed
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
    let statement = |error| PostgresSinkError::statement(id, database, error);
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
        if !definition.key.is_empty() && !has_unique_key(client, definition).map_err(statement)? {
            return Err(PostgresSinkError::NoUniqueKey {
                sink: id.into(),
                table: table.to_string(),
                key: definition.key.join(", "),
            });
        }
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

/// Whether the table has a primary key or a unique index on exactly the key columns: what
/// `INSERT ... ON CONFLICT (key)` needs.
fn has_unique_key(client: &mut postgres::Client, definition: &TableDefinition) -> Result<bool, postgres::Error> {
    let mut key = definition.key.clone();
    key.sort();
    let rows = client.query(
        "SELECT array_agg(a.attname::text ORDER BY a.attname::text) FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL GROUP BY i.indexrelid",
        &[&definition.table.quoted()],
    )?;
    Ok(rows.iter().any(|row| row.get::<_, Vec<String>>(0) == key))
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
    reporting: Reporting,
    /// Once set, every later record fails with it: nothing is written past a failure.
    failed: Option<String>,
    /// Dead letters were sent since the producer was last flushed.
    unsettled_dead_letters: bool,
    /// The rows refused among the last ones written (`dead_letter.max_ratio`).
    breaker: Option<Breaker>,
}

/// A record of the transaction being written, with its COPY line (or why it has none).
struct Row {
    pending: Pending,
    line: Result<Line, String>,
}

impl Writer {
    /// Write what queues, whole run-loop batches at a time (up to `batch_size` rows, or one
    /// larger batch): every output of a source record is then in the transaction that moves
    /// its source's position past it.
    fn run(mut self, messages: Receiver<Message>) {
        let mut rows: Vec<Row> = Vec::with_capacity(self.batch_size);
        // `rows[..sealed]` belong to batches the run loop has finished.
        let mut sealed = 0;
        let mut flushes = Vec::new();
        while let Ok(first) = messages.recv() {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Record(row) => rows.push(row),
                    Message::Sealed => sealed = rows.len(),
                    Message::Flush(done) => flushes.push(done),
                }
                if sealed < self.batch_size {
                    next = messages.try_recv().ok();
                }
            }
            if sealed > 0 {
                let rest = rows.split_off(sealed);
                self.write(std::mem::replace(&mut rows, rest));
                sealed = 0;
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Write `rows` in one transaction (refused rows to dead letters), then report each.
    fn write(&mut self, rows: Vec<Row>) {
        if self.failed.is_some() {
            return self.fail_all(rows);
        }
        let (writable, unwritable): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|row| row.line.is_ok());
        for row in unwritable {
            let why = row.line.as_ref().err().cloned().unwrap_or_default();
            self.dead_letter(row.pending, why);
        }
        if !self.dead_letters_settled() {
            return self.fail_all(writable);
        }
        match self.mode {
            SinkMode::Insert => self.append(writable),
            SinkMode::Upsert => self.upsert(writable),
        }
    }

    /// Insert mode: one transaction; when the database refuses a row, the same transaction
    /// again with each row under a savepoint, the refused ones dead-lettered before it commits.
    fn append(&mut self, rows: Vec<Row>) {
        let all: Vec<&Row> = rows.iter().collect();
        let outcome = match self.commit_retrying(&all, false) {
            Err((Fault::Row, _)) => self.commit_retrying(&all, true),
            outcome => outcome,
        };
        // Refused rows' dead letters stand for their deliveries: the rest are delivered here.
        let refused: Vec<usize> = match outcome {
            Ok(refused) => (0..rows.len()).filter(|&i| refused.iter().any(|r| std::ptr::eq(*r, &rows[i]))).collect(),
            Err(_) => return self.fail_all(rows),
        };
        let written = rows.into_iter().enumerate().filter(|(i, _)| !refused.contains(i)).map(|(_, row)| row).collect();
        self.delivered(written);
    }

    /// Upsert mode: the last record of each key is the row (earlier ones are delivered with
    /// it); when the database refuses a row, each record in a transaction of its own.
    fn upsert(&mut self, rows: Vec<Row>) {
        let mut last: HashMap<&[String], usize> = HashMap::new();
        for (index, row) in rows.iter().enumerate() {
            last.insert(&line(row).key, index);
        }
        let mut kept: Vec<usize> = last.into_values().collect();
        kept.sort_unstable();
        let written: Vec<&Row> = kept.into_iter().map(|index| &rows[index]).collect();
        match self.commit_retrying(&written, false) {
            Ok(_) => self.delivered(rows),
            Err((Fault::Row, _)) => self.one_by_one(rows),
            Err(_) => self.fail_all(rows),
        }
    }

    /// After a refused upsert transaction: each row in its own, the refused ones to dead
    /// letters (a replay of those already written changes nothing).
    fn one_by_one(&mut self, rows: Vec<Row>) {
        let mut rows = rows.into_iter();
        while let Some(row) = rows.next() {
            if !self.dead_letters_settled() {
                return self.fail_all(std::iter::once(row).chain(rows).collect());
            }
            match self.commit_retrying(&[&row], false) {
                Ok(_) => self.delivered(vec![row]),
                Err((Fault::Row, why)) => self.dead_letter(row.pending, why),
                Err(_) => return self.fail_all(std::iter::once(row).chain(rows).collect()),
            }
        }
    }

    /// The sink failed: report `rows` with its failure (nothing is written past it).
    fn fail_all(&mut self, rows: Vec<Row>) {
        let failure = self.failed.clone().unwrap_or_else(|| format!("sink {}: stopped", self.sink));
        for row in rows {
            self.reporting.tracker.delivered(row.pending.batch, Some(failure.clone()));
        }
    }

    /// Whether the writer may go on committing: it has not failed, and in insert mode every
    /// dead letter sent so far is in the dead-letter topic. An insert transaction moves the
    /// source's position past the records before it, refused ones included: a refused record
    /// whose dead letter were then lost would be skipped for good.
    fn dead_letters_settled(&mut self) -> bool {
        if self.failed.is_some() {
            return false;
        }
        if self.mode == SinkMode::Insert && std::mem::take(&mut self.unsettled_dead_letters) {
            let flushed = self.reporting.kafka.flush(Duration::from_secs(30));
            if let Some(failure) = flushed.err().map(|e| e.to_string()).or_else(|| self.reporting.tracker.failure()) {
                self.failed = Some(format!("sink {}: a dead letter was not delivered: {failure}", self.sink));
                return false;
            }
        }
        true
    }

    /// Commit `rows` (see [`Self::commit`]), retrying while the database is away (for
    /// [`RETRY_FOR`]). A row fault comes back with the database's message; any other failure
    /// stops the sink for good.
    fn commit_retrying<'r>(&mut self, rows: &[&'r Row], isolate: bool) -> Result<Vec<&'r Row>, (Fault, String)> {
        let deadline = Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(200);
        loop {
            let (fault, message) = match self.commit(rows, isolate) {
                Ok(refused) => return Ok(refused),
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
                    self.failed.get_or_insert(failure.clone());
                    return Err((fault, failure));
                }
            }
        }
    }

    /// One transaction: COPY the rows into the staging table and merge (upsert), or into the
    /// table with the sources' positions moved past them (insert). With `isolate` (insert), each
    /// row goes in under a savepoint: the rows the database refuses are dead-lettered, and
    /// returned, before the transaction commits.
    fn commit<'r>(&mut self, rows: &[&'r Row], isolate: bool) -> Result<Vec<&'r Row>, (Fault, String)> {
        let mut client = match self.client.take() {
            Some(client) => client,
            None => {
                let mut client = connect(&self.database).map_err(db_error)?;
                if self.mode == SinkMode::Upsert {
                    client.batch_execute(&create_stage_sql(&self.definition)).map_err(db_error)?;
                }
                client
            }
        };
        let outcome = self.commit_on(&mut client, rows, isolate);
        if !matches!(outcome, Err((Fault::Transient, _))) {
            self.client = Some(client);
        }
        outcome
    }

    fn commit_on<'r>(
        &mut self,
        client: &mut postgres::Client,
        rows: &[&'r Row],
        isolate: bool,
    ) -> Result<Vec<&'r Row>, (Fault, String)> {
        let columns = column_list(&self.definition);
        let mut transaction = client.transaction().map_err(db_error)?;
        let (copy, rows) = match self.mode {
            SinkMode::Upsert => (format!("COPY {STAGE} ({columns}, meshhost_delete) FROM STDIN"), rows.to_vec()),
            SinkMode::Insert => {
                let copy = format!("COPY {} ({columns}) FROM STDIN", self.definition.table.quoted());
                let offsets = Offsets { table: &self.definition.table, pipeline: &self.pipeline, sink: &self.sink };
                (copy, offsets.unwritten(&mut transaction, rows).map_err(db_error)?)
            }
        };
        let mut refused = Vec::new();
        if isolate {
            for row in &rows {
                let mut savepoint = transaction.savepoint("meshhost_row").map_err(db_error)?;
                match copy_lines(&mut savepoint, &copy, &[row]) {
                    Ok(()) => savepoint.commit().map_err(db_error)?,
                    Err((Fault::Row, why)) => refused.push((*row, why)), // dropped: rolled back
                    Err(other) => return Err(other),
                }
            }
        } else {
            copy_lines(&mut transaction, &copy, &rows)?;
        }
        if self.mode == SinkMode::Upsert {
            let deletes = rows.iter().any(|row| line(row).delete);
            let upserts = rows.iter().any(|row| !line(row).delete);
            transaction.batch_execute(&merge_sql(&self.definition, deletes, upserts)).map_err(db_error)?;
        }
        if refused.is_empty() {
            return transaction.commit().map_err(db_error).map(|()| Vec::new());
        }
        // The transaction moves the positions past the refused rows: their dead letters must
        // be in the topic first. Once sent, a failure here stops the sink (not retried: the
        // dead letters would be sent twice).
        for (row, why) in &refused {
            if self.failed.is_some() {
                break; // too many refusals (`max_ratio`): the run stops, the rest stay unwritten
            }
            self.dead_letter(row.pending.clone(), format!("Postgres refused the row: {why}"));
        }
        if !self.dead_letters_settled() {
            return Err((Fault::Fatal, self.failed.clone().unwrap_or_default()));
        }
        transaction.commit().map_err(|error| (Fault::Fatal, describe(&error)))?;
        Ok(refused.into_iter().map(|(row, _)| row).collect())
    }

    fn delivered(&mut self, rows: Vec<Row>) {
        self.reporting.counts.add(&self.destination, rows.len() as u64);
        for row in rows {
            self.count(&row.pending.origin, None);
            self.reporting.tracker.delivered(row.pending.batch, None);
        }
    }

    /// Count a row written (`refused: None`) or refused against `dead_letter.max_ratio`: when
    /// the window holds too many refusals, the sink fails and the run stops (the refused rows
    /// are in the dead-letter topic; a broken table does not move a whole topic there).
    fn count(&mut self, origin: &RecordOrigin, refused: Option<&str>) {
        let Some(breaker) = &mut self.breaker else { return };
        if !breaker.record((0, origin.partition), origin.position, refused.is_some()) || self.failed.is_some() {
            return;
        }
        let (failures, window) = breaker.failures();
        let failure = format!(
            "sink {}: {failures} of the last {window} rows were refused, more than dead_letter.max_ratio {} allows; stopped. Last refusal: {}",
            self.sink,
            breaker.limit().max_ratio,
            refused.unwrap_or_default()
        );
        self.failed = Some(failure.clone());
        self.reporting.tracker.fail(failure);
    }

    /// Send a refused record to dead letters: its delivery there stands for its delivery here.
    /// The dead letter is the record as the sink got it (key, value and headers), with the
    /// failure's headers naming the source record it came from.
    fn dead_letter(&mut self, pending: Pending, why: String) {
        let failure = Failure::deliver(format!("sink {}: {why}", self.sink));
        let RecordOrigin { topic: origin, partition, position, .. } = &pending.origin;
        tracing::debug!(sink = %self.sink, %origin, partition, position, error = %failure.error, "dead letter");
        let Some(topic) = &self.reporting.dead_letter_topic else {
            let message = format!(
                "record {origin}/{partition}@{position} {failure}; no dead_letter topic is configured, so the pipeline stops rather than lose it"
            );
            self.failed.get_or_insert(message.clone());
            self.reporting.tracker.delivered(pending.batch, Some(message));
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
        if let Err(error) = self.reporting.kafka.send(destination, record, pending.batch) {
            self.failed.get_or_insert(format!("sink {}: a dead letter was not sent: {error}", self.sink));
            self.reporting.tracker.delivered(pending.batch, Some(error.to_string()));
            return;
        }
        self.unsettled_dead_letters = true;
        self.count(&pending.origin, Some(&failure.error));
        if let Some(metrics) = &self.reporting.metrics {
            metrics.dead_lettered(&self.sink, failure.stage.as_str());
        }
    }
}

/// COPY `rows`' lines with `copy` in `transaction`.
fn copy_lines(transaction: &mut postgres::Transaction<'_>, copy: &str, rows: &[&Row]) -> Result<(), (Fault, String)> {
    let mut data = Vec::with_capacity(rows.iter().map(|row| line(row).text.len()).sum());
    for row in rows {
        data.extend_from_slice(line(row).text.as_bytes());
    }
    let mut writer = transaction.copy_in(copy).map_err(db_error)?;
    writer.write_all(&data).map_err(|e| (Fault::Transient, e.to_string()))?;
    writer.finish().map_err(db_error)?;
    Ok(())
}

/// An insert sink's progress, kept in `meshhost_offsets` beside its table and moved in the
/// transaction that writes the rows: per source partition, the position after the last record
/// written. A transaction holds whole run-loop batches ([`Writer::run`]), so every output of a
/// source record is written with it. A record below that position is in the table already (a
/// replay, or a redelivery after a crash between the commit here and the source's
/// acknowledgement), and is not written again. Only durable positions (Kafka offsets) are
/// kept: a captured table's rows, numbered per run, are appended at least once.
struct Offsets<'a> {
    table: &'a TableName,
    pipeline: &'a str,
    sink: &'a str,
}

impl Offsets<'_> {
    fn create_sql(schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {}.meshhost_offsets (pipeline text, sink text, target text, source text, \
             partition integer, next_position bigint NOT NULL, PRIMARY KEY (pipeline, sink, target, source, partition))",
            ident(schema)
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
        let target = self.table.to_string();
        let written: HashMap<(String, i32), i64> = transaction
            .query(
                &format!(
                    "SELECT source, partition, next_position FROM {schema}.meshhost_offsets \
                     WHERE pipeline = $1 AND sink = $2 AND target = $3 FOR UPDATE"
                ),
                &[&self.pipeline, &self.sink, &target],
            )?
            .into_iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        let mut next: HashMap<(&str, i32), i64> = HashMap::new();
        let mut unwritten = Vec::with_capacity(rows.len());
        for row in rows {
            let origin = &row.pending.origin;
            if !origin.durable {
                unwritten.push(*row);
                continue;
            }
            let done = written.get(&(origin.source.to_string(), origin.partition)).copied().unwrap_or(i64::MIN);
            if origin.position >= done {
                unwritten.push(*row);
            }
            let after = next.entry((&*origin.source, origin.partition)).or_insert(origin.position + 1);
            *after = (*after).max(origin.position + 1);
        }
        let upsert = format!(
            "INSERT INTO {schema}.meshhost_offsets VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (pipeline, sink, target, source, partition) \
             DO UPDATE SET next_position = GREATEST(meshhost_offsets.next_position, EXCLUDED.next_position)"
        );
        for ((source, partition), position) in next {
            transaction.execute(&upsert, &[&self.pipeline, &self.sink, &target, &source, &partition, &position])?;
        }
        Ok(unwritten)
    }
}

fn line(row: &Row) -> &Line {
    row.line.as_ref().expect("only rows with a line are written")
}
