//! Why a record could not make it through the pipeline, and how that is written on its dead
//! letter. The header names and stage values are an external contract (README "Dead letters"):
//! they are spelled here and nowhere else.

use meshhost_sdk::Header;

/// Where in the pipeline a record failed: the `meshhost.stage` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The source value could not be read as a datum of the source's schema.
    Decode,
    /// A processor rejected the record, trapped on it, or could not be given it.
    Process,
    /// An output did not match its declared schema, or could not be written in the sink's format.
    Encode,
    /// The sink's store refused the record (a Postgres constraint, a value out of range).
    Deliver,
}

impl Stage {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Process => "process",
            Stage::Encode => "encode",
            Stage::Deliver => "deliver",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What made a record fail. Dead letters treat every cause alike; `meshhost plugin test` does
/// not: a fixture may expect a plugin to reject a record, never to trap on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The record does not fit its schema or format (at a source, a transcoding, a sink).
    Data,
    /// The plugin rejected it: its own per-record failure.
    Rejected,
    /// The plugin trapped on it: a panic, its CPU deadline, its memory cap.
    Trapped,
    /// The plugin broke the contract with it: an undeclared port, an output that does not
    /// match its declared schema.
    PluginBug,
}

/// A record's failure: it goes to dead letters (or stops the pipeline when there are none).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub stage: Stage,
    /// The processor it failed in, if any.
    pub processor: Option<String>,
    /// What went wrong, for people.
    pub error: String,
    pub cause: Cause,
}

/// The most bytes of an error a dead letter carries: a plugin may fail a record with a reason of
/// any size, and a header larger than the broker accepts would stop the pipeline instead.
pub const MAX_ERROR_BYTES: usize = 4096;

/// `error`, cut to [`MAX_ERROR_BYTES`] (at a character boundary) with a note of what was cut.
fn bounded(error: String) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error;
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes)", &error[..end], error.len() - end)
}

impl Failure {
    /// A source value that is not a datum of the source's schema.
    pub fn decode(error: impl Into<String>) -> Failure {
        Failure { stage: Stage::Decode, processor: None, error: bounded(error.into()), cause: Cause::Data }
    }

    /// A record that could not be handed to `processor` in the form it asked for (JSON).
    pub fn transcode(processor: &str, error: impl Into<String>) -> Failure {
        Failure::process(processor, error, Cause::Data)
    }

    /// A record `processor` rejected.
    pub fn rejected(processor: &str, error: impl Into<String>) -> Failure {
        Failure::process(processor, error, Cause::Rejected)
    }

    /// A record `processor` trapped on.
    pub fn trapped(processor: &str, error: impl Into<String>) -> Failure {
        Failure::process(processor, error, Cause::Trapped)
    }

    /// A record `processor` emitted against the contract (to a port it did not declare).
    pub fn misrouted(processor: &str, error: impl Into<String>) -> Failure {
        Failure::process(processor, error, Cause::PluginBug)
    }

    /// An output of `processor` that does not match its port's schema.
    pub fn invalid_output(processor: &str, error: impl Into<String>) -> Failure {
        let processor = Some(processor.to_string());
        Failure { stage: Stage::Encode, processor, error: bounded(error.into()), cause: Cause::PluginBug }
    }

    /// A record that cannot be written in its sink's format.
    pub fn encode(error: impl Into<String>) -> Failure {
        Failure { stage: Stage::Encode, processor: None, error: bounded(error.into()), cause: Cause::Data }
    }

    /// A record the sink's store refused, with the store's reason.
    pub fn deliver(error: impl Into<String>) -> Failure {
        Failure { stage: Stage::Deliver, processor: None, error: bounded(error.into()), cause: Cause::Data }
    }

    fn process(processor: &str, error: impl Into<String>, cause: Cause) -> Failure {
        let error = bounded(error.into());
        Failure { stage: Stage::Process, processor: Some(processor.to_string()), error, cause }
    }

    /// The headers a dead letter carries besides the record's own: what failed, where, and where
    /// the record was read (`origin` is e.g. the source topic, `position` its offset).
    pub fn dead_letter_headers(&self, origin: &str, partition: i32, position: i64) -> [Header; 6] {
        let header = |key: &str, value: String| Header { key: key.to_string(), value: Some(value.into_bytes()) };
        [
            header(header::ERROR, self.error.clone()),
            header(header::STAGE, self.stage.as_str().to_string()),
            header(header::PROCESSOR, self.processor.clone().unwrap_or_default()),
            header(header::SOURCE_TOPIC, origin.to_string()),
            header(header::SOURCE_PARTITION, partition.to_string()),
            header(header::SOURCE_OFFSET, position.to_string()),
        ]
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed at stage {}", self.stage)?;
        if let Some(processor) = &self.processor {
            write!(f, " in processor {processor}")?;
        }
        write!(f, ": {}", self.error)
    }
}

/// The names of the headers a dead letter carries.
pub mod header {
    pub const ERROR: &str = "meshhost.error";
    pub const STAGE: &str = "meshhost.stage";
    pub const PROCESSOR: &str = "meshhost.processor";
    pub const SOURCE_TOPIC: &str = "meshhost.source.topic";
    pub const SOURCE_PARTITION: &str = "meshhost.source.partition";
    pub const SOURCE_OFFSET: &str = "meshhost.source.offset";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_spell_the_contract() {
        let failure = Failure::rejected("recent", "bad year");
        let headers = failure.dead_letter_headers("movies", 2, 41);
        let pairs: Vec<(&str, String)> =
            headers.iter().map(|h| (h.key.as_str(), String::from_utf8(h.value.clone().unwrap()).unwrap())).collect();
        assert_eq!(
            pairs,
            [
                ("meshhost.error", "bad year".to_string()),
                ("meshhost.stage", "process".to_string()),
                ("meshhost.processor", "recent".to_string()),
                ("meshhost.source.topic", "movies".to_string()),
                ("meshhost.source.partition", "2".to_string()),
                ("meshhost.source.offset", "41".to_string()),
            ]
        );
        assert_eq!(failure.to_string(), "failed at stage process in processor recent: bad year");
        assert_eq!(Failure::decode("x").dead_letter_headers("t", 0, 0)[2].value.as_deref(), Some(&b""[..]));
    }
}
