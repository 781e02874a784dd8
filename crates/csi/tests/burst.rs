//! A burst of CreateVolume calls against a pool that fits only some of them: the real CSI
//! controller service over the real cluster controllers (placement with the capacity ledger)
//! and the real node agent, on an EmbeddedStore, with the in-memory engine of the
//! controllers' tests (which refuses to over-fill a pool).
//!
//! 100 creates fired at once against a pool that fits N: exactly N succeed, every other one
//! gets RESOURCE_EXHAUSTED (never a timeout), the engine never holds more than the pool, no
//! reservation is left behind by the refused ones, and deleting everything gives the whole
//! pool back.

mod common;

#[path = "../../controllers/tests/volume_common/fake_engine.rs"]
#[allow(dead_code)]
mod fake_engine;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::connect;
use fake_engine::FakeEngine;
use hwameistor_api::types::{ClaimPhase, DiskOwner};
use hwameistor_api::{
    LocalDisk, LocalDiskClaim, LocalStorageNode, LocalVolume, LocalVolumeReplica,
};
use hwameistor_controllers::volume::cluster::build_ledger;
use hwameistor_controllers::volume::{self, ClusterConfig, NodeAgentConfig};
use hwameistor_csi::CsiConfig;
use hwameistor_csi::proto::controller_client::ControllerClient;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use hwameistor_csi::proto::*;
use hwameistor_engine::SharedEngine;
use hwameistor_exec::TokioRunner;
use hwameistor_store::{EmbeddedStore, Store};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::Code;

const MIB: u64 = 1 << 20;
const POOL: &str = "LocalStorage_PoolHDD";
const NODE: &str = "n1";
const VOLUME_BYTES: u64 = 64 * MIB;

async fn list<K: hwameistor_store::Object>(store: &Store) -> Vec<K> {
    store
        .all::<K>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
}

/// Free bytes of the pool in the capacity ledger rebuilt from the store (reservations of
/// placed volumes included), as the next placement would see it.
async fn ledger_free(store: &Store) -> u64 {
    let ledger = build_ledger(
        &list::<LocalStorageNode>(store).await,
        &list::<LocalVolume>(store).await,
        &list::<LocalVolumeReplica>(store).await,
        "",
    );
    ledger.usage(NODE, POOL).unwrap().free_bytes
}

async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_creates_never_over_commits_a_pool() {
    const FITS: u64 = 10;
    const BURST: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let store: Store = EmbeddedStore::open(dir.path().join("store.redb"))
        .unwrap()
        .into();
    // A pool of one disk with room for FITS volumes and half of another.
    let engine = Arc::new(FakeEngine::new(FITS * VOLUME_BYTES + VOLUME_BYTES / 2));
    let stop = CancellationToken::new();
    let mut agent_cfg = NodeAgentConfig::new(NODE);
    agent_cfg.storage_ip = Some("10.0.0.9".into());
    agent_cfg.sync_interval = Duration::from_millis(500);
    let shared: SharedEngine = engine.clone();
    tokio::spawn(volume::run_node_agent(
        agent_cfg,
        store.clone(),
        shared,
        TokioRunner::shared(),
        stop.clone(),
    ));
    let cluster_cfg = ClusterConfig {
        placement_retry: Duration::from_millis(500),
        ..Default::default()
    };
    tokio::spawn(volume::run_cluster_controllers(
        cluster_cfg,
        store.clone(),
        stop.clone(),
    ));

    // The disk manager's part: a LocalDisk claimed for local-storage on the node.
    let mut ld = LocalDisk::test(NODE, "sdb");
    ld.spec.device_path = "/dev/sdb".into();
    ld.spec.owner = DiskOwner::LocalStorage;
    store.all::<LocalDisk>().create(&ld).await.unwrap();
    let mut claim = LocalDiskClaim::test("n1-claim", NODE, DiskOwner::LocalStorage);
    claim.spec.disk_refs = vec![ObjectReference {
        name: ld.metadata.name.clone(),
        kind: Some("LocalDisk".into()),
        ..Default::default()
    }];
    store.all::<LocalDiskClaim>().create(&claim).await.unwrap();
    store
        .all::<LocalDiskClaim>()
        .patch_status(
            "n1-claim",
            &json!({"status": {"status": ClaimPhase::Bound}}),
        )
        .await
        .unwrap();
    eventually(30, "the pool to be reported", || async {
        store
            .all::<LocalStorageNode>()
            .get_opt(NODE)
            .await
            .unwrap()
            .and_then(|l| l.status)
            .and_then(|s| s.pools.get(POOL).map(|p| p.total_capacity_bytes > 0))
            .unwrap_or(false)
    })
    .await;
    let free_before = ledger_free(&store).await;
    assert_eq!(free_before / VOLUME_BYTES, FITS, "free {free_before}");

    let sock = dir.path().join("lvm.sock");
    let cfg =
        CsiConfig::new(&sock, NODE).with_wait(Duration::from_secs(30), Duration::from_millis(100));
    {
        let (store, stop) = (store.clone(), stop.clone());
        let ops = Arc::new(common::FakeNodeOps::default());
        tokio::spawn(async move { hwameistor_csi::serve_lvm(cfg, store, ops, stop).await });
    }
    eventually(10, "the CSI socket", || async { sock.exists() }).await;
    let client = ControllerClient::new(connect(&sock).await);

    let started = Instant::now();
    let tasks: Vec<_> = (0..BURST)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move {
                let req = CreateVolumeRequest {
                    name: format!("burst-{i}"),
                    capacity_range: Some(CapacityRange {
                        required_bytes: VOLUME_BYTES as i64,
                        limit_bytes: 0,
                    }),
                    volume_capabilities: vec![VolumeCapability {
                        access_mode: Some(AccessMode {
                            mode: Mode::SingleNodeWriter as i32,
                        }),
                        access_type: Some(AccessType::Mount(MountVolume::default())),
                    }],
                    parameters: [("poolClass".to_string(), "HDD".to_string())].into(),
                    ..Default::default()
                };
                (format!("burst-{i}"), c.create_volume(req).await)
            })
        })
        .collect();
    let mut ok = Vec::new();
    let mut exhausted = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (name, Ok(_)) => ok.push(name),
            (name, Err(s)) if s.code() == Code::ResourceExhausted => exhausted.push(name),
            (name, Err(s)) => panic!("{name}: unexpected answer {s:?}"),
        }
    }
    eprintln!(
        "burst: {} created, {} RESOURCE_EXHAUSTED in {:?}",
        ok.len(),
        exhausted.len(),
        started.elapsed()
    );
    assert_eq!(
        ok.len() as u64,
        FITS,
        "exactly the volumes that fit are created"
    );
    assert_eq!(exhausted.len(), BURST - FITS as usize);

    // The engine holds exactly the created volumes, never more than the pool.
    let mut on_host = engine.volume_names();
    on_host.sort();
    let mut expected = ok.clone();
    expected.sort();
    assert_eq!(on_host, expected);
    // The refused volumes are gone and hold no reservation: the ledger's free space is the
    // pool minus the created volumes.
    eventually(30, "refused volumes to be removed", || async {
        list::<LocalVolume>(&store).await.len() == ok.len()
    })
    .await;
    let placed: Vec<LocalVolume> = list::<LocalVolume>(&store).await;
    assert!(placed.iter().all(|v| v.spec.config.is_some()));
    assert_eq!(ledger_free(&store).await, free_before - FITS * VOLUME_BYTES);

    // Deleting them all gives the whole pool back.
    let deletes: Vec<_> = ok
        .iter()
        .map(|name| {
            let mut c = client.clone();
            let req = DeleteVolumeRequest {
                volume_id: name.clone(),
                ..Default::default()
            };
            tokio::spawn(async move { c.delete_volume(req).await })
        })
        .collect();
    for d in deletes {
        d.await.unwrap().unwrap();
    }
    assert!(list::<LocalVolume>(&store).await.is_empty());
    assert!(engine.volume_names().is_empty());
    eventually(30, "the pool report to show no volumes", || async {
        ledger_free(&store).await == free_before
    })
    .await;
    stop.cancel();
}
