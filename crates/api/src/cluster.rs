//! Cluster: the installation object (`hmcluster`), owned by the operator.
//!
//! Component sub-specs are modelled with the fields our operator uses; fields of the original
//! operator we do not model are dropped by the API server's pruning.

use std::collections::BTreeMap;

use hwameistor_core::types::ClusterPhase;
use k8s_openapi::api::core::v1::{NodeAffinity, PodAffinity, ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{is_default, is_false};

/// The HwameiStor installation: which components run, with which images and settings, and
/// which disks to reserve or claim at install time.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "Cluster",
    plural = "clusters",
    singular = "cluster",
    shortname = "hmcluster",
    status = "ClusterStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "Cluster describes a HwameiStor installation and reports component health."
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Namespace the components run in (default `hwameistor`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_namespace: String,
    /// Do not create LocalDiskClaims for free disks at install time.
    #[serde(default, skip_serializing_if = "is_false")]
    pub not_claim_disk: bool,
    /// Disks to reserve per node before claiming.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_reserve_configurations: Vec<DiskReserveConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_disk_manager: Option<LocalDiskManagerComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_storage: Option<LocalStorageComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evictor: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_controller: Option<AdmissionControllerComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServerComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exporter: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auditor: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_assistant: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_auto_resizer: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_disk_action_controller: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drbd: Option<DrbdSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rbac: Option<RbacSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<StorageClassSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_load_manager: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_set_manager: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dataset_default_pool_class: String,
}

/// Devices of a node to reserve at install time.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskReserveConfiguration {
    pub node_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

/// Container image coordinates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

/// Settings of one container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerCommonSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Pod-level settings of a component's workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodCommonSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub priority_class_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_affinity: Option<PodAffinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// A component that is a Deployment with one main container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common: Option<PodCommonSpec>,
    /// The main container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerCommonSpec>,
}

/// CSI sidecars of a driver.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsiSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registrar: Option<ContainerCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<CsiControllerSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsiControllerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common: Option<PodCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioner: Option<ContainerCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attacher: Option<ContainerCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<ContainerCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resizer: Option<ContainerCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_controller: Option<ContainerCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshotter: Option<ContainerCommonSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalDiskManagerComponent {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubelet_root_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi: Option<CsiSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common: Option<PodCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<ContainerCommonSpec>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub toleration_on_master: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalStorageComponent {
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubelet_root_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi: Option<CsiSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common: Option<PodCommonSpec>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub toleration_on_master: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<DisableSpec>,
}

/// The local-storage node agent container.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// First DRBD port (default 43001).
    #[serde(default, skip_serializing_if = "is_default")]
    pub drbd_start_port: i32,
    /// Maximum number of HA volumes (default 1000).
    #[serde(
        rename = "maxHAVolumeCount",
        default,
        skip_serializing_if = "is_default"
    )]
    pub max_ha_volume_count: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub juicesync_image: Option<ImageSpec>,
    #[serde(
        rename = "hostPathSSHDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub host_path_ssh_dir: String,
    #[serde(
        rename = "hostPathDRBDDir",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub host_path_drbd_dir: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisableSpec {
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionControllerComponent {
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common: Option<PodCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<ContainerCommonSpec>,
    /// `Ignore` (default) or `Fail`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_policy: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiServerComponent {
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common: Option<PodCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ContainerCommonSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationSpec>,
}

/// REST API authentication (default off, admin/admin).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationSpec {
    #[serde(default, skip_serializing_if = "is_false")]
    pub enable: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_key: String,
}

/// DRBD kernel module installation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrbdSpec {
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub deploy_on_master: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipper: Option<ImageSpec>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_pull_policy: String,
    /// e.g. `v9.0.32-1`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub drbd_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub upgrade: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub check_host_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub use_affinity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_affinity: Option<NodeAffinity>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chart_version: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RbacSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
}

/// StorageClasses created by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassSpec {
    #[serde(default, skip_serializing_if = "is_false")]
    pub disable: bool,
    #[serde(default = "crate::common::default_true")]
    pub allow_volume_expansion: bool,
    /// `Retain` (default) or `Delete`.
    #[serde(default = "default_reclaim_policy")]
    pub reclaim_policy: String,
    /// `xfs` (default) or `ext4`.
    #[serde(default = "default_fs_type")]
    pub fs_type: String,
}

impl Default for StorageClassSpec {
    fn default() -> Self {
        Self {
            disable: false,
            allow_volume_expansion: true,
            reclaim_policy: default_reclaim_policy(),
            fs_type: default_fs_type(),
        }
    }
}

fn default_reclaim_policy() -> String {
    "Retain".to_owned()
}

fn default_fs_type() -> String {
    "xfs".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    #[serde(rename = "installedCRDS", default, skip_serializing_if = "is_false")]
    pub installed_crds: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub drbd_adapter_created: bool,
    #[serde(default, skip_serializing_if = "is_default")]
    pub drbd_adapter_created_job_num: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub disk_reserve_state: String,
    /// Install sub-flow: "", ToReserve, Reserved, CreatedLDC.
    #[serde(default, skip_serializing_if = "is_default")]
    pub phase: ClusterPhase,
    /// Component name (localDiskManager, localStorage, scheduler, ...) → health.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub component_status: BTreeMap<String, ComponentStatus>,
}

/// Health of one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<DeployStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi: Option<DeployStatus>,
    /// `Normal` or `Unhealthy`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodStatus>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub desired_pod_count: i32,
    #[serde(default, skip_serializing_if = "is_default")]
    pub available_pod_count: i32,
    /// Deployment or DaemonSet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
}
