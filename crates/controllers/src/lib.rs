//! Reconcilers of HwameiStor: the cluster-side controllers and the node agent.
//!
//! Module owners:
//! - `disk`   LocalDisk state machine, LocalDiskClaim, LocalDiskNode, LocalDiskAction (disk)
//! - `volume` LocalStorageNode pools, LocalVolume/Replica lifecycle, expand (controllers)
//! - `snapshot` snapshots, restores, rollbacks, clones (snapshot)
//!
//! Local-storage entry points (see [`volume`]):
//! - `volume::run_node_agent(NodeAgentConfig, Store, SharedEngine, SharedRunner,
//!   CancellationToken)`: one per node; LocalStorageNode, pools from claims, replicas.
//! - `volume::run_cluster_controllers(ClusterConfig, Store, CancellationToken)`: one per
//!   cluster; LocalVolume placement and lifecycle, LocalVolumeExpand, node liveness.

pub mod disk;
pub mod event;
mod runtime;
pub mod snapshot;
pub mod volume;
