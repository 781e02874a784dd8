//! The Local Disk Manager: every disk of every node as a `LocalDisk`, claims that hand free
//! disks to a pool owner, raw-disk pools per node, and reservation rules.
//!
//! Two halves talk only through objects:
//!
//! - **The node side** ([`run_node`], one per node) owns the host's disks. It scans them with
//!   `hwameistor_disk` (sysfs + udev database + `blkid` + mounts), and keeps one `LocalDisk`
//!   per disk: created when first seen (the system disk and any disk carrying data are
//!   `reserved` at creation), updated when anything changes (a new device path or node is
//!   recorded, the old one kept in `preDevicePath`/`preNodeName`), `Inactive` when the disk
//!   disappears (device path and node move to the `pre*` fields), `Active` again under the
//!   same name when it comes back. Changes are noticed within 2 s: kernel uevents trigger a
//!   rescan at once, and a cheap sysfs fingerprint is compared every second as a fallback; a
//!   full re-probe also runs periodically (signatures written without a uevent). It registers
//!   the node's `LocalDiskNode`, writes its raw-disk pools `LocalDisk_Pool{HDD,SSD,NVMe}` and
//!   a heartbeat, consumes `LocalDiskClaim`s bound for `local-disk-manager` on this node
//!   (pool extend records, optional symlinks `<pool_root>/LocalDisk_Pool<T>/disk/<disk>`,
//!   claim → `Consumed`), and collects SMART health (periodically and on request).
//! - **The cluster side** ([`run_cluster`], one per cluster) runs the `LocalDisk` phase state
//!   machine (`""` → `Pending` → `Available`/`Bound`, release back to `Available`), applies
//!   `LocalDiskAction` reserve rules, binds `LocalDiskClaim`s (every matching free disk, or
//!   one annotation + Kubernetes Event listing each rejected disk and why), steps consumed
//!   claims to deletion, and sets each `LocalDiskNode` `Ready`/`Offline` from its heartbeat.
//!
//! Every decision is a pure function in `hwameistor_core::disk`; the reconcilers observe,
//! decide, write, and observe again. The admin operations the CLI and REST server need
//! (reserve, unreserve, owner, list, SMART on demand) are plain functions in [`ops`].
//!
//! # Entry points
//!
//! ```no_run
//! # async fn demo(store: hwameistor_store::Store, runner: hwameistor_exec::SharedRunner)
//! #     -> hwameistor_controllers::disk::Result<()> {
//! use hwameistor_controllers::disk::{self, DiskClusterConfig, DiskNodeConfig};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let mut node_cfg = DiskNodeConfig::new("node-1");
//! node_cfg.include_loop = true; // standalone demo / tests: loop devices count as disks
//! let node = disk::run_node(node_cfg, store.clone(), runner, shutdown.clone());
//! let cluster = disk::run_cluster(DiskClusterConfig::default(), store, shutdown);
//! tokio::try_join!(node, cluster)?;
//! # Ok(()) }
//! ```
//!
//! Both work unchanged against the `EmbeddedStore` (standalone) and a cluster (`KubeStore`).

use thiserror::Error;

pub mod cluster;
pub mod node;
pub mod ops;
pub mod volume;

#[cfg(test)]
mod tests;

pub use cluster::{DiskClusterConfig, run_cluster};
pub use node::{DiskNodeConfig, run_node, run_node_with};
pub use ops::{
    get_disk, list_disk_nodes, list_disks, request_smart_check, reserve_disk, set_disk_owner,
};

/// LocalDiskNode annotation: time of the node side's last heartbeat (RFC 3339).
pub const ANNOTATION_HEARTBEAT: &str = "disk.hwameistor.io/heartbeat";
/// LocalDisk annotation: why the disk is not free ("has a gpt partition table; ..."), empty
/// when it is blank.
pub const ANNOTATION_HAZARDS: &str = "disk.hwameistor.io/hazards";
/// LocalDisk annotation: the last SMART report (JSON: temperature, power-on hours, ATA
/// attributes, NVMe health log, time), for metrics.
pub const ANNOTATION_SMART: &str = "disk.hwameistor.io/smart";
/// LocalDisk annotation set by [`ops::request_smart_check`]; the node runs smartctl on its
/// next heartbeat and removes it.
pub const ANNOTATION_SMART_REQUEST: &str = "disk.hwameistor.io/smart-check-requested";
/// LocalDiskClaim annotation: JSON map disk name → reasons it did not match, from the last
/// binding attempt that found nothing.
pub const ANNOTATION_REJECTED: &str = "disk.hwameistor.io/rejected-disks";
/// Namespace of the Kubernetes Events about cluster-scoped disk objects.
pub use crate::event::EVENT_NAMESPACE;

/// Errors of the disk reconcilers and operations.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{op} {kind} {name:?}: {source}")]
    Store {
        op: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: hwameistor_store::Error,
    },
    #[error("disk discovery on node {node:?}: {source}")]
    Discovery {
        node: String,
        #[source]
        source: hwameistor_disk::Error,
    },
    #[error("{kind} {name:?}: {reason}")]
    Invalid {
        kind: &'static str,
        name: String,
        reason: String,
    },
    #[error("pool link {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result type of the disk reconcilers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short machine-friendly reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Store { source, .. } if source.is_conflict() => "conflict",
            Error::Store { .. } => "store",
            Error::Discovery { .. } => "discovery",
            Error::Invalid { .. } => "invalid",
            Error::Io { .. } => "io",
        }
    }
}

/// Attach store context to a store result.
pub(crate) trait StoreCtx<T> {
    #[allow(clippy::result_large_err)]
    fn ctx(self, op: &'static str, kind: &'static str, name: &str) -> Result<T>;
}

impl<T> StoreCtx<T> for hwameistor_store::Result<T> {
    // the store error makes Error large; error paths are rare and not hot
    #[allow(clippy::result_large_err)]
    fn ctx(self, op: &'static str, kind: &'static str, name: &str) -> Result<T> {
        self.map_err(|source| Error::Store {
            op,
            kind,
            name: name.to_owned(),
            source,
        })
    }
}

/// Current time as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// Seconds since an RFC 3339 timestamp; `None` if absent or unparsable.
pub(crate) fn age_secs(ts: Option<&String>) -> Option<i64> {
    let t: jiff::Timestamp = ts?.parse().ok()?;
    Some(jiff::Timestamp::now().duration_since(t).as_secs().max(0))
}
