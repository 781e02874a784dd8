//! Tier 2: snapshots through the reconcilers on the qemu guest's real LVM (see
//! tests/vm/README.md): a COW snapshot sized by `snapsize` that overflows goes INVALID and
//! says so; a full-size snapshot is restored into a new volume (`dd` from the snapshot LV)
//! and rolled back in place (`lvconvert --merge --background`, progress reported up to 100,
//! objects cleaned up), data compared by digest each time.
//!
//! Run by `.ci/run` via `tests/vm/run-tier2.sh` (one guest per test binary).

mod volume_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use hwameistor_api::types::{OperationState, VolumeState};
use hwameistor_api::{LocalVolume, LocalVolumeReplicaSnapshotRestore, LocalVolumeSnapshotRestore};
use hwameistor_controllers::snapshot;
use hwameistor_engine::lvm::LvmEngine;
use hwameistor_engine::{LvmConfig, SharedEngine};
use hwameistor_exec::TokioRunner;
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_testkit::tier2::{LvmCleanup, guest, lvm_no_monitoring};
use hwameistor_testkit::{MI, Sandbox};
use hwameistor_vmtests::DiskKind;
use volume_common::snap::{
    SnapPace, checksum, claim_pool, replica_dev, restore_completed, rollback_gone, snapshot_gone,
    snapshot_where, spawn_reconcilers, volume_ready, write_pattern,
};
use volume_common::{POOL_HDD, agent_cfg, volume};

/// State, progress and message of a restore as a watch saw it.
type RestoreRow = (OperationState, Option<i32>, String);
const DIR: &str = "/tmp/hwt-snapshot";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn lvm_snapshots_invalid_restore_and_rollback_through_the_reconcilers() -> Result<()> {
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
    // Every LVM command is slow under TCG: poll the host gently.
    let mut acfg = agent_cfg(&node);
    acfg.sync_interval = Duration::from_secs(5);
    acfg.resync_interval = Duration::from_secs(30);
    let pace = SnapPace {
        node_resync: Duration::from_secs(3),
        merge_poll: Duration::from_secs(1),
        cluster_poll: Duration::from_millis(300),
    };
    let _stop = spawn_reconcilers(&store, engine.clone(), acfg, pace);

    claim_pool(&store, "t2-claim", &node, &disk, 120).await?;
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-src", 32 * MI))
        .await?;
    volume_ready(&store, "pvc-src", 120).await;
    let src = replica_dev(&store, "pvc-src", 120).await;
    write_pattern(sb, &src, 0, 4, 1).await?;
    let sum_a = checksum(sb, &src, 32).await?;

    // A small COW snapshot (snapsize 4 MiB, the minimum) and a full one.
    snapshot::create_snapshot(&store, "snap-small", "pvc-src", Some(4 * MI)).await?;
    snapshot::create_snapshot(&store, "snap-full", "pvc-src", None).await?;
    let small = snapshot_where(&store, "snap-small", "Ready", 120, |s| {
        s.state() == VolumeState::Ready
    })
    .await;
    ensure!(
        small.status.as_ref().unwrap().allocated_capacity_bytes == (4 * MI) as i64,
        "{small:?}"
    );
    snapshot_where(&store, "snap-full", "Ready", 120, |s| {
        s.state() == VolumeState::Ready
    })
    .await;

    // 12 MiB of changes overflow the 4 MiB snapshot: INVALID, NotReady, and the reason.
    write_pattern(sb, &src, 0, 12, 9).await?;
    let sum_b = checksum(sb, &src, 32).await?;
    ensure!(sum_a != sum_b);
    let t0 = Instant::now();
    let small = snapshot_where(&store, "snap-small", "INVALID", 120, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.attr.as_ref())
            .is_some_and(|a| a.invalid)
    })
    .await;
    eprintln!("overflow reported after {:?}", t0.elapsed());
    let st = small.status.unwrap();
    ensure!(st.state == VolumeState::NotReady, "{st:?}");
    ensure!(st.message.contains("overflowed"), "{}", st.message);
    let full = snapshot_where(&store, "snap-full", "still Ready", 120, |_| true).await;
    ensure!(full.state() == VolumeState::Ready, "{full:?}");

    // Restore the full snapshot into a new volume: the data at snapshot time.
    let t0 = Instant::now();
    let r = snapshot::restore_snapshot(&store, "snap-full", "pvc-restored", None).await?;
    restore_completed(&store, &r, 300).await?;
    eprintln!("restore of 32 MiB (dd) took {:?}", t0.elapsed());
    let restored = replica_dev(&store, "pvc-restored", 120).await;
    ensure!(checksum(sb, &restored, 32).await? == sum_a, "restored data");

    // Roll back in place: lvconvert --merge --background; the restore object shows the
    // merge's progress and goes away when done. A watch sees every state it passed through.
    let seen: Arc<std::sync::Mutex<Vec<RestoreRow>>> = Arc::default();
    let mut watch = store
        .all::<LocalVolumeSnapshotRestore>()
        .watch(&Default::default(), "")
        .await?;
    let seen_w = seen.clone();
    let watcher = tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(Ok(ev)) = watch.next().await {
            let r = ev.into_object();
            if r.metadata.name.as_deref() != Some(&snapshot::ops::rollback_name("snap-full")) {
                continue;
            }
            if let Some(st) = r.status {
                let mut v = seen_w.lock().unwrap();
                let row = (st.state, st.progress, st.message);
                if v.last() != Some(&row) {
                    v.push(row);
                }
            }
        }
    });
    let t0 = Instant::now();
    let rb = snapshot::rollback_snapshot(&store, "snap-full").await?;
    rollback_gone(&store, &rb, 300).await;
    eprintln!("rollback (merge) took {:?}", t0.elapsed());
    watcher.abort();
    let seen = seen.lock().unwrap().clone();
    eprintln!("rollback states seen: {seen:?}");
    ensure!(
        seen.iter()
            .any(|(st, p, _)| *st == OperationState::Completed && *p == Some(100)),
        "the rollback reached Completed with progress 100: {seen:?}"
    );
    ensure!(
        seen.iter()
            .all(|(_, p, _)| p.is_none_or(|p| (0..=100).contains(&p))),
        "{seen:?}"
    );
    // Progress never goes backwards.
    let ps: Vec<i32> = seen.iter().filter_map(|(_, p, _)| *p).collect();
    ensure!(ps.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    ensure!(checksum(sb, &src, 32).await? == sum_a, "rolled back data");
    // Cleaned up: no restore objects (cluster or node part), no merging snapshot LV.
    ensure!(
        store
            .all::<LocalVolumeSnapshotRestore>()
            .list(&Default::default())
            .await?
            .items
            .iter()
            .all(|r| r.metadata.name.as_deref() != Some(rb.as_str())),
        "rollback object removed"
    );
    ensure!(
        store
            .all::<LocalVolumeReplicaSnapshotRestore>()
            .list(&Default::default())
            .await?
            .items
            .iter()
            .all(|r| r.spec.volume_snapshot_restore != rb),
        "per-node rollback objects removed"
    );
    snapshot_gone(&store, "snap-full", 120).await;

    // Delete the invalid one: gone from LVM and the store.
    snapshot::delete_snapshot(&store, "snap-small").await?;
    snapshot_gone(&store, "snap-small", 120).await;
    ensure!(engine.list_snapshots(POOL_HDD).await?.is_empty());
    Ok(())
}
