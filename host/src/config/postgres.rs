//! A source's `postgres:` section: a captured table, as the pipeline file gives it. What needs
//! the database (its columns, the slot) is the `postgres` module's, at planning and run time.

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
