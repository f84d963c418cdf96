//! [`PostgresSource`]: captured tables as a [`Source`].
//!
//! Each table has a reader thread (a small tokio runtime around [`pg_walstream`]): it sets up
//! the publication and the slot, reads the snapshot, then streams changes, turning each into
//! a record on one channel the run loop polls.
//!
//! **Positions.** A record's position is a sequence number of its table (1, 2, 3...), not a WAL
//! position: changes arrive in commit order, and a transaction's changes are only safe to
//! confirm together. The reader notes, per sequence number, the WAL position that may be
//! confirmed once that record and every one before it is delivered: a transaction's end
//! position at its last change, the slot's consistent point at the last snapshot row. Changes
//! in the middle of a transaction confirm nothing new, so a crash replays the whole
//! transaction (duplicates, never a loss).
//!
//! **Snapshot bookkeeping** ([`super::snapshot`]): a record per slot says whether its snapshot
//! was delivered, in the state directory and mirrored to Kafka for an instance that takes the
//! capture over. A run that finds the slot but a snapshot in progress drops the slot and starts
//! again (the snapshot is redone); a slot gone after a finished snapshot is an error (changes
//! since are lost to it), not a silent re-read.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshhost_avro::{Schema, Value};
use meshhost_sdk::{Header, Record};
use pg_walstream::{
    CancellationToken, ChangeEvent, ColumnValue, EventType, LogicalReplicationStream, ReplicationError,
    ReplicationStreamConfig, RetryConfig, RowData, SharedLsnFeedback, SnapshotOutcome,
};

use super::connect::{literal, Database, DatabaseError};
use super::snapshot::{SharedRecords, SnapshotMarker, SnapshotState};
use super::table::TableDescription;
use super::{Envelope, PostgresSourceConfig};
use crate::config::SchemaChangePolicy;
use crate::source::{InputRecord, Source, SourceError, SourcePartition, SourceRecord};

/// Records waiting for the run loop, over every table. Bounded: a slow sink holds the readers.
const CHANNEL_CAPACITY: usize = 8192;

/// The header that says what a captured record is: `c` insert, `u` update, `d` delete,
/// `r` snapshot read, `t` truncate (Debezium's `op` codes).
pub const OP_HEADER: &str = "meshhost.cdc.op";

/// One captured table, planned.
#[derive(Debug, Clone)]
pub struct CapturedTable {
    pub config: PostgresSourceConfig,
    pub table: TableDescription,
    /// The pipeline's source id (Debezium's `source.name`).
    pub source_id: String,
    pub slot: String,
    pub publication: String,
    pub on_schema_change: SchemaChangePolicy,
    /// The state partitions its rows are spread over (by `config.partitioner`): the partition
    /// count of the Kafka topics it shares a stateful processor with, else 1. Set when the run
    /// knows the topics' partition counts.
    pub partitions: i32,
}

/// A record read from a table, or a change that could not be turned into one.
#[derive(Debug, Clone)]
pub struct CapturedRecord {
    record: SourceRecord,
    failure: Option<String>,
}

impl InputRecord for CapturedRecord {
    fn source(&self) -> usize {
        self.record.source
    }
    fn partition(&self) -> i32 {
        self.record.partition
    }
    fn position(&self) -> i64 {
        self.record.position
    }
    fn key(&self) -> Option<&[u8]> {
        self.record.key()
    }
    fn value(&self) -> Option<&[u8]> {
        self.record.value()
    }
    fn headers(&self) -> Vec<Header> {
        self.record.headers()
    }
    fn timestamp(&self) -> Option<i64> {
        self.record.timestamp()
    }
    fn failure(&self) -> Option<&str> {
        self.failure.as_deref()
    }
}

enum Captured {
    Record(CapturedRecord),
    /// The reader cannot go on.
    Failed(SourceError),
}

/// What may be confirmed to the slot, and when.
#[derive(Default)]
struct Progress {
    /// (sequence number, WAL position): once that record is delivered, the position may be
    /// confirmed. In sequence order.
    marks: VecDeque<(i64, u64)>,
    /// The highest sequence number delivered.
    delivered: i64,
    /// The sequence number whose delivery completes the snapshot, while one is being read.
    snapshot_end: Option<i64>,
}

/// The state one reader shares with the run loop.
struct Shared {
    progress: Mutex<Progress>,
    /// Set once per connection by the reader: the run loop confirms through it.
    feedback: Mutex<Option<Arc<SharedLsnFeedback>>>,
    /// The WAL position confirmed last.
    confirmed: Mutex<u64>,
    marker: SnapshotMarker,
}

impl Shared {
    /// Confirm `lsn` to the slot (through the stream's feedback, sent within a second).
    fn confirm(&self, lsn: u64) {
        let mut confirmed = self.confirmed.lock().unwrap();
        if lsn <= *confirmed {
            return;
        }
        *confirmed = lsn;
        if let Some(feedback) = &*self.feedback.lock().unwrap() {
            feedback.update_flushed_lsn(lsn);
            feedback.update_applied_lsn(lsn);
        }
    }

    /// Note that `lsn` may be confirmed once `seq` is delivered (at once when it already is).
    fn mark(&self, seq: i64, lsn: u64) {
        let mut progress = self.progress.lock().unwrap();
        if seq <= progress.delivered {
            drop(progress);
            self.confirm(lsn);
        } else {
            progress.marks.push_back((seq, lsn));
        }
    }

    /// Every record up to `seq` was delivered.
    fn delivered(&self, seq: i64) -> Result<(), SourceError> {
        let mut progress = self.progress.lock().unwrap();
        progress.delivered = progress.delivered.max(seq);
        let delivered = progress.delivered;
        let mut confirmable = None;
        while progress.marks.front().is_some_and(|&(at, _)| at <= delivered) {
            confirmable = progress.marks.pop_front().map(|(_, lsn)| lsn);
        }
        let snapshot_done = progress.snapshot_end.is_some_and(|end| end <= delivered);
        if snapshot_done {
            progress.snapshot_end = None;
        }
        drop(progress);
        if snapshot_done {
            self.marker.write(SnapshotState::Done)?;
            tracing::info!(marker = %self.marker.file.display(), "snapshot delivered");
        }
        if let Some(lsn) = confirmable {
            self.confirm(lsn);
        }
        Ok(())
    }
}

/// The captured tables of a pipeline, read as one source.
pub struct PostgresSource {
    receiver: Receiver<Captured>,
    /// Per source index (`None` for the pipeline's other sources).
    readers: Vec<Option<Arc<Shared>>>,
    cancel: CancellationToken,
    stopping: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl PostgresSource {
    /// Start a reader for each table: `tables[i]` is source `i` of the topology (`None` for a
    /// source that is not a table). Snapshot bookkeeping lives under `state_dir`, mirrored to
    /// `shared` when given.
    pub fn start(
        tables: Vec<Option<(CapturedTable, Arc<Schema>)>>,
        state_dir: &Path,
        shared: Option<SharedRecords>,
    ) -> Result<PostgresSource, SourceError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(CHANNEL_CAPACITY);
        let cancel = CancellationToken::new();
        let stopping = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        let mut threads = Vec::new();
        let marker_dir = state_dir.join("postgres");
        std::fs::create_dir_all(&marker_dir)
            .map_err(|e| client(format!("cannot create {}", marker_dir.display()), e))?;
        for (index, table) in tables.into_iter().enumerate() {
            let Some((table, schema)) = table else {
                readers.push(None);
                continue;
            };
            let shared = Arc::new(Shared {
                progress: Mutex::default(),
                feedback: Mutex::default(),
                confirmed: Mutex::default(),
                marker: SnapshotMarker::new(&marker_dir, &table.slot, shared.clone()),
            });
            readers.push(Some(shared.clone()));
            let reader = Reader {
                index,
                database: Database::new(&table.config.url, table.config.password_env.as_deref()),
                table,
                schema,
                shared,
                sender: sender.clone(),
                cancel: cancel.clone(),
                stopping: stopping.clone(),
                seq: 0,
                transaction: None,
                warned_new_columns: false,
                absent: Vec::new(),
                read_back: None,
            };
            let thread = std::thread::Builder::new()
                .name(format!("postgres-{index}"))
                .spawn(move || reader.run())
                .map_err(|e| client("cannot start a reader thread".into(), e))?;
            threads.push(thread);
        }
        Ok(PostgresSource { receiver, readers, cancel, stopping, threads: Mutex::new(threads) })
    }

    /// Stop the readers; each confirms what was delivered before it closes its connection.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        // Unblock readers waiting for room in the channel.
        while self.receiver.try_recv().is_ok() {}
        for thread in self.threads.lock().unwrap().drain(..) {
            while !thread.is_finished() {
                while self.receiver.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = thread.join();
        }
    }
}

impl Drop for PostgresSource {
    fn drop(&mut self) {
        self.stop();
    }
}

impl PostgresSource {
    /// Append up to `max` records to `batch`, each wrapped by `wrap`: those ready now, after
    /// waiting up to `first_wait` for the first.
    pub fn poll_into<T>(
        &self,
        max: usize,
        stop: &AtomicBool,
        first_wait: Duration,
        batch: &mut Vec<T>,
        wrap: impl Fn(CapturedRecord) -> T,
    ) -> Result<(), SourceError> {
        let first = match self.receiver.recv_timeout(first_wait) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) => return Ok(()),
            Err(RecvTimeoutError::Disconnected) => return Err(client("every table reader stopped".into(), Gone)),
        };
        let mut next = Some(first);
        while let Some(captured) = next.take() {
            match captured {
                Captured::Record(record) => batch.push(wrap(record)),
                Captured::Failed(error) => return Err(error),
            }
            if batch.len() >= max || stop.load(Ordering::Relaxed) {
                break;
            }
            next = self.receiver.try_recv().ok();
        }
        Ok(())
    }
}

impl Source for PostgresSource {
    type Record<'a> = CapturedRecord;

    fn poll(&self, max: usize, stop: &AtomicBool, batch: &mut Vec<CapturedRecord>) -> Result<(), SourceError> {
        self.poll_into(max, stop, Duration::from_millis(100), batch, |record| record)
    }

    fn acknowledge(&self, positions: &HashMap<SourcePartition, i64>, wait: bool) -> Result<(), SourceError> {
        for (&(source, _), &seq) in positions {
            if let Some(Some(shared)) = self.readers.get(source) {
                shared.delivered(seq)?;
            }
        }
        if wait {
            self.stop();
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("gone")]
struct Gone;

fn client(what: String, error: impl std::error::Error + Send + Sync + 'static) -> SourceError {
    SourceError::Client { what, source: Box::new(error) }
}

/// The open transaction's identity, from its Begin.
#[derive(Debug, Clone, Copy)]
struct Transaction {
    xid: u32,
    commit_ms: i64,
    /// Whether a record of it was sent.
    sent: bool,
}

/// The reader of one table (its own thread).
struct Reader {
    index: usize,
    database: Database,
    table: CapturedTable,
    schema: Arc<Schema>,
    shared: Arc<Shared>,
    sender: SyncSender<Captured>,
    cancel: CancellationToken,
    stopping: Arc<AtomicBool>,
    /// The sequence number of the last record sent.
    seq: i64,
    transaction: Option<Transaction>,
    warned_new_columns: bool,
    /// Planned nullable columns the stream's relation does not have (added to the table after
    /// the changes now streamed, or dropped since): NULL in every record.
    absent: Vec<String>,
    /// The plain connection that reads unchanged TOASTed values back, once one was needed.
    read_back: Option<super::connect::Sql>,
}

/// How a reader stops.
enum Stop {
    /// Asked to.
    Asked,
    /// It cannot go on: the run stops with this error.
    Failed(SourceError),
}

impl From<SourceError> for Stop {
    fn from(error: SourceError) -> Stop {
        Stop::Failed(error)
    }
}

impl Reader {
    fn run(mut self) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                let _ = self.sender.send(Captured::Failed(client("cannot start a tokio runtime".into(), error)));
                return;
            }
        };
        let result = runtime.block_on(self.capture());
        if let Err(Stop::Failed(error)) = result {
            if !self.stopping.load(Ordering::Relaxed) {
                let _ = self.sender.send(Captured::Failed(error));
            }
        }
    }

    fn failed(&self, what: &str, error: ReplicationError) -> Stop {
        let table = self.table.table.qualified_name();
        match self.database.error(error) {
            error @ DatabaseError::Unreachable { .. } => Stop::Failed(SourceError::Unreachable {
                what: format!("Postgres for table {table} ({what})"),
                source: Box::new(error),
            }),
            error => Stop::Failed(client(format!("table {table}: {what}"), error)),
        }
    }

    fn sql_failed(&self, what: &str, error: DatabaseError) -> Stop {
        Stop::Failed(client(format!("table {}: {what}", self.table.table.qualified_name()), error))
    }

    /// Set up, snapshot if needed, then stream until asked to stop.
    async fn capture(&mut self) -> Result<(), Stop> {
        let slot = self.table.slot.clone();
        let mut sql = self.database.connect().map_err(|e| self.sql_failed("cannot connect", e))?;
        self.ensure_publication(&mut sql)?;
        let slot_exists = !sql
            .query(&format!("SELECT 1 FROM pg_replication_slots WHERE slot_name = {}", literal(&slot)))
            .map_err(|e| self.sql_failed("cannot read pg_replication_slots", e))?
            .is_empty();
        if slot_exists {
            self.wait_until_inactive(&mut sql).await?;
        }
        let marker = self.shared.marker.read()?;
        let mut snapshot = !slot_exists;
        match (slot_exists, marker) {
            (true, Some(SnapshotState::InProgress)) => {
                tracing::warn!(%slot, "the last run stopped during the snapshot: dropping the slot and taking the snapshot again");
                sql.execute(&format!("SELECT pg_drop_replication_slot({})", literal(&slot)))
                    .map_err(|e| self.sql_failed("cannot drop the slot of an unfinished snapshot", e))?;
                snapshot = true;
            }
            (true, None) => {
                tracing::warn!(%slot, marker = %self.shared.marker.file.display(), "the slot exists but no record of its snapshot does (here or in Kafka): assuming it was delivered, streaming from the slot");
                self.shared.marker.write(SnapshotState::Done)?;
            }
            (false, Some(SnapshotState::Done)) => {
                return Err(Stop::Failed(client(
                    format!(
                        "replication slot {slot} does not exist, but this pipeline has captured table {} through it before: the changes made since it was lost cannot be read any more. To capture the table again from a fresh snapshot, remove {} and start the pipeline again (consumers then see every row again)",
                        self.table.table.qualified_name(),
                        self.shared.marker.file.display()
                    ),
                    Gone,
                )));
            }
            _ => {}
        }
        drop(sql);
        let config = ReplicationStreamConfig::builder(slot.clone(), self.table.publication.clone())
            .with_protocol_version(1)
            .with_feedback_interval(Duration::from_secs(1))
            .with_connection_timeout(Duration::from_secs(10))
            .with_retry_config(RetryConfig {
                max_attempts: 30,
                initial_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(5),
                multiplier: 2.0,
                max_duration: Duration::from_secs(60),
                jitter: true,
            });
        let uri = self.database.replication_uri();
        let stream = LogicalReplicationStream::new(&uri, config)
            .await
            .map_err(|e| self.failed("cannot open a replication connection", e))?;
        *self.shared.feedback.lock().unwrap() = Some(stream.shared_lsn_feedback.clone());
        let mut stream = if snapshot {
            self.shared.marker.write(SnapshotState::InProgress)?;
            self.snapshot(stream).await?
        } else {
            stream
        };
        stream.start(None).await.map_err(|e| self.failed("cannot start streaming from the slot", e))?;
        tracing::info!(table = %self.table.table.qualified_name(), %slot, "streaming changes");
        let mut events = stream.into_stream(self.cancel.clone());
        let result = loop {
            match events.next_event().await {
                Ok(event) => {
                    if let Err(stop) = self.change(event) {
                        break Err(stop);
                    }
                }
                Err(ReplicationError::Cancelled(_)) => break Ok(()),
                Err(error) => break Err(self.failed("the replication stream failed", error)),
            }
        };
        // Confirms what was delivered (the final feedback) and ends the stream.
        let _ = events.shutdown().await;
        result
    }

    /// Wait (up to a minute) while another connection streams from the slot: the server notices
    /// a killed run's connection only after a while.
    async fn wait_until_inactive(&self, sql: &mut super::connect::Sql) -> Result<(), Stop> {
        let query = format!(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = {} AND active",
            literal(&self.table.slot)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let active = sql.query(&query).map_err(|e| self.sql_failed("cannot read pg_replication_slots", e))?;
            let Some(pid) = active.into_iter().next().and_then(|row| row.into_iter().next().flatten()) else {
                return Ok(());
            };
            if std::time::Instant::now() > deadline {
                return Err(Stop::Failed(client(
                    format!("replication slot {} is in use by server process {pid}: another meshhost (or client) reads it; stop it first", self.table.slot),
                    Gone,
                )));
            }
            tracing::info!(slot = %self.table.slot, pid, "the slot is still in use (a previous run's connection?): waiting");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Create the publication when missing.
    fn ensure_publication(&self, sql: &mut super::connect::Sql) -> Result<(), Stop> {
        let publication = &self.table.publication;
        let exists = !sql
            .query(&format!("SELECT 1 FROM pg_publication WHERE pubname = {}", literal(publication)))
            .map_err(|e| self.sql_failed("cannot read pg_publication", e))?
            .is_empty();
        let (schema, table) = (&self.table.table.schema, &self.table.table.table);
        if !exists {
            tracing::info!(%publication, "creating the publication");
            sql.execute(&format!(
                "CREATE PUBLICATION {} FOR TABLE {}.{}",
                super::connect::ident(publication),
                super::connect::ident(schema),
                super::connect::ident(table)
            ))
            .map_err(|e| self.sql_failed("cannot create the publication", e))?;
            return Ok(());
        }
        let publishes = !sql
            .query(&format!(
                "SELECT 1 FROM pg_publication_tables WHERE pubname = {} AND schemaname = {} AND tablename = {}",
                literal(publication),
                literal(schema),
                literal(table)
            ))
            .map_err(|e| self.sql_failed("cannot read pg_publication_tables", e))?
            .is_empty();
        if !publishes {
            return Err(Stop::Failed(client(
                format!(
                    "publication {publication} does not publish table {schema}.{table}; add it (ALTER PUBLICATION {publication} ADD TABLE {schema}.{table}) or name another publication"
                ),
                Gone,
            )));
        }
        Ok(())
    }

    /// Read the table in the slot's exported snapshot; the stream to start afterwards.
    async fn snapshot(&mut self, stream: LogicalReplicationStream) -> Result<LogicalReplicationStream, Stop> {
        let table = self.table.table.qualified_name();
        let snapshot = match stream.snapshot().await.map_err(|e| self.failed("cannot take the snapshot", e))? {
            SnapshotOutcome::Available(snapshot) => snapshot,
            SnapshotOutcome::Unavailable(stream) => return Ok(stream),
        };
        let consistent_point = snapshot.consistent_point().value();
        tracing::info!(%table, consistent_point = %pg_walstream::format_lsn(consistent_point), "snapshot: reading the table");
        let started = now_ms();
        let mut rows = snapshot.with_cancellation(self.cancel.clone()).rows();
        let mut count = 0u64;
        loop {
            match rows.next_row().await {
                Ok(Some(row)) => {
                    count += 1;
                    let captured = self.event(Op::Read, None, Some(&row.data), started, None, Some(consistent_point));
                    self.send(captured)?;
                }
                Ok(None) => break,
                Err(ReplicationError::Cancelled(_)) => return Err(Stop::Asked),
                Err(error) => return Err(self.failed("the snapshot failed", error)),
            }
        }
        let stream = rows.finish().await.map_err(|e| self.failed("cannot end the snapshot", e))?;
        tracing::info!(%table, rows = count, "snapshot read; streaming from its consistent point");
        self.shared.progress.lock().unwrap().snapshot_end = Some(self.seq);
        // Its rows may be delivered already (or there were none): look again.
        self.shared.delivered(0)?;
        self.shared.mark(self.seq, consistent_point);
        Ok(stream)
    }

    /// One event of the stream.
    fn change(&mut self, event: ChangeEvent) -> Result<(), Stop> {
        let lsn = event.lsn.value();
        let commit_ms = self.transaction.map_or_else(now_ms, |t| t.commit_ms);
        let ours = |schema: &str, table: &str| schema == self.table.table.schema && table == self.table.table.table;
        let captured = match &event.event_type {
            EventType::Begin { transaction_id, commit_timestamp, .. } => {
                self.transaction = Some(Transaction {
                    xid: *transaction_id,
                    commit_ms: commit_timestamp.timestamp_millis(),
                    sent: false,
                });
                return Ok(());
            }
            EventType::Commit { end_lsn, .. } => {
                self.transaction = None;
                // Everything of the transaction was sent: its end may be confirmed once the
                // last record sent is delivered.
                self.shared.mark(self.seq, end_lsn.value());
                return Ok(());
            }
            EventType::Relation { namespace, relation_name, columns, .. } if ours(namespace, relation_name) => {
                return self.relation(columns);
            }
            EventType::Insert { schema, table, data, .. } if ours(schema, table) => {
                self.event(Op::Create, None, Some(data), commit_ms, Some(lsn), None)
            }
            EventType::Update { schema, table, old_data, new_data, .. } if ours(schema, table) => {
                match self.read_back_unchanged(old_data.as_ref(), new_data)? {
                    Some(whole) => self.event(Op::Update, old_data.as_ref(), Some(&whole), commit_ms, Some(lsn), None),
                    None => self.event(Op::Update, old_data.as_ref(), Some(new_data), commit_ms, Some(lsn), None),
                }
            }
            EventType::Delete { schema, table, old_data, .. } if ours(schema, table) => {
                self.event(Op::Delete, Some(old_data), None, commit_ms, Some(lsn), None)
            }
            EventType::Truncate { tables, .. } if tables.iter().any(|t| **t == self.table.table.qualified_name()) => {
                match self.table.config.envelope {
                    Envelope::Debezium => self.event(Op::Truncate, None, None, commit_ms, Some(lsn), None),
                    Envelope::Row => {
                        tracing::warn!(table = %self.table.table.qualified_name(), "TRUNCATE: the row envelope has no record for it (no keys to delete); skipped. Use envelope: debezium to see truncates");
                        return Ok(());
                    }
                }
            }
            _ => return Ok(()),
        };
        if let Some(transaction) = &mut self.transaction {
            transaction.sent = true;
        }
        self.send(captured)
    }

    /// A relation message: the table's columns as the stream now sends them.
    fn relation(&mut self, columns: &[pg_walstream::RelationColumn]) -> Result<(), Stop> {
        let table = self.table.table.qualified_name();
        let mut problems = Vec::new();
        self.absent.clear();
        for planned in &self.table.table.columns {
            match columns.iter().find(|c| *c.name == *planned.name) {
                None if planned.nullable => self.absent.push(planned.name.clone()),
                None => problems.push(format!("column {} was dropped", planned.name)),
                Some(now) if now.type_id != planned.type_oid => problems.push(format!(
                    "column {} changed type (was {}, type oid {} now)",
                    planned.name, planned.type_name, now.type_id
                )),
                Some(now)
                    if matches!(planned.ty, super::table::ColumnType::Decimal { .. })
                        && now.type_modifier != planned.type_modifier =>
                {
                    problems
                        .push(format!("column {} changed precision or scale (was {})", planned.name, planned.type_name))
                }
                Some(_) => {}
            }
        }
        let added: Vec<&str> = columns
            .iter()
            .filter(|c| !self.table.table.columns.iter().any(|p| *p.name == *c.name))
            .map(|c| &*c.name)
            .collect();
        if !added.is_empty() && !self.warned_new_columns {
            self.warned_new_columns = true;
            tracing::warn!(%table, columns = ?added, "columns added to the table are not carried until the pipeline is planned again (restart it): the source's schema stays the one it was planned with");
        }
        if !self.absent.is_empty() {
            tracing::warn!(%table, columns = ?self.absent, "planned nullable columns are not in the table's changes (added after them, or dropped): carried as NULL");
        }
        if problems.is_empty() {
            return Ok(());
        }
        let message = format!("table {table}: {}", problems.join("; "));
        match self.table.on_schema_change {
            SchemaChangePolicy::Stop => Err(Stop::Failed(client(
                format!(
                    "{message}. The pipeline was planned with the old columns, so it stops (on_schema_change: stop) with that change not confirmed; fix the pipeline or the table and start it again (it is planned with the table's new columns), or set on_schema_change: dead_letter"
                ),
                Gone,
            ))),
            SchemaChangePolicy::DeadLetter => {
                tracing::warn!("{message}: changes that lack a planned column go to dead letters (on_schema_change: dead_letter)");
                Ok(())
            }
        }
    }

    /// An update that left out-of-line (TOASTed) values unchanged does not carry them, and
    /// without replica identity FULL the old row does not either: read the row's current values
    /// of those columns back from the table by its primary key (what Debezium's reselect
    /// post-processor does). The row as it is now may be newer than this change; the later
    /// change is on its way, so the table's final state is the same. `None`: nothing is
    /// missing, or the row is gone (the change then goes to dead letters, and the delete that
    /// removed it follows).
    fn read_back_unchanged(&mut self, before: Option<&RowData>, after: &RowData) -> Result<Option<RowData>, Stop> {
        let table = &self.table.table;
        let missing: Vec<&super::table::Column> = table
            .columns
            .iter()
            .filter(|c| after.get(&c.name).is_none() && before.and_then(|b| b.get(&c.name)).is_none())
            .filter(|c| !self.absent.contains(&c.name))
            .collect();
        if missing.is_empty() {
            return Ok(None);
        }
        let mut conditions = Vec::new();
        for &index in &table.key {
            let name = &table.columns[index].name;
            match after.get(name).map(text) {
                Some(Ok(Some(value))) => {
                    conditions.push(format!("{} = {}", super::connect::ident(name), literal(value)))
                }
                _ => return Ok(None),
            }
        }
        let query = format!(
            "SELECT {} FROM {}.{} WHERE {}",
            missing.iter().map(|c| super::connect::ident(&c.name)).collect::<Vec<_>>().join(", "),
            super::connect::ident(&table.schema),
            super::connect::ident(&table.table),
            conditions.join(" AND ")
        );
        if self.read_back.is_none() {
            let sql = self
                .database
                .connect()
                .map_err(|e| self.sql_failed("cannot connect to read back unchanged values", e))?;
            self.read_back = Some(sql);
        }
        let sql = self.read_back.as_mut().expect("connected above");
        let rows = match sql.query(&query) {
            Ok(rows) => rows,
            Err(error) => {
                // A broken connection is made again on the next need.
                self.read_back = None;
                return Err(self.sql_failed("cannot read back unchanged out-of-line values", error));
            }
        };
        let Some(row) = rows.into_iter().next() else { return Ok(None) };
        let mut whole = after.clone();
        for (column, value) in missing.iter().zip(row) {
            let value = value.map_or(ColumnValue::Null, |text| ColumnValue::text(&text));
            whole.push(column.name.as_str().into(), value);
        }
        Ok(Some(whole))
    }

    fn send(&mut self, mut captured: CapturedRecord) -> Result<(), Stop> {
        self.seq += 1;
        captured.record.position = self.seq;
        if self.stopping.load(Ordering::Relaxed) || self.sender.send(Captured::Record(captured)).is_err() {
            return Err(Stop::Asked);
        }
        Ok(())
    }

    /// The record of a change: `before` and `after` rows as the stream gave them.
    fn event(
        &self,
        op: Op,
        before: Option<&RowData>,
        after: Option<&RowData>,
        ts_ms: i64,
        lsn: Option<u64>,
        snapshot_lsn: Option<u64>,
    ) -> CapturedRecord {
        let table = &self.table.table;
        // A column an update leaves out is an unchanged TOASTed value: the old row has it with
        // replica identity FULL; otherwise it was read back (`read_back_unchanged`).
        let after_text = |name: &str| -> Result<Option<&str>, String> {
            let row = after.expect("after is given");
            match row.get(name).or_else(|| before.and_then(|b| b.get(name))) {
                Some(value) => text(value).map_err(|e| format!("column {name}: {e}")),
                None if self.absent.iter().any(|a| a == name) => Ok(None),
                None => Err(format!(
                    "the change does not carry column {name} (an unchanged out-of-line value, and the row was gone when it was read back)"
                )),
            }
        };
        let before_text = |name: &str| -> Result<Option<&str>, String> {
            match before.and_then(|b| b.get(name)) {
                Some(value) => text(value).map_err(|e| format!("column {name}: {e}")),
                None if self.absent.iter().any(|a| a == name) => Ok(None),
                None => Err(format!("the old row does not carry column {name}")),
            }
        };
        let key_row = after.or(before);
        let key = key_row.and_then(|row| table.key_of(|name| row.get(name).and_then(|v| text(v).ok().flatten())));
        let headers = vec![Header { key: OP_HEADER.into(), value: Some(op.code().as_bytes().to_vec()) }];
        let result: Result<Option<Value>, String> = match self.table.config.envelope {
            Envelope::Row => match after {
                Some(_) => table.row_value(after_text).map(Some),
                None => Ok(None),
            },
            Envelope::Debezium => {
                let after_value = after.map(|_| table.row_value(after_text)).transpose();
                // A before image only when the old row is whole (replica identity FULL).
                let before_value =
                    if table.full_identity { before.map(|_| table.row_value(before_text)) } else { None }.transpose();
                after_value.and_then(|after_value| {
                    before_value.map(|before_value| {
                        Some(self.envelope(op, before_value, after_value, ts_ms, lsn.or(snapshot_lsn)))
                    })
                })
            }
        };
        let encoded = result.and_then(|value| {
            value.map(|value| meshhost_avro::encode_datum(&self.schema, &value).map_err(|e| e.to_string())).transpose()
        });
        let (value, failure) = match encoded {
            Ok(value) => (value, None),
            // The dead letter carries the change as text, for a person to look at.
            Err(reason) => (
                Some(describe_change(op, before, after).into_bytes()),
                Some(format!("table {}: {reason}", table.qualified_name())),
            ),
        };
        let partition = self.table.config.partitioner.partition(key.as_deref(), self.table.partitions);
        let record = Record { key, value, headers, timestamp: Some(ts_ms) };
        CapturedRecord { record: SourceRecord { source: self.index, partition, position: 0, record }, failure }
    }

    /// The Debezium envelope value.
    fn envelope(&self, op: Op, before: Option<Value>, after: Option<Value>, ts_ms: i64, lsn: Option<u64>) -> Value {
        let table = &self.table.table;
        let optional = |value: Option<Value>| match value {
            Some(value) => Value::Union(1, Box::new(value)),
            None => Value::Union(0, Box::new(Value::Null)),
        };
        let string = |text: &str| Value::String(text.to_string());
        let xid = self.transaction.map(|t| Value::Long(i64::from(t.xid)));
        let source = Value::Record(vec![
            ("connector".into(), string("postgresql")),
            ("name".into(), string(&self.table.source_id)),
            ("ts_ms".into(), Value::Long(ts_ms)),
            ("snapshot".into(), string(if op == Op::Read { "true" } else { "false" })),
            ("db".into(), string(&table.database)),
            ("schema".into(), string(&table.schema)),
            ("table".into(), string(&table.table)),
            ("txId".into(), optional(if op == Op::Read { None } else { xid })),
            ("lsn".into(), optional(lsn.map(|lsn| Value::Long(lsn as i64)))),
        ]);
        Value::Record(vec![
            ("before".into(), optional(before)),
            ("after".into(), optional(after)),
            ("source".into(), source),
            ("op".into(), string(op.code())),
            ("ts_ms".into(), optional(Some(Value::Long(now_ms())))),
        ])
    }
}

/// A change's kind, by Debezium's `op` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Create,
    Update,
    Delete,
    Truncate,
}

impl Op {
    fn code(self) -> &'static str {
        match self {
            Op::Read => "r",
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }
}

/// A column value's text; `None` is NULL.
fn text(value: &ColumnValue) -> Result<Option<&str>, String> {
    match value {
        ColumnValue::Null => Ok(None),
        ColumnValue::Text(bytes) => std::str::from_utf8(bytes).map(Some).map_err(|e| e.to_string()),
        ColumnValue::Binary(_) => Err("a binary value (the source reads text)".into()),
    }
}

/// `{"op":"u","before":{...},"after":{...}}` with every column's text: a dead letter's value.
fn describe_change(op: Op, before: Option<&RowData>, after: Option<&RowData>) -> String {
    let row = |row: Option<&RowData>| match row {
        None => serde_json::Value::Null,
        Some(row) => serde_json::Value::Object(
            row.iter()
                .map(|(name, value)| {
                    let value = text(value).ok().flatten().map_or(serde_json::Value::Null, |t| t.into());
                    (name.to_string(), value)
                })
                .collect(),
        ),
    };
    serde_json::json!({"op": op.code(), "before": row(before), "after": row(after)}).to_string()
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(dir: &Path) -> Shared {
        Shared {
            progress: Mutex::default(),
            feedback: Mutex::default(),
            confirmed: Mutex::default(),
            marker: SnapshotMarker::new(dir, "slot", None),
        }
    }

    #[test]
    fn a_position_is_confirmed_only_when_its_transaction_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        // Transaction 1: records 1-3, end 100. Transaction 2: records 4-5, end 200.
        shared.mark(3, 100);
        shared.mark(5, 200);
        shared.delivered(2).unwrap();
        assert_eq!(*shared.confirmed.lock().unwrap(), 0, "the middle of a transaction confirms nothing");
        shared.delivered(4).unwrap();
        assert_eq!(*shared.confirmed.lock().unwrap(), 100);
        shared.delivered(5).unwrap();
        assert_eq!(*shared.confirmed.lock().unwrap(), 200);
        // A transaction without records for us, after everything was delivered: at once.
        shared.mark(5, 300);
        assert_eq!(*shared.confirmed.lock().unwrap(), 300);
        // Never backwards.
        shared.confirm(250);
        assert_eq!(*shared.confirmed.lock().unwrap(), 300);
    }

    #[test]
    fn the_snapshot_is_marked_done_when_its_last_row_is_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        shared.marker.write(SnapshotState::InProgress).unwrap();
        shared.progress.lock().unwrap().snapshot_end = Some(3);
        shared.delivered(2).unwrap();
        assert_eq!(shared.marker.read().unwrap(), Some(SnapshotState::InProgress));
        shared.delivered(3).unwrap();
        assert_eq!(shared.marker.read().unwrap(), Some(SnapshotState::Done));
    }
}
