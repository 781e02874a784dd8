//! Cluster side: LocalVolumeSnapshot → replica snapshots, LocalVolumeSnapshotRestore →
//! per-node restores (see the module docs of [`crate::snapshot`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hwameistor_api::consts::ANNOTATION_SNAPSHOT_RESTORE_COMPLETED;
use hwameistor_api::{
    LocalVolume, LocalVolumeReplica, LocalVolumeReplicaSnapshot, LocalVolumeReplicaSnapshotRestore,
    LocalVolumeReplicaSnapshotRestoreSpec, LocalVolumeReplicaSnapshotSpec, LocalVolumeSnapshot,
    LocalVolumeSnapshotRestore,
};
use hwameistor_core::snapshot::{
    ReplicaRestoreView, ReplicaSnapshotView, RestoreSnapshotView, RestoreSourceReplica,
    RestoreStep, RestoreTargetView, RestoreView, SnapshotStatus, SnapshotStep, SnapshotView,
    SourceReplica, SourceVolumeView, restore_progress, restore_step, snapshot_step,
};
use hwameistor_core::types::{OperationState, ReplicaState, RestoreType};
use hwameistor_store::Store;
use kube::api::ObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Result;
use super::ops::clone_snapshot_name;
use super::util::{
    StoreExt, controller_for, delete_quiet, list_all, name_of, random_suffix, run_controller, secs,
    time_of, touched,
};

const MAX_STEPS: usize = 8;

/// Configuration of the cluster-side snapshot controllers.
#[derive(Debug, Clone)]
pub struct SnapshotClusterConfig {
    /// Re-check delay while waiting for nodes or volumes.
    pub poll_interval: Duration,
    /// Re-check of settled objects without changes.
    pub resync_interval: Duration,
}

impl Default for SnapshotClusterConfig {
    fn default() -> Self {
        SnapshotClusterConfig {
            poll_interval: Duration::from_secs(2),
            resync_interval: Duration::from_secs(60),
        }
    }
}

/// Shared state of the cluster-side snapshot controllers.
#[derive(Debug)]
pub struct SnapshotClusterCtx {
    pub cfg: SnapshotClusterConfig,
    pub store: Store,
}

/// Run the LocalVolumeSnapshot and LocalVolumeSnapshotRestore controllers until `shutdown`.
pub async fn run_snapshot_cluster(
    cfg: SnapshotClusterConfig,
    store: Store,
    shutdown: CancellationToken,
) -> Result<()> {
    let ctx = Arc::new(SnapshotClusterCtx { cfg, store });
    let snapshots = controller_for(ctx.store.all::<LocalVolumeSnapshot>()).watches_stream(
        touched(ctx.store.all::<LocalVolumeReplicaSnapshot>()),
        |r: LocalVolumeReplicaSnapshot| {
            Some(ObjectRef::<LocalVolumeSnapshot>::new(
                &r.spec.volume_snapshot_name,
            ))
        },
    );
    let restores = controller_for(ctx.store.all::<LocalVolumeSnapshotRestore>()).watches_stream(
        touched(ctx.store.all::<LocalVolumeReplicaSnapshotRestore>()),
        |r: LocalVolumeReplicaSnapshotRestore| {
            Some(ObjectRef::<LocalVolumeSnapshotRestore>::new(
                &r.spec.volume_snapshot_restore,
            ))
        },
    );
    tokio::join!(
        run_controller(
            "localvolumesnapshot",
            snapshots,
            reconcile_snapshot,
            ctx.clone(),
            shutdown.clone()
        ),
        run_controller(
            "localvolumesnapshotrestore",
            restores,
            reconcile_restore,
            ctx.clone(),
            shutdown.clone()
        ),
    );
    Ok(())
}

/// A replica whose device exists on its node (HA replicas without replication are
/// `NotReady` but hold their data).
fn has_device(r: &LocalVolumeReplica) -> bool {
    r.status.as_ref().is_some_and(|s| {
        !s.dev_path.is_empty()
            && !matches!(s.state, ReplicaState::ToBeDeleted | ReplicaState::Deleted)
    })
}

fn status_of(s: &LocalVolumeSnapshot) -> SnapshotStatus {
    let st = s.status.clone().unwrap_or_default();
    let attr = st.attr.unwrap_or_default();
    SnapshotStatus {
        state: st.state,
        message: st.message,
        allocated_bytes: st.allocated_capacity_bytes.max(0) as u64,
        creation_time: st.creation_time.as_ref().map(secs),
        merging: attr.merging,
        invalid: attr.invalid,
        replica_snapshots: st.replica_snapshots,
    }
}

/// `attr` as a merge patch value: absent when both flags are false (the seed's table shows
/// blank MERGING/INVALID columns then).
fn attr_patch(merging: bool, invalid: bool) -> Value {
    if !merging && !invalid {
        return Value::Null;
    }
    json!({
        "merging": if merging { json!(true) } else { Value::Null },
        "invalid": if invalid { json!(true) } else { Value::Null },
    })
}

/// Reconcile one LocalVolumeSnapshot.
pub async fn reconcile_snapshot(
    obj: Arc<LocalVolumeSnapshot>,
    ctx: Arc<SnapshotClusterCtx>,
) -> Result<Action> {
    let name = name_of(obj.as_ref());
    let snaps = ctx.store.all::<LocalVolumeSnapshot>();
    let rsnaps = ctx.store.all::<LocalVolumeReplicaSnapshot>();
    for _ in 0..MAX_STEPS {
        let Some(s) = snaps
            .get_opt(&name)
            .await
            .ctx("get", "LocalVolumeSnapshot", &name)?
        else {
            return Ok(Action::await_change());
        };
        let source_name = s.spec.source_volume.clone();
        let source = ctx
            .store
            .all::<LocalVolume>()
            .get_opt(&source_name)
            .await
            .ctx("get", "LocalVolume", &source_name)?;
        let source = match source {
            None => None,
            Some(lv) => {
                let replicas = list_all(&ctx.store.all::<LocalVolumeReplica>()).await?;
                Some(SourceVolumeView {
                    state: lv.status.as_ref().map(|s| s.state).unwrap_or_default(),
                    replicas: replicas
                        .iter()
                        .filter(|r| r.spec.volume_name == source_name && !r.spec.delete)
                        .filter(|r| has_device(r))
                        .map(|r| SourceReplica {
                            name: name_of(r),
                            node: r.spec.node_name.clone(),
                            pool: r.spec.pool_name.clone(),
                        })
                        .collect(),
                })
            }
        };
        let mine: Vec<LocalVolumeReplicaSnapshot> = list_all(&rsnaps)
            .await?
            .into_iter()
            .filter(|r| r.spec.volume_snapshot_name == name)
            .collect();
        let view = SnapshotView {
            state: s.state(),
            delete: s.spec.delete || s.metadata.deletion_timestamp.is_some(),
            source,
            replica_snapshots: mine
                .iter()
                .map(|r| {
                    let st = r.status.clone().unwrap_or_default();
                    let attr = st.attr.unwrap_or_default();
                    ReplicaSnapshotView {
                        name: name_of(r),
                        node: r.spec.node_name.clone(),
                        state: st.state,
                        delete: r.spec.delete,
                        allocated_bytes: st.allocated_capacity_bytes.max(0) as u64,
                        creation_time: st.creation_time.as_ref().map(secs),
                        merging: attr.merging,
                        invalid: attr.invalid,
                        reason: st.reason,
                    }
                })
                .collect(),
        };
        let current = status_of(&s);
        let step = snapshot_step(&view, &current);
        tracing::debug!(snapshot = %name, ?step, "snapshot step");
        match step {
            SnapshotStep::Wait => {
                let settled = matches!(current.state, hwameistor_core::types::VolumeState::Ready)
                    && !view.delete;
                return Ok(Action::requeue(if settled {
                    ctx.cfg.resync_interval
                } else {
                    ctx.cfg.poll_interval
                }));
            }
            SnapshotStep::SetStatus(st) => {
                snaps
                    .patch_status(
                        &name,
                        &json!({"status": {
                            "state": st.state,
                            "message": st.message,
                            "allocatedCapacityBytes": st.allocated_bytes,
                            "creationTime": st.creation_time.map(time_of),
                            "attr": attr_patch(st.merging, st.invalid),
                            "replicaSnapshots": st.replica_snapshots,
                        }}),
                    )
                    .await
                    .ctx("patch status", "LocalVolumeSnapshot", &name)?;
                if st.state != current.state {
                    tracing::info!(snapshot = %name, from = %current.state, to = %st.state, message = %st.message, "snapshot state");
                }
            }
            SnapshotStep::CreateReplicaSnapshots(replicas) => {
                for r in replicas {
                    let rname = format!("{name}-{}", random_suffix());
                    let obj = LocalVolumeReplicaSnapshot {
                        metadata: ObjectMeta {
                            name: Some(rname.clone()),
                            labels: Some(BTreeMap::from([(
                                "hwameistor.io/volume-snapshot".to_owned(),
                                name.clone(),
                            )])),
                            ..Default::default()
                        },
                        spec: LocalVolumeReplicaSnapshotSpec {
                            node_name: r.node.clone(),
                            volume_snapshot_name: name.clone(),
                            source_volume: source_name.clone(),
                            source_volume_replica: r.name.clone(),
                            pool_name: r.pool.clone(),
                            required_capacity_bytes: s.spec.required_capacity_bytes,
                            delete: false,
                        },
                        status: None,
                    };
                    rsnaps.create(&obj).await.ctx(
                        "create",
                        "LocalVolumeReplicaSnapshot",
                        &rname,
                    )?;
                    tracing::info!(snapshot = %name, replica_snapshot = %rname, node = %r.node, "replica snapshot requested");
                }
            }
            SnapshotStep::DeleteReplicaSnapshots(names) => {
                for n in names {
                    match rsnaps.patch(&n, &json!({"spec": {"delete": true}})).await {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e).ctx("patch", "LocalVolumeReplicaSnapshot", &n),
                    }
                }
                return Ok(Action::requeue(ctx.cfg.poll_interval));
            }
            SnapshotStep::Remove => {
                delete_quiet(&snaps, &name).await?;
                tracing::info!(snapshot = %name, "snapshot deleted");
                return Ok(Action::await_change());
            }
        }
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// Reconcile one LocalVolumeSnapshotRestore.
pub async fn reconcile_restore(
    obj: Arc<LocalVolumeSnapshotRestore>,
    ctx: Arc<SnapshotClusterCtx>,
) -> Result<Action> {
    let name = name_of(obj.as_ref());
    let restores = ctx.store.all::<LocalVolumeSnapshotRestore>();
    let rrestores = ctx.store.all::<LocalVolumeReplicaSnapshotRestore>();
    let volumes = ctx.store.all::<LocalVolume>();
    for _ in 0..MAX_STEPS {
        let Some(r) =
            restores
                .get_opt(&name)
                .await
                .ctx("get", "LocalVolumeSnapshotRestore", &name)?
        else {
            // Gone: its per-node parts go with it.
            for rr in list_all(&rrestores).await? {
                if rr.spec.volume_snapshot_restore == name {
                    delete_quiet(&rrestores, &name_of(&rr)).await?;
                }
            }
            return Ok(Action::await_change());
        };
        let status = r.status.clone().unwrap_or_default();
        let snap_name = r.spec.source_volume_snapshot.clone();
        let snap = ctx
            .store
            .all::<LocalVolumeSnapshot>()
            .get_opt(&snap_name)
            .await
            .ctx("get", "LocalVolumeSnapshot", &snap_name)?;
        let snapshot = match &snap {
            None => None,
            Some(s) => {
                let rsnaps = list_all(&ctx.store.all::<LocalVolumeReplicaSnapshot>()).await?;
                let source_bytes = match volumes.get_opt(&s.spec.source_volume).await.ctx(
                    "get",
                    "LocalVolume",
                    &s.spec.source_volume,
                )? {
                    Some(lv) => lv.spec.required_capacity_bytes.max(0) as u64,
                    None => s
                        .status
                        .as_ref()
                        .map(|st| st.allocated_capacity_bytes.max(0) as u64)
                        .unwrap_or(0),
                };
                Some(RestoreSnapshotView {
                    state: s.state(),
                    source_volume: s.spec.source_volume.clone(),
                    source_bytes,
                    thin: s.spec.thin,
                    delete: s.spec.delete,
                    replicas: rsnaps
                        .iter()
                        .filter(|x| x.spec.volume_snapshot_name == snap_name && !x.spec.delete)
                        .map(|x| RestoreSourceReplica {
                            name: name_of(x),
                            node: x.spec.node_name.clone(),
                            pool: x.spec.pool_name.clone(),
                        })
                        .collect(),
                })
            }
        };
        let target_name = r.spec.target_volume.clone();
        let target = if target_name.is_empty() {
            None
        } else {
            match volumes
                .get_opt(&target_name)
                .await
                .ctx("get", "LocalVolume", &target_name)?
            {
                None => None,
                Some(lv) => {
                    let replicas = list_all(&ctx.store.all::<LocalVolumeReplica>()).await?;
                    let st = lv.status.clone().unwrap_or_default();
                    Some(RestoreTargetView {
                        state: st.state,
                        pool: if r.spec.target_pool_name.is_empty() {
                            lv.spec.pool_name.clone()
                        } else {
                            r.spec.target_pool_name.clone()
                        },
                        required_bytes: lv.spec.required_capacity_bytes.max(0) as u64,
                        ready_nodes: replicas
                            .iter()
                            .filter(|x| x.spec.volume_name == target_name && !x.spec.delete)
                            .filter(|x| has_device(x))
                            .map(|x| x.spec.node_name.clone())
                            .collect(),
                        published_node: st.published_node,
                    })
                }
            }
        };
        let parts: Vec<LocalVolumeReplicaSnapshotRestore> = list_all(&rrestores)
            .await?
            .into_iter()
            .filter(|x| x.spec.volume_snapshot_restore == name)
            .collect();
        let view = RestoreView {
            state: status.state,
            restore_type: r.spec.restore_type,
            abort: r.spec.abort,
            target_name: target_name.clone(),
            snapshot,
            target,
            replica_restores: parts
                .iter()
                .map(|x| {
                    let st = x.status.clone().unwrap_or_default();
                    ReplicaRestoreView {
                        name: name_of(x),
                        node: x.spec.node_name.clone(),
                        state: st.state,
                        message: st.message,
                        progress: st.progress,
                    }
                })
                .collect(),
        };
        let step = restore_step(&view);
        tracing::debug!(restore = %name, ?step, "restore step");
        // Progress follows the nodes whatever the step; Completed writes 100 with its state.
        let progress = restore_progress(&view);
        if progress.is_some() && progress != status.progress {
            restores
                .patch_status(&name, &json!({"status": {"progress": progress}}))
                .await
                .ctx("patch status", "LocalVolumeSnapshotRestore", &name)?;
        }
        match step {
            RestoreStep::Wait(why) => {
                if why.starts_with("waiting") && status.message != why {
                    restores
                        .patch_status(&name, &json!({"status": {"message": why}}))
                        .await
                        .ctx("patch status", "LocalVolumeSnapshotRestore", &name)?;
                }
                return Ok(Action::requeue(if status.state.is_terminal() {
                    ctx.cfg.resync_interval
                } else {
                    ctx.cfg.poll_interval
                }));
            }
            RestoreStep::SetState { state, message } => {
                if state == status.state && message == status.message {
                    return Ok(Action::requeue(ctx.cfg.poll_interval));
                }
                let mut st = json!({"state": state, "message": message});
                if state == OperationState::Completed {
                    st["progress"] = json!(100);
                    // Annotate the target first: whoever sees Completed sees the annotation.
                    finish_restore(&ctx, &r).await?;
                }
                restores
                    .patch_status(&name, &json!({ "status": st }))
                    .await
                    .ctx("patch status", "LocalVolumeSnapshotRestore", &name)?;
                if state != status.state {
                    if state == OperationState::Failed {
                        tracing::warn!(restore = %name, %message, "snapshot restore failed");
                    } else {
                        tracing::info!(restore = %name, from = %status.state, to = %state, "snapshot restore state");
                    }
                }
            }
            RestoreStep::SetTarget { volume, pool } => {
                restores
                    .patch(
                        &name,
                        &json!({"spec": {"targetVolume": volume, "targetPoolName": pool}}),
                    )
                    .await
                    .ctx("patch", "LocalVolumeSnapshotRestore", &name)?;
            }
            RestoreStep::CreateReplicaRestores(plans) => {
                let mut names = Vec::new();
                for p in plans {
                    let rname = format!("{name}-{}", random_suffix());
                    let obj = LocalVolumeReplicaSnapshotRestore {
                        metadata: ObjectMeta {
                            name: Some(rname.clone()),
                            ..Default::default()
                        },
                        spec: LocalVolumeReplicaSnapshotRestoreSpec {
                            node_name: p.node.clone(),
                            target_volume: p.target_volume,
                            target_pool_name: p.target_pool,
                            source_volume_snapshot: snap_name.clone(),
                            source_volume_replica_snapshot: p.replica_snapshot,
                            restore_type: r.spec.restore_type,
                            volume_snapshot_restore: name.clone(),
                            abort: false,
                        },
                        status: None,
                    };
                    rrestores.create(&obj).await.ctx(
                        "create",
                        "LocalVolumeReplicaSnapshotRestore",
                        &rname,
                    )?;
                    names.push(rname);
                }
                restores
                    .patch_status(
                        &name,
                        &json!({"status": {"volumeReplicaSnapshotRestore": names}}),
                    )
                    .await
                    .ctx("patch status", "LocalVolumeSnapshotRestore", &name)?;
            }
            RestoreStep::ConsumeSnapshot => {
                // The merge consumed the snapshot on every node: the objects follow.
                match ctx
                    .store
                    .all::<LocalVolumeSnapshot>()
                    .patch(&snap_name, &json!({"spec": {"delete": true}}))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e).ctx("patch", "LocalVolumeSnapshot", &snap_name),
                }
            }
            RestoreStep::Remove => {
                for p in &parts {
                    delete_quiet(&rrestores, &name_of(p)).await?;
                }
                delete_quiet(&restores, &name).await?;
                tracing::info!(restore = %name, "snapshot restore object removed");
                return Ok(Action::await_change());
            }
        }
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// After a completed restore into a new volume: annotate the target and delete the
/// temporary snapshot of a clone.
async fn finish_restore(ctx: &SnapshotClusterCtx, r: &LocalVolumeSnapshotRestore) -> Result<()> {
    if r.spec.restore_type != RestoreType::Create {
        return Ok(());
    }
    let target = &r.spec.target_volume;
    match ctx
        .store
        .all::<LocalVolume>()
        .patch(
            target,
            &json!({"metadata": {"annotations": {
                ANNOTATION_SNAPSHOT_RESTORE_COMPLETED: r.spec.source_volume_snapshot,
            }}}),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e).ctx("patch", "LocalVolume", target),
    }
    if r.spec.source_volume_snapshot == clone_snapshot_name(target) {
        match ctx
            .store
            .all::<LocalVolumeSnapshot>()
            .patch(
                &r.spec.source_volume_snapshot,
                &json!({"spec": {"delete": true}}),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                return Err(e).ctx(
                    "patch",
                    "LocalVolumeSnapshot",
                    &r.spec.source_volume_snapshot,
                );
            }
        }
    }
    Ok(())
}
