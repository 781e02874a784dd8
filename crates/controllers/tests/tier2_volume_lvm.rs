//! Tier 2 (inside the qemu guest): the node agent and the cluster controllers with the real
//! `lvm` engine: claim → VG `LocalStorage_PoolHDD` → volume Ready on an LV → online extend →
//! a second claim extends the VG → a claim of a disk that already belongs to a foreign VG
//! sets `ExpandFailure` with the command's message → delete leaves no LV behind.

mod volume_common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hwameistor_api::types::{ConditionStatus, StorageNodeConditionType};
use hwameistor_api::{LocalStorageNode, LocalVolume, LocalVolumeExpand, LocalVolumeExpandSpec};
use hwameistor_controllers::volume::{self, ClusterConfig};
use hwameistor_engine::engine::build_engine;
use hwameistor_engine::{EngineConfig, EngineKind, SharedEngine};
use hwameistor_exec::TokioRunner;
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_testkit::tier2::{guest, lvm_cmd};
use hwameistor_testkit::{MI, block, host};
use hwameistor_vmtests::DiskKind;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use volume_common::{POOL_HDD, agent_cfg, claim_disks, volume, wait_no_volumes, wait_pool};

const NODE: &str = "hwvm";
const WAIT: u64 = 180;

async fn run(argv: &[&str]) -> Result<String> {
    let c = lvm_cmd(argv);
    host::run(c.clone()).await.with_context(|| c.display())
}

async fn blockdev_size(dev: &str) -> Result<u64> {
    block::blockdev_size(Path::new(dev)).await
}

async fn ready(store: &Store, name: &str, bytes: u64) {
    volume_common::wait_for(WAIT, &format!("{name} Ready at {bytes}"), || async {
        let lv = store.all::<LocalVolume>().get_opt(name).await.unwrap()?;
        let st = lv.status?;
        (st.state == hwameistor_api::types::VolumeState::Ready
            && st.allocated_capacity_bytes == bytes as i64)
            .then_some(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn volume_lifecycle_on_lvm() -> Result<()> {
    let g = guest();
    let d1 = g.disk(DiskKind::Virtio).dev.to_string_lossy().into_owned();
    let d2 = g.disk(DiskKind::Virtio2).dev.to_string_lossy().into_owned();
    let foreign = g.disk(DiskKind::Ssd).dev.to_string_lossy().into_owned();
    let dir = tempfile::tempdir()?;
    let store = Store::from(EmbeddedStore::open(dir.path().join("store.redb"))?);
    let engine: SharedEngine = build_engine(
        EngineKind::Lvm,
        TokioRunner::shared(),
        &EngineConfig::default(),
    );

    let stop = CancellationToken::new();
    let cfg = ClusterConfig {
        offline_after: Duration::from_secs(120),
        liveness_interval: Duration::from_secs(1),
        resync_interval: Duration::from_secs(2),
        placement_retry: Duration::from_millis(500),
    };
    let cluster = tokio::spawn(volume::run_cluster_controllers(
        cfg,
        store.clone(),
        stop.clone(),
    ));
    let mut acfg = agent_cfg(NODE);
    acfg.sync_interval = Duration::from_secs(1);
    let agent = tokio::spawn(volume::run_node_agent(
        acfg,
        store.clone(),
        engine.clone(),
        TokioRunner::shared(),
        stop.clone(),
    ));

    // Claim → VG.
    claim_disks(&store, "hdd-claim", NODE, &[&d1]).await?;
    let pool = wait_pool(&store, NODE, POOL_HDD, WAIT, "pool reported", |p| {
        p.total_capacity_bytes > 0
    })
    .await;
    ensure!(pool.disks.len() == 1, "{pool:?}");
    let vgs = run(&["vgs", "--noheadings", "-o", "vg_name"]).await?;
    ensure!(vgs.contains(POOL_HDD), "{vgs}");

    // Volume on an LV, extended online.
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-t2", 64 * MI))
        .await?;
    ready(&store, "pvc-t2", 64 * MI).await;
    let dev = format!("/dev/{POOL_HDD}/pvc-t2");
    ensure!(std::fs::metadata(&dev)?.file_type().is_block_device());
    ensure!(blockdev_size(&dev).await? == 64 * MI);
    let expand = LocalVolumeExpand::new(
        "pvc-t2",
        LocalVolumeExpandSpec {
            volume_name: "pvc-t2".into(),
            required_capacity_bytes: (128 * MI) as i64,
            abort: false,
        },
    );
    store.all::<LocalVolumeExpand>().create(&expand).await?;
    ready(&store, "pvc-t2", 128 * MI).await;
    ensure!(blockdev_size(&dev).await? == 128 * MI);

    // A second claim extends the VG.
    claim_disks(&store, "hdd-claim-2", NODE, &[&d2]).await?;
    wait_pool(&store, NODE, POOL_HDD, WAIT, "VG extended", |p| {
        p.disks.len() == 2
    })
    .await;

    // A disk in a foreign VG cannot join the pool: ExpandFailure with the message.
    run(&["pvcreate", "-ff", "-y", &foreign]).await?;
    run(&["vgcreate", "foreign_vg", &foreign]).await?;
    claim_disks(&store, "bad-claim", NODE, &[&foreign]).await?;
    let cond = volume_common::wait_for(WAIT, "ExpandFailure", || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt(NODE)
            .await
            .unwrap()?;
        lsn.status?.conditions.into_iter().find(|c| {
            c.type_ == StorageNodeConditionType::ExpandFailure && c.status == ConditionStatus::True
        })
    })
    .await;
    ensure!(
        cond.message
            .starts_with("Failed to expand storage capacity, err:"),
        "{}",
        cond.message
    );
    let vgs = run(&["vgs", "--noheadings", "-o", "vg_name,pv_count", POOL_HDD]).await?;
    ensure!(
        vgs.split_whitespace().nth(1) == Some("2"),
        "pool unchanged: {vgs}"
    );

    // Delete: the LV is removed.
    store
        .all::<LocalVolume>()
        .patch("pvc-t2", &json!({"spec": {"delete": true}}))
        .await?;
    wait_no_volumes(&store, WAIT, "volume removed").await;
    let lvs = run(&["lvs", "--noheadings", "-o", "lv_name", POOL_HDD]).await?;
    ensure!(lvs.trim().is_empty(), "LVs left: {lvs}");
    ensure!(!PathBuf::from(&dev).exists());

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), agent).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), cluster).await;
    let _ = run(&["vgremove", "-ff", "-y", "foreign_vg"]).await;
    let _ = run(&["vgremove", "-ff", "-y", POOL_HDD]).await;
    Ok(())
}
