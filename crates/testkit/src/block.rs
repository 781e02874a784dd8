//! Block devices, loop devices and the mount table.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use hwameistor_exec::{Cmd, Runner, TokioRunner};

const LOSETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `blockdev --getsize64 DEV`: the device's size in bytes.
pub async fn blockdev_size(dev: &Path) -> Result<u64> {
    let out = TokioRunner
        .run(
            &Cmd::new("blockdev")
                .arg("--getsize64")
                .arg(dev.to_string_lossy()),
        )
        .await?;
    out.stdout
        .trim()
        .parse()
        .with_context(|| format!("blockdev --getsize64 {}: {:?}", dev.display(), out.stdout))
}

/// Attach `file` to the first free loop device (`losetup --find --show`); the device path.
pub async fn attach_loop(file: &Path) -> Result<PathBuf> {
    let out = TokioRunner
        .run(
            &Cmd::new("losetup")
                .args(["--find", "--show"])
                .arg(file.to_string_lossy())
                .timeout(LOSETUP_TIMEOUT),
        )
        .await?;
    let dev = out.stdout.trim();
    if !dev.starts_with("/dev/loop") {
        bail!("losetup printed {dev:?} for {}", file.display());
    }
    Ok(PathBuf::from(dev))
}

/// `losetup -d DEV`.
pub async fn detach_loop(dev: &Path) -> Result<()> {
    TokioRunner
        .run(
            &Cmd::new("losetup")
                .arg("-d")
                .arg(dev.to_string_lossy())
                .timeout(LOSETUP_TIMEOUT),
        )
        .await?;
    Ok(())
}

/// Grow the backing `file` of loop device `dev` to `bytes` and make the kernel see the new
/// size (`losetup -c`).
pub async fn grow_loop(file: &Path, dev: &Path, bytes: u64) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .with_context(|| format!("open {}", file.display()))?
        .set_len(bytes)?;
    TokioRunner
        .run(
            &Cmd::new("losetup")
                .arg("-c")
                .arg(dev.to_string_lossy())
                .timeout(LOSETUP_TIMEOUT),
        )
        .await?;
    Ok(())
}

/// One attached loop device as `losetup -J -l -O NAME,BACK-FILE` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopInfo {
    pub name: PathBuf,
    /// The backing file (may end in ` (deleted)`).
    pub back_file: String,
}

/// Parse `losetup -J -l -O NAME,BACK-FILE` (empty output: no loop devices).
pub fn parse_losetup(json: &str) -> Result<Vec<LoopInfo>> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let v: serde_json::Value = serde_json::from_str(json).context("losetup JSON")?;
    Ok(v["loopdevices"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| {
            Some(LoopInfo {
                name: PathBuf::from(d["name"].as_str()?),
                back_file: d["back-file"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect())
}

/// Every attached loop device.
pub async fn loop_devices() -> Result<Vec<LoopInfo>> {
    let out = TokioRunner
        .run(
            &Cmd::new("losetup")
                .args(["-J", "-l", "-O", "NAME,BACK-FILE"])
                .timeout(LOSETUP_TIMEOUT),
        )
        .await?;
    parse_losetup(&out.stdout)
}

/// Loop devices whose backing file lies below `dir`, deepest backing path first.
pub async fn loops_below(dir: &Path) -> Result<Vec<LoopInfo>> {
    let mut loops: Vec<LoopInfo> = loop_devices()
        .await?
        .into_iter()
        .filter(|l| Path::new(&l.back_file).starts_with(dir))
        .collect();
    loops.sort_by_key(|l| std::cmp::Reverse(l.back_file.len()));
    Ok(loops)
}

pub use hwameistor_disk::probe::{Mount, parse_mountinfo};

/// The mount table of this process (`/proc/self/mountinfo`, parsed by the disk manager's
/// parser).
pub fn mounts() -> Vec<Mount> {
    parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The filesystem type mounted at `target` (the topmost mount there), if anything is.
pub fn mount_fstype(target: impl AsRef<Path>) -> Option<String> {
    mounts()
        .into_iter()
        .rev()
        .find(|m| Path::new(&m.mount_point) == target.as_ref())
        .map(|m| m.fs_type)
}

/// How many mounts sit exactly at `target`.
pub fn mount_count(target: impl AsRef<Path>) -> usize {
    mounts()
        .iter()
        .filter(|m| Path::new(&m.mount_point) == target.as_ref())
        .count()
}

/// Release what lies below `dir`: unmount every mount below it (deepest first), then detach
/// every loop device backed by a file below it (deepest backing path first: volumes before
/// the pool disks that hold them). Best effort: a busy mount or device is left for the next
/// round (a loop device detached while in use is freed by the kernel once unused), so callers
/// repeat it a few times. Never unmounts lazily: a lazily unmounted pool would hide the
/// backing paths of the loop devices still open on it.
pub async fn release_under(dir: &Path) {
    let mut targets: Vec<PathBuf> = mounts()
        .into_iter()
        .map(|m| PathBuf::from(m.mount_point))
        .filter(|t| t.starts_with(dir) && t != Path::new("/"))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.as_os_str().len()));
    targets.dedup();
    for t in targets {
        let _ = TokioRunner
            .run(&Cmd::new("umount").arg(t.to_string_lossy()))
            .await;
    }
    if let Ok(loops) = loops_below(dir).await {
        for l in loops {
            let _ = detach_loop(&l.name).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_losetup_json() {
        assert!(parse_losetup("").unwrap().is_empty());
        let j = r#"{"loopdevices":[{"name":"/dev/loop3","back-file":"/tmp/x/d1.img"},
            {"name":"/dev/loop4","back-file":"/tmp/y/a b.img (deleted)"}]}"#;
        let l = parse_losetup(j).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].name, Path::new("/dev/loop3"));
        assert_eq!(l[1].back_file, "/tmp/y/a b.img (deleted)");
        assert!(parse_losetup("{").is_err());
    }

    #[test]
    fn this_process_sees_its_root_mount() {
        assert!(mount_fstype("/").is_some());
        assert!(mount_count("/") >= 1);
        assert_eq!(mount_fstype("/no/such/mount/point"), None);
    }
}
