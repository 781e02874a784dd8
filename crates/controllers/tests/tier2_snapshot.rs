//! Tier 2: snapshots through the reconcilers on the qemu guest's real LVM (see
//! tests/vm/README.md): a COW snapshot sized by `snapsize` that overflows goes INVALID and
//! says so; a full-size snapshot is restored into a new volume (`dd` from the snapshot LV)
//! and rolled back in place (`lvconvert --merge --background`, progress reported up to 100,
//! objects cleaned up), data compared by digest each time.
//!
//! Run by `.ci/run` via `tests/vm/run-tier2.sh` (one guest per test binary).

mod volume_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use hwameistor_api::types::{OperationState, VolumeState};
use hwameistor_api::{
    LocalStorageNode, LocalVolume, LocalVolumeReplica, LocalVolumeReplicaSnapshotRestore,
    LocalVolumeSnapshot, LocalVolumeSnapshotRestore,
};
use hwameistor_controllers::snapshot::{self, SnapshotClusterConfig, SnapshotNodeConfig};
use hwameistor_controllers::volume;
use hwameistor_engine::lvm::LvmEngine;
use hwameistor_engine::{LvmConfig, SharedEngine};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_vmtests::{DiskKind, Guest};
use tokio_util::sync::CancellationToken;
use volume_common::{POOL_HDD, agent_cfg, claim_disks, cluster_cfg, volume, wait_for};

const MI: u64 = 1 << 20;

/// State, progress and message of a restore as a watch saw it.
type RestoreRow = (OperationState, Option<i32>, String);
const DIR: &str = "/tmp/hwt-snapshot";

fn guest() -> Guest {
    assert_eq!(
        std::env::var("VM_GUEST").as_deref(),
        Ok("1"),
        "tier-2 test outside the qemu guest: run it via tests/vm/run-tier2.sh"
    );
    Guest::from_env().expect("tier-2 guest environment")
}

fn cmd(argv: &[&str]) -> Cmd {
    Cmd::new(argv[0])
        .args(argv[1..].iter().copied())
        .timeout(Duration::from_secs(300))
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
}

fn run_sync(argv: &[&str]) {
    let c = cmd(argv);
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(TokioRunner.output(&c)).ok()
    })
    .join();
}

/// On drop: remove the test VG, wipe the disk, remove the directory.
struct Cleanup {
    disk: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        run_sync(&["vgremove", "-ff", "-y", POOL_HDD]);
        let d = self.disk.to_string_lossy().into_owned();
        run_sync(&["pvremove", "-ff", "-y", &d]);
        run_sync(&["wipefs", "-a", &d]);
        let _ = std::fs::remove_dir_all(DIR);
    }
}

/// No dmeventd in the guest: tell LVM not to monitor (snapshots would try to).
fn lvm_no_monitoring() -> Result<()> {
    std::fs::create_dir_all("/etc/lvm")?;
    std::fs::write(
        "/etc/lvm/lvmlocal.conf",
        "activation {\n  monitoring = 0\n}\n",
    )?;
    Ok(())
}

async fn run(c: Cmd) -> Result<String> {
    Ok(TokioRunner.run(&c).await?.stdout)
}

async fn write_pattern(dev: &Path, offset_mib: u64, mib: u64, seed: u8) -> Result<()> {
    let pat = PathBuf::from(format!("{DIR}/pattern-{seed}-{mib}"));
    let data: Vec<u8> = (0..(mib * MI) as usize)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 12) as u8))
        .collect();
    std::fs::write(&pat, data)?;
    run(cmd(&[
        "dd",
        &format!("if={}", pat.display()),
        &format!("of={}", dev.display()),
        "bs=1M",
        "oflag=direct",
        "conv=notrunc,fsync",
        &format!("seek={offset_mib}"),
    ]))
    .await?;
    Ok(())
}

async fn checksum(dev: &Path, mib: u64) -> Result<String> {
    use std::hash::{Hash, Hasher};
    let copy = format!("{DIR}/readback.img");
    run(cmd(&[
        "dd",
        &format!("if={}", dev.display()),
        &format!("of={copy}"),
        "bs=1M",
        "iflag=direct",
        "status=none",
        &format!("count={mib}"),
    ]))
    .await?;
    let data = std::fs::read(&copy)?;
    std::fs::remove_file(&copy)?;
    ensure!(data.len() as u64 == mib * MI, "short read");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    Ok(format!("{:016x}", h.finish()))
}

async fn replica_dev(store: &Store, volume: &str) -> PathBuf {
    wait_for(120, &format!("{volume} replica device"), || async {
        store
            .all::<LocalVolumeReplica>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|r| r.spec.volume_name == volume)
            .and_then(|r| r.status)
            .map(|s| PathBuf::from(s.dev_path))
            .filter(|p| !p.as_os_str().is_empty())
    })
    .await
}

async fn snapshot_where(
    store: &Store,
    name: &str,
    what: &str,
    f: impl Fn(&LocalVolumeSnapshot) -> bool,
) -> LocalVolumeSnapshot {
    wait_for(120, &format!("snapshot {name} {what}"), || async {
        let s = store
            .all::<LocalVolumeSnapshot>()
            .get_opt(name)
            .await
            .unwrap()?;
        f(&s).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn lvm_snapshots_invalid_restore_and_rollback_through_the_reconcilers() -> Result<()> {
    let g = guest();
    lvm_no_monitoring()?;
    std::fs::create_dir_all(DIR)?;
    let disk = g.disk(DiskKind::Hdd).dev.clone();
    let _cleanup = Cleanup { disk: disk.clone() };
    let node = g.hostname.clone();
    let store = Store::from(EmbeddedStore::open(format!("{DIR}/store.redb"))?);
    let engine: SharedEngine =
        Arc::new(LvmEngine::new(TokioRunner::shared(), LvmConfig::default()));
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(volume::run_cluster_controllers(
        cluster_cfg(),
        store.clone(),
        shutdown.clone(),
    ));
    // Every LVM command is slow under TCG: poll the host gently.
    let mut acfg = agent_cfg(&node);
    acfg.sync_interval = Duration::from_secs(5);
    acfg.resync_interval = Duration::from_secs(30);
    tokio::spawn(volume::run_node_agent(
        acfg,
        store.clone(),
        engine.clone(),
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    let mut ncfg = SnapshotNodeConfig::new(&node);
    ncfg.resync_interval = Duration::from_secs(3);
    ncfg.merge_poll_interval = Duration::from_secs(1);
    tokio::spawn(snapshot::run_snapshot_node(
        ncfg,
        store.clone(),
        engine.clone(),
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    tokio::spawn(snapshot::run_snapshot_cluster(
        SnapshotClusterConfig {
            poll_interval: Duration::from_millis(300),
            ..Default::default()
        },
        store.clone(),
        shutdown.clone(),
    ));

    claim_disks(&store, "t2-claim", &node, &[&disk.to_string_lossy()]).await?;
    wait_for(120, "pool reported", || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt(&node)
            .await
            .unwrap()?;
        lsn.status?
            .pools
            .get(POOL_HDD)
            .filter(|p| p.total_capacity_bytes > 0)
            .map(|_| ())
    })
    .await;
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-src", 32 * MI))
        .await?;
    wait_for(120, "pvc-src Ready", || async {
        let lv = store
            .all::<LocalVolume>()
            .get_opt("pvc-src")
            .await
            .unwrap()?;
        (lv.status?.state == VolumeState::Ready).then_some(())
    })
    .await;
    let src = replica_dev(&store, "pvc-src").await;
    write_pattern(&src, 0, 4, 1).await?;
    let sum_a = checksum(&src, 32).await?;

    // A small COW snapshot (snapsize 4 MiB, the minimum) and a full one.
    snapshot::create_snapshot(&store, "snap-small", "pvc-src", Some(4 * MI)).await?;
    snapshot::create_snapshot(&store, "snap-full", "pvc-src", None).await?;
    let small = snapshot_where(&store, "snap-small", "Ready", |s| {
        s.state() == VolumeState::Ready
    })
    .await;
    ensure!(
        small.status.as_ref().unwrap().allocated_capacity_bytes == (4 * MI) as i64,
        "{small:?}"
    );
    snapshot_where(&store, "snap-full", "Ready", |s| {
        s.state() == VolumeState::Ready
    })
    .await;

    // 12 MiB of changes overflow the 4 MiB snapshot: INVALID, NotReady, and the reason.
    write_pattern(&src, 0, 12, 9).await?;
    let sum_b = checksum(&src, 32).await?;
    ensure!(sum_a != sum_b);
    let t0 = Instant::now();
    let small = snapshot_where(&store, "snap-small", "INVALID", |s| {
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
    let full = snapshot_where(&store, "snap-full", "still Ready", |_| true).await;
    ensure!(full.state() == VolumeState::Ready, "{full:?}");

    // Restore the full snapshot into a new volume: the data at snapshot time.
    let t0 = Instant::now();
    let r = snapshot::restore_snapshot(&store, "snap-full", "pvc-restored", None).await?;
    let st = wait_for(300, "restore finished", || async {
        let st = store
            .all::<LocalVolumeSnapshotRestore>()
            .get_opt(&r)
            .await
            .unwrap()?
            .status?;
        st.state.is_terminal().then_some(st)
    })
    .await;
    ensure!(st.state == OperationState::Completed, "{st:?}");
    eprintln!("restore of 32 MiB (dd) took {:?}", t0.elapsed());
    let restored = replica_dev(&store, "pvc-restored").await;
    ensure!(checksum(&restored, 32).await? == sum_a, "restored data");

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
    wait_for(300, "rollback done and removed", || async {
        let r = store
            .all::<LocalVolumeSnapshotRestore>()
            .get_opt(&rb)
            .await
            .unwrap();
        if let Some(st) = r.as_ref().and_then(|r| r.status.as_ref()) {
            assert_ne!(st.state, OperationState::Failed, "{st:?}");
        }
        r.is_none().then_some(())
    })
    .await;
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
    ensure!(checksum(&src, 32).await? == sum_a, "rolled back data");
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
    wait_for(120, "merged snapshot removed", || async {
        store
            .all::<LocalVolumeSnapshot>()
            .get_opt("snap-full")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // Delete the invalid one: gone from LVM and the store.
    snapshot::delete_snapshot(&store, "snap-small").await?;
    wait_for(120, "snap-small removed", || async {
        store
            .all::<LocalVolumeSnapshot>()
            .get_opt("snap-small")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    ensure!(engine.list_snapshots(POOL_HDD).await?.is_empty());
    Ok(())
}
