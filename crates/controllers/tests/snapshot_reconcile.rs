//! Tier 0: snapshots, restores, rollbacks and clones end to end over the EmbeddedStore with
//! the real volume and snapshot reconcilers, an in-memory engine whose volumes hold a
//! "content" string, and a runner that executes `dd` between those volumes.

mod volume_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use async_trait::async_trait;
use hwameistor_api::types::{OperationState, VolumeState};
use hwameistor_api::{
    LocalVolume, LocalVolumeReplicaSnapshot, LocalVolumeReplicaSnapshotRestore,
    LocalVolumeSnapshot, LocalVolumeSnapshotRestore,
};
use hwameistor_controllers::snapshot::{
    self, SnapshotClusterConfig, SnapshotNodeConfig, ops::rollback_name,
};
use hwameistor_controllers::volume;
use hwameistor_engine::{
    EngineKind, Error as EngineError, PoolDisk, PoolInfo, Result as EngineResult, SharedEngine,
    SnapshotInfo, VolumeAttributes, VolumeEngine, VolumeInfo, VolumeOptions, round_up_to_extent,
};
use hwameistor_exec::{Cmd, Output, Runner};
use hwameistor_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use volume_common::{GIB, agent_cfg, claim_disks, cluster_cfg, temp_store, volume, wait_for};

const MI: u64 = 1 << 20;

#[derive(Debug, Default, Clone)]
struct Vol {
    size: u64,
    content: String,
}

#[derive(Debug, Default, Clone)]
struct Snap {
    source: String,
    size: u64,
    content: String,
    valid: bool,
}

#[derive(Debug, Default)]
struct Pool {
    disks: Vec<PathBuf>,
    volumes: BTreeMap<String, Vol>,
    snapshots: BTreeMap<String, Snap>,
}

/// An in-memory engine with snapshots (file-engine semantics: rollback consumes the snapshot).
#[derive(Debug)]
struct MemEngine {
    node: String,
    pools: Mutex<BTreeMap<String, Pool>>,
}

fn err(m: &str) -> EngineError {
    EngineError::Conflict {
        op: "mem engine",
        ctx: Default::default(),
        message: m.to_owned(),
    }
}

impl MemEngine {
    fn new(node: &str) -> Arc<Self> {
        Arc::new(MemEngine {
            node: node.into(),
            pools: Mutex::new(BTreeMap::new()),
        })
    }
    fn dev(&self, pool: &str, v: &str) -> PathBuf {
        PathBuf::from(format!("/dev/mem/{}/{pool}/{v}", self.node))
    }
    fn vinfo(&self, pool: &str, v: &str, size: u64) -> VolumeInfo {
        VolumeInfo {
            pool: pool.into(),
            name: v.into(),
            size_bytes: size,
            device_path: self.dev(pool, v),
            attrs: VolumeAttributes {
                active: true,
                ..Default::default()
            },
        }
    }
    fn content(&self, pool: &str, v: &str) -> Option<String> {
        let p = self.pools.lock().unwrap();
        p.get(pool)?.volumes.get(v).map(|v| v.content.clone())
    }
    fn write(&self, pool: &str, v: &str, content: &str) {
        let mut p = self.pools.lock().unwrap();
        p.get_mut(pool).unwrap().volumes.get_mut(v).unwrap().content = content.into();
    }
    fn snapshots(&self, pool: &str) -> Vec<String> {
        let p = self.pools.lock().unwrap();
        p.get(pool)
            .map(|p| p.snapshots.keys().cloned().collect())
            .unwrap_or_default()
    }
    fn volumes(&self, pool: &str) -> Vec<String> {
        let p = self.pools.lock().unwrap();
        p.get(pool)
            .map(|p| p.volumes.keys().cloned().collect())
            .unwrap_or_default()
    }
    fn invalidate(&self, pool: &str, s: &str) {
        let mut p = self.pools.lock().unwrap();
        p.get_mut(pool).unwrap().snapshots.get_mut(s).unwrap().valid = false;
    }
    /// `dd` between two device paths of this engine.
    fn dd(&self, from: &Path, to: &Path) -> std::result::Result<(), String> {
        let mut pools = self.pools.lock().unwrap();
        let find = |pools: &BTreeMap<String, Pool>, d: &Path| {
            pools.iter().find_map(|(pn, p)| {
                p.volumes
                    .keys()
                    .find(|v| self.dev(pn, v) == d)
                    .map(|v| (pn.clone(), v.clone()))
            })
        };
        let (fp, fv) = find(&pools, from).ok_or("no source device")?;
        let (tp, tv) = find(&pools, to).ok_or("no target device")?;
        let c = pools[&fp].volumes[&fv].content.clone();
        pools
            .get_mut(&tp)
            .unwrap()
            .volumes
            .get_mut(&tv)
            .unwrap()
            .content = c;
        Ok(())
    }
    fn pool_info(&self, name: &str, p: &Pool) -> PoolInfo {
        let total = 10 * GIB;
        let used: u64 = p.volumes.values().map(|v| v.size).sum();
        PoolInfo {
            name: name.into(),
            engine: EngineKind::File,
            path: PathBuf::from("/dev/mem"),
            total_bytes: total,
            used_bytes: used,
            free_bytes: total - used,
            max_volume_bytes: total - used,
            extent_bytes: 4 * MI,
            volume_count: p.volumes.len() as u32,
            disks: p
                .disks
                .iter()
                .map(|d| PoolDisk {
                    dev_path: d.clone(),
                    capacity_bytes: total,
                    free_bytes: total - used,
                })
                .collect(),
            volumes: p.volumes.keys().cloned().collect(),
        }
    }
}

#[async_trait]
impl VolumeEngine for MemEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::File
    }
    async fn ensure_pool(&self, pool: &str, disks: &[PathBuf]) -> EngineResult<PoolInfo> {
        let mut pools = self.pools.lock().unwrap();
        let p = pools.entry(pool.into()).or_default();
        for d in disks {
            if !p.disks.contains(d) {
                p.disks.push(d.clone());
            }
        }
        Ok(self.pool_info(pool, p))
    }
    async fn pool_info(&self, pool: &str) -> EngineResult<Option<PoolInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools.get(pool).map(|p| self.pool_info(pool, p)))
    }
    async fn list_pools(&self) -> EngineResult<Vec<PoolInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools.iter().map(|(n, p)| self.pool_info(n, p)).collect())
    }
    async fn create_volume(
        &self,
        pool: &str,
        v: &str,
        size: u64,
        _o: &VolumeOptions,
    ) -> EngineResult<VolumeInfo> {
        let size = round_up_to_extent(size, 4 * MI);
        let mut pools = self.pools.lock().unwrap();
        let p = pools.get_mut(pool).ok_or_else(|| err("no pool"))?;
        let e = p.volumes.entry(v.into()).or_insert(Vol {
            size,
            content: String::new(),
        });
        Ok(self.vinfo(pool, v, e.size))
    }
    async fn delete_volume(&self, pool: &str, v: &str) -> EngineResult<()> {
        let mut pools = self.pools.lock().unwrap();
        if let Some(p) = pools.get_mut(pool) {
            p.volumes.remove(v);
        }
        Ok(())
    }
    async fn extend_volume(&self, pool: &str, v: &str, size: u64) -> EngineResult<VolumeInfo> {
        let size = round_up_to_extent(size, 4 * MI);
        let mut pools = self.pools.lock().unwrap();
        let vol = pools
            .get_mut(pool)
            .and_then(|p| p.volumes.get_mut(v))
            .ok_or_else(|| err("no volume"))?;
        vol.size = vol.size.max(size);
        Ok(self.vinfo(pool, v, vol.size))
    }
    async fn stat_volume(&self, pool: &str, v: &str) -> EngineResult<Option<VolumeInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools
            .get(pool)
            .and_then(|p| p.volumes.get(v))
            .map(|x| self.vinfo(pool, v, x.size)))
    }
    async fn activate_volume(&self, pool: &str, v: &str) -> EngineResult<VolumeInfo> {
        self.stat_volume(pool, v)
            .await?
            .ok_or_else(|| err("no volume"))
    }
    async fn deactivate_volume(&self, _pool: &str, _v: &str) -> EngineResult<()> {
        Ok(())
    }
    async fn list_volumes(&self, pool: Option<&str>) -> EngineResult<Vec<VolumeInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools
            .iter()
            .filter(|(n, _)| pool.is_none_or(|p| p == n.as_str()))
            .flat_map(|(n, p)| p.volumes.iter().map(|(v, x)| self.vinfo(n, v, x.size)))
            .collect())
    }
    async fn create_snapshot(
        &self,
        pool: &str,
        v: &str,
        s: &str,
        size: u64,
    ) -> EngineResult<SnapshotInfo> {
        let mut pools = self.pools.lock().unwrap();
        let p = pools.get_mut(pool).ok_or_else(|| err("no pool"))?;
        let vol = p.volumes.get(v).cloned().ok_or_else(|| err("no volume"))?;
        let snap = p.snapshots.entry(s.into()).or_insert(Snap {
            source: v.into(),
            size: if size == 0 { vol.size } else { size },
            content: vol.content,
            valid: true,
        });
        Ok(SnapshotInfo {
            pool: pool.into(),
            name: s.into(),
            source_volume: v.into(),
            size_bytes: snap.size,
            valid: snap.valid,
        })
    }
    async fn delete_snapshot(&self, pool: &str, s: &str) -> EngineResult<()> {
        let mut pools = self.pools.lock().unwrap();
        if let Some(p) = pools.get_mut(pool) {
            p.snapshots.remove(s);
        }
        Ok(())
    }
    async fn list_snapshots(&self, pool: &str) -> EngineResult<Vec<SnapshotInfo>> {
        let pools = self.pools.lock().unwrap();
        Ok(pools
            .get(pool)
            .map(|p| {
                p.snapshots
                    .iter()
                    .map(|(n, s)| SnapshotInfo {
                        pool: pool.into(),
                        name: n.clone(),
                        source_volume: s.source.clone(),
                        size_bytes: s.size,
                        valid: s.valid,
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
    async fn restore_snapshot(&self, pool: &str, s: &str, new: &str) -> EngineResult<VolumeInfo> {
        let mut pools = self.pools.lock().unwrap();
        let p = pools.get_mut(pool).ok_or_else(|| err("no pool"))?;
        let snap = p
            .snapshots
            .get(s)
            .cloned()
            .ok_or_else(|| err("no snapshot"))?;
        let size = p.volumes[&snap.source].size;
        p.volumes.entry(new.into()).or_insert(Vol {
            size,
            content: snap.content,
        });
        Ok(self.vinfo(pool, new, size))
    }
    async fn rollback_snapshot(&self, pool: &str, v: &str, s: &str) -> EngineResult<()> {
        let mut pools = self.pools.lock().unwrap();
        let p = pools.get_mut(pool).ok_or_else(|| err("no pool"))?;
        let Some(snap) = p.snapshots.remove(s) else {
            return Ok(());
        };
        p.volumes
            .get_mut(v)
            .ok_or_else(|| err("no volume"))?
            .content = snap.content;
        Ok(())
    }
}

/// Executes `dd if=… of=…` between the volumes of the engines; records every command.
#[derive(Debug)]
struct DdRunner {
    engines: Vec<Arc<MemEngine>>,
    log: Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl Runner for DdRunner {
    async fn output(&self, cmd: &Cmd) -> hwameistor_exec::Result<Output> {
        let argv = cmd.argv();
        self.log.lock().unwrap().push(argv.clone());
        if cmd.program() != "dd" {
            return Ok(Output::failed(127, "not found"));
        }
        let get = |k: &str| {
            argv.iter()
                .find_map(|a| a.strip_prefix(k).map(PathBuf::from))
        };
        let (Some(from), Some(to)) = (get("if="), get("of=")) else {
            return Ok(Output::failed(1, "dd: missing operand"));
        };
        for e in &self.engines {
            if e.dd(&from, &to).is_ok() {
                return Ok(Output::ok(""));
            }
        }
        Ok(Output::failed(1, "dd: no such device"))
    }
}

const POOL: &str = "LocalStorage_PoolHDD";

struct Cluster {
    store: Store,
    _dir: tempfile::TempDir,
    engines: Vec<Arc<MemEngine>>,
    runner: Arc<DdRunner>,
    shutdown: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(nodes: &[&str]) -> Result<Cluster> {
    let (dir, store) = temp_store();
    let shutdown = CancellationToken::new();
    let engines: Vec<Arc<MemEngine>> = nodes.iter().map(|n| MemEngine::new(n)).collect();
    let runner = Arc::new(DdRunner {
        engines: engines.clone(),
        log: Mutex::new(Vec::new()),
    });
    tokio::spawn(volume::run_cluster_controllers(
        cluster_cfg(),
        store.clone(),
        shutdown.clone(),
    ));
    let ccfg = SnapshotClusterConfig {
        poll_interval: Duration::from_millis(200),
        ..Default::default()
    };
    tokio::spawn(snapshot::run_snapshot_cluster(
        ccfg,
        store.clone(),
        shutdown.clone(),
    ));
    for (n, e) in nodes.iter().zip(&engines) {
        let engine: SharedEngine = e.clone();
        tokio::spawn(volume::run_node_agent(
            agent_cfg(n),
            store.clone(),
            engine.clone(),
            runner.clone(),
            shutdown.clone(),
        ));
        let mut ncfg = SnapshotNodeConfig::new(*n);
        ncfg.resync_interval = Duration::from_millis(300);
        ncfg.merge_poll_interval = Duration::from_millis(100);
        tokio::spawn(snapshot::run_snapshot_node(
            ncfg,
            store.clone(),
            engine,
            runner.clone(),
            shutdown.clone(),
        ));
        claim_disks(&store, &format!("{n}-claim"), n, &["/dev/sdb"]).await?;
    }
    Ok(Cluster {
        store,
        _dir: dir,
        engines,
        runner,
        shutdown,
    })
}

async fn ready_volume(store: &Store, name: &str) -> LocalVolume {
    wait_for(20, &format!("{name} Ready"), || async {
        let lv = store.all::<LocalVolume>().get_opt(name).await.unwrap()?;
        (lv.status.as_ref()?.state == VolumeState::Ready).then_some(lv)
    })
    .await
}

async fn ready_snapshot(store: &Store, name: &str) -> LocalVolumeSnapshot {
    wait_for(20, &format!("snapshot {name} Ready"), || async {
        let s = store
            .all::<LocalVolumeSnapshot>()
            .get_opt(name)
            .await
            .unwrap()?;
        (s.state() == VolumeState::Ready).then_some(s)
    })
    .await
}

async fn gone<K: hwameistor_store::Object>(store: &Store, name: &str) {
    wait_for(20, &format!("{name} removed"), || async {
        store
            .all::<K>()
            .get_opt(name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await
}

async fn restore_state(store: &Store, name: &str) -> Option<(OperationState, String)> {
    let r = store
        .all::<LocalVolumeSnapshotRestore>()
        .get_opt(name)
        .await
        .unwrap()?;
    let st = r.status.unwrap_or_default();
    Some((st.state, st.message))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_restore_rollback_and_clone_keep_the_right_data() -> Result<()> {
    let c = start(&["n1"]).await?;
    let (store, e) = (&c.store, &c.engines[0]);
    store
        .all::<LocalVolume>()
        .create(&volume("data", 64 * MI))
        .await?;
    ready_volume(store, "data").await;
    e.write(POOL, "data", "v1");

    // Snapshot: one replica snapshot, Ready with size, creation time; shown columns filled.
    snapshot::create_snapshot(store, "snap1", "data", None).await?;
    let s = ready_snapshot(store, "snap1").await;
    let st = s.status.clone().unwrap();
    assert_eq!(st.allocated_capacity_bytes, (64 * MI) as i64);
    assert!(st.creation_time.is_some());
    assert_eq!(st.replica_snapshots.len(), 1);
    assert!(st.attr.is_none(), "{st:?}");
    assert_eq!(e.snapshots(POOL), vec!["snap1"]);
    e.write(POOL, "data", "v2");

    // Restore into a new volume: it gets the snapshot's data, not the current data.
    let r = snapshot::restore_snapshot(store, "snap1", "restored", None).await?;
    assert_eq!(r, "snaprestore-restored");
    wait_for(20, "restore completed", || async {
        (restore_state(store, &r).await?.0 == OperationState::Completed).then_some(())
    })
    .await;
    assert_eq!(e.content(POOL, "restored").as_deref(), Some("v1"));
    assert_eq!(e.content(POOL, "data").as_deref(), Some("v2"));
    let lv = store.all::<LocalVolume>().get("restored").await?;
    assert_eq!(
        lv.metadata
            .annotations
            .unwrap_or_default()
            .get(hwameistor_api::consts::ANNOTATION_SNAPSHOT_RESTORE_COMPLETED)
            .map(String::as_str),
        Some("snap1")
    );
    // The file engine path copies through a scratch volume that is removed afterwards.
    assert!(!e.volumes(POOL).iter().any(|v| v.contains("scratch")));
    assert!(
        c.runner
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|a| a[0] == "dd" && a.iter().any(|x| x.contains("sparse")))
    );

    // Rollback refused while published.
    store
        .all::<LocalVolume>()
        .patch_status("data", &json!({"status": {"publishedNode": "n1"}}))
        .await?;
    let rb = snapshot::rollback_snapshot(store, "snap1").await?;
    assert_eq!(rb, rollback_name("snap1"));
    let (state, msg) = wait_for(20, "rollback refused", || async {
        let s = restore_state(store, &rb).await?;
        (s.0 == OperationState::Failed).then_some(s)
    })
    .await;
    assert_eq!(state, OperationState::Failed);
    assert!(msg.contains("published"), "{msg}");
    assert_eq!(e.content(POOL, "data").as_deref(), Some("v2"));
    store
        .all::<LocalVolumeSnapshotRestore>()
        .delete(&rb)
        .await?;
    gone::<LocalVolumeSnapshotRestore>(store, &rb).await;

    // Unpublished: rollback goes through Submitted → InProgress → Completed, then the object
    // and the consumed snapshot are removed.
    store
        .all::<LocalVolume>()
        .patch_status("data", &json!({"status": {"publishedNode": ""}}))
        .await?;
    snapshot::rollback_snapshot(store, "snap1").await?;
    gone::<LocalVolumeSnapshotRestore>(store, &rb).await;
    assert_eq!(e.content(POOL, "data").as_deref(), Some("v1"));
    gone::<LocalVolumeSnapshot>(store, "snap1").await;
    let left: Vec<_> = store
        .all::<LocalVolumeReplicaSnapshot>()
        .list(&Default::default())
        .await?
        .items;
    assert!(left.is_empty(), "{left:?}");
    let parts: Vec<_> = store
        .all::<LocalVolumeReplicaSnapshotRestore>()
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|x| x.spec.volume_snapshot_restore == rb)
        .collect();
    assert!(parts.is_empty());

    // Clone (larger): the new volume holds the source's current data, the temporary
    // snapshot is gone afterwards.
    e.write(POOL, "data", "v3");
    let r = snapshot::clone_volume(store, "data", "copy", Some(128 * MI)).await?;
    wait_for(20, "clone completed", || async {
        (restore_state(store, &r).await?.0 == OperationState::Completed).then_some(())
    })
    .await;
    ready_volume(store, "copy").await;
    assert_eq!(e.content(POOL, "copy").as_deref(), Some("v3"));
    let copy = store.all::<LocalVolume>().get("copy").await?;
    assert_eq!(copy.spec.required_capacity_bytes, (128 * MI) as i64);
    gone::<LocalVolumeSnapshot>(store, "copy-clone-source").await;
    wait_for(20, "clone snapshot removed from the host", || async {
        e.snapshots(POOL).is_empty().then_some(())
    })
    .await;

    // Smaller than the source: refused up front.
    assert!(
        snapshot::clone_volume(store, "data", "tiny", Some(4 * MI))
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_volume_is_snapshotted_on_every_replica_and_invalid_is_reported() -> Result<()> {
    let c = start(&["n1", "n2"]).await?;
    let store = &c.store;
    let mut lv = volume("ha", 64 * MI);
    lv.spec.replica_number = 2;
    store.all::<LocalVolume>().create(&lv).await?;
    // Without DRBD here, HA replicas hold their devices but stay NotReady.
    wait_for(20, "two replica devices", || async {
        let reps = store
            .all::<hwameistor_api::LocalVolumeReplica>()
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        (reps
            .iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| !s.dev_path.is_empty()))
            .count()
            == 2)
            .then_some(())
    })
    .await;
    c.engines[0].write(POOL, "ha", "x");
    c.engines[1].write(POOL, "ha", "x");

    snapshot::create_snapshot(store, "hasnap", "ha", Some(16 * MI)).await?;
    let s = ready_snapshot(store, "hasnap").await;
    let st = s.status.unwrap();
    assert_eq!(st.replica_snapshots.len(), 2);
    assert_eq!(st.allocated_capacity_bytes, (16 * MI) as i64);
    let rs = store
        .all::<LocalVolumeReplicaSnapshot>()
        .list(&Default::default())
        .await?
        .items;
    let mut nodes: Vec<_> = rs.iter().map(|r| r.spec.node_name.clone()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2"]);
    assert_eq!(c.engines[0].snapshots(POOL), vec!["hasnap"]);
    assert_eq!(c.engines[1].snapshots(POOL), vec!["hasnap"]);

    // The COW space of one replica overflows: INVALID, NotReady, with the reason.
    c.engines[1].invalidate(POOL, "hasnap");
    let s = wait_for(20, "snapshot invalid", || async {
        let s = store
            .all::<LocalVolumeSnapshot>()
            .get_opt("hasnap")
            .await
            .unwrap()?;
        s.status
            .as_ref()?
            .attr
            .as_ref()
            .is_some_and(|a| a.invalid)
            .then_some(s)
    })
    .await;
    let st = s.status.unwrap();
    assert_eq!(st.state, VolumeState::NotReady);
    assert!(st.message.contains("n2"), "{}", st.message);
    // An invalid snapshot cannot be restored.
    let r = snapshot::restore_snapshot(store, "hasnap", "from-invalid", None).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (state, _) = restore_state(store, &r).await.unwrap();
    assert_ne!(state, OperationState::Completed);

    // Delete: removed on both hosts, then the objects.
    snapshot::delete_snapshot(store, "hasnap").await?;
    gone::<LocalVolumeSnapshot>(store, "hasnap").await;
    assert!(c.engines[0].snapshots(POOL).is_empty());
    assert!(c.engines[1].snapshots(POOL).is_empty());
    Ok(())
}
