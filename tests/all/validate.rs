//! `meshhost validate`: offline checks that report every problem at once.

use crate::movies::{FILTER_AND_PROJECTION, MOVIE_SCHEMA};
use crate::support::{validate, PipelineDir};

fn pipeline(processors: &str, extra: &str) -> (PipelineDir, std::path::PathBuf) {
    let dir = PipelineDir::new();
    dir.write("movie.avsc", MOVIE_SCHEMA);
    let path = dir.write(
        "pipeline.yaml",
        &format!("name: check\n{extra}sources:\n  movies:\n    topic: movies\n    format: avro\n    schema: movie.avsc\nprocessors:{processors}\nsinks:\n  out:\n    topic: out\n    format: avro\n    inputs: [slim]\ndead_letter:\n  topic: dlq\n"),
    );
    (dir, path)
}

#[test]
fn a_valid_pipeline_passes_and_shows_each_edge_schema() {
    let (_dir, path) = pipeline(FILTER_AND_PROJECTION, "");
    let (code, stdout, stderr) = validate(&path);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("valid (1 sources, 2 processors, 1 sinks)"), "{stdout}");
    assert!(stdout.contains("slim.out: "), "{stdout}");
    // One field per line; the renamed field is in the output schema.
    assert!(
        stdout
            .contains("slim.out: record demo.Movie_projection\n      id: long\n      name: string\n      year: int\n"),
        "{stdout}"
    );
    assert!(stdout.contains("      director: demo.Person {name: string, born: int or null}\n"), "{stdout}");
}

#[test]
fn every_error_is_reported_at_once_with_its_path() {
    let processors = r#"
  recent:
    uses: mesh/filter@0.1
    inputs: [movies]
    with:
      condition: "year >= && country == 'US'"
  slim:
    uses: mesh/projection@0.1
    inputs: [movies]
    with:
      fields: [id, titel, year]
  lost:
    uses: mesh/projection@0.1
    inputs: [nowhere]
    with:
      fields: [id]
  ghost:
    uses: acme/ghost@1
    inputs: [movies]
  a:
    uses: mesh/projection@0.1
    inputs: [b]
    with: {fields: [id]}
  b:
    uses: mesh/projection@0.1
    inputs: [a]
    with: {fields: [id]}
"#;
    let (_dir, path) = pipeline(processors, "colour: blue\n");
    let (code, _stdout, stderr) = validate(&path);
    assert_eq!(code, Some(2), "{stderr}");
    let expected = [
        "colour: unknown key",
        "processors.lost.inputs[0]: unknown input \"nowhere\"",
        "processors: cycle: a -> b -> a",
        "processors.recent.with.condition: ",
        "processors.slim.with.fields[1]: no field \"titel\" in input schema",
        "processors.ghost.uses: no plugin named \"acme/ghost\"",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
}

#[test]
fn unknown_keys_inside_entities_are_errors() {
    let (_dir, path) =
        pipeline(&FILTER_AND_PROJECTION.replace("    inputs: [recent]", "    inputs: [recent]\n    with_typo: 1"), "");
    let (code, _stdout, stderr) = validate(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("processors.slim.with_typo: unknown field `with_typo`"), "{stderr}");
}

#[test]
fn a_missing_schema_file_names_the_source() {
    let (dir, path) = pipeline(FILTER_AND_PROJECTION, "");
    std::fs::remove_file(dir.dir.path().join("movie.avsc")).unwrap();
    let (code, _stdout, stderr) = validate(&path);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("sources.movies.schema: cannot read"), "{stderr}");
}
