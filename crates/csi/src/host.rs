//! [`NodeOps`] on the real host, built on `hwameistor_engine::fs` (mkfs that never
//! overwrites a foreign filesystem, idempotent mount/unmount, online grow, statvfs, block
//! bind mounts). Every command goes through the [`hwameistor_exec::Runner`].

use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use hwameistor_engine::fs::{self, FsType};
use hwameistor_exec::{Cmd, SharedRunner};

use crate::node::{FsStats, NodeOps, NodeOpsError};

/// Node operations on this host.
#[derive(Clone)]
pub struct HostNodeOps {
    runner: SharedRunner,
}

impl std::fmt::Debug for HostNodeOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostNodeOps")
    }
}

impl HostNodeOps {
    pub fn new(runner: SharedRunner) -> Self {
        HostNodeOps { runner }
    }
}

fn map(e: hwameistor_engine::Error) -> NodeOpsError {
    use hwameistor_engine::Error as E;
    match e {
        E::Conflict { .. } => NodeOpsError::Busy(e.to_string()),
        E::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            NodeOpsError::NotFound(e.to_string())
        }
        e => NodeOpsError::Failed(e.to_string()),
    }
}

fn remove_target(target: &Path) -> Result<(), NodeOpsError> {
    let res = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir(target),
        Ok(_) => std::fs::remove_file(target),
    };
    res.map_err(|e| NodeOpsError::Failed(format!("remove {}: {e}", target.display())))
}

#[async_trait]
impl NodeOps for HostNodeOps {
    async fn mount_fs(
        &self,
        device: &Path,
        target: &Path,
        fs_type: &str,
        flags: &[String],
        readonly: bool,
    ) -> Result<bool, NodeOpsError> {
        let fs = FsType::from_str(fs_type).map_err(map)?;
        let outcome = fs::mkfs(self.runner.as_ref(), device, fs, &[])
            .await
            .map_err(map)?;
        let mut options: Vec<&str> = flags.iter().map(String::as_str).collect();
        if fs == FsType::Xfs && !options.contains(&"nouuid") {
            // Restored snapshots carry the source's XFS UUID; allow both to be mounted.
            options.push("nouuid");
        }
        if readonly {
            options.push("ro");
        }
        fs::mount(self.runner.as_ref(), device, target, fs, &options)
            .await
            .map_err(map)?;
        Ok(outcome == fs::MkfsOutcome::Formatted)
    }

    async fn mount_block(
        &self,
        device: &Path,
        target: &Path,
        readonly: bool,
    ) -> Result<(), NodeOpsError> {
        fs::bind_block(self.runner.as_ref(), device, target)
            .await
            .map_err(map)?;
        if readonly {
            let cmd = Cmd::new("mount")
                .args(["-o", "remount,bind,ro"])
                .arg(target.to_string_lossy())
                .timeout(Duration::from_secs(60));
            self.runner
                .run(&cmd)
                .await
                .map_err(|e| NodeOpsError::Failed(e.to_string()))?;
        }
        Ok(())
    }

    async fn unmount(&self, target: &Path) -> Result<(), NodeOpsError> {
        if std::fs::symlink_metadata(target).is_err() {
            return Ok(());
        }
        fs::unmount(self.runner.as_ref(), target)
            .await
            .map_err(map)?;
        remove_target(target)
    }

    async fn fs_stats(&self, path: &Path) -> Result<FsStats, NodeOpsError> {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(NodeOpsError::NotFound(path.display().to_string()));
        }
        let s = fs::stats(path).map_err(map)?;
        Ok(FsStats {
            total_bytes: s.total_bytes,
            available_bytes: s.available_bytes,
            used_bytes: s.used_bytes,
            total_inodes: s.total_inodes,
            free_inodes: s.free_inodes,
            used_inodes: s.used_inodes,
        })
    }

    async fn device_size(&self, device: &Path) -> Result<u64, NodeOpsError> {
        let mut f = std::fs::File::open(device).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => NodeOpsError::NotFound(device.display().to_string()),
            _ => NodeOpsError::Failed(format!("open {}: {e}", device.display())),
        })?;
        f.seek(SeekFrom::End(0))
            .map_err(|e| NodeOpsError::Failed(format!("size of {}: {e}", device.display())))
    }

    async fn grow_fs(&self, device: &Path, path: &Path) -> Result<u64, NodeOpsError> {
        if std::fs::symlink_metadata(path).is_err() {
            return Err(NodeOpsError::NotFound(path.display().to_string()));
        }
        fs::grow(self.runner.as_ref(), device, path)
            .await
            .map_err(map)?;
        Ok(fs::stats(path).map_err(map)?.total_bytes)
    }
}
