//! Tier 1 (root on the host): `hwameistor standalone --demo` serves its CSI sockets, and
//! `hwameictl volume mount|unmount` drive them: create → mount → write → read back →
//! unmount → delete, for a filesystem volume and a block volume.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, ctl, wait_ctl};
use hwameistor_testkit::ReleaseOnDrop;
use nix::sys::signal::Signal;
use serde_json::Value;

async fn wait_for(dir: &Path, args: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_ctl(dir, args, what, 30, ok).await
}

async fn volume_ready(dir: &Path, name: &str) {
    let (code, _, err) = ctl(dir, &["volume", "create", name, "--size", "512Mi"]).await;
    assert_eq!(code, 0, "create {name}: {err}");
    wait_for(
        dir,
        &["volume", "get", name, "-o", "json"],
        "volume Ready",
        |o| serde_json::from_str::<Value>(o).is_ok_and(|v| v["status"]["state"] == "Ready"),
    )
    .await;
}

async fn delete_volume(dir: &Path, name: &str) {
    let (code, _, err) = ctl(dir, &["volume", "delete", name]).await;
    assert_eq!(code, 0, "delete {name}: {err}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, _) = ctl(dir, &["volume", "get", name]).await;
        if code == hwameistor_cli::EXIT_NOT_FOUND {
            return;
        }
        assert!(Instant::now() < deadline, "volume {name} not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_mountpoint(p: &Path) -> bool {
    let p = p.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*p))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn csi_mount_write_unmount_for_filesystem_and_block_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let _cleanup = ReleaseOnDrop(dir.clone());
    let server = Server::start(
        &dir,
        &[
            "--demo",
            "--engine",
            "file",
            "--demo-disk-size",
            "2Gi",
            "--node-name",
            "csi-node",
        ],
    );
    let sf: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("server.json")).unwrap()).unwrap();
    for d in ["lvm.hwameistor.io", "disk.hwameistor.io"] {
        let sock = sf["csi"][d]
            .as_str()
            .unwrap_or_else(|| panic!("{d} in {sf}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Path::new(sock).exists() {
            assert!(Instant::now() < deadline, "socket {sock} never appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    wait_for(&dir, &["pool", "list", "-o", "json"], "demo pool", |o| {
        serde_json::from_str::<Value>(o).is_ok_and(|v| v["items"][0]["disks"] == 2)
    })
    .await;

    // filesystem volume (xfs)
    volume_ready(&dir, "csi-fs").await;
    let target = dir.join("mnt-fs");
    let t = target.to_str().unwrap();
    let (code, out, err) = ctl(&dir, &["volume", "mount", "csi-fs", t, "--fs-type", "xfs"]).await;
    assert_eq!(code, 0, "mount: {out} {err}");
    assert!(is_mountpoint(&target), "{t} not mounted");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(target.join("data"), &data).unwrap();
    assert_eq!(std::fs::read(target.join("data")).unwrap(), data);
    // deleting a mounted volume is refused or deferred; unmount first
    let (code, _, err) = ctl(&dir, &["volume", "unmount", "csi-fs", t]).await;
    assert_eq!(code, 0, "unmount: {err}");
    assert!(!is_mountpoint(&target), "{t} still mounted");
    delete_volume(&dir, "csi-fs").await;

    // block volume
    volume_ready(&dir, "csi-blk").await;
    let dev = dir.join("blk");
    let b = dev.to_str().unwrap();
    let (code, out, err) = ctl(&dir, &["volume", "mount", "csi-blk", b, "--block"]).await;
    assert_eq!(code, 0, "mount --block: {out} {err}");
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .unwrap();
        assert!(
            f.seek(SeekFrom::End(0)).unwrap() >= 256 << 20,
            "device size"
        );
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.write_all(&data[..65536]).unwrap();
        f.sync_all().unwrap();
        let mut back = vec![0u8; 65536];
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.read_exact(&mut back).unwrap();
        assert_eq!(back, data[..65536]);
    }
    let (code, _, err) = ctl(&dir, &["volume", "unmount", "csi-blk", b]).await;
    assert_eq!(code, 0, "unmount --block: {err}");
    assert!(!is_mountpoint(&dev), "{b} still bound");
    delete_volume(&dir, "csi-blk").await;

    // errors: unknown volume → exit code 3 (NOT_FOUND)
    let (code, _, err) = ctl(&dir, &["volume", "mount", "no-such-vol", t]).await;
    assert_eq!(code, hwameistor_cli::EXIT_NOT_FOUND, "{err}");

    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    for d in ["lvm.sock", "disk.sock"] {
        assert!(!dir.join("csi").join(d).exists(), "{d} left behind");
    }
}
