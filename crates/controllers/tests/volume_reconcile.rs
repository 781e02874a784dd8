//! Tier 0: the local-storage reconcilers over the EmbeddedStore with an in-memory engine.

mod volume_common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hwameistor_api::types::{
    ClaimPhase, ConditionStatus, NodeState, OperationState, ReplicaState, StorageNodeConditionType,
    VolumeState,
};
use hwameistor_api::{
    LocalDiskClaim, LocalStorageNode, LocalVolume, LocalVolumeExpand, LocalVolumeExpandSpec,
    LocalVolumeGroup, LocalVolumeGroupSpec, LocalVolumeReplica,
};
use hwameistor_controllers::volume::{
    self, ANNOTATION_HEARTBEAT, ANNOTATION_ORPHANS, ClusterCtx, NodeCtx, cluster::check_liveness,
};
use hwameistor_engine::SharedEngine;
use hwameistor_exec::TokioRunner;
use hwameistor_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use volume_common::fake_engine::FakeEngine;
use volume_common::*;

struct Running {
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

fn start(store: &Store, engines: &[(&str, Arc<FakeEngine>)]) -> Running {
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for (node, engine) in engines {
        let engine: SharedEngine = engine.clone();
        let fut = volume::run_node_agent(
            agent_cfg(node),
            store.clone(),
            engine,
            TokioRunner::shared(),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move { fut.await.expect("node agent") }));
    }
    let fut = volume::run_cluster_controllers(cluster_cfg(), store.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        fut.await.expect("cluster controllers")
    }));
    Running { shutdown, tasks }
}

async fn lv_state(store: &Store, name: &str) -> Option<LocalVolume> {
    store.all::<LocalVolume>().get_opt(name).await.unwrap()
}

async fn replicas_of(store: &Store, volume: &str) -> Vec<LocalVolumeReplica> {
    store
        .all::<LocalVolumeReplica>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|r| r.spec.volume_name == volume)
        .collect()
}

async fn wait_pool(store: &Store, node: &str) {
    wait_for(30, "pool reported", || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt(node)
            .await
            .unwrap()?;
        lsn.status?
            .pools
            .get(POOL_HDD)
            .filter(|p| p.total_capacity_bytes > 0)
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_pool_create_expand_delete() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let engine = Arc::new(FakeEngine::new(10 * GIB));
    let run = start(&store, &[("n1", engine.clone())]);

    // Claim → pool, claim Consumed, records, ExpandSuccess, storage IP from config.
    claim_disks(&store, "n1-hdd-claim", "n1", &["/dev/sdb"]).await?;
    wait_pool(&store, "n1").await;
    wait_for(30, "claim consumed", || async {
        let c = store
            .all::<LocalDiskClaim>()
            .get("n1-hdd-claim")
            .await
            .unwrap();
        (c.status?.status == ClaimPhase::Consumed).then_some(())
    })
    .await;
    let lsn = store.all::<LocalStorageNode>().get("n1").await?;
    assert_eq!(lsn.spec.storage_ip, "10.0.0.9");
    let st = lsn.status.clone().unwrap();
    assert_eq!(st.state, NodeState::Ready);
    assert_eq!(st.pool_extend_records[POOL_HDD].len(), 1);
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == StorageNodeConditionType::ExpandSuccess
                && c.status == ConditionStatus::True)
    );
    assert!(
        lsn.metadata
            .annotations
            .unwrap()
            .contains_key(ANNOTATION_HEARTBEAT)
    );

    // A second claim extends the pool.
    claim_disks(&store, "n1-hdd-claim-2", "n1", &["/dev/sdc"]).await?;
    wait_for(30, "pool extended", || async {
        let lsn = store.all::<LocalStorageNode>().get("n1").await.unwrap();
        let p = lsn.status?.pools.get(POOL_HDD).cloned()?;
        (p.total_capacity_bytes == (20 * GIB) as i64 && p.disks.len() == 2).then_some(())
    })
    .await;

    // Create → replica → Ready with a device.
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-a", GIB + 1))
        .await?;
    let lv = wait_for(30, "volume ready", || async {
        lv_state(&store, "pvc-a").await.filter(|lv| {
            lv.status
                .as_ref()
                .is_some_and(|s| s.state == VolumeState::Ready)
        })
    })
    .await;
    let cfg = lv.spec.config.clone().unwrap();
    assert_eq!(cfg.replicas.len(), 1);
    assert_eq!(cfg.replicas[0].hostname, "n1");
    assert_eq!(cfg.resource_id, -1);
    assert_eq!(
        cfg.required_capacity_bytes,
        (GIB + (4 << 20)) as i64,
        "rounded to extents"
    );
    assert_eq!(
        lv.status.as_ref().unwrap().allocated_capacity_bytes,
        cfg.required_capacity_bytes
    );
    let reps = replicas_of(&store, "pvc-a").await;
    assert_eq!(reps.len(), 1);
    let rs = reps[0].status.clone().unwrap();
    assert_eq!(rs.state, ReplicaState::Ready);
    assert_eq!(rs.dev_path, format!("/dev/fake/{POOL_HDD}/pvc-a"));
    assert!(
        reps[0]
            .metadata
            .name
            .as_ref()
            .unwrap()
            .starts_with("pvc-a-")
    );
    assert_eq!(engine.volume_size("pvc-a"), Some(GIB + (4 << 20)));

    // Expand through a LocalVolumeExpand.
    let expand = LocalVolumeExpand::new(
        "pvc-a",
        LocalVolumeExpandSpec {
            volume_name: "pvc-a".into(),
            required_capacity_bytes: (2 * GIB) as i64,
            abort: false,
        },
    );
    store.all::<LocalVolumeExpand>().create(&expand).await?;
    wait_for(30, "expansion completed and removed", || async {
        let gone = store
            .all::<LocalVolumeExpand>()
            .get_opt("pvc-a")
            .await
            .unwrap()
            .is_none();
        (gone && engine.volume_size("pvc-a") == Some(2 * GIB)).then_some(())
    })
    .await;
    let lv = wait_for(30, "volume ready at 2GiB", || async {
        lv_state(&store, "pvc-a").await.filter(|lv| {
            lv.status.as_ref().is_some_and(|s| {
                s.state == VolumeState::Ready && s.allocated_capacity_bytes == (2 * GIB) as i64
            })
        })
    })
    .await;
    assert_eq!(lv.spec.required_capacity_bytes, (2 * GIB) as i64);
    assert_eq!(engine.extends.load(Ordering::SeqCst), 1);

    // Shrinking is refused with a message and changes nothing.
    let shrink = LocalVolumeExpand::new(
        "pvc-a",
        LocalVolumeExpandSpec {
            volume_name: "pvc-a".into(),
            required_capacity_bytes: GIB as i64,
            abort: false,
        },
    );
    store.all::<LocalVolumeExpand>().create(&shrink).await?;
    let failed = wait_for(30, "shrink refused", || async {
        let e = store.all::<LocalVolumeExpand>().get("pvc-a").await.unwrap();
        e.status.filter(|s| s.state == OperationState::Failed)
    })
    .await;
    assert!(
        failed
            .message
            .contains("shrinking a volume is not supported"),
        "{}",
        failed.message
    );
    assert_eq!(engine.volume_size("pvc-a"), Some(2 * GIB));

    // Delete with spec.delete: device removed, replica and volume objects gone.
    store
        .all::<LocalVolume>()
        .patch("pvc-a", &json!({"spec": {"delete": true}}))
        .await?;
    wait_for(30, "volume removed", || async {
        let gone = lv_state(&store, "pvc-a").await.is_none()
            && replicas_of(&store, "pvc-a").await.is_empty();
        gone.then_some(())
    })
    .await;
    assert!(engine.volume_names().is_empty());
    assert_eq!(engine.deletes.load(Ordering::SeqCst), 1);
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_failure_condition_carries_the_error() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let engine = Arc::new(FakeEngine::new(10 * GIB));
    engine.bad_disks.lock().unwrap().insert("/dev/sdz".into());
    let run = start(&store, &[("n1", engine.clone())]);
    claim_disks(&store, "bad-claim", "n1", &["/dev/sdz"]).await?;
    let cond = wait_for(30, "ExpandFailure", || async {
        let lsn = store
            .all::<LocalStorageNode>()
            .get_opt("n1")
            .await
            .unwrap()?;
        lsn.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == StorageNodeConditionType::ExpandFailure)
    })
    .await;
    assert_eq!(cond.status, ConditionStatus::True);
    assert_eq!(cond.reason, "StorageExpandFailure");
    assert!(
        cond.message
            .starts_with("Failed to expand storage capacity, err:"),
        "{}",
        cond.message
    );
    assert!(cond.message.contains("exit status 5"), "{}", cond.message);
    let c = store.all::<LocalDiskClaim>().get("bad-claim").await?;
    assert_eq!(
        c.status.unwrap().status,
        ClaimPhase::Bound,
        "a failed claim is not consumed"
    );
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_reported_not_deleted() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let engine = Arc::new(FakeEngine::new(10 * GIB));
    let shared: SharedEngine = engine.clone();
    let ctx = NodeCtx::new(
        agent_cfg("n1"),
        store.clone(),
        shared.clone(),
        TokioRunner::shared(),
    );
    volume::register_node(&ctx).await?;
    shared.ensure_pool(POOL_HDD, &["/dev/sdb".into()]).await?;
    engine.inject_volume(POOL_HDD, "pvc-lost", GIB);
    volume::sync_node(&ctx).await?;
    assert_eq!(ctx.orphans(), vec![format!("{POOL_HDD}/pvc-lost")]);
    let lsn = store.all::<LocalStorageNode>().get("n1").await?;
    assert_eq!(
        lsn.metadata.annotations.unwrap()[ANNOTATION_ORPHANS],
        format!("{POOL_HDD}/pvc-lost")
    );
    assert_eq!(
        engine.volume_names(),
        vec!["pvc-lost".to_string()],
        "orphans are never deleted"
    );
    // Once referenced by a replica it is no orphan.
    let r = LocalVolumeReplica::test("pvc-lost", "n1");
    store.all::<LocalVolumeReplica>().create(&r).await?;
    volume::sync_node(&ctx).await?;
    assert!(ctx.orphans().is_empty());
    Ok(())
}

/// The agent dies after the engine created the device but before the status write; a new
/// agent finishes the step without creating a second device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_create_and_status_write_converges() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let engine = Arc::new(FakeEngine::new(10 * GIB));
    let shared: SharedEngine = engine.clone();
    let ctx = NodeCtx::new(
        agent_cfg("n1"),
        store.clone(),
        shared.clone(),
        TokioRunner::shared(),
    );
    volume::register_node(&ctx).await?;
    shared.ensure_pool(POOL_HDD, &["/dev/sdb".into()]).await?;
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-c", GIB))
        .await?;
    let mut r = LocalVolumeReplica::test("pvc-c", "n1");
    r.status = None;
    let r = store.all::<LocalVolumeReplica>().create(&r).await?;
    let name = r.metadata.name.clone().unwrap();

    *engine.hang_after_create.lock().unwrap() = true;
    let created = engine.created.notified();
    let task = tokio::spawn(volume::reconcile_replica(Arc::new(r.clone()), ctx.clone()));
    tokio::time::timeout(Duration::from_secs(10), created).await?;
    task.abort(); // the "crash"
    let _ = task.await;
    let mid = store.all::<LocalVolumeReplica>().get(&name).await?;
    assert_eq!(
        mid.status.unwrap().state,
        ReplicaState::Creating,
        "status not yet written"
    );
    assert_eq!(engine.creates.load(Ordering::SeqCst), 1);

    // Restart: a fresh context over the same store and host.
    *engine.hang_after_create.lock().unwrap() = false;
    let ctx2 = NodeCtx::new(
        agent_cfg("n1"),
        store.clone(),
        shared.clone(),
        TokioRunner::shared(),
    );
    volume::reconcile_replica(Arc::new(r), ctx2.clone()).await?;
    let done = store.all::<LocalVolumeReplica>().get(&name).await?;
    let st = done.status.unwrap();
    assert_eq!(st.state, ReplicaState::Ready);
    assert_eq!(st.allocated_capacity_bytes, GIB as i64);
    assert_eq!(engine.creates.load(Ordering::SeqCst), 1, "no second device");
    assert_eq!(engine.volume_names(), vec!["pvc-c".to_string()]);

    // Crash in the middle of a delete: device removed, status not written yet.
    store
        .all::<LocalVolumeReplica>()
        .patch(&name, &json!({"spec": {"delete": true}}))
        .await?;
    store
        .all::<LocalVolumeReplica>()
        .patch_status(&name, &json!({"status": {"state": "ToBeDeleted"}}))
        .await?;
    shared.delete_volume(POOL_HDD, "pvc-c").await?;
    let r = store.all::<LocalVolumeReplica>().get(&name).await?;
    volume::reconcile_replica(Arc::new(r), ctx2.clone()).await?;
    assert!(
        store
            .all::<LocalVolumeReplica>()
            .get_opt(&name)
            .await?
            .is_none()
    );
    assert!(engine.volume_names().is_empty());
    volume::sync_node(&ctx2).await?;
    assert!(ctx2.orphans().is_empty());
    Ok(())
}

/// 100 volumes at once against three 10 GiB nodes: exactly 30 GiB is placed, no pool is
/// over-committed even though the node reports lag behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_100_creates_never_overcommits() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let engines: Vec<(String, Arc<FakeEngine>)> = (1..=3)
        .map(|i| (format!("n{i}"), Arc::new(FakeEngine::new(10 * GIB))))
        .collect();
    let refs: Vec<(&str, Arc<FakeEngine>)> = engines
        .iter()
        .map(|(n, e)| (n.as_str(), e.clone()))
        .collect();
    let run = start(&store, &refs);
    for (n, _) in &engines {
        claim_disks(&store, &format!("{n}-claim"), n, &["/dev/sdb"]).await?;
        wait_pool(&store, n).await;
    }
    let lvs = store.all::<LocalVolume>();
    let creates = (0..100).map(|i| {
        let lvs = lvs.clone();
        async move { lvs.create(&volume(&format!("pvc-{i:03}"), GIB)).await }
    });
    for r in futures::future::join_all(creates).await {
        r?;
    }
    let placed = wait_for(30, "30 volumes ready", || async {
        let items = lvs.list(&Default::default()).await.unwrap().items;
        let ready = items
            .iter()
            .filter(|v| {
                v.status
                    .as_ref()
                    .is_some_and(|s| s.state == VolumeState::Ready)
            })
            .count();
        (ready == 30).then_some(items)
    })
    .await;
    // Let stragglers try again: still nothing more fits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
    let items = lvs.list(&Default::default()).await?.items;
    for v in &items {
        for r in v.spec.config.iter().flat_map(|c| c.replicas.iter()) {
            *per_node.entry(r.hostname.clone()).or_default() +=
                v.spec.config.as_ref().unwrap().required_capacity_bytes as u64;
        }
    }
    assert_eq!(placed.len(), 100);
    assert_eq!(per_node.values().sum::<u64>(), 30 * GIB, "{per_node:?}");
    for (n, bytes) in &per_node {
        assert!(*bytes <= 10 * GIB, "{n} over-committed: {bytes}");
    }
    for (_, e) in &engines {
        assert_eq!(e.volume_names().len(), 10);
    }
    run.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_group_members_share_nodes() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let engines: Vec<(String, Arc<FakeEngine>)> = (1..=3)
        .map(|i| (format!("n{i}"), Arc::new(FakeEngine::new(10 * GIB))))
        .collect();
    let refs: Vec<(&str, Arc<FakeEngine>)> = engines
        .iter()
        .map(|(n, e)| (n.as_str(), e.clone()))
        .collect();
    let run = start(&store, &refs);
    for (n, _) in &engines {
        claim_disks(&store, &format!("{n}-claim"), n, &["/dev/sdb"]).await?;
        wait_pool(&store, n).await;
    }
    let group = LocalVolumeGroup::new("grp-1", LocalVolumeGroupSpec::default());
    store.all::<LocalVolumeGroup>().create(&group).await?;
    let mut nodes = Vec::new();
    for i in 0..4 {
        let mut v = volume(&format!("pvc-g{i}"), GIB);
        v.spec.volume_group = "grp-1".into();
        store.all::<LocalVolume>().create(&v).await?;
        let lv = wait_for(30, "group volume ready", || async {
            lv_state(&store, &format!("pvc-g{i}")).await.filter(|lv| {
                lv.status
                    .as_ref()
                    .is_some_and(|s| s.state == VolumeState::Ready)
            })
        })
        .await;
        nodes.push(lv.spec.config.unwrap().replicas[0].hostname.clone());
    }
    assert!(nodes.iter().all(|n| *n == nodes[0]), "{nodes:?}");
    let g = store.all::<LocalVolumeGroup>().get("grp-1").await?;
    assert_eq!(g.spec.accessibility.nodes, vec![nodes[0].clone()]);
    run.stop().await;
    Ok(())
}

#[tokio::test]
async fn liveness_marks_stale_nodes_offline_and_keeps_maintain() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let lsns = store.all::<LocalStorageNode>();
    for n in ["fresh", "stale", "maint"] {
        lsns.create(&LocalStorageNode::test(n)).await?;
    }
    let now = jiff::Timestamp::now();
    let old = now - jiff::SignedDuration::from_secs(600);
    for (n, t, state) in [
        ("fresh", now, "Ready"),
        ("stale", old, "Ready"),
        ("maint", old, "Maintain"),
    ] {
        lsns.patch(
            n,
            &json!({"metadata": {"annotations": {ANNOTATION_HEARTBEAT: t.to_string()}}}),
        )
        .await?;
        lsns.patch_status(n, &json!({"status": {"state": state}}))
            .await?;
    }
    store
        .all::<LocalVolumeReplica>()
        .create(&LocalVolumeReplica::test("pvc-x", "stale"))
        .await?;
    store
        .all::<LocalVolumeReplica>()
        .patch_status("pvc-x-stale", &json!({"status": {"state": "Ready"}}))
        .await?;
    let ctx = ClusterCtx::new(cluster_cfg(), store.clone());
    check_liveness(&ctx).await?;
    let state = |n: &'static str| {
        let lsns = lsns.clone();
        async move { lsns.get(n).await.unwrap().status.unwrap().state }
    };
    assert_eq!(state("fresh").await, NodeState::Ready);
    assert_eq!(state("stale").await, NodeState::Offline);
    assert_eq!(state("maint").await, NodeState::Maintain);
    let r = store.all::<LocalVolumeReplica>().get("pvc-x-stale").await?;
    assert_eq!(r.status.unwrap().state, ReplicaState::NotReady);
    Ok(())
}

/// `spec.volumeQoS` never fails silently: without a throttler the replica says it is not
/// enforced; a throttler that cannot apply it reports the error.
#[tokio::test]
async fn qos_is_reported_when_it_cannot_be_enforced() -> anyhow::Result<()> {
    use hwameistor_api::VolumeQoS;
    use hwameistor_engine::qos::{CgroupVersion, Throttler};
    let (dir, store) = temp_store();
    let engine = Arc::new(FakeEngine::new(10 * GIB));
    let shared: SharedEngine = engine.clone();
    shared.ensure_pool(POOL_HDD, &["/dev/sdb".into()]).await?;
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-q", GIB))
        .await?;
    let mut r = LocalVolumeReplica::test("pvc-q", "n1");
    r.status = None;
    r.spec.volume_qos = Some(VolumeQoS {
        throughput: "10Mi".into(),
        iops: "100".into(),
    });
    let r = store.all::<LocalVolumeReplica>().create(&r).await?;
    let name = r.metadata.name.clone().unwrap();

    let qos_of = |store: Store, name: String| async move {
        let r = store.all::<LocalVolumeReplica>().get(&name).await.unwrap();
        let st = r.status.unwrap();
        assert_eq!(st.state, ReplicaState::Ready);
        st.conditions
            .into_iter()
            .find(|c| c.type_ == "QoS")
            .expect("QoS condition")
    };
    let ctx = NodeCtx::new(
        agent_cfg("n1"),
        store.clone(),
        shared.clone(),
        TokioRunner::shared(),
    );
    volume::register_node(&ctx).await?;
    volume::reconcile_replica(Arc::new(r.clone()), ctx).await?;
    let c = qos_of(store.clone(), name.clone()).await;
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "NoThrottler")
    );

    let mut cfg = agent_cfg("n1");
    cfg.throttler = Some(Throttler::new(CgroupVersion::V1, dir.path().join("blkio")));
    let ctx = NodeCtx::new(cfg, store.clone(), shared, TokioRunner::shared());
    volume::reconcile_replica(Arc::new(r), ctx).await?;
    let c = qos_of(store.clone(), name).await;
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "ApplyFailed")
    );
    assert!(c.message.contains("/dev/fake"), "{}", c.message);
    Ok(())
}

/// An expansion the pool cannot hold fails with a message and leaves the volume alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansion_without_room_fails_cleanly() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let engine = Arc::new(FakeEngine::new(10 * GIB));
    let run = start(&store, &[("n1", engine.clone())]);
    claim_disks(&store, "n1-claim", "n1", &["/dev/sdb", "/dev/sdc"]).await?;
    wait_pool(&store, "n1").await;
    for (v, size) in [("pvc-big", 8 * GIB), ("pvc-small", GIB)] {
        store.all::<LocalVolume>().create(&volume(v, size)).await?;
        wait_for(30, "volume ready", || async {
            lv_state(&store, v).await.filter(|lv| {
                lv.status
                    .as_ref()
                    .is_some_and(|s| s.state == VolumeState::Ready)
            })
        })
        .await;
    }
    let expand = LocalVolumeExpand::new(
        "pvc-small",
        LocalVolumeExpandSpec {
            volume_name: "pvc-small".into(),
            required_capacity_bytes: (15 * GIB) as i64,
            abort: false,
        },
    );
    store.all::<LocalVolumeExpand>().create(&expand).await?;
    let st = wait_for(30, "expansion failed", || async {
        let e = store
            .all::<LocalVolumeExpand>()
            .get("pvc-small")
            .await
            .unwrap();
        e.status.filter(|s| s.state == OperationState::Failed)
    })
    .await;
    assert!(
        st.message.contains("insufficient free space"),
        "{}",
        st.message
    );
    let lv = lv_state(&store, "pvc-small").await.unwrap();
    assert_eq!(lv.spec.required_capacity_bytes, GIB as i64);
    assert_eq!(lv.status.unwrap().state, VolumeState::Ready);
    assert_eq!(engine.volume_size("pvc-small"), Some(GIB));

    // Submitting a size that fits under the same name retries the failed request.
    store
        .all::<LocalVolumeExpand>()
        .patch(
            "pvc-small",
            &json!({"spec": {"requiredCapacityBytes": 3 * GIB}}),
        )
        .await?;
    wait_for(30, "retried expansion completed", || async {
        let gone = store
            .all::<LocalVolumeExpand>()
            .get_opt("pvc-small")
            .await
            .unwrap()
            .is_none();
        (gone && engine.volume_size("pvc-small") == Some(3 * GIB)).then_some(())
    })
    .await;
    run.stop().await;
    Ok(())
}

/// A 2-replica (HA) volume is placed on two nodes and its devices are created, but without a
/// replication layer it never claims to be Ready; it still deletes cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_volume_is_placed_but_not_reported_ready_without_replication() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let e1 = Arc::new(FakeEngine::new(10 * GIB));
    let e2 = Arc::new(FakeEngine::new(10 * GIB));
    let run = start(&store, &[("n1", e1.clone()), ("n2", e2.clone())]);
    for n in ["n1", "n2"] {
        claim_disks(&store, &format!("{n}-claim"), n, &["/dev/sdb"]).await?;
        wait_pool(&store, n).await;
    }
    let mut lv = volume("pvc-ha", GIB);
    lv.spec.replica_number = 2;
    store.all::<LocalVolume>().create(&lv).await?;
    let reps = wait_for(30, "two unreplicated replicas", || async {
        let reps = replicas_of(&store, "pvc-ha").await;
        let done = reps.len() == 2
            && reps.iter().all(|r| {
                r.status.as_ref().is_some_and(|s| {
                    s.state == ReplicaState::NotReady
                        && s.conditions
                            .iter()
                            .any(|c| c.reason == "ReplicationUnavailable")
                })
            });
        done.then_some(reps)
    })
    .await;
    let mut nodes: Vec<&str> = reps.iter().map(|r| r.spec.node_name.as_str()).collect();
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2"]);
    let lv = lv_state(&store, "pvc-ha").await.unwrap();
    assert_eq!(lv.status.unwrap().state, VolumeState::NotReady);
    assert_eq!(
        lv.spec.config.unwrap().resource_id,
        0,
        "an HA volume gets a DRBD resource id"
    );
    assert_eq!(e1.volume_names(), ["pvc-ha"]);
    assert_eq!(e2.volume_names(), ["pvc-ha"]);

    store
        .all::<LocalVolume>()
        .patch("pvc-ha", &json!({"spec": {"delete": true}}))
        .await?;
    wait_for(30, "HA volume removed", || async {
        (lv_state(&store, "pvc-ha").await.is_none()
            && replicas_of(&store, "pvc-ha").await.is_empty())
        .then_some(())
    })
    .await;
    assert!(e1.volume_names().is_empty() && e2.volume_names().is_empty());
    run.stop().await;
    Ok(())
}

/// A LocalVolume object deleted outright (no `spec.delete` first) still releases its replicas:
/// nothing is left referencing the devices, so keeping them would only leak them.
#[tokio::test]
async fn replicas_of_a_vanished_volume_are_removed() -> anyhow::Result<()> {
    let (_dir, store) = temp_store();
    let engine = Arc::new(FakeEngine::new(10 * GIB));
    let shared: SharedEngine = engine.clone();
    shared.ensure_pool(POOL_HDD, &["/dev/sdb".into()]).await?;
    let ctx = NodeCtx::new(
        agent_cfg("n1"),
        store.clone(),
        shared,
        TokioRunner::shared(),
    );
    volume::register_node(&ctx).await?;
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-v", GIB))
        .await?;
    let mut r = LocalVolumeReplica::test("pvc-v", "n1");
    r.status = None;
    let r = store.all::<LocalVolumeReplica>().create(&r).await?;
    let name = r.metadata.name.clone().unwrap();
    volume::reconcile_replica(Arc::new(r.clone()), ctx.clone()).await?;
    assert_eq!(engine.volume_names(), ["pvc-v"]);
    let ready = store.all::<LocalVolumeReplica>().get(&name).await?;
    assert_eq!(ready.status.unwrap().state, ReplicaState::Ready);

    store.all::<LocalVolume>().delete("pvc-v").await?;
    volume::reconcile_replica(Arc::new(r), ctx.clone()).await?;
    assert!(
        store
            .all::<LocalVolumeReplica>()
            .get_opt(&name)
            .await?
            .is_none()
    );
    assert!(engine.volume_names().is_empty());
    Ok(())
}

/// A striped LocalVolume: the replica carries `striped`, and the engine is asked to stripe
/// (lvm); on the file engine the volume is created linear and the replica says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn striped_volume_reaches_the_engine() -> anyhow::Result<()> {
    use hwameistor_controllers::volume::replica::CONDITION_STRIPED;
    let (_dir, store) = temp_store();
    let lvm = Arc::new(FakeEngine::new(10 * GIB));
    lvm.as_lvm.store(true, Ordering::SeqCst);
    let file = Arc::new(FakeEngine::new(10 * GIB));
    let run = start(&store, &[("n1", lvm.clone()), ("n2", file.clone())]);
    claim_disks(&store, "n1-hdd-claim", "n1", &["/dev/sdb", "/dev/sdc"]).await?;
    claim_disks(&store, "n2-hdd-claim", "n2", &["/dev/sdb", "/dev/sdc"]).await?;
    wait_pool(&store, "n1").await;
    wait_pool(&store, "n2").await;

    for (name, node) in [("pvc-s1", "n1"), ("pvc-s2", "n2")] {
        let mut lv = volume(name, GIB);
        lv.spec.striped = true;
        lv.spec.accessibility.nodes = vec![node.to_owned()];
        store.all::<LocalVolume>().create(&lv).await?;
    }
    for name in ["pvc-s1", "pvc-s2"] {
        wait_for(30, "striped volume ready", || async {
            lv_state(&store, name)
                .await?
                .status
                .filter(|s| s.state == VolumeState::Ready)
        })
        .await;
    }
    let r1 = replicas_of(&store, "pvc-s1").await;
    assert_eq!(r1.len(), 1);
    assert!(r1[0].spec.striped, "replica spec carries striped");
    assert_eq!(r1[0].spec.node_name, "n1");
    let opts = lvm.create_opts.lock().unwrap().clone();
    assert_eq!(opts.len(), 1);
    assert_eq!(opts[0].0, "pvc-s1");
    assert!(opts[0].1.striped, "lvm engine asked to stripe");
    assert!(
        r1[0]
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.type_ != CONDITION_STRIPED)
    );

    // File engine: created linear, and the replica says why.
    let r2 = replicas_of(&store, "pvc-s2").await;
    assert!(r2[0].spec.striped);
    let opts = file.create_opts.lock().unwrap().clone();
    assert_eq!(opts.len(), 1);
    assert!(!opts[0].1.striped, "file engine gets a linear request");
    let cond = r2[0]
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_STRIPED)
        .cloned()
        .expect("Striped condition on the file-engine replica");
    assert_eq!(cond.status, "False");
    assert_eq!(cond.reason, "StripingUnavailable");
    run.stop().await;
    Ok(())
}
