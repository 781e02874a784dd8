//! Tier 1 (root on the host): `hwameistor standalone` with every wired component (disk
//! manager, node agent with this host's engine, controllers) registers this node, shows its
//! disks through hwameictl, and stops cleanly on SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::{Server, ctl};
use nix::sys::signal::Signal;
use serde_json::Value;

async fn wait_for(
    dir: &std::path::Path,
    args: &[&str],
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = ctl(dir, args).await;
        if code == 0 && ok(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: last output {out:?}, {err:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "tier 1: needs root and loop devices; run by .ci/run"]
async fn standalone_runs_every_component_and_stops_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let server = Server::start(dir, &["--node-name", "tier1-node"]);

    // the node agent registers the LocalStorageNode, the disk manager the LocalDiskNode
    let lsn = wait_for(
        dir,
        &["node", "get", "tier1-node", "-o", "json"],
        "LocalStorageNode",
        |o| serde_json::from_str::<Value>(o).is_ok_and(|v| v["status"]["state"] == "Ready"),
    )
    .await;
    assert!(lsn.contains("tier1-node"));
    let ldn = wait_for(dir, &["get", "ldn"], "LocalDiskNode", |o| {
        o.contains("tier1-node")
    })
    .await;
    assert_eq!(
        ldn.lines().next().unwrap().split_whitespace().next(),
        Some("NAME")
    );
    // the disks of this host are listed under this node
    let disks = wait_for(dir, &["get", "ld", "-o", "json"], "LocalDisks", |o| {
        serde_json::from_str::<Value>(o)
            .is_ok_and(|v| v["items"].as_array().is_some_and(|a| !a.is_empty()))
    })
    .await;
    let disks: Value = serde_json::from_str(&disks).unwrap();
    for d in disks["items"].as_array().unwrap() {
        assert_eq!(d["spec"]["nodeName"], "tier1-node");
    }

    let status = server.stop(Signal::SIGTERM);
    assert!(status.success(), "exit status {status}");
    assert!(!dir.join("server.json").exists());
}
