//! Shared enums of the `hwameistor.io/v1alpha1` API.
//!
//! Every state, phase, class and owner that appears in a HwameiStor object is a closed set of
//! strings. They are modelled here as Rust enums that serialize to exactly the strings the
//! original system writes, so objects created by the original deserialize into our types and
//! vice versa. Where the original leaves a field as the empty string (for example a freshly
//! created LocalVolume has `status.state: ""`), the enum has an `Unknown` variant that
//! serializes as `""`; it is also the `Default`.
//!
//! All enums implement `Display` and `FromStr` with the wire spelling (`FromStr` is exact;
//! [`PoolClass::parse_lenient`] and [`DiskOwner::parse_lenient`] accept other casings for user
//! input such as StorageClass parameters).
//!
//! Owned by the api helper; the CRD types in `hwameistor-api` use these enums directly.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// A string did not name any variant of one of the enums in this module.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind} {value:?}; expected one of: {expected}")]
pub struct ParseEnumError {
    /// Which enum was being parsed (e.g. "pool class").
    pub kind: &'static str,
    /// The rejected input.
    pub value: String,
    /// The accepted spellings, comma separated.
    pub expected: String,
}

/// Defines a string enum with serde/schemars derives, `as_str`, `ALL`, `Display`, `FromStr`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:tt ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        $vis enum $name {
            $( $(#[$vmeta])* #[serde(rename = $value)] $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The exact string written into objects.
            pub const fn as_str(&self) -> &'static str {
                match self {
                    $( $name::$variant => $value, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $value => Ok($name::$variant), )+
                    _ => Err(ParseEnumError {
                        kind: $what,
                        value: s.to_owned(),
                        expected: [$($value),+]
                            .iter()
                            .map(|v| if v.is_empty() { "\"\"" } else { v })
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            }
        }
    };
}

/// Implements `Default` returning the given variant.
macro_rules! default_variant {
    ($name:ident :: $variant:ident) => {
        impl Default for $name {
            fn default() -> Self {
                $name::$variant
            }
        }
    };
}

string_enum! {
    /// State of a LocalStorageNode or LocalDiskNode (`status.state`).
    ///
    /// `Ready`/`Offline` follow the node agent's lease; `Maintain` is set by an administrator
    /// and is sticky (the cluster controller does not overwrite it).
    pub enum NodeState ("node state") {
        /// Not reported yet (`""`).
        Unknown = "",
        Ready = "Ready",
        Maintain = "Maintain",
        Offline = "Offline",
    }
}
default_variant!(NodeState::Unknown);

string_enum! {
    /// State of a LocalVolume, LocalDiskVolume, LocalVolumeSnapshot or
    /// LocalVolumeReplicaSnapshot (`status.state`).
    pub enum VolumeState ("volume state") {
        /// Freshly created, not yet picked up (`""`).
        Unknown = "",
        Creating = "Creating",
        Created = "Created",
        Ready = "Ready",
        NotReady = "NotReady",
        ToBeDeleted = "ToBeDeleted",
        Deleted = "Deleted",
        /// The original's constant `VolumeStateToBeUnmount` has this value; a LocalDiskVolume in
        /// this state has unmount requests pending.
        ToBeMounted = "ToBeMounted",
    }
}
default_variant!(VolumeState::Unknown);

string_enum! {
    /// State of a LocalVolumeReplica (`status.state`).
    pub enum ReplicaState ("replica state") {
        Unknown = "",
        Invalid = "Invalid",
        Creating = "Creating",
        Ready = "Ready",
        NotReady = "NotReady",
        ToBeDeleted = "ToBeDeleted",
        Deleted = "Deleted",
    }
}
default_variant!(ReplicaState::Unknown);

string_enum! {
    /// DRBD-level state of an HA replica (`status.haState.state`).
    pub enum HaState ("HA replica state") {
        Consistent = "Consistent",
        Inconsistent = "Inconsistent",
        Up = "Up",
        Down = "Down",
    }
}

string_enum! {
    /// State of an operation object: LocalVolumeConvert, LocalVolumeExpand,
    /// LocalVolumeMigrate, LocalVolumeSnapshotRestore, LocalVolumeReplicaSnapshotRestore.
    pub enum OperationState ("operation state") {
        /// Just submitted by the user (`""`).
        Unknown = "",
        Submitted = "Submitted",
        AddReplica = "AddReplica",
        SyncReplica = "SyncReplica",
        PruneReplica = "PruneReplica",
        InProgress = "InProgress",
        Completed = "Completed",
        ToBeAborted = "ToBeAborted",
        /// The original's constant `OperationStateAborting`.
        Cancelled = "Cancelled",
        Aborted = "Aborted",
        Failed = "Failed",
    }
}
default_variant!(OperationState::Unknown);

impl OperationState {
    /// `Completed`, `Aborted` and `Failed` end an operation.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Aborted | Self::Failed)
    }
}

string_enum! {
    /// State of a disk inside a storage pool (`status.pools.*.disks[].state`).
    pub enum DiskState ("pool disk state") {
        Unknown = "",
        Available = "Available",
        InUse = "InUse",
        Offline = "Offline",
    }
}
default_variant!(DiskState::Unknown);

string_enum! {
    /// Presence of a LocalDisk on its node (`spec.state`).
    pub enum LocalDiskState ("local disk state") {
        Active = "Active",
        Inactive = "Inactive",
        Unknown = "Unknown",
    }
}
default_variant!(LocalDiskState::Unknown);

string_enum! {
    /// Claim phase of a LocalDisk (`status.claimState`, printed as PHASE).
    pub enum DiskClaimState ("local disk claim state") {
        Unknown = "",
        Pending = "Pending",
        Available = "Available",
        Bound = "Bound",
        Reserved = "Reserved",
    }
}
default_variant!(DiskClaimState::Unknown);

string_enum! {
    /// Phase of a LocalDiskClaim (`status.status`).
    pub enum ClaimPhase ("local disk claim phase") {
        Unknown = "",
        Pending = "Pending",
        Extending = "Extending",
        Bound = "Bound",
        Consumed = "Consumed",
        ToBeDeleted = "ToBeDeleted",
        Deleted = "Deleted",
    }
}
default_variant!(ClaimPhase::Unknown);

string_enum! {
    /// Phase of a ThinPoolClaim (`status.status`).
    pub enum ThinPoolClaimPhase ("thin pool claim phase") {
        Unknown = "",
        Pending = "Pending",
        ToBeConsumed = "ToBeConsumed",
        Consumed = "Consumed",
        ToBeDeleted = "ToBeDeleted",
        Deleted = "Deleted",
        /// The last attempt failed (`status.message` says why); retried periodically.
        Failed = "Failed",
    }
}
default_variant!(ThinPoolClaimPhase::Unknown);

string_enum! {
    /// Class of a storage pool: which kind of disks it is built from.
    #[allow(clippy::upper_case_acronyms)]
    pub enum PoolClass ("pool class") {
        HDD = "HDD",
        SSD = "SSD",
        NVMe = "NVMe",
    }
}

impl PoolClass {
    /// Parse ignoring ASCII case (`hdd`, `Ssd`, `nvme`), as used in object names such as
    /// `<node>-hdd-claim` or `hwameistor-storage-lvm-hdd`.
    pub fn parse_lenient(s: &str) -> Result<Self, ParseEnumError> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| s.parse::<Self>().unwrap_err())
    }

    /// Lower-case spelling used in names (`hdd`, `ssd`, `nvme`).
    pub fn lower(&self) -> &'static str {
        match self {
            Self::HDD => "hdd",
            Self::SSD => "ssd",
            Self::NVMe => "nvme",
        }
    }

    /// LVM volume group of this class: `LocalStorage_Pool<CLASS>`.
    pub fn lvm_pool_name(&self) -> &'static str {
        match self {
            Self::HDD => "LocalStorage_PoolHDD",
            Self::SSD => "LocalStorage_PoolSSD",
            Self::NVMe => "LocalStorage_PoolNVMe",
        }
    }

    /// Raw-disk pool of this class: `LocalDisk_Pool<CLASS>`.
    pub fn disk_pool_name(&self) -> &'static str {
        match self {
            Self::HDD => "LocalDisk_PoolHDD",
            Self::SSD => "LocalDisk_PoolSSD",
            Self::NVMe => "LocalDisk_PoolNVMe",
        }
    }

    /// Inverse of [`PoolClass::lvm_pool_name`] and [`PoolClass::disk_pool_name`].
    pub fn from_pool_name(pool: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.lvm_pool_name() == pool || c.disk_pool_name() == pool)
    }
}

string_enum! {
    /// Media type of a disk (`spec.diskAttributes.type` of a LocalDisk, `type` of a pool disk).
    #[allow(clippy::upper_case_acronyms)]
    pub enum DiskType ("disk type") {
        HDD = "HDD",
        SSD = "SSD",
        NVMe = "NVMe",
        Unknown = "Unknown",
    }
}
default_variant!(DiskType::Unknown);

impl DiskType {
    /// The pool class disks of this type go to; `None` for `Unknown`.
    pub fn pool_class(&self) -> Option<PoolClass> {
        match self {
            Self::HDD => Some(PoolClass::HDD),
            Self::SSD => Some(PoolClass::SSD),
            Self::NVMe => Some(PoolClass::NVMe),
            Self::Unknown => None,
        }
    }
}

impl From<PoolClass> for DiskType {
    fn from(c: PoolClass) -> Self {
        match c {
            PoolClass::HDD => Self::HDD,
            PoolClass::SSD => Self::SSD,
            PoolClass::NVMe => Self::NVMe,
        }
    }
}

string_enum! {
    /// Which component uses a disk (`spec.owner` of LocalDisk and LocalDiskClaim).
    pub enum DiskOwner ("disk owner") {
        /// Not decided yet (`""`); the claim filter treats it like `local-storage`.
        Unknown = "",
        /// The LVM engine (disks become PVs of a `LocalStorage_Pool*` VG).
        LocalStorage = "local-storage",
        /// Raw-disk volumes (`disk.hwameistor.io`).
        LocalDiskManager = "local-disk-manager",
        /// Used by the operating system (partitions, filesystems); never touched.
        System = "system",
    }
}
default_variant!(DiskOwner::Unknown);

impl DiskOwner {
    /// Parse ignoring ASCII case and accepting `_` for `-`.
    pub fn parse_lenient(s: &str) -> Result<Self, ParseEnumError> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        norm.parse::<Self>().map_err(|mut e| {
            e.value = s.to_owned();
            e
        })
    }
}

string_enum! {
    /// Type of a storage pool; the original only knows `REGULAR`.
    #[allow(clippy::upper_case_acronyms)]
    pub enum PoolType ("pool type") {
        REGULAR = "REGULAR",
    }
}
default_variant!(PoolType::REGULAR);

string_enum! {
    /// Access type of a raw-disk volume mount point.
    pub enum AccessType ("access type") {
        Block = "Block",
        Mount = "Mount",
    }
}

string_enum! {
    /// Phase of one mount point of a LocalDiskVolume.
    pub enum MountPointPhase ("mount point phase") {
        Unknown = "",
        ToBeMounted = "ToBeMounted",
        ToBeUnMount = "ToBeUnMount",
        Mounted = "Mounted",
        NotReady = "NotReady",
    }
}
default_variant!(MountPointPhase::Unknown);

string_enum! {
    /// Kind of a LocalVolumeSnapshotRestore.
    pub enum RestoreType ("restore type") {
        /// Merge the snapshot back into its source volume (`lvconvert --merge`).
        Rollback = "rollback",
        /// Copy the snapshot into a new volume.
        Create = "create",
    }
}
default_variant!(RestoreType::Create);

string_enum! {
    /// What a thin volume was cloned from (`spec.thinOrigin.originType`).
    pub enum ThinOriginType ("thin origin type") {
        Volume = "volume",
        Snapshot = "snapshot",
    }
}

string_enum! {
    /// Encryption scheme of a volume; only LUKS exists.
    #[allow(clippy::upper_case_acronyms)]
    pub enum EncryptType ("encryption type") {
        LUKS = "LUKS",
    }
}
default_variant!(EncryptType::LUKS);

string_enum! {
    /// Resource kind an audit Event is about (`spec.resourceType`).
    pub enum EventResourceType ("event resource type") {
        Cluster = "Cluster",
        StorageNode = "StorageNode",
        DiskNode = "DiskNode",
        Pool = "Pool",
        Volume = "Volume",
        DiskVolume = "DiskVolume",
        Disk = "Disk",
    }
}

string_enum! {
    /// Status of a condition.
    pub enum ConditionStatus ("condition status") {
        True = "True",
        False = "False",
        Unknown = "Unknown",
    }
}
default_variant!(ConditionStatus::Unknown);

string_enum! {
    /// Type of a LocalStorageNode / LocalDiskNode condition.
    pub enum StorageNodeConditionType ("storage node condition type") {
        Available = "Available",
        UnAvailable = "UnAvailable",
        Progressing = "Progressing",
        ExpandFailure = "ExpandFailure",
        ExpandSuccess = "ExpandSuccess",
    }
}

string_enum! {
    /// SMART overall health of a disk (`spec.smartInfo.overallHealth`).
    pub enum SmartHealth ("SMART health") {
        Unknown = "",
        Passed = "Passed",
        Failed = "Failed",
    }
}
default_variant!(SmartHealth::Unknown);

string_enum! {
    /// Action of a LocalDiskAction rule; only `reserve` exists.
    pub enum DiskActionType ("disk action") {
        Reserve = "reserve",
    }
}
default_variant!(DiskActionType::Reserve);

string_enum! {
    /// Replica placement policy (`hwameistor.io/replica-affinity` annotation).
    pub enum ReplicaAffinity ("replica affinity") {
        Need = "need",
        Forbid = "forbid",
    }
}
default_variant!(ReplicaAffinity::Need);

string_enum! {
    /// Whether a volume is a filesystem or a raw block device, as seen by CSI.
    pub enum VolumeMode ("volume mode") {
        Filesystem = "Filesystem",
        Block = "Block",
    }
}
default_variant!(VolumeMode::Filesystem);

string_enum! {
    /// Migration progress annotation on a LocalVolume (`hwameistor.io/volume-migrate-state`).
    pub enum MigrateAnnotationState ("migrate annotation state") {
        Started = "migrateStarted",
        Completed = "migrateCompleted",
    }
}

string_enum! {
    /// Install sub-flow of the Cluster object (`status.phase`): reserve the configured disks,
    /// then create one LocalDiskClaim per node and disk type.
    pub enum ClusterPhase ("cluster phase") {
        Unknown = "",
        ToReserve = "ToReserve",
        Reserved = "Reserved",
        CreatedLDC = "CreatedLDC",
    }
}
default_variant!(ClusterPhase::Unknown);

/// A parsed `"<namespace>/<name>"` reference, as used by `spec.volumeEncrypt.secret` and
/// `spec.persistentVolumeClaimName`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl FromStr for NamespacedName {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Self {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                })
            }
            _ => Err(ParseEnumError {
                kind: "namespaced name",
                value: s.to_owned(),
                expected: "<namespace>/<name>".to_owned(),
            }),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T>(all: &[T])
    where
        T: Copy + fmt::Display + FromStr + PartialEq + fmt::Debug,
        <T as FromStr>::Err: fmt::Debug,
    {
        // (serde serialization of every enum is tested in hwameistor-api, which has serde_json)
        for v in all {
            let s = v.to_string();
            assert_eq!(s.parse::<T>().unwrap(), *v);
        }
        let mut strings: Vec<String> = all.iter().map(|v| v.to_string()).collect();
        strings.sort();
        strings.dedup();
        assert_eq!(strings.len(), all.len(), "two variants share a spelling");
    }

    #[test]
    fn every_enum_roundtrips_through_its_string() {
        roundtrip(NodeState::ALL);
        roundtrip(VolumeState::ALL);
        roundtrip(ReplicaState::ALL);
        roundtrip(HaState::ALL);
        roundtrip(OperationState::ALL);
        roundtrip(DiskState::ALL);
        roundtrip(LocalDiskState::ALL);
        roundtrip(DiskClaimState::ALL);
        roundtrip(ClaimPhase::ALL);
        roundtrip(ThinPoolClaimPhase::ALL);
        roundtrip(PoolClass::ALL);
        roundtrip(DiskType::ALL);
        roundtrip(DiskOwner::ALL);
        roundtrip(PoolType::ALL);
        roundtrip(AccessType::ALL);
        roundtrip(MountPointPhase::ALL);
        roundtrip(RestoreType::ALL);
        roundtrip(ThinOriginType::ALL);
        roundtrip(EncryptType::ALL);
        roundtrip(EventResourceType::ALL);
        roundtrip(ConditionStatus::ALL);
        roundtrip(StorageNodeConditionType::ALL);
        roundtrip(SmartHealth::ALL);
        roundtrip(DiskActionType::ALL);
        roundtrip(ReplicaAffinity::ALL);
        roundtrip(VolumeMode::ALL);
        roundtrip(MigrateAnnotationState::ALL);
        roundtrip(ClusterPhase::ALL);
    }

    #[test]
    fn empty_string_is_unknown_where_the_original_writes_it() {
        assert_eq!("".parse::<VolumeState>().unwrap(), VolumeState::Unknown);
        assert_eq!(VolumeState::default().as_str(), "");
        assert_eq!(
            "".parse::<OperationState>().unwrap(),
            OperationState::Unknown
        );
        assert_eq!("".parse::<DiskOwner>().unwrap(), DiskOwner::Unknown);
        assert_eq!("".parse::<ClaimPhase>().unwrap(), ClaimPhase::Unknown);
        assert_eq!(NodeState::default(), NodeState::Unknown);
        assert!("".parse::<PoolClass>().is_err());
    }

    #[test]
    fn quirky_spellings_are_preserved() {
        assert_eq!(OperationState::Cancelled.as_str(), "Cancelled");
        assert_eq!(VolumeState::ToBeMounted.as_str(), "ToBeMounted");
        assert_eq!(MountPointPhase::ToBeUnMount.as_str(), "ToBeUnMount");
        assert_eq!(
            StorageNodeConditionType::UnAvailable.as_str(),
            "UnAvailable"
        );
        assert_eq!(DiskOwner::LocalDiskManager.as_str(), "local-disk-manager");
        assert_eq!(RestoreType::default(), RestoreType::Create);
    }

    #[test]
    fn parse_errors_name_the_enum_and_the_choices() {
        let err = "Huge".parse::<PoolClass>().unwrap_err();
        assert_eq!(err.kind, "pool class");
        assert_eq!(err.value, "Huge");
        let msg = err.to_string();
        assert!(msg.contains("HDD, SSD, NVMe"), "{msg}");
        let msg = "x".parse::<NodeState>().unwrap_err().to_string();
        assert!(msg.contains("\"\", Ready"), "{msg}");
    }

    #[test]
    fn pool_class_names_and_lenient_parsing() {
        assert_eq!(PoolClass::parse_lenient("nvme").unwrap(), PoolClass::NVMe);
        assert_eq!(PoolClass::parse_lenient("Hdd").unwrap(), PoolClass::HDD);
        assert!(PoolClass::parse_lenient("tape").is_err());
        assert_eq!(PoolClass::SSD.lvm_pool_name(), "LocalStorage_PoolSSD");
        assert_eq!(PoolClass::NVMe.disk_pool_name(), "LocalDisk_PoolNVMe");
        assert_eq!(PoolClass::HDD.lower(), "hdd");
        for c in PoolClass::ALL {
            assert_eq!(PoolClass::from_pool_name(c.lvm_pool_name()), Some(*c));
            assert_eq!(PoolClass::from_pool_name(c.disk_pool_name()), Some(*c));
            assert_eq!(DiskType::from(*c).pool_class(), Some(*c));
        }
        assert_eq!(PoolClass::from_pool_name("LocalStorage_PoolHDD-HA"), None);
        assert_eq!(DiskType::Unknown.pool_class(), None);
    }

    #[test]
    fn owner_lenient_parsing() {
        assert_eq!(
            DiskOwner::parse_lenient("Local_Storage").unwrap(),
            DiskOwner::LocalStorage
        );
        assert_eq!(
            DiskOwner::parse_lenient(" SYSTEM ").unwrap(),
            DiskOwner::System
        );
        let err = DiskOwner::parse_lenient("Nobody").unwrap_err();
        assert_eq!(err.value, "Nobody");
    }

    #[test]
    fn terminal_operation_states() {
        let terminal: Vec<_> = OperationState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| s.as_str())
            .collect();
        assert_eq!(terminal, ["Completed", "Aborted", "Failed"]);
    }

    #[test]
    fn namespaced_name_parsing() {
        let n: NamespacedName = "kube-system/my-secret".parse().unwrap();
        assert_eq!(n.namespace, "kube-system");
        assert_eq!(n.name, "my-secret");
        assert_eq!(n.to_string(), "kube-system/my-secret");
        for bad in ["", "noslash", "/x", "x/", "a/b/c"] {
            assert!(bad.parse::<NamespacedName>().is_err(), "{bad}");
        }
    }
}
