//! hwameistor-vmtests: what a tier-2 test can rely on inside the qemu guest.
//!
//! Tier 2 is the kernel tier: tests that need device-mapper (LVM2, dm-crypt),
//! DRBD or emulated disk hardware, none of which the build host has. The
//! harness in `tests/vm/` (see its README.md) boots a real Debian kernel under
//! qemu for each test binary, shares the host root read-only, attaches a fresh
//! **standard disk set** and runs the binary inside. The guest describes itself
//! to the test through environment variables; this crate turns them into a
//! typed [`Guest`] so tests do not guess device names:
//!
//! | [`DiskKind`] | qemu device | serial | kernel view |
//! | --- | --- | --- | --- |
//! | `Virtio` | `virtio-blk-pci` | `HWVIRTIO0` | `/dev/vdX`, rotational 1, bus virtio |
//! | `Virtio2` | `virtio-blk-pci` | `HWVIRTIO1` | second virtio disk (striping, pool extension) |
//! | `Hdd` | `scsi-hd` on virtio-scsi, `rotation_rate=7200` | `HWHDD0`, wwn `0x5000c50000000001` | `/dev/sdX`, rotational 1 |
//! | `Ssd` | `scsi-hd` on virtio-scsi, `rotation_rate=1` | `HWSSD0`, wwn `0x5000c50000000002` | `/dev/sdX`, rotational 0 |
//! | `Nvme` | `nvme` | `HWNVME0` | `/dev/nvmeXn1`, rotational 0 |
//!
//! Every disk is an empty sparse image of `VM_DISK_SIZE` bytes (1 GiB), new for
//! each guest. In two-guest mode ([`Role::A`]/[`Role::B`]) both guests have
//! the full set and share one private network link.
//!
//! Two more modes of one guest: a target named `tier2_<topic>_reboot` is booted twice on the
//! same disk images, the second time with the disks attached elsewhere ([`Guest::boot`],
//! [`Guest::persist_dir`] kept across both boots); and every single guest has a spare disk
//! ([`SpareDisk`]) it can hot-plug and hot-unplug through the qemu monitor
//! ([`Guest::monitor`]).
//!
//! Use it as a dev-dependency (`hwameistor-vmtests.workspace = true`) and start
//! each tier-2 test with `let guest = Guest::from_env().expect("tier 2 guest");`,
//! which fails loudly outside the guest.

use std::path::PathBuf;

/// Errors reading the guest environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `VM_GUEST` is not `1`: the test runs on the host, not in the tier-2 guest.
    #[error(
        "not inside the tier-2 guest (VM_GUEST={found:?}); run via tests/vm/cargo-runner.sh or tests/vm/run-tier2.sh"
    )]
    NotInGuest {
        /// What `VM_GUEST` held, if anything.
        found: Option<String>,
    },
    /// A variable the harness always sets is missing.
    #[error("guest environment variable {name} is not set")]
    Missing {
        /// Variable name.
        name: String,
    },
    /// A variable holds something the harness never writes.
    #[error("guest environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// Variable name.
        name: String,
        /// Its value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A request over the monitor channel failed (see [`Guest::monitor`]).
    #[error("qemu monitor command {command:?}: {reason}")]
    Monitor {
        /// The HMP command line.
        command: String,
        /// What went wrong (no channel, timeout, qemu's error text, I/O).
        reason: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `1` inside the guest.
pub const ENV_GUEST: &str = "VM_GUEST";
/// `single`, `a` or `b`.
pub const ENV_ROLE: &str = "VM_ROLE";
/// Kernel hostname of this guest (`hwvm`, `hwvm-a`, `hwvm-b`).
pub const ENV_HOSTNAME: &str = "VM_HOSTNAME";
/// Hostname of the other guest (pair mode only).
pub const ENV_PEER_HOSTNAME: &str = "VM_PEER_HOSTNAME";
/// This guest's IPv4 address on the private link, /24 (pair mode only).
pub const ENV_IP: &str = "VM_IP";
/// The other guest's IPv4 address (pair mode only).
pub const ENV_PEER_IP: &str = "VM_PEER_IP";
/// Network interface carrying `VM_IP` (pair mode only).
pub const ENV_NIC: &str = "VM_NIC";
/// Size in bytes of every disk of the standard set.
pub const ENV_DISK_SIZE: &str = "VM_DISK_SIZE";
/// Space-separated kernel device paths of the whole standard set.
pub const ENV_DISKS: &str = "VM_DISKS";
/// Reboot mode only: `1` or `2`, which boot of the same disk images this is.
pub const ENV_BOOT: &str = "VM_BOOT";
/// Reboot mode only: a read-write host directory kept across both boots.
pub const ENV_PERSIST_DIR: &str = "VM_PERSIST_DIR";
/// Single-guest and reboot modes: the request directory of the monitor channel.
pub const ENV_MONITOR_DIR: &str = "VM_MONITOR_DIR";
/// qemu drive id of the spare disk (`dspare`), hot-pluggable with `device_add`.
pub const ENV_SPARE_DRIVE: &str = "VM_SPARE_DRIVE";
/// Serial to give the spare disk (`HWSPARE0`).
pub const ENV_SPARE_SERIAL: &str = "VM_SPARE_SERIAL";
/// WWN to give the spare disk (`0x5000c50000000003`).
pub const ENV_SPARE_WWN: &str = "VM_SPARE_WWN";

/// Interconnect of an emulated disk, as the guest kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// virtio-blk (`/sys/bus/virtio`).
    Virtio,
    /// SCSI (here: virtio-scsi host adapter, `/sys/bus/scsi`).
    Scsi,
    /// NVMe (`/sys/class/nvme`).
    Nvme,
}

/// One disk of the standard disk set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskKind {
    /// First virtio-blk disk.
    Virtio,
    /// Second virtio-blk disk.
    Virtio2,
    /// Spinning SCSI disk (7200 rpm).
    Hdd,
    /// Solid-state SCSI disk.
    Ssd,
    /// NVMe namespace.
    Nvme,
}

impl DiskKind {
    /// The whole standard set, in a fixed order.
    pub const ALL: [DiskKind; 5] = [
        DiskKind::Virtio,
        DiskKind::Virtio2,
        DiskKind::Hdd,
        DiskKind::Ssd,
        DiskKind::Nvme,
    ];

    /// Key in the environment: `VM_DISK_<KEY>`, `VM_DISK_<KEY>_SERIAL`, ...
    pub fn env_key(self) -> &'static str {
        match self {
            DiskKind::Virtio => "VIRTIO",
            DiskKind::Virtio2 => "VIRTIO2",
            DiskKind::Hdd => "HDD",
            DiskKind::Ssd => "SSD",
            DiskKind::Nvme => "NVME",
        }
    }

    /// Serial number the harness gives this disk.
    pub fn serial(self) -> &'static str {
        match self {
            DiskKind::Virtio => "HWVIRTIO0",
            DiskKind::Virtio2 => "HWVIRTIO1",
            DiskKind::Hdd => "HWHDD0",
            DiskKind::Ssd => "HWSSD0",
            DiskKind::Nvme => "HWNVME0",
        }
    }

    /// World wide name (SCSI disks only), as qemu's `wwn=` property.
    pub fn wwn(self) -> Option<u64> {
        match self {
            DiskKind::Hdd => Some(0x5000_c500_0000_0001),
            DiskKind::Ssd => Some(0x5000_c500_0000_0002),
            _ => None,
        }
    }

    /// What `/sys/block/<dev>/queue/rotational` reads in the guest.
    /// virtio-blk does not report a medium type, so the kernel keeps its
    /// default (rotational).
    pub fn rotational(self) -> bool {
        matches!(self, DiskKind::Virtio | DiskKind::Virtio2 | DiskKind::Hdd)
    }

    /// How the disk is attached.
    pub fn transport(self) -> Transport {
        match self {
            DiskKind::Virtio | DiskKind::Virtio2 => Transport::Virtio,
            DiskKind::Hdd | DiskKind::Ssd => Transport::Scsi,
            DiskKind::Nvme => Transport::Nvme,
        }
    }
}

/// A disk of the standard set as found in this guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestDisk {
    /// Which disk.
    pub kind: DiskKind,
    /// Kernel device node, e.g. `/dev/sdb` (found by serial, not by order).
    pub dev: PathBuf,
    /// Stable udev link (`/dev/disk/by-id/virtio-…`, `wwn-…`, `nvme-QEMU…`).
    pub by_id: Option<PathBuf>,
    /// Serial number.
    pub serial: String,
}

/// Which guest this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The only guest (`cargo-runner.sh`).
    Single,
    /// First guest of a pair (`run-pair.sh`); listens on the link socket.
    A,
    /// Second guest of a pair.
    B,
}

/// Network of a two-guest run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairNet {
    /// Other guest's hostname.
    pub peer_hostname: String,
    /// This guest's IPv4 address.
    pub ip: std::net::Ipv4Addr,
    /// The other guest's IPv4 address.
    pub peer_ip: std::net::Ipv4Addr,
    /// Interface carrying `ip`.
    pub nic: String,
}

/// The tier-2 guest as its environment describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// Single guest or one of a pair.
    pub role: Role,
    /// Kernel hostname.
    pub hostname: String,
    /// Size in bytes of each disk of the standard set.
    pub disk_size: u64,
    /// The standard disk set, in [`DiskKind::ALL`] order.
    pub disks: Vec<GuestDisk>,
    /// Pair network (roles A and B only).
    pub pair: Option<PairNet>,
    /// Reboot mode: which boot (1 or 2) of the same disk images this is.
    pub boot: Option<u32>,
    /// Reboot mode: read-write directory kept across both boots.
    pub persist_dir: Option<PathBuf>,
    /// Request directory of the monitor channel (single guest and reboot mode).
    pub monitor_dir: Option<PathBuf>,
    /// The spare disk for hot-plug (single guest and reboot mode).
    pub spare: Option<SpareDisk>,
}

/// The spare disk: an image the runner attaches to qemu as a drive without a device, so
/// the guest sees it only after [`SpareDisk::device_add`] goes through [`Guest::monitor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpareDisk {
    /// qemu drive id (`dspare`).
    pub drive: String,
    /// Serial the device is given (`HWSPARE0`).
    pub serial: String,
    /// WWN the device is given (`0x5000c50000000003`).
    pub wwn: String,
}

impl SpareDisk {
    /// qemu device id used by [`SpareDisk::device_add`] / [`SpareDisk::device_del`].
    pub const DEVICE_ID: &'static str = "spare0";

    /// HMP line hot-plugging the spare as an SSD (`rotation_rate=1`) on SCSI target 2 of
    /// controller `scsi0`. A drive is deleted with its device: one add/del cycle per boot.
    pub fn device_add(&self) -> String {
        format!(
            "device_add scsi-hd,bus=scsi0.0,scsi-id=2,lun=0,drive={},id={},serial={},wwn={},rotation_rate=1",
            self.drive,
            Self::DEVICE_ID,
            self.serial,
            self.wwn
        )
    }

    /// HMP line hot-unplugging the spare.
    pub fn device_del(&self) -> String {
        format!("device_del {}", Self::DEVICE_ID)
    }
}

impl Guest {
    /// Reads the process environment; fails unless `VM_GUEST=1`.
    pub fn from_env() -> Result<Guest> {
        Guest::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the guest description from any variable lookup (tests feed a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Guest> {
        let guest = lookup(ENV_GUEST);
        if guest.as_deref() != Some("1") {
            return Err(Error::NotInGuest { found: guest });
        }
        let need = |name: &str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| Error::Missing { name: name.into() })
        };
        let invalid = |name: &str, value: String, reason| Error::Invalid {
            name: name.into(),
            value,
            reason,
        };
        let role = match need(ENV_ROLE)?.as_str() {
            "single" => Role::Single,
            "a" => Role::A,
            "b" => Role::B,
            other => {
                return Err(invalid(ENV_ROLE, other.into(), "expected single, a or b"));
            }
        };
        let hostname = need(ENV_HOSTNAME)?;
        let size = need(ENV_DISK_SIZE)?;
        let disk_size = size
            .parse::<u64>()
            .map_err(|_| invalid(ENV_DISK_SIZE, size.clone(), "expected bytes"))?;
        let mut disks = Vec::with_capacity(DiskKind::ALL.len());
        for kind in DiskKind::ALL {
            let var = format!("VM_DISK_{}", kind.env_key());
            let dev = need(&var)?;
            if !dev.starts_with("/dev/") {
                return Err(invalid(&var, dev, "expected a /dev path"));
            }
            let serial = need(&format!("{var}_SERIAL"))?;
            let by_id = lookup(&format!("{var}_BYID"))
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
            disks.push(GuestDisk {
                kind,
                dev: PathBuf::from(dev),
                by_id,
                serial,
            });
        }
        let pair = match role {
            Role::Single => None,
            Role::A | Role::B => {
                let ip_of = |name: &str| -> Result<std::net::Ipv4Addr> {
                    let v = need(name)?;
                    v.parse()
                        .map_err(|_| invalid(name, v.clone(), "expected an IPv4 address"))
                };
                Some(PairNet {
                    peer_hostname: need(ENV_PEER_HOSTNAME)?,
                    ip: ip_of(ENV_IP)?,
                    peer_ip: ip_of(ENV_PEER_IP)?,
                    nic: need(ENV_NIC)?,
                })
            }
        };
        let boot = match lookup(ENV_BOOT).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => match v.as_str() {
                "1" => Some(1),
                "2" => Some(2),
                _ => return Err(invalid(ENV_BOOT, v, "expected 1 or 2")),
            },
        };
        let path = |name: &str| lookup(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let spare = match (
            lookup(ENV_SPARE_DRIVE).filter(|v| !v.is_empty()),
            lookup(ENV_SPARE_SERIAL).filter(|v| !v.is_empty()),
            lookup(ENV_SPARE_WWN).filter(|v| !v.is_empty()),
        ) {
            (Some(drive), Some(serial), Some(wwn)) => Some(SpareDisk { drive, serial, wwn }),
            _ => None,
        };
        Ok(Guest {
            role,
            hostname,
            disk_size,
            disks,
            pair,
            boot,
            persist_dir: path(ENV_PERSIST_DIR),
            monitor_dir: path(ENV_MONITOR_DIR),
            spare,
        })
    }

    /// The disk of the given kind.
    pub fn disk(&self, kind: DiskKind) -> &GuestDisk {
        self.disks
            .iter()
            .find(|d| d.kind == kind)
            .expect("from_lookup fills every DiskKind")
    }

    /// The pair network; `None` for a single guest.
    pub fn pair(&self) -> Option<&PairNet> {
        self.pair.as_ref()
    }

    /// Runs one HMP command on this guest's qemu through the monitor channel: the request
    /// goes into [`Guest::monitor_dir`] (read-write 9p), the host's `monitor.py` executes it
    /// over QMP and writes the answer back. Only `device_add`, `device_del ID` (answered
    /// once qemu reports the device deleted) and `info ...` are accepted. Returns the
    /// command's output; qemu's error text becomes [`Error::Monitor`].
    pub fn monitor(&self, command: &str, timeout: std::time::Duration) -> Result<String> {
        let fail = |reason: String| Error::Monitor {
            command: command.to_owned(),
            reason,
        };
        let dir = self
            .monitor_dir
            .as_ref()
            .ok_or_else(|| fail(format!("{ENV_MONITOR_DIR} is not set (pair mode?)")))?;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = dir.join(format!("{}-{seq}", std::process::id()));
        let tmp = base.with_extension("tmp");
        let req = base.with_extension("req");
        let out = base.with_extension("out");
        std::fs::write(&tmp, format!("{command}\n"))
            .and_then(|()| std::fs::rename(&tmp, &req))
            .map_err(|e| fail(format!("cannot write {}: {e}", req.display())))?;
        let t0 = std::time::Instant::now();
        let reply = loop {
            match std::fs::read_to_string(&out) {
                Ok(r) => break r,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(fail(format!("cannot read {}: {e}", out.display()))),
            }
            if t0.elapsed() > timeout {
                return Err(fail(format!("no answer from the host within {timeout:?}")));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        let _ = std::fs::remove_file(&out);
        match reply.split_once('\n') {
            Some(("ok", rest)) => Ok(rest.to_owned()),
            _ => Err(fail(reply.trim().to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn single_env() -> HashMap<String, String> {
        let mut m: HashMap<String, String> = [
            ("VM_GUEST", "1"),
            ("VM_ROLE", "single"),
            ("VM_HOSTNAME", "hwvm"),
            ("VM_DISK_SIZE", "1073741824"),
            ("VM_DISK_VIRTIO", "/dev/vda"),
            ("VM_DISK_VIRTIO_BYID", "/dev/disk/by-id/virtio-HWVIRTIO0"),
            ("VM_DISK_VIRTIO2", "/dev/vdb"),
            ("VM_DISK_VIRTIO2_BYID", ""),
            ("VM_DISK_HDD", "/dev/sdb"),
            ("VM_DISK_SSD", "/dev/sda"),
            ("VM_DISK_NVME", "/dev/nvme0n1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for k in DiskKind::ALL {
            m.insert(format!("VM_DISK_{}_SERIAL", k.env_key()), k.serial().into());
        }
        m
    }

    fn parse(m: &HashMap<String, String>) -> Result<Guest> {
        Guest::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn parses_single_guest() {
        let g = parse(&single_env()).unwrap();
        assert_eq!(g.role, Role::Single);
        assert_eq!(g.disk_size, 1 << 30);
        assert_eq!(g.disk(DiskKind::Hdd).dev, PathBuf::from("/dev/sdb"));
        assert_eq!(g.disk(DiskKind::Ssd).serial, "HWSSD0");
        assert_eq!(
            g.disk(DiskKind::Virtio).by_id.as_deref(),
            Some(std::path::Path::new("/dev/disk/by-id/virtio-HWVIRTIO0"))
        );
        assert_eq!(g.disk(DiskKind::Virtio2).by_id, None, "empty means no link");
        assert!(g.pair().is_none());
    }

    #[test]
    fn refuses_outside_guest() {
        let mut m = single_env();
        m.remove("VM_GUEST");
        assert!(matches!(parse(&m), Err(Error::NotInGuest { found: None })));
        m.insert("VM_GUEST".into(), "0".into());
        assert!(matches!(parse(&m), Err(Error::NotInGuest { found: Some(v) }) if v == "0"));
    }

    #[test]
    fn reports_missing_and_invalid_vars() {
        let mut m = single_env();
        m.remove("VM_DISK_NVME");
        assert!(matches!(parse(&m), Err(Error::Missing { name }) if name == "VM_DISK_NVME"));
        let mut m = single_env();
        m.insert("VM_DISK_HDD".into(), "sdb".into());
        assert!(matches!(parse(&m), Err(Error::Invalid { name, .. }) if name == "VM_DISK_HDD"));
        let mut m = single_env();
        m.insert("VM_ROLE".into(), "c".into());
        assert!(matches!(parse(&m), Err(Error::Invalid { name, .. }) if name == "VM_ROLE"));
    }

    #[test]
    fn parses_reboot_and_spare_vars() {
        let g = parse(&single_env()).unwrap();
        assert_eq!(
            (g.boot, g.persist_dir.as_ref(), g.spare.as_ref()),
            (None, None, None)
        );
        let mut m = single_env();
        for (k, v) in [
            ("VM_BOOT", "2"),
            ("VM_PERSIST_DIR", "/run/x/persist"),
            ("VM_MONITOR_DIR", "/run/x/monitor"),
            ("VM_SPARE_DRIVE", "dspare"),
            ("VM_SPARE_SERIAL", "HWSPARE0"),
            ("VM_SPARE_WWN", "0x5000c50000000003"),
        ] {
            m.insert(k.into(), v.into());
        }
        let g = parse(&m).unwrap();
        assert_eq!(g.boot, Some(2));
        assert_eq!(g.persist_dir, Some(PathBuf::from("/run/x/persist")));
        let spare = g.spare.clone().unwrap();
        assert_eq!(
            spare.device_add(),
            "device_add scsi-hd,bus=scsi0.0,scsi-id=2,lun=0,drive=dspare,id=spare0,\
             serial=HWSPARE0,wwn=0x5000c50000000003,rotation_rate=1"
        );
        assert_eq!(spare.device_del(), "device_del spare0");
        m.insert("VM_BOOT".into(), "3".into());
        assert!(matches!(parse(&m), Err(Error::Invalid { name, .. }) if name == "VM_BOOT"));
    }

    #[test]
    fn monitor_round_trip_through_the_request_dir() {
        let dir = std::env::temp_dir().join(format!("vmtests-mon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut m = single_env();
        m.insert("VM_MONITOR_DIR".into(), dir.display().to_string());
        let g = parse(&m).unwrap();
        // a fake host side: answers the first request ok, the second with an error
        let d = dir.clone();
        let host = std::thread::spawn(move || {
            let mut served = Vec::new();
            while served.len() < 2 {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.extension().is_some_and(|x| x == "req") {
                        let line = std::fs::read_to_string(&p).unwrap();
                        let reply = if served.is_empty() {
                            "ok\nfine\n"
                        } else {
                            "error: nope\n"
                        };
                        std::fs::write(p.with_extension("out"), reply).unwrap();
                        std::fs::remove_file(&p).unwrap();
                        served.push(line.trim().to_owned());
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            served
        });
        let t = std::time::Duration::from_secs(10);
        assert_eq!(g.monitor("info block", t).unwrap(), "fine\n");
        let err = g.monitor("device_del spare0", t).unwrap_err();
        assert!(
            matches!(&err, Error::Monitor { reason, .. } if reason == "error: nope"),
            "{err}"
        );
        assert_eq!(host.join().unwrap(), ["info block", "device_del spare0"]);
        std::fs::remove_dir_all(&dir).unwrap();
        let g = parse(&single_env()).unwrap();
        assert!(matches!(
            g.monitor("info block", t),
            Err(Error::Monitor { .. })
        ));
    }

    #[test]
    fn parses_pair_guest() {
        let mut m = single_env();
        for (k, v) in [
            ("VM_ROLE", "b"),
            ("VM_HOSTNAME", "hwvm-b"),
            ("VM_PEER_HOSTNAME", "hwvm-a"),
            ("VM_IP", "10.99.0.2"),
            ("VM_PEER_IP", "10.99.0.1"),
            ("VM_NIC", "enp0s14"),
        ] {
            m.insert(k.into(), v.into());
        }
        let g = parse(&m).unwrap();
        assert_eq!(g.role, Role::B);
        let p = g.pair().unwrap();
        assert_eq!(p.peer_ip, std::net::Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(p.peer_hostname, "hwvm-a");
        m.insert("VM_PEER_IP".into(), "10.99.0".into());
        assert!(matches!(parse(&m), Err(Error::Invalid { name, .. }) if name == "VM_PEER_IP"));
    }

    #[test]
    fn disk_kinds_are_consistent() {
        assert_eq!(DiskKind::Hdd.transport(), Transport::Scsi);
        assert!(DiskKind::Hdd.rotational());
        assert!(!DiskKind::Ssd.rotational());
        assert!(!DiskKind::Nvme.rotational());
        assert_eq!(DiskKind::Nvme.wwn(), None);
        let serials: std::collections::HashSet<_> =
            DiskKind::ALL.iter().map(|k| k.serial()).collect();
        assert_eq!(serials.len(), DiskKind::ALL.len(), "serials are unique");
    }
}
