//! Node side of the disk manager: discovery → LocalDisk objects, LocalDiskNode registration,
//! raw-disk pools, heartbeat, consumption of `local-disk-manager` claims, SMART.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hwameistor_api::{
    LocalDevice, LocalDisk, LocalDiskClaim, LocalDiskNode, LocalDiskNodeSpec, LocalDiskSpec,
    LocalDiskVolume, LocalPool, SmartInfo,
};
use hwameistor_core::disk::{PoolDiskInput, PoolVolumeInput, disk_pools};
use hwameistor_core::types::{
    ClaimPhase, DiskOwner, DiskType, LocalDiskState, NodeState, PoolType, SmartHealth,
};
use hwameistor_disk::uevent::UEvent;
use hwameistor_disk::{
    DiscoveredDisk, Discoverer, DiscoveryConfig, DiscoverySource, Roots, SmartReport,
};
use hwameistor_exec::SharedRunner;
use hwameistor_store::Store;
use kube::api::ObjectMeta;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::{
    ANNOTATION_HAZARDS, ANNOTATION_HEARTBEAT, ANNOTATION_SMART, ANNOTATION_SMART_REQUEST, Error,
    Result, StoreCtx, now_rfc3339,
};

/// Settings of the node side.
#[derive(Debug, Clone)]
pub struct DiskNodeConfig {
    /// This node's name (LocalDiskNode name, LocalDisk `spec.nodeName`).
    pub node_name: String,
    /// Loop devices with a backing file count as disks (tests, standalone demo).
    pub include_loop: bool,
    /// With `include_loop`: only loop devices whose backing file lies under this directory
    /// count. The standalone demo sets it to its `disks/` directory so that the `file`
    /// engine's own volume loop devices (which hold user data) are never offered as disks.
    pub loop_backing_dir: Option<PathBuf>,
    /// Where sysfs, the udev database and procfs are.
    pub roots: Roots,
    /// How often the cheap sysfs fingerprint is compared (hot-plug fallback when no uevent
    /// arrives).
    pub poll_interval: Duration,
    /// How often every disk is fully re-probed even without a visible change (signatures
    /// written by tools that trigger no uevent, e.g. mkfs where no udevd watches).
    pub rescan_interval: Duration,
    /// How often the heartbeat, LocalDiskNode status and claim consumption run.
    pub heartbeat_interval: Duration,
    /// How often SMART is collected for every disk; `None`: only on request.
    pub smart_interval: Option<Duration>,
    /// Root of the raw-disk pool directories (`/etc/hwameistor`): claimed disks are linked at
    /// `<root>/LocalDisk_Pool<T>/disk/<disk>`. `None`: no links (pools live in objects only).
    pub pool_root: Option<PathBuf>,
    /// Listen to kernel uevents (netlink). Polling runs regardless.
    pub uevents: bool,
}

impl DiskNodeConfig {
    pub fn new(node_name: impl Into<String>) -> Self {
        DiskNodeConfig {
            node_name: node_name.into(),
            include_loop: false,
            loop_backing_dir: None,
            roots: Roots::default(),
            poll_interval: Duration::from_secs(1),
            rescan_interval: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            smart_interval: Some(Duration::from_secs(6 * 3600)),
            pool_root: None,
            uevents: true,
        }
    }
}

/// Run the node side on the real host until `shutdown`.
pub async fn run_node(
    cfg: DiskNodeConfig,
    store: Store,
    runner: SharedRunner,
    shutdown: CancellationToken,
) -> Result<()> {
    let dcfg = DiscoveryConfig {
        node_name: cfg.node_name.clone(),
        roots: cfg.roots.clone(),
        include_loop: cfg.include_loop,
        loop_backing_dir: cfg.loop_backing_dir.clone(),
    };
    let volumes = tokio::spawn(super::volume::run_volume_loop(
        store.clone(),
        runner.clone(),
        cfg.node_name.clone(),
        cfg.poll_interval,
        shutdown.clone(),
    ));
    let source: Arc<dyn DiscoverySource> = Arc::new(Discoverer::new(dcfg, runner));
    let (_listener, rx) = if cfg.uevents {
        match hwameistor_disk::uevent::listen_block() {
            Ok((l, rx)) => (Some(l), Some(rx)),
            Err(e) => {
                tracing::warn!(error = %e, "no kernel uevents; relying on sysfs polling");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    let res = run_node_with(cfg, store, source, rx, shutdown).await;
    let _ = volumes.await;
    res
}

/// Run the node side with any discovery source (tests pass a fake) and optional uevents.
pub async fn run_node_with(
    cfg: DiskNodeConfig,
    store: Store,
    source: Arc<dyn DiscoverySource>,
    mut uevents: Option<UnboundedReceiver<UEvent>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let agent = NodeDisks { cfg, store, source };
    let mut last_fp: Option<String> = None;
    // start-up: register, full scan (stale disks become Inactive), first heartbeat
    loop {
        let r = async {
            agent.register().await?;
            agent.full_pass(&mut last_fp, true).await
        }
        .await;
        match r {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "disk node start-up failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
    let mut poll = tokio::time::interval(agent.cfg.poll_interval);
    let mut rescan = tokio::time::interval(agent.cfg.rescan_interval);
    let mut heartbeat = tokio::time::interval(agent.cfg.heartbeat_interval);
    for t in [&mut poll, &mut rescan, &mut heartbeat] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    rescan.reset();
    // SMART runs beside discovery: a slow or hung smartctl never delays hot-plug handling
    let smart_task = tokio::spawn(smart_loop(agent.clone(), shutdown.clone()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            ev = next_uevent(&mut uevents) => {
                match ev {
                    Some(ev) => {
                        tracing::debug!(action = %ev.action, device = ?ev.devname, "uevent");
                        // let a burst settle, then take all of it at once
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let source = agent.source.as_ref();
                        let mut changed = ChangedDevices::default();
                        changed.note(source, &ev.action, ev.devname.as_deref());
                        if let Some(rx) = uevents.as_mut() {
                            while let Ok(ev) = rx.try_recv() {
                                changed.note(source, &ev.action, ev.devname.as_deref());
                            }
                        }
                        if !changed.relevant {
                            tracing::trace!("uevents only of devices discovery ignores; no pass");
                            continue;
                        }
                        // contents changed (e.g. a new filesystem): probe those again
                        changed.invalidate(source);
                        agent.pass_logged(&mut last_fp).await;
                    }
                    None => uevents = None,
                }
            }
            _ = poll.tick() => {
                match agent.source.fingerprint() {
                    Ok(fp) if last_fp.as_ref() == Some(&fp) => {}
                    Ok(_) => agent.pass_logged(&mut last_fp).await,
                    Err(e) => tracing::warn!(error = %e, "sysfs fingerprint failed"),
                }
            }
            _ = rescan.tick() => {
                agent.source.invalidate(None);
                agent.pass_logged(&mut last_fp).await;
            }
            _ = heartbeat.tick() => {
                if let Err(e) = agent.heartbeat().await {
                    tracing::warn!(error = %e, reason = e.reason(), "disk node heartbeat failed");
                }
            }
        }
    }
    let _ = smart_task.await;
    Ok(())
}

/// SMART for every disk at start and every `smart_interval` (if set), and for disks with a
/// request annotation every heartbeat interval.
async fn smart_loop(agent: NodeDisks, shutdown: CancellationToken) {
    let period = agent.cfg.smart_interval;
    let mut all = tokio::time::interval(period.unwrap_or(Duration::from_secs(365 * 86400)));
    let mut requests = tokio::time::interval(agent.cfg.heartbeat_interval);
    for t in [&mut all, &mut requests] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = all.tick(), if period.is_some() => {
                if let Err(e) = agent.collect_smart(true).await {
                    tracing::warn!(error = %e, "SMART collection failed");
                }
            }
            _ = requests.tick() => {
                if let Err(e) = agent.collect_smart(false).await {
                    tracing::warn!(error = %e, "SMART on request failed");
                }
            }
        }
    }
}

async fn next_uevent(rx: &mut Option<UnboundedReceiver<UEvent>>) -> Option<UEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The node side's state and passes (public so tests and tools can drive single passes).
#[derive(Debug, Clone)]
pub struct NodeDisks {
    pub cfg: DiskNodeConfig,
    pub store: Store,
    pub source: Arc<dyn DiscoverySource>,
}

fn hazards_text(d: &DiscoveredDisk) -> String {
    d.hazards
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Write the discovered facts into a LocalDisk spec, keeping the previous path and node.
pub fn apply_discovery(spec: &mut LocalDiskSpec, d: &DiscoveredDisk, node: &str) {
    if !spec.node_name.is_empty() && spec.node_name != node {
        spec.pre_node_name = spec.node_name.clone();
    }
    if !spec.device_path.is_empty() && spec.device_path != d.device.dev_path {
        spec.pre_device_path = spec.device_path.clone();
    }
    spec.node_name = node.to_owned();
    spec.uuid = d.identity.uuid.clone();
    spec.device_path = d.device.dev_path.clone();
    spec.dev_links = d.device.devlinks.clone();
    spec.capacity = d.device.size_bytes as i64;
    spec.partitioned = d.partitioned();
    spec.partition_info = d.partition_info();
    spec.is_raid = d.device.md_level.is_some();
    let mut attrs = d.attributes();
    // a type the admin set by hand survives rediscovery (the original keeps it for disks
    // with a serial, so users can reclassify a disk the kernel mislabels)
    if let Some(old) = spec.disk_attributes.as_ref().and_then(|a| a.disk_type)
        && old != DiskType::Unknown
        && d.device.serial.is_some()
    {
        attrs.disk_type = Some(old);
    }
    spec.disk_attributes = Some(attrs);
    spec.state = Some(LocalDiskState::Active);
    spec.major = d.device.major.to_string();
    spec.minor = d.device.minor.to_string();
}

impl NodeDisks {
    fn me(&self) -> &str {
        &self.cfg.node_name
    }

    /// Create this node's LocalDiskNode if it does not exist.
    pub async fn register(&self) -> Result<()> {
        let nodes = self.store.all::<LocalDiskNode>();
        let me = self.me().to_owned();
        if nodes
            .get_opt(&me)
            .await
            .ctx("get", "LocalDiskNode", &me)?
            .is_none()
        {
            let ldn = LocalDiskNode::new(
                &me,
                LocalDiskNodeSpec {
                    node_name: me.clone(),
                },
            );
            match nodes.create(&ldn).await {
                Ok(_) => tracing::info!(node = %me, "LocalDiskNode registered"),
                Err(hwameistor_store::Error::AlreadyExists { .. }) => {}
                Err(e) => {
                    return Err(Error::Store {
                        op: "create",
                        kind: "LocalDiskNode",
                        name: me,
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    async fn pass_logged(&self, last_fp: &mut Option<String>) {
        if let Err(e) = self.full_pass(last_fp, false).await {
            tracing::warn!(error = %e, reason = e.reason(), "disk discovery pass failed; will retry");
            *last_fp = None;
        }
    }

    /// Scan the host and bring the LocalDisks of this node in line. `initial`: also reserve
    /// system disks found on existing objects (the start-up protection).
    pub async fn full_pass(&self, last_fp: &mut Option<String>, initial: bool) -> Result<()> {
        let node = self.me().to_owned();
        let fp = self
            .source
            .fingerprint()
            .map_err(|source| Error::Discovery {
                node: node.clone(),
                source,
            })?;
        let disks = self
            .source
            .scan()
            .await
            .map_err(|source| Error::Discovery {
                node: node.clone(),
                source,
            })?;
        self.sync_disks(&disks, initial).await?;
        *last_fp = Some(fp);
        Ok(())
    }

    /// Create, update and inactivate LocalDisks from one scan.
    pub async fn sync_disks(&self, found: &[DiscoveredDisk], initial: bool) -> Result<()> {
        let me = self.me().to_owned();
        let lds = self.store.all::<LocalDisk>();
        let existing: HashMap<String, LocalDisk> = lds
            .list(&Default::default())
            .await
            .ctx("list", "LocalDisk", "*")?
            .items
            .into_iter()
            .map(|d| (d.metadata.name.clone().unwrap_or_default(), d))
            .collect();
        let mut seen = BTreeSet::new();
        let mut first_err = None;
        for d in found {
            let name = d.identity.name.clone();
            if !seen.insert(name.clone()) {
                tracing::warn!(disk = %name, device = %d.device.dev_path, "two devices share one identity; only the first is tracked");
                continue;
            }
            let res = match existing.get(&name) {
                None => self.create_disk(d).await,
                Some(ld) => self.update_disk(ld, d, initial).await,
            };
            if let Err(e) = res {
                tracing::warn!(disk = %name, error = %e, "LocalDisk write failed");
                first_err.get_or_insert(e);
            }
        }
        for (name, ld) in &existing {
            if ld.spec.node_name == me
                && ld.spec.state == Some(LocalDiskState::Active)
                && !seen.contains(name)
            {
                let mut new = ld.clone();
                if !new.spec.device_path.is_empty() {
                    new.spec.pre_device_path = std::mem::take(&mut new.spec.device_path);
                }
                new.spec.pre_node_name = me.clone();
                new.spec.node_name.clear();
                new.spec.major.clear();
                new.spec.minor.clear();
                new.spec.state = Some(LocalDiskState::Inactive);
                tracing::info!(disk = %name, device = %ld.spec.device_path, "disk gone: Inactive");
                if let Err(e) = lds.replace(&new).await.ctx("inactivate", "LocalDisk", name) {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn create_disk(&self, d: &DiscoveredDisk) -> Result<()> {
        let name = d.identity.name.clone();
        let mut spec = LocalDiskSpec::default();
        apply_discovery(&mut spec, d, self.me());
        // the system disk and every disk carrying data wait for the admin
        spec.reserved = d.system || d.partitioned();
        spec.owner = if d.system {
            DiskOwner::System
        } else {
            DiskOwner::Unknown
        };
        let mut ld = LocalDisk::new(&name, spec);
        ld.metadata = ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_HAZARDS.to_owned(),
                hazards_text(d),
            )])),
            ..Default::default()
        };
        tracing::info!(
            disk = %name, device = %d.device.dev_path, r#type = %d.disk_type, capacity = d.device.size_bytes,
            reserved = ld.spec.reserved, hazards = %hazards_text(d), "new disk"
        );
        match self.store.all::<LocalDisk>().create(&ld).await {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Store {
                op: "create",
                kind: "LocalDisk",
                name,
                source: e,
            }),
        }
    }

    async fn update_disk(&self, ld: &LocalDisk, d: &DiscoveredDisk, initial: bool) -> Result<()> {
        let name = d.identity.name.clone();
        let mut new = ld.clone();
        apply_discovery(&mut new.spec, d, self.me());
        if initial && d.system && !new.spec.reserved {
            tracing::info!(disk = %name, "system disk reserved at start");
            new.spec.reserved = true;
            if new.spec.owner == DiskOwner::Unknown {
                new.spec.owner = DiskOwner::System;
            }
        }
        let hz = hazards_text(d);
        let ann = new.metadata.annotations.get_or_insert_with(BTreeMap::new);
        let ann_changed = ann.get(ANNOTATION_HAZARDS) != Some(&hz);
        ann.insert(ANNOTATION_HAZARDS.to_owned(), hz);
        if new.spec == ld.spec && !ann_changed {
            return Ok(());
        }
        if ld.spec.state != Some(LocalDiskState::Active) {
            tracing::info!(disk = %name, device = %d.device.dev_path, previous = %ld.spec.pre_device_path, "disk back: Active");
        } else if ld.spec.device_path != new.spec.device_path {
            tracing::info!(disk = %name, from = %ld.spec.device_path, to = %new.spec.device_path, "disk moved");
        }
        self.store
            .all::<LocalDisk>()
            .replace(&new)
            .await
            .ctx("update", "LocalDisk", &name)?;
        Ok(())
    }

    /// Heartbeat pass: consume raw-disk claims, write the LocalDiskNode status and heartbeat.
    pub async fn heartbeat(&self) -> Result<()> {
        self.register().await?;
        let me = self.me().to_owned();
        // the heartbeat first: a failed status write below must not make the node look dead
        self.store
            .all::<LocalDiskNode>()
            .patch(
                &me,
                &json!({"metadata": {"annotations": {ANNOTATION_HEARTBEAT: now_rfc3339()}}}),
            )
            .await
            .ctx("heartbeat", "LocalDiskNode", &me)?;
        let consumed = self.consume_claims().await?;
        self.write_node_status(&consumed).await?;
        // mark consumed claims only after their records are written
        for c in consumed {
            let name = c.metadata.name.clone().unwrap_or_default();
            self.store
                .all::<LocalDiskClaim>()
                .patch_status(&name, &json!({"status": {"status": ClaimPhase::Consumed}}))
                .await
                .ctx("patch status", "LocalDiskClaim", &name)?;
            tracing::info!(node = %me, claim = %name, "raw-disk claim consumed");
        }
        Ok(())
    }

    /// Bound `local-disk-manager` claims of this node: link their disks into the pools.
    async fn consume_claims(&self) -> Result<Vec<LocalDiskClaim>> {
        let me = self.me();
        let claims = self
            .store
            .all::<LocalDiskClaim>()
            .list(&Default::default())
            .await
            .ctx("list", "LocalDiskClaim", "*")?;
        let mut out = Vec::new();
        for c in claims.items {
            if c.spec.node_name != me
                || c.spec.owner != DiskOwner::LocalDiskManager
                || c.status.as_ref().map(|s| s.status) != Some(ClaimPhase::Bound)
            {
                continue;
            }
            if let Some(root) = &self.cfg.pool_root {
                for r in &c.spec.disk_refs {
                    let Some(dname) = r.name.as_deref() else {
                        continue;
                    };
                    let ld = self.store.all::<LocalDisk>().get(dname).await.ctx(
                        "get",
                        "LocalDisk",
                        dname,
                    )?;
                    link_into_pool(root, &ld)?;
                }
            }
            out.push(c);
        }
        Ok(out)
    }

    /// Compute the raw-disk pools and write the LocalDiskNode status (Ready unless Maintain).
    async fn write_node_status(&self, consumed: &[LocalDiskClaim]) -> Result<()> {
        let me = self.me().to_owned();
        let lds = self
            .store
            .all::<LocalDisk>()
            .list(&Default::default())
            .await
            .ctx("list", "LocalDisk", "*")?
            .items;
        let ldvs = self
            .store
            .all::<LocalDiskVolume>()
            .list(&Default::default())
            .await
            .ctx("list", "LocalDiskVolume", "*")?
            .items;
        let mut inputs = Vec::new();
        let mut disk_class = BTreeMap::new();
        for ld in &lds {
            let in_pool = ld.spec.node_name == me
                && ld.spec.state == Some(LocalDiskState::Active)
                && ld.spec.owner == DiskOwner::LocalDiskManager
                && ld.spec.claim_ref.is_some();
            if !in_pool {
                continue;
            }
            let name = ld.metadata.name.clone().unwrap_or_default();
            let t = ld
                .spec
                .disk_attributes
                .as_ref()
                .and_then(|a| a.disk_type)
                .unwrap_or(DiskType::Unknown);
            disk_class.insert(name.clone(), t);
            inputs.push(PoolDiskInput {
                local_disk_name: name,
                dev_path: ld.spec.device_path.clone(),
                capacity: ld.spec.capacity,
                disk_type: t,
            });
        }
        let volumes: Vec<PoolVolumeInput> = ldvs
            .iter()
            .filter_map(|v| {
                let st = v.status.as_ref()?;
                disk_class
                    .contains_key(&st.local_disk_name)
                    .then(|| PoolVolumeInput {
                        name: v.metadata.name.clone().unwrap_or_default(),
                        local_disk_name: st.local_disk_name.clone(),
                        capacity: if st.allocated_capacity_bytes > 0 {
                            st.allocated_capacity_bytes
                        } else {
                            v.spec.required_capacity_bytes
                        },
                    })
            })
            .collect();
        let (pools, totals) = disk_pools(&inputs, &volumes);
        let nodes = self.store.all::<LocalDiskNode>();
        let ldn = nodes.get(&me).await.ctx("get", "LocalDiskNode", &me)?;
        let mut status = ldn.status.clone().unwrap_or_default();
        status.pools = pools
            .values()
            .map(|p| {
                let pool = LocalPool {
                    name: p.name.to_owned(),
                    class: p.class,
                    pool_type: PoolType::REGULAR,
                    path: self
                        .cfg
                        .pool_root
                        .as_ref()
                        .map(|r| r.join(p.name).display().to_string())
                        .unwrap_or_default(),
                    total_capacity_bytes: p.total_capacity,
                    used_capacity_bytes: p.used_capacity,
                    volume_capacity_bytes_limit: p.volume_capacity_limit,
                    free_capacity_bytes: p.free_capacity,
                    total_volume_count: p.total_volume_count,
                    used_volume_count: p.used_volume_count,
                    free_volume_count: p.free_volume_count,
                    disks: p
                        .disks
                        .iter()
                        .map(|d| LocalDevice {
                            dev_path: d.dev_path.clone(),
                            disk_type: Some(d.disk_type),
                            capacity_bytes: d.capacity,
                            state: d.state,
                        })
                        .collect(),
                    volumes: p.volumes.clone(),
                    thin_pool: None,
                };
                (p.name.to_owned(), pool)
            })
            .collect();
        status.total_disk = totals.total_disk;
        status.free_disk = totals.free_disk;
        status.total_capacity = totals.total_capacity;
        status.free_capacity = totals.free_capacity;
        if status.state != NodeState::Maintain {
            status.state = NodeState::Ready;
        }
        for c in consumed {
            for r in &c.spec.disk_refs {
                let Some(dname) = r.name.as_deref() else {
                    continue;
                };
                let t = disk_class
                    .get(dname)
                    .copied()
                    .or(c.spec.description.disk_type)
                    .unwrap_or(DiskType::Unknown);
                let Some(class) = t.pool_class() else {
                    continue;
                };
                let records = status
                    .pool_extend_records
                    .entry(class.disk_pool_name().to_owned())
                    .or_default();
                if !records.contains(&c.spec) {
                    records.push(c.spec.clone());
                }
            }
        }
        if ldn.status.as_ref() != Some(&status) {
            let mut new = ldn.clone();
            new.status = Some(status);
            nodes
                .replace_status(&new)
                .await
                .ctx("update status", "LocalDiskNode", &me)?;
        }
        Ok(())
    }

    /// Run smartctl on this node's active disks: all of them (`all`) or those with a pending
    /// request annotation.
    pub async fn collect_smart(&self, all: bool) -> Result<()> {
        let me = self.me();
        let lds = self.store.all::<LocalDisk>();
        for ld in lds
            .list(&Default::default())
            .await
            .ctx("list", "LocalDisk", "*")?
            .items
        {
            if ld.spec.node_name != me
                || ld.spec.state != Some(LocalDiskState::Active)
                || ld.spec.device_path.is_empty()
            {
                continue;
            }
            let requested = ld
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_SMART_REQUEST));
            if !all && !requested {
                continue;
            }
            let name = ld.metadata.name.clone().unwrap_or_default();
            let report = match self.source.smart(&ld.spec.device_path).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(disk = %name, error = %e, "smartctl unavailable");
                    SmartReport {
                        device: ld.spec.device_path.clone(),
                        ..Default::default()
                    }
                }
            };
            let summary = json!({
                "checkedAt": now_rfc3339(),
                "supported": report.supported,
                "health": report.health,
                "exitStatus": report.exit_status,
                "temperatureCelsius": report.temperature_celsius,
                "powerOnHours": report.power_on_hours,
                "powerCycles": report.power_cycles,
                "rotationRate": report.rotation_rate,
                "attributes": report.attributes,
                "nvmeHealth": report.nvme_health,
                "messages": report.messages,
            });
            let smart_info =
                (report.supported && report.health != SmartHealth::Unknown).then_some(SmartInfo {
                    overall_health: report.health,
                });
            lds.patch(
                &name,
                &json!({
                    "metadata": {"annotations": {ANNOTATION_SMART: summary.to_string(), ANNOTATION_SMART_REQUEST: null}},
                    "spec": {"supportSmart": report.supported, "smartInfo": smart_info},
                }),
            )
            .await
            .ctx("write SMART", "LocalDisk", &name)?;
            if report.health == SmartHealth::Failed {
                tracing::warn!(disk = %name, device = %ld.spec.device_path, "SMART overall health FAILED");
            }
        }
        Ok(())
    }
}

/// Link a claimed disk into `<root>/LocalDisk_Pool<T>/disk/<disk>`, pointing at its most
/// stable device link (by-id, else by-path, else the device path).
// the store error makes Error large; this error path is rare and not hot
#[allow(clippy::result_large_err)]
pub fn link_into_pool(root: &std::path::Path, ld: &LocalDisk) -> Result<()> {
    let name = ld.metadata.name.clone().unwrap_or_default();
    hwameistor_core::names::validate("disk", &name).map_err(|e| Error::Invalid {
        kind: "LocalDisk",
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let Some(class) = ld
        .spec
        .disk_attributes
        .as_ref()
        .and_then(|a| a.disk_type)
        .and_then(|t| t.pool_class())
    else {
        return Err(Error::Invalid {
            kind: "LocalDisk",
            name,
            reason: "disk type unknown: no raw-disk pool".into(),
        });
    };
    let target = ld
        .spec
        .dev_links
        .iter()
        .find(|l| l.starts_with("/dev/disk/by-id/"))
        .or_else(|| {
            ld.spec
                .dev_links
                .iter()
                .find(|l| l.starts_with("/dev/disk/by-path/"))
        })
        .cloned()
        .unwrap_or_else(|| ld.spec.device_path.clone());
    let dir = root.join(class.disk_pool_name()).join("disk");
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let link = dir.join(&name);
    if std::fs::read_link(&link).ok().as_deref() == Some(std::path::Path::new(&target)) {
        return Ok(());
    }
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).map_err(|source| Error::Io {
        path: link.clone(),
        source,
    })?;
    Ok(())
}

/// The devices whose contents changed in a burst of uevents: their cached probes are dropped.
/// A `change` of a device drops the probe of every disk whose name starts the device's
/// (`sdb1` drops `sdb`); an overflow, or a change without a name, drops them all. Other
/// actions (`add`, `remove`) change sysfs and are seen by the fingerprint; a loop device
/// attached for a volume therefore costs no re-probe of the other disks. A batch whose every
/// event names a device the source ignores (e.g. the loop device of a `file`-engine volume)
/// is not `relevant` and costs no pass at all.
#[derive(Debug, Default)]
struct ChangedDevices {
    all: bool,
    names: std::collections::BTreeSet<String>,
    relevant: bool,
}

impl ChangedDevices {
    fn note(&mut self, source: &dyn DiscoverySource, action: &str, devname: Option<&str>) {
        let ignored = action != "overflow"
            && devname.is_some_and(|d| source.ignores_event(d.trim_start_matches("/dev/")));
        if ignored {
            return;
        }
        self.relevant = true;
        match (action, devname) {
            ("overflow", _) | ("change", None) => self.all = true,
            ("change", Some(d)) => {
                self.names.insert(d.trim_start_matches("/dev/").to_owned());
            }
            _ => {}
        }
    }

    fn invalidate(&self, source: &dyn DiscoverySource) {
        if self.all {
            source.invalidate(None);
        } else if !self.names.is_empty() {
            source
                .invalidate_matching(&|disk: &str| self.names.iter().any(|n| n.starts_with(disk)));
        }
    }
}

#[cfg(test)]
mod changed_devices_tests {
    use super::*;

    /// Records what was invalidated, over a fixed set of cached disks.
    #[derive(Debug, Default)]
    struct Cache(std::sync::Mutex<Vec<String>>);

    #[async_trait::async_trait]
    impl DiscoverySource for Cache {
        async fn scan(&self) -> hwameistor_disk::Result<Vec<hwameistor_disk::DiscoveredDisk>> {
            Ok(Vec::new())
        }
        fn fingerprint(&self) -> hwameistor_disk::Result<String> {
            Ok(String::new())
        }
        async fn smart(
            &self,
            _dev_path: &str,
        ) -> hwameistor_disk::Result<hwameistor_disk::SmartReport> {
            unreachable!("not asked")
        }
        fn invalidate(&self, device: Option<&str>) {
            assert!(device.is_none());
            self.0.lock().unwrap().clear();
        }
        fn invalidate_matching(&self, pred: &dyn Fn(&str) -> bool) {
            self.0.lock().unwrap().retain(|d| !pred(d));
        }
        /// Loop devices above 99 stand for the volume loops discovery leaves out.
        fn ignores_event(&self, kernel_name: &str) -> bool {
            kernel_name
                .strip_prefix("loop")
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n > 99)
        }
    }

    fn cache() -> Cache {
        Cache(std::sync::Mutex::new(
            ["sda", "sdb", "loop0", "loop1"].map(String::from).to_vec(),
        ))
    }

    fn left(c: &Cache) -> Vec<String> {
        c.0.lock().unwrap().clone()
    }

    #[test]
    fn a_change_drops_only_the_changed_disk_and_its_partitions_parent() {
        let c = cache();
        let mut ch = ChangedDevices::default();
        ch.note(&c, "add", Some("loop7"));
        ch.note(&c, "change", Some("loop7"));
        ch.note(&c, "change", Some("sdb1"));
        ch.invalidate(&c);
        assert_eq!(left(&c), ["sda", "loop0", "loop1"]);
    }

    #[test]
    fn adds_and_removes_alone_drop_nothing() {
        let c = cache();
        let mut ch = ChangedDevices::default();
        ch.note(&c, "add", Some("loop9"));
        ch.note(&c, "remove", Some("loop8"));
        ch.invalidate(&c);
        assert_eq!(left(&c).len(), 4);
    }

    #[test]
    fn a_batch_of_ignored_devices_needs_no_pass_but_one_other_event_does() {
        let c = cache();
        let mut ch = ChangedDevices::default();
        ch.note(&c, "add", Some("/dev/loop100"));
        ch.note(&c, "change", Some("loop101"));
        assert!(!ch.relevant);
        ch.invalidate(&c);
        assert_eq!(left(&c).len(), 4);
        ch.note(&c, "change", Some("loop1"));
        assert!(ch.relevant);
        let mut ch = ChangedDevices::default();
        ch.note(&c, "overflow", Some("loop100"));
        assert!(ch.relevant && ch.all);
    }

    #[test]
    fn overflow_or_a_nameless_change_drops_everything() {
        for (action, name) in [("overflow", None), ("change", None)] {
            let c = cache();
            let mut ch = ChangedDevices::default();
            ch.note(&c, action, name);
            ch.invalidate(&c);
            assert!(left(&c).is_empty(), "{action}");
        }
    }
}
