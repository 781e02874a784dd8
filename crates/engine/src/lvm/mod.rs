//! The lvm engine: a pool is an LVM volume group, a volume a logical volume.
//!
//! - Pools are VGs named `LocalStorage_Pool{HDD,SSD,NVMe}`, created with `vgcreate` over the
//!   pool's disks (PVs are created implicitly) and grown with `vgextend` by the disks not yet
//!   in them. VG and LVs carry the LVM tag [`LvmConfig::tag`] (default
//!   `hwameistor.io/managed`); VGs or LVs without it are never listed, changed or removed.
//! - Volumes are linear LVs, or striped across every PV of the VG (`-i <#PVs>`) when
//!   [`VolumeOptions::striped`] is set. Sizes are rounded up to the VG's extent.
//! - Reports come from `pvs`/`vgs`/`lvs` in JSON ([`report`]); command lines are built by
//!   [`cmd::Lvm`].
//! - Idempotency: the engine reads the host first and only runs the command that is still
//!   needed; "already exists" from `lvcreate` is success when the existing LV matches,
//!   "failed to find" from `lvremove` is success. Mutations are serialised by one mutex
//!   per volume group (pool), so free-space checks and the command that consumes the space
//!   do not race, and commands queue in the engine rather than on lvm's VG file lock.
//! - A burst of creates: every lvm command costs a process start, a device scan and a
//!   metadata read (~0.5–1 s in the tier-2 guest, tens of ms on hardware), so creating a
//!   thick volume runs only `lvcreate` and one `lvs <vg>/<lv>` read-back, and deleting one
//!   only `lvremove`. A create does not list the VG's LVs first: `lvcreate` checks the name
//!   before it allocates ("already exists" → the existing LV is read and must match), and
//!   its own free-space refusal is mapped to [`Error::InsufficientSpace`]; an early "not
//!   enough space" from the remembered `vgs` is checked against a fresh one first.
//! - Reads come from shared listings ([`listing`]): one `lvs <vg>` per VG answers
//!   `stat_volume`, the pool report, orphans and the delete's look (N concurrent readers run
//!   it once), one `vgs` and one `pvs` the pool facts. Our own creates and removes patch
//!   them; any other command of ours makes them stale; changes behind our back show within
//!   [`LISTING_TTL`] ([`REPORT_TTL`] where a command of ours is about to depend on them).
//! - Snapshots are read-only copy-on-write LVs (`lvcreate -s`), restored by copying the
//!   snapshot into a new LV (`dd`), rolled back by `lvconvert --merge --background` (progress: [`merge`]).
//! - Thin provisioning ([`thin`]): one thin pool `LocalStorage_ThinPool` per VG on request,
//!   thin volumes within its over-provision ratio, thin snapshots of thin volumes.

pub mod cmd;
pub mod listing;
pub mod merge;
pub mod report;
pub mod thin;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use listing::Change;
use std::time::Duration;

use async_trait::async_trait;
use hwameistor_core::names;
use hwameistor_exec::{Cmd, SharedRunner};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::config::LvmConfig;
use crate::engine::VolumeEngine;
use crate::error::{Context, Error, Result};
use crate::types::{
    EngineKind, POOL_PREFIX, PoolDisk, PoolInfo, SnapshotInfo, VolumeAttributes, VolumeInfo,
    VolumeOptions, round_up_to_extent,
};

pub use cmd::Lvm;
pub use listing::LISTING_TTL;
pub use report::{LvReport, PvReport, ReportError, VgReport};
pub use thin::{THIN_POOL_LV, ThinPoolInfo, ThinPoolRequest};

const ENGINE: EngineKind = EngineKind::Lvm;

/// How old the `vgs` a create decides on may be (our own creates and removes keep it current
/// meanwhile, any other change of ours drops it); "not enough space" from it is checked
/// against a fresh one.
pub const VG_FACTS_TTL: Duration = LISTING_TTL;

/// How old a listing may be where a command of ours is about to depend on it (the pool,
/// extend, snapshot and thin paths).
pub const REPORT_TTL: Duration = Duration::from_secs(1);

/// The lvm2-backed [`VolumeEngine`].
#[derive(Debug)]
pub struct LvmEngine {
    runner: SharedRunner,
    cfg: LvmConfig,
    lvm: Lvm,
    /// One mutex per VG: our mutations of a VG run one at a time.
    locks: std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Counts the commands run that may change something (everything but `pvs`/`vgs`/`lvs`).
    mutations: AtomicU64,
    /// Those commands per VG they named ([`Self::vg_generation`]).
    vg_generations: std::sync::Mutex<HashMap<String, u64>>,
    /// Those commands that named no VG (they count for every VG).
    unscoped: AtomicU64,
    /// `lvs <vg>` per VG, `vgs`, `pvs`, shared by concurrent readers ([`listing`]).
    lv_listings: std::sync::Mutex<HashMap<String, listing::Slot<LvReport>>>,
    vgs_listing: listing::Slot<VgReport>,
    pvs_listing: listing::Slot<PvReport>,
    /// Removals waiting for their VG's lock ([`Self::remove_batched`]).
    removals: std::sync::Mutex<HashMap<String, Vec<PendingRemoval>>>,
}

/// A listed LV to remove and where to send the outcome.
type PendingRemoval = (LvReport, tokio::sync::oneshot::Sender<Result<()>>);

/// Check a pool name: valid and `LocalStorage_Pool*`.
pub(crate) fn validate_pool(pool: &str) -> Result<()> {
    names::validate("pool", pool)?;
    if !pool.starts_with(POOL_PREFIX) {
        return Err(Error::InvalidArgument {
            op: "validate pool",
            ctx: Context::pool(pool),
            message: format!("pool names must start with {POOL_PREFIX}"),
        });
    }
    Ok(())
}

fn stderr_has(err: &hwameistor_exec::Error, needle: &str) -> bool {
    err.stderr()
        .to_ascii_lowercase()
        .contains(&needle.to_ascii_lowercase())
}

/// Best-effort canonical path of a disk (a `/dev/disk/by-id/...` link becomes `/dev/sdb`),
/// so it compares equal to the PV names lvm reports.
pub(crate) fn canonical_dev(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl LvmEngine {
    pub fn new(runner: SharedRunner, cfg: LvmConfig) -> Self {
        let lvm = Lvm::new(cfg.timeout);
        LvmEngine {
            runner,
            cfg,
            lvm,
            locks: Default::default(),
            mutations: AtomicU64::new(0),
            vg_generations: Default::default(),
            unscoped: AtomicU64::new(0),
            lv_listings: Default::default(),
            vgs_listing: Default::default(),
            pvs_listing: Default::default(),
            removals: Default::default(),
        }
    }

    /// The mutex of VG `pool`, held while we change it.
    async fn lock_vg(&self, pool: &str) -> OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pool.to_owned())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    fn generation(&self) -> u64 {
        self.mutations.load(Ordering::SeqCst)
    }

    /// Our VG `pool` for a create (the caller holds its lock), from a `vgs` at most
    /// [`VG_FACTS_TTL`] old that accounts for all our commands; the flag says whether it was
    /// read just now.
    async fn vg_for_create(&self, op: &'static str, pool: &str) -> Result<(VgReport, bool)> {
        let (vgs, fresh) = self.all_vgs(op, VG_FACTS_TTL).await?;
        Ok((self.ours_of(op, pool, &vgs)?, fresh))
    }

    /// A fresh `vgs` of our VG `pool`.
    async fn fresh_vg(&self, op: &'static str, pool: &str) -> Result<VgReport> {
        let (vgs, _) = self.all_vgs(op, Duration::ZERO).await?;
        self.ours_of(op, pool, &vgs)
    }

    /// Our VG `pool` in `vgs`: [`Error::PoolNotFound`] if absent, Conflict if not tagged.
    fn ours_of(&self, op: &'static str, pool: &str, vgs: &[VgReport]) -> Result<VgReport> {
        self.our_vg_in(op, pool, vgs)?
            .ok_or_else(|| Error::PoolNotFound {
                op,
                pool: pool.to_owned(),
            })
    }

    /// The typed command builders this engine uses.
    pub fn commands(&self) -> &Lvm {
        &self.lvm
    }

    /// `lvremove` one LV; an LV that is already gone counts as removed (idempotent delete).
    ///
    /// udev's blkid probe opens a device for a moment after every close (the
    /// `change` event of the last writer), so a removal right after IO can meet
    /// "open logical volume" / "in use" for a few hundred milliseconds. Those
    /// are retried briefly; a volume that stays open (mounted, a mapping on top)
    /// still fails with lvm's message.
    async fn remove_lv(&self, op: &'static str, pool: &str, lv: &str) -> Result<()> {
        const ATTEMPTS: u32 = 6;
        let mut attempt = 1;
        loop {
            match self
                .run(op, Context::volume(pool, lv), self.lvm.lv_remove(pool, lv))
                .await
            {
                Ok(_) => return Ok(()),
                Err(Error::Command { source, .. })
                    if stderr_has(&source, "failed to find logical volume") =>
                {
                    return Ok(());
                }
                Err(Error::Command { source, .. })
                    if attempt < ATTEMPTS
                        && (stderr_has(&source, "open logical volume")
                            || stderr_has(&source, " in use")) =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Remove the volume `l` (as last seen) and account for it in the listings.
    async fn remove_volume_lv(&self, op: &'static str, pool: &str, l: &LvReport) -> Result<()> {
        let before = self.before(pool);
        self.remove_lv(op, pool, &l.name).await?;
        self.account(pool, before, Change::Removed(std::slice::from_ref(l)))
            .await;
        Ok(())
    }

    /// Remove the listed volume `l` with whatever other removals of listed volumes of the
    /// VG are waiting: whoever gets the VG's lock removes all that wait, with one `lvremove`
    /// (one process start, device scan and metadata read for all of them: a burst of
    /// deletes runs a few `lvremove`s instead of one per volume).
    async fn remove_batched(&self, op: &'static str, pool: &str, l: LvReport) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.removals()
            .entry(pool.to_owned())
            .or_default()
            .push((l.clone(), tx));
        {
            let _g = self.lock_vg(pool).await;
            let batch = self.removals().remove(pool).unwrap_or_default();
            if !batch.is_empty() {
                self.remove_batch(op, pool, batch).await;
            }
        }
        match rx.await {
            Ok(r) => r,
            // The caller that took our removal was cancelled before it answered.
            Err(_) => {
                let _g = self.lock_vg(pool).await;
                self.remove_volume_lv(op, pool, &l).await
            }
        }
    }

    fn removals(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<PendingRemoval>>> {
        self.removals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remove `batch` (the caller holds the VG's lock) and answer each waiting caller. If
    /// the one `lvremove` fails (one LV held open, one gone already), each LV is removed on
    /// its own, so each caller gets its own answer.
    async fn remove_batch(&self, op: &'static str, pool: &str, batch: Vec<PendingRemoval>) {
        let (lvs, answers): (Vec<LvReport>, Vec<_>) = batch.into_iter().unzip();
        if let ([l], [_]) = (lvs.as_slice(), answers.as_slice()) {
            let r = self.remove_volume_lv(op, pool, l).await;
            if let Some(tx) = answers.into_iter().next() {
                let _ = tx.send(r);
            }
            return;
        }
        let names: Vec<&str> = lvs.iter().map(|l| l.name.as_str()).collect();
        let before = self.before(pool);
        let all = self.lvm.lv_remove_many(pool, &names);
        match self.run(op, Context::pool(pool), all).await {
            Ok(_) => {
                self.account(pool, before, Change::Removed(&lvs)).await;
                for tx in answers {
                    let _ = tx.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::debug!(pool, error = %e, count = lvs.len(), "removing several volumes at once failed; removing them one by one");
                for (l, tx) in lvs.iter().zip(answers) {
                    let _ = tx.send(self.remove_lv(op, pool, &l.name).await);
                }
                self.account(pool, before, Change::Other).await;
            }
        }
    }

    async fn run(&self, op: &'static str, ctx: Context, cmd: Cmd) -> Result<String> {
        let cmd = cmd.env("LVM_SUPPRESS_FD_WARNINGS", "1");
        let out = self.runner.run(&cmd).await;
        if !matches!(cmd.program(), "pvs" | "vgs" | "lvs") {
            // Counted when it ended, failed or not: listings taken before are stale now.
            self.count_mutation(ctx.pool.as_deref());
        }
        out.map(|o| o.stdout)
            .map_err(|e| Error::command(op, ctx, e))
    }

    /// Run a command that creates `name`; "already exists" counts as done (the caller reads
    /// the LV back and decides whether it is the one asked for).
    async fn run_create(&self, op: &'static str, pool: &str, name: &str, cmd: Cmd) -> Result<()> {
        match self.run(op, Context::volume(pool, name), cmd).await {
            Err(Error::Command { source, .. }) if stderr_has(&source, "already exists") => Ok(()),
            other => other.map(drop),
        }
    }

    /// Our VG named `pool` in `vgs`, `None` if absent; a Conflict if it exists without our
    /// tag.
    fn our_vg_in(
        &self,
        op: &'static str,
        pool: &str,
        vgs: &[VgReport],
    ) -> Result<Option<VgReport>> {
        match vgs.iter().find(|v| v.name == pool) {
            None => Ok(None),
            Some(v) if v.has_tag(&self.cfg.tag) => Ok(Some(v.clone())),
            Some(_) => Err(Error::Conflict {
                op,
                ctx: Context::pool(pool),
                message: format!(
                    "volume group exists but is not tagged {}; refusing to manage it",
                    self.cfg.tag
                ),
            }),
        }
    }

    /// Our VG named `pool` from a `vgs` at most `max_age` old, `None` if absent; a Conflict
    /// if it exists without our tag.
    async fn our_vg_within(
        &self,
        op: &'static str,
        pool: &str,
        max_age: Duration,
    ) -> Result<Option<VgReport>> {
        let (vgs, _) = self.all_vgs(op, max_age).await?;
        self.our_vg_in(op, pool, &vgs)
    }

    /// [`Self::our_vg_within`] [`REPORT_TTL`]: for the paths about to change the VG.
    async fn our_vg(&self, op: &'static str, pool: &str) -> Result<Option<VgReport>> {
        self.our_vg_within(op, pool, REPORT_TTL).await
    }

    /// Our VG named `pool`; [`Error::PoolNotFound`] if absent.
    async fn must_vg(&self, op: &'static str, pool: &str) -> Result<VgReport> {
        self.our_vg(op, pool)
            .await?
            .ok_or_else(|| Error::PoolNotFound {
                op,
                pool: pool.to_owned(),
            })
    }

    /// Our VGs, from a `vgs` at most [`LISTING_TTL`] old (the node agent's periodic reads).
    async fn our_vgs(&self, op: &'static str) -> Result<Vec<VgReport>> {
        let (vgs, _) = self.all_vgs(op, LISTING_TTL).await?;
        Ok(vgs
            .iter()
            .filter(|v| v.name.starts_with(POOL_PREFIX) && v.has_tag(&self.cfg.tag))
            .cloned()
            .collect())
    }

    /// All LVs (ours or not) of VG `pool` from a listing at most [`REPORT_TTL`] old: for the
    /// paths about to change the VG.
    async fn all_lvs(&self, op: &'static str, pool: &str) -> Result<Arc<Vec<LvReport>>> {
        self.vg_lvs(op, pool, REPORT_TTL).await
    }

    /// The LV `volume` of our VG `pool`: `None` if missing, Conflict if not tagged as ours.
    async fn lv(&self, op: &'static str, pool: &str, volume: &str) -> Result<Option<LvReport>> {
        let ctx = Context::volume(pool, volume);
        let rows = match self
            .run(op, ctx.clone(), self.lvm.lvs_one(pool, volume))
            .await
        {
            Ok(out) => report::parse_lvs(&out).map_err(|e| parse_err(op, ctx, "lvs", e))?,
            // "Failed to find logical volume", or the VG is gone ("not found").
            Err(Error::Command { source, .. })
                if stderr_has(&source, "failed to find logical volume")
                    || stderr_has(&source, "not found") =>
            {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        self.ours_in(op, pool, volume, &rows)
    }

    /// The LV `volume` of `pool` in `lvs`: `None` if missing, Conflict if not tagged as ours.
    fn ours_in(
        &self,
        op: &'static str,
        pool: &str,
        volume: &str,
        lvs: &[LvReport],
    ) -> Result<Option<LvReport>> {
        match lvs.iter().find(|l| l.vg_name == pool && l.name == volume) {
            Some(l) if !l.has_tag(&self.cfg.tag) => Err(Error::Conflict {
                op,
                ctx: Context::volume(pool, volume),
                message: format!("logical volume is not tagged {}; not ours", self.cfg.tag),
            }),
            other => Ok(other.cloned()),
        }
    }

    /// The LV `volume` of our VG `pool`; [`Error::VolumeNotFound`] if missing.
    async fn must_lv(&self, op: &'static str, pool: &str, volume: &str) -> Result<LvReport> {
        self.lv(op, pool, volume)
            .await?
            .ok_or_else(|| Error::VolumeNotFound {
                op,
                pool: pool.to_owned(),
                volume: volume.to_owned(),
            })
    }

    fn volume_info(&self, l: &LvReport) -> VolumeInfo {
        VolumeInfo {
            pool: l.vg_name.clone(),
            name: l.name.clone(),
            size_bytes: l.size,
            device_path: if l.path.is_empty() {
                PathBuf::from(format!("/dev/{}/{}", l.vg_name, l.name))
            } else {
                PathBuf::from(&l.path)
            },
            attrs: VolumeAttributes {
                active: l.active(),
                open: l.open(),
                stripes: l.stripes,
                disks: l.devices.clone(),
                raw: l.attr.clone(),
            },
        }
    }

    async fn build_pool_info(&self, op: &'static str, vg: &VgReport) -> Result<PoolInfo> {
        let pvs = self.all_pvs(op, LISTING_TTL).await?;
        let lvs = self.vg_lvs(op, &vg.name, LISTING_TTL).await?;
        let mut volumes: Vec<String> = lvs
            .iter()
            .filter(|l| l.has_tag(&self.cfg.tag) && !l.is_thin_pool())
            .map(|l| l.name.clone())
            .collect();
        volumes.sort();
        Ok(PoolInfo {
            name: vg.name.clone(),
            engine: ENGINE,
            path: PathBuf::from(format!("/dev/{}", vg.name)),
            total_bytes: vg.size,
            used_bytes: vg.size.saturating_sub(vg.free),
            free_bytes: vg.free,
            max_volume_bytes: vg.free,
            extent_bytes: vg.extent_size,
            // Every LV (snapshots included) occupies one of the MAX_VOLUMES_PER_POOL slots.
            volume_count: vg.lv_count,
            disks: pvs
                .iter()
                .filter(|p| p.vg_name == vg.name)
                .map(|p| PoolDisk {
                    dev_path: p.name.clone(),
                    capacity_bytes: p.size,
                    free_bytes: p.free,
                })
                .collect(),
            volumes,
        })
    }
}

impl LvmEngine {
    /// Run the `lvcreate` of a snapshot (an existing one counts; the caller checked it is a
    /// snapshot of the right origin) and read it back.
    async fn create_snapshot_lv(
        &self,
        op: &'static str,
        pool: &str,
        snapshot: &str,
        create: Cmd,
    ) -> Result<SnapshotInfo> {
        self.run_create(op, pool, snapshot, create).await?;
        Ok(snapshot_info(&self.must_lv(op, pool, snapshot).await?))
    }

    /// `None` when a volume of `size` bytes in `stripes` stripes fits in `vg`, else the bytes
    /// available for it.
    async fn shortfall(
        &self,
        op: &'static str,
        pool: &str,
        vg: &VgReport,
        size: u64,
        stripes: u32,
    ) -> Result<Option<u64>> {
        if size > vg.free {
            return Ok(Some(vg.free));
        }
        if stripes > 1 {
            // Each PV must hold one stripe's share.
            let share = size / u64::from(stripes);
            let min_free = self
                .all_pvs(op, REPORT_TTL)
                .await?
                .iter()
                .filter(|p| p.vg_name == pool)
                .map(|p| p.free)
                .min()
                .unwrap_or(0);
            if share > min_free {
                return Ok(Some(min_free * u64::from(stripes)));
            }
        }
        Ok(None)
    }
}

fn parse_err(op: &'static str, ctx: Context, what: &str, e: ReportError) -> Error {
    Error::Parse {
        op,
        ctx,
        message: format!("output of {what}: {e}"),
    }
}

fn insufficient(
    op: &'static str,
    pool: &str,
    volume: &str,
    requested: u64,
    available: u64,
) -> Error {
    Error::InsufficientSpace {
        op,
        pool: pool.to_owned(),
        volume: volume.to_owned(),
        requested,
        available,
    }
}

#[async_trait]
impl VolumeEngine for LvmEngine {
    fn kind(&self) -> EngineKind {
        ENGINE
    }

    async fn ensure_pool(&self, pool: &str, disks: &[PathBuf]) -> Result<PoolInfo> {
        const OP: &str = "ensure pool";
        validate_pool(pool)?;
        let _g = self.lock_vg(pool).await;
        let wanted: Vec<PathBuf> = {
            let mut seen = BTreeSet::new();
            disks
                .iter()
                .map(|d| canonical_dev(d))
                .filter(|d| seen.insert(d.clone()))
                .collect()
        };
        let vg = self.our_vg(OP, pool).await?;
        if vg.is_none() && wanted.is_empty() {
            return Err(Error::InvalidArgument {
                op: OP,
                ctx: Context::pool(pool),
                message: "a new pool needs at least one disk".into(),
            });
        }
        // Disks already in another VG are never taken.
        let pvs = self.all_pvs(OP, REPORT_TTL).await?;
        let mut missing: Vec<&Path> = Vec::new();
        for d in &wanted {
            match pvs.iter().find(|p| &p.name == d) {
                Some(p) if p.vg_name == pool => {}
                Some(p) if !p.vg_name.is_empty() => {
                    return Err(Error::Conflict {
                        op: OP,
                        ctx: Context::pool(pool).with_device(d.display()),
                        message: format!("disk is a physical volume of volume group {}", p.vg_name),
                    });
                }
                _ => missing.push(d),
            }
        }
        if vg.is_none() {
            let ctx = Context::pool(pool);
            let create = self.lvm.vg_create(pool, &missing, &self.cfg.tag);
            match self.run(OP, ctx, create).await {
                Ok(_) => {}
                // Someone created it between our look and the command: fall through to extend.
                Err(Error::Command { source, .. })
                    if stderr_has(&source, "already exists") && stderr_has(&source, pool) =>
                {
                    self.our_vg(OP, pool).await?;
                    let pvs = self.all_pvs(OP, Duration::ZERO).await?;
                    let still: Vec<&Path> = missing
                        .iter()
                        .copied()
                        .filter(|d| !pvs.iter().any(|p| p.name == *d && p.vg_name == pool))
                        .collect();
                    if !still.is_empty() {
                        self.run(OP, Context::pool(pool), self.lvm.vg_extend(pool, &still))
                            .await?;
                    }
                }
                Err(e) => return Err(e),
            }
        } else if !missing.is_empty() {
            let dev = missing
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(",");
            self.run(
                OP,
                Context::pool(pool).with_device(dev),
                self.lvm.vg_extend(pool, &missing),
            )
            .await?;
        }
        let vg = self.must_vg(OP, pool).await?;
        self.build_pool_info(OP, &vg).await
    }

    async fn pool_info(&self, pool: &str) -> Result<Option<PoolInfo>> {
        const OP: &str = "pool info";
        validate_pool(pool)?;
        match self.our_vg(OP, pool).await? {
            Some(vg) => Ok(Some(self.build_pool_info(OP, &vg).await?)),
            None => Ok(None),
        }
    }

    async fn list_pools(&self) -> Result<Vec<PoolInfo>> {
        const OP: &str = "list pools";
        let mut out = Vec::new();
        for vg in self.our_vgs(OP).await? {
            out.push(self.build_pool_info(OP, &vg).await?);
        }
        Ok(out)
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
        if opts.thin {
            if opts.striped {
                return Err(Error::InvalidArgument {
                    op: OP,
                    ctx: Context::volume(pool, volume),
                    message: "a thin volume lives in the thin pool and cannot be striped".into(),
                });
            }
            return self.create_thin_volume(pool, volume, size_bytes).await;
        }
        let _g = self.lock_vg(pool).await;
        // Striping needs the current PV count: fresh facts. A linear create of a burst reuses
        // the facts the previous one left.
        let (mut vg, fresh) = if opts.striped {
            (self.fresh_vg(OP, pool).await?, true)
        } else {
            self.vg_for_create(OP, pool).await?
        };
        let plan = |vg: &VgReport| {
            let size = round_up_to_extent(size_bytes, vg.extent_size);
            let stripes = if opts.striped { vg.pv_count.max(1) } else { 1 };
            (size, stripes)
        };
        let (mut size, mut stripes) = plan(&vg);
        let mut short = self.shortfall(OP, pool, &vg, size, stripes).await?;
        if short.is_some() && !fresh {
            // Remembered facts may be behind the host: decide on fresh ones.
            vg = self.fresh_vg(OP, pool).await?;
            (size, stripes) = plan(&vg);
            short = self.shortfall(OP, pool, &vg, size, stripes).await?;
        }
        let existing = |l: LvReport| {
            if l.size >= size && (l.stripes == stripes || !opts.striped) && !l.is_thin() {
                return Ok(self.volume_info(&l));
            }
            Err(Error::Conflict {
                op: OP,
                ctx: Context::volume(pool, volume),
                message: format!(
                    "exists with {} bytes and {} stripe(s); requested {} bytes and {} stripe(s)",
                    l.size, l.stripes, size, stripes
                ),
            })
        };
        if let Some(available) = short {
            // A retry of a create that happened needs no room.
            return match self.lv(OP, pool, volume).await? {
                Some(l) => existing(l),
                None => Err(insufficient(OP, pool, volume, size, available)),
            };
        }
        // No listing of the VG's LVs first: lvcreate refuses an existing name before it
        // allocates anything, and the LV is read back either way.
        let before = self.before(pool);
        let create = self
            .lvm
            .lv_create(pool, volume, size, stripes, &self.cfg.tag);
        let created = match self.run(OP, Context::volume(pool, volume), create).await {
            Ok(_) => true,
            Err(Error::Command { source, .. }) if stderr_has(&source, "already exists") => false,
            Err(Error::Command { source, .. })
                if stderr_has(&source, "insufficient") || stderr_has(&source, "not enough") =>
            {
                let free = self.fresh_vg(OP, pool).await?.free;
                return Err(insufficient(OP, pool, volume, size, free));
            }
            Err(e) => return Err(e),
        };
        // The read-back gives the device and the PVs the replica reports; it also keeps the
        // listings current without listing the VG again.
        let l = self.must_lv(OP, pool, volume).await?;
        if created {
            self.account(pool, before, Change::Created(&l)).await;
        }
        existing(l)
    }

    async fn delete_volume(&self, pool: &str, volume: &str) -> Result<()> {
        const OP: &str = "delete volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        // The VG's listing knows the volume (a burst of deletes lists the VG once): remove
        // it right away, together with the other removals waiting for the VG; lvm itself
        // refuses an LV that is open. Missing there, or open: ask the host afresh (it may
        // have changed behind our back since the listing).
        if let Some(l) = self.listed_lv(OP, pool, volume, LISTING_TTL).await?
            && !l.open()
            && !self.in_use_now(&self.volume_info(&l).device_path)
        {
            return self.remove_batched(OP, pool, l).await;
        }
        let _g = self.lock_vg(pool).await;
        let Some(mut l) = self.lv(OP, pool, volume).await? else {
            return Ok(());
        };
        // udev's probe after the last writer's close holds the device open for a
        // moment: look again briefly before calling the volume busy.
        for _ in 0..4 {
            if !l.open() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let Some(again) = self.lv(OP, pool, volume).await? else {
                return Ok(());
            };
            l = again;
        }
        if l.open() {
            return Err(Error::Conflict {
                op: OP,
                ctx: Context::volume(pool, volume).with_device(&l.path),
                message: "the volume is open (mounted or in use); unmount it first".into(),
            });
        }
        self.remove_volume_lv(OP, pool, &l).await
    }

    async fn extend_volume(&self, pool: &str, volume: &str, size_bytes: u64) -> Result<VolumeInfo> {
        const OP: &str = "extend volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        let _g = self.lock_vg(pool).await;
        let vg = self.must_vg(OP, pool).await?;
        let l = self.must_lv(OP, pool, volume).await?;
        let size = round_up_to_extent(size_bytes, vg.extent_size);
        if size == l.size {
            return Ok(self.volume_info(&l));
        }
        if size < l.size {
            return Err(Error::Shrink {
                op: OP,
                pool: pool.to_owned(),
                volume: volume.to_owned(),
                current: l.size,
                requested: size,
            });
        }
        if l.is_thin() {
            self.check_thin_growth(OP, pool, volume, size - l.size)
                .await?;
        } else if size - l.size > vg.free {
            return Err(insufficient(OP, pool, volume, size - l.size, vg.free));
        }
        match self
            .run(
                OP,
                Context::volume(pool, volume),
                self.lvm.lv_extend(pool, volume, size),
            )
            .await
        {
            Ok(_) => {}
            Err(Error::Command { source, .. }) if stderr_has(&source, "matches existing size") => {}
            Err(Error::Command { source, .. })
                if stderr_has(&source, "insufficient") || stderr_has(&source, "not enough") =>
            {
                return Err(insufficient(OP, pool, volume, size - l.size, vg.free));
            }
            Err(e) => return Err(e),
        }
        let l = self.must_lv(OP, pool, volume).await?;
        Ok(self.volume_info(&l))
    }

    async fn stat_volume(&self, pool: &str, volume: &str) -> Result<Option<VolumeInfo>> {
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        // From the VG's listing (concurrent stats share one `lvs <vg>`); whether the device
        // is open is looked at now (a mount since the listing shows), see `in_use_now`.
        Ok(self
            .listed_lv("stat volume", pool, volume, LISTING_TTL)
            .await?
            .filter(|l| !l.is_snapshot() && !l.is_thin_pool())
            .map(|l| {
                let mut v = self.volume_info(&l);
                if !v.attrs.open && v.attrs.active && self.in_use_now(&v.device_path) {
                    v.attrs.open = true;
                }
                v
            }))
    }

    async fn activate_volume(&self, pool: &str, volume: &str) -> Result<VolumeInfo> {
        const OP: &str = "activate volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        let l = self.must_lv(OP, pool, volume).await?;
        if l.active() {
            return Ok(self.volume_info(&l));
        }
        self.run(
            OP,
            Context::volume(pool, volume),
            self.lvm.lv_change_active(pool, volume, true),
        )
        .await?;
        let l = self.must_lv(OP, pool, volume).await?;
        Ok(self.volume_info(&l))
    }

    async fn deactivate_volume(&self, pool: &str, volume: &str) -> Result<()> {
        const OP: &str = "deactivate volume";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        match self.lv(OP, pool, volume).await? {
            Some(l) if l.active() => {
                self.run(
                    OP,
                    Context::volume(pool, volume),
                    self.lvm.lv_change_active(pool, volume, false),
                )
                .await?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn list_volumes(&self, pool: Option<&str>) -> Result<Vec<VolumeInfo>> {
        const OP: &str = "list volumes";
        if let Some(p) = pool {
            validate_pool(p)?;
        }
        let mut out = Vec::new();
        for vg in self.our_vgs(OP).await? {
            if pool.is_some_and(|p| p != vg.name) {
                continue;
            }
            let lvs = self.vg_lvs(OP, &vg.name, LISTING_TTL).await?;
            out.extend(
                lvs.iter()
                    .filter(|l| {
                        l.vg_name == vg.name
                            && l.has_tag(&self.cfg.tag)
                            && !l.is_snapshot()
                            && !l.is_thin_pool()
                    })
                    .map(|l| self.volume_info(l)),
            );
        }
        Ok(out)
    }

    async fn create_snapshot(
        &self,
        pool: &str,
        volume: &str,
        snapshot: &str,
        size_bytes: u64,
    ) -> Result<SnapshotInfo> {
        const OP: &str = "create snapshot";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        names::validate("snapshot", snapshot)?;
        let _g = self.lock_vg(pool).await;
        let vg = self.must_vg(OP, pool).await?;
        if let Some(s) = self.lv(OP, pool, snapshot).await? {
            if s.is_snapshot() && s.origin == volume {
                return Ok(snapshot_info(&s));
            }
            return Err(Error::Conflict {
                op: OP,
                ctx: Context::volume(pool, snapshot),
                message: format!(
                    "a volume named {snapshot} exists and is not a snapshot of {volume}"
                ),
            });
        }
        let origin = self.must_lv(OP, pool, volume).await?;
        if origin.is_thin() {
            // A thin snapshot shares the origin's blocks: no size, no VG space.
            return self
                .create_thin_snapshot_locked(pool, volume, snapshot)
                .await;
        }
        let size = round_up_to_extent(
            if size_bytes == 0 {
                origin.size
            } else {
                size_bytes
            },
            vg.extent_size,
        );
        if size > vg.free {
            return Err(insufficient(OP, pool, snapshot, size, vg.free));
        }
        let c = self
            .lvm
            .lv_snapshot(pool, volume, snapshot, size, &self.cfg.tag);
        self.create_snapshot_lv(OP, pool, snapshot, c).await
    }

    async fn delete_snapshot(&self, pool: &str, snapshot: &str) -> Result<()> {
        const OP: &str = "delete snapshot";
        validate_pool(pool)?;
        names::validate("snapshot", snapshot)?;
        let _g = self.lock_vg(pool).await;
        match self.lv(OP, pool, snapshot).await? {
            None => Ok(()),
            Some(s) if !s.is_snapshot() => Err(Error::Conflict {
                op: OP,
                ctx: Context::volume(pool, snapshot),
                message: "not a snapshot; refusing to delete a volume as a snapshot".into(),
            }),
            Some(_) => self.remove_lv(OP, pool, snapshot).await,
        }
    }

    async fn list_snapshots(&self, pool: &str) -> Result<Vec<SnapshotInfo>> {
        validate_pool(pool)?;
        Ok(self
            .all_lvs("list snapshots", pool)
            .await?
            .iter()
            .filter(|l| l.has_tag(&self.cfg.tag) && l.is_snapshot())
            .map(snapshot_info)
            .collect())
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
        let s = self
            .lv(OP, pool, snapshot)
            .await?
            .filter(|s| s.is_snapshot())
            .ok_or_else(|| Error::VolumeNotFound {
                op: OP,
                pool: pool.to_owned(),
                volume: snapshot.to_owned(),
            })?;
        if s.snapshot_invalid {
            return Err(Error::Conflict {
                op: OP,
                ctx: Context::volume(pool, snapshot),
                message: "the snapshot is invalid (its change space overflowed)".into(),
            });
        }
        // The origin's size is what the snapshot presents.
        let origin = self.must_lv(OP, pool, &s.origin).await?;
        // An existing target is used as it is (thin or thick, as its volume asked); a new
        // one is thick. A thin snapshot is copied like a COW one.
        let existing = self
            .lv(OP, pool, new_volume)
            .await?
            .filter(|l| l.size >= origin.size && !l.is_snapshot());
        let existed = existing.is_some();
        let v = match existing {
            Some(l) => self.volume_info(&l),
            None => {
                self.create_volume(pool, new_volume, origin.size, &VolumeOptions::default())
                    .await?
            }
        };
        if s.is_thin() {
            // Thin snapshots may be inactive (activation skip, or the origin deactivated).
            self.activate_volume(pool, snapshot).await?;
        }
        if existed {
            // A previous attempt may have crashed mid-copy: copying again is harmless.
            tracing::info!(
                pool,
                snapshot,
                new_volume,
                "restore target exists; copying again"
            );
        }
        self.activate_volume(pool, new_volume).await?;
        let dd = Cmd::new("dd")
            .arg(format!("if=/dev/{pool}/{snapshot}"))
            .arg(format!("of={}", v.device_path.display()))
            .args(["bs=4M", "oflag=direct", "conv=fsync"])
            .timeout(Duration::from_secs(3600));
        self.run(OP, Context::volume(pool, new_volume), dd).await?;
        let l = self.must_lv(OP, pool, new_volume).await?;
        Ok(self.volume_info(&l))
    }

    async fn thin_pool(&self, pool: &str) -> Result<Option<ThinPoolInfo>> {
        validate_pool(pool)?;
        const OP: &str = "thin pool";
        if self.our_vg_within(OP, pool, LISTING_TTL).await?.is_none() {
            return Ok(None);
        }
        // The node agent asks on every pass: a VG without a thin pool in a recent listing
        // has none; one with a thin pool is read at most REPORT_TTL old (its usage moves
        // with every write).
        let lvs = self.vg_lvs(OP, pool, LISTING_TTL).await?;
        if !lvs
            .iter()
            .any(|l| l.vg_name == pool && l.name == THIN_POOL_LV)
        {
            return Ok(None);
        }
        self.read_thin_pool(OP, pool).await
    }

    async fn ensure_thin_pool(&self, pool: &str, req: &ThinPoolRequest) -> Result<ThinPoolInfo> {
        self.ensure_thin_pool_impl(pool, req).await
    }

    async fn remove_thin_pool(&self, pool: &str) -> Result<()> {
        self.remove_thin_pool_impl(pool).await
    }

    async fn rollback_snapshot(&self, pool: &str, volume: &str, snapshot: &str) -> Result<()> {
        const OP: &str = "rollback snapshot";
        validate_pool(pool)?;
        names::validate("volume", volume)?;
        names::validate("snapshot", snapshot)?;
        let _g = self.lock_vg(pool).await;
        let Some(s) = self.lv(OP, pool, snapshot).await? else {
            // Merged (or never existed): the merge consumes the snapshot.
            return Ok(());
        };
        if !s.is_snapshot() || s.origin != volume {
            return Err(Error::Conflict {
                op: OP,
                ctx: Context::volume(pool, snapshot),
                message: format!("not a snapshot of {volume}"),
            });
        }
        if s.merging {
            return Ok(());
        }
        self.run(
            OP,
            Context::volume(pool, snapshot),
            merge::merge_cmd(&self.lvm, pool, snapshot),
        )
        .await?;
        Ok(())
    }
}

fn snapshot_info(s: &LvReport) -> SnapshotInfo {
    SnapshotInfo {
        pool: s.vg_name.clone(),
        name: s.name.clone(),
        source_volume: s.origin.clone(),
        size_bytes: s.size,
        valid: !s.snapshot_invalid,
    }
}

#[cfg(test)]
mod tests;
