//! Tier 1 (root on the host): what `hwameistor standalone` does to the host itself.
//!
//! - `spec.volumeQoS` is enforced host-wide: a volume created with
//!   `provision-throughput-on-creation` and mounted with `hwameictl volume mount` is
//!   throttled for an ordinary process (dd, not moved into any cgroup) to within ±10 % of the
//!   limit; a live change of the LocalVolume's `spec.volumeQoS` applies; clearing it removes
//!   the limit (the cgroup rule is gone).
//! - SIGTERM leaves no mount and no loop device under the data directory, unless the user
//!   still has a volume mounted (then exactly that volume, its pool mount and demo disk stay
//!   and the log says so), and a restart with the same `--data-dir` brings the pool and the
//!   volume back with their data.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, ctl, wait_ctl};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_testkit::{ReleaseOnDrop, block};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const MI: u64 = 1 << 20;

async fn wait_for(dir: &Path, args: &[&str], what: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_ctl(dir, args, what, 60, ok).await
}

/// Prints the server's log when the test fails.
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.0.join("server.log")).unwrap_or_default();
            eprintln!("--- server log:\n{log}");
        }
    }
}

fn start_demo(dir: &Path) -> Server {
    Server::start(
        dir,
        &[
            "--demo",
            "--engine",
            "file",
            "--demo-disk-size",
            "2Gi",
            "--node-name",
            "host-node",
        ],
    )
}

async fn pool_ready(dir: &Path) {
    wait_for(dir, &["pool", "list", "-o", "json"], "demo pool", |o| {
        serde_json::from_str::<Value>(o).is_ok_and(|v| v["items"][0]["disks"] == 2)
    })
    .await;
}

async fn volume_ready(dir: &Path, name: &str) -> Value {
    let out = wait_for(
        dir,
        &["volume", "get", name, "-o", "json"],
        "volume Ready",
        |o| serde_json::from_str::<Value>(o).is_ok_and(|v| v["status"]["state"] == "Ready"),
    )
    .await;
    serde_json::from_str(&out).unwrap()
}

/// The device of the volume's (only) replica.
async fn replica_device(dir: &Path, volume: &str) -> PathBuf {
    let out = wait_for(dir, &["get", "lvr", "-o", "json"], "replica device", |o| {
        serde_json::from_str::<Value>(o).is_ok_and(|v| {
            v["items"].as_array().is_some_and(|items| {
                items.iter().any(|r| {
                    r["spec"]["volumeName"] == volume
                        && r["status"]["devPath"]
                            .as_str()
                            .is_some_and(|p| !p.is_empty())
                })
            })
        })
    })
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["spec"]["volumeName"] == volume)
        .unwrap();
    std::fs::canonicalize(r["status"]["devPath"].as_str().unwrap()).unwrap()
}

fn dev_number(dev: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let r = std::fs::metadata(dev).unwrap().rdev();
    (nix::sys::stat::major(r), nix::sys::stat::minor(r))
}

/// The host-wide write-bps rule of device `num` in the root blkio cgroup (v1), if any.
fn root_write_bps(num: (u64, u64)) -> Option<u64> {
    let text =
        std::fs::read_to_string("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device").ok()?;
    let key = format!("{}:{}", num.0, num.1);
    text.lines().find_map(|l| {
        let mut p = l.split_whitespace();
        (p.next() == Some(key.as_str()))
            .then(|| p.next()?.parse().ok())
            .flatten()
    })
}

async fn wait_rule(num: (u64, u64), want: Option<u64>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while root_write_bps(num) != want {
        assert!(
            Instant::now() < deadline,
            "blkio rule for {num:?}: {:?}, want {want:?}",
            root_write_bps(num)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Direct-IO dd by an ordinary child process (left in whatever cgroup the test runs in);
/// bytes per second.
async fn dd_rate(file: &Path, write: bool, mib: u64) -> f64 {
    let f = file.display();
    let cmd = if write {
        Cmd::new("dd").args([
            "if=/dev/zero".to_string(),
            format!("of={f}"),
            "bs=256K".into(),
            format!("count={}", mib * 4),
            "oflag=direct".into(),
            // overwrite in place: no block allocation, so no filesystem metadata IO (which
            // is throttled too, host-wide) mixes into the measurement
            "conv=notrunc".into(),
        ])
    } else {
        Cmd::new("dd").args([
            format!("if={f}"),
            "of=/dev/null".into(),
            "bs=256K".into(),
            format!("count={}", mib * 4),
            "iflag=direct".into(),
        ])
    }
    .timeout(Duration::from_secs(60));
    let start = Instant::now();
    TokioRunner::new().run(&cmd).await.expect("dd");
    (mib * MI) as f64 / start.elapsed().as_secs_f64()
}

fn assert_within(what: &str, rate: f64, limit: u64) {
    let ratio = rate / limit as f64;
    eprintln!(
        "{what}: limit {:.2} MiB/s, measured {:.2} MiB/s ({:.1} %)",
        limit as f64 / MI as f64,
        rate / MI as f64,
        ratio * 100.0
    );
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{what}: {:.2} MiB/s is not within 10 % of {:.2} MiB/s",
        rate / MI as f64,
        limit as f64 / MI as f64
    );
}

async fn patch_qos(server: &Server, volume: &str, qos: Value) {
    let client = hwameistor_cli::Client::new(&server.url, None, Duration::from_secs(10)).unwrap();
    client
        .call(
            reqwest::Method::PATCH,
            &format!("{}/localvolumes/{volume}", hwameistor_http::PREFIX),
            &[],
            Some(&json!({"spec": {"volumeQoS": qos}})),
        )
        .await
        .expect("patch volumeQoS");
}

/// A blkio cgroup below the root that this test process can visit while it spawns a child.
struct ChildCgroup(PathBuf, PathBuf);

impl ChildCgroup {
    fn new() -> Self {
        let dir = PathBuf::from(format!(
            "/sys/fs/cgroup/blkio/hwameistor-t1-child-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // where this process is now (to go back to)
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, ctrl, path) = (p.next(), p.next()?, p.next()?);
                ctrl.split(',')
                    .any(|c| c == "blkio")
                    .then(|| path.trim_start_matches('/').to_string())
            })
            .unwrap_or_default();
        ChildCgroup(dir, Path::new("/sys/fs/cgroup/blkio").join(own))
    }

    /// Run `f` (which spawns the IO process) while this process sits in the child cgroup;
    /// the spawned process inherits it.
    async fn run<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        std::fs::write(self.0.join("cgroup.procs"), std::process::id().to_string()).unwrap();
        let out = f.await;
        self.leave();
        out
    }

    fn leave(&self) {
        let _ = std::fs::write(self.1.join("cgroup.procs"), std::process::id().to_string());
    }
}

impl Drop for ChildCgroup {
    fn drop(&mut self) {
        self.leave();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn volume_qos_throttles_every_process_and_follows_live_changes() {
    if !Path::new("/sys/fs/cgroup/blkio/blkio.throttle.write_bps_device").exists() {
        panic!("this tier-1 test expects cgroup v1 blkio (as on the CI host)");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let _cleanup = ReleaseOnDrop(dir.clone());
    let _log = LogOnPanic(dir.clone());
    // a child blkio cgroup: v1 blk-throttle is flat, so a rule in the root alone would not
    // reach processes in it; the host-wide throttler writes every cgroup
    let child = ChildCgroup::new();
    let server = start_demo(&dir);
    pool_ready(&dir).await;

    let limit = 8 * MI;
    let (code, _, err) = ctl(
        &dir,
        &[
            "volume",
            "create",
            "qos-vol",
            "--size",
            // xfs (no background inode-table init like ext4's, which would eat into the
            // throttled budget) needs 300 MB
            "320Mi",
            "--param",
            "provision-throughput-on-creation=8Mi",
        ],
    )
    .await;
    assert_eq!(code, 0, "create: {err}");
    volume_ready(&dir, "qos-vol").await;
    let dev = replica_device(&dir, "qos-vol").await;
    let num = dev_number(&dev);
    let mnt = dir.join("mnt");
    let m = mnt.to_str().unwrap();
    let (code, out, err) = ctl(&dir, &["volume", "mount", "qos-vol", m, "--fs-type", "xfs"]).await;
    assert_eq!(code, 0, "mount: {out} {err}");
    wait_rule(num, Some(limit)).await;
    // Host-wide means the filesystem's own metadata writes are throttled too; keep timestamp
    // updates (one per dd write) out of the journal so they do not eat into the budget that
    // is measured here.
    TokioRunner::new()
        .run(&Cmd::new("mount").args(["-o", "remount,lazytime", m]))
        .await
        .expect("remount lazytime");

    let file = mnt.join("data");
    // allocate the file's blocks first (this pass also writes filesystem metadata), and
    // flush that metadata before measuring
    dd_rate(&file, true, 24).await;
    TokioRunner::new()
        .run(&Cmd::new("sync"))
        .await
        .expect("sync");
    let w = dd_rate(&file, true, 24).await;
    assert_within("write, limit at creation", w, limit);
    let r = dd_rate(&file, false, 24).await;
    assert_within("read, limit at creation", r, limit);
    let w = child.run(dd_rate(&file, true, 24)).await;
    assert_within("write from a child cgroup, limit at creation", w, limit);

    // live change of spec.volumeQoS
    let limit2 = 4 * MI;
    patch_qos(&server, "qos-vol", json!({"throughput": "4Mi"})).await;
    wait_rule(num, Some(limit2)).await;
    let w = dd_rate(&file, true, 12).await;
    assert_within("write, limit changed live", w, limit2);

    // empty = no limit: the rule is removed and IO runs free
    patch_qos(&server, "qos-vol", json!({"throughput": "", "iops": ""})).await;
    wait_rule(num, None).await;
    let free = dd_rate(&file, true, 24).await;
    eprintln!("limit cleared: {:.1} MiB/s", free / MI as f64);
    assert!(
        free > 3.0 * limit as f64,
        "limit cleared but only {:.1} MiB/s",
        free / MI as f64
    );

    let (code, _, err) = ctl(&dir, &["volume", "unmount", "qos-vol", m]).await;
    assert_eq!(code, 0, "unmount: {err}");
    let (code, _, err) = ctl(&dir, &["volume", "delete", "qos-vol"]).await;
    assert_eq!(code, 0, "delete: {err}");
    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
}

/// What of ours is on the host: mount targets and (device, backing file) of loop devices
/// at or below `dir`.
async fn host_state(dir: &Path) -> (Vec<String>, Vec<(String, String)>) {
    let mounts = block::mounts()
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|t| Path::new(t).starts_with(dir))
        .collect();
    let loops = block::loops_below(dir)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|l| {
            let back = l.back_file.trim_end_matches(" (deleted)").to_string();
            (l.name.display().to_string(), back)
        })
        .collect();
    (mounts, loops)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn sigterm_releases_the_host_and_a_restart_brings_everything_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let mnt = tmp.path().join("mnt");
    let m = mnt.to_str().unwrap().to_string();
    // the user's mounts first, then the data dir (pools, volumes, demo disks)
    let _cleanup = [mnt.clone(), tmp.path().join("blk"), dir.clone()].map(ReleaseOnDrop);
    let _log = LogOnPanic(dir.clone());

    // 1. create, mount, write, unmount; SIGTERM: nothing of ours stays
    let server = start_demo(&dir);
    pool_ready(&dir).await;
    let (code, _, err) = ctl(&dir, &["volume", "create", "keep", "--size", "256Mi"]).await;
    assert_eq!(code, 0, "create: {err}");
    volume_ready(&dir, "keep").await;
    let (code, out, err) = ctl(&dir, &["volume", "mount", "keep", &m]).await;
    assert_eq!(code, 0, "mount: {out} {err}");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(mnt.join("data"), &data).unwrap();
    let (code, _, err) = ctl(&dir, &["volume", "unmount", "keep", &m]).await;
    assert_eq!(code, 0, "unmount: {err}");
    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    let (mounts, loops) = host_state(&dir).await;
    assert!(mounts.is_empty(), "mounts left after SIGTERM: {mounts:?}");
    assert!(
        loops.is_empty(),
        "loop devices left after SIGTERM: {loops:?}"
    );

    eprintln!("step 2: restart");
    // 2. restart with the same data dir: pool reattached, volume Ready, data intact
    let server = start_demo(&dir);
    pool_ready(&dir).await;
    volume_ready(&dir, "keep").await;
    let (code, out, err) = ctl(&dir, &["volume", "mount", "keep", &m]).await;
    assert_eq!(code, 0, "mount after restart: {out} {err}");
    assert_eq!(
        std::fs::read(mnt.join("data")).unwrap(),
        data,
        "data after restart"
    );

    eprintln!("step 3: SIGTERM with volumes in use");
    // 3. SIGTERM while the user still has volumes published (a filesystem and a block
    // volume): exactly those, their pool mounts and demo disks stay, and the log says so
    let (code, _, err) = ctl(&dir, &["volume", "create", "blkkeep", "--size", "64Mi"]).await;
    assert_eq!(code, 0, "create: {err}");
    volume_ready(&dir, "blkkeep").await;
    let blk = tmp.path().join("blk");
    let b = blk.to_str().unwrap().to_string();
    let (code, out, err) = ctl(&dir, &["volume", "mount", "blkkeep", &b, "--block"]).await;
    assert_eq!(code, 0, "mount --block: {out} {err}");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&blk).unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        f.write_all(&data[..65536]).unwrap();
        f.sync_all().unwrap();
    }
    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(
        log.contains("left on the host because volumes are still in use")
            && log.contains("/keep:")
            && log.contains("/blkkeep:"),
        "log does not name the volumes left behind:\n{log}"
    );
    let (mounts, loops) = host_state(&dir).await;
    assert!(
        !mounts.is_empty() && mounts.iter().all(|m| m.contains("/pools/")),
        "only pool mounts expected under the data dir: {mounts:?}"
    );
    let files: Vec<&str> = loops.iter().map(|(_, f)| f.as_str()).collect();
    for want in ["/volumes/keep.img", "/volumes/blkkeep.img"] {
        assert!(files.iter().any(|f| f.ends_with(want)), "{want}: {files:?}");
    }
    assert!(
        files.iter().all(|f| f.ends_with("/volumes/keep.img")
            || f.ends_with("/volumes/blkkeep.img")
            || f.contains("/disks/disk-")),
        "unexpected loop devices: {files:?}"
    );
    assert_eq!(
        std::fs::read(mnt.join("data")).unwrap(),
        data,
        "the user's mount still works"
    );
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&blk).unwrap();
        f.seek(SeekFrom::Start(4096)).unwrap();
        let mut back = vec![0u8; 65536];
        f.read_exact(&mut back).unwrap();
        assert!(back == data[..65536], "the user's block volume still works");
    }

    eprintln!("step 4: restart after the user unmounted");
    // 4. the user unmounts by hand (the server is down); a start + stop then releases the
    // rest
    for target in [&m, &b] {
        TokioRunner::new()
            .run(&Cmd::new("umount").arg(target.as_str()))
            .await
            .unwrap_or_else(|e| panic!("umount {target}: {e}"));
    }
    let server = start_demo(&dir);
    pool_ready(&dir).await;
    volume_ready(&dir, "keep").await;
    volume_ready(&dir, "blkkeep").await;
    for v in ["keep", "blkkeep"] {
        let (code, _, err) = ctl(&dir, &["volume", "delete", v]).await;
        assert_eq!(code, 0, "delete {v}: {err}");
    }
    wait_for(
        &dir,
        &["volume", "list", "-o", "json"],
        "volume deleted",
        |o| {
            serde_json::from_str::<Value>(o)
                .is_ok_and(|v| v["items"].as_array().is_some_and(|i| i.is_empty()))
        },
    )
    .await;
    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    let (mounts, loops) = host_state(&dir).await;
    assert!(
        mounts.is_empty(),
        "mounts left after the last SIGTERM: {mounts:?}"
    );
    assert!(
        loops.is_empty(),
        "loop devices left after the last SIGTERM: {loops:?}"
    );
}
