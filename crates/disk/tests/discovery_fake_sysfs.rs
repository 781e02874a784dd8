//! Tier 0: discovery over fake sysfs trees, udev databases and procfs files built in a
//! temporary directory, with blkid answered by the recording runner.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hwameistor_core::disk::{Hazard, IdentitySource};
use hwameistor_core::types::DiskType;
use hwameistor_disk::{DiscoveredDisk, Discoverer, DiscoveryConfig, DiscoverySource, Roots};
use hwameistor_exec::{Output, RecordingRunner};

struct FakeHost {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    runner: RecordingRunner,
}

fn write(p: &Path, content: impl AsRef<[u8]>) {
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

impl FakeHost {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        fs::create_dir_all(root.join("sys/class/block")).unwrap();
        fs::create_dir_all(root.join("run/udev/data")).unwrap();
        write(
            &root.join("proc/self/mountinfo"),
            "22 27 0:21 / /proc rw - proc proc rw\n",
        );
        write(
            &root.join("proc/swaps"),
            "Filename Type Size Used Priority\n",
        );
        let runner = RecordingRunner::new();
        // default: blkid finds nothing
        runner.respond_prefix(&["blkid"], Output::failed(2, ""));
        FakeHost {
            _tmp: tmp,
            root,
            runner,
        }
    }

    fn roots(&self) -> Roots {
        Roots {
            sys: self.root.join("sys"),
            udev_data: self.root.join("run/udev/data"),
            proc: self.root.join("proc"),
            mount_pid: "self".into(),
        }
    }

    /// Add a whole disk at `/sys/devices/<parent>/block/<name>`; `device` files go into the
    /// `device/` directory (a real directory here, a symlink on real hosts).
    fn disk(
        &self,
        parent: &str,
        name: &str,
        dev: &str,
        sectors: u64,
        rotational: &str,
        files: &[(&str, &[u8])],
    ) -> PathBuf {
        let dir = self
            .root
            .join("sys/devices")
            .join(parent)
            .join("block")
            .join(name);
        write(&dir.join("dev"), format!("{dev}\n"));
        write(&dir.join("size"), format!("{sectors}\n"));
        write(&dir.join("queue/rotational"), format!("{rotational}\n"));
        write(&dir.join("removable"), "0\n");
        write(&dir.join("ro"), "0\n");
        write(
            &dir.join("uevent"),
            format!(
                "MAJOR={}\nMINOR={}\nDEVNAME={name}\nDEVTYPE=disk\n",
                dev.split(':').next().unwrap(),
                dev.split(':').nth(1).unwrap()
            ),
        );
        fs::create_dir_all(dir.join("holders")).unwrap();
        for (rel, content) in files {
            write(&dir.join(rel), content);
        }
        std::os::unix::fs::symlink(&dir, self.root.join("sys/class/block").join(name)).unwrap();
        dir
    }

    fn partition(&self, disk_dir: &Path, name: &str, dev: &str) -> PathBuf {
        let dir = disk_dir.join(name);
        write(&dir.join("dev"), format!("{dev}\n"));
        write(&dir.join("partition"), "1\n");
        write(&dir.join("size"), "2048\n");
        write(
            &dir.join("uevent"),
            format!("DEVNAME={name}\nDEVTYPE=partition\n"),
        );
        fs::create_dir_all(dir.join("holders")).unwrap();
        std::os::unix::fs::symlink(&dir, self.root.join("sys/class/block").join(name)).unwrap();
        dir
    }

    fn blkid(&self, dev: &str, export: &str) {
        self.runner
            .respond(&["blkid", "-p", "-o", "export", dev], Output::ok(export));
    }

    fn discoverer(&self, include_loop: bool) -> Discoverer {
        let cfg = DiscoveryConfig {
            node_name: "node1".into(),
            roots: self.roots(),
            include_loop,
            loop_backing_dir: None,
        };
        Discoverer::new(cfg, Arc::new(self.runner.clone()))
    }
}

fn vpd80(serial: &str) -> Vec<u8> {
    let mut v = vec![0, 0x80, 0, serial.len() as u8];
    v.extend_from_slice(serial.as_bytes());
    v
}

fn find<'a>(disks: &'a [DiscoveredDisk], name: &str) -> &'a DiscoveredDisk {
    disks
        .iter()
        .find(|d| d.device.kernel_name == name)
        .unwrap_or_else(|| panic!("{name} not discovered"))
}

const SCSI: &str = "pci0000:00/0000:00:05.0/virtio2/host2/target2:0:0/2:0:0:";

fn build_zoo() -> FakeHost {
    let h = FakeHost::new();
    let hdd_vpd = vpd80("hdd-serial-1");
    h.disk(
        &format!("{SCSI}0"),
        "sda",
        "8:0",
        20971520,
        "1",
        &[
            ("device/vendor", b"QEMU    \n"),
            ("device/model", b"QEMU HARDDISK   \n"),
            ("device/vpd_pg80", &hdd_vpd),
            ("device/wwid", b"naa.5000C500A1B2C3D4\n"),
        ],
    );
    let ssd_vpd = vpd80("ssd-serial-1");
    h.disk(
        &format!("{SCSI}1"),
        "sdb",
        "8:16",
        20971520,
        "0",
        &[
            ("device/vendor", b"QEMU    \n"),
            ("device/model", b"QEMU HARDDISK   \n"),
            ("device/vpd_pg80", &ssd_vpd),
        ],
    );
    h.disk(
        "pci0000:00/0000:00:06.0/nvme/nvme0",
        "nvme0n1",
        "259:0",
        20971520,
        "0",
        &[
            ("device/serial", b"nvme-serial-1   \n"),
            ("device/model", b"QEMU NVMe Ctrl\n"),
            ("wwid", b"nvme.1b36-6e766d65-2d73-00000001\n"),
        ],
    );
    h.disk(
        "pci0000:00/0000:00:04.0/virtio1",
        "vdb",
        "254:16",
        20971520,
        "1",
        &[("serial", b"virtio-serial-1\n")],
    );
    let usb = h.disk(
        "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0",
        "sdc",
        "8:32",
        62914560,
        "1",
        &[
            ("device/vendor", b"SanDisk \n"),
            ("device/model", b"Ultra           \n"),
        ],
    );
    write(&usb.join("removable"), "1\n");
    write(
        &h.root.join("run/udev/data/b8:32"),
        "S:disk/by-id/usb-SanDisk_Ultra_4C530001-0:0\nS:disk/by-path/pci-0000:00:14.0-usb-0:1:1.0-scsi-0:0:0:0\n\
         E:ID_BUS=usb\nE:ID_SERIAL=SanDisk_Ultra_4C530001-0:0\nE:ID_SERIAL_SHORT=4C530001\nE:ID_TYPE=disk\nE:ID_VENDOR=SanDisk\n",
    );
    // a disk with a GPT and two partitions, one with ext4
    let parted = h.disk(
        &format!("{SCSI}2"),
        "sdd",
        "8:48",
        20971520,
        "1",
        &[("device/vpd_pg80", &vpd80("parted-1"))],
    );
    h.partition(&parted, "sdd1", "8:49");
    h.partition(&parted, "sdd2", "8:50");
    h.blkid("/dev/sdd", "DEVNAME=/dev/sdd\nPTUUID=1234\nPTTYPE=gpt\n");
    h.blkid("/dev/sdd1", "DEVNAME=/dev/sdd1\nUUID=abcd\nTYPE=ext4\n");
    // LVM label, LUKS header, filesystem without a partition table
    h.disk(
        &format!("{SCSI}3"),
        "sde",
        "8:64",
        20971520,
        "1",
        &[("device/vpd_pg80", &vpd80("lvm-1"))],
    );
    h.blkid("/dev/sde", "DEVNAME=/dev/sde\nUUID=x\nTYPE=LVM2_member\n");
    h.disk(
        &format!("{SCSI}4"),
        "sdf",
        "8:80",
        20971520,
        "1",
        &[("device/vpd_pg80", &vpd80("luks-1"))],
    );
    h.blkid(
        "/dev/sdf",
        "DEVNAME=/dev/sdf\nUUID=y\nTYPE=crypto_LUKS\nVERSION=2\n",
    );
    h.disk(
        &format!("{SCSI}5"),
        "sdg",
        "8:96",
        20971520,
        "1",
        &[("device/vpd_pg80", &vpd80("ext4-1"))],
    );
    h.blkid("/dev/sdg", "DEVNAME=/dev/sdg\nUUID=z\nTYPE=ext4\n");
    // the system disk: vda1 /boot, vda2 LVM PV under dm-0 (root) and dm-1 (swap)
    let vda = h.disk(
        "pci0000:00/0000:00:02.0/virtio0",
        "vda",
        "254:0",
        41943040,
        "1",
        &[],
    );
    h.partition(&vda, "vda1", "254:1");
    let vda2 = h.partition(&vda, "vda2", "254:2");
    let dm0 = h.disk(
        "virtual",
        "dm-0",
        "253:0",
        30000000,
        "0",
        &[("dm/uuid", b"LVM-root\n")],
    );
    let _dm1 = h.disk(
        "virtual",
        "dm-1",
        "253:1",
        2000000,
        "0",
        &[("dm/uuid", b"LVM-swap\n")],
    );
    fs::create_dir_all(vda2.join("holders/dm-0")).unwrap();
    fs::create_dir_all(vda2.join("holders/dm-1")).unwrap();
    let _ = dm0;
    h.blkid("/dev/vda", "DEVNAME=/dev/vda\nPTTYPE=dos\n");
    h.blkid("/dev/vda1", "DEVNAME=/dev/vda1\nTYPE=ext4\n");
    h.blkid("/dev/vda2", "DEVNAME=/dev/vda2\nTYPE=LVM2_member\n");
    write(
        &h.root.join("proc/self/mountinfo"),
        "22 27 0:21 / /proc rw - proc proc rw\n\
         27 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n\
         28 27 254:1 / /boot rw,relatime shared:2 - ext4 /dev/vda1 rw\n",
    );
    write(
        &h.root.join("proc/swaps"),
        "Filename Type Size Used Priority\n/dev/dm-1 partition 1000 0 -2\n",
    );
    // loop devices: attached and detached
    h.disk(
        "virtual",
        "loop0",
        "7:0",
        2097152,
        "1",
        &[("loop/backing_file", b"/var/lib/demo/disks/d0.img\n")],
    );
    h.disk("virtual", "loop1", "7:1", 0, "1", &[]);
    h.disk("virtual", "zram0", "252:0", 1000, "0", &[]);
    h
}

#[tokio::test]
async fn every_kind_of_disk_is_typed_named_and_protected() {
    let h = build_zoo();
    let disks = h.discoverer(false).scan().await.unwrap();
    let mut names: Vec<&str> = disks
        .iter()
        .map(|d| d.device.kernel_name.as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "nvme0n1", "sda", "sdb", "sdc", "sdd", "sde", "sdf", "sdg", "vda", "vdb"
        ],
        "loop/dm/zram are skipped"
    );

    let sda = find(&disks, "sda");
    assert_eq!(sda.disk_type, DiskType::HDD);
    assert_eq!(sda.device.bus.as_deref(), Some("scsi"));
    assert_eq!(sda.device.serial.as_deref(), Some("hdd-serial-1"));
    assert_eq!(sda.device.wwn.as_deref(), Some("0x5000c500a1b2c3d4"));
    assert_eq!(sda.device.vendor.as_deref(), Some("QEMU"));
    assert_eq!(sda.device.size_bytes, 20971520 * 512);
    assert_eq!(sda.identity.source, IdentitySource::SerialWwn);
    assert!(sda.hazards.is_empty() && !sda.partitioned());
    assert_eq!(sda.attributes().rotation_rate, 0);
    assert_eq!(sda.attributes().dev_type, "disk");

    let sdb = find(&disks, "sdb");
    assert_eq!(sdb.disk_type, DiskType::SSD);
    assert_eq!(sdb.attributes().rotation_rate, 1);

    let nvme = find(&disks, "nvme0n1");
    assert_eq!(nvme.disk_type, DiskType::NVMe);
    assert_eq!(nvme.device.bus.as_deref(), Some("nvme"));
    assert_eq!(nvme.device.serial.as_deref(), Some("nvme-serial-1"));
    assert_eq!(
        nvme.device.wwn, None,
        "a synthesised nvme.* id is not a WWN"
    );

    let vdb = find(&disks, "vdb");
    assert_eq!(vdb.device.bus.as_deref(), Some("virtio"));
    assert_eq!(vdb.device.serial.as_deref(), Some("virtio-serial-1"));
    assert_eq!(
        vdb.disk_type,
        DiskType::HDD,
        "virtio-blk reports rotational=1"
    );

    let usb = find(&disks, "sdc");
    assert_eq!(usb.device.bus.as_deref(), Some("usb"));
    assert!(usb.device.removable);
    assert_eq!(
        usb.device.serial.as_deref(),
        Some("4C530001"),
        "udev fills the serial sysfs lacks"
    );
    assert_eq!(usb.device.devlinks.len(), 2);
    assert!(usb.device.devlinks[0].starts_with("/dev/disk/by-id/usb-SanDisk"));

    let parted = find(&disks, "sdd");
    assert!(
        parted
            .hazards
            .contains(&Hazard::PartitionTable { kind: "gpt".into() })
    );
    assert!(parted.hazards.contains(&Hazard::Partitions { count: 2 }));
    assert!(parted.hazards.contains(&Hazard::Filesystem {
        fs_type: "ext4".into()
    }));
    assert!(!parted.system);
    let pi = parted.partition_info();
    assert_eq!(
        pi.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
        ["/dev/sdd", "/dev/sdd1", "/dev/sdd2"]
    );
    assert!(pi[1].has_file_system && !pi[2].has_file_system);

    assert_eq!(find(&disks, "sde").hazards, vec![Hazard::LvmLabel]);
    assert_eq!(find(&disks, "sdf").hazards, vec![Hazard::LuksHeader]);
    assert_eq!(
        find(&disks, "sdg").hazards,
        vec![Hazard::Filesystem {
            fs_type: "ext4".into()
        }]
    );

    let vda = find(&disks, "vda");
    assert!(vda.system, "{:?}", vda.hazards);
    for h in [
        Hazard::RootFilesystem,
        Hazard::Boot,
        Hazard::Swap,
        Hazard::LvmLabel,
    ] {
        assert!(vda.hazards.contains(&h), "missing {h:?}: {:?}", vda.hazards);
    }
    assert_eq!(vda.device.holders, vec!["dm-0", "dm-1"]);
    assert_eq!(
        vda.device.partitions[0].mount_point.as_deref(),
        Some("/boot")
    );
}

#[tokio::test]
async fn names_do_not_depend_on_udev_or_kernel_names() {
    let h = build_zoo();
    let before = h.discoverer(false).scan().await.unwrap();
    // udev database for sda appears (real node) with ID_WWN and links: same name
    write(
        &h.root.join("run/udev/data/b8:0"),
        "S:disk/by-id/scsi-0QEMU_QEMU_HARDDISK_hdd-serial-1\nS:disk/by-path/pci-0000:00:05.0-scsi-0:0:0:0\n\
         E:ID_BUS=scsi\nE:ID_SERIAL=0QEMU_QEMU_HARDDISK_hdd-serial-1\nE:ID_SERIAL_SHORT=hdd-serial-1\nE:ID_WWN=0x5000c500a1b2c3d4\nE:ID_TYPE=disk\n",
    );
    let after = h.discoverer(false).scan().await.unwrap();
    assert_eq!(find(&before, "sda").identity, find(&after, "sda").identity);
    assert_eq!(find(&after, "sda").device.devlinks.len(), 2);
    // a udev ID_TYPE=cd device is not a disk
    write(&h.root.join("run/udev/data/b8:16"), "E:ID_TYPE=cd\n");
    let again = h.discoverer(false).scan().await.unwrap();
    assert!(!again.iter().any(|d| d.device.kernel_name == "sdb"));
}

#[tokio::test]
async fn loop_disks_only_on_request_and_named_by_backing_file() {
    let h = build_zoo();
    let disks = h.discoverer(true).scan().await.unwrap();
    let l0 = find(&disks, "loop0");
    assert_eq!(l0.identity.source, IdentitySource::LoopBackingFile);
    assert_eq!(l0.attributes().dev_type, "loop");
    assert!(
        !disks.iter().any(|d| d.device.kernel_name == "loop1"),
        "detached loop skipped"
    );
    // re-attach the same file at another loop number: same name
    fs::remove_file(h.root.join("sys/class/block/loop0")).unwrap();
    h.disk(
        "virtual",
        "loop5",
        "7:5",
        2097152,
        "1",
        &[("loop/backing_file", b"/var/lib/demo/disks/d0.img\n")],
    );
    let disks2 = h.discoverer(true).scan().await.unwrap();
    assert_eq!(find(&disks2, "loop5").identity.name, l0.identity.name);
}

#[tokio::test]
async fn loops_backed_outside_the_disk_dir_cost_nothing_and_need_no_pass() {
    use hwameistor_disk::DiscoverySource;
    let h = build_zoo();
    let mut cfg = h.discoverer(true).config;
    cfg.loop_backing_dir = Some("/var/lib/demo/disks".into());
    let d = Discoverer::new(cfg, Arc::new(h.runner.clone()));
    let volume_loop = |n: u32| {
        h.disk(
            "virtual",
            &format!("loop{n}"),
            &format!("7:{n}"),
            2048,
            "1",
            &[("loop/backing_file", b"/var/lib/demo/pool/v.img\n")],
        )
    };
    let before = d.fingerprint().unwrap();
    assert!(before.contains("loop0 "), "{before}");
    d.scan().await.unwrap();
    // a volume's loop device: not scanned, not in the fingerprint, its uevents need no pass
    volume_loop(20);
    assert_eq!(d.fingerprint().unwrap(), before);
    assert!(
        !d.scan()
            .await
            .unwrap()
            .iter()
            .any(|x| x.device.kernel_name == "loop20")
    );
    assert!(d.ignores_event("loop20"));
    // detached loop devices are ignored too; disks and partitions never are
    assert!(d.ignores_event("loop1"));
    for name in ["sda", "loop0p1", "loop-control"] {
        assert!(!d.ignores_event(name), "{name}");
    }
    // the demo disk loop0 was reported: its events matter even once it looks ignorable
    fs::write(h.root.join("sys/class/block/loop0/loop/backing_file"), "").unwrap();
    assert!(!d.ignores_event("loop0"), "reported before, so it matters");
    assert_ne!(
        d.fingerprint().unwrap(),
        before,
        "loop0 left the fingerprint"
    );
    // a loop device that becomes backed by a file under the dir enters scan and fingerprint
    fs::write(
        h.root.join("sys/class/block/loop20/loop/backing_file"),
        "/var/lib/demo/disks/d9.img\n",
    )
    .unwrap();
    assert!(!d.ignores_event("loop20"));
    assert!(d.fingerprint().unwrap().contains("loop20 "));
    assert!(
        d.scan()
            .await
            .unwrap()
            .iter()
            .any(|x| x.device.kernel_name == "loop20")
    );
    // without include_loop, every loop device is ignored
    assert!(h.discoverer(false).ignores_event("loop0"));
    assert!(
        !h.discoverer(false)
            .fingerprint()
            .unwrap()
            .contains("loop0 ")
    );
}

#[tokio::test]
async fn fingerprint_changes_on_plug_and_partitioning() {
    let h = build_zoo();
    let d = h.discoverer(false);
    let a = d.fingerprint().unwrap();
    assert_eq!(a, d.fingerprint().unwrap());
    let dir = h.disk(&format!("{SCSI}9"), "sdh", "8:112", 100, "1", &[]);
    let b = d.fingerprint().unwrap();
    assert_ne!(a, b);
    h.partition(&dir, "sdh1", "8:113");
    assert_ne!(b, d.fingerprint().unwrap());
}

#[tokio::test]
async fn probes_are_cached_until_the_device_changes_or_is_invalidated() {
    let h = build_zoo();
    let d = h.discoverer(false);
    let blkid_calls = || {
        h.runner
            .command_lines()
            .iter()
            .filter(|l| l.starts_with("blkid"))
            .count()
    };
    d.scan().await.unwrap();
    let first = blkid_calls();
    assert!(first >= 10, "every disk and partition probed: {first}");
    // a second scan (e.g. another disk was unplugged) probes nothing
    let again = d.scan().await.unwrap();
    assert_eq!(blkid_calls(), first);
    assert_eq!(
        find(&again, "sdd").hazards.len(),
        3,
        "cached signatures are still applied"
    );
    // a new partition on sdg changes its sysfs identity: only sdg is probed again
    let sdg = h
        .root
        .join("sys/devices")
        .join(format!("{SCSI}5"))
        .join("block/sdg");
    h.partition(&sdg, "sdg1", "8:97");
    d.scan().await.unwrap();
    assert_eq!(blkid_calls(), first + 2, "sdg and sdg1");
    // an explicit invalidation (change uevent, periodic re-probe) probes everything again
    d.invalidate(None);
    d.scan().await.unwrap();
    assert!(blkid_calls() >= 2 * first + 2);
}

#[tokio::test]
async fn the_host_mount_table_can_be_read_from_a_container() {
    let h = build_zoo();
    // the host (pid 1's mount namespace) has sdb mounted; this process's table does not
    write(
        &h.root.join("proc/1/mountinfo"),
        "40 1 8:16 / /var/lib/data rw - xfs /dev/sdb rw\n",
    );
    let mut cfg = DiscoveryConfig {
        node_name: "node1".into(),
        roots: h.roots(),
        include_loop: false,
        loop_backing_dir: None,
    };
    let own = Discoverer::new(cfg.clone(), Arc::new(h.runner.clone()))
        .scan()
        .await
        .unwrap();
    assert!(find(&own, "sdb").hazards.is_empty());
    cfg.roots.mount_pid = "1".into();
    let host = Discoverer::new(cfg, Arc::new(h.runner.clone()))
        .scan()
        .await
        .unwrap();
    assert_eq!(
        find(&host, "sdb").hazards,
        vec![Hazard::Mounted {
            mount_point: "/var/lib/data".into()
        }]
    );
}
