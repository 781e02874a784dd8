//! `hwameistor standalone --demo`: sparse-file disks so a machine without a spare disk can
//! run the whole system.
//!
//! At start: `<data-dir>/disks/disk-<i>.img` sparse files are created (kept across restarts),
//! each attached to a loop device (an existing attachment of the same file is reused), and the
//! disk manager is told to count loop devices as disks. A background task waits until the
//! disk manager reports them as LocalDisks and claims the ones still free for `local-storage`
//! with a LocalDiskClaim, so the node agent builds an LVM-class pool from them (with the file
//! engine on hosts without device-mapper); this happens once, when the disk files are
//! created. At shutdown the loop devices are detached (the kernel detaches lazily a device
//! that is still mounted). [`release_host`] releases what the engine holds on the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hwameistor_api::types::{DiskClaimState, DiskOwner};
use hwameistor_api::{LocalDisk, LocalDiskClaim, LocalDiskClaimSpec};
use hwameistor_engine::file::loopdev::{self, FileId, Losetup};
use hwameistor_exec::SharedRunner;
use hwameistor_store::{Selector, Store};
use tokio_util::sync::CancellationToken;

/// The demo disks of one run.
#[derive(Debug)]
pub struct DemoDisks {
    /// Loop devices backing the disk files, in file order.
    pub devices: Vec<PathBuf>,
    /// The devices whose files this run created (first start): the ones to claim.
    pub fresh: Vec<PathBuf>,
    runner: SharedRunner,
    losetup: Losetup,
}

fn losetup() -> Losetup {
    Losetup {
        timeout: Duration::from_secs(30),
    }
}

/// Create (if missing) `count` sparse files of `size` bytes under `<data_dir>/disks` and attach
/// each to a loop device.
pub async fn attach(
    data_dir: &Path,
    count: usize,
    size: u64,
    runner: SharedRunner,
) -> anyhow::Result<DemoDisks> {
    let dir = data_dir.join("disks");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let l = losetup();
    let attached = loopdev::list(runner.as_ref(), &l, "list loop devices").await?;
    let mut devices = Vec::new();
    let mut fresh = Vec::new();
    for i in 0..count {
        let file = dir.join(format!("disk-{i}.img"));
        let created = !file.exists();
        if created {
            let f = std::fs::File::create(&file)
                .with_context(|| format!("creating {}", file.display()))?;
            f.set_len(size)
                .with_context(|| format!("sizing {}", file.display()))?;
            tracing::info!(file = %file.display(), size, "demo disk created");
        }
        let id = FileId::of(&file).with_context(|| format!("reading {}", file.display()))?;
        let dev = match attached.iter().find(|d| id.backs(d)) {
            Some(d) => d.name.clone(),
            None => {
                let out = runner
                    .run(&l.attach(&file))
                    .await
                    .with_context(|| format!("attaching {}", file.display()))?;
                PathBuf::from(out.stdout.trim())
            }
        };
        tracing::info!(file = %file.display(), device = %dev.display(), "demo disk attached");
        if created {
            fresh.push(dev.clone());
        }
        devices.push(dev);
    }
    Ok(DemoDisks {
        devices,
        fresh,
        runner,
        losetup: l,
    })
}

impl DemoDisks {
    /// Detach the loop devices (lazily if still in use).
    pub async fn detach(self) {
        for dev in &self.devices {
            match self.runner.run(&self.losetup.detach(dev)).await {
                Ok(_) => tracing::info!(device = %dev.display(), "demo disk detached"),
                Err(e) => {
                    tracing::warn!(device = %dev.display(), error = %e, "could not detach demo disk")
                }
            }
        }
    }
}

/// Wait until the disk manager lists the freshly created demo devices on `node`, then claim
/// the free ones for `local-storage`. Returns the claim's name, or `None` when there is
/// nothing to claim.
///
/// Only disks whose files this run created are claimed: after a restart the disks are
/// already in the pool (under their stable LocalDisk names), and loop device numbers may
/// have moved, so a device path from an earlier run must not be trusted.
pub async fn claim(
    store: Store,
    node: String,
    devices: Vec<PathBuf>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<String>> {
    if devices.is_empty() {
        return Ok(None);
    }
    let wanted: Vec<String> = devices.iter().map(|d| d.display().to_string()).collect();
    let disks = store.all::<LocalDisk>();
    let found = loop {
        let list = disks.list(&Selector::default()).await?;
        let ours: Vec<LocalDisk> = list
            .items
            .into_iter()
            .filter(|d| d.spec.node_name == node && wanted.contains(&d.spec.device_path))
            .collect();
        if ours.len() == wanted.len() {
            break ours;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    let free: Vec<String> = found
        .iter()
        .filter(|d| matches!(d.spec.owner, DiskOwner::Unknown | DiskOwner::LocalStorage))
        .filter(|d| {
            d.status
                .as_ref()
                .is_none_or(|s| s.claim_state != DiskClaimState::Bound)
        })
        .map(|d| d.spec.device_path.clone())
        .collect();
    if free.is_empty() {
        return Ok(None);
    }
    let name = format!("{node}-demo-claim");
    let mut spec = LocalDiskClaimSpec {
        node_name: node,
        owner: DiskOwner::LocalStorage,
        ..Default::default()
    };
    spec.description.device_paths = free;
    let claim = LocalDiskClaim::new(&name, spec);
    match store.all::<LocalDiskClaim>().create(&claim).await {
        Ok(_) => {}
        Err(hwameistor_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(claim = %name, "demo disks claimed for local-storage");
    Ok(Some(name))
}

/// Mount points at or below `root`, deepest first, from `/proc/self/mountinfo` text.
pub fn mounts_below(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(root))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Undo the octal escapes (`\040` for a space) of mountinfo paths.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Release what the engine holds on the host when the server stops: deactivate every volume
/// (a volume the user still has mounted stays; the engine refuses or the kernel keeps it
/// busy, and we log it), then, with `unmount_pools`, unmount the file engine's pool
/// filesystems under `pools_root`.
pub async fn release_host(
    engine: &hwameistor_engine::SharedEngine,
    pools_root: &Path,
    unmount_pools: bool,
    runner: &SharedRunner,
) {
    match engine.list_volumes(None).await {
        Ok(vols) => {
            for v in vols {
                if let Err(e) = engine.deactivate_volume(&v.pool, &v.name).await {
                    tracing::warn!(pool = %v.pool, volume = %v.name, error = %e, "volume left active");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not list volumes to deactivate them"),
    }
    if !unmount_pools {
        return;
    }
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for target in mounts_below(&info, pools_root) {
        let cmd = hwameistor_exec::Cmd::new("umount")
            .arg(target.display().to_string())
            .timeout(Duration::from_secs(30));
        // a just-detached loop device releases the filesystem asynchronously: retry briefly
        let mut last = None;
        for _ in 0..10 {
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
                tracing::warn!(mount = %target.display(), error = %e, "pool filesystem left mounted")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts_below_a_root_deepest_first() {
        let mi = "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
40 22 7:0 / /data/pools/LocalStorage_PoolHDD/u1 rw - xfs /dev/loop0 rw
41 40 7:2 / /data/pools/LocalStorage_PoolHDD/u1/x rw - xfs /dev/loop2 rw
42 22 7:1 / /data/pools/LocalStorage_PoolHDD/with\\040space rw - xfs /dev/loop1 rw
43 22 7:3 / /data/poolsX rw - xfs /dev/loop3 rw
";
        let m = mounts_below(mi, Path::new("/data/pools"));
        assert_eq!(
            m,
            vec![
                PathBuf::from("/data/pools/LocalStorage_PoolHDD/u1/x"),
                PathBuf::from("/data/pools/LocalStorage_PoolHDD/u1"),
                PathBuf::from("/data/pools/LocalStorage_PoolHDD/with space"),
            ]
        );
    }
}
