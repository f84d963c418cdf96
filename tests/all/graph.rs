//! `meshhost graph`: the quick-start (as tests/snapshots/graph/movies.yaml) and join pipelines drawn in each format, compared with the
//! snapshots in tests/snapshots/graph (MESHHOST_UPDATE_SNAPSHOTS=1 rewrites them; review the diff).

use crate::support::*;

fn check(pipeline: &str, snapshot: &str, format: &str) {
    let pipeline = workspace().join(pipeline);
    let (code, stdout, stderr) = meshhost(&["graph", pipeline.to_str().unwrap(), "--format", format]);
    assert_eq!(code, 0, "{stderr}");
    let path = workspace().join("tests/snapshots/graph").join(snapshot);
    if std::env::var_os("MESHHOST_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &stdout).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(stdout, expected, "{} differs from {}", format, path.display());
}

#[test]
fn the_quick_start_pipeline_in_every_format() {
    check("tests/snapshots/graph/movies.yaml", "movies.txt", "text");
    check("tests/snapshots/graph/movies.yaml", "movies.dot", "dot");
    check("tests/snapshots/graph/movies.yaml", "movies.mmd", "mermaid");
}

#[test]
fn the_join_pipeline_marks_its_stateful_processor() {
    check("demo/join/pipeline.yaml", "join.txt", "text");
    check("demo/join/pipeline.yaml", "join.dot", "dot");
    check("demo/join/pipeline.yaml", "join.mmd", "mermaid");
    let text = std::fs::read_to_string(workspace().join("tests/snapshots/graph/join.txt")).unwrap();
    assert!(text.contains("enriched  stateful processor  mesh/join@0.1"), "{text}");
}

#[test]
fn a_table_sink_is_drawn_with_its_table_and_mode() {
    check("tests/snapshots/graph/to-postgres.yaml", "to-postgres.txt", "text");
    let text = std::fs::read_to_string(workspace().join("tests/snapshots/graph/to-postgres.txt")).unwrap();
    assert!(text.contains("table   sink       table public.us_movies (upsert on id)"), "{text}");
    assert!(text.contains("log     sink       table audit.us_movies_log (insert)"), "{text}");
}
