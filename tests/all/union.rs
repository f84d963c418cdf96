//! The stock `mesh/union` plugin end to end: two source topics → one output topic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::Schema;

use crate::movies::{self, decode, Movie, MOVIE_SCHEMA};
use crate::pipeline::{assert_same, by_key, wait_for_commits};
use crate::support::*;

/// An older movie schema that resolves to `MOVIE_SCHEMA`: another namespace, `id` an int,
/// no `rating` (which has a default in `MOVIE_SCHEMA`), an extra `studio`, fields in another
/// order (in `director` too), the genres in another order plus one `MOVIE_SCHEMA` lacks, and
/// `budget` a union with an int where `MOVIE_SCHEMA` has a long.
const LEGACY_SCHEMA: &str = r#"{
  "type": "record", "name": "Movie", "namespace": "legacy",
  "fields": [
    {"name": "title", "type": "string"},
    {"name": "id", "type": "int"},
    {"name": "studio", "type": "string"},
    {"name": "year", "type": "int"},
    {"name": "country", "type": "string"},
    {"name": "genre", "type": {"type": "enum", "name": "Genre", "symbols": ["SCIFI", "DRAMA", "DOCUMENTARY", "COMEDY", "ANIMATION"]}},
    {"name": "director", "type": {"type": "record", "name": "Person", "fields": [
      {"name": "born", "type": ["null", "int"]},
      {"name": "name", "type": "string"}
    ]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "awards", "type": {"type": "map", "values": "int"}},
    {"name": "budget", "type": ["null", "string", "int"]}
  ]
}"#;

const LEGACY_GENRES: [&str; 5] = ["SCIFI", "DRAMA", "DOCUMENTARY", "COMEDY", "ANIMATION"];

/// `MOVIE_SCHEMA` with a last field for `tag_field`.
fn tagged_schema() -> String {
    let last = r#"{"name": "budget", "type": ["null", "long", "string"]}"#;
    assert!(MOVIE_SCHEMA.contains(last));
    MOVIE_SCHEMA.replace(last, &format!(r#"{last}, {{"name": "source", "type": "string", "default": ""}}"#))
}

/// Write a pipeline: sources `eu` and `us` (with these schemas) into processor `all`
/// (`mesh/union`, with `with`), into the sink.
fn pipeline(
    dir: &PipelineDir,
    name: &str,
    eu: (&str, &str),
    us: (&str, &str),
    with: &str,
    output: &str,
    dead_letter: &str,
) -> PathBuf {
    dir.write("eu.avsc", eu.1);
    dir.write("us.avsc", us.1);
    dir.write(
        "pipeline.yaml",
        &format!(
            "name: {name}\nsources:\n  eu:\n    topic: {}\n    format: avro\n    schema: eu.avsc\n  us:\n    topic: {}\n    format: avro\n    schema: us.avsc\nprocessors:\n  all:\n    uses: mesh/union@0.1\n    inputs: [eu, us]\n{with}sinks:\n  out:\n    topic: {output}\n    format: avro\n    inputs: [all]\ndead_letter:\n  topic: {dead_letter}\n",
            eu.0, us.0
        ),
    )
}

struct Topics {
    eu: String,
    us: String,
    output: String,
    dead_letter: String,
}

fn topics(name: &str) -> Topics {
    let topics = Topics {
        eu: unique(&format!("{name}-eu")),
        us: unique(&format!("{name}-us")),
        output: unique(&format!("{name}-out")),
        dead_letter: unique(&format!("{name}-dlq")),
    };
    create_topic(&topics.eu, 3);
    create_topic(&topics.us, 2);
    create_topic(&topics.output, 3);
    create_topic(&topics.dead_letter, 1);
    topics
}

/// Run the pipeline until `expected` records are in the output and every input offset is
/// committed; returns the output and the dead letters (`dead` of them expected).
fn run(
    pipeline: &std::path::Path,
    name: &str,
    topics: &Topics,
    expected: usize,
    dead: usize,
) -> (Vec<TestRecord>, Vec<TestRecord>) {
    let run = start_run(pipeline);
    // Wait for the output; it is read again once the run is over, to catch extra records.
    read(&topics.output, expected, Duration::from_secs(60));
    if dead > 0 {
        read(&topics.dead_letter, dead, Duration::from_secs(30));
    }
    let group = format!("meshhost-{name}");
    wait_for_commits(&group, &topics.eu);
    wait_for_commits(&group, &topics.us);
    assert_clean_exit(&run.stop());
    let output = read_all(&topics.output, expected, Duration::from_secs(10));
    let dead_letters = read_all(&topics.dead_letter, dead, Duration::from_secs(10));
    (output, dead_letters)
}

fn produce_values(topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    let records: Vec<_> = records.iter().map(|(k, v)| (Some(k.clone()), Some(v.clone()))).collect();
    produce(topic, &records);
}

/// `MOVIE_SCHEMA` whose `Genre` enum has a default (DRAMA): the same canonical form, so the
/// same bytes, but a reader of it maps unknown symbols to DRAMA.
fn movie_schema_with_genre_default() -> String {
    let symbols = r#""symbols": ["DRAMA", "COMEDY", "SCIFI", "DOCUMENTARY"]}"#;
    assert!(MOVIE_SCHEMA.contains(symbols));
    MOVIE_SCHEMA.replace(symbols, r#""symbols": ["DRAMA", "COMEDY", "SCIFI", "DOCUMENTARY"], "default": "DRAMA"}"#)
}

/// A movie as `LEGACY_SCHEMA` writes it (from its `MOVIE_SCHEMA` encoding).
fn legacy_avro(movie: &Movie, genre: Option<&str>) -> Vec<u8> {
    let Value::Record(fields) = decode(MOVIE_SCHEMA, &movie.avro()) else { unreachable!() };
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).unwrap().1.clone();
    let Value::Enum(_, symbol) = get("genre") else { unreachable!() };
    let symbol = genre.map_or(symbol, str::to_string);
    let genre = Value::Enum(LEGACY_GENRES.iter().position(|g| *g == symbol).unwrap() as u32, symbol);
    let Value::Record(director) = get("director") else { unreachable!() };
    let director = Value::Record(director.into_iter().rev().collect()); // born, name
    let budget = match get("budget") {
        Value::Union(0, null) => Value::Union(0, null),
        Value::Union(1, dollars) => {
            let Value::Long(d) = *dollars else { unreachable!() };
            Value::Union(2, Box::new(Value::Int(i32::try_from(d).unwrap())))
        }
        Value::Union(2, text) => Value::Union(1, text),
        other => unreachable!("{other:?}"),
    };
    let value = Value::Record(vec![
        ("title".into(), get("title")),
        ("id".into(), Value::Int(movie.id as i32)),
        ("studio".into(), Value::String(format!("Studio {}", movie.id % 7))),
        ("year".into(), get("year")),
        ("country".into(), get("country")),
        ("genre".into(), genre),
        ("director".into(), director),
        ("tags".into(), get("tags")),
        ("awards".into(), get("awards")),
        ("budget".into(), budget),
    ]);
    let schema = Schema::parse_str(LEGACY_SCHEMA).unwrap();
    apache_avro::to_avro_datum(&schema, value).unwrap()
}

#[test]
fn identical_schemas_every_record_once() {
    let topics = topics("union-same");
    let all = movies::movies(240);
    let (eu, us) = all.split_at(130);
    // Kept: apache-avro writes map entries in hash order, so each encoding may differ.
    let eu: Vec<(Vec<u8>, Vec<u8>)> = eu.iter().map(|m| (m.key(), m.avro())).collect();
    let us: Vec<(Vec<u8>, Vec<u8>)> = us.iter().map(|m| (m.key(), m.avro())).collect();
    produce_values(&topics.eu, &eu);
    produce_values(&topics.us, &us);
    let dir = PipelineDir::new();
    let name = unique("union-same");
    let pipeline = pipeline(
        &dir,
        &name,
        (&topics.eu, MOVIE_SCHEMA),
        (&topics.us, MOVIE_SCHEMA),
        "",
        &topics.output,
        &topics.dead_letter,
    );

    let (output, dead) = run(&pipeline, &name, &topics, all.len(), 0);
    let produced: BTreeMap<Vec<u8>, Vec<u8>> = eu.into_iter().chain(us).collect();
    let expected: BTreeMap<Vec<u8>, Value> =
        produced.iter().map(|(k, v)| (k.clone(), decode(MOVIE_SCHEMA, v))).collect();
    assert_same(&by_key(&output, MOVIE_SCHEMA), &expected);
    assert!(dead.is_empty(), "no dead letters expected: {dead:?}");
    // Identical schemas: the bytes pass through.
    for record in &output {
        assert_eq!(record.value.as_ref(), Some(&produced[record.key.as_ref().unwrap()]));
        assert_eq!(record.header("origin").as_deref(), Some("test"), "headers kept");
    }
}

#[test]
fn compatible_schemas_are_resolved_to_the_first_input() {
    let topics = topics("union-resolve");
    let all = movies::movies(200);
    let (eu, us) = all.split_at(80);
    // Two legacy records with a genre the output enum does not have: its enum default (DRAMA)
    // stands in for it, as the Avro specification says.
    let animated: Vec<Movie> = movies::movies(203)[200..].iter().take(2).cloned().collect();
    produce_values(&topics.eu, &eu.iter().map(|m| (m.key(), m.avro())).collect::<Vec<_>>());
    let mut legacy: Vec<(Vec<u8>, Vec<u8>)> = us.iter().map(|m| (m.key(), legacy_avro(m, None))).collect();
    legacy.insert(10, (animated[0].key(), legacy_avro(&animated[0], Some("ANIMATION"))));
    legacy.push((animated[1].key(), legacy_avro(&animated[1], Some("ANIMATION"))));
    produce_values(&topics.us, &legacy);
    let with_default = movie_schema_with_genre_default();

    // Without the enum default, the union cannot take the legacy input: `validate` says why.
    let dir = PipelineDir::new();
    let name = unique("union-resolve");
    let strict = pipeline(
        &dir,
        &name,
        (&topics.eu, MOVIE_SCHEMA),
        (&topics.us, LEGACY_SCHEMA),
        "",
        &topics.output,
        &topics.dead_letter,
    );
    let (code, _stdout, stderr) = validate(&strict);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("ANIMATION") && stderr.contains("has no default"), "{stderr}");

    let dir = PipelineDir::new();
    let pipeline = pipeline(
        &dir,
        &name,
        (&topics.eu, &with_default),
        (&topics.us, LEGACY_SCHEMA),
        "",
        &topics.output,
        &topics.dead_letter,
    );
    let (output, dead) = run(&pipeline, &name, &topics, all.len() + animated.len(), 0);
    assert!(dead.is_empty(), "no record fails: {} dead letters", dead.len());

    // The expectations: apache-avro's own schema resolution of what was produced.
    let reader = Schema::parse_str(MOVIE_SCHEMA).unwrap();
    let writer = Schema::parse_str(LEGACY_SCHEMA).unwrap();
    let mut expected: BTreeMap<Vec<u8>, Value> =
        eu.iter().map(|m| (m.key(), decode(MOVIE_SCHEMA, &m.avro()))).collect();
    for (key, bytes) in &legacy {
        if animated.iter().any(|m| m.key() == *key) {
            continue;
        }
        let resolved = apache_avro::from_avro_datum(&writer, &mut &bytes[..], Some(&reader)).unwrap();
        expected.insert(key.clone(), resolved);
    }
    // And the resolution is what one expects of it: the same movie as the first input writes.
    for movie in us {
        let mut unrated = movie.clone();
        unrated.rating = None;
        assert_eq!(expected[&movie.key()], decode(MOVIE_SCHEMA, &unrated.avro()), "movie {}", movie.id);
    }
    // The animated movies: unrated (the legacy schema has no rating), genre DRAMA (symbol 0).
    for movie in &animated {
        let mut resolved = movie.clone();
        resolved.rating = None;
        resolved.genre = 0;
        expected.insert(movie.key(), decode(MOVIE_SCHEMA, &resolved.avro()));
    }
    assert_same(&by_key(&output, MOVIE_SCHEMA), &expected);
}

#[test]
fn tag_field_fills_in_the_input_id() {
    let topics = topics("union-tag");
    let all = movies::movies(150);
    let (eu, us) = all.split_at(70);
    let tagged = tagged_schema();
    // eu writes the tagged schema with some other value in the field; us lacks the field.
    let with_source = |m: &Movie| {
        let mut bytes = m.avro();
        bytes.extend([10]); // a string of 5 bytes
        bytes.extend(b"other");
        bytes
    };
    produce_values(&topics.eu, &eu.iter().map(|m| (m.key(), with_source(m))).collect::<Vec<_>>());
    produce_values(&topics.us, &us.iter().map(|m| (m.key(), m.avro())).collect::<Vec<_>>());
    let dir = PipelineDir::new();
    let name = unique("union-tag");
    let pipeline = pipeline(
        &dir,
        &name,
        (&topics.eu, &tagged),
        (&topics.us, MOVIE_SCHEMA),
        "    with:\n      tag_field: source\n",
        &topics.output,
        &topics.dead_letter,
    );

    let (output, dead) = run(&pipeline, &name, &topics, all.len(), 0);
    let expected: BTreeMap<Vec<u8>, Value> = all
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let Value::Record(mut fields) = decode(MOVIE_SCHEMA, &m.avro()) else { unreachable!() };
            fields.push(("source".into(), Value::String(if i < eu.len() { "eu" } else { "us" }.into())));
            (m.key(), Value::Record(fields))
        })
        .collect();
    assert_same(&by_key(&output, &tagged), &expected);
    assert!(dead.is_empty(), "no dead letters expected: {dead:?}");
}

#[test]
fn validate_names_both_inputs_and_the_field() {
    let year_as_text =
        MOVIE_SCHEMA.replace(r#"{"name": "year", "type": "int"}"#, r#"{"name": "year", "type": "string"}"#);
    assert_ne!(year_as_text, MOVIE_SCHEMA);
    let dir = PipelineDir::new();
    let path = pipeline(
        &dir,
        "check",
        ("movies-eu", MOVIE_SCHEMA),
        ("movies-us", &year_as_text),
        "    with:\n      tag_field: origin\n",
        "out",
        "dlq",
    );
    let (code, _stdout, stderr) = validate(&path);
    assert_eq!(code, Some(2), "{stderr}");
    for line in [
        r#"processors.all: input "us" cannot be resolved to the schema of input "eu": field "year": writer type string cannot be read as int"#,
        r#"processors.all.with.tag_field: no field "origin" in the output schema (that of input "eu"); fields are: id, title, year, country, rating, genre, director, tags, awards, budget"#,
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }

    // Compatible schemas validate (the legacy ANIMATION genre takes the enum default), and the
    // output is the first input's schema.
    let dir = PipelineDir::new();
    let with_default = movie_schema_with_genre_default();
    let path = pipeline(&dir, "check", ("movies-eu", &with_default), ("movies-us", LEGACY_SCHEMA), "", "out", "dlq");
    let (code, stdout, stderr) = validate(&path);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("all.out: "), "{stdout}");
    assert!(stdout.contains("all.out: record demo.Movie\n      id: long\n"), "{stdout}");

    // With the inputs the other way round, the legacy schema is the output, and a long `id`
    // cannot be read as its int.
    let dir = PipelineDir::new();
    let path = pipeline(&dir, "check", ("movies-eu", LEGACY_SCHEMA), ("movies-us", MOVIE_SCHEMA), "", "out", "dlq");
    let (code, _stdout, stderr) = validate(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(r#"processors.all: input "us" cannot be resolved to the schema of input "eu": field "id": writer type long cannot be read as int"#), "{stderr}");
}
