//! Tier 0: thin provisioning through the reconcilers over the EmbeddedStore: ThinPoolClaim →
//! thin pool (lvm-like node) or Failed (file-like node), thin pool usage on the
//! LocalStorageNode with the 80 % warning, thin volumes placed only where a thin pool is and
//! only up to size × ratio, a deleted thin volume's capacity reused.

mod volume_common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hwameistor_api::types::{ThinPoolClaimPhase, VolumeState};
use hwameistor_api::{
    LocalStorageNode, LocalVolume, ThinPoolClaim, ThinPoolClaimDescription, ThinPoolClaimSpec,
};
use hwameistor_controllers::volume;
use hwameistor_core::snapshot::ThinPool;
use hwameistor_engine::{
    EngineKind, Error, PoolInfo, Result, SharedEngine, THIN_POOL_LV, ThinPoolInfo, ThinPoolRequest,
    VolumeAttributes, VolumeEngine, VolumeInfo, VolumeOptions, round_up_to_extent,
};
use hwameistor_exec::TokioRunner;
use hwameistor_store::Store;
use k8s_openapi::api::core::v1::Event as KubeEvent;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use volume_common::fake_engine::FakeEngine;
use volume_common::*;

/// The in-memory engine plus an in-memory thin pool per pool, like the lvm engine.
#[derive(Debug)]
struct ThinFake {
    inner: FakeEngine,
    thin: Mutex<BTreeMap<String, ThinPoolInfo>>,
    /// Thin volume → (pool, size).
    thin_volumes: Mutex<BTreeMap<String, (String, u64)>>,
    /// (volume, thin) of every create.
    creates: Mutex<Vec<(String, bool)>>,
}

impl ThinFake {
    fn new(disk_bytes: u64) -> Self {
        ThinFake {
            inner: FakeEngine::new(disk_bytes),
            thin: Mutex::default(),
            thin_volumes: Mutex::default(),
            creates: Mutex::default(),
        }
    }

    fn set_usage(&self, pool: &str, data: f64, meta: f64) {
        let mut t = self.thin.lock().unwrap();
        let tp = t.get_mut(pool).unwrap();
        tp.data_percent = data;
        tp.metadata_percent = meta;
    }

    fn vinfo(pool: &str, name: &str, size: u64) -> VolumeInfo {
        VolumeInfo {
            pool: pool.into(),
            name: name.into(),
            size_bytes: size,
            device_path: PathBuf::from(format!("/dev/{pool}/{name}")),
            attrs: VolumeAttributes {
                active: true,
                stripes: 1,
                ..Default::default()
            },
        }
    }
}

fn insufficient(pool: &str, volume: &str, requested: u64, available: u64) -> Error {
    Error::InsufficientSpace {
        op: "create thin volume",
        pool: pool.into(),
        volume: volume.into(),
        requested,
        available,
    }
}

#[async_trait]
impl VolumeEngine for ThinFake {
    fn kind(&self) -> EngineKind {
        EngineKind::Lvm
    }
    async fn ensure_pool(&self, pool: &str, disks: &[PathBuf]) -> Result<PoolInfo> {
        self.inner.ensure_pool(pool, disks).await
    }
    async fn pool_info(&self, pool: &str) -> Result<Option<PoolInfo>> {
        self.inner.pool_info(pool).await
    }
    async fn list_pools(&self) -> Result<Vec<PoolInfo>> {
        self.inner.list_pools().await
    }
    async fn create_volume(
        &self,
        pool: &str,
        volume: &str,
        size_bytes: u64,
        opts: &VolumeOptions,
    ) -> Result<VolumeInfo> {
        self.creates
            .lock()
            .unwrap()
            .push((volume.to_owned(), opts.thin));
        if !opts.thin {
            return self
                .inner
                .create_volume(pool, volume, size_bytes, opts)
                .await;
        }
        let size = round_up_to_extent(size_bytes, 4 << 20);
        let mut vols = self.thin_volumes.lock().unwrap();
        if let Some((_, s)) = vols.get(volume) {
            return Ok(Self::vinfo(pool, volume, *s));
        }
        let mut thin = self.thin.lock().unwrap();
        let tp = thin.get_mut(pool).ok_or_else(|| Error::InvalidArgument {
            op: "create thin volume",
            ctx: Default::default(),
            message: "no thin pool".into(),
        })?;
        let cap = tp.capacity();
        if !cap.can_provision(size) {
            return Err(insufficient(pool, volume, size, cap.free_bytes()));
        }
        tp.provisioned_bytes += size;
        tp.thin_volumes.push(volume.to_owned());
        tp.thin_volumes.sort();
        vols.insert(volume.to_owned(), (pool.to_owned(), size));
        Ok(Self::vinfo(pool, volume, size))
    }
    async fn delete_volume(&self, pool: &str, volume: &str) -> Result<()> {
        if let Some((p, size)) = self.thin_volumes.lock().unwrap().remove(volume) {
            let mut thin = self.thin.lock().unwrap();
            let tp = thin.get_mut(&p).unwrap();
            tp.provisioned_bytes -= size;
            tp.thin_volumes.retain(|v| v != volume);
            return Ok(());
        }
        self.inner.delete_volume(pool, volume).await
    }
    async fn extend_volume(&self, pool: &str, volume: &str, size_bytes: u64) -> Result<VolumeInfo> {
        self.inner.extend_volume(pool, volume, size_bytes).await
    }
    async fn stat_volume(&self, pool: &str, volume: &str) -> Result<Option<VolumeInfo>> {
        if let Some((p, s)) = self.thin_volumes.lock().unwrap().get(volume) {
            return Ok(Some(Self::vinfo(p, volume, *s)));
        }
        self.inner.stat_volume(pool, volume).await
    }
    async fn activate_volume(&self, pool: &str, volume: &str) -> Result<VolumeInfo> {
        self.stat_volume(pool, volume)
            .await?
            .ok_or_else(|| Error::VolumeNotFound {
                op: "activate",
                pool: pool.into(),
                volume: volume.into(),
            })
    }
    async fn deactivate_volume(&self, _pool: &str, _volume: &str) -> Result<()> {
        Ok(())
    }
    async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeInfo>> {
        let mut out = self.inner.list_volumes(pool).await?;
        for (v, (p, s)) in self.thin_volumes.lock().unwrap().iter() {
            if pool.is_none_or(|q| q == p) {
                out.push(Self::vinfo(p, v, *s));
            }
        }
        Ok(out)
    }
    async fn thin_pool(&self, pool: &str) -> Result<Option<ThinPoolInfo>> {
        Ok(self.thin.lock().unwrap().get(pool).cloned())
    }
    async fn ensure_thin_pool(&self, pool: &str, req: &ThinPoolRequest) -> Result<ThinPoolInfo> {
        let total = self
            .inner
            .pool_info(pool)
            .await?
            .map(|p| p.free_bytes)
            .ok_or_else(|| Error::PoolNotFound {
                op: "ensure thin pool",
                pool: pool.into(),
            })?;
        let mut thin = self.thin.lock().unwrap();
        let tp = thin.entry(pool.to_owned()).or_insert_with(|| ThinPoolInfo {
            pool: pool.into(),
            name: THIN_POOL_LV.into(),
            data_bytes: 0,
            metadata_bytes: 0,
            data_percent: 0.0,
            metadata_percent: 0.0,
            over_provision_ratio: 1.0,
            provisioned_bytes: 0,
            thin_volumes: vec![],
            thin_snapshots: vec![],
        });
        if req.data_bytes > total {
            return Err(insufficient(pool, THIN_POOL_LV, req.data_bytes, total));
        }
        tp.data_bytes = tp.data_bytes.max(req.data_bytes);
        tp.metadata_bytes = tp.metadata_bytes.max(req.metadata_bytes);
        tp.over_provision_ratio = req.over_provision_ratio;
        Ok(tp.clone())
    }
}

struct Running {
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

fn start(store: &Store, engines: Vec<(&str, SharedEngine)>) -> Running {
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for (node, engine) in engines {
        let fut = volume::run_node_agent(
            agent_cfg(node),
            store.clone(),
            engine,
            TokioRunner::shared(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move { fut.await.expect("node agent") }));
    }
    let fut = volume::run_cluster_controllers(cluster_cfg(), store.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        fut.await.expect("cluster controllers")
    }));
    Running { shutdown, tasks }
}

fn claim(name: &str, node: &str, gib: i64, ratio: &str) -> ThinPoolClaim {
    ThinPoolClaim::new(
        name,
        ThinPoolClaimSpec {
            node_name: node.into(),
            description: ThinPoolClaimDescription {
                pool_name: POOL_HDD.into(),
                capacity: gib,
                capacity_percent: None,
                over_provision_ratio: Some(ratio.into()),
                pool_metadata_size: 0,
            },
        },
    )
}

async fn claim_phase(store: &Store, name: &str) -> Option<(ThinPoolClaimPhase, String)> {
    let c = store.all::<ThinPoolClaim>().get_opt(name).await.unwrap()?;
    let s = c.status?;
    Some((s.status, s.message))
}

fn thin_volume(name: &str, bytes: u64) -> LocalVolume {
    let mut lv = volume(name, bytes);
    lv.spec.thin = true;
    lv
}

async fn lv_ready(store: &Store, name: &str) -> Option<LocalVolume> {
    store
        .all::<LocalVolume>()
        .get_opt(name)
        .await
        .unwrap()
        .filter(|lv| {
            lv.status
                .as_ref()
                .is_some_and(|s| s.state == VolumeState::Ready)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thin_pool_claims_usage_and_placement_within_the_ratio() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let lvm = Arc::new(ThinFake::new(10 * GIB));
    let file = Arc::new(FakeEngine::new(100 * GIB));
    let run = start(
        &store,
        vec![
            ("lvm-node", lvm.clone() as SharedEngine),
            ("file-node", file.clone() as SharedEngine),
        ],
    );
    claim_disks(&store, "c1", "lvm-node", &["/dev/sdb"]).await?;
    claim_disks(&store, "c2", "file-node", &["/dev/sdc"]).await?;
    // A ThinPoolClaim handled before its pool exists fails and is retried only
    // after 30 s: let both pools be reported first.
    for node in ["lvm-node", "file-node"] {
        wait_pool(&store, node, POOL_HDD, 30, "pool built", |_| true).await;
    }

    // A thin pool of 2 GiB with ratio 2 on the lvm node; the file node refuses.
    let tpcs = store.all::<ThinPoolClaim>();
    tpcs.create(&claim("tp-lvm", "lvm-node", 2, "2.0")).await?;
    tpcs.create(&claim("tp-file", "file-node", 2, "2.0"))
        .await?;
    let (_, msg) = wait_for(30, "lvm claim consumed", || async {
        claim_phase(&store, "tp-lvm")
            .await
            .filter(|(p, _)| *p == ThinPoolClaimPhase::Consumed)
    })
    .await;
    assert!(msg.contains("over-provision ratio 2"), "{msg}");
    let (_, msg) = wait_for(30, "file claim failed", || async {
        claim_phase(&store, "tp-file")
            .await
            .filter(|(p, _)| *p == ThinPoolClaimPhase::Failed)
    })
    .await;
    assert!(msg.contains("has no thin pools"), "{msg}");

    // The LocalStorageNode reports the thin pool and the claim record.
    let lsn = wait_for(30, "thin pool reported", || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt("lvm-node")
            .await
            .unwrap()?;
        lsn.status
            .as_ref()?
            .pools
            .get(POOL_HDD)?
            .thin_pool
            .as_ref()?;
        Some(lsn)
    })
    .await;
    let st = lsn.status.unwrap();
    let tp = st.pools[POOL_HDD].thin_pool.clone().unwrap();
    assert_eq!(tp.size, (2 * GIB) as i64);
    assert_eq!(tp.over_provision_ratio.as_deref(), Some("2"));
    assert_eq!(tp.state.unwrap().reason, "PoolStateNormal");
    assert_eq!(st.thin_pool_extend_records[POOL_HDD].len(), 1);

    // 4 GiB may be provisioned: four 1 GiB thin volumes fit, all on the lvm node.
    let lvs = store.all::<LocalVolume>();
    for i in 0..4 {
        lvs.create(&thin_volume(&format!("thin-{i}"), GIB)).await?;
    }
    for i in 0..4 {
        let lv = wait_for(30, "thin volume ready", || async {
            lv_ready(&store, &format!("thin-{i}")).await
        })
        .await;
        assert_eq!(lv.spec.config.unwrap().replicas[0].hostname, "lvm-node");
    }
    assert!(
        lvm.creates.lock().unwrap().iter().all(|(_, thin)| *thin),
        "every create asked the engine for a thin volume"
    );
    // The next one is not placed anywhere (the file node has no thin pool, the lvm node's
    // ratio is used up) and the engine is never asked.
    lvs.create(&thin_volume("thin-4", 4 << 20)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lv = lvs.get("thin-4").await?;
    assert!(
        lv.spec
            .config
            .as_ref()
            .is_none_or(|c| c.replicas.is_empty()),
        "placed beyond the ratio: {:?}",
        lv.spec.config
    );
    assert_eq!(lvm.thin_volumes.lock().unwrap().len(), 4);
    assert!(file.volume_names().is_empty(), "never made thick elsewhere");

    // Deleting one frees its provisioned capacity: the waiting volume is placed.
    lvs.patch("thin-0", &json!({"spec": {"delete": true}}))
        .await?;
    wait_for(30, "waiting thin volume placed", || async {
        lv_ready(&store, "thin-4").await
    })
    .await;
    assert!(!lvm.thin_volumes.lock().unwrap().contains_key("thin-0"));

    // Usage at 85 %: warning condition and a Warning Event on the node.
    lvm.set_usage(POOL_HDD, 85.0, 10.0);
    let cond = wait_for(30, "warning reported", || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt("lvm-node")
            .await
            .unwrap()?;
        let c = lsn.status?.pools.get(POOL_HDD)?.thin_pool.clone()?.state?;
        (c.reason == "PoolStateWarning").then_some(c)
    })
    .await;
    assert!(cond.message.contains("data 85.0% used"), "{}", cond.message);
    let ev = wait_for(30, "warning event", || async {
        store
            .namespaced::<KubeEvent>("default")
            .get_opt("lvm-node.thinpoolusagehigh")
            .await
            .unwrap()
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));
    run.stop().await;
    Ok(())
}

#[test]
fn thin_pool_capacity_maths_is_core_s() {
    // The fake uses the same maths as the engine and placement.
    let tp = ThinPool {
        size_bytes: 2 * GIB,
        over_provision_ratio: 2.0,
        provisioned_bytes: 3 * GIB,
    };
    assert!(tp.can_provision(GIB) && !tp.can_provision(GIB + 1));
}
