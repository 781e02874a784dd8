//! Volume operations: LocalVolumeConvert, LocalVolumeExpand, LocalVolumeMigrate.
//!
//! Each is a one-shot command object: the controller walks `status.state` through
//! `Submitted → InProgress/AddReplica/... → Completed` (or `ToBeAborted → Aborted` when
//! `spec.abort` is set, or `Failed`) and deletes the object when it is done.

use hwameistor_core::types::OperationState;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{default_true, is_default, is_false};

/// `targetNodesSuggested` is required by the API (it may be empty) but tolerated when absent
/// on input.
fn require_target_nodes_suggested(schema: &mut schemars::Schema) {
    crate::common::require_fields(schema, &["targetNodesSuggested"]);
}

fn default_convert_replicas() -> i64 {
    2
}

/// Convert a convertible 1-replica volume (and the rest of its group) to 2 replicas (HA).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeConvert",
    plural = "localvolumeconverts",
    singular = "localvolumeconvert",
    shortname = "lvconvert",
    status = "LocalVolumeConvertStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeConvert turns a convertible 1-replica volume into an HA volume.",
    printcolumn(name = "volume", type_ = "string", json_path = ".spec.volumeName"),
    printcolumn(
        name = "replicas",
        type_ = "integer",
        json_path = ".spec.replicaNumber"
    ),
    printcolumn(name = "state", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "message", type_ = "string", json_path = ".status.message"),
    printcolumn(name = "abort", type_ = "boolean", json_path = ".spec.abort"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeConvertSpec {
    pub volume_name: String,
    /// Target replica count; only 2 is supported.
    #[serde(default = "default_convert_replicas")]
    #[schemars(range(min = 2, max = 2))]
    pub replica_number: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeConvertStatus {
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: OperationState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Grow a volume. Created by CSI ControllerExpandVolume with the volume's name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeExpand",
    plural = "localvolumeexpands",
    singular = "localvolumeexpand",
    shortname = "lvexpand",
    status = "LocalVolumeExpandStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeExpand grows a LocalVolume and its replicas.",
    printcolumn(
        name = "newCapacity",
        type_ = "integer",
        json_path = ".spec.requiredCapacityBytes"
    ),
    printcolumn(name = "abort", type_ = "boolean", json_path = ".spec.abort"),
    printcolumn(name = "state", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "subs", type_ = "string", json_path = ".status.subs"),
    printcolumn(name = "message", type_ = "string", json_path = ".status.message"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeExpandSpec {
    pub volume_name: String,
    /// New size in bytes.
    #[schemars(range(min = 4194304))]
    pub required_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeExpandStatus {
    #[serde(default, skip_serializing_if = "is_default")]
    pub allocated_capacity_bytes: i64,
    /// Volumes expanded by this operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subs: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: OperationState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Move a volume's replica (by default with all volumes of its group) off a node.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeMigrate",
    plural = "localvolumemigrates",
    singular = "localvolumemigrate",
    shortname = "lvmigrate",
    shortname = "lvmmigrate",
    status = "LocalVolumeMigrateStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeMigrate moves the replica of a volume (group) from one node to another.",
    printcolumn(name = "volume", type_ = "string", json_path = ".spec.volumeName"),
    printcolumn(name = "from", type_ = "string", json_path = ".spec.sourceNode"),
    printcolumn(name = "to", type_ = "string", json_path = ".status.targetNode"),
    printcolumn(name = "state", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = require_target_nodes_suggested)]
pub struct LocalVolumeMigrateSpec {
    pub volume_name: String,
    /// Node to move the replica away from.
    pub source_node: String,
    /// Preferred targets, in order; may be empty (the scheduler picks).
    #[serde(default)]
    pub target_nodes_suggested: Vec<String>,
    /// Migrate every volume of the volume's LocalVolumeGroup (default true).
    #[serde(default = "default_true")]
    pub migrate_all_vols: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeMigrateStatus {
    /// Replica count before the migration added the target replica.
    #[serde(default, skip_serializing_if = "is_default")]
    pub original_replica_number: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_node: String,
    /// Volumes moved by this operation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: OperationState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `state()` for operation kinds: `status.state`, `Unknown` without a status.
macro_rules! operation_state {
    ($($kind:ty),+ $(,)?) => {$(
        impl $kind {
            /// `status.state`, `Unknown` (just submitted) without a status.
            pub fn state(&self) -> OperationState {
                self.status.as_ref().map(|s| s.state).unwrap_or_default()
            }
        }
    )+};
}

operation_state!(
    LocalVolumeConvert,
    LocalVolumeExpand,
    LocalVolumeMigrate,
    crate::snapshot::LocalVolumeSnapshotRestore,
    crate::snapshot::LocalVolumeReplicaSnapshotRestore,
);
