//! LocalVolumeExpand: raise the volume's required capacity and wait until every replica has
//! grown. Shrinking is refused (`Failed` with a message); `abort` ends the request.
//!
//! The volume controller does the work (new `spec.config`, replica sizes, node-side extend);
//! this controller only moves the request along: `"" → Submitted → InProgress → Completed`,
//! then deletes it so the next expansion of the same volume (same name) can be submitted.
//! A `Failed` request stays, so its message can be read; delete it to retry.

use std::sync::Arc;
use std::time::Duration;

use hwameistor_api::{LocalVolume, LocalVolumeExpand, LocalVolumeReplica};
use hwameistor_core::types::OperationState;
use hwameistor_core::volume::{ExpandStep, ExpandView, ExpandVolumeView, expand_step};
use kube::runtime::controller::Action;
use serde_json::json;

use super::Result;
use super::cluster::{ClusterCtx, ledger_now};
use super::util::StoreExt;

const MAX_STEPS: usize = 6;

/// Annotation recording the `metadata.generation` a request failed at, so that a changed
/// request (new size under the same name) is retried while an unchanged one stays Failed.
pub const ANNOTATION_FAILED_GENERATION: &str = "localvolumeexpand.hwameistor.io/failed-generation";

fn failed_generation(e: &LocalVolumeExpand) -> Option<i64> {
    e.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_FAILED_GENERATION))
        .and_then(|g| g.parse().ok())
}

async fn mark_failed_generation(ctx: &ClusterCtx, e: &LocalVolumeExpand) -> Result<()> {
    let name = e.metadata.name.clone().unwrap_or_default();
    let generation = e.metadata.generation.unwrap_or_default().to_string();
    ctx.store
        .all::<LocalVolumeExpand>()
        .patch(
            &name,
            &json!({"metadata": {"annotations": {ANNOTATION_FAILED_GENERATION: generation}}}),
        )
        .await
        .ctx("patch", "LocalVolumeExpand", &name)?;
    Ok(())
}

/// Reconcile one LocalVolumeExpand.
pub async fn reconcile_expand(obj: Arc<LocalVolumeExpand>, ctx: Arc<ClusterCtx>) -> Result<Action> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let expands = ctx.store.all::<LocalVolumeExpand>();
    let volumes = ctx.store.all::<LocalVolume>();
    for _ in 0..MAX_STEPS {
        let Some(e) = expands
            .get_opt(&name)
            .await
            .ctx("get", "LocalVolumeExpand", &name)?
        else {
            return Ok(Action::await_change());
        };
        let vname = e.spec.volume_name.clone();
        let lv = volumes
            .get_opt(&vname)
            .await
            .ctx("get", "LocalVolume", &vname)?;
        let volume = match &lv {
            None => None,
            Some(lv) => {
                let replicas = ctx
                    .store
                    .all::<LocalVolumeReplica>()
                    .list(&Default::default())
                    .await
                    .ctx("list", "LocalVolumeReplica", "*")?
                    .items;
                Some(ExpandVolumeView {
                    state: lv.status.as_ref().map(|s| s.state).unwrap_or_default(),
                    required_bytes: lv.spec.required_capacity_bytes.max(0) as u64,
                    replicas: replicas
                        .iter()
                        .filter(|r| r.spec.volume_name == vname && !r.spec.delete)
                        .map(|r| {
                            let s = r.status.clone().unwrap_or_default();
                            (s.state, s.allocated_capacity_bytes.max(0) as u64)
                        })
                        .collect(),
                })
            }
        };
        let status = e.status.clone().unwrap_or_default();
        // A failed request whose spec was changed afterwards (a new size submitted under the
        // same name) starts over.
        if status.state == OperationState::Failed && failed_generation(&e) != e.metadata.generation
        {
            tracing::info!(expand = %name, volume = %vname, "failed expansion request changed; retrying");
            expands
                .patch_status(
                    &name,
                    &json!({"status": {"state": OperationState::Unknown, "message": ""}}),
                )
                .await
                .ctx("patch status", "LocalVolumeExpand", &name)?;
            continue;
        }
        let view = ExpandView {
            state: status.state,
            abort: e.spec.abort,
            required_bytes: e.spec.required_capacity_bytes.max(0) as u64,
            volume,
        };
        let step = expand_step(&view);
        tracing::debug!(expand = %name, ?step, "expand step");
        match step {
            ExpandStep::Wait => return Ok(Action::requeue(Duration::from_secs(10))),
            ExpandStep::SetState { state, message } => {
                if state == OperationState::Failed {
                    tracing::warn!(expand = %name, volume = %vname, %message, "volume expansion refused");
                    mark_failed_generation(&ctx, &e).await?;
                }
                expands
                    .patch_status(
                        &name,
                        &json!({"status": {"state": state, "message": message}}),
                    )
                    .await
                    .ctx("patch status", "LocalVolumeExpand", &name)?;
            }
            ExpandStep::RaiseVolume { bytes } => {
                if let Some(lv) = &lv
                    && let Err(reason) = check_room(&ctx, lv, bytes).await?
                {
                    tracing::warn!(expand = %name, volume = %vname, %reason, "volume expansion refused");
                    mark_failed_generation(&ctx, &e).await?;
                    expands
                        .patch_status(
                            &name,
                            &json!({"status": {
                                "state": OperationState::Failed,
                                "message": format!("cannot expand to {bytes} bytes: {reason}"),
                            }}),
                        )
                        .await
                        .ctx("patch status", "LocalVolumeExpand", &name)?;
                    continue;
                }
                volumes
                    .patch(&vname, &json!({"spec": {"requiredCapacityBytes": bytes}}))
                    .await
                    .ctx("patch", "LocalVolume", &vname)?;
                tracing::info!(expand = %name, volume = %vname, bytes, "volume capacity raised");
            }
            ExpandStep::Complete { allocated_bytes } => {
                expands
                    .patch_status(
                        &name,
                        &json!({"status": {
                            "state": OperationState::Completed,
                            "allocatedCapacityBytes": allocated_bytes,
                            "message": "",
                        }}),
                    )
                    .await
                    .ctx("patch status", "LocalVolumeExpand", &name)?;
                tracing::info!(expand = %name, volume = %vname, allocated_bytes, "volume expansion completed");
            }
            ExpandStep::Remove => {
                match expands.delete(&name).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e).ctx("delete", "LocalVolumeExpand", &name),
                }
                return Ok(Action::await_change());
            }
        }
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// Whether every replica node of `lv` has room to grow it to `bytes` (committed capacity, the
/// volume's own placement included). `Ok(Err(reason))` when one has not.
async fn check_room(
    ctx: &ClusterCtx,
    lv: &LocalVolume,
    bytes: u64,
) -> Result<std::result::Result<(), String>> {
    let Some(config) = lv.spec.config.as_ref() else {
        return Ok(Ok(()));
    };
    let name = lv.metadata.name.clone().unwrap_or_default();
    let ledger = ledger_now(&ctx.store, "").await?;
    for r in &config.replicas {
        if let Err(e) = ledger.check(&r.hostname, &lv.spec.pool_name, &name, bytes) {
            return Ok(Err(e.to_string()));
        }
    }
    Ok(Ok(()))
}
