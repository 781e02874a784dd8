//! Tier 2 (inside the qemu guest): `hwameistor standalone --engine lvm` on the guest's real
//! disks (`--disk`), end to end through hwameictl and the CSI sockets: create → publish →
//! write → expand (online filesystem grow through NodeExpandVolume) → snapshot → restore into a
//! new volume → compare data → unpublish → delete, for a filesystem volume (xfs) and a block
//! volume; then a volume striped across both disks; then SIGTERM leaves no active LV of ours.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, ctl};
use hwameistor_csi::client::{CsiClient, MountKind};
use hwameistor_csi::proto as csi;
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_vmtests::{DiskKind, Guest};
use nix::sys::signal::Signal;
use serde_json::Value;

const MI: u64 = 1 << 20;
/// TCG is slow: generous waits.
const WAIT: Duration = Duration::from_secs(90);

async fn wait_json(dir: &Path, args: &[&str], what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, out, err) = ctl(dir, args).await;
        if code == 0
            && let Ok(v) = serde_json::from_str::<Value>(&out)
            && ok(&v)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last output {out:?}, {err:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = ctl(dir, args).await;
    assert_eq!(code, 0, "hwameictl {args:?}: {out} {err}");
    out
}

async fn volume_ready(dir: &Path, name: &str) -> Value {
    wait_json(
        dir,
        &["volume", "get", name, "-o", "json"],
        &format!("volume {name} Ready"),
        |v| v["status"]["state"] == "Ready",
    )
    .await
}

async fn gone(dir: &Path, args: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, _, _) = ctl(dir, args).await;
        if code == hwameistor_cli::EXIT_NOT_FOUND {
            return;
        }
        assert!(Instant::now() < deadline, "{args:?} still exists");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn expand_to(dir: &Path, name: &str, bytes: u64) {
    ok(
        dir,
        &["volume", "expand", name, &format!("{}Mi", bytes / MI)],
    )
    .await;
    wait_json(
        dir,
        &["volume", "get", name, "-o", "json"],
        &format!("volume {name} expanded"),
        |v| v["status"]["allocatedCapacityBytes"].as_u64() >= Some(bytes),
    )
    .await;
}

async fn snapshot_and_restore(dir: &Path, volume: &str, snap: &str, copy: &str) {
    ok(dir, &["snapshot", "create", snap, "--volume", volume]).await;
    wait_json(
        dir,
        &["snapshot", "get", snap, "-o", "json"],
        &format!("snapshot {snap} Ready"),
        |v| v["status"]["state"] == "Ready",
    )
    .await;
    ok(dir, &["snapshot", "restore", snap, "--to", copy]).await;
    volume_ready(dir, copy).await;
    // the new volume is Ready before its data is copied: wait for the restore itself
    wait_json(
        dir,
        &[
            "get",
            "localvolumesnapshotrestore",
            &format!("snaprestore-{copy}"),
            "-o",
            "json",
        ],
        &format!("restore into {copy} Completed"),
        |v| v["status"]["state"] == "Completed",
    )
    .await;
}

/// Prints the server's log when the test fails (the guest's /tmp is gone afterwards).
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.0.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!("--- server log (last 80 lines):");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

async fn delete_all(dir: &Path, snap: &str, volumes: &[&str]) {
    ok(dir, &["snapshot", "delete", snap]).await;
    gone(dir, &["snapshot", "get", snap]).await;
    for v in volumes {
        ok(dir, &["volume", "delete", v]).await;
    }
    for v in volumes {
        gone(dir, &["volume", "get", v]).await;
    }
}

async fn node_expand(c: &mut CsiClient, volume: &str, path: &Path, bytes: u64) -> i64 {
    c.node
        .node_expand_volume(csi::NodeExpandVolumeRequest {
            volume_id: volume.into(),
            volume_path: path.display().to_string(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: bytes as i64,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("NodeExpandVolume")
        .into_inner()
        .capacity_bytes
}

fn fs_size(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    s.blocks() * s.fragment_size()
}

fn pattern(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

/// Active LVs tagged as ours (`lvs` with the LVM config the engine uses).
async fn active_lvs() -> Vec<String> {
    let out = TokioRunner::new()
        .run(&Cmd::new("lvs").args([
            "--noheadings",
            "-o",
            "vg_name,lv_name,lv_active",
            "--config",
            "activation { monitoring = 0 }",
        ]))
        .await
        .map(|o| o.stdout)
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.contains("LocalStorage_Pool") && l.contains("active"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn lvm_standalone_end_to_end_on_real_disks() {
    let guest = Guest::from_env().expect("tier 2");
    let started = Instant::now();
    let d1 = guest.disk(DiskKind::Virtio).dev.clone();
    let d2 = guest.disk(DiskKind::Virtio2).dev.clone();
    let dir = PathBuf::from("/tmp/hs-lvm");
    std::fs::create_dir_all(&dir).unwrap();
    let _log = LogOnPanic(dir.clone());
    let server = Server::start(
        &dir,
        &[
            "--engine",
            "lvm",
            "--disk",
            d1.to_str().unwrap(),
            "--disk",
            d2.to_str().unwrap(),
        ],
    );
    wait_json(
        &dir,
        &["pool", "list", "-o", "json"],
        "pool of both disks",
        |v| v["items"][0]["disks"] == 2,
    )
    .await;
    eprintln!("pool ready after {:?}", started.elapsed());
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    for l in log.lines().filter(|l| {
        l.contains("ready")
            || l.contains("claimed")
            || l.contains("pool created")
            || l.contains("volume engine")
    }) {
        eprintln!("  {l}");
    }
    let sf: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("server.json")).unwrap()).unwrap();
    let sock = sf["csi"]["lvm.hwameistor.io"].as_str().unwrap().to_string();
    let deadline = Instant::now() + WAIT;
    while !Path::new(&sock).exists() {
        assert!(Instant::now() < deadline, "CSI socket {sock}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut c = hwameistor_csi::client::connect(&sock)
        .await
        .expect("connect");
    let xfs = || MountKind::Filesystem {
        fs_type: "xfs".into(),
    };

    // ---- filesystem volume (xfs)
    ok(&dir, &["volume", "create", "fsv", "--size", "300Mi"]).await;
    volume_ready(&dir, "fsv").await;
    let mnt = dir.join("mnt-fsv");
    std::fs::create_dir_all(&mnt).unwrap();
    c.mount("fsv", &mnt, xfs(), false)
        .await
        .expect("publish fsv");
    let data = pattern(4 * MI as usize, 1);
    {
        let mut f = std::fs::File::create(mnt.join("data")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
    }
    eprintln!("fsv published and written after {:?}", started.elapsed());
    let before = fs_size(&mnt);
    expand_to(&dir, "fsv", 400 * MI).await;
    let cap = node_expand(&mut c, "fsv", &mnt, 400 * MI).await;
    let after = fs_size(&mnt);
    eprintln!("fsv: filesystem {before} -> {after} bytes (NodeExpand said {cap})");
    assert!(after > before + 80 * MI, "online grow: {before} -> {after}");
    assert_eq!(std::fs::read(mnt.join("data")).unwrap(), data);
    eprintln!("fsv expanded after {:?}", started.elapsed());
    snapshot_and_restore(&dir, "fsv", "fsv-snap", "fsv-copy").await;
    eprintln!("fsv snapshot restored after {:?}", started.elapsed());
    let copy = dir.join("mnt-copy");
    std::fs::create_dir_all(&copy).unwrap();
    c.mount("fsv-copy", &copy, xfs(), false)
        .await
        .expect("publish fsv-copy");
    assert_eq!(
        std::fs::read(copy.join("data")).unwrap(),
        data,
        "restored data"
    );
    c.unmount("fsv-copy", &copy, true)
        .await
        .expect("unpublish copy");
    c.unmount("fsv", &mnt, true).await.expect("unpublish fsv");
    delete_all(&dir, "fsv-snap", &["fsv", "fsv-copy"]).await;
    eprintln!("filesystem volume done after {:?}", started.elapsed());

    // ---- block volume
    ok(&dir, &["volume", "create", "blk", "--size", "64Mi"]).await;
    volume_ready(&dir, "blk").await;
    let dev = dir.join("blk-dev");
    c.mount("blk", &dev, MountKind::Block, false)
        .await
        .expect("publish blk");
    let block = pattern(MI as usize, 7);
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .unwrap();
        f.seek(SeekFrom::Start(MI)).unwrap();
        f.write_all(&block).unwrap();
        f.sync_all().unwrap();
    }
    expand_to(&dir, "blk", 128 * MI).await;
    {
        let mut f = std::fs::File::open(&dev).unwrap();
        let size = f.seek(SeekFrom::End(0)).unwrap();
        assert!(size >= 128 * MI, "block device after expand: {size}");
    }
    snapshot_and_restore(&dir, "blk", "blk-snap", "blk-copy").await;
    let dev2 = dir.join("blk-copy-dev");
    c.mount("blk-copy", &dev2, MountKind::Block, false)
        .await
        .expect("publish blk-copy");
    {
        let mut f = std::fs::File::open(&dev2).unwrap();
        f.seek(SeekFrom::Start(MI)).unwrap();
        let mut back = vec![0u8; block.len()];
        f.read_exact(&mut back).unwrap();
        assert!(back == block, "restored block data differs");
    }
    c.unmount("blk-copy", &dev2, true).await.expect("unpublish");
    c.unmount("blk", &dev, true).await.expect("unpublish");
    delete_all(&dir, "blk-snap", &["blk", "blk-copy"]).await;
    eprintln!("block volume done after {:?}", started.elapsed());

    // ---- striped across both disks
    ok(
        &dir,
        &[
            "volume",
            "create",
            "str",
            "--size",
            "64Mi",
            "--param",
            "striped=true",
        ],
    )
    .await;
    volume_ready(&dir, "str").await;
    let out = TokioRunner::new()
        .run(&Cmd::new("lvs").args([
            "--noheadings",
            "-o",
            "lv_name,stripes",
            "--config",
            "activation { monitoring = 0 }",
        ]))
        .await
        .expect("lvs")
        .stdout;
    let stripes = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"str"))
        .and_then(|f| f.get(1).map(|s| s.to_string()));
    assert_eq!(stripes.as_deref(), Some("2"), "lvs:\n{out}");
    ok(&dir, &["volume", "delete", "str"]).await;
    gone(&dir, &["volume", "get", "str"]).await;

    // ---- a volume left unpublished is deactivated at SIGTERM
    ok(&dir, &["volume", "create", "idle", "--size", "32Mi"]).await;
    volume_ready(&dir, "idle").await;
    assert!(
        !active_lvs().await.is_empty(),
        "idle volume should be active"
    );
    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    let left = active_lvs().await;
    assert!(left.is_empty(), "active LVs after SIGTERM: {left:?}");
    eprintln!("done after {:?}", started.elapsed());
}
