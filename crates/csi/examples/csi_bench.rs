//! Benchmark command: CreateVolume → Ready latency and delete time against a running CSI
//! endpoint (e.g. the standalone server's lvm socket).
//!
//! ```text
//! cargo run --release -p hwameistor-csi --example csi_bench -- \
//!     --socket /var/lib/hwameistor/csi/lvm.sock --count 100 --size 64Mi --pool-class HDD [--node NODE]
//! ```
//!
//! Creates `count` volumes concurrently (CreateVolume returns when the volume is Ready),
//! prints p50/p90/p99/max of the per-call latency, then deletes them all concurrently and
//! prints the wall time. No mkfs is involved (volumes are not published).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hwameistor_csi::client::connect;
use hwameistor_csi::proto::volume_capability::access_mode::Mode;
use hwameistor_csi::proto::volume_capability::{AccessMode, AccessType, MountVolume};
use hwameistor_csi::proto::*;

struct Args {
    socket: String,
    count: usize,
    size: u64,
    pool_class: String,
    node: Option<String>,
    prefix: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        socket: String::new(),
        count: 100,
        size: 64 << 20,
        pool_class: "HDD".into(),
        node: None,
        prefix: format!("bench-{}", std::process::id()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--socket" => a.socket = v()?,
            "--count" => a.count = v()?.parse()?,
            "--size" => a.size = hwameistor_core::params::parse_quantity(&v()?)?,
            "--pool-class" => a.pool_class = v()?,
            "--node" => a.node = Some(v()?),
            "--prefix" => a.prefix = v()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if a.socket.is_empty() {
        bail!("--socket is required");
    }
    Ok(a)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let client = connect(&a.socket).await?;
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
            parameters: [("poolClass".to_string(), a.pool_class.clone())].into(),
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
            "create: {} ok, {failures} failed, wall {:.3}s; latency p50 {:.3}s p90 {:.3}s p99 {:.3}s max {:.3}s",
            lat.len(),
            create_wall.as_secs_f64(),
            pct(&lat, 0.5).as_secs_f64(),
            pct(&lat, 0.9).as_secs_f64(),
            pct(&lat, 0.99).as_secs_f64(),
            lat[lat.len() - 1].as_secs_f64()
        );
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
