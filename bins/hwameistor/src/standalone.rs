//! `hwameistor standalone`: every component on one host, sharing one embedded store.
//!
//! Start-up: open `<data-dir>/store.redb` (EmbeddedStore), serve the REST API on
//! `--listen`, write `<data-dir>/server.json` (`{"url", "listen", "pid"}`) so `hwameictl
//! --data-dir <data-dir>` finds the server, then start the components registered in
//! [`components`]. SIGTERM or SIGINT cancels one shutdown token: the API stops accepting,
//! open watch streams end, in-flight requests and the components finish, `server.json` is
//! removed and the store is closed (every write was already committed to the file).
//!
//! Host state across a stop and a restart ([`crate::host`]): at stop every volume not mounted
//! by the user is deactivated and the file engine's pool filesystems are unmounted, and the
//! demo's loop devices detached, so nothing of ours stays on the host unless the user still
//! has a volume mounted (then exactly that volume, its pool mount and disk stay, and the log
//! says so). At start the demo disks are attached again, the pool disks mounted again (found
//! by filesystem UUID) and the node agent activates the volumes, so a restart with the same
//! `--data-dir` brings everything back.
//!
//! IO limits (`spec.volumeQoS`) apply host-wide in standalone mode
//! ([`hwameistor_engine::qos::Scope::Host`]): every process doing IO on a volume's device is
//! throttled, without moving it into a cgroup (see the qos module for the per-cgroup
//! semantics on cgroup v1 and v2).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::demo;
use clap::Args;
use hwameistor_store::{EmbeddedStore, Store};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// File in the data directory naming the running server (read by `hwameictl`).
pub const SERVER_FILE: &str = "server.json";
/// Database file of the embedded store in the data directory.
pub const STORE_FILE: &str = "store.redb";
/// How long components get to stop after the shutdown signal.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How often the node agent re-checks every replica (re-applies QoS to new cgroups).
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// Directory for the object store, server.json (and, with --demo, the sparse-file disks).
    #[arg(
        long,
        env = "HWAMEISTOR_DATA_DIR",
        default_value = "/var/lib/hwameistor"
    )]
    pub data_dir: PathBuf,
    /// Address of the REST API (port 0 picks a free port; see server.json).
    #[arg(long, default_value = "127.0.0.1:7480")]
    pub listen: SocketAddr,
    /// Create sparse-file disks under <data-dir>/disks, attach them as loop devices and claim
    /// them for local-storage, so the node gets a pool without a spare disk.
    #[arg(long, conflicts_with = "api_only")]
    pub demo: bool,
    /// Claim this disk for local-storage at start (repeatable; a path like
    /// /dev/disk/by-id/... is resolved to its kernel name). The disk manager must see it as a
    /// free disk; disks already in a pool are left as they are.
    #[arg(long = "disk", value_name = "DEVICE")]
    pub disks: Vec<PathBuf>,
    /// Number of demo disks.
    #[arg(long, default_value_t = 2, requires = "demo")]
    pub demo_disks: usize,
    /// Size of each demo disk (sparse; a quantity such as 8Gi).
    #[arg(long, default_value = "8Gi", requires = "demo")]
    pub demo_disk_size: String,
    /// Number of extra demo disks (`<data-dir>/disks/raw-<i>.img`, same size) given to the
    /// disk manager for raw-disk volumes (`disk.hwameistor.io`); see docs/raw-disks.md.
    #[arg(long, default_value_t = 0, requires = "demo")]
    pub demo_raw_disks: usize,
    /// Serve only the object store and the REST API (no disk discovery, node agent or
    /// controllers); for tests and for inspecting a data directory.
    #[arg(long)]
    pub api_only: bool,
    /// Volume engine: lvm or file (default: lvm where device-mapper and lvm2 exist, else file).
    #[arg(long)]
    pub engine: Option<hwameistor_engine::EngineKind>,
    /// Count loop devices with a backing file as disks (tests, demo).
    #[arg(long)]
    pub include_loop: bool,
    /// Storage IP of this node (LocalStorageNode spec.storageIP).
    #[arg(long)]
    pub storage_ip: Option<String>,
    /// Directory of the two CSI sockets (`lvm.sock`, `disk.sock`); default <data-dir>/csi.
    #[arg(long)]
    pub csi_dir: Option<PathBuf>,
    /// Name of this node in the objects (LocalDisk.spec.nodeName, LocalStorageNode name).
    #[arg(long, env = "NODENAME")]
    pub node_name: Option<String>,
    /// Require a token on the REST API (POST .../cluster/auth/auth with these credentials).
    #[arg(long, env = "EnableAuth", default_value_t = false)]
    pub enable_auth: bool,
    #[arg(long, env = "AuthAccessId", default_value = "admin")]
    pub auth_access_id: String,
    #[arg(
        long,
        env = "AuthSecretKey",
        default_value = "admin",
        hide_env_values = true
    )]
    pub auth_secret_key: String,
}

/// What every component gets.
#[derive(Clone, Debug)]
pub struct ComponentCtx {
    pub store: Store,
    pub data_dir: PathBuf,
    pub node_name: String,
    pub demo: bool,
    pub shutdown: CancellationToken,
}

/// Start the components of the standalone mode as tasks in `set`.
///
/// Extension point: each component's library exposes `run_*(config, store, ..., shutdown)`;
/// add one `set.spawn(...)` per component here. A component returning an error, or
/// stopping before the shutdown signal, stops the whole server (exit code 1).
///
/// Wired today: the disk manager (node and cluster side), the volume node agent with the
/// engine chosen for this host (with a cgroup IO throttler for volumeQoS), the volume
/// cluster controllers, the snapshot controllers, and both CSI drivers on unix sockets under
/// `--csi-dir` (default `<data-dir>/csi`; named in server.json under `"csi"`).
async fn components(
    ctx: &ComponentCtx,
    args: &StandaloneArgs,
    set: &mut JoinSet<(&'static str, anyhow::Result<()>)>,
) -> anyhow::Result<Option<hwameistor_engine::SharedEngine>> {
    if args.api_only {
        tracing::info!("--api-only: serving the object store and the REST API, no host components");
        return Ok(None);
    }
    use hwameistor_controllers::{disk, volume};
    let runner = hwameistor_exec::TokioRunner::shared();

    let mut engine_cfg = hwameistor_engine::EngineConfig {
        engine: args.engine,
        ..Default::default()
    };
    engine_cfg.file.root = ctx.data_dir.join("pools");
    let engine = hwameistor_engine::engine::open_engine(runner.clone(), &engine_cfg)
        .await
        .context("choosing the volume engine for this host")?;
    tracing::info!(engine = %engine.kind(), "volume engine");
    // pools of an earlier run (file engine) before the node agent activates their volumes
    crate::host::reattach_pools(&engine, &engine_cfg.file.root, &runner).await;

    let mut disk_node = disk::DiskNodeConfig::new(ctx.node_name.clone());
    // the demo's disks are loop devices
    disk_node.include_loop = args.include_loop || ctx.demo;
    if ctx.demo {
        // only the demo's own disk images; never the file engine's volume loop devices
        disk_node.loop_backing_dir = Some(ctx.data_dir.join("disks"));
    }
    let (store, stop) = (ctx.store.clone(), ctx.shutdown.clone());
    let r = runner.clone();
    set.spawn(async move {
        (
            "disk manager (node)",
            disk::run_node(disk_node, store, r, stop)
                .await
                .map_err(Into::into),
        )
    });

    let (store, stop) = (ctx.store.clone(), ctx.shutdown.clone());
    set.spawn(async move {
        (
            "disk manager (cluster)",
            disk::run_cluster(disk::DiskClusterConfig::default(), store, stop)
                .await
                .map_err(Into::into),
        )
    });

    // Snapshots, restores, rollbacks, clones (hwameistor_controllers::snapshot).
    {
        use hwameistor_controllers::snapshot;
        let (store, stop, e, r) = (
            ctx.store.clone(),
            ctx.shutdown.clone(),
            engine.clone(),
            runner.clone(),
        );
        let cfg = snapshot::SnapshotNodeConfig::new(ctx.node_name.clone());
        set.spawn(async move {
            (
                "snapshot node",
                snapshot::run_snapshot_node(cfg, store, e, r, stop)
                    .await
                    .map_err(Into::into),
            )
        });
        let (store, stop) = (ctx.store.clone(), ctx.shutdown.clone());
        set.spawn(async move {
            (
                "snapshot controllers",
                snapshot::run_snapshot_cluster(Default::default(), store, stop)
                    .await
                    .map_err(Into::into),
            )
        });
    }

    let mut agent = volume::NodeAgentConfig::new(ctx.node_name.clone());
    agent.storage_ip = args.storage_ip.clone();
    // spec.volumeQoS: host-wide limits (v1 blkio or v2 io.max, whichever this host has):
    // every process doing IO on the volume is throttled. Cgroups created later are covered
    // at the next replica resync. Without cgroups the agent reports QoS as not enforced.
    agent.resync_interval = RESYNC;
    match hwameistor_engine::qos::Throttler::host(Path::new("/sys/fs/cgroup")) {
        Ok(t) => {
            tracing::info!(hierarchy = %t.dir.display(), version = %t.version, "volumeQoS throttler ready (host-wide)");
            agent.throttler = Some(t);
        }
        Err(e) => {
            tracing::warn!(error = %e, "no cgroup IO throttler; volumeQoS will not be enforced")
        }
    }
    let (store, stop) = (ctx.store.clone(), ctx.shutdown.clone());
    let e = engine.clone();
    let r = runner.clone();
    set.spawn(async move {
        (
            "node agent",
            volume::run_node_agent(agent, store, e, r, stop)
                .await
                .map_err(Into::into),
        )
    });

    let (store, stop) = (ctx.store.clone(), ctx.shutdown.clone());
    set.spawn(async move {
        (
            "volume controllers",
            volume::run_cluster_controllers(volume::ClusterConfig::default(), store, stop)
                .await
                .map_err(Into::into),
        )
    });
    // The two CSI drivers on unix sockets (hwameictl volume mount|unmount use them).
    let ops: std::sync::Arc<dyn hwameistor_csi::NodeOps> =
        std::sync::Arc::new(hwameistor_csi::HostNodeOps::new(runner));
    let csi_dir = csi_dir(args, &ctx.data_dir);
    for driver in [hwameistor_csi::Driver::Lvm, hwameistor_csi::Driver::Disk] {
        let (sock, state) = match driver {
            hwameistor_csi::Driver::Lvm => ("lvm.sock", "lvm-state"),
            hwameistor_csi::Driver::Disk => ("disk.sock", "disk-state"),
        };
        let mut cfg = hwameistor_csi::CsiConfig::new(csi_dir.join(sock), ctx.node_name.clone());
        cfg.state_dir = Some(csi_dir.join(state));
        // Keys of encrypted volumes: <data-dir>/secrets/<namespace>/<name>, mode 0600.
        cfg.keys = hwameistor_csi::KeySource::files(ctx.data_dir.join("secrets"));
        let (store, stop, ops) = (ctx.store.clone(), ctx.shutdown.clone(), ops.clone());
        set.spawn(async move {
            let res = match driver {
                hwameistor_csi::Driver::Lvm => {
                    hwameistor_csi::serve_lvm(cfg, store, ops, stop).await
                }
                hwameistor_csi::Driver::Disk => {
                    hwameistor_csi::serve_disk(cfg, store, ops, stop).await
                }
            };
            (driver.name(), res.map_err(Into::into))
        });
    }
    Ok(Some(engine))
}

/// Where the CSI sockets live: `--csi-dir`, else `<data-dir>/csi`.
fn csi_dir(args: &StandaloneArgs, data_dir: &Path) -> PathBuf {
    args.csi_dir.clone().unwrap_or_else(|| data_dir.join("csi"))
}

fn node_name(arg: Option<String>) -> String {
    arg.filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn write_server_file(
    dir: &Path,
    url: &str,
    listen: SocketAddr,
    csi: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(SERVER_FILE);
    let tmp = dir.join(format!("{SERVER_FILE}.tmp"));
    let mut body = json!({"url": url, "listen": listen.to_string(), "pid": std::process::id()});
    if let Some(csi) = csi {
        body["csi"] = json!({
            "lvm.hwameistor.io": csi.join("lvm.sock").display().to_string(),
            "disk.hwameistor.io": csi.join("disk.sock").display().to_string(),
        });
    }
    std::fs::write(&tmp, format!("{body:#}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(path)
}

/// Remove server.json if it still names this process.
fn remove_server_file(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("pid").and_then(|p| p.as_u64()))
        == Some(u64::from(std::process::id()));
    if ours && let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove the server file");
    }
}

pub async fn run(args: StandaloneArgs, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let dir = args.data_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    let db = dir.join(STORE_FILE);
    let embedded = tokio::task::spawn_blocking({
        let db = db.clone();
        move || EmbeddedStore::open(&db)
    })
    .await
    .context("opening the store")?
    .with_context(|| {
        format!(
            "opening the object store {} (is another hwameistor using it?)",
            db.display()
        )
    })?;
    let store = Store::from(embedded);
    tracing::info!(path = %db.display(), "object store open");

    let auth = args.enable_auth.then(|| hwameistor_http::Credentials {
        access_id: args.auth_access_id.clone(),
        secret_key: args.auth_secret_key.clone(),
    });
    let app = hwameistor_http::router(
        store.clone(),
        hwameistor_http::ApiConfig { auth },
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the REST API to {}", args.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let url = format!("http://{local}");

    let ctx = ComponentCtx {
        store: store.clone(),
        data_dir: dir.clone(),
        node_name: node_name(args.node_name.clone()),
        demo: args.demo,
        shutdown: shutdown.clone(),
    };
    let demo = if args.demo {
        let size = hwameistor_core::params::parse_quantity(&args.demo_disk_size)
            .with_context(|| format!("--demo-disk-size {:?}", args.demo_disk_size))?;
        Some(
            demo::attach(
                &dir,
                args.demo_disks,
                size,
                hwameistor_exec::TokioRunner::shared(),
            )
            .await?,
        )
    } else {
        None
    };
    // raw-disk demo disks (--demo-raw-disks), for the disk manager's raw-disk pools
    let demo_raw = if args.demo && args.demo_raw_disks > 0 {
        let size = hwameistor_core::params::parse_quantity(&args.demo_disk_size)
            .with_context(|| format!("--demo-disk-size {:?}", args.demo_disk_size))?;
        Some(
            demo::attach_files(
                &dir,
                "raw",
                args.demo_raw_disks,
                size,
                hwameistor_exec::TokioRunner::shared(),
            )
            .await?,
        )
    } else {
        None
    };
    let mut set = JoinSet::new();
    let engine = match components(&ctx, &args, &mut set).await {
        Ok(engine) => engine,
        Err(e) => {
            if let Some(d) = demo {
                d.detach(&[]).await;
            }
            if let Some(d) = demo_raw {
                d.detach(&[]).await;
            }
            return Err(e);
        }
    };
    if let Some(d) = &demo_raw {
        let claim = demo::claim_raw(
            store.clone(),
            ctx.node_name.clone(),
            d.fresh.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = claim.await {
                tracing::error!(
                    error = format!("{e:#}"),
                    "claiming the raw demo disks failed"
                );
            }
        });
    }
    if let Some(d) = &demo {
        let claim = demo::claim(
            store.clone(),
            ctx.node_name.clone(),
            d.fresh.clone(),
            None,
            shutdown.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = claim.await {
                tracing::error!(error = format!("{e:#}"), "claiming the demo disks failed");
            }
        });
    }
    if !args.disks.is_empty() && !args.api_only {
        let mut devs = Vec::new();
        for d in &args.disks {
            devs.push(std::fs::canonicalize(d).with_context(|| format!("--disk {}", d.display()))?);
        }
        let claim = demo::claim(
            store.clone(),
            ctx.node_name.clone(),
            devs,
            Some("disks"),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = claim.await {
                tracing::error!(error = format!("{e:#}"), "claiming the --disk disks failed");
            }
        });
    }

    let csi = (!args.api_only).then(|| csi_dir(&args, &dir));
    let server_file = write_server_file(&dir, &url, local, csi.as_deref())?;
    tracing::info!(%url, node = %ctx.node_name, data_dir = %dir.display(), "hwameistor standalone ready");
    let api = tokio::spawn(hwameistor_http::serve(listener, app, shutdown.clone()));

    // Run until a signal, or until a component fails.
    let mut failed = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = set.join_next(), if !set.is_empty() => {
                match done {
                    Ok((name, Ok(()))) if shutdown.is_cancelled() => tracing::info!(component = name, "stopped"),
                    Ok((name, Ok(()))) => {
                        tracing::error!(component = name, "stopped unexpectedly; shutting down");
                        failed = true;
                        shutdown.cancel();
                    }
                    Ok((name, Err(e))) => {
                        tracing::error!(component = name, error = format!("{e:#}"), "failed; shutting down");
                        failed = true;
                        shutdown.cancel();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a component panicked; shutting down");
                        failed = true;
                        shutdown.cancel();
                    }
                }
            }
        }
    }

    // Graceful stop: components first, then the API, then the store.
    let stopping = async {
        while let Some(done) = set.join_next().await {
            match done {
                Ok((name, Ok(()))) => tracing::info!(component = name, "stopped"),
                Ok((name, Err(e))) => {
                    tracing::error!(
                        component = name,
                        error = format!("{e:#}"),
                        "failed while stopping"
                    );
                    failed = true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "a component panicked while stopping");
                    failed = true;
                }
            }
        }
    };
    if tokio::time::timeout(STOP_GRACE, stopping).await.is_err() {
        tracing::error!(grace = ?STOP_GRACE, "components did not stop in time; aborting them");
        set.abort_all();
        failed = true;
    }
    match tokio::time::timeout(STOP_GRACE, api).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => {
            tracing::error!(error = %e, "REST API failed");
            failed = true;
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "REST API task panicked");
            failed = true;
        }
        Err(_) => {
            tracing::error!("REST API did not stop in time");
            failed = true;
        }
    }
    let mut left = crate::host::Leftovers::default();
    if let Some(engine) = &engine {
        let runner = hwameistor_exec::TokioRunner::shared();
        left = crate::host::release_host(engine, &dir.join("pools"), &runner).await;
    }
    if let Some(d) = demo {
        d.detach(&left.devices).await;
    }
    if let Some(d) = demo_raw {
        // a raw disk the user still has mounted is detached lazily by the kernel
        d.detach(&[]).await;
    }
    if left.is_empty() {
        tracing::info!("host released: no volume, pool mount or demo loop device of ours is left");
    } else {
        tracing::warn!(
            volumes = ?left.volumes,
            pool_mounts = ?left.mounts,
            devices = ?left.devices,
            "left on the host because volumes are still in use (unmount them, e.g. `hwameictl volume unmount`, and start the server again to release them)"
        );
    }
    remove_server_file(&server_file);
    drop(ctx);
    drop(store);
    tracing::info!("hwameistor standalone stopped");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
