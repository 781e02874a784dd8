//! LocalStorageNode: the LVM side of a node.

use std::collections::BTreeMap;

use hwameistor_core::types::{NodeState, PoolClass};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    LocalPool, PoolExtendRecords, StorageNodeCondition, default_string, is_default,
};
use crate::disk::ThinPoolClaimDescription;

/// LVM storage of one node: pools (`LocalStorage_Pool<CLASS>` volume groups), storage IP for
/// replication traffic and topology. Name = node name; created by the node agent at start.
///
/// The original's JSON key for the topology is misspelled `topogoly`. We **emit `topogoly`**
/// (so the original's tools and `kubectl` outputs in its manuals keep working) and accept both
/// `topogoly` and `topology` on input; both are in the CRD schema so the API server keeps
/// either. If both are present, `topogoly` wins.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalStorageNode",
    plural = "localstoragenodes",
    singular = "localstoragenode",
    shortname = "lsn",
    status = "LocalStorageNodeStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalStorageNode holds the LVM storage pools of one node.",
    printcolumn(
        name = "ip",
        type_ = "string",
        json_path = ".spec.storageIP",
        description = "IPv4 address for replication traffic"
    ),
    printcolumn(name = "status", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "PoolHDD",
        type_ = "integer",
        json_path = ".status.pools.LocalStorage_PoolHDD.freeCapacityBytes",
        priority = 1,
        description = "free capacity of the HDD pool in bytes"
    ),
    printcolumn(
        name = "PoolSSD",
        type_ = "integer",
        json_path = ".status.pools.LocalStorage_PoolSSD.freeCapacityBytes",
        priority = 1,
        description = "free capacity of the SSD pool in bytes"
    ),
    printcolumn(
        name = "PoolNVMe",
        type_ = "integer",
        json_path = ".status.pools.LocalStorage_PoolNVMe.freeCapacityBytes",
        priority = 1,
        description = "free capacity of the NVMe pool in bytes"
    ),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", from = "LocalStorageNodeSpecWire")]
pub struct LocalStorageNodeSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// IPv4 address used for DRBD replication and data migration.
    #[serde(
        rename = "storageIP",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub storage_ip: String,
    /// Zone and region (JSON key `topogoly`, sic).
    #[serde(rename = "topogoly", default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
}

/// Input form of [`LocalStorageNodeSpec`], accepting both spellings of the topology key.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct LocalStorageNodeSpecWire {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    hostname: String,
    /// IPv4 address used for DRBD replication and data migration.
    #[serde(
        rename = "storageIP",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    storage_ip: String,
    /// Zone and region (the original's misspelled key; this is what we write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topogoly: Option<Topology>,
    /// Zone and region (correct spelling, accepted on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topology: Option<Topology>,
}

impl From<LocalStorageNodeSpecWire> for LocalStorageNodeSpec {
    fn from(w: LocalStorageNodeSpecWire) -> Self {
        Self {
            hostname: w.hostname,
            storage_ip: w.storage_ip,
            topology: w.topogoly.or(w.topology),
        }
    }
}

/// Zone and region of a node; both default to `default`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    #[serde(default = "default_string")]
    pub zone: String,
    #[serde(default = "default_string")]
    pub region: String,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            zone: default_string(),
            region: default_string(),
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalStorageNodeStatus {
    /// Pool name (`LocalStorage_PoolHDD`, ...) → pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, LocalPool>,
    /// Ready, Offline or Maintain.
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<StorageNodeCondition>,
    /// Pool name → the LocalDiskClaims whose disks extended it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_extend_records: PoolExtendRecords,
    /// Pool name → the ThinPoolClaims applied to it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thin_pool_extend_records: BTreeMap<String, Vec<ThinPoolExtendRecord>>,
}

/// One applied ThinPoolClaim.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThinPoolExtendRecord {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    pub description: ThinPoolClaimDescription,
    /// UID of the ThinPoolClaim.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl LocalStorageNodeStatus {
    /// The LVM pool of a class, if the node has one.
    pub fn pool(&self, class: PoolClass) -> Option<&LocalPool> {
        self.pools.get(class.lvm_pool_name())
    }
}

impl LocalStorageNode {
    /// `status.state`, `Unknown` without a status.
    pub fn state(&self) -> NodeState {
        self.status.as_ref().map(|s| s.state).unwrap_or_default()
    }

    /// The LVM pool of a class, if the node has one.
    pub fn pool(&self, class: PoolClass) -> Option<&LocalPool> {
        self.status.as_ref().and_then(|s| s.pool(class))
    }
}
