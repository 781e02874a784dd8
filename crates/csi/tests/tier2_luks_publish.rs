//! Tier 2 (inside the qemu guest, real dm-crypt and LVM): encrypted volumes through the CSI
//! Node service with the host operations (`HostNodeOps`) and standalone key files.
//!
//! One LV per case in a VG on the guest's NVMe disk; the volumes are described to the node
//! service by the in-memory backend of the conformance suite (the object side is covered at
//! tier 0). Proves: the first publish formats a blank LV as LUKS2 and mounts a filesystem on
//! the mapping; data written through the mount is on the mapping and NOT on the raw LV;
//! unpublish closes the mapping; publishing again with the same key finds the data; a wrong
//! key is PERMISSION_DENIED and changes nothing; NodeExpand resizes the mapping and grows
//! the filesystem; a mapping left open by a crashed plugin is closed by the next unpublish;
//! block publication binds the mapping; an LV holding a filesystem is refused untouched; a
//! snapshot of an encrypted LV is LUKS too.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use common::{MemBackend, connect};
use hwameistor_core::params::{EncryptParams, LvmParams, PvcRef};
use hwameistor_core::types::{EncryptType, PoolClass};
use hwameistor_csi::backend::{ReplicaRecord, VolumeParams, VolumePhase, VolumeRecord, VolumeSpec};
use hwameistor_csi::proto::node_client::NodeClient;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use hwameistor_csi::proto::*;
use hwameistor_csi::{CsiConfig, Driver, HostNodeOps, KeySource};
use hwameistor_engine::fs::{self, FsType};
use hwameistor_engine::luks::Pbkdf;
use hwameistor_engine::lvm::LvmEngine;
use hwameistor_engine::{LvmConfig, VolumeEngine, VolumeOptions};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

const POOL: &str = "LocalStorage_PoolNVMe";
const MI: u64 = 1 << 20;
const WORK: &str = "/tmp/hwt-csi-luks";
const MARKER: &str = "HWAMEISTOR-CSI-LUKS-PLAINTEXT-MARKER-0123456789";
const KEY: &[u8] = b"tier2-csi-volume-key";
const MAPPINGS: [&str; 4] = [
    "pvc-enc-encrypt",
    "pvc-blk-encrypt",
    "pvc-plain-encrypt",
    "snap-enc-encrypt",
];

fn guest_disk() -> String {
    assert_eq!(
        std::env::var("VM_GUEST").as_deref(),
        Ok("1"),
        "tier-2 test outside the qemu guest: run it via tests/vm/run-tier2.sh"
    );
    std::env::var("VM_DISK_NVME").expect("VM_DISK_NVME in the guest")
}

fn cmd(argv: &[&str]) -> Cmd {
    Cmd::new(argv[0])
        .args(argv[1..].iter().copied())
        .timeout(Duration::from_secs(300))
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
}

/// Exit code of a command (for probes like `grep -q`, `cryptsetup isLuks`).
async fn code(argv: &[&str]) -> Result<i32> {
    let out = TokioRunner.output(&cmd(argv)).await?;
    out.code.context("killed by a signal")
}

fn run_sync(argv: &[&str]) {
    let c = cmd(argv);
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(TokioRunner.output(&c)).ok()
    })
    .join();
}

/// On drop: unmount, close our mappings, remove the VG, wipe the disk.
struct Cleanup {
    disk: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for t in ["t1", "t2", "blk"] {
            run_sync(&["umount", &format!("{WORK}/pods/{t}")]);
        }
        for m in MAPPINGS {
            run_sync(&["cryptsetup", "close", m]);
        }
        run_sync(&["vgremove", "-ff", "-y", POOL]);
        run_sync(&["pvremove", "-ff", "-y", &self.disk]);
        run_sync(&["wipefs", "-a", &self.disk]);
        let _ = std::fs::remove_dir_all(WORK);
    }
}

fn record(name: &str, dev: &Path, bytes: u64, encrypted: bool) -> VolumeRecord {
    VolumeRecord {
        spec: VolumeSpec {
            name: name.into(),
            params: VolumeParams::Lvm(LvmParams {
                pool_class: PoolClass::NVMe,
                replica_number: 1,
                convertible: false,
                thin: false,
                striped: false,
                fs_type: Some("ext4".into()),
                iops: None,
                throughput: None,
                encrypt: encrypted.then(|| EncryptParams {
                    secret_namespace: "ns1".into(),
                    secret_name: "vol-key".into(),
                    kind: EncryptType::LUKS,
                }),
                pvc: PvcRef::default(),
            }),
            required_bytes: bytes,
            nodes: vec!["node1".into()],
            content_source: None,
        },
        phase: VolumePhase::Ready,
        allocated_bytes: bytes,
        replicas: vec![ReplicaRecord {
            node: "node1".into(),
            dev_path: Some(dev.display().to_string()),
            ready: true,
        }],
        published_node: Some("node1".into()),
        snapshots: 0,
        used_bytes: None,
    }
}

struct Plugin {
    node: NodeClient<Channel>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

async fn start(backend: &MemBackend) -> Plugin {
    let socket = PathBuf::from(WORK).join("csi.sock");
    let mut cfg = CsiConfig::new(&socket, "node1");
    cfg.keys = KeySource::files(PathBuf::from(WORK).join("secrets"));
    // Fast, weak key derivation under TCG: tests only.
    let ops =
        HostNodeOps::new(TokioRunner::shared()).with_luks_pbkdf(Pbkdf::Pbkdf2 { iterations: 1000 });
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let (b, s) = (Arc::new(backend.clone()), shutdown.clone());
        async move {
            hwameistor_csi::serve(Driver::Lvm, cfg, b, Arc::new(ops), s)
                .await
                .expect("serve");
        }
    });
    for _ in 0..500 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Plugin {
        node: NodeClient::new(connect(&socket).await),
        shutdown,
        server,
    }
}

impl Plugin {
    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
    }

    async fn publish(&mut self, vol: &str, dev: &Path, target: &str, block: bool) -> Result<()> {
        let access_type = if block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            })
        };
        self.node
            .node_publish_volume(NodePublishVolumeRequest {
                volume_id: vol.into(),
                publish_context: [(
                    "volumeReplicaDevicePath".to_string(),
                    dev.display().to_string(),
                )]
                .into(),
                target_path: target.into(),
                volume_capability: Some(VolumeCapability {
                    access_mode: Some(AccessMode {
                        mode: Mode::SingleNodeWriter as i32,
                    }),
                    access_type: Some(access_type),
                }),
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    async fn unpublish(&mut self, vol: &str, target: &str) -> Result<()> {
        self.node
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: vol.into(),
                target_path: target.into(),
            })
            .await?;
        Ok(())
    }
}

fn write_key(key: &[u8]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let p = PathBuf::from(WORK).join("secrets/ns1/vol-key");
    std::fs::create_dir_all(p.parent().unwrap())?;
    std::fs::write(&p, key)?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn mapper(m: &str) -> PathBuf {
    Path::new("/dev/mapper").join(m)
}

/// Whether `dev` contains the marker (its buffer cache dropped first, so the bytes come
/// from the device).
async fn dev_has_marker(dev: &Path) -> Result<bool> {
    let d = dev.to_string_lossy();
    TokioRunner
        .run(&cmd(&["blockdev", "--flushbufs", &d]))
        .await?;
    match code(&["grep", "-a", "-q", "-F", MARKER, &d]).await? {
        0 => Ok(true),
        1 => Ok(false),
        c => anyhow::bail!("grep {d} failed with exit code {c}"),
    }
}

fn marker_data() -> Vec<u8> {
    MARKER.repeat(1 + (MI as usize) / MARKER.len()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn encrypted_volumes_through_the_csi_node_service() -> Result<()> {
    let disk = guest_disk();
    let t0 = std::time::Instant::now();
    std::fs::create_dir_all("/etc/lvm")?;
    std::fs::write(
        "/etc/lvm/lvmlocal.conf",
        "activation {\n  monitoring = 0\n}\n",
    )?;
    std::fs::create_dir_all(format!("{WORK}/pods"))?;
    let _cleanup = Cleanup { disk: disk.clone() };
    let runner = TokioRunner::shared();
    let e = LvmEngine::new(runner.clone(), LvmConfig::default());
    e.ensure_pool(POOL, &[PathBuf::from(&disk)]).await?;
    let opts = VolumeOptions::default();
    let enc = e
        .create_volume(POOL, "pvc-enc", 64 * MI, &opts)
        .await?
        .device_path;
    let blk = e
        .create_volume(POOL, "pvc-blk", 32 * MI, &opts)
        .await?
        .device_path;
    let plain = e
        .create_volume(POOL, "pvc-plain", 32 * MI, &opts)
        .await?
        .device_path;
    let backend = MemBackend::default();
    {
        let mut s = backend.state.lock().unwrap();
        s.volumes
            .insert("pvc-enc".into(), record("pvc-enc", &enc, 64 * MI, true));
        s.volumes
            .insert("pvc-blk".into(), record("pvc-blk", &blk, 32 * MI, true));
        s.volumes.insert(
            "pvc-plain".into(),
            record("pvc-plain", &plain, 32 * MI, true),
        );
    }
    write_key(KEY)?;
    let t1 = format!("{WORK}/pods/t1");
    let mut p = start(&backend).await;

    // First publish: blank LV -> LUKS2 -> ext4 on the mapping, mounted.
    p.publish("pvc-enc", &enc, &t1, false).await?;
    ensure!(code(&["cryptsetup", "isLuks", &enc.to_string_lossy()]).await? == 0);
    ensure!(mapper("pvc-enc-encrypt").exists(), "mapping open");
    let file = Path::new(&t1).join("data.txt");
    std::fs::write(&file, marker_data())?;
    std::fs::File::open(&file)?.sync_all()?;
    ensure!(
        dev_has_marker(&mapper("pvc-enc-encrypt")).await?,
        "plaintext readable through the mapping"
    );
    ensure!(
        !dev_has_marker(&enc).await?,
        "plaintext must not be on the raw LV"
    );
    let findmnt = TokioRunner
        .run(&cmd(&["findmnt", "-n", "-o", "SOURCE", &t1]))
        .await?
        .stdout;
    ensure!(
        findmnt.contains("pvc-enc-encrypt"),
        "mounted from {findmnt}"
    );

    // NodeExpand: the LV grows, then the mapping, then the filesystem.
    let before = fs::stats(Path::new(&t1))?.total_bytes;
    e.extend_volume(POOL, "pvc-enc", 96 * MI).await?;
    let grown = p
        .node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: "pvc-enc".into(),
            volume_path: t1.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .capacity_bytes as u64;
    ensure!(
        grown > before + 24 * MI,
        "filesystem grew from {before} to {grown}"
    );

    // Unpublish closes the mapping; the LV stays LUKS.
    p.unpublish("pvc-enc", &t1).await?;
    ensure!(!mapper("pvc-enc-encrypt").exists(), "mapping closed");
    ensure!(!Path::new(&t1).exists(), "target removed");
    ensure!(code(&["cryptsetup", "isLuks", &enc.to_string_lossy()]).await? == 0);

    // A wrong key: PERMISSION_DENIED, no mapping, the container untouched.
    write_key(b"not-the-volume-key")?;
    let err = p
        .publish("pvc-enc", &enc, &t1, false)
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    ensure!(err.code() == Code::PermissionDenied, "{err:?}");
    ensure!(!mapper("pvc-enc-encrypt").exists());
    ensure!(!err.message().contains("not-the-volume-key"), "{err:?}");

    // The right key again: the data is intact.
    write_key(KEY)?;
    p.publish("pvc-enc", &enc, &t1, false).await?;
    ensure!(std::fs::read(&file)? == marker_data(), "data intact");

    // The plugin "crashes" (memory-only state): the next unpublish still closes the mapping.
    p.stop().await;
    let mut p = start(&backend).await;
    p.unpublish("pvc-enc", &t1).await?;
    ensure!(!mapper("pvc-enc-encrypt").exists(), "crash leftover closed");

    // Block publication binds the mapping.
    let tb = format!("{WORK}/pods/blk");
    p.publish("pvc-blk", &blk, &tb, true).await?;
    let pat = format!("{WORK}/pattern");
    std::fs::write(&pat, marker_data())?;
    TokioRunner
        .run(&cmd(&[
            "dd",
            &format!("if={pat}"),
            &format!("of={tb}"),
            "bs=1M",
            "oflag=direct",
            "conv=notrunc,fsync",
            "status=none",
        ]))
        .await?;
    ensure!(
        dev_has_marker(Path::new(&tb)).await?,
        "block target reads plaintext"
    );
    ensure!(!dev_has_marker(&blk).await?, "raw LV holds ciphertext only");
    p.unpublish("pvc-blk", &tb).await?;
    ensure!(!mapper("pvc-blk-encrypt").exists());

    // An LV that holds a filesystem is never encrypted over.
    fs::mkfs(runner.as_ref(), &plain, FsType::Ext4, &[]).await?;
    let t2 = format!("{WORK}/pods/t2");
    let err = p
        .publish("pvc-plain", &plain, &t2, false)
        .await
        .unwrap_err()
        .downcast::<tonic::Status>()?;
    ensure!(err.code() == Code::FailedPrecondition, "{err:?}");
    ensure!(
        fs::probe(runner.as_ref(), &plain).await?.fs_type.as_deref() == Some("ext4"),
        "filesystem untouched"
    );
    ensure!(!mapper("pvc-plain-encrypt").exists());

    // A snapshot of the encrypted LV is a LUKS container (ciphertext), opened by the key.
    e.create_snapshot(POOL, "pvc-enc", "snap-enc", 32 * MI)
        .await?;
    let snap = PathBuf::from(format!("/dev/{POOL}/snap-enc"));
    ensure!(code(&["cryptsetup", "isLuks", &snap.to_string_lossy()]).await? == 0);
    ensure!(
        !dev_has_marker(&snap).await?,
        "snapshot holds ciphertext only"
    );
    e.delete_snapshot(POOL, "snap-enc").await?;

    p.stop().await;
    for v in ["pvc-enc", "pvc-blk", "pvc-plain"] {
        e.delete_volume(POOL, v).await?;
    }
    println!(
        "tier2_luks_publish: guest time {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
