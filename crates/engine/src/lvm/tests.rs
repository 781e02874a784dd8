//! Tier-0 tests of the lvm engine against the recording runner: the exact command lines, the
//! idempotency rules and the ownership rules.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use hwameistor_exec::{Output, RecordingRunner};

use super::*;
use crate::config::LvmConfig;

pub(super) const VG: &str = "LocalStorage_PoolHDD";
pub(super) const MI: u64 = 1024 * 1024;

pub(super) fn engine() -> (RecordingRunner, LvmEngine) {
    let fake = RecordingRunner::new();
    let e = LvmEngine::new(Arc::new(fake.clone()), LvmConfig::default());
    (fake, e)
}

fn argv(c: &Cmd) -> Vec<String> {
    c.argv()
}

pub(super) fn respond(fake: &RecordingRunner, c: &Cmd, out: Output) {
    let a = argv(c);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    fake.respond(&refs, out);
}

pub(super) fn respond_once(fake: &RecordingRunner, c: &Cmd, out: Output) {
    let a = argv(c);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    fake.respond_once(&refs, out);
}

fn vgs_json(rows: &[(&str, u64, u64, u32, u32, &str)]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|(name, size, free, pvs, lvs, tags)| {
            format!(
                r#"{{"vg_name":"{name}", "vg_size":"{size}", "vg_free":"{free}", "vg_extent_size":"4194304", "vg_extent_count":"{}", "vg_free_count":"{}", "pv_count":"{pvs}", "lv_count":"{lvs}", "vg_tags":"{tags}"}}"#,
                size / (4 * MI),
                free / (4 * MI)
            )
        })
        .collect();
    format!(r#"{{"report":[{{"vg":[{}]}}]}}"#, rows.join(","))
}

fn pvs_json(rows: &[(&str, &str, u64, u64)]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|(name, vg, size, free)| {
            format!(
                r#"{{"pv_name":"{name}", "vg_name":"{vg}", "pv_size":"{size}", "pv_free":"{free}", "pv_tags":""}}"#
            )
        })
        .collect();
    format!(r#"{{"report":[{{"pv":[{}]}}]}}"#, rows.join(","))
}

/// (name, size, attr, tags, stripes, devices, origin)
type LvRow<'a> = (&'a str, u64, &'a str, &'a str, u32, &'a str, &'a str);

fn lvs_json(rows: &[LvRow]) -> String {
    let rows: Vec<String> = rows
        .iter()
        .map(|(name, size, attr, tags, stripes, devs, origin)| {
            let seg = if *stripes > 1 { "striped" } else { "linear" };
            format!(
                r#"{{"vg_name":"{VG}", "lv_name":"{name}", "lv_path":"/dev/{VG}/{name}", "lv_size":"{size}", "lv_attr":"{attr}", "lv_tags":"{tags}", "stripes":"{stripes}", "segtype":"{seg}", "devices":"{devs}", "origin":"{origin}", "lv_snapshot_invalid":"", "lv_merging":""}}"#
            )
        })
        .collect();
    format!(r#"{{"report":[{{"lv":[{}]}}]}}"#, rows.join(","))
}

pub(super) const TAG: &str = "hwameistor.io/managed";

pub(super) const STRIPED: VolumeOptions = VolumeOptions {
    striped: true,
    thin: false,
};
pub(super) const THIN: VolumeOptions = VolumeOptions {
    striped: false,
    thin: true,
};

pub(super) fn mutations(fake: &RecordingRunner) -> Vec<String> {
    fake.command_lines()
        .into_iter()
        .filter(|l| !l.starts_with("vgs ") && !l.starts_with("pvs ") && !l.starts_with("lvs "))
        .collect()
}

/// `pvs` answers these 100 MiB PVs of VG, all free.
fn pvs_in_vg(fake: &RecordingRunner, l: &Lvm, devs: &[&str]) {
    let rows: Vec<(&str, &str, u64, u64)> =
        devs.iter().map(|d| (*d, VG, 100 * MI, 100 * MI)).collect();
    respond(fake, &l.pvs(), Output::ok(pvs_json(&rows)));
}

/// Our empty VG on the one PV /dev/sdb (100 MiB): `vgs`, and `pvs` once or always.
fn pool_on_sdb(fake: &RecordingRunner, l: &Lvm, pvs_once: bool) {
    respond(
        fake,
        &l.vgs(None),
        Output::ok(vgs_json(&[(VG, 100 * MI, 100 * MI, 1, 0, TAG)])),
    );
    let pvs = Output::ok(pvs_json(&[("/dev/sdb", VG, 100 * MI, 100 * MI)]));
    if pvs_once {
        respond_once(fake, &l.pvs(), pvs);
    } else {
        respond(fake, &l.pvs(), pvs);
    }
}

#[tokio::test]
async fn creates_a_pool_from_disks() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    respond_once(&fake, &l.vgs(None), Output::ok(vgs_json(&[])));
    respond(
        &fake,
        &l.vgs(None),
        Output::ok(vgs_json(&[(VG, 200 * MI, 200 * MI, 2, 0, TAG)])),
    );
    respond_once(&fake, &l.pvs(), Output::ok(pvs_json(&[])));
    pvs_in_vg(&fake, &l, &["/dev/sdb", "/dev/sdc"]);
    respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs_json(&[])));
    respond(
        &fake,
        &l.vg_create(VG, &[Path::new("/dev/sdb"), Path::new("/dev/sdc")], TAG),
        Output::ok(""),
    );
    let info = e
        .ensure_pool(
            VG,
            &["/dev/sdb".into(), "/dev/sdc".into(), "/dev/sdb".into()],
        )
        .await
        .unwrap();
    assert_eq!(
        mutations(&fake),
        ["vgcreate -y --addtag hwameistor.io/managed LocalStorage_PoolHDD /dev/sdb /dev/sdc"]
    );
    assert_eq!(info.total_bytes, 200 * MI);
    assert_eq!(info.free_bytes, 200 * MI);
    assert_eq!(info.used_bytes, 0);
    assert_eq!(info.extent_bytes, 4 * MI);
    assert_eq!(info.disks.len(), 2);
    assert_eq!(info.path, PathBuf::from("/dev/LocalStorage_PoolHDD"));
}

#[tokio::test]
async fn extends_a_pool_only_with_new_disks_and_is_idempotent() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_on_sdb(&fake, &l, true);
    pvs_in_vg(&fake, &l, &["/dev/sdb", "/dev/sdc"]);
    respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs_json(&[])));
    respond(
        &fake,
        &l.vg_extend(VG, &[Path::new("/dev/sdc")]),
        Output::ok(""),
    );
    e.ensure_pool(VG, &["/dev/sdb".into(), "/dev/sdc".into()])
        .await
        .unwrap();
    assert_eq!(
        mutations(&fake),
        ["vgextend -y LocalStorage_PoolHDD /dev/sdc"]
    );

    // Run again: both disks are in the VG now, nothing to do.
    e.ensure_pool(VG, &["/dev/sdb".into(), "/dev/sdc".into()])
        .await
        .unwrap();
    assert_eq!(mutations(&fake).len(), 1);
}

#[tokio::test]
async fn vgextend_failure_is_a_clear_error_with_stderr() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_on_sdb(&fake, &l, false);
    respond(
        &fake,
        &l.vg_extend(VG, &[Path::new("/dev/sdx")]),
        Output::failed(5, "  Device /dev/sdx excluded by a filter.\n"),
    );
    let err = e.ensure_pool(VG, &["/dev/sdx".into()]).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("ensure pool"), "{msg}");
    assert!(msg.contains("LocalStorage_PoolHDD"), "{msg}");
    assert!(msg.contains("/dev/sdx"), "{msg}");
    assert!(msg.contains("excluded by a filter"), "{msg}");
    assert_eq!(
        err.command_stderr().map(str::trim),
        Some("Device /dev/sdx excluded by a filter.")
    );
}

#[tokio::test]
async fn refuses_untagged_vgs_and_disks_of_other_vgs() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    respond(
        &fake,
        &l.vgs(None),
        Output::ok(vgs_json(&[(VG, 100 * MI, 100 * MI, 1, 0, "")])),
    );
    let err = e.ensure_pool(VG, &["/dev/sdb".into()]).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(e.pool_info(VG).await.is_err());
    assert!(
        e.list_pools().await.unwrap().is_empty(),
        "untagged VG is not listed"
    );

    let (fake, e) = engine();
    respond(&fake, &l.vgs(None), Output::ok(vgs_json(&[])));
    respond(
        &fake,
        &l.pvs(),
        Output::ok(pvs_json(&[("/dev/sdb", "rootvg", 100 * MI, 0)])),
    );
    let err = e.ensure_pool(VG, &["/dev/sdb".into()]).await.unwrap_err();
    assert!(err.to_string().contains("rootvg"), "{err}");
    assert!(mutations(&fake).is_empty());
}

#[tokio::test]
async fn validates_names_before_argv() {
    let (fake, e) = engine();
    assert!(matches!(
        e.create_volume(VG, "-rf", MI, &VolumeOptions::default())
            .await,
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        e.create_volume("rootvg", "pvc-1", MI, &VolumeOptions::default())
            .await,
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        e.delete_volume(VG, "a/b").await,
        Err(Error::InvalidName(_))
    ));
    assert!(fake.calls().is_empty());
}

/// A linear LV of ours on /dev/sdb.
fn ours<'a>(name: &'a str, size: u64, attr: &'a str) -> LvRow<'a> {
    (name, size, attr, TAG, 1, "/dev/sdb(0)", "")
}

/// `lvs <VG>/<lv>` of a row: answers the row, every time or once.
fn has_lv(fake: &RecordingRunner, l: &Lvm, row: LvRow) {
    respond(fake, &l.lvs_one(VG, row.0), Output::ok(lvs_json(&[row])));
}

fn has_lv_once(fake: &RecordingRunner, l: &Lvm, row: LvRow) {
    respond_once(fake, &l.lvs_one(VG, row.0), Output::ok(lvs_json(&[row])));
}

fn lv_missing() -> Output {
    Output::failed(
        5,
        "  Failed to find logical volume \"LocalStorage_PoolHDD/x\"\n",
    )
}

/// `lvs <VG>/<name>` fails as lvm does for a missing LV, every time or once.
fn no_lv(fake: &RecordingRunner, l: &Lvm, name: &str) {
    respond(fake, &l.lvs_one(VG, name), lv_missing());
}

fn no_lv_once(fake: &RecordingRunner, l: &Lvm, name: &str) {
    respond_once(fake, &l.lvs_one(VG, name), lv_missing());
}

fn already_exists(name: &str) -> Output {
    Output::failed(
        5,
        format!("  Logical Volume \"{name}\" already exists in volume group \"{VG}\"\n"),
    )
}

/// Our VG with two PVs, `free` bytes free and these LVs (listed, and each one looked up).
fn pool_with_lvs(fake: &RecordingRunner, l: &Lvm, free: u64, lvs: &[LvRow]) {
    respond(
        fake,
        &l.vgs(None),
        Output::ok(vgs_json(&[(VG, 200 * MI, free, 2, lvs.len() as u32, TAG)])),
    );
    respond(
        fake,
        &l.pvs(),
        Output::ok(pvs_json(&[
            ("/dev/sdb", VG, 100 * MI, free / 2),
            ("/dev/sdc", VG, 100 * MI, free / 2),
        ])),
    );
    respond(fake, &l.lvs(Some(VG)), Output::ok(lvs_json(lvs)));
    for row in lvs {
        has_lv(fake, l, *row);
    }
}

/// How often exactly this command ran.
fn ran(fake: &RecordingRunner, c: &Cmd) -> usize {
    let line = c.display();
    fake.command_lines().iter().filter(|l| **l == line).count()
}

/// How many commands starting with `prefix` ran.
fn count(fake: &RecordingRunner, prefix: &str) -> usize {
    fake.command_lines()
        .iter()
        .filter(|c| c.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn create_rounds_to_extents_and_stripes_across_pvs() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(&fake, &l, 200 * MI, &[]);
    for (lv, size, stripes) in [("pvc-1", 8, 1), ("pvc-3", 4, 1), ("pvc-2", 24, 2)] {
        respond(
            &fake,
            &l.lv_create(VG, lv, size * MI, stripes, TAG),
            Output::ok(""),
        );
    }
    has_lv(&fake, &l, ours("pvc-1", 8 * MI, "-wi-a-----"));
    has_lv(&fake, &l, ours("pvc-3", 4 * MI, "-wi-a-----"));
    has_lv(
        &fake,
        &l,
        (
            "pvc-2",
            24 * MI,
            "-wi-a-----",
            TAG,
            2,
            "/dev/sdb(2),/dev/sdc(0)",
            "",
        ),
    );
    let v = e
        .create_volume(VG, "pvc-1", 5 * MI, &VolumeOptions::default())
        .await
        .unwrap();
    assert_eq!(v.size_bytes, 8 * MI);
    assert_eq!(
        v.device_path,
        PathBuf::from("/dev/LocalStorage_PoolHDD/pvc-1")
    );
    assert!(v.attrs.active);
    // The next create of the burst reuses the VG's facts: no second vgs.
    e.create_volume(VG, "pvc-3", 3 * MI, &VolumeOptions::default())
        .await
        .unwrap();
    assert_eq!(count(&fake, "vgs "), 1);

    let v = e
        .create_volume(VG, "pvc-2", 21 * MI, &STRIPED)
        .await
        .unwrap();
    assert_eq!(v.attrs.stripes, 2);
    assert_eq!(v.attrs.disks.len(), 2);
    assert_eq!(
        mutations(&fake),
        [
            "lvcreate -y --addtag hwameistor.io/managed --wipesignatures y --zero y -n pvc-1 -L 8388608b LocalStorage_PoolHDD",
            "lvcreate -y --addtag hwameistor.io/managed --wipesignatures y --zero y -n pvc-3 -L 4194304b LocalStorage_PoolHDD",
            "lvcreate -y --addtag hwameistor.io/managed --wipesignatures y --zero y -n pvc-2 -L 25165824b -i 2 LocalStorage_PoolHDD",
        ]
    );
    // Striping reads the PV count afresh; no create listed the VG's LVs.
    assert_eq!(count(&fake, "vgs "), 2);
    assert_eq!(ran(&fake, &l.lvs(Some(VG))), 0);
}

/// The `vgs` listing's row of VG.
fn listed_vg(e: &LvmEngine) -> VgReport {
    let l = e.vgs_listing.try_lock().unwrap();
    let l = l.as_ref().expect("a vgs listing");
    l.rows.iter().find(|v| v.name == VG).unwrap().clone()
}

#[tokio::test]
async fn vg_facts_follow_our_creates_and_removes_and_drop_on_other_changes_and_age() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(&fake, &l, 100 * MI, &[ours("pvc-0", 4 * MI, "-wi-a-----")]);
    for lv in ["pvc-1", "pvc-2", "pvc-3", "pvc-4"] {
        respond(&fake, &l.lv_create(VG, lv, 4 * MI, 1, TAG), Output::ok(""));
        has_lv(&fake, &l, ours(lv, 4 * MI, "-wi-a-----"));
    }
    respond(&fake, &l.lv_remove(VG, "pvc-0"), Output::ok(""));
    respond(
        &fake,
        &l.lv_change_active(VG, "pvc-2", false),
        Output::ok(""),
    );
    let opts = VolumeOptions::default();
    e.create_volume(VG, "pvc-1", 4 * MI, &opts).await.unwrap();
    assert_eq!(listed_vg(&e).free, 96 * MI);
    // Our own removal is accounted too (the VG's listing knew pvc-0: no lookup first).
    e.delete_volume(VG, "pvc-0").await.unwrap();
    assert_eq!(ran(&fake, &l.lvs_one(VG, "pvc-0")), 0);
    assert_eq!((listed_vg(&e).free, listed_vg(&e).lv_count), (100 * MI, 1));
    e.create_volume(VG, "pvc-2", 4 * MI, &opts).await.unwrap();
    assert_eq!(count(&fake, "vgs "), 1);
    // Any other command that may change something makes them stale.
    e.deactivate_volume(VG, "pvc-2").await.unwrap();
    e.create_volume(VG, "pvc-3", 4 * MI, &opts).await.unwrap();
    assert_eq!(count(&fake, "vgs "), 2);
    // So does age: facts older than VG_FACTS_TTL are read again.
    if let Some(li) = e.vgs_listing.try_lock().unwrap().as_mut() {
        li.taken -= VG_FACTS_TTL;
    }
    e.create_volume(VG, "pvc-4", 4 * MI, &opts).await.unwrap();
    assert_eq!(count(&fake, "vgs "), 3);
    // The last vgs said 100 MiB; pvc-4 was accounted since.
    assert_eq!(listed_vg(&e).free, 96 * MI);
}

#[tokio::test]
async fn create_is_idempotent_and_detects_mismatch() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(&fake, &l, 100 * MI, &[ours("pvc-1", 8 * MI, "-wi-a-----")]);
    // lvm refuses the existing name before it allocates anything; the LV is read back and
    // "already exists" is success when it matches.
    respond(
        &fake,
        &l.lv_create(VG, "pvc-1", 8 * MI, 1, TAG),
        already_exists("pvc-1"),
    );
    respond(
        &fake,
        &l.lv_create(VG, "pvc-1", 100 * MI, 1, TAG),
        already_exists("pvc-1"),
    );
    respond(
        &fake,
        &l.lv_create(VG, "pvc-1", 8 * MI, 2, TAG),
        already_exists("pvc-1"),
    );
    let v = e
        .create_volume(VG, "pvc-1", 8 * MI, &VolumeOptions::default())
        .await
        .unwrap();
    assert_eq!(v.size_bytes, 8 * MI);
    let err = e
        .create_volume(VG, "pvc-1", 100 * MI, &VolumeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    let err = e
        .create_volume(VG, "pvc-1", 8 * MI, &STRIPED)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    // Bigger than the VG's free space: the existing LV decides, no lvcreate.
    let err = e
        .create_volume(VG, "pvc-1", 101 * MI, &VolumeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(count(&fake, "lvcreate "), 3);

    // A retry of a create that happened succeeds on a full VG, without lvcreate.
    let (fake, e) = engine();
    pool_with_lvs(&fake, &l, 0, &[ours("pvc-1", 8 * MI, "-wi-a-----")]);
    let v = e
        .create_volume(VG, "pvc-1", 8 * MI, &VolumeOptions::default())
        .await
        .unwrap();
    assert_eq!(v.size_bytes, 8 * MI);
    assert!(mutations(&fake).is_empty());

    // An LV of that name without our tag is not ours.
    let (fake, e) = engine();
    pool_with_lvs(
        &fake,
        &l,
        100 * MI,
        &[("pvc-1", 8 * MI, "-wi-a-----", "", 1, "/dev/sdb(0)", "")],
    );
    respond(
        &fake,
        &l.lv_create(VG, "pvc-1", 8 * MI, 1, TAG),
        already_exists("pvc-1"),
    );
    let err = e
        .create_volume(VG, "pvc-1", 8 * MI, &VolumeOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict { message, .. } if message.contains("not ours")),
        "{err}"
    );
}

#[tokio::test]
async fn create_reports_insufficient_space_and_thin_without_pool() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(&fake, &l, 16 * MI, &[]);
    no_lv(&fake, &l, "pvc-1");
    let err = e
        .create_volume(VG, "pvc-1", 17 * MI, &VolumeOptions::default())
        .await
        .unwrap_err();
    match err {
        Error::InsufficientSpace {
            requested,
            available,
            ..
        } => {
            assert_eq!((requested, available), (20 * MI, 16 * MI));
        }
        other => panic!("{other}"),
    }
    assert!(mutations(&fake).is_empty());
    // lvcreate's own complaint is mapped too, with the VG's free space read afresh.
    respond(
        &fake,
        &l.lv_create(VG, "pvc-2", 16 * MI, 1, TAG),
        Output::failed(
            5,
            "  Volume group \"LocalStorage_PoolHDD\" has insufficient free space (3 extents): 4 required.\n",
        ),
    );
    let vgs_before = count(&fake, "vgs ");
    let err = e
        .create_volume(VG, "pvc-2", 16 * MI, &VolumeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InsufficientSpace { .. }), "{err}");
    assert_eq!(count(&fake, "vgs "), vgs_before + 1);
    let err = e.create_volume(VG, "pvc-3", MI, &THIN).await.unwrap_err();
    // Thin without a thin pool: a clear error naming the way out (thin.rs tests the rest).
    assert!(
        matches!(&err, Error::InvalidArgument { message, .. } if message.contains("ThinPoolClaim")),
        "{err}"
    );
}

#[tokio::test]
async fn remembered_free_space_is_checked_afresh_before_refusing() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    // The first vgs says 8 MiB free; someone frees space; the next says 100 MiB.
    respond_once(
        &fake,
        &l.vgs(None),
        Output::ok(vgs_json(&[(VG, 200 * MI, 8 * MI, 2, 0, TAG)])),
    );
    pool_with_lvs(&fake, &l, 100 * MI, &[]);
    for (lv, size) in [("pvc-1", 8), ("pvc-2", 16)] {
        respond(
            &fake,
            &l.lv_create(VG, lv, size * MI, 1, TAG),
            Output::ok(""),
        );
        has_lv(&fake, &l, ours(lv, size * MI, "-wi-a-----"));
    }
    let opts = VolumeOptions::default();
    e.create_volume(VG, "pvc-1", 8 * MI, &opts).await.unwrap();
    // Remembered: 0 bytes free. Fresh: 100 MiB. The create goes ahead.
    e.create_volume(VG, "pvc-2", 16 * MI, &opts).await.unwrap();
    assert_eq!(count(&fake, "vgs "), 2);
    assert_eq!(count(&fake, "lvcreate "), 2);
}

#[tokio::test]
async fn delete_rules() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(
        &fake,
        &l,
        100 * MI,
        &[
            ("pvc-1", 8 * MI, "-wi-a-----", TAG, 1, "/dev/sdb(0)", ""),
            ("pvc-open", 8 * MI, "-wi-ao----", TAG, 1, "/dev/sdb(2)", ""),
            ("foreign", 8 * MI, "-wi-a-----", "", 1, "/dev/sdc(0)", ""),
        ],
    );
    no_lv(&fake, &l, "pvc-gone");
    respond(&fake, &l.lv_remove(VG, "pvc-1"), Output::ok(""));
    e.delete_volume(VG, "pvc-1").await.unwrap();
    // Missing: success, no command.
    e.delete_volume(VG, "pvc-gone").await.unwrap();
    assert!(matches!(
        e.delete_volume(VG, "pvc-open").await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        e.delete_volume(VG, "foreign").await,
        Err(Error::Conflict { .. })
    ));
    assert_eq!(mutations(&fake), ["lvremove -y LocalStorage_PoolHDD/pvc-1"]);
}

#[tokio::test]
async fn lvremove_failed_to_find_is_success() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(
        &fake,
        &l,
        100 * MI,
        &[("pvc-1", 8 * MI, "-wi-a-----", TAG, 1, "/dev/sdb(0)", "")],
    );
    respond(
        &fake,
        &l.lv_remove(VG, "pvc-1"),
        Output::failed(
            5,
            "  Failed to find logical volume \"LocalStorage_PoolHDD/pvc-1\"\n",
        ),
    );
    e.delete_volume(VG, "pvc-1").await.unwrap();
}

#[tokio::test]
async fn lvremove_retries_a_transient_open_and_gives_up_on_a_lasting_one() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(
        &fake,
        &l,
        100 * MI,
        &[
            ("pvc-1", 8 * MI, "-wi-a-----", TAG, 1, "/dev/sdb(0)", ""),
            ("pvc-2", 8 * MI, "-wi-a-----", TAG, 1, "/dev/sdb(2)", ""),
        ],
    );
    let busy = || Output::failed(5, "  Logical volume LocalStorage_PoolHDD/pvc-1 in use.\n");
    // udev's probe holds pvc-1 open for two attempts, then lets go.
    respond_once(&fake, &l.lv_remove(VG, "pvc-1"), busy());
    respond_once(&fake, &l.lv_remove(VG, "pvc-1"), busy());
    respond(&fake, &l.lv_remove(VG, "pvc-1"), Output::ok(""));
    e.delete_volume(VG, "pvc-1").await.unwrap();
    // pvc-2 stays in use: the error carries lvm's message after a bounded number of tries.
    respond(
        &fake,
        &l.lv_remove(VG, "pvc-2"),
        Output::failed(5, "  Logical volume LocalStorage_PoolHDD/pvc-2 in use.\n"),
    );
    let err = e.delete_volume(VG, "pvc-2").await.unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    let removes = |lv: &str| {
        mutations(&fake)
            .iter()
            .filter(|m| m.ends_with(&format!("/{lv}")))
            .count()
    };
    assert_eq!(removes("pvc-1"), 3);
    assert_eq!(removes("pvc-2"), 6);
}

#[tokio::test]
async fn extend_rules() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(
        &fake,
        &l,
        40 * MI,
        &[("pvc-1", 8 * MI, "-wi-a-----", TAG, 1, "/dev/sdb(0)", "")],
    );
    // Same size after rounding: nothing to do.
    let v = e.extend_volume(VG, "pvc-1", 7 * MI).await.unwrap();
    assert_eq!(v.size_bytes, 8 * MI);
    assert!(mutations(&fake).is_empty());
    // Shrink is refused.
    let err = e.extend_volume(VG, "pvc-1", 4 * MI).await.unwrap_err();
    assert!(
        matches!(err, Error::Shrink { current, requested, .. } if current == 8 * MI && requested == 4 * MI)
    );
    assert!(err.to_string().contains("shrinking"), "{err}");
    // Too big.
    let err = e.extend_volume(VG, "pvc-1", 100 * MI).await.unwrap_err();
    assert!(matches!(err, Error::InsufficientSpace { .. }), "{err}");
    // Grow.
    respond(&fake, &l.lv_extend(VG, "pvc-1", 16 * MI), Output::ok(""));
    e.extend_volume(VG, "pvc-1", 13 * MI).await.unwrap();
    assert_eq!(
        mutations(&fake),
        ["lvextend -y -L 16777216b LocalStorage_PoolHDD/pvc-1"]
    );
    // Missing volume.
    no_lv(&fake, &l, "pvc-x");
    assert!(matches!(
        e.extend_volume(VG, "pvc-x", 16 * MI).await,
        Err(Error::VolumeNotFound { .. })
    ));
}

#[tokio::test]
async fn lists_only_our_volumes_and_finds_orphans() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    respond(
        &fake,
        &l.vgs(None),
        Output::ok(vgs_json(&[
            (VG, 200 * MI, 100 * MI, 2, 4, TAG),
            ("rootvg", 100 * MI, 0, 1, 1, ""),
        ])),
    );
    let all = format!(
        r#"{{"report":[{{"lv":[
        {{"vg_name":"{VG}","lv_name":"pvc-a","lv_size":"8388608","lv_attr":"-wi-a-----","lv_tags":"{TAG}","stripes":"1"}},
        {{"vg_name":"{VG}","lv_name":"pvc-b","lv_size":"8388608","lv_attr":"-wi-a-----","lv_tags":"{TAG}","stripes":"1"}},
        {{"vg_name":"{VG}","lv_name":"manual","lv_size":"8388608","lv_attr":"-wi-a-----","lv_tags":"","stripes":"1"}},
        {{"vg_name":"{VG}","lv_name":"snap-a","lv_size":"8388608","lv_attr":"swi-a-s---","lv_tags":"{TAG}","origin":"pvc-a"}}
        ]}}]}}"#
    );
    respond(&fake, &l.lvs(Some(VG)), Output::ok(all));
    let names: Vec<String> = e
        .list_volumes(None)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["pvc-a", "pvc-b"]);
    let known: HashSet<String> = ["pvc-a".to_string()].into();
    let orphans: Vec<String> = e
        .find_orphans(&known)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(orphans, ["pvc-b"]);
    // Only our VGs are listed, once for both calls.
    assert_eq!(count(&fake, "lvs "), 1);
}

#[tokio::test]
async fn stat_of_missing_vg_or_lv_is_none_and_other_failures_are_errors() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    respond(
        &fake,
        &l.lvs(Some(VG)),
        Output::failed(
            5,
            "  Volume group \"LocalStorage_PoolHDD\" not found\n  Cannot process volume group LocalStorage_PoolHDD\n",
        ),
    );
    assert_eq!(e.stat_volume(VG, "pvc-1").await.unwrap(), None);

    let (fake, e) = engine();
    respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs_json(&[])));
    assert_eq!(e.stat_volume(VG, "pvc-2").await.unwrap(), None);

    let (fake, e) = engine();
    respond_once(
        &fake,
        &l.lvs(Some(VG)),
        Output::failed(5, "  Reading VG LocalStorage_PoolHDD failed.\n"),
    );
    respond(
        &fake,
        &l.lvs(Some(VG)),
        Output::ok(lvs_json(&[ours("pvc-3", 8 * MI, "-wi-a-----")])),
    );
    assert!(e.stat_volume(VG, "pvc-3").await.is_err());
    // A failed listing is not kept: the next stat lists again.
    let v = e.stat_volume(VG, "pvc-3").await.unwrap().unwrap();
    assert_eq!(
        (v.size_bytes, v.attrs.active, v.attrs.open),
        (8 * MI, true, false)
    );
    assert_eq!(count(&fake, "lvs "), 2);
    assert_eq!(
        ran(&fake, &l.lvs_one(VG, "pvc-3")),
        0,
        "no single-LV lookup"
    );
}

/// Runs every command of the recording runner after a pause, so concurrent callers overlap.
#[derive(Debug)]
struct Slow(RecordingRunner);

#[async_trait]
impl hwameistor_exec::Runner for Slow {
    async fn output(&self, cmd: &Cmd) -> hwameistor_exec::Result<Output> {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        self.0.output(cmd).await
    }
}

#[tokio::test]
async fn concurrent_stats_share_one_listing() {
    let fake = RecordingRunner::new();
    let e = Arc::new(LvmEngine::new(
        Arc::new(Slow(fake.clone())),
        LvmConfig::default(),
    ));
    let l = e.commands().clone();
    let rows: Vec<String> = (0..20).map(|i| format!("pvc-{i}")).collect();
    let lvs: Vec<LvRow> = rows.iter().map(|n| ours(n, 8 * MI, "-wi-a-----")).collect();
    respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs_json(&lvs)));
    let stats: Vec<_> = rows
        .iter()
        .map(|n| {
            let e = e.clone();
            let n = n.clone();
            tokio::spawn(async move { e.stat_volume(VG, &n).await })
        })
        .collect();
    for s in stats {
        assert!(s.await.unwrap().unwrap().is_some());
    }
    assert_eq!(
        fake.command_lines(),
        [l.lvs(Some(VG)).display()],
        "one lvs for 20 stats"
    );
}

#[tokio::test]
async fn a_burst_of_creates_and_deletes_keeps_the_listings_without_listing_again() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(&fake, &l, 200 * MI, &[]);
    let names: Vec<String> = (0..5).map(|i| format!("pvc-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        respond(&fake, &l.lv_create(VG, n, 8 * MI, 1, TAG), Output::ok(""));
        let dev = format!("/dev/sdb({})", i * 2);
        has_lv(&fake, &l, (n, 8 * MI, "-wi-a-----", TAG, 1, &dev, ""));
        respond(&fake, &l.lv_remove(VG, n), Output::ok(""));
    }
    let opts = VolumeOptions::default();
    // The node agent has listed everything once (a pass of the pool report).
    e.list_pools().await.unwrap();
    for n in &names {
        e.create_volume(VG, n, 8 * MI, &opts).await.unwrap();
        // The replica looks at its volume after every step: from the patched listing.
        assert!(e.stat_volume(VG, n).await.unwrap().is_some());
    }
    let p = e.pool_info(VG).await.unwrap().unwrap();
    assert_eq!(p.free_bytes, 160 * MI);
    assert_eq!(p.volumes, names);
    let sdb = p
        .disks
        .iter()
        .find(|d| d.dev_path == Path::new("/dev/sdb"))
        .unwrap();
    assert_eq!(sdb.free_bytes, 100 * MI - 40 * MI, "the PV holding them");
    for n in &names {
        e.delete_volume(VG, n).await.unwrap();
        assert!(e.stat_volume(VG, n).await.unwrap().is_none());
    }
    let p = e.pool_info(VG).await.unwrap().unwrap();
    assert_eq!((p.free_bytes, p.volume_count), (200 * MI, 0));
    assert!(p.volumes.is_empty());
    // Per volume: lvcreate, one read-back, lvremove. The listings ran once.
    assert_eq!(count(&fake, "lvcreate "), 5);
    assert_eq!(count(&fake, "lvremove "), 5);
    assert_eq!(count(&fake, "lvs "), 1 + 5);
    assert_eq!(count(&fake, "vgs "), 1);
    assert_eq!(count(&fake, "pvs "), 1);
}

#[tokio::test]
async fn activation_commands() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    has_lv_once(&fake, &l, ours("pvc-1", 8 * MI, "-wi-------"));
    has_lv_once(&fake, &l, ours("pvc-1", 8 * MI, "-wi-a-----"));
    respond(
        &fake,
        &l.lv_change_active(VG, "pvc-1", true),
        Output::ok(""),
    );
    let v = e.activate_volume(VG, "pvc-1").await.unwrap();
    assert!(v.attrs.active);
    has_lv_once(&fake, &l, ours("pvc-1", 8 * MI, "-wi-a-----"));
    respond(
        &fake,
        &l.lv_change_active(VG, "pvc-1", false),
        Output::ok(""),
    );
    e.deactivate_volume(VG, "pvc-1").await.unwrap();
    assert_eq!(
        mutations(&fake),
        [
            "lvchange -ay LocalStorage_PoolHDD/pvc-1",
            "lvchange -an LocalStorage_PoolHDD/pvc-1"
        ]
    );
}

#[tokio::test]
async fn snapshot_create_and_rollback_commands() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    let snap: LvRow = (
        "snap-1",
        4 * MI,
        "swi-a-s---",
        TAG,
        1,
        "/dev/sdc(0)",
        "pvc-1",
    );
    pool_with_lvs(&fake, &l, 100 * MI, &[ours("pvc-1", 8 * MI, "owi-a-s---")]);
    // Missing before the create; there for the read-back and the rollback; merged after.
    no_lv_once(&fake, &l, "snap-1");
    has_lv_once(&fake, &l, snap);
    has_lv_once(&fake, &l, snap);
    no_lv(&fake, &l, "snap-1");
    respond(
        &fake,
        &l.lv_snapshot(VG, "pvc-1", "snap-1", 4 * MI, TAG),
        Output::ok(""),
    );
    let s = e
        .create_snapshot(VG, "pvc-1", "snap-1", 3 * MI)
        .await
        .unwrap();
    assert_eq!(s.source_volume, "pvc-1");
    assert!(s.valid);

    respond(&fake, &merge::merge_cmd(&l, VG, "snap-1"), Output::ok(""));
    e.rollback_snapshot(VG, "pvc-1", "snap-1").await.unwrap();
    // The merged snapshot is gone: rollback again is a no-op.
    e.rollback_snapshot(VG, "pvc-1", "snap-1").await.unwrap();
    assert_eq!(
        mutations(&fake),
        [
            "lvcreate -y --addtag hwameistor.io/managed -s -n snap-1 -L 4194304b -p r LocalStorage_PoolHDD/pvc-1",
            "lvconvert -y --merge LocalStorage_PoolHDD/snap-1 --background",
        ]
    );
}

/// Make a listing LISTING_TTL older.
fn age<T>(slot: &listing::Slot<T>) {
    if let Some(li) = slot.try_lock().unwrap().as_mut() {
        li.taken -= LISTING_TTL;
    }
}

#[tokio::test]
async fn reports_are_reused_until_we_change_something_or_they_age() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    pool_with_lvs(&fake, &l, 100 * MI, &[ours("pvc-1", 8 * MI, "-wi-a-----")]);
    // One pass of the node agent: pools, thin pools, orphans: each listing runs once, and
    // the stats of the replicas are answered from the VG's listing too.
    e.list_pools().await.unwrap();
    e.pool_info(VG).await.unwrap();
    assert_eq!(e.thin_pool(VG).await.unwrap(), None);
    e.list_volumes(None).await.unwrap();
    e.stat_volume(VG, "pvc-1").await.unwrap().unwrap();
    e.stat_volume(VG, "pvc-1").await.unwrap().unwrap();
    assert_eq!(count(&fake, "vgs "), 1);
    assert_eq!(count(&fake, "pvs "), 1);
    assert_eq!(ran(&fake, &l.lvs(Some(VG))), 1);
    assert_eq!(ran(&fake, &l.lvs_one(VG, "pvc-1")), 0);
    // Any command of ours that may change something makes them stale.
    respond(
        &fake,
        &l.lv_change_active(VG, "pvc-1", false),
        Output::ok(""),
    );
    e.deactivate_volume(VG, "pvc-1").await.unwrap();
    e.list_pools().await.unwrap();
    e.stat_volume(VG, "pvc-1").await.unwrap().unwrap();
    assert_eq!(count(&fake, "vgs "), 2);
    assert_eq!(count(&fake, "pvs "), 2);
    assert_eq!(ran(&fake, &l.lvs(Some(VG))), 2);
    // So does age.
    age(&e.vgs_listing);
    age(&e.pvs_listing);
    e.list_pools().await.unwrap();
    assert_eq!(count(&fake, "vgs "), 3);
    assert_eq!(count(&fake, "pvs "), 3);
    age(&e.lv_slot(VG));
    e.stat_volume(VG, "pvc-1").await.unwrap().unwrap();
    assert_eq!(ran(&fake, &l.lvs(Some(VG))), 3);
}

#[tokio::test]
async fn concurrent_deletes_share_lvremoves() {
    let fake = RecordingRunner::new();
    let e = Arc::new(LvmEngine::new(
        Arc::new(Slow(fake.clone())),
        LvmConfig::default(),
    ));
    let l = e.commands().clone();
    let names: Vec<String> = (0..10).map(|i| format!("pvc-{i}")).collect();
    let rows: Vec<LvRow> = names
        .iter()
        .map(|n| ours(n, 8 * MI, "-wi-a-----"))
        .collect();
    respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs_json(&rows)));
    fake.respond_prefix(&["lvremove"], Output::ok(""));
    let deletes: Vec<_> = names
        .iter()
        .map(|n| {
            let e = e.clone();
            let n = n.clone();
            tokio::spawn(async move { e.delete_volume(VG, &n).await })
        })
        .collect();
    for d in deletes {
        d.await.unwrap().unwrap();
    }
    let removes: Vec<String> = mutations(&fake);
    assert!(removes.len() <= 3, "{removes:?}");
    // Every volume was removed exactly once, and the listing knows it without listing again.
    for n in &names {
        let target = format!("{VG}/{n}");
        let times: usize = removes
            .iter()
            .map(|r| r.split(' ').filter(|a| *a == target).count())
            .sum();
        assert_eq!(times, 1, "{n}: {removes:?}");
        assert!(e.stat_volume(VG, n).await.unwrap().is_none());
    }
    assert_eq!(count(&fake, "lvs "), 1);
}

#[tokio::test]
async fn a_failed_batch_of_removals_is_retried_one_by_one() {
    let (fake, e) = engine();
    let l = e.commands().clone();
    let (a, b) = (
        ours("pvc-a", 8 * MI, "-wi-a-----"),
        ours("pvc-b", 8 * MI, "-wi-a-----"),
    );
    respond(&fake, &l.lvs(Some(VG)), Output::ok(lvs_json(&[a, b])));
    let lvs = e.vg_lvs("test", VG, LISTING_TTL).await.unwrap();
    // pvc-b is held open: the batch fails (lvm removed pvc-a, the retry finds it gone).
    respond(
        &fake,
        &l.lv_remove_many(VG, &["pvc-a", "pvc-b"]),
        Output::failed(5, "  Logical volume LocalStorage_PoolHDD/pvc-b in use.\n"),
    );
    respond(
        &fake,
        &l.lv_remove(VG, "pvc-a"),
        Output::failed(
            5,
            "  Failed to find logical volume \"LocalStorage_PoolHDD/pvc-a\"\n",
        ),
    );
    respond(
        &fake,
        &l.lv_remove(VG, "pvc-b"),
        Output::failed(5, "  Logical volume LocalStorage_PoolHDD/pvc-b in use.\n"),
    );
    let (ta, ra) = tokio::sync::oneshot::channel();
    let (tb, rb) = tokio::sync::oneshot::channel();
    e.remove_batch(
        "delete volume",
        VG,
        vec![(lvs[0].clone(), ta), (lvs[1].clone(), tb)],
    )
    .await;
    ra.await.unwrap().unwrap();
    let err = rb.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    assert_eq!(ran(&fake, &l.lv_remove_many(VG, &["pvc-a", "pvc-b"])), 1);
    assert_eq!(ran(&fake, &l.lv_remove(VG, "pvc-a")), 1);
    assert_eq!(
        ran(&fake, &l.lv_remove(VG, "pvc-b")),
        6,
        "retried as a single removal is"
    );
    // The listing is stale now: the next read lists again.
    e.stat_volume(VG, "pvc-b").await.unwrap();
    assert_eq!(count(&fake, "lvs "), 2);
}
