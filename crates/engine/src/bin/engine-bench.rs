//! engine-bench: how fast is a volume compared with the raw disk under it?
//!
//! Runs fio (direct IO, libaio) on the raw disk and on a volume of each available engine
//! built on that same disk, and prints volume/raw ratios for 4k random read (IOPS), 4k random
//! write (IOPS), 1M sequential read and 1M sequential write (bandwidth).
//!
//! Method: a single raw-then-volume pass is noisy (the disk, the page cache of the backing
//! file and a shared host drift between runs), so the measurements are **interleaved over
//! `--rounds` rounds**: every round measures the raw disk and each engine's volume (the pool
//! is rebuilt on the wiped disk each round, since a raw run overwrites it), and the order
//! alternates between rounds (raw first in even rounds, last in odd ones) so a drift in
//! time hits both sides alike. Each round gives one volume/raw ratio per workload, computed
//! from that round's own raw figure; the table reports the **median ratio** over the rounds
//! and its spread (min–max), next to the median absolute figures.
//!
//! Without `--disk`, a sparse file under `--dir` attached as a loop device (direct IO) plays
//! the disk. With `--disk DEV` a real disk is used and ITS CONTENT IS DESTROYED; `--wipe`
//! must be given to confirm.
//!
//! ```text
//! cargo run --release -p hwameistor-engine --bin engine-bench -- --engines file --rounds 5 --runtime 5
//! cargo run --release -p hwameistor-engine --bin engine-bench -- --disk /dev/sdb --wipe --size 1G
//! # inside the tier-2 qemu guest (lvm and file on a virtio disk):
//! cargo build -p hwameistor-engine --bin engine-bench && \
//!   tests/vm/cargo-runner.sh target/debug/engine-bench --disk-from-env VM_DISK_VIRTIO --wipe \
//!   --size 128M --runtime 5
//! ```
//! lvm is measured only where device-mapper and lvm2 exist; the file engine everywhere.
//! Needs root, fio, xfsprogs, util-linux (and lvm2 for lvm).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use hwameistor_engine::file::FileEngine;
use hwameistor_engine::lvm::LvmEngine;
use hwameistor_engine::{
    EngineKind, FileEngineConfig, LvmConfig, PoolFsType, VolumeEngine, VolumeOptions, fs,
    probe_host,
};
use hwameistor_exec::{Cmd, Runner, SharedRunner, TokioRunner};

/// A pool name of its own, so the bench never touches a real pool of the host.
const POOL: &str = "LocalStorage_PoolBench";
const VOLUME: &str = "bench-vol";

#[derive(Parser, Debug)]
#[command(about = "fio on the raw disk vs on a volume of each engine; prints volume/raw ratios")]
struct Args {
    /// Size of the region fio works on (raw disk region and volume size), e.g. 256M, 1G.
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    size: u64,
    /// Seconds per fio run.
    #[arg(long, default_value_t = 5)]
    runtime: u64,
    /// Rounds of interleaved raw/volume runs (ratios are medians over the rounds).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Queue depth of the 4k random runs (the 1M sequential runs use 4).
    #[arg(long, default_value_t = 16)]
    iodepth: u32,
    /// fio IO engine (libaio; psync where libaio misbehaves, e.g. under qemu TCG).
    #[arg(long, default_value = "libaio")]
    ioengine: String,
    /// Engines to measure (comma separated): file, lvm. Unavailable ones are skipped.
    #[arg(long, default_value = "file,lvm", value_delimiter = ',')]
    engines: Vec<EngineKind>,
    /// A real disk to use. Its content is destroyed: requires --wipe.
    #[arg(long)]
    disk: Option<PathBuf>,
    /// Like --disk, the device named by this environment variable (e.g. `VM_DISK_VIRTIO`
    /// inside the tier-2 guest).
    #[arg(long, conflicts_with = "disk")]
    disk_from_env: Option<String>,
    /// Confirms that --disk may be overwritten.
    #[arg(long)]
    wipe: bool,
    /// Working directory (loop-backed disk file, pool mounts, device links).
    #[arg(long, default_value = "/tmp/hwameistor-bench")]
    dir: PathBuf,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].to_ascii_lowercase();
            let m = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => return Err(format!("unknown unit in {s:?}")),
            };
            (&s[..i], m)
        }
        None => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .map(|n| n * mult)
        .map_err(|e| format!("{s:?}: {e}"))
}

#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    rw: &'static str,
    bs: &'static str,
    /// Compare IOPS (true) or bandwidth (false).
    iops: bool,
    read: bool,
}

const WORKLOADS: [Workload; 4] = [
    Workload {
        name: "4k randread",
        rw: "randread",
        bs: "4k",
        iops: true,
        read: true,
    },
    Workload {
        name: "4k randwrite",
        rw: "randwrite",
        bs: "4k",
        iops: true,
        read: false,
    },
    Workload {
        name: "1M seq read",
        rw: "read",
        bs: "1M",
        iops: false,
        read: true,
    },
    Workload {
        name: "1M seq write",
        rw: "write",
        bs: "1M",
        iops: false,
        read: false,
    },
];

/// One measurement: IOPS or bytes/s.
type Figures = [f64; 4];

async fn fio(r: &dyn Runner, args: &Args, dev: &Path, w: &Workload) -> Result<f64> {
    let depth = if w.iops { args.iodepth } else { 4 };
    let cmd = Cmd::new("fio")
        .args([
            format!("--name={}", w.rw),
            format!("--filename={}", dev.display()),
            "--direct=1".into(),
            format!("--ioengine={}", args.ioengine),
            format!("--iodepth={depth}"),
            format!("--rw={}", w.rw),
            format!("--bs={}", w.bs),
            format!("--size={}", args.size),
            format!("--runtime={}", args.runtime),
            "--time_based".into(),
            "--randrepeat=0".into(),
            "--output-format=json".into(),
        ])
        .timeout(Duration::from_secs(args.runtime * 3 + 300));
    let out = r.run(&cmd).await?;
    // fio may print notes before the JSON document.
    let json = out.stdout.find('{').map_or("", |i| &out.stdout[i..]);
    let v: serde_json::Value = serde_json::from_str(json)
        .with_context(|| format!("parsing fio JSON output: {}", out.stdout))?;
    let job = &v["jobs"][0][if w.read { "read" } else { "write" }];
    let key = if w.iops { "iops" } else { "bw_bytes" };
    job[key]
        .as_f64()
        .with_context(|| format!("fio output has no {key}"))
}

/// Write the whole region once so reads hit allocated blocks everywhere.
async fn precondition(r: &dyn Runner, args: &Args, dev: &Path) -> Result<()> {
    let cmd = Cmd::new("fio")
        .args([
            "--name=precondition".to_string(),
            format!("--filename={}", dev.display()),
            "--direct=1".into(),
            format!("--ioengine={}", args.ioengine),
            "--iodepth=4".into(),
            "--rw=write".into(),
            "--bs=1M".into(),
            format!("--size={}", args.size),
            "--output-format=json".into(),
        ])
        .timeout(Duration::from_secs(3600));
    r.run(&cmd).await?;
    Ok(())
}

async fn measure(r: &dyn Runner, args: &Args, dev: &Path, label: &str) -> Result<Figures> {
    eprintln!("== {label}: {}", dev.display());
    precondition(r, args, dev).await?;
    let mut f = [0.0; 4];
    for (i, w) in WORKLOADS.iter().enumerate() {
        f[i] = fio(r, args, dev, w).await?;
        eprintln!("   {:<13} {}", w.name, fmt_fig(f[i], w.iops));
    }
    Ok(f)
}

fn fmt_fig(v: f64, iops: bool) -> String {
    if iops {
        format!("{v:>10.0} IOPS")
    } else {
        format!("{:>10.1} MiB/s", v / (1 << 20) as f64)
    }
}

async fn run_cmd(r: &dyn Runner, argv: &[&str]) -> Result<String> {
    let c = Cmd::new(argv[0])
        .args(argv[1..].iter().copied())
        .timeout(Duration::from_secs(300));
    Ok(r.run(&c).await?.stdout)
}

/// Best-effort teardown of the bench pool on `disk` so the next engine starts from a blank
/// disk. The VG is removed only when it is the bench pool and lives on `disk` alone.
async fn wipe(r: &SharedRunner, disk: &Path) {
    let d = disk.to_string_lossy();
    let lvm = LvmEngine::new(r.clone(), LvmConfig::default());
    if let Ok(Some(p)) = lvm.pool_info(POOL).await
        && p.disks.iter().all(|x| x.dev_path == disk)
    {
        let _ = run_cmd(r.as_ref(), &["vgremove", "-ff", "-y", POOL]).await;
        let _ = run_cmd(r.as_ref(), &["pvremove", "-ff", "-y", &d]).await;
    }
    if let Ok(ms) = fs::mounts_of(r.as_ref(), disk).await {
        for m in ms {
            let _ = fs::unmount(r.as_ref(), &m.target).await;
        }
    }
    let _ = run_cmd(r.as_ref(), &["wipefs", "-a", &d]).await;
}

async fn engine_volume(
    r: &SharedRunner,
    kind: EngineKind,
    args: &Args,
    disk: &Path,
) -> Result<(Box<dyn VolumeEngine>, PathBuf)> {
    let e: Box<dyn VolumeEngine> = match kind {
        EngineKind::File => Box::new(FileEngine::new(
            r.clone(),
            FileEngineConfig {
                root: args.dir.join("pools"),
                dev_dir: args.dir.join("dev"),
                fs_type: PoolFsType::Xfs,
                preallocate: false,
                timeout: Duration::from_secs(120),
            },
        )),
        EngineKind::Lvm => Box::new(LvmEngine::new(r.clone(), LvmConfig::default())),
    };
    e.ensure_pool(POOL, &[disk.to_path_buf()]).await?;
    let v = e
        .create_volume(POOL, VOLUME, args.size, &VolumeOptions::default())
        .await?;
    Ok((e, v.device_path))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let r: SharedRunner = TokioRunner::shared();
    std::fs::create_dir_all(&args.dir)?;

    // The disk: a real one (destroyed) or a loop-backed sparse file.
    let mut loop_dev = None;
    let from_env = match &args.disk_from_env {
        Some(var) => Some(PathBuf::from(
            std::env::var(var).with_context(|| format!("environment variable {var}"))?,
        )),
        None => None,
    };
    let disk = match from_env.as_ref().or(args.disk.as_ref()) {
        Some(d) if !args.wipe => bail!("--disk {} destroys its content: add --wipe", d.display()),
        Some(d) => d.clone(),
        None => {
            let file = args.dir.join("disk.img");
            // Room for the volume plus filesystem/LVM overhead.
            let size = args.size * 2 + (512 << 20);
            std::fs::File::create(&file)?.set_len(size)?;
            let out = run_cmd(
                r.as_ref(),
                &[
                    "losetup",
                    "--direct-io=on",
                    "--show",
                    "-f",
                    &file.to_string_lossy(),
                ],
            )
            .await?;
            let dev = PathBuf::from(out.trim());
            loop_dev = Some(dev.clone());
            dev
        }
    };

    let result = bench(&r, &args, &disk).await;

    wipe(&r, &disk).await;
    if let Some(l) = loop_dev {
        let _ = run_cmd(r.as_ref(), &["losetup", "-d", &l.to_string_lossy()]).await;
        let _ = std::fs::remove_file(args.dir.join("disk.img"));
    }
    result
}

/// One round's figures for the raw disk and for each engine (in `args.engines` order).
struct Round {
    raw: Figures,
    volumes: Vec<(EngineKind, Figures)>,
}

async fn measure_engine(
    r: &SharedRunner,
    args: &Args,
    disk: &Path,
    kind: EngineKind,
    round: u32,
) -> Result<Figures> {
    wipe(r, disk).await;
    let (e, dev) = engine_volume(r, kind, args, disk).await?;
    let res = measure(
        r.as_ref(),
        args,
        &dev,
        &format!("round {round}: {kind} volume"),
    )
    .await;
    let _ = e.delete_volume(POOL, VOLUME).await;
    res
}

async fn measure_raw(r: &SharedRunner, args: &Args, disk: &Path, round: u32) -> Result<Figures> {
    wipe(r, disk).await;
    measure(r.as_ref(), args, disk, &format!("round {round}: raw disk")).await
}

/// Median of `v` (mean of the two middle values for an even count).
fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(*x), hi.max(*x))
        })
}

async fn bench(r: &SharedRunner, args: &Args, disk: &Path) -> Result<()> {
    let facts = probe_host(r.as_ref(), Path::new("/sys"), Path::new("/dev")).await;
    let mut kinds = Vec::new();
    for kind in &args.engines {
        if *kind == EngineKind::Lvm && !(facts.device_mapper && facts.lvm2) {
            eprintln!("== lvm: skipped (no device-mapper or lvm2 on this host)");
            continue;
        }
        if !kinds.contains(kind) {
            kinds.push(*kind);
        }
    }
    let mut rounds: Vec<Round> = Vec::new();
    for round in 0..args.rounds {
        // alternate the order so slow drift affects raw and volumes alike
        let raw_first = round % 2 == 0;
        let mut raw = None;
        if raw_first {
            raw = Some(measure_raw(r, args, disk, round).await?);
        }
        let mut volumes = Vec::new();
        for kind in &kinds {
            volumes.push((*kind, measure_engine(r, args, disk, *kind, round).await?));
        }
        if !raw_first {
            raw = Some(measure_raw(r, args, disk, round).await?);
        }
        let raw = raw.context("raw figures")?;
        rounds.push(Round { raw, volumes });
    }
    wipe(r, disk).await;

    println!(
        "\nengine-bench: disk {}, size {} MiB, {} s per run, iodepth {} (4k) / 4 (1M), {} interleaved rounds",
        disk.display(),
        args.size >> 20,
        args.runtime,
        args.iodepth,
        args.rounds
    );
    println!(
        "figures: medians over the rounds; ratio: median of the per-round volume/raw ratios [min-max]"
    );
    print!("{:<14}{:>18}", "workload", "raw");
    for k in &kinds {
        print!("{:>18}{:>22}", format!("{k} volume"), "ratio [spread]");
    }
    println!();
    for (i, w) in WORKLOADS.iter().enumerate() {
        let raws: Vec<f64> = rounds.iter().map(|r| r.raw[i]).collect();
        print!("{:<14}{:>18}", w.name, fmt_fig(median(&raws), w.iops));
        for (j, _) in kinds.iter().enumerate() {
            let vols: Vec<f64> = rounds.iter().map(|r| r.volumes[j].1[i]).collect();
            let ratios: Vec<f64> = rounds
                .iter()
                .map(|r| 100.0 * r.volumes[j].1[i] / r.raw[i].max(f64::MIN_POSITIVE))
                .collect();
            let (lo, hi) = min_max(&ratios);
            print!(
                "{:>18}{:>22}",
                fmt_fig(median(&vols), w.iops),
                format!("{:.1}% [{lo:.0}-{hi:.0}%]", median(&ratios))
            );
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spread() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(min_max(&[2.0, 5.0, 1.0]), (1.0, 5.0));
    }
}
