//! `mesh/filter`: keeps the records for which a CEL condition is true.
//!
//! ```yaml
//! with:
//!   condition: "year >= 2000 && 'drama' in genres"
//! ```
//!
//! The condition's variables are the top-level fields of the input record. Per record only the
//! fields the condition names are decoded (the others are skipped), and a kept record goes out
//! untouched: same key, value bytes, headers and timestamp, on port `out`, whose schema is the
//! input schema. How Avro values appear in CEL, logical types included, is in [`values`].
//!
//! Conditions that only compare top-level fields with literals (`year >= 2000 && country ==
//! 'US'`, `updated > timestamp('2026-01-01T00:00:00Z')`) take a fast path on the datum's bytes
//! ([`fast`]); every other condition, and every record the fast path cannot decide, goes through
//! the CEL interpreter.
//!
//! A result other than `true` or `false`, or an evaluation error (a missing map key, a type
//! mismatch), sends the record to the dead-letter topic with the reason, as does a value that
//! does not decode.

use std::sync::Arc;

mod escaped;
pub mod fast;
pub mod values;

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env};
use meshhost_sdk::avro::{self, Reader, Schema};
use meshhost_sdk::options::{self, field_names, json_kind};
use meshhost_sdk::{Batch, ConfigError, InputPort, Output, OutputPort, Processor};

/// The options `with:` accepts.
const OPTIONS: &[&str] = &["condition"];

/// Identifiers that name a function namespace rather than a variable (`optional.of(x)`).
const NAMESPACES: &[&str] = &["optional", "math", "lists", "strings"];

/// The filter of one processor instance.
pub struct Filter {
    condition: IdedExpr,
    schema: Schema,
    /// The top-level fields of the input record, in schema order.
    fields: Vec<avro::Field>,
    /// For each field, whether the condition names it.
    needed: Vec<bool>,
    /// How many fields must be read: every field after the last needed one is left unread.
    read: usize,
    /// Holds the stdlib and, per record, the fields the condition names (rebound each time).
    context: Context<'static, 'static>,
    /// The condition's fast form, when it has one.
    fast: Option<fast::Condition>,
    /// The needed fields' values for the fast path, by field index (reused across records).
    scalars: Vec<fast::Scalar>,
}

impl Filter {
    /// Build the filter from its `with:` mapping and its input ports.
    pub fn new(config: &serde_json::Value, inputs: &[InputPort]) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        let mut errors = Vec::new();
        let options = options::options("mesh/filter", config, OPTIONS, &mut errors);
        let input = match inputs {
            [input] => match options::record_input("mesh/filter", input) {
                Ok((schema, record)) => Some((input, schema, record.fields)),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            _ => {
                errors.push(ConfigError::at("", format!("mesh/filter takes exactly one input, got {}", inputs.len())));
                None
            }
        };

        let env = Arc::new(environment());
        let condition = match options.map(|o| o.get("condition")) {
            None => None, // `with` itself is wrong
            Some(None) => {
                errors.push(ConfigError::at(
                    "condition",
                    "missing: give a CEL expression over the fields of the input record",
                ));
                None
            }
            Some(Some(serde_json::Value::String(source))) => match parse(&env, source) {
                Ok(condition) => Some(condition),
                Err(message) => {
                    errors.push(ConfigError::at("condition", message));
                    None
                }
            },
            Some(Some(other)) => {
                errors.push(ConfigError::at(
                    "condition",
                    format!("must be a string (a CEL expression), got {}", json_kind(other)),
                ));
                None
            }
        };

        let (Some((input, schema, fields)), Some(condition)) = (input, condition) else {
            return Err(errors);
        };

        // Bind every free variable of the condition to a field of the input record.
        let mut needed = vec![false; fields.len()];
        let references = References::of(&condition);
        if let Some(refused) = references.two_variable_refusal() {
            errors.push(ConfigError::at("condition", refused));
            return Err(errors);
        }
        for name in &references.variables {
            if let Some(i) = fields.iter().position(|f| &f.name == name) {
                needed[i] = true;
            } else if env.types().find_type(name).is_none() {
                errors.push(ConfigError::at(
                    "condition",
                    format!("no field {name:?} in input schema; fields are: {}", field_names(&fields)),
                ));
            }
        }
        for unknown in references.unknown_functions(&env) {
            errors.push(ConfigError::at("condition", unknown));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let read = needed.iter().rposition(|&n| n).map_or(0, |i| i + 1);
        let outputs = vec![OutputPort { name: "out".into(), schema: input.schema.clone() }];
        let context = Context::with_env(env);
        let fast = fast::Condition::compile(&condition, &schema, &fields);
        let scalars = vec![fast::Scalar::Other; fields.len()];
        Ok((Filter { condition, schema, fields, needed, read, context, fast, scalars }, outputs))
    }

    /// Whether the record with this value is kept; `Err` says why it cannot be decided.
    pub fn keep(&mut self, value: &[u8]) -> Result<bool, String> {
        if let Some(keep) = self.fast_keep(value) {
            return Ok(keep);
        }
        let mut reader = Reader::new(value);
        for (field, &needed) in self.fields[..self.read].iter().zip(&self.needed) {
            if needed {
                let value =
                    avro::decode(&self.schema, &field.ty, &mut reader).map_err(|e| undecodable(&field.name, &e))?;
                let value = values::to_cel(&self.schema, &field.ty, value)
                    .map_err(|e| format!("field \"{}\" has no CEL value: {e}", field.name))?;
                self.context.add_variable_as_val(field.name.clone(), value);
            } else {
                avro::skip(&self.schema, &field.ty, &mut reader).map_err(|e| undecodable(&field.name, &e))?;
            }
        }
        match cel::Value::resolve(&self.condition, &self.context) {
            Ok(cel::Value::Bool(keep)) => Ok(keep),
            Ok(other) => Err(format!("condition evaluated to {} {other:?}, not a bool", other.type_of())),
            Err(e) => Err(format!("condition failed: {e}")),
        }
    }
}

impl Filter {
    /// The fast path's verdict, or `None` when CEL must decide (no fast form, a value the fast
    /// path does not compare, or a datum that does not decode — CEL then says why).
    fn fast_keep(&mut self, value: &[u8]) -> Option<bool> {
        let condition = self.fast.as_ref()?;
        let mut reader = Reader::new(value);
        for (i, (field, &needed)) in self.fields[..self.read].iter().zip(&self.needed).enumerate() {
            if needed {
                self.scalars[i] = fast::read(&self.schema, &field.ty, &mut reader).ok()?;
            } else {
                avro::skip(&self.schema, &field.ty, &mut reader).ok()?;
            }
        }
        condition.eval(&self.scalars, value, &self.schema, &self.fields)
    }

    /// Whether the condition has a fast form.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }
}

impl Processor for Filter {
    fn init(config: serde_json::Value, inputs: Vec<InputPort>) -> Result<(Self, Vec<OutputPort>), Vec<ConfigError>> {
        Filter::new(&config, &inputs)
    }

    fn process(&mut self, _input: u32, batch: &Batch, out: &mut Output) {
        for (i, record) in batch.iter().enumerate() {
            let i = i as u32;
            let verdict = match record.value() {
                None => Ok(true), // a tombstone passes through
                Some(value) => self.keep(value),
            };
            match verdict {
                Ok(true) => out.pass(0, i),
                Ok(false) => {}
                Err(reason) => out.fail(i, reason),
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
meshhost_sdk::export!(Filter);

/// Evaluate a CEL expression as a condition is evaluated — parsed, checked and run in the same
/// environment — with `variables` bound instead of a record's fields. For the CEL
/// specification's conformance cases (`tests/cel_conformance.rs`).
#[doc(hidden)]
pub fn evaluate(expression: &str, variables: Vec<(String, cel::Value)>) -> Result<cel::Value, String> {
    let env = Arc::new(environment());
    let expression = parse(&env, expression)?;
    let references = References::of(&expression);
    if let Some(refused) = references.two_variable_refusal() {
        return Err(refused);
    }
    let unbound = references
        .variables
        .iter()
        .find(|name| !variables.iter().any(|(bound, _)| bound == *name) && env.types().find_type(name).is_none());
    if let Some(name) = unbound {
        return Err(format!("no variable {name:?}"));
    }
    if let Some(unknown) = references.unknown_functions(&env).next() {
        return Err(unknown);
    }
    let mut context = Context::with_env(env);
    for (name, value) in variables {
        context.add_variable_from_value(name, value);
    }
    cel::Value::resolve(&expression, &context).map_err(|e| e.to_string())
}

/// Parse a condition: CEL, with quoted field names (`` m.`content-type` ``, see [`escaped`]).
fn parse(env: &Env, source: &str) -> Result<IdedExpr, String> {
    let invalid = |e: &dyn std::fmt::Display| format!("not a valid CEL expression: {e}");
    let (text, quoted) = escaped::hide(source).map_err(|e| invalid(&e))?;
    let mut condition = env.parser().parse(&text).map_err(|e| {
        let mut message = invalid(&e);
        if message.contains("invalid argument to has() macro") {
            message.push_str(
                "\n(has() tests a field of a record or a key of a map, as in `has(director.born)`; \
                 compare a top-level field with null instead: `<field> != null`)",
            );
        }
        message
    })?;
    escaped::restore(&mut condition, &quoted).map_err(|e| invalid(&e))?;
    Ok(condition)
}

/// The comprehensions over two variables (key and value, index and element), which the cel crate
/// parses as plain calls and cannot evaluate.
const TWO_VARIABLE_MACROS: &[&str] = &["all", "exists", "existsOne", "exists_one"];
const TWO_VARIABLE_FUNCTIONS: &[&str] = &["transformList", "transformMap", "transformMapEntry"];

/// What a condition refers to: the variables it reads that no comprehension binds, and the
/// functions it calls by name (`size`, `startsWith`, `math.greatest`), in order of first use.
#[derive(Debug, Default, PartialEq)]
struct References {
    variables: Vec<String>,
    functions: Vec<String>,
    /// The first two-variable comprehension, if the condition has one.
    two_variable_comprehension: Option<String>,
}

impl References {
    fn of(expr: &IdedExpr) -> References {
        let mut refs = References::default();
        refs.walk(expr, &mut Vec::new());
        refs
    }

    /// Why the condition is refused for a two-variable comprehension, if it has one.
    fn two_variable_refusal(&self) -> Option<String> {
        self.two_variable_comprehension.as_ref().map(|name| {
            format!(
                "{name}(x, y, ...): two-variable comprehensions are not supported (the cel crate mesh/filter runs \
                 on does not evaluate them); use the one-variable form, e.g. `m.all(k, m[k] > 0)`"
            )
        })
    }

    /// The functions called that `env` does not declare, as errors (meshhost refuses them when
    /// the processor starts, where CEL's runtime would fail only the records that reach them).
    fn unknown_functions<'a>(&'a self, env: &'a Arc<Env>) -> impl Iterator<Item = String> + 'a {
        self.functions.iter().filter(|name| !declares(env, name)).map(|name| format!("unknown function {name:?}"))
    }

    fn walk(&mut self, expr: &IdedExpr, bound: &mut Vec<String>) {
        match &expr.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => {
                // `@result` and the like are the accumulators of expanded macros
                if !name.starts_with('@') && !bound.contains(name) {
                    push_new(&mut self.variables, name);
                }
            }
            Expr::Select(select) => self.walk(&select.operand, bound),
            Expr::Call(call) => {
                let name = call.func_name.as_str();
                let two_variable = (TWO_VARIABLE_MACROS.contains(&name) && call.args.len() == 3)
                    || TWO_VARIABLE_FUNCTIONS.contains(&name);
                if call.target.is_some() && two_variable && self.two_variable_comprehension.is_none() {
                    self.two_variable_comprehension = Some(call.func_name.clone());
                }
                let namespace = call.target.as_deref().and_then(|target| match &target.expr {
                    Expr::Ident(name) if NAMESPACES.contains(&name.as_str()) && !bound.contains(name) => Some(name),
                    _ => None,
                });
                match namespace {
                    // `optional.of(x)`: a namespaced function, not a method of a variable
                    Some(namespace) => push_new(&mut self.functions, &format!("{namespace}.{}", call.func_name)),
                    None => {
                        // Operators (`_+_`, `!_`, `@in`) are not names a person writes.
                        if call.func_name.starts_with(|c: char| c.is_ascii_alphabetic()) {
                            push_new(&mut self.functions, &call.func_name);
                        }
                        if let Some(target) = &call.target {
                            self.walk(target, bound);
                        }
                    }
                }
                for arg in &call.args {
                    self.walk(arg, bound);
                }
            }
            Expr::List(list) => {
                for element in &list.elements {
                    self.walk(element, bound);
                }
            }
            Expr::Map(map) => {
                for entry in &map.entries {
                    self.walk_entry(&entry.expr, bound);
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    self.walk_entry(&entry.expr, bound);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, bound);
                self.walk(&c.accu_init, bound);
                let depth = bound.len();
                bound.push(c.iter_var.clone());
                bound.extend(c.iter_var2.clone());
                bound.push(c.accu_var.clone());
                self.walk(&c.loop_cond, bound);
                self.walk(&c.loop_step, bound);
                self.walk(&c.result, bound);
                bound.truncate(depth);
            }
        }
    }

    fn walk_entry(&mut self, entry: &EntryExpr, bound: &mut Vec<String>) {
        match entry {
            EntryExpr::StructField(field) => self.walk(&field.value, bound),
            EntryExpr::MapEntry(entry) => {
                self.walk(&entry.key, bound);
                self.walk(&entry.value, bound);
            }
        }
    }
}

fn push_new(list: &mut Vec<String>, name: &str) {
    if !list.iter().any(|n| n == name) {
        list.push(name.to_owned());
    }
}

/// The CEL environment conditions run in: the standard library (`matches` included) and the
/// strings, math and lists extensions.
fn environment() -> Env {
    let mut env = Env::stdlib();
    for extension in [cel::extensions::strings, cel::extensions::math, cel::extensions::lists] {
        env.add_extension(extension).expect("the extensions do not overlap");
    }
    env
}

/// Whether `env` declares a function called `name`.
fn declares(env: &Arc<Env>, name: &str) -> bool {
    // cel has no public look-up: adding a function of a declared name is refused.
    Context::with_env(Arc::clone(env)).add_function(name, || 0i64).is_err()
}

/// Why a value does not decode, at the top-level field `field`.
fn undecodable(field: &str, e: &avro::DatumError) -> String {
    let inner = e.path();
    let separator = if inner.is_empty() || inner.starts_with('[') { "" } else { "." };
    let at = e.offset().map_or_else(String::new, |o| format!(" at byte {o}"));
    format!("value does not decode as the input schema: field \"{field}{separator}{inner}\": {}{at}", e.kind())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshhost_sdk::avro::Value;
    use meshhost_sdk::{Header, Record};
    use serde_json::json;

    const SCHEMA: &str = r#"{"type": "record", "name": "Movie", "namespace": "test", "fields": [
        {"name": "id", "type": "long"},
        {"name": "synopsis", "type": "string"},
        {"name": "title", "type": "string"},
        {"name": "year", "type": "int"},
        {"name": "rating", "type": "float"},
        {"name": "released", "type": "boolean"},
        {"name": "subtitle", "type": ["null", "string"], "default": null},
        {"name": "director", "type": {"type": "record", "name": "Person", "fields": [
            {"name": "name", "type": "string"},
            {"name": "born", "type": ["null", "int"], "default": null}]}},
        {"name": "producer", "type": ["null", "Person"], "default": null},
        {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "COMEDY", "HORROR"]}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "scores", "type": {"type": "map", "values": "double"}},
        {"name": "cast", "type": {"type": "array", "items": "Person"}},
        {"name": "poster", "type": "bytes"},
        {"name": "checksum", "type": {"type": "fixed", "name": "Md5", "size": 4}},
        {"name": "updated", "type": {"type": "long", "logicalType": "timestamp-millis"}}
    ]}"#;

    fn person(name: &str, born: Option<i32>) -> Value {
        Value::Record(vec![
            ("name".into(), Value::String(name.into())),
            (
                "born".into(),
                born.map_or(Value::Union(0, Box::new(Value::Null)), |y| Value::Union(1, Box::new(Value::Int(y)))),
            ),
        ])
    }

    /// Alien, with `changes` applied to its fields.
    fn movie(changes: &[(&str, Value)]) -> Value {
        let mut fields: Vec<(String, Value)> = vec![
            ("id".into(), Value::Long(1)),
            ("synopsis".into(), Value::String("In space no one can hear you scream.".into())),
            ("title".into(), Value::String("Alien".into())),
            ("year".into(), Value::Int(1979)),
            ("rating".into(), Value::Float(8.5)),
            ("released".into(), Value::Boolean(true)),
            ("subtitle".into(), Value::Union(0, Box::new(Value::Null))),
            ("director".into(), person("Ridley Scott", Some(1937))),
            ("producer".into(), Value::Union(0, Box::new(Value::Null))),
            ("genre".into(), Value::Enum(2, "HORROR".into())),
            ("tags".into(), Value::Array(vec![Value::String("space".into()), Value::String("monster".into())])),
            ("scores".into(), Value::Map(vec![("imdb".into(), Value::Double(8.5)), ("rt".into(), Value::Double(9.3))])),
            ("cast".into(), Value::Array(vec![person("Sigourney Weaver", Some(1949)), person("John Hurt", None)])),
            ("poster".into(), Value::Bytes(vec![0, 1, 2])),
            ("checksum".into(), Value::Fixed(vec![1, 2, 3, 4])),
            ("updated".into(), Value::Long(1_700_000_000_000)),
        ];
        for (name, value) in changes {
            let field = fields.iter_mut().find(|(n, _)| n == name).expect("a field of the schema");
            field.1 = value.clone();
        }
        Value::Record(fields)
    }

    fn encode(value: &Value) -> Vec<u8> {
        let schema = Schema::parse(SCHEMA).unwrap();
        let mut out = Vec::new();
        avro::encode(&schema, &schema.root, value, &mut out).unwrap();
        out
    }

    fn input(schema: &str) -> InputPort {
        InputPort { name: "movies".into(), schema: schema.into(), value_names: Vec::new() }
    }

    fn filter(condition: &str) -> Filter {
        match Filter::init(json!({ "condition": condition }), vec![input(SCHEMA)]) {
            Ok((filter, outputs)) => {
                assert_eq!(outputs.len(), 1);
                assert_eq!(outputs[0].name, "out");
                assert_eq!(outputs[0].schema, SCHEMA);
                filter
            }
            Err(errors) => {
                panic!("{condition}: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
            }
        }
    }

    fn init_errors(config: serde_json::Value, inputs: Vec<InputPort>) -> Vec<String> {
        match Filter::init(config, inputs) {
            Ok(_) => panic!("init succeeded"),
            Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// Runs `condition` over one record: `Ok(kept)` or the failure reason.
    fn run(condition: &str, value: &Value) -> Result<bool, String> {
        run_bytes(condition, encode(value))
    }

    fn run_bytes(condition: &str, bytes: Vec<u8>) -> Result<bool, String> {
        let mut f = filter(condition);
        let mut out = Output::default();
        let batch = Batch::new([Record::from_value(bytes.clone())]);
        f.process(0, &batch, &mut out);
        match (&out.emitted(&batch)[..], out.failures()) {
            ([], []) => Ok(false),
            ([emit], []) => {
                assert_eq!((emit.port, emit.origin), (0, 0));
                assert_eq!(emit.record.value.as_deref(), Some(&bytes[..]), "the record goes out untouched");
                Ok(true)
            }
            ([], [failure]) => {
                assert_eq!(failure.index, 0);
                Err(failure.reason.clone())
            }
            other => panic!("{condition}: unexpected output {other:?}"),
        }
    }

    fn keeps(condition: &str, value: &Value) -> bool {
        run(condition, value).unwrap_or_else(|reason| panic!("{condition}: failed: {reason}"))
    }

    #[test]
    fn int_conditions() {
        let alien = movie(&[]);
        assert!(keeps("year == 1979", &alien));
        assert!(keeps("year < 2000 && id == 1", &alien));
        assert!(!keeps("year >= 2000", &alien));
        assert!(keeps("year >= 2000", &movie(&[("year", Value::Int(2019))])));
        assert!(keeps("year % 2 == 1 && year - 1900 == 79", &alien));
        assert!(keeps("id == -7", &movie(&[("id", Value::Long(-7))])));
    }

    #[test]
    fn string_conditions() {
        let alien = movie(&[]);
        assert!(keeps("title == 'Alien'", &alien));
        assert!(keeps(r#"title == "Alien""#, &alien));
        assert!(!keeps("title == 'Aliens'", &alien));
        assert!(keeps("title.startsWith('Al') && size(title) == 5", &alien));
        assert!(keeps("title.contains('lie') && !title.endsWith('s')", &alien));
        assert!(keeps("title.matches('^A.*n$')", &alien));
        assert!(keeps("title < 'Blade Runner'", &alien));
    }

    #[test]
    fn boolean_conditions() {
        assert!(keeps("released", &movie(&[])));
        assert!(!keeps("!released", &movie(&[])));
        assert!(keeps("!released", &movie(&[("released", Value::Boolean(false))])));
        assert!(keeps("released || year > 3000", &movie(&[])));
    }

    #[test]
    fn float_conditions() {
        // A float is widened exactly, as CEL widens a proto float: 0.1f32 is not the double 0.1.
        let alien = movie(&[("rating", Value::Float(0.1))]);
        assert!(!keeps("rating == 0.1", &alien));
        assert!(keeps("rating == 0.10000000149011612", &alien));
        assert!(keeps("rating < 0.5", &alien));
        assert!(keeps("rating > 8.0", &movie(&[])));
        // -2^63 as a float equals the int -2^63 (the spec's numeric comparison; it was `<` before).
        let edge = movie(&[("rating", Value::Float(-9_223_372_036_854_775_808.0))]);
        assert!(!keeps("-9223372036854775808 < rating", &edge));
        assert!(keeps("-9223372036854775808 <= rating && rating == -9223372036854775808", &edge));
    }

    #[test]
    fn timestamp_conditions() {
        // `updated` is timestamp-millis 1_700_000_000_000: 2023-11-14T22:13:20Z.
        let alien = movie(&[]);
        assert!(keeps("updated > timestamp('2023-01-01T00:00:00Z')", &alien));
        assert!(!keeps("updated < timestamp('2023-11-14T22:13:20Z')", &alien));
        assert!(keeps("updated == timestamp('2023-11-14T23:13:20+01:00')", &alien));
        assert!(keeps("updated.getFullYear() == 2023 && updated.getMonth() == 10 && updated.getHours() == 22", &alien));
        assert!(keeps("int(updated) == 1700000000", &alien));
        assert!(keeps("updated.getHours('Europe/Paris') == 23 && updated.getDayOfWeek('Asia/Tokyo') == 3", &alien));
        assert!(keeps("timestamp('2023-11-15T00:00:00Z') - updated < duration('2h')", &alien));
        assert!(keeps("string(updated - timestamp('2023-11-14T22:00:00Z')) == '800s'", &alien));
        // A timestamp is not its long.
        assert_eq!(
            run("updated > 1600000000000", &alien),
            Err("condition failed: found no matching overload for '_>_' applied to '(google.protobuf.Timestamp, int)'"
                .into())
        );
    }

    /// A record of every logical type CEL sees as something else than its base value.
    const LOGICAL: &str = r#"{"type": "record", "name": "L", "fields": [
        {"name": "at_micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "at_nanos", "type": {"type": "long", "logicalType": "timestamp-nanos"}},
        {"name": "local", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "alarm", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "alarm_micros", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "key", "type": {"type": "fixed", "name": "K", "size": 16, "logicalType": "uuid"}},
        {"name": "maybe", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        {"name": "history", "type": {"type": "array", "items": {"type": "int", "logicalType": "date"}}}
    ]}"#;

    fn logical_record(maybe: Option<i64>, day: i32) -> Vec<u8> {
        let schema = Schema::parse(LOGICAL).unwrap();
        let value = Value::Record(vec![
            ("at_micros".into(), Value::Long(1_700_000_000_123_456)),
            ("at_nanos".into(), Value::Long(-1)),
            ("local".into(), Value::Long(0)),
            ("day".into(), Value::Int(day)),
            ("alarm".into(), Value::Int(27_000_000)),
            ("alarm_micros".into(), Value::Long(1_500)),
            ("price".into(), Value::Bytes(vec![0x30, 0x39])),
            ("id".into(), Value::String("123e4567-e89b-12d3-a456-426614174000".into())),
            ("key".into(), Value::Fixed((0..16).collect())),
            (
                "maybe".into(),
                maybe.map_or(Value::Union(0, Box::new(Value::Null)), |m| Value::Union(1, Box::new(Value::Long(m)))),
            ),
            ("history".into(), Value::Array(vec![Value::Int(0), Value::Int(1)])),
        ]);
        let mut out = Vec::new();
        avro::encode(&schema, &schema.root, &value, &mut out).unwrap();
        out
    }

    fn logical_filter(condition: &str) -> Filter {
        let inputs = [InputPort { name: "l".into(), schema: LOGICAL.into(), value_names: Vec::new() }];
        Filter::new(&json!({ "condition": condition }), &inputs).map(|(f, _)| f).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn logical_types_are_cel_types() {
        let record = logical_record(Some(86_400_000), 19_000);
        for condition in [
            "at_micros == timestamp('2023-11-14T22:13:20.123456Z')",
            "at_nanos == timestamp('1969-12-31T23:59:59.999999999Z')",
            "local == timestamp('1970-01-01T00:00:00Z')",
            "day == timestamp('2022-01-08T00:00:00Z') && day.getDayOfWeek() == 6",
            "alarm == duration('7h30m') && alarm_micros == duration('1500us')",
            "price == 123.45 && price > 100 && price < 123.46",
            "id == '123e4567-e89b-12d3-a456-426614174000'",
            "key == '00010203-0405-0607-0809-0a0b0c0d0e0f'",
            "maybe == timestamp('1970-01-02T00:00:00Z')",
            "history[1] - history[0] == duration('24h')",
        ] {
            assert_eq!(logical_filter(condition).keep(&record), Ok(true), "{condition}");
        }
        assert_eq!(logical_filter("maybe == null").keep(&logical_record(None, 0)), Ok(true));
        // A date beyond year 9999 has no CEL timestamp: the record fails, saying why.
        let reason = logical_filter("day > timestamp('2000-01-01T00:00:00Z')").keep(&logical_record(None, 3_000_000));
        assert_eq!(
            reason,
            Err("field \"day\" has no CEL value: 259200000000000000000 ns since the epoch is outside CEL's timestamp \
                 range (years 1 to 9999)"
                .into())
        );
    }

    #[test]
    fn timestamp_comparisons_take_the_fast_path_and_agree_with_cel() {
        let records: Vec<Vec<u8>> =
            [(Some(0), 0), (Some(86_400_000), 19_000), (None, -1), (Some(-1), 2_932_896), (Some(1), 2_932_897)]
                .into_iter()
                .map(|(maybe, day)| logical_record(maybe, day))
                .collect();
        for condition in [
            "maybe > timestamp('1970-01-01T00:00:00Z')",
            "timestamp('1970-01-02T00:00:00Z') == maybe",
            "day >= timestamp('2022-01-08T00:00:00Z') || maybe != timestamp('1970-01-01T00:00:00.001Z')",
            "at_micros < timestamp('2023-11-14T22:13:20.123457Z') && day <= timestamp('9999-12-31T00:00:00Z')",
        ] {
            let (mut fast, mut cel_only) = (logical_filter(condition), logical_filter(condition));
            assert!(fast.is_fast(), "{condition}");
            cel_only.fast = None;
            for record in &records {
                assert_eq!(fast.keep(record), cel_only.keep(record), "{condition}");
            }
        }
        assert!(!logical_filter("day > timestamp('not a time')").is_fast());
        assert!(!logical_filter("alarm > duration('1h')").is_fast());
        assert!(!logical_filter("price > 1.0").is_fast());
    }

    #[test]
    fn quoted_names_select_map_keys() {
        let alien = movie(&[(
            "scores",
            Value::Map(vec![("content-type".into(), Value::Double(1.0)), ("a b/c.d".into(), Value::Double(2.0))]),
        )]);
        assert!(keeps("scores.`content-type` == 1.0 && scores.`a b/c.d` == 2.0", &alien));
        assert!(keeps("has(scores.`content-type`) && !has(scores.`content_type`)", &alien));
        assert!(keeps("director.`name` == 'Ridley Scott' && 'x`y' == 'x' + '`y'", &alien));
        assert_eq!(
            init_errors(json!({ "condition": "`year` > 1" }), vec![input(SCHEMA)]),
            ["condition: not a valid CEL expression: `year`: a quoted name selects a field or key, as in m.`year`; \
              it cannot stand alone"]
        );
    }

    #[test]
    fn two_variable_comprehensions_are_refused_with_the_one_variable_form() {
        for condition in
            ["scores.all(k, v, v > 1.0)", "tags.exists(i, t, t == 'space')", "scores.transformMap(k, v, v)"]
        {
            let errors = init_errors(json!({ "condition": condition }), vec![input(SCHEMA)]);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert!(errors[0].contains("two-variable comprehensions are not supported"), "{}", errors[0]);
        }
    }

    #[test]
    fn nullable_union_conditions() {
        let without = movie(&[]);
        let with = movie(&[("subtitle", Value::Union(1, Box::new(Value::String("The 8th Passenger".into()))))]);
        assert!(!keeps("subtitle != null", &without));
        assert!(keeps("subtitle == null", &without));
        assert!(keeps("subtitle != null", &with));
        assert!(keeps("subtitle != null && subtitle.startsWith('The')", &with));
        assert!(!keeps("subtitle != null && subtitle.startsWith('The')", &without));
        assert!(keeps("subtitle == 'The 8th Passenger'", &with));
        // A nested nullable field: present in the map, so has() is true; compare with null.
        assert!(keeps("has(director.born) && director.born == 1937", &without));
        assert!(keeps("cast[1].born == null", &without));
    }

    #[test]
    fn nested_record_conditions() {
        let alien = movie(&[]);
        assert!(keeps("director.name == 'Ridley Scott'", &alien));
        assert!(!keeps("director.name == 'James Cameron'", &alien));
        assert!(keeps("director['name'].startsWith('Ridley')", &alien));
        assert!(!keeps("producer != null && producer.name == 'Walter Hill'", &alien));
        let produced = movie(&[("producer", Value::Union(1, Box::new(person("Walter Hill", Some(1942)))))]);
        assert!(keeps("producer != null && producer.name == 'Walter Hill'", &produced));
        assert!(keeps("cast.exists(p, p.name == 'Sigourney Weaver' && p.born < 1950)", &alien));
        assert!(keeps("cast.all(p, p.name != director.name)", &alien));
    }

    #[test]
    fn enum_conditions() {
        assert!(keeps("genre == 'HORROR'", &movie(&[])));
        assert!(!keeps("genre == 'DRAMA'", &movie(&[])));
        assert!(keeps("genre in ['HORROR', 'COMEDY']", &movie(&[("genre", Value::Enum(1, "COMEDY".into()))])));
    }

    #[test]
    fn array_conditions() {
        let alien = movie(&[]);
        assert!(keeps("'space' in tags", &alien));
        assert!(!keeps("'western' in tags", &alien));
        assert!(keeps("size(tags) == 2 && tags[0] == 'space'", &alien));
        assert!(keeps("tags.exists(t, t.startsWith('mon'))", &alien));
        assert!(!keeps("tags.all(t, t.size() > 5)", &alien));
        assert!(keeps("tags.filter(t, t != 'space') == ['monster']", &alien));
        assert!(keeps("size(tags) == 0", &movie(&[("tags", Value::Array(vec![]))])));
    }

    #[test]
    fn map_conditions() {
        let alien = movie(&[]);
        assert!(keeps("'imdb' in scores", &alien));
        assert!(!keeps("'metacritic' in scores", &alien));
        assert!(keeps("scores['rt'] > 9.0 && scores.imdb == 8.5", &alien));
        assert!(keeps("has(scores.rt)", &alien));
        assert!(keeps("scores.exists(k, k == 'rt')", &alien));
        // A missing key is an evaluation error: the record fails rather than being dropped.
        let reason = run("scores['metacritic'] > 80.0", &alien).unwrap_err();
        assert_eq!(reason, "condition failed: No such key: metacritic");
    }

    #[test]
    fn bytes_and_fixed_conditions() {
        let alien = movie(&[]);
        assert!(keeps("size(poster) == 3 && poster == b'\\x00\\x01\\x02'", &alien));
        assert!(keeps("checksum == b'\\x01\\x02\\x03\\x04'", &alien));
    }

    #[test]
    fn comprehension_variables_are_not_fields() {
        // `t` and `year` are bound by the comprehension: not looked up in the schema
        assert!(keeps("tags.exists(t, t == 'space')", &movie(&[])));
        assert!(keeps("[1, 2].all(year, year < 3) && year == 1979", &movie(&[])));
    }

    #[test]
    fn extension_functions() {
        let alien = movie(&[]);
        assert!(keeps("title.lowerAscii() == 'alien' && title.upperAscii().charAt(1) == 'L'", &alien));
        assert!(keeps("'%s (%d)'.format([title, year]) == 'Alien (1979)'", &alien));
        assert!(keeps("math.greatest(year, 2000) == 2000 && math.abs(-id) == id", &alien));
        assert!(keeps("tags.sort() == ['monster', 'space'] && tags.join(',') == 'space,monster'", &alien));
        assert!(keeps("lists.range(2) == [0, 1] && strings.quote(title) == '\"Alien\"'", &alien));
        assert!(keeps("optional.of(year).hasValue() && scores[?'metacritic'].orValue(0.0) == 0.0", &alien));
    }

    #[test]
    fn type_names_are_not_fields() {
        assert!(keeps("type(year) == int && type(title) == string", &movie(&[])));
        assert!(keeps("int(rating) == 8 && string(year) == '1979'", &movie(&[])));
    }

    #[test]
    fn only_the_named_fields_are_decoded() {
        let f = filter("year > 1970 && title != ''");
        let named: Vec<&str> =
            f.fields.iter().zip(&f.needed).filter(|(_, &n)| n).map(|(f, _)| f.name.as_str()).collect();
        assert_eq!(named, ["title", "year"]);
        assert_eq!(f.read, 4, "fields after `year` are not read");

        // A field after a big string and a big array is found by skipping them.
        let big = movie(&[
            ("synopsis", Value::String("x".repeat(1 << 20))),
            ("tags", Value::Array((0..10_000).map(|i| Value::String(format!("tag{i}"))).collect())),
        ]);
        assert!(keeps("year == 1979", &big));
        assert!(keeps("poster == b'\\x00\\x01\\x02'", &big));
        assert!(keeps("'tag9999' in tags && checksum == b'\\x01\\x02\\x03\\x04'", &big));

        // Bytes after the last named field are not read.
        let mut truncated = encode(&movie(&[]));
        let year_end = 1 + 1 + 36 + 1 + 5 + 2; // id, synopsis, title, year
        truncated.truncate(year_end);
        assert_eq!(run_bytes("year == 1979", truncated.clone()), Ok(true));
        let reason = run_bytes("rating > 1.0", truncated).unwrap_err();
        assert_eq!(reason, format!("value does not decode as the input schema: field \"rating\": unexpected end of datum at byte {year_end}"));
    }

    #[test]
    fn an_undecodable_value_fails() {
        // title is a string of length 100 with 3 bytes after it
        let mut bytes = encode(&movie(&[]));
        bytes.truncate(1 + 1 + 36);
        bytes.extend_from_slice(&[200, 1, b'a', b'b', b'c']);
        let reason = run_bytes("title == 'x'", bytes.clone()).unwrap_err();
        assert!(reason.starts_with("value does not decode as the input schema: field \"title\": "), "{reason}");
        // A bad nested value: the reason names the path inside the field.
        let mut bytes = encode(&movie(&[]));
        let at = bytes.windows(12).position(|w| w == b"Ridley Scott").unwrap();
        bytes[at] = 0xff;
        let reason = run_bytes("director.name == 'x'", bytes).unwrap_err();
        assert_eq!(reason, format!("value does not decode as the input schema: field \"director.name\": string is not valid UTF-8 at byte {}", at - 1));
        let reason = run_bytes("year == 1", vec![]).unwrap_err();
        assert_eq!(
            reason,
            "value does not decode as the input schema: field \"id\": unexpected end of datum at byte 0"
        );
    }

    #[test]
    fn non_bool_results_and_evaluation_errors_fail_the_record() {
        let alien = movie(&[]);
        assert_eq!(run("year + 1", &alien), Err("condition evaluated to int Int(1980), not a bool".into()));
        assert_eq!(run("subtitle", &alien), Err("condition evaluated to null Null, not a bool".into()));
        assert_eq!(
            run("title > 3", &alien),
            Err("condition failed: found no matching overload for '_>_' applied to '(string, int)'".into())
        );
        assert_eq!(run("director.age > 3", &alien), Err("condition failed: No such key: age".into()));
        assert_eq!(
            run("subtitle.size() > 3", &alien),
            Err("condition failed: found no matching overload for 'size' applied to 'null_type.()'".into())
        );
        assert_eq!(run("tags[5] == 'x'", &alien), Err("condition failed: Index out of bounds: Int(5)".into()));
        assert_eq!(run("year / 0 == 1", &alien), Err("condition failed: Division by zero of Int(1979)".into()));
    }

    type Parts = (Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>, Option<i64>);

    fn parts(r: &Record) -> Parts {
        let headers = r.headers.iter().map(|h| (h.key.clone(), h.value.clone())).collect();
        (r.key.clone(), r.value.clone(), headers, r.timestamp)
    }

    #[test]
    fn kept_records_go_out_untouched_and_tombstones_pass() {
        let mut f = filter("year >= 2000");
        let old = encode(&movie(&[]));
        let new = encode(&movie(&[("year", Value::Int(2019))]));
        let kept = Record {
            key: Some(b"k2".to_vec()),
            value: Some(new.clone()),
            headers: vec![
                Header { key: "h".into(), value: Some(b"v".to_vec()) },
                Header { key: "n".into(), value: None },
            ],
            timestamp: Some(42),
        };
        let tombstone = Record { key: Some(b"k3".to_vec()), value: None, headers: vec![], timestamp: Some(7) };
        let records = vec![Record::from_value(old), kept.clone(), tombstone.clone(), Record::from_value(vec![1])];
        let mut out = Output::default();
        let batch = Batch::new(records);
        f.process(0, &batch, &mut out);
        let emitted: Vec<_> = out.emitted(&batch).iter().map(|e| (e.port, e.origin, parts(&e.record))).collect();
        assert_eq!(emitted, [(0, 1, parts(&kept)), (0, 2, parts(&tombstone))]);
        assert_eq!(out.failures().len(), 1);
        assert_eq!(out.failures()[0].index, 3);

        // The filter is reusable across batches.
        let mut out = Output::default();
        f.process(0, &Batch::new([Record::from_value(new)]), &mut out);
        assert_eq!(out.emitted_count(), 1);
    }

    #[test]
    fn the_fast_path_decides_exactly_as_cel() {
        let fast_conditions = [
            "year >= 2000 && title == 'Alien'",
            "2000 <= year || !(title < 'B')",
            "id != 1 || updated > 1699999999999",
            "released == true && genre == 'HORROR'",
            "genre > 'COMEDY' && subtitle == 'x'",
            "subtitle != \"Director's cut\" || year == 1979",
            "year > 1990.5 || title >= 'Alien'",
            "id == 2 && year == 'x'",
        ];
        let slow_conditions = ["rating > 8.0", "subtitle == null", "size(title) > 3", "year in [1979, 1980]"];
        let records = [
            movie(&[]),
            movie(&[("year", Value::Int(2019)), ("title", Value::String("Blade".into()))]),
            movie(&[
                ("subtitle", Value::Union(1, Box::new(Value::String("x".into())))),
                ("genre", Value::Enum(0, "DRAMA".into())),
            ]),
            movie(&[("id", Value::Long(2)), ("released", Value::Boolean(false)), ("updated", Value::Long(0))]),
            movie(&[("title", Value::String("".into())), ("year", Value::Int(-5))]),
        ];
        for condition in fast_conditions.iter().chain(&slow_conditions) {
            let mut f = filter(condition);
            assert_eq!(f.is_fast(), fast_conditions.contains(condition), "{condition}");
            let mut cel_only = filter(condition);
            cel_only.fast = None;
            for record in &records {
                let bytes = encode(record);
                assert_eq!(f.keep(&bytes), cel_only.keep(&bytes), "{condition} on {record:?}");
            }
            // A value that does not decode gets CEL's reason.
            assert_eq!(f.keep(&[2]), cel_only.keep(&[2]), "{condition}");
        }
    }

    #[test]
    fn the_fast_path_leaves_nan_orderings_and_bad_utf8_to_cel() {
        let schema = r#"{"type": "record", "name": "R", "fields": [
            {"name": "title", "type": "string"}, {"name": "score", "type": "double"}]}"#;
        let datum = |title: &[u8], score: f64| {
            let mut out = Vec::new();
            avro::write_long(&mut out, title.len() as i64);
            out.extend_from_slice(title);
            out.extend_from_slice(&score.to_le_bytes());
            out
        };
        let records = [datum(b"x", 1.5), datum(b"x", f64::NAN), datum(b"\xff", 2.0)];
        for condition in [
            "score > 1.0",
            "!(score >= 1.0)",
            "score == 1.5",
            "score != 1.5",
            "title == 'x' || score > 0.0",
            "title != 'y' && score < 9.0",
        ] {
            let build = || {
                let inputs = [InputPort { name: "r".into(), schema: schema.into(), value_names: Vec::new() }];
                Filter::new(&json!({ "condition": condition }), &inputs)
                    .map(|(f, _)| f)
                    .unwrap_or_else(|e| panic!("{e:?}"))
            };
            let (mut f, mut cel_only) = (build(), build());
            assert!(f.is_fast(), "{condition}");
            cel_only.fast = None;
            for record in &records {
                assert_eq!(f.keep(record), cel_only.keep(record), "{condition} on {record:?}");
            }
        }
    }

    #[test]
    fn numeric_comparisons_at_the_64_bit_edges_follow_cel_in_both_paths() {
        let schema = r#"{"type": "record", "name": "R", "fields": [
            {"name": "n", "type": "long"}, {"name": "d", "type": "double"}]}"#;
        let datum = |n: i64, d: f64| {
            let mut out = Vec::new();
            avro::write_long(&mut out, n);
            out.extend_from_slice(&d.to_le_bytes());
            out
        };
        let build = |condition: &str| {
            let inputs = [InputPort { name: "r".into(), schema: schema.into(), value_names: Vec::new() }];
            Filter::new(&json!({ "condition": condition }), &inputs).map(|(f, _)| f).unwrap_or_else(|e| panic!("{e:?}"))
        };
        let (max, min, two_63) = (i64::MAX, i64::MIN, 9_223_372_036_854_775_808.0);
        // (condition, n, d, CEL's answer): as the specification's conformance data has it, an
        // int is compared with a double as the nearest double.
        for (condition, n, d, want) in [
            ("n < 9223372036854775808.0", max, 0.0, false),
            ("n < 9223372036854777857.0", max, 0.0, true),
            ("n == 9223372036854775808.0", max, 0.0, true),
            ("d > 9223372036854775807", 0, two_63, false),
            ("d == 9223372036854775807", 0, two_63, true),
            ("-9223372036854775808 < d", 0, -two_63, false),
            ("n == -9223372036854775808 && d == -9223372036854775808.0", min, -two_63, true),
            ("n <= -9223372036854775808 && n >= -9223372036854775808", min, 0.0, true),
            ("d < 9223372036854775807", 0, f64::NAN, false),
        ] {
            let (mut f, mut cel_only) = (build(condition), build(condition));
            cel_only.fast = None;
            let record = datum(n, d);
            let cel = cel_only.keep(&record);
            assert_eq!(f.keep(&record), cel, "{condition}: the fast path and CEL differ");
            if d.is_nan() {
                assert!(cel.is_err(), "{condition}: ordering NaN is CEL's error, got {cel:?}");
            } else {
                assert_eq!(cel, Ok(want), "{condition}");
            }
        }
    }

    #[test]
    fn bad_conditions_are_config_errors() {
        let unknown = init_errors(json!({ "condition": "yeer > 2000" }), vec![input(SCHEMA)]);
        assert_eq!(
            unknown,
            ["condition: no field \"yeer\" in input schema; fields are: id, synopsis, title, year, rating, released, \
              subtitle, director, producer, genre, tags, scores, cast, poster, checksum, updated"]
        );
        let two = init_errors(json!({ "condition": "a == 1 && year > 1 && b" }), vec![input(SCHEMA)]);
        assert_eq!(two.len(), 2);
        assert!(two[0].starts_with("condition: no field \"a\" in input schema;"));
        assert!(two[1].starts_with("condition: no field \"b\" in input schema;"));

        assert_eq!(
            init_errors(json!({ "condition": "title.startWith('A') || size(tags) > 0" }), vec![input(SCHEMA)]),
            ["condition: unknown function \"startWith\""]
        );
        assert_eq!(
            init_errors(json!({ "condition": "tags.exists(t)" }), vec![input(SCHEMA)]),
            [
                "condition: no field \"t\" in input schema; fields are: id, synopsis, title, year, rating, released, \
              subtitle, director, producer, genre, tags, scores, cast, poster, checksum, updated",
                "condition: unknown function \"exists\""
            ]
        );
        let has = init_errors(json!({ "condition": "has(subtitle)" }), vec![input(SCHEMA)]);
        assert_eq!(
            has,
            ["condition: not a valid CEL expression: ERROR: <input>:1:5: invalid argument to has() macro\n\
              | has(subtitle)\n\
              | ....^\n\
              (has() tests a field of a record or a key of a map, as in `has(director.born)`; \
              compare a top-level field with null instead: `<field> != null`)"]
        );

        let parse = init_errors(json!({ "condition": "year >" }), vec![input(SCHEMA)]);
        assert_eq!(parse.len(), 1);
        assert!(parse[0].starts_with("condition: not a valid CEL expression: ERROR: <input>:1:"), "{}", parse[0]);

        assert_eq!(
            init_errors(json!({}), vec![input(SCHEMA)]),
            ["condition: missing: give a CEL expression over the fields of the input record"]
        );
        assert_eq!(
            init_errors(json!({ "condition": true }), vec![input(SCHEMA)]),
            ["condition: must be a string (a CEL expression), got a boolean"]
        );
        assert_eq!(
            init_errors(json!({ "condition": "year > 1", "limit": 3 }), vec![input(SCHEMA)]),
            ["limit: unknown option; mesh/filter takes: condition"]
        );
        assert_eq!(init_errors(json!("year > 1"), vec![input(SCHEMA)]), ["`with` must be a mapping, got a string"]);
    }

    #[test]
    fn inputs_must_be_one_record() {
        assert_eq!(
            init_errors(json!({ "condition": "true" }), vec![input(SCHEMA), input(SCHEMA)]),
            ["mesh/filter takes exactly one input, got 2"]
        );
        assert_eq!(init_errors(json!({ "condition": "true" }), vec![]), ["mesh/filter takes exactly one input, got 0"]);
        assert_eq!(
            init_errors(json!({ "condition": "true" }), vec![input(r#""string""#)]),
            ["input \"movies\": mesh/filter needs a record schema, got string"]
        );
        let bad = init_errors(json!({ "condition": "true" }), vec![input("{")]);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].starts_with("input \"movies\": invalid Avro schema"), "{}", bad[0]);
        // Every problem at once.
        assert_eq!(init_errors(json!({ "x": 1 }), vec![]).len(), 3);
    }

    #[test]
    fn a_constant_condition_reads_nothing() {
        let f = filter("true");
        assert_eq!(f.read, 0);
        assert_eq!(run_bytes("true", vec![]), Ok(true));
        assert_eq!(run_bytes("1 == 2", vec![]), Ok(false));
    }
}
