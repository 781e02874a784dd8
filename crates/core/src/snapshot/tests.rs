use super::*;
use proptest::prelude::*;

fn src(nodes: &[&str]) -> SourceVolumeView {
    SourceVolumeView {
        state: VolumeState::Ready,
        replicas: nodes
            .iter()
            .map(|n| SourceReplica {
                name: format!("vol-{n}"),
                node: (*n).into(),
                pool: "LocalStorage_PoolHDD".into(),
            })
            .collect(),
    }
}

fn rs(node: &str, state: VolumeState) -> ReplicaSnapshotView {
    ReplicaSnapshotView {
        name: format!("snap-{node}"),
        node: node.into(),
        state,
        allocated_bytes: 1 << 30,
        creation_time: Some(100),
        ..Default::default()
    }
}

#[test]
fn snapshot_of_ha_volume_takes_every_replica_at_once() {
    let mut v = SnapshotView {
        source: Some(src(&["a", "b"])),
        ..Default::default()
    };
    let cur = SnapshotStatus::default();
    assert!(matches!(
        snapshot_step(&v, &cur),
        SnapshotStep::SetStatus(SnapshotStatus {
            state: VolumeState::Creating,
            ..
        })
    ));
    v.state = VolumeState::Creating;
    match snapshot_step(&v, &cur) {
        SnapshotStep::CreateReplicaSnapshots(r) => {
            assert_eq!(r.len(), 2);
            assert_eq!(r[0].node, "a");
            assert_eq!(r[1].node, "b");
        }
        s => panic!("{s:?}"),
    }
    // One ready, one still creating: not Ready.
    v.replica_snapshots = vec![rs("a", VolumeState::Ready), rs("b", VolumeState::Unknown)];
    let SnapshotStep::SetStatus(st) = snapshot_step(&v, &cur) else {
        panic!()
    };
    assert_eq!(st.state, VolumeState::NotReady);
    assert_eq!(st.creation_time, None);
    // Both ready: Ready, the latest creation time, names listed.
    let mut b = rs("b", VolumeState::Ready);
    b.creation_time = Some(105);
    b.allocated_bytes = 1 << 29;
    v.replica_snapshots = vec![rs("a", VolumeState::Ready), b];
    let SnapshotStep::SetStatus(st) = snapshot_step(&v, &cur) else {
        panic!()
    };
    assert_eq!(st.state, VolumeState::Ready);
    assert_eq!(st.creation_time, Some(105));
    assert_eq!(st.allocated_bytes, 1 << 29);
    assert_eq!(st.replica_snapshots, vec!["snap-a", "snap-b"]);
    // Unchanged status: no write.
    assert_eq!(snapshot_step(&v, &st), SnapshotStep::Wait);
    // A replica added to the volume later does not get a snapshot of another time.
    v.source = Some(src(&["a", "b", "c"]));
    assert_eq!(snapshot_step(&v, &st), SnapshotStep::Wait);
}

#[test]
fn invalid_replica_snapshot_makes_the_snapshot_not_ready_and_says_why() {
    let mut a = rs("a", VolumeState::NotReady);
    a.invalid = true;
    let st = aggregate(&[a]);
    assert_eq!(st.state, VolumeState::NotReady);
    assert!(st.invalid);
    assert!(st.message.contains("overflowed"), "{}", st.message);
}

#[test]
fn snapshot_waits_for_source_replicas_and_reports_missing_source() {
    let v = SnapshotView {
        state: VolumeState::Creating,
        source: Some(src(&[])),
        ..Default::default()
    };
    let SnapshotStep::SetStatus(st) = snapshot_step(&v, &SnapshotStatus::default()) else {
        panic!()
    };
    assert!(st.message.contains("waiting"));
    let v = SnapshotView {
        state: VolumeState::Creating,
        source: None,
        ..Default::default()
    };
    let SnapshotStep::SetStatus(st) = snapshot_step(&v, &SnapshotStatus::default()) else {
        panic!()
    };
    assert_eq!(st.state, VolumeState::NotReady);
}

#[test]
fn snapshot_deletion_goes_through_replica_snapshots() {
    let mut v = SnapshotView {
        state: VolumeState::Ready,
        delete: true,
        source: Some(src(&["a"])),
        replica_snapshots: vec![rs("a", VolumeState::Ready)],
    };
    let cur = SnapshotStatus::default();
    assert!(matches!(
        snapshot_step(&v, &cur),
        SnapshotStep::SetStatus(SnapshotStatus {
            state: VolumeState::ToBeDeleted,
            ..
        })
    ));
    v.state = VolumeState::ToBeDeleted;
    assert_eq!(
        snapshot_step(&v, &cur),
        SnapshotStep::DeleteReplicaSnapshots(vec!["snap-a".into()])
    );
    v.replica_snapshots[0].delete = true;
    assert_eq!(snapshot_step(&v, &cur), SnapshotStep::Wait);
    v.replica_snapshots.clear();
    assert_eq!(snapshot_step(&v, &cur), SnapshotStep::Remove);
}

#[test]
fn replica_snapshot_node_steps() {
    let mut v = ReplicaSnapshotNodeView {
        state: VolumeState::Unknown,
        delete: false,
        source_present: true,
        merging: false,
        host: HostSnapshot::Absent,
        note: String::new(),
    };
    assert_eq!(replica_snapshot_step(&v), ReplicaSnapshotStep::Create);
    v.source_present = false;
    assert!(matches!(
        replica_snapshot_step(&v),
        ReplicaSnapshotStep::Report {
            state: VolumeState::Creating,
            ..
        }
    ));
    v.host = HostSnapshot::Present {
        size_bytes: 10,
        valid: true,
    };
    assert_eq!(
        replica_snapshot_step(&v),
        ReplicaSnapshotStep::Report {
            state: VolumeState::Ready,
            size_bytes: 10,
            invalid: false,
            reason: String::new()
        }
    );
    v.host = HostSnapshot::Present {
        size_bytes: 10,
        valid: false,
    };
    assert!(matches!(
        replica_snapshot_step(&v),
        ReplicaSnapshotStep::Report {
            state: VolumeState::NotReady,
            invalid: true,
            ..
        }
    ));
    // Taken once, then gone: reported, never re-taken.
    v.state = VolumeState::Ready;
    v.source_present = true;
    v.host = HostSnapshot::Absent;
    assert!(matches!(
        replica_snapshot_step(&v),
        ReplicaSnapshotStep::Report { invalid: true, .. }
    ));
    v.merging = true;
    assert_eq!(replica_snapshot_step(&v), ReplicaSnapshotStep::Wait);
    v.delete = true;
    assert_eq!(replica_snapshot_step(&v), ReplicaSnapshotStep::Remove);
    v.host = HostSnapshot::Present {
        size_bytes: 1,
        valid: true,
    };
    assert_eq!(replica_snapshot_step(&v), ReplicaSnapshotStep::DeleteOnHost);
}

fn snap_view() -> RestoreSnapshotView {
    RestoreSnapshotView {
        state: VolumeState::Ready,
        source_volume: "src".into(),
        source_bytes: 100,
        thin: false,
        delete: false,
        replicas: vec![RestoreSourceReplica {
            name: "s-a".into(),
            node: "a".into(),
            pool: "LocalStorage_PoolHDD".into(),
        }],
    }
}

fn target(bytes: u64, published: &str) -> RestoreTargetView {
    RestoreTargetView {
        state: VolumeState::Ready,
        pool: "LocalStorage_PoolHDD".into(),
        required_bytes: bytes,
        ready_nodes: vec!["a".into()],
        published_node: published.into(),
    }
}

#[test]
fn rollback_walks_submitted_inprogress_completed_then_consumes_and_removes() {
    use OperationState as S;
    let mut v = RestoreView {
        restore_type: RestoreType::Rollback,
        snapshot: Some(snap_view()),
        ..Default::default()
    };
    assert_eq!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::Submitted,
            message: String::new()
        }
    );
    v.state = S::Submitted;
    assert_eq!(
        restore_step(&v),
        RestoreStep::SetTarget {
            volume: "src".into(),
            pool: "LocalStorage_PoolHDD".into()
        }
    );
    v.target_name = "src".into();
    v.target = Some(target(100, "node-x"));
    match restore_step(&v) {
        RestoreStep::SetState {
            state: S::Failed,
            message,
        } => {
            assert!(message.contains("published"), "{message}")
        }
        s => panic!("{s:?}"),
    }
    v.target = Some(target(100, ""));
    let RestoreStep::CreateReplicaRestores(plans) = restore_step(&v) else {
        panic!()
    };
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].target_volume, "src");
    assert_eq!(plans[0].replica_snapshot, "s-a");
    v.replica_restores = vec![ReplicaRestoreView {
        name: "r-a".into(),
        node: "a".into(),
        state: S::Unknown,
        message: String::new(),
        progress: None,
    }];
    assert!(matches!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::InProgress,
            ..
        }
    ));
    v.state = S::InProgress;
    v.replica_restores[0].state = S::InProgress;
    v.replica_restores[0].message = "merging 40%".into();
    assert_eq!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::InProgress,
            message: "a: merging 40%".into()
        }
    );
    v.replica_restores[0].state = S::Completed;
    assert!(matches!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::Completed,
            ..
        }
    ));
    v.state = S::Completed;
    assert_eq!(restore_step(&v), RestoreStep::ConsumeSnapshot);
    v.snapshot.as_mut().unwrap().delete = true;
    assert_eq!(restore_step(&v), RestoreStep::Remove);
}

#[test]
fn restore_create_checks_target_and_waits_for_its_replicas() {
    use OperationState as S;
    let mut v = RestoreView {
        state: S::Submitted,
        restore_type: RestoreType::Create,
        snapshot: Some(snap_view()),
        ..Default::default()
    };
    assert!(matches!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::Failed,
            ..
        }
    ));
    v.target_name = "src".into();
    assert!(matches!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::Failed,
            ..
        }
    ));
    v.target_name = "new".into();
    assert!(matches!(restore_step(&v), RestoreStep::Wait(_)));
    let mut t = target(100, "");
    t.ready_nodes.clear();
    v.target = Some(t);
    assert!(matches!(restore_step(&v), RestoreStep::Wait(_)));
    v.target = Some(target(50, ""));
    match restore_step(&v) {
        RestoreStep::SetState {
            state: S::Failed,
            message,
        } => {
            assert!(message.contains("smaller"), "{message}")
        }
        s => panic!("{s:?}"),
    }
    v.target = Some(target(200, ""));
    assert!(matches!(
        restore_step(&v),
        RestoreStep::CreateReplicaRestores(_)
    ));
    // Completed create restores stay while the target exists.
    v.state = S::Completed;
    assert!(matches!(restore_step(&v), RestoreStep::Wait(_)));
    v.target = None;
    assert_eq!(restore_step(&v), RestoreStep::Remove);
}

#[test]
fn restore_waits_for_a_snapshot_still_being_taken_and_fails_on_node_failure() {
    use OperationState as S;
    let mut snap = snap_view();
    snap.state = VolumeState::Creating;
    let mut v = RestoreView {
        state: S::Submitted,
        restore_type: RestoreType::Create,
        target_name: "new".into(),
        snapshot: Some(snap),
        target: Some(target(100, "")),
        ..Default::default()
    };
    assert!(matches!(restore_step(&v), RestoreStep::Wait(_)));
    v.snapshot.as_mut().unwrap().state = VolumeState::Ready;
    v.state = S::InProgress;
    v.replica_restores = vec![ReplicaRestoreView {
        name: "r".into(),
        node: "a".into(),
        state: S::Failed,
        message: "dd: I/O error".into(),
        progress: None,
    }];
    match restore_step(&v) {
        RestoreStep::SetState {
            state: S::Failed,
            message,
        } => {
            assert!(message.contains("dd: I/O error"))
        }
        s => panic!("{s:?}"),
    }
    v.snapshot = None;
    assert!(matches!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::Failed,
            ..
        }
    ));
}

#[test]
fn abort_only_before_nodes_start() {
    use OperationState as S;
    let mut v = RestoreView {
        state: S::Submitted,
        abort: true,
        restore_type: RestoreType::Create,
        target_name: "new".into(),
        snapshot: Some(snap_view()),
        target: Some(target(100, "")),
        ..Default::default()
    };
    assert!(matches!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::Aborted,
            ..
        }
    ));
    v.state = S::InProgress;
    v.replica_restores = vec![ReplicaRestoreView {
        name: "r".into(),
        node: "a".into(),
        state: S::InProgress,
        message: String::new(),
        progress: None,
    }];
    assert!(matches!(
        restore_step(&v),
        RestoreStep::SetState {
            state: S::InProgress,
            ..
        }
    ));
    v.state = S::Aborted;
    assert!(matches!(restore_step(&v), RestoreStep::Wait(_)));
}

#[test]
fn thin_ratio_parsing_and_warnings() {
    assert_eq!(parse_ratio("").unwrap(), 1.0);
    assert_eq!(parse_ratio("2.5").unwrap(), 2.5);
    assert!(parse_ratio("0.5").is_err());
    assert!(parse_ratio("abc").is_err());
    assert!(parse_ratio("NaN").is_err());
    assert!(thin_usage_warnings(10.0, 20.0).is_empty());
    assert_eq!(thin_usage_warnings(80.0, 95.5).len(), 2);
    assert_eq!(
        provisioned_bytes(&[
            ThinMember::Volume { virtual_bytes: 100 },
            ThinMember::Snapshot {
                virtual_bytes: 100,
                data_percent: 25.0
            }
        ]),
        125
    );
    let p = ThinPool {
        size_bytes: 100,
        over_provision_ratio: 2.0,
        provisioned_bytes: 150,
    };
    assert!(p.can_provision(50));
    assert!(!p.can_provision(51));
    assert_eq!(p.free_bytes(), 50);
}

proptest! {
    /// Admitting volumes one by one with `can_provision` never exceeds size × ratio, and a
    /// refused volume really would have exceeded it.
    #[test]
    fn thin_admission_never_overcommits(
        size in 1u64..(1u64 << 44),
        ratio_tenths in 10u32..100,
        reqs in proptest::collection::vec(1u64..(1u64 << 42), 0..40),
    ) {
        let ratio = f64::from(ratio_tenths) / 10.0;
        let mut pool = ThinPool { size_bytes: size, over_provision_ratio: ratio, provisioned_bytes: 0 };
        let limit = pool.limit_bytes();
        prop_assert!(limit as f64 <= size as f64 * ratio + 1.0);
        prop_assert!(limit >= size);
        for r in reqs {
            if pool.can_provision(r) {
                pool.provisioned_bytes += r;
                prop_assert!(pool.provisioned_bytes <= limit);
            } else {
                prop_assert!(pool.provisioned_bytes + r > limit);
            }
            prop_assert_eq!(pool.free_bytes(), limit - pool.provisioned_bytes);
        }
    }

    /// Snapshots never count more than their virtual size, volumes count exactly theirs.
    #[test]
    fn provisioned_is_bounded(
        members in proptest::collection::vec((any::<bool>(), 0u64..(1u64 << 40), 0.0f64..120.0), 0..30)
    ) {
        let ms: Vec<ThinMember> = members.iter().map(|&(vol, b, p)| if vol {
            ThinMember::Volume { virtual_bytes: b }
        } else {
            ThinMember::Snapshot { virtual_bytes: b, data_percent: p }
        }).collect();
        let total = provisioned_bytes(&ms);
        let upper: u64 = members.iter().map(|m| m.1).sum();
        let lower: u64 = members.iter().filter(|m| m.0).map(|m| m.1).sum();
        prop_assert!(total <= upper);
        prop_assert!(total >= lower);
    }
}

#[test]
fn file_engine_snapsize_is_noted_not_ignored() {
    const G: u64 = 1 << 30;
    // The default size (the volume's) says nothing; lvm honours any size.
    assert_eq!(file_snapsize_note(true, G, G, G), None);
    assert_eq!(file_snapsize_note(true, G + 4096, G, G + 4096), None);
    assert_eq!(file_snapsize_note(false, 4 << 20, G, G), None);
    let note = file_snapsize_note(true, 4 << 20, G, G).unwrap();
    assert!(note.starts_with("snapsize ignored"), "{note}");
    assert!(note.contains("reflink"), "{note}");

    // The node reports it as the reason of a Ready snapshot, and the snapshot shows it.
    let v = ReplicaSnapshotNodeView {
        state: VolumeState::Unknown,
        delete: false,
        source_present: true,
        merging: false,
        host: HostSnapshot::Present {
            size_bytes: G,
            valid: true,
        },
        note: note.clone(),
    };
    assert_eq!(
        replica_snapshot_step(&v),
        ReplicaSnapshotStep::Report {
            state: VolumeState::Ready,
            size_bytes: G,
            invalid: false,
            reason: note.clone(),
        }
    );
    let mut r = rs("a", VolumeState::Ready);
    r.reason = note.clone();
    let st = aggregate(&[r]);
    assert_eq!(st.state, VolumeState::Ready);
    assert_eq!(st.message, format!("a: {note}"));
}

#[test]
fn volume_delete_rule_snapshots_first() {
    let snap = |n: &str, deleting: bool| VolumeSnapshotRef {
        name: n.into(),
        deleting,
    };
    assert_eq!(volume_delete_check("v", &[]), VolumeDeleteCheck::Allowed);
    match volume_delete_check(
        "v",
        &[snap("s2", false), snap("s1", false), snap("s3", true)],
    ) {
        VolumeDeleteCheck::Refused { snapshots, message } => {
            assert_eq!(snapshots, ["s1", "s2"]);
            assert!(
                message.contains("volume v has 2 snapshot(s): s1, s2"),
                "{message}"
            );
            assert!(message.contains("delete them first"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match volume_delete_check("v", &[snap("s3", true)]) {
        VolumeDeleteCheck::WaitForSnapshots { snapshots, message } => {
            assert_eq!(snapshots, ["s3"]);
            assert!(message.contains("s3"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

fn rr(node: &str, state: OperationState, progress: Option<i32>) -> ReplicaRestoreView {
    ReplicaRestoreView {
        name: format!("r-{node}"),
        node: node.into(),
        state,
        message: String::new(),
        progress,
    }
}

#[test]
fn restore_progress_is_the_slowest_node() {
    use OperationState as S;
    let mut v = RestoreView {
        state: S::InProgress,
        ..Default::default()
    };
    assert_eq!(restore_progress(&v), None);
    v.replica_restores = vec![rr("a", S::InProgress, None), rr("b", S::InProgress, None)];
    assert_eq!(restore_progress(&v), None, "nobody reported yet");
    v.replica_restores = vec![
        rr("a", S::InProgress, Some(80)),
        rr("b", S::InProgress, None),
    ];
    assert_eq!(restore_progress(&v), Some(0), "b has not reported");
    v.replica_restores = vec![
        rr("a", S::InProgress, Some(80)),
        rr("b", S::InProgress, Some(35)),
    ];
    assert_eq!(restore_progress(&v), Some(35));
    v.replica_restores = vec![
        rr("a", S::Completed, None),
        rr("b", S::InProgress, Some(140)),
    ];
    assert_eq!(
        restore_progress(&v),
        Some(100),
        "clamped; a completed node is 100"
    );
    v.state = S::Completed;
    v.replica_restores.clear();
    assert_eq!(restore_progress(&v), Some(100));
    v.state = S::Failed;
    assert_eq!(restore_progress(&v), None);
}

proptest! {
    #[test]
    fn restore_progress_stays_in_range(ps in proptest::collection::vec(proptest::option::of(-50i32..200), 1..5)) {
        let v = RestoreView {
            state: OperationState::InProgress,
            replica_restores: ps.iter().enumerate().map(|(i, p)| rr(&format!("n{i}"), OperationState::InProgress, *p)).collect(),
            ..Default::default()
        };
        if let Some(p) = restore_progress(&v) {
            prop_assert!((0..=100).contains(&p));
            let min = ps.iter().map(|p| p.unwrap_or(0).clamp(0, 100)).min().unwrap();
            prop_assert_eq!(p, min);
        } else {
            prop_assert!(ps.iter().all(Option::is_none));
        }
    }
}

#[test]
fn thin_snapshots_restore_into_a_new_volume_and_roll_back() {
    use OperationState as S;
    let mut snap = snap_view();
    snap.thin = true;
    // Restore (and clone, a restore from a temporary snapshot) into a new volume: planned
    // like a COW snapshot's, onto the target's pool (thin or thick as the target says).
    let v = RestoreView {
        state: S::Submitted,
        restore_type: RestoreType::Create,
        target_name: "new".into(),
        snapshot: Some(snap.clone()),
        target: Some(target(100, "")),
        ..Default::default()
    };
    match restore_step(&v) {
        RestoreStep::CreateReplicaRestores(plans) => {
            assert_eq!(plans.len(), 1);
            assert_eq!(plans[0].target_volume, "new");
            assert_eq!(plans[0].replica_snapshot, "s-a");
            assert_eq!(plans[0].target_pool, "LocalStorage_PoolHDD");
        }
        s => panic!("{s:?}"),
    }
    // A thin target smaller than the source is still refused.
    let mut small = v.clone();
    small.target = Some(target(50, ""));
    assert!(matches!(
        restore_step(&small),
        RestoreStep::SetState {
            state: S::Failed,
            ..
        }
    ));
    // Rollback of the thin volume from its thin snapshot.
    let mut r = RestoreView {
        state: S::Submitted,
        restore_type: RestoreType::Rollback,
        target_name: "src".into(),
        snapshot: Some(snap),
        target: Some(target(100, "")),
        ..Default::default()
    };
    assert!(matches!(
        restore_step(&r),
        RestoreStep::CreateReplicaRestores(_)
    ));
    r.target = Some(target(100, "a"));
    match restore_step(&r) {
        RestoreStep::SetState {
            state: S::Failed,
            message,
        } => assert!(message.contains("published"), "{message}"),
        s => panic!("{s:?}"),
    }
}

#[test]
fn thin_snapshot_snapsize_is_noted_like_the_file_engines() {
    const G: u64 = 1 << 30;
    assert_eq!(snapsize_note(SnapshotKind::Thin, G, G, G), None);
    assert_eq!(snapsize_note(SnapshotKind::Thin, G, 2 * G, G), None);
    let note = snapsize_note(SnapshotKind::Thin, 4 << 20, G, G).unwrap();
    assert!(
        note.starts_with("snapsize ignored (4194304 bytes"),
        "{note}"
    );
    assert!(note.contains("thin"), "{note}");
    // COW honours any size; the file wrapper is the reflink note.
    assert_eq!(snapsize_note(SnapshotKind::Cow, 4 << 20, G, G), None);
    assert_eq!(
        file_snapsize_note(true, 4 << 20, G, G),
        snapsize_note(SnapshotKind::Reflink, 4 << 20, G, G)
    );
}
