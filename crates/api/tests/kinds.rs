//! Every kind has the short names, printer columns, scope and subresources of the original,
//! and the registry resolves every name the user manual uses.

use hwameistor_api::registry::{self, format_age, json_path_get};
use serde_json::json;

/// The original's kinds, one per line (`Kind plural shortnames|-`), each followed by its
/// printer columns in CRD order, indented (`name jsonPath [priority]`; `#` starts a comment).
const EXPECTED: &str = "
Cluster clusters hmcluster
Event events evt
    type .spec.resourceType
    resource .spec.resourceName
LocalDiskAction localdiskactions lda
    Action .spec.action
    MaxCapacity .spec.rule.maxCapacity
    MinCapacity .spec.rule.minCapacity
    DevicePath .spec.rule.devicePath
LocalDiskClaim localdiskclaims ldc
    NodeMatch .spec.nodeName
    Phase .status.status
    Owner .spec.owner
LocalDiskNode localdisknodes ldn
    FreeCapacity .status.freeCapacity
    TotalCapacity .status.totalCapacity
    TotalDisk .status.totalDisk
    status .status.state
    age .metadata.creationTimestamp
LocalDisk localdisks ld
    NodeMatch .spec.nodeName
    Capacity .spec.capacity 1
    PreNodeMatch .spec.preNodeName 1
    DevicePath .spec.devicePath
    PreDevicePath .spec.preDevicePath 1
    Owner .spec.owner
    Phase .status.claimState
    Health .spec.smartInfo.overallHealth 1
    Reserved .spec.reserved 1
    State .spec.state
    Age .metadata.creationTimestamp
LocalDiskVolume localdiskvolumes ldv
    Node .spec.accessibility.nodes[0]
    Disk .status.devPath
    AllocatedCap .status.allocatedCapacityBytes
    Type .spec.diskType
    Status .status.state
LocalStorageNode localstoragenodes lsn
    ip .spec.storageIP
    status .status.state
    PoolHDD .status.pools.LocalStorage_PoolHDD.freeCapacityBytes 1
    PoolSSD .status.pools.LocalStorage_PoolSSD.freeCapacityBytes 1
    PoolNVMe .status.pools.LocalStorage_PoolNVMe.freeCapacityBytes 1
    age .metadata.creationTimestamp
LocalVolumeConvert localvolumeconverts lvconvert
    volume .spec.volumeName
    replicas .spec.replicaNumber
    state .status.state
    message .status.message
    abort .spec.abort
    age .metadata.creationTimestamp
LocalVolumeExpand localvolumeexpands lvexpand
    newCapacity .spec.requiredCapacityBytes
    abort .spec.abort
    state .status.state
    subs .status.subs
    message .status.message
    age .metadata.creationTimestamp
LocalVolumeGroup localvolumegroups lvg,lvgr
    pod .spec.pods
    namespace .spec.namespace
    age .metadata.creationTimestamp
LocalVolumeMigrate localvolumemigrates lvmigrate,lvmmigrate
    volume .spec.volumeName
    from .spec.sourceNode
    to .status.targetNode
    state .status.state
    age .metadata.creationTimestamp
LocalVolumeReplica localvolumereplicas lvr,lvrr
    capacity .spec.requiredCapacityBytes
    node .spec.nodeName
    state .status.state
    synced .status.synced
    device .status.devPath
    age .metadata.creationTimestamp
LocalVolumeReplicaSnapshotRestore localvolumereplicasnapshotrestores lvrsrestore,lvrsnaprestore
    nodeName .spec.nodeName
    targetvolume .spec.targetVolume
    sourcesnapshot .spec.sourceVolumeSnapshot
    state .status.state
    age .metadata.creationTimestamp
LocalVolumeReplicaSnapshot localvolumereplicasnapshots lvrs
    Capacity .status.allocatedCapacityBytes
    NodeName .spec.nodeName
    SourceVolume .spec.sourceVolume
    State .status.state
    Merging .status.attr.merging
    Invalid .status.attr.invalid
    Age .status.creationTime
    SourceVolumeReplica .spec.sourceVolumeReplica 1
LocalVolume localvolumes lv
    pool .spec.poolName
    replicas .spec.replicaNumber
    capacity .spec.requiredCapacityBytes
    used .status.usedCapacityBytes
    state .status.state
    resource .spec.config.resourceID 1
    published .status.publishedNode
    fstype .status.fsType 1
    group .spec.volumegroup 1
    age .metadata.creationTimestamp
LocalVolumeSnapshotRestore localvolumesnapshotrestores lvsrestore,lvsnaprestore
    targetvolume .spec.targetVolume
    sourcesnapshot .spec.sourceVolumeSnapshot
    state .status.state
    age .metadata.creationTimestamp
    # Ours: merge/copy progress, in the wide output only (the seed's table stays).
    progress .status.progress 1
LocalVolumeSnapshot localvolumesnapshots lvs,lvss
    Capacity .status.allocatedCapacityBytes
    SourceVolume .spec.sourceVolume
    State .status.state
    Merging .status.attr.merging
    Invalid .status.attr.invalid
    Age .status.creationTime
ResizePolicy resizepolicies -
ThinPoolClaim thinpoolclaims tpc
    NodeName .spec.nodeName
    Phase .status.status
";

/// A kind of [`EXPECTED`]: kind, plural, short names, columns as (name, jsonPath, priority).
type Expect = (String, String, Vec<String>, Vec<(String, String, i32)>);

fn expected() -> Vec<Expect> {
    let mut out: Vec<Expect> = Vec::new();
    for line in EXPECTED.lines() {
        let text = line.split('#').next().unwrap_or_default();
        let w: Vec<&str> = text.split_whitespace().collect();
        if w.is_empty() {
            continue;
        }
        if line.starts_with(' ') {
            let prio = w.get(2).map_or(0, |p| p.parse().unwrap());
            let kind = out.last_mut().expect("a column before any kind");
            kind.3.push((w[0].to_string(), w[1].to_string(), prio));
        } else {
            let shorts = match w[2] {
                "-" => vec![],
                s => s.split(',').map(str::to_string).collect(),
            };
            out.push((w[0].to_string(), w[1].to_string(), shorts, vec![]));
        }
    }
    out
}

#[test]
fn every_kind_has_the_original_names_and_columns() {
    let kinds = registry::kinds();
    let expected = expected();
    assert_eq!(expected.len(), 20);
    assert_eq!(kinds.len(), expected.len());
    for (kind, plural, shorts, cols) in &expected {
        let info = registry::lookup(kind).unwrap_or_else(|| panic!("{kind} missing"));
        assert_eq!(info.kind, *kind);
        assert_eq!(info.plural, *plural, "{kind}");
        assert_eq!(info.singular, kind.to_lowercase(), "{kind}");
        assert_eq!(info.short_names, *shorts, "{kind} short names");
        let got: Vec<(String, String, i32)> = info
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.json_path.clone(), c.priority.unwrap_or(0)))
            .collect();
        assert_eq!(got, *cols, "{kind} printer columns");
        assert!(info.has_status, "{kind} has a status subresource");
        assert_eq!(info.crd().spec.scope, "Cluster", "{kind}");
        assert_eq!(info.crd_name(), format!("{plural}.hwameistor.io"));
    }
}

#[test]
fn date_columns_are_dates_and_types_are_valid() {
    for info in registry::kinds() {
        for c in &info.columns {
            assert!(
                ["string", "integer", "number", "boolean", "date"].contains(&c.type_.as_str()),
                "{} column {} has type {}",
                info.kind,
                c.name,
                c.type_
            );
            if c.name.eq_ignore_ascii_case("age") {
                assert_eq!(c.type_, "date", "{} {}", info.kind, c.name);
            }
        }
    }
}

#[test]
fn short_names_are_unique() {
    let mut seen = std::collections::BTreeMap::new();
    for info in registry::kinds() {
        for s in info
            .short_names
            .iter()
            .chain([&info.plural, &info.singular])
        {
            if let Some(other) = seen.insert(s.clone(), info.kind.clone()) {
                panic!("{s} names both {other} and {}", info.kind);
            }
        }
    }
}

/// Every resource name the user manual passes to kubectl resolves to the right kind.
#[test]
fn names_used_in_the_manual_resolve() {
    let cases = [
        ("localdisk", "LocalDisk"),
        ("localdisks", "LocalDisk"),
        ("ld", "LocalDisk"),
        ("localdiskclaim", "LocalDiskClaim"),
        ("ldc", "LocalDiskClaim"),
        ("localdisknodes", "LocalDiskNode"),
        ("localdisknode", "LocalDiskNode"),
        ("ldn", "LocalDiskNode"),
        ("ldv", "LocalDiskVolume"),
        ("lda", "LocalDiskAction"),
        ("lsn", "LocalStorageNode"),
        ("localstoragenode", "LocalStorageNode"),
        ("LocalStorageNode", "LocalStorageNode"),
        ("cluster.hwameistor.io", "Cluster"),
        ("clusters.hwameistor.io", "Cluster"),
        ("hmcluster", "Cluster"),
        ("evt", "Event"),
        ("LocalVolumeMigrate", "LocalVolumeMigrate"),
        ("lvmigrate", "LocalVolumeMigrate"),
        ("lvmmigrate", "LocalVolumeMigrate"),
        ("lvr", "LocalVolumeReplica"),
        ("lvrr", "LocalVolumeReplica"),
        ("localvolumereplica", "LocalVolumeReplica"),
        ("localvolume", "LocalVolume"),
        ("lv", "LocalVolume"),
        ("lvs", "LocalVolumeSnapshot"),
        ("lvss", "LocalVolumeSnapshot"),
        ("LocalVolumeSnapshotRestore", "LocalVolumeSnapshotRestore"),
        ("lvsrestore", "LocalVolumeSnapshotRestore"),
        ("lvsnaprestore", "LocalVolumeSnapshotRestore"),
        ("lvrsrestore", "LocalVolumeReplicaSnapshotRestore"),
        ("lvrsnaprestore", "LocalVolumeReplicaSnapshotRestore"),
        ("lvrs", "LocalVolumeReplicaSnapshot"),
        ("lvg", "LocalVolumeGroup"),
        ("lvgr", "LocalVolumeGroup"),
        ("lvconvert", "LocalVolumeConvert"),
        ("lvexpand", "LocalVolumeExpand"),
        ("tpc", "ThinPoolClaim"),
        ("resizepolicies", "ResizePolicy"),
        ("ResizePolicy", "ResizePolicy"),
        ("LSN", "LocalStorageNode"),
        ("localvolumes.v1alpha1.hwameistor.io", "LocalVolume"),
    ];
    for (name, kind) in cases {
        let got = registry::lookup(name).map(|k| k.kind.as_str());
        assert_eq!(got, Some(kind), "{name}");
    }
    assert!(registry::lookup("pods").is_none());
    let err = registry::resolve("pvcs").unwrap_err().to_string();
    assert!(
        err.contains("pvcs") && err.contains("localvolumes"),
        "{err}"
    );
    assert_eq!(
        hwameistor_api::printer_columns("lv").map(|c| c.len()),
        Some(10)
    );
}

#[test]
fn lsn_table_matches_kubectl_get_lsn() {
    let info = registry::lookup("lsn").unwrap();
    assert_eq!(info.headers(false), ["NAME", "IP", "STATUS", "AGE"]);
    assert_eq!(
        info.headers(true),
        [
            "NAME", "IP", "STATUS", "POOLHDD", "POOLSSD", "POOLNVME", "AGE"
        ]
    );
    let lsn = hwameistor_api::LocalStorageNode::test("10-6-234-40");
    let mut obj = serde_json::to_value(&lsn).unwrap();
    obj["metadata"]["creationTimestamp"] = json!("2023-04-11T06:46:52Z");
    let now = registry::parse_rfc3339_unix("2023-04-11T06:50:44Z").unwrap();
    assert_eq!(
        info.row(&obj, false, now),
        ["10-6-234-40", "10.0.0.1", "Ready", "3m52s"]
    );
    assert_eq!(info.row(&obj, true, now)[3], (100i64 << 30).to_string());
    assert_eq!(info.row(&obj, true, now)[4], "");
}

#[test]
fn lv_table_matches_kubectl_get_lv() {
    let info = registry::lookup("lv").unwrap();
    let words = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        info.headers(false),
        words("NAME POOL REPLICAS CAPACITY USED STATE PUBLISHED AGE")
    );
    assert_eq!(
        info.headers(true),
        words("NAME POOL REPLICAS CAPACITY USED STATE RESOURCE PUBLISHED FSTYPE GROUP AGE")
    );
    let obj = json!({
        "metadata": {"name": "pvc-1", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"poolName": "LocalStorage_PoolHDD", "replicaNumber": 1,
                 "requiredCapacityBytes": 1073741824, "config": {"resourceID": -1}},
        "status": {"usedCapacityBytes": 33783808, "state": "Ready", "publishedNode": "master",
                   "fsType": "xfs"}
    });
    let now = registry::parse_rfc3339_unix("2024-01-06T23:00:00Z").unwrap();
    assert_eq!(
        info.row(&obj, true, now).join("|"),
        "pvc-1|LocalStorage_PoolHDD|1|1073741824|33783808|Ready|-1|master|xfs||5d23h"
    );
}

#[test]
fn kinds_without_columns_print_name_and_age() {
    let info = registry::lookup("resizepolicies").unwrap();
    assert_eq!(info.headers(true), ["NAME", "AGE"]);
}

#[test]
fn lvs_age_comes_from_snapshot_creation_time() {
    let info = registry::lookup("lvs").unwrap();
    let obj = json!({
        "metadata": {"name": "snapcontent-1", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {"sourceVolume": "pvc-1", "requiredCapacityBytes": 4194304},
        "status": {"state": "Ready", "creationTime": "2024-01-01T00:00:00Z",
                   "attr": {"merging": false}}
    });
    let now = registry::parse_rfc3339_unix("2024-01-01T00:05:31Z").unwrap();
    assert_eq!(
        info.row(&obj, false, now),
        ["snapcontent-1", "", "pvc-1", "Ready", "false", "", "5m31s"]
    );
}

#[test]
fn json_paths() {
    let obj = json!({"spec": {"accessibility": {"nodes": ["a", "b"]}, "pods": ["p1", "p2"]}});
    assert_eq!(
        json_path_get(&obj, ".spec.accessibility.nodes[0]"),
        Some(&json!("a"))
    );
    assert_eq!(
        json_path_get(&obj, ".spec.accessibility.nodes[1]"),
        Some(&json!("b"))
    );
    assert_eq!(json_path_get(&obj, ".spec.accessibility.nodes[2]"), None);
    assert_eq!(
        json_path_get(&obj, "{.spec.pods}"),
        Some(&json!(["p1", "p2"]))
    );
    assert_eq!(json_path_get(&obj, ".status.state"), None);
    assert_eq!(
        registry::format_cell(json_path_get(&obj, ".spec.pods"), "string", 0),
        r#"["p1","p2"]"#
    );
}

#[test]
fn ages_like_kubectl() {
    let cases = [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (331, "5m31s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 240, "3h4m"),
        (28 * 3600, "28h"),
        (2 * 86400, "2d"),
        (5 * 86400 + 23 * 3600, "5d23h"),
        (8 * 86400, "8d"),
        (400 * 86400, "400d"),
        (3 * 365 * 86400 + 5 * 86400, "3y5d"),
        (53 * 365 * 86400, "53y"),
        (-1, "0s"),
        (-5, "<invalid>"),
    ];
    for (secs, want) in cases {
        assert_eq!(format_age(secs), want, "{secs}");
    }
}
