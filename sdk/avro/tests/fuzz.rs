//! Bad input at the edges: arbitrary bytes read as datums of a schema, valid datums with bytes
//! changed or cut, and arbitrary or mangled schema text. Nothing may panic (or allocate what a
//! length prefix claims without the bytes to back it); every failure is an error with a message.
//! A bounded number of cases per property runs in CI (`PROPTEST_CASES` raises it).

use meshhost_avro::{datum_to_json, decode_datum, json_to_datum, validate, Resolver, Schema};
use proptest::prelude::*;
use proptest::sample::Index;

/// A schema with every kind of type, nested.
const SCHEMA: &str = r#"{"type": "record", "name": "Movie", "namespace": "fuzz", "fields": [
    {"name": "id", "type": "long"},
    {"name": "year", "type": "int"},
    {"name": "title", "type": "string"},
    {"name": "poster", "type": "bytes"},
    {"name": "released", "type": "boolean"},
    {"name": "rating", "type": "float"},
    {"name": "score", "type": "double"},
    {"name": "subtitle", "type": ["null", "string"], "default": null},
    {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "COMEDY"], "default": "DRAMA"}},
    {"name": "checksum", "type": {"type": "fixed", "name": "Md5", "size": 4}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
    {"name": "cast", "type": {"type": "array", "items": {"type": "record", "name": "Person", "fields": [
        {"name": "name", "type": "string"}, {"name": "born", "type": ["null", "int"], "default": null}]}}},
    {"name": "scores", "type": {"type": "map", "values": ["null", "double", "Person"]}}
]}"#;

/// The same record as another version would have it: resolution reads SCHEMA's datums as this.
const READER: &str = r#"{"type": "record", "name": "Movie", "namespace": "fuzz", "fields": [
    {"name": "id", "type": "long"},
    {"name": "title", "type": "string"},
    {"name": "year", "type": "long"},
    {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA"], "default": "DRAMA"}},
    {"name": "country", "type": "string", "default": "US"}
]}"#;

fn sample(schema: &Schema) -> Vec<u8> {
    let json = serde_json::json!({
        "id": 7, "year": 1979, "title": "Alien", "poster": "\u{0}\u{1}", "released": true,
        "rating": 8.5, "score": 9.25, "subtitle": "In space", "genre": "COMEDY", "checksum": "abcd",
        "price": "\u{30}\u{39}",
        "cast": [{"name": "Sigourney Weaver", "born": 1949}, {"name": "John Hurt", "born": null}],
        "scores": {"imdb": 8.5, "none": null, "critic": {"name": "Roger", "born": 1942}}
    });
    json_to_datum(schema, &json).expect("the sample is a value of the schema")
}

/// Read `bytes` every way the host does; errors must say something.
fn read_every_way(schema: &Schema, resolver: &Resolver, bytes: &[u8]) {
    let check = |what: &str, error: Option<String>| {
        if let Some(message) = error {
            assert!(!message.trim().is_empty(), "{what}: an error without a message");
        }
    };
    check("validate", validate(schema, bytes).err().map(|e| e.to_string()));
    check("decode", decode_datum(schema, bytes).err().map(|e| e.to_string()));
    check("json", datum_to_json(schema, bytes).err().map(|e| e.to_string()));
    let mut out = Vec::new();
    check("resolve", resolver.convert_into(bytes, &mut out).err().map(|e| e.to_string()));
}

fn setup() -> (Schema, Resolver, Vec<u8>) {
    let schema = Schema::parse(SCHEMA).unwrap();
    let resolver = Resolver::new(&schema, &Schema::parse(READER).unwrap()).unwrap();
    let valid = sample(&schema);
    (schema, resolver, valid)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(3000),
        ))]

    #[test]
    fn arbitrary_bytes_are_refused_with_a_message(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let (schema, resolver, _) = setup();
        read_every_way(&schema, &resolver, &bytes);
    }

    #[test]
    fn valid_datums_with_bytes_changed_or_cut(
        changes in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
        cut in any::<Index>(),
        insert in prop::collection::vec(any::<u8>(), 0..12),
    ) {
        let (schema, resolver, valid) = setup();
        let mut bytes = valid.clone();
        for (at, byte) in &changes {
            let i = at.index(bytes.len());
            bytes[i] = *byte;
        }
        read_every_way(&schema, &resolver, &bytes);
        read_every_way(&schema, &resolver, &bytes[..cut.index(bytes.len())]);
        let at = cut.index(valid.len());
        let mut grown = valid[..at].to_vec();
        grown.extend_from_slice(&insert);
        grown.extend_from_slice(&valid[at..]);
        read_every_way(&schema, &resolver, &grown);
    }

    #[test]
    fn arbitrary_schema_text_is_refused_with_a_message(text in "\\PC{0,120}") {
        if let Err(e) = Schema::parse(&text) {
            prop_assert!(!e.to_string().trim().is_empty());
        }
    }

    #[test]
    fn mangled_schemas_parse_or_say_why(cut in any::<Index>(), at in any::<Index>(), junk in "[\\[\\]{}\",:a-z0-9 ]{0,6}") {
        let mut text = SCHEMA.to_string();
        let at = text.char_indices().map(|(i, _)| i).nth(at.index(text.chars().count())).unwrap_or(0);
        text.insert_str(at, &junk);
        let end = text.char_indices().map(|(i, _)| i).nth(cut.index(text.chars().count())).unwrap_or(text.len());
        for candidate in [&text[..], &text[..end]] {
            match Schema::parse(candidate) {
                // A schema that parses must work: reading junk with it must not panic either.
                Ok(schema) => {
                    let _ = validate(&schema, b"\x02\x04\x06");
                    let _ = decode_datum(&schema, &[0xff; 12]);
                }
                Err(e) => prop_assert!(!e.to_string().trim().is_empty()),
            }
        }
    }
}
