//! `hwameictl snapshot …` and `hwameictl volume clone`: snapshots, restores, rollbacks and
//! clones written as objects through the REST API (the controllers do the work):
//!
//! - `snapshot create NAME --volume VOL [--size Q]`: a LocalVolumeSnapshot; `--size` is the
//!   copy-on-write space of an lvm snapshot (default: the volume's size, minimum 4 MiB); the
//!   file engine's reflink snapshots reserve nothing and say so in the snapshot's message.
//! - `snapshot list | get NAME`: the `lvs` table (CAPACITY, SOURCEVOLUME, STATE, MERGING,
//!   INVALID, AGE); `get` adds the snapshot's message (an overflowed COW space, or on the
//!   file engine a `--size` that reflink snapshots cannot honour).
//! - `snapshot delete NAME`: sets `spec.delete`; the snapshot leaves every node, then the object.
//! - `snapshot restore NAME --to NEWVOL [--size Q]`: a new LocalVolume on the snapshot's nodes
//!   (the source's size or larger) and a LocalVolumeSnapshotRestore `snaprestore-NEWVOL`.
//! - `snapshot rollback NAME [--wait]` (`--wait` prints state, merge progress and message as
//!   they change): a LocalVolumeSnapshotRestore `rollback-NAME` with
//!   `restoreType: rollback`; refused while the volume is published; removed when done.
//! - `volume clone SRC NEWVOL [--size Q]`: a temporary snapshot `NEWVOL-clone-source`, a new
//!   volume and its restore; the snapshot is deleted when the copy completed.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::{Client, Error, Io, Output, PREFIX, Result, get_objects, print_value, urlencode};

/// `hwameictl snapshot …`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Take a snapshot of a volume.
    Create {
        name: String,
        /// The volume to snapshot.
        #[arg(long)]
        volume: String,
        /// Copy-on-write space (lvm), a quantity such as 1Gi; default the volume's size.
        #[arg(long)]
        size: Option<String>,
    },
    /// List snapshots.
    List,
    /// Show one snapshot.
    Get { name: String },
    /// Delete a snapshot.
    Delete { name: String },
    /// Restore a snapshot into a new volume.
    Restore {
        name: String,
        /// Name of the new volume.
        #[arg(long)]
        to: String,
        /// Capacity of the new volume (default and minimum: the source's).
        #[arg(long)]
        size: Option<String>,
    },
    /// Roll the snapshot's source volume back to the snapshot (consumes the snapshot).
    Rollback {
        name: String,
        /// Wait and print the states until the rollback ends.
        #[arg(long)]
        wait: bool,
    },
}

/// `hwameictl volume clone SRC NEWVOL [--size Q]`
#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The volume to copy.
    pub source: String,
    /// Name of the new volume.
    pub new_volume: String,
    /// Capacity of the new volume (default and minimum: the source's).
    #[arg(long)]
    pub size: Option<String>,
}

const MIN_SNAPSHOT_BYTES: u64 = 4 << 20;

/// Parse a Kubernetes quantity (`1Gi`, `500Mi`, `2G`, `1073741824`) into bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let mult: u64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => {
            return Err(Error::Usage(format!(
                "bad size {s:?}: unknown unit {unit:?}"
            )));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Usage(format!("bad size {s:?}")))?;
    if !n.is_finite() || n <= 0.0 {
        return Err(Error::Usage(format!("bad size {s:?}")));
    }
    Ok((n * mult as f64).ceil() as u64)
}

fn path(plural: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{PREFIX}/{plural}/{}", urlencode(n)),
        None => format!("{PREFIX}/{plural}"),
    }
}

fn str_at<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or_default()
}

fn i64_at(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or_default()
}

async fn created(
    io: &mut Io<'_>,
    v: &Value,
    kind: &str,
    name: &str,
    o: Option<Output>,
) -> Result<()> {
    match o {
        Some(f @ (Output::Json | Output::Yaml)) => print_value(io, v, f == Output::Yaml),
        _ => Ok(writeln!(io.out, "{kind}.hwameistor.io/{name} created")?),
    }
}

/// A new LocalVolume like `source` of `size` bytes (≥ the source's), data from `content`.
fn volume_like(source: &Value, name: &str, size: Option<u64>, content: String) -> Result<Value> {
    let src_size = i64_at(source, "/spec/requiredCapacityBytes").max(0) as u64;
    let size = size.unwrap_or(src_size);
    if size < src_size {
        return Err(Error::Usage(format!(
            "size {size} is smaller than the source's {src_size} bytes"
        )));
    }
    // Snapshot data lives on the source's nodes: the new volume goes to the same nodes.
    let mut nodes: Vec<Value> = source
        .pointer("/spec/config/replicas")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r.get("hostname").cloned())
                .collect()
        })
        .unwrap_or_default();
    if nodes.is_empty() {
        nodes = source
            .pointer("/spec/accessibility/nodes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
    }
    let mut spec = json!({
        "requiredCapacityBytes": size,
        "poolName": str_at(source, "/spec/poolName"),
        "replicaNumber": i64_at(source, "/spec/replicaNumber").max(1),
        "accessibility": {"nodes": nodes},
    });
    for k in ["volumeQoS", "volumeEncrypt", "convertible", "striped"] {
        if let Some(x) = source.pointer(&format!("/spec/{k}")) {
            spec[k] = x.clone();
        }
    }
    Ok(json!({
        "apiVersion": "hwameistor.io/v1alpha1",
        "kind": "LocalVolume",
        "metadata": {"name": name, "annotations": {"hwameistor.io/content-source": content}},
        "spec": spec,
    }))
}

fn restore_obj(name: &str, snapshot: &str, target: &str, pool: &str, kind: &str) -> Value {
    json!({
        "apiVersion": "hwameistor.io/v1alpha1",
        "kind": "LocalVolumeSnapshotRestore",
        "metadata": {"name": name},
        "spec": {
            "targetVolume": target,
            "targetPoolName": pool,
            "sourceVolumeSnapshot": snapshot,
            "restoreType": kind,
        },
    })
}

async fn create_snapshot(
    client: &Client,
    name: &str,
    volume: &str,
    size: Option<u64>,
) -> Result<Value> {
    let lv = client.get(&path("localvolumes", Some(volume)), &[]).await?;
    let size = size.unwrap_or(i64_at(&lv, "/spec/requiredCapacityBytes").max(0) as u64);
    if size < MIN_SNAPSHOT_BYTES {
        return Err(Error::Usage(format!(
            "snapshot size {size} is below the minimum of {MIN_SNAPSHOT_BYTES} bytes"
        )));
    }
    let mut spec = json!({
        "sourceVolume": volume,
        "requiredCapacityBytes": size,
    });
    if let Some(a) = lv.pointer("/spec/accessibility") {
        spec["accessibility"] = a.clone();
    }
    if lv.pointer("/spec/thin").and_then(Value::as_bool) == Some(true) {
        spec["thin"] = json!(true);
    }
    client
        .post(
            &path("localvolumesnapshots", None),
            &json!({
                "apiVersion": "hwameistor.io/v1alpha1",
                "kind": "LocalVolumeSnapshot",
                "metadata": {"name": name},
                "spec": spec,
            }),
        )
        .await
}

/// Run one `snapshot` subcommand.
pub async fn run(
    client: &Client,
    io: &mut Io<'_>,
    cmd: &SnapshotCmd,
    o: Option<Output>,
) -> Result<()> {
    match cmd {
        SnapshotCmd::List => get_objects(client, io, "lvs", None, None, o).await,
        SnapshotCmd::Get { name } => {
            get_objects(client, io, "lvs", Some(name), None, o).await?;
            if matches!(o, None | Some(Output::Wide)) {
                // What the nodes said (an overflowed COW space, an ignored snapsize).
                let v = client
                    .get(&path("localvolumesnapshots", Some(name)), &[])
                    .await?;
                let message = str_at(&v, "/status/message");
                if !message.is_empty() {
                    writeln!(io.out, "Message: {message}")?;
                }
            }
            Ok(())
        }
        SnapshotCmd::Create { name, volume, size } => {
            let size = size.as_deref().map(parse_size).transpose()?;
            let v = create_snapshot(client, name, volume, size).await?;
            created(io, &v, "localvolumesnapshot", name, o).await
        }
        SnapshotCmd::Delete { name } => {
            client
                .call(
                    reqwest::Method::PATCH,
                    &path("localvolumesnapshots", Some(name)),
                    &[],
                    Some(&json!({"spec": {"delete": true}})),
                )
                .await?;
            Ok(writeln!(
                io.out,
                "localvolumesnapshot.hwameistor.io/{name} deleted"
            )?)
        }
        SnapshotCmd::Restore { name, to, size } => {
            let size = size.as_deref().map(parse_size).transpose()?;
            let snap = client
                .get(&path("localvolumesnapshots", Some(name)), &[])
                .await?;
            if snap.pointer("/spec/delete").and_then(Value::as_bool) == Some(true) {
                return Err(Error::Usage(format!("snapshot {name} is being deleted")));
            }
            let src = str_at(&snap, "/spec/sourceVolume").to_owned();
            let source = client.get(&path("localvolumes", Some(&src)), &[]).await?;
            let lv = volume_like(&source, to, size, format!("snapshot/{name}"))?;
            let pool = str_at(&lv, "/spec/poolName").to_owned();
            client.post(&path("localvolumes", None), &lv).await?;
            let rname = format!("snaprestore-{to}");
            let v = client
                .post(
                    &path("localvolumesnapshotrestores", None),
                    &restore_obj(&rname, name, to, &pool, "create"),
                )
                .await?;
            writeln!(io.out, "localvolume.hwameistor.io/{to} created")?;
            created(io, &v, "localvolumesnapshotrestore", &rname, o).await
        }
        SnapshotCmd::Rollback { name, wait } => {
            let snap = client
                .get(&path("localvolumesnapshots", Some(name)), &[])
                .await?;
            let state = str_at(&snap, "/status/state");
            if state != "Ready" {
                return Err(Error::Usage(format!(
                    "snapshot {name} is not Ready (state {state:?})"
                )));
            }
            let rname = format!("rollback-{name}");
            let v = client
                .post(
                    &path("localvolumesnapshotrestores", None),
                    &restore_obj(&rname, name, "", "", "rollback"),
                )
                .await?;
            created(io, &v, "localvolumesnapshotrestore", &rname, o).await?;
            if *wait {
                wait_rollback(client, io, &rname).await?;
            }
            Ok(())
        }
    }
}

/// Print the rollback's states and merge progress until it is removed (success) or fails.
async fn wait_rollback(client: &Client, io: &mut Io<'_>, name: &str) -> Result<()> {
    let mut last = String::from("-");
    let mut last_line = String::new();
    loop {
        match client
            .get(&path("localvolumesnapshotrestores", Some(name)), &[])
            .await
        {
            Ok(v) => {
                let state = str_at(&v, "/status/state").to_owned();
                let message = str_at(&v, "/status/message").to_owned();
                let progress = v.pointer("/status/progress").and_then(Value::as_i64);
                let mut line = format!("{name}\t{}", if state.is_empty() { "-" } else { &state });
                if let Some(p) = progress {
                    line.push_str(&format!("\t{p}%"));
                }
                if !message.is_empty() {
                    line.push_str(&format!("\t{message}"));
                }
                if line != last_line {
                    writeln!(io.out, "{line}")?;
                    last_line = line;
                    last = state.clone();
                }
                if state == "Failed" || state == "Aborted" {
                    return Err(Error::Usage(format!("rollback {state}: {message}")));
                }
            }
            Err(Error::NotFound { .. }) => {
                if last != "Completed" {
                    writeln!(io.out, "{name}\tCompleted\t100%")?;
                }
                writeln!(io.out, "{name} done and removed")?;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `volume clone SRC NEWVOL [--size Q]`.
pub async fn clone(
    client: &Client,
    io: &mut Io<'_>,
    a: &CloneArgs,
    o: Option<Output>,
) -> Result<()> {
    let size = a.size.as_deref().map(parse_size).transpose()?;
    let source = client
        .get(&path("localvolumes", Some(&a.source)), &[])
        .await?;
    let lv = volume_like(&source, &a.new_volume, size, format!("volume/{}", a.source))?;
    let snap = format!("{}-clone-source", a.new_volume);
    match create_snapshot(client, &snap, &a.source, None).await {
        Ok(_) => {}
        Err(Error::Api { status: 409, .. }) => {}
        Err(e) => return Err(e),
    }
    let pool = str_at(&lv, "/spec/poolName").to_owned();
    let v = client.post(&path("localvolumes", None), &lv).await?;
    let rname = format!("snaprestore-{}", a.new_volume);
    client
        .post(
            &path("localvolumesnapshotrestores", None),
            &restore_obj(&rname, &snap, &a.new_volume, &pool, "create"),
        )
        .await?;
    created(io, &v, "localvolume", &a.new_volume, o).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_size("500Mi").unwrap(), 500 << 20);
        assert_eq!(parse_size("1073741824").unwrap(), 1 << 30);
        assert_eq!(parse_size("2G").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1.5Gi").unwrap(), 3 << 29);
        assert!(parse_size("1Zi").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn a_restored_volume_goes_to_the_source_nodes_and_is_never_smaller() {
        let src = json!({"spec": {"requiredCapacityBytes": 100, "poolName": "LocalStorage_PoolHDD",
            "replicaNumber": 2, "config": {"replicas": [{"hostname": "a"}, {"hostname": "b"}]}}});
        let v = volume_like(&src, "new", None, "snapshot/s".into()).unwrap();
        assert_eq!(v["spec"]["accessibility"]["nodes"], json!(["a", "b"]));
        assert_eq!(v["spec"]["requiredCapacityBytes"], json!(100));
        assert_eq!(v["spec"]["replicaNumber"], json!(2));
        assert_eq!(
            v["metadata"]["annotations"]["hwameistor.io/content-source"],
            json!("snapshot/s")
        );
        assert!(volume_like(&src, "new", Some(50), String::new()).is_err());
        assert_eq!(
            volume_like(&src, "new", Some(200), String::new()).unwrap()["spec"]["requiredCapacityBytes"],
            json!(200)
        );
    }
}
