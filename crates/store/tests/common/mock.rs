//! A mock Kubernetes API server for one resource type, as a tower service for
//! `kube::Client::new`.
//!
//! It serves the REST routes of a cluster-scoped custom resource from a backing store (an
//! in-memory [`EmbeddedStore`](hwameistor_store::EmbeddedStore), which has the semantics we
//! pin), speaks the API server's wire format (lists, `Status` errors, chunked JSON-lines
//! watches with `ERROR` events), and records every request so tests can assert what the
//! `KubeStore` sends. Requests outside the expected shape are recorded as violations and
//! answered with 404.
//!
//! Each watch response ends after [`MockApiServer::events_per_watch`] events, like an API
//! server closing a watch on timeout, to exercise resumption.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hwameistor_store::{Deletion, Error, Event, Object, Store, parse_selector};
use serde_json::{Value, json};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

struct Shared {
    log: Vec<Recorded>,
    violations: Vec<String>,
}

pub struct MockApiServer<K> {
    backing: Store,
    shared: Arc<Mutex<Shared>>,
    events_per_watch: usize,
    _k: PhantomData<fn() -> K>,
}

impl<K> Clone for MockApiServer<K> {
    fn clone(&self) -> Self {
        MockApiServer {
            backing: self.backing.clone(),
            shared: self.shared.clone(),
            events_per_watch: self.events_per_watch,
            _k: PhantomData,
        }
    }
}

impl<K: Object> MockApiServer<K> {
    pub fn new(backing: Store) -> Self {
        MockApiServer {
            backing,
            shared: Arc::new(Mutex::new(Shared {
                log: Vec::new(),
                violations: Vec::new(),
            })),
            events_per_watch: 3,
            _k: PhantomData,
        }
    }

    /// A kube client whose every request this server answers.
    pub fn client(&self) -> kube::Client {
        let server = self.clone();
        let service = tower::service_fn(move |req: Request<kube::client::Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(req).await) }
        });
        kube::Client::new(service, "default")
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().unwrap().log.clone()
    }

    pub fn clear(&self) {
        self.shared.lock().unwrap().log.clear();
    }

    pub fn violations(&self) -> Vec<String> {
        self.shared.lock().unwrap().violations.clone()
    }

    fn violation(&self, what: String) -> Response<Body> {
        self.shared.lock().unwrap().violations.push(what.clone());
        status_response(404, "NotFound", &what)
    }

    async fn handle(&self, req: Request<kube::client::Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => Some(v),
                Err(e) => return self.violation(format!("body is not JSON: {e}")),
            }
        };
        let query: BTreeMap<String, String> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect();
        let path = parts.uri.path().to_string();
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.shared.lock().unwrap().log.push(Recorded {
            method: parts.method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        });

        let base = K::url_path(&(), None);
        let Some(rest) = path.strip_prefix(&base) else {
            return self.violation(format!("{} {path}: not under {base}", parts.method));
        };
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let objects = self.backing.all::<K>();
        match (&parts.method, segments.as_slice()) {
            (&Method::GET, []) if query.get("watch").map(String::as_str) == Some("true") => {
                self.watch(&query).await
            }
            (&Method::GET, []) => {
                let selector = match parse_selector(query.get("labelSelector").map_or("", |s| s)) {
                    Ok(s) => s,
                    Err(e) => return error_response(&e),
                };
                match objects.list(&selector).await {
                    Ok(list) => json_response(
                        200,
                        &json!({
                            "apiVersion": K::api_version(&()),
                            "kind": format!("{}List", K::kind(&())),
                            "metadata": {"resourceVersion": list.resource_version},
                            "items": list.items,
                        }),
                    ),
                    Err(e) => error_response(&e),
                }
            }
            (&Method::GET, [name]) => reply(objects.get(name).await),
            (&Method::POST, []) => {
                let Some(obj) = self.typed(body) else {
                    return self.violation("POST without a valid object body".into());
                };
                match objects.create(&obj).await {
                    Ok(o) => json_response(201, &o),
                    Err(e) => error_response(&e),
                }
            }
            (&Method::PUT, [name]) | (&Method::PUT, [name, "status"]) => {
                let Some(obj) = self.typed(body) else {
                    return self.violation("PUT without a valid object body".into());
                };
                if obj.meta().name.as_deref() != Some(*name) {
                    return self
                        .violation(format!("PUT {name} with body for {:?}", obj.meta().name));
                }
                if segments.len() == 2 {
                    reply(objects.replace_status(&obj).await)
                } else {
                    reply(objects.replace(&obj).await)
                }
            }
            (&Method::PATCH, [name]) | (&Method::PATCH, [name, "status"]) => {
                if content_type.as_deref() != Some("application/merge-patch+json") {
                    return self.violation(format!("PATCH with content type {content_type:?}"));
                }
                let patch = body.unwrap_or(Value::Null);
                if segments.len() == 2 {
                    reply(objects.patch_status(name, &patch).await)
                } else {
                    reply(objects.patch(name, &patch).await)
                }
            }
            (&Method::DELETE, [name]) => match objects.delete(name).await {
                Ok(Deletion::Deleted(o) | Deletion::Finalizing(o)) => json_response(200, &o),
                Err(e) => error_response(&e),
            },
            _ => self.violation(format!("{} {path}: unexpected route", parts.method)),
        }
    }

    fn typed(&self, body: Option<Value>) -> Option<K> {
        serde_json::from_value(body?).ok()
    }

    async fn watch(&self, query: &BTreeMap<String, String>) -> Response<Body> {
        let selector = match parse_selector(query.get("labelSelector").map_or("", |s| s)) {
            Ok(s) => s,
            Err(e) => return error_response(&e),
        };
        // The store always watches from a known version; a watch without one would miss
        // changes between its list and the watch.
        let Some(rv) = query
            .get("resourceVersion")
            .cloned()
            .filter(|v| !v.is_empty())
        else {
            return self.violation("watch without resourceVersion".into());
        };
        let stream = match self.backing.all::<K>().watch(&selector, &rv).await {
            Ok(s) => s,
            // The API server reports an expired version inside a 200 watch response.
            Err(e) if e.is_gone() => {
                let line = watch_line("ERROR", &status_json(&e));
                return stream_response(futures::stream::iter([line]).boxed());
            }
            Err(e) => return error_response(&e),
        };
        let lines = stream
            .take(self.events_per_watch)
            .map(|item| match item {
                Ok(Event::Added(o)) => watch_line("ADDED", &o),
                Ok(Event::Modified(o)) => watch_line("MODIFIED", &o),
                Ok(Event::Deleted(o)) => watch_line("DELETED", &o),
                Err(e) => watch_line("ERROR", &status_json(&e)),
            })
            .boxed();
        stream_response(lines)
    }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn watch_line<T: serde::Serialize>(kind: &str, object: &T) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("json");
    line.push(b'\n');
    Bytes::from(line)
}

fn stream_response(lines: futures::stream::BoxStream<'static, Bytes>) -> Response<Body> {
    let frames = lines.map(|b| Ok::<_, Infallible>(hyper::body::Frame::data(b)));
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed_unsync(StreamBody::new(frames)))
        .expect("response")
}

fn json_response<T: serde::Serialize>(code: u16, body: &T) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).expect("status code"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed_unsync(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        ))))
        .expect("response")
}

fn reply<T: serde::Serialize>(result: Result<T, Error>) -> Response<Body> {
    match result {
        Ok(o) => json_response(200, &o),
        Err(e) => error_response(&e),
    }
}

fn status_json(e: &Error) -> Value {
    let reason = match e {
        Error::Gone { .. } => "Expired",
        Error::Backend { .. } => "InternalError",
        other => other.reason(),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": e.to_string(),
        "reason": reason,
        "code": e.http_status(),
    })
}

fn error_response(e: &Error) -> Response<Body> {
    json_response(e.http_status(), &status_json(e))
}

fn status_response(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({
            "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        }),
    )
}
