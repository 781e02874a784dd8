//! Object names, as the original builds them (reference §14.2). Random parts are passed in by
//! the caller (the API crate has no randomness); [`is_random_suffix`] checks their shape.

use hwameistor_core::types::{EventResourceType, PoolClass};

use crate::consts;

/// Length of the random suffix of replica, replica-snapshot and replica-restore names.
pub const RANDOM_SUFFIX_LEN: usize = 6;

/// Characters the random suffixes are drawn from.
pub const RANDOM_SUFFIX_ALPHABET: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

/// Is `s` a valid random suffix: 6 lowercase letters or digits?
pub fn is_random_suffix(s: &str) -> bool {
    s.len() == RANDOM_SUFFIX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Build a 6-character suffix from any number (e.g. random bits): base-36 digits of `n`.
pub fn suffix_from_u64(mut n: u64) -> String {
    let alphabet = RANDOM_SUFFIX_ALPHABET.as_bytes();
    let mut out = String::with_capacity(RANDOM_SUFFIX_LEN);
    for _ in 0..RANDOM_SUFFIX_LEN {
        out.push(alphabet[(n % 36) as usize] as char);
        n /= 36;
    }
    out
}

/// LocalDisk: `localdisk-<uuid>` where uuid = md5 hex of vendor + serial + wwn.
pub fn local_disk(uuid: &str) -> String {
    format!("{}{uuid}", consts::LOCAL_DISK_NAME_PREFIX)
}

/// LocalVolumeReplica: `<volume>-<suffix>`.
pub fn volume_replica(volume: &str, suffix: &str) -> String {
    format!("{volume}-{suffix}")
}

/// The volume a replica name belongs to, if the name has the `<volume>-<suffix>` shape.
pub fn volume_of_replica(replica: &str) -> Option<&str> {
    let (volume, suffix) = replica.rsplit_once('-')?;
    (is_random_suffix(suffix) && !volume.is_empty()).then_some(volume)
}

/// LocalVolumeSnapshot name for a CSI snapshot name: `snapshot-<uid>` → `snapcontent-<uid>`
/// (only the first `snapshot` is replaced, as in the original).
pub fn volume_snapshot_from_csi(csi_name: &str) -> String {
    csi_name.replacen("snapshot", "snapcontent", 1)
}

/// LocalVolumeReplicaSnapshot: `<snapshot>-<suffix>`.
pub fn replica_snapshot(snapshot: &str, suffix: &str) -> String {
    format!("{snapshot}-{suffix}")
}

/// LocalVolumeSnapshotRestore created by CSI for restoring into `volume`.
pub fn snapshot_restore(volume: &str) -> String {
    format!("{}{volume}", consts::SNAPSHOT_RESTORE_PREFIX)
}

/// Temporary snapshot used to clone `volume`'s source.
pub fn clone_snapshot(volume: &str) -> String {
    format!("{}{volume}", consts::CLONE_SNAPSHOT_PREFIX)
}

/// LocalVolumeReplicaSnapshotRestore: `<restore>-<suffix>`.
pub fn replica_snapshot_restore(restore: &str, suffix: &str) -> String {
    format!("{restore}-{suffix}")
}

/// LocalVolumeMigrate created by the evictor: `evictor-<volume>`.
pub fn evictor_migrate(volume: &str) -> String {
    format!("{}{volume}", consts::EVICTOR_MIGRATE_PREFIX)
}

/// Event (audit log) of a resource: `lower(<type>-<name>)`.
pub fn event(resource_type: EventResourceType, resource_name: &str) -> String {
    format!("{resource_type}-{resource_name}").to_lowercase()
}

/// LocalDiskClaim created at install: `<node>-<hdd|ssd|nvme>-claim`.
pub fn auto_disk_claim(node: &str, class: PoolClass) -> String {
    consts::auto_claim_name(node, class)
}

/// DRBD minor number and TCP port of an HA resource id: `43001 + id`.
pub fn drbd_port(resource_id: i64) -> Option<u16> {
    u16::try_from(i64::from(consts::DRBD_START_PORT) + resource_id)
        .ok()
        .filter(|_| resource_id >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_original_patterns() {
        assert_eq!(local_disk("2307de2b"), "localdisk-2307de2b");
        assert_eq!(volume_replica("pvc-1", "9cdkkn"), "pvc-1-9cdkkn");
        assert_eq!(
            volume_snapshot_from_csi("snapshot-0fc17697-68ea"),
            "snapcontent-0fc17697-68ea"
        );
        assert_eq!(
            volume_snapshot_from_csi("snapshot-snapshot"),
            "snapcontent-snapshot"
        );
        assert_eq!(snapshot_restore("pvc-2"), "snaprestore-pvc-2");
        assert_eq!(clone_snapshot("pvc-2"), "snapshot-for-pvc-2");
        assert_eq!(evictor_migrate("pvc-3"), "evictor-pvc-3");
        assert_eq!(
            event(EventResourceType::StorageNode, "Node-A"),
            "storagenode-node-a"
        );
        assert_eq!(
            auto_disk_claim("node1", PoolClass::NVMe),
            "node1-nvme-claim"
        );
        assert_eq!(
            replica_snapshot("snapcontent-1", "abc123"),
            "snapcontent-1-abc123"
        );
        assert_eq!(replica_snapshot_restore("r", "abc123"), "r-abc123");
    }

    #[test]
    fn replica_names_parse_back() {
        let name = volume_replica("pvc-1a0913ac-32b9", "9cdkkn");
        assert_eq!(volume_of_replica(&name), Some("pvc-1a0913ac-32b9"));
        assert_eq!(
            volume_of_replica("pvc-1a0913ac-32b9"),
            None,
            "uuid tail is 4 chars"
        );
        assert_eq!(volume_of_replica("pvc-1-ABCDEF"), None);
        assert_eq!(volume_of_replica("-abcdef"), None);
    }

    #[test]
    fn suffixes() {
        for n in [0, 1, 35, 36, u64::MAX, 0xdead_beef] {
            let s = suffix_from_u64(n);
            assert!(is_random_suffix(&s), "{s}");
        }
        assert_eq!(suffix_from_u64(0), "aaaaaa");
        assert_eq!(suffix_from_u64(35), "9aaaaa");
        assert_ne!(suffix_from_u64(1), suffix_from_u64(2));
        assert!(!is_random_suffix("abc12"));
        assert!(!is_random_suffix("abc12_"));
    }

    #[test]
    fn drbd_ports() {
        assert_eq!(drbd_port(0), Some(43001));
        assert_eq!(drbd_port(999), Some(44000));
        assert_eq!(drbd_port(-1), None);
        assert_eq!(drbd_port(100_000), None);
    }
}
