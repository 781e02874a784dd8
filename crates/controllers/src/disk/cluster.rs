//! Cluster side of the disk manager: LocalDisk phases, LocalDiskAction rules, LocalDiskClaim
//! binding and clean-up, LocalDiskNode Ready/Offline.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hwameistor_api::{LocalDisk, LocalDiskAction, LocalDiskClaim, LocalDiskNode};
use hwameistor_core::disk::{
    ActionRule, ClaimCriteria, DiskView, RejectReason, heartbeat_state, match_claim,
    next_claim_state,
};
use hwameistor_core::types::{ClaimPhase, DiskOwner, DiskType, LocalDiskState, NodeState};
use hwameistor_store::{Object, Objects, Store};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::controller::Action;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::event::object_ref;

use super::{ANNOTATION_HEARTBEAT, ANNOTATION_REJECTED, Error, Result, StoreCtx, age_secs};

/// Settings of the cluster side.
#[derive(Debug, Clone)]
pub struct DiskClusterConfig {
    /// A LocalDiskNode whose heartbeat is older than this is Offline.
    pub offline_after: Duration,
    /// How often LocalDiskNode liveness is evaluated.
    pub liveness_interval: Duration,
    /// How often a claim that matched nothing is retried (it is also retried on any change
    /// of the claim).
    pub claim_retry: Duration,
}

impl Default for DiskClusterConfig {
    fn default() -> Self {
        DiskClusterConfig {
            offline_after: Duration::from_secs(60),
            liveness_interval: Duration::from_secs(10),
            claim_retry: Duration::from_secs(3),
        }
    }
}

/// Shared state of the cluster-side reconcilers.
#[derive(Debug)]
pub struct ClusterCtx {
    pub cfg: DiskClusterConfig,
    pub store: Store,
}

const ERROR_BACKOFF: Duration = Duration::from_secs(2);

async fn drive<K, F, Fut>(
    name: &'static str,
    objects: Objects<K>,
    reconcile: F,
    ctx: Arc<ClusterCtx>,
    shutdown: CancellationToken,
) where
    K: Object,
    F: FnMut(Arc<K>, Arc<ClusterCtx>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Action>> + Send + 'static,
{
    hwameistor_store::runtime::controller(objects, Default::default())
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(reconcile, error_policy::<K>, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(controller = name, error = %e, "reconcile round failed");
            }
        })
        .await;
}

fn error_policy<K: Object>(obj: Arc<K>, err: &Error, _ctx: Arc<ClusterCtx>) -> Action {
    let name = obj.meta().name.clone().unwrap_or_default();
    tracing::warn!(kind = %K::kind(&()), %name, reason = err.reason(), error = %err, "reconcile failed; retrying");
    Action::requeue(ERROR_BACKOFF)
}

/// Run the cluster side until `shutdown`.
pub async fn run_cluster(
    cfg: DiskClusterConfig,
    store: Store,
    shutdown: CancellationToken,
) -> Result<()> {
    let ctx = Arc::new(ClusterCtx {
        cfg,
        store: store.clone(),
    });
    let liveness = {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(ctx.cfg.liveness_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {
                        if let Err(e) = check_liveness(&ctx).await {
                            tracing::warn!(error = %e, "LocalDiskNode liveness check failed");
                        }
                    }
                }
            }
        }
    };
    tokio::join!(
        drive(
            "localdisk",
            store.all::<LocalDisk>(),
            reconcile_disk,
            ctx.clone(),
            shutdown.clone()
        ),
        drive(
            "localdiskclaim",
            store.all::<LocalDiskClaim>(),
            reconcile_claim,
            ctx.clone(),
            shutdown.clone()
        ),
        drive(
            "localdiskaction",
            store.all::<LocalDiskAction>(),
            reconcile_action,
            ctx.clone(),
            shutdown.clone()
        ),
        liveness,
    );
    Ok(())
}

fn name_of<K: Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

/// The phase machine of one LocalDisk (and the LocalDiskAction rules for it).
pub async fn reconcile_disk(ld: Arc<LocalDisk>, ctx: Arc<ClusterCtx>) -> Result<Action> {
    let name = name_of(ld.as_ref());
    let disks = ctx.store.all::<LocalDisk>();
    let Some(ld) = disks.get_opt(&name).await.ctx("get", "LocalDisk", &name)? else {
        return Ok(Action::await_change());
    };
    let current = ld
        .status
        .as_ref()
        .map(|s| s.claim_state)
        .unwrap_or_default();
    let claimed = ld.spec.claim_ref.is_some();
    let mut next = current;
    loop {
        let n = next_claim_state(next, ld.spec.partitioned, claimed);
        if n == next {
            break;
        }
        next = n;
    }
    if next != current {
        tracing::info!(disk = %name, from = %current.as_str(), to = %next.as_str(), "local disk phase");
        disks
            .patch_status(&name, &json!({"status": {"claimState": next}}))
            .await
            .ctx("patch status", "LocalDisk", &name)?;
    }
    if !ld.spec.reserved && ld.spec.state == Some(LocalDiskState::Active) {
        let actions = ctx.store.all::<LocalDiskAction>();
        for lda in actions
            .list(&Default::default())
            .await
            .ctx("list", "LocalDiskAction", "*")?
            .items
        {
            if apply_action(&ctx.store, &lda, &ld).await? {
                break;
            }
        }
    }
    Ok(Action::await_change())
}

fn rule_of(lda: &LocalDiskAction) -> ActionRule {
    ActionRule {
        min_capacity: lda.spec.rule.min_capacity,
        max_capacity: lda.spec.rule.max_capacity,
        device_path: lda.spec.rule.device_path.clone(),
    }
}

/// Reserve `ld` if `lda`'s rule matches it; records the match in the action's status.
async fn apply_action(store: &Store, lda: &LocalDiskAction, ld: &LocalDisk) -> Result<bool> {
    if ld.spec.reserved || !rule_of(lda).matches(ld.spec.capacity, &ld.spec.device_path) {
        return Ok(false);
    }
    let name = name_of(ld);
    let action = name_of(lda);
    tracing::info!(disk = %name, rule = %action, device = %ld.spec.device_path, "LocalDiskAction reserves disk");
    super::ops::reserve_disk(store, &name, true).await?;
    let mut latest = lda
        .status
        .as_ref()
        .map(|s| s.latest_matched_lds.clone())
        .unwrap_or_default();
    latest.retain(|n| *n != name);
    latest.insert(0, name);
    latest.truncate(hwameistor_api::consts::LDA_MAX_MATCHED_RECORDS);
    store
        .all::<LocalDiskAction>()
        .patch_status(&action, &json!({"status": {"latestMatchedLds": latest}}))
        .await
        .ctx("patch status", "LocalDiskAction", &action)?;
    Ok(true)
}

/// Apply one LocalDiskAction to every disk.
pub async fn reconcile_action(lda: Arc<LocalDiskAction>, ctx: Arc<ClusterCtx>) -> Result<Action> {
    let name = name_of(lda.as_ref());
    let Some(mut lda) = ctx
        .store
        .all::<LocalDiskAction>()
        .get_opt(&name)
        .await
        .ctx("get", "LocalDiskAction", &name)?
    else {
        return Ok(Action::await_change());
    };
    let disks = ctx
        .store
        .all::<LocalDisk>()
        .list(&Default::default())
        .await
        .ctx("list", "LocalDisk", "*")?
        .items;
    for ld in disks
        .iter()
        .filter(|d| d.spec.state == Some(LocalDiskState::Active))
    {
        if apply_action(&ctx.store, &lda, ld).await? {
            // keep the in-memory status current for the next record
            if let Some(fresh) = ctx
                .store
                .all::<LocalDiskAction>()
                .get_opt(&name)
                .await
                .ctx("get", "LocalDiskAction", &name)?
            {
                lda = fresh;
            }
        }
    }
    Ok(Action::await_change())
}

/// The claim-filter view of a LocalDisk.
pub fn disk_view(ld: &LocalDisk) -> DiskView {
    let attrs = ld.spec.disk_attributes.clone().unwrap_or_default();
    DiskView {
        name: name_of(ld),
        node: ld.spec.node_name.clone(),
        state: ld.spec.state.unwrap_or_default(),
        claim_state: ld
            .status
            .as_ref()
            .map(|s| s.claim_state)
            .unwrap_or_default(),
        reserved: ld.spec.reserved,
        owner: ld.spec.owner,
        capacity: ld.spec.capacity,
        disk_type: attrs.disk_type.unwrap_or(DiskType::Unknown),
        dev_type: if attrs.dev_type.is_empty() {
            "disk".into()
        } else {
            attrs.dev_type
        },
        device_path: ld.spec.device_path.clone(),
        has_partitions: ld.spec.partitioned || !ld.spec.partition_info.is_empty(),
        claimed_by: ld.spec.claim_ref.as_ref().and_then(|r| r.name.clone()),
    }
}

/// The claim's selection.
pub fn claim_criteria(ldc: &LocalDiskClaim) -> ClaimCriteria {
    let d = &ldc.spec.description;
    ClaimCriteria {
        node: ldc.spec.node_name.clone(),
        owner: ldc.spec.owner,
        disk_type: d.disk_type.filter(|t| *t != DiskType::Unknown),
        min_capacity: d.capacity,
        names: d.local_disk_names.clone(),
        device_paths: d.device_paths.clone(),
    }
}

fn claim_ref(ldc: &LocalDiskClaim) -> ObjectReference {
    object_ref(ldc)
}

fn disk_ref(ld: &LocalDisk) -> ObjectReference {
    ObjectReference {
        resource_version: ld.metadata.resource_version.clone(),
        ..object_ref(ld)
    }
}

/// Every disk's rejection reasons for a claim, as the annotation stores them.
pub fn rejection_map(rejected: &[(String, Vec<RejectReason>)]) -> BTreeMap<String, Vec<String>> {
    rejected
        .iter()
        .map(|(n, r)| (n.clone(), r.iter().map(ToString::to_string).collect()))
        .collect()
}

/// Drive one LocalDiskClaim: `""` → Pending → (bind) Bound → (consumer) Consumed →
/// ToBeDeleted → Deleted → object removed.
pub async fn reconcile_claim(ldc: Arc<LocalDiskClaim>, ctx: Arc<ClusterCtx>) -> Result<Action> {
    let name = name_of(ldc.as_ref());
    let claims = ctx.store.all::<LocalDiskClaim>();
    let Some(ldc) = claims
        .get_opt(&name)
        .await
        .ctx("get", "LocalDiskClaim", &name)?
    else {
        return Ok(Action::await_change());
    };
    let phase = ldc.status.as_ref().map(|s| s.status).unwrap_or_default();
    let set_phase = |p: ClaimPhase| {
        let claims = claims.clone();
        let name = name.clone();
        async move {
            tracing::info!(claim = %name, phase = %p.as_str(), "local disk claim phase");
            claims
                .patch_status(&name, &json!({"status": {"status": p}}))
                .await
                .ctx("patch status", "LocalDiskClaim", &name)
        }
    };
    match phase {
        ClaimPhase::Unknown => {
            set_phase(ClaimPhase::Pending).await?;
            Ok(Action::await_change())
        }
        ClaimPhase::Pending | ClaimPhase::Extending => {
            if !ldc.spec.disk_refs.is_empty() {
                set_phase(ClaimPhase::Bound).await?;
                return Ok(Action::await_change());
            }
            bind_claim(&ctx, &ldc).await
        }
        ClaimPhase::Bound => {
            if ldc.spec.disk_refs.is_empty() {
                set_phase(ClaimPhase::Pending).await?;
            }
            Ok(Action::await_change())
        }
        ClaimPhase::Consumed => {
            set_phase(ClaimPhase::ToBeDeleted).await?;
            Ok(Action::await_change())
        }
        ClaimPhase::ToBeDeleted => {
            set_phase(ClaimPhase::Deleted).await?;
            Ok(Action::await_change())
        }
        ClaimPhase::Deleted => {
            claims
                .delete(&name)
                .await
                .ctx("delete", "LocalDiskClaim", &name)?;
            tracing::info!(claim = %name, "consumed claim deleted");
            Ok(Action::await_change())
        }
    }
}

async fn bind_claim(ctx: &ClusterCtx, ldc: &LocalDiskClaim) -> Result<Action> {
    let name = name_of(ldc);
    let criteria = claim_criteria(ldc);
    let disks = ctx.store.all::<LocalDisk>();
    let all = disks
        .list(&Default::default())
        .await
        .ctx("list", "LocalDisk", "*")?
        .items;
    let mut matched = Vec::new();
    let mut rejected = Vec::new();
    for ld in &all {
        let reasons = match_claim(&criteria, &name, &disk_view(ld));
        if reasons.is_empty() {
            matched.push(ld.clone());
        } else if ld.spec.node_name == criteria.node || ld.spec.pre_node_name == criteria.node {
            // report only this node's disks; other nodes' disks are obviously not candidates
            rejected.push((name_of(ld), reasons));
        }
    }
    let rejections = rejection_map(&rejected);
    let rejections_json = serde_json::to_string(&rejections).unwrap_or_default();
    let previous = ldc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REJECTED))
        .cloned()
        .unwrap_or_default();
    if matched.is_empty() {
        if previous != rejections_json {
            let message = if rejections.is_empty() {
                format!("no disk on node {:?}", criteria.node)
            } else {
                rejections
                    .iter()
                    .map(|(d, r)| format!("{d}: {}", r.join("; ")))
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            tracing::info!(claim = %name, %message, "no disk matches the claim");
            ctx.store
                .all::<LocalDiskClaim>()
                .patch(
                    &name,
                    &json!({"metadata": {"annotations": {ANNOTATION_REJECTED: rejections_json}}}),
                )
                .await
                .ctx("annotate", "LocalDiskClaim", &name)?;
            record_event(&ctx.store, ldc, "Warning", "NoMatchingDisk", &message).await;
        }
        return Ok(Action::requeue(ctx.cfg.claim_retry));
    }
    let owner = match ldc.spec.owner {
        DiskOwner::Unknown => DiskOwner::LocalStorage,
        o => o,
    };
    let cref = claim_ref(ldc);
    let mut refs = Vec::new();
    let mut conflicts = 0;
    for ld in &matched {
        let dname = name_of(ld);
        // conditional on the version we matched: a concurrent change makes us re-evaluate
        let res = disks
            .patch(
                &dname,
                &json!({
                    "metadata": {"resourceVersion": ld.metadata.resource_version},
                    "spec": {"claimRef": cref, "owner": owner},
                }),
            )
            .await;
        match res {
            Ok(updated) => {
                disks
                    .patch_status(&dname, &json!({"status": {"claimState": hwameistor_core::types::DiskClaimState::Bound}}))
                    .await
                    .ctx("patch status", "LocalDisk", &dname)?;
                refs.push(disk_ref(&updated));
            }
            Err(e) if e.is_conflict() => {
                tracing::info!(claim = %name, disk = %dname, "disk changed while binding; will re-evaluate");
                conflicts += 1;
            }
            Err(e) => {
                return Err(Error::Store {
                    op: "bind",
                    kind: "LocalDisk",
                    name: dname,
                    source: e,
                });
            }
        }
    }
    // A disk that changed under us is looked at again before the claim is finalised;
    // the disks bound so far carry our claimRef and match again on the next pass.
    if refs.is_empty() || conflicts > 0 {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let bound: Vec<String> = refs.iter().filter_map(|r| r.name.clone()).collect();
    ctx.store
        .all::<LocalDiskClaim>()
        .patch(&name, &json!({"spec": {"diskRefs": refs}, "metadata": {"annotations": {ANNOTATION_REJECTED: rejections_json}}}))
        .await
        .ctx("bind", "LocalDiskClaim", &name)?;
    ctx.store
        .all::<LocalDiskClaim>()
        .patch_status(&name, &json!({"status": {"status": ClaimPhase::Bound}}))
        .await
        .ctx("patch status", "LocalDiskClaim", &name)?;
    tracing::info!(claim = %name, disks = ?bound, "claim bound");
    record_event(
        &ctx.store,
        ldc,
        "Normal",
        "Bound",
        &format!("bound disks: {}", bound.join(", ")),
    )
    .await;
    Ok(Action::await_change())
}

/// Record (or update) the Kubernetes Event about a claim; failures are only logged.
async fn record_event(
    store: &Store,
    ldc: &LocalDiskClaim,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let source = crate::event::Source {
        component: "local-disk-manager",
        host: None,
    };
    crate::event::record_event(store, claim_ref(ldc), source, type_, reason, message).await;
}

/// Set each LocalDiskNode Ready/Offline from its heartbeat age (Maintain is kept).
pub async fn check_liveness(ctx: &ClusterCtx) -> Result<()> {
    let nodes = ctx.store.all::<LocalDiskNode>();
    let offline_after = ctx.cfg.offline_after.as_secs().max(1) as i64;
    for ldn in nodes
        .list(&Default::default())
        .await
        .ctx("list", "LocalDiskNode", "*")?
        .items
    {
        let name = name_of(&ldn);
        let current = ldn.status.as_ref().map(|s| s.state).unwrap_or_default();
        if current == NodeState::Maintain {
            continue;
        }
        let age = age_secs(
            ldn.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_HEARTBEAT)),
        );
        let next = match age {
            Some(a) => heartbeat_state(a, offline_after),
            None => NodeState::Offline,
        };
        if next != current {
            tracing::info!(node = %name, from = %current, to = %next, heartbeat_age_secs = ?age, "disk node state");
            nodes
                .patch_status(&name, &json!({"status": {"state": next}}))
                .await
                .ctx("patch status", "LocalDiskNode", &name)?;
        }
    }
    Ok(())
}
