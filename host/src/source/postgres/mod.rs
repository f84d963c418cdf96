//! Change data capture from Postgres: a table as a pipeline source.
//!
//! A `postgres:` source reads its table through logical replication with the built-in
//! `pgoutput` plugin ([`pg_walstream`] speaks the protocol). On first start it creates a
//! publication and a replication slot, reads the table's rows in the slot's exported snapshot,
//! then streams every change committed after that snapshot — no change missed or seen twice
//! between the two. Each change becomes a record: key = the primary key, value = the row
//! ([`Envelope::Row`], a delete is a tombstone) or a Debezium-style change event
//! ([`Envelope::Debezium`]), as Avro of a schema derived from the table's columns ([`table`]).
//!
//! The slot's confirmed position advances only after every change up to it was delivered to
//! the sinks or dead letters ([`capture`]), so a crash at any moment loses nothing: a restart
//! resumes from the slot, with duplicates only from the unconfirmed tail.
//!
//! ```yaml
//! sources:
//!   movies:
//!     postgres:
//!       url: postgres://meshhost@127.0.0.1:15432/meshhost   # password from $PGPASSWORD
//!       table: public.movies
//!       envelope: row
//! ```

pub use crate::config::postgres::{Envelope, PostgresSourceConfig};

pub mod capture;
pub mod connect;
pub mod snapshot;
pub mod table;
pub mod value;

pub use capture::PostgresSource;
pub use connect::DatabaseError;
pub use table::TableDescription;

/// Plan source `source_id`: describe its table (the database must answer) and derive the
/// schema of its records (Avro JSON). `Err` is the problem to report at `sources.<id>.postgres`.
pub fn plan_source(
    pipeline: &crate::config::PipelineConfig,
    source_id: &str,
    config: &PostgresSourceConfig,
) -> Result<(capture::CapturedTable, serde_json::Value), String> {
    let table = describe_table(config).map_err(|e| e.to_string())?;
    let schema = match config.envelope {
        Envelope::Row => table.row_schema(),
        Envelope::Debezium => table.debezium_schema(),
    };
    let on_schema_change =
        pipeline.sources[source_id].on_schema_change.unwrap_or(crate::config::SchemaChangePolicy::Stop);
    let captured = capture::CapturedTable {
        slot: config.slot_name(&pipeline.name, source_id),
        publication: config.publication_name(&pipeline.name, source_id),
        config: config.clone(),
        table,
        source_id: source_id.to_string(),
        on_schema_change,
        partitions: 1,
    };
    Ok((captured, schema))
}

/// Connect and describe the source's table, checking the server's settings the text forms
/// depend on.
pub fn describe_table(config: &PostgresSourceConfig) -> Result<TableDescription, table::DescribeError> {
    let database = connect::Database::new(&config.url, config.password_env.as_deref());
    let mut sql = database.connect()?;
    for (setting, expected) in [("DateStyle", "ISO"), ("bytea_output", "hex")] {
        let value = sql
            .query(&format!("SHOW {setting}"))?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
            .unwrap_or_default();
        if !value.starts_with(expected) {
            return Err(table::DescribeError::Database(DatabaseError::Refused {
                address: database.address.clone(),
                message: format!("{setting} is {value:?}; meshhost reads values in the {expected} form: set {setting} = '{expected}' for the database or user"),
            }));
        }
    }
    let (schema, name) = config.schema_and_table();
    table::describe(&mut sql, &database.address, schema, name)
}

/// Before a run: every captured table's database answers and has the table. A failure here is
/// the database's state, not the pipeline file's (exit 1, not 2).
pub fn check_databases(pipeline: &crate::config::PipelineConfig) -> Result<(), String> {
    for (id, source) in &pipeline.sources {
        if let Some(config) = &source.postgres {
            match describe_table(config) {
                Err(error) if error.is_environmental() => return Err(format!("sources.{id}.postgres: {error}")),
                _ => {}
            }
        }
    }
    Ok(())
}
