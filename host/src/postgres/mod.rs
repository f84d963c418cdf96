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
//! the sinks or dead letters ([`source`]), so a crash at any moment loses nothing: a restart
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

use serde::Deserialize;

use crate::config::Problems;

pub mod connect;
pub mod source;
pub mod table;
pub mod value;

pub use connect::DatabaseError;
pub use source::PostgresSource;
pub use table::TableDescription;

/// A source's `postgres:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSourceConfig {
    /// A libpq connection URI: `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE[?sslmode=...]`.
    /// A password left out is read from the environment ([`Self::password_env`]).
    pub url: String,
    /// The table to capture, `schema.table` (`public` when no schema is given).
    pub table: String,
    /// The replication slot (default `meshhost_<pipeline>_<source id>`); created when missing.
    pub slot: Option<String>,
    /// The publication the slot streams (default `meshhost_<pipeline>_<source id>`); created
    /// for the table when missing.
    pub publication: Option<String>,
    /// The environment variable holding the password when the URL has none (default
    /// `PGPASSWORD`).
    pub password_env: Option<String>,
    /// How a change becomes a record's value (default `row`).
    #[serde(default)]
    pub envelope: Envelope,
}

/// The value of a captured change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Envelope {
    /// The row itself; a delete is a tombstone: a latest-value table, what `mesh/join` joins.
    #[default]
    Row,
    /// `{before, after, source, op, ts_ms}` with Debezium's field names.
    Debezium,
}

impl PostgresSourceConfig {
    /// Checks that need no database: names that Postgres would refuse.
    pub fn check(&self, path: &str, problems: &mut Problems) {
        if self.table.split('.').count() > 2 || self.table.split('.').any(str::is_empty) {
            problems.push(&format!("{path}.table"), "must be TABLE or SCHEMA.TABLE");
        }
        for (key, name) in [("slot", &self.slot), ("publication", &self.publication)] {
            if let Some(name) = name {
                if !valid_object_name(name) {
                    problems.push(
                        &format!("{path}.{key}"),
                        "must be 1 to 63 lower-case letters, digits and '_' (what Postgres allows for a slot)",
                    );
                }
            }
        }
        if !self.url.starts_with("postgres://") && !self.url.starts_with("postgresql://") {
            problems.push(&format!("{path}.url"), "must be a postgres:// or postgresql:// URI");
        }
    }

    /// `(schema, table)`.
    pub fn schema_and_table(&self) -> (&str, &str) {
        match self.table.split_once('.') {
            Some((schema, table)) => (schema, table),
            None => ("public", &self.table),
        }
    }

    /// The replication slot's name.
    pub fn slot_name(&self, pipeline: &str, source_id: &str) -> String {
        self.slot.clone().unwrap_or_else(|| default_object_name(pipeline, source_id))
    }

    /// The publication's name.
    pub fn publication_name(&self, pipeline: &str, source_id: &str) -> String {
        self.publication.clone().unwrap_or_else(|| default_object_name(pipeline, source_id))
    }
}

/// `meshhost_<pipeline>_<source>` in the characters a slot name may hold, cut to 63.
fn default_object_name(pipeline: &str, source_id: &str) -> String {
    let name: String = format!("meshhost_{pipeline}_{source_id}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    name.chars().take(63).collect()
}

fn valid_object_name(name: &str) -> bool {
    (1..=63).contains(&name.len()) && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Plan source `source_id`: describe its table (the database must answer) and derive the
/// schema of its records. `Err` is the problem to report at `sources.<id>.postgres`.
pub fn plan_source(
    pipeline: &crate::config::PipelineConfig,
    source_id: &str,
    config: &PostgresSourceConfig,
) -> Result<(source::CapturedTable, crate::topology::EdgeSchema), String> {
    let table = describe_table(config).map_err(|e| e.to_string())?;
    let schema = match config.envelope {
        Envelope::Row => table.row_schema(),
        Envelope::Debezium => table.debezium_schema(),
    };
    let schema = crate::topology::EdgeSchema::parse(&schema.to_string())
        .map_err(|e| format!("the schema derived from table {}: {e}", table.qualified_name()))?;
    let on_schema_change =
        pipeline.sources[source_id].on_schema_change.unwrap_or(crate::config::SchemaChangePolicy::Stop);
    let captured = source::CapturedTable {
        slot: config.slot_name(&pipeline.name, source_id),
        publication: config.publication_name(&pipeline.name, source_id),
        config: config.clone(),
        table,
        source_id: source_id.to_string(),
        on_schema_change,
    };
    Ok((captured, schema))
}

/// Connect and describe the source's table, checking the server's settings the text forms
/// depend on.
pub fn describe_table(config: &PostgresSourceConfig) -> Result<TableDescription, table::DescribeError> {
    let database = connect::Database::new(config);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid_slot_names() {
        let name = default_object_name("Us-Movies", "movies");
        assert_eq!(name, "meshhost_us_movies_movies");
        assert!(valid_object_name(&name));
        assert_eq!(default_object_name(&"x".repeat(80), "y").len(), 63);
    }

    #[test]
    fn names_are_checked() {
        let config: PostgresSourceConfig =
            serde_yaml::from_str("{url: 'mysql://x', table: 'a.b.c', slot: 'Bad-Slot'}").unwrap();
        let mut problems = Problems::default();
        config.check("sources.m.postgres", &mut problems);
        let text = problems.to_string();
        assert!(text.contains("sources.m.postgres.table: must be TABLE or SCHEMA.TABLE"), "{text}");
        assert!(text.contains("sources.m.postgres.slot: must be 1 to 63"), "{text}");
        assert!(text.contains("sources.m.postgres.url: must be a postgres://"), "{text}");
        assert_eq!(config.schema_and_table(), ("a", "b.c"));
    }
}
