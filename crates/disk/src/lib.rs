//! # hwameistor-disk — finding, naming and checking the disks of a node
//!
//! The Local Disk Manager's node side. A node has block devices; some are data disks we may
//! use, most of the rest are off limits (the system disk, disks with data, virtual devices).
//! This crate gathers the facts, and `hwameistor_core::disk` decides:
//!
//! 1. **Enumerate** whole disks from sysfs ([`sysfs`]): `/sys/class/block/*` without a
//!    `partition` attribute. The udev database (`/run/udev/data/b<maj>:<min>`) adds by-id /
//!    by-path links and fills identity gaps when it exists; we never depend on udevd.
//! 2. **Probe** signatures with `blkid -p -o export` on the disk and each partition
//!    ([`probe`]): partition table, filesystem, LVM label (`LVM2_member`), LUKS
//!    (`crypto_LUKS`), swap. Mounts come from `/proc/self/mountinfo` (by device number and
//!    source, through partitions and dm/md holders), swap from `/proc/swaps`.
//! 3. **Decide** with `hwameistor_core::disk`: skip virtual devices (loop only with
//!    [`DiscoveryConfig::include_loop`]), type HDD/SSD/NVMe, name `localdisk-<md5>`, hazards.
//! 4. **Follow changes**: kernel uevents over netlink ([`uevent`], the safe `nix` socket API)
//!    plus a cheap sysfs fingerprint ([`DiscoverySource::fingerprint`]) that the node loop
//!    polls every second, so a disk plugged in or pulled out is seen within 2 s even where
//!    uevents do not reach us (e.g. a container in another network namespace).
//! 5. **SMART** with `smartctl --all --json` ([`smart`]), tolerant of its exit-code bitmask.
//!
//! The reconcilers that turn [`DiscoveredDisk`]s into LocalDisk objects live in
//! `hwameistor_controllers::disk`; they take any [`DiscoverySource`], so they are tested with
//! a fake one. Every command runs through `hwameistor_exec::Runner`.

pub mod probe;
pub mod smart;
pub mod sysfs;
pub mod uevent;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hwameistor_api::disk::{DiskAttributes, FileSystemInfo, PartitionInfo};
use hwameistor_core::disk::{
    BlockDevice, DeviceFilter, DiskIdentity, Hazard, PartitionEntry, classify_type, disk_identity,
    hazards, is_system_disk, partition_info, should_manage,
};
use hwameistor_core::types::DiskType;
use hwameistor_exec::SharedRunner;

pub use probe::Signatures;
pub use smart::SmartReport;
pub use sysfs::Roots;

/// Errors of disk discovery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {what}: {detail}")]
    Parse { what: String, detail: String },
    #[error(transparent)]
    Exec(#[from] hwameistor_exec::Error),
    #[error("uevent netlink socket: {op} failed: {source}")]
    Netlink {
        op: &'static str,
        #[source]
        source: nix::errno::Errno,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Settings of discovery on one node.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// This node's name (part of some identities, and of every LocalDisk).
    pub node_name: String,
    pub roots: Roots,
    /// Report loop devices that have a backing file (tests, standalone demo).
    pub include_loop: bool,
    /// With `include_loop`: only loop devices whose backing file lies under this directory
    /// count; the others are skipped before any probe. The standalone demo sets its `disks/`
    /// directory, so the `file` engine's volume loop devices (user data, and one more device
    /// per volume to probe) are never looked at.
    pub loop_backing_dir: Option<std::path::PathBuf>,
}

/// True if the device `kernel_name` (backing file `backing`, as sysfs shows it) may be
/// reported under `dir`: any device that is not a loop device, or a loop device backed by a
/// file under `dir` (path components, not string prefix).
pub fn loop_backing_allowed(
    kernel_name: &str,
    backing: Option<&str>,
    dir: &std::path::Path,
) -> bool {
    if !kernel_name.starts_with("loop") {
        return true;
    }
    match backing {
        // sysfs shows a removed backing file as "<path> (deleted)"
        Some(f) => std::path::Path::new(f.trim_end_matches(" (deleted)")).starts_with(dir),
        None => false,
    }
}

impl DiscoveryConfig {
    pub fn new(node_name: impl Into<String>) -> Self {
        DiscoveryConfig {
            node_name: node_name.into(),
            roots: Roots::default(),
            include_loop: false,
            loop_backing_dir: None,
        }
    }

    /// True for a device this configuration never reports, decided from its name and at most
    /// one sysfs read: every loop device without [`Self::include_loop`], and with
    /// [`Self::loop_backing_dir`] every loop device backed elsewhere (or not attached). Scans
    /// and fingerprints leave these out, and their uevents need no pass: a host with a
    /// loop device per `file`-engine volume then scans only the disks that can matter.
    pub fn ignores(&self, kernel_name: &str) -> bool {
        if !sysfs::is_loop_name(kernel_name) {
            return false;
        }
        if !self.include_loop {
            return true;
        }
        match &self.loop_backing_dir {
            None => false,
            Some(dir) => !loop_backing_allowed(
                kernel_name,
                sysfs::loop_backing_file(&self.roots, kernel_name).as_deref(),
                dir,
            ),
        }
    }
}

/// A disk found on this node, with every decision about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredDisk {
    pub device: BlockDevice,
    pub identity: DiskIdentity,
    pub disk_type: DiskType,
    pub hazards: Vec<Hazard>,
    /// Holds root, /boot or swap: reserved when first seen.
    pub system: bool,
    pub partitions: Vec<PartitionEntry>,
}

impl DiscoveredDisk {
    /// Build from gathered facts (pure).
    pub fn from_device(device: BlockDevice, node: &str) -> Option<Self> {
        let identity = disk_identity(&device, node)?;
        let hz = hazards(&device);
        Some(DiscoveredDisk {
            disk_type: classify_type(&device),
            system: is_system_disk(&hz),
            partitions: partition_info(&device),
            hazards: hz,
            identity,
            device,
        })
    }

    /// "partitioned" in the original's sense: not free for use.
    pub fn partitioned(&self) -> bool {
        !self.hazards.is_empty()
    }

    /// `spec.diskAttributes` of the LocalDisk.
    pub fn attributes(&self) -> DiskAttributes {
        let d = &self.device;
        DiskAttributes {
            disk_type: Some(self.disk_type),
            dev_type: d.dev_type(),
            vendor: d.vendor.clone().unwrap_or_default(),
            product: d.model.clone().unwrap_or_default(),
            pci_vendor_id: String::new(),
            model_name: d.model.clone().unwrap_or_default(),
            serial_number: d.serial.clone().unwrap_or_default(),
            form_factor: String::new(),
            rotation_rate: match (d.rotation_rate, d.rotational) {
                (Some(r), _) => r as i64,
                (None, Some(false)) => 1,
                _ => 0,
            },
            protocol: d.bus.clone().unwrap_or_default(),
        }
    }

    /// `spec.partitionInfo` of the LocalDisk.
    pub fn partition_info(&self) -> Vec<PartitionInfo> {
        self.partitions
            .iter()
            .map(|p| PartitionInfo {
                path: p.path.clone(),
                has_file_system: p.has_file_system,
                filesystem: (!p.fs_type.is_empty() || !p.mount_point.is_empty()).then(|| {
                    FileSystemInfo {
                        fs_type: p.fs_type.clone(),
                        mount_point: p.mount_point.clone(),
                    }
                }),
            })
            .collect()
    }
}

/// Where the node loop gets its disks from: the host ([`Discoverer`]) or a fake in tests.
#[async_trait]
pub trait DiscoverySource: Send + Sync + Debug {
    /// Every manageable disk present now, fully probed.
    async fn scan(&self) -> Result<Vec<DiscoveredDisk>>;
    /// A cheap value that changes whenever disks come, go, resize or re-partition.
    fn fingerprint(&self) -> Result<String>;
    /// SMART report of one disk.
    async fn smart(&self, dev_path: &str) -> Result<SmartReport>;
    /// Forget cached probe results (of one kernel device, or all with `None`) so the next
    /// [`DiscoverySource::scan`] probes signatures again.
    fn invalidate(&self, _device: Option<&str>) {}
    /// Forget the cached probes of the disks (kernel names) for which `pred` holds. Sources
    /// that cannot select forget everything.
    fn invalidate_matching(&self, _pred: &dyn Fn(&str) -> bool) {
        self.invalidate(None)
    }
    /// True if a uevent of `kernel_name` cannot change what [`DiscoverySource::scan`]
    /// reports (a device it never looks at and does not report now), so it needs no pass.
    /// Sources that cannot tell say false.
    fn ignores_event(&self, _kernel_name: &str) -> bool {
        false
    }
}

/// Discovery on the real host.
///
/// Signature probes (`blkid`) are cached per device and reused while the device's sysfs
/// identity (dev number, `diskseq`, size, backing file, partitions, holders) is unchanged, so
/// a scan triggered by another disk's arrival or removal costs only sysfs and procfs reads.
/// The node loop invalidates the cache on `change` uevents and before its periodic full
/// re-probe.
#[derive(Debug, Clone)]
pub struct Discoverer {
    pub config: DiscoveryConfig,
    runner: SharedRunner,
    cache: Arc<Mutex<HashMap<String, CachedProbe>>>,
}

#[derive(Debug, Clone)]
struct CachedProbe {
    key: String,
    partition_table: Option<String>,
    fs_type: Option<String>,
    partition_fs: Vec<Option<String>>,
}

fn probe_key(roots: &Roots, dev: &BlockDevice) -> String {
    let seq = std::fs::read_to_string(
        roots
            .sys
            .join("class/block")
            .join(&dev.kernel_name)
            .join("diskseq"),
    )
    .unwrap_or_default();
    let parts: Vec<&str> = dev.partitions.iter().map(|p| p.path.as_str()).collect();
    format!(
        "{}:{} {} {} {:?} {:?} {:?}",
        dev.major,
        dev.minor,
        dev.size_bytes,
        seq.trim(),
        dev.loop_backing_file,
        parts,
        dev.holders
    )
}

impl Discoverer {
    pub fn new(config: DiscoveryConfig, runner: SharedRunner) -> Self {
        Discoverer {
            config,
            runner,
            cache: Default::default(),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedProbe>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read_proc(&self, rel: &str) -> String {
        std::fs::read_to_string(self.config.roots.proc.join(rel)).unwrap_or_default()
    }

    /// Gather and probe one whole disk (no manage/skip decision).
    pub async fn probe_device(&self, name: &str) -> Result<BlockDevice> {
        let roots = &self.config.roots;
        let mut dev = sysfs::read_device(roots, name)?;
        let key = probe_key(roots, &dev);
        let cached = self.cache().get(name).filter(|c| c.key == key).cloned();
        match cached {
            Some(c) => {
                dev.partition_table = c.partition_table;
                dev.fs_type = c.fs_type;
                for (p, fs) in dev.partitions.iter_mut().zip(c.partition_fs) {
                    p.fs_type = fs;
                }
            }
            None => {
                let sig = probe::probe_signatures(self.runner.as_ref(), &dev.dev_path).await?;
                dev.partition_table = sig.partition_table;
                dev.fs_type = sig.fs_type;
                for p in &mut dev.partitions {
                    match probe::probe_signatures(self.runner.as_ref(), &p.path).await {
                        Ok(s) => p.fs_type = s.fs_type,
                        Err(e) => {
                            tracing::debug!(partition = %p.path, error = %e, "partition probe failed")
                        }
                    }
                }
                self.cache().insert(
                    name.to_owned(),
                    CachedProbe {
                        key,
                        partition_table: dev.partition_table.clone(),
                        fs_type: dev.fs_type.clone(),
                        partition_fs: dev.partitions.iter().map(|p| p.fs_type.clone()).collect(),
                    },
                );
            }
        }
        // mounts and swap through the disk, its partitions and everything stacked on them
        let desc = sysfs::descendants(roots, name);
        let mut numbers: BTreeSet<(u32, u32)> = desc.iter().map(|d| (d.major, d.minor)).collect();
        numbers.insert((dev.major, dev.minor));
        let mut paths: BTreeSet<String> = desc.iter().map(|d| format!("/dev/{}", d.name)).collect();
        paths.insert(dev.dev_path.clone());
        let mountinfo = format!("{}/mountinfo", self.config.roots.mount_pid);
        let mounts = probe::parse_mountinfo(&self.read_proc(&mountinfo));
        for m in &mounts {
            if numbers.contains(&(m.major, m.minor)) || paths.contains(&m.source) {
                if !dev.mount_points.contains(&m.mount_point) {
                    dev.mount_points.push(m.mount_point.clone());
                }
                if let Some(p) = dev.partitions.iter_mut().find(|p| {
                    p.path == m.source || {
                        let pn = p.path.trim_start_matches("/dev/");
                        desc.iter()
                            .any(|d| d.name == pn && (d.major, d.minor) == (m.major, m.minor))
                    }
                }) && p.mount_point.is_none()
                {
                    p.mount_point = Some(m.mount_point.clone());
                }
            }
        }
        for sw in probe::parse_swaps(&self.read_proc("swaps")) {
            let hit = paths.contains(&sw)
                || nix::sys::stat::stat(sw.as_str()).ok().is_some_and(|st| {
                    let (ma, mi) = (
                        nix::sys::stat::major(st.st_rdev) as u32,
                        nix::sys::stat::minor(st.st_rdev) as u32,
                    );
                    (st.st_mode & libc_s_ifmt()) == libc_s_ifblk() && numbers.contains(&(ma, mi))
                });
            if hit {
                dev.swap = true;
            }
        }
        Ok(dev)
    }
}

const fn libc_s_ifmt() -> u32 {
    0o170000
}
const fn libc_s_ifblk() -> u32 {
    0o060000
}

#[async_trait]
impl DiscoverySource for Discoverer {
    async fn scan(&self) -> Result<Vec<DiscoveredDisk>> {
        let filter = DeviceFilter {
            include_loop: self.config.include_loop,
        };
        let mut out = Vec::new();
        let names = sysfs::list_disks_except(&self.config.roots, &|n| self.config.ignores(n))?;
        self.cache().retain(|k, _| names.contains(k));
        for name in names {
            // cheap sysfs read first: skip what we never manage before probing it
            let facts = match sysfs::read_device(&self.config.roots, &name) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(device = %name, error = %e, "device vanished while scanning");
                    continue;
                }
            };
            if let Err(why) = should_manage(&facts, filter) {
                tracing::trace!(device = %name, %why, "skipped");
                continue;
            }
            // re-checked on what was read: the backing file may have changed since listing
            if let Some(dir) = &self.config.loop_backing_dir
                && !loop_backing_allowed(&name, facts.loop_backing_file.as_deref(), dir)
            {
                tracing::trace!(device = %name, dir = %dir.display(), "loop device backed outside the disk directory; skipped");
                continue;
            }
            let dev = match self.probe_device(&name).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(device = %name, error = %e, "probe failed; disk skipped this round");
                    continue;
                }
            };
            match DiscoveredDisk::from_device(dev, &self.config.node_name) {
                Some(d) => out.push(d),
                None => tracing::debug!(device = %name, "no stable identity; not managed"),
            }
        }
        Ok(out)
    }

    fn fingerprint(&self) -> Result<String> {
        sysfs::fingerprint_except(&self.config.roots, &|n| self.config.ignores(n))
    }

    fn ignores_event(&self, kernel_name: &str) -> bool {
        // a device probed before (in the cache) was reported: its change or removal matters
        self.config.ignores(kernel_name) && !self.cache().contains_key(kernel_name)
    }

    async fn smart(&self, dev_path: &str) -> Result<SmartReport> {
        smart::check(self.runner.as_ref(), dev_path, None).await
    }

    fn invalidate(&self, device: Option<&str>) {
        match device {
            Some(d) => {
                self.cache().remove(d);
            }
            None => self.cache().clear(),
        }
    }

    fn invalidate_matching(&self, pred: &dyn Fn(&str) -> bool) {
        self.cache().retain(|k, _| !pred(k));
    }
}

#[cfg(test)]
mod tests {
    use super::loop_backing_allowed as backing_allowed;
    use std::path::Path;

    #[test]
    fn only_loop_devices_backed_under_the_dir_pass() {
        let dir = Path::new("/var/lib/demo/disks");
        assert!(backing_allowed("sdb", None, dir));
        assert!(backing_allowed(
            "loop0",
            Some("/var/lib/demo/disks/disk-0.img"),
            dir
        ));
        assert!(!backing_allowed(
            "loop3",
            Some("/var/lib/demo/pools/LocalStorage_PoolHDD/u1/pvc-1.img"),
            dir
        ));
        // a sibling directory sharing the prefix as a string is not "under"
        assert!(!backing_allowed(
            "loop4",
            Some("/var/lib/demo/disks2/x.img"),
            dir
        ));
        assert!(!backing_allowed("loop5", None, dir));
    }
}
