//! hwameistor-cli: `hwameictl`, the command line client of HwameiStor's REST API.
//!
//! HwameiStor keeps its state in `hwameistor.io/v1alpha1` objects: LocalDisk (`ld`, a disk
//! on a node), LocalStorageNode (`lsn`, a node's LVM pools), LocalVolume (`lv`, a volume)
//! and more. `hwameictl` talks to the REST API served by `hwameistor standalone` (or the
//! cluster's `apiserver` component) and prints those objects the way `kubectl get` does: the
//! server renders each kind's printer columns into a table, NAME first and AGE last, and
//! `-o wide` adds the priority-1 columns.
//!
//! # Finding the server
//!
//! `--server URL` (or env `HWAMEICTL_SERVER`) wins; otherwise `--data-dir DIR` (env
//! `HWAMEISTOR_DATA_DIR`, default [`DEFAULT_DATA_DIR`]) is searched for the `server.json`
//! that `hwameistor standalone` writes there (`{"url": "http://127.0.0.1:PORT", "pid": N}`).
//! With auth enabled on the server, pass `--token` (env `HWAMEICTL_TOKEN`).
//!
//! # Commands
//!
//! - `get <kind> [name] [-l selector]`: any kind by kind, plural, singular or short name
//!   (`ld`, `ldc`, `ldn`, `lsn`, `lv`, `lvr`, `lvs`, ...).
//! - `node list | get <node>`: LocalStorageNodes.
//! - `disk list | get <disk>|<node> <devPath> | reserve … | unreserve … | owner … <owner>`.
//! - `pool list`: every node's LVM pools.
//! - `volume list | get <v> | create <v> --size 1Gi [--param k=v]… [--node n] | delete <v>
//!   | expand <v> <size> | replicas <v> | mount <v> <dir> [--fs-type xfs|ext4] [--block]
//!   | unmount <v> <dir>`. `mount`/`unmount` talk CSI (ControllerPublish + NodePublish,
//!   NodeUnpublish + ControllerUnpublish) to the socket named in server.json's `csi` map
//!   (`--csi-socket` overrides), as kubelet would; the volume must be Ready.
//! - `cluster event`: Event objects.
//! - `snapshot create|list|get|delete|restore|rollback`, `volume clone`: see [`snapshot`].
//! - `secret set NS/NAME --from-file F`: the key of encrypted volumes in a standalone data
//!   directory (local file, mode 0600; never sent over the API): see [`secret`].
//!
//! `-o json|yaml` prints the objects instead of the table.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other error: usage, connection, the server refused the request |
//! | 3 | the named object does not exist (HTTP 404) |

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};

pub mod secret;
pub mod snapshot;

/// Where `hwameistor standalone` keeps its state by default.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/hwameistor";
/// The file in the data directory that names the running server.
pub const SERVER_FILE: &str = "server.json";
/// URL prefix of the API.
pub const PREFIX: &str = "/apis/hwameistor.io/v1alpha1";

/// Exit code for "the named object does not exist".
pub const EXIT_NOT_FOUND: i32 = 3;
/// Exit code for every other error.
pub const EXIT_ERROR: i32 = 1;

/// Errors of `hwameictl`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong in a way clap cannot see.
    #[error("{0}")]
    Usage(String),
    /// No server address was given and none could be found.
    #[error(
        "no server: give --server URL (or HWAMEICTL_SERVER), or --data-dir of a running `hwameistor standalone` ({path}: {reason})"
    )]
    NoServer { path: PathBuf, reason: String },
    /// The HTTP request failed before an answer arrived.
    #[error("cannot reach the server at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered 404.
    #[error("{description}")]
    NotFound { description: String },
    /// The server refused the request.
    #[error("{description} (HTTP {status})")]
    Api {
        status: u16,
        reason: String,
        description: String,
    },
    /// The server's answer is not what we expected.
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A CSI call (volume mount/unmount) failed.
    #[error("{reason}")]
    Csi { reason: String },
}

/// Result with the CLI's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error (see the crate doc).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotFound { .. } => EXIT_NOT_FOUND,
            _ => EXIT_ERROR,
        }
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The table with the priority-1 columns too.
    Wide,
    Yaml,
    Json,
}

/// Manage HwameiStor disks, nodes, pools and volumes.
#[derive(Debug, Parser)]
#[command(name = "hwameictl", version, about, propagate_version = true)]
pub struct Cli {
    /// API server URL, e.g. http://127.0.0.1:7480.
    #[arg(long, global = true, env = "HWAMEICTL_SERVER")]
    pub server: Option<String>,
    /// Data directory of a running `hwameistor standalone` (holds server.json).
    #[arg(long, global = true, env = "HWAMEISTOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Token from /cluster/auth/auth when the server has authentication enabled.
    #[arg(long, global = true, env = "HWAMEICTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format (default: table).
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
    /// Request timeout in seconds.
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show objects of any kind (kind, plural, singular or short name: ld, lsn, lv, ...).
    Get(GetArgs),
    /// Storage nodes (LocalStorageNode).
    #[command(subcommand)]
    Node(NodeCmd),
    /// Disks (LocalDisk).
    #[command(subcommand)]
    Disk(DiskCmd),
    /// LVM storage pools of every node.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Volumes (LocalVolume).
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Cluster-wide information.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Snapshots (LocalVolumeSnapshot): create, list, get, delete, restore, rollback.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCmd),
    /// Keys of encrypted volumes in a standalone data directory (`secret set NS/NAME --from-file F`).
    #[command(subcommand)]
    Secret(secret::SecretCmd),
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Kind, plural, singular or short name (ld, ldc, ldn, ldv, lda, lsn, lv, lvr, lvg, lvs, ...).
    pub kind: String,
    /// One object; all when omitted.
    pub name: Option<String>,
    /// Label selector, e.g. `app=db,tier in (a,b)`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List storage nodes.
    List,
    /// Show one storage node.
    Get { node: String },
}

#[derive(Debug, Subcommand)]
pub enum DiskCmd {
    /// List disks.
    List,
    /// Show one disk: `<disk-name>` or `<node> <devPath>`.
    Get {
        #[arg(num_args = 1..=2, required = true, value_names = ["DISK|NODE", "DEVPATH"])]
        target: Vec<String>,
    },
    /// Reserve a disk so it is never claimed: `<disk-name>` or `<node> <devPath>`
    /// (a trailing `true|false` as in the original is accepted).
    Reserve {
        #[arg(num_args = 1..=3, required = true, value_names = ["DISK|NODE", "DEVPATH"])]
        target: Vec<String>,
    },
    /// Undo `reserve`: `<disk-name>` or `<node> <devPath>`.
    Unreserve {
        #[arg(num_args = 1..=2, required = true, value_names = ["DISK|NODE", "DEVPATH"])]
        target: Vec<String>,
    },
    /// Set a disk's owner: `<disk-name> <owner>` or `<node> <devPath> <owner>`
    /// (owner: local-storage, local-disk-manager, ...).
    Owner {
        #[arg(num_args = 2..=3, required = true, value_names = ["DISK|NODE", "DEVPATH", "OWNER"])]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// List every node's LVM pools with capacity and counts.
    List,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// List volumes.
    List,
    /// Show one volume.
    Get { volume: String },
    /// Create a volume from StorageClass-style parameters.
    Create {
        volume: String,
        /// Capacity, a quantity such as 1Gi or 500Mi.
        #[arg(long)]
        size: String,
        /// A StorageClass parameter, `key=value` (poolClass, replicaNumber, convertible,
        /// provision-iops-on-creation, ...); repeatable. poolClass defaults to the class
        /// of the nodes' pools.
        #[arg(long = "param", short = 'p', value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Place the volume on this node (default: the controller chooses).
        #[arg(long)]
        node: Option<String>,
    },
    /// Delete a volume (its replicas are removed first).
    Delete { volume: String },
    /// Grow a volume to a new capacity (quantity).
    Expand { volume: String, size: String },
    /// Show a volume's replicas (LocalVolumeReplica).
    Replicas { volume: String },
    /// Copy a volume into a new one (same size or larger).
    Clone(snapshot::CloneArgs),
    /// Mount a volume at a directory on this host through the CSI node service of the
    /// standalone server (ControllerPublish + NodePublish).
    Mount(MountArgs),
    /// Undo `volume mount` (NodeUnpublish + ControllerUnpublish).
    Unmount(UnmountArgs),
}

/// Which CSI driver a volume belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CsiDriver {
    /// lvm.hwameistor.io (LocalVolume)
    Lvm,
    /// disk.hwameistor.io (LocalDiskVolume)
    Disk,
}

impl CsiDriver {
    fn name(self) -> &'static str {
        match self {
            CsiDriver::Lvm => "lvm.hwameistor.io",
            CsiDriver::Disk => "disk.hwameistor.io",
        }
    }
}

#[derive(Debug, Args)]
pub struct MountArgs {
    pub volume: String,
    /// Directory to mount at (with --block: the file the device is bound to).
    pub target: PathBuf,
    /// Filesystem to create on first use (the driver's default, ext4, when absent).
    #[arg(long, value_parser = ["xfs", "ext4"], conflicts_with = "block")]
    pub fs_type: Option<String>,
    /// Bind the raw block device at TARGET instead of mounting a filesystem.
    #[arg(long)]
    pub block: bool,
    /// Mount read-only.
    #[arg(long)]
    pub readonly: bool,
    /// CSI driver of the volume.
    #[arg(long, value_enum, default_value_t = CsiDriver::Lvm)]
    pub driver: CsiDriver,
    /// CSI socket (default: from <data-dir>/server.json).
    #[arg(long)]
    pub csi_socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UnmountArgs {
    pub volume: String,
    pub target: PathBuf,
    /// CSI driver of the volume.
    #[arg(long, value_enum, default_value_t = CsiDriver::Lvm)]
    pub driver: CsiDriver,
    /// CSI socket (default: from <data-dir>/server.json).
    #[arg(long)]
    pub csi_socket: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Show audit events (Event objects).
    Event,
}

fn parse_param(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

#[derive(Deserialize)]
struct ServerFile {
    url: String,
    #[serde(default)]
    csi: BTreeMap<String, PathBuf>,
}

/// The CSI socket of `driver`: `--csi-socket`, else `<data-dir>/server.json`'s `csi` map.
pub fn csi_socket(
    flag: Option<&Path>,
    data_dir: Option<&Path>,
    driver: CsiDriver,
) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let path = data_dir
        .unwrap_or(Path::new(DEFAULT_DATA_DIR))
        .join(SERVER_FILE);
    let no = |reason: String| Error::NoServer {
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| no(e.to_string()))?;
    let f: ServerFile = serde_json::from_str(&text).map_err(|e| no(e.to_string()))?;
    f.csi.get(driver.name()).cloned().ok_or_else(|| {
        no(format!(
            "names no CSI socket for {} (server started with --api-only?)",
            driver.name()
        ))
    })
}

fn csi_error(e: hwameistor_csi::client::ClientError) -> Error {
    use hwameistor_csi::client::ClientError as C;
    match e {
        C::Rpc { rpc, status } if status.code() == tonic::Code::NotFound => Error::NotFound {
            description: format!("{rpc}: {}", status.message()),
        },
        C::Rpc { rpc, status } => Error::Csi {
            reason: format!("{rpc} failed ({:?}): {}", status.code(), status.message()),
        },
        e @ C::Connect { .. } => Error::Csi {
            reason: format!("{e} (is `hwameistor standalone` running?)"),
        },
    }
}

async fn mount(cli: &Cli, io: &mut Io<'_>, a: &MountArgs) -> Result<()> {
    use hwameistor_csi::client::MountKind;
    let sock = csi_socket(a.csi_socket.as_deref(), cli.data_dir.as_deref(), a.driver)?;
    let kind = if a.block {
        MountKind::Block
    } else {
        MountKind::Filesystem {
            fs_type: a.fs_type.clone().unwrap_or_default(),
        }
    };
    let target = std::path::absolute(&a.target)?;
    let mut c = hwameistor_csi::client::connect(&sock)
        .await
        .map_err(csi_error)?;
    c.mount(&a.volume, &target, kind, a.readonly)
        .await
        .map_err(csi_error)?;
    Ok(writeln!(
        io.out,
        "volume {} mounted at {}",
        a.volume,
        target.display()
    )?)
}

async fn unmount(cli: &Cli, io: &mut Io<'_>, a: &UnmountArgs) -> Result<()> {
    let sock = csi_socket(a.csi_socket.as_deref(), cli.data_dir.as_deref(), a.driver)?;
    let target = std::path::absolute(&a.target)?;
    let mut c = hwameistor_csi::client::connect(&sock)
        .await
        .map_err(csi_error)?;
    c.unmount(&a.volume, &target, true)
        .await
        .map_err(csi_error)?;
    Ok(writeln!(
        io.out,
        "volume {} unmounted from {}",
        a.volume,
        target.display()
    )?)
}

/// The API server URL from the flags: `--server`, else `<data-dir>/server.json`.
pub fn server_url(server: Option<&str>, data_dir: Option<&Path>) -> Result<String> {
    if let Some(s) = server.filter(|s| !s.trim().is_empty()) {
        let s = s.trim().trim_end_matches('/');
        return Ok(if s.contains("://") {
            s.to_string()
        } else {
            format!("http://{s}")
        });
    }
    let path = data_dir
        .unwrap_or(Path::new(DEFAULT_DATA_DIR))
        .join(SERVER_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::NoServer {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let f: ServerFile = serde_json::from_str(&text).map_err(|e| Error::NoServer {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(f.url.trim_end_matches('/').to_string())
}

/// An API client bound to one server.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: impl Into<String>, token: Option<String>, timeout: Duration) -> Result<Self> {
        let base = base.into();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|source| Error::Connect {
                url: base.clone(),
                source,
            })?;
        Ok(Client { http, base, token })
    }

    /// Send a request to `path` (below the server root) and decode the JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(t) = &self.token {
            req = req.header(reqwest::header::AUTHORIZATION, t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|source| Error::Connect {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|source| Error::Connect {
            url: url.clone(),
            source,
        })?;
        let v: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        if status.is_success() {
            return Ok(v);
        }
        let description = v
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "{url}: {}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                )
            });
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(Error::NotFound { description });
        }
        Err(Error::Api {
            status: status.as_u16(),
            reason: v
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            description,
        })
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value> {
        self.call(reqwest::Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, &[], Some(body))
            .await
    }
}

/// One resource type from the server's discovery document.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    pub name: String,
    #[serde(default)]
    pub singular_name: String,
    pub kind: String,
    #[serde(default)]
    pub short_names: Vec<String>,
}

impl ResourceInfo {
    fn matches(&self, word: &str) -> bool {
        hwameistor_api::registry::kind_name_matches(
            word,
            &self.kind,
            &self.name,
            &self.singular_name,
            &self.short_names,
        )
    }
}

/// Resolve a kind word (kind, plural, singular, short name) with the server's discovery.
pub async fn resolve_kind(client: &Client, word: &str) -> Result<ResourceInfo> {
    let d = client.get(PREFIX, &[]).await?;
    let list: Vec<ResourceInfo> = serde_json::from_value(
        d.get("resources").cloned().unwrap_or(Value::Null),
    )
    .map_err(|e| Error::Protocol {
        url: PREFIX.into(),
        reason: e.to_string(),
    })?;
    list.into_iter()
        .filter(|r| !r.name.contains('/'))
        .find(|r| r.matches(word))
        .ok_or_else(|| Error::Usage(format!("the server doesn't have a resource type {word:?}")))
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Print rows as kubectl does: upper-case headers, columns padded to their widest cell and
/// separated by three spaces.
pub fn print_columns(out: &mut dyn Write, headers: &[String], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: &[String]| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                let pad = widths[i].saturating_sub(c.chars().count()) + 3;
                s.push_str(&" ".repeat(pad));
            }
        }
        s
    };
    writeln!(out, "{}", line(headers))?;
    for r in rows {
        writeln!(out, "{}", line(r))?;
    }
    Ok(())
}

/// Print a `meta.k8s.io/v1` Table; priority-1 columns only when `wide`.
pub fn print_table(out: &mut dyn Write, table: &Value, wide: bool) -> Result<usize> {
    let defs = table
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let keep: Vec<usize> = defs
        .iter()
        .enumerate()
        .filter(|(_, d)| wide || d.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0)
        .map(|(i, _)| i)
        .collect();
    let headers: Vec<String> = keep
        .iter()
        .map(|&i| {
            defs[i]
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_uppercase()
        })
        .collect();
    let rows: Vec<Vec<String>> = table
        .get("rows")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    let cells = r.get("cells").and_then(Value::as_array);
                    keep.iter()
                        .map(|&i| {
                            cells
                                .and_then(|c| c.get(i))
                                .map(cell_text)
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        return Ok(0);
    }
    print_columns(out, &headers, &rows)?;
    Ok(rows.len())
}

/// Where commands write: normal output and diagnostics (kubectl's "No resources found").
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// Print a value as JSON, or as YAML when `yaml`.
fn print_value(io: &mut Io<'_>, v: &Value, yaml: bool) -> Result<()> {
    if yaml {
        write!(io.out, "{}", serde_yaml::to_string(v)?)?;
    } else {
        writeln!(
            io.out,
            "{}",
            serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
        )?;
    }
    Ok(())
}

/// `get <kind> [name]`: the server-rendered table, or the objects.
async fn get_objects(
    client: &Client,
    io: &mut Io<'_>,
    kind: &str,
    name: Option<&str>,
    selector: Option<&str>,
    output: Option<Output>,
) -> Result<()> {
    let r = resolve_kind(client, kind).await?;
    let path = match name {
        Some(n) => format!("{PREFIX}/{}/{}", r.name, urlencode(n)),
        None => format!("{PREFIX}/{}", r.name),
    };
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = selector {
        query.push(("labelSelector", s));
    }
    match output {
        Some(f @ (Output::Json | Output::Yaml)) => {
            let v = client.get(&path, &query).await?;
            print_value(io, &v, f == Output::Yaml)
        }
        wide => {
            query.push(("table", "1"));
            let t = client.get(&path, &query).await?;
            if print_table(io.out, &t, wide == Some(Output::Wide))? == 0 {
                writeln!(io.err, "No resources found")?;
            }
            Ok(())
        }
    }
}

/// Below a table: `Message:` and the conditions that report a problem (a LocalVolume's
/// `Scheduled=False`, `DeleteBlocked=True`).
fn print_status_message(io: &mut Io<'_>, v: &Value) -> Result<()> {
    let message = v
        .pointer("/status/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !message.is_empty() {
        writeln!(io.out, "Message: {message}")?;
    }
    let conds = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in conds {
        let get = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let (t, st) = (get("type"), get("status"));
        let problem = (t == "Scheduled" && st == "False") || (t == "DeleteBlocked" && st == "True");
        if problem {
            writeln!(io.out, "Condition: {t}={st} ({})", get("reason"))?;
        }
    }
    Ok(())
}

/// Percent-encode one path segment.
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Disk address from positional arguments: `(node, disk-name-or-devPath)`.
fn disk_target(target: &[String]) -> Result<(Option<&str>, &str)> {
    match target {
        [disk] => Ok((None, disk)),
        [node, dev] => Ok((Some(node), dev)),
        _ => Err(Error::Usage(
            "give a disk name, or a node and a device path".into(),
        )),
    }
}

fn disk_path(target: &[String], suffix: &str) -> Result<String> {
    Ok(match disk_target(target)? {
        (None, disk) => format!("{PREFIX}/cluster/disks/{}/{suffix}", urlencode(disk)),
        (Some(node), dev) if suffix == "reserve" => {
            format!(
                "{PREFIX}/cluster/nodes/{}/disks/{}",
                urlencode(node),
                urlencode(dev)
            )
        }
        (Some(node), dev) => format!(
            "{PREFIX}/cluster/nodes/{}/disks/{}/{suffix}",
            urlencode(node),
            urlencode(dev)
        ),
    })
}

async fn print_object_row(
    client: &Client,
    io: &mut Io<'_>,
    kind: &str,
    obj: &Value,
    output: Option<Output>,
) -> Result<()> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    get_objects(client, io, kind, Some(&name), None, output).await
}

async fn set_reserved(
    client: &Client,
    io: &mut Io<'_>,
    target: &[String],
    reserve: bool,
    output: Option<Output>,
) -> Result<()> {
    let d = client
        .post(
            &disk_path(target, "reserve")?,
            &json!({ "reserve": reserve }),
        )
        .await?;
    print_object_row(client, io, "localdisks", &d, output).await
}

/// Run one parsed command against the server.
pub async fn run(cli: &Cli, io: &mut Io<'_>) -> Result<()> {
    match &cli.command {
        Command::Volume(VolumeCmd::Mount(a)) => return mount(cli, io, a).await,
        Command::Volume(VolumeCmd::Unmount(a)) => return unmount(cli, io, a).await,
        Command::Secret(c) => return secret::run(cli.data_dir.as_deref(), io, c),
        _ => {}
    }
    let url = server_url(cli.server.as_deref(), cli.data_dir.as_deref())?;
    let client = Client::new(
        url,
        cli.token.clone(),
        Duration::from_secs(cli.timeout.max(1)),
    )?;
    run_with(&client, cli, io).await
}

/// [`run`] with an existing client (tests).
pub async fn run_with(client: &Client, cli: &Cli, io: &mut Io<'_>) -> Result<()> {
    let o = cli.output;
    match &cli.command {
        Command::Get(g) => {
            get_objects(
                client,
                io,
                &g.kind,
                g.name.as_deref(),
                g.selector.as_deref(),
                o,
            )
            .await
        }
        Command::Node(NodeCmd::List) => get_objects(client, io, "lsn", None, None, o).await,
        Command::Node(NodeCmd::Get { node }) => {
            get_objects(client, io, "lsn", Some(node), None, o).await
        }
        Command::Disk(DiskCmd::List) => get_objects(client, io, "ld", None, None, o).await,
        Command::Disk(DiskCmd::Get { target }) => match disk_target(target)? {
            (None, disk) => get_objects(client, io, "ld", Some(disk), None, o).await,
            (Some(node), dev) => {
                let d = client
                    .get(
                        &format!(
                            "{PREFIX}/cluster/nodes/{}/disks/{}",
                            urlencode(node),
                            urlencode(dev)
                        ),
                        &[],
                    )
                    .await?;
                print_object_row(client, io, "ld", &d, o).await
            }
        },
        Command::Disk(DiskCmd::Reserve { target }) => {
            // the original's form: `reserve <node> <devPath> <true|false>`
            let (target, reserve) = match target.as_slice() {
                [rest @ .., flag] if !rest.is_empty() && (flag == "true" || flag == "false") => {
                    (rest, flag == "true")
                }
                [_, _, third] => {
                    return Err(Error::Usage(format!(
                        "expected true or false as the third argument, got {third:?}"
                    )));
                }
                all => (all, true),
            };
            set_reserved(client, io, target, reserve, o).await
        }
        Command::Disk(DiskCmd::Unreserve { target }) => {
            set_reserved(client, io, target, false, o).await
        }
        Command::Disk(DiskCmd::Owner { args }) => {
            let (owner, target) = args
                .split_last()
                .ok_or_else(|| Error::Usage("missing owner".into()))?;
            let d = client
                .post(&disk_path(target, "owner")?, &json!({ "owner": owner }))
                .await?;
            print_object_row(client, io, "ld", &d, o).await
        }
        Command::Pool(PoolCmd::List) => {
            let v = client.get(&format!("{PREFIX}/cluster/pools"), &[]).await?;
            if let Some(f @ (Output::Json | Output::Yaml)) = o {
                return print_value(io, &v, f == Output::Yaml);
            }
            let items = v
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if items.is_empty() {
                writeln!(io.err, "No resources found")?;
                return Ok(());
            }
            let mut headers = vec![
                "POOL", "NODE", "CLASS", "TOTAL", "USED", "FREE", "VOLUMES", "DISKS",
            ];
            if o == Some(Output::Wide) {
                headers.extend(["VOLUMELIMIT", "FREEVOLUMES"]);
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|p| {
                    let f = |k: &str| p.get(k).map(cell_text).unwrap_or_default();
                    let mut r = vec![
                        f("poolName"),
                        f("nodeName"),
                        f("class"),
                        f("totalCapacityBytes"),
                        f("usedCapacityBytes"),
                        f("freeCapacityBytes"),
                        f("usedVolumeCount"),
                        f("disks"),
                    ];
                    if o == Some(Output::Wide) {
                        r.extend([f("volumeCapacityBytesLimit"), f("freeVolumeCount")]);
                    }
                    r
                })
                .collect();
            print_columns(
                io.out,
                &headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
                &rows,
            )
        }
        Command::Snapshot(c) => snapshot::run(client, io, c, o).await,
        Command::Secret(c) => secret::run(cli.data_dir.as_deref(), io, c),
        Command::Volume(VolumeCmd::Clone(a)) => snapshot::clone(client, io, a, o).await,
        Command::Volume(VolumeCmd::Mount(_) | VolumeCmd::Unmount(_)) => Err(Error::Usage(
            "volume mount/unmount talk to the CSI socket, not the REST API".into(),
        )),
        Command::Volume(VolumeCmd::List) => get_objects(client, io, "lv", None, None, o).await,
        Command::Volume(VolumeCmd::Get { volume }) => {
            get_objects(client, io, "lv", Some(volume), None, o).await?;
            if matches!(o, None | Some(Output::Wide)) {
                // Why it is not where it should be (placement, blocked deletion).
                let v = client
                    .get(&format!("{PREFIX}/localvolumes/{}", urlencode(volume)), &[])
                    .await?;
                print_status_message(io, &v)?;
            }
            Ok(())
        }
        Command::Volume(VolumeCmd::Create {
            volume,
            size,
            params,
            node,
        }) => {
            let parameters: BTreeMap<&str, &str> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut body = json!({"name": volume, "capacity": size, "parameters": parameters});
            if let Some(n) = node {
                body["node"] = json!(n);
            }
            let v = client
                .post(&format!("{PREFIX}/cluster/volumes"), &body)
                .await?;
            match o {
                Some(f @ (Output::Json | Output::Yaml)) => print_value(io, &v, f == Output::Yaml),
                _ => Ok(writeln!(
                    io.out,
                    "localvolume.hwameistor.io/{volume} created"
                )?),
            }
        }
        Command::Volume(VolumeCmd::Delete { volume }) => {
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!("{PREFIX}/cluster/volumes/{}", urlencode(volume)),
                    &[],
                    None,
                )
                .await?;
            Ok(writeln!(
                io.out,
                "localvolume.hwameistor.io/{volume} deleted"
            )?)
        }
        Command::Volume(VolumeCmd::Expand { volume, size }) => {
            let body = json!({ "targetCapacity": size });
            client
                .post(
                    &format!("{PREFIX}/cluster/volumes/{}/expand", urlencode(volume)),
                    &body,
                )
                .await?;
            Ok(writeln!(
                io.out,
                "localvolume.hwameistor.io/{volume} expanding to {size}"
            )?)
        }
        Command::Volume(VolumeCmd::Replicas { volume }) => {
            let v = client
                .get(
                    &format!("{PREFIX}/cluster/volumes/{}/replicas", urlencode(volume)),
                    &[],
                )
                .await?;
            if let Some(f @ (Output::Json | Output::Yaml)) = o {
                return print_value(io, &v, f == Output::Yaml);
            }
            let names: Vec<String> = v
                .get("items")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|r| {
                            r.pointer("/metadata/name")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .collect()
                })
                .unwrap_or_default();
            if names.is_empty() {
                writeln!(io.err, "No resources found")?;
                return Ok(());
            }
            // one table with the replicas' kubectl columns
            let t = client
                .get(&format!("{PREFIX}/localvolumereplicas"), &[("table", "1")])
                .await?;
            let mut t = t;
            if let Some(rows) = t.get_mut("rows").and_then(Value::as_array_mut) {
                rows.retain(|r| {
                    r.pointer("/object/metadata/name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| names.iter().any(|x| x == n))
                });
            }
            print_table(io.out, &t, o == Some(Output::Wide))?;
            Ok(())
        }
        Command::Cluster(ClusterCmd::Event) => get_objects(client, io, "evt", None, None, o).await,
    }
}

/// The `hwameictl` program: parse `args`, run, print errors; returns the exit code.
pub async fn main_with_args<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { 0 };
            let text = e.render().to_string();
            if e.use_stderr() {
                let _ = write!(err, "{text}");
            } else {
                let _ = write!(out, "{text}");
            }
            return code;
        }
    };
    let mut io = Io { out, err };
    match run(&cli, &mut io).await {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io.err, "error: {e}");
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_like_kubectl() {
        let mut out = Vec::new();
        print_columns(
            &mut out,
            &["NAME".into(), "IP".into(), "AGE".into()],
            &[
                vec!["node-1".into(), "10.0.0.1".into(), "5m".into()],
                vec!["n2".into(), "".into(), "3h".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME     IP         AGE\nnode-1   10.0.0.1   5m\nn2                  3h\n"
        );
    }

    #[test]
    fn table_filters_priority_columns() {
        let t = json!({
            "columnDefinitions": [
                {"name": "Name", "priority": 0}, {"name": "ip", "priority": 0},
                {"name": "PoolHDD", "priority": 1}, {"name": "age", "priority": 0}],
            "rows": [{"cells": ["n1", "10.0.0.1", 42, "1m"]}],
        });
        let mut out = Vec::new();
        assert_eq!(print_table(&mut out, &t, false).unwrap(), 1);
        assert_eq!(
            String::from_utf8(out).unwrap().lines().next().unwrap(),
            "NAME   IP         AGE"
        );
        let mut out = Vec::new();
        print_table(&mut out, &t, true).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.lines().nth(1).unwrap(), "n1     10.0.0.1   42        1m");
    }

    #[test]
    fn server_url_from_flag_or_file() {
        assert_eq!(
            server_url(Some("127.0.0.1:80/"), None).unwrap(),
            "http://127.0.0.1:80"
        );
        assert_eq!(server_url(Some("https://x"), None).unwrap(), "https://x");
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            server_url(None, Some(d.path())),
            Err(Error::NoServer { .. })
        ));
        std::fs::write(
            d.path().join(SERVER_FILE),
            r#"{"url": "http://127.0.0.1:9/", "pid": 1}"#,
        )
        .unwrap();
        assert_eq!(
            server_url(None, Some(d.path())).unwrap(),
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn params_and_encoding() {
        assert_eq!(
            parse_param("poolClass=SSD").unwrap(),
            ("poolClass".into(), "SSD".into())
        );
        assert_eq!(parse_param("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_param("novalue").is_err());
        assert_eq!(urlencode("/dev/sdb"), "%2Fdev%2Fsdb");
        assert_eq!(urlencode("pvc-1.a_b~"), "pvc-1.a_b~");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            Error::NotFound {
                description: "x".into()
            }
            .exit_code(),
            EXIT_NOT_FOUND
        );
        assert_eq!(Error::Usage("x".into()).exit_code(), EXIT_ERROR);
    }
}
