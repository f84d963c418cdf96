//! Avro the way Kafka users keep it: the Confluent wire format ([`wire`]) and a client for any
//! Confluent-compatible Schema Registry (Confluent's, Redpanda's, Karapace, Apicurio's ccompat
//! API, and `meshhost catalog serve`).
//!
//! The client is synchronous (ureq): it is called from the record loop's thread, off the hot
//! path — once per schema id a source meets, once per sink at start. A registry that does not
//! answer (or answers 5xx) is retried with backoff for [`RegistrySettings::retry_for`]; after
//! that the caller gets [`RegistryError::Unavailable`] and stops rather than guessing.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value as Json};

pub mod wire;

/// The media type of the Schema Registry API.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json";

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Base URL, e.g. `http://127.0.0.1:8081`.
    pub url: String,
    /// Username and password for HTTP basic auth.
    pub basic_auth: Option<(String, String)>,
    /// How long to keep retrying a registry that does not answer before giving up.
    pub retry_for: Duration,
}

/// The default of [`RegistrySettings::retry_for`].
pub const DEFAULT_RETRY: Duration = Duration::from_secs(60);

/// A registry request that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegistryError {
    /// No answer (or only server errors) for longer than the retry period.
    #[error("the schema registry at {url} did not answer: {reason}")]
    Unavailable { url: String, reason: String },
    /// The registry answered with an error of the API (`error_code` and message of its body).
    #[error("the schema registry answered {status}: {message} (error code {code})")]
    Refused { status: u16, code: i64, message: String },
    /// An answer that is not what the API promises.
    #[error("unexpected answer from the schema registry to {request}: {reason}")]
    BadAnswer { request: String, reason: String },
}

impl RegistryError {
    /// The API's `error_code` of a refusal (40401 subject not found, 40403 schema not found...).
    pub fn code(&self) -> Option<i64> {
        match self {
            RegistryError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    /// The schema's JSON text.
    pub schema: String,
}

/// A client of one registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    url: String,
    agent: ureq::Agent,
    authorization: Option<String>,
    retry_for: Duration,
}

/// An HTTP request of the API.
pub enum Method {
    Get,
    Post(Json),
    Put(Json),
    Delete,
}

/// Why one attempt failed: worth retrying or not.
enum Attempt {
    Retry(String),
    Fail(RegistryError),
}

impl RegistryClient {
    pub fn new(settings: &RegistrySettings) -> RegistryClient {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let authorization = settings.basic_auth.as_ref().map(|(user, password)| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
        });
        RegistryClient {
            url: settings.url.trim_end_matches('/').to_string(),
            agent,
            authorization,
            retry_for: settings.retry_for,
        }
    }

    /// A client of the registry at `url`, without credentials, with the default retry period.
    pub fn for_url(url: &str) -> RegistryClient {
        RegistryClient::new(&RegistrySettings { url: url.to_string(), basic_auth: None, retry_for: DEFAULT_RETRY })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The schema with `id` (its JSON text). Only Avro schemas are accepted.
    pub fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let request = format!("/schemas/ids/{id}");
        let answer = self.call(&request, Method::Get)?;
        if let Some(kind) = answer.get("schemaType").and_then(Json::as_str) {
            if kind != "AVRO" {
                return Err(RegistryError::BadAnswer {
                    request,
                    reason: format!("schema {id} is a {kind} schema, not Avro"),
                });
            }
        }
        string_field(&answer, "schema", &request)
    }

    /// The latest version of `subject`.
    pub fn latest(&self, subject: &str) -> Result<SubjectVersion, RegistryError> {
        let request = format!("/subjects/{}/versions/latest", encode_path(subject));
        let answer = self.call(&request, Method::Get)?;
        subject_version(&answer, &request)
    }

    /// Version `version` of `subject` (soft-deleted ones too: a pipeline pinned to it still
    /// reads with it).
    pub fn version(&self, subject: &str, version: u32) -> Result<SubjectVersion, RegistryError> {
        let request = format!("/subjects/{}/versions/{version}?deleted=true", encode_path(subject));
        let answer = self.call(&request, Method::Get)?;
        subject_version(&answer, &request)
    }

    /// The version of `subject` that is `schema`, if it is one.
    pub fn lookup(&self, subject: &str, schema: &str) -> Result<Option<SubjectVersion>, RegistryError> {
        let request = format!("/subjects/{}", encode_path(subject));
        match self.call(&request, Method::Post(json!({"schema": schema, "schemaType": "AVRO"}))) {
            Ok(answer) => subject_version(&answer, &request).map(Some),
            Err(error) if matches!(error.code(), Some(40401 | 40403)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Register `schema` under `subject` (the registry checks compatibility; a schema it
    /// already holds keeps its id) and return its id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        self.register_with(subject, schema, false)
    }

    /// [`register`](Self::register); with `force`, meshhost's catalog registers a version even
    /// when it would break a pipeline that reads a source on the subject.
    pub fn register_with(&self, subject: &str, schema: &str, force: bool) -> Result<u32, RegistryError> {
        let force = if force { "?force=true" } else { "" };
        let request = format!("/subjects/{}/versions{force}", encode_path(subject));
        let answer = self.call(&request, Method::Post(json!({"schema": schema, "schemaType": "AVRO"})))?;
        id_field(&answer, "id", &request)
    }

    /// Whether `schema` could be registered under `subject` now: the registry's reasons when
    /// not, nothing when it could (or the subject has no versions yet).
    pub fn incompatibilities(&self, subject: &str, schema: &str) -> Result<Vec<String>, RegistryError> {
        let request = format!("/compatibility/subjects/{}/versions/latest?verbose=true", encode_path(subject));
        let answer = match self.call(&request, Method::Post(json!({"schema": schema, "schemaType": "AVRO"}))) {
            Err(error) if matches!(error.code(), Some(40401 | 40402)) => return Ok(Vec::new()),
            other => other?,
        };
        match answer.get("is_compatible").and_then(Json::as_bool) {
            Some(true) => Ok(Vec::new()),
            Some(false) => {
                let messages: Vec<String> = answer
                    .get("messages")
                    .and_then(Json::as_array)
                    .map(|m| m.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                Ok(if messages.is_empty() {
                    vec!["incompatible with the latest version".to_string()]
                } else {
                    messages
                })
            }
            None => Err(RegistryError::BadAnswer { request, reason: "no is_compatible in the answer".to_string() }),
        }
    }

    /// One request, retried with backoff while the registry does not answer.
    pub fn call(&self, path: &str, method: Method) -> Result<Json, RegistryError> {
        let deadline = Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.attempt(path, &method) {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Fail(error)) => return Err(error),
                Err(Attempt::Retry(reason)) => {
                    if Instant::now() + backoff >= deadline {
                        return Err(RegistryError::Unavailable { url: self.url.clone(), reason });
                    }
                    tracing::warn!("schema registry {}: {reason}; retrying in {backoff:?}", self.url);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn attempt(&self, path: &str, method: &Method) -> Result<Json, Attempt> {
        let url = format!("{}{path}", self.url);
        let authorized = |request: ureq::RequestBuilder<_>| match &self.authorization {
            Some(authorization) => request.header("Authorization", authorization),
            None => request,
        };
        let with_body = |request: ureq::RequestBuilder<ureq::typestate::WithBody>, body: &Json| {
            match &self.authorization {
                Some(authorization) => request.header("Authorization", authorization),
                None => request,
            }
            .header("Accept", ACCEPT)
            .header("Content-Type", CONTENT_TYPE)
            .send(body.to_string())
        };
        let result = match method {
            Method::Get => authorized(self.agent.get(&url)).header("Accept", ACCEPT).call(),
            Method::Delete => authorized(self.agent.delete(&url)).header("Accept", ACCEPT).call(),
            Method::Post(body) => with_body(self.agent.post(&url), body),
            Method::Put(body) => with_body(self.agent.put(&url), body),
        };
        let mut response = result.map_err(|e| Attempt::Retry(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(|e| Attempt::Retry(e.to_string()))?;
        if status >= 500 || status == 408 || status == 429 {
            return Err(Attempt::Retry(format!("HTTP {status}: {}", body.trim())));
        }
        let answer: Json = serde_json::from_str(&body).map_err(|e| {
            Attempt::Fail(RegistryError::BadAnswer {
                request: path.to_string(),
                reason: format!("HTTP {status}, body not JSON ({e}): {}", body.chars().take(200).collect::<String>()),
            })
        })?;
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        Err(Attempt::Fail(RegistryError::Refused {
            status,
            code: answer.get("error_code").and_then(Json::as_i64).unwrap_or(i64::from(status)),
            message: answer.get("message").and_then(Json::as_str).unwrap_or("").to_string(),
        }))
    }
}

/// A subject name as one path segment (RFC 3986 unreserved characters stay as they are).
pub fn encode_path(segment: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

fn string_field(answer: &Json, field: &str, request: &str) -> Result<String, RegistryError> {
    answer.get(field).and_then(Json::as_str).map(str::to_string).ok_or_else(|| RegistryError::BadAnswer {
        request: request.to_string(),
        reason: format!("no {field:?} string in {answer}"),
    })
}

fn id_field(answer: &Json, field: &str, request: &str) -> Result<u32, RegistryError> {
    answer.get(field).and_then(Json::as_u64).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
        RegistryError::BadAnswer { request: request.to_string(), reason: format!("no {field:?} number in {answer}") }
    })
}

fn subject_version(answer: &Json, request: &str) -> Result<SubjectVersion, RegistryError> {
    Ok(SubjectVersion {
        subject: string_field(answer, "subject", request)?,
        version: id_field(answer, "version", request)?,
        id: id_field(answer, "id", request)?,
        schema: string_field(answer, "schema", request)?,
    })
}
