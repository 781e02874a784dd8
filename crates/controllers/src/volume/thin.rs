//! Thin provisioning on the node, and thin pools in the capacity ledger.
//!
//! - **ThinPoolClaim** ([`reconcile_thin_pool_claim`], node side): the agent of
//!   `spec.nodeName` turns the claim into a thin pool `LocalStorage_ThinPool` in the VG of
//!   `description.poolName` through [`VolumeEngine::ensure_thin_pool`] (create, or grow data
//!   and metadata; never shrink), with the claim's over-provision ratio. Success: phase
//!   `Consumed` (the claim is bound), a record in the LocalStorageNode's
//!   `thinPoolExtendRecords`, Event `ThinPoolClaimSucceed`. Failure: phase `Failed` with the
//!   engine's (command's) message in `status.message`, Event `ThinPoolClaimFail`, retried every
//!   [`FAILED_RETRY`]. A node with the file engine answers `Failed` with "this engine has no
//!   thin pools". Every pass re-applies the claim, so editing it (a larger size, a new ratio)
//!   takes effect; deleting it leaves the thin pool in place.
//! - **Usage** ([`report_thin_pools`], called by every node sync): each pool's `thinPool`
//!   status (data/metadata size and usage, provisioned bytes, current and allowed ratio, thin
//!   volumes) and the condition `PoolState` (`PoolStateWarning` when data or metadata usage is
//!   at or above 80 %, with a Warning Event `ThinPoolUsageHigh` on the LocalStorageNode when
//!   it starts; `PoolStateNormal` otherwise).
//! - **Ledger** ([`ledger_thin_pool`]): the cluster side accounts thin volumes in the ledger
//!   pool `<pool>/thin` of capacity `size × ratio` (see `hwameistor_core::placement`).
//!
//! Thin volumes themselves are created by the replica controller (`spec.thin` →
//! `VolumeOptions::thin`), and a snapshot of a thin volume is a thin snapshot (the lvm engine
//! decides from the origin).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hwameistor_api::consts::{
    CONDITION_POOL_STATE, LVM_POOL_PREFIX, REASON_POOL_STATE_NORMAL, REASON_POOL_STATE_WARNING,
};
use hwameistor_api::{
    LocalPool, LocalStorageNode, ThinPoolClaim, ThinPoolClaimDescription, ThinPoolExtendRecord,
    ThinPoolInfo as ApiThinPoolInfo,
};
use hwameistor_core::placement::{PoolReport, ledger_pool, thin_pool_report};
use hwameistor_core::snapshot::{ThinPool, parse_ratio};
use hwameistor_core::types::{PoolClass, ThinPoolClaimPhase};
use hwameistor_engine::{THIN_POOL_LV, ThinPoolInfo, ThinPoolRequest};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::{Action, Controller};
use serde_json::json;

use super::util::{StoreExt, controller_for, now_time};
use super::{Error, NodeCtx, Result};
use crate::event::object_ref;

/// How soon a failed claim is tried again.
pub const FAILED_RETRY: Duration = Duration::from_secs(30);
/// How often a consumed claim is re-applied (it is idempotent; this catches a thin pool
/// removed by hand).
pub const CONSUMED_RESYNC: Duration = Duration::from_secs(300);
/// Namespace of the Kubernetes Events we record.
pub use crate::event::EVENT_NAMESPACE;

const GIB: u64 = 1 << 30;

/// The engine request for a claim on a VG of `vg_total_bytes`: data size from `capacity`
/// (GiB) or `capacityPercent` (exactly one), metadata from `poolMetadataSize` (GiB, 0 = lvm's
/// choice), the ratio from `overProvisionRatio` (default 1.0).
pub fn thin_pool_request(
    desc: &ThinPoolClaimDescription,
    vg_total_bytes: u64,
) -> std::result::Result<ThinPoolRequest, String> {
    if !desc.pool_name.starts_with(LVM_POOL_PREFIX)
        || PoolClass::from_pool_name(&desc.pool_name).is_none()
    {
        return Err(format!(
            "description.poolName {:?} is not an LVM pool (LocalStorage_PoolHDD, LocalStorage_PoolSSD or LocalStorage_PoolNVMe)",
            desc.pool_name
        ));
    }
    let data_bytes = match (desc.capacity, desc.capacity_percent) {
        (c, None) if c > 0 => (c as u64).saturating_mul(GIB),
        (0, Some(p)) if (1..=95).contains(&p) => vg_total_bytes / 100 * p as u64,
        (0, Some(p)) => {
            return Err(format!(
                "description.capacityPercent {p} must be between 1 and 95"
            ));
        }
        (c, Some(_)) if c != 0 => {
            return Err(
                "give either description.capacity (GiB) or description.capacityPercent, not both"
                    .into(),
            );
        }
        _ => {
            return Err(
                "description.capacity (GiB, positive) or description.capacityPercent is required"
                    .into(),
            );
        }
    };
    if data_bytes == 0 {
        return Err(format!(
            "description.capacityPercent of a {vg_total_bytes}-byte pool is empty"
        ));
    }
    if desc.pool_metadata_size < 0 {
        return Err(format!(
            "description.poolMetadataSize {} must not be negative",
            desc.pool_metadata_size
        ));
    }
    let ratio_s = desc.over_provision_ratio.as_deref().unwrap_or("");
    let ratio = parse_ratio(ratio_s).map_err(|e| format!("description.overProvisionRatio: {e}"))?;
    Ok(ThinPoolRequest {
        data_bytes,
        metadata_bytes: (desc.pool_metadata_size as u64).saturating_mul(GIB),
        over_provision_ratio: ratio,
    })
}

/// The ThinPoolClaim controller of this node.
pub fn controller(ctx: &NodeCtx) -> Controller<ThinPoolClaim> {
    controller_for(ctx.store.all::<ThinPoolClaim>())
}

fn lsn_ref(node: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(hwameistor_api::consts::API_VERSION.into()),
        kind: Some("LocalStorageNode".into()),
        name: Some(node.to_owned()),
        ..Default::default()
    }
}

/// Record (or bump) a Kubernetes Event from this node agent; failures are only logged.
async fn record_event(
    ctx: &NodeCtx,
    object: ObjectReference,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let source = crate::event::Source {
        component: "local-storage",
        host: Some(&ctx.cfg.node_name),
    };
    crate::event::record_event(&ctx.store, object, source, type_, reason, message).await;
}

/// Create or grow the thin pool a ThinPoolClaim of this node asks for; phase `Consumed` or
/// `Failed` with the reason. See the module docs.
pub async fn reconcile_thin_pool_claim(
    claim: Arc<ThinPoolClaim>,
    ctx: Arc<NodeCtx>,
) -> Result<Action> {
    let me = &ctx.cfg.node_name;
    if claim.spec.node_name != *me || claim.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let phase = claim.status.as_ref().map(|s| s.status).unwrap_or_default();
    if matches!(
        phase,
        ThinPoolClaimPhase::ToBeDeleted | ThinPoolClaimPhase::Deleted
    ) {
        return Ok(Action::await_change());
    }
    let name = claim.metadata.name.clone().unwrap_or_default();
    let desc = &claim.spec.description;
    let pool = desc.pool_name.clone();

    let outcome: std::result::Result<ThinPoolInfo, String> = async {
        let vg_total = match ctx.engine.pool_info(&pool).await {
            Ok(Some(p)) => p.total_bytes,
            Ok(None) => {
                return Err(format!(
                    "pool {pool} does not exist on node {me} (claim disks for it first)"
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let req = thin_pool_request(desc, vg_total)?;
        ctx.engine
            .ensure_thin_pool(&pool, &req)
            .await
            .map_err(|e| e.to_string())
    }
    .await;

    let claims = ctx.store.all::<ThinPoolClaim>();
    let old_message = claim
        .status
        .as_ref()
        .map(|s| s.message.clone())
        .unwrap_or_default();
    match outcome {
        Ok(info) => {
            let message = format!(
                "thin pool {}/{}: data {} bytes, metadata {} bytes, over-provision ratio {}",
                pool,
                THIN_POOL_LV,
                info.data_bytes,
                info.metadata_bytes,
                hwameistor_engine::lvm::thin::format_ratio(info.over_provision_ratio)
            );
            if phase != ThinPoolClaimPhase::Consumed || old_message != message {
                record_extend(&ctx, &claim).await?;
                claims
                    .patch_status(
                        &name,
                        &json!({"status": {"status": ThinPoolClaimPhase::Consumed, "message": message}}),
                    )
                    .await
                    .ctx("patch status", "ThinPoolClaim", &name)?;
                tracing::info!(claim = %name, %pool, %message, "thin pool claim consumed");
                record_event(
                    &ctx,
                    object_ref(&*claim),
                    "Normal",
                    "ThinPoolClaimSucceed",
                    &message,
                )
                .await;
                ctx.pools_changed.notify_one();
            }
            Ok(Action::requeue(CONSUMED_RESYNC))
        }
        Err(message) => {
            if phase != ThinPoolClaimPhase::Failed || old_message != message {
                claims
                    .patch_status(
                        &name,
                        &json!({"status": {"status": ThinPoolClaimPhase::Failed, "message": message}}),
                    )
                    .await
                    .ctx("patch status", "ThinPoolClaim", &name)?;
                tracing::warn!(claim = %name, %pool, %message, "thin pool claim failed");
                record_event(
                    &ctx,
                    object_ref(&*claim),
                    "Warning",
                    "ThinPoolClaimFail",
                    &message,
                )
                .await;
            }
            Ok(Action::requeue(FAILED_RETRY))
        }
    }
}

/// Append the claim to the LocalStorageNode's `thinPoolExtendRecords` (once per uid and
/// description).
async fn record_extend(ctx: &NodeCtx, claim: &ThinPoolClaim) -> Result<()> {
    let node = &ctx.cfg.node_name;
    let lsns = ctx.store.all::<LocalStorageNode>();
    let Some(lsn) = lsns
        .get_opt(node)
        .await
        .ctx("get", "LocalStorageNode", node)?
    else {
        return Ok(());
    };
    let pool = &claim.spec.description.pool_name;
    let mut records = lsn
        .status
        .as_ref()
        .map(|s| s.thin_pool_extend_records.clone())
        .unwrap_or_default();
    let list = records.entry(pool.clone()).or_default();
    let rec = ThinPoolExtendRecord {
        node_name: node.clone(),
        description: claim.spec.description.clone(),
        uid: claim.metadata.uid.clone().unwrap_or_default(),
    };
    if list.contains(&rec) {
        return Ok(());
    }
    list.push(rec);
    lsns.patch_status(
        node,
        &json!({"status": {"thinPoolExtendRecords": {pool.as_str(): list}}}),
    )
    .await
    .ctx("patch status", "LocalStorageNode", node)?;
    Ok(())
}

/// `12.5` → `"12.50"` (lvm's own format).
fn pct(p: f64) -> String {
    format!("{p:.2}")
}

/// The LocalStorageNode view of a thin pool. The `PoolState` condition keeps its transition
/// time from `previous` while its reason is unchanged.
pub fn thin_pool_status(
    info: &ThinPoolInfo,
    previous: Option<&ApiThinPoolInfo>,
) -> ApiThinPoolInfo {
    let warnings = info.warnings();
    let (status, reason, message) = if warnings.is_empty() {
        (
            "False",
            REASON_POOL_STATE_NORMAL,
            format!(
                "data {:.1}% and metadata {:.1}% used (warning at 80%)",
                info.data_percent, info.metadata_percent
            ),
        )
    } else {
        ("True", REASON_POOL_STATE_WARNING, warnings.join("; "))
    };
    let prev_state = previous.and_then(|p| p.state.as_ref());
    let last_transition_time = match prev_state {
        Some(c) if c.reason == reason => c.last_transition_time.clone(),
        _ => now_time(),
    };
    let cap = info.capacity();
    let current = if info.data_bytes == 0 {
        0.0
    } else {
        info.provisioned_bytes as f64 / info.data_bytes as f64
    };
    ApiThinPoolInfo {
        name: info.name.clone(),
        size: info.data_bytes as i64,
        metadata_size: info.metadata_bytes as i64,
        metadata_percent: Some(pct(info.metadata_percent)),
        data_percent: Some(pct(info.data_percent)),
        total_provisioned_size: cap.provisioned_bytes as i64,
        current_provision_ratio: Some(pct(current)),
        over_provision_ratio: Some(hwameistor_engine::lvm::thin::format_ratio(
            info.over_provision_ratio,
        )),
        thin_volumes: info.thin_volumes.clone(),
        state: Some(Condition {
            type_: CONDITION_POOL_STATE.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time,
            observed_generation: None,
        }),
    }
}

/// Fill `thinPool` of every pool in `host` from the engine (pools without a thin pool get
/// none), and record a Warning Event when a pool's usage crosses 80 %. `reported` is the
/// previous report (for transition times and to notice the crossing).
pub async fn report_thin_pools(
    ctx: &NodeCtx,
    host: &mut BTreeMap<String, LocalPool>,
    reported: &BTreeMap<String, LocalPool>,
) -> Result<()> {
    for (name, pool) in host.iter_mut() {
        let info = ctx
            .engine
            .thin_pool(name)
            .await
            .map_err(|source| Error::Engine {
                op: "thin pool",
                pool: name.clone(),
                volume: THIN_POOL_LV.into(),
                source: Box::new(source),
            })?;
        let previous = reported.get(name).and_then(|p| p.thin_pool.as_ref());
        pool.thin_pool = info.as_ref().map(|i| thin_pool_status(i, previous));
        let was_warning = previous
            .and_then(|p| p.state.as_ref())
            .is_some_and(|c| c.reason == REASON_POOL_STATE_WARNING);
        if let Some(i) = &info {
            let warnings = i.warnings();
            if !warnings.is_empty() && !was_warning {
                let message = format!("pool {name}: {}", warnings.join("; "));
                tracing::warn!(node = %ctx.cfg.node_name, %message, "thin pool usage high");
                record_event(
                    ctx,
                    lsn_ref(&ctx.cfg.node_name),
                    "Warning",
                    "ThinPoolUsageHigh",
                    &message,
                )
                .await;
            }
        }
    }
    Ok(())
}

/// The ledger pool of a reported pool's thin pool: (`<pool>/thin`, report with capacity
/// `size × ratio`, used = provisioned, and the thin volumes' sizes from `size_of`).
pub fn ledger_thin_pool(
    pool_name: &str,
    pool: &LocalPool,
    size_of: impl Fn(&str) -> u64,
) -> Option<(String, PoolReport)> {
    let tp = pool.thin_pool.as_ref()?;
    let ratio = tp
        .over_provision_ratio
        .as_deref()
        .and_then(|r| parse_ratio(r).ok())
        .unwrap_or(1.0);
    let cap = ThinPool {
        size_bytes: tp.size.max(0) as u64,
        over_provision_ratio: ratio,
        provisioned_bytes: tp.total_provisioned_size.max(0) as u64,
    };
    let volumes = tp
        .thin_volumes
        .iter()
        .map(|v| (v.clone(), size_of(v)))
        .collect();
    Some((
        ledger_pool(pool_name, true),
        thin_pool_report(&cap, volumes),
    ))
}

/// For tests and tools: whether an engine error message says the engine has no thin pools.
pub fn is_no_thin_pools(message: &str) -> bool {
    message.contains("has no thin pools")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(
        capacity: i64,
        percent: Option<i64>,
        ratio: &str,
        meta: i64,
    ) -> ThinPoolClaimDescription {
        ThinPoolClaimDescription {
            pool_name: "LocalStorage_PoolHDD".into(),
            capacity,
            capacity_percent: percent,
            over_provision_ratio: Some(ratio.into()),
            pool_metadata_size: meta,
        }
    }

    #[test]
    fn claim_to_request() {
        let r = thin_pool_request(&desc(10, None, "2.5", 1), 0).unwrap();
        assert_eq!(
            (r.data_bytes, r.metadata_bytes, r.over_provision_ratio),
            (10 * GIB, GIB, 2.5)
        );
        let r = thin_pool_request(&desc(0, Some(50), "", 0), 1000 * GIB / 10).unwrap();
        assert_eq!((r.data_bytes, r.metadata_bytes), (50 * GIB, 0));
        assert_eq!(r.over_provision_ratio, 1.0, "empty ratio is 1.0");
        for (d, needle) in [
            (desc(0, None, "1", 1), "required"),
            (desc(1, Some(10), "1", 1), "not both"),
            (desc(0, Some(96), "1", 1), "between 1 and 95"),
            (desc(1, None, "0.5", 1), "overProvisionRatio"),
            (desc(1, None, "x", 1), "overProvisionRatio"),
            (desc(1, None, "1", -1), "poolMetadataSize"),
        ] {
            let e = thin_pool_request(&d, 100 * GIB).unwrap_err();
            assert!(e.contains(needle), "{e} lacks {needle}");
        }
        let mut bad = desc(1, None, "1", 1);
        bad.pool_name = "LocalDisk_PoolHDD".into();
        assert!(
            thin_pool_request(&bad, GIB)
                .unwrap_err()
                .contains("not an LVM pool")
        );
        assert!(
            thin_pool_request(&desc(0, Some(1), "1", 0), 10).is_err(),
            "empty"
        );
    }

    fn engine_info(data_pct: f64, meta_pct: f64) -> ThinPoolInfo {
        ThinPoolInfo {
            pool: "LocalStorage_PoolHDD".into(),
            name: THIN_POOL_LV.into(),
            data_bytes: 4 * GIB,
            metadata_bytes: 64 << 20,
            data_percent: data_pct,
            metadata_percent: meta_pct,
            over_provision_ratio: 2.0,
            provisioned_bytes: 6 * GIB,
            thin_volumes: vec!["a".into(), "b".into()],
            thin_snapshots: vec![],
        }
    }

    #[test]
    fn status_and_warning_condition() {
        let s = thin_pool_status(&engine_info(10.0, 5.0), None);
        assert_eq!(s.size, (4 * GIB) as i64);
        assert_eq!(s.total_provisioned_size, (6 * GIB) as i64);
        assert_eq!(s.current_provision_ratio.as_deref(), Some("1.50"));
        assert_eq!(s.over_provision_ratio.as_deref(), Some("2"));
        assert_eq!(s.data_percent.as_deref(), Some("10.00"));
        let c = s.state.clone().unwrap();
        assert_eq!(
            (c.type_.as_str(), c.reason.as_str()),
            ("PoolState", "PoolStateNormal")
        );
        let w = thin_pool_status(&engine_info(80.0, 5.0), Some(&s));
        let wc = w.state.clone().unwrap();
        assert_eq!(wc.reason, "PoolStateWarning");
        assert_eq!(wc.status, "True");
        assert!(wc.message.contains("data 80.0% used"), "{}", wc.message);
        let m = thin_pool_status(&engine_info(10.0, 91.0), Some(&w));
        let mc = m.state.unwrap();
        assert!(mc.message.contains("metadata 91.0%"), "{}", mc.message);
        assert_eq!(
            mc.last_transition_time, wc.last_transition_time,
            "same reason keeps the time"
        );
    }

    #[test]
    fn ledger_pool_from_the_report() {
        let mut pool = hwameistor_api::fixtures::lvm_pool(PoolClass::HDD, (10 * GIB) as i64);
        assert!(ledger_thin_pool("LocalStorage_PoolHDD", &pool, |_| 0).is_none());
        pool.thin_pool = Some(thin_pool_status(&engine_info(1.0, 1.0), None));
        let (name, r) = ledger_thin_pool("LocalStorage_PoolHDD", &pool, |v| {
            if v == "a" { GIB } else { 5 * GIB }
        })
        .unwrap();
        assert_eq!(name, "LocalStorage_PoolHDD/thin");
        assert_eq!(r.total_bytes, 8 * GIB, "4 GiB × 2");
        assert_eq!(r.used_bytes, 6 * GIB);
        assert_eq!(r.volumes.get("b"), Some(&(5 * GIB)));
        assert_eq!(r.used_volumes, 2);
    }
}
