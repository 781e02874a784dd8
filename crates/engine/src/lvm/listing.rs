//! Shared listings of the host's LVM state: one `vgs`, one `pvs` and one `lvs <vg>` per VG
//! answer every read of the engine for a while.
//!
//! Every lvm command costs a process start, a device scan and a metadata read (tens of ms on
//! hardware, 0.5–5 s in the TCG guest of tier 2), and the node agent reads a lot: the replica
//! reconciler looks at its volume on every pass and every 30 s, and the pool report reads
//! every pool, thin pool and volume after each burst of changes. So reads are answered from
//! listings of the whole VG instead of one command per question:
//!
//! - **One listing, many readers.** A listing is taken by one caller at a time (an async
//!   mutex per listing): readers that arrive while it runs wait for it and use its result,
//!   so N concurrent `stat_volume`s cost one `lvs <vg>`.
//! - **Our own changes are never missed.** Each listing remembers the generation of our
//!   commands it accounts for ([`LvmEngine::vg_generation`] for a VG's LVs, the engine-wide
//!   count for `vgs`/`pvs`); a command of ours that may have changed something (counted when
//!   it ends, failed or not) makes older listings stale, so a read never misses a change we
//!   made before it started.
//! - **Patched, not re-read, after our own creates and removes.** A thick create reads its LV
//!   back anyway (`lvs <vg>/<lv>`): when that create was the only change since a listing was
//!   taken, the listing gets the new row (the VG's free bytes and LV count, the PV's free
//!   bytes when the layout says which PVs hold how much) and stays valid; a removal takes the
//!   row out. So a burst of creates or deletes does not re-list the VG after every volume.
//! - **Changes behind our back** (another tool, a merge finishing, a mount making an LV
//!   open) are seen when a listing gets older than the caller's limit: [`LISTING_TTL`] for
//!   the node agent's periodic reads, [`super::REPORT_TTL`] where a command is about to
//!   depend on it. Decisions that must see the host as it is now (whether an LV is open
//!   before a removal, a name lvm refuses, space lvm refuses) are still made by lvm itself
//!   or by a single-LV lookup (`lvs <vg>/<lv>`).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::report::{self, LvReport, PvReport, VgReport};
use super::{LvmEngine, parse_err, stderr_has};
use crate::error::{Context, Error, Result};

/// How old a listing may be for the node agent's periodic reads (`stat_volume`, the pool
/// report, orphans): changes made behind our back show within this time (a mount or a
/// mapping on top of a volume shows at once, see `in_use_now`). The replica reconciler's
/// periodic drift check runs every 30 s (standalone) to 60 s, so this adds at most one such
/// period. Our own changes never wait for it. Each refresh is a `vgs`, a `pvs` and an `lvs`
/// per VG: on hardware ~0.1 s; in the TCG guest, refreshed every 10 s, they were 43 % of
/// the lvm time of a burst of 100 creates (tests/vm/bench-lvm.sh).
pub const LISTING_TTL: Duration = Duration::from_secs(30);

/// Rows of one listing and what they account for.
#[derive(Debug, Clone)]
pub(super) struct Listing<T> {
    pub(super) rows: Arc<Vec<T>>,
    /// The generation of our commands the rows account for (per VG for LVs, engine-wide
    /// for `vgs`/`pvs`).
    pub(super) generation: u64,
    /// When the listing command started; patches do not make a listing younger.
    pub(super) taken: Instant,
}

/// One listing slot: `None` until taken, or after a change made it useless.
pub(super) type Slot<T> = Arc<Mutex<Option<Listing<T>>>>;

/// The generations of one VG and the engine before one of our commands ran.
#[derive(Debug, Clone, Copy)]
pub(super) struct Before {
    vg: u64,
    all: u64,
}

/// A change we made and read back, for [`LvmEngine::account`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Change<'a> {
    /// A thick LV was created (as read back).
    Created(&'a LvReport),
    /// Thick LVs were removed (as they were before), by one command.
    Removed(&'a [LvReport]),
    /// Something else: the listings of the VG are stale.
    Other,
}

impl<T> Listing<T> {
    fn usable(&self, generation: u64, max_age: Duration) -> bool {
        self.generation == generation && self.taken.elapsed() < max_age
    }
}

/// The rows of the listing in `slot` if it is usable at `generation` and `max_age`, else
/// the rows `read` returns, kept in the slot (a failed read empties it). The flag says
/// whether `read` ran.
async fn rows_of<T>(
    slot: &mut Option<Listing<T>>,
    generation: u64,
    max_age: Duration,
    read: impl Future<Output = Result<Vec<T>>>,
) -> Result<(Arc<Vec<T>>, bool)> {
    if let Some(l) = slot.as_ref()
        && l.usable(generation, max_age)
    {
        return Ok((l.rows.clone(), false));
    }
    let taken = Instant::now();
    let rows = match read.await {
        Ok(rows) => Arc::new(rows),
        Err(e) => {
            *slot = None;
            return Err(e);
        }
    };
    *slot = Some(Listing {
        rows: rows.clone(),
        generation,
        taken,
    });
    Ok((rows, true))
}

/// A plain thick LV: its creation or removal changes no other row of the VG (a snapshot's
/// would change its origin's attributes, a thin volume's its thin pool's usage).
fn plain_thick(l: &LvReport) -> bool {
    l.attr.starts_with('-') && !l.is_thin() && !l.is_snapshot() && !l.is_thin_pool()
}

/// `major:minor` of a device number, as the mount table and `/sys/dev/block` name it.
fn dev_numbers(rdev: u64) -> String {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    format!("{major}:{minor}")
}

impl LvmEngine {
    /// Whether the block device `dev` is in use right now as far as the kernel shows it
    /// without a command: mounted (the mount table of the namespace our commands run in) or
    /// held by another mapping (`/sys/dev/block/M:m/holders`). A listing's `open` flag is
    /// as old as the listing; a mount made since is seen here. `false` when the device is
    /// not there.
    pub(super) fn in_use_now(&self, dev: &Path) -> bool {
        let Ok(meta) = std::fs::metadata(dev) else {
            return false;
        };
        let numbers = dev_numbers(meta.rdev());
        let held = std::fs::read_dir(format!("/sys/dev/block/{numbers}/holders"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        held || self.runner.mount_table().is_ok_and(|t| {
            t.lines()
                .any(|l| l.split_whitespace().nth(2) == Some(numbers.as_str()))
        })
    }

    /// Our commands on VG `pool` so far (counted when each ended), plus those that named no
    /// VG: a listing of the VG taken at a lower generation may miss one of them.
    pub(super) fn vg_generation(&self, pool: &str) -> u64 {
        let per_vg = self
            .vg_generations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(pool)
            .copied()
            .unwrap_or(0);
        per_vg + self.unscoped.load(Ordering::SeqCst)
    }

    /// Count one of our commands that may have changed VG `pool` (or, without a VG, any).
    pub(super) fn count_mutation(&self, pool: Option<&str>) {
        match pool {
            Some(p) => {
                *self
                    .vg_generations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(p.to_owned())
                    .or_default() += 1;
            }
            None => {
                self.unscoped.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.mutations.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn before(&self, pool: &str) -> Before {
        Before {
            vg: self.vg_generation(pool),
            all: self.generation(),
        }
    }

    pub(super) fn lv_slot(&self, pool: &str) -> Slot<LvReport> {
        self.lv_listings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pool.to_owned())
            .or_default()
            .clone()
    }

    /// Every LV of VG `pool` (ours or not; empty if the VG does not exist) from a listing no
    /// older than `max_age` that accounts for all our commands on the VG so far.
    pub(super) async fn vg_lvs(
        &self,
        op: &'static str,
        pool: &str,
        max_age: Duration,
    ) -> Result<Arc<Vec<LvReport>>> {
        let slot = self.lv_slot(pool);
        let mut listing = slot.lock().await;
        let generation = self.vg_generation(pool);
        let ctx = Context::pool(pool);
        let read = async {
            match self.run(op, ctx.clone(), self.lvm.lvs(Some(pool))).await {
                Ok(out) => report::parse_lvs(&out).map_err(|e| parse_err(op, ctx, "lvs", e)),
                Err(Error::Command { source, .. }) if stderr_has(&source, "not found") => {
                    Ok(Vec::new())
                }
                Err(e) => Err(e),
            }
        };
        Ok(rows_of(&mut listing, generation, max_age, read).await?.0)
    }

    /// The LV `volume` of our VG `pool` from the VG's listing ([`Self::vg_lvs`]): `None` if
    /// missing, Conflict if not tagged as ours.
    pub(super) async fn listed_lv(
        &self,
        op: &'static str,
        pool: &str,
        volume: &str,
        max_age: Duration,
    ) -> Result<Option<LvReport>> {
        let lvs = self.vg_lvs(op, pool, max_age).await?;
        self.ours_in(op, pool, volume, &lvs)
    }

    /// Every VG (ours or not) from a `vgs` no older than `max_age` that accounts for all our
    /// commands so far; the flag says whether this call ran it.
    pub(super) async fn all_vgs(
        &self,
        op: &'static str,
        max_age: Duration,
    ) -> Result<(Arc<Vec<VgReport>>, bool)> {
        let mut listing = self.vgs_listing.lock().await;
        let generation = self.generation();
        let read = async {
            let out = self.run(op, Context::default(), self.lvm.vgs(None)).await?;
            report::parse_vgs(&out).map_err(|e| parse_err(op, Context::default(), "vgs", e))
        };
        rows_of(&mut listing, generation, max_age, read).await
    }

    /// Every PV (in a VG or not) from a `pvs` no older than `max_age` that accounts for all
    /// our commands so far.
    pub(super) async fn all_pvs(
        &self,
        op: &'static str,
        max_age: Duration,
    ) -> Result<Arc<Vec<PvReport>>> {
        let mut listing = self.pvs_listing.lock().await;
        let generation = self.generation();
        let read = async {
            let out = self.run(op, Context::default(), self.lvm.pvs()).await?;
            report::parse_pvs(&out).map_err(|e| parse_err(op, Context::default(), "pvs", e))
        };
        Ok(rows_of(&mut listing, generation, max_age, read).await?.0)
    }

    /// After a command of ours on VG `pool` that started at `before` and the read-back of
    /// what it did: when it was the only change since the listings were taken, patch them
    /// (they stay valid); otherwise drop the ones it made stale.
    pub(super) async fn account(&self, pool: &str, before: Before, change: Change<'_>) {
        let (vg_now, all_now) = (self.vg_generation(pool), self.generation());
        let only_ours_in_vg = vg_now == before.vg + 1;
        let only_ours = all_now == before.all + 1;
        let lvs: Option<Vec<&LvReport>> = match change {
            Change::Created(l) => Some(vec![l]),
            Change::Removed(ls) => Some(ls.iter().collect()),
            Change::Other => None,
        }
        .filter(|ls| ls.iter().all(|l| plain_thick(l)));
        let created = matches!(change, Change::Created(_));

        // The VG's LVs.
        {
            let slot = self.lv_slot(pool);
            let mut listing = slot.lock().await;
            match (listing.as_mut(), &lvs) {
                (Some(li), Some(lvs)) if only_ours_in_vg && li.generation == before.vg => {
                    let rows = Arc::make_mut(&mut li.rows);
                    for l in lvs {
                        rows.retain(|r| !(r.vg_name == l.vg_name && r.name == l.name));
                        if created {
                            rows.push((*l).clone());
                        }
                    }
                    li.generation = vg_now;
                }
                (Some(li), _) if li.generation != vg_now => *listing = None,
                _ => {}
            }
        }

        // The VG's free space and LV count.
        {
            let mut listing = self.vgs_listing.lock().await;
            match (listing.as_mut(), &lvs) {
                (Some(li), Some(lvs)) if only_ours && li.generation == before.all => {
                    let rows = Arc::make_mut(&mut li.rows);
                    if let Some(v) = rows.iter_mut().find(|v| v.name == pool) {
                        for l in lvs {
                            let extents = l.size.checked_div(v.extent_size).unwrap_or(0);
                            if created {
                                v.free = v.free.saturating_sub(l.size);
                                v.free_count = v.free_count.saturating_sub(extents);
                                v.lv_count += 1;
                            } else {
                                v.free = (v.free + l.size).min(v.size);
                                v.free_count = (v.free_count + extents).min(v.extent_count);
                                v.lv_count = v.lv_count.saturating_sub(1);
                            }
                        }
                    }
                    li.generation = all_now;
                }
                (Some(li), _) if li.generation != all_now => *listing = None,
                _ => {}
            }
        }

        // The PVs' free space, when the layout says which PVs hold how much: one PV, or
        // equal stripes on as many PVs.
        {
            let mut listing = self.pvs_listing.lock().await;
            // (PV, bytes) per LV; None if one LV's layout does not say.
            let shares: Option<Vec<(&Path, u64)>> = lvs.as_ref().and_then(|lvs| {
                let mut out = Vec::new();
                for l in lvs {
                    let n = l.devices.len();
                    let share = match n {
                        1 => l.size,
                        n if n > 1 && l.stripes as usize == n => l.size / n as u64,
                        _ => return None,
                    };
                    out.extend(l.devices.iter().map(|d| (d.as_path(), share)));
                }
                Some(out)
            });
            match (listing.as_mut(), shares) {
                (Some(li), Some(shares)) if only_ours && li.generation == before.all => {
                    let rows = Arc::make_mut(&mut li.rows);
                    for (dev, share) in shares {
                        for p in rows.iter_mut().filter(|p| p.name == dev) {
                            p.free = if created {
                                p.free.saturating_sub(share)
                            } else {
                                (p.free + share).min(p.size)
                            };
                        }
                    }
                    li.generation = all_now;
                }
                (Some(li), _) if li.generation != all_now => *listing = None,
                _ => {}
            }
        }
    }
}
