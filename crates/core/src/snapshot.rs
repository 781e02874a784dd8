//! Snapshots, restores, rollbacks and thin-pool capacity: pure decisions.
//!
//! A **LocalVolumeSnapshot** (`lvs`) is a point-in-time copy of a LocalVolume. It is made of
//! one **LocalVolumeReplicaSnapshot** (`lvrs`) per node holding a replica of the volume; the
//! node agent takes the snapshot on its host (lvm: a COW or thin snapshot LV; file engine: a
//! reflink copy) and reports size, creation time and the `merging`/`invalid` flags. Unlike the
//! original, volumes with several replicas can be snapshotted: every replica gets its replica
//! snapshot in the same pass and the snapshot is Ready only when all of them are.
//!
//! A **LocalVolumeSnapshotRestore** (`lvsrestore`) either copies a snapshot into a new volume
//! (`restoreType: create`) or rolls the source volume back to it in place (`rollback`). It is
//! split into one **LocalVolumeReplicaSnapshotRestore** per node. States:
//! `"" → Submitted → InProgress → Completed` (or `Failed` with a message; `abort` ends a
//! request that has not started on the nodes).
//!
//! The functions here take plain views of the objects and return the one next step; the
//! reconcilers in `hwameistor_controllers::snapshot` apply it and observe again.

use crate::types::{OperationState, RestoreType, VolumeState};

/// Smallest snapshot size the API accepts (4 MiB, one LVM extent).
pub const MIN_SNAPSHOT_BYTES: u64 = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// LocalVolumeSnapshot (cluster side)
// ---------------------------------------------------------------------------------------

/// One replica of the source volume, as the snapshot controller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReplica {
    pub name: String,
    pub node: String,
    pub pool: String,
}

/// One existing replica snapshot of this snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaSnapshotView {
    pub name: String,
    pub node: String,
    pub state: VolumeState,
    pub delete: bool,
    pub allocated_bytes: u64,
    /// Seconds since the epoch when the node took it.
    pub creation_time: Option<i64>,
    pub merging: bool,
    pub invalid: bool,
    pub reason: String,
}

/// Everything the snapshot controller needs about one LocalVolumeSnapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotView {
    pub state: VolumeState,
    pub delete: bool,
    /// `None`: the source volume does not exist.
    pub source: Option<SourceVolumeView>,
    pub replica_snapshots: Vec<ReplicaSnapshotView>,
}

/// The source volume of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceVolumeView {
    pub state: VolumeState,
    /// Replicas not being deleted.
    pub replicas: Vec<SourceReplica>,
}

/// The aggregated status of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotStatus {
    pub state: VolumeState,
    pub message: String,
    pub allocated_bytes: u64,
    pub creation_time: Option<i64>,
    pub merging: bool,
    pub invalid: bool,
    pub replica_snapshots: Vec<String>,
}

/// The next step for a LocalVolumeSnapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotStep {
    /// Create replica snapshots for these source replicas (all at once).
    CreateReplicaSnapshots(Vec<SourceReplica>),
    /// Ask these replica snapshots to be deleted (`spec.delete`).
    DeleteReplicaSnapshots(Vec<String>),
    /// Write this status.
    SetStatus(SnapshotStatus),
    /// Everything is gone on the nodes: remove the object.
    Remove,
    /// Nothing to do until something changes.
    Wait,
}

/// Decide the next step of a snapshot. `current` is its status as stored (to avoid rewriting
/// an unchanged status).
pub fn snapshot_step(v: &SnapshotView, current: &SnapshotStatus) -> SnapshotStep {
    if v.delete {
        let pending: Vec<String> = v
            .replica_snapshots
            .iter()
            .filter(|r| !r.delete)
            .map(|r| r.name.clone())
            .collect();
        if v.state != VolumeState::ToBeDeleted && !v.replica_snapshots.is_empty() {
            return SnapshotStep::SetStatus(SnapshotStatus {
                state: VolumeState::ToBeDeleted,
                ..current.clone()
            });
        }
        if !pending.is_empty() {
            return SnapshotStep::DeleteReplicaSnapshots(pending);
        }
        if v.replica_snapshots.is_empty() {
            return SnapshotStep::Remove;
        }
        return SnapshotStep::Wait;
    }
    let Some(src) = &v.source else {
        let st = SnapshotStatus {
            state: VolumeState::NotReady,
            message: "the source volume does not exist".into(),
            ..current.clone()
        };
        return set_if_changed(st, current);
    };
    if v.state == VolumeState::Unknown {
        return SnapshotStep::SetStatus(SnapshotStatus {
            state: VolumeState::Creating,
            ..current.clone()
        });
    }
    let missing: Vec<SourceReplica> = src
        .replicas
        .iter()
        .filter(|r| !v.replica_snapshots.iter().any(|s| s.node == r.node))
        .cloned()
        .collect();
    // Snapshots are taken once: while creating, every replica gets one in the same pass; a
    // replica added to the volume later is not part of this point in time.
    let taking = v.replica_snapshots.is_empty();
    if taking {
        if src.replicas.is_empty() {
            let st = SnapshotStatus {
                state: VolumeState::Creating,
                message: "waiting for the source volume's replicas".into(),
                ..current.clone()
            };
            return set_if_changed(st, current);
        }
        return SnapshotStep::CreateReplicaSnapshots(missing);
    }
    set_if_changed(aggregate(&v.replica_snapshots), current)
}

fn set_if_changed(st: SnapshotStatus, current: &SnapshotStatus) -> SnapshotStep {
    if &st == current {
        SnapshotStep::Wait
    } else {
        SnapshotStep::SetStatus(st)
    }
}

/// Combine the replica snapshots into the snapshot's status: Ready when every one is Ready
/// and none is invalid; size is the smallest, time the latest (the snapshot exists as a
/// whole from then on).
pub fn aggregate(rs: &[ReplicaSnapshotView]) -> SnapshotStatus {
    let live: Vec<&ReplicaSnapshotView> = rs.iter().filter(|r| !r.delete).collect();
    let all_ready = !live.is_empty() && live.iter().all(|r| r.state == VolumeState::Ready);
    let invalid = live.iter().any(|r| r.invalid);
    let merging = live.iter().any(|r| r.merging);
    let mut names: Vec<String> = rs.iter().map(|r| r.name.clone()).collect();
    names.sort();
    // Reasons of replicas that are not Ready, and notes of Ready ones (e.g. an ignored
    // snapsize), so nothing a node says is lost on the way to the snapshot.
    let messages: Vec<String> = live
        .iter()
        .filter(|r| !r.reason.is_empty())
        .map(|r| format!("{}: {}", r.node, r.reason))
        .collect();
    let state = if all_ready && !invalid {
        VolumeState::Ready
    } else if live.iter().all(|r| r.state == VolumeState::Unknown) {
        VolumeState::Creating
    } else {
        VolumeState::NotReady
    };
    let message = if invalid {
        let nodes: Vec<&str> = live
            .iter()
            .filter(|r| r.invalid)
            .map(|r| r.node.as_str())
            .collect();
        format!(
            "snapshot invalid on {}: its change space overflowed",
            nodes.join(",")
        )
    } else {
        messages.join("; ")
    };
    SnapshotStatus {
        state,
        message,
        allocated_bytes: live
            .iter()
            .map(|r| r.allocated_bytes)
            .filter(|b| *b > 0)
            .min()
            .unwrap_or(0),
        creation_time: if all_ready {
            live.iter().filter_map(|r| r.creation_time).max()
        } else {
            None
        },
        merging,
        invalid,
        replica_snapshots: names,
    }
}

// ---------------------------------------------------------------------------------------
// LocalVolumeReplicaSnapshot (node side)
// ---------------------------------------------------------------------------------------

/// What the node's engine says about the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSnapshot {
    Absent,
    Present { size_bytes: u64, valid: bool },
}

/// Everything the node needs about one replica snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSnapshotNodeView {
    pub state: VolumeState,
    /// `spec.delete`, or the owning snapshot is gone.
    pub delete: bool,
    /// The source replica's volume exists on this host.
    pub source_present: bool,
    /// A rollback of this snapshot is running (the merge consumes it).
    pub merging: bool,
    pub host: HostSnapshot,
    /// Reported as the reason while the snapshot is valid (see [`file_snapsize_note`]).
    pub note: String,
}

/// The next step of a replica snapshot on its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaSnapshotStep {
    /// Take the snapshot on the host.
    Create,
    /// Remove the snapshot from the host.
    DeleteOnHost,
    /// The host has no snapshot any more: remove the object.
    Remove,
    /// Report it: state, size, validity.
    Report {
        state: VolumeState,
        size_bytes: u64,
        invalid: bool,
        reason: String,
    },
    Wait,
}

/// Decide the next step of a replica snapshot on its node.
pub fn replica_snapshot_step(v: &ReplicaSnapshotNodeView) -> ReplicaSnapshotStep {
    match (&v.host, v.delete) {
        (HostSnapshot::Present { .. }, true) => ReplicaSnapshotStep::DeleteOnHost,
        (HostSnapshot::Absent, true) => ReplicaSnapshotStep::Remove,
        (HostSnapshot::Present { size_bytes, valid }, false) => {
            let (state, reason) = if *valid {
                (VolumeState::Ready, v.note.clone())
            } else {
                (
                    VolumeState::NotReady,
                    "snapshot invalid: its change space (snapsize) overflowed".to_owned(),
                )
            };
            ReplicaSnapshotStep::Report {
                state,
                size_bytes: *size_bytes,
                invalid: !valid,
                reason,
            }
        }
        (HostSnapshot::Absent, false) => {
            if v.merging {
                // Consumed by a finished rollback: nothing to report until deleted.
                ReplicaSnapshotStep::Wait
            } else if matches!(v.state, VolumeState::Ready | VolumeState::NotReady) {
                // It was taken, and is gone from the host: never silently re-taken (that
                // would be a different point in time).
                ReplicaSnapshotStep::Report {
                    state: VolumeState::NotReady,
                    size_bytes: 0,
                    invalid: true,
                    reason: "the snapshot is missing on the host".into(),
                }
            } else if !v.source_present {
                ReplicaSnapshotStep::Report {
                    state: VolumeState::Creating,
                    size_bytes: 0,
                    invalid: false,
                    reason: "waiting for the source replica's volume on this node".into(),
                }
            } else {
                ReplicaSnapshotStep::Create
            }
        }
    }
}

/// What kind of snapshot a node takes, for [`snapsize_note`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    /// lvm COW snapshot of a thick LV: `snapsize` is its change space, honoured.
    Cow,
    /// lvm thin snapshot of a thin volume: shares the origin's blocks in the thin pool and
    /// has no change space of its own.
    Thin,
    /// file-engine reflink copy: shares the volume's blocks, reserves nothing.
    Reflink,
}

/// What a node says when a snapshot asks for a COW size (`snapsize`) its kind of snapshot
/// cannot honour (reflink copies and thin snapshots reserve no space), so the size is
/// reported instead of silently dropped. `None` when the size is just the default (the
/// volume's required or allocated size) or the snapshot is a COW snapshot, whose change space
/// is exactly `snapsize`.
pub fn snapsize_note(
    kind: SnapshotKind,
    requested_bytes: u64,
    volume_required_bytes: u64,
    volume_allocated_bytes: u64,
) -> Option<String> {
    if requested_bytes == volume_required_bytes || requested_bytes == volume_allocated_bytes {
        return None;
    }
    let why = match kind {
        SnapshotKind::Cow => return None,
        SnapshotKind::Reflink => "file-engine snapshots are reflink copies with no reserved space",
        SnapshotKind::Thin => {
            "thin snapshots share the volume's blocks in the thin pool and have no change space \
             of their own"
        }
    };
    Some(format!(
        "snapsize ignored ({requested_bytes} bytes requested): {why}"
    ))
}

/// [`snapsize_note`] for a file-engine node (`file_engine`) or a thick lvm one.
pub fn file_snapsize_note(
    file_engine: bool,
    requested_bytes: u64,
    volume_required_bytes: u64,
    volume_allocated_bytes: u64,
) -> Option<String> {
    let kind = if file_engine {
        SnapshotKind::Reflink
    } else {
        SnapshotKind::Cow
    };
    snapsize_note(
        kind,
        requested_bytes,
        volume_required_bytes,
        volume_allocated_bytes,
    )
}

// ---------------------------------------------------------------------------------------
// Deleting a volume that has snapshots
// ---------------------------------------------------------------------------------------

/// One snapshot of a volume, for [`volume_delete_check`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeSnapshotRef {
    pub name: String,
    /// `spec.delete` is set: it is on its way out.
    pub deleting: bool,
}

/// May a volume with these snapshots be deleted?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeDeleteCheck {
    /// No snapshot left: delete.
    Allowed,
    /// Snapshots the user has not deleted: refuse (CSI `FAILED_PRECONDITION`, REST 409), and a
    /// volume already marked for deletion keeps its replicas until they are gone.
    Refused {
        snapshots: Vec<String>,
        message: String,
    },
    /// Only snapshots being deleted remain: a delete request is accepted, the replicas are
    /// removed once they are gone.
    WaitForSnapshots {
        snapshots: Vec<String>,
        message: String,
    },
}

/// The one rule for deleting a volume that has snapshots, used by the CSI driver, the REST
/// API / `hwameictl volume delete` and the volume controller: **snapshots are deleted first**.
///
/// On lvm a COW snapshot lives off its origin LV: removing the origin destroys the
/// snapshots. On the file engine a reflink copy would survive, but one rule for every engine
/// keeps a volume's fate independent of the node it landed on. (The original instead
/// answers CSI `DeleteVolume` with success and keeps the LV until the snapshots are gone,
/// a deletion nobody can see.)
pub fn volume_delete_check(volume: &str, snapshots: &[VolumeSnapshotRef]) -> VolumeDeleteCheck {
    let mut live: Vec<String> = snapshots
        .iter()
        .filter(|s| !s.deleting)
        .map(|s| s.name.clone())
        .collect();
    live.sort();
    if !live.is_empty() {
        let message = format!(
            "volume {volume} has {} snapshot(s): {}; delete them first (hwameictl snapshot \
             delete NAME, or delete the VolumeSnapshots)",
            live.len(),
            live.join(", ")
        );
        return VolumeDeleteCheck::Refused {
            snapshots: live,
            message,
        };
    }
    let mut going: Vec<String> = snapshots.iter().map(|s| s.name.clone()).collect();
    going.sort();
    if going.is_empty() {
        return VolumeDeleteCheck::Allowed;
    }
    let message = format!(
        "deletion waits for snapshot(s) being deleted: {}",
        going.join(", ")
    );
    VolumeDeleteCheck::WaitForSnapshots {
        snapshots: going,
        message,
    }
}

// ---------------------------------------------------------------------------------------
// LocalVolumeSnapshotRestore (cluster side)
// ---------------------------------------------------------------------------------------

/// The target volume of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreTargetView {
    pub state: VolumeState,
    pub pool: String,
    pub required_bytes: u64,
    /// Nodes where a replica of the target has its device.
    pub ready_nodes: Vec<String>,
    /// `status.publishedNode` (empty when not published).
    pub published_node: String,
}

/// One replica snapshot of the source snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreSourceReplica {
    pub name: String,
    pub node: String,
    pub pool: String,
}

/// The source snapshot of a restore.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreSnapshotView {
    pub state: VolumeState,
    pub source_volume: String,
    /// Required size of the snapshot's source volume (a restore target must be as large).
    pub source_bytes: u64,
    /// A thin snapshot (of a thin volume). It is restored like a COW snapshot, by a copy into
    /// the target volume, which is thin or thick as its own parameters say, and rolled back
    /// by a merge that LVM completes at once while the origin is not open.
    pub thin: bool,
    pub delete: bool,
    pub replicas: Vec<RestoreSourceReplica>,
}

/// One per-node restore.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaRestoreView {
    pub name: String,
    pub node: String,
    pub state: OperationState,
    pub message: String,
    /// Percent done as the node reported it.
    pub progress: Option<i32>,
}

/// Everything the restore controller needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RestoreView {
    pub state: OperationState,
    pub restore_type: RestoreType,
    pub abort: bool,
    /// `spec.targetVolume` as written by the user (empty allowed for rollback).
    pub target_name: String,
    pub snapshot: Option<RestoreSnapshotView>,
    pub target: Option<RestoreTargetView>,
    pub replica_restores: Vec<ReplicaRestoreView>,
}

/// One per-node restore to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRestorePlan {
    pub node: String,
    pub replica_snapshot: String,
    pub target_volume: String,
    pub target_pool: String,
}

/// The next step of a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreStep {
    SetState {
        state: OperationState,
        message: String,
    },
    /// Fill in what the user left out (rollback: the target is the snapshot's source).
    SetTarget {
        volume: String,
        pool: String,
    },
    CreateReplicaRestores(Vec<ReplicaRestorePlan>),
    /// Rollback finished: the snapshot was consumed by the merge; mark it deleted.
    ConsumeSnapshot,
    /// Remove the restore object (rollbacks after completion, aborted/failed ones never).
    Remove,
    /// Wait for the nodes (or the target volume).
    Wait(&'static str),
}

/// Decide the next step of a restore.
pub fn restore_step(v: &RestoreView) -> RestoreStep {
    use OperationState as S;
    let fail = |m: String| RestoreStep::SetState {
        state: S::Failed,
        message: m,
    };
    match v.state {
        S::Failed | S::Aborted => return RestoreStep::Wait("finished"),
        S::Completed => {
            return match v.restore_type {
                // The seed: a rollback's object is removed once it completed.
                RestoreType::Rollback => {
                    if v.snapshot.as_ref().is_some_and(|s| !s.delete) {
                        RestoreStep::ConsumeSnapshot
                    } else {
                        RestoreStep::Remove
                    }
                }
                // A restore into a new volume stays as the record CSI waits for; it is
                // removed with its target volume.
                RestoreType::Create if v.target.is_none() => RestoreStep::Remove,
                RestoreType::Create => RestoreStep::Wait("completed"),
            };
        }
        _ => {}
    }
    let started = !v.replica_restores.is_empty();
    // Abort is honoured until the nodes start: once they copy or merge, the data is being
    // changed and the request runs to its end.
    if v.abort && !started {
        return RestoreStep::SetState {
            state: S::Aborted,
            message: "aborted before it started".into(),
        };
    }
    if v.state == S::Unknown {
        return RestoreStep::SetState {
            state: S::Submitted,
            message: String::new(),
        };
    }
    let Some(snap) = &v.snapshot else {
        return fail("the source snapshot does not exist".into());
    };
    if snap.delete {
        return fail("the source snapshot is being deleted".into());
    }
    match v.restore_type {
        RestoreType::Rollback => {
            if v.target_name.is_empty() {
                let pool = snap.replicas.first().map(|r| r.pool.clone());
                return RestoreStep::SetTarget {
                    volume: snap.source_volume.clone(),
                    pool: pool.unwrap_or_default(),
                };
            }
            if v.target_name != snap.source_volume {
                return fail(format!(
                    "a rollback writes the snapshot's source volume {}, not {}",
                    snap.source_volume, v.target_name
                ));
            }
        }
        RestoreType::Create => {
            if v.target_name.is_empty() {
                return fail("restoreType create needs spec.targetVolume".into());
            }
            if v.target_name == snap.source_volume {
                return fail(
                    "the target is the snapshot's own source volume; use restoreType rollback"
                        .into(),
                );
            }
        }
    }
    if snap.state != VolumeState::Ready {
        if started {
            return RestoreStep::Wait("snapshot not ready");
        }
        return RestoreStep::Wait("waiting for the snapshot to be Ready");
    }
    let Some(target) = &v.target else {
        return match v.restore_type {
            RestoreType::Rollback => fail("the snapshot's source volume does not exist".into()),
            RestoreType::Create => RestoreStep::Wait("waiting for the target volume"),
        };
    };
    if !started {
        if v.restore_type == RestoreType::Rollback && !target.published_node.is_empty() {
            // Refused, not queued: the application must be stopped first (the seed).
            return fail(format!(
                "volume {} is published on {}; stop its I/O (unpublish) before a rollback",
                v.target_name, target.published_node
            ));
        }
        if v.restore_type == RestoreType::Create && target.required_bytes < snap.source_bytes {
            return fail(format!(
                "target volume {} ({} bytes) is smaller than the snapshot's source ({} bytes)",
                v.target_name, target.required_bytes, snap.source_bytes
            ));
        }
        let missing: Vec<&RestoreSourceReplica> = snap
            .replicas
            .iter()
            .filter(|r| !target.ready_nodes.contains(&r.node))
            .collect();
        if !missing.is_empty() {
            return RestoreStep::Wait("waiting for the target's replicas on the snapshot's nodes");
        }
        if v.state == S::Submitted {
            return RestoreStep::CreateReplicaRestores(
                snap.replicas
                    .iter()
                    .map(|r| ReplicaRestorePlan {
                        node: r.node.clone(),
                        replica_snapshot: r.name.clone(),
                        target_volume: v.target_name.clone(),
                        target_pool: if target.pool.is_empty() {
                            r.pool.clone()
                        } else {
                            target.pool.clone()
                        },
                    })
                    .collect(),
            );
        }
    }
    if v.state == S::Submitted {
        return RestoreStep::SetState {
            state: S::InProgress,
            message: String::new(),
        };
    }
    if let Some(f) = v.replica_restores.iter().find(|r| r.state == S::Failed) {
        return fail(format!("on {}: {}", f.node, f.message));
    }
    if v.replica_restores.iter().all(|r| r.state == S::Completed) {
        return RestoreStep::SetState {
            state: S::Completed,
            message: String::new(),
        };
    }
    if v.replica_restores.iter().any(|r| r.state == S::Aborted) {
        return RestoreStep::SetState {
            state: S::Aborted,
            message: "aborted on a node".into(),
        };
    }
    let progress: Vec<String> = v
        .replica_restores
        .iter()
        .filter(|r| !r.message.is_empty())
        .map(|r| format!("{}: {}", r.node, r.message))
        .collect();
    let message = progress.join("; ");
    RestoreStep::SetState {
        state: S::InProgress,
        message,
    }
}

/// The progress of a restore in percent: 100 once Completed; while it runs, the slowest
/// node (a node that has not reported counts as 0); `None` before any node reported and for
/// restores that ended otherwise.
pub fn restore_progress(v: &RestoreView) -> Option<i32> {
    match v.state {
        OperationState::Completed => return Some(100),
        OperationState::Failed | OperationState::Aborted => return None,
        _ => {}
    }
    if v.replica_restores.iter().all(|r| r.progress.is_none()) {
        return None;
    }
    v.replica_restores
        .iter()
        .map(|r| {
            if r.state == OperationState::Completed {
                100
            } else {
                r.progress.unwrap_or(0).clamp(0, 100)
            }
        })
        .min()
}

// ---------------------------------------------------------------------------------------
// Thin pools
// ---------------------------------------------------------------------------------------

/// Usage above which a thin pool's data or metadata is reported with a warning (percent).
pub const THIN_WARN_PERCENT: f64 = 80.0;

/// Error parsing an over-provision ratio.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("over-provision ratio {0:?}: expected a decimal number >= 1.0")]
pub struct RatioError(pub String);

/// Parse a ThinPoolClaim's `overProvisionRatio` (`"1.0"` when empty).
pub fn parse_ratio(s: &str) -> Result<f64, RatioError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(1.0);
    }
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 1.0 => Ok(r),
        _ => Err(RatioError(s.to_owned())),
    }
}

/// A thin pool's capacity and what is provisioned in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThinPool {
    pub size_bytes: u64,
    pub over_provision_ratio: f64,
    /// Σ virtual sizes of the thin volumes plus what thin snapshots already use.
    pub provisioned_bytes: u64,
}

/// One member of a thin pool, for [`provisioned_bytes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThinMember {
    /// A thin volume: counts its full virtual size.
    Volume { virtual_bytes: u64 },
    /// A thin snapshot: counts what it really holds (`size × data%`).
    Snapshot {
        virtual_bytes: u64,
        data_percent: f64,
    },
}

/// Σ of the members' accounted sizes (what upstream calls provisioned).
pub fn provisioned_bytes(members: &[ThinMember]) -> u64 {
    members
        .iter()
        .map(|m| match *m {
            ThinMember::Volume { virtual_bytes } => virtual_bytes,
            ThinMember::Snapshot {
                virtual_bytes,
                data_percent,
            } => {
                let p = data_percent.clamp(0.0, 100.0);
                ((virtual_bytes as f64) * p / 100.0).ceil() as u64
            }
        })
        .fold(0u64, |a, b| a.saturating_add(b))
}

impl ThinPool {
    /// The most that may be provisioned: `size × ratio` (saturating).
    pub fn limit_bytes(&self) -> u64 {
        let l = (self.size_bytes as f64) * self.over_provision_ratio.max(1.0);
        if l >= u64::MAX as f64 {
            u64::MAX
        } else {
            l.floor() as u64
        }
    }

    /// Bytes that can still be provisioned.
    pub fn free_bytes(&self) -> u64 {
        self.limit_bytes().saturating_sub(self.provisioned_bytes)
    }

    /// Whether a new thin volume of `bytes` fits under the ratio.
    pub fn can_provision(&self, bytes: u64) -> bool {
        self.provisioned_bytes
            .checked_add(bytes)
            .is_some_and(|t| t <= self.limit_bytes())
    }
}

/// Warnings for a thin pool's data and metadata usage (percent), empty when both are below
/// [`THIN_WARN_PERCENT`].
pub fn thin_usage_warnings(data_percent: f64, metadata_percent: f64) -> Vec<String> {
    let mut out = Vec::new();
    if data_percent >= THIN_WARN_PERCENT {
        out.push(format!("thin pool data {data_percent:.1}% used"));
    }
    if metadata_percent >= THIN_WARN_PERCENT {
        out.push(format!("thin pool metadata {metadata_percent:.1}% used"));
    }
    out
}

#[cfg(test)]
mod tests;
