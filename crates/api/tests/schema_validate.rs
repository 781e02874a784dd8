//! What our types serialize is accepted — and kept — by the CRD schema we publish: every key
//! is declared (otherwise the API server would prune it), types/enums/minimums hold and
//! required fields are present. A small structural-schema validator is enough for that.

use hwameistor_api::types::*;
use hwameistor_api::*;
mod common;

use common::validate;

fn check<K: kube::Resource<DynamicType = ()> + serde::Serialize>(obj: &K) {
    let kind = K::kind(&());
    let v = serde_json::to_value(obj).unwrap();
    let problems = common::problems(&kind, &v);
    assert!(
        problems.is_empty(),
        "{kind}: {}\n{v:#}",
        problems.join("\n")
    );
}

#[test]
fn fixtures_validate() {
    check(&LocalVolume::test("pvc-1"));
    check(&LocalVolumeReplica::test("pvc-1", "n1"));
    check(&LocalStorageNode::test("n1"));
    check(&LocalDisk::test("n1", "sdb"));
    check(&LocalDiskClaim::test("c1", "n1", DiskOwner::LocalStorage));
}

#[test]
fn fully_populated_objects_validate() {
    let mut lv = LocalVolume::test("pvc-1");
    lv.spec.volume_qos = Some(VolumeQoS {
        iops: "100".into(),
        throughput: "10Mi".into(),
    });
    lv.spec.volume_encrypt = Some(VolumeEncrypt {
        enable: true,
        encrypt_type: Some(EncryptType::LUKS),
        secret: "ns/s".into(),
    });
    lv.spec.thin_origin = Some(ThinOrigin {
        origin_type: Some(ThinOriginType::Snapshot),
        origin_id: "x".into(),
    });
    lv.spec.config = Some(VolumeConfig {
        version: 3,
        volume_name: "pvc-1".into(),
        required_capacity_bytes: 1 << 30,
        convertible: true,
        resource_id: 7,
        ready_to_initialize: true,
        initialized: true,
        replicas: vec![VolumeReplicaConfig {
            id: 1,
            hostname: "n1".into(),
            ip: "10.0.0.1".into(),
            primary: true,
        }],
    });
    lv.status = Some(LocalVolumeStatus {
        allocated_capacity_bytes: 1 << 30,
        used_capacity_bytes: 5,
        total_inode: 10,
        used_inode: 1,
        replicas: vec!["pvc-1-abcdef".into()],
        state: VolumeState::Ready,
        published_node: "n1".into(),
        fs_type: "xfs".into(),
        rawblock: false,
        message: "deletion blocked: snapshots snap-1 exist".into(),
        conditions: vec![],
    });
    check(&lv);

    let mut r = LocalVolumeReplica::test("pvc-1", "n1");
    let st = r.status.as_mut().unwrap();
    st.ha_state = Some(HaStatus {
        state: HaState::Consistent,
        reason: "ok".into(),
    });
    st.disks = vec!["/dev/sdb".into()];
    check(&r);

    let mut ldv = LocalDiskVolume::new(
        "pvc-d",
        LocalDiskVolumeSpec {
            disk_type: Some(DiskType::SSD),
            required_capacity_bytes: 1 << 30,
            accessibility: VolumeAccessibility::on_nodes(["n1"]),
            persistent_volume_claim_name: "ns/pvc".into(),
            can_wipe: true,
        },
    );
    ldv.status = Some(LocalDiskVolumeStatus {
        local_disk_name: "localdisk-x".into(),
        dev_path: "/dev/sdc".into(),
        dev_links: [("by-id".to_string(), vec!["/dev/disk/by-id/x".to_string()])].into(),
        mount_points: vec![MountPoint {
            target_path: "/var/lib/kubelet/pods/x".into(),
            volume_cap: Some(VolumeCapability {
                access_mode: 1,
                access_type: Some(AccessType::Mount),
            }),
            fs_type: "xfs".into(),
            mount_options: vec!["noatime".into()],
            phase: MountPointPhase::Mounted,
        }],
        state: VolumeState::Ready,
        ..Default::default()
    });
    check(&ldv);

    let tpc = ThinPoolClaim::new(
        "t",
        ThinPoolClaimSpec {
            node_name: "n1".into(),
            description: ThinPoolClaimDescription {
                pool_name: "LocalStorage_PoolHDD".into(),
                capacity: 10,
                capacity_percent: None,
                over_provision_ratio: Some("2.0".into()),
                pool_metadata_size: 1,
            },
        },
    );
    check(&tpc);

    let mut lsn = LocalStorageNode::test("n1");
    let status = lsn.status.as_mut().unwrap();
    status.conditions.push(StorageNodeCondition {
        type_: StorageNodeConditionType::ExpandSuccess,
        status: ConditionStatus::True,
        last_update_time: None,
        last_transition_time: None,
        reason: "StorageExpandSuccess".into(),
        message: "ok".into(),
    });
    status.pool_extend_records.insert(
        "LocalStorage_PoolHDD".into(),
        vec![LocalDiskClaim::test("c", "n1", DiskOwner::LocalStorage).spec],
    );
    status.thin_pool_extend_records.insert(
        "LocalStorage_PoolHDD".into(),
        vec![ThinPoolExtendRecord {
            node_name: "n1".into(),
            description: tpc.spec.description.clone(),
            uid: "u".into(),
        }],
    );
    check(&lsn);

    let evt = Event::new(
        &Event::name_for(EventResourceType::Volume, "pvc-1"),
        EventSpec {
            resource_type: EventResourceType::Volume,
            resource_name: "pvc-1".into(),
            records: vec![EventRecord {
                id: "1".into(),
                action: "Create".into(),
                action_content: "{}".into(),
                ..Default::default()
            }],
        },
    );
    check(&evt);

    let mut m = LocalVolumeMigrate::new(
        "m",
        LocalVolumeMigrateSpec {
            volume_name: "pvc-1".into(),
            source_node: "n1".into(),
            target_nodes_suggested: vec![],
            migrate_all_vols: true,
            abort: false,
        },
    );
    m.status = Some(LocalVolumeMigrateStatus {
        state: OperationState::AddReplica,
        target_node: "n2".into(),
        ..Default::default()
    });
    check(&m);

    let c = Cluster::new(
        "hwameistor-cluster",
        ClusterSpec {
            target_namespace: "hwameistor".into(),
            storage_class: Some(StorageClassSpec::default()),
            local_storage: Some(LocalStorageComponent {
                member: Some(MemberSpec {
                    drbd_start_port: 43001,
                    max_ha_volume_count: 1000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    check(&c);
}

/// Objects with empty sub-objects must not serialize keys the schema lacks either.
#[test]
fn default_objects_validate() {
    check(&LocalVolumeGroup::new("g", Default::default()));
    check(&LocalDiskAction::new("a", Default::default()));
    check(&ResizePolicy::new("p", Default::default()));
    check(&LocalDiskNode::new("n", Default::default()));
}

/// The validator is not vacuous: it reports out-of-range values, unknown keys and enums.
#[test]
fn validator_catches_problems() {
    let schema = &common::schema_of("lv");
    let bad = serde_json::json!({
        "apiVersion": "hwameistor.io/v1alpha1", "kind": "LocalVolume",
        "metadata": {"name": "x"},
        "spec": {"requiredCapacityBytes": 1, "replicaNumber": 5, "bogus": true},
        "status": {"state": "Exploded"}
    });
    let mut problems = Vec::new();
    validate("", schema, &bad, &mut problems);
    let text = problems.join("\n");
    assert!(
        text.contains(".spec.requiredCapacityBytes: 1 < minimum"),
        "{text}"
    );
    assert!(text.contains(".spec.replicaNumber: 5 > maximum"), "{text}");
    assert!(text.contains(".spec.bogus: not in schema"), "{text}");
    assert!(
        text.contains(".status.state: \"Exploded\" not in enum"),
        "{text}"
    );
    let missing = serde_json::json!({"spec": {}});
    problems.clear();
    validate("", schema, &missing, &mut problems);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("required \"requiredCapacityBytes\"")),
        "{problems:?}"
    );
}
