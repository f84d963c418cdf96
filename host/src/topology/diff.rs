//! What changes between two plans of one pipeline (`meshhost lock --update`): for each source,
//! processor output and sink whose schema differs, the fields added (`+`), removed (`-`) and
//! retyped (`~`).

use super::{EdgeSchema, Topology};
use crate::schema_text::type_name;

/// One line per changed field, `sinks.out: + country: string`; nothing when the plans agree.
pub fn changes(old: &Topology, new: &Topology) -> Vec<String> {
    let mut out = Vec::new();
    for source in &new.sources {
        if let Some(before) = old.sources.iter().find(|s| s.id == source.id) {
            edge(&format!("sources.{}", source.id), &before.schema, &source.schema, &mut out);
        }
    }
    for processor in &new.processors {
        let Some(before) = old.processors.iter().find(|p| p.id == processor.id) else { continue };
        for output in &processor.outputs {
            if let Some(port) = before.outputs.iter().find(|o| o.name == output.name) {
                edge(&format!("processors.{}.{}", processor.id, output.name), &port.schema, &output.schema, &mut out);
            }
        }
    }
    for sink in &new.sinks {
        if let Some(before) = old.sinks.iter().find(|s| s.id == sink.id) {
            edge(&format!("sinks.{}", sink.id), &before.schema, &sink.schema, &mut out);
        }
    }
    out
}

fn edge(path: &str, old: &EdgeSchema, new: &EdgeSchema, out: &mut Vec<String>) {
    if old.same_meaning(new) {
        return;
    }
    let fields = |schema: &EdgeSchema| -> Vec<(String, String)> {
        schema
            .parsed
            .root_record()
            .map(|r| r.fields.iter().map(|f| (f.name.clone(), type_name(&f.ty))).collect())
            .unwrap_or_default()
    };
    let (before, after) = (fields(old), fields(new));
    let start = out.len();
    for (name, ty) in &before {
        match after.iter().find(|(n, _)| n == name) {
            None => out.push(format!("{path}: - {name}: {ty}")),
            Some((_, new_ty)) if new_ty != ty => out.push(format!("{path}: ~ {name}: {ty} -> {new_ty}")),
            Some(_) => {}
        }
    }
    for (name, ty) in after.iter().filter(|(n, _)| !before.iter().any(|(b, _)| b == n)) {
        out.push(format!("{path}: + {name}: {ty}"));
    }
    if out.len() == start {
        out.push(format!("{path}: schema changed (defaults, names or attributes; no field added, removed or retyped)"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge_lines(old: &str, new: &str) -> Vec<String> {
        let mut out = Vec::new();
        edge("sinks.out", &EdgeSchema::parse(old).unwrap(), &EdgeSchema::parse(new).unwrap(), &mut out);
        out
    }

    #[test]
    fn fields_added_removed_and_retyped() {
        let old = r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "string"}]}"#;
        let new = r#"{"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}, {"name": "c", "type": ["null", "string"]}]}"#;
        assert_eq!(
            edge_lines(old, new),
            ["sinks.out: ~ a: int -> long", "sinks.out: - b: string", "sinks.out: + c: string or null"]
        );
        assert!(edge_lines(old, old).is_empty());
        let defaulted = old.replace(r#""type": "string"}"#, r#""type": "string", "default": "x"}"#);
        assert_eq!(edge_lines(old, &defaulted).len(), 1);
    }
}
