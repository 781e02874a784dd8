//! Replica placement and capacity accounting for local-storage pools.
//!
//! # The capacity problem
//!
//! A node reports its pools (`LocalStorageNode.status.pools`) some time *after* a volume was
//! created there. If the controller placed replicas by looking only at the last report, a burst
//! of creations would all see the same free space and over-commit the pool. The
//! [`CapacityLedger`] therefore keeps, next to each pool's last report, a set of
//! **reservations**: "volume V will occupy B bytes (one volume slot) in pool P of node N".
//!
//! The committed usage of a pool is
//!
//! ```text
//! used_reported + Σ_reservations max(0, reserved_bytes − reported_size_of_that_volume)
//! ```
//!
//! so a reservation counts fully until the node reports the volume, counts only the missing
//! part while an expansion is in flight, and stops counting once the report catches up: a
//! reservation never counts twice and never leaks capacity. A reservation that is fully covered
//! by the report can be dropped with [`CapacityLedger::settle`]; deleting a volume drops its
//! reservations with [`CapacityLedger::release_volume`].
//!
//! The controller rebuilds the ledger from objects (every LocalVolume's `spec.config` is a
//! reservation of `requiredCapacityBytes` on each replica node) and serialises allocations, so
//! the accounting also survives restarts.
//!
//! # Placement
//!
//! [`plan`] picks the nodes for the missing replicas of a volume, mirroring the original's
//! scheduler (reference §7.3) with its quirks fixed:
//! - nodes already holding a replica are excluded;
//! - a volume group that already has nodes pins the volume to exactly those nodes (co-location),
//!   but unlike the original those nodes must still pass the capacity checks;
//! - otherwise the requested `accessibility` nodes come first (each must pass, else the whole
//!   request fails), then every other ready node that passes, best score first;
//! - a node passes when it is ready, has the pool, the rounded size fits the per-volume limit
//!   and the free capacity (including reservations), and the pool has a free volume slot
//!   ([`MAX_VOLUMES_PER_POOL`]);
//! - score = `(1 − required/free) × 100`, ties broken by node name so plans are deterministic.
//!
//! # Thin volumes
//!
//! A thin volume takes no space from its pool's volume group when it is created; it takes
//! *provisioned* capacity from the pool's thin pool, which may hand out up to
//! `data size × over-provision ratio` ([`crate::snapshot::ThinPool`]). The ledger accounts
//! thin volumes in a separate ledger pool, [`ledger_pool`]`(pool, true)` = `<pool>/thin`,
//! whose report ([`thin_pool_report`]) has `total = size × ratio` and `used = provisioned`.
//! Every rule above (reservations until reported, no double counting, settle, release)
//! applies unchanged, so placement never provisions beyond the ratio. A node without a thin
//! pool (no ThinPoolClaim yet, or a file-engine node) has no such ledger pool and is refused
//! with [`PlacementError::NoThinPool`].

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::volume::round_up_to_extent;

/// The most volumes (LVs, snapshots included) one pool holds (`LVMVolumeMaxCount`).
pub const MAX_VOLUMES_PER_POOL: u32 = 1000;

/// Why a reservation or a placement was refused. Messages contain "insufficient free space"
/// where the original's CSI layer matches on that text to reschedule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlacementError {
    #[error("node {node:?} is unknown to the capacity ledger")]
    UnknownNode { node: String },
    #[error("node {node:?} is not ready")]
    NodeNotReady { node: String },
    #[error("node {node:?} has no pool {pool:?}")]
    NoSuchPool { node: String, pool: String },
    #[error(
        "node {node:?} has no thin pool in pool {pool:?} (create one with a ThinPoolClaim; nodes with the file engine have none)"
    )]
    NoThinPool { node: String, pool: String },
    #[error(
        "insufficient free space in pool {pool:?} on node {node:?}: need {needed_bytes} bytes, {free_bytes} free"
    )]
    InsufficientCapacity {
        node: String,
        pool: String,
        needed_bytes: u64,
        free_bytes: u64,
    },
    #[error(
        "volume of {bytes} bytes exceeds the per-volume limit of {limit_bytes} bytes of pool {pool:?} on node {node:?}"
    )]
    VolumeTooLarge {
        node: String,
        pool: String,
        bytes: u64,
        limit_bytes: u64,
    },
    #[error("pool {pool:?} on node {node:?} already holds its maximum of {max} volumes")]
    TooManyVolumes {
        node: String,
        pool: String,
        max: u32,
    },
    #[error(
        "cannot shrink the reservation of volume {volume:?} on node {node:?} from {current_bytes} to {requested_bytes} bytes"
    )]
    Shrink {
        volume: String,
        node: String,
        current_bytes: u64,
        requested_bytes: u64,
    },
    #[error(
        "no enough available node for volume {volume:?}: need {needed} more, found {found}: {reasons}"
    )]
    NotEnoughNodes {
        volume: String,
        needed: usize,
        found: usize,
        reasons: String,
    },
    #[error("requested node {node:?} cannot hold volume {volume:?}: {reason}")]
    RequestedNodeUnfit {
        volume: String,
        node: String,
        reason: Box<PlacementError>,
    },
    #[error("invalid placement request for volume {volume:?}: {reason}")]
    InvalidRequest { volume: String, reason: String },
}

/// Result type of this module.
pub type Result<T, E = PlacementError> = std::result::Result<T, E>;

/// The last report of one pool on one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolReport {
    /// Pool size.
    pub total_bytes: u64,
    /// Bytes allocated to volumes, as the node measured it.
    pub used_bytes: u64,
    /// Largest single volume the pool accepts (`volumeCapacityBytesLimit`; the original sets it to
    /// the pool size). `0` means "no limit besides free space".
    pub volume_bytes_limit: u64,
    /// Volume slots of the pool (normally [`MAX_VOLUMES_PER_POOL`]).
    pub max_volumes: u32,
    /// Volumes (and snapshots) the pool holds, as counted by the node.
    pub used_volumes: u32,
    /// Sizes of the volumes the report covers, by volume name. Volumes absent here are not yet
    /// (or no longer) on the node.
    pub volumes: BTreeMap<String, u64>,
}

impl PoolReport {
    /// A pool of `total_bytes` with nothing in it.
    pub fn empty(total_bytes: u64) -> Self {
        PoolReport {
            total_bytes,
            used_bytes: 0,
            volume_bytes_limit: total_bytes,
            max_volumes: MAX_VOLUMES_PER_POOL,
            used_volumes: 0,
            volumes: BTreeMap::new(),
        }
    }
}

/// What the ledger knows about one node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeReport {
    /// Whether the node is Ready (not Offline, not in Maintain).
    pub ready: bool,
    /// Pools by name (`LocalStorage_PoolHDD`, ...).
    pub pools: BTreeMap<String, PoolReport>,
}

/// Identity of a reservation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReservationKey {
    pub node: String,
    pub pool: String,
    pub volume: String,
}

/// Committed usage of one pool, reports and reservations together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    pub total_bytes: u64,
    pub committed_bytes: u64,
    pub free_bytes: u64,
    pub committed_volumes: u32,
    pub max_volumes: u32,
}

/// Node reports plus in-flight reservations. See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapacityLedger {
    nodes: BTreeMap<String, NodeReport>,
    reservations: BTreeMap<ReservationKey, u64>,
}

impl CapacityLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record (or replace) a node's report. Reservations are kept.
    pub fn set_node(&mut self, node: impl Into<String>, report: NodeReport) {
        self.nodes.insert(node.into(), report);
    }

    /// Forget a node and its reservations.
    pub fn remove_node(&mut self, node: &str) {
        self.nodes.remove(node);
        self.reservations.retain(|k, _| k.node != node);
    }

    /// The node reports.
    pub fn nodes(&self) -> &BTreeMap<String, NodeReport> {
        &self.nodes
    }

    /// Current reservations and their reserved sizes.
    pub fn reservations(&self) -> &BTreeMap<ReservationKey, u64> {
        &self.reservations
    }

    fn pool(&self, node: &str, pool: &str) -> Result<&PoolReport> {
        let n = self
            .nodes
            .get(node)
            .ok_or_else(|| PlacementError::UnknownNode {
                node: node.to_owned(),
            })?;
        n.pools.get(pool).ok_or_else(|| match thin_base_pool(pool) {
            Some(base) => PlacementError::NoThinPool {
                node: node.to_owned(),
                pool: base.to_owned(),
            },
            None => PlacementError::NoSuchPool {
                node: node.to_owned(),
                pool: pool.to_owned(),
            },
        })
    }

    /// Bytes a reservation adds on top of the report.
    fn extra_bytes(report: &PoolReport, volume: &str, reserved: u64) -> u64 {
        reserved.saturating_sub(report.volumes.get(volume).copied().unwrap_or(0))
    }

    /// Committed usage of one pool.
    pub fn usage(&self, node: &str, pool: &str) -> Result<PoolUsage> {
        let report = self.pool(node, pool)?;
        let mut committed_bytes = report.used_bytes;
        let mut committed_volumes = report.used_volumes;
        for (k, &bytes) in self.pool_reservations(node, pool) {
            committed_bytes =
                committed_bytes.saturating_add(Self::extra_bytes(report, &k.volume, bytes));
            if !report.volumes.contains_key(&k.volume) {
                committed_volumes = committed_volumes.saturating_add(1);
            }
        }
        Ok(PoolUsage {
            total_bytes: report.total_bytes,
            committed_bytes,
            free_bytes: report.total_bytes.saturating_sub(committed_bytes),
            committed_volumes,
            max_volumes: report.max_volumes,
        })
    }

    fn pool_reservations<'a>(
        &'a self,
        node: &'a str,
        pool: &'a str,
    ) -> impl Iterator<Item = (&'a ReservationKey, &'a u64)> + 'a {
        self.reservations
            .iter()
            .filter(move |(k, _)| k.node == node && k.pool == pool)
    }

    /// Check that `volume` can grow to (or be created with) `bytes` (rounded up to extents)
    /// in `pool` of `node`, without changing anything. Returns the rounded size.
    pub fn check(&self, node: &str, pool: &str, volume: &str, bytes: u64) -> Result<u64> {
        let n = self
            .nodes
            .get(node)
            .ok_or_else(|| PlacementError::UnknownNode {
                node: node.to_owned(),
            })?;
        if !n.ready {
            return Err(PlacementError::NodeNotReady {
                node: node.to_owned(),
            });
        }
        let report = self.pool(node, pool)?;
        let rounded = round_up_to_extent(bytes);
        if report.volume_bytes_limit > 0 && rounded > report.volume_bytes_limit {
            return Err(PlacementError::VolumeTooLarge {
                node: node.to_owned(),
                pool: pool.to_owned(),
                bytes: rounded,
                limit_bytes: report.volume_bytes_limit,
            });
        }
        let key = ReservationKey {
            node: node.to_owned(),
            pool: pool.to_owned(),
            volume: volume.to_owned(),
        };
        let current = self.reservations.get(&key).copied();
        let present = report.volumes.contains_key(volume);
        let usage = self.usage(node, pool)?;
        if current.is_none() && !present && usage.committed_volumes >= usage.max_volumes {
            return Err(PlacementError::TooManyVolumes {
                node: node.to_owned(),
                pool: pool.to_owned(),
                max: usage.max_volumes,
            });
        }
        let old_extra = Self::extra_bytes(report, volume, current.unwrap_or(0));
        let new_extra = Self::extra_bytes(report, volume, rounded.max(current.unwrap_or(0)));
        let needed = new_extra - old_extra.min(new_extra);
        if needed > usage.free_bytes {
            return Err(PlacementError::InsufficientCapacity {
                node: node.to_owned(),
                pool: pool.to_owned(),
                needed_bytes: needed,
                free_bytes: usage.free_bytes,
            });
        }
        Ok(rounded)
    }

    /// Reserve `bytes` (rounded up to extents) for `volume` in `pool` of `node`. Reserving again
    /// for the same volume is an expansion: only the growth must fit; asking for less than the
    /// current reservation is refused ([`PlacementError::Shrink`]). Nothing changes on error.
    pub fn reserve(&mut self, node: &str, pool: &str, volume: &str, bytes: u64) -> Result<u64> {
        let rounded = self.check(node, pool, volume, bytes)?;
        let key = ReservationKey {
            node: node.to_owned(),
            pool: pool.to_owned(),
            volume: volume.to_owned(),
        };
        if let Some(&current) = self.reservations.get(&key)
            && rounded < current
        {
            return Err(PlacementError::Shrink {
                volume: volume.to_owned(),
                node: node.to_owned(),
                current_bytes: current,
                requested_bytes: rounded,
            });
        }
        self.reservations.insert(key, rounded);
        Ok(rounded)
    }

    /// Record an existing commitment without checking it (rebuilding the ledger from objects:
    /// a volume already placed on `node` keeps its claim even if the pool is now short).
    /// Keeps the larger of an existing and the new reservation. Returns the rounded size.
    pub fn record(&mut self, node: &str, pool: &str, volume: &str, bytes: u64) -> u64 {
        let rounded = round_up_to_extent(bytes);
        let key = ReservationKey {
            node: node.to_owned(),
            pool: pool.to_owned(),
            volume: volume.to_owned(),
        };
        let slot = self.reservations.entry(key).or_insert(0);
        *slot = (*slot).max(rounded);
        *slot
    }

    /// Drop the reservation of `volume` on `node` (creation failed or the replica is gone).
    pub fn release(&mut self, node: &str, volume: &str) {
        self.reservations
            .retain(|k, _| !(k.node == node && k.volume == volume));
    }

    /// Drop every reservation of `volume` (the volume was deleted).
    pub fn release_volume(&mut self, volume: &str) {
        self.reservations.retain(|k, _| k.volume != volume);
    }

    /// Drop reservations that the reports fully cover (the volume is reported at least at the
    /// reserved size). Returns how many were dropped.
    pub fn settle(&mut self) -> usize {
        let before = self.reservations.len();
        let nodes = &self.nodes;
        self.reservations.retain(|k, &mut bytes| {
            let reported = nodes
                .get(&k.node)
                .and_then(|n| n.pools.get(&k.pool))
                .and_then(|p| p.volumes.get(&k.volume));
            !matches!(reported, Some(&size) if size >= bytes)
        });
        before - self.reservations.len()
    }
}

/// Suffix of the ledger pool that accounts a pool's thin volumes (see the module docs).
pub const THIN_LEDGER_SUFFIX: &str = "/thin";

/// The ledger pool of a volume in `pool`: `pool` itself for thick volumes, `<pool>/thin` for
/// thin ones. (`/` never occurs in pool names, so the two never collide.)
pub fn ledger_pool(pool: &str, thin: bool) -> String {
    if thin {
        format!("{pool}{THIN_LEDGER_SUFFIX}")
    } else {
        pool.to_owned()
    }
}

/// The pool whose thin pool a ledger pool stands for, `None` for a thick ledger pool.
pub fn thin_base_pool(ledger_pool: &str) -> Option<&str> {
    ledger_pool.strip_suffix(THIN_LEDGER_SUFFIX)
}

/// The ledger report of a thin pool: capacity `size × ratio`, used = what the node reports
/// provisioned (thin volumes' virtual sizes + what thin snapshots hold), `volumes` = the thin
/// volumes' virtual sizes by name. No per-volume limit besides the free provisionable bytes.
pub fn thin_pool_report(
    pool: &crate::snapshot::ThinPool,
    volumes: BTreeMap<String, u64>,
) -> PoolReport {
    PoolReport {
        total_bytes: pool.limit_bytes(),
        used_bytes: pool.provisioned_bytes,
        volume_bytes_limit: 0,
        max_volumes: MAX_VOLUMES_PER_POOL,
        used_volumes: u32::try_from(volumes.len()).unwrap_or(u32::MAX),
        volumes,
    }
}

/// A request to place the missing replicas of one volume.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlacementRequest {
    /// Volume name (the reservation key).
    pub volume: String,
    /// Ledger pool name: `LocalStorage_PoolHDD`, ..., or [`ledger_pool`]`(pool, true)` for a
    /// thin volume.
    pub pool: String,
    /// Required capacity; rounded up to extents.
    pub required_bytes: u64,
    /// Total number of replicas wanted (`spec.replicaNumber`).
    pub replicas: usize,
    /// Nodes that already hold a replica of this volume.
    pub existing: Vec<String>,
    /// `spec.accessibility.nodes`: used first, in order, and each must fit.
    pub preferred: Vec<String>,
    /// Nodes of the volume's LocalVolumeGroup, when the group already has placed volumes: the
    /// replicas go exactly there.
    pub group_nodes: Vec<String>,
}

/// Score of a node for a volume: `(1 − required/free) × 100` (higher is better).
pub fn score(required_bytes: u64, free_bytes: u64) -> f64 {
    if free_bytes == 0 {
        return 0.0;
    }
    (1.0 - required_bytes as f64 / free_bytes as f64) * 100.0
}

/// Choose nodes for the `replicas − existing` missing replicas, without reserving. The result
/// is in priority order (the first is the primary when no replica exists yet).
pub fn plan(ledger: &CapacityLedger, req: &PlacementRequest) -> Result<Vec<String>> {
    if req.replicas == 0 {
        return Err(PlacementError::InvalidRequest {
            volume: req.volume.clone(),
            reason: "replicaNumber must be at least 1".into(),
        });
    }
    let existing: BTreeSet<&str> = req.existing.iter().map(String::as_str).collect();
    let needed = req.replicas.saturating_sub(existing.len());
    if needed == 0 {
        return Ok(Vec::new());
    }
    let fit = |node: &str| ledger.check(node, &req.pool, &req.volume, req.required_bytes);
    let mut chosen: Vec<String> = Vec::new();
    let mut reasons: Vec<String> = Vec::new();

    if !req.group_nodes.is_empty() {
        // Co-location: only the group's nodes, in the group's order.
        for node in &req.group_nodes {
            if chosen.len() == needed {
                break;
            }
            if existing.contains(node.as_str()) || chosen.contains(node) {
                continue;
            }
            match fit(node) {
                Ok(_) => chosen.push(node.clone()),
                Err(e) => reasons.push(e.to_string()),
            }
        }
    } else {
        for node in &req.preferred {
            if chosen.len() == needed {
                break;
            }
            if existing.contains(node.as_str()) || chosen.contains(node) {
                continue;
            }
            fit(node).map_err(|e| PlacementError::RequestedNodeUnfit {
                volume: req.volume.clone(),
                node: node.clone(),
                reason: Box::new(e),
            })?;
            chosen.push(node.clone());
        }
        let mut others: Vec<(f64, &String)> = Vec::new();
        for node in ledger.nodes.keys() {
            if existing.contains(node.as_str()) || chosen.contains(node) {
                continue;
            }
            match fit(node) {
                Ok(rounded) => {
                    let free = ledger
                        .usage(node, &req.pool)
                        .map(|u| u.free_bytes)
                        .unwrap_or(0);
                    others.push((score(rounded, free), node));
                }
                Err(e) => reasons.push(e.to_string()),
            }
        }
        others.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        for (_, node) in others {
            if chosen.len() == needed {
                break;
            }
            chosen.push(node.clone());
        }
    }
    if chosen.len() < needed {
        return Err(PlacementError::NotEnoughNodes {
            volume: req.volume.clone(),
            needed,
            found: chosen.len(),
            reasons: if reasons.is_empty() {
                "no candidate nodes".into()
            } else {
                reasons.join("; ")
            },
        });
    }
    Ok(chosen)
}

/// [`plan`], then reserve the capacity on every chosen node, all or nothing.
pub fn plan_and_reserve(
    ledger: &mut CapacityLedger,
    req: &PlacementRequest,
) -> Result<Vec<String>> {
    let nodes = plan(ledger, req)?;
    let mut done: Vec<&String> = Vec::new();
    for node in &nodes {
        if let Err(e) = ledger.reserve(node, &req.pool, &req.volume, req.required_bytes) {
            for n in done {
                ledger.release(n, &req.volume);
            }
            return Err(e);
        }
        done.push(node);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::EXTENT_BYTES;
    use proptest::prelude::*;

    const GIB: u64 = 1 << 30;
    const POOL: &str = "LocalStorage_PoolHDD";

    fn node(total: u64) -> NodeReport {
        NodeReport {
            ready: true,
            pools: BTreeMap::from([(POOL.to_owned(), PoolReport::empty(total))]),
        }
    }

    fn req(volume: &str, bytes: u64, replicas: usize) -> PlacementRequest {
        PlacementRequest {
            volume: volume.into(),
            pool: POOL.into(),
            required_bytes: bytes,
            replicas,
            ..Default::default()
        }
    }

    /// Invariant: committed bytes and volumes never exceed the pool.
    fn assert_not_overcommitted(l: &CapacityLedger) {
        for (name, n) in l.nodes() {
            for pool in n.pools.keys() {
                let u = l.usage(name, pool).unwrap();
                assert!(
                    u.committed_bytes <= u.total_bytes,
                    "{name}/{pool} over-committed: {u:?}"
                );
                assert!(
                    u.committed_volumes <= u.max_volumes,
                    "{name}/{pool} too many volumes: {u:?}"
                );
            }
        }
    }

    #[test]
    fn reservations_count_until_reported_then_settle() {
        let mut l = CapacityLedger::new();
        l.set_node("n1", node(10 * GIB));
        l.reserve("n1", POOL, "v1", 3 * GIB).unwrap();
        assert_eq!(l.usage("n1", POOL).unwrap().free_bytes, 7 * GIB);
        // The node reports the volume: no double counting.
        let mut rep = node(10 * GIB);
        let p = rep.pools.get_mut(POOL).unwrap();
        p.used_bytes = 3 * GIB;
        p.used_volumes = 1;
        p.volumes.insert("v1".into(), 3 * GIB);
        l.set_node("n1", rep);
        let u = l.usage("n1", POOL).unwrap();
        assert_eq!((u.free_bytes, u.committed_volumes), (7 * GIB, 1));
        assert_eq!(l.settle(), 1);
        assert!(l.reservations().is_empty());
        assert_eq!(l.usage("n1", POOL).unwrap().free_bytes, 7 * GIB);
    }

    #[test]
    fn expansion_reserves_only_the_growth_and_refuses_shrink() {
        let mut l = CapacityLedger::new();
        l.set_node("n1", node(10 * GIB));
        l.reserve("n1", POOL, "v1", 6 * GIB).unwrap();
        assert!(matches!(
            l.reserve("n1", POOL, "v2", 5 * GIB),
            Err(PlacementError::InsufficientCapacity { .. })
        ));
        l.reserve("n1", POOL, "v1", 10 * GIB).unwrap();
        assert_eq!(l.usage("n1", POOL).unwrap().free_bytes, 0);
        assert!(matches!(
            l.reserve("n1", POOL, "v1", GIB),
            Err(PlacementError::Shrink { .. })
        ));
    }

    #[test]
    fn volume_count_limit_is_enforced() {
        let mut l = CapacityLedger::new();
        let mut n = node(100 * GIB);
        n.pools.get_mut(POOL).unwrap().max_volumes = 3;
        n.pools.get_mut(POOL).unwrap().used_volumes = 1;
        l.set_node("n1", n);
        l.reserve("n1", POOL, "a", EXTENT_BYTES).unwrap();
        l.reserve("n1", POOL, "b", EXTENT_BYTES).unwrap();
        assert!(matches!(
            l.reserve("n1", POOL, "c", EXTENT_BYTES),
            Err(PlacementError::TooManyVolumes { max: 3, .. })
        ));
        // Growing an existing reservation does not need a new slot.
        l.reserve("n1", POOL, "b", 2 * EXTENT_BYTES).unwrap();
    }

    #[test]
    fn default_limit_is_one_thousand_volumes() {
        let mut l = CapacityLedger::new();
        l.set_node("n1", node(u64::MAX / 2));
        for i in 0..MAX_VOLUMES_PER_POOL {
            l.reserve("n1", POOL, &format!("v{i}"), EXTENT_BYTES)
                .unwrap();
        }
        assert!(matches!(
            l.reserve("n1", POOL, "one-too-many", EXTENT_BYTES),
            Err(PlacementError::TooManyVolumes { max: 1000, .. })
        ));
    }

    #[test]
    fn per_volume_limit_and_readiness() {
        let mut l = CapacityLedger::new();
        let mut n = node(10 * GIB);
        n.pools.get_mut(POOL).unwrap().volume_bytes_limit = GIB;
        l.set_node("n1", n);
        assert!(matches!(
            l.check("n1", POOL, "v", 2 * GIB),
            Err(PlacementError::VolumeTooLarge { .. })
        ));
        let mut off = node(10 * GIB);
        off.ready = false;
        l.set_node("n2", off);
        assert!(matches!(
            l.check("n2", POOL, "v", GIB),
            Err(PlacementError::NodeNotReady { .. })
        ));
        assert!(matches!(
            l.check("n1", "LocalStorage_PoolSSD", "v", GIB),
            Err(PlacementError::NoSuchPool { .. })
        ));
        assert!(matches!(
            l.check("nx", POOL, "v", GIB),
            Err(PlacementError::UnknownNode { .. })
        ));
    }

    #[test]
    fn plan_prefers_most_free_and_is_deterministic() {
        let mut l = CapacityLedger::new();
        l.set_node("a", node(10 * GIB));
        l.set_node("b", node(20 * GIB));
        l.set_node("c", node(20 * GIB));
        assert_eq!(plan(&l, &req("v", GIB, 2)).unwrap(), vec!["b", "c"]);
        assert_eq!(plan(&l, &req("v", GIB, 1)).unwrap(), vec!["b"]);
    }

    #[test]
    fn plan_uses_accessibility_first_and_fails_if_it_does_not_fit() {
        let mut l = CapacityLedger::new();
        l.set_node("a", node(2 * GIB));
        l.set_node("b", node(20 * GIB));
        let mut r = req("v", GIB, 2);
        r.preferred = vec!["a".into()];
        assert_eq!(plan(&l, &r).unwrap(), vec!["a", "b"]);
        r.required_bytes = 3 * GIB;
        assert!(matches!(
            plan(&l, &r),
            Err(PlacementError::RequestedNodeUnfit { .. })
        ));
    }

    #[test]
    fn plan_excludes_existing_replicas_and_reports_shortage() {
        let mut l = CapacityLedger::new();
        l.set_node("a", node(10 * GIB));
        l.set_node("b", node(10 * GIB));
        let mut r = req("v", GIB, 2);
        r.existing = vec!["b".into()];
        assert_eq!(plan(&l, &r).unwrap(), vec!["a"]);
        r.replicas = 3;
        let e = plan(&l, &r).unwrap_err();
        assert!(
            matches!(
                e,
                PlacementError::NotEnoughNodes {
                    needed: 2,
                    found: 1,
                    ..
                }
            ),
            "{e}"
        );
        r.existing = vec!["a".into(), "b".into()];
        r.replicas = 2;
        assert!(plan(&l, &r).unwrap().is_empty());
    }

    #[test]
    fn group_pins_to_group_nodes_but_still_checks_capacity() {
        let mut l = CapacityLedger::new();
        l.set_node("a", node(10 * GIB));
        l.set_node("b", node(100 * GIB));
        let mut r = req("v", GIB, 1);
        r.group_nodes = vec!["a".into()];
        assert_eq!(plan(&l, &r).unwrap(), vec!["a"]);
        l.reserve("a", POOL, "other", 9 * GIB).unwrap();
        r.required_bytes = 2 * GIB;
        let e = plan(&l, &r).unwrap_err();
        assert!(e.to_string().contains("insufficient free space"), "{e}");
    }

    #[test]
    fn plan_and_reserve_is_all_or_nothing() {
        let mut l = CapacityLedger::new();
        l.set_node("a", node(10 * GIB));
        assert!(plan_and_reserve(&mut l, &req("v", GIB, 2)).is_err());
        assert!(l.reservations().is_empty());
        assert_eq!(
            plan_and_reserve(&mut l, &req("v", GIB, 1)).unwrap(),
            vec!["a"]
        );
        assert_eq!(l.reservations().len(), 1);
    }

    #[test]
    fn burst_of_100_never_overcommits() {
        let mut l = CapacityLedger::new();
        // 3 nodes of 10 GiB; 100 volumes of 1 GiB can place at most 30.
        for n in ["a", "b", "c"] {
            l.set_node(n, node(10 * GIB));
        }
        let placed = (0..100)
            .filter(|i| plan_and_reserve(&mut l, &req(&format!("v{i}"), GIB, 1)).is_ok())
            .count();
        assert_eq!(placed, 30);
        assert_not_overcommitted(&l);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create {
            vol: u8,
            bytes: u64,
            replicas: usize,
        },
        Expand {
            vol: u8,
            bytes: u64,
        },
        Delete {
            vol: u8,
        },
        /// The nodes report what exists (creations and expansions done on the host).
        Report,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..20, 1u64..4 * GIB, 1usize..3).prop_map(|(vol, bytes, replicas)| Op::Create {
                vol,
                bytes,
                replicas
            }),
            (0u8..20, 1u64..6 * GIB).prop_map(|(vol, bytes)| Op::Expand { vol, bytes }),
            (0u8..20).prop_map(|vol| Op::Delete { vol }),
            Just(Op::Report),
        ]
    }

    /// A model host: volume → (node → size). "Report" copies it into the ledger.
    fn report(
        l: &mut CapacityLedger,
        host: &BTreeMap<String, BTreeMap<String, u64>>,
        totals: &[(String, u64)],
    ) {
        for (n, total) in totals {
            let mut rep = node(*total);
            let p = rep.pools.get_mut(POOL).unwrap();
            for (vol, placed) in host {
                if let Some(&size) = placed.get(n) {
                    p.volumes.insert(vol.clone(), size);
                    p.used_bytes += size;
                    p.used_volumes += 1;
                }
            }
            l.set_node(n.clone(), rep);
        }
        l.settle();
    }

    // --- thin ---------------------------------------------------------------------------

    use crate::snapshot::ThinPool;

    fn thin_node(vg_total: u64, thin: Option<(u64, f64, u64)>) -> NodeReport {
        let mut pools = BTreeMap::from([(POOL.to_owned(), PoolReport::empty(vg_total))]);
        if let Some((size, ratio, provisioned)) = thin {
            let tp = ThinPool {
                size_bytes: size,
                over_provision_ratio: ratio,
                provisioned_bytes: provisioned,
            };
            pools.insert(
                ledger_pool(POOL, true),
                thin_pool_report(&tp, BTreeMap::new()),
            );
        }
        NodeReport { ready: true, pools }
    }

    fn thin_req(volume: &str, bytes: u64) -> PlacementRequest {
        PlacementRequest {
            volume: volume.into(),
            pool: ledger_pool(POOL, true),
            required_bytes: bytes,
            replicas: 1,
            ..Default::default()
        }
    }

    #[test]
    fn thin_ledger_pool_names() {
        assert_eq!(ledger_pool(POOL, false), POOL);
        assert_eq!(ledger_pool(POOL, true), "LocalStorage_PoolHDD/thin");
        assert_eq!(thin_base_pool("LocalStorage_PoolHDD/thin"), Some(POOL));
        assert_eq!(thin_base_pool(POOL), None);
    }

    #[test]
    fn thin_volumes_count_provisioned_size_up_to_the_ratio() {
        let mut l = CapacityLedger::new();
        // A 2 GiB thin pool with ratio 2.5: 5 GiB may be provisioned, whatever the VG holds.
        l.set_node("n1", thin_node(3 * GIB, Some((2 * GIB, 2.5, 0))));
        for i in 0..5 {
            assert_eq!(
                plan_and_reserve(&mut l, &thin_req(&format!("t{i}"), GIB)).unwrap(),
                ["n1"]
            );
        }
        let err = plan_and_reserve(&mut l, &thin_req("t5", 4 << 20)).unwrap_err();
        assert!(err.to_string().contains("insufficient free space"), "{err}");
        // Thin reservations do not touch the VG's (thick) capacity, nor the reverse.
        assert_eq!(l.usage("n1", POOL).unwrap().committed_bytes, 0);
        l.reserve("n1", POOL, "thick", 3 * GIB).unwrap();
        l.release_volume("t0");
        plan_and_reserve(&mut l, &thin_req("t5", GIB)).unwrap();
        let u = l.usage("n1", &ledger_pool(POOL, true)).unwrap();
        assert_eq!((u.total_bytes, u.committed_bytes), (5 * GIB, 5 * GIB));
    }

    #[test]
    fn thin_placement_skips_nodes_without_a_thin_pool() {
        let mut l = CapacityLedger::new();
        l.set_node("file-node", thin_node(100 * GIB, None));
        let err = plan(&l, &thin_req("t", GIB)).unwrap_err();
        assert!(
            err.to_string().contains("has no thin pool")
                && err.to_string().contains("ThinPoolClaim"),
            "{err}"
        );
        assert!(matches!(
            l.check("file-node", &ledger_pool(POOL, true), "t", GIB),
            Err(PlacementError::NoThinPool { .. })
        ));
        l.set_node("lvm-node", thin_node(GIB, Some((GIB, 4.0, 3 * GIB))));
        assert_eq!(plan(&l, &thin_req("t", GIB)).unwrap(), ["lvm-node"]);
        // The node's report of what is already provisioned counts (here 3 of 4 GiB).
        assert!(plan(&l, &thin_req("t", GIB + 1)).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Thin: no sequence of create/expand/delete/report provisions beyond
        /// `size × ratio` on any node, and once everything is reported no reservation is left
        /// behind.
        #[test]
        fn thin_no_sequence_overcommits_or_leaks(
            ops in proptest::collection::vec(op(), 1..80),
            pools in proptest::collection::vec((1u64..4, 10u32..40), 1..4),
        ) {
            let tpool = ledger_pool(POOL, true);
            // (node, thin pool size, ratio)
            let nodes: Vec<(String, u64, f64)> = pools
                .iter()
                .enumerate()
                .map(|(i, (g, r))| (format!("n{i}"), g * GIB, f64::from(*r) / 10.0))
                .collect();
            let limit = |n: &str| {
                let (_, size, ratio) = nodes.iter().find(|(m, _, _)| m == n).unwrap();
                ThinPool { size_bytes: *size, over_provision_ratio: *ratio, provisioned_bytes: 0 }
                    .limit_bytes()
            };
            let reported = |l: &mut CapacityLedger, host: &BTreeMap<String, (String, u64)>| {
                for (n, size, ratio) in &nodes {
                    let vols: BTreeMap<String, u64> = host
                        .iter()
                        .filter(|(_, (hn, _))| hn == n)
                        .map(|(v, (_, s))| (v.clone(), *s))
                        .collect();
                    let tp = ThinPool {
                        size_bytes: *size,
                        over_provision_ratio: *ratio,
                        provisioned_bytes: vols.values().sum(),
                    };
                    let mut r = thin_node(GIB, None);
                    r.pools.insert(tpool.clone(), thin_pool_report(&tp, vols));
                    l.set_node(n.clone(), r);
                }
                l.settle();
            };
            let mut l = CapacityLedger::new();
            reported(&mut l, &BTreeMap::new());
            let mut desired: BTreeMap<String, (String, u64)> = BTreeMap::new();
            let mut host: BTreeMap<String, (String, u64)> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Create { vol, bytes, .. } => {
                        let name = format!("v{vol}");
                        if desired.contains_key(&name) { continue; }
                        if let Ok(chosen) = plan_and_reserve(&mut l, &thin_req(&name, bytes)) {
                            prop_assert_eq!(chosen.len(), 1);
                            desired.insert(name, (chosen[0].clone(), round_up_to_extent(bytes)));
                        }
                    }
                    Op::Expand { vol, bytes } => {
                        let name = format!("v{vol}");
                        let Some((n, size)) = desired.get(&name).cloned() else { continue };
                        if round_up_to_extent(bytes) >= size
                            && l.reserve(&n, &tpool, &name, bytes).is_ok()
                        {
                            desired.insert(name, (n, round_up_to_extent(bytes)));
                        }
                    }
                    Op::Delete { vol } => {
                        let name = format!("v{vol}");
                        desired.remove(&name);
                        host.remove(&name);
                        l.release_volume(&name);
                    }
                    Op::Report => {
                        host = desired.clone();
                        reported(&mut l, &host);
                    }
                }
                assert_not_overcommitted(&l);
                for (n, _, _) in &nodes {
                    let provisioned: u64 =
                        desired.values().filter(|(hn, _)| hn == n).map(|(_, s)| s).sum();
                    prop_assert!(provisioned <= limit(n), "{} provisions {} > {}", n, provisioned, limit(n));
                }
            }
            host = desired.clone();
            reported(&mut l, &host);
            prop_assert!(l.reservations().is_empty(), "left behind: {:?}", l.reservations());
            for name in desired.keys().cloned().collect::<Vec<_>>() {
                l.release_volume(&name);
            }
            reported(&mut l, &BTreeMap::new());
            for (n, _, _) in &nodes {
                prop_assert_eq!(l.usage(n, &tpool).unwrap().committed_bytes, 0);
            }
        }

        /// No sequence of create/expand/delete/report over-commits a pool, and once everything
        /// is reported no reservation is left behind.
        #[test]
        fn no_sequence_overcommits_or_leaks(ops in proptest::collection::vec(op(), 1..80),
                                            sizes in proptest::collection::vec(1u64..12, 1..4)) {
            let totals: Vec<(String, u64)> =
                sizes.iter().enumerate().map(|(i, g)| (format!("n{i}"), g * GIB)).collect();
            let mut l = CapacityLedger::new();
            for (n, t) in &totals { l.set_node(n.clone(), node(*t)); }
            // Host state lags: applied on Report. Desired: volume → (node → size).
            let mut desired: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            let mut host: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Create { vol, bytes, replicas } => {
                        let name = format!("v{vol}");
                        if desired.contains_key(&name) { continue; }
                        if let Ok(nodes) = plan_and_reserve(&mut l, &req(&name, bytes, replicas)) {
                            let size = round_up_to_extent(bytes);
                            desired.insert(name, nodes.into_iter().map(|n| (n, size)).collect());
                        }
                    }
                    Op::Expand { vol, bytes } => {
                        let name = format!("v{vol}");
                        let Some(placed) = desired.get(&name).cloned() else { continue };
                        // All replicas or none (like the controller: check first, then reserve).
                        if placed.keys().all(|n| l.check(n, POOL, &name, bytes).is_ok())
                            && placed.values().all(|&s| round_up_to_extent(bytes) >= s)
                        {
                            for n in placed.keys() {
                                l.reserve(n, POOL, &name, bytes).unwrap();
                            }
                            let size = round_up_to_extent(bytes);
                            desired.insert(name, placed.keys().map(|n| (n.clone(), size)).collect());
                        }
                    }
                    Op::Delete { vol } => {
                        let name = format!("v{vol}");
                        desired.remove(&name);
                        host.remove(&name);
                        l.release_volume(&name);
                    }
                    Op::Report => {
                        host = desired.clone();
                        report(&mut l, &host, &totals);
                    }
                }
                assert_not_overcommitted(&l);
                // The host itself never holds more than the pool.
                for (n, t) in &totals {
                    let sum: u64 = host.values().filter_map(|p| p.get(n)).sum();
                    prop_assert!(sum <= *t);
                }
            }
            host = desired.clone();
            report(&mut l, &host, &totals);
            prop_assert!(l.reservations().is_empty(), "left behind: {:?}", l.reservations());
            assert_not_overcommitted(&l);
        }

        /// A burst of 100 allocations against stale reports never over-commits any pool.
        #[test]
        fn burst_against_stale_reports(sizes in proptest::collection::vec(1u64..2 * GIB, 100),
                                       pools in proptest::collection::vec(1u64..20, 1..5),
                                       replicas in 1usize..3) {
            let mut l = CapacityLedger::new();
            for (i, g) in pools.iter().enumerate() { l.set_node(format!("n{i}"), node(g * GIB)); }
            let mut placed_bytes: BTreeMap<String, u64> = BTreeMap::new();
            for (i, b) in sizes.iter().enumerate() {
                if let Ok(nodes) = plan_and_reserve(&mut l, &req(&format!("v{i}"), *b, replicas)) {
                    prop_assert_eq!(nodes.len(), replicas);
                    for n in nodes { *placed_bytes.entry(n).or_default() += round_up_to_extent(*b); }
                }
                assert_not_overcommitted(&l);
            }
            for (i, g) in pools.iter().enumerate() {
                let name = format!("n{i}");
                let placed = placed_bytes.get(&name).copied().unwrap_or(0);
                prop_assert!(placed <= g * GIB, "{} holds {} > {}", name, placed, g * GIB);
            }
        }
    }
}
