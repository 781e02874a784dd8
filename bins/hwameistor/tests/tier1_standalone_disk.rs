//! Tier 1 (root on the host): raw-disk volumes (`disk.hwameistor.io`) end to end in
//! standalone mode, with loop devices as disks.
//!
//! Two sparse files under `<data-dir>/disks` (1 GiB and 2 GiB) are attached as loop devices,
//! given to the disk manager (`owner local-disk-manager` + a LocalDiskClaim) and show up in
//! the node's `LocalDisk_PoolHDD`. Then, over the real `disk.sock`: RESOURCE_EXHAUSTED at
//! once when nothing fits, CreateVolume with `diskType`/`minCap` picks the smallest fitting
//! disk (idempotently), `hwameictl get ldv` shows the seed's columns, a filesystem
//! publication (we format: `canWipe`) and a block publication (the user's data) are written
//! and read back, the publish rules hold (single writer, delete while published), and after
//! DeleteVolume only the disk we formatted is wiped; both return to the pool and the wiped
//! one serves the next volume. The `--demo-raw-disks` volume is deleted directly (REST
//! `DELETE` of the object, as `kubectl delete ldv` does) while still mounted: the finalizer
//! holds it until it is unpublished, then the disk is wiped and released the same way.

mod common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, ctl, wait_ctl};
use hwameistor_csi::client::{CsiClient, connect};
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use hwameistor_csi::proto::*;
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_testkit::ReleaseOnDrop;
use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tonic::Code;

const NODE: &str = "raw-node";
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const TOPO: &str = "topology.disk.hwameistor.io/node";

/// A sparse file of `size` bytes attached to a loop device; returns the device.
async fn loop_disk(file: &Path, size: u64) -> String {
    let f = std::fs::File::create(file).unwrap();
    f.set_len(size).unwrap();
    drop(f);
    let out = TokioRunner::new()
        .run(&Cmd::new("losetup").args(["-f", "--show", file.to_str().unwrap()]))
        .await
        .expect("losetup");
    out.stdout.trim().to_string()
}

async fn wait_json(dir: &Path, args: &[&str], what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let out = wait_ctl(dir, args, what, 45, |o| {
        serde_json::from_str::<Value>(o).is_ok_and(|v| ok(&v))
    })
    .await;
    serde_json::from_str(&out).unwrap()
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The HDD raw-disk pool of the LocalDiskNode.
fn hdd_pool(ldn: &Value) -> &Value {
    &ldn["status"]["pools"]["LocalDisk_PoolHDD"]
}

/// SINGLE_NODE_SINGLE_WRITER (ReadWriteOncePod): one target at a time.
fn cap(block: bool) -> VolumeCapability {
    VolumeCapability {
        access_mode: Some(AccessMode {
            mode: Mode::SingleNodeSingleWriter as i32,
        }),
        access_type: Some(if block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume {
                fs_type: "xfs".into(),
                ..Default::default()
            })
        }),
    }
}

fn create_req(name: &str, bytes: u64, disk_type: &str, block: bool) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: bytes as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap(block)],
        parameters: [
            ("diskType", disk_type),
            ("minCap", "256Mi"),
            ("csi.storage.k8s.io/pvc/name", name),
            ("csi.storage.k8s.io/pvc/namespace", "default"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        accessibility_requirements: Some(TopologyRequirement {
            requisite: vec![Topology {
                segments: [(TOPO.to_string(), NODE.to_string())].into(),
            }],
            preferred: vec![Topology {
                segments: [(TOPO.to_string(), NODE.to_string())].into(),
            }],
        }),
        ..Default::default()
    }
}

fn publish_req(volume: &str, target: &Path, block: bool) -> NodePublishVolumeRequest {
    NodePublishVolumeRequest {
        volume_id: volume.into(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap(block)),
        ..Default::default()
    }
}

async fn ldv(dir: &Path, name: &str) -> Option<Value> {
    let (code, out, err) = ctl(dir, &["get", "ldv", name, "-o", "json"]).await;
    if code == hwameistor_cli::EXIT_NOT_FOUND {
        return None;
    }
    assert_eq!(code, 0, "get ldv {name}: {err}");
    Some(serde_json::from_str(&out).unwrap())
}

fn is_mountpoint(p: &Path) -> bool {
    let p = p.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*p))
}

fn read_at(file: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(file).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

async fn delete(c: &mut CsiClient, id: &str) -> Result<(), tonic::Status> {
    c.controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: id.into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

async fn unpublish(c: &mut CsiClient, id: &str, target: &Path) {
    c.node
        .node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.into(),
            target_path: target.display().to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("unpublish {id}: {e:?}"));
    assert!(!is_mountpoint(target), "{} still mounted", target.display());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn raw_disk_volumes_end_to_end() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let _cleanup = ReleaseOnDrop(dir.clone());
    // --demo makes the disk manager count loop devices backed under <dir>/disks; our two raw
    // disks live there too (the demo's own disk goes to local-storage).
    std::fs::create_dir_all(dir.join("disks")).unwrap();
    let small_img = dir.join("disks/raw-small.img");
    let big_img = dir.join("disks/raw-big.img");
    let small = loop_disk(&small_img, GIB).await;
    let big = loop_disk(&big_img, 2 * GIB).await;
    let server = Server::start(
        &dir,
        &[
            "--demo",
            "--demo-disks",
            "1",
            "--demo-disk-size",
            "1Gi",
            "--engine",
            "file",
            "--node-name",
            NODE,
        ],
    );

    // The disk manager lists both; give them to it.
    let lds = wait_json(&dir, &["get", "ld", "-o", "json"], "raw LocalDisks", |v| {
        let all = items(v);
        let devs: Vec<&str> = all
            .iter()
            .filter_map(|d| d["spec"]["devicePath"].as_str())
            .collect();
        devs.contains(&small.as_str()) && devs.contains(&big.as_str())
    })
    .await;
    let name_of = |dev: &str| -> String {
        items(&lds)
            .iter()
            .find(|d| d["spec"]["devicePath"] == dev)
            .and_then(|d| d["metadata"]["name"].as_str())
            .unwrap()
            .to_string()
    };
    let (small_ld, big_ld) = (name_of(&small), name_of(&big));
    for dev in [&small, &big] {
        let (code, out, err) = ctl(&dir, &["disk", "owner", NODE, dev, "local-disk-manager"]).await;
        assert_eq!(code, 0, "disk owner {dev}: {out} {err}");
    }
    let url = server.url.clone();
    let api = hwameistor_cli::Client::new(url, None, Duration::from_secs(10)).unwrap();
    api.post(
        "/apis/hwameistor.io/v1alpha1/localdiskclaims",
        &json!({
            "apiVersion": "hwameistor.io/v1alpha1",
            "kind": "LocalDiskClaim",
            "metadata": {"name": "raw-claim"},
            "spec": {"nodeName": NODE, "owner": "local-disk-manager",
                     "description": {"devicePaths": [small, big]}},
        }),
    )
    .await
    .expect("create the LocalDiskClaim");
    wait_json(
        &dir,
        &["get", "ldn", NODE, "-o", "json"],
        "raw-disk pool with two free disks",
        |v| hdd_pool(v)["freeVolumeCount"] == 2,
    )
    .await;
    let pool_ready = started.elapsed();

    let sf: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("server.json")).unwrap()).unwrap();
    let sock = sf["csi"]["disk.hwameistor.io"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = connect(&sock).await.expect("connect to disk.sock");

    // Nothing fits: RESOURCE_EXHAUSTED at once, nothing left behind.
    for (name, bytes, t) in [("raw-ssd", 100 * MIB, "SSD"), ("raw-huge", 3 * GIB, "HDD")] {
        let t0 = Instant::now();
        let err = c
            .controller
            .create_volume(create_req(name, bytes, t, false))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{name}: {err:?}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            t0.elapsed()
        );
        assert!(ldv(&dir, name).await.is_none(), "{name} left behind");
    }

    // A filesystem volume: 600 MiB fits the 1 GiB disk (the smallest that fits).
    let t0 = Instant::now();
    let fs_vol = c
        .controller
        .create_volume(create_req("raw-fs", 600 * MIB, "HDD", false))
        .await
        .expect("create raw-fs")
        .into_inner()
        .volume
        .unwrap();
    let create_latency = t0.elapsed();
    assert_eq!(fs_vol.capacity_bytes, GIB as i64, "the whole disk");
    assert_eq!(
        fs_vol.accessible_topology[0]
            .segments
            .get(TOPO)
            .map(String::as_str),
        Some(NODE)
    );
    let again = c
        .controller
        .create_volume(create_req("raw-fs", 600 * MIB, "HDD", false))
        .await
        .expect("repeat raw-fs")
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(again, fs_vol, "idempotent repeat");
    let v = ldv(&dir, "raw-fs").await.unwrap();
    assert_eq!(v["status"]["devPath"], json!(small));
    assert_eq!(v["status"]["localDiskName"], json!(small_ld));
    assert_eq!(v["spec"]["persistentVolumeClaimName"], "default/raw-fs");

    // A block volume: 1.5 GiB only fits the 2 GiB disk.
    let blk_vol = c
        .controller
        .create_volume(create_req("raw-blk", 1536 * MIB, "HDD", true))
        .await
        .expect("create raw-blk")
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(blk_vol.capacity_bytes, 2 * GIB as i64);
    assert_eq!(
        ldv(&dir, "raw-blk").await.unwrap()["status"]["devPath"],
        json!(big)
    );
    // Both disks are taken (the pool report may still lag): RESOURCE_EXHAUSTED at once.
    let t0 = Instant::now();
    let err = c
        .controller
        .create_volume(create_req("raw-none", 100 * MIB, "HDD", false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t0.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while ldv(&dir, "raw-none").await.is_some() {
        assert!(Instant::now() < deadline, "raw-none left behind");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // hwameictl shows them with the seed's columns.
    for kind in ["localdiskvolumes", "ldv"] {
        let (code, out, err) = ctl(&dir, &["get", kind]).await;
        assert_eq!(code, 0, "get {kind}: {err}");
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        // the seed's printer columns (they declare no Age, so kubectl shows none)
        assert_eq!(
            header,
            ["NAME", "NODE", "DISK", "ALLOCATEDCAP", "TYPE", "STATUS"],
            "{out}"
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows.len(), 2, "{out}");
        let big_cap = (2 * GIB).to_string();
        let small_cap = GIB.to_string();
        assert_eq!(
            rows[0],
            [
                "raw-blk",
                NODE,
                big.as_str(),
                big_cap.as_str(),
                "HDD",
                "Created"
            ],
            "{out}"
        );
        assert_eq!(
            rows[1],
            [
                "raw-fs",
                NODE,
                small.as_str(),
                small_cap.as_str(),
                "HDD",
                "Created"
            ],
            "{out}"
        );
    }

    // Filesystem publication: we format the disk (canWipe), write, read back.
    let mnt = dir.join("pod-fs/mount");
    c.node
        .node_publish_volume(publish_req("raw-fs", &mnt, false))
        .await
        .expect("publish raw-fs");
    assert!(is_mountpoint(&mnt));
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(mnt.join("data"), &data).unwrap();
    assert_eq!(std::fs::read(mnt.join("data")).unwrap(), data);
    let v = ldv(&dir, "raw-fs").await.unwrap();
    assert_eq!(v["spec"]["canWipe"], true, "{v}");
    let mps = v["status"]["mountPoints"].as_array().cloned().unwrap();
    assert_eq!(mps.len(), 1, "{v}");
    assert_eq!(mps[0]["targetPath"], json!(mnt.display().to_string()));
    assert_eq!(mps[0]["fsTye"], "xfs", "{v}");
    assert_eq!(read_at(&small_img, 0, 4), b"XFSB", "an xfs on the disk");
    // single writer: a second target is refused
    let err = c
        .node
        .node_publish_volume(publish_req("raw-fs", &dir.join("pod-2/mount"), false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // deletion while published is refused
    let err = delete(&mut c, "raw-fs").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        is_mountpoint(&mnt),
        "still mounted after the refused delete"
    );

    // Block publication: the device itself; the user even makes their own filesystem on it.
    let dev = dir.join("pod-blk/dev");
    c.node
        .node_publish_volume(publish_req("raw-blk", &dev, true))
        .await
        .expect("publish raw-blk");
    TokioRunner::new()
        .run(&Cmd::new("mkfs.ext4").args(["-q", "-F", dev.to_str().unwrap()]))
        .await
        .expect("the user's mkfs.ext4 on the block volume");
    // and raw data in the last MiB, beyond what mkfs wrote
    let tail = 2 * GIB - MIB;
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev)
            .unwrap();
        assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), 2 * GIB, "the whole disk");
        f.seek(SeekFrom::Start(tail)).unwrap();
        f.write_all(&data[..MIB as usize]).unwrap();
        f.sync_all().unwrap();
    }
    assert!(
        read_at(&dev, tail, MIB as usize) == data[..MIB as usize],
        "read back"
    );
    let v = ldv(&dir, "raw-blk").await.unwrap();
    assert_ne!(v["spec"]["canWipe"], true, "we formatted nothing: {v}");
    assert_eq!(
        v["status"]["mountPoints"][0]["volumeCap"]["accessType"],
        "Block"
    );

    // Unpublish both and delete them.
    unpublish(&mut c, "raw-fs", &mnt).await;
    unpublish(&mut c, "raw-blk", &dev).await;
    for id in ["raw-fs", "raw-blk"] {
        delete(&mut c, id)
            .await
            .unwrap_or_else(|e| panic!("delete {id}: {e:?}"));
        assert!(ldv(&dir, id).await.is_none(), "{id} still listed");
        // idempotent
        delete(&mut c, id).await.unwrap();
    }
    // We formatted the small disk: wiped. The big one holds the user's data: untouched.
    assert_ne!(read_at(&small_img, 0, 4), b"XFSB", "our xfs was wiped");
    assert_eq!(
        read_at(&big_img, 1080, 2),
        [0x53, 0xEF],
        "the user's ext4 is kept"
    );
    assert!(
        read_at(&big_img, tail, MIB as usize) == data[..MIB as usize],
        "the user's data is kept"
    );

    // Both disks are back in the pool.
    wait_json(
        &dir,
        &["get", "ldn", NODE, "-o", "json"],
        "both disks free again",
        |v| hdd_pool(v)["freeVolumeCount"] == 2 && hdd_pool(v)["usedVolumeCount"] == 0,
    )
    .await;
    // The wiped disk serves the next volume at once (the smallest that fits; discovery may
    // have recorded our xfs on it while it was mounted, which the wipe cleared). The big disk
    // keeps the user's filesystem; once discovery re-probes it, it is not handed out until an
    // admin wipes it (tier 0 covers that rule).
    let again = c
        .controller
        .create_volume(create_req("raw-again", 100 * MIB, "HDD", false))
        .await
        .expect("create raw-again")
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(again.capacity_bytes, GIB as i64);
    let v = ldv(&dir, "raw-again").await.unwrap();
    assert_eq!(v["status"]["localDiskName"], json!(small_ld));
    delete(&mut c, "raw-again").await.expect("delete raw-again");
    let big_disk = ctl(&dir, &["get", "ld", &big_ld, "-o", "json"]).await.1;
    let big_disk: Value = serde_json::from_str(&big_disk).unwrap();
    assert_eq!(
        big_disk["spec"]["owner"], "local-disk-manager",
        "still in the pool"
    );
    let (code, out, _) = ctl(&dir, &["get", "ldv"]).await;
    assert_eq!(code, 0);
    assert!(!out.contains("raw-"), "{out}");

    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    eprintln!(
        "raw-disk tier 1: pool ready after {pool_ready:?}, CreateVolume -> Created {create_latency:?}, whole test {:?}",
        started.elapsed()
    );
}

/// Loop devices whose backing file lies under `dir`.
async fn loops_under(dir: &Path) -> Vec<String> {
    let out = TokioRunner::new()
        .run(&Cmd::new("losetup").args(["-J", "-l", "-O", "NAME,BACK-FILE"]))
        .await
        .expect("losetup -l");
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let d = dir.to_string_lossy();
    v["loopdevices"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|l| l["back-file"].as_str().unwrap_or("").starts_with(&*d))
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn demo_raw_disks_serve_a_raw_disk_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let _cleanup = ReleaseOnDrop(dir.clone());
    let server = Server::start(
        &dir,
        &[
            "--demo",
            "--demo-disks",
            "1",
            "--demo-raw-disks",
            "1",
            "--demo-disk-size",
            "1Gi",
            "--engine",
            "file",
            "--node-name",
            NODE,
        ],
    );
    let raw_img = dir.join("disks/raw-0.img");
    assert!(raw_img.exists(), "the raw demo disk file");
    let ldn = wait_json(
        &dir,
        &["get", "ldn", NODE, "-o", "json"],
        "the raw demo disk in the raw-disk pool",
        |v| hdd_pool(v)["freeVolumeCount"] == 1,
    )
    .await;
    let raw_dev = hdd_pool(&ldn)["disks"][0]["devPath"]
        .as_str()
        .unwrap()
        .to_string();
    let sf: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("server.json")).unwrap()).unwrap();
    let mut c = connect(sf["csi"]["disk.hwameistor.io"].as_str().unwrap())
        .await
        .expect("connect to disk.sock");
    let v = c
        .controller
        .create_volume(create_req("demo-raw", 100 * MIB, "HDD", false))
        .await
        .expect("create demo-raw")
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, GIB as i64);
    let created = ldv(&dir, "demo-raw").await.unwrap();
    assert_eq!(created["status"]["devPath"], json!(raw_dev));
    let ldv_disk = created["status"]["localDiskName"].clone();
    assert!(
        created["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.contains(&json!("disk.hwameistor.io/volume-protection"))),
        "{created}"
    );
    let mnt = dir.join("pod/mount");
    c.node
        .node_publish_volume(publish_req("demo-raw", &mnt, false))
        .await
        .expect("publish demo-raw");
    std::fs::write(mnt.join("hello"), b"raw disk\n").unwrap();
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"raw disk\n");

    // Delete the object itself (REST DELETE, what `kubectl delete ldv` does) while it is
    // still published: the finalizer holds it, nothing is touched and the annotation says why.
    let api =
        hwameistor_cli::Client::new(server.url.clone(), None, Duration::from_secs(10)).unwrap();
    api.call(
        reqwest::Method::DELETE,
        "/apis/hwameistor.io/v1alpha1/localdiskvolumes/demo-raw",
        &[],
        None,
    )
    .await
    .expect("DELETE the LocalDiskVolume");
    let target = mnt.display().to_string();
    let held = wait_json(
        &dir,
        &["get", "ldv", "demo-raw", "-o", "json"],
        "deletion blocked while published",
        |v| {
            v["metadata"]["annotations"]["disk.hwameistor.io/delete-blocked"]
                .as_str()
                .is_some_and(|m| m.contains(&target))
        },
    )
    .await;
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    assert_eq!(
        held["status"]["localDiskName"], ldv_disk,
        "not released: {held}"
    );
    assert!(is_mountpoint(&mnt), "still mounted");
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"raw disk\n");
    assert_eq!(
        read_at(&raw_img, 0, 4),
        b"XFSB",
        "not wiped while published"
    );
    // Unpublished: the node wipes our xfs, releases the disk and the object goes.
    unpublish(&mut c, "demo-raw", &mnt).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while ldv(&dir, "demo-raw").await.is_some() {
        assert!(
            Instant::now() < deadline,
            "demo-raw not deleted after unpublish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(read_at(&raw_img, 0, 4), b"XFSB", "our xfs was wiped");
    wait_json(
        &dir,
        &["get", "ldn", NODE, "-o", "json"],
        "the raw demo disk free again",
        |v| hdd_pool(v)["freeVolumeCount"] == 1,
    )
    .await;

    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    assert_eq!(
        loops_under(&dir).await,
        Vec::<String>::new(),
        "demo loops left"
    );
}
