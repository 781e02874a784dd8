//! Event: the audit log.

use hwameistor_core::types::EventResourceType;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Audit log of one resource. Name: `lower(<resourceType>-<resourceName>)`; records are only
/// appended.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "hwameistor.io",
    version = "v1alpha1",
    kind = "Event",
    plural = "events",
    singular = "event",
    shortname = "evt",
    status = "EventStatus",
    derive = "PartialEq",
    doc = "Event is the audit log of operations on one HwameiStor resource.",
    printcolumn(name = "type", type_ = "string", json_path = ".spec.resourceType"),
    printcolumn(name = "resource", type_ = "string", json_path = ".spec.resourceName")
)]
#[serde(rename_all = "camelCase")]
pub struct EventSpec {
    /// Cluster, StorageNode, DiskNode, Pool, Volume, DiskVolume or Disk.
    pub resource_type: EventResourceType,
    pub resource_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<EventRecord>,
}

/// One audited action.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// e.g. Create, Delete, Mount, Migrate, StateChange, CapacityExpand, Reserve.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    /// JSON details of the action.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action_content: String,
    /// e.g. Submit, Start, Complete, Abort.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    /// JSON details of the state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state_content: String,
}

/// Event has an empty status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct EventStatus {}

impl Event {
    /// Object name for the audit log of a resource: `lower(<type>-<name>)`.
    pub fn name_for(resource_type: EventResourceType, resource_name: &str) -> String {
        crate::naming::event(resource_type, resource_name)
    }
}
