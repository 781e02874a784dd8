//! Snapshots, restores, rollbacks and clones of local volumes.
//!
//! Objects (all `hwameistor.io/v1alpha1`):
//! - `LocalVolumeSnapshot` (`lvs`): a point-in-time copy of a LocalVolume. The **cluster**
//!   controller ([`cluster::reconcile_snapshot`]) creates one `LocalVolumeReplicaSnapshot`
//!   (`lvrs`, `<lvs>-<6 random>`) per node holding a replica, all in the same pass, so a volume
//!   with several replicas is snapshotted on every one of them (the original refuses such
//!   volumes); the snapshot is `Ready` when every replica snapshot is, and reports the
//!   smallest size, the time the last replica snapshot was taken (AGE), and `merging` /
//!   `invalid` if any replica snapshot has them. `spec.delete` removes the replica snapshots
//!   first, then the object.
//! - `LocalVolumeReplicaSnapshot`: the **node** controller ([`node::reconcile_replica_snapshot`])
//!   takes the snapshot through the [`VolumeEngine`](hwameistor_engine::VolumeEngine) (lvm: a
//!   COW snapshot LV sized by `requiredCapacityBytes`, i.e. the VolumeSnapshotClass
//!   `snapsize`; file engine: a reflink copy), names it after the LocalVolumeSnapshot, and
//!   reports `allocatedCapacityBytes`, `creationTime`, `attr.invalid` (COW space overflowed →
//!   `NotReady` with the reason) on every resync. A snapshot that vanished from the host is
//!   reported, never silently re-taken. On the file engine and for thin snapshots of thin
//!   volumes a `snapsize` other than the volume's size cannot be honoured (reflinks and thin
//!   snapshots reserve nothing; `core::snapshot::snapsize_note`): the replica snapshot says
//!   `snapsize ignored: …` (reason + `Snapsize` condition) and the snapshot's message shows it.
//! - Deleting a volume that has snapshots is refused until they are deleted (one rule,
//!   [`hwameistor_core::snapshot::volume_delete_check`]; the volume controller holds the
//!   replicas back with a `DeleteBlocked` condition, see `volume::status`).
//! - `LocalVolumeSnapshotRestore` (`lvsrestore`): `restoreType: create` copies a Ready snapshot
//!   into an existing target volume (created beforehand with the source's size or larger, on
//!   the snapshot's nodes: see [`ops::restore_snapshot`]); `rollback` returns the source volume
//!   to the snapshot in place and is **refused while the volume is published**. States
//!   `"" → Submitted → InProgress → Completed` (or `Failed` with the reason). The cluster
//!   controller ([`cluster::reconcile_restore`]) splits it into one
//!   `LocalVolumeReplicaSnapshotRestore` per node; the node controller
//!   ([`node::reconcile_replica_restore`]) copies (lvm: `dd` from the snapshot LV; file: a
//!   reflink copy of the snapshot into a scratch volume then a sparse `dd`) or rolls back
//!   (lvm: `lvconvert --merge --background`, in progress while the snapshot LV exists, shown
//!   as `merging`, with `status.progress` = `100 − snap_percent` read from `lvs` through
//!   [`hwameistor_engine::lvm::merge`]; file: the snapshot file replaces the volume file and
//!   progress jumps to 100). The cluster object's progress is its slowest node's. A rollback consumes the snapshot (as
//!   the LVM merge does): the snapshot is then deleted and the restore object removed, as in
//!   the seed. A completed `create` restore stays (CSI waits for it) until its target volume
//!   is gone; the target gets the annotation `hwameistor.io/snapshot-restore-completed`.
//! - **Clones** ([`ops::clone_volume`]): a temporary snapshot `<new>-clone-source` of the
//!   source, a restore `snaprestore-<new>` into the new volume, and the temporary snapshot is
//!   deleted once the restore completed (the same objects the CSI driver creates).
//!
//! Consistency: a snapshot is crash-consistent per replica. For an application-consistent
//! snapshot, stop or freeze the application first (as the seed says for rollbacks).
//!
//! # Entry points
//! ```no_run
//! # async fn demo(store: hwameistor_store::Store, engine: hwameistor_engine::SharedEngine,
//! #               runner: hwameistor_exec::SharedRunner) -> hwameistor_controllers::snapshot::Result<()> {
//! use hwameistor_controllers::snapshot::{self, SnapshotClusterConfig, SnapshotNodeConfig};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let node = snapshot::run_snapshot_node(SnapshotNodeConfig::new("node-1"), store.clone(),
//!                                        engine, runner, shutdown.clone());
//! let cluster = snapshot::run_snapshot_cluster(SnapshotClusterConfig::default(), store, shutdown);
//! tokio::try_join!(node, cluster)?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use thiserror::Error;

pub mod cluster;
pub mod node;
pub mod ops;
mod util;

pub use cluster::{SnapshotClusterConfig, run_snapshot_cluster};
pub use node::{SnapshotNodeConfig, run_snapshot_node};
pub use ops::{
    clone_volume, create_snapshot, delete_snapshot, restore_snapshot, rollback_snapshot,
};

/// Errors of the snapshot reconcilers and operations.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{op} {kind} {name:?}: {source}")]
    Store {
        op: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: Box<hwameistor_store::Error>,
    },
    #[error("engine {op} {pool}/{name}: {source}")]
    Engine {
        op: &'static str,
        pool: String,
        name: String,
        #[source]
        source: Box<hwameistor_engine::Error>,
    },
    #[error("copying snapshot {snapshot} into {target}: {source}")]
    Copy {
        snapshot: String,
        target: String,
        #[source]
        source: Box<hwameistor_exec::Error>,
    },
    #[error("{kind} {name:?}: {reason}")]
    Invalid {
        kind: &'static str,
        name: String,
        reason: String,
    },
}

/// Result type of the snapshot module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short machine-friendly reason, used as a log label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Store { source, .. } if source.is_conflict() => "conflict",
            Error::Store { source, .. } if source.is_not_found() => "not-found",
            Error::Store { .. } => "store",
            Error::Engine { .. } => "engine",
            Error::Copy { .. } => "copy",
            Error::Invalid { .. } => "invalid",
        }
    }

    /// The object the operation needed does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Store { source, .. } if source.is_not_found())
    }
}

/// How long a reconciler waits after an error before retrying the object.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(2);

impl crate::runtime::ReconcileError for Error {
    const BACKOFF: Duration = ERROR_BACKOFF;
    fn reason(&self) -> &'static str {
        Error::reason(self)
    }
}
