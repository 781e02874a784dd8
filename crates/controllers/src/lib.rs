//! Reconcilers of HwameiStor: the cluster-side controllers and the node agent.
//!
//! Module owners:
//! - `disk`   LocalDisk state machine, LocalDiskClaim, LocalDiskNode, LocalDiskAction (disk)
//! - `volume` LocalStorageNode pools, LocalVolume/Replica lifecycle, expand (controllers)

pub mod disk;
pub mod volume;
