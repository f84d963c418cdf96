//! `meshhost run` end to end: Kafka → Wasm processors → Kafka.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::movies::{self, decode, Movie, FILTER_AND_PROJECTION, SLIM_SCHEMA};
use crate::support::*;

/// Topics for one test: input (3 partitions), output, dead letters.
struct Topics {
    input: String,
    output: String,
    dead_letter: String,
}

fn topics(name: &str) -> Topics {
    let (input, output, dead_letter) = pipeline_topics(name, 3);
    Topics { input, output, dead_letter }
}

fn produce_movies(topic: &str, movies: &[Movie]) {
    let records: Vec<_> = movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect();
    produce(topic, &records);
}

/// The expected output of the filter + projection pipeline, by key.
fn expected_slim(movies: &[Movie]) -> BTreeMap<Vec<u8>, apache_avro::types::Value> {
    movies.iter().filter(|m| m.is_recent_us()).map(|m| (m.key(), m.slim())).collect()
}

/// Assert equal record sets, naming the keys that differ rather than dumping both sides.
pub(crate) fn assert_same(
    actual: &BTreeMap<Vec<u8>, apache_avro::types::Value>,
    expected: &BTreeMap<Vec<u8>, apache_avro::types::Value>,
) {
    let name = |k: &Vec<u8>| String::from_utf8_lossy(k).into_owned();
    let missing: Vec<String> = expected.keys().filter(|k| !actual.contains_key(*k)).map(name).collect();
    let extra: Vec<String> = actual.keys().filter(|k| !expected.contains_key(*k)).map(name).collect();
    let different: Vec<String> =
        expected.iter().filter(|(k, v)| actual.get(*k).is_some_and(|a| a != *v)).map(|(k, _)| name(k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && different.is_empty(),
        "output differs: missing {missing:?}, unexpected {extra:?}, different values {different:?}"
    );
}

pub(crate) fn by_key(records: &[TestRecord], schema: &str) -> BTreeMap<Vec<u8>, apache_avro::types::Value> {
    let mut out = BTreeMap::new();
    for record in records {
        let key = record.key.clone().expect("output keeps the key");
        let previous = out.insert(key.clone(), decode(schema, record.value.as_deref().expect("a value")));
        assert!(previous.is_none(), "key {} appears twice in the output", String::from_utf8_lossy(&key));
    }
    out
}

/// The last value per key of `records` (an output read after a replay holds some keys twice).
pub(crate) fn latest_by_key(records: &[TestRecord], schema: &str) -> BTreeMap<Vec<u8>, apache_avro::types::Value> {
    let mut latest = BTreeMap::new();
    for record in records {
        latest.insert(
            record.key.clone().expect("output keeps the key"),
            decode(schema, record.value.as_deref().expect("a value")),
        );
    }
    latest
}

/// Wait until meshhost committed every offset of `topic`, so nothing is left in flight.
pub(crate) fn wait_for_commits(group: &str, topic: &str) {
    let end = end_offsets(topic);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let committed = committed_offsets(group, topic);
        if end.iter().all(|(p, o)| committed.get(p) == Some(o)) {
            return;
        }
        assert!(Instant::now() < deadline, "committed offsets {committed:?} never reached the ends {end:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn avro_through_filter_and_projection_gives_exact_records() {
    let topics = topics("e2e");
    let movies = movies::movies(300);
    produce_movies(&topics.input, &movies);
    let dir = PipelineDir::new();
    let name = unique("e2e");
    let pipeline = movies::pipeline(
        &dir,
        &name,
        &topics.input,
        FILTER_AND_PROJECTION,
        "slim",
        &topics.output,
        &topics.dead_letter,
    );

    let run = start_run(&pipeline);
    let expected = expected_slim(&movies);
    let output = read(&topics.output, expected.len(), Duration::from_secs(60));
    wait_for_commits(&format!("meshhost-{name}"), &topics.input);
    assert_clean_exit(&run.stop());

    assert_same(&by_key(&output, SLIM_SCHEMA), &expected);
    // Keys keep their partition: same key, same partitioner, same partition count.
    let input = read(&topics.input, movies.len(), Duration::from_secs(30));
    for record in &output {
        let source = input.iter().find(|r| r.key == record.key).unwrap();
        assert_eq!(record.partition, source.partition);
    }
    assert!(read(&topics.dead_letter, 1, Duration::from_secs(1)).is_empty(), "no dead letters expected");
}

#[test]
fn malformed_values_go_to_dead_letters_and_nothing_is_lost() {
    let topics = topics("dlq");
    let movies = movies::movies(60);
    let truncated = movies[1].avro()[..5].to_vec();
    let mut records: Vec<KeyValue> = Vec::new();
    let mut bad = Vec::new();
    for (i, movie) in movies.iter().enumerate() {
        records.push((Some(movie.key()), Some(movie.avro())));
        if i % 20 == 7 {
            let value =
                if i == 7 { b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec() } else { truncated.clone() };
            let key = format!("bad-{i}").into_bytes();
            bad.push((key.clone(), value.clone()));
            records.push((Some(key), Some(value)));
        }
    }
    produce(&topics.input, &records);
    let dir = PipelineDir::new();
    let name = unique("dlq");
    let pipeline = movies::pipeline(
        &dir,
        &name,
        &topics.input,
        FILTER_AND_PROJECTION,
        "slim",
        &topics.output,
        &topics.dead_letter,
    );

    let run = start_run(&pipeline);
    let expected = expected_slim(&movies);
    let output = read(&topics.output, expected.len(), Duration::from_secs(60));
    let dead = read(&topics.dead_letter, bad.len(), Duration::from_secs(30));
    wait_for_commits(&format!("meshhost-{name}"), &topics.input);
    assert_clean_exit(&run.stop());

    assert_same(&by_key(&output, SLIM_SCHEMA), &expected);
    // The filter emits its input unchanged and the projection only a new value: the key (checked
    // by `by_key`) and the headers travel with the record.
    for record in &output {
        assert_eq!(record.header("origin").as_deref(), Some("test"), "headers kept through filter and projection");
    }
    let mut dead_by_key: BTreeMap<Vec<u8>, &TestRecord> = BTreeMap::new();
    for record in &dead {
        dead_by_key.insert(record.key.clone().unwrap(), record);
    }
    assert_eq!(dead_by_key.len(), bad.len(), "{dead:#?}");
    let input = read(&topics.input, records.len(), Duration::from_secs(30));
    for (key, value) in &bad {
        let record = dead_by_key[key];
        assert_eq!(record.value.as_ref(), Some(value), "original bytes kept");
        assert_eq!(record.header("origin").as_deref(), Some("test"), "original headers kept");
        assert_eq!(record.header("meshhost.stage").as_deref(), Some("decode"));
        assert_eq!(record.header("meshhost.processor").as_deref(), Some(""));
        assert_eq!(record.header("meshhost.source.topic").as_deref(), Some(topics.input.as_str()));
        let error = record.header("meshhost.error").unwrap();
        assert!(error.contains("not an Avro datum"), "{error}");
        let source = input.iter().find(|r| r.key.as_ref() == Some(key)).unwrap();
        assert_eq!(record.header("meshhost.source.partition"), Some(source.partition.to_string()));
        let offset: i64 = record.header("meshhost.source.offset").unwrap().parse().unwrap();
        let at_offset = read_at(&topics.input, source.partition, offset);
        assert_eq!(at_offset.key.as_ref(), Some(key));
    }
}

fn read_at(topic: &str, partition: i32, offset: i64) -> TestRecord {
    // Read the partition and index by position: offsets of a fresh topic start at 0.
    let all: Vec<TestRecord> =
        read(topic, usize::MAX, Duration::from_secs(3)).into_iter().filter(|r| r.partition == partition).collect();
    all[offset as usize].clone()
}

/// A pipeline whose only processor is a test plugin given by path.
fn test_plugin_pipeline(
    dir: &PipelineDir,
    name: &str,
    topics: &Topics,
    plugin: &str,
    limits: &str,
) -> std::path::PathBuf {
    let processors = format!("\n  test:\n    uses: {plugin}\n    inputs: [movies]\n{limits}");
    movies::pipeline(dir, name, &topics.input, &processors, "test", &topics.output, &topics.dead_letter)
}

fn poisoned_movies(marker: &str, poisoned: &[i64]) -> Vec<Movie> {
    let mut movies = movies::movies(40);
    for movie in &mut movies {
        if poisoned.contains(&movie.id) {
            movie.title = format!("{marker} {}", movie.id);
        }
    }
    movies
}

fn assert_poison_dead_lettered(topics: &Topics, movies: &[Movie], poisoned: &[i64], error_contains: &str) {
    // Compared decoded: apache-avro writes map entries in hash order, so bytes may differ.
    let expected: BTreeMap<Vec<u8>, apache_avro::types::Value> = movies
        .iter()
        .filter(|m| !poisoned.contains(&m.id))
        .map(|m| (m.key(), decode(movies::MOVIE_SCHEMA, &m.avro())))
        .collect();
    let output = read_all(&topics.output, expected.len(), Duration::from_secs(90));
    assert_same(&by_key(&output, movies::MOVIE_SCHEMA), &expected);
    let dead = read_all(&topics.dead_letter, poisoned.len(), Duration::from_secs(30));
    let mut dead_keys: Vec<Vec<u8>> = dead.iter().map(|r| r.key.clone().unwrap()).collect();
    dead_keys.sort();
    let mut poisoned_keys: Vec<Vec<u8>> = movies.iter().filter(|m| poisoned.contains(&m.id)).map(Movie::key).collect();
    poisoned_keys.sort();
    assert_eq!(dead_keys, poisoned_keys, "exactly the poisoned records are dead letters");
    for record in &dead {
        assert_eq!(record.header("meshhost.stage").as_deref(), Some("process"));
        assert_eq!(record.header("meshhost.processor").as_deref(), Some("test"));
        let error = record.header("meshhost.error").unwrap();
        assert!(error.contains(error_contains), "{error}");
    }
}

#[test]
fn a_trapping_plugin_loses_only_its_poison_records() {
    let topics = topics("trap");
    let poisoned = [3, 17, 18];
    let movies = poisoned_movies("TRAP", &poisoned);
    produce_movies(&topics.input, &movies);
    let dir = PipelineDir::new();
    let pipeline = test_plugin_pipeline(&dir, &unique("trap"), &topics, TRAP_PLUGIN, "");
    let run = start_run(&pipeline);
    assert_poison_dead_lettered(&topics, &movies, &poisoned, "poison record");
    // The host survived and still processes records that come later.
    let later = movies::movies(45)[40..].to_vec();
    produce_movies(&topics.input, &later);
    let output = read(&topics.output, movies.len() - poisoned.len() + later.len(), Duration::from_secs(60));
    assert_eq!(output.len(), movies.len() - poisoned.len() + later.len());
    assert_clean_exit(&run.stop());
}

#[test]
fn a_plugin_that_loops_forever_hits_its_deadline() {
    let topics = topics("spin");
    let poisoned = [5];
    let movies = poisoned_movies("SPIN", &poisoned);
    produce_movies(&topics.input, &movies);
    let dir = PipelineDir::new();
    let pipeline =
        test_plugin_pipeline(&dir, &unique("spin"), &topics, SPIN_PLUGIN, "    limits:\n      timeout_ms: 300\n");
    let run = start_run(&pipeline);
    assert_poison_dead_lettered(&topics, &movies, &poisoned, "CPU deadline");
    assert_clean_exit(&run.stop());
}

#[test]
fn sigterm_mid_stream_then_rerun_gives_every_record_exactly_once() {
    let topics = topics("restart");
    let movies = movies::movies(20_000);
    produce_movies(&topics.input, &movies);
    let dir = PipelineDir::new();
    let name = unique("restart");
    let pipeline = movies::pipeline(
        &dir,
        &name,
        &topics.input,
        FILTER_AND_PROJECTION,
        "slim",
        &topics.output,
        &topics.dead_letter,
    );
    let expected = expected_slim(&movies);

    let run = start_run(&pipeline);
    let first = read(&topics.output, 1, Duration::from_secs(60));
    assert!(!first.is_empty(), "the first run produced nothing");
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    let after_first = read_all(&topics.output, 1, Duration::from_secs(10)).len();
    eprintln!("first run wrote {after_first} of {} records before SIGTERM", expected.len());

    let run = start_run(&pipeline);
    read(&topics.output, expected.len(), Duration::from_secs(120));
    wait_for_commits(&format!("meshhost-{name}"), &topics.input);
    assert_clean_exit(&run.stop());
    let output = read_all(&topics.output, expected.len(), Duration::from_secs(10));
    assert_same(&by_key(&output, SLIM_SCHEMA), &expected);
}

#[test]
fn too_many_failures_stop_the_run_with_the_window_uncommitted() {
    // One partition: the window is the last records in offset order.
    let (input, output, dead_letter) = pipeline_topics("breaker", 1);
    let movies = movies::movies(100);
    let mut records: Vec<KeyValue> = movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect();
    // Then a broken writer: 100 values that are not Avro datums of the schema (offsets 100..200).
    records.extend((0..100).map(|i| (Some(format!("bad-{i}").into_bytes()), Some(vec![0xff; 11]))));
    produce(&input, &records);
    let dir = PipelineDir::new();
    let name = unique("breaker");
    let pipeline = movies::pipeline(&dir, &name, &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    let text = std::fs::read_to_string(&pipeline).unwrap();
    std::fs::write(&pipeline, format!("{text}  max_ratio: 0.5\n  window: 40\n")).unwrap();

    let stopped = start_run(&pipeline).wait_for_exit(Duration::from_secs(60));
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    // At offset 120 the window (offsets 81..=120) holds 21 failures: more than half of 40.
    assert!(
        stopped.log.contains("21 of the last 40 records failed, more than dead_letter.max_ratio 0.5 allows"),
        "{}",
        stopped.log
    );
    assert!(stopped.log.contains("not an Avro datum"), "the last failure's reason: {}", stopped.log);
    let group = format!("meshhost-{name}");
    assert_eq!(committed_offsets(&group, &input).get(&0), Some(&81), "committed up to the window, not into it");
    let expected = expected_slim(&movies);
    let output_records = read(&output, expected.len(), Duration::from_secs(30));
    assert_same(&by_key(&output_records, SLIM_SCHEMA), &expected);
    let dead = read_all(&dead_letter, 21, Duration::from_secs(10));
    assert!(dead.len() >= 21 && dead.iter().all(|r| r.key.as_deref().is_some_and(|k| k.starts_with(b"bad-"))));

    // Without the limit (the deploy "fixed"), the next run reads from the window on: every bad
    // record ends in dead letters, every good one in the output (81..100 twice), nothing lost.
    std::fs::write(&pipeline, &text).unwrap();
    let run = start_run(&pipeline);
    wait_for_commits(&group, &input);
    assert_clean_exit(&run.stop());
    let dead = read_all(&dead_letter, 200, Duration::from_secs(5));
    let dead_keys: std::collections::BTreeSet<_> = dead.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(dead_keys.len(), 100, "every bad record dead-lettered");
    let output_records = read_all(&output, 200, Duration::from_secs(5));
    let latest = latest_by_key(&output_records, SLIM_SCHEMA);
    assert_same(&latest, &expected);
    let window_outputs = movies[81..].iter().filter(|m| m.is_recent_us()).count();
    println!(
        "fault: broken deploy (failure-rate limit 0.5/40) | in 200 | out {} | lost 0 | duplicated {} (the window, re-read) | dead-lettered {} | stopped at the 21st failure",
        latest.len(),
        output_records.len() - latest.len(),
        dead_keys.len()
    );
    assert_eq!(output_records.len() - latest.len(), window_outputs, "only the window's outputs come twice");
}

#[test]
fn hostile_plugins_lose_only_their_own_records_and_say_what_happened() {
    let topics = topics("hostile");
    let hostile = [
        (3, "alloc"),
        (7, "recurse"),
        (11, "reason"),
        (13, "panic"),
        (17, "file"),
        (19, "env"),
        (23, "socket"),
        (29, "clock"),
        (31, "huge"),
        (37, "random"),
    ];
    let mut movies = movies::movies(40);
    for movie in &mut movies {
        if let Some((_, what)) = hostile.iter().find(|(id, _)| *id == movie.id) {
            movie.title = format!("HOSTILE:{what}");
        }
    }
    produce_movies(&topics.input, &movies);
    let dir = PipelineDir::new();
    let limits = "    limits:\n      memory_mb: 64\n";
    let pipeline = test_plugin_pipeline(&dir, &unique("hostile"), &topics, HOSTILE_PLUGIN, limits);
    let run = start_run(&pipeline);

    let expected: BTreeMap<Vec<u8>, apache_avro::types::Value> = movies
        .iter()
        .filter(|m| !hostile.iter().any(|(id, _)| *id == m.id))
        .map(|m| (m.key(), decode(movies::MOVIE_SCHEMA, &m.avro())))
        .collect();
    let output = read_all(&topics.output, expected.len(), Duration::from_secs(90));
    assert_same(&by_key(&output, movies::MOVIE_SCHEMA), &expected);
    let dead = read_all(&topics.dead_letter, hostile.len(), Duration::from_secs(30));
    assert_clean_exit(&run.stop());
    let mut errors = BTreeMap::new();
    for record in &dead {
        let id: i64 = String::from_utf8(record.key.clone().unwrap()).unwrap()["movie-".len()..].parse().unwrap();
        let what = hostile.iter().find(|(i, _)| *i == id).map(|(_, w)| *w).expect("only hostile records fail");
        let error = record.header("meshhost.error").unwrap();
        let stage = record.header("meshhost.stage").unwrap();
        println!("{what} [{stage}]: {}", error.chars().take(300).collect::<String>());
        errors.insert(what, (stage, error));
    }
    assert_eq!(errors.len(), hostile.len(), "every hostile record, once: {:?}", errors.keys());
    println!(
        "fault: hostile plugin (10 kinds) | in {} | out {} | lost 0 | duplicated 0 | dead-lettered {} (the hostile ones) | host unharmed",
        movies.len(),
        output.len(),
        dead.len()
    );
    let error = |what: &str| errors[what].1.as_str();
    assert!(error("alloc").contains("memory allocation of 1048576 bytes failed"), "{}", error("alloc"));
    assert!(error("recurse").starts_with("plugin trapped: wasm trap:"), "{}", error("recurse"));
    // Reasons and panic messages of any size are cut, so the dead letter still fits a message.
    for what in ["reason", "panic"] {
        assert!(
            error(what).len() < 4200 && error(what).ends_with("more bytes)"),
            "{what}: {} bytes",
            error(what).len()
        );
    }
    assert!(error("panic").starts_with("plugin trapped: wasm trap:"));
    // No files, no environment, no sockets; the wall clock is the real one (documented).
    assert!(error("file").starts_with("file: Err("), "{}", error("file"));
    assert_eq!(error("env"), "env: []");
    assert!(error("socket").starts_with("socket: Err(") && error("socket").contains("PermissionDenied"));
    assert_eq!(error("clock"), "clock: Ok(true)");
    assert_eq!(error("random"), "random: true");
    // An output larger than a Kafka message: its record goes to dead letters, the run goes on.
    assert_eq!(errors["huge"].0, "encode");
    assert!(
        error("huge").contains("is larger than") && error("huge").contains("message.max.bytes"),
        "{}",
        error("huge")
    );
    for (stage, _) in errors.values().filter(|(stage, _)| stage != "encode") {
        assert_eq!(stage, "process");
    }
}

#[test]
fn a_plugin_whose_init_never_returns_fails_validate_at_its_deadline() {
    let topics = topics("hostile-init");
    let dir = PipelineDir::new();
    let limits = "    with:\n      init: loop\n    limits:\n      timeout_ms: 300\n";
    let pipeline = test_plugin_pipeline(&dir, &unique("hostile-init"), &topics, HOSTILE_PLUGIN, limits);
    let (code, _, stderr) = validate(&pipeline);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("trapped in init") && stderr.contains("interrupt"), "{stderr}");
}
