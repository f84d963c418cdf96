//! Several `meshhost run` processes of one pipeline in one consumer group: partitions handed
//! over as members join, leave and die, with nothing lost and join state kept right.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::join::{self, Kind};
use crate::movies::{self, FILTER_AND_PROJECTION, SLIM_SCHEMA};
use crate::pipeline::{assert_same, latest_by_key, wait_for_commits};
use crate::support::*;

/// Short sessions, so that a killed member's partitions move on in seconds (not 45 s).
const FAST_GROUP: &str = "kafka:\n  properties: {session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\"}\n";

/// Wait until `run` logs `text` (at least `times` times).
fn wait_for_log(run: &Running, text: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while run.log_so_far().matches(text).count() < times {
        assert!(Instant::now() < deadline, "never logged {text:?}:\n{}", run.log_so_far());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn stateless_instances_join_leave_and_die_without_losing_a_record() {
    let (input, output, dead_letter) = pipeline_topics("scale", 6);
    let all = movies::movies(300_000);
    let produce_part = |part: std::ops::Range<usize>| {
        let records: Vec<KeyValue> = all[part].iter().map(|m| (Some(m.key()), Some(m.avro()))).collect();
        produce(&input, &records);
    };
    let dir = PipelineDir::new();
    let name = unique("scale");
    let pipeline = movies::pipeline(&dir, &name, &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    add_kafka_section(&pipeline, FAST_GROUP);
    let group = format!("meshhost-{name}");

    produce_part(0..100_000);
    let a = start_run(&pipeline);
    let b = start_run(&pipeline);
    read(&output, 1000, Duration::from_secs(60));
    produce_part(100_000..200_000);
    let c = start_run(&pipeline); // joins mid-stream
    wait_for_log(&c, "partitions assigned", 1);
    produce_part(200_000..300_000);
    assert_clean_exit(&b.stop()); // leaves mid-stream
    wait_for_log(&c, "partitions assigned", 2);
    c.kill(); // dies mid-stream: its uncommitted window is read again by another member
    wait_for_commits(&group, &input);
    let a = a.stop();
    assert_clean_exit(&a);
    assert!(a.log.contains("partitions revoked"), "a saw the group change:\n{}", a.log);

    let expected: BTreeMap<Vec<u8>, apache_avro::types::Value> =
        all.iter().filter(|m| m.is_recent_us()).map(|m| (m.key(), m.slim())).collect();
    let records = read(&output, usize::MAX, Duration::from_secs(10));
    let latest = latest_by_key(&records, SLIM_SCHEMA);
    assert_same(&latest, &expected);
    let duplicates = records.len() - latest.len();
    println!(
        "fault: members join, leave, SIGKILL (3 instances) | in {} | out {} | lost 0 | duplicated {duplicates} | dead-lettered 0 | -",
        all.len(),
        expected.len()
    );
    assert!(duplicates < expected.len() / 4, "{duplicates} duplicates: more than an in-flight window");
}

/// A join run by instances that come and go (one killed): the final join table read from the
/// output equals the join computed from the inputs.
fn join_with_changing_members(kind: Kind) {
    let events = join::events(3000);
    let half = events.len() / 2;
    let setup = join::setup_with(&events[..half], kind, 6, FAST_GROUP);
    let state = |member: &str| setup.dir.path().join(format!("state-{member}")).to_str().unwrap().to_string();
    let (state_a, state_b, state_c) = (state("a"), state("b"), state("c"));

    let a = start_run_with(&setup.pipeline, &["--state-dir", &state_a]);
    read(&setup.output, 100, Duration::from_secs(60));
    let b = start_run_with(&setup.pipeline, &["--state-dir", &state_b]);
    wait_for_log(&b, "state restored: resuming", 1);
    let before = read(&setup.output, usize::MAX, Duration::from_secs(2)).len();
    join::produce_events(&setup, &events[half..]);
    // Both members join the second half for a while: a's state moves on past what b holds.
    read(&setup.output, before + 1000, Duration::from_secs(60));
    a.kill(); // its partitions move to b, which must restore them from the changelog again
    wait_for_log(&b, "partitions assigned", 2);
    let c = start_run_with(&setup.pipeline, &["--state-dir", &state_c]);
    wait_for_log(&c, "state restored: resuming", 1);
    join::wait_for_commits(&setup.group, &[&setup.movies, &setup.talents]);
    assert_clean_exit(&b.stop());
    // c takes everything; b's partitions come back to a member whose store never held them
    join::wait_for_commits(&setup.group, &[&setup.movies, &setup.talents]);
    let c = c.stop();
    assert_clean_exit(&c);
    assert!(c.log.contains("restored state from the changelog"), "{}", c.log);
    join::assert_join(&join::changelog(&setup.output), &join::reference(&events, kind));
}

#[test]
fn an_inner_join_stays_right_as_members_come_and_go() {
    join_with_changing_members(Kind::Inner);
}

#[test]
fn a_left_join_stays_right_as_members_come_and_go() {
    join_with_changing_members(Kind::Left);
}

#[test]
fn two_instances_cannot_share_a_state_directory() {
    let events = join::events(10);
    let setup = join::setup_with(&events, Kind::Inner, 3, "");
    let shared = setup.dir.path().join("shared").to_str().unwrap().to_string();
    let first = start_run_with(&setup.pipeline, &["--state-dir", &shared]);
    wait_for_log(&first, "pipeline running", 1);
    let second = start_run_with(&setup.pipeline, &["--state-dir", &shared]).wait_for_exit(Duration::from_secs(30));
    assert_eq!(second.status.code(), Some(1), "{}", second.log);
    assert!(
        second.log.contains(&format!(
            "state directory {shared}: another meshhost run is using it; give every instance its own state \
             directory (--state-dir)"
        )),
        "{}",
        second.log
    );
    assert_clean_exit(&first.stop());
}

#[test]
fn a_restore_longer_than_the_poll_interval_keeps_the_member_in_the_group() {
    let events = join::events(300);
    let setup = join::setup_with(
        &events,
        Kind::Inner,
        3,
        "kafka:\n  properties: {session.timeout.ms: \"1000\", heartbeat.interval.ms: \"300\", max.poll.interval.ms: \"1000\"}\n",
    );
    // A large changelog for partition 0 (keys the join never reads): restoring it takes longer
    // than max.poll.interval.ms, which a restore on the polling thread would exceed.
    let changelog = format!("{}-enriched-changelog", setup.group);
    create_topic(&changelog, 3);
    let filler: Vec<KeyValue> =
        (0..400_000).map(|i| (Some(format!("filler-{i}").into_bytes()), Some(vec![0u8; 16]))).collect();
    produce_to_partition(&changelog, 0, &filler);

    let run = start_run(&setup.pipeline);
    join::wait_for_commits(&setup.group, &[&setup.movies, &setup.talents]);
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    let restore_ms: u64 = stopped
        .log
        .lines()
        .filter(|l| l.contains("restored state from the changelog") && l.contains("partition=0"))
        .find_map(|l| l.split("elapsed_ms=").nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no restore of partition 0 logged:\n{}", stopped.log));
    assert!(restore_ms > 1000, "the restore took {restore_ms} ms: too fast to show anything");
    assert_eq!(stopped.log.matches("partitions assigned").count(), 1, "kicked out and reassigned:\n{}", stopped.log);
    join::assert_join(&join::changelog(&setup.output), &join::reference(&events, Kind::Inner));
}

#[test]
fn a_static_member_restarted_within_its_session_keeps_its_partitions_without_a_rebalance() {
    let (input, output, dead_letter) = pipeline_topics("static", 4);
    let dir = PipelineDir::new();
    let name = unique("static");
    let pipeline = movies::pipeline(&dir, &name, &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    let group_settings = "kafka:\n  properties: {session.timeout.ms: \"10000\", heartbeat.interval.ms: \"500\"}\n";
    add_kafka_section(&pipeline, group_settings);

    let a = start_run_with(&pipeline, &["--instance-id", "a"]);
    wait_for_log(&a, "partitions assigned", 1);
    let b = start_run_with(&pipeline, &["--instance-id", "b"]);
    wait_for_log(&b, "partitions assigned", 1);
    std::thread::sleep(Duration::from_secs(1));
    let revokes_before = a.log_so_far().matches("partitions revoked").count();
    assert_clean_exit(&b.stop());
    let b = start_run_with(&pipeline, &["--instance-id", "b"]);
    wait_for_log(&b, "partitions assigned", 1);
    let movies = movies::movies(200);
    let records: Vec<KeyValue> = movies.iter().map(|m| (Some(m.key()), Some(m.avro()))).collect();
    produce(&input, &records);
    wait_for_commits(&format!("meshhost-{name}"), &input);
    assert_eq!(
        a.log_so_far().matches("partitions revoked").count(),
        revokes_before,
        "the restart of b made a give its partitions up:\n{}",
        a.log_so_far()
    );
    assert_clean_exit(&b.stop());
    assert_clean_exit(&a.stop());
    let expected: BTreeMap<_, _> = movies.iter().filter(|m| m.is_recent_us()).map(|m| (m.key(), m.slim())).collect();
    assert_same(
        &crate::pipeline::by_key(&read(&output, expected.len(), Duration::from_secs(30)), SLIM_SCHEMA),
        &expected,
    );
}

#[test]
fn an_unreadable_local_store_is_rebuilt_from_the_changelog() {
    let events = join::events(400);
    let half = events.len() / 2;
    let setup = join::setup_with(&events[..half], Kind::Left, 3, "");
    let run = start_run(&setup.pipeline);
    join::wait_for_commits(&setup.group, &[&setup.movies, &setup.talents]);
    assert_clean_exit(&run.stop());

    // The store file is damaged: cut to half and its header overwritten.
    let store = setup.dir.path().join("state").join("enriched.redb");
    let mut bytes = std::fs::read(&store).unwrap();
    bytes.truncate(bytes.len() / 2);
    bytes[..64].fill(0xa5);
    std::fs::write(&store, bytes).unwrap();

    join::produce_events(&setup, &events[half..]);
    let run = start_run(&setup.pipeline);
    join::wait_for_commits(&setup.group, &[&setup.movies, &setup.talents]);
    let stopped = run.stop();
    assert_clean_exit(&stopped);
    assert!(
        stopped.log.contains("the local state store is unreadable: removing it, state is rebuilt from the changelog"),
        "{}",
        stopped.log
    );
    assert_eq!(stopped.log.matches("restored state from the changelog").count(), 3, "{}", stopped.log);
    println!(
        "fault: local state store damaged | in {} | rebuilt from the changelog | lost 0 (final join = recomputed) | - | 0 | at start",
        events.len()
    );
    join::assert_join(&join::changelog(&setup.output), &join::reference(&events, Kind::Left));
}

#[test]
fn a_state_directory_that_cannot_be_created_is_an_error_naming_it() {
    let events = join::events(5);
    let setup = join::setup_with(&events, Kind::Inner, 3, "");
    let file = setup.dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let state_dir = file.join("state");
    let stopped = start_run_with(&setup.pipeline, &["--state-dir", state_dir.to_str().unwrap()])
        .wait_for_exit(Duration::from_secs(30));
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(stopped.log.contains(&format!("state directory {}: ", state_dir.display())), "{}", stopped.log);
}

#[test]
fn cooperative_rebalancing_is_refused_with_a_message() {
    let (input, output, dead_letter) = pipeline_topics("coop", 2);
    let dir = PipelineDir::new();
    let pipeline =
        movies::pipeline(&dir, &unique("coop"), &input, FILTER_AND_PROJECTION, "slim", &output, &dead_letter);
    let kafka = "kafka:\n  properties: {partition.assignment.strategy: cooperative-sticky}\n";
    add_kafka_section(&pipeline, kafka);
    let stopped = start_run(&pipeline).wait_for_exit(Duration::from_secs(60));
    assert_eq!(stopped.status.code(), Some(1), "{}", stopped.log);
    assert!(
        stopped.log.contains("uses cooperative rebalancing (partition.assignment.strategy cooperative-sticky)"),
        "{}",
        stopped.log
    );
}
