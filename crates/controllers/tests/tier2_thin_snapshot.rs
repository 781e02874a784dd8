//! Tier 2: thin snapshots through the reconcilers on the qemu guest's real LVM (see
//! tests/vm/README.md): a ThinPoolClaim makes the thin pool, a thin volume is written, a thin
//! snapshot (whose `snapsize` is reported as ignored) keeps the old data while the volume
//! changes, the snapshot is restored into a new thin volume (`dd` from the snapshot LV), the
//! volume is cloned, and the volume is rolled back from the thin snapshot
//! (`lvconvert --merge`), data compared by digest each time.
//!
//! Run by `.ci/run` via `tests/vm/run-tier2.sh` (one guest per test binary).

mod volume_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use hwameistor_api::types::{ThinPoolClaimPhase, VolumeState};
use hwameistor_api::{
    LocalVolume, LocalVolumeReplicaSnapshot, ThinPoolClaim, ThinPoolClaimDescription,
    ThinPoolClaimSpec,
};
use hwameistor_controllers::snapshot;
use hwameistor_engine::lvm::LvmEngine;
use hwameistor_engine::{LvmConfig, SharedEngine};
use hwameistor_exec::TokioRunner;
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_testkit::host::run;
use hwameistor_testkit::tier2::{LvmCleanup, guest, lvm_cmd as cmd, lvm_no_monitoring};
use hwameistor_testkit::{MI, Sandbox};
use hwameistor_vmtests::DiskKind;
use volume_common::snap::{
    SnapPace, checksum, claim_pool, replica_dev, restore_completed, rollback_gone, snapshot_gone,
    snapshot_where, spawn_reconcilers, volume_ready, write_pattern,
};
use volume_common::{POOL_HDD, agent_cfg, volume, wait_for, wait_pool};

/// Timings on stderr, bypassing libtest's capture so the guest log shows them.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

const DIR: &str = "/tmp/hwt-thin-snapshot";

/// `segtype` of `<POOL_HDD>/<lv>` as `lvs` says.
async fn segtype(lv: &str) -> Result<String> {
    Ok(run(cmd(&[
        "lvs",
        "--noheadings",
        "-o",
        "segtype",
        &format!("{POOL_HDD}/{lv}"),
    ]))
    .await?
    .trim()
    .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn thin_snapshot_restore_clone_and_rollback_through_the_reconcilers() -> Result<()> {
    let g = guest();
    lvm_no_monitoring()?;
    let disk = g.disk(DiskKind::Hdd).dev.clone();
    let cleanup = LvmCleanup::new()
        .sandbox(Sandbox::at(DIR)?)
        .vg(POOL_HDD)
        .disks([disk.clone()]);
    let sb = cleanup.sandbox_ref().expect("sandbox");
    let node = g.hostname.clone();
    let store = Store::from(EmbeddedStore::open(sb.path("store.redb"))?);
    let engine: SharedEngine =
        Arc::new(LvmEngine::new(TokioRunner::shared(), LvmConfig::default()));
    let mut acfg = agent_cfg(&node);
    acfg.sync_interval = Duration::from_secs(5);
    acfg.resync_interval = Duration::from_secs(10);
    let pace = SnapPace {
        node_resync: Duration::from_secs(3),
        merge_poll: Duration::from_secs(1),
        cluster_poll: Duration::from_millis(300),
    };
    let _stop = spawn_reconcilers(&store, engine.clone(), acfg, pace);
    let t_all = Instant::now();

    claim_pool(&store, "t2-claim", &node, &disk, 120).await?;

    // The thin pool: 40 % of the 1 GiB VG, ratio 2.
    store
        .all::<ThinPoolClaim>()
        .create(&ThinPoolClaim::new(
            "t2-thin",
            ThinPoolClaimSpec {
                node_name: node.clone(),
                description: ThinPoolClaimDescription {
                    pool_name: POOL_HDD.into(),
                    capacity: 0,
                    capacity_percent: Some(40),
                    over_provision_ratio: Some("2.0".into()),
                    pool_metadata_size: 0,
                },
            },
        ))
        .await?;
    let (phase, msg) = wait_for(180, "ThinPoolClaim finished", || async {
        let s = store
            .all::<ThinPoolClaim>()
            .get_opt("t2-thin")
            .await
            .unwrap()?
            .status?;
        (s.status == ThinPoolClaimPhase::Consumed || s.status == ThinPoolClaimPhase::Failed)
            .then_some((s.status, s.message))
    })
    .await;
    ensure!(phase == ThinPoolClaimPhase::Consumed, "{phase:?}: {msg}");
    wait_pool(&store, &node, POOL_HDD, 120, "thin pool reported", |p| {
        p.thin_pool.is_some()
    })
    .await;

    say!("thin pool ready after {:?}", t_all.elapsed());
    let mut lv = volume("pvc-thin", 32 * MI);
    lv.spec.thin = true;
    store.all::<LocalVolume>().create(&lv).await?;
    volume_ready(&store, "pvc-thin", 180).await;
    ensure!(segtype("pvc-thin").await? == "thin");
    let src = replica_dev(&store, "pvc-thin", 120).await;
    say!("thin volume ready after {:?}", t_all.elapsed());
    write_pattern(sb, &src, 0, 4, 1).await?;
    let sum_a = checksum(sb, &src, 32).await?;

    // A thin snapshot with a snapsize it cannot honour: Ready, and the size is reported.
    snapshot::create_snapshot(&store, "tsnap", "pvc-thin", Some(4 * MI)).await?;
    let s = snapshot_where(&store, "tsnap", "Ready", 120, |s| {
        s.state() == VolumeState::Ready
    })
    .await;
    let st = s.status.unwrap();
    ensure!(
        st.message.contains("snapsize ignored") && st.message.contains("thin"),
        "{}",
        st.message
    );
    let rs = store
        .all::<LocalVolumeReplicaSnapshot>()
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(|r| r.spec.volume_snapshot_name == "tsnap")
        .expect("replica snapshot");
    let conds = rs.status.unwrap_or_default().conditions;
    ensure!(
        conds
            .iter()
            .any(|c| c.type_ == "Snapsize" && c.status == "False" && c.reason == "SnapsizeIgnored"),
        "{conds:?}"
    );
    ensure!(segtype("tsnap").await? == "thin", "a thin snapshot");
    say!("thin snapshot ready after {:?}", t_all.elapsed());

    // Write more: the volume changes, the snapshot keeps the old data.
    write_pattern(sb, &src, 2, 8, 9).await?;
    let sum_b = checksum(sb, &src, 32).await?;
    ensure!(sum_a != sum_b);

    // Restore into a new volume (thin like its source): the data at snapshot time.
    let t0 = Instant::now();
    let r = snapshot::restore_snapshot(&store, "tsnap", "pvc-trestored", None).await?;
    restore_completed(&store, &r, 300).await?;
    say!("restore of a 32 MiB thin snapshot took {:?}", t0.elapsed());
    ensure!(
        segtype("pvc-trestored").await? == "thin",
        "restored volume is thin"
    );
    let restored = replica_dev(&store, "pvc-trestored", 120).await;
    ensure!(checksum(sb, &restored, 32).await? == sum_a, "restored data");

    // Clone the thin volume: today's data, the temporary snapshot removed afterwards.
    let t0 = Instant::now();
    let r = snapshot::clone_volume(&store, "pvc-thin", "pvc-tclone", None).await?;
    restore_completed(&store, &r, 300).await?;
    say!("clone of a 32 MiB thin volume took {:?}", t0.elapsed());
    ensure!(segtype("pvc-tclone").await? == "thin", "clone is thin");
    let clone = replica_dev(&store, "pvc-tclone", 120).await;
    ensure!(checksum(sb, &clone, 32).await? == sum_b, "cloned data");
    snapshot_gone(
        &store,
        &snapshot::ops::clone_snapshot_name("pvc-tclone"),
        120,
    )
    .await;

    // Roll the thin volume back from its thin snapshot (lvconvert --merge: instant while
    // the origin is not open); the snapshot is consumed.
    let t0 = Instant::now();
    let rb = snapshot::rollback_snapshot(&store, "tsnap").await?;
    rollback_gone(&store, &rb, 180).await;
    say!("thin rollback (merge) took {:?}", t0.elapsed());
    snapshot_gone(&store, "tsnap", 120).await;
    let src = replica_dev(&store, "pvc-thin", 120).await;
    ensure!(checksum(sb, &src, 32).await? == sum_a, "rolled back data");
    let lvs = run(cmd(&[
        "lvs",
        "-a",
        "--noheadings",
        "-o",
        "lv_name",
        POOL_HDD,
    ]))
    .await?;
    ensure!(!lvs.contains("tsnap"), "snapshot LV merged away: {lvs}");
    say!("whole thin snapshot test took {:?}", t_all.elapsed());
    Ok(())
}
