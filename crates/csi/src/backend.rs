//! What the controller and node services need from the object store, in CSI terms.
//!
//! The services never touch devices or reconcile anything themselves: they translate RPCs
//! into desired state on objects and wait for the reconcilers (controllers and node agent)
//! to report observed state. [`Backend`] is that narrow interface, one implementation per
//! driver:
//!
//! - for `lvm.hwameistor.io` a volume is a `LocalVolume` (its replicas are
//!   `LocalVolumeReplica`s, its snapshots `LocalVolumeSnapshot`s, capacity comes from
//!   `LocalStorageNode.status.pools`);
//! - for `disk.hwameistor.io` a volume is a `LocalDiskVolume` and capacity comes from
//!   `LocalDiskNode` pools.
//!
//! Implementations are thin: get/create/patch objects and convert them to the plain records
//! below. All CSI semantics (idempotency, compatibility, codes, waiting, locking) live in the
//! services, so every backend behaves the same.

use async_trait::async_trait;
use hwameistor_core::params::{DiskParams, LvmParams};
use hwameistor_core::types::PoolClass;

/// Whether a failure message says the pool ran out of space: the original's wording
/// ("insufficient free space", "insufficient request resources") or our engines'
/// `InsufficientSpace` error ("pool P has N bytes free, volume V needs M bytes").
pub fn out_of_space(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("insufficient") || (m.contains(" bytes free, volume ") && m.contains(" needs "))
}

/// Failure of a backend operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("write conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

/// Result of backend operations.
pub type BackendResult<T> = Result<T, BackendError>;

/// Where a new volume's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSource {
    /// Restore of a snapshot (by snapshot id).
    Snapshot(String),
    /// Clone of a volume (by volume id).
    Volume(String),
}

/// Driver-specific parameters of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeParams {
    Lvm(LvmParams),
    Disk(DiskParams),
}

impl VolumeParams {
    /// Pool class the volume is allocated from.
    pub fn pool_class(&self) -> PoolClass {
        match self {
            VolumeParams::Lvm(p) => p.pool_class,
            VolumeParams::Disk(p) => p.disk_type.pool_class().unwrap_or(PoolClass::HDD),
        }
    }

    /// Number of nodes holding a copy.
    pub fn replicas(&self) -> usize {
        match self {
            VolumeParams::Lvm(p) => p.replica_number as usize,
            VolumeParams::Disk(_) => 1,
        }
    }
}

/// Desired state of a volume, as CreateVolume asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Volume id = object name (the CO's volume name, e.g. `pvc-<uid>`).
    pub name: String,
    pub params: VolumeParams,
    /// Bytes requested (already rounded by the service).
    pub required_bytes: u64,
    /// Nodes chosen to hold the replicas, first = primary. Never empty.
    pub nodes: Vec<String>,
    pub content_source: Option<ContentSource>,
}

/// Lifecycle of a volume as observed by the reconcilers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumePhase {
    /// Being created, expanded or restored.
    Pending,
    /// Usable: every replica is ready.
    Ready,
    /// Deletion requested (or in progress).
    Deleting,
    /// The reconcilers gave up; the message says why. `exhausted` marks a lack of space
    /// (the CO should retry elsewhere).
    Failed { message: String, exhausted: bool },
}

/// One copy of a volume on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub node: String,
    /// Block device to use on that node, once created.
    pub dev_path: Option<String>,
    pub ready: bool,
}

/// Observed state of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRecord {
    pub spec: VolumeSpec,
    pub phase: VolumePhase,
    /// Bytes actually allocated (may exceed `spec.required_bytes`; 0 until allocated).
    pub allocated_bytes: u64,
    pub replicas: Vec<ReplicaRecord>,
    /// Node the volume is published to (ControllerPublish), if any.
    pub published_node: Option<String>,
    /// Number of snapshots taken from this volume that still exist.
    pub snapshots: usize,
    /// Last reported filesystem usage.
    pub used_bytes: Option<u64>,
}

impl VolumeRecord {
    /// The replica on `node`, if any.
    pub fn replica_on(&self, node: &str) -> Option<&ReplicaRecord> {
        self.replicas.iter().find(|r| r.node == node)
    }
}

/// Request to publish (or unpublish) a volume to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub node: String,
    /// Filesystem for filesystem volumes; `None` for raw block.
    pub fs_type: Option<String>,
}

/// A publication made by the node service, for backends that record them (raw-disk volumes
/// keep them in `LocalDiskVolume.status.mountPoints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountRecord {
    /// Filesystem for filesystem publications; `None` for raw block.
    pub fs_type: Option<String>,
    /// CSI access mode number.
    pub access_mode: i32,
    /// The node service created the filesystem (so the disk may be wiped after deletion).
    pub formatted: bool,
}

/// Filesystem usage reported by NodeGetVolumeStats, written back to the volume's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub used_inodes: u64,
}

/// Free space of one pool on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolCapacity {
    pub class: PoolClass,
    /// Free bytes in the pool (for disk pools: the sum of the free disks).
    pub free_bytes: u64,
    /// Largest single volume the pool can hold now (for disk pools: the largest free disk).
    pub max_volume_bytes: u64,
    /// How many more volumes the pool can hold.
    pub free_volume_count: u64,
    /// Bytes thin volumes may still provision in the pool's thin pool (`size × ratio −
    /// provisioned`); `None` when the pool has no thin pool (file-engine nodes never have one).
    pub thin_free_bytes: Option<u64>,
}

/// Pools of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCapacity {
    pub node: String,
    /// Whether the node's storage is usable (`Ready`).
    pub ready: bool,
    pub pools: Vec<PoolCapacity>,
}

impl NodeCapacity {
    /// The pool of `class`, if the node has one.
    pub fn pool(&self, class: PoolClass) -> Option<&PoolCapacity> {
        self.pools.iter().find(|p| p.class == class)
    }
}

/// Desired snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSpec {
    pub name: String,
    pub source_volume: String,
    /// Copy-on-write space in bytes.
    pub size_bytes: u64,
}

/// Observed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub spec: SnapshotSpec,
    pub ready: bool,
    /// Seconds since the epoch when the snapshot was taken (0 until taken).
    pub creation_time: i64,
    /// Set when the reconcilers failed to take it.
    pub failure: Option<String>,
    pub deleting: bool,
}

/// Object-level operations of one driver. See the module docs.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The volume named `id`, or `None`.
    async fn get_volume(&self, id: &str) -> BackendResult<Option<VolumeRecord>>;
    /// All volumes of this driver, sorted by name.
    async fn list_volumes(&self) -> BackendResult<Vec<VolumeRecord>>;
    /// Create the volume object; [`BackendError::AlreadyExists`] if the name is taken.
    async fn create_volume(&self, spec: &VolumeSpec) -> BackendResult<()>;
    /// Ask for deletion (`spec.delete` / `ToBeDeleted`). Idempotent.
    async fn delete_volume(&self, id: &str) -> BackendResult<()>;
    /// Record the publication (`status.publishedNode`), or clear it with `None`.
    async fn set_published(&self, id: &str, publication: Option<&Publication>)
    -> BackendResult<()>;
    /// Ask for the volume to grow to at least `bytes`.
    async fn expand_volume(&self, id: &str, bytes: u64) -> BackendResult<()>;
    /// Write filesystem usage into the volume's status.
    async fn record_usage(&self, id: &str, usage: Usage) -> BackendResult<()>;
    /// Record (`Some`) or forget (`None`) a publication at `target`. The default records
    /// nothing (LocalVolumes do not list their mounts).
    async fn record_mount(
        &self,
        id: &str,
        target: &str,
        mount: Option<&MountRecord>,
    ) -> BackendResult<()> {
        let _ = (id, target, mount);
        Ok(())
    }
    /// Storage nodes with their pools.
    async fn nodes(&self) -> BackendResult<Vec<NodeCapacity>>;
    /// The snapshot named `id`, or `None`.
    async fn get_snapshot(&self, id: &str) -> BackendResult<Option<SnapshotRecord>>;
    /// All snapshots, sorted by name.
    async fn list_snapshots(&self) -> BackendResult<Vec<SnapshotRecord>>;
    /// Create the snapshot object; [`BackendError::AlreadyExists`] if the name is taken.
    async fn create_snapshot(&self, spec: &SnapshotSpec) -> BackendResult<()>;
    /// Ask for deletion of a snapshot. Idempotent.
    async fn delete_snapshot(&self, id: &str) -> BackendResult<()>;

    /// Wait until the volume or snapshot `id` may have changed; callers re-read afterwards.
    /// `poll` is the caller's polling interval. The default just sleeps that long; a
    /// backend with change notifications wakes early on a change and may poll less often.
    async fn changed(&self, id: &str, poll: std::time::Duration) {
        let _ = id;
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn out_of_space_messages() {
        use super::out_of_space;
        assert!(out_of_space("insufficient free space"));
        assert!(out_of_space("Insufficient request resources"));
        assert!(out_of_space(
            "create volume: pool LocalStorage_PoolHDD has 100 bytes free, volume pvc-1 needs 200 bytes"
        ));
        assert!(!out_of_space("lvcreate failed: device busy"));
    }
}
