//! ResizePolicy: automatic PVC expansion.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When to grow PVCs automatically. Selectors are ANDed; a policy without selectors is the
/// cluster default. All thresholds are percentages.
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
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub warning_threshold: i8,
    /// Usage (percent) at which a volume is grown.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub resize_threshold: i8,
    /// Volumes in pools used above this percentage are not grown.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub node_pool_usage_limit: i8,
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
