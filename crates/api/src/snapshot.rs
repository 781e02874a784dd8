//! Snapshots and restores: LocalVolumeSnapshot, LocalVolumeReplicaSnapshot,
//! LocalVolumeSnapshotRestore, LocalVolumeReplicaSnapshotRestore.

use hwameistor_core::types::{OperationState, RestoreType, VolumeState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{VolumeAccessibility, is_default, is_false};

/// `restoreType` is required by the API (the server fills the default `create`).
fn require_restore_type(schema: &mut schemars::Schema) {
    crate::common::require_fields(schema, &["restoreType"]);
}

/// Flags of a snapshot LV.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotAttr {
    /// Being merged back into its origin (rollback in progress).
    #[serde(default, skip_serializing_if = "is_false")]
    pub merging: bool,
    /// The COW space overflowed; the snapshot is unusable.
    #[serde(default, skip_serializing_if = "is_false")]
    pub invalid: bool,
}

/// Snapshot of a (non-HA) LocalVolume. Name: `snapcontent-<uid>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeSnapshot",
    plural = "localvolumesnapshots",
    singular = "localvolumesnapshot",
    shortname = "lvs",
    shortname = "lvss",
    status = "LocalVolumeSnapshotStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeSnapshot is a point-in-time snapshot of a LocalVolume.",
    printcolumn(
        name = "Capacity",
        type_ = "integer",
        json_path = ".status.allocatedCapacityBytes"
    ),
    printcolumn(
        name = "SourceVolume",
        type_ = "string",
        json_path = ".spec.sourceVolume"
    ),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Merging", type_ = "string", json_path = ".status.attr.merging"),
    printcolumn(name = "Invalid", type_ = "string", json_path = ".status.attr.invalid"),
    printcolumn(name = "Age", type_ = "date", json_path = ".status.creationTime")
)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeSnapshotSpec {
    pub source_volume: String,
    /// Copied from the source volume.
    #[serde(default)]
    pub accessibility: VolumeAccessibility,
    /// COW space in bytes (VolumeSnapshotClass `snapsize`, else the volume's size).
    #[schemars(range(min = 4194304))]
    pub required_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub thin: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeSnapshotStatus {
    #[serde(default, skip_serializing_if = "is_default")]
    pub allocated_capacity_bytes: i64,
    /// Names of the replica snapshots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_snapshots: Vec<String>,
    /// When the snapshot LV was created (printed as AGE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attr: Option<SnapshotAttr>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: VolumeState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Snapshot of one replica on one node. Name: `<lvs>-<6 random>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeReplicaSnapshot",
    plural = "localvolumereplicasnapshots",
    singular = "localvolumereplicasnapshot",
    shortname = "lvrs",
    status = "LocalVolumeReplicaSnapshotStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeReplicaSnapshot is the snapshot LV of one replica on one node.",
    printcolumn(
        name = "Capacity",
        type_ = "integer",
        json_path = ".status.allocatedCapacityBytes"
    ),
    printcolumn(name = "NodeName", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(
        name = "SourceVolume",
        type_ = "string",
        json_path = ".spec.sourceVolume"
    ),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Merging", type_ = "string", json_path = ".status.attr.merging"),
    printcolumn(name = "Invalid", type_ = "string", json_path = ".status.attr.invalid"),
    printcolumn(name = "Age", type_ = "date", json_path = ".status.creationTime"),
    printcolumn(
        name = "SourceVolumeReplica",
        type_ = "string",
        json_path = ".spec.sourceVolumeReplica",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeReplicaSnapshotSpec {
    pub node_name: String,
    /// The LocalVolumeSnapshot this belongs to.
    pub volume_snapshot_name: String,
    pub source_volume: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_volume_replica: String,
    /// LVM pool of the source replica.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("enum" = ["LocalStorage_PoolHDD", "LocalStorage_PoolSSD", "LocalStorage_PoolNVMe"]))]
    pub pool_name: String,
    #[schemars(range(min = 4194304))]
    pub required_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeReplicaSnapshotStatus {
    #[serde(default, skip_serializing_if = "is_default")]
    pub allocated_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attr: Option<SnapshotAttr>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: VolumeState,
    /// Human-readable reason for the state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Conditions of types Submit, Create, Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Roll a volume back to a snapshot (`restoreType: rollback`) or copy a snapshot into a new
/// volume (`create`). CSI restores are named `snaprestore-<volume>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeSnapshotRestore",
    plural = "localvolumesnapshotrestores",
    singular = "localvolumesnapshotrestore",
    shortname = "lvsrestore",
    shortname = "lvsnaprestore",
    status = "LocalVolumeSnapshotRestoreStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeSnapshotRestore rolls a volume back to a snapshot or restores it into a new volume.",
    printcolumn(
        name = "targetvolume",
        type_ = "string",
        json_path = ".spec.targetVolume"
    ),
    printcolumn(
        name = "sourcesnapshot",
        type_ = "string",
        json_path = ".spec.sourceVolumeSnapshot"
    ),
    printcolumn(name = "state", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "progress",
        type_ = "integer",
        json_path = ".status.progress",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = require_restore_type)]
pub struct LocalVolumeSnapshotRestoreSpec {
    /// Volume to write; for rollback it is forced to the snapshot's source volume.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_volume: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_pool_name: String,
    /// LocalVolumeSnapshot name.
    pub source_volume_snapshot: String,
    /// `rollback` or `create` (default).
    #[serde(default)]
    pub restore_type: RestoreType,
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeSnapshotRestoreStatus {
    /// Names of the per-node LocalVolumeReplicaSnapshotRestores.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_replica_snapshot_restore: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: OperationState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// How far the restore got, in percent (the slowest node): an LVM rollback reports its
    /// merge as it runs; copies and file-engine rollbacks jump to 100 when done. Absent
    /// until a node reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub progress: Option<i32>,
}

/// The part of a LocalVolumeSnapshotRestore executed on one node. Name: `<lvsrestore>-<6 rand>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeReplicaSnapshotRestore",
    plural = "localvolumereplicasnapshotrestores",
    singular = "localvolumereplicasnapshotrestore",
    shortname = "lvrsrestore",
    shortname = "lvrsnaprestore",
    status = "LocalVolumeReplicaSnapshotRestoreStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeReplicaSnapshotRestore is the per-node part of a snapshot restore.",
    printcolumn(name = "nodeName", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(
        name = "targetvolume",
        type_ = "string",
        json_path = ".spec.targetVolume"
    ),
    printcolumn(
        name = "sourcesnapshot",
        type_ = "string",
        json_path = ".spec.sourceVolumeSnapshot"
    ),
    printcolumn(name = "state", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeReplicaSnapshotRestoreSpec {
    pub node_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_volume: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_pool_name: String,
    pub source_volume_snapshot: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_volume_replica_snapshot: String,
    #[serde(default)]
    pub restore_type: RestoreType,
    /// The owning LocalVolumeSnapshotRestore.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume_snapshot_restore: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeReplicaSnapshotRestoreStatus {
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: OperationState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Percent done on this node (LVM merge: `100 - snap_percent` of the merging snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub progress: Option<i32>,
}

impl LocalVolumeSnapshot {
    /// `status.state`, `Unknown` without a status.
    pub fn state(&self) -> VolumeState {
        self.status.as_ref().map(|s| s.state).unwrap_or_default()
    }
}

impl LocalVolumeReplicaSnapshot {
    /// `status.state`, `Unknown` without a status.
    pub fn state(&self) -> VolumeState {
        self.status.as_ref().map(|s| s.state).unwrap_or_default()
    }
}
