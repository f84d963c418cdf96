//! Kafka client utilities shared by the Kafka source (`source::kafka`), the Kafka sink
//! (`sink::kafka`), the state changelog, the CLI and the tests: client settings, metadata,
//! topic creation, a quiet client context, and the partitioners of Kafka's clients.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

mod partitioner;
mod quiet;

pub use partitioner::Partitioner;
pub use quiet::QuietContext;

/// A client configuration for `bootstrap_servers` with the user's extra librdkafka `properties`.
pub fn client_config(bootstrap_servers: &str, properties: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// The partition count of every topic on the cluster at `bootstrap_servers`.
pub fn partition_counts(
    bootstrap_servers: &str,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, usize>, rdkafka::error::KafkaError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer<QuietContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap_servers).create_with_context(QuietContext::default())?;
    Ok(topic_partitions(&consumer.fetch_metadata(None, timeout)?))
}

/// The partition count of every topic the metadata describes without an error.
pub(crate) fn topic_partitions(metadata: &rdkafka::metadata::Metadata) -> std::collections::HashMap<String, usize> {
    metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect()
}

/// A topic that could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    #[error("cannot create topic {topic}")]
    Client {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create topic {topic}: the broker answered {code}")]
    Refused { topic: String, code: RDKafkaErrorCode },
}

/// Create `topic` with `partitions` partitions and the given topic configs, unless it exists.
pub fn ensure_topic(
    bootstrap_servers: &str,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) -> Result<(), CreateTopicError> {
    let client_error = |source| CreateTopicError::Client { topic: topic.to_string(), source };
    let admin: AdminClient<QuietContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap_servers)
        .create_with_context(QuietContext::default())
        .map_err(client_error)?;
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new = new.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in block_on(admin.create_topics([&new], &options)).map_err(client_error)? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(CreateTopicError::Refused { topic, code }),
        }
    }
    Ok(())
}

/// Wait for a future on this thread. rdkafka's admin futures complete on librdkafka's own
/// threads, so no async runtime is needed.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}
