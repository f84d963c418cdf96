//! The sources catalog on `meshhost catalog serve`: publish, search, pipelines that read
//! sources by name, derived sources with lineage, schema evolution.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value as Json};

use crate::support::*;

/// v2 without `year`: it reads v2 data (BACKWARD holds), but a v1 reader cannot read its data.
const MOVIE_NO_YEAR: &str = r#"{"type": "record", "name": "Movie", "namespace": "demo", "fields": [
  {"name": "id", "type": "long"},
  {"name": "title", "type": "string"},
  {"name": "country", "type": "string", "default": "US"}]}"#;

fn source_cli(url: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["source"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--catalog", url]);
    meshhost(&all)
}

fn source_ok(url: &str, args: &[&str]) -> String {
    let (code, stdout, stderr) = source_cli(url, args);
    assert_eq!(code, 0, "meshhost source {args:?}\n{stdout}{stderr}");
    stdout
}

/// A pipeline reading catalog source `source`: recent movies, id and title only.
fn pipeline_by_name(
    dir: &PipelineDir,
    file: &str,
    name: &str,
    source_lines: &str,
    sink: &str,
    publish: &str,
    url: &str,
) -> PathBuf {
    let dead_letter = unique("cat-dlq");
    create_topic(&dead_letter, 1);
    dir.write(
        file,
        &format!(
            r#"
version: 1
name: {name}
catalog:
  url: {url}
schema_registry:
  url: {url}
  retry_seconds: 3
sources:
  movies:
{source_lines}
processors:
  recent:
    uses: mesh/filter@0.1
    inputs: [movies]
    with:
      condition: "year >= 2000"
  slim:
    uses: mesh/projection@0.1
    inputs: [recent]
    with:
      fields: [id, title]
sinks:
  out:
    topic: {sink}
    format: confluent-avro
    inputs: [slim]
{publish}
dead_letter:
  topic: {dead_letter}
"#
        ),
    )
}

#[test]
fn publish_search_read_by_name_derive_and_trace_lineage() {
    let server = CatalogServer::start();
    let url = server.url.as_str();
    let dir = PipelineDir::new();
    let (movies, out) = (unique("cat-movies"), unique("cat-recent"));
    create_topic(&movies, 1);
    create_topic(&out, 1);
    let v2 = dir.write("v2.avsc", MOVIE_V2);
    source_ok(
        url,
        &[
            "publish",
            "movies",
            "--topic",
            &movies,
            "--schema",
            v2.to_str().unwrap(),
            "--description",
            "Every film we license",
            "--owner",
            "content-team",
            "--tag",
            "media",
        ],
    );
    // Search by description, tag and field name; a miss finds nothing.
    assert!(source_ok(url, &["search", "LICENSE"]).starts_with("movies  topic"));
    assert!(source_ok(url, &["search", "media"]).starts_with("movies"));
    assert!(source_ok(url, &["search", "country"]).starts_with("movies"));
    assert_eq!(source_ok(url, &["search", "podcast"]), "");

    let records = [
        json!({"id": 1, "title": "Old", "year": 1999, "country": "US"}),
        json!({"id": 2, "title": "New", "year": 2005, "country": "FR"}),
        json!({"id": 3, "title": "Newer", "year": 2015, "country": "US"}),
    ];
    python_json(&["produce", broker(), url, &movies, v2.to_str().unwrap(), &jsonl(&dir, "m.jsonl", &records)]);
    let name = unique("recent");
    let publish = "    publish:\n      name: recent-movies\n      description: Movies since 2000, id and title\n      owner: search-team";
    let pipeline = pipeline_by_name(&dir, "p.yaml", &name, "    source: movies", &out, publish, url);
    let run = start_run(&pipeline);
    let (code, stdout, stderr) = python(&["consume", broker(), url, &out, "--count", "2", "--timeout", "60"]);
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    assert_eq!(code, 0, "{stdout}{stderr}\n{}", stopped.log);
    assert_eq!(lines(&stdout), vec![json!({"id": 2, "title": "New"}), json!({"id": 3, "title": "Newer"})]);

    // Who reads it, what derives from it.
    let shown = source_ok(url, &["show", "movies"]);
    assert!(shown.contains("  Every film we license\n") && shown.contains("owner:    content-team"), "{shown}");
    assert!(shown.contains("    id: long  — the catalog id\n"), "{shown}");
    assert!(shown.contains(&format!("read by:  {name} (version 1)")), "{shown}");
    assert!(shown.contains("derived:  recent-movies"), "{shown}");
    let derived: Json = serde_json::from_str(&source_ok(url, &["show", "recent-movies", "--json"])).unwrap();
    assert_eq!(derived["topic"], json!(out));
    assert_eq!(derived["subject"], json!(format!("{out}-value")));
    assert_eq!(derived["origin"]["kind"], "pipeline");
    assert_eq!(derived["origin"]["pipeline"], json!(name));
    assert_eq!(derived["origin"]["inputs"], json!(["movies"]));
    let steps = derived["origin"]["processors"].as_array().unwrap();
    assert_eq!(steps.iter().map(|p| p["id"].as_str().unwrap()).collect::<Vec<_>>(), ["recent", "slim"]);
    assert!(steps[0]["plugin"].as_str().unwrap().starts_with("mesh/filter@0.1."), "{steps:?}");
    assert!(steps[1]["digest"].as_str().unwrap().starts_with("sha256:"), "{steps:?}");
    assert_eq!(derived["schema"]["schema"]["fields"].as_array().unwrap().len(), 2);

    let lineage = source_ok(url, &["lineage", "recent-movies"]);
    assert_eq!(
        lineage,
        format!("lineage of source recent-movies\n  pipeline {name} -> source recent-movies\n  source movies -> pipeline {name}\n")
    );
    let dot = source_ok(url, &["lineage", "movies", "--format", "dot"]);
    assert!(dot.contains(&format!("\"pipeline {name}\" -> \"source recent-movies\";")), "{dot}");

    // Deprecation shows; the catalog reads the same after a restart and from a second server.
    source_ok(url, &["deprecate", "movies", "--reason", "use movies-v2"]);
    let listed = source_ok(url, &["list", "--json"]);
    let server = server.restart();
    assert_eq!(source_ok(&server.url, &["list", "--json"]), listed);
    let second = CatalogServer::start_on(&server.topic);
    assert_eq!(source_ok(&second.url, &["list", "--json"]), listed);
    assert!(source_ok(&second.url, &["show", "movies"]).contains("DEPRECATED: use movies-v2"));
    let (code, _, stderr) = source_cli(&second.url, &["show", "nothing"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("Source 'nothing' not found"), "{stderr}");
}

#[test]
fn upstream_evolution_goes_on_when_compatible_and_stops_when_breaking() {
    let server = CatalogServer::start();
    let url = server.url.as_str();
    let dir = PipelineDir::new();
    let (movies, out) = (unique("evo-movies"), unique("evo-out"));
    create_topic(&movies, 1);
    create_topic(&out, 1);
    let (v1, v2, no_year) =
        (dir.write("v1.avsc", MOVIE_V1), dir.write("v2.avsc", MOVIE_V2), dir.write("no-year.avsc", MOVIE_NO_YEAR));
    source_ok(url, &["publish", "movies", "--topic", &movies, "--schema", v1.to_str().unwrap()]);
    python_json(&[
        "produce",
        broker(),
        url,
        &movies,
        v1.to_str().unwrap(),
        &jsonl(&dir, "a.jsonl", &[json!({"id": 1, "title": "A", "year": 2001})]),
    ]);

    let name = unique("evo");
    let pipeline = pipeline_by_name(&dir, "p.yaml", &name, "    source: movies", &out, "", url);
    let run = start_run(&pipeline);
    assert_eq!(python(&["consume", broker(), url, &out, "--count", "1", "--timeout", "60"]).0, 0);

    // A compatible new version: the run goes on, its output keeps its shape.
    source_ok(url, &["publish", "movies", "--topic", &movies, "--schema", v2.to_str().unwrap()]);
    python_json(&[
        "produce",
        broker(),
        url,
        &movies,
        v2.to_str().unwrap(),
        &jsonl(&dir, "b.jsonl", &[json!({"id": 2, "title": "B", "year": 2002, "country": "FR"})]),
    ]);
    let (code, stdout, stderr) = python(&["consume", broker(), url, &out, "--count", "2", "--timeout", "60"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(lines(&stdout), vec![json!({"id": 1, "title": "A"}), json!({"id": 2, "title": "B"})]);

    // A version the running pipeline's reader (version 1) cannot read is refused, naming it...
    let (code, _, stderr) =
        source_cli(url, &["publish", "movies", "--topic", &movies, "--schema", no_year.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("pipeline {name} reads source movies with version 1")) && stderr.contains("year"),
        "{stderr}"
    );
    // ...unless forced; then a record written with it stops the run (on_schema_change: stop).
    source_ok(url, &["publish", "movies", "--topic", &movies, "--schema", no_year.to_str().unwrap(), "--force"]);
    python_json(&[
        "produce",
        broker(),
        url,
        &movies,
        no_year.to_str().unwrap(),
        &jsonl(&dir, "c.jsonl", &[json!({"id": 3, "title": "C", "country": "US"})]),
    ]);
    let stopped = run.wait_for_exit(Duration::from_secs(60));
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(stopped.log.contains("breaking schema change") && stopped.log.contains("year"), "{}", stopped.log);
    let committed = committed_offsets(&format!("meshhost-{name}"), &movies)[&0];
    assert!(committed <= 2, "committed {committed}: nothing past the record that stopped the run");

    // With on_schema_change: dead_letter (and the reader pinned to v1), the record is dead-lettered.
    let lenient = unique("evo-lenient");
    let source = format!("    source: movies\n    schema: {}\n    on_schema_change: dead_letter", v1.display());
    let lenient_out = unique("evo-out2");
    create_topic(&lenient_out, 1);
    let pipeline = pipeline_by_name(&dir, "lenient.yaml", &lenient, &source, &lenient_out, "", url);
    let dead_letter = std::fs::read_to_string(&pipeline)
        .unwrap()
        .lines()
        .find_map(|l| l.trim().strip_prefix("topic: ").filter(|t| t.starts_with("cat-dlq")).map(str::to_string))
        .unwrap();
    let run = start_run(&pipeline);
    let dead = read(&dead_letter, 1, Duration::from_secs(60));
    assert_clean_exit(&run.stop());
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].header("meshhost.error").unwrap().contains("field \"year\""),
        "{:?}",
        dead[0].header("meshhost.error")
    );
}

#[test]
fn the_lock_file_pins_reader_versions_and_update_shows_the_edge_diff() {
    let server = CatalogServer::start();
    let url = server.url.as_str();
    let dir = PipelineDir::new();
    let (movies, out) = (unique("lock-movies"), unique("lock-out"));
    let (v1, v2) = (dir.write("v1.avsc", MOVIE_V1), dir.write("v2.avsc", MOVIE_V2));
    source_ok(url, &["publish", "movies", "--topic", &movies, "--schema", v1.to_str().unwrap()]);
    // recent passes every field on; slim keeps id and title.
    let pipeline = pipeline_by_name(&dir, "p.yaml", &unique("lock"), "    source: movies", &out, "", url);
    let lock_path = pipeline.with_extension("lock");
    let (code, stdout, stderr) = meshhost(&["lock", pipeline.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("sources.movies -> {movies}-value version 1")), "{stdout}");
    let locked = std::fs::read_to_string(&lock_path).unwrap();
    assert!(locked.contains("[[schema]]") && locked.contains("version = 1"), "{locked}");

    // A new upstream version does not move the pipeline: validate plans against version 1.
    source_ok(url, &["publish", "movies", "--topic", &movies, "--schema", v2.to_str().unwrap()]);
    let (code, stdout, stderr) = validate(&pipeline);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(!stdout.contains("country"), "still read as version 1:\n{stdout}");
    let (code, stdout, _) = meshhost(&["lock", pipeline.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("version 1"), "lock without --update keeps the pin: {stdout}");

    // --update moves it and says what changes where.
    let (code, stdout, stderr) = meshhost(&["lock", pipeline.to_str().unwrap(), "--update"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("sources.movies -> {movies}-value version 2")), "{stdout}");
    assert!(stdout.contains("sources.movies: + country: string"), "{stdout}");
    assert!(stdout.contains("processors.recent.out: + country: string"), "{stdout}");
    assert!(
        !stdout.contains("processors.slim") && !stdout.contains("sinks.out"),
        "unchanged edges are not listed: {stdout}"
    );
    let (_, stdout, _) = validate(&pipeline);
    assert!(stdout.contains("country: string"), "{stdout}");
}
