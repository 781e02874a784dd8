//! Node side of a LocalVolumeReplica: drive the engine until the device matches the spec.
//!
//! Each pass observes the object and the device (`stat_volume`), asks
//! [`hwameistor_core::volume::replica_step`] for the next step, applies it, and observes again
//! (a few steps per pass). Engine operations are idempotent and statuses are written only
//! after the host changed, so an agent killed between any two steps converges on restart: a
//! device created but not reported is found by `stat` and reported; a device removed but not
//! marked Deleted is found absent and marked.

use std::sync::Arc;

use hwameistor_api::consts::{CONDITION_CREATE, CONDITION_READY};
use hwameistor_api::{LocalVolume, LocalVolumeReplica};
use hwameistor_core::types::ReplicaState;
use hwameistor_core::volume::{DeviceObservation, ReplicaStep, ReplicaView, replica_step};
use hwameistor_engine::VolumeOptions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::{Action, Controller};
use serde_json::json;

use super::node::NodeCtx;
use super::util::{StoreExt, controller_for, now_time};
use super::{Error, Result};

/// Most steps applied in one pass before yielding back to the controller.
const MAX_STEPS: usize = 8;

/// The replica controller of one node.
pub(crate) fn controller(ctx: &NodeCtx) -> Controller<LocalVolumeReplica> {
    controller_for(ctx.store.all::<LocalVolumeReplica>())
}

fn condition(type_: &str, ok: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message,
        last_transition_time: now_time(),
        observed_generation: None,
    }
}

fn with_condition(existing: &[Condition], c: Condition) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|e| e.type_ != c.type_)
        .cloned()
        .collect();
    match existing.iter().find(|e| e.type_ == c.type_) {
        // Keep the transition time when the status did not change.
        Some(old) if old.status == c.status => out.push(Condition {
            last_transition_time: old.last_transition_time.clone(),
            ..c
        }),
        _ => out.push(c),
    }
    out
}

/// Reconcile one replica of this node (objects of other nodes are ignored).
pub async fn reconcile_replica(obj: Arc<LocalVolumeReplica>, ctx: Arc<NodeCtx>) -> Result<Action> {
    if obj.spec.node_name != ctx.cfg.node_name {
        return Ok(Action::await_change());
    }
    let name = obj.metadata.name.clone().unwrap_or_default();
    let replicas = ctx.store.all::<LocalVolumeReplica>();
    for _ in 0..MAX_STEPS {
        let Some(r) = replicas
            .get_opt(&name)
            .await
            .ctx("get", "LocalVolumeReplica", &name)?
        else {
            return Ok(Action::await_change());
        };
        let pool = r.spec.pool_name.clone();
        let volume = r.spec.volume_name.clone();
        let parent = ctx.store.all::<LocalVolume>().get_opt(&volume).await.ctx(
            "get",
            "LocalVolume",
            &volume,
        )?;
        if parent.is_none() && !r.spec.delete {
            tracing::warn!(replica = %name, %volume, "the replica's LocalVolume is gone; deleting the replica");
        }
        let stat = ctx
            .engine
            .stat_volume(&pool, &volume)
            .await
            .map_err(|source| Error::Engine {
                op: "stat",
                pool: pool.clone(),
                volume: volume.clone(),
                source,
            })?;
        let status = r.status.clone().unwrap_or_default();
        let view = ReplicaView {
            state: status.state,
            delete: r.spec.delete || parent.is_none(),
            required_bytes: r.spec.required_capacity_bytes.max(0) as u64,
            allocated_bytes: status.allocated_capacity_bytes.max(0) as u64,
            has_device_path: !status.dev_path.is_empty(),
            device: match &stat {
                Some(v) => DeviceObservation::Present {
                    size_bytes: v.size_bytes,
                },
                None => DeviceObservation::Absent,
            },
        };
        let step = replica_step(&view);
        tracing::debug!(replica = %name, ?view, ?step, "replica step");
        let engine_err = |op: &'static str| {
            let (pool, volume) = (pool.clone(), volume.clone());
            move |source| Error::Engine {
                op,
                pool,
                volume,
                source,
            }
        };
        match step {
            ReplicaStep::Wait => return Ok(Action::requeue(ctx.cfg.resync_interval)),
            ReplicaStep::SetState(state) => {
                let mut patch = json!({"status": {"state": state}});
                if state == ReplicaState::Creating {
                    patch["status"]["conditions"] = json!(with_condition(
                        &status.conditions,
                        condition(
                            "Submit",
                            true,
                            "Submitted",
                            "replica submitted to the node".into()
                        )
                    ));
                }
                if state == ReplicaState::Deleted {
                    patch["status"]["devPath"] = json!("");
                    patch["status"]["storagePath"] = json!("");
                }
                replicas.patch_status(&name, &patch).await.ctx(
                    "patch status",
                    "LocalVolumeReplica",
                    &name,
                )?;
            }
            ReplicaStep::CreateDevice { size_bytes } => {
                let opts = VolumeOptions {
                    striped: false,
                    thin: r.spec.thin,
                };
                if let Err(e) = ctx
                    .engine
                    .create_volume(&pool, &volume, size_bytes, &opts)
                    .await
                {
                    let message = e.to_string();
                    let conds = with_condition(
                        &status.conditions,
                        condition(CONDITION_CREATE, false, "CreateFailed", message.clone()),
                    );
                    replicas
                        .patch_status(&name, &json!({"status": {"conditions": conds}}))
                        .await
                        .ctx("patch status", "LocalVolumeReplica", &name)?;
                    return Err(engine_err("create")(e));
                }
                ctx.pools_changed.notify_one();
                tracing::info!(replica = %name, %pool, %volume, size_bytes, "volume created");
            }
            ReplicaStep::ExtendDevice { size_bytes } => {
                ctx.engine
                    .extend_volume(&pool, &volume, size_bytes)
                    .await
                    .map_err(engine_err("extend"))?;
                ctx.pools_changed.notify_one();
                tracing::info!(replica = %name, %pool, %volume, size_bytes, "volume extended");
            }
            ReplicaStep::ReportReady { size_bytes } => {
                let info = stat.ok_or_else(|| Error::Invalid {
                    kind: "LocalVolumeReplica",
                    name: name.clone(),
                    reason: "device vanished while reporting it".into(),
                })?;
                let path = info.device_path.display().to_string();
                let mut conds = with_condition(
                    &status.conditions,
                    condition(CONDITION_CREATE, true, "Created", "volume created".into()),
                );
                conds = with_condition(
                    &conds,
                    condition(CONDITION_READY, true, "Ready", "volume ready".into()),
                );
                if let Some(c) = qos_condition(&r) {
                    conds = with_condition(&conds, c);
                }
                replicas
                    .patch_status(
                        &name,
                        &json!({"status": {
                            "state": ReplicaState::Ready,
                            "devPath": path,
                            "storagePath": path,
                            "allocatedCapacityBytes": size_bytes,
                            "disks": info.attrs.disks,
                            "synced": true,
                            "conditions": conds,
                        }}),
                    )
                    .await
                    .ctx("patch status", "LocalVolumeReplica", &name)?;
            }
            ReplicaStep::ReportLost => {
                tracing::error!(replica = %name, %pool, %volume, "the device of a ready replica is gone from the host; not recreating it");
                let conds = with_condition(
                    &status.conditions,
                    condition(
                        CONDITION_READY,
                        false,
                        "DeviceMissing",
                        format!("volume {pool}/{volume} not found on the host"),
                    ),
                );
                replicas
                    .patch_status(
                        &name,
                        &json!({"status": {"state": ReplicaState::NotReady, "conditions": conds}}),
                    )
                    .await
                    .ctx("patch status", "LocalVolumeReplica", &name)?;
            }
            ReplicaStep::RemoveDevice => {
                ctx.engine
                    .delete_volume(&pool, &volume)
                    .await
                    .map_err(engine_err("delete"))?;
                ctx.pools_changed.notify_one();
                tracing::info!(replica = %name, %pool, %volume, "volume removed");
            }
            ReplicaStep::RemoveObject => {
                match replicas.delete(&name).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e).ctx("delete", "LocalVolumeReplica", &name),
                }
                return Ok(Action::await_change());
            }
        }
    }
    Ok(Action::requeue(std::time::Duration::from_millis(100)))
}

/// `spec.volumeQoS` is accepted but throttling needs the engine's qos module, which this build
/// does not wire into the node agent yet: a replica that asks for limits gets a `QoS`
/// condition saying so instead of a silent no-op.
fn qos_condition(r: &LocalVolumeReplica) -> Option<Condition> {
    let qos = r.spec.volume_qos.as_ref().filter(|q| !q.is_empty())?;
    let name = r.metadata.name.clone().unwrap_or_default();
    tracing::warn!(replica = %name, ?qos, "volumeQoS requested but IO throttling is not wired into the node agent yet");
    Some(condition(
        "QoS",
        false,
        "NotImplemented",
        "volumeQoS is not enforced: the node agent has no IO throttling backend yet".into(),
    ))
}
