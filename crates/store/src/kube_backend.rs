//! [`KubeStore`]: the store on a Kubernetes API server, through kube-rs.
//!
//! Each operation is one API request on `kube::Api<K>`; this module maps the answers to the
//! store's semantics: HTTP 404 → [`Error::NotFound`], 409 AlreadyExists →
//! [`Error::AlreadyExists`], other 409 → [`Error::Conflict`], 410 → [`Error::Gone`],
//! 400/422 → [`Error::Invalid`], everything else → [`Error::Backend`]. A watch is a chain of
//! API watch requests: when the server ends one (its timeout), the next resumes from the
//! last seen resourceVersion (bookmarks included), so the stream only ends with an error.

use std::collections::VecDeque;

use futures::{StreamExt, TryStreamExt};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Selector;
use kube::{Api, Client};

use crate::{BackendError, Deletion, Error, Event, List, Object, Result, WatchStream};

/// The store on a Kubernetes API server.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
}

impl KubeStore {
    /// Use an existing client (tests pass one built on a mock service).
    pub fn new(client: Client) -> Self {
        KubeStore { client }
    }

    /// Connect with the default configuration (in-cluster or `$KUBECONFIG`).
    pub async fn try_default() -> Result<Self> {
        let client = Client::try_default().await.map_err(|e| Error::Backend {
            kind: "Client".into(),
            name: String::new(),
            operation: "connect",
            source: Box::new(e.into()),
        })?;
        Ok(KubeStore { client })
    }

    /// The underlying client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }
}

fn kind<K: Object>() -> String {
    K::kind(&()).into_owned()
}

/// Map a kube error for `(kind, name)`; `resource_version` is what the request sent, if any.
pub(crate) fn map_error(
    err: kube::Error,
    kind: String,
    name: &str,
    resource_version: &str,
    operation: &'static str,
) -> Error {
    let name = name.to_string();
    if let kube::Error::Api(status) = &err {
        match status.code {
            404 => return Error::NotFound { kind, name },
            409 if status.reason == "AlreadyExists" => return Error::AlreadyExists { kind, name },
            409 => {
                return Error::Conflict {
                    kind,
                    name,
                    resource_version: resource_version.to_string(),
                    reason: status.message.clone(),
                };
            }
            410 => {
                return Error::Gone {
                    kind,
                    resource_version: resource_version.to_string(),
                    reason: status.message.clone(),
                };
            }
            400 | 422 => {
                return Error::Invalid {
                    kind,
                    name,
                    reason: status.message.clone(),
                };
            }
            _ => {}
        }
    }
    Error::Backend {
        kind,
        name,
        operation,
        source: Box::new(BackendError::Kube(err)),
    }
}

fn version_of<K: Object>(obj: &K) -> String {
    obj.meta().resource_version.clone().unwrap_or_default()
}

pub(crate) async fn get_opt<K: Object>(api: &Api<K>, name: &str) -> Result<Option<K>> {
    api.get_opt(name)
        .await
        .map_err(|e| map_error(e, kind::<K>(), name, "", "get"))
}

pub(crate) async fn list<K: Object>(api: &Api<K>, selector: &Selector) -> Result<List<K>> {
    let mut params = ListParams::default();
    if !selector.selects_all() {
        params = params.labels(&selector.to_string());
    }
    let list = api
        .list(&params)
        .await
        .map_err(|e| map_error(e, kind::<K>(), "", "", "list"))?;
    Ok(List {
        resource_version: list.metadata.resource_version.unwrap_or_default(),
        items: list.items,
    })
}

pub(crate) async fn create<K: Object>(api: &Api<K>, obj: &K) -> Result<K> {
    let name = obj.meta().name.clone().unwrap_or_default();
    api.create(&PostParams::default(), obj)
        .await
        .map_err(|e| map_error(e, kind::<K>(), &name, "", "create"))
}

pub(crate) async fn replace<K: Object>(
    api: &Api<K>,
    name: &str,
    obj: &K,
    status_only: bool,
) -> Result<K> {
    let pp = PostParams::default();
    let rv = version_of(obj);
    let result = if status_only {
        api.replace_status(name, &pp, obj).await
    } else {
        api.replace(name, &pp, obj).await
    };
    result.map_err(|e| map_error(e, kind::<K>(), name, &rv, "replace"))
}

pub(crate) async fn patch<K: Object>(
    api: &Api<K>,
    name: &str,
    patch: &serde_json::Value,
    status_only: bool,
) -> Result<K> {
    if !patch.is_object() {
        return Err(Error::Invalid {
            kind: kind::<K>(),
            name: name.to_string(),
            reason: "a merge patch must be a JSON object".into(),
        });
    }
    let rv = patch
        .get("metadata")
        .and_then(|m| m.get("resourceVersion"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let pp = PatchParams::default();
    let merge = Patch::Merge(patch);
    let result = if status_only {
        api.patch_status(name, &pp, &merge).await
    } else {
        api.patch(name, &pp, &merge).await
    };
    result.map_err(|e| map_error(e, kind::<K>(), name, &rv, "patch"))
}

pub(crate) async fn delete<K: Object>(api: &Api<K>, name: &str) -> Result<Deletion<K>> {
    let result = api
        .delete(name, &DeleteParams::default())
        .await
        .map_err(|e| map_error(e, kind::<K>(), name, "", "delete"))?;
    // `either` is not re-exported by kube; its inherent methods need no import.
    match result.either(Ok, Err) {
        // The API server answers with the object; it is still there iff finalizers hold it.
        Ok(obj) => {
            let finalizing = obj.meta().deletion_timestamp.is_some()
                && obj
                    .meta()
                    .finalizers
                    .as_ref()
                    .is_some_and(|f| !f.is_empty());
            Ok(if finalizing {
                Deletion::Finalizing(obj)
            } else {
                Deletion::Deleted(obj)
            })
        }
        // A Status instead of the object (core kinds deleted at once): the object is gone.
        // We no longer have its last state, so return the identity the Status names.
        Err(status) => {
            let uid = status.details.map(|d| d.uid).filter(|u| !u.is_empty());
            let minimal = serde_json::json!({
                "apiVersion": K::api_version(&()),
                "kind": K::kind(&()),
                "metadata": { "name": name, "uid": uid },
            });
            serde_json::from_value(minimal)
                .map(Deletion::Deleted)
                .map_err(|e| Error::Backend {
                    kind: kind::<K>(),
                    name: name.to_string(),
                    operation: "delete (object deleted; reading the server's Status failed)",
                    source: Box::new(BackendError::Json(e)),
                })
        }
    }
}

/// Pause before re-watching after a watch request that ended without any event.
const EMPTY_WATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

struct KubeWatch<K> {
    api: Api<K>,
    selector: Selector,
    /// Resume point for the next watch request.
    resource_version: String,
    current: Option<futures::stream::BoxStream<'static, kube::Result<WatchEvent<K>>>>,
    /// Events (bookmarks included) received on the current request.
    received: usize,
    pending: VecDeque<Result<Event<K>>>,
    done: bool,
}

pub(crate) async fn watch<K: Object>(
    api: &Api<K>,
    selector: &Selector,
    resource_version: &str,
) -> Result<WatchStream<K>> {
    let version = if resource_version.is_empty() {
        "0"
    } else {
        resource_version
    };
    let mut state = KubeWatch {
        api: api.clone(),
        selector: selector.clone(),
        resource_version: version.to_string(),
        current: None,
        received: 0,
        pending: VecDeque::new(),
        done: false,
    };
    // Start the first request now so that request errors surface from `watch` itself.
    state.start().await?;
    Ok(futures::stream::unfold(state, KubeWatch::next).boxed())
}

impl<K: Object> KubeWatch<K> {
    async fn start(&mut self) -> Result<()> {
        let mut params = WatchParams::default();
        if !self.selector.selects_all() {
            params = params.labels(&self.selector.to_string());
        }
        let stream = self
            .api
            .watch(&params, &self.resource_version)
            .await
            .map_err(|e| map_error(e, kind::<K>(), "", &self.resource_version, "watch"))?;
        self.current = Some(stream.boxed());
        self.received = 0;
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<Event<K>>, Self)> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if item.is_err() {
                    self.done = true;
                }
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            let Some(stream) = self.current.as_mut() else {
                if let Err(e) = self.start().await {
                    self.pending.push_back(Err(e));
                }
                continue;
            };
            match stream.try_next().await {
                Ok(Some(event)) => {
                    self.received += 1;
                    self.accept(event);
                }
                // The server closed this request (timeout): resume from where we are. A
                // request closed without any event is paced, not retried in a hot loop.
                Ok(None) => {
                    if self.received == 0 {
                        tokio::time::sleep(EMPTY_WATCH_PAUSE).await;
                    }
                    self.current = None;
                }
                Err(e) => {
                    let err = map_error(e, kind::<K>(), "", &self.resource_version, "watch");
                    self.pending.push_back(Err(err));
                }
            }
        }
    }

    fn accept(&mut self, event: WatchEvent<K>) {
        let (event, rv) = match event {
            WatchEvent::Added(o) => {
                let rv = version_of(&o);
                (Event::Added(o), rv)
            }
            WatchEvent::Modified(o) => {
                let rv = version_of(&o);
                (Event::Modified(o), rv)
            }
            WatchEvent::Deleted(o) => {
                let rv = version_of(&o);
                (Event::Deleted(o), rv)
            }
            WatchEvent::Bookmark(b) => {
                self.resource_version = b.metadata.resource_version;
                return;
            }
            WatchEvent::Error(status) => {
                let err = map_error(
                    kube::Error::Api(status),
                    kind::<K>(),
                    "",
                    &self.resource_version,
                    "watch",
                );
                self.pending.push_back(Err(err));
                return;
            }
        };
        if !rv.is_empty() {
            self.resource_version = rv;
        }
        self.pending.push_back(Ok(event));
    }
}
