//! The store-backed backends against an EmbeddedStore: both drivers served by their real
//! entry points (`serve_lvm` / `serve_disk`) on unix sockets, with a small test reconciler
//! standing in for the controllers and node agent. Checks that every RPC lands on the right
//! object fields and that observed state flows back into CSI answers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::req::{create_req, fs_cap, params, topo};
use common::{FakeNodeOps, GIB, connect};
use hwameistor_api::types::{NodeState, PoolClass};
use hwameistor_api::{
    LocalDiskNode, LocalDiskVolume, LocalStorageNode, LocalVolume, LocalVolumeExpand,
    LocalVolumeReplica, LocalVolumeReplicaSpec, LocalVolumeSnapshot, LocalVolumeSnapshotRestore,
    types,
};
use hwameistor_csi::CsiConfig;
use hwameistor_csi::proto::controller_client::ControllerClient;
use hwameistor_csi::proto::node_client::NodeClient;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::*;
use hwameistor_store::{EmbeddedStore, Selector, Store};
use kube::api::ObjectMeta;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::Code;

fn cap() -> VolumeCapability {
    fs_cap(Mode::SingleNodeWriter, "ext4")
}

fn pool(class: PoolClass, name: &str, free: i64) -> serde_json::Value {
    json!({
        "name": name,
        "class": class,
        "type": "REGULAR",
        "path": "",
        "totalCapacityBytes": free,
        "usedCapacityBytes": 0,
        "freeCapacityBytes": free,
        "volumeCapacityBytesLimit": free,
        "totalVolumeCount": 1000,
        "usedVolumeCount": 0,
        "freeVolumeCount": 1000,
    })
}

async fn seed_nodes(store: &Store) {
    let lsn = LocalStorageNode {
        metadata: ObjectMeta {
            name: Some("node1".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    store.all::<LocalStorageNode>().create(&lsn).await.unwrap();
    store
        .all::<LocalStorageNode>()
        .patch_status("node1", &json!({"status": {"state": NodeState::Ready, "pools": {"LocalStorage_PoolHDD": pool(PoolClass::HDD, "LocalStorage_PoolHDD", 10 * GIB as i64)}}}))
        .await
        .unwrap();
    let ldn = LocalDiskNode {
        metadata: ObjectMeta {
            name: Some("node1".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    store.all::<LocalDiskNode>().create(&ldn).await.unwrap();
    store
        .all::<LocalDiskNode>()
        .patch_status(
            "node1",
            &json!({"status": {"state": "Ready", "pools": {"LocalDisk_PoolSSD": pool(PoolClass::SSD, "LocalDisk_PoolSSD", 50 * GIB as i64)}}}),
        )
        .await
        .unwrap();
}

/// Stands in for the controllers and the node agent.
async fn test_reconciler(store: Store, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let all = Selector::default();
        for lv in store.all::<LocalVolume>().list(&all).await.unwrap().items {
            let name = lv.metadata.name.clone().unwrap();
            let replica = format!("{name}-r0");
            if lv.spec.delete {
                let _ = store.all::<LocalVolumeReplica>().delete(&replica).await;
                let _ = store.all::<LocalVolume>().delete(&name).await;
                continue;
            }
            let st = lv.status.clone().unwrap_or_default();
            if name.starts_with("full-") {
                // The node agent's engine ran out of space: Create=False with its message.
                let r = LocalVolumeReplica {
                    metadata: ObjectMeta {
                        name: Some(replica.clone()),
                        ..Default::default()
                    },
                    spec: LocalVolumeReplicaSpec {
                        volume_name: name.clone(),
                        node_name: lv.spec.accessibility.nodes[0].clone(),
                        ..Default::default()
                    },
                    status: None,
                };
                let _ = store.all::<LocalVolumeReplica>().create(&r).await;
                let cond = json!([{"type": "Create", "status": "False", "reason": "CreateFailed",
                    "message": format!("create volume: pool LocalStorage_PoolHDD has 0 bytes free, volume {name} needs 1 bytes"),
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]);
                store
                    .all::<LocalVolumeReplica>()
                    .patch_status(&replica, &json!({"status": {"conditions": cond}}))
                    .await
                    .unwrap();
                continue;
            }
            if st.state != types::VolumeState::Ready
                || st.allocated_capacity_bytes != lv.spec.required_capacity_bytes
            {
                let node = lv.spec.accessibility.nodes[0].clone();
                let r = LocalVolumeReplica {
                    metadata: ObjectMeta {
                        name: Some(replica.clone()),
                        ..Default::default()
                    },
                    spec: LocalVolumeReplicaSpec {
                        volume_name: name.clone(),
                        pool_name: lv.spec.pool_name.clone(),
                        node_name: node,
                        required_capacity_bytes: lv.spec.required_capacity_bytes,
                        ..Default::default()
                    },
                    status: None,
                };
                let _ = store.all::<LocalVolumeReplica>().create(&r).await;
                store
                    .all::<LocalVolumeReplica>()
                    .patch_status(&replica, &json!({"status": {"state": "Ready", "devPath": format!("/dev/test/{name}")}}))
                    .await
                    .unwrap();
                store
                    .all::<LocalVolume>()
                    .patch_status(
                        &name,
                        &json!({"status": {"state": "Ready", "allocatedCapacityBytes": lv.spec.required_capacity_bytes, "replicas": [replica]}}),
                    )
                    .await
                    .unwrap();
            }
        }
        for e in store
            .all::<LocalVolumeExpand>()
            .list(&all)
            .await
            .unwrap()
            .items
        {
            store
                .all::<LocalVolume>()
                .patch(
                    &e.spec.volume_name,
                    &json!({"spec": {"requiredCapacityBytes": e.spec.required_capacity_bytes}}),
                )
                .await
                .unwrap();
            store
                .all::<LocalVolumeExpand>()
                .delete(e.metadata.name.as_ref().unwrap())
                .await
                .unwrap();
        }
        for s in store
            .all::<LocalVolumeSnapshot>()
            .list(&all)
            .await
            .unwrap()
            .items
        {
            let name = s.metadata.name.clone().unwrap();
            if s.spec.delete {
                store
                    .all::<LocalVolumeSnapshot>()
                    .delete(&name)
                    .await
                    .unwrap();
            } else if s
                .status
                .as_ref()
                .is_none_or(|x| x.state != types::VolumeState::Ready)
            {
                store
                    .all::<LocalVolumeSnapshot>()
                    .patch_status(&name, &json!({"status": {"state": "Ready", "creationTime": "2026-01-01T00:00:00Z"}}))
                    .await
                    .unwrap();
            }
        }
        for r in store
            .all::<LocalVolumeSnapshotRestore>()
            .list(&all)
            .await
            .unwrap()
            .items
        {
            if r.status
                .as_ref()
                .is_none_or(|s| s.state != types::OperationState::Completed)
            {
                store
                    .all::<LocalVolumeSnapshotRestore>()
                    .patch_status(
                        r.metadata.name.as_ref().unwrap(),
                        &json!({"status": {"state": "Completed"}}),
                    )
                    .await
                    .unwrap();
            }
        }
        for v in store
            .all::<LocalDiskVolume>()
            .list(&all)
            .await
            .unwrap()
            .items
        {
            let name = v.metadata.name.clone().unwrap();
            match v.status.as_ref().map(|s| s.state).unwrap_or_default() {
                types::VolumeState::Unknown => store
                    .all::<LocalDiskVolume>()
                    .patch_status(
                        &name,
                        &json!({"status": {"state": "Created", "devPath": "/dev/sdz", "allocatedCapacityBytes": 50 * GIB}}),
                    )
                    .await
                    .map(|_| ())
                    .unwrap(),
                types::VolumeState::ToBeDeleted => {
                    store.all::<LocalDiskVolume>().delete(&name).await.unwrap();
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    lvm: ControllerClient<tonic::transport::Channel>,
    lvm_node: NodeClient<tonic::transport::Channel>,
    disk: ControllerClient<tonic::transport::Channel>,
    disk_node: NodeClient<tonic::transport::Channel>,
    stop: CancellationToken,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Store = EmbeddedStore::open(dir.path().join("store.redb"))
        .unwrap()
        .into();
    seed_nodes(&store).await;
    let stop = CancellationToken::new();
    tokio::spawn(test_reconciler(store.clone(), stop.clone()));
    let ops = Arc::new(FakeNodeOps::default());
    let mut channels = vec![];
    for (i, lvm) in [true, false].into_iter().enumerate() {
        let sock = dir.path().join(format!("csi{i}.sock"));
        let cfg = CsiConfig::new(&sock, "node1")
            .with_wait(Duration::from_secs(5), Duration::from_millis(10));
        let (store, ops, stop) = (store.clone(), ops.clone(), stop.clone());
        tokio::spawn(async move {
            if lvm {
                hwameistor_csi::serve_lvm(cfg, store, ops, stop)
                    .await
                    .unwrap();
            } else {
                hwameistor_csi::serve_disk(cfg, store, ops, stop)
                    .await
                    .unwrap();
            }
        });
        for _ in 0..200 {
            if sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        channels.push(connect(&sock).await);
    }
    Env {
        lvm: ControllerClient::new(channels[0].clone()),
        lvm_node: NodeClient::new(channels[0].clone()),
        disk: ControllerClient::new(channels[1].clone()),
        disk_node: NodeClient::new(channels[1].clone()),
        _dir: dir,
        store,
        stop,
    }
}

fn create(name: &str, bytes: i64) -> CreateVolumeRequest {
    let topology = TopologyRequirement {
        requisite: vec![topo("topology.lvm.hwameistor.io/node", "node1")],
        preferred: vec![],
    };
    create_req(
        name,
        bytes,
        cap(),
        params(&[
            ("poolClass", "HDD"),
            ("provision-iops-on-creation", "100"),
            // The original's default Helm StorageClass sets it.
            ("striped", "true"),
            ("csi.storage.k8s.io/pvc/name", "data"),
            ("csi.storage.k8s.io/pvc/namespace", "default"),
        ]),
        Some(topology),
    )
}

#[tokio::test]
async fn lvm_volume_lifecycle_through_objects() {
    let mut e = env().await;
    let v = e
        .lvm
        .create_volume(create("pvc-a", GIB as i64))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, GIB as i64);
    let lv = e.store.all::<LocalVolume>().get("pvc-a").await.unwrap();
    assert_eq!(lv.spec.pool_name, "LocalStorage_PoolHDD");
    assert_eq!(lv.spec.accessibility.nodes, ["node1"]);
    assert_eq!(lv.spec.pvc_name, "data");
    assert_eq!(lv.spec.volume_qos.as_ref().unwrap().iops, "100");
    assert!(lv.spec.striped, "striped reaches the LocalVolume");
    // Idempotent over the stored object; incompatible = ALREADY_EXISTS.
    let again = e
        .lvm
        .create_volume(create("pvc-a", GIB as i64))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(again, v);
    let mut other = create("pvc-a", GIB as i64);
    other
        .parameters
        .insert("provision-iops-on-creation".into(), "200".into());
    assert_eq!(
        e.lvm.create_volume(other).await.unwrap_err().code(),
        Code::AlreadyExists
    );

    // Publish records the node and hands out the replica's device.
    let ctx = e
        .lvm
        .controller_publish_volume(ControllerPublishVolumeRequest {
            volume_id: "pvc-a".into(),
            node_id: "node1".into(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(ctx["volumeReplicaDevicePath"], "/dev/test/pvc-a");
    let st = e
        .store
        .all::<LocalVolume>()
        .get("pvc-a")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        (st.published_node.as_str(), st.fs_type.as_str(), st.rawblock),
        ("node1", "ext4", false)
    );

    // Stats write usage back.
    let target = e._dir.path().join("pod/vol").display().to_string();
    e.lvm_node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: "pvc-a".into(),
            publish_context: ctx,
            target_path: target.clone(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap();
    e.lvm_node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "pvc-a".into(),
            volume_path: target.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let st = e
        .store
        .all::<LocalVolume>()
        .get("pvc-a")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        (st.used_capacity_bytes, st.total_inode, st.used_inode),
        (1000, 100, 10)
    );

    // Expand goes through LocalVolumeExpand.
    let r = e
        .lvm
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: "pvc-a".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 2 * GIB as i64,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 2 * GIB as i64);

    // Snapshot, restore.
    e.lvm
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: "pvc-a".into(),
            name: "snap-a".into(),
            parameters: [("snapsize".to_string(), "1Gi".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let lvs = e
        .store
        .all::<LocalVolumeSnapshot>()
        .get("snap-a")
        .await
        .unwrap();
    assert_eq!(
        (
            lvs.spec.source_volume.as_str(),
            lvs.spec.required_capacity_bytes
        ),
        ("pvc-a", GIB as i64)
    );
    let mut restore = create("pvc-b", 2 * GIB as i64);
    restore.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: "snap-a".into(),
            },
        )),
    });
    e.lvm.create_volume(restore).await.unwrap();
    let rs = e
        .store
        .all::<LocalVolumeSnapshotRestore>()
        .get("snaprestore-pvc-b")
        .await
        .unwrap();
    assert_eq!(
        (
            rs.spec.target_volume.as_str(),
            rs.spec.source_volume_snapshot.as_str()
        ),
        ("pvc-b", "snap-a")
    );
    let lists = e
        .lvm
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lists.entries.len(), 1);

    // Delete: refused while published / snapshotted, then spec.delete and gone.
    let del = DeleteVolumeRequest {
        volume_id: "pvc-a".into(),
        ..Default::default()
    };
    assert_eq!(
        e.lvm.delete_volume(del.clone()).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    e.lvm
        .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
            volume_id: "pvc-a".into(),
            node_id: "node1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        e.store
            .all::<LocalVolume>()
            .get("pvc-a")
            .await
            .unwrap()
            .status
            .unwrap()
            .published_node,
        ""
    );
    assert_eq!(
        e.lvm.delete_volume(del.clone()).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    e.lvm
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: "snap-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    e.lvm.delete_volume(del).await.unwrap();
    assert!(
        e.store
            .all::<LocalVolume>()
            .get_opt("pvc-a")
            .await
            .unwrap()
            .is_none()
    );

    // The engine ran out of space after placement: RESOURCE_EXHAUSTED, and the volume is
    // given up (spec.delete) so the CO can retry elsewhere.
    let err = e
        .lvm
        .create_volume(create("full-1", GIB as i64))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("bytes free"), "{err:?}");
    let gone = e
        .store
        .all::<LocalVolume>()
        .get_opt("full-1")
        .await
        .unwrap();
    assert!(gone.as_ref().is_none_or(|lv| lv.spec.delete), "{gone:?}");

    // Capacity from LocalStorageNode pools.
    let c = e
        .lvm
        .get_capacity(GetCapacityRequest {
            parameters: [("poolClass".to_string(), "HDD".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.available_capacity, 10 * GIB as i64);
    e.stop.cancel();
}

#[tokio::test]
async fn disk_volume_lifecycle_through_objects() {
    let mut e = env().await;
    let req = CreateVolumeRequest {
        name: "raw-a".into(),
        capacity_range: Some(CapacityRange {
            required_bytes: GIB as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap()],
        parameters: [
            ("diskType", "SSD"),
            ("csi.storage.k8s.io/pvc/name", "d"),
            ("csi.storage.k8s.io/pvc/namespace", "ns"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Default::default()
    };
    let v = e
        .disk
        .create_volume(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, 50 * GIB as i64, "a whole disk");
    let ldv = e.store.all::<LocalDiskVolume>().get("raw-a").await.unwrap();
    assert_eq!(ldv.spec.persistent_volume_claim_name, "ns/d");
    assert_eq!(ldv.spec.accessibility.nodes, ["node1"]);
    assert_eq!(
        e.disk
            .create_volume(req)
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap(),
        v
    );
    let c = e
        .disk
        .get_capacity(GetCapacityRequest {
            parameters: [("diskType".to_string(), "SSD".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(c.available_capacity, 50 * GIB as i64);

    // The node mounts the disk itself and records the publication; formatting sets canWipe.
    let target = e._dir.path().join("pod/raw").display().to_string();
    e.disk_node
        .node_publish_volume(NodePublishVolumeRequest {
            volume_id: "raw-a".into(),
            target_path: target.clone(),
            volume_capability: Some(cap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ldv = e.store.all::<LocalDiskVolume>().get("raw-a").await.unwrap();
    assert!(ldv.spec.can_wipe, "we formatted it");
    let mps = ldv.status.unwrap().mount_points;
    assert_eq!(mps.len(), 1);
    assert_eq!(
        (mps[0].target_path.as_str(), mps[0].fs_type.as_str()),
        (target.as_str(), "ext4")
    );
    assert_eq!(mps[0].phase, types::MountPointPhase::Mounted);
    let r = e
        .disk
        .delete_volume(DeleteVolumeRequest {
            volume_id: "raw-a".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        r.unwrap_err().code(),
        Code::FailedPrecondition,
        "mounted raw disk is not deleted"
    );
    e.disk_node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "raw-a".into(),
            target_path: target,
        })
        .await
        .unwrap();
    let ldv = e.store.all::<LocalDiskVolume>().get("raw-a").await.unwrap();
    assert!(ldv.status.unwrap().mount_points.is_empty());
    e.disk
        .delete_volume(DeleteVolumeRequest {
            volume_id: "raw-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        e.store
            .all::<LocalDiskVolume>()
            .get_opt("raw-a")
            .await
            .unwrap()
            .is_none()
    );
    e.stop.cancel();
}
