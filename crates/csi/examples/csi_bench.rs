//! Benchmark command (issue figures): CreateVolume → Ready latency over a burst of concurrent
//! creates, the time to delete them all, and the server's resident memory idle with the
//! volumes in place.
//!
//! One command, as root, starts a throw-away standalone server with demo disks and measures it
//! (the file engine needs loop devices; `--engine lvm` needs device-mapper and lvm2):
//!
//! ```text
//! cargo build --release -p hwameistor --bin hwameistor
//! cargo run --release -p hwameistor-csi --example csi_bench -- \
//!     --spawn target/release/hwameistor --engine file --volumes 100
//! ```
//!
//! Against a server that is already running, name its data directory (the lvm socket and
//! the server pid are read from `server.json`) or just its socket (no memory figure then):
//!
//! ```text
//! csi_bench --data-dir /var/lib/hwameistor --volumes 100 [--size 64Mi] [--pool-class HDD] [--node NODE]
//! csi_bench --socket /var/lib/hwameistor/csi/lvm.sock --volumes 100
//! ```
//!
//! CreateVolume returns when the volume is Ready, so the per-call latency is CreateVolume →
//! Ready. No mkfs is involved (volumes are not published). Output: p50/p90/p99/max of the
//! create latency, the wall time of the burst, the delete-all wall time, and VmRSS (split into
//! RssAnon, what the process allocated, and RssFile, mostly its own code) and VmHWM from
//! `/proc/<pid>/status` before the burst and idle with the volumes (after `--settle`);
//! `--smaps` adds the resident size of each mapping.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hwameistor_csi::client::connect;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use hwameistor_csi::proto::*;
use hwameistor_exec::{Cmd, TokioRunner};

struct Args {
    socket: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    spawn: Option<PathBuf>,
    engine: String,
    count: usize,
    size: u64,
    pool_class: String,
    node: Option<String>,
    prefix: String,
    settle: Duration,
    smaps: bool,
}

const USAGE: &str = "csi_bench (--spawn HWAMEISTOR_BINARY [--engine file|lvm] | --data-dir DIR | --socket SOCK) \
[--volumes N] [--size 64Mi] [--pool-class HDD] [--node NODE] [--prefix P] [--settle SECS] [--smaps]";

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        socket: None,
        data_dir: None,
        spawn: None,
        engine: "file".into(),
        count: 100,
        size: 64 << 20,
        pool_class: "HDD".into(),
        node: None,
        prefix: format!("bench-{}", std::process::id()),
        settle: Duration::from_secs(5),
        smaps: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--socket" => a.socket = Some(v()?.into()),
            "--data-dir" => a.data_dir = Some(v()?.into()),
            "--spawn" => a.spawn = Some(v()?.into()),
            "--engine" => a.engine = v()?,
            "--volumes" | "--count" => a.count = v()?.parse()?,
            "--size" => a.size = hwameistor_core::params::parse_quantity(&v()?)?,
            "--pool-class" => a.pool_class = v()?,
            "--node" => a.node = Some(v()?),
            "--prefix" => a.prefix = v()?,
            "--settle" => a.settle = Duration::from_secs(v()?.parse()?),
            "--smaps" => a.smaps = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if a.socket.is_none() && a.data_dir.is_none() && a.spawn.is_none() {
        bail!("one of --spawn, --data-dir or --socket is required\n{USAGE}");
    }
    Ok(a)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Resident memory of a process, in KiB, from `/proc/<pid>/status`.
struct Memory {
    /// `VmRSS`: everything resident.
    rss: u64,
    /// `VmHWM`: the peak of `VmRSS`.
    hwm: u64,
    /// `RssAnon`: heap, stacks and other anonymous pages (what the process allocated).
    anon: u64,
    /// `RssFile`: file pages mapped in, mostly the binary's own code and libc.
    file: u64,
}

fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}

/// Print the memory figures of `pid` under `label`; with `detail`, also the resident size
/// of each mapping from `/proc/<pid>/smaps` (largest first), to see where memory goes.
fn report_memory(pid: u32, label: &str, detail: bool) {
    let Some(m) = memory(pid) else { return };
    println!(
        "memory {label}: VmRSS {:.1} MiB (RssAnon {:.1} MiB, RssFile {:.1} MiB; VmHWM {:.1} MiB)",
        mib(m.rss),
        mib(m.anon),
        mib(m.file),
        mib(m.hwm)
    );
    if !detail {
        return;
    }
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return;
    };
    // (mapping name, permissions) -> resident KiB
    let mut sizes: std::collections::BTreeMap<(String, String), u64> = Default::default();
    let mut current = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let name = fields.get(5).map_or("[anon]", |n| n).to_string();
            current = Some((name, fields.get(1).unwrap_or(&"").to_string()));
        } else if fields.first() == Some(&"Rss:")
            && let (Some(key), Some(kib)) = (&current, fields.get(1))
        {
            *sizes.entry(key.clone()).or_default() += kib.parse::<u64>().unwrap_or(0);
        }
    }
    let mut sizes: Vec<_> = sizes.into_iter().filter(|(_, k)| *k >= 64).collect();
    sizes.sort_by_key(|s| std::cmp::Reverse(s.1));
    for ((name, perms), kib) in sizes {
        println!("  {:>8.1} MiB  {perms}  {name}", mib(kib));
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The lvm socket and pid named by `<data-dir>/server.json`.
fn server_info(data_dir: &Path) -> anyhow::Result<(PathBuf, u32)> {
    let path = data_dir.join("server.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let socket = v["csi"]["lvm.hwameistor.io"]
        .as_str()
        .context("server.json names no lvm socket")?;
    let pid = v["pid"].as_u64().context("server.json has no pid")? as u32;
    Ok((socket.into(), pid))
}

/// A standalone server with demo disks in a temporary data directory; stopped (SIGTERM) on
/// drop of [`Server::stop`].
struct Server {
    child: tokio::process::Child,
    data_dir: tempfile::TempDir,
}

impl Server {
    async fn start(binary: &Path, engine: &str, volumes: usize, size: u64) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("hwameistor-bench-")
            .tempdir()?;
        // Two demo disks with room for every volume plus pool overhead.
        let disk = ((volumes as u64 * size) / 2 + (1 << 30)).max(4 << 30);
        let log = std::fs::File::create(data_dir.path().join("server.log"))?;
        // A long-running child we stop ourselves: the command runner is for commands that
        // finish, so the server is spawned directly.
        #[allow(clippy::disallowed_methods)]
        let child = tokio::process::Command::new(binary)
            .args([
                "standalone",
                "--demo",
                "--engine",
                engine,
                "--listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--demo-disk-size", &disk.to_string()])
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {binary:?}"))?;
        Ok(Server { child, data_dir })
    }

    /// Copy the server's log out of the data dir (which is removed when the bench ends), so a
    /// failed stop can be looked into; returns where it went.
    fn keep_log(&self, pid: Option<u32>) -> String {
        let from = self.data_dir.path().join("server.log");
        let to =
            std::env::temp_dir().join(format!("csi-bench-server-{}.log", pid.unwrap_or_default()));
        match std::fs::copy(&from, &to) {
            Ok(_) => to.display().to_string(),
            Err(e) => format!("nowhere ({}: {e})", from.display()),
        }
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id();
        if let Some(pid) = pid {
            TokioRunner::shared()
                .run(&Cmd::new("kill").args(["-TERM", &pid.to_string()]))
                .await?;
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    let kept = self.keep_log(pid);
                    eprintln!("server exited with {status}; log kept at {kept}");
                }
            }
            Err(_) => {
                let kept = self.keep_log(pid);
                eprintln!("server did not stop within 60 s; killing it; log kept at {kept}");
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let mut server = None;
    let (socket, pid) = if let Some(bin) = &a.spawn {
        let s = Server::start(bin, &a.engine, a.count, a.size).await?;
        let dir = s.data_dir.path().to_path_buf();
        server = Some(s);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(info) = server_info(&dir) {
                break (info.0, Some(info.1));
            }
            if Instant::now() > deadline {
                bail!("the server wrote no server.json within 60 s; see {dir:?}/server.log");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else if let Some(dir) = &a.data_dir {
        let (s, p) = server_info(dir)?;
        (s, Some(p))
    } else {
        (a.socket.clone().unwrap_or_default(), None)
    };
    let result = run(&a, &socket, pid).await;
    if let Some(s) = server {
        s.stop().await?;
    }
    result
}

async fn run(a: &Args, socket: &Path, pid: Option<u32>) -> anyhow::Result<()> {
    let client = connect(socket).await?;
    let params: std::collections::HashMap<String, String> =
        [("poolClass".to_string(), a.pool_class.clone())].into();
    // Wait until the pools can hold the whole burst (a freshly started server builds them).
    let need = (a.count as u64 * a.size) as i64;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let cap = client
            .controller
            .clone()
            .get_capacity(GetCapacityRequest {
                parameters: params.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if cap.available_capacity >= need {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the {} pools have {} bytes free; {need} needed",
                a.pool_class,
                cap.available_capacity
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(pid) = pid {
        // Let start-up work (discovery, pool build) finish before the idle figure.
        tokio::time::sleep(a.settle).await;
        report_memory(pid, "idle, no volumes", a.smaps);
    }
    let topology = a.node.as_ref().map(|n| TopologyRequirement {
        requisite: vec![Topology {
            segments: [("topology.lvm.hwameistor.io/node".to_string(), n.clone())].into(),
        }],
        preferred: vec![Topology {
            segments: [("topology.lvm.hwameistor.io/node".to_string(), n.clone())].into(),
        }],
    });
    let names: Vec<String> = (0..a.count).map(|i| format!("{}-{i}", a.prefix)).collect();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for name in &names {
        let mut c = client.controller.clone();
        let req = CreateVolumeRequest {
            name: name.clone(),
            capacity_range: Some(CapacityRange {
                required_bytes: a.size as i64,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![VolumeCapability {
                access_mode: Some(AccessMode {
                    mode: Mode::SingleNodeWriter as i32,
                }),
                access_type: Some(AccessType::Mount(MountVolume::default())),
            }],
            parameters: params.clone(),
            accessibility_requirements: topology.clone(),
            ..Default::default()
        };
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            // The server answers UNAVAILABLE when its wait times out; retry like the provisioner.
            loop {
                match c.create_volume(req.clone()).await {
                    Ok(_) => return Ok(t.elapsed()),
                    Err(s)
                        if s.code() == tonic::Code::Unavailable
                            || s.code() == tonic::Code::Aborted =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(s) => return Err(anyhow::anyhow!("{}: {s}", req.name)),
                }
            }
        }));
    }
    let mut lat = Vec::new();
    let mut failures = 0;
    for t in tasks {
        match t.await? {
            Ok(d) => lat.push(d),
            Err(e) => {
                failures += 1;
                eprintln!("create failed: {e}");
            }
        }
    }
    let create_wall = start.elapsed();
    lat.sort();
    if !lat.is_empty() {
        println!(
            "create ({} engine, {} x {} bytes, concurrent): {} ok, {failures} failed, wall {:.3}s; CreateVolume->Ready p50 {:.3}s p90 {:.3}s p99 {:.3}s max {:.3}s",
            if a.spawn.is_some() {
                a.engine.as_str()
            } else {
                "server's"
            },
            a.count,
            a.size,
            lat.len(),
            create_wall.as_secs_f64(),
            pct(&lat, 0.5).as_secs_f64(),
            pct(&lat, 0.9).as_secs_f64(),
            pct(&lat, 0.99).as_secs_f64(),
            lat[lat.len() - 1].as_secs_f64()
        );
    }
    if let Some(pid) = pid {
        tokio::time::sleep(a.settle).await;
        report_memory(pid, &format!("idle with {} volumes", lat.len()), a.smaps);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for name in names {
        let mut c = client.controller.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                match c
                    .delete_volume(DeleteVolumeRequest {
                        volume_id: name.clone(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(s)
                        if s.code() == tonic::Code::Unavailable
                            || s.code() == tonic::Code::Aborted =>
                    {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(s) => return Err(anyhow::anyhow!("{name}: {s}")),
                }
            }
        }));
    }
    for t in tasks {
        if let Err(e) = t.await? {
            eprintln!("delete failed: {e}");
        }
    }
    println!(
        "delete: all {} in {:.3}s",
        lat.len() + failures,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
