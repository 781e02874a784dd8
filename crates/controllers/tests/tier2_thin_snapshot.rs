//! Tier 2: thin snapshots through the reconcilers on the qemu guest's real LVM (see
//! tests/vm/README.md): a ThinPoolClaim makes the thin pool, a thin volume is written, a thin
//! snapshot (whose `snapsize` is reported as ignored) keeps the old data while the volume
//! changes, the snapshot is restored into a new thin volume (`dd` from the snapshot LV), the
//! volume is cloned, and the volume is rolled back from the thin snapshot
//! (`lvconvert --merge`), data compared by digest each time.
//!
//! Run by `.ci/run` via `tests/vm/run-tier2.sh` (one guest per test binary).

mod volume_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use hwameistor_api::types::{OperationState, ThinPoolClaimPhase, VolumeState};
use hwameistor_api::{
    LocalStorageNode, LocalVolume, LocalVolumeReplica, LocalVolumeReplicaSnapshot,
    LocalVolumeSnapshot, LocalVolumeSnapshotRestore, ThinPoolClaim, ThinPoolClaimDescription,
    ThinPoolClaimSpec,
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

/// Timings on stderr, bypassing libtest's capture so the guest log shows them.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

const MI: u64 = 1 << 20;

const DIR: &str = "/tmp/hwt-thin-snapshot";

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

async fn volume_ready(store: &Store, name: &str) {
    wait_for(180, &format!("{name} Ready"), || async {
        let lv = store.all::<LocalVolume>().get_opt(name).await.unwrap()?;
        (lv.status?.state == VolumeState::Ready).then_some(())
    })
    .await;
}

async fn restore_completed(store: &Store, r: &str) -> Result<()> {
    let st = wait_for(300, &format!("restore {r} finished"), || async {
        let st = store
            .all::<LocalVolumeSnapshotRestore>()
            .get_opt(r)
            .await
            .unwrap()?
            .status?;
        st.state.is_terminal().then_some(st)
    })
    .await;
    ensure!(st.state == OperationState::Completed, "{st:?}");
    Ok(())
}

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
    let mut acfg = agent_cfg(&node);
    acfg.sync_interval = Duration::from_secs(5);
    acfg.resync_interval = Duration::from_secs(10);
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
    let t_all = Instant::now();

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
    wait_for(120, "thin pool reported", || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt(&node)
            .await
            .unwrap()?;
        lsn.status?
            .pools
            .get(POOL_HDD)
            .and_then(|p| p.thin_pool.clone())
            .map(|_| ())
    })
    .await;

    say!("thin pool ready after {:?}", t_all.elapsed());
    let mut lv = volume("pvc-thin", 32 * MI);
    lv.spec.thin = true;
    store.all::<LocalVolume>().create(&lv).await?;
    volume_ready(&store, "pvc-thin").await;
    ensure!(segtype("pvc-thin").await? == "thin");
    let src = replica_dev(&store, "pvc-thin").await;
    say!("thin volume ready after {:?}", t_all.elapsed());
    write_pattern(&src, 0, 4, 1).await?;
    let sum_a = checksum(&src, 32).await?;

    // A thin snapshot with a snapsize it cannot honour: Ready, and the size is reported.
    snapshot::create_snapshot(&store, "tsnap", "pvc-thin", Some(4 * MI)).await?;
    let s = snapshot_where(&store, "tsnap", "Ready", |s| {
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
    write_pattern(&src, 2, 8, 9).await?;
    let sum_b = checksum(&src, 32).await?;
    ensure!(sum_a != sum_b);

    // Restore into a new volume (thin like its source): the data at snapshot time.
    let t0 = Instant::now();
    let r = snapshot::restore_snapshot(&store, "tsnap", "pvc-trestored", None).await?;
    restore_completed(&store, &r).await?;
    say!("restore of a 32 MiB thin snapshot took {:?}", t0.elapsed());
    ensure!(
        segtype("pvc-trestored").await? == "thin",
        "restored volume is thin"
    );
    let restored = replica_dev(&store, "pvc-trestored").await;
    ensure!(checksum(&restored, 32).await? == sum_a, "restored data");

    // Clone the thin volume: today's data, the temporary snapshot removed afterwards.
    let t0 = Instant::now();
    let r = snapshot::clone_volume(&store, "pvc-thin", "pvc-tclone", None).await?;
    restore_completed(&store, &r).await?;
    say!("clone of a 32 MiB thin volume took {:?}", t0.elapsed());
    ensure!(segtype("pvc-tclone").await? == "thin", "clone is thin");
    let clone = replica_dev(&store, "pvc-tclone").await;
    ensure!(checksum(&clone, 32).await? == sum_b, "cloned data");
    wait_for(120, "clone snapshot removed", || async {
        store
            .all::<LocalVolumeSnapshot>()
            .get_opt(&snapshot::ops::clone_snapshot_name("pvc-tclone"))
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // Roll the thin volume back from its thin snapshot (lvconvert --merge: instant while
    // the origin is not open); the snapshot is consumed.
    let t0 = Instant::now();
    let rb = snapshot::rollback_snapshot(&store, "tsnap").await?;
    wait_for(180, "rollback done and removed", || async {
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
    say!("thin rollback (merge) took {:?}", t0.elapsed());
    wait_for(120, "merged snapshot removed", || async {
        store
            .all::<LocalVolumeSnapshot>()
            .get_opt("tsnap")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let src = replica_dev(&store, "pvc-thin").await;
    ensure!(checksum(&src, 32).await? == sum_a, "rolled back data");
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
