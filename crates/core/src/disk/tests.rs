use super::*;
use crate::types::NodeState;

fn dev(name: &str, sys: &str) -> BlockDevice {
    BlockDevice {
        kernel_name: name.into(),
        dev_path: format!("/dev/{name}"),
        major: 8,
        minor: 16,
        sys_path: sys.into(),
        devtype: "disk".into(),
        size_bytes: 10 << 30,
        ..Default::default()
    }
}

fn scsi_hdd() -> BlockDevice {
    BlockDevice {
        rotational: Some(true),
        bus: Some("scsi".into()),
        vendor: Some("QEMU".into()),
        model: Some("QEMU_HARDDISK".into()),
        serial: Some("hdd-serial-1".into()),
        wwn: Some("0x5000c500a1b2c3d4".into()),
        ..dev(
            "sdb",
            "/sys/devices/pci0000:00/0000:00:05.0/virtio2/host2/target2:0:0/2:0:0:0/block/sdb",
        )
    }
}

#[test]
fn types_come_from_transport_and_rotational_flag() {
    assert_eq!(classify_type(&scsi_hdd()), DiskType::HDD);
    let ssd = BlockDevice {
        rotational: Some(false),
        ..scsi_hdd()
    };
    assert_eq!(classify_type(&ssd), DiskType::SSD);
    // NVMe namespaces report rotational 0 but are NVMe
    let nvme = BlockDevice {
        rotational: Some(false),
        bus: Some("nvme".into()),
        ..dev(
            "nvme0n1",
            "/sys/devices/pci0000:00/0000:00:06.0/nvme/nvme0/nvme0n1",
        )
    };
    assert_eq!(classify_type(&nvme), DiskType::NVMe);
    // even without a bus fact, the kernel name/sysfs path says NVMe
    let nvme2 = BlockDevice {
        bus: None,
        ..nvme.clone()
    };
    assert_eq!(classify_type(&nvme2), DiskType::NVMe);
    let unknown = BlockDevice {
        rotational: None,
        ..scsi_hdd()
    };
    assert_eq!(classify_type(&unknown), DiskType::Unknown);
    let by_rate = BlockDevice {
        rotational: None,
        rotation_rate: Some(1),
        ..scsi_hdd()
    };
    assert_eq!(classify_type(&by_rate), DiskType::SSD);
}

#[test]
fn dev_types_follow_the_original() {
    assert_eq!(scsi_hdd().dev_type(), "disk");
    let mut dm = dev("dm-0", "/sys/devices/virtual/block/dm-0");
    dm.dm_uuid = Some("LVM-abc".into());
    assert_eq!(dm.dev_type(), "lvm");
    dm.dm_uuid = Some("CRYPT-LUKS2-xyz".into());
    assert_eq!(dm.dev_type(), "crypt");
    dm.dm_uuid = None;
    assert_eq!(dm.dev_type(), "dm");
    let mut md = dev("md127", "/sys/devices/virtual/block/md127");
    md.md_level = Some("raid1".into());
    assert_eq!(md.dev_type(), "raid1");
    assert_eq!(
        dev("loop3", "/sys/devices/virtual/block/loop3").dev_type(),
        "loop"
    );
}

#[test]
fn virtual_devices_are_skipped_unless_loop_is_asked_for() {
    let filter = DeviceFilter::default();
    assert_eq!(should_manage(&scsi_hdd(), filter), Ok(()));
    let mut lp = dev("loop3", "/sys/devices/virtual/block/loop3");
    lp.loop_backing_file = Some("/data/disks/d1.img".into());
    assert_eq!(should_manage(&lp, filter), Err(SkipReason::Virtual));
    let with_loop = DeviceFilter { include_loop: true };
    assert_eq!(should_manage(&lp, with_loop), Ok(()));
    lp.loop_backing_file = None;
    assert_eq!(
        should_manage(&lp, with_loop),
        Err(SkipReason::LoopNotAttached)
    );
    let dm = dev("dm-0", "/sys/devices/virtual/block/dm-0");
    assert_eq!(should_manage(&dm, with_loop), Err(SkipReason::Virtual));
    let zram = dev("zram0", "/sys/devices/virtual/block/zram0");
    assert_eq!(should_manage(&zram, with_loop), Err(SkipReason::Virtual));
    let part = BlockDevice {
        devtype: "partition".into(),
        ..scsi_hdd()
    };
    assert_eq!(should_manage(&part, filter), Err(SkipReason::NotADisk));
    let cd = BlockDevice {
        id_type: Some("cd".into()),
        ..scsi_hdd()
    };
    assert!(matches!(
        should_manage(&cd, filter),
        Err(SkipReason::NotARealDisk { .. })
    ));
    let empty = BlockDevice {
        size_bytes: 0,
        ..scsi_hdd()
    };
    assert_eq!(should_manage(&empty, filter), Err(SkipReason::Empty));
}

#[test]
fn identity_prefers_serial_and_wwn_and_ignores_the_port() {
    let a = disk_identity(&scsi_hdd(), "node1").unwrap();
    assert_eq!(a.source, IdentitySource::SerialWwn);
    assert!(a.name.starts_with("localdisk-"));
    assert_eq!(a.name.len(), "localdisk-".len() + 32);
    // md5(vendor + serial + wwn), the original's formula
    assert_eq!(
        a.uuid,
        format!("{:x}", md5::compute("QEMUhdd-serial-10x5000c500a1b2c3d4"))
    );
    // another port, another kernel name, another node: same disk, same name
    let moved = BlockDevice {
        kernel_name: "sdf".into(),
        dev_path: "/dev/sdf".into(),
        sys_path: "/sys/devices/pci0000:00/0000:00:09.0/host7/target7:0:3/7:0:3:0/block/sdf".into(),
        ..scsi_hdd()
    };
    assert_eq!(disk_identity(&moved, "node2").unwrap().name, a.name);
    // a different serial is a different disk
    let other = BlockDevice {
        serial: Some("hdd-serial-2".into()),
        ..scsi_hdd()
    };
    assert_ne!(disk_identity(&other, "node1").unwrap().name, a.name);
}

#[test]
fn loop_identity_is_the_backing_file_not_the_loop_number() {
    let mut l3 = dev("loop3", "/sys/devices/virtual/block/loop3");
    l3.loop_backing_file = Some("/data/disks/d1.img".into());
    let mut l7 = dev("loop7", "/sys/devices/virtual/block/loop7");
    l7.loop_backing_file = Some("/data/disks/d1.img".into());
    let a = disk_identity(&l3, "n1").unwrap();
    assert_eq!(a.source, IdentitySource::LoopBackingFile);
    assert_eq!(a, disk_identity(&l7, "n1").unwrap());
    // the same path on another node is another disk
    assert_ne!(a.name, disk_identity(&l3, "n2").unwrap().name);
    l7.loop_backing_file = Some("/data/disks/d2.img".into());
    assert_ne!(a.name, disk_identity(&l7, "n1").unwrap().name);
}

#[test]
fn identity_fallbacks_by_path_then_sysfs_then_none() {
    let mut v = dev(
        "vdb",
        "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vdb",
    );
    v.devlinks = vec!["/dev/disk/by-path/pci-0000:00:04.0".into()];
    let by_path = disk_identity(&v, "n1").unwrap();
    assert_eq!(by_path.source, IdentitySource::ByPath);
    v.devlinks.clear();
    let sysfs = disk_identity(&v, "n1").unwrap();
    assert_eq!(sysfs.source, IdentitySource::SysfsPath);
    assert_eq!(
        v.physical_path(),
        "/sys/devices/pci0000:00/0000:00:04.0/virtio1"
    );
    // renamed kernel device on the same port keeps the name
    let renamed = BlockDevice {
        kernel_name: "vdc".into(),
        sys_path: "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vdc".into(),
        ..v.clone()
    };
    assert_eq!(disk_identity(&renamed, "n1").unwrap(), sysfs);
    let dm = dev("dm-0", "/sys/devices/virtual/block/dm-0");
    assert_eq!(disk_identity(&dm, "n1"), None);
}

#[test]
fn blank_disk_has_no_hazards() {
    assert!(hazards(&scsi_hdd()).is_empty());
    assert!(partition_info(&scsi_hdd()).is_empty());
}

#[test]
fn each_signature_is_a_hazard() {
    let fs = BlockDevice {
        fs_type: Some("ext4".into()),
        ..scsi_hdd()
    };
    assert_eq!(
        hazards(&fs),
        vec![Hazard::Filesystem {
            fs_type: "ext4".into()
        }]
    );
    let info = partition_info(&fs);
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].path, "/dev/sdb");
    assert!(info[0].has_file_system);

    let lvm = BlockDevice {
        fs_type: Some(FS_LVM2_MEMBER.into()),
        ..scsi_hdd()
    };
    assert_eq!(hazards(&lvm), vec![Hazard::LvmLabel]);
    let luks = BlockDevice {
        fs_type: Some(FS_CRYPTO_LUKS.into()),
        ..scsi_hdd()
    };
    assert_eq!(hazards(&luks), vec![Hazard::LuksHeader]);

    let gpt = BlockDevice {
        partition_table: Some("gpt".into()),
        ..scsi_hdd()
    };
    assert_eq!(
        hazards(&gpt),
        vec![Hazard::PartitionTable { kind: "gpt".into() }]
    );
    assert_eq!(
        partition_info(&gpt).len(),
        1,
        "an empty GPT still marks the disk partitioned"
    );
    assert!(!is_system_disk(&hazards(&gpt)));
}

#[test]
fn system_disk_is_recognised_through_partitions_and_holders() {
    let sys = BlockDevice {
        partition_table: Some("gpt".into()),
        partitions: vec![
            PartitionFacts {
                path: "/dev/sda1".into(),
                fs_type: Some("vfat".into()),
                mount_point: Some("/boot/efi".into()),
            },
            PartitionFacts {
                path: "/dev/sda2".into(),
                fs_type: Some(FS_LVM2_MEMBER.into()),
                mount_point: None,
            },
        ],
        holders: vec!["dm-0".into()],
        mount_points: vec!["/boot/efi".into(), "/".into(), "/var/lib/kubelet".into()],
        swap: true,
        ..scsi_hdd()
    };
    let h = hazards(&sys);
    for expected in [
        Hazard::RootFilesystem,
        Hazard::Boot,
        Hazard::Swap,
        Hazard::Mounted {
            mount_point: "/var/lib/kubelet".into(),
        },
        Hazard::PartitionTable { kind: "gpt".into() },
        Hazard::Partitions { count: 2 },
        Hazard::Filesystem {
            fs_type: "vfat".into(),
        },
        Hazard::LvmLabel,
        Hazard::Holders {
            holders: vec!["dm-0".into()],
        },
    ] {
        assert!(h.contains(&expected), "missing {expected:?} in {h:?}");
    }
    assert!(is_system_disk(&h));
    let info = partition_info(&sys);
    assert_eq!(
        info.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
        ["/dev/sdb", "/dev/sda1", "/dev/sda2"]
    );
    assert_eq!(info[1].mount_point, "/boot/efi");
    // a data disk that is merely mounted is not the system disk
    let data = BlockDevice {
        mount_points: vec!["/mnt/data".into()],
        fs_type: Some("xfs".into()),
        ..scsi_hdd()
    };
    assert!(!is_system_disk(&hazards(&data)));
    assert!(!hazards(&data).is_empty());
}

#[test]
fn claim_state_machine() {
    use DiskClaimState as S;
    assert_eq!(next_claim_state(S::Unknown, false, false), S::Pending);
    assert_eq!(next_claim_state(S::Pending, false, false), S::Available);
    assert_eq!(next_claim_state(S::Pending, true, false), S::Bound);
    assert_eq!(next_claim_state(S::Available, false, true), S::Bound);
    assert_eq!(next_claim_state(S::Bound, false, true), S::Bound);
    assert_eq!(next_claim_state(S::Bound, true, false), S::Bound);
    assert_eq!(next_claim_state(S::Bound, false, false), S::Available);
}

fn free_disk(name: &str) -> DiskView {
    DiskView {
        name: name.into(),
        node: "n1".into(),
        state: LocalDiskState::Active,
        claim_state: DiskClaimState::Available,
        reserved: false,
        owner: DiskOwner::Unknown,
        capacity: 100 << 30,
        disk_type: DiskType::SSD,
        dev_type: "disk".into(),
        device_path: "/dev/sdb".into(),
        has_partitions: false,
        claimed_by: None,
    }
}

#[test]
fn claim_filter_gives_every_reason() {
    let claim = ClaimCriteria {
        node: "n1".into(),
        owner: DiskOwner::LocalStorage,
        disk_type: Some(DiskType::SSD),
        min_capacity: 50 << 30,
        ..Default::default()
    };
    assert!(match_claim(&claim, "c", &free_disk("localdisk-a")).is_empty());

    let bad = DiskView {
        name: "n1-sdc".into(),
        node: "n2".into(),
        state: LocalDiskState::Inactive,
        claim_state: DiskClaimState::Bound,
        reserved: true,
        owner: DiskOwner::LocalDiskManager,
        capacity: 10 << 30,
        disk_type: DiskType::HDD,
        dev_type: "partition".into(),
        device_path: "/dev/sdc".into(),
        has_partitions: true,
        claimed_by: Some("other".into()),
    };
    let reasons: Vec<&str> = match_claim(&claim, "c", &bad)
        .iter()
        .map(|r| r.reason())
        .collect();
    assert_eq!(
        reasons,
        [
            "LocalDiskNodeUnMatch",
            "LocalDiskInactive",
            "LocalDiskClaimedByOther",
            "LocalDiskUnAvailable",
            "LocalDiskHasReserved",
            "LocalDiskOwnerUnMatch",
            "LocalDiskInsufficientCapacity",
            "LocalDiskTypeUnMatch",
            "LocalDiskIsNotBlockDevice",
            "LocalDiskAlreadyHasPartition",
            "LocalDiskNameFormatUnMatch",
        ]
    );
    let msg = match_claim(&claim, "c", &bad)[6].to_string();
    assert!(msg.contains("10737418240 < required 53687091200"), "{msg}");
}

#[test]
fn claim_owner_names_and_paths() {
    let ldm = ClaimCriteria {
        node: "n1".into(),
        owner: DiskOwner::LocalDiskManager,
        ..Default::default()
    };
    // an ownerless disk only goes to local-storage
    let r = match_claim(&ldm, "c", &free_disk("localdisk-a"));
    assert_eq!(
        r,
        vec![RejectReason::OwnerUnMatch {
            owner: DiskOwner::Unknown
        }]
    );
    let owned = DiskView {
        owner: DiskOwner::LocalDiskManager,
        ..free_disk("localdisk-a")
    };
    assert!(match_claim(&ldm, "c", &owned).is_empty());

    let named = ClaimCriteria {
        node: "n1".into(),
        owner: DiskOwner::LocalStorage,
        names: vec!["localdisk-b".into()],
        device_paths: vec!["/dev/sdz".into()],
        ..Default::default()
    };
    let reasons: Vec<&str> = match_claim(&named, "c", &free_disk("localdisk-a"))
        .iter()
        .map(|r| r.reason())
        .collect();
    assert_eq!(reasons, ["LocalDiskNameUnMatch", "LocalDiskDevPathUnMatch"]);

    // a disk already bound to this very claim still matches (idempotent re-run)
    let mine = DiskView {
        claim_state: DiskClaimState::Bound,
        claimed_by: Some("c".into()),
        ..free_disk("localdisk-a")
    };
    let any = ClaimCriteria {
        node: "n1".into(),
        owner: DiskOwner::LocalStorage,
        ..Default::default()
    };
    assert!(match_claim(&any, "c", &mine).is_empty());
    // a loop disk (only present when discovery includes loops) is claimable
    let lp = DiskView {
        dev_type: "loop".into(),
        ..free_disk("localdisk-l")
    };
    assert!(match_claim(&any, "c", &lp).is_empty());
}

#[test]
fn action_rules_follow_the_original() {
    const G: i64 = 1 << 30;
    assert!(
        !ActionRule::default().matches(10 * G, "/dev/sdb"),
        "empty rule matches nothing"
    );
    let small = ActionRule {
        min_capacity: 20 * G,
        ..Default::default()
    };
    assert!(small.matches(10 * G, "/dev/sdb"));
    assert!(!small.matches(20 * G, "/dev/sdb"));
    let large = ActionRule {
        max_capacity: 1000 * G,
        ..Default::default()
    };
    assert!(large.matches(2000 * G, "/dev/sdb"));
    assert!(!large.matches(500 * G, "/dev/sdb"));
    let path = ActionRule {
        device_path: "/dev/sd[b-c]".into(),
        ..Default::default()
    };
    assert!(path.matches(1, "/dev/sdb"));
    assert!(path.matches(1, "/dev/sdc"));
    assert!(!path.matches(1, "/dev/sdd"));
    let both = ActionRule {
        min_capacity: 20 * G,
        device_path: "/dev/nvme*".into(),
        ..Default::default()
    };
    assert!(both.matches(G, "/dev/nvme0n1"));
    assert!(!both.matches(G, "/dev/sdb"));
    assert!(!both.matches(30 * G, "/dev/nvme0n1"));
}

#[test]
fn glob_behaves_like_filepath_match() {
    assert!(glob_match("/dev/sd*", "/dev/sda"));
    assert!(!glob_match("/dev/*", "/dev/disk/by-id/x"), "* stops at /");
    assert!(glob_match("/dev/*/*/x", "/dev/disk/by-id/x"));
    assert!(glob_match("/dev/sd?", "/dev/sdb"));
    assert!(!glob_match("/dev/sd?", "/dev/sdbb"));
    assert!(glob_match("/dev/sd[!a]", "/dev/sdb"));
    assert!(!glob_match("/dev/sd[!a]", "/dev/sda"));
    assert!(glob_match("/dev/vd[a-cx]", "/dev/vdx"));
    assert!(glob_match("a\\*b", "a*b"));
    assert!(!glob_match("a\\*b", "axb"));
    assert!(
        !glob_match("/dev/sd[", "/dev/sda"),
        "malformed class matches nothing"
    );
    assert!(glob_match("*", ""));
    assert!(glob_match("/dev/*a*b", "/dev/xxaxxb"));
}

#[test]
fn raw_disk_pool_maths() {
    let disks = vec![
        PoolDiskInput {
            local_disk_name: "a".into(),
            dev_path: "/dev/sdb".into(),
            capacity: 100,
            disk_type: DiskType::SSD,
        },
        PoolDiskInput {
            local_disk_name: "b".into(),
            dev_path: "/dev/sdc".into(),
            capacity: 300,
            disk_type: DiskType::SSD,
        },
        PoolDiskInput {
            local_disk_name: "c".into(),
            dev_path: "/dev/sdd".into(),
            capacity: 50,
            disk_type: DiskType::HDD,
        },
        PoolDiskInput {
            local_disk_name: "u".into(),
            dev_path: "/dev/sde".into(),
            capacity: 7,
            disk_type: DiskType::Unknown,
        },
    ];
    let vols = vec![PoolVolumeInput {
        name: "pvc-1".into(),
        local_disk_name: "b".into(),
        capacity: 250,
    }];
    let (pools, totals) = disk_pools(&disks, &vols);
    assert_eq!(pools.len(), 2);
    let ssd = &pools[&PoolClass::SSD];
    assert_eq!(ssd.name, "LocalDisk_PoolSSD");
    assert_eq!(ssd.total_capacity, 400);
    assert_eq!(ssd.used_capacity, 250);
    assert_eq!(ssd.free_capacity, 100);
    assert_eq!(
        (
            ssd.total_volume_count,
            ssd.used_volume_count,
            ssd.free_volume_count
        ),
        (2, 1, 1)
    );
    assert_eq!(ssd.volume_capacity_limit, 100);
    assert_eq!(ssd.disks[1].state, DiskState::InUse);
    assert_eq!(ssd.disks[0].state, DiskState::Available);
    assert_eq!(ssd.volumes, vec!["pvc-1".to_string()]);
    assert_eq!(pools[&PoolClass::HDD].volume_capacity_limit, 50);
    assert_eq!(
        totals,
        NodeTotals {
            total_disk: 3,
            free_disk: 2,
            total_capacity: 450,
            free_capacity: 150
        }
    );
}

#[test]
fn heartbeat() {
    assert_eq!(heartbeat_state(5, 30), NodeState::Ready);
    assert_eq!(heartbeat_state(31, 30), NodeState::Offline);
}
