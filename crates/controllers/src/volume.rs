//! Local storage: pools on each node, and the life of every LVM volume.
//!
//! Two halves talk only through objects:
//!
//! - **The node agent** ([`run_node_agent`], one per node) owns the host. It registers the
//!   node's `LocalStorageNode` (storage IP, topology, heartbeat), turns `LocalDiskClaim`s that
//!   the disk manager bound for `local-storage` on this node into pools
//!   `LocalStorage_Pool{HDD,SSD,NVMe}` (create on the first claim, extend on later ones, record
//!   `poolExtendRecords`, conditions `ExpandSuccess`/`ExpandFailure`, claim → `Consumed`), and
//!   re-reads the pools from the engine on start and periodically (host state is the truth;
//!   differences from the last report are logged as drift). It then drives every
//!   `LocalVolumeReplica` of the node through the [`VolumeEngine`](hwameistor_engine::VolumeEngine):
//!   create the device, report `devPath`/`allocatedCapacityBytes`, extend it when the
//!   required size grows, remove it on delete. Volumes the engine holds that no replica object
//!   references are **orphans**: reported (log, LocalStorageNode annotation
//!   [`ANNOTATION_ORPHANS`]), never deleted.
//! - **The cluster controllers** ([`run_cluster_controllers`], one per cluster) run the
//!   `LocalVolume` state machine (placement with the capacity ledger, `spec.config`, replica
//!   objects, readiness, deletion), `LocalVolumeGroup` co-location, `LocalVolumeExpand`, and
//!   the `LocalStorageNode` Ready/Offline verdict from heartbeat age.
//!
//! Every decision is a pure function of `hwameistor_core::{placement, volume}`; the
//! reconcilers here observe, call the function, apply its one step, and observe again. Any
//! step can be interrupted (process killed) and the next pass finishes it: engine operations
//! are idempotent and every state is re-derived from the objects and the host.
//!
//! # Entry points
//!
//! ```no_run
//! # async fn demo(store: hwameistor_store::Store, engine: hwameistor_engine::SharedEngine,
//! #               runner: hwameistor_exec::SharedRunner) -> hwameistor_controllers::volume::Result<()> {
//! use hwameistor_controllers::volume::{self, ClusterConfig, NodeAgentConfig};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let agent = volume::run_node_agent(NodeAgentConfig::new("node-1"), store.clone(), engine,
//!                                     runner, shutdown.clone());
//! let cluster = volume::run_cluster_controllers(ClusterConfig::default(), store, shutdown);
//! tokio::try_join!(agent, cluster)?;
//! # Ok(()) }
//! ```
//!
//! Both drive kube-runtime `Controller`s through the store's stream adapter
//! (`hwameistor_store::runtime`), so they run the same against the EmbeddedStore and a cluster.

use std::time::Duration;

use hwameistor_core::placement::PlacementError;
use thiserror::Error;

pub mod cluster;
pub mod expand;
pub mod node;
pub mod replica;
pub mod status;
pub mod thin;
mod util;

pub use cluster::{ClusterConfig, ClusterCtx, reconcile_volume, run_cluster_controllers};
pub use expand::reconcile_expand;
pub use node::{
    NodeAgentConfig, NodeCtx, reconcile_claim, register_node, run_node_agent, sync_node,
};
pub use replica::reconcile_replica;

/// LocalStorageNode annotation holding the time of the node agent's last heartbeat (RFC 3339).
pub const ANNOTATION_HEARTBEAT: &str = "localstorage.hwameistor.io/heartbeat";

/// LocalStorageNode annotation listing orphan volumes (`pool/volume`, comma separated): volumes
/// the engine holds on this node that no LocalVolumeReplica references. Empty when none.
pub const ANNOTATION_ORPHANS: &str = "localstorage.hwameistor.io/orphan-volumes";

/// Errors of the local-storage reconcilers.
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
    #[error("engine {op} {pool}/{volume}: {source}")]
    Engine {
        op: &'static str,
        pool: String,
        volume: String,
        #[source]
        source: Box<hwameistor_engine::Error>,
    },
    #[error("placing volume {volume:?}: {source}")]
    Placement {
        volume: String,
        #[source]
        source: PlacementError,
    },
    #[error("{kind} {name:?}: {reason}")]
    Invalid {
        kind: &'static str,
        name: String,
        reason: String,
    },
}

/// Result type of the local-storage reconcilers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A short machine-friendly reason, used as a metric/log label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Store { source, .. } if source.is_conflict() => "conflict",
            Error::Store { .. } => "store",
            Error::Engine { .. } => "engine",
            Error::Placement { .. } => "placement",
            Error::Invalid { .. } => "invalid",
        }
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
