//! Tier 2: thin provisioning with the lvm engine on the qemu guest's real device-mapper
//! (dm-thin-pool, thin-provisioning-tools): a thin pool in a VG, thin volumes
//! over-provisioned exactly up to the ratio and the next one refused, data written, a thin
//! snapshot that keeps the old data while the origin changes, usage reported, a ratio change
//! and growth, then everything deleted and nothing left in the VG.
//!
//! Run by `.ci/run` via `tests/vm/run-tier2.sh` (one guest per test binary).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use hwameistor_engine::lvm::LvmEngine;
use hwameistor_engine::{Error, LvmConfig, ThinPoolRequest, VolumeEngine, VolumeOptions};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_vmtests::{DiskKind, Guest};

const POOL: &str = "LocalStorage_PoolHDD";
const MI: u64 = 1024 * 1024;

fn guest() -> Guest {
    assert_eq!(
        std::env::var("VM_GUEST").as_deref(),
        Ok("1"),
        "tier-2 test outside the qemu guest: run it via tests/vm/run-tier2.sh"
    );
    Guest::from_env().expect("tier-2 guest environment")
}

fn cmd(argv: &[&str]) -> Cmd {
    Cmd::new(argv[0])
        .args(argv[1..].iter().copied())
        .timeout(Duration::from_secs(300))
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
}

/// Run a command from synchronous code (Drop) on a private runtime in its own thread.
fn run_sync(argv: &[&str]) {
    let c = cmd(argv);
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(TokioRunner.output(&c)).ok()
    })
    .join();
}

/// On drop: remove the test VG (thin pool and all) and wipe the disk.
struct Cleanup {
    disk: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        run_sync(&["vgremove", "-ff", "-y", POOL]);
        let d = self.disk.to_string_lossy().into_owned();
        run_sync(&["pvremove", "-ff", "-y", &d]);
        run_sync(&["wipefs", "-a", &d]);
    }
}

/// No dmeventd in the guest: tell LVM not to monitor (thin pools would try to).
fn lvm_no_monitoring() -> Result<()> {
    std::fs::create_dir_all("/etc/lvm")?;
    std::fs::write(
        "/etc/lvm/lvmlocal.conf",
        "activation {\n  monitoring = 0\n}\n",
    )?;
    Ok(())
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

fn write_dev(dev: &Path, data: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .with_context(|| format!("open {}", dev.display()))?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

fn read_dev(dev: &Path, len: usize) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(dev).with_context(|| format!("open {}", dev.display()))?;
    let mut v = vec![0u8; len];
    f.read_exact(&mut v)?;
    Ok(v)
}

async fn lvs_names() -> Result<Vec<String>> {
    let out = TokioRunner
        .run(&cmd(&["lvs", "-a", "--noheadings", "-o", "lv_name", POOL]))
        .await?;
    Ok(out
        .stdout
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

async fn vg_free() -> Result<u64> {
    let out = TokioRunner
        .run(&cmd(&[
            "vgs",
            "--noheadings",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            "vg_free",
            POOL,
        ]))
        .await?;
    Ok(out.stdout.trim().parse()?)
}

#[tokio::test]
#[ignore = "tier 2: runs inside the qemu guest; run by .ci/run via tests/vm"]
async fn thin_pool_volumes_snapshots_usage_and_cleanup() -> Result<()> {
    let g = guest();
    lvm_no_monitoring()?;
    let start = Instant::now();
    let disk = g.disk(DiskKind::Hdd).dev.clone();
    let _cleanup = Cleanup { disk: disk.clone() };
    let e = LvmEngine::new(TokioRunner::shared(), LvmConfig::default());
    e.ensure_pool(POOL, std::slice::from_ref(&disk)).await?;
    assert!(e.thin_pool(POOL).await?.is_none(), "no thin pool yet");

    // A 256 MiB thin pool with ratio 2: 512 MiB may be provisioned.
    let t0 = Instant::now();
    let tp = e
        .ensure_thin_pool(
            POOL,
            &ThinPoolRequest {
                data_bytes: 256 * MI,
                metadata_bytes: 8 * MI,
                over_provision_ratio: 2.0,
            },
        )
        .await?;
    println!("thin pool created in {:?}", t0.elapsed());
    ensure!(tp.data_bytes == 256 * MI, "data {}", tp.data_bytes);
    ensure!(
        tp.metadata_bytes == 8 * MI,
        "metadata {}",
        tp.metadata_bytes
    );
    ensure!(tp.over_provision_ratio == 2.0);
    ensure!(tp.provisioned_bytes == 0);
    let info = e.pool_info(POOL).await?.context("pool")?;
    ensure!(
        info.volumes.is_empty(),
        "thin pool listed as a volume: {:?}",
        info.volumes
    );

    // Thin volumes up to the ratio: 200 + 200 + 112 = 512 MiB, more than the VG could hold
    // thick next to the thin pool.
    let thin = VolumeOptions {
        striped: false,
        thin: true,
    };
    let free_before = vg_free().await?;
    let t1 = e.create_volume(POOL, "thin-1", 200 * MI, &thin).await?;
    e.create_volume(POOL, "thin-2", 200 * MI, &thin).await?;
    e.create_volume(POOL, "thin-3", 112 * MI, &thin).await?;
    ensure!(
        vg_free().await? == free_before,
        "thin volumes took VG space"
    );
    match e.create_volume(POOL, "thin-4", 4 * MI, &thin).await {
        Err(Error::InsufficientSpace { available, .. }) => ensure!(available == 0),
        other => anyhow::bail!("expected refusal beyond the ratio, got {other:?}"),
    }
    ensure!(
        !lvs_names().await?.iter().any(|n| n == "thin-4"),
        "refused volume exists"
    );

    // Data on thin-1, a thin snapshot, then new data on the origin.
    let old = pattern(8 * MI as usize, 1);
    write_dev(&t1.device_path, &old)?;
    let free_before_snap = vg_free().await?;
    let s = e.create_snapshot(POOL, "thin-1", "snap-1", 0).await?;
    ensure!(s.source_volume == "thin-1" && s.valid);
    ensure!(
        vg_free().await? == free_before_snap,
        "a thin snapshot must not take COW space from the VG"
    );
    let new = pattern(8 * MI as usize, 2);
    write_dev(&t1.device_path, &new)?;
    let snap_dev = PathBuf::from(format!("/dev/{POOL}/snap-1"));
    ensure!(
        read_dev(&snap_dev, old.len())? == old,
        "snapshot lost the old data"
    );
    ensure!(
        read_dev(&t1.device_path, new.len())? == new,
        "origin lost the new data"
    );
    let snaps = e.list_snapshots(POOL).await?;
    ensure!(snaps.iter().any(|s| s.name == "snap-1"), "{snaps:?}");

    // Usage is reported.
    let tp = e.thin_pool(POOL).await?.context("thin pool")?;
    println!(
        "thin pool: data {:.2}% metadata {:.2}% provisioned {} of {}",
        tp.data_percent,
        tp.metadata_percent,
        tp.provisioned_bytes,
        tp.capacity().limit_bytes()
    );
    ensure!(tp.data_percent > 0.0, "data usage not reported");
    ensure!(tp.metadata_percent > 0.0, "metadata usage not reported");
    ensure!(
        tp.thin_volumes == ["thin-1", "thin-2", "thin-3"],
        "{:?}",
        tp.thin_volumes
    );
    ensure!(tp.thin_snapshots == ["snap-1"], "{:?}", tp.thin_snapshots);
    ensure!(tp.provisioned_bytes >= 512 * MI);
    let vols: Vec<String> = e
        .list_volumes(Some(POOL))
        .await?
        .into_iter()
        .map(|v| v.name)
        .collect();
    ensure!(vols == ["thin-1", "thin-2", "thin-3"], "{vols:?}");

    // Ratio 3 and a bigger pool: room again, and a thin volume grows within it.
    let tp = e
        .ensure_thin_pool(
            POOL,
            &ThinPoolRequest {
                data_bytes: 320 * MI,
                metadata_bytes: 8 * MI,
                over_provision_ratio: 3.0,
            },
        )
        .await?;
    ensure!(
        tp.data_bytes == 320 * MI && tp.over_provision_ratio == 3.0,
        "{tp:?}"
    );
    let grown = e.extend_volume(POOL, "thin-3", 200 * MI).await?;
    ensure!(grown.size_bytes == 200 * MI);

    // The thin pool cannot go while it holds volumes; then everything is deleted.
    match e.remove_thin_pool(POOL).await {
        Err(Error::Conflict { .. }) => {}
        other => anyhow::bail!("thin pool removal with volumes: {other:?}"),
    }
    e.delete_snapshot(POOL, "snap-1").await?;
    for v in ["thin-1", "thin-2", "thin-3"] {
        e.delete_volume(POOL, v).await?;
    }
    e.remove_thin_pool(POOL).await?;
    let left = lvs_names().await?;
    ensure!(left.is_empty(), "left behind in the VG: {left:?}");
    ensure!(e.thin_pool(POOL).await?.is_none());
    println!("tier2_thin done in {:?}", start.elapsed());
    Ok(())
}
