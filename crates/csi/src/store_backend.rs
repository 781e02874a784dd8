//! [`Backend`]s over the object store ([`hwameistor_store::Store`]), for both drivers.
//!
//! `lvm.hwameistor.io` ([`LvmStoreBackend`]):
//!
//! | CSI need | objects |
//! |---|---|
//! | volume | `LocalVolume` named after the volume id; replicas are the `LocalVolumeReplica`s whose `spec.volumeName` is the volume |
//! | create | a `LocalVolume` with `spec.accessibility.nodes` = chosen nodes (first = primary); restores also get a `LocalVolumeSnapshotRestore` `snaprestore-<volume>` (type `create`); clones first snapshot the source into `<volume>-clone-source` |
//! | ready | `status.state == Ready` (and, for restores/clones, the restore `Completed`) |
//! | out of space | a replica's `Create` condition is False with an out-of-space message ([`out_of_space`]), or the never-placed volume's `Scheduled` condition is False/`Unschedulable` (no pool fits with in-flight reservations counted) |
//! | delete | `spec.delete = true`; done when the object is gone |
//! | publish | `status.publishedNode`, `status.fsType`, `status.rawblock` |
//! | expand | a `LocalVolumeExpand` named after the volume |
//! | usage | `status.usedCapacityBytes`, `totalInode`, `usedInode` |
//! | capacity | `LocalStorageNode.status.pools` |
//! | snapshot | `LocalVolumeSnapshot` named after the snapshot id; deletion by `spec.delete` |
//!
//! `disk.hwameistor.io` ([`DiskStoreBackend`]): a volume is a `LocalDiskVolume`; it is ready
//! once the disk is assigned (`Created` or later); deletion sets `status.state =
//! ToBeDeleted`; capacity comes from `LocalDiskNode.status.pools`. The node service mounts
//! the disk itself and records each publication in `status.mountPoints` (phase `Mounted`);
//! when it created the filesystem it sets `spec.canWipe`, so the disk is wiped after the
//! volume's deletion only if we formatted it. A volume the node cannot place (annotation
//! [`DISK_VOLUME_PROBLEM`]) is failed for lack of space, so CreateVolume answers
//! `RESOURCE_EXHAUSTED` at once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hwameistor_api::types::{
    AccessType, DiskType, EncryptType, MountPointPhase, NodeState, OperationState, PoolClass,
    ReplicaState, RestoreType, VolumeState,
};
use hwameistor_api::{
    LocalDiskNode, LocalDiskVolume, LocalDiskVolumeSpec, LocalPool, LocalStorageNode, LocalVolume,
    LocalVolumeExpand, LocalVolumeExpandSpec, LocalVolumeReplica, LocalVolumeSnapshot,
    LocalVolumeSnapshotRestore, LocalVolumeSnapshotRestoreSpec, LocalVolumeSnapshotSpec,
    LocalVolumeSpec, MountPoint, VolumeAccessibility, VolumeEncrypt, VolumeQoS,
};
use hwameistor_core::params::{DiskParams, EncryptParams, LvmParams, PvcRef, parse_quantity};
use hwameistor_store::{Object, Selector, Store};
use kube::api::ObjectMeta;
use serde_json::json;

use crate::backend::*;

/// Annotation recording where a volume's data came from: `snapshot/<id>` or `volume/<id>`.
pub const CONTENT_SOURCE_ANNOTATION: &str = "hwameistor.io/content-source";

fn err(e: hwameistor_store::Error) -> BackendError {
    use hwameistor_store::Error as E;
    match e {
        E::NotFound { kind, name } => BackendError::NotFound(format!("{kind} {name}")),
        E::AlreadyExists { kind, name } => BackendError::AlreadyExists(format!("{kind} {name}")),
        e @ E::Conflict { .. } => BackendError::Conflict(e.to_string()),
        e => BackendError::Other(e.to_string()),
    }
}

async fn list<K: Object>(store: &Store) -> BackendResult<Vec<K>> {
    Ok(store
        .all::<K>()
        .list(&Selector::default())
        .await
        .map_err(err)?
        .items)
}

fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

/// What a node (LocalStorageNode or LocalDiskNode) offers: Ready or not, and its pools.
fn node_capacity<K: kube::Resource>(
    node: &K,
    status: Option<(NodeState, &BTreeMap<String, LocalPool>)>,
) -> NodeCapacity {
    NodeCapacity {
        node: name_of(node),
        ready: status.is_some_and(|(state, _)| state == NodeState::Ready),
        pools: status
            .map(|(_, pools)| pools.values().map(pool_capacity).collect())
            .unwrap_or_default(),
    }
}

fn pool_capacity(pool: &LocalPool) -> PoolCapacity {
    let free = pool.free_capacity_bytes.max(0) as u64;
    let limit = pool.volume_capacity_bytes_limit.max(0) as u64;
    PoolCapacity {
        class: pool.class,
        free_bytes: free,
        max_volume_bytes: if limit == 0 { free } else { limit.min(free) },
        free_volume_count: pool.free_volume_count.max(0) as u64,
        thin_free_bytes: pool.thin_pool.as_ref().map(|t| {
            hwameistor_core::snapshot::ThinPool {
                size_bytes: t.size.max(0) as u64,
                over_provision_ratio: t
                    .over_provision_ratio
                    .as_deref()
                    .and_then(|r| hwameistor_core::snapshot::parse_ratio(r).ok())
                    .unwrap_or(1.0),
                provisioned_bytes: t.total_provisioned_size.max(0) as u64,
            }
            .free_bytes()
        }),
    }
}

fn content_source_of(meta: &ObjectMeta) -> Option<ContentSource> {
    let v = meta.annotations.as_ref()?.get(CONTENT_SOURCE_ANNOTATION)?;
    match v.split_once('/')? {
        ("snapshot", id) => Some(ContentSource::Snapshot(id.to_string())),
        ("volume", id) => Some(ContentSource::Volume(id.to_string())),
        _ => None,
    }
}

/// Name of the restore object of a restored or cloned volume.
pub fn restore_name(volume: &str) -> String {
    format!("snaprestore-{volume}")
}

/// Name of the temporary snapshot a clone is made from.
pub fn clone_snapshot_name(volume: &str) -> String {
    format!("{volume}-clone-source")
}

/// The `lvm.hwameistor.io` backend.
#[derive(Clone, Debug)]
pub struct LvmStoreBackend {
    store: Store,
    /// Replica list shared by callers that wait on pending volumes (see `replicas_for`).
    pending_cache: Arc<tokio::sync::Mutex<Option<ReplicaListing>>>,
    feed: Arc<tokio::sync::OnceCell<ChangeFeed>>,
}

/// Wakes the waiters of one volume or snapshot when an object about it changes: one
/// background task per watched kind; tasks end when the last backend clone is dropped.
#[derive(Debug, Default)]
struct ChangeFeed {
    waiters: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Notify>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl ChangeFeed {
    /// Start watching kind `K`; `keys` names the volumes/snapshots an object is about.
    fn watch<K: Object>(&mut self, store: &Store, keys: fn(&K) -> Vec<String>) {
        let waiters = self.waiters.clone();
        let objects = store.all::<K>();
        self.tasks.push(tokio::spawn(async move {
            use futures::StreamExt;
            loop {
                match objects.watch(&Selector::default(), "").await {
                    Ok(mut events) => {
                        while let Some(ev) = events.next().await {
                            let Ok(ev) = ev else { break };
                            let w = waiters.lock().unwrap_or_else(|e| e.into_inner());
                            for k in keys(ev.object()) {
                                if let Some(n) = w.get(&k) {
                                    n.notify_waiters();
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "CSI change feed: watch failed; retrying")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    async fn changed(&self, id: &str, poll: Duration) {
        let n = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            w.entry(id.to_string()).or_default().clone()
        };
        // An event can slip in between the caller's read and this registration, so the
        // caller's polling interval still bounds the wait; events only shorten it.
        let _ = tokio::time::timeout(poll, n.notified()).await;
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the entry when no other waiter holds it (map + this clone).
        if w.get(id).is_some_and(|x| Arc::strong_count(x) <= 2) {
            w.remove(id);
        }
    }
}

/// LocalVolume condition the cluster controller sets to `False` (reason
/// [`REASON_UNSCHEDULABLE`]) while the volume cannot be placed
/// (`hwameistor_controllers::volume::status::CONDITION_SCHEDULED`).
pub const CONDITION_SCHEDULED: &str = "Scheduled";
/// Reason of a failed `Scheduled` condition.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

/// A replica listing and when it was taken.
type ReplicaListing = (Instant, Arc<Vec<LocalVolumeReplica>>);

/// How stale the replica list may be when a pending volume is polled.
const PENDING_CACHE_TTL: Duration = Duration::from_millis(250);

impl LvmStoreBackend {
    pub fn new(store: Store) -> Self {
        LvmStoreBackend {
            store,
            pending_cache: Default::default(),
            feed: Default::default(),
        }
    }

    /// Replicas for building the record of `lv`. While a volume is not Ready, many CSI calls
    /// poll it concurrently (CreateVolume waits); they share one listing at most
    /// [`PENDING_CACHE_TTL`] old, used only to spot a replica that ran out of space. A Ready
    /// volume always gets a fresh listing (publish needs its replicas' current devices).
    async fn replicas_for(&self, lv: &LocalVolume) -> BackendResult<Arc<Vec<LocalVolumeReplica>>> {
        let ready = lv
            .status
            .as_ref()
            .is_some_and(|s| s.state == VolumeState::Ready);
        if ready {
            return Ok(Arc::new(list(&self.store).await?));
        }
        let mut cache = self.pending_cache.lock().await;
        if let Some((at, list)) = cache.as_ref()
            && at.elapsed() < PENDING_CACHE_TTL
        {
            return Ok(list.clone());
        }
        let fresh = Arc::new(list(&self.store).await?);
        *cache = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    fn params_of(lv: &LocalVolume) -> LvmParams {
        let s = &lv.spec;
        let qos = s.volume_qos.clone().unwrap_or_default();
        let q = |v: &str| {
            if v.is_empty() {
                None
            } else {
                parse_quantity(v).ok()
            }
        };
        LvmParams {
            pool_class: PoolClass::from_pool_name(&s.pool_name).unwrap_or(PoolClass::HDD),
            replica_number: s.replica_number.clamp(1, 255) as u8,
            convertible: s.convertible,
            thin: s.thin,
            striped: s.striped,
            fs_type: None,
            iops: q(&qos.iops),
            throughput: q(&qos.throughput),
            encrypt: s
                .volume_encrypt
                .as_ref()
                .filter(|e| e.enable)
                .and_then(|e| {
                    let (ns, name) = e.secret.split_once('/')?;
                    Some(EncryptParams {
                        secret_namespace: ns.to_string(),
                        secret_name: name.to_string(),
                        kind: e.encrypt_type.unwrap_or(EncryptType::LUKS),
                    })
                }),
            pvc: PvcRef {
                namespace: Some(s.pvc_namespace.clone()).filter(|x| !x.is_empty()),
                name: Some(s.pvc_name.clone()).filter(|x| !x.is_empty()),
                pv_name: None,
            },
        }
    }

    fn record(
        lv: &LocalVolume,
        replicas: &[LocalVolumeReplica],
        snapshots: &[LocalVolumeSnapshot],
        restores: &[LocalVolumeSnapshotRestore],
    ) -> VolumeRecord {
        let name = name_of(lv);
        let status = lv.status.clone().unwrap_or_default();
        let mine: Vec<&LocalVolumeReplica> = replicas
            .iter()
            .filter(|r| r.spec.volume_name == name)
            .collect();
        let exhausted = mine.iter().find_map(|r| {
            r.status.as_ref()?.conditions.iter().find(|c| {
                c.type_ == hwameistor_api::consts::CONDITION_CREATE
                    && c.status == "False"
                    && out_of_space(&c.message)
            })
        });
        // Never placed, and the cluster controller says it cannot be (no pool fits once the
        // in-flight reservations of other volumes count): fail now rather than time out.
        let unschedulable = lv
            .spec
            .config
            .is_none()
            .then(|| {
                status.conditions.iter().find(|c| {
                    c.type_ == CONDITION_SCHEDULED
                        && c.status == "False"
                        && c.reason == REASON_UNSCHEDULABLE
                })
            })
            .flatten();
        let content_source = content_source_of(&lv.metadata);
        let restore_done = content_source.is_none()
            || restores.iter().any(|r| {
                name_of(r) == restore_name(&name)
                    && r.status
                        .as_ref()
                        .is_some_and(|s| s.state == OperationState::Completed)
            });
        let phase = if lv.spec.delete
            || matches!(
                status.state,
                VolumeState::ToBeDeleted | VolumeState::Deleted
            )
            || lv.metadata.deletion_timestamp.is_some()
        {
            VolumePhase::Deleting
        } else if let Some(c) = exhausted {
            VolumePhase::Failed {
                message: c.message.clone(),
                exhausted: true,
            }
        } else if let Some(c) = unschedulable {
            VolumePhase::Failed {
                message: format!("cannot be placed: {}", c.message),
                exhausted: true,
            }
        } else if status.state == VolumeState::Ready && restore_done {
            VolumePhase::Ready
        } else {
            VolumePhase::Pending
        };
        VolumeRecord {
            spec: VolumeSpec {
                name: name.clone(),
                params: VolumeParams::Lvm(Self::params_of(lv)),
                required_bytes: lv.spec.required_capacity_bytes.max(0) as u64,
                nodes: lv.spec.accessibility.nodes.clone(),
                content_source,
            },
            phase,
            allocated_bytes: status.allocated_capacity_bytes.max(0) as u64,
            replicas: mine
                .iter()
                .map(|r| {
                    let st = r.status.clone().unwrap_or_default();
                    ReplicaRecord {
                        node: r.spec.node_name.clone(),
                        dev_path: Some(st.dev_path).filter(|d| !d.is_empty()),
                        ready: st.state == ReplicaState::Ready,
                    }
                })
                .collect(),
            published_node: Some(status.published_node).filter(|n| !n.is_empty()),
            snapshots: snapshots
                .iter()
                .filter(|s| {
                    s.spec.source_volume == name
                        && !s.spec.delete
                        && name_of(*s) != clone_snapshot_name(&name)
                })
                .count(),
            used_bytes: Some(status.used_capacity_bytes.max(0) as u64).filter(|u| *u > 0),
        }
    }

    fn snapshot_record(s: &LocalVolumeSnapshot) -> SnapshotRecord {
        let st = s.status.clone().unwrap_or_default();
        SnapshotRecord {
            spec: SnapshotSpec {
                name: name_of(s),
                source_volume: s.spec.source_volume.clone(),
                size_bytes: s.spec.required_capacity_bytes.max(0) as u64,
            },
            ready: st.state == VolumeState::Ready,
            creation_time: st
                .creation_time
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or(0),
            failure: Some(st.message).filter(|m| out_of_space(m)),
            deleting: s.spec.delete,
        }
    }

    /// Clean up after a finished restore/clone: the temporary clone snapshot is deleted.
    async fn finish_clone(&self, rec: &VolumeRecord) {
        if rec.phase == VolumePhase::Ready
            && matches!(rec.spec.content_source, Some(ContentSource::Volume(_)))
        {
            let snap = clone_snapshot_name(&rec.spec.name);
            let _ = self
                .store
                .all::<LocalVolumeSnapshot>()
                .patch(&snap, &json!({"spec": {"delete": true}}))
                .await;
        }
    }
}

#[async_trait]
impl Backend for LvmStoreBackend {
    async fn get_volume(&self, id: &str) -> BackendResult<Option<VolumeRecord>> {
        let Some(lv) = self
            .store
            .all::<LocalVolume>()
            .get_opt(id)
            .await
            .map_err(err)?
        else {
            return Ok(None);
        };
        let replicas = self.replicas_for(&lv).await?;
        // A volume that was never allocated cannot have snapshots; skip the listing while
        // CreateVolume polls it.
        let allocated = lv
            .status
            .as_ref()
            .is_some_and(|s| s.allocated_capacity_bytes > 0);
        let snapshots: Vec<LocalVolumeSnapshot> = if allocated {
            list(&self.store).await?
        } else {
            vec![]
        };
        let restores = match content_source_of(&lv.metadata) {
            None => vec![],
            Some(_) => self
                .store
                .all::<LocalVolumeSnapshotRestore>()
                .get_opt(&restore_name(id))
                .await
                .map_err(err)?
                .into_iter()
                .collect(),
        };
        let rec = Self::record(&lv, &replicas, &snapshots, &restores);
        self.finish_clone(&rec).await;
        Ok(Some(rec))
    }

    async fn list_volumes(&self) -> BackendResult<Vec<VolumeRecord>> {
        let lvs: Vec<LocalVolume> = list(&self.store).await?;
        let replicas: Vec<LocalVolumeReplica> = list(&self.store).await?;
        let snapshots: Vec<LocalVolumeSnapshot> = list(&self.store).await?;
        let restores: Vec<LocalVolumeSnapshotRestore> = list(&self.store).await?;
        let mut out: Vec<_> = lvs
            .iter()
            .map(|lv| Self::record(lv, &replicas, &snapshots, &restores))
            .collect();
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> BackendResult<()> {
        let VolumeParams::Lvm(p) = &spec.params else {
            return Err(BackendError::Other(
                "lvm backend got raw-disk parameters".into(),
            ));
        };
        let mut annotations = BTreeMap::new();
        let pool = p.pool_class.lvm_pool_name().to_string();
        if let Some(src) = &spec.content_source {
            let v = match src {
                ContentSource::Snapshot(id) => format!("snapshot/{id}"),
                ContentSource::Volume(id) => format!("volume/{id}"),
            };
            annotations.insert(CONTENT_SOURCE_ANNOTATION.to_string(), v);
        }
        let lv = LocalVolume {
            metadata: ObjectMeta {
                name: Some(spec.name.clone()),
                annotations: Some(annotations).filter(|a| !a.is_empty()),
                ..Default::default()
            },
            spec: LocalVolumeSpec {
                required_capacity_bytes: spec.required_bytes as i64,
                volume_qos: Some(VolumeQoS {
                    throughput: p.throughput.map(|v| v.to_string()).unwrap_or_default(),
                    iops: p.iops.map(|v| v.to_string()).unwrap_or_default(),
                })
                .filter(|q| !q.is_empty()),
                volume_encrypt: p.encrypt.as_ref().map(|e| VolumeEncrypt {
                    enable: true,
                    encrypt_type: Some(e.kind),
                    secret: format!("{}/{}", e.secret_namespace, e.secret_name),
                }),
                pool_name: pool.clone(),
                replica_number: p.replica_number as i64,
                convertible: p.convertible,
                accessibility: VolumeAccessibility {
                    nodes: spec.nodes.clone(),
                    ..Default::default()
                },
                pvc_namespace: p.pvc.namespace.clone().unwrap_or_default(),
                pvc_name: p.pvc.name.clone().unwrap_or_default(),
                thin: p.thin,
                striped: p.striped,
                ..Default::default()
            },
            status: None,
        };
        // A clone is a restore of a fresh snapshot of the source.
        let snapshot = match &spec.content_source {
            None => None,
            Some(ContentSource::Snapshot(id)) => Some(id.clone()),
            Some(ContentSource::Volume(src)) => {
                let name = clone_snapshot_name(&spec.name);
                let source = self
                    .store
                    .all::<LocalVolume>()
                    .get(src)
                    .await
                    .map_err(err)?;
                let snap = LocalVolumeSnapshot {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..Default::default()
                    },
                    spec: LocalVolumeSnapshotSpec {
                        source_volume: src.clone(),
                        accessibility: source.spec.accessibility.clone(),
                        required_capacity_bytes: hwameistor_api::consts::CLONE_SNAPSHOT_SIZE_BYTES
                            .max(source.spec.required_capacity_bytes),
                        thin: source.spec.thin,
                        delete: false,
                    },
                    status: None,
                };
                match self.store.all::<LocalVolumeSnapshot>().create(&snap).await {
                    Ok(_) | Err(hwameistor_store::Error::AlreadyExists { .. }) => {}
                    Err(e) => return Err(err(e)),
                }
                Some(name)
            }
        };
        self.store
            .all::<LocalVolume>()
            .create(&lv)
            .await
            .map_err(err)?;
        if let Some(snapshot) = snapshot {
            let restore = LocalVolumeSnapshotRestore {
                metadata: ObjectMeta {
                    name: Some(restore_name(&spec.name)),
                    ..Default::default()
                },
                spec: LocalVolumeSnapshotRestoreSpec {
                    target_volume: spec.name.clone(),
                    target_pool_name: pool,
                    source_volume_snapshot: snapshot,
                    restore_type: RestoreType::Create,
                    abort: false,
                },
                status: None,
            };
            match self
                .store
                .all::<LocalVolumeSnapshotRestore>()
                .create(&restore)
                .await
            {
                Ok(_) | Err(hwameistor_store::Error::AlreadyExists { .. }) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }

    async fn delete_volume(&self, id: &str) -> BackendResult<()> {
        match self
            .store
            .all::<LocalVolume>()
            .patch(id, &json!({"spec": {"delete": true}}))
            .await
        {
            Ok(_) | Err(hwameistor_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn set_published(
        &self,
        id: &str,
        publication: Option<&Publication>,
    ) -> BackendResult<()> {
        let patch = match publication {
            Some(p) => json!({"status": {
                "publishedNode": p.node,
                "fsType": p.fs_type.clone().unwrap_or_default(),
                "rawblock": p.fs_type.is_none(),
            }}),
            None => json!({"status": {"publishedNode": null}}),
        };
        self.store
            .all::<LocalVolume>()
            .patch_status(id, &patch)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn expand_volume(&self, id: &str, bytes: u64) -> BackendResult<()> {
        let expands = self.store.all::<LocalVolumeExpand>();
        let obj = LocalVolumeExpand {
            metadata: ObjectMeta {
                name: Some(id.to_string()),
                ..Default::default()
            },
            spec: LocalVolumeExpandSpec {
                volume_name: id.to_string(),
                required_capacity_bytes: bytes as i64,
                abort: false,
            },
            status: None,
        };
        match expands.create(&obj).await {
            Ok(_) => Ok(()),
            Err(hwameistor_store::Error::AlreadyExists { .. }) => {
                let cur = expands.get(id).await.map_err(err)?;
                if cur.spec.required_capacity_bytes < bytes as i64 {
                    expands
                        .patch(
                            id,
                            &json!({"spec": {"requiredCapacityBytes": bytes as i64}}),
                        )
                        .await
                        .map_err(err)?;
                }
                Ok(())
            }
            Err(e) => Err(err(e)),
        }
    }

    async fn record_usage(&self, id: &str, usage: Usage) -> BackendResult<()> {
        let patch = json!({"status": {
            "usedCapacityBytes": usage.used_bytes as i64,
            "totalInode": usage.total_inodes as i64,
            "usedInode": usage.used_inodes as i64,
        }});
        self.store
            .all::<LocalVolume>()
            .patch_status(id, &patch)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn nodes(&self) -> BackendResult<Vec<NodeCapacity>> {
        let nodes: Vec<LocalStorageNode> = list(&self.store).await?;
        Ok(nodes
            .iter()
            .map(|n| {
                let st = n.status.as_ref();
                node_capacity(n, st.map(|s| (s.state, &s.pools)))
            })
            .collect())
    }

    async fn get_snapshot(&self, id: &str) -> BackendResult<Option<SnapshotRecord>> {
        let s = self
            .store
            .all::<LocalVolumeSnapshot>()
            .get_opt(id)
            .await
            .map_err(err)?;
        Ok(s.as_ref().map(Self::snapshot_record))
    }

    async fn list_snapshots(&self) -> BackendResult<Vec<SnapshotRecord>> {
        let all: Vec<LocalVolumeSnapshot> = list(&self.store).await?;
        let mut out: Vec<_> = all
            .iter()
            .filter(|s| !name_of(*s).ends_with("-clone-source"))
            .map(Self::snapshot_record)
            .collect();
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    async fn create_snapshot(&self, spec: &SnapshotSpec) -> BackendResult<()> {
        let source = self
            .store
            .all::<LocalVolume>()
            .get(&spec.source_volume)
            .await
            .map_err(err)?;
        let snap = LocalVolumeSnapshot {
            metadata: ObjectMeta {
                name: Some(spec.name.clone()),
                ..Default::default()
            },
            spec: LocalVolumeSnapshotSpec {
                source_volume: spec.source_volume.clone(),
                accessibility: source.spec.accessibility.clone(),
                required_capacity_bytes: spec.size_bytes as i64,
                thin: source.spec.thin,
                delete: false,
            },
            status: None,
        };
        self.store
            .all::<LocalVolumeSnapshot>()
            .create(&snap)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_snapshot(&self, id: &str) -> BackendResult<()> {
        match self
            .store
            .all::<LocalVolumeSnapshot>()
            .patch(id, &json!({"spec": {"delete": true}}))
            .await
        {
            Ok(_) | Err(hwameistor_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn changed(&self, id: &str, poll: Duration) {
        let feed = self
            .feed
            .get_or_init(|| async {
                let mut f = ChangeFeed::default();
                f.watch::<LocalVolume>(&self.store, |o| vec![name_of(o)]);
                f.watch::<LocalVolumeReplica>(&self.store, |o| vec![o.spec.volume_name.clone()]);
                f.watch::<LocalVolumeSnapshot>(&self.store, |o| vec![name_of(o)]);
                f.watch::<LocalVolumeSnapshotRestore>(&self.store, |o| {
                    vec![o.spec.target_volume.clone()]
                });
                f
            })
            .await;
        feed.changed(id, poll).await;
    }
}

/// LocalDiskVolume annotation in which the node-side reconciler says why it cannot give the
/// volume a disk (`hwameistor_controllers::disk::volume::ANNOTATION_VOLUME_PROBLEM`); the
/// disk backend reports such a volume as failed for lack of space (`RESOURCE_EXHAUSTED`).
pub const DISK_VOLUME_PROBLEM: &str = "disk.hwameistor.io/volume-problem";

/// The `disk.hwameistor.io` backend.
#[derive(Clone, Debug)]
pub struct DiskStoreBackend {
    store: Store,
    feed: Arc<tokio::sync::OnceCell<ChangeFeed>>,
}

impl DiskStoreBackend {
    pub fn new(store: Store) -> Self {
        DiskStoreBackend {
            store,
            feed: Default::default(),
        }
    }

    fn record(v: &LocalDiskVolume) -> VolumeRecord {
        let st = v.status.clone().unwrap_or_default();
        let problem = v
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DISK_VOLUME_PROBLEM))
            .filter(|p| !p.is_empty());
        let phase = match st.state {
            VolumeState::ToBeDeleted | VolumeState::Deleted => VolumePhase::Deleting,
            _ if v.metadata.deletion_timestamp.is_some() => VolumePhase::Deleting,
            // the node found no disk for it: fail now instead of waiting for a timeout
            VolumeState::Unknown | VolumeState::Creating if st.local_disk_name.is_empty() => {
                match problem {
                    Some(p) => VolumePhase::Failed {
                        message: format!("node cannot place it: {p}"),
                        exhausted: true,
                    },
                    None => VolumePhase::Pending,
                }
            }
            VolumeState::Unknown | VolumeState::Creating => VolumePhase::Pending,
            _ => VolumePhase::Ready,
        };
        let (ns, name) = match v.spec.persistent_volume_claim_name.split_once('/') {
            Some((a, b)) => (Some(a.to_string()), Some(b.to_string())),
            None => (
                None,
                Some(v.spec.persistent_volume_claim_name.clone()).filter(|s| !s.is_empty()),
            ),
        };
        let node = v.spec.accessibility.nodes.first().cloned();
        VolumeRecord {
            spec: VolumeSpec {
                name: name_of(v),
                params: VolumeParams::Disk(DiskParams {
                    disk_type: v.spec.disk_type.unwrap_or(DiskType::Unknown),
                    min_cap: None,
                    fs_type: None,
                    pvc: PvcRef {
                        namespace: ns,
                        name,
                        pv_name: None,
                    },
                }),
                required_bytes: v.spec.required_capacity_bytes.max(0) as u64,
                nodes: v.spec.accessibility.nodes.clone(),
                content_source: None,
            },
            allocated_bytes: st.allocated_capacity_bytes.max(0) as u64,
            replicas: node
                .map(|n| ReplicaRecord {
                    node: n,
                    dev_path: Some(st.dev_path.clone()).filter(|d| !d.is_empty()),
                    ready: phase == VolumePhase::Ready,
                })
                .into_iter()
                .collect(),
            phase,
            // A raw disk mounted somewhere counts as published to its node: DeleteVolume is
            // refused while mount points remain, and ListVolumes reports the node.
            published_node: v
                .status
                .as_ref()
                .filter(|s| !s.mount_points.is_empty())
                .and(v.spec.accessibility.nodes.first().cloned()),
            snapshots: 0,
            used_bytes: Some(st.used_capacity_bytes.max(0) as u64).filter(|u| *u > 0),
        }
    }

    fn unsupported(what: &str) -> BackendError {
        BackendError::Other(format!("{what} is not supported for raw-disk volumes"))
    }
}

#[async_trait]
impl Backend for DiskStoreBackend {
    async fn get_volume(&self, id: &str) -> BackendResult<Option<VolumeRecord>> {
        Ok(self
            .store
            .all::<LocalDiskVolume>()
            .get_opt(id)
            .await
            .map_err(err)?
            .as_ref()
            .map(Self::record))
    }

    async fn list_volumes(&self) -> BackendResult<Vec<VolumeRecord>> {
        let all: Vec<LocalDiskVolume> = list(&self.store).await?;
        let mut out: Vec<_> = all.iter().map(Self::record).collect();
        out.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        Ok(out)
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> BackendResult<()> {
        let VolumeParams::Disk(p) = &spec.params else {
            return Err(BackendError::Other(
                "disk backend got LVM parameters".into(),
            ));
        };
        let pvc = match (&p.pvc.namespace, &p.pvc.name) {
            (Some(ns), Some(n)) => format!("{ns}/{n}"),
            (None, Some(n)) => n.clone(),
            _ => String::new(),
        };
        let v = LocalDiskVolume {
            metadata: ObjectMeta {
                name: Some(spec.name.clone()),
                ..Default::default()
            },
            spec: LocalDiskVolumeSpec {
                disk_type: Some(p.disk_type),
                required_capacity_bytes: spec.required_bytes as i64,
                accessibility: VolumeAccessibility {
                    nodes: spec.nodes.clone(),
                    ..Default::default()
                },
                persistent_volume_claim_name: pvc,
                can_wipe: false,
            },
            status: None,
        };
        self.store
            .all::<LocalDiskVolume>()
            .create(&v)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn delete_volume(&self, id: &str) -> BackendResult<()> {
        match self
            .store
            .all::<LocalDiskVolume>()
            .patch_status(id, &json!({"status": {"state": "ToBeDeleted"}}))
            .await
        {
            Ok(_) | Err(hwameistor_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(err(e)),
        }
    }

    async fn set_published(&self, _id: &str, _p: Option<&Publication>) -> BackendResult<()> {
        Err(Self::unsupported("ControllerPublish"))
    }

    async fn expand_volume(&self, _id: &str, _bytes: u64) -> BackendResult<()> {
        Err(Self::unsupported("expansion"))
    }

    async fn record_usage(&self, id: &str, usage: Usage) -> BackendResult<()> {
        let patch = json!({"status": {"usedCapacityBytes": usage.used_bytes as i64}});
        self.store
            .all::<LocalDiskVolume>()
            .patch_status(id, &patch)
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn record_mount(
        &self,
        id: &str,
        target: &str,
        mount: Option<&MountRecord>,
    ) -> BackendResult<()> {
        let volumes = self.store.all::<LocalDiskVolume>();
        // Optimistic concurrency: re-read and retry on a conflicting write.
        for _ in 0..5 {
            let Some(mut v) = volumes.get_opt(id).await.map_err(err)? else {
                return Ok(());
            };
            if mount.is_some_and(|m| m.formatted) && !v.spec.can_wipe {
                v = volumes
                    .patch(id, &json!({"spec": {"canWipe": true}}))
                    .await
                    .map_err(err)?;
            }
            let mut st = v.status.clone().unwrap_or_default();
            st.mount_points.retain(|p| p.target_path != target);
            if let Some(m) = mount {
                st.mount_points.push(MountPoint {
                    target_path: target.to_string(),
                    volume_cap: Some(hwameistor_api::VolumeCapability {
                        access_mode: m.access_mode,
                        access_type: Some(if m.fs_type.is_some() {
                            AccessType::Mount
                        } else {
                            AccessType::Block
                        }),
                    }),
                    fs_type: m.fs_type.clone().unwrap_or_default(),
                    mount_options: vec![],
                    phase: MountPointPhase::Mounted,
                });
            }
            v.status = Some(st);
            match volumes.replace_status(&v).await {
                Ok(_) => return Ok(()),
                Err(hwameistor_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(err(e)),
            }
        }
        Err(BackendError::Conflict(format!(
            "LocalDiskVolume {id}: mount points kept changing"
        )))
    }

    async fn nodes(&self) -> BackendResult<Vec<NodeCapacity>> {
        let nodes: Vec<LocalDiskNode> = list(&self.store).await?;
        Ok(nodes
            .iter()
            .map(|n| {
                let st = n.status.as_ref();
                node_capacity(n, st.map(|s| (s.state, &s.pools)))
            })
            .collect())
    }

    async fn get_snapshot(&self, _id: &str) -> BackendResult<Option<SnapshotRecord>> {
        Ok(None)
    }

    async fn list_snapshots(&self) -> BackendResult<Vec<SnapshotRecord>> {
        Ok(vec![])
    }

    async fn create_snapshot(&self, _spec: &SnapshotSpec) -> BackendResult<()> {
        Err(Self::unsupported("snapshots"))
    }

    async fn delete_snapshot(&self, _id: &str) -> BackendResult<()> {
        Err(Self::unsupported("snapshots"))
    }

    async fn changed(&self, id: &str, poll: Duration) {
        let feed = self
            .feed
            .get_or_init(|| async {
                let mut f = ChangeFeed::default();
                f.watch::<LocalDiskVolume>(&self.store, |o| vec![name_of(o)]);
                f
            })
            .await;
        feed.changed(id, poll).await;
    }
}
