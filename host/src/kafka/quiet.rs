//! librdkafka's own reports, made readable: against a broker that is down it logs every failed
//! connect, and reports each as a "global error" too — about 200 lines in 10 s before the one
//! line that matters. Here librdkafka's log goes to `debug`, and its errors to one `warn` line
//! per kind of error every [`REPEAT_AFTER`] saying what is wrong and that the client retries;
//! whatever makes meshhost give up is reported once, by meshhost, when it does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// How long the same kind of error stays quiet after it was reported.
pub const REPEAT_AFTER: Duration = Duration::from_secs(30);

/// The context of meshhost's Kafka clients.
#[derive(Debug, Default)]
pub struct QuietContext {
    /// Per kind of error: when it was last reported, and how many since.
    reported: Mutex<HashMap<String, (Instant, u64)>>,
}

impl QuietContext {
    /// Whether an error of `kind` should be reported now; how many were suppressed since.
    fn due(&self, kind: String) -> Option<u64> {
        let mut reported = self.reported.lock().expect("never poisoned");
        let now = Instant::now();
        match reported.get_mut(&kind) {
            Some((last, suppressed)) if now.duration_since(*last) < REPEAT_AFTER => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let count = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(count)
            }
            None => {
                reported.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

impl ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, facility, "{message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
        let kind = match error.rdkafka_error_code() {
            Some(code) => format!("{code:?}"),
            None => error.to_string(),
        };
        if let Some(suppressed) = self.due(kind) {
            let more = if suppressed > 0 { format!(" ({suppressed} more like it since)") } else { String::new() };
            tracing::warn!(
                "Kafka: {reason}{more}; the client keeps retrying (next report of this in {}s at most; details with MESHHOST_LOG=librdkafka=debug)",
                REPEAT_AFTER.as_secs()
            );
        }
    }
}

impl ConsumerContext for QuietContext {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_kind_per_period() {
        let context = QuietContext::default();
        assert_eq!(context.due("AllBrokersDown".into()), Some(0));
        assert_eq!(context.due("AllBrokersDown".into()), None);
        assert_eq!(context.due("AllBrokersDown".into()), None);
        assert_eq!(context.due("BrokerTransportFailure".into()), Some(0));
        context.reported.lock().unwrap().get_mut("AllBrokersDown").unwrap().0 -= REPEAT_AFTER;
        assert_eq!(context.due("AllBrokersDown".into()), Some(2));
    }
}
