//! `mesh/join` end to end: a latest-value table join of two changelog topics, with durable
//! state that survives a crash and the loss of the local state directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use apache_avro::Schema;

use crate::support::*;

const MOVIE: &str = r#"{"type": "record", "name": "Movie", "namespace": "join", "fields": [
  {"name": "id", "type": "string"}, {"name": "title", "type": "string"}, {"name": "year", "type": "int"}]}"#;
const TALENT: &str = r#"{"type": "record", "name": "Talent", "namespace": "join", "fields": [
  {"name": "movie_id", "type": "string"}, {"name": "names", "type": {"type": "array", "items": "string"}}]}"#;

/// The output schema the join declares: `{movies: Movie, talents: Talent or null}`.
fn joined_schema() -> String {
    format!(
        r#"{{"type": "record", "name": "Joined", "fields": [{{"name": "movies", "type": {MOVIE}}}, {{"name": "talents", "type": ["null", {TALENT}]}}]}}"#
    )
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Inner,
    Left,
}

/// One input event: an upsert (value) or a delete (tombstone) on a side.
#[derive(Clone)]
pub(crate) enum Event {
    Movie(String, Option<(String, i32)>),
    Talent(String, Option<Vec<String>>),
}

fn movie_value(id: &str, title: &str, year: i32) -> Value {
    Value::Record(vec![
        ("id".into(), Value::String(id.into())),
        ("title".into(), Value::String(title.into())),
        ("year".into(), Value::Int(year)),
    ])
}

fn talent_value(id: &str, names: &[String]) -> Value {
    Value::Record(vec![
        ("movie_id".into(), Value::String(id.into())),
        ("names".into(), Value::Array(names.iter().map(|n| Value::String(n.clone())).collect())),
    ])
}

fn encode(schema: &str, value: Value) -> Vec<u8> {
    apache_avro::to_avro_datum(&Schema::parse_str(schema).unwrap(), value).unwrap()
}

/// A deterministic mix over `keys` keys: inserts on both sides in both orders (right before
/// left for some), updates, deletes on either side, left-only and right-only keys.
pub(crate) fn events(keys: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize
    };
    for k in 0..keys {
        let id = format!("m-{k}");
        let talent =
            |n: usize| Event::Talent(id.clone(), Some((0..n % 3 + 1).map(|i| format!("person {k}.{i}.{n}")).collect()));
        let movie = |n: usize| Event::Movie(id.clone(), Some((format!("Title {k} v{n}"), 1950 + (n % 70) as i32)));
        match k % 6 {
            0 => events.extend([movie(1), talent(1)]),
            1 => events.extend([talent(1), movie(1)]), // right before left
            2 => events.extend([movie(1), talent(1), movie(2), talent(2)]), // updates
            3 => events.extend([movie(1), talent(1), Event::Movie(id.clone(), None)]), // left deleted
            4 => events.extend([movie(1), talent(1), Event::Talent(id.clone(), None)]), // right deleted
            _ => events.push(if next() % 2 == 0 { movie(1) } else { talent(1) }), // one side only
        }
    }
    // Interleave keys, keeping each key's own order.
    let mut by_key: Vec<std::collections::VecDeque<Event>> = Vec::new();
    for event in events {
        let key = match &event {
            Event::Movie(k, _) | Event::Talent(k, _) => k.clone(),
        };
        let index: usize = key[2..].parse().unwrap();
        if by_key.len() <= index {
            by_key.resize_with(index + 1, Default::default);
        }
        by_key[index].push_back(event);
    }
    let mut mixed = Vec::new();
    while by_key.iter().any(|q| !q.is_empty()) {
        let count = by_key.len();
        let start = next() % count;
        for offset in 0..count {
            if let Some(event) = by_key[(start + offset) % count].pop_front() {
                mixed.push(event);
                break;
            }
        }
    }
    mixed
}

/// The join computed independently: final table per side, then f(left, right) per key.
pub(crate) fn reference(events: &[Event], kind: Kind) -> BTreeMap<String, Option<Value>> {
    let mut movies: BTreeMap<String, (String, i32)> = BTreeMap::new();
    let mut talents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for event in events {
        match event {
            Event::Movie(k, v) => {
                keys.insert(k.clone());
                match v {
                    Some(v) => movies.insert(k.clone(), v.clone()),
                    None => movies.remove(k),
                };
            }
            Event::Talent(k, v) => {
                keys.insert(k.clone());
                match v {
                    Some(v) => talents.insert(k.clone(), v.clone()),
                    None => talents.remove(k),
                };
            }
        }
    }
    keys.into_iter()
        .map(|k| {
            let left = movies.get(&k).map(|(title, year)| movie_value(&k, title, *year));
            let right = talents.get(&k).map(|names| talent_value(&k, names));
            let joined = match (left, right, kind) {
                (Some(l), Some(r), _) => {
                    Some(Value::Record(vec![("movies".into(), l), ("talents".into(), Value::Union(1, Box::new(r)))]))
                }
                (Some(l), None, Kind::Left) => Some(Value::Record(vec![
                    ("movies".into(), l),
                    ("talents".into(), Value::Union(0, Box::new(Value::Null))),
                ])),
                _ => None,
            };
            (k, joined)
        })
        .collect()
}

pub(crate) struct JoinSetup {
    pub dir: tempfile::TempDir,
    pub pipeline: PathBuf,
    pub group: String,
    pub movies: String,
    pub talents: String,
    pub output: String,
}

fn setup(events: &[Event], kind: Kind) -> JoinSetup {
    setup_with(events, kind, 3, "")
}

/// Topics of `partitions` partitions holding `events`, and the join's pipeline file, with
/// `kafka_section` (e.g. `kafka:\n  properties: {...}\n`) added.
pub(crate) fn setup_with(events: &[Event], kind: Kind, partitions: i32, kafka_section: &str) -> JoinSetup {
    let movies = unique("join-movies");
    let talents = unique("join-talents");
    let output = unique("join-out");
    create_topic(&movies, partitions);
    create_topic(&talents, partitions);
    create_topic(&output, partitions);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("movie.avsc"), MOVIE).unwrap();
    std::fs::write(dir.path().join("talent.avsc"), TALENT).unwrap();
    let name = unique("join");
    let kind = if kind == Kind::Inner { "inner" } else { "left" };
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {name}\n{kafka_section}state_dir: ./state\nsources:\n  movies:\n    topic: {movies}\n    format: avro\n    schema: movie.avsc\n  talents:\n    topic: {talents}\n    format: avro\n    schema: talent.avsc\nprocessors:\n  enriched:\n    uses: mesh/join@0.1\n    inputs: [movies, talents]\n    with:\n      left_key: id\n      right_key: movie_id\n      kind: {kind}\nsinks:\n  out:\n    topic: {output}\n    format: avro\n    inputs: [enriched]\n"
        ),
    )
    .unwrap();
    let setup = JoinSetup { dir, pipeline, group: format!("meshhost-{name}"), movies, talents, output };
    produce_events(&setup, events);
    setup
}

/// Write `events` to the movies and talents topics.
pub(crate) fn produce_events(setup: &JoinSetup, events: &[Event]) {
    let mut movie_records = Vec::new();
    let mut talent_records = Vec::new();
    for event in events {
        match event {
            Event::Movie(k, v) => movie_records
                .push((Some(k.clone().into_bytes()), v.as_ref().map(|(t, y)| encode(MOVIE, movie_value(k, t, *y))))),
            Event::Talent(k, v) => talent_records
                .push((Some(k.clone().into_bytes()), v.as_ref().map(|n| encode(TALENT, talent_value(k, n))))),
        }
    }
    produce(&setup.movies, &movie_records);
    produce(&setup.talents, &talent_records);
}

/// The output topic read as a changelog: the last value per key (None for a tombstone).
pub(crate) fn changelog(topic: &str) -> BTreeMap<String, Option<Value>> {
    let schema = joined_schema();
    let mut last = BTreeMap::new();
    let mut records = read(topic, usize::MAX, Duration::from_secs(3));
    records.sort_by_key(|r| r.partition); // offsets are in order within each partition already
    for record in records {
        let key = String::from_utf8(record.key.unwrap()).unwrap();
        last.insert(key, record.value.map(|v| crate::movies::decode(&schema, &v)));
    }
    last
}

pub(crate) fn wait_for_commits(group: &str, topics: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = topics.iter().all(|topic| {
            let end = end_offsets(topic);
            let committed = committed_offsets(group, topic);
            end.iter().all(|(p, o)| committed.get(p) == Some(o))
        });
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "offsets were not all committed within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn assert_join(actual: &BTreeMap<String, Option<Value>>, expected: &BTreeMap<String, Option<Value>>) {
    let mut wrong = Vec::new();
    for (key, want) in expected {
        let got = actual.get(key).cloned().flatten();
        if &got != want {
            wrong.push(format!("{key}: expected {want:?}, got {got:?}"));
        }
    }
    for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
        wrong.push(format!("{key}: unexpected key"));
    }
    assert!(
        wrong.is_empty(),
        "{} keys differ, e.g.:\n{}",
        wrong.len(),
        wrong.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
}

fn run_join(kind: Kind) {
    let events = events(120);
    let setup = setup(&events, kind);
    let listen = add_metrics_listener(&setup.pipeline);
    let run = start_run(&setup.pipeline);
    wait_for_commits(&setup.group, &[&setup.movies, &setup.talents]);
    // The join's store is reported (every 2 s) with its key count.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let metrics =
            ureq::get(&format!("http://{listen}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
        let keys = metrics
            .lines()
            .find(|l| l.starts_with("meshhost_state_keys{") && l.contains("component_id=\"enriched\""))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
        if keys.is_some_and(|k| k > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "no state_keys for the join:\n{metrics}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_clean_exit(&run.stop());
    assert_join(&changelog(&setup.output), &reference(&events, kind));
}

#[test]
fn inner_join_matches_a_reference_join() {
    run_join(Kind::Inner);
}

#[test]
fn left_join_matches_a_reference_join() {
    run_join(Kind::Left);
}

#[test]
fn state_survives_sigkill_and_the_loss_of_the_local_store() {
    let events = events(3000);
    let setup = setup(&events, Kind::Inner);
    let state_dir: &Path = &setup.dir.path().join("state");

    let run = start_run(&setup.pipeline);
    let some = read(&setup.output, 300, Duration::from_secs(60));
    assert!(some.len() >= 300, "the first run produced too little before the kill");
    run.kill();
    assert!(state_dir.exists(), "the first run kept local state in {}", state_dir.display());
    std::fs::remove_dir_all(state_dir).unwrap();

    let listen = add_metrics_listener(&setup.pipeline);
    let run = start_run(&setup.pipeline);
    // Ready only once the state is restored (and partitions assigned).
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(&format!("http://{listen}/ready")).call().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = ureq::get(&format!("http://{listen}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    wait_for_commits(&setup.group, &[&setup.movies, &setup.talents]);
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    assert!(stopped.log.contains("restored state from the changelog"), "log:\n{}", stopped.log);
    // The restore is reported in /metrics with the records the log counts.
    let logged: u64 = stopped
        .log
        .lines()
        .filter(|l| l.contains("restored state from the changelog"))
        .filter_map(|l| l.split("changelog_records=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    let reported = metrics
        .lines()
        .find(|l| l.starts_with("meshhost_state_restored_records{") && l.contains("component_id=\"enriched\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(logged > 0);
    assert_eq!(reported, Some(logged), "{metrics}\nlog:\n{}", stopped.log);
    let restored_keys: usize = stopped
        .log
        .lines()
        .filter(|l| l.contains("restored state from the changelog"))
        .filter_map(|l| l.split("keys=").nth(1)?.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert!(restored_keys > 0, "the restore is logged with a count of keys:\n{}", stopped.log);
    assert_join(&changelog(&setup.output), &reference(&events, Kind::Inner));

    // A clean restart reuses the local store instead of restoring again.
    let run = start_run(&setup.pipeline);
    std::thread::sleep(Duration::from_secs(2));
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    assert!(stopped.log.contains("local state is up to date with the changelog"), "log:\n{}", stopped.log);
}

#[test]
fn validate_refuses_bad_join_keys_and_mismatched_partitions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("movie.avsc"), MOVIE).unwrap();
    std::fs::write(dir.path().join("talent.avsc"), TALENT).unwrap();
    std::fs::write(
        dir.path().join("talent-long.avsc"),
        TALENT.replace(r#"{"name": "movie_id", "type": "string"}"#, r#"{"name": "movie_id", "type": "long"}"#),
    )
    .unwrap();
    let pipeline = |talent_schema: &str, left_key: &str, movies: &str, talents: &str| -> PathBuf {
        let path = dir.path().join("pipeline.yaml");
        std::fs::write(&path, format!(
            "name: j\nsources:\n  movies:\n    topic: {movies}\n    format: avro\n    schema: movie.avsc\n  talents:\n    topic: {talents}\n    format: avro\n    schema: {talent_schema}\nprocessors:\n  enriched:\n    uses: mesh/join@0.1\n    inputs: [movies, talents]\n    with:\n      left_key: {left_key}\n      right_key: movie_id\nsinks:\n  out:\n    topic: out\n    format: avro\n    inputs: [enriched]\n"
        )).unwrap();
        path
    };
    let validate = |path: &Path, extra: &[&str]| {
        let output = std::process::Command::new(MESHHOST)
            .arg("validate")
            .arg(path)
            .args(extra)
            .env_remove("MESHHOST_BOOTSTRAP_SERVERS")
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };

    let (code, stderr) = validate(&pipeline("talent.avsc", "movie", "m", "t"), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("processors.enriched.with.left_key: no field \"movie\""), "{stderr}");
    let (code, stderr) = validate(&pipeline("talent-long.avsc", "id", "m", "t"), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("processors.enriched.with.right_key: join key types differ"), "{stderr}");

    let movies = unique("join-p3");
    let talents = unique("join-p2");
    create_topic(&movies, 3);
    create_topic(&talents, 2);
    let path = pipeline("talent.avsc", "id", &movies, &talents);
    let (code, stderr) = validate(&path, &["--bootstrap-servers", broker()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "processors.enriched.inputs: inputs have different partition counts ({movies} has 3, {talents} has 2)"
        )),
        "{stderr}"
    );
    // Offline, the same file is valid as far as can be told, and says what it did not check.
    let (code, stderr) = validate(&path, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("partition counts of stateful processors' inputs not checked"), "{stderr}");
}

/// A self-join: one topic read as two sources whose records share the named type `join.Movie`.
/// Each movie joins with itself; a tombstone retracts it.
#[test]
fn a_self_join_reads_one_topic_as_both_inputs() {
    let movies = unique("self-join-movies");
    let output = unique("self-join-out");
    create_topic(&movies, 3);
    create_topic(&output, 3);
    let mut records = Vec::new();
    for k in 0..30 {
        let id = format!("m-{k}");
        records
            .push((Some(id.clone().into_bytes()), Some(encode(MOVIE, movie_value(&id, &format!("Title {k}"), 1990)))));
    }
    for k in 0..10 {
        let id = format!("m-{k}");
        records
            .push((Some(id.clone().into_bytes()), Some(encode(MOVIE, movie_value(&id, &format!("Sequel {k}"), 2000)))));
    }
    for k in 25..30 {
        records.push((Some(format!("m-{k}").into_bytes()), None));
    }
    produce(&movies, &records);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("movie.avsc"), MOVIE).unwrap();
    let name = unique("self-join");
    let pipeline = dir.path().join("pipeline.yaml");
    std::fs::write(
        &pipeline,
        format!(
            "name: {name}\nstate_dir: ./state\nsources:\n  movies:\n    topic: {movies}\n    format: avro\n    schema: movie.avsc\n  sequels:\n    topic: {movies}\n    format: avro\n    schema: movie.avsc\nprocessors:\n  pairs:\n    uses: mesh/join@0.1\n    inputs: [movies, sequels]\n    with:\n      left_key: id\n      right_key: id\nsinks:\n  out:\n    topic: {output}\n    format: avro\n    inputs: [pairs]\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = validate(&pipeline);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("sequels: join.Movie or null"), "the second input refers to the shared type: {stdout}");

    let run = start_run(&pipeline);
    wait_for_commits(&format!("meshhost-{name}"), &[&movies]);
    assert_clean_exit(&run.stop());

    let schema = r#"{"type": "record", "name": "Joined", "fields": [
      {"name": "movies", "type": {"type": "record", "name": "Movie", "namespace": "join", "fields": [
        {"name": "id", "type": "string"}, {"name": "title", "type": "string"}, {"name": "year", "type": "int"}]}},
      {"name": "sequels", "type": ["null", "join.Movie"]}]}"#;
    let mut last = BTreeMap::new();
    let mut records = read(&output, usize::MAX, Duration::from_secs(3));
    records.sort_by_key(|r| r.partition); // offsets are in order within each partition already
    for record in records {
        let key = String::from_utf8(record.key.unwrap()).unwrap();
        last.insert(key, record.value.map(|v| crate::movies::decode(schema, &v)));
    }
    let expected: BTreeMap<String, Option<Value>> = (0..30)
        .map(|k| {
            let id = format!("m-{k}");
            let movie = match k {
                0..10 => Some(movie_value(&id, &format!("Sequel {k}"), 2000)),
                25..30 => None,
                _ => Some(movie_value(&id, &format!("Title {k}"), 1990)),
            };
            let joined = movie.map(|m| {
                Value::Record(vec![("movies".into(), m.clone()), ("sequels".into(), Value::Union(1, Box::new(m)))])
            });
            (id, joined)
        })
        .collect();
    assert_join(&last, &expected);
}
