//! Reading block devices from sysfs and the udev database.
//!
//! Paths are relative to configurable roots ([`Roots`]) so tests build fake trees in a
//! temporary directory: `<sys>/class/block/<name>` is a symlink into `<sys>/devices/...`,
//! exactly like the kernel's.
//!
//! Facts taken from sysfs (always there): `dev` (major:minor), `size` (512-byte sectors),
//! `queue/rotational`, `removable`, `ro`, `uevent` (DEVTYPE), `loop/backing_file`, `dm/uuid`,
//! `md/level`, partitions (subdirectories with a `partition` file), `holders/`, and the
//! identity attributes: `serial` (virtio), `device/serial` (NVMe controller), `device/vpd_pg80`
//! (SCSI unit serial page), `device/wwid` or `wwid` (SCSI/NVMe), `device/vendor`,
//! `device/model`. The transport is derived from the resolved sysfs path (`/nvme/`, `/usb`,
//! `/ata`, `/virtio` without a SCSI host, `/host*/target*`).
//!
//! The udev database (`/run/udev/data/b<major>:<minor>`, lines `E:KEY=VALUE` and `S:link`)
//! adds DEVLINKS (by-id, by-path), `ID_BUS`, `ID_TYPE`, and fills serial/WWN/vendor/model
//! where sysfs lacks them. Sysfs wins where both have a value, so a disk is named the same
//! whether or not udevd runs on the node.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hwameistor_core::disk::{BlockDevice, PartitionFacts};

use crate::{Error, Result};

/// Where to read the host's facts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// sysfs mount, `/sys`.
    pub sys: PathBuf,
    /// udev database directory, `/run/udev/data` (may not exist).
    pub udev_data: PathBuf,
    /// procfs, `/proc` (mountinfo, swaps).
    pub proc: PathBuf,
    /// Whose mount table counts: `self` (this process, the default) or `1` for the host's
    /// when the node agent runs in a container with `hostPID` (reads `<proc>/<pid>/mountinfo`).
    pub mount_pid: String,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            sys: "/sys".into(),
            udev_data: "/run/udev/data".into(),
            proc: "/proc".into(),
            mount_pid: "self".into(),
        }
    }
}

fn read_trim(p: &Path) -> Option<String> {
    fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn class_dir(roots: &Roots, name: &str) -> PathBuf {
    roots.sys.join("class/block").join(name)
}

/// Names of all block devices (`/sys/class/block/*`) that are whole disks, sorted.
pub fn list_disks(roots: &Roots) -> Result<Vec<String>> {
    list_disks_except(roots, &|_| false)
}

/// [`list_disks`] without the devices `skip` names. `skip` is asked first, so a skipped
/// device costs no further sysfs read (a host with hundreds of loop devices stays cheap).
pub fn list_disks_except(roots: &Roots, skip: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
    let dir = roots.sys.join("class/block");
    let rd = fs::read_dir(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if skip(&name) {
            continue;
        }
        if !dir.join(&name).join("partition").exists() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// True for a whole loop device's kernel name (`loop7`; not `loop7p1`, not `loop-control`).
pub fn is_loop_name(name: &str) -> bool {
    name.strip_prefix("loop")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The backing file of loop device `name` as sysfs shows it, if it is attached.
pub fn loop_backing_file(roots: &Roots, name: &str) -> Option<String> {
    read_trim(&class_dir(roots, name).join("loop/backing_file"))
}

/// Parse a `major:minor` string.
pub fn parse_dev(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Properties and links of one udev database entry (or `udevadm info` output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdevEntry {
    pub properties: BTreeMap<String, String>,
    /// Absolute, sorted device links.
    pub devlinks: Vec<String>,
}

/// Parse a udev database file (`E:KEY=VALUE`, `S:disk/by-id/...`) or the output of
/// `udevadm info --query=all` (`E: KEY=VALUE`, `S: disk/by-id/...`).
pub fn parse_udev_entry(text: &str) -> UdevEntry {
    let mut e = UdevEntry::default();
    for line in text.lines() {
        let Some((tag, rest)) = line.split_once(':') else {
            continue;
        };
        let rest = rest.trim_start();
        match tag {
            "E" => {
                if let Some((k, v)) = rest.split_once('=') {
                    if k == "DEVLINKS" {
                        e.devlinks.extend(v.split_whitespace().map(str::to_owned));
                    }
                    e.properties.insert(k.to_owned(), v.to_owned());
                }
            }
            "S" => e.devlinks.push(format!("/dev/{rest}")),
            _ => {}
        }
    }
    e.devlinks.sort();
    e.devlinks.dedup();
    e
}

/// Read the udev database entry of a block device, if the database exists.
pub fn read_udev(roots: &Roots, major: u32, minor: u32) -> Option<UdevEntry> {
    let p = roots.udev_data.join(format!("b{major}:{minor}"));
    fs::read_to_string(p).ok().map(|t| parse_udev_entry(&t))
}

/// Normalise a WWN to udev's spelling; drop identifiers synthesised from vendor/model/serial
/// (`t10.`, `nvme.`) which are not world-wide names.
pub fn normalize_wwn(s: &str) -> Option<String> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("naa.") {
        return Some(format!("0x{}", rest.to_ascii_lowercase()));
    }
    if s.starts_with("eui.") || s.starts_with("0x") {
        return Some(s.to_ascii_lowercase());
    }
    None
}

/// The serial number in a SCSI VPD page 0x80 (4-byte header, then ASCII).
pub fn parse_vpd_pg80(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 4 || bytes[1] != 0x80 {
        return None;
    }
    let len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
    let body = bytes.get(4..4 + len.min(bytes.len() - 4))?;
    let s: String = String::from_utf8_lossy(body)
        .trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_owned();
    (!s.is_empty()).then_some(s)
}

fn bus_from_path(p: &str) -> Option<String> {
    let bus = if p.contains("/nvme/") {
        "nvme"
    } else if p.contains("/usb") {
        "usb"
    } else if p.contains("/ata") {
        "ata"
    } else if p.contains("/host") && p.contains("/target") {
        "scsi"
    } else if p.contains("/virtio") {
        "virtio"
    } else {
        return None;
    };
    Some(bus.to_owned())
}

fn sys_path_of(roots: &Roots, name: &str) -> Result<(PathBuf, String)> {
    let link = class_dir(roots, name);
    let real = fs::canonicalize(&link).map_err(|source| Error::Io {
        path: link.clone(),
        source,
    })?;
    let sys_real = fs::canonicalize(&roots.sys).unwrap_or_else(|_| roots.sys.clone());
    let shown = match real.strip_prefix(&sys_real) {
        Ok(rel) => format!("/sys/{}", rel.display()),
        Err(_) => real.display().to_string(),
    };
    Ok((real, shown))
}

fn holders_of(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.join("holders"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A device stacked on a disk, directly or indirectly (partition, dm, md), with its dev number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descendant {
    pub name: String,
    pub major: u32,
    pub minor: u32,
}

/// Partitions of `name` and everything stacked on the disk or its partitions (recursively).
pub fn descendants(roots: &Roots, name: &str) -> Vec<Descendant> {
    let mut out: Vec<Descendant> = Vec::new();
    let mut todo: Vec<PathBuf> = vec![class_dir(roots, name)];
    if let Ok(rd) = fs::read_dir(class_dir(roots, name)) {
        for e in rd.flatten() {
            if e.path().join("partition").exists() {
                todo.push(e.path());
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(dir) = todo.pop() {
        let n = dir
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !seen.insert(n.clone()) {
            continue;
        }
        if n != name
            && let Some((major, minor)) = read_trim(&dir.join("dev")).as_deref().and_then(parse_dev)
        {
            out.push(Descendant {
                name: n.clone(),
                major,
                minor,
            });
        }
        for h in holders_of(&dir) {
            todo.push(class_dir(roots, &h));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Read everything sysfs and the udev database say about the whole disk `name` (no probing
/// of signatures, no mounts: see [`crate::Discoverer`]).
pub fn read_device(roots: &Roots, name: &str) -> Result<BlockDevice> {
    let dir = class_dir(roots, name);
    let (_real, sys_path) = sys_path_of(roots, name)?;
    let dev = read_trim(&dir.join("dev")).ok_or_else(|| Error::Parse {
        what: "sysfs dev".into(),
        detail: format!("{} has no dev attribute", dir.display()),
    })?;
    let (major, minor) = parse_dev(&dev).ok_or_else(|| Error::Parse {
        what: "sysfs dev".into(),
        detail: format!("{dev:?} is not major:minor"),
    })?;
    let uevent = fs::read_to_string(dir.join("uevent")).unwrap_or_default();
    let devtype = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVTYPE="))
        .unwrap_or(if dir.join("partition").exists() {
            "partition"
        } else {
            "disk"
        })
        .to_owned();
    let sectors: u64 = read_trim(&dir.join("size"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let device = dir.join("device");
    let mut d = BlockDevice {
        kernel_name: name.to_owned(),
        dev_path: format!("/dev/{name}"),
        major,
        minor,
        sys_path: sys_path.clone(),
        devtype,
        size_bytes: sectors * 512,
        rotational: read_trim(&dir.join("queue/rotational")).map(|s| s == "1"),
        removable: read_trim(&dir.join("removable")).as_deref() == Some("1"),
        read_only: read_trim(&dir.join("ro")).as_deref() == Some("1"),
        bus: bus_from_path(&sys_path),
        vendor: read_trim(&device.join("vendor")),
        model: read_trim(&device.join("model")),
        serial: read_trim(&dir.join("serial"))
            .or_else(|| read_trim(&device.join("serial")))
            .or_else(|| {
                fs::read(device.join("vpd_pg80"))
                    .ok()
                    .and_then(|b| parse_vpd_pg80(&b))
            }),
        wwn: read_trim(&dir.join("wwid"))
            .or_else(|| read_trim(&device.join("wwid")))
            .and_then(|w| normalize_wwn(&w)),
        dm_uuid: read_trim(&dir.join("dm/uuid")),
        md_level: read_trim(&dir.join("md/level")),
        loop_backing_file: read_trim(&dir.join("loop/backing_file")),
        ..Default::default()
    };
    // vendor attributes of a PCI function are ids like 0x1af4, not names
    if d.vendor.as_deref().is_some_and(|v| v.starts_with("0x")) {
        d.vendor = None;
    }
    if let Ok(rd) = fs::read_dir(&dir) {
        let mut parts: Vec<String> = rd
            .flatten()
            .filter(|e| e.path().join("partition").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        parts.sort_by_key(|a| natural_key(a));
        d.partitions = parts
            .into_iter()
            .map(|p| PartitionFacts {
                path: format!("/dev/{p}"),
                ..Default::default()
            })
            .collect();
    }
    d.holders = descendants(roots, name)
        .into_iter()
        .filter(|x| {
            !d.partitions
                .iter()
                .any(|p| p.path == format!("/dev/{}", x.name))
        })
        .map(|x| x.name)
        .collect();
    if let Some(u) = read_udev(roots, major, minor) {
        apply_udev(&mut d, &u);
    }
    Ok(d)
}

fn natural_key(s: &str) -> (String, u64) {
    let digits: String = s
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (
        s[..s.len() - digits.len()].to_owned(),
        digits.parse().unwrap_or(0),
    )
}

/// Merge udev properties into the sysfs facts (sysfs values win).
pub fn apply_udev(d: &mut BlockDevice, u: &UdevEntry) {
    let p = |k: &str| {
        u.properties
            .get(k)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    d.devlinks = u.devlinks.clone();
    if let Some(bus) = p("ID_BUS") {
        // udev says "ata"/"scsi"/"usb"/"nvme"; keep our "nvme"/"virtio" when udev is vaguer
        if d.bus.is_none() || bus == "usb" || bus == "ata" {
            d.bus = Some(bus);
        }
    }
    d.id_type = p("ID_TYPE");
    if d.serial.is_none() {
        d.serial = p("ID_SERIAL_SHORT").or_else(|| p("ID_SERIAL"));
    }
    if d.wwn.is_none() {
        d.wwn = p("ID_WWN_WITH_EXTENSION")
            .or_else(|| p("ID_WWN"))
            .and_then(|w| normalize_wwn(&w));
    }
    if d.vendor.is_none() {
        d.vendor = p("ID_VENDOR");
    }
    if d.model.is_none() {
        d.model = p("ID_MODEL");
    }
    if d.rotation_rate.is_none() {
        d.rotation_rate = p("ID_ATA_ROTATION_RATE_RPM").and_then(|r| r.parse().ok());
    }
}

/// A cheap summary of the block devices present (names, numbers, sizes, backing files,
/// partitions): it changes whenever a disk comes, goes, is resized or re-partitioned.
pub fn fingerprint(roots: &Roots) -> Result<String> {
    fingerprint_except(roots, &|_| false)
}

/// [`fingerprint`] over the disks of [`list_disks_except`].
pub fn fingerprint_except(roots: &Roots, skip: &dyn Fn(&str) -> bool) -> Result<String> {
    let mut out = String::new();
    for name in list_disks_except(roots, skip)? {
        let dir = class_dir(roots, &name);
        out.push_str(&name);
        for f in ["dev", "size", "loop/backing_file"] {
            out.push(' ');
            out.push_str(&read_trim(&dir.join(f)).unwrap_or_default());
        }
        for d in descendants(roots, &name) {
            out.push(' ');
            out.push_str(&d.name);
        }
        out.push('\n');
    }
    Ok(out)
}
