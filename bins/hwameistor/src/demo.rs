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
//! that is still mounted). What the engine holds on the host is released by
//! [`crate::host::release_host`]. With `--demo-raw-disks N`, N more files `raw-<i>.img` are
//! attached the same way and given to the disk manager ([`claim_raw`]) for raw-disk volumes
//! (`disk.hwameistor.io`, see docs/raw-disks.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use hwameistor_api::types::{ClaimPhase, DiskClaimState, DiskOwner};
use hwameistor_api::{LocalDisk, LocalDiskClaim, LocalDiskClaimSpec};
use hwameistor_engine::file::loopdev::{self, FileId, Losetup};
use hwameistor_exec::SharedRunner;
use hwameistor_store::{Objects, Selector, Store};
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

/// How often [`claim`] claims the disks that are still free.
const CLAIM_ATTEMPTS: u32 = 4;

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
    attach_files(data_dir, "disk", count, size, runner).await
}

/// [`attach`] for files named `<prefix>-<i>.img` (`raw` for the raw-disk demo disks).
pub async fn attach_files(
    data_dir: &Path,
    prefix: &str,
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
        let file = dir.join(format!("{prefix}-{i}.img"));
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
    /// Detach the loop devices, except `keep` (devices under a pool filesystem that is still
    /// busy because the user has a volume mounted).
    pub async fn detach(self, keep: &[PathBuf]) {
        for dev in &self.devices {
            if keep.contains(dev) {
                tracing::warn!(device = %dev.display(), "demo disk kept: its pool holds a volume still in use");
                continue;
            }
            match self.runner.run(&self.losetup.detach(dev)).await {
                Ok(_) => tracing::info!(device = %dev.display(), "demo disk detached"),
                Err(e) => {
                    tracing::warn!(device = %dev.display(), error = %e, "could not detach demo disk")
                }
            }
        }
    }
}

/// The LocalDisks of `node` at the device paths `wanted`, once the disk manager lists every
/// one of them (polled every 500 ms); `None` when `shutdown` comes first.
async fn listed_disks(
    disks: &Objects<LocalDisk>,
    node: &str,
    wanted: &[String],
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Vec<LocalDisk>>> {
    loop {
        let ours: Vec<LocalDisk> = disks
            .list(&Selector::default())
            .await?
            .items
            .into_iter()
            .filter(|d| d.spec.node_name == node && wanted.contains(&d.spec.device_path))
            .collect();
        if ours.len() == wanted.len() {
            return Ok(Some(ours));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Wait until the disk manager lists `devices` on `node` (the freshly created demo devices,
/// or the `--disk` devices when `purpose` names them), then claim the free ones for
/// `local-storage`. Returns the claim's name, or `None` when there is
/// nothing to claim.
///
/// Only disks whose files this run created are claimed: after a restart the disks are
/// already in the pool (under their stable LocalDisk names), and loop device numbers may
/// have moved, so a device path from an earlier run must not be trusted.
pub async fn claim(
    store: Store,
    node: String,
    devices: Vec<PathBuf>,
    purpose: Option<&'static str>,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<String>> {
    if devices.is_empty() {
        return Ok(None);
    }
    let wanted: Vec<String> = devices.iter().map(|d| d.display().to_string()).collect();
    let disks = store.all::<LocalDisk>();
    let claims = store.all::<LocalDiskClaim>();
    let mut last = None;
    // A claim may bind fewer disks than asked (a disk that changes while the claim is being
    // bound is left out): claim what is still free again, a few times.
    for attempt in 0..CLAIM_ATTEMPTS {
        let Some(found) = listed_disks(&disks, &node, &wanted, &shutdown).await? else {
            return Ok(last);
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
            return Ok(last);
        }
        let mut name = match purpose {
            None => format!("{node}-demo-claim"),
            // one claim per set of newly given disks (a later run may add disks)
            Some(p) => {
                let mut n = format!("{node}-{p}-claim");
                for d in &free {
                    let base = Path::new(d)
                        .file_name()
                        .map(|b| b.to_string_lossy().to_lowercase())
                        .unwrap_or_default();
                    n.push('-');
                    n.extend(base.chars().filter(|c| c.is_ascii_alphanumeric()));
                }
                n
            }
        };
        if attempt > 0 {
            name.push_str(&format!("-{attempt}"));
        }
        let mut spec = LocalDiskClaimSpec {
            node_name: node.clone(),
            owner: DiskOwner::LocalStorage,
            ..Default::default()
        };
        spec.description.device_paths = free.clone();
        let claim = LocalDiskClaim::new(&name, spec);
        match claims.create(&claim).await {
            Ok(_) => {}
            Err(hwameistor_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        tracing::info!(claim = %name, disks = ?free, "disks claimed for local-storage");
        last = Some(name.clone());
        // wait until the claim is done with (bound, consumed or deleted), then look again
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let done = match claims.get_opt(&name).await? {
                None => true,
                Some(c) => c.status.as_ref().is_some_and(|s| {
                    matches!(
                        s.status,
                        ClaimPhase::Bound
                            | ClaimPhase::Consumed
                            | ClaimPhase::ToBeDeleted
                            | ClaimPhase::Deleted
                    )
                }),
            };
            if done || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(last),
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
    }
    Ok(last)
}

/// Give freshly created raw-disk demo disks (`--demo-raw-disks`) to the disk manager: once
/// it lists them on `node`, set `owner: local-disk-manager` on the free ones (a claim without
/// that owner would only match `local-storage` disks) and claim them with a LocalDiskClaim
/// of that owner, so they appear in the node's `LocalDisk_Pool<T>` for `disk.hwameistor.io`
/// volumes. Returns the claim's name, or `None` when there is nothing to claim.
pub async fn claim_raw(
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
    let Some(found) = listed_disks(&disks, &node, &wanted, &shutdown).await? else {
        return Ok(None);
    };
    let mut free = Vec::new();
    for d in &found {
        let bound = d
            .status
            .as_ref()
            .is_some_and(|s| s.claim_state == DiskClaimState::Bound);
        if bound
            || !matches!(
                d.spec.owner,
                DiskOwner::Unknown | DiskOwner::LocalDiskManager
            )
        {
            continue;
        }
        let name = d.metadata.name.clone().unwrap_or_default();
        disks
            .patch(
                &name,
                &serde_json::json!({"spec": {"owner": DiskOwner::LocalDiskManager}}),
            )
            .await
            .with_context(|| format!("setting the owner of {name}"))?;
        free.push(d.spec.device_path.clone());
    }
    if free.is_empty() {
        return Ok(None);
    }
    let name = format!("{node}-demo-raw-claim");
    let mut spec = LocalDiskClaimSpec {
        node_name: node,
        owner: DiskOwner::LocalDiskManager,
        ..Default::default()
    };
    spec.description.device_paths = free;
    match store
        .all::<LocalDiskClaim>()
        .create(&LocalDiskClaim::new(&name, spec))
        .await
    {
        Ok(_) | Err(hwameistor_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(claim = %name, "raw demo disks claimed for local-disk-manager");
    Ok(Some(name))
}
