//! Tier 2, reboot mode (target name ends in `_reboot`: the harness boots the guest twice with
//! the SAME disk images, see tests/vm/README.md):
//!
//! - `localdisk_names_survive_reordered_reboot`: boot 1 runs the disk manager over an
//!   `EmbeddedStore` that is kept in the persistent directory and records each disk's
//!   LocalDisk name, uid and device path; boot 2 attaches the disks in another order and on
//!   other slots / controllers (vda and vdb swap, the HDD moves to a second SCSI controller),
//!   runs the disk manager over the same store and checks that every disk kept its name and
//!   object, that moved disks carry the new path with the old one in `preDevicePath`, and that
//!   no LocalDisk was added.
//! - `hot_plug_and_unplug_are_noticed_quickly` (both boots, in-memory store): the spare disk is
//!   hot-plugged and hot-unplugged through the qemu monitor; the LocalDisk must be Active
//!   within 2 s (goal; the pass mark allows for TCG, see the test) of qemu adding the device and
//!   Inactive as quickly after qemu deletes it.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hwameistor_api::LocalDisk;
use hwameistor_controllers::disk::{self, DiskClusterConfig, DiskNodeConfig};
use hwameistor_core::types::LocalDiskState;
use hwameistor_disk::{Discoverer, DiscoveryConfig, DiscoverySource};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_vmtests::{DiskKind, Guest};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Where boot 1 leaves its records and its store for boot 2.
const RECORDS: &str = "localdisks.tsv";
const STORE_FILE: &str = "ldm.redb";
/// Offset of the per-disk marker block (past any label the disk manager might look at).
const MARKER_OFFSET: u64 = 1 << 20;
const MARKER: &str = "hwameistor-tier2-reboot-marker";

fn guest() -> Result<Guest> {
    assert_eq!(
        std::env::var("VM_GUEST").as_deref(),
        Ok("1"),
        "tier-2 test outside the qemu guest"
    );
    Ok(Guest::from_env()?)
}

async fn settle() -> Result<()> {
    TokioRunner
        .run(
            &Cmd::new("udevadm")
                .arg("settle")
                .timeout(Duration::from_secs(60)),
        )
        .await
        .context("udevadm settle")?;
    Ok(())
}

/// The disk manager (node + cluster side) over `store` until the returned token is cancelled.
struct Manager {
    shutdown: CancellationToken,
    node: JoinHandle<disk::Result<()>>,
    cluster: JoinHandle<disk::Result<()>>,
}

impl Manager {
    fn start(store: &Store, node: &str) -> Manager {
        Manager::start_with(store, node, true)
    }

    /// `cluster: false` runs only the node side (the half that notices disks); the hot-plug
    /// test uses it so the phase machine does not compete for the guest's single vCPU.
    fn start_with(store: &Store, node: &str, cluster: bool) -> Manager {
        let mut cfg = DiskNodeConfig::new(node);
        cfg.smart_interval = None;
        let shutdown = CancellationToken::new();
        Manager {
            node: tokio::spawn(disk::run_node(
                cfg,
                store.clone(),
                TokioRunner::shared(),
                shutdown.clone(),
            )),
            cluster: if cluster {
                tokio::spawn(disk::run_cluster(
                    DiskClusterConfig::default(),
                    store.clone(),
                    shutdown.clone(),
                ))
            } else {
                tokio::spawn(async { Ok(()) })
            },
            shutdown,
        }
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.node.await??;
        self.cluster.await??;
        Ok(())
    }
}

fn serial_of(ld: &LocalDisk) -> Option<&str> {
    ld.spec
        .disk_attributes
        .as_ref()
        .map(|a| a.serial_number.as_str())
}

async fn ld_by_serial(store: &Store, serial: &str) -> Option<LocalDisk> {
    disk::list_disks(store, None)
        .await
        .ok()?
        .into_iter()
        .find(|d| serial_of(d) == Some(serial))
}

/// Polls `f` every 50 ms (a store read per poll; faster polling steals the guest's single
/// vCPU from the disk manager being measured).
async fn wait<F, Fut, T>(what: &str, timeout: Duration, mut f: F) -> Result<(T, Duration)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if let Some(v) = f().await {
            return Ok((v, t0.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

/// Waits until every disk of the standard set has an Active LocalDisk at its current kernel
/// path; returns them by serial.
async fn all_active(store: &Store, guest: &Guest) -> Result<BTreeMap<String, LocalDisk>> {
    let want: Vec<(String, String)> = guest
        .disks
        .iter()
        .map(|d| (d.serial.clone(), d.dev.display().to_string()))
        .collect();
    let (found, took) = wait(
        "every standard disk Active at its current path",
        Duration::from_secs(60),
        || {
            let want = want.clone();
            async move {
                let all = disk::list_disks(store, None).await.ok()?;
                let mut by = BTreeMap::new();
                for (serial, dev) in &want {
                    let ld = all.iter().find(|d| serial_of(d) == Some(serial.as_str()))?;
                    if ld.spec.state != Some(LocalDiskState::Active) || &ld.spec.device_path != dev
                    {
                        return None;
                    }
                    by.insert(serial.clone(), ld.clone());
                }
                Some(by)
            }
        },
    )
    .await?;
    println!("all {} disks Active after {took:?}", found.len());
    Ok(found)
}

fn by_path_link(ld: &LocalDisk) -> Option<&str> {
    ld.spec
        .dev_links
        .iter()
        .find(|l| l.starts_with("/dev/disk/by-path/"))
        .map(String::as_str)
}

/// One line per disk: serial, name, uid, device path, by-path link.
fn record_line(serial: &str, ld: &LocalDisk) -> String {
    format!(
        "{serial}\t{}\t{}\t{}\t{}\n",
        ld.metadata.name.as_deref().unwrap_or(""),
        ld.metadata.uid.as_deref().unwrap_or(""),
        ld.spec.device_path,
        by_path_link(ld).unwrap_or("-"),
    )
}

struct Record {
    name: String,
    uid: String,
    dev: String,
    by_path: String,
}

fn read_records(path: &Path) -> Result<BTreeMap<String, Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        ensure!(f.len() == 5, "bad record line {line:?}");
        out.insert(
            f[0].to_owned(),
            Record {
                name: f[1].to_owned(),
                uid: f[2].to_owned(),
                dev: f[3].to_owned(),
                by_path: f[4].to_owned(),
            },
        );
    }
    Ok(out)
}

fn marker_for(serial: &str) -> Vec<u8> {
    let mut b = format!("{MARKER} {serial}\n").into_bytes();
    b.resize(512, 0);
    b
}

fn write_marker(dev: &Path, serial: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(dev)?;
    f.seek(SeekFrom::Start(MARKER_OFFSET))?;
    f.write_all(&marker_for(serial))?;
    f.sync_all()?;
    Ok(())
}

fn read_marker(dev: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(dev)?;
    f.seek(SeekFrom::Start(MARKER_OFFSET))?;
    let mut b = vec![0u8; 512];
    f.read_exact(&mut b)?;
    Ok(b)
}

fn copy_synced(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copy {} -> {}", from.display(), to.display()))?;
    std::fs::File::open(to)?.sync_all()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn localdisk_names_survive_reordered_reboot() -> Result<()> {
    let guest = guest()?;
    let boot = guest
        .boot
        .context("VM_BOOT unset: this target must run in the harness's reboot mode")?;
    let persist = guest
        .persist_dir
        .clone()
        .context("VM_PERSIST_DIR unset in reboot mode")?;
    settle().await?;
    for d in &guest.disks {
        println!(
            "boot {boot}: {:?} {} at {}",
            d.kind,
            d.serial,
            d.dev.display()
        );
    }
    // The redb file lives on the guest's tmpfs while the manager runs (9p gives no file
    // locks) and is carried across the reboot in the persistent directory.
    let db = PathBuf::from("/tmp").join(STORE_FILE);
    let kept = persist.join(STORE_FILE);

    if boot == 1 {
        // Markers prove, independently of the disk manager, that boot 2 sees the same images.
        for d in &guest.disks {
            write_marker(&d.dev, &d.serial)?;
        }
        let store = Store::from(EmbeddedStore::open(&db)?);
        let t0 = Instant::now();
        let mgr = Manager::start(&store, &guest.hostname);
        let found = all_active(&store, &guest).await?;
        println!("boot 1: disk manager up in {:?}", t0.elapsed());
        mgr.stop().await?;
        let total = disk::list_disks(&store, None).await?.len();
        drop(store);
        let mut names = std::collections::BTreeSet::new();
        let mut records = String::new();
        for (serial, ld) in &found {
            let name = ld
                .metadata
                .name
                .clone()
                .context("LocalDisk without a name")?;
            ensure!(
                names.insert(name.clone()),
                "two disks share the name {name}"
            );
            records.push_str(&record_line(serial, ld));
            print!("boot 1: {}", record_line(serial, ld));
        }
        println!("boot 1: {total} LocalDisk objects in the store");
        copy_synced(&db, &kept)?;
        std::fs::write(persist.join(RECORDS), records)?;
        std::fs::write(persist.join("total"), total.to_string())?;
        std::fs::File::open(persist.join(RECORDS))?.sync_all()?;
        return Ok(());
    }

    // boot 2: same images, other places
    let before = read_records(&persist.join(RECORDS))?;
    let total_before: usize = std::fs::read_to_string(persist.join("total"))?
        .trim()
        .parse()?;
    for d in &guest.disks {
        ensure!(
            read_marker(&d.dev)? == marker_for(&d.serial),
            "{:?}: {} does not carry boot 1's marker for {}",
            d.kind,
            d.dev.display(),
            d.serial
        );
    }
    copy_synced(&kept, &db)?;
    let store = Store::from(EmbeddedStore::open(&db)?);
    ensure!(
        disk::list_disks(&store, None).await?.len() == total_before,
        "the store carried over from boot 1 is not the one boot 1 wrote"
    );
    let t0 = Instant::now();
    let mgr = Manager::start(&store, &guest.hostname);
    let found = all_active(&store, &guest).await?;
    println!("boot 2: disk manager up in {:?}", t0.elapsed());
    // give the manager a moment to create anything it would wrongly create
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = disk::list_disks(&store, None).await?;
    mgr.stop().await?;

    let mut moved = 0;
    for d in &guest.disks {
        let old = before
            .get(&d.serial)
            .with_context(|| format!("boot 1 recorded no {}", d.serial))?;
        let ld = &found[&d.serial];
        let dev = d.dev.display().to_string();
        println!(
            "boot 2: {:?} {}: {} -> {} (preDevicePath {:?}), by-path {} -> {}",
            d.kind,
            old.name,
            old.dev,
            ld.spec.device_path,
            ld.spec.pre_device_path,
            old.by_path,
            by_path_link(ld).unwrap_or("-")
        );
        ensure!(
            ld.metadata.name.as_deref() == Some(old.name.as_str()),
            "{:?}: renamed from {} to {:?}",
            d.kind,
            old.name,
            ld.metadata.name
        );
        ensure!(
            ld.metadata.uid.as_deref().unwrap_or("") == old.uid,
            "{:?}: LocalDisk {} was recreated (uid {} -> {:?})",
            d.kind,
            old.name,
            old.uid,
            ld.metadata.uid
        );
        ensure!(ld.spec.device_path == dev, "{:?}: device path", d.kind);
        if old.dev != dev {
            moved += 1;
            ensure!(
                ld.spec.pre_device_path == old.dev,
                "{:?} moved {} -> {dev} but preDevicePath is {:?}",
                d.kind,
                old.dev,
                ld.spec.pre_device_path
            );
        }
    }
    // vda and vdb swap by construction; the SCSI disks usually move too
    ensure!(moved >= 2, "only {moved} disks changed their device path");
    let hdd = guest.disk(DiskKind::Hdd);
    ensure!(
        by_path_link(&found[&hdd.serial]) != Some(before[&hdd.serial].by_path.as_str()),
        "the HDD moved to another controller but its by-path link did not change"
    );
    ensure!(
        all.len() == total_before,
        "LocalDisk objects: {} after boot 2, {total_before} after boot 1",
        all.len()
    );
    for ld in &all {
        let name = ld.metadata.name.as_deref().unwrap_or("");
        ensure!(
            before.values().any(|r| r.name == name),
            "boot 2 created {name}"
        );
    }
    println!(
        "boot 2: {moved} of {} disks moved, every LocalDisk name kept",
        guest.disks.len()
    );
    Ok(())
}

/// Watches `/sys/block` from a plain thread (independent of the disk manager) and records
/// when the kernel shows, and then stops showing, a SCSI disk with the given WWN: the split
/// of a hot-plug latency into "qemu → kernel" and "kernel → LocalDisk".
struct KernelWatch {
    seen: std::sync::Arc<std::sync::Mutex<(Option<Instant>, Option<Instant>)>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KernelWatch {
    fn start(wwn: &str) -> KernelWatch {
        let naa = format!("naa.{}", wwn.trim_start_matches("0x"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new((None, None)));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                let present = std::fs::read_dir("/sys/block").is_ok_and(|rd| {
                    rd.flatten().any(|e| {
                        std::fs::read_to_string(e.path().join("device/wwid"))
                            .is_ok_and(|w| w.trim() == naa)
                    })
                });
                let mut g = s.lock().unwrap();
                match (present, g.0, g.1) {
                    (true, None, _) => g.0 = Some(Instant::now()),
                    (false, Some(_), None) => g.1 = Some(Instant::now()),
                    _ => {}
                }
                drop(g);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        KernelWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn appeared(&self) -> Option<Instant> {
        self.seen.lock().unwrap().0
    }

    fn vanished(&self) -> Option<Instant> {
        self.seen.lock().unwrap().1
    }
}

impl Drop for KernelWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn since(later: Instant, earlier: Option<Instant>) -> String {
    earlier.map_or("?".into(), |e| {
        format!("{:?}", later.saturating_duration_since(e))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn hot_plug_and_unplug_are_noticed_quickly() -> Result<()> {
    let guest = guest()?;
    let spare = guest.spare.clone().context("no spare disk (pair mode?)")?;
    settle().await?;
    let store = Store::from(EmbeddedStore::in_memory()?);
    let mgr = Manager::start_with(&store, &guest.hostname, false);
    all_active(&store, &guest).await?;
    ensure!(
        ld_by_serial(&store, &spare.serial).await.is_none(),
        "the spare is visible before device_add"
    );

    // hot-plug
    let kernel = KernelWatch::start(&spare.wwn);
    let t_req = Instant::now();
    let g = guest.clone();
    let line = spare.device_add();
    tokio::task::spawn_blocking(move || g.monitor(&line, Duration::from_secs(30))).await??;
    let t_added = Instant::now();
    let s = store.clone();
    let serial = spare.serial.clone();
    let (ld, _) = wait("spare Active", Duration::from_secs(20), || {
        let (s, serial) = (s.clone(), serial.clone());
        async move {
            ld_by_serial(&s, &serial)
                .await
                .filter(|l| l.spec.state == Some(LocalDiskState::Active))
        }
    })
    .await?;
    let t_seen = Instant::now();
    let plug = t_seen - t_added;
    println!(
        "hot-plug: monitor round trip {:?}, LocalDisk {} Active at {} {plug:?} after qemu added the device \
         (kernel showed it after {}, LocalDisk {} after the kernel)",
        t_added - t_req,
        ld.metadata.name.as_deref().unwrap_or("?"),
        ld.spec.device_path,
        kernel.appeared().map_or("?".into(), |k| format!(
            "{:?}",
            k.saturating_duration_since(t_added)
        )),
        since(t_seen, kernel.appeared()),
    );
    let name = ld.metadata.name.clone();
    // what one discovery scan costs here (fresh probe cache = every disk probed, then
    // cached): tells a slow pass apart from a late trigger when the bound is missed
    let discoverer = Discoverer::new(
        DiscoveryConfig {
            node_name: guest.hostname.clone(),
            roots: Default::default(),
            include_loop: false,
            loop_backing_dir: None,
        },
        TokioRunner::shared(),
    );
    let t = Instant::now();
    let n = discoverer.scan().await?.len();
    let cold = t.elapsed();
    let t = Instant::now();
    discoverer.scan().await?;
    println!(
        "one discovery scan of {n} disks: {cold:?} cold, {:?} cached",
        t.elapsed()
    );

    // hot-unplug
    let t_req = Instant::now();
    let g = guest.clone();
    let line = spare.device_del();
    tokio::task::spawn_blocking(move || g.monitor(&line, Duration::from_secs(30))).await??;
    let t_deleted = Instant::now();
    let s = store.clone();
    let serial = spare.serial.clone();
    let (gone, _) = wait("spare Inactive", Duration::from_secs(20), || {
        let (s, serial) = (s.clone(), serial.clone());
        async move {
            ld_by_serial(&s, &serial)
                .await
                .filter(|l| l.spec.state == Some(LocalDiskState::Inactive))
        }
    })
    .await?;
    let t_gone = Instant::now();
    let unplug = t_gone - t_deleted;
    println!(
        "hot-unplug: monitor round trip {:?} (until DEVICE_DELETED), LocalDisk Inactive {unplug:?} after qemu deleted the device \
         (kernel dropped it after {}, LocalDisk {} after the kernel)",
        t_deleted - t_req,
        kernel.vanished().map_or("?".into(), |k| format!(
            "{:?}",
            k.saturating_duration_since(t_deleted)
        )),
        since(t_gone, kernel.vanished()),
    );
    drop(kernel);
    if let Ok(out) = TokioRunner.output(&Cmd::new("dmesg")).await {
        for l in out
            .stdout
            .lines()
            .filter(|l| l.contains(" 0:0:2:0") || l.contains("[sd"))
        {
            println!("dmesg: {l}");
        }
    }
    mgr.stop().await?;
    ensure!(gone.metadata.name == name, "unplugged spare renamed");
    ensure!(
        gone.spec.pre_device_path == ld.spec.device_path,
        "unplugged spare: preDevicePath {:?}, was at {}",
        gone.spec.pre_device_path,
        ld.spec.device_path
    );
    // The goal is 2 s (met on an idle host: 1.53 s plug / 0.70 s unplug under TCG). The
    // guest is software-emulated on 1 vCPU and one cold scan of six disks alone costs ~2.5 s
    // there when the host is busy, so the pass mark is the goal times a TCG allowance,
    // overridable with VM_TEST_HOTPLUG_LIMIT_MS. The measured figures are printed either way.
    let limit = Duration::from_millis(
        std::env::var("VM_TEST_HOTPLUG_LIMIT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6000),
    );
    println!("hot-plug latency: plug {plug:?}, unplug {unplug:?} (goal 2s, pass mark {limit:?})");
    ensure!(
        plug < limit,
        "hot-plug noticed after {plug:?} (limit {limit:?})"
    );
    ensure!(
        unplug < limit,
        "hot-unplug noticed after {unplug:?} (limit {limit:?})"
    );
    Ok(())
}
