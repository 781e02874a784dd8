//! The file engine: volumes are files on a filesystem made on each pool disk, attached as
//! loop devices with direct IO. For hosts without device-mapper.
//!
//! # Layout
//! ```text
//! <root>/<pool>/<fs-uuid>/               mount point of one pool disk (XFS reflink=1 or btrfs)
//!     .hwameistor-pool                   marker: the pool name (a filesystem without it is not ours)
//!     volumes/<volume>.img               one sparse file per volume
//!     snapshots/<snapshot>.img           reflink copies (snapshots)
//!     snapshots/<snapshot>.origin        the volume a snapshot was taken from
//! <dev_dir>/<pool>/<volume> -> /dev/loopN   stable device path of an attached volume
//! ```
//! The disk id in the mount path is the filesystem UUID, so it survives device renames.
//!
//! # Behaviour
//! - `ensure_pool` formats blank disks (never a disk holding anything else), mounts them and
//!   writes the marker. An existing filesystem is adopted only if it carries our marker for
//!   this pool, or is empty. Calling it again after a reboot re-mounts the disks.
//! - A volume lives on one disk: a new volume goes to the disk with the most free space (a
//!   file cannot span filesystems; `max_volume_bytes` says how big a volume can still be).
//!   `striped` is therefore refused on pools of more than one disk.
//! - Space accounting is thick: a volume counts as used by its full size from creation, even
//!   though its file is sparse. Per disk: used = Σ volume and snapshot sizes + (filesystem
//!   used − blocks allocated to those files), i.e. provisioned space plus filesystem overhead.
//! - Files are created under a temporary name and renamed into place, so a volume file
//!   exists only at its full size. Each step re-reads the host and does only what is
//!   missing, so re-running any call after a crash completes it.
//! - The loop device is attached with `--direct-io=on`: IO to the volume goes straight to the
//!   pool filesystem's blocks without double caching in the page cache.
//! - Loop devices backed by our files are found again after an agent restart from sysfs
//!   (`/sys/block/loop*/loop/backing_file`, matched by path), and
//!   [`VolumeEngine::activate_volume`] re-attaches a volume whose loop device is gone (after
//!   a reboot) and re-points its symlink.
//! - Snapshots are reflink copies (`cp --reflink=always`): instant and space-sharing on XFS
//!   with reflink and on btrfs. Restore is a reflink copy to a new volume file; rollback
//!   replaces the (unused, deactivated) volume file's content with a reflink copy.
//! - Host state is read without processes where the kernel offers it: mounts from the mount
//!   table ([`hwameistor_exec::Runner::mount_table`]), loop devices and their sizes from
//!   sysfs. A plain create runs one command (`losetup --show -f`).
//!
//! # Concurrency
//! Volume calls on different volumes run in parallel: each takes its volume's lock and,
//! only for the moment it chooses a disk and claims space (create, extend, restore), the
//! engine's space lock, so two creates can never both count the same free bytes (a create
//! claims its space by setting the length of its temporary file, which the usage counts, and
//! preallocates and fsyncs after releasing the lock). Pool
//! changes (`ensure_pool`) and snapshot calls are exclusive: they wait for every volume call
//! to finish and hold the others off.

pub mod loopdev;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use hwameistor_core::names;
use hwameistor_exec::{Cmd, SharedRunner};
use tokio::sync::{Mutex, OwnedMutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::config::{FileEngineConfig, PoolFsType};
use crate::engine::VolumeEngine;
use crate::error::{Context, Error, Result};
use crate::fs::{self, FsType, MountEntry};
use crate::lvm::{canonical_dev, validate_pool};
use crate::types::{
    DEFAULT_EXTENT_BYTES, EngineKind, POOL_PREFIX, PoolDisk, PoolInfo, SnapshotInfo,
    VolumeAttributes, VolumeInfo, VolumeOptions, round_up_to_extent,
};

use loopdev::{FileId, LoopDevice, Losetup};

const ENGINE: EngineKind = EngineKind::File;
/// Marker file in the root of every pool filesystem; holds the pool name.
pub const MARKER: &str = ".hwameistor-pool";
const VOLUMES: &str = "volumes";
const SNAPSHOTS: &str = "snapshots";
const IMG: &str = ".img";
/// Suffix of a volume or snapshot file being written (`.<name>.img.tmp`).
const TMP_IMG: &str = ".img.tmp";
const ORIGIN: &str = ".origin";

/// The file-backed [`VolumeEngine`].
#[derive(Debug)]
pub struct FileEngine {
    runner: SharedRunner,
    cfg: FileEngineConfig,
    losetup: Losetup,
    /// Shared by volume calls, exclusive for pool and snapshot calls.
    gate: RwLock<()>,
    /// Held while a disk is chosen and its space claimed.
    space: Mutex<()>,
    /// One lock per `pool/volume` being worked on.
    volumes: std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Mutex<()>>>>,
}

/// What a volume call holds: the shared gate and its volume's lock.
struct VolumeGuard<'a> {
    _gate: RwLockReadGuard<'a, ()>,
    _volume: OwnedMutexGuard<()>,
}

/// One mounted pool disk.
#[derive(Debug, Clone)]
struct DiskMount {
    dev: PathBuf,
    mountpoint: PathBuf,
}

impl DiskMount {
    fn volumes(&self) -> PathBuf {
        self.mountpoint.join(VOLUMES)
    }
    fn snapshots(&self) -> PathBuf {
        self.mountpoint.join(SNAPSHOTS)
    }
    fn volume_file(&self, volume: &str) -> PathBuf {
        self.volumes().join(format!("{volume}{IMG}"))
    }
    fn snapshot_file(&self, snap: &str) -> PathBuf {
        self.snapshots().join(format!("{snap}{IMG}"))
    }
}

/// Space of one pool disk, thick accounting.
#[derive(Debug, Clone, Copy)]
struct DiskUsage {
    total: u64,
    used: u64,
    free: u64,
}

fn io(op: &'static str, ctx: &Context, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let ctx = ctx.clone();
    let path = path.to_path_buf();
    move |e| Error::io(op, ctx, path, e)
}

fn read_marker(mountpoint: &Path) -> Option<String> {
    std::fs::read_to_string(mountpoint.join(MARKER))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Write `content` to `path` atomically (temporary file, fsync, rename, fsync directory).
fn write_atomic(op: &'static str, ctx: &Context, path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(op, ctx, &tmp))?;
        f.write_all(content).map_err(io(op, ctx, &tmp))?;
        f.sync_all().map_err(io(op, ctx, &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(op, ctx, path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(op, ctx, dir))
}

/// Run blocking file IO (fsync, syncfs) on the blocking pool: under a burst of volume calls
/// a flush can take seconds, and on the async workers it would stall every other task.
async fn blocking_io<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(std::io::Error::other("runtime shutting down")),
    }
}

/// fsync the file or directory at `path` (a directory: its entries, e.g. after a rename).
async fn fsync(op: &'static str, ctx: &Context, path: &Path) -> Result<()> {
    let p = path.to_path_buf();
    blocking_io(move || std::fs::File::open(&p).and_then(|f| f.sync_all()))
        .await
        .map_err(io(op, ctx, path))
}

/// Apparent and allocated bytes of the `*.img` files in `dir`.
fn files_usage(dir: &Path) -> (u64, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    rd.flatten()
        .filter(|e| {
            // a volume being created (`.<name>.img.tmp`) has claimed its space already
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.ends_with(IMG) || n.ends_with(TMP_IMG)
        })
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(a, b), m| (a + m.len(), b + m.blocks() * 512))
}

/// Names (without `.img`) of the committed files in `dir` (temporary files start with `.`).
fn list_names(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let stem = n.strip_suffix(IMG)?;
            (!stem.starts_with('.') && names::validate("volume", stem).is_ok())
                .then(|| stem.to_owned())
        })
        .collect();
    v.sort();
    v
}

fn mount_fstype(probe_type: &str) -> Option<FsType> {
    match probe_type {
        "xfs" => Some(FsType::Xfs),
        "btrfs" => Some(FsType::Btrfs),
        _ => None,
    }
}

impl FileEngine {
    pub fn new(runner: SharedRunner, cfg: FileEngineConfig) -> Self {
        let losetup = Losetup {
            timeout: cfg.timeout,
        };
        FileEngine {
            runner,
            cfg,
            losetup,
            gate: RwLock::new(()),
            space: Mutex::new(()),
            volumes: Default::default(),
        }
    }

    /// Wait for the shared gate and `pool/volume`'s lock.
    async fn lock_volume(&self, pool: &str, volume: &str) -> VolumeGuard<'_> {
        let gate = self.gate.read().await;
        let m = {
            let mut map = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
            // forget locks nobody holds or waits for, so the map stays as small as the work
            map.retain(|_, m| std::sync::Arc::strong_count(m) > 1);
            map.entry(format!("{pool}/{volume}")).or_default().clone()
        };
        VolumeGuard {
            _gate: gate,
            _volume: m.lock_owned().await,
        }
    }

    /// Exclusive: no volume call runs meanwhile.
    async fn lock_all(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// The configuration in use.
    pub fn config(&self) -> &FileEngineConfig {
        &self.cfg
    }

    fn pool_dir(&self, pool: &str) -> PathBuf {
        self.cfg.root.join(pool)
    }

    fn link_path(&self, pool: &str, volume: &str) -> PathBuf {
        self.cfg.dev_dir.join(pool).join(volume)
    }

    async fn run(&self, op: &'static str, ctx: &Context, cmd: Cmd) -> Result<String> {
        self.runner
            .run(&cmd)
            .await
            .map(|o| o.stdout)
            .map_err(|e| Error::command(op, ctx.clone(), e))
    }

    /// Mounted, marked disks of every pool under the root.
    async fn all_disks(&self, op: &'static str) -> Result<BTreeMap<String, Vec<DiskMount>>> {
        let mounts = fs::list_mounts(self.runner.as_ref())
            .await
            .map_err(|e| match e {
                Error::Command { source, ctx, .. } => Error::Command { op, ctx, source },
                other => other,
            })?;
        Ok(self.disks_from(&mounts, None))
    }

    fn disks_from(
        &self,
        mounts: &[MountEntry],
        only: Option<&str>,
    ) -> BTreeMap<String, Vec<DiskMount>> {
        let mut out: BTreeMap<String, Vec<DiskMount>> = BTreeMap::new();
        for m in mounts {
            let Some(pool_dir) = m.target.parent() else {
                continue;
            };
            if pool_dir.parent() != Some(self.cfg.root.as_path()) {
                continue;
            }
            let Some(pool) = pool_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !pool.starts_with(POOL_PREFIX) || only.is_some_and(|o| o != pool) {
                continue;
            }
            if read_marker(&m.target).as_deref() != Some(pool) {
                continue;
            }
            out.entry(pool.to_owned()).or_default().push(DiskMount {
                dev: PathBuf::from(&m.source),
                mountpoint: m.target.clone(),
            });
        }
        out
    }

    async fn pool_disks(&self, op: &'static str, pool: &str) -> Result<Vec<DiskMount>> {
        Ok(self.all_disks(op).await?.remove(pool).unwrap_or_default())
    }

    fn usage(&self, op: &'static str, pool: &str, d: &DiskMount) -> Result<DiskUsage> {
        let st = fs::stats(&d.mountpoint).map_err(|e| match e {
            Error::Io { path, source, .. } => Error::Io {
                op,
                ctx: Context::pool(pool).with_device(d.dev.display()),
                path,
                source,
            },
            other => other,
        })?;
        let (va, vb) = files_usage(&d.volumes());
        let (sa, sb) = files_usage(&d.snapshots());
        let (apparent, allocated) = (va + sa, vb + sb);
        let overhead = st.used_bytes.saturating_sub(allocated);
        let used = apparent.saturating_add(overhead).min(st.total_bytes);
        // Never promise more than the filesystem can still allocate for the holes.
        let holes = apparent.saturating_sub(allocated);
        let free = (st.total_bytes - used).min(st.available_bytes.saturating_sub(holes));
        Ok(DiskUsage {
            total: st.total_bytes,
            used,
            free,
        })
    }

    fn find_volume<'a>(disks: &'a [DiskMount], volume: &str) -> Option<(&'a DiskMount, PathBuf)> {
        disks.iter().find_map(|d| {
            let f = d.volume_file(volume);
            f.is_file().then_some((d, f))
        })
    }

    async fn loops_of(&self, op: &'static str, file: &Path) -> Result<Vec<LoopDevice>> {
        let id = FileId::of(file).map_err(io(op, &Context::device(file.display()), file))?;
        // sysfs names the backing file by path (no inode), so the path decides
        Ok(loopdev::scan_backing(&id.path))
    }

    fn link_target(&self, pool: &str, volume: &str) -> Option<PathBuf> {
        std::fs::read_link(self.link_path(pool, volume)).ok()
    }

    /// The loop device the volume's symlink (`link`) names, if it is attached and backed by
    /// `file`: two sysfs reads, where [`Self::loops_of`] reads every loop device of the host.
    fn linked_loop(link: Option<&Path>, file: &Path) -> Option<LoopDevice> {
        let l = loopdev::device(link?)?;
        FileId::of(file).ok()?.backs(&l).then_some(l)
    }

    async fn info(
        &self,
        op: &'static str,
        pool: &str,
        volume: &str,
        disk: &DiskMount,
        file: &Path,
        host: Option<(&[MountEntry], &[LoopDevice])>,
    ) -> Result<VolumeInfo> {
        let ctx = Context::volume(pool, volume);
        let size = std::fs::metadata(file).map_err(io(op, &ctx, file))?.len();
        let link = self.link_target(pool, volume);
        let (mounts, loops) = match host {
            Some((m, l)) => {
                let id = FileId::of(file).map_err(io(op, &ctx, file))?;
                let l: Vec<LoopDevice> = l.iter().filter(|x| id.backs(x)).cloned().collect();
                (Some(m), l)
            }
            // only the linked device counts below, so only it is read
            None => (
                None,
                Vec::from_iter(Self::linked_loop(link.as_deref(), file)),
            ),
        };
        let current = loops
            .iter()
            .find(|l| link.as_deref() == Some(l.name.as_path()));
        let open = match current {
            Some(l) => {
                let owned;
                let mounts = match mounts {
                    Some(m) => m,
                    None => {
                        owned = fs::list_mounts(self.runner.as_ref()).await?;
                        &owned
                    }
                };
                mounts.iter().any(|m| fs::source_is(&m.source, &l.name))
            }
            None => false,
        };
        Ok(VolumeInfo {
            pool: pool.to_owned(),
            name: volume.to_owned(),
            size_bytes: size,
            device_path: self.link_path(pool, volume),
            attrs: VolumeAttributes {
                active: current.is_some(),
                open,
                stripes: 1,
                disks: vec![disk.dev.clone()],
                raw: file.display().to_string(),
            },
        })
    }

    /// Attach (or find) the loop device of `file`, make sure it runs with direct IO and has
    /// the file's size, and point the stable symlink at it.
    ///
    /// `fresh`: the file was made by this call (a new inode), so no loop device can back it
    /// yet and none is looked for.
    async fn attach(
        &self,
        op: &'static str,
        pool: &str,
        volume: &str,
        file: &Path,
        fresh: bool,
    ) -> Result<PathBuf> {
        let ctx = Context::volume(pool, volume);
        let size = std::fs::metadata(file).map_err(io(op, &ctx, file))?.len();
        let link = self.link_target(pool, volume);
        let loops = match Self::linked_loop(link.as_deref(), file) {
            Some(l) => vec![l],
            None if fresh => Vec::new(),
            None => self.loops_of(op, file).await?,
        };
        // Prefer the device the symlink already names.
        let existing = loops
            .iter()
            .find(|l| link.as_deref() == Some(l.name.as_path()))
            .or_else(|| loops.first());
        let dev = match existing {
            Some(l) => {
                if !l.dio {
                    self.run(
                        op,
                        &ctx.clone().with_device(l.name.display()),
                        self.losetup.set_dio(&l.name),
                    )
                    .await?;
                }
                l.name.clone()
            }
            None => {
                let out = self.run(op, &ctx, self.losetup.attach(file)).await?;
                PathBuf::from(out.trim())
            }
        };
        let ctx = ctx.with_device(dev.display());
        if loop_size(&dev) != Some(size) {
            self.run(op, &ctx, self.losetup.refresh(&dev)).await?;
        }
        // Point the symlink at the device (atomically replace a stale one).
        let link_path = self.link_path(pool, volume);
        if std::fs::read_link(&link_path).ok().as_deref() != Some(dev.as_path()) {
            let dir = link_path.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(dir).map_err(io(op, &ctx, dir))?;
            let tmp = dir.join(format!(".{volume}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&dev, &tmp).map_err(io(op, &ctx, &tmp))?;
            std::fs::rename(&tmp, &link_path).map_err(io(op, &ctx, &link_path))?;
        }
        Ok(dev)
    }

    /// Detach every loop device of `file` (refusing when one is mounted) and drop the link.
    async fn detach(&self, op: &'static str, pool: &str, volume: &str, file: &Path) -> Result<()> {
        let ctx = Context::volume(pool, volume);
        let loops = self.loops_of(op, file).await?;
        if !loops.is_empty() {
            let mounts = fs::list_mounts(self.runner.as_ref()).await?;
            for l in &loops {
                if let Some(m) = mounts.iter().find(|m| fs::source_is(&m.source, &l.name)) {
                    return Err(Error::Conflict {
                        op,
                        ctx: ctx.with_device(l.name.display()),
                        message: format!(
                            "the volume is mounted at {}; unmount it first",
                            m.target.display()
                        ),
                    });
                }
            }
        }
        for l in &loops {
            self.run(
                op,
                &ctx.clone().with_device(l.name.display()),
                self.losetup.detach(&l.name),
            )
            .await?;
        }
        self.remove_link(op, pool, volume)
    }

    fn remove_link(&self, op: &'static str, pool: &str, volume: &str) -> Result<()> {
        let link = self.link_path(pool, volume);
        match std::fs::remove_file(&link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(op, Context::volume(pool, volume), link, e)),
        }
    }

    /// Make `tmp` `size` bytes long (allocating it if configured).
    async fn size_file(
        &self,
        op: &'static str,
        ctx: &Context,
        file: &Path,
        size: u64,
    ) -> Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(file)
            .map_err(io(op, ctx, file))?;
        f.set_len(size).map_err(io(op, ctx, file))?;
        drop(f);
        self.allocate_file(op, ctx, file, size).await
    }

    /// The slow half of [`Self::size_file`], after the length is set: preallocate (if
    /// configured) and fsync.
    async fn allocate_file(
        &self,
        op: &'static str,
        ctx: &Context,
        file: &Path,
        size: u64,
    ) -> Result<()> {
        if self.cfg.preallocate {
            let cmd = Cmd::new("fallocate")
                .args(["-l".to_owned(), size.to_string()])
                .arg(file.to_string_lossy())
                .timeout(self.cfg.timeout * 10);
            self.run(op, ctx, cmd).await?;
        }
        fsync(op, ctx, file).await
    }

    /// Adopt or prepare one disk for `pool`: format if blank, mount, write the marker.
    async fn add_disk(
        &self,
        op: &'static str,
        pool: &str,
        disk: &Path,
        mounts: &[MountEntry],
    ) -> Result<()> {
        let ctx = Context::pool(pool).with_device(disk.display());
        let runner = self.runner.as_ref();
        let pool_dir = self.pool_dir(pool);
        if let Some(m) = mounts.iter().find(|m| fs::source_is(&m.source, disk)) {
            if m.target.parent() == Some(pool_dir.as_path())
                && read_marker(&m.target).as_deref() == Some(pool)
            {
                return Ok(());
            }
            return Err(Error::Conflict {
                op,
                ctx,
                message: format!(
                    "disk is mounted at {}; refusing to take it",
                    m.target.display()
                ),
            });
        }
        let mut probe = fs::probe(runner, disk).await?;
        if probe.is_blank() {
            let (fs_type, extra): (FsType, &[&str]) = match self.cfg.fs_type {
                PoolFsType::Xfs => (FsType::Xfs, &["-m", "reflink=1"]),
                PoolFsType::Btrfs => (FsType::Btrfs, &[]),
            };
            fs::mkfs(runner, disk, fs_type, extra).await?;
            probe = fs::probe(runner, disk).await?;
        }
        let fs_type = probe
            .fs_type
            .as_deref()
            .and_then(mount_fstype)
            .ok_or_else(|| Error::Conflict {
                op,
                ctx: ctx.clone(),
                message: format!(
                    "disk holds {}; the file engine only adopts blank disks or its own xfs/btrfs",
                    probe
                        .fs_type
                        .as_deref()
                        .or(probe.pt_type.as_deref())
                        .unwrap_or("unknown data")
                ),
            })?;
        let id = probe.uuid.clone().unwrap_or_else(|| {
            disk.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "disk".into())
        });
        names::validate("disk id", &id)?;
        let target = pool_dir.join(&id);
        fs::mount(runner, disk, &target, fs_type, &["noatime"]).await?;
        match read_marker(&target) {
            Some(p) if p == pool => {}
            Some(other) => {
                fs::unmount(runner, &target).await?;
                let _ = std::fs::remove_dir(&target);
                return Err(Error::Conflict {
                    op,
                    ctx,
                    message: format!("disk belongs to pool {other}"),
                });
            }
            None => {
                let foreign = std::fs::read_dir(&target)
                    .map_err(io(op, &ctx, &target))?
                    .flatten()
                    .any(|e| {
                        let n = e.file_name();
                        n != "lost+found" && n != VOLUMES && n != SNAPSHOTS
                    });
                if foreign {
                    fs::unmount(runner, &target).await?;
                    let _ = std::fs::remove_dir(&target);
                    return Err(Error::Conflict {
                        op,
                        ctx,
                        message: "the disk's filesystem holds foreign data; refusing to adopt it"
                            .into(),
                    });
                }
                for d in [VOLUMES, SNAPSHOTS] {
                    let p = target.join(d);
                    std::fs::create_dir_all(&p).map_err(io(op, &ctx, &p))?;
                }
                write_atomic(
                    op,
                    &ctx,
                    &target.join(MARKER),
                    format!("{pool}\n").as_bytes(),
                )?;
            }
        }
        for d in [VOLUMES, SNAPSHOTS] {
            let p = target.join(d);
            std::fs::create_dir_all(&p).map_err(io(op, &ctx, &p))?;
        }
        Ok(())
    }

    fn build_pool_info(
        &self,
        op: &'static str,
        pool: &str,
        disks: &[DiskMount],
    ) -> Result<PoolInfo> {
        let mut info = PoolInfo {
            name: pool.to_owned(),
            engine: ENGINE,
            path: self.cfg.dev_dir.join(pool),
            total_bytes: 0,
            used_bytes: 0,
            free_bytes: 0,
            max_volume_bytes: 0,
            extent_bytes: DEFAULT_EXTENT_BYTES,
            volume_count: 0,
            disks: Vec::new(),
            volumes: Vec::new(),
        };
        for d in disks {
            let u = self.usage(op, pool, d)?;
            info.total_bytes += u.total;
            info.used_bytes += u.used;
            info.free_bytes += u.free;
            info.max_volume_bytes = info
                .max_volume_bytes
                .max(u.free / DEFAULT_EXTENT_BYTES * DEFAULT_EXTENT_BYTES);
            info.disks.push(PoolDisk {
                dev_path: d.dev.clone(),
                capacity_bytes: u.total,
                free_bytes: u.free,
            });
            let vols = list_names(&d.volumes());
            let snaps = list_names(&d.snapshots());
            info.volume_count += (vols.len() + snaps.len()) as u32;
            info.volumes.extend(vols);
        }
        info.volumes.sort();
        Ok(info)
    }

    fn not_found(op: &'static str, pool: &str, volume: &str) -> Error {
        Error::VolumeNotFound {
            op,
            pool: pool.to_owned(),
            volume: volume.to_owned(),
        }
    }

    async fn existing_disks(&self, op: &'static str, pool: &str) -> Result<Vec<DiskMount>> {
        let disks = self.pool_disks(op, pool).await?;
        if disks.is_empty() {
            return Err(Error::PoolNotFound {
                op,
                pool: pool.to_owned(),
            });
        }
        Ok(disks)
    }
}

/// Size in bytes of a block device from sysfs (`/sys/class/block/<name>/size` × 512).
fn loop_size(dev: &Path) -> Option<u64> {
    let name = dev.file_name()?.to_str()?;
    let s = std::fs::read_to_string(format!("/sys/class/block/{name}/size")).ok()?;
    s.trim().parse::<u64>().ok().map(|n| n * 512)
}

#[async_trait]
impl VolumeEngine for FileEngine {
    fn kind(&self) -> EngineKind {
        ENGINE
    }

    async fn ensure_pool(&self, pool: &str, disks: &[PathBuf]) -> Result<PoolInfo> {
        const OP: &str = "ensure pool";
        validate_pool(pool)?;
        let _g = self.lock_all().await;
        let mut seen = std::collections::BTreeSet::new();
        let wanted: Vec<PathBuf> = disks
            .iter()
            .map(|d| canonical_dev(d))
            .filter(|d| seen.insert(d.clone()))
            .collect();
        let mounts = fs::list_mounts(self.runner.as_ref()).await?;
        if wanted.is_empty() && self.disks_from(&mounts, Some(pool)).is_empty() {
            return Err(Error::InvalidArgument {
                op: OP,
                ctx: Context::pool(pool),
                message: "a new pool needs at least one disk".into(),
            });
        }
        for d in &wanted {
            self.add_disk(OP, pool, d, &mounts).await?;
        }
        let disks = self.pool_disks(OP, pool).await?;
        if disks.is_empty() {
            return Err(Error::PoolNotFound {
                op: OP,
                pool: pool.to_owned(),
            });
        }
        self.build_pool_info(OP, pool, &disks)
    }

    async fn pool_info(&self, pool: &str) -> Result<Option<PoolInfo>> {
        const OP: &str = "pool info";
        validate_pool(pool)?;
        let disks = self.pool_disks(OP, pool).await?;
        if disks.is_empty() {
            return Ok(None);
        }
        self.build_pool_info(OP, pool, &disks).map(Some)
    }

    async fn list_pools(&self) -> Result<Vec<PoolInfo>> {
        const OP: &str = "list pools";
        self.all_disks(OP)
            .await?
            .iter()
            .map(|(pool, disks)| self.build_pool_info(OP, pool, disks))
            .collect()
    }

    async fn create_volume(
        &self,
        pool: &str,
        volume: &str,
        size_bytes: u64,
        opts: &VolumeOptions,
    ) -> Result<VolumeInfo> {
        const OP: &str = "create volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        let ctx = Context::volume(pool, volume);
        if opts.thin {
            return Err(Error::Unsupported {
                op: OP,
                engine: ENGINE,
                detail: Some(crate::engine::NO_THIN_POOLS.into()),
            });
        }
        let _g = self.lock_volume(pool, volume).await;
        let disks = self.existing_disks(OP, pool).await?;
        if opts.striped && disks.len() > 1 {
            return Err(Error::Unsupported {
                op: OP,
                engine: ENGINE,
                detail: Some(format!(
                    "striping across the {} disks of {pool}: a file volume lives on one disk",
                    disks.len()
                )),
            });
        }
        let size = round_up_to_extent(size_bytes, DEFAULT_EXTENT_BYTES);
        let existing = Self::find_volume(&disks, volume);
        let fresh = existing.is_none();
        if let Some((_, file)) = existing {
            let have = std::fs::metadata(&file).map_err(io(OP, &ctx, &file))?.len();
            if have < size {
                return Err(Error::Conflict {
                    op: OP,
                    ctx,
                    message: format!("exists with {have} bytes; requested {size} bytes"),
                });
            }
        } else {
            let space = self.space.lock().await;
            // The disk with the most free space.
            let mut best: Option<(&DiskMount, DiskUsage)> = None;
            for d in &disks {
                let u = self.usage(OP, pool, d)?;
                if best.is_none_or(|(_, b)| u.free > b.free) {
                    best = Some((d, u));
                }
            }
            let (disk, usage) = best.ok_or_else(|| Error::PoolNotFound {
                op: OP,
                pool: pool.to_owned(),
            })?;
            if usage.free < size {
                return Err(Error::InsufficientSpace {
                    op: OP,
                    pool: pool.to_owned(),
                    volume: volume.to_owned(),
                    requested: size,
                    available: usage.free,
                });
            }
            let dir = disk.volumes();
            std::fs::create_dir_all(&dir).map_err(io(OP, &ctx, &dir))?;
            let tmp = dir.join(format!(".{volume}{TMP_IMG}"));
            let f = std::fs::File::create(&tmp).map_err(io(OP, &ctx, &tmp))?;
            f.set_len(size).map_err(io(OP, &ctx, &tmp))?;
            drop(f);
            // The space is claimed (usage counts the temporary file): the slow part
            // (preallocation, fsyncs) runs without the lock, beside other creates.
            drop(space);
            if let Err(e) = self.allocate_file(OP, &ctx, &tmp, size).await {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            let file = disk.volume_file(volume);
            std::fs::rename(&tmp, &file).map_err(io(OP, &ctx, &file))?;
            fsync(OP, &ctx, &dir).await?;
        }
        let (disk, file) =
            Self::find_volume(&disks, volume).ok_or_else(|| Self::not_found(OP, pool, volume))?;
        self.attach(OP, pool, volume, &file, fresh).await?;
        self.info(OP, pool, volume, disk, &file, None).await
    }

    async fn delete_volume(&self, pool: &str, volume: &str) -> Result<()> {
        const OP: &str = "delete volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        let ctx = Context::volume(pool, volume);
        let _g = self.lock_volume(pool, volume).await;
        let disks = self.pool_disks(OP, pool).await?;
        if let Some((disk, file)) = Self::find_volume(&disks, volume) {
            self.detach(OP, pool, volume, &file).await?;
            std::fs::remove_file(&file).map_err(io(OP, &ctx, &file))?;
            fsync(OP, &ctx, &disk.volumes()).await?;
            // Let the filesystem finish freeing the blocks (XFS frees them in the
            // background) so the pool's free space shows the deletion. Best effort.
            let mountpoint = disk.mountpoint.clone();
            let _ = blocking_io(move || {
                let d = std::fs::File::open(&mountpoint)?;
                nix::unistd::syncfs(&d).map_err(std::io::Error::from)
            })
            .await;
        }
        // Leftovers of an interrupted create, and a stale link.
        for d in &disks {
            let tmp = d.volumes().join(format!(".{volume}{IMG}.tmp"));
            let _ = std::fs::remove_file(tmp);
        }
        self.remove_link(OP, pool, volume)
    }

    async fn extend_volume(&self, pool: &str, volume: &str, size_bytes: u64) -> Result<VolumeInfo> {
        const OP: &str = "extend volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        let ctx = Context::volume(pool, volume);
        let _g = self.lock_volume(pool, volume).await;
        let disks = self.existing_disks(OP, pool).await?;
        let (disk, file) =
            Self::find_volume(&disks, volume).ok_or_else(|| Self::not_found(OP, pool, volume))?;
        let size = round_up_to_extent(size_bytes, DEFAULT_EXTENT_BYTES);
        let current = std::fs::metadata(&file).map_err(io(OP, &ctx, &file))?.len();
        if size < current {
            return Err(Error::Shrink {
                op: OP,
                pool: pool.to_owned(),
                volume: volume.to_owned(),
                current,
                requested: size,
            });
        }
        if size > current {
            let _space = self.space.lock().await;
            let u = self.usage(OP, pool, disk)?;
            if size - current > u.free {
                return Err(Error::InsufficientSpace {
                    op: OP,
                    pool: pool.to_owned(),
                    volume: volume.to_owned(),
                    requested: size - current,
                    available: u.free,
                });
            }
            self.size_file(OP, &ctx, &file, size).await?;
        }
        // Refresh an attached loop device's capacity (also after a crash right after the
        // file grew).
        for l in self.loops_of(OP, &file).await? {
            if loop_size(&l.name) != Some(size) {
                self.run(
                    OP,
                    &ctx.clone().with_device(l.name.display()),
                    self.losetup.refresh(&l.name),
                )
                .await?;
            }
        }
        self.info(OP, pool, volume, disk, &file, None).await
    }

    async fn stat_volume(&self, pool: &str, volume: &str) -> Result<Option<VolumeInfo>> {
        const OP: &str = "stat volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        let disks = self.pool_disks(OP, pool).await?;
        match Self::find_volume(&disks, volume) {
            Some((disk, file)) => self
                .info(OP, pool, volume, disk, &file, None)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    async fn activate_volume(&self, pool: &str, volume: &str) -> Result<VolumeInfo> {
        const OP: &str = "activate volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        let _g = self.lock_volume(pool, volume).await;
        let disks = self.existing_disks(OP, pool).await?;
        let (disk, file) =
            Self::find_volume(&disks, volume).ok_or_else(|| Self::not_found(OP, pool, volume))?;
        self.attach(OP, pool, volume, &file, false).await?;
        self.info(OP, pool, volume, disk, &file, None).await
    }

    async fn deactivate_volume(&self, pool: &str, volume: &str) -> Result<()> {
        const OP: &str = "deactivate volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        let _g = self.lock_volume(pool, volume).await;
        let disks = self.pool_disks(OP, pool).await?;
        match Self::find_volume(&disks, volume) {
            Some((_, file)) => self.detach(OP, pool, volume, &file).await,
            None => self.remove_link(OP, pool, volume),
        }
    }

    async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeInfo>> {
        const OP: &str = "list volumes";
        if let Some(p) = pool {
            validate_pool(p)?;
        }
        let mounts = fs::list_mounts(self.runner.as_ref()).await?;
        let loops = loopdev::scan();
        let mut out = Vec::new();
        for (p, disks) in self.disks_from(&mounts, pool) {
            for d in &disks {
                for v in list_names(&d.volumes()) {
                    let file = d.volume_file(&v);
                    let host = Some((mounts.as_slice(), loops.as_slice()));
                    out.push(self.info(OP, &p, &v, d, &file, host).await?);
                }
            }
        }
        Ok(out)
    }

    async fn create_snapshot(
        &self,
        pool: &str,
        volume: &str,
        snapshot: &str,
        _size_bytes: u64,
    ) -> Result<SnapshotInfo> {
        const OP: &str = "create snapshot";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        names::validate("snapshot", snapshot)?;
        let ctx = Context::volume(pool, snapshot);
        let _g = self.lock_all().await;
        let disks = self.existing_disks(OP, pool).await?;
        let (disk, file) =
            Self::find_volume(&disks, volume).ok_or_else(|| Self::not_found(OP, pool, volume))?;
        let snap = disk.snapshot_file(snapshot);
        let origin_file = disk.snapshots().join(format!("{snapshot}{ORIGIN}"));
        if snap.is_file() {
            let origin = std::fs::read_to_string(&origin_file).unwrap_or_default();
            if origin.trim() == volume {
                return snapshot_info(pool, snapshot, volume, &snap, OP);
            }
            return Err(Error::Conflict {
                op: OP,
                ctx,
                message: format!("a snapshot {snapshot} of another volume exists"),
            });
        }
        let dir = disk.snapshots();
        std::fs::create_dir_all(&dir).map_err(io(OP, &ctx, &dir))?;
        // The origin goes first: a snapshot file without it is never committed.
        write_atomic(OP, &ctx, &origin_file, format!("{volume}\n").as_bytes())?;
        let tmp = dir.join(format!(".{snapshot}{IMG}.tmp"));
        // The page cache of a loop device in direct-IO mode holds nothing for the file, so
        // the reflink copy sees everything written so far. A filesystem on the volume should
        // be frozen (or the pod quiesced) by the caller for an application-consistent copy.
        reflink_copy(self, OP, &ctx, &file, &tmp).await?;
        std::fs::rename(&tmp, &snap).map_err(io(OP, &ctx, &snap))?;
        fsync(OP, &ctx, &dir).await?;
        snapshot_info(pool, snapshot, volume, &snap, OP)
    }

    async fn delete_snapshot(&self, pool: &str, snapshot: &str) -> Result<()> {
        const OP: &str = "delete snapshot";
        validate_pool(pool)?;
        names::validate("snapshot", snapshot)?;
        let ctx = Context::volume(pool, snapshot);
        let _g = self.lock_all().await;
        for d in self.pool_disks(OP, pool).await? {
            for p in [
                d.snapshot_file(snapshot),
                d.snapshots().join(format!("{snapshot}{ORIGIN}")),
                d.snapshots().join(format!(".{snapshot}{IMG}.tmp")),
            ] {
                match std::fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(OP, ctx.clone(), p, e)),
                }
            }
        }
        Ok(())
    }

    async fn list_snapshots(&self, pool: &str) -> Result<Vec<SnapshotInfo>> {
        const OP: &str = "list snapshots";
        validate_pool(pool)?;
        let mut out = Vec::new();
        for d in self.pool_disks(OP, pool).await? {
            for s in list_names(&d.snapshots()) {
                let origin = std::fs::read_to_string(d.snapshots().join(format!("{s}{ORIGIN}")))
                    .unwrap_or_default();
                out.push(snapshot_info(
                    pool,
                    &s,
                    origin.trim(),
                    &d.snapshot_file(&s),
                    OP,
                )?);
            }
        }
        Ok(out)
    }

    async fn restore_snapshot(
        &self,
        pool: &str,
        snapshot: &str,
        new_volume: &str,
    ) -> Result<VolumeInfo> {
        const OP: &str = "restore snapshot";
        validate_pool(pool)?;
        names::validate("snapshot", snapshot)?;
        names::validate("volume", new_volume)?;
        let ctx = Context::volume(pool, new_volume);
        let _g = self.lock_all().await;
        let disks = self.existing_disks(OP, pool).await?;
        let fresh = Self::find_volume(&disks, new_volume).is_none();
        if fresh {
            let disk = disks
                .iter()
                .find(|d| d.snapshot_file(snapshot).is_file())
                .ok_or_else(|| Self::not_found(OP, pool, snapshot))?;
            // A reflink copy shares blocks, but the new volume is accounted at full size.
            let size = std::fs::metadata(disk.snapshot_file(snapshot))
                .map_err(io(OP, &ctx, &disk.snapshot_file(snapshot)))?
                .len();
            let u = self.usage(OP, pool, disk)?;
            if u.free < size {
                return Err(Error::InsufficientSpace {
                    op: OP,
                    pool: pool.to_owned(),
                    volume: new_volume.to_owned(),
                    requested: size,
                    available: u.free,
                });
            }
            let tmp = disk.volumes().join(format!(".{new_volume}{IMG}.tmp"));
            reflink_copy(self, OP, &ctx, &disk.snapshot_file(snapshot), &tmp).await?;
            let file = disk.volume_file(new_volume);
            std::fs::rename(&tmp, &file).map_err(io(OP, &ctx, &file))?;
            fsync(OP, &ctx, &disk.volumes()).await?;
        }
        let (disk, file) = Self::find_volume(&disks, new_volume)
            .ok_or_else(|| Self::not_found(OP, pool, new_volume))?;
        self.attach(OP, pool, new_volume, &file, fresh).await?;
        self.info(OP, pool, new_volume, disk, &file, None).await
    }

    async fn rollback_snapshot(&self, pool: &str, volume: &str, snapshot: &str) -> Result<()> {
        const OP: &str = "rollback snapshot";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        names::validate("snapshot", snapshot)?;
        let ctx = Context::volume(pool, volume);
        let _g = self.lock_all().await;
        let disks = self.existing_disks(OP, pool).await?;
        let (disk, file) =
            Self::find_volume(&disks, volume).ok_or_else(|| Self::not_found(OP, pool, volume))?;
        let snap = disk.snapshot_file(snapshot);
        if !snap.is_file() {
            // Consumed by a completed rollback (or never existed).
            return Ok(());
        }
        let origin = std::fs::read_to_string(disk.snapshots().join(format!("{snapshot}{ORIGIN}")))
            .unwrap_or_default();
        if origin.trim() != volume {
            return Err(Error::Conflict {
                op: OP,
                ctx,
                message: format!("{snapshot} is not a snapshot of {volume}"),
            });
        }
        // The device must not be in use while its content is swapped.
        let was_active = !self.loops_of(OP, &file).await?.is_empty();
        self.detach(OP, pool, volume, &file).await?;
        // The snapshot becomes the volume (rename is atomic), like an lvm merge consumes it.
        std::fs::rename(&snap, &file).map_err(io(OP, &ctx, &file))?;
        let _ = std::fs::remove_file(disk.snapshots().join(format!("{snapshot}{ORIGIN}")));
        fsync(OP, &ctx, &disk.volumes()).await?;
        fsync(OP, &ctx, &disk.snapshots()).await?;
        if was_active {
            self.attach(OP, pool, volume, &file, false).await?;
        }
        Ok(())
    }
}

async fn reflink_copy(
    e: &FileEngine,
    op: &'static str,
    ctx: &Context,
    from: &Path,
    to: &Path,
) -> Result<()> {
    let _ = std::fs::remove_file(to);
    let cmd = Cmd::new("cp")
        .arg("--reflink=always")
        .arg(from.to_string_lossy())
        .arg(to.to_string_lossy())
        .timeout(e.cfg.timeout * 10);
    e.run(op, ctx, cmd).await?;
    fsync(op, ctx, to).await
}

fn snapshot_info(
    pool: &str,
    snapshot: &str,
    volume: &str,
    file: &Path,
    op: &'static str,
) -> Result<SnapshotInfo> {
    let size = std::fs::metadata(file)
        .map_err(io(op, &Context::volume(pool, snapshot), file))?
        .len();
    Ok(SnapshotInfo {
        pool: pool.to_owned(),
        name: snapshot.to_owned(),
        source_volume: volume.to_owned(),
        size_bytes: size,
        valid: true,
    })
}
