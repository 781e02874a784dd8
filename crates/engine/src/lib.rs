//! hwameistor-engine: the node's data path — pools, volumes, filesystems and IO limits.
//!
//! # Domain
//! A node turns the disks claimed for `local-storage` into **pools**, one per disk class:
//! `LocalStorage_PoolHDD`, `LocalStorage_PoolSSD`, `LocalStorage_PoolNVMe`. A pool serves
//! **volumes** (one per LocalVolumeReplica): block devices of a requested size that CSI then
//! formats, mounts into pods, grows and throttles.
//!
//! Two engines implement the same [`VolumeEngine`] trait:
//! - **lvm** ([`lvm`]): a pool is an LVM volume group (VG) over the disks (physical
//!   volumes), a volume a logical volume (LV), linear or striped across all PVs. Sizes are
//!   multiples of the VG's extent (4 MiB). Everything we create carries the LVM tag
//!   `hwameistor.io/managed`; untagged VGs and LVs are never listed or touched. Needs the
//!   kernel's device-mapper.
//! - **file** ([`file`]): for hosts without device-mapper (CI machines, edge boxes). Each
//!   pool disk gets an XFS (`reflink=1`) or btrfs filesystem mounted under a root directory;
//!   a volume is a sparse file there, attached to a loop device in direct-IO mode (so IO to
//!   the volume bypasses the page cache of the pool filesystem), with a stable symlink
//!   `<dev_dir>/<pool>/<volume>` pointing at the loop device.
//!
//! The engine is chosen per node by [`detect_engine`] (lvm if device-mapper and lvm2 are
//! present, else file) and can be forced by [`EngineConfig::engine`].
//!
//! Around the engines:
//! - [`fs`]: mkfs (refusing to overwrite a foreign filesystem), idempotent mount/unmount,
//!   online grow, usage statistics, bind-mounting a block device for block-mode volumes.
//! - [`luks`]: LUKS2 containers on volumes (format, open, close; key on stdin only).
//! - [`qos`]: per-device IOPS/throughput limits through cgroup v1 blkio throttles or cgroup
//!   v2 `io.max`.
//!
//! Every host command runs through [`hwameistor_exec::Runner`] (argv only); every name is
//! validated with [`hwameistor_core::names::validate`] before it reaches argv or a path.
//! Every mutating operation is idempotent, so the node agent can crash at any step and simply
//! run the step again.
//!
//! # Use
//! ```no_run
//! # async fn demo() -> hwameistor_engine::Result<()> {
//! use hwameistor_engine::{EngineConfig, VolumeOptions};
//! let runner = hwameistor_exec::TokioRunner::shared();
//! // lvm where device-mapper exists, else file (EngineConfig::engine overrides).
//! let engine = hwameistor_engine::open_engine(runner.clone(), &EngineConfig::default()).await?;
//! engine.ensure_pool("LocalStorage_PoolHDD", &["/dev/sdb".into()]).await?;
//! let vol = engine
//!     .create_volume("LocalStorage_PoolHDD", "pvc-1234", 1 << 30, &VolumeOptions::default())
//!     .await?;
//! let mnt = std::path::Path::new("/mnt/pvc-1234");
//! hwameistor_engine::fs::mkfs(runner.as_ref(), &vol.device_path, hwameistor_engine::fs::FsType::Ext4, &[]).await?;
//! hwameistor_engine::fs::mount(runner.as_ref(), &vol.device_path, mnt, hwameistor_engine::fs::FsType::Ext4, &[]).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod engine;
pub mod error;
pub mod file;
pub mod fs;
pub mod luks;
pub mod lvm;
pub mod qos;
pub mod types;

pub use config::{EngineConfig, FileEngineConfig, HostPaths, LvmConfig, PoolFsType};
pub use engine::{
    HostFacts, NO_THIN_POOLS, SharedEngine, VolumeEngine, build_engine, choose_engine,
    detect_engine, open_engine, probe_host,
};
pub use error::{Context, Error, Result};
pub use lvm::thin::{THIN_POOL_LV, ThinPoolInfo, ThinPoolRequest};
pub use types::{
    DEFAULT_EXTENT_BYTES, EngineKind, MAX_VOLUMES_PER_POOL, POOL_PREFIX, PoolDisk, PoolInfo,
    SnapshotInfo, VolumeAttributes, VolumeInfo, VolumeOptions, round_up_to_extent,
};
