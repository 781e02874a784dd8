//! Snapshot operations over the store, for the CLI, the REST API and tests: each writes the
//! desired objects and returns; the reconcilers make them real.

use std::collections::BTreeMap;

use hwameistor_api::consts::SNAPSHOT_RESTORE_PREFIX;
use hwameistor_api::{
    LocalVolume, LocalVolumeSnapshot, LocalVolumeSnapshotRestore, LocalVolumeSnapshotRestoreSpec,
    LocalVolumeSnapshotSpec, LocalVolumeSpec, VolumeAccessibility,
};
use hwameistor_core::names;
use hwameistor_core::snapshot::MIN_SNAPSHOT_BYTES;
use hwameistor_core::types::{RestoreType, VolumeState};
use hwameistor_store::Store;
use kube::api::ObjectMeta;
use serde_json::json;

use super::util::StoreExt;
use super::{Error, Result};

/// Annotation recording where a volume's data came from: `snapshot/<id>` or `volume/<id>`
/// (the same annotation the CSI driver writes).
pub const CONTENT_SOURCE_ANNOTATION: &str = "hwameistor.io/content-source";

/// Name of the restore object that fills a restored or cloned volume.
pub fn restore_name(volume: &str) -> String {
    format!("{SNAPSHOT_RESTORE_PREFIX}{volume}")
}

/// Name of the temporary snapshot a clone is made from.
pub fn clone_snapshot_name(volume: &str) -> String {
    format!("{volume}-clone-source")
}

/// Name of the restore object of a rollback requested through [`rollback_snapshot`].
pub fn rollback_name(snapshot: &str) -> String {
    format!("rollback-{snapshot}")
}

fn invalid(kind: &'static str, name: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        kind,
        name: name.to_owned(),
        reason: reason.into(),
    }
}

fn check_name(kind: &'static str, name: &str) -> Result<()> {
    names::validate("name", name).map_err(|e| invalid(kind, name, e.to_string()))
}

/// Request a snapshot `name` of `volume`. `size`: the COW space (lvm; the VolumeSnapshotClass
/// `snapsize`), default the volume's size; at least 4 MiB.
pub async fn create_snapshot(
    store: &Store,
    name: &str,
    volume: &str,
    size: Option<u64>,
) -> Result<LocalVolumeSnapshot> {
    check_name("LocalVolumeSnapshot", name)?;
    let lv = store
        .all::<LocalVolume>()
        .get(volume)
        .await
        .ctx("get", "LocalVolume", volume)?;
    let size = size.unwrap_or(lv.spec.required_capacity_bytes.max(0) as u64);
    if size < MIN_SNAPSHOT_BYTES {
        return Err(invalid(
            "LocalVolumeSnapshot",
            name,
            format!("size {size} is below the minimum of {MIN_SNAPSHOT_BYTES} bytes"),
        ));
    }
    let snap = LocalVolumeSnapshot {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: LocalVolumeSnapshotSpec {
            source_volume: volume.to_owned(),
            accessibility: lv.spec.accessibility.clone(),
            required_capacity_bytes: size as i64,
            thin: lv.spec.thin,
            delete: false,
        },
        status: None,
    };
    store.all::<LocalVolumeSnapshot>().create(&snap).await.ctx(
        "create",
        "LocalVolumeSnapshot",
        name,
    )
}

/// Ask for the snapshot's deletion (`spec.delete`); the controllers remove it from every node
/// and then the object.
pub async fn delete_snapshot(store: &Store, name: &str) -> Result<()> {
    store
        .all::<LocalVolumeSnapshot>()
        .patch(name, &json!({"spec": {"delete": true}}))
        .await
        .ctx("patch", "LocalVolumeSnapshot", name)
        .map(|_| ())
}

/// A new LocalVolume like `source` (pool, replicas, nodes), of `size` bytes (at least the
/// source's), whose data comes from `content` (`snapshot/<id>` or `volume/<id>`).
fn volume_like(
    source: &LocalVolume,
    new: &str,
    size: Option<u64>,
    content: String,
) -> Result<LocalVolume> {
    let src_size = source.spec.required_capacity_bytes.max(0) as u64;
    let size = size.unwrap_or(src_size);
    if size < src_size {
        return Err(invalid(
            "LocalVolume",
            new,
            format!("size {size} is smaller than the source's {src_size} bytes"),
        ));
    }
    // Snapshot data is local to the source's nodes: the new volume goes to the same nodes.
    let mut nodes: Vec<String> = source
        .spec
        .config
        .iter()
        .flat_map(|c| c.replicas.iter().map(|r| r.hostname.clone()))
        .collect();
    if nodes.is_empty() {
        nodes = source.spec.accessibility.nodes.clone();
    }
    Ok(LocalVolume {
        metadata: ObjectMeta {
            name: Some(new.to_owned()),
            annotations: Some(BTreeMap::from([(
                CONTENT_SOURCE_ANNOTATION.to_owned(),
                content,
            )])),
            ..Default::default()
        },
        spec: LocalVolumeSpec {
            required_capacity_bytes: size as i64,
            volume_qos: source.spec.volume_qos.clone(),
            volume_encrypt: source.spec.volume_encrypt.clone(),
            pool_name: source.spec.pool_name.clone(),
            replica_number: source.spec.replica_number,
            convertible: source.spec.convertible,
            striped: source.spec.striped,
            // A clone or restore of a thin volume is thin, in the same thin pool.
            thin: source.spec.thin,
            accessibility: VolumeAccessibility {
                nodes,
                ..source.spec.accessibility.clone()
            },
            ..Default::default()
        },
        status: None,
    })
}

fn restore_object(
    name: String,
    snapshot: &str,
    target: &str,
    pool: &str,
    kind: RestoreType,
) -> LocalVolumeSnapshotRestore {
    LocalVolumeSnapshotRestore {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        spec: LocalVolumeSnapshotRestoreSpec {
            target_volume: target.to_owned(),
            target_pool_name: pool.to_owned(),
            source_volume_snapshot: snapshot.to_owned(),
            restore_type: kind,
            abort: false,
        },
        status: None,
    }
}

/// Restore `snapshot` into a new volume `new_volume` (`size`: default and minimum the source
/// volume's size): creates the LocalVolume on the snapshot's nodes and the restore
/// `snaprestore-<new_volume>`. Returns the restore's name.
pub async fn restore_snapshot(
    store: &Store,
    snapshot: &str,
    new_volume: &str,
    size: Option<u64>,
) -> Result<String> {
    check_name("LocalVolume", new_volume)?;
    let snap = store.all::<LocalVolumeSnapshot>().get(snapshot).await.ctx(
        "get",
        "LocalVolumeSnapshot",
        snapshot,
    )?;
    if snap.spec.delete {
        return Err(invalid("LocalVolumeSnapshot", snapshot, "being deleted"));
    }
    let source = store
        .all::<LocalVolume>()
        .get(&snap.spec.source_volume)
        .await
        .ctx("get", "LocalVolume", &snap.spec.source_volume)?;
    let lv = volume_like(&source, new_volume, size, format!("snapshot/{snapshot}"))?;
    let pool = lv.spec.pool_name.clone();
    create_or_keep(
        store.all::<LocalVolume>().create(&lv).await,
        "LocalVolume",
        new_volume,
    )?;
    let rname = restore_name(new_volume);
    let r = restore_object(
        rname.clone(),
        snapshot,
        new_volume,
        &pool,
        RestoreType::Create,
    );
    create_or_keep(
        store.all::<LocalVolumeSnapshotRestore>().create(&r).await,
        "LocalVolumeSnapshotRestore",
        &rname,
    )?;
    Ok(rname)
}

/// Roll the snapshot's source volume back to it (the snapshot is consumed). Refused by the
/// controller while the volume is published. Returns the restore's name.
pub async fn rollback_snapshot(store: &Store, snapshot: &str) -> Result<String> {
    let snap = store.all::<LocalVolumeSnapshot>().get(snapshot).await.ctx(
        "get",
        "LocalVolumeSnapshot",
        snapshot,
    )?;
    if snap.state() != VolumeState::Ready {
        return Err(invalid(
            "LocalVolumeSnapshot",
            snapshot,
            format!("not Ready (state {:?})", snap.state().to_string()),
        ));
    }
    let rname = rollback_name(snapshot);
    check_name("LocalVolumeSnapshotRestore", &rname)?;
    let r = restore_object(rname.clone(), snapshot, "", "", RestoreType::Rollback);
    store
        .all::<LocalVolumeSnapshotRestore>()
        .create(&r)
        .await
        .ctx("create", "LocalVolumeSnapshotRestore", &rname)?;
    Ok(rname)
}

/// Clone volume `src` into a new volume `new` of `size` bytes (default and minimum: the
/// source's): a temporary snapshot `<new>-clone-source`, a restore `snaprestore-<new>`; the
/// snapshot is deleted once the restore completed. Returns the restore's name.
pub async fn clone_volume(
    store: &Store,
    src: &str,
    new: &str,
    size: Option<u64>,
) -> Result<String> {
    check_name("LocalVolume", new)?;
    let source = store
        .all::<LocalVolume>()
        .get(src)
        .await
        .ctx("get", "LocalVolume", src)?;
    let lv = volume_like(&source, new, size, format!("volume/{src}"))?;
    let snap = clone_snapshot_name(new);
    check_name("LocalVolumeSnapshot", &snap)?;
    match create_snapshot(store, &snap, src, None).await {
        Ok(_) => {}
        Err(Error::Store { source, .. })
            if matches!(*source, hwameistor_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    let pool = lv.spec.pool_name.clone();
    create_or_keep(
        store.all::<LocalVolume>().create(&lv).await,
        "LocalVolume",
        new,
    )?;
    let rname = restore_name(new);
    let r = restore_object(rname.clone(), &snap, new, &pool, RestoreType::Create);
    create_or_keep(
        store.all::<LocalVolumeSnapshotRestore>().create(&r).await,
        "LocalVolumeSnapshotRestore",
        &rname,
    )?;
    Ok(rname)
}

/// A create that found the object already there is fine (a retried command).
fn create_or_keep<K>(
    res: hwameistor_store::Result<K>,
    kind: &'static str,
    name: &str,
) -> Result<()> {
    match res {
        Ok(_) => Ok(()),
        Err(hwameistor_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e).ctx("create", kind, name),
    }
}
