//! The Postgres sink against the real test Postgres, read back with `psql`: upserts (one key
//! twice in a batch, tombstones, a replay that leaves the table as it was), appends, a row the
//! database refuses going to dead letters, a new optional field becoming a column, and a
//! database restarted mid-run.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cdc::{database, table_name};
use crate::support::*;

const MOVIE: &str = r#"{"type": "record", "name": "Movie", "fields": [
    {"name": "id", "type": "string"},
    {"name": "title", "type": "string"},
    {"name": "year", "type": "int"},
    {"name": "rating", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 1}},
    {"name": "released", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
    {"name": "tags", "type": {"type": "array", "items": "string"}}
]}"#;

/// A movie as the topic's JSON value (the decimal as Avro JSON: its unscaled bytes).
fn movie(id: &str, title: &str, year: i32, rating_tenths: u8) -> Option<Vec<u8>> {
    let value = json!({
        "id": id, "title": title, "year": year,
        "rating": String::from(char::from(rating_tenths)),
        "released": 1_700_000_000_000i64 + year as i64,
        "tags": ["a", "b\"c"],
    });
    Some(value.to_string().into_bytes())
}

/// A pipeline directory holding `event.avsc`: `{id: string, seq: long}`.
fn event_dir() -> PipelineDir {
    let dir = PipelineDir::new();
    dir.write(
        "event.avsc",
        r#"{"type": "record", "name": "Event", "fields": [{"name": "id", "type": "string"}, {"name": "seq", "type": "long"}]}"#,
    );
    dir
}

fn keyed(id: &str, value: Option<Vec<u8>>) -> KeyValue {
    (Some(id.as_bytes().to_vec()), value)
}

/// Poll `sql` until it answers `expected` (30 s at most; a failing query, such as one of a
/// table the sink has not created yet, is asked again).
fn wait_for(url: &str, sql: &str, expected: &str, running: &Running) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = std::process::Command::new("psql")
            .args(["-X", "-q", "-A", "-t", url, "-c", sql])
            .env("PGPASSWORD", POSTGRES_PASSWORD)
            .output()
            .expect("run psql");
        let got = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        if got.trim() == expected.trim() {
            return;
        }
        assert!(Instant::now() < deadline, "{sql} answered\n{got}\nnot\n{expected}\nlog:\n{}", running.log_so_far());
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Setup {
    group: String,
    url: String,
    upserts: String,
    appends: String,
    checked: String,
    input: String,
    dlq: String,
    dir: PipelineDir,
    pipeline: std::path::PathBuf,
}

/// A topic of movies into three tables: `upserts` (keyed by id) and `checked` (appended to),
/// both created beforehand with a CHECK the sink must respect, and `appends` (created by the
/// sink).
fn setup(schema: &str) -> Setup {
    let url = database();
    let (upserts, appends, checked) = (table_name("movies_up"), table_name("movies_log"), table_name("checked"));
    for (table, key) in [(&upserts, " PRIMARY KEY"), (&checked, "")] {
        psql(
            &url,
            &format!(
                "CREATE TABLE {table} (id text{key}, title text NOT NULL, year int NOT NULL CHECK (year > 1800),
                   rating numeric(4,1) NOT NULL, released timestamptz, tags text[] NOT NULL)"
            ),
        );
    }
    let (input, _, dlq) = pipeline_topics("pg-sink", 2);
    let dir = PipelineDir::new();
    dir.write("movie.avsc", schema);
    let name = unique("pgsink");
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            "name: {name}
sources:
  movies: {{topic: {input}, format: json, schema: movie.avsc}}
sinks:
  upserts:
    postgres: {{url: '{url}', table: {upserts}, key: [id], create: true}}
    inputs: [movies]
  appends:
    postgres: {{url: '{url}', table: public.{appends}, create: true, batch_size: 3}}
    inputs: [movies]
  checked:
    postgres: {{url: '{url}', table: {checked}, create: true}}
    inputs: [movies]
dead_letter:
  topic: {dlq}
"
        ),
    );
    Setup { group: format!("meshhost-{name}"), url, upserts, appends, checked, input, dlq, dir, pipeline }
}

#[test]
fn upserts_deletes_appends_and_refused_rows_reach_the_tables_and_dead_letters() {
    let setup = setup(MOVIE);
    let Setup { url, upserts, appends, checked, input, dlq, .. } = &setup;
    // m1 twice (the last wins), m2 then deleted, a tombstone for a key never written, and a
    // year the table's CHECK refuses.
    produce(
        input,
        &[
            keyed("m1", movie("m1", "First", 1999, 71)),
            keyed("m2", movie("m2", "Second\tTabbed", 2001, 80)),
            keyed("m1", movie("m1", "First (again)", 2000, 72)),
            keyed("m9", None),
            keyed("m3", movie("m3", "Too old", 1700, 50)),
            keyed("m2", None),
            keyed("m4", movie("m4", "Fourth", 2004, 99)),
        ],
    );
    let listen = add_metrics_listener(&setup.pipeline);
    let running = start_run(&setup.pipeline);
    let rows = format!("SELECT id, title, year, rating, released AT TIME ZONE 'UTC', tags FROM {upserts} ORDER BY id");
    wait_for(
        url,
        &rows,
        "m1|First (again)|2000|7.2|2023-11-14 22:13:22|{a,\"b\\\"c\"}\nm4|Fourth|2004|9.9|2023-11-14 22:13:22.004|{a,\"b\\\"c\"}",
        &running,
    );
    // Every record with a value is appended, in topic order per key; tombstones have no row.
    wait_for(url, &format!("SELECT count(*) FROM {appends}"), "5", &running);
    assert_eq!(
        psql(url, &format!("SELECT id, title, year FROM {appends} WHERE id IN ('m1', 'm2') ORDER BY id, year")),
        "m1|First|1999\nm1|First (again)|2000\nm2|Second\tTabbed|2001\n"
    );
    assert_eq!(
        psql(url, &format!("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{appends}' ORDER BY ordinal_position")),
        "id|text\ntitle|text\nyear|integer\nrating|numeric\nreleased|timestamp with time zone\ntags|ARRAY\n"
    );

    // The appended rows the CHECK takes (m3 refused: the rest of its transaction written).
    wait_for(
        url,
        &format!("SELECT id, year FROM {checked} ORDER BY id, year"),
        "m1|1999\nm1|2000\nm2|2001\nm4|2004",
        &running,
    );

    // Dead letters, all at stage deliver: m3 refused by both CHECKs, and the two tombstones
    // each append sink cannot write; the rest was delivered.
    let dead = read(dlq, 6, Duration::from_secs(20));
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|r| {
            assert_eq!(r.header("meshhost.stage").as_deref(), Some("deliver"));
            assert_eq!(r.header("meshhost.source.topic").as_deref(), Some(input.as_str()));
            let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
            let error = r.header("meshhost.error").unwrap();
            // The database's message names the table and the constraint: keep its start.
            let error = match error.split_once(" Postgres refused the row: new row for relation") {
                Some((sink, rest)) if rest.contains("violates check constraint") => format!("{sink} CHECK"),
                _ => error,
            };
            format!("{key} {error}")
        })
        .collect();
    reasons.sort();
    let tombstone = "a tombstone (no value) for a table written in insert mode";
    assert_eq!(
        reasons,
        [
            format!("m2 sink appends: {tombstone}"),
            format!("m2 sink checked: {tombstone}"),
            "m3 sink checked: CHECK".to_string(),
            "m3 sink upserts: CHECK".to_string(),
            format!("m9 sink appends: {tombstone}"),
            format!("m9 sink checked: {tombstone}"),
        ]
    );
    // Metrics: rows committed per sink (superseded upserts included), dead letters at deliver.
    let wanted = [
        ("meshhost_component_sent_records_total", "upserts", "6"),
        ("meshhost_component_sent_records_total", "appends", "5"),
        ("meshhost_dead_lettered_records_total", "upserts", "1"),
        ("meshhost_dead_lettered_records_total", "appends", "2"),
        ("meshhost_component_sent_records_total", "checked", "4"),
        ("meshhost_dead_lettered_records_total", "checked", "3"),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics =
            ureq::get(&format!("http://{listen}/metrics")).call().unwrap().body_mut().read_to_string().unwrap();
        let value = |name: &str, component: &str| {
            let component = format!("component_id=\"{component}\"");
            let line = metrics.lines().find(|l| l.starts_with(name) && l.contains(&component));
            line.and_then(|l| l.rsplit(' ').next()).unwrap_or("none").to_string()
        };
        let got: Vec<String> = wanted.iter().map(|(name, component, _)| value(name, component)).collect();
        if got.iter().zip(&wanted).all(|(got, (_, _, want))| got == want) {
            break;
        }
        assert!(Instant::now() < deadline, "metrics {got:?}, not {wanted:?}:\n{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_clean_exit(&running.stop());

    // A replay from the start leaves both tables as they were: upserts by their nature, appends
    // by the positions kept beside the table.
    let checksum = |table: &str| {
        psql(url, &format!("SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"))
    };
    let before = (checksum(upserts), checksum(appends), checksum(checked));
    let (code, _, stderr) =
        meshhost(&["reset", setup.pipeline.to_str().unwrap(), "--to", "earliest", "--bootstrap-servers", broker()]);
    assert_eq!(code, 0, "{stderr}");
    let running = start_run(&setup.pipeline);
    wait_until_consumed(&setup.group, input, &running);
    assert_clean_exit(&running.stop());
    assert_eq!((checksum(upserts), checksum(appends), checksum(checked)), before);
}

/// Wait until the pipeline's group has committed the end of `topic` (60 s at most).
fn wait_until_consumed(group: &str, topic: &str, running: &Running) {
    let end = end_offsets(topic);
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed_offsets(group, topic) != end {
        assert!(Instant::now() < deadline, "{topic} not consumed to its end {end:?}:\n{}", running.log_so_far());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_new_optional_field_becomes_a_column_and_old_rows_get_null() {
    let setup = setup(MOVIE);
    let Setup { url, upserts, appends, input, .. } = &setup;
    produce(input, &[keyed("m1", movie("m1", "First", 1999, 71))]);
    let running = start_run(&setup.pipeline);
    wait_for(url, &format!("SELECT count(*) FROM {appends}"), "1", &running);
    assert_clean_exit(&running.stop());

    let v2 = MOVIE.replace(
        r#"{"name": "id", "type": "string"},"#,
        r#"{"name": "id", "type": "string"}, {"name": "country", "type": ["null", "string"], "default": null},"#,
    );
    setup.dir.write("movie.avsc", &v2);
    let value = json!({"id": "m2", "country": "FR", "title": "Second", "year": 2001, "rating": "P",
                       "released": null, "tags": []});
    produce(input, &[keyed("m2", Some(value.to_string().into_bytes()))]);
    let running = start_run(&setup.pipeline);
    for table in [upserts, appends] {
        wait_for(
            url,
            &format!("SELECT id, coalesce(country, 'NULL') FROM {table} ORDER BY id"),
            "m1|NULL\nm2|FR",
            &running,
        );
    }
    assert_clean_exit(&running.stop());

    // A retyped field: validate (the database answering) and run refuse it, naming the column.
    let v3 = v2.replace(r#"{"name": "year", "type": "int"}"#, r#"{"name": "year", "type": "string"}"#);
    setup.dir.write("movie.avsc", &v3);
    let (code, _, stderr) = validate(&setup.pipeline);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("column year of public.{upserts} is int4, but its field needs text")), "{stderr}");
    let (code, _, stderr) = meshhost(&["run", setup.pipeline.to_str().unwrap(), "--bootstrap-servers", broker()]);
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("column year of public.{upserts} is int4, but its field needs text")), "{stderr}");
}

#[test]
fn postgres_restarted_mid_run_loses_nothing() {
    let own = OwnPostgres::start();
    let url = own.url.replace("meshhost@", &format!("meshhost:{POSTGRES_PASSWORD}@"));
    let table = table_name("restarted");
    let (input, _, dlq) = pipeline_topics("pg-restart", 2);
    let dir = PipelineDir::new();
    dir.write("movie.avsc", MOVIE);
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            "name: {name}
sources:
  movies: {{topic: {input}, format: json, schema: movie.avsc}}
sinks:
  out:
    postgres: {{url: '{url}', table: {table}, key: [id], create: true, batch_size: 50}}
    inputs: [movies]
dead_letter:
  topic: {dlq}
",
            name = unique("pgrestart")
        ),
    );
    let batch = |from: usize, to: usize| -> Vec<KeyValue> {
        (from..to).map(|n| keyed(&format!("m{n}"), movie(&format!("m{n}"), &format!("Movie {n}"), 2000, 70))).collect()
    };
    produce(&input, &batch(0, 500));
    let running = start_run(&pipeline);
    wait_for(&url, &format!("SELECT count(*) FROM {table}"), "500", &running);
    own.restart();
    produce(&input, &batch(500, 1000));
    wait_for(&url, &format!("SELECT count(*), count(DISTINCT id) FROM {table}"), "1000|1000", &running);
    assert!(
        running.log_so_far().contains("retrying in"),
        "the broken connection was retried:\n{}",
        running.log_so_far()
    );
    assert_clean_exit(&running.stop());
    assert!(read(&dlq, 1, Duration::from_secs(1)).is_empty());
}

#[test]
fn sigkills_at_random_moments_leave_upserts_right_and_one_append_per_record() {
    let url = database();
    let (upserts, appends) = (table_name("killed_up"), table_name("killed_log"));
    let (input, _, dlq) = pipeline_topics("pg-kill", 3);
    let dir = event_dir();
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            "name: {name}
kafka:
  properties: {{session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\"}}
sources:
  events: {{topic: {input}, format: json, schema: event.avsc}}
processors:
  all:
    uses: mesh/filter@0.1
    inputs: [events]
    with: {{condition: \"seq >= 0\"}}
  again:
    uses: mesh/filter@0.1
    inputs: [events]
    with: {{condition: \"seq >= 0\"}}
sinks:
  latest:
    postgres: {{url: '{url}', table: {upserts}, key: [id], create: true, batch_size: 100}}
    inputs: [events]
  log:
    postgres: {{url: '{url}', table: {appends}, create: true, batch_size: 100}}
    inputs: [all, again]
dead_letter:
  topic: {dlq}
",
            name = unique("pgkill")
        ),
    );
    // 20000 events over 50 keys; the reference is the last seq of each key. The log gets each
    // event twice (two processors feed it): two outputs of one source record, which a
    // transaction may split.
    let events: Vec<KeyValue> = (0..20_000)
        .map(|seq| {
            let id = format!("k{}", seq % 50);
            keyed(&id, Some(json!({"id": id, "seq": seq}).to_string().into_bytes()))
        })
        .collect();
    produce(&input, &events);
    let appended = || psql(&url, &format!("SELECT count(*) FROM {appends}")).trim().parse::<u64>().unwrap_or(0);
    let mut moment = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    for round in 1..=4u64 {
        let running = start_run(&pipeline);
        // Mid-stream: once the table has grown past this round's mark, at a random moment up
        // to 0.2 s later (a cheap LCG: no dependency).
        let deadline = Instant::now() + Duration::from_secs(60);
        while psql(&url, &format!("SELECT to_regclass('{appends}') IS NOT NULL")).trim() != "t"
            || appended() < round * 6000
        {
            assert!(Instant::now() < deadline, "round {round}: no progress:\n{}", running.log_so_far());
            std::thread::sleep(Duration::from_millis(20));
        }
        moment = moment.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((moment >> 33) % 200));
        running.kill();
    }
    assert!(appended() < 40_000, "the kills came after the end: nothing was cut mid-stream");
    let running = start_run(&pipeline);
    let twice = format!(
        "SELECT count(*), count(DISTINCT seq), min(n), max(n) FROM (SELECT seq, count(*) AS n FROM {appends} GROUP BY seq) s"
    );
    wait_for(&url, &twice, "20000|20000|2|2", &running);
    let expected: String = (0..50).map(|k| format!("k{k}|{}\n", 19_950 + k)).collect();
    wait_for(&url, &format!("SELECT id, seq FROM {upserts} ORDER BY seq"), &expected, &running);
    assert_clean_exit(&running.stop());
    assert!(read(&dlq, 1, Duration::from_secs(1)).is_empty());
}

#[test]
fn an_upsert_table_without_a_unique_key_is_refused_by_validate_and_run() {
    let url = database();
    let table = table_name("no_key");
    psql(&url, &format!("CREATE TABLE {table} (id text NOT NULL, seq bigint NOT NULL)"));
    let (input, _, _) = pipeline_topics("pg-nokey", 1);
    let dir = event_dir();
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            "name: {name}\nsources:\n  events: {{topic: {input}, format: json, schema: event.avsc}}\nsinks:\n  latest:\n    postgres: {{url: '{url}', table: {table}, key: [id]}}\n    inputs: [events]\n",
            name = unique("pgnokey")
        ),
    );
    let message =
        format!("sink latest: table public.{table} has no primary key or unique index on (id), which upserts need");
    let (code, _, stderr) = validate(&pipeline);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&message), "{stderr}");
    let (code, _, stderr) = meshhost(&["run", pipeline.to_str().unwrap(), "--bootstrap-servers", broker()]);
    assert_ne!(code, 0);
    assert!(stderr.contains(&message), "{stderr}");

    // A unique index on the key is enough.
    psql(&url, &format!("CREATE UNIQUE INDEX ON {table} (id)"));
    let (code, stdout, stderr) = validate(&pipeline);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

#[test]
fn a_table_that_refuses_too_many_rows_stops_the_run_at_max_ratio() {
    let url = database();
    let table = table_name("refusing");
    psql(&url, &format!("CREATE TABLE {table} (id text NOT NULL, seq bigint NOT NULL CHECK (seq < 0))"));
    let (input, _, dlq) = pipeline_topics("pg-ratio", 1);
    let dir = event_dir();
    let pipeline = dir.write(
        "pipeline.yaml",
        &format!(
            "name: {name}\nsources:\n  events: {{topic: {input}, format: json, schema: event.avsc}}\nsinks:\n  log:\n    postgres: {{url: '{url}', table: {table}}}\n    inputs: [events]\ndead_letter:\n  topic: {dlq}\n  max_ratio: 0.5\n  window: 4\n",
            name = unique("pgratio")
        ),
    );
    let events: Vec<KeyValue> =
        (0..50).map(|seq| keyed("k", Some(json!({"id": "k", "seq": seq}).to_string().into_bytes()))).collect();
    produce(&input, &events);
    let running = start_run(&pipeline);
    let stopped = running.wait_for_exit(Duration::from_secs(60));
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(
        stopped.log.contains("sink log: 3 of the last 3 rows were refused, more than dead_letter.max_ratio 0.5 allows"),
        "{}",
        stopped.log
    );
    assert_eq!(psql(&url, &format!("SELECT count(*) FROM {table}")).trim(), "0");
    let dead = read(&dlq, 50, Duration::from_secs(5));
    assert!(dead.len() >= 3 && dead.len() < 50, "{} dead letters: the run stopped early", dead.len());
}
