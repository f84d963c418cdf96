//! Compatibility levels, decided by Avro schema resolution (the resolver the union plugin and
//! `confluent-avro` sources use, so the registry and the pipelines agree on what reads what).
//!
//! BACKWARD: the new schema can read data written with the old one (upgrade consumers first).
//! FORWARD: the old schema can read data written with the new one (upgrade producers first).
//! FULL: both. Plain levels compare with the latest version, `_TRANSITIVE` ones with all.

use std::str::FromStr;

use meshhost_avro::{Resolver, Schema};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    None,
    #[default]
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Compatibility {
    pub const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive | Compatibility::ForwardTransitive | Compatibility::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Compatibility::Backward
                | Compatibility::BackwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Compatibility::Forward
                | Compatibility::ForwardTransitive
                | Compatibility::Full
                | Compatibility::FullTransitive
        )
    }

    /// Why `new` may not follow the subject's live versions `existing` (oldest first) at this
    /// level; empty when it may.
    pub fn check(self, new: &Schema, existing: &[(u32, &Schema)]) -> Vec<String> {
        let compared = if self.transitive() { existing } else { &existing[existing.len().saturating_sub(1)..] };
        compared.iter().flat_map(|(version, old)| self.check_pair(new, *version, old)).collect()
    }

    /// Why `new` and one version `old` are incompatible at this level (transitivity aside).
    pub fn check_pair(self, new: &Schema, version: u32, old: &Schema) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.backward() {
            if let Err(e) = Resolver::new(old, new) {
                reasons.push(format!("the new schema cannot read data written with version {version}: {e}"));
            }
        }
        if self.forward() {
            if let Err(e) = Resolver::new(new, old) {
                reasons.push(format!("version {version} cannot read data written with the new schema: {e}"));
            }
        }
        reasons
    }
}

impl FromStr for Compatibility {
    type Err = String;

    fn from_str(text: &str) -> Result<Compatibility, String> {
        Compatibility::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| format!("Invalid compatibility level {text:?}: use one of NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse(&format!(r#"{{"type": "record", "name": "R", "fields": [{fields}]}}"#)).unwrap()
    }

    /// v1 {a}; v2 adds b with a default; v3 drops a (no default in v1/v2) and keeps b.
    fn versions() -> (Schema, Schema, Schema) {
        (
            record(r#"{"name": "a", "type": "int"}"#),
            record(r#"{"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": "x"}"#),
            record(r#"{"name": "b", "type": "string", "default": "x"}"#),
        )
    }

    #[test]
    fn each_level_against_latest_and_all() {
        let (v1, v2, v3) = versions();
        let existing = [(1, &v1), (2, &v2)];
        // v3 reads v2 (drops a) and v1 (drops a, b defaulted): backward at every depth.
        // v2 cannot read v3 data (a has no default): not forward.
        let expect = [
            (Compatibility::None, true),
            (Compatibility::Backward, true),
            (Compatibility::BackwardTransitive, true),
            (Compatibility::Forward, false),
            (Compatibility::ForwardTransitive, false),
            (Compatibility::Full, false),
            (Compatibility::FullTransitive, false),
        ];
        for (level, ok) in expect {
            assert_eq!(level.check(&v3, &existing).is_empty(), ok, "{level:?}");
        }
    }

    #[test]
    fn transitive_levels_look_past_the_latest() {
        // v1 {a}; v2 adds c with a default; v3 makes c required: only v1 breaks it.
        let v1 = record(r#"{"name": "a", "type": "int"}"#);
        let v2 = record(r#"{"name": "a", "type": "int"}, {"name": "c", "type": "string", "default": ""}"#);
        let v3 = record(r#"{"name": "a", "type": "int"}, {"name": "c", "type": "string"}"#);
        let existing = [(1, &v1), (2, &v2)];
        // v3 reads v2 (c present) but not v1 (c missing, no default).
        assert!(Compatibility::Backward.check(&v3, &existing).is_empty());
        let reasons = Compatibility::BackwardTransitive.check(&v3, &existing);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].contains("version 1"), "{reasons:?}");
        // Forward: old readers of the new data. v1 reads v3 (c skipped); v2 reads v3.
        assert!(Compatibility::ForwardTransitive.check(&v3, &existing).is_empty());
        assert!(Compatibility::Full.check(&v3, &existing).is_empty());
        assert_eq!(Compatibility::FullTransitive.check(&v3, &existing).len(), 1);
    }

    #[test]
    fn type_changes_follow_promotion_rules() {
        let int = record(r#"{"name": "a", "type": "int"}"#);
        let long = record(r#"{"name": "a", "type": "long"}"#);
        // long reads int (promotion), int does not read long.
        assert!(Compatibility::Backward.check(&long, &[(1, &int)]).is_empty());
        assert!(!Compatibility::Forward.check(&long, &[(1, &int)]).is_empty());
        assert!(Compatibility::None.check(&int, &[(1, &long)]).is_empty());
    }

    #[test]
    fn levels_parse_case_insensitively() {
        for level in Compatibility::ALL {
            assert_eq!(level.as_str().to_lowercase().parse::<Compatibility>(), Ok(level));
        }
        assert!("SIDEWAYS".parse::<Compatibility>().is_err());
    }
}
