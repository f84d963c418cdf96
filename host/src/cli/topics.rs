//! `meshhost produce` and `meshhost consume`: JSON lines into a topic (Avro-encoded with a
//! schema when the topic holds Avro, framed for a Schema Registry when it holds
//! `confluent-avro`) and a topic's records out as JSON lines. For demos, debugging and scripts,
//! in the spirit of `rpk topic produce/consume`.

use std::collections::HashMap;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use meshhost_avro::Schema;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::common::{load_and_plan, read_schema, CliError, Overrides};
use crate::codec;
use crate::plugin::PluginEngine;
use crate::schema_registry::{wire, RegistryClient};

/// How `produce` writes values.
pub enum ValueEncoding<'a> {
    /// The JSON line as it is.
    Json,
    /// A binary Avro datum of the schema.
    Avro(&'a Schema),
    /// An Avro datum of the schema registered with `id`, in the Confluent wire format.
    ConfluentAvro { schema: &'a Schema, id: u32 },
}

/// How `consume` reads values.
pub enum ValueDecoding<'a> {
    /// JSON when the value is JSON, else text.
    Text,
    /// Binary Avro datums of the schema.
    Avro(&'a Schema),
    /// The Confluent wire format: each value's writer schema fetched from the registry by id.
    ConfluentAvro(&'a RegistryClient),
}

/// Produce each JSON object line of `input` to `topic`, encoded as `encoding` says; the key is
/// the value of `key_field` when given. Returns the count.
pub fn produce(
    bootstrap_servers: &str,
    topic: &str,
    encoding: ValueEncoding,
    key_field: Option<&str>,
    input: impl BufRead,
) -> anyhow::Result<u64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .create()
        .context("cannot create the Kafka producer")?;
    let mut count = 0;
    for (number, line) in input.lines().enumerate() {
        let line = line.context("cannot read the input")?;
        if line.trim().is_empty() {
            continue;
        }
        let json: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", number + 1))?;
        let key = match key_field {
            None => None,
            Some(field) => match json.get(field) {
                Some(serde_json::Value::String(text)) => Some(text.clone().into_bytes()),
                Some(serde_json::Value::Null) | None => bail!("line {}: no key field {field:?}", number + 1),
                Some(other) => Some(other.to_string().into_bytes()),
            },
        };
        let datum = |schema| {
            codec::json_to_avro(schema, line.as_bytes()).map_err(|e| anyhow::anyhow!("line {}: {e}", number + 1))
        };
        let value = match encoding {
            ValueEncoding::Json => line.clone().into_bytes(),
            ValueEncoding::Avro(schema) => datum(schema)?,
            ValueEncoding::ConfluentAvro { schema, id } => wire::frame(id, &datum(schema)?),
        };
        let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).payload(&value);
        if let Some(key) = &key {
            record = record.key(key);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((error, returned))
                    if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    record = returned;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => bail!("cannot produce to {topic}: {error}"),
            }
        }
        producer.poll(Duration::ZERO);
        count += 1;
    }
    producer.flush(Duration::from_secs(60)).context("cannot flush the producer")?;
    Ok(count)
}

/// Print records of `topic` from the beginning as JSON lines `{"partition", "offset", "key",
/// "value"}` (and `"schema_id"` for the Confluent wire format), decoding values as `decoding`
/// says. Stops after `max` records, or when no record came for `idle`.
pub fn consume(
    bootstrap_servers: &str,
    topic: &str,
    decoding: ValueDecoding,
    max: Option<usize>,
    idle: Duration,
    mut out: impl Write,
) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .set("group.id", format!("meshhost-consume-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .context("cannot create the Kafka consumer")?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).context("cannot reach Kafka")?;
    let Some(topic_metadata) = metadata.topics().first().filter(|t| t.error().is_none()) else {
        bail!("topic {topic} does not exist");
    };
    let mut assignment = TopicPartitionList::new();
    for partition in topic_metadata.partitions() {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut writers: HashMap<u32, Result<Schema, String>> = HashMap::new();
    let mut count = 0;
    let mut last = Instant::now();
    while max.is_none_or(|max| count < max) && last.elapsed() < idle {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message?;
        last = Instant::now();
        let undecodable = |reason: String| serde_json::json!({"undecodable": reason});
        let mut schema_id = None;
        let value = match (message.payload(), &decoding) {
            (None, _) => serde_json::Value::Null,
            (Some(bytes), ValueDecoding::Avro(schema)) => {
                meshhost_avro::datum_to_json(schema, bytes).unwrap_or_else(|e| undecodable(e.to_string()))
            }
            (Some(bytes), ValueDecoding::ConfluentAvro(registry)) => match wire::split(bytes) {
                Err(e) => undecodable(e.to_string()),
                Ok((id, datum)) => {
                    schema_id = Some(id);
                    let writer = writers.entry(id).or_insert_with(|| {
                        let text = registry.schema_by_id(id).map_err(|e| e.to_string())?;
                        Schema::parse(&text).map_err(|e| format!("schema {id}: {e}"))
                    });
                    match writer {
                        Ok(schema) => {
                            meshhost_avro::datum_to_json(schema, datum).unwrap_or_else(|e| undecodable(e.to_string()))
                        }
                        Err(reason) => undecodable(reason.clone()),
                    }
                }
            },
            (Some(bytes), ValueDecoding::Text) => serde_json::from_slice(bytes)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())),
        };
        let mut line = serde_json::json!({
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "value": value,
        });
        if let Some(id) = schema_id {
            line["schema_id"] = id.into();
        }
        if let Some(headers) = message.headers() {
            use rdkafka::message::Headers as _;
            let headers: serde_json::Map<String, serde_json::Value> = headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(|v| String::from_utf8_lossy(v).into_owned()).into()))
                .collect();
            line["headers"] = headers.into();
        }
        writeln!(out, "{line}")?;
        count += 1;
    }
    Ok(count)
}

/// The arguments of `meshhost produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The topic.
    pub topic: String,
    #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,
    /// Avro schema file: encode each line as a binary Avro datum of it.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Use this field of each line as the record key.
    #[arg(long)]
    pub key_field: Option<String>,
    /// With --schema: register it with this Schema Registry and write the Confluent wire format.
    #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
    pub schema_registry: Option<String>,
    /// The subject to register the schema under (default: TOPIC-value).
    #[arg(long, requires = "schema_registry")]
    pub subject: Option<String>,
}

pub fn produce_command(args: ProduceArgs) -> Result<(), CliError> {
    let ProduceArgs { topic, bootstrap_servers, schema, key_field, schema_registry, subject } = args;
    use self::ValueEncoding;
    let schema = schema.map(|path| read_schema(&path)).transpose()?;
    let registered = match (&schema, schema_registry) {
        (Some(schema), Some(url)) => {
            let registry = RegistryClient::for_url(&url);
            let subject = subject.unwrap_or_else(|| format!("{topic}-value"));
            let id = registry
                .register(&subject, &schema.to_json())
                .with_context(|| format!("cannot register the schema under subject {subject:?}"))?;
            eprintln!("schema id {id} under subject {subject:?}");
            Some(id)
        }
        _ => None,
    };
    let encoding = match (&schema, registered) {
        (Some(schema), Some(id)) => ValueEncoding::ConfluentAvro { schema, id },
        (Some(schema), None) => ValueEncoding::Avro(schema),
        (None, _) => ValueEncoding::Json,
    };
    let stdin = std::io::stdin().lock();
    let count = produce(&bootstrap_servers, &topic, encoding, key_field.as_deref(), stdin)?;
    eprintln!("produced {count} records to {topic}");
    Ok(())
}

/// The arguments of `meshhost consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The topic.
    pub topic: String,
    #[arg(long, env = "MESHHOST_BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    pub bootstrap_servers: String,
    /// Avro schema file of the values.
    #[arg(long, conflicts_with = "pipeline")]
    pub schema: Option<PathBuf>,
    /// Decode with the schema of this pipeline's sink writing to the topic.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Stop after this many records.
    #[arg(long)]
    pub max: Option<usize>,
    /// Stop when no record came for this many seconds.
    #[arg(long, default_value_t = 3.0)]
    pub idle_seconds: f64,
    /// Values are in the Confluent wire format: decode each with its writer schema from this
    /// Schema Registry (unless --schema or --pipeline says otherwise).
    #[arg(long, env = "MESHHOST_SCHEMA_REGISTRY_URL")]
    pub schema_registry: Option<String>,
}

pub fn consume_command(args: ConsumeArgs) -> Result<(), CliError> {
    let ConsumeArgs { topic, bootstrap_servers, schema, pipeline, max, idle_seconds, schema_registry } = args;
    use self::ValueDecoding;
    // What the values are: a schema file, a pipeline's sink, or a registry's ids.
    let mut registry = schema_registry.map(|url| Arc::new(RegistryClient::for_url(&url)));
    let schema = match (schema, pipeline) {
        (Some(path), _) => Some(read_schema(&path)?),
        (None, Some(pipeline)) => {
            let engine = PluginEngine::new()?;
            let overrides = Overrides { offline: true, ..Overrides::default() };
            let (_, topology) = load_and_plan(&pipeline, overrides, &engine)?;
            let sink = topology
                .sinks
                .iter()
                .find(|s| s.topic == topic)
                .ok_or_else(|| anyhow::anyhow!("no sink of {} writes to topic {topic}", pipeline.display()))?;
            match &sink.encoder {
                crate::codec::SinkEncoder::ConfluentAvro { registry: sink_registry, .. } => {
                    registry = Some(sink_registry.clone());
                    None
                }
                _ => Some((*sink.schema.parsed).clone()),
            }
        }
        (None, None) => None,
    };
    let decoding = match (&schema, &registry) {
        (Some(schema), _) => ValueDecoding::Avro(schema),
        (None, Some(registry)) => ValueDecoding::ConfluentAvro(registry),
        (None, None) => ValueDecoding::Text,
    };
    let idle = std::time::Duration::from_secs_f64(idle_seconds);
    consume(&bootstrap_servers, &topic, decoding, max, idle, std::io::stdout().lock())?;
    Ok(())
}
