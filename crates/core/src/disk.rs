//! Disks: what a block device is, what it is called, whether it is safe to hand out, which
//! claim it matches, which `LocalDiskAction` rule reserves it, and the raw-disk pool maths of a
//! `LocalDiskNode`.
//!
//! Everything here is pure. The node-side discovery (`hwameistor-disk`) gathers the kernel's
//! facts about a device from sysfs, the udev database, `lsblk`/`blkid`, `/proc/self/mountinfo`
//! and `/proc/swaps` into a [`BlockDevice`]; the functions below turn those facts into the
//! fields of a LocalDisk and into decisions.
//!
//! # Type (HDD / SSD / NVMe)
//! [`classify_type`] uses only the kernel's own facts: a device on the NVMe transport is
//! `NVMe`; otherwise the rotational flag decides (`1` → `HDD`, `0` → `SSD`); a device whose
//! rotational flag is unknown is `Unknown`. (qemu's `scsi-hd,rotation_rate=1` clears the
//! rotational flag, `rotation_rate=7200` sets it.)
//!
//! # Identity (the LocalDisk name)
//! [`disk_identity`] names a disk `localdisk-<md5 hex>` from the most stable facts available:
//! 1. **serial and/or WWN** present: `md5(vendor + serial + wwn)` — the same formula as the
//!    original, so names survive a move between ports, nodes and `/dev/sdX` renames;
//! 2. **loop device**: `md5(node + "loop:" + backing file path)`, so a loop disk detached and
//!    re-attached at another loop number keeps its name (documented fallback of ours);
//! 3. **udev by-path links**: `md5(vendor + Σ(node + by-path link))` (the original's fallback);
//! 4. **no udev database** (e.g. a host without udevd): `md5(vendor + node + "sysfs:" +
//!    physical sysfs path of the device)` — the port the disk sits on, which is what a by-path
//!    link encodes too;
//! 5. otherwise the disk is not managed (`None`).
//!
//! # Safety
//! [`hazards`] lists every reason a disk must not be handed out: it holds the root filesystem,
//! `/boot`, swap, any mounted filesystem (also through partitions and device-mapper holders),
//! has a partition table, a filesystem, an LVM label, a LUKS header, or another device
//! (dm, md) sits on top of it. A disk with any hazard is "partitioned" in the original's
//! vocabulary: it is never `Available`. [`is_system_disk`] picks the hazards that make a disk
//! the system disk (root, `/boot`, swap): those are reserved when first seen.
//!
//! # Claims
//! [`match_claim`] applies a LocalDiskClaim's description to one disk and returns every
//! reason it does not match ([`RejectReason`], spelled as the original's event reasons).
//!
//! # LocalDiskAction
//! [`ActionRule::matches`] follows the original exactly: an empty rule matches nothing; a disk
//! matches when `(min == 0 || capacity < min) && (max == 0 || capacity > max) && (glob == "" ||
//! glob matches devicePath)`. In words: `minCapacity` reserves disks *smaller* than it,
//! `maxCapacity` reserves disks *larger* than it, `devicePath` narrows to matching paths.
//! Matching disks get `reserved = true`; a rule never unreserves.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{DiskClaimState, DiskOwner, DiskState, DiskType, LocalDiskState, PoolClass};

/// Prefix of every LocalDisk name.
pub const LOCAL_DISK_NAME_PREFIX: &str = "localdisk-";

/// A filesystem type as `blkid`/udev report it for an LVM physical volume.
pub const FS_LVM2_MEMBER: &str = "LVM2_member";
/// A filesystem type as `blkid`/udev report it for a LUKS header.
pub const FS_CRYPTO_LUKS: &str = "crypto_LUKS";

/// One partition of a disk, as discovered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFacts {
    /// Device path, e.g. `/dev/sdb1`.
    pub path: String,
    /// Signature found on the partition (`ext4`, `LVM2_member`, `swap`, ...).
    pub fs_type: Option<String>,
    /// Where it is mounted, if anywhere.
    pub mount_point: Option<String>,
}

/// Everything the node knows about one block device, gathered by `hwameistor-disk`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// Kernel name: `sda`, `nvme0n1`, `vdb`, `loop3`.
    pub kernel_name: String,
    /// `/dev/<kernel name>`.
    pub dev_path: String,
    pub major: u32,
    pub minor: u32,
    /// Resolved sysfs path, e.g. `/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda`.
    pub sys_path: String,
    /// `disk` or `partition` (sysfs `DEVTYPE`).
    pub devtype: String,
    pub size_bytes: u64,
    /// `queue/rotational`; `None` when the kernel does not say.
    pub rotational: Option<bool>,
    pub removable: bool,
    pub read_only: bool,
    /// Transport: udev `ID_BUS` or derived from sysfs (`ata`, `scsi`, `nvme`, `virtio`, `usb`).
    pub bus: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    /// udev `ID_TYPE` (`disk`, `cd`, ...), when the udev database has it.
    pub id_type: Option<String>,
    /// udev DEVLINKS, sorted.
    pub devlinks: Vec<String>,
    /// Rotation rate in RPM when known (SMART or udev); 1 means "non-rotating".
    pub rotation_rate: Option<u32>,
    /// `dm/uuid` of a device-mapper device.
    pub dm_uuid: Option<String>,
    /// `md/level` of an md RAID device.
    pub md_level: Option<String>,
    /// Backing file of a loop device.
    pub loop_backing_file: Option<String>,
    /// Partition table type on the whole disk (`gpt`, `dos`).
    pub partition_table: Option<String>,
    /// Signature on the whole disk (`ext4`, `LVM2_member`, `crypto_LUKS`, `swap`, ...).
    pub fs_type: Option<String>,
    pub partitions: Vec<PartitionFacts>,
    /// Devices stacked on this disk or its partitions (`dm-0`, `md127`).
    pub holders: Vec<String>,
    /// Mount points of this disk, its partitions and everything stacked on them.
    pub mount_points: Vec<String>,
    /// The disk, a partition or a holder is active swap.
    pub swap: bool,
}

impl BlockDevice {
    /// The original's `devType` attribute.
    pub fn dev_type(&self) -> String {
        let n = self.kernel_name.as_str();
        if n.starts_with("dm-") {
            return match self.dm_uuid.as_deref() {
                Some(u) if u.starts_with("part") => "partition".into(),
                Some(u) if u.starts_with("LVM-") => "lvm".into(),
                Some(u) if u.starts_with("CRYPT-") => "crypt".into(),
                Some(u) if u.starts_with("mpath-") => "mpath".into(),
                _ => "dm".into(),
            };
        }
        if n.starts_with("loop") {
            return "loop".into();
        }
        if n.starts_with("md") {
            return self.md_level.clone().unwrap_or_else(|| "md".into());
        }
        if self.devtype == "partition" {
            return "partition".into();
        }
        "disk".into()
    }

    /// A device the kernel creates in software (`/sys/devices/virtual/...`: loop, dm, md,
    /// zram, ram, nbd) rather than a disk on a bus.
    pub fn is_virtual(&self) -> bool {
        self.sys_path.contains("/virtual/")
            || ["loop", "dm-", "md", "zram", "ram", "nbd", "sr", "fd"]
                .iter()
                .any(|p| self.kernel_name.starts_with(p))
    }

    /// The physical sysfs path of the device: its sysfs path without `/block/<name>`.
    pub fn physical_path(&self) -> &str {
        match self.sys_path.rfind("/block/") {
            Some(i) => &self.sys_path[..i],
            None => &self.sys_path,
        }
    }
}

/// Which devices discovery reports as LocalDisks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    /// Report loop devices with a backing file (tests and the standalone demo).
    pub include_loop: bool,
}

/// Why discovery skips a device (for debug logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    NotADisk,
    Virtual,
    LoopNotAttached,
    NotARealDisk { id_type: String },
    Empty,
    NoIdentity,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotADisk => f.write_str("not a whole disk"),
            Self::Virtual => f.write_str("virtual device (loop/dm/md/zram); ignored"),
            Self::LoopNotAttached => f.write_str("loop device without a backing file"),
            Self::NotARealDisk { id_type } => write!(f, "udev ID_TYPE={id_type}, not a disk"),
            Self::Empty => f.write_str("zero size (no medium)"),
            Self::NoIdentity => f.write_str("no serial, WWN or stable path: cannot be named"),
        }
    }
}

/// Decide whether a device becomes a LocalDisk.
pub fn should_manage(dev: &BlockDevice, filter: DeviceFilter) -> Result<(), SkipReason> {
    if dev.devtype != "disk" {
        return Err(SkipReason::NotADisk);
    }
    if dev.kernel_name.starts_with("loop") {
        if !filter.include_loop {
            return Err(SkipReason::Virtual);
        }
        if dev.loop_backing_file.as_deref().unwrap_or("").is_empty() {
            return Err(SkipReason::LoopNotAttached);
        }
    } else if dev.is_virtual() {
        return Err(SkipReason::Virtual);
    }
    if let Some(t) = dev
        .id_type
        .as_deref()
        .filter(|t| !t.is_empty() && *t != "disk")
    {
        return Err(SkipReason::NotARealDisk {
            id_type: t.to_owned(),
        });
    }
    if dev.size_bytes == 0 {
        return Err(SkipReason::Empty);
    }
    Ok(())
}

/// HDD / SSD / NVMe from the transport and the rotational flag.
pub fn classify_type(dev: &BlockDevice) -> DiskType {
    let nvme = dev.bus.as_deref() == Some("nvme")
        || dev.kernel_name.starts_with("nvme")
        || dev.sys_path.contains("/nvme/");
    if nvme {
        return DiskType::NVMe;
    }
    match (dev.rotational, dev.rotation_rate) {
        (Some(true), _) => DiskType::HDD,
        (Some(false), _) => DiskType::SSD,
        (None, Some(1)) => DiskType::SSD,
        (None, Some(r)) if r > 1 => DiskType::HDD,
        _ => DiskType::Unknown,
    }
}

/// Which fact a disk's name was derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentitySource {
    SerialWwn,
    LoopBackingFile,
    ByPath,
    SysfsPath,
}

/// The stable identity of a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskIdentity {
    /// md5 hex of the identity string (the LocalDisk's `spec.uuid`).
    pub uuid: String,
    /// `localdisk-<uuid>`.
    pub name: String,
    pub source: IdentitySource,
}

fn md5hex(s: &str) -> String {
    format!("{:x}", md5::compute(s.as_bytes()))
}

/// Name a disk from its most stable facts (see the module docs for the order).
pub fn disk_identity(dev: &BlockDevice, node: &str) -> Option<DiskIdentity> {
    let vendor = dev.vendor.as_deref().unwrap_or("").trim();
    let serial = dev.serial.as_deref().unwrap_or("").trim();
    let wwn = dev.wwn.as_deref().unwrap_or("").trim();
    let (key, source) = if !serial.is_empty() || !wwn.is_empty() {
        (format!("{vendor}{serial}{wwn}"), IdentitySource::SerialWwn)
    } else if let Some(f) = dev.loop_backing_file.as_deref().filter(|f| !f.is_empty()) {
        let f = f.strip_suffix(" (deleted)").unwrap_or(f);
        (format!("{node}loop:{f}"), IdentitySource::LoopBackingFile)
    } else {
        let by_path: Vec<&String> = dev
            .devlinks
            .iter()
            .filter(|l| l.starts_with("/dev/disk/by-path/"))
            .collect();
        if !by_path.is_empty() {
            let mut key = vendor.to_owned();
            for l in by_path {
                key.push_str(node);
                key.push_str(l);
            }
            (key, IdentitySource::ByPath)
        } else if !dev.is_virtual() && dev.sys_path.starts_with("/sys/devices/") {
            (
                format!("{vendor}{node}sysfs:{}", dev.physical_path()),
                IdentitySource::SysfsPath,
            )
        } else {
            return None;
        }
    };
    let uuid = md5hex(&key);
    Some(DiskIdentity {
        name: format!("{LOCAL_DISK_NAME_PREFIX}{uuid}"),
        uuid,
        source,
    })
}

/// A reason a disk must not be handed out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hazard {
    RootFilesystem,
    Boot,
    Swap,
    Mounted { mount_point: String },
    PartitionTable { kind: String },
    Partitions { count: usize },
    Filesystem { fs_type: String },
    LvmLabel,
    LuksHeader,
    Holders { holders: Vec<String> },
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RootFilesystem => f.write_str("holds the root filesystem"),
            Self::Boot => f.write_str("holds /boot"),
            Self::Swap => f.write_str("holds active swap"),
            Self::Mounted { mount_point } => write!(f, "mounted at {mount_point}"),
            Self::PartitionTable { kind } => write!(f, "has a {kind} partition table"),
            Self::Partitions { count } => write!(f, "has {count} partition(s)"),
            Self::Filesystem { fs_type } => write!(f, "carries a {fs_type} filesystem"),
            Self::LvmLabel => f.write_str("carries an LVM physical volume label"),
            Self::LuksHeader => f.write_str("carries a LUKS header"),
            Self::Holders { holders } => write!(f, "in use by {}", holders.join(", ")),
        }
    }
}

fn signature_hazard(fs: &str) -> Hazard {
    match fs {
        FS_LVM2_MEMBER => Hazard::LvmLabel,
        FS_CRYPTO_LUKS => Hazard::LuksHeader,
        "swap" => Hazard::Swap,
        other => Hazard::Filesystem {
            fs_type: other.to_owned(),
        },
    }
}

/// Every reason the disk is not free (empty: a blank disk).
pub fn hazards(dev: &BlockDevice) -> Vec<Hazard> {
    let mut out = Vec::new();
    let mut push = |h: Hazard| {
        if !out.contains(&h) {
            out.push(h);
        }
    };
    for mp in &dev.mount_points {
        match mp.as_str() {
            "/" => push(Hazard::RootFilesystem),
            "/boot" | "/boot/efi" => push(Hazard::Boot),
            _ => push(Hazard::Mounted {
                mount_point: mp.clone(),
            }),
        }
    }
    if dev.swap {
        push(Hazard::Swap);
    }
    if let Some(pt) = dev.partition_table.as_deref().filter(|s| !s.is_empty()) {
        push(Hazard::PartitionTable {
            kind: pt.to_owned(),
        });
    }
    if !dev.partitions.is_empty() {
        push(Hazard::Partitions {
            count: dev.partitions.len(),
        });
    }
    if let Some(fs) = dev.fs_type.as_deref().filter(|s| !s.is_empty()) {
        push(signature_hazard(fs));
    }
    for p in &dev.partitions {
        if let Some(fs) = p.fs_type.as_deref().filter(|s| !s.is_empty()) {
            push(signature_hazard(fs));
        }
    }
    if !dev.holders.is_empty() {
        push(Hazard::Holders {
            holders: dev.holders.clone(),
        });
    }
    out
}

/// The hazards that make a disk the system disk, reserved as soon as it is seen.
pub fn is_system_disk(hazards: &[Hazard]) -> bool {
    hazards
        .iter()
        .any(|h| matches!(h, Hazard::RootFilesystem | Hazard::Boot | Hazard::Swap))
}

/// One entry of a LocalDisk's `spec.partitionInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionEntry {
    pub path: String,
    pub has_file_system: bool,
    pub fs_type: String,
    pub mount_point: String,
}

/// `spec.partitionInfo`: each partition, and the disk itself when it carries a partition
/// table or a signature (so that `partitioned` is true for those too, as in the original).
pub fn partition_info(dev: &BlockDevice) -> Vec<PartitionEntry> {
    let mut out = Vec::new();
    let whole_sig = dev.fs_type.as_deref().filter(|s| !s.is_empty());
    let whole_pt = dev.partition_table.as_deref().filter(|s| !s.is_empty());
    if whole_sig.is_some() || whole_pt.is_some() {
        out.push(PartitionEntry {
            path: dev.dev_path.clone(),
            has_file_system: whole_sig.is_some(),
            fs_type: whole_sig.unwrap_or("").to_owned(),
            mount_point: String::new(),
        });
    }
    for p in &dev.partitions {
        let fs = p.fs_type.as_deref().filter(|s| !s.is_empty());
        out.push(PartitionEntry {
            path: p.path.clone(),
            has_file_system: fs.is_some(),
            fs_type: fs.unwrap_or("").to_owned(),
            mount_point: p.mount_point.clone().unwrap_or_default(),
        });
    }
    out
}

/// Next claim phase of a LocalDisk (`status.claimState`), the original's state machine:
/// `""` → `Pending`; `Pending`/`Available` → `Bound` if partitioned or claimed, else
/// `Available`; `Bound` → `Available` once released and not partitioned. Inactive disks keep
/// their phase. `Reserved` (a phase only older objects carry) is treated like `Pending`.
pub fn next_claim_state(
    current: DiskClaimState,
    partitioned: bool,
    claimed: bool,
) -> DiskClaimState {
    use DiskClaimState as S;
    match current {
        S::Unknown => S::Pending,
        S::Pending | S::Available | S::Reserved => {
            if partitioned || claimed {
                S::Bound
            } else {
                S::Available
            }
        }
        S::Bound => {
            if !claimed && !partitioned {
                S::Available
            } else {
                S::Bound
            }
        }
    }
}

/// The fields of a LocalDisk that the claim filter looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskView {
    pub name: String,
    pub node: String,
    pub state: LocalDiskState,
    pub claim_state: DiskClaimState,
    pub reserved: bool,
    pub owner: DiskOwner,
    pub capacity: i64,
    pub disk_type: DiskType,
    pub dev_type: String,
    pub device_path: String,
    pub has_partitions: bool,
    /// Name of the claim already holding this disk, if any.
    pub claimed_by: Option<String>,
}

/// The selection of a LocalDiskClaim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimCriteria {
    pub node: String,
    pub owner: DiskOwner,
    pub disk_type: Option<DiskType>,
    /// Minimum capacity in bytes (0: any).
    pub min_capacity: i64,
    pub names: Vec<String>,
    pub device_paths: Vec<String>,
}

/// Why a disk does not match a claim; `reason()` is the original's event reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    Inactive,
    AlreadyHasPartition,
    UnAvailable { phase: DiskClaimState },
    ClaimedByOther { claim: String },
    OwnerUnMatch { owner: DiskOwner },
    InsufficientCapacity { capacity: i64, required: i64 },
    TypeUnMatch { disk_type: DiskType },
    NameUnMatch,
    DevPathUnMatch { device_path: String },
    HasReserved,
    NameFormatUnMatch,
    NodeUnMatch { node: String },
    IsNotBlockDevice { dev_type: String },
}

impl RejectReason {
    /// The machine-readable reason (`LocalDisk...`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Inactive => "LocalDiskInactive",
            Self::AlreadyHasPartition => "LocalDiskAlreadyHasPartition",
            Self::UnAvailable { .. } => "LocalDiskUnAvailable",
            Self::ClaimedByOther { .. } => "LocalDiskClaimedByOther",
            Self::OwnerUnMatch { .. } => "LocalDiskOwnerUnMatch",
            Self::InsufficientCapacity { .. } => "LocalDiskInsufficientCapacity",
            Self::TypeUnMatch { .. } => "LocalDiskTypeUnMatch",
            Self::NameUnMatch => "LocalDiskNameUnMatch",
            Self::DevPathUnMatch { .. } => "LocalDiskDevPathUnMatch",
            Self::HasReserved => "LocalDiskHasReserved",
            Self::NameFormatUnMatch => "LocalDiskNameFormatUnMatch",
            Self::NodeUnMatch { .. } => "LocalDiskNodeUnMatch",
            Self::IsNotBlockDevice { .. } => "LocalDiskIsNotBlockDevice",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let detail = match self {
            Self::Inactive => "disk is not present (Inactive)".to_owned(),
            Self::AlreadyHasPartition => "disk has partitions or signatures".to_owned(),
            Self::UnAvailable { phase } => format!("phase is {:?}, not Available", phase.as_str()),
            Self::ClaimedByOther { claim } => format!("already claimed by {claim}"),
            Self::OwnerUnMatch { owner } => format!("owner is {:?}", owner.as_str()),
            Self::InsufficientCapacity { capacity, required } => {
                format!("capacity {capacity} < required {required}")
            }
            Self::TypeUnMatch { disk_type } => format!("type is {disk_type}"),
            Self::NameUnMatch => "name not in localDiskNames".to_owned(),
            Self::DevPathUnMatch { device_path } => {
                format!("devicePath {device_path:?} not in devicePaths")
            }
            Self::HasReserved => "disk is reserved".to_owned(),
            Self::NameFormatUnMatch => format!("name does not start with {LOCAL_DISK_NAME_PREFIX}"),
            Self::NodeUnMatch { node } => format!("disk is on node {node:?}"),
            Self::IsNotBlockDevice { dev_type } => format!("devType is {dev_type:?}, not disk"),
        };
        write!(f, "{}: {detail}", self.reason())
    }
}

/// Every reason `disk` does not satisfy `claim` (empty: it matches). A disk whose owner is
/// `""` matches only `local-storage` claims. A disk already bound to `claim_name` matches
/// (so re-running a claim is idempotent).
pub fn match_claim(claim: &ClaimCriteria, claim_name: &str, disk: &DiskView) -> Vec<RejectReason> {
    let mut r = Vec::new();
    let ours = disk.claimed_by.as_deref() == Some(claim_name);
    if disk.node != claim.node {
        r.push(RejectReason::NodeUnMatch {
            node: disk.node.clone(),
        });
    }
    if disk.state != LocalDiskState::Active {
        r.push(RejectReason::Inactive);
    }
    if let Some(other) = disk.claimed_by.as_deref().filter(|c| *c != claim_name) {
        r.push(RejectReason::ClaimedByOther {
            claim: other.to_owned(),
        });
    }
    if !ours && disk.claim_state != DiskClaimState::Available {
        r.push(RejectReason::UnAvailable {
            phase: disk.claim_state,
        });
    }
    if disk.reserved {
        r.push(RejectReason::HasReserved);
    }
    let owner_ok = match disk.owner {
        DiskOwner::Unknown => matches!(claim.owner, DiskOwner::LocalStorage | DiskOwner::Unknown),
        o => {
            o == claim.owner || (claim.owner == DiskOwner::Unknown && o == DiskOwner::LocalStorage)
        }
    };
    if !owner_ok {
        r.push(RejectReason::OwnerUnMatch { owner: disk.owner });
    }
    if disk.capacity < claim.min_capacity {
        r.push(RejectReason::InsufficientCapacity {
            capacity: disk.capacity,
            required: claim.min_capacity,
        });
    }
    if let Some(t) = claim.disk_type
        && t != disk.disk_type
    {
        r.push(RejectReason::TypeUnMatch {
            disk_type: disk.disk_type,
        });
    }
    if !claim.names.is_empty() && !claim.names.contains(&disk.name) {
        r.push(RejectReason::NameUnMatch);
    }
    if !claim.device_paths.is_empty() && !claim.device_paths.contains(&disk.device_path) {
        r.push(RejectReason::DevPathUnMatch {
            device_path: disk.device_path.clone(),
        });
    }
    // loop disks exist only when discovery was asked to include them (tests, demo)
    if disk.dev_type != "disk" && disk.dev_type != "loop" {
        r.push(RejectReason::IsNotBlockDevice {
            dev_type: disk.dev_type.clone(),
        });
    }
    if disk.has_partitions {
        r.push(RejectReason::AlreadyHasPartition);
    }
    if !disk.name.starts_with(LOCAL_DISK_NAME_PREFIX) {
        r.push(RejectReason::NameFormatUnMatch);
    }
    r
}

/// A LocalDiskAction rule (`spec.rule`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionRule {
    pub min_capacity: i64,
    pub max_capacity: i64,
    /// Shell-style glob (`*`, `?`, `[a-z]`, `[!x]`); `*` does not match `/`.
    pub device_path: String,
}

impl ActionRule {
    /// The original's semantics (module docs): an empty rule matches nothing.
    pub fn matches(&self, capacity: i64, device_path: &str) -> bool {
        if self.min_capacity == 0 && self.max_capacity == 0 && self.device_path.is_empty() {
            return false;
        }
        (self.min_capacity == 0 || capacity < self.min_capacity)
            && (self.max_capacity == 0 || capacity > self.max_capacity)
            && (self.device_path.is_empty() || glob_match(&self.device_path, device_path))
    }
}

/// Path glob like Go's `filepath.Match`: `*` any run of non-`/` characters, `?` one non-`/`
/// character, `[...]` a class with ranges and `!`/`^` negation, `\` escapes. A malformed
/// pattern matches nothing.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t).unwrap_or(false)
}

fn glob_at(p: &[char], t: &[char]) -> Option<bool> {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' if ti < t.len() && t[ti] != '/' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' if ti < t.len() => {
                    let (ok, next) = class_match(p, pi, t[ti])?;
                    if ok && t[ti] != '/' {
                        pi = next;
                        ti += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && ti < t.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c != '?' && c != '[' && c != '\\' && ti < t.len() && c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        } else if ti == t.len() {
            return Some(true);
        }
        // mismatch: backtrack to the last star if it can absorb one more non-'/' char
        match star {
            Some((sp, st)) if st < t.len() && t[st] != '/' => {
                star = Some((sp, st + 1));
                pi = sp + 1;
                ti = st + 1;
            }
            _ => return Some(false),
        }
    }
}

/// Match `c` against the class starting at `p[start] == '['`; returns (matched, index after
/// `]`), `None` if the class is unterminated.
fn class_match(p: &[char], start: usize, c: char) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && (p[i] == '!' || p[i] == '^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        let mut lo = p[i];
        if lo == '\\' {
            i += 1;
            lo = *p.get(i)?;
        }
        let mut hi = lo;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            hi = p[i + 2];
            i += 2;
        }
        if lo <= c && c <= hi {
            matched = true;
        }
        i += 1;
    }
    None
}

/// A disk of a raw-disk pool, as the LocalDiskNode status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDiskInput {
    pub local_disk_name: String,
    pub dev_path: String,
    pub capacity: i64,
    pub disk_type: DiskType,
}

/// A raw-disk volume (LocalDiskVolume) placed on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolVolumeInput {
    pub name: String,
    pub local_disk_name: String,
    pub capacity: i64,
}

/// One disk in a computed pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDiskSummary {
    pub dev_path: String,
    pub capacity: i64,
    pub disk_type: DiskType,
    pub state: DiskState,
}

/// A computed raw-disk pool `LocalDisk_Pool<CLASS>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSummary {
    pub class: PoolClass,
    pub name: &'static str,
    pub total_capacity: i64,
    pub used_capacity: i64,
    pub free_capacity: i64,
    /// One volume per disk: the number of disks.
    pub total_volume_count: i64,
    pub used_volume_count: i64,
    pub free_volume_count: i64,
    /// Largest volume that fits: the largest free disk.
    pub volume_capacity_limit: i64,
    pub disks: Vec<PoolDiskSummary>,
    pub volumes: Vec<String>,
}

/// Node-wide totals of the raw-disk pools (`status.totalDisk` etc.).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTotals {
    pub total_disk: i64,
    pub free_disk: i64,
    pub total_capacity: i64,
    pub free_capacity: i64,
}

/// Raw-disk pool maths: each disk of a known type joins the pool of its class; a disk with
/// a volume is `InUse`, else `Available`. Used capacity is the sum of volume capacities,
/// free capacity the sum of free disks' capacities.
pub fn disk_pools(
    disks: &[PoolDiskInput],
    volumes: &[PoolVolumeInput],
) -> (BTreeMap<PoolClass, PoolSummary>, NodeTotals) {
    let mut pools: BTreeMap<PoolClass, PoolSummary> = BTreeMap::new();
    let mut totals = NodeTotals::default();
    let mut sorted: Vec<&PoolDiskInput> = disks.iter().collect();
    sorted.sort_by(|a, b| {
        a.dev_path
            .cmp(&b.dev_path)
            .then(a.local_disk_name.cmp(&b.local_disk_name))
    });
    for d in sorted {
        let Some(class) = d.disk_type.pool_class() else {
            continue;
        };
        let pool = pools.entry(class).or_insert_with(|| PoolSummary {
            class,
            name: class.disk_pool_name(),
            total_capacity: 0,
            used_capacity: 0,
            free_capacity: 0,
            total_volume_count: 0,
            used_volume_count: 0,
            free_volume_count: 0,
            volume_capacity_limit: 0,
            disks: Vec::new(),
            volumes: Vec::new(),
        });
        let vols: Vec<&PoolVolumeInput> = volumes
            .iter()
            .filter(|v| v.local_disk_name == d.local_disk_name)
            .collect();
        let in_use = !vols.is_empty();
        pool.total_capacity += d.capacity;
        pool.total_volume_count += 1;
        totals.total_disk += 1;
        totals.total_capacity += d.capacity;
        if in_use {
            pool.used_volume_count += 1;
            for v in vols {
                pool.used_capacity += v.capacity;
                pool.volumes.push(v.name.clone());
            }
        } else {
            pool.free_capacity += d.capacity;
            pool.free_volume_count += 1;
            pool.volume_capacity_limit = pool.volume_capacity_limit.max(d.capacity);
            totals.free_disk += 1;
            totals.free_capacity += d.capacity;
        }
        pool.disks.push(PoolDiskSummary {
            dev_path: d.dev_path.clone(),
            capacity: d.capacity,
            disk_type: d.disk_type,
            state: if in_use {
                DiskState::InUse
            } else {
                DiskState::Available
            },
        });
    }
    for p in pools.values_mut() {
        p.volumes.sort();
    }
    (pools, totals)
}

/// `Ready` when the node's heartbeat is younger than `timeout`, else `Offline`.
pub fn heartbeat_state(age_secs: i64, timeout_secs: i64) -> crate::types::NodeState {
    if age_secs <= timeout_secs {
        crate::types::NodeState::Ready
    } else {
        crate::types::NodeState::Offline
    }
}

#[cfg(test)]
mod tests;
