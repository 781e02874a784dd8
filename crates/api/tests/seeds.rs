//! Example objects from the user manual (seed 004) deserialize into our types.
//!
//! The manual's YAML lost its indentation in places; the examples below are the same objects
//! with indentation restored and nothing else changed.

use hwameistor_api::types::{
    ConditionStatus, DiskOwner, DiskState, DiskType, NodeState, PoolClass, PoolType, RestoreType,
    StorageNodeConditionType,
};
use hwameistor_api::{
    LocalDisk, LocalDiskClaim, LocalDiskNode, LocalStorageNode, LocalVolumeMigrate,
    LocalVolumeSnapshotRestore, ResizePolicy,
};

/// `kubectl get lsn 10-6-234-41 -o yaml` (uses the correct `topology` spelling).
const LSN_10_6_234_41: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalStorageNode
metadata:
  creationTimestamp: "2023-04-11T06:46:52Z"
  generation: 1
  name: 10-6-234-41
  resourceVersion: "13575433"
  uid: 4986f7b8-6fe1-43f1-bdca-e68b6fa53f92
spec:
  hostname: 10-6-234-41
  storageIP: 10.6.234.41
  topology:
    region: default
    zone: default
status:
  pools:
    LocalStorage_PoolHDD:
      class: HDD
      disks:
      - capacityBytes: 10733223936
        devPath: /dev/sdb
        state: InUse
        type: HDD
      - capacityBytes: 1069547520
        devPath: /dev/sdc
        state: InUse
        type: HDD
      - capacityBytes: 1069547520
        devPath: /dev/sdd
        state: InUse
        type: HDD
      - capacityBytes: 1069547520
        devPath: /dev/sde
        state: InUse
        type: HDD
      - capacityBytes: 1069547520
        devPath: /dev/sdf
        state: InUse
        type: HDD
      - capacityBytes: 1069547520
        devPath: /dev/sdg
        state: InUse
        type: HDD
      freeCapacityBytes: 16080961536
      freeVolumeCount: 1000
      name: LocalStorage_PoolHDD
      totalCapacityBytes: 16080961536
      totalVolumeCount: 1000
      type: REGULAR
      usedCapacityBytes: 0
      usedVolumeCount: 0
      volumeCapacityBytesLimit: 16080961536
  state: Ready
"#;

/// `kubectl get localstoragenode k8s-worker-4 -o yaml` (original `topogoly` spelling,
/// empty `volumes:`).
const LSN_K8S_WORKER_4: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalStorageNode
metadata:
  name: k8s-worker-4
spec:
  hostname: k8s-worker-4
  storageIP: 10.6.182.103
  topogoly:
    region: default
    zone: default
status:
  pools:
    LocalStorage_PoolSSD:
      class: SSD
      disks:
      - capacityBytes: 214744170496
        devPath: /dev/sdb
        state: InUse
        type: SSD
      freeCapacityBytes: 214744170496
      freeVolumeCount: 1000
      name: LocalStorage_PoolSSD
      totalCapacityBytes: 214744170496
      totalVolumeCount: 1000
      type: REGULAR
      usedCapacityBytes: 0
      usedVolumeCount: 0
      volumeCapacityBytesLimit: 214744170496
      volumes:
  state: Ready
"#;

/// `kubectl get LocalStorageNode k8s-node-1 -o yaml` after a drain.
const LSN_K8S_NODE_1: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalStorageNode
metadata:
  creationTimestamp: "2022-10-11T07:41:58Z"
  generation: 1
  name: k8s-node-1
  resourceVersion: "6402198"
  uid: c71cc6ac-566a-4e0b-8687-69679b07471f
spec:
  hostname: k8s-node-1
  storageIP: 10.6.113.22
  topogoly:
    region: default
    zone: default
status:
  pools:
    LocalStorage_PoolHDD:
      class: HDD
      disks:
      - capacityBytes: 17175674880
        devPath: /dev/sdb
        state: InUse
        type: HDD
      freeCapacityBytes: 16101933056
      freeVolumeCount: 999
      name: LocalStorage_PoolHDD
      totalCapacityBytes: 17175674880
      totalVolumeCount: 1000
      type: REGULAR
      usedCapacityBytes: 1073741824
      usedVolumeCount: 1
      volumeCapacityBytesLimit: 17175674880
      volumes:
  state: Ready
"#;

/// FAQ: a LocalStorageNode with an ExpandFailure condition.
const LSN_G_MASTER1: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalStorageNode
metadata:
  creationTimestamp: "2023-08-28T06:15:50Z"
  generation: 1
  name: g-master1
  resourceVersion: "24169"
  uid: b71f44d1-9b60-4a38-80ba-832181b2f6f3
spec:
  hostname: g-master1
  storageIP: 172.19.49.183
  topology:
    region: default
    zone: default
status:
  conditions:
  - lastTransitionTime: "2023-08-28T07:20:37Z"
    lastUpdateTime: "2023-08-28T07:20:37Z"
    message: 'Failed to expand storage capacity, err: exit status 1'
    reason: StorageExpandFailure
    status: "True"
    type: ExpandFailure
  state: Ready
"#;

/// `kubectl get localdisknode k8s-worker-2 -o yaml`.
const LDN_K8S_WORKER_2: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalDiskNode
metadata:
  name: k8s-worker-2
spec:
  nodeName: k8s-worker-2
status:
  pools:
    LocalDisk_PoolSSD:
      class: SSD
      disks:
      - capacityBytes: 214744170496
        devPath: /dev/sdb
        state: Available
        type: SSD
      freeCapacityBytes: 214744170496
      freeVolumeCount: 1
      totalCapacityBytes: 214744170496
      totalVolumeCount: 1
      type: REGULAR
      usedCapacityBytes: 0
      usedVolumeCount: 0
      volumeCapacityBytesLimit: 214744170496
      volumes:
  state: Ready
"#;

const LDC_K8S_WORKER_4: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalDiskClaim
metadata:
  name: k8s-worker-4
spec:
  nodeName: k8s-worker-4
  owner: local-storage
  description:
    diskType: SSD # 可能需要根据节点磁盘实际情况调整为 HDD 或者 NVMe
"#;

const LDC_K8S_WORKER_2: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalDiskClaim
metadata:
  name: k8s-worker-2
spec:
  nodeName: k8s-worker-2
  owner: local-disk-manager
  description:
    diskType: SSD
"#;

/// The "data disk expansion" example omits `owner`; we accept it (owner "" = local-storage).
const LDC_WITHOUT_OWNER: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalDiskClaim
metadata:
  name: k8s-worker-4-expand
spec:
  nodeName: k8s-worker-4
  description:
    diskType: SSD
"#;

/// `kubectl edit ld k8s-worker-2-sdb` after adding the owner (old-style disk name).
const LD_K8S_WORKER_2_SDB: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalDisk
metadata:
  name: k8s-worker-2-sdb
spec:
  devicePath: /dev/sdb
  nodeName: k8s-worker-2
  owner: local-disk-manager
"#;

const LVMIGRATE: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalVolumeMigrate
metadata:
  name: migrate-pvc-6ca4c0d4-da10-4e2e-83b2-19cbf5c5e3e4
spec:
  sourceNode: k8s-node-1
  targetNodesSuggested:
  - k8s-node-2
  - k8s-node-3
  volumeName: pvc-6ca4c0d4-da10-4e2e-83b2-19cbf5c5e3e4
  migrateAllVols: true
"#;

/// Output of a 2022 release with fields that no longer exist (`sourceNodesNames`,
/// `targetNodesNames`, `status.replicaNumber`); the current API requires `sourceNode`.
const LVMIGRATE_2022: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalVolumeMigrate
metadata:
  creationTimestamp: "2022-07-07T12:34:31Z"
  generation: 1
  name: localvolumemigrate-1
  namespace: hwameistor
  resourceVersion: "12828637"
  uid: 78af7f1b-d701-4b03-84de-27fafca58764
spec:
  abort: false
  migrateAllVols: true
  sourceNodesNames:
  - dce-172-30-40-61
  targetNodesNames:
  - 172-30-45-223
  volumeName: pvc-1a0913ac-32b9-46fe-8258-39b4e3b696a4
status:
  replicaNumber: 1
  state: InProgress
"#;

const RESIZE_POLICY_1: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: ResizePolicy
metadata:
  name: resizepolicy1
spec:
  warningThreshold: 60
  resizeThreshold: 80
  nodePoolUsageLimit: 90
"#;

const RESIZE_POLICY_SELECTORS: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: ResizePolicy
metadata:
  name: example-policy
spec:
  warningThreshold: 60
  resizeThreshold: 80
  nodePoolUsageLimit: 90
  storageClassSelector:
    matchLabels:
      pvc-resize: auto
  namespaceSelector:
    matchLabels:
      pvc-resize: auto
  pvcSelector:
    matchLabels:
      pvc-resize: auto
"#;

const LVSRESTORE_ROLLBACK: &str = r#"
apiVersion: hwameistor.io/v1alpha1
kind: LocalVolumeSnapshotRestore
metadata:
  name: rollback-test
spec:
  sourceVolumeSnapshot: snapcontent-0fc17697-68ea-49ce-8e4c-7a791e315110 # 指定要进行回滚操作的本地卷快照
  restoreType: "rollback"
"#;

mod common;

/// The raw seed YAML is accepted by our CRD schema (nothing pruned, enums and ranges hold).
#[test]
fn seed_yaml_validates_against_our_crds() {
    let cases = [
        ("lsn", LSN_10_6_234_41),
        ("lsn", LSN_K8S_WORKER_4),
        ("lsn", LSN_K8S_NODE_1),
        ("lsn", LSN_G_MASTER1),
        ("ldn", LDN_K8S_WORKER_2),
        ("ldc", LDC_K8S_WORKER_4),
        ("ldc", LDC_K8S_WORKER_2),
        ("ld", LD_K8S_WORKER_2_SDB),
        ("lvmigrate", LVMIGRATE),
        ("resizepolicy", RESIZE_POLICY_1),
        ("resizepolicy", RESIZE_POLICY_SELECTORS),
        ("lvsrestore", LVSRESTORE_ROLLBACK),
    ];
    for (kind, yaml) in cases {
        let v: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
        let problems = common::problems(kind, &v);
        assert!(problems.is_empty(), "{kind}: {problems:?}\n{yaml}");
    }
    // The claim without an owner passes the schema (the seed's walkthrough applies it).
    let v: serde_json::Value = serde_yaml::from_str(LDC_WITHOUT_OWNER).unwrap();
    let problems = common::problems("ldc", &v);
    assert!(problems.is_empty(), "{problems:?}");
    // The 2022-era migrate example is rejected by our types and by the schema.
    let v: serde_json::Value = serde_yaml::from_str(LVMIGRATE_2022).unwrap();
    let p = common::problems("lvmigrate", &v).join("\n");
    assert!(
        p.contains("sourceNodesNames: not in schema") && p.contains("sourceNode"),
        "{p}"
    );
}

fn parse<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    match serde_yaml::from_str(yaml) {
        Ok(v) => v,
        Err(e) => panic!("seed example does not deserialize: {e}\n{yaml}"),
    }
}

#[test]
fn lsn_with_six_disk_hdd_pool() {
    let lsn: LocalStorageNode = parse(LSN_10_6_234_41);
    assert_eq!(lsn.metadata.name.as_deref(), Some("10-6-234-41"));
    assert_eq!(lsn.spec.storage_ip, "10.6.234.41");
    let topo = lsn
        .spec
        .topology
        .as_ref()
        .expect("`topology` spelling is accepted");
    assert_eq!(
        (topo.zone.as_str(), topo.region.as_str()),
        ("default", "default")
    );
    let status = lsn.status.as_ref().unwrap();
    assert_eq!(status.state, NodeState::Ready);
    let pool = status.pool(PoolClass::HDD).unwrap();
    assert_eq!(pool.class, PoolClass::HDD);
    assert_eq!(pool.pool_type, PoolType::REGULAR);
    assert_eq!(pool.disks.len(), 6);
    assert!(pool.disks.iter().all(|d| d.state == DiskState::InUse));
    assert_eq!(pool.disks[0].disk_type, Some(DiskType::HDD));
    assert_eq!(pool.disks[0].capacity_bytes, 10_733_223_936);
    assert_eq!(pool.free_capacity_bytes, 16_080_961_536);
    assert_eq!(pool.total_volume_count, 1000);
}

#[test]
fn lsn_with_original_topogoly_key_and_empty_volumes() {
    for yaml in [LSN_K8S_WORKER_4, LSN_K8S_NODE_1] {
        let lsn: LocalStorageNode = parse(yaml);
        assert!(lsn.spec.topology.is_some(), "`topogoly` is read");
        let pools = &lsn.status.as_ref().unwrap().pools;
        assert_eq!(pools.len(), 1);
        assert!(pools.values().all(|p| p.volumes.is_empty()));
    }
    let lsn: LocalStorageNode = parse(LSN_K8S_NODE_1);
    let pool = lsn.status.unwrap().pool(PoolClass::HDD).cloned().unwrap();
    assert_eq!(pool.free_volume_count, 999);
    assert_eq!(pool.used_capacity_bytes, 1_073_741_824);
}

#[test]
fn lsn_condition_from_faq() {
    let lsn: LocalStorageNode = parse(LSN_G_MASTER1);
    let cond = &lsn.status.as_ref().unwrap().conditions[0];
    assert_eq!(cond.type_, StorageNodeConditionType::ExpandFailure);
    assert_eq!(cond.status, ConditionStatus::True);
    assert_eq!(cond.reason, "StorageExpandFailure");
    assert!(cond.message.contains("exit status 1"));
    assert!(cond.last_update_time.is_some());
}

#[test]
fn ldn_with_disk_pool() {
    let ldn: LocalDiskNode = parse(LDN_K8S_WORKER_2);
    assert_eq!(ldn.spec.node_name, "k8s-worker-2");
    let status = ldn.status.unwrap();
    let pool = &status.pools[PoolClass::SSD.disk_pool_name()];
    assert_eq!(pool.disks[0].state, DiskState::Available);
    assert_eq!(pool.total_volume_count, 1);
    assert_eq!(status.state, NodeState::Ready);
}

#[test]
fn local_disk_claims() {
    let ldc: LocalDiskClaim = parse(LDC_K8S_WORKER_4);
    assert_eq!(ldc.spec.node_name, "k8s-worker-4");
    assert_eq!(ldc.spec.owner, DiskOwner::LocalStorage);
    assert_eq!(ldc.spec.description.disk_type, Some(DiskType::SSD));
    let ldc: LocalDiskClaim = parse(LDC_K8S_WORKER_2);
    assert_eq!(ldc.spec.owner, DiskOwner::LocalDiskManager);
}

#[test]
fn local_disk_claim_without_owner_is_accepted_as_local_storage() {
    let ldc: LocalDiskClaim = parse(LDC_WITHOUT_OWNER);
    assert_eq!(ldc.spec.owner, DiskOwner::Unknown);
    assert_eq!(ldc.spec.description.disk_type, Some(DiskType::SSD));
}

#[test]
fn local_disk_edit_example() {
    let ld: LocalDisk = parse(LD_K8S_WORKER_2_SDB);
    assert_eq!(ld.spec.owner, DiskOwner::LocalDiskManager);
    assert_eq!(ld.spec.device_path, "/dev/sdb");
    assert!(ld.status.is_none());
}

#[test]
fn volume_migrate() {
    let m: LocalVolumeMigrate = parse(LVMIGRATE);
    assert_eq!(m.spec.source_node, "k8s-node-1");
    assert_eq!(m.spec.target_nodes_suggested, ["k8s-node-2", "k8s-node-3"]);
    assert!(m.spec.migrate_all_vols);
    assert!(!m.spec.abort);
}

#[test]
fn volume_migrate_from_2022_release_is_rejected_for_missing_source_node() {
    let err = serde_yaml::from_str::<LocalVolumeMigrate>(LVMIGRATE_2022).unwrap_err();
    assert!(err.to_string().contains("sourceNode"), "{err}");
}

#[test]
fn resize_policies() {
    let p: ResizePolicy = parse(RESIZE_POLICY_1);
    assert_eq!(
        (
            p.spec.warning_threshold,
            p.spec.resize_threshold,
            p.spec.node_pool_usage_limit
        ),
        (60, 80, 90)
    );
    assert!(p.spec.pvc_selector.is_none());
    let p: ResizePolicy = parse(RESIZE_POLICY_SELECTORS);
    for sel in [
        &p.spec.storage_class_selector,
        &p.spec.namespace_selector,
        &p.spec.pvc_selector,
    ] {
        let labels = sel.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(labels["pvc-resize"], "auto");
    }
}

#[test]
fn snapshot_rollback() {
    let r: LocalVolumeSnapshotRestore = parse(LVSRESTORE_ROLLBACK);
    assert_eq!(r.spec.restore_type, RestoreType::Rollback);
    assert_eq!(
        r.spec.source_volume_snapshot,
        "snapcontent-0fc17697-68ea-49ce-8e4c-7a791e315110"
    );
    assert!(r.spec.target_volume.is_empty());
}

#[test]
fn seed_objects_roundtrip_through_json() {
    fn check<T>(yaml: &str)
    where
        T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
    {
        let a: T = parse(yaml);
        let json = serde_json::to_string(&a).unwrap();
        let b: T = serde_json::from_str(&json).unwrap();
        assert_eq!(a, b, "{json}");
    }
    check::<LocalStorageNode>(LSN_10_6_234_41);
    check::<LocalStorageNode>(LSN_K8S_WORKER_4);
    check::<LocalStorageNode>(LSN_G_MASTER1);
    check::<LocalDiskNode>(LDN_K8S_WORKER_2);
    check::<LocalDiskClaim>(LDC_K8S_WORKER_4);
    check::<LocalDisk>(LD_K8S_WORKER_2_SDB);
    check::<LocalVolumeMigrate>(LVMIGRATE);
    check::<ResizePolicy>(RESIZE_POLICY_SELECTORS);
    check::<LocalVolumeSnapshotRestore>(LVSRESTORE_ROLLBACK);
}

#[test]
fn topology_is_written_with_the_original_spelling() {
    let lsn: LocalStorageNode = parse(LSN_10_6_234_41);
    let json = serde_json::to_value(&lsn).unwrap();
    assert_eq!(json["spec"]["topogoly"]["zone"], "default");
    assert!(json["spec"].get("topology").is_none());
}
