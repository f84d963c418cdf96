//! Change data capture from Postgres: a real Postgres (`scripts/postgres.sh`, written to with
//! `psql`), the real broker, the real `meshhost run`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::support::*;

/// The test Postgres's URL with the password in it.
pub fn database() -> String {
    postgres().replace("meshhost@", &format!("meshhost:{POSTGRES_PASSWORD}@"))
}

/// A table name no other test uses (Postgres folds names to lower case).
pub fn table_name(prefix: &str) -> String {
    unique(prefix).replace('-', "_").to_lowercase()
}

/// A pipeline capturing `table` (envelope `envelope`) straight into a JSON sink topic; the
/// pipeline file, and the sink topic.
fn capture_pipeline(dir: &PipelineDir, url: &str, table: &str, envelope: &str) -> (std::path::PathBuf, String) {
    let out = unique("cdc-out");
    create_topic(&out, 1);
    let name = unique("cdc");
    let text = format!(
        "name: {name}\nstate_dir: state\nsources:\n  rows:\n    postgres:\n      url: {url}\n      table: public.{table}\n      envelope: {envelope}\nsinks:\n  out:\n    topic: {out}\n    format: json\n    inputs: [rows]\n"
    );
    (dir.write("pipeline.yaml", &text), out)
}

/// The records of `topic` as (key, JSON value or null, op header).
fn changes(records: &[TestRecord]) -> Vec<(Option<String>, Json, String)> {
    records
        .iter()
        .map(|r| {
            let key = r.key.as_ref().map(|k| String::from_utf8(k.clone()).unwrap());
            let value = r.value.as_ref().map_or(Json::Null, |v| serde_json::from_slice(v).expect("a JSON value"));
            (key, value, r.header("meshhost.cdc.op").unwrap_or_default())
        })
        .collect()
}

/// Wait until the log says the reader streams (the snapshot was read).
fn wait_for_streaming(running: &Running) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running.log_so_far().contains("streaming changes") {
        assert!(Instant::now() < deadline, "the table was not streamed; log:\n{}", running.log_so_far());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Read `topic` until the latest value per key equals `expected` (or a minute passes).
fn wait_for_table(topic: &str, expected: &BTreeMap<String, Json>) -> Vec<TestRecord> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let records = read(topic, usize::MAX, Duration::from_secs(2));
        let latest = latest_rows(&records);
        if &latest == expected || Instant::now() > deadline {
            assert_eq!(&latest, expected, "the topic's latest rows differ from the table");
            return records;
        }
    }
}

/// The latest value per key (a tombstone removes the key).
fn latest_rows(records: &[TestRecord]) -> BTreeMap<String, Json> {
    let mut latest = BTreeMap::new();
    for (key, value, _) in changes(records) {
        let key = key.expect("captured records are keyed");
        if value.is_null() {
            latest.remove(&key);
        } else {
            latest.insert(key, value);
        }
    }
    latest
}

/// `SELECT` rows as `key -> {columns}` (each row rendered by Postgres as JSON).
fn table_rows(url: &str, sql: &str, key: &str) -> BTreeMap<String, Json> {
    psql(url, &format!("SELECT row_to_json(t) FROM ({sql}) t"))
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let row: Json = serde_json::from_str(line).unwrap();
            let key = match &row[key] {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            (key, row)
        })
        .collect()
}

#[test]
fn a_snapshot_taken_while_another_connection_writes_misses_no_change() {
    let url = database();
    let table = table_name("snap");
    psql(
        &url,
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL, note text) WITH (autovacuum_enabled = off);
             ALTER TABLE {table} REPLICA IDENTITY FULL;
             INSERT INTO {table} SELECT i, 0, 'row ' || i FROM generate_series(1, 5000) i;"
        ),
    );
    let dir = PipelineDir::new();
    let (pipeline, out) = capture_pipeline(&dir, &url, &table, "row");
    // The writer: inserts, updates and deletes, each its own transaction, while the snapshot is read.
    let writes: String = (0..300)
        .map(|i| match i % 3 {
            0 => format!("SELECT pg_sleep(0.05);\nINSERT INTO {table} VALUES ({}, 1, 'new');\n", 5001 + i),
            1 => format!("UPDATE {table} SET n = n + 1, note = 'updated' WHERE id % 50 = {};\n", i % 50),
            _ => format!("DELETE FROM {table} WHERE id = {};\n", 1 + i * 7),
        })
        .collect();
    let script = dir.write("writes.sql", &writes);
    let running = start_run(&pipeline);
    let writer = {
        let url = url.clone();
        std::thread::spawn(move || psql_file(&url, &script))
    };
    writer.join().unwrap();
    let expected = table_rows(&url, &format!("SELECT id, n, note FROM {table}"), "id");
    let records = wait_for_table(&out, &expected);
    let snapshot_rows = changes(&records).iter().filter(|(_, _, op)| op == "r").count();
    assert!(snapshot_rows > 0, "no snapshot rows");
    assert_clean_exit(&running.stop());
    eprintln!("snapshot: {snapshot_rows} rows read, {} records in all", records.len());
}

#[test]
fn inserts_updates_deletes_and_truncates_in_both_envelopes() {
    let url = database();
    let table = table_name("ops");
    psql(
        &url,
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, title text NOT NULL, year int);
             ALTER TABLE {table} REPLICA IDENTITY FULL;
             INSERT INTO {table} VALUES (1, 'Alien', 1979);"
        ),
    );
    let dir = PipelineDir::new();
    let (row_out, debezium_out) = (unique("cdc-row"), unique("cdc-debezium"));
    create_topic(&row_out, 1);
    create_topic(&debezium_out, 1);
    let name = unique("cdc");
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            "name: {name}
state_dir: state
sources:
  rows:
    postgres: {{url: '{url}', table: {table}}}
  events:
    postgres: {{url: '{url}', table: {table}, envelope: debezium}}
sinks:
  row_out: {{topic: {row_out}, format: json, inputs: [rows]}}
  debezium_out: {{topic: {debezium_out}, format: json, inputs: [events]}}
"
        ),
    );
    let running = start_run(&pipeline);
    wait_for_streaming(&running);
    std::thread::sleep(Duration::from_millis(500));
    psql(&url, &format!("INSERT INTO {table} VALUES (2, 'Heat', 1995)"));
    psql(&url, &format!("UPDATE {table} SET year = 1980 WHERE id = 1"));
    psql(&url, &format!("DELETE FROM {table} WHERE id = 2"));
    psql(&url, &format!("TRUNCATE {table}"));

    let alien = json!({"id": 1, "title": "Alien", "year": 1979});
    let alien_1980 = json!({"id": 1, "title": "Alien", "year": 1980});
    let heat = json!({"id": 2, "title": "Heat", "year": 1995});
    let rows = changes(&read_all(&row_out, 4, Duration::from_secs(60)));
    assert_eq!(
        rows,
        vec![
            (Some("1".into()), alien.clone(), "r".into()),
            (Some("2".into()), heat.clone(), "c".into()),
            (Some("1".into()), alien_1980.clone(), "u".into()),
            (Some("2".into()), Json::Null, "d".into()),
        ],
        "the row envelope: a delete is a tombstone, a truncate has no record"
    );

    let events = changes(&read_all(&debezium_out, 5, Duration::from_secs(60)));
    let summary: Vec<(Option<String>, String, Json, Json)> = events
        .iter()
        .map(|(key, value, op)| {
            assert_eq!(&value["op"], &json!(op), "the op header matches the envelope's op");
            (key.clone(), op.clone(), value["before"].clone(), value["after"].clone())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (Some("1".into()), "r".into(), Json::Null, alien.clone()),
            (Some("2".into()), "c".into(), Json::Null, heat.clone()),
            (Some("1".into()), "u".into(), alien.clone(), alien_1980.clone()),
            (Some("2".into()), "d".into(), heat.clone(), Json::Null),
            (None, "t".into(), Json::Null, Json::Null),
        ]
    );
    let source = &events[2].1["source"];
    assert_eq!(source["connector"], "postgresql");
    assert_eq!(source["name"], "events");
    assert_eq!(
        (&source["db"], &source["schema"], &source["table"]),
        (&json!("meshhost"), &json!("public"), &json!(table))
    );
    assert_eq!(source["snapshot"], "false");
    assert!(source["txId"].as_i64().is_some_and(|x| x > 0), "{source}");
    assert!(source["lsn"].as_i64().is_some_and(|x| x > 0), "{source}");
    assert_eq!(events[0].1["source"]["snapshot"], "true");
    assert!(events[1].1["source"]["lsn"].as_i64() < events[2].1["source"]["lsn"].as_i64(), "positions grow");
    assert_clean_exit(&running.stop());
}

#[test]
fn every_mapped_type_round_trips_to_the_python_avro_deserializer() {
    let url = database();
    let table = table_name("types");
    let mood = format!("{table}_mood");
    psql(
        &url,
        &format!(
            "CREATE TYPE {mood} AS ENUM ('sad', 'ok', 'happy');
             CREATE TABLE {table} (
               id int PRIMARY KEY, b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
               num numeric(12, 3), numt numeric, t text, vc varchar(10), ch char(3), by bytea, d date, tm time,
               ts timestamp, tstz timestamptz, u uuid, j json, jb jsonb, e {mood}, ints int[], texts text[], moods {mood}[]);
             ALTER TABLE {table} REPLICA IDENTITY FULL;
             INSERT INTO {table} VALUES
               (1, true, -32768, 2147483647, -9223372036854775808, 3.5, 1e300, -123456789.125,
                3.14159265358979323846264338327950288, 'héllo 世界 🎬 \"q\"', 'abc', 'ab', '\\x00ff10', '9999-12-31',
                '23:59:59.999999', '2024-02-29 12:34:56.789012', '2024-02-29 12:34:56.789012+05:30',
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": [1, 2]}}', '{{\"b\":1}}', 'happy',
                '{{1,NULL,3}}', '{{\"a,b\",\"c\\\"d\",\"\"}}', '{{}}'),
               (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                NULL, NULL, NULL, NULL, NULL, NULL, NULL),
               (3, false, 0, -1, 9223372036854775807, -1.25, 2.5e-300, 0, '-0.000001', '', '', '', '\\x', '1900-01-01',
                '00:00:00', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999-01', '00000000-0000-0000-0000-000000000000',
                'null', '[]', 'sad', '{{}}', '{{}}', '{{ok,happy}}');"
        ),
    );
    let catalog = CatalogServer::start();
    let dir = PipelineDir::new();
    let out = unique("cdc-types");
    create_topic(&out, 1);
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            "name: {}
state_dir: state
schema_registry: {{url: '{}'}}
sources:
  rows:
    postgres: {{url: '{url}', table: {table}}}
sinks:
  out: {{topic: {out}, format: confluent-avro, inputs: [rows]}}
",
            unique("cdc"),
            catalog.url
        ),
    );
    let running = start_run(&pipeline);
    let (code, stdout, stderr) = python(&["consume", broker(), &catalog.url, &out, "--count", "3", "--timeout", "60"]);
    assert_eq!(code, 0, "{stderr}\nlog:\n{}", running.log_so_far());
    let rows = lines(&stdout);
    assert_eq!(
        rows[0],
        json!({
            "id": 1, "b": true, "i2": -32768, "i4": 2147483647, "i8": -9223372036854775808i64, "f4": 3.5, "f8": 1e300,
            "num": "-123456789.125", "numt": "3.14159265358979323846264338327950288", "t": "héllo 世界 🎬 \"q\"",
            "vc": "abc", "ch": "ab ", "by": "\u{0}\u{ff}\u{10}", "d": "9999-12-31", "tm": "23:59:59.999999",
            "ts": "2024-02-29T12:34:56.789012", "tstz": "2024-02-29T07:04:56.789012+00:00",
            "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "j": "{\"a\": [1, 2]}", "jb": "{\"b\": 1}", "e": "happy",
            "ints": [1, null, 3], "texts": ["a,b", "c\"d", ""], "moods": []
        })
    );
    let nulls: serde_json::Map<String, Json> =
        rows[1].as_object().unwrap().iter().filter(|(k, _)| *k != "id").map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(nulls.values().all(Json::is_null), "every NULL stays null: {nulls:?}");
    assert_eq!(nulls.len(), 23);
    let third = &rows[2];
    assert_eq!((&third["f4"], &third["f8"]), (&json!(-1.25), &json!(2.5e-300)));
    assert_eq!(
        (
            &third["num"],
            &third["numt"],
            &third["by"],
            &third["d"],
            &third["tstz"],
            &third["j"],
            &third["jb"],
            &third["moods"]
        ),
        (
            &json!("0.000"),
            &json!("-0.000001"),
            &json!(""),
            &json!("1900-01-01"),
            &json!("1970-01-01T00:59:59.999999+00:00"),
            &json!("null"),
            &json!("[]"),
            &json!(["ok", "happy"])
        )
    );
    assert_eq!(third["i8"], json!(9223372036854775807i64));
    assert_clean_exit(&running.stop());
}

#[test]
fn a_kill_during_20000_updates_loses_no_committed_change() {
    let url = database();
    let table = table_name("kill");
    psql(
        &url,
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL);
             INSERT INTO {table} SELECT i, 0 FROM generate_series(1, 100) i;"
        ),
    );
    let dir = PipelineDir::new();
    let (pipeline, out) = capture_pipeline(&dir, &url, &table, "row");
    // 20,000 updates, each its own transaction: row i % 100 + 1 counts up.
    let updates: String =
        (0..20_000).map(|i| format!("UPDATE {table} SET n = n + 1 WHERE id = {};\n", i % 100 + 1)).collect();
    let script = dir.write("updates.sql", &updates);
    let running = start_run(&pipeline);
    wait_for_streaming(&running);
    let writer = {
        let url = url.clone();
        std::thread::spawn(move || psql_file(&url, &script))
    };
    let mut running = Some(running);
    for pause in [1500, 2500] {
        std::thread::sleep(Duration::from_millis(pause));
        running.take().unwrap().kill();
        running = Some(start_run(&pipeline));
    }
    writer.join().unwrap();
    let expected = table_rows(&url, &format!("SELECT id, n FROM {table}"), "id");
    let records = wait_for_table(&out, &expected);
    assert_clean_exit(&running.take().unwrap().stop());
    // Every change is in the topic: each key's counts 0..=final, none missing.
    let mut seen: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (key, value, _) in changes(&records) {
        seen.entry(key.unwrap()).or_default().insert(value["n"].as_i64().unwrap());
    }
    for (key, row) in &expected {
        let last = row["n"].as_i64().unwrap();
        let missing: Vec<i64> = (0..=last).filter(|n| !seen[key].contains(n)).collect();
        assert!(missing.is_empty(), "key {key}: changes missing: {missing:?}");
    }
    let distinct: usize = seen.values().map(BTreeSet::len).sum();
    assert_eq!(distinct, 20_100, "the snapshot's 100 rows and 20,000 updates");
    eprintln!(
        "kill -9 twice during 20,000 updates: {} records, {} duplicates, 0 lost",
        records.len(),
        records.len() - distinct
    );
}

#[test]
fn a_postgres_restart_mid_run_is_ridden_out() {
    let server = OwnPostgres::start();
    let url = server.url.replace("meshhost@", &format!("meshhost:{POSTGRES_PASSWORD}@"));
    let table = table_name("restart");
    psql(
        &url,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL); INSERT INTO {table} VALUES (1, 0)"),
    );
    let dir = PipelineDir::new();
    let (pipeline, out) = capture_pipeline(&dir, &url, &table, "row");
    let running = start_run(&pipeline);
    wait_for_streaming(&running);
    psql(&url, &format!("INSERT INTO {table} VALUES (2, 0)"));
    server.restart();
    psql(&url, &format!("INSERT INTO {table} VALUES (3, 0); UPDATE {table} SET n = 5 WHERE id = 1"));
    let expected = table_rows(&url, &format!("SELECT id, n FROM {table}"), "id");
    wait_for_table(&out, &expected);
    assert_clean_exit(&running.stop());
}

fn run_to_exit(pipeline: &Path) -> Stopped {
    start_run(pipeline).wait_for_exit(Duration::from_secs(60))
}

#[test]
fn a_missing_slot_a_dropped_table_and_a_wrong_password_stop_with_what_to_fix() {
    let url = database();
    let table = table_name("gone");
    psql(
        &url,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL); INSERT INTO {table} VALUES (1, 0)"),
    );
    let dir = PipelineDir::new();
    let (pipeline, out) = capture_pipeline(&dir, &url, &table, "row");
    let running = start_run(&pipeline);
    wait_for_streaming(&running);
    assert_eq!(read(&out, 1, Duration::from_secs(30)).len(), 1);
    assert_clean_exit(&running.stop());

    // The slot is dropped while the pipeline is stopped.
    let slot = psql(&url, &format!("SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE '%{}%'", "cdc"));
    let name = std::fs::read_to_string(&pipeline).unwrap();
    let pipeline_name = name.lines().next().unwrap().trim_start_matches("name: ").replace('-', "_").to_lowercase();
    let slot_name = format!("meshhost_{pipeline_name}_rows");
    assert!(slot.contains(&slot_name), "{slot_name} not among {slot}");
    psql(&url, &format!("SELECT pg_drop_replication_slot('{slot_name}')"));
    let stopped = run_to_exit(&pipeline);
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(
        stopped.log.contains(&format!("replication slot {slot_name} does not exist"))
            && stopped.log.contains("remove")
            && stopped.log.contains(".snapshot"),
        "{}",
        stopped.log
    );

    // The table is dropped.
    psql(&url, &format!("DROP TABLE {table}"));
    let stopped = run_to_exit(&pipeline);
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(stopped.log.contains(&format!("table public.{table} does not exist")), "{}", stopped.log);

    // A wrong password; then the right one from the environment.
    let wrong = dir.write(
        "wrong.yaml",
        &std::fs::read_to_string(&pipeline).unwrap().replace(&format!(":{POSTGRES_PASSWORD}@"), ":wrong@"),
    );
    let stopped = run_to_exit(&wrong);
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(stopped.log.contains("refused the login of user \"meshhost\""), "{}", stopped.log);
    let from_env = dir.write(
        "env.yaml",
        &std::fs::read_to_string(&pipeline).unwrap().replace(&format!(":{POSTGRES_PASSWORD}@"), "@"),
    );
    psql(&url, &format!("CREATE TABLE {table} (id int PRIMARY KEY)"));
    let output = std::process::Command::new(MESHHOST)
        .args(["validate", from_env.to_str().unwrap()])
        .env("PGPASSWORD", POSTGRES_PASSWORD)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn validate_names_unmapped_columns_and_takes_out_of_line_columns_without_full_identity() {
    let url = database();
    let (points, toasty) = (table_name("point"), table_name("toast"));
    psql(
        &url,
        &format!(
            "CREATE TABLE {points} (id int PRIMARY KEY, at point);
             CREATE TABLE {toasty} (id int PRIMARY KEY, synopsis text);"
        ),
    );
    let dir = PipelineDir::new();
    let (pipeline, _) = capture_pipeline(&dir, &url, &points, "row");
    let (code, _, stderr) = validate(&pipeline);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("sources.rows.postgres: column at has type point, which meshhost does not map to Avro"),
        "{stderr}"
    );
    // A text column may be stored out of line; unchanged values are read back, so the default
    // replica identity is enough.
    let (pipeline, _) = capture_pipeline(&dir, &url, &toasty, "row");
    let (code, _, stderr) = validate(&pipeline);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_column_added_mid_stream_is_left_out_and_a_dropped_not_null_one_stops_the_run() {
    let url = database();
    let table = table_name("alter");
    psql(
        &url,
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, n int NOT NULL, m int); INSERT INTO {table} VALUES (1, 0, 0)"
        ),
    );
    let dir = PipelineDir::new();
    let (pipeline, out) = capture_pipeline(&dir, &url, &table, "row");
    let running = start_run(&pipeline);
    wait_for_streaming(&running);
    psql(&url, &format!("ALTER TABLE {table} ADD COLUMN extra int; INSERT INTO {table} VALUES (2, 1, 1, 99)"));
    psql(&url, &format!("UPDATE {table} SET n = 2 WHERE id = 1"));
    let rows = changes(&read(&out, 3, Duration::from_secs(60)));
    assert_eq!(
        rows.iter().map(|(_, v, _)| v.clone()).collect::<Vec<_>>(),
        vec![json!({"id": 1, "n": 0, "m": 0}), json!({"id": 2, "n": 1, "m": 1}), json!({"id": 1, "n": 2, "m": 0})]
    );
    assert!(
        running.log_so_far().contains("not carried until the pipeline is planned again"),
        "{}",
        running.log_so_far()
    );
    psql(&url, &format!("ALTER TABLE {table} DROP COLUMN n; INSERT INTO {table} VALUES (3, 3)"));
    let stopped = running.wait_for_exit(Duration::from_secs(60));
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(stopped.log.contains(&format!("table public.{table}: column n was dropped")), "{}", stopped.log);
    // Planned again, the pipeline goes on with the table's columns now: the change that stopped it is there.
    let running = start_run(&pipeline);
    let rows = changes(&read_all(&out, 4, Duration::from_secs(60)));
    assert_eq!(rows.last().unwrap().1, json!({"id": 3, "m": 3, "extra": null}), "{rows:?}");
    assert_clean_exit(&running.stop());
}

#[test]
fn two_captured_tables_joined_follow_updates_and_deletes() {
    let url = database();
    let (movies, talents) = (table_name("movies"), table_name("talents"));
    psql(
        &url,
        &format!(
            "CREATE TABLE {movies} (id text PRIMARY KEY, title text NOT NULL, year int NOT NULL);
             CREATE TABLE {talents} (movie_id text PRIMARY KEY, cast_names text[] NOT NULL);
             ALTER TABLE {movies} REPLICA IDENTITY FULL; ALTER TABLE {talents} REPLICA IDENTITY FULL;
             INSERT INTO {movies} VALUES ('m1', 'Inception', 2010), ('m2', 'Moonlight', 2016);
             INSERT INTO {talents} VALUES ('m1', '{{Leonardo DiCaprio}}');"
        ),
    );
    let dir = PipelineDir::new();
    let out = unique("cdc-join");
    create_topic(&out, 1);
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            "name: {}
state_dir: state
sources:
  movies:
    postgres: {{url: '{url}', table: {movies}}}
  talents:
    postgres: {{url: '{url}', table: {talents}}}
processors:
  enriched:
    uses: mesh/join@0.1
    inputs: [movies, talents]
    with: {{left_key: id, right_key: movie_id, kind: inner}}
sinks:
  out: {{topic: {out}, format: json, inputs: [enriched]}}
",
            unique("cdc")
        ),
    );
    let running = start_run(&pipeline);
    let first = read(&out, 1, Duration::from_secs(60));
    assert_eq!(first.len(), 1, "{}", running.log_so_far());
    psql(&url, &format!("INSERT INTO {talents} VALUES ('m2', '{{Mahershala Ali}}')"));
    // The two tables are two slots, read side by side: their changes keep no order between
    // them, so m2's join is awaited before its movie is deleted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !changes(&read(&out, usize::MAX, Duration::from_secs(1)))
        .iter()
        .any(|(k, v, _)| k.as_deref() == Some("m2") && !v.is_null())
    {
        assert!(Instant::now() < deadline, "m2 was never joined:\n{}", running.log_so_far());
    }
    psql(&url, &format!("UPDATE {movies} SET title = 'Inception (2010)' WHERE id = 'm1'"));
    psql(&url, &format!("DELETE FROM {movies} WHERE id = 'm2'"));
    let records = read_all(&out, 4, Duration::from_secs(60));
    let latest = latest_rows(&records);
    assert_eq!(
        latest,
        BTreeMap::from([(
            "m1".to_string(),
            json!({"movies": {"id": "m1", "title": "Inception (2010)", "year": 2010},
                   "talents": {"movie_id": "m1", "cast_names": ["Leonardo DiCaprio"]}})
        )]),
        "the update changed m1's join, the delete retracted m2's"
    );
    assert!(
        changes(&records).iter().any(|(k, v, _)| k.as_deref() == Some("m2") && !v.is_null()),
        "m2 was joined first"
    );
    assert_clean_exit(&running.stop());
}

#[test]
fn a_capture_moved_to_another_machine_mid_snapshot_takes_the_snapshot_again() {
    let url = database();
    let table = table_name("moved");
    psql(
        &url,
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, note text NOT NULL);
             INSERT INTO {table} SELECT n, 'row ' || n FROM generate_series(1, 50000) n"
        ),
    );
    let dir = PipelineDir::new();
    let (pipeline, out) = capture_pipeline(&dir, &url, &table, "row");
    // Small batches: the snapshot's delivery takes seconds, and the kill lands in it.
    add_kafka_section(&pipeline, "kafka:\n  batch_size: 10\n");
    let state = |name: &str| pipeline.parent().unwrap().join(name).display().to_string();
    let first = start_run_with(&pipeline, &["--state-dir", &state("machine-a")]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.log_so_far().contains("snapshot: reading the table") {
        assert!(Instant::now() < deadline, "no snapshot:\n{}", first.log_so_far());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = first.log_so_far();
    first.kill();
    assert!(!log.contains("snapshot delivered"), "the snapshot was delivered before the kill:\n{log}");
    // Another machine: a state directory with no record of the snapshot; Kafka's says it was
    // not delivered, so the slot is dropped and the table read again (nothing missed).
    psql(&url, &format!("UPDATE {table} SET note = 'changed' WHERE id = 7"));
    let second = start_run_with(&pipeline, &["--state-dir", &state("machine-b")]);
    wait_for_streaming(&second);
    assert!(second.log_so_far().contains("the last run stopped during the snapshot"), "{}", second.log_so_far());
    let expected = table_rows(&url, &format!("SELECT id, note FROM {table}"), "id");
    wait_for_table(&out, &expected);
    assert_clean_exit(&second.stop());
}
