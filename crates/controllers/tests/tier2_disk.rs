//! Tier 2 (inside the qemu guest): the emulated SCSI HDD (rotation 7200), SSD (rotation 1),
//! NVMe and virtio disks are typed and named correctly with udev present; disks carrying
//! ext4, a GPT, an LVM label or a LUKS header are never Available while the blank one is;
//! names survive the signature writes; a SCSI disk deleted from the kernel goes Inactive
//! within 2 s and comes back under the same name after a host rescan.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hwameistor_api::LocalDisk;
use hwameistor_controllers::disk::{self, DiskClusterConfig, DiskNodeConfig};
use hwameistor_core::disk::{Hazard, IdentitySource};
use hwameistor_core::types::{DiskClaimState, DiskType, LocalDiskState};
use hwameistor_disk::{DiscoveredDisk, Discoverer, DiscoveryConfig, DiscoverySource};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_store::{EmbeddedStore, Store};
use hwameistor_testkit::tier2::guest;
use hwameistor_testkit::wait_timed as wait;
use hwameistor_vmtests::DiskKind;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(180);

async fn run(argv: &[&str]) -> Result<()> {
    let c = Cmd::new(argv[0])
        .args(argv[1..].iter().copied())
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .timeout(TIMEOUT);
    TokioRunner.run(&c).await.with_context(|| c.display())?;
    Ok(())
}

fn by_serial<'a>(found: &'a [DiscoveredDisk], serial: &str) -> Result<&'a DiscoveredDisk> {
    found
        .iter()
        .find(|d| d.device.serial.as_deref() == Some(serial))
        .with_context(|| format!("no discovered disk with serial {serial}"))
}

async fn ld_by_serial(store: &Store, serial: &str) -> Option<LocalDisk> {
    disk::list_disks(store, None)
        .await
        .ok()?
        .into_iter()
        .find(|d| {
            d.spec
                .disk_attributes
                .as_ref()
                .is_some_and(|a| a.serial_number == serial)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn emulated_disks_are_typed_named_and_protected() -> Result<()> {
    let guest = guest();
    let dev = |k: DiskKind| -> Result<String> {
        guest
            .disks
            .iter()
            .find(|d| d.kind == k)
            .map(|d| d.dev.display().to_string())
            .with_context(|| format!("{k:?} missing from the guest's disk set"))
    };
    let node = std::env::var("VM_HOSTNAME").unwrap_or_else(|_| "hwvm".into());
    let discoverer = Discoverer::new(
        DiscoveryConfig {
            node_name: node.clone(),
            roots: Default::default(),
            include_loop: false,
            loop_backing_dir: None,
        },
        TokioRunner::shared(),
    );
    run(&["udevadm", "settle"]).await?;

    // 1. blank disks: type, transport, serial, WWN, links, no hazards
    let found = discoverer.scan().await?;
    let expect = [
        (DiskKind::Hdd, DiskType::HDD, "scsi"),
        (DiskKind::Ssd, DiskType::SSD, "scsi"),
        (DiskKind::Nvme, DiskType::NVMe, "nvme"),
        (DiskKind::Virtio, DiskType::HDD, "virtio"),
        (DiskKind::Virtio2, DiskType::HDD, "virtio"),
    ];
    let mut names = BTreeMap::new();
    for (kind, t, bus) in expect {
        let d = by_serial(&found, kind.serial())?;
        ensure!(
            d.disk_type == t,
            "{kind:?}: type {} (expected {t})",
            d.disk_type
        );
        ensure!(
            d.device.bus.as_deref() == Some(bus),
            "{kind:?}: bus {:?}",
            d.device.bus
        );
        ensure!(
            d.device.dev_path == dev(kind)?,
            "{kind:?}: {} vs {}",
            d.device.dev_path,
            dev(kind)?
        );
        ensure!(
            d.hazards.is_empty(),
            "{kind:?}: blank disk has hazards {:?}",
            d.hazards
        );
        ensure!(
            d.identity.source == IdentitySource::SerialWwn,
            "{kind:?}: {:?}",
            d.identity.source
        );
        ensure!(
            d.device
                .devlinks
                .iter()
                .any(|l| l.starts_with("/dev/disk/by-")),
            "{kind:?}: no udev links"
        );
        if let Some(w) = kind.wwn() {
            ensure!(
                d.device.wwn.as_deref() == Some(format!("0x{w:016x}").as_str()),
                "{kind:?}: wwn {:?}",
                d.device.wwn
            );
        }
        println!(
            "{kind:?}: {} {} {} {}",
            d.device.dev_path,
            d.disk_type,
            d.identity.name,
            d.device.devlinks.join(",")
        );
        names.insert(kind.serial(), d.identity.name.clone());
    }

    // 2. signatures on four disks; the NVMe stays blank
    run(&["mkfs.ext4", "-F", "-q", &dev(DiskKind::Virtio)?]).await?;
    run(&["sgdisk", "-o", &dev(DiskKind::Virtio2)?]).await?;
    run(&["pvcreate", "-ff", "-y", &dev(DiskKind::Hdd)?]).await?;
    let luks = Cmd::new("cryptsetup")
        .args([
            "luksFormat",
            "--batch-mode",
            "--type",
            "luks2",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
        ])
        .args(["--key-file", "-", &dev(DiskKind::Ssd)?])
        .stdin(b"tier2-secret".to_vec())
        .timeout(TIMEOUT);
    TokioRunner
        .run(&luks)
        .await
        .context("cryptsetup luksFormat")?;
    run(&["udevadm", "settle"]).await?;
    // the node loop drops its probe cache on the `change` uevents these writes cause
    discoverer.invalidate(None);
    let found = discoverer.scan().await?;
    for (kind, hazard) in [
        (
            DiskKind::Virtio,
            Hazard::Filesystem {
                fs_type: "ext4".into(),
            },
        ),
        (
            DiskKind::Virtio2,
            Hazard::PartitionTable { kind: "gpt".into() },
        ),
        (DiskKind::Hdd, Hazard::LvmLabel),
        (DiskKind::Ssd, Hazard::LuksHeader),
    ] {
        let d = by_serial(&found, kind.serial())?;
        ensure!(
            d.hazards.contains(&hazard),
            "{kind:?}: hazards {:?}, expected {hazard:?}",
            d.hazards
        );
        ensure!(
            names[kind.serial()] == d.identity.name,
            "{kind:?}: name changed after writing a signature"
        );
    }

    // 3. the disk manager on these disks: only the blank NVMe becomes Available
    let store = Store::from(EmbeddedStore::in_memory()?);
    let mut cfg = DiskNodeConfig::new(node.clone());
    cfg.smart_interval = None;
    let shutdown = CancellationToken::new();
    let node_task = tokio::spawn(disk::run_node(
        cfg,
        store.clone(),
        TokioRunner::shared(),
        shutdown.clone(),
    ));
    let cluster = tokio::spawn(disk::run_cluster(
        DiskClusterConfig::default(),
        store.clone(),
        shutdown.clone(),
    ));
    for kind in DiskKind::ALL {
        let s = store.clone();
        let (ld, _) = wait(&format!("{kind:?} phase"), Duration::from_secs(20), || {
            let s = s.clone();
            async move {
                ld_by_serial(&s, kind.serial()).await.filter(|l| {
                    l.status.as_ref().is_some_and(|st| {
                        st.claim_state != DiskClaimState::Unknown
                            && st.claim_state != DiskClaimState::Pending
                    })
                })
            }
        })
        .await?;
        let phase = ld.status.as_ref().unwrap().claim_state;
        ensure!(
            ld.metadata.name.as_deref() == Some(names[kind.serial()].as_str()),
            "{kind:?}: object name"
        );
        if kind == DiskKind::Nvme {
            ensure!(
                phase == DiskClaimState::Available && !ld.spec.reserved,
                "blank NVMe: {phase:?}"
            );
        } else {
            ensure!(
                phase == DiskClaimState::Bound && ld.spec.reserved,
                "{kind:?}: {phase:?} reserved={}",
                ld.spec.reserved
            );
        }
    }

    // 4. hot-unplug the HDD from the kernel, then rescan its SCSI host
    let hdd = dev(DiskKind::Hdd)?;
    let kname = hdd.trim_start_matches("/dev/").to_owned();
    let host = std::fs::canonicalize(format!("/sys/block/{kname}/device"))?
        .ancestors()
        .find_map(|p| {
            let n = p.file_name()?.to_string_lossy().into_owned();
            let digits = n.strip_prefix("host")?;
            (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())).then_some(n.clone())
        })
        .context("SCSI host of the HDD")?;
    let t_write = Instant::now();
    std::fs::write(format!("/sys/block/{kname}/device/delete"), "1")?;
    // the write returns once the kernel has removed the disk: measure from there
    let t0 = Instant::now();
    println!(
        "SCSI delete of {kname} took {:?} in the guest kernel",
        t0 - t_write
    );
    let s = store.clone();
    wait("HDD Inactive", Duration::from_secs(10), || {
        let s = s.clone();
        async move {
            ld_by_serial(&s, DiskKind::Hdd.serial())
                .await
                .filter(|l| l.spec.state == Some(LocalDiskState::Inactive))
        }
    })
    .await?;
    let unplug = t0.elapsed();
    println!("HDD removal noticed after {unplug:?}");
    ensure!(
        unplug < Duration::from_secs(2),
        "hot-unplug noticed after {unplug:?}"
    );
    let t0 = Instant::now();
    std::fs::write(format!("/sys/class/scsi_host/{host}/scan"), "- - -")?;
    let s = store.clone();
    let (back, _) = wait("HDD back", Duration::from_secs(20), || {
        let s = s.clone();
        async move {
            ld_by_serial(&s, DiskKind::Hdd.serial())
                .await
                .filter(|l| l.spec.state == Some(LocalDiskState::Active))
        }
    })
    .await?;
    println!(
        "HDD re-plug noticed after {:?} at {}",
        t0.elapsed(),
        back.spec.device_path
    );
    ensure!(
        back.metadata.name.as_deref() == Some(names[DiskKind::Hdd.serial()].as_str()),
        "HDD renamed"
    );
    ensure!(
        back.spec.pre_device_path == hdd || back.spec.device_path == hdd,
        "previous path lost"
    );

    shutdown.cancel();
    node_task.await??;
    cluster.await??;
    Ok(())
}
