//! Every well-known string of the HwameiStor API: group, drivers, labels, annotations,
//! finalizers, StorageClass parameters, topology keys, pool names, default object names and
//! limits. Use these instead of literals so a typo cannot silently break compatibility.

// --- API group ---------------------------------------------------------------------------------

/// API group of every kind.
pub const GROUP: &str = "hwameistor.io";
/// The only version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every object.
pub const API_VERSION: &str = "hwameistor.io/v1alpha1";

// --- CSI drivers and topology ------------------------------------------------------------------

/// CSI driver of LVM volumes (LocalVolume).
pub const LVM_DRIVER: &str = "lvm.hwameistor.io";
/// CSI driver of raw-disk volumes (LocalDiskVolume).
pub const DISK_DRIVER: &str = "disk.hwameistor.io";
/// Provisioners ending in this suffix are HwameiStor's (admission webhook rule).
pub const PROVISIONER_SUFFIX: &str = "hwameistor.io";
/// Topology key of the LVM driver; value = node name.
pub const LVM_TOPOLOGY_KEY: &str = "topology.lvm.hwameistor.io/node";
/// Topology key of the disk driver; value = node name.
pub const DISK_TOPOLOGY_KEY: &str = "topology.disk.hwameistor.io/node";
/// Vendor version reported by the LVM driver's GetPluginInfo.
pub const LVM_DRIVER_VENDOR_VERSION: &str = "1.0";
/// Vendor version reported by the disk driver's GetPluginInfo.
pub const DISK_DRIVER_VENDOR_VERSION: &str = "v1alpha1";
/// Scheduler name set on pods that use HwameiStor volumes.
pub const SCHEDULER_NAME: &str = "hwameistor-scheduler";
/// Value of zones/regions when no topology is configured.
pub const DEFAULT_TOPOLOGY_VALUE: &str = "default";

// --- Pools -------------------------------------------------------------------------------------

/// Prefix of every LVM volume group we manage.
pub const LVM_POOL_PREFIX: &str = "LocalStorage_Pool";
pub const POOL_NAME_HDD: &str = "LocalStorage_PoolHDD";
pub const POOL_NAME_SSD: &str = "LocalStorage_PoolSSD";
pub const POOL_NAME_NVME: &str = "LocalStorage_PoolNVMe";
/// Directory suffix of HA device symlinks: `/dev/<pool>-HA/<lv>` → `/dev/drbd<minor>`.
pub const HA_POOL_SUFFIX: &str = "-HA";
/// Thin pool LV inside an LVM pool.
pub const THIN_POOL_NAME: &str = "LocalStorage_ThinPool";
/// Prefix of raw-disk pools.
pub const DISK_POOL_PREFIX: &str = "LocalDisk_Pool";
pub const DISK_POOL_NAME_HDD: &str = "LocalDisk_PoolHDD";
pub const DISK_POOL_NAME_SSD: &str = "LocalDisk_PoolSSD";
pub const DISK_POOL_NAME_NVME: &str = "LocalDisk_PoolNVMe";
/// Root of the raw-disk pool symlink directories (`<root>/LocalDisk_Pool<T>/{disk,volume}`).
pub const DISK_POOL_ROOT: &str = "/etc/hwameistor";
/// The only pool type.
pub const POOL_TYPE_REGULAR: &str = "REGULAR";

// --- Limits ------------------------------------------------------------------------------------

/// Maximum number of LVM volumes (including snapshots) per pool.
pub const LVM_VOLUME_MAX_COUNT: i64 = 1000;
/// LVM physical extent size; all LV sizes are rounded up to a multiple of it.
pub const EXTENT_SIZE_BYTES: i64 = 4 * 1024 * 1024;
/// Smallest volume / snapshot / expansion size accepted (one extent).
pub const MIN_VOLUME_SIZE_BYTES: i64 = EXTENT_SIZE_BYTES;
/// Expansion is complete when the allocated size is within this of the request.
pub const VOLUME_EXPANSION_CAPACITY_BYTES_MIN: i64 = 10 * 1024 * 1024;
/// Pool usage ratio considered full (defined by the original, unused there).
pub const STORAGE_POOL_CAPACITY_THRESHOLD_RATIO: f64 = 0.85;
/// A LocalDisk grown by more than this gets its PV resized.
pub const PV_METADATA_SIZE_BYTES: i64 = 4 * 1024 * 1024;
/// Maximum replicas of a LocalVolume (2 + transient ones during migration).
pub const MAX_REPLICA_NUMBER: i64 = 4;
/// First DRBD port; resource N uses port and minor `43001 + N`.
pub const DRBD_START_PORT: u16 = 43001;
/// Default maximum number of HA (DRBD) volumes.
pub const MAX_HA_VOLUME_COUNT: i64 = 1000;
/// Default number of concurrent migrations.
pub const MAX_MIGRATE_COUNT: i64 = 1;
/// At most this many LocalDiskAction matches are remembered.
pub const LDA_MAX_MATCHED_RECORDS: usize = 10;
/// Snapshot size used for PVC clones (the original hard-codes 1 GiB).
pub const CLONE_SNAPSHOT_SIZE_BYTES: i64 = 1024 * 1024 * 1024;
/// Default snapshot restore (dd) timeout in seconds.
pub const SNAPSHOT_RESTORE_TIMEOUT_SECS: u64 = 600;
/// Thin pool warning threshold (percent) for provision ratio, data% and metadata%.
pub const THIN_POOL_WARNING_PERCENT: f64 = 80.0;
/// Default thin pool over-provisioning ratio.
pub const DEFAULT_OVER_PROVISION_RATIO: &str = "1.0";

// --- Owners ------------------------------------------------------------------------------------

pub const OWNER_LOCAL_STORAGE: &str = "local-storage";
pub const OWNER_LOCAL_DISK_MANAGER: &str = "local-disk-manager";
pub const OWNER_SYSTEM: &str = "system";

// --- Labels and annotations --------------------------------------------------------------------

/// Namespace label: `ignore` excludes the namespace from the mutating webhook.
pub const LABEL_WEBHOOK: &str = "hwameistor.io/webhook";
pub const WEBHOOK_IGNORE: &str = "ignore";
/// Node label `disable` keeps volumes on a cordoned node; pod label `start` migrates its volumes.
pub const LABEL_EVICTION: &str = "hwameistor.io/eviction";
pub const EVICTION_DISABLE: &str = "disable";
pub const EVICTION_START: &str = "start";
pub const EVICTION_COMPLETED: &str = "completed";
/// Node/pod label `start` triggers fast failover; the node is set to `completed` afterwards.
pub const LABEL_FAILOVER: &str = "hwameistor.io/failover";
pub const FAILOVER_START: &str = "start";
pub const FAILOVER_COMPLETED: &str = "completed";
/// Node label `false` keeps the local-storage agent off the node.
pub const LABEL_LVM_ENABLE: &str = "lvm.hwameistor.io/enable";
/// PVC annotation `"true"`: ignore the pod's affinity/taints when placing replicas.
pub const ANNOTATION_SKIP_AFFINITY: &str = "hwameistor.io/skip-affinity-annotations";
/// PVC annotation: JSON of the pod's affinity (written by the scheduler).
pub const ANNOTATION_AFFINITY: &str = "hwameistor.io/affinity-annotations";
/// PVC annotation: JSON of the pod's tolerations (written by the scheduler).
pub const ANNOTATION_TOLERATIONS: &str = "hwameistor.io/tolerations-annotations";
/// LV / LVG / LVMigrate annotation: `need` or `forbid`.
pub const ANNOTATION_REPLICA_AFFINITY: &str = "hwameistor.io/replica-affinity";
/// PVC annotation: the ResizePolicy applied to it.
pub const ANNOTATION_RESIZE_POLICY: &str = "hwameistor.io/resizepolicy";
/// LV annotation: `migrateStarted` / `migrateCompleted`.
pub const ANNOTATION_VOLUME_MIGRATE_STATE: &str = "hwameistor.io/volume-migrate-state";
pub const MIGRATE_STARTED: &str = "migrateStarted";
pub const MIGRATE_COMPLETED: &str = "migrateCompleted";
/// LV annotation set when a snapshot restore into it completed.
pub const ANNOTATION_SNAPSHOT_RESTORE_COMPLETED: &str = "hwameistor.io/snapshot-restore-completed";
/// CSI VolumeContext key: the snapshot a volume was restored from.
pub const ANNOTATION_SOURCE_SNAPSHOT: &str = "hwameistor.io/source-snapshot";
/// PV / LV annotation `"true"`: dataset volume.
pub const ANNOTATION_ACCELERATION_DATASET: &str = "hwameistor.io/acceleration-dataset";
/// Node annotation holding the storage (replication) IPv4 address.
pub const ANNOTATION_STORAGE_IPV4: &str = "localstorage.hwameistor.io/storage-ipv4";
/// Env var naming the node annotation that holds the storage IP.
pub const ENV_NODE_ANNOTATION_KEY_STORAGE_IPV4: &str = "NODE_ANNOTATION_KEY_STORAGE_IPV4";
/// PVC annotation set by kube-scheduler for WaitForFirstConsumer.
pub const ANNOTATION_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Label of juicesync data-copy jobs and pods.
pub const LABEL_APP: &str = "app";
pub const APP_DATASYNC: &str = "hwameistor-datasync";
pub const APP_DRBD_ADAPTER: &str = "drbd-adapter";
pub const LABEL_DRBD_VERSION: &str = "drbd-version";
/// StorageClass annotation marking the default class.
pub const ANNOTATION_DEFAULT_STORAGE_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

// --- Finalizers --------------------------------------------------------------------------------

pub const FINALIZER_LVG_PROTECTION: &str = "hwameistor.io/localvolumegroup-protection";
pub const FINALIZER_RESTORING_PROTECTION: &str = "provisioner.hwameistor.io/restoring-protection";
pub const FINALIZER_SYNC_JOB_PROTECT: &str = "hwameistor.io/sync-job-protect";
pub const FINALIZER_EVICTION_PROTECT: &str = "hwameistor.io/eviction-protect";
/// Ours (the original has none): a LocalDiskVolume keeps this finalizer while it holds a disk,
/// so deleting the object directly (not through CSI DeleteVolume) still waits until the node
/// has released the disk (and wiped it if we formatted it).
pub const FINALIZER_DISK_VOLUME_PROTECTION: &str = "disk.hwameistor.io/volume-protection";

// --- StorageClass / VolumeSnapshotClass parameters ---------------------------------------------

/// `HDD`, `SSD` or `NVMe` (required, lvm driver).
pub const PARAM_POOL_CLASS: &str = "poolClass";
/// Replica count, `"1"` or `"2"` (required, lvm driver); ≥2 forces convertible.
pub const PARAM_REPLICA_NUMBER: &str = "replicaNumber";
/// `"true"`: a 1-replica volume on DRBD that can later become HA.
pub const PARAM_CONVERTIBLE: &str = "convertible";
/// `"true"`: thin LV in the pool's thin pool.
pub const PARAM_THIN: &str = "thin";
/// Filesystem type (set by the external-provisioner; default ext4 at publish).
pub const PARAM_FSTYPE: &str = "csi.storage.k8s.io/fstype";
/// Filesystem key written by the original operator for disk StorageClasses (sic).
pub const PARAM_DISK_FSTYPE: &str = "fstype";
/// Max IOPS (quantity).
pub const PARAM_PROVISION_IOPS: &str = "provision-iops-on-creation";
/// Max bytes/s (quantity).
pub const PARAM_PROVISION_THROUGHPUT: &str = "provision-throughput-on-creation";
/// `"<namespace>/<name>"` of the encryption Secret (data key [`ENCRYPT_SECRET_KEY`]).
pub const PARAM_ENCRYPT_SECRET: &str = "encryptSecret";
/// Only `LUKS`.
pub const PARAM_ENCRYPT_TYPE: &str = "encryptType";
/// Data key inside the encryption Secret.
pub const ENCRYPT_SECRET_KEY: &str = "key";
/// PVC name / namespace (injected by external-provisioner `--extra-create-metadata`).
pub const PARAM_PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PARAM_PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
/// Accepted and ignored by the original (always REGULAR / LVM / not striped).
pub const PARAM_POOL_TYPE: &str = "poolType";
pub const PARAM_VOLUME_KIND: &str = "volumeKind";
pub const PARAM_STRIPED: &str = "striped";
/// Disk driver: `HDD`, `SSD` or `NVMe` (required).
pub const PARAM_DISK_TYPE: &str = "diskType";
/// Disk driver: minimum disk size in bytes.
pub const PARAM_MIN_CAP: &str = "minCap";
/// VolumeSnapshotClass: COW space in bytes.
pub const PARAM_SNAPSIZE: &str = "snapsize";

// --- CSI publish context -----------------------------------------------------------------------

pub const PUBLISH_CONTEXT_DEVICE_PATH: &str = "volumeReplicaDevicePath";
pub const PUBLISH_CONTEXT_REPLICA_NAME: &str = "volumeReplicaName";
pub const PUBLISH_CONTEXT_ENCRYPT_SECRET: &str = "volumeEncryptSecret";
pub const PUBLISH_CONTEXT_ENCRYPT_TYPE: &str = "volumeEncryptType";

// --- Default object names ----------------------------------------------------------------------

/// Default StorageClass names; `-convertible` / `-ha` suffixes for the DRBD-backed ones.
pub const SC_LVM_HDD: &str = "hwameistor-storage-lvm-hdd";
pub const SC_LVM_SSD: &str = "hwameistor-storage-lvm-ssd";
pub const SC_LVM_NVME: &str = "hwameistor-storage-lvm-nvme";
pub const SC_LVM_PREFIX: &str = "hwameistor-storage-lvm-";
pub const SC_DISK_PREFIX: &str = "hwameistor-storage-disk-";
pub const SC_SUFFIX_CONVERTIBLE: &str = "-convertible";
pub const SC_SUFFIX_HA: &str = "-ha";
/// VolumeSnapshotClass of the docs.
pub const VSC_LVM_SNAPSHOT: &str = "hwameistor-storage-lvm-snapshot";
/// Default install namespace.
pub const DEFAULT_NAMESPACE: &str = "hwameistor";
/// ConfigMap with SMART results (key = node name).
pub const CONFIGMAP_SMART_RESULT: &str = "hwameistor-smart-result";
/// Secret with the admission webhook's TLS material.
pub const SECRET_ADMISSION_CA: &str = "hwameistor-admission-ca";
/// Secret with REST API tokens.
pub const SECRET_AUTH_TOKENS: &str = "hwameistor-auth-tokens";
/// Mutating webhook configuration name and webhook name.
pub const MUTATING_WEBHOOK_CONFIG: &str = "hwameistor-admission-mutate";
pub const MUTATING_WEBHOOK_NAME: &str = "hwameistor.io.mutate-hook";

// --- Object name prefixes ------------------------------------------------------------------------

/// LocalDisk names: `localdisk-<md5>`.
pub const LOCAL_DISK_NAME_PREFIX: &str = "localdisk-";
/// LocalVolumeSnapshot names: `snapcontent-<uid>`.
pub const SNAPSHOT_NAME_PREFIX: &str = "snapcontent-";
/// CSI snapshot restores: `snaprestore-<volume>`.
pub const SNAPSHOT_RESTORE_PREFIX: &str = "snaprestore-";
/// Temporary clone snapshots: `snapshot-for-<volume>`.
pub const CLONE_SNAPSHOT_PREFIX: &str = "snapshot-for-";
/// Evictor migrations: `evictor-<volume>`.
pub const EVICTOR_MIGRATE_PREFIX: &str = "evictor-";

// --- Leases ------------------------------------------------------------------------------------

/// Per-node heartbeat lease of the LVM agent: `<prefix><node>`.
pub const LEASE_LOCAL_STORAGE_WORKER_PREFIX: &str = "hwameistor-local-storage-worker-";
pub const LEASE_LOCAL_STORAGE_MASTER: &str = "hwameistor-local-storage-master";
pub const LEASE_DISK_MANAGER_WORKER_PREFIX: &str = "hwameistor-local-disk-manager-worker-";
pub const LEASE_DISK_MANAGER_MASTER: &str = "hwameistor-local-disk-manager-master";

// --- Condition types and reasons ---------------------------------------------------------------

/// Replica / replica-snapshot condition types.
pub const CONDITION_SUBMIT: &str = "Submit";
pub const CONDITION_CREATE: &str = "Create";
pub const CONDITION_READY: &str = "Ready";
/// Thin pool state condition.
pub const CONDITION_POOL_STATE: &str = "PoolState";
pub const REASON_POOL_STATE_NORMAL: &str = "PoolStateNormal";
pub const REASON_POOL_STATE_WARNING: &str = "PoolStateWarning";
/// Storage node condition reasons.
pub const REASON_STORAGE_EXPAND_SUCCESS: &str = "StorageExpandSuccess";
pub const REASON_STORAGE_EXPAND_FAILURE: &str = "StorageExpandFailure";
pub const REASON_STORAGE_AVAILABLE: &str = "StorageAvailable";
pub const REASON_STORAGE_UNAVAILABLE: &str = "StorageUnAvailable";
/// Messages CSI looks for in a failed Create condition to reschedule a volume.
pub const MSG_INSUFFICIENT_FREE_SPACE: &str = "insufficient free space";
pub const MSG_INSUFFICIENT_REQUEST_RESOURCES: &str = "insufficient request resources";

/// LVM pool name for a pool class string, e.g. `lvm_pool_name("HDD")`.
pub fn lvm_pool_name(class: hwameistor_core::types::PoolClass) -> &'static str {
    class.lvm_pool_name()
}

/// Default LVM StorageClass name for a class: `hwameistor-storage-lvm-<class>` plus
/// `-convertible` or `-ha`.
pub fn lvm_storage_class_name(
    class: hwameistor_core::types::PoolClass,
    convertible: bool,
    ha: bool,
) -> String {
    let suffix = if ha {
        SC_SUFFIX_HA
    } else if convertible {
        SC_SUFFIX_CONVERTIBLE
    } else {
        ""
    };
    format!("{SC_LVM_PREFIX}{}{suffix}", class.lower())
}

/// Name of the LocalDiskClaim the operator creates per node and disk type:
/// `<node>-<hdd|ssd|nvme>-claim`.
pub fn auto_claim_name(node: &str, class: hwameistor_core::types::PoolClass) -> String {
    format!("{node}-{}-claim", class.lower())
}

/// Device directory of HA (DRBD) volumes of a pool: `/dev/<pool>-HA`.
pub fn ha_device_dir(pool: &str) -> String {
    format!("/dev/{pool}{HA_POOL_SUFFIX}")
}
