//! # hwameistor-api — the `hwameistor.io/v1alpha1` API
//!
//! HwameiStor turns the disks inside Kubernetes nodes into storage pools and serves persistent
//! volumes from them. Everything it knows and does is recorded in custom resources of the
//! group `hwameistor.io`, version `v1alpha1`; **every kind is cluster-scoped**. This crate
//! defines those kinds as Rust types (with `kube`'s `CustomResource` derive, `serde` and
//! `schemars`), generates their CustomResourceDefinitions, and holds every well-known string
//! (labels, annotations, StorageClass parameters, pool names, ...) in [`consts`]. The shared
//! enums (states, classes, owners) live in [`hwameistor_core::types`] and are re-exported as
//! [`types`].
//!
//! ## The kinds
//!
//! | Kind | Short names | What it is |
//! |---|---|---|
//! | [`LocalDisk`] | `ld` | A block device on a node, found by disk discovery. Phase (`status.claimState`) Pending → Available → Bound; `spec.state` Active/Inactive; `reserved` disks are never used. |
//! | [`LocalDiskClaim`] | `ldc` | One-shot request: give a node's free disks matching a description to `local-storage` (LVM pools) or `local-disk-manager` (raw-disk pools); deleted once consumed. |
//! | [`LocalDiskNode`] | `ldn` | Raw-disk pools (`LocalDisk_Pool<CLASS>`) of a node. |
//! | [`LocalDiskVolume`] | `ldv` | A volume that is a whole raw disk (CSI driver `disk.hwameistor.io`). |
//! | [`LocalDiskAction`] | `lda` | Rule that reserves every disk matching a size range / device glob. |
//! | [`LocalStorageNode`] | `lsn` | LVM side of a node: pools (`LocalStorage_Pool<CLASS>` VGs), storage IP, state Ready/Offline/Maintain. |
//! | [`LocalVolume`] | `lv` | An LVM volume (CSI driver `lvm.hwameistor.io`): pool, size, replica count, placement (`spec.config`), state. |
//! | [`LocalVolumeReplica`] | `lvr`, `lvrr` | The LV of a volume on one node (and its DRBD device for HA volumes). |
//! | [`LocalVolumeGroup`] | `lvg`, `lvgr` | The volumes of one pod, placed and migrated together. |
//! | [`LocalVolumeConvert`] | `lvconvert` | Turn a convertible 1-replica volume into 2 replicas. |
//! | [`LocalVolumeExpand`] | `lvexpand` | Grow a volume. |
//! | [`LocalVolumeMigrate`] | `lvmigrate`, `lvmmigrate` | Move a volume (group) replica off a node. |
//! | [`LocalVolumeSnapshot`] | `lvs`, `lvss` | Snapshot of a volume. |
//! | [`LocalVolumeReplicaSnapshot`] | `lvrs` | Snapshot LV of one replica. |
//! | [`LocalVolumeSnapshotRestore`] | `lvsrestore`, `lvsnaprestore` | Roll back to, or restore from, a snapshot. |
//! | [`LocalVolumeReplicaSnapshotRestore`] | `lvrsrestore`, `lvrsnaprestore` | The per-node part of a restore. |
//! | [`ThinPoolClaim`] | `tpc` | Create or extend the thin pool of an LVM pool. |
//! | [`ResizePolicy`] | — | When to grow PVCs automatically. |
//! | [`Event`] | `evt` | Audit log of one resource. |
//! | [`Cluster`] | `hmcluster` | The installation: components, settings, health. |
//!
//! Operation kinds (convert, expand, migrate, restores, claims) are commands: a controller moves
//! `status.state` forward one step at a time and deletes the object when it is finished.
//!
//! ## Object naming (same as the original)
//!
//! | Object | Name |
//! |---|---|
//! | LocalDisk | `localdisk-<md5(vendor+serial+wwn)>` |
//! | LocalStorageNode, LocalDiskNode | the Kubernetes node name |
//! | LocalVolume, LocalDiskVolume | the PV name, `pvc-<pvc uid>` |
//! | LocalVolumeReplica | `<volume>-<6 random lowercase alphanumerics>` |
//! | LocalVolumeGroup | a random UUID |
//! | LocalVolumeExpand | the volume name |
//! | LocalVolumeMigrate created by the evictor | `evictor-<volume>` |
//! | LocalVolumeSnapshot | `snapcontent-<uid>` (CSI snapshot name with `snapshot` → `snapcontent`) |
//! | LocalVolumeReplicaSnapshot | `<snapshot>-<6 random>` |
//! | LocalVolumeSnapshotRestore (CSI) | `snaprestore-<volume>`; clone temp snapshot `snapshot-for-<volume>` |
//! | LocalVolumeReplicaSnapshotRestore | `<restore>-<6 random>` |
//! | Event | `lower(<resourceType>-<resourceName>)` |
//! | LocalDiskClaim created at install | `<node>-<class>-claim`, class = `hdd`, `ssd` or `nvme` |
//! | LVM volume group / thin pool | `LocalStorage_Pool{HDD,SSD,NVMe}` / `LocalStorage_ThinPool` |
//! | DRBD resource / minor / port | `<volume>` / `43001 + resourceID` / same |
//!
//! ## Compatibility notes
//!
//! * JSON field names are the original's camelCase names, including its quirks: `storageIP`,
//!   `resourceID`, `volumeQoS`, `volumegroup`, `pciVendorID`, `installedCRDS`.
//! * Two keys are misspelled in the original: LocalStorageNode `spec.topogoly` and
//!   LocalDiskVolume `status.mountPoints[].fsTye`. We **emit the original spelling** (so the
//!   original's tools and manuals keep working) and **accept both** spellings on input; both
//!   are declared in the CRD schema so the API server keeps whichever a client sends.
//! * States the original leaves empty deserialize to the `Unknown` variant (`""`).
//! * Optional fields are `Option`/empty and are omitted when unset, so objects round-trip.
//!
//! ## Tools
//!
//! [`all_crds`] lists every CRD; the `crdgen` binary writes them to
//! `deploy/crds/hwameistor.io_<plural>.yaml` (`cargo run -p hwameistor-api --bin crdgen`), and
//! a test fails when the committed files drift. [`registry`] looks kinds up by any name and
//! formats kubectl-like tables; [`naming`] builds object names; [`fixtures`] builds sample
//! objects for tests.

// kube's `printcolumn(name = .., type_ = "string", ..)` lists repeat `type_ = "string"`, which
// clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod cluster;
pub mod common;
pub mod consts;
pub mod disk;
pub mod event;
pub mod fixtures;
pub mod naming;
pub mod operations;
pub mod registry;
pub mod resize;
pub mod snapshot;
pub mod storage;
pub mod volume;

pub use hwameistor_core::types;

pub use cluster::*;
pub use common::{
    LocalDevice, LocalPool, PoolExtendRecords, StorageNodeCondition, ThinPoolInfo,
    VolumeAccessibility, VolumeEncrypt, VolumeQoS,
};
pub use disk::*;
pub use event::*;
pub use operations::*;
pub use registry::{KindInfo, kinds, lookup, printer_columns};
pub use resize::*;
pub use snapshot::*;
pub use storage::*;
pub use volume::*;

pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A name given to [`registry::resolve`] is no kind, plural, singular or short name.
    #[error("unknown resource type {name:?}; known: {known}")]
    UnknownKind { name: String, known: String },
    /// Serializing a CRD to YAML failed.
    #[error("cannot render CRD {name} as YAML: {source}")]
    Yaml {
        name: String,
        #[source]
        source: serde_yaml::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every CustomResourceDefinition of the API, sorted by plural name.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds: Vec<_> = (0..CRD_GENERATORS.len()).filter_map(crd_at).collect();
    crds.sort_by(|a, b| a.spec.names.plural.cmp(&b.spec.names.plural));
    crds
}

/// One generator per kind; [`crd_at`] generates one CRD without building the others.
const CRD_GENERATORS: [fn() -> CustomResourceDefinition; 20] = [
    Cluster::crd,
    Event::crd,
    LocalDiskAction::crd,
    LocalDiskClaim::crd,
    LocalDiskNode::crd,
    LocalDisk::crd,
    LocalDiskVolume::crd,
    LocalStorageNode::crd,
    LocalVolumeConvert::crd,
    LocalVolumeExpand::crd,
    LocalVolumeGroup::crd,
    LocalVolumeMigrate::crd,
    LocalVolumeReplica::crd,
    LocalVolumeReplicaSnapshotRestore::crd,
    LocalVolumeReplicaSnapshot::crd,
    LocalVolume::crd,
    LocalVolumeSnapshotRestore::crd,
    LocalVolumeSnapshot::crd,
    ResizePolicy::crd,
    ThinPoolClaim::crd,
];

/// The CRD made by the `index`th generator (normalized as in [`all_crds`]), `None` past the
/// last one. The registry remembers the index instead of keeping the CRD with its schema.
pub(crate) fn crd_at(index: usize) -> Option<CustomResourceDefinition> {
    let mut crd = CRD_GENERATORS.get(index)?();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            normalize_schema(schema);
        }
    }
    Some(crd)
}

/// Make generated schemas friendlier to the API server: `Option<Enum>` fields come out of
/// schemars with `null` inside `enum` (besides `nullable: true`); Kubernetes wants only the
/// real values there.
fn normalize_schema(s: &mut JSONSchemaProps) {
    if let Some(values) = s.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
    let children = s
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(s.pattern_properties.iter_mut().flat_map(|p| p.values_mut()))
        .chain(s.all_of.iter_mut().flatten())
        .chain(s.any_of.iter_mut().flatten())
        .chain(s.one_of.iter_mut().flatten())
        .chain(s.not.iter_mut().map(|b| b.as_mut()));
    for child in children {
        normalize_schema(child);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = s.items.as_mut() {
        normalize_schema(item);
    }
    if let Some(JSONSchemaPropsOrArray::Schemas(items)) = s.items.as_mut() {
        items.iter_mut().for_each(normalize_schema);
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = s.additional_properties.as_mut() {
        normalize_schema(extra);
    }
}

/// File name of a CRD under `deploy/crds/`: `hwameistor.io_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", consts::GROUP, crd.spec.names.plural)
}

/// Deterministic YAML of a CRD, as written by `crdgen`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String> {
    let body = serde_yaml::to_string(crd).map_err(|source| Error::Yaml {
        name: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    Ok(format!(
        "# Generated by `cargo run -p hwameistor-api --bin crdgen`; do not edit.\n{body}"
    ))
}

/// Every CRD as `(file name, YAML)`, sorted by file name.
pub fn crd_files() -> Result<Vec<(String, String)>> {
    let mut files = all_crds()
        .iter()
        .map(|crd| Ok((crd_file_name(crd), crd_yaml(crd)?)))
        .collect::<Result<Vec<_>>>()?;
    files.sort();
    Ok(files)
}
