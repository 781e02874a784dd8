//! Test doubles for the conformance suite: an in-memory [`Backend`] that also plays the
//! reconcilers (allocates from node pools, becomes Ready, deletes, grows, snapshots), a fake
//! [`NodeOps`] that records mounts in real directories, and a harness serving a driver on a
//! real unix socket with a tonic client connected to it.
#![allow(dead_code)]

pub mod req;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hwameistor_core::types::PoolClass;
use hwameistor_csi::backend::*;
use hwameistor_csi::node::{FsStats, NodeOps, NodeOpsError};
use hwameistor_csi::proto::controller_client::ControllerClient;
use hwameistor_csi::proto::identity_client::IdentityClient;
use hwameistor_csi::proto::node_client::NodeClient;
use hwameistor_csi::{CsiConfig, Driver};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint, Uri};

pub const GIB: u64 = 1 << 30;

#[derive(Default)]
pub struct MemState {
    pub volumes: BTreeMap<String, VolumeRecord>,
    pub snapshots: BTreeMap<String, SnapshotRecord>,
    pub nodes: Vec<NodeCapacity>,
    /// Volumes the fake reconciler must not make Ready (to test waiting / ABORTED).
    pub stuck: Vec<String>,
    pub usage: BTreeMap<String, Usage>,
    /// (volume, target) -> recorded publication.
    pub mounts: BTreeMap<(String, String), MountRecord>,
}

/// In-memory backend + reconciler.
#[derive(Clone, Default)]
pub struct MemBackend {
    pub state: Arc<Mutex<MemState>>,
    pub delay: Duration,
}

impl MemBackend {
    pub fn with_nodes(nodes: &[(&str, PoolClass, u64)]) -> Self {
        let b = MemBackend {
            delay: Duration::from_millis(20),
            ..Default::default()
        };
        {
            let mut s = b.state.lock().unwrap();
            for (n, class, bytes) in nodes {
                let pool = PoolCapacity {
                    class: *class,
                    free_bytes: *bytes,
                    max_volume_bytes: *bytes,
                    free_volume_count: 1000,
                    thin_free_bytes: None,
                };
                match s.nodes.iter_mut().find(|x| x.node == *n) {
                    Some(x) => x.pools.push(pool),
                    None => s.nodes.push(NodeCapacity {
                        node: n.to_string(),
                        ready: true,
                        pools: vec![pool],
                    }),
                }
            }
        }
        b
    }

    fn pool_mut<'a>(
        s: &'a mut MemState,
        node: &str,
        class: PoolClass,
    ) -> Option<&'a mut PoolCapacity> {
        s.nodes
            .iter_mut()
            .find(|n| n.node == node)?
            .pools
            .iter_mut()
            .find(|p| p.class == class)
    }

    fn adjust(s: &mut MemState, node: &str, class: PoolClass, delta: i64) -> bool {
        let Some(p) = Self::pool_mut(s, node, class) else {
            return false;
        };
        let free = p.free_bytes as i64 + delta;
        if free < 0 {
            return false;
        }
        p.free_bytes = free as u64;
        p.max_volume_bytes = p.free_bytes;
        true
    }

    /// The fake reconciler: allocate every replica or fail with "insufficient".
    fn reconcile_create(&self, name: String) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.delay).await;
            let mut s = me.state.lock().unwrap();
            if s.stuck.contains(&name) {
                return;
            }
            let Some(rec) = s.volumes.get(&name).cloned() else {
                return;
            };
            let class = rec.spec.params.pool_class();
            let bytes = rec.spec.required_bytes as i64;
            let mut done = vec![];
            for n in &rec.spec.nodes {
                if Self::adjust(&mut s, n, class, -bytes) {
                    done.push(n.clone());
                } else {
                    for d in &done {
                        Self::adjust(&mut s, d, class, bytes);
                    }
                    let r = s.volumes.get_mut(&name).unwrap();
                    r.phase = VolumePhase::Failed {
                        message: format!("insufficient free space on {n}"),
                        exhausted: true,
                    };
                    return;
                }
            }
            let r = s.volumes.get_mut(&name).unwrap();
            r.allocated_bytes = bytes as u64;
            r.replicas = rec
                .spec
                .nodes
                .iter()
                .map(|n| ReplicaRecord {
                    node: n.clone(),
                    dev_path: Some(format!("/dev/fake/{name}")),
                    ready: true,
                })
                .collect();
            r.phase = VolumePhase::Ready;
        });
    }

    pub fn set_node_ready(&self, node: &str, ready: bool) {
        let mut s = self.state.lock().unwrap();
        for n in s.nodes.iter_mut().filter(|n| n.node == node) {
            n.ready = ready;
        }
    }

    pub fn free(&self, node: &str, class: PoolClass) -> u64 {
        let mut s = self.state.lock().unwrap();
        Self::pool_mut(&mut s, node, class)
            .map(|p| p.free_bytes)
            .unwrap_or(0)
    }

    pub fn volume(&self, name: &str) -> Option<VolumeRecord> {
        self.state.lock().unwrap().volumes.get(name).cloned()
    }
}

#[async_trait]
impl Backend for MemBackend {
    async fn get_volume(&self, id: &str) -> BackendResult<Option<VolumeRecord>> {
        Ok(self.state.lock().unwrap().volumes.get(id).cloned())
    }

    async fn list_volumes(&self) -> BackendResult<Vec<VolumeRecord>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .volumes
            .values()
            .cloned()
            .collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> BackendResult<()> {
        {
            let mut s = self.state.lock().unwrap();
            if s.volumes.contains_key(&spec.name) {
                return Err(BackendError::AlreadyExists(spec.name.clone()));
            }
            s.volumes.insert(
                spec.name.clone(),
                VolumeRecord {
                    spec: spec.clone(),
                    phase: VolumePhase::Pending,
                    allocated_bytes: 0,
                    replicas: vec![],
                    published_node: None,
                    snapshots: 0,
                    used_bytes: None,
                },
            );
        }
        self.reconcile_create(spec.name.clone());
        Ok(())
    }

    async fn delete_volume(&self, id: &str) -> BackendResult<()> {
        {
            let mut s = self.state.lock().unwrap();
            match s.volumes.get_mut(id) {
                None => return Ok(()),
                Some(r) => r.phase = VolumePhase::Deleting,
            }
        }
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(me.delay).await;
            let mut s = me.state.lock().unwrap();
            if let Some(r) = s.volumes.remove(&id) {
                let class = r.spec.params.pool_class();
                for rep in &r.replicas {
                    Self::adjust(&mut s, &rep.node, class, r.allocated_bytes as i64);
                }
            }
        });
        Ok(())
    }

    async fn set_published(
        &self,
        id: &str,
        publication: Option<&Publication>,
    ) -> BackendResult<()> {
        let mut s = self.state.lock().unwrap();
        let r = s
            .volumes
            .get_mut(id)
            .ok_or_else(|| BackendError::NotFound(id.into()))?;
        r.published_node = publication.map(|p| p.node.clone());
        Ok(())
    }

    async fn expand_volume(&self, id: &str, bytes: u64) -> BackendResult<()> {
        {
            let mut s = self.state.lock().unwrap();
            let r = s
                .volumes
                .get_mut(id)
                .ok_or_else(|| BackendError::NotFound(id.into()))?;
            r.spec.required_bytes = bytes;
            r.phase = VolumePhase::Pending;
        }
        let me = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(me.delay).await;
            let mut s = me.state.lock().unwrap();
            let Some(r) = s.volumes.get(&id).cloned() else {
                return;
            };
            let class = r.spec.params.pool_class();
            let delta = r.spec.required_bytes as i64 - r.allocated_bytes as i64;
            for n in &r.spec.nodes {
                Self::adjust(&mut s, n, class, -delta);
            }
            let r = s.volumes.get_mut(&id).unwrap();
            r.allocated_bytes = r.spec.required_bytes;
            r.phase = VolumePhase::Ready;
        });
        Ok(())
    }

    async fn record_usage(&self, id: &str, usage: Usage) -> BackendResult<()> {
        self.state
            .lock()
            .unwrap()
            .usage
            .insert(id.to_string(), usage);
        Ok(())
    }

    async fn record_mount(
        &self,
        id: &str,
        target: &str,
        mount: Option<&MountRecord>,
    ) -> BackendResult<()> {
        let mut s = self.state.lock().unwrap();
        let key = (id.to_string(), target.to_string());
        match mount {
            Some(m) => s.mounts.insert(key, m.clone()),
            None => s.mounts.remove(&key),
        };
        Ok(())
    }

    async fn nodes(&self) -> BackendResult<Vec<NodeCapacity>> {
        Ok(self.state.lock().unwrap().nodes.clone())
    }

    async fn get_snapshot(&self, id: &str) -> BackendResult<Option<SnapshotRecord>> {
        Ok(self.state.lock().unwrap().snapshots.get(id).cloned())
    }

    async fn list_snapshots(&self) -> BackendResult<Vec<SnapshotRecord>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .snapshots
            .values()
            .cloned()
            .collect())
    }

    async fn create_snapshot(&self, spec: &SnapshotSpec) -> BackendResult<()> {
        let mut s = self.state.lock().unwrap();
        if s.snapshots.contains_key(&spec.name) {
            return Err(BackendError::AlreadyExists(spec.name.clone()));
        }
        s.snapshots.insert(
            spec.name.clone(),
            SnapshotRecord {
                spec: spec.clone(),
                ready: true,
                creation_time: 1_700_000_000,
                failure: None,
                deleting: false,
            },
        );
        if let Some(v) = s.volumes.get_mut(&spec.source_volume) {
            v.snapshots += 1;
        }
        Ok(())
    }

    async fn delete_snapshot(&self, id: &str) -> BackendResult<()> {
        let mut s = self.state.lock().unwrap();
        if let Some(snap) = s.snapshots.remove(id)
            && let Some(v) = s.volumes.get_mut(&snap.spec.source_volume)
        {
            v.snapshots -= 1;
        }
        Ok(())
    }
}

/// A fake mount: (device, filesystem or None for block, readonly).
pub type Mount = (String, Option<String>, bool);

/// Fake node operations: "mounting" creates the target and remembers it.
#[derive(Clone, Default)]
pub struct FakeNodeOps {
    pub mounts: Arc<Mutex<BTreeMap<PathBuf, Mount>>>,
}

#[async_trait]
impl NodeOps for FakeNodeOps {
    async fn mount_fs(
        &self,
        device: &Path,
        target: &Path,
        fs_type: &str,
        _flags: &[String],
        readonly: bool,
    ) -> Result<bool, NodeOpsError> {
        std::fs::create_dir_all(target).map_err(|e| NodeOpsError::Failed(e.to_string()))?;
        self.mounts.lock().unwrap().insert(
            target.into(),
            (device.display().to_string(), Some(fs_type.into()), readonly),
        );
        Ok(true)
    }

    async fn mount_block(
        &self,
        device: &Path,
        target: &Path,
        readonly: bool,
    ) -> Result<(), NodeOpsError> {
        if let Some(d) = target.parent() {
            std::fs::create_dir_all(d).map_err(|e| NodeOpsError::Failed(e.to_string()))?;
        }
        std::fs::write(target, b"").map_err(|e| NodeOpsError::Failed(e.to_string()))?;
        self.mounts.lock().unwrap().insert(
            target.into(),
            (device.display().to_string(), None, readonly),
        );
        Ok(())
    }

    async fn unmount(&self, target: &Path) -> Result<(), NodeOpsError> {
        self.mounts.lock().unwrap().remove(target);
        if target.is_dir() {
            let _ = std::fs::remove_dir(target);
        } else {
            let _ = std::fs::remove_file(target);
        }
        Ok(())
    }

    async fn fs_stats(&self, path: &Path) -> Result<FsStats, NodeOpsError> {
        if !path.exists() {
            return Err(NodeOpsError::NotFound(path.display().to_string()));
        }
        Ok(FsStats {
            total_bytes: GIB,
            available_bytes: GIB - 1000,
            used_bytes: 1000,
            total_inodes: 100,
            free_inodes: 90,
            used_inodes: 10,
        })
    }

    async fn device_size(&self, _device: &Path) -> Result<u64, NodeOpsError> {
        Ok(2 * GIB)
    }

    async fn grow_fs(&self, _device: &Path, path: &Path) -> Result<u64, NodeOpsError> {
        if !path.exists() {
            return Err(NodeOpsError::NotFound(path.display().to_string()));
        }
        Ok(3 * GIB)
    }
}

/// A driver served on a real unix socket, and clients connected to it.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub backend: MemBackend,
    pub ops: FakeNodeOps,
    pub identity: IdentityClient<Channel>,
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
    pub driver: Driver,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    pub async fn start(driver: Driver, backend: MemBackend) -> Harness {
        let ops = FakeNodeOps::default();
        Self::start_with_ops(driver, backend, ops.clone(), Arc::new(ops)).await
    }

    /// Serve with the given node operations (`ops` is kept for inspection).
    pub async fn start_with_ops(
        driver: Driver,
        backend: MemBackend,
        ops: FakeNodeOps,
        node_ops: Arc<dyn NodeOps>,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("csi.sock");
        let cfg = CsiConfig::new(&socket, "node1")
            .with_wait(Duration::from_secs(3), Duration::from_millis(10));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let (b, o, s) = (Arc::new(backend.clone()), node_ops, shutdown.clone());
            async move {
                hwameistor_csi::serve(driver, cfg, b, o, s)
                    .await
                    .expect("serve");
            }
        });
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let channel = connect(&socket).await;
        Harness {
            identity: IdentityClient::new(channel.clone()),
            controller: ControllerClient::new(channel.clone()),
            node: NodeClient::new(channel),
            dir,
            backend,
            ops,
            driver,
            shutdown,
            server: Some(server),
        }
    }

    pub fn target(&self, name: &str) -> String {
        self.dir
            .path()
            .join("pods")
            .join(name)
            .display()
            .to_string()
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(s) = self.server.take() {
            s.await.unwrap();
        }
    }
}

/// A tonic channel over a unix socket.
pub async fn connect(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                let s = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .expect("connect to CSI socket")
}
