//! Reconcilers over the EmbeddedStore with a fake discovery source.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hwameistor_api::{
    DiskActionRule, DiskClaimDescription, LocalDisk, LocalDiskAction, LocalDiskActionSpec,
    LocalDiskClaim, LocalDiskClaimSpec, LocalDiskNode,
};
use hwameistor_core::disk::{BlockDevice, PartitionFacts};
use hwameistor_core::types::{
    ClaimPhase, DiskActionType, DiskClaimState, DiskOwner, DiskType, LocalDiskState, NodeState,
    SmartHealth,
};
use hwameistor_disk::{DiscoveredDisk, DiscoverySource, SmartReport};
use hwameistor_store::{EmbeddedStore, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::cluster::{ClusterCtx, check_liveness};
use super::node::{DiskNodeConfig, NodeDisks};
use super::*;

const NODE: &str = "node1";
const GIB: u64 = 1 << 30;

#[derive(Debug, Default)]
struct FakeSource {
    disks: Mutex<Vec<BlockDevice>>,
    smart: Mutex<Option<SmartReport>>,
}

impl FakeSource {
    fn set(&self, disks: Vec<BlockDevice>) {
        *self.disks.lock().unwrap() = disks;
    }
}

#[async_trait]
impl DiscoverySource for FakeSource {
    async fn scan(&self) -> hwameistor_disk::Result<Vec<DiscoveredDisk>> {
        Ok(self
            .disks
            .lock()
            .unwrap()
            .iter()
            .filter_map(|d| DiscoveredDisk::from_device(d.clone(), NODE))
            .collect())
    }
    fn fingerprint(&self) -> hwameistor_disk::Result<String> {
        Ok(self
            .disks
            .lock()
            .unwrap()
            .iter()
            .map(|d| format!("{}:{:?}:{:?};", d.dev_path, d.fs_type, d.loop_backing_file))
            .collect())
    }
    async fn smart(&self, dev_path: &str) -> hwameistor_disk::Result<SmartReport> {
        Ok(self.smart.lock().unwrap().clone().unwrap_or(SmartReport {
            device: dev_path.into(),
            ..Default::default()
        }))
    }
}

fn disk(kname: &str, serial: &str, rotational: bool, size: u64) -> BlockDevice {
    BlockDevice {
        kernel_name: kname.into(),
        dev_path: format!("/dev/{kname}"),
        major: 8,
        minor: 0,
        sys_path: format!(
            "/sys/devices/pci0000:00/0000:00:05.0/host0/target0:0:0/0:0:0:0/block/{kname}"
        ),
        devtype: "disk".into(),
        size_bytes: size,
        rotational: Some(rotational),
        bus: Some("scsi".into()),
        vendor: Some("QEMU".into()),
        serial: Some(serial.into()),
        ..Default::default()
    }
}

fn store() -> Store {
    Store::from(EmbeddedStore::in_memory().unwrap())
}

fn node_cfg() -> DiskNodeConfig {
    let mut c = DiskNodeConfig::new(NODE);
    c.poll_interval = Duration::from_millis(100);
    c.heartbeat_interval = Duration::from_millis(200);
    c.smart_interval = None;
    c.uevents = false;
    c
}

fn agent(store: &Store, source: Arc<FakeSource>) -> NodeDisks {
    NodeDisks {
        cfg: node_cfg(),
        store: store.clone(),
        source,
    }
}

async fn all_disks(store: &Store) -> Vec<LocalDisk> {
    ops::list_disks(store, None).await.unwrap()
}

async fn by_serial(store: &Store, serial: &str) -> LocalDisk {
    all_disks(store)
        .await
        .into_iter()
        .find(|d| {
            d.spec
                .disk_attributes
                .as_ref()
                .map(|a| a.serial_number.as_str())
                == Some(serial)
        })
        .unwrap_or_else(|| panic!("no disk with serial {serial}"))
}

fn phase(ld: &LocalDisk) -> DiskClaimState {
    ld.status
        .as_ref()
        .map(|s| s.claim_state)
        .unwrap_or_default()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn zoo() -> Vec<BlockDevice> {
    let blank_ssd = disk("sdb", "ssd-1", false, 100 * GIB);
    let blank_hdd = disk("sdc", "hdd-1", true, 200 * GIB);
    let ext4 = BlockDevice {
        fs_type: Some("ext4".into()),
        ..disk("sdd", "ext4-1", true, 50 * GIB)
    };
    let system = BlockDevice {
        partition_table: Some("gpt".into()),
        partitions: vec![PartitionFacts {
            path: "/dev/sda1".into(),
            fs_type: Some("ext4".into()),
            mount_point: Some("/".into()),
        }],
        mount_points: vec!["/".into()],
        ..disk("sda", "sys-1", false, 40 * GIB)
    };
    vec![blank_ssd, blank_hdd, ext4, system]
}

#[tokio::test]
async fn discovery_creates_protected_local_disks() {
    let store = store();
    let src = Arc::new(FakeSource::default());
    src.set(zoo());
    let a = agent(&store, src.clone());
    a.register().await.unwrap();
    a.full_pass(&mut None, true).await.unwrap();
    let disks = all_disks(&store).await;
    assert_eq!(disks.len(), 4);
    for d in &disks {
        assert!(
            d.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("localdisk-")
        );
        assert_eq!(d.spec.node_name, NODE);
        assert_eq!(d.spec.state, Some(LocalDiskState::Active));
    }
    let ssd = by_serial(&store, "ssd-1").await;
    assert!(!ssd.spec.reserved && !ssd.spec.partitioned);
    assert_eq!(ssd.spec.capacity, (100 * GIB) as i64);
    assert_eq!(
        ssd.spec.disk_attributes.as_ref().unwrap().disk_type,
        Some(DiskType::SSD)
    );
    assert_eq!(ssd.spec.owner, DiskOwner::Unknown);
    let ext4 = by_serial(&store, "ext4-1").await;
    assert!(
        ext4.spec.reserved && ext4.spec.partitioned,
        "a disk with data waits for the admin"
    );
    assert_eq!(
        ext4.spec.partition_info[0]
            .filesystem
            .as_ref()
            .unwrap()
            .fs_type,
        "ext4"
    );
    assert!(ext4.metadata.annotations.as_ref().unwrap()[ANNOTATION_HAZARDS].contains("ext4"));
    let sys = by_serial(&store, "sys-1").await;
    assert!(sys.spec.reserved);
    assert_eq!(sys.spec.owner, DiskOwner::System);
    assert!(
        sys.metadata.annotations.as_ref().unwrap()[ANNOTATION_HAZARDS].contains("root filesystem")
    );

    // a second pass with nothing new writes nothing
    let rv = ssd.metadata.resource_version.clone();
    a.full_pass(&mut None, false).await.unwrap();
    assert_eq!(
        by_serial(&store, "ssd-1").await.metadata.resource_version,
        rv
    );
}

#[tokio::test]
async fn removed_disk_goes_inactive_and_returns_under_its_name() {
    let store = store();
    let src = Arc::new(FakeSource::default());
    src.set(zoo());
    let a = agent(&store, src.clone());
    a.full_pass(&mut None, true).await.unwrap();
    let before = by_serial(&store, "hdd-1").await;

    src.set(
        zoo()
            .into_iter()
            .filter(|d| d.kernel_name != "sdc")
            .collect(),
    );
    a.full_pass(&mut None, false).await.unwrap();
    let gone = by_serial(&store, "hdd-1").await;
    assert_eq!(gone.spec.state, Some(LocalDiskState::Inactive));
    assert_eq!(gone.spec.device_path, "");
    assert_eq!(gone.spec.node_name, "");
    assert_eq!(gone.spec.pre_device_path, "/dev/sdc");
    assert_eq!(gone.spec.pre_node_name, NODE);
    assert_eq!(
        ops::list_disks(&store, Some(NODE)).await.unwrap().len(),
        4,
        "inactive disks still listed by node"
    );

    // back on another port under another kernel name
    let mut moved = zoo();
    for d in &mut moved {
        if d.kernel_name == "sdc" {
            d.kernel_name = "sdq".into();
            d.dev_path = "/dev/sdq".into();
        }
    }
    src.set(moved);
    a.full_pass(&mut None, false).await.unwrap();
    let back = by_serial(&store, "hdd-1").await;
    assert_eq!(back.metadata.name, before.metadata.name);
    assert_eq!(back.spec.state, Some(LocalDiskState::Active));
    assert_eq!(back.spec.device_path, "/dev/sdq");
    assert_eq!(back.spec.pre_device_path, "/dev/sdc");
    assert_eq!(back.spec.node_name, NODE);
}

#[tokio::test]
async fn admin_type_and_reserve_survive_rediscovery_and_system_disk_is_reserved_at_start() {
    let store = store();
    let src = Arc::new(FakeSource::default());
    src.set(zoo());
    let a = agent(&store, src.clone());
    a.full_pass(&mut None, true).await.unwrap();
    let hdd = by_serial(&store, "hdd-1").await;
    let name = hdd.metadata.name.clone().unwrap();
    store
        .all::<LocalDisk>()
        .patch(&name, &json!({"spec": {"diskAttributes": {"type": "SSD"}}}))
        .await
        .unwrap();
    ops::reserve_disk(&store, &name, true).await.unwrap();
    // an admin unreserves the system disk; a later pass keeps that, a restart re-reserves it
    let sys = by_serial(&store, "sys-1").await.metadata.name.unwrap();
    ops::reserve_disk(&store, &sys, false).await.unwrap();
    a.full_pass(&mut None, false).await.unwrap();
    let hdd = by_serial(&store, "hdd-1").await;
    assert_eq!(
        hdd.spec.disk_attributes.as_ref().unwrap().disk_type,
        Some(DiskType::SSD)
    );
    assert!(hdd.spec.reserved);
    assert!(!by_serial(&store, "sys-1").await.spec.reserved);
    a.full_pass(&mut None, true).await.unwrap();
    assert!(by_serial(&store, "sys-1").await.spec.reserved);
    ops::reserve_disk(&store, &name, false).await.unwrap();
    assert!(!ops::get_disk(&store, &name).await.unwrap().spec.reserved);
}

fn cluster_cfg() -> DiskClusterConfig {
    DiskClusterConfig {
        offline_after: Duration::from_secs(2),
        liveness_interval: Duration::from_millis(200),
        claim_retry: Duration::from_millis(200),
    }
}

fn claim(name: &str, owner: DiskOwner, t: Option<DiskType>) -> LocalDiskClaim {
    LocalDiskClaim::new(
        name,
        LocalDiskClaimSpec {
            node_name: NODE.into(),
            owner,
            description: DiskClaimDescription {
                disk_type: t,
                ..Default::default()
            },
            disk_refs: vec![],
        },
    )
}

async fn claim_phase(store: &Store, name: &str) -> Option<ClaimPhase> {
    store
        .all::<LocalDiskClaim>()
        .get_opt(name)
        .await
        .unwrap()
        .map(|c| c.status.map(|s| s.status).unwrap_or_default())
}

#[tokio::test]
async fn phases_claims_and_rejection_reasons() {
    let store = store();
    let src = Arc::new(FakeSource::default());
    src.set(zoo());
    let a = agent(&store, src.clone());
    a.full_pass(&mut None, true).await.unwrap();
    let shutdown = CancellationToken::new();
    let cluster = tokio::spawn(run_cluster(cluster_cfg(), store.clone(), shutdown.clone()));

    let s = store.clone();
    eventually("phases settle", || {
        let s = s.clone();
        async move {
            let ssd = by_serial(&s, "ssd-1").await;
            let ext4 = by_serial(&s, "ext4-1").await;
            phase(&ssd) == DiskClaimState::Available && phase(&ext4) == DiskClaimState::Bound
        }
    })
    .await;

    // an NVMe claim matches nothing: the claim says why, disk by disk
    store
        .all::<LocalDiskClaim>()
        .create(&claim(
            "nvme-claim",
            DiskOwner::LocalStorage,
            Some(DiskType::NVMe),
        ))
        .await
        .unwrap();
    let s = store.clone();
    eventually("rejections recorded", || {
        let s = s.clone();
        async move {
            let c = s.all::<LocalDiskClaim>().get("nvme-claim").await.unwrap();
            c.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_REJECTED))
        }
    })
    .await;
    let c = store
        .all::<LocalDiskClaim>()
        .get("nvme-claim")
        .await
        .unwrap();
    assert_eq!(c.status.unwrap().status, ClaimPhase::Pending);
    let rej: std::collections::BTreeMap<String, Vec<String>> =
        serde_json::from_str(&c.metadata.annotations.unwrap()[ANNOTATION_REJECTED]).unwrap();
    assert_eq!(rej.len(), 4);
    let ssd_name = by_serial(&store, "ssd-1").await.metadata.name.unwrap();
    assert_eq!(
        rej[&ssd_name],
        vec!["LocalDiskTypeUnMatch: type is SSD".to_string()]
    );
    let ext4_name = by_serial(&store, "ext4-1").await.metadata.name.unwrap();
    assert!(
        rej[&ext4_name]
            .iter()
            .any(|r| r.starts_with("LocalDiskHasReserved"))
    );
    assert!(
        rej[&ext4_name]
            .iter()
            .any(|r| r.starts_with("LocalDiskAlreadyHasPartition"))
    );
    let events = store.namespaced::<k8s_openapi::api::core::v1::Event>(EVENT_NAMESPACE);
    let ev = events.get("nvme-claim.nomatchingdisk").await.unwrap();
    assert!(ev.message.unwrap().contains("LocalDiskTypeUnMatch"));

    // the seed's "LVM 节点扩展": claim SSD for local-storage → the blank SSD is bound
    store
        .all::<LocalDiskClaim>()
        .create(&claim(
            "ssd-claim",
            DiskOwner::LocalStorage,
            Some(DiskType::SSD),
        ))
        .await
        .unwrap();
    let s = store.clone();
    eventually("claim bound", || {
        let s = s.clone();
        async move { claim_phase(&s, "ssd-claim").await == Some(ClaimPhase::Bound) }
    })
    .await;
    let c = store
        .all::<LocalDiskClaim>()
        .get("ssd-claim")
        .await
        .unwrap();
    assert_eq!(c.spec.disk_refs.len(), 1);
    assert_eq!(c.spec.disk_refs[0].name.as_deref(), Some(ssd_name.as_str()));
    let ssd = by_serial(&store, "ssd-1").await;
    assert_eq!(phase(&ssd), DiskClaimState::Bound);
    assert_eq!(ssd.spec.owner, DiskOwner::LocalStorage);
    assert_eq!(
        ssd.spec.claim_ref.as_ref().unwrap().name.as_deref(),
        Some("ssd-claim")
    );

    // the consumer (the LVM node agent) marks it Consumed; the claim is then cleaned up
    store
        .all::<LocalDiskClaim>()
        .patch_status("ssd-claim", &json!({"status": {"status": "Consumed"}}))
        .await
        .unwrap();
    let s = store.clone();
    eventually("consumed claim deleted", || {
        let s = s.clone();
        async move { claim_phase(&s, "ssd-claim").await.is_none() }
    })
    .await;
    assert_eq!(
        phase(&by_serial(&store, "ssd-1").await),
        DiskClaimState::Bound,
        "the disk stays in its pool"
    );

    // releasing the disk (claimRef removed) makes it Available again
    store
        .all::<LocalDisk>()
        .patch(&ssd_name, &json!({"spec": {"claimRef": null}}))
        .await
        .unwrap();
    let s = store.clone();
    eventually("released", || {
        let s = s.clone();
        async move { phase(&by_serial(&s, "ssd-1").await) == DiskClaimState::Available }
    })
    .await;
    shutdown.cancel();
    cluster.await.unwrap().unwrap();
}

#[tokio::test]
async fn disk_actions_reserve_matching_disks() {
    let store = store();
    let src = Arc::new(FakeSource::default());
    src.set(zoo());
    agent(&store, src.clone())
        .full_pass(&mut None, true)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let cluster = tokio::spawn(run_cluster(cluster_cfg(), store.clone(), shutdown.clone()));
    // reserve disks smaller than 150 GiB among /dev/sd[b-c]: only the 100 GiB sdb
    let lda = LocalDiskAction::new(
        "reserve-small",
        LocalDiskActionSpec {
            action: DiskActionType::Reserve,
            rule: DiskActionRule {
                min_capacity: (150 * GIB) as i64,
                max_capacity: 0,
                device_path: "/dev/sd[b-c]".into(),
            },
        },
    );
    store.all::<LocalDiskAction>().create(&lda).await.unwrap();
    let s = store.clone();
    eventually("sdb reserved", || {
        let s = s.clone();
        async move { by_serial(&s, "ssd-1").await.spec.reserved }
    })
    .await;
    assert!(!by_serial(&store, "hdd-1").await.spec.reserved);
    let st = store
        .all::<LocalDiskAction>()
        .get("reserve-small")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        st.latest_matched_lds,
        vec![by_serial(&store, "ssd-1").await.metadata.name.unwrap()]
    );
    // a disk plugged in later is matched too
    let mut more = zoo();
    more.push(disk("sdc1x", "late-1", false, 10 * GIB));
    more.last_mut().unwrap().dev_path = "/dev/sdc".into();
    more.retain(|d| d.kernel_name != "sdc");
    src.set(more);
    agent(&store, src.clone())
        .full_pass(&mut None, false)
        .await
        .unwrap();
    let s = store.clone();
    eventually("late disk reserved", || {
        let s = s.clone();
        async move { by_serial(&s, "late-1").await.spec.reserved }
    })
    .await;
    shutdown.cancel();
    cluster.await.unwrap().unwrap();
}

#[tokio::test]
async fn raw_disk_pool_from_a_local_disk_manager_claim() {
    let store = store();
    let src = Arc::new(FakeSource::default());
    src.set(zoo());
    *src.smart.lock().unwrap() = Some(SmartReport {
        supported: true,
        health: SmartHealth::Passed,
        temperature_celsius: Some(33),
        ..Default::default()
    });
    let pool_root = tempfile::tempdir().unwrap();
    let mut cfg = node_cfg();
    cfg.pool_root = Some(pool_root.path().to_path_buf());
    let shutdown = CancellationToken::new();
    let node = tokio::spawn(run_node_with(
        cfg,
        store.clone(),
        src.clone(),
        None,
        shutdown.clone(),
    ));
    let cluster = tokio::spawn(run_cluster(cluster_cfg(), store.clone(), shutdown.clone()));
    let s = store.clone();
    eventually("node Ready", || {
        let s = s.clone();
        async move {
            s.all::<LocalDiskNode>()
                .get_opt(NODE)
                .await
                .unwrap()
                .and_then(|n| n.status)
                .map(|st| st.state)
                == Some(NodeState::Ready)
        }
    })
    .await;
    let s = store.clone();
    eventually("ssd available", || {
        let s = s.clone();
        async move { phase(&by_serial(&s, "ssd-1").await) == DiskClaimState::Available }
    })
    .await;
    // the seed's "裸磁盘节点扩容": set the owner, then claim for local-disk-manager
    let ssd_name = by_serial(&store, "ssd-1").await.metadata.name.unwrap();
    ops::set_disk_owner(&store, &ssd_name, DiskOwner::LocalDiskManager)
        .await
        .unwrap();
    store
        .all::<LocalDiskClaim>()
        .create(&claim(
            "k8s-worker-2",
            DiskOwner::LocalDiskManager,
            Some(DiskType::SSD),
        ))
        .await
        .unwrap();
    let s = store.clone();
    eventually("claim consumed and deleted", || {
        let s = s.clone();
        async move { claim_phase(&s, "k8s-worker-2").await.is_none() }
    })
    .await;
    let ldn = store.all::<LocalDiskNode>().get(NODE).await.unwrap();
    let st = ldn.status.unwrap();
    let pool = &st.pools["LocalDisk_PoolSSD"];
    assert_eq!(pool.total_capacity_bytes, (100 * GIB) as i64);
    assert_eq!(pool.free_capacity_bytes, (100 * GIB) as i64);
    assert_eq!(pool.total_volume_count, 1);
    assert_eq!(pool.volume_capacity_bytes_limit, (100 * GIB) as i64);
    assert_eq!(pool.disks[0].dev_path, "/dev/sdb");
    assert_eq!(
        pool.disks[0].state,
        hwameistor_core::types::DiskState::Available
    );
    assert_eq!((st.total_disk, st.free_disk), (1, 1));
    assert_eq!(st.pool_extend_records["LocalDisk_PoolSSD"].len(), 1);
    let link = pool_root
        .path()
        .join("LocalDisk_PoolSSD/disk")
        .join(&ssd_name);
    assert_eq!(
        std::fs::read_link(link).unwrap(),
        std::path::PathBuf::from("/dev/sdb")
    );
    // the owner cannot be changed while the disk is claimed
    assert!(
        ops::set_disk_owner(&store, &ssd_name, DiskOwner::LocalStorage)
            .await
            .is_err()
    );

    // SMART on request
    ops::request_smart_check(&store, &ssd_name).await.unwrap();
    let s = store.clone();
    let n = ssd_name.clone();
    eventually("smart collected", || {
        let s = s.clone();
        let n = n.clone();
        async move {
            let d = ops::get_disk(&s, &n).await.unwrap();
            d.spec.smart_info.map(|i| i.overall_health) == Some(SmartHealth::Passed)
                && !d
                    .metadata
                    .annotations
                    .as_ref()
                    .unwrap()
                    .contains_key(ANNOTATION_SMART_REQUEST)
        }
    })
    .await;
    let d = ops::get_disk(&store, &ssd_name).await.unwrap();
    assert!(d.spec.support_smart);
    assert!(
        d.metadata.annotations.unwrap()[ANNOTATION_SMART].contains("\"temperatureCelsius\":33")
    );

    // hot-unplug seen by the polling loop within 2 s
    let t0 = std::time::Instant::now();
    src.set(
        zoo()
            .into_iter()
            .filter(|d| d.kernel_name != "sdb")
            .collect(),
    );
    let s = store.clone();
    eventually("unplugged disk inactive", || {
        let s = s.clone();
        async move { by_serial(&s, "ssd-1").await.spec.state == Some(LocalDiskState::Inactive) }
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );

    // node agent stops: heartbeat ages, node goes Offline
    shutdown.cancel();
    node.await.unwrap().unwrap();
    cluster.await.unwrap().unwrap();
    store
        .all::<LocalDiskNode>()
        .patch(
            NODE,
            &json!({"metadata": {"annotations": {ANNOTATION_HEARTBEAT: "2020-01-01T00:00:00Z"}}}),
        )
        .await
        .unwrap();
    let ctx = ClusterCtx {
        cfg: cluster_cfg(),
        store: store.clone(),
    };
    check_liveness(&ctx).await.unwrap();
    assert_eq!(
        store
            .all::<LocalDiskNode>()
            .get(NODE)
            .await
            .unwrap()
            .status
            .unwrap()
            .state,
        NodeState::Offline
    );
}

#[tokio::test]
async fn a_disk_moved_to_another_node_keeps_its_name_and_records_the_old_node() {
    let store = store();
    let src1 = Arc::new(FakeSource::default());
    src1.set(zoo());
    agent(&store, src1.clone())
        .full_pass(&mut None, true)
        .await
        .unwrap();
    let before = by_serial(&store, "hdd-1").await;
    // node2 now has the disk (at another path); node1 no longer sees it
    let src2 = Arc::new(FakeSource::default());
    let mut d = disk("sdz", "hdd-1", true, 200 * GIB);
    d.dev_path = "/dev/sdz".into();
    src2.set(vec![d]);
    let mut a2 = agent(&store, src2);
    a2.cfg.node_name = "node2".into();
    a2.full_pass(&mut None, true).await.unwrap();
    src1.set(
        zoo()
            .into_iter()
            .filter(|d| d.kernel_name != "sdc")
            .collect(),
    );
    agent(&store, src1)
        .full_pass(&mut None, false)
        .await
        .unwrap();
    let after = by_serial(&store, "hdd-1").await;
    assert_eq!(after.metadata.name, before.metadata.name);
    assert_eq!(after.spec.node_name, "node2");
    assert_eq!(after.spec.pre_node_name, NODE);
    assert_eq!(after.spec.device_path, "/dev/sdz");
    assert_eq!(after.spec.pre_device_path, "/dev/sdc");
    assert_eq!(
        after.spec.state,
        Some(LocalDiskState::Active),
        "node1 does not inactivate a disk now on node2"
    );
}
