//! The Controller service: turns CSI calls into desired state on objects and waits for the
//! reconcilers to report the result.
//!
//! | RPC | object change | waits for |
//! |---|---|---|
//! | CreateVolume | create the volume object (idempotent by name) | phase `Ready` |
//! | DeleteVolume | `spec.delete` / `ToBeDeleted` | object gone |
//! | ControllerPublish | `status.publishedNode` | — (returns the replica's device) |
//! | ControllerExpand | bigger required capacity | allocated ≥ required |
//! | CreateSnapshot / DeleteSnapshot | snapshot object / its `spec.delete` | ready / gone |
//! | GetCapacity | — (reads node pools; `thin: "true"`: the thin pools' provisionable bytes) | — |
//!
//! Placement: with WaitForFirstConsumer the CO names the chosen node as the first
//! `preferred` (and usually only `requisite`) topology; we place the primary replica there.
//! With Immediate binding there is no topology and we choose the nodes whose pool of the
//! requested class has the most free space. Either way a volume that no pool can hold is
//! `RESOURCE_EXHAUSTED` before anything is created.
//!
//! Only one operation per volume (or snapshot) name runs at a time; a concurrent call gets
//! `ABORTED`, as the spec asks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hwameistor_core::params::{self, DiskParams, LvmParams, MIN_VOLUME_BYTES, SnapshotParams};
use tonic::{Request, Response, Status};

use crate::backend::*;
use crate::error::{Error, Result};
use crate::proto::controller_server::Controller;
use crate::proto::controller_service_capability::{Rpc, rpc};
use crate::proto::volume_capability::access_mode::Mode;
use crate::proto::*;
use crate::{Driver, PUBLISH_DEVICE_PATH};

/// Default size of a volume when the CO gives no capacity range.
pub const DEFAULT_VOLUME_BYTES: u64 = 1 << 30;

/// Timing of the controller service.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// How long CreateVolume/DeleteVolume/Expand/CreateSnapshot wait for the reconcilers
    /// before answering `UNAVAILABLE` (the CO retries).
    pub wait_timeout: Duration,
    /// How often the object is re-read while waiting.
    pub poll_interval: Duration,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            wait_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// Names with an operation in flight; see [`InFlight::try_lock`].
#[derive(Default)]
struct InFlight(Mutex<HashSet<String>>);

struct InFlightGuard<'a>(&'a InFlight, String);

impl InFlight {
    fn try_lock(&self, name: &str) -> Result<InFlightGuard<'_>> {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !set.insert(name.to_string()) {
            return Err(Error::InFlight {
                id: name.to_string(),
            });
        }
        Ok(InFlightGuard(self, name.to_string()))
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// How a capability accesses the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AccessKind {
    Block,
    Mount {
        fs_type: Option<String>,
        flags: Vec<String>,
    },
}

/// A validated volume capability.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    pub kind: AccessKind,
    /// The access mode allows a single publication (target path) at a time.
    pub single_writer: bool,
}

/// Validate one capability: local volumes are reachable from one node, so only the
/// single-node access modes are supported.
pub(crate) fn check_capability(cap: &VolumeCapability, field: &'static str) -> Result<Access> {
    let mode = cap
        .access_mode
        .as_ref()
        .map(|m| Mode::try_from(m.mode).unwrap_or(Mode::Unknown))
        .ok_or(Error::MissingField { field })?;
    let single_writer = match mode {
        Mode::SingleNodeSingleWriter => true,
        Mode::SingleNodeWriter | Mode::SingleNodeReaderOnly | Mode::SingleNodeMultiWriter => false,
        Mode::Unknown => {
            return Err(Error::InvalidField {
                field,
                reason: "access_mode is missing or unknown".into(),
            });
        }
        other => {
            return Err(Error::InvalidField {
                field,
                reason: format!(
                    "access mode {} is not supported: local volumes are reachable from one node",
                    other.as_str_name()
                ),
            });
        }
    };
    let kind = match &cap.access_type {
        None => {
            return Err(Error::InvalidField {
                field,
                reason: "access_type (block or mount) is required".into(),
            });
        }
        Some(volume_capability::AccessType::Block(_)) => AccessKind::Block,
        Some(volume_capability::AccessType::Mount(m)) => AccessKind::Mount {
            fs_type: params::validate_fs_type(&m.fs_type).map_err(|e| Error::InvalidField {
                field,
                reason: e.to_string(),
            })?,
            flags: m.mount_flags.clone(),
        },
    };
    Ok(Access {
        kind,
        single_writer,
    })
}

/// Check that an id is present and usable as an object and device name.
pub(crate) fn validate_id(field: &'static str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::MissingField { field });
    }
    params::validate_volume_name(id).map_err(|e| Error::InvalidField {
        field,
        reason: e.to_string(),
    })
}

fn round_up(bytes: u64, unit: u64) -> u64 {
    bytes.div_ceil(unit).saturating_mul(unit)
}

/// (required, limit) from a capacity range, validated; limit 0 = none.
fn capacity(range: Option<&CapacityRange>) -> Result<(u64, u64)> {
    let Some(r) = range else { return Ok((0, 0)) };
    if r.required_bytes < 0 {
        return Err(Error::InvalidField {
            field: "capacity_range.required_bytes",
            reason: "negative".into(),
        });
    }
    if r.limit_bytes < 0 {
        return Err(Error::InvalidField {
            field: "capacity_range.limit_bytes",
            reason: "negative".into(),
        });
    }
    let (req, lim) = (r.required_bytes as u64, r.limit_bytes as u64);
    if lim > 0 && req > lim {
        return Err(Error::OutOfRange {
            reason: format!("required_bytes {req} exceeds limit_bytes {lim}"),
        });
    }
    Ok((req, lim))
}

/// The values of our topology key in `topologies`; a topology without the key is refused.
fn topology_nodes(topologies: &[Topology], key: &str, field: &'static str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in topologies {
        match t.segments.get(key) {
            Some(n) if !n.is_empty() => {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
            _ => {
                return Err(Error::InvalidField {
                    field,
                    reason: format!("every topology must carry the segment {key:?}"),
                });
            }
        }
    }
    Ok(out)
}

/// The controller service of one driver.
pub struct ControllerService {
    driver: Driver,
    backend: Arc<dyn Backend>,
    cfg: ControllerConfig,
    inflight: InFlight,
}

impl ControllerService {
    pub fn new(driver: Driver, backend: Arc<dyn Backend>, cfg: ControllerConfig) -> Self {
        ControllerService {
            driver,
            backend,
            cfg,
            inflight: InFlight::default(),
        }
    }

    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            what: what.to_string(),
            driver: self.driver.name(),
        }
    }

    fn parse_params(&self, p: &HashMap<String, String>) -> Result<VolumeParams> {
        let m = p.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Ok(match self.driver {
            Driver::Lvm => VolumeParams::Lvm(LvmParams::parse(&m)?),
            Driver::Disk => VolumeParams::Disk(DiskParams::parse(&m)?),
        })
    }

    fn topology(&self, node: &str) -> Topology {
        Topology {
            segments: [(self.driver.topology_key().to_string(), node.to_string())].into(),
        }
    }

    /// Volume context: a deterministic function of the stored spec, so every call that
    /// reports a volume reports the same context.
    fn volume_context(spec: &VolumeSpec) -> HashMap<String, String> {
        let mut c = HashMap::new();
        match &spec.params {
            VolumeParams::Lvm(p) => {
                c.insert(params::keys::POOL_CLASS.into(), p.pool_class.to_string());
                c.insert(
                    params::keys::REPLICA_NUMBER.into(),
                    p.replica_number.to_string(),
                );
                c.insert(params::keys::CONVERTIBLE.into(), p.convertible.to_string());
                c.insert(params::keys::THIN.into(), p.thin.to_string());
                if let Some(e) = &p.encrypt {
                    // The reference, never the key: the node looks the key up itself.
                    c.insert(
                        params::keys::ENCRYPT_SECRET.into(),
                        format!("{}/{}", e.secret_namespace, e.secret_name),
                    );
                    c.insert(params::keys::ENCRYPT_TYPE.into(), e.kind.to_string());
                }
                if let Some(fs) = &p.fs_type {
                    c.insert(params::keys::FS_TYPE.into(), fs.clone());
                }
            }
            VolumeParams::Disk(p) => {
                c.insert(params::keys::DISK_TYPE.into(), p.disk_type.to_string());
                if let Some(fs) = &p.fs_type {
                    c.insert(params::keys::FS_TYPE.into(), fs.clone());
                }
            }
        }
        c
    }

    fn volume_of(&self, rec: &VolumeRecord) -> Volume {
        Volume {
            capacity_bytes: rec.allocated_bytes.max(rec.spec.required_bytes) as i64,
            volume_id: rec.spec.name.clone(),
            volume_context: Self::volume_context(&rec.spec),
            content_source: rec
                .spec
                .content_source
                .as_ref()
                .map(|s| VolumeContentSource {
                    r#type: Some(match s {
                        ContentSource::Snapshot(id) => volume_content_source::Type::Snapshot(
                            volume_content_source::SnapshotSource {
                                snapshot_id: id.clone(),
                            },
                        ),
                        ContentSource::Volume(id) => volume_content_source::Type::Volume(
                            volume_content_source::VolumeSource {
                                volume_id: id.clone(),
                            },
                        ),
                    }),
                }),
            accessible_topology: rec.spec.nodes.iter().map(|n| self.topology(n)).collect(),
        }
    }

    fn condition_of(rec: &VolumeRecord) -> VolumeCondition {
        match &rec.phase {
            VolumePhase::Ready => VolumeCondition {
                abnormal: false,
                message: "volume is ready".into(),
            },
            VolumePhase::Pending => VolumeCondition {
                abnormal: true,
                message: "volume is not ready yet".into(),
            },
            VolumePhase::Deleting => VolumeCondition {
                abnormal: true,
                message: "volume is being deleted".into(),
            },
            VolumePhase::Failed { message, .. } => VolumeCondition {
                abnormal: true,
                message: message.clone(),
            },
        }
    }

    async fn get(&self, id: &str) -> Result<Option<VolumeRecord>> {
        self.backend
            .get_volume(id)
            .await
            .map_err(Error::backend(format!("read volume {id}")))
    }

    async fn must_get(&self, id: &str) -> Result<VolumeRecord> {
        self.get(id)
            .await?
            .ok_or_else(|| Error::VolumeNotFound { id: id.to_string() })
    }

    /// Re-read `id` until `done` says yes (Some) or the wait times out.
    async fn wait_volume<T>(
        &self,
        id: &str,
        what: &str,
        mut done: impl FnMut(Option<&VolumeRecord>) -> Option<Result<T>>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + self.cfg.wait_timeout;
        loop {
            let rec = self.get(id).await?;
            if let Some(r) = done(rec.as_ref()) {
                return r;
            }
            if tokio::time::Instant::now() >= deadline {
                let phase = rec
                    .map(|r| format!("{:?}", r.phase))
                    .unwrap_or_else(|| "absent".into());
                return Err(Error::NotReady {
                    reason: format!(
                        "volume {id:?} {what}: not done after {:?} (phase {phase}); retry",
                        self.cfg.wait_timeout
                    ),
                });
            }
            self.backend.changed(id, self.cfg.poll_interval).await;
        }
    }

    /// Why `existing` cannot stand for the requested volume, if it cannot.
    fn incompatibility(
        existing: &VolumeSpec,
        wanted: &VolumeSpec,
        allocated: u64,
        limit: u64,
        requisite: &[String],
    ) -> Option<String> {
        let params_differ = match (&existing.params, &wanted.params) {
            (VolumeParams::Lvm(a), VolumeParams::Lvm(b)) => {
                a.pool_class != b.pool_class
                    || a.replica_number != b.replica_number
                    || a.convertible != b.convertible
                    || a.thin != b.thin
                    || a.iops != b.iops
                    || a.throughput != b.throughput
                    || a.encrypt != b.encrypt
            }
            (VolumeParams::Disk(a), VolumeParams::Disk(b)) => a.disk_type != b.disk_type,
            _ => true,
        };
        if params_differ {
            return Some("parameters differ".into());
        }
        let have = allocated.max(existing.required_bytes);
        if have < wanted.required_bytes {
            return Some(format!(
                "it has {have} bytes, {} are required",
                wanted.required_bytes
            ));
        }
        if limit > 0 && existing.required_bytes > limit {
            return Some(format!(
                "it has {} bytes, above limit_bytes {limit}",
                existing.required_bytes
            ));
        }
        if existing.content_source != wanted.content_source {
            return Some("volume_content_source differs".into());
        }
        if !requisite.is_empty() && !existing.nodes.iter().any(|n| requisite.contains(n)) {
            return Some(format!(
                "it is on {:?}, outside the requisite topology",
                existing.nodes
            ));
        }
        None
    }

    /// Choose nodes for a new volume (see the module docs).
    async fn place(
        &self,
        params: &VolumeParams,
        bytes: u64,
        requisite: &[String],
        preferred: &[String],
    ) -> Result<Vec<String>> {
        let class = params.pool_class();
        let nodes = self
            .backend
            .nodes()
            .await
            .map_err(Error::backend("list storage nodes"))?;
        // Thin volumes need a thin pool with `bytes` left to provision under its ratio.
        let thin = matches!(params, VolumeParams::Lvm(p) if p.thin);
        if thin
            && !nodes
                .iter()
                .any(|n| n.pool(class).is_some_and(|p| p.thin_free_bytes.is_some()))
        {
            return Err(Error::Precondition {
                reason: format!(
                    "thin: no node has a thin pool in its {class} pool; create one with a \
                     ThinPoolClaim (nodes with the file engine have no thin pools)"
                ),
            });
        }
        let fits = |n: &NodeCapacity| {
            n.ready
                && n.pool(class).is_some_and(|p| {
                    p.free_volume_count > 0
                        && if thin {
                            p.thin_free_bytes.is_some_and(|f| f >= bytes)
                        } else {
                            p.max_volume_bytes >= bytes
                        }
                })
        };
        let want = params.replicas();
        let fitting = |name: &str| nodes.iter().any(|n| n.node == name && fits(n));
        // The spec's rule: with at least as many replicas as requisite topologies, every
        // requisite node gets a replica and the rest may go anywhere; with fewer, all go to
        // requisite nodes. Preferred nodes (the CO's scheduled node first) come first.
        let must_all = !requisite.is_empty() && want >= requisite.len();
        let mut chosen: Vec<String> = Vec::new();
        if must_all {
            for r in requisite {
                if !fitting(r) {
                    return Err(Error::Exhausted {
                        reason: format!(
                            "node {r:?} has no ready {class} pool with {bytes} bytes and a free volume slot"
                        ),
                    });
                }
            }
            chosen.extend(preferred.iter().filter(|p| requisite.contains(p)).cloned());
            chosen.extend(
                requisite
                    .iter()
                    .filter(|r| !chosen.contains(r))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        } else {
            let allowed = |name: &str| requisite.is_empty() || requisite.iter().any(|r| r == name);
            chosen.extend(
                preferred
                    .iter()
                    .filter(|p| allowed(p) && fitting(p))
                    .cloned(),
            );
        }
        let scope_ok =
            |name: &str| must_all || requisite.is_empty() || requisite.iter().any(|r| r == name);
        let mut rest: Vec<&NodeCapacity> = nodes
            .iter()
            .filter(|n| scope_ok(&n.node) && fits(n) && !chosen.contains(&n.node))
            .collect();
        rest.sort_by_key(|n| std::cmp::Reverse(n.pool(class).map(|p| p.free_bytes).unwrap_or(0)));
        chosen.extend(rest.into_iter().map(|n| n.node.clone()));
        if chosen.len() < want {
            let scope = if requisite.is_empty() {
                "any node".to_string()
            } else {
                format!("{requisite:?}")
            };
            return Err(Error::Exhausted {
                reason: format!(
                    "no {want} node(s) in {scope} have a ready {class} pool with {bytes} bytes and a free volume slot"
                ),
            });
        }
        chosen.truncate(want);
        Ok(chosen)
    }

    async fn create_volume_inner(&self, req: CreateVolumeRequest) -> Result<CreateVolumeResponse> {
        validate_id("name", &req.name)?;
        if req.volume_capabilities.is_empty() {
            return Err(Error::MissingField {
                field: "volume_capabilities",
            });
        }
        for cap in &req.volume_capabilities {
            check_capability(cap, "volume_capabilities")?;
        }
        let params = self.parse_params(&req.parameters)?;
        let (required, limit) = capacity(req.capacity_range.as_ref())?;
        let bytes = match &params {
            VolumeParams::Lvm(_) => {
                let b = round_up(
                    if required == 0 {
                        DEFAULT_VOLUME_BYTES.min(if limit > 0 { limit } else { u64::MAX })
                    } else {
                        required
                    },
                    MIN_VOLUME_BYTES,
                )
                .max(MIN_VOLUME_BYTES);
                if limit > 0 && b > limit {
                    return Err(Error::OutOfRange {
                        reason: format!(
                            "volumes are allocated in units of {MIN_VOLUME_BYTES} bytes: {b} exceeds limit_bytes {limit}"
                        ),
                    });
                }
                b
            }
            VolumeParams::Disk(p) => p.required_bytes(required).max(1),
        };
        let source = match req
            .volume_content_source
            .as_ref()
            .and_then(|s| s.r#type.as_ref())
        {
            None => None,
            Some(_) if self.driver == Driver::Disk => {
                return Err(Error::InvalidField {
                    field: "volume_content_source",
                    reason:
                        "disk.hwameistor.io volumes cannot be created from a snapshot or volume"
                            .into(),
                });
            }
            Some(volume_content_source::Type::Snapshot(s)) => {
                validate_id("volume_content_source.snapshot.snapshot_id", &s.snapshot_id)?;
                Some(ContentSource::Snapshot(s.snapshot_id.clone()))
            }
            Some(volume_content_source::Type::Volume(v)) => {
                validate_id("volume_content_source.volume.volume_id", &v.volume_id)?;
                Some(ContentSource::Volume(v.volume_id.clone()))
            }
        };
        let key = self.driver.topology_key();
        let (requisite, preferred) = match &req.accessibility_requirements {
            None => (vec![], vec![]),
            Some(t) => (
                topology_nodes(&t.requisite, key, "accessibility_requirements.requisite")?,
                topology_nodes(&t.preferred, key, "accessibility_requirements.preferred")?,
            ),
        };

        let _guard = self.inflight.try_lock(&req.name)?;
        let mut wanted = VolumeSpec {
            name: req.name.clone(),
            params,
            required_bytes: bytes,
            nodes: vec![],
            content_source: source,
        };

        if let Some(existing) = self.get(&req.name).await? {
            return self
                .answer_existing(existing, &wanted, limit, &requisite)
                .await;
        }

        wanted.nodes = match &wanted.content_source {
            None => {
                self.place(&wanted.params, bytes, &requisite, &preferred)
                    .await?
            }
            Some(src) => self.source_nodes(src, &wanted, &requisite).await?,
        };
        match self.backend.create_volume(&wanted).await {
            Ok(()) => {
                tracing::info!(volume = %wanted.name, nodes = ?wanted.nodes, bytes, "volume requested");
            }
            Err(BackendError::AlreadyExists(_)) => {
                let existing = self.must_get(&req.name).await?;
                return self
                    .answer_existing(existing, &wanted, limit, &requisite)
                    .await;
            }
            Err(e) => return Err(Error::backend(format!("create volume {}", wanted.name))(e)),
        }
        let rec = self.wait_ready(&wanted.name).await?;
        Ok(CreateVolumeResponse {
            volume: Some(self.volume_of(&rec)),
        })
    }

    async fn answer_existing(
        &self,
        existing: VolumeRecord,
        wanted: &VolumeSpec,
        limit: u64,
        requisite: &[String],
    ) -> Result<CreateVolumeResponse> {
        if existing.phase == VolumePhase::Deleting {
            return Err(Error::NotReady {
                reason: format!("volume {:?} is being deleted; retry later", wanted.name),
            });
        }
        if let Some(reason) = Self::incompatibility(
            &existing.spec,
            wanted,
            existing.allocated_bytes,
            limit,
            requisite,
        ) {
            return Err(Error::AlreadyExists {
                what: "volume",
                name: wanted.name.clone(),
                reason,
            });
        }
        let rec = self.wait_ready(&wanted.name).await?;
        Ok(CreateVolumeResponse {
            volume: Some(self.volume_of(&rec)),
        })
    }

    /// Nodes of a volume restored or cloned from `src` (the data is on the source's nodes).
    async fn source_nodes(
        &self,
        src: &ContentSource,
        wanted: &VolumeSpec,
        requisite: &[String],
    ) -> Result<Vec<String>> {
        let volume_id = match src {
            ContentSource::Snapshot(id) => {
                let snap = self
                    .backend
                    .get_snapshot(id)
                    .await
                    .map_err(Error::backend(format!("read snapshot {id}")))?
                    .filter(|s| !s.deleting)
                    .ok_or_else(|| Error::SnapshotNotFound { id: id.clone() })?;
                if !snap.ready {
                    return Err(Error::NotReady {
                        reason: format!("snapshot {id:?} is not ready yet"),
                    });
                }
                snap.spec.source_volume
            }
            ContentSource::Volume(id) => id.clone(),
        };
        let vol = match (src, self.get(&volume_id).await?) {
            (_, Some(v)) => v,
            (ContentSource::Volume(_), None) => {
                return Err(Error::VolumeNotFound { id: volume_id });
            }
            (ContentSource::Snapshot(id), None) => {
                return Err(Error::Precondition {
                    reason: format!(
                        "source volume {volume_id:?} of snapshot {id:?} no longer exists"
                    ),
                });
            }
        };
        if matches!(src, ContentSource::Volume(_)) && vol.phase != VolumePhase::Ready {
            return Err(Error::NotReady {
                reason: format!("source volume {volume_id:?} is not ready"),
            });
        }
        if wanted.required_bytes < vol.spec.required_bytes {
            return Err(Error::OutOfRange {
                reason: format!(
                    "{} bytes requested, smaller than the source volume {volume_id:?} ({} bytes)",
                    wanted.required_bytes, vol.spec.required_bytes
                ),
            });
        }
        if let (VolumeParams::Lvm(a), VolumeParams::Lvm(b)) = (&vol.spec.params, &wanted.params)
            && (a.pool_class != b.pool_class || a.thin != b.thin)
        {
            return Err(Error::InvalidField {
                field: "volume_content_source",
                reason: format!("the source {volume_id:?} is in another pool class or thin mode"),
            });
        }
        // The copy carries the source's bytes: a LUKS container stays one (and needs a key
        // that opens it), plain data stays plain. Mixing would leave a volume the node must
        // refuse to publish.
        if let (VolumeParams::Lvm(a), VolumeParams::Lvm(b)) = (&vol.spec.params, &wanted.params)
            && a.encrypt.is_some() != b.encrypt.is_some()
        {
            return Err(Error::InvalidField {
                field: "volume_content_source",
                reason: format!(
                    "the source {volume_id:?} is {}; the new volume must be {} too (parameter {})",
                    if a.encrypt.is_some() {
                        "encrypted"
                    } else {
                        "not encrypted"
                    },
                    if a.encrypt.is_some() {
                        "encrypted"
                    } else {
                        "unencrypted"
                    },
                    params::keys::ENCRYPT_SECRET,
                ),
            });
        }
        let nodes: Vec<String> = vol
            .spec
            .nodes
            .iter()
            .take(wanted.params.replicas())
            .cloned()
            .collect();
        if !requisite.is_empty() && !nodes.iter().any(|n| requisite.contains(n)) {
            return Err(Error::Exhausted {
                reason: format!(
                    "the source {volume_id:?} is on {nodes:?}, outside the requisite topology {requisite:?}"
                ),
            });
        }
        if nodes.len() < wanted.params.replicas() {
            return Err(Error::InvalidField {
                field: "volume_content_source",
                reason: format!("the source {volume_id:?} has fewer replicas than replicaNumber"),
            });
        }
        Ok(nodes)
    }

    async fn wait_ready(&self, id: &str) -> Result<VolumeRecord> {
        let res = self
            .wait_volume(id, "to become ready", |rec| match rec {
                None => Some(Err(Error::NotReady {
                    reason: format!("volume {id:?} disappeared while being created; retry"),
                })),
                Some(r) => match &r.phase {
                    VolumePhase::Ready => Some(Ok(r.clone())),
                    VolumePhase::Failed {
                        message,
                        exhausted: true,
                    } => Some(Err(Error::Exhausted {
                        reason: format!("volume {id:?}: {message}"),
                    })),
                    VolumePhase::Failed { message, .. } => Some(Err(Error::Backend {
                        context: format!("volume {id}"),
                        source: BackendError::Other(message.clone()),
                    })),
                    VolumePhase::Deleting => Some(Err(Error::NotReady {
                        reason: format!("volume {id:?} is being deleted"),
                    })),
                    VolumePhase::Pending => None,
                },
            })
            .await;
        if let Err(Error::Exhausted { .. }) = &res {
            // Give the space back so the CO can retry on another node.
            if let Err(e) = self.backend.delete_volume(id).await {
                tracing::warn!(volume = id, error = %e, "cannot delete volume that did not fit");
            }
        }
        res
    }

    async fn delete_volume_inner(&self, req: DeleteVolumeRequest) -> Result<DeleteVolumeResponse> {
        validate_id("volume_id", &req.volume_id)?;
        let _guard = self.inflight.try_lock(&req.volume_id)?;
        let Some(rec) = self.get(&req.volume_id).await? else {
            return Ok(DeleteVolumeResponse {});
        };
        if let Some(node) = &rec.published_node {
            return Err(Error::Precondition {
                reason: format!(
                    "volume {:?} is still published to node {node:?}",
                    req.volume_id
                ),
            });
        }
        if rec.snapshots > 0 {
            // The one rule (core::snapshot::volume_delete_check), naming the snapshots.
            let snaps: Vec<hwameistor_core::snapshot::VolumeSnapshotRef> = self
                .backend
                .list_snapshots()
                .await
                .map_err(Error::backend("list snapshots"))?
                .into_iter()
                .filter(|s| s.spec.source_volume == req.volume_id)
                .map(|s| hwameistor_core::snapshot::VolumeSnapshotRef {
                    name: s.spec.name,
                    deleting: s.deleting,
                })
                .collect();
            let reason =
                match hwameistor_core::snapshot::volume_delete_check(&req.volume_id, &snaps) {
                    hwameistor_core::snapshot::VolumeDeleteCheck::Refused { message, .. } => {
                        message
                    }
                    _ => format!(
                        "volume {:?} has {} snapshot(s); delete them first",
                        req.volume_id, rec.snapshots
                    ),
                };
            return Err(Error::Precondition { reason });
        }
        self.backend
            .delete_volume(&req.volume_id)
            .await
            .map_err(Error::backend(format!("delete volume {}", req.volume_id)))?;
        self.wait_volume(&req.volume_id, "to be deleted", |r| {
            r.is_none().then_some(Ok(()))
        })
        .await?;
        tracing::info!(volume = %req.volume_id, "volume deleted");
        Ok(DeleteVolumeResponse {})
    }

    async fn publish_inner(
        &self,
        req: ControllerPublishVolumeRequest,
    ) -> Result<ControllerPublishVolumeResponse> {
        if self.driver == Driver::Disk {
            return Err(self.unsupported("ControllerPublishVolume"));
        }
        validate_id("volume_id", &req.volume_id)?;
        if req.node_id.is_empty() {
            return Err(Error::MissingField { field: "node_id" });
        }
        let cap = req.volume_capability.as_ref().ok_or(Error::MissingField {
            field: "volume_capability",
        })?;
        let access = check_capability(cap, "volume_capability")?;
        let _guard = self.inflight.try_lock(&req.volume_id)?;
        let rec = self.must_get(&req.volume_id).await?;
        let nodes = self
            .backend
            .nodes()
            .await
            .map_err(Error::backend("list storage nodes"))?;
        if !nodes.iter().any(|n| n.node == req.node_id) {
            return Err(Error::NodeNotFound { node: req.node_id });
        }
        if let Some(other) = rec.published_node.as_ref().filter(|n| **n != req.node_id) {
            return Err(Error::Precondition {
                reason: format!("volume {:?} is published to node {other:?}", req.volume_id),
            });
        }
        let replica = rec
            .replica_on(&req.node_id)
            .ok_or_else(|| Error::Precondition {
                reason: format!(
                    "volume {:?} has no replica on node {:?} (replicas on {:?})",
                    req.volume_id,
                    req.node_id,
                    rec.replicas.iter().map(|r| &r.node).collect::<Vec<_>>()
                ),
            })?;
        let dev = match (&replica.dev_path, replica.ready) {
            (Some(d), true) => d.clone(),
            _ => {
                return Err(Error::NotReady {
                    reason: format!(
                        "replica of {:?} on {:?} is not ready",
                        req.volume_id, req.node_id
                    ),
                });
            }
        };
        let fs_type = match &access.kind {
            AccessKind::Block => None,
            AccessKind::Mount { fs_type, .. } => {
                Some(fs_type.clone().unwrap_or_else(|| "ext4".into()))
            }
        };
        let publication = Publication {
            node: req.node_id.clone(),
            fs_type,
        };
        self.backend
            .set_published(&req.volume_id, Some(&publication))
            .await
            .map_err(Error::backend(format!("publish volume {}", req.volume_id)))?;
        Ok(ControllerPublishVolumeResponse {
            publish_context: [(PUBLISH_DEVICE_PATH.to_string(), dev)].into(),
        })
    }

    async fn unpublish_inner(
        &self,
        req: ControllerUnpublishVolumeRequest,
    ) -> Result<ControllerUnpublishVolumeResponse> {
        if self.driver == Driver::Disk {
            return Err(self.unsupported("ControllerUnpublishVolume"));
        }
        validate_id("volume_id", &req.volume_id)?;
        let _guard = self.inflight.try_lock(&req.volume_id)?;
        let rec = self.must_get(&req.volume_id).await?;
        match &rec.published_node {
            None => {}
            Some(n) if !req.node_id.is_empty() && *n != req.node_id => {}
            Some(_) => self
                .backend
                .set_published(&req.volume_id, None)
                .await
                .map_err(Error::backend(format!(
                    "unpublish volume {}",
                    req.volume_id
                )))?,
        }
        Ok(ControllerUnpublishVolumeResponse {})
    }

    fn entry_status(rec: &VolumeRecord) -> (Vec<String>, VolumeCondition) {
        (
            rec.published_node.iter().cloned().collect(),
            Self::condition_of(rec),
        )
    }

    fn page<T: Clone>(items: &[T], max: i32, token: &str) -> Result<(Vec<T>, String)> {
        if max < 0 {
            return Err(Error::InvalidField {
                field: "max_entries",
                reason: "negative".into(),
            });
        }
        let start: usize = if token.is_empty() {
            0
        } else {
            token
                .parse()
                .ok()
                .filter(|s| *s <= items.len())
                .ok_or_else(|| Error::BadToken {
                    token: token.to_string(),
                })?
        };
        let end = if max == 0 {
            items.len()
        } else {
            (start + max as usize).min(items.len())
        };
        let next = if end < items.len() {
            end.to_string()
        } else {
            String::new()
        };
        Ok((items[start..end].to_vec(), next))
    }

    async fn get_capacity_inner(&self, req: GetCapacityRequest) -> Result<GetCapacityResponse> {
        for cap in &req.volume_capabilities {
            check_capability(cap, "volume_capabilities")?;
        }
        let (classes, thin): (Vec<_>, bool) = if req.parameters.is_empty() {
            (hwameistor_core::types::PoolClass::ALL.to_vec(), false)
        } else {
            let params = self.parse_params(&req.parameters)?;
            let thin = matches!(&params, VolumeParams::Lvm(p) if p.thin);
            (vec![params.pool_class()], thin)
        };
        let node = match &req.accessible_topology {
            None => None,
            Some(t) => Some(
                topology_nodes(
                    std::slice::from_ref(t),
                    self.driver.topology_key(),
                    "accessible_topology",
                )?
                .remove(0),
            ),
        };
        let nodes = self
            .backend
            .nodes()
            .await
            .map_err(Error::backend("list storage nodes"))?;
        let (mut available, mut maximum) = (0u64, 0u64);
        for n in nodes
            .iter()
            .filter(|n| n.ready && node.as_ref().is_none_or(|x| *x == n.node))
        {
            for p in n
                .pools
                .iter()
                .filter(|p| classes.contains(&p.class) && p.free_volume_count > 0)
            {
                // Thin volumes come from the thin pool: what it may still provision under
                // its ratio (size × ratio − provisioned); a pool without one offers nothing.
                let (free, max) = if thin {
                    let f = p.thin_free_bytes.unwrap_or(0);
                    (f, f)
                } else {
                    (p.free_bytes, p.max_volume_bytes)
                };
                available = available.saturating_add(free);
                maximum = maximum.max(max);
            }
        }
        Ok(GetCapacityResponse {
            available_capacity: available.min(i64::MAX as u64) as i64,
            maximum_volume_size: Some(maximum.min(i64::MAX as u64) as i64),
            minimum_volume_size: Some(match self.driver {
                Driver::Lvm => MIN_VOLUME_BYTES as i64,
                Driver::Disk => 0,
            }),
        })
    }

    async fn expand_inner(
        &self,
        req: ControllerExpandVolumeRequest,
    ) -> Result<ControllerExpandVolumeResponse> {
        if self.driver == Driver::Disk {
            return Err(self.unsupported("ControllerExpandVolume"));
        }
        validate_id("volume_id", &req.volume_id)?;
        let range = req.capacity_range.as_ref().ok_or(Error::MissingField {
            field: "capacity_range",
        })?;
        let (required, limit) = capacity(Some(range))?;
        if required == 0 {
            return Err(Error::MissingField {
                field: "capacity_range.required_bytes",
            });
        }
        let block = match &req.volume_capability {
            Some(c) => matches!(
                check_capability(c, "volume_capability")?.kind,
                AccessKind::Block
            ),
            None => false,
        };
        let _guard = self.inflight.try_lock(&req.volume_id)?;
        let rec = self.must_get(&req.volume_id).await?;
        let bytes = round_up(required, MIN_VOLUME_BYTES);
        if limit > 0 && bytes > limit {
            return Err(Error::OutOfRange {
                reason: format!("{bytes} bytes (rounded to extents) exceed limit_bytes {limit}"),
            });
        }
        let have = rec.allocated_bytes.max(rec.spec.required_bytes);
        if bytes > have {
            let delta = bytes - have;
            let class = rec.spec.params.pool_class();
            let nodes = self
                .backend
                .nodes()
                .await
                .map_err(Error::backend("list storage nodes"))?;
            for r in &rec.spec.nodes {
                let free = nodes
                    .iter()
                    .find(|n| &n.node == r)
                    .and_then(|n| n.pool(class))
                    .map(|p| p.free_bytes)
                    .unwrap_or(0);
                if free < delta {
                    return Err(Error::Exhausted {
                        reason: format!(
                            "node {r:?} has {free} free bytes in its {class} pool, {delta} more are needed"
                        ),
                    });
                }
            }
            self.backend
                .expand_volume(&req.volume_id, bytes)
                .await
                .map_err(Error::backend(format!("expand volume {}", req.volume_id)))?;
        }
        let rec = self
            .wait_volume(&req.volume_id, "to grow", |r| match r {
                None => Some(Err(Error::VolumeNotFound {
                    id: req.volume_id.clone(),
                })),
                Some(r) if r.allocated_bytes >= bytes && r.phase == VolumePhase::Ready => {
                    Some(Ok(r.clone()))
                }
                Some(_) => None,
            })
            .await?;
        Ok(ControllerExpandVolumeResponse {
            capacity_bytes: rec.allocated_bytes as i64,
            node_expansion_required: !block,
        })
    }

    fn snapshot_of(s: &SnapshotRecord) -> Snapshot {
        Snapshot {
            size_bytes: s.spec.size_bytes as i64,
            snapshot_id: s.spec.name.clone(),
            source_volume_id: s.spec.source_volume.clone(),
            creation_time: Some(prost_types::Timestamp {
                seconds: s.creation_time,
                nanos: 0,
            }),
            ready_to_use: s.ready,
        }
    }

    async fn create_snapshot_inner(
        &self,
        req: CreateSnapshotRequest,
    ) -> Result<CreateSnapshotResponse> {
        if self.driver == Driver::Disk {
            return Err(self.unsupported("CreateSnapshot"));
        }
        validate_id("name", &req.name)?;
        validate_id("source_volume_id", &req.source_volume_id)?;
        let sp = SnapshotParams::parse(
            &req.parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )?;
        let _guard = self.inflight.try_lock(&req.name)?;
        let existing = self
            .backend
            .get_snapshot(&req.name)
            .await
            .map_err(Error::backend(format!("read snapshot {}", req.name)))?;
        if let Some(s) = existing {
            if s.spec.source_volume != req.source_volume_id {
                return Err(Error::AlreadyExists {
                    what: "snapshot",
                    name: req.name,
                    reason: format!("it is a snapshot of {:?}", s.spec.source_volume),
                });
            }
        } else {
            let vol = self.must_get(&req.source_volume_id).await?;
            if vol.spec.params.replicas() > 1 {
                return Err(Error::InvalidField {
                    field: "source_volume_id",
                    reason: "snapshots of volumes with more than one replica are not supported"
                        .into(),
                });
            }
            let thin = matches!(&vol.spec.params, VolumeParams::Lvm(p) if p.thin);
            let size = if thin {
                vol.spec.required_bytes
            } else {
                sp.snapsize
                    .unwrap_or(vol.allocated_bytes.max(vol.spec.required_bytes))
            };
            let spec = SnapshotSpec {
                name: req.name.clone(),
                source_volume: req.source_volume_id.clone(),
                size_bytes: size,
            };
            match self.backend.create_snapshot(&spec).await {
                Ok(()) | Err(BackendError::AlreadyExists(_)) => {}
                Err(e) => return Err(Error::backend(format!("create snapshot {}", req.name))(e)),
            }
        }
        let deadline = tokio::time::Instant::now() + self.cfg.wait_timeout;
        loop {
            let s = self
                .backend
                .get_snapshot(&req.name)
                .await
                .map_err(Error::backend(format!("read snapshot {}", req.name)))?;
            match s {
                Some(s) if s.ready => {
                    return Ok(CreateSnapshotResponse {
                        snapshot: Some(Self::snapshot_of(&s)),
                    });
                }
                Some(SnapshotRecord {
                    failure: Some(f), ..
                }) if out_of_space(&f) => {
                    return Err(Error::Exhausted {
                        reason: format!("snapshot {:?}: {f}", req.name),
                    });
                }
                Some(SnapshotRecord {
                    failure: Some(f), ..
                }) => {
                    return Err(Error::Backend {
                        context: format!("snapshot {}", req.name),
                        source: BackendError::Other(f),
                    });
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::NotReady {
                        reason: format!("snapshot {:?} is not ready yet; retry", req.name),
                    });
                }
                _ => {
                    self.backend
                        .changed(&req.name, self.cfg.poll_interval)
                        .await
                }
            }
        }
    }

    async fn delete_snapshot_inner(
        &self,
        req: DeleteSnapshotRequest,
    ) -> Result<DeleteSnapshotResponse> {
        if self.driver == Driver::Disk {
            return Err(self.unsupported("DeleteSnapshot"));
        }
        validate_id("snapshot_id", &req.snapshot_id)?;
        let _guard = self.inflight.try_lock(&req.snapshot_id)?;
        let get = || async {
            self.backend
                .get_snapshot(&req.snapshot_id)
                .await
                .map_err(Error::backend(format!("read snapshot {}", req.snapshot_id)))
        };
        if get().await?.is_none() {
            return Ok(DeleteSnapshotResponse {});
        }
        self.backend
            .delete_snapshot(&req.snapshot_id)
            .await
            .map_err(Error::backend(format!(
                "delete snapshot {}",
                req.snapshot_id
            )))?;
        let deadline = tokio::time::Instant::now() + self.cfg.wait_timeout;
        while get().await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::NotReady {
                    reason: format!(
                        "snapshot {:?} is still being deleted; retry",
                        req.snapshot_id
                    ),
                });
            }
            self.backend
                .changed(&req.snapshot_id, self.cfg.poll_interval)
                .await;
        }
        Ok(DeleteSnapshotResponse {})
    }

    async fn list_snapshots_inner(
        &self,
        req: ListSnapshotsRequest,
    ) -> Result<ListSnapshotsResponse> {
        if self.driver == Driver::Disk {
            return Err(self.unsupported("ListSnapshots"));
        }
        let all = self
            .backend
            .list_snapshots()
            .await
            .map_err(Error::backend("list snapshots"))?;
        let items: Vec<_> = all
            .iter()
            .filter(|s| !s.deleting)
            .filter(|s| req.snapshot_id.is_empty() || s.spec.name == req.snapshot_id)
            .filter(|s| {
                req.source_volume_id.is_empty() || s.spec.source_volume == req.source_volume_id
            })
            .map(|s| list_snapshots_response::Entry {
                snapshot: Some(Self::snapshot_of(s)),
            })
            .collect();
        let (entries, next_token) = Self::page(&items, req.max_entries, &req.starting_token)?;
        Ok(ListSnapshotsResponse {
            entries,
            next_token,
        })
    }

    fn capabilities(&self) -> Vec<rpc::Type> {
        use rpc::Type::*;
        match self.driver {
            Driver::Lvm => vec![
                CreateDeleteVolume,
                PublishUnpublishVolume,
                ListVolumes,
                GetCapacity,
                CreateDeleteSnapshot,
                ListSnapshots,
                CloneVolume,
                ExpandVolume,
                ListVolumesPublishedNodes,
                VolumeCondition,
                GetVolume,
                SingleNodeMultiWriter,
            ],
            Driver::Disk => {
                vec![
                    CreateDeleteVolume,
                    ListVolumes,
                    GetCapacity,
                    ListVolumesPublishedNodes,
                    VolumeCondition,
                    GetVolume,
                    SingleNodeMultiWriter,
                ]
            }
        }
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        req: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "CreateVolume");
        Ok(Response::new(self.create_volume_inner(req).await?))
    }

    async fn delete_volume(
        &self,
        req: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "DeleteVolume");
        Ok(Response::new(self.delete_volume_inner(req).await?))
    }

    async fn controller_publish_volume(
        &self,
        req: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "ControllerPublishVolume");
        Ok(Response::new(self.publish_inner(req).await?))
    }

    async fn controller_unpublish_volume(
        &self,
        req: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "ControllerUnpublishVolume");
        Ok(Response::new(self.unpublish_inner(req).await?))
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = req.into_inner();
        validate_id("volume_id", &req.volume_id)?;
        if req.volume_capabilities.is_empty() {
            return Err(Error::MissingField {
                field: "volume_capabilities",
            }
            .into());
        }
        self.must_get(&req.volume_id).await?;
        let unsupported: Vec<String> = req
            .volume_capabilities
            .iter()
            .filter_map(|c| {
                check_capability(c, "volume_capabilities")
                    .err()
                    .map(|e| e.to_string())
            })
            .collect();
        if !unsupported.is_empty() {
            return Ok(Response::new(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: unsupported.join("; "),
            }));
        }
        if !req.parameters.is_empty()
            && let Err(e) = self.parse_params(&req.parameters)
        {
            return Ok(Response::new(ValidateVolumeCapabilitiesResponse {
                confirmed: None,
                message: e.to_string(),
            }));
        }
        Ok(Response::new(ValidateVolumeCapabilitiesResponse {
            confirmed: Some(validate_volume_capabilities_response::Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: Default::default(),
            }),
            message: String::new(),
        }))
    }

    async fn list_volumes(
        &self,
        req: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        let req = req.into_inner();
        let all = self
            .backend
            .list_volumes()
            .await
            .map_err(Error::backend("list volumes"))?;
        let items: Vec<_> = all
            .iter()
            .map(|r| {
                let (published_node_ids, cond) = Self::entry_status(r);
                list_volumes_response::Entry {
                    volume: Some(self.volume_of(r)),
                    status: Some(list_volumes_response::VolumeStatus {
                        published_node_ids,
                        volume_condition: Some(cond),
                    }),
                }
            })
            .collect();
        let (entries, next_token) = Self::page(&items, req.max_entries, &req.starting_token)?;
        Ok(Response::new(ListVolumesResponse {
            entries,
            next_token,
        }))
    }

    async fn get_capacity(
        &self,
        req: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        Ok(Response::new(
            self.get_capacity_inner(req.into_inner()).await?,
        ))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        let capabilities = self
            .capabilities()
            .into_iter()
            .map(|t| ControllerServiceCapability {
                r#type: Some(controller_service_capability::Type::Rpc(Rpc {
                    r#type: t as i32,
                })),
            })
            .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse {
            capabilities,
        }))
    }

    async fn create_snapshot(
        &self,
        req: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "CreateSnapshot");
        Ok(Response::new(self.create_snapshot_inner(req).await?))
    }

    async fn delete_snapshot(
        &self,
        req: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "DeleteSnapshot");
        Ok(Response::new(self.delete_snapshot_inner(req).await?))
    }

    async fn list_snapshots(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        Ok(Response::new(
            self.list_snapshots_inner(req.into_inner()).await?,
        ))
    }

    async fn controller_expand_volume(
        &self,
        req: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "ControllerExpandVolume");
        Ok(Response::new(self.expand_inner(req).await?))
    }

    async fn controller_get_volume(
        &self,
        req: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let req = req.into_inner();
        validate_id("volume_id", &req.volume_id)?;
        let rec = self.must_get(&req.volume_id).await?;
        let (published_node_ids, cond) = Self::entry_status(&rec);
        Ok(Response::new(ControllerGetVolumeResponse {
            volume: Some(self.volume_of(&rec)),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids,
                volume_condition: Some(cond),
            }),
        }))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(self
            .unsupported("ControllerModifyVolume (MODIFY_VOLUME is not advertised)")
            .into())
    }
}
