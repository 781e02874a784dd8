//! Node side: take and delete replica snapshots through the engine, report their state, and
//! execute per-node restores (copy into a volume, or roll a volume back).

use std::sync::Arc;
use std::time::Duration;

use hwameistor_api::{
    LocalVolume, LocalVolumeReplicaSnapshot, LocalVolumeReplicaSnapshotRestore, LocalVolumeSnapshot,
};
use hwameistor_core::snapshot::{
    HostSnapshot, ReplicaSnapshotNodeView, ReplicaSnapshotStep, SnapshotKind,
    replica_snapshot_step, snapsize_note,
};
use hwameistor_core::types::{OperationState, RestoreType, VolumeState};
use hwameistor_engine::lvm::merge::{MergeProgress, merge_progress};
use hwameistor_engine::{EngineKind, SharedEngine};
use hwameistor_exec::{Cmd, SharedRunner};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::util::{StoreExt, controller_for, delete_quiet, name_of, now_time, run_controller};
use super::{Error, Result};
use hwameistor_store::Store;

const MAX_STEPS: usize = 6;

/// Configuration of the node-side snapshot controllers.
#[derive(Debug, Clone)]
pub struct SnapshotNodeConfig {
    /// This node's name.
    pub node_name: String,
    /// How often every replica snapshot is re-read from the host (to notice a COW snapshot
    /// that overflowed) and a running merge is polled.
    pub resync_interval: Duration,
    /// Polling interval of a running rollback (LVM merge).
    pub merge_poll_interval: Duration,
    /// Longest a copy of a snapshot into a volume may take.
    pub copy_timeout: Duration,
}

impl SnapshotNodeConfig {
    /// Defaults for `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        SnapshotNodeConfig {
            node_name: node_name.into(),
            resync_interval: Duration::from_secs(30),
            merge_poll_interval: Duration::from_secs(2),
            copy_timeout: Duration::from_secs(
                hwameistor_api::consts::SNAPSHOT_RESTORE_TIMEOUT_SECS,
            ),
        }
    }
}

/// Shared state of the node-side snapshot controllers.
#[derive(Debug)]
pub struct SnapshotNodeCtx {
    pub cfg: SnapshotNodeConfig,
    pub store: Store,
    pub engine: SharedEngine,
    pub runner: SharedRunner,
}

impl SnapshotNodeCtx {
    pub fn new(
        cfg: SnapshotNodeConfig,
        store: Store,
        engine: SharedEngine,
        runner: SharedRunner,
    ) -> Arc<Self> {
        Arc::new(SnapshotNodeCtx {
            cfg,
            store,
            engine,
            runner,
        })
    }
}

/// Run the LocalVolumeReplicaSnapshot and LocalVolumeReplicaSnapshotRestore controllers of
/// this node until `shutdown`.
pub async fn run_snapshot_node(
    cfg: SnapshotNodeConfig,
    store: Store,
    engine: SharedEngine,
    runner: SharedRunner,
    shutdown: CancellationToken,
) -> Result<()> {
    let ctx = SnapshotNodeCtx::new(cfg, store, engine, runner);
    let rsnaps = controller_for(ctx.store.all::<LocalVolumeReplicaSnapshot>());
    let rrestores = controller_for(ctx.store.all::<LocalVolumeReplicaSnapshotRestore>());
    tokio::join!(
        run_controller(
            "localvolumereplicasnapshot",
            rsnaps,
            reconcile_replica_snapshot,
            ctx.clone(),
            shutdown.clone()
        ),
        run_controller(
            "localvolumereplicasnapshotrestore",
            rrestores,
            reconcile_replica_restore,
            ctx.clone(),
            shutdown.clone()
        ),
    );
    Ok(())
}

fn engine_err(
    op: &'static str,
    pool: &str,
    name: &str,
) -> impl FnOnce(hwameistor_engine::Error) -> Error {
    let (pool, name) = (pool.to_owned(), name.to_owned());
    move |source| Error::Engine {
        op,
        pool,
        name,
        source: Box::new(source),
    }
}

/// The snapshot `snapshot` in `pool` as the engine sees it.
async fn host_snapshot(engine: &SharedEngine, pool: &str, snapshot: &str) -> Result<HostSnapshot> {
    let all =
        engine
            .list_snapshots(pool)
            .await
            .map_err(engine_err("list snapshots", pool, snapshot))?;
    Ok(match all.into_iter().find(|s| s.name == snapshot) {
        Some(s) => HostSnapshot::Present {
            size_bytes: s.size_bytes,
            valid: s.valid,
        },
        None => HostSnapshot::Absent,
    })
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: now_time(),
        observed_generation: None,
    }
}

/// Reconcile one replica snapshot of this node (others are ignored).
pub async fn reconcile_replica_snapshot(
    obj: Arc<LocalVolumeReplicaSnapshot>,
    ctx: Arc<SnapshotNodeCtx>,
) -> Result<Action> {
    if obj.spec.node_name != ctx.cfg.node_name {
        return Ok(Action::await_change());
    }
    let name = name_of(obj.as_ref());
    let rsnaps = ctx.store.all::<LocalVolumeReplicaSnapshot>();
    for _ in 0..MAX_STEPS {
        let Some(r) =
            rsnaps
                .get_opt(&name)
                .await
                .ctx("get", "LocalVolumeReplicaSnapshot", &name)?
        else {
            return Ok(Action::await_change());
        };
        let pool = r.spec.pool_name.clone();
        let snapshot = r.spec.volume_snapshot_name.clone();
        let volume = r.spec.source_volume.clone();
        let parent = ctx
            .store
            .all::<LocalVolumeSnapshot>()
            .get_opt(&snapshot)
            .await
            .ctx("get", "LocalVolumeSnapshot", &snapshot)?;
        let status = r.status.clone().unwrap_or_default();
        let attr = status.attr.clone().unwrap_or_default();
        let host = host_snapshot(&ctx.engine, &pool, &snapshot).await?;
        let source_present = ctx
            .engine
            .stat_volume(&pool, &volume)
            .await
            .map_err(engine_err("stat", &pool, &volume))?
            .is_some();
        // Reflink copies and thin snapshots reserve nothing: a `snapsize` they cannot honour
        // is reported (condition Snapsize=False and the reason), never silently dropped.
        let lv = ctx.store.all::<LocalVolume>().get_opt(&volume).await.ctx(
            "get",
            "LocalVolume",
            &volume,
        )?;
        let note = lv
            .and_then(|lv| {
                let kind = match ctx.engine.kind() {
                    EngineKind::File => SnapshotKind::Reflink,
                    EngineKind::Lvm if lv.spec.thin => SnapshotKind::Thin,
                    EngineKind::Lvm => SnapshotKind::Cow,
                };
                snapsize_note(
                    kind,
                    r.spec.required_capacity_bytes.max(0) as u64,
                    lv.spec.required_capacity_bytes.max(0) as u64,
                    lv.status
                        .map(|s| s.allocated_capacity_bytes.max(0) as u64)
                        .unwrap_or(0),
                )
            })
            .unwrap_or_default();
        let view = ReplicaSnapshotNodeView {
            state: status.state,
            delete: r.spec.delete || parent.is_none(),
            source_present,
            merging: attr.merging,
            host,
            note: note.clone(),
        };
        let step = replica_snapshot_step(&view);
        tracing::debug!(replica_snapshot = %name, ?view, ?step, "replica snapshot step");
        match step {
            ReplicaSnapshotStep::Wait => return Ok(Action::requeue(ctx.cfg.resync_interval)),
            ReplicaSnapshotStep::Create => {
                let size = r.spec.required_capacity_bytes.max(0) as u64;
                match ctx
                    .engine
                    .create_snapshot(&pool, &volume, &snapshot, size)
                    .await
                {
                    Ok(info) => {
                        tracing::info!(replica_snapshot = %name, %pool, %volume, %snapshot, size = info.size_bytes, "snapshot taken");
                        let mut conditions = vec![condition("Create", true, "Created", "")];
                        if !note.is_empty() {
                            tracing::warn!(replica_snapshot = %name, %note, "snapsize not honoured");
                            conditions.push(condition("Snapsize", false, "SnapsizeIgnored", &note));
                        }
                        rsnaps
                            .patch_status(
                                &name,
                                &json!({"status": {
                                    "state": if info.valid { VolumeState::Ready } else { VolumeState::NotReady },
                                    "allocatedCapacityBytes": info.size_bytes,
                                    "creationTime": now_time(),
                                    "reason": note,
                                    "conditions": conditions,
                                }}),
                            )
                            .await
                            .ctx("patch status", "LocalVolumeReplicaSnapshot", &name)?;
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        tracing::warn!(replica_snapshot = %name, error = %msg, "taking the snapshot failed");
                        rsnaps
                            .patch_status(
                                &name,
                                &json!({"status": {
                                    "state": VolumeState::NotReady,
                                    "reason": msg,
                                    "conditions": [condition("Create", false, "CreateFailed", &msg)],
                                }}),
                            )
                            .await
                            .ctx("patch status", "LocalVolumeReplicaSnapshot", &name)?;
                        return Err(engine_err("create snapshot", &pool, &snapshot)(e));
                    }
                }
            }
            ReplicaSnapshotStep::DeleteOnHost => {
                ctx.engine
                    .delete_snapshot(&pool, &snapshot)
                    .await
                    .map_err(engine_err("delete snapshot", &pool, &snapshot))?;
                tracing::info!(replica_snapshot = %name, %pool, %snapshot, "snapshot deleted on the host");
            }
            ReplicaSnapshotStep::Remove => {
                delete_quiet(&rsnaps, &name).await?;
                return Ok(Action::await_change());
            }
            ReplicaSnapshotStep::Report {
                state,
                size_bytes,
                invalid,
                reason,
            } => {
                let creation = match (&status.creation_time, state) {
                    (Some(t), _) => Some(t.clone()),
                    (None, VolumeState::Ready) => Some(now_time()),
                    (None, _) => None,
                };
                let unchanged = status.state == state
                    && status.allocated_capacity_bytes == size_bytes as i64
                    && attr.invalid == invalid
                    && status.reason == reason
                    && status.creation_time == creation;
                if unchanged {
                    return Ok(Action::requeue(ctx.cfg.resync_interval));
                }
                if invalid && !attr.invalid {
                    tracing::warn!(replica_snapshot = %name, %reason, "snapshot invalid");
                }
                rsnaps
                    .patch_status(
                        &name,
                        &json!({"status": {
                            "state": state,
                            "allocatedCapacityBytes": size_bytes,
                            "creationTime": creation,
                            "reason": reason,
                            "attr": if invalid || attr.merging {
                                json!({"invalid": if invalid { json!(true) } else { Value::Null },
                                       "merging": if attr.merging { json!(true) } else { Value::Null }})
                            } else { Value::Null },
                        }}),
                    )
                    .await
                    .ctx("patch status", "LocalVolumeReplicaSnapshot", &name)?;
            }
        }
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// Reconcile one per-node restore of this node.
pub async fn reconcile_replica_restore(
    obj: Arc<LocalVolumeReplicaSnapshotRestore>,
    ctx: Arc<SnapshotNodeCtx>,
) -> Result<Action> {
    if obj.spec.node_name != ctx.cfg.node_name {
        return Ok(Action::await_change());
    }
    let name = name_of(obj.as_ref());
    let rrestores = ctx.store.all::<LocalVolumeReplicaSnapshotRestore>();
    let Some(r) =
        rrestores
            .get_opt(&name)
            .await
            .ctx("get", "LocalVolumeReplicaSnapshotRestore", &name)?
    else {
        return Ok(Action::await_change());
    };
    let status = r.status.clone().unwrap_or_default();
    if status.state.is_terminal() {
        return Ok(Action::await_change());
    }
    let set_progress = |state: OperationState, message: String, progress: Option<i32>| {
        let rrestores = rrestores.clone();
        let name = name.clone();
        async move {
            let mut st = json!({"state": state, "message": message});
            if let Some(p) = progress {
                st["progress"] = json!(p);
            }
            rrestores
                .patch_status(&name, &json!({ "status": st }))
                .await
                .ctx("patch status", "LocalVolumeReplicaSnapshotRestore", &name)
                .map(|_| ())
        }
    };
    let set = |state: OperationState, message: String| set_progress(state, message, None);
    if r.spec.abort && status.state == OperationState::Unknown {
        set(OperationState::Aborted, "aborted before it started".into()).await?;
        return Ok(Action::await_change());
    }
    let pool = r.spec.target_pool_name.clone();
    let snapshot = r.spec.source_volume_snapshot.clone();
    let target = r.spec.target_volume.clone();
    match r.spec.restore_type {
        RestoreType::Rollback => {
            let published = ctx
                .store
                .all::<LocalVolume>()
                .get_opt(&target)
                .await
                .ctx("get", "LocalVolume", &target)?
                .and_then(|lv| lv.status)
                .map(|s| s.published_node)
                .unwrap_or_default();
            if status.state == OperationState::Unknown && !published.is_empty() {
                set(
                    OperationState::Failed,
                    format!(
                        "volume {target} is published on {published}; refusing to roll it back"
                    ),
                )
                .await?;
                return Ok(Action::await_change());
            }
            if status.state == OperationState::Unknown {
                set(OperationState::InProgress, "merging".into()).await?;
            }
            // Mark the replica snapshot as merging first: the merge consumes it, and its
            // reconciler must not report it missing.
            let rsname = r.spec.source_volume_replica_snapshot.clone();
            match ctx
                .store
                .all::<LocalVolumeReplicaSnapshot>()
                .patch_status(&rsname, &json!({"status": {"attr": {"merging": true}}}))
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e).ctx("patch status", "LocalVolumeReplicaSnapshot", &rsname),
            }
            if let Err(e) = ctx
                .engine
                .rollback_snapshot(&pool, &target, &snapshot)
                .await
            {
                let msg = e.to_string();
                set(OperationState::Failed, msg).await?;
                return Err(engine_err("rollback", &pool, &target)(e));
            }
            let progress = match ctx.engine.kind() {
                // LVM merges in the background; the snapshot LV vanishes when done.
                EngineKind::Lvm => merge_progress(ctx.runner.as_ref(), &pool, &target, &snapshot)
                    .await
                    .map_err(engine_err("merge progress", &pool, &snapshot))?,
                // The file engine's rollback is done when the call returns.
                EngineKind::File => match host_snapshot(&ctx.engine, &pool, &snapshot).await? {
                    HostSnapshot::Absent => MergeProgress::Done,
                    HostSnapshot::Present { .. } => MergeProgress::Running { percent: 0.0 },
                },
            };
            let pct = progress.percent();
            match progress {
                MergeProgress::Done => {
                    tracing::info!(restore = %name, %pool, volume = %target, %snapshot, "rollback completed");
                    set_progress(OperationState::Completed, "rolled back".into(), Some(100))
                        .await?;
                    Ok(Action::await_change())
                }
                MergeProgress::Failed { reason } => {
                    tracing::warn!(restore = %name, %pool, volume = %target, %snapshot, %reason, "rollback failed");
                    set(OperationState::Failed, reason).await?;
                    Ok(Action::await_change())
                }
                MergeProgress::Delayed { .. }
                | MergeProgress::Running { .. }
                | MergeProgress::NotMerging => {
                    let message = match progress {
                        MergeProgress::Delayed { reason } => format!("merge delayed: {reason}"),
                        _ => format!("merging: {pct}%"),
                    };
                    // Re-read: the first pass above may have written InProgress already.
                    let now = rrestores
                        .get_opt(&name)
                        .await
                        .ctx("get", "LocalVolumeReplicaSnapshotRestore", &name)?
                        .and_then(|r| r.status)
                        .unwrap_or_default();
                    if now.state != OperationState::InProgress
                        || now.message != message
                        || now.progress != Some(pct)
                    {
                        tracing::debug!(restore = %name, volume = %target, %snapshot, progress = pct, %message, "rollback running");
                        set_progress(OperationState::InProgress, message, Some(pct)).await?;
                    }
                    Ok(Action::requeue(ctx.cfg.merge_poll_interval))
                }
            }
        }
        RestoreType::Create => {
            if status.state == OperationState::Unknown {
                set(OperationState::InProgress, "copying".into()).await?;
            }
            match copy_snapshot_into(&ctx, &pool, &snapshot, &target).await {
                Ok(()) => {
                    tracing::info!(restore = %name, %pool, %snapshot, volume = %target, "snapshot restored into the volume");
                    set_progress(OperationState::Completed, "restored".into(), Some(100)).await?;
                    Ok(Action::await_change())
                }
                Err(e) => {
                    set(OperationState::Failed, e.to_string()).await?;
                    Err(e)
                }
            }
        }
    }
}

/// Name of the scratch volume a file-engine restore copies through.
fn scratch_name(target: &str) -> String {
    let base: String = target.chars().take(40).collect();
    format!("{base}-restore-scratch")
}

/// Copy the content of `snapshot` into the existing volume `target` (same pool).
///
/// - lvm: `dd` from the snapshot LV onto the target LV.
/// - file: a reflink copy of the snapshot into a scratch volume (instant), a sparse `dd`
///   from it onto the target (a new volume file reads as zeros, so skipping zero blocks is
///   exact), then the scratch volume is deleted.
pub async fn copy_snapshot_into(
    ctx: &SnapshotNodeCtx,
    pool: &str,
    snapshot: &str,
    target: &str,
) -> Result<()> {
    let engine = &ctx.engine;
    let tinfo = engine
        .activate_volume(pool, target)
        .await
        .map_err(engine_err("activate", pool, target))?;
    if tinfo.attrs.open {
        return Err(Error::Invalid {
            kind: "LocalVolume",
            name: target.to_owned(),
            reason: "the restore target is in use".into(),
        });
    }
    let (src, scratch, sparse) = match engine.kind() {
        EngineKind::Lvm => {
            // A thin snapshot may be inactive (after a reboot or a deactivation of its
            // origin); a COW snapshot is active with its origin and this is a no-op.
            engine
                .activate_volume(pool, snapshot)
                .await
                .map_err(engine_err("activate snapshot", pool, snapshot))?;
            (
                std::path::PathBuf::from(format!("/dev/{pool}/{snapshot}")),
                None,
                false,
            )
        }
        EngineKind::File => {
            let scratch = scratch_name(target);
            // A scratch volume left by an interrupted attempt holds the same snapshot.
            let info = engine
                .restore_snapshot(pool, snapshot, &scratch)
                .await
                .map_err(engine_err("restore snapshot", pool, snapshot))?;
            (info.device_path, Some(scratch), true)
        }
    };
    let mut conv = "fsync".to_owned();
    if sparse {
        conv.push_str(",sparse");
    }
    let dd = Cmd::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", tinfo.device_path.display()))
        .args(["bs=4M", "iflag=direct", "oflag=direct"])
        .arg(format!("conv={conv}"))
        .timeout(ctx.cfg.copy_timeout);
    let res = ctx.runner.run(&dd).await.map_err(|source| Error::Copy {
        snapshot: snapshot.to_owned(),
        target: target.to_owned(),
        source: Box::new(source),
    });
    if let Some(s) = scratch
        && let Err(e) = engine.delete_volume(pool, &s).await
    {
        tracing::warn!(%pool, scratch = %s, error = %e, "removing the scratch volume failed");
    }
    res.map(|_| ())
}
