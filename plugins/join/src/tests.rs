use std::collections::BTreeMap;

use super::*;
use meshhost_sdk::avro::Value;
use meshhost_sdk::state::MemoryState;
use meshhost_sdk::Header;
use serde_json::json;

const MOVIES: &str = r#"{"type": "record", "name": "Movie", "namespace": "test", "fields": [
    {"name": "id", "type": "long"},
    {"name": "title", "type": "string"},
    {"name": "director", "type": {"type": "record", "name": "Person", "fields": [
        {"name": "name", "type": "string"}]}},
    {"name": "rating", "type": ["null", "double"], "default": null}
]}"#;

/// In the null namespace, to check that it stays there inside the namespaced output record.
const TALENTS: &str = r#"{"type": "record", "name": "Talent", "fields": [
    {"name": "name", "type": "string"},
    {"name": "movie_id", "type": "long"},
    {"name": "role", "type": {"type": "enum", "name": "Role", "symbols": ["ACTOR", "DIRECTOR"]}}
]}"#;

fn port(name: &str, schema: &str) -> InputPort {
    InputPort { name: name.into(), schema: schema.into(), value_names: Vec::new() }
}

fn ports() -> Vec<InputPort> {
    vec![port("movies", MOVIES), port("talents", TALENTS)]
}

fn join_with(config: serde_json::Value, inputs: Vec<InputPort>) -> (Join, Schema) {
    match Join::init(config.clone(), inputs) {
        Ok((join, outputs)) => {
            assert_eq!(outputs.len(), 1);
            assert_eq!(outputs[0].name, "out");
            let schema = Schema::parse(&outputs[0].schema).unwrap_or_else(|e| panic!("{}: {e}", outputs[0].schema));
            (join, schema)
        }
        Err(errors) => panic!("{config}: {}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")),
    }
}

fn join(kind: &str) -> (Join, Schema) {
    join_with(json!({ "left_key": "id", "right_key": "movie_id", "kind": kind }), ports())
}

fn init_errors(config: serde_json::Value, inputs: Vec<InputPort>) -> Vec<String> {
    match Join::init(config, inputs) {
        Ok(_) => panic!("init succeeded"),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn movie_value(id: i64, title: &str) -> Value {
    Value::Record(vec![
        ("id".into(), Value::Long(id)),
        ("title".into(), Value::String(title.into())),
        ("director".into(), Value::Record(vec![("name".into(), Value::String(format!("director of {title}")))])),
        ("rating".into(), Value::Union(1, Box::new(Value::Double(id as f64 / 2.0)))),
    ])
}

fn talent_value(movie_id: i64, name: &str) -> Value {
    Value::Record(vec![
        ("name".into(), Value::String(name.into())),
        ("movie_id".into(), Value::Long(movie_id)),
        ("role".into(), Value::Enum(1, "DIRECTOR".into())),
    ])
}

fn encode(schema: &str, value: &Value) -> Vec<u8> {
    avro::encode_datum(&Schema::parse(schema).unwrap(), value).unwrap()
}

fn movie(id: i64, title: &str) -> Vec<u8> {
    encode(MOVIES, &movie_value(id, title))
}

fn talent(movie_id: i64, name: &str) -> Vec<u8> {
    encode(TALENTS, &talent_value(movie_id, name))
}

fn keyed(key: &str, value: Option<Vec<u8>>) -> Record {
    Record { key: Some(key.as_bytes().to_vec()), value, headers: Vec::new(), timestamp: None }
}

fn joined_value(movie: Value, talent: Option<Value>) -> Value {
    Value::Record(vec![
        ("movies".into(), movie),
        (
            "talents".into(),
            match talent {
                Some(t) => Value::Union(1, Box::new(t)),
                None => Value::Union(0, Box::new(Value::Null)),
            },
        ),
    ])
}

/// Decodes a value of the output schema with `avro::decode`, which must use all its bytes.
fn decode(schema: &Schema, bytes: &[u8]) -> Value {
    let mut r = Reader::new(bytes);
    let value = avro::decode(schema, &schema.root, &mut r).unwrap_or_else(|e| panic!("{e}: {bytes:?}"));
    assert!(r.is_at_end(), "bytes left over in {bytes:?}");
    value
}

/// What one batch did: (origin, key, decoded value or None for a tombstone), and failures.
type Emitted = Vec<(u32, String, Option<Value>)>;

fn run(
    join: &mut Join,
    schema: &Schema,
    state: &mut MemoryState,
    input: u32,
    records: Vec<Record>,
) -> (Emitted, Vec<(u32, String)>) {
    let mut out = Output::default();
    let batch = Batch::new(records);
    join.process_with(state, input, &batch, &mut out);
    let emitted = out
        .emitted(&batch)
        .iter()
        .map(|e| {
            assert_eq!(e.port, 0);
            let key = String::from_utf8(e.record.key.clone().expect("a key")).unwrap();
            (e.origin, key, e.record.value.as_deref().map(|v| decode(schema, v)))
        })
        .collect();
    let failures = out.failures().iter().map(|f| (f.index, f.reason.clone())).collect();
    (emitted, failures)
}

/// Runs a batch that must not fail anything; returns what it emitted.
fn ok(join: &mut Join, schema: &Schema, state: &mut MemoryState, input: u32, records: Vec<Record>) -> Emitted {
    let (emitted, failures) = run(join, schema, state, input, records);
    assert_eq!(failures, []);
    emitted
}

fn joined(origin: u32, key: &str, movie: Value, talent: Option<Value>) -> (u32, String, Option<Value>) {
    (origin, key.into(), Some(joined_value(movie, talent)))
}

fn tombstone(origin: u32, key: &str) -> (u32, String, Option<Value>) {
    (origin, key.into(), None)
}

#[test]
fn output_schema_holds_left_and_right_or_null() {
    let (_, schema) = join("inner");
    let record = schema.root_record().unwrap();
    assert_eq!(record.name, "test.Movie_join");
    let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["movies", "talents"]);
    assert_eq!(schema.resolve(&record.fields[0].ty).describe(), "record \"test.Movie\"");
    let AvroType::Union(branches) = &record.fields[1].ty else { panic!("{:?}", record.fields[1].ty) };
    assert_eq!(branches[0], AvroType::Null);
    // Talent and Role stay in the null namespace, Person in test.
    assert_eq!(schema.resolve(&branches[1]).describe(), "record \"Talent\"");
    assert!(matches!(schema.named_type("Role"), Some(AvroType::Enum(_))));
    assert!(matches!(schema.named_type("test.Person"), Some(AvroType::Record(_))));
    assert!(schema.named_type("test.Talent").is_none());
    assert_eq!(record.fields[1].default, Some(serde_json::Value::Null));
    // Both kinds have one shape.
    assert_eq!(join("left").1, schema);
    assert_eq!(join_with(json!({ "left_key": "id", "right_key": "movie_id" }), ports()).1, schema);
}

#[test]
fn self_join_defines_the_shared_types_once() {
    // Both inputs carry the one schema (here written two ways: the canonical forms are equal,
    // the docs differ), as when a topic is joined with itself.
    let respelled = MOVIES
        .replace(r#""name": "Movie", "namespace": "test""#, r#""name": "test.Movie", "doc": "again""#)
        .replace(r#""type": "long""#, r#""type": {"type": "long"}"#);
    assert_ne!(respelled, MOVIES);
    let inputs = vec![port("movies", MOVIES), port("sequels", &respelled)];
    let (mut join, schema) = join_with(json!({ "left_key": "id", "right_key": "id" }), inputs);
    let record = schema.root_record().unwrap();
    assert_eq!(record.name, "test.Movie_join");
    // Defined in the left field, referenced in the right one.
    assert!(matches!(&record.fields[0].ty, AvroType::Record(r) if r.name == "test.Movie"));
    assert_eq!(record.fields[1].ty, AvroType::Union(vec![AvroType::Null, AvroType::Ref("test.Movie".into())]));
    let text = schema.to_json();
    assert_eq!(text.matches(r#""name":"test.Person""#).count(), 1, "{text}");
    assert_eq!(text.matches(r#""name":"test.Movie""#).count(), 1, "{text}");
    assert!(!text.contains("again"), "{text}");

    // A joined record round-trips through the output schema.
    let mut state = MemoryState::default();
    let first = ok(&mut join, &schema, &mut state, 0, vec![keyed("7", Some(movie(7, "Heat")))]);
    assert_eq!(first, []);
    let emitted = ok(&mut join, &schema, &mut state, 1, vec![keyed("7", Some(movie(7, "Heat 2")))]);
    let expected = Value::Record(vec![
        ("movies".into(), movie_value(7, "Heat")),
        ("sequels".into(), Value::Union(1, Box::new(movie_value(7, "Heat 2")))),
    ]);
    assert_eq!(emitted, [(0, "7".to_string(), Some(expected.clone()))]);
    let bytes = avro::encode_datum(&schema, &expected).unwrap();
    assert_eq!(avro::decode_datum(&schema, &bytes).unwrap(), expected);
    let json = avro::datum_to_json(&schema, &bytes).unwrap();
    assert_eq!(avro::json_to_datum(&schema, &json).unwrap(), bytes);
}

#[test]
fn field_names_come_from_the_input_ids() {
    let (_, schema) = join_with(
        json!({ "left_key": "id", "right_key": "movie_id" }),
        vec![port("my-movies.out", MOVIES), port("2nd", TALENTS)],
    );
    let names: Vec<String> = schema.root_record().unwrap().fields.iter().map(|f| f.name.clone()).collect();
    assert_eq!(names, ["my_movies_out", "_2nd"]);
    // Null-namespace left record: the output record is in the null namespace too.
    let left = TALENTS;
    let right = MOVIES.replace("\"id\"", "\"movie_id\"");
    let (_, schema) = join_with(
        json!({ "left_key": "movie_id", "right_key": "movie_id" }),
        vec![port("talents", left), port("movies", &right)],
    );
    assert_eq!(schema.root_record().unwrap().name, "Talent_join");
    assert!(schema.named_type("test.Movie").is_some());
}

#[test]
fn inner_join() {
    let (mut join, schema) = join("inner");
    let mut state = MemoryState::default();
    // A left row alone joins nothing.
    assert_eq!(ok(&mut join, &schema, &mut state, 0, vec![keyed("7", Some(movie(7, "Alien")))]), []);
    // The right row arrives: joined, keyed by the join key, headers and timestamp of the trigger.
    let mut right = keyed("7", Some(talent(7, "Ridley")));
    right.headers = vec![Header { key: "h".into(), value: Some(b"v".to_vec()) }];
    right.timestamp = Some(42);
    let mut out = Output::default();
    let batch = Batch::new([right]);
    join.process_with(&mut state, 1, &batch, &mut out);
    let emitted = &out.emitted(&batch)[0].record;
    assert_eq!(emitted.key.as_deref(), Some(&b"7"[..]));
    assert_eq!(emitted.timestamp, Some(42));
    assert_eq!(emitted.headers.len(), 1);
    assert_eq!((emitted.headers[0].key.as_str(), emitted.headers[0].value.as_deref()), ("h", Some(&b"v"[..])));
    assert_eq!(
        decode(&schema, emitted.value.as_deref().unwrap()),
        joined_value(movie_value(7, "Alien"), Some(talent_value(7, "Ridley")))
    );
    // The bytes are composed: left datum, union branch 1, right datum.
    let mut expected = movie(7, "Alien");
    expected.push(0x02);
    expected.extend(talent(7, "Ridley"));
    assert_eq!(emitted.value.as_deref(), Some(&expected[..]));

    // An update of either side re-emits.
    assert_eq!(
        ok(&mut join, &schema, &mut state, 0, vec![keyed("7", Some(movie(7, "Aliens")))]),
        [joined(0, "7", movie_value(7, "Aliens"), Some(talent_value(7, "Ridley")))]
    );
    assert_eq!(
        ok(&mut join, &schema, &mut state, 1, vec![keyed("7", Some(talent(7, "James")))]),
        [joined(0, "7", movie_value(7, "Aliens"), Some(talent_value(7, "James")))]
    );
    // Right before left works too.
    assert_eq!(ok(&mut join, &schema, &mut state, 1, vec![keyed("8", Some(talent(8, "Sigourney")))]), []);
    assert_eq!(
        ok(&mut join, &schema, &mut state, 0, vec![keyed("8", Some(movie(8, "Heat")))]),
        [joined(0, "8", movie_value(8, "Heat"), Some(talent_value(8, "Sigourney")))]
    );
    // State layout: L/R + join key → raw datum.
    let entries: Vec<(Vec<u8>, Vec<u8>)> = state.entries.clone().into_iter().collect();
    assert_eq!(
        entries,
        [
            (b"L7".to_vec(), movie(7, "Aliens")),
            (b"L8".to_vec(), movie(8, "Heat")),
            (b"R7".to_vec(), talent(7, "James")),
            (b"R8".to_vec(), talent(8, "Sigourney")),
        ]
    );
}

#[test]
fn inner_join_tombstones() {
    let (mut join, schema) = join("inner");
    let mut state = MemoryState::default();
    ok(&mut join, &schema, &mut state, 0, vec![keyed("1", Some(movie(1, "A"))), keyed("2", Some(movie(2, "B")))]);
    ok(&mut join, &schema, &mut state, 1, vec![keyed("1", Some(talent(1, "a"))), keyed("2", Some(talent(2, "b")))]);
    // A left delete retracts the joined record; deleting again says so again (deletes are
    // idempotent, so a replayed one still ends in the tombstone).
    assert_eq!(
        ok(&mut join, &schema, &mut state, 0, vec![keyed("1", None), keyed("1", None)]),
        [tombstone(0, "1"), tombstone(1, "1")]
    );
    // So does a right delete.
    assert_eq!(ok(&mut join, &schema, &mut state, 1, vec![keyed("2", None)]), [tombstone(0, "2")]);
    assert_eq!(ok(&mut join, &schema, &mut state, 1, vec![keyed("2", None)]), [tombstone(0, "2")]);
    // Only the rows of the other side remain.
    let keys: Vec<&[u8]> = state.entries.keys().map(Vec::as_slice).collect();
    assert_eq!(keys, [&b"L2"[..], &b"R1"[..]]);
    // The remaining rows join again when their partners come back.
    assert_eq!(
        ok(&mut join, &schema, &mut state, 0, vec![keyed("1", Some(movie(1, "A2")))]),
        [joined(0, "1", movie_value(1, "A2"), Some(talent_value(1, "a")))]
    );
}

#[test]
fn left_join() {
    let (mut join, schema) = join("left");
    let mut state = MemoryState::default();
    // A left row joins at once, with a null right side.
    assert_eq!(
        ok(&mut join, &schema, &mut state, 0, vec![keyed("7", Some(movie(7, "Alien")))]),
        [joined(0, "7", movie_value(7, "Alien"), None)]
    );
    let emitted = {
        let mut out = Output::default();
        let batch = Batch::new([keyed("7", Some(movie(7, "Alien")))]);
        join.process_with(&mut state, 0, &batch, &mut out);
        out.emitted(&batch)[0].record.value.clone().unwrap()
    };
    let mut expected = movie(7, "Alien");
    expected.push(0x00);
    assert_eq!(emitted, expected);
    // The right row fills it in, updates re-emit.
    assert_eq!(
        ok(&mut join, &schema, &mut state, 1, vec![keyed("7", Some(talent(7, "Ridley")))]),
        [joined(0, "7", movie_value(7, "Alien"), Some(talent_value(7, "Ridley")))]
    );
    assert_eq!(
        ok(&mut join, &schema, &mut state, 1, vec![keyed("7", Some(talent(7, "James")))]),
        [joined(0, "7", movie_value(7, "Alien"), Some(talent_value(7, "James")))]
    );
    // A right delete leaves the left row with null.
    assert_eq!(
        ok(&mut join, &schema, &mut state, 1, vec![keyed("7", None)]),
        [joined(0, "7", movie_value(7, "Alien"), None)]
    );
    // Right before left: nothing, then the joined record.
    assert_eq!(ok(&mut join, &schema, &mut state, 1, vec![keyed("8", Some(talent(8, "Sigourney")))]), []);
    assert_eq!(
        ok(&mut join, &schema, &mut state, 0, vec![keyed("8", Some(movie(8, "Heat")))]),
        [joined(0, "8", movie_value(8, "Heat"), Some(talent_value(8, "Sigourney")))]
    );
    // A left delete retracts, whether the right row exists (8) or not (7).
    assert_eq!(
        ok(&mut join, &schema, &mut state, 0, vec![keyed("8", None), keyed("7", None)]),
        [tombstone(0, "8"), tombstone(1, "7")]
    );
    // A right row without a left one, then its delete: the key's tombstone (there is no join).
    assert_eq!(ok(&mut join, &schema, &mut state, 1, vec![keyed("8", None)]), [tombstone(0, "8")]);
    assert!(state.entries.is_empty(), "{:?}", state.entries);
}

#[test]
fn rows_never_matched_then_deleted_emit_only_the_tombstone() {
    let (mut inner, schema) = join("inner");
    let mut state = MemoryState::default();
    // Inserts that match nothing emit nothing; their deletes emit the key's tombstone (deletes
    // are idempotent: a replayed one must still end in it).
    assert_eq!(
        ok(&mut inner, &schema, &mut state, 0, vec![keyed("1", Some(movie(1, "A"))), keyed("1", None)]),
        [tombstone(1, "1")]
    );
    assert_eq!(
        ok(&mut inner, &schema, &mut state, 1, vec![keyed("2", Some(talent(2, "b"))), keyed("2", None)]),
        [tombstone(1, "2")]
    );
    // Deleting what never existed: the tombstone, and no state write.
    assert_eq!(ok(&mut inner, &schema, &mut state, 0, vec![keyed("3", None)]), [tombstone(0, "3")]);
    assert!(state.entries.is_empty());
    let (mut left, schema) = join("left");
    assert_eq!(
        ok(&mut left, &schema, &mut state, 1, vec![keyed("2", Some(talent(2, "b"))), keyed("2", None)]),
        [tombstone(1, "2")]
    );
    assert!(state.entries.is_empty());
}

#[test]
fn records_in_a_batch_see_the_previous_ones() {
    let (mut join, schema) = join("inner");
    let mut state = MemoryState::default();
    ok(&mut join, &schema, &mut state, 1, vec![keyed("5", Some(talent(5, "x")))]);
    assert_eq!(
        ok(
            &mut join,
            &schema,
            &mut state,
            0,
            vec![
                keyed("5", Some(movie(5, "one"))),
                keyed("6", Some(movie(6, "six"))),
                keyed("5", Some(movie(5, "two"))),
                keyed("5", None),
                keyed("5", Some(movie(5, "three"))),
            ]
        ),
        [
            joined(0, "5", movie_value(5, "one"), Some(talent_value(5, "x"))),
            joined(2, "5", movie_value(5, "two"), Some(talent_value(5, "x"))),
            tombstone(3, "5"),
            joined(4, "5", movie_value(5, "three"), Some(talent_value(5, "x"))),
        ]
    );
}

#[test]
fn records_without_a_key_are_keyed_by_their_join_key_field() {
    let (mut join, schema) = join("left");
    let mut state = MemoryState::default();
    assert_eq!(
        ok(&mut join, &schema, &mut state, 0, vec![Record::from_value(movie(-12, "Minus"))]),
        [joined(0, "-12", movie_value(-12, "Minus"), None)]
    );
    assert_eq!(
        ok(&mut join, &schema, &mut state, 1, vec![Record::from_value(talent(-12, "m"))]),
        [joined(0, "-12", movie_value(-12, "Minus"), Some(talent_value(-12, "m")))]
    );
    assert!(state.entries.contains_key(&b"L-12"[..]));
    assert!(state.entries.contains_key(&b"R-12"[..]));
}

#[test]
fn failures_leave_the_state_alone() {
    let (mut join, schema) = join("inner");
    let mut state = MemoryState::default();
    ok(&mut join, &schema, &mut state, 1, vec![keyed("7", Some(talent(7, "r")))]);
    let before = state.clone();
    let mut truncated = movie(7, "Alien");
    truncated.truncate(3);
    let (emitted, failures) = run(
        &mut join,
        &schema,
        &mut state,
        0,
        vec![
            keyed("8", Some(movie(7, "Alien"))),
            Record::from_value(vec![]),
            keyed("7", Some(truncated)),
            Record { key: None, value: None, headers: vec![], timestamp: None },
            Record { key: Some(vec![0xff]), value: Some(movie(7, "Alien")), headers: vec![], timestamp: None },
        ],
    );
    assert_eq!(emitted, []);
    assert_eq!(
        failures,
        [
            (0, "record key \"8\" does not match its join key field id = \"7\"; join inputs must be keyed by the join key".to_string()),
            (1, "value does not decode as the schema of input \"movies\": field \"id\": unexpected end of datum at byte 0".to_string()),
            (2, "value does not decode as the schema of input \"movies\": field \"title\": length 5 is larger than the 1 bytes remaining at byte 1".to_string()),
            (3, "a tombstone without a key: mesh/join cannot tell which row it deletes".to_string()),
            (4, "record key \"\\xff\" does not match its join key field id = \"7\"; join inputs must be keyed by the join key".to_string()),
        ]
    );
    assert_eq!(state, before);
    // A bad record does not stop the ones after it.
    let (emitted, failures) =
        run(&mut join, &schema, &mut state, 0, vec![keyed("1", Some(movie(7, "A"))), keyed("7", Some(movie(7, "A")))]);
    assert_eq!(failures.len(), 1);
    assert_eq!(emitted, [joined(1, "7", movie_value(7, "A"), Some(talent_value(7, "r")))]);
    // No third input.
    let (emitted, failures) = run(&mut join, &schema, &mut state, 2, vec![keyed("7", None)]);
    assert_eq!(emitted, []);
    assert_eq!(failures, [(0, "mesh/join has two inputs (0 = left, 1 = right), not input 2".to_string())]);
}

#[test]
fn key_types_render_as_bytes() {
    let schema_with = |name: &str, ty: &str| {
        format!(
            r#"{{"type": "record", "name": "{name}", "fields": [{{"name": "k", "type": {ty}}}, {{"name": "v", "type": "int"}}]}}"#
        )
    };
    for (ty, key_value, key) in [
        (r#""string""#, Value::String("héllo".into()), "héllo".as_bytes().to_vec()),
        (r#"{"type": "string", "logicalType": "uuid"}"#, Value::String("u-1".into()), b"u-1".to_vec()),
        (r#""int""#, Value::Int(-2147483648), b"-2147483648".to_vec()),
        (r#""long""#, Value::Long(9007199254740993), b"9007199254740993".to_vec()),
        (r#""bytes""#, Value::Bytes(vec![0, 0xff, b'k']), vec![0, 0xff, b'k']),
    ] {
        let a = schema_with("A", ty);
        let b = schema_with("B", ty);
        let (mut join, output) =
            join_with(json!({ "left_key": "k", "right_key": "k", "kind": "left" }), vec![port("a", &a), port("b", &b)]);
        let value = Value::Record(vec![("k".into(), key_value.clone()), ("v".into(), Value::Int(1))]);
        let mut state = MemoryState::default();
        let mut out = Output::default();
        let datum = encode(&a, &value);
        let batch = Batch::new([Record::from_value(datum.clone())]);
        join.process_with(&mut state, 0, &batch, &mut out);
        assert_eq!(out.failures().len(), 0, "{ty}: {:?}", out.failures());
        assert_eq!(out.emitted(&batch)[0].record.key.as_deref(), Some(&key[..]), "{ty}");
        let mut state_key = vec![b'L'];
        state_key.extend(&key);
        assert_eq!(state.entries.get(&state_key), Some(&datum), "{ty}");
        // With the matching Kafka key, the right side joins.
        let right =
            Record { key: Some(key.clone()), value: Some(encode(&b, &value)), headers: vec![], timestamp: None };
        let mut out = Output::default();
        let batch = Batch::new([right]);
        join.process_with(&mut state, 1, &batch, &mut out);
        assert_eq!(out.failures().len(), 0, "{ty}: {:?}", out.failures());
        assert_eq!(
            decode(&output, out.emitted(&batch)[0].record.value.as_deref().unwrap()),
            Value::Record(vec![("a".into(), value.clone()), ("b".into(), Value::Union(1, Box::new(value.clone()))),])
        );
    }
}

#[test]
fn key_errors() {
    let config = |left: &str, right: &str| json!({ "left_key": left, "right_key": right });
    assert_eq!(
        init_errors(config("idd", "movie_id"), ports()),
        ["left_key: no field \"idd\" in input \"movies\"; fields are: id, title, director, rating"]
    );
    assert_eq!(
        init_errors(config("id", "movie"), ports()),
        ["right_key: no field \"movie\" in input \"talents\"; fields are: name, movie_id, role"]
    );
    assert_eq!(
        init_errors(config("id", "name"), ports()),
        ["right_key: join key types differ: movies.id is long, talents.name is string"]
    );
    assert_eq!(
        init_errors(config("rating", "role"), ports()),
        [
            "left_key: movies.rating is union; a join key must be a string, int, long or bytes field",
            "right_key: talents.role is enum \"Role\"; a join key must be a string, int, long or bytes field",
        ]
    );
    assert_eq!(
        init_errors(config("director", "movie_id"), ports()),
        ["left_key: movies.director is record \"test.Person\"; a join key must be a string, int, long or bytes field"]
    );
    let int_key = TALENTS.replace(r#""name": "movie_id", "type": "long""#, r#""name": "movie_id", "type": "int""#);
    assert_eq!(
        init_errors(config("id", "movie_id"), vec![port("movies", MOVIES), port("talents", &int_key)]),
        ["right_key: join key types differ: movies.id is long, talents.movie_id is int"]
    );
}

#[test]
fn option_errors() {
    assert_eq!(
        init_errors(json!({}), ports()),
        [
            "left_key: missing: the field of the left input that holds the join key",
            "right_key: missing: the field of the right input that holds the join key",
        ]
    );
    assert_eq!(
        init_errors(json!(null), ports()),
        [
            "left_key: missing: the field of the left input that holds the join key",
            "right_key: missing: the field of the right input that holds the join key",
        ]
    );
    assert_eq!(
        init_errors(json!({ "left_key": "id", "right_key": "movie_id", "on": "id", "kind": "inner" }), ports()),
        ["on: unknown option; mesh/join takes: left_key, right_key, kind"]
    );
    assert_eq!(
        init_errors(json!({ "left_key": "id", "right_key": "movie_id", "kind": "outer" }), ports()),
        ["kind: must be inner or left, got \"outer\""]
    );
    assert_eq!(
        init_errors(json!({ "left_key": "id", "right_key": "movie_id", "kind": true }), ports()),
        ["kind: must be inner or left, got a boolean"]
    );
    assert_eq!(
        init_errors(json!({ "left_key": ["id"], "right_key": 3 }), ports()),
        [
            "left_key: must be a field name (a string), got a list",
            "right_key: must be a field name (a string), got a number",
        ]
    );
    assert_eq!(init_errors(json!(["id"]), ports()), ["`with` must be a mapping, got a list"]);
}

#[test]
fn input_errors() {
    let config = json!({ "left_key": "id", "right_key": "movie_id" });
    assert_eq!(
        init_errors(config.clone(), vec![port("movies", MOVIES)]),
        ["mesh/join takes exactly two inputs (left, right), got 1"]
    );
    assert_eq!(
        init_errors(config.clone(), [ports(), ports()].concat()),
        ["mesh/join takes exactly two inputs (left, right), got 4"]
    );
    // Options are still checked without usable inputs.
    assert_eq!(
        init_errors(json!({ "left_key": "id" }), vec![]),
        [
            "right_key: missing: the field of the right input that holds the join key",
            "mesh/join takes exactly two inputs (left, right), got 0",
        ]
    );
    assert_eq!(
        init_errors(
            config.clone(),
            vec![port("movies", MOVIES), port("talents", r#"{"type": "array", "items": "int"}"#)]
        ),
        ["input \"talents\": mesh/join needs a record schema, got array"]
    );
    assert_eq!(
        init_errors(config.clone(), vec![port("movies", MOVIES), port("talents.out", &TALENTS.replace(r#""name": "Talent""#, r#""name": "Movie", "namespace": "test""#))]),
        ["inputs \"movies\" and \"talents.out\" define type \"test.Movie\" differently; the joined schema holds both, so a type name they share must mean the same type"]
    );
    // A nested type defined differently is named, and so is every type that holds it.
    let other_person = MOVIES.replace(r#""name": "Movie""#, r#""name": "Film""#).replace(
        r#"{"name": "name", "type": "string"}"#,
        r#"{"name": "name", "type": "string"}, {"name": "born", "type": "int"}"#,
    );
    assert_eq!(
        init_errors(json!({ "left_key": "id", "right_key": "id" }), vec![port("movies", MOVIES), port("films", &other_person)]),
        ["inputs \"movies\" and \"films\" define type \"test.Person\" differently; the joined schema holds both, so a type name they share must mean the same type"]
    );
    // Caught when the output schema is built rather than by the shared-name check: the output
    // record's own name is taken.
    let taken = TALENTS.replace(r#""name": "Talent""#, r#""name": "Movie_join", "namespace": "test""#);
    assert_eq!(
        init_errors(config.clone(), vec![port("movies", MOVIES), port("talents", &taken)]),
        ["cannot build the output schema: invalid Avro schema: type \"test.Movie_join\" is defined twice, differently"]
    );
    let same_id = MOVIES.replace(r#""name": "Movie""#, r#""name": "Film""#).replace("Person", "Human");
    assert_eq!(
        init_errors(json!({ "left_key": "id", "right_key": "id" }), vec![port("a.b", MOVIES), port("a-b", &same_id)]),
        ["inputs \"a.b\" and \"a-b\" both become output field \"a_b\"; give one of them another id"]
    );
}

/// A small deterministic generator (xorshift64*), so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_upserts_and_deletes_end_in_the_join_of_the_final_tables() {
    for kind in [Kind::Inner, Kind::Left] {
        for seed in 1..=20u64 {
            let (mut join, schema) = join(if kind == Kind::Inner { "inner" } else { "left" });
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut state = MemoryState::default();
            // The model: the final tables, kept independently of the join.
            let mut tables: [BTreeMap<i64, Value>; 2] = [BTreeMap::new(), BTreeMap::new()];
            // The last value emitted per key (None = a tombstone).
            let mut last: BTreeMap<String, Option<Value>> = BTreeMap::new();
            let mut version = 0;
            for _ in 0..150 {
                let side = rng.below(2) as usize;
                let batch_len = 1 + rng.below(8);
                let mut records = Vec::new();
                for _ in 0..batch_len {
                    let id = rng.below(50) as i64 - 10; // some negative keys too
                    let key = id.to_string();
                    if rng.below(3) == 0 {
                        tables[side].remove(&id);
                        records.push(keyed(&key, None));
                    } else {
                        version += 1;
                        let value = if side == 0 {
                            movie_value(id, &format!("m{version}"))
                        } else {
                            talent_value(id, &format!("t{version}"))
                        };
                        let datum = encode(if side == 0 { MOVIES } else { TALENTS }, &value);
                        tables[side].insert(id, value);
                        // Half the upserts carry no Kafka key.
                        records.push(if rng.below(2) == 0 {
                            keyed(&key, Some(datum))
                        } else {
                            Record::from_value(datum)
                        });
                    }
                }
                for (_, key, value) in ok(&mut join, &schema, &mut state, side as u32, records) {
                    last.insert(key, value);
                }
            }
            let mut checked = 0;
            for id in -10..40i64 {
                let expected = match (tables[0].get(&id), tables[1].get(&id), kind) {
                    (Some(l), Some(r), _) => Some(joined_value(l.clone(), Some(r.clone()))),
                    (Some(l), None, Kind::Left) => Some(joined_value(l.clone(), None)),
                    _ => None,
                };
                let got = last.get(&id.to_string()).cloned().flatten();
                assert_eq!(got, expected, "{kind:?}, seed {seed}, key {id}");
                checked += usize::from(expected.is_some());
            }
            assert!(checked > 0, "{kind:?}, seed {seed}: no key ends joined");
            // The state is exactly the final tables.
            let expected_state: BTreeMap<Vec<u8>, Vec<u8>> = tables
                .iter()
                .zip([(b'L', MOVIES), (b'R', TALENTS)])
                .flat_map(|(table, (prefix, schema))| {
                    table.iter().map(move |(id, value)| {
                        let mut k = vec![prefix];
                        k.extend(id.to_string().bytes());
                        (k, encode(schema, value))
                    })
                })
                .collect();
            assert_eq!(state.entries, expected_state, "{kind:?}, seed {seed}");
        }
    }
}
