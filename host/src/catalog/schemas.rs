//! The registry's state: subjects, their versions, schemas by id, compatibility levels — the
//! fold of the catalog topic. Pure: no I/O, so every server that reads the same log holds the
//! same state, and the rules are unit-tested here.
//!
//! Records carry their ids, so ids agree everywhere. When two servers race (both register
//! version 3 of a subject, or give one id to two schemas), the first record in the log wins
//! and the later one is ignored by every reader ([`Applied::Conflict`]); its writer retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use meshhost_avro::Schema;

use super::compatibility::Compatibility;
use super::log::{CatalogRecord, SchemaKey, SchemaValue};
use super::CatalogError;

/// A schema the registry holds.
#[derive(Debug, Clone)]
pub struct StoredSchema {
    /// The text as first registered.
    pub text: String,
    pub parsed: Arc<Schema>,
    /// Versions (of any subject, soft-deleted included) that use it; at zero it is forgotten.
    uses: usize,
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionEntry {
    pub id: u32,
    pub deleted: bool,
}

/// How a record changed the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The record contradicts an earlier one (a lost race): ignored.
    Conflict,
}

/// What registering a schema under a subject takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A live version of the subject already is this schema.
    Existing { id: u32, version: u32 },
    /// Write this version (the id is the schema's if the registry knows it, else a new one).
    New { key: SchemaKey, value: SchemaValue },
}

#[derive(Debug, Default)]
pub struct Schemas {
    by_id: BTreeMap<u32, StoredSchema>,
    /// Meaning form → id: the same schema gets the same id under every subject.
    id_by_meaning: HashMap<String, u32>,
    subjects: BTreeMap<String, BTreeMap<u32, VersionEntry>>,
    global_level: Option<Compatibility>,
    subject_levels: HashMap<String, Compatibility>,
    /// The highest id ever applied: new ids are above it.
    max_id: u32,
}

/// Which version a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(u32),
}

impl VersionSpec {
    /// `latest`, `-1` or a positive number.
    pub fn parse(text: &str) -> Result<VersionSpec, CatalogError> {
        match text {
            "latest" | "-1" => Ok(VersionSpec::Latest),
            _ => match text.parse::<u32>() {
                Ok(n) if n > 0 => Ok(VersionSpec::Number(n)),
                _ => Err(CatalogError::InvalidVersion(text.to_string())),
            },
        }
    }
}

/// The fingerprint written in a schema key.
pub fn fingerprint(schema: &Schema) -> String {
    format!("{:016x}", meshhost_avro::crc64_avro(schema.meaning_form().as_bytes()))
}

impl Schemas {
    /// Fold one record of the catalog topic into the state.
    pub fn apply(&mut self, record: CatalogRecord) -> Applied {
        match record {
            CatalogRecord::Config { subject: None, value } => {
                self.global_level = value.map(|v| v.compatibility);
                Applied::Done
            }
            CatalogRecord::Config { subject: Some(subject), value } => {
                match value {
                    Some(value) => self.subject_levels.insert(subject, value.compatibility),
                    None => self.subject_levels.remove(&subject),
                };
                Applied::Done
            }
            CatalogRecord::Schema { key, value: None } => self.remove_version(&key),
            CatalogRecord::Schema { key, value: Some(value) } => self.put_version(key, value),
            // The sources catalog's records (see `CatalogState`).
            CatalogRecord::Source { .. } | CatalogRecord::Consumer { .. } => Applied::Done,
        }
    }

    fn put_version(&mut self, key: SchemaKey, value: SchemaValue) -> Applied {
        let Ok(parsed) = Schema::parse(&value.schema) else {
            tracing::warn!("catalog: version {} of {:?} holds an invalid schema; ignored", key.version, key.subject);
            return Applied::Conflict;
        };
        let meaning = parsed.meaning_form();
        if let Some(stored) = self.by_id.get(&key.id) {
            if stored.parsed.meaning_form() != meaning {
                return Applied::Conflict; // the id was given to another schema first
            }
        }
        if self.id_by_meaning.get(&meaning).is_some_and(|id| *id != key.id) {
            return Applied::Conflict; // the schema got another id first
        }
        let versions = self.subjects.entry(key.subject.clone()).or_default();
        match versions.get_mut(&key.version) {
            Some(entry) if entry.id == key.id => {
                entry.deleted = value.deleted;
                return Applied::Done;
            }
            Some(_) => return Applied::Conflict, // the version went to another schema first
            None => {
                versions.insert(key.version, VersionEntry { id: key.id, deleted: value.deleted });
            }
        }
        self.max_id = self.max_id.max(key.id);
        self.id_by_meaning.insert(meaning, key.id);
        self.by_id
            .entry(key.id)
            .or_insert_with(|| StoredSchema { text: value.schema, parsed: Arc::new(parsed), uses: 0 })
            .uses += 1;
        Applied::Done
    }

    fn remove_version(&mut self, key: &SchemaKey) -> Applied {
        let Some(versions) = self.subjects.get_mut(&key.subject) else { return Applied::Conflict };
        let held = versions.get(&key.version).filter(|entry| entry.id == key.id);
        if held.is_none_or(|entry| fingerprint(&self.by_id[&entry.id].parsed) != key.fingerprint) {
            return Applied::Conflict; // a loser's tombstone, or a version already gone
        }
        versions.remove(&key.version);
        if versions.is_empty() {
            self.subjects.remove(&key.subject);
        }
        if let Some(stored) = self.by_id.get_mut(&key.id) {
            stored.uses -= 1;
            if stored.uses == 0 {
                let stored = self.by_id.remove(&key.id).expect("present");
                self.id_by_meaning.remove(&stored.parsed.meaning_form());
            }
        }
        Applied::Done
    }

    /// Subjects with a live version (or any version, with `deleted`).
    pub fn subjects(&self, deleted: bool) -> Vec<&str> {
        self.subjects
            .iter()
            .filter(|(_, versions)| deleted || versions.values().any(|v| !v.deleted))
            .map(|(subject, _)| subject.as_str())
            .collect()
    }

    /// The versions of `subject`, oldest first.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>, CatalogError> {
        let versions: Vec<u32> = self
            .subjects
            .get(subject)
            .map(|v| v.iter().filter(|(_, e)| deleted || !e.deleted).map(|(n, _)| *n).collect())
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(CatalogError::SubjectNotFound(subject.to_string()));
        }
        Ok(versions)
    }

    /// One version of `subject`: its number and entry.
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<(u32, VersionEntry), CatalogError> {
        let versions = self.subjects.get(subject).ok_or_else(|| CatalogError::SubjectNotFound(subject.to_string()))?;
        let found = match spec {
            VersionSpec::Latest => versions.iter().rev().find(|(_, e)| deleted || !e.deleted),
            VersionSpec::Number(n) => versions.get_key_value(&n).filter(|(_, e)| deleted || !e.deleted),
        };
        match (found, spec) {
            (Some((n, entry)), _) => Ok((*n, *entry)),
            (None, VersionSpec::Latest) => Err(CatalogError::SubjectNotFound(subject.to_string())),
            (None, VersionSpec::Number(n)) => Err(CatalogError::VersionNotFound(subject.to_string(), n)),
        }
    }

    pub fn schema(&self, id: u32) -> Result<&StoredSchema, CatalogError> {
        self.by_id.get(&id).ok_or(CatalogError::SchemaNotFound(Some(id)))
    }

    /// The (subject, version) pairs that use schema `id`.
    pub fn uses_of(&self, id: u32, deleted: bool) -> Vec<(&str, u32)> {
        self.subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |(_, e)| e.id == id && (deleted || !e.deleted))
                    .map(move |(n, _)| (subject.as_str(), *n))
            })
            .collect()
    }

    /// The version of `subject` that is `schema` (same meaning form).
    pub fn find(&self, subject: &str, schema: &Schema, deleted: bool) -> Result<(u32, VersionEntry), CatalogError> {
        let versions = self.subjects.get(subject).ok_or_else(|| CatalogError::SubjectNotFound(subject.to_string()))?;
        let id = self.id_by_meaning.get(&schema.meaning_form()).ok_or(CatalogError::SchemaNotFound(None))?;
        versions
            .iter()
            .rev()
            .find(|(_, e)| e.id == *id && (deleted || !e.deleted))
            .map(|(n, e)| (*n, *e))
            .ok_or(CatalogError::SchemaNotFound(None))
    }

    /// The level of `subject`: its own, else the global one, else BACKWARD.
    pub fn level(&self, subject: Option<&str>) -> Compatibility {
        subject.and_then(|s| self.subject_levels.get(s)).copied().or(self.global_level).unwrap_or_default()
    }

    /// The subject's own level, if it has one.
    pub fn subject_level(&self, subject: &str) -> Option<Compatibility> {
        self.subject_levels.get(subject).copied()
    }

    /// Why `schema` may not be a new version of `subject` (compared with `against`, or with
    /// the versions its level asks for); empty when it may.
    pub fn incompatibilities(
        &self,
        subject: &str,
        schema: &Schema,
        against: Option<VersionSpec>,
    ) -> Result<Vec<String>, CatalogError> {
        let level = self.level(Some(subject));
        let live: Vec<(u32, &Schema)> = match self.subjects.get(subject) {
            None => Vec::new(),
            Some(versions) => versions
                .iter()
                .filter(|(_, e)| !e.deleted)
                .map(|(n, e)| (*n, self.by_id[&e.id].parsed.as_ref()))
                .collect(),
        };
        match against {
            None | Some(VersionSpec::Latest) => Ok(level.check(schema, &live)),
            Some(VersionSpec::Number(n)) => {
                let (_, entry) = self.version(subject, VersionSpec::Number(n), false)?;
                Ok(level.check_pair(schema, n, &self.by_id[&entry.id].parsed))
            }
        }
    }

    /// What registering `schema` (its text `text`) under `subject` takes, compatibility
    /// checked.
    pub fn plan_registration(&self, subject: &str, text: &str, schema: &Schema) -> Result<Registration, CatalogError> {
        if let Ok((version, entry)) = self.find(subject, schema, false) {
            return Ok(Registration::Existing { id: entry.id, version });
        }
        let reasons = self.incompatibilities(subject, schema, None)?;
        if !reasons.is_empty() {
            return Err(CatalogError::Incompatible { subject: subject.to_string(), reasons });
        }
        let id = self.id_by_meaning.get(&schema.meaning_form()).copied().unwrap_or(self.max_id + 1);
        let version = self.subjects.get(subject).and_then(|v| v.keys().next_back()).map_or(1, |n| n + 1);
        Ok(Registration::New {
            key: SchemaKey { subject: subject.to_string(), version, id, fingerprint: fingerprint(schema) },
            value: SchemaValue { schema: text.to_string(), deleted: false },
        })
    }

    /// The keys of `subject`'s versions (one, with `only`), each with whether it is soft-deleted.
    pub fn keys(&self, subject: &str, only: Option<u32>) -> Vec<(SchemaKey, bool, String)> {
        let Some(versions) = self.subjects.get(subject) else { return Vec::new() };
        versions
            .iter()
            .filter(|(n, _)| only.is_none_or(|o| o == **n))
            .map(|(n, e)| {
                let stored = &self.by_id[&e.id];
                let key = SchemaKey {
                    subject: subject.to_string(),
                    version: *n,
                    id: e.id,
                    fingerprint: fingerprint(&stored.parsed),
                };
                (key, e.deleted, stored.text.clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::log::ConfigValue;

    fn schema(fields: &str) -> (String, Schema) {
        let text = format!(r#"{{"type": "record", "name": "R", "fields": [{fields}]}}"#);
        let parsed = Schema::parse(&text).unwrap();
        (text, parsed)
    }

    fn register(state: &mut Schemas, subject: &str, fields: &str) -> Result<u32, CatalogError> {
        let (text, parsed) = schema(fields);
        match state.plan_registration(subject, &text, &parsed)? {
            Registration::Existing { id, .. } => Ok(id),
            Registration::New { key, value } => {
                let id = key.id;
                assert_eq!(state.apply(CatalogRecord::Schema { key, value: Some(value) }), Applied::Done);
                Ok(id)
            }
        }
    }

    #[test]
    fn same_schema_same_id_across_subjects_and_spellings() {
        let mut state = Schemas::default();
        let a = register(&mut state, "a-value", r#"{"name": "x", "type": "int"}"#).unwrap();
        let again = register(&mut state, "a-value", r#"{"name":"x","type":{"type":"int"}}"#).unwrap();
        let b = register(&mut state, "b-value", r#"{"name": "x", "type": "int"}"#).unwrap();
        assert_eq!((a, again, b), (1, 1, 1));
        assert_eq!(state.versions("a-value", false).unwrap(), vec![1]);
        let c = register(
            &mut state,
            "a-value",
            r#"{"name": "x", "type": "int"}, {"name": "y", "type": "int", "default": 0}"#,
        )
        .unwrap();
        assert_eq!(c, 2);
        assert_eq!(state.versions("a-value", false).unwrap(), vec![1, 2]);
        // A default changes the meaning, not the canonical form: a new id.
        let d = register(
            &mut state,
            "a-value",
            r#"{"name": "x", "type": "int"}, {"name": "y", "type": "int", "default": 5}"#,
        )
        .unwrap();
        assert_eq!(d, 3);
    }

    #[test]
    fn incompatible_versions_are_refused_per_level() {
        let mut state = Schemas::default();
        register(&mut state, "s", r#"{"name": "x", "type": "int"}"#).unwrap();
        let required = r#"{"name": "x", "type": "int"}, {"name": "y", "type": "int"}"#;
        assert!(matches!(register(&mut state, "s", required), Err(CatalogError::Incompatible { .. })));
        state.apply(CatalogRecord::Config {
            subject: Some("s".into()),
            value: Some(ConfigValue { compatibility: Compatibility::Forward }),
        });
        assert_eq!(state.level(Some("s")), Compatibility::Forward);
        assert_eq!(state.level(Some("other")), Compatibility::Backward);
        assert_eq!(register(&mut state, "s", required).unwrap(), 2);
    }

    #[test]
    fn first_record_wins_a_race() {
        let mut state = Schemas::default();
        let (t1, s1) = schema(r#"{"name": "x", "type": "int"}"#);
        let (t2, s2) = schema(r#"{"name": "y", "type": "int"}"#);
        let key = |s: &Schema| SchemaKey { subject: "s".into(), version: 1, id: 1, fingerprint: fingerprint(s) };
        let put = |t: &str| Some(SchemaValue { schema: t.to_string(), deleted: false });
        assert_eq!(state.apply(CatalogRecord::Schema { key: key(&s1), value: put(&t1) }), Applied::Done);
        assert_eq!(state.apply(CatalogRecord::Schema { key: key(&s2), value: put(&t2) }), Applied::Conflict);
        // The loser's tombstone does not remove the winner.
        assert_eq!(state.apply(CatalogRecord::Schema { key: key(&s2), value: None }), Applied::Conflict);
        assert_eq!(state.schema(1).unwrap().text, t1);
        // Another id for a known schema also loses.
        let other = SchemaKey { subject: "t".into(), version: 1, id: 2, fingerprint: fingerprint(&s1) };
        assert_eq!(state.apply(CatalogRecord::Schema { key: other, value: put(&t1) }), Applied::Conflict);
    }

    #[test]
    fn soft_and_permanent_deletes() {
        let mut state = Schemas::default();
        register(&mut state, "s", r#"{"name": "x", "type": "int"}"#).unwrap();
        register(&mut state, "s", r#"{"name": "x", "type": "int"}, {"name": "y", "type": "int", "default": 0}"#)
            .unwrap();
        let (key, _, text) = state.keys("s", Some(2)).remove(0);
        state.apply(CatalogRecord::Schema {
            key: key.clone(),
            value: Some(SchemaValue { schema: text, deleted: true }),
        });
        assert_eq!(state.versions("s", false).unwrap(), vec![1]);
        assert_eq!(state.versions("s", true).unwrap(), vec![1, 2]);
        assert_eq!(state.version("s", VersionSpec::Latest, false).unwrap().0, 1);
        assert!(matches!(state.version("s", VersionSpec::Number(2), false), Err(CatalogError::VersionNotFound(_, 2))));
        assert!(state.schema(2).is_ok(), "a soft-deleted version keeps its schema");
        state.apply(CatalogRecord::Schema { key, value: None });
        assert!(state.schema(2).is_err());
        assert_eq!(state.versions("s", true).unwrap(), vec![1]);
        // The next version is above the last one still held.
        let id =
            register(&mut state, "s", r#"{"name": "x", "type": "int"}, {"name": "z", "type": "int", "default": 0}"#)
                .unwrap();
        assert_eq!(id, 3, "ids are not reused");
        assert_eq!(state.versions("s", false).unwrap(), vec![1, 2]);
    }
}
