//! Checking a processor's `with:` options and inputs, with the wording the stock plugins share.

use std::sync::LazyLock;

use crate::avro::{Field, RecordType, Schema};
use crate::{port_schema, ConfigError, InputPort};

type Options = serde_json::Map<String, serde_json::Value>;

/// The `with:` mapping (absent counts as empty), with an error pushed for every key not in
/// `known`; `None` (and an error) when `with` is not a mapping.
pub fn options<'a>(
    plugin: &str,
    config: &'a serde_json::Value,
    known: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<&'a Options> {
    static EMPTY: LazyLock<Options> = LazyLock::new(Options::new);
    let options = match config {
        serde_json::Value::Object(options) => options,
        serde_json::Value::Null => &*EMPTY,
        other => {
            errors.push(ConfigError::at("", format!("`with` must be a mapping, got {}", json_kind(other))));
            return None;
        }
    };
    for key in options.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(ConfigError::at(key.clone(), format!("unknown option; {plugin} takes: {}", known.join(", "))));
    }
    Some(options)
}

/// The schema of an input that must be a record, with its record type.
pub fn record_input(plugin: &str, input: &InputPort) -> Result<(Schema, RecordType), ConfigError> {
    let schema = port_schema(input)?;
    match schema.root_record() {
        Some(record) => {
            let record = record.clone();
            Ok((schema, record))
        }
        None => Err(ConfigError::at(
            "",
            format!(
                "input {:?}: {plugin} needs a record schema, got {}",
                input.name,
                schema.resolve(&schema.root).describe()
            ),
        )),
    }
}

/// "a string", "a list" ... for messages about a JSON value of the wrong kind.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

/// `id, title, year`: the names of some fields, for messages.
pub fn field_names(fields: &[Field]) -> String {
    fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}
