//! The Schema Registry REST API over a [`CatalogStore`]: the endpoints clients use, with
//! Confluent's paths, query parameters, status codes, error bodies and media type.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use meshhost_avro::Schema;
use serde_json::{json, Value as Json};

use super::schemas::VersionSpec;
use super::sources::SourceEntry;
use super::{CatalogError, CatalogStore, Compatibility};
use crate::schema_registry::CONTENT_TYPE;

type Store = State<Arc<CatalogStore>>;
type Params = Query<HashMap<String, String>>;
type Answer = Result<Response, CatalogError>;

/// The API's routes.
pub fn router(store: Arc<CatalogStore>) -> Router {
    Router::new()
        .route("/", get(|| async { ok(json!({})) }))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(version_schema))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_text_by_id))
        .route("/schemas/ids/{id}/versions", get(schema_versions))
        .route("/schemas/types", get(|| async { ok(json!(["AVRO"])) }))
        .route("/config", get(global_config).put(set_global_config))
        .route("/config/{subject}", get(subject_config).put(set_subject_config).delete(delete_subject_config))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(compatibility))
        .route("/catalog/sources", get(list_sources))
        .route("/catalog/sources/{name}", get(show_source).put(put_source).delete(delete_source))
        .route("/catalog/sources/{name}/deprecate", post(deprecate_source))
        .route("/catalog/sources/{name}/consumers/{pipeline}", put(put_consumer))
        .fallback(|| async { error(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found") })
        .with_state(store)
}

impl IntoResponse for CatalogError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error(status, self.code(), &self.to_string())
    }
}

fn ok(body: Json) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({"error_code": code, "message": message});
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response()
}

/// A boolean query parameter (`true`, `True`, ... — clients spell it differently).
fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The schema of a register, lookup or compatibility request: its text and parsed form.
fn requested_schema(body: &[u8]) -> Result<(String, Schema), CatalogError> {
    let request: Json =
        serde_json::from_slice(body).map_err(|e| CatalogError::InvalidSchema(format!("request body not JSON: {e}")))?;
    if let Some(kind) = request.get("schemaType").and_then(Json::as_str) {
        if kind != "AVRO" {
            return Err(CatalogError::InvalidSchema(format!("schema type {kind} is not supported; only AVRO")));
        }
    }
    if request.get("references").and_then(Json::as_array).is_some_and(|r| !r.is_empty()) {
        return Err(CatalogError::InvalidSchema("schema references are not supported".to_string()));
    }
    let text = request
        .get("schema")
        .and_then(Json::as_str)
        .ok_or_else(|| CatalogError::InvalidSchema("the request has no \"schema\" string".to_string()))?;
    let schema = Schema::parse(text).map_err(|e| CatalogError::InvalidSchema(e.to_string()))?;
    Ok((text.to_string(), schema))
}

async fn subjects(State(store): Store, Query(params): Params) -> Answer {
    Ok(ok(json!(store.read().schemas.subjects(flag(&params, "deleted")))))
}

async fn versions(State(store): Store, Path(subject): Path<String>, Query(params): Params) -> Answer {
    Ok(ok(json!(store.read().schemas.versions(&subject, flag(&params, "deleted"))?)))
}

async fn register(State(store): Store, Path(subject): Path<String>, Query(params): Params, body: Bytes) -> Answer {
    let (text, schema) = requested_schema(&body)?;
    let id = store.register(&subject, &text, &schema, flag(&params, "force")).await?;
    Ok(ok(json!({"id": id})))
}

async fn lookup(State(store): Store, Path(subject): Path<String>, Query(params): Params, body: Bytes) -> Answer {
    let (_, schema) = requested_schema(&body)?;
    let found = store
        .read_fresh(|state| {
            let (version, entry) = state.schemas.find(&subject, &schema, flag(&params, "deleted"))?;
            Ok((version, entry.id, state.schemas.schema(entry.id)?.text.clone()))
        })
        .await?;
    let (version, id, text) = found;
    Ok(ok(json!({"subject": subject, "version": version, "id": id, "schema": text})))
}

async fn version(
    State(store): Store,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> Answer {
    let spec = VersionSpec::parse(&version)?;
    let found = store
        .read_fresh(|state| {
            let (version, entry) = state.schemas.version(&subject, spec, flag(&params, "deleted"))?;
            Ok((version, entry.id, state.schemas.schema(entry.id)?.text.clone()))
        })
        .await?;
    let (version, id, text) = found;
    Ok(ok(json!({"subject": subject, "version": version, "id": id, "schema": text})))
}

async fn version_schema(State(store): Store, Path((subject, version)): Path<(String, String)>) -> Answer {
    let spec = VersionSpec::parse(&version)?;
    let text = store
        .read_fresh(|state| {
            let (_, entry) = state.schemas.version(&subject, spec, false)?;
            Ok(state.schemas.schema(entry.id)?.text.clone())
        })
        .await?;
    Ok(raw_schema(&text))
}

/// A schema's own JSON as the body.
fn raw_schema(text: &str) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text.to_string()).into_response()
}

async fn delete_subject(State(store): Store, Path(subject): Path<String>, Query(params): Params) -> Answer {
    Ok(ok(json!(store.delete(&subject, None, flag(&params, "permanent")).await?)))
}

async fn delete_version(
    State(store): Store,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
) -> Answer {
    let spec = VersionSpec::parse(&version)?;
    let deleted = store.delete(&subject, Some(spec), flag(&params, "permanent")).await?;
    Ok(ok(json!(deleted.first())))
}

fn parse_id(id: &str) -> Result<u32, CatalogError> {
    id.parse().map_err(|_| CatalogError::SchemaNotFound(None))
}

async fn schema_by_id(State(store): Store, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    let text = store.read_fresh(|state| Ok(state.schemas.schema(id)?.text.clone())).await?;
    Ok(ok(json!({"schema": text})))
}

async fn schema_text_by_id(State(store): Store, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    Ok(raw_schema(&store.read_fresh(|state| Ok(state.schemas.schema(id)?.text.clone())).await?))
}

async fn schema_versions(State(store): Store, Path(id): Path<String>, Query(params): Params) -> Answer {
    let id = parse_id(&id)?;
    let guard = store.read();
    let state = &guard.schemas;
    state.schema(id)?;
    let uses: Vec<Json> = state
        .uses_of(id, flag(&params, "deleted"))
        .into_iter()
        .map(|(subject, version)| json!({"subject": subject, "version": version}))
        .collect();
    Ok(ok(json!(uses)))
}

/// The level of a config request body (`{"compatibility": "FULL"}`).
fn level_of(body: &[u8]) -> Result<Compatibility, CatalogError> {
    let request: Json = serde_json::from_slice(body)
        .map_err(|e| CatalogError::InvalidCompatibility(format!("request body not JSON: {e}")))?;
    let level = request
        .get("compatibility")
        .and_then(Json::as_str)
        .ok_or_else(|| CatalogError::InvalidCompatibility("the request has no \"compatibility\" string".into()))?;
    level.parse().map_err(CatalogError::InvalidCompatibility)
}

async fn global_config(State(store): Store) -> Answer {
    Ok(ok(json!({"compatibilityLevel": store.read().schemas.level(None).as_str()})))
}

async fn set_global_config(State(store): Store, body: Bytes) -> Answer {
    let level = level_of(&body)?;
    store.set_level(None, Some(level)).await?;
    Ok(ok(json!({"compatibility": level.as_str()})))
}

async fn subject_config(State(store): Store, Path(subject): Path<String>, Query(params): Params) -> Answer {
    let guard = store.read();
    let state = &guard.schemas;
    let level = match state.subject_level(&subject) {
        Some(level) => level,
        None if flag(&params, "defaultToGlobal") => state.level(None),
        None => return Err(CatalogError::NoSubjectLevel(subject)),
    };
    Ok(ok(json!({"compatibilityLevel": level.as_str()})))
}

async fn set_subject_config(State(store): Store, Path(subject): Path<String>, body: Bytes) -> Answer {
    let level = level_of(&body)?;
    store.set_level(Some(&subject), Some(level)).await?;
    Ok(ok(json!({"compatibility": level.as_str()})))
}

async fn delete_subject_config(State(store): Store, Path(subject): Path<String>) -> Answer {
    let level =
        store.read().schemas.subject_level(&subject).ok_or_else(|| CatalogError::NoSubjectLevel(subject.clone()))?;
    store.set_level(Some(&subject), None).await?;
    Ok(ok(json!({"compatibilityLevel": level.as_str()})))
}

async fn compatibility(
    State(store): Store,
    Path((subject, version)): Path<(String, String)>,
    Query(params): Params,
    body: Bytes,
) -> Answer {
    let spec = VersionSpec::parse(&version)?;
    let (_, schema) = requested_schema(&body)?;
    let reasons = store.read().schemas.incompatibilities(&subject, &schema, Some(spec))?;
    let mut answer = json!({"is_compatible": reasons.is_empty()});
    if flag(&params, "verbose") {
        answer["messages"] = json!(reasons);
    }
    Ok(ok(answer))
}

/// `GET /catalog/sources[?q=TEXT]`: every source, or those matching TEXT.
async fn list_sources(State(store): Store, Query(params): Params) -> Answer {
    let state = store.read();
    let views = match params.get("q") {
        Some(text) => state.sources.search(text, |subject| {
            let (_, entry) = state.schemas.version(subject, VersionSpec::Latest, false).ok()?;
            state.schemas.schema(entry.id).ok().map(|stored| stored.parsed.as_ref())
        }),
        None => state.sources.all(),
    };
    Ok(ok(json!(views)))
}

/// `GET /catalog/sources/{name}`: the source, its consumers and its latest schema version.
async fn show_source(State(store): Store, Path(name): Path<String>) -> Answer {
    let state = store.read();
    let view = state.sources.get(&name).ok_or(CatalogError::SourceNotFound(name))?;
    let mut answer = json!(view);
    if let Ok((version, entry)) = state.schemas.version(&view.entry.subject, VersionSpec::Latest, false) {
        let stored = state.schemas.schema(entry.id)?;
        answer["schema"] = json!({"version": version, "id": entry.id, "schema": stored.text});
        answer["versions"] = json!(state.schemas.versions(&view.entry.subject, false)?);
    }
    Ok(ok(answer))
}

/// `PUT /catalog/sources/{name}`: publish or replace.
async fn put_source(State(store): Store, Path(name): Path<String>, body: Bytes) -> Answer {
    let mut entry: SourceEntry =
        serde_json::from_slice(&body).map_err(|e| CatalogError::InvalidSource(format!("request body: {e}")))?;
    entry.name = name;
    store.put_source(entry.clone()).await?;
    Ok(ok(json!(entry)))
}

async fn delete_source(State(store): Store, Path(name): Path<String>) -> Answer {
    store.delete_source(&name).await?;
    Ok(ok(json!({"deleted": name})))
}

/// `POST /catalog/sources/{name}/deprecate` with `{"reason": ...}`.
async fn deprecate_source(State(store): Store, Path(name): Path<String>, body: Bytes) -> Answer {
    let request: Json = serde_json::from_slice(&body).unwrap_or_default();
    let reason = request.get("reason").and_then(Json::as_str).unwrap_or("deprecated").to_string();
    Ok(ok(json!(store.deprecate_source(&name, reason).await?)))
}

/// `PUT /catalog/sources/{name}/consumers/{pipeline}` with `{"version": N}`.
async fn put_consumer(State(store): Store, Path((name, pipeline)): Path<(String, String)>, body: Bytes) -> Answer {
    let request: Json = serde_json::from_slice(&body).map_err(|e| CatalogError::InvalidSource(e.to_string()))?;
    let version = request
        .get("version")
        .and_then(Json::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| CatalogError::InvalidSource("the request has no \"version\" number".to_string()))?;
    store.put_consumer(&name, &pipeline, version).await?;
    Ok(ok(json!({"source": name, "pipeline": pipeline, "version": version})))
}

/// Serve the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<CatalogStore>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store)).with_graceful_shutdown(shutdown).await
}
