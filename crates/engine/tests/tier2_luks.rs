//! Tier 2: LUKS2 on LVM volumes with the engine's `luks` module inside the qemu guest (real
//! dm-crypt): format (idempotent, refused over a filesystem), open, data readable through the
//! mapping and absent from the raw LV, wrong key refused, close; a snapshot of an encrypted
//! volume stays encrypted and opens with the same key.
//!
//! Run by `.ci/run` via `tests/vm/run-tier2.sh` (one guest per test binary).

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};
use hwameistor_engine::fs::{self, FsType};
use hwameistor_engine::luks::{Luks, Pbkdf, Secret, mapping_name};
use hwameistor_engine::lvm::LvmEngine;
use hwameistor_engine::{Error, LvmConfig, VolumeEngine, VolumeOptions};
use hwameistor_exec::TokioRunner;
use hwameistor_testkit::data::{contains, dd_read, dd_write};
use hwameistor_testkit::tier2::{LvmCleanup, guest, lvm_no_monitoring};
use hwameistor_testkit::{MI, Sandbox};
use hwameistor_vmtests::DiskKind;

const POOL: &str = "LocalStorage_PoolSSD";
const MARKER: &[u8] = b"HWAMEISTOR-PLAINTEXT-MARKER-0123456789";
const DIR: &str = "/tmp/hwt-luks";

/// Read the first `mib` MiB of `dev` with direct IO.
async fn read_dev(dev: &Path, mib: u64) -> Result<Vec<u8>> {
    dd_read(&Path::new(DIR).join("readback"), dev, mib).await
}

/// Write 1 MiB with `MARKER` at the start of every 4 KiB block to `dev` with direct IO.
async fn write_marker(dev: &Path) -> Result<()> {
    let mut data = vec![0u8; MI as usize];
    for chunk in data.chunks_mut(4096) {
        chunk[..MARKER.len()].copy_from_slice(MARKER);
    }
    dd_write(&Path::new(DIR).join("marker"), dev, 0, &data).await
}

#[tokio::test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn luks_volumes_and_their_snapshots_stay_encrypted() -> Result<()> {
    let g = guest();
    lvm_no_monitoring()?;
    let disk = g.disk(DiskKind::Ssd).dev.clone();
    // On drop: our mappings closed, the VG removed, the disk wiped, the directory removed.
    let _cleanup = LvmCleanup::new()
        .sandbox(Sandbox::at(DIR)?)
        .mapping("pvc-enc-encrypt")
        .mapping("snap-enc-encrypt")
        .vg(POOL)
        .disks([disk.clone()]);
    let runner = TokioRunner::shared();
    let e = LvmEngine::new(runner.clone(), LvmConfig::default());
    e.ensure_pool(POOL, std::slice::from_ref(&disk)).await?;
    let v = e
        .create_volume(POOL, "pvc-enc", 32 * MI, &VolumeOptions::default())
        .await?;
    let mut luks = Luks::new(runner.clone());
    // Fast, weak key derivation: tests only.
    luks.pbkdf = Pbkdf::Pbkdf2 { iterations: 1000 };
    let key = Secret::new(b"tier2-volume-key-not-secret".to_vec())?;

    ensure!(!luks.is_luks(&v.device_path).await?);
    luks.format(&v.device_path, &key).await?;
    ensure!(luks.is_luks(&v.device_path).await?);
    // Idempotent: a LUKS device is left alone (the header, hence the data, survive).
    luks.format(&v.device_path, &key).await?;

    let name = mapping_name("pvc-enc");
    let mapped = luks.open(&v.device_path, &name, &key).await?;
    ensure!(mapped == Path::new("/dev/mapper/pvc-enc-encrypt"));
    ensure!(luks.open(&v.device_path, &name, &key).await? == mapped);
    write_marker(&mapped).await?;
    ensure!(
        contains(&read_dev(&mapped, 1).await?, MARKER),
        "plaintext through the mapping"
    );
    ensure!(
        !contains(&read_dev(&v.device_path, 32).await?, MARKER),
        "plaintext visible on the raw LV"
    );

    // A snapshot of the encrypted volume is ciphertext too, and opens with the same key.
    luks.close(&name).await?;
    e.create_snapshot(POOL, "pvc-enc", "snap-enc", 16 * MI)
        .await?;
    let snap_dev = PathBuf::from(format!("/dev/{POOL}/snap-enc"));
    ensure!(!contains(&read_dev(&snap_dev, 32).await?, MARKER));
    ensure!(luks.is_luks(&snap_dev).await?);
    let sm = luks
        .open(&snap_dev, &mapping_name("snap-enc"), &key)
        .await?;
    ensure!(
        contains(&read_dev(&sm, 1).await?, MARKER),
        "snapshot plaintext"
    );
    luks.close(&mapping_name("snap-enc")).await?;
    e.delete_snapshot(POOL, "snap-enc").await?;

    // The wrong key opens nothing; closing twice is fine; reopening with the key works.
    let wrong = Secret::new(b"not-the-right-key".to_vec())?;
    let err = luks.open(&v.device_path, &name, &wrong).await.unwrap_err();
    ensure!(hwameistor_engine::luks::is_wrong_key(&err), "{err}");
    ensure!(!mapped.exists());
    luks.close(&name).await?;
    let mapped = luks.open(&v.device_path, &name, &key).await?;
    ensure!(contains(&read_dev(&mapped, 1).await?, MARKER));
    luks.close(&name).await?;
    ensure!(!mapped.exists(), "mapping closed");

    // Never over a filesystem.
    let plain = e
        .create_volume(POOL, "pvc-plain", 16 * MI, &VolumeOptions::default())
        .await?;
    fs::mkfs(runner.as_ref(), &plain.device_path, FsType::Ext4, &[]).await?;
    let err = luks.format(&plain.device_path, &key).await.unwrap_err();
    ensure!(matches!(err, Error::Conflict { .. }), "{err}");

    for v in ["pvc-enc", "pvc-plain"] {
        e.delete_volume(POOL, v).await?;
    }
    Ok(())
}
