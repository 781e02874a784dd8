//! Value types exchanged with a [`VolumeEngine`](crate::VolumeEngine).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Size of one allocation unit of both engines unless the pool says otherwise (LVM's default
/// physical extent, 4 MiB). Volume sizes are rounded up to a multiple of the pool's extent.
pub const DEFAULT_EXTENT_BYTES: u64 = 4 * 1024 * 1024;

/// Maximum number of volumes per pool (the original's `totalVolumeCount`).
pub const MAX_VOLUMES_PER_POOL: u32 = 1000;

/// Prefix every pool name must carry (`LocalStorage_PoolHDD`, `..SSD`, `..NVMe`). Pools
/// without it are never listed or touched.
pub const POOL_PREFIX: &str = "LocalStorage_Pool";

/// Which implementation serves the volumes of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// LVM2 volume groups and logical volumes (needs device-mapper).
    Lvm,
    /// Sparse files on an XFS/btrfs filesystem per disk, attached as loop devices.
    File,
}

impl EngineKind {
    pub const fn as_str(&self) -> &'static str {
        match self {
            EngineKind::Lvm => "lvm",
            EngineKind::File => "file",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error parsing an [`EngineKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?}; expected lvm or file")]
pub struct ParseEngineKindError(pub String);

impl FromStr for EngineKind {
    type Err = ParseEngineKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "lvm" => Ok(EngineKind::Lvm),
            "file" => Ok(EngineKind::File),
            _ => Err(ParseEngineKindError(s.to_owned())),
        }
    }
}

/// One disk (physical volume, or filesystem-formatted disk for the file engine) of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDisk {
    /// Device path as given when the pool was built (`/dev/sdb`, `/dev/loop3`).
    pub dev_path: PathBuf,
    /// Capacity this disk contributes to the pool, bytes.
    pub capacity_bytes: u64,
    /// Free bytes on this disk (what is not allocated to volumes).
    pub free_bytes: u64,
}

/// What the host says about a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// Pool name, e.g. `LocalStorage_PoolHDD`.
    pub name: String,
    pub engine: EngineKind,
    /// Where the pool's volume devices live: `/dev/<VG>` for lvm, the symlink directory for
    /// the file engine.
    pub path: PathBuf,
    pub total_bytes: u64,
    /// Bytes allocated to volumes (thick: the volumes' sizes; plus filesystem overhead for the
    /// file engine).
    pub used_bytes: u64,
    pub free_bytes: u64,
    /// The largest single volume the pool can still hold (lvm: all free space; file: the
    /// free space of the emptiest disk, because a file cannot span filesystems).
    pub max_volume_bytes: u64,
    /// Allocation unit; volume sizes are multiples of it.
    pub extent_bytes: u64,
    /// Number of volumes of ours in the pool.
    pub volume_count: u32,
    pub disks: Vec<PoolDisk>,
    /// Names of our volumes in the pool, sorted.
    pub volumes: Vec<String>,
}

/// How to lay out a new volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeOptions {
    /// Stripe across all disks of the pool (lvm `-i <#PVs>`). The file engine refuses it.
    pub striped: bool,
    /// Thin provisioning: a thin volume in the pool's thin pool (lvm only; the file engine
    /// refuses it with [`crate::Error::Unsupported`]).
    pub thin: bool,
}

/// Observed attributes of a volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeAttributes {
    /// The device node exists and can be opened (LV active / loop device attached).
    pub active: bool,
    /// Someone holds the device open (mounted, in use).
    pub open: bool,
    /// Number of stripes (1 = linear).
    pub stripes: u32,
    /// Disks holding the volume's data.
    pub disks: Vec<PathBuf>,
    /// Engine specific attribute string (`lv_attr` for lvm, the backing file for file).
    pub raw: String,
}

/// What the host says about one volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub pool: String,
    pub name: String,
    /// Allocated size in bytes (a multiple of the pool's extent).
    pub size_bytes: u64,
    /// Stable device path: `/dev/<VG>/<LV>` for lvm, `<dev_dir>/<pool>/<volume>` (a symlink
    /// to the loop device) for the file engine. Only usable when `attrs.active`.
    pub device_path: PathBuf,
    pub attrs: VolumeAttributes,
}

/// A point-in-time snapshot of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub pool: String,
    pub name: String,
    /// The volume the snapshot was taken from.
    pub source_volume: String,
    pub size_bytes: u64,
    /// True while the snapshot can be restored (an lvm COW snapshot becomes invalid when its
    /// space overflows).
    pub valid: bool,
}

/// Round `bytes` up to a multiple of `extent` (at least one extent). `extent` 0 is treated
/// as [`DEFAULT_EXTENT_BYTES`]. Saturates instead of overflowing.
pub fn round_up_to_extent(bytes: u64, extent: u64) -> u64 {
    let extent = if extent == 0 {
        DEFAULT_EXTENT_BYTES
    } else {
        extent
    };
    if bytes == 0 {
        return extent;
    }
    match bytes.checked_add(extent - 1) {
        Some(b) => b / extent * extent,
        None => u64::MAX / extent * extent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_to_extents() {
        let mi = 1024 * 1024;
        assert_eq!(round_up_to_extent(0, 4 * mi), 4 * mi);
        assert_eq!(round_up_to_extent(1, 4 * mi), 4 * mi);
        assert_eq!(round_up_to_extent(4 * mi, 4 * mi), 4 * mi);
        assert_eq!(round_up_to_extent(4 * mi + 1, 4 * mi), 8 * mi);
        assert_eq!(round_up_to_extent(1024 * mi, 4 * mi), 1024 * mi);
        assert_eq!(round_up_to_extent(5, 0), DEFAULT_EXTENT_BYTES);
        assert_eq!(round_up_to_extent(3 * mi, mi), 3 * mi);
        let big = round_up_to_extent(u64::MAX, 4 * mi);
        assert_eq!(big % (4 * mi), 0);
        assert!(big > u64::MAX - 4 * mi);
    }

    #[test]
    fn engine_kind_parses() {
        assert_eq!("lvm".parse::<EngineKind>().unwrap(), EngineKind::Lvm);
        assert_eq!("File".parse::<EngineKind>().unwrap(), EngineKind::File);
        assert!("zfs".parse::<EngineKind>().is_err());
        assert_eq!(EngineKind::Lvm.to_string(), "lvm");
    }
}
