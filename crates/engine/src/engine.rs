//! The [`VolumeEngine`] trait and the choice of engine for a node.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use hwameistor_exec::{Cmd, Runner, SharedRunner};

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::lvm::thin::{ThinPoolInfo, ThinPoolRequest};
use crate::types::{EngineKind, PoolInfo, SnapshotInfo, VolumeInfo, VolumeOptions};

/// Why an engine without thin pools refuses thin provisioning.
pub const NO_THIN_POOLS: &str = "this engine has no thin pools (only the lvm engine has them; \
     the file engine's sparse files allocate on write, but have no pool to over-provision \
     against), so a thin volume cannot be created here";

/// A shared, dynamically dispatched engine, the form the node agent and CSI node hold.
pub type SharedEngine = Arc<dyn VolumeEngine>;

/// Pools and volumes on one node.
///
/// Contract for every implementation:
/// - **Idempotent.** Each mutating call describes a desired end state; running it again
///   after a crash (or twice) finishes the step or does nothing. Creating a volume that
///   already exists with the requested size and layout succeeds; deleting a missing volume
///   succeeds; extending to the current size succeeds.
/// - **Only ours.** Pools are named `LocalStorage_Pool*` and carry our marker (an LVM tag, a
///   marker file); volumes carry it too. Anything unmarked is never listed, changed or
///   deleted; touching it is an [`Error::Conflict`].
/// - **Names validated** with `hwameistor_core::names::validate` before they reach argv or a
///   path ([`Error::InvalidName`]).
/// - **Sizes** are rounded up to the pool's extent; shrinking is refused ([`Error::Shrink`]);
///   a pool without room answers [`Error::InsufficientSpace`].
/// - Operations an engine does not implement answer [`Error::Unsupported`].
#[async_trait]
pub trait VolumeEngine: Send + Sync + fmt::Debug {
    /// Which implementation this is.
    fn kind(&self) -> EngineKind;

    /// Make `pool` exist and contain every disk in `disks`: create it from the disks if it
    /// does not exist, else add the disks not yet in it (disks already in it are skipped).
    /// After a restart, calling it again with the same disks brings the pool back (the file
    /// engine re-mounts its filesystems).
    async fn ensure_pool(&self, pool: &str, disks: &[PathBuf]) -> Result<PoolInfo>;

    /// Capacity and content of one pool, `None` if it does not exist (or is not ours).
    async fn pool_info(&self, pool: &str) -> Result<Option<PoolInfo>>;

    /// Every pool of ours on this node.
    async fn list_pools(&self) -> Result<Vec<PoolInfo>>;

    /// Create `volume` of at least `size_bytes` in `pool` and make its device usable.
    async fn create_volume(
        &self,
        pool: &str,
        volume: &str,
        size_bytes: u64,
        opts: &VolumeOptions,
    ) -> Result<VolumeInfo>;

    /// Delete `volume` and free its space. A missing volume is success. The device must not
    /// be in use (mounted); the engine refuses rather than destroying data under a user.
    async fn delete_volume(&self, pool: &str, volume: &str) -> Result<()>;

    /// Grow `volume` to at least `size_bytes` (rounded up to extents). Not the filesystem:
    /// see [`crate::fs::grow`].
    async fn extend_volume(&self, pool: &str, volume: &str, size_bytes: u64) -> Result<VolumeInfo>;

    /// Look a volume up; `None` if it does not exist (or is not ours).
    async fn stat_volume(&self, pool: &str, volume: &str) -> Result<Option<VolumeInfo>>;

    /// Make the volume's device usable (lvm: activate the LV; file: attach the loop device
    /// and point the stable symlink at it). Idempotent; this is how volumes come back after
    /// the agent or the host restarts.
    async fn activate_volume(&self, pool: &str, volume: &str) -> Result<VolumeInfo>;

    /// Release the volume's device without deleting data (lvm: deactivate; file: detach
    /// the loop device). Idempotent.
    async fn deactivate_volume(&self, pool: &str, volume: &str) -> Result<()>;

    /// Every volume of ours, in `pool` or in all pools.
    async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeInfo>>;

    /// Volumes of ours that the caller does not know (`known` holds volume names). They are
    /// reported, never deleted here.
    async fn find_orphans(&self, known: &HashSet<String>) -> Result<Vec<VolumeInfo>> {
        Ok(self
            .list_volumes(None)
            .await?
            .into_iter()
            .filter(|v| !known.contains(&v.name))
            .collect())
    }

    /// Activate every volume of ours (after a restart). Returns the volumes, or the first
    /// error after trying all of them.
    async fn activate_all(&self) -> Result<Vec<VolumeInfo>> {
        let mut out = Vec::new();
        let mut first_err = None;
        for v in self.list_volumes(None).await? {
            match self.activate_volume(&v.pool, &v.name).await {
                Ok(v) => out.push(v),
                Err(e) => {
                    tracing::warn!(pool = %v.pool, volume = %v.name, error = %e, "activate failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Take a point-in-time snapshot `snapshot` of `volume` (with `size_bytes` of room for
    /// changes where the engine needs it).
    async fn create_snapshot(
        &self,
        _pool: &str,
        _volume: &str,
        _snapshot: &str,
        _size_bytes: u64,
    ) -> Result<SnapshotInfo> {
        Err(Error::unsupported("create_snapshot", self.kind()))
    }

    /// Delete a snapshot; a missing snapshot is success.
    async fn delete_snapshot(&self, _pool: &str, _snapshot: &str) -> Result<()> {
        Err(Error::unsupported("delete_snapshot", self.kind()))
    }

    /// Snapshots of ours in `pool`.
    async fn list_snapshots(&self, _pool: &str) -> Result<Vec<SnapshotInfo>> {
        Err(Error::unsupported("list_snapshots", self.kind()))
    }

    /// Create `new_volume` holding the snapshot's data.
    async fn restore_snapshot(
        &self,
        _pool: &str,
        _snapshot: &str,
        _new_volume: &str,
    ) -> Result<VolumeInfo> {
        Err(Error::unsupported("restore_snapshot", self.kind()))
    }

    /// The thin pool of `pool` (usage, ratio, provisioned bytes), `None` when there is none.
    /// Engines without thin pools always answer `None`.
    async fn thin_pool(&self, _pool: &str) -> Result<Option<ThinPoolInfo>> {
        Ok(None)
    }

    /// Create the thin pool of `pool`, or grow it to at least `req` (never shrinks), and set
    /// its over-provision ratio. Engines without thin pools answer [`Error::Unsupported`].
    async fn ensure_thin_pool(&self, _pool: &str, _req: &ThinPoolRequest) -> Result<ThinPoolInfo> {
        Err(Error::Unsupported {
            op: "ensure thin pool",
            engine: self.kind(),
            detail: Some(NO_THIN_POOLS.into()),
        })
    }

    /// Remove the thin pool of `pool`; refused ([`Error::Conflict`]) while it holds thin
    /// volumes or snapshots; no thin pool is success.
    async fn remove_thin_pool(&self, _pool: &str) -> Result<()> {
        Ok(())
    }

    /// Roll `volume` back to the snapshot's content (the snapshot is consumed).
    async fn rollback_snapshot(&self, _pool: &str, _volume: &str, _snapshot: &str) -> Result<()> {
        Err(Error::unsupported("rollback_snapshot", self.kind()))
    }
}

/// What engine selection needs to know about the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostFacts {
    /// The device-mapper driver is loaded (`/sys/module/dm_mod` or
    /// `/sys/class/misc/device-mapper`).
    pub device_mapper: bool,
    /// The lvm2 tools run (`lvm version` succeeds).
    pub lvm2: bool,
}

/// Pure engine choice: the requested engine if any (refusing lvm where it cannot work),
/// else lvm when device-mapper and lvm2 are both present, else file.
pub fn choose_engine(facts: HostFacts, requested: Option<EngineKind>) -> Result<EngineKind> {
    match requested {
        Some(EngineKind::Lvm) if !(facts.device_mapper && facts.lvm2) => Err(Error::Unsupported {
            op: "select engine",
            engine: EngineKind::Lvm,
            detail: Some(format!(
                "this host lacks {}",
                match (facts.device_mapper, facts.lvm2) {
                    (false, false) => "device-mapper and the lvm2 tools",
                    (false, true) => "device-mapper (no /sys/module/dm_mod)",
                    _ => "the lvm2 tools (lvm version failed)",
                }
            )),
        }),
        Some(kind) => Ok(kind),
        None if facts.device_mapper && facts.lvm2 => Ok(EngineKind::Lvm),
        None => Ok(EngineKind::File),
    }
}

/// Look at the host: device-mapper under `sys_root` (normally `/sys`) and whether
/// `lvm version` runs. `dev_root` is not consulted (see the comment inside); it stays in the
/// signature so a containerised agent can pass its view of the host uniformly.
pub async fn probe_host(runner: &dyn Runner, sys_root: &Path, dev_root: &Path) -> HostFacts {
    // Not `/dev/mapper/control`: libdevmapper creates that node on first use even where
    // the kernel has no device-mapper (opening it then fails with ENODEV).
    let _ = dev_root;
    let device_mapper = sys_root.join("module/dm_mod").exists()
        || sys_root.join("class/misc/device-mapper").exists();
    let lvm2 = runner
        .run(&Cmd::new("lvm").arg("version"))
        .await
        .map(|_| true)
        .unwrap_or(false);
    HostFacts {
        device_mapper,
        lvm2,
    }
}

/// Choose the engine for this node from the host and the configuration override.
pub async fn detect_engine(runner: &dyn Runner, cfg: &EngineConfig) -> Result<EngineKind> {
    let facts = probe_host(runner, &cfg.host.sys_root, &cfg.host.dev_root).await;
    let kind = choose_engine(facts, cfg.engine)?;
    tracing::info!(?facts, requested = ?cfg.engine, chosen = %kind, "volume engine selected");
    Ok(kind)
}

/// Build the engine of `kind` with its part of the configuration.
pub fn build_engine(kind: EngineKind, runner: SharedRunner, cfg: &EngineConfig) -> SharedEngine {
    match kind {
        EngineKind::Lvm => Arc::new(crate::lvm::LvmEngine::new(runner, cfg.lvm.clone())),
        EngineKind::File => Arc::new(crate::file::FileEngine::new(runner, cfg.file.clone())),
    }
}

/// [`detect_engine`] then [`build_engine`]: what the node agent calls at start.
pub async fn open_engine(runner: SharedRunner, cfg: &EngineConfig) -> Result<SharedEngine> {
    let kind = detect_engine(runner.as_ref(), cfg).await?;
    Ok(build_engine(kind, runner, cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_exec::{Output, RecordingRunner};

    fn facts(dm: bool, lvm: bool) -> HostFacts {
        HostFacts {
            device_mapper: dm,
            lvm2: lvm,
        }
    }

    #[test]
    fn auto_selection() {
        assert_eq!(
            choose_engine(facts(true, true), None).unwrap(),
            EngineKind::Lvm
        );
        assert_eq!(
            choose_engine(facts(false, true), None).unwrap(),
            EngineKind::File
        );
        assert_eq!(
            choose_engine(facts(true, false), None).unwrap(),
            EngineKind::File
        );
        assert_eq!(
            choose_engine(facts(false, false), None).unwrap(),
            EngineKind::File
        );
    }

    #[test]
    fn override_wins_but_lvm_needs_dm_and_tools() {
        assert_eq!(
            choose_engine(facts(true, true), Some(EngineKind::File)).unwrap(),
            EngineKind::File
        );
        let err = choose_engine(facts(false, true), Some(EngineKind::Lvm)).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }));
        assert!(err.to_string().contains("device-mapper"), "{err}");
        let err = choose_engine(facts(true, false), Some(EngineKind::Lvm)).unwrap_err();
        assert!(err.to_string().contains("lvm2 tools"), "{err}");
    }

    #[tokio::test]
    async fn probe_reads_sysfs_and_runs_lvm_version() {
        let dir = std::env::temp_dir().join(format!("hwameistor-probe-{}", std::process::id()));
        let sys = dir.join("sys");
        let dev = dir.join("dev");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(&dev).unwrap();

        let fake = RecordingRunner::new();
        fake.respond(
            &["lvm", "version"],
            Output::ok("  LVM version: 2.03.16(2)\n"),
        );
        assert_eq!(probe_host(&fake, &sys, &dev).await, facts(false, true));

        std::fs::create_dir_all(sys.join("module/dm_mod")).unwrap();
        assert_eq!(probe_host(&fake, &sys, &dev).await, facts(true, true));

        let no_lvm = RecordingRunner::new();
        no_lvm.respond(&["lvm", "version"], Output::failed(127, "not found"));
        assert_eq!(probe_host(&no_lvm, &sys, &dev).await, facts(true, false));

        std::fs::remove_dir_all(sys.join("module")).unwrap();
        // A /dev/mapper/control node alone proves nothing (libdevmapper creates it).
        std::fs::create_dir_all(dev.join("mapper")).unwrap();
        std::fs::write(dev.join("mapper/control"), b"").unwrap();
        assert_eq!(probe_host(&fake, &sys, &dev).await, facts(false, true));
        std::fs::create_dir_all(sys.join("class/misc/device-mapper")).unwrap();
        assert_eq!(probe_host(&fake, &sys, &dev).await, facts(true, true));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
