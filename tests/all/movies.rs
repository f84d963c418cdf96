//! Sample movie records, encoded with `apache-avro` (an implementation independent of the
//! host's), and the reference results of the stock filter + projection.

use apache_avro::types::Value;
use apache_avro::Schema;

pub const MOVIE_SCHEMA: &str = r#"{
  "type": "record", "name": "Movie", "namespace": "demo",
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
    {"name": "budget", "type": ["null", "long", "string"]}
  ]
}"#;

/// The schema the projection below produces (title renamed to name).
pub const SLIM_SCHEMA: &str = r#"{
  "type": "record", "name": "Slim", "namespace": "demo",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "name", "type": "string"},
    {"name": "year", "type": "int"},
    {"name": "director", "type": {"type": "record", "name": "Person", "fields": [
      {"name": "name", "type": "string"},
      {"name": "born", "type": ["null", "int"], "default": null}
    ]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "rating", "type": ["null", "double"], "default": null}
  ]
}"#;

/// The processors of the filter + projection pipeline, as YAML.
pub const FILTER_AND_PROJECTION: &str = r#"
  recent:
    uses: mesh/filter@0.1
    inputs: [movies]
    with:
      condition: "year >= 2000 && country == 'US'"
  slim:
    uses: mesh/projection@0.1
    inputs: [recent]
    with:
      fields: [id, title, year, director, tags, rating]
      rename: {title: name}
"#;

#[derive(Debug, Clone)]
pub struct Movie {
    pub id: i64,
    pub title: String,
    pub year: i32,
    pub country: &'static str,
    pub rating: Option<f64>,
    pub genre: u32,
    pub director: (String, Option<i32>),
    pub tags: Vec<String>,
    pub awards: Vec<(String, i32)>,
    pub budget: Budget,
}

#[derive(Debug, Clone)]
pub enum Budget {
    Unknown,
    Dollars(i64),
    Text(String),
}

const GENRES: [&str; 4] = ["DRAMA", "COMEDY", "SCIFI", "DOCUMENTARY"];
const COUNTRIES: [&str; 4] = ["US", "FR", "JP", "US"];

/// `count` movies with every kind of field varied, unicode titles among them.
pub fn movies(count: usize) -> Vec<Movie> {
    (0..count as i64)
        .map(|id| Movie {
            id,
            title: match id % 5 {
                0 => format!("Amélie n°{id}"),
                1 => format!("千と千尋の神隠し {id}"),
                2 => format!("Movie {id} 🎬"),
                3 => String::new(),
                _ => format!("Plain title {id}"),
            },
            year: 1990 + (id * 7 % 35) as i32,
            country: COUNTRIES[(id % 4) as usize],
            rating: (id % 3 != 0).then_some(id as f64 / 10.0),
            genre: (id % 4) as u32,
            director: (format!("Director {}", id % 13), (id % 2 == 0).then_some(1940 + (id % 50) as i32)),
            tags: (0..(id % 4)).map(|t| format!("tag{t}")).collect(),
            awards: (0..(id % 3)).map(|a| (format!("award{a}"), a as i32 + 1)).collect(),
            budget: match id % 3 {
                0 => Budget::Unknown,
                1 => Budget::Dollars(id * 1_000_000),
                _ => Budget::Text(format!("about {id}M")),
            },
        })
        .collect()
}

fn director(movie: &Movie) -> Value {
    Value::Record(vec![
        ("name".into(), Value::String(movie.director.0.clone())),
        (
            "born".into(),
            match movie.director.1 {
                None => Value::Union(0, Box::new(Value::Null)),
                Some(year) => Value::Union(1, Box::new(Value::Int(year))),
            },
        ),
    ])
}

fn rating(movie: &Movie) -> Value {
    match movie.rating {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(r) => Value::Union(1, Box::new(Value::Double(r))),
    }
}

fn tags(movie: &Movie) -> Value {
    Value::Array(movie.tags.iter().map(|t| Value::String(t.clone())).collect())
}

impl Movie {
    pub fn key(&self) -> Vec<u8> {
        format!("movie-{}", self.id).into_bytes()
    }

    pub fn avro(&self) -> Vec<u8> {
        static SCHEMA: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
        let schema = SCHEMA.get_or_init(|| Schema::parse_str(MOVIE_SCHEMA).unwrap());
        let value = Value::Record(vec![
            ("id".into(), Value::Long(self.id)),
            ("title".into(), Value::String(self.title.clone())),
            ("year".into(), Value::Int(self.year)),
            ("country".into(), Value::String(self.country.into())),
            ("rating".into(), rating(self)),
            ("genre".into(), Value::Enum(self.genre, GENRES[self.genre as usize].into())),
            ("director".into(), director(self)),
            ("tags".into(), tags(self)),
            ("awards".into(), Value::Map(self.awards.iter().map(|(k, v)| (k.clone(), Value::Int(*v))).collect())),
            (
                "budget".into(),
                match &self.budget {
                    Budget::Unknown => Value::Union(0, Box::new(Value::Null)),
                    Budget::Dollars(d) => Value::Union(1, Box::new(Value::Long(*d))),
                    Budget::Text(t) => Value::Union(2, Box::new(Value::String(t.clone()))),
                },
            ),
        ]);
        apache_avro::to_avro_datum(schema, value).unwrap()
    }

    /// What the filter keeps.
    pub fn is_recent_us(&self) -> bool {
        self.year >= 2000 && self.country == "US"
    }

    /// The projection of this movie, as `SLIM_SCHEMA` decodes it.
    pub fn slim(&self) -> Value {
        Value::Record(vec![
            ("id".into(), Value::Long(self.id)),
            ("name".into(), Value::String(self.title.clone())),
            ("year".into(), Value::Int(self.year)),
            ("director".into(), director(self)),
            ("tags".into(), tags(self)),
            ("rating".into(), rating(self)),
        ])
    }
}

/// Decode a value of `schema` with apache-avro.
pub fn decode(schema: &str, bytes: &[u8]) -> Value {
    let schema = Schema::parse_str(schema).unwrap();
    let mut reader = bytes;
    let value = apache_avro::from_avro_datum(&schema, &mut reader, None).expect("output decodes with its schema");
    assert!(reader.is_empty(), "trailing bytes after the datum");
    value
}

/// Write the movie schema and a pipeline reading `input` through `processors` into `output`.
pub fn pipeline(
    dir: &crate::support::PipelineDir,
    name: &str,
    input: &str,
    processors: &str,
    last: &str,
    output: &str,
    dead_letter: &str,
) -> std::path::PathBuf {
    dir.write("movie.avsc", MOVIE_SCHEMA);
    dir.write(
        "pipeline.yaml",
        &format!(
            "name: {name}\nsources:\n  movies:\n    topic: {input}\n    format: avro\n    schema: movie.avsc\nprocessors:{processors}\nsinks:\n  out:\n    topic: {output}\n    format: avro\n    inputs: [{last}]\ndead_letter:\n  topic: {dead_letter}\n"
        ),
    )
}
