//! The node agent: LocalStorageNode registration, heartbeat, pools from claims, pool
//! re-reads from the host with drift reports, orphan reports, and the replica controller.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hwameistor_api::common::LocalDevice;
use hwameistor_api::consts::{
    ANNOTATION_STORAGE_IPV4, REASON_STORAGE_EXPAND_FAILURE, REASON_STORAGE_EXPAND_SUCCESS,
};
use hwameistor_api::{
    LocalDisk, LocalDiskClaim, LocalPool, LocalStorageNode, LocalStorageNodeSpec,
    LocalVolumeReplica, StorageNodeCondition, Topology,
};
use hwameistor_core::placement::MAX_VOLUMES_PER_POOL;
use hwameistor_core::types::{
    ClaimPhase, ConditionStatus, DiskOwner, DiskState, NodeState, PoolClass,
    StorageNodeConditionType,
};
use hwameistor_engine::qos::Throttler;
use hwameistor_engine::{PoolInfo, SharedEngine};
use hwameistor_exec::SharedRunner;
use hwameistor_store::Store;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::controller::Action;
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::util::{StoreExt, controller_for, now_rfc3339, now_time, run_controller};
use super::{ANNOTATION_HEARTBEAT, ANNOTATION_ORPHANS, Error, Result, replica};

/// Configuration of the node agent.
#[derive(Debug, Clone)]
pub struct NodeAgentConfig {
    /// This node's name (the LocalStorageNode's name).
    pub node_name: String,
    /// Storage IP used when neither the LocalStorageNode spec nor the node annotation gives
    /// one (typically the node's internal address, from the command line or the environment).
    pub storage_ip: Option<String>,
    /// Node annotation that carries the storage IP.
    pub storage_ip_annotation: String,
    /// Topology written into a new LocalStorageNode.
    pub zone: String,
    pub region: String,
    /// How often the agent writes its heartbeat, re-reads its pools from the host and looks
    /// for orphans.
    pub sync_interval: Duration,
    /// How often every replica is re-checked against the host even without changes.
    pub resync_interval: Duration,
    /// Where `spec.volumeQoS` limits are written (cgroup v1 blkio or v2 io.max). `None`: no
    /// throttling; replicas that ask for limits get a `QoS` condition saying so.
    pub throttler: Option<Throttler>,
}

impl NodeAgentConfig {
    /// Defaults for `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        NodeAgentConfig {
            node_name: node_name.into(),
            storage_ip: None,
            storage_ip_annotation: ANNOTATION_STORAGE_IPV4.to_owned(),
            zone: "default".into(),
            region: "default".into(),
            sync_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(60),
            throttler: None,
        }
    }
}

/// Shared state of the node agent's reconcilers.
#[derive(Debug)]
pub struct NodeCtx {
    pub cfg: NodeAgentConfig,
    pub store: Store,
    pub engine: SharedEngine,
    pub runner: SharedRunner,
    /// Signalled after every engine mutation so the pool report follows promptly.
    pub pools_changed: Notify,
    orphans: Mutex<Vec<String>>,
}

impl NodeCtx {
    pub fn new(
        cfg: NodeAgentConfig,
        store: Store,
        engine: SharedEngine,
        runner: SharedRunner,
    ) -> Arc<Self> {
        Arc::new(NodeCtx {
            cfg,
            store,
            engine,
            runner,
            pools_changed: Notify::new(),
            orphans: Mutex::new(Vec::new()),
        })
    }

    /// Orphan volumes found by the last [`sync_node`] (`pool/volume`).
    pub fn orphans(&self) -> Vec<String> {
        self.orphans.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

/// How long the pool report waits after a volume change for further changes to gather.
const POOL_SYNC_SETTLE: Duration = Duration::from_millis(500);

/// Run the node agent until `shutdown`: register the LocalStorageNode, re-read the pools from
/// the host, then keep the heartbeat/pool/orphan loop, the claim controller and the replica
/// controller running.
pub async fn run_node_agent(
    cfg: NodeAgentConfig,
    store: Store,
    engine: SharedEngine,
    runner: SharedRunner,
    shutdown: CancellationToken,
) -> Result<()> {
    let ctx = NodeCtx::new(cfg, store, engine, runner);
    // Registration must succeed before anything else; retry until it does.
    loop {
        match register_node(&ctx).await {
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(node = %ctx.cfg.node_name, error = %e, "registering LocalStorageNode failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(super::ERROR_BACKOFF) => {}
                }
            }
        }
    }
    // Re-attach every volume the host holds (loop devices and LVs do not survive a reboot).
    if let Err(e) = ctx.engine.activate_all().await {
        tracing::warn!(node = %ctx.cfg.node_name, error = %e, "activating volumes at start failed");
    }
    let sync_loop = {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            loop {
                if let Err(e) = sync_node(&ctx).await {
                    tracing::warn!(node = %ctx.cfg.node_name, error = %e, "node sync failed");
                }
                let last_pass = tokio::time::Instant::now();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ctx.cfg.sync_interval) => {}
                    _ = ctx.pools_changed.notified() => {
                        // A burst of creates/deletes notifies once per volume: a change soon
                        // after a pass waits a moment so the rest of the burst joins the next
                        // pass (each pass re-reads every pool and volume from the engine).
                        // Capacity is guarded by the placement ledger, not by this report.
                        let settle = POOL_SYNC_SETTLE.min(ctx.cfg.sync_interval);
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep_until(last_pass + settle) => {}
                        }
                    }
                }
            }
        }
    };
    let claims = run_controller(
        "localdiskclaim",
        controller_for(ctx.store.all::<LocalDiskClaim>()),
        reconcile_claim,
        ctx.clone(),
        shutdown.clone(),
    );
    let replicas = run_controller(
        "localvolumereplica",
        replica::controller(&ctx),
        replica::reconcile_replica,
        ctx.clone(),
        shutdown.clone(),
    );
    let thin_claims = run_controller(
        "thinpoolclaim",
        super::thin::controller(&ctx),
        super::thin::reconcile_thin_pool_claim,
        ctx.clone(),
        shutdown.clone(),
    );
    tokio::join!(sync_loop, claims, replicas, thin_claims);
    Ok(())
}

/// The storage IP: the LocalStorageNode spec's, else the node annotation, else the
/// configured address, else the node's InternalIP.
pub fn resolve_storage_ip(
    spec_ip: &str,
    node: Option<&Node>,
    annotation: &str,
    configured: Option<&str>,
) -> Option<String> {
    if !spec_ip.is_empty() {
        return Some(spec_ip.to_owned());
    }
    if let Some(ip) = node
        .and_then(|n| n.metadata.annotations.as_ref())
        .and_then(|a| a.get(annotation))
        .filter(|ip| !ip.is_empty())
    {
        return Some(ip.clone());
    }
    if let Some(ip) = configured.filter(|ip| !ip.is_empty()) {
        return Some(ip.to_owned());
    }
    node.and_then(|n| n.status.as_ref())
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
}

/// Create or update this node's LocalStorageNode (hostname, storage IP, topology).
pub async fn register_node(ctx: &NodeCtx) -> Result<LocalStorageNode> {
    let name = &ctx.cfg.node_name;
    let lsns = ctx.store.all::<LocalStorageNode>();
    // The Kubernetes Node may not exist (standalone mode) or be unreadable; both are fine.
    let node = match ctx.store.all::<Node>().get_opt(name).await {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(node = %name, error = %e, "cannot read the Node object");
            None
        }
    };
    let existing = lsns
        .get_opt(name)
        .await
        .ctx("get", "LocalStorageNode", name)?;
    let spec_ip = existing
        .as_ref()
        .map(|l| l.spec.storage_ip.clone())
        .unwrap_or_default();
    let ip = resolve_storage_ip(
        &spec_ip,
        node.as_ref(),
        &ctx.cfg.storage_ip_annotation,
        ctx.cfg.storage_ip.as_deref(),
    )
    .unwrap_or_default();
    let topology = Topology {
        zone: ctx.cfg.zone.clone(),
        region: ctx.cfg.region.clone(),
    };
    match existing {
        None => {
            let lsn = LocalStorageNode::new(
                name,
                LocalStorageNodeSpec {
                    hostname: name.clone(),
                    storage_ip: ip,
                    topology: Some(topology),
                },
            );
            let created = lsns
                .create(&lsn)
                .await
                .ctx("create", "LocalStorageNode", name)?;
            tracing::info!(node = %name, storage_ip = %created.spec.storage_ip, "registered LocalStorageNode");
            Ok(created)
        }
        Some(lsn) => {
            if lsn.spec.storage_ip == ip
                && lsn.spec.hostname == *name
                && lsn.spec.topology.is_some()
            {
                return Ok(lsn);
            }
            let mut patch = json!({"spec": {"hostname": name, "storageIP": ip}});
            if lsn.spec.topology.is_none() {
                patch["spec"]["topogoly"] =
                    json!({"zone": topology.zone, "region": topology.region});
            }
            lsns.patch(name, &patch)
                .await
                .ctx("patch", "LocalStorageNode", name)
        }
    }
}

/// The LocalPool report of one engine pool.
pub fn pool_report(info: &PoolInfo) -> Option<LocalPool> {
    let class = PoolClass::from_pool_name(&info.name)?;
    let used_count = i64::from(info.volume_count);
    let max = i64::from(MAX_VOLUMES_PER_POOL);
    Some(LocalPool {
        name: info.name.clone(),
        class,
        pool_type: Default::default(),
        path: info.path.display().to_string(),
        total_capacity_bytes: info.total_bytes as i64,
        used_capacity_bytes: info.used_bytes as i64,
        volume_capacity_bytes_limit: info.max_volume_bytes as i64,
        free_capacity_bytes: info.free_bytes as i64,
        total_volume_count: max,
        used_volume_count: used_count,
        free_volume_count: (max - used_count).max(0),
        disks: info
            .disks
            .iter()
            .map(|d| LocalDevice {
                dev_path: d.dev_path.display().to_string(),
                disk_type: Some(class.into()),
                capacity_bytes: d.capacity_bytes as i64,
                state: DiskState::InUse,
            })
            .collect(),
        volumes: info.volumes.clone(),
        thin_pool: None,
    })
}

/// Differences between the last reported pools and the host, as human-readable lines.
pub fn pool_drift(
    reported: &BTreeMap<String, LocalPool>,
    host: &BTreeMap<String, LocalPool>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (name, r) in reported {
        match host.get(name) {
            None => out.push(format!("pool {name} is reported but absent on the host")),
            Some(h) => {
                let rd: Vec<&str> = r.disks.iter().map(|d| d.dev_path.as_str()).collect();
                let hd: Vec<&str> = h.disks.iter().map(|d| d.dev_path.as_str()).collect();
                if rd != hd {
                    out.push(format!(
                        "pool {name}: disks reported {rd:?}, host has {hd:?}"
                    ));
                }
                if r.total_capacity_bytes != h.total_capacity_bytes {
                    out.push(format!(
                        "pool {name}: total reported {} bytes, host has {}",
                        r.total_capacity_bytes, h.total_capacity_bytes
                    ));
                }
                let mut rv = r.volumes.clone();
                let mut hv = h.volumes.clone();
                rv.sort();
                hv.sort();
                if rv != hv {
                    out.push(format!(
                        "pool {name}: volumes reported {rv:?}, host has {hv:?}"
                    ));
                }
            }
        }
    }
    for name in host.keys().filter(|n| !reported.contains_key(*n)) {
        out.push(format!(
            "pool {name} exists on the host but was not reported"
        ));
    }
    out
}

/// One heartbeat pass: re-read the pools from the engine, report drift and orphans, write the
/// pools, the state (Ready unless in Maintain) and the heartbeat.
pub async fn sync_node(ctx: &NodeCtx) -> Result<()> {
    let name = &ctx.cfg.node_name;
    let lsns = ctx.store.all::<LocalStorageNode>();
    let lsn = match lsns
        .get_opt(name)
        .await
        .ctx("get", "LocalStorageNode", name)?
    {
        Some(l) => l,
        None => register_node(ctx).await?,
    };
    let infos = ctx
        .engine
        .list_pools()
        .await
        .map_err(|source| Error::Engine {
            op: "list pools",
            pool: "*".into(),
            volume: "*".into(),
            source: Box::new(source),
        })?;
    let mut host: BTreeMap<String, LocalPool> = infos
        .iter()
        .filter_map(pool_report)
        .map(|p| (p.name.clone(), p))
        .collect();
    let reported = lsn
        .status
        .as_ref()
        .map(|s| s.pools.clone())
        .unwrap_or_default();
    super::thin::report_thin_pools(ctx, &mut host, &reported).await?;
    for line in pool_drift(&reported, &host) {
        tracing::info!(node = %name, drift = %line, "pool report differs from the host; the host wins");
    }

    // Orphans: volumes in the engine that no replica of this node references.
    let replicas = ctx
        .store
        .all::<LocalVolumeReplica>()
        .list(&Default::default())
        .await
        .ctx("list", "LocalVolumeReplica", "*")?;
    let known: HashSet<String> = replicas
        .items
        .iter()
        .filter(|r| r.spec.node_name == *name)
        .map(|r| r.spec.volume_name.clone())
        .collect();
    let orphans = ctx
        .engine
        .find_orphans(&known)
        .await
        .map_err(|source| Error::Engine {
            op: "find orphans",
            pool: "*".into(),
            volume: "*".into(),
            source: Box::new(source),
        })?;
    let mut orphan_names: Vec<String> = orphans
        .iter()
        .map(|v| format!("{}/{}", v.pool, v.name))
        .collect();
    orphan_names.sort();
    let previous = ctx.orphans();
    if orphan_names != previous {
        for o in orphan_names.iter().filter(|o| !previous.contains(o)) {
            tracing::warn!(node = %name, volume = %o, "orphan volume: held by the engine, referenced by no LocalVolumeReplica; not deleting it");
        }
    }
    if let Ok(mut g) = ctx.orphans.lock() {
        *g = orphan_names.clone();
    }

    let state = lsn.status.as_ref().map(|s| s.state).unwrap_or_default();
    let new_state = if state == NodeState::Maintain {
        NodeState::Maintain
    } else {
        NodeState::Ready
    };
    // A merge patch that turns the reported pools into the host's: keys the host no longer
    // has (a pool, an empty volume list) must be nulled explicitly.
    let pools_patch = merge_patch_between(
        &serde_json::to_value(&reported).unwrap_or_default(),
        &serde_json::to_value(&host).unwrap_or_default(),
    );
    lsns.patch_status(
        name,
        &json!({"status": {"pools": pools_patch, "state": new_state}}),
    )
    .await
    .ctx("patch status", "LocalStorageNode", name)?;
    lsns.patch(
        name,
        &json!({"metadata": {"annotations": {
            ANNOTATION_HEARTBEAT: now_rfc3339(),
            ANNOTATION_ORPHANS: orphan_names.join(","),
        }}}),
    )
    .await
    .ctx("patch", "LocalStorageNode", name)?;
    Ok(())
}

/// The JSON merge patch (RFC 7386) that turns `old` into `new`.
pub fn merge_patch_between(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut out = serde_json::Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov) => {
                        out.insert(k.clone(), merge_patch_between(ov, nv));
                    }
                    None => {
                        out.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                out.insert(k.clone(), Value::Null);
            }
            Value::Object(out)
        }
        (_, n) => n.clone(),
    }
}

/// Set condition `kind` to True (and its opposite to False) with reason and message.
fn set_expand_condition(
    conditions: &mut Vec<StorageNodeCondition>,
    kind: StorageNodeConditionType,
    reason: &str,
    message: String,
) {
    let now = now_time();
    let opposite = match kind {
        StorageNodeConditionType::ExpandSuccess => StorageNodeConditionType::ExpandFailure,
        _ => StorageNodeConditionType::ExpandSuccess,
    };
    for c in conditions
        .iter_mut()
        .filter(|c| c.type_ == opposite && c.status == ConditionStatus::True)
    {
        c.status = ConditionStatus::False;
        c.last_transition_time = Some(now.clone());
        c.last_update_time = Some(now.clone());
    }
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(c) => {
            if c.status != ConditionStatus::True {
                c.last_transition_time = Some(now.clone());
            }
            c.status = ConditionStatus::True;
            c.last_update_time = Some(now);
            c.reason = reason.to_owned();
            c.message = message;
        }
        None => conditions.push(StorageNodeCondition {
            type_: kind,
            status: ConditionStatus::True,
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
            reason: reason.to_owned(),
            message,
        }),
    }
}

/// Consume a LocalDiskClaim bound for `local-storage` on this node: build or extend the pools
/// of its disks, record the extension, set ExpandSuccess/ExpandFailure, mark it Consumed.
pub async fn reconcile_claim(claim: Arc<LocalDiskClaim>, ctx: Arc<NodeCtx>) -> Result<Action> {
    let me = &ctx.cfg.node_name;
    if claim.spec.node_name != *me
        || !matches!(
            claim.spec.owner,
            DiskOwner::LocalStorage | DiskOwner::Unknown
        )
    {
        return Ok(Action::await_change());
    }
    let name = claim.metadata.name.clone().unwrap_or_default();
    let claims = ctx.store.all::<LocalDiskClaim>();
    let Some(claim) = claims
        .get_opt(&name)
        .await
        .ctx("get", "LocalDiskClaim", &name)?
    else {
        return Ok(Action::await_change());
    };
    if claim.status.as_ref().map(|s| s.status) != Some(ClaimPhase::Bound) {
        return Ok(Action::await_change());
    }

    // Disks of the claim, grouped by pool class.
    let disks = ctx.store.all::<LocalDisk>();
    let mut by_pool: BTreeMap<&'static str, Vec<PathBuf>> = BTreeMap::new();
    for r in &claim.spec.disk_refs {
        let Some(dname) = r.name.as_deref() else {
            continue;
        };
        let disk = disks.get(dname).await.ctx("get", "LocalDisk", dname)?;
        if disk.spec.device_path.is_empty() {
            return Err(Error::Invalid {
                kind: "LocalDisk",
                name: dname.to_owned(),
                reason: "spec.devicePath is empty".into(),
            });
        }
        let class = disk
            .spec
            .disk_attributes
            .as_ref()
            .and_then(|a| a.disk_type)
            .and_then(|t| t.pool_class())
            .or_else(|| {
                claim
                    .spec
                    .description
                    .disk_type
                    .and_then(|t| t.pool_class())
            })
            .unwrap_or(PoolClass::HDD);
        by_pool
            .entry(class.lvm_pool_name())
            .or_default()
            .push(PathBuf::from(&disk.spec.device_path));
    }

    let lsns = ctx.store.all::<LocalStorageNode>();
    let lsn = lsns.get(me).await.ctx("get", "LocalStorageNode", me)?;
    let mut status = lsn.status.clone().unwrap_or_default();
    let mut failure: Option<String> = None;
    for (pool, new_disks) in &by_pool {
        // The host is the truth: extend the pool's current disks with the new ones.
        let current = ctx
            .engine
            .pool_info(pool)
            .await
            .map_err(|source| Error::Engine {
                op: "pool info",
                pool: (*pool).into(),
                volume: "-".into(),
                source: Box::new(source),
            })?;
        let mut all: Vec<PathBuf> = current
            .map(|p| p.disks.into_iter().map(|d| d.dev_path).collect())
            .unwrap_or_default();
        for d in new_disks {
            if !all.contains(d) {
                all.push(d.clone());
            }
        }
        match ctx.engine.ensure_pool(pool, &all).await {
            Ok(info) => {
                tracing::info!(node = %me, pool, disks = ?new_disks, total_bytes = info.total_bytes, "pool created/extended");
                let records = status
                    .pool_extend_records
                    .entry((*pool).to_owned())
                    .or_default();
                if !records.contains(&claim.spec) {
                    records.push(claim.spec.clone());
                }
            }
            Err(e) => {
                tracing::warn!(node = %me, pool, error = %e, "pool expansion failed");
                failure = Some(format!("Failed to expand storage capacity, err: {e}"));
                break;
            }
        }
    }
    ctx.pools_changed.notify_one();
    match failure {
        Some(message) => {
            set_expand_condition(
                &mut status.conditions,
                StorageNodeConditionType::ExpandFailure,
                REASON_STORAGE_EXPAND_FAILURE,
                message,
            );
            write_lsn_claim_status(&ctx, &status).await?;
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        None => {
            set_expand_condition(
                &mut status.conditions,
                StorageNodeConditionType::ExpandSuccess,
                REASON_STORAGE_EXPAND_SUCCESS,
                "Successfully to expand storage capacity".into(),
            );
            write_lsn_claim_status(&ctx, &status).await?;
            claims
                .patch_status(&name, &json!({"status": {"status": ClaimPhase::Consumed}}))
                .await
                .ctx("patch status", "LocalDiskClaim", &name)?;
            tracing::info!(node = %me, claim = %name, "claim consumed");
            Ok(Action::await_change())
        }
    }
}

/// Write the claim bookkeeping (conditions, extension records) of the LocalStorageNode.
async fn write_lsn_claim_status(
    ctx: &NodeCtx,
    status: &hwameistor_api::LocalStorageNodeStatus,
) -> Result<()> {
    let name = &ctx.cfg.node_name;
    ctx.store
        .all::<LocalStorageNode>()
        .patch_status(
            name,
            &json!({"status": {
                "conditions": status.conditions,
                "poolExtendRecords": status.pool_extend_records,
            }}),
        )
        .await
        .ctx("patch status", "LocalStorageNode", name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};
    use kube::api::ObjectMeta;

    fn node(annotation: Option<&str>, internal: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                annotations: annotation
                    .map(|a| [(ANNOTATION_STORAGE_IPV4.to_owned(), a.to_owned())].into()),
                ..Default::default()
            },
            status: internal.map(|ip| NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn storage_ip_precedence() {
        let a = ANNOTATION_STORAGE_IPV4;
        let n = node(Some("10.0.0.2"), Some("10.0.0.3"));
        assert_eq!(
            resolve_storage_ip("10.0.0.1", Some(&n), a, Some("10.0.0.4")).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            resolve_storage_ip("", Some(&n), a, Some("10.0.0.4")).as_deref(),
            Some("10.0.0.2")
        );
        let n = node(None, Some("10.0.0.3"));
        assert_eq!(
            resolve_storage_ip("", Some(&n), a, Some("10.0.0.4")).as_deref(),
            Some("10.0.0.4")
        );
        assert_eq!(
            resolve_storage_ip("", Some(&n), a, None).as_deref(),
            Some("10.0.0.3")
        );
        assert_eq!(resolve_storage_ip("", None, a, None), None);
    }

    #[test]
    fn merge_patch_nulls_removed_keys() {
        let old = json!({"a": {"volumes": ["x"], "total": 1}, "gone": {"total": 2}});
        let new = json!({"a": {"total": 1}});
        let p = merge_patch_between(&old, &new);
        assert_eq!(p, json!({"a": {"volumes": null}, "gone": null}));
        assert_eq!(merge_patch_between(&new, &new), json!({}));
    }

    #[test]
    fn drift_lists_differences() {
        let pool = |disks: &[&str], vols: &[&str]| LocalPool {
            name: "LocalStorage_PoolHDD".into(),
            class: PoolClass::HDD,
            pool_type: Default::default(),
            path: String::new(),
            total_capacity_bytes: 10,
            used_capacity_bytes: 0,
            volume_capacity_bytes_limit: 10,
            free_capacity_bytes: 10,
            total_volume_count: 1000,
            used_volume_count: 0,
            free_volume_count: 1000,
            disks: disks
                .iter()
                .map(|d| LocalDevice {
                    dev_path: (*d).into(),
                    ..Default::default()
                })
                .collect(),
            volumes: vols.iter().map(|v| v.to_string()).collect(),
            thin_pool: None,
        };
        let k = "LocalStorage_PoolHDD".to_string();
        let same = BTreeMap::from([(k.clone(), pool(&["/dev/a"], &["v"]))]);
        assert!(pool_drift(&same, &same).is_empty());
        let host = BTreeMap::from([(k.clone(), pool(&["/dev/a", "/dev/b"], &[]))]);
        let d = pool_drift(&same, &host);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(pool_drift(&same, &BTreeMap::new())[0].contains("absent on the host"));
        assert!(pool_drift(&BTreeMap::new(), &same)[0].contains("not reported"));
    }
}
