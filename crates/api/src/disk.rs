//! Disk-side kinds: LocalDisk, LocalDiskClaim, LocalDiskNode, LocalDiskVolume,
//! LocalDiskAction and ThinPoolClaim.

use std::collections::BTreeMap;

use hwameistor_core::types::{
    AccessType, ClaimPhase, DiskActionType, DiskClaimState, DiskOwner, DiskType, LocalDiskState,
    MountPointPhase, NodeState, PoolClass, SmartHealth, ThinPoolClaimPhase, VolumeState,
};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    LocalPool, PoolExtendRecords, StorageNodeCondition, VolumeAccessibility, is_default, is_false,
};

// ---------------------------------------------------------------------------------------------
// LocalDisk
// ---------------------------------------------------------------------------------------------

/// One physical disk on one node, discovered by the disk manager. Name:
/// `localdisk-<md5(vendor+serial+wwn)>`, so a disk keeps its identity when `/dev/sdX` moves.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalDisk",
    plural = "localdisks",
    singular = "localdisk",
    shortname = "ld",
    status = "LocalDiskStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalDisk is a block device on a node, discovered and tracked by the disk manager.",
    printcolumn(name = "NodeMatch", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(
        name = "Capacity",
        type_ = "integer",
        json_path = ".spec.capacity",
        priority = 1
    ),
    printcolumn(
        name = "PreNodeMatch",
        type_ = "string",
        json_path = ".spec.preNodeName",
        priority = 1
    ),
    printcolumn(name = "DevicePath", type_ = "string", json_path = ".spec.devicePath"),
    printcolumn(
        name = "PreDevicePath",
        type_ = "string",
        json_path = ".spec.preDevicePath",
        priority = 1
    ),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.claimState"),
    printcolumn(
        name = "Health",
        type_ = "string",
        json_path = ".spec.smartInfo.overallHealth",
        priority = 1
    ),
    printcolumn(
        name = "Reserved",
        type_ = "boolean",
        json_path = ".spec.reserved",
        priority = 1
    ),
    printcolumn(name = "State", type_ = "string", json_path = ".spec.state"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskSpec {
    /// Node the disk is attached to (empty while Inactive).
    pub node_name: String,
    /// Node the disk was attached to before it went away or moved.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pre_node_name: String,
    /// md5(vendor + serial + wwn); the name suffix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uuid: String,
    /// Current device path, e.g. `/dev/sdb`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_path: String,
    /// Previous device path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pre_device_path: String,
    /// Sorted udev DEVLINKS (`/dev/disk/by-id/...`, `/dev/disk/by-path/...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dev_links: Vec<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub capacity: i64,
    /// The disk has a partition table, partitions or a filesystem/LVM signature.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partitioned: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_info: Vec<PartitionInfo>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_raid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raid_info: Option<RaidInfo>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub support_smart: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart_info: Option<SmartInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_attributes: Option<DiskAttributes>,
    /// Active (present), Inactive (gone) or Unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<LocalDiskState>,
    /// The LocalDiskClaim that claimed this disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_ref: Option<ObjectReference>,
    /// A reserved disk is never claimed or touched (system disks are reserved at discovery).
    #[serde(default, skip_serializing_if = "is_false")]
    pub reserved: bool,
    /// Who uses the disk: local-storage, local-disk-manager, system, or "" (undecided).
    #[serde(default, skip_serializing_if = "is_default")]
    pub owner: DiskOwner,
    /// Device major number (a string, as in the original).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub major: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub minor: String,
}

/// A partition (or the whole disk when it carries a signature).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionInfo {
    pub path: String,
    pub has_file_system: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FileSystemInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSystemInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fs_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mount_point: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RaidInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub raid_master: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmartInfo {
    /// Passed or Failed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub overall_health: SmartHealth,
}

/// Static hardware facts about a disk.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskAttributes {
    /// HDD, SSD, NVMe or Unknown. Users may edit it to reclassify a disk.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub disk_type: Option<DiskType>,
    /// disk, partition, loop, dm, lvm, crypt, mpath or an md level (raid1, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dev_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vendor: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub product: String,
    #[serde(
        default,
        rename = "pciVendorID",
        skip_serializing_if = "String::is_empty"
    )]
    pub pci_vendor_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub model_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial_number: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub form_factor: String,
    #[serde(default, skip_serializing_if = "is_default")]
    pub rotation_rate: i64,
    /// Transport (udev ID_BUS): ata, scsi, nvme, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskStatus {
    /// Pending, Available, Bound or Reserved (printed as PHASE).
    #[serde(default, skip_serializing_if = "is_default")]
    pub claim_state: DiskClaimState,
}

// ---------------------------------------------------------------------------------------------
// LocalDiskClaim
// ---------------------------------------------------------------------------------------------

/// A one-shot request to give matching free disks of a node to an owner's pool. Once the
/// owner has consumed the disks the claim is deleted; the record is kept in the node's
/// `status.poolExtendRecords`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalDiskClaim",
    plural = "localdiskclaims",
    singular = "localdiskclaim",
    shortname = "ldc",
    status = "LocalDiskClaimStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalDiskClaim requests the free disks of a node that match a description for an owner.",
    printcolumn(name = "NodeMatch", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.status"),
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner")
)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskClaimSpec {
    /// Node whose disks are claimed.
    pub node_name: String,
    /// `local-storage` (LVM pools) or `local-disk-manager` (raw-disk pools). The original
    /// requires it, but its own manual ("数据盘扩展") leaves it out; we accept a missing owner
    /// and treat it as `local-storage`, as the original's claim filter does for `""`.
    #[serde(default)]
    pub owner: DiskOwner,
    /// Which disks to claim.
    #[serde(default, skip_serializing_if = "is_default")]
    pub description: DiskClaimDescription,
    /// Disks assigned to the claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_refs: Vec<ObjectReference>,
}

/// Filter of a LocalDiskClaim; every set field must match.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskClaimDescription {
    /// HDD, SSD or NVMe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_type: Option<DiskType>,
    /// Minimum disk size in bytes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub capacity: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_disk_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_paths: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskClaimStatus {
    /// Pending, Extending, Bound, Consumed, ToBeDeleted or Deleted.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: ClaimPhase,
}

// ---------------------------------------------------------------------------------------------
// LocalDiskNode
// ---------------------------------------------------------------------------------------------

/// Raw-disk storage of one node (`LocalDisk_Pool<CLASS>` pools). Name = node name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalDiskNode",
    plural = "localdisknodes",
    singular = "localdisknode",
    shortname = "ldn",
    status = "LocalDiskNodeStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalDiskNode holds the raw-disk pools of one node.",
    printcolumn(
        name = "FreeCapacity",
        type_ = "integer",
        json_path = ".status.freeCapacity"
    ),
    printcolumn(
        name = "TotalCapacity",
        type_ = "integer",
        json_path = ".status.totalCapacity"
    ),
    printcolumn(name = "TotalDisk", type_ = "integer", json_path = ".status.totalDisk"),
    printcolumn(name = "status", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskNodeSpec {
    pub node_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskNodeStatus {
    /// Pool name (`LocalDisk_PoolHDD`, ...) → pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, LocalPool>,
    /// Ready or Offline.
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: NodeState,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<StorageNodeCondition>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_extend_records: PoolExtendRecords,
    #[serde(default, skip_serializing_if = "is_default")]
    pub total_disk: i64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub free_disk: i64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub total_capacity: i64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub free_capacity: i64,
}

// ---------------------------------------------------------------------------------------------
// LocalDiskVolume
// ---------------------------------------------------------------------------------------------

/// A volume that is a whole disk (`disk.hwameistor.io`). Name = PV name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalDiskVolume",
    plural = "localdiskvolumes",
    singular = "localdiskvolume",
    shortname = "ldv",
    status = "LocalDiskVolumeStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalDiskVolume is a persistent volume backed by one whole raw disk.",
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".spec.accessibility.nodes[0]"
    ),
    printcolumn(name = "Disk", type_ = "string", json_path = ".status.devPath"),
    printcolumn(
        name = "AllocatedCap",
        type_ = "integer",
        json_path = ".status.allocatedCapacityBytes"
    ),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.diskType"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.state")
)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskVolumeSpec {
    /// HDD, SSD or NVMe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_type: Option<DiskType>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub required_capacity_bytes: i64,
    #[serde(default)]
    pub accessibility: VolumeAccessibility,
    /// `"<namespace>/<name>"` of the PVC.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub persistent_volume_claim_name: String,
    /// The disk may be wiped (`wipefs -af`) when the volume is deleted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub can_wipe: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskVolumeStatus {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub local_disk_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dev_path: String,
    /// `/etc/hwameistor/LocalDisk_Pool<T>/volume/<name>`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume_path: String,
    /// by-path / by-id / by-uuid → links.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dev_links: BTreeMap<String, Vec<String>>,
    /// The whole disk's size.
    #[serde(default, skip_serializing_if = "is_default")]
    pub allocated_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub used_capacity_bytes: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub state: VolumeState,
}

/// One mount of a raw-disk volume.
///
/// The original's JSON key for the filesystem type is misspelled `fsTye`. We **emit `fsTye`**
/// so objects stay readable by the original's tools, and accept both `fsTye` and `fsType` on
/// input (both are in the CRD schema so the API server keeps either). If both are present,
/// `fsTye` wins.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", from = "MountPointWire")]
pub struct MountPoint {
    pub target_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_cap: Option<VolumeCapability>,
    /// Filesystem type (JSON key `fsTye`, sic).
    #[serde(rename = "fsTye", default, skip_serializing_if = "String::is_empty")]
    pub fs_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub phase: MountPointPhase,
}

/// Input form of [`MountPoint`] accepting both spellings.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct MountPointWire {
    target_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    volume_cap: Option<VolumeCapability>,
    /// Filesystem type (the original's misspelled key; this is what we write).
    #[serde(rename = "fsTye", default, skip_serializing_if = "Option::is_none")]
    fs_tye: Option<String>,
    /// Filesystem type (correct spelling, accepted on input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fs_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    mount_options: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default")]
    phase: MountPointPhase,
}

impl From<MountPointWire> for MountPoint {
    fn from(w: MountPointWire) -> Self {
        Self {
            target_path: w.target_path,
            volume_cap: w.volume_cap,
            fs_type: w
                .fs_tye
                .filter(|s| !s.is_empty())
                .or(w.fs_type)
                .unwrap_or_default(),
            mount_options: w.mount_options,
            phase: w.phase,
        }
    }
}

/// CSI volume capability of a mount point.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeCapability {
    /// CSI `AccessMode.Mode` number (1 = SINGLE_NODE_WRITER).
    #[serde(default, skip_serializing_if = "is_default")]
    pub access_mode: i32,
    /// Block or Mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_type: Option<AccessType>,
}

// ---------------------------------------------------------------------------------------------
// LocalDiskAction
// ---------------------------------------------------------------------------------------------

/// A rule applied to every LocalDisk: matching disks get the action (only `reserve`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "LocalDiskAction",
    plural = "localdiskactions",
    singular = "localdiskaction",
    shortname = "lda",
    status = "LocalDiskActionStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "LocalDiskAction reserves every LocalDisk that matches its rule.",
    printcolumn(name = "Action", type_ = "string", json_path = ".spec.action"),
    printcolumn(
        name = "MaxCapacity",
        type_ = "integer",
        json_path = ".spec.rule.maxCapacity"
    ),
    printcolumn(
        name = "MinCapacity",
        type_ = "integer",
        json_path = ".spec.rule.minCapacity"
    ),
    printcolumn(
        name = "DevicePath",
        type_ = "string",
        json_path = ".spec.rule.devicePath"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskActionSpec {
    /// Only `reserve`.
    pub action: DiskActionType,
    #[serde(default, skip_serializing_if = "is_default")]
    pub rule: DiskActionRule,
}

/// Matching rule. An empty rule matches nothing. A disk matches if (minCapacity is 0 or the
/// disk is smaller than it) and (maxCapacity is 0 or the disk is larger than it) and
/// (devicePath is empty or the glob matches).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskActionRule {
    #[serde(default, skip_serializing_if = "is_default")]
    pub min_capacity: i64,
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_capacity: i64,
    /// Glob, e.g. `/dev/sd*`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_path: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskActionStatus {
    /// Names of the most recently matched disks, newest first, at most 10.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latest_matched_lds: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// ThinPoolClaim
// ---------------------------------------------------------------------------------------------

/// Create or extend the thin pool `LocalStorage_ThinPool` inside an LVM pool of a node.
///
/// The node agent of `spec.nodeName` creates the thin pool (or grows it; it never shrinks)
/// in the VG of `description.poolName`, tags it with the over-provision ratio and sets
/// `status.status` to `Consumed` (bound) or `Failed` with the command's message in
/// `status.message` (retried). Deleting the claim leaves the thin pool in place.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "ThinPoolClaim",
    plural = "thinpoolclaims",
    singular = "thinpoolclaim",
    shortname = "tpc",
    status = "ThinPoolClaimStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "ThinPoolClaim creates or extends the thin pool of an LVM pool on a node.",
    printcolumn(name = "NodeName", type_ = "string", json_path = ".spec.nodeName"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.status")
)]
#[serde(rename_all = "camelCase")]
pub struct ThinPoolClaimSpec {
    pub node_name: String,
    pub description: ThinPoolClaimDescription,
}

/// Size of the requested thin pool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThinPoolClaimDescription {
    /// LVM pool (`LocalStorage_PoolHDD`, ...).
    pub pool_name: String,
    /// Data size in GiB. Exactly one of `capacity` and `capacityPercent` must be given.
    #[serde(default, skip_serializing_if = "is_default")]
    #[schemars(range(min = 1, max = 1048576))]
    pub capacity: i64,
    /// Data size as a percentage of the pool's (VG's) total size, 1..=95 (metadata and
    /// lvm's spare metadata copy need room too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 95))]
    pub capacity_percent: Option<i64>,
    /// Over-provisioning ratio, e.g. `"1.0"` (the default); the latest non-empty record wins.
    #[serde(
        default = "default_over_provision_ratio",
        skip_serializing_if = "Option::is_none"
    )]
    pub over_provision_ratio: Option<String>,
    /// Metadata size in GiB (default 1); 0 lets lvm size it from the data size.
    #[serde(default = "default_pool_metadata_size")]
    #[schemars(range(min = 0, max = 16))]
    pub pool_metadata_size: i64,
}

fn default_over_provision_ratio() -> Option<String> {
    Some("1.0".to_owned())
}

fn default_pool_metadata_size() -> i64 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThinPoolClaimStatus {
    /// Pending, ToBeConsumed, Consumed (the thin pool exists as claimed), Failed,
    /// ToBeDeleted or Deleted.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: ThinPoolClaimPhase,
    /// Why the last attempt failed, or what was done.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Pool class of a ThinPoolClaim's pool, if the pool name is a known LVM pool.
impl ThinPoolClaimDescription {
    pub fn pool_class(&self) -> Option<PoolClass> {
        PoolClass::from_pool_name(&self.pool_name)
    }
}

impl LocalDisk {
    /// `status.claimState`, `Unknown` without a status.
    pub fn claim_state(&self) -> DiskClaimState {
        self.status
            .as_ref()
            .map(|s| s.claim_state)
            .unwrap_or_default()
    }

    /// `spec.diskAttributes.type`, `Unknown` when not known.
    pub fn disk_type(&self) -> DiskType {
        self.spec
            .disk_attributes
            .as_ref()
            .and_then(|a| a.disk_type)
            .unwrap_or_default()
    }

    /// Present on its node (`spec.state == Active`).
    pub fn is_active(&self) -> bool {
        self.spec.state == Some(LocalDiskState::Active)
    }
}

impl LocalDiskClaim {
    /// `status.status`, `Unknown` without a status.
    pub fn phase(&self) -> ClaimPhase {
        self.status.as_ref().map(|s| s.status).unwrap_or_default()
    }
}
