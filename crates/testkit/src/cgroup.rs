//! Running a child inside a test cgroup (to measure IO throttling), and finding this
//! process's own cgroup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hwameistor_exec::{Cmd, Runner, TokioRunner};

use crate::host::run_blocking;

/// Puts this test process into the cgroup `target` while a child is spawned (the child
/// inherits it) and back into `original` afterwards. On drop: back to `original`, remove
/// `target`, and unmount a hierarchy the test mounted for the occasion.
#[derive(Debug)]
pub struct CgroupVisit {
    target: PathBuf,
    original: PathBuf,
    mounted: Option<PathBuf>,
}

impl CgroupVisit {
    /// Visits `target` from `original` (both cgroup directories).
    pub fn new(target: impl Into<PathBuf>, original: impl Into<PathBuf>) -> Self {
        CgroupVisit {
            target: target.into(),
            original: original.into(),
            mounted: None,
        }
    }

    /// Also unmount this cgroup hierarchy on drop.
    pub fn unmount_on_drop(mut self, mountpoint: Option<PathBuf>) -> Self {
        self.mounted = mountpoint;
        self
    }

    /// Run `cmd` as a child of this process while it sits in the target cgroup; the wall
    /// time it took.
    pub async fn run_inside(&self, cmd: Cmd) -> Result<Duration> {
        let procs = self.target.join("cgroup.procs");
        std::fs::write(&procs, std::process::id().to_string())
            .with_context(|| format!("join {}", procs.display()))?;
        let start = Instant::now();
        let res = TokioRunner.run(&cmd).await;
        let elapsed = start.elapsed();
        self.leave()?;
        res?;
        Ok(elapsed)
    }

    /// Move this process back into the original cgroup.
    pub fn leave(&self) -> Result<()> {
        std::fs::write(
            self.original.join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .with_context(|| format!("back to {}", self.original.display()))
    }
}

impl Drop for CgroupVisit {
    fn drop(&mut self) {
        let _ = self.leave();
        let _ = std::fs::remove_dir(&self.target);
        if let Some(m) = &self.mounted {
            let _ = run_blocking(Cmd::new("umount").arg(m.to_string_lossy()));
        }
    }
}

/// This process's cgroup path (relative, no leading `/`) in the v1 hierarchy of
/// `controller` (e.g. `blkio`), from `/proc/self/cgroup`.
pub fn own_v1(controller: &str) -> Result<PathBuf> {
    own_in(
        &std::fs::read_to_string("/proc/self/cgroup")?,
        Some(controller),
    )
}

/// This process's cgroup path (relative) in the unified (v2) hierarchy.
pub fn own_v2() -> Result<PathBuf> {
    own_in(&std::fs::read_to_string("/proc/self/cgroup")?, None)
}

fn own_in(text: &str, controller: Option<&str>) -> Result<PathBuf> {
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = (parts.next(), parts.next(), parts.next());
        let path = path.unwrap_or("/").trim_start_matches('/');
        match (controller, ctrl) {
            (Some(want), Some(c)) if c.split(',').any(|x| x == want) => {
                return Ok(PathBuf::from(path));
            }
            (None, Some("")) => return Ok(PathBuf::from(path)),
            _ => {}
        }
    }
    bail!(
        "cannot find own cgroup for {}",
        controller.unwrap_or("the unified hierarchy")
    )
}

/// `/sys/fs/cgroup/<controller>/<own v1 path>`.
pub fn own_v1_dir(controller: &str) -> Result<PathBuf> {
    Ok(Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(own_v1(controller)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_cgroup_lines() {
        let t = "12:blkio:/docker/abc\n11:cpu,cpuacct:/docker/abc\n0::/user.slice/x\n";
        assert_eq!(own_in(t, Some("blkio")).unwrap(), Path::new("docker/abc"));
        assert_eq!(own_in(t, Some("cpu")).unwrap(), Path::new("docker/abc"));
        assert_eq!(own_in(t, None).unwrap(), Path::new("user.slice/x"));
        assert!(own_in("0::/\n", Some("blkio")).is_err());
        assert_eq!(own_in("0::/\n", None).unwrap(), Path::new(""));
    }
}
