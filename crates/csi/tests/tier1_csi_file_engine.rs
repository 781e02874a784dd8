//! Tier 1, end to end: the CSI drivers' real entry point (`serve_lvm` with `HostNodeOps`)
//! over the EmbeddedStore, with the real cluster controllers and node agent running the
//! `file` engine on a loop-backed disk: claim → pool → GetCapacity → CreateVolume (Ready on
//! a real loop device) → ControllerPublish → NodePublish (mkfs xfs + mount) → write →
//! ControllerExpand + NodeExpand (online xfs grow) → stats → unpublish → DeleteVolume, plus
//! the CreateVolume→Ready latency of 20 (or `$CSI_E2E_BENCH_COUNT`) concurrent volumes
//! (printed, not asserted).
//!
//! Everything lives under `/tmp/hwameistor-t1-csi-<pid>`; a Drop guard unmounts and detaches
//! everything below it, even when the test fails.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hwameistor_api::types::{ClaimPhase, DiskOwner};
use hwameistor_api::{LocalDisk, LocalDiskClaim, LocalVolume};
use hwameistor_controllers::volume::{self, ClusterConfig, NodeAgentConfig};
use hwameistor_csi::client::connect;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use hwameistor_csi::proto::*;
use hwameistor_csi::{CsiConfig, HostNodeOps};
use hwameistor_engine::file::FileEngine;
use hwameistor_engine::{FileEngineConfig, PoolFsType, SharedEngine};
use hwameistor_exec::TokioRunner;
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_testkit::{GI, MI, Sandbox, wait_for};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NODE: &str = "t1-csi-node";
const KEY: &str = "topology.lvm.hwameistor.io/node";

/// LocalDisk objects for `dev` and a Bound `local-storage` claim of it.
async fn claim(store: &Store, dev: &Path) {
    let name = dev.file_name().unwrap().to_string_lossy().into_owned();
    let mut ld = LocalDisk::test(NODE, &name);
    ld.spec.device_path = dev.display().to_string();
    ld.spec.owner = DiskOwner::LocalStorage;
    store.all::<LocalDisk>().create(&ld).await.unwrap();
    let mut ldc = LocalDiskClaim::test("t1-csi-claim", NODE, DiskOwner::LocalStorage);
    ldc.spec.disk_refs = vec![ObjectReference {
        name: ld.metadata.name.clone(),
        kind: Some("LocalDisk".into()),
        ..Default::default()
    }];
    store.all::<LocalDiskClaim>().create(&ldc).await.unwrap();
    store
        .all::<LocalDiskClaim>()
        .patch_status(
            "t1-csi-claim",
            &json!({"status": {"status": ClaimPhase::Bound}}),
        )
        .await
        .unwrap();
}

fn cap() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            ..Default::default()
        })),
    }
}

fn create(name: &str, bytes: u64) -> CreateVolumeRequest {
    let topo = Topology {
        segments: [(KEY.to_string(), NODE.to_string())].into(),
    };
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap()],
        parameters: [("poolClass".to_string(), "HDD".to_string())].into(),
        accessibility_requirements: Some(TopologyRequirement {
            requisite: vec![topo.clone()],
            preferred: vec![topo],
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn csi_end_to_end_on_the_file_engine() {
    let sb = Sandbox::new("csi").unwrap();
    let disk = sb.loop_disk("d1", 2 * GI).await.unwrap().dev;

    let store = Store::from(EmbeddedStore::open(sb.path("store.redb")).unwrap());
    let engine: SharedEngine = Arc::new(FileEngine::new(
        TokioRunner::shared(),
        FileEngineConfig {
            root: sb.path("pools"),
            dev_dir: sb.path("dev"),
            fs_type: PoolFsType::Xfs,
            preallocate: false,
            timeout: Duration::from_secs(60),
        },
    ));
    let stop = CancellationToken::new();
    let cluster_cfg = ClusterConfig {
        offline_after: Duration::from_secs(30),
        liveness_interval: Duration::from_millis(500),
        resync_interval: Duration::from_secs(2),
        placement_retry: Duration::from_millis(500),
    };
    let cluster = tokio::spawn(volume::run_cluster_controllers(
        cluster_cfg,
        store.clone(),
        stop.clone(),
    ));
    let mut agent_cfg = NodeAgentConfig::new(NODE);
    agent_cfg.storage_ip = Some("10.0.0.9".into());
    agent_cfg.sync_interval = Duration::from_millis(200);
    agent_cfg.resync_interval = Duration::from_secs(2);
    let agent = tokio::spawn(volume::run_node_agent(
        agent_cfg,
        store.clone(),
        engine,
        TokioRunner::shared(),
        stop.clone(),
    ));
    let socket = sb.path("csi/lvm.sock");
    let mut cfg =
        CsiConfig::new(&socket, NODE).with_wait(Duration::from_secs(60), Duration::from_millis(20));
    cfg.state_dir = Some(sb.path("csi/state"));
    let csi = tokio::spawn(hwameistor_csi::serve_lvm(
        cfg,
        store.clone(),
        Arc::new(HostNodeOps::new(TokioRunner::shared())),
        stop.clone(),
    ));
    claim(&store, &disk).await;
    wait_for(30, "CSI socket", || async { socket.exists().then_some(()) }).await;
    let mut c = connect(&socket).await.unwrap();

    // Capacity appears once the pool is built.
    let capacity_req = || GetCapacityRequest {
        parameters: [("poolClass".to_string(), "HDD".to_string())].into(),
        accessible_topology: Some(Topology {
            segments: [(KEY.to_string(), NODE.to_string())].into(),
        }),
        ..Default::default()
    };
    let cc = c.controller.clone();
    let free = wait_for(60, "pool capacity", || {
        let mut cc = cc.clone();
        let req = capacity_req();
        async move {
            let r = cc.get_capacity(req).await.ok()?.into_inner();
            (r.available_capacity > GI as i64).then_some(r.available_capacity)
        }
    })
    .await;

    // Create → Ready on a real device.
    let t = Instant::now();
    let v = c
        .controller
        .create_volume(create("pvc-e2e", 320 * MI))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    eprintln!(
        "CreateVolume 320Mi -> Ready in {:.3}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(v.capacity_bytes, 320 * MI as i64);
    // The node's pool report follows a burst of changes within about a second
    // (it coalesces them), and GetCapacity is eventually consistent like the
    // CSIStorageCapacity objects built from it: wait for it to show the volume.
    let after = wait_for(10, "capacity reflecting the allocation", || {
        let mut cc = cc.clone();
        let req = capacity_req();
        async move {
            let a = cc
                .get_capacity(req)
                .await
                .ok()?
                .into_inner()
                .available_capacity;
            (a <= free - 320 * MI as i64).then_some(a)
        }
    })
    .await;
    assert!(
        after > 0,
        "capacity left after the allocation: {free} -> {after}"
    );

    // Publish, mount, write.
    let ctx = c
        .controller
        .controller_publish_volume(ControllerPublishVolumeRequest {
            volume_id: "pvc-e2e".into(),
            node_id: NODE.into(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    let target = sb.path("pods/p1/vol");
    c.node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: "pvc-e2e".into(),
            publish_context: ctx,
            target_path: target.display().to_string(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap();
    std::fs::write(target.join("data.bin"), vec![42u8; 8 << 20]).unwrap();
    let lv = store.all::<LocalVolume>().get("pvc-e2e").await.unwrap();
    assert_eq!(lv.status.unwrap().published_node, NODE);

    // Expand online: controller grows the device, node grows xfs.
    let r = c
        .controller
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: "pvc-e2e".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 512 * MI as i64,
                limit_bytes: 0,
            }),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 512 * MI as i64);
    assert!(r.node_expansion_required);
    let grown = c
        .node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: "pvc-e2e".into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        grown.capacity_bytes > 400 * MI as i64,
        "{}",
        grown.capacity_bytes
    );
    let st = c
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "pvc-e2e".into(),
            volume_path: target.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.usage[0].used >= 8 << 20, "{:?}", st.usage);
    assert!(!st.volume_condition.unwrap().abnormal);
    assert_eq!(
        std::fs::read(target.join("data.bin")).unwrap(),
        vec![42u8; 8 << 20]
    );
    let used = store
        .all::<LocalVolume>()
        .get("pvc-e2e")
        .await
        .unwrap()
        .status
        .unwrap()
        .used_capacity_bytes;
    assert!(used >= 8 << 20, "usage written back: {used}");

    // Unpublish and delete.
    c.unmount("pvc-e2e", &target, true).await.unwrap();
    assert!(!target.exists());
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: "pvc-e2e".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        store
            .all::<LocalVolume>()
            .get_opt("pvc-e2e")
            .await
            .unwrap()
            .is_none()
    );

    // Figure: N volumes created concurrently (N = $CSI_E2E_BENCH_COUNT, default 20).
    let n: usize = std::env::var("CSI_E2E_BENCH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let start = Instant::now();
    let mut tasks = vec![];
    for i in 0..n {
        let mut cc = c.controller.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            cc.create_volume(create(&format!("pvc-bench-{i}"), 16 * MI))
                .await
                .map(|_| t.elapsed())
        }));
    }
    let mut lat = vec![];
    for t in tasks {
        lat.push(t.await.unwrap().expect("create"));
    }
    lat.sort();
    eprintln!(
        "{n} concurrent CreateVolume(16Mi) -> Ready: p50 {:.3}s p99 {:.3}s, wall {:.3}s",
        lat[(n - 1) / 2].as_secs_f64(),
        lat[((n - 1) as f64 * 0.99).round() as usize].as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let mut tasks = vec![];
    for i in 0..n {
        let mut cc = c.controller.clone();
        tasks.push(tokio::spawn(async move {
            cc.delete_volume(DeleteVolumeRequest {
                volume_id: format!("pvc-bench-{i}"),
                ..Default::default()
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("delete");
    }
    eprintln!(
        "deleted {n} volumes in {:.3}s",
        start.elapsed().as_secs_f64()
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), cluster).await;
    let _ = tokio::time::timeout(Duration::from_secs(20), agent).await;
    let _ = tokio::time::timeout(Duration::from_secs(20), csi).await;
    drop(sb);
}
