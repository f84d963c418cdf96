//! The Data Mesh example as one pipeline: a movie entity captured from the movies database,
//! left-joined with the talents another team publishes on a Kafka topic (written by Python's
//! confluent-kafka producer, placing keys with its own partitioner), into a Kafka sink. The
//! output's final join table must equal the join computed from the table and the topic
//! themselves, through inserts, updates and deletes on both sides and a SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::cdc::{database, table_name};
use crate::support::*;

const TALENT: &str = r#"{"type": "record", "name": "Talent", "fields": [
    {"name": "movie_id", "type": "string"}, {"name": "names", "type": {"type": "array", "items": "string"}}]}"#;

/// A synopsis long enough to be stored out of line (the column's storage is EXTERNAL: no
/// compression), so that updates of other columns leave it out of the change.
fn synopsis(id: &str, version: u32) -> String {
    format!("{id} v{version} ").repeat(600)
}

/// Produce talents with Python's confluent-kafka (`partitioner`: librdkafka's name, `None` for
/// its default); `None` values are tombstones. Returns where the producer put each key.
fn produce_talents(
    dir: &PipelineDir,
    topic: &str,
    partitioner: Option<&str>,
    talents: &[(&str, Option<&[&str]>)],
) -> BTreeMap<String, i64> {
    let lines: Vec<Json> = talents
        .iter()
        .map(|(id, names)| json!({"key": id, "value": names.map(|names| json!({"movie_id": id, "names": names}))}))
        .collect();
    let file = jsonl(dir, &unique("talents"), &lines);
    let mut args = vec!["produce-keyed", broker(), topic, file.as_str()];
    if let Some(partitioner) = partitioner {
        args.extend(["--partitioner", partitioner]);
    }
    let produced = python_json(&args);
    assert_eq!(produced["produced"], talents.len(), "{produced}");
    produced["partitions"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_i64().unwrap())).collect()
}

/// The latest value per key of a topic's JSON records (a tombstone removes the key).
fn latest(records: &[TestRecord]) -> BTreeMap<String, Json> {
    let mut latest = BTreeMap::new();
    for record in records {
        let key = String::from_utf8(record.key.clone().expect("keyed")).unwrap();
        match &record.value {
            None => latest.remove(&key),
            Some(value) => latest.insert(key, serde_json::from_slice(value).expect("a JSON value")),
        };
    }
    latest
}

/// The left join of the table and the topic, computed from them directly.
fn expected_join(url: &str, movies: &str, talents_topic: &str) -> BTreeMap<String, Json> {
    let rows = psql(url, &format!("SELECT row_to_json(m) FROM (SELECT id, title, synopsis, year FROM {movies}) m"));
    let talents = latest(&read(talents_topic, usize::MAX, Duration::from_secs(2)));
    rows.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let movie: Json = serde_json::from_str(line).unwrap();
            let id = movie["id"].as_str().unwrap().to_string();
            let talent = talents.get(&id).cloned().unwrap_or(Json::Null);
            (id, json!({"movies": movie, "talents": talent}))
        })
        .collect()
}

/// Read the output until its latest rows equal the independent join (or 90 s pass).
fn wait_for_join(url: &str, movies: &str, talents: &str, out: &str, running: &Running) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let expected = expected_join(url, movies, talents);
        let got = latest(&read(out, usize::MAX, Duration::from_secs(2)));
        if got == expected {
            return;
        }
        if Instant::now() > deadline {
            let differ: Vec<&String> =
                expected.keys().chain(got.keys()).filter(|k| expected.get(*k) != got.get(*k)).collect();
            panic!(
                "the output's join differs from the table ⋈ topic at keys {differ:?}\nexpected {}\ngot {}\nlog:\n{}",
                expected.len(),
                got.len(),
                running.log_so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The example's table (24 movies with out-of-line synopses), talents topic (6 partitions, 20
/// talents and one for a movie that does not exist, produced by Python with
/// `python_partitioner`), output and dead-letter topics, and pipeline file.
struct Example {
    url: String,
    movies: String,
    talents: String,
    out: String,
    dir: PipelineDir,
    pipeline: std::path::PathBuf,
    python_partitioner: Option<&'static str>,
}

impl Example {
    fn new(python_partitioner: Option<&'static str>, pipeline_partitioner: Option<&str>, kafka: &str) -> Example {
        let url = database();
        let movies = table_name("movies");
        psql(
            &url,
            &format!(
                "CREATE TABLE {movies} (id text PRIMARY KEY, title text NOT NULL, synopsis text, year int NOT NULL);
                 ALTER TABLE {movies} ALTER COLUMN synopsis SET STORAGE EXTERNAL;"
            ),
        );
        let mut inserts = Vec::new();
        for n in 1..=24 {
            let id = format!("m{n}");
            inserts.push(format!("('{id}', 'Movie {n}', '{}', {})", synopsis(&id, 0), 1990 + n));
        }
        psql(&url, &format!("INSERT INTO {movies} VALUES {}", inserts.join(", ")));
        let talents = unique("talents");
        create_topic(&talents, 6);
        let out = unique("movies-talents");
        create_topic(&out, 3);
        create_topic(&format!("{out}-dlq"), 1);
        let dir = PipelineDir::new();
        dir.write("talent.avsc", TALENT);
        let partitioner = pipeline_partitioner.map(|p| format!(", partitioner: {p}")).unwrap_or_default();
        let pipeline = dir.write(
            "pipeline.yaml",
            &format!(
                "name: {name}
{kafka}state_dir: state
sources:
  movies:
    postgres: {{url: '{url}', table: {movies}{partitioner}}}
  talents:
    topic: {talents}
    format: json
    schema: talent.avsc
processors:
  enriched:
    uses: mesh/join@0.1
    inputs: [movies, talents]
    with: {{left_key: id, right_key: movie_id, kind: left}}
sinks:
  out: {{topic: {out}, format: json, inputs: [enriched]}}
dead_letter:
  topic: {out}-dlq
",
                name = unique("mesh")
            ),
        );
        let example = Example { url, movies, talents, out, dir, pipeline, python_partitioner };
        let names = ["Ada", "Grace"];
        let mut first: Vec<(String, Option<&[&str]>)> = (1..=20).map(|n| (format!("m{n}"), Some(&names[..]))).collect();
        first.push(("m99".into(), Some(&names[..1])));
        let first: Vec<(&str, Option<&[&str]>)> = first.iter().map(|(id, n)| (id.as_str(), *n)).collect();
        let placed = example.produce_talents(&first);
        let used: BTreeSet<i64> = placed.values().copied().collect();
        assert!(used.len() >= 4, "keys spread over the topic's partitions: {placed:?}");
        example
    }

    fn produce_talents(&self, talents: &[(&str, Option<&[&str]>)]) -> BTreeMap<String, i64> {
        produce_talents(&self.dir, &self.talents, self.python_partitioner, talents)
    }

    fn sql(&self, statements: &str) {
        psql(&self.url, &statements.replace("{movies}", &self.movies));
    }

    fn wait_for_join(&self, running: &Running) {
        wait_for_join(&self.url, &self.movies, &self.talents, &self.out, running);
    }

    fn assert_no_dead_letters(&self, running: &Running) {
        let dead_letters = read(&format!("{}-dlq", self.out), 1, Duration::from_secs(1));
        assert!(dead_letters.is_empty(), "{dead_letters:?}\n{}", running.log_so_far());
    }
}

/// Changes on both sides: an update of the title only (the synopsis is left out of the change
/// and read back), a synopsis update, deletes, inserts; talents replaced and deleted.
fn change_both_sides(example: &Example) {
    example.sql(&format!(
        "UPDATE {{movies}} SET title = 'Movie 1 (restored)' WHERE id = 'm1';
         UPDATE {{movies}} SET synopsis = '{}' WHERE id = 'm2';
         DELETE FROM {{movies}} WHERE id IN ('m3', 'm21');
         INSERT INTO {{movies}} VALUES ('m25', 'Movie 25', NULL, 2025);",
        synopsis("m2", 1)
    ));
    example.produce_talents(&[("m4", Some(&["Hedy"][..])), ("m5", None), ("m25", Some(&["Katherine", "Dorothy"][..]))]);
}

/// The example end to end: `python_partitioner` is how the talents' producer places keys,
/// `pipeline_partitioner` what the pipeline says it does.
fn movies_join_talents(python_partitioner: Option<&'static str>, pipeline_partitioner: Option<&str>) {
    let example = Example::new(python_partitioner, pipeline_partitioner, "");
    let running = start_run(&example.pipeline);
    example.wait_for_join(&running);
    assert!(running.log_so_far().contains(CAPTURING), "{}", running.log_so_far());
    change_both_sides(&example);
    example.wait_for_join(&running);
    example.assert_no_dead_letters(&running);

    // SIGKILL mid-stream: changes go on meanwhile, the restart picks them up.
    example.sql("UPDATE {movies} SET year = year + 100 WHERE id IN ('m6', 'm7', 'm8')");
    running.kill();
    example.sql("UPDATE {movies} SET title = 'Movie 9 (cut)' WHERE id = 'm9'; DELETE FROM {movies} WHERE id = 'm10'");
    example.produce_talents(&[("m6", Some(&["Alan"][..])), ("m11", None)]);
    let running = start_run(&example.pipeline);
    example.wait_for_join(&running);
    example.assert_no_dead_letters(&running);
    assert_clean_exit(&running.stop());
}

/// The Data Mesh example delivered where the data is used: the join into `movies_enriched`
/// of another database (upserts keyed by the movie id, the record key), read back with `psql`
/// and compared with the join computed from the table and the topic, through changes on both
/// sides and a SIGKILL.
#[test]
fn movies_join_talents_into_a_table_of_another_database() {
    let fast_group = "kafka:\n  properties: {session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\"}\n";
    let example = Example::new(Some("murmur2_random"), None, fast_group);
    let database = table_name("enriched");
    psql(&example.url, &format!("CREATE DATABASE {database}"));
    let target = example.url.rsplit_once('/').map(|(server, _)| format!("{server}/{database}")).unwrap();
    let text = std::fs::read_to_string(&example.pipeline).unwrap().replace(
        &format!("  out: {{topic: {}, format: json, inputs: [enriched]}}", example.out),
        &format!("  out:\n    postgres: {{url: '{target}', table: movies_enriched, key: [id], create: true}}\n    inputs: [enriched]"),
    );
    let pipeline = example.dir.write("to-postgres.yaml", &text);
    let wait_for_table = |running: &Running| {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let expected = expected_join(&example.url, &example.movies, &example.talents);
            let rows = std::process::Command::new("psql")
                .args(["-X", "-q", "-A", "-t", &target, "-c"])
                .arg("SELECT id, json_build_object('movies', movies, 'talents', talents) FROM movies_enriched")
                .env("PGPASSWORD", POSTGRES_PASSWORD)
                .output()
                .expect("run psql");
            let got: BTreeMap<String, Json> = String::from_utf8_lossy(&rows.stdout)
                .lines()
                .filter_map(|line| line.split_once('|'))
                .map(|(id, row)| (id.to_string(), serde_json::from_str(row).unwrap()))
                .collect();
            if got == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "movies_enriched differs from the table ⋈ topic at {:?}\nlog:\n{}",
                expected.keys().chain(got.keys()).filter(|k| expected.get(*k) != got.get(*k)).collect::<Vec<_>>(),
                running.log_so_far()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let running = start_run(&pipeline);
    wait_for_table(&running);
    change_both_sides(&example);
    wait_for_table(&running);
    example.sql("UPDATE {movies} SET year = year + 100 WHERE id IN ('m6', 'm7', 'm8')");
    running.kill();
    example.sql("UPDATE {movies} SET title = 'Movie 9 (cut)' WHERE id = 'm9'; DELETE FROM {movies} WHERE id = 'm10'");
    example.produce_talents(&[("m6", Some(&["Alan"][..])), ("m11", None)]);
    let running = start_run(&pipeline);
    wait_for_table(&running);
    example.assert_no_dead_letters(&running);
    assert_clean_exit(&running.stop());
}

/// What the instance that captures the tables logs when it starts to, and stops.
const CAPTURING: &str = "capturing the pipeline's tables on this instance";
const NO_LONGER: &str = "no longer the capturing instance";

/// Whether `running` holds the capture now (by its log).
fn captures(running: &Running) -> bool {
    let log = running.log_so_far();
    log.matches(CAPTURING).count() > log.matches(NO_LONGER).count()
}

#[test]
fn movies_captured_from_postgres_join_talents_placed_by_the_java_partitioner() {
    movies_join_talents(Some("murmur2_random"), None);
}

#[test]
fn movies_captured_from_postgres_join_talents_placed_by_librdkafkas_default() {
    movies_join_talents(None, Some("consistent"));
}

#[test]
fn two_instances_capture_once_and_the_survivor_takes_the_capture_over() {
    let fast_group = "kafka:\n  properties: {session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\"}\n";
    let example = Example::new(Some("murmur2_random"), None, fast_group);
    let state = |name: &str| example.pipeline.parent().unwrap().join(name).display().to_string();
    let (state_a, state_b) = (state("a"), state("b"));
    let a = start_run_with(&example.pipeline, &["--state-dir", &state_a]);
    let b = start_run_with(&example.pipeline, &["--state-dir", &state_b]);
    let settled = |a: &Running, b: &Running| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Exactly one instance captures (Postgres would refuse a second reader of the slot
            // anyway: the run would stop with "in use").
            match (captures(a), captures(b)) {
                (true, false) | (false, true) => return,
                _ if Instant::now() > deadline => {
                    panic!("no single capturing instance:\na:\n{}\nb:\n{}", a.log_so_far(), b.log_so_far())
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    };
    settled(&a, &b);
    example.wait_for_join(&a);
    change_both_sides(&example);
    example.wait_for_join(&a);
    settled(&a, &b);
    for running in [&a, &b] {
        assert!(running.log_so_far().contains("partitions assigned"), "{}", running.log_so_far());
    }

    // SIGKILL the capturing instance mid-stream; the other takes the capture over.
    let (leader, survivor) = if captures(&a) { (a, b) } else { (b, a) };
    example.sql("UPDATE {movies} SET year = year + 100 WHERE id IN ('m6', 'm7', 'm8')");
    leader.kill();
    let killed = Instant::now();
    example.sql("UPDATE {movies} SET title = 'Movie 9 (cut)' WHERE id = 'm9'; DELETE FROM {movies} WHERE id = 'm10'");
    example.produce_talents(&[("m6", Some(&["Alan"][..])), ("m11", None)]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !captures(&survivor) {
        assert!(Instant::now() < deadline, "the capture was not taken over:\n{}", survivor.log_so_far());
        std::thread::sleep(Duration::from_millis(100));
    }
    let took_over = killed.elapsed();
    example.wait_for_join(&survivor);
    let caught_up = killed.elapsed();
    println!(
        "capture takeover after SIGKILL: capturing again after {:.1} s, join table right again after {:.1} s (session.timeout.ms 6000)",
        took_over.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    example.assert_no_dead_letters(&survivor);
    assert_clean_exit(&survivor.stop());
}
