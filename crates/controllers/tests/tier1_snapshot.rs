//! Tier 1: snapshots, restore, rollback and clone with the real `file` engine (XFS reflink
//! pool on a loop-backed disk) and the real reconcilers over the EmbeddedStore: write data,
//! snapshot, write more, restore into a new volume and compare checksums with the snapshot's
//! data; clone and compare with the source; roll back and compare.
//!
//! Needs root, loop devices, xfsprogs. Run by `.ci/run` with
//! `cargo test --workspace --test 'tier1_*' -- --ignored --test-threads=1`.
//! Everything lives under `/tmp/hwameistor-t1-snap-<pid>`; a Drop guard unmounts and detaches
//! everything below it, even when the test fails.

mod volume_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hwameistor_api::types::{OperationState, VolumeState};
use hwameistor_api::{
    LocalStorageNode, LocalVolume, LocalVolumeReplica, LocalVolumeSnapshot,
    LocalVolumeSnapshotRestore,
};
use hwameistor_controllers::snapshot::{self, SnapshotClusterConfig, SnapshotNodeConfig};
use hwameistor_controllers::volume;
use hwameistor_engine::file::FileEngine;
use hwameistor_engine::file::loopdev::{self, Losetup};
use hwameistor_engine::{FileEngineConfig, PoolFsType, SharedEngine, fs};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_store::{EmbeddedStore, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use volume_common::{POOL_HDD, agent_cfg, claim_disks, cluster_cfg, volume, wait_for};

const MI: u64 = 1 << 20;
const NODE: &str = "t1-snap-node";

/// Run a command from synchronous code (Drop) on a private runtime in its own thread.
fn run_sync(cmd: Cmd) -> Option<String> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(TokioRunner.run(&cmd)).ok().map(|o| o.stdout)
    })
    .join()
    .ok()
    .flatten()
}

fn losetup() -> Losetup {
    Losetup {
        timeout: Duration::from_secs(30),
    }
}

/// Owns the test directory; on drop unmounts, detaches and removes everything below it.
struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Result<Self> {
        let root = PathBuf::from(format!("/tmp/hwameistor-t1-snap-{}", std::process::id()));
        let sb = Sandbox { root };
        sb.cleanup();
        std::fs::create_dir_all(&sb.root)?;
        Ok(sb)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }

    fn cleanup(&self) {
        for _ in 0..3 {
            if let Some(out) = run_sync(Cmd::new("findmnt").args([
                "-J",
                "-l",
                "-o",
                "SOURCE,TARGET,FSTYPE,OPTIONS",
            ])) && let Ok(mounts) = fs::parse_findmnt(&out)
            {
                let mut targets: Vec<PathBuf> = mounts
                    .into_iter()
                    .map(|m| m.target)
                    .filter(|t| t.starts_with(&self.root))
                    .collect();
                targets.sort_by_key(|t| std::cmp::Reverse(t.as_os_str().len()));
                for t in targets {
                    run_sync(Cmd::new("umount").arg(t.to_string_lossy()));
                }
            }
            let loops = run_sync(losetup().list())
                .and_then(|out| loopdev::parse_losetup(&out).ok())
                .unwrap_or_default();
            let mut mine: Vec<_> = loops
                .into_iter()
                .filter(|l| {
                    l.back_file
                        .starts_with(self.root.to_string_lossy().as_ref())
                })
                .collect();
            mine.sort_by_key(|l| std::cmp::Reverse(l.back_file.len()));
            for l in mine {
                run_sync(losetup().detach(&l.name));
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cleanup();
    }
}

async fn run(cmd: Cmd) -> Result<String> {
    Ok(TokioRunner.run(&cmd).await?.stdout)
}

/// A sparse file attached as a loop device: a "disk".
async fn loop_disk(sb: &Sandbox, name: &str, size: u64) -> Result<PathBuf> {
    let dir = sb.path("disks");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{name}.img"));
    std::fs::File::create(&file)?.set_len(size)?;
    let out = run(Cmd::new("losetup")
        .args(["--show", "-f"])
        .arg(file.to_string_lossy()))
    .await?;
    Ok(PathBuf::from(out.trim()))
}

/// Write `mib` MiB of a pattern derived from `seed` at `offset_mib` with direct IO.
async fn write_pattern(
    sb: &Sandbox,
    dev: &Path,
    offset_mib: u64,
    mib: u64,
    seed: u8,
) -> Result<()> {
    let pat = sb.path(&format!("pattern-{seed}-{mib}"));
    let data: Vec<u8> = (0..(mib * MI) as usize)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 12) as u8))
        .collect();
    std::fs::write(&pat, data)?;
    run(Cmd::new("dd")
        .arg(format!("if={}", pat.display()))
        .arg(format!("of={}", dev.display()))
        .args(["bs=1M", "oflag=direct", "conv=notrunc,fsync"])
        .arg(format!("seek={offset_mib}")))
    .await?;
    Ok(())
}

/// A digest of the first `mib` MiB of a device, read with direct IO (through a file in the
/// sandbox, so nothing but the Runner touches the device).
async fn checksum(sb: &Sandbox, dev: &Path, mib: u64) -> Result<String> {
    use std::hash::{Hash, Hasher};
    let copy = sb.path("readback.img");
    run(Cmd::new("dd")
        .arg(format!("if={}", dev.display()))
        .arg(format!("of={}", copy.display()))
        .args(["bs=1M", "iflag=direct", "status=none"])
        .arg(format!("count={mib}")))
    .await?;
    let data = std::fs::read(&copy)?;
    std::fs::remove_file(&copy)?;
    ensure!(
        data.len() as u64 == mib * MI,
        "short read of {}: {} bytes",
        dev.display(),
        data.len()
    );
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    Ok(format!("{:016x}", h.finish()))
}

async fn replica_dev(store: &Store, volume: &str) -> PathBuf {
    wait_for(60, &format!("{volume} replica device"), || async {
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

async fn ready_volume(store: &Store, name: &str) {
    wait_for(60, &format!("{name} Ready"), || async {
        let lv = store.all::<LocalVolume>().get_opt(name).await.unwrap()?;
        (lv.status?.state == VolumeState::Ready).then_some(())
    })
    .await
}

async fn restore_done(store: &Store, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = store
            .all::<LocalVolumeSnapshotRestore>()
            .get_opt(name)
            .await?;
        let st = r.and_then(|r| r.status).unwrap_or_default();
        match st.state {
            OperationState::Completed => return Ok(()),
            OperationState::Failed => anyhow::bail!("restore {name} failed: {}", st.message),
            _ => {}
        }
        ensure!(
            Instant::now() < deadline,
            "restore {name} timed out: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn snapshot_restore_clone_rollback_on_the_file_engine() -> Result<()> {
    let sb = Sandbox::new()?;
    let disk = loop_disk(&sb, "d1", 1 << 30).await?;
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
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    tokio::spawn(volume::run_cluster_controllers(
        cluster_cfg(),
        store.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(volume::run_node_agent(
        agent_cfg(NODE),
        store.clone(),
        engine.clone(),
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    let mut ncfg = SnapshotNodeConfig::new(NODE);
    ncfg.resync_interval = Duration::from_secs(1);
    ncfg.merge_poll_interval = Duration::from_millis(200);
    tokio::spawn(snapshot::run_snapshot_node(
        ncfg,
        store.clone(),
        engine.clone(),
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    let ccfg = SnapshotClusterConfig {
        poll_interval: Duration::from_millis(200),
        ..Default::default()
    };
    tokio::spawn(snapshot::run_snapshot_cluster(
        ccfg,
        store.clone(),
        shutdown.clone(),
    ));

    claim_disks(
        &store,
        "t1-snap-claim",
        NODE,
        &[disk.to_str().context("path")?],
    )
    .await?;
    wait_for(60, "pool reported", || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt(NODE)
            .await
            .unwrap()?;
        lsn.status?
            .pools
            .get(POOL_HDD)
            .filter(|p| p.total_capacity_bytes > 0)
            .map(|_| ())
    })
    .await;

    // Data A, snapshot, data B on top.
    store
        .all::<LocalVolume>()
        .create(&volume("t1-src", 64 * MI))
        .await?;
    ready_volume(&store, "t1-src").await;
    let src = replica_dev(&store, "t1-src").await;
    write_pattern(&sb, &src, 0, 8, 1).await?;
    write_pattern(&sb, &src, 40, 4, 2).await?;
    let sum_a = checksum(&sb, &src, 64).await?;

    let t0 = Instant::now();
    snapshot::create_snapshot(&store, "t1-snap", "t1-src", None).await?;
    let snap = wait_for(60, "snapshot Ready", || async {
        let s = store
            .all::<LocalVolumeSnapshot>()
            .get_opt("t1-snap")
            .await
            .unwrap()?;
        (s.state() == VolumeState::Ready).then_some(s)
    })
    .await;
    eprintln!("snapshot Ready after {:?}", t0.elapsed());
    let st = snap.status.context("snapshot status")?;
    ensure!(st.allocated_capacity_bytes == (64 * MI) as i64, "{st:?}");
    ensure!(st.creation_time.is_some());

    write_pattern(&sb, &src, 2, 4, 7).await?;
    let sum_b = checksum(&sb, &src, 64).await?;
    ensure!(sum_a != sum_b, "the second write changed nothing");

    // Restore into a new volume: it holds A.
    let t0 = Instant::now();
    let r = snapshot::restore_snapshot(&store, "t1-snap", "t1-restored", None).await?;
    restore_done(&store, &r).await?;
    eprintln!("restore (64 MiB) completed after {:?}", t0.elapsed());
    let restored = replica_dev(&store, "t1-restored").await;
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
    restore_done(&store, &r).await?;
    let clone = replica_dev(&store, "t1-clone").await;
    ensure!(
        checksum(&sb, &clone, 64).await? == sum_b,
        "clone differs from its source"
    );
    wait_for(60, "clone's temporary snapshot removed", || async {
        store
            .all::<LocalVolumeSnapshot>()
            .get_opt("t1-clone-clone-source")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

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
    let t0 = Instant::now();
    snapshot::rollback_snapshot(&store, "t1-snap").await?;
    wait_for(60, "rollback done and its object removed", || async {
        store
            .all::<LocalVolumeSnapshotRestore>()
            .get_opt(&rb)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    eprintln!("rollback completed after {:?}", t0.elapsed());
    let src = replica_dev(&store, "t1-src").await;
    ensure!(
        checksum(&sb, &src, 64).await? == sum_a,
        "rollback did not restore the snapshot's data"
    );
    // The merge consumed the snapshot: object and host copy are gone.
    wait_for(60, "consumed snapshot removed", || async {
        store
            .all::<LocalVolumeSnapshot>()
            .get_opt("t1-snap")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    ensure!(engine.list_snapshots(POOL_HDD).await?.is_empty());

    // Volumes go away cleanly (no leaked loop devices: the sandbox guard checks on drop).
    for v in ["t1-src", "t1-restored", "t1-clone"] {
        store
            .all::<LocalVolume>()
            .patch(v, &json!({"spec": {"delete": true}}))
            .await?;
    }
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
