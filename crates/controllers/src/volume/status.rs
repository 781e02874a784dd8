//! LocalVolume `status.message` and `status.conditions`: what an admin needs to see without
//! reading logs.
//!
//! - **`Scheduled`**: `False` with reason `Unschedulable` and a message such as
//!   `no pool of class SSD on any node has 5Gi free (1 replica); largest free: 3Gi on node-a`
//!   while placement fails; `True` once the volume is placed after such a failure (volumes
//!   placed at the first attempt carry no condition).
//! - **`DeleteBlocked`**: `True` while a requested deletion waits because the volume has
//!   snapshots (reason `HasSnapshots`: refused until the user deletes them;
//!   `SnapshotsDeleting`: they are going away), `False` once the deletion proceeds. The rule
//!   itself is [`hwameistor_core::snapshot::volume_delete_check`], shared with the CSI driver
//!   and the REST API.
//!
//! `status.message` mirrors the message of the condition that is currently a problem, and is
//! empty otherwise. Every change is also recorded as a Kubernetes Event on the volume.

use hwameistor_api::{LocalVolume, LocalVolumeSnapshot};
use hwameistor_core::placement::{CapacityLedger, PlacementError};
use hwameistor_core::snapshot::{VolumeDeleteCheck, VolumeSnapshotRef, volume_delete_check};
use hwameistor_store::Store;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::json;

use super::Result;
use super::cluster::ledger_now;
use super::util::{StoreExt, now_time};
use crate::event::object_ref;

/// Condition type of placement.
pub const CONDITION_SCHEDULED: &str = "Scheduled";
/// Condition type of a deletion held back by snapshots.
pub const CONDITION_DELETE_BLOCKED: &str = "DeleteBlocked";

/// Bytes as a Kubernetes-style quantity, rounded to one decimal (`5Gi`, `1.5Gi`, `512Mi`).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let s = format!("{v:.1}");
    let s = s.strip_suffix(".0").unwrap_or(&s);
    format!("{s}{}", UNITS[i])
}

/// The class of a pool name (`LocalStorage_PoolSSD` → `SSD`).
fn pool_class(pool: &str) -> &str {
    pool.strip_prefix("LocalStorage_Pool").unwrap_or(pool)
}

/// Why `replicas` replicas of `required` bytes found no place in `pool`, for humans: the
/// largest free space of that pool class over the ready nodes, then the planner's reasons.
pub fn placement_message(
    ledger: &CapacityLedger,
    pool: &str,
    required: u64,
    replicas: usize,
    err: &PlacementError,
) -> String {
    let class = pool_class(pool);
    let mut largest: Option<(u64, &str)> = None;
    let mut with_pool = 0usize;
    for (node, report) in ledger.nodes() {
        if !report.ready {
            continue;
        }
        if let Ok(u) = ledger.usage(node, pool) {
            with_pool += 1;
            if largest.is_none_or(|(b, _)| u.free_bytes > b) {
                largest = Some((u.free_bytes, node));
            }
        }
    }
    let head = match largest {
        None => format!(
            "no ready node has a pool of class {class} ({} node(s) known)",
            ledger.nodes().len()
        ),
        Some((free, node)) if free < required => format!(
            "no pool of class {class} on any node has {} free ({replicas} replica(s)); \
             largest free: {} on {node}",
            human_bytes(required),
            human_bytes(free)
        ),
        Some(_) => format!(
            "cannot place {} ({replicas} replica(s)) in pool class {class} on {with_pool} \
             ready node(s) with that pool",
            human_bytes(required)
        ),
    };
    format!("{head}: {err}")
}

/// `conds` with the condition `type_` set; `lastTransitionTime` kept when the status did not
/// change.
pub fn with_condition(
    conds: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) -> Vec<Condition> {
    let status = if status { "True" } else { "False" };
    let mut out: Vec<Condition> = conds.iter().filter(|c| c.type_ != type_).cloned().collect();
    let last = conds
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone());
    out.push(Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: last.unwrap_or_else(now_time),
        observed_generation: None,
    });
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

fn find<'a>(lv: &'a LocalVolume, type_: &str) -> Option<&'a Condition> {
    lv.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// Write a condition and `status.message` unless both are already so. Returns whether it
/// wrote; records an Event when it did and `event` is given (`Normal`/`Warning`).
#[allow(clippy::too_many_arguments)]
async fn set(
    store: &Store,
    lv: &LocalVolume,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    status_message: &str,
    event: Option<&str>,
) -> Result<bool> {
    let name = lv.metadata.name.clone().unwrap_or_default();
    let want = if status { "True" } else { "False" };
    let current_msg = lv.status.as_ref().map(|s| s.message.as_str()).unwrap_or("");
    let same = find(lv, type_)
        .is_some_and(|c| c.status == want && c.reason == reason && c.message == message)
        && current_msg == status_message;
    if same {
        return Ok(false);
    }
    let conds = lv
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let conds = with_condition(&conds, type_, status, reason, message);
    store
        .all::<LocalVolume>()
        .patch_status(
            &name,
            &json!({"status": {"message": status_message, "conditions": conds}}),
        )
        .await
        .ctx("patch status", "LocalVolume", &name)?;
    if let Some(kind) = event {
        record_event(store, lv, kind, reason, message).await;
    }
    Ok(true)
}

/// Placement failed: `Scheduled=False` with the reason, mirrored in `status.message`.
pub async fn placement_failed(store: &Store, lv: &LocalVolume, err: &PlacementError) -> Result<()> {
    let name = lv.metadata.name.clone().unwrap_or_default();
    let ledger = ledger_now(store, &name).await?;
    let msg = placement_message(
        &ledger,
        &lv.spec.pool_name,
        lv.spec.required_capacity_bytes.max(0) as u64,
        lv.spec.replica_number.max(1) as usize,
        err,
    );
    if set(
        store,
        lv,
        CONDITION_SCHEDULED,
        false,
        "Unschedulable",
        &msg,
        &msg,
        Some("Warning"),
    )
    .await?
    {
        tracing::warn!(volume = %name, message = %msg, "volume cannot be placed");
    }
    Ok(())
}

/// Placement succeeded: turn a failed `Scheduled` into `True` and clear the message (no write
/// for volumes that never failed).
pub async fn placement_succeeded(store: &Store, lv: &LocalVolume) -> Result<()> {
    if find(lv, CONDITION_SCHEDULED).is_none_or(|c| c.status == "True") {
        return Ok(());
    }
    set(
        store,
        lv,
        CONDITION_SCHEDULED,
        true,
        "Placed",
        "",
        "",
        Some("Normal"),
    )
    .await
    .map(|_| ())
}

/// A deletion of `lv` was requested: may its replicas go? `false` (and the `DeleteBlocked`
/// condition and message written) while it has snapshots; `true` otherwise (a former block
/// is cleared).
pub async fn deletion_may_proceed(store: &Store, lv: &LocalVolume) -> Result<bool> {
    let name = lv.metadata.name.clone().unwrap_or_default();
    let snaps: Vec<VolumeSnapshotRef> = store
        .all::<LocalVolumeSnapshot>()
        .list(&Default::default())
        .await
        .ctx("list", "LocalVolumeSnapshot", "*")?
        .items
        .iter()
        .filter(|s| s.spec.source_volume == name)
        .map(|s| VolumeSnapshotRef {
            name: s.metadata.name.clone().unwrap_or_default(),
            deleting: s.spec.delete || s.metadata.deletion_timestamp.is_some(),
        })
        .collect();
    let (reason, message) = match volume_delete_check(&name, &snaps) {
        VolumeDeleteCheck::Allowed => {
            if find(lv, CONDITION_DELETE_BLOCKED).is_some_and(|c| c.status == "True") {
                set(
                    store,
                    lv,
                    CONDITION_DELETE_BLOCKED,
                    false,
                    "SnapshotsGone",
                    "",
                    "",
                    Some("Normal"),
                )
                .await?;
            }
            return Ok(true);
        }
        VolumeDeleteCheck::Refused { message, .. } => ("HasSnapshots", message),
        VolumeDeleteCheck::WaitForSnapshots { message, .. } => ("SnapshotsDeleting", message),
    };
    let status_message = format!("deletion blocked: {message}");
    if set(
        store,
        lv,
        CONDITION_DELETE_BLOCKED,
        true,
        reason,
        &message,
        &status_message,
        Some("Warning"),
    )
    .await?
    {
        tracing::warn!(volume = %name, %message, "volume deletion blocked by snapshots");
    }
    Ok(false)
}

/// Record (or bump) the Kubernetes Event `<volume>.<reason>`; failures are only logged.
async fn record_event(store: &Store, lv: &LocalVolume, type_: &str, reason: &str, message: &str) {
    let source = crate::event::Source {
        component: "local-storage",
        host: None,
    };
    crate::event::record_event(store, object_ref(lv), source, type_, reason, message).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hwameistor_core::placement::{NodeReport, PoolReport};
    use std::collections::BTreeMap;

    const GI: u64 = 1 << 30;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(5 * GI), "5Gi");
        assert_eq!(human_bytes(3 * GI / 2), "1.5Gi");
        assert_eq!(human_bytes(512 << 20), "512Mi");
        assert_eq!(human_bytes(100), "100");
    }

    fn ledger() -> CapacityLedger {
        let mut l = CapacityLedger::new();
        let node = |ready: bool, pool: &str, total: u64, used: u64| NodeReport {
            ready,
            pools: BTreeMap::from([(
                pool.to_owned(),
                PoolReport {
                    used_bytes: used,
                    ..PoolReport::empty(total)
                },
            )]),
        };
        l.set_node("a", node(true, "LocalStorage_PoolSSD", 4 * GI, GI));
        l.set_node("b", node(true, "LocalStorage_PoolSSD", 4 * GI, 2 * GI));
        l.set_node("c", node(true, "LocalStorage_PoolHDD", 100 * GI, 0));
        l.set_node("d", node(false, "LocalStorage_PoolSSD", 100 * GI, 0));
        l
    }

    #[test]
    fn placement_message_names_class_size_and_largest_free() {
        let err = PlacementError::NotEnoughNodes {
            volume: "v".into(),
            needed: 1,
            found: 0,
            reasons: "a: insufficient".into(),
        };
        let m = placement_message(&ledger(), "LocalStorage_PoolSSD", 5 * GI, 1, &err);
        assert!(
            m.starts_with(
                "no pool of class SSD on any node has 5Gi free (1 replica(s)); largest free: 3Gi on a"
            ),
            "{m}"
        );
        assert!(m.contains("a: insufficient"), "{m}");
        let m = placement_message(&ledger(), "LocalStorage_PoolNVMe", GI, 1, &err);
        assert!(
            m.starts_with("no ready node has a pool of class NVMe"),
            "{m}"
        );
        // Enough space somewhere, yet no place (e.g. two replicas, one fitting node).
        let m = placement_message(&ledger(), "LocalStorage_PoolSSD", GI, 2, &err);
        assert!(
            m.starts_with("cannot place 1Gi (2 replica(s)) in pool class SSD"),
            "{m}"
        );
    }

    #[test]
    fn conditions_replace_by_type_and_keep_transition_time() {
        let c1 = with_condition(&[], "Scheduled", false, "Unschedulable", "x");
        assert_eq!(c1.len(), 1);
        let t = c1[0].last_transition_time.clone();
        let c2 = with_condition(&c1, "Scheduled", false, "Unschedulable", "y");
        assert_eq!(c2.len(), 1);
        assert_eq!(c2[0].message, "y");
        assert_eq!(c2[0].last_transition_time, t);
        let c3 = with_condition(&c2, "DeleteBlocked", true, "HasSnapshots", "z");
        assert_eq!(
            c3.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(),
            ["DeleteBlocked", "Scheduled"]
        );
        let c4 = with_condition(&c3, "Scheduled", true, "Placed", "");
        assert_eq!(c4.len(), 2);
        assert_eq!(c4[1].status, "True");
    }
}
