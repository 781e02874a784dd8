//! LVM volumes: LocalVolume, LocalVolumeReplica, LocalVolumeGroup.

use hwameistor_core::types::{HaState, PoolClass, ReplicaState, ThinOriginType, VolumeState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{VolumeAccessibility, VolumeEncrypt, VolumeQoS, is_default, is_false};

fn default_replica_number() -> i64 {
    1
}

// ---------------------------------------------------------------------------------------------
// LocalVolume
// ---------------------------------------------------------------------------------------------

/// An LVM persistent volume (`lvm.hwameistor.io`). Name = PV name (`pvc-<uid>`). One
/// LocalVolumeReplica per node in `spec.config.replicas`; two replicas (HA) are kept in sync
/// with DRBD.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolume",
    plural = "localvolumes",
    singular = "localvolume",
    shortname = "lv",
    status = "LocalVolumeStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolume is an LVM persistent volume with one or two replicas.",
    printcolumn(name = "pool", type_ = "string", json_path = ".spec.poolName"),
    printcolumn(
        name = "replicas",
        type_ = "integer",
        json_path = ".spec.replicaNumber"
    ),
    printcolumn(
        name = "capacity",
        type_ = "integer",
        json_path = ".spec.requiredCapacityBytes"
    ),
    printcolumn(
        name = "used",
        type_ = "integer",
        json_path = ".status.usedCapacityBytes"
    ),
    printcolumn(name = "state", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "resource",
        type_ = "integer",
        json_path = ".spec.config.resourceID",
        priority = 1
    ),
    printcolumn(
        name = "published",
        type_ = "string",
        json_path = ".status.publishedNode"
    ),
    printcolumn(
        name = "fstype",
        type_ = "string",
        json_path = ".status.fsType",
        priority = 1
    ),
    printcolumn(
        name = "group",
        type_ = "string",
        json_path = ".spec.volumegroup",
        priority = 1
    ),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeSpec {
    /// Requested size in bytes (rounded up to 4 MiB extents on the node).
    #[schemars(range(min = 4194304))]
    pub required_capacity_bytes: i64,
    /// IO limits; editable after creation.
    #[serde(rename = "volumeQoS", default, skip_serializing_if = "Option::is_none")]
    pub volume_qos: Option<VolumeQoS>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_encrypt: Option<VolumeEncrypt>,
    /// LVM pool (`LocalStorage_PoolHDD`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pool_name: String,
    /// 1 (non-HA) or 2 (HA); one more transiently during a migration.
    #[serde(default = "default_replica_number")]
    #[schemars(range(min = 1, max = 4))]
    pub replica_number: i64,
    /// A 1-replica volume backed by DRBD so that it can later be converted to HA.
    #[serde(default)]
    pub convertible: bool,
    #[serde(default)]
    pub accessibility: VolumeAccessibility,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pvc_namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pvc_name: String,
    /// LocalVolumeGroup the volume belongs to.
    #[serde(
        rename = "volumegroup",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub volume_group: String,
    /// Placement decided by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<VolumeConfig>,
    /// Thin LV in the pool's `LocalStorage_ThinPool`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub thin: bool,
    /// Stripe the LV across every PV of the pool's VG (StorageClass `striped: "true"`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub striped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin_origin: Option<ThinOrigin>,
    /// Set to request deletion (also used for manual reclaim of Retained volumes).
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete: bool,
}

/// Where a thin volume was cloned from.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThinOrigin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_type: Option<ThinOriginType>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin_id: String,
}

/// The controller's placement of a volume; `version` increases with each change.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeConfig {
    pub version: i64,
    pub volume_name: String,
    pub required_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "is_false")]
    pub convertible: bool,
    /// DRBD resource id; -1 for non-HA volumes.
    #[serde(rename = "resourceID")]
    pub resource_id: i64,
    /// Enough replicas are up for DRBD to be initialized.
    #[serde(default, skip_serializing_if = "is_false")]
    pub ready_to_initialize: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub initialized: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<VolumeReplicaConfig>,
}

/// One replica in a [`VolumeConfig`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeReplicaConfig {
    /// 1-based replica id (DRBD node id).
    pub id: i64,
    pub hostname: String,
    /// Storage IP of the node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ip: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub primary: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeStatus {
    #[serde(default, skip_serializing_if = "is_default")]
    pub allocated_capacity_bytes: i64,
    /// Filesystem usage reported by the node (drives auto-resize).
    #[serde(default, skip_serializing_if = "is_default")]
    pub used_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub total_inode: i64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub used_inode: i64,
    /// Names of the LocalVolumeReplicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: VolumeState,
    /// Node where the volume is attached (ControllerPublish).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub published_node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fs_type: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub rawblock: bool,
    /// Why the volume is not (yet) where it should be, for humans: a placement failure
    /// ("no pool of class SSD on any node has 5Gi free; ..."), a deletion blocked by
    /// snapshots. Empty when nothing is wrong.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Conditions of types `Scheduled` (placement) and `DeleteBlocked`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

// ---------------------------------------------------------------------------------------------
// LocalVolumeReplica
// ---------------------------------------------------------------------------------------------

/// The part of a LocalVolume on one node: an LV (plus DRBD for HA/convertible volumes).
/// Name: `<volume>-<6 random lowercase alphanumerics>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeReplica",
    plural = "localvolumereplicas",
    singular = "localvolumereplica",
    shortname = "lvr",
    shortname = "lvrr",
    status = "LocalVolumeReplicaStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeReplica is the replica of a LocalVolume on one node.",
    printcolumn(
        name = "capacity",
        type_ = "integer",
        json_path = ".spec.requiredCapacityBytes"
    ),
    printcolumn(name = "node", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "state", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "synced", type_ = "boolean", json_path = ".status.synced"),
    printcolumn(name = "device", type_ = "string", json_path = ".status.devPath"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeReplicaSpec {
    pub volume_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pool_name: String,
    pub node_name: String,
    #[schemars(range(min = 4194304))]
    pub required_capacity_bytes: i64,
    #[serde(rename = "volumeQoS", default, skip_serializing_if = "Option::is_none")]
    pub volume_qos: Option<VolumeQoS>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_encrypt: Option<VolumeEncrypt>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub thin: bool,
    /// Stripe the LV across every PV of the pool's VG (copied from the LocalVolume).
    #[serde(default, skip_serializing_if = "is_false")]
    pub striped: bool,
    /// Origin LV of a thin clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin_origin_volume: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub delete: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeReplicaStatus {
    /// `/dev/<VG>/<lv>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub storage_path: String,
    /// Device to use: the LV for non-HA volumes, `/dev/<VG>-HA/<lv>` (→ DRBD) otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dev_path: String,
    /// Physical volumes the LV lives on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub allocated_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: ReplicaState,
    /// Data is in sync with the other replicas.
    #[serde(default, skip_serializing_if = "is_false")]
    pub synced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha_state: Option<HaStatus>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub inuse: bool,
    /// Conditions of types Submit, Create, Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// DRBD state of an HA replica.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HaStatus {
    pub state: HaState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

// ---------------------------------------------------------------------------------------------
// LocalVolumeGroup
// ---------------------------------------------------------------------------------------------

/// All HwameiStor LVM volumes used by one pod, placed (and migrated) together. Name: a random
/// UUID. Protected by the finalizer `hwameistor.io/localvolumegroup-protection`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalVolumeGroup",
    plural = "localvolumegroups",
    singular = "localvolumegroup",
    shortname = "lvg",
    shortname = "lvgr",
    status = "LocalVolumeGroupStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalVolumeGroup keeps the volumes of one pod on the same nodes.",
    printcolumn(name = "pod", type_ = "string", json_path = ".spec.pods"),
    printcolumn(name = "namespace", type_ = "string", json_path = ".spec.namespace"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalVolumeGroupSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeInfo>,
    #[serde(default)]
    pub accessibility: VolumeAccessibility,
    /// Pods using the group's volumes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// A volume of a LocalVolumeGroup.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct VolumeInfo {
    /// LocalVolume name.
    #[serde(
        rename = "localvolume",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub local_volume: String,
    /// PVC name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pvc: String,
}

/// LocalVolumeGroup has no status fields; the subresource exists as in the original.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct LocalVolumeGroupStatus {}

impl LocalVolume {
    /// `status.state`, `Unknown` without a status.
    pub fn state(&self) -> VolumeState {
        self.status.as_ref().map(|s| s.state).unwrap_or_default()
    }

    /// Pool class from `spec.poolName`, if it is one of the LVM pools.
    pub fn pool_class(&self) -> Option<PoolClass> {
        PoolClass::from_pool_name(&self.spec.pool_name)
    }

    /// Replicated through DRBD (HA or convertible), as decided in `spec.config`; before the
    /// controller wrote a config, from the spec.
    pub fn is_drbd_backed(&self) -> bool {
        match &self.spec.config {
            Some(c) => c.convertible,
            None => self.spec.convertible || self.spec.replica_number >= 2,
        }
    }

    /// Node the volume is published (attached) to.
    pub fn published_node(&self) -> Option<&str> {
        self.status
            .as_ref()
            .map(|s| s.published_node.as_str())
            .filter(|n| !n.is_empty())
    }

    /// Nodes holding replicas according to `spec.config`.
    pub fn replica_nodes(&self) -> Vec<&str> {
        self.spec
            .config
            .iter()
            .flat_map(|c| c.replicas.iter().map(|r| r.hostname.as_str()))
            .collect()
    }
}

impl LocalVolumeReplica {
    /// `status.state`, `Unknown` without a status.
    pub fn state(&self) -> ReplicaState {
        self.status.as_ref().map(|s| s.state).unwrap_or_default()
    }

    /// Ready and in sync.
    pub fn is_ready_and_synced(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.state == ReplicaState::Ready && s.synced)
    }
}
