//! Tier 1: snapshots, restore, rollback and clone with the real `file` engine (XFS reflink
//! pool on a loop-backed disk) and the real reconcilers over the EmbeddedStore: write data,
//! snapshot, write more, restore into a new volume and compare checksums with the snapshot's
//! data; clone and compare with the source; roll back (progress 100) and compare; a
//! `snapsize` is reported as ignored; a volume with a snapshot is deleted only after it.
//!
//! Needs root, loop devices, xfsprogs. Run by `.ci/run` with
//! `cargo test --workspace --test 'tier1_*' -- --ignored --test-threads=1`.
//! Everything lives under `/tmp/hwameistor-t1-snap-<pid>`; a Drop guard unmounts and detaches
//! everything below it, even when the test fails.

mod volume_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hwameistor_api::types::{OperationState, VolumeState};
use hwameistor_api::{LocalVolume, LocalVolumeSnapshotRestore};
use hwameistor_controllers::snapshot;
use hwameistor_engine::file::FileEngine;
use hwameistor_engine::{FileEngineConfig, PoolFsType, SharedEngine};
use hwameistor_exec::TokioRunner;
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_testkit::{MI, Sandbox};
use serde_json::json;
use volume_common::snap::{
    SnapPace, checksum, claim_pool, replica_dev, restore_completed, rollback_gone, snapshot_gone,
    snapshot_where, spawn_reconcilers, volume_ready, write_pattern,
};
use volume_common::{POOL_HDD, agent_cfg, volume, wait_for};

const NODE: &str = "t1-snap-node";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn snapshot_restore_clone_rollback_on_the_file_engine() -> Result<()> {
    let sb = Sandbox::new("snap")?;
    let disk = sb.loop_disk("d1", 1 << 30).await?.dev;
    let store = Store::from(EmbeddedStore::open(sb.path("store.redb"))?);
    let engine: SharedEngine = Arc::new(FileEngine::new(
        TokioRunner::shared(),
        FileEngineConfig {
            root: sb.path("pools"),
            dev_dir: sb.path("dev"),
            fs_type: PoolFsType::Xfs,
            preallocate: false,
            timeout: Duration::from_secs(60),
        },
    ));
    let pace = SnapPace {
        node_resync: Duration::from_secs(1),
        merge_poll: Duration::from_millis(200),
        cluster_poll: Duration::from_millis(200),
    };
    let _stop = spawn_reconcilers(&store, engine.clone(), agent_cfg(NODE), pace);
    claim_pool(&store, "t1-snap-claim", NODE, &disk, 60).await?;

    // Data A, snapshot, data B on top.
    store
        .all::<LocalVolume>()
        .create(&volume("t1-src", 64 * MI))
        .await?;
    volume_ready(&store, "t1-src", 60).await;
    let src = replica_dev(&store, "t1-src", 60).await;
    write_pattern(&sb, &src, 0, 8, 1).await?;
    write_pattern(&sb, &src, 40, 4, 2).await?;
    let sum_a = checksum(&sb, &src, 64).await?;

    let t0 = Instant::now();
    snapshot::create_snapshot(&store, "t1-snap", "t1-src", None).await?;
    let snap = snapshot_where(&store, "t1-snap", "Ready", 60, |s| {
        s.state() == VolumeState::Ready
    })
    .await;
    eprintln!("snapshot Ready after {:?}", t0.elapsed());
    let st = snap.status.context("snapshot status")?;
    ensure!(st.allocated_capacity_bytes == (64 * MI) as i64, "{st:?}");
    ensure!(st.creation_time.is_some());

    // A snapsize on the file engine is not silently dropped: reflink copies reserve nothing,
    // and the snapshot says so.
    snapshot::create_snapshot(&store, "t1-small", "t1-src", Some(4 * MI)).await?;
    let small = snapshot_where(&store, "t1-small", "Ready", 60, |s| {
        s.state() == VolumeState::Ready
    })
    .await;
    let st = small.status.context("small snapshot status")?;
    ensure!(
        st.message.contains("snapsize ignored") && st.message.contains("reflink"),
        "{st:?}"
    );
    ensure!(st.allocated_capacity_bytes == (64 * MI) as i64, "{st:?}");

    write_pattern(&sb, &src, 2, 4, 7).await?;
    let sum_b = checksum(&sb, &src, 64).await?;
    ensure!(sum_a != sum_b, "the second write changed nothing");

    // Restore into a new volume: it holds A.
    let t0 = Instant::now();
    let r = snapshot::restore_snapshot(&store, "t1-snap", "t1-restored", None).await?;
    restore_completed(&store, &r, 120).await?;
    eprintln!("restore (64 MiB) completed after {:?}", t0.elapsed());
    let restored = replica_dev(&store, "t1-restored", 60).await;
    ensure!(
        checksum(&sb, &restored, 64).await? == sum_a,
        "restored data differs from the snapshot"
    );
    ensure!(
        checksum(&sb, &src, 64).await? == sum_b,
        "the source changed"
    );

    // Clone (larger) of the source: holds B in its first 64 MiB, zeros after.
    let r = snapshot::clone_volume(&store, "t1-src", "t1-clone", Some(96 * MI)).await?;
    restore_completed(&store, &r, 120).await?;
    let clone = replica_dev(&store, "t1-clone", 60).await;
    ensure!(
        checksum(&sb, &clone, 64).await? == sum_b,
        "clone differs from its source"
    );
    snapshot_gone(&store, "t1-clone-clone-source", 60).await;

    // Rollback refused while published, done when unpublished: the source holds A again.
    store
        .all::<LocalVolume>()
        .patch_status("t1-src", &json!({"status": {"publishedNode": NODE}}))
        .await?;
    let rb = snapshot::rollback_snapshot(&store, "t1-snap").await?;
    let msg = wait_for(60, "rollback refused", || async {
        let st = store
            .all::<LocalVolumeSnapshotRestore>()
            .get_opt(&rb)
            .await
            .unwrap()?
            .status?;
        (st.state == OperationState::Failed).then_some(st.message)
    })
    .await;
    ensure!(msg.contains("published"), "{msg}");
    ensure!(checksum(&sb, &src, 64).await? == sum_b);
    store
        .all::<LocalVolumeSnapshotRestore>()
        .delete(&rb)
        .await?;
    store
        .all::<LocalVolume>()
        .patch_status("t1-src", &json!({"status": {"publishedNode": ""}}))
        .await?;
    wait_for(20, "refused rollback removed", || async {
        store
            .all::<LocalVolumeSnapshotRestore>()
            .get_opt(&rb)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    // The file engine's rollback reports 100 % when done (a watch sees every state).
    let mut watch = store
        .all::<LocalVolumeSnapshotRestore>()
        .watch(&Default::default(), "")
        .await?;
    let rb_name = rb.clone();
    let progress_seen = tokio::spawn(async move {
        use futures::StreamExt;
        let mut seen = Vec::new();
        while let Some(Ok(ev)) = watch.next().await {
            let r = ev.into_object();
            if r.metadata.name.as_deref() == Some(rb_name.as_str())
                && let Some(st) = r.status
            {
                seen.push((st.state, st.progress));
                if st.state == OperationState::Completed {
                    break;
                }
            }
        }
        seen
    });
    let t0 = Instant::now();
    snapshot::rollback_snapshot(&store, "t1-snap").await?;
    let seen = tokio::time::timeout(Duration::from_secs(60), progress_seen).await??;
    ensure!(
        seen.last() == Some(&(OperationState::Completed, Some(100))),
        "{seen:?}"
    );
    rollback_gone(&store, &rb, 60).await;
    eprintln!("rollback completed after {:?}", t0.elapsed());
    let src = replica_dev(&store, "t1-src", 60).await;
    ensure!(
        checksum(&sb, &src, 64).await? == sum_a,
        "rollback did not restore the snapshot's data"
    );
    // The merge consumed the snapshot: object and host copy are gone.
    snapshot_gone(&store, "t1-snap", 60).await;
    let left: Vec<String> = engine
        .list_snapshots(POOL_HDD)
        .await?
        .into_iter()
        .map(|s| s.name)
        .collect();
    ensure!(
        left == ["t1-small"],
        "only the other snapshot is left: {left:?}"
    );

    // Volumes go away cleanly (no leaked loop devices: the sandbox guard checks on drop);
    // t1-src only once its remaining snapshot is deleted.
    for v in ["t1-src", "t1-restored", "t1-clone"] {
        store
            .all::<LocalVolume>()
            .patch(v, &json!({"spec": {"delete": true}}))
            .await?;
    }
    let blocked = wait_for(60, "t1-src deletion blocked", || async {
        let lv = store
            .all::<LocalVolume>()
            .get_opt("t1-src")
            .await
            .unwrap()?;
        let st = lv.status?;
        st.conditions
            .iter()
            .any(|c| c.type_ == "DeleteBlocked" && c.status == "True")
            .then_some(st.message)
    })
    .await;
    ensure!(blocked.contains("t1-small"), "{blocked}");
    ensure!(
        engine.stat_volume(POOL_HDD, "t1-src").await?.is_some(),
        "the volume stays while it has snapshots"
    );
    snapshot::delete_snapshot(&store, "t1-small").await?;
    wait_for(60, "volumes deleted on the host", || async {
        engine
            .list_volumes(Some(POOL_HDD))
            .await
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    Ok(())
}
