//! Tier 0: the `disk.hwameistor.io` driver over real objects. The driver is served by its
//! real entry point (`serve_disk`) over an EmbeddedStore, and the real node-side reconciler
//! (`hwameistor_controllers::disk::volume`) assigns, wipes and releases disks (its commands
//! go to a RecordingRunner). Only device work (mkfs, mount) is faked.
//!
//! Covers what the MemBackend conformance suite cannot: RESOURCE_EXHAUSTED at once when the
//! node finds no disk although the pool report still shows one, idempotent repeats naming
//! the same disk, and the disk driver's publish rules (wrong node, a second target for a
//! single writer, deletion while published) with the wipe decided by who formatted it.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{FakeNodeOps, GIB};
use hwameistor_api::types::{DiskOwner, DiskType, LocalDiskState, VolumeState};
use hwameistor_api::{
    DiskAttributes, LocalDisk, LocalDiskNode, LocalDiskSpec, LocalDiskVolume, LocalDiskVolumeSpec,
    VolumeAccessibility,
};
use hwameistor_controllers::disk::volume::{ANNOTATION_VOLUME_PROBLEM, run_volume_loop};
use hwameistor_csi::CsiConfig;
use hwameistor_csi::proto::controller_client::ControllerClient;
use hwameistor_csi::proto::node_client::NodeClient;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use hwameistor_csi::proto::*;
use hwameistor_csi::store_backend::DISK_VOLUME_PROBLEM;
use hwameistor_exec::{Output, RecordingRunner, SharedRunner};
use hwameistor_store::{EmbeddedStore, Store};
use k8s_openapi::api::core::v1::ObjectReference;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

const TOPO: &str = "topology.disk.hwameistor.io/node";

fn mount_cap() -> VolumeCapability {
    mount_cap_mode(Mode::SingleNodeWriter)
}

/// A filesystem capability with access mode `mode` (SINGLE_NODE_SINGLE_WRITER allows one
/// target; SINGLE_NODE_WRITER several on the same node).
fn mount_cap_mode(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: "xfs".into(),
            ..Default::default()
        })),
    }
}

fn block_cap() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

fn pool_disk(name: &str, dev: &str, capacity: u64) -> LocalDisk {
    LocalDisk::new(
        name,
        LocalDiskSpec {
            node_name: "node1".into(),
            device_path: dev.into(),
            capacity: capacity as i64,
            disk_attributes: Some(DiskAttributes {
                disk_type: Some(DiskType::HDD),
                dev_type: "disk".into(),
                ..Default::default()
            }),
            state: Some(LocalDiskState::Active),
            owner: DiskOwner::LocalDiskManager,
            claim_ref: Some(ObjectReference {
                name: Some("raw-claim".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

struct Env {
    dir: tempfile::TempDir,
    store: Store,
    runner: RecordingRunner,
    /// Controller and node service of node1 (where the disks are).
    ctl: ControllerClient<Channel>,
    node1: NodeClient<Channel>,
    /// Node service of node2 (no disks).
    node2: NodeClient<Channel>,
    stop: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Two HDD pool disks on node1 (sdb 20 GiB, sdc 10 GiB) and a LocalDiskNode whose pool
/// report shows both free; the node reconciler running every 50 ms.
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Store = EmbeddedStore::open(dir.path().join("store.redb"))
        .unwrap()
        .into();
    for d in [
        pool_disk("localdisk-b", "/dev/sdb", 20 * GIB),
        pool_disk("localdisk-c", "/dev/sdc", 10 * GIB),
    ] {
        store.all::<LocalDisk>().create(&d).await.unwrap();
    }
    store
        .all::<LocalDiskNode>()
        .create(&LocalDiskNode::new("node1", Default::default()))
        .await
        .unwrap();
    // what the heartbeat writes with both disks free (and keeps showing until the next one)
    store
        .all::<LocalDiskNode>()
        .patch_status(
            "node1",
            &json!({"status": {"state": "Ready", "pools": {"LocalDisk_PoolHDD": {
                "name": "LocalDisk_PoolHDD", "class": "HDD", "type": "REGULAR", "path": "",
                "totalCapacityBytes": 30 * GIB, "usedCapacityBytes": 0,
                "freeCapacityBytes": 30 * GIB,
                "volumeCapacityBytesLimit": 20 * GIB,
                "totalVolumeCount": 2, "usedVolumeCount": 0, "freeVolumeCount": 2,
            }}}}),
        )
        .await
        .unwrap();
    let runner = RecordingRunner::new();
    for dev in ["/dev/sdb", "/dev/sdc"] {
        runner.respond(&["wipefs", "-a", dev], Output::ok(""));
    }
    let stop = CancellationToken::new();
    let shared: SharedRunner = Arc::new(runner.clone());
    tokio::spawn(run_volume_loop(
        store.clone(),
        shared,
        "node1".into(),
        Duration::from_millis(50),
        stop.clone(),
    ));
    let ops = Arc::new(FakeNodeOps::default());
    let mut channels = vec![];
    for node in ["node1", "node2"] {
        let sock = dir.path().join(format!("{node}.sock"));
        // a long wait: a prompt answer proves the driver did not wait for a timeout
        let cfg = CsiConfig::new(&sock, node)
            .with_wait(Duration::from_secs(30), Duration::from_millis(10));
        let (store, ops, stop) = (store.clone(), ops.clone(), stop.clone());
        tokio::spawn(async move {
            hwameistor_csi::serve_disk(cfg, store, ops, stop)
                .await
                .unwrap();
        });
        for _ in 0..300 {
            if sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        channels.push(common::connect(&sock).await);
    }
    Env {
        ctl: ControllerClient::new(channels[0].clone()),
        node1: NodeClient::new(channels[0].clone()),
        node2: NodeClient::new(channels[1].clone()),
        dir,
        store,
        runner,
        stop,
    }
}

fn create(name: &str, bytes: u64, disk_type: &str, cap: VolumeCapability) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        parameters: [("diskType", disk_type), ("minCap", "1Gi")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        accessibility_requirements: Some(TopologyRequirement {
            requisite: vec![Topology {
                segments: [(TOPO.to_string(), "node1".to_string())].into(),
            }],
            preferred: vec![],
        }),
        ..Default::default()
    }
}

fn publish(volume: &str, target: &str, cap: VolumeCapability) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: volume.into(),
        target_path: target.into(),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

async fn ldv(store: &Store, name: &str) -> Option<LocalDiskVolume> {
    store.all::<LocalDiskVolume>().get_opt(name).await.unwrap()
}

async fn wait_gone(store: &Store, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while ldv(store, name).await.is_some() {
        assert!(
            Instant::now() < deadline,
            "LocalDiskVolume {name} left behind"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A volume holding `disk` already (so the pool report above is stale).
async fn holder(store: &Store, name: &str, disk: &str, dev: &str) {
    let v = LocalDiskVolume::new(
        name,
        LocalDiskVolumeSpec {
            disk_type: Some(DiskType::HDD),
            required_capacity_bytes: GIB as i64,
            accessibility: VolumeAccessibility {
                nodes: vec!["node1".into()],
                ..Default::default()
            },
            ..Default::default()
        },
    );
    store.all::<LocalDiskVolume>().create(&v).await.unwrap();
    store
        .all::<LocalDiskVolume>()
        .patch_status(
            name,
            &json!({"status": {"state": "Created", "localDiskName": disk, "devPath": dev}}),
        )
        .await
        .unwrap();
}

#[test]
fn the_driver_reads_the_reconcilers_annotation() {
    assert_eq!(DISK_VOLUME_PROBLEM, ANNOTATION_VOLUME_PROBLEM);
}

#[tokio::test]
async fn no_fitting_disk_is_resource_exhausted_at_once_and_leaves_nothing() {
    let mut e = env().await;
    // no SSD pool, and no disk of 25 GiB: refused by placement, nothing created
    for (name, bytes, t) in [("ssd", GIB, "SSD"), ("huge", 25 * GIB, "HDD")] {
        let t0 = Instant::now();
        let err = e
            .ctl
            .create_volume(create(name, bytes, t, mount_cap()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{name}: {err:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{name}: {:?}",
            t0.elapsed()
        );
        assert!(ldv(&e.store, name).await.is_none(), "{name} created");
    }

    // Both disks are taken, but the pool report still shows them free (it lags by up to a
    // heartbeat): placement passes, the node finds no disk and says why, and the driver
    // answers at once instead of after its 30 s wait.
    holder(&e.store, "held-1", "localdisk-b", "/dev/sdb").await;
    holder(&e.store, "held-2", "localdisk-c", "/dev/sdc").await;
    let t0 = Instant::now();
    let err = e
        .ctl
        .create_volume(create("late", GIB, "HDD", mount_cap()))
        .await
        .unwrap_err();
    let took = t0.elapsed();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("no free"), "{}", err.message());
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    wait_gone(&e.store, "late", Duration::from_secs(3)).await;
    // the holders were not disturbed, and no disk was touched
    for (v, d) in [("held-1", "localdisk-b"), ("held-2", "localdisk-c")] {
        let st = ldv(&e.store, v).await.unwrap().status.unwrap();
        assert_eq!(
            (st.state, st.local_disk_name.as_str()),
            (VolumeState::Created, d)
        );
    }
    assert!(
        e.runner.command_lines().is_empty(),
        "{:?}",
        e.runner.command_lines()
    );

    // once a disk is free again the same request succeeds
    e.store
        .all::<LocalDiskVolume>()
        .patch_status("held-2", &json!({"status": {"state": "ToBeDeleted"}}))
        .await
        .unwrap();
    wait_gone(&e.store, "held-2", Duration::from_secs(3)).await;
    let v = e
        .ctl
        .create_volume(create("late", GIB, "HDD", mount_cap()))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, 10 * GIB as i64);
    let st = ldv(&e.store, "late").await.unwrap().status.unwrap();
    assert_eq!(st.local_disk_name, "localdisk-c");
    let ann = ldv(&e.store, "late").await.unwrap().metadata.annotations;
    assert!(
        ann.as_ref()
            .is_none_or(|a| !a.contains_key(ANNOTATION_VOLUME_PROBLEM)),
        "problem annotation removed once placed: {ann:?}"
    );
}

#[tokio::test]
async fn idempotent_create_names_the_same_smallest_fitting_disk() {
    let mut e = env().await;
    let req = create("pvc-1", 5 * GIB, "HDD", mount_cap());
    let first = e.ctl.create_volume(req.clone()).await.unwrap().into_inner();
    let st = ldv(&e.store, "pvc-1").await.unwrap().status.unwrap();
    assert_eq!(
        (st.local_disk_name.as_str(), st.dev_path.as_str()),
        ("localdisk-c", "/dev/sdc")
    );
    assert_eq!(st.allocated_capacity_bytes, 10 * GIB as i64);
    for _ in 0..2 {
        let again = e.ctl.create_volume(req.clone()).await.unwrap().into_inner();
        assert_eq!(again, first);
        let st2 = ldv(&e.store, "pvc-1").await.unwrap().status.unwrap();
        assert_eq!(st2.local_disk_name, st.local_disk_name);
    }
    // a bigger request under the same name is a different volume
    let err = e
        .ctl
        .create_volume(create("pvc-1", 15 * GIB, "HDD", mount_cap()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    // the next volume gets the other disk
    e.ctl
        .create_volume(create("pvc-2", 5 * GIB, "HDD", mount_cap()))
        .await
        .unwrap();
    let st = ldv(&e.store, "pvc-2").await.unwrap().status.unwrap();
    assert_eq!(st.local_disk_name, "localdisk-b");
}

#[tokio::test]
async fn publish_rules_and_the_wipe_follow_who_formatted_the_disk() {
    let mut e = env().await;
    e.ctl
        .create_volume(create("fs", GIB, "HDD", mount_cap()))
        .await
        .unwrap();
    e.ctl
        .create_volume(create("blk", GIB, "HDD", block_cap()))
        .await
        .unwrap();
    let dev_of = |v: &LocalDiskVolume| v.status.clone().unwrap().dev_path;
    let fs_dev = dev_of(&ldv(&e.store, "fs").await.unwrap());
    let blk_dev = dev_of(&ldv(&e.store, "blk").await.unwrap());
    assert_eq!(
        (fs_dev.as_str(), blk_dev.as_str()),
        ("/dev/sdc", "/dev/sdb")
    );
    let t = |n: &str| e.dir.path().join(n).display().to_string();
    let (t1, t2, t3) = (t("pod1/fs"), t("pod2/fs"), t("pod1/blk"));

    // the disk is on node1: node2's node service refuses it
    let err = e
        .node2
        .node_publish_volume(publish("fs", &t1, mount_cap()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        ldv(&e.store, "fs")
            .await
            .unwrap()
            .status
            .unwrap()
            .mount_points
            .is_empty()
    );

    let rwop = mount_cap_mode(Mode::SingleNodeSingleWriter);
    e.node1
        .node_publish_volume(publish("fs", &t1, rwop.clone()))
        .await
        .unwrap();
    // idempotent repeat
    e.node1
        .node_publish_volume(publish("fs", &t1, rwop.clone()))
        .await
        .unwrap();
    // single writer (SINGLE_NODE_SINGLE_WRITER): a second target is refused, with either mode
    for cap in [rwop.clone(), mount_cap()] {
        let err = e
            .node1
            .node_publish_volume(publish("fs", &t2, cap))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    }
    let v = ldv(&e.store, "fs").await.unwrap();
    assert!(v.spec.can_wipe, "we formatted it");
    assert_eq!(v.status.unwrap().mount_points.len(), 1);

    e.node1
        .node_publish_volume(publish("blk", &t3, block_cap()))
        .await
        .unwrap();
    let v = ldv(&e.store, "blk").await.unwrap();
    assert!(!v.spec.can_wipe, "a raw block publication formats nothing");

    // deletion while published
    for id in ["fs", "blk"] {
        let err = e
            .ctl
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{id}: {err:?}");
        assert_eq!(
            ldv(&e.store, id).await.unwrap().status.unwrap().state,
            VolumeState::Created
        );
    }

    for (id, target) in [("fs", &t1), ("blk", &t3)] {
        e.node1
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id.into(),
                target_path: target.clone(),
            })
            .await
            .unwrap();
        e.ctl
            .delete_volume(DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(ldv(&e.store, id).await.is_none());
    }
    // only the disk we formatted was wiped
    assert_eq!(
        e.runner.command_lines(),
        vec![format!("wipefs -a {fs_dev}")]
    );
}
