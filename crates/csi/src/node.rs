//! The Node service: makes a volume usable at a path on this node.
//!
//! Device work (mkfs, mount, bind mount, grow, statfs) goes through the [`NodeOps`] trait so
//! the service's CSI logic (validation, idempotency, single-writer rules, error codes) is
//! tested with a fake, and production uses the host implementation in
//! [`crate::host::HostNodeOps`].
//!
//! The node learns which device backs a volume from the `PublishContext` written by
//! ControllerPublish (`volumeReplicaDevicePath`, lvm driver) or, when absent, from the
//! volume's replica on this node in the object store (disk driver, which has no
//! ControllerPublish). Publications are remembered per volume and target path in memory and,
//! when a state directory is configured, in `<state_dir>/<driver>-publications.json`, so a
//! restarted plugin still enforces single-writer rules and answers repeats idempotently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use hwameistor_core::types::NamespacedName;
use hwameistor_engine::luks::{self, Secret};

use crate::backend::{Backend, MountRecord, Usage, VolumeParams, VolumePhase};
use crate::controller::{AccessKind, check_capability, validate_id};
use crate::error::{Error, Result};
use crate::keys::KeySource;
use crate::proto::node_server::Node;
use crate::proto::node_service_capability::{Rpc, rpc};
use crate::proto::*;
use crate::{Driver, PUBLISH_DEVICE_PATH};

/// Failure of a node-side device operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeOpsError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("busy: {0}")]
    Busy(String),
    /// The key does not open the volume's LUKS container.
    #[error("{0}")]
    WrongKey(String),
    #[error("{0}")]
    Failed(String),
}

/// Usage of a mounted filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
    pub used_inodes: u64,
}

/// Device work on the node. Every method is idempotent.
#[async_trait]
pub trait NodeOps: Send + Sync + 'static {
    /// Make a filesystem of `fs_type` on `device` unless it already has one (a different
    /// existing filesystem is an error, never overwritten), then mount it at `target`
    /// (a directory, created if missing) with `flags`, read-only if asked. A target already
    /// mounted from `device` is success. Returns whether a filesystem was created.
    async fn mount_fs(
        &self,
        device: &Path,
        target: &Path,
        fs_type: &str,
        flags: &[String],
        readonly: bool,
    ) -> Result<bool, NodeOpsError>;
    /// Bind-mount the block device onto `target` (a file, created if missing).
    async fn mount_block(
        &self,
        device: &Path,
        target: &Path,
        readonly: bool,
    ) -> Result<(), NodeOpsError>;
    /// Unmount `target` if it is a mount point, then remove it. A missing target is success.
    async fn unmount(&self, target: &Path) -> Result<(), NodeOpsError>;
    /// Statistics of the filesystem mounted at `path` ([`NodeOpsError::NotFound`] if the
    /// path does not exist).
    async fn fs_stats(&self, path: &Path) -> Result<FsStats, NodeOpsError>;
    /// Size in bytes of a block device.
    async fn device_size(&self, device: &Path) -> Result<u64, NodeOpsError>;
    /// Grow the filesystem on `device`, mounted at `path`, to fill the device. Returns the
    /// new filesystem size in bytes.
    async fn grow_fs(&self, device: &Path, path: &Path) -> Result<u64, NodeOpsError>;

    /// Open the LUKS2 container on `device` as `/dev/mapper/<mapping>` and return the
    /// mapping's path. A blank device is formatted first (LUKS2 with `key`); a device holding
    /// anything else (a filesystem, a partition table) is refused ([`NodeOpsError::Busy`])
    /// and never touched; a key that opens no key slot is [`NodeOpsError::WrongKey`]. An
    /// already open mapping is success. The key reaches `cryptsetup` on stdin only.
    async fn open_luks(
        &self,
        device: &Path,
        mapping: &str,
        key: &Secret,
    ) -> Result<PathBuf, NodeOpsError> {
        let _ = (device, key);
        Err(NodeOpsError::Failed(format!(
            "this node cannot open encrypted volumes (mapping {mapping})"
        )))
    }
    /// Close the mapping `mapping`; a mapping that is not open is success.
    async fn close_luks(&self, mapping: &str) -> Result<(), NodeOpsError> {
        let _ = mapping;
        Ok(())
    }
    /// Grow the open mapping `mapping` to the size of its (grown) device.
    async fn resize_luks(&self, mapping: &str, key: &Secret) -> Result<(), NodeOpsError> {
        let _ = key;
        Err(NodeOpsError::Failed(format!(
            "this node cannot resize encrypted volumes (mapping {mapping})"
        )))
    }
}

/// Configuration of the node service.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's name (NodeId and topology value).
    pub node_name: String,
    /// Filesystem used when neither the capability nor the StorageClass names one.
    pub default_fs_type: String,
    /// Where publications are remembered across restarts (`None`: memory only).
    pub state_dir: Option<PathBuf>,
    /// Where keys of encrypted volumes come from (see [`crate::keys`]).
    pub keys: KeySource,
}

/// One publication of a volume at a target path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Published {
    /// What is mounted: the volume's device, or for an encrypted volume its open mapping.
    device: String,
    block: bool,
    readonly: bool,
    /// Access mode forbids a second target on this node.
    single_writer: bool,
    fs_type: Option<String>,
    /// Set for encrypted volumes: `device` is this LUKS mapping of the volume's device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    luks: Option<LuksMapping>,
}

/// The open LUKS mapping behind a publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LuksMapping {
    /// Device-mapper name (`<volume>-encrypt`).
    mapping: String,
    /// The volume's own (ciphertext) device.
    backing: String,
}

/// Device-mapper name of the LUKS mapping of `volume` (validated: it reaches argv).
pub fn luks_mapping_name(volume: &str) -> Result<String> {
    let name = luks::mapping_name(volume);
    hwameistor_core::names::validate("mapping", &name).map_err(|e| Error::InvalidField {
        field: "volume_id",
        reason: format!("cannot name the volume's LUKS mapping: {e}"),
    })?;
    Ok(name)
}

type Publications = BTreeMap<String, BTreeMap<String, Published>>;

/// Node service of one driver.
pub struct NodeService {
    driver: Driver,
    cfg: NodeConfig,
    backend: Arc<dyn Backend>,
    ops: Arc<dyn NodeOps>,
    /// volume id -> target path -> publication.
    published: Mutex<Publications>,
}

impl NodeService {
    /// Create the service, loading remembered publications from the state directory.
    pub fn new(
        driver: Driver,
        cfg: NodeConfig,
        backend: Arc<dyn Backend>,
        ops: Arc<dyn NodeOps>,
    ) -> Self {
        let published = cfg
            .state_dir
            .as_ref()
            .and_then(|d| std::fs::read(d.join(Self::state_file_name(driver))).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        NodeService {
            driver,
            cfg,
            backend,
            ops,
            published: Mutex::new(published),
        }
    }

    fn state_file_name(driver: Driver) -> String {
        format!("{}-publications.json", driver.name())
    }

    async fn save(&self, p: &Publications) {
        let Some(dir) = &self.cfg.state_dir else {
            return;
        };
        let path = dir.join(Self::state_file_name(self.driver));
        let tmp = path.with_extension("json.tmp");
        let body = match serde_json::to_vec_pretty(p) {
            Ok(b) => b,
            Err(e) => return tracing::warn!(error = %e, "cannot encode publications"),
        };
        let res = async {
            tokio::fs::create_dir_all(dir).await?;
            tokio::fs::write(&tmp, body).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, path = %path.display(), "cannot save publications");
        }
    }

    /// Device of `volume` on this node: from the publish context, else from the store.
    async fn device_of(
        &self,
        volume: &str,
        publish_context: &std::collections::HashMap<String, String>,
    ) -> Result<String> {
        if let Some(dev) = publish_context
            .get(PUBLISH_DEVICE_PATH)
            .filter(|d| !d.is_empty())
        {
            return Ok(dev.clone());
        }
        let rec = self
            .backend
            .get_volume(volume)
            .await
            .map_err(Error::backend(format!("read volume {volume}")))?
            .ok_or_else(|| Error::VolumeNotFound {
                id: volume.to_string(),
            })?;
        let replica = rec
            .replica_on(&self.cfg.node_name)
            .ok_or_else(|| Error::Precondition {
                reason: format!(
                    "volume {volume:?} has no replica on node {:?}",
                    self.cfg.node_name
                ),
            })?;
        match (&replica.dev_path, replica.ready) {
            (Some(d), true) => Ok(d.clone()),
            _ => Err(Error::NotReady {
                reason: format!(
                    "replica of {volume:?} on {:?} is not ready",
                    self.cfg.node_name
                ),
            }),
        }
    }

    /// The key reference of `volume` if it is encrypted: from the object store (the truth),
    /// or, for a volume the store does not know, from the volume context.
    async fn encryption_of(
        &self,
        volume: &str,
        volume_context: &std::collections::HashMap<String, String>,
    ) -> Result<Option<NamespacedName>> {
        if self.driver != Driver::Lvm {
            return Ok(None);
        }
        let rec = self
            .backend
            .get_volume(volume)
            .await
            .map_err(Error::backend(format!("read volume {volume}")))?;
        if let Some(rec) = rec {
            return Ok(Self::encryption_in(&rec.spec.params));
        }
        match volume_context
            .get(hwameistor_core::params::keys::ENCRYPT_SECRET)
            .filter(|v| !v.trim().is_empty())
        {
            Some(v) => Ok(Some(hwameistor_core::params::parse_secret_ref(v)?)),
            None => Ok(None),
        }
    }

    fn encryption_in(params: &VolumeParams) -> Option<NamespacedName> {
        match params {
            VolumeParams::Lvm(p) => p.encrypt.as_ref().map(|e| NamespacedName {
                namespace: e.secret_namespace.clone(),
                name: e.secret_name.clone(),
            }),
            VolumeParams::Disk(_) => None,
        }
    }

    /// The key of an encrypted volume (request secrets first, then the node's source).
    async fn key_for(
        &self,
        reference: &NamespacedName,
        secrets: &std::collections::HashMap<String, String>,
    ) -> Result<Secret> {
        use crate::keys::KeyError;
        self.cfg
            .keys
            .key(reference, secrets)
            .await
            .map_err(|e| match e {
                KeyError::Unavailable { .. } => Error::NotReady {
                    reason: e.to_string(),
                },
                _ => Error::Precondition {
                    reason: e.to_string(),
                },
            })
    }

    fn target_field(path: &str, field: &'static str) -> Result<PathBuf> {
        if path.is_empty() {
            return Err(Error::MissingField { field });
        }
        let p = PathBuf::from(path);
        if !p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(Error::InvalidField {
                field,
                reason: "must be an absolute path without '..'".into(),
            });
        }
        Ok(p)
    }

    async fn publish(&self, req: NodePublishVolumeRequest) -> Result<NodePublishVolumeResponse> {
        validate_id("volume_id", &req.volume_id)?;
        let target = Self::target_field(&req.target_path, "target_path")?;
        let cap = req.volume_capability.as_ref().ok_or(Error::MissingField {
            field: "volume_capability",
        })?;
        let access = check_capability(cap, "volume_capability")?;
        let device = self.device_of(&req.volume_id, &req.publish_context).await?;
        // An encrypted volume is mounted through its LUKS mapping; the key is looked up
        // before anything is touched, so a missing key changes nothing on the node.
        let encryption = match self
            .encryption_of(&req.volume_id, &req.volume_context)
            .await?
        {
            Some(reference) => {
                let mapping = luks_mapping_name(&req.volume_id)?;
                let key = self.key_for(&reference, &req.secrets).await?;
                Some((
                    LuksMapping {
                        mapping,
                        backing: device.clone(),
                    },
                    key,
                ))
            }
            None => None,
        };
        let fs_type = match &access.kind {
            AccessKind::Block => None,
            AccessKind::Mount { fs_type, .. } => Some(
                fs_type
                    .clone()
                    .or_else(|| {
                        req.volume_context
                            .get(hwameistor_core::params::keys::FS_TYPE)
                            .cloned()
                    })
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| self.cfg.default_fs_type.clone()),
            ),
        };
        let wanted = Published {
            device: match &encryption {
                Some((l, _)) => luks::mapper_path(&l.mapping).display().to_string(),
                None => device.clone(),
            },
            block: matches!(access.kind, AccessKind::Block),
            readonly: req.readonly,
            single_writer: access.single_writer,
            fs_type: fs_type.clone(),
            luks: encryption.as_ref().map(|(l, _)| l.clone()),
        };
        let target_key = target.display().to_string();
        let mut all = self.published.lock().await;
        let mine = all.entry(req.volume_id.clone()).or_default();
        let repeat = match mine.get(&target_key) {
            None => false,
            // A repeat: mount again below (idempotent), since the mount may be gone after a
            // reboot even though we remember the publication.
            Some(existing) if existing == &wanted => true,
            Some(_) => return Err(Error::AlreadyExists {
                what: "publication at",
                name: target_key,
                reason:
                    "the volume is already published there with another capability or readonly flag"
                        .into(),
            }),
        };
        if let Some((other, _)) = mine
            .iter()
            .filter(|(t, _)| !repeat || **t != target_key)
            .find(|(_, p)| p.single_writer || wanted.single_writer)
        {
            return Err(Error::Precondition {
                reason: format!(
                    "volume {:?} is already published at {other:?} and its access mode allows a single target",
                    req.volume_id
                ),
            });
        }
        let dev = match &encryption {
            // Blank device: luksFormat first; LUKS: open; anything else: refused untouched.
            Some((l, key)) => self
                .ops
                .open_luks(Path::new(&l.backing), &l.mapping, key)
                .await
                .map_err(Error::node("open the LUKS container"))?,
            None => PathBuf::from(&device),
        };
        drop(encryption);
        let mounted = match (&access.kind, &fs_type) {
            (AccessKind::Mount { flags, .. }, Some(fs)) => self
                .ops
                .mount_fs(&dev, &target, fs, flags, req.readonly)
                .await
                .map_err(Error::node("mount")),
            _ => self
                .ops
                .mount_block(&dev, &target, req.readonly)
                .await
                .map(|()| false)
                .map_err(Error::node("bind mount")),
        };
        let formatted = match mounted {
            Ok(f) => f,
            Err(e) => {
                // Do not leave a mapping open that no publication uses.
                if let Some(l) = &wanted.luks
                    && !mine.keys().any(|t| *t != target_key)
                    && let Err(ce) = self.ops.close_luks(&l.mapping).await
                {
                    tracing::warn!(volume = %req.volume_id, error = %ce, "cannot close the LUKS mapping after a failed mount");
                }
                return Err(e);
            }
        };
        mine.insert(target_key.clone(), wanted);
        let snapshot = all.clone();
        drop(all);
        self.save(&snapshot).await;
        let record = MountRecord {
            fs_type: fs_type.clone(),
            access_mode: cap.access_mode.as_ref().map(|m| m.mode).unwrap_or(0),
            formatted,
        };
        if let Err(e) = self
            .backend
            .record_mount(&req.volume_id, &target_key, Some(&record))
            .await
        {
            tracing::warn!(volume = %req.volume_id, error = %e, "cannot record the publication");
        }
        tracing::info!(volume = %req.volume_id, target = %target.display(), device, "volume published");
        Ok(NodePublishVolumeResponse {})
    }

    async fn unpublish(
        &self,
        req: NodeUnpublishVolumeRequest,
    ) -> Result<NodeUnpublishVolumeResponse> {
        validate_id("volume_id", &req.volume_id)?;
        let target = Self::target_field(&req.target_path, "target_path")?;
        let key = target.display().to_string();
        let mut all = self.published.lock().await;
        let known = all
            .get(&req.volume_id)
            .is_some_and(|m| m.contains_key(&key));
        if !known {
            // Not published here by us: OK, but an unknown volume is NOT_FOUND.
            let exists = self
                .backend
                .get_volume(&req.volume_id)
                .await
                .map_err(Error::backend(format!("read volume {}", req.volume_id)))?
                .is_some();
            if !exists {
                return Err(Error::VolumeNotFound { id: req.volume_id });
            }
        }
        self.ops
            .unmount(&target)
            .await
            .map_err(Error::node("unmount"))?;
        let forgotten = all.get_mut(&req.volume_id).and_then(|m| m.remove(&key));
        if all.get(&req.volume_id).is_some_and(|m| m.is_empty()) {
            all.remove(&req.volume_id);
        }
        // The last publication on this node closes the volume's LUKS mapping. Also when we
        // did not know the publication (a mapping left open by a crash or a lost state
        // file): closing a mapping that is not open is a no-op.
        if self.driver == Driver::Lvm && !all.contains_key(&req.volume_id) {
            let mapping = match forgotten.and_then(|p| p.luks) {
                Some(l) => Some(l.mapping),
                None => luks_mapping_name(&req.volume_id).ok(),
            };
            if let Some(m) = mapping
                && let Err(e) = self.ops.close_luks(&m).await
            {
                let snapshot = all.clone();
                drop(all);
                self.save(&snapshot).await;
                return Err(Error::node("close the LUKS mapping")(e));
            }
        }
        let snapshot = all.clone();
        drop(all);
        self.save(&snapshot).await;
        if let Err(e) = self.backend.record_mount(&req.volume_id, &key, None).await {
            tracing::debug!(volume = %req.volume_id, error = %e, "cannot forget the publication");
        }
        tracing::info!(volume = %req.volume_id, target = %target.display(), "volume unpublished");
        Ok(NodeUnpublishVolumeResponse {})
    }

    async fn stats(&self, req: NodeGetVolumeStatsRequest) -> Result<NodeGetVolumeStatsResponse> {
        validate_id("volume_id", &req.volume_id)?;
        let path = Self::target_field(&req.volume_path, "volume_path")?;
        let rec = self
            .backend
            .get_volume(&req.volume_id)
            .await
            .map_err(Error::backend(format!("read volume {}", req.volume_id)))?
            .ok_or_else(|| Error::VolumeNotFound {
                id: req.volume_id.clone(),
            })?;
        if tokio::fs::symlink_metadata(&path).await.is_err() {
            return Err(Error::PathNotFound {
                path: req.volume_path,
            });
        }
        let key = path.display().to_string();
        let publication = self
            .published
            .lock()
            .await
            .get(&req.volume_id)
            .and_then(|m| m.get(&key).cloned());
        let mut condition = match &rec.phase {
            VolumePhase::Ready => VolumeCondition {
                abnormal: false,
                message: "volume is ready".into(),
            },
            other => VolumeCondition {
                abnormal: true,
                message: format!("volume is not ready: {other:?}"),
            },
        };
        let usage = match &publication {
            Some(p) if p.block => {
                let size = self
                    .ops
                    .device_size(Path::new(&p.device))
                    .await
                    .map_err(Error::node("device size"))?;
                vec![VolumeUsage {
                    available: 0,
                    total: size as i64,
                    used: 0,
                    unit: volume_usage::Unit::Bytes as i32,
                }]
            }
            _ => {
                let s = self
                    .ops
                    .fs_stats(&path)
                    .await
                    .map_err(Error::node("statfs"))?;
                if publication.is_none() {
                    condition = VolumeCondition {
                        abnormal: true,
                        message: format!(
                            "{key} is not a publication of this volume known to this node"
                        ),
                    };
                } else {
                    let usage = Usage {
                        used_bytes: s.used_bytes,
                        total_inodes: s.total_inodes,
                        used_inodes: s.used_inodes,
                    };
                    if let Err(e) = self.backend.record_usage(&req.volume_id, usage).await {
                        tracing::warn!(volume = %req.volume_id, error = %e, "cannot record volume usage");
                    }
                }
                vec![
                    VolumeUsage {
                        available: s.available_bytes as i64,
                        total: s.total_bytes as i64,
                        used: s.used_bytes as i64,
                        unit: volume_usage::Unit::Bytes as i32,
                    },
                    VolumeUsage {
                        available: s.free_inodes as i64,
                        total: s.total_inodes as i64,
                        used: s.used_inodes as i64,
                        unit: volume_usage::Unit::Inodes as i32,
                    },
                ]
            }
        };
        Ok(NodeGetVolumeStatsResponse {
            usage,
            volume_condition: Some(condition),
        })
    }

    async fn expand(&self, req: NodeExpandVolumeRequest) -> Result<NodeExpandVolumeResponse> {
        if self.driver == Driver::Disk {
            return Err(Error::Unsupported {
                what: "NodeExpandVolume".into(),
                driver: self.driver.name(),
            });
        }
        validate_id("volume_id", &req.volume_id)?;
        let path = Self::target_field(&req.volume_path, "volume_path")?;
        let rec = self
            .backend
            .get_volume(&req.volume_id)
            .await
            .map_err(Error::backend(format!("read volume {}", req.volume_id)))?
            .ok_or_else(|| Error::VolumeNotFound {
                id: req.volume_id.clone(),
            })?;
        if tokio::fs::symlink_metadata(&path).await.is_err() {
            return Err(Error::PathNotFound {
                path: req.volume_path,
            });
        }
        if let Some(range) = &req.capacity_range {
            if range.required_bytes < 0 || range.limit_bytes < 0 {
                return Err(Error::InvalidField {
                    field: "capacity_range",
                    reason: "negative".into(),
                });
            }
            if range.limit_bytes > 0 && (rec.allocated_bytes as i64) > range.limit_bytes {
                return Err(Error::OutOfRange {
                    reason: format!(
                        "volume has {} bytes, above limit_bytes {}",
                        rec.allocated_bytes, range.limit_bytes
                    ),
                });
            }
        }
        let key = path.display().to_string();
        let publication = self
            .published
            .lock()
            .await
            .get(&req.volume_id)
            .and_then(|m| m.get(&key).cloned());
        let block = publication.as_ref().map(|p| p.block).unwrap_or_else(|| {
            matches!(
                req.volume_capability
                    .as_ref()
                    .and_then(|c| c.access_type.as_ref()),
                Some(volume_capability::AccessType::Block(_))
            )
        });
        let mut device = match &publication {
            Some(p) => p.device.clone(),
            None => self.device_of(&req.volume_id, &Default::default()).await?,
        };
        if let Some(reference) = Self::encryption_in(&rec.spec.params) {
            // The LV grew; the mapping on it must grow before the filesystem can.
            let mapping = match publication.as_ref().and_then(|p| p.luks.as_ref()) {
                Some(l) => l.mapping.clone(),
                None => luks_mapping_name(&req.volume_id)?,
            };
            let key = self.key_for(&reference, &req.secrets).await?;
            self.ops
                .resize_luks(&mapping, &key)
                .await
                .map_err(Error::node("resize the LUKS mapping"))?;
            device = luks::mapper_path(&mapping).display().to_string();
        }
        let size = if block {
            self.ops
                .device_size(Path::new(&device))
                .await
                .map_err(Error::node("device size"))?
        } else {
            self.ops
                .grow_fs(Path::new(&device), &path)
                .await
                .map_err(Error::node("grow filesystem"))?
        };
        Ok(NodeExpandVolumeResponse {
            capacity_bytes: size as i64,
        })
    }
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        _: Request<NodeStageVolumeRequest>,
    ) -> Result<Response<NodeStageVolumeResponse>, Status> {
        Err(Error::Unsupported {
            what: "NodeStageVolume (STAGE_UNSTAGE_VOLUME is not advertised)".into(),
            driver: self.driver.name(),
        }
        .into())
    }

    async fn node_unstage_volume(
        &self,
        _: Request<NodeUnstageVolumeRequest>,
    ) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        Err(Error::Unsupported {
            what: "NodeUnstageVolume (STAGE_UNSTAGE_VOLUME is not advertised)".into(),
            driver: self.driver.name(),
        }
        .into())
    }

    async fn node_publish_volume(
        &self,
        req: Request<NodePublishVolumeRequest>,
    ) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "NodePublishVolume");
        Ok(Response::new(self.publish(req).await?))
    }

    async fn node_unpublish_volume(
        &self,
        req: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "NodeUnpublishVolume");
        Ok(Response::new(self.unpublish(req).await?))
    }

    async fn node_get_volume_stats(
        &self,
        req: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        Ok(Response::new(self.stats(req.into_inner()).await?))
    }

    async fn node_expand_volume(
        &self,
        req: Request<NodeExpandVolumeRequest>,
    ) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        let req = req.into_inner();
        tracing::debug!(?req, "NodeExpandVolume");
        Ok(Response::new(self.expand(req).await?))
    }

    async fn node_get_capabilities(
        &self,
        _: Request<NodeGetCapabilitiesRequest>,
    ) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let mut types = vec![
            rpc::Type::GetVolumeStats,
            rpc::Type::VolumeCondition,
            rpc::Type::SingleNodeMultiWriter,
        ];
        if self.driver == Driver::Lvm {
            types.push(rpc::Type::ExpandVolume);
        }
        let capabilities = types
            .into_iter()
            .map(|t| NodeServiceCapability {
                r#type: Some(node_service_capability::Type::Rpc(Rpc { r#type: t as i32 })),
            })
            .collect();
        Ok(Response::new(NodeGetCapabilitiesResponse { capabilities }))
    }

    async fn node_get_info(
        &self,
        _: Request<NodeGetInfoRequest>,
    ) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.cfg.node_name.clone(),
            max_volumes_per_node: 0,
            accessible_topology: Some(Topology {
                segments: [(
                    self.driver.topology_key().to_string(),
                    self.cfg.node_name.clone(),
                )]
                .into(),
            }),
        }))
    }
}
