//! Tier 0: the node-side LocalDiskVolume reconciler over an in-memory EmbeddedStore with a
//! RecordingRunner: a disk is assigned on create (under our finalizer), wiped (only when
//! allowed) and released on delete, whether the deletion comes the CSI way (`ToBeDeleted`)
//! or as a direct delete of the object; a published volume is never touched.

use std::sync::Arc;

use anyhow::Result;
use hwameistor_api::consts::FINALIZER_DISK_VOLUME_PROTECTION;
use hwameistor_api::types::{DiskOwner, DiskType, LocalDiskState, VolumeState};
use hwameistor_api::{
    DiskAttributes, LocalDisk, LocalDiskSpec, LocalDiskVolume, LocalDiskVolumeSpec,
    VolumeAccessibility,
};
use hwameistor_controllers::disk::ANNOTATION_HAZARDS;
use hwameistor_controllers::disk::volume::{
    ANNOTATION_DELETE_BLOCKED, ANNOTATION_VOLUME_PROBLEM, REASON_DELETE_BLOCKED, reconcile_volumes,
};
use hwameistor_controllers::event::EVENT_NAMESPACE;
use hwameistor_exec::{Output, RecordingRunner, SharedRunner};
use hwameistor_store::{Deletion, EmbeddedStore, Store};
use k8s_openapi::api::core::v1::{Event, ObjectReference};
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

/// A RecordingRunner answering each `(argv, output)`, and the same runner shared.
fn recording(responses: &[(&[&str], Output)]) -> (RecordingRunner, SharedRunner) {
    let rec = RecordingRunner::new();
    for (argv, out) in responses {
        rec.respond(argv, out.clone());
    }
    let runner: SharedRunner = Arc::new(rec.clone());
    (rec, runner)
}

fn has_our_finalizer(v: &LocalDiskVolume) -> bool {
    v.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER_DISK_VOLUME_PROTECTION)
}

/// The disk `volume` holds (empty once released).
async fn disk_of(store: &Store, volume: &str) -> Result<String> {
    let v = get(store, volume).await?.expect("volume exists");
    Ok(v.status.unwrap_or_default().local_disk_name)
}

const WIPE: &[&str] = &["wipefs", "-a", "/dev/sdc"];

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
    let (rec, runner) = recording(&[]);
    let v = created(&store, &runner).await?;
    assert!(has_our_finalizer(&v), "{:?}", v.metadata.finalizers);
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
    let (_, runner) = recording(&[]);
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
    let (rec, runner) = recording(&[(WIPE, Output::ok(""))]);
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
    let (rec, runner) = recording(&[(WIPE, Output::ok(""))]);
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

/// pvc-1 Created on localdisk-b, which discovery saw carrying the filesystem we made
/// (`canWipe`); then DeleteVolume's request (`ToBeDeleted`), reconciled.
async fn delete_formatted(store: &Store, runner: &SharedRunner) -> Result<()> {
    created(store, runner).await?;
    flag_filesystem(store, "localdisk-b").await?;
    let ldvs = store.all::<LocalDiskVolume>();
    ldvs.patch("pvc-1", &json!({"spec": {"canWipe": true}}))
        .await?;
    ldvs.patch_status("pvc-1", &json!({"status": {"state": "ToBeDeleted"}}))
        .await?;
    reconcile_volumes(store, runner, NODE).await?;
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
    // blkid -p: exit code 2 = no signature found
    let (rec, runner) = recording(&[
        (WIPE, Output::ok("")),
        (&["blkid", "-p", "/dev/sdc"], exit(2, "")),
    ]);
    delete_formatted(&store, &runner).await?;
    let ldvs = store.all::<LocalDiskVolume>();
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
    let (_, runner) = recording(&[
        (WIPE, Output::ok("")),
        (
            &["blkid", "-p", "/dev/sdc"],
            exit(0, "/dev/sdc: TYPE=\"xfs\"\n"),
        ),
    ]);
    delete_formatted(&store, &runner).await?;
    let ldvs = store.all::<LocalDiskVolume>();
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
    let (rec, runner) = recording(&[]);
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

/// The Events recorded about `volume` with `reason`: (type, count, message).
async fn events(store: &Store, volume: &str, reason: &str) -> Result<Vec<(String, i32, String)>> {
    Ok(store
        .namespaced::<Event>(EVENT_NAMESPACE)
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(volume)
                && e.involved_object.kind.as_deref() == Some("LocalDiskVolume")
                && e.reason.as_deref() == Some(reason)
        })
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.count.unwrap_or_default(),
                e.message.unwrap_or_default(),
            )
        })
        .collect())
}

#[tokio::test]
async fn direct_delete_of_a_published_volume_waits_then_wipes_and_releases() -> Result<()> {
    let store = store();
    let (rec, runner) = recording(&[(WIPE, Output::ok(""))]);
    created(&store, &runner).await?;
    let ldvs = store.all::<LocalDiskVolume>();
    ldvs.patch("pvc-1", &json!({"spec": {"canWipe": true}}))
        .await?;
    ldvs.patch_status(
        "pvc-1",
        &json!({"status": {"mountPoints": [{"targetPath": "/mnt/x", "phase": "Mounted"}]}}),
    )
    .await?;
    // `kubectl delete ldv pvc-1`: our finalizer holds the object
    assert!(matches!(
        ldvs.delete("pvc-1").await?,
        Deletion::Finalizing(_)
    ));
    for _ in 0..3 {
        reconcile_volumes(&store, &runner, NODE).await?;
    }
    let v = get(&store, "pvc-1").await?.expect("held by the finalizer");
    assert!(v.metadata.deletion_timestamp.is_some());
    assert!(has_our_finalizer(&v));
    assert!(rec.command_lines().is_empty(), "{:?}", rec.command_lines());
    assert_eq!(
        disk_of(&store, "pvc-1").await?,
        "localdisk-b",
        "not released"
    );
    let why = v.metadata.annotations.as_ref().unwrap()[ANNOTATION_DELETE_BLOCKED].clone();
    assert!(why.contains("still published at /mnt/x"), "{why}");
    // one Warning Event, not one per pass
    let evs = events(&store, "pvc-1", REASON_DELETE_BLOCKED).await?;
    assert_eq!(evs.len(), 1, "{evs:?}");
    assert_eq!((evs[0].0.as_str(), evs[0].1), ("Warning", 1), "{evs:?}");
    assert_eq!(evs[0].2, why);
    // a second publication changes the reason: the Event is bumped
    ldvs.patch_status(
        "pvc-1",
        &json!({"status": {"mountPoints": [
            {"targetPath": "/mnt/x", "phase": "Mounted"},
            {"targetPath": "/mnt/y", "phase": "Mounted"}]}}),
    )
    .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let evs = events(&store, "pvc-1", REASON_DELETE_BLOCKED).await?;
    assert_eq!(evs[0].1, 2, "{evs:?}");
    assert!(evs[0].2.contains("/mnt/x, /mnt/y"), "{evs:?}");
    // unpublished: wiped once (we formatted it), released, the finalizer gone with the object
    ldvs.patch_status("pvc-1", &json!({"status": {"mountPoints": null}}))
        .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert_eq!(rec.command_lines(), vec!["wipefs -a /dev/sdc".to_string()]);
    assert!(get(&store, "pvc-1").await?.is_none());
    reconcile_volumes(&store, &runner, NODE).await?;
    assert_eq!(rec.command_lines().len(), 1, "wiped exactly once");
    // the disk serves the next volume
    ldvs.create(&volume("pvc-2", 5 * GIB)).await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert_eq!(disk_of(&store, "pvc-2").await?, "localdisk-b");
    Ok(())
}

#[tokio::test]
async fn direct_delete_never_wipes_a_disk_we_did_not_format() -> Result<()> {
    let store = store();
    let (rec, runner) = recording(&[]);
    created(&store, &runner).await?;
    // a block volume: the user made their own filesystem on the device; discovery saw it
    flag_filesystem(&store, "localdisk-b").await?;
    let ldvs = store.all::<LocalDiskVolume>();
    assert!(matches!(
        ldvs.delete("pvc-1").await?,
        Deletion::Finalizing(_)
    ));
    reconcile_volumes(&store, &runner, NODE).await?;
    assert!(get(&store, "pvc-1").await?.is_none(), "released and gone");
    assert!(rec.command_lines().is_empty(), "{:?}", rec.command_lines());
    let d = store.all::<LocalDisk>().get("localdisk-b").await?;
    assert!(d.spec.partitioned, "the user's data is still recorded");
    // ... so the disk is not handed out again: the next volume gets the other one
    ldvs.create(&volume("pvc-2", 5 * GIB)).await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    assert_eq!(disk_of(&store, "pvc-2").await?, "localdisk-a");
    Ok(())
}

#[tokio::test]
async fn a_volume_holding_a_disk_gets_the_finalizer_and_others_finalizers_are_kept() -> Result<()> {
    let store = store();
    let (rec, runner) = recording(&[]);
    store
        .all::<LocalDisk>()
        .create(&pool_disk("localdisk-a", "/dev/sdb", 20 * GIB))
        .await?;
    // written by hand (or before the finalizer existed): Created, a disk, someone else's
    // finalizer, none of ours
    let mut v = volume("pvc-1", GIB);
    v.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let ldvs = store.all::<LocalDiskVolume>();
    ldvs.create(&v).await?;
    ldvs.patch_status(
        "pvc-1",
        &json!({"status": {"state": "Created", "localDiskName": "localdisk-a", "devPath": "/dev/sdb"}}),
    )
    .await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let v = get(&store, "pvc-1").await?.unwrap();
    assert_eq!(
        v.metadata.finalizers.as_deref().unwrap_or_default(),
        ["example.com/keep", FINALIZER_DISK_VOLUME_PROTECTION]
    );
    // a direct delete: released, our finalizer removed, the other one left to its owner
    ldvs.delete("pvc-1").await?;
    reconcile_volumes(&store, &runner, NODE).await?;
    let v = get(&store, "pvc-1")
        .await?
        .expect("the other finalizer holds it");
    assert_eq!(
        v.metadata.finalizers.as_deref().unwrap_or_default(),
        ["example.com/keep"]
    );
    let st = v.status.unwrap();
    assert_eq!(st.state, VolumeState::Deleted);
    assert!(st.local_disk_name.is_empty(), "released");
    assert!(rec.command_lines().is_empty(), "{:?}", rec.command_lines());
    Ok(())
}
