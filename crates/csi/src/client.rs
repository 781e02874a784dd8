//! A CSI client over a unix socket, and the two compound operations a user-facing tool
//! needs: mount a volume at a directory and unmount it again (what `hwameictl volume mount`
//! / `unmount` do against the standalone server), exactly as kubelet and the
//! external-attacher would: ControllerPublish (when the driver offers it) then NodePublish,
//! and NodeUnpublish then ControllerUnpublish.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tonic::transport::{Channel, Endpoint, Uri};

use crate::proto::controller_client::ControllerClient;
use crate::proto::controller_service_capability::rpc;
use crate::proto::identity_client::IdentityClient;
use crate::proto::node_client::NodeClient;
use crate::proto::volume_capability::access_mode::Mode;
use crate::proto::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use crate::proto::*;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to CSI socket {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{rpc}: {status}")]
    Rpc {
        rpc: &'static str,
        #[source]
        status: tonic::Status,
    },
}

fn rpc(name: &'static str) -> impl FnOnce(tonic::Status) -> ClientError {
    move |status| ClientError::Rpc { rpc: name, status }
}

/// Clients of the three CSI services on one socket.
#[derive(Debug, Clone)]
pub struct CsiClient {
    pub identity: IdentityClient<Channel>,
    pub controller: ControllerClient<Channel>,
    pub node: NodeClient<Channel>,
}

/// Connect to a CSI endpoint on a unix socket.
pub async fn connect(socket: impl AsRef<Path>) -> Result<CsiClient, ClientError> {
    let path = socket.as_ref().to_path_buf();
    let p = path.clone();
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move {
                let s = tokio::net::UnixStream::connect(p).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .map_err(|source| ClientError::Connect { path, source })?;
    Ok(CsiClient {
        identity: IdentityClient::new(channel.clone()),
        controller: ControllerClient::new(channel.clone()),
        node: NodeClient::new(channel),
    })
}

/// How to mount: a filesystem (type, or the driver's default when empty) or the raw block
/// device at a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Filesystem { fs_type: String },
    Block,
}

impl CsiClient {
    fn capability(kind: &MountKind) -> VolumeCapability {
        VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(match kind {
                MountKind::Filesystem { fs_type } => AccessType::Mount(MountVolume {
                    fs_type: fs_type.clone(),
                    ..Default::default()
                }),
                MountKind::Block => AccessType::Block(BlockVolume {}),
            }),
        }
    }

    async fn has_publish(&mut self) -> Result<bool, ClientError> {
        let caps = self
            .controller
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .map_err(rpc("ControllerGetCapabilities"))?
            .into_inner();
        Ok(caps.capabilities.iter().any(|c| {
            matches!(&c.r#type, Some(controller_service_capability::Type::Rpc(r))
                if r.r#type == rpc::Type::PublishUnpublishVolume as i32)
        }))
    }

    /// This node's id (NodeGetInfo).
    pub async fn node_id(&mut self) -> Result<String, ClientError> {
        Ok(self
            .node
            .node_get_info(NodeGetInfoRequest {})
            .await
            .map_err(rpc("NodeGetInfo"))?
            .into_inner()
            .node_id)
    }

    /// Make `volume` usable at `target` on this node.
    pub async fn mount(
        &mut self,
        volume: &str,
        target: &Path,
        kind: MountKind,
        readonly: bool,
    ) -> Result<(), ClientError> {
        let node_id = self.node_id().await?;
        let cap = Self::capability(&kind);
        let publish_context: HashMap<String, String> = if self.has_publish().await? {
            self.controller
                .controller_publish_volume(ControllerPublishVolumeRequest {
                    volume_id: volume.into(),
                    node_id,
                    volume_capability: Some(cap.clone()),
                    readonly,
                    ..Default::default()
                })
                .await
                .map_err(rpc("ControllerPublishVolume"))?
                .into_inner()
                .publish_context
        } else {
            HashMap::new()
        };
        self.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: volume.into(),
                publish_context,
                target_path: target.display().to_string(),
                volume_capability: Some(cap),
                readonly,
                ..Default::default()
            })
            .await
            .map_err(rpc("NodePublishVolume"))?;
        Ok(())
    }

    /// Undo [`CsiClient::mount`]. The controller-side publication is released only when
    /// `release` is set (the last mount of the volume on this node is gone).
    pub async fn unmount(
        &mut self,
        volume: &str,
        target: &Path,
        release: bool,
    ) -> Result<(), ClientError> {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: volume.into(),
                target_path: target.display().to_string(),
            })
            .await
            .map_err(rpc("NodeUnpublishVolume"))?;
        if release && self.has_publish().await? {
            let node_id = self.node_id().await?;
            self.controller
                .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
                    volume_id: volume.into(),
                    node_id,
                    ..Default::default()
                })
                .await
                .map_err(rpc("ControllerUnpublishVolume"))?;
        }
        Ok(())
    }
}
