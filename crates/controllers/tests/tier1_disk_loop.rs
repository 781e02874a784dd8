//! Tier 1: the disk manager on this host's kernel with loop-backed disks. A blank loop disk
//! appears and becomes Available; a loop disk carrying ext4 is never Available; a detached
//! disk goes Inactive within 2 s and comes back under the same LocalDisk name when attached
//! again at another loop number.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hwameistor_api::LocalDisk;
use hwameistor_controllers::disk::{self, DiskClusterConfig, DiskNodeConfig};
use hwameistor_core::types::{DiskClaimState, LocalDiskState};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_testkit::block::{attach_loop, detach_loop};
use hwameistor_testkit::{Sandbox, wait_timed as wait_for};
use tokio_util::sync::CancellationToken;

/// Attach `file` to a loop device (the sandbox detaches it on drop, even on failure).
async fn attach(file: &Path) -> Result<String> {
    Ok(attach_loop(file).await?.display().to_string())
}

async fn by_path(store: &Store, dev: &str) -> Option<LocalDisk> {
    disk::list_disks(store, None)
        .await
        .ok()?
        .into_iter()
        .find(|d| d.spec.device_path == dev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn loop_disks_appear_go_inactive_and_come_back_under_the_same_name() -> Result<()> {
    scenario(true).await
}

/// The same with kernel uevents switched off: the 1 s sysfs poll alone meets the 2 s bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn hot_plug_is_seen_by_polling_alone() -> Result<()> {
    scenario(false).await
}

async fn scenario(uevents: bool) -> Result<()> {
    let sb = Sandbox::new(&format!("disk-loop-{uevents}"))?;
    let blank = sb.sparse_file("blank.img", 256 << 20)?;
    let data = sb.sparse_file("data.img", 128 << 20)?;
    let filler = sb.sparse_file("filler.img", 16 << 20)?;
    TokioRunner
        .run(
            &Cmd::new("mkfs.ext4")
                .args(["-F", "-q"])
                .arg(data.display().to_string()),
        )
        .await
        .context("mkfs.ext4")?;

    let store = Store::from(EmbeddedStore::in_memory()?);
    let mut cfg = DiskNodeConfig::new("tier1-node");
    cfg.include_loop = true;
    cfg.smart_interval = None;
    cfg.heartbeat_interval = Duration::from_millis(500);
    cfg.uevents = uevents;
    let shutdown = CancellationToken::new();
    let node = tokio::spawn(disk::run_node(
        cfg,
        store.clone(),
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    let cluster = tokio::spawn(disk::run_cluster(
        DiskClusterConfig::default(),
        store.clone(),
        shutdown.clone(),
    ));

    // hot-plug: attach while the node runs
    let blank_dev = attach(&blank).await?;
    let data_dev = attach(&data).await?;
    let (ld, seen_after) = wait_for("blank loop disk", Duration::from_secs(5), || {
        let s = store.clone();
        let d = blank_dev.clone();
        async move {
            by_path(&s, &d)
                .await
                .filter(|l| l.spec.state == Some(LocalDiskState::Active))
        }
    })
    .await?;
    println!("uevents={uevents}: blank loop disk {blank_dev} appeared after {seen_after:?}");
    assert!(
        seen_after < Duration::from_secs(2),
        "hot-plug noticed after {seen_after:?}"
    );
    let name = ld.metadata.name.clone().unwrap();
    assert!(name.starts_with("localdisk-"));
    assert_eq!(ld.spec.capacity, 256 << 20);
    assert_eq!(ld.spec.disk_attributes.as_ref().unwrap().dev_type, "loop");
    assert!(!ld.spec.reserved && !ld.spec.partitioned);
    let (_, _) = wait_for("blank disk Available", Duration::from_secs(5), || {
        let s = store.clone();
        let d = blank_dev.clone();
        async move {
            by_path(&s, &d).await.filter(|l| {
                l.status.as_ref().map(|st| st.claim_state) == Some(DiskClaimState::Available)
            })
        }
    })
    .await?;

    // the ext4 disk is found, marked, reserved and never Available
    let (data_ld, _) = wait_for("ext4 loop disk", Duration::from_secs(5), || {
        let s = store.clone();
        let d = data_dev.clone();
        async move {
            by_path(&s, &d).await.filter(|l| {
                l.status
                    .as_ref()
                    .is_some_and(|st| st.claim_state != DiskClaimState::Unknown)
            })
        }
    })
    .await?;
    assert!(data_ld.spec.partitioned && data_ld.spec.reserved);
    assert_eq!(
        data_ld.spec.partition_info[0]
            .filesystem
            .as_ref()
            .unwrap()
            .fs_type,
        "ext4"
    );
    assert_eq!(
        data_ld.status.as_ref().unwrap().claim_state,
        DiskClaimState::Bound
    );

    // hot-unplug: Inactive within 2 s, path kept as preDevicePath
    let t0 = Instant::now();
    detach_loop(Path::new(&blank_dev)).await?;
    let (gone, _) = wait_for("Inactive", Duration::from_secs(5), || {
        let s = store.clone();
        let n = name.clone();
        async move {
            disk::get_disk(&s, &n)
                .await
                .ok()
                .filter(|l| l.spec.state == Some(LocalDiskState::Inactive))
        }
    })
    .await?;
    let unplug = t0.elapsed();
    println!("uevents={uevents}: detach of {blank_dev} noticed after {unplug:?}");
    assert!(
        unplug < Duration::from_secs(2),
        "hot-unplug noticed after {unplug:?}"
    );
    assert_eq!(gone.spec.pre_device_path, blank_dev);
    assert_eq!(gone.spec.device_path, "");

    // occupy the old loop number so the disk comes back elsewhere
    let filler_dev = attach(&filler).await?;
    let back_dev = attach(&blank).await?;
    assert_ne!(back_dev, blank_dev, "re-attached at the same loop number");
    let t0 = Instant::now();
    let (back, _) = wait_for("Active again", Duration::from_secs(5), || {
        let s = store.clone();
        let n = name.clone();
        let d = back_dev.clone();
        async move {
            disk::get_disk(&s, &n)
                .await
                .ok()
                .filter(|l| l.spec.state == Some(LocalDiskState::Active) && l.spec.device_path == d)
        }
    })
    .await?;
    println!(
        "uevents={uevents}: re-attach at {back_dev} (was {blank_dev}, {filler_dev} holds the old number) noticed after {:?}",
        t0.elapsed()
    );
    assert_eq!(back.spec.pre_device_path, blank_dev);
    assert_eq!(back.spec.node_name, "tier1-node");

    shutdown.cancel();
    node.await??;
    cluster.await??;
    drop(sb);
    Ok(())
}
