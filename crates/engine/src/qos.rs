//! IO limits (QoS) for a volume's block device, through the cgroup of the processes using it.
//!
//! The kernel throttles IO per (cgroup, device):
//! - **cgroup v1 blkio**: one file per limit in the blkio hierarchy,
//!   `blkio.throttle.{read,write}_{bps,iops}_device`; writing `"<maj>:<min> <value>"` sets the
//!   limit, value `0` removes it.
//! - **cgroup v2 io**: one file `io.max`; writing
//!   `"<maj>:<min> rbps=<n|max> wbps=<n|max> riops=<n|max> wiops=<n|max>"` sets all four, `max`
//!   means unlimited.
//!
//! A limit applies to the processes inside the configured cgroup (and its children): in
//! Kubernetes that is the `kubepods` cgroup (every pod), in standalone mode or in a test any
//! cgroup the IO process is moved into. [`detect_version`] picks v1 when the blkio controller
//! is mounted (hybrid hosts included), else v2.
//!
//! An empty [`QosLimits`] removes every limit of the device: a volume whose QoS was cleared
//! runs unthrottled again.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// Which cgroup interface throttles IO on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupVersion::V1 => "cgroup v1 blkio",
            CgroupVersion::V2 => "cgroup v2 io.max",
        })
    }
}

/// Per-device limits; `None` (or 0) = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QosLimits {
    pub read_bps: Option<u64>,
    pub write_bps: Option<u64>,
    pub read_iops: Option<u64>,
    pub write_iops: Option<u64>,
}

impl QosLimits {
    /// The same IOPS and throughput limit for reads and writes, as the StorageClass
    /// parameters `provision-iops-on-creation` / `provision-throughput-on-creation` and
    /// `spec.volumeQoS` {iops, throughput} describe it.
    pub fn symmetric(iops: Option<u64>, throughput_bps: Option<u64>) -> Self {
        let nz = |v: Option<u64>| v.filter(|v| *v > 0);
        QosLimits {
            read_bps: nz(throughput_bps),
            write_bps: nz(throughput_bps),
            read_iops: nz(iops),
            write_iops: nz(iops),
        }
    }

    /// No limit at all.
    pub fn is_empty(&self) -> bool {
        self.normalized() == QosLimits::default()
    }

    /// Zero limits turned into `None`.
    pub fn normalized(&self) -> Self {
        let nz = |v: Option<u64>| v.filter(|v| *v > 0);
        QosLimits {
            read_bps: nz(self.read_bps),
            write_bps: nz(self.write_bps),
            read_iops: nz(self.read_iops),
            write_iops: nz(self.write_iops),
        }
    }
}

/// Picks one limit out of [`QosLimits`].
type LimitField = fn(&QosLimits) -> Option<u64>;

/// The v1 files and the limit each one carries.
const V1_FILES: [(&str, LimitField); 4] = [
    ("blkio.throttle.read_bps_device", |l| l.read_bps),
    ("blkio.throttle.write_bps_device", |l| l.write_bps),
    ("blkio.throttle.read_iops_device", |l| l.read_iops),
    ("blkio.throttle.write_iops_device", |l| l.write_iops),
];

/// The line written to a v1 throttle file: `"<maj>:<min> <value>"`, 0 = remove.
pub fn v1_line(dev: (u64, u64), value: Option<u64>) -> String {
    format!("{}:{} {}", dev.0, dev.1, value.unwrap_or(0))
}

/// The line written to v2 `io.max`.
pub fn v2_line(dev: (u64, u64), l: &QosLimits) -> String {
    let v = |x: Option<u64>| match x.filter(|x| *x > 0) {
        Some(n) => n.to_string(),
        None => "max".to_owned(),
    };
    format!(
        "{}:{} rbps={} wbps={} riops={} wiops={}",
        dev.0,
        dev.1,
        v(l.read_bps),
        v(l.write_bps),
        v(l.read_iops),
        v(l.write_iops)
    )
}

/// Read the limits of `dev` from v2 `io.max` content.
pub fn parse_v2(content: &str, dev: (u64, u64)) -> QosLimits {
    let key = format!("{}:{}", dev.0, dev.1);
    let mut l = QosLimits::default();
    for line in content.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some(key.as_str()) {
            continue;
        }
        for kv in parts {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let n = v.parse::<u64>().ok();
            match k {
                "rbps" => l.read_bps = n,
                "wbps" => l.write_bps = n,
                "riops" => l.read_iops = n,
                "wiops" => l.write_iops = n,
                _ => {}
            }
        }
    }
    l
}

/// Read the value for `dev` from v1 throttle file content (`"7:3 2097152"` lines).
pub fn parse_v1(content: &str, dev: (u64, u64)) -> Option<u64> {
    let key = format!("{}:{}", dev.0, dev.1);
    content.lines().find_map(|line| {
        let mut p = line.split_whitespace();
        (p.next() == Some(key.as_str()))
            .then(|| p.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

/// v1 if the blkio controller is mounted under `cgroup_root` (normally `/sys/fs/cgroup`),
/// else v2 if the root is a unified hierarchy (`cgroup.controllers` exists, possibly under
/// `unified/`).
pub fn detect_version(cgroup_root: &Path) -> Result<CgroupVersion> {
    if cgroup_root
        .join("blkio/blkio.throttle.read_bps_device")
        .exists()
    {
        return Ok(CgroupVersion::V1);
    }
    if cgroup_root.join("cgroup.controllers").exists() {
        return Ok(CgroupVersion::V2);
    }
    Err(Error::Unsupported {
        op: "detect cgroup version",
        engine: crate::types::EngineKind::File,
        detail: Some(format!(
            "no blkio controller nor cgroup v2 hierarchy under {}",
            cgroup_root.display()
        )),
    })
}

/// Device number of a block device node (symlinks followed).
pub fn block_device_number(dev: &Path) -> Result<(u64, u64)> {
    let op = "device number";
    let md = std::fs::metadata(dev)
        .map_err(|e| Error::io(op, Context::device(dev.display()), dev, e))?;
    if !md.file_type().is_block_device() {
        return Err(Error::InvalidArgument {
            op,
            ctx: Context::device(dev.display()),
            message: "not a block device".into(),
        });
    }
    let r = md.rdev();
    Ok((nix::sys::stat::major(r), nix::sys::stat::minor(r)))
}

/// Applies IO limits in one cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttler {
    pub version: CgroupVersion,
    /// The cgroup directory whose processes are limited: for v1 a directory of the blkio
    /// hierarchy (`/sys/fs/cgroup/blkio/kubepods`), for v2 a unified cgroup
    /// (`/sys/fs/cgroup/kubepods.slice`).
    pub dir: PathBuf,
}

impl Throttler {
    pub fn new(version: CgroupVersion, dir: impl Into<PathBuf>) -> Self {
        Throttler {
            version,
            dir: dir.into(),
        }
    }

    /// The cgroup of every pod on a Kubernetes node: `blkio/kubepods` (v1), or
    /// `kubepods.slice` / `kubepods` (v2, systemd or cgroupfs driver) under `cgroup_root`.
    pub fn kubepods(cgroup_root: &Path) -> Result<Self> {
        let version = detect_version(cgroup_root)?;
        let dir = match version {
            CgroupVersion::V1 => {
                let slice = cgroup_root.join("blkio/kubepods.slice");
                if slice.exists() {
                    slice
                } else {
                    cgroup_root.join("blkio/kubepods")
                }
            }
            CgroupVersion::V2 => {
                let slice = cgroup_root.join("kubepods.slice");
                if slice.exists() {
                    slice
                } else {
                    cgroup_root.join("kubepods")
                }
            }
        };
        Ok(Throttler { version, dir })
    }

    /// A named cgroup directly under the hierarchy root (created if absent), e.g. the cgroup
    /// a standalone server or a test moves its IO processes into.
    pub fn named(cgroup_root: &Path, name: &str) -> Result<Self> {
        hwameistor_core::names::validate("cgroup", name)?;
        let version = detect_version(cgroup_root)?;
        let dir = match version {
            CgroupVersion::V1 => cgroup_root.join("blkio").join(name),
            CgroupVersion::V2 => cgroup_root.join(name),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("create cgroup", Context::device(dir.display()), &dir, e))?;
        Ok(Throttler { version, dir })
    }

    fn write(&self, file: &str, line: &str, dev: &Path) -> Result<()> {
        let path = self.dir.join(file);
        std::fs::write(&path, line.as_bytes()).map_err(|e| {
            Error::io(
                "set io limit",
                Context::device(dev.display()),
                path.clone(),
                std::io::Error::new(e.kind(), format!("writing {line:?}: {e}")),
            )
        })
    }

    /// Set the limits of `dev` (an empty `limits` removes them). Idempotent.
    pub fn apply(&self, dev: &Path, limits: &QosLimits) -> Result<()> {
        let num = block_device_number(dev)?;
        let limits = limits.normalized();
        match self.version {
            CgroupVersion::V1 => {
                for (file, get) in V1_FILES {
                    let want = get(&limits);
                    // Writing 0 for a device without a rule fails on some kernels: skip it.
                    if want.is_none() && self.read_v1(file, num).is_none() {
                        continue;
                    }
                    self.write(file, &v1_line(num, want), dev)?;
                }
                Ok(())
            }
            CgroupVersion::V2 => {
                self.enable_io_controller();
                self.write("io.max", &v2_line(num, &limits), dev)
            }
        }
    }

    fn read_v1(&self, file: &str, dev: (u64, u64)) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|c| parse_v1(&c, dev))
    }

    /// The limits currently set for `dev`.
    pub fn current(&self, dev: &Path) -> Result<QosLimits> {
        let num = block_device_number(dev)?;
        Ok(match self.version {
            CgroupVersion::V1 => QosLimits {
                read_bps: self.read_v1(V1_FILES[0].0, num),
                write_bps: self.read_v1(V1_FILES[1].0, num),
                read_iops: self.read_v1(V1_FILES[2].0, num),
                write_iops: self.read_v1(V1_FILES[3].0, num),
            },
            CgroupVersion::V2 => {
                let path = self.dir.join("io.max");
                let c = std::fs::read_to_string(&path).map_err(|e| {
                    Error::io("read io limit", Context::device(dev.display()), path, e)
                })?;
                parse_v2(&c, num)
            }
        }
        .normalized())
    }

    /// v2: `io.max` exists only when the parent delegates the io controller; ask for it
    /// (best effort: it fails harmlessly when the parent itself lacks it).
    fn enable_io_controller(&self) {
        if self.dir.join("io.max").exists() {
            return;
        }
        if let Some(parent) = self.dir.parent() {
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), b"+io");
        }
    }

    /// Move process `pid` into this cgroup (tests and standalone IO helpers).
    pub fn add_process(&self, pid: u32) -> Result<()> {
        let path = self.dir.join("cgroup.procs");
        std::fs::write(&path, pid.to_string())
            .map_err(|e| Error::io("join cgroup", Context::default(), path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let l = QosLimits::symmetric(Some(100), Some(2 * 1024 * 1024));
        assert_eq!(
            v2_line((7, 3), &l),
            "7:3 rbps=2097152 wbps=2097152 riops=100 wiops=100"
        );
        assert_eq!(
            v2_line((8, 16), &QosLimits::default()),
            "8:16 rbps=max wbps=max riops=max wiops=max"
        );
        assert_eq!(v1_line((7, 3), Some(4096)), "7:3 4096");
        assert_eq!(v1_line((7, 3), None), "7:3 0");
    }

    #[test]
    fn symmetric_and_empty() {
        assert!(QosLimits::symmetric(None, None).is_empty());
        assert!(QosLimits::symmetric(Some(0), Some(0)).is_empty());
        let l = QosLimits::symmetric(None, Some(10));
        assert!(!l.is_empty());
        assert_eq!(
            (l.read_bps, l.write_bps, l.read_iops),
            (Some(10), Some(10), None)
        );
    }

    #[test]
    fn parses_current_limits() {
        let v2 =
            "8:16 rbps=2097152 wbps=max riops=max wiops=120\n7:3 rbps=1 wbps=2 riops=3 wiops=4\n";
        let l = parse_v2(v2, (8, 16));
        assert_eq!(l.read_bps, Some(2097152));
        assert_eq!(l.write_bps, None);
        assert_eq!(l.write_iops, Some(120));
        assert_eq!(parse_v2(v2, (9, 9)), QosLimits::default());
        assert_eq!(parse_v1("7:3 2097152\n7:4 5\n", (7, 4)), Some(5));
        assert_eq!(parse_v1("", (7, 4)), None);
    }

    #[test]
    fn detects_version_from_the_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        assert!(detect_version(dir.path()).is_err());
        std::fs::write(dir.path().join("cgroup.controllers"), "io memory\n").unwrap();
        assert_eq!(detect_version(dir.path()).unwrap(), CgroupVersion::V2);
        std::fs::create_dir_all(dir.path().join("blkio")).unwrap();
        std::fs::write(dir.path().join("blkio/blkio.throttle.read_bps_device"), "").unwrap();
        assert_eq!(detect_version(dir.path()).unwrap(), CgroupVersion::V1);
    }

    #[test]
    fn kubepods_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "io\n").unwrap();
        let t = Throttler::kubepods(dir.path()).unwrap();
        assert_eq!(t.dir, dir.path().join("kubepods"));
        std::fs::create_dir_all(dir.path().join("kubepods.slice")).unwrap();
        let t = Throttler::kubepods(dir.path()).unwrap();
        assert_eq!(t.dir, dir.path().join("kubepods.slice"));
        assert_eq!(t.version, CgroupVersion::V2);
    }

    #[test]
    fn refuses_non_block_devices() {
        let t = Throttler::new(CgroupVersion::V2, "/nonexistent");
        assert!(matches!(
            t.apply(Path::new("/dev/null"), &QosLimits::default()),
            Err(Error::InvalidArgument { .. })
        ));
    }
}
