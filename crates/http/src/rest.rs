//! Generic Kubernetes-style object endpoints for every `hwameistor.io/v1alpha1` kind.
//!
//! | method | path (under `/apis/hwameistor.io/v1alpha1`) | |
//! |---|---|---|
//! | GET | `` | discovery: `APIResourceList` with plural, singular, kind, short names |
//! | GET | `/<plural>?labelSelector=…` | `<Kind>List`; a Table with `Accept: …;as=Table` or `?table=1` |
//! | GET | `/<plural>?watch=true&resourceVersion=N` | JSON lines `{"type","object"}` |
//! | POST | `/<plural>` | create |
//! | GET | `/<plural>/<name>` | read (Table too) |
//! | PUT | `/<plural>/<name>` | replace (needs `metadata.resourceVersion`) |
//! | PATCH | `/<plural>/<name>` | JSON merge patch of metadata/spec |
//! | DELETE | `/<plural>/<name>` | delete, honouring finalizers |
//! | PUT / PATCH | `/<plural>/<name>/status` | write status only |

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hwameistor_store::{Selector, parse_selector};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::body::JsonBody;
use crate::error::{Error, Result};
use crate::kinds::{API_VERSION, GROUP, VERSION, namespaced};
use crate::table;

/// Query parameters of list and get.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListQuery {
    #[serde(default)]
    label_selector: Option<String>,
    #[serde(default)]
    watch: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    table: Option<String>,
}

fn truthy(v: &Option<String>) -> bool {
    matches!(v.as_deref(), Some("" | "1" | "true" | "True" | "yes"))
}

/// Whether the client asked for a Table (kubectl's Accept header or `?table=1`).
fn wants_table(headers: &HeaderMap, q: &ListQuery) -> bool {
    truthy(&q.table)
        || headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|part| part.split(';').any(|p| p.trim() == "as=Table"))
            })
}

fn now_unix() -> i64 {
    jiff::Timestamp::now().as_second()
}

pub(crate) fn selector(q: &Option<String>) -> Result<Selector> {
    match q.as_deref() {
        None | Some("") => Ok(Selector::default()),
        Some(s) => parse_selector(s).map_err(|e| Error::BadRequest {
            reason: format!("labelSelector: {e}"),
        }),
    }
}

pub(crate) async fn discovery(State(state): State<AppState>) -> Json<Value> {
    let mut resources = Vec::new();
    for r in state.registry.iter() {
        let i = r.info();
        let namespaced = namespaced(i);
        resources.push(json!({
            "name": i.plural,
            "singularName": i.singular,
            "namespaced": namespaced,
            "kind": i.kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            "shortNames": i.short_names,
        }));
        if i.has_status {
            resources.push(json!({
                "name": format!("{}/status", i.plural),
                "singularName": "",
                "namespaced": namespaced,
                "kind": i.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Json(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": resources,
    }))
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Path(plural): Path<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let res = state.registry.by_plural(&plural)?.clone();
    let sel = selector(&q.label_selector)?;
    if truthy(&q.watch) {
        let rv = q.resource_version.clone().unwrap_or_default();
        let events = res.watch(&state.store, &sel, &rv).await?;
        let shutdown = state.shutdown.clone().cancelled_owned();
        let lines = events.take_until(shutdown).map(|ev| {
            let mut line = serde_json::to_vec(&ev).unwrap_or_else(|e| {
                format!(
                    "{{\"type\":\"ERROR\",\"object\":{{\"message\":{:?}}}}}",
                    e.to_string()
                )
                .into_bytes()
            });
            line.push(b'\n');
            Ok::<_, Infallible>(Bytes::from(line))
        });
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(lines),
        )
            .into_response());
    }
    let (items, rv) = res.list(&state.store, &sel).await?;
    if wants_table(&headers, &q) {
        let mut t = table::render(res.info(), &items, now_unix());
        t["metadata"] = json!({"resourceVersion": rv});
        return Ok(Json(t).into_response());
    }
    Ok(Json(json!({
        "apiVersion": API_VERSION,
        "kind": format!("{}List", res.info().kind),
        "metadata": {"resourceVersion": rv},
        "items": items,
    }))
    .into_response())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Response> {
    let res = state.registry.by_plural(&plural)?;
    let obj = res.get(&state.store, &name).await?;
    if wants_table(&headers, &q) {
        return Ok(Json(table::render(res.info(), &[obj], now_unix())).into_response());
    }
    Ok(Json(obj).into_response())
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Path(plural): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<Value>)> {
    let res = state.registry.by_plural(&plural)?;
    Ok((
        StatusCode::CREATED,
        Json(res.create(&state.store, body).await?),
    ))
}

/// Make the body's `metadata.name` agree with the URL's name (filled in when absent).
fn name_from_url(mut body: Value, name: &str) -> Result<Value> {
    let Some(map) = body.as_object_mut() else {
        return Err(Error::BadRequest {
            reason: "the body must be a JSON object".into(),
        });
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return Err(Error::BadRequest {
            reason: "metadata must be an object".into(),
        });
    };
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("name".into(), Value::String(name.to_string()));
        }
        Some(n) if n == name => {}
        Some(n) => {
            return Err(Error::BadRequest {
                reason: format!(
                    "the name in the body ({n:?}) does not match the name in the URL ({name:?})"
                ),
            });
        }
    }
    Ok(body)
}

/// PUT `/<plural>/<name>` (`STATUS = false`) or `/<plural>/<name>/status`: replace the
/// object or its status (needs `metadata.resourceVersion`).
pub(crate) async fn replace<const STATUS: bool>(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    let res = state.registry.by_plural(&plural)?;
    let obj = name_from_url(body, &name)?;
    Ok(Json(res.replace(&state.store, obj, STATUS).await?))
}

/// PATCH `/<plural>/<name>` (`STATUS = false`) or `/<plural>/<name>/status`: JSON merge
/// patch of metadata/spec or of status.
pub(crate) async fn patch<const STATUS: bool>(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<Value>> {
    let res = state.registry.by_plural(&plural)?;
    Ok(Json(res.patch(&state.store, &name, &body, STATUS).await?))
}

pub(crate) async fn get_status(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let res = state.registry.by_plural(&plural)?;
    Ok(Json(res.get(&state.store, &name).await?))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path((plural, name)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let res = state.registry.by_plural(&plural)?;
    let (obj, _finalizing) = res.delete(&state.store, &name).await?;
    Ok(Json(obj))
}
