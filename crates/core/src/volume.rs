//! Volume, replica, expansion and node-liveness state machines, and size rounding.
//!
//! Every machine here is a pure *transition function*: it takes a plain view of an object and of
//! what was observed (child objects, the host device), and returns the **one** next step to
//! take. A reconciler applies that step (a status write, a child object, an engine call) and
//! runs the function again on the next pass. Because each step is decided from observed state
//! only, a reconciler killed between two steps resumes correctly: the next pass sees the same
//! (or a more advanced) world and picks the same (or the next) step.
//!
//! # LocalVolume (controller side)
//!
//! ```text
//!   ""  ──► Creating ──(config written)──► NotReady ──(≥ replicaNumber replicas Ready)──► Ready
//!             ▲   │                           ▲  │                                         │
//!             │   └─(no room: stay, retry)    │  └───────(a replica not Ready)◄────────────┘
//!             └──────(config missing/short/capacity grew)───────────────────────────────────┘
//!   any ──(spec.delete)──► ToBeDeleted ──(all replicas Deleted or gone)──► Deleted ──► removed
//! ```
//!
//! # LocalVolumeReplica (node side)
//!
//! ```text
//!   "" ──► Creating ──(device exists at size)──► Ready ◄──► NotReady (device lost / extending)
//!   any ──(spec.delete)──► ToBeDeleted ──(device removed)──► Deleted ──► object removed
//! ```
//!
//! # LocalVolumeExpand
//!
//! `"" → Submitted → InProgress → Completed` (then removed); shrinking or a missing volume →
//! `Failed` with a message; `abort` → `ToBeAborted → Aborted` (then removed).

use crate::types::{NodeState, OperationState, ReplicaState, VolumeState};

/// LVM physical extent size; every volume size is a multiple of it (the file engine follows the
/// same rule so both engines report the same sizes).
pub const EXTENT_BYTES: u64 = 4 * 1024 * 1024;

/// Smallest volume (`requiredCapacityBytes` minimum).
pub const MIN_VOLUME_BYTES: u64 = EXTENT_BYTES;

/// Smallest growth that triggers an extension of an existing replica
/// (`VolumeExpansionCapacityBytesMin`): a replica within this of its required size counts as
/// extended. Requests are rounded to extents first, so the slack only absorbs engines that
/// round differently.
pub const EXPANSION_MIN_BYTES: u64 = 10 * 1024 * 1024;

/// Round `bytes` up to a whole number of extents, at least one extent. Saturates at the largest
/// extent multiple below `u64::MAX`.
pub fn round_up_to_extent(bytes: u64) -> u64 {
    if bytes <= EXTENT_BYTES {
        return EXTENT_BYTES;
    }
    match bytes.checked_add(EXTENT_BYTES - 1) {
        Some(b) => b / EXTENT_BYTES * EXTENT_BYTES,
        None => u64::MAX / EXTENT_BYTES * EXTENT_BYTES,
    }
}

// ---------------------------------------------------------------------------------------------
// LocalVolume
// ---------------------------------------------------------------------------------------------

/// What the controller sees of a LocalVolume and its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeView {
    pub state: VolumeState,
    /// `spec.delete` (or the object is being deleted).
    pub delete: bool,
    /// `spec.replicaNumber`.
    pub replica_number: usize,
    /// `spec.requiredCapacityBytes`.
    pub required_bytes: u64,
    /// `spec.config`, if written.
    pub config: Option<ConfigView>,
    /// The LocalVolumeReplica objects of this volume.
    pub replicas: Vec<ReplicaSummary>,
}

/// The parts of `spec.config` the machine needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigView {
    /// Nodes of `config.replicas`.
    pub nodes: Vec<String>,
    /// `config.requiredCapacityBytes`.
    pub required_bytes: u64,
}

/// One replica object as seen by the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSummary {
    pub name: String,
    pub node: String,
    pub state: ReplicaState,
    /// `spec.requiredCapacityBytes` of the replica.
    pub required_bytes: u64,
    /// `status.allocatedCapacityBytes`.
    pub allocated_bytes: u64,
    /// `spec.delete` of the replica.
    pub delete: bool,
}

/// The next thing the controller does for a LocalVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeStep {
    /// Write `status.state`.
    SetState(VolumeState),
    /// Run the placement planner for the missing replicas and write `spec.config` (new
    /// replicas and/or the new capacity, version + 1).
    Allocate,
    /// Create a LocalVolumeReplica on each of these nodes.
    CreateReplicas(Vec<String>),
    /// Copy the volume's capacity into these replicas' `spec.requiredCapacityBytes`.
    ResizeReplicas { names: Vec<String>, bytes: u64 },
    /// Set `spec.delete` on these replicas (volume deleted, or node left the config).
    DeleteReplicas(Vec<String>),
    /// Ready: also record `status.allocatedCapacityBytes` and the replica list.
    MarkReady { allocated_bytes: u64 },
    /// Remove the LocalVolume object.
    Remove,
    /// Nothing to do until something changes.
    Wait,
}

/// The LocalVolume transition function.
pub fn volume_step(v: &VolumeView) -> VolumeStep {
    use VolumeState as S;
    let live: Vec<&ReplicaSummary> = v.replicas.iter().collect();

    if v.delete && !matches!(v.state, S::ToBeDeleted | S::Deleted) {
        return VolumeStep::SetState(S::ToBeDeleted);
    }
    match v.state {
        S::ToBeDeleted => {
            let undeleted: Vec<String> = live
                .iter()
                .filter(|r| !r.delete && r.state != ReplicaState::Deleted)
                .map(|r| r.name.clone())
                .collect();
            if !undeleted.is_empty() {
                return VolumeStep::DeleteReplicas(undeleted);
            }
            if live.iter().all(|r| r.state == ReplicaState::Deleted) {
                VolumeStep::SetState(S::Deleted)
            } else {
                VolumeStep::Wait
            }
        }
        S::Deleted => {
            if live.is_empty() {
                VolumeStep::Remove
            } else {
                VolumeStep::Wait
            }
        }
        S::Unknown => VolumeStep::SetState(S::Creating),
        S::Creating => match &v.config {
            Some(c) if config_complete(v, c) => VolumeStep::SetState(S::NotReady),
            _ => VolumeStep::Allocate,
        },
        // Created / ToBeMounted are not used for LocalVolumes; treat them like NotReady.
        S::Ready | S::NotReady | S::Created | S::ToBeMounted => {
            let Some(c) = v.config.as_ref().filter(|c| config_complete(v, c)) else {
                return VolumeStep::SetState(S::Creating);
            };
            // Replicas on nodes that left the config go away.
            let stray: Vec<String> = live
                .iter()
                .filter(|r| !c.nodes.contains(&r.node) && !r.delete)
                .map(|r| r.name.clone())
                .collect();
            if !stray.is_empty() {
                return VolumeStep::DeleteReplicas(stray);
            }
            let missing: Vec<String> = c
                .nodes
                .iter()
                .filter(|n| !live.iter().any(|r| &r.node == *n))
                .cloned()
                .collect();
            if !missing.is_empty() {
                return VolumeStep::CreateReplicas(missing);
            }
            let small: Vec<String> = live
                .iter()
                .filter(|r| !r.delete && r.required_bytes < c.required_bytes)
                .map(|r| r.name.clone())
                .collect();
            if !small.is_empty() {
                return VolumeStep::ResizeReplicas {
                    names: small,
                    bytes: c.required_bytes,
                };
            }
            let ready: Vec<&&ReplicaSummary> = live
                .iter()
                .filter(|r| {
                    c.nodes.contains(&r.node)
                        && r.state == ReplicaState::Ready
                        && r.allocated_bytes + EXPANSION_MIN_BYTES > c.required_bytes
                })
                .collect();
            if ready.len() >= v.replica_number {
                let allocated = ready.iter().map(|r| r.allocated_bytes).min().unwrap_or(0);
                if v.state == S::Ready {
                    VolumeStep::Wait
                } else {
                    VolumeStep::MarkReady {
                        allocated_bytes: allocated,
                    }
                }
            } else if v.state == S::NotReady {
                VolumeStep::Wait
            } else {
                VolumeStep::SetState(S::NotReady)
            }
        }
    }
}

fn config_complete(v: &VolumeView, c: &ConfigView) -> bool {
    c.nodes.len() >= v.replica_number && c.required_bytes >= round_up_to_extent(v.required_bytes)
}

// ---------------------------------------------------------------------------------------------
// LocalVolumeReplica
// ---------------------------------------------------------------------------------------------

/// What the node agent observed of a replica's device in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceObservation {
    Absent,
    Present { size_bytes: u64 },
}

/// What the node agent sees of one of its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub state: ReplicaState,
    /// `spec.delete`, or the owning volume is gone or being deleted.
    pub delete: bool,
    /// `spec.requiredCapacityBytes`.
    pub required_bytes: u64,
    /// `status.allocatedCapacityBytes`.
    pub allocated_bytes: u64,
    /// Whether `status.devPath` is filled in.
    pub has_device_path: bool,
    pub device: DeviceObservation,
    /// The volume is HA (DRBD-replicated) but this node agent has no replication layer: the
    /// device is created and reported, and the replica stays NotReady rather than claiming a
    /// redundancy it does not have.
    pub unreplicated_ha: bool,
}

/// The next thing the node agent does for a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaStep {
    SetState(ReplicaState),
    /// Create the device with this (extent-rounded) size.
    CreateDevice {
        size_bytes: u64,
    },
    /// Grow the device to this (extent-rounded) size.
    ExtendDevice {
        size_bytes: u64,
    },
    /// Write devPath/storagePath/allocatedCapacityBytes and state Ready.
    ReportReady {
        size_bytes: u64,
    },
    /// Like `ReportReady`, but state NotReady with a condition: an HA replica without
    /// replication.
    ReportUnreplicated {
        size_bytes: u64,
    },
    /// The device of a Ready/NotReady replica disappeared: NotReady with a message; never
    /// recreated silently (that would hand an empty device to a workload that had data).
    ReportLost,
    RemoveDevice,
    RemoveObject,
    Wait,
}

/// The LocalVolumeReplica transition function.
pub fn replica_step(r: &ReplicaView) -> ReplicaStep {
    use ReplicaState as S;
    let want = round_up_to_extent(r.required_bytes);
    if r.delete && !matches!(r.state, S::ToBeDeleted | S::Deleted) {
        return ReplicaStep::SetState(S::ToBeDeleted);
    }
    match r.state {
        S::ToBeDeleted => match r.device {
            DeviceObservation::Present { .. } => ReplicaStep::RemoveDevice,
            DeviceObservation::Absent => ReplicaStep::SetState(S::Deleted),
        },
        S::Deleted => match r.device {
            DeviceObservation::Present { .. } => ReplicaStep::RemoveDevice,
            DeviceObservation::Absent => ReplicaStep::RemoveObject,
        },
        S::Unknown | S::Invalid => ReplicaStep::SetState(S::Creating),
        S::Creating => match r.device {
            DeviceObservation::Absent => ReplicaStep::CreateDevice { size_bytes: want },
            DeviceObservation::Present { size_bytes } if size_bytes < want => {
                ReplicaStep::ExtendDevice { size_bytes: want }
            }
            DeviceObservation::Present { size_bytes } if r.unreplicated_ha => {
                ReplicaStep::ReportUnreplicated { size_bytes }
            }
            DeviceObservation::Present { size_bytes } => ReplicaStep::ReportReady { size_bytes },
        },
        S::Ready | S::NotReady => match r.device {
            DeviceObservation::Absent => {
                if r.state == S::Ready {
                    ReplicaStep::ReportLost
                } else {
                    ReplicaStep::Wait
                }
            }
            DeviceObservation::Present { size_bytes } if size_bytes < want => {
                ReplicaStep::ExtendDevice { size_bytes: want }
            }
            DeviceObservation::Present { size_bytes } if r.unreplicated_ha => {
                if r.state != S::NotReady || r.allocated_bytes != size_bytes || !r.has_device_path {
                    ReplicaStep::ReportUnreplicated { size_bytes }
                } else {
                    ReplicaStep::Wait
                }
            }
            DeviceObservation::Present { size_bytes } => {
                if r.state != S::Ready || r.allocated_bytes != size_bytes || !r.has_device_path {
                    ReplicaStep::ReportReady { size_bytes }
                } else {
                    ReplicaStep::Wait
                }
            }
        },
    }
}

// ---------------------------------------------------------------------------------------------
// LocalVolumeExpand
// ---------------------------------------------------------------------------------------------

/// What the controller sees of a LocalVolumeExpand and its volume.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpandView {
    pub state: OperationState,
    pub abort: bool,
    /// `spec.requiredCapacityBytes` of the expand request.
    pub required_bytes: u64,
    /// The target volume, if it exists.
    pub volume: Option<ExpandVolumeView>,
}

/// The target volume of an expansion.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpandVolumeView {
    pub state: VolumeState,
    pub required_bytes: u64,
    /// `(state, allocatedCapacityBytes)` of each replica.
    pub replicas: Vec<(ReplicaState, u64)>,
}

/// The next thing the controller does for a LocalVolumeExpand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpandStep {
    SetState {
        state: OperationState,
        message: String,
    },
    /// Raise the volume's `spec.requiredCapacityBytes` to this (rounded) size.
    RaiseVolume {
        bytes: u64,
    },
    /// Completed: record the allocated size.
    Complete {
        allocated_bytes: u64,
    },
    Remove,
    Wait,
}

/// The LocalVolumeExpand transition function.
pub fn expand_step(e: &ExpandView) -> ExpandStep {
    use OperationState as S;
    let target = round_up_to_extent(e.required_bytes);
    let set = |state: S, message: String| ExpandStep::SetState { state, message };
    if e.abort && !e.state.is_terminal() && !matches!(e.state, S::ToBeAborted) {
        return set(S::ToBeAborted, "abort requested".into());
    }
    match e.state {
        S::Completed | S::Aborted => ExpandStep::Remove,
        S::Failed => ExpandStep::Wait,
        S::ToBeAborted => set(S::Aborted, "aborted".into()),
        S::Unknown => match &e.volume {
            None => set(S::Failed, "volume not found".into()),
            Some(v) if matches!(v.state, VolumeState::ToBeDeleted | VolumeState::Deleted) => {
                set(S::Failed, "volume is being deleted".into())
            }
            Some(v) if target < v.required_bytes => set(
                S::Failed,
                format!(
                    "shrinking a volume is not supported: requested {target} bytes, volume has {} bytes",
                    v.required_bytes
                ),
            ),
            Some(_) => set(S::Submitted, String::new()),
        },
        S::Submitted => match &e.volume {
            None => set(S::Failed, "volume not found".into()),
            Some(v) if v.required_bytes < target => ExpandStep::RaiseVolume { bytes: target },
            Some(_) => set(S::InProgress, String::new()),
        },
        S::InProgress => match &e.volume {
            None => set(S::Failed, "volume disappeared during expansion".into()),
            Some(v) => {
                let grown = !v.replicas.is_empty()
                    && v.replicas
                        .iter()
                        .all(|(s, a)| *s == ReplicaState::Ready && *a >= target);
                if grown && v.state == VolumeState::Ready {
                    ExpandStep::Complete {
                        allocated_bytes: v.replicas.iter().map(|(_, a)| *a).min().unwrap_or(target),
                    }
                } else {
                    ExpandStep::Wait
                }
            }
        },
        // Migration/convert states do not apply to an expansion.
        other => set(
            S::Failed,
            format!("unexpected state {other:?} for a volume expansion"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Node liveness
// ---------------------------------------------------------------------------------------------

/// State of a LocalStorageNode from the age of its last heartbeat. `Maintain` is set by an
/// administrator and kept; otherwise a heartbeat younger than `offline_after_secs` means Ready.
/// `age_secs = None` means the node never reported.
pub fn node_state(current: NodeState, age_secs: Option<u64>, offline_after_secs: u64) -> NodeState {
    if current == NodeState::Maintain {
        return NodeState::Maintain;
    }
    match age_secs {
        Some(a) if a < offline_after_secs => NodeState::Ready,
        _ => NodeState::Offline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    #[test]
    fn extent_rounding() {
        assert_eq!(round_up_to_extent(0), 4 * MIB);
        assert_eq!(round_up_to_extent(1), 4 * MIB);
        assert_eq!(round_up_to_extent(4 * MIB), 4 * MIB);
        assert_eq!(round_up_to_extent(4 * MIB + 1), 8 * MIB);
        assert_eq!(round_up_to_extent(GIB), GIB);
        assert_eq!(round_up_to_extent(GIB - 1), GIB);
        assert_eq!(round_up_to_extent(u64::MAX) % EXTENT_BYTES, 0);
    }

    proptest! {
        #[test]
        fn rounding_is_minimal_multiple(b in 0u64..u64::MAX / 2) {
            let r = round_up_to_extent(b);
            prop_assert_eq!(r % EXTENT_BYTES, 0);
            prop_assert!(r >= b);
            prop_assert!(r >= EXTENT_BYTES);
            prop_assert!(r < b.max(1) + EXTENT_BYTES);
        }
    }

    fn replica(name: &str, node: &str, state: ReplicaState, alloc: u64) -> ReplicaSummary {
        ReplicaSummary {
            name: name.into(),
            node: node.into(),
            state,
            required_bytes: GIB,
            allocated_bytes: alloc,
            delete: false,
        }
    }

    fn lv(state: VolumeState) -> VolumeView {
        VolumeView {
            state,
            replica_number: 1,
            required_bytes: GIB,
            ..Default::default()
        }
    }

    fn cfg(nodes: &[&str], bytes: u64) -> Option<ConfigView> {
        Some(ConfigView {
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            required_bytes: bytes,
        })
    }

    #[test]
    fn volume_creation_path() {
        use VolumeState as S;
        assert_eq!(
            volume_step(&lv(S::Unknown)),
            VolumeStep::SetState(S::Creating)
        );
        assert_eq!(volume_step(&lv(S::Creating)), VolumeStep::Allocate);
        let mut v = lv(S::Creating);
        v.config = cfg(&["n1"], GIB);
        assert_eq!(volume_step(&v), VolumeStep::SetState(S::NotReady));
        v.state = S::NotReady;
        assert_eq!(
            volume_step(&v),
            VolumeStep::CreateReplicas(vec!["n1".into()])
        );
        v.replicas = vec![replica("r1", "n1", ReplicaState::Creating, 0)];
        assert_eq!(volume_step(&v), VolumeStep::Wait);
        v.replicas[0].state = ReplicaState::Ready;
        v.replicas[0].allocated_bytes = GIB;
        assert_eq!(
            volume_step(&v),
            VolumeStep::MarkReady {
                allocated_bytes: GIB
            }
        );
        v.state = S::Ready;
        assert_eq!(volume_step(&v), VolumeStep::Wait);
        v.replicas[0].state = ReplicaState::NotReady;
        assert_eq!(volume_step(&v), VolumeStep::SetState(S::NotReady));
    }

    #[test]
    fn volume_expansion_path() {
        use VolumeState as S;
        let mut v = lv(S::Ready);
        v.config = cfg(&["n1"], GIB);
        v.replicas = vec![replica("r1", "n1", ReplicaState::Ready, GIB)];
        v.required_bytes = 2 * GIB;
        assert_eq!(volume_step(&v), VolumeStep::SetState(S::Creating));
        v.state = S::Creating;
        assert_eq!(volume_step(&v), VolumeStep::Allocate);
        v.config = cfg(&["n1"], 2 * GIB);
        assert_eq!(volume_step(&v), VolumeStep::SetState(S::NotReady));
        v.state = S::NotReady;
        assert_eq!(
            volume_step(&v),
            VolumeStep::ResizeReplicas {
                names: vec!["r1".into()],
                bytes: 2 * GIB
            }
        );
        v.replicas[0].required_bytes = 2 * GIB;
        assert_eq!(
            volume_step(&v),
            VolumeStep::Wait,
            "replica still at the old size"
        );
        v.replicas[0].allocated_bytes = 2 * GIB;
        assert_eq!(
            volume_step(&v),
            VolumeStep::MarkReady {
                allocated_bytes: 2 * GIB
            }
        );
    }

    #[test]
    fn volume_deletion_path() {
        use VolumeState as S;
        let mut v = lv(S::Ready);
        v.config = cfg(&["n1"], GIB);
        v.replicas = vec![replica("r1", "n1", ReplicaState::Ready, GIB)];
        v.delete = true;
        assert_eq!(volume_step(&v), VolumeStep::SetState(S::ToBeDeleted));
        v.state = S::ToBeDeleted;
        assert_eq!(
            volume_step(&v),
            VolumeStep::DeleteReplicas(vec!["r1".into()])
        );
        v.replicas[0].delete = true;
        assert_eq!(volume_step(&v), VolumeStep::Wait);
        v.replicas[0].state = ReplicaState::Deleted;
        assert_eq!(volume_step(&v), VolumeStep::SetState(S::Deleted));
        v.state = S::Deleted;
        assert_eq!(
            volume_step(&v),
            VolumeStep::Wait,
            "replica object still exists"
        );
        v.replicas.clear();
        assert_eq!(volume_step(&v), VolumeStep::Remove);
    }

    #[test]
    fn stray_replicas_are_deleted() {
        let mut v = lv(VolumeState::NotReady);
        v.config = cfg(&["n1"], GIB);
        v.replicas = vec![
            replica("r1", "n1", ReplicaState::Ready, GIB),
            replica("r2", "n2", ReplicaState::Ready, GIB),
        ];
        assert_eq!(
            volume_step(&v),
            VolumeStep::DeleteReplicas(vec!["r2".into()])
        );
    }

    fn rv(state: ReplicaState, device: DeviceObservation) -> ReplicaView {
        ReplicaView {
            state,
            delete: false,
            required_bytes: GIB + 1,
            allocated_bytes: 0,
            has_device_path: false,
            device,
            unreplicated_ha: false,
        }
    }

    #[test]
    fn unreplicated_ha_replica_stays_not_ready() {
        use DeviceObservation::*;
        use ReplicaState as S;
        let mut r = rv(
            S::Creating,
            Present {
                size_bytes: 2 * GIB,
            },
        );
        r.unreplicated_ha = true;
        assert_eq!(
            replica_step(&r),
            ReplicaStep::ReportUnreplicated {
                size_bytes: 2 * GIB
            }
        );
        r.state = S::NotReady;
        r.allocated_bytes = 2 * GIB;
        r.has_device_path = true;
        assert_eq!(replica_step(&r), ReplicaStep::Wait);
        r.state = S::Ready;
        assert_eq!(
            replica_step(&r),
            ReplicaStep::ReportUnreplicated {
                size_bytes: 2 * GIB
            }
        );
    }

    #[test]
    fn replica_creation_is_idempotent_across_crashes() {
        use DeviceObservation::*;
        use ReplicaState as S;
        let want = GIB + EXTENT_BYTES;
        assert_eq!(
            replica_step(&rv(S::Unknown, Absent)),
            ReplicaStep::SetState(S::Creating)
        );
        assert_eq!(
            replica_step(&rv(S::Creating, Absent)),
            ReplicaStep::CreateDevice { size_bytes: want }
        );
        // Crash after the device was created, before the status write: report it.
        assert_eq!(
            replica_step(&rv(S::Creating, Present { size_bytes: want })),
            ReplicaStep::ReportReady { size_bytes: want }
        );
        let mut r = rv(S::Ready, Present { size_bytes: want });
        r.allocated_bytes = want;
        r.has_device_path = true;
        assert_eq!(replica_step(&r), ReplicaStep::Wait);
        r.required_bytes = 2 * GIB;
        assert_eq!(
            replica_step(&r),
            ReplicaStep::ExtendDevice {
                size_bytes: 2 * GIB
            }
        );
        // Crash after extend, before the status write.
        r.device = Present {
            size_bytes: 2 * GIB,
        };
        assert_eq!(
            replica_step(&r),
            ReplicaStep::ReportReady {
                size_bytes: 2 * GIB
            }
        );
        r.device = Absent;
        assert_eq!(replica_step(&r), ReplicaStep::ReportLost);
    }

    #[test]
    fn replica_deletion_is_idempotent_across_crashes() {
        use DeviceObservation::*;
        use ReplicaState as S;
        let mut r = rv(S::Ready, Present { size_bytes: GIB });
        r.delete = true;
        assert_eq!(replica_step(&r), ReplicaStep::SetState(S::ToBeDeleted));
        r.state = S::ToBeDeleted;
        assert_eq!(replica_step(&r), ReplicaStep::RemoveDevice);
        r.device = Absent;
        assert_eq!(replica_step(&r), ReplicaStep::SetState(S::Deleted));
        r.state = S::Deleted;
        assert_eq!(replica_step(&r), ReplicaStep::RemoveObject);
    }

    fn ev(state: OperationState, required: u64, vol_required: u64) -> ExpandView {
        ExpandView {
            state,
            abort: false,
            required_bytes: required,
            volume: Some(ExpandVolumeView {
                state: VolumeState::Ready,
                required_bytes: vol_required,
                replicas: vec![(ReplicaState::Ready, vol_required)],
            }),
        }
    }

    #[test]
    fn expansion_flow_and_shrink_refusal() {
        use OperationState as S;
        let e = ev(S::Unknown, GIB, 2 * GIB);
        match expand_step(&e) {
            ExpandStep::SetState {
                state: S::Failed,
                message,
            } => {
                assert!(
                    message.contains("shrinking a volume is not supported"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        let mut e = ev(S::Unknown, 2 * GIB, GIB);
        assert!(matches!(
            expand_step(&e),
            ExpandStep::SetState {
                state: S::Submitted,
                ..
            }
        ));
        e.state = S::Submitted;
        assert_eq!(expand_step(&e), ExpandStep::RaiseVolume { bytes: 2 * GIB });
        e.volume.as_mut().unwrap().required_bytes = 2 * GIB;
        assert!(matches!(
            expand_step(&e),
            ExpandStep::SetState {
                state: S::InProgress,
                ..
            }
        ));
        e.state = S::InProgress;
        assert_eq!(expand_step(&e), ExpandStep::Wait);
        e.volume.as_mut().unwrap().replicas = vec![(ReplicaState::Ready, 2 * GIB)];
        assert_eq!(
            expand_step(&e),
            ExpandStep::Complete {
                allocated_bytes: 2 * GIB
            }
        );
        e.state = S::Completed;
        assert_eq!(expand_step(&e), ExpandStep::Remove);
    }

    #[test]
    fn expansion_abort_and_missing_volume() {
        use OperationState as S;
        let mut e = ev(S::InProgress, 2 * GIB, GIB);
        e.abort = true;
        assert!(matches!(
            expand_step(&e),
            ExpandStep::SetState {
                state: S::ToBeAborted,
                ..
            }
        ));
        e.state = S::ToBeAborted;
        assert!(matches!(
            expand_step(&e),
            ExpandStep::SetState {
                state: S::Aborted,
                ..
            }
        ));
        e.state = S::Aborted;
        assert_eq!(expand_step(&e), ExpandStep::Remove);
        let mut e = ev(S::Unknown, GIB, GIB);
        e.volume = None;
        assert!(matches!(
            expand_step(&e),
            ExpandStep::SetState {
                state: S::Failed,
                ..
            }
        ));
    }

    #[test]
    fn node_liveness() {
        assert_eq!(
            node_state(NodeState::Unknown, Some(5), 60),
            NodeState::Ready
        );
        assert_eq!(
            node_state(NodeState::Ready, Some(61), 60),
            NodeState::Offline
        );
        assert_eq!(node_state(NodeState::Offline, None, 60), NodeState::Offline);
        assert_eq!(
            node_state(NodeState::Maintain, Some(1), 60),
            NodeState::Maintain
        );
    }
}
