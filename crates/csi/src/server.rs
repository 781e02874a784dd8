//! Serving a driver's services on a unix socket.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

use crate::Driver;
use hwameistor_store::Store;

use crate::backend::Backend;
use crate::controller::{ControllerConfig, ControllerService};
use crate::identity::IdentityService;
use crate::keys::KeySource;
use crate::node::{NodeConfig, NodeOps, NodeService};
use crate::proto::controller_server::ControllerServer;
use crate::proto::identity_server::IdentityServer;
use crate::proto::node_server::NodeServer;
use crate::store_backend::{DiskStoreBackend, LvmStoreBackend};

/// Errors of serving (as opposed to errors of single RPCs).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot prepare socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC server on {path}: {source}")]
    Transport {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Configuration of one driver's CSI endpoint.
#[derive(Debug, Clone)]
pub struct CsiConfig {
    /// Unix socket to listen on (a stale socket file is replaced).
    pub socket: PathBuf,
    /// This node's name.
    pub node_name: String,
    /// Serve the Controller service (in Kubernetes mode only the controller pod does).
    pub controller: bool,
    /// Serve the Node service (in Kubernetes mode only the per-node pods do).
    pub node: bool,
    pub controller_cfg: ControllerConfig,
    /// Filesystem for filesystem volumes that name none.
    pub default_fs_type: String,
    /// Where the node service remembers publications across restarts.
    pub state_dir: Option<PathBuf>,
    /// Where the node service finds keys of encrypted volumes. [`KeySource::None`] with a
    /// Kubernetes store means Secrets through that store ([`serve_lvm`] sets it).
    pub keys: KeySource,
}

impl CsiConfig {
    /// Both services, default timings, ext4, no state directory.
    pub fn new(socket: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        CsiConfig {
            socket: socket.into(),
            node_name: node_name.into(),
            controller: true,
            node: true,
            controller_cfg: ControllerConfig::default(),
            default_fs_type: "ext4".into(),
            state_dir: None,
            keys: KeySource::None,
        }
    }

    /// Shorter waits, for tests.
    pub fn with_wait(mut self, timeout: Duration, poll: Duration) -> Self {
        self.controller_cfg = ControllerConfig {
            wait_timeout: timeout,
            poll_interval: poll,
        };
        self
    }
}

/// Serve `lvm.hwameistor.io` over `store` (LocalVolume & co.) until `shutdown` is
/// cancelled.
pub async fn serve_lvm(
    mut cfg: CsiConfig,
    store: Store,
    node_ops: Arc<dyn NodeOps>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    if cfg.keys.is_none() && matches!(store, Store::Kube(_)) {
        cfg.keys = KeySource::Store(store.clone());
    }
    serve(
        Driver::Lvm,
        cfg,
        Arc::new(LvmStoreBackend::new(store)),
        node_ops,
        shutdown,
    )
    .await
}

/// Serve `disk.hwameistor.io` over `store` (LocalDiskVolume & co.) until `shutdown` is
/// cancelled.
pub async fn serve_disk(
    cfg: CsiConfig,
    store: Store,
    node_ops: Arc<dyn NodeOps>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve(
        Driver::Disk,
        cfg,
        Arc::new(DiskStoreBackend::new(store)),
        node_ops,
        shutdown,
    )
    .await
}

/// Serve `driver` on `cfg.socket` until `shutdown` is cancelled; removes the socket file on
/// the way out.
pub async fn serve(
    driver: Driver,
    cfg: CsiConfig,
    backend: Arc<dyn Backend>,
    node_ops: Arc<dyn NodeOps>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let path = cfg.socket.clone();
    let sock_err = |source| ServeError::Socket {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(sock_err)?;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(sock_err(e)),
    }
    let listener = UnixListener::bind(&path).map_err(sock_err)?;
    tracing::info!(driver = driver.name(), socket = %path.display(), "CSI endpoint listening");

    let controller = cfg.controller.then(|| {
        ControllerServer::new(ControllerService::new(
            driver,
            backend.clone(),
            cfg.controller_cfg.clone(),
        ))
    });
    let node = cfg.node.then(|| {
        NodeServer::new(NodeService::new(
            driver,
            NodeConfig {
                node_name: cfg.node_name.clone(),
                default_fs_type: cfg.default_fs_type.clone(),
                state_dir: cfg.state_dir.clone(),
                keys: cfg.keys.clone(),
            },
            backend.clone(),
            node_ops,
        ))
    });
    let result = tonic::transport::Server::builder()
        .add_service(IdentityServer::new(IdentityService::new(driver)))
        .add_optional_service(controller)
        .add_optional_service(node)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown.cancelled())
        .await;
    let _ = std::fs::remove_file(&path);
    tracing::info!(driver = driver.name(), "CSI endpoint stopped");
    result.map_err(|source| ServeError::Transport { path, source })
}
