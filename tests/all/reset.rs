//! `meshhost reset`: replay as an ordinary operation.

use std::time::Duration;

use crate::movies::{self, FILTER_AND_PROJECTION};
use crate::support::*;

#[test]
fn reset_to_earliest_replays_everything_and_is_refused_while_the_pipeline_runs() {
    let (input, output, dead_letter) = pipeline_topics("reset", 2);
    let movies = movies::movies(30);
    let kept = movies.iter().filter(|m| m.is_recent_us()).count();
    produce(&input, &movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect::<Vec<_>>());
    let dir = PipelineDir::new();
    let name = unique("reset");
    let group = format!("meshhost-{name}");
    let pipeline = movies::pipeline(&dir, &name, &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    let pipeline = pipeline.to_str().unwrap();
    let reset = |to: &str| meshhost(&["reset", pipeline, "--to", to, "--bootstrap-servers", broker()]);

    let run = start_run(pipeline.as_ref());
    assert_eq!(read(&output, kept, Duration::from_secs(60)).len(), kept);
    crate::pipeline::wait_for_commits(&group, &input);
    let (code, _, stderr) = reset("earliest");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("consumer group {group} has 1 live member(s)")), "{stderr}");
    assert_clean_exit(&run.stop());

    let ends = end_offsets(&input);
    let (code, stdout, stderr) = reset("earliest");
    assert_eq!(code, 0, "{stderr}");
    for (partition, end) in &ends {
        assert!(stdout.contains(&format!("{input}/{partition}: {end} -> 0")), "{stdout}");
    }
    assert!(committed_offsets(&group, &input).values().all(|o| *o == 0));

    // The next run processes every record again.
    let run = start_run(pipeline.as_ref());
    assert_eq!(read_all(&output, 2 * kept, Duration::from_secs(60)).len(), 2 * kept);
    crate::pipeline::wait_for_commits(&group, &input);
    assert_clean_exit(&run.stop());

    // One partition to one offset; the others keep theirs.
    let (code, stdout, stderr) = reset(&format!("{input}:1:1"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), format!("{input}/1: {} -> 1", ends[&1]));
    let committed = committed_offsets(&group, &input);
    assert_eq!((committed[&0], committed[&1]), (ends[&0], 1));
    let (code, _, stderr) = reset("elsewhere:0:0");
    assert_eq!(code, 2);
    assert!(stderr.contains("not a source of this pipeline"), "{stderr}");
}
