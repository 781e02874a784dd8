//! Node side of raw-disk volumes (`disk.hwameistor.io`): every `LocalDiskVolume` whose first
//! accessibility node is this node.
//!
//! - **Creating** (or a fresh object without state or disk): the CSI controller
//!   (`DiskStoreBackend`) names no disk, so the node picks one: the smallest disk of this
//!   node's raw-disk pools (owner `local-disk-manager`, claimed, `Active`, not reserved, no
//!   partitions or signatures, no recorded hazards) of the requested type that is at least
//!   the requested size and not held by another volume. A disk already named in
//!   `status.localDiskName` is verified by the same checks. The volume then records
//!   `localDiskName`, `devPath`, `devLinks` and `allocatedCapacityBytes` (the whole disk) and
//!   becomes `Created`. The pool maths (`hwameistor_core::disk::disk_pools`) count a disk
//!   as `InUse` as soon as a volume names it in `status.localDiskName`; taking a disk writes
//!   nothing to the LocalDisk. If no disk qualifies the volume stays `Creating`, the reason
//!   goes into the annotation [`ANNOTATION_VOLUME_PROBLEM`] (our key; the reference names
//!   no such field) and a warning is logged. The CSI controller reads that annotation as
//!   "no disk fits": it answers CreateVolume with `RESOURCE_EXHAUSTED` at once and asks for
//!   the volume's deletion, so nothing is left behind. (`NotReady` is not used for this: the
//!   CSI backend treats any state past `Creating` as a usable volume.) This covers the
//!   window in which the LocalDiskNode pool report (written every heartbeat) still shows a
//!   disk that a volume has just taken.
//! - **The finalizer** [`FINALIZER_DISK_VOLUME_PROTECTION`] is put on the volume before it
//!   takes a disk (and on any volume found holding a disk without it), so the object cannot
//!   vanish while it holds one: deleting it directly (`kubectl delete ldv`, REST `DELETE`)
//!   only sets its deletion timestamp, and the node then does exactly what it does for a CSI
//!   DeleteVolume (below) before it removes the finalizer.
//! - **ToBeDeleted** (or a deletion timestamp): while `status.mountPoints` lists a
//!   publication nothing is touched; the node says why in the annotation
//!   [`ANNOTATION_DELETE_BLOCKED`] and a Warning Event `DeleteBlocked` (once per change of
//!   the publications). Once `status.mountPoints` is empty, the disk is wiped with `wipefs -a <dev>` only if `spec.canWipe` (the CSI node service formatted
//!   it) and the disk is still this node's active disk; the disk is released
//!   (`localDiskName`/`devPath` cleared, state `Deleted`), our finalizer is removed and the
//!   object deleted. `Deleted` means "wiped and released": a retry never wipes again.
//!   After a wipe, `blkid -p` confirms the disk is blank and discovery's record of our
//!   filesystem on it (`spec.partitioned`, hazards) is cleared, so the disk is offered
//!   again at once. A disk we did not format (a block volume, `canWipe` false) is never
//!   wiped: whatever the user wrote stays, and a disk left with a signature is not handed
//!   out again until an admin wipes it (discovery flags it on its next re-probe).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hwameistor_api::consts::FINALIZER_DISK_VOLUME_PROTECTION;
use hwameistor_api::types::{DiskOwner, DiskType, LocalDiskState, VolumeState};
use hwameistor_api::{LocalDisk, LocalDiskVolume};
use hwameistor_exec::{Cmd, SharedRunner};
use hwameistor_store::{Objects, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{ANNOTATION_HAZARDS, Error, Result, StoreCtx};
use crate::event::{Source, object_ref, record_event};

/// LocalDiskVolume annotation: why the node cannot give the volume a disk (removed once it
/// has one).
pub const ANNOTATION_VOLUME_PROBLEM: &str = "disk.hwameistor.io/volume-problem";
/// LocalDiskVolume annotation: why a requested deletion waits (the volume is still
/// published); also reported as a Warning Event with reason [`REASON_DELETE_BLOCKED`].
pub const ANNOTATION_DELETE_BLOCKED: &str = "disk.hwameistor.io/delete-blocked";
/// Event reason of a deletion that waits for the volume's publications to go.
pub const REASON_DELETE_BLOCKED: &str = "DeleteBlocked";

/// Run [`reconcile_volumes`] every `interval` until `shutdown`.
pub async fn run_volume_loop(
    store: Store,
    runner: SharedRunner,
    node: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = reconcile_volumes(&store, &runner, &node).await {
                    tracing::warn!(error = %e, reason = e.reason(), "raw-disk volume pass failed; will retry");
                }
            }
        }
    }
}

fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

fn state_of(v: &LocalDiskVolume) -> VolumeState {
    v.status.as_ref().map(|s| s.state).unwrap_or_default()
}

fn finalizers(v: &LocalDiskVolume) -> &[String] {
    v.metadata.finalizers.as_deref().unwrap_or_default()
}

fn annotation<'a>(v: &'a LocalDiskVolume, key: &str) -> Option<&'a String> {
    v.metadata.annotations.as_ref().and_then(|a| a.get(key))
}

fn store_err(op: &'static str, name: &str, source: hwameistor_store::Error) -> Error {
    Error::Store {
        op,
        kind: "LocalDiskVolume",
        name: name.to_owned(),
        source,
    }
}

/// Put our finalizer on `v` (a merge patch of the whole list: ours appended to what is
/// there); returns the object as written.
async fn add_finalizer(
    lds: &Objects<LocalDiskVolume>,
    v: &LocalDiskVolume,
) -> Result<LocalDiskVolume> {
    let mut list = finalizers(v).to_vec();
    list.push(FINALIZER_DISK_VOLUME_PROTECTION.to_owned());
    lds.patch(&name_of(v), &json!({"metadata": {"finalizers": list}}))
        .await
        .ctx("add finalizer", "LocalDiskVolume", &name_of(v))
}

/// One pass over this node's LocalDiskVolumes. Returns the first error after trying all.
pub async fn reconcile_volumes(store: &Store, runner: &SharedRunner, node: &str) -> Result<()> {
    let volumes = store
        .all::<LocalDiskVolume>()
        .list(&Default::default())
        .await
        .ctx("list", "LocalDiskVolume", "*")?
        .items;
    let disks: HashMap<String, LocalDisk> = store
        .all::<LocalDisk>()
        .list(&Default::default())
        .await
        .ctx("list", "LocalDisk", "*")?
        .items
        .into_iter()
        .map(|d| (name_of(&d), d))
        .collect();
    let mut first_err = None;
    for v in &volumes {
        if v.spec.accessibility.nodes.first().map(String::as_str) != Some(node) {
            continue;
        }
        let st = v.status.clone().unwrap_or_default();
        let deleting = matches!(st.state, VolumeState::ToBeDeleted | VolumeState::Deleted)
            || v.metadata.deletion_timestamp.is_some();
        let creating = st.state == VolumeState::Creating
            || (st.state == VolumeState::Unknown
                && st.local_disk_name.is_empty()
                && st.dev_path.is_empty()
                && st.mount_points.is_empty());
        let res = if deleting {
            delete_volume(store, runner, node, v, &disks).await
        } else if creating {
            create_volume(store, node, v, &volumes, &disks).await
        } else if !st.local_disk_name.is_empty()
            && !finalizers(v)
                .iter()
                .any(|f| f == FINALIZER_DISK_VOLUME_PROTECTION)
        {
            // a volume that took its disk before we had the finalizer, or written by hand
            add_finalizer(&store.all(), v).await.map(drop)
        } else {
            Ok(())
        };
        if let Err(e) = res {
            tracing::warn!(volume = %name_of(v), error = %e, "raw-disk volume reconcile failed");
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Why `ld` cannot hold volume `v` on `node`; `None` if it can. `held_by`: volume holding
/// each disk.
fn disk_problem(
    ld: &LocalDisk,
    node: &str,
    v: &LocalDiskVolume,
    held_by: &HashMap<String, String>,
) -> Option<String> {
    let name = name_of(ld);
    if ld.spec.node_name != node {
        return Some(format!("disk {name} is not on node {node}"));
    }
    if ld.spec.state != Some(LocalDiskState::Active) {
        return Some(format!("disk {name} is not Active"));
    }
    if ld.spec.owner != DiskOwner::LocalDiskManager || ld.spec.claim_ref.is_none() {
        return Some(format!(
            "disk {name} is not in a raw-disk pool (owner local-disk-manager, claimed)"
        ));
    }
    if ld.spec.reserved {
        return Some(format!("disk {name} is reserved"));
    }
    if ld.spec.partitioned || !ld.spec.partition_info.is_empty() {
        return Some(format!(
            "disk {name} holds data (partitions or a signature)"
        ));
    }
    if let Some(h) = ld
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_HAZARDS))
        .filter(|h| !h.is_empty())
    {
        return Some(format!("disk {name} holds data: {h}"));
    }
    if ld.spec.device_path.is_empty() {
        return Some(format!("disk {name} has no device path"));
    }
    if let Some(t) = v.spec.disk_type.filter(|t| *t != DiskType::Unknown)
        && ld.disk_type() != t
    {
        return Some(format!("disk {name} is {:?}, not {t:?}", ld.disk_type()));
    }
    if ld.spec.capacity < v.spec.required_capacity_bytes {
        return Some(format!(
            "disk {name} has {} bytes, {} required",
            ld.spec.capacity, v.spec.required_capacity_bytes
        ));
    }
    if let Some(other) = held_by.get(&name)
        && *other != name_of(v)
    {
        return Some(format!("disk {name} is in use by volume {other}"));
    }
    None
}

async fn create_volume(
    store: &Store,
    node: &str,
    v: &LocalDiskVolume,
    all: &[LocalDiskVolume],
    disks: &HashMap<String, LocalDisk>,
) -> Result<()> {
    let vname = name_of(v);
    let held_by: HashMap<String, String> = all
        .iter()
        .filter(|o| state_of(o) != VolumeState::Deleted)
        .filter_map(|o| {
            let d = &o.status.as_ref()?.local_disk_name;
            (!d.is_empty()).then(|| (d.clone(), name_of(o)))
        })
        .collect();
    let named = v
        .status
        .as_ref()
        .map(|s| s.local_disk_name.clone())
        .unwrap_or_default();
    let chosen: std::result::Result<&LocalDisk, String> = if !named.is_empty() {
        match disks.get(&named) {
            None => Err(format!("disk {named} does not exist")),
            Some(ld) => match disk_problem(ld, node, v, &held_by) {
                None => Ok(ld),
                Some(p) => Err(p),
            },
        }
    } else {
        let mut fits: Vec<&LocalDisk> = disks
            .values()
            .filter(|ld| disk_problem(ld, node, v, &held_by).is_none())
            .collect();
        fits.sort_by(|a, b| {
            a.spec
                .capacity
                .cmp(&b.spec.capacity)
                .then_with(|| name_of(*a).cmp(&name_of(*b)))
        });
        fits.first().copied().ok_or_else(|| {
            format!(
                "no free {} disk of at least {} bytes in this node's raw-disk pools",
                v.spec
                    .disk_type
                    .map(|t| format!("{t:?}"))
                    .unwrap_or_else(|| "raw".into()),
                v.spec.required_capacity_bytes
            )
        })
    };
    let lds = store.all::<LocalDiskVolume>();
    let ld = match chosen {
        Ok(ld) => ld,
        Err(problem) => {
            tracing::warn!(volume = %vname, node, problem = %problem, "raw-disk volume cannot get a disk");
            let old = v
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_VOLUME_PROBLEM));
            if old != Some(&problem) {
                lds.patch(
                    &vname,
                    &json!({"metadata": {"annotations": {ANNOTATION_VOLUME_PROBLEM: problem}}}),
                )
                .await
                .ctx("annotate", "LocalDiskVolume", &vname)?;
            }
            return Ok(());
        }
    };
    let dname = name_of(ld);
    let mut dev_links: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &ld.spec.dev_links {
        for (prefix, key) in [
            ("/dev/disk/by-id/", "by-id"),
            ("/dev/disk/by-path/", "by-path"),
            ("/dev/disk/by-uuid/", "by-uuid"),
        ] {
            if l.starts_with(prefix) {
                dev_links.entry(key.to_owned()).or_default().push(l.clone());
            }
        }
    }
    // the finalizer first: from the moment a volume names a disk, a direct delete of the
    // object must wait for the node to release (and maybe wipe) that disk
    let mut new = if finalizers(v)
        .iter()
        .any(|f| f == FINALIZER_DISK_VOLUME_PROTECTION)
    {
        v.clone()
    } else {
        let written = add_finalizer(&lds, v).await?;
        if written.metadata.deletion_timestamp.is_some() || state_of(&written) != state_of(v) {
            return Ok(()); // changed meanwhile (a deletion request): the next pass decides
        }
        written
    };
    let st = new.status.get_or_insert_with(Default::default);
    st.local_disk_name = dname.clone();
    st.dev_path = ld.spec.device_path.clone();
    st.dev_links = dev_links;
    st.allocated_capacity_bytes = ld.spec.capacity;
    st.state = VolumeState::Created;
    // optimistic concurrency: a deletion request written meanwhile must not be overwritten
    match lds.replace_status(&new).await {
        Ok(_) => {}
        Err(e) if e.is_conflict() => return Ok(()),
        Err(source) => {
            return Err(store_err("update status", &vname, source));
        }
    }
    if v.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_VOLUME_PROBLEM))
    {
        lds.patch(
            &vname,
            &json!({"metadata": {"annotations": {ANNOTATION_VOLUME_PROBLEM: null}}}),
        )
        .await
        .ctx("annotate", "LocalDiskVolume", &vname)?;
    }
    tracing::info!(volume = %vname, disk = %dname, device = %ld.spec.device_path, "raw-disk volume Created");
    Ok(())
}

/// After a successful `wipefs -a` (which opens the disk exclusively, so nothing had it
/// mounted or held), probe the disk with `blkid -p`; when it finds no signature (exit code
/// 2) and the disk has no partitions, clear what discovery recorded about our filesystem
/// (`spec.partitioned`, the hazards annotation), so the disk can serve the next volume at
/// once instead of after the next full re-probe (`rescan_interval`). Best effort: a failed
/// probe or write leaves the record for discovery to correct.
async fn forget_wiped_signatures(store: &Store, runner: &SharedRunner, ld: &LocalDisk, dev: &str) {
    let dname = name_of(ld);
    let flagged = ld.spec.partitioned
        || ld
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_HAZARDS))
            .is_some_and(|h| !h.is_empty());
    if !flagged || !ld.spec.partition_info.is_empty() {
        return;
    }
    match runner.output(&Cmd::new("blkid").args(["-p", dev])).await {
        Ok(out) if out.code == Some(2) => {}
        Ok(out) => {
            tracing::warn!(disk = %dname, device = dev, code = ?out.code, stdout = %out.stdout.trim(), "disk still shows a signature after wipefs; left for discovery");
            return;
        }
        Err(e) => {
            tracing::warn!(disk = %dname, device = dev, error = %e, "cannot probe the wiped disk; left for discovery");
            return;
        }
    }
    let patch = json!({
        "metadata": {"annotations": {ANNOTATION_HAZARDS: ""}},
        "spec": {"partitioned": false},
    });
    match store.all::<LocalDisk>().patch(&dname, &patch).await {
        Ok(_) => tracing::info!(disk = %dname, device = dev, "wiped disk is clean again"),
        Err(e) => {
            tracing::warn!(disk = %dname, error = %e, "cannot record the wiped disk as clean")
        }
    }
}

async fn delete_volume(
    store: &Store,
    runner: &SharedRunner,
    node: &str,
    v: &LocalDiskVolume,
    disks: &HashMap<String, LocalDisk>,
) -> Result<()> {
    let vname = name_of(v);
    let st = v.status.clone().unwrap_or_default();
    let lds = store.all::<LocalDiskVolume>();
    if !st.mount_points.is_empty() {
        return delete_blocked(store, node, v, &st.mount_points).await;
    }
    if st.state != VolumeState::Deleted {
        if v.spec.can_wipe && !st.local_disk_name.is_empty() {
            // wipe the disk by identity: its current device path, only while it is ours
            match disks.get(&st.local_disk_name) {
                Some(ld)
                    if ld.spec.node_name == node
                        && ld.spec.state == Some(LocalDiskState::Active)
                        && ld.spec.device_path.starts_with("/dev/")
                        && !ld.spec.device_path.contains("..") =>
                {
                    let dev = ld.spec.device_path.clone();
                    runner
                        .run(&Cmd::new("wipefs").args(["-a", dev.as_str()]))
                        .await
                        .map_err(|e| Error::Invalid {
                            kind: "LocalDiskVolume",
                            name: vname.clone(),
                            reason: format!("wipefs -a {dev}: {e}"),
                        })?;
                    tracing::info!(volume = %vname, disk = %st.local_disk_name, device = %dev, "raw disk wiped");
                    forget_wiped_signatures(store, runner, ld, &dev).await;
                }
                _ => tracing::warn!(
                    volume = %vname,
                    disk = %st.local_disk_name,
                    "disk is not an active disk of this node; not wiped"
                ),
            }
        }
        // release: the pool maths count the disk free once no volume names it
        let mut new = v.clone();
        let s = new.status.get_or_insert_with(Default::default);
        s.local_disk_name.clear();
        s.dev_path.clear();
        s.dev_links.clear();
        s.state = VolumeState::Deleted;
        match lds.replace_status(&new).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => return Ok(()),
            Err(source) if source.is_not_found() => return Ok(()),
            Err(source) => {
                return Err(store_err("update status", &vname, source));
            }
        }
    }
    if finalizers(v)
        .iter()
        .any(|f| f == FINALIZER_DISK_VOLUME_PROTECTION)
    {
        let rest: Vec<&String> = finalizers(v)
            .iter()
            .filter(|f| *f != FINALIZER_DISK_VOLUME_PROTECTION)
            .collect();
        let rest = if rest.is_empty() {
            serde_json::Value::Null
        } else {
            json!(rest)
        };
        match lds
            .patch(&vname, &json!({"metadata": {"finalizers": rest}}))
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(source) => return Err(store_err("remove finalizer", &vname, source)),
        }
    }
    match lds.delete(&vname).await {
        Ok(_) => tracing::info!(volume = %vname, "raw-disk volume deleted"),
        Err(e) if e.is_not_found() => {}
        Err(source) => {
            return Err(store_err("delete", &vname, source));
        }
    }
    Ok(())
}

/// A deletion was asked for (CSI DeleteVolume or a direct delete) while the volume is still
/// published: touch nothing, say why in [`ANNOTATION_DELETE_BLOCKED`] and a Warning Event
/// (both only when the publications change, so a waiting volume does not flood events).
async fn delete_blocked(
    store: &Store,
    node: &str,
    v: &LocalDiskVolume,
    mounts: &[hwameistor_api::MountPoint],
) -> Result<()> {
    let vname = name_of(v);
    let targets: Vec<&str> = mounts.iter().map(|m| m.target_path.as_str()).collect();
    let message = format!(
        "deletion waits: the volume is still published at {}; unpublish it (NodeUnpublishVolume, \
         hwameictl volume unmount) and the disk is released",
        targets.join(", ")
    );
    tracing::debug!(volume = %vname, mounts = mounts.len(), "raw-disk volume still mounted; deletion waits");
    if annotation(v, ANNOTATION_DELETE_BLOCKED) == Some(&message) {
        return Ok(());
    }
    match store
        .all::<LocalDiskVolume>()
        .patch(
            &vname,
            &json!({"metadata": {"annotations": {ANNOTATION_DELETE_BLOCKED: message}}}),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(()),
        Err(source) => return Err(store_err("annotate", &vname, source)),
    }
    tracing::warn!(volume = %vname, %message, "raw-disk volume deletion blocked");
    let source = Source {
        component: "local-disk-manager",
        host: Some(node),
    };
    record_event(
        store,
        object_ref(v),
        source,
        "Warning",
        REASON_DELETE_BLOCKED,
        &message,
    )
    .await;
    Ok(())
}
