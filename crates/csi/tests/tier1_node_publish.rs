//! Tier 1: the Node service with the real host operations (`HostNodeOps`) on loop devices:
//! mkfs + mount, data survives unpublish/republish, stats, online grow, block bind mounts,
//! xfs, and refusal to format over a foreign filesystem. Needs root and loop devices.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::{FakeNodeOps, GIB, Harness, MemBackend};
use hwameistor_core::types::PoolClass;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use hwameistor_csi::proto::*;
use hwameistor_csi::{Driver, HostNodeOps};
use hwameistor_exec::{Cmd, TokioRunner};
use hwameistor_testkit::block::mount_fstype;
use hwameistor_testkit::host::{CAP_SYS_RESOURCE, has_cap};
use hwameistor_testkit::{LoopDisk, MI as MIB, ReleaseOnDrop};
use tonic::Code;

/// A loop device over a sparse file `name` of `bytes` in the harness directory. The caller
/// holds a [`ReleaseOnDrop`] of that directory, which unmounts the targets below it and
/// detaches the device, even when the test fails.
async fn loop_disk(h: &Harness, name: &str, bytes: u64) -> LoopDisk {
    let file = h.dir.path().join(name);
    std::fs::File::create(&file)
        .unwrap()
        .set_len(bytes)
        .unwrap();
    LoopDisk::attach(file).await.expect("losetup")
}

/// The filesystem type mounted at `target`, if anything is mounted there.
fn is_mounted(target: &str) -> Option<String> {
    mount_fstype(target)
}

fn cap_mount(fs: &str) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Mount(MountVolume {
            fs_type: fs.into(),
            ..Default::default()
        })),
    }
}

fn cap_block() -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeWriter as i32,
        }),
        access_type: Some(AccessType::Block(BlockVolume {})),
    }
}

async fn harness() -> Harness {
    let backend = MemBackend::with_nodes(&[("node1", PoolClass::HDD, 10 * GIB)]);
    Harness::start_with_ops(
        Driver::Lvm,
        backend,
        FakeNodeOps::default(),
        Arc::new(HostNodeOps::new(TokioRunner::shared())),
    )
    .await
}

async fn volume(h: &mut Harness, name: &str) {
    h.controller
        .create_volume(CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 256 * MIB as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![cap_mount("ext4")],
            parameters: [("poolClass".to_string(), "HDD".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn publish(vol: &str, dev: &str, target: &str, cap: VolumeCapability) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: vol.into(),
        publish_context: HashMap::from([("volumeReplicaDevicePath".to_string(), dev.to_string())]),
        target_path: target.into(),
        volume_capability: Some(cap),
        ..Default::default()
    }
}

async fn unpublish(h: &mut Harness, vol: &str, target: &str) {
    h.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: vol.into(),
            target_path: target.into(),
        })
        .await
        .unwrap();
}

async fn stats(h: &mut Harness, vol: &str, path: &str) -> NodeGetVolumeStatsResponse {
    h.node
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: vol.into(),
            volume_path: path.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn expand(h: &mut Harness, vol: &str, path: &str) -> NodeExpandVolumeResponse {
    h.node
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: vol.into(),
            volume_path: path.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn ext4_publish_write_stats_grow_unpublish_republish() {
    let mut h = harness().await;
    volume(&mut h, "t1vol").await;
    let _release = ReleaseOnDrop(h.dir.path().to_path_buf());
    let lo = loop_disk(&h, "disk.img", 256 * MIB).await;
    let dev = lo.dev.display().to_string();
    let t1 = h.target("pod1/vol");
    let t2 = h.target("pod2/vol");

    h.node
        .node_publish_volume(publish("t1vol", &dev, &t1, cap_mount("ext4")))
        .await
        .unwrap();
    assert_eq!(is_mounted(&t1).as_deref(), Some("ext4"));
    // Idempotent repeat does not mount twice.
    h.node
        .node_publish_volume(publish("t1vol", &dev, &t1, cap_mount("ext4")))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .matches(&t1)
            .count(),
        1
    );
    // The mount vanished behind our back (a reboot): a repeated publish mounts again.
    TokioRunner::shared()
        .run(&Cmd::new("umount").arg(&t1))
        .await
        .unwrap();
    assert_eq!(is_mounted(&t1), None);
    h.node
        .node_publish_volume(publish("t1vol", &dev, &t1, cap_mount("ext4")))
        .await
        .unwrap();
    assert_eq!(is_mounted(&t1).as_deref(), Some("ext4"));
    std::fs::write(Path::new(&t1).join("hello.txt"), b"hwameistor").unwrap();

    let st = stats(&mut h, "t1vol", &t1).await;
    let bytes = st
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Bytes as i32)
        .unwrap();
    let inodes = st
        .usage
        .iter()
        .find(|u| u.unit == volume_usage::Unit::Inodes as i32)
        .unwrap();
    assert!(
        bytes.total > 200 * MIB as i64 && bytes.total <= 256 * MIB as i64,
        "{bytes:?}"
    );
    assert!(bytes.used > 0 && bytes.available > 0, "{bytes:?}");
    assert!(inodes.total > 0 && inodes.used > 0, "{inodes:?}");
    let before = bytes.total;

    // Online grow after the device grew. ext4 online resize needs CAP_SYS_RESOURCE, which
    // some containers drop; xfs growth is covered unconditionally in `block_and_xfs_publish`.
    if has_cap(CAP_SYS_RESOURCE) {
        lo.grow(512 * MIB).await.unwrap();
        let grown = expand(&mut h, "t1vol", &t1).await;
        assert!(
            grown.capacity_bytes > before + 200 * MIB as i64,
            "{} vs {before}",
            grown.capacity_bytes
        );
    } else {
        eprintln!("CAP_SYS_RESOURCE missing: ext4 online grow not exercised here (xfs grow is)");
    }

    unpublish(&mut h, "t1vol", &t1).await;
    assert_eq!(is_mounted(&t1), None);
    assert!(!Path::new(&t1).exists(), "target removed");
    unpublish(&mut h, "t1vol", &t1).await;

    // Republish elsewhere: the data is still there (no reformat).
    h.node
        .node_publish_volume(publish("t1vol", &dev, &t2, cap_mount("ext4")))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(&t2).join("hello.txt")).unwrap(),
        "hwameistor"
    );
    unpublish(&mut h, "t1vol", &t2).await;
    assert_eq!(is_mounted(&t2), None);

    // A device with ext4 on it is never reformatted as xfs.
    let (code, msg) = match h
        .node
        .node_publish_volume(publish("t1vol", &dev, &t1, cap_mount("xfs")))
        .await
    {
        Err(s) => (s.code(), s.message().to_string()),
        Ok(_) => panic!("formatting over ext4 must be refused"),
    };
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert_eq!(is_mounted(&t1), None);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn block_and_xfs_publish() {
    let mut h = harness().await;
    volume(&mut h, "t2vol").await;
    volume(&mut h, "t3vol").await;
    let _release = ReleaseOnDrop(h.dir.path().to_path_buf());
    let blk = loop_disk(&h, "blk.img", 64 * MIB).await;
    let xfs = loop_disk(&h, "xfs.img", 320 * MIB).await;
    let (blk_dev, xfs_dev) = (blk.dev.display().to_string(), xfs.dev.display().to_string());
    let tb = h.target("pod/dev");
    let tx = h.target("pod/xfs");

    h.node
        .node_publish_volume(publish("t2vol", &blk_dev, &tb, cap_block()))
        .await
        .unwrap();
    assert!(is_mounted(&tb).is_some(), "block target is a bind mount");
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&tb).unwrap();
        f.seek(SeekFrom::Start(MIB)).unwrap();
        f.write_all(b"raw block data").unwrap();
        f.sync_all().unwrap();
        let mut d = std::fs::File::open(&blk.dev).unwrap();
        d.seek(SeekFrom::Start(MIB)).unwrap();
        let mut buf = [0u8; 14];
        d.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"raw block data");
    }
    let st = stats(&mut h, "t2vol", &tb).await;
    assert_eq!(st.usage[0].total, 64 * MIB as i64);
    unpublish(&mut h, "t2vol", &tb).await;
    assert!(is_mounted(&tb).is_none() && !Path::new(&tb).exists());

    h.node
        .node_publish_volume(publish("t3vol", &xfs_dev, &tx, cap_mount("xfs")))
        .await
        .unwrap();
    assert_eq!(is_mounted(&tx).as_deref(), Some("xfs"));
    std::fs::write(Path::new(&tx).join("f"), vec![7u8; 1 << 20]).unwrap();
    let before = stats(&mut h, "t3vol", &tx).await.usage[0].total;
    xfs.grow(640 * MIB).await.unwrap();
    let grown = expand(&mut h, "t3vol", &tx).await;
    assert!(
        grown.capacity_bytes > before + 250 * MIB as i64,
        "{} vs {before}",
        grown.capacity_bytes
    );
    assert_eq!(
        std::fs::read(Path::new(&tx).join("f")).unwrap().len(),
        1 << 20
    );
    unpublish(&mut h, "t3vol", &tx).await;
    assert!(is_mounted(&tx).is_none());
    h.stop().await;
}
