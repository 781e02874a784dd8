//! Tier 0: the node-side LocalDiskVolume reconciler over an in-memory EmbeddedStore with a
//! RecordingRunner: a disk is assigned on create, wiped (only when allowed) and released on
//! delete.

use std::sync::Arc;

use anyhow::Result;
use hwameistor_api::types::{DiskOwner, DiskType, LocalDiskState, VolumeState};
use hwameistor_api::{
    DiskAttributes, LocalDisk, LocalDiskSpec, LocalDiskVolume, LocalDiskVolumeSpec,
    VolumeAccessibility,
};
use hwameistor_controllers::disk::ANNOTATION_HAZARDS;
use hwameistor_controllers::disk::volume::{ANNOTATION_VOLUME_PROBLEM, reconcile_volumes};
use hwameistor_exec::{Output, RecordingRunner, SharedRunner};
use hwameistor_store::{EmbeddedStore, Store};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::json;

const NODE: &str = "node-1";
const GIB: i64 = 1 << 30;

fn store() -> Store {
    Store::from(EmbeddedStore::in_memory().expect("in-memory store"))
}

fn pool_disk(name: &str, dev: &str, capacity: i64) -> LocalDisk {
    LocalDisk::new(
        name,
        LocalDiskSpec {
            node_name: NODE.into(),
            device_path: dev.into(),
            dev_links: vec![format!("/dev/disk/by-id/wwn-{name}")],
            capacity,
            disk_attributes: Some(DiskAttributes {
                disk_type: Some(DiskType::HDD),
                dev_type: "disk".into(),
                ..Default::default()
            }),
            state: Some(LocalDiskState::Active),
            owner: DiskOwner::LocalDiskManager,
            claim_ref: Some(ObjectReference {
                name: Some("claim-1".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

fn volume(name: &str, required: i64) -> LocalDiskVolume {
    LocalDiskVolume::new(
        name,
        LocalDiskVolumeSpec {
            disk_type: Some(DiskType::HDD),
            required_capacity_bytes: required,
            accessibility: VolumeAccessibility {
                nodes: vec![NODE.into()],
                ..Default::default()
            },
            persistent_volume_claim_name: "default/data".into(),
            can_wipe: false,
        },
    )
}

async fn get(store: &Store, name: &str) -> Result<Option<LocalDiskVolume>> {
    Ok(store.all::<LocalDiskVolume>().get_opt(name).await?)
}

/// A store with two pool disks (the bigger one first in name order) and one fresh volume,
/// reconciled to Created.
async fn created(store: &Store, runner: &SharedRunner) -> Result<LocalDiskVolume> {
    store
        .all::<LocalDisk>()
        .create(&pool_disk("localdisk-a", "/dev/sdb", 20 * GIB))
        .await?;
    store
        .all::<LocalDisk>()
        .create(&pool_disk("localdisk-b", "/dev/sdc", 10 * GIB))
        .await?;
    store
        .all::<LocalDiskVolume>()
        .create(&volume("pvc-1", 5 * GIB))
        .await?;
    reconcile_volumes(store, runner, NODE).await?;
    let v = get(store, "pvc-1").await?.expect("volume exists");
    Ok(v)
}

#[tokio::test]
async fn creating_volume_gets_the_smallest_fitting_disk() -> Result<()> {
    let store = store();
    let rec = RecordingRunner::new();
    let runner: SharedRunner = Arc::new(rec.clone());
    let v = created(&store, &runner).await?;
    let st = v.status.expect("status");
    assert_eq!(st.state, VolumeState::Created);
    assert_eq!(st.local_disk_name, "localdisk-b");
    assert_eq!(st.dev_path, "/dev/sdc");
    assert_eq!(st.allocated_capacity_bytes, 10 * GIB);
    assert_eq!(
        st.dev_links.get("by-id"),
        Some(&vec!["/dev/disk/by-id/wwn-localdisk-b".to_string()])
    );
    // a second volume cannot take the same disk: it gets the other one
    store
        .all::<LocalDiskVolume>()
        .create(&volume("pvc-2", GIB))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let v2 = get(&store, "pvc-2").await?.expect("pvc-2");
    assert_eq!(v2.status.as_ref().unwrap().local_disk_name, "localdisk-a");
    assert_eq!(v2.status.as_ref().unwrap().state, VolumeState::Created);
    // a third finds nothing: it stays Creating with the reason recorded
    store
        .all::<LocalDiskVolume>()
        .create(&volume("pvc-3", GIB))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let v3 = get(&store, "pvc-3").await?.expect("pvc-3");
    assert_ne!(
        v3.status.as_ref().map(|s| s.state),
        Some(VolumeState::Created)
    );
    assert!(
        v3.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_VOLUME_PROBLEM))
            .is_some_and(|p| p.contains("no free")),
        "{:?}",
        v3.metadata.annotations
    );
    assert!(rec.command_lines().is_empty(), "{:?}", rec.command_lines());
    Ok(())
}

#[tokio::test]
async fn a_named_disk_holding_data_is_refused() -> Result<()> {
    let store = store();
    let rec = RecordingRunner::new();
    let runner: SharedRunner = Arc::new(rec.clone());
    let mut d = pool_disk("localdisk-a", "/dev/sdb", 20 * GIB);
    d.spec.partitioned = true;
    store.all::<LocalDisk>().create(&d).await?;
    store
        .all::<LocalDiskVolume>()
        .create(&volume("pvc-1", GIB))
        .await?;
    store
        .all::<LocalDiskVolume>()
        .patch_status(
            "pvc-1",
            &json!({"status": {"state": "Creating", "localDiskName": "localdisk-a"}}),
        )
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let v = get(&store, "pvc-1").await?.expect("pvc-1");
    assert_eq!(v.status.as_ref().unwrap().state, VolumeState::Creating);
    assert!(v.status.as_ref().unwrap().dev_path.is_empty());
    let problem = v.metadata.annotations.unwrap()[ANNOTATION_VOLUME_PROBLEM].clone();
    assert!(problem.contains("holds data"), "{problem}");
    Ok(())
}

#[tokio::test]
async fn deletion_with_can_wipe_wipes_exactly_once_and_removes_the_object() -> Result<()> {
    let store = store();
    let rec = RecordingRunner::new();
    rec.respond(&["wipefs", "-a", "/dev/sdc"], Output::ok(""));
    let runner: SharedRunner = Arc::new(rec.clone());
    created(&store, &runner).await?;
    let ldvs = store.all::<LocalDiskVolume>();
    ldvs.patch("pvc-1", &json!({"spec": {"canWipe": true}}))
        .await?;
    // still mounted: nothing happens
    ldvs.patch_status(
        "pvc-1",
        &json!({"status": {"state": "ToBeDeleted", "mountPoints": [{"targetPath": "/mnt/x", "phase": "Mounted"}]}}),
    )
    .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert!(get(&store, "pvc-1").await?.is_some());
    assert!(rec.command_lines().is_empty(), "{:?}", rec.command_lines());
    // unmounted: wiped, released, gone
    ldvs.patch_status("pvc-1", &json!({"status": {"mountPoints": null}}))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert_eq!(rec.command_lines(), vec!["wipefs -a /dev/sdc".to_string()]);
    assert!(get(&store, "pvc-1").await?.is_none());
    reconcile_volumes(&store, &runner, NODE).await?;
    assert_eq!(rec.command_lines().len(), 1);
    Ok(())
}

#[tokio::test]
async fn deletion_without_can_wipe_never_wipes() -> Result<()> {
    let store = store();
    let rec = RecordingRunner::new();
    rec.respond(&["wipefs", "-a", "/dev/sdc"], Output::ok(""));
    let runner: SharedRunner = Arc::new(rec.clone());
    created(&store, &runner).await?;
    store
        .all::<LocalDiskVolume>()
        .patch_status("pvc-1", &json!({"status": {"state": "ToBeDeleted"}}))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert!(get(&store, "pvc-1").await?.is_none());
    assert!(rec.command_lines().is_empty(), "{:?}", rec.command_lines());
    // the disk is free again: a new volume can take it
    store
        .all::<LocalDiskVolume>()
        .create(&volume("pvc-9", 5 * GIB))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let v = get(&store, "pvc-9").await?.expect("pvc-9");
    assert_eq!(v.status.unwrap().local_disk_name, "localdisk-b");
    Ok(())
}

/// Mark `disk` the way discovery does once it has seen our filesystem on it.
async fn flag_filesystem(store: &Store, disk: &str) -> Result<()> {
    store
        .all::<LocalDisk>()
        .patch(
            disk,
            &json!({
                "metadata": {"annotations": {ANNOTATION_HAZARDS: "carries a xfs filesystem"}},
                "spec": {"partitioned": true},
            }),
        )
        .await?;
    Ok(())
}

fn exit(code: i32, stdout: &str) -> Output {
    Output {
        code: Some(code),
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

#[tokio::test]
async fn a_wiped_disk_found_blank_is_offered_again_at_once() -> Result<()> {
    let store = store();
    let rec = RecordingRunner::new();
    rec.respond(&["wipefs", "-a", "/dev/sdc"], Output::ok(""));
    // blkid -p: exit code 2 = no signature found
    rec.respond(&["blkid", "-p", "/dev/sdc"], exit(2, ""));
    let runner: SharedRunner = Arc::new(rec.clone());
    created(&store, &runner).await?;
    flag_filesystem(&store, "localdisk-b").await?;
    let ldvs = store.all::<LocalDiskVolume>();
    ldvs.patch("pvc-1", &json!({"spec": {"canWipe": true}}))
        .await?;
    ldvs.patch_status("pvc-1", &json!({"status": {"state": "ToBeDeleted"}}))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert_eq!(
        rec.command_lines(),
        vec!["wipefs -a /dev/sdc".to_string(), "blkid -p /dev/sdc".into()]
    );
    assert!(get(&store, "pvc-1").await?.is_none());
    let d = store.all::<LocalDisk>().get("localdisk-b").await?;
    assert!(!d.spec.partitioned);
    assert_eq!(
        d.metadata.annotations.unwrap()[ANNOTATION_HAZARDS],
        "",
        "hazards cleared"
    );
    // the smallest fitting disk again
    ldvs.create(&volume("pvc-2", 5 * GIB)).await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let v = get(&store, "pvc-2").await?.expect("pvc-2");
    assert_eq!(v.status.unwrap().local_disk_name, "localdisk-b");
    Ok(())
}

#[tokio::test]
async fn a_wiped_disk_still_showing_a_signature_stays_flagged() -> Result<()> {
    let store = store();
    let rec = RecordingRunner::new();
    rec.respond(&["wipefs", "-a", "/dev/sdc"], Output::ok(""));
    rec.respond(
        &["blkid", "-p", "/dev/sdc"],
        exit(0, "/dev/sdc: TYPE=\"xfs\"\n"),
    );
    let runner: SharedRunner = Arc::new(rec.clone());
    created(&store, &runner).await?;
    flag_filesystem(&store, "localdisk-b").await?;
    let ldvs = store.all::<LocalDiskVolume>();
    ldvs.patch("pvc-1", &json!({"spec": {"canWipe": true}}))
        .await?;
    ldvs.patch_status("pvc-1", &json!({"status": {"state": "ToBeDeleted"}}))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert!(get(&store, "pvc-1").await?.is_none(), "released anyway");
    let d = store.all::<LocalDisk>().get("localdisk-b").await?;
    assert!(d.spec.partitioned, "discovery's record kept");
    // the flagged disk is not handed out: the next volume gets the other one
    ldvs.create(&volume("pvc-2", 5 * GIB)).await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let v = get(&store, "pvc-2").await?.expect("pvc-2");
    assert_eq!(v.status.unwrap().local_disk_name, "localdisk-a");
    Ok(())
}

#[tokio::test]
async fn a_block_volume_disk_we_did_not_format_is_neither_wiped_nor_probed() -> Result<()> {
    let store = store();
    let rec = RecordingRunner::new();
    let runner: SharedRunner = Arc::new(rec.clone());
    created(&store, &runner).await?;
    // the user made a filesystem on the raw block device; discovery saw it
    flag_filesystem(&store, "localdisk-b").await?;
    let ldvs = store.all::<LocalDiskVolume>();
    ldvs.patch_status("pvc-1", &json!({"status": {"state": "ToBeDeleted"}}))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert!(get(&store, "pvc-1").await?.is_none());
    assert!(rec.command_lines().is_empty(), "{:?}", rec.command_lines());
    let d = store.all::<LocalDisk>().get("localdisk-b").await?;
    assert!(d.spec.partitioned, "the user's data is still recorded");
    Ok(())
}
