//! Thin provisioning in the lvm engine.
//!
//! A pool (VG `LocalStorage_Pool<CLASS>`) may hold one **thin pool**, the LV
//! [`THIN_POOL_LV`] (`lvcreate --type thin-pool`): a data LV plus a metadata LV (and lvm's
//! hidden spare of the metadata's size). **Thin volumes** (`lvcreate --type thin -V`) have a
//! virtual size; the pool hands out its blocks only when they are first written, so the sum
//! of the virtual sizes may exceed the pool. How far is bounded by the pool's
//! **over-provision ratio**: we never provision more than `data size × ratio` (the maths is
//! [`hwameistor_core::snapshot::ThinPool`]; thin snapshots count what they really hold, see
//! [`hwameistor_core::snapshot::provisioned_bytes`]).
//!
//! - The ratio lives on the host, as the thin pool's LVM tag [`RATIO_TAG`]`=<ratio>` next to
//!   the ownership tag, so it survives agent restarts and store rebuilds (host state is the
//!   truth). No tag means ratio 1.0 (no over-provisioning).
//! - New blocks are zeroed (`-Z y`): a thin volume never reads another volume's old data.
//! - Thin snapshots (`lvcreate -s` of a thin volume, no size) share the origin's blocks; they
//!   are read-only and active like the COW snapshots of thick volumes.
//! - A thin pool is only ever grown (data and metadata separately); a smaller request is
//!   already satisfied. Removing it is refused while it holds thin volumes or snapshots.
//! - The file engine has no thin pools: its sparse files allocate on write too, but they have
//!   no pool to over-provision against and no ratio, so a thin request is refused there
//!   ([`crate::Error::Unsupported`]) rather than silently made thick.

use hwameistor_core::names;
use hwameistor_core::snapshot::{ThinMember, ThinPool, parse_ratio, provisioned_bytes};
use serde::{Deserialize, Serialize};

use super::listing::Change;
use super::{LvReport, LvmEngine, insufficient, stderr_has, validate_pool};
use crate::error::{Context, Error, Result};
use crate::types::{SnapshotInfo, VolumeInfo, round_up_to_extent};

/// Name of the thin pool LV inside a pool's VG (the original's name).
pub const THIN_POOL_LV: &str = "LocalStorage_ThinPool";

/// LVM tag key carrying a thin pool's over-provision ratio (`hwameistor.io/overprovision=2`).
pub const RATIO_TAG: &str = "hwameistor.io/overprovision";

/// What the thin pool of a pool should at least be.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThinPoolRequest {
    /// Data size in bytes (rounded up to extents).
    pub data_bytes: u64,
    /// Metadata size in bytes (rounded up to extents); 0 lets lvm choose it at creation.
    pub metadata_bytes: u64,
    /// At most `data × ratio` bytes may be provisioned; ≥ 1.0.
    pub over_provision_ratio: f64,
}

/// What the host says about a pool's thin pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThinPoolInfo {
    /// The pool (VG) holding it.
    pub pool: String,
    /// The thin pool LV ([`THIN_POOL_LV`]).
    pub name: String,
    pub data_bytes: u64,
    pub metadata_bytes: u64,
    /// How full the data is (percent, lvm's `data_percent`).
    pub data_percent: f64,
    /// How full the metadata is (percent, lvm's `metadata_percent`).
    pub metadata_percent: f64,
    pub over_provision_ratio: f64,
    /// Σ virtual sizes of the thin volumes + what thin snapshots hold.
    pub provisioned_bytes: u64,
    /// Our thin volumes (not snapshots), sorted.
    pub thin_volumes: Vec<String>,
    /// Our thin snapshots, sorted.
    pub thin_snapshots: Vec<String>,
}

impl ThinPoolInfo {
    /// The capacity view used for the ratio checks.
    pub fn capacity(&self) -> ThinPool {
        ThinPool {
            size_bytes: self.data_bytes,
            over_provision_ratio: self.over_provision_ratio,
            provisioned_bytes: self.provisioned_bytes,
        }
    }

    /// Warnings when data or metadata usage is at or above 80 % (empty otherwise).
    pub fn warnings(&self) -> Vec<String> {
        hwameistor_core::snapshot::thin_usage_warnings(self.data_percent, self.metadata_percent)
    }
}

/// `1`, `1.5`, `2.25`: the shortest decimal that parses back to `r`.
pub fn format_ratio(r: f64) -> String {
    format!("{r}")
}

fn ratio_tag(r: f64) -> String {
    format!("{RATIO_TAG}={}", format_ratio(r))
}

/// The thin pool of `lvs` (the rows of one VG), if any, with its members.
pub(crate) fn thin_pool_from_lvs(pool: &str, tag: &str, lvs: &[LvReport]) -> Option<ThinPoolInfo> {
    let tp = lvs
        .iter()
        .find(|l| l.vg_name == pool && l.name == THIN_POOL_LV && l.is_thin_pool())?;
    let members: Vec<&LvReport> = lvs
        .iter()
        .filter(|l| l.vg_name == pool && l.pool_lv == THIN_POOL_LV)
        .collect();
    let accounted: Vec<ThinMember> = members
        .iter()
        .map(|l| {
            if l.origin.is_empty() {
                ThinMember::Volume {
                    virtual_bytes: l.size,
                }
            } else {
                ThinMember::Snapshot {
                    virtual_bytes: l.size,
                    data_percent: l.data_percent.unwrap_or(0.0),
                }
            }
        })
        .collect();
    let mut thin_volumes: Vec<String> = members
        .iter()
        .filter(|l| l.has_tag(tag) && l.origin.is_empty())
        .map(|l| l.name.clone())
        .collect();
    thin_volumes.sort();
    let mut thin_snapshots: Vec<String> = members
        .iter()
        .filter(|l| l.has_tag(tag) && !l.origin.is_empty())
        .map(|l| l.name.clone())
        .collect();
    thin_snapshots.sort();
    Some(ThinPoolInfo {
        pool: pool.to_owned(),
        name: tp.name.clone(),
        data_bytes: tp.size,
        metadata_bytes: tp.metadata_size,
        data_percent: tp.data_percent.unwrap_or(0.0),
        metadata_percent: tp.metadata_percent.unwrap_or(0.0),
        over_provision_ratio: tp
            .tag_value(RATIO_TAG)
            .and_then(|v| parse_ratio(v).ok())
            .unwrap_or(1.0),
        provisioned_bytes: provisioned_bytes(&accounted),
        thin_volumes,
        thin_snapshots,
    })
}

impl LvmEngine {
    /// The thin pool of `pool` as the host has it; a Conflict if it exists without our tag.
    pub(crate) async fn read_thin_pool(
        &self,
        op: &'static str,
        pool: &str,
    ) -> Result<Option<ThinPoolInfo>> {
        let lvs = self.all_lvs(op, pool).await?;
        self.thin_pool_in(op, pool, &lvs)
    }

    /// The thin pool of `pool` in `lvs` (the VG's rows); a Conflict if it is not tagged ours.
    fn thin_pool_in(
        &self,
        op: &'static str,
        pool: &str,
        lvs: &[LvReport],
    ) -> Result<Option<ThinPoolInfo>> {
        if let Some(tp) = lvs
            .iter()
            .find(|l| l.vg_name == pool && l.name == THIN_POOL_LV)
            && !tp.has_tag(&self.cfg.tag)
        {
            return Err(Error::Conflict {
                op,
                ctx: Context::volume(pool, THIN_POOL_LV),
                message: format!(
                    "the thin pool is not tagged {}; refusing to manage it",
                    self.cfg.tag
                ),
            });
        }
        Ok(thin_pool_from_lvs(pool, &self.cfg.tag, lvs))
    }

    /// See [`crate::VolumeEngine::ensure_thin_pool`].
    pub(crate) async fn ensure_thin_pool_impl(
        &self,
        pool: &str,
        req: &ThinPoolRequest,
    ) -> Result<ThinPoolInfo> {
        const OP: &str = "ensure thin pool";
        validate_pool(pool)?;
        let ctx = || Context::volume(pool, THIN_POOL_LV);
        let ratio = req.over_provision_ratio;
        if !(ratio.is_finite() && ratio >= 1.0) {
            return Err(Error::InvalidArgument {
                op: OP,
                ctx: ctx(),
                message: format!("over-provision ratio {ratio} must be a number >= 1.0"),
            });
        }
        if req.data_bytes == 0 {
            return Err(Error::InvalidArgument {
                op: OP,
                ctx: ctx(),
                message: "the thin pool's data size must be positive".into(),
            });
        }
        let _g = self.lock_vg(pool).await;
        let vg = self.must_vg(OP, pool).await?;
        let data = round_up_to_extent(req.data_bytes, vg.extent_size);
        let meta = if req.metadata_bytes == 0 {
            0
        } else {
            round_up_to_extent(req.metadata_bytes, vg.extent_size)
        };
        match self.read_thin_pool(OP, pool).await? {
            None => {
                // lvm keeps a spare copy of the metadata LV (`pmspare`) of the same size.
                let needed = data.saturating_add(meta.saturating_mul(2));
                if needed > vg.free {
                    return Err(insufficient(OP, pool, THIN_POOL_LV, needed, vg.free));
                }
                let rtag = ratio_tag(ratio);
                let create = self.lvm.thin_pool_create(
                    pool,
                    THIN_POOL_LV,
                    data,
                    meta,
                    &[self.cfg.tag.as_str(), rtag.as_str()],
                );
                match self.run(OP, ctx(), create).await {
                    Ok(_) => {}
                    Err(Error::Command { source, .. }) if stderr_has(&source, "already exists") => {
                    }
                    Err(Error::Command { source, .. })
                        if stderr_has(&source, "insufficient")
                            || stderr_has(&source, "not enough") =>
                    {
                        return Err(insufficient(OP, pool, THIN_POOL_LV, needed, vg.free));
                    }
                    Err(e) => return Err(e),
                }
            }
            Some(tp) => {
                if data > tp.data_bytes {
                    let growth = data - tp.data_bytes;
                    if growth > vg.free {
                        return Err(insufficient(OP, pool, THIN_POOL_LV, growth, vg.free));
                    }
                    self.run(OP, ctx(), self.lvm.lv_extend(pool, THIN_POOL_LV, data))
                        .await?;
                }
                if meta > tp.metadata_bytes {
                    // The spare grows with the metadata.
                    let growth = (meta - tp.metadata_bytes).saturating_mul(2);
                    let free = self.our_vg(OP, pool).await?.map(|v| v.free).unwrap_or(0);
                    if growth > free {
                        return Err(insufficient(OP, pool, THIN_POOL_LV, growth, free));
                    }
                    self.run(
                        OP,
                        ctx(),
                        self.lvm.thin_pool_extend_metadata(pool, THIN_POOL_LV, meta),
                    )
                    .await?;
                }
                if tp.over_provision_ratio != ratio {
                    let lvs = self.all_lvs(OP, pool).await?;
                    let old: Option<String> =
                        lvs.iter().find(|l| l.name == THIN_POOL_LV).and_then(|l| {
                            l.tags
                                .iter()
                                .find(|t| t.starts_with(&format!("{RATIO_TAG}=")))
                                .cloned()
                        });
                    self.run(
                        OP,
                        ctx(),
                        self.lvm
                            .lv_retag(pool, THIN_POOL_LV, old.as_deref(), &ratio_tag(ratio)),
                    )
                    .await?;
                }
            }
        }
        self.read_thin_pool(OP, pool)
            .await?
            .ok_or_else(|| Error::VolumeNotFound {
                op: OP,
                pool: pool.to_owned(),
                volume: THIN_POOL_LV.to_owned(),
            })
    }

    /// See [`crate::VolumeEngine::remove_thin_pool`].
    pub(crate) async fn remove_thin_pool_impl(&self, pool: &str) -> Result<()> {
        const OP: &str = "remove thin pool";
        validate_pool(pool)?;
        let _g = self.lock_vg(pool).await;
        let lvs = self.all_lvs(OP, pool).await?;
        if !lvs.iter().any(|l| l.name == THIN_POOL_LV) {
            return Ok(());
        }
        let Some(_) = self.read_thin_pool(OP, pool).await? else {
            return Ok(());
        };
        let members: Vec<&str> = lvs
            .iter()
            .filter(|l| l.pool_lv == THIN_POOL_LV)
            .map(|l| l.name.as_str())
            .collect();
        if !members.is_empty() {
            return Err(Error::Conflict {
                op: OP,
                ctx: Context::volume(pool, THIN_POOL_LV),
                message: format!(
                    "the thin pool still holds thin volumes or snapshots: {}",
                    members.join(", ")
                ),
            });
        }
        self.remove_lv(OP, pool, THIN_POOL_LV).await
    }

    /// A thin volume in the pool's thin pool, within the ratio. Called by `create_volume`
    /// (which validated the names) for `VolumeOptions::thin`.
    pub(crate) async fn create_thin_volume(
        &self,
        pool: &str,
        volume: &str,
        size_bytes: u64,
    ) -> Result<VolumeInfo> {
        const OP: &str = "create thin volume";
        let _g = self.lock_vg(pool).await;
        let (vg, _) = self.vg_for_create(OP, pool).await?;
        let size = round_up_to_extent(size_bytes, vg.extent_size);
        // One listing of the VG serves the name check and the thin pool's accounting.
        let lvs = self.all_lvs(OP, pool).await?;
        if let Some(l) = self.ours_in(OP, pool, volume, &lvs)? {
            if l.is_thin() && l.origin.is_empty() && l.size >= size {
                return Ok(self.volume_info(&l));
            }
            return Err(Error::Conflict {
                op: OP,
                ctx: Context::volume(pool, volume),
                message: format!(
                    "exists as a {} volume of {} bytes; requested a thin volume of {} bytes",
                    if l.is_thin() { "thin" } else { "thick" },
                    l.size,
                    size
                ),
            });
        }
        let tp = self
            .thin_pool_in(OP, pool, &lvs)?
            .ok_or_else(|| Error::InvalidArgument {
                op: OP,
                ctx: Context::volume(pool, volume),
                message: format!(
                    "pool has no thin pool {THIN_POOL_LV}; create one with a ThinPoolClaim"
                ),
            })?;
        let cap = tp.capacity();
        if !cap.can_provision(size) {
            return Err(insufficient(OP, pool, volume, size, cap.free_bytes()));
        }
        let create = self
            .lvm
            .thin_create(pool, THIN_POOL_LV, volume, size, &self.cfg.tag);
        let before = self.before(pool);
        self.run_create(OP, pool, volume, create).await?;
        // A thin volume takes no VG space, but changes its thin pool's row.
        self.account(pool, before, Change::Other).await;
        let l = self.must_lv(OP, pool, volume).await?;
        if l.is_thin() && l.size >= size {
            return Ok(self.volume_info(&l));
        }
        Err(Error::Conflict {
            op: OP,
            ctx: Context::volume(pool, volume),
            message: format!("exists with {} bytes, thin={}", l.size, l.is_thin()),
        })
    }

    /// Growing a thin volume by `growth` bytes must stay within the ratio.
    pub(crate) async fn check_thin_growth(
        &self,
        op: &'static str,
        pool: &str,
        volume: &str,
        growth: u64,
    ) -> Result<()> {
        let tp = self
            .read_thin_pool(op, pool)
            .await?
            .ok_or_else(|| Error::VolumeNotFound {
                op,
                pool: pool.to_owned(),
                volume: THIN_POOL_LV.to_owned(),
            })?;
        let cap = tp.capacity();
        if cap.can_provision(growth) {
            Ok(())
        } else {
            Err(insufficient(op, pool, volume, growth, cap.free_bytes()))
        }
    }

    /// A thin snapshot of the thin volume `volume` (the lock is held by the caller).
    pub(crate) async fn create_thin_snapshot_locked(
        &self,
        pool: &str,
        volume: &str,
        snapshot: &str,
    ) -> Result<SnapshotInfo> {
        const OP: &str = "create thin snapshot";
        names::validate("snapshot", snapshot)?;
        let c = self
            .lvm
            .thin_snapshot(pool, volume, snapshot, &self.cfg.tag);
        self.create_snapshot_lv(OP, pool, snapshot, c).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lvm::report::parse_lvs;

    use crate::lvm::tests::TAG;

    // Captured shape of lvm2 2.03 `lvs` for a VG with a thin pool (ratio tag 2), two thin
    // volumes (one foreign), a thin snapshot, and a thick LV.
    pub(crate) const THIN_LVS: &str = r#"{"report":[{"lv":[
      {"vg_name":"LocalStorage_PoolHDD", "lv_name":"LocalStorage_ThinPool", "lv_path":"", "lv_size":"536870912", "lv_attr":"twi-aotz--", "lv_tags":"hwameistor.io/managed,hwameistor.io/overprovision=2", "stripes":"1", "segtype":"thin-pool", "devices":"LocalStorage_ThinPool_tdata(0)", "origin":"", "lv_snapshot_invalid":"", "lv_merging":"", "pool_lv":"", "data_percent":"41.25", "metadata_percent":"12.70", "lv_metadata_size":"8388608"},
      {"vg_name":"LocalStorage_PoolHDD", "lv_name":"pvc-t1", "lv_path":"/dev/LocalStorage_PoolHDD/pvc-t1", "lv_size":"536870912", "lv_attr":"Vwi-aotz--", "lv_tags":"hwameistor.io/managed", "stripes":"0", "segtype":"thin", "devices":"", "origin":"", "lv_snapshot_invalid":"", "lv_merging":"", "pool_lv":"LocalStorage_ThinPool", "data_percent":"30.00", "metadata_percent":"", "lv_metadata_size":""},
      {"vg_name":"LocalStorage_PoolHDD", "lv_name":"foreign-thin", "lv_path":"/dev/LocalStorage_PoolHDD/foreign-thin", "lv_size":"104857600", "lv_attr":"Vwi-a-tz--", "lv_tags":"", "stripes":"0", "segtype":"thin", "devices":"", "origin":"", "lv_snapshot_invalid":"", "lv_merging":"", "pool_lv":"LocalStorage_ThinPool", "data_percent":"0.00", "metadata_percent":"", "lv_metadata_size":""},
      {"vg_name":"LocalStorage_PoolHDD", "lv_name":"snap-t1", "lv_path":"/dev/LocalStorage_PoolHDD/snap-t1", "lv_size":"536870912", "lv_attr":"Vri-a-tz--", "lv_tags":"hwameistor.io/managed", "stripes":"0", "segtype":"thin", "devices":"", "origin":"pvc-t1", "lv_snapshot_invalid":"", "lv_merging":"", "pool_lv":"LocalStorage_ThinPool", "data_percent":"30,00", "metadata_percent":"", "lv_metadata_size":""},
      {"vg_name":"LocalStorage_PoolHDD", "lv_name":"pvc-thick", "lv_path":"/dev/LocalStorage_PoolHDD/pvc-thick", "lv_size":"8388608", "lv_attr":"-wi-a-----", "lv_tags":"hwameistor.io/managed", "stripes":"1", "segtype":"linear", "devices":"/dev/sdb(200)", "origin":"", "lv_snapshot_invalid":"", "lv_merging":"", "pool_lv":"", "data_percent":"", "metadata_percent":"", "lv_metadata_size":""}
    ]}]}"#;

    #[test]
    fn parses_thin_columns() {
        let lvs = parse_lvs(THIN_LVS).unwrap();
        let tp = &lvs[0];
        assert!(tp.is_thin_pool() && !tp.is_thin());
        assert_eq!(tp.data_percent, Some(41.25));
        assert_eq!(tp.metadata_percent, Some(12.7));
        assert_eq!(tp.metadata_size, 8 << 20);
        assert_eq!(tp.tag_value(RATIO_TAG), Some("2"));
        assert_eq!(tp.tag_value("hwameistor.io/other"), None);
        let t1 = &lvs[1];
        assert!(t1.is_thin() && !t1.is_thin_pool() && !t1.is_snapshot());
        assert_eq!(t1.pool_lv, THIN_POOL_LV);
        assert_eq!(t1.stripes, 1, "stripes 0 of a thin LV reads as 1");
        let s = &lvs[3];
        assert!(s.is_thin() && s.is_snapshot());
        assert_eq!(s.data_percent, Some(30.0), "decimal comma accepted");
        assert_eq!(lvs[4].data_percent, None);
        assert!(!lvs[4].is_thin() && !lvs[4].is_thin_pool());
    }

    #[test]
    fn thin_pool_accounting_from_lvs() {
        let lvs = parse_lvs(THIN_LVS).unwrap();
        let tp = thin_pool_from_lvs("LocalStorage_PoolHDD", TAG, &lvs).unwrap();
        assert_eq!(tp.name, THIN_POOL_LV);
        assert_eq!(tp.data_bytes, 512 << 20);
        assert_eq!(tp.metadata_bytes, 8 << 20);
        assert_eq!(tp.over_provision_ratio, 2.0);
        // 512 MiB + 100 MiB (foreign thin volumes use the pool too) + 30 % of 512 MiB.
        let snap = ((512u64 << 20) as f64 * 0.30).ceil() as u64;
        assert_eq!(tp.provisioned_bytes, (512 << 20) + (100 << 20) + snap);
        assert_eq!(tp.thin_volumes, ["pvc-t1"], "only ours are listed");
        assert_eq!(tp.thin_snapshots, ["snap-t1"]);
        assert_eq!(tp.capacity().limit_bytes(), 1 << 30);
        assert!(tp.warnings().is_empty());
        assert!(thin_pool_from_lvs("LocalStorage_PoolSSD", TAG, &lvs).is_none());
        let warn = ThinPoolInfo {
            data_percent: 80.0,
            metadata_percent: 95.5,
            ..tp
        };
        assert_eq!(warn.warnings().len(), 2);
    }

    // --- engine behaviour against the recording runner ---------------------------------

    use hwameistor_exec::{Output, RecordingRunner};

    use crate::engine::VolumeEngine;
    use crate::lvm::tests::{MI, THIN, VG, engine, mutations, respond, respond_once};
    use crate::types::VolumeOptions;

    fn vgs(free: u64) -> String {
        format!(
            r#"{{"report":[{{"vg":[{{"vg_name":"{VG}", "vg_size":"{}", "vg_free":"{free}", "vg_extent_size":"4194304", "vg_extent_count":"256", "vg_free_count":"{}", "pv_count":"1", "lv_count":"1", "vg_tags":"{TAG}"}}]}}]}}"#,
            1024 * MI,
            free / (4 * MI)
        )
    }

    /// `lvs` rows: (name, size, attr, tags, segtype, origin, pool_lv, data%, meta%, meta size).
    type Row<'a> = (
        &'a str,
        u64,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        u64,
    );

    fn lvs(rows: &[Row]) -> String {
        let rows: Vec<String> = rows
            .iter()
            .map(|(name, size, attr, tags, seg, origin, pool, dp, mp, ms)| {
                format!(
                    r#"{{"vg_name":"{VG}", "lv_name":"{name}", "lv_path":"/dev/{VG}/{name}", "lv_size":"{size}", "lv_attr":"{attr}", "lv_tags":"{tags}", "stripes":"1", "segtype":"{seg}", "devices":"", "origin":"{origin}", "lv_snapshot_invalid":"", "lv_merging":"", "pool_lv":"{pool}", "data_percent":"{dp}", "metadata_percent":"{mp}", "lv_metadata_size":"{ms}"}}"#
                )
            })
            .collect();
        format!(r#"{{"report":[{{"lv":[{}]}}]}}"#, rows.join(","))
    }

    const POOL_TAGS_2: &str = "hwameistor.io/managed,hwameistor.io/overprovision=2";

    fn pool_row(size: u64, tags: &str) -> Row<'_> {
        (
            THIN_POOL_LV,
            size,
            "twi-aotz--",
            tags,
            "thin-pool",
            "",
            "",
            "10.00",
            "5.00",
            8 * MI,
        )
    }

    fn thin_row(name: &str, size: u64) -> Row<'_> {
        (
            name,
            size,
            "Vwi-a-tz--",
            TAG,
            "thin",
            "",
            THIN_POOL_LV,
            "0.00",
            "",
            0,
        )
    }

    /// `lvs <VG>/<lv>` answers each row (single-LV lookups).
    fn each_lv(fake: &RecordingRunner, l: &super::super::Lvm, rows: &[Row]) {
        for r in rows {
            respond(fake, &l.lvs_one(VG, r.0), Output::ok(lvs(&[*r])));
        }
    }

    #[tokio::test]
    async fn creates_a_thin_pool_with_ratio_tag() {
        let (fake, e) = engine();
        let l = e.commands().clone();
        respond(&fake, &l.vgs(None), Output::ok(vgs(1024 * MI)));
        respond_once(&fake, &l.lvs(Some(VG)), Output::ok(lvs(&[])));
        respond(
            &fake,
            &l.lvs(Some(VG)),
            Output::ok(lvs(&[pool_row(512 * MI, POOL_TAGS_2)])),
        );
        let create = l.thin_pool_create(
            VG,
            THIN_POOL_LV,
            512 * MI,
            8 * MI,
            &[TAG, "hwameistor.io/overprovision=2"],
        );
        respond(&fake, &create, Output::ok(""));
        let req = ThinPoolRequest {
            data_bytes: 510 * MI,
            metadata_bytes: 7 * MI,
            over_provision_ratio: 2.0,
        };
        let tp = e.ensure_thin_pool(VG, &req).await.unwrap();
        assert_eq!(
            mutations(&fake),
            [create.display()],
            "sizes rounded to extents"
        );
        assert_eq!(tp.over_provision_ratio, 2.0);
        assert_eq!(tp.data_bytes, 512 * MI);
        assert_eq!((tp.data_percent, tp.metadata_percent), (10.0, 5.0));
        // The same request again changes nothing.
        e.ensure_thin_pool(VG, &req).await.unwrap();
        assert_eq!(mutations(&fake).len(), 1, "idempotent");
        // The pool's volume list never shows the thin pool itself.
        respond(&fake, &l.pvs(), Output::ok(r#"{"report":[{"pv":[]}]}"#));
        let info = e.pool_info(VG).await.unwrap().unwrap();
        assert!(info.volumes.is_empty(), "{:?}", info.volumes);
        assert!(e.list_volumes(Some(VG)).await.unwrap().is_empty());
        assert_eq!(e.thin_pool(VG).await.unwrap().unwrap(), tp);
    }

    #[tokio::test]
    async fn thin_pool_refusals() {
        let (fake, e) = engine();
        let l = e.commands().clone();
        respond(&fake, &l.vgs(None), Output::ok(vgs(100 * MI)));
        respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs(&[])));
        let req = |data, meta, r| ThinPoolRequest {
            data_bytes: data,
            metadata_bytes: meta,
            over_provision_ratio: r,
        };
        // Data + metadata + lvm's spare copy of the metadata must fit.
        let err = e
            .ensure_thin_pool(VG, &req(94 * MI, 4 * MI, 1.0))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InsufficientSpace { requested, available, .. } if requested == 100 * MI + 4 * MI && available == 100 * MI),
            "{err}"
        );
        for bad in [0.5, f64::NAN, f64::INFINITY] {
            let err = e
                .ensure_thin_pool(VG, &req(8 * MI, 0, bad))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        }
        let err = e.ensure_thin_pool(VG, &req(0, 0, 1.0)).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        let err = e
            .ensure_thin_pool("vg0", &req(8 * MI, 0, 1.0))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(mutations(&fake).is_empty());
        // An untagged thin pool is not ours.
        let (fake, e) = engine();
        respond(&fake, &l.vgs(None), Output::ok(vgs(100 * MI)));
        respond(
            &fake,
            &l.lvs(Some(VG)),
            Output::ok(lvs(&[pool_row(64 * MI, "")])),
        );
        let err = e
            .ensure_thin_pool(VG, &req(64 * MI, 0, 1.0))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        assert!(e.thin_pool(VG).await.is_err());
        assert!(mutations(&fake).is_empty());
    }

    #[tokio::test]
    async fn extends_a_thin_pool_and_changes_the_ratio() {
        let (fake, e) = engine();
        let l = e.commands().clone();
        respond(&fake, &l.vgs(None), Output::ok(vgs(400 * MI)));
        respond(
            &fake,
            &l.lvs(Some(VG)),
            Output::ok(lvs(&[pool_row(256 * MI, POOL_TAGS_2)])),
        );
        let ext = l.lv_extend(VG, THIN_POOL_LV, 512 * MI);
        let meta = l.thin_pool_extend_metadata(VG, THIN_POOL_LV, 16 * MI);
        let retag = l.lv_retag(
            VG,
            THIN_POOL_LV,
            Some("hwameistor.io/overprovision=2"),
            "hwameistor.io/overprovision=3",
        );
        for c in [&ext, &meta, &retag] {
            respond(&fake, c, Output::ok(""));
        }
        e.ensure_thin_pool(
            VG,
            &ThinPoolRequest {
                data_bytes: 512 * MI,
                metadata_bytes: 16 * MI,
                over_provision_ratio: 3.0,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            mutations(&fake),
            [ext.display(), meta.display(), retag.display()]
        );
        // A smaller request is already satisfied: never shrink.
        let (fake, e) = engine();
        respond(&fake, &l.vgs(None), Output::ok(vgs(400 * MI)));
        respond(
            &fake,
            &l.lvs(Some(VG)),
            Output::ok(lvs(&[pool_row(256 * MI, POOL_TAGS_2)])),
        );
        e.ensure_thin_pool(
            VG,
            &ThinPoolRequest {
                data_bytes: 128 * MI,
                metadata_bytes: 0,
                over_provision_ratio: 2.0,
            },
        )
        .await
        .unwrap();
        assert!(mutations(&fake).is_empty());
        // Growth beyond the VG's free space is refused before lvextend.
        let err = e
            .ensure_thin_pool(
                VG,
                &ThinPoolRequest {
                    data_bytes: 800 * MI,
                    metadata_bytes: 0,
                    over_provision_ratio: 2.0,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InsufficientSpace { .. }), "{err}");
        assert!(mutations(&fake).is_empty());
    }

    #[tokio::test]
    async fn thin_volumes_stay_within_the_ratio() {
        let (fake, e) = engine();
        let l = e.commands().clone();
        respond(&fake, &l.vgs(None), Output::ok(vgs(400 * MI)));
        // 256 MiB pool × 2 = 512 MiB; 300 MiB already provisioned.
        let existing = [pool_row(256 * MI, POOL_TAGS_2), thin_row("pvc-a", 300 * MI)];
        // One listing serves the name check and the ratio; the new LV is read back alone.
        respond_once(&fake, &l.lvs(Some(VG)), Output::ok(lvs(&existing)));
        let mut after = existing.to_vec();
        after.push(thin_row("pvc-b", 212 * MI));
        respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs(&after)));
        each_lv(&fake, &l, &after);
        let create = l.thin_create(VG, THIN_POOL_LV, "pvc-b", 212 * MI, TAG);
        respond(&fake, &create, Output::ok(""));
        // A thick create of the thin volume's name: lvm refuses the name.
        let thick = l.lv_create(VG, "pvc-b", 212 * MI, 1, TAG);
        respond(
            &fake,
            &thick,
            Output::failed(
                5,
                "  Logical Volume \"pvc-b\" already exists in volume group\n",
            ),
        );
        let thin = THIN;
        // Exactly up to the limit: 300 + 212 = 512 MiB.
        let v = e.create_volume(VG, "pvc-b", 210 * MI, &thin).await.unwrap();
        assert_eq!(v.size_bytes, 212 * MI);
        assert_eq!(mutations(&fake), [create.display()]);
        // Idempotent.
        e.create_volume(VG, "pvc-b", 212 * MI, &thin).await.unwrap();
        assert_eq!(mutations(&fake).len(), 1);
        // One extent more is refused, naming the free provisionable bytes.
        let err = e
            .create_volume(VG, "pvc-c", 4 * MI, &thin)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InsufficientSpace { requested, available, .. } if requested == 4 * MI && available == 0),
            "{err}"
        );
        // A thick request for the thin name conflicts; a thin one for more than it has too.
        let err = e
            .create_volume(VG, "pvc-b", 212 * MI, &VolumeOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
        // Thin + striped is refused.
        let err = e
            .create_volume(
                VG,
                "pvc-d",
                4 * MI,
                &VolumeOptions {
                    striped: true,
                    thin: true,
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        // Growing a thin volume is checked against the ratio, not the VG's free space.
        let err = e.extend_volume(VG, "pvc-b", 216 * MI).await.unwrap_err();
        assert!(matches!(err, Error::InsufficientSpace { .. }), "{err}");
        assert_eq!(
            mutations(&fake),
            [create.display(), thick.display()],
            "only lvm's refused thick create after the thin one"
        );
        // Thin volumes are listed as volumes.
        let names: Vec<String> = e
            .list_volumes(Some(VG))
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        assert_eq!(names, ["pvc-a", "pvc-b"]);
    }

    #[tokio::test]
    async fn snapshots_of_thin_volumes_are_thin_and_removal_is_guarded() {
        let (fake, e) = engine();
        let l = e.commands().clone();
        respond(&fake, &l.vgs(None), Output::ok(vgs(4 * MI)));
        let base = [pool_row(256 * MI, POOL_TAGS_2), thin_row("pvc-a", 300 * MI)];
        each_lv(&fake, &l, &base);
        respond_once(
            &fake,
            &l.lvs_one(VG, "snap-a"),
            Output::failed(5, "  Failed to find logical volume \"x\"\n"),
        );
        let mut after = base.to_vec();
        after.push((
            "snap-a",
            300 * MI,
            "Vri-a-tz--",
            TAG,
            "thin",
            "pvc-a",
            THIN_POOL_LV,
            "0.00",
            "",
            0,
        ));
        respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs(&after)));
        each_lv(&fake, &l, &after[2..]);
        let snap = l.thin_snapshot(VG, "pvc-a", "snap-a", TAG);
        respond(&fake, &snap, Output::ok(""));
        // The VG has only 4 MiB free: a COW snapshot would not fit, a thin one needs nothing.
        let s = e
            .create_snapshot(VG, "pvc-a", "snap-a", 300 * MI)
            .await
            .unwrap();
        assert_eq!(mutations(&fake), [snap.display()]);
        assert_eq!(s.source_volume, "pvc-a");
        assert!(s.valid);
        let tp = e.thin_pool(VG).await.unwrap().unwrap();
        assert_eq!(tp.thin_snapshots, ["snap-a"]);
        assert_eq!(tp.thin_volumes, ["pvc-a"]);
        // The thin pool cannot go while it holds volumes.
        let err = e.remove_thin_pool(VG).await.unwrap_err();
        assert!(
            matches!(&err, Error::Conflict { message, .. } if message.contains("pvc-a") && message.contains("snap-a")),
            "{err}"
        );
        // Empty, it goes with lvremove.
        let (fake, e) = engine();
        respond(
            &fake,
            &l.lvs(Some(VG)),
            Output::ok(lvs(&[pool_row(256 * MI, POOL_TAGS_2)])),
        );
        respond(&fake, &l.lv_remove(VG, THIN_POOL_LV), Output::ok(""));
        e.remove_thin_pool(VG).await.unwrap();
        assert_eq!(mutations(&fake), [l.lv_remove(VG, THIN_POOL_LV).display()]);
    }

    #[tokio::test]
    async fn a_thin_snapshot_is_restored_into_an_existing_thin_target() {
        let (fake, e) = engine();
        let l = e.commands().clone();
        respond(&fake, &l.vgs(None), Output::ok(vgs(4 * MI)));
        let rows = [
            pool_row(256 * MI, POOL_TAGS_2),
            thin_row("pvc-a", 32 * MI),
            // The thin snapshot, inactive.
            (
                "snap-a",
                32 * MI,
                "Vri---tz--",
                TAG,
                "thin",
                "pvc-a",
                THIN_POOL_LV,
                "",
                "",
                0,
            ),
            // The restore target: a thin volume its LocalVolume asked for.
            thin_row("pvc-r", 32 * MI),
        ];
        each_lv(&fake, &l, &rows);
        let act = l.lv_change_active(VG, "snap-a", true);
        respond(&fake, &act, Output::ok(""));
        fake.respond_prefix(&["dd", &format!("if=/dev/{VG}/snap-a")], Output::ok(""));
        let v = e.restore_snapshot(VG, "snap-a", "pvc-r").await.unwrap();
        assert_eq!(v.name, "pvc-r");
        let m = mutations(&fake);
        // No lvcreate: the thin target is used as it is; the snapshot is activated, then
        // copied.
        assert!(!m.iter().any(|c| c.contains("lvcreate")), "{m:?}");
        assert_eq!(m[0], act.display(), "{m:?}");
        assert!(
            m[1].starts_with(&format!("dd if=/dev/{VG}/snap-a of=/dev/{VG}/pvc-r")),
            "{m:?}"
        );
    }

    #[test]
    fn ratio_tags() {
        assert_eq!(ratio_tag(1.0), "hwameistor.io/overprovision=1");
        assert_eq!(ratio_tag(2.5), "hwameistor.io/overprovision=2.5");
        assert_eq!(parse_ratio(&format_ratio(1.75)).unwrap(), 1.75);
    }
}
