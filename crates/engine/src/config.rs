//! Configuration of the engines (what the node agent's config file / flags carry).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::types::EngineKind;

/// Everything the engines need to know about this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EngineConfig {
    /// Force an engine; `None` = choose automatically (lvm where device-mapper and lvm2
    /// exist, else file).
    pub engine: Option<EngineKind>,
    pub lvm: LvmConfig,
    pub file: FileEngineConfig,
    pub host: HostPaths,
}

/// Settings of the lvm engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LvmConfig {
    /// LVM tag marking VGs and LVs as ours. Only tagged objects are listed or touched.
    pub tag: String,
    /// Timeout of ordinary lvm commands.
    pub timeout: Duration,
}

/// The default ownership tag (valid LVM tag characters: `A-Za-z0-9_+.-/=!:&#`).
pub const DEFAULT_LVM_TAG: &str = "hwameistor.io/managed";

impl Default for LvmConfig {
    fn default() -> Self {
        LvmConfig {
            tag: DEFAULT_LVM_TAG.to_owned(),
            timeout: Duration::from_secs(120),
        }
    }
}

/// Filesystem the file engine puts on each pool disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolFsType {
    /// XFS with `reflink=1` (clones and snapshots by reflink).
    #[default]
    Xfs,
    /// btrfs (reflink native).
    Btrfs,
}

/// Settings of the file engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileEngineConfig {
    /// Each pool disk is mounted at `<root>/<pool>/<disk-id>`.
    pub root: PathBuf,
    /// Stable volume device paths are symlinks `<dev_dir>/<pool>/<volume>` to the loop
    /// device. The default `/dev` mirrors LVM's `/dev/<VG>/<LV>`.
    pub dev_dir: PathBuf,
    /// Filesystem made on new pool disks.
    pub fs_type: PoolFsType,
    /// Allocate the volume file's blocks at creation (`fallocate`) instead of leaving it
    /// sparse. Sparse is the default (space is accounted as used at creation anyway).
    pub preallocate: bool,
    /// Timeout of ordinary commands (mkfs of a large disk may take longer: it gets 10x).
    pub timeout: Duration,
}

impl Default for FileEngineConfig {
    fn default() -> Self {
        FileEngineConfig {
            root: PathBuf::from("/var/lib/hwameistor/pools"),
            dev_dir: PathBuf::from("/dev"),
            fs_type: PoolFsType::Xfs,
            preallocate: false,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Where the host's `/sys` and `/dev` are (a containerised agent may see them elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostPaths {
    pub sys_root: PathBuf,
    pub dev_root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            sys_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
        }
    }
}
