//! CSI request pieces shared by the suites: capabilities, parameters, topology, a
//! CreateVolume request, and checks of the gRPC code of a failed call.

use std::collections::HashMap;

use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use hwameistor_csi::proto::{
    CapacityRange, CreateVolumeRequest, Topology, TopologyRequirement, VolumeCapability,
};
use tonic::Code;

/// A filesystem capability (`fs`: xfs, ext4, ...).
pub fn fs_cap(mode: Mode, fs: &str) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
    }
}

/// A raw block capability.
pub fn block_cap(mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode { mode: mode as i32 }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

/// StorageClass-style parameters.
pub fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One topology segment `key=node`.
pub fn topo(key: &str, node: &str) -> Topology {
    Topology {
        segments: [(key.to_string(), node.to_string())].into(),
    }
}

/// What the external-provisioner sends for WaitForFirstConsumer: `node` required and
/// preferred.
pub fn wffc(key: &str, node: &str) -> Option<TopologyRequirement> {
    Some(TopologyRequirement {
        requisite: vec![topo(key, node)],
        preferred: vec![topo(key, node)],
    })
}

/// CreateVolume for `bytes` with one capability, `parameters` and `topology`.
pub fn create_req(
    name: &str,
    bytes: i64,
    cap: VolumeCapability,
    parameters: HashMap<String, String>,
    topology: Option<TopologyRequirement>,
) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap],
        parameters,
        accessibility_requirements: topology,
        ..Default::default()
    }
}

/// The code and message of a call that must have failed.
pub fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("expected an error");
    (s.code(), s.message().to_string())
}

/// Require the call to fail with `want`; the error message.
#[track_caller]
pub fn fails<T: std::fmt::Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    want: Code,
) -> String {
    let (c, m) = code(r);
    assert_eq!(c, want, "{m}");
    m
}
