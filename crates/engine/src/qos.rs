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
//! A [`Throttler`] has a [`Scope`]:
//! - [`Scope::Cgroup`]: the limit applies to the processes inside one cgroup (and its
//!   children): in Kubernetes that is the `kubepods` cgroup (every pod), in a test any cgroup
//!   the IO process is moved into.
//! - [`Scope::Host`] (standalone mode, [`Throttler::host`]): the limit applies to every process
//!   of the host that does IO on the device, without moving anything into a cgroup.
//!   - v1: the limit is written into the root blkio cgroup **and every cgroup below it**. The
//!     v1 blk-throttle is *flat* outside the default hierarchy (the kernel treats every blkio
//!     cgroup as a separate group right below the root; a limit on the root does not reach a
//!     process in a child cgroup), so each cgroup needs its own rule.
//!   - v2: the root cgroup has no `io.max`, so the limit is written into every top-level child
//!     cgroup (`system.slice`, `user.slice`, ...), after enabling the io controller in the
//!     root's `cgroup.subtree_control`; v2 throttling is hierarchical below each of them.
//!     Processes that live in the root cgroup itself (mostly kernel threads) are not limited.
//!
//!   Semantics in both cases: **the limit is per cgroup**, not one budget for the whole host:
//!   two processes in different (top-level) cgroups each get the full limit. Cgroups created
//!   after a limit was set are covered the next time the limit is applied: [`Throttler::current`]
//!   reports a limit only when every target cgroup carries it, so the node agent's periodic
//!   replica resync sees a mismatch and re-applies.
//!
//! [`detect_version`] picks v1 when the blkio controller is mounted (hybrid hosts included),
//! else v2.
//!
//! An empty [`QosLimits`] removes every limit of the device (in every target cgroup): a volume
//! whose QoS was cleared runs unthrottled again.

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

/// How far a [`Throttler`]'s limits reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// The processes of `dir` and its descendants (hierarchically on v2; on v1 only `dir`).
    #[default]
    Cgroup,
    /// Every process of the host: `dir` is the hierarchy root; v1 writes into the root and
    /// every cgroup below it, v2 into every top-level child cgroup (see the module doc).
    Host,
}

/// Applies IO limits in one cgroup, or host-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttler {
    pub version: CgroupVersion,
    /// The cgroup directory whose processes are limited: for v1 a directory of the blkio
    /// hierarchy (`/sys/fs/cgroup/blkio/kubepods`), for v2 a unified cgroup
    /// (`/sys/fs/cgroup/kubepods.slice`). With [`Scope::Host`], the hierarchy root
    /// (`/sys/fs/cgroup/blkio` or `/sys/fs/cgroup`).
    pub dir: PathBuf,
    pub scope: Scope,
}

impl Throttler {
    pub fn new(version: CgroupVersion, dir: impl Into<PathBuf>) -> Self {
        Throttler {
            version,
            dir: dir.into(),
            scope: Scope::Cgroup,
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
        Ok(Throttler::new(version, dir))
    }

    /// Every process of the host ([`Scope::Host`]; standalone mode): the blkio root (v1) or
    /// the unified root (v2) under `cgroup_root` (normally `/sys/fs/cgroup`).
    pub fn host(cgroup_root: &Path) -> Result<Self> {
        let version = detect_version(cgroup_root)?;
        let dir = match version {
            CgroupVersion::V1 => cgroup_root.join("blkio"),
            CgroupVersion::V2 => cgroup_root.to_path_buf(),
        };
        Ok(Throttler {
            version,
            dir,
            scope: Scope::Host,
        })
    }

    /// A named cgroup directly under the hierarchy root (created if absent), e.g. the cgroup
    /// a test moves its IO processes into.
    pub fn named(cgroup_root: &Path, name: &str) -> Result<Self> {
        hwameistor_core::names::validate("cgroup", name)?;
        let version = detect_version(cgroup_root)?;
        let dir = match version {
            CgroupVersion::V1 => cgroup_root.join("blkio").join(name),
            CgroupVersion::V2 => cgroup_root.join(name),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("create cgroup", Context::device(dir.display()), &dir, e))?;
        Ok(Throttler::new(version, dir))
    }

    /// The cgroup directories the limits are written into (see [`Scope`]).
    pub fn targets(&self) -> Vec<PathBuf> {
        match (self.scope, self.version) {
            (Scope::Cgroup, _) => vec![self.dir.clone()],
            (Scope::Host, CgroupVersion::V1) => {
                let mut out = vec![self.dir.clone()];
                let mut i = 0;
                while i < out.len() {
                    let mut children = child_cgroups(&out[i]);
                    out.append(&mut children);
                    i += 1;
                }
                out
            }
            (Scope::Host, CgroupVersion::V2) => child_cgroups(&self.dir),
        }
    }

    /// Set the limits of `dev` in every target cgroup (an empty `limits` removes them).
    /// Idempotent. A cgroup that disappears meanwhile is skipped.
    pub fn apply(&self, dev: &Path, limits: &QosLimits) -> Result<()> {
        self.apply_num(dev, block_device_number(dev)?, limits)
    }

    fn apply_num(&self, dev: &Path, num: (u64, u64), limits: &QosLimits) -> Result<()> {
        let limits = limits.normalized();
        if self.scope == Scope::Host && self.version == CgroupVersion::V2 {
            // io.max exists in the children only when the root delegates the io controller
            let _ = std::fs::write(self.dir.join("cgroup.subtree_control"), b"+io");
        }
        for dir in self.targets() {
            match apply_in(&dir, self.version, dev, num, &limits) {
                Err(e) if self.scope == Scope::Host && !dir.exists() => {
                    tracing::debug!(cgroup = %dir.display(), error = %e, "cgroup vanished");
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// The limits currently set for `dev`. With several target cgroups, a limit counts only
    /// when every target carries the same value (so a new cgroup without the rule makes the
    /// result differ from what was applied).
    pub fn current(&self, dev: &Path) -> Result<QosLimits> {
        self.current_num(dev, block_device_number(dev)?)
    }

    fn current_num(&self, dev: &Path, num: (u64, u64)) -> Result<QosLimits> {
        let mut out: Option<QosLimits> = None;
        for dir in self.targets() {
            let l = match current_in(&dir, self.version, dev, num) {
                Ok(l) => l,
                Err(_) if self.scope == Scope::Host && !dir.exists() => continue,
                Err(e) => return Err(e),
            };
            out = Some(match out {
                None => l,
                Some(o) => {
                    let same = |a: Option<u64>, b: Option<u64>| (a == b).then_some(a).flatten();
                    QosLimits {
                        read_bps: same(o.read_bps, l.read_bps),
                        write_bps: same(o.write_bps, l.write_bps),
                        read_iops: same(o.read_iops, l.read_iops),
                        write_iops: same(o.write_iops, l.write_iops),
                    }
                }
            });
        }
        Ok(out.unwrap_or_default())
    }

    /// Move process `pid` into this cgroup (tests and standalone IO helpers).
    pub fn add_process(&self, pid: u32) -> Result<()> {
        let path = self.dir.join("cgroup.procs");
        std::fs::write(&path, pid.to_string())
            .map_err(|e| Error::io("join cgroup", Context::default(), path, e))
    }
}

/// Child cgroup directories of `dir` (directories holding `cgroup.procs`).
fn child_cgroups(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect();
    out.sort();
    out
}

fn write_limit(dir: &Path, file: &str, line: &str, dev: &Path) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, line.as_bytes()).map_err(|e| {
        Error::io(
            "set io limit",
            Context::device(dev.display()),
            path.clone(),
            std::io::Error::new(e.kind(), format!("writing {line:?}: {e}")),
        )
    })
}

fn read_v1(dir: &Path, file: &str, dev: (u64, u64)) -> Option<u64> {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|c| parse_v1(&c, dev))
}

/// Set the limits of device `num` in one cgroup directory.
fn apply_in(
    dir: &Path,
    version: CgroupVersion,
    dev: &Path,
    num: (u64, u64),
    limits: &QosLimits,
) -> Result<()> {
    match version {
        CgroupVersion::V1 => {
            for (file, get) in V1_FILES {
                let want = get(limits);
                let have = read_v1(dir, file, num);
                // Writing 0 for a device without a rule fails on some kernels: skip it.
                if want == have || (want.is_none() && have.is_none()) {
                    continue;
                }
                write_limit(dir, file, &v1_line(num, want), dev)?;
            }
            Ok(())
        }
        CgroupVersion::V2 => {
            enable_io_controller(dir);
            if limits.is_empty() && !dir.join("io.max").exists() {
                return Ok(());
            }
            write_limit(dir, "io.max", &v2_line(num, limits), dev)
        }
    }
}

/// The limits of device `num` in one cgroup directory.
fn current_in(
    dir: &Path,
    version: CgroupVersion,
    dev: &Path,
    num: (u64, u64),
) -> Result<QosLimits> {
    Ok(match version {
        CgroupVersion::V1 => {
            if !dir.exists() {
                return Err(Error::io(
                    "read io limit",
                    Context::device(dev.display()),
                    dir.to_path_buf(),
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            QosLimits {
                read_bps: read_v1(dir, V1_FILES[0].0, num),
                write_bps: read_v1(dir, V1_FILES[1].0, num),
                read_iops: read_v1(dir, V1_FILES[2].0, num),
                write_iops: read_v1(dir, V1_FILES[3].0, num),
            }
        }
        CgroupVersion::V2 => {
            let path = dir.join("io.max");
            let c = std::fs::read_to_string(&path)
                .map_err(|e| Error::io("read io limit", Context::device(dev.display()), path, e))?;
            parse_v2(&c, num)
        }
    }
    .normalized())
}

/// v2: `io.max` exists only when the parent delegates the io controller; ask for it
/// (best effort: it fails harmlessly when the parent itself lacks it).
fn enable_io_controller(dir: &Path) {
    if dir.join("io.max").exists() {
        return;
    }
    if let Some(parent) = dir.parent() {
        let _ = std::fs::write(parent.join("cgroup.subtree_control"), b"+io");
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

    /// A fake cgroup directory with the files `version` uses.
    fn fake_cgroup(dir: &Path, version: CgroupVersion) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
        match version {
            CgroupVersion::V1 => {
                for (f, _) in V1_FILES {
                    std::fs::write(dir.join(f), "").unwrap();
                }
            }
            CgroupVersion::V2 => std::fs::write(dir.join("io.max"), "").unwrap(),
        }
    }

    #[test]
    fn host_scope_v1_writes_the_root_and_every_cgroup_below() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("blkio")).unwrap();
        fake_cgroup(&root.join("blkio"), CgroupVersion::V1);
        fake_cgroup(&root.join("blkio/a"), CgroupVersion::V1);
        fake_cgroup(&root.join("blkio/a/b"), CgroupVersion::V1);
        let t = Throttler::host(root).unwrap();
        assert_eq!((t.version, t.scope), (CgroupVersion::V1, Scope::Host));
        assert_eq!(
            t.targets(),
            vec![
                root.join("blkio"),
                root.join("blkio/a"),
                root.join("blkio/a/b")
            ]
        );
        let dev = Path::new("/dev/fake");
        let l = QosLimits::symmetric(None, Some(4 << 20));
        t.apply_num(dev, (7, 3), &l).unwrap();
        for d in t.targets() {
            let c = std::fs::read_to_string(d.join("blkio.throttle.write_bps_device")).unwrap();
            assert_eq!(c, "7:3 4194304", "{}", d.display());
        }
        assert_eq!(t.current_num(dev, (7, 3)).unwrap(), l);
        // a cgroup created later lacks the rule: current() no longer reports the limit
        fake_cgroup(&root.join("blkio/new"), CgroupVersion::V1);
        assert_ne!(t.current_num(dev, (7, 3)).unwrap(), l);
        t.apply_num(dev, (7, 3), &l).unwrap();
        assert_eq!(t.current_num(dev, (7, 3)).unwrap(), l);
        // clearing writes 0 (remove) everywhere
        t.apply_num(dev, (7, 3), &QosLimits::default()).unwrap();
        let c =
            std::fs::read_to_string(root.join("blkio/a/b/blkio.throttle.read_bps_device")).unwrap();
        assert_eq!(c, "7:3 0");
        // files without a rule for the device are not touched when clearing
        let c =
            std::fs::read_to_string(root.join("blkio/a/blkio.throttle.read_iops_device")).unwrap();
        assert_eq!(c, "");
    }

    #[test]
    fn host_scope_v2_writes_every_top_level_child() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("cgroup.controllers"), "io memory\n").unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        fake_cgroup(&root.join("system.slice"), CgroupVersion::V2);
        fake_cgroup(&root.join("user.slice"), CgroupVersion::V2);
        fake_cgroup(&root.join("user.slice/inner"), CgroupVersion::V2);
        std::fs::create_dir_all(root.join("not-a-cgroup")).unwrap();
        let t = Throttler::host(root).unwrap();
        assert_eq!((t.version, t.scope), (CgroupVersion::V2, Scope::Host));
        assert_eq!(
            t.targets(),
            vec![root.join("system.slice"), root.join("user.slice")]
        );
        let dev = Path::new("/dev/fake");
        let l = QosLimits::symmetric(Some(50), Some(1 << 20));
        t.apply_num(dev, (8, 16), &l).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(),
            "+io"
        );
        for d in t.targets() {
            assert_eq!(
                std::fs::read_to_string(d.join("io.max")).unwrap(),
                "8:16 rbps=1048576 wbps=1048576 riops=50 wiops=50"
            );
        }
        // hierarchical below the top level: the inner cgroup is not written
        assert_eq!(
            std::fs::read_to_string(root.join("user.slice/inner/io.max")).unwrap(),
            ""
        );
        assert_eq!(t.current_num(dev, (8, 16)).unwrap(), l);
        t.apply_num(dev, (8, 16), &QosLimits::default()).unwrap();
        assert_eq!(t.current_num(dev, (8, 16)).unwrap(), QosLimits::default());
    }
}
