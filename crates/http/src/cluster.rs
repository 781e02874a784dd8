//! Task-oriented routes under `/apis/hwameistor.io/v1alpha1/cluster`, after the original
//! apiserver (the subset `hwameictl` needs; see the crate doc for the list).
//!
//! These routes read and write the same objects as the generic endpoints; they only save the
//! client the lookups (a disk by node and device path, the pools of every node, the replicas
//! of a volume) and turn StorageClass-style parameters into a LocalVolume with the shared
//! parser [`hwameistor_core::params`], so `hwameictl volume create` validates exactly like the
//! CSI driver.
//!
//! Differences from the original: list responses are `{"items": [...]}` of the stored objects
//! (no paging or sorting; filters by query are kept where listed).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hwameistor_api::consts;
use hwameistor_core::params::{self, LvmParams, keys};
use hwameistor_store::Selector;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::body::JsonBody;
use crate::error::{Error, Result};

const LV: &str = "localvolumes";
const LVR: &str = "localvolumereplicas";
const LVE: &str = "localvolumeexpands";
const LSN: &str = "localstoragenodes";
const LD: &str = "localdisks";

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

async fn list_all(state: &AppState, plural: &str) -> Result<Vec<Value>> {
    Ok(state
        .registry
        .by_plural(plural)?
        .list(&state.store, &Selector::default())
        .await?
        .0)
}

fn items(items: Vec<Value>) -> Json<Value> {
    Json(json!({ "items": items }))
}

/// Filters of `GET /cluster/volumes`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VolumeQuery {
    volume_name: Option<String>,
    state: Option<String>,
    group: Option<String>,
    node: Option<String>,
}

pub(crate) async fn list_volumes(
    State(st): State<AppState>,
    Query(q): Query<VolumeQuery>,
) -> Result<Json<Value>> {
    let vols = list_all(&st, LV).await?;
    let keep = |v: &Value| {
        q.volume_name
            .as_deref()
            .is_none_or(|n| s(v, "/metadata/name").contains(n))
            && q.state
                .as_deref()
                .is_none_or(|x| s(v, "/status/state") == x)
            && q.group
                .as_deref()
                .is_none_or(|x| s(v, "/spec/volumegroup") == x)
            && q.node.as_deref().is_none_or(|x| {
                v.pointer("/spec/accessibility/nodes")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|n| n.as_str() == Some(x)))
            })
    };
    Ok(items(vols.into_iter().filter(keep).collect()))
}

pub(crate) async fn get_volume(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(
        st.registry.by_plural(LV)?.get(&st.store, &name).await?,
    ))
}

pub(crate) async fn volume_replicas(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    // 404 for an unknown volume rather than an empty list
    st.registry.by_plural(LV)?.get(&st.store, &name).await?;
    let replicas = list_all(&st, LVR).await?;
    Ok(items(
        replicas
            .into_iter()
            .filter(|r| s(r, "/spec/volumeName") == name)
            .collect(),
    ))
}

/// Body of `POST /cluster/volumes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateVolume {
    name: String,
    /// A quantity: `1Gi`, `500Mi`, `1073741824`.
    capacity: String,
    /// StorageClass parameters (`poolClass`, `replicaNumber`, `convertible`, ...).
    #[serde(default)]
    parameters: BTreeMap<String, String>,
    /// Place the volume on this node (the CSI `WaitForFirstConsumer` case); else the
    /// controller's planner chooses.
    #[serde(default)]
    node: Option<String>,
}

fn param_error(e: params::ParamError) -> Error {
    Error::Invalid {
        what: "parameter".into(),
        reason: e.to_string(),
    }
}

/// The pool class with the most free capacity over all nodes' LVM pools, if any node has one.
fn default_pool_class(nodes: &[Value]) -> Option<String> {
    let mut free: BTreeMap<String, i64> = BTreeMap::new();
    for n in nodes {
        if let Some(pools) = n.pointer("/status/pools").and_then(Value::as_object) {
            for (name, p) in pools {
                let class = p
                    .get("class")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .or_else(|| {
                        name.strip_prefix(consts::LVM_POOL_PREFIX)
                            .map(str::to_string)
                    });
                if let Some(class) = class.filter(|c| !c.is_empty()) {
                    *free.entry(class).or_default() += p
                        .get("freeCapacityBytes")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                }
            }
        }
    }
    free.into_iter().max_by_key(|(_, f)| *f).map(|(c, _)| c)
}

/// Build the LocalVolume for a create request (pure; exposed to tests).
pub(crate) fn volume_object(req: &CreateVolume, p: &LvmParams, bytes: u64) -> Result<Value> {
    if p.fs_type.is_some() {
        // the filesystem is chosen when the volume is mounted (`hwameictl volume mount`)
        return Err(Error::Invalid {
            what: "parameter".into(),
            reason: format!(
                "parameter {:?} is not supported by hwameictl volume create; the filesystem is chosen at mount time",
                keys::FS_TYPE
            ),
        });
    }
    let bytes = i64::try_from(bytes).map_err(|_| Error::Invalid {
        what: "capacity".into(),
        reason: format!("{bytes} bytes is too large"),
    })?;
    let mut spec = json!({
        "requiredCapacityBytes": bytes,
        "poolName": format!("{}{}", consts::LVM_POOL_PREFIX, p.pool_class),
        "replicaNumber": p.replica_number,
        "convertible": p.convertible,
        "accessibility": {"nodes": req.node.iter().collect::<Vec<_>>()},
    });
    if p.thin {
        spec["thin"] = json!(true);
    }
    if p.striped {
        spec["striped"] = json!(true);
    }
    if p.iops.is_some() || p.throughput.is_some() {
        spec["volumeQoS"] = json!({
            "iops": p.iops.map(|v| v.to_string()).unwrap_or_default(),
            "throughput": p.throughput.map(|v| v.to_string()).unwrap_or_default(),
        });
    }
    if let Some(e) = &p.encrypt {
        spec["volumeEncrypt"] = json!({
            "enable": true,
            "type": e.kind.to_string(),
            "secret": format!("{}/{}", e.secret_namespace, e.secret_name),
        });
    }
    if let Some(ns) = &p.pvc.namespace {
        spec["pvcNamespace"] = json!(ns);
    }
    if let Some(n) = &p.pvc.name {
        spec["pvcName"] = json!(n);
    }
    Ok(json!({
        "apiVersion": consts::API_VERSION,
        "kind": "LocalVolume",
        "metadata": {"name": req.name},
        "spec": spec,
    }))
}

pub(crate) async fn create_volume(
    State(st): State<AppState>,
    JsonBody(mut req): JsonBody<CreateVolume>,
) -> Result<(StatusCode, Json<Value>)> {
    params::validate_volume_name(&req.name).map_err(|e| Error::Invalid {
        what: "volume name".into(),
        reason: e.to_string(),
    })?;
    let bytes = params::parse_quantity(&req.capacity).map_err(|e| Error::Invalid {
        what: "capacity".into(),
        reason: e.to_string(),
    })?;
    if bytes < params::MIN_VOLUME_BYTES {
        return Err(Error::Invalid {
            what: "capacity".into(),
            reason: format!(
                "{bytes} bytes is below the minimum of {} bytes",
                params::MIN_VOLUME_BYTES
            ),
        });
    }
    if !req.parameters.contains_key(keys::POOL_CLASS) {
        let nodes = list_all(&st, LSN).await?;
        let class = default_pool_class(&nodes).ok_or_else(|| Error::Invalid {
            what: "parameter".into(),
            reason: format!(
                "no node has a storage pool yet, so there is no default; give {:?} (HDD, SSD or NVMe)",
                keys::POOL_CLASS
            ),
        })?;
        req.parameters.insert(keys::POOL_CLASS.into(), class);
    }
    let p = LvmParams::parse(&req.parameters).map_err(param_error)?;
    let obj = volume_object(&req, &p, bytes)?;
    let created = st.registry.by_plural(LV)?.create(&st.store, obj).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Delete a volume the way the CSI driver does: set `spec.delete=true`; the controller
/// removes its replicas and then the LocalVolume. Refused with 409 while the volume has
/// snapshots that are not being deleted (the one rule,
/// [`hwameistor_core::snapshot::volume_delete_check`]).
pub(crate) async fn delete_volume(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let res = st.registry.by_plural(LV)?;
    // 404 for an unknown volume before anything else.
    res.get(&st.store, &name).await?;
    let snaps: Vec<hwameistor_core::snapshot::VolumeSnapshotRef> =
        list_all(&st, "localvolumesnapshots")
            .await?
            .iter()
            .filter(|v| s(v, "/spec/sourceVolume") == name)
            .map(|v| hwameistor_core::snapshot::VolumeSnapshotRef {
                name: s(v, "/metadata/name").to_owned(),
                deleting: v.pointer("/spec/delete").and_then(Value::as_bool) == Some(true)
                    || v.pointer("/metadata/deletionTimestamp").is_some(),
            })
            .collect();
    if let hwameistor_core::snapshot::VolumeDeleteCheck::Refused { message, .. } =
        hwameistor_core::snapshot::volume_delete_check(&name, &snaps)
    {
        return Err(Error::Refused { reason: message });
    }
    Ok(Json(
        res.patch(&st.store, &name, &json!({"spec": {"delete": true}}), false)
            .await?,
    ))
}

/// Body of `POST /cluster/volumes/<name>/expand`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExpandVolume {
    /// A quantity.
    target_capacity: String,
    #[serde(default)]
    abort: bool,
}

/// Expand: create (or update) the LocalVolumeExpand named after the volume.
pub(crate) async fn expand_volume(
    State(st): State<AppState>,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ExpandVolume>,
) -> Result<(StatusCode, Json<Value>)> {
    let vol = st.registry.by_plural(LV)?.get(&st.store, &name).await?;
    let bytes = params::parse_quantity(&req.target_capacity).map_err(|e| Error::Invalid {
        what: "targetCapacity".into(),
        reason: e.to_string(),
    })?;
    let current = vol
        .pointer("/spec/requiredCapacityBytes")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let bytes = i64::try_from(bytes).map_err(|_| Error::Invalid {
        what: "targetCapacity".into(),
        reason: "too large".into(),
    })?;
    if !req.abort && bytes <= current {
        return Err(Error::Invalid {
            what: "targetCapacity".into(),
            reason: format!(
                "{bytes} bytes is not larger than the volume's current {current} bytes; volumes cannot shrink"
            ),
        });
    }
    let lve = st.registry.by_plural(LVE)?;
    let obj = json!({
        "apiVersion": consts::API_VERSION,
        "kind": "LocalVolumeExpand",
        "metadata": {"name": name},
        "spec": {"volumeName": name, "requiredCapacityBytes": bytes, "abort": req.abort},
    });
    match lve.create(&st.store, obj).await {
        Ok(o) => Ok((StatusCode::CREATED, Json(o))),
        Err(Error::Store(hwameistor_store::Error::AlreadyExists { .. })) => {
            let patch = json!({"spec": {"requiredCapacityBytes": bytes, "abort": req.abort}});
            Ok((
                StatusCode::OK,
                Json(lve.patch(&st.store, &name, &patch, false).await?),
            ))
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn list_nodes(State(st): State<AppState>) -> Result<Json<Value>> {
    Ok(items(list_all(&st, LSN).await?))
}

pub(crate) async fn get_node(
    State(st): State<AppState>,
    Path(node): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(
        st.registry.by_plural(LSN)?.get(&st.store, &node).await?,
    ))
}

pub(crate) async fn node_disks(
    State(st): State<AppState>,
    Path(node): Path<String>,
) -> Result<Json<Value>> {
    let disks = list_all(&st, LD).await?;
    Ok(items(
        disks
            .into_iter()
            .filter(|d| s(d, "/spec/nodeName") == node)
            .collect(),
    ))
}

/// Does `key` name this disk: its object name, its device path, or the path without
/// `/dev/` (`sdb` for `/dev/sdb`)?
pub(crate) fn disk_matches(disk: &Value, key: &str) -> bool {
    let dev = s(disk, "/spec/devicePath");
    s(disk, "/metadata/name") == key
        || (!dev.is_empty()
            && (dev == key || dev.strip_prefix("/dev/") == Some(key.trim_start_matches('/'))))
}

async fn find_disk(st: &AppState, node: &str, key: &str) -> Result<Value> {
    let disks = list_all(st, LD).await?;
    let mut found = disks
        .into_iter()
        .filter(|d| (node.is_empty() || s(d, "/spec/nodeName") == node) && disk_matches(d, key));
    match (found.next(), found.next()) {
        (Some(d), None) => Ok(d),
        (None, _) => Err(Error::NotFound {
            what: "LocalDisk",
            name: format!("{node}:{key}"),
        }),
        (Some(_), Some(_)) => Err(Error::BadRequest {
            reason: format!("{key:?} matches disks on several nodes; give the node too"),
        }),
    }
}

pub(crate) async fn get_node_disk(
    State(st): State<AppState>,
    Path((node, disk)): Path<(String, String)>,
) -> Result<Json<Value>> {
    Ok(Json(find_disk(&st, &node, &disk).await?))
}

/// Body of `POST /cluster/nodes/<node>/disks/<devicePath>`.
#[derive(Debug, Deserialize)]
pub(crate) struct ReserveBody {
    reserve: bool,
}

/// Body of `POST /cluster/nodes/<node>/disks/<devicePath>/owner`.
#[derive(Debug, Deserialize)]
pub(crate) struct OwnerBody {
    owner: String,
}

async fn patch_disk(st: &AppState, disk: &Value, patch: Value) -> Result<Value> {
    let name = s(disk, "/metadata/name").to_string();
    st.registry
        .by_plural(LD)?
        .patch(&st.store, &name, &patch, false)
        .await
}

/// Reserve or unreserve a disk (`spec.reserved`); a reserved disk is never claimed.
pub(crate) async fn reserve_disk(
    State(st): State<AppState>,
    Path((node, dev)): Path<(String, String)>,
    JsonBody(b): JsonBody<ReserveBody>,
) -> Result<Json<Value>> {
    let disk = find_disk(&st, &node, &dev).await?;
    Ok(Json(
        patch_disk(&st, &disk, json!({"spec": {"reserved": b.reserve}})).await?,
    ))
}

/// Set a disk's owner (`local-storage`, `local-disk-manager`, or any other name).
pub(crate) async fn disk_owner(
    State(st): State<AppState>,
    Path((node, dev)): Path<(String, String)>,
    JsonBody(b): JsonBody<OwnerBody>,
) -> Result<Json<Value>> {
    if b.owner.trim().is_empty() || b.owner.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Invalid {
            what: "owner".into(),
            reason: format!("{:?} is not a valid owner", b.owner),
        });
    }
    let disk = find_disk(&st, &node, &dev).await?;
    Ok(Json(
        patch_disk(&st, &disk, json!({"spec": {"owner": b.owner}})).await?,
    ))
}

/// Disk routes addressed by LocalDisk name alone (`/cluster/disks/<name>/...`).
pub(crate) async fn reserve_disk_by_name(
    st: State<AppState>,
    Path(disk): Path<String>,
    body: JsonBody<ReserveBody>,
) -> Result<Json<Value>> {
    reserve_disk(st, Path((String::new(), disk)), body).await
}

pub(crate) async fn disk_owner_by_name(
    st: State<AppState>,
    Path(disk): Path<String>,
    body: JsonBody<OwnerBody>,
) -> Result<Json<Value>> {
    disk_owner(st, Path((String::new(), disk)), body).await
}

/// Flatten every node's LVM pools into one row per (pool, node) (pure; exposed to tests).
pub(crate) fn pools_of(nodes: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for n in nodes {
        let node = s(n, "/metadata/name");
        let Some(pools) = n.pointer("/status/pools").and_then(Value::as_object) else {
            continue;
        };
        for (name, p) in pools {
            let num = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or(0);
            out.push(json!({
                "poolName": name,
                "nodeName": node,
                "class": p.get("class").cloned().unwrap_or(Value::String(String::new())),
                "type": p.get("type").cloned().unwrap_or(Value::String(String::new())),
                "totalCapacityBytes": num("totalCapacityBytes"),
                "usedCapacityBytes": num("usedCapacityBytes"),
                "freeCapacityBytes": num("freeCapacityBytes"),
                "volumeCapacityBytesLimit": num("volumeCapacityBytesLimit"),
                "totalVolumeCount": num("totalVolumeCount"),
                "usedVolumeCount": num("usedVolumeCount"),
                "freeVolumeCount": num("freeVolumeCount"),
                "disks": p.get("disks").and_then(Value::as_array).map_or(0, Vec::len),
                "volumes": p.get("volumes").and_then(Value::as_array).map_or(0, Vec::len),
            }));
        }
    }
    out
}

pub(crate) async fn list_pools(State(st): State<AppState>) -> Result<Json<Value>> {
    Ok(items(pools_of(&list_all(&st, LSN).await?)))
}

pub(crate) async fn get_pool(
    State(st): State<AppState>,
    Path(pool): Path<String>,
) -> Result<Json<Value>> {
    let rows: Vec<Value> = pools_of(&list_all(&st, LSN).await?)
        .into_iter()
        .filter(|p| p["poolName"] == pool.as_str())
        .collect();
    if rows.is_empty() {
        return Err(Error::NotFound {
            what: "pool",
            name: pool,
        });
    }
    Ok(items(rows))
}

pub(crate) async fn node_pools(
    State(st): State<AppState>,
    Path(node): Path<String>,
) -> Result<Json<Value>> {
    let n = st.registry.by_plural(LSN)?.get(&st.store, &node).await?;
    Ok(items(pools_of(&[n])))
}

pub(crate) async fn list_localdisks(State(st): State<AppState>) -> Result<Json<Value>> {
    Ok(items(list_all(&st, LD).await?))
}

pub(crate) async fn list_localdisknodes(State(st): State<AppState>) -> Result<Json<Value>> {
    Ok(items(list_all(&st, "localdisknodes").await?))
}

pub(crate) async fn list_events(State(st): State<AppState>) -> Result<Json<Value>> {
    Ok(items(list_all(&st, "events").await?))
}

pub(crate) async fn get_event(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(
        st.registry
            .by_plural("events")?
            .get(&st.store, &name)
            .await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pool_class_prefers_most_free() {
        let nodes = vec![
            json!({"status": {"pools": {
                "LocalStorage_PoolHDD": {"class": "HDD", "freeCapacityBytes": 10},
                "LocalStorage_PoolSSD": {"class": "SSD", "freeCapacityBytes": 30}}}}),
            json!({"status": {"pools": {"LocalStorage_PoolHDD": {"freeCapacityBytes": 25}}}}),
            json!({"metadata": {"name": "empty"}}),
        ];
        assert_eq!(default_pool_class(&nodes).as_deref(), Some("HDD"));
        assert_eq!(default_pool_class(&nodes[2..]), None);
    }

    #[test]
    fn disks_match_by_name_or_path() {
        let d = json!({"metadata": {"name": "localdisk-abc"}, "spec": {"devicePath": "/dev/sdb"}});
        assert!(disk_matches(&d, "localdisk-abc"));
        assert!(disk_matches(&d, "/dev/sdb"));
        assert!(disk_matches(&d, "sdb"));
        assert!(!disk_matches(&d, "sdc"));
        assert!(!disk_matches(&d, "/dev/sd"));
    }

    #[test]
    fn volume_object_from_params() {
        let req = CreateVolume {
            name: "v1".into(),
            capacity: "1Gi".into(),
            parameters: BTreeMap::new(),
            node: Some("n1".into()),
        };
        let mut m = BTreeMap::new();
        m.insert("poolClass".to_string(), "SSD".to_string());
        m.insert("provision-iops-on-creation".to_string(), "100".to_string());
        let p = LvmParams::parse(&m).unwrap();
        let o = volume_object(&req, &p, 1 << 30).unwrap();
        assert_eq!(o["spec"]["poolName"], json!("LocalStorage_PoolSSD"));
        assert_eq!(o["spec"]["requiredCapacityBytes"], json!(1i64 << 30));
        assert_eq!(o["spec"]["replicaNumber"], json!(1));
        assert_eq!(o["spec"]["accessibility"]["nodes"], json!(["n1"]));
        assert_eq!(o["spec"]["volumeQoS"]["iops"], json!("100"));
        assert!(o["spec"].get("striped").is_none());
        m.insert("striped".into(), "true".into());
        let p = LvmParams::parse(&m).unwrap();
        let o = volume_object(&req, &p, 1 << 30).unwrap();
        assert_eq!(o["spec"]["striped"], json!(true));
        m.insert("csi.storage.k8s.io/fstype".into(), "xfs".into());
        let p = LvmParams::parse(&m).unwrap();
        assert!(volume_object(&req, &p, 1 << 30).is_err());
    }

    #[test]
    fn pools_flatten_per_node() {
        let nodes = vec![json!({"metadata": {"name": "n1"}, "status": {"pools": {
            "LocalStorage_PoolHDD": {"class": "HDD", "type": "REGULAR", "totalCapacityBytes": 100,
              "usedCapacityBytes": 40, "freeCapacityBytes": 60, "disks": [{"devPath": "/dev/sdb"}],
              "volumes": ["a", "b"]}}}})];
        let rows = pools_of(&nodes);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["nodeName"], json!("n1"));
        assert_eq!(rows[0]["freeCapacityBytes"], json!(60));
        assert_eq!(rows[0]["disks"], json!(1));
        assert_eq!(rows[0]["volumes"], json!(2));
    }
}
