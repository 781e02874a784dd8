//! Serialization behaviour: round trips, defaults, misspelled keys, enum spellings, schema
//! validation attributes.

use hwameistor_api::types::*;
use hwameistor_api::{
    LocalDisk, LocalDiskClaim, LocalDiskVolume, LocalStorageNode, LocalVolume, LocalVolumeMigrate,
    LocalVolumeReplica, LocalVolumeSnapshotRestore, MountPoint, VolumeAccessibility,
};
use serde_json::{Value, json};

fn roundtrip<T>(obj: &T) -> Value
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v = serde_json::to_value(obj).unwrap();
    let back: T = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(&back, obj, "{v:#}");
    let yaml = serde_yaml::to_string(obj).unwrap();
    let back: T = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(&back, obj, "{yaml}");
    v
}

#[test]
fn fixtures_roundtrip_and_carry_type_meta() {
    let v = roundtrip(&LocalVolume::test("pvc-1"));
    assert_eq!(v["apiVersion"], "hwameistor.io/v1alpha1");
    assert_eq!(v["kind"], "LocalVolume");
    assert_eq!(v["spec"]["requiredCapacityBytes"], 1 << 30);
    assert!(v.get("status").is_none(), "no status until reconciled: {v}");
    assert!(v["spec"].get("volumeQoS").is_none());
    assert!(v["spec"].get("delete").is_none());
    let v = roundtrip(&LocalVolumeReplica::test("pvc-1", "node-1"));
    assert_eq!(v["status"]["state"], "Ready");
    assert_eq!(v["status"]["synced"], true);
    let v = roundtrip(&LocalStorageNode::test("node-1"));
    assert_eq!(v["spec"]["storageIP"], "10.0.0.1");
    assert_eq!(
        v["status"]["pools"]["LocalStorage_PoolHDD"]["type"],
        "REGULAR"
    );
    let v = roundtrip(&LocalDisk::test("node-1", "sdb"));
    assert_eq!(v["metadata"]["name"], "localdisk-node-1-sdb");
    assert_eq!(v["spec"]["state"], "Active");
    assert_eq!(v["status"]["claimState"], "Available");
    assert!(v["spec"].get("owner").is_none(), "empty owner is omitted");
    let v = roundtrip(&LocalDiskClaim::test(
        "c",
        "node-1",
        DiskOwner::LocalStorage,
    ));
    assert_eq!(v["spec"]["owner"], "local-storage");
}

#[test]
fn quirky_json_names() {
    let mut lv = LocalVolume::test("pvc-1");
    lv.spec.volume_group = "g".into();
    lv.spec.volume_qos = Some(hwameistor_api::VolumeQoS {
        iops: "100".into(),
        throughput: String::new(),
    });
    lv.spec.config = Some(hwameistor_api::VolumeConfig {
        resource_id: -1,
        ..Default::default()
    });
    let v = roundtrip(&lv);
    assert_eq!(v["spec"]["volumegroup"], "g");
    assert_eq!(v["spec"]["volumeQoS"]["iops"], "100");
    assert_eq!(v["spec"]["config"]["resourceID"], -1);
    let mut ld = LocalDisk::test("n", "sdb");
    ld.spec.disk_attributes.as_mut().unwrap().pci_vendor_id = "0x8086".into();
    assert_eq!(
        roundtrip(&ld)["spec"]["diskAttributes"]["pciVendorID"],
        "0x8086"
    );
}

#[test]
fn defaults_of_the_original() {
    let lv: LocalVolume = serde_json::from_value(json!({
        "apiVersion": "hwameistor.io/v1alpha1", "kind": "LocalVolume",
        "metadata": {"name": "pvc-1"},
        "spec": {"requiredCapacityBytes": 4194304},
        "status": {"state": ""}
    }))
    .unwrap();
    assert_eq!(lv.spec.replica_number, 1);
    assert!(!lv.spec.convertible);
    assert_eq!(lv.spec.accessibility, VolumeAccessibility::default());
    assert_eq!(lv.spec.accessibility.zones, ["default"]);
    assert_eq!(lv.status.as_ref().unwrap().state, VolumeState::Unknown);
    let v = serde_json::to_value(&lv).unwrap();
    assert!(
        v["status"].get("state").is_none(),
        "empty state is omitted: {v}"
    );

    let m: LocalVolumeMigrate = serde_json::from_value(json!({
        "apiVersion": "hwameistor.io/v1alpha1", "kind": "LocalVolumeMigrate",
        "metadata": {"name": "m"},
        "spec": {"volumeName": "pvc-1", "sourceNode": "n1", "targetNodesSuggested": []}
    }))
    .unwrap();
    assert!(m.spec.migrate_all_vols, "migrateAllVols defaults to true");

    let r: LocalVolumeSnapshotRestore = serde_json::from_value(json!({
        "apiVersion": "hwameistor.io/v1alpha1", "kind": "LocalVolumeSnapshotRestore",
        "metadata": {"name": "r"},
        "spec": {"sourceVolumeSnapshot": "snapcontent-1"}
    }))
    .unwrap();
    assert_eq!(r.spec.restore_type, RestoreType::Create);

    let lsn: LocalStorageNode = serde_json::from_value(json!({
        "apiVersion": "hwameistor.io/v1alpha1", "kind": "LocalStorageNode",
        "metadata": {"name": "n"}, "spec": {"topology": {}}
    }))
    .unwrap();
    let t = lsn.spec.topology.unwrap();
    assert_eq!((t.zone.as_str(), t.region.as_str()), ("default", "default"));
}

#[test]
fn topology_both_spellings_original_wins_and_is_emitted() {
    let lsn: LocalStorageNode = serde_json::from_value(json!({
        "apiVersion": "hwameistor.io/v1alpha1", "kind": "LocalStorageNode",
        "metadata": {"name": "n"},
        "spec": {"topogoly": {"zone": "z1", "region": "r1"},
                 "topology": {"zone": "z2", "region": "r2"}}
    }))
    .unwrap();
    assert_eq!(lsn.spec.topology.as_ref().unwrap().zone, "z1");
    let v = serde_json::to_value(&lsn).unwrap();
    assert_eq!(v["spec"]["topogoly"]["region"], "r1");
    assert!(v["spec"].get("topology").is_none());
}

#[test]
fn mount_point_fs_type_both_spellings() {
    let a: MountPoint =
        serde_json::from_value(json!({"targetPath": "/t", "fsTye": "xfs", "phase": "Mounted"}))
            .unwrap();
    let b: MountPoint =
        serde_json::from_value(json!({"targetPath": "/t", "fsType": "xfs", "phase": "Mounted"}))
            .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.fs_type, "xfs");
    assert_eq!(a.phase, MountPointPhase::Mounted);
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(
        v,
        json!({"targetPath": "/t", "fsTye": "xfs", "phase": "Mounted"})
    );
    let both: MountPoint =
        serde_json::from_value(json!({"targetPath": "/t", "fsTye": "ext4", "fsType": "xfs"}))
            .unwrap();
    assert_eq!(both.fs_type, "ext4");

    let mut ldv = LocalDiskVolume::new("pvc-d", Default::default());
    ldv.status = Some(hwameistor_api::LocalDiskVolumeStatus {
        mount_points: vec![a],
        ..Default::default()
    });
    roundtrip(&ldv);
}

/// serde writes exactly the `as_str` spelling for every variant of every shared enum.
#[test]
fn shared_enums_serialize_as_their_strings() {
    fn check<T>(all: &[T])
    where
        T: serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Display
            + PartialEq
            + std::fmt::Debug,
    {
        for v in all {
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json, Value::String(v.to_string()));
            assert_eq!(&serde_json::from_value::<T>(json).unwrap(), v);
        }
    }
    check(NodeState::ALL);
    check(VolumeState::ALL);
    check(ReplicaState::ALL);
    check(HaState::ALL);
    check(OperationState::ALL);
    check(DiskState::ALL);
    check(LocalDiskState::ALL);
    check(DiskClaimState::ALL);
    check(ClaimPhase::ALL);
    check(ThinPoolClaimPhase::ALL);
    check(PoolClass::ALL);
    check(DiskType::ALL);
    check(DiskOwner::ALL);
    check(PoolType::ALL);
    check(AccessType::ALL);
    check(MountPointPhase::ALL);
    check(RestoreType::ALL);
    check(ThinOriginType::ALL);
    check(EncryptType::ALL);
    check(EventResourceType::ALL);
    check(ConditionStatus::ALL);
    check(StorageNodeConditionType::ALL);
    check(SmartHealth::ALL);
    check(DiskActionType::ALL);
    check(ReplicaAffinity::ALL);
    check(VolumeMode::ALL);
    check(MigrateAnnotationState::ALL);
    check(ClusterPhase::ALL);
    assert!(serde_json::from_value::<PoolClass>(json!("hdd")).is_err());
}

fn spec_schema(kind: &str) -> Value {
    let info = hwameistor_api::lookup(kind).unwrap();
    let crd = serde_json::to_value(info.crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

#[test]
fn validation_attributes() {
    let lv = spec_schema("lv");
    let p = &lv["properties"]["spec"]["properties"];
    assert_eq!(p["requiredCapacityBytes"]["minimum"], 4194304.0);
    assert_eq!(p["replicaNumber"]["minimum"], 1.0);
    assert_eq!(p["replicaNumber"]["maximum"], 4.0);
    assert_eq!(p["convertible"]["default"], false);
    let required = lv["properties"]["spec"]["required"].as_array().unwrap();
    assert!(required.contains(&json!("requiredCapacityBytes")));

    for (kind, field) in [
        ("lvr", "requiredCapacityBytes"),
        ("lvexpand", "requiredCapacityBytes"),
        ("lvs", "requiredCapacityBytes"),
    ] {
        let s = spec_schema(kind);
        assert_eq!(
            s["properties"]["spec"]["properties"][field]["minimum"], 4194304.0,
            "{kind}"
        );
    }
    let conv = spec_schema("lvconvert");
    let rn = &conv["properties"]["spec"]["properties"]["replicaNumber"];
    assert_eq!(
        (rn["minimum"].clone(), rn["maximum"].clone()),
        (json!(2.0), json!(2.0))
    );

    let tpc = spec_schema("tpc");
    let d = &tpc["properties"]["spec"]["properties"]["description"]["properties"];
    assert_eq!(d["capacity"]["minimum"], 1.0);
    assert_eq!(d["capacity"]["maximum"], 1048576.0);
    assert_eq!(d["overProvisionRatio"]["default"], "1.0");
    assert_eq!(d["poolMetadataSize"]["default"], 1);

    let rp = spec_schema("resizepolicy");
    assert_eq!(
        rp["properties"]["spec"]["properties"]["resizeThreshold"]["maximum"],
        100.0
    );

    let ld = spec_schema("ld");
    let claim = &ld["properties"]["status"]["properties"]["claimState"]["enum"];
    for s in ["Pending", "Available", "Bound", "Reserved"] {
        assert!(claim.as_array().unwrap().contains(&json!(s)), "{claim}");
    }
    assert_eq!(
        ld["properties"]["spec"]["properties"]["state"]["enum"],
        json!(["Active", "Inactive", "Unknown"])
    );

    let mig = spec_schema("lvmigrate");
    let req = mig["properties"]["spec"]["required"].as_array().unwrap();
    for f in ["volumeName", "sourceNode", "targetNodesSuggested"] {
        assert!(req.contains(&json!(f)), "{f} required: {req:?}");
    }
    assert_eq!(
        mig["properties"]["spec"]["properties"]["migrateAllVols"]["default"],
        true
    );

    let restore = spec_schema("lvsrestore");
    let p = &restore["properties"]["spec"];
    assert_eq!(
        p["properties"]["restoreType"]["enum"],
        json!(["rollback", "create"])
    );
    assert_eq!(p["properties"]["restoreType"]["default"], "create");

    let lsn = spec_schema("lsn");
    let spec = &lsn["properties"]["spec"]["properties"];
    assert!(spec.get("topogoly").is_some() && spec.get("topology").is_some());
    assert_eq!(spec["topogoly"]["properties"]["zone"]["default"], "default");

    let ldv = spec_schema("ldv");
    let mp = &ldv["properties"]["status"]["properties"]["mountPoints"]["items"]["properties"];
    assert!(mp.get("fsTye").is_some() && mp.get("fsType").is_some());
}

/// Kubernetes only accepts structural schemas: every node has a `type` (unless it is
/// int-or-string or preserves unknown fields), junctors (`anyOf`, ...) carry no types or
/// defaults, and enums hold no `null`.
#[test]
fn schemas_are_structural() {
    fn walk(kind: &str, path: &str, s: &Value, in_junctor: bool, problems: &mut Vec<String>) {
        let Some(obj) = s.as_object() else { return };
        let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&json!(true));
        let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
        if in_junctor {
            for k in ["type", "default", "nullable", "description"] {
                if obj.contains_key(k) {
                    problems.push(format!("{kind} {path}: `{k}` inside a junctor"));
                }
            }
        } else if !obj.contains_key("type") && !int_or_string && !preserve {
            problems.push(format!("{kind} {path}: no type"));
        }
        if let Some(e) = obj.get("enum").and_then(Value::as_array)
            && e.iter().any(Value::is_null)
        {
            problems.push(format!("{kind} {path}: null in enum"));
        }
        if let Some(f) = obj.get("format").and_then(Value::as_str)
            && !["int32", "int64", "date-time", "byte", "double", "float"].contains(&f)
        {
            problems.push(format!("{kind} {path}: non-standard format {f}"));
        }
        if obj.contains_key("$ref") {
            problems.push(format!("{kind} {path}: $ref"));
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                walk(kind, &format!("{path}.{k}"), v, in_junctor, problems);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(kind, &format!("{path}[]"), items, in_junctor, problems);
        }
        if let Some(extra @ Value::Object(_)) = obj.get("additionalProperties") {
            walk(kind, &format!("{path}{{}}"), extra, in_junctor, problems);
        }
        for j in ["anyOf", "oneOf", "allOf"] {
            for (i, sub) in obj
                .get(j)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                walk(kind, &format!("{path}/{j}[{i}]"), sub, true, problems);
            }
        }
    }
    let mut problems = Vec::new();
    for info in hwameistor_api::kinds() {
        let crd = serde_json::to_value(info.crd()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(&info.kind, "", schema, false, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn accessors() {
    let mut lv = LocalVolume::test("pvc-1");
    assert_eq!(lv.state(), VolumeState::Unknown);
    assert_eq!(lv.pool_class(), Some(PoolClass::HDD));
    assert!(!lv.is_drbd_backed());
    assert_eq!(lv.published_node(), None);
    lv.spec.replica_number = 2;
    assert!(
        lv.is_drbd_backed(),
        "2 replicas imply DRBD before placement"
    );
    lv.spec.config = Some(hwameistor_api::VolumeConfig {
        convertible: false,
        replicas: vec![hwameistor_api::VolumeReplicaConfig {
            id: 1,
            hostname: "n1".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    assert!(!lv.is_drbd_backed(), "the config decides once written");
    assert_eq!(lv.replica_nodes(), ["n1"]);
    lv.status = Some(hwameistor_api::LocalVolumeStatus {
        state: VolumeState::Ready,
        published_node: "n1".into(),
        ..Default::default()
    });
    assert_eq!(lv.state(), VolumeState::Ready);
    assert_eq!(lv.published_node(), Some("n1"));

    let mut r = LocalVolumeReplica::test("pvc-1", "n1");
    assert!(r.is_ready_and_synced());
    r.status.as_mut().unwrap().synced = false;
    assert!(!r.is_ready_and_synced());
    assert_eq!(r.state(), ReplicaState::Ready);

    let lsn = LocalStorageNode::test("n1");
    assert_eq!(lsn.state(), NodeState::Ready);
    assert!(lsn.pool(PoolClass::HDD).is_some() && lsn.pool(PoolClass::SSD).is_none());

    let ld = LocalDisk::test("n1", "sdb");
    assert_eq!(ld.claim_state(), DiskClaimState::Available);
    assert_eq!(ld.disk_type(), DiskType::HDD);
    assert!(ld.is_active());
    assert_eq!(
        LocalDiskClaim::test("c", "n1", DiskOwner::LocalStorage).phase(),
        ClaimPhase::Unknown
    );

    let m = LocalVolumeMigrate::new("m", Default::default());
    assert_eq!(m.state(), OperationState::Unknown);
}
