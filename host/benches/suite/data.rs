//! The benchmark's records: movies with every common kind of Avro field, padded by a free-text
//! `synopsis` to a target size (about 200 B or 2 KB), generated deterministically from their id.

use meshhost_avro::{self as avro, Schema, Value};

/// The input schema of every benchmark.
pub const MOVIE_SCHEMA: &str = r#"{
  "type": "record", "name": "Movie", "namespace": "bench",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "title", "type": "string"},
    {"name": "year", "type": "int"},
    {"name": "country", "type": "string"},
    {"name": "rating", "type": ["null", "double"], "default": null},
    {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["DRAMA", "COMEDY", "SCIFI", "DOCUMENTARY"]}},
    {"name": "director", "type": {"type": "record", "name": "Person", "fields": [
      {"name": "name", "type": "string"},
      {"name": "born", "type": ["null", "int"], "default": null}
    ]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "awards", "type": {"type": "map", "values": "int"}},
    {"name": "synopsis", "type": "string"}
  ]
}"#;

/// What the projection below produces (the same field types, `title` renamed to `name`).
pub const SLIM_SCHEMA: &str = r#"{
  "type": "record", "name": "Slim", "namespace": "bench",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "year", "type": "int"},
    {"name": "director", "type": {"type": "record", "name": "Person", "fields": [
      {"name": "name", "type": "string"},
      {"name": "born", "type": ["null", "int"], "default": null}
    ]}},
    {"name": "rating", "type": ["null", "double"], "default": null},
    {"name": "synopsis", "type": "string"}
  ]
}"#;

/// The filter condition: true for exactly half of the generated records (year is uniform over
/// 1990..2030, so 3/4 are >= 2000; country is "US" for 2/3 of ids; 40 and 3 are coprime).
pub const CONDITION: &str = "year >= 2000 && country == 'US'";

/// The projection's fields, in output order (indices into MOVIE_SCHEMA's fields below).
pub const PROJECTED: &[&str] = &["id", "title", "year", "director", "rating", "synopsis"];
pub const PROJECTED_INDICES: &[usize] = &[0, 1, 2, 6, 4, 9];

/// The two processors of the E2E pipeline, as YAML.
pub fn processors_yaml() -> String {
    format!(
        r#"
  recent:
    uses: mesh/filter@0.1
    inputs: [movies]
    with:
      condition: "{CONDITION}"
  slim:
    uses: mesh/projection@0.1
    inputs: [recent]
    with:
      fields: [{}]
      rename: {{title: name}}
"#,
        PROJECTED.join(", ")
    )
}

const COUNTRIES: [&str; 3] = ["FR", "US", "US"];
const GENRES: [&str; 4] = ["DRAMA", "COMEDY", "SCIFI", "DOCUMENTARY"];
const WORDS: [&str; 16] = [
    "a",
    "detective",
    "returns",
    "to",
    "the",
    "city",
    "where",
    "her",
    "brother",
    "vanished",
    "years",
    "ago",
    "and",
    "finds",
    "nothing",
    "unchanged",
];

/// The year and country of record `id` (what the condition reads).
pub fn year_country(id: u64) -> (i32, &'static str) {
    (1990 + (id * 7 % 40) as i32, COUNTRIES[(id % 3) as usize])
}

/// Whether the condition keeps record `id`.
pub fn kept(id: u64) -> bool {
    let (year, country) = year_country(id);
    year >= 2000 && country == "US"
}

/// Builds records of about `target` bytes.
pub struct Generator {
    schema: Schema,
    target: usize,
}

impl Generator {
    pub fn new(target: usize) -> Generator {
        Generator { schema: Schema::parse(MOVIE_SCHEMA).expect("the bench schema parses"), target }
    }

    pub fn key(id: u64) -> Vec<u8> {
        format!("movie-{id}").into_bytes()
    }

    /// The Avro datum of record `id`.
    pub fn value(&self, id: u64) -> Vec<u8> {
        let (year, country) = year_country(id);
        let mut fields = vec![
            ("id".to_string(), Value::Long(id as i64)),
            ("title".into(), Value::String(format!("The Long Way Home, part {id}"))),
            ("year".into(), Value::Int(year)),
            ("country".into(), Value::String(country.into())),
            (
                "rating".into(),
                if id.is_multiple_of(5) {
                    Value::Union(0, Box::new(Value::Null))
                } else {
                    Value::Union(1, Box::new(Value::Double((id % 100) as f64 / 10.0)))
                },
            ),
            ("genre".into(), Value::Enum((id % 4) as u32, GENRES[(id % 4) as usize].into())),
            (
                "director".into(),
                Value::Record(vec![
                    ("name".into(), Value::String(format!("Director {}", id % 97))),
                    (
                        "born".into(),
                        if id.is_multiple_of(2) {
                            Value::Union(1, Box::new(Value::Int(1930 + (id % 60) as i32)))
                        } else {
                            Value::Union(0, Box::new(Value::Null))
                        },
                    ),
                ]),
            ),
            ("tags".into(), Value::Array((0..(id % 4)).map(|t| Value::String(format!("tag{t}"))).collect())),
            (
                "awards".into(),
                Value::Map((0..(id % 3)).map(|a| (format!("award{a}"), Value::Int(a as i32 + 1))).collect()),
            ),
            ("synopsis".into(), Value::String(String::new())),
        ];
        let base = avro::encode_datum(&self.schema, &Value::Record(fields.clone())).expect("encodes").len();
        // The synopsis fills the record up to the target: its length L and its length prefix
        // (1 byte below 64, else 2) replace the empty string's one byte.
        let avail = (self.target + 1).saturating_sub(base);
        let room = if avail > 65 { avail - 2 } else { avail.saturating_sub(1) };
        let mut synopsis = String::with_capacity(room + 16);
        let mut state = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        while synopsis.len() < room {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            synopsis.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
            synopsis.push(' ');
        }
        synopsis.truncate(room);
        fields[9].1 = Value::String(synopsis);
        avro::encode_datum(&self.schema, &Value::Record(fields)).expect("encodes")
    }
}
