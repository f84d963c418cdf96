//! Broker helpers: topics, producing the input, watching an output topic fill, the raw
//! passthrough baseline.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use meshhost::kafka::block_on;

use crate::data::Generator;

pub const PARTITIONS: i32 = 3;

/// A name no earlier run on the same broker used.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::AtomicU32;
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn admin(broker: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", broker).create().expect("admin client")
}

fn reader(broker: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

pub fn create_topics(broker: &str, names: &[&str]) {
    let admin = admin(broker);
    let topics: Vec<NewTopic<'_>> =
        names.iter().map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in block_on(admin.create_topics(&topics, &options)).expect("create_topics") {
        result.unwrap_or_else(|(topic, code)| panic!("create topic {topic}: {code}"));
    }
    let consumer = reader(broker, &unique("bench-meta"));
    let deadline = Instant::now() + Duration::from_secs(10);
    for name in names {
        loop {
            let metadata = consumer.fetch_metadata(Some(name), Duration::from_secs(5)).expect("metadata");
            if metadata
                .topics()
                .first()
                .is_some_and(|t| t.error().is_none() && t.partitions().len() == PARTITIONS as usize)
            {
                break;
            }
            assert!(Instant::now() < deadline, "topic {name} did not appear");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Best effort: frees the in-memory broker's storage between phases.
pub fn delete_topics(broker: &str, names: &[&str]) {
    let admin = admin(broker);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    if let Err(error) = block_on(admin.delete_topics(names, &options)) {
        eprintln!("note: could not delete topics {names:?}: {error}");
    }
}

/// Produce records 0..count of about `size` bytes; returns how many the filter keeps.
pub fn produce(broker: &str, topic: &str, size: usize, count: u64) -> u64 {
    let generator = Generator::new(size);
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    let mut kept = 0;
    for id in 0..count {
        let key = Generator::key(id);
        let value = generator.value(id);
        kept += u64::from(crate::data::kept(id));
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).key(key.as_slice()).payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => panic!("produce to {topic}: {error}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    kept
}

/// Sum of the high watermarks of `topic`.
pub fn end_offset(consumer: &BaseConsumer, topic: &str) -> i64 {
    (0..PARTITIONS).map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).expect("watermarks").1).sum()
}

/// Sum of the offsets group `group` committed on `topic` (-1 per partition without one).
pub fn committed(broker: &str, group: &str, topic: &str) -> i64 {
    let consumer = reader(broker, group);
    let mut list = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    committed.elements().iter().map(|e| if let Offset::Offset(o) = e.offset() { o } else { -1 }).sum()
}

/// The librdkafka tuning the raw passthrough runs with, as `meshhost run` does by default:
/// librdkafka (>= 2.3) stops fetching a partition for `fetch.queue.backoff.ms` (default 1000 ms)
/// whenever its prefetch queue is over `queued.min.messages` / `queued.max.messages.kbytes`, so
/// any consumer slower than the broker stalls in 1 s steps.
pub const TUNING: &[(&str, &str)] = &[("fetch.queue.backoff.ms", "10")];

/// MESHHOST_BENCH_KAFKA_PROPERTIES="key=value,...": extra librdkafka properties given to both
/// `meshhost run` (its pipeline's `kafka.properties`) and the raw passthrough, to try a tuning
/// on both sides without editing anything.
pub fn extra_properties() -> Vec<(String, String)> {
    std::env::var("MESHHOST_BENCH_KAFKA_PROPERTIES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// When an output topic received its first record and when it held `expected`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub first: Instant,
    pub done: Instant,
}

/// Polls `topic`'s watermarks every few ms until it holds `expected` records. `on_quarter` runs
/// once when it holds a quarter of them.
pub fn watch(
    broker: &str,
    topic: &str,
    expected: i64,
    timeout: Duration,
    alive: impl Fn() -> bool,
    mut on_quarter: impl FnMut(),
) -> Result<Progress, String> {
    let consumer = reader(broker, &unique("bench-watch"));
    let deadline = Instant::now() + timeout;
    let mut first = None;
    let mut quarter = false;
    loop {
        let end = end_offset(&consumer, topic);
        let now = Instant::now();
        if end > 0 && first.is_none() {
            first = Some(now);
        }
        if end >= expected / 4 && !quarter {
            quarter = true;
            on_quarter();
        }
        if end >= expected {
            return Ok(Progress { first: first.unwrap(), done: now });
        }
        if now > deadline {
            return Err(format!("{topic} holds {end} of {expected} records after {timeout:?}"));
        }
        if !alive() {
            return Err(format!("the producing side stopped with {topic} at {end} of {expected} records"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

struct Counting {
    delivered: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// The raw passthrough: consume `input` from the beginning and produce the same key, value,
/// headers (when `headers`) and timestamp to `output`, no decoding, until `count` records were
/// sent; then flush. meshhost forwards headers; without them, librdkafka's per-message header
/// parse (a buffer allocated to read a zero count) is skipped. Client
/// settings as meshhost's run loop (idempotent producer, linger.ms 5, murmur2_random, the same
/// extra properties), plus [`TUNING`].
pub fn passthrough(broker: &str, input: &str, output: &str, count: u64, headers: bool, running: &AtomicBool) {
    let mut common = ClientConfig::new();
    common.set("bootstrap.servers", broker);
    for (key, value) in TUNING {
        common.set(*key, *value);
    }
    for (key, value) in extra_properties() {
        common.set(key, value);
    }
    let consumer: BaseConsumer = common
        .clone()
        .set("group.id", unique("bench-passthrough"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let delivered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let producer: ThreadedProducer<Counting> = common
        .clone()
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .create_with_context(Counting { delivered: delivered.clone(), failed: failed.clone() })
        .expect("producer");
    consumer.subscribe(&[input]).expect("subscribe");
    let mut sent = 0;
    while sent < count && running.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(error)) => eprintln!("passthrough: consumer error: {error}"),
            Some(Ok(message)) => {
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(output);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                if let Some(payload) = message.payload() {
                    record = record.payload(payload);
                }
                if let Some(ts) = message.timestamp().to_millis() {
                    record = record.timestamp(ts);
                }
                if let Some(headers) = message.headers().filter(|_| headers) {
                    record = record.headers(headers.detach());
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                            record = returned;
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err((error, _)) => panic!("passthrough: produce: {error}"),
                    }
                }
                sent += 1;
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "passthrough deliveries failed");
}
