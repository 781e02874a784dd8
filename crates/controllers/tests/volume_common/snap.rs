//! Shared setup of the snapshot tests over a real engine (tier 1 `file`, tier 2 `lvm`): the
//! four reconcilers in-process, the claimed pool, waits on volumes, replicas, snapshots and
//! restores, and data written and digested with direct IO through the sandbox.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, ensure};
use hwameistor_api::types::{OperationState, VolumeState};
use hwameistor_api::{LocalVolume, LocalVolumeSnapshot, LocalVolumeSnapshotRestore};
use hwameistor_controllers::snapshot::{self, SnapshotClusterConfig, SnapshotNodeConfig};
use hwameistor_controllers::volume::{self, NodeAgentConfig};
use hwameistor_engine::SharedEngine;
use hwameistor_exec::TokioRunner;
use hwameistor_store::Store;
use hwameistor_testkit::data::{dd_read, dd_write, digest};
use hwameistor_testkit::{MI, Sandbox};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{POOL_HDD, claim_disks, cluster_cfg, replica_of, wait_for, wait_pool};

/// How often the snapshot reconcilers look again.
#[derive(Clone, Copy, Debug)]
pub struct SnapPace {
    /// The snapshot node's resync.
    pub node_resync: Duration,
    /// How often a running merge (rollback) is polled.
    pub merge_poll: Duration,
    /// The snapshot cluster controller's poll.
    pub cluster_poll: Duration,
}

/// Spawn the volume cluster controllers, the node agent (`acfg`), the snapshot node and the
/// snapshot cluster controller over `store` and `engine`; they stop when the guard drops.
pub fn spawn_reconcilers(
    store: &Store,
    engine: SharedEngine,
    acfg: NodeAgentConfig,
    pace: SnapPace,
) -> DropGuard {
    let shutdown = CancellationToken::new();
    let node = acfg.node_name.clone();
    tokio::spawn(volume::run_cluster_controllers(
        cluster_cfg(),
        store.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(volume::run_node_agent(
        acfg,
        store.clone(),
        engine.clone(),
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    let mut ncfg = SnapshotNodeConfig::new(&node);
    ncfg.resync_interval = pace.node_resync;
    ncfg.merge_poll_interval = pace.merge_poll;
    tokio::spawn(snapshot::run_snapshot_node(
        ncfg,
        store.clone(),
        engine,
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    tokio::spawn(snapshot::run_snapshot_cluster(
        SnapshotClusterConfig {
            poll_interval: pace.cluster_poll,
            ..Default::default()
        },
        store.clone(),
        shutdown.clone(),
    ));
    shutdown.drop_guard()
}

/// Claim `disk` for local storage on `node` and wait until the node reports the HDD pool.
pub async fn claim_pool(
    store: &Store,
    claim: &str,
    node: &str,
    disk: &Path,
    secs: u64,
) -> Result<()> {
    claim_disks(store, claim, node, &[&disk.to_string_lossy()]).await?;
    wait_pool(store, node, POOL_HDD, secs, "pool reported", |p| {
        p.total_capacity_bytes > 0
    })
    .await;
    Ok(())
}

/// Wait until LocalVolume `name` is Ready; panics after `secs`.
pub async fn volume_ready(store: &Store, name: &str, secs: u64) {
    wait_for(secs, &format!("{name} Ready"), || async {
        let lv = store.all::<LocalVolume>().get_opt(name).await.unwrap()?;
        (lv.status?.state == VolumeState::Ready).then_some(())
    })
    .await
}

/// The device of `volume`'s replica once it has one; panics after `secs`.
pub async fn replica_dev(store: &Store, volume: &str, secs: u64) -> PathBuf {
    wait_for(secs, &format!("{volume} replica device"), || async {
        replica_of(store, volume)
            .await
            .and_then(|r| r.status)
            .map(|s| PathBuf::from(s.dev_path))
            .filter(|p| !p.as_os_str().is_empty())
    })
    .await
}

/// Snapshot `name` once `f` holds for it; panics after `secs` naming `what`.
pub async fn snapshot_where(
    store: &Store,
    name: &str,
    what: &str,
    secs: u64,
    f: impl Fn(&LocalVolumeSnapshot) -> bool,
) -> LocalVolumeSnapshot {
    wait_for(secs, &format!("snapshot {name} {what}"), || async {
        let s = store
            .all::<LocalVolumeSnapshot>()
            .get_opt(name)
            .await
            .unwrap()?;
        f(&s).then_some(s)
    })
    .await
}

/// Wait until snapshot `name` is gone from the store; panics after `secs`.
pub async fn snapshot_gone(store: &Store, name: &str, secs: u64) {
    wait_for(secs, &format!("snapshot {name} removed"), || async {
        store
            .all::<LocalVolumeSnapshot>()
            .get_opt(name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await
}

/// Wait until restore `name` is finished and require it to be Completed; panics after `secs`.
pub async fn restore_completed(store: &Store, name: &str, secs: u64) -> Result<()> {
    let st = wait_for(secs, &format!("restore {name} finished"), || async {
        let st = store
            .all::<LocalVolumeSnapshotRestore>()
            .get_opt(name)
            .await
            .unwrap()?
            .status?;
        st.state.is_terminal().then_some(st)
    })
    .await;
    ensure!(
        st.state == OperationState::Completed,
        "restore {name}: {st:?}"
    );
    Ok(())
}

/// Wait until rollback `name` has finished and removed its restore object (a rollback cleans
/// up after itself); panics after `secs` or when it fails.
pub async fn rollback_gone(store: &Store, name: &str, secs: u64) {
    wait_for(
        secs,
        &format!("rollback {name} done and removed"),
        || async {
            let r = store
                .all::<LocalVolumeSnapshotRestore>()
                .get_opt(name)
                .await
                .unwrap();
            if let Some(st) = r.as_ref().and_then(|r| r.status.as_ref()) {
                assert_ne!(st.state, OperationState::Failed, "rollback {name}: {st:?}");
            }
            r.is_none().then_some(())
        },
    )
    .await
}

/// Write `mib` MiB of a pattern derived from `seed` at `offset_mib` of `dev` with direct IO
/// (through a file in the sandbox, so nothing but the runner touches the device).
pub async fn write_pattern(
    sb: &Sandbox,
    dev: &Path,
    offset_mib: u64,
    mib: u64,
    seed: u8,
) -> Result<()> {
    let data: Vec<u8> = (0..(mib * MI) as usize)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 12) as u8))
        .collect();
    dd_write(
        &sb.path(format!("pattern-{seed}-{mib}")),
        dev,
        offset_mib,
        &data,
    )
    .await
}

/// A digest of the first `mib` MiB of `dev`, read with direct IO through the sandbox.
pub async fn checksum(sb: &Sandbox, dev: &Path, mib: u64) -> Result<String> {
    Ok(digest(&dd_read(&sb.path("readback.img"), dev, mib).await?))
}
