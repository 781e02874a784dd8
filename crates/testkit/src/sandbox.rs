//! A test directory whose mounts and loop devices are released on drop.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result};

use crate::block;
use crate::host::block_on;

/// Owns a directory for one test. On drop (also when the test panics) it unmounts
/// everything mounted below the directory, detaches every loop device backed by a file below
/// it (three rounds, for nested pools), removes the directory, then removes the extra
/// directories registered with [`Sandbox::remove_on_drop`] (test cgroups).
///
/// Creating a sandbox first releases and removes whatever a crashed earlier run with the same
/// path left behind.
#[derive(Debug)]
pub struct Sandbox {
    root: PathBuf,
    extra: Mutex<Vec<PathBuf>>,
}

/// A loop-backed "disk": a sparse file below a sandbox attached to a loop device. The
/// sandbox detaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopDisk {
    /// The loop device, e.g. `/dev/loop7`.
    pub dev: PathBuf,
    /// The backing file.
    pub file: PathBuf,
}

impl LoopDisk {
    /// Attach an existing file to a loop device. Whoever owns the file's directory (a
    /// [`Sandbox`] or a [`ReleaseOnDrop`]) detaches it.
    pub async fn attach(file: impl Into<PathBuf>) -> Result<LoopDisk> {
        let file = file.into();
        let dev = block::attach_loop(&file).await?;
        Ok(LoopDisk { dev, file })
    }

    /// Grow the backing file to `bytes` and refresh the loop device's size.
    pub async fn grow(&self, bytes: u64) -> Result<()> {
        block::grow_loop(&self.file, &self.dev, bytes).await
    }
}

impl Sandbox {
    /// `/tmp/hwameistor-t1-<name>-<pid>`.
    pub fn new(name: &str) -> Result<Self> {
        Self::at(format!("/tmp/hwameistor-t1-{name}-{}", std::process::id()))
    }

    /// A sandbox at `root` (created; cleaned first if it exists).
    pub fn at(root: impl Into<PathBuf>) -> Result<Self> {
        let sb = Sandbox {
            root: root.into(),
            extra: Mutex::new(Vec::new()),
        };
        sb.cleanup();
        std::fs::create_dir_all(&sb.root)
            .with_context(|| format!("create {}", sb.root.display()))?;
        Ok(sb)
    }

    /// The sandbox directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/p`.
    pub fn path(&self, p: impl AsRef<Path>) -> PathBuf {
        self.root.join(p)
    }

    /// Remove `dir` (an empty directory such as a test cgroup) after the sandbox is released.
    pub fn remove_on_drop(&self, dir: impl Into<PathBuf>) {
        self.extra
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir.into());
    }

    /// A sparse file `disks/<name>.img` of `size` bytes attached to a loop device.
    pub async fn loop_disk(&self, name: &str, size: u64) -> Result<LoopDisk> {
        let dir = self.path("disks");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join(format!("{name}.img"));
        std::fs::File::create(&file)
            .with_context(|| format!("create {}", file.display()))?
            .set_len(size)?;
        LoopDisk::attach(file).await
    }

    /// A sparse file `name` of `size` bytes directly below the root (not attached).
    pub fn sparse_file(&self, name: &str, size: u64) -> Result<PathBuf> {
        let p = self.path(name);
        std::fs::File::create(&p)
            .with_context(|| format!("create {}", p.display()))?
            .set_len(size)?;
        Ok(p)
    }

    /// Unmount, detach and remove everything below the root (what drop does).
    pub fn cleanup(&self) {
        release_blocking(&self.root);
        let _ = std::fs::remove_dir_all(&self.root);
        for d in self.extra.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// [`block::release_under`] from synchronous code (Drop), three rounds (nested pools need
/// them: a pool's volumes go before the pool's disk is free).
pub fn release_blocking(dir: &Path) {
    let dir = dir.to_path_buf();
    block_on(async move {
        for _ in 0..3 {
            block::release_under(&dir).await;
        }
    });
}

/// Releases mounts and loop devices below a directory on drop without removing it: for a
/// directory someone else owns (a `tempfile::TempDir`, a server's data directory).
#[derive(Debug)]
pub struct ReleaseOnDrop(pub PathBuf);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        release_blocking(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_paths_and_removes_the_directory() {
        let sb =
            Sandbox::at(std::env::temp_dir().join(format!("testkit-t0-{}", std::process::id())))
                .unwrap();
        let root = sb.root().to_path_buf();
        assert!(root.is_dir());
        let f = sb.sparse_file("x.img", 4096).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().len(), 4096);
        assert_eq!(sb.path("a/b"), root.join("a/b"));
        let extra = root.with_extension("extra");
        std::fs::create_dir_all(&extra).unwrap();
        sb.remove_on_drop(&extra);
        drop(sb);
        assert!(!root.exists());
        assert!(!extra.exists());
    }
}
