//! Test data: deterministic patterns, write-and-read-back checks, direct-IO copies through
//! `dd` (run by the runner), digests.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use hwameistor_exec::{Cmd, Runner, TokioRunner};

use crate::MI;

/// How long one `dd` may take (slow under qemu TCG).
const DD_TIMEOUT: Duration = Duration::from_secs(300);

/// `len` pseudo-random bytes, the same for the same `seed` (a 64-bit LCG).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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

/// `len` bytes of a cheap byte pattern: byte `i` is `i * 31 + seed` (mod 256).
pub fn byte_pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Create `path` with `data` and fsync it.
pub fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// Write `data` at byte `offset` of `dev` (a device or file), sync, read it back and require
/// it to be identical.
pub fn write_read_at(dev: &Path, offset: u64, data: &[u8]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .with_context(|| format!("open {}", dev.display()))?;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)?;
    f.sync_all()?;
    let mut back = vec![0u8; data.len()];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut back)?;
    ensure!(
        back == data,
        "data read back from {} at {offset} differs",
        dev.display()
    );
    Ok(())
}

/// Write `data` to `dev` at `offset_mib` MiB with direct IO: `data` goes to the scratch file
/// `scratch` first, then `dd oflag=direct conv=notrunc,fsync` copies it (so nothing but the
/// runner touches the device).
pub async fn dd_write(scratch: &Path, dev: &Path, offset_mib: u64, data: &[u8]) -> Result<()> {
    std::fs::write(scratch, data).with_context(|| format!("write {}", scratch.display()))?;
    TokioRunner
        .run(
            &Cmd::new("dd")
                .arg(format!("if={}", scratch.display()))
                .arg(format!("of={}", dev.display()))
                .args(["bs=1M", "oflag=direct", "conv=notrunc,fsync"])
                .arg(format!("seek={offset_mib}"))
                .timeout(DD_TIMEOUT),
        )
        .await?;
    Ok(())
}

/// The first `mib` MiB of `dev`, read with direct IO by `dd` into the scratch file `scratch`
/// (removed afterwards). A short read is an error.
pub async fn dd_read(scratch: &Path, dev: &Path, mib: u64) -> Result<Vec<u8>> {
    TokioRunner
        .run(
            &Cmd::new("dd")
                .arg(format!("if={}", dev.display()))
                .arg(format!("of={}", scratch.display()))
                .args(["bs=1M", "iflag=direct", "status=none"])
                .arg(format!("count={mib}"))
                .timeout(DD_TIMEOUT),
        )
        .await?;
    let data = std::fs::read(scratch).with_context(|| format!("read {}", scratch.display()))?;
    std::fs::remove_file(scratch)?;
    ensure!(
        data.len() as u64 == mib * MI,
        "short read of {}: {} bytes",
        dev.display(),
        data.len()
    );
    Ok(data)
}

/// A short digest of `data` (for comparing device contents in messages).
pub fn digest(data: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_deterministic_and_seeded() {
        assert_eq!(pattern(64, 1), pattern(64, 1));
        assert_ne!(pattern(64, 1), pattern(64, 2));
        assert_eq!(byte_pattern(3, 7), vec![7, 38, 69]);
    }

    #[test]
    fn write_read_at_round_trips_and_digest_compares() {
        let dir = std::env::temp_dir().join(format!("testkit-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        write_synced(&f, &[0u8; 8192]).unwrap();
        write_read_at(&f, 4096, &pattern(4096, 3)).unwrap();
        let all = std::fs::read(&f).unwrap();
        assert_eq!(&all[4096..], &pattern(4096, 3)[..]);
        assert_eq!(digest(&all), digest(&all.clone()));
        assert_ne!(digest(&all), digest(&all[1..]));
        assert!(contains(&all, &pattern(4096, 3)[10..40]));
        assert!(!contains(&all, b""));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn dd_copies_through_a_scratch_file() {
        let dir = std::env::temp_dir().join(format!("testkit-dd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dev = dir.join("dev.img");
        std::fs::File::create(&dev)
            .unwrap()
            .set_len(2 * MI)
            .unwrap();
        let data = pattern(MI as usize, 9);
        dd_write(&dir.join("s"), &dev, 1, &data).await.unwrap();
        let back = dd_read(&dir.join("r"), &dev, 2).await.unwrap();
        assert_eq!(&back[MI as usize..], &data[..]);
        assert!(back[..MI as usize].iter().all(|b| *b == 0));
        assert!(
            dd_read(&dir.join("r"), &dev, 3).await.is_err(),
            "short read"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
