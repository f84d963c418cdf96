//! A client of the sources catalog (`/catalog/...` on `meshhost catalog serve`), over the
//! Schema Registry client's HTTP.

use serde_json::{json, Value as Json};

use super::sources::{SourceEntry, SourceView};
use crate::schema_registry::{encode_path, Method, RegistryClient, RegistryError, SubjectVersion};

/// A source as `source show` needs it: with its latest schema version.
#[derive(Debug, Clone)]
pub struct SourceDetails {
    pub view: SourceView,
    /// The latest live version of its subject.
    pub schema: Option<SubjectVersion>,
    pub versions: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct CatalogClient {
    http: RegistryClient,
}

impl CatalogClient {
    pub fn new(http: RegistryClient) -> CatalogClient {
        CatalogClient { http }
    }

    /// The Schema Registry the catalog also is.
    pub fn registry(&self) -> &RegistryClient {
        &self.http
    }

    /// Every source, or those matching `query` (name, description, owner, tags, field names).
    pub fn sources(&self, query: Option<&str>) -> Result<Vec<SourceView>, RegistryError> {
        let path = match query {
            Some(text) => format!("/catalog/sources?q={}", encode_path(text)),
            None => "/catalog/sources".to_string(),
        };
        parse(&path, self.http.call(&path, Method::Get)?)
    }

    pub fn source(&self, name: &str) -> Result<SourceDetails, RegistryError> {
        let path = format!("/catalog/sources/{}", encode_path(name));
        let answer = self.http.call(&path, Method::Get)?;
        let schema = answer.get("schema").map(|schema| {
            Ok::<_, RegistryError>(SubjectVersion {
                subject: answer["subject"].as_str().unwrap_or_default().to_string(),
                version: number(schema, "version", &path)?,
                id: number(schema, "id", &path)?,
                schema: schema["schema"].as_str().unwrap_or_default().to_string(),
            })
        });
        let versions = answer.get("versions").map(|v| parse(&path, v.clone())).transpose()?.unwrap_or_default();
        Ok(SourceDetails { view: parse(&path, answer)?, schema: schema.transpose()?, versions })
    }

    pub fn publish(&self, entry: &SourceEntry) -> Result<(), RegistryError> {
        let path = format!("/catalog/sources/{}", encode_path(&entry.name));
        self.http.call(&path, Method::Put(json!(entry))).map(drop)
    }

    pub fn deprecate(&self, name: &str, reason: &str) -> Result<SourceEntry, RegistryError> {
        let path = format!("/catalog/sources/{}/deprecate", encode_path(name));
        parse(&path, self.http.call(&path, Method::Post(json!({"reason": reason})))?)
    }

    /// Record that `pipeline` reads `source` with version `version` of its subject.
    pub fn add_consumer(&self, source: &str, pipeline: &str, version: u32) -> Result<(), RegistryError> {
        let path = format!("/catalog/sources/{}/consumers/{}", encode_path(source), encode_path(pipeline));
        self.http.call(&path, Method::Put(json!({"version": version}))).map(drop)
    }
}

fn parse<T: serde::de::DeserializeOwned>(request: &str, answer: Json) -> Result<T, RegistryError> {
    serde_json::from_value(answer)
        .map_err(|e| RegistryError::BadAnswer { request: request.to_string(), reason: e.to_string() })
}

fn number(answer: &Json, field: &str, request: &str) -> Result<u32, RegistryError> {
    answer.get(field).and_then(Json::as_u64).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
        RegistryError::BadAnswer { request: request.to_string(), reason: format!("no {field:?} number") }
    })
}
