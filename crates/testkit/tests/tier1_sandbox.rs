//! Tier 1: the sandbox really releases what a test leaves behind: a loop disk with a mounted
//! ext4 on it, and a loop device stacked on a file inside that mount, are gone after drop.

use anyhow::{Result, ensure};
use hwameistor_exec::{Cmd, Runner, TokioRunner};
use hwameistor_testkit::{MI, Sandbox, block, data};

#[tokio::test]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn sandbox_drop_unmounts_and_detaches_nested_devices() -> Result<()> {
    let sb = Sandbox::new("testkit")?;
    let root = sb.root().to_path_buf();
    let disk = sb.loop_disk("d1", 64 * MI).await?;
    ensure!(block::blockdev_size(&disk.dev).await? == 64 * MI);
    TokioRunner
        .run(
            &Cmd::new("mkfs.ext4")
                .args(["-F", "-q"])
                .arg(disk.dev.to_string_lossy()),
        )
        .await?;
    let mnt = sb.path("mnt/a");
    std::fs::create_dir_all(&mnt)?;
    TokioRunner
        .run(
            &Cmd::new("mount")
                .arg(disk.dev.to_string_lossy())
                .arg(mnt.to_string_lossy()),
        )
        .await?;
    ensure!(block::mount_fstype(&mnt).as_deref() == Some("ext4"));
    ensure!(block::mount_count(&mnt) == 1);
    // A loop device backed by a file inside the mount (as the file engine's volumes are).
    let inner = mnt.join("vol.img");
    std::fs::File::create(&inner)?.set_len(8 * MI)?;
    let inner_dev = block::attach_loop(&inner).await?;
    data::write_read_at(&inner_dev, MI, &data::pattern(MI as usize, 5))?;
    disk.grow(96 * MI).await?;
    ensure!(block::blockdev_size(&disk.dev).await? == 96 * MI);
    ensure!(block::loops_below(&root).await?.len() == 2);

    drop(sb);
    ensure!(block::mount_fstype(&mnt).is_none(), "mount left behind");
    let left = block::loops_below(&root).await?;
    ensure!(left.is_empty(), "loop devices left behind: {left:?}");
    ensure!(!root.exists(), "directory left behind");
    Ok(())
}
