//! Tier 0: encrypted volumes through the CSI services, with an in-memory backend and fake
//! node operations that model a device as blank, a LUKS container (with its key) or a
//! filesystem. Checks the parameters reach the volume, the key lookup order and its errors,
//! that the node opens the mapping and mounts the mapping (never the raw device), refuses
//! foreign devices and wrong keys with their gRPC codes, closes the mapping with the last
//! publication (also one it forgot after a crash), resizes it on NodeExpand, and that a
//! restore cannot mix encrypted and plain volumes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::req::{block_cap, create_req, fs_cap, params};
use common::{FakeNodeOps, GIB, MemBackend, connect};
use hwameistor_core::types::PoolClass;
use hwameistor_csi::node::{FsStats, NodeOps, NodeOpsError};
use hwameistor_csi::proto::controller_client::ControllerClient;
use hwameistor_csi::proto::node_client::NodeClient;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::*;
use hwameistor_csi::{CsiConfig, Driver, KeySource};
use hwameistor_engine::luks::Secret;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

const KEY: &[u8] = b"tier0-volume-key";

#[derive(Clone, Debug)]
enum Dev {
    Luks(Secret),
    Fs,
}

/// FakeNodeOps plus a model of LUKS devices and mappings.
#[derive(Clone, Default)]
struct LuksOps {
    inner: FakeNodeOps,
    /// device -> content (absent = blank)
    devices: Arc<Mutex<BTreeMap<String, Dev>>>,
    /// open mappings: name -> device
    open: Arc<Mutex<BTreeMap<String, String>>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl LuksOps {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn is_open(&self, m: &str) -> bool {
        self.open.lock().unwrap().contains_key(m)
    }
    fn mounted_from(&self, target: &str) -> Option<String> {
        self.inner
            .mounts
            .lock()
            .unwrap()
            .get(Path::new(target))
            .map(|m| m.0.clone())
    }
}

#[async_trait]
impl NodeOps for LuksOps {
    async fn mount_fs(
        &self,
        device: &Path,
        target: &Path,
        fs_type: &str,
        flags: &[String],
        readonly: bool,
    ) -> Result<bool, NodeOpsError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("mount {}", device.display()));
        self.inner
            .mount_fs(device, target, fs_type, flags, readonly)
            .await
    }
    async fn mount_block(
        &self,
        device: &Path,
        target: &Path,
        readonly: bool,
    ) -> Result<(), NodeOpsError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("bind {}", device.display()));
        self.inner.mount_block(device, target, readonly).await
    }
    async fn unmount(&self, target: &Path) -> Result<(), NodeOpsError> {
        self.inner.unmount(target).await
    }
    async fn fs_stats(&self, path: &Path) -> Result<FsStats, NodeOpsError> {
        self.inner.fs_stats(path).await
    }
    async fn device_size(&self, device: &Path) -> Result<u64, NodeOpsError> {
        self.inner.device_size(device).await
    }
    async fn grow_fs(&self, device: &Path, path: &Path) -> Result<u64, NodeOpsError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("grow {}", device.display()));
        self.inner.grow_fs(device, path).await
    }
    async fn open_luks(
        &self,
        device: &Path,
        mapping: &str,
        key: &Secret,
    ) -> Result<PathBuf, NodeOpsError> {
        let path = PathBuf::from("/dev/mapper").join(mapping);
        if self.is_open(mapping) {
            return Ok(path);
        }
        let dev = device.display().to_string();
        let mut devices = self.devices.lock().unwrap();
        match devices.get(&dev) {
            None => {
                self.log.lock().unwrap().push(format!("luksFormat {dev}"));
                devices.insert(dev.clone(), Dev::Luks(key.clone()));
            }
            Some(Dev::Luks(k)) if k == key => {}
            Some(Dev::Luks(_)) => return Err(NodeOpsError::WrongKey("wrong key".into())),
            Some(Dev::Fs) => return Err(NodeOpsError::Busy(format!("{dev} holds ext4"))),
        }
        self.log
            .lock()
            .unwrap()
            .push(format!("open {dev} {mapping}"));
        self.open.lock().unwrap().insert(mapping.into(), dev);
        Ok(path)
    }
    async fn close_luks(&self, mapping: &str) -> Result<(), NodeOpsError> {
        if self.open.lock().unwrap().remove(mapping).is_some() {
            self.log.lock().unwrap().push(format!("close {mapping}"));
        }
        Ok(())
    }
    async fn resize_luks(&self, mapping: &str, key: &Secret) -> Result<(), NodeOpsError> {
        let dev = self
            .open
            .lock()
            .unwrap()
            .get(mapping)
            .cloned()
            .ok_or_else(|| NodeOpsError::NotFound(mapping.into()))?;
        match self.devices.lock().unwrap().get(&dev) {
            Some(Dev::Luks(k)) if k == key => {}
            _ => return Err(NodeOpsError::WrongKey("wrong key".into())),
        }
        self.log.lock().unwrap().push(format!("resize {mapping}"));
        Ok(())
    }
}

struct H {
    dir: tempfile::TempDir,
    backend: MemBackend,
    ops: LuksOps,
    controller: ControllerClient<Channel>,
    node: NodeClient<Channel>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl H {
    async fn start(keys: impl FnOnce(&Path) -> KeySource) -> H {
        Self::start_with(
            keys,
            MemBackend::with_nodes(&[("node1", PoolClass::HDD, 10 * GIB)]),
            LuksOps::default(),
        )
        .await
    }

    async fn start_with(
        keys: impl FnOnce(&Path) -> KeySource,
        backend: MemBackend,
        ops: LuksOps,
    ) -> H {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("csi.sock");
        let mut cfg = CsiConfig::new(&socket, "node1")
            .with_wait(Duration::from_secs(3), Duration::from_millis(10));
        cfg.keys = keys(&dir.path().join("secrets"));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let (b, o, s) = (
                Arc::new(backend.clone()),
                Arc::new(ops.clone()),
                shutdown.clone(),
            );
            async move {
                hwameistor_csi::serve(Driver::Lvm, cfg, b, o, s)
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
        let ch = connect(&socket).await;
        H {
            controller: ControllerClient::new(ch.clone()),
            node: NodeClient::new(ch),
            dir,
            backend,
            ops,
            shutdown,
            server,
        }
    }

    async fn stop(self) -> (tempfile::TempDir, LuksOps, MemBackend) {
        self.shutdown.cancel();
        self.server.await.unwrap();
        (self.dir, self.ops, self.backend)
    }

    fn write_key(&self, reference: &str, key: &[u8], mode: u32) {
        let p = self.dir.path().join("secrets").join(reference);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, key).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn target(&self, name: &str) -> String {
        self.dir
            .path()
            .join("pods")
            .join(name)
            .display()
            .to_string()
    }

    async fn create(&mut self, name: &str, extra: &[(&str, &str)]) -> Volume {
        let mut parameters = params(&[("poolClass", "HDD")]);
        parameters.extend(params(extra));
        parameters.insert("csi.storage.k8s.io/fstype".into(), "ext4".into());
        let cap = cap(Mode::SingleNodeWriter, false);
        self.controller
            .create_volume(create_req(name, GIB as i64, cap, parameters, None))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
    }

    /// An encrypted volume (key in the key files), ControllerPublished: its publish context.
    async fn encrypted_and_published(&mut self, vol: &str) -> HashMap<String, String> {
        self.write_key("ns1/vol-key", KEY, 0o600);
        self.create(vol, ENC).await;
        self.controller_publish(vol).await
    }

    async fn controller_publish(&mut self, vol: &str) -> HashMap<String, String> {
        self.controller
            .controller_publish_volume(ControllerPublishVolumeRequest {
                volume_id: vol.into(),
                node_id: "node1".into(),
                volume_capability: Some(cap(Mode::SingleNodeWriter, false)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .publish_context
    }

    async fn publish(
        &mut self,
        vol: &str,
        target: &str,
        ctx: &HashMap<String, String>,
        c: VolumeCapability,
        secrets: &[(&str, &str)],
    ) -> Result<(), tonic::Status> {
        self.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: vol.into(),
                publish_context: ctx.clone(),
                target_path: target.into(),
                volume_capability: Some(c),
                secrets: secrets
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            })
            .await
            .map(|_| ())
    }

    async fn unpublish(&mut self, vol: &str, target: &str) {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: vol.into(),
                target_path: target.into(),
            })
            .await
            .unwrap();
    }
}

fn cap(mode: Mode, block: bool) -> VolumeCapability {
    if block {
        block_cap(mode)
    } else {
        fs_cap(mode, "ext4")
    }
}

const ENC: &[(&str, &str)] = &[("encryptSecret", "ns1/vol-key"), ("encryptType", "LUKS")];

#[tokio::test]
async fn encrypted_volume_is_opened_mounted_through_the_mapping_and_closed() {
    let mut h = H::start(files).await;
    h.write_key("ns1/vol-key", KEY, 0o600);
    let v = h.create("pvc-e1", ENC).await;
    // The reference (never a key) is in the volume context and on the volume.
    assert_eq!(v.volume_context["encryptSecret"], "ns1/vol-key");
    assert_eq!(v.volume_context["encryptType"], "LUKS");
    let rec = h.backend.volume("pvc-e1").unwrap();
    assert!(format!("{rec:?}").contains("ns1/vol-key"));
    let ctx = h.controller_publish("pvc-e1").await;
    let raw = ctx["volumeReplicaDevicePath"].clone();

    let t1 = h.target("t1");
    h.publish(
        "pvc-e1",
        &t1,
        &ctx,
        cap(Mode::SingleNodeMultiWriter, false),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        h.ops.log(),
        [
            format!("luksFormat {raw}"),
            format!("open {raw} pvc-e1-encrypt"),
            "mount /dev/mapper/pvc-e1-encrypt".to_string(),
        ]
    );
    assert_eq!(
        h.ops.mounted_from(&t1).as_deref(),
        Some("/dev/mapper/pvc-e1-encrypt")
    );
    // A repeat is idempotent (no second format); a second target shares the mapping.
    h.publish(
        "pvc-e1",
        &t1,
        &ctx,
        cap(Mode::SingleNodeMultiWriter, false),
        &[],
    )
    .await
    .unwrap();
    let t2 = h.target("t2");
    h.publish(
        "pvc-e1",
        &t2,
        &ctx,
        cap(Mode::SingleNodeMultiWriter, false),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        h.ops
            .log()
            .iter()
            .filter(|l| l.starts_with("luksFormat"))
            .count(),
        1
    );

    // NodeExpand: the mapping grows before the filesystem, which grows on the mapping.
    h.node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: "pvc-e1".into(),
            volume_path: t1.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let log = h.ops.log();
    assert_eq!(
        log[log.len() - 2..],
        [
            "resize pvc-e1-encrypt".to_string(),
            "grow /dev/mapper/pvc-e1-encrypt".to_string()
        ]
    );

    // The mapping stays open until the last publication on the node goes.
    h.unpublish("pvc-e1", &t1).await;
    assert!(h.ops.is_open("pvc-e1-encrypt"));
    h.unpublish("pvc-e1", &t2).await;
    assert!(!h.ops.is_open("pvc-e1-encrypt"));
    assert_eq!(h.ops.log().last().unwrap(), "close pvc-e1-encrypt");
    // Idempotent.
    h.unpublish("pvc-e1", &t2).await;

    // Publish again: the container is opened, not formatted again.
    h.publish("pvc-e1", &t1, &ctx, cap(Mode::SingleNodeWriter, true), &[])
        .await
        .unwrap();
    assert_eq!(
        h.ops
            .log()
            .iter()
            .filter(|l| l.starts_with("luksFormat"))
            .count(),
        1
    );
    assert!(h.ops.is_open("pvc-e1-encrypt"));
    h.unpublish("pvc-e1", &t1).await;
    assert!(!h.ops.is_open("pvc-e1-encrypt"));
    h.stop().await;
}

#[tokio::test]
async fn block_publication_binds_the_mapping() {
    let mut h = H::start(files).await;
    let ctx = h.encrypted_and_published("pvc-b").await;
    let t = h.target("blk");
    h.publish("pvc-b", &t, &ctx, cap(Mode::SingleNodeWriter, true), &[])
        .await
        .unwrap();
    assert_eq!(
        h.ops.log().last().unwrap(),
        "bind /dev/mapper/pvc-b-encrypt"
    );
    h.unpublish("pvc-b", &t).await;
    assert!(!h.ops.is_open("pvc-b-encrypt"));
    h.stop().await;
}

#[tokio::test]
async fn key_problems_and_foreign_devices_are_refused_before_anything_is_touched() {
    let mut h = H::start(files).await;
    h.create("pvc-k", ENC).await;
    let ctx = h.controller_publish("pvc-k").await;
    let raw = ctx["volumeReplicaDevicePath"].clone();
    let t = h.target("t");
    let mc = || cap(Mode::SingleNodeWriter, false);

    // No key file.
    let e = h.publish("pvc-k", &t, &ctx, mc(), &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("ns1/vol-key"), "{e:?}");
    // A key file others can read.
    h.write_key("ns1/vol-key", KEY, 0o644);
    let e = h.publish("pvc-k", &t, &ctx, mc(), &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("0600"), "{e:?}");
    assert!(!e.message().contains("tier0-volume-key"), "{e:?}");
    assert!(h.ops.log().is_empty(), "nothing touched: {:?}", h.ops.log());

    // The request's secret is used first (no key file needed).
    let key = std::str::from_utf8(KEY).unwrap();
    h.publish("pvc-k", &t, &ctx, mc(), &[("key", key)])
        .await
        .unwrap();
    h.unpublish("pvc-k", &t).await;
    // A wrong key: PERMISSION_DENIED, the container is not formatted again.
    let e = h
        .publish("pvc-k", &t, &ctx, mc(), &[("key", "another-key-entirely")])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(!e.message().contains("another-key"), "{e:?}");
    assert_eq!(
        h.ops
            .log()
            .iter()
            .filter(|l| l.starts_with("luksFormat"))
            .count(),
        1
    );
    assert!(!h.ops.is_open("pvc-k-encrypt"));

    // A device that holds a filesystem is never encrypted over.
    let ctx = h.encrypted_and_published("pvc-f").await;
    h.ops
        .devices
        .lock()
        .unwrap()
        .insert(ctx["volumeReplicaDevicePath"].clone(), Dev::Fs);
    let e = h.publish("pvc-f", &t, &ctx, mc(), &[]).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("ext4"), "{e:?}");
    assert!(!h.ops.log().iter().any(|l| l.contains("pvc-f")));
    let _ = raw;
    h.stop().await;
}

#[tokio::test]
async fn a_mapping_left_open_by_a_crash_is_closed_by_the_next_unpublish() {
    let mut h = H::start(files).await;
    let ctx = h.encrypted_and_published("pvc-c").await;
    let t = h.target("t");
    h.publish("pvc-c", &t, &ctx, cap(Mode::SingleNodeWriter, false), &[])
        .await
        .unwrap();
    // The plugin restarts without its state (memory only): it forgot the publication.
    let (dir, ops, backend) = h.stop().await;
    assert!(ops.is_open("pvc-c-encrypt"));
    let mut h = H::start_with(files, backend, ops).await;
    h.unpublish("pvc-c", &t).await;
    assert!(!h.ops.is_open("pvc-c-encrypt"));
    h.stop().await;
    drop(dir);
}

#[tokio::test]
async fn no_key_source_and_plain_volumes() {
    let mut h = H::start(|_| KeySource::None).await;
    h.create("pvc-n", ENC).await;
    let ctx = h.controller_publish("pvc-n").await;
    let t = h.target("t");
    let e = h
        .publish("pvc-n", &t, &ctx, cap(Mode::SingleNodeWriter, false), &[])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("no key source"), "{e:?}");
    // A plain volume never goes near cryptsetup.
    let v = h.create("pvc-plain", &[]).await;
    assert!(!v.volume_context.contains_key("encryptSecret"));
    let ctx = h.controller_publish("pvc-plain").await;
    h.publish(
        "pvc-plain",
        &t,
        &ctx,
        cap(Mode::SingleNodeWriter, false),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        h.ops.log(),
        [format!("mount {}", ctx["volumeReplicaDevicePath"])]
    );
    h.unpublish("pvc-plain", &t).await;
    h.stop().await;
}

#[tokio::test]
async fn parameters_are_validated_and_restores_keep_encryption() {
    let mut h = H::start(files).await;
    for (k, v, want) in [
        ("encryptType", "AES", "encryptType"),
        ("encryptSecret", "no-namespace", "encryptSecret"),
        ("encryptSecret", "../x", "encryptSecret"),
    ] {
        let mut parameters: HashMap<String, String> =
            [("poolClass".to_string(), "HDD".to_string())].into();
        parameters.insert(k.into(), v.into());
        if k == "encryptType" {
            parameters.insert("encryptSecret".into(), "ns1/k".into());
        }
        let e = h
            .controller
            .create_volume(CreateVolumeRequest {
                name: "pvc-bad".into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: GIB as i64,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![cap(Mode::SingleNodeWriter, false)],
                parameters,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(want), "{e:?}");
    }

    h.create("pvc-src", ENC).await;
    h.controller
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: "pvc-src".into(),
            name: "snap-enc".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let restore = |name: &str, p: &[(&str, &str)]| CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: GIB as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap(Mode::SingleNodeWriter, false)],
        parameters: [("poolClass", "HDD")]
            .iter()
            .chain(p)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: "snap-enc".into(),
                },
            )),
        }),
        ..Default::default()
    };
    let e = h
        .controller
        .create_volume(restore("pvc-plain-restore", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("encrypt"), "{e:?}");
    let v = h
        .controller
        .create_volume(restore("pvc-enc-restore", ENC))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.volume_context["encryptSecret"], "ns1/vol-key");
    h.stop().await;
}

fn files(dir: &Path) -> KeySource {
    KeySource::files(dir)
}
