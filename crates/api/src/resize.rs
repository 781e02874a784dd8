//! ResizePolicy: automatic PVC expansion.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When to grow PVCs automatically. Selectors are ANDed; a policy without selectors is the
/// cluster default. All thresholds are percentages (int8 in the original; stored as int32
/// limited to 0..=100 here, which is wire-compatible).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "ResizePolicy",
    plural = "resizepolicies",
    singular = "resizepolicy",
    status = "ResizePolicyStatus",
    derive = "Default",
    derive = "PartialEq",
    doc = "ResizePolicy tells the PVC auto-resizer when and how much to grow matching PVCs."
)]
#[serde(rename_all = "camelCase")]
pub struct ResizePolicySpec {
    /// Target usage after a resize (percent).
    #[serde(default, skip_serializing_if = "crate::common::is_default")]
    #[schemars(range(min = 0, max = 100))]
    pub warning_threshold: i32,
    /// Usage (percent) at which a volume is grown.
    #[serde(default, skip_serializing_if = "crate::common::is_default")]
    #[schemars(range(min = 0, max = 100))]
    pub resize_threshold: i32,
    /// Volumes in pools used above this percentage are not grown.
    #[serde(default, skip_serializing_if = "crate::common::is_default")]
    #[schemars(range(min = 0, max = 100))]
    pub node_pool_usage_limit: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_selector: Option<LabelSelector>,
}

/// ResizePolicy has an empty status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ResizePolicyStatus {}
