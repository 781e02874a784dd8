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
use hwameistor_api::{LocalVolume, LocalVolumeReplica, VolumeQoS};
use hwameistor_core::params::parse_quantity;
use hwameistor_core::types::ReplicaState;
use hwameistor_core::volume::{DeviceObservation, ReplicaStep, ReplicaView, replica_step};
use hwameistor_engine::qos::QosLimits;
use hwameistor_engine::{EngineKind, VolumeOptions};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::{Action, Controller};
use serde_json::json;

use super::node::NodeCtx;
use super::util::{StoreExt, controller_with, now_time};
use super::{Error, Result};

/// Most steps applied in one pass before yielding back to the controller.
const MAX_STEPS: usize = 8;

/// Replicas one node agent works on at once. A pass mostly waits (store commits, fsyncs, a
/// `losetup` or `lvcreate`), and the engines serialise only what must be (the file engine
/// per volume plus a short space claim, LVM per volume group), so a burst of volumes is
/// worked on together and its status writes share the store's group commits.
const NODE_CONCURRENCY: u16 = 64;

/// The replica controller of one node.
pub(crate) fn controller(ctx: &NodeCtx) -> Controller<LocalVolumeReplica> {
    controller_with(ctx.store.all::<LocalVolumeReplica>(), NODE_CONCURRENCY)
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
    // What the last step left on the host, when it knows: a step that only wrote the status
    // did not change the device, and create/extend return the device they made, so the next
    // pass need not ask the engine again (with the file engine a stat runs commands).
    let mut known: Option<Option<hwameistor_engine::VolumeInfo>> = None;
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
        let mut stat = match known.take() {
            Some(s) => s,
            None => ctx
                .engine
                .stat_volume(&pool, &volume)
                .await
                .map_err(|source| Error::Engine {
                    op: "stat",
                    pool: pool.clone(),
                    volume: volume.clone(),
                    source: Box::new(source),
                })?,
        };
        let status = r.status.clone().unwrap_or_default();
        let deleting = r.spec.delete
            || parent.is_none()
            || matches!(
                status.state,
                ReplicaState::ToBeDeleted | ReplicaState::Deleted
            );
        // A device that exists but is not attached (after a reboot, or detached behind our
        // back) is activated again before anything else looks at it.
        if let Some(v) = stat.as_ref()
            && !v.attrs.active
            && !deleting
        {
            tracing::info!(replica = %name, %pool, %volume, "activating an inactive volume");
            let info = ctx
                .engine
                .activate_volume(&pool, &volume)
                .await
                .map_err(|source| Error::Engine {
                    op: "activate",
                    pool: pool.clone(),
                    volume: volume.clone(),
                    source: Box::new(source),
                })?;
            stat = Some(info);
        }
        let view = ReplicaView {
            state: status.state,
            delete: r.spec.delete || parent.is_none(),
            required_bytes: r.spec.required_capacity_bytes.max(0) as u64,
            allocated_bytes: status.allocated_capacity_bytes.max(0) as u64,
            has_device_path: !status.dev_path.is_empty(),
            unreplicated_ha: parent
                .as_ref()
                .is_some_and(|lv| lv.spec.replica_number > 1 || lv.spec.convertible),
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
                source: Box::new(source),
            }
        };
        // Status-only steps leave the device as observed; the engine steps below say otherwise.
        known = Some(stat.clone());
        match step {
            ReplicaStep::Wait => {
                if status.state == ReplicaState::Ready
                    && let Some(dev) = stat.as_ref().map(|v| v.device_path.clone())
                {
                    let want = qos_condition(&ctx, &r, &dev);
                    let have = status.conditions.iter().find(|c| c.type_ == CONDITION_QOS);
                    let changed = match (&want, have) {
                        (Some(w), Some(h)) => w.status != h.status || w.message != h.message,
                        (Some(_), None) => true,
                        (None, Some(_)) => true,
                        (None, None) => false,
                    };
                    if changed {
                        let mut conds: Vec<Condition> = status
                            .conditions
                            .iter()
                            .filter(|c| c.type_ != CONDITION_QOS)
                            .cloned()
                            .collect();
                        if let Some(w) = want {
                            conds = with_condition(&status.conditions, w);
                        }
                        replicas
                            .patch_status(&name, &json!({"status": {"conditions": conds}}))
                            .await
                            .ctx("patch status", "LocalVolumeReplica", &name)?;
                    }
                }
                return Ok(Action::requeue(ctx.cfg.resync_interval));
            }
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
                // The file engine keeps a volume on one disk: a striped request is created
                // linear there, and the replica says so (condition `Striped`=False).
                let linear_instead = r.spec.striped && ctx.engine.kind() == EngineKind::File;
                let opts = VolumeOptions {
                    striped: r.spec.striped && !linear_instead,
                    thin: r.spec.thin,
                };
                let created = ctx
                    .engine
                    .create_volume(&pool, &volume, size_bytes, &opts)
                    .await;
                known = created.as_ref().ok().map(|info| Some(info.clone()));
                if let Err(e) = created {
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
                tracing::info!(replica = %name, %pool, %volume, size_bytes, striped = opts.striped, "volume created");
                if linear_instead {
                    tracing::warn!(replica = %name, %pool, %volume, "striping was requested but the file engine cannot stripe; the volume was created linear");
                    let conds = with_condition(
                        &status.conditions,
                        condition(
                            CONDITION_STRIPED,
                            false,
                            "StripingUnavailable",
                            "striping was requested, but the file engine cannot stripe (a file volume lives on one disk); the volume was created linear".into(),
                        ),
                    );
                    replicas
                        .patch_status(&name, &json!({"status": {"conditions": conds}}))
                        .await
                        .ctx("patch status", "LocalVolumeReplica", &name)?;
                }
            }
            ReplicaStep::ExtendDevice { size_bytes } => {
                let info = ctx
                    .engine
                    .extend_volume(&pool, &volume, size_bytes)
                    .await
                    .map_err(engine_err("extend"))?;
                known = Some(Some(info));
                ctx.pools_changed.notify_one();
                tracing::info!(replica = %name, %pool, %volume, size_bytes, "volume extended");
            }
            ReplicaStep::ReportUnreplicated { size_bytes } => {
                let info = stat.ok_or_else(|| Error::Invalid {
                    kind: "LocalVolumeReplica",
                    name: name.clone(),
                    reason: "device vanished while reporting it".into(),
                })?;
                let path = info.device_path.display().to_string();
                tracing::warn!(replica = %name, %volume, "HA volume: device created, but this node agent has no DRBD replication; the replica stays NotReady");
                let mut conds = with_condition(
                    &status.conditions,
                    condition(CONDITION_CREATE, true, "Created", "volume created".into()),
                );
                conds = with_condition(
                    &conds,
                    condition(
                        CONDITION_READY,
                        false,
                        "ReplicationUnavailable",
                        "HA (replicated) volumes need DRBD replication, which this node agent does not provide yet".into(),
                    ),
                );
                replicas
                    .patch_status(
                        &name,
                        &json!({"status": {
                            "state": ReplicaState::NotReady,
                            "devPath": path,
                            "storagePath": path,
                            "allocatedCapacityBytes": size_bytes,
                            "disks": info.attrs.disks,
                            "synced": false,
                            "conditions": conds,
                        }}),
                    )
                    .await
                    .ctx("patch status", "LocalVolumeReplica", &name)?;
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
                // A CSI node plugin that crashed between publish and unpublish can
                // leave the volume's dm-crypt mapping open; it holds the device open
                // and the removal below would fail for ever. Close it first. A
                // missing mapping costs nothing, and cryptsetup refuses to close a
                // mapping that is still mounted, so nothing in use is pulled away.
                hwameistor_engine::luks::Luks::new(ctx.runner.clone())
                    .close(&hwameistor_engine::luks::mapping_name(&volume))
                    .await
                    .map_err(engine_err("close the encryption mapping"))?;
                ctx.engine
                    .delete_volume(&pool, &volume)
                    .await
                    .map_err(engine_err("delete"))?;
                known = Some(None);
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

/// Condition type set to False (reason `StripingUnavailable`) on a replica whose
/// `spec.striped` could not be honoured because the node's engine cannot stripe.
pub const CONDITION_STRIPED: &str = "Striped";

/// Condition type reporting whether `spec.volumeQoS` is enforced.
pub const CONDITION_QOS: &str = "QoS";

/// The IO limits `spec.volumeQoS` asks for (quantities; empty = unlimited).
pub fn qos_limits(qos: Option<&VolumeQoS>) -> std::result::Result<QosLimits, String> {
    let Some(q) = qos else {
        return Ok(QosLimits::default());
    };
    let parse = |what: &str, v: &str| -> std::result::Result<Option<u64>, String> {
        if v.trim().is_empty() {
            return Ok(None);
        }
        parse_quantity(v)
            .map(Some)
            .map_err(|e| format!("invalid volumeQoS.{what} {v:?}: {e}"))
    };
    Ok(QosLimits::symmetric(
        parse("iops", &q.iops)?,
        parse("throughput", &q.throughput)?,
    ))
}

/// Enforce `spec.volumeQoS` on the replica's device through the configured throttler and say
/// how it went; `None` when no limit is wanted and none is set.
fn qos_condition(
    ctx: &NodeCtx,
    r: &LocalVolumeReplica,
    dev: &std::path::Path,
) -> Option<Condition> {
    let name = r.metadata.name.clone().unwrap_or_default();
    let limits = match qos_limits(r.spec.volume_qos.as_ref()) {
        Ok(l) => l,
        Err(message) => return Some(condition(CONDITION_QOS, false, "InvalidQoS", message)),
    };
    let Some(throttler) = ctx.cfg.throttler.as_ref() else {
        if limits.is_empty() {
            return None;
        }
        tracing::warn!(replica = %name, ?limits, "volumeQoS requested but this node agent has no IO throttler configured");
        return Some(condition(
            CONDITION_QOS,
            false,
            "NoThrottler",
            "volumeQoS is not enforced: the node agent runs without a cgroup IO throttler".into(),
        ));
    };
    if limits.is_empty() {
        // Remove limits left from an earlier QoS (idempotent when none is set).
        if let Err(e) = throttler.apply(dev, &limits) {
            return Some(condition(
                CONDITION_QOS,
                false,
                "ApplyFailed",
                e.to_string(),
            ));
        }
        return None;
    }
    match throttler.current(dev) {
        Ok(cur) if cur == limits.normalized() => {}
        _ => {
            if let Err(e) = throttler.apply(dev, &limits) {
                tracing::warn!(replica = %name, error = %e, "applying volumeQoS failed");
                return Some(condition(
                    CONDITION_QOS,
                    false,
                    "ApplyFailed",
                    e.to_string(),
                ));
            }
            tracing::info!(replica = %name, ?limits, throttler = %throttler.version, "volumeQoS applied");
        }
    }
    let fmt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "max".into());
    Some(condition(
        CONDITION_QOS,
        true,
        "Applied",
        format!(
            "{}: iops={} throughput={}B/s",
            throttler.version,
            fmt(limits.read_iops),
            fmt(limits.read_bps)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_quantities_become_symmetric_limits() {
        assert!(qos_limits(None).unwrap().is_empty());
        let q = VolumeQoS {
            throughput: "10Mi".into(),
            iops: "1k".into(),
        };
        let l = qos_limits(Some(&q)).unwrap();
        assert_eq!(l.read_bps, Some(10 << 20));
        assert_eq!(l.write_bps, Some(10 << 20));
        assert_eq!(l.read_iops, Some(1000));
        assert_eq!(l.write_iops, Some(1000));
        let q = VolumeQoS {
            throughput: String::new(),
            iops: "100".into(),
        };
        let l = qos_limits(Some(&q)).unwrap();
        assert_eq!((l.read_bps, l.read_iops), (None, Some(100)));
        let bad = VolumeQoS {
            throughput: "fast".into(),
            iops: String::new(),
        };
        assert!(
            qos_limits(Some(&bad))
                .unwrap_err()
                .contains("volumeQoS.throughput")
        );
    }
}
