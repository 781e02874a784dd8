//! The resource registry: every `hwameistor.io/v1alpha1` kind, reachable by plural name
//! with JSON values in and out.
//!
//! The store is typed (`Store::all::<K>()`); the REST API is generic over the URL's
//! `<plural>`. [`Registry`] bridges the two: for each CRD type it holds a [`Resource`] trait
//! object whose methods deserialize the request body into `K`, call the typed store and
//! serialize the result back to JSON. Names (kind, plural, singular, short names), printer
//! columns and name matching come from [`hwameistor_api::registry`] (built from the CRDs the
//! types generate, the same definitions `deploy/crds/` is generated from), so the REST tables
//! and `hwameictl` can never drift from `kubectl get`.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
pub use hwameistor_api::consts::{API_VERSION, GROUP, VERSION};
pub use hwameistor_api::registry::KindInfo;
use hwameistor_store::{Deletion, Event, Object, Selector, Store};
use kube::CustomResourceExt;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// Whether a kind's objects live in namespaces (none of ours do).
pub fn namespaced(info: &KindInfo) -> bool {
    info.namespaced
}

/// A watch event as the REST watch stream sends it.
#[derive(Clone, Debug, Serialize)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED` or `ERROR`.
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub object: Value,
}

/// JSON access to one kind in the store.
#[async_trait]
pub trait Resource: Send + Sync {
    /// Names and printer columns, from [`hwameistor_api::registry`].
    fn info(&self) -> &'static KindInfo;
    async fn get(&self, store: &Store, name: &str) -> Result<Value>;
    /// Objects matching the selector, and the list's resourceVersion.
    async fn list(&self, store: &Store, selector: &Selector) -> Result<(Vec<Value>, String)>;
    async fn create(&self, store: &Store, obj: Value) -> Result<Value>;
    /// Replace metadata/spec (`status = false`) or status (needs `metadata.resourceVersion`).
    async fn replace(&self, store: &Store, obj: Value, status: bool) -> Result<Value>;
    /// JSON merge patch of metadata/spec (`status = false`) or of status.
    async fn patch(&self, store: &Store, name: &str, patch: &Value, status: bool) -> Result<Value>;
    /// Delete; the last state, and whether the object stays until its finalizers are removed.
    async fn delete(&self, store: &Store, name: &str) -> Result<(Value, bool)>;
    async fn watch(
        &self,
        store: &Store,
        selector: &Selector,
        resource_version: &str,
    ) -> Result<BoxStream<'static, WatchEvent>>;
}

struct Typed<K> {
    info: &'static KindInfo,
    _k: PhantomData<fn() -> K>,
}

fn to_value<K: Serialize>(obj: &K) -> Result<Value> {
    serde_json::to_value(obj).map_err(|source| Error::Json {
        what: "object",
        source,
    })
}

impl<K: Object + CustomResourceExt> Typed<K> {
    fn new() -> Self {
        let kind = K::crd().spec.names.kind;
        let info = hwameistor_api::registry::lookup(&kind)
            .filter(|i| i.kind == kind)
            .unwrap_or_else(|| panic!("{kind} is missing from hwameistor_api::registry"));
        Typed {
            info,
            _k: PhantomData,
        }
    }

    /// Parse a request body into `K`, defaulting `apiVersion`/`kind` and refusing others.
    fn decode(&self, mut obj: Value) -> Result<K> {
        let invalid = |reason: String| Error::Invalid {
            what: self.info.kind.clone(),
            reason,
        };
        let Value::Object(map) = &mut obj else {
            return Err(invalid("the body must be a JSON object".into()));
        };
        match map.get("apiVersion").and_then(Value::as_str) {
            None => {
                map.insert("apiVersion".into(), Value::String(API_VERSION.into()));
            }
            Some(API_VERSION) => {}
            Some(other) => {
                return Err(invalid(format!(
                    "apiVersion {other:?} is not {API_VERSION:?}"
                )));
            }
        }
        match map.get("kind").and_then(Value::as_str) {
            None => {
                map.insert("kind".into(), Value::String(self.info.kind.clone()));
            }
            Some(k) if k == self.info.kind => {}
            Some(other) => {
                return Err(invalid(format!(
                    "kind {other:?} does not match the resource {:?}",
                    self.info.plural
                )));
            }
        }
        if !map.contains_key("metadata") {
            map.insert("metadata".into(), Value::Object(Default::default()));
        }
        serde_json::from_value(obj).map_err(|e| invalid(e.to_string()))
    }
}

#[async_trait]
impl<K: Object + CustomResourceExt> Resource for Typed<K> {
    fn info(&self) -> &'static KindInfo {
        self.info
    }

    async fn get(&self, store: &Store, name: &str) -> Result<Value> {
        to_value(&store.all::<K>().get(name).await?)
    }

    async fn list(&self, store: &Store, selector: &Selector) -> Result<(Vec<Value>, String)> {
        let list = store.all::<K>().list(selector).await?;
        let items = list
            .items
            .iter()
            .map(to_value)
            .collect::<Result<Vec<_>>>()?;
        Ok((items, list.resource_version))
    }

    async fn create(&self, store: &Store, obj: Value) -> Result<Value> {
        let obj = self.decode(obj)?;
        to_value(&store.all::<K>().create(&obj).await?)
    }

    async fn replace(&self, store: &Store, obj: Value, status: bool) -> Result<Value> {
        let obj = self.decode(obj)?;
        let api = store.all::<K>();
        let obj = if status {
            api.replace_status(&obj).await?
        } else {
            api.replace(&obj).await?
        };
        to_value(&obj)
    }

    async fn patch(&self, store: &Store, name: &str, patch: &Value, status: bool) -> Result<Value> {
        let api = store.all::<K>();
        let obj = if status {
            api.patch_status(name, patch).await?
        } else {
            api.patch(name, patch).await?
        };
        to_value(&obj)
    }

    async fn delete(&self, store: &Store, name: &str) -> Result<(Value, bool)> {
        match store.all::<K>().delete(name).await? {
            Deletion::Deleted(o) => Ok((to_value(&o)?, false)),
            Deletion::Finalizing(o) => Ok((to_value(&o)?, true)),
        }
    }

    async fn watch(
        &self,
        store: &Store,
        selector: &Selector,
        resource_version: &str,
    ) -> Result<BoxStream<'static, WatchEvent>> {
        let stream = store.all::<K>().watch(selector, resource_version).await?;
        Ok(stream
            .map(|item| match item {
                Ok(ev) => {
                    let type_ = match &ev {
                        Event::Added(_) => "ADDED",
                        Event::Modified(_) => "MODIFIED",
                        Event::Deleted(_) => "DELETED",
                    };
                    match to_value(ev.object()) {
                        Ok(object) => WatchEvent { type_, object },
                        Err(e) => error_event(&e),
                    }
                }
                Err(e) => error_event(&Error::from(e)),
            })
            .boxed())
    }
}

/// A watch `ERROR` event carrying a Kubernetes `Status` (410 Gone tells the client to
/// re-list).
fn error_event(e: &Error) -> WatchEvent {
    WatchEvent {
        type_: "ERROR",
        object: serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "code": e.status().as_u16(),
            "reason": e.reason(),
            "message": e.to_string(),
        }),
    }
}

/// Every kind we serve, by plural.
#[derive(Clone)]
pub struct Registry {
    by_plural: Arc<BTreeMap<String, Arc<dyn Resource>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_plural.keys()).finish()
    }
}

macro_rules! typed {
    ($($t:ty),+ $(,)?) => {
        vec![$(Arc::new(Typed::<$t>::new()) as Arc<dyn Resource>),+]
    };
}

impl Registry {
    /// The registry of every `hwameistor.io/v1alpha1` kind.
    pub fn hwameistor() -> Self {
        use hwameistor_api as a;
        let all: Vec<Arc<dyn Resource>> = typed![
            a::Cluster,
            a::Event,
            a::LocalDiskAction,
            a::LocalDiskClaim,
            a::LocalDiskNode,
            a::LocalDisk,
            a::LocalDiskVolume,
            a::LocalStorageNode,
            a::LocalVolumeConvert,
            a::LocalVolumeExpand,
            a::LocalVolumeGroup,
            a::LocalVolumeMigrate,
            a::LocalVolumeReplica,
            a::LocalVolumeReplicaSnapshotRestore,
            a::LocalVolumeReplicaSnapshot,
            a::LocalVolume,
            a::LocalVolumeSnapshotRestore,
            a::LocalVolumeSnapshot,
            a::ResizePolicy,
            a::ThinPoolClaim,
        ];
        Self::from_resources(all)
    }

    fn from_resources(all: Vec<Arc<dyn Resource>>) -> Self {
        let by_plural = all
            .into_iter()
            .map(|r| (r.info().plural.clone(), r))
            .collect();
        Registry {
            by_plural: Arc::new(by_plural),
        }
    }

    /// The resource served at `/<plural>`; 404 otherwise.
    pub fn by_plural(&self, plural: &str) -> Result<&Arc<dyn Resource>> {
        self.by_plural
            .get(plural)
            .ok_or_else(|| Error::UnknownResource {
                resource: plural.to_string(),
            })
    }

    /// The resource any of whose names (kind, plural, singular, short) is `word`.
    pub fn resolve(&self, word: &str) -> Result<&Arc<dyn Resource>> {
        self.by_plural
            .values()
            .find(|r| r.info().matches(word))
            .ok_or_else(|| Error::UnknownResource {
                resource: word.to_string(),
            })
    }

    /// All resources, sorted by plural.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Resource>> {
        self.by_plural.values()
    }
}
