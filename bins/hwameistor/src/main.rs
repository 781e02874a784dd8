//! `hwameistor`: the multi-call server binary. Each subcommand runs one component of
//! HwameiStor from its library crate; `standalone` runs them all on one host against the
//! embedded object store.

mod alloc;
mod demo;
mod host;
mod standalone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

/// HwameiStor: local storage for Kubernetes and single hosts.
#[derive(Debug, Parser)]
#[command(name = "hwameistor", version, about, propagate_version = true)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "HWAMEISTOR_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG is used when this is not given.
    #[arg(long, global = true, env = "HWAMEISTOR_LOG")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Component,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Component {
    /// Node agent (disk manager, volume node agent, CSI node service) for one Kubernetes node.
    Node,
    /// Cluster controllers (volumes, replicas, claims, operations) against Kubernetes.
    Controller,
    /// Scheduler extender for the hwameistor-scheduler profile.
    Scheduler,
    /// Admission webhook (schedulerName for pods with HwameiStor volumes).
    Webhook,
    /// REST API (the one hwameictl uses) over the Kubernetes API.
    Apiserver(ApiserverArgs),
    /// Prometheus exporter.
    Exporter,
    /// Everything on one host: embedded object store, REST API, and the components.
    Standalone(standalone::StandaloneArgs),
    /// Write the CustomResourceDefinitions as YAML (to a directory, or stdout).
    Crdgen {
        /// Directory to write `hwameistor.io_<plural>.yaml` files into; stdout when absent.
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ApiserverArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:80")]
    listen: SocketAddr,
    /// Require a token (POST .../cluster/auth/auth with these credentials).
    #[arg(long, env = "EnableAuth", default_value_t = false)]
    enable_auth: bool,
    #[arg(long, env = "AuthAccessId", default_value = "admin")]
    auth_access_id: String,
    #[arg(
        long,
        env = "AuthSecretKey",
        default_value = "admin",
        hide_env_values = true
    )]
    auth_secret_key: String,
}

fn init_tracing(format: LogFormat, filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// A component whose issue has not landed: say so and fail.
fn not_implemented(what: &str, issue: &str) -> anyhow::Result<ExitCode> {
    eprintln!("hwameistor: the {what} is not implemented yet ({issue})");
    eprintln!("hwameistor: `hwameistor standalone` runs the implemented components on one host");
    Ok(ExitCode::from(2))
}

/// Cancel the returned token on SIGTERM or SIGINT.
fn shutdown_on_signals() -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let t = token.clone();
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = which, "shutting down");
        t.cancel();
    });
    Ok(token)
}

async fn apiserver(args: ApiserverArgs) -> anyhow::Result<ExitCode> {
    let shutdown = shutdown_on_signals()?;
    let store = hwameistor_store::KubeStore::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let auth = args.enable_auth.then_some(hwameistor_http::Credentials {
        access_id: args.auth_access_id,
        secret_key: args.auth_secret_key,
    });
    let app = hwameistor_http::router(
        store.into(),
        hwameistor_http::ApiConfig { auth },
        shutdown.clone(),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    hwameistor_http::serve(listener, app, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

fn crdgen(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let files = hwameistor_api::crd_files()?;
    match dir {
        None => {
            for (_, yaml) in files {
                println!("---\n{}", yaml.trim_end());
            }
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, yaml) in files {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Component::Node => not_implemented("node agent for Kubernetes mode", "issues 3, 4 and 6"),
        Component::Controller => {
            not_implemented("controller for Kubernetes mode", "issues 3 and 4")
        }
        Component::Scheduler => {
            not_implemented("scheduler extender", "capability K2; no issue yet")
        }
        Component::Webhook => not_implemented("admission webhook", "capability K3; no issue yet"),
        Component::Exporter => not_implemented("exporter", "capability O1; no issue yet"),
        Component::Apiserver(a) => apiserver(a).await,
        Component::Standalone(a) => standalone::run(a, shutdown_on_signals()?).await,
        Component::Crdgen { dir } => crdgen(dir),
    }
}

/// The error and its causes, each cause once: library errors often repeat their source
/// in their own message already.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if !out.contains(&msg) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&msg);
        }
    }
    out
}

/// Most async worker threads by default (`TOKIO_WORKER_THREADS` overrides it).
const MAX_WORKER_THREADS: usize = 4;
/// Default size of the blocking pool (`HWAMEISTOR_BLOCKING_THREADS` overrides it).
const BLOCKING_THREADS: usize = 4;
/// How long an idle blocking-pool thread lives.
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

/// The async runtime, sized for a storage daemon rather than for tokio's defaults.
///
/// The data path is in the kernel; our threads only reconcile objects, run host commands and
/// answer CSI/REST calls, so a few threads suffice. Fewer threads also mean less memory: each
/// thread has a stack and a cache in the allocator. tokio's defaults are one worker per CPU
/// and up to 512 blocking threads (the embedded store runs its database work there, so a
/// burst of requests would start dozens), each kept for 10 s after its last task. See
/// docs/performance.md.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all()
        .max_blocking_threads(env_count("HWAMEISTOR_BLOCKING_THREADS").unwrap_or(BLOCKING_THREADS))
        .thread_keep_alive(BLOCKING_KEEP_ALIVE);
    if env_count("TOKIO_WORKER_THREADS").is_none() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        b.worker_threads(cpus.min(MAX_WORKER_THREADS));
    }
    b.build()
}

/// A positive count from the environment variable `name`, if set and valid.
fn env_count(name: &str) -> Option<usize> {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n| n > 0)
}

/// Re-execute this process (same pid, same arguments) with the allocator setting
/// [`alloc::SETTING`] in the environment, unless that variable is set already.
///
/// Allocators read their settings from the environment when the process starts (setting
/// them from inside would need unsafe code), hence the exec. Set the variable yourself to
/// choose other settings; on failure the server just runs with the allocator's defaults.
fn exec_with_allocator_settings() {
    use std::os::unix::process::CommandExt;
    let (name, value) = alloc::SETTING;
    if std::env::var_os(name).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    // Not a host command (those go through hwameistor_exec::Runner): this process replaces
    // itself with the same binary; `exec` returns only on failure.
    #[allow(clippy::disallowed_methods)]
    let err = std::process::Command::new(&exe)
        .arg0(arg0)
        .args(args)
        .env(name, value)
        .exec();
    eprintln!(
        "hwameistor: could not re-execute {} with {name}={value} ({err}); \
         running with the allocator's defaults",
        exe.display()
    );
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Component::Crdgen { .. }) {
        exec_with_allocator_settings();
    }
    init_tracing(cli.log_format, cli.log_level.as_deref());
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hwameistor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hwameistor: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_drops_repeated_causes() {
        let inner = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(inner)
            .context("store failed: disk on fire")
            .context("opening the store");
        assert_eq!(
            error_chain(&e),
            "opening the store: store failed: disk on fire"
        );
    }
}
