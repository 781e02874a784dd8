//! Tier 0: LocalVolume `status.message` / conditions written by the cluster controller: a
//! placement failure says why, and a deletion is held back while the volume has snapshots.

mod volume_common;

use std::sync::Arc;

use hwameistor_api::types::VolumeState;
use hwameistor_api::{
    LocalVolume, LocalVolumeReplica, LocalVolumeSnapshot, LocalVolumeSnapshotSpec,
};
use hwameistor_controllers::volume;
use hwameistor_engine::SharedEngine;
use hwameistor_exec::TokioRunner;
use hwameistor_store::Store;
use k8s_openapi::api::core::v1::Event as KubeEvent;
use kube::api::ObjectMeta;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use volume_common::fake_engine::FakeEngine;
use volume_common::*;

fn start(store: &Store, engine: Arc<FakeEngine>) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let engine: SharedEngine = engine;
    tokio::spawn(volume::run_node_agent(
        agent_cfg("n1"),
        store.clone(),
        engine,
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    tokio::spawn(volume::run_cluster_controllers(
        cluster_cfg(),
        store.clone(),
        shutdown.clone(),
    ));
    shutdown
}

async fn lv(store: &Store, name: &str) -> Option<LocalVolume> {
    store.all::<LocalVolume>().get_opt(name).await.unwrap()
}

async fn ready_pool(store: &Store) {
    claim_disks(store, "n1-claim", "n1", &["/dev/sdb"])
        .await
        .unwrap();
    wait_for(30, "pool reported", || async {
        let lsn = store
            .all::<hwameistor_api::LocalStorageNode>()
            .get_opt("n1")
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

fn condition<'a>(
    v: &'a LocalVolume,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    v.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_failure_is_in_the_volume_status() {
    let (_dir, store) = temp_store();
    let stop = start(&store, Arc::new(FakeEngine::new(10 * GIB)));
    ready_pool(&store).await;

    store
        .all::<LocalVolume>()
        .create(&volume("too-big", 50 * GIB))
        .await
        .unwrap();
    let v = wait_for(30, "placement message", || async {
        lv(&store, "too-big")
            .await
            .filter(|v| v.status.as_ref().is_some_and(|s| !s.message.is_empty()))
    })
    .await;
    let msg = v.status.as_ref().unwrap().message.clone();
    assert!(
        msg.starts_with("no pool of class HDD on any node has 50Gi free (1 replica(s)); largest free: 10Gi on n1"),
        "{msg}"
    );
    let c = condition(&v, "Scheduled").expect("Scheduled condition");
    assert_eq!(c.status, "False");
    assert_eq!(c.reason, "Unschedulable");
    // The Event is recorded after the status write: wait for it as well.
    let ev = wait_for(30, "Unschedulable event", || async {
        store
            .namespaced::<KubeEvent>("default")
            .get("too-big.unschedulable")
            .await
            .ok()
    })
    .await;
    assert_eq!(ev.type_.as_deref(), Some("Warning"));

    // Shrinking the request (the admin's fix) places it and clears the message.
    store
        .all::<LocalVolume>()
        .patch("too-big", &json!({"spec": {"requiredCapacityBytes": GIB}}))
        .await
        .unwrap();
    let v = wait_for(30, "placed", || async {
        lv(&store, "too-big").await.filter(|v| {
            v.status
                .as_ref()
                .is_some_and(|s| s.state == VolumeState::Ready)
        })
    })
    .await;
    assert_eq!(v.status.as_ref().unwrap().message, "");
    assert_eq!(condition(&v, "Scheduled").unwrap().status, "True");

    // A class no node has.
    let mut ssd = volume("ssd", GIB);
    ssd.spec.pool_name = "LocalStorage_PoolSSD".into();
    store.all::<LocalVolume>().create(&ssd).await.unwrap();
    let v = wait_for(30, "ssd message", || async {
        lv(&store, "ssd")
            .await
            .filter(|v| v.status.as_ref().is_some_and(|s| !s.message.is_empty()))
    })
    .await;
    let msg = &v.status.as_ref().unwrap().message;
    assert!(
        msg.starts_with("no ready node has a pool of class SSD"),
        "{msg}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_for_the_snapshots() {
    let (_dir, store) = temp_store();
    let stop = start(&store, Arc::new(FakeEngine::new(10 * GIB)));
    ready_pool(&store).await;
    store
        .all::<LocalVolume>()
        .create(&volume("pvc-1", GIB))
        .await
        .unwrap();
    wait_for(30, "pvc-1 Ready", || async {
        lv(&store, "pvc-1").await.filter(|v| {
            v.status
                .as_ref()
                .is_some_and(|s| s.state == VolumeState::Ready)
        })
    })
    .await;
    // The volume controller only looks at the snapshot objects.
    let snap = LocalVolumeSnapshot {
        metadata: ObjectMeta {
            name: Some("snap-1".into()),
            ..Default::default()
        },
        spec: LocalVolumeSnapshotSpec {
            source_volume: "pvc-1".into(),
            required_capacity_bytes: GIB as i64,
            ..Default::default()
        },
        status: None,
    };
    store
        .all::<LocalVolumeSnapshot>()
        .create(&snap)
        .await
        .unwrap();

    store
        .all::<LocalVolume>()
        .patch("pvc-1", &json!({"spec": {"delete": true}}))
        .await
        .unwrap();
    let v = wait_for(30, "deletion blocked", || async {
        lv(&store, "pvc-1")
            .await
            .filter(|v| condition(v, "DeleteBlocked").is_some_and(|c| c.status == "True"))
    })
    .await;
    let st = v.status.as_ref().unwrap();
    assert!(
        st.message.starts_with(
            "deletion blocked: volume pvc-1 has 1 snapshot(s): snap-1; delete them first"
        ),
        "{}",
        st.message
    );
    assert_eq!(st.state, VolumeState::Ready, "the volume stays usable");
    assert_eq!(
        condition(&v, "DeleteBlocked").unwrap().reason,
        "HasSnapshots"
    );
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let replicas: Vec<LocalVolumeReplica> = store
        .all::<LocalVolumeReplica>()
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert!(
        replicas
            .iter()
            .all(|r| r.spec.volume_name != "pvc-1" || !r.spec.delete),
        "no replica of a volume with snapshots is deleted"
    );

    // The snapshot on its way out: the message says what it waits for.
    store
        .all::<LocalVolumeSnapshot>()
        .patch("snap-1", &json!({"spec": {"delete": true}}))
        .await
        .unwrap();
    wait_for(30, "waiting message", || async {
        lv(&store, "pvc-1").await.filter(|v| {
            condition(v, "DeleteBlocked").is_some_and(|c| c.reason == "SnapshotsDeleting")
        })
    })
    .await;
    // Gone: the deletion proceeds and the volume is removed.
    store
        .all::<LocalVolumeSnapshot>()
        .delete("snap-1")
        .await
        .unwrap();
    wait_for(30, "pvc-1 removed", || async {
        lv(&store, "pvc-1").await.is_none().then_some(())
    })
    .await;
    stop.cancel();
}
