//! The `postgres:` sections of a source (a captured table) and of a sink (a table written), as
//! the pipeline file gives them. What needs the database (its columns, the slot, the table) is
//! the `source::postgres` and `sink::postgres` modules', at planning and run time.

use serde::Deserialize;

use super::Problems;

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
    /// Where a row's key is placed when the table is joined with Kafka topics: the state
    /// partition a row meets the topics' records in is the one their producers put its key on
    /// (default `murmur2`, the Java clients'; `consistent` for librdkafka's default).
    #[serde(default)]
    pub partitioner: crate::kafka::Partitioner,
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

/// A sink's `postgres:` section: the table records are written to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// A libpq connection URI, as for a source.
    pub url: String,
    /// The table, `schema.table` (`public` when no schema is given).
    pub table: String,
    /// How records become rows (default: `upsert` when `key` is given, else `insert`).
    pub mode: Option<SinkMode>,
    /// The primary key columns, fields of the records' schema (`upsert` needs them).
    #[serde(default)]
    pub key: Vec<String>,
    /// Create the table from the records' schema when it is missing, and add the columns of
    /// new optional fields (default false: a missing table stops the run).
    #[serde(default)]
    pub create: bool,
    /// Most rows per transaction (default 5000).
    pub batch_size: Option<usize>,
    /// The environment variable holding the password when the URL has none (default
    /// `PGPASSWORD`).
    pub password_env: Option<String>,
}

/// How a Postgres sink writes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkMode {
    /// One row per key: a record inserts or replaces its key's row, a tombstone deletes it.
    Upsert,
    /// Every record appends a row.
    Insert,
}

/// Rows per transaction when `batch_size` is not given.
const DEFAULT_SINK_BATCH: usize = 5000;

impl PostgresSinkConfig {
    /// Checks that need no database.
    pub fn check(&self, path: &str, problems: &mut Problems) {
        check_table_and_url(&self.table, &self.url, path, problems);
        if self.mode == Some(SinkMode::Upsert) && self.key.is_empty() {
            problems.push(&format!("{path}.key"), "mode upsert needs the key columns");
        }
        if self.batch_size == Some(0) {
            problems.push(&format!("{path}.batch_size"), "must be at least 1");
        }
    }

    pub fn mode(&self) -> SinkMode {
        self.mode.unwrap_or(if self.key.is_empty() { SinkMode::Insert } else { SinkMode::Upsert })
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_SINK_BATCH)
    }

    /// `(schema, table)`.
    pub fn schema_and_table(&self) -> (&str, &str) {
        split_table(&self.table)
    }
}

/// `TABLE` or `SCHEMA.TABLE`, and a postgres URI.
fn check_table_and_url(table: &str, url: &str, path: &str, problems: &mut Problems) {
    if table.split('.').count() > 2 || table.split('.').any(str::is_empty) {
        problems.push(&format!("{path}.table"), "must be TABLE or SCHEMA.TABLE");
    }
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        problems.push(&format!("{path}.url"), "must be a postgres:// or postgresql:// URI");
    }
}

fn split_table(table: &str) -> (&str, &str) {
    match table.split_once('.') {
        Some((schema, table)) => (schema, table),
        None => ("public", table),
    }
}

impl PostgresSourceConfig {
    /// Checks that need no database: names that Postgres would refuse.
    pub fn check(&self, path: &str, problems: &mut Problems) {
        check_table_and_url(&self.table, &self.url, path, problems);
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
    }

    /// `(schema, table)`.
    pub fn schema_and_table(&self) -> (&str, &str) {
        split_table(&self.table)
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
