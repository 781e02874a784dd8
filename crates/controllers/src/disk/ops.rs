//! Admin operations on disks, as plain functions over the store (used by `hwameictl disk
//! ...`, `hwameictl node list` and the REST server).
//!
//! Reserve/unreserve follow the seed's table: reservation is independent of the phase; any
//! LocalDisk can be reserved or unreserved. A reserved disk is never bound by a claim; a disk
//! already Bound stays in use, and once released it is not handed out again while reserved.

use hwameistor_api::{LocalDisk, LocalDiskNode};
use hwameistor_core::types::DiskOwner;
use hwameistor_store::Store;
use serde_json::json;

use super::{ANNOTATION_SMART_REQUEST, Error, Result, StoreCtx, now_rfc3339};

/// Reserve (`true`) or unreserve (`false`) a disk.
pub async fn reserve_disk(store: &Store, name: &str, reserved: bool) -> Result<LocalDisk> {
    store
        .all::<LocalDisk>()
        .patch(name, &json!({"spec": {"reserved": reserved}}))
        .await
        .ctx("reserve", "LocalDisk", name)
}

/// Set the owner of a disk (e.g. `local-disk-manager` before a raw-disk claim, as in the
/// seed's "裸磁盘节点扩容"). Refused while the disk is held by a claim of another owner.
pub async fn set_disk_owner(store: &Store, name: &str, owner: DiskOwner) -> Result<LocalDisk> {
    let disks = store.all::<LocalDisk>();
    let disk = disks.get(name).await.ctx("get", "LocalDisk", name)?;
    if disk.spec.claim_ref.is_some()
        && disk.spec.owner != owner
        && disk.spec.owner != DiskOwner::Unknown
    {
        return Err(Error::Invalid {
            kind: "LocalDisk",
            name: name.to_owned(),
            reason: format!(
                "disk is claimed by {:?} for {}; release it before changing the owner",
                disk.spec
                    .claim_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default(),
                disk.spec.owner
            ),
        });
    }
    let rv = disk.metadata.resource_version.clone();
    disks
        .patch(
            name,
            &json!({"metadata": {"resourceVersion": rv}, "spec": {"owner": owner}}),
        )
        .await
        .ctx("set owner", "LocalDisk", name)
}

/// Every LocalDisk (of one node if given; matches current or previous node), sorted by node
/// then device path then name.
pub async fn list_disks(store: &Store, node: Option<&str>) -> Result<Vec<LocalDisk>> {
    let mut items = store
        .all::<LocalDisk>()
        .list(&Default::default())
        .await
        .ctx("list", "LocalDisk", "*")?
        .items;
    if let Some(n) = node {
        items.retain(|d| {
            d.spec.node_name == n || (d.spec.node_name.is_empty() && d.spec.pre_node_name == n)
        });
    }
    items.sort_by(|a, b| {
        (
            a.spec.node_name.as_str(),
            a.spec.device_path.as_str(),
            a.metadata.name.as_deref(),
        )
            .cmp(&(
                b.spec.node_name.as_str(),
                b.spec.device_path.as_str(),
                b.metadata.name.as_deref(),
            ))
    });
    Ok(items)
}

/// One LocalDisk.
pub async fn get_disk(store: &Store, name: &str) -> Result<LocalDisk> {
    store
        .all::<LocalDisk>()
        .get(name)
        .await
        .ctx("get", "LocalDisk", name)
}

/// Every LocalDiskNode, sorted by name.
pub async fn list_disk_nodes(store: &Store) -> Result<Vec<LocalDiskNode>> {
    let mut items = store
        .all::<LocalDiskNode>()
        .list(&Default::default())
        .await
        .ctx("list", "LocalDiskNode", "*")?
        .items;
    items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    Ok(items)
}

/// Ask the disk's node to run smartctl on its next heartbeat.
pub async fn request_smart_check(store: &Store, name: &str) -> Result<LocalDisk> {
    store
        .all::<LocalDisk>()
        .patch(
            name,
            &json!({"metadata": {"annotations": {ANNOTATION_SMART_REQUEST: now_rfc3339()}}}),
        )
        .await
        .ctx("request SMART check", "LocalDisk", name)
}
