//! `meshhost reset`: replay and backfill as an ordinary operation — move a pipeline's committed
//! offsets (its consumer group's) on every source topic, while no instance runs.
//!
//! State: a stateful processor's local store and changelog are kept by default; replayed records
//! update it again (the stock join keeps the latest value per key, so a replay converges on the
//! same state). `--wipe-state` deletes the local stores and the changelog topics, so the next run
//! rebuilds the state from the replayed records alone.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::common::{configure, run_settings, CliError, Overrides};
use crate::config::PipelineConfig;
use crate::config::Problems;
use crate::kafka::QuietContext;

/// Where to move the offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTarget {
    /// The start of every partition.
    Earliest,
    /// The end of every partition (skip what is there now).
    Latest,
    /// The first record at or after this time (milliseconds since the epoch).
    Time(i64),
    /// One partition to one offset; the others keep theirs.
    Offset { topic: String, partition: i32, offset: i64 },
}

impl std::str::FromStr for ResetTarget {
    type Err = String;

    /// `earliest`, `latest`, an RFC 3339 time (`2026-11-29T12:00:00Z`) or `TOPIC:PARTITION:OFFSET`.
    fn from_str(text: &str) -> Result<ResetTarget, String> {
        match text {
            "earliest" => return Ok(ResetTarget::Earliest),
            "latest" => return Ok(ResetTarget::Latest),
            _ => {}
        }
        if let Some((topic, rest)) = text.rsplit_once(':').and_then(|(head, offset)| {
            let (topic, partition) = head.rsplit_once(':')?;
            Some((topic.to_string(), (partition.parse::<i32>().ok()?, offset.parse::<i64>().ok()?)))
        }) {
            let (partition, offset) = rest;
            return Ok(ResetTarget::Offset { topic, partition, offset });
        }
        let time = humantime::parse_rfc3339_weak(text).map_err(|_| {
            format!("{text:?}: use earliest, latest, a time (2026-11-29T12:00:00Z) or TOPIC:PARTITION:OFFSET")
        })?;
        let millis = time.duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis();
        Ok(ResetTarget::Time(millis as i64))
    }
}

/// Why a reset did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("consumer group {group} has {members} live member(s): stop every instance of the pipeline first")]
    GroupActive { group: String, members: usize },
    #[error("topic {topic} has no partition {partition}")]
    NoPartition { topic: String, partition: i32 },
    #[error("topic {0} is not a source of this pipeline")]
    NotASource(String),
    #[error("Kafka: {what}")]
    Kafka {
        what: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot wipe the state in {path}")]
    Wipe {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// One partition moved: (topic, partition, old committed offset or None, new offset).
pub type Moved = (String, i32, Option<i64>, i64);

/// Move the offsets of `config`'s consumer group on its source topics to `target`. With
/// `wipe_state`, also delete its processors' local stores and changelog topics.
pub fn reset(
    config: &PipelineConfig,
    bootstrap_servers: &str,
    target: &ResetTarget,
    wipe_state: bool,
) -> Result<Vec<Moved>, ResetError> {
    let group = config.group_id();
    let kafka = |what: &str| {
        let what = what.to_string();
        move |source| ResetError::Kafka { what, source }
    };
    let consumer: BaseConsumer<QuietContext> = crate::kafka::client_config(bootstrap_servers, &[])
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create_with_context(QuietContext::default())
        .map_err(kafka("cannot create a consumer"))?;
    let timeout = Duration::from_secs(10);
    let groups = consumer.fetch_group_list(Some(&group), timeout).map_err(kafka("cannot describe the group"))?;
    if let Some(live) = groups.groups().iter().find(|g| g.name() == group && !g.members().is_empty()) {
        return Err(ResetError::GroupActive { group, members: live.members().len() });
    }

    let mut topics: Vec<&str> = config.sources.values().map(|s| s.topic.as_str()).collect();
    topics.sort();
    topics.dedup();
    if let ResetTarget::Offset { topic, .. } = target {
        if !topics.contains(&topic.as_str()) {
            return Err(ResetError::NotASource(topic.clone()));
        }
    }
    let metadata = consumer.fetch_metadata(None, timeout).map_err(kafka("cannot read metadata"))?;
    let mut current = TopicPartitionList::new();
    for topic in &topics {
        let Some(found) = metadata.topics().iter().find(|t| t.name() == *topic) else { continue };
        for partition in found.partitions() {
            current.add_partition(topic, partition.id());
        }
    }
    let committed =
        consumer.committed_offsets(current.clone(), timeout).map_err(kafka("cannot read committed offsets"))?;
    let committed_at =
        |topic: &str, partition: i32| match committed.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        };

    let mut new = TopicPartitionList::new();
    let mut moved = Vec::new();
    for element in current.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        let offset = match target {
            ResetTarget::Offset { topic: t, partition: p, offset } if t == topic && *p == partition => *offset,
            ResetTarget::Offset { .. } => continue,
            ResetTarget::Earliest | ResetTarget::Latest | ResetTarget::Time(_) => {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, timeout)
                    .map_err(kafka(&format!("cannot read the ends of {topic}/{partition}")))?;
                match target {
                    ResetTarget::Earliest => low,
                    ResetTarget::Latest => high,
                    ResetTarget::Time(millis) => {
                        let mut query = TopicPartitionList::new();
                        query
                            .add_partition_offset(topic, partition, Offset::Offset(*millis))
                            .map_err(kafka("bad partition"))?;
                        let found =
                            consumer.offsets_for_times(query, timeout).map_err(kafka("cannot look up the time"))?;
                        match found.find_partition(topic, partition).map(|e| e.offset()) {
                            Some(Offset::Offset(offset)) => offset,
                            _ => high, // nothing at or after that time
                        }
                    }
                    ResetTarget::Offset { .. } => unreachable!("handled above"),
                }
            }
        };
        new.add_partition_offset(topic, partition, Offset::Offset(offset)).map_err(kafka("bad partition"))?;
        moved.push((topic.to_string(), partition, committed_at(topic, partition), offset));
    }
    if let ResetTarget::Offset { topic, partition, .. } = target {
        if moved.is_empty() {
            return Err(ResetError::NoPartition { topic: topic.clone(), partition: *partition });
        }
    }
    consumer.commit(&new, CommitMode::Sync).map_err(kafka("cannot commit the new offsets"))?;

    if wipe_state {
        wipe(config, bootstrap_servers)?;
    }
    Ok(moved)
}

/// Delete the local stores of the pipeline's processors and their changelog topics.
fn wipe(config: &PipelineConfig, bootstrap_servers: &str) -> Result<(), ResetError> {
    let dir = config.state_dir();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| ResetError::Wipe { path: dir.display().to_string(), source })?;
    }
    let group = config.group_id();
    let names: Vec<String> =
        config.processors.keys().map(|id| crate::state::Changelog::new(&group, id, 1).topic).collect();
    let admin: rdkafka::admin::AdminClient<QuietContext> = crate::kafka::client_config(bootstrap_servers, &[])
        .create_with_context(QuietContext::default())
        .map_err(|source| ResetError::Kafka { what: "cannot create an admin client".into(), source })?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|source| ResetError::Kafka { what: "cannot read metadata".into(), source })?;
    let changelogs: Vec<String> =
        metadata.topics().iter().map(|t| t.name().to_string()).filter(|t| names.contains(t)).collect();
    if !changelogs.is_empty() {
        let names: Vec<&str> = changelogs.iter().map(String::as_str).collect();
        let options = rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        crate::kafka::block_on(admin.delete_topics(&names, &options))
            .map_err(|source| ResetError::Kafka { what: "cannot delete the changelog topics".into(), source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("earliest".parse(), Ok(ResetTarget::Earliest));
        assert_eq!("latest".parse(), Ok(ResetTarget::Latest));
        assert_eq!(
            "movies.v2:3:120".parse(),
            Ok(ResetTarget::Offset { topic: "movies.v2".into(), partition: 3, offset: 120 })
        );
        assert_eq!("1970-01-01T00:00:01Z".parse(), Ok(ResetTarget::Time(1000)));
        assert!("yesterday".parse::<ResetTarget>().is_err());
    }
}

/// The arguments of `meshhost reset`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// earliest, latest, a time (2026-11-29T12:00:00Z) or TOPIC:PARTITION:OFFSET.
    #[arg(long)]
    pub to: ResetTarget,
    /// Also delete stateful processors' local stores and changelog topics: the next run
    /// rebuilds their state from the replayed records alone.
    #[arg(long)]
    pub wipe_state: bool,
    #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Sources catalog URL, overriding the file's `catalog.url`.
    #[arg(long, env = "MESHHOST_CATALOG_URL")]
    pub catalog: Option<String>,
}

pub fn execute(args: ResetArgs) -> Result<(), CliError> {
    let ResetArgs { pipeline, to, wipe_state, bootstrap_servers, catalog } = args;
    let overrides = Overrides { catalog, offline: true, ..Overrides::default() };
    let (config, problems) = configure(&pipeline, overrides)?;
    problems.into_result(()).map_err(CliError::Invalid)?;
    let servers = run_settings(&config, bootstrap_servers).bootstrap_servers;
    let moved = reset(&config, &servers, &to, wipe_state).map_err(|error| match error {
        ResetError::Kafka { .. } | ResetError::Wipe { .. } => CliError::Failed(error.into()),
        error => CliError::Invalid(Problems::one("", error.to_string())),
    })?;
    for (topic, partition, before, after) in moved {
        let before = before.map_or_else(|| "none".to_string(), |o| o.to_string());
        println!("{topic}/{partition}: {before} -> {after}");
    }
    if wipe_state {
        println!("state wiped: the next run rebuilds it from the records it reads");
    }
    Ok(())
}
