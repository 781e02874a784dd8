//! [`NodeOps`] on the real host, built on `hwameistor_engine::fs` (mkfs that never
//! overwrites a foreign filesystem, idempotent mount/unmount, online grow, statvfs, block
//! bind mounts) and `hwameistor_engine::luks` (LUKS2 containers of encrypted volumes: format
//! only a blank device, open, close, resize; the key on cryptsetup's stdin only). Every
//! command goes through the [`hwameistor_exec::Runner`].

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use hwameistor_engine::fs::{self, FsType};
use hwameistor_engine::luks::{self, Luks, Pbkdf, Secret};
use hwameistor_exec::{Cmd, SharedRunner};

use crate::node::{FsStats, NodeOps, NodeOpsError};

/// Node operations on this host.
#[derive(Clone)]
pub struct HostNodeOps {
    runner: SharedRunner,
    luks_pbkdf: Pbkdf,
}

impl std::fmt::Debug for HostNodeOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostNodeOps")
    }
}

impl HostNodeOps {
    pub fn new(runner: SharedRunner) -> Self {
        HostNodeOps {
            runner,
            luks_pbkdf: Pbkdf::Default,
        }
    }

    /// Key derivation of new LUKS containers (default: cryptsetup's argon2id). Tests under
    /// emulation use a fast PBKDF2; never do that in production.
    pub fn with_luks_pbkdf(mut self, pbkdf: Pbkdf) -> Self {
        self.luks_pbkdf = pbkdf;
        self
    }

    fn luks(&self) -> Luks {
        let mut l = Luks::new(self.runner.clone());
        l.pbkdf = self.luks_pbkdf;
        l
    }
}

fn map_luks(e: hwameistor_engine::Error) -> NodeOpsError {
    if luks::is_wrong_key(&e) {
        NodeOpsError::WrongKey(e.to_string())
    } else {
        map(e)
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

    async fn open_luks(
        &self,
        device: &Path,
        mapping: &str,
        key: &Secret,
    ) -> Result<PathBuf, NodeOpsError> {
        let l = self.luks();
        let path = luks::mapper_path(mapping);
        if path.exists() {
            // Already open (another publication on this node, or a repeat).
            return Ok(path);
        }
        // Formats only a blank device; a LUKS device is left alone; anything else is a
        // Conflict (FAILED_PRECONDITION), the device untouched.
        l.format(device, key).await.map_err(map)?;
        l.open(device, mapping, key).await.map_err(map_luks)
    }

    async fn close_luks(&self, mapping: &str) -> Result<(), NodeOpsError> {
        self.luks().close(mapping).await.map_err(map)
    }

    async fn resize_luks(&self, mapping: &str, key: &Secret) -> Result<(), NodeOpsError> {
        if !luks::mapper_path(mapping).exists() {
            return Err(NodeOpsError::NotFound(format!(
                "LUKS mapping {mapping} is not open on this node"
            )));
        }
        self.luks().resize(mapping, key).await.map_err(map)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_exec::{Output, RecordingRunner};
    use std::sync::Arc;

    fn key() -> Secret {
        Secret::new(b"host-ops-test-key".to_vec()).unwrap()
    }

    fn lines(r: &RecordingRunner) -> Vec<String> {
        r.calls().iter().map(|c| c.argv().join(" ")).collect()
    }

    #[tokio::test]
    async fn blank_device_is_formatted_then_opened_with_the_key_on_stdin() {
        let r = Arc::new(RecordingRunner::new());
        r.respond_prefix(&["cryptsetup", "isLuks"], Output::failed(1, ""));
        r.respond_prefix(&["blkid"], Output::failed(2, ""));
        r.respond_prefix(&["cryptsetup", "-q", "luksFormat"], Output::ok(""));
        r.respond_prefix(&["cryptsetup", "open"], Output::ok(""));
        let ops = HostNodeOps::new(r.clone()).with_luks_pbkdf(Pbkdf::Pbkdf2 { iterations: 1000 });
        let m = ops
            .open_luks(Path::new("/dev/vg/hwt-v1"), "hwt-v1-encrypt", &key())
            .await
            .unwrap();
        assert_eq!(m, Path::new("/dev/mapper/hwt-v1-encrypt"));
        let l = lines(&r);
        assert_eq!(l.len(), 4, "{l:?}");
        assert!(l[0].starts_with("cryptsetup isLuks"));
        assert!(l[1].starts_with("blkid"));
        assert!(
            l[2].contains("luksFormat --type luks2 --key-file=-"),
            "{l:?}"
        );
        assert!(
            l[3].ends_with("--key-file=- /dev/vg/hwt-v1 hwt-v1-encrypt"),
            "{l:?}"
        );
        for c in r.calls() {
            let dbg = format!("{c:?}");
            assert!(!dbg.contains("host-ops-test-key"), "{dbg}");
            assert!(!c.argv().iter().any(|a| a.contains("host-ops-test-key")));
        }
    }

    #[tokio::test]
    async fn foreign_device_is_refused_and_a_wrong_key_is_its_own_error() {
        let r = Arc::new(RecordingRunner::new());
        r.respond_prefix(&["cryptsetup", "isLuks"], Output::failed(1, ""));
        r.respond_prefix(&["blkid"], Output::ok("TYPE=xfs\n"));
        let ops = HostNodeOps::new(r.clone());
        let e = ops
            .open_luks(Path::new("/dev/vg/hwt-v2"), "hwt-v2-encrypt", &key())
            .await
            .unwrap_err();
        assert!(matches!(e, NodeOpsError::Busy(_)), "{e}");
        assert!(e.to_string().contains("xfs"), "{e}");
        assert!(
            !lines(&r)
                .iter()
                .any(|l| l.contains("luksFormat") || l.contains(" open ")),
            "nothing written: {:?}",
            lines(&r)
        );

        let r = Arc::new(RecordingRunner::new());
        r.respond_prefix(&["cryptsetup", "isLuks"], Output::ok(""));
        r.respond_prefix(
            &["cryptsetup", "open"],
            Output::failed(2, "No key available with this passphrase."),
        );
        let ops = HostNodeOps::new(r.clone());
        let e = ops
            .open_luks(Path::new("/dev/vg/hwt-v3"), "hwt-v3-encrypt", &key())
            .await
            .unwrap_err();
        assert!(matches!(e, NodeOpsError::WrongKey(_)), "{e}");
        assert!(!lines(&r).iter().any(|l| l.contains("luksFormat")));

        // Closing or resizing a mapping that is not open: no-op / not found, no command.
        let r = Arc::new(RecordingRunner::new());
        let ops = HostNodeOps::new(r.clone());
        ops.close_luks("hwt-v4-encrypt").await.unwrap();
        let e = ops.resize_luks("hwt-v4-encrypt", &key()).await.unwrap_err();
        assert!(matches!(e, NodeOpsError::NotFound(_)), "{e}");
        assert!(r.calls().is_empty());
    }
}
