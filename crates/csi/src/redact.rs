//! `Debug` for every CSI message that carries secrets (fields marked `csi_secret` in the
//! spec) or mount flags (which the spec says may be sensitive).
//!
//! `build.rs` tells prost not to derive `Debug` for these messages; the impls here print
//! every other field and replace secret values by `<redacted>` (keys stay visible: they help
//! debugging and are not sensitive). Since requests are only ever logged through `Debug`,
//! no log line can contain a secret.

use std::collections::HashMap;
use std::fmt;

use crate::proto::*;

/// Shows the keys of a secrets map, never the values.
pub struct Redacted<'a>(pub &'a HashMap<String, String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort();
        f.debug_map()
            .entries(keys.into_iter().map(|k| (k, "<redacted>")))
            .finish()
    }
}

macro_rules! redacted_debug {
    ($ty:ty { $($field:ident),* } secrets: $secret:ident) => {
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .field(stringify!($secret), &Redacted(&self.$secret))
                    .finish()
            }
        }
    };
}

redacted_debug!(CreateVolumeRequest {
    name, capacity_range, volume_capabilities, parameters, volume_content_source,
    accessibility_requirements, mutable_parameters
} secrets: secrets);
redacted_debug!(DeleteVolumeRequest { volume_id } secrets: secrets);
redacted_debug!(ControllerPublishVolumeRequest {
    volume_id, node_id, volume_capability, readonly, volume_context
} secrets: secrets);
redacted_debug!(ControllerUnpublishVolumeRequest { volume_id, node_id } secrets: secrets);
redacted_debug!(ValidateVolumeCapabilitiesRequest {
    volume_id, volume_context, volume_capabilities, parameters, mutable_parameters
} secrets: secrets);
redacted_debug!(ControllerModifyVolumeRequest { volume_id, mutable_parameters } secrets: secrets);
redacted_debug!(CreateSnapshotRequest { source_volume_id, name, parameters } secrets: secrets);
redacted_debug!(DeleteSnapshotRequest { snapshot_id } secrets: secrets);
redacted_debug!(ListSnapshotsRequest {
    max_entries, starting_token, source_volume_id, snapshot_id
} secrets: secrets);
redacted_debug!(ControllerExpandVolumeRequest {
    volume_id, capacity_range, volume_capability
} secrets: secrets);
redacted_debug!(NodeStageVolumeRequest {
    volume_id, publish_context, staging_target_path, volume_capability, volume_context
} secrets: secrets);
redacted_debug!(NodePublishVolumeRequest {
    volume_id, publish_context, staging_target_path, target_path, volume_capability,
    readonly, volume_context
} secrets: secrets);
redacted_debug!(NodeExpandVolumeRequest {
    volume_id, volume_path, capacity_range, staging_target_path, volume_capability
} secrets: secrets);

impl fmt::Debug for volume_capability::MountVolume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MountVolume")
            .field("fs_type", &self.fs_type)
            .field(
                "mount_flags",
                &format_args!("<{} redacted>", self.mount_flags.len()),
            )
            .field("volume_mount_group", &self.volume_mount_group)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_printed() {
        let mut secrets = HashMap::new();
        secrets.insert("password".to_string(), "hunter2".to_string());
        let req = NodePublishVolumeRequest {
            volume_id: "pvc-1".into(),
            target_path: "/mnt/x".into(),
            secrets: secrets.clone(),
            volume_capability: Some(VolumeCapability {
                access_mode: None,
                access_type: Some(volume_capability::AccessType::Mount(
                    volume_capability::MountVolume {
                        fs_type: "xfs".into(),
                        mount_flags: vec!["password=hunter2".into()],
                        volume_mount_group: String::new(),
                    },
                )),
            }),
            ..Default::default()
        };
        let s = format!("{req:?} {req:#?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(
            s.contains("pvc-1") && s.contains("password") && s.contains("xfs"),
            "{s}"
        );
        let c = CreateVolumeRequest {
            name: "v".into(),
            secrets,
            ..Default::default()
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && s.contains("<redacted>"), "{s}");
    }
}
