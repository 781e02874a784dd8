//! Tier 2: LVM2 and dm-crypt/LUKS2 on the guest's real device-mapper — the
//! operations the LVM volume engine and its encryption layer are built on.

mod common;

use anyhow::Result;
use common::{
    Cleanup, LVM_NO_MONITOR, Laps, device_contains, device_size, guest, lvm_num, lvm_report,
    output, pattern, read_device, run, write_device,
};
use hwameistor_vmtests::DiskKind;

const MIB: u64 = 1 << 20;

fn lv_size(vg: &str, lv: &str) -> Result<u64> {
    let rows = lvm_report(
        &[
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "lv_name,lv_size",
            &format!("{vg}/{lv}"),
        ],
        "lv",
    )?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["lv_name"], lv);
    Ok(lvm_num(&rows[0], "lv_size"))
}

#[test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
fn lvm_linear_lv_write_extend_and_json_report() -> Result<()> {
    let mut laps = Laps::new("lvm_linear");
    let g = guest();
    let disk = g.disk(DiskKind::Virtio).dev.to_string_lossy().into_owned();
    let (vg, lv) = ("hwt_linear", "data");
    let dev = format!("/dev/{vg}/{lv}");
    let mut undo = Cleanup::new();

    run(&["pvcreate", "-ff", "-y", &disk])?;
    undo.push(&["pvremove", "-ff", "-y", &disk]);
    run(&["vgcreate", vg, &disk])?;
    undo.push(&["vgremove", "-ff", "-y", vg]);
    run(&[
        "lvcreate",
        "-y",
        "--config",
        LVM_NO_MONITOR,
        "-n",
        lv,
        "-L",
        "64m",
        vg,
    ])?;
    assert_eq!(lv_size(vg, lv)?, 64 * MIB);
    assert_eq!(device_size(&dev)?, 64 * MIB);
    laps.lap("pv + vg + 64 MiB lv created");

    // data goes to the medium and comes back
    let data = pattern(0x5eed, 4 * MIB as usize);
    write_device(&dev, &data)?;
    assert!(read_device(&dev, data.len())? == data, "read-back differs");

    // grow online by 32 MiB: LVM, the kernel and the data all agree
    run(&[
        "lvextend",
        "--config",
        LVM_NO_MONITOR,
        "-L",
        "+32m",
        &format!("{vg}/{lv}"),
    ])?;
    assert_eq!(lv_size(vg, lv)?, 96 * MIB);
    assert_eq!(device_size(&dev)?, 96 * MIB);
    assert!(
        read_device(&dev, data.len())? == data,
        "data changed by lvextend"
    );
    laps.lap("4 MiB written + verified, lv extended by 32 MiB, verified");

    // VG accounting in the json report
    let vgs = lvm_report(
        &[
            "vgs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_name,vg_size,vg_free,lv_count,pv_count",
            vg,
        ],
        "vg",
    )?;
    let row = &vgs[0];
    assert_eq!(lvm_num(row, "lv_count"), 1);
    assert_eq!(lvm_num(row, "pv_count"), 1);
    assert_eq!(lvm_num(row, "vg_size") - lvm_num(row, "vg_free"), 96 * MIB);
    assert!(lvm_num(row, "vg_size") > 1000 * MIB && lvm_num(row, "vg_size") <= g.disk_size);

    // removal
    run(&["lvremove", "-y", &format!("{vg}/{lv}")])?;
    assert!(
        !std::path::Path::new(&dev).exists(),
        "{dev} still exists after lvremove"
    );
    laps.lap("vg report checked, lv removed");
    Ok(())
}

#[test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
fn lvm_vg_extends_to_a_second_disk_and_stripes_across_both() -> Result<()> {
    let mut laps = Laps::new("lvm_striped");
    let g = guest();
    let d1 = g.disk(DiskKind::Virtio2).dev.to_string_lossy().into_owned();
    let d2 = g.disk(DiskKind::Ssd).dev.to_string_lossy().into_owned();
    let vg = "hwt_striped";
    let mut undo = Cleanup::new();
    run(&["pvcreate", "-ff", "-y", &d1, &d2])?;
    undo.push(&["pvremove", "-ff", "-y", &d1, &d2]);
    run(&["vgcreate", vg, &d1])?;
    undo.push(&["vgremove", "-ff", "-y", vg]);
    // pool extension: the VG grows by the second disk
    let size = |vg: &str| -> Result<u64> {
        let r = lvm_report(
            &[
                "vgs",
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                "vg_size",
                vg,
            ],
            "vg",
        )?;
        Ok(lvm_num(&r[0], "vg_size"))
    };
    let before = size(vg)?;
    run(&["vgextend", vg, &d2])?;
    assert!(
        size(vg)? >= 2 * before,
        "vgextend did not add the second PV"
    );
    laps.lap("vg created and extended to a second pv");

    run(&[
        "lvcreate",
        "-y",
        "--config",
        LVM_NO_MONITOR,
        "-n",
        "s",
        "-i",
        "2",
        "-I",
        "64k",
        "-L",
        "128m",
        vg,
    ])?;
    let rows = lvm_report(
        &[
            "lvs",
            "--reportformat",
            "json",
            "-o",
            "lv_name,stripes,stripe_size,devices",
            "--units",
            "b",
            "--nosuffix",
            &format!("{vg}/s"),
        ],
        "lv",
    )?;
    assert_eq!(lvm_num(&rows[0], "stripes"), 2, "{rows:?}");
    assert_eq!(lvm_num(&rows[0], "stripe_size"), 64 * 1024);
    let devices = rows[0]["devices"].as_str().unwrap_or_default();
    assert!(
        devices.contains(&d1) && devices.contains(&d2),
        "devices: {devices}"
    );
    // data round-trips across the stripe width
    let dev = format!("/dev/{vg}/s");
    let data = pattern(7, 8 * MIB as usize);
    write_device(&dev, &data)?;
    assert!(read_device(&dev, data.len())? == data);
    laps.lap("2-way striped lv created, 8 MiB written + verified");
    Ok(())
}

const KEY: &str = "tier2-luks-passphrase";

fn luks_format(dev: &str, keyfile: &str) -> Result<()> {
    run(&[
        "cryptsetup",
        "luksFormat",
        "-q",
        "--type",
        "luks2",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        keyfile,
        dev,
    ])?;
    Ok(())
}

/// mkfs + mount + write `payload` into a file + umount, on `dev`.
fn write_file_via_fs(dev: &str, mnt: &str, payload: &[u8]) -> Result<()> {
    run(&["mkfs.ext4", "-q", "-F", dev])?;
    run(&["mount", dev, mnt])?;
    let res = (|| -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(format!("{mnt}/marker.txt"))?;
        f.write_all(payload)?;
        f.sync_all()?;
        Ok(())
    })();
    run(&["umount", mnt])?;
    res
}

#[test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
fn luks2_pbkdf2_roundtrip_and_no_plaintext_on_the_raw_lv() -> Result<()> {
    let mut laps = Laps::new("luks2");
    let g = guest();
    let disk = g.disk(DiskKind::Nvme).dev.to_string_lossy().into_owned();
    let vg = "hwt_luks";
    let (plain, secret) = (format!("/dev/{vg}/plain"), format!("/dev/{vg}/secret"));
    let (name, mapper) = ("hwt_crypt", "/dev/mapper/hwt_crypt");
    let mnt = "/tmp/hwt_luks_mnt";
    let keyfile = "/tmp/hwt_luks.key";
    std::fs::create_dir_all(mnt)?;
    std::fs::write(keyfile, KEY)?;
    std::fs::write("/tmp/hwt_luks.badkey", "wrong-passphrase")?;
    let mut undo = Cleanup::new();
    run(&["pvcreate", "-ff", "-y", &disk])?;
    undo.push(&["pvremove", "-ff", "-y", &disk]);
    run(&["vgcreate", vg, &disk])?;
    undo.push(&["vgremove", "-ff", "-y", vg]);
    for lv in ["plain", "secret"] {
        run(&[
            "lvcreate",
            "-y",
            "--config",
            LVM_NO_MONITOR,
            "-n",
            lv,
            "-L",
            "48m",
            vg,
        ])?;
    }
    laps.lap("vg + 2 lvs created");
    let marker = format!(
        "HWAMEISTOR-TIER2-PLAINTEXT-MARKER-{:016x}",
        std::process::id()
    );
    let payload = format!("{marker}\n").repeat(4096).into_bytes(); // ~200 KiB of text

    // Control: through a plain filesystem the marker IS visible on the raw LV,
    // so the scan below is able to find it.
    write_file_via_fs(&plain, mnt, &payload)?;
    assert!(
        device_contains(&plain, &marker)?,
        "control: marker not found on plain LV"
    );
    laps.lap("control: plain ext4 written, marker found on raw LV");

    // LUKS2 with a cheap PBKDF (argon2id takes ~12 s under TCG)
    luks_format(&secret, keyfile)?;
    run(&["cryptsetup", "isLuks", "--type", "luks2", &secret])?;
    let dump = run(&["cryptsetup", "luksDump", "--dump-json-metadata", &secret])?;
    let meta: serde_json::Value = serde_json::from_str(&dump.stdout)?;
    assert_eq!(meta["keyslots"]["0"]["kdf"]["type"], "pbkdf2", "{meta}");
    assert_eq!(meta["keyslots"]["0"]["kdf"]["iterations"], 1000, "{meta}");
    let offset: u64 = meta["segments"]["0"]["offset"].as_str().unwrap().parse()?;
    laps.lap("luksFormat (luks2, pbkdf2, 1000 iterations) + luksDump");

    // a wrong key is refused
    let bad = output(&[
        "cryptsetup",
        "open",
        "--key-file",
        "/tmp/hwt_luks.badkey",
        &secret,
        name,
    ])?;
    assert!(!bad.success(), "opened with a wrong key");
    assert!(!std::path::Path::new(mapper).exists());

    run(&[
        "cryptsetup",
        "open",
        "--type",
        "luks2",
        "--key-file",
        keyfile,
        &secret,
        name,
    ])?;
    undo.push(&["cryptsetup", "close", name]);
    undo.push(&["umount", mnt]);
    assert_eq!(
        device_size(mapper)?,
        48 * MIB - offset,
        "mapping = LV minus LUKS header"
    );
    write_file_via_fs(mapper, mnt, &payload)?;
    run(&["cryptsetup", "close", name])?;
    assert!(
        !std::path::Path::new(mapper).exists(),
        "close left {mapper}"
    );
    laps.lap("wrong key refused; open, mkfs, write, close");

    // reopen: the data survived
    run(&["cryptsetup", "open", "--key-file", keyfile, &secret, name])?;
    run(&["mount", "-o", "ro", mapper, mnt])?;
    let back = std::fs::read(format!("{mnt}/marker.txt"))?;
    run(&["umount", mnt])?;
    assert!(
        back == payload,
        "decrypted file differs ({} bytes)",
        back.len()
    );
    let status = run(&["cryptsetup", "status", name])?;
    assert!(status.stdout.contains("LUKS2"), "{}", status.stdout);
    run(&["cryptsetup", "close", name])?;
    laps.lap("reopen, read back, close");

    // ciphertext only on the medium
    assert!(
        !device_contains(&secret, &marker)?,
        "plaintext marker found on the raw LV"
    );
    assert!(
        !device_contains(&secret, KEY)?,
        "passphrase found on the raw LV"
    );
    laps.lap("raw LV scanned: ciphertext only");
    Ok(())
}
