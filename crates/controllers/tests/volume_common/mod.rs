//! Shared helpers of the local-storage reconciler tests.
#![allow(dead_code)]

pub mod fake_engine;
pub mod snap;

use std::time::Duration;

use hwameistor_api::types::{ClaimPhase, DiskOwner};
use hwameistor_api::{
    LocalDisk, LocalDiskClaim, LocalPool, LocalStorageNode, LocalVolume, LocalVolumeReplica,
};
use hwameistor_controllers::volume::{ClusterConfig, NodeAgentConfig};
use hwameistor_store::{EmbeddedStore, Store};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::json;

pub const GIB: u64 = 1 << 30;
pub const POOL_HDD: &str = "LocalStorage_PoolHDD";

/// A store in a fresh temporary directory (kept alive by the returned guard).
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path().join("store.redb")).expect("open store");
    (dir, Store::from(store))
}

/// Node agent settings with fast loops.
pub fn agent_cfg(node: &str) -> NodeAgentConfig {
    let mut cfg = NodeAgentConfig::new(node);
    cfg.storage_ip = Some("10.0.0.9".into());
    cfg.sync_interval = Duration::from_millis(200);
    cfg.resync_interval = Duration::from_secs(2);
    cfg
}

/// Cluster controller settings with fast loops.
pub fn cluster_cfg() -> ClusterConfig {
    ClusterConfig {
        offline_after: Duration::from_secs(30),
        liveness_interval: Duration::from_millis(500),
        resync_interval: Duration::from_secs(2),
        placement_retry: Duration::from_millis(500),
    }
}

/// Poll until `Some`, or panic after the deadline (shared with every crate's tests).
pub use hwameistor_testkit::wait_for;

/// Create LocalDisk objects for `devs` on `node` and a Bound `local-storage` claim of them.
pub async fn claim_disks(
    store: &Store,
    claim: &str,
    node: &str,
    devs: &[&str],
) -> anyhow::Result<()> {
    let mut refs = Vec::new();
    for dev in devs {
        let mut ld = LocalDisk::test(node, dev.trim_start_matches("/dev/"));
        ld.spec.device_path = (*dev).to_owned();
        ld.spec.owner = DiskOwner::LocalStorage;
        let name = ld.metadata.name.clone().unwrap();
        store.all::<LocalDisk>().create(&ld).await?;
        refs.push(ObjectReference {
            name: Some(name),
            kind: Some("LocalDisk".into()),
            ..Default::default()
        });
    }
    let mut ldc = LocalDiskClaim::test(claim, node, DiskOwner::LocalStorage);
    ldc.spec.disk_refs = refs;
    store.all::<LocalDiskClaim>().create(&ldc).await?;
    store
        .all::<LocalDiskClaim>()
        .patch_status(claim, &json!({"status": {"status": ClaimPhase::Bound}}))
        .await?;
    Ok(())
}

/// A LocalVolume of `bytes` in the HDD pool.
pub fn volume(name: &str, bytes: u64) -> LocalVolume {
    let mut lv = LocalVolume::test(name);
    lv.spec.required_capacity_bytes = bytes as i64;
    lv
}

/// The report of `pool` in `node`'s LocalStorageNode once `ok` holds for it; panics after
/// `secs` naming `what`.
pub async fn wait_pool(
    store: &Store,
    node: &str,
    pool: &str,
    secs: u64,
    what: &str,
    ok: impl Fn(&LocalPool) -> bool,
) -> LocalPool {
    wait_for(secs, what, || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt(node)
            .await
            .unwrap()?;
        lsn.status?.pools.get(pool).filter(|p| ok(p)).cloned()
    })
    .await
}

/// Wait until no LocalVolume and no LocalVolumeReplica is left; panics after `secs`.
pub async fn wait_no_volumes(store: &Store, secs: u64, what: &str) {
    wait_for(secs, what, || async {
        let lvs = store
            .all::<LocalVolume>()
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        let lvrs = store
            .all::<LocalVolumeReplica>()
            .list(&Default::default())
            .await
            .unwrap()
            .items;
        (lvs.is_empty() && lvrs.is_empty()).then_some(())
    })
    .await
}

/// The (first) replica of `volume`, if the store has one.
pub async fn replica_of(store: &Store, volume: &str) -> Option<LocalVolumeReplica> {
    store
        .all::<LocalVolumeReplica>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|r| r.spec.volume_name == volume)
}
