//! Schema Registry interop: `meshhost catalog serve` against confluent-kafka's Python
//! `SchemaRegistryClient`, and `confluent-avro` topics written by its `AvroSerializer` read by
//! meshhost, whose output its `AvroDeserializer` reads.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value as Json};

use crate::support::*;

/// v1 with `id` a string: neither reads the other.
const MOVIE_STRING_ID: &str = r#"{"type": "record", "name": "Movie", "namespace": "demo", "fields": [
  {"name": "id", "type": "string"},
  {"name": "title", "type": "string"},
  {"name": "year", "type": "int"}]}"#;

/// v2 without a default for `country`: cannot read v1 data.
const MOVIE_V2_REQUIRED: &str = r#"{"type": "record", "name": "Movie", "namespace": "demo", "fields": [
  {"name": "id", "type": "long"},
  {"name": "title", "type": "string"},
  {"name": "year", "type": "int"},
  {"name": "country", "type": "string"}]}"#;

fn schema_file(dir: &PipelineDir, name: &str, text: &str) -> String {
    dir.write(name, text).to_str().unwrap().to_string()
}

#[test]
fn python_client_registers_looks_up_and_is_refused_like_confluent() {
    let server = CatalogServer::start();
    let dir = PipelineDir::new();
    let (v1, v2) = (schema_file(&dir, "v1.avsc", MOVIE_V1), schema_file(&dir, "v2.avsc", MOVIE_V2));
    let bad = schema_file(&dir, "bad.avsc", MOVIE_STRING_ID);
    let url = server.url.as_str();

    assert_eq!(python_json(&["register", url, "movies-value", &v1]), json!({"id": 1}));
    assert_eq!(python_json(&["register", url, "movies-value", &v2]), json!({"id": 2}));
    // The same schema (spelled differently, even) keeps its id and makes no new version.
    let v1_spaced = schema_file(&dir, "v1-spaced.avsc", &MOVIE_V1.replace(": ", ":    "));
    assert_eq!(python_json(&["register", url, "movies-value", &v1_spaced]), json!({"id": 1}));
    // Under another subject too.
    assert_eq!(python_json(&["register", url, "other-value", &v1]), json!({"id": 1}));
    assert_eq!(python_json(&["versions", url, "movies-value"]), json!([1, 2]));
    assert_eq!(python_json(&["subjects", url]), json!(["movies-value", "other-value"]));
    assert_eq!(
        python_json(&["lookup", url, "movies-value", &v2]),
        json!({"id": 2, "version": 2, "subject": "movies-value"})
    );
    let by_id = python_json(&["get-by-id", url, "2"]);
    assert_eq!(by_id["schema"]["fields"][3]["name"], "country");
    assert_eq!(by_id["schemaType"], "AVRO");
    let latest = python_json(&["latest", url, "movies-value"]);
    assert_eq!((latest["id"].clone(), latest["version"].clone()), (json!(2), json!(2)));

    // Refusals, with Confluent's status and error codes.
    let refused = python_error(&["register", url, "movies-value", &bad]);
    assert_eq!((refused["http_status"].clone(), refused["error_code"].clone()), (json!(409), json!(409)));
    assert!(refused["message"].as_str().unwrap().contains("field \"id\""), "{refused}");
    assert_eq!(python_json(&["compatible", url, "movies-value", &bad]), json!({"is_compatible": false}));
    assert_eq!(
        python_json(&["compatible", url, "movies-value", &v2, "--version", "1"]),
        json!({"is_compatible": true})
    );
    let invalid = schema_file(&dir, "invalid.avsc", r#"{"type": "record", "name": "X", "fields": [{"name": "a"}]}"#);
    assert_eq!(python_error(&["register", url, "movies-value", &invalid])["error_code"], 42201);
    assert_eq!(python_error(&["lookup", url, "nobody-value", &v1])["error_code"], 40401);
    assert_eq!(python_error(&["lookup", url, "movies-value", &bad])["error_code"], 40403);
    assert_eq!(python_error(&["get-by-id", url, "99"])["error_code"], 40403);
    assert_eq!(python_error(&["latest", url, "nobody-value"])["error_code"], 40401);
    assert_eq!(python_error(&["version", url, "movies-value", "7"])["error_code"], 40402);

    // Compatibility levels: global and per subject.
    assert_eq!(python_json(&["get-compat", url]), json!({"compatibilityLevel": "BACKWARD"}));
    assert_eq!(python_error(&["get-compat", url, "--subject", "movies-value"])["error_code"], 40408);
    assert_eq!(
        python_json(&["set-compat", url, "NONE", "--subject", "movies-value"]),
        json!({"compatibility": "NONE"})
    );
    assert_eq!(python_json(&["get-compat", url, "--subject", "movies-value"]), json!({"compatibilityLevel": "NONE"}));
    assert_eq!(python_json(&["register", url, "movies-value", &bad]), json!({"id": 3}));

    // Deletes: soft, then permanent (which needs the soft one first).
    assert_eq!(python_error(&["delete-version", url, "movies-value", "3", "--permanent"])["error_code"], 40407);
    assert_eq!(python_json(&["delete-version", url, "movies-value", "3"]), json!(3));
    assert_eq!(python_json(&["versions", url, "movies-value"]), json!([1, 2]));
    assert_eq!(python_json(&["versions", url, "movies-value", "--deleted"]), json!([1, 2, 3]));
    assert_eq!(python_json(&["delete-version", url, "movies-value", "3", "--permanent"]), json!(3));
    assert_eq!(python_json(&["versions", url, "movies-value", "--deleted"]), json!([1, 2]));
    assert_eq!(python_error(&["get-by-id", url, "3"])["error_code"], 40403);
    assert_eq!(python_json(&["delete-subject", url, "other-value"]), json!([1]));
    assert_eq!(python_json(&["subjects", url]), json!(["movies-value"]));
    assert_eq!(python_json(&["get-by-id", url, "1"])["schemaType"], "AVRO", "still used by movies-value");
}

#[test]
fn compatibility_levels_decide_registration_over_http() {
    let server = CatalogServer::start();
    let dir = PipelineDir::new();
    let url = server.url.as_str();
    // v1 {a}; v2 adds c with a default; v3 makes c required: BACKWARD from v2, not from v1.
    let record = |fields: &str| format!(r#"{{"type": "record", "name": "R", "fields": [{fields}]}}"#);
    let v1 = schema_file(&dir, "v1.avsc", &record(r#"{"name": "a", "type": "int"}"#));
    let v2 = schema_file(
        &dir,
        "v2.avsc",
        &record(r#"{"name": "a", "type": "int"}, {"name": "c", "type": "string", "default": ""}"#),
    );
    let v3 = schema_file(&dir, "v3.avsc", &record(r#"{"name": "a", "type": "int"}, {"name": "c", "type": "string"}"#));
    // v4 drops a (v1-v3 have no default for it): old readers cannot read v4 data.
    let v4 = schema_file(&dir, "v4.avsc", &record(r#"{"name": "c", "type": "string", "default": ""}"#));
    let expectations = [
        ("NONE", true, true),
        ("BACKWARD", true, true),
        ("BACKWARD_TRANSITIVE", false, true),
        ("FORWARD", true, false),
        ("FORWARD_TRANSITIVE", true, false),
        ("FULL", true, false),
        ("FULL_TRANSITIVE", false, false),
    ];
    for (level, v3_ok, v4_ok) in expectations {
        let subject = format!("{}-value", level.to_lowercase());
        python_json(&["set-compat", url, level, "--subject", &subject]);
        python_json(&["register", url, &subject, &v1]);
        python_json(&["register", url, &subject, &v2]);
        let v3_answer = python_json(&["compatible", url, &subject, &v3]);
        assert_eq!(v3_answer, json!({"is_compatible": v3_ok}), "{level}: v3 after v1, v2");
        let (code, stdout, _) = python(&["register", url, &subject, &v3]);
        assert_eq!(code == 0, v3_ok, "{level}: registering v3: {stdout}");
        if !v3_ok {
            assert_eq!(serde_json::from_str::<Json>(&stdout).unwrap()["error_code"], 409, "{level}");
        }
        let v4_answer = python_json(&["compatible", url, &subject, &v4]);
        assert_eq!(v4_answer, json!({"is_compatible": v4_ok}), "{level}: v4");
    }
}

#[test]
fn restarted_and_second_servers_serve_the_same_ids() {
    let server = CatalogServer::start();
    let dir = PipelineDir::new();
    let (v1, v2) = (schema_file(&dir, "v1.avsc", MOVIE_V1), schema_file(&dir, "v2.avsc", MOVIE_V2));
    let other = schema_file(&dir, "other.avsc", MOVIE_STRING_ID);
    python_json(&["register", &server.url, "movies-value", &v1]);
    python_json(&["register", &server.url, "movies-value", &v2]);
    python_json(&["register", &server.url, "other-value", &other]);
    python_json(&["set-compat", &server.url, "FULL", "--subject", "movies-value"]);
    python_json(&["delete-version", &server.url, "movies-value", "1"]);
    let snapshot = |url: &str| {
        json!({
            "subjects": python_json(&["subjects", url, "--deleted"]),
            "movies": python_json(&["versions", url, "movies-value", "--deleted"]),
            "live": python_json(&["versions", url, "movies-value"]),
            "latest": python_json(&["latest", url, "movies-value"]),
            "other": python_json(&["latest", url, "other-value"]),
            "level": python_json(&["get-compat", url, "--subject", "movies-value"]),
            "v1": python_json(&["version", url, "movies-value", "1", "--deleted"]),
        })
    };
    let before = snapshot(&server.url);
    assert_eq!(before["other"]["id"], 3);

    let server = server.restart();
    assert_eq!(snapshot(&server.url), before, "after a restart");
    let second = CatalogServer::start_on(&server.topic);
    assert_eq!(snapshot(&second.url), before, "on a second server");

    // A write on one is seen by the other, and the same schema gets the same id on both.
    let v3 = schema_file(&dir, "v3.avsc", &MOVIE_V2.replace(r#""default": "US""#, r#""default": "FR""#));
    let id = python_json(&["register", &second.url, "movies-value", &v3])["id"].clone();
    assert_eq!(id, 4);
    assert_eq!(python_json(&["register", &server.url, "movies-value", &v3])["id"], id);
    assert_eq!(python_json(&["register", &server.url, "third-value", &v3])["id"], id);
    assert_eq!(python_json(&["get-by-id", &second.url, "4"]), python_json(&["get-by-id", &server.url, "4"]));
}

/// POST `body` to `url`: status and JSON answer.
fn post_json(url: &str, body: &Json) -> (u16, Json) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .send(body.to_string().as_bytes())
        .expect("the catalog answers");
    let status = response.status().as_u16();
    (status, serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap_or(Json::Null))
}

#[test]
fn writers_racing_on_two_servers_all_succeed_with_one_id_per_schema() {
    let first = CatalogServer::start();
    let second = CatalogServer::start_on(&first.topic);
    let urls = [first.url.clone(), second.url.clone()];
    // Every version of `shared-value` is a new schema: no compatibility to refuse one.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let status = agent
        .put(&format!("{}/config/shared-value", first.url))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .send(r#"{"compatibility":"NONE"}"#.as_bytes())
        .unwrap()
        .status();
    assert_eq!(status, 200);

    // 8 writers, 12 registrations each, alternating servers: a subject of their own, a new
    // schema under the one shared subject, and one schema all of them register there.
    let schema =
        |name: &str| format!(r#"{{"type":"record","name":"{name}","fields":[{{"name":"id","type":"long"}}]}}"#);
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let urls = urls.clone();
            std::thread::spawn(move || {
                let mut answers = Vec::new();
                for i in 0..12 {
                    let url = &urls[(writer + i) % 2];
                    let (subject, name) = match i % 3 {
                        0 => (format!("own-{writer}-{i}-value"), format!("own_{writer}_{i}")),
                        1 => ("shared-value".to_string(), format!("shared_{writer}_{i}")),
                        _ => ("shared-value".to_string(), "everyone".to_string()),
                    };
                    let (status, answer) =
                        post_json(&format!("{url}/subjects/{subject}/versions"), &json!({"schema": schema(&name)}));
                    assert_eq!(status, 200, "{subject} on {url}: {answer}");
                    let id = answer["id"].as_u64().unwrap();
                    // Read back at once from the other server.
                    let other = &urls[(writer + i + 1) % 2];
                    let (status, found) =
                        post_json(&format!("{other}/subjects/{subject}"), &json!({"schema": schema(&name)}));
                    assert_eq!((status, found["id"].as_u64()), (200, Some(id)), "{name} looked up on {other}");
                    answers.push((name, id));
                }
                answers
            })
        })
        .collect();
    let answers: Vec<(String, u64)> = writers.into_iter().flat_map(|w| w.join().expect("writer")).collect();

    let mut id_of: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    for (name, id) in &answers {
        assert_eq!(*id_of.entry(name.clone()).or_insert(*id), *id, "{name} got two ids");
    }
    let mut ids: Vec<u64> = id_of.values().copied().collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), id_of.len(), "two schemas share an id: {id_of:?}");
    assert_eq!(id_of.len(), 8 * 4 + 8 * 4 + 1);

    // Both servers hold the same versions of the shared subject: one per schema registered there.
    let versions = |url: &str| -> Vec<(u64, u64)> {
        let numbers: Vec<u64> = serde_json::from_str(
            &agent
                .get(&format!("{url}/subjects/shared-value/versions"))
                .call()
                .unwrap()
                .body_mut()
                .read_to_string()
                .unwrap(),
        )
        .unwrap();
        numbers
            .into_iter()
            .map(|n| {
                let text = agent
                    .get(&format!("{url}/subjects/shared-value/versions/{n}"))
                    .call()
                    .unwrap()
                    .body_mut()
                    .read_to_string()
                    .unwrap();
                (n, serde_json::from_str::<Json>(&text).unwrap()["id"].as_u64().unwrap())
            })
            .collect()
    };
    let on_first = versions(&first.url);
    assert_eq!(versions(&second.url), on_first);
    let mut shared_ids: Vec<u64> = on_first.iter().map(|(_, id)| *id).collect();
    shared_ids.sort();
    let mut expected: Vec<u64> =
        id_of.iter().filter(|(name, _)| !name.starts_with("own_")).map(|(_, id)| *id).collect();
    expected.sort();
    assert_eq!(shared_ids, expected, "the shared subject's versions are exactly its schemas, once each");
}

/// The filter + projection pipeline from a `confluent-avro` topic to a `confluent-avro` topic.
fn confluent_pipeline(
    dir: &PipelineDir,
    input: &str,
    output: &str,
    dead_letter: &str,
    registry: &str,
) -> std::path::PathBuf {
    dir.write(
        "pipeline.yaml",
        &format!(
            r#"
version: 1
name: {name}
schema_registry:
  url: {registry}
  retry_seconds: 3
sources:
  movies:
    topic: {input}
    format: confluent-avro
processors:
  recent:
    uses: mesh/filter@0.1
    inputs: [movies]
    with:
      condition: "year >= 2000 && country == 'US'"
  slim:
    uses: mesh/projection@0.1
    inputs: [recent]
    with:
      fields: [id, title, country]
      rename: {{title: name}}
sinks:
  out:
    topic: {output}
    format: confluent-avro
    inputs: [slim]
dead_letter:
  topic: {dead_letter}
"#,
            name = unique("sr"),
        ),
    )
}

#[test]
fn two_writer_versions_through_filter_and_projection_to_the_python_deserializer() {
    let server = CatalogServer::start();
    let dir = PipelineDir::new();
    let (input, output, dead_letter) = (unique("sr-in"), unique("sr-out"), unique("sr-dlq"));
    for topic in [&input, &output, &dead_letter] {
        create_topic(topic, 1);
    }
    let (v1, v2) = (schema_file(&dir, "v1.avsc", MOVIE_V1), schema_file(&dir, "v2.avsc", MOVIE_V2));
    let old = [
        json!({"id": 1, "title": "Old and early", "year": 1999}),
        json!({"id": 2, "title": "Old and recent", "year": 2005}),
    ];
    let new = [
        json!({"id": 3, "title": "New, French", "year": 2010, "country": "FR"}),
        json!({"id": 4, "title": "New, American", "year": 2012, "country": "US"}),
        json!({"id": 5, "title": "New but early", "year": 1990, "country": "US"}),
    ];
    let url = server.url.as_str();
    assert_eq!(python_json(&["produce", broker(), url, &input, &v1, &jsonl(&dir, "old.jsonl", &old)])["schema_id"], 1);
    assert_eq!(python_json(&["produce", broker(), url, &input, &v2, &jsonl(&dir, "new.jsonl", &new)])["schema_id"], 2);

    let pipeline = confluent_pipeline(&dir, &input, &output, &dead_letter, url);
    let (code, stdout, stderr) = validate(&pipeline);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("country: string"), "the reader schema is the latest version: {stdout}");
    let run = start_run(&pipeline);
    let (code, stdout, stderr) = python(&["consume", broker(), url, &output, "--count", "2", "--timeout", "60"]);
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    assert_eq!(code, 0, "{stdout}{stderr}\nmeshhost log:\n{}", stopped.log);
    assert_eq!(
        lines(&stdout),
        vec![
            json!({"id": 2, "name": "Old and recent", "country": "US"}), // the default filled in
            json!({"id": 4, "name": "New, American", "country": "US"}),
        ]
    );
    // The sink's schema is registered under <topic>-value, and its values carry that id.
    let registered = python_json(&["latest", url, &format!("{output}-value")]);
    let raw = lines(&python(&["consume", broker(), &output, "--count", "2", "--raw"]).1);
    for value in raw {
        assert_eq!((value["magic"].clone(), value["schema_id"].clone()), (json!(0), registered["id"].clone()));
    }
    assert!(read_all(&dead_letter, 0, Duration::from_secs(2)).is_empty());
}

/// A datum of `schema` (an independent encoder: apache-avro), framed with `id`.
fn framed(id: u32, schema: &str, value: apache_avro::types::Value) -> Vec<u8> {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend(apache_avro::to_avro_datum(&schema, value).unwrap());
    bytes
}

fn movie(id: i64, title: &str, year: i32, country: Option<&str>) -> apache_avro::types::Value {
    use apache_avro::types::Value;
    let mut fields = vec![
        ("id".to_string(), Value::Long(id)),
        ("title".to_string(), Value::String(title.to_string())),
        ("year".to_string(), Value::Int(year)),
    ];
    if let Some(country) = country {
        fields.push(("country".to_string(), Value::String(country.to_string())));
    }
    Value::Record(fields)
}

fn string_id_movie(id: &str) -> apache_avro::types::Value {
    use apache_avro::types::Value;
    Value::Record(vec![
        ("id".to_string(), Value::String(id.to_string())),
        ("title".to_string(), Value::String("t".to_string())),
        ("year".to_string(), Value::Int(2020)),
    ])
}

#[test]
fn bad_confluent_values_go_to_dead_letters_with_the_reason() {
    let server = CatalogServer::start();
    let dir = PipelineDir::new();
    let (input, output, dead_letter) = (unique("srbad-in"), unique("srbad-out"), unique("srbad-dlq"));
    for topic in [&input, &output, &dead_letter] {
        create_topic(topic, 1);
    }
    let url = server.url.as_str();
    let v2 = python_json(&["register", url, &format!("{input}-value"), &schema_file(&dir, "v2.avsc", MOVIE_V2)]);
    // A schema of another subject, which the source's cannot read (id: string → long).
    let string_id = python_json(&["register", url, "elsewhere-value", &schema_file(&dir, "s.avsc", MOVIE_STRING_ID)]);
    let (v2, string_id) = (v2["id"].as_u64().unwrap() as u32, string_id["id"].as_u64().unwrap() as u32);
    let good = framed(v2, MOVIE_V2, movie(7, "Good", 2020, Some("US")));
    let mut wrong_magic = good.clone();
    wrong_magic[0] = 1;
    let unknown_id = framed(999, MOVIE_V2, movie(8, "Unknown", 2020, Some("US")));
    let unresolvable = framed(string_id, MOVIE_STRING_ID, string_id_movie("nine"));
    let truncated = good[..good.len() - 2].to_vec();
    let records: Vec<KeyValue> = [wrong_magic, unknown_id, unresolvable, truncated, good]
        .into_iter()
        .enumerate()
        .map(|(i, value)| (Some(format!("k{i}").into_bytes()), Some(value)))
        .collect();
    produce(&input, &records);

    let pipeline = confluent_pipeline(&dir, &input, &output, &dead_letter, url);
    let run = start_run(&pipeline);
    let dead = read_all(&dead_letter, 4, Duration::from_secs(60));
    let out = read(&output, 1, Duration::from_secs(30));
    assert_clean_exit(&run.stop());
    assert_eq!(out.len(), 1, "the good record passes");
    assert_eq!(dead.len(), 4);
    let reason = |key: &str| {
        let record = dead.iter().find(|r| r.key.as_deref() == Some(key.as_bytes())).expect("dead-lettered");
        assert_eq!(record.header("meshhost.stage").as_deref(), Some("decode"));
        assert_eq!(record.value, records.iter().find(|(k, _)| k.as_deref() == Some(key.as_bytes())).unwrap().1);
        record.header("meshhost.error").unwrap()
    };
    assert!(reason("k0").contains("magic byte 0x01"), "{}", reason("k0"));
    assert!(reason("k1").contains("schema id 999: unknown to the schema registry"), "{}", reason("k1"));
    let unresolvable = reason("k2");
    assert!(
        unresolvable.contains(&format!("schema id {string_id}")) && unresolvable.contains("field \"id\""),
        "{unresolvable}"
    );
    assert!(reason("k3").contains(&format!("writer schema {v2}")), "{}", reason("k3"));
}

#[test]
fn a_registry_that_goes_away_stops_the_run_and_nothing_is_lost() {
    let mut server = CatalogServer::start();
    let dir = PipelineDir::new();
    let (input, output, dead_letter) = (unique("srgone-in"), unique("srgone-out"), unique("srgone-dlq"));
    for topic in [&input, &output, &dead_letter] {
        create_topic(topic, 1);
    }
    let url = server.url.clone();
    let v1 = python_json(&["register", &url, &format!("{input}-value"), &schema_file(&dir, "v1.avsc", MOVIE_V1)]);
    let v2 = python_json(&["register", &url, &format!("{input}-value"), &schema_file(&dir, "v2.avsc", MOVIE_V2)]);
    let (v1, v2) = (v1["id"].as_u64().unwrap() as u32, v2["id"].as_u64().unwrap() as u32);
    let first: Vec<KeyValue> = (0..3)
        .map(|i| (Some(vec![b'a', i]), Some(framed(v1, MOVIE_V1, movie(i.into(), "first", 2001, None)))))
        .collect();
    produce(&input, &first);
    let pipeline = confluent_pipeline(&dir, &input, &output, &dead_letter, &url);
    let run = start_run(&pipeline);
    assert_eq!(read(&output, 3, Duration::from_secs(60)).len(), 3);
    crate::pipeline::wait_for_commits(&group_of(&pipeline), &input);

    // The registry goes away; records of a writer version the run has not met arrive.
    server.stop();
    let second: Vec<KeyValue> = (10..13)
        .map(|i| (Some(vec![b'b', i]), Some(framed(v2, MOVIE_V2, movie(i.into(), "second", 2002, Some("US"))))))
        .collect();
    produce(&input, &second);
    let stopped = run.wait_for_exit(Duration::from_secs(60));
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(stopped.log.contains("did not answer"), "{}", stopped.log);
    assert_eq!(committed_offsets(&group_of(&pipeline), &input)[&0], 3, "nothing committed past the failure");

    // The registry is back: a new run delivers every record.
    let server = server.restart();
    assert_eq!(server.url, url);
    let run = start_run(&pipeline);
    let (code, stdout, stderr) = python(&["consume", broker(), &url, &output, "--count", "6", "--timeout", "60"]);
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    assert_eq!(code, 0, "{stdout}{stderr}\nmeshhost log:\n{}", stopped.log);
    let mut ids: Vec<i64> = lines(&stdout).iter().map(|record| record["id"].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 2, 10, 11, 12], "every record, none twice");
}

#[test]
fn an_incompatible_sink_schema_is_refused_by_validate_and_run() {
    let server = CatalogServer::start();
    let dir = PipelineDir::new();
    let (input, output, dead_letter) = (unique("srsink-in"), unique("srsink-out"), unique("srsink-dlq"));
    for topic in [&input, &output, &dead_letter] {
        create_topic(topic, 1);
    }
    let url = server.url.as_str();
    python_json(&["register", url, &format!("{input}-value"), &schema_file(&dir, "v2.avsc", MOVIE_V2)]);
    // The sink's subject already holds a schema its output cannot follow (BACKWARD): a
    // required field the projection does not produce.
    python_json(&["register", url, &format!("{output}-value"), &schema_file(&dir, "req.avsc", MOVIE_V2_REQUIRED)]);
    let pipeline = confluent_pipeline(&dir, &input, &output, &dead_letter, url);
    let (code, stdout, stderr) = validate(&pipeline);
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("sinks.out") && stderr.contains(&format!("{output}-value")), "{stderr}");
    let (code, _, stderr) = meshhost(&["run", pipeline.to_str().unwrap(), "--bootstrap-servers", broker()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("refuses its schema"), "{stderr}");
    assert_eq!(python_json(&["versions", url, &format!("{output}-value")]), json!([1]), "nothing registered");
}

/// The consumer group of a pipeline file (`meshhost-<name>`).
fn group_of(pipeline: &Path) -> String {
    let text = std::fs::read_to_string(pipeline).unwrap();
    let name = text.lines().find_map(|l| l.strip_prefix("name: ")).unwrap();
    format!("meshhost-{name}")
}
