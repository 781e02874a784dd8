//! Compiles `proto/csi.proto` with protox (a protobuf compiler written in Rust, so no system
//! `protoc` is needed) and generates prost messages and tonic clients/servers.

/// Messages that carry `csi_secret` fields (or mount flags, which the spec says may be
/// sensitive): their `Debug` is written by hand in `src/redact.rs` so secrets never reach a
/// log line.
const REDACTED: &[&str] = &[
    "csi.v1.CreateVolumeRequest",
    "csi.v1.DeleteVolumeRequest",
    "csi.v1.ControllerPublishVolumeRequest",
    "csi.v1.ControllerUnpublishVolumeRequest",
    "csi.v1.ValidateVolumeCapabilitiesRequest",
    "csi.v1.ControllerModifyVolumeRequest",
    "csi.v1.CreateSnapshotRequest",
    "csi.v1.DeleteSnapshotRequest",
    "csi.v1.ListSnapshotsRequest",
    "csi.v1.ControllerExpandVolumeRequest",
    "csi.v1.NodeStageVolumeRequest",
    "csi.v1.NodePublishVolumeRequest",
    "csi.v1.NodeExpandVolumeRequest",
    "csi.v1.VolumeCapability.MountVolume",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/csi.proto");
    let fds = protox::compile(["csi.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .skip_debug(REDACTED.iter().copied())
        .compile_fds(fds)?;
    Ok(())
}
