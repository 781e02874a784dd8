//! [`EmbeddedStore`]: the store in one redb database file, for the single-node standalone
//! mode and for tests.
//!
//! # Layout
//!
//! Three tables:
//!
//! - `objects`: key `"<apiVersion>/<kind>\0<namespace>\0<name>"` (namespace empty for
//!   cluster-scoped objects), value the object as JSON.
//! - `events`: key the resourceVersion (`u64`) of a change, value a JSON record of the change
//!   (kind, namespace, type, object after the change, labels before it). This is the watch
//!   history; it is bounded ([`EmbeddedOptions::history`]) and, being in the file, survives
//!   restarts, so a watcher may resume across a restart of the process.
//! - `meta`: `resource_version` (the last assigned version, one global counter starting at 1)
//!   and `compacted` (every change at or below it has been dropped from `events`; a watch from
//!   an older version is [`Error::Gone`]).
//!
//! # Writes: group commit
//!
//! Each write changes the object, appends its event and bumps the counter inside one redb
//! write transaction, so the three change atomically. Writes that arrive while a commit is
//! running queue up and the next commit takes all of them in **one** transaction (group
//! commit): one durable `fsync` for a whole burst instead of one per write. Durability is
//! unchanged: a write is answered only after the transaction holding it committed with
//! [`redb::Durability::Immediate`], so a crash never loses an acknowledged write (it may lose
//! writes still queued, whose callers got no answer). Each write in a batch is checked
//! against the state left by the writes before it, exactly as if they ran one after another;
//! a rejected write (conflict, not found, ...) fails alone, while a database error fails the
//! whole batch and nothing of it is stored.
//!
//! # Watches
//!
//! After commit the new version is published on a `tokio::sync::watch` channel. The most
//! recent changes are also kept in memory ([`RECENT_CHANGES`] of them, already parsed), so
//! the many watch streams of a running server read a new change from memory instead of each
//! re-reading and re-parsing it from the file; a watcher further behind reads the `events`
//! table from its position, so a slow watcher never loses events (it only falls behind, and
//! gets `Gone` once it falls out of the retained history). Database work runs on tokio's
//! blocking pool.
//!
//! # Memory
//!
//! What the store holds in memory is bounded, independent of the number of objects and of
//! the history: redb's page cache ([`EmbeddedOptions::cache_size`], 2 MiB by default instead
//! of redb's 1 GiB), the [`RECENT_CHANGES`] parsed changes, and the writes of one pending
//! group commit. Objects and the watch history live in the file.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use kube::core::{Selector, SelectorExt};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::patch::{finalizers, labels, merge_patch, meta_str, metadata_mut, spec_part};
use crate::{BackendError, Deletion, Error, Event, List, Object, Result, WatchStream};

/// Default number of changes kept for watch resumption.
pub const DEFAULT_HISTORY: u64 = 10_000;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const META_RV: &str = "resource_version";
const META_COMPACTED: &str = "compacted";
/// Events read from the database per wake-up of a watch stream.
const WATCH_BATCH: usize = 256;
/// Changes kept in memory for watch streams (see the module docs). Each holds its object
/// parsed (a few KiB of heap), so this bounds a few hundred KiB; a watcher further behind
/// reads the `events` table instead.
pub const RECENT_CHANGES: usize = 128;
/// Default size of redb's page cache ([`EmbeddedOptions::cache_size`]).
pub const DEFAULT_CACHE_SIZE: usize = 2 << 20;
/// Most writes committed in one transaction.
const MAX_GROUP: usize = 256;

/// Options for [`EmbeddedStore::open_with`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// How many changes to keep for watches to resume from (at least 1).
    pub history: u64,
    /// Bytes of database pages redb keeps in memory (a file-backed store only). redb's own
    /// default is 1 GiB, so the cache would grow to the size of the file; pages beyond this
    /// are read again from the file (usually from the kernel's page cache).
    pub cache_size: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            history: DEFAULT_HISTORY,
            cache_size: DEFAULT_CACHE_SIZE,
        }
    }
}

/// The embedded store. Clone freely; clones share the database. The file is closed when the
/// last clone (including those held by watch streams) is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Last committed resourceVersion, for waking watchers.
    committed: watch::Sender<u64>,
    history: u64,
    location: String,
    /// Writes waiting for the next group commit.
    queue: std::sync::Mutex<WriteQueue>,
    /// The last [`RECENT_CHANGES`] committed changes, oldest first, contiguous versions.
    recent: std::sync::Mutex<VecDeque<Arc<Change>>>,
}

/// Writes waiting to be committed, and whether a committer is running.
#[derive(Default)]
struct WriteQueue {
    jobs: Vec<Job>,
    committing: bool,
}

/// One queued write and where its answer goes.
struct Job {
    target: Target,
    name: String,
    op: Write,
    reply: Reply,
}

/// Where the answer to one queued write goes.
type Reply = tokio::sync::oneshot::Sender<Result<WriteResult>>;

/// A committed change, parsed, as watch streams consume it.
#[derive(Debug)]
struct Change {
    rv: u64,
    type_key: String,
    namespace: String,
    action: Action,
    object: Arc<Value>,
    old_labels: Option<BTreeMap<String, String>>,
}

/// Why one write of a batch failed: rejected alone, or fatal for the batch.
enum ApplyError {
    Rejected(Error),
    Fatal(Error),
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("location", &self.inner.location)
            .field("history", &self.inner.history)
            .finish()
    }
}

/// Which objects an operation addresses.
#[derive(Clone, Debug)]
struct Target {
    /// `apiVersion/kind`.
    type_key: String,
    kind: String,
    /// `None`: all namespaces (list/watch); for single objects the empty namespace.
    namespace: Option<String>,
}

impl Target {
    fn of<K: Object>(namespace: Option<&str>) -> Self {
        Target {
            type_key: format!("{}/{}", K::api_version(&()), K::kind(&())),
            kind: K::kind(&()).into_owned(),
            namespace: namespace.map(str::to_string),
        }
    }

    fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    fn key(&self, name: &str) -> String {
        format!("{}\0{}\0{}", self.type_key, self.ns(), name)
    }

    /// Key range of this type (and namespace if set): `[start, end)`.
    fn range(&self) -> (String, String) {
        match &self.namespace {
            Some(ns) => (
                format!("{}\0{}\0", self.type_key, ns),
                format!("{}\0{}\u{1}", self.type_key, ns),
            ),
            None => (
                format!("{}\0", self.type_key),
                format!("{}\u{1}", self.type_key),
            ),
        }
    }

    fn display_name(&self, name: &str) -> String {
        match self.ns() {
            "" => name.to_string(),
            ns => format!("{ns}/{name}"),
        }
    }

    fn backend(&self, name: &str, operation: &'static str, source: BackendError) -> Error {
        Error::Backend {
            kind: self.kind.clone(),
            name: self.display_name(name),
            operation,
            source: Box::new(source),
        }
    }

    fn invalid(&self, name: &str, reason: impl Into<String>) -> Error {
        Error::Invalid {
            kind: self.kind.clone(),
            name: self.display_name(name),
            reason: reason.into(),
        }
    }
}

fn dbe(e: impl Into<redb::Error>) -> BackendError {
    BackendError::Database(e.into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Action {
    Added,
    Modified,
    Deleted,
}

/// One row of the `events` table.
#[derive(Debug, Serialize, Deserialize)]
struct ChangeRecord {
    type_key: String,
    namespace: String,
    action: Action,
    object: Value,
    /// Labels before the change (absent for `Added`), to tell a selector-filtered watcher
    /// that an object started or stopped matching.
    old_labels: Option<BTreeMap<String, String>>,
}

/// Changes read for a watcher, with the compaction mark and current version.
type EventBatch = (Vec<(u64, ChangeRecord)>, u64, u64);

/// A single-object write, run inside one transaction.
enum Write {
    Create(Value),
    Replace { obj: Value, status_only: bool },
    Patch { patch: Value, status_only: bool },
    Delete,
}

enum WriteResult {
    Stored(Value),
    Deleted(Value),
    Finalizing(Value),
}

impl EmbeddedStore {
    /// Open the database file at `path`, creating it if missing.
    ///
    /// Blocking (file IO); call it at startup or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// [`EmbeddedStore::open`] with options.
    pub fn open_with(path: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let location = path.as_ref().display().to_string();
        let db = Database::builder()
            .set_cache_size(options.cache_size)
            .create(path.as_ref())
            .map_err(|e| Error::Backend {
                kind: "Database".into(),
                name: location.clone(),
                operation: "open",
                source: Box::new(dbe(e)),
            })?;
        Self::init(db, options, location)
    }

    /// A store that lives in memory only (tests, dry runs).
    pub fn in_memory() -> Result<Self> {
        Self::in_memory_with(EmbeddedOptions::default())
    }

    /// [`EmbeddedStore::in_memory`] with options.
    pub fn in_memory_with(options: EmbeddedOptions) -> Result<Self> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| Error::Backend {
                kind: "Database".into(),
                name: "memory".into(),
                operation: "open",
                source: Box::new(dbe(e)),
            })?;
        Self::init(db, options, "memory".into())
    }

    fn init(db: Database, options: EmbeddedOptions, location: String) -> Result<Self> {
        let fail = |e: BackendError| Error::Backend {
            kind: "Database".into(),
            name: location.clone(),
            operation: "initialize",
            source: Box::new(e),
        };
        let txn = db.begin_write().map_err(|e| fail(dbe(e)))?;
        let rv = {
            txn.open_table(OBJECTS).map_err(|e| fail(dbe(e)))?;
            txn.open_table(EVENTS).map_err(|e| fail(dbe(e)))?;
            let mut meta = txn.open_table(META).map_err(|e| fail(dbe(e)))?;
            let rv = meta
                .get(META_RV)
                .map_err(|e| fail(dbe(e)))?
                .map(|v| v.value());
            match rv {
                Some(rv) => rv,
                None => {
                    meta.insert(META_RV, 1).map_err(|e| fail(dbe(e)))?;
                    meta.insert(META_COMPACTED, 0).map_err(|e| fail(dbe(e)))?;
                    1
                }
            }
        };
        txn.commit().map_err(|e| fail(dbe(e)))?;
        let (committed, _) = watch::channel(rv);
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                committed,
                history: options.history.max(1),
                location,
                queue: Default::default(),
                recent: Default::default(),
            }),
        })
    }

    /// The last assigned resourceVersion.
    pub fn resource_version(&self) -> u64 {
        *self.inner.committed.borrow()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        target: &Target,
        name: &str,
        operation: &'static str,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| target.backend(name, operation, e.into()))?
    }

    pub(crate) async fn get<K: Object>(&self, ns: Option<&str>, name: &str) -> Result<Option<K>> {
        let t = Target::of::<K>(Some(ns.unwrap_or("")));
        let (t2, n2) = (t.clone(), name.to_string());
        let raw = self
            .blocking(&t, name, "get", move |inner| inner.get_raw(&t2, &n2))
            .await?;
        raw.map(|v| decode(&t, name, v)).transpose()
    }

    pub(crate) async fn list<K: Object>(
        &self,
        ns: Option<&str>,
        selector: &Selector,
    ) -> Result<List<K>> {
        let t = Target::of::<K>(ns);
        let (t2, sel) = (t.clone(), selector.clone());
        let (items, rv) = self
            .blocking(&t, "", "list", move |inner| {
                inner.list_typed::<K>(&t2, &sel)
            })
            .await?;
        Ok(List {
            items,
            resource_version: rv.to_string(),
        })
    }

    pub(crate) async fn list_prefixed<K: Object>(
        &self,
        ns: Option<&str>,
        prefix: &str,
    ) -> Result<Vec<K>> {
        let t = Target::of::<K>(Some(ns.unwrap_or("")));
        let (t2, p) = (t.clone(), prefix.to_owned());
        self.blocking(&t, prefix, "list", move |inner| {
            inner.list_prefixed_typed::<K>(&t2, &p)
        })
        .await
    }

    pub(crate) async fn create<K: Object>(&self, ns: Option<&str>, obj: &K) -> Result<K> {
        let t = Target::of::<K>(Some(ns.unwrap_or("")));
        let name = obj.meta().name.clone().unwrap_or_default();
        let value = encode(&t, &name, obj)?;
        self.write(t, name, Write::Create(value)).await
    }

    pub(crate) async fn replace<K: Object>(
        &self,
        ns: Option<&str>,
        obj: &K,
        status_only: bool,
    ) -> Result<K> {
        let t = Target::of::<K>(Some(ns.unwrap_or("")));
        let name = obj.meta().name.clone().unwrap_or_default();
        let value = encode(&t, &name, obj)?;
        self.write(
            t,
            name,
            Write::Replace {
                obj: value,
                status_only,
            },
        )
        .await
    }

    pub(crate) async fn patch<K: Object>(
        &self,
        ns: Option<&str>,
        name: &str,
        patch: &Value,
        status_only: bool,
    ) -> Result<K> {
        let t = Target::of::<K>(Some(ns.unwrap_or("")));
        if !patch.is_object() {
            return Err(t.invalid(name, "a merge patch must be a JSON object"));
        }
        self.write(
            t,
            name.to_string(),
            Write::Patch {
                patch: patch.clone(),
                status_only,
            },
        )
        .await
    }

    pub(crate) async fn delete<K: Object>(
        &self,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Deletion<K>> {
        let t = Target::of::<K>(Some(ns.unwrap_or("")));
        let result = self
            .submit(t.clone(), name.to_string(), Write::Delete)
            .await?;
        match result {
            WriteResult::Deleted(v) => Ok(Deletion::Deleted(decode(&t, name, v)?)),
            WriteResult::Finalizing(v) | WriteResult::Stored(v) => {
                Ok(Deletion::Finalizing(decode(&t, name, v)?))
            }
        }
    }

    async fn write<K: Object>(&self, t: Target, name: String, op: Write) -> Result<K> {
        let result = self.submit(t.clone(), name.clone(), op).await?;
        match result {
            WriteResult::Stored(v) | WriteResult::Deleted(v) | WriteResult::Finalizing(v) => {
                decode(&t, &name, v)
            }
        }
    }

    /// Queue one write for the next group commit and wait until it is committed (or
    /// rejected). The first writer to find no commit running starts one on the blocking pool;
    /// it keeps committing batches until the queue is empty.
    async fn submit(&self, target: Target, name: String, op: Write) -> Result<WriteResult> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let failed = (target.clone(), name.clone());
        let lead = {
            let mut q = self.inner.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.jobs.push(Job {
                target,
                name,
                op,
                reply,
            });
            !std::mem::replace(&mut q.committing, true)
        };
        if lead {
            let inner = self.inner.clone();
            tokio::task::spawn_blocking(move || inner.commit_queued());
        }
        answer.await.map_err(|_| {
            failed.0.backend(
                &failed.1,
                "write",
                BackendError::Other("the store's committer stopped before answering".into()),
            )
        })?
    }

    pub(crate) async fn watch<K: Object>(
        &self,
        ns: Option<String>,
        selector: &Selector,
        resource_version: &str,
    ) -> Result<WatchStream<K>> {
        let t = Target::of::<K>(ns.as_deref());
        let mut rx = self.inner.committed.subscribe();
        rx.mark_changed();
        let mut buffered = VecDeque::new();
        let after = match resource_version {
            "" | "0" => {
                let (t2, sel) = (t.clone(), selector.clone());
                let (objects, rv) = self
                    .blocking(&t, "", "watch", move |inner| inner.list_raw(&t2, &sel))
                    .await?;
                for object in objects {
                    buffered.push_back(Ok((EventType::Added, Arc::new(object))));
                }
                rv
            }
            other => {
                let rv: u64 = other.parse().map_err(|_| Error::Invalid {
                    kind: t.kind.clone(),
                    name: String::new(),
                    reason: format!("resourceVersion {other:?} is not one of this store's"),
                })?;
                let inner = self.inner.clone();
                let t2 = t.clone();
                let (compacted, current) = self
                    .blocking(&t, "", "watch", move |_| {
                        Ok((
                            inner
                                .read_meta(META_COMPACTED)
                                .map_err(|e| t2.backend("", "watch", e))?,
                            inner
                                .read_meta(META_RV)
                                .map_err(|e| t2.backend("", "watch", e))?,
                        ))
                    })
                    .await?;
                check_window(&t, rv, compacted, current)?;
                rv
            }
        };
        let state = WatchState {
            store: self.clone(),
            target: t,
            selector: selector.clone(),
            rx,
            after,
            buffered,
            done: false,
        };
        Ok(futures::stream::unfold(state, WatchState::next::<K>).boxed())
    }
}

fn check_window(t: &Target, rv: u64, compacted: u64, current: u64) -> Result<()> {
    if rv < compacted {
        return Err(Error::Gone {
            kind: t.kind.clone(),
            resource_version: rv.to_string(),
            reason: format!("history before {compacted} has been compacted"),
        });
    }
    if rv > current {
        return Err(Error::Gone {
            kind: t.kind.clone(),
            resource_version: rv.to_string(),
            reason: format!("newer than the store's resourceVersion {current}"),
        });
    }
    Ok(())
}

fn encode<K: Object>(t: &Target, name: &str, obj: &K) -> Result<Value> {
    let mut value = serde_json::to_value(obj).map_err(|e| t.backend(name, "encode", e.into()))?;
    // Some types (k8s-openapi) only write apiVersion/kind when serialized; make sure they are
    // there for readers of the raw JSON.
    if let Value::Object(m) = &mut value {
        m.entry("apiVersion")
            .or_insert_with(|| Value::String(K::api_version(&()).into_owned()));
        m.entry("kind")
            .or_insert_with(|| Value::String(K::kind(&()).into_owned()));
    }
    Ok(value)
}

fn decode<K: Object>(t: &Target, name: &str, value: Value) -> Result<K> {
    serde_json::from_value(value).map_err(|e| t.backend(name, "decode", e.into()))
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl Inner {
    fn read_meta(&self, key: &str) -> Result<u64, BackendError> {
        let txn = self.db.begin_read().map_err(dbe)?;
        let meta = txn.open_table(META).map_err(dbe)?;
        Ok(meta.get(key).map_err(dbe)?.map(|v| v.value()).unwrap_or(0))
    }

    fn get_raw(&self, t: &Target, name: &str) -> Result<Option<Value>> {
        let be = |e: BackendError| t.backend(name, "get", e);
        let txn = self.db.begin_read().map_err(|e| be(dbe(e)))?;
        let objects = txn.open_table(OBJECTS).map_err(|e| be(dbe(e)))?;
        let Some(bytes) = objects.get(t.key(name).as_str()).map_err(|e| be(dbe(e)))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| be(e.into()))
    }

    /// Walk the objects of `t` in key order from the key of name `from` (`""`: all of them),
    /// in one read snapshot, until `each` says stop; returns the store's version of that
    /// snapshot. `each` gets the object's key and bytes.
    fn scan(
        &self,
        t: &Target,
        from: &str,
        mut each: impl FnMut(&str, &[u8]) -> Result<ControlFlow<()>>,
    ) -> Result<u64> {
        let be = |e: BackendError| t.backend(from, "list", e);
        let txn = self.db.begin_read().map_err(|e| be(dbe(e)))?;
        let objects = txn.open_table(OBJECTS).map_err(|e| be(dbe(e)))?;
        let meta = txn.open_table(META).map_err(|e| be(dbe(e)))?;
        let rv = meta
            .get(META_RV)
            .map_err(|e| be(dbe(e)))?
            .map(|v| v.value())
            .unwrap_or(0);
        let (start, end) = t.range();
        let start = if from.is_empty() { start } else { t.key(from) };
        for entry in objects
            .range(start.as_str()..end.as_str())
            .map_err(|e| be(dbe(e)))?
        {
            let (key, bytes) = entry.map_err(|e| be(dbe(e)))?;
            if each(key.value(), bytes.value())?.is_break() {
                break;
            }
        }
        Ok(rv)
    }

    fn list_raw(&self, t: &Target, selector: &Selector) -> Result<(Vec<Value>, u64)> {
        let mut items = Vec::new();
        let rv = self.scan(t, "", |_, bytes| {
            let value: Value = serde_json::from_slice(bytes)
                .map_err(|e| t.backend("", "list", BackendError::from(e)))?;
            if selector.matches(&labels(&value)) {
                items.push(value);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok((items, rv))
    }

    /// [`Self::list_raw`] decoded straight into `K` (no intermediate JSON tree: listing is
    /// the hot read of every reconciler).
    fn list_typed<K: Object>(&self, t: &Target, selector: &Selector) -> Result<(Vec<K>, u64)> {
        let all = selector.selects_all();
        let no_labels = BTreeMap::new();
        let mut items = Vec::new();
        let rv = self.scan(t, "", |_, bytes| {
            let obj: K =
                serde_json::from_slice(bytes).map_err(|e| t.backend("", "decode", e.into()))?;
            if all || selector.matches(obj.meta().labels.as_ref().unwrap_or(&no_labels)) {
                items.push(obj);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok((items, rv))
    }

    /// The objects of `t` whose name starts with `prefix`: one key range, nothing else read.
    fn list_prefixed_typed<K: Object>(&self, t: &Target, prefix: &str) -> Result<Vec<K>> {
        let start = t.key(prefix);
        let mut items = Vec::new();
        self.scan(t, prefix, |key, bytes| {
            if !key.starts_with(start.as_str()) {
                return Ok(ControlFlow::Break(()));
            }
            items.push(
                serde_json::from_slice(bytes).map_err(|e| t.backend(prefix, "decode", e.into()))?,
            );
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(items)
    }

    /// Events after `after` (at most [`WATCH_BATCH`]), the compaction mark and the current
    /// version, from one snapshot.
    fn read_events(&self, after: u64) -> Result<EventBatch, BackendError> {
        let txn = self.db.begin_read().map_err(dbe)?;
        let events = txn.open_table(EVENTS).map_err(dbe)?;
        let meta = txn.open_table(META).map_err(dbe)?;
        let compacted = meta
            .get(META_COMPACTED)
            .map_err(dbe)?
            .map(|v| v.value())
            .unwrap_or(0);
        let current = meta
            .get(META_RV)
            .map_err(dbe)?
            .map(|v| v.value())
            .unwrap_or(0);
        let mut out = Vec::new();
        for entry in events.range(after.saturating_add(1)..).map_err(dbe)? {
            let (rv, bytes) = entry.map_err(dbe)?;
            out.push((rv.value(), serde_json::from_slice(bytes.value())?));
            if out.len() >= WATCH_BATCH {
                break;
            }
        }
        Ok((out, compacted, current))
    }

    /// Commit queued writes, batch after batch, until the queue is empty.
    ///
    /// The last batch is answered only after this committer let go of the store, so a caller
    /// that drops its store after its write returned really closes the file.
    fn commit_queued(self: Arc<Self>) {
        // If a batch panics, its callers get an error (their reply senders are dropped) and the
        // next writer starts a new committer.
        struct Reset(Option<Arc<Inner>>);
        impl Drop for Reset {
            fn drop(&mut self) {
                if let Some(inner) = self.0.take()
                    && std::thread::panicking()
                {
                    let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
                    q.committing = false;
                }
            }
        }
        let mut this = Reset(Some(self));
        loop {
            let Some(inner) = this.0.as_ref() else { return };
            let jobs = {
                let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.jobs.is_empty() {
                    q.committing = false;
                    return;
                }
                let n = q.jobs.len().min(MAX_GROUP);
                q.jobs.drain(..n).collect::<Vec<_>>()
            };
            let answers = inner.commit_batch(jobs);
            let more = {
                let mut q = inner.queue.lock().unwrap_or_else(|e| e.into_inner());
                if q.jobs.is_empty() {
                    q.committing = false;
                }
                q.committing
            };
            if !more {
                drop(this.0.take());
            }
            for (reply, result) in answers {
                let _ = reply.send(result);
            }
            if !more {
                return;
            }
        }
    }

    /// Apply `jobs` in order in one write transaction, commit it durably and publish; returns
    /// each job's answer.
    fn commit_batch(&self, jobs: Vec<Job>) -> Vec<(Reply, Result<WriteResult>)> {
        let mut answers: Vec<(Job, Result<WriteResult>)> = Vec::with_capacity(jobs.len());
        let mut changes: Vec<Arc<Change>> = Vec::new();
        let mut pending: VecDeque<Job> = jobs.into();
        let outcome: Result<(), BackendError> = (|| {
            let txn = self.db.begin_write().map_err(dbe)?;
            {
                let mut objects = txn.open_table(OBJECTS).map_err(dbe)?;
                let mut events = txn.open_table(EVENTS).map_err(dbe)?;
                let mut meta = txn.open_table(META).map_err(dbe)?;
                let mut rv = meta
                    .get(META_RV)
                    .map_err(dbe)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                while let Some(mut job) = pending.pop_front() {
                    let op = std::mem::replace(&mut job.op, Write::Delete);
                    match self.apply(&mut objects, &mut events, &job.target, &job.name, op, rv) {
                        Ok((result, change)) => {
                            if let Some(c) = change {
                                rv = c.rv;
                                changes.push(Arc::new(c));
                            }
                            answers.push((job, Ok(result)));
                        }
                        Err(ApplyError::Rejected(e)) => answers.push((job, Err(e))),
                        Err(ApplyError::Fatal(e)) => {
                            // The rest of the batch is not attempted; it fails with the batch.
                            let reason = e.to_string();
                            answers.push((job, Err(e)));
                            return Err(BackendError::Other(reason));
                        }
                    }
                }
                if !changes.is_empty() {
                    let mut compacted = None;
                    while events.len().map_err(dbe)? > self.history {
                        match events.pop_first().map_err(dbe)? {
                            Some((old, _)) => compacted = Some(old.value()),
                            None => break,
                        }
                    }
                    if let Some(c) = compacted {
                        meta.insert(META_COMPACTED, c).map_err(dbe)?;
                    }
                    meta.insert(META_RV, rv).map_err(dbe)?;
                }
            }
            if changes.is_empty() {
                txn.abort().map_err(dbe)?;
            } else {
                txn.commit().map_err(dbe)?;
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                if let Some(last) = changes.last().map(|c| c.rv) {
                    {
                        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                        recent.extend(changes);
                        // Never more than the history: a watcher behind it must get `Gone`.
                        let cap = RECENT_CHANGES.min(self.history as usize);
                        while recent.len() > cap {
                            recent.pop_front();
                        }
                    }
                    self.committed.send_if_modified(|current| {
                        if last > *current {
                            *current = last;
                            true
                        } else {
                            false
                        }
                    });
                }
                answers
                    .into_iter()
                    .map(|(job, result)| (job.reply, result))
                    .collect()
            }
            Err(e) => {
                // Nothing of this batch was stored: every write that had succeeded fails too.
                let reason = e.to_string();
                let unattempted = pending
                    .into_iter()
                    .map(|j| (j, Ok(WriteResult::Stored(Value::Null))));
                answers
                    .into_iter()
                    .chain(unattempted)
                    .map(|(job, result)| {
                        let result = match result {
                            Err(e) => Err(e),
                            Ok(_) => Err(job.target.backend(
                                &job.name,
                                "write",
                                BackendError::Other(format!("the commit failed: {reason}")),
                            )),
                        };
                        (job.reply, result)
                    })
                    .collect()
            }
        }
    }

    /// One write inside the batch transaction; `rv` is the last version assigned so far.
    /// Returns the result and, if something changed, the change (with its new version).
    fn apply(
        &self,
        objects: &mut redb::Table<&str, &[u8]>,
        events: &mut redb::Table<u64, &[u8]>,
        t: &Target,
        name: &str,
        op: Write,
        rv: u64,
    ) -> std::result::Result<(WriteResult, Option<Change>), ApplyError> {
        let fatal = |e: BackendError| ApplyError::Fatal(t.backend(name, "write", e));
        let (name, op) = match op {
            Write::Create(mut obj) => {
                let name = self
                    .assign_name(t, name, &mut obj)
                    .map_err(ApplyError::Rejected)?;
                (name, Write::Create(obj))
            }
            other => (name.to_string(), other),
        };
        if name.is_empty() {
            return Err(ApplyError::Rejected(
                t.invalid("", "metadata.name is required"),
            ));
        }
        let key = t.key(&name);
        let current: Option<Value> = objects
            .get(key.as_str())
            .map_err(|e| fatal(dbe(e)))?
            .map(|bytes| serde_json::from_slice(bytes.value()))
            .transpose()
            .map_err(|e| fatal(e.into()))?;

        let plan = plan_write(t, &name, current.as_ref(), op).map_err(ApplyError::Rejected)?;
        let Some((action, mut new, remove)) = plan else {
            // Nothing changed: no new version, no event.
            let current = current.unwrap_or(Value::Null);
            let finalizing = meta_str(&current, "deletionTimestamp").is_some();
            let result = if finalizing {
                WriteResult::Finalizing(current)
            } else {
                WriteResult::Stored(current)
            };
            return Ok((result, None));
        };
        let next = rv + 1;
        metadata_mut(&mut new).insert("resourceVersion".into(), Value::String(next.to_string()));
        if remove {
            objects.remove(key.as_str()).map_err(|e| fatal(dbe(e)))?;
        } else {
            let bytes = serde_json::to_vec(&new).map_err(|e| fatal(e.into()))?;
            objects
                .insert(key.as_str(), bytes.as_slice())
                .map_err(|e| fatal(dbe(e)))?;
        }
        let old_labels = current.as_ref().map(labels);
        let record = ChangeRecord {
            type_key: t.type_key.clone(),
            namespace: t.ns().to_string(),
            action,
            object: new,
            old_labels,
        };
        let bytes = serde_json::to_vec(&record).map_err(|e| fatal(e.into()))?;
        events
            .insert(next, bytes.as_slice())
            .map_err(|e| fatal(dbe(e)))?;
        let ChangeRecord {
            type_key,
            namespace,
            action,
            object,
            old_labels,
        } = record;
        let result = match (action, remove) {
            (_, true) => WriteResult::Deleted(object.clone()),
            _ if meta_str(&object, "deletionTimestamp").is_some() => {
                WriteResult::Finalizing(object.clone())
            }
            _ => WriteResult::Stored(object.clone()),
        };
        let change = Change {
            rv: next,
            type_key,
            namespace,
            action,
            object: Arc::new(object),
            old_labels,
        };
        Ok((result, Some(change)))
    }

    /// The name of an object being created, from `metadata.name` or `generateName`.
    fn assign_name(&self, t: &Target, name: &str, obj: &mut Value) -> Result<String> {
        if !name.is_empty() {
            return Ok(name.to_string());
        }
        let Some(prefix) = meta_str(obj, "generateName").map(str::to_string) else {
            return Err(t.invalid("", "metadata.name or metadata.generateName is required"));
        };
        let suffix: String = uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .chars()
            .take(5)
            .collect();
        let name = format!("{prefix}{suffix}");
        metadata_mut(obj).insert("name".into(), Value::String(name.clone()));
        Ok(name)
    }
}

/// Decide what a write does: `None` for a no-op, else the change type, the new object
/// (without its new resourceVersion) and whether the object is removed.
fn plan_write(
    t: &Target,
    name: &str,
    current: Option<&Value>,
    op: Write,
) -> Result<Option<(Action, Value, bool)>> {
    let display = t.display_name(name);
    let not_found = || Error::NotFound {
        kind: t.kind.clone(),
        name: display.clone(),
    };
    match op {
        Write::Create(mut obj) => {
            if current.is_some() {
                return Err(Error::AlreadyExists {
                    kind: t.kind.clone(),
                    name: display,
                });
            }
            check_namespace(t, name, &obj)?;
            // As for a CRD with the status subresource: status is not set by create.
            if let Value::Object(m) = &mut obj {
                m.remove("status");
            }
            let meta = metadata_mut(&mut obj);
            for server_field in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
            ] {
                meta.remove(server_field);
            }
            meta.insert(
                "uid".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
            meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
            meta.insert("generation".into(), Value::from(1));
            set_namespace(meta, t);
            Ok(Some((Action::Added, obj, false)))
        }
        Write::Replace { obj, status_only } => {
            let current = current.ok_or_else(not_found)?;
            check_namespace(t, name, &obj)?;
            check_version(t, name, current, meta_str(&obj, "resourceVersion"))?;
            if let Some(obj_name) = meta_str(&obj, "name")
                && obj_name != name
            {
                return Err(t.invalid(name, format!("metadata.name {obj_name:?} does not match")));
            }
            let new = if status_only {
                with_status_of(current, &obj)
            } else {
                with_server_fields(t, current, obj)
            };
            finish_update(t, name, current, new)
        }
        Write::Patch { patch, status_only } => {
            let current = current.ok_or_else(not_found)?;
            check_version(t, name, current, meta_str(&patch, "resourceVersion"))?;
            let mut patched = current.clone();
            merge_patch(&mut patched, &patch);
            let new = if status_only {
                with_status_of(current, &patched)
            } else {
                with_server_fields(t, current, patched)
            };
            finish_update(t, name, current, new)
        }
        Write::Delete => {
            let current = current.ok_or_else(not_found)?;
            if finalizers(current).is_empty() {
                return Ok(Some((Action::Deleted, current.clone(), true)));
            }
            if meta_str(current, "deletionTimestamp").is_some() {
                return Ok(None);
            }
            let mut new = current.clone();
            let generation = generation_of(current) + 1;
            let meta = metadata_mut(&mut new);
            meta.insert("deletionTimestamp".into(), Value::String(now_rfc3339()));
            meta.insert("deletionGracePeriodSeconds".into(), Value::from(0));
            meta.insert("generation".into(), Value::from(generation));
            Ok(Some((Action::Modified, new, false)))
        }
    }
}

fn check_namespace(t: &Target, name: &str, obj: &Value) -> Result<()> {
    match meta_str(obj, "namespace") {
        Some(ns) if !ns.is_empty() && ns != t.ns() => Err(t.invalid(
            name,
            format!("metadata.namespace {ns:?} does not match the request's namespace"),
        )),
        _ => Ok(()),
    }
}

fn set_namespace(meta: &mut serde_json::Map<String, Value>, t: &Target) {
    if t.ns().is_empty() {
        meta.remove("namespace");
    } else {
        meta.insert("namespace".into(), Value::String(t.ns().to_string()));
    }
}

fn check_version(t: &Target, name: &str, current: &Value, sent: Option<&str>) -> Result<()> {
    let Some(sent) = sent.filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let stored = meta_str(current, "resourceVersion").unwrap_or("");
    if sent != stored {
        return Err(Error::Conflict {
            kind: t.kind.clone(),
            name: t.display_name(name),
            resource_version: sent.to_string(),
            reason: "the object has been modified; please apply your changes to the latest version and try again".into(),
        });
    }
    Ok(())
}

fn generation_of(obj: &Value) -> i64 {
    obj.get("metadata")
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// `current` with `.status` taken from `source`.
fn with_status_of(current: &Value, source: &Value) -> Value {
    let mut new = current.clone();
    if let Value::Object(m) = &mut new {
        match source.get("status") {
            Some(status) => m.insert("status".into(), status.clone()),
            None => m.remove("status"),
        };
    }
    new
}

/// `obj` with `.status` and server-owned metadata taken from `current`.
fn with_server_fields(t: &Target, current: &Value, mut obj: Value) -> Value {
    if let Value::Object(m) = &mut obj {
        match current.get("status") {
            Some(status) => m.insert("status".into(), status.clone()),
            None => m.remove("status"),
        };
    }
    let current_meta = current.get("metadata");
    let meta = metadata_mut(&mut obj);
    for field in [
        "name",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "resourceVersion",
    ] {
        match current_meta.and_then(|m| m.get(field)) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    set_namespace(meta, t);
    obj
}

/// Shared tail of replace and patch: finalizer rule, generation, no-op detection, and the
/// removal of a terminating object whose last finalizer went away.
fn finish_update(
    t: &Target,
    name: &str,
    current: &Value,
    mut new: Value,
) -> Result<Option<(Action, Value, bool)>> {
    let terminating = meta_str(current, "deletionTimestamp").is_some();
    let finalizers_now = finalizers(&new);
    if terminating {
        let before = finalizers(current);
        if let Some(added) = finalizers_now.iter().find(|f| !before.contains(f)) {
            return Err(t.invalid(
                name,
                format!("finalizer {added:?} cannot be added to an object being deleted"),
            ));
        }
    }
    if spec_part(&new) != spec_part(current) {
        let generation = generation_of(current) + 1;
        metadata_mut(&mut new).insert("generation".into(), Value::from(generation));
    }
    if new == *current {
        return Ok(None);
    }
    if terminating && finalizers_now.is_empty() {
        return Ok(Some((Action::Deleted, new, true)));
    }
    Ok(Some((Action::Modified, new, false)))
}

/// State of one watch stream.
struct WatchState {
    store: EmbeddedStore,
    target: Target,
    selector: Selector,
    rx: watch::Receiver<u64>,
    /// Every change up to this version has been consumed.
    after: u64,
    buffered: VecDeque<Result<(EventType, Arc<Value>), Error>>,
    done: bool,
}

/// The type of a watch event as this watcher sees it (after its selector).
#[derive(Clone, Copy, Debug)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

impl WatchState {
    async fn next<K: Object>(mut self) -> Option<(Result<Event<K>>, Self)> {
        loop {
            if let Some(item) = self.buffered.pop_front() {
                let item = match item {
                    Ok(v) => self.to_event::<K>(v),
                    Err(e) => Err(e),
                };
                if item.is_err() {
                    self.done = true;
                    self.buffered.clear();
                }
                return Some((item, self));
            }
            if self.done {
                return None;
            }
            let latest = *self.rx.borrow_and_update();
            if latest > self.after {
                self.fill().await;
                continue;
            }
            if self.rx.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Read the next batch of changes into `buffered`: from the in-memory recent changes when
    /// they reach back far enough, else from the `events` table.
    async fn fill(&mut self) {
        let after = self.after;
        let recent: Option<Vec<Arc<Change>>> = {
            let recent = self
                .store
                .inner
                .recent
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match recent.front() {
                Some(first) if first.rv <= after + 1 => Some(
                    recent
                        .iter()
                        .skip((after + 1 - first.rv) as usize)
                        .take(WATCH_BATCH)
                        .cloned()
                        .collect(),
                ),
                _ => None,
            }
        };
        if let Some(changes) = recent {
            if changes.is_empty() {
                // Everything committed so far is consumed.
                self.after = self.after.max(*self.rx.borrow());
                return;
            }
            for c in changes {
                self.after = c.rv;
                self.offer(
                    &c.type_key,
                    &c.namespace,
                    c.action,
                    &c.object,
                    c.old_labels.as_ref(),
                );
            }
            return;
        }
        let inner = self.store.inner.clone();
        let read = tokio::task::spawn_blocking(move || inner.read_events(after)).await;
        let (events, compacted, current) = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                self.buffered
                    .push_back(Err(self.target.backend("", "watch", e)));
                return;
            }
            Err(e) => {
                self.buffered
                    .push_back(Err(self.target.backend("", "watch", e.into())));
                return;
            }
        };
        if after < compacted {
            self.buffered.push_back(Err(Error::Gone {
                kind: self.target.kind.clone(),
                resource_version: after.to_string(),
                reason: format!(
                    "the watcher fell behind; history before {compacted} has been compacted"
                ),
            }));
            return;
        }
        if events.is_empty() {
            self.after = self.after.max(current);
            return;
        }
        for (rv, record) in events {
            self.after = rv;
            let object = Arc::new(record.object);
            self.offer(
                &record.type_key,
                &record.namespace,
                record.action,
                &object,
                record.old_labels.as_ref(),
            );
        }
    }

    /// Buffer one change if it is about this watcher's kind and selector.
    fn offer(
        &mut self,
        type_key: &str,
        namespace: &str,
        action: Action,
        object: &Arc<Value>,
        old_labels: Option<&BTreeMap<String, String>>,
    ) {
        if type_key != self.target.type_key {
            return;
        }
        if let Some(ns) = &self.target.namespace
            && ns != namespace
        {
            return;
        }
        let matches_now = self.selector.matches(&labels(object));
        let matched_before = old_labels.is_some_and(|l| self.selector.matches(l));
        let kind = match (action, matched_before, matches_now) {
            (Action::Added, _, true) => EventType::Added,
            (Action::Modified, true, true) => EventType::Modified,
            (Action::Modified, false, true) => EventType::Added,
            (Action::Modified, true, false) => EventType::Deleted,
            (Action::Deleted, true, _) => EventType::Deleted,
            _ => return,
        };
        self.buffered.push_back(Ok((kind, object.clone())));
    }

    fn to_event<K: Object>(&self, (kind, object): (EventType, Arc<Value>)) -> Result<Event<K>> {
        let object =
            K::deserialize(&*object).map_err(|e| self.target.backend("", "decode", e.into()))?;
        Ok(match kind {
            EventType::Deleted => Event::Deleted(object),
            EventType::Modified => Event::Modified(object),
            EventType::Added => Event::Added(object),
        })
    }
}
