//! Tier 2: the emulated disk set is what the harness promises, as the kernel
//! (sysfs), udev (its database and /dev/disk/by-id) and lsblk see it. The disk
//! manager relies on exactly these facts: rotational flag, transport, serial,
//! WWN, size.

mod common;

use anyhow::{Context, Result, ensure};
use common::{guest, run};
use hwameistor_vmtests::{DiskKind, GuestDisk, Transport};
use std::path::Path;

fn sysfs(path: impl AsRef<Path>) -> Result<String> {
    let p = path.as_ref();
    let raw = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
    Ok(String::from_utf8_lossy(&raw)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string())
}

fn kname(d: &GuestDisk) -> String {
    d.dev.file_name().unwrap().to_string_lossy().into_owned()
}

/// The serial as the kernel exposes it for each transport.
fn kernel_serial(d: &GuestDisk) -> Result<String> {
    let n = kname(d);
    match d.kind.transport() {
        Transport::Virtio => sysfs(format!("/sys/block/{n}/serial")),
        Transport::Nvme => sysfs(format!("/sys/block/{n}/device/serial")),
        Transport::Scsi => {
            // VPD page 0x80 (unit serial number): 4-byte header, then the serial.
            let raw = std::fs::read(format!("/sys/block/{n}/device/vpd_pg80"))?;
            ensure!(raw.len() > 4 && raw[1] == 0x80, "bad VPD page 80: {raw:?}");
            let len = usize::from(raw[3]);
            Ok(String::from_utf8_lossy(&raw[4..4 + len]).trim().to_string())
        }
    }
}

fn transport_of(d: &GuestDisk) -> Result<Transport> {
    let n = kname(d);
    let subsystem = std::fs::read_link(format!("/sys/block/{n}/device/subsystem"))?;
    let last = subsystem
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    Ok(match last.as_str() {
        "virtio" => Transport::Virtio,
        "scsi" => Transport::Scsi,
        "nvme" => Transport::Nvme,
        other => anyhow::bail!("unexpected subsystem {other} for {n}"),
    })
}

fn udev_props(d: &GuestDisk) -> Result<std::collections::HashMap<String, String>> {
    let out = run(&[
        "udevadm",
        "info",
        "--query=property",
        &d.dev.to_string_lossy(),
    ])?;
    Ok(out
        .stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
fn sysfs_shows_rotational_transport_serial_and_size() {
    let g = guest();
    let mut devs = std::collections::HashSet::new();
    for d in &g.disks {
        let n = kname(d);
        assert!(devs.insert(n.clone()), "{n} appears twice in the disk set");
        assert_eq!(d.serial, d.kind.serial(), "{:?}", d.kind);
        let rot = sysfs(format!("/sys/block/{n}/queue/rotational")).unwrap();
        assert_eq!(
            rot == "1",
            d.kind.rotational(),
            "{n} ({:?}) rotational={rot}",
            d.kind
        );
        assert_eq!(transport_of(d).unwrap(), d.kind.transport(), "{n}");
        assert_eq!(kernel_serial(d).unwrap(), d.kind.serial(), "{n}");
        let sectors: u64 = sysfs(format!("/sys/block/{n}/size"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(sectors * 512, g.disk_size, "{n} size");
        if let Some(wwn) = d.kind.wwn() {
            let wwid = sysfs(format!("/sys/block/{n}/device/wwid")).unwrap();
            assert_eq!(wwid, format!("naa.{wwn:x}"), "{n} wwid");
        }
        // An empty new disk: no partition table, no signature.
        let probe = common::output(&["blkid", "-p", &d.dev.to_string_lossy()]).unwrap();
        assert_eq!(
            probe.code,
            Some(2),
            "{n} should carry no signature: {}",
            probe.stdout
        );
    }
    let listed: std::collections::HashSet<String> = std::env::var("VM_DISKS")
        .unwrap()
        .split_whitespace()
        .map(|p| p.trim_start_matches("/dev/").to_string())
        .collect();
    assert_eq!(listed, devs, "VM_DISKS lists exactly the standard set");
    assert_eq!(devs.len(), DiskKind::ALL.len());
}

#[test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
fn udev_database_and_by_id_links_identify_each_disk() {
    let g = guest();
    for d in &g.disks {
        let props = udev_props(d).unwrap();
        let get = |k: &str| props.get(k).map(String::as_str).unwrap_or("");
        assert_eq!(get("DEVTYPE"), "disk", "{:?}: {props:?}", d.kind);
        match d.kind.transport() {
            Transport::Virtio => assert_eq!(get("ID_SERIAL"), d.kind.serial()),
            Transport::Scsi => {
                assert_eq!(get("ID_BUS"), "scsi");
                assert_eq!(get("ID_SCSI_SERIAL"), d.kind.serial());
                assert_eq!(get("ID_WWN"), format!("0x{:x}", d.kind.wwn().unwrap()));
            }
            Transport::Nvme => {
                assert_eq!(get("ID_SERIAL_SHORT"), d.kind.serial());
                assert_eq!(get("ID_MODEL"), "QEMU NVMe Ctrl");
            }
        }
        let link = d
            .by_id
            .as_ref()
            .unwrap_or_else(|| panic!("{:?} has no by-id link", d.kind));
        assert_eq!(
            std::fs::canonicalize(link).unwrap(),
            d.dev,
            "{}",
            link.display()
        );
    }
}

#[test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
fn lsblk_json_agrees_with_the_disk_set() {
    let g = guest();
    let out = run(&[
        "lsblk",
        "--json",
        "--bytes",
        "--nodeps",
        "-o",
        "PATH,ROTA,SERIAL,WWN,SIZE,TYPE",
    ])
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let devices = v["blockdevices"].as_array().unwrap();
    for d in &g.disks {
        let path = d.dev.to_string_lossy();
        let e = devices
            .iter()
            .find(|e| e["path"] == *path)
            .unwrap_or_else(|| panic!("lsblk does not list {path}: {}", out.stdout));
        assert_eq!(e["rota"], d.kind.rotational(), "{path}");
        assert_eq!(e["serial"], d.kind.serial(), "{path}");
        assert_eq!(e["size"], g.disk_size, "{path}");
        assert_eq!(e["type"], "disk", "{path}");
        if let Some(wwn) = d.kind.wwn() {
            assert_eq!(e["wwn"], format!("0x{wwn:x}"), "{path}");
        }
    }
}

#[test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
fn guest_has_the_kernel_features_tier2_promises() -> Result<()> {
    let g = guest();
    let modules = std::fs::read_to_string("/proc/modules")?;
    for m in [
        "dm_mod",
        "dm_crypt",
        "dm_thin_pool",
        "dm_snapshot",
        "drbd",
        "loop",
    ] {
        ensure!(
            modules
                .lines()
                .any(|l| l.split_whitespace().next() == Some(m))
                || std::path::Path::new(&format!("/sys/module/{m}")).exists(),
            "module {m} not loaded"
        );
    }
    let drbd = std::fs::read_to_string("/proc/drbd")?;
    ensure!(
        drbd.starts_with("version: 8.4"),
        "DRBD 8.4 expected: {drbd}"
    );
    ensure!(
        run(&["dmsetup", "version"])?
            .stdout
            .contains("Driver version")
    );
    ensure!(std::env::var("LVM_SUPPRESS_FD_WARNINGS").as_deref() == Ok("1"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    ensure!(
        host.trim() == g.hostname,
        "hostname {host} != {}",
        g.hostname
    );
    // The host root is shared read-only (9p); /tmp, /etc, /var, /usr are
    // guest-private overlays; the source tree is not writable from the guest.
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    ensure!(
        mounts.lines().any(|l| l.starts_with("/dev/root / 9p ro,")),
        "root must be 9p read-only: {mounts}"
    );
    std::fs::write("/tmp/tier2-probe", b"x")?;
    // The shared root itself is read-only. (The source tree may sit under one of the
    // writable overlays, e.g. a CI clone in /tmp, so probe the root, not the tree.)
    let root_probe = Path::new("/tier2-probe");
    ensure!(
        std::fs::write(root_probe, b"x").is_err(),
        "{} must not be writable",
        root_probe.display()
    );
    Ok(())
}
