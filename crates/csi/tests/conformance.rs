//! CSI conformance suite: a tonic client talks to both drivers over real unix sockets,
//! served in-process, over an in-memory backend that plays the reconcilers
//! (`common::MemBackend`) and fake node operations. Every advertised RPC is exercised on
//! its success path and on the failure paths the CSI spec documents, checking gRPC codes.

mod common;

use std::collections::HashMap;

use common::req::*;
use common::*;
use hwameistor_core::types::PoolClass;
use hwameistor_csi::Driver;
use hwameistor_csi::proto::volume_capability::AccessMode;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::*;
use tonic::Code;

const LVM_KEY: &str = "topology.lvm.hwameistor.io/node";
const DISK_KEY: &str = "topology.disk.hwameistor.io/node";

fn mount_cap(mode: Mode) -> VolumeCapability {
    fs_cap(mode, "xfs")
}

fn lvm_create(name: &str, bytes: i64) -> CreateVolumeRequest {
    create_req(
        name,
        bytes,
        mount_cap(Mode::SingleNodeWriter),
        params(&[
            ("poolClass", "HDD"),
            ("replicaNumber", "1"),
            ("csi.storage.k8s.io/fstype", "xfs"),
        ]),
        wffc(LVM_KEY, "node1"),
    )
}

async fn lvm() -> Harness {
    Harness::start(
        Driver::Lvm,
        MemBackend::with_nodes(&[
            ("node1", PoolClass::HDD, 10 * GIB),
            ("node2", PoolClass::HDD, 20 * GIB),
            ("node1", PoolClass::SSD, 5 * GIB),
        ]),
    )
    .await
}

async fn disk() -> Harness {
    Harness::start(
        Driver::Disk,
        MemBackend::with_nodes(&[("node1", PoolClass::SSD, 100 * GIB)]),
    )
    .await
}

#[tokio::test]
async fn identity_both_drivers() {
    for (driver, name) in [
        (Driver::Lvm, "lvm.hwameistor.io"),
        (Driver::Disk, "disk.hwameistor.io"),
    ] {
        let mut h = Harness::start(driver, MemBackend::default()).await;
        let info = h
            .identity
            .get_plugin_info(GetPluginInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.name, name);
        assert!(!info.vendor_version.is_empty());
        let caps = h
            .identity
            .get_plugin_capabilities(GetPluginCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        let services: Vec<i32> = caps
            .capabilities
            .iter()
            .filter_map(|c| match &c.r#type {
                Some(plugin_capability::Type::Service(s)) => Some(s.r#type),
                _ => None,
            })
            .collect();
        assert!(services.contains(&(plugin_capability::service::Type::ControllerService as i32)));
        assert!(
            services.contains(
                &(plugin_capability::service::Type::VolumeAccessibilityConstraints as i32)
            )
        );
        assert_eq!(
            h.identity
                .probe(ProbeRequest {})
                .await
                .unwrap()
                .into_inner()
                .ready,
            Some(true)
        );

        let info = h
            .node
            .node_get_info(NodeGetInfoRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(info.node_id, "node1");
        let key = if driver == Driver::Lvm {
            LVM_KEY
        } else {
            DISK_KEY
        };
        assert_eq!(
            info.accessible_topology
                .unwrap()
                .segments
                .get(key)
                .map(String::as_str),
            Some("node1")
        );

        let ccaps = h
            .controller
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        let has = |t: controller_service_capability::rpc::Type| {
            ccaps.capabilities.iter().any(|c| matches!(&c.r#type, Some(controller_service_capability::Type::Rpc(r)) if r.r#type == t as i32))
        };
        use controller_service_capability::rpc::Type as C;
        assert!(
            has(C::CreateDeleteVolume)
                && has(C::GetCapacity)
                && has(C::ListVolumes)
                && has(C::GetVolume)
        );
        assert_eq!(has(C::CreateDeleteSnapshot), driver == Driver::Lvm);
        assert_eq!(has(C::ExpandVolume), driver == Driver::Lvm);
        assert_eq!(has(C::PublishUnpublishVolume), driver == Driver::Lvm);
        let ncaps = h
            .node
            .node_get_capabilities(NodeGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        let nhas = |t: node_service_capability::rpc::Type| {
            ncaps.capabilities.iter().any(|c| matches!(&c.r#type, Some(node_service_capability::Type::Rpc(r)) if r.r#type == t as i32))
        };
        use node_service_capability::rpc::Type as N;
        assert!(
            nhas(N::GetVolumeStats) && nhas(N::VolumeCondition) && !nhas(N::StageUnstageVolume)
        );
        assert_eq!(nhas(N::ExpandVolume), driver == Driver::Lvm);
        h.stop().await;
    }
}

#[tokio::test]
async fn create_volume_success_and_idempotency() {
    let mut h = lvm().await;
    let v = h
        .controller
        .create_volume(lvm_create("pvc-1", 1_000_000_000))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, "pvc-1");
    assert_eq!(
        v.capacity_bytes, 1_002_438_656,
        "rounded up to 4 MiB extents"
    );
    assert_eq!(v.accessible_topology, vec![topo(LVM_KEY, "node1")]);
    assert_eq!(
        v.volume_context.get("poolClass").map(String::as_str),
        Some("HDD")
    );
    assert_eq!(
        h.backend.free("node1", PoolClass::HDD),
        10 * GIB - 1_002_438_656
    );

    // Same name, same request: the same volume, nothing new allocated.
    let again = h
        .controller
        .create_volume(lvm_create("pvc-1", 1_000_000_000))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(again, v);
    assert_eq!(
        h.backend.free("node1", PoolClass::HDD),
        10 * GIB - 1_002_438_656
    );

    // Same name, incompatible: bigger, other pool class, other node.
    let (c, m) = code(
        h.controller
            .create_volume(lvm_create("pvc-1", 2 * GIB as i64))
            .await,
    );
    assert_eq!(c, Code::AlreadyExists, "{m}");
    let mut other_class = lvm_create("pvc-1", 1_000_000_000);
    other_class
        .parameters
        .insert("poolClass".into(), "SSD".into());
    fails(
        h.controller.create_volume(other_class).await,
        Code::AlreadyExists,
    );
    let mut other_node = lvm_create("pvc-1", 1_000_000_000);
    other_node.accessibility_requirements = wffc(LVM_KEY, "node2");
    fails(
        h.controller.create_volume(other_node).await,
        Code::AlreadyExists,
    );
    h.stop().await;
}

#[tokio::test]
async fn create_volume_failures() {
    let mut h = lvm().await;
    let check = |r: Result<tonic::Response<CreateVolumeResponse>, tonic::Status>,
                 want: Code,
                 needle: &str| {
        let (c, m) = code(r);
        assert_eq!(c, want, "{m}");
        assert!(
            m.contains(needle),
            "message {m:?} should mention {needle:?}"
        );
    };
    check(
        h.controller.create_volume(lvm_create("", GIB as i64)).await,
        Code::InvalidArgument,
        "name",
    );
    check(
        h.controller
            .create_volume(lvm_create("bad/name", GIB as i64))
            .await,
        Code::InvalidArgument,
        "name",
    );
    let mut r = lvm_create("v", GIB as i64);
    r.volume_capabilities.clear();
    check(
        h.controller.create_volume(r).await,
        Code::InvalidArgument,
        "volume_capabilities",
    );
    let mut r = lvm_create("v", GIB as i64);
    r.volume_capabilities = vec![mount_cap(Mode::MultiNodeMultiWriter)];
    check(
        h.controller.create_volume(r).await,
        Code::InvalidArgument,
        "MULTI_NODE_MULTI_WRITER",
    );
    let mut r = lvm_create("v", GIB as i64);
    r.volume_capabilities = vec![VolumeCapability {
        access_mode: Some(AccessMode { mode: 1 }),
        access_type: None,
    }];
    check(
        h.controller.create_volume(r).await,
        Code::InvalidArgument,
        "access_type",
    );
    for (k, v) in [
        ("poolClass", "SATA"),
        ("replicaNumber", "9"),
        ("striped", "sometimes"),
        ("bogus", "1"),
        ("encryptType", "AES"),
    ] {
        let mut r = lvm_create("v", GIB as i64);
        r.parameters.insert(k.into(), v.into());
        check(
            h.controller.create_volume(r).await,
            Code::InvalidArgument,
            k,
        );
    }
    let mut r = lvm_create("v", GIB as i64);
    r.parameters.remove("poolClass");
    check(
        h.controller.create_volume(r).await,
        Code::InvalidArgument,
        "poolClass",
    );
    let mut r = lvm_create("v", GIB as i64);
    r.capacity_range = Some(CapacityRange {
        required_bytes: 2 * GIB as i64,
        limit_bytes: GIB as i64,
    });
    check(
        h.controller.create_volume(r).await,
        Code::OutOfRange,
        "limit",
    );
    let mut r = lvm_create("v", 1);
    r.capacity_range = Some(CapacityRange {
        required_bytes: 1,
        limit_bytes: 1000,
    });
    check(
        h.controller.create_volume(r).await,
        Code::OutOfRange,
        "limit",
    );
    let mut r = lvm_create("v", GIB as i64);
    r.capacity_range = Some(CapacityRange {
        required_bytes: -1,
        limit_bytes: 0,
    });
    check(
        h.controller.create_volume(r).await,
        Code::InvalidArgument,
        "required_bytes",
    );
    // No pool big enough on the requested node.
    check(
        h.controller
            .create_volume(lvm_create("v", 11 * GIB as i64))
            .await,
        Code::ResourceExhausted,
        "node1",
    );
    // Unknown node.
    let mut r = lvm_create("v", GIB as i64);
    r.accessibility_requirements = wffc(LVM_KEY, "ghost");
    check(
        h.controller.create_volume(r).await,
        Code::ResourceExhausted,
        "ghost",
    );
    // Topology without our key.
    let mut r = lvm_create("v", GIB as i64);
    r.accessibility_requirements = wffc("zone", "z1");
    check(
        h.controller.create_volume(r).await,
        Code::InvalidArgument,
        LVM_KEY,
    );
    // Nothing was created by the failures.
    let list = h
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.entries.is_empty(), "{list:?}");
    h.stop().await;
}

#[tokio::test]
async fn immediate_binding_places_on_the_emptiest_node_and_ha_uses_two() {
    let mut h = lvm().await;
    let mut r = lvm_create("imm", GIB as i64);
    r.accessibility_requirements = None;
    let v = h
        .controller
        .create_volume(r)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        v.accessible_topology,
        vec![topo(LVM_KEY, "node2")],
        "node2 has most free HDD"
    );

    let mut r = lvm_create("ha", GIB as i64);
    r.parameters.insert("replicaNumber".into(), "2".into());
    let v = h
        .controller
        .create_volume(r)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        v.accessible_topology,
        vec![topo(LVM_KEY, "node1"), topo(LVM_KEY, "node2")],
        "primary on the CO's node"
    );

    // Only node1 has SSD: an HA SSD volume cannot be placed.
    let mut r = lvm_create("ha-ssd", GIB as i64);
    r.parameters
        .extend(params(&[("replicaNumber", "2"), ("poolClass", "SSD")]));
    fails(h.controller.create_volume(r).await, Code::ResourceExhausted);
    // A node that is not Ready is not used.
    h.backend.set_node_ready("node2", false);
    let mut r = lvm_create("imm2", GIB as i64);
    r.accessibility_requirements = None;
    let v = h
        .controller
        .create_volume(r)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.accessible_topology, vec![topo(LVM_KEY, "node1")]);
    h.stop().await;
}

#[tokio::test]
async fn reconciler_out_of_space_is_resource_exhausted_and_rolled_back() {
    let mut h = lvm().await;
    // The CSI pre-check sees 10 GiB free, but the pool shrinks before the reconciler runs.
    let b = h.backend.clone();
    let t = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let mut s = b.state.lock().unwrap();
        s.nodes[0].pools[0].free_bytes = GIB;
    });
    let (c, m) = code(
        h.controller
            .create_volume(lvm_create("late", 4 * GIB as i64))
            .await,
    );
    t.await.unwrap();
    assert_eq!(c, Code::ResourceExhausted, "{m}");
    assert!(m.contains("insufficient"), "{m}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        h.backend.volume("late").is_none(),
        "the failed volume is deleted again"
    );
    h.stop().await;
}

#[tokio::test]
async fn concurrent_operation_on_the_same_volume_is_aborted() {
    let h = lvm().await;
    h.backend.state.lock().unwrap().stuck.push("slow".into());
    let mut c1 = h.controller.clone();
    let first = tokio::spawn(async move { c1.create_volume(lvm_create("slow", GIB as i64)).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut c2 = h.controller.clone();
    fails(
        c2.create_volume(lvm_create("slow", GIB as i64)).await,
        Code::Aborted,
    );
    let (c, _) = code(
        c2.delete_volume(DeleteVolumeRequest {
            volume_id: "slow".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, Code::Aborted);
    // The first call gives up waiting with UNAVAILABLE (the CO retries).
    fails(first.await.unwrap(), Code::Unavailable);
    h.stop().await;
}

#[tokio::test]
async fn delete_volume() {
    let mut h = lvm().await;
    h.controller
        .create_volume(lvm_create("d1", GIB as i64))
        .await
        .unwrap();
    let del = |id: &str| DeleteVolumeRequest {
        volume_id: id.into(),
        secrets: params(&[("token", "s3cr3t")]),
    };
    // Published: refused.
    h.controller
        .controller_publish_volume(ControllerPublishVolumeRequest {
            volume_id: "d1".into(),
            node_id: "node1".into(),
            volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
            ..Default::default()
        })
        .await
        .unwrap();
    fails(
        h.controller.delete_volume(del("d1")).await,
        Code::FailedPrecondition,
    );
    h.controller
        .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
            volume_id: "d1".into(),
            node_id: "node1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // With a snapshot: refused.
    h.controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: "d1".into(),
            name: "s1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let m = fails(
        h.controller.delete_volume(del("d1")).await,
        Code::FailedPrecondition,
    );
    assert!(
        m.contains("volume d1 has 1 snapshot(s): s1; delete them first"),
        "names the snapshots: {m}"
    );
    h.controller
        .delete_snapshot(DeleteSnapshotRequest {
            snapshot_id: "s1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    h.controller.delete_volume(del("d1")).await.unwrap();
    assert!(h.backend.volume("d1").is_none());
    assert_eq!(
        h.backend.free("node1", PoolClass::HDD),
        10 * GIB,
        "space returned"
    );
    // Idempotent: unknown volume is OK.
    h.controller.delete_volume(del("d1")).await.unwrap();
    fails(
        h.controller.delete_volume(del("")).await,
        Code::InvalidArgument,
    );
    h.stop().await;
}

#[tokio::test]
async fn controller_publish_and_unpublish() {
    let mut h = lvm().await;
    h.controller
        .create_volume(lvm_create("p1", GIB as i64))
        .await
        .unwrap();
    let publish = |vol: &str, node: &str| ControllerPublishVolumeRequest {
        volume_id: vol.into(),
        node_id: node.into(),
        volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
        ..Default::default()
    };
    let ctx = h
        .controller
        .controller_publish_volume(publish("p1", "node1"))
        .await
        .unwrap()
        .into_inner()
        .publish_context;
    assert_eq!(
        ctx.get("volumeReplicaDevicePath").map(String::as_str),
        Some("/dev/fake/p1")
    );
    assert_eq!(
        h.backend.volume("p1").unwrap().published_node.as_deref(),
        Some("node1")
    );
    // Idempotent.
    h.controller
        .controller_publish_volume(publish("p1", "node1"))
        .await
        .unwrap();
    // Elsewhere while published: refused.
    // ... unknown volume or node, no node: refused.
    for (vol, node, want) in [
        ("p1", "node2", Code::FailedPrecondition),
        ("nope", "node1", Code::NotFound),
        ("p1", "ghost", Code::NotFound),
        ("p1", "", Code::InvalidArgument),
    ] {
        fails(
            h.controller
                .controller_publish_volume(publish(vol, node))
                .await,
            want,
        );
    }
    let mut r = publish("p1", "node1");
    r.volume_capability = None;
    fails(
        h.controller.controller_publish_volume(r).await,
        Code::InvalidArgument,
    );
    let unpublish = |vol: &str, node: &str| ControllerUnpublishVolumeRequest {
        volume_id: vol.into(),
        node_id: node.into(),
        ..Default::default()
    };
    // Unpublish from a node it is not published to: OK, nothing changes.
    h.controller
        .controller_unpublish_volume(unpublish("p1", "node2"))
        .await
        .unwrap();
    assert_eq!(
        h.backend.volume("p1").unwrap().published_node.as_deref(),
        Some("node1")
    );
    h.controller
        .controller_unpublish_volume(unpublish("p1", "node1"))
        .await
        .unwrap();
    assert_eq!(h.backend.volume("p1").unwrap().published_node, None);
    h.controller
        .controller_unpublish_volume(unpublish("p1", "node1"))
        .await
        .unwrap();
    fails(
        h.controller
            .controller_unpublish_volume(unpublish("nope", "node1"))
            .await,
        Code::NotFound,
    );
    // A node without a replica of the volume.
    fails(
        h.controller
            .controller_publish_volume(publish("p1", "node2"))
            .await,
        Code::FailedPrecondition,
    );
    h.stop().await;
}

#[tokio::test]
async fn validate_list_get_volume() {
    let mut h = lvm().await;
    for i in 0..5 {
        h.controller
            .create_volume(lvm_create(&format!("l{i}"), GIB as i64))
            .await
            .unwrap();
    }
    let ok = h
        .controller
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: "l0".into(),
            volume_capabilities: vec![
                mount_cap(Mode::SingleNodeWriter),
                block_cap(Mode::SingleNodeReaderOnly),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.confirmed.is_some(), "{ok:?}");
    let no = h
        .controller
        .validate_volume_capabilities(ValidateVolumeCapabilitiesRequest {
            volume_id: "l0".into(),
            volume_capabilities: vec![mount_cap(Mode::MultiNodeReaderOnly)],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        no.confirmed.is_none() && no.message.contains("MULTI_NODE_READER_ONLY"),
        "{no:?}"
    );
    let unknown = ValidateVolumeCapabilitiesRequest {
        volume_id: "zz".into(),
        volume_capabilities: vec![mount_cap(Mode::SingleNodeWriter)],
        ..Default::default()
    };
    fails(
        h.controller.validate_volume_capabilities(unknown).await,
        Code::NotFound,
    );
    let nocaps = ValidateVolumeCapabilitiesRequest {
        volume_id: "l0".into(),
        ..Default::default()
    };
    fails(
        h.controller.validate_volume_capabilities(nocaps).await,
        Code::InvalidArgument,
    );

    // Pagination.
    let mut seen = vec![];
    let mut token = String::new();
    loop {
        let page = h
            .controller
            .list_volumes(ListVolumesRequest {
                max_entries: 2,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(
            page.entries
                .iter()
                .map(|e| e.volume.as_ref().unwrap().volume_id.clone()),
        );
        for e in &page.entries {
            assert!(
                !e.status
                    .as_ref()
                    .unwrap()
                    .volume_condition
                    .as_ref()
                    .unwrap()
                    .abnormal
            );
        }
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen, ["l0", "l1", "l2", "l3", "l4"]);
    fails(
        h.controller
            .list_volumes(ListVolumesRequest {
                max_entries: 0,
                starting_token: "99".into(),
            })
            .await,
        Code::Aborted,
    );
    fails(
        h.controller
            .list_volumes(ListVolumesRequest {
                max_entries: -1,
                starting_token: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );

    let got = h
        .controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: "l3".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.volume.unwrap().volume_id, "l3");
    let status = got.status.unwrap();
    assert!(status.published_node_ids.is_empty());
    assert!(!status.volume_condition.unwrap().abnormal);
    fails(
        h.controller
            .controller_get_volume(ControllerGetVolumeRequest {
                volume_id: "zz".into(),
            })
            .await,
        Code::NotFound,
    );
    // A volume that is not ready reports an abnormal condition.
    h.backend
        .state
        .lock()
        .unwrap()
        .volumes
        .get_mut("l4")
        .unwrap()
        .phase = hwameistor_csi::backend::VolumePhase::Pending;
    let got = h
        .controller
        .controller_get_volume(ControllerGetVolumeRequest {
            volume_id: "l4".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.status.unwrap().volume_condition.unwrap().abnormal);
    h.stop().await;
}

#[tokio::test]
async fn get_capacity_per_topology_and_class() {
    let mut h = lvm().await;
    let cap = |node: Option<&str>, class: Option<&str>| GetCapacityRequest {
        volume_capabilities: vec![mount_cap(Mode::SingleNodeWriter)],
        parameters: class
            .map(|c| params(&[("poolClass", c)]))
            .unwrap_or_default(),
        accessible_topology: node.map(|n| topo(LVM_KEY, n)),
    };
    let r = h
        .controller
        .get_capacity(cap(Some("node1"), Some("HDD")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 10 * GIB as i64);
    assert_eq!(r.maximum_volume_size, Some(10 * GIB as i64));
    assert_eq!(r.minimum_volume_size, Some(4 << 20));
    let r = h
        .controller
        .get_capacity(cap(Some("node1"), Some("SSD")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 5 * GIB as i64);
    let r = h
        .controller
        .get_capacity(cap(Some("node2"), Some("SSD")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 0);
    let r = h
        .controller
        .get_capacity(cap(None, Some("HDD")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 30 * GIB as i64);
    let r = h
        .controller
        .get_capacity(cap(Some("node1"), None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 15 * GIB as i64);
    let r = h
        .controller
        .get_capacity(cap(Some("ghost"), Some("HDD")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 0);
    // Allocation is reflected.
    h.controller
        .create_volume(lvm_create("c1", 2 * GIB as i64))
        .await
        .unwrap();
    let r = h
        .controller
        .get_capacity(cap(Some("node1"), Some("HDD")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 8 * GIB as i64);
    let (c, m) = code(
        h.controller
            .get_capacity(cap(Some("node1"), Some("Floppy")))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("poolClass"), "{m}");
    h.stop().await;
}

#[tokio::test]
async fn controller_expand() {
    let mut h = lvm().await;
    h.controller
        .create_volume(lvm_create("e1", GIB as i64))
        .await
        .unwrap();
    let expand =
        |bytes: i64, limit: i64, cap: Option<VolumeCapability>| ControllerExpandVolumeRequest {
            volume_id: "e1".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: bytes,
                limit_bytes: limit,
            }),
            volume_capability: cap,
            ..Default::default()
        };
    let r = h
        .controller
        .controller_expand_volume(expand(
            2 * GIB as i64,
            0,
            Some(mount_cap(Mode::SingleNodeWriter)),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 2 * GIB as i64);
    assert!(r.node_expansion_required);
    assert_eq!(h.backend.free("node1", PoolClass::HDD), 8 * GIB);
    // Smaller or equal: nothing to do, current size.
    let r = h
        .controller
        .controller_expand_volume(expand(
            GIB as i64,
            0,
            Some(block_cap(Mode::SingleNodeWriter)),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 2 * GIB as i64);
    assert!(
        !r.node_expansion_required,
        "block volumes need no node expansion"
    );
    fails(
        h.controller
            .controller_expand_volume(expand(3 * GIB as i64, 2 * GIB as i64, None))
            .await,
        Code::OutOfRange,
    );
    fails(
        h.controller
            .controller_expand_volume(expand(50 * GIB as i64, 0, None))
            .await,
        Code::ResourceExhausted,
    );
    let mut r = expand(3 * GIB as i64, 0, None);
    r.volume_id = "zz".into();
    fails(
        h.controller.controller_expand_volume(r).await,
        Code::NotFound,
    );
    let mut r = expand(3 * GIB as i64, 0, None);
    r.capacity_range = None;
    fails(
        h.controller.controller_expand_volume(r).await,
        Code::InvalidArgument,
    );
    h.stop().await;
}

#[tokio::test]
async fn snapshots_restore_and_clone() {
    let mut h = lvm().await;
    h.controller
        .create_volume(lvm_create("src", GIB as i64))
        .await
        .unwrap();
    let snap = |name: &str, src: &str, p: &[(&str, &str)]| CreateSnapshotRequest {
        source_volume_id: src.into(),
        name: name.into(),
        parameters: params(p),
        secrets: params(&[("k", "v")]),
    };
    let s = h
        .controller
        .create_snapshot(snap("snap-1", "src", &[("snapsize", "1Gi")]))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(
        (
            s.snapshot_id.as_str(),
            s.source_volume_id.as_str(),
            s.size_bytes,
            s.ready_to_use
        ),
        ("snap-1", "src", GIB as i64, true)
    );
    assert!(s.creation_time.is_some());
    // Idempotent; same name other source = ALREADY_EXISTS.
    let again = h
        .controller
        .create_snapshot(snap("snap-1", "src", &[]))
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert_eq!(again, s);
    h.controller
        .create_volume(lvm_create("other", GIB as i64))
        .await
        .unwrap();
    fails(
        h.controller
            .create_snapshot(snap("snap-1", "other", &[]))
            .await,
        Code::AlreadyExists,
    );
    fails(
        h.controller
            .create_snapshot(snap("snap-2", "nope", &[]))
            .await,
        Code::NotFound,
    );
    let (c, m) = code(
        h.controller
            .create_snapshot(snap("snap-2", "src", &[("snapsize", "1Ki")]))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("snapsize"), "{m}");
    fails(
        h.controller.create_snapshot(snap("", "src", &[])).await,
        Code::InvalidArgument,
    );
    fails(
        h.controller.create_snapshot(snap("snap-2", "", &[])).await,
        Code::InvalidArgument,
    );

    h.controller
        .create_snapshot(snap("snap-o", "other", &[]))
        .await
        .unwrap();
    let all = h
        .controller
        .list_snapshots(ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.entries.len(), 2);
    let by_src = h
        .controller
        .list_snapshots(ListSnapshotsRequest {
            source_volume_id: "other".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_src.entries.len(), 1);
    let by_id = h
        .controller
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: "snap-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_id.entries[0].snapshot.as_ref().unwrap().snapshot_id,
        "snap-1"
    );
    let none = h
        .controller
        .list_snapshots(ListSnapshotsRequest {
            snapshot_id: "zz".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.entries.is_empty());

    // Restore from the snapshot: lands on the source's node, carries the content source.
    let mut r = lvm_create("restored", GIB as i64);
    r.accessibility_requirements = None;
    r.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: "snap-1".into(),
            },
        )),
    });
    let v = h
        .controller
        .create_volume(r.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.accessible_topology, vec![topo(LVM_KEY, "node1")]);
    assert_eq!(v.content_source, r.volume_content_source);
    // Too small for the source.
    let mut small = r.clone();
    small.name = "small".into();
    small.capacity_range = Some(CapacityRange {
        required_bytes: 4 << 20,
        limit_bytes: 0,
    });
    fails(h.controller.create_volume(small).await, Code::OutOfRange);
    let mut missing = r.clone();
    missing.name = "missing".into();
    missing.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: "zz".into(),
            },
        )),
    });
    fails(h.controller.create_volume(missing).await, Code::NotFound);
    // Same name, other source: ALREADY_EXISTS.
    let mut other_src = r.clone();
    other_src.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(
            volume_content_source::SnapshotSource {
                snapshot_id: "snap-o".into(),
            },
        )),
    });
    fails(
        h.controller.create_volume(other_src).await,
        Code::AlreadyExists,
    );
    // Clone of a volume.
    let mut clone = lvm_create("clone", GIB as i64);
    clone.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: "src".into(),
            },
        )),
    });
    let v = h
        .controller
        .create_volume(clone.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.content_source, clone.volume_content_source);
    clone.name = "clone2".into();
    clone.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: "zz".into(),
            },
        )),
    });
    fails(h.controller.create_volume(clone).await, Code::NotFound);

    // Delete is idempotent.
    for _ in 0..2 {
        h.controller
            .delete_snapshot(DeleteSnapshotRequest {
                snapshot_id: "snap-1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    fails(
        h.controller
            .delete_snapshot(DeleteSnapshotRequest::default())
            .await,
        Code::InvalidArgument,
    );
    h.stop().await;
}

async fn published_volume(h: &mut Harness, name: &str) -> HashMap<String, String> {
    h.controller
        .create_volume(lvm_create(name, GIB as i64))
        .await
        .unwrap();
    h.controller
        .controller_publish_volume(ControllerPublishVolumeRequest {
            volume_id: name.into(),
            node_id: "node1".into(),
            volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .publish_context
}

fn node_publish(
    vol: &str,
    target: &str,
    ctx: &HashMap<String, String>,
    cap: VolumeCapability,
    readonly: bool,
) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: vol.into(),
        publish_context: ctx.clone(),
        target_path: target.into(),
        volume_capability: Some(cap),
        readonly,
        secrets: params(&[("password", "hunter2")]),
        ..Default::default()
    }
}

#[tokio::test]
async fn node_publish_unpublish_and_single_writer() {
    let mut h = lvm().await;
    let ctx = published_volume(&mut h, "n1").await;
    let t1 = h.target("pod1/vol");
    let t2 = h.target("pod2/vol");
    h.node
        .node_publish_volume(node_publish(
            "n1",
            &t1,
            &ctx,
            mount_cap(Mode::SingleNodeWriter),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        h.ops
            .mounts
            .lock()
            .unwrap()
            .get(std::path::Path::new(&t1))
            .cloned(),
        Some(("/dev/fake/n1".to_string(), Some("xfs".to_string()), false))
    );
    // Idempotent repeat.
    h.node
        .node_publish_volume(node_publish(
            "n1",
            &t1,
            &ctx,
            mount_cap(Mode::SingleNodeWriter),
            false,
        ))
        .await
        .unwrap();
    // Same target, incompatible (readonly): ALREADY_EXISTS.
    fails(
        h.node
            .node_publish_volume(node_publish(
                "n1",
                &t1,
                &ctx,
                mount_cap(Mode::SingleNodeWriter),
                true,
            ))
            .await,
        Code::AlreadyExists,
    );
    // SINGLE_NODE_WRITER allows a second target on the same node.
    h.node
        .node_publish_volume(node_publish(
            "n1",
            &t2,
            &ctx,
            mount_cap(Mode::SingleNodeWriter),
            false,
        ))
        .await
        .unwrap();
    for t in [&t1, &t2] {
        h.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "n1".into(),
                target_path: t.clone(),
            })
            .await
            .unwrap();
        assert!(!std::path::Path::new(t).exists());
    }
    // SINGLE_NODE_SINGLE_WRITER: a second target is FAILED_PRECONDITION.
    h.node
        .node_publish_volume(node_publish(
            "n1",
            &t1,
            &ctx,
            mount_cap(Mode::SingleNodeSingleWriter),
            false,
        ))
        .await
        .unwrap();
    let (c, m) = code(
        h.node
            .node_publish_volume(node_publish(
                "n1",
                &t2,
                &ctx,
                mount_cap(Mode::SingleNodeSingleWriter),
                false,
            ))
            .await,
    );
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    h.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "n1".into(),
            target_path: t1.clone(),
        })
        .await
        .unwrap();
    // Unpublish of a never-published target: OK. Of an unknown volume: NOT_FOUND.
    h.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "n1".into(),
            target_path: h.target("never"),
        })
        .await
        .unwrap();
    fails(
        h.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "zz".into(),
                target_path: t1.clone(),
            })
            .await,
        Code::NotFound,
    );
    // Field validation.
    fails(
        h.node
            .node_publish_volume(node_publish(
                "n1",
                "",
                &ctx,
                mount_cap(Mode::SingleNodeWriter),
                false,
            ))
            .await,
        Code::InvalidArgument,
    );
    fails(
        h.node
            .node_publish_volume(node_publish(
                "n1",
                "relative/path",
                &ctx,
                mount_cap(Mode::SingleNodeWriter),
                false,
            ))
            .await,
        Code::InvalidArgument,
    );
    fails(
        h.node
            .node_publish_volume(node_publish(
                "",
                &t1,
                &ctx,
                mount_cap(Mode::SingleNodeWriter),
                false,
            ))
            .await,
        Code::InvalidArgument,
    );
    let mut nocap = node_publish("n1", &t1, &ctx, mount_cap(Mode::SingleNodeWriter), false);
    nocap.volume_capability = None;
    fails(
        h.node.node_publish_volume(nocap).await,
        Code::InvalidArgument,
    );
    fails(
        h.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: "n1".into(),
                target_path: String::new(),
            })
            .await,
        Code::InvalidArgument,
    );
    // Unknown volume without publish context: NOT_FOUND.
    fails(
        h.node
            .node_publish_volume(node_publish(
                "zz",
                &t1,
                &HashMap::new(),
                mount_cap(Mode::SingleNodeWriter),
                false,
            ))
            .await,
        Code::NotFound,
    );
    // Block publish.
    let tb = h.target("pod3/dev");
    h.node
        .node_publish_volume(node_publish(
            "n1",
            &tb,
            &ctx,
            block_cap(Mode::SingleNodeWriter),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        h.ops
            .mounts
            .lock()
            .unwrap()
            .get(std::path::Path::new(&tb))
            .unwrap()
            .1,
        None
    );
    let st = h
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "n1".into(),
            volume_path: tb.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.usage.len(), 1);
    assert_eq!(st.usage[0].total, 2 * GIB as i64);
    h.stop().await;
}

#[tokio::test]
async fn node_stats_and_expand() {
    let mut h = lvm().await;
    let ctx = published_volume(&mut h, "s1").await;
    let t = h.target("pod/vol");
    h.node
        .node_publish_volume(node_publish(
            "s1",
            &t,
            &ctx,
            mount_cap(Mode::SingleNodeWriter),
            false,
        ))
        .await
        .unwrap();
    let st = h
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "s1".into(),
            volume_path: t.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let bytes = st
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .unwrap();
    let inodes = st
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Inodes as i32)
        .unwrap();
    assert_eq!((bytes.total, bytes.used), (GIB as i64, 1000));
    assert_eq!((inodes.total, inodes.used), (100, 10));
    assert!(!st.volume_condition.unwrap().abnormal);
    let usage = h
        .backend
        .state
        .lock()
        .unwrap()
        .usage
        .get("s1")
        .copied()
        .unwrap();
    assert_eq!(
        (usage.used_bytes, usage.total_inodes, usage.used_inodes),
        (1000, 100, 10),
        "usage written back"
    );
    let missing = NodeGetVolumeStatsRequest {
        volume_id: "s1".into(),
        volume_path: h.target("nowhere"),
        ..Default::default()
    };
    fails(h.node.node_get_volume_stats(missing).await, Code::NotFound);
    let unknown = NodeGetVolumeStatsRequest {
        volume_id: "zz".into(),
        volume_path: t.clone(),
        ..Default::default()
    };
    fails(h.node.node_get_volume_stats(unknown).await, Code::NotFound);
    let nopath = NodeGetVolumeStatsRequest {
        volume_id: "s1".into(),
        ..Default::default()
    };
    fails(
        h.node.node_get_volume_stats(nopath).await,
        Code::InvalidArgument,
    );

    let ex = |vol: &str, path: &str| NodeExpandVolumeRequest {
        volume_id: vol.into(),
        volume_path: path.into(),
        ..Default::default()
    };
    let r = h
        .node
        .node_expand_volume(ex("s1", &t))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 3 * GIB as i64);
    fails(
        h.node
            .node_expand_volume(ex("s1", &h.target("nowhere")))
            .await,
        Code::NotFound,
    );
    fails(
        h.node.node_expand_volume(ex("zz", &t)).await,
        Code::NotFound,
    );
    fails(
        h.node.node_expand_volume(ex("s1", "")).await,
        Code::InvalidArgument,
    );
    // Staging is not advertised.
    let stage = NodeStageVolumeRequest {
        volume_id: "s1".into(),
        ..Default::default()
    };
    fails(h.node.node_stage_volume(stage).await, Code::Unimplemented);
    h.stop().await;
}

fn disk_create(name: &str, bytes: i64) -> CreateVolumeRequest {
    create_req(
        name,
        bytes,
        mount_cap(Mode::SingleNodeWriter),
        params(&[("diskType", "SSD"), ("minCap", "10Gi")]),
        wffc(DISK_KEY, "node1"),
    )
}

#[tokio::test]
async fn disk_driver_end_to_end() {
    let mut h = disk().await;
    let v = h
        .controller
        .create_volume(disk_create("raw-1", GIB as i64))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(
        v.capacity_bytes,
        10 * GIB as i64,
        "minCap raises the request"
    );
    assert_eq!(v.accessible_topology, vec![topo(DISK_KEY, "node1")]);
    assert_eq!(
        h.controller
            .create_volume(disk_create("raw-1", GIB as i64))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap(),
        v
    );
    let mut hdd = disk_create("raw-1", GIB as i64);
    hdd.parameters.insert("diskType".into(), "HDD".into());
    fails(h.controller.create_volume(hdd).await, Code::AlreadyExists);
    let mut r = disk_create("raw-2", GIB as i64);
    r.parameters.remove("diskType");
    let (c, m) = code(h.controller.create_volume(r).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("diskType"), "{m}");
    let mut r = disk_create("raw-2", GIB as i64);
    r.parameters.insert("poolClass".into(), "SSD".into());
    fails(h.controller.create_volume(r).await, Code::InvalidArgument);
    fails(
        h.controller
            .create_volume(disk_create("raw-2", 200 * GIB as i64))
            .await,
        Code::ResourceExhausted,
    );
    let mut r = disk_create("raw-2", GIB as i64);
    r.volume_content_source = Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(
            volume_content_source::VolumeSource {
                volume_id: "raw-1".into(),
            },
        )),
    });
    fails(h.controller.create_volume(r).await, Code::InvalidArgument);

    // Not offered by the disk driver.
    let publish = ControllerPublishVolumeRequest {
        volume_id: "raw-1".into(),
        node_id: "node1".into(),
        volume_capability: Some(mount_cap(Mode::SingleNodeWriter)),
        ..Default::default()
    };
    fails(
        h.controller.controller_publish_volume(publish).await,
        Code::Unimplemented,
    );
    let snap = CreateSnapshotRequest {
        source_volume_id: "raw-1".into(),
        name: "s".into(),
        ..Default::default()
    };
    fails(
        h.controller.create_snapshot(snap).await,
        Code::Unimplemented,
    );
    let ex = ControllerExpandVolumeRequest {
        volume_id: "raw-1".into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 20 * GIB as i64,
            limit_bytes: 0,
        }),
        ..Default::default()
    };
    fails(
        h.controller.controller_expand_volume(ex).await,
        Code::Unimplemented,
    );

    let r = h
        .controller
        .get_capacity(GetCapacityRequest {
            parameters: params(&[("diskType", "SSD")]),
            accessible_topology: Some(topo(DISK_KEY, "node1")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.available_capacity, 90 * GIB as i64);

    // Node publish finds the device from the store (no ControllerPublish for raw disks).
    let t = h.target("pod/raw");
    h.node
        .node_publish_volume(node_publish(
            "raw-1",
            &t,
            &HashMap::new(),
            mount_cap(Mode::SingleNodeWriter),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(
        h.ops
            .mounts
            .lock()
            .unwrap()
            .get(std::path::Path::new(&t))
            .unwrap()
            .0,
        "/dev/fake/raw-1"
    );
    let rec = h
        .backend
        .state
        .lock()
        .unwrap()
        .mounts
        .get(&("raw-1".to_string(), t.clone()))
        .cloned()
        .unwrap();
    assert_eq!(
        (rec.fs_type.as_deref(), rec.formatted, rec.access_mode),
        (Some("xfs"), true, 1)
    );
    let st = h
        .node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: "raw-1".into(),
            volume_path: t.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.usage.len(), 2);
    let ex = NodeExpandVolumeRequest {
        volume_id: "raw-1".into(),
        volume_path: t.clone(),
        ..Default::default()
    };
    fails(h.node.node_expand_volume(ex).await, Code::Unimplemented);
    h.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: "raw-1".into(),
            target_path: t,
        })
        .await
        .unwrap();
    assert!(
        h.backend.state.lock().unwrap().mounts.is_empty(),
        "publication forgotten"
    );

    let list = h
        .controller
        .list_volumes(ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.entries.len(), 1);
    h.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: "raw-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    h.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: "raw-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(h.backend.free("node1", PoolClass::SSD), 100 * GIB);
    h.stop().await;
}

#[tokio::test]
async fn client_mount_and_unmount_like_kubelet() {
    use hwameistor_csi::client::{MountKind, connect};
    let mut h = lvm().await;
    h.controller
        .create_volume(lvm_create("cm", GIB as i64))
        .await
        .unwrap();
    let mut c = connect(h.dir.path().join("csi.sock")).await.unwrap();
    let dir = std::path::PathBuf::from(h.target("user/mnt"));
    c.mount(
        "cm",
        &dir,
        MountKind::Filesystem {
            fs_type: "ext4".into(),
        },
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        h.backend.volume("cm").unwrap().published_node.as_deref(),
        Some("node1")
    );
    assert_eq!(
        h.ops.mounts.lock().unwrap().get(&dir).unwrap().1.as_deref(),
        Some("ext4")
    );
    c.unmount("cm", &dir, true).await.unwrap();
    assert_eq!(h.backend.volume("cm").unwrap().published_node, None);
    assert!(h.ops.mounts.lock().unwrap().is_empty());
    let err = c
        .mount("nope", &dir, MountKind::Block, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ControllerPublishVolume"), "{err}");
    h.stop().await;

    // The disk driver has no ControllerPublish: the client goes straight to the node.
    let mut h = disk().await;
    h.controller
        .create_volume(disk_create("dm", GIB as i64))
        .await
        .unwrap();
    let mut c = connect(h.dir.path().join("csi.sock")).await.unwrap();
    let dir = std::path::PathBuf::from(h.target("user/raw"));
    c.mount("dm", &dir, MountKind::Block, false).await.unwrap();
    assert_eq!(
        h.ops.mounts.lock().unwrap().get(&dir).unwrap().0,
        "/dev/fake/dm"
    );
    c.unmount("dm", &dir, true).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn node_publications_survive_a_restart() {
    use std::sync::Arc;
    use std::time::Duration;
    let backend = MemBackend::with_nodes(&[("node1", PoolClass::HDD, 10 * GIB)]);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let target = dir.path().join("pod/vol").display().to_string();
    let mut ctx = HashMap::new();
    for round in 0..2 {
        let socket = dir.path().join(format!("csi{round}.sock"));
        let mut cfg = hwameistor_csi::CsiConfig::new(&socket, "node1")
            .with_wait(Duration::from_secs(3), Duration::from_millis(10));
        cfg.state_dir = Some(state.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        let server = tokio::spawn(hwameistor_csi::serve(
            Driver::Lvm,
            cfg,
            Arc::new(backend.clone()),
            Arc::new(FakeNodeOps::default()),
            stop.clone(),
        ));
        while !socket.exists() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut c = hwameistor_csi::client::connect(&socket).await.unwrap();
        if round == 0 {
            c.controller
                .create_volume(lvm_create("rs", GIB as i64))
                .await
                .unwrap();
            ctx = c
                .controller
                .controller_publish_volume(ControllerPublishVolumeRequest {
                    volume_id: "rs".into(),
                    node_id: "node1".into(),
                    volume_capability: Some(mount_cap(Mode::SingleNodeSingleWriter)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .publish_context;
            c.node
                .node_publish_volume(node_publish(
                    "rs",
                    &target,
                    &ctx,
                    mount_cap(Mode::SingleNodeSingleWriter),
                    false,
                ))
                .await
                .unwrap();
        } else {
            // The restarted plugin remembers: same request OK, incompatible ALREADY_EXISTS,
            // a second target for a single-writer volume FAILED_PRECONDITION.
            c.node
                .node_publish_volume(node_publish(
                    "rs",
                    &target,
                    &ctx,
                    mount_cap(Mode::SingleNodeSingleWriter),
                    false,
                ))
                .await
                .unwrap();
            let r = c
                .node
                .node_publish_volume(node_publish(
                    "rs",
                    &target,
                    &ctx,
                    mount_cap(Mode::SingleNodeSingleWriter),
                    true,
                ))
                .await;
            fails(r, Code::AlreadyExists);
            let other = dir.path().join("pod2/vol").display().to_string();
            let r = c
                .node
                .node_publish_volume(node_publish(
                    "rs",
                    &other,
                    &ctx,
                    mount_cap(Mode::SingleNodeSingleWriter),
                    false,
                ))
                .await;
            fails(r, Code::FailedPrecondition);
        }
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
