//! Value types shared by several kinds, and serde helpers.

use std::collections::BTreeMap;

use hwameistor_core::types::{
    ConditionStatus, DiskState, DiskType, EncryptType, PoolClass, PoolType,
    StorageNodeConditionType,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Schema transform helper: mark properties as required (for fields that have a serde default
/// so that Rust tolerates their absence, but that the API declares required).
pub(crate) fn require_fields(schema: &mut schemars::Schema, fields: &[&str]) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let required = obj
        .entry("required")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    if let Some(list) = required.as_array_mut() {
        for f in fields {
            if !list.iter().any(|v| v == f) {
                list.push(serde_json::Value::String((*f).to_owned()));
            }
        }
        list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

/// `skip_serializing_if` helper: the value equals its type's default.
pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// `skip_serializing_if` helper for booleans.
pub(crate) fn is_false(v: &bool) -> bool {
    !*v
}

pub(crate) fn default_string() -> String {
    crate::consts::DEFAULT_TOPOLOGY_VALUE.to_owned()
}

pub(crate) fn default_topology_list() -> Vec<String> {
    vec![crate::consts::DEFAULT_TOPOLOGY_VALUE.to_owned()]
}

pub(crate) fn default_true() -> bool {
    true
}

/// Where a volume may be accessed from: the nodes holding its replicas (first = primary) and
/// the zones/regions, which the original always leaves at `[default]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAccessibility {
    /// Nodes where the volume's replicas live; the first one is the preferred (primary) node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(default = "default_topology_list")]
    pub zones: Vec<String>,
    #[serde(default = "default_topology_list")]
    pub regions: Vec<String>,
}

impl Default for VolumeAccessibility {
    fn default() -> Self {
        Self {
            nodes: Vec::new(),
            zones: default_topology_list(),
            regions: default_topology_list(),
        }
    }
}

impl VolumeAccessibility {
    /// Accessibility restricted to the given nodes, default zone and region.
    pub fn on_nodes<I: IntoIterator<Item = S>, S: Into<String>>(nodes: I) -> Self {
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// IO limits of a volume. Both are Kubernetes quantity strings (`"100"`, `"10Mi"`); empty means
/// unlimited. Changing them on a LocalVolume re-applies the limits on the node within seconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeQoS {
    /// Maximum bytes per second (read and write each).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub throughput: String,
    /// Maximum IO operations per second (read and write each).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub iops: String,
}

impl VolumeQoS {
    /// No limit set.
    pub fn is_empty(&self) -> bool {
        self.throughput.is_empty() && self.iops.is_empty()
    }
}

/// Encryption settings of a volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeEncrypt {
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable: bool,
    /// Only `LUKS`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub encrypt_type: Option<EncryptType>,
    /// `"<namespace>/<name>"` of a Secret whose data key `key` holds the passphrase.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

/// A disk inside a storage pool (`status.pools.<pool>.disks[]`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalDevice {
    /// Device path, e.g. `/dev/sdb`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dev_path: String,
    /// Media type: HDD, SSD or NVMe.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub disk_type: Option<DiskType>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub capacity_bytes: i64,
    /// Available, InUse or Offline.
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: DiskState,
}

/// Thin pool inside an LVM pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThinPoolInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Data size in bytes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub size: i64,
    /// Metadata size in bytes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub metadata_size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_percent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_percent: Option<String>,
    /// Sum of the virtual sizes of the thin volumes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub total_provisioned_size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_provision_ratio: Option<String>,
    /// Over-provisioning factor, e.g. `"1.0"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_provision_ratio: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thin_volumes: Vec<String>,
    /// Condition of type `PoolState`, reason `PoolStateNormal` or `PoolStateWarning`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Condition>,
}

/// A storage pool on a node: an LVM volume group (`LocalStorage_Pool<CLASS>`) for
/// LocalStorageNode, a set of whole disks (`LocalDisk_Pool<CLASS>`) for LocalDiskNode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalPool {
    /// Pool name, e.g. `LocalStorage_PoolHDD`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// HDD, SSD or NVMe.
    pub class: PoolClass,
    /// Always `REGULAR`.
    #[serde(rename = "type", default)]
    pub pool_type: PoolType,
    /// Volume group path, e.g. `/dev/LocalStorage_PoolHDD`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub total_capacity_bytes: i64,
    pub used_capacity_bytes: i64,
    /// Largest volume that can be created in this pool.
    pub volume_capacity_bytes_limit: i64,
    pub free_capacity_bytes: i64,
    /// At most 1000 LVM volumes per pool; for disk pools, the number of disks.
    pub total_volume_count: i64,
    pub used_volume_count: i64,
    pub free_volume_count: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<LocalDevice>,
    /// Names of the volumes (and snapshots) in the pool.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub volumes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thin_pool: Option<ThinPoolInfo>,
}

/// Deserialize `null` (as in the seeds' `volumes:` with no items) as an empty vector.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Condition of a LocalStorageNode or LocalDiskNode.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageNodeCondition {
    /// Available, UnAvailable, Progressing, ExpandFailure or ExpandSuccess.
    #[serde(rename = "type")]
    pub type_: StorageNodeConditionType,
    /// True, False or Unknown.
    pub status: ConditionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable reason, e.g. `StorageExpandFailure`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `poolExtendRecords`: per pool, the LocalDiskClaims whose disks were added to it.
pub type PoolExtendRecords = BTreeMap<String, Vec<crate::disk::LocalDiskClaimSpec>>;
