//! hwameistor-csi: the two CSI drivers of HwameiStor, `lvm.hwameistor.io` and
//! `disk.hwameistor.io`.
//!
//! # CSI in one paragraph
//! The Container Storage Interface is a gRPC protocol between a container orchestrator (CO,
//! e.g. Kubernetes' external-provisioner, external-attacher, external-resizer,
//! external-snapshotter and kubelet) and a storage plugin. A plugin serves three services on
//! a unix socket: **Identity** (name, capabilities, probe), **Controller** (create/delete
//! volumes and snapshots, attach a volume to a node, expand, report capacity; cluster-wide)
//! and **Node** (mount a volume into a pod's directory, report usage, grow the filesystem;
//! runs on every node). `proto/csi.proto` is our transcription of the spec's wire format
//! (package `csi.v1`), compiled at build time by protox (no system `protoc`).
//!
//! # The two drivers
//! - `lvm.hwameistor.io`: a volume is a `LocalVolume` with 1 (or 2, HA) replicas carved out
//!   of a node pool `LocalStorage_Pool<HDD|SSD|NVMe>`; supports snapshots, restore, clone,
//!   online expansion. Topology key `topology.lvm.hwameistor.io/node`.
//! - `disk.hwameistor.io`: a volume is a whole raw disk (`LocalDiskVolume`) of the requested
//!   type; no snapshots or expansion. Topology key `topology.disk.hwameistor.io/node`.
//!
//! StorageClass parameters are parsed by [`hwameistor_core::params`] (shared with
//! `hwameictl`); every unknown or unimplemented parameter is refused with
//! `INVALID_ARGUMENT` naming it.
//!
//! # Design
//! - [`controller`] turns RPCs into desired state on objects through a [`Backend`] and waits
//!   for the reconcilers (controllers and node agent) to report observed state. It never
//!   touches a device.
//! - [`node`] does the device work through the [`NodeOps`] trait (mkfs, mount, bind mount,
//!   grow, statfs); [`HostNodeOps`] implements it on the host with `hwameistor_engine::fs`.
//! - [`error`] maps every failure to its gRPC code in exactly one place.
//! - [`keys`] finds the key of an encrypted volume (CSI request secrets, Kubernetes
//!   Secrets through the store, or 0600 key files in standalone mode); the node opens the
//!   volume's LUKS2 container (formatting a blank device, refusing a foreign one) and mounts
//!   the mapping, and closes it when the last publication on the node goes.
//! - [`redact`] gives every message with secrets a `Debug` that hides them; requests are
//!   logged only through `Debug`, so no log line contains a secret.
//!
//! # Entry points
//! [`serve_lvm`] and [`serve_disk`] serve one driver's three services on a unix socket until
//! the cancellation token fires; the server binary calls them in both the standalone and
//! the Kubernetes mode:
//!
//! ```no_run
//! # async fn demo(store: hwameistor_store::Store,
//! #               ops: std::sync::Arc<dyn hwameistor_csi::NodeOps>) -> Result<(), hwameistor_csi::server::ServeError> {
//! let cfg = hwameistor_csi::CsiConfig::new("/run/hwameistor/lvm.sock", "node1");
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! hwameistor_csi::serve_lvm(cfg, store, ops, shutdown).await?;
//! # Ok(()) }
//! ```
//!
//! [`client`] connects to a socket and mounts/unmounts a volume the way kubelet does (used
//! by `hwameictl volume mount|unmount`).
//!
//! [`serve`] takes any [`Backend`] instead of a store (tests use an in-memory one).
//! [`store_backend`] maps the CSI needs onto `hwameistor.io/v1alpha1` objects.

pub mod backend;
pub mod client;
pub mod controller;
pub mod error;
pub mod host;
pub mod identity;
pub mod keys;
pub mod node;
pub mod redact;
pub mod server;
pub mod store_backend;

/// Generated CSI messages and services (`csi.v1`).
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("csi.v1");
}

pub use backend::{Backend, BackendError};
pub use controller::ControllerConfig;
pub use error::{Error, Result};
pub use host::HostNodeOps;
pub use keys::KeySource;
pub use node::{FsStats, NodeOps, NodeOpsError};
pub use server::{CsiConfig, serve, serve_disk, serve_lvm};

/// PublishContext key carrying the replica's device path from ControllerPublish to
/// NodePublish (the original's key, so mixed deployments interoperate).
pub const PUBLISH_DEVICE_PATH: &str = "volumeReplicaDevicePath";

/// Which of the two drivers a service belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// `lvm.hwameistor.io`
    Lvm,
    /// `disk.hwameistor.io`
    Disk,
}

impl Driver {
    /// The CSI driver name (GetPluginInfo, StorageClass `provisioner`).
    pub const fn name(&self) -> &'static str {
        match self {
            Driver::Lvm => "lvm.hwameistor.io",
            Driver::Disk => "disk.hwameistor.io",
        }
    }

    /// The topology key whose value is the node name.
    pub const fn topology_key(&self) -> &'static str {
        match self {
            Driver::Lvm => "topology.lvm.hwameistor.io/node",
            Driver::Disk => "topology.disk.hwameistor.io/node",
        }
    }
}
