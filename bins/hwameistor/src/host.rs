//! What the standalone server holds on the host, taken at start and given back at stop.
//!
//! - [`reattach_pools`] (start, file engine): the file engine finds its pools through the
//!   mounts of their disks under `<data-dir>/pools/<pool>/<fs-uuid>/`. A stop (or a reboot)
//!   unmounts them, but the mount-point directories stay: they record which filesystem
//!   (by UUID) belongs to which pool. At start every such directory that is not mounted is
//!   matched to the block device carrying that filesystem UUID (`blkid`), and the engine's
//!   `ensure_pool` mounts it again (it checks the pool marker in the filesystem, so a wrong
//!   device is refused, never formatted: only devices that already hold that UUID are passed).
//!   The lvm engine needs nothing here: LVM finds its volume groups by itself, and the node
//!   agent activates the volumes at start.
//! - [`release_host`] (stop): deactivate every volume (detaches the file engine's loop
//!   devices), then unmount the pool filesystems. A volume the user still has mounted is
//!   refused by the engine; it, its pool's mount and the disk under it stay, and the
//!   returned [`Leftovers`] say so (the server logs them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hwameistor_engine::{EngineKind, POOL_PREFIX, SharedEngine};
use hwameistor_exec::{Cmd, SharedRunner};

/// Mount points at or below `root`, deepest first, from `/proc/self/mountinfo` text.
pub fn mounts_below(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mount_entries(mountinfo)
        .into_iter()
        .map(|(_, target)| target)
        .filter(|p| p.starts_with(root))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// (source, target) of every mount in `/proc/self/mountinfo` text.
pub fn mount_entries(mountinfo: &str) -> Vec<(String, PathBuf)> {
    mount_lines(mountinfo)
        .into_iter()
        .map(|m| (m.source, m.target))
        .collect()
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountLine {
    /// Path inside the mounted filesystem (`/loop2` for a bind mount of `/dev/loop2`).
    pub root: String,
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
}

pub fn mount_lines(mountinfo: &str) -> Vec<MountLine> {
    hwameistor_core::mountinfo::parse(mountinfo)
        .into_iter()
        .map(|m| MountLine {
            root: m.root,
            target: PathBuf::from(m.mount_point),
            fstype: m.fs_type,
            source: m.source,
        })
        .collect()
}

/// Where the block device `dev` (canonical, e.g. `/dev/loop2`) is in use by a mount: a
/// filesystem on it, or the device node bind-mounted from /dev (devtmpfs, or tmpfs in some
/// containers): a published block volume.
pub fn device_mounts(mountinfo: &str, dev: &Path) -> Vec<PathBuf> {
    let Some(base) = dev.file_name().map(|b| format!("/{}", b.to_string_lossy())) else {
        return Vec::new();
    };
    mount_lines(mountinfo)
        .into_iter()
        .filter(|m| {
            let src = Path::new(&m.source);
            src == dev
                || (src.is_absolute() && std::fs::canonicalize(src).is_ok_and(|c| c == dev))
                || (matches!(m.fstype.as_str(), "devtmpfs" | "tmpfs") && m.root == base)
        })
        .map(|m| m.target)
        .collect()
}

fn read_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// Pool disk directories under `pools_root` that are not mounted: pool name → filesystem
/// UUIDs (directory names).
pub fn unmounted_pool_disks(pools_root: &Path, mountinfo: &str) -> BTreeMap<String, Vec<String>> {
    let mounted: Vec<PathBuf> = mount_entries(mountinfo)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Ok(pools) = std::fs::read_dir(pools_root) else {
        return out;
    };
    for pool in pools.flatten() {
        let pname = pool.file_name().to_string_lossy().into_owned();
        if !pname.starts_with(POOL_PREFIX) || !pool.path().is_dir() {
            continue;
        }
        let Ok(disks) = std::fs::read_dir(pool.path()) else {
            continue;
        };
        for d in disks.flatten() {
            let id = d.file_name().to_string_lossy().into_owned();
            if !d.path().is_dir()
                || mounted.contains(&d.path())
                || hwameistor_core::names::validate("disk id", &id).is_err()
            {
                continue;
            }
            out.entry(pname.clone()).or_default().push(id);
        }
    }
    for ids in out.values_mut() {
        ids.sort();
    }
    out
}

/// Mount again the file engine's pool disks that a stop or reboot unmounted (see the module
/// doc). Returns the pools that were brought back. Failures are logged, not fatal: the
/// node agent then reports the pool as missing.
pub async fn reattach_pools(
    engine: &SharedEngine,
    pools_root: &Path,
    runner: &SharedRunner,
) -> Vec<String> {
    if engine.kind() != EngineKind::File {
        return Vec::new();
    }
    let mut back = Vec::new();
    for (pool, ids) in unmounted_pool_disks(pools_root, &read_mountinfo()) {
        let mut devs = Vec::new();
        for id in &ids {
            let cmd = Cmd::new("blkid")
                .args(["-c", "/dev/null", "-o", "device", "-t"])
                .arg(format!("UUID={id}"))
                .timeout(Duration::from_secs(60));
            match runner.output(&cmd).await {
                Ok(out) => match out.stdout.lines().map(str::trim).find(|l| !l.is_empty()) {
                    Some(dev) => devs.push(PathBuf::from(dev)),
                    None => {
                        tracing::warn!(pool = %pool, uuid = %id, "pool disk not found on this host (no block device has this filesystem UUID)")
                    }
                },
                Err(e) => tracing::warn!(pool = %pool, uuid = %id, error = %e, "blkid failed"),
            }
        }
        if devs.is_empty() {
            continue;
        }
        match engine.ensure_pool(&pool, &devs).await {
            Ok(info) => {
                tracing::info!(pool = %pool, disks = ?devs, total_bytes = info.total_bytes, "pool disks mounted again");
                back.push(pool);
            }
            Err(e) => {
                tracing::warn!(pool = %pool, disks = ?devs, error = %e, "could not mount the pool disks again")
            }
        }
    }
    back
}

/// What [`release_host`] had to leave because the user still uses it.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// `pool/volume: reason` of volumes left active.
    pub volumes: Vec<String>,
    /// Pool filesystems left mounted.
    pub mounts: Vec<PathBuf>,
    /// Devices (sources) of the mounts left behind.
    pub devices: Vec<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty() && self.mounts.is_empty()
    }
}

/// Release what the engine holds on the host when the server stops: deactivate every volume
/// (a volume the user still has mounted stays: the engine refuses), then, for the file
/// engine, unmount the pool filesystems under `pools_root` (one that still backs an active
/// volume stays busy).
pub async fn release_host(
    engine: &SharedEngine,
    pools_root: &Path,
    runner: &SharedRunner,
) -> Leftovers {
    let mut left = Leftovers::default();
    match engine.list_volumes(None).await {
        Ok(vols) => {
            let info = read_mountinfo();
            for v in vols {
                // a published block volume is a bind mount of the device node, which the
                // engine cannot see as a mount of the device: never pull it away
                let dev = std::fs::canonicalize(&v.device_path).unwrap_or(v.device_path.clone());
                let used = device_mounts(&info, &dev);
                if !used.is_empty() {
                    left.volumes.push(format!(
                        "{}/{}: in use at {}",
                        v.pool,
                        v.name,
                        used.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    continue;
                }
                match engine.deactivate_volume(&v.pool, &v.name).await {
                    Ok(()) => {
                        tracing::debug!(pool = %v.pool, volume = %v.name, "volume deactivated")
                    }
                    Err(e) => left.volumes.push(format!("{}/{}: {e}", v.pool, v.name)),
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not list volumes to deactivate them");
            left.volumes.push(format!("*: could not list volumes: {e}"));
        }
    }
    if engine.kind() != EngineKind::File {
        return left;
    }
    let info = read_mountinfo();
    let entries = mount_entries(&info);
    for target in mounts_below(&info, pools_root) {
        let cmd = Cmd::new("umount")
            .arg(target.display().to_string())
            .timeout(Duration::from_secs(30));
        // a just-detached loop device releases its file asynchronously: retry briefly, but
        // not for a pool that still backs a volume left active
        let tries = if left.volumes.is_empty() { 10 } else { 3 };
        let mut last = None;
        for _ in 0..tries {
            match runner.run(&cmd).await {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
        match last {
            None => tracing::info!(mount = %target.display(), "pool filesystem unmounted"),
            Some(e) => {
                tracing::debug!(mount = %target.display(), error = %e, "pool filesystem busy");
                if let Some((src, _)) = entries.iter().find(|(_, t)| *t == target) {
                    left.devices.push(PathBuf::from(src));
                }
                left.mounts.push(target);
            }
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 7:0 / /data/pools/LocalStorage_PoolHDD/u1 rw - xfs /dev/loop0 rw
41 40 7:2 / /data/pools/LocalStorage_PoolHDD/u1/x rw - xfs /dev/loop2 rw
42 22 7:1 / /data/pools/LocalStorage_PoolHDD/with\\040space rw - xfs /dev/loop1 rw
43 22 7:3 / /data/poolsX rw shared:5 - xfs /dev/loop3 rw
";

    #[test]
    fn finds_mounts_below_a_root_deepest_first() {
        let m = mounts_below(MI, Path::new("/data/pools"));
        assert_eq!(
            m,
            vec![
                PathBuf::from("/data/pools/LocalStorage_PoolHDD/u1/x"),
                PathBuf::from("/data/pools/LocalStorage_PoolHDD/u1"),
                PathBuf::from("/data/pools/LocalStorage_PoolHDD/with space"),
            ]
        );
    }

    #[test]
    fn reads_sources_after_optional_fields() {
        let e = mount_entries(MI);
        assert_eq!(e[0], ("/dev/sda1".into(), PathBuf::from("/")));
        assert_eq!(e[4], ("/dev/loop3".into(), PathBuf::from("/data/poolsX")));
    }

    #[test]
    fn finds_filesystem_and_bind_mounts_of_a_device() {
        let mi = "\
50 22 7:2 / /mnt/fs rw - xfs /dev/loop2 rw
51 22 0:5 /loop2 /mnt/blk rw shared:2 - devtmpfs udev rw
52 22 0:5 /loop22 /mnt/other rw - devtmpfs udev rw
";
        assert_eq!(
            device_mounts(mi, Path::new("/dev/loop2")),
            vec![PathBuf::from("/mnt/fs"), PathBuf::from("/mnt/blk")]
        );
        assert!(device_mounts(mi, Path::new("/dev/loop3")).is_empty());
    }

    #[test]
    fn lists_pool_disk_directories_that_are_not_mounted() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for d in [
            "LocalStorage_PoolHDD/aaaa-1",
            "LocalStorage_PoolHDD/bbbb-2",
            "LocalStorage_PoolSSD/cccc-3",
            "not-a-pool/dddd-4",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("LocalStorage_PoolSSD/file"), "").unwrap();
        let mi = format!(
            "40 22 7:0 / {} rw - xfs /dev/loop0 rw\n",
            root.join("LocalStorage_PoolHDD/bbbb-2").display()
        );
        let got = unmounted_pool_disks(root, &mi);
        assert_eq!(
            got,
            BTreeMap::from([
                (
                    "LocalStorage_PoolHDD".to_string(),
                    vec!["aaaa-1".to_string()]
                ),
                (
                    "LocalStorage_PoolSSD".to_string(),
                    vec!["cccc-3".to_string()]
                ),
            ])
        );
        assert!(unmounted_pool_disks(&root.join("missing"), "").is_empty());
    }
}
