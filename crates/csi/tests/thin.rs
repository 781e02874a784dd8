//! Tier 0: the `thin` StorageClass parameter through CreateVolume with an in-memory backend:
//! it reaches the volume; without any thin pool (no ThinPoolClaim, or only file-engine
//! nodes) CreateVolume is FAILED_PRECONDITION; placement checks the thin pool's
//! provisionable bytes (size × ratio − provisioned), not the VG's free space; ill-formed
//! values are INVALID_ARGUMENT naming the parameter.

mod common;

use std::collections::HashMap;

use common::{GIB, Harness, MemBackend};
use hwameistor_core::types::PoolClass;
use hwameistor_csi::Driver;
use hwameistor_csi::backend::VolumeParams;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use hwameistor_csi::proto::*;
use tonic::Code;

fn create(name: &str, bytes: i64, thin: &str) -> CreateVolumeRequest {
    let params: HashMap<String, String> = [
        ("poolClass", "HDD"),
        ("replicaNumber", "1"),
        ("thin", thin),
        ("csi.storage.k8s.io/fstype", "xfs"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: "xfs".into(),
                ..Default::default()
            })),
        }],
        parameters: params,
        ..Default::default()
    }
}

fn set_thin_free(b: &MemBackend, node: &str, free: Option<u64>) {
    let mut s = b.state.lock().unwrap();
    let n = s.nodes.iter_mut().find(|n| n.node == node).unwrap();
    n.pools
        .iter_mut()
        .find(|p| p.class == PoolClass::HDD)
        .unwrap()
        .thin_free_bytes = free;
}

#[tokio::test]
async fn thin_parameter_reaches_the_volume_and_needs_a_thin_pool() {
    let backend = MemBackend::with_nodes(&[("file-node", PoolClass::HDD, 100 * GIB)]);
    let mut h = Harness::start(Driver::Lvm, backend.clone()).await;

    // No node has a thin pool: a clear FAILED_PRECONDITION, never a thick volume.
    let e = h
        .controller
        .create_volume(create("pvc-thin", GIB as i64, "true"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("ThinPoolClaim") && e.message().contains("file engine"),
        "{}",
        e.message()
    );
    assert!(backend.volume("pvc-thin").is_none(), "nothing created");

    // Ill-formed values are INVALID_ARGUMENT and name the parameter.
    let e = h
        .controller
        .create_volume(create("pvc-bad", GIB as i64, "yes"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("thin"), "{}", e.message());

    // A thin pool with 3 GiB left to provision: 2 GiB fits (a thick volume that large would
    // not), 4 GiB does not.
    backend
        .state
        .lock()
        .unwrap()
        .nodes
        .push(hwameistor_csi::backend::NodeCapacity {
            node: "lvm-node".into(),
            ready: true,
            pools: vec![hwameistor_csi::backend::PoolCapacity {
                class: PoolClass::HDD,
                // The in-memory reconciler allocates from free_bytes; placement must only
                // look at the thin pool, not at the VG's largest thick volume (1 GiB).
                free_bytes: 10 * GIB,
                max_volume_bytes: GIB,
                free_volume_count: 1000,
                thin_free_bytes: None,
            }],
        });
    set_thin_free(&backend, "lvm-node", Some(3 * GIB));
    let v = h
        .controller
        .create_volume(create("pvc-thin", 2 * GIB as i64, "true"))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_id, "pvc-thin");
    let rec = backend.volume("pvc-thin").unwrap();
    assert!(
        matches!(&rec.spec.params, VolumeParams::Lvm(p) if p.thin),
        "{:?}",
        rec.spec.params
    );
    assert_eq!(
        rec.spec.nodes,
        ["lvm-node"],
        "only the node with a thin pool"
    );
    let e = h
        .controller
        .create_volume(create("pvc-thin-big", 4 * GIB as i64, "true"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    h.stop().await;
}

fn capacity(node: Option<&str>, thin: Option<&str>) -> GetCapacityRequest {
    let mut params: HashMap<String, String> = HashMap::from([("poolClass".into(), "HDD".into())]);
    if let Some(t) = thin {
        params.insert("thin".into(), t.into());
    }
    GetCapacityRequest {
        volume_capabilities: vec![],
        parameters: params,
        accessible_topology: node.map(|n| Topology {
            segments: HashMap::from([(Driver::Lvm.topology_key().to_string(), n.to_string())]),
        }),
    }
}

#[tokio::test]
async fn get_capacity_reports_thin_provisionable_bytes_per_node() {
    let backend = MemBackend::with_nodes(&[
        ("thin-node", PoolClass::HDD, 10 * GIB),
        ("thick-node", PoolClass::HDD, 20 * GIB),
    ]);
    // thin-node: a thin pool that may still provision 35 GiB (size × ratio − provisioned).
    set_thin_free(&backend, "thin-node", Some(35 * GIB));
    let mut h = Harness::start(Driver::Lvm, backend.clone()).await;
    let get = |r: GetCapacityResponse| (r.available_capacity, r.maximum_volume_size);
    let mut ask = async |node, thin| {
        get(h
            .controller
            .get_capacity(capacity(node, thin))
            .await
            .unwrap()
            .into_inner())
    };
    let g = GIB as i64;
    // Thin: the thin pool's provisionable bytes, not the VG's free space; a node without a
    // thin pool offers nothing.
    assert_eq!(
        ask(Some("thin-node"), Some("true")).await,
        (35 * g, Some(35 * g))
    );
    assert_eq!(ask(Some("thick-node"), Some("true")).await, (0, Some(0)));
    assert_eq!(ask(None, Some("true")).await, (35 * g, Some(35 * g)));
    // Thick (thin "false" or absent): the VG's free space as before.
    assert_eq!(
        ask(Some("thin-node"), Some("false")).await,
        (10 * g, Some(10 * g))
    );
    assert_eq!(ask(Some("thin-node"), None).await, (10 * g, Some(10 * g)));
    assert_eq!(ask(None, None).await, (30 * g, Some(20 * g)));
    // The thin pool fills up: GetCapacity follows.
    set_thin_free(&backend, "thin-node", Some(0));
    assert_eq!(ask(Some("thin-node"), Some("true")).await, (0, Some(0)));
}
