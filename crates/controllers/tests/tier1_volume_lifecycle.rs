//! Tier 1: the node agent and the cluster controllers over the EmbeddedStore with the real
//! `file` engine on loop-backed disks: claim → pool → volume Ready on a real loop device →
//! write/read → QoS in the blkio/io cgroup → expand online → second claim extends the pool →
//! agent restart after a create that was never reported → delete, with no leaked loop device.
//!
//! Needs root, loop devices, xfsprogs. Run by `.ci/run` with
//! `cargo test --workspace --test 'tier1_*' -- --ignored --test-threads=1`.
//! Everything lives under `/tmp/hwameistor-t1-vol-<pid>`; a Drop guard unmounts and detaches
//! everything below it (and removes the test cgroup), even when the test fails.

mod volume_common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hwameistor_api::types::{ClaimPhase, OperationState, ReplicaState, VolumeState};
use hwameistor_api::{
    LocalDiskClaim, LocalVolume, LocalVolumeExpand, LocalVolumeExpandSpec, LocalVolumeReplica,
    VolumeQoS,
};
use hwameistor_controllers::volume::{self, ClusterConfig};
use hwameistor_engine::file::FileEngine;
use hwameistor_engine::qos::{QosLimits, Throttler};
use hwameistor_engine::{FileEngineConfig, PoolFsType, SharedEngine, VolumeOptions};
use hwameistor_exec::TokioRunner;
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_testkit::block::{blockdev_size, loops_below};
use hwameistor_testkit::data::{byte_pattern, write_read_at};
use hwameistor_testkit::{GI, MI, Sandbox};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use volume_common::{
    POOL_HDD, agent_cfg, claim_disks, replica_of, volume, wait_for, wait_no_volumes, wait_pool,
};

const NODE: &str = "t1-node";

/// Write 1 MiB at `offset`, flush it to the device, and read it back.
fn write_read(dev: &Path, offset: u64, seed: u8) -> Result<()> {
    write_read_at(dev, offset, &byte_pattern(MI as usize, seed))
}

struct Agent {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start_agent(store: &Store, engine: SharedEngine, throttler: Option<Throttler>) -> Agent {
    let shutdown = CancellationToken::new();
    let mut cfg = agent_cfg(NODE);
    cfg.throttler = throttler;
    let fut = volume::run_node_agent(
        cfg,
        store.clone(),
        engine,
        TokioRunner::shared(),
        shutdown.clone(),
    );
    let task = tokio::spawn(async move { fut.await.expect("node agent") });
    Agent { shutdown, task }
}

impl Agent {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

async fn ready_volume(store: &Store, name: &str, bytes: u64) -> LocalVolume {
    wait_for(60, &format!("{name} Ready at {bytes}"), || async {
        let lv = store.all::<LocalVolume>().get_opt(name).await.unwrap()?;
        let st = lv.status.as_ref()?;
        (st.state == VolumeState::Ready && st.allocated_capacity_bytes == bytes as i64)
            .then_some(lv)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn volume_lifecycle_on_the_file_engine() -> Result<()> {
    let sb = Sandbox::new("vol")?;
    let d1 = sb.loop_disk("d1", GI).await?.dev;
    let d2 = sb.loop_disk("d2", GI).await?.dev;
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
    let throttler = Throttler::named(
        Path::new("/sys/fs/cgroup"),
        &format!("hwameistor-t1-vol-{}", std::process::id()),
    )?;
    sb.remove_on_drop(throttler.dir.clone());

    let cluster_shutdown = CancellationToken::new();
    let cfg = ClusterConfig {
        offline_after: Duration::from_secs(30),
        liveness_interval: Duration::from_millis(500),
        resync_interval: Duration::from_secs(2),
        placement_retry: Duration::from_millis(500),
    };
    let cluster = tokio::spawn(volume::run_cluster_controllers(
        cfg,
        store.clone(),
        cluster_shutdown.clone(),
    ));
    let agent = start_agent(&store, engine.clone(), Some(throttler.clone()));

    // Claim → pool on the host, reported in the LocalStorageNode.
    claim_disks(
        &store,
        "t1-hdd-claim",
        NODE,
        &[d1.to_str().context("path")?],
    )
    .await?;
    let pool = wait_pool(&store, NODE, POOL_HDD, 60, "pool reported", |p| {
        p.total_capacity_bytes > 0
    })
    .await;
    ensure!(
        pool.disks.len() == 1 && pool.disks[0].dev_path == d1.to_string_lossy(),
        "{pool:?}"
    );
    ensure!(pool.total_capacity_bytes > (900 * MI) as i64, "{pool:?}");
    let claim = store.all::<LocalDiskClaim>().get("t1-hdd-claim").await?;
    ensure!(claim.status.map(|s| s.status) == Some(ClaimPhase::Consumed));

    // Create → Ready on a real loop device.
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-t1", 64 * MI))
        .await?;
    ready_volume(&store, "pvc-t1", 64 * MI).await;
    let r = replica_of(&store, "pvc-t1").await.context("replica")?;
    let dev = PathBuf::from(r.status.as_ref().context("status")?.dev_path.clone());
    ensure!(
        std::fs::metadata(&dev)?.file_type().is_block_device(),
        "{dev:?} is no block device"
    );
    ensure!(
        std::fs::canonicalize(&dev)?
            .to_string_lossy()
            .starts_with("/dev/loop")
    );
    ensure!(blockdev_size(&dev).await? == 64 * MI);
    write_read(&dev, 0, 7)?;

    // QoS through the cgroup, changed live on the LocalVolume.
    store
        .all::<LocalVolume>()
        .patch(
            "pvc-t1",
            &json!({"spec": {"volumeQoS": {"throughput": "10Mi", "iops": "200"}}}),
        )
        .await?;
    let want = QosLimits::symmetric(Some(200), Some(10 * MI));
    wait_for(30, "QoS applied", || async {
        (throttler.current(&dev).ok()? == want).then_some(())
    })
    .await;
    let r = wait_for(30, "QoS condition", || async {
        let r = replica_of(&store, "pvc-t1").await?;
        r.status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "QoS" && c.status == "True")
            .then_some(r)
    })
    .await;
    ensure!(
        r.spec.volume_qos
            == Some(VolumeQoS {
                throughput: "10Mi".into(),
                iops: "200".into()
            })
    );

    // Expand online: 64 MiB → 128 MiB, data kept.
    let expand = LocalVolumeExpand::new(
        "pvc-t1",
        LocalVolumeExpandSpec {
            volume_name: "pvc-t1".into(),
            required_capacity_bytes: (128 * MI) as i64,
            abort: false,
        },
    );
    store.all::<LocalVolumeExpand>().create(&expand).await?;
    ready_volume(&store, "pvc-t1", 128 * MI).await;
    wait_for(30, "expand request done", || async {
        match store
            .all::<LocalVolumeExpand>()
            .get_opt("pvc-t1")
            .await
            .unwrap()
        {
            None => Some(()),
            Some(e) => {
                let st = e.status.unwrap_or_default().state;
                assert_ne!(st, OperationState::Failed);
                None
            }
        }
    })
    .await;
    ensure!(blockdev_size(&dev).await? == 128 * MI);
    write_read(&dev, 100 * MI, 9)?;

    // A second claim extends the pool.
    claim_disks(
        &store,
        "t1-hdd-claim-2",
        NODE,
        &[d2.to_str().context("path")?],
    )
    .await?;
    wait_pool(&store, NODE, POOL_HDD, 60, "pool extended", |p| {
        p.disks.len() == 2
            && p.total_capacity_bytes > 2 * pool.total_capacity_bytes - (100 * MI) as i64
    })
    .await;

    // Agent "crash" after the engine created a device but before any status write: stop the
    // agent, create the volume object, do the engine step by hand, restart.
    agent.stop().await;
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-t1b", 32 * MI))
        .await?;
    let rb = wait_for(30, "replica object for pvc-t1b", || async {
        replica_of(&store, "pvc-t1b").await
    })
    .await;
    ensure!(rb.status.as_ref().map(|s| s.state).unwrap_or_default() == ReplicaState::Unknown);
    engine
        .create_volume(POOL_HDD, "pvc-t1b", 32 * MI, &VolumeOptions::default())
        .await?;
    let agent = start_agent(&store, engine.clone(), Some(throttler.clone()));
    ready_volume(&store, "pvc-t1b", 32 * MI).await;
    // A volume whose loop device vanished (as after a reboot) is attached again.
    let rb = replica_of(&store, "pvc-t1b").await.context("replica")?;
    let dev_b = PathBuf::from(rb.status.as_ref().context("status")?.dev_path.clone());
    engine.deactivate_volume(POOL_HDD, "pvc-t1b").await?;
    ensure!(
        std::fs::metadata(&dev_b).is_err(),
        "device still attached after deactivate"
    );
    let rname = rb.metadata.name.clone().context("name")?;
    store
        .all::<LocalVolumeReplica>()
        .patch(
            &rname,
            &json!({"metadata": {"annotations": {"test/poke": "1"}}}),
        )
        .await?;
    wait_for(30, "volume re-activated", || async {
        std::fs::metadata(&dev_b)
            .ok()?
            .file_type()
            .is_block_device()
            .then_some(())
    })
    .await;
    ensure!(blockdev_size(&dev_b).await? == 32 * MI);
    let pools_dir = sb.path("pools");
    let loops = loops_below(&pools_dir).await?;
    ensure!(
        loops.len() == 2,
        "one loop device per volume, got {loops:?}"
    );

    // Delete both: devices detached, files removed, objects gone.
    for v in ["pvc-t1", "pvc-t1b"] {
        store
            .all::<LocalVolume>()
            .patch(v, &json!({"spec": {"delete": true}}))
            .await?;
    }
    wait_no_volumes(&store, 60, "volumes removed").await;
    ensure!(
        engine.list_volumes(None).await?.is_empty(),
        "engine still holds volumes"
    );
    let leaked = loops_below(&pools_dir).await?;
    ensure!(leaked.is_empty(), "leaked loop devices: {leaked:?}");
    wait_pool(
        &store,
        NODE,
        POOL_HDD,
        30,
        "pool report without volumes",
        |p| p.volumes.is_empty() && p.used_volume_count == 0,
    )
    .await;

    agent.stop().await;
    cluster_shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), cluster).await;
    Ok(())
}
