//! Sample objects for tests of other crates: small, valid, deterministic.
//!
//! ```
//! use hwameistor_api::{LocalVolume, LocalStorageNode};
//! let lv = LocalVolume::test("pvc-1");
//! assert_eq!(lv.spec.pool_name, "LocalStorage_PoolHDD");
//! let lsn = LocalStorageNode::test("node-1");
//! assert_eq!(lsn.spec.hostname, "node-1");
//! ```

use std::collections::BTreeMap;

use hwameistor_core::types::{
    DiskClaimState, DiskOwner, DiskState, DiskType, LocalDiskState, NodeState, PoolClass, PoolType,
    ReplicaState,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::common::{LocalDevice, LocalPool, VolumeAccessibility};
use crate::consts::LVM_VOLUME_MAX_COUNT;
use crate::disk::{
    DiskAttributes, DiskClaimDescription, LocalDisk, LocalDiskClaim, LocalDiskClaimSpec,
    LocalDiskSpec, LocalDiskStatus,
};
use crate::storage::{LocalStorageNode, LocalStorageNodeSpec, LocalStorageNodeStatus, Topology};
use crate::volume::{
    LocalVolume, LocalVolumeReplica, LocalVolumeReplicaSpec, LocalVolumeReplicaStatus,
    LocalVolumeSpec,
};

/// 1 GiB.
pub const GIB: i64 = 1024 * 1024 * 1024;

/// Metadata with just a name (all kinds are cluster-scoped).
pub fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

/// An empty LVM pool of `class` with `total` bytes.
pub fn lvm_pool(class: PoolClass, total: i64) -> LocalPool {
    LocalPool {
        name: class.lvm_pool_name().to_owned(),
        class,
        pool_type: PoolType::REGULAR,
        path: format!("/dev/{}", class.lvm_pool_name()),
        total_capacity_bytes: total,
        used_capacity_bytes: 0,
        volume_capacity_bytes_limit: total,
        free_capacity_bytes: total,
        total_volume_count: LVM_VOLUME_MAX_COUNT,
        used_volume_count: 0,
        free_volume_count: LVM_VOLUME_MAX_COUNT,
        disks: vec![LocalDevice {
            dev_path: "/dev/sdb".into(),
            disk_type: Some(class.into()),
            capacity_bytes: total,
            state: DiskState::InUse,
        }],
        volumes: Vec::new(),
        thin_pool: None,
    }
}

impl LocalVolume {
    /// A 1 GiB, 1-replica, HDD volume for PVC `default/<name>`, not yet placed.
    pub fn test(name: &str) -> Self {
        let mut lv = LocalVolume::new(
            name,
            LocalVolumeSpec {
                required_capacity_bytes: GIB,
                pool_name: PoolClass::HDD.lvm_pool_name().to_owned(),
                replica_number: 1,
                pvc_namespace: "default".into(),
                pvc_name: name.to_owned(),
                accessibility: VolumeAccessibility::default(),
                ..LocalVolumeSpec::default()
            },
        );
        lv.status = None;
        lv
    }
}

impl LocalVolumeReplica {
    /// A Ready 1 GiB replica of `volume` on `node`, named `<volume>-<node>`.
    pub fn test(volume: &str, node: &str) -> Self {
        let pool = PoolClass::HDD.lvm_pool_name();
        let mut r = LocalVolumeReplica::new(
            &format!("{volume}-{node}"),
            LocalVolumeReplicaSpec {
                volume_name: volume.to_owned(),
                pool_name: pool.to_owned(),
                node_name: node.to_owned(),
                required_capacity_bytes: GIB,
                ..LocalVolumeReplicaSpec::default()
            },
        );
        let path = format!("/dev/{pool}/{volume}");
        r.status = Some(LocalVolumeReplicaStatus {
            storage_path: path.clone(),
            dev_path: path,
            allocated_capacity_bytes: GIB,
            state: ReplicaState::Ready,
            synced: true,
            ..LocalVolumeReplicaStatus::default()
        });
        r
    }
}

impl LocalStorageNode {
    /// A Ready node with an empty 100 GiB HDD pool, storage IP `10.0.0.1`.
    pub fn test(node: &str) -> Self {
        let mut lsn = LocalStorageNode::new(
            node,
            LocalStorageNodeSpec {
                hostname: node.to_owned(),
                storage_ip: "10.0.0.1".into(),
                topology: Some(Topology::default()),
            },
        );
        let mut pools = BTreeMap::new();
        pools.insert(
            PoolClass::HDD.lvm_pool_name().to_owned(),
            lvm_pool(PoolClass::HDD, 100 * GIB),
        );
        lsn.status = Some(LocalStorageNodeStatus {
            pools,
            state: NodeState::Ready,
            ..LocalStorageNodeStatus::default()
        });
        lsn
    }
}

impl LocalDisk {
    /// An Active, Available, unowned 100 GiB HDD `/dev/<dev>` on `node`, named
    /// `localdisk-<node>-<dev>`.
    pub fn test(node: &str, dev: &str) -> Self {
        let mut ld = LocalDisk::new(
            &format!("localdisk-{node}-{dev}"),
            LocalDiskSpec {
                node_name: node.to_owned(),
                device_path: format!("/dev/{dev}"),
                dev_links: vec![format!("/dev/disk/by-id/test-{node}-{dev}")],
                capacity: 100 * GIB,
                state: Some(LocalDiskState::Active),
                disk_attributes: Some(DiskAttributes {
                    disk_type: Some(DiskType::HDD),
                    dev_type: "disk".into(),
                    serial_number: format!("SN-{node}-{dev}"),
                    ..DiskAttributes::default()
                }),
                owner: DiskOwner::Unknown,
                ..LocalDiskSpec::default()
            },
        );
        ld.status = Some(LocalDiskStatus {
            claim_state: DiskClaimState::Available,
        });
        ld
    }
}

impl LocalDiskClaim {
    /// A claim of all HDDs of `node` for `owner`.
    pub fn test(name: &str, node: &str, owner: DiskOwner) -> Self {
        LocalDiskClaim::new(
            name,
            LocalDiskClaimSpec {
                node_name: node.to_owned(),
                owner,
                description: DiskClaimDescription {
                    disk_type: Some(DiskType::HDD),
                    ..DiskClaimDescription::default()
                },
                disk_refs: Vec::new(),
            },
        )
    }
}
