//! hwameistor-store: one object store with Kubernetes semantics, two backends.
//!
//! Every component of HwameiStor (controllers, node agent, CSI, REST server) reads and
//! writes `hwameistor.io/v1alpha1` objects through this crate, never through a client of its
//! own. The same control logic then runs against a real cluster ([`KubeStore`], kube-rs) and in
//! the single-node standalone mode ([`EmbeddedStore`], an embedded redb database file).
//!
//! # Shape of the interface
//!
//! [`Store`] is a cheap-to-clone *handle* (an enum over the two backends), and
//! [`Store::all`] / [`Store::namespaced`] give a typed [`Objects<K>`] for one resource type,
//! much like kube's `Api<K>`:
//!
//! ```no_run
//! # async fn demo(store: hwameistor_store::Store) -> hwameistor_store::Result<()> {
//! # use hwameistor_store::parse_selector;
//! # type LocalVolume = k8s_openapi::api::core::v1::Node; // any kube resource type
//! let volumes = store.all::<LocalVolume>();
//! let listed = volumes.list(&parse_selector("app=db,tier in (a,b)")?).await?;
//! let mut events = volumes.watch(&Default::default(), &listed.resource_version).await?;
//! # Ok(()) }
//! ```
//!
//! We chose a concrete enum over a trait object because the operations are generic over the
//! resource type `K` (a trait with generic methods is not dyn-compatible), and over a trait
//! used through generics because a plain handle keeps every caller (controllers, HTTP
//! handlers, CLI) free of type parameters: callers write backend-agnostic code by taking a
//! `Store`. Adding a backend means adding a variant; the conformance suite in `tests/` runs
//! every operation against both backends and pins their behaviour to be the same.
//!
//! # Semantics (both backends)
//!
//! - **Objects** are any `kube::Resource<DynamicType = ()>` that serializes to JSON
//!   ([`Object`]). They are identified by `(apiVersion/kind, namespace, name)`; cluster-scoped
//!   objects have the empty namespace.
//! - **create** fails with [`Error::AlreadyExists`]; the server assigns `resourceVersion`,
//!   `uid`, `creationTimestamp` and `generation = 1`. `metadata.generateName` is honoured.
//!   `.status` is not written by create (status-subresource semantics): write it afterwards
//!   with `replace_status` / `patch_status`.
//! - **replace** requires the caller's `metadata.resourceVersion` to equal the stored one,
//!   else [`Error::Conflict`] (a missing resourceVersion is [`Error::Invalid`]: we never do
//!   blind writes). Like a CRD with the status subresource, `replace` ignores `.status`, and
//!   `replace_status` / `patch_status` change nothing but `.status`. `generation` increases
//!   when anything outside `metadata` and `status` changes. A write that changes nothing is a
//!   no-op: same resourceVersion, no watch event.
//! - **patch** / **patch_status** apply an RFC 7386 JSON merge patch. A patch that carries
//!   `metadata.resourceVersion` is conditional on it.
//! - **delete** honours finalizers: an object with finalizers gets `deletionTimestamp` and
//!   stays ([`Deletion::Finalizing`]); when a later write removes the last finalizer, the
//!   object disappears and watchers see `Deleted`. New finalizers cannot be added to an
//!   object that is being deleted.
//! - **resourceVersion** is an opaque string to callers. `list` returns the collection's
//!   version; `watch(selector, version)` streams every change after that version, in order,
//!   without loss. A version older than the retained history fails with [`Error::Gone`]
//!   (immediately or as the stream's last item); re-list then. The version `""` or `"0"`
//!   means "now": the stream starts with an `Added` for each existing object. With a label
//!   selector, an object that starts matching arrives as `Added` and one that stops
//!   matching as `Deleted`, as from the API server's watch cache.
//!
//! # Differences between the backends
//!
//! - [`EmbeddedStore`] resourceVersions are one global decimal counter (persisted); the
//!   API server's are etcd revisions. Neither should be compared by callers except for
//!   equality.
//! - [`EmbeddedStore`] keeps a bounded event history (default
//!   [`embedded::DEFAULT_HISTORY`] events, persisted in the database so watches survive a
//!   restart of the process); the API server's history is its watch cache and etcd
//!   compaction window (minutes).
//! - Deletion on the embedded store is immediate (no grace period); there is no garbage
//!   collection of dependents by ownerReferences, no admission, no defaulting and no schema
//!   validation. What the API server does beyond the semantics above (defaulting,
//!   validation, owner GC) is not emulated.
//! - The embedded store has no bookmarks; the kube backend swallows bookmarks and uses
//!   them to resume.
//!
//! # kube-runtime
//!
//! [`runtime`] turns a store watch into the event stream kube-runtime's reflector and
//! `Controller` consume, so reconcilers get kube-runtime's queueing, deduplication and
//! backoff on both backends ([`runtime::controller`]).

pub mod embedded;
mod error;
pub mod kube_backend;
mod patch;
pub mod runtime;
mod selector;

use std::fmt::Debug;

use futures::stream::BoxStream;
use kube::core::NamespaceResourceScope;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use embedded::EmbeddedStore;
pub use error::{BackendError, Error, Result};
pub use kube::core::{Expression, Selector, SelectorExt};
pub use kube_backend::KubeStore;
pub use selector::parse_selector;

/// What the store can hold: any statically typed kube resource that round-trips through JSON.
///
/// Implemented automatically for CRD types from `#[derive(CustomResource)]` and for
/// k8s-openapi types.
pub trait Object:
    kube::Resource<DynamicType = ()>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<T> Object for T where
    T: kube::Resource<DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// A handle to an object store. Clone it freely; all clones share one backend.
#[derive(Clone)]
pub enum Store {
    /// The standalone, single-node store in a redb file.
    Embedded(EmbeddedStore),
    /// A Kubernetes API server through kube-rs.
    Kube(KubeStore),
}

impl Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Embedded(s) => f.debug_tuple("Store::Embedded").field(s).finish(),
            Store::Kube(_) => f.write_str("Store::Kube"),
        }
    }
}

impl From<EmbeddedStore> for Store {
    fn from(s: EmbeddedStore) -> Self {
        Store::Embedded(s)
    }
}

impl From<KubeStore> for Store {
    fn from(s: KubeStore) -> Self {
        Store::Kube(s)
    }
}

impl Store {
    /// Objects of type `K` across the whole store: the only scope of cluster-scoped types,
    /// and "all namespaces" for namespaced types (list and watch only; use
    /// [`Store::namespaced`] to read or write one namespaced object).
    pub fn all<K: Object>(&self) -> Objects<K> {
        let inner = match self {
            Store::Embedded(s) => Inner::Embedded(s.clone(), None),
            Store::Kube(s) => Inner::Kube(Box::new(kube::Api::all(s.client()))),
        };
        Objects { inner }
    }

    /// Objects of a namespaced type `K` in namespace `ns`.
    pub fn namespaced<K>(&self, ns: &str) -> Objects<K>
    where
        K: Object + kube::Resource<Scope = NamespaceResourceScope>,
    {
        let inner = match self {
            Store::Embedded(s) => Inner::Embedded(s.clone(), Some(ns.to_string())),
            Store::Kube(s) => Inner::Kube(Box::new(kube::Api::namespaced(s.client(), ns))),
        };
        Objects { inner }
    }
}

/// The result of [`Objects::list`]: the matching objects and the collection's
/// resourceVersion to start a watch from.
#[derive(Clone, Debug)]
pub struct List<K> {
    pub items: Vec<K>,
    pub resource_version: String,
}

/// One change seen by a watch. The object is its state after the change (for `Deleted`,
/// the last state, carrying the resourceVersion of the deletion).
#[derive(Clone, Debug, PartialEq)]
pub enum Event<K> {
    Added(K),
    Modified(K),
    Deleted(K),
}

impl<K> Event<K> {
    /// The object carried by the event.
    pub fn object(&self) -> &K {
        match self {
            Event::Added(o) | Event::Modified(o) | Event::Deleted(o) => o,
        }
    }

    /// The object carried by the event.
    pub fn into_object(self) -> K {
        match self {
            Event::Added(o) | Event::Modified(o) | Event::Deleted(o) => o,
        }
    }
}

/// What [`Objects::delete`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum Deletion<K> {
    /// The object had no finalizers and is gone; this was its last state. (When the API
    /// server answers a delete with a `Status` instead of the object, as it does for some
    /// core kinds, only name and uid are filled in.)
    Deleted(K),
    /// The object has finalizers: it now carries `deletionTimestamp` and stays until a write
    /// removes its last finalizer.
    Finalizing(K),
}

/// A watch: changes in order, ending with `Err(Error::Gone)` when the start version (or the
/// stream's position) fell out of the retained history.
pub type WatchStream<K> = BoxStream<'static, Result<Event<K>>>;

/// Typed access to objects of one resource type in one scope; from [`Store::all`] or
/// [`Store::namespaced`].
pub struct Objects<K> {
    inner: Inner<K>,
}

impl<K: Object> Clone for Objects<K> {
    fn clone(&self) -> Self {
        Objects {
            inner: match &self.inner {
                Inner::Embedded(s, ns) => Inner::Embedded(s.clone(), ns.clone()),
                Inner::Kube(api) => Inner::Kube(api.clone()),
            },
        }
    }
}

enum Inner<K> {
    Embedded(EmbeddedStore, Option<String>),
    Kube(Box<kube::Api<K>>),
}

impl<K: Object> Objects<K> {
    fn kind() -> String {
        K::kind(&()).into_owned()
    }

    /// Read one object; [`Error::NotFound`] if absent.
    pub async fn get(&self, name: &str) -> Result<K> {
        self.get_opt(name).await?.ok_or_else(|| Error::NotFound {
            kind: Self::kind(),
            name: name.to_string(),
        })
    }

    /// Read one object; `None` if absent.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>> {
        match &self.inner {
            Inner::Embedded(s, ns) => s.get::<K>(ns.as_deref(), name).await,
            Inner::Kube(api) => kube_backend::get_opt(api, name).await,
        }
    }

    /// All objects matching `selector` (`Selector::default()` matches all), with the
    /// collection resourceVersion to watch from.
    pub async fn list(&self, selector: &Selector) -> Result<List<K>> {
        match &self.inner {
            Inner::Embedded(s, ns) => s.list::<K>(ns.as_deref(), selector).await,
            Inner::Kube(api) => kube_backend::list(api, selector).await,
        }
    }

    /// The objects whose name starts with `prefix`, in name order. The embedded store reads
    /// only those (one key range); Kubernetes has no such query, so there it is a full list,
    /// filtered.
    pub async fn list_prefixed(&self, prefix: &str) -> Result<Vec<K>> {
        match &self.inner {
            Inner::Embedded(s, ns) => s.list_prefixed::<K>(ns.as_deref(), prefix).await,
            Inner::Kube(api) => {
                let mut items: Vec<K> = kube_backend::list(api, &Selector::default())
                    .await?
                    .items
                    .into_iter()
                    .filter(|o| {
                        o.meta()
                            .name
                            .as_deref()
                            .is_some_and(|n| n.starts_with(prefix))
                    })
                    .collect();
                items.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
                Ok(items)
            }
        }
    }

    /// Create `obj`; returns the stored object with server-assigned fields.
    pub async fn create(&self, obj: &K) -> Result<K> {
        match &self.inner {
            Inner::Embedded(s, ns) => s.create(ns.as_deref(), obj).await,
            Inner::Kube(api) => kube_backend::create(api, obj).await,
        }
    }

    /// Replace the object named by `obj.metadata.name`, conditional on
    /// `obj.metadata.resourceVersion`. `.status` is ignored.
    pub async fn replace(&self, obj: &K) -> Result<K> {
        let name = require_name_and_version(obj)?;
        match &self.inner {
            Inner::Embedded(s, ns) => s.replace(ns.as_deref(), obj, false).await,
            Inner::Kube(api) => kube_backend::replace(api, &name, obj, false).await,
        }
    }

    /// Write only `.status` of the object named by `obj.metadata.name`, conditional on
    /// `obj.metadata.resourceVersion`. Everything else in `obj` is ignored.
    pub async fn replace_status(&self, obj: &K) -> Result<K> {
        let name = require_name_and_version(obj)?;
        match &self.inner {
            Inner::Embedded(s, ns) => s.replace(ns.as_deref(), obj, true).await,
            Inner::Kube(api) => kube_backend::replace(api, &name, obj, true).await,
        }
    }

    /// Apply a JSON merge patch (RFC 7386) to metadata and spec; `.status` in the patch is
    /// ignored. Conditional if the patch carries `metadata.resourceVersion`.
    pub async fn patch(&self, name: &str, patch: &serde_json::Value) -> Result<K> {
        match &self.inner {
            Inner::Embedded(s, ns) => s.patch::<K>(ns.as_deref(), name, patch, false).await,
            Inner::Kube(api) => kube_backend::patch(api, name, patch, false).await,
        }
    }

    /// Apply a JSON merge patch (RFC 7386) to `.status` only (write e.g.
    /// `{"status": {"state": "Ready"}}`).
    pub async fn patch_status(&self, name: &str, patch: &serde_json::Value) -> Result<K> {
        match &self.inner {
            Inner::Embedded(s, ns) => s.patch::<K>(ns.as_deref(), name, patch, true).await,
            Inner::Kube(api) => kube_backend::patch(api, name, patch, true).await,
        }
    }

    /// Delete, honouring finalizers (see [`Deletion`]).
    pub async fn delete(&self, name: &str) -> Result<Deletion<K>> {
        match &self.inner {
            Inner::Embedded(s, ns) => s.delete::<K>(ns.as_deref(), name).await,
            Inner::Kube(api) => kube_backend::delete(api, name).await,
        }
    }

    /// Watch changes after `resource_version` (`""`/`"0"`: synthetic `Added` for every
    /// current object, then changes). The stream does not end on its own, except after
    /// yielding an error.
    pub async fn watch(
        &self,
        selector: &Selector,
        resource_version: &str,
    ) -> Result<WatchStream<K>> {
        match &self.inner {
            Inner::Embedded(s, ns) => s.watch::<K>(ns.clone(), selector, resource_version).await,
            Inner::Kube(api) => kube_backend::watch(api, selector, resource_version).await,
        }
    }
}

fn require_name_and_version<K: Object>(obj: &K) -> Result<String> {
    let meta = obj.meta();
    let name = meta.name.clone().unwrap_or_default();
    let invalid = |reason: &str| Error::Invalid {
        kind: K::kind(&()).into_owned(),
        name: name.clone(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("metadata.name is required"));
    }
    if meta.resource_version.as_deref().unwrap_or("").is_empty() {
        return Err(invalid(
            "metadata.resourceVersion is required (read the object first; blind writes are refused)",
        ));
    }
    Ok(name)
}
