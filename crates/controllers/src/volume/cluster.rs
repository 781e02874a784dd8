//! Cluster side: the LocalVolume state machine, replica placement with the capacity ledger,
//! LocalVolumeGroup co-location, and LocalStorageNode liveness.
//!
//! Placement decisions are serialised by one lock: each allocation builds the
//! [`CapacityLedger`] from a listing of the store (node reports plus every placed volume's
//! `spec.config` as a reservation) and plans. The decided config is then recorded as *pending*
//! and the lock is released; the write of `spec.config` runs outside it, so a burst of
//! placements shares the store's commits instead of queueing one commit each. The ledger of
//! every later allocation counts the pending configs as if written (a pending config replaces
//! what the store still shows for that volume), until the write is acknowledged (then the
//! store shows it) or fails (then nothing was reserved and the volume is placed again). The
//! next allocation therefore sees the previous one, however many volumes arrive at once and
//! before any node has reported them, and a restarted controller rebuilds the same ledger
//! from the store alone.
//!
//! The listing is kept for [`LISTING_TTL`] and reused by the allocations of a burst, each of
//! which writes its decision into it: listing the store per volume made a burst of N
//! placements cost N listings of N objects. A reused listing is "the store as listed plus
//! every decision since", so it never under-counts a reservation; what it can miss for the
//! TTL is a change made by others (a node's new report, a volume deleted), which makes it
//! briefly conservative, like any listing taken a moment earlier. A failed write drops it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hwameistor_api::{
    LocalStorageNode, LocalVolume, LocalVolumeExpand, LocalVolumeGroup, LocalVolumeReplica,
    LocalVolumeReplicaSpec, VolumeConfig, VolumeReplicaConfig,
};
use hwameistor_core::placement::{
    CapacityLedger, MAX_VOLUMES_PER_POOL, NodeReport, PlacementRequest, PoolReport, ledger_pool,
    plan_and_reserve,
};
use hwameistor_core::types::{NodeState, ReplicaState, VolumeState};
use hwameistor_core::volume::{
    ConfigView, ReplicaSummary, VolumeStep, VolumeView, node_state, round_up_to_extent, volume_step,
};
use hwameistor_store::Store;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::util::{StoreExt, age_secs, controller_for, random_suffix, run_controller, touched};
use super::{ANNOTATION_HEARTBEAT, Error, Result, expand, status};

/// Most steps applied in one pass.
const MAX_STEPS: usize = 8;

/// How long placements reuse one listing of the store (see the module docs).
pub const LISTING_TTL: Duration = Duration::from_secs(1);

/// Configuration of the cluster controllers.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// A node whose heartbeat is older than this is Offline.
    pub offline_after: Duration,
    /// How often node liveness is evaluated.
    pub liveness_interval: Duration,
    /// How often a volume is re-checked without changes.
    pub resync_interval: Duration,
    /// Retry delay when a volume cannot be placed (no capacity yet).
    pub placement_retry: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            offline_after: Duration::from_secs(60),
            liveness_interval: Duration::from_secs(10),
            resync_interval: Duration::from_secs(60),
            placement_retry: Duration::from_secs(10),
        }
    }
}

/// Shared state of the cluster controllers.
#[derive(Debug)]
pub struct ClusterCtx {
    pub cfg: ClusterConfig,
    pub store: Store,
    /// Serialises placement decisions and holds their listing (see the module docs).
    alloc: Mutex<Option<Listing>>,
    /// Configs decided but not yet acknowledged by the store, by volume name.
    pending: std::sync::Mutex<BTreeMap<String, VolumeConfig>>,
}

/// What placements are decided from: a listing of the store, with every decision taken since
/// written into `volumes`.
#[derive(Debug)]
struct Listing {
    taken: std::time::Instant,
    lsns: Vec<LocalStorageNode>,
    volumes: BTreeMap<String, LocalVolume>,
    replicas: Vec<LocalVolumeReplica>,
}

impl Listing {
    /// List the store; `pending` (copied before listing) replaces what the store still shows.
    async fn take(store: &Store, pending: &BTreeMap<String, VolumeConfig>) -> Result<Self> {
        let taken = std::time::Instant::now();
        let (lsns, volumes, replicas) = list_for_ledger(store).await?;
        let volumes = volumes
            .into_iter()
            .filter_map(|mut v| {
                let name = v.metadata.name.clone()?;
                if let Some(c) = pending.get(&name) {
                    v.spec.config = Some(c.clone());
                }
                Some((name, v))
            })
            .collect();
        Ok(Listing {
            taken,
            lsns,
            volumes,
            replicas,
        })
    }

    fn fresh(&self) -> bool {
        self.taken.elapsed() < LISTING_TTL
    }
}

/// Removes a volume's pending config when its write finished, however it finished.
struct PendingPlacement<'a> {
    ctx: &'a ClusterCtx,
    name: String,
}

impl Drop for PendingPlacement<'_> {
    fn drop(&mut self) {
        self.ctx.pending().remove(&self.name);
    }
}

impl ClusterCtx {
    pub fn new(cfg: ClusterConfig, store: Store) -> Arc<Self> {
        Arc::new(ClusterCtx {
            cfg,
            store,
            alloc: Mutex::new(None),
            pending: Default::default(),
        })
    }

    /// Free the placement listing once it is too old to be used (it holds every volume and
    /// replica; an idle server need not).
    fn drop_stale_listing(&self) {
        if let Ok(mut listing) = self.alloc.try_lock()
            && listing.as_ref().is_some_and(|l| !l.fresh())
        {
            *listing = None;
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VolumeConfig>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Run the LocalVolume and LocalVolumeExpand controllers and the node liveness loop until
/// `shutdown`.
pub async fn run_cluster_controllers(
    cfg: ClusterConfig,
    store: Store,
    shutdown: CancellationToken,
) -> Result<()> {
    let ctx = ClusterCtx::new(cfg, store);
    let volumes = controller_for(ctx.store.all::<LocalVolume>()).watches_stream(
        touched(ctx.store.all::<LocalVolumeReplica>()),
        |r: LocalVolumeReplica| Some(ObjectRef::<LocalVolume>::new(&r.spec.volume_name)),
    );
    let expands = controller_for(ctx.store.all::<LocalVolumeExpand>()).watches_stream(
        touched(ctx.store.all::<LocalVolume>()),
        // The expand object is named after its volume.
        |v: LocalVolume| {
            v.metadata
                .name
                .map(|n| ObjectRef::<LocalVolumeExpand>::new(&n))
        },
    );
    let liveness = {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            loop {
                if let Err(e) = check_liveness(&ctx).await {
                    tracing::warn!(error = %e, "node liveness check failed");
                }
                ctx.drop_stale_listing();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ctx.cfg.liveness_interval) => {}
                }
            }
        }
    };
    tokio::join!(
        run_controller(
            "localvolume",
            volumes,
            reconcile_volume,
            ctx.clone(),
            shutdown.clone()
        ),
        run_controller(
            "localvolumeexpand",
            expands,
            expand::reconcile_expand,
            ctx.clone(),
            shutdown.clone()
        ),
        liveness,
    );
    Ok(())
}

/// Set each LocalStorageNode Ready/Offline from its heartbeat age (Maintain is kept). Ready
/// replicas on an Offline node become NotReady.
pub async fn check_liveness(ctx: &ClusterCtx) -> Result<()> {
    let lsns = ctx.store.all::<LocalStorageNode>();
    let list = lsns
        .list(&Default::default())
        .await
        .ctx("list", "LocalStorageNode", "*")?;
    let offline_after = ctx.cfg.offline_after.as_secs().max(1);
    let mut offline = BTreeSet::new();
    for lsn in list.items {
        let name = lsn.metadata.name.clone().unwrap_or_default();
        let current = lsn.status.as_ref().map(|s| s.state).unwrap_or_default();
        let age = age_secs(
            lsn.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_HEARTBEAT)),
        );
        let next = node_state(current, age, offline_after);
        if next == NodeState::Offline {
            offline.insert(name.clone());
        }
        if next != current {
            tracing::info!(node = %name, from = %current, to = %next, heartbeat_age_secs = ?age, "node state changed");
            lsns.patch_status(&name, &json!({"status": {"state": next}}))
                .await
                .ctx("patch status", "LocalStorageNode", &name)?;
        }
    }
    if offline.is_empty() {
        return Ok(());
    }
    let replicas = ctx.store.all::<LocalVolumeReplica>();
    for r in replicas
        .list(&Default::default())
        .await
        .ctx("list", "LocalVolumeReplica", "*")?
        .items
    {
        let ready = r.status.as_ref().map(|s| s.state) == Some(ReplicaState::Ready);
        if ready && offline.contains(&r.spec.node_name) {
            let name = r.metadata.name.clone().unwrap_or_default();
            replicas
                .patch_status(&name, &json!({"status": {"state": ReplicaState::NotReady}}))
                .await
                .ctx("patch status", "LocalVolumeReplica", &name)?;
        }
    }
    Ok(())
}

fn replicas_of<'a>(
    all: &'a [LocalVolumeReplica],
    volume: &'a str,
) -> impl Iterator<Item = &'a LocalVolumeReplica> + 'a {
    all.iter().filter(move |r| r.spec.volume_name == volume)
}

fn view_of(lv: &LocalVolume, replicas: &[&LocalVolumeReplica]) -> VolumeView {
    VolumeView {
        state: lv.status.as_ref().map(|s| s.state).unwrap_or_default(),
        delete: lv.spec.delete || lv.metadata.deletion_timestamp.is_some(),
        replica_number: lv.spec.replica_number.max(1) as usize,
        required_bytes: lv.spec.required_capacity_bytes.max(0) as u64,
        config: lv.spec.config.as_ref().map(|c| ConfigView {
            nodes: c.replicas.iter().map(|r| r.hostname.clone()).collect(),
            required_bytes: c.required_capacity_bytes.max(0) as u64,
        }),
        replicas: replicas
            .iter()
            .map(|r| {
                let st = r.status.clone().unwrap_or_default();
                ReplicaSummary {
                    name: r.metadata.name.clone().unwrap_or_default(),
                    node: r.spec.node_name.clone(),
                    state: st.state,
                    required_bytes: r.spec.required_capacity_bytes.max(0) as u64,
                    allocated_bytes: st.allocated_capacity_bytes.max(0) as u64,
                    delete: r.spec.delete,
                }
            })
            .collect(),
    }
}

/// Reconcile one LocalVolume.
pub async fn reconcile_volume(obj: Arc<LocalVolume>, ctx: Arc<ClusterCtx>) -> Result<Action> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let volumes = ctx.store.all::<LocalVolume>();
    let replicas_api = ctx.store.all::<LocalVolumeReplica>();
    for _ in 0..MAX_STEPS {
        let Some(lv) = volumes
            .get_opt(&name)
            .await
            .ctx("get", "LocalVolume", &name)?
        else {
            return Ok(Action::await_change());
        };
        // Replicas are named `<volume>-<suffix>` (CreateReplicas below, their only maker):
        // read just those, not every replica of the cluster on every step.
        let all = replicas_api.list_prefixed(&format!("{name}-")).await.ctx(
            "list",
            "LocalVolumeReplica",
            &name,
        )?;
        let mine: Vec<&LocalVolumeReplica> = replicas_of(&all, &name).collect();

        // Live QoS changes follow the volume. An empty QoS is no QoS. Both fields are
        // written explicitly (a merge patch skips the empty ones, so `{}` or a dropped
        // field would change nothing), and no QoS removes the replica's field.
        if !lv.spec.delete {
            let want = lv.spec.volume_qos.clone().filter(|q| !q.is_empty());
            let qos = match &want {
                Some(q) => json!({"throughput": q.throughput, "iops": q.iops}),
                None => serde_json::Value::Null,
            };
            for r in mine.iter().filter(|r| {
                !r.spec.delete && r.spec.volume_qos.clone().filter(|q| !q.is_empty()) != want
            }) {
                let rname = r.metadata.name.clone().unwrap_or_default();
                replicas_api
                    .patch(&rname, &json!({"spec": {"volumeQoS": qos}}))
                    .await
                    .ctx("patch", "LocalVolumeReplica", &rname)?;
            }
        }

        let view = view_of(&lv, &mine);
        let step = volume_step(&view);
        tracing::debug!(volume = %name, ?step, "volume step");
        // A volume with snapshots keeps its replicas until they are deleted (status::).
        if view.delete
            && matches!(
                step,
                VolumeStep::SetState(VolumeState::ToBeDeleted) | VolumeStep::DeleteReplicas(_)
            )
            && !status::deletion_may_proceed(&ctx.store, &lv).await?
        {
            return Ok(Action::requeue(ctx.cfg.placement_retry));
        }
        match step {
            VolumeStep::Wait => return Ok(Action::requeue(ctx.cfg.resync_interval)),
            VolumeStep::SetState(state) => {
                volumes
                    .patch_status(&name, &json!({"status": {"state": state}}))
                    .await
                    .ctx("patch status", "LocalVolume", &name)?;
            }
            VolumeStep::Allocate => {
                if let Err(e) = allocate(&ctx, &name).await {
                    match e {
                        Error::Placement { ref source, .. } => {
                            tracing::warn!(volume = %name, error = %e, "cannot place volume yet");
                            status::placement_failed(&ctx.store, &lv, source).await?;
                            return Ok(Action::requeue(ctx.cfg.placement_retry));
                        }
                        other => return Err(other),
                    }
                }
                status::placement_succeeded(&ctx.store, &lv).await?;
            }
            VolumeStep::CreateReplicas(nodes) => {
                let config = lv.spec.config.clone().unwrap_or_default();
                for node in nodes {
                    // The name's prefix is how this controller finds a volume's replicas.
                    let replica = LocalVolumeReplica::new(
                        &format!("{name}-{}", random_suffix()),
                        LocalVolumeReplicaSpec {
                            volume_name: name.clone(),
                            pool_name: lv.spec.pool_name.clone(),
                            node_name: node.clone(),
                            required_capacity_bytes: config.required_capacity_bytes,
                            volume_qos: lv.spec.volume_qos.clone(),
                            volume_encrypt: lv.spec.volume_encrypt.clone(),
                            thin: lv.spec.thin,
                            striped: lv.spec.striped,
                            thin_origin_volume: None,
                            delete: false,
                        },
                    );
                    let created = replicas_api.create(&replica).await.ctx(
                        "create",
                        "LocalVolumeReplica",
                        &name,
                    )?;
                    tracing::info!(volume = %name, %node, replica = ?created.metadata.name, "replica created");
                }
            }
            VolumeStep::ResizeReplicas { names, bytes } => {
                for r in names {
                    replicas_api
                        .patch(&r, &json!({"spec": {"requiredCapacityBytes": bytes}}))
                        .await
                        .ctx("patch", "LocalVolumeReplica", &r)?;
                }
            }
            VolumeStep::DeleteReplicas(names) => {
                for r in names {
                    replicas_api
                        .patch(&r, &json!({"spec": {"delete": true}}))
                        .await
                        .ctx("patch", "LocalVolumeReplica", &r)?;
                }
            }
            VolumeStep::MarkReady { allocated_bytes } => {
                let names: Vec<String> = mine
                    .iter()
                    .filter_map(|r| r.metadata.name.clone())
                    .collect();
                let nodes: Vec<String> = lv
                    .spec
                    .config
                    .as_ref()
                    .map(|c| c.replicas.iter().map(|r| r.hostname.clone()).collect())
                    .unwrap_or_default();
                if lv.spec.accessibility.nodes != nodes {
                    volumes
                        .patch(&name, &json!({"spec": {"accessibility": {"nodes": nodes}}}))
                        .await
                        .ctx("patch", "LocalVolume", &name)?;
                }
                volumes
                    .patch_status(
                        &name,
                        &json!({"status": {
                            "state": VolumeState::Ready,
                            "allocatedCapacityBytes": allocated_bytes,
                            "replicas": names,
                        }}),
                    )
                    .await
                    .ctx("patch status", "LocalVolume", &name)?;
                tracing::info!(volume = %name, allocated_bytes, "volume ready");
            }
            VolumeStep::Remove => {
                match volumes.delete(&name).await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e).ctx("delete", "LocalVolume", &name),
                }
                tracing::info!(volume = %name, "volume removed");
                return Ok(Action::await_change());
            }
        }
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

/// What the capacity ledger is built from: every LocalStorageNode, LocalVolume and
/// LocalVolumeReplica, as the store has them now.
pub(crate) async fn list_for_ledger(
    store: &Store,
) -> Result<(
    Vec<LocalStorageNode>,
    Vec<LocalVolume>,
    Vec<LocalVolumeReplica>,
)> {
    let all = Default::default();
    let lsns = store.all::<LocalStorageNode>().list(&all).await;
    let volumes = store.all::<LocalVolume>().list(&all).await;
    let replicas = store.all::<LocalVolumeReplica>().list(&all).await;
    Ok((
        lsns.ctx("list", "LocalStorageNode", "*")?.items,
        volumes.ctx("list", "LocalVolume", "*")?.items,
        replicas.ctx("list", "LocalVolumeReplica", "*")?.items,
    ))
}

/// [`build_ledger`] over the store as it is now.
pub(crate) async fn ledger_now(store: &Store, skip: &str) -> Result<CapacityLedger> {
    let (lsns, volumes, replicas) = list_for_ledger(store).await?;
    Ok(build_ledger(&lsns, &volumes, &replicas, skip))
}

/// Build the capacity ledger from the store: node reports, and every placed volume (except
/// `skip`) as a reservation on its config nodes.
pub fn build_ledger<V: std::borrow::Borrow<LocalVolume>>(
    lsns: &[LocalStorageNode],
    volumes: &[V],
    replicas: &[LocalVolumeReplica],
    skip: &str,
) -> CapacityLedger {
    let mut ledger = CapacityLedger::new();
    // Reported size of (node, volume): the replica's allocated size, else the config size.
    let mut sizes: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for r in replicas {
        let alloc = r
            .status
            .as_ref()
            .map(|s| s.allocated_capacity_bytes)
            .unwrap_or(0);
        if alloc > 0 {
            sizes.insert(
                (r.spec.node_name.as_str(), r.spec.volume_name.as_str()),
                alloc as u64,
            );
        }
    }
    let config_size: BTreeMap<&str, u64> = volumes
        .iter()
        .map(|v| v.borrow())
        .filter_map(|v| {
            let c = v.spec.config.as_ref()?;
            Some((
                v.metadata.name.as_deref()?,
                c.required_capacity_bytes.max(0) as u64,
            ))
        })
        .collect();
    for lsn in lsns {
        let Some(node) = lsn.metadata.name.as_deref() else {
            continue;
        };
        let status = lsn.status.clone().unwrap_or_default();
        let mut pools: BTreeMap<String, PoolReport> = status
            .pools
            .iter()
            .map(|(pname, p)| {
                let volumes = p
                    .volumes
                    .iter()
                    .map(|v| {
                        let size = sizes
                            .get(&(node, v.as_str()))
                            .copied()
                            .or_else(|| config_size.get(v.as_str()).copied())
                            .unwrap_or(0);
                        (v.clone(), size)
                    })
                    .collect();
                let report = PoolReport {
                    total_bytes: p.total_capacity_bytes.max(0) as u64,
                    used_bytes: p.used_capacity_bytes.max(0) as u64,
                    volume_bytes_limit: p.volume_capacity_bytes_limit.max(0) as u64,
                    max_volumes: if p.total_volume_count > 0 {
                        p.total_volume_count as u32
                    } else {
                        MAX_VOLUMES_PER_POOL
                    },
                    used_volumes: p.used_volume_count.max(0) as u32,
                    volumes,
                };
                (pname.clone(), report)
            })
            .collect();
        // Thin volumes are accounted in the ledger pool `<pool>/thin` (size × ratio).
        for (pname, p) in &status.pools {
            let size_of = |v: &str| {
                sizes
                    .get(&(node, v))
                    .copied()
                    .or_else(|| config_size.get(v).copied())
                    .unwrap_or(0)
            };
            if let Some((tname, report)) = super::thin::ledger_thin_pool(pname, p, size_of) {
                pools.insert(tname, report);
            }
        }
        ledger.set_node(
            node,
            NodeReport {
                ready: status.state == NodeState::Ready,
                pools,
            },
        );
    }
    for v in volumes.iter().map(|v| v.borrow()) {
        let Some(vname) = v.metadata.name.as_deref() else {
            continue;
        };
        if vname == skip {
            continue;
        }
        let Some(c) = v.spec.config.as_ref() else {
            continue;
        };
        let state = v.status.as_ref().map(|s| s.state).unwrap_or_default();
        if matches!(state, VolumeState::Deleted) {
            continue;
        }
        for r in &c.replicas {
            ledger.record(
                &r.hostname,
                &ledger_pool(&v.spec.pool_name, v.spec.thin),
                vname,
                c.required_capacity_bytes.max(0) as u64,
            );
        }
    }
    ledger.settle();
    ledger
}

/// Place the missing replicas of `name` (and/or grow its config to the required size) and
/// write `spec.config`. Serialised across all volumes.
async fn allocate(ctx: &ClusterCtx, name: &str) -> Result<()> {
    match allocate_from(ctx, name, true).await {
        // A reused listing may predate the capacity that fits (a node's first report, a
        // deleted volume): only a fresh one may say no.
        Err(Error::Placement { .. }) => allocate_from(ctx, name, false).await,
        r => r,
    }
}

/// [`allocate`], from the kept listing if `reuse` and it is fresh, else from a new one.
async fn allocate_from(ctx: &ClusterCtx, name: &str, reuse: bool) -> Result<()> {
    let mut guard = ctx.alloc.lock().await;
    let volumes_api = ctx.store.all::<LocalVolume>();
    let lv = volumes_api
        .get(name)
        .await
        .ctx("get", "LocalVolume", name)?;
    let listing = match guard.take().filter(|l| reuse && l.fresh()) {
        Some(kept) => guard.insert(kept),
        None => {
            // Decided, not yet written: counted as written. Copied *before* the store is
            // listed: a placement whose write is acknowledged in between is then in the
            // listing (and maybe also in the copy, with the same config); copied after, it
            // could be in neither.
            let pending = ctx.pending().clone();
            guard.insert(Listing::take(&ctx.store, &pending).await?)
        }
    };
    let lsns = &listing.lsns;
    let volumes: Vec<&LocalVolume> = listing.volumes.values().collect();
    let mut ledger = build_ledger(lsns, &volumes, &listing.replicas, name);

    let pool = lv.spec.pool_name.clone();
    if pool.is_empty() {
        return Err(Error::Invalid {
            kind: "LocalVolume",
            name: name.into(),
            reason: "spec.poolName is empty".into(),
        });
    }
    // Thin volumes take provisioned capacity from the pool's thin pool.
    let lpool = ledger_pool(&pool, lv.spec.thin);
    let required = round_up_to_extent(lv.spec.required_capacity_bytes.max(0) as u64);
    let mut config = lv.spec.config.clone().unwrap_or_default();
    let existing: Vec<String> = config.replicas.iter().map(|r| r.hostname.clone()).collect();
    if required < config.required_capacity_bytes.max(0) as u64 {
        return Err(Error::Invalid {
            kind: "LocalVolume",
            name: name.into(),
            reason: format!(
                "shrinking is not supported: spec.requiredCapacityBytes {required} < placed {}",
                config.required_capacity_bytes
            ),
        });
    }
    // Existing replicas keep their claim; when the volume grows, the growth must fit there.
    let placed = config.required_capacity_bytes.max(0) as u64;
    for node in &existing {
        ledger.record(node, &lpool, name, placed);
        if required <= placed {
            continue;
        }
        ledger
            .reserve(node, &lpool, name, required)
            .map_err(|source| Error::Placement {
                volume: name.into(),
                source,
            })?;
    }

    // Co-location with the volume group.
    let mut group_nodes: Vec<String> = Vec::new();
    let group = if lv.spec.volume_group.is_empty() {
        None
    } else {
        ctx.store
            .all::<LocalVolumeGroup>()
            .get_opt(&lv.spec.volume_group)
            .await
            .ctx("get", "LocalVolumeGroup", &lv.spec.volume_group)?
    };
    if !lv.spec.volume_group.is_empty() {
        if let Some(g) = &group {
            group_nodes = g.spec.accessibility.nodes.clone();
        }
        if group_nodes.is_empty() {
            // Nodes of the group's volumes that are already placed.
            for v in volumes
                .iter()
                .filter(|v| v.spec.volume_group == lv.spec.volume_group)
            {
                if v.metadata.name.as_deref() == Some(name) {
                    continue;
                }
                for r in v.spec.config.iter().flat_map(|c| c.replicas.iter()) {
                    if !group_nodes.contains(&r.hostname) {
                        group_nodes.push(r.hostname.clone());
                    }
                }
            }
        }
    }
    let req = PlacementRequest {
        volume: name.into(),
        pool: lpool.clone(),
        required_bytes: required,
        replicas: lv.spec.replica_number.max(1) as usize,
        existing: existing.clone(),
        preferred: lv.spec.accessibility.nodes.clone(),
        group_nodes,
    };
    let new_nodes = plan_and_reserve(&mut ledger, &req).map_err(|source| Error::Placement {
        volume: name.into(),
        source,
    })?;

    let storage_ip: BTreeMap<String, String> = lsns
        .iter()
        .filter_map(|l| Some((l.metadata.name.clone()?, l.spec.storage_ip.clone())))
        .collect();
    let mut used_ids: BTreeSet<i64> = config.replicas.iter().map(|r| r.id).collect();
    for node in &new_nodes {
        let id = (1..).find(|i| !used_ids.contains(i)).unwrap_or(1);
        used_ids.insert(id);
        config.replicas.push(VolumeReplicaConfig {
            id,
            hostname: node.clone(),
            ip: storage_ip.get(node).cloned().unwrap_or_default(),
            primary: false,
        });
    }
    let primary = lv
        .spec
        .accessibility
        .nodes
        .first()
        .cloned()
        .or_else(|| config.replicas.first().map(|r| r.hostname.clone()));
    if !config.replicas.iter().any(|r| r.primary) {
        for r in &mut config.replicas {
            r.primary = Some(&r.hostname) == primary.as_ref();
        }
    }
    let ha = lv.spec.replica_number > 1 || lv.spec.convertible;
    let resource_id = if !ha {
        -1
    } else if config.resource_id >= 0 && lv.spec.config.is_some() {
        config.resource_id
    } else {
        // Lowest DRBD resource id no other volume uses.
        let taken: BTreeSet<i64> = volumes
            .iter()
            .filter(|v| v.metadata.name.as_deref() != Some(name))
            .filter_map(|v| v.spec.config.as_ref().map(|c| c.resource_id))
            .filter(|id| *id >= 0)
            .collect();
        (0..).find(|i| !taken.contains(i)).unwrap_or(0)
    };
    let new_config = VolumeConfig {
        version: config.version + 1,
        volume_name: name.into(),
        required_capacity_bytes: required as i64,
        convertible: lv.spec.convertible,
        resource_id,
        ready_to_initialize: config.ready_to_initialize,
        initialized: config.initialized,
        replicas: config.replicas,
    };
    let mut updated = lv.clone();
    updated.spec.config = Some(new_config.clone());
    ctx.pending().insert(name.to_owned(), new_config.clone());
    let _pending = PendingPlacement {
        ctx,
        name: name.to_owned(),
    };
    listing.volumes.insert(name.to_owned(), updated.clone());
    drop(guard);
    // Conditional on the resourceVersion we read: a concurrent change makes us retry.
    if let Err(e) = volumes_api.replace(&updated).await {
        // The listing counts this decision; list afresh rather than reason about it.
        *ctx.alloc.lock().await = None;
        return Err(e).ctx("replace", "LocalVolume", name);
    }
    tracing::info!(volume = %name, nodes = ?new_config.replicas.iter().map(|r| &r.hostname).collect::<Vec<_>>(),
        required_bytes = required, version = new_config.version, "volume placed");

    // A group without nodes adopts this volume's.
    if let Some(g) = group
        && g.spec.accessibility.nodes.is_empty()
    {
        let gname = g.metadata.name.clone().unwrap_or_default();
        let nodes: Vec<String> = new_config
            .replicas
            .iter()
            .map(|r| r.hostname.clone())
            .collect();
        ctx.store
            .all::<LocalVolumeGroup>()
            .patch(
                &gname,
                &json!({"spec": {"accessibility": {"nodes": nodes}}}),
            )
            .await
            .ctx("patch", "LocalVolumeGroup", &gname)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_api::fixtures::lvm_pool;
    use hwameistor_core::types::PoolClass;

    const GIB: i64 = 1 << 30;
    const POOL: &str = "LocalStorage_PoolHDD";

    fn placed(name: &str, node: &str, bytes: i64) -> LocalVolume {
        let mut v = LocalVolume::test(name);
        v.spec.required_capacity_bytes = bytes;
        v.spec.config = Some(VolumeConfig {
            volume_name: name.into(),
            required_capacity_bytes: bytes,
            replicas: vec![VolumeReplicaConfig {
                id: 1,
                hostname: node.into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        v
    }

    #[test]
    fn ledger_counts_unreported_placements_once() {
        let mut lsn = LocalStorageNode::test("n1");
        let mut pool = lvm_pool(PoolClass::HDD, 10 * GIB);
        pool.used_capacity_bytes = 2 * GIB;
        pool.used_volume_count = 1;
        pool.volumes = vec!["a".into()];
        lsn.status.as_mut().unwrap().pools.insert(POOL.into(), pool);
        let volumes = vec![
            placed("a", "n1", 2 * GIB),
            placed("b", "n1", 3 * GIB),
            placed("c", "n1", GIB),
        ];
        let mut ra = LocalVolumeReplica::test("a", "n1");
        ra.status.as_mut().unwrap().allocated_capacity_bytes = 2 * GIB;
        let ledger = build_ledger(&[lsn.clone()], &volumes, &[ra.clone()], "c");
        let u = ledger.usage("n1", POOL).unwrap();
        // a is reported (2 GiB), b is placed but not reported (3 GiB), c is skipped.
        assert_eq!(u.free_bytes, 5 * GIB as u64);
        assert_eq!(u.committed_volumes, 2);
        // An expansion of a in flight: config 4 GiB, reported 2 GiB → 2 GiB more committed.
        let volumes = vec![placed("a", "n1", 4 * GIB), placed("b", "n1", 3 * GIB)];
        let ledger = build_ledger(&[lsn], &volumes, &[ra], "");
        assert_eq!(ledger.usage("n1", POOL).unwrap().free_bytes, 3 * GIB as u64);
    }

    /// Placements within [`LISTING_TTL`] share one listing: each counts the ones before it,
    /// and a refusal is only ever given from a fresh listing.
    #[tokio::test]
    async fn a_kept_listing_counts_every_decision_and_never_refuses_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::from(hwameistor_store::EmbeddedStore::open(dir.path().join("s.redb")).unwrap());
        let lsns = store.all::<LocalStorageNode>();
        let set_pool = |bytes: i64| {
            let lsns = lsns.clone();
            async move {
                let mut lsn = LocalStorageNode::test("n1");
                if let Some(cur) = lsns.get_opt("n1").await.unwrap() {
                    lsn.metadata = cur.metadata;
                } else {
                    lsn = lsns.create(&lsn).await.unwrap();
                    lsn.status = LocalStorageNode::test("n1").status;
                }
                let pool = lvm_pool(PoolClass::HDD, bytes);
                lsn.status.as_mut().unwrap().pools.insert(POOL.into(), pool);
                lsns.replace_status(&lsn).await.unwrap();
            }
        };
        let lvs = store.all::<LocalVolume>();
        let new_volume = |name: &'static str, bytes: i64| {
            let lvs = lvs.clone();
            async move {
                let mut v = LocalVolume::test(name);
                v.spec.required_capacity_bytes = bytes;
                lvs.create(&v).await.unwrap();
            }
        };
        let ctx = ClusterCtx::new(ClusterConfig::default(), store.clone());
        set_pool(GIB).await;
        new_volume("a", 2 * GIB).await;
        let refused = allocate(&ctx, "a").await;
        assert!(
            matches!(refused, Err(Error::Placement { .. })),
            "{refused:?}"
        );
        // The node grows right after: the kept listing still shows 1 GiB, yet "b" is placed.
        set_pool(10 * GIB).await;
        new_volume("b", 4 * GIB).await;
        allocate(&ctx, "b").await.unwrap();
        // "b" is in the kept listing (whether or not re-listed): 6 GiB are left, not 10.
        new_volume("c", 5 * GIB).await;
        allocate(&ctx, "c").await.unwrap();
        new_volume("d", 2 * GIB).await;
        let refused = allocate(&ctx, "d").await;
        assert!(
            matches!(refused, Err(Error::Placement { .. })),
            "{refused:?}"
        );
        // After the TTL a new listing agrees: 1 GiB is left, too little for "a".
        tokio::time::sleep(LISTING_TTL).await;
        assert!(matches!(
            allocate(&ctx, "a").await,
            Err(Error::Placement { .. })
        ));
        let placed: Vec<String> = lvs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|v| v.spec.config.is_some())
            .filter_map(|v| v.metadata.name)
            .collect();
        assert_eq!(placed, ["b", "c"]);
    }
}
