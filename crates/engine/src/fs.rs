//! Filesystems on volume devices: make, mount, grow, measure, and bind block devices.
//!
//! All functions are idempotent:
//! - [`mkfs`] probes the device first (`blkid -p`): a blank device is formatted, a device
//!   that already carries the requested filesystem is left alone ("already formatted"), and a
//!   device with another filesystem or a partition table is refused ([`Error::Conflict`]).
//!   Data is never overwritten.
//! - [`mount`] succeeds when the same device is already mounted at the target and refuses a
//!   target occupied by another device; [`unmount`] of a target that is not mounted succeeds.
//! - [`grow`] grows a mounted filesystem online to the size of its device (`resize2fs`,
//!   `xfs_growfs -d`, `btrfs filesystem resize max`); a filesystem already filling its device
//!   grows by nothing.
//!
//! Device identity is compared by device number (major:minor), so `/dev/<VG>/<LV>`,
//! `/dev/mapper/<VG>-<LV>` and `/dev/dm-3` (or a symlink to `/dev/loop3`) are the same device.

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use hwameistor_exec::{Cmd, Runner};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// Filesystems we create and grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext4,
    Xfs,
    Btrfs,
}

impl FsType {
    pub const fn as_str(&self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ext4" => Ok(FsType::Ext4),
            "xfs" => Ok(FsType::Xfs),
            "btrfs" => Ok(FsType::Btrfs),
            other => Err(Error::Unsupported {
                op: "filesystem type",
                engine: crate::types::EngineKind::File,
                detail: Some(format!(
                    "filesystem {other:?} (supported: ext4, xfs, btrfs)"
                )),
            }),
        }
    }
}

/// What [`mkfs`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MkfsOutcome {
    /// The device was blank and is formatted now.
    Formatted,
    /// The device already had the requested filesystem; nothing was written.
    AlreadyFormatted,
}

/// What `blkid -p` says about a device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// Filesystem (or other content) type: `xfs`, `ext4`, `LVM2_member`, `crypto_LUKS`, ...
    pub fs_type: Option<String>,
    /// Filesystem UUID.
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// Partition table type (`gpt`, `dos`) when the device is partitioned.
    pub pt_type: Option<String>,
}

impl Probe {
    /// Nothing recognisable on the device.
    pub fn is_blank(&self) -> bool {
        self.fs_type.is_none() && self.pt_type.is_none()
    }
}

/// Parse `blkid -o export` output (`KEY=value` lines).
pub fn parse_blkid_export(out: &str) -> Probe {
    let mut p = Probe::default();
    for line in out.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = Some(v.to_owned());
        match k {
            "TYPE" => p.fs_type = v,
            "UUID" => p.uuid = v,
            "LABEL" => p.label = v,
            "PTTYPE" => p.pt_type = v,
            _ => {}
        }
    }
    p
}

fn dev_ctx(dev: &Path) -> Context {
    Context::device(dev.display())
}

/// Low-level probe of `dev` (`blkid -p -o export`; exit code 2 means nothing found).
pub async fn probe(runner: &dyn Runner, dev: &Path) -> Result<Probe> {
    const OP: &str = "probe device";
    let cmd = Cmd::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(dev.to_string_lossy());
    let out = runner
        .output(&cmd)
        .await
        .map_err(|e| Error::command(OP, dev_ctx(dev), e))?;
    match out.code {
        Some(0) => Ok(parse_blkid_export(&out.stdout)),
        Some(2) => Ok(Probe::default()),
        _ => Err(Error::command(
            OP,
            dev_ctx(dev),
            hwameistor_exec::Error::Failed {
                command: cmd.display(),
                code: out.code,
                stdout: out.stdout,
                stderr: out.stderr,
            },
        )),
    }
}

/// The command that formats `dev` with `fs` plus `extra` options (never forcing).
pub fn mkfs_cmd(dev: &Path, fs: FsType, extra: &[&str]) -> Cmd {
    let dev = dev.to_string_lossy().into_owned();
    let timeout = Duration::from_secs(600);
    match fs {
        // 4 KiB blocks always: mke2fs picks 1 KiB blocks for small (< 512 MiB) devices,
        // and current kernels refuse to grow those online (s_first_data_block != 0).
        FsType::Ext4 => Cmd::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-E", "nodiscard"])
            .args(extra.iter().copied())
            .arg(dev),
        FsType::Xfs => Cmd::new("mkfs.xfs")
            .args(["-q", "-K"])
            .args(extra.iter().copied())
            .arg(dev),
        FsType::Btrfs => Cmd::new("mkfs.btrfs")
            .args(["-q", "-K"])
            .args(extra.iter().copied())
            .arg(dev),
    }
    .timeout(timeout)
}

/// Format `dev` with `fs` unless it already carries `fs`. Refuses a device holding anything
/// else. `extra` are additional mkfs options (e.g. `["-m", "reflink=1"]` for XFS).
pub async fn mkfs(
    runner: &dyn Runner,
    dev: &Path,
    fs: FsType,
    extra: &[&str],
) -> Result<MkfsOutcome> {
    const OP: &str = "mkfs";
    let p = probe(runner, dev).await?;
    match (&p.fs_type, &p.pt_type) {
        (Some(t), _) if t == fs.as_str() => return Ok(MkfsOutcome::AlreadyFormatted),
        (Some(t), _) => {
            return Err(Error::Conflict {
                op: OP,
                ctx: dev_ctx(dev),
                message: format!("device holds {t}, not {fs}; refusing to format over it"),
            });
        }
        (None, Some(pt)) => {
            return Err(Error::Conflict {
                op: OP,
                ctx: dev_ctx(dev),
                message: format!("device has a {pt} partition table; refusing to format it"),
            });
        }
        (None, None) => {}
    }
    runner
        .run(&mkfs_cmd(dev, fs, extra))
        .await
        .map_err(|e| Error::command(OP, dev_ctx(dev), e))?;
    Ok(MkfsOutcome::Formatted)
}

/// One mount of the host, in the shape `findmnt` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MountEntry {
    /// `/dev/loop3`; `source[root]` for a mounted subtree, e.g. `udev[/loop3]` for a bind
    /// mount of a device node.
    pub source: String,
    pub target: PathBuf,
    pub fstype: String,
    #[serde(default)]
    pub options: String,
}

impl From<hwameistor_core::mountinfo::MountInfo> for MountEntry {
    fn from(m: hwameistor_core::mountinfo::MountInfo) -> Self {
        MountEntry {
            source: m.display_source(),
            target: PathBuf::from(m.mount_point),
            fstype: m.fs_type,
            options: m.options,
        }
    }
}

/// Parse mountinfo text into entries, in the kernel's order.
pub fn parse_mount_table(mountinfo: &str) -> Vec<MountEntry> {
    hwameistor_core::mountinfo::parse(mountinfo)
        .into_iter()
        .map(MountEntry::from)
        .collect()
}

fn mount_table(runner: &dyn Runner, op: &'static str) -> Result<Vec<MountEntry>> {
    let text = runner
        .mount_table()
        .map_err(|e| Error::io(op, Context::default(), Path::new("/proc/self/mountinfo"), e))?;
    Ok(parse_mount_table(&text))
}

/// Every mount of the host (the mount namespace the runner's commands run in). Read from
/// the kernel's mount table, so it costs no process.
pub async fn list_mounts(runner: &dyn Runner) -> Result<Vec<MountEntry>> {
    mount_table(runner, "list mounts")
}

/// What is mounted exactly at `target` (the last, visible mount), if anything.
pub async fn mount_at(runner: &dyn Runner, target: &Path) -> Result<Option<MountEntry>> {
    let canon = std::fs::canonicalize(target).ok();
    Ok(mount_table(runner, "find mount")?
        .into_iter()
        .rfind(|m| m.target == target || canon.as_deref() == Some(m.target.as_path())))
}

/// Device number (major, minor) of a block device node (symlinks followed).
pub fn device_number(dev: &Path) -> Option<(u64, u64)> {
    let md = std::fs::metadata(dev).ok()?;
    if !md.file_type().is_block_device() {
        return None;
    }
    let rdev = md.rdev();
    Some((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

/// True if the mount `source` (as findmnt prints it) is the device `dev`: same path, same
/// device number, or a bind mount of the device node (`udev[/loop3]`).
pub fn source_is(source: &str, dev: &Path) -> bool {
    let canon = std::fs::canonicalize(dev).unwrap_or_else(|_| dev.to_path_buf());
    if Path::new(source) == dev || Path::new(source) == canon {
        return true;
    }
    if let (Some(a), Some(b)) = (device_number(Path::new(source)), device_number(dev)) {
        return a == b;
    }
    // Bind mount of a device node from devtmpfs: "udev[/loop3]", "devtmpfs[/mapper/x]".
    if let (Some(start), true) = (source.find('['), source.ends_with(']')) {
        let inner = &source[start + 1..source.len() - 1];
        let inner_dev = Path::new("/dev").join(inner.trim_start_matches('/'));
        if inner_dev == canon || inner_dev == dev {
            return true;
        }
        if let (Some(a), Some(b)) = (device_number(&inner_dev), device_number(dev)) {
            return a == b;
        }
    }
    false
}

/// Where `dev` is mounted (all its mounts).
pub async fn mounts_of(runner: &dyn Runner, dev: &Path) -> Result<Vec<MountEntry>> {
    Ok(list_mounts(runner)
        .await?
        .into_iter()
        .filter(|m| source_is(&m.source, dev))
        .collect())
}

fn mkdir_p(op: &'static str, ctx: &Context, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(op, ctx.clone(), dir, e))
}

/// Mount `dev` (filesystem `fstype`, options `options`) at `target`, creating the directory.
/// Already mounted there: success. Another device mounted there: Conflict.
pub async fn mount(
    runner: &dyn Runner,
    dev: &Path,
    target: &Path,
    fstype: FsType,
    options: &[&str],
) -> Result<()> {
    const OP: &str = "mount";
    let ctx = dev_ctx(dev);
    mkdir_p(OP, &ctx, target)?;
    if let Some(m) = mount_at(runner, target).await? {
        if source_is(&m.source, dev) {
            return Ok(());
        }
        return Err(Error::Conflict {
            op: OP,
            ctx,
            message: format!("{} is already mounted from {}", target.display(), m.source),
        });
    }
    let mut cmd = Cmd::new("mount").args(["-t", fstype.as_str()]);
    if !options.is_empty() {
        cmd = cmd.args(["-o".to_owned(), options.join(",")]);
    }
    let cmd = cmd
        .arg(dev.to_string_lossy())
        .arg(target.to_string_lossy())
        .timeout(Duration::from_secs(120));
    runner
        .run(&cmd)
        .await
        .map_err(|e| Error::command(OP, ctx, e))?;
    Ok(())
}

/// Unmount whatever is mounted at `target` (every stacked mount); not mounted = success.
pub async fn unmount(runner: &dyn Runner, target: &Path) -> Result<()> {
    const OP: &str = "unmount";
    // Bounded: a target cannot have more stacked mounts than this in our use.
    for _ in 0..16 {
        if mount_at(runner, target).await?.is_none() {
            return Ok(());
        }
        let cmd = Cmd::new("umount")
            .arg(target.to_string_lossy())
            .timeout(Duration::from_secs(120));
        runner
            .run(&cmd)
            .await
            .map_err(|e| Error::command(OP, Context::device(target.display()), e))?;
    }
    Err(Error::Conflict {
        op: OP,
        ctx: Context::device(target.display()),
        message: "still mounted after 16 unmounts".into(),
    })
}

/// Grow the filesystem mounted at `mountpoint` (from device `dev`) to fill the device, online.
pub async fn grow(runner: &dyn Runner, dev: &Path, mountpoint: &Path) -> Result<()> {
    const OP: &str = "grow filesystem";
    let ctx = dev_ctx(dev);
    let m = mount_at(runner, mountpoint)
        .await?
        .ok_or_else(|| Error::InvalidArgument {
            op: OP,
            ctx: ctx.clone(),
            message: format!(
                "{} is not mounted; online grow needs a mount",
                mountpoint.display()
            ),
        })?;
    if !source_is(&m.source, dev) {
        return Err(Error::Conflict {
            op: OP,
            ctx,
            message: format!("{} is mounted from {}", mountpoint.display(), m.source),
        });
    }
    // resize2fs recognises a mounted device only by its real node (not a symlink to it).
    let real = std::fs::canonicalize(dev).unwrap_or_else(|_| dev.to_path_buf());
    let cmd = match m.fstype.parse::<FsType>()? {
        FsType::Ext4 => Cmd::new("resize2fs").arg(real.to_string_lossy()),
        FsType::Xfs => Cmd::new("xfs_growfs")
            .arg("-d")
            .arg(mountpoint.to_string_lossy()),
        FsType::Btrfs => Cmd::new("btrfs")
            .args(["filesystem", "resize", "max"])
            .arg(mountpoint.to_string_lossy()),
    }
    .timeout(Duration::from_secs(600));
    runner
        .run(&cmd)
        .await
        .map_err(|e| Error::command(OP, ctx, e))?;
    Ok(())
}

/// Space and inode usage of a mounted filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStats {
    pub total_bytes: u64,
    /// Bytes unprivileged users can still write.
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub used_inodes: u64,
}

/// `statvfs(path)`: bytes and inodes of the filesystem holding `path`.
pub fn stats(path: &Path) -> Result<FsStats> {
    let s = nix::sys::statvfs::statvfs(path).map_err(|e| {
        Error::io(
            "filesystem stats",
            Context::device(path.display()),
            path,
            std::io::Error::from(e),
        )
    })?;
    let frsize = s.fragment_size();
    let total = s.blocks().saturating_mul(frsize);
    let free = s.blocks_free().saturating_mul(frsize);
    let avail = s.blocks_available().saturating_mul(frsize);
    let files = s.files();
    let ffree = s.files_free();
    Ok(FsStats {
        total_bytes: total,
        available_bytes: avail,
        used_bytes: total.saturating_sub(free),
        total_inodes: files,
        free_inodes: ffree,
        used_inodes: files.saturating_sub(ffree),
    })
}

/// Block-mode publish: make `target` a file and bind-mount the device node `dev` onto it.
/// Already bound to the same device: success.
pub async fn bind_block(runner: &dyn Runner, dev: &Path, target: &Path) -> Result<()> {
    const OP: &str = "bind block device";
    let ctx = dev_ctx(dev);
    if device_number(dev).is_none() {
        return Err(Error::InvalidArgument {
            op: OP,
            ctx,
            message: "not a block device".into(),
        });
    }
    if let Some(parent) = target.parent() {
        mkdir_p(OP, &ctx, parent)?;
    }
    if let Some(m) = mount_at(runner, target).await? {
        if source_is(&m.source, dev) {
            return Ok(());
        }
        return Err(Error::Conflict {
            op: OP,
            ctx,
            message: format!("{} is already mounted from {}", target.display(), m.source),
        });
    }
    if !target.exists() {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(target)
            .map_err(|e| Error::io(OP, ctx.clone(), target, e))?;
    }
    let canon = std::fs::canonicalize(dev).unwrap_or_else(|_| dev.to_path_buf());
    let cmd = Cmd::new("mount")
        .arg("--bind")
        .arg(canon.to_string_lossy())
        .arg(target.to_string_lossy());
    runner
        .run(&cmd)
        .await
        .map_err(|e| Error::command(OP, ctx, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_exec::{Output, RecordingRunner};

    #[test]
    fn parses_blkid_export() {
        let p = parse_blkid_export(
            "DEVNAME=/dev/loop3\nUUID=6f1c0c77-1f8e-4a3e-9d1e-2f2a0c5c8d11\nBLOCK_SIZE=512\nTYPE=xfs\n",
        );
        assert_eq!(p.fs_type.as_deref(), Some("xfs"));
        assert_eq!(
            p.uuid.as_deref(),
            Some("6f1c0c77-1f8e-4a3e-9d1e-2f2a0c5c8d11")
        );
        assert!(!p.is_blank());
        let p = parse_blkid_export("DEVNAME=/dev/sdb\nPTUUID=abc\nPTTYPE=gpt\n");
        assert_eq!(p.pt_type.as_deref(), Some("gpt"));
        assert!(!p.is_blank());
        assert!(parse_blkid_export("").is_blank());
    }

    #[test]
    fn reads_the_mount_table() {
        let text = "22 1 7:3 / /var/lib/x rw,relatime - xfs /dev/loop3 rw,attr2\n\
            40 22 0:5 /loop4 /var/lib/kubelet/pods/p/volumeDevices/v rw - devtmpfs udev rw\n";
        let m = parse_mount_table(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, PathBuf::from("/var/lib/x"));
        assert_eq!(m[0].options, "rw,relatime,attr2");
        assert_eq!(m[1].source, "udev[/loop4]");
        assert_eq!(m[1].fstype, "devtmpfs");
        assert!(parse_mount_table("").is_empty());
    }

    #[test]
    fn source_matching() {
        assert!(source_is("/dev/loop3", Path::new("/dev/loop3")));
        assert!(source_is("udev[/loop3]", Path::new("/dev/loop3")));
        assert!(!source_is("/dev/loop4", Path::new("/dev/loop3")));
        assert!(!source_is("tmpfs", Path::new("/dev/loop3")));
    }

    #[test]
    fn fs_type_parsing() {
        assert_eq!("XFS".parse::<FsType>().unwrap(), FsType::Xfs);
        assert_eq!("ext4".parse::<FsType>().unwrap(), FsType::Ext4);
        assert!(matches!(
            "ntfs".parse::<FsType>(),
            Err(Error::Unsupported { .. })
        ));
    }

    #[tokio::test]
    async fn mkfs_formats_blank_devices_only() {
        let dev = Path::new("/dev/vol1");
        let blkid = ["blkid", "-p", "-o", "export", "/dev/vol1"];

        let fake = RecordingRunner::new();
        fake.respond(&blkid, Output::failed(2, ""));
        fake.respond(
            &["mkfs.xfs", "-q", "-K", "-m", "reflink=1", "/dev/vol1"],
            Output::ok(""),
        );
        assert_eq!(
            mkfs(&fake, dev, FsType::Xfs, &["-m", "reflink=1"])
                .await
                .unwrap(),
            MkfsOutcome::Formatted
        );

        let fake = RecordingRunner::new();
        fake.respond(&blkid, Output::ok("TYPE=ext4\n"));
        assert_eq!(
            mkfs(&fake, dev, FsType::Ext4, &[]).await.unwrap(),
            MkfsOutcome::AlreadyFormatted
        );
        let err = mkfs(&fake, dev, FsType::Xfs, &[]).await.unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("holds ext4"), "{err}");
        assert_eq!(
            fake.command_lines()
                .iter()
                .filter(|l| l.starts_with("mkfs"))
                .count(),
            0
        );

        let fake = RecordingRunner::new();
        fake.respond(&blkid, Output::ok("PTTYPE=dos\n"));
        assert!(matches!(
            mkfs(&fake, dev, FsType::Ext4, &[]).await,
            Err(Error::Conflict { .. })
        ));

        let fake = RecordingRunner::new();
        fake.respond(
            &blkid,
            Output::failed(4, "blkid: error: /dev/vol1: No such file or directory"),
        );
        assert!(matches!(
            mkfs(&fake, dev, FsType::Ext4, &[]).await,
            Err(Error::Command { .. })
        ));
    }

    #[tokio::test]
    async fn unmount_of_unmounted_target_is_a_noop() {
        let fake = RecordingRunner::new();
        fake.set_mount_table("22 1 7:3 / /mnt/y rw - xfs /dev/loop3 rw\n");
        unmount(&fake, Path::new("/mnt/x")).await.unwrap();
        assert!(fake.command_lines().is_empty());
    }

    #[tokio::test]
    async fn grow_picks_the_tool_by_fstype() {
        for (fstype, expect) in [
            ("ext4", "resize2fs /dev/loop3"),
            ("xfs", "xfs_growfs -d /mnt/v"),
            ("btrfs", "btrfs filesystem resize max /mnt/v"),
        ] {
            let fake = RecordingRunner::new();
            fake.set_mount_table(format!("22 1 7:3 / /mnt/v rw - {fstype} /dev/loop3 rw\n"));
            fake.respond(&expect.split(' ').collect::<Vec<_>>(), Output::ok(""));
            grow(&fake, Path::new("/dev/loop3"), Path::new("/mnt/v"))
                .await
                .unwrap();
            assert_eq!(fake.command_lines().last().unwrap(), expect);
        }
    }

    #[test]
    fn stats_of_tmp() {
        let s = stats(Path::new("/")).unwrap();
        assert!(s.total_bytes > 0);
        assert!(s.used_bytes <= s.total_bytes);
        assert!(s.available_bytes <= s.total_bytes);
    }
}
